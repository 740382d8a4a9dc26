"""Sutton & Barto (2nd ed.) Example 6.6 / Figure 6.4 and Example 6.7 / Figure 6.5 with
jaxq's own learners, every seed of a figure in one vmapped, compiled call.

* **Cliff walking** (Example 6.6, ``CliffWalking-v1``): epsilon-greedy with eps = 0.1,
  alpha = 0.5, gamma = 1, 500 episodes; Sarsa vs Q-learning vs Expected Sarsa. The figure
  is the online *sum of rewards per episode* (falls included: -100 and back to the start,
  the episode goes on), averaged over seeds. After training, each seed's final greedy
  policy is rolled out from the start (state 36) on the deterministic model for at most
  100 steps; it is "the 13-step optimal path" when it reaches the goal in exactly 13
  steps without a fall (return -13; that path is unique: up, 11 x right, down).
* **Maximization bias** (Example 6.7, ``MaximizationBias-v0``, 10 actions in B with
  rewards N(-0.1, 1)): eps = 0.1, alpha = 0.1, gamma = 1, 300 episodes; Q-learning vs
  Double Q-learning; the figure is the share of episodes whose action in A was LEFT
  (the optimal policy explores LEFT with probability eps / 2 = 5%).

How it runs. Each seed is one jaxq learner (``TrainConfig(num_envs=1,
lr_schedule="constant", epsilon_schedule="constant", eval_every=0, gamma=1.0)``, built by
``jaxq.training.build_learner``); the script only drives ``learner.init`` / ``learner.step``:
a ``lax.while_loop`` over chunks of ``--chunk-steps`` steps (a ``lax.scan``) runs until
the seed has finished the required number of episodes, and each step's ``Transition``
(s, a, r, terminated, truncated) is recorded on device into fixed-size ``[episodes]``
arrays (reward sum, length, and an event count: falls for the cliff, LEFT-in-A for the
maximization bias) indexed by the seed's own episode counter; steps after the last
episode are dropped. ``jax.vmap`` over seeds and ``jax.jit`` make one program per
(problem, rule). No Q-learning is written here.

Ties in the final greedy roll-out are broken uniformly at random with a fixed key
(``--seed`` + 1_000_003, one uniform per seed per step, via ``jaxq.explore.greedy``);
the share of seeds whose roll-out met a tie on the way is reported
(``greedy_path_tie_fraction``).

Outputs (``--out``, default ``experiments/results/sutton_barto``): ``results.json`` (plus
an archived ``<device>-<date>.json`` copy; machine, device and jax/jaxlib versions from
``benchlib.system_info``), ``cliff_returns.png`` and ``maxbias_left.png``.

    python experiments/sutton_barto.py                 # 1000 seeds (~30 s on 2 CPU cores)
    python experiments/sutton_barto.py --seeds 10000   # smoother curves (Fig. 6.5 used 10,000 runs)
    python experiments/sutton_barto.py --quick         # 32 seeds, into a temp dir unless --out
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

EXPERIMENT = "sutton_barto"
SCHEMA_VERSION = 1
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / EXPERIMENT  # beside this script
DEFAULT_SEEDS = 1000
QUICK_SEEDS = 32
TIE_KEY_OFFSET = 1_000_003

CLIFF = {
    "env_id": "CliffWalking-v1",
    "env_kwargs": {},
    "rules": ["sarsa", "q_learning", "expected_sarsa"],
    "episodes": 500,
    "lr": 0.5,
    "epsilon": 0.1,
    "gamma": 1.0,
    "summary_episodes": [101, 500],  # 1-based, inclusive
    "greedy_max_steps": 100,
    "smooth_window": 10,
}
MAXBIAS = {
    "env_id": "MaximizationBias-v0",
    "env_kwargs": {"num_b_actions": 10, "mean": -0.1, "std": 1.0},
    "rules": ["q_learning", "double_q"],
    "episodes": 300,
    "lr": 0.1,
    "epsilon": 0.1,
    "gamma": 1.0,
}
RULE_NAMES = {"sarsa": "Sarsa", "q_learning": "Q-learning", "expected_sarsa": "Expected Sarsa",
              "double_q": "Double Q-learning"}
ARROWS = "^>v<"  # CliffWalking actions: 0 UP, 1 RIGHT, 2 DOWN, 3 LEFT


# ---------------------------------------------------------------------------------------
# driving jaxq's learner episode by episode
# ---------------------------------------------------------------------------------------
class Record(NamedTuple):
    """Per-episode statistics of one seed, ``[episodes]`` each."""

    ret: Any  # float32: sum of rewards
    length: Any  # int32: steps
    event: Any  # int32: falls (cliff) / LEFT taken in A (max-bias)


def make_config(problem: dict[str, Any], algo: str, max_steps: int):
    from jaxq.config import TrainConfig

    return TrainConfig(
        env_id=problem["env_id"], env_kwargs=dict(problem["env_kwargs"]), algo=algo,
        num_envs=1, n_step=1, total_steps=max_steps, num_chunks=1, gamma=problem["gamma"],
        lr=problem["lr"], lr_schedule="constant", lr_end=problem["lr"],
        epsilon=problem["epsilon"], epsilon_schedule="constant",
        epsilon_end=problem["epsilon"], exploration="epsilon_greedy", q_init=0.0,
        eval_every=0, eval_episodes=1,
    )


def make_run(learner, num_episodes: int, max_steps: int, chunk_steps: int,
             event: Callable) -> Callable:
    """``run(keys) -> (Record [seeds, E], q [seeds, S, A], episodes [seeds], steps [seeds])``,
    jitted; one jaxq learner per key. ``event(transition) -> int32`` (num_envs = 1)."""
    import jax
    import jax.numpy as jnp

    hp = learner.config.hparams()
    E = num_episodes

    def one_seed(key):
        c = learner.init(key, hp)
        rec = Record(jnp.zeros(E, jnp.float32), jnp.zeros(E, jnp.int32), jnp.zeros(E, jnp.int32))

        def step(state, _):
            c, rec, ep = state
            c, _, tr = learner.step(c, hp)
            done = (tr.terminated | tr.truncated)[0]
            # ep == E (all episodes done) is out of range: mode="drop" ignores the write
            rec = Record(rec.ret.at[ep].add(tr.r[0], mode="drop"),
                         rec.length.at[ep].add(1, mode="drop"),
                         rec.event.at[ep].add(event(tr), mode="drop"))
            return (c, rec, ep + done.astype(jnp.int32)), None

        def cond(state):
            _, _, ep, t = state
            return (ep < E) & (t < max_steps)

        def body(state):
            c, rec, ep, t = state
            (c, rec, ep), _ = jax.lax.scan(step, (c, rec, ep), None, length=chunk_steps)
            return c, rec, ep, t + chunk_steps

        c, rec, ep, t = jax.lax.while_loop(cond, body, (c, rec, jnp.int32(0), jnp.int32(0)))
        return rec, learner.estimate(c), ep, jnp.sum(rec.length)

    return jax.jit(jax.vmap(one_seed))


def make_greedy_rollout(env, params, start: int, max_steps: int) -> Callable:
    """``rollout(q [seeds, S, A], keys) -> dict`` of per-seed greedy paths on the model
    (deterministic dynamics: outcome 0), ties broken by ``jaxq.explore.greedy``."""
    import jax
    import jax.numpy as jnp

    from jaxq.explore import col_max, greedy, rows_to_columns

    def one(q, key):
        us = jax.random.uniform(key, (max_steps,))

        def body(st, u):
            s, done, ret, n, falls, tie = st
            cols = rows_to_columns(q[s])
            a = greedy(cols, u)
            m = col_max(cols)
            tied = sum((c == m).astype(jnp.int32) for c in cols) > 1
            o = env.outcomes(s, a, params)
            s2, r, term = o.next_state[0], o.reward[0], o.terminated[0]
            live = ~done
            out = (jnp.where(live, s, -1), jnp.where(live, a, -1))
            st = (jnp.where(live, s2, s), done | (live & term), ret + jnp.where(live, r, 0.0),
                  n + live.astype(jnp.int32), falls + (live & (r <= -100.0)).astype(jnp.int32),
                  tie | (live & tied))
            return st, out

        st0 = (jnp.int32(start), jnp.bool_(False), jnp.float32(0), jnp.int32(0), jnp.int32(0),
               jnp.bool_(False))
        (s, done, ret, n, falls, tie), (states, actions) = jax.lax.scan(body, st0, us)
        return {"reached": done, "return": ret, "length": n, "falls": falls, "tie": tie,
                "states": states, "actions": actions}

    return jax.jit(jax.vmap(one))


def seed_keys(seed: int, n: int):
    import jax

    return jax.random.split(jax.random.key(seed), n)


def run_rule(problem: dict[str, Any], algo: str, keys, max_steps: int, chunk_steps: int,
             event_name: str, log: Callable[[str], None] = print
             ) -> tuple[dict[str, Any], Any, dict[str, float]]:
    import jax
    import jax.numpy as jnp

    from jaxq.training import build_learner

    cfg = make_config(problem, algo, max_steps)
    learner = build_learner(cfg)
    from jaxq.envs.textbook import LEFT, STATE_A

    def event(tr):  # per step, num_envs = 1: a fall (cliff) / LEFT taken in A (max-bias)
        if event_name == "fall":
            return (tr.r[0] <= -100.0).astype(jnp.int32)
        return ((tr.s[0] == STATE_A) & (tr.a[0] == LEFT)).astype(jnp.int32)

    run = make_run(learner, problem["episodes"], max_steps, chunk_steps, event)
    compiled, compile_s = benchlib.compile_jitted(run, keys)
    t0 = time.perf_counter()
    rec, q, ep, steps = benchlib.block(compiled(keys))
    run_s = time.perf_counter() - t0
    rec, q, ep, steps = jax.device_get((rec, q, ep, steps))
    out = {"ret": np.asarray(rec.ret, np.float64), "length": np.asarray(rec.length),
           "event": np.asarray(rec.event), "episodes_done": np.asarray(ep),
           "steps": np.asarray(steps, np.int64)}
    timing = {"compile_s": compile_s, "run_s": run_s,
              "env_steps": int(out["steps"].sum()),
              "unfinished_seeds": int((out["episodes_done"] < problem["episodes"]).sum())}
    if timing["unfinished_seeds"]:
        log(f"  WARNING: {problem['env_id']} {algo}: {timing['unfinished_seeds']} seed(s) hit "
            f"--max-steps {max_steps} before {problem['episodes']} episodes; their later "
            "episodes are recorded as zeros")
    return out, q, timing


# ---------------------------------------------------------------------------------------
# the two experiments
# ---------------------------------------------------------------------------------------
def path_key(states: np.ndarray, actions: np.ndarray) -> tuple[tuple[int, int], ...]:
    keep = states >= 0
    return tuple(zip(states[keep].tolist(), actions[keep].tolist()))


def ascii_path(path: tuple[tuple[int, int], ...]) -> str:
    """The 4 x 12 grid with the path's actions as arrows; C cliff, G goal, . elsewhere."""
    from jaxq.envs.cliff_walking import GOAL, NCOL, NROW

    grid = [["." for _ in range(NCOL)] for _ in range(NROW)]
    for c in range(1, NCOL - 1):
        grid[NROW - 1][c] = "C"
    grid[GOAL // NCOL][GOAL % NCOL] = "G"
    for s, a in path:
        grid[s // NCOL][s % NCOL] = ARROWS[a]
    return "\n".join("    " + " ".join(row) for row in grid)


def cliff_experiment(keys, args, log) -> dict[str, Any]:
    import jax

    from jaxq.envs import make
    from jaxq.envs.cliff_walking import START

    p = CLIFF
    lo, hi = p["summary_episodes"]
    env, params = make(p["env_id"], **p["env_kwargs"])
    rollout = make_greedy_rollout(env, params, START, p["greedy_max_steps"])
    tie_keys = seed_keys(args.seed + TIE_KEY_OFFSET, keys.shape[0])
    out: dict[str, Any] = {}
    for algo in p["rules"]:
        rec, q, timing = run_rule(p, algo, keys, args.max_steps, args.chunk_steps, "fall", log)
        g = jax.device_get(rollout(q, tie_keys))
        optimal = g["reached"] & (g["length"] == 13) & (g["falls"] == 0) & (g["return"] == -13.0)
        per_seed = rec["ret"][:, lo - 1:hi].mean(axis=1)
        paths = Counter(path_key(s, a) for s, a in zip(g["states"], g["actions"]))
        top, top_n = paths.most_common(1)[0]
        stuck = g["states"][:, -1] == g["states"][:, -2]
        reached_len = Counter(int(n) for n, r in zip(g["length"], g["reached"]) if r)
        n = keys.shape[0]
        out[algo] = {
            "mean_return_101_500": float(per_seed.mean()),
            "mean_return_101_500_sem": float(per_seed.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            "greedy_path_13_fraction": float(optimal.mean()),
            "greedy_path_reached_fraction": float(g["reached"].mean()),
            "greedy_path_tie_fraction": float(g["tie"].mean()),
            "greedy_path_length_counts": {str(k): v for k, v in sorted(reached_len.items())},
            "greedy_path_unreached_count": int((~g["reached"]).sum()),
            # a greedy action that bumps into a wall keeps the deterministic roll-out in place
            "greedy_path_wall_loop_count": int((~g["reached"] & stuck).sum()),
            "greedy_path_mean_return": float(g["return"].mean()),
            "most_common_path": {"fraction": top_n / n, "length": len(top),
                                 "states": [s for s, _ in top], "actions": [a for _, a in top],
                                 "ascii": ascii_path(top)},
            "return_per_episode": rec["ret"].mean(axis=0).tolist(),
            "falls_per_episode": rec["event"].mean(axis=0).tolist(),
            "length_per_episode": rec["length"].mean(axis=0).tolist(),
            "mean_falls_101_500": float(rec["event"][:, lo - 1:hi].mean()),
            "mean_length_101_500": float(rec["length"][:, lo - 1:hi].mean()),
            "steps_per_seed_mean": float(rec["steps"].mean()),
            "steps_per_seed_max": int(rec["steps"].max()),
            "timing": timing,
        }
        log(f"  cliff {RULE_NAMES[algo]:<15} mean return (ep {lo}-{hi}) "
            f"{out[algo]['mean_return_101_500']:8.2f} ± {out[algo]['mean_return_101_500_sem']:.2f}"
            f"   greedy 13-step path {100 * out[algo]['greedy_path_13_fraction']:5.1f}% of seeds"
            f"   ({timing['env_steps'] / 1e6:.1f}M steps, compile {timing['compile_s']:.1f} s,"
            f" run {timing['run_s']:.1f} s)")
    return out


def maxbias_experiment(keys, args, log) -> dict[str, Any]:
    p = MAXBIAS
    out: dict[str, Any] = {}
    for algo in p["rules"]:
        rec, _, timing = run_rule(p, algo, keys, args.max_steps, args.chunk_steps, "left", log)
        left = rec["event"].astype(np.float64)  # 0/1: A is visited once per episode
        pct = 100.0 * left.mean(axis=0)
        peak = int(np.argmax(pct))
        out[algo] = {
            "pct_left": pct.tolist(),
            "peak_pct_left": float(pct[peak]),
            "peak_episode": peak + 1,
            "mean_pct_left_1_100": float(pct[:100].mean()),
            "mean_pct_left_201_300": float(pct[200:300].mean()),
            "timing": timing,
        }
        log(f"  maxbias {RULE_NAMES[algo]:<17} % left: ep1 {pct[0]:5.1f}  peak {pct[peak]:5.1f}"
            f" (ep {peak + 1})  ep100 {pct[99]:5.1f}  ep300 {pct[299]:5.1f}"
            f"  mean 201-300 {pct[200:].mean():5.1f}   (compile {timing['compile_s']:.1f} s,"
            f" run {timing['run_s']:.1f} s)")
    return out


# ---------------------------------------------------------------------------------------
# plots and output
# ---------------------------------------------------------------------------------------
def moving_average(x: np.ndarray, w: int) -> np.ndarray:
    """Trailing mean over the last ``w`` episodes (fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(x, np.float64), 0, 0.0))
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - w, 0)
    return (c[i] - c[lo]) / (i - lo)


def plot_cliff(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = CLIFF["smooth_window"]
    n = results["config"]["seeds"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"sarsa": "tab:blue", "q_learning": "tab:red", "expected_sarsa": "tab:green"}
    for algo, r in results["cliff"].items():
        y = np.asarray(r["return_per_episode"])
        x = np.arange(1, len(y) + 1)
        ax.plot(x, y, color=colors.get(algo), alpha=0.2, lw=0.7)
        ax.plot(x, moving_average(y, w), color=colors.get(algo), lw=1.6,
                label=f"{RULE_NAMES[algo]} ({r['mean_return_101_500']:.1f} over ep. 101-500)")
    ax.set_ylim(-100, 0)
    ax.set_xlim(0, CLIFF["episodes"])
    ax.set_xlabel("Episodes")
    ax.set_ylabel("Sum of rewards during episode")
    ax.set_title(f"Cliff walking (S&B Fig. 6.4): eps={CLIFF['epsilon']}, alpha={CLIFF['lr']}; "
                 f"mean of {n} seeds,\nfaint: per episode, bold: trailing {w}-episode mean",
                 fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_maxbias(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = results["config"]["seeds"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"q_learning": "tab:red", "double_q": "tab:green"}
    for algo, r in results["maxbias"].items():
        y = np.asarray(r["pct_left"])
        ax.plot(np.arange(1, len(y) + 1), y, color=colors.get(algo), lw=1.4, label=RULE_NAMES[algo])
    opt = 100 * MAXBIAS["epsilon"] / 2
    ax.axhline(opt, color="k", ls="--", lw=1, label=f"optimal ({opt:g}%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(1, MAXBIAS["episodes"])
    ax.set_xlabel("Episodes")
    ax.set_ylabel("% left actions from A")
    ax.set_title(f"Maximization bias (S&B Fig. 6.5): eps={MAXBIAS['epsilon']}, "
                 f"alpha={MAXBIAS['lr']}, {MAXBIAS['env_kwargs']['num_b_actions']} actions in B; "
                 f"mean of {n} seeds", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``out/results.json`` and an archived ``out/<device>-<date>.json`` (benchlib's name),
    each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    latest, archived = out / "results.json", out / benchlib.archive_name(results)
    for path in (archived, latest):
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return latest, archived


def summary_lines(results: dict[str, Any]) -> list[str]:
    lo, hi = CLIFF["summary_episodes"]
    lines = [f"Cliff walking (Example 6.6 / Figure 6.4), {results['config']['seeds']} seeds:"]
    for algo, r in results["cliff"].items():
        mc = r["most_common_path"]
        lines.append(
            f"  {RULE_NAMES[algo]:<15} mean sum of rewards, episodes {lo}-{hi}: "
            f"{r['mean_return_101_500']:7.2f} (± {r['mean_return_101_500_sem']:.2f} s.e.)")
        lines.append(
            f"  {'':<15} final greedy path: 13-step optimal for "
            f"{100 * r['greedy_path_13_fraction']:.1f}% of seeds; lengths "
            f"{r['greedy_path_length_counts']}"
            f"; never reaching the goal {r['greedy_path_unreached_count']} (stuck bumping into a "
            f"wall: {r['greedy_path_wall_loop_count']}); met a tie "
            f"{100 * r['greedy_path_tie_fraction']:.1f}%")
        lines.append(f"  {'':<15} most common greedy path ({100 * mc['fraction']:.1f}% of seeds, "
                     f"{mc['length']} steps):")
        lines.append(mc["ascii"])
    lines.append(f"Maximization bias (Example 6.7 / Figure 6.5), {results['config']['seeds']} "
                 "seeds, % LEFT from A:")
    marks = [1, 2, 5, 10, 20, 50, 100, 200, 300]
    lines.append("  " + f"{'episode':<18}" + "".join(f"{m:>7}" for m in marks) + f"{'peak':>14}")
    for algo, r in results["maxbias"].items():
        pct = r["pct_left"]
        lines.append("  " + f"{RULE_NAMES[algo]:<18}" + "".join(f"{pct[m - 1]:7.1f}" for m in marks)
                     + f"{r['peak_pct_left']:7.1f} (ep {r['peak_episode']})")
    lines.append(f"  optimal: {100 * MAXBIAS['epsilon'] / 2:g}%")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=None,
                   help=f"independent runs per rule (default {DEFAULT_SEEDS}; "
                        f"--quick {QUICK_SEEDS})")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_SEEDS} seeds, for tests; writes into a temp dir unless --out")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--chunk-steps", type=int, default=64,
                   help="env steps per while-loop iteration (a lax.scan)")
    p.add_argument("--max-steps", type=int, default=2_000_000,
                   help="safety cap on env steps per seed (a seed that hits it is reported)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else DEFAULT_SEEDS
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.chunk_steps < 1 or args.max_steps < 1:
        p.error("--chunk-steps and --max-steps must be >= 1")
    return args


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = parse_args(argv)
    if args.out is not None:
        out = Path(args.out)
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="jaxq-sutton-barto-quick-"))
    else:
        out = DEFAULT_OUT
    info = benchlib.system_info()
    log(f"sutton_barto: {args.seeds} seeds per rule; device {info['device']['description']}")
    t0 = time.perf_counter()
    k_cliff, k_max = (seed_keys(s, args.seeds) for s in (args.seed, args.seed + 1))
    cliff = cliff_experiment(k_cliff, args, log)
    maxbias = maxbias_experiment(k_max, args, log)
    elapsed = time.perf_counter() - t0
    cmd = ["python", "experiments/sutton_barto.py"] + (sys.argv[1:] if argv is None else list(argv))
    results = {
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "device": info["device"]["description"],
        "versions": {"jax": info["versions"]["jax"], "jaxlib": info["versions"]["jaxlib"]},
        "config": {
            "seeds": args.seeds, "quick": args.quick, "seed": args.seed,
            "chunk_steps": args.chunk_steps, "max_steps_per_seed": args.max_steps,
            "cliff": CLIFF, "maxbias": MAXBIAS,
            "learner": "jaxq.training.build_learner(TrainConfig(num_envs=1, n_step=1, "
                       "lr_schedule='constant', epsilon_schedule='constant', eval_every=0, "
                       "q_init=0)), vmapped over seeds; episodes counted per seed",
            "greedy_ties": f"broken uniformly at random with key {args.seed + TIE_KEY_OFFSET}",
            "command": " ".join(cmd),
        },
        "elapsed_s": elapsed,
        "cliff": cliff,
        "maxbias": maxbias,
    }
    for line in summary_lines(results):
        log(line)
    latest, archived = write_json(results, out)
    log(f"wrote {latest} and {archived.name}")
    if not args.no_plots:
        plot_cliff(results, out / "cliff_returns.png")
        plot_maxbias(results, out / "maxbias_left.png")
        log(f"wrote {out / 'cliff_returns.png'} and {out / 'maxbias_left.png'}")
    log(f"done in {elapsed:.1f} s (learning and roll-outs, compile included)")
    return results


if __name__ == "__main__":
    main()
