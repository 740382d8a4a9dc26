"""``experiments/ray_async.py --quick``: starts its own Ray instance on 127.0.0.1 (and
stops it), times jaxq.train and 1 and 2 learners on FrozenLake 4x4, follows the shards'
table during each run, prices the pushes, and writes its results, plot and section
(saying plainly that one machine measures overhead, not scaling), all under ``--out``."""

import json

import pytest

import experiment_modules

pytest.importorskip("ray")
exp = experiment_modules.load("ray_async")


def test_the_experiment_runs_and_writes_its_section(tmp_path):
    import ray

    results = exp.main(["--quick", "--out", str(tmp_path)], log=lambda *_: None)
    assert not ray.is_initialized()  # its own instance, stopped
    stored = json.loads((tmp_path / "results" / "ray_async" / "results.json").read_text())
    assert stored["records"] == results["records"]
    single = stored["single"]
    assert single["steps_per_s"] > 0 and len(single["curve"]) == stored["config"]["num_chunks"]
    assert [(r["learners"], r["max_staleness"]) for r in stored["records"]] == [(1, 2), (2, 2)]
    for r in stored["records"]:
        assert r["applied_equals_acknowledged"]
        assert r["loop_steps_per_s"] > 0 and r["push_bytes"] > 0
        # the whole table and its counts: 16 states x 4 actions x (4 + 4) bytes
        assert r["pull_bytes"] == 16 * 4 * 8
        # a push: index, value, count and base count per updated cell (mean aggregation)
        assert r["push_bytes"] == pytest.approx(16 * r["cells_per_push"])
        assert 0 <= r["observed"]["lead_max"] <= 2
        curve = r["curve"]
        assert curve[-1]["env_steps"] == stored["config"]["env_steps"]
        assert [c["env_steps"] for c in curve] == sorted(c["env_steps"] for c in curve)
        assert all(-1e-6 <= c["greedy_gap"] <= 1.0 for c in curve)
    net = stored["network"]
    assert [x["speedup"] for x in net["rows"]] == list(exp.SPEEDUPS)
    for x in net["rows"]:
        assert x["learners"] * net["efficiency"] >= x["speedup"] and x["bytes_per_s"] > 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- BEGIN ray_async -->" in text and "overhead, not scaling" in text
    assert (tmp_path / "results" / "ray_async" / exp.PLOT).stat().st_size > 1000
