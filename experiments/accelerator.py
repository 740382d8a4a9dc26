"""Accelerator: what one GPU (or TPU) does with jaxq, in one bounded run (issue 10).

One command, one device, a hard time budget (``--budget-s``, default 480 s; see **Budget**
below); results are written after every measured point, so a run killed from outside keeps
what it measured. In order:

1. **The device**: kind, count, memory, jax / jaxlib (and CUDA plugin or libtpu) versions,
   the driver and CUDA version from ``nvidia-smi`` where there is one; the device's peak
   memory bandwidth from its data sheet (``PEAK_BANDWIDTH``, by device kind; unknown ->
   null) and a measured one (a jitted ``x * 2`` over ``copy_bytes``, read + write).
2. **Replicas** (``TrainConfig(strategy="replicated", num_devices=k)``, k = every local
   device): a few chunks on FrozenLake 8x8 (small table: all-reduced sums) and the maze
   (large table: gathered (cell, TD) pairs), then the per-device copies of Q (the carry's
   addressable shards) compared byte for byte. With one device k = 1 and the check is
   trivially true; the results and the section say so. On a CPU host the child gets two
   forced host devices (``--xla_force_host_platform_device_count=2``), so the check is a
   real one there too. Runs in a child process.
3. **Determinism**: the same configs (FrozenLake 8x8 and the maze, one device, fixed N,
   chunk length and chunk count) run in four child processes, alternating
   ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` and no flag (plain, flag, plain, flag);
   each saves its final table, and the parent compares the tables of each pair bit for
   bit (and the flag's tables with the plain ones) and reports the flag's cost in steps/s
   (median chunk time, the first chunk excluded). On one GPU the plain pair may differ:
   float scatter-adds use atomics, whose order is not fixed; on a CPU both pairs are
   identical and the flag does nothing.
4. **Throughput vs N** (N = 2^10, 2^12, ..., 2^24, up to ``--max-envs``) for Q-learning on
   FrozenLake8x8-v1 and on a 1024x1024 ``Maze-v0`` (``start="uniform"``: episodes start in
   every free cell, so the 4M x 4 table is used all over instead of near one corner):
   ``learner.chunk`` compiled ahead of time as ``jaxq.train`` runs it
   (``jax.jit(jaxq.training.build_learner(config).chunk, donate_argnums=0)``), gamma 0.99,
   constant lr 0.1 and epsilon 0.1, no evaluation; chunk length sized from the previous N's
   rate for about ``target_s`` per call; steps/s = N x chunk steps x calls / median of
   ``repeats`` timed runs (compile time apart). **Bytes per env step**: XLA's
   ``cost_analysis()`` "bytes accessed" of one compiled batched step (``learner.step`` with
   the loop-invariant step tables passed in; XLA counts a loop body once, so the chunk's own
   figure cannot be divided by its length), divided by N. With the device's bandwidth B, B /
   (bytes per step) is the *roofline*: the steps/s at which the device would do nothing but
   move those bytes; the table gives our fraction of it (for the peak and for the measured
   copy bandwidth). XLA's byte count is a model (whole operands of fusions, 4-byte gathers
   where the memory system moves 32-byte sectors), so the fraction is a guide, not a
   measurement of the memory system. The sweep of each environment stops growing N when the
   next point's predicted compile + timing would not fit in its share of the budget.
5. **Neural Q-functions (PQN; issue 11)**, last, in what is left of the budget:

   a. *Throughput vs N* on CartPole-v1, N = 2^6, 2^8, ..., 2^16, and on Breakout-MinAtar at
      N = 128 (its default) and 512: env steps/s including the learning, one seed, no
      evaluation (one 1-step episode), the library's mlp defaults for the env otherwise
      (``jaxq.config.DEFAULTS``). Each point is ``function_approx.throughput_point``
      itself (imported, not copied: one call of ``jax.jit(make_train_deep(config))``
      compiled ahead of time, median of ``repeats`` calls). A call's length
      is fixed at compile time, so it is sized from the previous N's rate (grown by
      sqrt(N ratio), as function_approx does) for about ``target_s``; a sweep stops
      growing N when the next point's predicted compile + calls would not fit its share
      (CartPole ``cartpole_share`` of the section's time, Breakout ``breakout_share`` of
      what is left after it).
   b. *A Breakout-MinAtar learning curve* at the library's Breakout defaults (10,240,000
      env steps, 20 chunks, 100 greedy evaluation episodes per chunk): the largest of
      ``curve_seeds`` (4, 3, 2) seeds whose predicted time fits what is left, vmapped in one
      call (``function_approx.run_curve``, the learning curves' own code) in a child
      process whose timeout is the time left, so a wrong prediction cannot overrun the
      budget. The prediction, from the measured Breakout points: child start-up
      (``child_start_s``) + ``compile_factor`` x the throughput point's compile + seeds x
      env steps / the rate measured at the largest N <= seeds x 128 (the seeds are a
      batch axis like the envs; the smaller N's rate is the slower, so the cautious one) +
      chunks x eval cap (``eval_max_steps``) x (that N / that rate: a batched step with
      its share of learning, more than an evaluation step costs) for the evaluations, all
      x ``curve_margin``.
      Otherwise it is skipped with that reason. Recorded: the per-chunk median (and
      spread) of the greedy return, compile and run seconds, the prediction.

**Budget** (default 480 s, up from issue 10's 420 s for the PQN part): the process adds
Python's start-up and the last write (a few seconds), so the default run takes about 8
minutes, inside the 10-minute limit of one command on a lent GPU and well inside 9 minutes.
After the device section: ``children_share`` (0.3) of what is left for the child processes
(replicas, determinism), then ``tabular_share`` (0.4) of what is left after them for the
tabular sweeps, and everything else, less ``RESERVE_S``, for the PQN section (each part's
share is a cap: what a part leaves unused rolls on to the next). At 480 s that is at most
about 140 s of children, 130 s of tabular sweeps, and 190 s or more of PQN, of which
CartPole's sweep may use a quarter, Breakout's points 35% of the rest, and the 10M
Breakout curve (the slowest part: a child's start, its compile, 10M env steps per seed)
what remains, about 100 s or more: it runs where the measured Breakout rate predicts it
fits (an estimate, not a measurement: 4 seeds on an H200 may need ~130 s);
``--budget-s 560`` (9.5 minutes: only where the device time allows) or ``--max-envs``
(fewer tabular points) leave it more.

Writes ``<out>/results/accelerator/results.json`` (plus an archived
``<device>-<date>.json``) and the ``accelerator`` section of ``<out>/BENCHMARKS.md``.

    python experiments/accelerator.py                   # on the GPU: <= 480 s of budget
    python experiments/accelerator.py --budget-s 560    # more for the Breakout 10M curve
    python experiments/accelerator.py --budget-s 300    # a shorter run
    python experiments/accelerator.py --quick           # CPU smoke run (~2 min, 2 cores); temp dir
    python experiments/accelerator.py --markdown-only   # re-render the section from results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402
import function_approx  # noqa: E402  (PQN's throughput point and learning curve)
from jaxq.config import INT32_MAX  # noqa: E402

EXPERIMENT = "accelerator"
SCHEMA_VERSION = 2  # 2: the PQN section ("deep"); 1 had none
DET_FLAG = "--xla_gpu_deterministic_ops=true"
FORCE_FLAG = "--xla_force_host_platform_device_count"
RESULT_TAG = "ACCELERATOR-RESULT "
LOG_TAG = "ACCELERATOR-LOG "
GAMMA, LR, EPSILON = 0.99, 0.1, 0.1
Log = Callable[[str], None]

# Data-sheet peak memory bandwidth (bytes/s) by device kind (``jax.devices()[0].device_kind``),
# first match wins (so "H100 PCIe" is tried before a bare "H100"). Unknown kinds -> None.
PEAK_BANDWIDTH: list[tuple[tuple[str, ...], float, str]] = [
    (("h200",), 4.8e12, "NVIDIA H200 141GB HBM3e"),
    (("gh200",), 4.0e12, "NVIDIA GH200 96GB HBM3"),
    (("h100", "pcie"), 2.0e12, "NVIDIA H100 PCIe"),
    (("h100", "nvl"), 3.9e12, "NVIDIA H100 NVL"),
    (("h100",), 3.35e12, "NVIDIA H100 SXM"),
    (("h800",), 3.35e12, "NVIDIA H800 SXM"),
    (("b200",), 8.0e12, "NVIDIA B200"),
    (("a100", "80gb", "pcie"), 1.935e12, "NVIDIA A100 80GB PCIe"),
    (("a100", "80gb"), 2.039e12, "NVIDIA A100 80GB SXM"),
    (("a100",), 1.555e12, "NVIDIA A100 40GB"),
    (("a10g",), 0.6e12, "NVIDIA A10G"),
    (("l40s",), 0.864e12, "NVIDIA L40S"),
    (("l4",), 0.3e12, "NVIDIA L4"),
    (("v100",), 0.9e12, "NVIDIA V100"),
    (("t4",), 0.32e12, "NVIDIA T4"),
    (("rtx 4090",), 1.008e12, "NVIDIA GeForce RTX 4090"),
    (("tpu v6",), 1.64e12, "TPU v6e"),
    (("tpu v5 lite",), 0.819e12, "TPU v5e"),
    (("tpu v5p",), 2.765e12, "TPU v5p"),
    (("tpu v5",), 2.765e12, "TPU v5p"),
    (("tpu v4",), 1.2e12, "TPU v4"),
]

# label -> (env_id, env_kwargs); the maze's size is the mode's ``maze_size``
ENVS = {"FrozenLake 8x8": ("FrozenLake8x8-v1", {}),
        "Maze": ("Maze-v0", {"start": "uniform"})}
MODES: dict[str, dict[str, Any]] = {
    # a smoke test on a CPU: every part runs, nothing is a measurement
    # (the child processes check FrozenLake only: the maze's compiles cost more than a smoke
    # test is worth)
    "quick": dict(sizes=[16, 64], maze_size=32, child_envs=["FrozenLake 8x8"],
                  target_s=0.02, repeats=2, max_calls=4,
                  budget_s=240.0, children_share=0.5, tabular_share=0.5,
                  child_timeout_s=90.0,
                  # enough steps that FrozenLake's goal is reached: tables that are not zeros
                  replicated=dict(num_envs=256, chunk_iters=64, chunks=3),
                  determinism=dict(num_envs=256, chunk_iters=128, chunks=3),
                  copy_bytes=1 << 24, rate_guess=1e6,
                  # two PQN points per env at the library's defaults, and a tiny 2-seed
                  # curve (each PQN compile is seconds of CPU: the smoke run's most)
                  deep=dict(cartpole_sizes=[8, 16], breakout_sizes=[8, 16], target_s=0.05,
                            repeats=2, rate_guess=2e4, compile_guess_s=5.0,
                            cartpole_share=0.25, breakout_share=0.35, curve_seeds=[2],
                            curve_overrides=dict(num_envs=8, rollout_len=8,
                                                 num_minibatches=2, num_epochs=1, width=16,
                                                 depth=1, total_steps=1024, num_chunks=2,
                                                 eval_episodes=4, eval_max_steps=50),
                            child_start_s=10.0, compile_factor=2.0, curve_margin=1.2)),
    # one GPU: N = 2^10 ... 2^24 (4x apart)
    "default": dict(sizes=[1 << k for k in range(10, 25, 2)], maze_size=1024, child_envs=None,
                    target_s=0.2,
                    repeats=5, max_calls=16, budget_s=480.0, children_share=0.3,
                    tabular_share=0.4, child_timeout_s=120.0,
                    replicated=dict(num_envs=1 << 18, chunk_iters=16, chunks=3),
                    determinism=dict(num_envs=1 << 20, chunk_iters=64, chunks=4),
                    copy_bytes=1 << 31, rate_guess=3e7,
                    # PQN: CartPole N = 2^6 ... 2^16 (4x apart), Breakout at its default
                    # N (128) and 4 x 128 (what 4 vmapped seeds batch); the Breakout curve
                    # at the library's defaults (no overrides: 10,240,000 env steps)
                    deep=dict(cartpole_sizes=[1 << k for k in range(6, 17, 2)],
                              breakout_sizes=[128, 512], target_s=0.5, repeats=3,
                              rate_guess=1e5, compile_guess_s=20.0, cartpole_share=0.25,
                              breakout_share=0.35, curve_seeds=[4, 3, 2], curve_overrides={},
                              child_start_s=15.0, compile_factor=2.0, curve_margin=1.2)),
}
RESERVE_S = 5.0  # kept back for the last write and the markdown
MIN_CHILD_S = 5.0  # a child process given less than this is not started
# the PQN section's environments, each at the library's mlp defaults for it: env id ->
# its sizes in the mode's ``deep`` and its share of the section; the curve's env
DEEP_ENVS = {"CartPole-v1": ("cartpole_sizes", "cartpole_share"),
             "Breakout-MinAtar": ("breakout_sizes", "breakout_share")}
CURVE_ENV = "Breakout-MinAtar"
# the DeepConfig fields that describe a PQN throughput point's settings in the section
DEEP_SETTINGS = ("rollout_len", "num_epochs", "num_minibatches", "width", "depth", "lr",
                 "lr_schedule", "q_lambda", "reward_scale")


# =======================================================================================
# shared pieces (parent and workers)
# =======================================================================================
def peak_bandwidth(device_kind: str) -> dict[str, Any]:
    """The data-sheet memory bandwidth of ``device_kind`` (``{"bytes_per_s", "source"}``;
    both None where the kind is not in ``PEAK_BANDWIDTH``, e.g. every CPU)."""
    kind = device_kind.lower()
    for words, bw, name in PEAK_BANDWIDTH:
        if all(w in kind for w in words):
            return {"bytes_per_s": bw, "source": f"data sheet: {name}"}
    return {"bytes_per_s": None, "source": None}


def compare_tables(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Bit-for-bit comparison of two Q-tables: identical bytes (so -0.0 != 0.0 and NaN
    payloads count, as they would for a replica), and where they differ, how much."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return {"identical": False, "differing_cells": None, "max_abs_diff": None,
                "why": f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"}
    same = a.view(np.uint8).reshape(a.shape + (-1,)) == b.view(np.uint8).reshape(b.shape + (-1,))
    cells = int(np.sum(~same.all(axis=-1)))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    finite = diff[np.isfinite(diff)]
    return {"identical": cells == 0, "differing_cells": cells,
            "max_abs_diff": float(finite.max()) if finite.size else 0.0}


def table_stats(q: np.ndarray) -> dict[str, Any]:
    """What shows a table is a learned one (not zeros): shape, sha256 of its bytes, how
    many cells moved from 0 and its largest magnitude."""
    q = np.ascontiguousarray(q)
    finite = q[np.isfinite(q)]
    return {"shape": list(q.shape), "dtype": str(q.dtype),
            "sha256": hashlib.sha256(q.tobytes()).hexdigest(),
            "nonzero_cells": int(np.count_nonzero(q)),
            "max_abs": float(np.abs(finite).max()) if finite.size else 0.0}


def make_config(env_id: str, env_kwargs: dict[str, Any], num_envs: int, chunk_iters: int,
                num_chunks: int = 1, seed: int = 0, **over: Any):
    """Q-learning, gamma 0.99, constant lr 0.1 and epsilon 0.1, no evaluation, chunks of
    exactly ``chunk_iters`` batched steps (``num_chunks`` of them), ``over`` on top (e.g.
    ``strategy``, ``num_devices``)."""
    import jaxq

    return jaxq.TrainConfig(
        env_id=env_id, env_kwargs=dict(env_kwargs), algo="q_learning", num_envs=num_envs,
        total_steps=num_envs * chunk_iters * num_chunks, num_chunks=num_chunks, gamma=GAMMA,
        lr=LR, lr_schedule="constant", epsilon=EPSILON, epsilon_schedule="constant",
        eval_every=0, seed=seed, **over)


class Chunk:
    """``build_learner(config).chunk`` compiled ahead of time as ``jaxq.train`` compiles
    it (``jax.jit(chunk, donate_argnums=0)``),
    with its carry: one call runs one chunk and waits for it. ``compile_s``: building,
    lowering and compiling init and chunk."""

    def __init__(self, config):
        import jax

        from jaxq.training import build_learner

        t0 = time.perf_counter()
        self.config = config
        self.learner = build_learner(config)
        self.hp, self.ep = config.hparams(), self.learner.params
        key = jax.random.key(config.seed)
        carry = jax.jit(self.learner.init).lower(key, self.hp, self.ep).compile()(
            key, self.hp, self.ep)
        self.compiled = jax.jit(self.learner.chunk, donate_argnums=0).lower(
            carry, self.hp, self.ep).compile()
        self.carry = jax.block_until_ready(carry)
        self.compile_s = time.perf_counter() - t0
        self.steps_per_chunk = config.num_envs * config.plan()["chunk_iters"]

    def __call__(self) -> None:
        import jax

        self.carry, metrics = self.compiled(self.carry, self.hp, self.ep)
        jax.block_until_ready((self.carry, metrics))

    def q(self) -> np.ndarray:
        """The learned estimate ``[S, A]`` (for Q-learning, the table)."""
        return np.asarray(self.learner.estimate(self.carry))

    def step_bytes(self) -> tuple[float | None, str]:
        """XLA's bytes accessed by one batched step (``learner.step`` with the
        loop-invariant step tables passed in, as the chunk's loop body gets them; XLA
        counts a loop body once, so the chunk's own figure is one step plus the per-chunk
        work), or, where that cannot be compiled, the chunk's figure (``"chunk"``)."""
        import jax

        learner = self.learner
        try:
            tables = jax.jit(learner.venv.prepare)(self.ep)
            fn = jax.jit(lambda c, hp, ep, tb: learner.step(c, hp, ep, tb)[:2])
            v = _bytes_accessed(fn.lower(self.carry, self.hp, self.ep, tables).compile())
            if v is not None:
                return v, "step"
        except Exception:  # noqa: BLE001 - a learner without that step signature
            pass
        return _bytes_accessed(self.compiled), "chunk"


