"""jaxq's compile cache with 8 devices present (``jaxq.compile_cache``): an entry is
loaded back onto the devices its program was built for, not onto every device of the
process. Loaded onto all 8, a one-device program failed at its first call ("Expected args
to execute_sharded_on_local_devices to have 8 shards, got: [1]"), which is why a program
on a mesh of 2 of 8 was not cached at all before."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxq
from jaxq import compile_cache

def _entries(cache) -> dict[str, tuple[int, int]]:
    """Each entry's file identity: a program compiled afresh replaces its entry (a new
    file), so an unchanged identity means the entry was loaded, not rewritten."""
    return {name: (os.stat(os.path.join(cache, name)).st_ino,
                   os.stat(os.path.join(cache, name)).st_mtime_ns)
            for name in os.listdir(cache)}


SMALL = dict(env_id="FrozenLake-v1", num_envs=64, total_steps=640, num_chunks=2,
             eval_every=1, eval_episodes=8)


def test_rerun_of_a_one_device_run_loads_its_programs(tmp_path):
    """The second run of a strategy 'single' table config (one device of 8) loads both
    programs and trains the same table, bit for bit. (Meshes of some of the devices:
    the next test; jaxq.deep_config.train_deep goes through the same compile.)"""
    cfg = jaxq.TrainConfig(**SMALL)
    cache = tmp_path / "cache"
    a = jaxq.train(cfg, progress=False, compile_cache=str(cache))
    entries = _entries(cache)
    assert len(entries) == 2  # the init and the chunk programs
    b = jaxq.train(cfg, progress=False, compile_cache=str(cache))
    assert _entries(cache) == entries  # both loaded, none compiled again
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.metrics["eval_return"], b.metrics["eval_return"])


def test_same_program_on_other_devices_is_another_entry(tmp_path):
    """The lowered text of a program on device 0 and on device 3 (or on devices 0-1 and
    2-3) is the same: the device ids name the entry too, and each loads onto its own."""
    f = jax.jit(lambda x: jnp.cumsum(x) * 2)
    cache = str(tmp_path)
    placements = [[0], [3], [0, 1], [2, 3]]
    for rerun in (False, True):
        if rerun:
            entries = _entries(cache)
        for ids in placements:
            devices = [jax.devices()[i] for i in ids]
            x = jax.device_put(jnp.arange(8.0), NamedSharding(Mesh(devices, ("d",)), P("d")))
            c = compile_cache.compile(f.lower(x), cache)
            assert list(c.runtime_executable().local_devices()) == devices
            y = c(x)
            assert y.sharding.device_set == set(devices)
            np.testing.assert_array_equal(y, np.cumsum(np.arange(8.0)) * 2)
        assert len(os.listdir(cache)) == len(placements)
    assert _entries(cache) == entries  # the rerun loaded every one
