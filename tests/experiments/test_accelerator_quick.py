"""``experiments/accelerator.py --quick`` (the GPU experiment of issue 10, run on the CPU at
tiny sizes): its results file has the schema the GPU run will fill, the replicated copies
and the determinism runs compare real (learned, not all-zero) tables, the BENCHMARKS.md
section is rendered from the JSON alone (a schema-1 file, without the PQN section, too), the
PQN section (throughput vs N on CartPole and Breakout, a tiny vmapped Breakout curve) has
the schema the GPU run fills and predicts its curve from the measured rates, a tiny budget
still writes results, and bad flags are refused before anything is written. Nothing here
asserts a speed."""

import json
import math
import re

import numpy as np
import pytest

import experiment_modules

acc = experiment_modules.load("accelerator")
SHA = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("accelerator")
    logs = []
    # a generous budget: on a busy 2-core machine the child processes' compiles are slow,
    # and this run must not skip parts (the budget test below checks skipping)
    results = acc.main(["--quick", "--out", str(root), "--budget-s", "900"], log=logs.append)
    stored = json.loads((root / "results" / "accelerator" / "results.json").read_text())
    return root, results, stored, logs


def test_results_schema(quick_run):
    root, results, stored, _ = quick_run
    assert stored == json.loads(json.dumps(results))
    assert stored["experiment"] == "accelerator" and stored["schema_version"] == 2
    assert stored["complete"] is True
    assert {"date_utc", "machine", "device", "versions"} <= set(stored["info"])
    assert stored["jax"] and stored["jaxlib"]
    archived = [p for p in (root / "results" / "accelerator").glob("*.json")
                if p.name != "results.json"]
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == stored

    a = stored["accelerator"]
    assert a["kind"] and a["local_devices"] >= 1
    assert "driver_version" in a and "cuda_version" in a and "nvidia_smi" in a
    assert a["peak_bandwidth"] == acc.peak_bandwidth(a["kind"])
    assert a["measured_copy"]["bytes_per_s"] > 0

    cfg = stored["config"]
    assert cfg["quick"] and cfg["budget_s"] == 900
    assert [s["label"] for s in stored["throughput"]] == ["FrozenLake 8x8", "Maze 32x32"]
    for series in stored["throughput"]:
        assert series["stopped"] == "done: every planned N"
        assert [r["num_envs"] for r in series["records"]] == cfg["sizes"] == [16, 64]
        for r in series["records"]:
            assert "error" not in r, r
            assert r["steps_per_s"] == pytest.approx(
                r["num_envs"] * r["chunk_iters"] * r["calls"] / r["median_s"])
            assert len(r["times_s"]) == r["repeats"] == cfg["repeats"]
            assert r["compile_s"] > 0 and r["bytes_source"] == "step"
            assert r["bytes_per_env_step"] == pytest.approx(r["bytes_accessed"] / r["num_envs"])
            peak = a["peak_bandwidth"]["bytes_per_s"]
            if peak is None:  # a CPU: no data-sheet figure, no peak roofline
                assert r["roofline_peak"] is None and r["fraction_peak"] is None
            meas = a["measured_copy"]["bytes_per_s"]
            assert r["roofline_measured"] == pytest.approx(meas / r["bytes_per_env_step"])
            assert r["fraction_measured"] == pytest.approx(
                r["steps_per_s"] / r["roofline_measured"])


def test_replicas_compare_real_tables(quick_run):
    _, _, stored, _ = quick_run
    rep = stored["replicated"]
    assert "error" not in rep, rep
    if rep["backend"] == "cpu":  # two forced host devices: a real comparison
        assert rep["devices"] == 2 and not rep["trivial"]
    assert rep["identical"] is True and rep["note"]
    for case in rep["cases"]:
        assert "error" not in case, case
        assert case["copies"] == rep["devices"] == len(case["per_device"])
        assert len({d["device"] for d in case["per_device"]}) == case["copies"]
        shas = {d["sha256"] for d in case["per_device"]}
        assert len(shas) == 1 and all(SHA.fullmatch(s) for s in shas)
        for d in case["per_device"]:
            assert d["nonzero_cells"] > 0 and d["max_abs"] > 0  # learned, not zeros


