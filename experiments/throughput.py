"""Throughput: env steps/s vs the number of environments N, per environment, per update
rule and per strategy, with every baseline in the same run.

What is measured (steps/s = N x batched steps per call / median wall time of ``--repeats``
calls of about ``--target-s`` each; compile time reported apart; N = 1, 4, 16, ... up to
``--max-envs``: 2^20 by default, 2^22 with ``--full``, where memory allows):

* **envs**: jaxq's one-step Q-learning (gamma 0.99, constant lr 0.1 and epsilon 0.1,
  epsilon-greedy with random ties, per-cell *mean* of each step's TD errors, auto-reset),
  one device, on FrozenLake 4x4 and 8x8 (slippery), Taxi-v3, CliffWalking-v1, a 256x256
  maze (1024x1024 with ``--full``) and gymnax's CartPole-v1 through jaxq's discretizing
  adapter (``bins`` per observation dimension). ``learner.chunk`` compiled ahead of time
  (``jaxq.bench.measure_jaxq``), as ``jaxq.train`` runs it, with the HLO figures of every
  compiled chunk: threefry evaluations per step (xor ops in the step's optimized HLO over
  one evaluation's) and bytes accessed per env step (XLA's cost analysis / N), counted as
  ``jaxq bench`` counts them (``jaxq/bench.py``'s docstring).
* **rules**: FrozenLake 8x8 with Q-learning, SARSA, Expected SARSA, Double Q-learning and
  4-step Q-learning.
* **strategies**: FrozenLake 8x8 Q-learning with ``replicated``, ``sharded`` and ``async``
  (``sync_every`` 1) on D devices, in a child process (``experiments/scaling.py``'s
  worker): on a CPU host D forced host devices sharing the same cores (``--devices``,
  default 2, as the issue's 2-core CPU: overhead, not scaling), on a GPU/TPU host every real
  device. ``single`` is the envs panel's FrozenLake 8x8 curve.
* **baselines**, same run, same algorithm and hyperparameters on FrozenLake 8x8: the
  classic loop (Gymnasium ``FrozenLake-v1`` stepped from Python, NumPy table; N = 1), the
  textbook threaded learner (``baselines/threaded_dict.py``: Python threads sharing a
  dict behind a lock; 1, 2 and 4 threads), the *plain* vectorized NumPy learner an RL
  student writes (``baselines/numpy_plain.py``) and the fastest vectorized NumPy learner
  we could write (``baselines/numpy_vectorized.py``), both one thread as NumPy is; and, for
  scale, gymnax's own CartPole-v1 stepped with random actions (``vmap(env.step)``, no
  learning: the speed of JAX RL's reference environment library).

Writes ``<out>/results/throughput/results.json`` (plus an archived ``<device>-<date>.json``),
``throughput.png`` (log-log, one panel per dimension, baselines on every panel) and
``headline.png`` (FrozenLake 8x8 against every baseline) beside it, and the
``throughput`` section of ``<out>/BENCHMARKS.md``; the issue's performance goals are
checked in ``results["goals"]``.

    python experiments/throughput.py                # CPU-sized (~8 minutes on 2 cores)
    python experiments/throughput.py --full         # accelerator-sized: N to 2^22, the 1024^2 maze
    python experiments/throughput.py --quick        # seconds; into a temp dir unless --out
    python experiments/throughput.py --markdown-only   # re-render from results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "baselines"))
import benchlib  # noqa: E402
import classic_loop  # noqa: E402
import numpy_vectorized  # noqa: E402

EXPERIMENT = "throughput"
SCHEMA_VERSION = 2
BASE_ENV = "FrozenLake8x8-v1"
CARTPOLE_BINS = (1, 1, 8, 8)  # cart position and velocity ignored; pole angle and velocity

# (panel, label, config overrides)
ENVS: list[tuple[str, dict[str, Any]]] = [
    ("FrozenLake 4x4", {"env_id": "FrozenLake-v1"}),
    ("FrozenLake 8x8", {"env_id": "FrozenLake8x8-v1"}),
    ("Taxi", {"env_id": "Taxi-v3"}),
    ("CliffWalking", {"env_id": "CliffWalking-v1"}),
    ("Maze 256x256", {"env_id": "Maze-v0", "env_kwargs": {"size": 256}}),
    ("CartPole (gymnax, discretized)", {"env_id": "CartPole-v1", "bins": CARTPOLE_BINS}),
]
FULL_ENVS = [("Maze 1024x1024", {"env_id": "Maze-v0", "env_kwargs": {"size": 1024}})]
RULES: list[tuple[str, dict[str, Any]]] = [
    ("Q-learning", {"algo": "q_learning"}),
    ("SARSA", {"algo": "sarsa"}),
    ("Expected SARSA", {"algo": "expected_sarsa"}),
    ("Double Q", {"algo": "double_q"}),
    ("4-step Q", {"algo": "q_learning", "n_step": 4}),
]
MODES: dict[str, dict[str, Any]] = {
    "quick": dict(max_envs=16, target_s=0.02, repeats=1, devices=2, strategy_envs=[4, 16],
                  steps_per_call=1 << 10, headline_envs=16, headline_rounds=2,
                  numpy_budget_s=2.0, threads=[1, 2], threaded_steps=5_000,
                  envs=["FrozenLake 8x8", "CartPole (gymnax, discretized)"],
                  rules=["Q-learning", "Double Q"]),
    # steps_per_call: env steps per compiled call of the strategies worker (chunk_iters =
    # steps_per_call / N, between 1 and 4,096; calls per timed run scale to target_s)
    "default": dict(max_envs=1 << 20, target_s=0.25, repeats=3, devices=2, strategy_envs=None,
                    steps_per_call=1 << 18, headline_envs=262144, headline_rounds=7,
                    numpy_budget_s=60.0, threads=[1, 2, 4], threaded_steps=200_000,
                    envs=None, rules=None),
    # full: an accelerator needs more envs than a CPU to fill it (2^22 = 4M)
    "full": dict(max_envs=1 << 22, target_s=0.5, repeats=5, devices=None, strategy_envs=None,
                 steps_per_call=1 << 22, headline_envs=1 << 22, headline_rounds=7,
                 numpy_budget_s=120.0, threads=[1, 2, 4], threaded_steps=300_000,
                 envs=None, rules=None),
}
HEADLINE_NS = (1, 16, 256, 4096, 65536, 262144, 1 << 20)
NUMPY_OPT, NUMPY_PLAIN = "NumPy, optimized (1 thread)", "NumPy, plain (1 thread)"


# ---------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------
def config_factory(overrides: dict[str, Any], seed: int) -> Callable[[int, int], Any]:
    """``(N, chunk_iters) -> TrainConfig``: ``jaxq.bench.jaxq_config`` (constant lr 0.1 and
    epsilon 0.1, no evaluation, one chunk of exactly ``chunk_iters`` steps) + overrides."""
    from jaxq import bench

    over = dict(overrides)
    env_id = over.pop("env_id", BASE_ENV)
    env_kwargs = over.pop("env_kwargs", {})
    algo = over.pop("algo", "q_learning")

    def make(n: int, iters: int):
        cfg = bench.jaxq_config(env_id, env_kwargs, algo, n, iters, seed=seed)
        return dataclasses.replace(cfg, **over) if over else cfg

    return make


def jaxq_series(panel: str, label: str, overrides: dict[str, Any], sizes: list[int],
                s: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from jaxq import bench

    log(f"[{panel}] {label}")
    recs = bench.measure_jaxq(config_factory(overrides, s["seed"]), sizes, s["target_s"],
                              s["repeats"], log)
    return {"panel": panel, "label": label, "impl": "jaxq", "config": _jsonable(overrides),
            "records": recs}


def strategy_series(sizes: list[int], s: dict[str, Any], log: Callable[[str], None]
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """replicated / sharded / async on D devices, in scaling.py's worker process."""
    import scaling

    probe = scaling.run_worker({"task": "probe"}, None, log)
    backend, available = probe["backend"], probe["device_count"]
    forced = backend == "cpu"
    d = s["devices"] if s["devices"] is not None else (2 if forced else available)
    if not forced:
        d = min(d, available)
    ns = [n for n in (s["strategy_envs"] or sizes) if n % d == 0]
    meta = {"backend": backend, "devices": d, "forced_host_devices": forced,
            "available_devices": available, "num_envs": ns, "probe_info": probe["info"]}
    log(f"[strategies] {d} {'forced host ' if forced else ''}device(s), N in {ns}")
    spec = {"task": "run", "devices": d, "num_envs": ns, "steps_per_call": s["steps_per_call"],
            "max_chunk_iters": 4096, "target_s": s["target_s"], "repeats": s["repeats"],
            "seed": s["seed"], "tts_devices": [], "staleness_devices": None}
    try:
        out = scaling.run_worker(spec, d if forced else None, log)
        recs = out["throughput"]
    except Exception as e:  # noqa: BLE001 - the other panels still count
        log(f"  strategies worker ERROR {e}")
        meta["error"] = f"{type(e).__name__}: {e}"
        recs = []
    series = []
    for strategy in ("replicated", "sharded", "async"):  # single: the envs panel's curve
        rs = [r for r in recs if r["strategy"] == strategy]
        if rs:
            series.append({"panel": "strategies", "label": f"{strategy} ({d} dev.)",
                           "impl": "jaxq", "config": {"strategy": strategy, "num_devices": d},
                           "records": rs})
    return series, meta