def _bytes_accessed(compiled) -> float | None:
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend offers it
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    v = (ca or {}).get("bytes accessed")
    return float(v) if v is not None else None


def _pow2_floor(x: float, lo: int = 1, hi: int = INT32_MAX) -> int:
    n = 2 ** int(math.floor(math.log2(max(float(x), 1.0))))
    return int(min(max(n, lo), hi))


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# =======================================================================================
# workers (child processes): ``accelerator.py --worker JSON``
# =======================================================================================
def _wlog(msg: str) -> None:
    print(LOG_TAG + msg, flush=True)


def _run_chunks(cfg, chunks: int) -> tuple[Chunk, list[float], float]:
    """Compile ``cfg``'s chunk (``Chunk``), run ``chunks`` chunks;
    returns the compiled chunk, each chunk's seconds and the compile seconds."""
    cc = Chunk(cfg)
    times = []
    for _ in range(chunks):
        t0 = time.perf_counter()
        cc()
        times.append(time.perf_counter() - t0)
    return cc, times, cc.compile_s


def _rate(steps_per_chunk: int, times: list[float]) -> float:
    """Steps/s from the median chunk, the first (warm-up) excluded when there are more."""
    timed = times[1:] if len(times) > 1 else times
    return steps_per_chunk / statistics.median(timed)


