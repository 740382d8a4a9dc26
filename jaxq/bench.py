"""``jaxq bench``: one environment and update rule, jaxq beside a classic Python loop and
the fastest vectorized NumPy Q-learner we could write, in the same run; what the
conveniences of ``jaxq.train`` cost; and ``--profile`` (a trace and a breakdown of where the
time goes at one N).

The learners and measuring functions here are also what the experiment scripts use
(``experiments/throughput.py``: every env, rule and strategy up to 2^20 envs with all the
baselines; ``experiments/time_to_solution.py``).

**Throughput** (default: Q-learning on FrozenLake 8x8, slippery, T = 200; gamma 0.99,
constant lr 0.1 and epsilon 0.1, set explicitly in every learner):

* *jaxq*: ``learner.chunk`` (``jaxq.training.build_learner``) compiled ahead of time as
  ``jaxq.train`` does it (``jax.jit(chunk, donate_argnums=0).lower(carry, hp,
  env_params).compile()``; compile time reported apart), ``eval_every=0``, for N = 1, 4,
  ..., ``--max-envs``; ``chunk_iters`` is set per N so that one call takes about
  ``--target-s``; steps/s = N * chunk_iters / median wall time of ``--repeats`` calls.
* *vectorized NumPy* (``NumpyQLearner``): the same batched algorithm on the host: N envs
  as arrays, the exact ``[S, A, K]`` model from ``jaxq.tabular_model``, one
  ``random_raw`` draw per step (per block of envs), epsilon-greedy with uniformly random
  ties, per-cell *mean* of the step's TD errors (``np.add.at``; it measured faster than
  ``np.bincount`` with weights), auto-reset at the time limit. Identical semantics to
  jaxq's ``aggregation="mean"`` one-step Q-learning, bit conventions included (16-bit
  coins for exploring and choosing, 24-bit uniforms for the dynamics). Its speed comes
  from (a) per-step tables of size S*A*K instead of per-env work where the model is small
  (the greedy action's tie structure per state, and the TD target per outcome, so an env
  step is eight gathers, two ``np.add.at`` and ~30 element-wise passes), (b) preallocated buffers
  (``out=``), (c) blocks of 16,384 envs (cache-sized), all applied to one Q before the
  update. Single-threaded, as NumPy is.
* *classic loop*: ``gymnasium.make`` (FrozenLake-v1 ``map_name="8x8"`` with
  ``max_episode_steps=200``, i.e. FrozenLake8x8-v1's limit; Taxi-v4 for jaxq's Taxi-v3,
  Gymnasium 1.3 having retired v3 while v4 with ``is_rainy=False`` has v3's dynamics),
  a Python loop over steps, a NumPy ``[S, A]`` table, epsilon-greedy with random ties
  (``np.flatnonzero(row == row.max())``, one uniform picks among them), the tabular
  Q-learning update. Environments without a Gymnasium twin (Maze-v0) run as a
  ``gymnasium.Env`` over jaxq's exact model (``ModelEnv``) under ``TimeLimit``.

**Time to solution** (seconds until the greedy policy is within 2% of optimal, for the
same three learners) is its own experiment, ``experiments/time_to_solution.py``, which
imports the learners from here.

Writes ``<out>/results/bench/results.json`` (plus an archived copy) and the ``bench``
section of ``<out>/BENCHMARKS.md`` (``<out>`` defaults to the current directory;
``experiments/run.py bench`` passes ``experiments/``).

    jaxq bench                                  # the default run (a few minutes on CPU)
    jaxq bench --quick                          # seconds; into a temp dir unless --out
    jaxq bench --env Taxi-v3 --algo sarsa       # other configs (baselines: q_learning only)
    jaxq bench --profile /tmp/prof --num-envs 65536   # trace + breakdown for one size
    jaxq bench --markdown-only                  # re-render BENCHMARKS.md from results.json
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import importlib.util
import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxq import benchlib

EXPERIMENT = "bench"
SCHEMA_VERSION = 1
DEFAULT_ENV = "FrozenLake8x8-v1"
DEFAULT_ALGO = "q_learning"
DEFAULT_MAX_ENVS = 262_144
QUICK_MAX_ENVS = 16
GAMMA, LR, EPSILON = 0.99, 0.1, 0.1
INT32_MAX = 2**31 - 1

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------
def _training():
    """``jaxq.training`` (``jaxq.train`` in older layouts)."""
    try:
        return importlib.import_module("jaxq.training")
    except ModuleNotFoundError:
        return importlib.import_module("jaxq.train")


def _pow2(x: float, lo: int = 1, hi: int = INT32_MAX) -> int:
    n = 2 ** round(math.log2(max(float(x), 1.0)))
    return int(min(max(n, lo), hi))


def _stats(times: list[float]) -> tuple[float, float]:
    s = sorted(times)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2]), min(s)


@dataclass
class EnvSpec:
    """One environment, its exact model as NumPy arrays, and what the baselines need."""

    env_id: str
    env_kwargs: dict[str, Any]
    env: Any
    params: Any
    model: Any  # jaxq.TabularModel (device arrays)
    next_state: np.ndarray  # [S, A, K]
    prob: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    starts: np.ndarray  # the start states (uniform over them)
    max_steps: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.prob.shape)  # type: ignore[return-value]


def load_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> EnvSpec:
    import jaxq

    env_kwargs = dict(env_kwargs or {})
    env, params = jaxq.make(env_id, **env_kwargs)
    if not hasattr(env, "outcomes"):
        raise ValueError(f"{env_id} is not a jaxq tabular environment; the baselines need "
                         "its exact model")
    model = jaxq.tabular_model(env, params)
    n_starts = int(np.asarray(params.n_starts))
    starts = np.asarray(params.starts)[:n_starts].astype(np.int64)
    return EnvSpec(env_id, env_kwargs, env, params, model,
                   np.asarray(model.next_state), np.asarray(model.prob),
                   np.asarray(model.reward), np.asarray(model.terminated), starts,
                   int(getattr(params, "max_steps_in_episode", INT32_MAX)))


# ---------------------------------------------------------------------------------------
# jaxq
# ---------------------------------------------------------------------------------------
def jaxq_config(env_id: str, env_kwargs: dict[str, Any], algo: str, num_envs: int,
                chunk_iters: int, num_chunks: int = 1, seed: int = 0, lr: float = LR,
                epsilon: float = EPSILON, gamma: float = GAMMA):
    """A TrainConfig with constant lr and epsilon whose chunks are exactly
    ``chunk_iters`` batched steps (``num_chunks`` of them)."""
    import jaxq

    return jaxq.TrainConfig(
        env_id=env_id, env_kwargs=dict(env_kwargs), algo=algo, num_envs=num_envs,
        total_steps=num_envs * chunk_iters * num_chunks, num_chunks=num_chunks, gamma=gamma,
        lr=lr, lr_schedule="constant", epsilon=epsilon, epsilon_schedule="constant",
        eval_every=0, seed=seed)


class CompiledChunk:
    """``learner.chunk`` compiled ahead of time, with its carry: one call = one chunk.
    ``threefry``: the CPU threefry lowering it is compiled with (default: as ``jaxq.train``
    picks it, ``jaxq.cpu_threefry.scoped``)."""

    def __init__(self, config, threefry: str | None = None):
        import jax

        from jaxq import cpu_threefry

        t0 = time.perf_counter()
        self.learner = _training().build_learner(config)
        self.config = config
        self.hp = config.hparams()
        self.ep = self.learner.params
        key = jax.random.key(config.seed)
        with cpu_threefry.scoped(threefry):
            carry = jax.jit(self.learner.init).lower(key, self.hp, self.ep).compile()(
                key, self.hp, self.ep)
            self.compiled = jax.jit(self.learner.chunk, donate_argnums=0).lower(
                carry, self.hp, self.ep).compile()
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
        """XLA's 'bytes accessed' for the chunk program (its loop body counted once)."""
        try:
            ca = self.compiled.cost_analysis()
        except Exception:  # noqa: BLE001 - not every backend offers it
            return None
        if isinstance(ca, (list, tuple)):
            ca = ca[0] if ca else None
        v = (ca or {}).get("bytes accessed")
        return float(v) if v is not None else None


