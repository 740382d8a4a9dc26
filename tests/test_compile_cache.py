"""``jaxq train`` keeps JAX's persistent compilation cache: a second run with the same shapes
loads its programs (no new cache entries) instead of compiling them again. Subprocesses:
the cache is a process-wide JAX setting that only the command-line tool turns on."""

import os
import subprocess
import sys

ARGS = ["train", "--env", "FrozenLake-v1", "--num-envs", "64", "--total-steps", "6400",
        "--num-chunks", "2", "--eval-every", "0", "--no-progress"]


def _train(out, *extra, env=None):
    env = {**os.environ, **(env or {})}
    r = subprocess.run([sys.executable, "-m", "jaxq", *ARGS, "--out", str(out), *extra],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_second_run_hits_the_cache(tmp_path):
    cache = tmp_path / "cache"
    _train(tmp_path / "a", "--compile-cache", str(cache))
    entries = sorted(os.listdir(cache))
    assert len(entries) >= 2  # at least the init and the chunk programs
    _train(tmp_path / "b", env={"JAXQ_COMPILE_CACHE": str(cache)})  # the variable, this time
    assert sorted(os.listdir(cache)) == entries  # every program came from the cache


def test_opting_out_changes_nothing(tmp_path, monkeypatch):
    """In process (off, nothing of JAX's is touched): --no-compile-cache, 'off' and an
    empty setting create no folder and set no cache."""
    import jax

    from jaxq import cli

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAXQ_COMPILE_CACHE", "off")
    for path in (None, "off", "", cli.default_compile_cache()):
        assert cli.enable_compile_cache(path) is None
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "o"),
                                          "--no-compile-cache"])
    assert args.no_compile_cache
    assert not (tmp_path / "xdg").exists() and jax.config.jax_compilation_cache_dir == before
