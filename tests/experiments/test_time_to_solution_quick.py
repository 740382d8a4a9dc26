"""``experiments/time_to_solution.py --quick`` in process (seconds): its JSON schema, its
plot, its BENCHMARKS.md section (rendered deterministically from the stored results), the
ratios and the goal; jaxq solves every quick env. Also the exact greedy-value checker it
uses (against ``jaxq.policy_evaluation``) and the classic loop it compares against.
Nothing here asserts a speed."""

import json
import math

import pytest

import experiment_modules

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


tts = experiment_modules.load("time_to_solution")
benchlib = experiment_modules.load("benchlib")
classic_loop = experiment_modules.load("classic_loop")
render = experiment_modules.load("render")
run = experiment_modules.load("run")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts")
    logs = []
    # jaxq's cap far beyond need: a busy machine must not turn this into a timed test
    results = tts.main(["--quick", "--jaxq-cap-s", "600", "--out", str(root)],
                       log=logs.append)
    return root, results, logs


def test_quick_results_schema(quick_run):
    root, results, logs = quick_run
    out = root / "results" / "time_to_solution"
    stored = json.loads((out / "results.json").read_text())
    assert stored == json.loads(json.dumps(results))
    archived = [p for p in out.glob("*.json") if p.name != "results.json"]
    assert len(archived) == 1 and archived[0].name.startswith(stored["info"]["device"]["slug"])
    assert json.loads(archived[0].read_text()) == stored

    assert stored["experiment"] == "time_to_solution" and stored["schema_version"] == 1
    assert stored["device"] == stored["info"]["device"]["description"] and stored["device"]
    assert stored["jax"] == stored["info"]["versions"]["jax"] and stored["jax"]
    assert stored["jaxlib"] == stored["info"]["versions"]["jaxlib"] and stored["jaxlib"]
    cfg = stored["config"]
    assert cfg["quick"] is True and cfg["mode"] == "quick"
    assert cfg["envs"] == ["frozenlake8x8", "taxi", "maze16", "maze32"]
    assert cfg["solved_gap"] == 0.02 and cfg["gamma"] == 0.99

    envs = {e["env"]: e for e in stored["envs"]}
    assert list(envs) == cfg["envs"]
    for e in envs.values():
        assert "error" not in e, e
        assert e["v_star"] > 0 and e["num_states"] >= 64
    assert envs["maze32"]["num_states"] == 32 * 32

    rows = stored["rows"]
    assert [(r["env"], r["learner"]) for r in rows] == [
        (e, learner) for e in cfg["envs"] for learner in ("jaxq", "numpy", "classic")]
    for r in rows:
        assert "error" not in r and "skipped" not in r, r
        assert {"solved", "learning_s", "setup_s", "total_s", "env_steps", "value",
                "value_ratio", "cap_s", "checks", "config"} <= set(r)
        assert r["env_steps"] > 0 and r["checks"] >= 1
        if r["solved"]:  # the criterion, as stored
            assert r["v_star"] - r["value"] <= 0.02 * abs(r["v_star"]) + 1e-9
        else:  # stopped at its cap (the last check is at the cap)
            assert r["learning_s"] >= r["cap_s"]
            assert r["value_ratio"] < 0.98
        if r["learner"] == "jaxq":
            # something meaningful: jaxq solves every quick env, compile reported apart
            assert r["solved"], r
            assert r["value_ratio"] >= 0.98
            assert r["env_steps"] == r["chunks"] * r["steps_per_chunk"]

    summary = {s["env"]: s for s in stored["summary"]}
    assert list(summary) == cfg["envs"]
    for key, s in summary.items():
        by = {r["learner"]: r for r in rows if r["env"] == key}
        j = by["jaxq"]
        assert s["jaxq_solved"]
        for learner in ("classic", "numpy"):
            b, rt = by[learner], s[f"vs_{learner}"]
            assert rt is not None
            # a solved baseline gives a ratio, a capped one a lower bound
            assert rt["bound"] == ("=" if b["solved"] else ">")

    (goal,) = stored["goals"]
    assert {"name", "value", "target", "met"} <= set(goal)
    assert goal["target"] == 100 and goal["met"] is False and goal["value"] is None  # no maze256
    assert any("goal" in line for line in logs)


