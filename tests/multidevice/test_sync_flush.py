"""``sync_every``: every TD error a step computes reaches the table (the last, partial block
of a chunk is applied when the chunk ends), checked against a sequential NumPy reference of
the buffered update, for tables and for tile-coded linear Q."""

import jax
import numpy as np
import pytest

from jaxq.config import TrainConfig
from jaxq.training import build_learner

ITERS = 10
GAMMA = 0.9
LR = 0.5


def _run(cfg):
    """Step the learner ITERS times (as its chunks do); return the table and transitions."""
    learner = build_learner(cfg)
    hp = cfg.hparams()
    step = jax.jit(learner.step)
    c = learner.init(jax.random.key(cfg.seed), hp)
    trans = []
    for _ in range(ITERS):
        c, _, tr = step(c, hp)
        trans.append(jax.tree.map(np.asarray, tr))
    return np.asarray(learner.estimate(c)), trans


def _buffered_reference(trans, num_rows, num_actions, chunk_iters, k, rows=None):
    """Q-learning with TD errors computed on the table as of the block's start, each cell's
    mean applied when the block ends: every k steps of a chunk, and at the chunk's end.

    ``rows(states) -> [T, N]``: the active rows of a linear Q-function (Q = the sum of
    the T rows' weights, each moving by LR / T times its cells' mean TD error); None: a
    table (the state is its row)."""
    rows = (lambda s: np.asarray(s)[None]) if rows is None else rows
    q = np.zeros((num_rows, num_actions))
    block = min(k, chunk_iters)
    entries = []
    for t, tr in enumerate(trans):
        entries.append(tr)
        in_chunk = t % chunk_iters
        if in_chunk % block != block - 1 and in_chunk != chunk_iters - 1:
            continue
        sums, counts = np.zeros_like(q), np.zeros_like(q)
        for e in entries:
            idx, idx_next = rows(e.s), rows(e.s_final)
            boot = q[idx_next].sum(axis=0).max(axis=1)
            td = e.r + GAMMA * np.where(e.terminated, 0.0, boot) - q[idx, e.a].sum(axis=0)
            for i in idx:  # every tiling's active row
                np.add.at(sums, (i, e.a), td)
                np.add.at(counts, (i, e.a), 1.0)
        q = q + LR / len(idx) * sums / np.maximum(counts, 1.0)
        entries = []
    assert not entries  # a run ends with a chunk
    return q


CLIFF = dict(env_id="CliffWalking-v0")  # 192 cells: the dense update path
TAXI = dict(env_id="Taxi-v3")  # 3000 cells: the sparse path (canonical when replicated)


# k = 3 and 7 leave a partial block at the chunk's end, k = 20 exceeds the chunk (it used
# to lose everything), two chunks of 5 steps with k = 4 flush mid-run and restart blocks.
@pytest.mark.parametrize("strategy,env,k,chunks", [
    ("replicated", CLIFF, 7, 1), ("replicated", TAXI, 20, 1), ("replicated", TAXI, 4, 2),
    ("sharded", CLIFF, 20, 1), ("sharded", TAXI, 3, 1), ("sharded", CLIFF, 4, 2),
])
def test_sync_every_applies_every_step(strategy, k, chunks, env):
    cfg = TrainConfig(**env, strategy=strategy, num_devices=2, sync_every=k, num_envs=64,
                      total_steps=64 * ITERS, num_chunks=chunks, lr=LR, lr_schedule="constant",
                      epsilon=1.0, epsilon_schedule="constant", gamma=GAMMA, eval_every=0)
    plan = cfg.plan()
    assert plan["iterations"] == ITERS
    q, trans = _run(cfg)
    want = _buffered_reference(trans, *q.shape, plan["chunk_iters"], k)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(q, want, rtol=2e-5, atol=2e-6)


# Linear Q over tile coding (CartPole-v1's observation vectors): the buffer holds the
# observations and every block's TD errors reach the tiles' weights. 2 tilings of 3^4
# tiles x 2 actions (324 cells) take the dense path, of 5^4 tiles (2500) the sparse one.
@pytest.mark.parametrize("strategy,tiles_per_dim,k,chunks", [
    ("replicated", 4, 3, 1), ("sharded", 2, 4, 2),
])
def test_sync_every_applies_every_step_to_tile_weights(strategy, tiles_per_dim, k, chunks):
    from jaxq.tiles import make_coder

    cfg = TrainConfig(env_id="CartPole-v1", q_function="tiles", tiles_per_dim=tiles_per_dim,
                      num_tilings=2, strategy=strategy, num_devices=2, sync_every=k,
                      num_envs=64, total_steps=64 * ITERS, num_chunks=chunks, lr=LR,
                      lr_schedule="constant", epsilon=1.0, epsilon_schedule="constant",
                      gamma=GAMMA, eval_every=0)
    learner = build_learner(cfg)
    coder = make_coder(learner.env, learner.params, cfg.env_id, tiles_per_dim, 2, None, None,
                       cfg.max_tiles)
    q, trans = _run(cfg)
    assert q.shape == (2 * (tiles_per_dim + 1) ** 4, 2) and trans[0].s.shape == (64, 4)
    want = _buffered_reference(trans, *q.shape, cfg.plan()["chunk_iters"], k,
                               rows=lambda s: np.asarray(coder.indices(s)))
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(q, want, rtol=2e-5, atol=2e-6)
