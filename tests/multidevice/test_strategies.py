"""Device-parallel strategies on 8 forced CPU devices (``make test`` runs this session
with ``JAXQ_MULTIDEVICE=1``): equality with one device, table placement, staleness,
the errors (several processes: tests/slow/multidevice/test_multi_process.py)."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxq
from jaxq.config import TrainConfig
from jaxq.training import build_learner, make_train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = dict(env_id="FrozenLake-v1", num_envs=64, total_steps=64 * 200, num_chunks=2,
             eval_every=2, eval_episodes=64)


def test_eight_devices():
    assert jax.device_count() == 8


def _q(cfg):
    return np.asarray(jax.jit(make_train(cfg))(jax.random.key(0)).q)


ALL3 = ("replicated", "sharded", "async")


# Every strategy on the dense path (FrozenLake 4x4: 64 cells, 64 envs) and the sparse path
# (a 20x20 maze, padded rows); every other rule, schedule, exploration, aggregation and a
# gymnax env under the strategies where its layout differs most (each compile costs
# seconds on a 2-core CPU, so not every combination).
@pytest.mark.parametrize("kw, strategies", [
    (dict(algo="q_learning"), ALL3),
    (dict(env_id="Maze-v0", env_kwargs={"size": 20, "start": "uniform"}), ALL3),
    (dict(algo="sarsa", n_step=3), ("sharded",)),  # n-step windows of split envs
    (dict(algo="double_q", lr_schedule="visit"), ("replicated", "sharded")),  # visit counts
    (dict(algo="expected_sarsa", exploration="boltzmann"), ("async",)),
    (dict(env_id="Taxi-v3", aggregation="sum"), ("replicated", "async")),
    (dict(env_id="CartPole-v1", bins=4), ("sharded",)),  # a gymnax env: keys, not words
], ids=["dense", "sparse", "sarsa3", "double_q-visit", "expected_sarsa-boltzmann", "taxi-sum",
        "cartpole"])
def test_replicated_sharded_async_equal_single_device(kw, strategies):
    cfg = TrainConfig(**{**SMALL, "eval_every": 0, **kw})  # tables only: no eval to compile
    single = _q(cfg)
    for strategy in strategies:
        q = _q(cfg.replace(strategy=strategy))
        # the same random numbers and the same per-cell summation order; XLA may still
        # fuse the arithmetic differently per device count (a few ulps)
        np.testing.assert_allclose(q, single, rtol=1e-5, atol=1e-6, err_msg=strategy)


# Linear Q over tile coding (CartPole-v1's observation vectors, 2 tilings of 5^4 tiles):
# the weights are a table of tile rows on the same stores, so replicated and sharded must
# give the single device's weights, and async with sync_every = 3 (chunks of 25 steps, not
# a multiple of 3) acts on a 3-step-old snapshot exactly as on one device of its mesh.
# Buffered replicated/sharded blocks of tiles are checked against a NumPy reference in
# test_sync_flush.py. (5 compiles: ~30 s CPU on the 2-core VM.)
TILES = dict(SMALL, env_id="CartPole-v1", q_function="tiles", tiles_per_dim=4, num_tilings=2,
             total_steps=64 * 50, eval_every=0)


def test_tiles_under_every_strategy_equal_one_device():
    cfg = TrainConfig(**TILES)
    single = _q(cfg)
    assert single.shape == (2 * 5**4, 2) and np.abs(single).max() > 0.1
    for strategy in ("replicated", "sharded"):
        out = jax.jit(make_train(cfg.replace(strategy=strategy)))(jax.random.key(0))
        np.testing.assert_allclose(out.q, single, rtol=1e-5, atol=1e-6, err_msg=strategy)
        if strategy == "sharded":  # 1250 weight rows padded to 1256: 157 per device
            assert {s.data.shape for s in out.carry.q.addressable_shards} == {(1, 157, 2)}
    stale = cfg.replace(strategy="async", sync_every=3)
    on_one = _q(stale.replace(num_devices=1))
    np.testing.assert_allclose(_q(stale), on_one, rtol=1e-5, atol=1e-6, err_msg="async")
    assert np.abs(on_one - single).max() > 1e-3


def test_table_placement():
    for strategy, spec, shard in [("replicated", (), (1, 16, 4)),
                                  ("sharded", (None, "d"), (1, 2, 4))]:
        cfg = TrainConfig(**SMALL, strategy=strategy)
        learner = build_learner(cfg)
        c = jax.jit(learner.init)(jax.random.key(0), cfg.hparams(), learner.params)
        assert tuple(c.q.sharding.spec) == spec
        assert {s.data.shape for s in c.q.addressable_shards} == {shard}
        assert tuple(c.obs.sharding.spec) == ("d",)  # environments split across devices


def test_sharded_4096_maze_table_holds_one_eighth_per_device():
    cfg = TrainConfig(env_id="Maze-v0", env_kwargs={"size": 4096, "start": "uniform"},
                      strategy="sharded", num_envs=64, total_steps=64 * 4, num_chunks=1,
                      eval_every=0)
    learner = build_learner(cfg)
    hp = cfg.hparams()
    c = jax.jit(learner.init)(jax.random.key(0), hp, learner.params)
    assert c.q.shape == (1, 4096 * 4096, 4)
    assert [s.data.shape for s in c.q.addressable_shards] == [(1, 4096 * 4096 // 8, 4)] * 8
    c, m = jax.jit(learner.chunk)(c, hp, learner.params)
    assert int(m["td_count"]) == 64 * 4 and int(c.t) == 4
    assert [s.data.shape for s in c.q.addressable_shards] == [(1, 4096 * 4096 // 8, 4)] * 8


def test_buffered_sync_is_stale_but_deterministic():
    cfg = TrainConfig(**{**SMALL, "eval_every": 0})  # tables only: no eval to compile
    single = _q(cfg)
    a = _q(cfg.replace(strategy="replicated", sync_every=4))
    b = _q(cfg.replace(strategy="sharded", sync_every=4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, single)


@pytest.fixture(scope="module")
def frozen_q_star():
    env, params = jaxq.make("FrozenLake-v1")
    return jaxq.value_iteration(jaxq.tabular_model(env, params), 0.99, tol=1e-7)


# Small: 1M steps of 256 envs (async 0.049, replicated 0.157 here; a table that does not
# learn stays max|Q*| = 0.86 away, as lr = 1e-6 does on one device in test_learners). The
# 6M-step runs to 0.05 are in tests/slow/multidevice (make test-slow).
@pytest.mark.parametrize("strategy, k, tol", [("async", 16, 0.1), ("replicated", 8, 0.2)])
def test_stale_tables_still_converge_to_q_star(strategy, k, tol, frozen_q_star):
    cfg = TrainConfig(env_id="FrozenLake-v1", strategy=strategy, sync_every=k, num_envs=256,
                      total_steps=1_000_000, num_chunks=2, eval_every=0, lr=0.2, lr_end=0.005,
                      epsilon=1.0, epsilon_end=1.0)
    out = jax.jit(make_train(cfg, frozen_q_star))(jax.random.key(0))
    assert float(out.metrics["q_error"][-1]) < tol


@pytest.mark.parametrize("changes, match", [
    (dict(strategy="replicated", num_devices=16), "only 8 device"),
    (dict(strategy="sharded", num_envs=60), "divisible"),
])
def test_bad_device_requests(changes, match):
    with pytest.raises(ValueError, match=match):
        build_learner(TrainConfig(**{**SMALL, **changes}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args, env_extra=None):
    env = {**os.environ, "XLA_FLAGS": "", "JAXQ_MULTIDEVICE": "", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "jaxq", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


TRAIN_ARGS = ["--env", "FrozenLake-v1", "--num-envs", "64", "--total-steps", "25600",
              "--num-chunks", "2", "--eval-episodes", "64", "--no-progress"]


def test_unreachable_coordinator_is_a_clear_error(tmp_path):
    p = _cli(TRAIN_ARGS + ["--strategy", "replicated", "--out", str(tmp_path),
                           "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2",
                           "--process-id", "1", "--coordinator-timeout", "2"])
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 2 and "unreachable after 2s" in out, out


