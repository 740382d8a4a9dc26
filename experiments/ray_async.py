"""Asynchronous Q-learning on Ray (``jaxq.ray``): throughput of K = 1, 2, 4 learners
against the single-process learner (``jaxq.train``) in the same run, convergence against
the staleness the learners actually saw, what the pushes and pulls cost per chunk, and
the message size and rate a cluster would need for a given speed-up.

On a machine with fewer cores than learners (this project's 2-core VM) the K learners,
their shards and Ray's own processes share the same cores: the figures there measure the
parameter server's *overhead* (Ray calls, pushes, pulls, waits for the staleness bound),
not scaling. Scaling needs one core or device per learner; the network model at the end
says what a cluster must carry for it.

* Throughput: ``jaxq.train`` (one process, the same config) timed the way its user waits
  for it (``benchlib.train_rate``), then ``jaxq.ray.train`` with K learners x P shards:
  the run's env steps over the learners' loop time (chunks, pushes, pulls, waits; actor
  start and compile excluded, reported apart), and each learner's rate inside its chunks.
* Convergence: during every Ray run the driver reads the shards' rows about every
  tenth of the run (``monitor``); each snapshot's greedy policy is valued exactly on the
  model (policy evaluation) against V* from value iteration, so the curve is the greedy
  value gap 1 - V^greedy(start) / V*(start) against env steps done by all learners, with
  the run's observed staleness (the largest lead over the slowest learner, and how many
  other learners' pushes landed during a chunk). The single process's curve comes from
  the same compiled chunk run in turn on the driver.
* Push cost per chunk: the payload of a push (per updated cell: index, value, update
  count, base count: 16 bytes; ``sum`` adds 4) and of a pull (the whole table and its
  counts, 8 bytes a cell), and the seconds a learner spent in each per chunk.
* Network model: a learner keeps a fraction e of its speed when its chunk time
  t >= e / (1 - e) * (push + pull time); K learners then give a speed-up K * e over one,
  and the shards carry 2 * P calls and (push + pull bytes) per learner per chunk.

Writes ``<out>/results/ray_async/results.json``, ``ray_async.png`` and the ``ray_async``
section of ``<out>/BENCHMARKS.md``. Needs Ray (``pip install 'jaxq[ray]'``); starts its
own local Ray instance on 127.0.0.1 and stops it.

    python experiments/ray_async.py            # a few minutes on 2 CPU cores
    python experiments/ray_async.py --quick    # under a minute; into a temp dir unless --out
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

EXPERIMENT = "ray_async"
SCHEMA_VERSION = 1
PLOT = "ray_async.png"
MODES = {
    # (K, max_staleness) per Ray run; the throughput table takes the first S for each K
    "quick": dict(env_id="FrozenLake-v1", num_envs=16, total_steps=16 * 50 * 6, num_chunks=6,
                  shards=2, runs=[(1, 2), (2, 2)], snapshots=3),
    "default": dict(env_id="FrozenLake8x8-v1", num_envs=512, total_steps=4_000_000,
                    num_chunks=40, shards=2,
                    runs=[(1, 4), (2, 4), (4, 4), (4, 0), (4, 16)], snapshots=10),
}
EFFICIENCY = 0.9  # the network model's target: a learner keeps 90% of its speed
SPEEDUPS = (8, 32, 128)


def greedy_gap(model, q_star_value: float, q: np.ndarray, gamma: float) -> float:
    """1 - V^greedy(start) / V*(start), exactly on the model."""
    import jaxq
    from jaxq.model import greedy_policy

    v = float(jaxq.policy_start_value(model, greedy_policy(q, model.valid), gamma))
    return 1.0 - v / q_star_value


def single_process_curve(config, q_star, model, v_star: float,
                         cache: str) -> list[dict[str, float]]:
    """The greedy gap after every chunk of one process running the same compiled chunk
    (``build_learner(config).chunk``, loaded from the compile cache ``jaxq.train`` just
    filled) in turn: the curve the Ray runs are compared with."""
    import jax

    from jaxq import compile_cache
    from jaxq.training import build_learner

    learner = build_learner(config, q_star)
    hp = config.hparams()
    key = jax.random.key(config.seed)
    init = compile_cache.compile(jax.jit(learner.init).lower(key, hp), cache)
    carry = init(key, hp)
    chunk = compile_cache.compile(jax.jit(learner.chunk).lower(carry, hp), cache)
    plan = config.plan()
    per_chunk = plan["chunk_iters"] * config.num_envs
    curve = []
    for k in range(plan["num_chunks"]):
        carry, _ = chunk(carry, hp)
        q = np.asarray(learner.estimate(carry))
        curve.append({"env_steps": (k + 1) * per_chunk,
                      "greedy_gap": greedy_gap(model, v_star, q, config.gamma),
                      "q_error": float(np.max(np.where(np.isfinite(q_star),
                                                       np.abs(q - q_star), 0.0)))})
    return curve


def ray_run(config, q_star, model, v_star: float, K: int, S: int, P: int, snapshots: int,
            cache: str) -> dict[str, Any]:
    """One ``jaxq.ray.train`` run of K learners x P shards with max_staleness S: its
    throughput, costs, observed staleness and the convergence curve of the shards' table."""
    import ray

    import jaxq.ray

    plan = config.plan()
    per_push = plan["chunk_iters"] * config.num_envs // K  # env steps in one learner chunk
    total_pushes = K * plan["num_chunks"]
    every = max(1, total_pushes // snapshots)
    snaps: list[tuple[int, np.ndarray]] = []
    mark = [every]

    def monitor(state: dict[str, Any]) -> None:
        done = sum(state["acked"])
        if done >= mark[0] and done < total_pushes:
            rows = ray.get([s.rows.remote() for s in state["shards"]])
            snaps.append((done, np.concatenate(rows, axis=1)))
            mark[0] = done + every

    result = jaxq.ray.train(config, q_star, num_learners=K, num_shards=P, max_staleness=S,
                            compile_cache=cache, monitor=monitor, progress=False)
    r = result.ray
    curve = []
    for done, q in snaps:
        est = q[0] if q.shape[0] == 1 else q.mean(0)
        curve.append({"env_steps": done * per_push, "pushes": done,
                      "greedy_gap": greedy_gap(model, v_star, est[:q_star.shape[0]],
                                               config.gamma),
                      "q_error": float(np.max(np.where(np.isfinite(q_star),
                                                       np.abs(est - q_star), 0.0)))})
    curve.append({"env_steps": plan["env_steps"], "pushes": total_pushes,
                  "greedy_gap": greedy_gap(model, v_star, result.q, config.gamma),
                  "q_error": float(result.metrics["q_error"][-1])})
    learners = r["learners"]
    chunks = np.array([lr["chunks"] for lr in learners], np.float64)
    per_chunk = lambda key: float(np.mean([lr[key] for lr in learners] / chunks))  # noqa: E731
    return {
        "learners": K, "shards": P, "max_staleness": S,
        "env_steps": plan["env_steps"], "chunk_env_steps_per_learner": per_push,
        "loop_steps_per_s": float(result.timings["steps_per_s"]),
        "loop_s": float(result.timings["run_s"]),
        "startup_s": float(result.timings["compile_s"]), "wall_s": float(r["wall_s"]),
        "chunk_steps_per_s": [float(lr["steps_per_s"]) for lr in learners],
        "per_chunk_s": {"run": per_chunk("run_s"), "push": per_chunk("push_s"),
                        "pull": per_chunk("pull_s"), "wait": per_chunk("wait_s")},
        "push_bytes": float(np.mean([lr["push_bytes"] for lr in learners])),
        "pull_bytes": float(np.mean([lr["pull_bytes"] for lr in learners])),
        "cells_per_push": float(np.mean([lr["cells_per_push"] for lr in learners])),
        "observed": {"lead_max": int(r["observed_lead_max"]),
                     "lead_mean": float(np.mean([lr["lead_mean"] for lr in learners])),
                     "missed_max": int(r["observed_missed_max"]),
                     "missed_mean": float(np.mean([lr["missed_mean"] for lr in learners]))},
        "applied_equals_acknowledged": bool(r["applied_equals_acknowledged"]),
        "final_greedy_gap": curve[-1]["greedy_gap"], "final_q_error": curve[-1]["q_error"],
        "curve": curve,
    }


def network_model(records: list[dict[str, Any]], P: int) -> dict[str, Any]:
    """What a cluster must carry for a speed-up X over one learner (see the module
    docstring), from this run's one-learner figures: its chunk rate r, its push + pull
    seconds per chunk t_c and bytes per chunk. K = ceil(X / e) learners each need chunks
    of at least t = e / (1 - e) * t_c seconds (r * t env steps); every shard then answers
    2 * K calls per (t + t_c), and the learners move K * bytes per (t + t_c) in all."""
    one = next(r for r in records if r["learners"] == 1)
    rate = float(np.mean(one["chunk_steps_per_s"]))
    t_c = one["per_chunk_s"]["push"] + one["per_chunk_s"]["pull"]
    msg = one["push_bytes"] + one["pull_bytes"]
    e = EFFICIENCY
    t = e / (1 - e) * t_c
    rows = []
    for x in SPEEDUPS:
        k = math.ceil(x / e)
        rows.append({"speedup": x, "learners": k, "chunk_s": t,
                     "chunk_env_steps_per_learner": rate * t,
                     "calls_per_s_per_shard": 2 * k / (t + t_c),
                     "bytes_per_s": k * msg / (t + t_c)})
    return {"efficiency": e, "learner_steps_per_s": rate, "comm_s_per_chunk": t_c,
            "bytes_per_chunk": msg, "min_chunk_s": t, "shards": P, "rows": rows}


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import jaxq
    import jaxq.ray

    if not jaxq.ray.ray_available():
        raise SystemExit(f"experiments/ray_async.py needs Ray: {jaxq.ray.RAY_EXTRA}")
    import ray

    s = dict(MODES["quick" if args.quick else "default"])
    runs, P, snapshots = s.pop("runs"), s.pop("shards"), s.pop("snapshots")
    config = jaxq.TrainConfig(eval_every=0, seed=args.seed, **s)
    env, params = jaxq.make(config.env_id)
    model = jaxq.tabular_model(env, params)
    q_star = np.asarray(jaxq.value_iteration(model, config.gamma))
    v_star = float(jaxq.start_value(model, q_star))
    info = benchlib.system_info()
    plan = config.plan()
    log(f"ray_async: {info['device']['description']}; {config.env_id}, {config.num_envs} envs, "
        f"{plan['env_steps']:,} env steps in {plan['num_chunks']} chunks; runs (K, S) {runs}")
    t0 = time.perf_counter()
    cache = tempfile.mkdtemp(prefix="jaxq-ray-async-xla-")
    load0 = benchlib.load_average()
    single = benchlib.train_rate(config, progress=False, compile_cache=cache)
    single["curve"] = single_process_curve(config, q_star, model, v_star, cache)
    single["final_greedy_gap"] = single["curve"][-1]["greedy_gap"]
    single["final_q_error"] = single["curve"][-1]["q_error"]
    log(f"  jaxq.train: {benchlib.human(single['steps_per_s'])} env steps/s; greedy gap "
        f"{100 * single['final_greedy_gap']:.2f}%")
    slots = max(k for k, _ in runs)
    with warnings.catch_warnings():  # Ray forks its daemons; the driver's JAX is idle
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        t_ray = time.perf_counter()
        ray.init(address="local", num_cpus=slots, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
        ray_start_s = time.perf_counter() - t_ray
    records = []
    try:
        for K, S in runs:
            rec = ray_run(config, q_star, model, v_star, K, S, P, snapshots, cache)
            records.append(rec)
            pc = rec["per_chunk_s"]
            log(f"  K={K} S={S}: {benchlib.human(rec['loop_steps_per_s'])} env steps/s "
                f"({rec['loop_steps_per_s'] / single['steps_per_s']:.2f}x jaxq.train); "
                f"per chunk run {1e3 * pc['run']:.1f} ms, push {1e3 * pc['push']:.1f} ms "
                f"({rec['push_bytes']:.0f} B), pull {1e3 * pc['pull']:.1f} ms "
                f"({rec['pull_bytes']:.0f} B), wait {1e3 * pc['wait']:.1f} ms; observed lead "
                f"max {rec['observed']['lead_max']}, missed mean "
                f"{rec['observed']['missed_mean']:.1f}; greedy gap "
                f"{100 * rec['final_greedy_gap']:.2f}%; exact "
                f"{rec['applied_equals_acknowledged']}")
    finally:
        ray.shutdown()
        import shutil
        shutil.rmtree(cache, ignore_errors=True)
    model_net = network_model(records, P)
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/ray_async.py"] + (sys.argv[1:] if argv is None else list(argv))
    return benchlib.finite_json({
        "experiment": EXPERIMENT, "schema_version": SCHEMA_VERSION, "info": info,
        "device": info["device"]["description"], "jax": info["versions"].get("jax"),
        "jaxlib": info["versions"].get("jaxlib"), "ray": ray.__version__,
        "config": {"quick": bool(args.quick), "env_id": config.env_id,
                   "num_envs": config.num_envs, "env_steps": plan["env_steps"],
                   "num_chunks": plan["num_chunks"], "chunk_iters": plan["chunk_iters"],
                   "algo": config.algo, "aggregation": config.aggregation, "lr": config.lr,
                   "shards": P, "runs": [list(r) for r in runs], "ray_cpus": slots,
                   "command": shlex.join(cmd)},
        "optimal_value": v_star, "load_average": [load0, benchlib.load_average()],
        "ray_start_s": ray_start_s, "single": single, "records": records,
        "network": model_net, "elapsed_s": time.perf_counter() - t0,
    })


# ---------------------------------------------------------------------------------------
# plot and markdown
# ---------------------------------------------------------------------------------------
def late_gap(curve: list[dict[str, float]]) -> float:
    """The mean greedy gap over the second half of a run's env steps: the greedy policy
    of a learning table flickers from read to read, so one final value ranks nothing."""
    end = curve[-1]["env_steps"]
    return float(np.mean([c["greedy_gap"] for c in curve if c["env_steps"] > end / 2]))


def label(rec: dict[str, Any]) -> str:
    o = rec["observed"]
    return (f"K={rec['learners']}, S={rec['max_staleness']} (lead max {o['lead_max']}, "
            f"missed {o['missed_mean']:.1f}/chunk)")


def make_plot(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, single, records = results["config"], results["single"], results["records"]
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.4))
    first = {}
    for r in records:
        first.setdefault(r["learners"], r)
    names = ["jaxq.train"] + [f"K={k}" for k in first]
    rates = [single["steps_per_s"]] + [r["loop_steps_per_s"] for r in first.values()]
    ax0.bar(names, [x / 1e6 for x in rates], color=["C0"] + ["C1"] * len(first))
    for i, x in enumerate(rates):
        ax0.text(i, x / 1e6, f"{x / rates[0]:.2f}x", ha="center", va="bottom", fontsize=8)
    ax0.set_ylabel("env steps/s (millions)")
    ax0.set_title(f"throughput ({results['info']['machine']['cpu_cores']} cores: "
                  "overhead, not scaling)", fontsize=10)
    steps = [c["env_steps"] for c in single["curve"]]
    ax1.plot(steps, [100 * c["greedy_gap"] for c in single["curve"]], "k-", lw=2,
             label="jaxq.train (one process)")
    for i, r in enumerate(records):
        ax1.plot([c["env_steps"] for c in r["curve"]],
                 [100 * c["greedy_gap"] for c in r["curve"]], "o-", ms=3, color=f"C{i + 1}",
                 label=label(r))
    ax1.set_xlabel("env steps (all learners)")
    ax1.set_ylabel("greedy value gap to V* (%)")
    ax1.set_yscale("symlog", linthresh=1.0)
    ax1.set_title("greedy value gap vs observed staleness", fontsize=10)
    ax1.legend(fontsize=7)
    ax2.plot(steps, [c["q_error"] for c in single["curve"]], "k-", lw=2)
    for i, r in enumerate(records):
        ax2.plot([c["env_steps"] for c in r["curve"]], [c["q_error"] for c in r["curve"]],
                 "o-", ms=3, color=f"C{i + 1}")
    ax2.set_xlabel("env steps (all learners)")
    ax2.set_ylabel("max |Q - Q*|")
    ax2.set_yscale("log")
    ax2.set_title("table error", fontsize=10)
    fig.suptitle(f"jaxq.ray on {cfg['env_id']}: {cfg['num_envs']} envs, "
                 f"{cfg['env_steps']:,} env steps, {cfg['shards']} shards", fontsize=10)
    fig.tight_layout()
    path = out / PLOT
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def render_markdown(results: dict[str, Any]) -> str:
    info, cfg, single, records = (results["info"], results["config"], results["single"],
                                  results["records"])
    net = results["network"]
    cores = info["machine"].get("cpu_cores_usable") or info["machine"]["cpu_cores"]
    human = benchlib.human
    lines = [benchlib.heading("Asynchronous Q-learning on Ray (jaxq.ray)", info), ""]
    if cfg.get("quick"):
        lines += ["> `--quick` run: a smoke test, not a measurement.", ""]
    slots = cfg["ray_cpus"]
    lines += [
        f"**This measures overhead, not scaling**: {slots} Ray CPU slots on {cores} cores, so "
        "K learners, their shards and Ray's processes share the same cores and K > 1 "
        "cannot run faster than one process. What it shows is what the parameter server "
        "costs (Ray calls, pushes, pulls, waiting for the staleness bound) and how the "
        "asynchronous merge converges; scaling needs a core or device per learner (the "
        "network model below). Load average (1 min) before and after: "
        f"{results['load_average'][0]} / {results['load_average'][1]}.",
        "",
        f"{cfg['env_id']}, {cfg['algo']} ({cfg['aggregation']} aggregation, lr "
        f"{cfg['lr']:g}), {cfg['num_envs']} environments in all ({cfg['num_envs']} / K per "
        f"learner), {cfg['env_steps']:,} env steps in {cfg['num_chunks']} chunks per "
        f"learner, {cfg['shards']} shards. Loop rate: env steps over the learners' loop "
        "time (chunks + pushes + pulls + waits; actor start and compile apart). jaxq.train: "
        "the same config in one process, timed as its user waits for it.",
        "",
    ]
    rows = [["jaxq.train (one process)", "–", human(single["steps_per_s"]), "1.00x",
             human(single["steps_per_s"]), "–", "–", "–", "–",
             f"{single['compile_s']:.1f}", f"{100 * single['final_greedy_gap']:.2f}%",
             f"{100 * late_gap(single['curve']):.2f}%",
             f"{single['final_q_error']:.3f}", "–"]]
    for r in records:
        pc = r["per_chunk_s"]
        o = r["observed"]
        rows.append([
            f"K={r['learners']}", str(r["max_staleness"]), human(r["loop_steps_per_s"]),
            f"{r['loop_steps_per_s'] / single['steps_per_s']:.2f}x",
            human(float(np.mean(r["chunk_steps_per_s"]))),
            f"{1e3 * pc['run']:.1f} / {1e3 * pc['push']:.1f} / {1e3 * pc['pull']:.1f} / "
            f"{1e3 * pc['wait']:.1f}",
            f"{r['push_bytes']:,.0f} ({r['cells_per_push']:.0f} cells)",
            f"{r['pull_bytes']:,.0f}",
            f"{o['lead_max']} / {o['missed_mean']:.1f}",
            f"{r['startup_s']:.1f}", f"{100 * r['final_greedy_gap']:.2f}%",
            f"{100 * late_gap(r['curve']):.2f}%",
            f"{r['final_q_error']:.3f}", "yes" if r["applied_equals_acknowledged"] else "NO"])
    lines += [benchlib.table(
        ["run", "S", "loop env steps/s", "vs jaxq.train", "in-chunk rate per learner",
         "per chunk ms: run / push / pull / wait", "push B", "pull B",
         "observed lead max / missed per chunk", "start + compile s", "greedy gap",
         "mean gap, 2nd half", "max abs Q - Q*", "applied = acked"], rows,
        ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l"]), ""]
    lines += [
        f"Convergence (`{PLOT}`): the greedy value gap 1 - V^greedy(start) / V*(start) "
        "(exact, by policy evaluation on the model) of the shards' table, read about every "
        "tenth of each run, against the env steps all learners had pushed; 'lead' is how "
        "many pushes a learner was ahead of the slowest when it started a chunk, 'missed' "
        "how many pushes of other learners landed while its chunk ran. The greedy policy "
        "of a table still learning (constant lr and epsilon) flickers from read to read, "
        "one process's included, so a single final gap ranks nothing; the mean over the "
        "second half of the reads and max |Q - Q*| (third panel) are steadier.",
        "",
        f"![ray_async](results/{EXPERIMENT}/{PLOT})",
        "",
    ]
    mrows = [[f"{x['speedup']}x", str(x["learners"]), f"{1e3 * x['chunk_s']:.0f} ms",
              human(x["chunk_env_steps_per_learner"]), f"{x['calls_per_s_per_shard']:,.0f}",
              f"{x['bytes_per_s'] / 1e6:.2f} MB/s"] for x in net["rows"]]
    lines += [
        f"**Network model.** A learner keeps a fraction e of its speed when its chunk lasts "
        f"t >= e / (1 - e) x (push + pull time); K learners then run K x e times as fast as "
        f"one. Measured here with K = 1: push + pull {1e3 * net['comm_s_per_chunk']:.1f} ms "
        f"per chunk (local Ray calls on this machine at the load above; on a cluster, 2 "
        f"round trips per shard plus the bytes over the link), {net['bytes_per_chunk']:,.0f} "
        f"B moved per "
        f"chunk, {human(net['learner_steps_per_s'])} env steps/s inside a chunk. For e = "
        f"{net['efficiency']:g} a chunk must last >= {1e3 * net['min_chunk_s']:.0f} ms; for "
        f"a speed-up X over one learner, with {net['shards']} shards:",
        "",
        benchlib.table(["speed-up", "learners", "chunk (min)", "env steps per chunk per "
                        "learner", "calls/s per shard", "bytes/s (all learners)"], mrows,
                       ["r", "r", "r", "r", "r", "r"]),
        "",
        "The messages are small (a push is 16 B per updated cell, a pull the whole table at "
        "8 B per cell); the calls' latency is the cost, so chunk length scales with it: "
        "twice the push + pull time needs twice the env steps per chunk, and a shard's call "
        "rate falls as chunks grow. Add shards when one cannot answer 2K calls per chunk.",
        "",
        benchlib.run_line(results, EXPERIMENT, versions_extra=(
            f", ray {results['ray']}; Ray started in {results['ray_start_s']:.1f} s")),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return benchlib.experiment_parser(
        __doc__, "under a minute: FrozenLake 4x4, K = 1 and 2, a few chunks",
        plots=True).parse_args(argv)


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    return benchlib.experiment_main(argv, parse_args, EXPERIMENT, run_benchmark,
                                    render_markdown, make_plot, script=__file__, log=log)


if __name__ == "__main__":
    main()
