"""``jaxq bench``: how fast jaxq runs on this machine, from an installed package.

What it measures (default: Q-learning on FrozenLake 8x8, slippery, T = 200; gamma 0.99,
constant lr 0.1 and epsilon 0.1, no evaluation), for N = 1, 4, 16, ... up to
``--max-envs`` environments:

* **env steps/s**: ``learner.chunk`` (``jaxq.training.build_learner``) compiled ahead of
  time as ``jaxq.train`` compiles it (``jax.jit(chunk, donate_argnums=0).lower(carry, hp,
  env_params).compile()``), with ``chunk_iters`` set per N so that one call takes about
  ``--target-s``; steps/s = N * chunk_iters / median wall time of ``--repeats`` calls.
  Compile time is reported apart and never enters a timed call.
* **HLO figures of the compiled chunk** (``CompiledChunk.hlo_figures``), read from what XLA
  will run, so a change that makes the step recompute work shows up even where timing
  noise hides it:

  - *threefry evaluations per step*: the ``xor`` instructions in the optimized HLO text
    (``compiled.as_text()``) of the chunk's step (the computations reachable from the
    body of the chunk's top-level ``while`` loop, fusions included; the whole module when
    XLA removed the loop), divided by the ``xor`` instructions of one threefry2x32
    evaluation: the optimized HLO of jaxq's words ``jaxq.prng.bits(key, (N,))`` (the
    unrolled threefry). Every xor of a jaxq step on a tabular env comes from threefry
    (its 20 rounds and key schedule), so the ratio counts the threefry evaluations XLA
    emits per step, duplicates included: a fusion that recomputes the random words
    counts as another evaluation. It is a static count of the program text, not of
    executions, and may be fractional: XLA may duplicate part of an evaluation into a
    consumer, or share a key schedule between evaluations. (FrozenLake 8x8 Q-learning,
    XLA:CPU: 130 / 23 = 5.7 at N = 262,144, measured 2026-12-02 with the same unrolled
    words.) Environments that draw their own randomness with ``jax.random`` (gymnax's)
    keep JAX's lowering, a rolled loop on CPU, whose xors count once.
  - *bytes accessed per env step*: XLA's cost analysis (``compiled.cost_analysis()
    ["bytes accessed"]``) of the chunk program, whose loop body it counts once, divided by
    N: an estimate of the memory traffic of one env step, to compare with the device's
    bandwidth.

Everything is printed; ``--out FILE`` also writes it as JSON (machine, device, versions,
config, one record per N). ``--profile DIR`` instead traces a few chunks at one N
(``--num-envs``) with ``jax.profiler`` (open DIR in Perfetto or TensorBoard) and prints a
breakdown: compile, dispatch, device time, host overhead, bytes per step against the
measured memory bandwidth.

    jaxq bench                                   # N = 1 ... 262,144 (a minute or two on CPU)
    jaxq bench --quick                           # seconds: N = 1 and 16, short timings
    jaxq bench --env Taxi-v3 --algo sarsa --out bench.json
    jaxq bench --profile /tmp/prof --num-envs 65536

The comparison with NumPy and classic-loop baselines is not part of the package: it lives
in the repository's ``experiments/`` (``experiments/bench.py``, ``experiments/throughput.py``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

SCHEMA_VERSION = 2
DEFAULT_ENV = "FrozenLake8x8-v1"
DEFAULT_ALGO = "q_learning"
DEFAULT_MAX_ENVS = 262_144
QUICK_MAX_ENVS = 16
GAMMA, LR, EPSILON = 0.99, 0.1, 0.1

from jaxq.config import INT32_MAX  # noqa: E402,F401  (used here and by experiments)

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------
# the machine: what a reader needs to place a number
# ---------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> dict[str, int | None]:
    """Logical CPUs in the machine and those this process may run on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"logical": os.cpu_count(), "usable": usable}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_info() -> dict[str, Any]:
    """``jax.devices()`` described: backend, count, kinds, and a short file-name slug."""
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    backend = jax.default_backend()
    described = f"{len(devices)} x {', '.join(kinds)}" if len(devices) > 1 else kinds[0]
    if backend == "cpu":
        cores = cpu_cores()["usable"] or cpu_cores()["logical"]
        model = cpu_model()
        described = f"{described} ({model}, {cores} cores)"
        slug = _slug(f"cpu-{model}-{cores}c")
    else:
        slug = _slug(f"{backend}-{len(devices)}x-{kinds[0]}" if len(devices) > 1
                     else f"{backend}-{kinds[0]}")
    return {
        "backend": backend,
        "count": len(devices),
        "kinds": kinds,
        "devices": [str(d) for d in devices],
        "description": described,
        "slug": slug,
    }