def worker_replicated(spec: dict[str, Any]) -> dict[str, Any]:
    """Every local device holds a copy of Q; after a few chunks, are they the same bytes?"""
    import jax

    k = jax.local_device_count()
    out: dict[str, Any] = {"devices": k, "device_kinds": sorted({d.device_kind for d in
                                                                  jax.local_devices()}),
                           "backend": jax.default_backend(), "cases": []}
    for case in spec["cases"]:
        rec: dict[str, Any] = {"label": case["label"]}
        try:
            n = max(k, case["num_envs"] // k * k)
            cfg = make_config(case["env_id"], case["env_kwargs"], n, case["chunk_iters"],
                              num_chunks=case["chunks"], seed=spec["seed"],
                              strategy="replicated", num_devices=k)
            cc, times, compile_s = _run_chunks(cfg, case["chunks"])
            shards = cc.carry.q.addressable_shards
            copies = [np.asarray(s.data) for s in shards]
            per_device = [dict(device=str(s.device), **table_stats(c))
                          for s, c in zip(shards, copies)]
            pairs = [compare_tables(copies[0], c) for c in copies[1:]]
            rec.update(num_envs=n, chunk_iters=case["chunk_iters"], chunks=case["chunks"],
                       compile_s=compile_s, chunk_s=times, copies=len(copies),
                       per_device=per_device, identical=all(p["identical"] for p in pairs),
                       trivial=len(copies) == 1, comparisons=pairs,
                       steps_per_s=_rate(cc.steps_per_chunk, times))
            _wlog(f"  replicated {case['label']}: {len(copies)} copies, "
                  f"{'bit-identical' if rec['identical'] else 'DIFFER'}"
                  + (" (one device: trivially)" if rec["trivial"] else ""))
            del cc
        except Exception as e:  # noqa: BLE001 - the other case still counts
            rec["error"] = f"{type(e).__name__}: {e}"
            _wlog(f"  replicated {case['label']}: ERROR {rec['error']}")
        out["cases"].append(rec)
    return out


def worker_determinism(spec: dict[str, Any]) -> dict[str, Any]:
    """Run each case's fixed config once; save its table for the parent to compare."""
    out: dict[str, Any] = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "cases": []}
    for i, case in enumerate(spec["cases"]):
        rec: dict[str, Any] = {"label": case["label"]}
        try:
            cfg = make_config(case["env_id"], case["env_kwargs"], case["num_envs"],
                              case["chunk_iters"], num_chunks=case["chunks"], seed=spec["seed"])
            cc, times, compile_s = _run_chunks(cfg, case["chunks"])
            q = cc.q()
            path = Path(spec["tables_dir"]) / f"{spec['tag']}-{i}.npy"
            np.save(path, q)
            rec.update(compile_s=compile_s, chunk_s=times,
                       steps_per_s=_rate(cc.steps_per_chunk, times), table_file=str(path),
                       table=table_stats(q))
            _wlog(f"  {spec['tag']:<8} {case['label']}: {benchlib.human(rec['steps_per_s'])} "
                  f"steps/s, table {rec['table']['sha256'][:12]}")
            del cc
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            _wlog(f"  {spec['tag']:<8} {case['label']}: ERROR {rec['error']}")
        out["cases"].append(rec)
    return out


def worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = spec["task"]
    if task == "replicated":
        out = worker_replicated(spec)
    elif task == "determinism":
        out = worker_determinism(spec)
    elif task == "pqn_curve":  # the learning curves' own code: seeds vmapped in one call
        out = {"record": function_approx.run_curve(spec["key"], spec["seeds"],
                                                   spec["overrides"], spec["seed"], _wlog)}
    else:
        raise ValueError(f"unknown worker task {task!r}")
    out["device"] = benchlib.device_info()
    out["elapsed_s"] = time.perf_counter() - t0
    return out


