"""experiments/throughput.py --quick: every panel and baseline runs, the results file has
its schema, the plots are written, and re-rendering is deterministic."""

from __future__ import annotations

import json

import pytest
import experiment_modules


throughput = experiment_modules.load("throughput")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("throughput")
    logs: list[str] = []
    results = throughput.main(["--quick", "--out", str(root)], log=logs.append)
    return root, results, logs


def test_results_schema(quick_run):
    root, results, _ = quick_run
    stored = json.loads((root / "results" / "throughput" / "results.json").read_text())
    assert stored["experiment"] == "throughput"
    for key in ("device", "jax", "jaxlib", "config", "series", "classic", "threaded",
                "summary", "goals"):
        assert key in stored, key
    assert stored["jax"] and stored["jaxlib"]
    ns = stored["config"]["num_envs"]
    assert ns == [1, 4, 16]
    panels = {x["panel"] for x in stored["series"]}
    assert panels == {"envs", "rules", "strategies", "baselines"}
    labels = {(x["panel"], x["label"]) for x in stored["series"]}
    for needed in [("envs", "FrozenLake 8x8"), ("envs", "CartPole (gymnax, discretized)"),
                   ("rules", "Double Q"), ("baselines", "NumPy, optimized (1 thread)"),
                   ("baselines", "NumPy, plain (1 thread)"),
                   ("baselines", "gymnax CartPole env only")]:
        assert needed in labels, needed
    for x in stored["series"]:
        if x["panel"] == "strategies":
            continue
        rates = [r.get("steps_per_s") for r in x["records"]]
        assert [r["num_envs"] for r in x["records"]] == ns, x["label"]
        assert all(r is not None for r in rates), (x["label"], x["records"])
    strategies = [x for x in stored["series"] if x["panel"] == "strategies"]
    assert {x["config"]["strategy"] for x in strategies} == {"replicated", "sharded", "async"}
    for x in strategies:
        assert [r["num_envs"] for r in x["records"]] == [4, 16]
        assert all(r["devices"] == 2 for r in x["records"])
    assert [t["num_threads"] for t in stored["threaded"]] == [1, 2]
    # the goals are judged on interleaved rounds: a ratio per round, the median reported
    head = stored["headline"]
    assert len(head["rounds"]) == 2 and head["num_envs"] == 16
    assert set(head["ratios"]) == {"numpy_optimized", "numpy_plain", "classic"}
    classic_goal = next(g for g in stored["goals"] if g["name"] == "jaxq / classic loop")
    assert classic_goal["value"] == head["ratios"]["classic"]
    names = [g["name"] for g in stored["goals"]]
    assert any("classic" in n for n in names) and any("H100" in n for n in names)
    for g in stored["goals"]:
        assert g["met"] is None or g["met"] == (g["value"] >= g["target"])
    # the HLO figures: every jaxq series of the envs / rules panels at its largest N, and
    # the interleaved rounds' chunk; a step draws its random words, so threefry runs
    hlo = {(h["panel"], h["label"]): h for h in stored["hlo"]}
    assert ("envs", "FrozenLake 8x8") in hlo and ("headline", "FrozenLake 8x8 (interleaved "
                                                  "rounds)") in hlo
    for h in hlo.values():
        assert h["num_envs"] == 16
        assert h["xor_per_threefry"] > 0 and h["threefry_per_step"] >= 1, h
        assert h["bytes_per_env_step"] > 0, h


def test_plots_written(quick_run):
    root, results, _ = quick_run
    for name in results["plots"].values():
        path = root / "results" / "throughput" / name
        assert path.exists() and path.stat().st_size > 10_000, path


def test_markdown_section_and_regeneration(quick_run, tmp_path):
    root, results, _ = quick_run
    text = (root / "BENCHMARKS.md").read_text()
    assert "<!-- BEGIN throughput -->" in text and "CartPole" in text and "Goals" in text
    assert "| panel | series | N | threefry/step | xor ops | B/env step |" in text
    (tmp_path / "results" / "throughput").mkdir(parents=True)
    (tmp_path / "results" / "throughput" / "results.json").write_text(
        (root / "results" / "throughput" / "results.json").read_text())
    throughput.main(["--markdown-only", "--no-plots", "--out", str(tmp_path)],
                    log=lambda s: None)
    first = (tmp_path / "BENCHMARKS.md").read_text()
    throughput.main(["--markdown-only", "--no-plots", "--out", str(tmp_path)],
                    log=lambda s: None)
    assert (tmp_path / "BENCHMARKS.md").read_text() == first
    assert throughput.render_markdown(results) in first


def test_bad_arguments():
    with pytest.raises(SystemExit):
        throughput.parse_args(["--max-envs", "0"])
    with pytest.raises(SystemExit):
        throughput.settings(throughput.parse_args(["--envs", "NoSuchEnv"]))