def system_info(now: _dt.datetime | None = None) -> dict[str, Any]:
    """Everything a reader needs to place a number: date, machine, device, versions."""
    import jax

    now = now or _dt.datetime.now(_dt.timezone.utc)
    cores = cpu_cores()
    return {
        "date_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_cores": cores["logical"],
            "cpu_cores_usable": cores["usable"],
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
        },
        "device": device_info(),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": _version("jaxlib"),
            "gymnax": _version("gymnax"),
            "numpy": _version("numpy"),
            "jaxq": _version("jaxq"),
        },
        "env": {k: os.environ[k] for k in ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_ENABLE_X64")
                if k in os.environ},
    }



def human(x: float | None) -> str:
    """``12_300_000 -> "12.3M"``: three significant digits and a k/M/G/T suffix."""
    if x is None or not math.isfinite(x):
        return "–"
    r = float(f"{x:.3g}")  # round first, so 999_960 becomes "1.00M", not "1000k"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(r) >= div:
            v = r / div
            break
    else:
        v, suffix = r, ""
    decimals = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
    return f"{v:.{decimals}f}{suffix}"


def env_counts(max_envs: int, base: int = 4) -> list[int]:
    """1, 4, 16, ... up to ``max_envs`` (which is included even if not a power of 4)."""
    if max_envs < 1:
        raise ValueError(f"max_envs must be >= 1, got {max_envs}")
    ns, n = [], 1
    while n <= max_envs:
        ns.append(n)
        n *= base
    if ns[-1] != max_envs:
        ns.append(max_envs)
    return ns


def finite_json(obj: Any) -> Any:
    """``obj`` with NaN / inf floats as None (results files are strict JSON) and NumPy
    scalars as Python's."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # a NumPy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _pow2(x: float, lo: int = 1, hi: int = INT32_MAX) -> int:
    n = 2 ** round(math.log2(max(float(x), 1.0)))
    return int(min(max(n, lo), hi))


def _stats(times: list[float]) -> tuple[float, float]:
    """(median, best) of a list of seconds."""
    s = sorted(times)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2]), min(s)


# ---------------------------------------------------------------------------------------
# the optimized HLO: threefry evaluations and xor counts
# ---------------------------------------------------------------------------------------
_XOR = re.compile(r"\sxor\(")
_HEAD = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALLS = re.compile(r"\b(?:body|condition|calls|to_apply|true_computation|false_computation)"
                    r"=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_WHILE_BODY = re.compile(r"\swhile\(.*\bbody=%?([\w.\-]+)")


def hlo_computations(text: str) -> tuple[dict[str, list[str]], str | None]:
    """The computations of an HLO module's text, ``{name: instruction lines}``, and the
    name of its entry computation."""
    comps: dict[str, list[str]] = {}
    entry, name = None, None
    for line in text.splitlines():
        if name is None:
            m = _HEAD.match(line)
            if m and not line.startswith(" ") and not line.startswith("HloModule"):
                name = m.group(2)
                comps[name] = []
                if m.group(1):
                    entry = name
        elif line.startswith("}"):
            name = None
        else:
            comps[name].append(line)
    return comps, entry


def _reachable(comps: dict[str, list[str]], roots: list[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        c = todo.pop()
        if c in seen or c not in comps:
            continue
        seen.add(c)
        for line in comps[c]:
            todo += _CALLS.findall(line)
            for group in _BRANCHES.findall(line):
                todo += [b.strip().lstrip("%") for b in group.split(",") if b.strip()]
    return seen


def count_xors(text: str, step_only: bool = False) -> int:
    """``xor`` instructions in an optimized HLO module's text; with ``step_only``, only
    in the computations reachable from the bodies of the entry's ``while`` loops (a
    chunk's step; the whole module where XLA removed the loop)."""
    comps, entry = hlo_computations(text)
    names: set[str] | list[str] = list(comps)
    if step_only and entry is not None:
        bodies = [m.group(1) for line in comps[entry] for m in [_WHILE_BODY.search(line)] if m]
        if bodies:
            names = _reachable(comps, bodies)
    return sum(len(_XOR.findall(line)) for c in names for line in comps[c])