def child_env(xla_flags: list[str]) -> dict[str, str]:
    """The child's environment: ours, with the determinism and forced-device flags
    replaced by ``xla_flags``, and no GPU memory preallocation (the parent holds JAX's
    default 75% of it; a child takes what it uses from the rest)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_gpu_deterministic_ops", FORCE_FLAG))]
    env["XLA_FLAGS"] = " ".join(flags + list(xla_flags))
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env.pop("JAXQ_MULTIDEVICE", None)
    return env


def run_child(spec: dict[str, Any], xla_flags: list[str], timeout_s: float,
              log: Log) -> dict[str, Any]:
    """This script in ``--worker`` mode under ``xla_flags``; its log lines relayed, its
    result returned (``{"error": ...}`` if it failed or ran past ``timeout_s``)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=child_env(xla_flags), cwd=str(HERE.parent), text=True,
                              capture_output=True, timeout=timeout_s)
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        def text(x):
            return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
        stdout, stderr, rc = text(e.stdout), text(e.stderr), None
    result = None
    for line in stdout.splitlines():
        if line.startswith(LOG_TAG):
            log(line[len(LOG_TAG):])
        elif line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    wall = time.perf_counter() - t0
    if rc is None:
        return {"error": f"timed out after {timeout_s:.0f} s", "wall_s": wall}
    if rc != 0 or result is None:
        return {"error": f"exit {rc}: {stderr.strip()[-1500:]}", "wall_s": wall}
    result["wall_s"] = wall
    return result


# =======================================================================================
# parent: the device, replicas, determinism, throughput
# =======================================================================================
class Budget:
    """Seconds left of the run's overall budget."""

    def __init__(self, total_s: float):
        self.total_s = total_s
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total_s - self.elapsed()


def nvidia_smi() -> dict[str, Any] | None:
    """Driver, CUDA version and GPUs as ``nvidia-smi`` reports them (None without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    out: dict[str, Any] = {}
    try:
        q = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total,pci.bus_id",
                            "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=20)
        gpus = [[x.strip() for x in line.split(",")] for line in q.stdout.splitlines()
                if line.strip()]
        out["gpus"] = [dict(zip(("name", "driver_version", "memory_total", "pci_bus_id"), g))
                       for g in gpus]
        out["driver_version"] = gpus[0][1] if gpus and len(gpus[0]) > 1 else None
        head = subprocess.run([exe], capture_output=True, text=True, timeout=20).stdout
        m = re.search(r"CUDA Version:\s*([0-9.]+)", head)
        out["cuda_version"] = m.group(1) if m else None
    except (OSError, subprocess.SubprocessError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def device_section(s: dict[str, Any], log: Log) -> dict[str, Any]:
    """The device, its memory, driver, versions, and its bandwidth (data sheet, measured)."""
    import jax
    import jax.numpy as jnp

    dev = jax.devices()[0]
    try:
        mem = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend has them
        mem = {}
    out: dict[str, Any] = {
        "kind": dev.device_kind, "platform": dev.platform,
        "local_devices": jax.local_device_count(),
        "memory_bytes_limit": mem.get("bytes_limit"),
        "plugins": {k: v for k in ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin",
                                   "jax-cuda13-pjrt", "jax-rocm-plugin", "libtpu")
                    if (v := _dist_version(k))},
        "nvidia_smi": nvidia_smi(),
        "peak_bandwidth": peak_bandwidth(dev.device_kind),
    }
    smi = out["nvidia_smi"] or {}
    out["driver_version"], out["cuda_version"] = smi.get("driver_version"), smi.get("cuda_version")
    # measured: x * 2 over copy_bytes (one read, one write per element)
    try:
        n = s["copy_bytes"] // 4
        x = jnp.ones((n,), jnp.float32)
        f, _ = benchlib.compile_jitted(jax.jit(lambda v: v * 2.0), x)
        t = benchlib.median_time(f, x, repeats=7, warmup=2)
        out["measured_copy"] = {"bytes": 2 * 4 * n, "median_s": t.median_s,
                                "bytes_per_s": 2 * 4 * n / t.median_s}
        del x
    except Exception as e:  # noqa: BLE001
        out["measured_copy"] = {"error": f"{type(e).__name__}: {e}", "bytes_per_s": None}
    pk = out["peak_bandwidth"]["bytes_per_s"]
    log(f"device: {dev.device_kind} x {out['local_devices']}; driver {out['driver_version']}; "
        f"peak bandwidth {benchlib.human(pk)}B/s, measured copy "
        f"{benchlib.human(out['measured_copy'].get('bytes_per_s'))}B/s")
    return out


def env_cases(s: dict[str, Any], only: list[str] | None = None
              ) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, env_id, env_kwargs)`` of the environments (``only`` these of ``ENVS``)
    at this mode's sizes."""
    out = []
    for label, (env_id, kw) in ENVS.items():
        if only is not None and label not in only:
            continue
        kw = dict(kw)
        if env_id == "Maze-v0":
            kw["size"] = s["maze_size"]
            label = f"Maze {s['maze_size']}x{s['maze_size']}"
        out.append((label, env_id, kw))
    return out


def replicated_section(s: dict[str, Any], timeout_s: float, log: Log) -> dict[str, Any]:
    cases = [dict(label=label, env_id=env_id, env_kwargs=kw, **s["replicated"])
             for label, env_id, kw in env_cases(s, s["child_envs"])]
    if timeout_s < MIN_CHILD_S:
        log(f"[replicated] skipped: {max(timeout_s, 0):.0f} s of budget left for it")
        return {"skipped": f"budget: {max(timeout_s, 0):.0f} s left for it"}
    log(f"[replicated] every local device, {len(cases)} cases (child process)")
    # forced host devices matter only where the default backend is the CPU
    out = run_child({"task": "replicated", "cases": cases, "seed": s["seed"]},
                    [f"{FORCE_FLAG}=2"], timeout_s, log)
    if "error" in out:
        log(f"  replicated ERROR {out['error']}")
        return out
    ok = [c for c in out["cases"] if "error" not in c]
    out["identical"] = bool(ok) and len(ok) == len(out["cases"]) and all(
        c["identical"] for c in ok)
    out["trivial"] = out["devices"] == 1
    out["note"] = ("one local device: a single copy of Q, bit-identical trivially"
                   if out["trivial"] else
                   f"{out['devices']} local devices, each holding a full copy of Q")
    return out


def determinism_section(s: dict[str, Any], budget_s: float, tables_dir: Path,
                        log: Log) -> dict[str, Any]:
    """plain, flag, plain, flag: four children, then the tables compared in the parent."""
    cases = [dict(label=label, env_id=env_id, env_kwargs=kw, **s["determinism"])
             for label, env_id, kw in env_cases(s, s["child_envs"])]
    order = [("plain", "a", []), ("flag", "a", [DET_FLAG]), ("plain", "b", []),
             ("flag", "b", [DET_FLAG])]
    out: dict[str, Any] = {"flag": DET_FLAG, "order": [f"{k}-{r}" for k, r, _ in order],
                           "cases": [{k: v for k, v in c.items()} for c in cases],
                           "runs": {}}
    log(f"[determinism] {len(order)} child processes, alternating {DET_FLAG} and none")
    t_end = time.perf_counter() + budget_s
    for i, (kind, rep, flags) in enumerate(order):
        tag = f"{kind}-{rep}"
        left = t_end - time.perf_counter()
        timeout = min(s["child_timeout_s"], left)
        if timeout < MIN_CHILD_S:
            out["runs"][tag] = {"error": f"skipped: budget ({max(left, 0):.0f} s left)"}
            log(f"  {tag} {out['runs'][tag]['error']}")
            continue
        spec = {"task": "determinism", "cases": cases, "seed": s["seed"], "tag": tag,
                "tables_dir": str(tables_dir)}
        out["runs"][tag] = run_child(spec, flags, timeout, log)
        if "error" in out["runs"][tag]:
            log(f"  {tag} ERROR {out['runs'][tag]['error']}")
    out["comparisons"] = []
    for ci, case in enumerate(cases):
        per: dict[str, Any] = {"label": case["label"]}
        q: dict[str, np.ndarray] = {}
        for tag, run in out["runs"].items():
            rec = run.get("cases", [{}] * len(cases))[ci] if "cases" in run else {}
            if rec.get("table_file") and Path(rec["table_file"]).exists():
                q[tag] = np.load(rec["table_file"])
                rec["table_file"] = Path(rec["table_file"]).name  # the temp dir goes away
        for name, (x, y) in {"plain": ("plain-a", "plain-b"), "flag": ("flag-a", "flag-b"),
                             "flag_vs_plain": ("flag-a", "plain-a")}.items():
            per[name] = compare_tables(q[x], q[y]) if x in q and y in q else None
        rates = {k: [out["runs"][t]["cases"][ci]["steps_per_s"] for t in out["runs"]
                     if t.startswith(k) and "error" not in out["runs"][t]
                     and "error" not in out["runs"][t]["cases"][ci]]
                 for k in ("plain", "flag")}
        per["steps_per_s"] = {k: (statistics.median(v) if v else None) for k, v in rates.items()}
        p, f = per["steps_per_s"]["plain"], per["steps_per_s"]["flag"]
        per["flag_speed_ratio"] = f / p if p and f else None
        out["comparisons"].append(per)
        ratio = per["flag_speed_ratio"]
        log(f"  {case['label']}: plain pair {_same(per['plain'])}, flag pair "
            f"{_same(per['flag'])}, flag/plain steps/s "
            + ("–" if ratio is None else f"{ratio:.3f}"))
    return out


