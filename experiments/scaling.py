"""Scaling across devices: steps/s, time to solution and staleness, per strategy.

Q-learning on FrozenLake 8x8 (slippery, ``FrozenLake8x8-v1``, gamma 0.99), for every
device count D in ``--devices`` (default 1, 2, 4, 8) and every strategy of
``jaxq/strategies.py`` (``single`` at D = 1 only; ``replicated``, ``sharded`` and ``async``
on a D-device mesh, D = 1 included), all in the same run:

* **Throughput**: ``learner.chunk`` compiled ahead of time (``jax.jit(chunk,
  donate_argnums=0)``, compile time reported apart), constant lr 0.1 and epsilon 0.1,
  ``sync_every`` = 1, no evaluation; each call runs ``chunk_iters = 2**20 / N`` batched
  steps (at least 1) and ``benchlib.time_scaled`` picks the number of calls per timed run
  (~``--target-s``); steps/s = N * chunk_iters * calls / median wall time of
  ``--repeats`` runs. N in ``--num-envs`` (default 4,096, 65,536 and 262,144). Each cell
  also records the CPU that other processes used meanwhile (``foreign_cores``, from
  /proc/stat), and the section reports the spread between the 1-device strategies that do
  the same work (``single``, ``replicated``, ``async``): the machine's own noise.
* **Threaded-dict baseline** (``baselines/threaded_dict.py``): the textbook parallel
  Q-learner, Python threads sharing a dict behind a lock, at 1, 2 and 4 threads, same
  environment and hyperparameters; the section reports jaxq's best throughput over it.
* **Time to solution** at the D in ``--tts-devices`` (default: every D), each strategy
  compiled once and raced from 3 seeds (median reported): wall seconds of training until
  the greedy policy is within 2% of optimal, ``V* - V^pi <= 0.02 V*`` at the start state,
  checked after every chunk (N = 4,096, 64 steps per chunk, constant lr 0.1 and epsilon
  0.3). ``V^pi`` is exact up to a 1e-6 relative tolerance: ``jaxq.policy_evaluation`` on
  the tabular model
  for the greedy policy (ties split uniformly, as the learner acts), then
  ``sum_s mu(s) sum_a pi(a|s) Q^pi(s, a)`` (``jaxq.start_value`` would take the max over
  Q^pi, i.e. the value of the improved policy); ``V* = jaxq.start_value(model, Q*)``.
  Checking time is excluded, compile time reported apart. With ``sync_every`` = 1 every
  strategy computes the same table as one device (up to float summation order), so the
  env steps to solution agree and the seconds show what the collectives cost.
* **Convergence vs staleness** at D = 2: ``jaxq.train`` with ``q_star`` from
  ``jaxq.value_iteration`` and periodic greedy evaluation, for ``async`` and
  ``replicated`` at ``sync_every`` in 1, 4, 16, 64 (N = 4,096, lr 0.2 -> 0.005 and
  epsilon 1.0 -> 0.1 decaying linearly): max|Q - Q*| and greedy success rate against env
  steps. ``replicated`` with k > 1 buffers k steps of TD errors and applies their
  combined mean every k steps (k times fewer, k times larger batches); ``async`` applies
  every step but its actors act on a snapshot refreshed every k steps.

Devices are chosen automatically, so the same command runs unchanged anywhere: each D runs
in its own process (this script in ``--worker`` mode, printing JSON). Where JAX's platform
is CPU, the worker gets D forced host devices (``XLA_FLAGS=
--xla_force_host_platform_device_count=D``, which must be set before JAX starts); on a
GPU or TPU host the workers use the first D real devices and counts above the host's are
skipped. The parent process never starts a JAX backend (a probe worker describes the
machine), so it holds no accelerator memory while the workers run.

On a CPU host, D forced devices share the same cores: one XLA:CPU device already uses
all of them, so more devices cannot add compute there; those numbers measure the
correctness and overhead of the collectives. Real scaling needs real devices.

Writes ``<out>/results/scaling/results.json`` (plus an archived copy), the plots
``steps_per_s.png`` and ``staleness.png`` beside it, and the ``scaling`` section of
``<out>/BENCHMARKS.md``.

    python experiments/scaling.py                 # the default run (~4 minutes on 2 CPU cores)
    python experiments/scaling.py --quick         # seconds; into a temp dir unless --out
    python experiments/scaling.py --devices 1 2 --num-envs 65536
    python experiments/scaling.py --markdown-only # re-render markdown + plots from results.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "baselines"))
import benchlib  # noqa: E402

EXPERIMENT = "scaling"
SCHEMA_VERSION = 1
ENV_ID = "FrozenLake8x8-v1"
GAMMA, LR, EPSILON = 0.99, 0.1, 0.1
MESH_STRATEGIES = ("replicated", "sharded", "async")
STRATEGIES = ("single",) + MESH_STRATEGIES
SOLVED_GAP = 0.02
TTS_EPSILON = 0.3
RESULT_TAG = "@@SCALING-RESULT@@ "
LOG_TAG = "@@SCALING-LOG@@ "
FORCE_FLAG = "--xla_force_host_platform_device_count"

DEFAULTS = dict(devices=[1, 2, 4, 8], num_envs=[4096, 65536, 262144], steps_per_call=1 << 20,
                target_s=0.4, repeats=5, threads=[1, 2, 4], threaded_steps=300_000,
                tts_devices=None, tts_seeds=3, tts_num_envs=4096, tts_chunk_iters=64,
                tts_cap_s=30.0,
                staleness_devices=2, sync_every=[1, 4, 16, 64], staleness_num_envs=4096,
                staleness_steps=4096 * 500 * 20, staleness_chunks=20, eval_every=2,
                eval_episodes=1000)
QUICK = dict(devices=[1, 2], num_envs=[256], steps_per_call=1 << 12, target_s=0.02,
             repeats=2, threads=[1, 2], threaded_steps=10_000, tts_devices=[2],
             tts_seeds=1, tts_num_envs=256, tts_chunk_iters=16, tts_cap_s=1.0, staleness_devices=2,
             sync_every=[1, 4], staleness_num_envs=256, staleness_steps=256 * 32 * 4,
             staleness_chunks=4, eval_every=2, eval_episodes=64)


# =======================================================================================
# worker side: runs in a process whose devices are set up by the parent
# =======================================================================================
def _log(msg: str) -> None:
    print(LOG_TAG + msg, flush=True)


def _busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all processes, steal included), from
    /proc/stat; None where there is no /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return None


class Meter:
    """Wall time, this process's CPU time, and the CPU other processes used meanwhile
    (``foreign_cores``: busy machine time minus ours, per wall second), to flag runs that
    shared the machine with something else."""

    def __enter__(self) -> "Meter":
        self.t0, self.cpu0, self.busy0 = time.perf_counter(), time.process_time(), _busy_s()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_s = time.process_time() - self.cpu0
        busy1 = _busy_s()
        self.foreign_cores = None
        if self.busy0 is not None and busy1 is not None and self.wall_s > 0:
            self.foreign_cores = max(0.0, (busy1 - self.busy0 - self.cpu_s) / self.wall_s)


def _config(num_envs: int, chunk_iters: int, num_chunks: int, strategy: str, devices: int,
            **kw: Any):
    """A TrainConfig whose chunks are exactly ``chunk_iters`` batched steps."""
    import jaxq

    base = dict(env_id=ENV_ID, num_envs=num_envs, gamma=GAMMA, lr=LR, lr_schedule="constant",
                epsilon=EPSILON, epsilon_schedule="constant", eval_every=0,
                total_steps=num_envs * chunk_iters * num_chunks, num_chunks=num_chunks,
                strategy=strategy, num_devices=None if strategy == "single" else devices)
    base.update(kw)
    return jaxq.TrainConfig(**base)


class _Compiled:
    """A learner's init and chunk compiled ahead of time, with its carry."""

    def __init__(self, cfg, q_star=None):
        import jax

        from jaxq.training import build_learner

        t0 = time.perf_counter()
        self.learner = build_learner(cfg, q_star)
        self.hp, self.ep = cfg.hparams(), self.learner.params
        key = jax.random.key(cfg.seed)
        self.init = jax.jit(self.learner.init).lower(key, self.hp, self.ep).compile()
        carry = self.init(key, self.hp, self.ep)
        self.chunk = jax.jit(self.learner.chunk, donate_argnums=0).lower(
            carry, self.hp, self.ep).compile()
        self.carry = jax.block_until_ready(carry)
        self.compile_s = time.perf_counter() - t0
        self.steps_per_chunk = cfg.num_envs * cfg.plan()["chunk_iters"]

    def reset(self, seed: int) -> None:
        """A fresh carry (table, environments, key) from ``seed``; nothing recompiles."""
        import jax

        self.carry = jax.block_until_ready(self.init(jax.random.key(seed), self.hp, self.ep))

    def __call__(self, calls: int = 1):
        import jax

        metrics = None
        for _ in range(calls):
            self.carry, metrics = self.chunk(self.carry, self.hp, self.ep)
            # one call in flight at a time: with many queued calls of a collective program,
            # XLA:CPU's forced devices can deadlock in the all-reduce rendezvous
            jax.block_until_ready((self.carry, metrics))
        return metrics

    def q(self) -> np.ndarray:
        return np.asarray(self.learner.estimate(self.carry))


