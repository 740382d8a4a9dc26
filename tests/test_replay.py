"""The batched update against a sequential NumPy reference, on the dense path, and the
Boltzmann sampler against softmax(Q / T).

``test_learners.py`` replays one env (N = 1: the sparse scatter path). Here N = 4096 envs
share FrozenLake 4x4's 64 cells (N >= 64 x cells), so the step takes the dense per-cell
sums (``aggregate.use_dense``) and, for one-table epsilon-greedy rules, the per-state
greedy tables; hot cells get hundreds of TD errors per step, whose mean must be applied.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from jaxq import aggregate, explore
from jaxq.config import TrainConfig
from jaxq.training import build_learner

N, S, A = 4096, 16, 4
LR, GAMMA, EPS = 0.3, 0.9, 0.3


def _record(cfg, init_q, steps):
    """Run the learner ``steps`` batched steps; return its table and every transition
    (arrays over the N envs), and how many times each update path was traced."""
    traced = {"dense": 0, "sparse": 0, "greedy_tables": 0}
    originals = aggregate.apply_sums, aggregate.apply_updates, explore.greedy_table

    def counting(name, f):
        def wrapped(*args, **kw):
            traced[name] += 1
            return f(*args, **kw)
        return wrapped

    aggregate.apply_sums = counting("dense", originals[0])
    aggregate.apply_updates = counting("sparse", originals[1])
    explore.greedy_table = counting("greedy_tables", originals[2])
    try:
        learner = build_learner(cfg, init_q=init_q)
        hp = cfg.hparams()
        step = jax.jit(learner.step)
        c = jax.jit(learner.init)(jax.random.key(cfg.seed), hp)
        trans = []
        for _ in range(steps):
            c, _, tr = step(c, hp)
            trans.append(jax.tree.map(np.asarray, tr))
    finally:
        aggregate.apply_sums, aggregate.apply_updates, explore.greedy_table = originals
    return np.asarray(learner.estimate(c)), trans, traced


def _reference(algo, init_q, trans):
    """The batched per-cell-mean update, one step at a time, in float64: every env's TD
    error from the table before the step, averaged per (table, s, a), applied with lr."""
    tables = np.stack([init_q.astype(np.float64)] * (2 if algo == "double_q" else 1))
    for tr in trans:
        q = tables[0]
        s2 = tr.s_final
        if algo == "q_learning":
            boot = q[s2].max(1)
        elif algo == "sarsa":
            boot = q[s2, tr.a_boot]
        elif algo == "expected_sarsa":
            rows = q[s2]  # epsilon-greedy, the greedy mass split among tied maxima
            is_max = rows == rows.max(1, keepdims=True)
            p = EPS / A + (1 - EPS) * is_max / is_max.sum(1, keepdims=True)
            boot = (p * rows).sum(1)
        else:  # double_q: the updated table picks, the other one evaluates
            i = tr.table
            best = tables[i, s2].argmax(1)
            boot = tables[1 - i, s2, best]
        t = tr.table if algo == "double_q" else np.zeros(N, int)
        target = tr.r + np.where(tr.terminated, 0.0, GAMMA * boot)
        td = target - tables[t, tr.s, tr.a]
        acc = np.zeros(tables.shape)
        cnt = np.zeros(tables.shape)
        np.add.at(acc, (t, tr.s, tr.a), td)
        np.add.at(cnt, (t, tr.s, tr.a), 1)
        tables = tables + LR * acc / np.maximum(cnt, 1)
    return tables.mean(0)


@pytest.mark.parametrize("algo", ["q_learning", "sarsa", "expected_sarsa", "double_q"])
def test_dense_batched_update_equals_sequential_reference(algo):
    cfg = TrainConfig(env_id="FrozenLake-v1", algo=algo, num_envs=N, total_steps=N * 40,
                      lr=LR, lr_schedule="constant", epsilon=EPS, epsilon_schedule="constant",
                      gamma=GAMMA, eval_every=0, seed=2)
    cells = (2 if algo == "double_q" else 1) * S * A
    assert N >= 64 * S * A and aggregate.use_dense(cells, N)
    init_q = np.random.default_rng(0).uniform(0, 0.1, (S, A)).astype(np.float32)  # no ties
    q, trans, traced = _record(cfg, init_q, 12)
    assert traced["dense"] >= 1 and traced["sparse"] == 0, traced  # the path under test
    # one-table rules also act (and Q-learning bootstraps) through per-state greedy tables
    assert (traced["greedy_tables"] > 0) == (algo != "double_q"), traced
    # many envs per cell: the per-cell mean (not a sum) is what keeps this stable
    counts = np.bincount(trans[0].s * A + trans[0].a, minlength=S * A)
    assert counts.max() >= 256
    assert sum(int(t.terminated.sum()) for t in trans) > 500  # episodes end and reset
    ref = _reference(algo, init_q, trans)
    assert np.abs(ref - init_q).max() > 0.05  # the table moved
    np.testing.assert_allclose(q, ref, atol=2e-5, rtol=0)


# ---- Boltzmann sampling ------------------------------------------------------------

def _softmax(row, temperature):
    z = np.asarray(row, np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


_boltzmann = jax.jit(explore.boltzmann)  # one compile per action count


@settings(max_examples=40, deadline=None)
@given(row=st.lists(st.floats(-5, 5, width=32), min_size=2, max_size=6),
       temperature=st.floats(0.05, 10.0))
def test_boltzmann_over_every_16_bit_uniform_is_softmax(row, temperature):
    """The learner's action uniforms have 16 bits (``explore.halves``): over all 65,536
    of them, each action's share is softmax(Q / T) to within one uniform (1/65,536) plus
    float32 rounding of the CDF."""
    k = 1 << 16
    u = jnp.arange(k, dtype=jnp.float32) / k  # exactly the values halves() produces
    cols = tuple(jnp.full(k, x, jnp.float32) for x in row)
    actions = np.asarray(_boltzmann(cols, u, jnp.float32(temperature)))
    assert actions.min() >= 0 and actions.max() < len(row)
    freq = np.bincount(actions, minlength=len(row)) / k
    p = _softmax(np.float32(row), np.float32(temperature))
    np.testing.assert_allclose(freq, p, atol=1.0 / k + 1e-5 * len(row), rtol=0)


def test_boltzmann_frequencies_pass_a_chi_square_test():
    """Random uniforms (as the training loop draws them, through ``halves``) sampled
    200,000 times from a row with distinct values: the frequencies fit softmax(Q / T),
    and the temperature changes them (a sampler ignoring T would fail one of the two)."""
    row = [0.5, -1.0, 0.0, 1.2, 0.3]
    n = 200_000
    words = jax.random.bits(jax.random.key(0), (n,), jnp.uint32)
    _, u = explore.halves(words)
    cols = tuple(jnp.full(n, x, jnp.float32) for x in row)
    for temperature in (0.25, 1.0, 4.0):
        a = np.asarray(_boltzmann(cols, u, jnp.float32(temperature)))
        observed = np.bincount(a, minlength=len(row))
        expected = _softmax(row, temperature) * n
        assert stats.chisquare(observed, expected).pvalue > 1e-3, (temperature, observed)
    # a low temperature is greedy (but for u = 0, which picks the first action with any
    # mass: 16-bit uniforms resolve probabilities to 1/65,536), a high one nearly uniform
    cold = np.bincount(np.asarray(_boltzmann(cols, u, jnp.float32(0.01))), minlength=5)
    hot = np.bincount(np.asarray(_boltzmann(cols, u, jnp.float32(1e3))), minlength=5)
    assert cold[3] >= n * (1 - 2 / 65536) and np.all(np.abs(hot / n - 0.2) < 5 * math.sqrt(0.16 / n))
