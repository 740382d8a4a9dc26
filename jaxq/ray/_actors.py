"""The three kinds of Ray actor of an asynchronous run, as plain classes (``jaxq.ray``
wraps them with ``ray.remote`` when a run starts, so this module never imports Ray).

Protocol (exactly-once pushes without a barrier):

* A learner numbers its pushes 1, 2, ... (one per chunk) and sends push ``k`` to every
  shard (an empty push where it updated none of the shard's rows), waiting for all
  acknowledgements before pushing ``k + 1``. A shard applies a push only if it is the
  next in that learner's sequence: a repeat is acknowledged as a duplicate (a restarted
  learner redoing its last chunk), a gap is answered with the shard's last sequence
  number, and the learner replays what the shard lost (a shard restarted from an older
  checkpoint) from its buffer of pushes that are not yet durable.
* Once every shard acknowledged push ``k``, the learner reports it to the coordinator
  (with that chunk's metrics): the coordinator's per-learner count is the *acknowledged*
  count, each shard's its *applied* count; at the end of a run the two must be equal.
* A push says which updates it merges with: per cell, the count of updates the learner
  saw when it pulled. What landed after that ran concurrently with its chunk, whatever
  the arrival order (``Shard``), so no ordering between learners is needed, only per
  learner.

Learners and shards survive the loss of their processes; the coordinator (small, without
JAX) and the driver do not: losing either ends the run with an error.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class Coordinator:
    """The run's bookkeeping: acknowledged pushes and their metrics per learner, which
    learners are done, and the staleness bound's reference (the slowest learner)."""

    def __init__(self, num_learners: int):
        self.acked = [0] * num_learners
        self.done = [False] * num_learners
        self.rows: list[dict[int, dict[str, Any]]] = [{} for _ in range(num_learners)]
        self.restarts = [0] * num_learners
        self.starts = [0] * num_learners
        self.pushed_total = 0  # acknowledged pushes of all learners (staleness clock)
        self.compiled = False  # learner 0 has its chunk in the compile cache

    def ack(self, learner: int, seq: int, row: dict[str, Any]) -> int:
        """Learner ``learner``'s push ``seq`` was acknowledged by every shard. Idempotent."""
        if seq == self.acked[learner] + 1:
            self.acked[learner] = seq
            self.rows[learner][seq] = row
            self.pushed_total += 1
        return self.acked[learner]

    def started(self, learner: int) -> int:
        """A learner (re)starts: returns how many of its pushes are acknowledged (where
        it resumes); every start after the first is a restart."""
        self.starts[learner] += 1
        self.restarts[learner] = self.starts[learner] - 1
        return self.acked[learner]

    def set_compiled(self) -> None:
        self.compiled = True

    def is_compiled(self) -> bool:
        return self.compiled

    def finish(self, learner: int) -> None:
        self.done[learner] = True

    def slowest(self) -> int:
        """Acknowledged pushes of the slowest learner still running (the bound's floor;
        a finished learner holds nobody back)."""
        running = [a for a, d in zip(self.acked, self.done) if not d]
        return min(running) if running else max(self.acked)

    def total(self) -> int:
        """Acknowledged pushes of all learners so far (a clock for observed staleness)."""
        return self.pushed_total

    def progress(self) -> dict[str, Any]:
        """The acknowledged pushes, finished learners and the mean training return of the
        last chunk every learner has pushed (NaN before one ended an episode)."""
        low = min(self.acked)
        rows = [r[low] for r in self.rows if low in r]
        eps = sum(r["episodes"] for r in rows)
        ret = sum(r["return_sum"] for r in rows) / eps if eps else float("nan")
        return {"acked": list(self.acked), "done": list(self.done), "mean_return": ret}

    def state(self) -> dict[str, Any]:
        return {"acked": list(self.acked), "done": list(self.done),
                "restarts": list(self.restarts), "rows": self.rows}


