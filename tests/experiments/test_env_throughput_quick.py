"""``experiments/env_throughput.py --quick`` stays runnable: in process on tiny sizes,
its JSON schema and its BENCHMARKS.md section; the NumPy FrozenLake it steps is jaxq's
MDP. (The helpers of ``experiments/benchlib.py`` are tested in ``tests/test_benchlib.py``.)"""

import json
import math

import numpy as np
import pytest
import experiment_modules
from test_benchlib import CHECKOUT, PACKAGE, _tree


env_throughput = experiment_modules.load("env_throughput")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    logs = []
    before = {d: _tree(d) for d in (PACKAGE, CHECKOUT / "experiments")}
    results = env_throughput.main(["--quick", "--out", str(root)], log=logs.append)
    for d, files in before.items():  # everything went to --out (issue 9, item 14)
        assert _tree(d) == files, f"the experiment wrote under {d}"
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
        assert math.isfinite(r["steps_per_s"])
        assert r["T"] >= 1 and r["repeats"] == cfg["repeats"] == len(r["times_s"])
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
