"""Regenerate ``experiments/BENCHMARKS.md`` from the stored results files.

    python experiments/render.py                # update experiments/BENCHMARKS.md
    python experiments/render.py --check        # exit 1 if it is out of date (CI)
    python experiments/render.py --root DIR     # DIR/results/*/results.json -> DIR/BENCHMARKS.md
    python experiments/run.py render            # the same, through the runner

Every experiment with a ``<root>/results/<experiment>/results.json`` gets its section
(between ``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers), rendered by that
experiment's own ``render_markdown(results)`` (``throughput``, ``bench``,
``time_to_solution``, ``env_throughput``, ``scaling``, ``sweeps``, ``convergence``; Sutton &
Barto's section is rendered here). Rendering reads the results dict alone (no clock, no
machine state), so the same results give the same bytes. Text outside the markers is kept as it
is; a new file starts with ``benchlib.MARKDOWN_HEADER`` and the sections in the order
below; a section whose results file is missing is left untouched.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent  # results and BENCHMARKS.md live beside this script
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402

# section name -> (results directory under <root>/results, module with render_markdown)
SECTIONS: dict[str, tuple[str, str]] = {
    "throughput": ("throughput", "throughput"),
    "bench": ("bench", "bench"),
    "time_to_solution": ("time_to_solution", "time_to_solution"),
    "env_throughput": ("env_throughput", "env_throughput"),
    "cpu_threefry": ("cpu_threefry", "cpu_threefry"),
    "scaling": ("scaling", "scaling"),
    "sweeps": ("sweeps", "sweeps"),
    "convergence": ("convergence", "convergence"),
    "ray_async": ("ray_async", "ray_async"),
    "function_approx": ("function_approx", "function_approx"),
    "sutton_barto": ("sutton_barto", __name__),
}


# ---------------------------------------------------------------------------------------
# Sutton & Barto (experiments/sutton_barto.py writes JSON and plots, no markdown)
# ---------------------------------------------------------------------------------------
SB_RULES = {"sarsa": "Sarsa", "q_learning": "Q-learning", "expected_sarsa": "Expected Sarsa",
            "double_q": "Double Q-learning"}


def render_markdown(results: dict[str, Any]) -> str:
    """The ``sutton_barto`` section, from its results dict alone (deterministic)."""
    info, cfg = results["info"], results["config"]
    cliff, maxbias = results["cliff"], results["maxbias"]
    lo, hi = cfg["cliff"]["summary_episodes"]
    lines = [
        benchlib.heading("Sutton & Barto, Examples 6.6 and 6.7", info),
        "",
    ]
    if cfg.get("quick"):
        lines += ["> `--quick` run: few seeds, a smoke test.", ""]
    c = cfg["cliff"]
    lines += [
        f"**Cliff walking** (Figure 6.4): eps = {c['epsilon']:g}, alpha = {c['lr']:g}, gamma = "
        f"{c['gamma']:g}, {c['episodes']} episodes, {cfg['seeds']:,} seeds, every seed of a "
        "rule one jaxq learner in one vmapped call. Mean sum of rewards per episode over "
        f"episodes {lo}-{hi} (± s.e. over seeds), and the share of seeds whose final greedy "
        "policy walks the 13-step optimal path along the cliff.",
        "",
    ]
    rows = []
    for algo, r in cliff.items():
        t = r["timing"]
        rows.append([SB_RULES.get(algo, algo),
                     f"{r['mean_return_101_500']:.2f} ± {r['mean_return_101_500_sem']:.2f}",
                     f"{100 * r['greedy_path_13_fraction']:.1f}%",
                     benchlib.human(t["env_steps"]), f"{t['run_s']:.2f}", f"{t['compile_s']:.2f}"])
    lines += [benchlib.table(["rule", f"mean return, ep. {lo}-{hi}", "13-step greedy path",
                              "env steps", "run (s)", "compile (s)"], rows,
                             ["l", "r", "r", "r", "r", "r"]), ""]
    m = cfg["maxbias"]
    marks = [e for e in (1, 10, 50, 100, 200, m["episodes"]) if e <= m["episodes"]]
    marks = sorted(set(marks))
    lines += [
        f"**Maximization bias** (Figure 6.5): {m['env_kwargs']['num_b_actions']} actions in B "
        f"with rewards N({m['env_kwargs']['mean']:g}, {m['env_kwargs']['std']:g}), eps = "
        f"{m['epsilon']:g}, alpha = {m['lr']:g}, {cfg['seeds']:,} seeds: % of episodes taking "
        f"LEFT in A (optimal: {100 * m['epsilon'] / 2:g}%).",
        "",
    ]
    rows = []
    for algo, r in maxbias.items():
        pct = r["pct_left"]
        rows.append([SB_RULES.get(algo, algo)] + [f"{pct[e - 1]:.1f}" for e in marks]
                    + [f"{r['peak_pct_left']:.1f} (ep. {r['peak_episode']})"])
    lines += [benchlib.table(["rule"] + [f"ep. {e}" for e in marks] + ["peak"], rows,
                             ["l"] + ["r"] * (len(marks) + 1)), ""]
    lines += ["![cliff walking](results/sutton_barto/cliff_returns.png) "
              "![maximization bias](results/sutton_barto/maxbias_left.png)", ""]
    lines.append(benchlib.run_line(results, "sutton_barto", on=info["device"]["description"]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
def renderer(name: str) -> Callable[[dict[str, Any]], str]:
    module = SECTIONS[name][1]
    mod = sys.modules[__name__] if module == __name__ else importlib.import_module(module)
    return mod.render_markdown


def results_path(name: str, root: Path | str) -> Path:
    return benchlib.results_dir(root, SECTIONS[name][0]) / "results.json"


def render_text(text: str, root: Path | str = HERE,
                only: list[str] | None = None,
                log: Callable[[str], None] = print) -> tuple[str, list[str], dict[str, str]]:
    """``text`` (a BENCHMARKS.md) with the section of every stored results file rendered.

    Returns ``(new_text, rendered sections, errors {section: message})``; a section whose
    results file is missing is left as it is."""
    names = list(SECTIONS) if only is None else [n for n in SECTIONS if n in only]
    unknown = sorted(set(only or []) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; known: {list(SECTIONS)}")
    done, errors = [], {}
    for name in names:
        path = results_path(name, root)
        if not path.exists():
            continue
        try:
            body = renderer(name)(benchlib.read_results(name, path=path))
            text = benchlib.replace_section(text, name, body)
            done.append(name)
        except Exception as e:  # noqa: BLE001 (one broken file must not hide the others)
            errors[name] = f"{type(e).__name__}: {e}"
            log(f"render: {name}: {errors[name]} (section left as it was)")
    return text, done, errors


def render(root: Path | str = HERE, path: Path | str | None = None,
           only: list[str] | None = None, check: bool = False,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Render ``<root>/BENCHMARKS.md`` (or ``path``) in place. With ``check``, write
    nothing and report whether it is up to date. Returns ``{"path", "sections",
    "errors", "changed"}``."""
    path = Path(path) if path is not None else Path(root) / benchlib.MARKDOWN_NAME
    old = path.read_text(encoding="utf-8") if path.exists() else None
    new, done, errors = render_text(benchlib.MARKDOWN_HEADER if old is None else old, root,
                                    only, log)
    changed = new != old
    if changed and not check and (done or old is not None):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    return {"path": str(path), "sections": done, "errors": errors, "changed": changed}


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", "--out", dest="root", type=Path, default=HERE,
                   help="where results/ is and BENCHMARKS.md goes (default: experiments/)")
    p.add_argument("--output", type=Path, default=None,
                   help="the markdown file (default: <root>/BENCHMARKS.md)")
    p.add_argument("--only", nargs="+", default=None, choices=list(SECTIONS),
                   help="render these sections only")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the file is not what the results give")
    args = p.parse_args(argv)
    out = render(args.root, args.output, args.only, args.check, log)
    if args.check:
        state = "out of date" if out["changed"] else "up to date"
        log(f"{out['path']}: {state} ({', '.join(out['sections']) or 'no results'})")
        return 1 if out["changed"] or out["errors"] else 0
    if out["sections"]:
        verb = "wrote" if out["changed"] else "unchanged:"
        log(f"{verb} {out['path']} (sections: {', '.join(out['sections'])})")
    else:
        log(f"no results under {Path(args.root) / 'results'}; nothing rendered")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
