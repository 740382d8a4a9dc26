"""The threefry lowering jaxq picks for XLA:CPU changes how fast the bits come, not the
bits; and it applies to jaxq's own programs only: a user's programs lower as JAX decides,
before and after importing and using jaxq."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxq
from jaxq import cpu_threefry


def _bits(shape):
    f = jax.jit(lambda k: jax.random.bits(k, shape, np.uint32))  # a fresh jit: lowered now
    key = jax.random.key(7)
    return np.asarray(f(key)), f.lower(key).as_text()


def _batched_bits(n):
    f = jax.jit(jax.vmap(lambda k: jax.random.bits(k, (5,), np.uint32)))
    keys = jax.random.split(jax.random.key(3), n)
    return np.asarray(f(keys)), f.lower(keys).as_text()


def test_scoped_lowering_is_undone_on_exit():
    _, before = _bits((3, 1000))
    assert "while" in before  # JAX's own CPU rule: the rolled loop
    with cpu_threefry.scoped("auto") as lowering:
        assert lowering == "auto"
        assert "while" not in _bits((3, 1000))[1]  # one key: unrolled
        assert "while" in _batched_bits(64)[1]  # batched keys: JAX's rolled loop
    assert _bits((3, 1000))[1] == before


def test_default_changes_nothing_unless_the_environment_opts_in(monkeypatch):
    """Opt-in: unset (or rolled), scoped() installs nothing and JAX's table is untouched."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as tf

    table = mlir._platform_specific_lowerings["cpu"]
    monkeypatch.delenv(cpu_threefry.ENV_VAR, raising=False)
    before = table.get(tf.threefry2x32_p)
    with cpu_threefry.scoped() as lowering:
        assert lowering is None and table.get(tf.threefry2x32_p) is before
        assert "while" in _bits((3, 1000))[1]  # JAX's own rolled loop
    monkeypatch.setenv(cpu_threefry.ENV_VAR, "auto")
    with cpu_threefry.scoped() as lowering:
        assert lowering == "auto" and "while" not in _bits((3, 1000))[1]
    assert table.get(tf.threefry2x32_p) is before


@pytest.mark.parametrize("lowering", ["unrolled", "auto"])
def test_same_bits_either_way(lowering):
    rolled, rolled_text = _bits((3, 1000))
    rolled_b, _ = _batched_bits(64)
    with cpu_threefry.scoped(lowering):
        other, other_text = _bits((3, 1000))
        other_b, other_b_text = _batched_bits(64)
    np.testing.assert_array_equal(rolled, other)
    np.testing.assert_array_equal(rolled_b, other_b)
    assert "while" in rolled_text and "while" not in other_text  # really two lowerings
    # auto keeps the rolled loop for a batch of keys (unrolled measured slower there)
    assert ("while" in other_b_text) == (lowering == "auto")


def test_same_table_either_way(monkeypatch):
    cfg = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=16, total_steps=16 * 50 * 2,
                           num_chunks=2, eval_every=0, seed=5)
    tables = []
    for lowering in ("rolled", "unrolled", "auto"):
        monkeypatch.setenv(cpu_threefry.ENV_VAR, lowering)
        tables.append(jaxq.train(cfg, progress=False).q)
    np.testing.assert_array_equal(tables[0], tables[1])
    np.testing.assert_array_equal(tables[0], tables[2])


def test_importing_and_training_leaves_a_users_lowering_unchanged():
    """A fresh process: the lowered text of the user's own jax.random.bits program is the
    same before importing jaxq and after importing it and training with it."""
    code = """
import jax, numpy as np
f = lambda: jax.jit(lambda k: jax.random.bits(k, (3, 1000), np.uint32)).lower(jax.random.key(7)).as_text()
before = f()
import jaxq
jaxq.train(jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=16, total_steps=16 * 10,
                            num_chunks=1, eval_every=0), progress=False)
print(before == f())
"""
    env = {k: v for k, v in os.environ.items() if k != cpu_threefry.ENV_VAR}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_bad_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(cpu_threefry.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="JAXQ_CPU_THREEFRY must be one of"):
        cpu_threefry.choice_from_env()
    with pytest.raises(ValueError, match="lowering must be one of"):
        with cpu_threefry.scoped("loop"):
            pass