def baseline_series(sizes: list[int], s: dict[str, Any], log: Callable[[str], None]
                    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    import env_throughput
    import numpy_plain
    import scaling

    spec = benchlib.load_env(BASE_ENV)
    log("[baselines] vectorized NumPy (optimized), one thread")
    numpy_opt = numpy_vectorized.measure_numpy(spec, sizes, s["target_s"], s["repeats"],
                                               s["seed"], s["numpy_budget_s"], log)
    log("[baselines] vectorized NumPy (plain), one thread")
    numpy_plain_recs = numpy_plain.measure_plain_numpy(spec, sizes, s["target_s"], s["repeats"],
                                                       s["seed"], s["numpy_budget_s"], log)
    log("[baselines] gymnax CartPole-v1, random actions (environment only)")
    cart = env_throughput.measure_case(
        env_throughput.Case("CartPole-v1", "CartPole-v1", "gymnax"), sizes, s["target_s"],
        s["repeats"], s["seed"], 1 << 24, log)
    log("[baselines] classic loop")
    classic = classic_loop.measure_classic(spec, max(s["target_s"], 0.2), s["repeats"], s["seed"],
                                           log)
    log("[baselines] threaded dict")
    threaded = scaling.run_threaded(s["threads"], s["threaded_steps"], s["seed"], log)
    series = [
        {"panel": "baselines", "label": NUMPY_OPT, "impl": "numpy",
         "records": numpy_opt},
        {"panel": "baselines", "label": NUMPY_PLAIN, "impl": "numpy_plain",
         "records": numpy_plain_recs},
        {"panel": "baselines", "label": "gymnax CartPole env only", "impl": "gymnax_env",
         "records": cart},
    ]
    return series, classic, threaded


def paired_headline(s: dict[str, Any], sweep: dict[str, Any] | None,
                    log: Callable[[str], None]) -> dict[str, Any]:
    """jaxq and the three learner baselines on FrozenLake 8x8, timed in interleaved rounds
    (jaxq, optimized NumPy, plain NumPy, classic loop, then again): a ratio per round from
    runs seconds apart, so a machine whose speed drifts over minutes moves both sides of
    each ratio. The goals are judged on the median round. jaxq's chunk is the one the
    sweep (``sweep``: the envs panel's FrozenLake 8x8 series) sized for ~target_s at N."""
    import numpy_plain

    from jaxq import bench

    n = s["headline_envs"]
    n_plain = min(n, 65536)  # the plain learner is flat past ~4k envs
    spec = benchlib.load_env(BASE_ENV)
    target = s["target_s"]
    out: dict[str, Any] = {"num_envs": n, "plain_num_envs": n_plain, "rounds": []}
    try:
        iters = next((r["chunk_iters"] for r in (sweep or {}).get("records", [])
                      if r["num_envs"] == n and r.get("chunk_iters")), None)
        if iters is None:
            raise ValueError(f"the sweep has no FrozenLake 8x8 point at N = {n:,}")
        cc = bench.CompiledChunk(config_factory({}, s["seed"])(n, iters))
        out["hlo"] = cc.hlo_figures()
        cc()
        opt = numpy_vectorized.NumpyQLearner(spec, n, seed=s["seed"])
        plain = numpy_plain.PlainNumpyQLearner(spec, n_plain, seed=s["seed"])
        env, _ = classic_loop.make_classic_env(spec)
        classic = classic_loop.ClassicQLearning(env, seed=s["seed"])

        def timed(fn, *a):
            t = time.perf_counter()
            fn(*a)
            return time.perf_counter() - t

        # iteration counts for ~target seconds each, from one calibration run
        k_opt = max(1, int(target / max(timed(opt.run, 4) / 4, 1e-9)))
        k_plain = max(1, int(target / max(timed(plain.run, 4) / 4, 1e-9)))
        k_classic = max(1000, int(target / max(timed(classic.run, 20_000) / 20_000, 1e-9)))
        out.update(chunk_iters=iters, numpy_steps=k_opt, plain_steps=k_plain,
                   classic_steps=k_classic)
        for i in range(s["headline_rounds"]):
            r = {"jaxq": n * iters / timed(cc),
                 "numpy_optimized": n * k_opt / timed(opt.run, k_opt),
                 "numpy_plain": n_plain * k_plain / timed(plain.run, k_plain),
                 "classic": k_classic / timed(classic.run, k_classic)}
            out["rounds"].append(r)
            log(f"  round {i}: jaxq {benchlib.human(r['jaxq'])}, NumPy optimized "
                f"{benchlib.human(r['numpy_optimized'])}, plain {benchlib.human(r['numpy_plain'])}"
                f", classic {benchlib.human(r['classic'])} steps/s")
    except Exception as e:  # noqa: BLE001 - the sweep's figures still stand
        out["error"] = f"{type(e).__name__}: {e}"
        log(f"  paired headline ERROR {out['error']}")
    rounds = out["rounds"]
    if rounds:
        out["median"] = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        out["ratios"] = {k: statistics.median(r["jaxq"] / r[k] for r in rounds)
                         for k in ("numpy_optimized", "numpy_plain", "classic")}
    return out


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="seconds, not a measurement: N <= 16, two envs, two rules; "
                           "writes into a temp dir unless --out")
    mode.add_argument("--full", action="store_true",
                      help="accelerator-sized: longer timings, the 1024x1024 maze, every device")
    p.add_argument("--out", type=Path, default=None,
                   help="root for results/ and BENCHMARKS.md (default: experiments/)")
    p.add_argument("--max-envs", type=int, default=None, help="largest N (default 2^20)")
    p.add_argument("--target-s", type=float, default=None, help="seconds per timed call")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per point")
    p.add_argument("--devices", type=int, default=None,
                   help="devices for the strategies panel (CPU: forced host devices, "
                        "default 2; GPU/TPU: default all)")
    p.add_argument("--envs", nargs="+", default=None, help="labels of the envs panel to run")
    p.add_argument("--rules", nargs="+", default=None, help="labels of the rules panel to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--markdown-only", action="store_true",
                   help="only re-render BENCHMARKS.md and the plots from results.json")
    p.add_argument("--no-markdown", action="store_true", help="write the JSON and plots only")
    args = p.parse_args(argv)
    for k in ("max_envs", "repeats", "devices"):
        v = getattr(args, k)
        if v is not None and v < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    if args.target_s is not None and args.target_s <= 0:
        p.error(f"--target-s must be > 0, got {args.target_s}")
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    mode = "quick" if args.quick else "full" if args.full else "default"
    s = dict(MODES[mode], mode=mode, seed=args.seed)
    for k in ("max_envs", "target_s", "repeats", "devices", "envs", "rules"):
        if getattr(args, k) is not None:
            s[k] = getattr(args, k)
    envs = ENVS + (FULL_ENVS if mode == "full" else [])
    known = [label for label, _ in envs]
    s["envs"] = s["envs"] or known
    bad = [e for e in s["envs"] if e not in known]
    if bad:
        raise SystemExit(f"--envs: unknown {bad}; accepted: {known}")
    known_rules = [label for label, _ in RULES]
    s["rules"] = s["rules"] or known_rules
    bad = [r for r in s["rules"] if r not in known_rules]
    if bad:
        raise SystemExit(f"--rules: unknown {bad}; accepted: {known_rules}")
    s["headline_envs"] = min(s["headline_envs"], s["max_envs"])  # a swept N
    s["env_cases"] = [(label, over) for label, over in envs if label in s["envs"]]
    s["rule_cases"] = [(label, over) for label, over in RULES if label in s["rules"]]
    return s


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    s = settings(args)
    sizes = benchlib.env_counts(s["max_envs"])
    t0 = time.perf_counter()
    # the strategies worker first: this process has not started a backend yet, so on an
    # accelerator the child gets the whole device memory
    strategies, strategy_meta = strategy_series(sizes, s, log)
    info = benchlib.system_info()
    log(f"throughput ({s['mode']}): N in {sizes}; device {info['device']['description']}")
    series = []
    for label, over in s["env_cases"]:
        series.append(jaxq_series("envs", label, over, sizes, s, log))
    for label, over in s["rule_cases"]:
        if over == {"algo": "q_learning"}:  # = the envs panel's FrozenLake 8x8 curve
            base = next((x for x in series if x["label"] == "FrozenLake 8x8"), None)
            if base is not None:
                series.append(dict(base, panel="rules", label=label,
                                   config=_jsonable(over), same_as="envs/FrozenLake 8x8"))
                continue
        series.append(jaxq_series("rules", label, dict(over, env_id=BASE_ENV), sizes, s, log))
    series += strategies
    base_series, classic, threaded = baseline_series(sizes, s, log)
    series += base_series
    log(f"[headline] interleaved rounds at N = {s['headline_envs']:,}")
    headline = paired_headline(s, next((x for x in series if x["panel"] == "envs"
                                        and x["label"] == "FrozenLake 8x8"), None), log)
    elapsed = time.perf_counter() - t0
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/throughput.py"] + (sys.argv[1:] if argv is None else list(argv))
    results = {
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "device": info["device"]["description"],
        "jax": info["versions"].get("jax"),
        "jaxlib": info["versions"].get("jaxlib"),
        "config": {
            "mode": s["mode"], "base_env": BASE_ENV, "gamma": 0.99, "lr": 0.1, "epsilon": 0.1,
            "aggregation": "mean", "num_envs": sizes, "target_s": s["target_s"],
            "repeats": s["repeats"], "numpy_budget_s": s["numpy_budget_s"],
            "threads": s["threads"], "threaded_steps": s["threaded_steps"],
            "cartpole_bins": list(CARTPOLE_BINS), "strategies": strategy_meta,
            "headline_envs": s["headline_envs"], "headline_rounds": s["headline_rounds"],
            "seed": s["seed"], "command": shlex.join(cmd),
        },
        "series": series,
        "classic": classic,
        "threaded": threaded,
        "headline": headline,
        "elapsed_s": elapsed,
        "plots": {"throughput": "throughput.png", "headline": "headline.png"},
    }
    results["summary"] = summary(results)
    results["hlo"] = hlo_summary(results)
    results["goals"] = goals(results)
    log(f"done in {elapsed:.0f} s")
    return results


