"""PQN on CartPole-v1: greedy return against env steps and seconds, seeds as a vmap axis,
and throughput (env steps/s including the learning).

The seeds train in one compiled call (``jax.jit(jax.vmap(make_train_pqn(config)))``);
every chunk ends with a greedy evaluation of ``eval_episodes`` episodes per seed, so the
learning curve is those evaluations against the env steps done (per seed). Seconds are
run time of the whole vmapped call (compile apart), spread evenly over the chunks.

Writes ``<out>/results/deep/results.json`` and the ``deep`` section of
``<out>/BENCHMARKS.md``.

    python experiments/deep.py            # ~1-2 minutes on 2 CPU cores
    python experiments/deep.py --quick    # seconds; into a temp dir unless --out
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

EXPERIMENT = "deep"
SCHEMA_VERSION = 1
MODES = {
    "quick": dict(seeds=2, total_steps=4096, num_envs=8, rollout_len=8, num_minibatches=2,
                  num_epochs=1, width=16, num_chunks=2, eval_episodes=4),
    "default": dict(seeds=4, total_steps=200_000, num_envs=32, rollout_len=64,
                    num_minibatches=16, num_epochs=4, width=128, num_chunks=8,
                    eval_episodes=100),
}
SOLVED = 475.0  # CartPole-v1's reward threshold


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import jax

    import jaxq

    s = dict(MODES["quick" if args.quick else "default"])
    seeds = s.pop("seeds")
    config = jaxq.DeepConfig(algo="pqn", env_id="CartPole-v1", seed=args.seed, **s)
    info = benchlib.system_info()
    log(f"deep: {info['device']['description']}; PQN CartPole-v1, {seeds} seeds, "
        f"{config.plan()['env_steps']:,} env steps each")
    t0 = time.perf_counter()
    train = jax.jit(jax.vmap(jaxq.make_train_pqn(config)))
    keys = jax.random.split(jax.random.key(args.seed), seeds)
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t1
    m = {k: np.asarray(v) for k, v in jax.device_get(out.metrics).items()}
    plan = config.plan()
    steps = (np.arange(1, plan["num_chunks"] + 1) * plan["chunk_iters"]
             * plan["steps_per_iteration"])
    curve = m["eval_return"]  # [seeds, chunks]
    total = plan["env_steps"] * seeds
    rec = {
        "env_steps": steps.tolist(),
        "seconds": (run_s * np.arange(1, plan["num_chunks"] + 1) / plan["num_chunks"]).tolist(),
        "eval_return": curve.tolist(),
        "eval_return_mean": curve.mean(0).tolist(),
        "final_eval_return": curve[:, -1].tolist(),
        "solved_seeds": int(np.sum(curve[:, -1] >= SOLVED)),
        "compile_s": compile_s, "run_s": run_s,
        "steps_per_s": total / run_s,
    }
    log(f"  final greedy return per seed {np.round(curve[:, -1], 1).tolist()}; "
        f"{rec['solved_seeds']}/{seeds} >= {SOLVED}; {benchlib.human(rec['steps_per_s'])} env "
        f"steps/s over all seeds ({compile_s:.1f} s compile + {run_s:.1f} s run)")
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/deep.py"] + (sys.argv[1:] if argv is None else list(argv))
    return {"experiment": EXPERIMENT, "schema_version": SCHEMA_VERSION, "info": info,
            "device": info["device"]["description"], "jax": info["versions"].get("jax"),
            "jaxlib": info["versions"].get("jaxlib"),
            "config": {"quick": bool(args.quick), "seeds": seeds,
                       "deep_config": {k: v for k, v in vars(config).items()
                                       if k != "env_kwargs"},
                       "command": shlex.join(cmd)},
            "records": [rec], "elapsed_s": time.perf_counter() - t0}


def render_markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    dc = cfg["deep_config"]
    r = results["records"][0]
    lines = [benchlib.heading("Deep Q-learning: PQN on CartPole-v1 (jaxq/pqn.py)",
                              results["info"]), ""]
    lines.append(
        f"{cfg['seeds']} seeds trained in one `jax.vmap`-ed call: {dc['num_envs']} envs x "
        f"{dc['rollout_len']} steps per update, {dc['num_epochs']} epochs x "
        f"{dc['num_minibatches']} minibatches, MLP {dc['depth']} x {dc['width']} with "
        f"LayerNorm, RAdam lr {dc['lr']}, Q(lambda = {dc['q_lambda']}), epsilon "
        f"{dc['epsilon']} -> {dc['epsilon_end']} over {dc['epsilon_decay_fraction']:.0%} of "
        f"the run. Greedy return: mean of {dc['eval_episodes']} episodes per seed at the "
        f"end of each chunk.")
    lines.append("")
    rows = [[f"{s:,}", f"{t:.1f}", f"{mean:.1f}",
             ", ".join(f"{x:.0f}" for x in per_seed)]
            for s, t, mean, per_seed in zip(r["env_steps"], r["seconds"], r["eval_return_mean"],
                                            np.asarray(r["eval_return"]).T.tolist())]
    lines.append(benchlib.table(["env steps (per seed)", "seconds", "greedy return (mean)",
                                 "per seed"], rows, ["r", "r", "r", "l"]))
    lines.append("")
    lines.append(f"Seeds with a final greedy return >= {SOLVED:.0f}: {r['solved_seeds']}/"
                 f"{cfg['seeds']}. Throughput: {benchlib.human(r['steps_per_s'])} env steps/s "
                 f"summed over the seeds, learning included ({r['compile_s']:.1f} s compile, "
                 f"{r['run_s']:.1f} s run).")
    lines.append("")
    lines.append(benchlib.run_line(results, EXPERIMENT))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return benchlib.experiment_parser(__doc__, "seconds: tiny network, 2 seeds").parse_args(argv)


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    return benchlib.experiment_main(argv, parse_args, EXPERIMENT, run_benchmark, render_markdown,
                                    script=__file__, log=log)


if __name__ == "__main__":
    main()