def _same(c: dict[str, Any] | None) -> str:
    if c is None:
        return "n/a"
    return "bit-identical" if c["identical"] else f"DIFFER in {c['differing_cells']} cells"


def measure_point(env_id: str, kw: dict[str, Any], n: int, iters: int, s: dict[str, Any],
                  bw: dict[str, float | None]) -> dict[str, Any]:
    """One N: compile, size the calls per timed run, time ``repeats`` runs, bytes/step."""
    hi = max(1, INT32_MAX // n)
    t0 = time.perf_counter()
    cc = Chunk(make_config(env_id, kw, n, iters, seed=s["seed"]))
    compiles = [cc.compile_s]
    t = time.perf_counter()
    cc()  # warm-up
    dt = time.perf_counter() - t
    better = _pow2_floor(iters * s["target_s"] / max(dt, 1e-9), hi=hi)
    if dt > 2 * s["target_s"] and better < iters:  # far too long a chunk: once, shorter
        iters = better
        cc = Chunk(make_config(env_id, kw, n, iters, seed=s["seed"]))
        compiles.append(cc.compile_s)
        t = time.perf_counter()
        cc()
        dt = time.perf_counter() - t
    calls = int(min(s["max_calls"], max(1, round(s["target_s"] / max(dt, 1e-9)))))
    times = []
    for _ in range(s["repeats"]):
        t = time.perf_counter()
        for _ in range(calls):
            cc()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    rate = n * iters * calls / med
    t = time.perf_counter()
    b, source = cc.step_bytes()
    bytes_s = time.perf_counter() - t
    per_step = b / n if b is not None else None
    rec = {"num_envs": n, "chunk_iters": iters, "calls": calls, "repeats": s["repeats"],
           "times_s": times, "median_s": med, "steps_per_s": rate,
           "compile_s": compiles[-1], "compiles": len(compiles), "bytes_compile_s": bytes_s,
           "bytes_accessed": b, "bytes_source": source, "bytes_per_env_step": per_step,
           "point_s": time.perf_counter() - t0}
    for name, v in bw.items():
        roof = v / per_step if v and per_step else None
        rec[f"roofline_{name}"] = roof
        rec[f"fraction_{name}"] = rate / roof if roof else None
    del cc
    return rec


def new_series(label: str, env_id: str, kw: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, "env_id": env_id, "env_kwargs": kw, "planned": list(s["sizes"]),
            "records": [], "stopped": None}


def grow(series: dict[str, Any], deadline: float, save: Callable[[], None], log: Log, *,
         rate: float, need: Callable[[int, float, int | None, float | None], float],
         measure: Callable[[int, float, int | None], dict[str, Any]],
         overhead: Callable[[dict[str, Any]], float],
         describe: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Measure ``series["planned"]`` N in order (``series["records"]``, filled in place)
    while the next point's predicted seconds fit before ``deadline``
    (``time.perf_counter()`` seconds); ``save`` after every point, so a run killed from
    outside keeps the points it measured. ``need(n, rate, prev_n, overhead)``: the next
    point's predicted seconds from the previous point's rate (``rate`` before the first),
    N and compile overhead (None before the first: then at least ``MIN_CHILD_S`` must be
    left); ``measure(n, rate, prev_n)``: the record (its ``steps_per_s`` sizes the next
    point); an error ends the series, kept as a record."""
    prev_n: int | None = None
    over: float | None = None
    for n in series["planned"]:
        left = deadline - time.perf_counter()
        need_s = need(n, rate, prev_n, over)
        if left < max(need_s, MIN_CHILD_S if over is None else 0.0):
            series["stopped"] = (f"budget: N = {n:,} needs ~{need_s:.0f} s, "
                                 f"{max(left, 0):.0f} s left")
            log(f"  stop before N={n:,}: {series['stopped']}")
            break
        try:
            rec = measure(n, rate, prev_n)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: keep what we have
            series["records"].append({"num_envs": n, "error": f"{type(e).__name__}: {e}"})
            series["stopped"] = f"error at N = {n:,}"
            log(f"  N={n:<9,} ERROR {type(e).__name__}: {e}")
            save()
            break
        series["records"].append(rec)
        rate, prev_n, over = rec["steps_per_s"], n, overhead(rec)
        log(describe(rec))
        save()
    else:
        series["stopped"] = "done: every planned N"
    return series


def sweep(series: dict[str, Any], s: dict[str, Any], bw: dict[str, float | None],
          deadline: float, save: Callable[[], None], log: Log) -> dict[str, Any]:
    """Tabular throughput vs N for one env (``series``, filled in place; ``grow``): a
    point's chunk is sized from the previous N's rate for ``target_s``, its need is 1.5x
    the previous compile and byte counting plus warm-up and ``repeats`` timed chunks."""
    env_id, kw = series["env_id"], series["env_kwargs"]
    log(f"[throughput] {series['label']}")

    def need(n: int, rate: float, prev_n: int | None, over: float | None) -> float:
        chunk_s = max(s["target_s"], n / rate)  # at least one step per chunk
        return (over or 0.0) * 1.5 + (3 + s["repeats"]) * chunk_s

    def measure(n: int, rate: float, prev_n: int | None) -> dict[str, Any]:
        iters = _pow2_floor(rate * s["target_s"] / n, hi=max(1, INT32_MAX // n))
        return measure_point(env_id, kw, n, iters, s, bw)

    def describe(rec: dict[str, Any]) -> str:
        fr = rec.get("fraction_peak")
        return (f"  N={rec['num_envs']:<9,} {benchlib.human(rec['steps_per_s']):>7} steps/s "
                f"(chunk {rec['chunk_iters']} x {rec['calls']}, compile "
                f"{rec['compile_s']:.2f} s), {benchlib.human(rec['bytes_per_env_step'])} "
                "B/step" + (f", {100 * fr:.1f}% of the peak roofline" if fr else ""))

    return grow(series, deadline, save, log, rate=s["rate_guess"], need=need,
                measure=measure, describe=describe,
                overhead=lambda r: r["compile_s"] * r["compiles"] + r["bytes_compile_s"])


# ---- PQN (issue 11) -------------------------------------------------------------------
def pqn_point(env_id: str, num_envs: int, env_steps: int, repeats: int,
              seed: int) -> dict[str, Any]:
    """Env steps/s of one seed's PQN training on ``env_id`` at N = ``num_envs``, the
    library's mlp defaults for the env otherwise, no evaluation to speak of (one 1-step
    episode), ``env_steps`` per call (rounded up to whole updates):
    ``function_approx.throughput_point`` itself (one ``jax.jit(make_train_deep(config))``
    compiled ahead of time, the median of ``repeats`` timed calls)."""
    t0 = time.perf_counter()
    rec = function_approx.throughput_point("pqn", num_envs, env_steps, {}, repeats, seed,
                                           env_id=env_id)
    rec.update(env_id=env_id, point_s=time.perf_counter() - t0)
    return rec


def _pqn_call(n: int, rate: float, prev_n: int | None, rollout_len: int,
              target_s: float) -> tuple[int, float]:
    """A PQN point's env steps per call (whole updates of N x rollout_len, at least two)
    for about ``target_s`` at the rate guessed from the previous N's (grown by sqrt(N
    ratio): batching helps, rarely linearly), and that call's predicted seconds."""
    guess = rate * math.sqrt(n / prev_n) if prev_n else rate
    per_update = n * rollout_len
    steps = max(2, math.ceil(guess * target_s / per_update)) * per_update
    return steps, steps / guess


