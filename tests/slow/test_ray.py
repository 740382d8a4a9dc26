"""jaxq.ray: asynchronous learners and parameter-server shards on a local Ray instance
(started once for the module on 127.0.0.1 with 2 CPUs, stopped at the end).

Ground truth is value iteration on the exact model: an asynchronous run must reach a
greedy policy within 3% of V*(start) and max|Q - Q*| comparable to ``jaxq.train`` with the
same env steps (one-step: 0.06-0.11 over 8 seeds), also when a learner and a shard die
mid-run, with every acknowledged push applied exactly once; a restarted learner loads its
chunk from the compile cache. ``jaxq train --ray`` (n-step) and ``jaxq.ray.sweep`` run end
to end in tests/slow/test_ray_e2e.py. Both files are in tests/slow (``make test-slow``, run
by ``make test-all`` and CI): a Ray instance, its actors and their compiles took ~36 s of
the 2-core machine, which ``make test``'s 8 minutes no longer had room for."""

import socket
import subprocess
import sys

import numpy as np
import pytest

from cli_runner import error

from ray_common import CONFIG, cache, cluster, exactly_once, greedy_gap, truth  # noqa: E402,F401  (fixtures)
import jaxq.ray as jray  # noqa: E402


def test_learners_and_shards_learn_frozenlake_through_a_lost_learner_and_shard(
        cluster, truth, cache, tmp_path):
    """2 learners x 2 shards. Learner 1's process dies after its 5th chunk, before pushing
    it (Ray restarts it; it resumes from the shards at its first unacknowledged push, the
    5th); shard 0's dies after applying its 14th push, before acknowledging it (restarted
    from its checkpoint of push 12; the learners replay pushes 13 and 14 from their
    buffers, the repeated 14th is dropped)."""
    model, q_star = truth
    result = jray.train(CONFIG, q_star, num_learners=2, num_shards=2, max_staleness=2,
                        checkpoint_dir=str(tmp_path), checkpoint_every=4,
                        faults={"learner": {1: 5}, "shard": {0: 14}}, compile_cache=cache,
                        progress=False)
    r = result.ray
    exactly_once(r, 20)
    assert r["restarts"] == [0, 1] and r["learners"][1]["resumed_at_chunk"] == 4
    assert r["shards"][0]["restored_from_checkpoint"]
    assert not r["shards"][1]["restored_from_checkpoint"]
    assert r["shards"][0]["rows"] == [0, 8] and r["shards"][1]["rows"] == [8, 16]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard_0.npz", "shard_1.npz"]
    assert result.q.shape == (16, 4) and result.q.dtype == np.float32
    err = float(np.max(np.abs(result.q - q_star)))
    assert result.metrics["q_error"][-1] == pytest.approx(err, rel=1e-6)
    assert err < 0.15, err
    assert greedy_gap(model, q_star, result.q) < 0.03
    m = result.metrics
    assert len(m["env_steps"]) == 20 and m["env_steps"][-1] == CONFIG.plan()["env_steps"]
    assert m["episodes"][-1] > 10_000
    for rep in r["learners"]:
        assert rep["steps_per_s"] > 0 and 0 <= rep["lead_max"] <= 2  # the bound held
    assert r["learners"][0]["env_steps"] == CONFIG.plan()["env_steps"] // 2
    assert result.summary()["env_steps"] == CONFIG.plan()["env_steps"]


