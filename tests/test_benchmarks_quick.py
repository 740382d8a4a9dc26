"""The benchmark scripts stay runnable: ``experiments/env_throughput.py --quick`` in
process on tiny sizes, its JSON schema, its BENCHMARKS.md section, and the helpers of
``jaxq/benchlib.py``. Nothing here is timed or asserts a speed."""

import json
import math

import numpy as np
import pytest
import experiment_modules
from jaxq import benchlib


env_throughput = experiment_modules.load("env_throughput")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    logs = []
    results = env_throughput.main(["--quick", "--out", str(root)], log=logs.append)
    return root, results, logs


def test_quick_results_schema(quick_run):
    root, results, _ = quick_run
    out = root / "results" / "env_throughput"
    stored = json.loads((out / "results.json").read_text())
    assert stored == json.loads(json.dumps(results))
    archived = [p for p in out.glob("*.json") if p.name != "results.json"]
    assert len(archived) == 1 and archived[0].name.startswith(results["info"]["device"]["slug"])
    assert json.loads(archived[0].read_text()) == stored

    assert stored["experiment"] == "env_throughput" and stored["schema_version"] == 1
    info = stored["info"]
    assert {"date_utc", "machine", "device", "versions"} <= set(info)
    assert info["machine"]["cpu_model"] and info["machine"]["cpu_cores"] >= 1
    assert info["device"]["backend"] and info["device"]["count"] >= 1
    assert info["versions"]["jax"] and info["versions"]["gymnax"]

    cfg = stored["config"]
    assert cfg["quick"] is True and cfg["num_envs"] == [1, 16]
    impls = {c["impl"] for c in cfg["cases"]}
    assert {"jaxq", "gymnax", "numpy"} <= impls
    recs = stored["records"]
    assert len(recs) == len(cfg["cases"]) * len(cfg["num_envs"])
    for r in recs:
        assert "error" not in r, r
        assert {"label", "env_id", "impl", "num_envs", "steps_per_s", "compile_s", "T",
                "repeats", "median_s", "times_s", "episodes", "reward_sum"} <= set(r)
        assert math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0
        assert r["T"] >= 1 and r["repeats"] == cfg["repeats"] == len(r["times_s"])
        assert r["steps_per_s"] == pytest.approx(r["num_envs"] * r["T"] / r["median_s"])
        assert (r["compile_s"] is None) == (r["impl"] == "numpy")
        assert r["episodes"] >= 0


def test_quick_markdown_section(quick_run):
    root, results, _ = quick_run
    text = (root / "BENCHMARKS.md").read_text()
    begin, end = "<!-- BEGIN env_throughput -->", "<!-- END env_throughput -->"
    assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end)
    section = text[text.index(begin):text.index(end)]
    assert results["info"]["date_utc"][:10] in section
    assert "| env | impl | N=1 | N=16 | compile (s) |" in section
    for c in results["config"]["cases"]:
        assert f"| {c['label']} |" in section
    assert "jaxq FrozenLake8x8-v1 vs vectorized NumPy" in section


def test_markdown_regeneration_is_deterministic(quick_run, tmp_path):
    root, results, _ = quick_run
    # a stored results file, re-rendered into a BENCHMARKS.md that has other content
    (tmp_path / "results" / "env_throughput").mkdir(parents=True)
    (tmp_path / "results" / "env_throughput" / "results.json").write_text(
        (root / "results" / "env_throughput" / "results.json").read_text())
    md = tmp_path / "BENCHMARKS.md"
    before = "# Mine\n\nintro\n\n<!-- BEGIN other -->\nkeep me\n<!-- END other -->\n"
    md.write_text(before)
    env_throughput.main(["--markdown-only", "--out", str(tmp_path)], log=lambda s: None)
    once = md.read_text()
    assert once.startswith(before) and "keep me" in once
    env_throughput.main(["--markdown-only", "--out", str(tmp_path)], log=lambda s: None)
    assert md.read_text() == once
    # the same section as the run itself wrote
    run_md = (root / "BENCHMARKS.md").read_text()
    sec = lambda t: t[t.index("<!-- BEGIN env_throughput"):t.index("<!-- END env_throughput")]  # noqa: E731
    assert sec(once) == sec(run_md)
    assert env_throughput.render_markdown(json.loads(json.dumps(results))) == \
        env_throughput.render_markdown(results)


