"""Env-only throughput: vmapped environment steps per second at 1 to 262,144 copies.

For every jaxq environment (``jaxq.registered_ids()``; Maze-v0 at 256x256 and 1024x1024
instead of its default), and beside them gymnax's own CartPole-v1 and FrozenLake-misc
(8x8) and a vectorized NumPy FrozenLake 8x8, all in the same run::

    N copies, random actions, auto-reset, T steps inside one compiled loop
    steps/s = N * T / (median wall time of `repeats` runs); compile time reported apart

* ``jaxq``: the training loop's fast path, ``jaxq.vecenv.VecEnv.step`` with all of the
  step's randomness drawn as uint32 words in one ``jax.random.bits`` call (as in
  ``jaxq/train.py``; the random action comes from the same draw).
* ``jaxq (gymnax API)``: the same jaxq environment through gymnax's interface,
  ``vmap(env.step)`` with one split key per copy (jaxq's overridden ``step``).
* ``gymnax``: gymnax's own environments, ``vmap(env.step)`` with one split key per copy.
* ``numpy``: the fastest vectorized NumPy FrozenLake 8x8 (slippery) we could write, on the
  host: a precomputed ``[S, A, 3]`` transition table, one ``rng.integers`` draw per step
  for action and slip, auto-reset by masking; single-threaded, as NumPy is.

The loop's trip count T is a runtime argument (``lax.fori_loop``, which XLA runs as the
same while loop as a ``lax.scan`` of static length: measured equal within noise), so each
(env, N) compiles once and T is then scaled until one run takes about ``--target-s``.
Every run accumulates rewards and episode ends per copy, so no step output is dead code.

Writes ``<out>/results/env_throughput/results.json`` (plus an archived
``<device>-<date>.json``) and the ``env_throughput`` section of ``<out>/BENCHMARKS.md``.

    python experiments/env_throughput.py                      # full run (a few minutes)
    python experiments/env_throughput.py --quick              # seconds; into a temp dir
    python experiments/env_throughput.py --max-envs 4096 --envs FrozenLake8x8-v1 numpy
    python experiments/env_throughput.py --markdown-only      # re-render from results.json
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

EXPERIMENT = "env_throughput"
SCHEMA_VERSION = 1
DEFAULT_MAX_ENVS = 262_144
QUICK_MAX_ENVS = 16
# Registered ids whose default construction is not what we want to time, and the kwargs
# to time instead (one row per entry).
OVERRIDES: dict[str, list[dict[str, Any]]] = {
    "Maze-v0": [{"size": 256}, {"size": 1024}],
}
IMPL_NAMES = {
    "jaxq": "jaxq",
    "jaxq-gymnax-api": "jaxq (gymnax API)",
    "gymnax": "gymnax",
    "numpy": "NumPy",
}


@dataclass(frozen=True)
class Case:
    """One table row: an environment, how it is built and how it is stepped."""

    label: str
    env_id: str
    impl: str  # "jaxq" | "jaxq-gymnax-api" | "gymnax" | "numpy"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def matches(self, names: list[str]) -> bool:
        keys = {self.label.lower(), self.env_id.lower(), self.impl.lower()}
        return any(n.lower() in keys for n in names)


def default_cases() -> list[Case]:
    import jaxq

    cases = []
    for env_id in jaxq.registered_ids():
        for kw in OVERRIDES.get(env_id, [{}]):
            label = env_id
            if env_id == "Maze-v0" and "size" in kw:
                label = f"Maze-v0 {kw['size']}x{kw['size']}"
            elif kw:
                label = f"{env_id} " + ",".join(f"{k}={v}" for k, v in kw.items())
            cases.append(Case(label, env_id, "jaxq", dict(kw)))
    cases += [
        Case("FrozenLake8x8-v1", "FrozenLake8x8-v1", "jaxq-gymnax-api"),
        Case("FrozenLake-misc 8x8", "FrozenLake-misc", "gymnax", {"map_name": "8x8"}),
        Case("CartPole-v1", "CartPole-v1", "gymnax"),
        Case("FrozenLake 8x8 slippery", "FrozenLake8x8-v1", "numpy"),
    ]
    return cases


QUICK_CASES = [("FrozenLake8x8-v1", "jaxq"), ("FrozenLake8x8-v1", "numpy"),
               ("CartPole-v1", "gymnax")]  # (env_id, impl)


# ---------------------------------------------------------------------------------------
# runners: each returns (run(T) -> (reward_sum, episodes), compile_s)
# ---------------------------------------------------------------------------------------
Runner = tuple[Callable[[int], tuple[Any, Any]], float | None]


def _jax_runner(init: Callable, body: Callable, params: Any, num_envs: int, seed: int,
                prepare: Callable | None = None) -> Runner:
    """Compile ``T`` steps of ``body`` over a carry from ``init``; T is a runtime arg.
    ``prepare(params)`` runs once per call, outside the loop (as a training chunk does).

    Each run continues from where the previous one stopped (as the NumPy runner does), so
    timed runs see steady-state episodes, not N copies all fresh from a reset."""
    import jax
    import jax.numpy as jnp

    def run(state, key, params, num_steps):
        aux = prepare(params) if prepare is not None else None

        def loop(_, c):
            state, key, ret, eps = c
            key, k = jax.random.split(key)
            state, r, done = body(k, state, params, aux)
            return state, key, ret + r, eps + done.astype(jnp.int32)

        zero_f, zero_i = jnp.zeros(num_envs, jnp.float32), jnp.zeros(num_envs, jnp.int32)
        state, key, ret, eps = jax.lax.fori_loop(0, num_steps, loop,
                                                 (state, key, zero_f, zero_i))
        return state, key, jnp.sum(ret), jnp.sum(eps)

    k_reset, k_run = jax.random.split(jax.random.key(seed))
    state = jax.block_until_ready(jax.jit(init)(k_reset, params))
    compiled, compile_s = benchlib.compile_jitted(jax.jit(run), state, k_run, params,
                                                  np.int32(1))
    carry = {"state": state, "key": k_run}

    def go(n: int):
        carry["state"], carry["key"], ret, eps = compiled(carry["state"], carry["key"], params,
                                                          np.int32(n))
        return ret, eps

    return go, compile_s


def jaxq_runner(env, params, num_envs: int, seed: int) -> Runner:
    """The training loop's fast path: ``VecEnv.step`` fed uint32 words from one
    ``jax.random.bits`` draw per step (as in ``jaxq/train.py``); word 0 picks the action."""
    import jax
    import jax.numpy as jnp

    from jaxq.envs.base import bits_to_index
    from jaxq.vecenv import VecEnv

    venv = VecEnv(env, params, num_envs)
    A = venv.num_actions

    def init(key, params):
        return venv.reset(key, params)[1]

    def body(key, state, params, aux):
        k_u, k_env = jax.random.split(key) if not venv.fast else (key, None)
        words = jax.random.bits(k_u, (1 + venv.num_words, num_envs), jnp.uint32)
        action = bits_to_index(words[0], A)
        env_keys = None if venv.fast else jax.random.split(k_env, num_envs)
        _, state, r, term, trunc, _, _ = venv.step(env_keys, words[1:], state, action, params,
                                                   aux)
        return state, r, term | trunc

    return _jax_runner(init, body, params, num_envs, seed, prepare=venv.prepare)


def gymnax_runner(env, params, num_envs: int, seed: int) -> Runner:
    """gymnax's interface: ``vmap(env.step)`` with one split key per copy."""
    import jax
    import jax.numpy as jnp

    A = int(env.action_space(params).n)

    def init(key, params):
        keys = jax.random.split(key, num_envs)
        return jax.vmap(env.reset, in_axes=(0, None))(keys, params)[1]

    def body(key, state, params, aux):
        k_a, k_step = jax.random.split(key)
        u = jax.random.uniform(k_a, (num_envs,))
        action = jnp.minimum((u * A).astype(jnp.int32), A - 1)
        keys = jax.random.split(k_step, num_envs)
        out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)
        if len(out) == 6:  # gymnax >= 1.0: obs, state, reward, terminated, truncated, info
            _, state, r, term, trunc, _ = out
            done = term | trunc
        else:  # older gymnax: obs, state, reward, done, info
            _, state, r, done, _ = out
        return state, r.astype(jnp.float32), done

    return _jax_runner(init, body, params, num_envs, seed)


