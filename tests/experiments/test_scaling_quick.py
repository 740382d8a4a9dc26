"""``experiments/scaling.py --quick`` stays runnable (its per-device-count worker processes,
results schema, plots and BENCHMARKS.md section), and the threaded-dict baseline it
compares against is a real Q-learner. Nothing here asserts a speed."""

import json
import math

import numpy as np
import pytest
import experiment_modules


threaded_dict = experiment_modules.load("threaded_dict")
scaling = experiment_modules.load("scaling")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    logs = []
    results = scaling.main(["--quick", "--out", str(root)], log=logs.append)
    return root, results, logs


def test_quick_results_schema(quick_run):
    root, results, _ = quick_run
    out = root / "results" / "scaling"
    stored = json.loads((out / "results.json").read_text())
    assert stored == json.loads(json.dumps(results))
    archived = [p for p in out.glob("*.json") if p.name != "results.json"]
    assert len(archived) == 1 and archived[0].name.startswith(stored["info"]["device"]["slug"])

    assert stored["experiment"] == "scaling" and stored["schema_version"] == 1
    assert {"date_utc", "machine", "device", "versions"} <= set(stored["info"])
    cfg = stored["config"]
    assert cfg["quick"] is True and cfg["env_id"] == "FrozenLake8x8-v1"
    if cfg["backend"] == "cpu":
        assert cfg["forced_host_devices"] and cfg["devices"] == [1, 2]
    assert [w["devices"] for w in stored["workers"]] == cfg["devices"]
    assert all("error" not in w for w in stored["workers"]), stored["workers"]

    # throughput: single at 1 device only, the mesh strategies at every count
    cells = {(r["strategy"], r["devices"], r["num_envs"]) for r in stored["throughput"]}
    expected = {("single", 1, n) for n in cfg["num_envs"]} | {
        (s, d, n) for s in ("replicated", "sharded", "async") for d in cfg["devices"]
        for n in cfg["num_envs"]}
    assert cells == expected
    for r in stored["throughput"]:
        assert "error" not in r, r
        assert math.isfinite(r["steps_per_s"])
        assert r["repeats"] == cfg["repeats"] == len(r["times_s"])

    assert [r["num_threads"] for r in stored["threaded"]] == cfg["threads"]
    for r in stored["threaded"]:
        assert "error" not in r and r["steps"] == cfg["threaded_steps"]

    # time to solution: every mesh strategy at 2 devices, each run checked exactly
    tts = stored["tts"]
    assert {(r["strategy"], r["devices"]) for r in tts} >= {
        ("replicated", 2), ("sharded", 2), ("async", 2)}
    for r in tts:
        assert "error" not in r, r
        assert len(r["runs"]) == r["seeds"] == cfg["tts_seeds"]
        assert 0 < r["v_star"] < 1 and r["env_steps"] > 0
        for run in r["runs"]:
            assert run["solved"] == (run["gap"] <= cfg["solved_gap"])

    # staleness: async and replicated at each sync_every, curves of equal length
    st = stored["staleness"]
    assert {(r["strategy"], r["sync_every"]) for r in st} == {
        (s, k) for s in ("async", "replicated") for k in cfg["sync_every"]}
    for r in st:
        assert "error" not in r, r
        assert len(r["env_steps"]) == len(r["q_error"]) == len(r["eval_success"])
        assert len(r["env_steps"]) == cfg["staleness_chunks"]
        assert all(e is not None and e >= 0 for e in r["q_error"])
        assert any(v is not None for v in r["eval_success"])


def test_quick_plots(quick_run):
    root, results, _ = quick_run
    for name in results["plots"].values():
        path = root / "results" / "scaling" / name
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path


def test_quick_markdown_section(quick_run):
    root, results, logs = quick_run
    text = (root / "BENCHMARKS.md").read_text()
    begin, end = "<!-- BEGIN scaling -->", "<!-- END scaling -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    section = text[text.index(begin):text.index(end)]
    assert results["info"]["date_utc"][:10] in section
    assert "| strategy | devices | N=256 | compile (s) |" in section
    for strategy in ("single", "replicated", "sharded", "async"):
        assert f"| {strategy} | 1 |" in section
    assert "threaded_dict.py" in section and "Time to solution" in section
    assert "Convergence vs staleness" in section and "staleness.png" in section
    if results["config"]["forced_host_devices"]:
        assert "Forced CPU devices" in section
    # --markdown-only re-renders the same section from the results file alone
    (root / "BENCHMARKS.md").write_text("# header\n")
    scaling.main(["--markdown-only", "--out", str(root)], log=logs.append)
    again = (root / "BENCHMARKS.md").read_text()
    assert again.startswith("# header\n")
    assert again[again.index(begin):again.index(end)] == section


def test_worker_env_forces_exactly_one_device_count(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_foo=1 --xla_force_host_platform_device_count=8")
    env = scaling._worker_env(4)
    assert env["XLA_FLAGS"].split() == ["--xla_foo=1", "--xla_force_host_platform_device_count=4"]
    assert scaling._worker_env(None)["XLA_FLAGS"] == "--xla_foo=1"


def test_threaded_baseline_learns_frozen_lake_4x4():
    import jaxq

    out = threaded_dict.run(2, 20_000, seed=0, map_name="4x4", is_slippery=False)
    assert out["steps"] == 20_000 and sum(out["per_thread_steps"]) == 20_000
    assert out["successes"] > 0
    q = out["q_table"]
    assert q.shape == (16, 4)
    assert threaded_dict.greedy_reaches_goal(q, "4x4")
    env, params = jaxq.make("FrozenLake-v1", is_slippery=False)
    q_star = np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), 0.99, tol=1e-7))
    # along the greedy path from the start the learned values are Q*'s
    path, s = [], 0
    for _ in range(16):
        a = int(np.argmax(q[s]))
        path.append((s, a))
        if (s, a) in ((14, 2), (11, 1)):  # steps into the goal
            break
        s = s + {0: -1, 1: 4, 2: 1, 3: -4}[a]
    np.testing.assert_allclose([q[p] for p in path], [q_star[p] for p in path], atol=1e-2)
    assert q[0].max() == pytest.approx(q_star[0].max(), abs=1e-2)


def test_threaded_baseline_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_threads"):
        threaded_dict.run(0, 10)
    with pytest.raises(ValueError, match="total_steps"):
        threaded_dict.run(1, 0)
