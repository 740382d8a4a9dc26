"""One runner for every experiment of ``experiments/``.

    python experiments/run.py <experiment> [--quick | --full] [--profile DIR] [--out DIR] [-- ARGS]
    python experiments/run.py all --quick          # every experiment, seconds each, temp dir
    python experiments/run.py sweeps --full        # accelerator-sized
    python experiments/run.py render               # BENCHMARKS.md from the stored results

Experiments (each writes ``<out>/results/<experiment>/``: ``results.json`` with its
config, the device, the jax and jaxlib versions and every figure, an archived
``<device>-<date>.json`` copy, its PNG plots, and its section of ``<out>/BENCHMARKS.md``):

  throughput        steps/s vs N (1 ... 2^20) per env, rule and strategy, beside the classic
                    loop, the threaded dict, plain and optimized vectorized NumPy and
                    gymnax's CartPole, with the issue's goals checked (``throughput.py``)
  bench             one env and rule, jaxq against the baselines, and what the conveniences
                    (evaluation, progress, checkpoints) cost (``bench.py``; ``jaxq bench``,
                    in the package, measures jaxq alone)
  time_to_solution  seconds until the greedy policy is within 2% of optimal, jaxq vs NumPy vs
                    the classic loop, on FrozenLake, Taxi and 64-1024 mazes
                    (``time_to_solution.py``)
  env_throughput    environment-only steps/s for every environment (``env_throughput.py``)
  cpu_threefry      jaxq's random words vs jax.random.bits on XLA:CPU, paired (``cpu_threefry.py``)
  scaling           devices x strategies: steps/s, time to solution, staleness (``scaling.py``)
  sweeps            seeds x lrs x epsilons as one vmapped call: learners/s (``sweeps.py``)
  convergence       max|Q - Q*| and greedy success vs env steps and wall-clock, per rule
                    and N (``convergence.py``)
  function_approx   tiles / PQN / DQN learning curves on CartPole, Acrobot, MountainCar and
                    Breakout-MinAtar, throughput vs N, issue 11's goals (``function_approx.py``)
  ray_async         jaxq.ray: K = 1, 2, 4 learners vs jaxq.train, convergence vs observed
                    staleness, push cost, a network model; needs Ray (``ray_async.py``)
  sutton_barto      Sutton & Barto Examples 6.6 and 6.7 (``sutton_barto.py``)
  all               all of the above, each in its own process, then ``render``
  render            regenerate BENCHMARKS.md from the stored results (``render.py``)

Sizes: ``--quick`` is CPU-sized (seconds; a smoke test, not a measurement), nothing is each
script's default (sized for a CPU), ``--full`` is accelerator-sized (for scripts whose
default is already their largest run, the default). Devices are picked automatically:
everything runs on JAX's default backend (``JAX_PLATFORMS`` chooses another), and the
results name it.

``--out DIR``: the root for ``results/`` and ``BENCHMARKS.md`` (default: ``experiments/``;
with ``--quick``, a new temp dir, as the scripts do). ``--profile DIR``: a JAX profiler
trace of the whole run into ``DIR/<experiment>/`` (TensorBoard / Perfetto), except scaling
and throughput, whose device work runs (partly) in child processes. (To trace jaxq's chunk
at one N and see where the time goes: ``jaxq bench --profile DIR --num-envs N``.) Arguments after ``--`` go to the experiment's script
as they are (``run.py sweeps -- --seeds 3 --steps 100000``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent  # the default root: results go beside this script
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402


@dataclass(frozen=True)
class Spec:
    """How the runner calls one experiment; its name is also its results folder
    (``<root>/results/<name>/``) and its BENCHMARKS.md section (``render.SECTIONS``)."""

    module: str  # has main(argv)
    full: tuple[str, ...] = ()  # the arguments that make it accelerator-sized
    out_is_dir: bool = False  # --out names the results folder itself, not the root
    profile: str = "trace"  # "native": pass --profile DIR; "trace": jax.profiler; "none"
    writes_markdown: bool = True  # writes its own section (and takes --no-markdown)


SPECS: dict[str, Spec] = {
    # throughput's strategies run in a child process: no trace (it would start JAX here)
    "throughput": Spec("throughput", ("--full",), profile="none"),
    "bench": Spec("bench"),
    "time_to_solution": Spec("time_to_solution", ("--full",)),
    "env_throughput": Spec("env_throughput"),
    "cpu_threefry": Spec("cpu_threefry"),
    "scaling": Spec("scaling", profile="none"),
    "sweeps": Spec("sweeps", ("--full",)),
    "convergence": Spec("convergence", ("--full",)),
    "ray_async": Spec("ray_async", profile="none"),  # learners run in Ray worker processes
    "function_approx": Spec("function_approx", ("--full",)),  # tiles / PQN / DQN curves
    # Sutton & Barto's Figure 6.5 averaged 10,000 runs
    "sutton_barto": Spec("sutton_barto", ("--seeds", "10000"),
                         out_is_dir=True, writes_markdown=False),
}
# `all`: scaling first (its parent process must hold no accelerator)
ALL = ["scaling", "throughput", "bench", "time_to_solution", "env_throughput", "cpu_threefry",
       "sweeps", "convergence", "ray_async", "function_approx", "sutton_barto"]
CHOICES = list(SPECS) + ["all", "render"]


def experiment_argv(name: str, root: Path, quick: bool, full: bool, profile: Path | None,
                    extra: list[str], markdown: bool = True) -> list[str]:
    """The argv that ``name``'s ``main`` gets."""
    spec = SPECS[name]
    argv = ["--quick"] if quick else list(spec.full) if full else []
    if not markdown and spec.writes_markdown:
        argv.append("--no-markdown")
    if spec.out_is_dir:
        argv += ["--out", str(benchlib.results_dir(root, name))]
    else:
        argv += ["--out", str(root)]
    if profile is not None and spec.profile == "native":
        argv += ["--profile", str(profile)]
    return argv + list(extra)