FROZEN_LAKE_8X8 = [
    "SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF",
    "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG",
]


def numpy_frozen_lake_tables(desc=FROZEN_LAKE_8X8):
    """``[S, 12]`` tables (column ``3 * a + k``: action ``a``, slip ``k`` in 0..2 for the
    directions (a-1)%4, a, (a+1)%4, each with probability 1/3) of next state, reward and
    termination, for Gymnasium's slippery FrozenLake (holes and goal terminate)."""
    tiles = np.array([list(row) for row in desc])
    nrow, ncol = tiles.shape
    dr, dc = np.array([0, 1, 0, -1]), np.array([-1, 0, 1, 0])  # LEFT DOWN RIGHT UP
    nxt = np.zeros((nrow * ncol, 12), np.int32)
    for s in range(nrow * ncol):
        r, c = divmod(s, ncol)
        for a in range(4):
            for k, d in enumerate(((a - 1) % 4, a, (a + 1) % 4)):
                rr = min(max(r + dr[d], 0), nrow - 1)
                cc = min(max(c + dc[d], 0), ncol - 1)
                nxt[s, 3 * a + k] = rr * ncol + cc
    flat = tiles.reshape(-1)
    reward = (flat[nxt] == "G").astype(np.float32)
    term = np.isin(flat[nxt], ["H", "G"])
    start = int(np.flatnonzero(flat == "S")[0])
    return nxt.reshape(-1), reward.reshape(-1), term.reshape(-1), start


