"""Asynchronous Q-learning across processes and machines on Ray (``pip install jaxq[ray]``).

jaxq's mesh strategies (``strategy="replicated" | "sharded" | "async"``) are SPMD programs:
every device runs the same step in lockstep and the result is bit-reproducible. This
module is the other engine, for machines of different speeds, preemptible workers and
clusters: a parameter server and learners that never wait for each other.

* **Shards** (``num_shards`` Ray actors) each own a contiguous range of states of the
  Q-table (all actions, every estimate of Double Q) with its per-cell update counts,
  merge what learners push in arrival order, serve their rows and checkpoint atomically
  every ``checkpoint_every`` pushes.
* **Learners** (``num_learners`` Ray actors, one CPU slot each) each run jaxq's own
  compiled chunk (``jaxq.training.build_learner(config).chunk``, jitted once per learner:
  the same core as ``jaxq.train``, no second loop) on ``num_envs / num_learners``
  environments and a local copy of the table. After a chunk a learner pushes what it
  did, the cells it updated with the number of updates it applied to each and their new
  values, to the shards owning those rows, then pulls every row and per-cell count and
  continues from the merged table. With ``aggregation="mean"`` a shard sets a cell to
  the count-weighted mean of its current value and the learner's, weighing the current
  one by the updates other learners pushed there since this learner pulled (exactly the
  learner's value where there were none: chunks that did not overlap compose as one
  learner running them in turn); with ``"sum"`` changes are added in full. The counts
  are the chunk's own: the batched updates it applied to each cell (the shards hold the
  run's totals, which are also the per-cell learning rate's n under
  ``lr_schedule="visit"``).
* No barrier: ``max_staleness`` S only stops a learner from starting a chunk while it is
  more than S pushes ahead of the slowest running learner (S = 0 is lockstep).
* Faults: learners and shards are restarted by Ray (``max_restarts``); a restarted
  learner resumes at its first unacknowledged push from the current shards, a restarted
  shard from its last checkpoint, and learners replay the pushes the checkpoint missed.
  Pushes are numbered per learner and shards drop repeats, so every acknowledged push is
  applied exactly once: the result reports both counts.

Importing ``jaxq`` never imports Ray, and neither does importing this module: Ray is
imported when a run starts. Runs are not bit-reproducible (arrival order varies);
``jaxq.train`` and the mesh strategies are.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # not at import: shard and coordinator processes never load JAX
    from jaxq.config import TrainConfig
    from jaxq.ray._sweep import SweepResult

RAY_EXTRA = "pip install 'jaxq[ray]'"
# pulling every row after every chunk is meant for tables of up to this many cells
MAX_CELLS = 2**26
_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})$")

__all__ = ["train", "sweep", "RayTrainResult", "SweepResult", "check_address",
           "check_options", "check_checkpoint_dir", "ray_available", "RAY_EXTRA"]


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _require_ray():
    if not ray_available():
        raise ImportError(f"jaxq.ray needs Ray, which is not installed: {RAY_EXTRA}")
    import ray

    return ray


def check_address(address: str | None, name: str = "address") -> str | None:
    """``None`` (the running Ray instance, else a new local one), ``"local"`` (a new
    local instance), ``"auto"`` (the cluster this machine belongs to), ``HOST:PORT`` or
    ``ray://HOST:PORT``; anything else is a ValueError naming ``name``."""
    if address is None or address in ("local", "auto"):
        return address
    if not isinstance(address, str) or not _ADDRESS.match(address) or not (
            0 < int(_ADDRESS.match(address).group(3)) < 65536):
        raise ValueError(f"{name} must be 'local', 'auto', HOST:PORT or ray://HOST:PORT "
                         f"(a port in 1..65535), got {address!r}")
    return address


def _reachable(address: str, timeout: float, name: str) -> None:
    """A TCP connection to the address's host and port within ``timeout`` seconds, so an
    unreachable cluster is a clear error instead of Ray's long reconnect loop."""
    m = _ADDRESS.match(address)
    host, port = m.group(2).strip("[]"), int(m.group(3))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(f"{name} {address!r}: no Ray cluster reachable at {host}:{port} "
                              f"within {timeout:g} s ({e.strerror or e}); start one with "
                              f"`ray start --head --port {port}` or pass 'local'") from None


