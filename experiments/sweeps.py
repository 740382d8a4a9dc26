"""Hyperparameter sweeps in one call: seeds x learning rates x epsilons, vmapped.

Every learner is a full jaxq Q-learner (``jaxq.make_train``: its own table, ``--num-envs``
environments, the whole run one ``lax.scan``) on FrozenLake 8x8, slippery
(``FrozenLake8x8-v1``, gamma 0.99). ``jax.vmap(make_train(config))`` over a learner axis
of ``seeds x lrs x epsilons`` (the keys, and ``config.hparams().replace(lr=..., epsilon=...)``
with one entry per learner) is compiled once, ahead of time (``jax.jit``; compile time
reported apart), and timed as ONE call: the median of ``--repeats`` calls (after one
warm-up call). Learners/s = learners / median seconds; env steps/s = learners x env steps
per learner / median seconds. For scale, the same learner alone (one learner per call,
the middle lr and epsilon) is timed too: ``learners x its time`` is what a Python loop
over the grid would take, and the ratio is what vmap buys.

The grid (``--full``: 10 seeds x 10 lrs x 10 epsilons = 1,000 learners of 16 environments
each): learning rates and epsilons log-spaced from 0.01 to 1, both *constant* over the
run (``lr_schedule = epsilon_schedule = "constant"``), so each cell of the heat-map is one
(lr, epsilon) pair and not a schedule. Seed s uses the same PRNG key in every cell
(common random numbers), so cells differ by their hyperparameters, not their luck.

Final performance, per learner, of its greedy policy (argmax of its table, ties split
uniformly, as jaxq acts), evaluated *exactly* on the tabular model (no sampling noise; see
``experiments/convergence.py``): ``V^pi / V*`` (discounted start value over the optimum)
and the success probability (reaching the goal within the 200-step limit); the heat-map
shows both over lr x epsilon, averaged over seeds.

Writes ``<out>/results/sweeps/results.json`` (plus an archived ``<device>-<date>.json``),
``sweeps_heatmap.png`` beside it, and the ``sweeps`` section of ``<out>/BENCHMARKS.md``.

    python experiments/sweeps.py                  # CPU-sized: 4 x 6 x 6 = 144 learners
    python experiments/sweeps.py --full           # 1,000 learners (accelerator-sized)
    python experiments/sweeps.py --quick          # 2 x 3 x 3 learners; into a temp dir unless --out
    python experiments/sweeps.py --seeds 10 --lrs 10 --epsilons 10 --steps 1000000
    python experiments/sweeps.py --markdown-only  # re-render BENCHMARKS.md from results.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

EXPERIMENT = "sweeps"
SCHEMA_VERSION = 1
ENV_ID = "FrozenLake8x8-v1"
ALGO = "q_learning"
GAMMA = 0.99
LR_RANGE = (0.01, 1.0)
EPSILON_RANGE = (0.01, 1.0)
MODES: dict[str, dict[str, Any]] = {
    # steps: env steps per learner (summed over its num_envs environments)
    "quick": {"seeds": 2, "lrs": 3, "epsilons": 3, "num_envs": 4, "steps": 1 << 15, "repeats": 2},
    "default": {"seeds": 4, "lrs": 6, "epsilons": 6, "num_envs": 16, "steps": 1 << 19,
                "repeats": 3},
    "full": {"seeds": 10, "lrs": 10, "epsilons": 10, "num_envs": 16, "steps": 1 << 21,
             "repeats": 3},
}


def grid(n: int, lo_hi: tuple[float, float]) -> list[float]:
    """``n`` log-spaced values from lo to hi, rounded to 3 significant digits."""
    lo, hi = lo_hi
    xs = np.geomspace(lo, hi, n) if n > 1 else np.array([np.sqrt(lo * hi)])
    return [float(f"{x:.3g}") for x in xs]


def make_config(num_envs: int, steps: int, seed: int):
    from jaxq.config import TrainConfig

    return TrainConfig(
        env_id=ENV_ID, algo=ALGO, num_envs=num_envs, n_step=1, total_steps=steps, num_chunks=1,
        gamma=GAMMA, lr=0.1, lr_end=0.1, lr_schedule="constant", epsilon=0.1,
        epsilon_end=0.1, epsilon_schedule="constant", exploration="epsilon_greedy",
        aggregation="mean", q_init=0.0, eval_every=0, seed=seed)


def learner_grid(cfg, seeds: int, lrs: list[float], epsilons: list[float], seed: int):
    """``(keys [L], hparams with [L] leaves)``, L = seeds x lrs x epsilons, seed-major."""
    import jax
    import jax.numpy as jnp

    S, nl, ne = seeds, len(lrs), len(epsilons)
    L = S * nl * ne
    lr = np.broadcast_to(np.asarray(lrs, np.float32)[None, :, None], (S, nl, ne)).reshape(-1)
    eps = np.broadcast_to(np.asarray(epsilons, np.float32)[None, None, :], (S, nl, ne)).reshape(-1)
    seed_keys = jax.random.split(jax.random.key(seed), S)
    keys = seed_keys[np.repeat(np.arange(S), nl * ne)]  # same key in every cell of a seed
    base = jax.tree.map(lambda x: jnp.broadcast_to(x, (L,)), cfg.hparams())
    hps = base.replace(lr=jnp.asarray(lr), lr_end=jnp.asarray(lr), epsilon=jnp.asarray(eps),
                       epsilon_end=jnp.asarray(eps))
    return keys, hps


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import jax

    import jaxq
    from convergence import GreedyEvaluator

    mode_name = "quick" if args.quick else "full" if args.full else "default"
    s = dict(MODES[mode_name])
    for k in ("seeds", "lrs", "epsilons", "num_envs", "steps", "repeats"):
        if getattr(args, k) is not None:
            s[k] = getattr(args, k)
    lrs, epsilons = grid(s["lrs"], LR_RANGE), grid(s["epsilons"], EPSILON_RANGE)
    cfg = make_config(s["num_envs"], s["steps"], args.seed)
    plan = cfg.plan()
    L = s["seeds"] * len(lrs) * len(epsilons)
    info = benchlib.system_info()
    log(f"sweeps: {s['seeds']} seeds x {len(lrs)} lrs x {len(epsilons)} epsilons = {L} learners "
        f"of {s['num_envs']} envs, {benchlib.human(plan['env_steps'])} env steps each; "
        f"device {info['device']['description']}")
    t0 = time.perf_counter()

    train = jaxq.make_train(cfg)
    keys, hps = learner_grid(cfg, s["seeds"], lrs, epsilons, args.seed)
    compiled, compile_s = benchlib.compile_jitted(jax.jit(jax.vmap(train)), keys, hps)
    last: dict[str, Any] = {}

    def call():
        last["out"] = compiled(keys, hps)
        return last["out"]

    timing = benchlib.median_time(call, repeats=s["repeats"], warmup=1)
    out = last["out"]
    env_steps = L * plan["env_steps"]
    log(f"  vmapped: compile {compile_s:.2f} s, run {timing.median_s:.3f} s (median of "
        f"{timing.repeats}): {benchlib.human(L / timing.median_s)} learners/s, "
        f"{benchlib.human(env_steps / timing.median_s)} env steps/s")

    # one learner per call (the middle cell), for what a loop over the grid would cost
    mid = (len(lrs) // 2, len(epsilons) // 2)
    hp1 = cfg.hparams().replace(lr=np.float32(lrs[mid[0]]), lr_end=np.float32(lrs[mid[0]]),
                                epsilon=np.float32(epsilons[mid[1]]),
                                epsilon_end=np.float32(epsilons[mid[1]]))
    single, single_compile_s = benchlib.compile_jitted(jax.jit(train), keys[0], hp1)
    t1 = benchlib.median_time(single, keys[0], hp1, repeats=s["repeats"], warmup=1)
    loop_s = L * t1.median_s
    log(f"  one learner per call: compile {single_compile_s:.2f} s, run {t1.median_s:.4f} s; "
        f"{L} calls ~ {loop_s:.2f} s, so vmap is {loop_s / timing.median_s:.1f}x faster")

    # exact final performance of every learner's greedy policy
    env, params = jaxq.make(ENV_ID)
    evaluator = GreedyEvaluator(env, params, GAMMA)
    m = jax.device_get(evaluator.batch(out.q))
    shape = (s["seeds"], len(lrs), len(epsilons))
    value = np.asarray(m["value"], np.float64).reshape(shape) / evaluator.v_star
    success = np.asarray(m["success"], np.float64).reshape(shape)
    q_error = np.asarray(m["q_error"], np.float64).reshape(shape)
    met = jax.device_get(out.metrics)
    eps_done = np.asarray(met["episodes"], np.float64).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        online = np.asarray(met["successes"], np.float64).sum(-1) / eps_done
    online = np.nan_to_num(online.reshape(shape), nan=0.0)

    def sem(x):
        return (x.std(axis=0, ddof=1) / np.sqrt(x.shape[0])) if x.shape[0] > 1 else 0 * x[0]

    mean_v = value.mean(0)
    bi, bj = np.unravel_index(int(np.argmax(mean_v)), mean_v.shape)
    elapsed = time.perf_counter() - t0
    log(f"  best mean V/V* {mean_v[bi, bj]:.3f} at lr {lrs[bi]:g}, epsilon {epsilons[bj]:g} "
        f"(success {success.mean(0)[bi, bj]:.3f}; Q*'s greedy policy {evaluator.success_star:.3f})")
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/sweeps.py"] + (sys.argv[1:] if argv is None else list(argv))
    r2 = lambda x: np.round(x, 6).tolist()  # noqa: E731
    return {
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "device": info["device"]["description"],
        "jax": info["versions"]["jax"],
        "jaxlib": info["versions"]["jaxlib"],
        "config": {
            "mode": mode_name, "quick": args.quick, "full": args.full,
            "env_id": ENV_ID, "algo": ALGO, "gamma": GAMMA,
            "seeds": s["seeds"], "lrs": lrs, "epsilons": epsilons, "learners": L,
            "num_envs": s["num_envs"], "steps": s["steps"],
            "env_steps_per_learner": plan["env_steps"], "iterations": plan["iterations"],
            "lr_schedule": "constant", "epsilon_schedule": "constant", "aggregation": "mean",
            "q_init": 0.0, "repeats": s["repeats"], "seed": args.seed,
            "keys": "seed s: the same key in every (lr, epsilon) cell",
            "call": "jax.jit(jax.vmap(jaxq.make_train(config)))(keys [L], hparams [L])",
            "command": shlex.join(cmd),
        },
        "timing": {
            "learners": L,
            "env_steps": env_steps,
            "compile_s": compile_s,
            "median_s": timing.median_s,
            "times_s": list(timing.times_s),
            "learners_per_s": L / timing.median_s,
            "env_steps_per_s": env_steps / timing.median_s,
            "single": {"lr": lrs[mid[0]], "epsilon": epsilons[mid[1]],
                       "compile_s": single_compile_s, "median_s": t1.median_s,
                       "times_s": list(t1.times_s),
                       "env_steps_per_s": plan["env_steps"] / t1.median_s},
            "loop_estimate_s": loop_s,
            "vmap_speedup": loop_s / timing.median_s,
        },
        "optimal": {"v_star": evaluator.v_star, "success": evaluator.success_star,
                    "horizon": evaluator.horizon},
        "grid": {  # [lrs][epsilons], averaged over seeds
            "value_ratio": r2(mean_v), "value_ratio_sem": r2(sem(value)),
            "success": r2(success.mean(0)), "success_sem": r2(sem(success)),
            "q_error": r2(q_error.mean(0)), "train_success": r2(online.mean(0)),
        },
        "per_seed": {"value_ratio": r2(value), "success": r2(success)},  # [seeds][lrs][epsilons]
        "best": {"lr": lrs[bi], "epsilon": epsilons[bj], "value_ratio": float(mean_v[bi, bj]),
                 "success": float(success.mean(0)[bi, bj])},
        "elapsed_s": elapsed,
    }


# ---------------------------------------------------------------------------------------
# plots and markdown
# ---------------------------------------------------------------------------------------
PLOT = "sweeps_heatmap.png"


def make_plot(results: dict[str, Any], out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, g = results["config"], results["grid"]
    lrs, eps = cfg["lrs"], cfg["epsilons"]
    panels = [("value_ratio", "greedy V^pi / V*"),
              ("success", f"greedy success (Q*'s: {results['optimal']['success']:.3f})")]
    fig, axes = plt.subplots(1, 2, figsize=(5.2 + 0.45 * len(lrs), 2.2 + 0.42 * len(eps)))
    for ax, (key, title) in zip(axes, panels):
        z = np.asarray(g[key]).T  # rows: epsilon, columns: lr
        im = ax.imshow(z, origin="lower", cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(lrs)), [f"{x:g}" for x in lrs], rotation=45, fontsize=8)
        ax.set_yticks(range(len(eps)), [f"{x:g}" for x in eps], fontsize=8)
        ax.set_xlabel("learning rate (constant)")
        ax.set_ylabel("epsilon (constant)")
        ax.set_title(title, fontsize=10)
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                ax.text(j, i, f"{z[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if z[i, j] < 0.6 else "k")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    t = results["timing"]
    fig.suptitle(f"{cfg['env_id']}: {cfg['learners']:,} Q-learners ({cfg['seeds']} seeds, "
                 f"mean shown) x {cfg['num_envs']} envs x "
                 f"{benchlib.human(cfg['env_steps_per_learner'])} steps, one vmapped call: "
                 f"{t['median_s']:.2f} s on {benchlib.device_line(results['info'])}", fontsize=9)
    fig.tight_layout()
    path = out / PLOT
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_markdown(results: dict[str, Any]) -> str:
    """The ``sweeps`` section, from the results dict alone (deterministic)."""
    info, cfg, t = results["info"], results["config"], results["timing"]
    g, best, opt = results["grid"], results["best"], results["optimal"]
    lines = [
        benchlib.heading("Hyperparameter sweeps in one vmapped call", info),
        "",
    ]
    if cfg.get("quick"):
        lines += ["> `--quick` run: tiny sizes, a smoke test, not a measurement.", ""]
    lines += [
        f"{cfg['seeds']} seeds x {len(cfg['lrs'])} learning rates x {len(cfg['epsilons'])} "
        f"epsilons = **{cfg['learners']:,} Q-learners** on {cfg['env_id']} (slippery, gamma "
        f"{cfg['gamma']:g}), each with its own table and {cfg['num_envs']} environments for "
        f"{benchlib.human(cfg['env_steps_per_learner'])} env steps, constant lr and epsilon "
        "(log-spaced grids), trained by ONE call of "
        "`jax.jit(jax.vmap(jaxq.make_train(config)))(keys, hparams)`. Run time: median of "
        f"{cfg['repeats']} calls, compile apart. *One per call*: the middle cell's learner "
        "alone, times the number of learners (a Python loop over the grid).",
        "",
    ]
    header = ["learners", "env steps", "compile (s)", "run (s)", "learners/s", "env steps/s",
              "one per call (s)", "vmap speedup"]
    row = [f"{cfg['learners']:,}", benchlib.human(t["env_steps"]), f"{t['compile_s']:.2f}",
           f"{t['median_s']:.3g}", benchlib.human(t["learners_per_s"]),
           benchlib.human(t["env_steps_per_s"]), f"{t['loop_estimate_s']:.3g}",
           f"{t['vmap_speedup']:.1f}x"]
    lines += [benchlib.table(header, [row], ["r"] * len(header)), ""]
    lines += [
        "Final greedy policy, evaluated exactly on the model, mean over seeds: "
        f"**V^pi / V\\*** (V\\* = {opt['v_star']:.4f}) by learning rate (columns) and epsilon "
        f"(rows); success = P(goal within {opt['horizon']} steps) (Q\\*'s greedy policy: "
        f"{opt['success']:.3f}).",
        "",
    ]
    header = ["epsilon \\ lr"] + [f"{x:g}" for x in cfg["lrs"]]
    rows = []
    v = np.asarray(g["value_ratio"])
    for j, e in enumerate(cfg["epsilons"]):
        rows.append([f"{e:g}"] + [f"{v[i, j]:.2f}" for i in range(len(cfg["lrs"]))])
    lines += [benchlib.table(header, rows, ["l"] + ["r"] * len(cfg["lrs"])), ""]
    lines += [
        f"Best cell: lr {best['lr']:g}, epsilon {best['epsilon']:g}: V^pi / V\\* "
        f"{best['value_ratio']:.3f}, success {best['success']:.3f}.",
        "",
        f"![sweep heat-map](results/{EXPERIMENT}/{PLOT})",
        "",
        benchlib.run_line(results, EXPERIMENT, on=info["device"]["description"]),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = benchlib.experiment_parser(
        __doc__, "seconds, not a measurement: 2 x 3 x 3 learners, 4 envs, 32k steps; writes "
                 "into a temp dir unless --out",
        full_help="10 x 10 x 10 = 1,000 learners of 16 envs, 2M steps each",
        sizes_exclusive=True, plots=True,
        markdown_only_help="only re-render BENCHMARKS.md from <out>/results/sweeps/results.json",
        no_markdown_help="write the JSON and plot only")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--lrs", type=int, default=None, help="learning rates (log-spaced 0.01..1)")
    p.add_argument("--epsilons", type=int, default=None, help="epsilons (log-spaced 0.01..1)")
    p.add_argument("--num-envs", type=int, default=None, help="environments per learner")
    p.add_argument("--steps", type=int, default=None, help="env steps per learner")
    p.add_argument("--repeats", type=int, default=None, help="timed calls")
    args = p.parse_args(argv)
    for k in ("seeds", "lrs", "epsilons", "num_envs", "steps", "repeats"):
        v = getattr(args, k)
        if v is not None and v < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    return benchlib.experiment_main(argv, parse_args, EXPERIMENT, run_benchmark, render_markdown,
                                    lambda r, d: [make_plot(r, d)], script=__file__, log=log)


if __name__ == "__main__":
    main()