_XOR_PER_THREEFRY: dict[tuple[str, int], int] = {}


def xors_per_threefry(num_words: int) -> int:
    """``xor`` instructions in the optimized HLO of one threefry2x32 evaluation: jaxq's
    own words, ``jaxq.prng.bits(key, (num_words,))`` (the unrolled threefry every jaxq
    step draws its words with), compiled on this backend; cached per backend and size."""
    import jax

    from jaxq import prng

    k = (jax.default_backend(), int(num_words))
    if k not in _XOR_PER_THREEFRY:
        text = jax.jit(lambda key: prng.bits(key, (int(num_words),))).lower(
            jax.random.key(0)).compile().as_text()
        _XOR_PER_THREEFRY[k] = count_xors(text)
    return _XOR_PER_THREEFRY[k]


# ---------------------------------------------------------------------------------------
# jaxq's compiled chunk
# ---------------------------------------------------------------------------------------
def jaxq_config(env_id: str, env_kwargs: dict[str, Any], algo: str, num_envs: int,
                chunk_iters: int, num_chunks: int = 1, seed: int = 0, lr: float = LR,
                epsilon: float = EPSILON, gamma: float = GAMMA):
    """A TrainConfig with constant lr and epsilon and no evaluation whose chunks are
    exactly ``chunk_iters`` batched steps (``num_chunks`` of them): the bare learning
    loop, so that steps/s measures the step and nothing else."""
    import jaxq

    return jaxq.TrainConfig(
        env_id=env_id, env_kwargs=dict(env_kwargs), algo=algo, num_envs=num_envs,
        total_steps=num_envs * chunk_iters * num_chunks, num_chunks=num_chunks, gamma=gamma,
        lr=lr, lr_schedule="constant", epsilon=epsilon, epsilon_schedule="constant",
        eval_every=0, seed=seed)