def test_plot_written(quick_run):
    root, _, _ = quick_run
    path = root / "results" / "time_to_solution" / tts.PLOT
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_markdown_section_is_deterministic(quick_run, tmp_path):
    root, results, _ = quick_run
    text = (root / "BENCHMARKS.md").read_text()
    begin, end = benchlib.markers("time_to_solution")
    assert text.count(begin) == 1 and text.count(end) == 1
    section = text[text.index(begin) + len(begin):text.index(end)]
    stored = benchlib.read_results("time_to_solution", root)
    once = tts.render_markdown(stored)
    assert once.strip() == section.strip()
    assert "smoke test" in once and "**Goal**" in once and tts.PLOT in once
    for label in ("FrozenLake 8x8 (slippery)", "Taxi", "Maze 16x16", "Maze 32x32"):
        assert f"| {label} |" in once
    # render.py renders the same section, and --check agrees afterwards
    md = tmp_path / "BENCHMARKS.md"
    out = render.render(root, md, only=["time_to_solution"], log=lambda *_: None)
    assert out["errors"] == {} and out["sections"] == ["time_to_solution"]
    assert once.strip() in md.read_text()
    assert render.main(["--root", str(root), "--output", str(md), "--only", "time_to_solution",
                        "--check"], log=lambda *_: None) == 0
    # --markdown-only re-renders the same bytes
    before = (root / "BENCHMARKS.md").read_bytes()
    tts.main(["--markdown-only", "--out", str(root)], log=lambda *_: None)
    assert (root / "BENCHMARKS.md").read_bytes() == before


def test_ratios_and_goal_bounds():
    """A capped baseline gives a lower bound; the goal is met only if that bound (or a
    measured ratio) reaches 100x."""
    j = {"solved": True, "learning_s": 1.0, "setup_s": 1.0, "total_s": 2.0, "cap_s": 60.0}
    capped = {"solved": False, "learning_s": 300.0, "setup_s": 0.0, "total_s": 300.0,
              "cap_s": 300.0}
    solved = {"solved": True, "learning_s": 50.0, "setup_s": 0.0, "total_s": 50.0,
              "cap_s": 300.0}
    r = tts.ratio(j, capped)
    assert r == {"value": 150.0, "bound": ">", "text": "> 150x"}
    assert tts.ratio(j, solved) == {"value": 25.0, "bound": "=", "text": "25.0x"}
    assert tts.ratio(j, solved, "learning_s")["value"] == 50.0
    assert tts.ratio(dict(j, solved=False), dict(capped)) is None
    assert tts.ratio(j, {"skipped": "no"}) is None
    rows = [dict(j, env="maze256", learner="jaxq"), dict(capped, env="maze256", learner="classic")]
    (goal,) = tts.goals(tts.summarize(rows, ["maze256"]))
    assert goal["met"] is True and goal["bound"] == ">" and goal["value"] == 150.0
    rows[1] = dict(capped, cap_s=100.0, learning_s=100.0, total_s=100.0, env="maze256",
                   learner="classic")
    (goal,) = tts.goals(tts.summarize(rows, ["maze256"]))
    assert goal["met"] is False and goal["value"] == 50.0  # a bound of > 50x decides nothing
    rows[1] = dict(solved, env="maze256", learner="classic")
    (goal,) = tts.goals(tts.summarize(rows, ["maze256"]))
    assert goal["met"] is False and goal["bound"] == "="


def test_registered_in_run_and_render(tmp_path):
    spec = run.SPECS["time_to_solution"]
    assert spec.module == "time_to_solution" and "time_to_solution" in render.SECTIONS
    assert "time_to_solution" in run.ALL
    assert run.load_main("time_to_solution") is tts.main
    argv = run.experiment_argv("time_to_solution", tmp_path, quick=False, full=True,
                               profile=tmp_path / "p", extra=[])
    assert argv == ["--full", "--out", str(tmp_path)]
    assert "--no-markdown" in run.experiment_argv("time_to_solution", tmp_path, True, False,
                                                  None, [], markdown=False)


# ---- the checker and the classic loop ------------------------------------------------

def test_greedy_value_matches_policy_evaluation():
    import jax
    import jax.numpy as jnp
    import jaxq
    from jaxq.model import greedy_policy

    spec = benchlib.load_env("FrozenLake-v1")
    checker = tts.GreedyValue(spec)
    q = jnp.round(jax.random.uniform(jax.random.key(0), (16, 4)) * 3) / 3  # with ties
    exact = float(jaxq.policy_start_value(spec.model, greedy_policy(q), tts.GAMMA))
    assert checker(q) == pytest.approx(exact, abs=1e-3 * abs(checker.v_star))
    # from any start (a previous check's V, here a wrong one) within the same bound
    v, _, sweeps = checker.evaluate(q, jnp.ones(16, jnp.float32))
    assert v == pytest.approx(exact, abs=1e-3 * abs(checker.v_star)) and sweeps > 0
    q_star = jaxq.value_iteration(spec.model, tts.GAMMA)
    assert checker.gap(checker(q_star)) == pytest.approx(0.0, abs=1e-3)
    assert math.isfinite(checker.v_star_s)


def test_classic_loop_learns_taxi():
    spec = benchlib.load_env("Taxi-v3")
    env, gym_id = classic_loop.make_classic_env(spec)
    assert gym_id in ("Taxi-v4", "Taxi-v3")
    learner = classic_loop.ClassicQLearning(env, lr=1.0, epsilon=0.1, seed=0)
    learner.run(60_000)
    checker = tts.GreedyValue(spec)
    assert checker.gap(checker(learner.q)) < 0.1
