"""The learner's parts, each on its own against hand-computed values: the n-step window
and targets (targets.py), the dense-table Q-function (qfunctions.py), the behaviour
policy (explore.BehaviourPolicy), the strategy's sync_every buffer (strategies.Strategy)
and the step statistics (metrics.py). The whole loop is checked bit for bit elsewhere
(test_replay, test_textbook, test_checkpoint, tests/multidevice)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq import explore, metrics, targets
from jaxq.config import TrainConfig
from jaxq.qfunctions import DenseTable, TDBatch, td_batch_spec
from jaxq.strategies import LocalTable, Strategy


# ---- targets ---------------------------------------------------------------------------

def _window(rewards, pending=True):
    n = len(rewards)
    return targets.Window(jnp.arange(n, dtype=jnp.int32)[:, None], jnp.zeros((n, 1), jnp.int32),
                          jnp.asarray(rewards, jnp.float32)[:, None],
                          jnp.full((n, 1), pending))


def test_nstep_returns_by_hand():
    g = targets.nstep_returns(jnp.asarray([[1.0], [2.0], [4.0]]), 0.5)
    np.testing.assert_allclose(np.asarray(g)[:, 0], [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4])


@pytest.mark.parametrize("terminated, expected", [(False, [3 + 0.125 * 8, 4 + 0.25 * 8, 4 + 0.5 * 8]),
                                                  (True, [3, 4, 4])])
def test_nstep_targets_bootstrap_unless_terminated(terminated, expected):
    w = _window([1.0, 2.0, 4.0])
    t = targets.nstep_targets(w, 0.5, jnp.asarray([8.0]), jnp.asarray([terminated]))
    np.testing.assert_allclose(np.asarray(t)[:, 0], expected)


def test_window_push_complete_retire_over_an_episode_end():
    """n = 2, one env: the oldest entry completes each step; at an episode's end every
    pending entry completes, and none of it is updated again in the next episode."""
    w = targets.empty_window(2, 1)
    history = []
    for s, r, done in [(0, 1.0, False), (1, 2.0, False), (2, 3.0, True), (5, 4.0, False)]:
        w = targets.push(w, jnp.asarray([s]), jnp.asarray([0]), jnp.asarray([r]))
        upd = targets.complete(w, jnp.asarray([done]))
        history.append([int(x) for x, u in zip(np.asarray(w.s)[:, 0], np.asarray(upd)[:, 0]) if u])
        w = targets.retire(w, upd, jnp.asarray([done]))
    # step 1: the window's oldest slot is empty (not pending); step 2: s=0 completes;
    # step 3 (done): s=1 and s=2 complete; step 4: the new episode's s=5 is not complete yet
    assert history == [[], [0], [1, 2], []]
    assert np.asarray(w.pending)[:, 0].tolist() == [False, True]


# ---- the dense table -------------------------------------------------------------------

def _table(updates_per_step, aggregation="mean", visit_counts=False, num_tables=1):
    store = LocalTable(num_tables, 3, 2, updates_per_step)
    return DenseTable(store, 3, num_tables, aggregation, q_init=1.0, visit_counts=visit_counts)


def _batch(cells, tds, mask=None):
    s = jnp.asarray([c[0] for c in cells], jnp.int32)
    a = jnp.asarray([c[1] for c in cells], jnp.int32)
    mask = jnp.ones(len(cells), bool) if mask is None else jnp.asarray(mask)
    return TDBatch(jnp.zeros_like(s), s, a, jnp.asarray(tds, jnp.float32), mask)


@pytest.mark.parametrize("updates_per_step", [16, 1])  # dense path, sparse path
@pytest.mark.parametrize("aggregation, step", [("mean", 2.0), ("sum", 4.0)])
def test_dense_table_apply_td(updates_per_step, aggregation, step):
    qf = _table(updates_per_step, aggregation)
    assert qf.store.dense == (updates_per_step == 16)
    p = qf.init()
    batch = _batch([(1, 0), (1, 0), (2, 1), (0, 1)], [1.0, 3.0, 5.0, 100.0],
                   mask=[True, True, True, False])
    p = qf.apply_td(p, batch, jnp.float32(0.5), jnp.float32(0.8))
    want = np.ones((3, 2), np.float32)
    want[1, 0] += 0.5 * step
    want[2, 1] += 0.5 * 5.0
    np.testing.assert_array_equal(np.asarray(qf.estimate(p)), want)
    cols = qf.values(p, jnp.asarray([1, 2]))
    np.testing.assert_array_equal(np.stack([np.asarray(c) for c in cols], -1), want[[1, 2]])
    assert float(qf.value(p, jnp.asarray([2]), jnp.asarray([1]))[0]) == want[2, 1]
    if p.scratch is not None:  # the sparse mean path leaves its accumulators zeroed
        assert not np.asarray(p.scratch.acc).any() and not np.asarray(p.scratch.cnt).any()


def test_visit_count_learning_rate():
    """lr = n^-w with n the cell's batched updates so far: 1 at the first update."""
    qf = _table(16, visit_counts=True)
    p = qf.init()
    for k in range(2):
        p = qf.apply_td(p, _batch([(0, 0)], [1.0]), jnp.float32(99.0), jnp.float32(1.0))
    assert float(qf.estimate(p)[0, 0]) == pytest.approx(1.0 + 1.0 + 0.5)
    assert np.asarray(p.visits)[0, 0, 0] == 2 and np.asarray(p.visits).sum() == 2