def _metric_sum(metrics, name: str) -> int | None:
    return int(np.asarray(metrics[name])) if name in metrics else None


def measure_jaxq(spec: EnvSpec, algo: str, sizes: list[int], target_s: float, repeats: int,
                 seed: int, log: Log,
                 make_config: Callable[[int, int], Any] | None = None) -> list[dict[str, Any]]:
    """jaxq steps/s at each N: chunk_iters sized from the previous N's rate (recompiled
    once if the first call misses ``target_s`` by more than 2x). ``make_config(N,
    chunk_iters)`` builds the TrainConfig (default: ``jaxq_config`` for ``spec`` and
    ``algo``), e.g. to measure another strategy or n-step."""
    if make_config is None:
        def make_config(n, iters):
            return jaxq_config(spec.env_id, spec.env_kwargs, algo, n, iters, seed=seed)
    records, rate = [], None
    for n in sizes:
        rec: dict[str, Any] = {"impl": "jaxq", "num_envs": n}
        try:
            guess = 1e6 if rate is None else 2 * rate  # rates grow with N, until they saturate
            hi = max(1, INT32_MAX // n)
            iters = _pow2(guess * target_s / n, hi=hi)
            compiles = []
            while True:
                cc = CompiledChunk(make_config(n, iters))
                compiles.append(cc.compile_s)
                t0 = time.perf_counter()
                cc()  # warm-up (first run)
                dt = time.perf_counter() - t0
                new = _pow2(iters * target_s / max(dt, 1e-9), hi=hi)
                if len(compiles) >= 2 or target_s / 2 <= dt <= 2 * target_s or new == iters:
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
            log(f"  jaxq     N={n:<7} chunk_iters={iters:<8} {_human(rate):>7} steps/s "
                f"(compile {compiles[-1]:.2f} s, cpu/wall {rec['cpu_per_wall']:.2f})")
            del cc
        except Exception as e:  # noqa: BLE001 - a failed size must not sink the run
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  jaxq     N={n:<7} ERROR {rec['error']}")
            records.append(rec)
            break
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------
# vectorized NumPy
# ---------------------------------------------------------------------------------------
_U64 = np.uint64


class NumpyQLearner:
    """Batched one-step Q-learning over N copies of a tabular MDP, vectorized in NumPy:
    the algorithm of jaxq's ``aggregation="mean"`` Q-learning with constant lr and
    epsilon.

    Per batched step, for every env: epsilon-greedy action on Q[s] (greedy ties broken
    uniformly at random: the j-th maximiser, j = floor(u * #maximisers)), one outcome of
    the exact model drawn with a 24-bit uniform, TD error ``r + gamma * (1 - term) *
    max_a Q[s', a] - Q[s, a]`` (bootstrapping through time-limit truncations, as jaxq
    does); then every touched cell moves by ``lr * mean`` of its TD errors, all against
    the same Q. Episodes end on termination or after ``max_steps`` and restart from a start
    state (uniform over ``starts``).

    Random bits: one ``bit_generator.random_raw`` call per block of envs gives one 64-bit
    word per env: bits 48-63 the exploration coin, 32-47 the action (random action or
    tie-break), 0-23 the outcome; a second word per env draws random starts.

    ``dense`` (default: when S*A*K <= 4N + 4096): precompute per step, from Q, each
    state's tie structure (number of maximisers, j-th maximiser) and each outcome's TD
    target, O(S*A*K), so an env costs a handful of gathers; otherwise the per-env column form
    (A gathers of Q[s] and of Q[s']) with sparse accumulators.
    """

    def __init__(self, spec: EnvSpec, num_envs: int, gamma: float = GAMMA, lr: float = LR,
                 epsilon: float = EPSILON, seed: int = 0, block: int = 16_384,
                 dense: bool | None = None):
        ns, p, r, term = spec.next_state, spec.prob, spec.reward, spec.terminated
        S, A, K = p.shape
        N = int(num_envs)
        if N < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.S, self.A, self.K, self.N, self.C = S, A, K, N, S * A
        self.dense = (S * A * K <= 4 * N + 4096) if dense is None else bool(dense)

        def action_major(x):  # [S, A, K] -> [A*S, K]: row = a * S + s = the Q cell
            return np.ascontiguousarray(np.swapaxes(x, 0, 1)).reshape(A * S, K)

        ns, p, r, term = action_major(ns), action_major(p), action_major(r), action_major(term)
        self.ns = ns.reshape(-1).astype(np.int32)
        self.term = term.reshape(-1)
        self.nsd = (self.ns * 2 + self.term).astype(np.int32)  # next state and termination
        self.r = r.reshape(-1).astype(np.float32)
        self.gc = (np.float32(gamma) * ~self.term).astype(np.float32)  # gamma or 0
        self.success = (self.term & (self.r > 0)).astype(np.int32)
        # outcome k is taken when u >= cdf_k (float32 cdf accumulated as jaxq does), with u
        # a 24-bit uniform: u24 >= ceil(cdf * 2**24); zero-probability outcomes never
        cdf = np.cumsum(p, axis=1, dtype=np.float32)
        self.thr = [np.where(p[:, k] > 0, np.ceil(cdf[:, k - 1].astype(np.float64) * 2**24),
                             2**24 + 1).astype(np.int32) for k in range(1, K)]
        self.q = np.zeros(A * S, np.float32)  # action-major: Q[s, a] = q[a * S + s]
        self.lr = np.float32(lr)
        self.eps16 = int(math.ceil(float(epsilon) * 65536))  # u16 < eps16  <=>  u < epsilon
        self.rng = np.random.default_rng(seed)
        self.starts = np.asarray(spec.starts, np.int32)
        self.random_start = self.starts.size > 1
        self.start = int(self.starts[0])
        self.max_steps = int(spec.max_steps)
        self.s = self.reset_states(N)
        self.t = np.zeros(N, np.int32)
        self.steps = 0
        self.episodes = 0
        self.successes = 0
        self.B = min(int(block), N) if self.dense else N
        self.acc = np.zeros(self.C, np.float32)
        self.cnt = np.zeros(self.C, np.int32)
        self.ones = np.ones(self.B, np.int32)
        self._jj = np.arange(A, dtype=np.int32)[None, :, None]
        B = self.B
        self._i32 = [np.empty(B, np.int32) for _ in range(8)]
        self._f32 = [np.empty(B, np.float32) for _ in range(2)]
        self._bool = np.empty(B, bool)
        self._u64 = np.empty(B, np.uint64)

    # -- helpers ----------------------------------------------------------------------
    def reset_states(self, n: int, word: np.ndarray | None = None) -> np.ndarray:
        if not self.random_start:
            return np.full(n, self.start, np.int32)
        if word is None:
            word = self.rng.bit_generator.random_raw(n)
        idx = ((word >> _U64(32)) * _U64(self.starts.size)) >> _U64(32)  # < n_starts
        return self.starts[idx.astype(np.int64)]

    def q_table(self) -> np.ndarray:
        """Q as ``[S, A]`` float32."""
        return self.q.reshape(self.A, self.S).T.copy()

    def _tables(self):
        A, S = self.A, self.S
        qm = self.q.reshape(A, S)
        v = qm.max(0)
        pref = np.cumsum(qm == v, axis=0, dtype=np.int32)  # [A, S] maximisers so far
        nmax = pref[-1]
        # j-th maximiser (0-based) = #{a < A-1 : pref[a] <= j}, as [j * S + s]
        g = (pref[:-1, None, :] <= self._jj).sum(0, dtype=np.int32).reshape(-1)
        target = self.r + self.gc * v[self.ns]  # per outcome
        return nmax, g, target

    # -- stepping ---------------------------------------------------------------------
    def run(self, steps: int) -> None:
        """``steps`` batched steps (N env steps each)."""
        for _ in range(int(steps)):
            if self.dense:
                self._step_dense()
            else:
                self._step_columns()
        self.steps += int(steps)

    def _done_and_reset(self, s, t, nsd, d, tmp, cmp, word2):
        """From packed ``nsd`` (next_state * 2 + term): done flags into ``d``, the next
        states (restarted where done) into ``s``, times into ``t``."""
        np.add(t, 1, out=t)
        np.greater_equal(t, self.max_steps, out=cmp)
        np.bitwise_and(nsd, 1, out=d)
        np.bitwise_or(d, cmp, out=d)
        np.right_shift(nsd, 1, out=nsd)
        if self.random_start:
            reset = self.reset_states(len(s), word2)
            np.subtract(reset, nsd, out=tmp)
        else:
            np.subtract(self.start, nsd, out=tmp)
        np.multiply(tmp, d, out=tmp)
        np.add(nsd, tmp, out=s)
        np.multiply(t, d, out=tmp)
        np.subtract(t, tmp, out=t)
        self.episodes += int(np.count_nonzero(d))

    def _step_dense(self) -> None:
        A, S, K, N, B, q = self.A, self.S, self.K, self.N, self.B, self.q
        xe, xa, xs, j, g, cell, k, o = self._i32
        f, td = self._f32
        cmp, t64 = self._bool, self._u64
        acc, cnt, ones = self.acc, self.cnt, self.ones
        bitgen = self.rng.bit_generator
        nmax, gtab, target = self._tables()
        acc[:] = 0
        cnt[:] = 0
        words = 2 if self.random_start else 1
        for lo in range(0, N, B):
            hi = min(lo + B, N)
            n = hi - lo
            if n != B:  # the last, partial block
                xe, xa, xs, j, g, cell, k, o = (x[:n] for x in self._i32)
                f, td = (x[:n] for x in self._f32)
                cmp, t64, ones = self._bool[:n], self._u64[:n], self.ones[:n]
            s, t = self.s[lo:hi], self.t[lo:hi]
            raw = bitgen.random_raw(n * words)
            word, word2 = raw[:n], (raw[n:] if words == 2 else None)
            np.right_shift(word, _U64(48), out=t64)
            xe[:] = t64
            np.right_shift(word, _U64(32), out=t64)
            np.bitwise_and(t64, _U64(0xFFFF), out=t64)
            xa[:] = t64
            np.bitwise_and(word, _U64(0xFFFFFF), out=t64)
            xs[:] = t64
            # greedy, random ties: the j-th maximiser of Q[s], j = floor(u * #maximisers)
            nmax.take(s, out=j)
            np.multiply(j, xa, out=j)
            np.right_shift(j, 16, out=j)
            np.multiply(j, S, out=j)
            np.add(j, s, out=j)
            gtab.take(j, out=g)
            # epsilon: a uniform action from the same 16 bits
            np.multiply(xa, A, out=j)
            np.right_shift(j, 16, out=j)
            np.subtract(j, g, out=j)
            np.less(xe, self.eps16, out=cmp)
            np.multiply(j, cmp, out=j)
            np.add(g, j, out=g)
            np.multiply(g, S, out=cell)
            np.add(cell, s, out=cell)
            # outcome: the last k whose threshold u passes (as jaxq's table lookup)
            k[:] = 0
            for kk, thr in enumerate(self.thr, start=1):
                thr.take(cell, out=j)
                np.greater_equal(xs, j, out=cmp)
                np.multiply(cmp, kk, out=j)
                np.maximum(k, j, out=k)
            np.multiply(cell, K, out=o)
            np.add(o, k, out=o)
            # TD error, accumulated per cell
            target.take(o, out=td)
            q.take(cell, out=f)
            np.subtract(td, f, out=td)
            np.add.at(acc, cell, td)
            np.add.at(cnt, cell, ones)
            self.successes += int(self.success.take(o).sum())
            self.nsd.take(o, out=k)
            self._done_and_reset(s, t, k, xa, j, cmp, word2)
        q += self.lr * acc / np.maximum(cnt, 1)

    def _step_columns(self) -> None:
        A, S, K, N, q = self.A, self.S, self.K, self.N, self.q
        qa = [q[a * S:(a + 1) * S] for a in range(A)]
        s, t = self.s, self.t
        words = 2 if self.random_start else 1
        raw = self.rng.bit_generator.random_raw(N * words)
        word, word2 = raw[:N], (raw[N:] if words == 2 else None)
        xe = (word >> _U64(48)).astype(np.int32)
        xa = ((word >> _U64(32)) & _U64(0xFFFF)).astype(np.int32)
        xs = (word & _U64(0xFFFFFF)).astype(np.int32)
        cols = [qa[a].take(s) for a in range(A)]
        m = cols[0].copy()
        for c in cols[1:]:
            np.maximum(m, c, out=m)
        pref, run_ = [], np.zeros(N, np.int32)
        for c in cols:
            run_ = run_ + (c == m)
            pref.append(run_)
        j = (xa * pref[-1]) >> 16
        g = np.zeros(N, np.int32)
        for pr in pref[:-1]:
            g += pr <= j
        rnd = (xa * A) >> 16
        a = g + (xe < self.eps16) * (rnd - g)
        cell = a * S + s
        k = np.zeros(N, np.int32)
        for kk, thr in enumerate(self.thr, start=1):
            np.maximum(k, (xs >= thr.take(cell)) * np.int32(kk), out=k)
        o = cell * K + k
        ns = self.ns.take(o)
        boot = qa[0].take(ns)
        for b in range(1, A):
            np.maximum(boot, qa[b].take(ns), out=boot)
        td = self.r.take(o) + self.gc.take(o) * boot - q.take(cell)
        acc, cnt = self.acc, self.cnt
        np.add.at(acc, cell, td)
        np.add.at(cnt, cell, self.ones)
        q[cell] = q.take(cell) + self.lr * acc.take(cell) / cnt.take(cell)  # duplicates agree
        acc[cell] = 0
        cnt[cell] = 0
        self.successes += int(self.success.take(o).sum())
        nsd = self.nsd.take(o)
        d, tmp, cmp = np.empty(N, np.int32), np.empty(N, np.int32), np.empty(N, bool)
        self._done_and_reset(s, t, nsd, d, tmp, cmp, word2)


def measure_numpy(spec: EnvSpec, sizes: list[int], target_s: float, repeats: int, seed: int,
                  budget_s: float, log: Log, learner_cls: Callable[..., Any] | None = None,
                  impl: str = "numpy") -> list[dict[str, Any]]:
    """Vectorized NumPy steps/s at each N (``benchlib.time_scaled``); stops once the
    sizes so far took ``budget_s``."""
    bl = benchlib
    records, rate, t_start = [], None, time.perf_counter()
    for n in sizes:
        rec: dict[str, Any] = {"impl": impl, "num_envs": n}
        if time.perf_counter() - t_start > budget_s:
            rec["skipped"] = f"time budget of {budget_s:g} s spent"
            log(f"  {impl:<8} N={n:<7} skipped ({rec['skipped']})")
            records.append(rec)
            continue
        try:
            learner = (learner_cls or NumpyQLearner)(spec, n, seed=seed)
            learner.run(1)
            cpu = []

            def run(steps, learner=learner, cpu=cpu):
                c0 = time.process_time()
                learner.run(steps)
                cpu.append(time.process_time() - c0)

            guess = 1 if rate is None else max(1, int(rate * target_s / n / 2))
            timing = bl.time_scaled(run, target_s, repeats=repeats, guess=guess)
            med, best = _stats(list(timing.times_s))
            rate = n * timing.iters / med
            rec.update(steps_per_s=rate, T=timing.iters, repeats=timing.repeats, median_s=med,
                       best_s=best, times_s=list(timing.times_s),
                       cpu_per_wall=sum(cpu[-repeats:]) / sum(timing.times_s),
                       episodes=learner.episodes, successes=learner.successes,
                       env_steps=learner.steps * n)
            if hasattr(learner, "dense"):
                rec.update(dense=learner.dense, block=learner.B)
            log(f"  {impl:<8} N={n:<7} T={timing.iters:<8} {_human(rate):>7} steps/s")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  {impl:<8} N={n:<7} ERROR {rec['error']}")
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------------
# classic loop
# ---------------------------------------------------------------------------------------
def _gymnasium_id(env_id: str) -> tuple[str, dict[str, Any]] | None:
    import gymnasium as gym

    if env_id == "FrozenLake8x8-v1":  # jaxq's 8x8 id: Gymnasium's map with its 200-step limit
        return "FrozenLake-v1", {"map_name": "8x8", "max_episode_steps": 200}
    if env_id == "FrozenLake-v1":
        return "FrozenLake-v1", {}
    if env_id == "Taxi-v3":  # Gymnasium 1.3 retired v3; v4 (is_rainy=False) has its dynamics
        return ("Taxi-v4" if "Taxi-v4" in gym.registry else "Taxi-v3"), {}
    return None


class ModelEnv:
    """A Gymnasium environment over jaxq's exact model, for ids without a Gymnasium twin
    (wrapped in ``TimeLimit`` by ``make_classic_env``). Pure Python per step, as the
    toy-text environments are."""

    def __new__(cls, spec: EnvSpec):
        import gymnasium as gym

        class _ModelEnv(gym.Env):
            def __init__(self):
                S, A, K = spec.shape
                self.observation_space = gym.spaces.Discrete(S)
                self.action_space = gym.spaces.Discrete(A)
                self._A, self._K = A, K
                cdf = np.cumsum(spec.prob.reshape(S * A, K), axis=1)
                self._cdf = cdf.tolist()
                self._ns = spec.next_state.reshape(S * A, K).tolist()
                self._r = spec.reward.reshape(S * A, K).astype(float).tolist()
                self._term = spec.terminated.reshape(S * A, K).tolist()
                self._starts = spec.starts.tolist()
                self._s = self._starts[0]

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                n = len(self._starts)
                i = int(self.np_random.integers(n)) if n > 1 else 0
                self._s = self._starts[i]
                return self._s, {}

            def step(self, action):
                row = self._s * self._A + int(action)
                k = 0
                if self._K > 1:
                    u, cdf = self.np_random.random(), self._cdf[row]
                    while k < self._K - 1 and u >= cdf[k]:
                        k += 1
                self._s = self._ns[row][k]
                return self._s, self._r[row][k], self._term[row][k], False, {}

        return _ModelEnv()


def make_classic_env(spec: EnvSpec):
    """Gymnasium's environment for ``spec`` (or a ``ModelEnv``), time limit included."""
    import gymnasium as gym

    gid = _gymnasium_id(spec.env_id) if not spec.env_kwargs else None
    if gid is not None:
        env_id, kwargs = gid
        return gym.make(env_id, **kwargs), env_id
    env = gym.wrappers.TimeLimit(ModelEnv(spec), max_episode_steps=spec.max_steps)
    return env, f"ModelEnv({spec.env_id})"


class ClassicQLearning:
    """The textbook loop: one Gymnasium env, a NumPy Q-table, one step at a time."""

    def __init__(self, env, gamma: float = GAMMA, lr: float = LR, epsilon: float = EPSILON,
                 seed: int = 0):
        self.env = env
        self.S, self.A = int(env.observation_space.n), int(env.action_space.n)
        self.q = np.zeros((self.S, self.A))
        self.gamma, self.lr, self.epsilon = float(gamma), float(lr), float(epsilon)
        self.rng = np.random.default_rng(seed)
        self.s, _ = env.reset(seed=seed)
        self.steps = 0
        self.episodes = 0
        self.successes = 0

    def run(self, steps: int, on_episode_end: Callable[[], bool] | None = None) -> bool:
        """Up to ``steps`` steps; ``on_episode_end()`` returning True stops early (the
        return value)."""
        env, q, A, rng = self.env, self.q, self.A, self.rng
        gamma, lr, eps = self.gamma, self.lr, self.epsilon
        s, left = self.s, int(steps)
        try:
            while left > 0:
                block = min(left, 1024)
                us = rng.random(2 * block).tolist()  # uniforms drawn 1024 steps at a time
                for i in range(block):
                    u_explore, u_action = us[2 * i], us[2 * i + 1]
                    if u_explore < eps:
                        a = int(u_action * A)
                    else:
                        row = q[s]
                        best = np.flatnonzero(row == row.max())
                        a = int(best[int(u_action * best.size)])
                    s2, r, term, trunc, _ = env.step(a)
                    target = r if term else r + gamma * q[s2].max()
                    q[s, a] += lr * (target - q[s, a])
                    self.steps += 1
                    if term or trunc:
                        self.episodes += 1
                        self.successes += bool(term and r > 0)
                        s, _ = env.reset()
                        if on_episode_end is not None and on_episode_end():
                            return True
                    else:
                        s = s2
                left -= block
            return False
        finally:
            self.s = s


def measure_classic(spec: EnvSpec, target_s: float, repeats: int, seed: int,
                    log: Log) -> dict[str, Any]:
    bl = benchlib
    rec: dict[str, Any] = {"impl": "classic", "num_envs": 1}
    try:
        env, gym_id = make_classic_env(spec)
        learner = ClassicQLearning(env, seed=seed)
        learner.run(2000)  # warm-up
        timing = bl.time_scaled(learner.run, target_s, repeats=repeats, guess=10_000)
        med, best = _stats(list(timing.times_s))
        rate = timing.iters / med
        rec.update(steps_per_s=rate, gymnasium_id=gym_id, T=timing.iters,
                   repeats=timing.repeats, median_s=med, best_s=best,
                   times_s=list(timing.times_s), episodes=learner.episodes,
                   successes=learner.successes, env_steps=learner.steps)
        log(f"  classic  N=1       T={timing.iters:<8} {_human(rate):>7} steps/s ({gym_id})")
    except Exception as e:  # noqa: BLE001
        rec["error"] = f"{type(e).__name__}: {e}"
        log(f"  classic  ERROR {rec['error']}")
    return rec


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
    ba = cc.bytes_accessed()
    wall_med, loop_med, traced_med = _stats(wall)[0], _stats(loop)[0], _stats(traced)[0]
    rate = steps / loop_med
    res: dict[str, Any] = {
        "env_id": args.env, "env_kwargs": env_kwargs, "algo": args.algo, "num_envs": n,
        "chunk_iters": iters, "steps_per_chunk": steps, "compile_s": cc.compile_s,
        "wall_per_chunk_s": wall_med, "dispatch_per_chunk_s": _stats(dispatch)[0],
        "loop_per_chunk_s": loop_med, "steps_per_s": rate,
        "traced_chunks": len(traced), "traced_wall_per_chunk_s": traced_med,
        "trace_total_s": t_trace, "trace": busy, "memcpy_bandwidth_Bps": bw,
        "bytes_accessed_per_chunk_program": ba,
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
        f"{_human(r['steps_per_s'])} steps/s",
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
# the run
# ---------------------------------------------------------------------------------------
def _human(x):
    return benchlib.human(x)


def _env_kwargs(args) -> dict[str, Any]:
    return json.loads(args.env_kwargs) if args.env_kwargs else {}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="jaxq bench", description=__doc__.split("\n\n")[0],
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
                   help="root for results/ and BENCHMARKS.md (default: the current directory)")
    p.add_argument("--markdown-only", action="store_true",
                   help="only re-render BENCHMARKS.md from <out>/results/bench/results.json")
    p.add_argument("--no-markdown", action="store_true", help="write the JSON only")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="trace a few chunks at --num-envs into DIR and print a breakdown "
                        "(writes no results)")
    p.add_argument("--num-envs", type=int, default=None, help="N for --profile (default 65536)")
    p.add_argument("--chunk-iters", type=int, default=None,
                   help="batched steps per chunk for --profile (default: ~0.2 s)")
    p.add_argument("--profile-chunks", type=int, default=3, help="chunks traced by --profile")
    args = p.parse_args(argv)
    if args.num_envs is not None and args.num_envs < 1:
        p.error("--num-envs must be >= 1")
    return args


