"""How parameter-server shards merge the pushes of several learners (``jaxq.ray``'s
``Shard`` and ``make_push`` as plain classes and functions: no Ray instance needed), on
the chunks of jaxq's own compiled core.

* Chunks that do not overlap (each learner pulls after the other's push landed) compose
  exactly as one learner running the same chunks in turn: the shards' table and counts
  are that learner's bit for bit. The weighting before this file (divide a change by
  1 + the learners whose latest push changed the cell) failed this: a learner's change
  was halved wherever the other learner's previous, already merged, chunk had touched
  the cell, and a learner that had not pushed yet counted as touching every cell
  (measured on the ``mean`` sequence below: max |shards - one learner| 0.05-0.14 after
  each of the 6 pushes, one-step and 3-step).
* Concurrent chunks (both pulled the same table) merge into their update-count-weighted
  mean in either arrival order, with the counts added. The counts are the chunk's own
  (the table's per-cell batched updates, carried under any learning rate with
  ``build_learner(..., count_updates=True)``, as a Ray learner builds it); under
  ``lr_schedule="visit"`` the learners pull them back as the per-cell rate's n.
* ``count_updates`` changes nothing but the counts: the same table, bit for bit.
* ``sum`` adds changes; a checkpoint restores rows and counts."""

import jax
import numpy as np
import pytest

import jaxq
from jaxq.ray._actors import Shard, make_push
from jaxq.training import build_learner

BOUNDS = [0, 5, 16]  # two shards of FrozenLake 4x4's 16 states, unequal on purpose


def core(config):
    """The compiled chunk of ``config`` (as a Ray learner runs it) and its start carry
    for learner i."""
    learner = build_learner(config, count_updates=True)
    hp = config.hparams()
    init, chunk = jax.jit(learner.init), jax.jit(learner.chunk)

    def start(i):
        return init(jax.random.fold_in(jax.random.key(config.seed), i), hp)

    def run(carry, q, counts):
        """One chunk from pulled rows and counts: (carry, q after, counts after)."""
        qf = carry.qf._replace(q=jax.numpy.asarray(q),
                               visits=jax.numpy.asarray(counts, carry.qf.visits.dtype))
        carry, _ = chunk(carry._replace(qf=qf), hp)
        return carry, np.asarray(carry.qf.q), np.asarray(carry.qf.visits)

    return start, run


def shards(config, K=2):
    T, A = 1, 4
    return [Shard(p, lo, hi, np.full((T, hi - lo, A), config.q_init, np.float32), K, None, 0,
                  config.aggregation) for p, (lo, hi) in enumerate(zip(BOUNDS[:-1], BOUNDS[1:]))]


def pull(parts):
    return (np.concatenate([s.pull()[0] for s in parts], axis=1).copy(),
            np.concatenate([s.pull()[1] for s in parts], axis=1).copy())


def push(parts, learner, seq, q0, q1, c0, c1, mean):
    for shard, part in zip(parts, make_push(BOUNDS, q0, q1, c0, c1, mean)):
        assert shard.push(learner, seq, *part)[0] == "applied"


CFG = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=8, total_steps=8 * 50 * 6,
                       num_chunks=6, eval_every=0, lr=0.3)


@pytest.mark.parametrize("config", [CFG, CFG.replace(lr_schedule="visit"),
                                    CFG.replace(aggregation="sum"),
                                    CFG.replace(n_step=3)],
                         ids=["mean", "visit", "sum", "nstep3"])
def test_chunks_that_do_not_overlap_compose_as_one_learner(config):
    start, run = core(config)
    parts = shards(config)
    carries = [start(0), start(1)]
    q, c = pull(parts)
    mean = config.aggregation == "mean"
    one_q, one_c = q.copy(), c.copy()  # one learner running the same chunks in turn
    seqs = [0, 0]
    for k in range(6):
        i = k % 2  # the learners alternate; each pulls after the other's push landed
        q0, c0 = pull(parts)
        np.testing.assert_array_equal(q0, one_q)
        carries[i], q1, c1 = run(carries[i], q0, c0)
        seqs[i] += 1
        push(parts, i, seqs[i], q0, q1, c0, c1, mean)
        one_q, one_c = q1, c1
    q, c = pull(parts)
    assert np.abs(q - CFG.q_init).max() > 0.05  # it learned something
    np.testing.assert_array_equal(q, one_q)  # bit for bit
    np.testing.assert_array_equal(c, one_c)  # every batched update of the six chunks
    assert c.sum() > 6 * 50 and c.max() > 6