# ---------------------------------------------------------------------------------------
# summary and goals
# ---------------------------------------------------------------------------------------
def _points(series: dict[str, Any]) -> list[tuple[int, float]]:
    return sorted((r["num_envs"], r["steps_per_s"]) for r in series["records"]
                  if r.get("steps_per_s"))


def _best(series: dict[str, Any] | None) -> dict[str, Any] | None:
    pts = _points(series) if series else []
    if not pts:
        return None
    n, rate = max(pts, key=lambda p: p[1])
    return {"num_envs": n, "steps_per_s": rate}


def find(results: dict[str, Any], panel: str, label: str) -> dict[str, Any] | None:
    return next((x for x in results["series"] if x["panel"] == panel and x["label"] == label),
                None)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    jaxq = _best(find(results, "envs", "FrozenLake 8x8"))
    out: dict[str, Any] = {"jaxq_best": jaxq, "best": {}, "ratios": {}}
    for x in results["series"]:
        b = _best(x)
        if b:
            out["best"][f"{x['panel']}/{x['label']}"] = b
    refs = {
        "classic": results["classic"].get("steps_per_s"),
        "numpy_optimized": (_best(find(results, "baselines", NUMPY_OPT))
                            or {}).get("steps_per_s"),
        "numpy_plain": (_best(find(results, "baselines", NUMPY_PLAIN))
                        or {}).get("steps_per_s"),
        "threaded_dict": max((t["steps_per_s"] for t in results["threaded"]
                              if t.get("steps_per_s")), default=None),
    }
    for name, rate in refs.items():
        out["ratios"][name] = (jaxq["steps_per_s"] / rate) if (jaxq and rate) else None
    out["baseline_best"] = refs
    return out


