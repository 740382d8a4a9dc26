"""The threefry lowering jaxq picks for XLA:CPU changes how fast the bits come, not the
bits: tables are the same under either."""

import jax
import numpy as np
import pytest

import jaxq
from jaxq import cpu_threefry
from jaxq.training import CPU_THREEFRY


@pytest.fixture
def restore():
    yield
    cpu_threefry.set_cpu_threefry(CPU_THREEFRY or "rolled")


def _bits(shape):
    f = jax.jit(lambda k: jax.random.bits(k, shape, np.uint32))  # a fresh jit: lowered now
    key = jax.random.key(7)
    return np.asarray(f(key)), f.lower(key).as_text()


def _batched_bits(n):
    f = jax.jit(jax.vmap(lambda k: jax.random.bits(k, (5,), np.uint32)))
    keys = jax.random.split(jax.random.key(3), n)
    return np.asarray(f(keys)), f.lower(keys).as_text()


def test_jaxq_picks_auto_by_default(restore, monkeypatch):
    monkeypatch.delenv(cpu_threefry.ENV_VAR, raising=False)
    assert cpu_threefry.configure_from_env() == "auto"
    assert "while" not in _bits((3, 1000))[1]  # one key: unrolled
    assert "while" in _batched_bits(64)[1]  # batched keys: JAX's rolled loop


@pytest.mark.parametrize("lowering", ["unrolled", "auto"])
def test_same_bits_either_way(restore, lowering):
    assert cpu_threefry.set_cpu_threefry("rolled")
    rolled, rolled_text = _bits((3, 1000))
    rolled_b, _ = _batched_bits(64)
    assert cpu_threefry.set_cpu_threefry(lowering)
    other, other_text = _bits((3, 1000))
    other_b, other_b_text = _batched_bits(64)
    np.testing.assert_array_equal(rolled, other)
    np.testing.assert_array_equal(rolled_b, other_b)
    assert "while" in rolled_text and "while" not in other_text  # really two lowerings
    # auto keeps the rolled loop for a batch of keys (unrolled measured slower there)
    assert ("while" in other_b_text) == (lowering == "auto")


def test_same_table_either_way(restore):
    cfg = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=16, total_steps=16 * 50 * 2,
                           num_chunks=2, eval_every=0, seed=5)
    tables = []
    for lowering in ("rolled", "unrolled", "auto"):
        assert cpu_threefry.set_cpu_threefry(lowering)
        tables.append(jaxq.train(cfg, progress=False).q)
    np.testing.assert_array_equal(tables[0], tables[1])
    np.testing.assert_array_equal(tables[0], tables[2])


def test_bad_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(cpu_threefry.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="JAXQ_CPU_THREEFRY must be one of"):
        cpu_threefry.configure_from_env()
    with pytest.raises(ValueError, match="lowering must be one of"):
        cpu_threefry.set_cpu_threefry("loop")
