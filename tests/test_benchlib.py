"""``experiments/benchlib.py``, the helpers every benchmark script shares (markdown sections,
units, strict JSON, timing loops), and where results go: beside the script that runs,
or ``--out``, or the current directory, never into the tree jaxq was installed from
(issue 9, item 14). The experiments themselves run in ``tests/experiments`` (``make
test-all``)."""

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import experiment_modules
import jaxq
from jaxq import bench

benchlib = experiment_modules.load("benchlib")

CHECKOUT = Path(__file__).resolve().parents[1]
PACKAGE = Path(jaxq.__file__).resolve().parent


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


def test_time_scaled_picks_the_count_that_meets_the_target(monkeypatch):
    """On a fake clock where run(n) takes n ms: probes grow from the guess until a run
    takes a quarter of the target, then the timed runs use the power of two nearest
    target / (1 ms) and report their median."""
    now = [0.0]
    calls = []

    def run(n):
        calls.append(n)
        now[0] += n * 1e-3

    monkeypatch.setattr(benchlib, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    t = benchlib.time_scaled(run, target_s=0.5, repeats=3, guess=1)
    assert t.iters == 512 and t.times_s == (0.512,) * 3 and t.median_s == 0.512
    assert calls[-3:] == [512] * 3
    probes = calls[:-3]
    assert probes[0] == 1 and all(b <= 64 * a for a, b in zip(probes, probes[1:]))
    assert probes[-1] * 1e-3 >= 0.5 / 4 > probes[-2] * 1e-3  # stopped at the first long run
    t = benchlib.time_scaled(run, target_s=0.5, repeats=1, guess=300, round_pow2=False)
    assert t.iters == 500


def test_the_package_does_not_import_the_experiments():
    """jaxq is the library: nothing under jaxq/ reaches up into experiments/ (the
    baselines, results files and BENCHMARKS.md rendering live there)."""
    def reaches_up(text: str) -> bool:
        if any(w in text for w in ("import benchlib", "jaxq.benchlib", "from experiments",
                                   "import experiments")):
            return True
        # a sys.path change toward the repository (--import's current directory is fine)
        return any("sys.path" in line and any(w in line for w in (
            "experiments", "__file__", "parent", "dirname", "..")) for line in text.splitlines())

    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if reaches_up(p.read_text(encoding="utf-8"))]
    assert offenders == []
    assert not (PACKAGE / "benchlib.py").exists()


def test_cli_bench_delegates(monkeypatch):
    from jaxq import cli

    seen = []
    monkeypatch.setattr(bench, "main", lambda argv: seen.append(list(argv)) or 0)
    assert cli.main(["bench", "--quick", "--max-envs", "4"]) == 0
    assert seen == [["--quick", "--max-envs", "4"]]


# ---- where results go ---------------------------------------------------------------

def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (caches aside) with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def untouched():
    """Fails the test if anything under the package or the checkout's experiments/
    (results, BENCHMARKS.md) is created or changed."""
    roots = [PACKAGE, CHECKOUT / "experiments"]
    before = [_tree(r) for r in roots]
    yield
    for root, b in zip(roots, before):
        assert _tree(root) == b, f"something was written under {root}"


def _args(**kw):
    base = dict(out=None, quick=False, markdown_only=False, no_markdown=False, no_plots=True)
    return argparse.Namespace(**{**base, **kw})


def _fake_run(args, log):
    return {"info": benchlib.system_info(), "value": 42}


def _render(results):
    return f"value {results['value']}\n"


@pytest.mark.parametrize("where", ["home", "out", "cwd"])
def test_results_go_home_or_to_out_or_to_the_current_directory(where, tmp_path, monkeypatch,
                                                              untouched):
    home, out, cwd = tmp_path / "home", tmp_path / "out", tmp_path / "cwd"
    for d in (home, out, cwd):
        d.mkdir()
    monkeypatch.chdir(cwd)
    args = _args(out=out if where == "out" else None)
    benchlib.run_experiment(args, "fake", _fake_run, _render, log=lambda *_: None,
                            home=None if where == "cwd" else home)
    root = {"home": home, "out": out, "cwd": cwd}[where]
    stored = benchlib.read_results("fake", root)
    assert stored["value"] == 42
    assert "value 42" in (root / "BENCHMARKS.md").read_text()
    written = {d.name for d in (home, out, cwd) if any(d.iterdir())}
    assert written == {root.name}
    # --markdown-only reads back from the same place
    (root / "BENCHMARKS.md").unlink()
    benchlib.run_experiment(_args(out=args.out, markdown_only=True), "fake", _fake_run,
                            _render, log=lambda *_: None, home=None if where == "cwd" else home)
    assert "value 42" in (root / "BENCHMARKS.md").read_text()


def test_a_copied_script_writes_beside_itself(tmp_path, monkeypatch, untouched):
    """experiments/env_throughput.py copied into another tree and run from a third folder
    (``--markdown-only``: it renders the copy's stored results) writes the copy's
    BENCHMARKS.md, not the checkout's."""
    copy = tmp_path / "other-checkout" / "experiments"
    shutil.copytree(CHECKOUT / "experiments", copy,
                    ignore=shutil.ignore_patterns("results", "BENCHMARKS.md", "__pycache__"))
    stored = CHECKOUT / "experiments" / "results" / "env_throughput" / "results.json"
    (copy / "results" / "env_throughput").mkdir(parents=True)
    shutil.copy(stored, copy / "results" / "env_throughput" / "results.json")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = importlib.util.spec_from_file_location("env_throughput_copy", copy / "env_throughput.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder first
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    module.main(["--markdown-only"], log=lambda *_: None)
    text = (copy / "BENCHMARKS.md").read_text()
    assert "<!-- BEGIN env_throughput -->" in text
    assert not any(elsewhere.iterdir())