def hlo_summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The HLO figures (``jaxq.bench.CompiledChunk.hlo_figures``) of each jaxq series of the
    envs and rules panels at its largest N, and of the interleaved rounds' chunk (FrozenLake
    8x8 at the headline N): threefry evaluations per step and bytes accessed per env step.
    (The strategies run in scaling.py's worker, which does not report them.)"""
    keys = ("threefry_per_step", "xor_ops_step", "xor_per_threefry", "bytes_per_env_step",
            "threefry_lowering")
    out = []
    for x in results["series"]:
        if x["impl"] != "jaxq" or x["panel"] not in ("envs", "rules") or x.get("same_as"):
            continue
        recs = [r for r in x["records"] if r.get("hlo")]
        if recs:
            r = max(recs, key=lambda r: r["num_envs"])
            out.append({"panel": x["panel"], "label": x["label"], "num_envs": r["num_envs"],
                        **{k: r["hlo"].get(k) for k in keys}})
    head = results.get("headline") or {}
    if head.get("hlo"):
        out.append({"panel": "headline", "label": "FrozenLake 8x8 (interleaved rounds)",
                    "num_envs": head["num_envs"], **{k: head["hlo"].get(k) for k in keys}})
    return out


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's performance goals, each with its value, target and whether it is met:
    rates and ratios from the interleaved headline rounds (their medians) where they ran,
    else from the sweep's best points. CPU goals apply on a CPU device, the 10^10 goal on
    a GPU (an H100)."""
    sm = results["summary"]
    backend = results["info"]["device"].get("backend", "cpu")
    head = results.get("headline") or {}
    paired = "ratios" in head
    rate = head["median"]["jaxq"] if paired else (sm["jaxq_best"] or {}).get("steps_per_s")
    r = head["ratios"] if paired else sm["ratios"]
    how = (f"median of {len(head['rounds'])} interleaved rounds at N = {head['num_envs']:,}"
           if paired else "best points of the sweep")

    def goal(name, value, target, applies=True):
        return {"name": name, "value": value, "target": target, "applies": applies,
                "met": None if value is None else bool(value >= target), "how": how}

    machine = results["info"]["machine"]
    cores = machine.get("cpu_cores_usable") or machine.get("cpu_cores")
    on_cpu = backend == "cpu" and cores == 2  # the CPU goals are for 2 cores
    return [
        goal("Q-learning FrozenLake 8x8 env steps/s (2-core CPU)", rate, 1e8, on_cpu),
        goal("jaxq / vectorized NumPy, optimized", r.get("numpy_optimized"), 20.0, on_cpu),
        goal("jaxq / vectorized NumPy, plain", r.get("numpy_plain"), 20.0, on_cpu),
        goal("jaxq / classic loop", r.get("classic"), 1000.0, on_cpu),
        goal("Q-learning FrozenLake 8x8 env steps/s (one H100)", rate, 1e10, backend == "gpu"),
    ]


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _plot_baselines(ax, results: dict[str, Any], with_cartpole: bool = False) -> None:
    styles = {NUMPY_OPT: ("k", "s--"), NUMPY_PLAIN: ("grey", "v--"),
              "gymnax CartPole env only": ("tab:purple", "x:")}
    for label, (color, fmt) in styles.items():
        x = find(results, "baselines", label)
        if x is None or (label.startswith("gymnax") and not with_cartpole):
            continue
        pts = _points(x)
        if pts:
            ax.plot(*zip(*pts), fmt, color=color, label=label, markersize=4, lw=1)
    classic = results["classic"].get("steps_per_s")
    if classic:
        ax.axhline(classic, color="tab:red", ls="--", lw=1, label="classic loop")
    thr = max((t["steps_per_s"] for t in results["threaded"] if t.get("steps_per_s")),
              default=None)
    if thr:
        ax.axhline(thr, color="tab:orange", ls=":", lw=1.2, label="threaded dict (best)")


def _machine(results: dict[str, Any]) -> str:
    info = results["info"]
    return (f"{benchlib.device_line(info)} ({benchlib.machine_line(info)}), "
            f"{info['date_utc'][:10]}")


def make_plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("envs", "environments (Q-learning, one device)"),
              ("rules", "update rules (FrozenLake 8x8)"),
              ("strategies", "strategies (FrozenLake 8x8)")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, (panel, title) in zip(axes, panels):
        curves = [s for s in results["series"] if s["panel"] == panel]
        if panel == "strategies" and find(results, "envs", "FrozenLake 8x8"):
            curves.insert(0, dict(find(results, "envs", "FrozenLake 8x8"), label="single (1 dev.)"))
        for i, x in enumerate(curves):
            pts = _points(x)
            if pts:
                ax.plot(*zip(*pts), "o-", color=cmap(i % 10), label=x["label"], markersize=4)
        _plot_baselines(ax, results, with_cartpole=(panel == "envs"))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("N (parallel environments)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("env steps / s")
    fig.suptitle(f"jaxq throughput vs N — {_machine(results)}", fontsize=11)
    fig.tight_layout()
    paths = [out_dir / results["plots"]["throughput"]]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.6))
    x = find(results, "envs", "FrozenLake 8x8")
    if x is not None and _points(x):
        ax.plot(*zip(*_points(x)), "o-", color="tab:blue", lw=2, label="jaxq")
    _plot_baselines(ax, results)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N (parallel environments)")
    ax.set_ylabel("env steps / s")
    ax.set_title(f"Q-learning, FrozenLake 8x8 (slippery)\n{_machine(results)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    paths.append(out_dir / results["plots"]["headline"])
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------
def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}x" if x >= 100 else f"{x:.1f}x"


def _goal_value(g: dict[str, Any]) -> str:
    v = g["value"]
    if v is None:
        return "–"
    return benchlib.human(v) if g["target"] >= 1e6 else _ratio(v)


def why_numpy_is_close(results: dict[str, Any]) -> str | None:
    """CPU time per env step of the best jaxq point and of the optimized NumPy learner:
    what a 20x gap would have to mean on this machine."""
    x = find(results, "envs", "FrozenLake 8x8")
    y = find(results, "baselines", NUMPY_OPT)
    jb, nb = _best(x), _best(y)
    if not (jb and nb):
        return None
    rj = next(r for r in x["records"] if r["num_envs"] == jb["num_envs"])
    rn = next(r for r in y["records"] if r["num_envs"] == nb["num_envs"])
    machine = results["info"]["machine"]
    cores = machine.get("cpu_cores_usable") or machine.get("cpu_cores")
    if not (rj.get("cpu_per_wall") and rn.get("cpu_per_wall") and cores):
        return None
    ns_j = 1e9 * rj["cpu_per_wall"] / jb["steps_per_s"]
    ns_n = 1e9 * rn["cpu_per_wall"] / nb["steps_per_s"]
    return (f"CPU time per env step at each one's best N: jaxq {ns_j:.1f} ns "
            f"({rj['cpu_per_wall']:.2f} cores busy), optimized NumPy {ns_n:.1f} ns (one core). "
            f"That NumPy learner tabulates, once per step, the greedy action's tie structure "
            f"and the TD target of every (state, action, outcome) of the small model, so an "
            f"env step is a few gathers and one `np.add.at` over cache-sized blocks; 20x its "
            f"rate on this machine would need {ns_n / 20 * cores:.1f} ns of CPU per step on "
            f"{cores} cores. The plain learner is what vectorizing with NumPy gives without "
            f"those tricks.")


def render_markdown(results: dict[str, Any]) -> str:
    cfg, sm = results["config"], results["summary"]
    info = results["info"]
    ns = [n for n in HEADLINE_NS if n in cfg["num_envs"]]
    lines = [benchlib.heading("Throughput: env steps/s vs N, per env, rule and strategy", info),
             ""]
    lines.append(
        f"Every learner runs one-step Q-learning unless its row says otherwise: gamma "
        f"{cfg['gamma']}, constant lr {cfg['lr']} and epsilon {cfg['epsilon']}, epsilon-greedy "
        f"with random ties, the per-cell *{cfg['aggregation']}* of each step's TD errors, "
        f"auto-reset. jaxq: `learner.chunk` compiled ahead of time; steps/s = N x steps per "
        f"call / median of {cfg['repeats']} calls of ~{cfg['target_s']} s (compile apart). "
        f"Best = the highest rate over N = 1 ... {cfg['num_envs'][-1]:,}. Plot: "
        f"`results/throughput/{results['plots']['throughput']}`.")
    lines.append("")
    header = ["panel", "series"] + [f"N={n:,}" for n in ns] + ["best (N)"]
    rows = []
    for x in results["series"]:
        by_n = {r["num_envs"]: r for r in x["records"]}
        cells = []
        for n in ns:
            r = by_n.get(n)
            cells.append(benchlib.human(r["steps_per_s"]) if r and r.get("steps_per_s")
                         else "err" if r and r.get("error") else "skip" if r else "–")
        b = _best(x)
        rows.append([x["panel"], x["label"]] + cells
                    + [f"{benchlib.human(b['steps_per_s'])} ({b['num_envs']:,})" if b else "–"])
    lines.append(benchlib.table(header, rows, ["l", "l"] + ["r"] * (len(ns) + 1)))
    lines.append("")
    hlo = results.get("hlo") or []
    if hlo:
        lines.append(
            "**What XLA runs per step** (the optimized HLO of each compiled chunk, at the "
            "series' largest N): *threefry/step* = xor ops in the step's HLO (the chunk's "
            "loop body, fusions included) / xor ops of one threefry2x32 evaluation compiled "
            "with the same lowering, so a fusion that recomputes the random words counts "
            "again; *B/env step* = XLA's cost-analysis bytes accessed of the chunk (loop body "
            "once) / N.")
        lines.append("")
        rows = [[h["panel"], h["label"], f"{h['num_envs']:,}",
                 "–" if h["threefry_per_step"] is None else f"{h['threefry_per_step']:.1f}",
                 f"{h['xor_ops_step']} / {h['xor_per_threefry']}",
                 "–" if h["bytes_per_env_step"] is None else f"{h['bytes_per_env_step']:,.0f}",
                 str(h["threefry_lowering"])] for h in hlo]
        lines.append(benchlib.table(["panel", "series", "N", "threefry/step", "xor ops",
                                     "B/env step", "threefry lowering"], rows,
                                    ["l", "l", "r", "r", "r", "r", "l"]))
        lines.append("")
    st = cfg["strategies"]
    if st.get("forced_host_devices"):
        lines.append(f"Strategies ran on {st['devices']} *forced* CPU devices sharing the same "
                     f"cores as the one-device rows: what their collectives cost, not scaling "
                     f"(see the scaling section).")
    elif st.get("devices"):
        lines.append(f"Strategies ran on {st['devices']} {st.get('backend')} device(s).")
    if st.get("error"):
        lines.append(f"Strategies worker failed: {st['error']}")
    errors = [(x["label"], r["num_envs"], r["error"]) for x in results["series"]
              for r in x["records"] if r.get("error")]
    if errors:
        lines.append("")
        lines.append("Points that failed (the series stops there): " + "; ".join(
            f"{label} at N = {n:,}: {e.splitlines()[0][:120]}" for label, n, e in errors))
    lines.append("")
    classic = results["classic"]
    thr = [t for t in results["threaded"] if t.get("steps_per_s")]
    lines.append(
        f"**Baselines, same run** (FrozenLake 8x8): classic loop (Gymnasium "
        f"`{classic.get('gymnasium_id', '?')}`, Python loop, NumPy table) "
        f"{benchlib.human(classic.get('steps_per_s'))} steps/s; threaded dict "
        + ", ".join(f"{t['num_threads']} thread(s) {benchlib.human(t['steps_per_s'])}"
                    for t in thr) + " steps/s.")
    lines.append("")
    jb = sm["jaxq_best"]
    if jb:
        r = sm["ratios"]
        lines.append(
            f"**jaxq, Q-learning on FrozenLake 8x8, one device: {benchlib.human(jb['steps_per_s'])}"
            f" steps/s at N = {jb['num_envs']:,}** — {_ratio(r['classic'])} the classic loop, "
            f"{_ratio(r['threaded_dict'])} the threaded dict, {_ratio(r['numpy_plain'])} plain "
            f"vectorized NumPy, {_ratio(r['numpy_optimized'])} the optimized vectorized NumPy "
            f"(best against best).")
        lines.append("")
    head = results.get("headline") or {}
    if head.get("rounds"):
        m, hr = head["median"], head["ratios"]
        lines.append(
            f"**Interleaved rounds** (the goals' figures): {len(head['rounds'])} rounds, each "
            f"timing jaxq (N = {head['num_envs']:,}), the optimized NumPy learner (same N), the "
            f"plain one (N = {head['plain_num_envs']:,}) and the classic loop back to back "
            f"(~{cfg['target_s']} s each), so every ratio compares runs seconds apart; medians: "
            f"jaxq {benchlib.human(m['jaxq'])}, optimized NumPy "
            f"{benchlib.human(m['numpy_optimized'])}, plain NumPy {benchlib.human(m['numpy_plain'])}"
            f", classic {benchlib.human(m['classic'])} steps/s; ratios (median over rounds) "
            f"{_ratio(hr['classic'])} the classic loop, {_ratio(hr['numpy_plain'])} plain NumPy, "
            f"{_ratio(hr['numpy_optimized'])} optimized NumPy. jaxq per round: "
            + ", ".join(benchlib.human(r["jaxq"]) for r in head["rounds"]) + ".")
        lines.append("")
    elif head.get("error"):
        lines.append(f"Interleaved rounds failed: {head['error']}")
        lines.append("")
    lines.append("Goals (from the issue; checked where they apply; "
                 + (results["goals"][0].get("how", "") if results["goals"] else "") + "):")
    lines.append("")
    rows = []
    for g in results["goals"]:
        met = "n/a here" if not g["applies"] else "–" if g["met"] is None else (
            "**met**" if g["met"] else "not met")
        target = benchlib.human(g["target"]) if g["target"] >= 1e6 else f">= {g['target']:g}x"
        rows.append([g["name"], _goal_value(g), target, met])
    lines.append(benchlib.table(["goal", "value", "target", "status"], rows,
                                ["l", "r", "r", "l"]))
    lines.append("")
    explain = why_numpy_is_close(results)
    opt_goal = next((g for g in results["goals"] if g["name"].endswith("NumPy, optimized")), {})
    if explain and opt_goal.get("met") is False:  # judged as the goals are
        lines.append(explain)
        lines.append("")
    lines.append(
        f"Run {info['date_utc']} on {benchlib.device_line(info)} ({benchlib.machine_line(info)})"
        f"; {benchlib.versions_line(info)}; `{cfg['command']}` ({results['elapsed_s']:.0f} s). Raw: `results/throughput/results.json`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = parse_args(argv)
    args.argv = argv
    return benchlib.run_experiment(args, EXPERIMENT, run_benchmark, render_markdown,
                                   make_plots, log,
                                   home=Path(__file__).resolve().parent)


if __name__ == "__main__":
    main()