def numpy_runner(num_envs: int, seed: int, max_steps: int = 200) -> Runner:
    """Vectorized NumPy FrozenLake 8x8, slippery, T=200, random actions, auto-reset."""
    nxt, rew, term, start = numpy_frozen_lake_tables()
    assert start == 0  # reset by multiplying with ~done below
    rng = np.random.default_rng(seed)
    n = num_envs
    s = np.full(n, start, np.int32)
    t = np.zeros(n, np.int32)
    idx, ns = np.empty(n, np.int32), np.empty(n, np.int32)
    done, alive = np.empty(n, bool), np.empty(n, bool)
    limit = np.empty(n, bool)

    def run(num_steps: int):
        ret, eps = np.zeros(n, np.float32), np.zeros(n, np.int32)  # per copy, as in JAX
        for _ in range(num_steps):
            x = rng.integers(0, 12, size=n, dtype=np.int32)  # 3 * action + slip
            np.multiply(s, 12, out=idx)
            np.add(idx, x, out=idx)
            np.take(nxt, idx, out=ns)
            np.take(term, idx, out=done)
            ret += rew.take(idx)
            np.add(t, 1, out=t)
            np.greater_equal(t, max_steps, out=limit)
            np.logical_or(done, limit, out=done)
            eps += done
            np.logical_not(done, out=alive)
            np.multiply(ns, alive, out=s)  # the start state is 0
            np.multiply(t, alive, out=t)
        return ret.sum(), eps.sum()

    return run, None  # nothing to compile


