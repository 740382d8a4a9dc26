"""The classic loop: textbook tabular Q-learning, one Gymnasium environment stepped from
Python with a NumPy ``[S, A]`` table, for comparison only (``experiments/bench.py``,
``throughput.py``, ``time_to_solution.py``).

``gymnasium.make`` (FrozenLake-v1 ``map_name="8x8"`` with ``max_episode_steps=200``, i.e.
FrozenLake8x8-v1's limit; Taxi-v4 for jaxq's Taxi-v3, Gymnasium 1.3 having retired v3
while v4 with ``is_rainy=False`` has v3's dynamics; CliffWalking-v1 for jaxq's
CliffWalking-v0 and -v1, no time limit in either), a Python loop over steps,
epsilon-greedy with random ties (``np.flatnonzero(row == row.max())``, one uniform picks
among them), the tabular Q-learning update. Environments without a Gymnasium twin
(Maze-v0) run as a ``gymnasium.Env`` over jaxq's exact model (``ModelEnv``) under
``TimeLimit``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: benchlib
import benchlib  # noqa: E402


def _gymnasium_id(env_id: str) -> tuple[str, dict[str, Any]] | None:
    import gymnasium as gym

    if env_id == "FrozenLake8x8-v1":  # jaxq's 8x8 id: Gymnasium's map with its 200-step limit
        return "FrozenLake-v1", {"map_name": "8x8", "max_episode_steps": 200}
    if env_id == "FrozenLake-v1":
        return "FrozenLake-v1", {}
    if env_id == "Taxi-v3":  # Gymnasium 1.3 retired v3; v4 (is_rainy=False) has its dynamics
        return ("Taxi-v4" if "Taxi-v4" in gym.registry else "Taxi-v3"), {}
    if env_id in ("CliffWalking-v0", "CliffWalking-v1"):  # same dynamics; >= 1.2 says v1
        return ("CliffWalking-v1" if "CliffWalking-v1" in gym.registry
                else "CliffWalking-v0"), {}
    return None


class ModelEnv:
    """A Gymnasium environment over jaxq's exact model, for ids without a Gymnasium twin
    (wrapped in ``TimeLimit`` by ``make_classic_env``). Pure Python per step, as the
    toy-text environments are."""

    def __new__(cls, spec: benchlib.EnvSpec):
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


def make_classic_env(spec: benchlib.EnvSpec):
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

    def __init__(self, env, gamma: float = benchlib.GAMMA, lr: float = benchlib.LR,
                 epsilon: float = benchlib.EPSILON, seed: int = 0):
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

    def run_for(self, seconds: float, block: int = 256) -> tuple[int, float]:
        """Steps in blocks of ``block`` until ``seconds`` of wall time have passed (at
        least one block); returns ``(steps, elapsed_s)``. The loop's speed is per env
        step, so a short fixed budget measures it as well as a long run does, and the
        budget bounds a round's time whatever the environment."""
        import time

        steps, t0 = 0, time.perf_counter()
        while True:
            self.run(block)
            steps += block
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                return steps, elapsed


def measure_classic(spec: benchlib.EnvSpec, target_s: float, repeats: int, seed: int,
                    log: Callable[[str], None]) -> dict[str, Any]:
    rec: dict[str, Any] = {"impl": "classic", "num_envs": 1}
    try:
        env, gym_id = make_classic_env(spec)
        learner = ClassicQLearning(env, seed=seed)
        learner.run(2000)  # warm-up
        timing = benchlib.time_scaled(learner.run, target_s, repeats=repeats, guess=10_000)
        med, best = benchlib.stats(list(timing.times_s))
        rate = timing.iters / med
        rec.update(steps_per_s=rate, gymnasium_id=gym_id, T=timing.iters,
                   repeats=timing.repeats, median_s=med, best_s=best,
                   times_s=list(timing.times_s), episodes=learner.episodes,
                   successes=learner.successes, env_steps=learner.steps)
        log(f"  classic  N=1       T={timing.iters:<8} {benchlib.human(rate):>7} steps/s "
            f"({gym_id})")
    except Exception as e:  # noqa: BLE001
        rec["error"] = f"{type(e).__name__}: {e}"
        log(f"  classic  ERROR {rec['error']}")
    return rec