def test_determinism_compares_real_tables(quick_run):
    _, _, stored, _ = quick_run
    det = stored["determinism"]
    assert det["order"] == ["plain-a", "flag-a", "plain-b", "flag-b"]
    for tag, run in det["runs"].items():
        assert "error" not in run, (tag, run)
        # the flag reached exactly the flag runs' XLA
        assert (acc.DET_FLAG in run["xla_flags"].split()) == tag.startswith("flag")
        for case in run["cases"]:
            assert "error" not in case, case
            t = case["table"]
            assert t["shape"] == [64, 4] and SHA.fullmatch(t["sha256"])
            assert t["nonzero_cells"] > 0 and t["max_abs"] > 0
            assert case["steps_per_s"] > 0
    for ci, cmp_ in enumerate(det["comparisons"]):
        sha = {tag: run["cases"][ci]["table"]["sha256"] for tag, run in det["runs"].items()}
        for name, (x, y) in {"plain": ("plain-a", "plain-b"), "flag": ("flag-a", "flag-b"),
                             "flag_vs_plain": ("flag-a", "plain-a")}.items():
            # the comparison is of the tables themselves: it agrees with their hashes
            assert cmp_[name]["identical"] == (sha[x] == sha[y])
        # XLA:CPU is deterministic and ignores the GPU flag: all four tables equal
        assert cmp_["plain"]["identical"] and cmp_["flag"]["identical"]
        assert cmp_["flag_vs_plain"]["identical"]
        assert cmp_["flag_speed_ratio"] == pytest.approx(
            cmp_["steps_per_s"]["flag"] / cmp_["steps_per_s"]["plain"])


def test_pqn_section(quick_run):
    """PQN throughput vs N at the library's mlp defaults per env (every point is
    function_approx.throughput_point's record), then the Breakout curve: seeds vmapped in
    one child call, its prediction recorded."""
    from jaxq.config import DEFAULTS

    _, _, stored, logs = quick_run
    cfg, deep = stored["config"], stored["deep"]
    d = cfg["deep"]
    assert [sr["env_id"] for sr in deep["throughput"]] == ["CartPole-v1", "Breakout-MinAtar"]
    keys = None
    for sr, sizes in zip(deep["throughput"], (d["cartpole_sizes"], d["breakout_sizes"])):
        row = DEFAULTS[("mlp", sr["env_id"])]
        assert sr["default_num_envs"] == row["num_envs"]
        for k in ("rollout_len", "num_epochs", "num_minibatches", "lr", "lr_schedule"):
            assert sr["settings"][k] == row[k], (sr["env_id"], k)
        assert sr["stopped"] == "done: every planned N"
        assert [r["num_envs"] for r in sr["records"]] == sr["planned"] == sizes
        for r in sr["records"]:
            assert "error" not in r, r
            assert r["env_id"] == sr["env_id"] and r["kind"] == "pqn"
            # whole updates of N x rollout_len, at least two per call
            per_update = r["num_envs"] * sr["settings"]["rollout_len"]
            assert r["env_steps"] % per_update == 0 and r["env_steps"] >= 2 * per_update
            assert len(r["times_s"]) == d["repeats"]
            assert r["median_s"] == pytest.approx(float(np.median(r["times_s"])))
            assert r["steps_per_s"] == pytest.approx(r["env_steps"] / r["median_s"])
            keys = keys or set(r)
            assert set(r) == keys  # one record shape for every env

    cv = deep["curve"]
    assert "skipped" not in cv and "error" not in cv, cv
    assert cv["env_id"] == "Breakout-MinAtar" and cv["overrides"] == d["curve_overrides"]
    assert cv["seeds"] == cv["prediction"]["seeds"] == d["curve_seeds"][0]
    assert cv["prediction"]["total_s"] <= cv["left_s"]
    r = cv["record"]
    assert r["key"] == "Breakout-MinAtar/pqn" and r["seeds"] == cv["seeds"]
    assert r["settings"]["env_id"] == "Breakout-MinAtar"
    assert r["settings"]["width"] == d["curve_overrides"]["width"]  # the overrides applied
    chunks = cv["num_chunks"]
    assert np.shape(r["eval_return"]) == (cv["seeds"], chunks)
    assert len(r["spread"]["median"]) == len(r["env_steps"]) == chunks
    assert r["env_steps"][-1] == cv["env_steps"]
    # the child's wall time holds the call's compile and run, and the rate is the run's
    assert cv["wall_s"] >= r["compile_s"] + r["run_s"]
    assert r["total_s"] == pytest.approx(r["compile_s"] + r["run_s"])
    assert r["steps_per_s"] == pytest.approx(cv["env_steps"] * cv["seeds"] / r["run_s"])
    assert any("[pqn curve]" in line for line in logs)