def measure_overhead(quick: bool, seed: int, log: Log) -> dict[str, Any]:
    """What the conveniences of ``jaxq.train`` cost at their default frequencies: the
    same run (FrozenLake8x8, N = 65,536) with everything off (5 chunks, no evaluation,
    no progress bar, no checkpoints) and with the defaults on (50 chunks, a 1,000-episode
    greedy evaluation every 10 chunks, the progress bar, a checkpoint every 10 chunks).
    Run time only (compile apart). The two run in interleaved rounds (bare, defaults,
    bare, ...), so that a machine whose speed drifts moves both sides of each round's
    ratio; the overhead is the median over rounds."""
    import warnings

    import jaxq
    from jaxq.config import TrainConfig

    n = 1024 if quick else 65_536
    base = TrainConfig(env_id=DEFAULT_ENV, num_envs=n, total_steps=n * (40 if quick else 3_000),
                       seed=seed)
    bare = base.replace(eval_every=0, num_chunks=5)

    def run_s(cfg, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return jaxq.train(cfg, **kw).timings["run_s"]

    rounds = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(2 if quick else 5):
            t_bare = run_s(bare, progress=False)
            t_default = run_s(base, progress=not quick, checkpoint_path=os.path.join(d, "c.npz"),
                              checkpoint_every=10)
            rounds.append({"bare_s": t_bare, "defaults_s": t_default})
    ratios = sorted(r["defaults_s"] / r["bare_s"] for r in rounds)
    t_bare = _stats([r["bare_s"] for r in rounds])[0]
    t_default = _stats([r["defaults_s"] for r in rounds])[0]
    out = {"num_envs": n, "env_steps": base.plan()["env_steps"], "bare_s": t_bare,
           "defaults_s": t_default, "overhead": _stats(ratios)[0] - 1.0, "rounds": rounds,
           "defaults": {"num_chunks": base.num_chunks, "eval_every": base.eval_every,
                        "eval_episodes": base.eval_episodes, "checkpoint_every": 10,
                        "progress": not quick}}
    log(f"overhead of evaluation, progress and checkpoints at N={n:,}: "
        f"{t_bare:.2f} s -> {t_default:.2f} s ({100 * out['overhead']:+.1f}%)")
    return out


def run_benchmark(args: argparse.Namespace, log: Log = print) -> dict[str, Any]:
    bl = benchlib
    quick = args.quick
    max_envs = args.max_envs or (QUICK_MAX_ENVS if quick else DEFAULT_MAX_ENVS)
    sizes = benchlib.env_counts(max_envs, base=16 if quick else 4)
    target_s = args.target_s or (0.02 if quick else 0.5)
    repeats = args.repeats or (2 if quick else 3)
    numpy_budget = args.numpy_budget_s or (5.0 if quick else 90.0)
    env_kwargs = _env_kwargs(args)
    baselines = args.algo == "q_learning"

    info = bl.system_info()
    load_start = benchlib.load_average()
    log(f"throughput: {args.algo} on {args.env} {env_kwargs or ''}, N in {sizes}; "
        f"device {info['device']['description']}")
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    if not args.skip_throughput:
        spec = load_env(args.env, env_kwargs)
        records += measure_jaxq(spec, args.algo, sizes, target_s, repeats, args.seed, log)
        if baselines:
            records += measure_numpy(spec, sizes, target_s, repeats, args.seed, numpy_budget, log)
            records.append(measure_classic(spec, max(target_s, 0.02), repeats, args.seed, log))
        else:
            log(f"  (no NumPy / classic baselines for algo {args.algo!r}: they are Q-learning)")
    overhead = None if args.skip_throughput else measure_overhead(quick, args.seed, log)
    elapsed = time.perf_counter() - t0
    log(f"done in {elapsed:.1f} s")
    argv = getattr(args, "argv", None)
    cmd = ["jaxq", "bench"] + (sys.argv[1:] if argv is None else list(argv))
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
            "learner of `jaxq/bench.py` (`NumpyQLearner`), one thread. *cpu/wall*: process "
            "CPU seconds per wall second (XLA:CPU may use several cores).",
            "",
        ]
        jx, npy = _by_n(results, "jaxq"), _by_n(results, "numpy")
        header = ["N", "jaxq steps/s", "chunk_iters", "compile (s)", "cpu/wall",
                  "NumPy steps/s", "cpu/wall", "jaxq / NumPy"]
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
    if ov:
        d = ov["defaults"]
        lines += [
            "### What the conveniences cost",
            "",
            f"`jaxq.train` at N = {ov['num_envs']:,} ({ov['env_steps']:,} env steps): "
            f"{benchlib.seconds(ov['bare_s'])} s with nothing but the learning (5 chunks, no evaluation, "
            f"no progress bar, no checkpoints), {benchlib.seconds(ov['defaults_s'])} s at the default "
            f"frequencies ({d['num_chunks']} chunks, a {d['eval_episodes']:,}-episode greedy "
            f"evaluation every {d['eval_every']} chunks, a checkpoint every "
            f"{d['checkpoint_every']} chunks" + (", the progress bar" if d["progress"] else "")
            + f"): **{100 * ov['overhead']:+.1f}%**"
            + (f" (median over {len(ov['rounds'])} interleaved rounds; per round "
               + ", ".join(f"{100 * (r['defaults_s'] / r['bare_s'] - 1):+.1f}%"
                           for r in ov["rounds"]) + "; times are medians)"
               if ov.get("rounds") else "") + ".",
            "",
        ]
    la = results.get("load_average") or {}
    load = (f", 1-min load average {la['start']:g} at start / {la['end']:g} at end"
            if la.get("start") is not None and la.get("end") is not None else "")
    lines.append(
        f"Run {info['date_utc']} on {info['device']['description']}; "
        f"{bl.versions_line(info)}; `{cfg['command']}` ({results['elapsed_s']:.0f} s{load}). "
        f"Raw: `results/{EXPERIMENT}/results.json`.")
    return "\n".join(lines) + "\n"


def run(argv: list[str] | None = None, log: Log = print) -> dict[str, Any]:
    """``main`` returning the results dict (the profile summary with ``--profile``)."""
    args = parse_args(argv)
    args.argv = argv
    if args.profile:
        return run_profile(args, log)
    return benchlib.run_experiment(args, EXPERIMENT, run_benchmark, render_markdown, log=log)


def main(argv: list[str] | None = None) -> int:
    """``jaxq bench [options]``; returns the exit code."""
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