@pytest.mark.parametrize("order, schedule", [((0, 1), "constant"), ((1, 0), "visit")])
def test_concurrent_chunks_merge_into_their_count_weighted_mean(order, schedule):
    config = CFG.replace(lr_schedule=schedule)
    start, run = core(config)
    parts = shards(config)
    q_base, c_base = pull(parts)
    # a first round so that the counts differ from cell to cell
    carry, q1, c1 = run(start(5), q_base, c_base)
    push(parts, 0, 1, q_base, q1, c_base, c1, True)
    q0, c0 = pull(parts)
    results = [run(start(i), q0, c0)[1:] for i in (0, 1)]  # both from the same pull
    for i in order:
        push(parts, i, 2 if i == 0 else 1, q0, *results[i][:1], c0, results[i][1], True)
    q, c = pull(parts)
    (qa, va), (qb, vb) = results
    na, nb = (va - c0).astype(np.float64), (vb - c0).astype(np.float64)
    assert ((na > 0) & (nb > 0) & (na != nb)).any()  # unequal weights are exercised
    expect = np.where(na + nb > 0, (na * qa + nb * qb) / np.maximum(na + nb, 1), q0)
    np.testing.assert_allclose(q, expect, rtol=0, atol=2e-7)
    only_a, only_b = (na > 0) & (nb == 0), (nb > 0) & (na == 0)
    np.testing.assert_array_equal(q[only_a], qa[only_a])  # nobody else: exactly its value
    np.testing.assert_array_equal(q[only_b], qb[only_b])
    np.testing.assert_array_equal(c, va + vb - c0)


def test_sum_adds_concurrent_changes():
    config = CFG.replace(aggregation="sum", lr=0.05)
    start, run = core(config)
    parts = shards(config)
    q0, c0 = pull(parts)
    (_, qa, va), (_, qb, vb) = run(start(0), q0, c0), run(start(1), q0, c0)
    push(parts, 0, 1, q0, qa, c0, va, False)
    push(parts, 1, 1, q0, qb, c0, vb, False)
    q, c = pull(parts)
    np.testing.assert_allclose(q, q0 + (qa - q0) + (qb - q0), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(c, va + vb)


def test_a_checkpoint_restores_rows_and_counts(tmp_path):
    path = str(tmp_path / "shard_0.npz")
    shard = Shard(0, 0, 2, np.zeros((1, 2, 4), np.float32), 2, path, 1)
    shard.push(1, 1, np.array([0, 5], np.int32), np.array([0.5, -1.0], np.float32),
               np.array([3, 1], np.int32), np.array([0, 0], np.int32))
    again = Shard(0, 0, 2, np.zeros((1, 2, 4), np.float32), 2, path, 1)
    assert again.restored and again.last.tolist() == [0, 1]
    np.testing.assert_array_equal(again.q.reshape(-1)[[0, 5]], [0.5, -1.0])
    np.testing.assert_array_equal(again.counts.reshape(-1)[[0, 5]], [3, 1])
    assert again.push(1, 1, np.array([0], np.int32), np.array([9.0], np.float32),
                      np.array([1], np.int32), np.array([0], np.int32))[0] == "duplicate"


@pytest.mark.parametrize("config", [CFG.replace(num_chunks=1),
                                    CFG.replace(num_chunks=1, aggregation="sum", n_step=2)],
                         ids=["mean", "sum_nstep2"])
def test_counting_updates_changes_nothing_else(config):
    """The counts a Ray learner's chunk carries leave the learning itself alone: the
    table equals ``jaxq.train``'s chunk without them, bit for bit, and they count every
    batched update (a cell touched in a step counts 1, whatever the TD errors there)."""
    hp = config.hparams()
    key = jax.random.key(3)
    plain, counted = build_learner(config), build_learner(config, count_updates=True)
    a = jax.jit(plain.init)(key, hp)
    b = jax.jit(counted.init)(key, hp)
    assert a.qf.visits is None and b.qf.visits is not None
    a, _ = jax.jit(plain.chunk)(a, hp)
    b, _ = jax.jit(counted.chunk)(b, hp)
    np.testing.assert_array_equal(np.asarray(a.qf.q), np.asarray(b.qf.q))
    visits = np.asarray(b.qf.visits)
    steps = config.plan()["chunk_iters"]
    assert 0 < visits.max() <= steps
    assert visits.sum() <= steps * config.num_envs * config.n_step
    changed = np.asarray(b.qf.q) != config.q_init
    assert changed.any() and np.all(visits[changed] > 0)  # no change without an update