class CompiledChunk:
    """``learner.chunk`` compiled ahead of time, with its carry: one call = one chunk.

    Compiled as ``jaxq.train`` compiles it (``donate_argnums=0``; ``compile_s`` is the
    build + lowering + compile time of init and chunk, or + loading them from
    ``compile_cache``)."""

    def __init__(self, config, compile_cache: str | None = None):
        import jax

        from jaxq import compile_cache as cache_lib, training

        t0 = time.perf_counter()
        self.learner = training.build_learner(config)
        self.config = config
        self.hp = config.hparams()
        self.ep = self.learner.params
        key = jax.random.key(config.seed)
        # ``compile_cache``: a folder of jaxq's compiled programs (``jaxq.compile_cache``,
        # as ``jaxq train`` keeps one): a second build with the same shapes loads them
        carry = cache_lib.compile(jax.jit(self.learner.init).lower(key, self.hp, self.ep),
                                  compile_cache)(key, self.hp, self.ep)
        self.compiled = cache_lib.compile(jax.jit(self.learner.chunk, donate_argnums=0).lower(
            carry, self.hp, self.ep), compile_cache)
        jax.block_until_ready(carry)
        self.carry = carry
        self.compile_s = time.perf_counter() - t0
        self.steps_per_chunk = config.num_envs * config.plan()["chunk_iters"]

    def __call__(self):
        """Run one chunk and wait for it; returns its metrics (device arrays)."""
        import jax

        self.carry, metrics = self.compiled(self.carry, self.hp, self.ep)
        jax.block_until_ready((self.carry, metrics))
        return metrics

    def q(self) -> np.ndarray:
        return np.asarray(self.learner.estimate(self.carry))

    def bytes_accessed(self) -> float | None:
        """XLA's 'bytes accessed' for the chunk program (its loop body counted once), or
        None where the backend has no cost analysis."""
        try:
            ca = self.compiled.cost_analysis()
        except Exception:  # noqa: BLE001 - not every backend offers it
            return None
        if isinstance(ca, (list, tuple)):
            ca = ca[0] if ca else None
        v = (ca or {}).get("bytes accessed")
        return float(v) if v is not None else None

    def hlo_figures(self) -> dict[str, Any]:
        """What XLA will run per step (see the module docstring for how each is counted):
        ``threefry_per_step`` = ``xor_ops_step / xor_per_threefry``, ``xor_ops`` in the
        whole chunk program, ``bytes_accessed`` of the chunk and ``bytes_per_env_step`` =
        that / N."""
        text = self.compiled.as_text()
        n = self.config.num_envs
        per_eval = xors_per_threefry(n)
        step = count_xors(text, step_only=True)
        ba = self.bytes_accessed()
        return {
            "threefry_lowering": "unrolled (jaxq.prng)",
            "xor_ops": count_xors(text),
            "xor_ops_step": step,
            "xor_per_threefry": per_eval,
            "threefry_per_step": step / per_eval if per_eval else None,
            "bytes_accessed": ba,
            "bytes_per_env_step": ba / n if ba is not None else None,
        }


def _metric_sum(metrics, name: str) -> int | None:
    return int(np.asarray(metrics[name])) if name in metrics else None