def check_checkpoint_dir(path: str | None, name: str = "checkpoint_dir") -> None:
    """A ValueError naming ``name`` if ``path`` already holds shard checkpoints: a shard
    resumes from the checkpoint it finds, so another run's would silently become this
    run's start, and the new learners' pushes 1, 2, ... would be dropped as repeats."""
    if path is None or not os.path.isdir(path):
        return
    old = sorted(n for n in os.listdir(path) if re.fullmatch(r"shard_\d+\.npz", n))
    if old:
        raise ValueError(f"{name} {path!r} already holds shard checkpoints of another run "
                         f"({', '.join(old)}); pass an empty or new folder")


def check_options(config: TrainConfig, num_learners: int, num_shards: int,
                  max_staleness: int, checkpoint_every: int = 10,
                  names: dict[str, str] | None = None) -> tuple[int, int, int]:
    """Every check on an asynchronous run that can be made before an actor starts; a
    ValueError names the parameter (``names`` maps parameter -> the caller's word, e.g. a
    CLI flag). Returns the table's (estimates, states, actions)."""
    from jaxq.config import TrainConfig
    from jaxq.rules import RULES
    from jaxq.training import resolve_env

    n = {"num_learners": "num_learners", "num_shards": "num_shards",
         "max_staleness": "max_staleness", "checkpoint_every": "checkpoint_every",
         **(names or {})}
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    for key, value, low in (("num_learners", num_learners, 1), ("num_shards", num_shards, 1),
                            ("max_staleness", max_staleness, 0),
                            ("checkpoint_every", checkpoint_every, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{n[key]} must be an int >= {low}, got {value!r}")
    if config.learners != "shared":
        raise ValueError("learners='independent' keeps one table per environment, which the "
                         "parameter-server shards cannot hold; use learners='shared'")
    if getattr(config, "q_function", "table") != "table":
        raise ValueError(f"q_function={config.q_function!r} has no rows by state for the shards "
                         "to own; use q_function='table'")
    if config.strategy != "single":
        raise ValueError(f"strategy {config.strategy!r} is a mesh strategy; a Ray learner runs "
                         "on one device (strategy 'single')")
    if config.num_envs % num_learners:
        raise ValueError(f"num_envs={config.num_envs} must be divisible by {n['num_learners']} "
                         f"({num_learners}): each learner runs num_envs / {n['num_learners']}")
    env, params = resolve_env(config)
    S, A = int(env.observation_space(params).n), int(env.action_space(params).n)
    T = RULES[config.algo].num_tables
    if num_shards > S:
        raise ValueError(f"{n['num_shards']} must be at most the number of states ({S}), "
                         f"got {num_shards}")
    if T * S * A > MAX_CELLS:
        raise ValueError(f"a Q-table of {T} x {S} x {A} cells is more than the shards serve "
                         f"whole after every chunk ({MAX_CELLS}); use jaxq.train with "
                         "strategy='sharded' for tables this large")
    return T, S, A


@dataclass
class RayTrainResult:
    """What ``jaxq.ray.train`` returns: the merged table, a per-chunk history like
    ``jaxq.train``'s (chunk i combines every learner's i-th chunk; the last row's
    ``q_error`` is the merged table's), timings and the run's ``ray`` report (per-learner
    throughput and observed staleness, per-shard counts, applied == acknowledged)."""

    q: np.ndarray
    metrics: dict[str, np.ndarray]
    timings: dict[str, float]
    config: TrainConfig
    ray: dict[str, Any]
    env: Any = field(repr=False, default=None)
    params: Any = field(repr=False, default=None)
    start_chunk: int = 0

    steps_run = property(lambda self: int(self.metrics["env_steps"][-1]) if self.metrics else 0)

    def summary(self) -> dict[str, Any]:
        from jaxq.training import TrainResult

        return TrainResult.summary(self)  # the same figures, the same names


def _init_ray(ray, address: str | None, num_cpus: int | None, timeout: float, name: str) -> bool:
    """Connect (or start a local instance); True when this call started it."""
    if address not in (None, "local", "auto"):
        _reachable(address, timeout, name)
    if ray.is_initialized():  # this process's instance (e.g. a test's, or the user's own)
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address in (None, "local"):
        kwargs.update(address="local", num_cpus=num_cpus)
    else:
        kwargs.update(address=address)
    try:
        with warnings.catch_warnings():  # Ray forks its daemons; the driver's JAX is idle
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            ray.init(**kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"{name} {address!r}: {e}") from None
    return True


def _combine(rows: list[dict[int, dict[str, Any]]], num_chunks: int) -> dict[str, np.ndarray]:
    """Per-chunk device figures of all learners -> one raw row per chunk: counts and sums
    added, q_error and the evaluation averaged over the learners."""
    from jaxq.metrics import StepStats

    additive = set(StepStats._fields)
    names = list(rows[0][1])
    out = {}
    for name in names:
        per = np.array([[r[i][name] for r in rows] for i in range(1, num_chunks + 1)], np.float64)
        if name in additive:
            out[name] = per.sum(1).astype(np.int64 if name in ("episodes", "successes", "td_count")
                                          else np.float64)
        else:
            out[name] = np.nanmean(per, 1) if not np.all(np.isnan(per)) else per[:, 0]
    return out


def train(config: TrainConfig, q_star=None, *, address: str | None = None,
          num_learners: int = 2, num_shards: int = 2, max_staleness: int = 4,
          checkpoint_dir: str | None = None, checkpoint_every: int = 10,
          max_restarts: int = 3, num_cpus: int | None = None, timeout: float = 15.0,
          compile_cache: str | None = None, faults: dict[str, dict[int, int]] | None = None,
          monitor: Callable[[dict[str, Any]], None] | None = None,
          before_run: Callable[[], None] | None = None,
          progress: bool = True) -> RayTrainResult:
    """Train ``config`` asynchronously with ``num_learners`` learners and ``num_shards``
    parameter-server shards on Ray (see the module docstring).

    ``config.num_envs`` and ``config.total_steps`` are the run's totals, shared equally by
    the learners (each runs ``config.num_chunks`` chunks, as ``jaxq.train`` would); learner
    i's key is ``fold_in(key(seed), i)``. ``address``: None (the running Ray instance, else
    a new local one with ``num_cpus``), ``"local"``, ``"auto"``, ``HOST:PORT`` or
    ``ray://HOST:PORT``; one that does not answer within ``timeout`` seconds is a
    ConnectionError. ``checkpoint_dir``: where shards checkpoint (every
    ``checkpoint_every`` pushes; a temporary folder if None; use shared storage on a
    cluster so a shard restarted on another node finds it). ``monitor(state)`` is called
    about every 20 ms with the acknowledged pushes and the actor handles (fault-injection
    tests kill actors from it). ``before_run`` is called once everything is validated.
    ``faults`` injects process deaths to test recovery: ``{"learner": {i: k}}`` kills
    learner i's process after its chunk k (before pushing it), ``{"shard": {p: n}}`` shard
    p's after it applied n pushes in all (before acknowledging the last).
    ``compile_cache``: a folder every learner can read (``jaxq.compile_cache``), so the
    second learner on a machine, and a restarted one, load the chunk instead of compiling.
    """
    T, S, A = check_options(config, num_learners, num_shards, max_staleness, checkpoint_every)
    check_address(address)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < -1:
        raise ValueError(f"max_restarts must be an int >= -1 (-1: unlimited), got {max_restarts!r}")
    faults = dict(faults or {})
    if set(faults) - {"learner", "shard"}:
        raise ValueError(f"faults takes 'learner' and 'shard', got {sorted(faults)}")
    check_checkpoint_dir(checkpoint_dir)
    ray = _require_ray()
    from jaxq import metrics as metrics_lib
    from jaxq.training import check_table, resolve_env
    from jaxq.vecenv import VecEnv

    from jaxq.ray import _actors

    env, params = resolve_env(config)
    if q_star is not None:
        q_star = np.asarray(check_table("q_star", q_star, S, A, masked_cells=True))
    plan = config.plan()
    K, P = num_learners, num_shards
    per_learner = config.replace(num_envs=config.num_envs // K,
                                 total_steps=plan["env_steps"] // K)
    assert per_learner.plan()["chunk_iters"] == plan["chunk_iters"]
    if address not in (None, "local", "auto"):  # before anything is written
        _reachable(address, timeout, "address")
    if before_run is not None:
        before_run()
    started = _init_ray(ray, address, num_cpus, timeout, "address")
    owned_dir = None
    if checkpoint_dir is None:
        checkpoint_dir = owned_dir = tempfile.mkdtemp(prefix="jaxq-ray-")
    os.makedirs(checkpoint_dir, exist_ok=True)
    bounds = [p * S // P for p in range(P + 1)]
    t0 = time.perf_counter()
    try:
        run_id = f"jaxq-{uuid.uuid4().hex[:12]}"
        coord = ray.remote(num_cpus=0)(_actors.Coordinator).options(
            name=f"{run_id}-coordinator").remote(K)
        shard_cls = ray.remote(num_cpus=0, max_restarts=max_restarts,
                               max_task_retries=-1)(_actors.Shard)
        shards = [shard_cls.options(name=f"{run_id}-shard-{p}").remote(
                      p, bounds[p], bounds[p + 1],
                      np.full((T, bounds[p + 1] - bounds[p], A), config.q_init, np.float32),
                      K, os.path.join(checkpoint_dir, f"shard_{p}.npz"), checkpoint_every,
                      config.aggregation, faults.get("shard", {}).get(p))
                  for p in range(P)]
        ray.get([s.pid.remote() for s in shards] + [coord.total.remote()])  # named and up
        learner_cls = ray.remote(num_cpus=1, max_restarts=max_restarts,
                                 max_task_retries=-1)(_actors.Learner)
        learners = [learner_cls.remote(i, per_learner.to_json(), K, config.seed, bounds, run_id,
                                       max_staleness, q_star, compile_cache,
                                       {"die_at_chunk": faults.get("learner", {}).get(i)})
                    for i in range(K)]
        refs = [lr.run.remote() for lr in learners]
        pending = list(refs)
        bar = None
        if progress:
            from jaxq.progress import Progress
            bar = Progress(f"{config.algo} {config.env_id} (ray: {K} learners, {P} shards)",
                           plan["num_chunks"], plan["chunk_iters"] * config.num_envs, 0)
        shown, t_shown = 0, time.perf_counter()
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending),
                                  timeout=0.02 if monitor is not None else 0.2)
            if monitor is not None or bar is not None:
                state = ray.get(coord.progress.remote())
                if monitor is not None:
                    monitor({"acked": state["acked"], "done": state["done"],
                             "learners": learners, "shards": shards, "coordinator": coord})
                low = min(state["acked"])
                if bar is not None and low > shown:
                    dt = (time.perf_counter() - t_shown) / (low - shown)
                    for c in range(shown + 1, low + 1):
                        bar.update(c, dt, state["mean_return"])
                    shown, t_shown = low, time.perf_counter()
        reports = ray.get(refs)  # raises where a learner failed past its restarts
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t0
        q = np.concatenate(ray.get([s.rows.remote() for s in shards]), axis=1)
        shard_stats = ray.get([s.stats.remote() for s in shards])
        state = ray.get(coord.state.remote())
    finally:
        if started:
            ray.shutdown()
        if owned_dir is not None:
            import shutil
            shutil.rmtree(owned_dir, ignore_errors=True)
    q_est = q[0] if T == 1 else q.mean(0)
    raw = _combine(state["rows"], plan["num_chunks"])
    history = metrics_lib.host_metrics(raw, 0, plan["chunk_iters"], config.num_envs,
                                       VecEnv(env, params, 1).has_success)
    if q_star is not None:
        history["q_error"][-1] = float(np.max(np.where(np.isfinite(q_star),
                                                       np.abs(q_est - q_star), 0.0)))
    for name in ("eval_return", "eval_success", "eval_length", "eval_finished"):
        if name in history:  # the learners evaluated their local tables, not the merged one
            history[name][-1] = np.nan
    history["episodes"] = np.cumsum(history["episodes_in_chunk"])
    acked = state["acked"]
    applied = [s["applied"] for s in shard_stats]
    exact = all(a == acked for a in applied)
    # the learners' time in their chunk loops; the rest of the wall time started actors,
    # imported JAX and compiled (or loaded) the chunk
    loop_s = max(r["run_s"] + r["wait_s"] + r["push_s"] + r["pull_s"] for r in reports)
    steps = plan["env_steps"]
    report = {
        "num_learners": K, "num_shards": P, "max_staleness": max_staleness,
        "aggregation": config.aggregation,
        "acknowledged": acked, "applied": applied, "applied_equals_acknowledged": exact,
        "restarts": state["restarts"], "learners": reports, "shards": shard_stats,
        "observed_lead_max": max(r["lead_max"] for r in reports),
        "observed_missed_max": max(r["missed_max"] for r in reports),
        "wall_s": wall,
    }
    timings = {"compile_s": wall - loop_s, "run_s": loop_s,
               "steps_per_s": steps / loop_s if loop_s > 0 else float("nan")}
    return RayTrainResult(q_est[:S].astype(np.float32), history, timings, config, report,
                          env, params)


def sweep(config: TrainConfig, grid: dict[str, Any], *, block_size: int | None = None,
          address: str | None = None, num_cpus: int | None = None, timeout: float = 15.0,
          max_retries: int = 3, cpus_per_block: float = 1.0, gpus_per_block: float = 0.0,
          compile_cache: str | None = None,
          lose_blocks: tuple[int, ...] = (), progress: bool = True) -> "SweepResult":
    """Train every point of ``grid`` (e.g. ``{"seed": [0, 1], "lr": [0.1, 0.5]}``; keys:
    ``seed`` and the ``HParams`` leaves, the last key varying fastest) as blocks of
    ``block_size`` points, each block one ``jax.jit(jax.vmap(make_train(config)))`` call in
    one Ray task (``cpus_per_block`` CPUs and ``gpus_per_block`` GPUs each), retried up to
    ``max_retries`` times if its worker is lost. Default block size: the points spread
    evenly over the cluster's CPUs. A point's run is the run one vmapped call over the
    whole grid gives it: learner i of the grid uses ``key(seed_i)``.

    Where the environment's model is exact (jaxq's tabular environments), each row has
    max|Q - Q*| and the greedy policy's value V^pi(start) against V*(start) (value
    iteration and policy evaluation with the point's gamma). ``lose_blocks`` kills the
    first attempt of those blocks (a test of the retry)."""
    import jaxq
    from jaxq.config import TrainConfig
    from jaxq.envs.base import TabularEnvironment
    from jaxq.model import greedy_policy
    from jaxq.training import resolve_env

    from jaxq.ray import _sweep

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    grid = _sweep.check_grid(grid)
    seeds, leaves = _sweep.grid_points(config, grid)
    G = len(seeds)
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)
                                   or block_size < 1):
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    check_address(address)
    env, params = resolve_env(config)
    ray = _require_ray()
    started = _init_ray(ray, address, num_cpus, timeout, "address")
    fault_dir = tempfile.mkdtemp(prefix="jaxq-sweep-") if lose_blocks else None
    t0 = time.perf_counter()
    try:
        if block_size is None:
            slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_block))
            block_size = -(-G // slots)
        starts = list(range(0, G, block_size))
        for b in lose_blocks:
            open(os.path.join(fault_dir, f"block_{b}.die"), "w").close()
        task = ray.remote(num_cpus=cpus_per_block, num_gpus=gpus_per_block,
                          max_retries=max_retries)(_sweep._remote_block)
        cfg = config.to_json()
        refs = [task.remote(cfg, seeds[s:s + block_size],
                            {f: v[s:s + block_size] for f, v in leaves.items()},
                            fault_dir, i, compile_cache) for i, s in enumerate(starts)]
        parts = ray.get(refs)
        retried = sorted(int(n.split("_")[1].split(".")[0]) for n in os.listdir(fault_dir)
                         if n.endswith(".retried")) if fault_dir else []
    finally:
        if started:
            ray.shutdown()
        if fault_dir:
            import shutil
            shutil.rmtree(fault_dir, ignore_errors=True)
    wall = time.perf_counter() - t0
    q = np.concatenate([p[0] for p in parts])
    ret = np.concatenate([p[1] for p in parts])
    exact = isinstance(env, TabularEnvironment)
    model = jaxq.tabular_model(env, params) if exact else None
    stars: dict[float, Any] = {}
    rows = []
    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    for i in range(G):
        row: dict[str, Any] = {"point": i, "block": i // block_size}
        row.update(zip(keys, points[i]))  # the values as given (not rounded to float32)
        row["final_return"] = float(ret[i])
        if exact:
            gamma = float(leaves["gamma"][i])
            if gamma not in stars:
                qs = jaxq.value_iteration(model, gamma)
                stars[gamma] = (np.asarray(qs), float(jaxq.start_value(model, qs)))
            q_star, v_star = stars[gamma]
            v = float(jaxq.policy_start_value(model, greedy_policy(q[i], model.valid), gamma))
            row.update(q_error=float(np.max(np.where(np.isfinite(q_star),
                                                     np.abs(q[i] - q_star), 0.0))),
                       greedy_value=v, optimal_value=v_star)
        else:
            row.update(q_error=None, greedy_value=None, optimal_value=None)
        rows.append(row)
    return _sweep.SweepResult(keys, rows, q, len(starts), retried, wall)


def __getattr__(name: str) -> Any:
    if name == "SweepResult":
        from jaxq.ray._sweep import SweepResult

        return SweepResult
    raise AttributeError(f"module 'jaxq.ray' has no attribute {name!r}")
