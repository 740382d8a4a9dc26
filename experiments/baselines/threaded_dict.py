"""The seed's baseline, for comparison only: Python threads sharing a dict Q-table behind
a lock (the textbook parallel Q-learning).

K threads, each with its own Gymnasium environment (default ``FrozenLake-v1``, map 8x8,
slippery, 200-step time limit as jaxq's ``FrozenLake8x8-v1``; Gymnasium registers 100),
act epsilon-greedily on one shared ``dict`` ``{(s, a): value}`` (greedy ties broken
uniformly at random) and apply the one-step Q-learning update

    Q(s, a) <- Q(s, a) + lr * (r + gamma * (1 - terminated) * max_a' Q(s', a') - Q(s, a))

as one read-modify-write under a ``threading.Lock``. Acting reads the dict without the
lock (a dict lookup is atomic under the GIL; a slightly stale row only changes which
action is tried), so the lock guards exactly the update, as in the textbook design.

It is written to be reasonably fast, not to lose: per-thread ``random.Random`` (cheaper
per call than NumPy's generator for single numbers), actions and states as plain ints,
the dict pre-filled so lookups never miss, and no work under the lock beyond the update.
What limits it is the design: every step is Python bytecode under CPython's global
interpreter lock, so threads take turns rather than run in parallel, and the shared lock
adds contention on top.

    python experiments/baselines/threaded_dict.py --threads 1 2 4 --steps 200000
    python experiments/baselines/threaded_dict.py --map 4x4 --no-slippery --steps 20000
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any

import numpy as np


def make_env(map_name: str = "8x8", is_slippery: bool = True, max_episode_steps: int = 200):
    """Gymnasium's FrozenLake (``gym.make``, wrappers included, as a user would)."""
    import gymnasium as gym

    return gym.make("FrozenLake-v1", map_name=map_name, is_slippery=is_slippery,
                    max_episode_steps=max_episode_steps)


def run(num_threads: int, total_steps: int, seed: int = 0, *, map_name: str = "8x8",
        is_slippery: bool = True, max_episode_steps: int = 200, gamma: float = 0.99,
        lr: float = 0.1, epsilon: float = 0.1) -> dict[str, Any]:
    """Train with ``num_threads`` threads for ``total_steps`` env steps in all (split as
    evenly as possible); return the rate, the table and the episode counts.

    ``steps_per_s`` is total steps / wall time from the moment all threads are released
    (environments already built and reset) until the last one finishes.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    envs = [make_env(map_name, is_slippery, max_episode_steps) for _ in range(num_threads)]
    S, A = int(envs[0].observation_space.n), int(envs[0].action_space.n)
    q: dict[tuple[int, int], float] = {(s, a): 0.0 for s in range(S) for a in range(A)}
    lock = threading.Lock()
    start = threading.Barrier(num_threads + 1)
    shares = [total_steps // num_threads + (i < total_steps % num_threads)
              for i in range(num_threads)]
    stats = [dict(steps=0, episodes=0, successes=0, error=None) for _ in range(num_threads)]
    gamma, lr, epsilon = float(gamma), float(lr), float(epsilon)
    actions = tuple(range(A))

    def worker(i: int) -> None:
        env, st = envs[i], stats[i]
        rng = random.Random(seed * 1_000_003 + i)
        s, _ = env.reset(seed=seed * 1_000_003 + i)
        s = int(s)
        episodes = successes = 0
        try:
            start.wait()
            for _ in range(shares[i]):
                if rng.random() < epsilon:
                    a = rng.randrange(A)
                else:
                    row = [q[(s, b)] for b in actions]
                    best = max(row)
                    ties = [b for b in actions if row[b] == best]
                    a = ties[0] if len(ties) == 1 else ties[rng.randrange(len(ties))]
                s2, r, term, trunc, _ = env.step(a)
                s2 = int(s2)
                with lock:
                    if term:
                        target = r
                    else:
                        target = r + gamma * max([q[(s2, b)] for b in actions])
                    old = q[(s, a)]
                    q[(s, a)] = old + lr * (target - old)
                if term or trunc:
                    episodes += 1
                    successes += bool(term and r > 0)
                    s, _ = env.reset()
                    s = int(s)
                else:
                    s = s2
        except BaseException as e:  # noqa: BLE001 - reported by run()
            st["error"] = f"{type(e).__name__}: {e}"
        st.update(steps=shares[i], episodes=episodes, successes=successes)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(num_threads)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for env in envs:
        env.close()
    errors = [st["error"] for st in stats if st["error"]]
    if errors:
        raise RuntimeError(f"a worker thread failed: {errors[0]}")
    table = np.array([[q[(s, a)] for a in range(A)] for s in range(S)], dtype=np.float64)
    steps = sum(st["steps"] for st in stats)
    return {
        "num_threads": num_threads,
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall if wall > 0 else float("nan"),
        "episodes": sum(st["episodes"] for st in stats),
        "successes": sum(st["successes"] for st in stats),
        "per_thread_steps": [st["steps"] for st in stats],
        "q_table": table,
        "config": {"env": "FrozenLake-v1", "map_name": map_name, "is_slippery": is_slippery,
                   "max_episode_steps": max_episode_steps, "gamma": gamma, "lr": lr,
                   "epsilon": epsilon, "seed": seed},
    }


def greedy_reaches_goal(q: np.ndarray, map_name: str = "4x4", max_steps: int = 100) -> bool:
    """Whether the greedy policy of ``q`` (first maximiser) reaches the goal on the
    non-slippery map: a check that the table learned something, for tests and the CLI."""
    env = make_env(map_name, is_slippery=False, max_episode_steps=max_steps)
    s, _ = env.reset(seed=0)
    try:
        for _ in range(max_steps):
            s, r, term, trunc, _ = env.step(int(np.argmax(q[int(s)])))
            if term or trunc:
                return bool(term and r > 0)
        return False
    finally:
        env.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--steps", type=int, default=200_000, help="env steps in all, per run")
    p.add_argument("--map", default="8x8", choices=["4x4", "8x8"])
    p.add_argument("--no-slippery", action="store_true")
    p.add_argument("--max-episode-steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for k in args.threads:
        out = run(k, args.steps, args.seed, map_name=args.map,
                  is_slippery=not args.no_slippery, max_episode_steps=args.max_episode_steps)
        extra = ""
        if args.no_slippery:
            extra = f", greedy reaches goal: {greedy_reaches_goal(out['q_table'], args.map)}"
        print(f"threads={k}: {out['steps_per_s']:,.0f} steps/s ({out['steps']:,} steps in "
              f"{out['wall_s']:.2f} s, {out['episodes']:,} episodes, "
              f"{out['successes']:,} successes{extra})")


if __name__ == "__main__":
    main()