def test_replace_section_leaves_the_rest_alone():
    text = "head\n<!-- BEGIN a -->\nold a\n<!-- END a -->\nmiddle\n<!-- BEGIN b -->\nb\n<!-- END b -->\ntail"
    new = benchlib.replace_section(text, "a", "new a\n")
    assert new == text.replace("old a", "new a")
    assert benchlib.replace_section(new, "a", "new a") == new
    added = benchlib.replace_section("x\n", "c", "body")
    assert added == "x\n\n<!-- BEGIN c -->\nbody\n<!-- END c -->\n"
    with pytest.raises(ValueError):
        benchlib.replace_section("<!-- BEGIN a -->\n", "a", "x")


def test_write_section_creates_file(tmp_path):
    path = benchlib.write_section("s1", "first", tmp_path / "B.md")
    benchlib.write_section("s2", "two", path)
    benchlib.write_section("s1", "uno", path)
    text = path.read_text()
    assert text.startswith(benchlib.MARKDOWN_HEADER)
    assert text.index("uno") < text.index("two") and "first" not in text


def test_human_units():
    assert [benchlib.human(x) for x in (0.5, 999, 999.6, 1234, 999_960, 12.3e6, 4.56e9)] == \
        ["0.50", "999", "1.00k", "1.23k", "1.00M", "12.3M", "4.56G"]
    assert benchlib.human(None) == "–" and benchlib.human(float("nan")) == "–"


def test_finite_json_and_heading():
    out = benchlib.finite_json({"a": np.float32(1.5), "b": [float("nan"), np.int64(3)],
                                "c": (float("inf"), "x")})
    assert out == {"a": 1.5, "b": [None, 3], "c": [None, "x"]}
    assert type(out["a"]) is float and type(out["b"][1]) is int
    json.dumps(out, allow_nan=False)  # strict JSON
    info = {"date_utc": "2026-11-25T19:00:00Z",
            "machine": {"cpu_model": "AMD EPYC", "cpu_cores": 2},
            "device": {"backend": "cpu", "description": "cpu (AMD EPYC, 2 cores)",
                       "platform": "cpu", "count": 1, "kind": "cpu"}}
    line = benchlib.heading("Throughput", info)
    assert line.startswith("## Throughput — 2026-11-25 · ") and "device:" in line


def test_env_counts():
    assert benchlib.env_counts(262_144) == [4**k for k in range(10)]
    assert benchlib.env_counts(1000) == [1, 4, 16, 64, 256, 1000]
    assert benchlib.env_counts(16, base=16) == [1, 16]


def test_time_scaled_reaches_target():
    calls = []

    def run(n):
        calls.append(n)
        return sum(range(n))

    t = benchlib.time_scaled(run, target_s=0.005, repeats=3)
    assert t.repeats == 3 and t.iters >= 1 and t.median_s > 0
    assert calls[-3:] == [t.iters] * 3


def test_numpy_frozen_lake_matches_jaxq_dynamics():
    """The NumPy baseline steps the same MDP as jaxq's FrozenLake8x8-v1 (non-absorbing
    states; the baseline resets before ever standing on a hole or the goal)."""
    import jax
    import jaxq

    nxt, rew, term, start = env_throughput.numpy_frozen_lake_tables()
    env, params = jaxq.make("FrozenLake8x8-v1")
    model = jaxq.tabular_model(env, params)
    tiles = np.asarray(params.tiles)
    live = np.flatnonzero((tiles != 2) & (tiles != 3))  # not HOLE, not GOAL
    S = tiles.size
    np.testing.assert_allclose(np.asarray(model.prob)[live], 1 / 3, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.next_state)[live].reshape(-1, 12),
                                  nxt.reshape(S, 12)[live])
    np.testing.assert_array_equal(np.asarray(model.reward)[live].reshape(-1, 12),
                                  rew.reshape(S, 12)[live])
    np.testing.assert_array_equal(np.asarray(model.terminated)[live].reshape(-1, 12),
                                  term.reshape(S, 12)[live])
    assert start == int(np.asarray(params.starts)[0])
    del jax