def test_two_estimates_report_their_mean_and_init_q():
    qf = _table(16, num_tables=2)
    init = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
    p = qf.init(init)
    batch = _batch([(0, 0)], [4.0])._replace(which=jnp.asarray([1], jnp.int32))
    p = qf.apply_td(p, batch, jnp.float32(1.0), jnp.float32(0.8))
    assert float(qf.value(p, jnp.asarray([0]), jnp.asarray([0]), 1)[0]) == 4.0
    assert float(qf.value(p, jnp.asarray([0]), jnp.asarray([0]), 0)[0]) == 0.0
    want = np.array(init)
    want[0, 0] = (0.0 + 4.0) / 2
    np.testing.assert_array_equal(np.asarray(qf.estimate(p)), want)


# ---- the behaviour policy --------------------------------------------------------------

def _hp(**kw):
    return TrainConfig(**kw).hparams()


def test_behaviour_schedules_at_a_step():
    pol = explore.BehaviourPolicy("epsilon_greedy", explore.ScheduleSpec("linear", 10),
                                  explore.ScheduleSpec("constant", 1))
    acting = pol.at(_hp(epsilon=1.0, epsilon_end=0.0), jnp.int32(5))
    assert float(acting.epsilon) == pytest.approx(0.5)
    assert float(pol.at(_hp(epsilon=1.0, epsilon_end=0.0), jnp.int32(50)).epsilon) == 0.0
    with pytest.raises(ValueError, match="exploration must be one of"):
        explore.BehaviourPolicy("softmax", pol.epsilon, pol.temperature)


def test_greedy_fast_path_picks_the_same_actions():
    """``act`` through the per-state greedy table = ``select`` on the columns (ties, and
    exploration, from the same uniforms)."""
    q = jnp.asarray([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [5.0, 1.0, 5.0], [0.0, 0.0, 0.0]])
    pol = explore.BehaviourPolicy("epsilon_greedy", explore.ScheduleSpec("constant", 1),
                                  explore.ScheduleSpec("constant", 1))
    acting = pol.at(_hp(epsilon=0.3), jnp.int32(0))
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    s = jax.random.randint(k1, (4096,), 0, 4)
    ue, ua = jax.random.uniform(k2, (4096,)), jax.random.uniform(k3, (4096,))
    cols_at = lambda st: tuple(q[st, a] for a in range(3))  # noqa: E731
    slow = acting.act(cols_at, s, ue, ua)
    fast = acting.act(cols_at, s, ue, ua, greedy_states=explore.greedy_table(q))
    np.testing.assert_array_equal(np.asarray(slow), np.asarray(fast))
    # and it explores at the stated rate: state 0's greedy actions are {0, 1}, so action 2
    # comes only from exploring (p = 0.3 / 3)
    a0 = np.asarray(slow)[np.asarray(s) == 0]
    assert abs((a0 == 2).mean() - 0.1) < 0.04


def test_boltzmann_probs_and_expectation():
    pol = explore.BehaviourPolicy("boltzmann", explore.ScheduleSpec("constant", 1),
                                  explore.ScheduleSpec("constant", 1))
    acting = pol.at(_hp(exploration="boltzmann", temperature=0.5), jnp.int32(0))
    cols = (jnp.asarray([0.0]), jnp.asarray([0.5]))
    p = [float(x[0]) for x in acting.probs(cols)]
    e = np.exp(np.asarray([0.0, 1.0]))
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-6)


# ---- the strategy's sync_every buffer ---------------------------------------------------

