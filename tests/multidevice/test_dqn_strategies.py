"""DQN with strategies ``replicated`` and ``async`` on forced CPU devices (jaxq/dqn.py).

``replicated``: each device steps its own envs and keeps their rows of the env-major
replay ring, draws its share of the env-stratified minibatch from them, and one pmean
gives every device the global minibatch's gradient; every random number is drawn for all
N envs and sliced, so 2 and 4 devices run the single-device experiment (same episodes
exactly, parameters to float tolerance) with bit-identical replicas. ``async``: the
actors act on a copy of the online parameters refreshed every ``sync_every`` iterations;
``sync_every = 1`` is ``replicated`` bit for bit, ``sync_every = 4`` is another run, and a
mesh run interrupted mid-period resumes from its checkpoint (stale copy, sharded ring) bit
for bit (that stale actors still take the network to Q* of a probe MDP is
tests/slow/multidevice/test_dqn_probe.py, make test-slow). Tiny sizes: the
compiles are most of the time, so each program is built once for the module."""

import functools

import jax
import numpy as np
import pytest

from jaxq import dqn
from jaxq.deep_config import DeepConfig, train_deep
from jaxq.strategies import make_mesh

# 8 envs x 36 iterations: the 16-slot ring wraps; 4 chunks of 9 iterations
CONFIG = dict(algo="dqn", env_id="CartPole-v1", num_envs=8, total_steps=8 * 36, width=16,
              depth=1, num_chunks=4, eval_episodes=2, eval_max_steps=10, buffer_size=128,
              batch_size=16, learning_starts=32, target_update_every=4, lr=1e-3)
KEY = 5


@functools.lru_cache(maxsize=None)
def _run(strategy: str = "single", devices: int = 1, sync_every: int = 1):
    """``make_train_dqn``'s whole run of CONFIG (once per setting for the module)."""
    if strategy == "single":
        return jax.jit(dqn.make_train_dqn(DeepConfig(**CONFIG)))(jax.random.key(KEY))
    cfg = DeepConfig(**CONFIG, strategy=strategy, num_devices=devices, sync_every=sync_every)
    return jax.jit(dqn.make_train_dqn(cfg, make_mesh(devices)))(jax.random.key(KEY))


@pytest.mark.parametrize("devices", [2, 4])
def test_replicated_dqn_equals_one_device(devices):
    assert jax.device_count() >= devices
    one, rep = _run(), _run("replicated", devices)
    for leaf in jax.tree.leaves((rep.params, rep.target_params, rep.opt_state)):
        shards = [np.asarray(s.data) for s in leaf.addressable_shards]
        assert len(shards) == devices
        for s in shards[1:]:
            np.testing.assert_array_equal(shards[0], s)  # bit-identical replicas
    for a, b in zip(jax.tree.leaves((one.params, one.target_params)),
                    jax.tree.leaves((rep.params, rep.target_params))):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # the same experience and the same number of gradient steps, exactly
    for k in ("episodes", "return_sum", "length_sum", "gradient_steps"):
        np.testing.assert_array_equal(one.metrics[k], rep.metrics[k], err_msg=k)
    np.testing.assert_allclose(one.metrics["loss"], rep.metrics["loss"], rtol=1e-5)
    # it learned: gradient steps were taken, and the online network moved off the target
    # network between copies (runs that never moved would be trivially equal)
    assert int(one.metrics["gradient_steps"][-1]) == 36 - 32 // 8 + 1
    assert np.isfinite(np.asarray(one.metrics["loss"])[-1])
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(one.params), jax.tree.leaves(one.target_params)))


def test_async_with_sync_every_1_is_replicated_bit_for_bit():
    rep, asy = _run("replicated", 2), _run("async", 2, 1)
    for a, b in zip(jax.tree.leaves((rep.params, rep.target_params, rep.opt_state,
                                     rep.metrics)),
                    jax.tree.leaves((asy.params, asy.target_params, asy.opt_state,
                                     asy.metrics))):
        np.testing.assert_array_equal(a, b)


def test_async_mesh_run_resumes_bit_for_bit_and_differs_from_replicated(tmp_path):
    """sync_every = 4 on every device (one env each: a mesh of all devices is what the
    compile cache keeps, so the three calls compile once) through jaxq.deep_run:
    interrupted after chunk 2 (iteration 18, the copy refreshed at 16 still in use),
    resumed, it ends with the uninterrupted run's parameters, target network and metrics
    bit for bit; and the stale actors make it another run than ``replicated``."""
    devices = jax.device_count()
    assert CONFIG["num_envs"] % devices == 0
    cfg = DeepConfig(**CONFIG, strategy="async", num_devices=devices, sync_every=4)
    assert cfg.plan()["chunk_iters"] * 2 % cfg.sync_every != 0
    cache = str(tmp_path / "xla")
    full = train_deep(cfg, compile_cache=cache)
    out = str(tmp_path / "run")
    train_deep(cfg, out=out, checkpoint_every=1, stop_after_chunks=2, compile_cache=cache)
    resumed = train_deep(cfg, out=out, checkpoint_every=1, resume=True, compile_cache=cache)
    for a, b in zip(jax.tree.leaves((full.params, full.target_params)),
                    jax.tree.leaves((resumed.params, resumed.target_params))):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for k in full.metrics:  # NaN == NaN (the loss before learning starts)
        np.testing.assert_array_equal(full.metrics[k], resumed.metrics[k], err_msg=k)
    rep = _run("replicated", 2)
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
               zip(jax.tree.leaves(full.params), jax.tree.leaves(rep.params))) > 1e-3
    assert np.all(np.isfinite(full.metrics["loss"][1:]))


def test_envs_not_divisible_by_devices_is_refused_before_compiling():
    cfg = DeepConfig(**dict(CONFIG, num_envs=6, batch_size=12), strategy="replicated",
                     num_devices=4)
    with pytest.raises(ValueError, match=r"num_envs=6 must be divisible by the number of "
                                         r"devices \(4\) for strategy 'replicated'"):
        dqn.make_train_dqn(cfg, mesh=make_mesh(4))
    with pytest.raises(ValueError, match=r"num_envs=6 must be divisible"):
        train_deep(cfg.replace(strategy="async"))  # the chunked driver: same check, first