def make_runner(case: Case, num_envs: int, seed: int) -> tuple[Runner, dict[str, Any]]:
    if case.impl == "numpy":
        return numpy_runner(num_envs, seed), {"num_states": 64, "num_actions": 4}
    import jaxq

    env, params = jaxq.make(case.env_id, **case.kwargs)
    space = env.observation_space(params)
    meta = {"num_states": int(getattr(space, "n", 0)) or None,
            "num_actions": int(env.action_space(params).n)}
    if case.impl == "jaxq":
        return jaxq_runner(env, params, num_envs, seed), meta
    if case.impl in ("gymnax", "jaxq-gymnax-api"):
        return gymnax_runner(env, params, num_envs, seed), meta
    raise ValueError(f"unknown impl {case.impl!r}")


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def measure_case(case: Case, sizes: list[int], target_s: float, repeats: int, seed: int,
                 max_steps_per_run: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    records, rate = [], None
    for n in sizes:
        rec: dict[str, Any] = {"label": case.label, "env_id": case.env_id, "impl": case.impl,
                               "env_kwargs": case.kwargs, "num_envs": n}
        try:
            (run, compile_s), meta = make_runner(case, n, seed)
            last: dict[str, Any] = {}

            def timed(steps, run=run, last=last):
                last["out"] = benchlib.block(run(steps))
                return last["out"]

            # extrapolate T from the previous N (throughput rarely falls as N grows)
            guess = 1 if rate is None else int(rate * target_s / n / 2)
            timing = benchlib.time_scaled(timed, target_s, repeats=repeats, guess=guess,
                                          max_iters=max_steps_per_run)
            reward_sum, episodes = (float(v) for v in last["out"])
            # the sum is a sanity figure only; keep the JSON strict if it overflowed
            reward_sum = reward_sum if math.isfinite(reward_sum) else None
            rate = n * timing.iters / timing.median_s
            rec.update(meta)
            rec.update(steps_per_s=rate, compile_s=compile_s, T=timing.iters,
                       repeats=timing.repeats, median_s=timing.median_s,
                       times_s=list(timing.times_s), episodes=int(episodes),
                       reward_sum=reward_sum)
            comp = "" if compile_s is None else f"  (compile {compile_s:.2f} s)"
            log(f"  {case.label:<28} {IMPL_NAMES[case.impl]:<18} N={n:<7} T={timing.iters:<8}"
                f" {benchlib.human(rate):>7} steps/s{comp}")
        except Exception as e:  # a broken case must not sink the whole run
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  {case.label:<28} {IMPL_NAMES.get(case.impl, case.impl):<18} N={n:<7}"
                f" ERROR {rec['error']}")
            records.append(rec)
            break
        records.append(rec)
    return records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = benchlib.experiment_parser(
        __doc__, "seconds, not a measurement: N = 1 and 16, short runs, and a few envs unless "
                 "--envs is given; writes into a temp dir unless --out", full_help=None,
        markdown_only_help="only re-render BENCHMARKS.md from "
                           "<out>/results/env_throughput/results.json",
        no_markdown_help="write the JSON only")
    p.add_argument("--max-envs", type=int, default=None,
                   help=f"largest N (powers of 4 from 1; default {DEFAULT_MAX_ENVS})")
    p.add_argument("--envs", nargs="+", default=None, metavar="ID",
                   help="only these rows: env ids, row labels or impls (jaxq, gymnax, numpy, "
                        "jaxq-gymnax-api)")
    p.add_argument("--target-s", type=float, default=None,
                   help="seconds per timed run (default 0.2; --quick 0.02)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 3; --quick 2)")
    return p.parse_args(argv)


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    quick = args.quick
    max_envs = args.max_envs or (QUICK_MAX_ENVS if quick else DEFAULT_MAX_ENVS)
    sizes = benchlib.env_counts(max_envs, base=16 if quick else 4)
    target_s = args.target_s or (0.02 if quick else 0.2)
    repeats = args.repeats or (2 if quick else 3)
    cases = default_cases()
    if args.envs:
        chosen = [c for c in cases if c.matches(args.envs)]
        known = {k for c in cases for k in (c.label, c.env_id, c.impl)}
        unknown = [e for e in args.envs if e.lower() not in {k.lower() for k in known}]
        if unknown:
            raise SystemExit(f"unknown --envs {unknown}; known: {sorted(known)}")
        cases = chosen
    elif quick:
        cases = [c for c in cases if (c.env_id, c.impl) in QUICK_CASES]

    info = benchlib.system_info()
    log(f"env_throughput: {len(cases)} rows x N in {sizes}; device {info['device']['description']}")
    t0 = time.perf_counter()
    records = []
    for case in cases:
        records += measure_case(case, sizes, target_s, repeats, args.seed,
                                max_steps_per_run=1 << 24, log=log)
    elapsed = time.perf_counter() - t0
    log(f"done in {elapsed:.1f} s")
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/env_throughput.py"] + (sys.argv[1:] if argv is None
                                                         else list(argv))
    return {
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "config": {
            "quick": quick,
            "max_envs": max_envs,
            "num_envs": sizes,
            "cases": [{"label": c.label, "env_id": c.env_id, "impl": c.impl,
                       "env_kwargs": c.kwargs} for c in cases],
            "target_s": target_s,
            "repeats": repeats,
            "seed": args.seed,
            "loop": "jit(fori_loop over T steps of vmap(step)); T a runtime argument",
            "command": shlex.join(cmd),
        },
        "elapsed_s": elapsed,
        "records": records,
    }


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------
def ratio_line(results: dict[str, Any]) -> str | None:
    """jaxq FrozenLake8x8-v1 vs the NumPy FrozenLake at the largest N both reached."""
    def rates(impl):
        return {r["num_envs"]: r["steps_per_s"] for r in results["records"]
                if r["impl"] == impl and r["env_id"] == "FrozenLake8x8-v1" and "steps_per_s" in r}

    jx, npy = rates("jaxq"), rates("numpy")
    common = sorted(set(jx) & set(npy))
    if not common:
        return None
    n = common[-1]
    ends = {}
    for impl in ("jaxq", "numpy"):
        rs = [r for r in results["records"] if r["impl"] == impl
              and r["env_id"] == "FrozenLake8x8-v1" and "steps_per_s" in r]
        ends[impl] = sum(r["episodes"] for r in rs) / sum(r["num_envs"] * r["T"] for r in rs)
    return (f"**jaxq FrozenLake8x8-v1 vs vectorized NumPy FrozenLake 8x8 at N = {n:,} "
            f"(same run): {jx[n] / npy[n]:.3g}x** ({benchlib.human(jx[n])} vs "
            f"{benchlib.human(npy[n])} steps/s). Best over N: jaxq {benchlib.human(max(jx.values()))}"
            f" (N = {max(jx, key=jx.get):,}), NumPy {benchlib.human(max(npy.values()))}"
            f" (N = {max(npy, key=npy.get):,}). Same dynamics: episode ends per step "
            f"{ends['jaxq']:.4f} (jaxq) vs {ends['numpy']:.4f} (NumPy), random policy.")


