"""How jaxq's random words should be computed on XLA:CPU: with ``jax.random.bits`` (JAX
lowers threefry on CPU as a rolled 5-iteration loop) or with ``jaxq.prng.bits`` (the same
bits from straight-line JAX operations, which XLA compiles unrolled; what jaxq uses).

For each environment and N, one learner per word source is compiled ahead of time
(``jaxq.bench.CompiledChunk``; for ``jax.random.bits`` the experiment swaps
``jaxq.prng.bits`` for JAX's function while that learner is traced, and puts it back), then
they are timed in interleaved rounds (jax, jaxq, jax, ...; one chunk of about ``--target-s``
each), so a machine whose speed drifts moves both alike; the speed-up is the median over
rounds of each round's ratio. The tables are checked to be equal bit for bit after the same
number of chunks (the two compute the same words). Q-learning, constant lr 0.1 and epsilon
0.1, on FrozenLake 8x8 (every random number of a step comes from jaxq's words) and gymnax's
CartPole through the discretizing adapter (gymnax draws its own randomness with a key per
env, which keeps JAX's lowering either way; only jaxq's action words differ).

Writes ``<out>/results/cpu_threefry/results.json`` and the ``cpu_threefry`` section of
``<out>/BENCHMARKS.md``.

    python experiments/cpu_threefry.py            # ~2 minutes on 2 CPU cores
    python experiments/cpu_threefry.py --quick    # seconds; into a temp dir unless --out
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

EXPERIMENT = "cpu_threefry"
SCHEMA_VERSION = 2
SOURCES = ("jax.random.bits", "jaxq.prng.bits")  # the first is the baseline
CASES = {"FrozenLake 8x8": {"env_id": "FrozenLake8x8-v1"},
         "CartPole (gymnax, discretized)": {"env_id": "CartPole-v1", "bins": (1, 1, 8, 8)}}
MODES = {"quick": dict(num_envs=[16], rounds=2, target_s=0.02),
         "default": dict(num_envs=[256, 4096, 262144], rounds=7, target_s=0.25)}


@contextlib.contextmanager
def words_from(source: str) -> Iterator[None]:
    """Trace jaxq's learners with ``source`` drawing the words: ``jaxq.prng.bits`` as the
    library does, or JAX's ``jax.random.bits`` (the same bits, JAX's lowering)."""
    import jax
    import jax.numpy as jnp

    from jaxq import prng

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    own = prng.bits
    if source == "jax.random.bits":
        prng.bits = lambda key, shape: jax.random.bits(key, tuple(shape), jnp.uint32)
    try:
        yield
    finally:
        prng.bits = own


def measure(case: str, n: int, s: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from jaxq import bench

    over = dict(CASES[case])
    env_id = over.pop("env_id")

    def compiled(source: str, iters: int):
        cfg = bench.jaxq_config(env_id, {}, "q_learning", n, iters, seed=s["seed"])
        with words_from(source):
            return bench.CompiledChunk(dataclasses.replace(cfg, **over) if over else cfg)

    probe = compiled(SOURCES[0], 1)
    probe()
    t0 = time.perf_counter()
    probe()
    iters = max(1, int(s["target_s"] / max(time.perf_counter() - t0, 1e-9)))
    chunks = {k: compiled(k, iters) for k in SOURCES}
    rounds = []
    for _ in range(s["rounds"]):
        r = {}
        for k, c in chunks.items():
            t = time.perf_counter()
            c()
            r[k] = c.steps_per_chunk / (time.perf_counter() - t)
        rounds.append(r)
    qs = [c.q() for c in chunks.values()]
    same = all(np.array_equal(qs[0], q) for q in qs[1:])
    rec = {"case": case, "num_envs": n, "chunk_iters": iters, "rounds": rounds,
           "median": {k: statistics.median(r[k] for r in rounds) for k in SOURCES},
           "speedup": {k: statistics.median(r[k] / r[SOURCES[0]] for r in rounds)
                       for k in SOURCES},
           "same_table": same}
    log(f"  {case:<32} N={n:<7} " + ", ".join(
        f"{k} {benchlib.human(rec['median'][k])} ({rec['speedup'][k]:.2f}x)" for k in SOURCES)
        + ("" if same else "  TABLES DIFFER"))
    return rec


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    s = dict(MODES["quick" if args.quick else "default"], seed=args.seed)
    info = benchlib.system_info()
    log(f"cpu_threefry: {info['device']['description']}")
    t0 = time.perf_counter()
    records = [measure(case, n, s, log) for case in CASES for n in s["num_envs"]]
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/cpu_threefry.py"] + (sys.argv[1:] if argv is None else list(argv))
    return {"experiment": EXPERIMENT, "schema_version": SCHEMA_VERSION, "info": info,
            "device": info["device"]["description"], "jax": info["versions"].get("jax"),
            "jaxlib": info["versions"].get("jaxlib"),
            "config": {"quick": bool(args.quick), **s, "command": shlex.join(cmd)},
            "records": records, "elapsed_s": time.perf_counter() - t0}


def render_markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [benchlib.heading("Random words on XLA:CPU: jax.random.bits vs jaxq.prng.bits",
                              results["info"]), ""]
    lines.append(
        f"Q-learning steps/s with jaxq's per-step words drawn by `jax.random.bits` (JAX "
        f"lowers threefry on CPU as a rolled loop) and by `jaxq.prng.bits` (the same bits as "
        f"straight-line JAX ops, compiled unrolled; what jaxq uses), compiled side by side "
        f"and timed in {cfg['rounds']} interleaved rounds of ~{cfg['target_s']} s; speed-up = "
        f"median over rounds of the ratio to `jax.random.bits`. gymnax's CartPole draws its "
        f"own randomness with a key per env (JAX's lowering in both). *same table*: the two "
        f"tables equal bit for bit.")
    lines.append("")
    rows = [[r["case"], f"{r['num_envs']:,}"]
            + [f"{benchlib.human(r['median'][k])} ({r['speedup'][k]:.2f}x)" for k in SOURCES]
            + ["yes" if r["same_table"] else "**no**"] for r in results["records"]]
    lines.append(benchlib.table(["env", "N"] + [f"`{k}`" for k in SOURCES] + ["same table"],
                                rows, ["l", "r", "r", "r", "l"]))
    lines.append("")
    lines.append(benchlib.run_line(results, EXPERIMENT))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return benchlib.experiment_parser(__doc__, "seconds: N = 16, 2 rounds").parse_args(argv)


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    return benchlib.experiment_main(argv, parse_args, EXPERIMENT, run_benchmark,
                                    render_markdown, script=__file__, log=log)


if __name__ == "__main__":
    main()