def measure_jaxq(make_config: Callable[[int, int], Any], sizes: list[int], target_s: float,
                 repeats: int, log: Log, hlo: bool = True,
                 chunk_iters: int | None = None) -> list[dict[str, Any]]:
    """jaxq env steps/s at each N in ``sizes``: ``make_config(N, chunk_iters)`` builds the
    TrainConfig (e.g. ``jaxq_config`` for an env and rule, or another strategy or n-step);
    ``chunk_iters`` is sized from the previous N's rate so a call takes about
    ``target_s`` (recompiled once if the first call misses it by more than 2x); the rate
    is N * chunk_iters / the median of ``repeats`` timed calls after a warm-up call.
    With ``hlo``, each record carries ``CompiledChunk.hlo_figures()``. A fixed
    ``chunk_iters`` skips the sizing (one compile per N). A size that fails (e.g. out of
    memory) is recorded with its error and ends the sweep."""
    records, rate = [], None
    for n in sizes:
        rec: dict[str, Any] = {"impl": "jaxq", "num_envs": n}
        try:
            guess = 1e6 if rate is None else 2 * rate  # rates grow with N, until they saturate
            hi = max(1, INT32_MAX // n)
            iters = chunk_iters or _pow2(guess * target_s / n, hi=hi)
            compiles = []
            while True:
                cc = CompiledChunk(make_config(n, iters))
                compiles.append(cc.compile_s)
                t0 = time.perf_counter()
                cc()  # warm-up (first run)
                dt = time.perf_counter() - t0
                new = _pow2(iters * target_s / max(dt, 1e-9), hi=hi)
                if (chunk_iters or len(compiles) >= 2 or target_s / 2 <= dt <= 2 * target_s
                        or new == iters):
                    break
                iters = new
            times, cpu, episodes, successes = [], [], 0, 0
            for _ in range(repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                m = cc()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                episodes += _metric_sum(m, "episodes") or 0
                successes += _metric_sum(m, "successes") or 0
            med, best = _stats(times)
            rate = n * iters / med
            rec.update(steps_per_s=rate, compile_s=compiles[-1], compiles=len(compiles),
                       chunk_iters=iters, repeats=repeats, median_s=med, best_s=best,
                       times_s=times, cpu_per_wall=sum(cpu) / sum(times),
                       episodes=episodes, successes=successes,
                       bytes_accessed=cc.bytes_accessed())
            extra = ""
            if hlo:
                rec["hlo"] = h = cc.hlo_figures()
                tf = h["threefry_per_step"]
                extra = (f", threefry/step {tf:.1f}" if tf is not None else "") + (
                    f", {h['bytes_per_env_step']:.0f} B/env step"
                    if h["bytes_per_env_step"] is not None else "")
            log(f"  jaxq     N={n:<7} chunk_iters={iters:<8} {human(rate):>7} steps/s "
                f"(compile {compiles[-1]:.2f} s, cpu/wall {rec['cpu_per_wall']:.2f}{extra})")
            del cc
        except Exception as e:  # noqa: BLE001 - a failed size must not sink the run
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  jaxq     N={n:<7} ERROR {rec['error']}")
            records.append(rec)
            break
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------
# profile
# ---------------------------------------------------------------------------------------
def memcpy_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Measured host memory bandwidth (bytes/s): ``np.copyto`` of a ``nbytes`` array,
    counting read + write, best of ``repeats`` (one thread)."""
    src = np.ones(nbytes // 8, np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def trace_busy(trace_dir: Path) -> dict[str, Any] | None:
    """Busy time of the device threads in a perfetto trace (union of their events'
    intervals; on CPU the XLA threads, on GPU the device streams) and the top-level
    program executions, or None if no trace file was found."""
    files = sorted(Path(trace_dir).glob("plugins/profile/*/perfetto_trace.json.gz"))
    if not files:
        return None
    data = json.loads(gzip.open(files[-1]).read())
    events = data["traceEvents"] if isinstance(data, dict) else data
    procs, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = str(e["args"].get("name", ""))
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = str(e["args"].get("name", ""))

    def is_device(e):
        p, t = procs.get(e["pid"], ""), threads.get((e["pid"], e["tid"]), "")
        return "/device:" in p or "XLA" in t or "Stream" in t

    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)))
                   for e in events if e.get("ph") == "X" and is_device(e))
    busy, cur = 0.0, None
    for a, b in spans:
        if cur is None or a > cur[1]:
            if cur is not None:
                busy += cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    if cur is not None:
        busy += cur[1] - cur[0]
    execs = [float(e.get("dur", 0)) for e in events if e.get("ph") == "X"
             and e.get("name") == "ThunkExecutor::Execute"
             and "PjRt" in threads.get((e["pid"], e["tid"]), "")]
    return {"file": str(files[-1]), "events": len(events), "device_busy_us": busy,
            "program_executions": len(execs), "program_execution_us": execs}


def run_profile(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    """Trace a few chunks at one N and print where the time goes."""
    import jax

    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = args.num_envs or 65536
    env_kwargs = _env_kwargs(args)
    iters = args.chunk_iters
    if iters is None:  # a ~0.2 s chunk, capped so the trace stays small (~15 events/iteration)
        probe = CompiledChunk(jaxq_config(args.env, env_kwargs, args.algo, n, 64, seed=args.seed))
        probe()
        t0 = time.perf_counter()
        probe()
        rate = n * 64 / (time.perf_counter() - t0)
        iters = _pow2(min(rate * 0.2 / n, 20_000), hi=max(1, INT32_MAX // n))
        del probe
    cc = CompiledChunk(jaxq_config(args.env, env_kwargs, args.algo, n, iters, seed=args.seed))
    steps = cc.steps_per_chunk
    cc()
    cc()  # warm
    # untraced: dispatch (until the call returns) and wall (until the results are ready)
    dispatch, wall, loop = [], [], []
    for _ in range(5):
        t0 = time.perf_counter()
        cc.carry, m = cc.compiled(cc.carry, cc.hp, cc.ep)
        t1 = time.perf_counter()
        jax.block_until_ready((cc.carry, m))
        t2 = time.perf_counter()
        dispatch.append(t1 - t0)
        wall.append(t2 - t0)
    for _ in range(5):  # as jaxq.train's loop: call, then fetch the metrics to the host
        t0 = time.perf_counter()
        cc.carry, m = cc.compiled(cc.carry, cc.hp, cc.ep)
        jax.device_get(m)
        loop.append(time.perf_counter() - t0)
    traced = []
    t_trace = time.perf_counter()
    with jax.profiler.trace(str(out_dir), create_perfetto_trace=True):
        for _ in range(args.profile_chunks):
            t0 = time.perf_counter()
            cc.carry, m = cc.compiled(cc.carry, cc.hp, cc.ep)
            jax.device_get(m)
            traced.append(time.perf_counter() - t0)
    t_trace = time.perf_counter() - t_trace
    busy = trace_busy(out_dir)
    bw = memcpy_bandwidth()
    hlo = cc.hlo_figures()
    ba = hlo["bytes_accessed"]
    wall_med, loop_med, traced_med = _stats(wall)[0], _stats(loop)[0], _stats(traced)[0]
    rate = steps / loop_med
    res: dict[str, Any] = {
        "env_id": args.env, "env_kwargs": env_kwargs, "algo": args.algo, "num_envs": n,
        "chunk_iters": iters, "steps_per_chunk": steps, "compile_s": cc.compile_s,
        "wall_per_chunk_s": wall_med, "dispatch_per_chunk_s": _stats(dispatch)[0],
        "loop_per_chunk_s": loop_med, "steps_per_s": rate,
        "traced_chunks": len(traced), "traced_wall_per_chunk_s": traced_med,
        "trace_total_s": t_trace, "trace": busy, "memcpy_bandwidth_Bps": bw,
        "bytes_accessed_per_chunk_program": ba, "hlo": hlo,
    }
    if busy is not None and traced:
        dev = busy["device_busy_us"] * 1e-6 / len(traced)
        host = max(traced_med - dev, 0.0)
        res.update(traced_device_per_chunk_s=dev, host_overhead_per_chunk_s=host,
                   device_per_chunk_est_s=max(loop_med - host, 0.0))
    if ba is not None:
        per_step = ba / n  # the chunk's loop body (one batched step) is counted once
        res.update(bytes_per_step_est=per_step, achieved_Bps_est=per_step * rate,
                   bandwidth_fraction_est=per_step * rate / bw)
    (out_dir / "profile_summary.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(render_profile(res))
    return res


def render_profile(r: dict[str, Any]) -> str:
    ms = lambda s: f"{s * 1e3:.2f} ms"  # noqa: E731
    lines = [
        f"profile: {r['algo']} on {r['env_id']} {r['env_kwargs'] or ''}, N = {r['num_envs']:,}, "
        f"chunk = {r['chunk_iters']:,} batched steps ({r['steps_per_chunk']:,} env steps)",
        f"  compile (init + chunk, AOT)        {r['compile_s']:.2f} s",
        f"  wall per chunk (call -> ready)     {ms(r['wall_per_chunk_s'])}  "
        f"(dispatch returns after {ms(r['dispatch_per_chunk_s'])})",
        f"  loop per chunk (call + fetch)      {ms(r['loop_per_chunk_s'])}  -> "
        f"{human(r['steps_per_s'])} steps/s",
    ]
    if "traced_device_per_chunk_s" in r:
        lines += [
            f"  traced: wall per chunk             {ms(r['traced_wall_per_chunk_s'])} "
            f"(tracing slows XLA:CPU's per-op execution)",
            f"  traced: device busy per chunk      {ms(r['traced_device_per_chunk_s'])}",
            f"  host overhead per chunk            {ms(r['host_overhead_per_chunk_s'])} "
            f"(traced wall - device busy: Python, dispatch, fetch)",
            f"  device time per chunk (untraced)   {ms(r['device_per_chunk_est_s'])} "
            f"(loop per chunk - host overhead)",
        ]
    h = r.get("hlo") or {}
    if h.get("threefry_per_step") is not None:
        lines.append(f"  threefry evaluations per step      {h['threefry_per_step']:.1f} "
                     f"({h['xor_ops_step']} xor ops in the step's optimized HLO / "
                     f"{h['xor_per_threefry']} per evaluation, {h['threefry_lowering']} lowering)")
    if "bytes_per_step_est" in r:
        lines += [
            f"  bytes per env step (estimate)      {r['bytes_per_step_est']:.0f} B "
            f"(XLA cost analysis 'bytes accessed' of the chunk / N: the loop body once)",
            f"  achieved traffic                   {r['achieved_Bps_est'] / 1e9:.1f} GB/s vs "
            f"memcpy {r['memcpy_bandwidth_Bps'] / 1e9:.1f} GB/s measured "
            f"({100 * r['bandwidth_fraction_est']:.0f}%; above 100% means the working set "
            f"lives in cache)",
        ]
    else:
        lines.append(f"  memcpy bandwidth (measured)        "
                     f"{r['memcpy_bandwidth_Bps'] / 1e9:.1f} GB/s")
    tr = r.get("trace")
    if tr:
        lines.append(f"  trace: {tr['file']} ({tr['events']:,} events; open in "
                     f"https://ui.perfetto.dev or TensorBoard's profile plugin)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------
def _env_kwargs(args) -> dict[str, Any]:
    return dict(args.env_kwargs_dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, each checked (with the env and rule, through ``TrainConfig`` and
    ``jaxq.make``) before anything is compiled or written."""
    p = argparse.ArgumentParser(
        prog="jaxq bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="seconds, not a measurement: N = 1 and 16, short timings")
    p.add_argument("--env", default=DEFAULT_ENV, help=f"env id (default {DEFAULT_ENV})")
    p.add_argument("--env-kwargs", default=None, metavar="JSON",
                   help='keyword arguments of the env, e.g. \'{"size": 256}\'')
    p.add_argument("--algo", default=DEFAULT_ALGO, help=f"update rule (default {DEFAULT_ALGO})")
    p.add_argument("--max-envs", type=int, default=None,
                   help=f"largest N (powers of 4 from 1; default {DEFAULT_MAX_ENVS:,}, "
                        f"--quick {QUICK_MAX_ENVS})")
    p.add_argument("--target-s", type=float, default=None,
                   help="seconds per timed call (default 0.5; --quick 0.02)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default 3; --quick 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-hlo", action="store_true",
                   help="skip the HLO figures (threefry evaluations, bytes per env step)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="also write the results (or the --profile summary) as JSON to FILE")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="trace a few chunks at --num-envs into DIR and print a breakdown")
    p.add_argument("--num-envs", type=int, default=None, help="N for --profile (default 65536)")
    p.add_argument("--chunk-iters", type=int, default=None,
                   help="batched steps per chunk (default: sized per N to ~--target-s; "
                        "--profile: ~0.2 s)")
    p.add_argument("--profile-chunks", type=int, default=3, help="chunks traced by --profile")
    args = p.parse_args(argv)
    for k in ("max_envs", "repeats", "num_envs", "chunk_iters", "profile_chunks"):
        v = getattr(args, k)
        if v is not None and v < 1:
            p.error(f"--{k.replace('_', '-')} must be an integer >= 1, got {v}")
    if args.target_s is not None and not args.target_s > 0:
        p.error(f"--target-s must be a number of seconds > 0, got {args.target_s}")
    try:
        kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    except json.JSONDecodeError as e:
        p.error(f"--env-kwargs must be a JSON object, e.g. '{{\"size\": 256}}': {e}")
    if not isinstance(kwargs, dict):
        p.error(f"--env-kwargs must be a JSON object, e.g. '{{\"size\": 256}}', "
                f"got {args.env_kwargs!r}")
    args.env_kwargs_dict = kwargs
    if args.out is not None and args.out.is_dir():
        p.error(f"--out must name a JSON file, got the directory {str(args.out)!r}")
    if args.profile is not None and Path(args.profile).exists() \
            and not Path(args.profile).is_dir():
        p.error(f"--profile must name a directory, got the file {args.profile!r}")
    try:
        import jaxq

        jaxq_config(args.env, kwargs, args.algo, 1, 1, seed=args.seed)
        jaxq.make(args.env, **kwargs)
    except (ValueError, TypeError) as e:
        p.error(f"--env / --env-kwargs / --algo / --seed: {e}")
    return args


def run_throughput(args: argparse.Namespace, log: Log = print) -> dict[str, Any]:
    """jaxq's env steps/s (and HLO figures) at N = 1, 4, ..., ``--max-envs``, as one
    JSON-able dict."""
    quick = args.quick
    max_envs = args.max_envs or (QUICK_MAX_ENVS if quick else DEFAULT_MAX_ENVS)
    sizes = env_counts(max_envs, base=16 if quick else 4)
    target_s = args.target_s or (0.02 if quick else 0.5)
    repeats = args.repeats or (2 if quick else 3)
    env_kwargs = _env_kwargs(args)
    info = system_info()
    log(f"jaxq bench: {args.algo} on {args.env} {env_kwargs or ''}, N in {sizes}; "
        f"device {info['device']['description']}")
    t0 = time.perf_counter()

    def make_config(n: int, iters: int):
        return jaxq_config(args.env, env_kwargs, args.algo, n, iters, seed=args.seed)

    records = measure_jaxq(make_config, sizes, target_s, repeats, log, hlo=not args.no_hlo,
                           chunk_iters=args.chunk_iters)
    elapsed = time.perf_counter() - t0
    argv = getattr(args, "argv", None)
    cmd = ["jaxq", "bench"] + (sys.argv[1:] if argv is None else list(argv))
    return finite_json({
        "tool": "jaxq bench",
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "config": {"quick": quick, "env_id": args.env, "env_kwargs": env_kwargs,
                   "algo": args.algo, "gamma": GAMMA, "lr": LR, "epsilon": EPSILON,
                   "lr_schedule": "constant", "epsilon_schedule": "constant",
                   "eval_every": 0, "num_envs": sizes, "target_s": target_s,
                   "chunk_iters": args.chunk_iters,
                   "repeats": repeats, "seed": args.seed, "command": shlex.join(cmd)},
        "elapsed_s": elapsed,
        "records": records,
    })


def render_text(results: dict[str, Any]) -> str:
    """The results as a plain-text table, as ``jaxq bench`` prints them."""
    header = ["N", "env steps/s", "chunk_iters", "compile (s)", "threefry/step", "B/env step"]
    rows = []
    for r in results["records"]:
        if "steps_per_s" not in r:
            rows.append([f"{r['num_envs']:,}", "error", r.get("error", ""), "", "", ""])
            continue
        h = r.get("hlo") or {}
        tf, bps = h.get("threefry_per_step"), h.get("bytes_per_env_step")
        rows.append([f"{r['num_envs']:,}", human(r["steps_per_s"]), f"{r['chunk_iters']:,}",
                     f"{r['compile_s']:.2f}", "–" if tf is None else f"{tf:.1f}",
                     "–" if bps is None else f"{bps:,.0f}"])
    widths = [max(len(str(x)) for x in col) + 2 for col in zip(header, *rows)]
    lines = ["".join(f"{c:>{w}}" for c, w in zip(row, widths)) for row in [header] + rows]
    ok = [r for r in results["records"] if "steps_per_s" in r]
    if ok:
        best = max(ok, key=lambda r: r["steps_per_s"])
        lines.append(f"best: {human(best['steps_per_s'])} env steps/s at N = "
                     f"{best['num_envs']:,} ({results['info']['device']['description']})")
    return "\n".join(lines)


def _write_json(path: Path, obj: dict[str, Any], log: Log) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite_json(obj), indent=2, allow_nan=False, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    log(f"wrote {path}")


def run(argv: list[str] | None = None, log: Log = print) -> dict[str, Any]:
    """``main`` returning the results dict (the profile summary with ``--profile``)."""
    args = parse_args(argv)
    args.argv = argv
    if args.profile:
        res = run_profile(args, log)
    else:
        res = run_throughput(args, log)
        log(render_text(res))
    if args.out is not None:
        _write_json(args.out, res, log)
    return res


def main(argv: list[str] | None = None) -> int:
    """``jaxq bench [options]``; returns the exit code."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