def render_markdown(results: dict[str, Any]) -> str:
    """The ``env_throughput`` section, from the results dict alone (deterministic)."""
    info, cfg, recs = results["info"], results["config"], results["records"]
    sizes = cfg["num_envs"]
    lines = [
        benchlib.heading("Environment throughput (env-only steps/s)", info),
        "",
    ]
    if cfg.get("quick"):
        lines += ["> `--quick` run: tiny sizes and short timings, a smoke test, not a measurement.",
                  ""]
    lines += [
        "N copies of each environment stepped with random actions and auto-reset, T steps "
        "inside one compiled loop; steps/s = N·T / median wall time of "
        f"{cfg['repeats']} runs of ~{cfg['target_s']:g} s, compile time excluded (last "
        "column: at the largest N). *jaxq*: the training loop's fast path (`VecEnv`, one "
        "`jax.random.bits` draw per step for actions and dynamics); *jaxq (gymnax API)* and "
        "*gymnax*: "
        "`vmap(env.step)` with one split key per copy; *NumPy*: a vectorized FrozenLake 8x8 "
        "(slippery) on the host, one thread.",
        "",
    ]
    header = ["env", "impl"] + [f"N={n:,}" for n in sizes] + ["compile (s)"]
    rows, seen = [], []
    for c in cfg["cases"]:
        key = (c["label"], c["impl"])
        if key in seen:
            continue
        seen.append(key)
        by_n = {r["num_envs"]: r for r in recs if (r["label"], r["impl"]) == key}
        cells, compile_s = [], None
        for n in sizes:
            r = by_n.get(n)
            if r is None:
                cells.append("–")
            elif "error" in r:
                cells.append("error")
            else:
                cells.append(benchlib.human(r["steps_per_s"]))
                compile_s = r["compile_s"]
        comp = "–" if compile_s is None else ("n/a" if c["impl"] == "numpy" else f"{compile_s:.2f}")
        rows.append([c["label"], IMPL_NAMES.get(c["impl"], c["impl"])] + cells + [comp])
    lines.append(benchlib.table(header, rows, ["l", "l"] + ["r"] * (len(sizes) + 1)))
    lines.append("")
    ratio = ratio_line(results)
    if ratio:
        lines += [ratio, ""]
    errors = [r for r in recs if "error" in r]
    for r in errors:
        lines.append(f"- {r['label']} ({r['impl']}, N={r['num_envs']:,}): `{r['error']}`")
    if errors:
        lines.append("")
    lines.append(benchlib.run_line(results, EXPERIMENT, on=info["device"]["description"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    return benchlib.experiment_main(argv, parse_args, EXPERIMENT, run_benchmark,
                                    render_markdown, script=__file__, log=log)


if __name__ == "__main__":
    main()
