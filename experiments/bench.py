"""jaxq against the baselines: one environment and update rule, jaxq beside a classic
Python loop and the fastest vectorized NumPy Q-learner we could write, in the same run; and
what the conveniences of ``jaxq.train`` cost. (``jaxq bench``, in the package, measures jaxq
alone; ``throughput.py`` is the full sweep over envs, rules, strategies and baselines.)

**Throughput** (default: Q-learning on FrozenLake 8x8, slippery, T = 200; gamma 0.99,
constant lr 0.1 and epsilon 0.1, set explicitly in every learner):

* *jaxq*: ``jaxq.bench.measure_jaxq``: ``learner.chunk`` compiled ahead of time as
  ``jaxq.train`` does it (compile time reported apart), ``eval_every=0``, for N = 1, 4,
  ..., ``--max-envs``; ``chunk_iters`` set per N so that one call takes about
  ``--target-s``; steps/s = N * chunk_iters / median wall time of ``--repeats`` calls;
  with the HLO figures of each compiled chunk (threefry evaluations per step, bytes
  accessed per env step; ``jaxq.bench`` says how they are counted).
* *vectorized NumPy* (``baselines/numpy_vectorized.py``, ``NumpyQLearner``): the same
  batched algorithm on the host, one thread.
* *classic loop* (``baselines/classic_loop.py``): Gymnasium's environment stepped from
  Python with a NumPy table.

Writes ``<out>/results/bench/results.json`` (plus an archived copy) and the ``bench``
section of ``<out>/BENCHMARKS.md`` (``<out>`` defaults to ``experiments/``).

    python experiments/bench.py                 # the default run (a few minutes on CPU)
    python experiments/bench.py --quick         # seconds; into a temp dir unless --out
    python experiments/bench.py --env Taxi-v3 --algo sarsa   # (baselines: q_learning only)
    python experiments/bench.py --markdown-only # re-render BENCHMARKS.md from results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent  # the default root: results go beside this script
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "baselines"))
import benchlib  # noqa: E402
import classic_loop  # noqa: E402
import numpy_vectorized  # noqa: E402

from jaxq import bench as jaxq_bench  # noqa: E402

EXPERIMENT = "bench"
SCHEMA_VERSION = 3  # 3: the overhead as steps/s of jaxq.train's wall time
DEFAULT_ENV = "FrozenLake8x8-v1"
DEFAULT_ALGO = "q_learning"
DEFAULT_MAX_ENVS = 262_144
QUICK_MAX_ENVS = 16
GAMMA, LR, EPSILON = benchlib.GAMMA, benchlib.LR, benchlib.EPSILON

Log = Callable[[str], None]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="seconds, not a measurement: N = 1 and 16, short timings; writes "
                        "into a temp dir unless --out")
    p.add_argument("--env", default=DEFAULT_ENV, help=f"throughput env id (default {DEFAULT_ENV})")
    p.add_argument("--env-kwargs", default=None, metavar="JSON",
                   help='keyword arguments of the env, e.g. \'{"size": 256}\'')
    p.add_argument("--algo", default=DEFAULT_ALGO,
                   help="jaxq's rule (the NumPy and classic baselines are Q-learning only)")
    p.add_argument("--max-envs", type=int, default=None,
                   help=f"largest N (powers of 4 from 1; default {DEFAULT_MAX_ENVS:,})")
    p.add_argument("--target-s", type=float, default=None,
                   help="seconds per timed call (default 0.5; --quick 0.02)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default 3; --quick 2)")
    p.add_argument("--numpy-budget-s", type=float, default=None,
                   help="stop timing NumPy at larger N after this many seconds (default 90)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="root for results/ and BENCHMARKS.md (default: experiments/)")
    p.add_argument("--markdown-only", action="store_true",
                   help="only re-render BENCHMARKS.md from <out>/results/bench/results.json")
    p.add_argument("--no-markdown", action="store_true", help="write the JSON only")
    args = p.parse_args(argv)
    for k in ("max_envs", "repeats"):
        v = getattr(args, k)
        if v is not None and v < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    for k in ("target_s", "numpy_budget_s"):
        v = getattr(args, k)
        if v is not None and not v > 0:
            p.error(f"--{k.replace('_', '-')} must be > 0, got {v}")
    try:
        args.env_kwargs_dict = json.loads(args.env_kwargs) if args.env_kwargs else {}
    except json.JSONDecodeError as e:
        p.error(f"--env-kwargs must be a JSON object: {e}")
    if not isinstance(args.env_kwargs_dict, dict):
        p.error(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    return args


def measure_overhead(quick: bool, seed: int, log: Log) -> dict[str, Any]:
    """What the conveniences of ``jaxq.train`` cost at their default frequencies: the
    same run (FrozenLake8x8, N = 65,536, 3,000 steps per env) with everything off (5
    chunks, constant lr and epsilon, no evaluation, no progress bar, no checkpoints) and
    with the defaults on (50 chunks, the lr and epsilon schedules, a 1,000-episode greedy
    evaluation every 10 chunks, the progress bar, a checkpoint every 10 chunks), both
    through ``jaxq.train`` and timed by ``benchlib.train_rate`` (chunk 2 to the last,
    compile apart), in interleaved rounds (``benchlib.measure_overhead``, which
    ``throughput.py`` also runs against its bare compiled chunk)."""
    import jaxq

    n = 1024 if quick else 65_536
    steps = n * (100 if quick else 3_000)
    user = jaxq.TrainConfig(env_id=DEFAULT_ENV, num_envs=n, total_steps=steps, seed=seed)
    bare = jaxq_bench.jaxq_config(DEFAULT_ENV, {}, DEFAULT_ALGO, n, steps // (5 * n),
                                  num_chunks=5, seed=seed)
    with tempfile.TemporaryDirectory(prefix="jaxq-bare-") as d:
        cache = os.path.join(d, "xla")
        out = benchlib.measure_overhead(
            user, lambda: benchlib.train_rate(bare, progress=False,
                                              compile_cache=cache)["steps_per_s"],
            2 if quick else 5, log, progress=not quick, checkpoint_every=10)
    log(f"overhead of schedules, evaluation, progress and checkpoints at N={n:,}: "
        f"{benchlib.human(out['bare_steps_per_s'])} -> {benchlib.human(out['user_steps_per_s'])}"
        f" steps/s ({100 * out['overhead']:+.1f}%)")
    return out


def run_benchmark(args: argparse.Namespace, log: Log = print) -> dict[str, Any]:
    bl = benchlib
    quick = args.quick
    max_envs = args.max_envs or (QUICK_MAX_ENVS if quick else DEFAULT_MAX_ENVS)
    sizes = benchlib.env_counts(max_envs, base=16 if quick else 4)
    target_s = args.target_s or (0.02 if quick else 0.5)
    repeats = args.repeats or (2 if quick else 3)
    numpy_budget = args.numpy_budget_s or (5.0 if quick else 90.0)
    env_kwargs = dict(args.env_kwargs_dict)
    baselines = args.algo == "q_learning"

    info = bl.system_info()
    load_start = benchlib.load_average()
    log(f"throughput: {args.algo} on {args.env} {env_kwargs or ''}, N in {sizes}; "
        f"device {info['device']['description']}")
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    if not args.skip_throughput:
        spec = benchlib.load_env(args.env, env_kwargs)

        def make_config(n: int, iters: int):
            return jaxq_bench.jaxq_config(args.env, env_kwargs, args.algo, n, iters,
                                          seed=args.seed)

        records += jaxq_bench.measure_jaxq(make_config, sizes, target_s, repeats, log)
        if baselines:
            records += numpy_vectorized.measure_numpy(spec, sizes, target_s, repeats, args.seed,
                                                      numpy_budget, log)
            records.append(classic_loop.measure_classic(spec, max(target_s, 0.02), repeats,
                                                        args.seed, log))
        else:
            log(f"  (no NumPy / classic baselines for algo {args.algo!r}: they are Q-learning)")
    overhead = None if args.skip_throughput else measure_overhead(quick, args.seed, log)
    elapsed = time.perf_counter() - t0
    log(f"done in {elapsed:.1f} s")
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/bench.py"] + (sys.argv[1:] if argv is None else list(argv))
    return benchlib.finite_json({
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "config": {
            "quick": quick,
            "env_id": args.env,
            "env_kwargs": env_kwargs,
            "algo": args.algo,
            "gamma": GAMMA, "lr": LR, "epsilon": EPSILON,
            "lr_schedule": "constant", "epsilon_schedule": "constant",
            "aggregation": "mean",
            "max_envs": max_envs,
            "num_envs": sizes,
            "target_s": target_s,
            "repeats": repeats,
            "numpy_budget_s": numpy_budget,
            "seed": args.seed,
            "command": shlex.join(cmd),
        },
        "elapsed_s": elapsed,
        # 1-minute load averages: other work on the machine shows up here
        "load_average": {"start": load_start, "end": benchlib.load_average()},
        "records": records,
        "overhead": overhead,
    })


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------
def _by_n(results, impl) -> dict[int, dict[str, Any]]:
    return {r["num_envs"]: r for r in results["records"]
            if r["impl"] == impl and "steps_per_s" in r}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """jaxq / NumPy at each N both reached, and the best of each over the classic loop."""
    jx, npy = _by_n(results, "jaxq"), _by_n(results, "numpy")
    classic = next((r for r in results["records"] if r["impl"] == "classic"
                    and "steps_per_s" in r), None)
    out: dict[str, Any] = {"jaxq_over_numpy": {n: jx[n]["steps_per_s"] / npy[n]["steps_per_s"]
                                               for n in sorted(set(jx) & set(npy))}}
    if jx:
        best = max(jx, key=lambda n: jx[n]["steps_per_s"])
        out.update(jaxq_best_n=best, jaxq_best=jx[best]["steps_per_s"])
    if npy:
        best = max(npy, key=lambda n: npy[n]["steps_per_s"])
        out.update(numpy_best_n=best, numpy_best=npy[best]["steps_per_s"])
    if classic is not None:
        out["classic"] = classic["steps_per_s"]
        if jx:
            out["jaxq_best_over_classic"] = out["jaxq_best"] / classic["steps_per_s"]
        if npy:
            out["numpy_best_over_classic"] = out["numpy_best"] / classic["steps_per_s"]
    return out


def _hlo_cell(rec: dict[str, Any] | None, key: str, fmt: str) -> str:
    v = ((rec or {}).get("hlo") or {}).get(key)
    return "–" if v is None else fmt.format(v)


def render_markdown(results: dict[str, Any]) -> str:
    """The ``bench`` section, from the results dict alone (deterministic)."""
    bl = benchlib
    info, cfg, recs = results["info"], results["config"], results["records"]
    lines = [
        bl.heading(f"jaxq bench: {cfg.get('algo', 'q_learning')} on {cfg.get('env_id', '?')} "
                   "against the baselines", info),
        "",
    ]
    if cfg.get("quick"):
        lines += ["> `--quick` run: tiny sizes and short timings, a smoke test, not a "
                  "measurement.", ""]
    env = cfg["env_id"] + (f" {json.dumps(cfg['env_kwargs'])}" if cfg["env_kwargs"] else "")
    if recs:
        lines += [
            f"### Throughput: {cfg['algo']} on {env}",
            "",
            f"Every learner runs the same algorithm: one-step {cfg['algo']}, gamma "
            f"{cfg['gamma']:g}, constant lr {cfg['lr']:g} and epsilon {cfg['epsilon']:g}, "
            "epsilon-greedy with random ties, N envs per batched step with the per-cell "
            "*mean* of their TD errors, auto-reset at the time limit. *jaxq*: `learner.chunk` "
            "compiled ahead of time (compile time apart), steps/s = N · chunk_iters / median "
            f"of {cfg['repeats']} calls of ~{cfg['target_s']:g} s. *NumPy*: the vectorized "
            "learner of `experiments/baselines/numpy_vectorized.py` (`NumpyQLearner`), one "
            "thread. *cpu/wall*: process CPU seconds per wall second (XLA:CPU may use several "
            "cores). *threefry/step*: threefry evaluations in the optimized HLO of jaxq's step "
            "(its xor ops / one evaluation's); *B/env step*: XLA's bytes accessed of the "
            "chunk / N (both as `jaxq bench` counts them).",
            "",
        ]
        jx, npy = _by_n(results, "jaxq"), _by_n(results, "numpy")
        header = ["N", "jaxq steps/s", "chunk_iters", "compile (s)", "cpu/wall",
                  "NumPy steps/s", "cpu/wall", "jaxq / NumPy", "threefry/step", "B/env step"]
        rows = []
        for n in cfg["num_envs"]:
            j, p = jx.get(n), npy.get(n)
            skipped = any(r["impl"] == "numpy" and r["num_envs"] == n and "skipped" in r
                          for r in recs)
            rows.append([
                f"{n:,}",
                bl.human(j["steps_per_s"]) if j else "–",
                f"{j['chunk_iters']:,}" if j else "–",
                f"{j['compile_s']:.2f}" if j else "–",
                f"{j['cpu_per_wall']:.2f}" if j else "–",
                bl.human(p["steps_per_s"]) if p else ("skipped" if skipped else "–"),
                f"{p['cpu_per_wall']:.2f}" if p else "–",
                f"{j['steps_per_s'] / p['steps_per_s']:.2f}x" if (j and p) else "–",
                _hlo_cell(j, "threefry_per_step", "{:.1f}"),
                _hlo_cell(j, "bytes_per_env_step", "{:,.0f}"),
            ])
        lines.append(bl.table(header, rows, ["r"] * len(header)))
        lines.append("")
        if not npy and cfg["algo"] != "q_learning":
            lines += [f"(No NumPy or classic-loop rows: those baselines implement Q-learning "
                      f"only, not {cfg['algo']}.)", ""]
        rt = ratios(results)
        classic = next((r for r in recs if r["impl"] == "classic" and "steps_per_s" in r), None)
        if classic is not None:
            lines.append(
                f"**Classic loop** (Gymnasium `{classic['gymnasium_id']}`, Python loop, NumPy "
                f"table): {bl.human(classic['steps_per_s'])} steps/s. "
                + (f"**jaxq at its best N ({rt['jaxq_best_n']:,}): "
                   f"{rt['jaxq_best_over_classic']:,.0f}x the classic loop**"
                   if "jaxq_best_over_classic" in rt else "")
                + (f"; vectorized NumPy at its best N ({rt['numpy_best_n']:,}): "
                   f"{rt['numpy_best_over_classic']:,.0f}x." if "numpy_best_over_classic" in rt
                   else "."))
            lines.append("")
        if rt.get("jaxq_over_numpy"):
            n_big = max(rt["jaxq_over_numpy"])
            lines.append(
                f"jaxq / vectorized NumPy: {rt['jaxq_over_numpy'][n_big]:.2f}x at N = "
                f"{n_big:,}; best against best: {rt['jaxq_best'] / rt['numpy_best']:.2f}x "
                f"({bl.human(rt['jaxq_best'])} at N = {rt['jaxq_best_n']:,} vs "
                f"{bl.human(rt['numpy_best'])} at N = {rt['numpy_best_n']:,}).")
            lines.append("")
        errors = [r for r in recs if "error" in r]
        for r in errors:
            lines.append(f"- {r['impl']} N={r['num_envs']:,}: `{r['error']}`")
        if errors:
            lines.append("")
    ov = results.get("overhead")
    if ov and "ratio" in ov:
        d = ov["defaults"]
        lines += [
            "### What the conveniences cost",
            "",
            f"`jaxq.train` at N = {ov['num_envs']:,} ({ov['env_steps']:,} env steps), timed "
            f"from the end of its first chunk to the end of its last (compile apart): "
            f"{bl.human(ov['bare_steps_per_s'])} steps/s with nothing but the learning (5 "
            f"chunks, constant lr and epsilon, no evaluation, no progress bar, no checkpoints), "
            f"{bl.human(ov['user_steps_per_s'])} at the default settings ({d['num_chunks']} "
            f"chunks, {d['lr_schedule']} lr and {d['epsilon_schedule']} epsilon schedules, a "
            f"{d['eval_episodes']:,}-episode greedy evaluation every {d['eval_every']} chunks, "
            f"a checkpoint every {d['checkpoint_every']} chunks"
            + (", the progress bar" if d["progress"] else "")
            + f"): **{100 * ov['overhead']:+.1f}%** (median over {len(ov['rounds'])} "
            f"interleaved rounds; per round "
            + ", ".join(f"{100 * (1 / r['ratio'] - 1):+.1f}%" for r in ov["rounds"]) + ").",
            "",
        ]
    la = results.get("load_average") or {}
    load = (f", 1-min load average {la['start']:g} at start / {la['end']:g} at end"
            if la.get("start") is not None and la.get("end") is not None else "")
    lines.append(bl.run_line(results, EXPERIMENT, on=info["device"]["description"],
                             elapsed_extra=load))
    return "\n".join(lines) + "\n"


def run(argv: list[str] | None = None, log: Log = print) -> dict[str, Any]:
    """``main`` returning the results dict."""
    args = parse_args(argv)
    args.argv = argv
    return benchlib.run_experiment(args, EXPERIMENT, run_benchmark, render_markdown, log=log,
                                   home=HERE)


def main(argv: list[str] | None = None) -> int:
    """``python experiments/bench.py [options]``; returns the exit code."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
