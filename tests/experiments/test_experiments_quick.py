"""The experiment runner and the sweeps / convergence experiments stay runnable:
``experiments/run.py sweeps --quick`` and ``experiments/convergence.py --quick`` in
process on tiny sizes (seconds), their JSON schema and plots, the exact greedy evaluator
they share, and ``experiments/render.py`` (deterministic, every present section).
Nothing here asserts a speed."""

import json
import math
import shutil

import numpy as np
import pytest

from experiment_modules import EXPERIMENTS
import experiment_modules
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


benchlib = experiment_modules.load("benchlib")
convergence = experiment_modules.load("convergence")
sweeps = experiment_modules.load("sweeps")
render = experiment_modules.load("render")
run = experiment_modules.load("run")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One results root holding the quick sweeps (through run.py) and convergence runs."""
    root = tmp_path_factory.mktemp("experiments")
    logs = []
    assert run.main(["sweeps", "--quick", "--out", str(root)], log=logs.append) == 0
    assert any("sweeps" in line for line in logs)
    convergence.main(["--quick", "--out", str(root)], log=logs.append)
    return root


def _stored(root, experiment):
    out = root / "results" / experiment
    stored = json.loads((out / "results.json").read_text())
    archived = [p for p in out.glob("*.json") if p.name != "results.json"]
    assert len(archived) == 1
    assert archived[0].name.startswith(stored["info"]["device"]["slug"])
    assert json.loads(archived[0].read_text()) == stored
    assert stored["experiment"] == experiment and stored["schema_version"] == 1
    assert isinstance(stored["device"], str) and stored["device"]
    assert stored["jax"] and stored["jaxlib"]
    assert stored["device"] == stored["info"]["device"]["description"]
    assert stored["jax"] == stored["info"]["versions"]["jax"]
    assert {"date_utc", "machine", "device", "versions"} <= set(stored["info"])
    return stored


def _png(path):
    assert path.exists() and path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_sweeps_quick_schema(root):
    r = _stored(root, "sweeps")
    cfg, t, g = r["config"], r["timing"], r["grid"]
    assert cfg["quick"] is True and cfg["mode"] == "quick"
    nl, ne = len(cfg["lrs"]), len(cfg["epsilons"])
    assert (cfg["seeds"], nl, ne) == (2, 3, 3) and cfg["learners"] == 18 == t["learners"]
    assert cfg["lrs"] == sorted(cfg["lrs"]) and cfg["lrs"][0] == 0.01 and cfg["lrs"][-1] == 1.0
    assert cfg["lr_schedule"] == cfg["epsilon_schedule"] == "constant"
    assert t["env_steps"] == cfg["learners"] * cfg["env_steps_per_learner"]
    assert len(t["times_s"]) == cfg["repeats"]
    for key in ("value_ratio", "success", "q_error", "train_success", "value_ratio_sem"):
        a = np.asarray(g[key], float)
        assert a.shape == (nl, ne) and np.isfinite(a).all(), key
    assert np.asarray(r["per_seed"]["value_ratio"]).shape == (2, nl, ne)
    assert ((0 <= np.asarray(g["success"])) & (np.asarray(g["success"]) <= 1)).all()
    assert 0 < r["optimal"]["success"] <= 1 and r["optimal"]["v_star"] > 0
    assert r["best"]["lr"] in cfg["lrs"] and r["best"]["epsilon"] in cfg["epsilons"]
    _png(root / "results" / "sweeps" / sweeps.PLOT)


def test_convergence_quick_schema(root):
    r = _stored(root, "convergence")
    cfg = r["config"]
    assert cfg["quick"] is True and cfg["rules"] == list(convergence.RULES)
    assert cfg["num_envs"] == [1, 16] and cfg["lr_schedule"] == "visit"
    assert len(r["runs"]) == len(cfg["rules"]) * len(cfg["num_envs"])
    for run_ in r["runs"]:
        c = run_["curve"]
        n = len(c["env_steps"])
        assert n >= 2 and all(len(v) == n for v in c.values())
        assert np.all(np.diff(c["env_steps"]) > 0) and np.all(np.diff(c["wall_s"]) >= 0)
        assert c["env_steps"][-1] == run_["env_steps"] == run_["budget_env_steps"]
        assert c["env_steps"][-1] == cfg["env_steps"][str(run_["num_envs"])]
        assert [s // run_["num_envs"] for s in c["env_steps"]] == c["iterations"]
        assert run_["capped"] is False
        for key in ("q_error", "q_error_eps", "success", "value_ratio"):
            assert all(math.isfinite(x) for x in c[key]), key
        assert all(0 <= x <= 1 for x in c["success"])
        assert all(x >= 0 for x in c["q_error"])
    for p in convergence.PLOTS.values():
        _png(root / "results" / "convergence" / p)


def test_greedy_evaluator_is_exact():
    """Q* scores V* and the optimal success exactly; the finite-horizon success agrees
    with jaxq's own greedy rollouts (10,000 episodes) on the env."""
    import jax
    import jaxq

    env, params = jaxq.make("FrozenLake8x8-v1")
    ev = convergence.GreedyEvaluator(env, params, 0.99)
    m = jax.device_get(ev.metrics(ev.q_star))
    assert float(m["value"]) == pytest.approx(ev.v_star, rel=1e-3)
    assert float(m["q_error"]) == 0.0
    assert float(m["success"]) == pytest.approx(ev.success_star, abs=1e-6)
    assert 0.5 < ev.success_star < 1.0 and ev.horizon == 200
    rollouts = jaxq.evaluate(env, params, ev.q_star, num_episodes=10_000, key=jax.random.key(1))
    assert float(rollouts.success_rate) == pytest.approx(ev.success_star, abs=0.025)
    # the zero table: ties everywhere, a uniformly random policy
    zero = np.zeros_like(np.asarray(ev.q_star))
    mz = jax.device_get(ev.metrics(zero))
    assert float(mz["q_error"]) == pytest.approx(float(np.abs(ev.q_star).max()))
    assert 0 <= float(mz["success"]) < 0.05
    # the eps-greedy fixed point lies below Q* (it pays for exploring)
    assert float(np.max(np.asarray(ev.q_star_eps) - np.asarray(ev.q_star))) <= 1e-5


