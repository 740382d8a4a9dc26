"""jaxq keeps its own compiled programs on disk (``jaxq.compile_cache``): a second run with
the same shapes loads them (no new entries) and trains the same table, bit for bit; and
nothing of JAX's process-wide settings changes."""

import os

import jax
import numpy as np

import jaxq
from cli_runner import run
from jaxq import cli, compile_cache

CFG = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=64, total_steps=6400, num_chunks=2,
                       eval_every=1, eval_episodes=32)


def test_second_run_loads_the_programs_and_trains_the_same_table(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    cache = tmp_path / "cache"
    a = jaxq.train(CFG, progress=False, compile_cache=str(cache))
    entries = sorted(os.listdir(cache))
    assert len(entries) == 2  # the init and the chunk programs
    b = jaxq.train(CFG, progress=False, compile_cache=str(cache))
    assert sorted(os.listdir(cache)) == entries  # both came from the cache
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.metrics["eval_return"], b.metrics["eval_return"])
    assert jax.config.jax_compilation_cache_dir == before  # JAX's own cache untouched
    for name in entries:  # a damaged entry is compiled afresh, not a failure
        (cache / name).write_bytes(b"not an executable")
    c = jaxq.train(CFG, progress=False, compile_cache=str(cache))
    np.testing.assert_array_equal(a.q, c.q)


def test_cli_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(compile_cache.ENV_VAR, raising=False)
    assert compile_cache.default_dir() == str(tmp_path / "xdg" / "jaxq" / "xla")
    assert compile_cache.default_dir("off") is None and compile_cache.default_dir("") is None
    assert compile_cache.default_dir(str(tmp_path / "c")) == str(tmp_path / "c")
    monkeypatch.setenv(compile_cache.ENV_VAR, "off")
    assert compile_cache.default_dir() is None
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "o"),
                                          "--no-compile-cache"])
    assert args.no_compile_cache


def test_cli_rerun_hits_the_cache(tmp_path):
    """--compile-cache reaches jaxq.train: the CLI's run (in process: the flag is the
    point, not a fresh process) leaves its two programs there."""
    cache = tmp_path / "cache"
    argv = ["train", "--env", "FrozenLake-v1", "--num-envs", "64",
            "--total-steps", "6400", "--num-chunks", "2", "--eval-every", "0", "--no-progress",
            "--out", str(tmp_path / "a"), "--compile-cache", str(cache)]
    code, _, err = run(argv)
    assert code == 0, err[-2000:]
    assert len(os.listdir(cache)) == 2