def _series(points):
    return {"env_id": "Breakout-MinAtar", "records": [
        {"num_envs": n, "steps_per_s": rate, "compile_s": c} for n, rate, c in points]}


def test_curve_prediction_and_skip():
    """The curve's prediction (no compile): each seed count is timed at the rate of the
    largest measured N <= its batch (seeds x 128), the most seeds that fit are chosen, and
    where none fits (or nothing was measured) it is skipped with the reason, no child run."""
    d = dict(acc.MODES["default"]["deep"])
    config = acc.function_approx.make_config("Breakout-MinAtar", "pqn", {}, 0)
    plan = config.plan()
    assert plan["env_steps"] == 10_240_000 and plan["num_chunks"] == 20
    series = _series([(128, 1e5, 10.0), (512, 4e5, 12.0)])
    cands = acc.predict_curve(series, d, config)
    assert [c["seeds"] for c in cands] == d["curve_seeds"] == [4, 3, 2]
    assert [c["rate_at_num_envs"] for c in cands] == [512, 128, 128]
    c4 = cands[0]
    assert c4["compile_s"] == d["compile_factor"] * 12.0
    assert c4["run_s"] == pytest.approx(4 * 10_240_000 / 4e5)
    assert c4["eval_s"] == pytest.approx(20 * config.eval_max_steps * 512 / 4e5)
    assert c4["total_s"] == pytest.approx(d["curve_margin"] * (
        d["child_start_s"] + c4["compile_s"] + c4["run_s"] + c4["eval_s"]))
    logs = []
    far = acc.time.perf_counter() + 1.0  # one second left: nothing fits
    out = acc.curve_section(series, d, 0, far, logs.append)
    assert out["skipped"].startswith("budget: 2 seeds predicted") and "record" not in out
    out = acc.curve_section(_series([]), d, 0, far, logs.append)
    assert out["skipped"].startswith("no Breakout-MinAtar throughput")


def test_compare_tables_sees_one_flipped_bit():
    q = np.linspace(-1, 1, 256, dtype=np.float32).reshape(64, 4)
    assert acc.compare_tables(q, q.copy()) == {"identical": True, "differing_cells": 0,
                                               "max_abs_diff": 0.0}
    r = q.copy()
    r.view(np.uint32)[3, 2] ^= 1  # the last bit of one cell
    out = acc.compare_tables(q, r)
    assert out["identical"] is False and out["differing_cells"] == 1
    assert 0 < out["max_abs_diff"] < 1e-6
    z = np.zeros(4, np.float32)
    assert not acc.compare_tables(z, -z)["identical"]  # -0.0: other bytes, another replica