def _copy_stored_results(dst):
    """The repository's stored results (whatever exists) beside the quick runs'."""
    for name, (folder, _) in render.SECTIONS.items():
        src = EXPERIMENTS / "results" / folder / "results.json"
        if src.exists() and not (dst / "results" / folder).exists():
            (dst / "results" / folder).mkdir(parents=True)
            shutil.copy(src, dst / "results" / folder / "results.json")


def test_render_is_deterministic_and_complete(root, tmp_path):
    work = tmp_path / "root"
    shutil.copytree(root / "results", work / "results")
    _copy_stored_results(work)
    present = [n for n, (folder, _) in render.SECTIONS.items()
               if (work / "results" / folder / "results.json").exists()]
    assert {"sweeps", "convergence"} <= set(present)

    a, b = tmp_path / "a.md", tmp_path / "b.md"
    out_a = render.render(work, a, log=lambda *_: None)
    out_b = render.render(work, b, log=lambda *_: None)
    assert out_a["errors"] == out_b["errors"] == {} and out_a["sections"] == present
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert text.startswith(benchlib.MARKDOWN_HEADER)
    for name in present:
        begin, end = benchlib.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1
    # sections in the canonical order; re-rendering an existing file changes nothing
    assert [text.index(benchlib.markers(n)[0]) for n in present] == sorted(
        text.index(benchlib.markers(n)[0]) for n in present)
    again = render.render(work, a, log=lambda *_: None)
    assert again["changed"] is False and a.read_bytes() == b.read_bytes()
    assert render.main(["--root", str(work), "--output", str(a), "--check"],
                       log=lambda *_: None) == 0
    # text outside the markers is kept, stale sections are replaced
    edited = text.replace("# jaxq benchmarks\n", "# jaxq benchmarks\n\nHand-written note.\n")
    begin, end = benchlib.markers("sweeps")
    i, j = edited.index(begin) + len(begin), edited.index(end)
    a.write_text(edited[:i] + "\nOUTDATED-SECTION-BODY\n" + edited[j:])
    assert render.main(["--root", str(work), "--output", str(a), "--check"],
                       log=lambda *_: None) == 1
    render.render(work, a, log=lambda *_: None)
    assert a.read_text() == edited and "OUTDATED-SECTION-BODY" not in a.read_text()
    # the sections are each experiment's own rendering
    stored = benchlib.read_results("sweeps", work)
    assert sweeps.render_markdown(stored).strip() in text
    assert "sweeps_heatmap.png" in text and "convergence_steps.png" in text


def test_run_dispatch_arguments(tmp_path):
    argv = run.experiment_argv("sutton_barto", tmp_path, quick=False, full=True, profile=None,
                               extra=[])
    assert argv == ["--seeds", "10000", "--out", str(tmp_path / "results" / "sutton_barto")]
    # experiments/bench.py is traced by the runner (jax.profiler), not given --profile
    argv = run.experiment_argv("bench", tmp_path, quick=True, full=False,
                               profile=tmp_path / "p", extra=["--max-envs", "4"])
    assert argv == ["--quick", "--out", str(tmp_path), "--max-envs", "4"]
    assert run.experiment_argv("sweeps", tmp_path, False, True, tmp_path, [])[:1] == ["--full"]
    assert "--no-markdown" in run.experiment_argv("sweeps", tmp_path, True, False, None, [],
                                                  markdown=False)
    assert "--no-markdown" not in run.experiment_argv("sutton_barto", tmp_path, True, False,
                                                      None, [], markdown=False)
    assert set(run.ALL) == set(run.SPECS)
    assert set(run.SPECS) <= set(render.SECTIONS)
    for name in run.SPECS:  # every experiment's main is importable
        assert callable(run.load_main(name))
    with pytest.raises(SystemExit):
        run.parse_args(["nonsense"])
    with pytest.raises(SystemExit):
        run.parse_args(["sweeps", "--quick", "--full"])
    # render through the runner: an empty root renders nothing and says so
    logs = []
    assert run.main(["render", "--out", str(tmp_path)], log=logs.append) == 0
    assert not (tmp_path / "BENCHMARKS.md").exists() and "nothing rendered" in logs[-1]
