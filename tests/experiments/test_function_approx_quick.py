"""experiments/function_approx.py --quick: the learning curves (seeds as a vmap axis) and the
throughput sweep run through the library's public entry points, the results file has its
schema, the curves their lengths and finite values, the goals are judged from the data (and
the judging itself is checked on made-up records), the plots are written and the
BENCHMARKS.md section re-renders to the same bytes. Nothing here asserts a speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import experiment_modules

fa = experiment_modules.load("function_approx")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("function_approx")
    logs: list[str] = []
    results = fa.main(["--quick", "--out", str(root)], log=logs.append)
    return root, results, logs


def test_results_schema_and_curves(quick_run):
    root, results, _ = quick_run
    out = root / "results" / "function_approx"
    stored = json.loads((out / "results.json").read_text())
    assert stored == json.loads(json.dumps(results))
    assert stored["experiment"] == "function_approx" and stored["schema_version"] == 1
    assert stored["jax"] and stored["jaxlib"] and stored["device"]
    cfg = stored["config"]
    assert cfg["mode"] == "quick" and cfg["quick"] is True
    expected = fa.MODES["quick"]["runs"]
    assert [r["key"] for r in stored["records"]] == list(expected) == cfg["runs"]
    for r in stored["records"]:
        seeds, overrides = expected[r["key"]]
        chunks = overrides["num_chunks"]
        assert r["seeds"] == seeds and r["overrides"] == overrides
        assert r["q_function"] == ("tiles" if r["kind"] == "tiles" else "mlp")
        # the recorded settings are the config the run used, overrides included
        assert all(r["settings"][k] == v for k, v in overrides.items())
        assert r["settings"]["env_id"] == r["env_id"]
        # the rest came from the library's defaults for the Q-function and env
        assert r["defaults_applied"] and not set(r["defaults_applied"]) & set(overrides)
        assert all(r["settings"][k] == v for k, v in r["defaults_applied"].items()
                   if k in r["settings"])
        assert len(r["env_steps"]) == len(r["seconds"]) == chunks
        assert np.all(np.diff(r["env_steps"]) > 0) and r["env_steps"][-1] >= overrides[
            "total_steps"]
        curve = np.asarray(r["eval_return"])
        assert curve.shape == (seeds, chunks) and np.isfinite(curve).all()
        for k in ("min", "q25", "median", "q75", "max"):
            assert len(r["spread"][k]) == chunks, k
        assert np.allclose(r["spread"]["median"], np.median(curve, axis=0))
        assert np.all(np.asarray(r["spread"]["min"]) <= np.asarray(r["spread"]["max"]))
        assert r["final_eval_return"] == curve[:, -1].tolist()
        assert r["final_at_threshold"] == int(np.sum(curve[:, -1] >= r["threshold"]))
        assert len(r["reached_at"]) == seeds
        for row, at in zip(curve, r["reached_at"]):
            hit = np.flatnonzero(row >= r["threshold"])
            assert at == (r["env_steps"][hit[0]] if hit.size else None)
        assert r["compile_s"] > 0 and r["run_s"] > 0 and r["steps_per_s"] > 0
    # CartPole's greedy returns: an episode lasts >= 8 steps and is capped at 500
    cp = next(r for r in stored["records"] if r["key"] == "CartPole-v1/pqn")
    assert 8 <= min(cp["final_eval_return"]) and max(cp["final_eval_return"]) <= 500
    # throughput: the quick Ns for tiles and PQN, in order
    tp = stored["throughput"]
    assert [(t["kind"], t["num_envs"]) for t in tp] == [
        (k, n) for k, ns in fa.MODES["quick"]["throughput"].items() for n in ns]
    for t in tp:
        assert t["env_steps"] % t["num_envs"] == 0 and len(t["times_s"]) == cfg["repeats"]
        assert t["steps_per_s"] == pytest.approx(t["env_steps"] / t["median_s"])


def test_goals_judged_from_the_data(quick_run):
    _, results, _ = quick_run
    goals = results["goals"]
    assert len(goals) == 6 and all(g["op"] in (">=", "<=") for g in goals)
    for g in goals:
        if g["met"] is not None:
            assert g["met"] == fa.OPS[g["op"]](g["value"], g["target"]), g
    # quick sizes are not the goals' sizes: nothing is judged, and each says why
    assert all(g["met"] is None and g["note"] for g in goals)
    cp_count = goals[0]
    assert cp_count["value"] == results["records"][0]["final_at_threshold"]
    # MountainCar's goals come from one `jaxq train` process with the mode's flags
    one = results["mountain_car_one_seed"]
    assert one["command"].startswith("jaxq train --env MountainCar-v0 --q-function tiles")
    assert "--num-envs 8 --total-steps 1024" in one["command"]
    assert one["env_steps"] == 1024 and one["eval_episodes"] == 4
    assert one["settings"]["q_function"] == "tiles" and one["settings"]["num_envs"] == 8
    assert -200 <= one["eval_return"] <= -1 and one["wall_s"] > one["compile_s"] > 0
    assert [g["value"] for g in goals[2:4]] == [one["eval_return"], one["wall_s"]]


def _record(key, seeds, final, steps=500_000, episodes=100, compile_s=20.0, run_s=30.0):
    env_id = key.split("/")[0]
    curve = np.asarray([[0.0, f] for f in final])
    return {"key": key, "env_id": env_id, "seeds": seeds, "eval_episodes": episodes,
            "env_steps": [steps // 2, steps], "compile_s": compile_s, "run_s": run_s,
            "total_s": compile_s + run_s, "final_median": float(np.median(curve[:, -1])),
            "final_at_threshold": int(np.sum(curve[:, -1] >= fa.THRESHOLDS.get(env_id, 0)))}


def test_goal_judging_on_made_up_records():
    nine = _record("CartPole-v1/pqn", 10, [500.0] * 9 + [400.0])
    eight = _record("CartPole-v1/pqn", 10, [500.0] * 8 + [400.0] * 2, compile_s=40.0)
    acro = _record("Acrobot-v1/pqn", 5, [-90.0, -95.0, -99.0, -120.0, -150.0])
    mc = {"eval_episodes": 1000, "eval_return": -118.0, "wall_s": 31.0, "compile_s": 10.0,
          "run_s": 20.0, "env_steps": 4_096_000, "command": "jaxq train"}
    g = {x["name"].split(":")[0] + x["op"]: x for x in fa.judge_goals([nine, acro], mc)}
    assert g["CartPole-v1 mlp>="]["value"] == 9 and g["CartPole-v1 mlp>="]["met"] is True
    assert g["CartPole-v1 mlp<="]["value"] == 50.0 and g["CartPole-v1 mlp<="]["met"] is True
    assert g["Acrobot-v1 mlp>="]["value"] == -99.0 and g["Acrobot-v1 mlp>="]["met"] is True
    assert g["MountainCar-v0 tiles>="]["met"] is True and g["MountainCar-v0 tiles<="][
        "met"] is False
    assert g["Breakout-MinAtar mlp>="]["met"] is None  # not run
    g = {x["name"].split(":")[0] + x["op"]: x for x in fa.judge_goals([eight], None)}
    assert g["CartPole-v1 mlp>="]["met"] is False and g["CartPole-v1 mlp<="]["met"] is False
    # beyond 2M env steps, or not 10 seeds, the CartPole goal is not judged
    late = _record("CartPole-v1/pqn", 10, [500.0] * 10, steps=4_000_000)
    assert fa.judge_goals([late], None)[0]["met"] is None
    br = _record("Breakout-MinAtar/pqn", 3, [8.0, 9.0, 10.0])
    assert fa.judge_goals([br], None)[-1]["met"] is False


def test_plots_and_markdown(quick_run, tmp_path):
    root, results, _ = quick_run
    out = root / "results" / "function_approx"
    for name in results["plots"].values():
        path = out / name
        assert path.exists() and path.stat().st_size > 10_000, path
        assert path.read_bytes()[:8] == PNG_MAGIC
    text = (root / "BENCHMARKS.md").read_text()
    assert "<!-- BEGIN function_approx -->" in text and "**Goals**" in text
    assert fa.render_markdown(results) in text
    for r in results["records"]:
        assert f"| {r['env_id']} | {r['label']} |" in text
    # --markdown-only re-renders from the stored file alone, to the same bytes
    (tmp_path / "results" / "function_approx").mkdir(parents=True)
    (tmp_path / "results" / "function_approx" / "results.json").write_text(
        (out / "results.json").read_text())
    fa.main(["--markdown-only", "--no-plots", "--out", str(tmp_path)], log=lambda s: None)
    first = (tmp_path / "BENCHMARKS.md").read_text()
    fa.main(["--markdown-only", "--no-plots", "--out", str(tmp_path)], log=lambda s: None)
    assert (tmp_path / "BENCHMARKS.md").read_text() == first
    assert fa.render_markdown(results) in first


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        fa.parse_args(["--runs", "CartPole-v1/nonsense"])
    assert "--runs: unknown CartPole-v1/nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # Acrobot is not a quick run
        fa.parse_args(["--quick", "--runs", "Acrobot-v1/pqn"])
    with pytest.raises(SystemExit):
        fa.parse_args(["--quick", "--full"])
    with pytest.raises(SystemExit):
        fa.parse_args(["--seed", "-1"])