class Shard:
    """States ``[lo, hi)`` of the Q-table (every estimate: ``[T, hi - lo, A]``) and, per
    cell, the count of updates applied to it, applying pushes in arrival order, serving
    its rows and counts, and checkpointing atomically (``np.savez`` to a temporary file,
    then ``os.replace``) every ``checkpoint_every`` applied pushes. A shard (re)started
    with a checkpoint file present resumes from it.

    A push carries, for each cell its learner's chunk updated, that learner's new value
    (and under ``sum`` its value at the pull), the number ``n`` of updates it applied
    there and the cell's count when the learner pulled the rows its chunk started from
    (``base``). Where no other learner updated the cell since that pull, it takes the
    learner's value, bit for bit.

    ``aggregation="mean"``: the updates other learners pushed to the cell since that pull,
    ``m = count - base``, ran concurrently with this chunk; the cell becomes the
    count-weighted mean of the two results, ``(m * Q + n * Q_learner) / (m + n)``, and
    exactly ``Q_learner`` where nobody else updated it (m = 0): what one learner running
    the same chunks one after the other computes, with no damping of a change that was
    not concurrent with any other. Concurrent chunks of equal counts move a cell by their
    mean change, as one device averages the TD errors that hit one cell in one step.
    ``"sum"``: changes are added in full (additive: any order, up to float rounding).

    The counts are the chunk's own: the batched updates it applied to each cell (the
    table's ``visits``, which a learner's chunk carries under any learning rate:
    ``build_learner(..., count_updates=True)``). The shards hold the run's totals and
    learners pull them with the rows, so under ``lr_schedule="visit"`` a cell's rate
    ``n^-w`` counts every learner's updates, as one learner's would."""

    def __init__(self, index: int, lo: int, hi: int, q: np.ndarray, num_learners: int,
                 checkpoint: str | None, checkpoint_every: int, aggregation: str = "mean",
                 die_after: int | None = None):
        self.index, self.lo, self.hi = index, lo, hi
        self.mean = aggregation == "mean"
        self.path, self.every = checkpoint, checkpoint_every
        self.q = np.array(q, np.float32)
        self.counts = np.zeros(self.q.shape, np.int32)  # updates applied per cell
        self.last = np.zeros(num_learners, np.int64)  # applied pushes per learner
        self.cells = np.zeros(num_learners, np.int64)  # applied cell updates per learner
        self.durable = np.zeros(num_learners, np.int64)  # pushes in the checkpoint
        self.since = 0
        self.checkpoints = 0
        self.restored = False
        self.die_after = die_after  # an injected fault: the process dies after this push
        if self.path and os.path.exists(self.path):
            with np.load(self.path) as z:
                self.q = z["q"].astype(np.float32)
                self.counts = z["counts"].astype(np.int32)
                self.last, self.cells = z["last"], z["cells"]
            self.durable = self.last.copy()
            self.restored = True

    def push(self, learner: int, seq: int, idx: np.ndarray, value: np.ndarray,
             n: np.ndarray, base: np.ndarray,
             old: np.ndarray | None = None) -> tuple[str, int, int]:
        """Apply one push (flat cells ``idx`` of this shard; see the class docstring) if
        ``seq`` is the learner's next. Returns (status, last applied seq of this learner,
        last durable seq)."""
        last = int(self.last[learner])
        if seq <= last:
            return "duplicate", last, int(self.durable[learner])
        if seq > last + 1:
            return "gap", last, int(self.durable[learner])
        merge(self.q.reshape(-1), self.counts.reshape(-1), idx, value, n, base, old)
        self.last[learner] = seq
        self.cells[learner] += idx.size
        self.since += 1
        if self.every and self.since >= self.every:
            self.checkpoint()
        if self.die_after is not None and not self.restored and int(self.last.sum()) >= self.die_after:
            os._exit(1)  # applied, not acknowledged: the pusher's retry must not apply it twice
        return "applied", seq, int(self.durable[learner])

    def rows(self) -> np.ndarray:
        return self.q

    def pull(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows and their per-cell update counts, read together (one actor call, so
        no push lands between them): what a learner's next chunk starts from."""
        return self.q, self.counts

    def checkpoint(self) -> list[int]:
        """Write the shard atomically (a reader never sees half a file); returns the
        durable push count per learner."""
        if self.path:
            tmp = f"{self.path}.tmp.npz"
            np.savez(tmp, q=self.q, counts=self.counts, last=self.last, cells=self.cells)
            os.replace(tmp, self.path)
            self.durable = self.last.copy()
            self.checkpoints += 1
        self.since = 0
        return self.durable.tolist()

    def stats(self) -> dict[str, Any]:
        return {"shard": self.index, "rows": [self.lo, self.hi],
                "applied": self.last.tolist(), "applied_cells": self.cells.tolist(),
                "updates": int(self.counts.sum(dtype=np.int64)),
                "checkpoints": self.checkpoints, "restored_from_checkpoint": self.restored,
                "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()


def merge(q: np.ndarray, counts: np.ndarray, idx: np.ndarray, value: np.ndarray,
          n: np.ndarray, base: np.ndarray, old: np.ndarray | None) -> None:
    """One push into flat ``q`` and ``counts`` in place (``Shard``'s rule). ``value`` is
    the learner's new value of each cell, ``m = counts - base`` the updates others applied
    since the learner pulled (clamped at 0: after a shard restored an older checkpoint its
    counts may trail what the learner saw). Where m = 0 the cell is set to ``value``
    exactly (nothing else changed it since the pull). Elsewhere ``mean`` (``old`` None)
    takes ``(m * q + n * value) / (m + n)``, ``sum`` adds the change ``value - old``."""
    m = np.maximum(counts[idx].astype(np.int64) - base, 0)
    cur = q[idx]
    if old is None:
        w = n / np.maximum(m + n, 1)  # float64: exact for counts below 2^53
        merged = cur + w * (value.astype(np.float64) - cur)
    else:
        merged = cur + (value - old)
    q[idx] = np.where(m == 0, value, merged)
    counts[idx] += n.astype(counts.dtype)


def make_push(bounds: list[int], q0: np.ndarray, q1: np.ndarray, c0: np.ndarray,
              c1: np.ndarray, mean: bool) -> list[tuple[np.ndarray, ...]]:
    """One chunk's push, split by the shards owning states ``bounds[p]:bounds[p + 1]``:
    per shard ``(idx, value, n, base)`` (``sum``: and ``old``) as ``Shard.push`` takes them. ``q0``/``c0``: the
    ``[T, S, A]`` rows and counts pulled before the chunk; ``q1``: the rows after it;
    ``c1``: the chunk's per-cell update counts after it (it started from ``c0``)."""
    T, S, A = q0.shape
    flat = lambda x: x.reshape(T, S * A)  # noqa: E731
    q0f, q1f, c0f = flat(q0), flat(q1), flat(c0)
    n_all = flat(c1) - c0f
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        cols = slice(lo * A, hi * A)
        n = n_all[:, cols].reshape(-1)
        idx = np.flatnonzero(n).astype(np.int32)
        new, old = q1f[:, cols].reshape(-1)[idx], q0f[:, cols].reshape(-1)[idx]
        parts.append((idx, new, n[idx].astype(np.int32), c0f[:, cols].reshape(-1)[idx])
                     + (() if mean else (old,)))
    return parts


class Learner:
    """One learner: jaxq's compiled chunk (``build_learner(config).chunk``, jitted once)
    on a local copy of the table, pushing what each chunk did (the cells it updated, how
    many updates it applied to each, and their new values or changes: ``make_push``) to
    the shards that own the rows, and pulling every row and count back before the next
    chunk."""

    def __init__(self, index: int, config_json: str, num_learners: int, seed: int,
                 bounds: list[int], run_id: str,
                 max_staleness: int, q_star: np.ndarray | None, compile_cache: str | None = None,
                 fault: dict | None = None):
        import json

        import ray

        from jaxq.config import TrainConfig

        self.index, self.K = index, num_learners
        self.config = TrainConfig.from_dict(json.loads(config_json))
        self.seed, self.bounds = seed, list(bounds)
        # the other actors by name, not by handle: a restarted learner finds them again
        self.shards = [ray.get_actor(f"{run_id}-shard-{p}") for p in range(len(bounds) - 1)]
        self.coord = ray.get_actor(f"{run_id}-coordinator")
        self.S_max = int(max_staleness)
        self.q_star, self.fault = q_star, fault or {}
        self.compile_cache = compile_cache
        self.created = time.time()
        self.mean = self.config.aggregation == "mean"
        self.buffer: list[list[tuple[int, tuple]]] = [[] for _ in self.shards]

    # ---- the parts of one chunk ---------------------------------------------------
    def _send(self, p: int, seq: int, part: tuple[np.ndarray, ...]):
        return self.shards[p].push.remote(self.index, seq, *part)

    def _push(self, seq: int, q0: np.ndarray, q1: np.ndarray, c0: np.ndarray,
              c1: np.ndarray) -> tuple[int, int]:
        """Send push ``seq`` to every shard (per owner: the cells the chunk updated, their
        new values (``sum``: and old ones), the updates applied to each and its count at
        the pull; see ``make_push`` and ``Shard``) and wait for all to acknowledge it;
        replays buffered pushes a restarted shard lost. ``c0``: the counts pulled with
        ``q0``; ``c1``: the chunk's per-cell update counts after it. Returns the cells
        sent and the bytes of the arrays sent (the payload, not Ray's framing)."""
        import ray

        parts = make_push(self.bounds, q0, q1, c0, c1, self.mean)
        refs = []
        for p, part in enumerate(parts):
            self.buffer[p].append((seq, part))
            refs.append(self._send(p, seq, part))
        for p, ref in enumerate(refs):
            status, last, durable = ray.get(ref)
            if status == "gap":  # the shard restarted from an older checkpoint: replay
                replay = [b for b in self.buffer[p] if b[0] > last]
                if not replay or replay[0][0] != last + 1:
                    raise RuntimeError(
                        f"shard {p} restarted at push {last} of learner {self.index}, but "
                        f"pushes {last + 1}..{seq} are no longer buffered (lost with an "
                        "earlier restart of this learner); the run cannot be exact")
                for s, part in replay:
                    status, last, durable = ray.get(self._send(p, s, part))
            self.buffer[p] = [b for b in self.buffer[p] if b[0] > durable]
        return (sum(part[0].size for part in parts),
                sum(a.nbytes for part in parts for a in part))

    def _pull(self) -> tuple[np.ndarray, np.ndarray]:
        """Every shard's rows and per-cell counts, as ``[T, S, A]`` tables."""
        import ray

        parts = ray.get([s.pull.remote() for s in self.shards])
        return (np.concatenate([q for q, _ in parts], axis=1),
                np.concatenate([c for _, c in parts], axis=1))

    def _wait_turn(self, done: int) -> tuple[int, float]:
        """Block while this learner is more than ``max_staleness`` pushes ahead of the
        slowest running learner; returns (its lead when it went on, seconds waited)."""
        import ray

        t0 = time.perf_counter()
        pause = 0.001
        while True:
            lead = done - int(ray.get(self.coord.slowest.remote()))
            if lead <= self.S_max:
                return lead, time.perf_counter() - t0
            time.sleep(pause)  # backing off: a learner waiting for a compile must not spin
            pause = min(2 * pause, 0.05)

    def run(self) -> dict[str, Any]:
        """Train this learner's share of the run; resumes after a restart at its first
        unacknowledged push (from the current shards)."""
        import jax
        import jax.numpy as jnp
        import ray

        from jaxq import compile_cache, training

        start = int(ray.get(self.coord.started.remote(self.index)))
        if start:  # a restart: make what earlier pushes applied durable first
            ray.get([s.checkpoint.remote() for s in self.shards])
        t_start = time.time()
        # per-cell counts of the batched updates each chunk applies (the rate stays the
        # config's): what a push weighs its cells by
        learner = training.build_learner(self.config, self.q_star, count_updates=True)
        build_s = time.time() - t_start
        hp = self.config.hparams()
        plan = self.config.plan()
        key = jax.random.fold_in(jax.random.key(self.seed), self.index)
        t0 = time.perf_counter()
        if start:  # a restarted learner's environments and coins start afresh
            key = jax.random.fold_in(key, start)
        if self.compile_cache and self.index and not start:
            # with a shared compile cache, one learner compiles and the others load its
            # program (a few seconds later instead of one more compile on the same cores)
            pause, waited = 0.01, 0.0
            while waited < 300 and not ray.get(self.coord.is_compiled.remote()):
                time.sleep(pause)
                waited += pause
                pause = min(2 * pause, 0.2)
        init = compile_cache.compile(jax.jit(learner.init).lower(key, hp), self.compile_cache)
        carry = init(key, hp)
        chunk = compile_cache.compile(jax.jit(learner.chunk).lower(carry, hp),
                                      self.compile_cache)
        compile_s = time.perf_counter() - t0
        if self.index == 0:
            ray.get(self.coord.set_compiled.remote())
        if start:  # the schedules' clocks where the lost learner stood
            carry = carry._replace(t=jnp.int32(start * plan["chunk_iters"]),
                                   chunk=jnp.int32(start))
        run_s = wait_s = push_s = pull_s = 0.0
        pull_bytes = 0
        leads, missed, cells, sent_bytes = [], [], [], []
        for k in range(start, plan["num_chunks"]):
            lead, waited = self._wait_turn(k)
            wait_s += waited
            t1 = time.perf_counter()
            q0, c0 = self._pull()
            pull_bytes = q0.nbytes + c0.nbytes
            before = int(ray.get(self.coord.total.remote()))
            qf = carry.qf._replace(q=jnp.asarray(q0))
            # the run's update counts (under lr_schedule="visit" each cell's rate's n)
            qf = qf._replace(visits=jnp.asarray(c0, qf.visits.dtype))
            carry = carry._replace(qf=qf)
            pull_s += time.perf_counter() - t1
            t1 = time.perf_counter()
            carry, raw = chunk(carry, hp)
            q1 = np.asarray(carry.qf.q)
            c1 = np.asarray(carry.qf.visits)
            raw = {n: float(v) for n, v in jax.device_get(raw).items()}
            run_s += time.perf_counter() - t1
            if self.fault.get("die_at_chunk") == k + 1 and not start:
                os._exit(1)  # an injected fault: the process dies mid-run
            t1 = time.perf_counter()
            n_cells, n_bytes = self._push(k + 1, q0, q1, c0, c1)
            cells.append(n_cells)
            sent_bytes.append(n_bytes)
            push_s += time.perf_counter() - t1
            after = int(ray.get(self.coord.total.remote()))
            missed.append(after - before)
            leads.append(lead)
            ray.get(self.coord.ack.remote(self.index, k + 1, raw))
        ray.get([s.checkpoint.remote() for s in self.shards])
        ray.get(self.coord.finish.remote(self.index))
        steps = (plan["num_chunks"] - start) * plan["chunk_iters"] * self.config.num_envs
        return {"learner": self.index, "resumed_at_chunk": start,
                "startup_s": t_start - self.created, "build_s": build_s, "compile_s": compile_s,
                "run_s": run_s, "wait_s": wait_s, "push_s": push_s, "pull_s": pull_s,
                "env_steps": steps, "steps_per_s": steps / run_s if run_s > 0 else float("nan"),
                "lead_max": max(leads, default=0), "lead_mean": float(np.mean(leads)) if leads else 0.0,
                "missed_max": max(missed, default=0),
                "missed_mean": float(np.mean(missed)) if missed else 0.0,
                "cells_per_push": float(np.mean(cells)) if cells else 0.0,
                "push_bytes": float(np.mean(sent_bytes)) if sent_bytes else 0.0,
                "pull_bytes": pull_bytes, "chunks": plan["num_chunks"] - start,
                "pid": os.getpid()}