def deep_sweep(series: dict[str, Any], d: dict[str, Any], seed: int, deadline: float,
               save: Callable[[], None], log: Log) -> dict[str, Any]:
    """PQN throughput vs N for one env (``series``, filled in place; ``grow``): a point's
    need is 1.2x the previous compile (``compile_guess_s`` before the first; a PQN
    program's compile should hardly depend on N: its shapes change, not its ops) plus
    one call more than ``repeats`` (the rate guess may be high)."""
    env_id, rollout = series["env_id"], series["settings"]["rollout_len"]
    log(f"[pqn throughput] {env_id}")

    def need(n: int, rate: float, prev_n: int | None, over: float | None) -> float:
        call_s = _pqn_call(n, rate, prev_n, rollout, d["target_s"])[1]
        return (d["compile_guess_s"] if over is None else over) * 1.2 + (
            1 + d["repeats"]) * call_s

    def measure(n: int, rate: float, prev_n: int | None) -> dict[str, Any]:
        steps = _pqn_call(n, rate, prev_n, rollout, d["target_s"])[0]
        return pqn_point(env_id, n, steps, d["repeats"], seed)

    def describe(rec: dict[str, Any]) -> str:
        return (f"  N={rec['num_envs']:<7,} {benchlib.human(rec['steps_per_s']):>7} env "
                f"steps/s with learning ({rec['env_steps']:,} steps in "
                f"{rec['median_s']:.2f} s; compile {rec['compile_s']:.1f} s)")

    return grow(series, deadline, save, log, rate=d["rate_guess"], need=need,
                measure=measure, describe=describe, overhead=lambda r: r["compile_s"])


def predict_curve(series: dict[str, Any], d: dict[str, Any], config: Any
                  ) -> list[dict[str, Any]]:
    """The predicted seconds of the curve's child for each of ``curve_seeds``, from the
    measured points of ``series`` (the curve env's throughput): see the module docstring
    (5b). Empty where no point was measured."""
    pts = sorted((r for r in series["records"] if "error" not in r),
                 key=lambda r: r["num_envs"])
    if not pts:
        return []
    plan = config.plan()
    compile_s = d["compile_factor"] * max(r["compile_s"] for r in pts)
    out = []
    for seeds in d["curve_seeds"]:
        n_eff = seeds * config.num_envs
        # the rate at the largest measured N <= the seeds' batch (the first point if none)
        ref = ([r for r in pts if r["num_envs"] <= n_eff] or pts[:1])[-1]
        rate = ref["steps_per_s"]
        run_s = seeds * plan["env_steps"] / rate
        eval_s = plan["num_chunks"] * config.eval_max_steps * ref["num_envs"] / rate
        total = d["curve_margin"] * (d["child_start_s"] + compile_s + run_s + eval_s)
        out.append({"seeds": seeds, "batch_envs": n_eff, "rate_at_num_envs": ref["num_envs"],
                    "steps_per_s": rate, "compile_s": compile_s, "run_s": run_s,
                    "eval_s": eval_s, "total_s": total})
    return out


def curve_section(series: dict[str, Any], d: dict[str, Any], seed: int, deadline: float,
                  log: Log) -> dict[str, Any]:
    """The Breakout learning curve (module docstring, 5b): the most seeds predicted to fit
    before ``deadline``, in a child process that cannot outlive it."""
    overrides = dict(d["curve_overrides"])
    config = function_approx.make_config(CURVE_ENV, "pqn", overrides, seed)
    plan = config.plan()
    out: dict[str, Any] = {"env_id": CURVE_ENV, "overrides": overrides,
                           "env_steps": plan["env_steps"], "num_chunks": plan["num_chunks"],
                           "eval_episodes": config.eval_episodes, "num_envs": config.num_envs}
    out["candidates"] = predict_curve(series, d, config)
    left = deadline - time.perf_counter()
    out["left_s"] = max(left, 0.0)
    log(f"[pqn curve] {CURVE_ENV}: {plan['env_steps']:,} env steps per seed, "
        f"{max(left, 0):.0f} s left")
    if not out["candidates"]:
        out["skipped"] = f"no {CURVE_ENV} throughput measured to predict its time from"
    else:
        fits = [c for c in out["candidates"] if c["total_s"] <= left]
        if not fits:
            least = out["candidates"][-1]
            out["skipped"] = (f"budget: {least['seeds']} seeds predicted ~"
                              f"{least['total_s']:.0f} s, {max(left, 0):.0f} s left")
        else:
            out["prediction"] = fits[0]
    if "skipped" in out:
        log(f"  skipped: {out['skipped']}")
        return out
    seeds = out["prediction"]["seeds"]
    out["seeds"] = seeds
    log(f"  {seeds} seeds, predicted ~{out['prediction']['total_s']:.0f} s (child process)")
    res = run_child({"task": "pqn_curve", "key": f"{CURVE_ENV}/pqn", "seeds": seeds,
                     "overrides": overrides, "seed": seed}, [], left, log)
    out["wall_s"] = res.get("wall_s")
    if "error" in res:
        out["error"] = res["error"]
        log(f"  ERROR {res['error']}")
    else:
        out["record"] = res["record"]
    return out


def deep_section(out: dict[str, Any], s: dict[str, Any], deadline: float,
                 save: Callable[[], None], log: Log) -> dict[str, Any]:
    """PQN throughput vs N (CartPole, then Breakout, each its share of what is left) and
    the Breakout curve in the rest, all before ``deadline``; ``out`` filled in place."""
    d, seed = s["deep"], s["seed"]
    for env_id, (sizes_key, share_key) in DEEP_ENVS.items():
        config = function_approx.make_config(env_id, "pqn", {}, seed)
        series = {"label": env_id, "env_id": env_id, "planned": list(d[sizes_key]),
                  "default_num_envs": config.num_envs,
                  "settings": {k: getattr(config, k) for k in DEEP_SETTINGS},
                  "records": [], "stopped": None}
        out["throughput"].append(series)  # filled in place: every save() has the points
        share = d[share_key] * (deadline - time.perf_counter())
        deep_sweep(series, d, seed, time.perf_counter() + share, save, log)
        save()
    curve_series = next(sr for sr in out["throughput"] if sr["env_id"] == CURVE_ENV)
    out["curve"] = curve_section(curve_series, d, seed, deadline, log)
    save()
    return out


