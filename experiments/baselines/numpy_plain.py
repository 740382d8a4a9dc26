"""The plain vectorized NumPy baseline: batched one-step Q-learning over N environments,
written the way an RL student would write it with NumPy, for comparison only.

Same algorithm and semantics as jaxq's ``aggregation="mean"`` Q-learning with constant lr
and epsilon (and as ``NumpyQLearner`` in ``numpy_vectorized.py``), but in clear, idiomatic
NumPy: the N envs' states as an array, fresh ``rng.random`` / ``rng.integers`` draws each
step, fancy indexing into the exact ``[S, A, K]`` model, ``np.bincount`` for the per-cell
mean of the TD errors. No per-step tables, no ``out=`` buffers, no cache blocking.
``NumpyQLearner`` is the optimized host baseline; this one is what a user would have
before reaching for jaxq, so the benchmark reports jaxq's speed against both.

    python experiments/baselines/numpy_plain.py                    # FrozenLake8x8, N = 1 .. 262144
    python experiments/baselines/numpy_plain.py --sizes 1 64 --target-s 0.3 --with-numpy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # experiments/: benchlib
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402
import numpy_vectorized  # noqa: E402

IMPL = "numpy_plain"


class PlainNumpyQLearner:
    """Batched one-step Q-learning over ``num_envs`` copies of ``spec``'s tabular MDP.

    Per batched step, for every env: epsilon-greedy action on Q[s] (greedy ties broken
    uniformly at random), one outcome of the exact model drawn by inverse CDF, TD error
    ``r + gamma * (1 - terminated) * max_a Q[s', a] - Q[s, a]`` (bootstrapping through
    time-limit truncations, as jaxq does); then every touched cell moves by ``lr *`` the
    mean of its TD errors, all computed against the same Q. An episode ends on termination
    or after ``spec.max_steps`` steps, and the env restarts from the model's start
    distribution.

    Counters: ``steps`` (batched steps, of N env steps each), ``episodes`` (finished episodes,
    terminated or truncated) and ``successes`` (terminations with a positive reward).
    """

    def __init__(self, spec: benchlib.EnvSpec, num_envs: int, gamma: float = benchlib.GAMMA,
                 lr: float = benchlib.LR, epsilon: float = benchlib.EPSILON, seed: int = 0):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.gamma, self.lr, self.epsilon = float(gamma), float(lr), float(epsilon)
        self.max_steps = int(spec.max_steps)

        # the model, once: next states, rewards, terminal flags [S, A, K], and the CDF of
        # each state-action's outcomes (normalized, so its last entry is exactly 1)
        self.next_state = spec.next_state.astype(np.int64)
        self.reward = spec.reward.astype(np.float64)
        self.terminated = spec.terminated.astype(bool)
        self.cdf = np.cumsum(spec.prob.astype(np.float64), axis=-1)
        self.cdf /= self.cdf[..., -1:]
        self.initial = np.asarray(spec.model.initial, dtype=np.float64)
        self.initial /= self.initial.sum()
        S, A, _ = spec.prob.shape
        self.num_states, self.num_actions = S, A

        self.rng = np.random.default_rng(seed)
        self.q = np.zeros((S, A))
        self.state = self._reset(self.num_envs)
        self.time = np.zeros(self.num_envs, dtype=np.int64)
        self.steps = 0
        self.episodes = 0
        self.successes = 0

    def _reset(self, n: int) -> np.ndarray:
        """``n`` start states drawn from the model's start distribution."""
        return self.rng.choice(self.num_states, size=n, p=self.initial)

    def q_table(self) -> np.ndarray:
        """Q as ``[S, A]`` (a copy)."""
        return self.q.copy()

    def run(self, steps: int) -> None:
        """``steps`` batched steps (N env steps each)."""
        for _ in range(int(steps)):
            self.step()

    def step(self) -> None:
        """One step of all N envs, then one update of Q."""
        N, S, A = self.num_envs, self.num_states, self.num_actions
        s, q, rng = self.state, self.q, self.rng

        # epsilon-greedy; among the greedy actions, the one with the largest random key
        q_s = q[s]  # [N, A]
        ties = q_s == q_s.max(axis=1, keepdims=True)
        greedy = np.argmax(np.where(ties, rng.random((N, A)), -1.0), axis=1)
        explore = rng.random(N) < self.epsilon
        a = np.where(explore, rng.integers(A, size=N), greedy)

        # sample an outcome by inverse CDF: k = number of CDF entries <= u
        u = rng.random(N)
        k = (self.cdf[s, a] <= u[:, None]).sum(axis=1)
        s_next = self.next_state[s, a, k]
        r = self.reward[s, a, k]
        term = self.terminated[s, a, k]

        # TD errors against the current Q, then the per-cell mean applied with lr
        target = r + self.gamma * q[s_next].max(axis=1) * (1.0 - term)
        td = target - q[s, a]
        cell = s * A + a
        td_sum = np.bincount(cell, weights=td, minlength=S * A)
        count = np.bincount(cell, minlength=S * A)
        q += self.lr * (td_sum / np.maximum(count, 1)).reshape(S, A)

        # auto-reset on termination or time limit
        self.time += 1
        done = term | (self.time >= self.max_steps)
        s_next[done] = self._reset(int(done.sum()))
        self.time[done] = 0
        self.state = s_next
        self.steps += 1  # batched steps, as NumpyQLearner counts them
        self.episodes += int(done.sum())
        self.successes += int((term & (r > 0)).sum())


def measure_plain_numpy(spec: benchlib.EnvSpec, sizes: list[int], target_s: float,
                        repeats: int, seed: int, budget_s: float,
                        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Plain NumPy steps/s at each N, timed exactly as ``numpy_vectorized.measure_numpy``
    times the optimized learner (records with ``impl="numpy_plain"``)."""
    return numpy_vectorized.measure_numpy(spec, sizes, target_s, repeats, seed, budget_s, log,
                                          learner_cls=PlainNumpyQLearner, impl=IMPL)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="FrozenLake8x8-v1")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 4096, 65536, 262144])
    p.add_argument("--target-s", type=float, default=0.3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, default=600.0)
    p.add_argument("--with-numpy", action="store_true",
                   help="also measure numpy_vectorized.NumpyQLearner (the optimized one)")
    args = p.parse_args(argv)
    spec = benchlib.load_env(args.env)
    records = measure_plain_numpy(spec, args.sizes, args.target_s, args.repeats, args.seed,
                                  args.budget_s, print)
    if args.with_numpy:
        records += numpy_vectorized.measure_numpy(spec, args.sizes, args.target_s,
                                                  args.repeats, args.seed, args.budget_s, print)
    return records


if __name__ == "__main__":
    main()
