"""jaxq.ray: asynchronous learners and parameter-server shards on a local Ray instance
(started once for the module on 127.0.0.1 with 2 CPUs, stopped at the end).

Ground truth is value iteration on the exact model: an asynchronous run must reach a
greedy policy within 3% of V*(start) and max|Q - Q*| comparable to ``jaxq.train`` with the
same env steps (one-step: 0.06-0.11 over 8 seeds; 2-step: 0.12-0.21), also when a learner
and a shard die mid-run, with every acknowledged push applied exactly once. The runs share
one compile cache, so a restarted learner loads its chunk."""

import json
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

import jaxq
from cli_runner import error, run

ray = pytest.importorskip("ray")
import jaxq.ray as jray  # noqa: E402

CONFIG = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=64, total_steps=400_000,
                          num_chunks=20, eval_every=0)


@pytest.fixture(scope="module")
def cluster():
    with warnings.catch_warnings():  # Ray forks its daemons; this process's JAX is idle
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def truth():
    env, params = jaxq.make(CONFIG.env_id)
    model = jaxq.tabular_model(env, params)
    return model, np.asarray(jaxq.value_iteration(model, CONFIG.gamma))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla"))


def _greedy_gap(model, q_star, q):
    """1 - V^greedy(start) / V*(start), exactly on the model."""
    from jaxq.model import greedy_policy

    v_star = float(jaxq.start_value(model, q_star))
    v = float(jaxq.policy_start_value(model, greedy_policy(q, model.valid), CONFIG.gamma))
    return 1.0 - v / v_star


def _exactly_once(report, chunks):
    assert report["applied_equals_acknowledged"]
    assert report["acknowledged"] == [chunks] * report["num_learners"]
    for shard in report["shards"]:
        assert shard["applied"] == report["acknowledged"]


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
    _exactly_once(r, 20)
    assert r["restarts"] == [0, 1] and r["learners"][1]["resumed_at_chunk"] == 4
    assert r["shards"][0]["restored_from_checkpoint"]
    assert not r["shards"][1]["restored_from_checkpoint"]
    assert r["shards"][0]["rows"] == [0, 8] and r["shards"][1]["rows"] == [8, 16]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard_0.npz", "shard_1.npz"]
    assert result.q.shape == (16, 4) and result.q.dtype == np.float32
    err = float(np.max(np.abs(result.q - q_star)))
    assert result.metrics["q_error"][-1] == pytest.approx(err, rel=1e-6)
    assert err < 0.15, err
    assert _greedy_gap(model, q_star, result.q) < 0.03
    m = result.metrics
    assert len(m["env_steps"]) == 20 and m["env_steps"][-1] == CONFIG.plan()["env_steps"]
    assert m["episodes"][-1] > 10_000
    for rep in r["learners"]:
        assert rep["steps_per_s"] > 0 and 0 <= rep["lead_max"] <= 2  # the bound held
    assert r["learners"][0]["env_steps"] == CONFIG.plan()["env_steps"] // 2
    assert result.summary()["env_steps"] == CONFIG.plan()["env_steps"]


def test_cli_trains_nstep_on_ray(cluster, truth, cache, tmp_path):
    """jaxq train --ray with one learner (K = 1: every push applied in full) and two
    shards: the same files as jaxq train, the Ray report in metrics.json."""
    model, q_star = truth
    out = tmp_path / "run"
    code, stdout, _ = run(["train", "--env", "FrozenLake-v1", "--num-envs", "64",
                           "--total-steps", "400000", "--num-chunks", "20", "--eval-every", "0",
                           "--n-step", "2", "--ray", "local", "--ray-learners", "1",
                           "--ps-shards", "2", "--max-staleness", "3", "--no-progress",
                           "--compile-cache", cache, "--out", str(out)])
    assert code == 0
    assert "applied by every shard: yes" in stdout
    q = np.load(out / "q.npy")
    metrics = json.loads((out / "metrics.json").read_text())
    _exactly_once(metrics["ray"], 20)
    assert metrics["ray"]["num_shards"] == 2 and metrics["ray"]["push_scale"] == 1.0
    assert metrics["final_evaluation"]["max_abs_q_error"] == pytest.approx(
        float(np.max(np.abs(q - q_star))), rel=1e-6)
    assert metrics["final_evaluation"]["max_abs_q_error"] < 0.3  # jaxq.train: 0.12-0.21
    assert _greedy_gap(model, q_star, q) < 0.03
    assert len(metrics["history"]["env_steps"]) == 20
    assert json.loads((out / "config.json").read_text())["n_step"] == 2


def test_sweep_equals_one_vmapped_call_and_retries_a_lost_block(cluster, cache, tmp_path):
    from jaxq.ray._sweep import grid_points, train_block

    config = CONFIG.replace(num_envs=16, total_steps=16_000, num_chunks=2)
    grid = {"seed": [0, 1], "lr": [0.1, 0.5]}
    # 2 CPUs a block: one at a time here, so the second loads the first's program
    result = jray.sweep(config, grid, block_size=2, cpus_per_block=2, lose_blocks=(1,),
                        compile_cache=cache, progress=False)
    assert result.blocks == 2 and result.retried_blocks == [1]
    seeds, leaves = grid_points(config, grid)
    q, _ = train_block(config.to_json(), seeds, leaves)  # the whole grid, one vmapped call
    np.testing.assert_array_equal(result.q, q)
    assert [(r["seed"], r["lr"]) for r in result.rows] == [(0, 0.1), (0, 0.5), (1, 0.1), (1, 0.5)]
    for r in result.rows:
        # V^pi <= V* (up to policy evaluation's tolerance, 1e-6 per sweep)
        assert 0 < r["greedy_value"] <= r["optimal_value"] * (1 + 1e-4) and r["q_error"] > 0
    pytest.importorskip("matplotlib")
    assert result.heatmap(str(tmp_path / "sweep.png"))
    assert (tmp_path / "sweep.png").stat().st_size > 1000


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