def test_peak_bandwidth_table():
    assert acc.peak_bandwidth("NVIDIA H200")["bytes_per_s"] == 4.8e12
    assert acc.peak_bandwidth("NVIDIA H100 80GB HBM3")["bytes_per_s"] == 3.35e12
    assert acc.peak_bandwidth("NVIDIA H100 PCIe")["bytes_per_s"] == 2.0e12
    assert acc.peak_bandwidth("NVIDIA A100-SXM4-80GB")["bytes_per_s"] == 2.039e12
    assert acc.peak_bandwidth("cpu") == {"bytes_per_s": None, "source": None}


def test_markdown_section_from_the_json(quick_run, tmp_path):
    root, _, stored, _ = quick_run
    text = (root / "BENCHMARKS.md").read_text()
    body = acc.render_markdown(stored)
    assert body.strip() in text and "<!-- BEGIN accelerator -->" in text
    for needle in ("FrozenLake 8x8", "Maze 32x32", "Replicas", "Determinism", "bytes/step",
                   "PQN throughput", "throughput_point", "Breakout-MinAtar learning curve",
                   "greedy return (median)"):
        assert needle in body, needle
    for n in stored["config"]["deep"]["breakout_sizes"]:
        assert f"| Breakout-MinAtar | {n:,} |" in body
    assert acc.render_markdown(json.loads(json.dumps(stored))) == body  # deterministic
    # a schema-1 file (before the PQN section) renders its parts, and no PQN part
    old = {k: v for k, v in json.loads(json.dumps(stored)).items() if k != "deep"}
    old["schema_version"] = 1
    del old["config"]["deep"]
    old_body = acc.render_markdown(old)
    assert "Determinism" in old_body and "PQN" not in old_body
    (tmp_path / "old" / "results" / "accelerator").mkdir(parents=True)
    (tmp_path / "old" / "results" / "accelerator" / "results.json").write_text(json.dumps(old))
    acc.main(["--markdown-only", "--out", str(tmp_path / "old")], log=lambda *_: None)
    assert old_body.strip() in (tmp_path / "old" / "BENCHMARKS.md").read_text()
    # --markdown-only renders the same section from the stored file
    (tmp_path / "results" / "accelerator").mkdir(parents=True)
    (tmp_path / "results" / "accelerator" / "results.json").write_text(
        (root / "results" / "accelerator" / "results.json").read_text())
    acc.main(["--markdown-only", "--out", str(tmp_path)], log=lambda *_: None)
    assert body.strip() in (tmp_path / "BENCHMARKS.md").read_text()


def test_a_spent_budget_still_writes_results(tmp_path):
    """A budget too small for anything: every part says why it did not run, the results
    and the section are written all the same (no compile of a learner happens)."""
    out = acc.main(["--quick", "--out", str(tmp_path), "--budget-s", "0.5"],
                   log=lambda *_: None)
    stored = json.loads((tmp_path / "results" / "accelerator" / "results.json").read_text())
    assert stored == json.loads(json.dumps(out)) and stored["complete"] is True
    assert "skipped" in stored["replicated"]
    assert all(r["error"].startswith("skipped") for r in stored["determinism"]["runs"].values())
    for series in stored["throughput"] + stored["deep"]["throughput"]:
        assert series["records"] == [] and series["stopped"].startswith("budget")
    assert stored["deep"]["curve"]["skipped"].startswith("no Breakout-MinAtar throughput")
    assert math.isfinite(stored["elapsed_s"])
    assert "not checked" in (tmp_path / "BENCHMARKS.md").read_text()


@pytest.mark.parametrize("argv, flag", [
    (["--budget-s", "0"], "--budget-s"), (["--budget-s", "nan"], "--budget-s"),
    (["--max-envs", "0"], "--max-envs"), (["--seed", "-1"], "--seed"),
])
def test_bad_flags_are_refused_before_anything_is_written(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        acc.main(["--quick", "--out", str(tmp_path / "out")] + argv)
    assert e.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
