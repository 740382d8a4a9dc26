"""jaxq.ray end to end (``make test-slow``, ``JAXQ_SLOW=1``): ``jaxq train --ray`` writing
a run's files with n-step Q-learning, and ``jaxq.ray.sweep`` equal bit for bit to one
vmapped call with a lost block retried. Each starts Ray workers that import JAX and
compile, so they live here, beside test_ray.py (2 learners x 2 shards learning FrozenLake
through a lost learner and shard, bad input, unreachable address); ray_common.py holds what
both use.
"""

import json

import numpy as np
import pytest

import jaxq
from cli_runner import run

from ray_common import CONFIG, cache, cluster, exactly_once, greedy_gap, truth  # noqa: E402,F401  (fixtures)
import jaxq.ray as jray  # noqa: E402


def test_cli_trains_nstep_on_ray(cluster, truth, cache, tmp_path):
    """jaxq train --ray with one learner (every push applied in full) and two
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
    exactly_once(metrics["ray"], 20)
    assert metrics["ray"]["num_shards"] == 2 and metrics["ray"]["num_learners"] == 1
    assert metrics["final_evaluation"]["max_abs_q_error"] == pytest.approx(
        float(np.max(np.abs(q - q_star))), rel=1e-6)
    assert metrics["final_evaluation"]["max_abs_q_error"] < 0.3  # jaxq.train: 0.12-0.21
    assert greedy_gap(model, q_star, q) < 0.03
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


def test_two_learners_two_shards_learn_frozenlake_8x8_within_3_percent(cluster, cache):
    """The issue's target: 2 learners x 2 shards on FrozenLake 8x8 reach a greedy policy
    within 3% of V*(start) (measured 0.5-1.8% over seeds 0-2 with the count-weighted merge,
    0.06-0.65% over 4 runs with the earlier rule; jaxq.train with the same env steps:
    0.02%) and max|Q - Q*| near one process's (measured 0.24-0.34; earlier rule 0.24-0.49;
    jaxq.train 0.18-0.45 over 6 seeds). The runs are asynchronous, hence the loose bound."""
    from jaxq.model import greedy_policy

    config = jaxq.TrainConfig(env_id="FrozenLake8x8-v1", num_envs=512, total_steps=4_000_000,
                              num_chunks=40, eval_every=0)
    env, params = jaxq.make(config.env_id)
    model = jaxq.tabular_model(env, params)
    q_star = np.asarray(jaxq.value_iteration(model, config.gamma))
    result = jray.train(config, q_star, num_learners=2, num_shards=2, max_staleness=4,
                        compile_cache=cache, progress=False)
    exactly_once(result.ray, 40)
    v_star = float(jaxq.start_value(model, q_star))
    v = float(jaxq.policy_start_value(model, greedy_policy(result.q, model.valid), config.gamma))
    assert 1.0 - v / v_star < 0.03, (v, v_star)
    assert result.metrics["q_error"][-1] < 0.6