def load_main(name: str) -> Callable[[list[str]], Any]:
    return importlib.import_module(SPECS[name].module).main


def run_experiment(name: str, root: Path, quick: bool = False, full: bool = False,
                   profile: Path | None = None, extra: list[str] | None = None,
                   markdown: bool = True, log: Callable[[str], None] = print) -> Any:
    """Run one experiment in this process; then render its BENCHMARKS.md section."""
    spec = SPECS[name]
    argv = experiment_argv(name, root, quick, full, profile, extra or [], markdown)
    log(f"== {name}: {spec.module}.main({' '.join(argv)})")
    main = load_main(name)
    trace: Any = contextlib.nullcontext()
    if profile is not None and spec.profile == "trace":
        import jax

        trace_dir = Path(profile) / name
        trace_dir.mkdir(parents=True, exist_ok=True)
        trace = jax.profiler.trace(str(trace_dir), create_perfetto_trace=True)
        log(f"   profiling into {trace_dir}")
    elif profile is not None and spec.profile == "none":
        log(f"   --profile ignored for {name}: its work runs in child processes")
    with trace:
        out = main(argv)
    if markdown and not spec.writes_markdown:  # the others wrote their section already
        import render

        r = render.render(root, only=[name], log=log)
        if r["sections"]:
            log(f"   BENCHMARKS.md section {name!r}: {r['path']}")
    return out


def run_all(root: Path, quick: bool, full: bool, profile: Path | None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every experiment in its own process (no backend, accelerator memory or compile
    cache carried from one to the next), writing results only; then render BENCHMARKS.md
    once, so a new file gets its sections in render's order. Returns ``{name: status}``."""
    status: dict[str, Any] = {}
    for name in ALL:
        cmd = [sys.executable, str(Path(__file__).resolve()), name, "--out", str(root),
               "--no-markdown"]
        cmd += ["--quick"] if quick else ["--full"] if full else []
        if profile is not None:
            cmd += ["--profile", str(profile)]
        log(f"== {name}: {' '.join(cmd[1:])}")
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        status[name] = {"rc": rc, "wall_s": round(time.perf_counter() - t0, 1)}
        log(f"== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in "
            f"{status[name]['wall_s']:.1f} s")
    import render

    r = render.render(root, log=log)
    log(f"rendered {r['path']} (sections: {', '.join(r['sections']) or 'none'})")
    status["render"] = {"rc": 1 if r["errors"] else 0}
    return status


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="experiments/run.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=CHOICES, metavar="experiment",
                   help=f"one of: {', '.join(CHOICES)}")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CPU-sized: seconds, a smoke test")
    size.add_argument("--full", action="store_true", help="accelerator-sized")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="profile into DIR (see below)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="root for results/ and BENCHMARKS.md (default: experiments/; "
                        "--quick: a temp dir)")
    p.add_argument("--no-markdown", action="store_true",
                   help="write no BENCHMARKS.md section (results and plots only)")
    args = p.parse_args(argv)
    if extra and args.experiment == "all":
        p.error("arguments after -- need a single experiment")
    return args, extra


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    args, extra = parse_args(argv)
    if args.experiment == "render":
        import render

        root = args.out or HERE
        return render.main(["--root", str(root)] + extra, log=log)
    if args.out is not None:
        root = Path(args.out)
    elif args.quick:
        root = Path(tempfile.mkdtemp(prefix="jaxq-experiments-quick-"))
    else:
        root = HERE
    log(f"results root: {root}")
    if args.experiment == "all":
        status = run_all(root, args.quick, args.full, args.profile, log)
        failed = [k for k, v in status.items() if v["rc"] != 0]
        log(f"all: {len(status) - len(failed)} ok" + (f", FAILED: {failed}" if failed else ""))
        return 1 if failed else 0
    out = run_experiment(args.experiment, root, args.quick, args.full, args.profile, extra,
                         markdown=not args.no_markdown, log=log)
    return out if isinstance(out, int) else 0


if __name__ == "__main__":
    sys.exit(main())