def test_unreachable_address_is_a_clear_error_within_the_timeout(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # held, never listening: connections are refused
        port = s.getsockname()[1]
        with pytest.raises(ConnectionError, match=rf"127.0.0.1:{port}.*within 2 s"):
            jray.train(CONFIG, address=f"127.0.0.1:{port}", timeout=2, progress=False)
        err = error(capsys, ["train", "--ray", f"127.0.0.1:{port}", "--ray-timeout", "1",
                             "--out", str(tmp_path / "x")])
    assert f"--ray '127.0.0.1:{port}': no Ray cluster reachable" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"num_learners": 0}, "num_learners must be an int >= 1, got 0"),
    ({"num_shards": 17}, r"num_shards must be at most the number of states \(16\), got 17"),
    ({"max_staleness": -1}, "max_staleness must be an int >= 0, got -1"),
    ({"num_learners": 3}, "num_envs=64 must be divisible by num_learners"),
    ({"address": "localhost"}, "address must be 'local', 'auto', HOST:PORT"),
    ({"address": "10.0.0.1:99999"}, "address must be"),
])
def test_bad_input_is_refused_before_any_actor(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jray.train(CONFIG, progress=False, **kwargs)


@pytest.mark.parametrize("flags, match", [
    (["--ray-learners", "0"], "--ray-learners must be an int >= 1, got 0"),
    (["--ps-shards", "17"], "--ps-shards must be at most the number of states (16), got 17"),
    (["--max-staleness", "-1"], "--max-staleness must be an int >= 0, got -1"),
    (["--ray", "host:port"], "--ray must be 'local', 'auto', HOST:PORT or ray://HOST:PORT"),
    (["--learners", "independent"], "cannot hold"),
    (["--resume"], "--resume does not combine with --ray"),
])
def test_cli_bad_ray_flags_exit_2_before_writing(capsys, tmp_path, flags, match):
    argv = ["train", "--ray", "local", "--out", str(tmp_path / "run")] + flags
    err = error(capsys, argv)
    assert match in err, err
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_used_ps_checkpoint_dir_before_writing(capsys, tmp_path):
    used = tmp_path / "shards"
    used.mkdir()
    (used / "shard_0.npz").write_bytes(b"")
    argv = ["train", "--ray", "local", "--ps-checkpoint-dir", str(used),
            "--out", str(tmp_path / "run")]
    err = error(capsys, argv)
    assert "--ps-checkpoint-dir" in err and "shard_0.npz" in err, err
    assert not (tmp_path / "run").exists()


def test_a_table_the_shards_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="more than the shards serve"):
        jray.check_options(CONFIG.replace(env_id="Maze-v0", env_kwargs={"size": 4096},
                                          algo="double_q"), 2, 2, 1)
    with pytest.raises(ValueError, match="q_function='tiles'.*rows by state"):
        jray.check_options(CONFIG.replace(q_function="tiles"), 2, 2, 1)


def test_importing_jaxq_does_not_import_ray():
    code = ("import sys, jaxq, jaxq.ray, jaxq.cli; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("grid, match", [
    (["foo=1"], "--grid key 'foo' cannot be swept; accepted: ['seed', 'lr'"),
    (["seed=a"], "--grid seed must hold ints >= 0, got 'a'"),
    (["lr=-1"], "--grid: --lr must be in (0.0, inf), got -1.0"),
    ([], "jaxq sweep needs at least one --grid KEY=V1,V2,..."),
])
def test_cli_sweep_bad_grid_exits_2_before_writing(capsys, tmp_path, grid, match):
    argv = ["sweep", "--env", "FrozenLake-v1", "--out", str(tmp_path / "s")]
    err = error(capsys, argv + [x for g in grid for x in ("--grid", g)])
    assert match in err, err
    assert not (tmp_path / "s").exists()


def test_a_checkpoint_dir_holding_another_runs_shards_is_refused(tmp_path):
    """A shard resumes from the checkpoint it finds: another run's would silently become
    this run's table and drop the new learners' first pushes as repeats."""
    (tmp_path / "shard_1.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint_dir .* already holds shard checkpoints "
                                         r"of another run \(shard_1.npz\)"):
        jray.train(CONFIG, checkpoint_dir=str(tmp_path), progress=False)
    jray.check_checkpoint_dir(str(tmp_path / "new"))  # absent or empty: fine
    (tmp_path / "other.txt").write_text("x")
    jray.check_checkpoint_dir(str(tmp_path / "new"))