def test_sync_buffer_applies_each_entry_once_at_block_and_chunk_ends():
    """sync_every = 3 in chunks of 7 steps: blocks end at in-chunk steps 2, 5 and 6 (the
    chunk's short last block); every step's TD error reaches the table exactly once."""
    strat = Strategy.__new__(Strategy)  # the buffer logic only: no mesh needed
    strat.name, strat.buffered, strat.block, strat.chunk_iters = "replicated", True, 3, 7
    applied = []

    def apply_td(params, batch, lr, vp):
        applied.append(None)
        return params + jnp.sum(jnp.where(batch.mask, batch.td, 0.0))

    qf = types.SimpleNamespace(apply_td=apply_td)
    buf = Strategy.init_buffer(strat, td_batch_spec((1,)))
    update = jax.jit(lambda p, b, t_, o: Strategy.update(strat, qf, p, o, b, t_, 0.1, 0.8))
    params, seen = jnp.float32(0), []
    for t in range(14):
        one = TDBatch(*(jnp.zeros((1,), dt) for dt in (jnp.int32, jnp.int32, jnp.int32)),
                      jnp.asarray([2.0 ** t], jnp.float32), jnp.ones((1,), bool))
        params, buf = update(params, buf, jnp.int32(t), one)
        seen.append(int(params))
    ends = [2, 5, 6, 9, 12, 13]
    want, total = [], 0
    for t in range(14):
        if t in ends:
            total = 2 ** (t + 1) - 1  # every step's error so far, each once
        want.append(total)
    assert seen == want


def test_sync_buffer_takes_the_q_functions_batch():
    """The buffer is shaped by the Q-function's td_batch: a tile coder's states are float
    observation vectors, kept as they are; a batch of another shape or dtype is an error
    at trace time (a silent cast would turn observations into state indices)."""
    from jaxq.tiles import TileCodedQ, TileCoder

    strat = Strategy.__new__(Strategy)
    strat.name, strat.buffered, strat.block, strat.chunk_iters = "replicated", True, 2, 4
    coder = TileCoder((0.0, 0.0), (1.0, 1.0), (2, 2), 2, max_tiles=1000)
    qf = TileCodedQ(coder, LocalTable(1, coder.num_tiles, 3), 1, "mean")
    spec = qf.td_batch((1, 5))
    buf = Strategy.init_buffer(strat, spec)
    assert (buf.s.shape, buf.s.dtype, buf.a.shape) == ((2, 1, 5, 2), jnp.float32, (2, 1, 5))
    batch = TDBatch(jnp.zeros((1, 5), jnp.int32), jnp.full((1, 5, 2), 0.3),
                    jnp.ones((1, 5), jnp.int32), jnp.ones((1, 5)), jnp.ones((1, 5), bool))
    params = qf.init()
    params, buf = Strategy.update(strat, qf, params, batch, buf, jnp.int32(0), 0.5, 0.8)
    np.testing.assert_array_equal(buf.s[0], batch.s)  # the observations, not indices
    assert float(jnp.abs(params.q).max()) == 0.0  # the block has not ended yet
    params, buf = Strategy.update(strat, qf, params, batch, buf, jnp.int32(1), 0.5, 0.8)
    # both entries hit the same 2 tiles x action 1: each weight moves by lr/2 * mean td
    assert float(params.q[0, :, 1].sum()) == pytest.approx(2 * 0.25)
    with pytest.raises(TypeError, match=r"TDBatch.s is int32\[1, 5\] but the sync_every "
                                        r"buffer holds float32\[1, 5, 2\]"):
        Strategy.update(strat, qf, params, batch._replace(s=jnp.zeros((1, 5), jnp.int32)),
                        buf, jnp.int32(0), 0.5, 0.8)


# ---- step statistics -------------------------------------------------------------------

def test_step_stats_and_exact_host_counters():
    done = jnp.asarray([True, False, True])
    st = metrics.step_stats(done, jnp.asarray([1.0, 5.0, 2.0]), jnp.asarray([3, 9, 4]),
                            jnp.asarray([True, False, False]), jnp.asarray([[True, True, False]]),
                            jnp.asarray([[-1.0, 2.0, 100.0]]))
    assert [float(x) for x in st] == [2, 3.0, 7.0, 1, 3.0, 2]
    raw = {k: np.asarray([v]) for k, v in st._asdict().items()}
    raw.update(q_error=np.asarray([0.5]), eval_return=np.asarray([np.nan]),
               eval_success=np.asarray([np.nan]), eval_length=np.asarray([np.nan]))
    h = metrics.host_metrics(raw, start_chunk=2**20, chunk_iters=2**10, num_envs=2**10)
    assert h["env_steps"].dtype == np.int64 and int(h["env_steps"][0]) == (2**20 + 1) * 2**20
    assert h["mean_return"][0] == 1.5 and h["success_rate"][0] == 0.5 and h["mean_abs_td"][0] == 1.5


def test_learners_independent_is_a_layout_not_an_aggregation():
    cfg = TrainConfig(learners="independent")
    assert cfg.aggregation == "mean" and cfg.learners == "independent"
    with pytest.warns(DeprecationWarning, match="learners='independent'"):
        old = TrainConfig(aggregation="independent")
    assert old == cfg
    with pytest.raises(ValueError, match="learners must be one of"):
        TrainConfig(learners="each")
    with pytest.raises(ValueError, match="aggregation must be one of"):
        TrainConfig(aggregation="max")