def worker_throughput(devices: int, spec: dict[str, Any]) -> list[dict[str, Any]]:
    records = []
    strategies = (["single"] if devices == 1 else []) + list(MESH_STRATEGIES)
    for strategy in strategies:
        for n in spec["num_envs"]:
            rec: dict[str, Any] = {"strategy": strategy, "devices": devices, "num_envs": n}
            if n % devices:
                rec["error"] = f"num_envs={n} is not divisible by {devices} devices"
                records.append(rec)
                continue
            try:
                iters = max(1, min(spec["steps_per_call"] // n,
                                   spec.get("max_chunk_iters", 1 << 30)))
                cc = _Compiled(_config(n, iters, 1000, strategy, devices, seed=spec["seed"]))
                cpu = []

                def run(calls, cc=cc, cpu=cpu):
                    c0 = time.process_time()
                    out = cc(calls)
                    cpu.append(time.process_time() - c0)
                    return out

                with Meter() as meter:
                    timing = benchlib.time_scaled(run, spec["target_s"],
                                                  repeats=spec["repeats"], guess=1,
                                                  max_iters=1 << 20)
                calls = timing.iters
                rate = n * iters * calls / timing.median_s
                timed_cpu = cpu[-timing.repeats:]
                rec.update(steps_per_s=rate, compile_s=cc.compile_s, chunk_iters=iters,
                           calls=calls, repeats=timing.repeats, median_s=timing.median_s,
                           times_s=list(timing.times_s),
                           cpu_per_wall=sum(timed_cpu) / sum(timing.times_s),
                           foreign_cores=meter.foreign_cores)
                _log(f"  D={devices} {strategy:<10} N={n:<7} {benchlib.human(rate):>7} steps/s "
                     f"(chunk_iters {iters}, {calls} calls/run, compile {cc.compile_s:.2f} s)")
                del cc
            except Exception as e:  # noqa: BLE001 - a failed cell must not sink the run
                rec["error"] = f"{type(e).__name__}: {e}"
                _log(f"  D={devices} {strategy:<10} N={n:<7} ERROR {rec['error']}")
            records.append(rec)
    return records


