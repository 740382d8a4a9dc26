"""The optimized vectorized NumPy baseline: the fastest host Q-learner we could write for
the batched algorithm jaxq runs, for comparison only (``experiments/bench.py``,
``throughput.py``, ``time_to_solution.py``).

The same batched algorithm on the host: N envs as arrays, the exact ``[S, A, K]`` model
from ``jaxq.tabular_model``, one ``random_raw`` draw per step (per block of envs),
epsilon-greedy with uniformly random ties, per-cell *mean* of the step's TD errors
(``np.add.at``; it measured faster than ``np.bincount`` with weights), auto-reset at the
time limit. Identical semantics to jaxq's ``aggregation="mean"`` one-step Q-learning, bit
conventions included (16-bit coins for exploring and choosing, 24-bit uniforms for the
dynamics). Its speed comes from (a) per-step tables of size S*A*K instead of per-env work
where the model is small (the greedy action's tie structure per state, and the TD target
per outcome, so an env step is eight gathers, two ``np.add.at`` and ~30 element-wise
passes), (b) preallocated buffers (``out=``), (c) blocks of 16,384 envs (cache-sized),
all applied to one Q before the update. Single-threaded, as NumPy is.
(``numpy_plain.py`` is the plain version a user would write first.)
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: benchlib
import benchlib  # noqa: E402

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

    def __init__(self, spec: benchlib.EnvSpec, num_envs: int, gamma: float = benchlib.GAMMA,
                 lr: float = benchlib.LR, epsilon: float = benchlib.EPSILON, seed: int = 0,
                 block: int = 16_384, dense: bool | None = None):
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


def measure_numpy(spec: benchlib.EnvSpec, sizes: list[int], target_s: float, repeats: int,
                  seed: int, budget_s: float, log: Callable[[str], None],
                  learner_cls: Callable[..., Any] | None = None,
                  impl: str = "numpy") -> list[dict[str, Any]]:
    """Vectorized NumPy steps/s at each N (``benchlib.time_scaled``); stops once the
    sizes so far took ``budget_s``."""
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
            timing = benchlib.time_scaled(run, target_s, repeats=repeats, guess=guess)
            med, best = benchlib.stats(list(timing.times_s))
            rate = n * timing.iters / med
            rec.update(steps_per_s=rate, T=timing.iters, repeats=timing.repeats, median_s=med,
                       best_s=best, times_s=list(timing.times_s),
                       cpu_per_wall=sum(cpu[-repeats:]) / sum(timing.times_s),
                       episodes=learner.episodes, successes=learner.successes,
                       env_steps=learner.steps * n)
            if hasattr(learner, "dense"):
                rec.update(dense=learner.dense, block=learner.B)
            log(f"  {impl:<8} N={n:<7} T={timing.iters:<8} {benchlib.human(rate):>7} steps/s")
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  {impl:<8} N={n:<7} ERROR {rec['error']}")
        records.append(rec)
    return records
