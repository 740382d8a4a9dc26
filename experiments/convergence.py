"""Convergence against Q*: what parallelism costs in samples and buys in time.

For each update rule (Q-learning, SARSA, Expected SARSA, Double Q-learning) and each
number of parallel environments N (default 1, 64, 4,096 and 65,536), one jaxq learner on
FrozenLake 8x8, slippery (``FrozenLake8x8-v1``, gamma 0.99), is trained from a zero table
and measured at ~log-spaced checkpoints against

* ``max|Q - Q*|``, Q* from ``jaxq.value_iteration`` on the exact model (for Double Q the
  estimate (QA + QB) / 2), and, for SARSA and Expected SARSA, also against Q*_eps, the
  fixed point of the eps-greedy backup ``r + gamma E[(1 - eps) max Q(s') + eps mean Q(s')]``
  (the on-policy rules under a constant eps converge there, not to Q*);
* the greedy policy (argmax of Q, ties split uniformly, as the learner acts) evaluated
  *exactly* on the model, with no sampling noise: its success probability (reaching the
  goal within the 200-step limit, by finite-horizon dynamic programming) and its
  discounted value at the start, ``V^pi / V*`` (``jaxq.policy_evaluation``);

each plotted against env steps (samples) and against wall-clock seconds (log x).

Settings, chosen so that no schedule depends on the run's length (the runs of different N
have different lengths): learning rate per cell ``alpha = n(s,a)^-0.6`` with n the
batched updates that cell has had (``lr_schedule="visit"``; w = 0.6 > 1/2 meets the
Robbins-Monro conditions, so every rule converges at every N; ``--visit-power`` sets
another w), constant epsilon 0.1, one-step targets, per-cell mean of a batched
step's TD errors (``aggregation="mean"``, jaxq's default). With N environments one
batched step takes N samples but moves each visited cell once, by the mean of its TD
errors: more samples per update (less noise), fewer updates per sample. The curves show
what that costs in env steps and what running N environments at once buys in seconds.

How it runs. ``jaxq.training.build_learner`` builds the learner (the same ``init`` and
``step`` as ``jaxq.train``); a ``lax.fori_loop`` of ``learner.step`` whose trip count is
a runtime argument is compiled once per (rule, N), ahead of time (``jax.jit(...,
donate_argnums=0)``, compile time reported apart), and called once per checkpoint
segment; the segment's wall-clock time runs until its carry is ready. Measuring the
checkpoint (a few small jitted programs on the 64-state model) is excluded from the
clock. Budgets (env steps per N) are fixed per mode, so the same command gives the same
curves on any device, at different speeds; as a safety net a run stops at the first
checkpoint past ``--cap-s`` (120 s) of training, and is marked *capped*.

Writes ``<out>/results/convergence/results.json`` (plus an archived
``<device>-<date>.json``), ``convergence_steps.png`` and ``convergence_wall.png`` beside
it, and the ``convergence`` section of ``<out>/BENCHMARKS.md``.

    python experiments/convergence.py               # CPU-sized (a few minutes on 2 cores)
    python experiments/convergence.py --full        # accelerator-sized budgets
    python experiments/convergence.py --quick       # seconds; into a temp dir unless --out
    python experiments/convergence.py --rules q_learning double_q --num-envs 1 4096
    python experiments/convergence.py --markdown-only   # re-render BENCHMARKS.md
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
from jaxq.model import greedy_policy  # noqa: E402

EXPERIMENT = "convergence"
SCHEMA_VERSION = 1
ENV_ID = "FrozenLake8x8-v1"
GAMMA = 0.99
EPSILON = 0.1
VISIT_POWER = 0.6
SOLVED_GAP = 0.02  # "solved": V* - V^pi <= 2% of |V*| (as experiments/time_to_solution.py)
VALUE_TOL = 1e-5
CAP_S = 120.0  # per (rule, N) run
RULES = ("q_learning", "sarsa", "expected_sarsa", "double_q")
ON_POLICY = ("sarsa", "expected_sarsa")
RULE_NAMES = {"q_learning": "Q-learning", "sarsa": "SARSA", "expected_sarsa": "Expected SARSA",
              "double_q": "Double Q-learning"}

# env steps per run, by mode and N (the total over all N environments)
MODES: dict[str, dict[str, Any]] = {
    "quick": {"num_envs": [1, 16], "steps": {1: 1 << 14, 16: 1 << 17}, "points": 8},
    "default": {"num_envs": [1, 64, 4096, 65536],
                "steps": {1: 1 << 21, 64: 1 << 24, 4096: 1 << 27, 65536: 1 << 29},
                "points": 28},
    # on an accelerator small N is latency-bound (tens of microseconds per batched step):
    # N = 1 and 64 get 2M and 1M steps of the loop, the large N billions of env steps
    "full": {"num_envs": [1, 64, 4096, 65536],
             "steps": {1: 1 << 21, 64: 1 << 26, 4096: 1 << 30, 65536: 1 << 33},
             "points": 40},
}


# ---------------------------------------------------------------------------------------
# exact evaluation of greedy policies (also used by experiments/sweeps.py)
# ---------------------------------------------------------------------------------------
class GreedyEvaluator:
    """Exact figures of greedy policies on a jaxq tabular environment's model.

    ``metrics(q)`` / ``batch(qs)`` (jitted; ``batch`` vmaps over a leading axis) return
    ``value`` (discounted start value of the greedy policy, ``jaxq.policy_evaluation``
    then ``sum_s mu(s) sum_a pi(a|s) Q^pi(s, a)``), ``success`` (probability of a
    successful transition, e.g. reaching FrozenLake's goal, within the env's time limit:
    finite-horizon dynamic programming over ``horizon`` steps), and ``q_error`` /
    ``q_error_eps`` (max|Q - Q*| and max|Q - Q*_eps|). Action masks are honoured: greedy
    policies pick valid actions only, and the errors skip the masked cells (-inf in Q*
    and Q*_eps, while a learned Q keeps its initial value there).
    """

    def __init__(self, env, params, gamma: float, epsilon: float = EPSILON,
                 horizon: int | None = None):
        import jax
        import jax.numpy as jnp

        import jaxq
        from jaxq.vecenv import time_limit

        self.gamma, self.epsilon = float(gamma), float(epsilon)
        self.model = m = jaxq.tabular_model(env, params)
        S, A, K = m.prob.shape
        self.horizon = int(horizon if horizon is not None else min(time_limit(params), 100_000))
        self.q_star = jaxq.value_iteration(m, gamma)
        self.v_star = float(jaxq.start_value(m, self.q_star))
        s_idx = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32)[:, None, None], (S, A, K))
        succ = jax.vmap(lambda s, ns, r, t: env.is_success(s, ns, r, t, params))(
            s_idx.reshape(-1), m.next_state.reshape(-1), m.reward.reshape(-1),
            m.terminated.reshape(-1)).reshape(S, A, K)
        self._p_success = jnp.sum(m.prob * succ, axis=-1)  # [S, A]
        self._cont = m.prob * (~m.terminated)  # undiscounted continuation [S, A, K]
        self.q_star_eps = self._eps_fixed_point()
        self.success_star = float(self._success(greedy_policy(self.q_star, m.valid)))
        self.metrics = jax.jit(self._metrics)
        self.batch = jax.jit(jax.vmap(self._metrics))

    def _eps_fixed_point(self, sweeps: int = 4000):
        """Q*_eps: value iteration with the eps-greedy backup (the fixed point of SARSA
        and Expected SARSA under a constant eps), over valid actions; -inf where masked."""
        import jax
        import jax.numpy as jnp

        m, eps = self.model, self.epsilon
        r = m.expected_reward()
        cont = m.prob * self.gamma * (~m.terminated)
        valid = m.valid_mask()
        n_valid = jnp.sum(valid, axis=1)

        def sweep(_, q):
            v = ((1 - eps) * jnp.max(jnp.where(valid, q, -jnp.inf), axis=1)
                 + eps * jnp.sum(jnp.where(valid, q, 0.0), axis=1) / n_valid)
            return r + jnp.sum(cont * v[m.next_state], axis=-1)

        q = jax.jit(lambda: jax.lax.fori_loop(0, sweeps, sweep, jnp.zeros_like(r)))()
        return jnp.where(valid, q, -jnp.inf)

    def _success(self, pi):
        import jax
        import jax.numpy as jnp

        m = self.model
        p_succ = jnp.sum(pi * self._p_success, axis=1)  # [S]
        cont = pi[:, :, None] * self._cont  # [S, A, K]

        def step(_, h):  # h(s) = P(success within k steps from s)
            return p_succ + jnp.sum(cont * h[m.next_state], axis=(1, 2))

        h = jax.lax.fori_loop(0, self.horizon, step, jnp.zeros(m.num_states, jnp.float32))
        return jnp.sum(m.initial * h)

    def _metrics(self, q):
        import jax.numpy as jnp

        import jaxq

        pi = greedy_policy(q, self.model.valid)
        value = jaxq.policy_start_value(self.model, pi, self.gamma, tol=VALUE_TOL)

        def error(target):  # over the valid cells: masked ones are -inf in the target
            return jnp.max(jnp.where(jnp.isfinite(target), jnp.abs(q - target), 0.0))

        return {"value": value, "success": self._success(pi),
                "q_error": error(self.q_star), "q_error_eps": error(self.q_star_eps)}


# ---------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------
def make_config(rule: str, num_envs: int, steps: int, seed: int, epsilon: float,
                visit_power: float = VISIT_POWER):
    from jaxq.config import TrainConfig

    iters = -(-steps // num_envs)
    # chunks only bound num_envs x chunk_iters below 2**31 (the config checks it); the
    # loop below drives learner.step itself
    chunks = max(1, min(iters, -(-steps // (1 << 30))))
    return TrainConfig(
        env_id=ENV_ID, algo=rule, num_envs=num_envs, n_step=1, total_steps=steps,
        num_chunks=chunks, gamma=GAMMA, lr_schedule="visit", visit_power=visit_power,
        epsilon=epsilon, epsilon_end=epsilon, epsilon_schedule="constant",
        exploration="epsilon_greedy", aggregation="mean", q_init=0.0, eval_every=0,
        seed=seed)


def checkpoints(iters: int, points: int) -> list[int]:
    """~log-spaced iteration counts from 1 to ``iters`` (both included)."""
    xs = np.unique(np.round(np.geomspace(1, iters, max(points, 2))).astype(np.int64))
    return [int(x) for x in xs]


def run_one(rule: str, num_envs: int, steps: int, points: int, evaluator: GreedyEvaluator,
            seed: int, epsilon: float, visit_power: float, cap_s: float | None,
            log: Callable[[str], None]) -> dict[str, Any]:
    import jax

    from jaxq.training import build_learner

    cfg = make_config(rule, num_envs, steps, seed, epsilon, visit_power)
    learner = build_learner(cfg, evaluator.q_star)
    hp = cfg.hparams()
    ep = learner.params

    def segment(c, hp, ep, n):
        tables = learner.venv.prepare(ep)  # loop-invariant, as in learner.chunk
        return jax.lax.fori_loop(0, n, lambda _, c: learner.step(c, hp, ep, tables)[0], c)

    key = jax.random.key(seed)
    init = jax.jit(learner.init)
    carry = init(key, hp, ep)
    seg, compile_s = benchlib.compile_jitted(jax.jit(segment, donate_argnums=0), carry, hp, ep,
                                             np.int32(1))
    estimate = jax.jit(learner.estimate)
    benchlib.block(seg(init(key, hp, ep), hp, ep, np.int32(1)))  # warm-up, thrown away
    iters = -(-steps // num_envs)
    done, wall, capped = 0, 0.0, False
    curve: dict[str, list] = {k: [] for k in ("iterations", "env_steps", "wall_s", "q_error",
                                              "q_error_eps", "success", "value_ratio")}
    for it in checkpoints(iters, points):
        t0 = time.perf_counter()
        carry = benchlib.block(seg(carry, hp, ep, np.int32(it - done)))
        wall += time.perf_counter() - t0
        done = it
        m = jax.device_get(evaluator.metrics(estimate(carry)))
        curve["iterations"].append(it)
        curve["env_steps"].append(it * num_envs)
        curve["wall_s"].append(wall)
        curve["q_error"].append(float(m["q_error"]))
        curve["q_error_eps"].append(float(m["q_error_eps"]))
        curve["success"].append(float(m["success"]))
        curve["value_ratio"].append(float(m["value"]) / evaluator.v_star)
        if cap_s is not None and wall >= cap_s and it < iters:
            capped = True  # a safety net: the curve ends here
            break
    solved = [i for i, v in enumerate(curve["value_ratio"]) if 1 - v <= SOLVED_GAP]
    first = solved[0] if solved else None
    rec = {
        "rule": rule, "num_envs": num_envs, "env_steps": done * num_envs, "iterations": done,
        "budget_env_steps": iters * num_envs, "capped": capped,
        "compile_s": compile_s, "run_s": wall, "steps_per_s": done * num_envs / wall,
        "final": {k: curve[k][-1] for k in ("q_error", "q_error_eps", "success", "value_ratio")},
        "solved_env_steps": None if first is None else curve["env_steps"][first],
        "solved_wall_s": None if first is None else curve["wall_s"][first],
        "curve": curve,
    }
    f = rec["final"]
    log(f"  {RULE_NAMES[rule]:<17} N={num_envs:<6} {benchlib.human(rec['env_steps']):>6} steps "
        f"in {wall:6.2f} s ({benchlib.human(rec['steps_per_s'])}/s, compile {compile_s:.1f} s): "
        f"max|Q-Q*| {f['q_error']:.3f}  success {f['success']:.3f}  V/V* {f['value_ratio']:.3f}"
        + (f"  solved at {benchlib.human(rec['solved_env_steps'])} steps, "
           f"{rec['solved_wall_s']:.2f} s" if first is not None else "  (not solved)")
        + (f"  CAPPED at {cap_s:g} s" if capped else ""))
    return rec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = benchlib.experiment_parser(
        __doc__, "seconds, not a measurement: N = 1 and 16, 16k and 131k env steps; writes "
                 "into a temp dir unless --out",
        full_help="accelerator-sized budgets (up to 8.6G env steps at N = 65,536)",
        sizes_exclusive=True, plots=True,
        markdown_only_help="only re-render BENCHMARKS.md from "
                           "<out>/results/convergence/results.json",
        no_markdown_help="write the JSON and plots only")
    p.add_argument("--rules", nargs="+", default=None, choices=RULES, help="default: all four")
    p.add_argument("--num-envs", type=int, nargs="+", default=None,
                   help="N values (default: the mode's)")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps per run for every N (default: the mode's, per N)")
    p.add_argument("--points", type=int, default=None, help="checkpoints per run")
    p.add_argument("--epsilon", type=float, default=EPSILON, help=f"default {EPSILON}")
    p.add_argument("--visit-power", type=float, default=VISIT_POWER,
                   help=f"w in alpha = n(s,a)^-w, in (0.5, 1] (default {VISIT_POWER})")
    p.add_argument("--cap-s", type=float, default=CAP_S,
                   help="stop a run at the first checkpoint past this many seconds of training "
                        f"(a safety net; default {CAP_S:g}; 0: none)")
    args = p.parse_args(argv)
    if args.num_envs is not None and any(n < 1 for n in args.num_envs):
        p.error("--num-envs values must be >= 1")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    return args


def mode_name(args) -> str:
    return "quick" if args.quick else "full" if args.full else "default"


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import jaxq

    mode = MODES[mode_name(args)]
    ns = sorted(set(args.num_envs or mode["num_envs"]))
    rules = list(args.rules or RULES)
    points = args.points or mode["points"]

    def budget(n):
        if args.steps is not None:
            return args.steps
        if n in mode["steps"]:
            return mode["steps"][n]
        known = sorted(mode["steps"])  # an N of our own: the budget of the nearest N below
        return mode["steps"][max([k for k in known if k <= n] or known[:1])]

    info = benchlib.system_info()
    log(f"convergence: {ENV_ID}, rules {rules}, N in {ns}; device {info['device']['description']}")
    env, params = jaxq.make(ENV_ID)
    evaluator = GreedyEvaluator(env, params, GAMMA, args.epsilon)
    log(f"  V* = {evaluator.v_star:.4f}; Q*'s greedy policy succeeds within {evaluator.horizon} "
        f"steps with probability {evaluator.success_star:.4f}")
    t0 = time.perf_counter()
    runs = []
    for rule in rules:
        for n in ns:
            runs.append(run_one(rule, n, budget(n), points, evaluator, args.seed, args.epsilon,
                                args.visit_power, args.cap_s or None, log))
    elapsed = time.perf_counter() - t0
    argv = getattr(args, "argv", None)
    cmd = ["python", "experiments/convergence.py"] + (sys.argv[1:] if argv is None else list(argv))
    return {
        "experiment": EXPERIMENT,
        "schema_version": SCHEMA_VERSION,
        "info": info,
        "device": info["device"]["description"],
        "jax": info["versions"]["jax"],
        "jaxlib": info["versions"]["jaxlib"],
        "config": {
            "mode": mode_name(args), "quick": args.quick, "full": args.full,
            "env_id": ENV_ID, "gamma": GAMMA, "rules": rules, "num_envs": ns,
            "env_steps": {str(n): budget(n) for n in ns}, "points": points,
            "lr_schedule": "visit", "visit_power": args.visit_power,
            "epsilon": args.epsilon, "epsilon_schedule": "constant",
            "aggregation": "mean", "n_step": 1, "q_init": 0.0, "seed": args.seed,
            "cap_s": args.cap_s or None, "solved_gap": SOLVED_GAP, "value_tol": VALUE_TOL,
            "loop": "jit(fori_loop(learner.step)) with a runtime trip count, one call per "
                    "checkpoint segment; measuring excluded from the clock",
            "command": shlex.join(cmd),
        },
        "optimal": {"v_star": evaluator.v_star, "success": evaluator.success_star,
                    "horizon": evaluator.horizon},
        "elapsed_s": elapsed,
        "runs": runs,
    }


# ---------------------------------------------------------------------------------------
# plots and markdown
# ---------------------------------------------------------------------------------------
PLOTS = {"steps": "convergence_steps.png", "wall": "convergence_wall.png"}


def make_plots(results: dict[str, Any], out: Path) -> dict[str, Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = results["config"]["rules"]
    ns = results["config"]["num_envs"]
    cmap = plt.get_cmap("viridis")
    colors = {n: cmap(i / max(len(ns) - 1, 1) * 0.9) for i, n in enumerate(ns)}
    opt = results["optimal"]["success"]
    paths = {}
    for axis, fname in PLOTS.items():
        key = "env_steps" if axis == "steps" else "wall_s"
        fig, axes = plt.subplots(2, len(rules), figsize=(3.6 * len(rules), 6.4), squeeze=False,
                                 sharex="col", sharey="row")
        for j, rule in enumerate(rules):
            top, bottom = axes[0, j], axes[1, j]
            for r in results["runs"]:
                if r["rule"] != rule:
                    continue
                c = r["curve"]
                x = np.maximum(np.asarray(c[key], float), 1e-6)
                top.plot(x, c["q_error"], color=colors[r["num_envs"]], lw=1.5,
                         label=f"N={r['num_envs']:,}")
                if rule in ON_POLICY:
                    top.plot(x, c["q_error_eps"], color=colors[r["num_envs"]], lw=0.9, ls=":")
                bottom.plot(x, c["success"], color=colors[r["num_envs"]], lw=1.5)
            bottom.axhline(opt, color="k", ls="--", lw=0.8)
            top.set_xscale("log")
            top.set_yscale("log")
            bottom.set_xscale("log")
            top.set_title(RULE_NAMES[rule], fontsize=10)
            bottom.set_ylim(0, 1)
            bottom.set_xlabel("env steps" if axis == "steps" else "wall-clock seconds")
            for a in (top, bottom):
                a.grid(alpha=0.3, which="both")
        axes[0, 0].set_ylabel("max|Q - Q*|  (dotted: Q*_eps)")
        axes[1, 0].set_ylabel(f"greedy success (dashed: Q*'s, {opt:.3f})")
        axes[0, 0].legend(fontsize=8)
        cfg = results["config"]
        fig.suptitle(f"{cfg['env_id']} slippery: alpha = n(s,a)^-{cfg['visit_power']:g}, eps = "
                     f"{cfg['epsilon']:g}; exact greedy evaluation\n"
                     f"{'training wall-clock, compile excluded; ' if axis == 'wall' else ''}"
                     f"{benchlib.device_line(results['info'])}", fontsize=10)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[axis] = path
    return paths


def _steps(x) -> str:
    return "–" if x is None else benchlib.human(x)


def _secs(x) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def render_markdown(results: dict[str, Any]) -> str:
    """The ``convergence`` section, from the results dict alone (deterministic)."""
    info, cfg = results["info"], results["config"]
    opt = results["optimal"]
    lines = [
        benchlib.heading("Convergence to Q* vs env steps and wall-clock", info),
        "",
    ]
    if cfg.get("quick"):
        lines += ["> `--quick` run: tiny sizes, a smoke test, not a measurement.", ""]
    lines += [
        f"One learner per (rule, N) on {cfg['env_id']} (slippery, gamma {cfg['gamma']:g}) "
        f"from a zero table: per-cell learning rate n(s,a)^-{cfg['visit_power']:g} (n = "
        f"batched updates of the cell), constant epsilon {cfg['epsilon']:g}, per-cell mean "
        "of a step's TD errors. The greedy policy (ties split uniformly) is evaluated exactly "
        f"on the model: success = P(goal within {opt['horizon']} steps) (Q\\*'s greedy "
        f"policy: {opt['success']:.3f}; the discounted optimum need not maximise it), "
        f"V/V\\* = discounted start value over V\\* = {opt['v_star']:.4f}. *Solved*: "
        f"V\\* - V^pi <= {cfg['solved_gap']:.0%} of V\\*; seconds are training wall-clock, "
        "compile excluded (its own column). SARSA and "
        "Expected SARSA under a constant epsilon converge to Q\\*_eps (the eps-greedy "
        "backup's fixed point), not to Q\\*: their last column is max|Q - Q\\*_eps|.",
        "",
    ]
    header = ["rule", "N", "env steps", "run (s)", "steps/s", "compile (s)", "max\\|Q-Q*\\|",
              "success", "V/V*", "solved at (steps)", "solved at (s)", "max\\|Q-Q*_eps\\|"]
    rows = []
    for r in results["runs"]:
        f = r["final"]
        rows.append([
            RULE_NAMES.get(r["rule"], r["rule"]), f"{r['num_envs']:,}",
            benchlib.human(r["env_steps"]) + (" (capped)" if r.get("capped") else ""),
            _secs(r["run_s"]), benchlib.human(r["steps_per_s"]), f"{r['compile_s']:.2f}",
            f"{f['q_error']:.3f}", f"{f['success']:.3f}", f"{f['value_ratio']:.3f}",
            _steps(r["solved_env_steps"]), _secs(r["solved_wall_s"]),
            f"{f['q_error_eps']:.3f}" if r["rule"] in ON_POLICY else "",
        ])
    lines.append(benchlib.table(header, rows, ["l"] + ["r"] * (len(header) - 1)))
    lines.append("")
    lines += [f"![convergence vs env steps](results/{EXPERIMENT}/{PLOTS['steps']}) "
              f"![convergence vs wall-clock](results/{EXPERIMENT}/{PLOTS['wall']})", ""]
    lines.append(benchlib.run_line(results, EXPERIMENT, on=info["device"]["description"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    return benchlib.experiment_main(argv, parse_args, EXPERIMENT, run_benchmark, render_markdown,
                                    lambda r, d: list(make_plots(r, d).values()),
                                    script=__file__, log=log)


if __name__ == "__main__":
    main()