class _Checker:
    """``V^pi(start)`` of the greedy policy of a table, exact on the tabular model."""

    def __init__(self, gamma: float = GAMMA):
        import jaxq

        env, params = jaxq.make(ENV_ID)
        self.model = jaxq.tabular_model(env, params)
        self.gamma = gamma
        self.q_star = np.asarray(jaxq.value_iteration(self.model, gamma, tol=1e-7))
        self.v_star = float(jaxq.start_value(self.model, self.q_star))

    def value(self, q: np.ndarray) -> float:
        import jaxq

        from jaxq.model import greedy_policy

        pi = greedy_policy(np.asarray(q, np.float32))
        return float(jaxq.policy_start_value(self.model, pi, self.gamma, tol=1e-6))

    def gap(self, v: float) -> float:
        return (self.v_star - v) / abs(self.v_star)


def worker_tts(devices: int, spec: dict[str, Any], checker: _Checker) -> list[dict[str, Any]]:
    """Per strategy: one compile, then one race to the 2% criterion per seed."""
    records = []
    strategies = (["single"] if devices == 1 else []) + list(MESH_STRATEGIES)
    n, iters = spec["tts_num_envs"], spec["tts_chunk_iters"]
    for strategy in strategies:
        rec: dict[str, Any] = {"strategy": strategy, "devices": devices, "num_envs": n,
                               "chunk_iters": iters, "lr": LR, "epsilon": TTS_EPSILON,
                               "sync_every": 1, "cap_s": spec["tts_cap_s"]}
        try:
            cfg = _config(n, iters, 1_000_000 // iters, strategy, devices,
                          epsilon=TTS_EPSILON, seed=spec["seed"])
            cc = _Compiled(cfg)
            runs = []
            for seed in range(spec["seed"], spec["seed"] + spec["tts_seeds"]):
                cc.reset(seed)
                train_s = check_s = 0.0
                chunks, solved, v = 0, False, float("nan")
                with Meter() as meter:
                    while train_s < spec["tts_cap_s"]:
                        t0 = time.perf_counter()
                        cc()
                        train_s += time.perf_counter() - t0
                        chunks += 1
                        t1 = time.perf_counter()
                        v = checker.value(cc.q())
                        check_s += time.perf_counter() - t1
                        if checker.gap(v) <= SOLVED_GAP:
                            solved = True
                            break
                runs.append({"seed": seed, "solved": solved, "train_s": train_s,
                             "chunks": chunks, "env_steps": chunks * cc.steps_per_chunk,
                             "check_s": check_s, "value": v, "gap": checker.gap(v),
                             "foreign_cores": meter.foreign_cores})
            train = [r["train_s"] for r in runs]
            rec.update(solved=all(r["solved"] for r in runs),
                       solved_runs=sum(r["solved"] for r in runs), seeds=len(runs),
                       compile_s=cc.compile_s, train_s=float(np.median(train)),
                       train_s_min=min(train), train_s_max=max(train),
                       env_steps=int(np.median([r["env_steps"] for r in runs])),
                       v_star=checker.v_star, runs=runs)
            rec["total_s"] = rec["train_s"] + cc.compile_s
            _log(f"  D={devices} {strategy:<10} time to solution: solved {rec['solved_runs']}/"
                 f"{len(runs)} seeds, median train {rec['train_s']:.3f} s (range "
                 f"{min(train):.3f}-{max(train):.3f}; + compile {cc.compile_s:.2f} s), median "
                 f"{rec['env_steps']:,} steps; V* {checker.v_star:.4f}")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            _log(f"  D={devices} {strategy:<10} TTS ERROR {rec['error']}")
        records.append(rec)
    return records


def _floats(x) -> list[float | None]:
    """NaN-free JSON: NaN (chunks without an evaluation) becomes None."""
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(x, np.float64)]