def run_benchmark(args: argparse.Namespace, log: Log = print) -> dict[str, Any]:
    mode = "quick" if args.quick else "default"
    s = dict(MODES[mode], seed=args.seed)
    if args.max_envs is not None:
        s["sizes"] = [n for n in s["sizes"] if n <= args.max_envs] or [args.max_envs]
    budget = Budget(args.budget_s if args.budget_s is not None else s["budget_s"])
    s["budget_s"] = budget.total_s
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/accelerator.py"] + (sys.argv[1:] if argv is None
                                                      else list(argv))
    info = benchlib.system_info()
    results: dict[str, Any] = {
        "experiment": EXPERIMENT, "schema_version": SCHEMA_VERSION, "info": info,
        "device": info["device"]["description"], "jax": info["versions"].get("jax"),
        "jaxlib": info["versions"].get("jaxlib"),
        "config": {"quick": bool(args.quick), "mode": mode, **s, "command": shlex.join(cmd)},
        "complete": False, "accelerator": None, "replicated": None, "determinism": None,
        "throughput": [], "deep": None, "elapsed_s": 0.0,
    }
    root = Path(args.out)

    def save() -> None:
        results["elapsed_s"] = budget.elapsed()
        benchlib.write_results(benchlib.finite_json(results), EXPERIMENT, root)

    log(f"accelerator: {info['device']['description']}; budget {budget.total_s:.0f} s")
    if info["device"]["backend"] == "cpu":  # the first chunk's length: a CPU is slower
        s["rate_guess"] = min(s["rate_guess"], 1e7)
    results["accelerator"] = device_section(s, log)
    save()
    # child processes: at most children_share of the budget
    children_end = time.perf_counter() + s["children_share"] * budget.left()
    results["replicated"] = replicated_section(
        s, min(s["child_timeout_s"], children_end - time.perf_counter()), log)
    save()
    tables_dir = Path(tempfile.mkdtemp(prefix="jaxq-accelerator-tables-"))
    try:
        results["determinism"] = determinism_section(
            s, children_end - time.perf_counter(), tables_dir, log)
    finally:
        shutil.rmtree(tables_dir, ignore_errors=True)
    save()
    bw = {"peak": results["accelerator"]["peak_bandwidth"]["bytes_per_s"],
          "measured": results["accelerator"]["measured_copy"].get("bytes_per_s")}
    cases = env_cases(s)
    # the tabular sweeps: at most tabular_share of what is left; the PQN section the rest
    tabular_end = time.perf_counter() + s["tabular_share"] * (budget.left() - RESERVE_S)
    for i, (label, env_id, kw) in enumerate(cases):
        # this env's share: an equal part of what is left (the first's unused time rolls on)
        share = (tabular_end - time.perf_counter()) / (len(cases) - i)
        series = new_series(label, env_id, kw, s)
        results["throughput"].append(series)  # filled in place: every save() has the points
        sweep(series, s, bw, time.perf_counter() + share, save, log)
        save()
    results["deep"] = {"throughput": [], "curve": None}
    deep_section(results["deep"], s, time.perf_counter() + budget.left() - RESERVE_S, save,
                 log)
    results["complete"] = True
    results["elapsed_s"] = budget.elapsed()
    return benchlib.finite_json(results)


# =======================================================================================
# BENCHMARKS.md
# =======================================================================================
def _bps(x: float | None) -> str:
    return "–" if x is None else f"{benchlib.human(x)}B/s"


def _bytes(x: float | None) -> str:
    return "–" if not x else f"{x:.1f}" if x < 1000 else benchlib.human(x)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2g}%"


def _bits(c: dict[str, Any] | None) -> str:
    if c is None:
        return "–"
    if c["identical"]:
        return "yes"
    return f"**no** ({c['differing_cells']} cells, max diff {c['max_abs_diff']:.3g})"


def _settings(st: dict[str, Any]) -> str:
    return (f"rollout {st['rollout_len']}, {st['num_epochs']} epochs x "
            f"{st['num_minibatches']} minibatches, MLP {st['depth']} x {st['width']}, lr "
            f"{st['lr']:g} {st['lr_schedule']}, lambda {st['q_lambda']:g}, reward scale "
            f"{st['reward_scale']:g}")


def render_deep(deep: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The PQN part of the section (schema 2; a schema-1 file has none)."""
    d = cfg.get("deep") or {}
    lines = [
        f"**PQN throughput** (neural Q-function, issue 11): env steps/s including the "
        f"learning, one seed, no evaluation (one 1-step episode); one call of "
        f"`jax.jit(make_train_deep(config))` compiled ahead of time, the median of "
        f"{d.get('repeats', '?')} calls of ~{d.get('target_s', '?')} s, compile apart "
        f"(`function_approx.throughput_point`). The library's mlp defaults for "
        "each env otherwise: "
        + "; ".join(f"{sr['env_id']}: {_settings(sr['settings'])} (default N "
                    f"{sr['default_num_envs']})" for sr in deep["throughput"]) + ".", ""]
    rows = []
    for sr in deep["throughput"]:
        for r in sr["records"]:
            if "error" in r:
                rows.append([sr["env_id"], f"{r['num_envs']:,}", f"error: {r['error'][:60]}"]
                            + ["–"] * 3)
                continue
            rows.append([sr["env_id"], f"{r['num_envs']:,}", benchlib.human(r["steps_per_s"]),
                         f"{r['env_steps']:,}", benchlib.seconds(r["median_s"]),
                         benchlib.seconds(r["compile_s"])])
    if rows:
        lines += [benchlib.table(["env", "N", "env steps/s", "env steps per call",
                                 "median call (s)", "compile (s)"], rows,
                                ["l", "r", "r", "r", "r", "r"]), ""]
    lines += [f"- {sr['env_id']}: {sr.get('stopped') or 'not finished'}."
              for sr in deep["throughput"]]
    lines.append("")
    cv = deep.get("curve")
    if cv is None:
        return lines
    what = (f"**{cv['env_id']} learning curve** (PQN at the library's defaults"
            + (f" with {', '.join(f'{k}={v}' for k, v in cv['overrides'].items())}"
               if cv["overrides"] else "")
            + f": {cv['env_steps']:,} env steps per seed in {cv['num_chunks']} chunks, "
            f"{cv['num_envs']} envs, {cv['eval_episodes']} greedy episodes per chunk)")
    pred = cv.get("prediction")
    pred_txt = ("" if pred is None else
                f"predicted ~{pred['total_s']:.0f} s from the measured rate at N = "
                f"{pred['rate_at_num_envs']:,} ({benchlib.human(pred['steps_per_s'])} env "
                f"steps/s; {pred['seeds']} seeds batch {pred['batch_envs']:,} envs)")
    if "skipped" in cv:
        lines += [f"{what}: not run ({cv['skipped']}).", ""]
        return lines
    if "error" in cv:
        lines += [f"{what}: {cv['seeds']} seeds, {pred_txt}; **failed**: "
                  f"{cv['error'][:300]}.", ""]
        return lines
    r = cv["record"]
    sp = r["spread"]
    lines += [f"{what}: {r['seeds']} seeds vmapped in one call (`function_approx.run_curve`, "
              f"in a child process), {benchlib.seconds(r['compile_s'])} s compile + "
              f"{benchlib.seconds(r['run_s'])} s run ({benchlib.human(r['steps_per_s'])} env "
              f"steps/s summed over the seeds, evaluations included); {pred_txt}, the child "
              f"took {benchlib.seconds(cv['wall_s'])} s. Greedy return per chunk (mean of the "
              "episodes per seed; median [min, max] over seeds); seconds from the call's "
              "start, compile first, the run spread evenly over the chunks:", ""]
    rows = [[f"{x:,}", benchlib.seconds(r["compile_s"] + t), f"{m:.1f}", f"[{lo:.1f}, {hi:.1f}]"]
            for x, t, m, lo, hi in zip(r["env_steps"], r["seconds"], sp["median"], sp["min"],
                                       sp["max"])]
    lines += [benchlib.table(["env steps (per seed)", "seconds", "greedy return (median)",
                              "[min, max]"], rows, ["r", "r", "r", "r"]), ""]
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The ``accelerator`` section, from the results dict alone (deterministic)."""
    info, cfg, acc = results["info"], results["config"], results["accelerator"] or {}
    lines = [benchlib.heading("Accelerator: throughput to 2^24 envs, bandwidth, replicas, "
                              "determinism" + (", PQN" if results.get("deep") else ""),
                              info), ""]
    if cfg.get("quick"):
        lines += ["> `--quick` run on tiny sizes: a smoke test, not a measurement.", ""]
    if not results.get("complete"):
        lines += ["> **Incomplete run** (stopped from outside): the parts below are what it "
                  "measured before it stopped.", ""]
    pk, meas = acc.get("peak_bandwidth", {}), acc.get("measured_copy", {})
    lines.append(
        f"Device: {acc.get('kind', '?')} x {acc.get('local_devices', '?')}"
        + (f", {benchlib.human(acc['memory_bytes_limit'])}B usable" if acc.get(
            "memory_bytes_limit") else "")
        + f"; driver {acc.get('driver_version') or '–'}, CUDA {acc.get('cuda_version') or '–'}"
        + (f"; {', '.join(f'{k} {v}' for k, v in acc['plugins'].items())}"
           if acc.get("plugins") else "")
        + f". Memory bandwidth: peak {_bps(pk.get('bytes_per_s'))}"
        + (f" ({pk['source']})" if pk.get("source") else " (device kind not in the table)")
        + f", measured {_bps(meas.get('bytes_per_s'))} (jitted `x * 2` over "
        f"{benchlib.human(meas.get('bytes', 0) / 2)}B, read + write).")
    lines.append("")
    lines.append(
        f"**Throughput** (Q-learning, gamma 0.99, lr 0.1, epsilon 0.1, one device; "
        f"`learner.chunk` compiled ahead of time as `jaxq.train` runs it; median of "
        f"{cfg['repeats']} timed runs of ~{cfg['target_s']} s, compile apart). *Bytes/step*: "
        "XLA's `cost_analysis()` bytes accessed by one compiled batched step / N. "
        "*Roofline*: bandwidth / bytes per step, the steps/s at which the device would only "
        "move those bytes; *of peak* / *of measured*: our steps/s as a fraction of the "
        "roofline at the peak and at the measured bandwidth (over 100% where the bytes XLA "
        "counts stay in cache: small N, small tables).")
    lines.append("")
    rows = []
    for sr in results.get("throughput") or []:
        for r in sr["records"]:
            if "error" in r:
                rows.append([sr["label"], f"{r['num_envs']:,}", f"error: {r['error'][:60]}"]
                            + ["–"] * 6)
                continue
            rows.append([sr["label"], f"{r['num_envs']:,}", benchlib.human(r["steps_per_s"]),
                         f"{r['chunk_iters']:,} x {r['calls']}", f"{r['compile_s']:.2f}",
                         _bytes(r["bytes_per_env_step"]),
                         benchlib.human(r.get("roofline_peak")), _pct(r.get("fraction_peak")),
                         _pct(r.get("fraction_measured"))])
    if rows:
        lines.append(benchlib.table(
            ["env", "N", "env steps/s", "chunk x calls", "compile (s)", "bytes/step",
             "roofline (peak)", "of peak", "of measured"], rows,
            ["l", "r", "r", "r", "r", "r", "r", "r", "r"]))
        lines.append("")
    for sr in results.get("throughput") or []:
        src = {r.get("bytes_source") for r in sr["records"] if "error" not in r}
        note = ("" if src <= {"step"} else
                " (bytes from the whole chunk: its loop body once plus per-chunk work)")
        lines.append(f"- {sr['label']}: {sr.get('stopped') or 'not finished'}{note}.")
    if results.get("throughput"):
        lines.append("")
    rep = results.get("replicated")
    if rep:
        if "error" in rep or "skipped" in rep:
            lines.append(f"**Replicas**: not checked ({rep.get('error') or rep.get('skipped')}).")
        else:
            parts = []
            for c in rep["cases"]:
                if "error" in c:
                    parts.append(f"{c['label']}: error {c['error'][:80]}")
                else:
                    parts.append(f"{c['label']} (N = {c['num_envs']:,}, {c['chunks']} chunks of "
                                 f"{c['chunk_iters']}): {c['copies']} copies, "
                                 + ("bit-identical" if c["identical"] else "**differ**"))
            lines.append(
                f"**Replicas** (`strategy=\"replicated\"`, `num_devices={rep['devices']}`, "
                f"{rep.get('backend', '?')}): {rep['note']}; the carry's addressable shards "
                "compared byte for byte. " + "; ".join(parts) + ".")
        lines.append("")
    det = results.get("determinism")
    if det:
        c0 = det["cases"][0] if det.get("cases") else {}
        lines.append(
            f"**Determinism**: the same config run in four child processes "
            f"({', '.join(det['order'])}; flag = `XLA_FLAGS={det['flag']}`), N = "
            f"{c0.get('num_envs', 0):,}, {c0.get('chunks', '?')} chunks of "
            f"{c0.get('chunk_iters', '?')} steps; final tables compared bit for bit; steps/s "
            "the median chunk (the first excluded), median of the two runs.")
        lines.append("")
        rows = []
        for cmp_ in det.get("comparisons", []):
            sp = cmp_["steps_per_s"]
            ratio = cmp_.get("flag_speed_ratio")
            rows.append([cmp_["label"], _bits(cmp_["plain"]), _bits(cmp_["flag"]),
                         _bits(cmp_["flag_vs_plain"]), benchlib.human(sp["plain"]),
                         benchlib.human(sp["flag"]),
                         "–" if ratio is None else f"{ratio:.3f}x"])
        if rows:
            lines.append(benchlib.table(
                ["env", "plain pair identical", "flag pair identical", "flag = plain",
                 "plain steps/s", "flag steps/s", "flag cost (speed ratio)"], rows,
                ["l", "l", "l", "l", "r", "r", "r"]))
            lines.append("")
        errs = [f"{k}: {v['error'][:120]}" for k, v in det.get("runs", {}).items()
                if "error" in v]
        if errs:
            lines += ["Child runs that failed: " + "; ".join(errs) + ".", ""]
    if results.get("deep"):
        lines += render_deep(results["deep"], cfg)
    lines.append(benchlib.run_line(
        results, EXPERIMENT, on=f"{benchlib.device_line(info)} ({benchlib.machine_line(info)})",
        elapsed_extra=f" of a {cfg['budget_s']:.0f} s budget"))
    return "\n".join(lines)


# =======================================================================================
# command line
# =======================================================================================
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="experiments/accelerator.py",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CPU-sized smoke run (N = 16, 64; a 32x32 maze); writes into a temp "
                        "dir unless --out")
    p.add_argument("--full", action="store_true", help="accepted for the runner (= default)")
    p.add_argument("--out", type=Path, default=None,
                   help="root for results/ and BENCHMARKS.md (default: experiments/)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="hard overall budget in seconds (default 480; --quick 240): N stops "
                        "growing when the next point would not fit, the Breakout curve runs "
                        "only where it is predicted to fit")
    p.add_argument("--max-envs", type=int, default=None,
                   help="largest N of the tabular throughput sweeps (default 2^24; --quick "
                        "64); the PQN sizes are fixed (CartPole 2^6 ... 2^16, Breakout 128 "
                        "and 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown-only", action="store_true",
                   help="re-render the BENCHMARKS.md section from results.json")
    p.add_argument("--no-markdown", action="store_true", help="write no BENCHMARKS.md section")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budget_s is not None and not (math.isfinite(args.budget_s) and args.budget_s > 0):
        p.error(f"--budget-s must be a positive number of seconds, got {args.budget_s:g}")
    if args.max_envs is not None and args.max_envs < 1:
        p.error(f"--max-envs must be >= 1, got {args.max_envs}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        p.error(f"--out must be a directory, got the file {args.out}")
    if args.markdown_only and args.no_markdown:
        p.error("--markdown-only and --no-markdown contradict each other")
    return args


def main(argv: list[str] | None = None, log: Log = print) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker is not None:  # a child process of this script
        print(RESULT_TAG + json.dumps(benchlib.finite_json(worker_main(json.loads(args.worker)))),
              flush=True)
        return {}
    args.argv = argv
    if args.out is None:  # the root now, so the incremental writes go where the last does
        args.out = (Path(tempfile.mkdtemp(prefix="jaxq-accelerator-quick-"))
                    if args.quick and not args.markdown_only else HERE)
    return benchlib.run_experiment(args, EXPERIMENT, run_benchmark, render_markdown, log=log,
                                   home=HERE)


if __name__ == "__main__":
    main()