def worker_staleness(devices: int, spec: dict[str, Any], checker: _Checker) -> list[dict[str, Any]]:
    import jaxq

    records = []
    n, chunks = spec["staleness_num_envs"], spec["staleness_chunks"]
    iters = max(1, -(-spec["staleness_steps"] // (n * chunks)))
    for strategy in ("async", "replicated"):
        for k in spec["sync_every"]:
            rec: dict[str, Any] = {"strategy": strategy, "devices": devices, "sync_every": k,
                                   "num_envs": n}
            try:
                cfg = _config(n, iters, chunks, strategy, devices, sync_every=k, lr=0.2,
                              lr_schedule="linear", lr_end=0.005, epsilon=1.0,
                              epsilon_schedule="linear", epsilon_end=0.1,
                              epsilon_decay_fraction=0.5, eval_every=spec["eval_every"],
                              eval_episodes=spec["eval_episodes"], seed=spec["seed"])
                t0 = time.perf_counter()
                res = jaxq.train(cfg, checker.q_star, progress=False)
                wall = time.perf_counter() - t0
                m = res.metrics
                evals = ~np.isnan(m["eval_success"])
                final_q = res.q
                rec.update(
                    env_steps=[int(x) for x in m["env_steps"]], q_error=_floats(m["q_error"]),
                    eval_success=_floats(m["eval_success"]),
                    eval_return=_floats(m["eval_return"]),
                    final_q_error=float(m["q_error"][-1]),
                    final_eval_success=float(m["eval_success"][evals][-1]) if evals.any() else None,
                    final_greedy_value=checker.value(final_q), v_star=checker.v_star,
                    compile_s=res.timings["compile_s"], run_s=res.timings["run_s"],
                    wall_s=wall, config={"lr": 0.2, "lr_end": 0.005, "lr_schedule": "linear",
                                         "epsilon": 1.0, "epsilon_end": 0.1,
                                         "epsilon_decay_fraction": 0.5,
                                         "eval_every": spec["eval_every"],
                                         "eval_episodes": spec["eval_episodes"]})
                _log(f"  D={devices} {strategy:<10} sync_every={k:<3} max|Q-Q*| "
                     f"{rec['final_q_error']:.3f}, greedy success {rec['final_eval_success']}, "
                     f"{rec['env_steps'][-1]:,} steps in {wall:.1f} s")
            except Exception as e:  # noqa: BLE001
                rec["error"] = f"{type(e).__name__}: {e}"
                _log(f"  D={devices} {strategy:<10} sync_every={k} ERROR {rec['error']}")
            records.append(rec)
    return records


def worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    if spec["task"] == "probe":
        import jax

        return {"info": benchlib.system_info(), "backend": jax.default_backend(),
                "device_count": jax.device_count()}
    import jax

    devices = spec["devices"]
    if jax.device_count() < devices:
        raise RuntimeError(f"asked for {devices} devices, JAX sees {jax.device_count()} "
                           f"({jax.default_backend()})")
    out: dict[str, Any] = {"devices": devices, "device": benchlib.device_info(),
                           "throughput": [], "tts": [], "staleness": []}
    _log(f"D={devices}: {out['device']['description']}")
    out["throughput"] = worker_throughput(devices, spec)
    checker = None
    if devices in spec["tts_devices"] or devices == spec["staleness_devices"]:
        checker = _Checker()
    if devices in spec["tts_devices"]:
        out["tts"] = worker_tts(devices, spec, checker)
    if devices == spec["staleness_devices"]:
        out["staleness"] = worker_staleness(devices, spec, checker)
    out["elapsed_s"] = time.perf_counter() - t0
    return out


# =======================================================================================
# parent side
# =======================================================================================
def _worker_env(force: int | None) -> dict[str, str]:
    env = dict(os.environ)
    flags = re.sub(FORCE_FLAG + r"=\S*", "", env.get("XLA_FLAGS", "")).split()
    if force is not None:
        flags.append(f"{FORCE_FLAG}={force}")
    env["XLA_FLAGS"] = " ".join(flags)
    env.pop("JAXQ_MULTIDEVICE", None)
    return env


def run_worker(spec: dict[str, Any], force: int | None,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Run this script in ``--worker`` mode; relay its log lines; return its JSON."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                                 json.dumps(spec)], env=_worker_env(force), text=True,
                                stdout=subprocess.PIPE, stderr=err, cwd=str(HERE.parent))
        result = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(LOG_TAG):
                log(line[len(LOG_TAG):].rstrip("\n"))
            elif line.startswith(RESULT_TAG):
                result = json.loads(line[len(RESULT_TAG):])
        rc = proc.wait()
        if rc != 0 or result is None:
            err.seek(0)
            tail = err.read()[-2000:]
            raise RuntimeError(f"worker {spec.get('task')} D={spec.get('devices')} exited "
                               f"with {rc}: {tail}")
        return result


def run_threaded(threads: list[int], steps: int, seed: int,
                 log: Callable[[str], None]) -> list[dict[str, Any]]:
    import threaded_dict

    records = []
    for k in threads:
        rec: dict[str, Any] = {"num_threads": k}
        try:
            threaded_dict.run(k, min(steps, 5_000), seed)  # warm-up (imports, first envs)
            with Meter() as meter:
                out = threaded_dict.run(k, steps, seed)
            rec.update({key: out[key] for key in ("steps", "wall_s", "steps_per_s", "episodes",
                                                  "successes", "per_thread_steps", "config")})
            rec["cpu_per_wall"] = meter.cpu_s / meter.wall_s
            rec["foreign_cores"] = meter.foreign_cores
            log(f"  threaded dict, {k} thread(s): {benchlib.human(out['steps_per_s'])} steps/s "
                f"({out['steps']:,} steps in {out['wall_s']:.2f} s)")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  threaded dict, {k} thread(s): ERROR {rec['error']}")
        records.append(rec)
    return records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="seconds, not a measurement: N = 256, D = 1 and 2, short runs; "
                        "writes into a temp dir unless --out")
    p.add_argument("--out", type=Path, default=None,
                   help="root for results/ and BENCHMARKS.md (default: experiments/)")
    p.add_argument("--devices", type=int, nargs="+", default=None,
                   help="device counts (default 1 2 4 8; on GPU/TPU those the host has)")
    p.add_argument("--num-envs", type=int, nargs="+", default=None, help="N (throughput)")
    p.add_argument("--target-s", type=float, default=None, help="seconds per timed run")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell")
    p.add_argument("--tts-devices", type=int, nargs="+", default=None,
                   help="device counts for time to solution (default: all)")
    p.add_argument("--tts-cap-s", type=float, default=None,
                   help="give up on time to solution after this many training seconds")
    p.add_argument("--sync-every", type=int, nargs="+", default=None,
                   help="staleness sweep (default 1 4 16 64)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="threaded-dict baseline thread counts (default 1 2 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown-only", action="store_true",
                   help="only re-render BENCHMARKS.md and the plots from "
                        "<out>/results/scaling/results.json")
    p.add_argument("--no-markdown", action="store_true", help="write the JSON and plots only")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    s = dict(QUICK if args.quick else DEFAULTS)
    for name in ("devices", "num_envs", "target_s", "repeats", "tts_devices", "tts_cap_s",
                 "sync_every", "threads"):
        v = getattr(args, name)
        if v is not None:
            s[name] = v
    for name in ("devices", "num_envs", "tts_devices", "sync_every", "threads"):
        if s[name] is None:  # tts_devices: every device count
            continue
        s[name] = sorted(set(int(x) for x in s[name]))
        if any(x < 1 for x in s[name]):
            raise SystemExit(f"--{name.replace('_', '-')} values must be >= 1")
    s["seed"] = args.seed
    return s


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    s = settings(args)
    t0 = time.perf_counter()
    probe = run_worker({"task": "probe"}, None, log)
    backend, available = probe["backend"], probe["device_count"]
    forced = backend == "cpu"
    counts = s["devices"] if forced else [d for d in s["devices"] if d <= available]
    skipped = [d for d in s["devices"] if d not in counts]
    if not counts:
        counts = [1]
    # time to solution and staleness where asked, else on the largest count we have
    tts_devices = counts if s["tts_devices"] is None else (
        [d for d in s["tts_devices"] if d in counts] or [max(counts)])
    stale_d = s["staleness_devices"] if s["staleness_devices"] in counts else max(counts)
    log(f"scaling: {backend} ({probe['info']['device']['description']}), device counts "
        f"{counts}{' (forced host devices)' if forced else ''}"
        f"{f', skipped {skipped} (host has {available})' if skipped else ''}; N in {s['num_envs']}")

    throughput, tts, staleness, workers = [], [], [], []
    for d in counts:
        spec = {**s, "task": "run", "devices": d, "tts_devices": tts_devices,
                "staleness_devices": stale_d}
        w0 = time.perf_counter()
        try:
            out = run_worker(spec, d if forced else None, log)
            throughput += out["throughput"]
            tts += out["tts"]
            staleness += out["staleness"]
            workers.append({"devices": d, "device": out["device"], "elapsed_s": out["elapsed_s"],
                            "wall_s": time.perf_counter() - w0})
        except Exception as e:  # noqa: BLE001
            log(f"  D={d}: worker ERROR {e}")
            workers.append({"devices": d, "error": f"{type(e).__name__}: {e}",
                            "wall_s": time.perf_counter() - w0})
    log("threaded-dict baseline (Python threads, dict Q-table, one lock):")
    threaded = run_threaded(s["threads"], s["threaded_steps"], s["seed"], log)
    elapsed = time.perf_counter() - t0
    log(f"done in {elapsed:.1f} s")
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/scaling.py"] + (sys.argv[1:] if argv is None else list(argv))
    return {
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": probe["info"],
        "config": {
            "quick": bool(args.quick),
            "env_id": ENV_ID, "algo": "q_learning", "gamma": GAMMA, "lr": LR,
            "epsilon": EPSILON, "aggregation": "mean",
            "backend": backend, "forced_host_devices": forced, "available_devices": available,
            "devices": counts, "skipped_devices": skipped, "strategies": list(STRATEGIES),
            "num_envs": s["num_envs"], "steps_per_call": s["steps_per_call"],
            "target_s": s["target_s"], "repeats": s["repeats"],
            "threads": s["threads"], "threaded_steps": s["threaded_steps"],
            "tts_devices": tts_devices, "tts_seeds": s["tts_seeds"],
            "tts_epsilon": TTS_EPSILON, "tts_num_envs": s["tts_num_envs"],
            "tts_chunk_iters": s["tts_chunk_iters"], "tts_cap_s": s["tts_cap_s"],
            "solved_gap": SOLVED_GAP,
            "staleness_devices": stale_d, "sync_every": s["sync_every"],
            "staleness_num_envs": s["staleness_num_envs"],
            "staleness_steps": s["staleness_steps"], "staleness_chunks": s["staleness_chunks"],
            "eval_every": s["eval_every"], "eval_episodes": s["eval_episodes"],
            "seed": s["seed"],
            "command": shlex.join(cmd),
        },
        "elapsed_s": elapsed,
        "workers": workers,
        "throughput": throughput,
        "threaded": threaded,
        "tts": tts,
        "staleness": staleness,
        "summary": summary(throughput, threaded),
        "plots": {"steps_per_s": "steps_per_s.png", "staleness": "staleness.png"},
    }


def summary(throughput: list[dict[str, Any]], threaded: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in throughput if "steps_per_s" in r]
    base = [r for r in threaded if "steps_per_s" in r]
    out: dict[str, Any] = {}
    if ok:
        best = max(ok, key=lambda r: r["steps_per_s"])
        out["best_jaxq"] = {k: best[k] for k in ("strategy", "devices", "num_envs", "steps_per_s")}
    if base:
        b = max(base, key=lambda r: r["steps_per_s"])
        out["best_threaded"] = {"num_threads": b["num_threads"], "steps_per_s": b["steps_per_s"]}
    single = [r for r in ok if r["strategy"] == "single"]
    if single:
        best = max(single, key=lambda r: r["steps_per_s"])
        out["best_single"] = {k: best[k] for k in ("strategy", "devices", "num_envs",
                                                   "steps_per_s")}
    if ok and base:
        b = out["best_threaded"]["steps_per_s"]
        out["ratio"] = out["best_jaxq"]["steps_per_s"] / b
        if single:
            out["ratio_single"] = out["best_single"]["steps_per_s"] / b
    # At one device, single, replicated and async (sync_every 1) do the same work: the
    # spread of their rates is the machine's run-to-run variation.
    spread = {}
    for n in sorted({r["num_envs"] for r in ok}):
        rates = [r["steps_per_s"] for r in ok if r["devices"] == 1 and r["num_envs"] == n
                 and r["strategy"] in ("single", "replicated", "async")]
        if len(rates) > 1:
            spread[str(n)] = max(rates) / min(rates)
    if spread:
        out["same_work_spread"] = spread
    return out


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
COLORS = {"single": "black", "replicated": "tab:blue", "sharded": "tab:orange",
          "async": "tab:green"}


def make_plots(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = results["config"]
    paths = {}
    sizes = cfg["num_envs"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.6), squeeze=False,
                             sharey=True)
    base = results["summary"].get("best_threaded")
    for ax, n in zip(axes[0], sizes):
        for strategy in STRATEGIES:
            pts = sorted((r["devices"], r["steps_per_s"]) for r in results["throughput"]
                         if r["strategy"] == strategy and r["num_envs"] == n and "steps_per_s" in r)
            if not pts:
                continue
            x, y = zip(*pts)
            ax.plot(x, y, "*" if strategy == "single" else "o-", color=COLORS[strategy],
                    label=strategy, markersize=10 if strategy == "single" else 5)
        if base:
            ax.axhline(base["steps_per_s"], color="grey", ls="--",
                       label=f"threaded dict ({base['num_threads']} thr.)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(cfg["devices"], [str(d) for d in cfg["devices"]])
        ax.set_xlabel("devices" + (" (forced CPU)" if cfg["forced_host_devices"] else ""))
        ax.set_title(f"N = {n:,}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("env steps / s")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle(f"Q-learning {cfg['env_id']} throughput vs devices "
                 f"({results['info']['device']['backend']})", fontsize=10)
    fig.tight_layout()
    paths["steps_per_s"] = out_dir / results["plots"]["steps_per_s"]
    fig.savefig(paths["steps_per_s"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True, squeeze=False)
    ks = cfg["sync_every"]
    cmap = plt.get_cmap("viridis")
    for col, strategy in enumerate(("async", "replicated")):
        for i, k in enumerate(ks):
            recs = [r for r in results["staleness"] if r["strategy"] == strategy
                    and r["sync_every"] == k and "env_steps" in r]
            if not recs:
                continue
            r = recs[0]
            color = cmap(i / max(1, len(ks) - 1) * 0.9)
            x = np.asarray(r["env_steps"], float)
            axes[0][col].plot(x, [np.nan if v is None else v for v in r["q_error"]], "-",
                              color=color, label=f"sync_every={k}")
            ev = [(xi, v) for xi, v in zip(x, r["eval_success"]) if v is not None]
            if ev:
                axes[1][col].plot(*zip(*ev), "o-", color=color, label=f"sync_every={k}",
                                  markersize=3)
        axes[0][col].set_title(f"{strategy} ({cfg['staleness_devices']} devices)")
        axes[0][col].set_yscale("log")
        axes[0][col].grid(True, which="both", alpha=0.3)
        axes[1][col].grid(True, alpha=0.3)
        axes[1][col].set_ylim(0, 1)
        axes[1][col].set_xlabel("env steps")
    axes[0][0].set_ylabel("max |Q - Q*|")
    axes[1][0].set_ylabel("greedy success rate")
    axes[1][1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Convergence vs staleness, {cfg['env_id']} (slippery), "
                 f"N = {cfg['staleness_num_envs']:,}", fontsize=10)
    fig.tight_layout()
    paths["staleness"] = out_dir / results["plots"]["staleness"]
    fig.savefig(paths["staleness"], dpi=110)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------
def _steps_to(rec: dict[str, Any], threshold: float) -> int | None:
    for x, e in zip(rec["env_steps"], rec["q_error"]):
        if e is not None and e <= threshold:
            return x
    return None


def render_markdown(results: dict[str, Any]) -> str:
    """The ``scaling`` section, from the results dict alone (deterministic)."""
    info, cfg = results["info"], results["config"]
    date = info["date_utc"][:10]
    dev = results["workers"][0].get("device") if results["workers"] else None
    backend = cfg["backend"]
    lines = [f"## Scaling across devices (strategies x devices x N) — {date} · "
             f"{benchlib.machine_line(info)} · device: "
             f"{backend + (' (forced host devices)' if cfg['forced_host_devices'] else '')}", ""]
    if cfg.get("quick"):
        lines += ["> `--quick` run: tiny sizes and short timings, a smoke test, not a measurement.",
                  ""]
    if cfg["forced_host_devices"]:
        cores = info["machine"].get("cpu_cores_usable") or info["machine"].get("cpu_cores")
        busy = [r["cpu_per_wall"] for r in results["throughput"]
                if r["devices"] == 1 and r.get("cpu_per_wall") is not None]
        used = (f" (here {float(np.median(busy)):.1f} of the {cores} cores busy: median CPU "
                "time / wall time of the 1-device cells)") if busy else ""
        lines += [
            f"> **Forced CPU devices.** Every device count ran on the same {cores} CPU cores "
            f"(`XLA_FLAGS={FORCE_FLAG}=D`, one process per D). A single XLA:CPU device "
            f"already uses the cores{used}, so more forced devices cannot add compute, only "
            "fill what one device leaves idle: these numbers show that the strategies run "
            "and what their collectives cost, not how they scale. Real scaling needs real "
            "devices; on a GPU/TPU host the same command uses them unchanged.", ""]
    elif dev:
        lines += [f"Devices: {dev['description']}.", ""]
    lines += [
        f"Q-learning on {cfg['env_id']} (slippery, gamma {cfg['gamma']}, constant lr "
        f"{cfg['lr']} and epsilon {cfg['epsilon']}, per-cell mean of each step's TD errors), "
        "`learner.chunk` compiled ahead of time; steps/s = N · steps per call · calls / "
        f"median wall time of {cfg['repeats']} runs of ~{cfg['target_s']:g} s, compile time "
        "excluded (last column: at the largest N). `single`: one device; `replicated`: "
        "whole table on every device, per-cell TD sums all-reduced; `sharded`: state rows "
        "split across devices, lookups and updates by collectives; `async`: replicated "
        "table, actors on a snapshot refreshed every `sync_every` steps (1 here).", ""]
    sizes = cfg["num_envs"]
    header = ["strategy", "devices"] + [f"N={n:,}" for n in sizes] + ["compile (s)"]
    rows = []
    for strategy in STRATEGIES:
        for d in cfg["devices"]:
            recs = {r["num_envs"]: r for r in results["throughput"]
                    if r["strategy"] == strategy and r["devices"] == d}
            if not recs:
                continue
            cells, comp = [], None
            for n in sizes:
                r = recs.get(n)
                if r is None:
                    cells.append("–")
                elif "error" in r:
                    cells.append("error")
                else:
                    cells.append(benchlib.human(r["steps_per_s"]))
                    comp = r["compile_s"]
            rows.append([strategy, str(d)] + cells + ["–" if comp is None else f"{comp:.2f}"])
    lines.append(benchlib.table(header, rows, ["l", "r"] + ["r"] * (len(sizes) + 1)))
    lines.append("")
    errs = [r for r in results["throughput"] if "error" in r]
    for r in errs:
        lines.append(f"- {r['strategy']}, D={r['devices']}, N={r['num_envs']:,}: `{r['error']}`")
    if errs:
        lines.append("")
    for w in results["workers"]:
        if "error" in w:
            lines += [f"- worker D={w['devices']} failed: `{w['error'][:300]}`", ""]

    thr = [r for r in results["threaded"] if "steps_per_s" in r]
    if results["threaded"]:
        lines += [
            "**Baseline: the textbook parallel Q-learner** (`experiments/baselines/"
            "threaded_dict.py`): K Python threads, each with its own Gymnasium FrozenLake-v1 "
            "(8x8, slippery, 200-step limit), epsilon-greedy on one shared `dict` "
            "{(s, a): value}, each update under one `threading.Lock`; same gamma, lr, epsilon.",
            "",
            benchlib.table(["threads", "steps/s", "steps", "wall (s)", "episodes"],
                           [[str(r["num_threads"]), benchlib.human(r["steps_per_s"]),
                             f"{r['steps']:,}", f"{r['wall_s']:.2f}", f"{r['episodes']:,}"]
                            if "steps_per_s" in r else [str(r["num_threads"]), "error", "–",
                                                        "–", "–"]
                            for r in results["threaded"]], ["r", "r", "r", "r", "r"]),
            ""]
        one = [r for r in thr if r["num_threads"] == 1]
        if one and len(thr) > 1:
            base = one[0]["steps_per_s"]
            rel = ", ".join(f"{r['num_threads']} threads: {r['steps_per_s'] / base:.2f}x"
                            for r in thr if r["num_threads"] != 1)
            lines += [f"Relative to 1 thread: {rel} (CPython's GIL runs one thread's bytecode "
                      "at a time, and the lock serialises the updates).", ""]
    sm = summary(results["throughput"], results["threaded"])
    if "ratio" in sm:
        b, t = sm["best_jaxq"], sm["best_threaded"]
        text = (f"**jaxq's best throughput vs the threaded-dict baseline (same run): "
                f"{sm['ratio']:,.0f}x** ({benchlib.human(b['steps_per_s'])} steps/s, "
                f"{b['strategy']} on {b['devices']} device(s), N = {b['num_envs']:,}; vs "
                f"{benchlib.human(t['steps_per_s'])} steps/s, its best, with "
                f"{t['num_threads']} thread(s))")
        if "ratio_single" in sm and sm["best_single"] != b:
            bs = sm["best_single"]
            text += (f"; plain one-device `single`: {sm['ratio_single']:,.0f}x "
                     f"({benchlib.human(bs['steps_per_s'])} steps/s, N = {bs['num_envs']:,})")
        lines += [text + ".", ""]
    if sm.get("same_work_spread"):
        n, x = max(sm["same_work_spread"].items(), key=lambda kv: kv[1])
        lines += [f"At 1 device, `single`, `replicated` and `async` (sync_every 1) do the same "
                  f"work; their rates differ by up to {x:.2f}x here (N = {int(n):,}), which is "
                  "this machine's run-to-run variation: differences between cells smaller "
                  "than that are not significant.", ""]

    if results["tts"]:
        seeds = cfg.get("tts_seeds", 1)
        lines += [
            f"**Time to solution**: training seconds until the greedy policy is within "
            f"{cfg['solved_gap']:.0%} of optimal at the start state (V^pi exact by "
            f"`jaxq.policy_evaluation` on the model, checked after every chunk of "
            f"{cfg['tts_chunk_iters']} steps x N = {cfg['tts_num_envs']:,}; constant lr "
            f"{cfg['lr']}, epsilon {cfg.get('tts_epsilon', 0.3)}, sync_every 1; checking "
            f"excluded, compile apart; cap {cfg['tts_cap_s']:g} s; median over {seeds} "
            f"seed(s), one compile per row). With sync_every = 1 every strategy computes the "
            "same table as one device up to float summation order, so the env steps agree "
            "and the seconds differ by what the collectives cost.", ""]
        rows = []
        for r in results["tts"]:
            if "error" in r:
                rows.append([r["strategy"], str(r["devices"]), "error", "–", "–", "–", "–"])
                continue
            rows.append([r["strategy"], str(r["devices"]), f"{r['solved_runs']}/{r['seeds']}",
                         f"{r['train_s']:.3f} ({r['train_s_min']:.3f}–{r['train_s_max']:.3f})",
                         f"{r['compile_s']:.2f}", f"{r['env_steps']:,}",
                         f"{r['runs'][-1]['value'] / r['v_star']:.3f}"])
        lines += [benchlib.table(["strategy", "devices", "solved", "train (s), median (range)",
                                  "compile (s)", "env steps (median)", "V^pi / V* (last seed)"],
                                 rows, ["l", "r", "r", "r", "r", "r", "r"]),
                  "", f"V*(start) = {results['tts'][0].get('v_star', float('nan')):.4f}.", ""]

    if results["staleness"]:
        ok = [r for r in results["staleness"] if "env_steps" in r]
        thresholds = (0.3, 0.15)
        lines += [
            f"**Convergence vs staleness** ({cfg['staleness_devices']} devices, N = "
            f"{cfg['staleness_num_envs']:,}, {cfg['staleness_chunks']} chunks, lr 0.2 -> "
            "0.005 and epsilon 1.0 -> 0.1 linear (epsilon over the first half), greedy "
            f"evaluation every {cfg['eval_every']} chunks with {cfg['eval_episodes']:,} "
            "episodes). `async`: actors act on a snapshot refreshed every k steps, updates "
            "apply at once; `replicated`: k steps of TD errors buffered and applied as one "
            "combined mean every k steps.", ""]
        rows = []
        for r in results["staleness"]:
            if "env_steps" not in r:
                rows.append([r["strategy"], str(r["sync_every"]), "error"] + ["–"] * 5)
                continue
            reach = [_steps_to(r, th) for th in thresholds]
            rows.append([r["strategy"], str(r["sync_every"]), f"{r['final_q_error']:.3f}"]
                        + [("–" if x is None else benchlib.human(x)) for x in reach]
                        + ["–" if r["final_eval_success"] is None
                           else f"{r['final_eval_success']:.3f}",
                           f"{r['final_greedy_value'] / r['v_star']:.3f}",
                           f"{r['run_s']:.1f}"])
        lines += [benchlib.table(
            ["strategy", "sync_every", "final max\\|Q-Q*\\|"]
            + [f"steps to max\\|Q-Q*\\| <= {th}" for th in thresholds]
            + ["final greedy success", "V^pi / V*", "run (s)"], rows,
            ["l", "r", "r", "r", "r", "r", "r", "r"]), ""]
        if ok:
            lines += [f"Final env steps: {ok[0]['env_steps'][-1]:,} per run.", ""]
    load = [r["foreign_cores"] for r in results["throughput"] + results["threaded"]
            if r.get("foreign_cores") is not None]
    if load:
        med, hi = float(np.median(load)), max(load)
        lines += [f"Background load (CPU used by other processes during the timed runs, from "
                  f"/proc/stat): median {med:.2f} cores, max {hi:.2f} cores."
                  + (" **The machine was shared during this run: throughput numbers may be "
                     "low by up to that share and noisy.**" if hi > 0.25 else ""), ""]
    lines += [f"Plots: `results/{EXPERIMENT}/{results['plots']['steps_per_s']}` (steps/s vs "
              f"devices), `results/{EXPERIMENT}/{results['plots']['staleness']}` "
              "(max|Q - Q*| and greedy success vs env steps).", ""]
    lines.append(benchlib.run_line(results, EXPERIMENT))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker is not None:
        result = worker_main(json.loads(args.worker))
        print(RESULT_TAG + json.dumps(result, allow_nan=False), flush=True)
        return result
    args.argv = argv
    return benchlib.run_experiment(args, EXPERIMENT, run_benchmark, render_markdown,
                                   lambda r, d: list(make_plots(r, d).values()), log,
                                   home=Path(__file__).resolve().parent)


if __name__ == "__main__":
    main()
