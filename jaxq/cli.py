"""``jaxq``: train, evaluate and list environments from the command line.

The ``train`` flags are generated from ``TrainConfig``'s fields (``snake_case`` field ->
``--kebab-case`` flag), and a flag not given is simply not passed, so the defaults, the
names and the validation all stay the library's: a bad value is reported with
``TrainConfig``'s own message. Every user error exits with code 2 and one line
``jaxq: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import warnings
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

from jaxq.config import (AGGREGATIONS, ALGOS, DEFAULTS, LEARNERS, LR_SCHEDULES, MLP_ALGOS,
                          Q_FUNCTIONS, STRATEGIES, TrainConfig)
from jaxq.compile_cache import ENV_VAR as COMPILE_CACHE_ENV, default_dir
from jaxq.explore import EXPLORATIONS, SCHEDULES

PROG = "jaxq"
MAX_QSTAR_CELLS = 2**22  # value iteration for Q* only below this many (s, a) cells
CHECKPOINT = "checkpoint.npz"
# the files of a run in --out; one of them there means the directory holds a run
RUN_FILES = ("config.json", "q.npy", "params.npz", "metrics.json", "learning_curve.png",
             "policy.png", CHECKPOINT)

# Flags whose name is not the field's; env_kwargs is the repeated --env-kwarg.
_RENAMED = {"env_id": "env"}
_CHOICES = {
    "algo": ALGOS, "aggregation": AGGREGATIONS, "learners": LEARNERS, "lr_schedule": LR_SCHEDULES,
    "epsilon_schedule": SCHEDULES, "temperature_schedule": SCHEDULES,
    "exploration": EXPLORATIONS, "strategy": STRATEGIES, "q_function": Q_FUNCTIONS,
    "deep_algo": MLP_ALGOS,
}
_HELP = {
    "env_id": "environment id (see `jaxq envs`; gymnax ids work too)",
    "algo": "update rule (which TD target)",
    "n_step": "n of n-step returns (1: one-step TD)",
    "num_envs": "parallel environments",
    "total_steps": "env steps summed over all environments (rounded up to whole chunks)",
    "gamma": "discount",
    "lr": "learning rate at the start of the schedule",
    "lr_schedule": "learning-rate schedule; visit = 1 / n(s,a)^visit-power",
    "lr_end": "learning rate at the end of the decay",
    "lr_decay_fraction": "share of the run over which the learning rate decays",
    "visit_power": "exponent of the visit-count learning rate",
    "exploration": "behaviour policy",
    "epsilon": "epsilon at the start",
    "epsilon_schedule": "how epsilon goes from --epsilon to --epsilon-end",
    "epsilon_end": "epsilon at the end of the decay",
    "epsilon_decay_fraction": "share of the run over which epsilon decays",
    "temperature": "Boltzmann temperature at the start",
    "temperature_schedule": "how the temperature goes from --temperature to --temperature-end",
    "temperature_end": "temperature at the end of the decay",
    "temperature_decay_fraction": "share of the run over which the temperature decays",
    "aggregation": "how TD errors for one (s, a) in one batched step combine",
    "learners": "shared: the environments update one table; independent: one learner "
                "(one table) per environment, q.npy is [N, S, A]",
    "q_init": "initial value of every Q entry",
    "seed": "random seed",
    "num_chunks": "compiled chunks (granularity of progress, evaluation, checkpoints)",
    "eval_every": "greedy evaluation every N chunks (0: none)",
    "eval_episodes": "episodes per greedy evaluation",
    "eval_max_steps": "step cap of an evaluation episode (envs without a time limit)",
    "strategy": "parallelisation strategy: single (one device), replicated (a table copy "
                "per device), sharded (table rows split over devices), async (stale actors)",
    "sync_every": "replicated/sharded: apply the combined updates every K steps; async: "
                  "refresh the actors' table snapshot every K steps (1: synchronous)",
    "num_devices": "devices a multi-device strategy uses (default: every device JAX sees); "
                   "--num-envs must be divisible by it",
    "bins": "discretizer for continuous gymnax envs: an int, or a JSON list per dimension",
    "low": "discretizer lower bound: a number or a JSON list per dimension",
    "high": "discretizer upper bound: a number or a JSON list per dimension",
    "q_function": "what holds the action values: table (dense [S, A]; continuous envs need "
                  "--bins), tiles (linear over tile coding of the observation vector in "
                  "[--low, --high]; one-hot features on tabular envs) or mlp (a neural "
                  "network on the observation vector, trained by --deep-algo; one-hot on "
                  "tabular envs); the defaults marked 'by q-function' follow it",
    "tiles_per_dim": "tiles: tiles per dimension of each tiling, an int or a JSON list per "
                     "dimension (none: 8)",
    "num_tilings": "tiles: offset tilings, each tiling's step is lr / num-tilings (none: 8)",
    "max_tiles": "tiles: weight rows; more tiles than this are hashed into this many",
    "deep_algo": "mlp: pqn (rollouts of every env, Q(lambda) targets, no replay buffer or "
                 "target network) or dqn (replay buffer, target network)",
    "width": "mlp: units per hidden layer",
    "depth": "mlp: hidden layers (Dense -> LayerNorm -> ReLU each)",
    "layer_norm": "mlp: LayerNorm in each hidden layer (true/false)",
    "max_grad_norm": "mlp: gradients clipped to this global norm",
    "reward_scale": "mlp: rewards are multiplied by this in the TD targets (returns are "
                    "reported unscaled)",
    "rollout_len": "mlp pqn: steps of every env per update",
    "num_epochs": "mlp pqn: epochs of SGD over each rollout",
    "num_minibatches": "mlp pqn: minibatches per epoch (must divide --rollout-len)",
    "q_lambda": "mlp pqn: lambda of the Q(lambda) targets, in [0, 1]",
    "buffer_size": "mlp dqn: replay buffer size in transitions (>= --batch-size and "
                   "--num-envs), rounded down to a multiple of --num-envs: each env keeps "
                   "its own last buffer-size / num-envs steps",
    "batch_size": "mlp dqn: transitions per gradient step, a multiple of --num-envs: "
                  "batch-size / num-envs from each env's steps",
    "learning_starts": "mlp dqn: env steps before the first gradient step",
    "train_every": "mlp dqn: env-step iterations per gradient step",
    "target_update_every": "mlp dqn: gradient steps between target-network updates",
    "tau": "mlp dqn: target <- tau * online + (1 - tau) * target (1: a copy)",
    "double_q": "mlp dqn: Double DQN targets (true/false)",
}


def _default_help(name: str, default: Any) -> str:
    """``default: ...`` of a flag; a field DEFAULTS fills says so per Q-function (and
    per env id where a row has one)."""
    rows = [(key, row[name]) for key, row in DEFAULTS.items() if name in row]
    if default is not None or not rows:
        return f"default: {'none' if default is None else default}"
    parts = []
    for qf in Q_FUNCTIONS:
        base = DEFAULTS.get((qf, None), {})
        if name not in base:
            continue
        envs = [f"{env} {v}" for (q, env), v in rows if q == qf and env is not None]
        parts.append(f"{qf} {base[name]}" + (f" ({', '.join(envs)})" if envs else ""))
    return "default by q-function: " + ", ".join(parts)


def _kind_of(name: str, default: Any) -> Any:
    """A field's type as its default shows it; for a field DEFAULTS fills (None on the
    dataclass), the type of its value there."""
    if default is None:
        default = next((row[name] for row in DEFAULTS.values() if name in row), None)
    return type(default)


class CliError(Exception):
    """A user error: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message: Any) -> NoReturn:
    text = " ".join(str(message).split()) or type(message).__name__
    print(f"{PROG}: error: {text}", file=sys.stderr)
    raise SystemExit(2)


# ---- value parsing: loose on the CLI side, so that TrainConfig does the validating ----

def _json_or_str(text: str) -> Any:
    """``true``, ``0.5``, ``8``, ``[1,2]`` as JSON; anything else (``8x8``) as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _int_like(text: str) -> Any:
    """An int where the text is one (``1_000_000`` and ``1e6`` included); otherwise the
    number or string as written, for TrainConfig to reject with its own message."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        x = float(text)
    except ValueError:
        return text
    return int(x) if math.isfinite(x) and x.is_integer() else x


def _float_like(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def parse_env_kwargs(items: Sequence[str] | None) -> dict[str, Any]:
    """``--env-kwarg`` values: ``["map_name=8x8", "is_slippery=false"]`` ->
    ``{"map_name": "8x8", "is_slippery": False}``."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"--env-kwarg must be KEY=VALUE with KEY a name, got {item!r}")
        if key in out:
            raise CliError(f"--env-kwarg {key} given twice")
        out[key] = _json_or_str(value)
    return out


def _flag(name: str) -> str:
    return "--" + _RENAMED.get(name, name).replace("_", "-")


def _flag_names() -> dict[str, str]:
    names = {f.name: _flag(f.name) for f in dataclasses.fields(TrainConfig)}
    names.update(env_kwargs="--env-kwarg", checkpoint_every="--checkpoint-every")
    return names


def flagify(message: Any) -> str:
    """A library message in the CLI's words: ``num_envs must be ...`` -> ``--num-envs must
    be ...``. Names with an underscore are replaced wherever they stand; one-word names
    (``gamma``, ``seed``, ``low``) only where they are the subject (``gamma must``,
    ``seed=3``, ``bins needs``), so ordinary words stay words."""
    text = str(message)
    for name, flag in sorted(_flag_names().items(), key=lambda kv: -len(kv[0])):
        tail = "" if "_" in name else r"(?=\s+must\b|\s+needs\b|=)"
        # not a quoted value that happens to be a field's name ('double_q', an algo)
        text = re.sub(rf"(?<![\w'-]){name}\b(?!'){tail}", flag, text)
    return text


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags are absent from the namespace."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == "env_kwargs":
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        t = _kind_of(f.name, default)
        kind: Callable[[str], Any] = (
            _int_like if t is int else _float_like if t is float
            else str if t is str else _json_or_str)
        parts = [_HELP.get(f.name, f.name.replace("_", " "))]
        if f.name in _CHOICES:
            parts.append("one of " + ", ".join(_CHOICES[f.name]))
        parts.append(_default_help(f.name, default))
        metavar = {_int_like: "N", _float_like: "X", _json_or_str: "JSON"}.get(kind, "NAME")
        p.add_argument(_flag(f.name), dest=f.name, type=kind, default=argparse.SUPPRESS,
                       metavar="ID" if f.name == "env_id" else metavar, help="; ".join(parts))
        if f.name == "env_id":
            p.add_argument("--env-kwarg", dest="env_kwargs", action="append", metavar="KEY=VALUE",
                           default=argparse.SUPPRESS,
                           help="environment keyword argument (repeatable); VALUE is JSON "
                                "where it parses (true, 0.5, [1,2]), else a string")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed flags describe (library validation, library messages)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "env_kwargs" in given:
        given["env_kwargs"] = parse_env_kwargs(given["env_kwargs"])
    try:
        return TrainConfig(**given)
    except (ValueError, TypeError) as e:
        raise CliError(flagify(e)) from None


# ---- helpers -----------------------------------------------------------------------

def _resolve_env(config: TrainConfig):
    from jaxq.training import resolve_env

    try:
        return resolve_env(config)
    except (ValueError, TypeError) as e:
        text = flagify(e)
        if "is continuous; pass --bins" in text:  # the other Q-functions need no bins
            text += ("; or --q-function tiles or mlp, which learn from the observation "
                     "vector itself")
        raise CliError(text) from None


def _json_safe(x: Any) -> Any:
    """Arrays -> lists, NaN/inf -> null, numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(_json_safe(obj), f, allow_nan=False)
        f.write("\n")


def _prepare_out(out: str, config: TrainConfig, found: list[str], resuming: bool) -> None:
    """Create --out; with --overwrite remove the earlier run's files (``found``) and say
    so; write config.json unless resuming (a resume with other flags must not clobber
    the run's). Called once everything is checked."""
    try:
        os.makedirs(out, exist_ok=True)
        if found and not resuming:  # --overwrite
            for name in found:
                os.remove(os.path.join(out, name))
            print(f"{PROG}: overwriting the run in {out} ({', '.join(found)})", file=sys.stderr)
        if not resuming:
            _write_config(out, config)
    except OSError as e:
        raise CliError(f"--out {out!r}: {e.strerror or e}") from None


def _write_config(out: str, config: TrainConfig) -> None:
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config.to_json() + "\n")


def _q_star(env, params, gamma: float):
    """Q* by value iteration for small tabular jaxq envs; None otherwise."""
    import jaxq
    from jaxq.envs.base import TabularEnvironment

    if not isinstance(env, TabularEnvironment):
        return None
    if env.observation_space(params).n * env.num_actions > MAX_QSTAR_CELLS:
        return None
    return np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), gamma))


def _pictures(out: str, config: TrainConfig, env, params, q: np.ndarray, q_star,
              history: dict[str, np.ndarray], has_success: bool) -> list[str] | None:
    """Write learning_curve.png and, for grid environments, policy.png (the learned
    greedy policy beside Q*'s) to ``out``; the names written, or None where matplotlib is
    not installed. ``jaxq train`` and ``jaxq plot`` both draw through here, from the same
    inputs, so a redrawn picture is the one training wrote."""
    from jaxq import plotting

    if not plotting.matplotlib_available():
        return None
    title = f"{config.algo} on {config.env_id}"
    plotting.save_learning_curve(os.path.join(out, "learning_curve.png"), history, title,
                                 has_success)
    written = ["learning_curve.png"]
    if len(history.get("env_steps", ())):
        title += f", {int(history['env_steps'][-1]):,} env steps"
    if plotting.save_policy(os.path.join(out, "policy.png"), env, params, q, q_star, title):
        written.append("policy.png")
    return written


def _skipped_pictures(env, params) -> str:
    """The one line saying which pictures matplotlib's absence skipped, and the fix."""
    from jaxq import plotting

    names = "learning_curve.png" + (
        " and policy.png" if plotting.grid_layout(env, params) is not None else "")
    return (f"{PROG}: matplotlib is not installed, so {names} were not drawn; "
            f"{plotting.PLOT_EXTRA} (then `jaxq plot DIR` draws them for this run)")


def _show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
    """``warnings.showwarning`` for the CLI: one line, no source location."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def _check_devices(config: TrainConfig) -> None:
    """The device count a multi-device strategy needs, checked before anything is written
    (the same conditions ``build_learner`` enforces, in the CLI's words)."""
    if config.strategy == "single":
        return
    import jax

    available = jax.device_count()
    d = config.num_devices or available
    if d > available:
        platform = jax.devices()[0].platform
        hint = (f"; on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={d}"
                if platform == "cpu" else "")
        raise CliError(f"--num-devices {d} but only {available} {platform} device(s) are "
                       f"available{hint}")
    if config.num_envs % d:
        which = "--num-devices" if config.num_devices else "the number of devices"
        raise CliError(f"--num-envs {config.num_envs} must be divisible by {which} ({d}) for "
                       f"--strategy {config.strategy}")


def _check_out(out: str, resume: bool, overwrite: bool) -> list[str]:
    """Refuse an --out that cannot be written, or that holds another run unless --resume
    continues it (its checkpoint) or --overwrite replaces it; writes nothing. Returns the
    run files found there."""
    path = os.path.abspath(out)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise CliError(f"--out {out!r} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise CliError(f"--out {out!r}: permission denied (the directory is not writable)")
        found = [f for f in RUN_FILES if os.path.exists(os.path.join(path, f))]
        if found and not overwrite and not (resume and CHECKPOINT in found):
            held = f"--out {out!r} already holds a run ({', '.join(found)})"
            if resume:
                raise CliError(f"{held} but no {CHECKPOINT} to resume from; pass a new --out, "
                               "or --overwrite to replace it")
            raise CliError(f"{held}; pass --resume to continue it, a new --out, or "
                           "--overwrite to replace it")
        return found
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CliError(f"--out {out!r}: cannot create it, {parent!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"--out {out!r}: cannot create it, permission denied in {parent!r}")
    return []


def _check_tensorboard(path: str) -> None:
    """--tensorboard: a directory that can be written, and tensorboardX installed;
    checked before anything is written."""
    from jaxq.logging_utils import TENSORBOARD_EXTRA, check_logdir

    try:
        check_logdir(path, "--tensorboard")
    except ValueError as e:
        raise CliError(e) from None
    if importlib.util.find_spec("tensorboardX") is None:
        raise CliError(f"--tensorboard needs tensorboardX, which is not installed: "
                       f"{TENSORBOARD_EXTRA}")


def _check_mlp_processes(args: argparse.Namespace) -> None:
    """``--q-function mlp`` and the ways to train over several processes, before a
    coordinator is contacted: Ray's learners and shards hold a table, and a network
    spans processes only through a mesh over every process's devices (strategies
    ``replicated``/``async``); ``single`` would train one copy per process."""
    from jaxq.deep_config import DEEP_STRATEGIES

    if args.ray is not None:
        raise CliError("--ray trains a table or tiles (Ray's parameter-server shards hold a "
                       "table); --q-function mlp trains over several devices with --strategy "
                       "replicated or async, over several processes with --coordinator too")
    coordinator = "--coordinator" if args.coordinator else (
        "JAXQ_COORDINATOR" if os.environ.get("JAXQ_COORDINATOR") else None)
    strategy = getattr(args, "strategy", TrainConfig.strategy)
    spanning = [s for s in DEEP_STRATEGIES if s != "single"]
    if coordinator and strategy not in spanning:
        raise CliError(f"{coordinator} trains a table or tiles with any --strategy, "
                       f"--q-function mlp with --strategy {' or '.join(spanning)} (one network "
                       f"over the devices of every process); got --strategy {strategy}")


class _RunStart:
    """What ``jaxq train`` does once everything is checked (``start``, its ``before_run``),
    for every Q-function: with several processes, wait until each has checked --out
    (process 0 must not write there first); then process 0 alone says the defaults
    taken, prepares --out (``_prepare_out``) and opens the --tensorboard writer, which
    ``log_chunk`` feeds and ``close`` closes."""

    def __init__(self, args: argparse.Namespace, config: TrainConfig, found: list[str],
                 resuming: bool, distributed: bool, writer: bool) -> None:
        self.args, self.config, self.found, self.resuming = args, config, found, resuming
        self.distributed, self.writer = distributed, writer
        self.tb_logger: Any = None

    def start(self) -> None:
        if self.distributed:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("jaxq: --out checked")
        if not self.writer:
            return
        if self.config.q_function != "table" and _defaults_line(self.config):
            print(_defaults_line(self.config), file=sys.stderr)
        _prepare_out(self.args.out, self.config, self.found, self.resuming)
        if self.args.tensorboard is not None:
            from jaxq.logging_utils import TensorBoardLogger
            try:
                self.tb_logger = TensorBoardLogger(self.args.tensorboard)
            except OSError as e:
                raise CliError(f"--tensorboard {self.args.tensorboard!r}: {e.strerror or e}"
                               ) from None

    def log_chunk(self, chunk: int, metrics: dict[str, float]) -> None:
        if self.tb_logger is not None:
            self.tb_logger(chunk, metrics)

    def close(self) -> None:
        if self.tb_logger is not None:
            self.tb_logger.close()


def _about(config: TrainConfig, env, params, q: np.ndarray) -> dict[str, Any]:
    """What metrics.json was made by and of: versions, devices, the table's size."""
    import platform

    import jax
    import jaxlib

    from jaxq import __version__
    from jaxq.vecenv import time_limit

    devices = jax.devices()
    return {
        "jaxq": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "platform": devices[0].platform, "device_kind": devices[0].device_kind,
        "device_count": len(devices), "process_count": jax.process_count(),
        "env_id": config.env_id, "env_kwargs": dict(config.env_kwargs),
        # None: the env observes vectors (q_function tiles), q holds weights per tile
        "num_states": getattr(env.observation_space(params), "n", None),
        "num_actions": int(env.action_space(params).n),
        "time_limit": None if time_limit(params) >= 2**31 - 1 else time_limit(params),
        "q_shape": list(q.shape), "q_dtype": str(q.dtype),
        # the values the run took from config.DEFAULTS (not given)
        "defaults": config.defaults_applied(),
    }


UNITS = {
    "env_steps": "environment steps summed over all environments (cumulative)",
    "episodes": "episodes finished (cumulative); episodes_in_chunk: in that chunk",
    "mean_return": "undiscounted return per episode finished in the chunk",
    "success_rate": "share of the chunk's finished episodes that succeeded "
                    "(null: the env defines no success)",
    "mean_length": "steps per episode finished in the chunk",
    "mean_abs_td": "mean |TD error| over the chunk's updates",
    "q_error": "max |Q - Q*| at the end of the chunk (null: no Q*)",
    "eval_*": "greedy evaluation at the end of the chunk (null: not evaluated then): "
              "mean return, success rate, mean length over eval_episodes episodes",
    "steps_run": "env steps run by this invocation (less than env_steps after --resume)",
    "compile_s, run_s": "seconds of compiling and of running chunks",
    "steps_per_s": "steps_run / run_s: env steps per second of running, compile excluded",
    "final_evaluation": "the greedy policy of q.npy: the last chunk's evaluation, or (no "
                        "periodic evaluation) one run after training with key(seed)",
}


def _final_evaluation(result, config: TrainConfig, q: np.ndarray) -> tuple[dict, str]:
    """The one final greedy evaluation: the last chunk's periodic one where it ran (no
    second, different figure), else one after training. Returns (figures, source)."""
    m = result.metrics
    if m and not math.isnan(m["eval_return"][-1]):
        trained = {"mean_return": float(m["eval_return"][-1]),
                   "success_rate": float(m["eval_success"][-1]),
                   "mean_length": float(m["eval_length"][-1])}
        if "eval_finished" in m:
            trained["finished"] = float(m["eval_finished"][-1])
        who = f"mean of {q.shape[0]} learners, " if q.ndim == 3 else ""
        return trained, f"{who}the last chunk's periodic evaluation"
    import jax

    import jaxq

    table = q[0] if q.ndim == 3 else q
    if config.q_function == "tiles":  # weights: rolled out through the tile coder
        from jaxq.tiles import evaluate_weights

        ev = evaluate_weights(config, result.env, result.params, table, config.eval_episodes,
                              jax.random.key(config.seed), config.eval_max_steps)
    else:
        ev = jaxq.evaluate(result.env, result.params, table, config.eval_episodes,
                           jax.random.key(config.seed), config.eval_max_steps)
    who = "learner 0, " if q.ndim == 3 else ""
    return ev._asdict(), f"{who}after training, key(seed)"


# ---- commands ----------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    """Validate everything (flags, env, devices, --out, checkpoint), then write config.json
    and train (with Q* tracked where it is cheap), write the outputs, report."""
    import jax

    from jaxq import strategies

    if getattr(args, "q_function", None) == "mlp":
        _check_mlp_processes(args)
    try:  # before anything starts a JAX backend (TrainConfig's env check imports gymnax,
        # which does): all processes then see the global mesh
        distributed = strategies.init_distributed(
            args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
    except (ValueError, RuntimeError) as e:
        raise CliError(e) from None
    config = config_from_args(args)
    if isinstance(args.checkpoint_every, int) and args.checkpoint_every < 0:
        raise CliError(f"--checkpoint-every must be an int >= 0, got {args.checkpoint_every}")
    writer = not distributed or jax.process_index() == 0
    if config.q_function == "mlp":
        return _train_mlp(args, config, distributed, writer)
    import jaxq

    env, params = _resolve_env(config)
    _check_devices(config)
    if args.ray is not None:
        _check_ray(args, config)
    out = args.out
    found = _check_out(out, args.resume, args.overwrite)
    if args.tensorboard is not None:
        _check_tensorboard(args.tensorboard)
    ckpt = os.path.join(out, CHECKPOINT)
    resuming = args.resume and os.path.exists(ckpt)
    if args.resume and not resuming:
        print(f"{PROG}: no checkpoint at {ckpt}; starting from scratch", file=sys.stderr)
    cache_dir = None if args.no_compile_cache else default_dir(args.compile_cache)
    q_star = _q_star(env, params, config.gamma)
    run = _RunStart(args, config, found, resuming, distributed, writer)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            result = (jaxq.train if args.ray is None else _ray_trainer(args))(
                config, q_star, progress=not args.no_progress,
                checkpoint_path=ckpt if (args.checkpoint_every or args.resume) else None,
                checkpoint_every=args.checkpoint_every, resume=args.resume,
                before_run=run.start, compile_cache=cache_dir,
                callback=run.log_chunk if args.tensorboard is not None else None)
        except (ValueError, TypeError) as e:  # validation, corrupt or foreign checkpoint
            raise CliError(flagify(e)) from None
        finally:
            run.close()

    q = np.asarray(result.q, np.float32)
    trained, source = _final_evaluation(result, config, q)
    optimal = None
    if q_star is not None:
        optimal = jaxq.evaluate(result.env, result.params, q_star, config.eval_episodes,
                                jax.random.key(config.seed), config.eval_max_steps)._asdict()
    # over valid cells: Q* is -inf where an action is masked out
    q_error = (float(np.max(np.where(np.isfinite(q_star), np.abs(q - q_star), 0.0)))
               if q_star is not None else None)
    if not writer:  # process 0 writes the outputs
        return 0

    s, t = result.summary(), result.timings
    try:
        np.save(os.path.join(out, "q.npy"), q)
        _write_config(out, config)
        _write_json(os.path.join(out, "metrics.json"), {
            "about": _about(config, result.env, result.params, q), "units": UNITS,
            "history": result.metrics, "summary": s, "timings": t,
            "final_evaluation": {"trained": trained, "source": source,
                                 "episodes": config.eval_episodes, "optimal": optimal,
                                 "max_abs_q_error": q_error},
            **({"ray": result.ray} if getattr(result, "ray", None) else {}),
        })
        pictures = _pictures(out, config, result.env, result.params, q, q_star,
                             result.metrics, not math.isnan(trained["success_rate"]))
    except OSError as e:
        raise CliError(f"cannot write the outputs to --out {out!r}: {e.strerror or e}") from None

    plan = config.plan()
    total = f"{s['env_steps']:,}"
    if result.start_chunk:
        total += (f" in all: {s['steps_run']:,} in this run, resumed at chunk "
                  f"{result.start_chunk}/{plan['num_chunks']}")
    rows = [
        ("env steps", total),
        ("episodes", f"{s['episodes']:,}"),
        ("wall time", f"{t['compile_s']:.2f} s compile + {t['run_s']:.2f} s run"),
        ("steps/s", _fmt(t["steps_per_s"], ".3g") + " (this run's steps / run time)"),
        ("", f"{'trained':<22}" + ("optimal (Q*)" if optimal else "")),
        ("greedy mean return", f"{_fmt(trained['mean_return']):<22}"
                               + (_fmt(optimal["mean_return"]) if optimal else "")),
        ("greedy success rate", f"{_fmt(trained['success_rate'], '.3f'):<22}"
                                + (_fmt(optimal["success_rate"], ".3f") if optimal else "")),
    ]
    if q_error is not None:
        rows.append(("max|Q - Q*|", _fmt(q_error, ".4g")))
    print(f"{config.algo} on {config.env_id}: {config.num_envs} envs, greedy evaluation over "
          f"{config.eval_episodes} episodes (cap {config.eval_max_steps} steps; {source})")
    for name, value in rows:
        print(f"  {name:<21}{value}".rstrip())
    written = ", ".join(["q.npy", "metrics.json", "config.json"] + (pictures or []))
    if getattr(result, "ray", None):
        _print_ray(result.ray)
    print(f"wrote {written} to {out}")
    if pictures is None:
        print(_skipped_pictures(result.env, result.params), file=sys.stderr)
    if args.tensorboard is not None:
        print(f"TensorBoard: tensorboard --logdir {args.tensorboard}")
    return 0


def load_table(path: str) -> np.ndarray:
    """A saved Q-table, or a CliError saying why it cannot be used (never with NumPy's
    advice to load a file unsafely)."""
    from jaxq.checkpoint import NPY_MAGIC, ZIP_MAGIC, safe_reason

    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise CliError(f"cannot read --q {path!r}: {e.strerror or e}") from None
    if magic[:4] in ZIP_MAGIC:
        raise CliError(f"--q {path!r} is an .npz archive; expected a .npy array")
    if magic != NPY_MAGIC:
        raise CliError(f"cannot read --q {path!r}: not a .npy file "
                       f"({'empty' if not magic else 'no .npy header'})")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # truncated, bad header, object arrays
        raise CliError(f"cannot read --q {path!r}: {safe_reason(e)}") from None


def _print_evaluation(ev: dict[str, float]) -> None:
    """``jaxq eval``'s report of a greedy evaluation (``jaxq.evaluate``'s fields), the same
    for a table and a run directory."""
    for name, key, spec in (("mean return", "mean_return", ".4f"),
                            ("success rate", "success_rate", ".3f"),
                            ("mean length", "mean_length", ".1f"),
                            ("finished", "finished", ".3f")):
        print(f"  {name:<14}{_fmt(ev[key], spec)}")


def _eval_run(args: argparse.Namespace, run_dir: str) -> int:
    """``jaxq eval --run DIR``: the run's greedy policy (``jaxq.load_policy``) with the env
    and keyword arguments of its config.json; a table run's figures are those of
    ``--q DIR/q.npy --env ...`` (the same ``jaxq.evaluate`` call)."""
    import jax

    from jaxq.policy import load_policy

    given = [f for f, v in (("--env", args.env), ("--q", args.q),
                            ("--env-kwarg", args.env_kwargs), ("--bins", args.bins),
                            ("--low", args.low), ("--high", args.high)) if v is not None]
    if given:
        raise CliError(f"{', '.join(given)}: a run directory brings its env and table "
                       "(config.json); use either --run DIR or --q FILE --env ID")
    try:
        policy = load_policy(run_dir, learner=args.learner)
        ev = policy.evaluate(args.episodes, jax.random.key(args.seed), args.max_steps)._asdict()
    except (ValueError, TypeError) as e:
        raise CliError(re.sub(r"^learner\b", "--learner", str(e))) from None
    print(f"{policy.env_id}: greedy policy of {run_dir} ({policy.kind}) over {args.episodes} "
          "episodes")
    _print_evaluation(ev)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """The greedy policy of a saved table (``--q FILE --env ID``) or of a run directory
    (``--run DIR`` or ``RUN_DIR``: any Q-function), evaluated the way training reports it."""
    import jax

    import jaxq
    from jaxq.evaluation import check_finite
    from jaxq.training import check_table

    for flag, value in (("--episodes", args.episodes), ("--max-steps", args.max_steps)):
        if value < 1:
            raise CliError(f"{flag} must be >= 1, got {value}")
    if args.run is not None and args.run_dir is not None:
        raise CliError(f"give the run once: --run {args.run!r} or RUN_DIR {args.run_dir!r}")
    if (args.run or args.run_dir) is not None:
        return _eval_run(args, args.run if args.run is not None else args.run_dir)
    missing = [f for f, v in (("--env", args.env), ("--q", args.q)) if v is None]
    if missing:
        raise CliError(f"{' and '.join(missing)} required: --q FILE --env ID evaluates a "
                       "table; --run DIR (or RUN_DIR) a run directory")
    fields = {"env_id": args.env, "env_kwargs": parse_env_kwargs(args.env_kwargs)}
    fields.update({k: getattr(args, k) for k in ("bins", "low", "high")
                   if getattr(args, k) is not None})
    try:
        config = TrainConfig(**fields)
    except (ValueError, TypeError) as e:
        raise CliError(flagify(e)) from None
    env, params = _resolve_env(config)
    q = load_table(args.q)
    if q.ndim == 3:
        if not 0 <= args.learner < q.shape[0]:
            raise CliError(f"--learner must be in [0, {q.shape[0] - 1}] for a table of shape "
                           f"{list(q.shape)}, got {args.learner}")
        q = q[args.learner]
    try:
        shape = (env.observation_space(params).n, env.action_space(params).n)
        if q.shape == shape and np.issubdtype(q.dtype, np.floating):  # the file, the cell
            check_finite(f"--q {args.q!r}", q, env, params)
        check_table("--q", q, *shape)
        ev = jaxq.evaluate(env, params, q, args.episodes, jax.random.key(args.seed),
                           args.max_steps)._asdict()
    except (ValueError, TypeError) as e:
        raise CliError(e) from None
    print(f"{env.name}: greedy policy of {args.q} over {args.episodes} episodes")
    _print_evaluation(ev)
    return 0


def _plot_network_run(args: argparse.Namespace, run_dir: str) -> int:
    """``jaxq plot`` of a network's run (params.npz; `jaxq train --q-function mlp` or
    `jaxq train-deep`): its learning curve from metrics.json, drawn as training drew it
    (a network has no table for policy.png)."""
    from jaxq import plotting

    if not os.path.isfile(os.path.join(run_dir, "metrics.json")):
        raise CliError(f"RUN_DIR {run_dir!r} is not a finished run: no metrics.json")
    if not plotting.matplotlib_available():
        raise CliError(f"jaxq plot needs matplotlib: {plotting.PLOT_EXTRA}")
    try:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        history = plotting.history_from_json(metrics["history"])
        about = metrics["about"]
        title = f"{about['algo']} on {about['env_id']}"
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CliError(f"cannot read the run in RUN_DIR {run_dir!r}: "
                       f"{type(e).__name__}: {e}") from None
    out = run_dir if args.out is None else args.out
    if args.out is not None:
        _check_out(out, resume=False, overwrite=True)
    try:
        os.makedirs(out, exist_ok=True)
        plotting.save_learning_curve(os.path.join(out, "learning_curve.png"), history, title,
                                     False)
    except OSError as e:
        raise CliError(f"cannot write the pictures to {out!r}: {e.strerror or e}") from None
    print(f"wrote learning_curve.png to {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Redraw a run's pictures from its files: the learning curve from metrics.json, the
    policy from q.npy and config.json (Q* recomputed as training computed it)."""
    from jaxq import plotting

    run_dir = args.run_dir
    if not os.path.isdir(run_dir):
        raise CliError(f"RUN_DIR {run_dir!r} is not a directory")
    if os.path.isfile(os.path.join(run_dir, "params.npz")):
        return _plot_network_run(args, run_dir)
    missing = [f for f in ("config.json", "metrics.json", "q.npy")
               if not os.path.isfile(os.path.join(run_dir, f))]
    if missing:
        raise CliError(f"RUN_DIR {run_dir!r} is not a finished `jaxq train` run: no "
                       f"{', '.join(missing)}")
    if not plotting.matplotlib_available():
        raise CliError(f"jaxq plot needs matplotlib: {plotting.PLOT_EXTRA}")
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = TrainConfig.from_dict(json.load(f))
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        history = plotting.history_from_json(metrics["history"])
        success = metrics["final_evaluation"]["trained"]["success_rate"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CliError(f"cannot read the run in RUN_DIR {run_dir!r}: "
                       f"{type(e).__name__}: {e}") from None
    env, params = _resolve_env(config)
    q = load_table(os.path.join(run_dir, "q.npy"))
    shape = (env.observation_space(params).n, env.action_space(params).n)
    if q.shape[-2:] != shape or q.ndim not in (2, 3):
        raise CliError(f"q.npy in RUN_DIR {run_dir!r} has shape {list(q.shape)}; "
                       f"{config.env_id} needs [{shape[0]}, {shape[1]}]")
    out = run_dir if args.out is None else args.out
    if args.out is not None:
        _check_out(out, resume=False, overwrite=True)
    q_star = _q_star(env, params, config.gamma)
    try:
        os.makedirs(out, exist_ok=True)
        written = _pictures(out, config, env, params, q, q_star, history, success is not None)
    except OSError as e:
        raise CliError(f"cannot write the pictures to {out!r}: {e.strerror or e}") from None
    print(f"wrote {', '.join(written or [])} to {out}")
    return 0


def env_rows() -> list[tuple[str, str, str, str]]:
    """(id, states x actions, time limit, description) of every registered environment,
    built with its default keyword arguments (all small)."""
    from jaxq.envs import env_specs, make
    from jaxq.vecenv import time_limit

    rows = []
    for spec in env_specs():
        env, params = make(spec.env_id)
        limit = time_limit(params)
        rows.append((spec.env_id,
                     f"{env.observation_space(params).n} x {env.action_space(params).n}",
                     "none" if limit >= 2**31 - 1 else str(limit), spec.description))
    return rows


def cmd_envs(args: argparse.Namespace) -> int:
    rows = [("id", "states x actions", "time limit", "what")] + env_rows()
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    for r in rows:
        print("".join(f"{c:<{w}}" for c, w in zip(r, widths)) + r[3])
    print("(states x actions and time limit with default --env-kwarg values; every env takes "
          "max_steps. gymnax ids are accepted too; continuous ones, e.g. CartPole-v1, need "
          "--bins for a table, or --q-function tiles or mlp.)")
    return 0


def cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    """Delegates to ``jaxq.bench.main(argv)`` where that module exists (an int it returns
    is the exit code)."""
    if importlib.util.find_spec("jaxq.bench") is None:
        print(f"{PROG}: bench is not available: this jaxq has no jaxq.bench module",
              file=sys.stderr)
        return 1
    from jaxq import bench

    code = bench.main(extra)
    return code if isinstance(code, int) else 0


# ---- train-deep: PQN and DQN (jaxq/deep_config.py, pqn.py, dqn.py) -------------------

def _add_deep_flags(p: argparse.ArgumentParser) -> None:
    """One flag per DeepConfig field (``--env`` for env_id); unset flags are absent."""
    from jaxq.deep_config import DeepConfig

    for f in dataclasses.fields(DeepConfig):
        if f.name == "env_kwargs":
            p.add_argument("--env-kwarg", dest="env_kwargs", action="append",
                           metavar="KEY=VALUE", default=argparse.SUPPRESS,
                           help="environment keyword argument (repeatable)")
            continue
        default = f.default
        kind: Callable[[str], Any] = (
            _int_like if type(default) is int else _float_like if type(default) is float
            else str if type(default) is str else _json_or_str)
        p.add_argument(_flag(f.name), dest=f.name, type=kind, default=argparse.SUPPRESS,
                       metavar="ID" if f.name == "env_id" else f.name.upper(),
                       help=f"default: {'none' if default is None else default}")


def _defaults_line(config: TrainConfig) -> str:
    """One line naming the values a run took from DEFAULTS (what it used beyond what it
    was given); empty where it took none."""
    applied = config.defaults_applied()
    if not applied:
        return ""
    items = ", ".join(f"{_flag(k)} {json.dumps(v) if isinstance(v, bool) else v}"
                      for k, v in applied.items())
    return (f"{PROG}: defaults for --q-function {config.q_function} on {config.env_id}: "
            f"{items}")


def _write_deep_outputs(out: str, result: Any, about: dict[str, Any]) -> list[str]:
    """params.npz (the network's parameters by name, what ``jaxq.load_policy`` reads),
    metrics.json and, with matplotlib, learning_curve.png; the names written."""
    import jax

    from jaxq import deep_config, plotting

    devices = jax.devices()
    s = result.summary()
    np.savez(os.path.join(out, "params.npz"), **deep_config.flat_params(result.params))
    m = result.metrics
    _write_json(os.path.join(out, "metrics.json"), {
        "about": {**about, "jax": jax.__version__, "platform": devices[0].platform,
                  "device_kind": devices[0].device_kind, "device_count": len(devices)},
        "history": m, "summary": s, "timings": result.timings,
        "final_evaluation": {
            "trained": {"mean_return": float(m["eval_return"][-1]),
                        "mean_length": float(m["eval_length"][-1]),
                        "finished": float(m["eval_finished"][-1])},
            "source": "the last chunk's greedy evaluation",
            "episodes": result.config.eval_episodes}})
    written = ["params.npz", "metrics.json"]
    if plotting.matplotlib_available():
        plotting.save_learning_curve(os.path.join(out, "learning_curve.png"), m,
                                     f"{result.config.algo} on {result.config.env_id}", False)
        written.append("learning_curve.png")
    return written


def _train_mlp(args: argparse.Namespace, config: TrainConfig, distributed: bool,
               writer: bool) -> int:
    """``jaxq train --q-function mlp``: validate (env, devices, --out, flags a network
    does not take), write config.json (the TrainConfig, defaults filled in), train PQN or
    DQN through ``jaxq.train``, write params.npz, metrics.json, learning_curve.png. With
    several processes (``distributed``) every process checks and trains, process 0 (the
    ``writer``) alone writes, as for a table."""
    import jaxq
    from jaxq import deep_config

    if args.tensorboard is not None:
        _check_tensorboard(args.tensorboard)
    try:
        deep = config.deep_config()
        deep_config.resolve_env(deep)
        if deep.strategy != "single":  # the devices, before anything is written
            from jaxq.pqn import check_split
            from jaxq.strategies import make_mesh
            check_split(deep, make_mesh(deep.num_devices).devices.size)
    except (ValueError, TypeError) as e:
        raise CliError(flagify(re.sub(r"\balgo\b", "deep_algo", str(e)))) from None
    out = args.out
    found = _check_out(out, args.resume, args.overwrite)
    ckpt = os.path.join(out, CHECKPOINT)
    resuming = args.resume and os.path.exists(ckpt)
    if args.resume and not resuming:
        print(f"{PROG}: no checkpoint at {ckpt}; starting from scratch", file=sys.stderr)
    cache_dir = None if args.no_compile_cache else default_dir(args.compile_cache)
    run = _RunStart(args, config, found, resuming, distributed, writer)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            result = jaxq.train(
                config, progress=not args.no_progress, before_run=run.start,
                checkpoint_path=ckpt if (args.checkpoint_every or args.resume) else None,
                checkpoint_every=args.checkpoint_every, resume=args.resume,
                compile_cache=cache_dir,
                callback=run.log_chunk if args.tensorboard is not None else None)
    except (ValueError, TypeError) as e:
        raise CliError(flagify(e)) from None
    finally:
        run.close()
    if not writer:  # process 0 writes the outputs
        return 0
    try:
        written = ["config.json"] + _write_deep_outputs(out, result, {
            "q_function": "mlp", "algo": config.deep_algo, "env_id": config.env_id,
            "env_kwargs": dict(config.env_kwargs), "defaults": config.defaults_applied()})
    except OSError as e:
        raise CliError(f"cannot write the outputs to --out {out!r}: {e.strerror or e}") from None
    s, t = result.summary(), result.timings
    print(f"{config.deep_algo} (mlp {config.depth} x {config.width}) on {config.env_id}: "
          f"{config.num_envs} envs, greedy evaluation over {config.eval_episodes} episodes "
          f"(cap {config.eval_max_steps} steps; the last chunk's)")
    for name, value in (
            ("env steps", f"{s['env_steps']:,}"), ("episodes", f"{s['episodes']:,}"),
            ("wall time", f"{t['compile_s']:.2f} s compile + {t['run_s']:.2f} s run"),
            ("steps/s", _fmt(t["steps_per_s"], ".3g") + " (env steps / run time)"),
            ("greedy mean return", _fmt(s["eval_return"])),
            ("greedy mean length", _fmt(s["eval_length"], ".1f"))):
        print(f"  {name:<21}{value}")
    print(f"wrote {', '.join(written)} to {out}")
    if args.tensorboard is not None:
        print(f"TensorBoard: tensorboard --logdir {args.tensorboard}")
    return 0


def cmd_train_deep(args: argparse.Namespace) -> int:
    """Validate the flags and --out, then train PQN or DQN and write config.json,
    params.npz (the network's parameters by name), metrics.json and learning_curve.png."""
    from jaxq import deep_config

    names = {f.name for f in dataclasses.fields(deep_config.DeepConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "env_kwargs" in given:
        given["env_kwargs"] = parse_env_kwargs(given["env_kwargs"])
    flags = {n: _flag(n) for n in names}

    def deep_flagify(e: Exception) -> str:
        text = str(e)
        for name in sorted(names, key=len, reverse=True):
            tail = "" if "_" in name else r"(?=\s+must\b|\s+needs\b|=|\s+\()"
            text = re.sub(rf"(?<![\w-]){name}\b{tail}", flags[name], text)
        return text

    try:
        config = deep_config.DeepConfig(**given)
        deep_config.resolve_env(config)
        if config.strategy != "single":  # the devices, before anything is written
            from jaxq.pqn import check_split
            from jaxq.strategies import make_mesh
            check_split(config, make_mesh(config.num_devices).devices.size)
    except (ValueError, TypeError) as e:
        raise CliError(deep_flagify(e)) from None
    out = args.out
    found = _check_out(out, False, args.overwrite)
    try:
        os.makedirs(out, exist_ok=True)
        for name in found + (["params.npz"] if args.overwrite else []):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        with open(os.path.join(out, "config.json"), "w") as f:
            f.write(config.to_json() + "\n")
    except OSError as e:
        raise CliError(f"--out {out!r}: {e.strerror or e}") from None
    try:
        result = deep_config.train_deep(config)
    except (ValueError, TypeError) as e:
        raise CliError(deep_flagify(e)) from None
    s = result.summary()
    written = ["config.json"] + _write_deep_outputs(
        out, result, {"algo": config.algo, "env_id": config.env_id})
    print(f"{config.algo} on {config.env_id}: {s['env_steps']:,} env steps, "
          f"{result.timings['compile_s']:.2f} s compile + {result.timings['run_s']:.2f} s run "
          f"({_fmt(result.timings['steps_per_s'], '.3g')} steps/s); greedy return "
          f"{_fmt(s['eval_return'], '.1f')} over {config.eval_episodes} episodes")
    print(f"wrote {', '.join(written)} to {out}")
    return 0


# ---- Ray: asynchronous learners and parameter-server shards; sweeps on a cluster ------

_RAY_FLAGS = {"num_learners": "--ray-learners", "num_shards": "--ps-shards",
              "max_staleness": "--max-staleness", "checkpoint_every": "--ps-checkpoint-every",
              "address": "--ray"}


def _add_ray_address_flags(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--ray", metavar="ADDRESS", default=None, required=required,
                   help="run on Ray (pip install 'jaxq[ray]'): 'local' starts a local "
                        "instance, 'auto' joins this machine's cluster, HOST:PORT or "
                        "ray://HOST:PORT a remote one")
    p.add_argument("--ray-timeout", type=float, default=15.0, metavar="S",
                   help="seconds to wait for the --ray address to answer (default: 15)")
    p.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of a --ray local instance (default: every CPU)")


def _add_ray_flags(t: argparse.ArgumentParser) -> None:
    g = t.add_argument_group("asynchronous training on Ray (--ray)")
    _add_ray_address_flags(g)
    g.add_argument("--ray-learners", type=int, default=2, metavar="K",
                   help="--ray: learner actors, each running --num-envs / K environments "
                        "(default: 2)")
    g.add_argument("--ps-shards", type=int, default=2, metavar="P",
                   help="--ray: parameter-server shards, each owning a contiguous range of "
                        "states (default: 2)")
    g.add_argument("--max-staleness", type=int, default=4, metavar="S",
                   help="--ray: a learner may be at most S pushes ahead of the slowest "
                        "(0: lockstep; default: 4)")
    g.add_argument("--ps-checkpoint-every", type=int, default=10, metavar="K",
                   help="--ray: shards checkpoint every K pushes (default: 10; 0: never)")
    g.add_argument("--ps-checkpoint-dir", metavar="DIR", default=None,
                   help="--ray: where shards checkpoint (shared storage on a cluster; "
                        "default: a temporary folder, removed after the run)")


def _check_ray(args: argparse.Namespace, config: TrainConfig) -> None:
    """--ray and its flags, before anything is written or any actor starts."""
    from jaxq import ray as jray

    for flag, bad in (("--resume", args.resume), ("--checkpoint-every", args.checkpoint_every),
                      ("--coordinator", args.coordinator), ("--tensorboard", args.tensorboard)):
        if bad:
            raise CliError(f"{flag} does not combine with --ray (shards checkpoint with "
                           "--ps-checkpoint-every; a restarted learner resumes by itself)")
    try:
        jray.check_address(args.ray, "--ray")
        jray.check_options(config, args.ray_learners, args.ps_shards, args.max_staleness,
                           args.ps_checkpoint_every, names=_RAY_FLAGS)
        jray.check_checkpoint_dir(args.ps_checkpoint_dir, "--ps-checkpoint-dir")
    except (ValueError, TypeError) as e:
        raise CliError(flagify(e)) from None
    if args.ray_timeout <= 0:
        raise CliError(f"--ray-timeout must be > 0, got {args.ray_timeout}")
    if not jray.ray_available():
        raise CliError(f"--ray needs Ray, which is not installed: {jray.RAY_EXTRA}")


def _ray_trainer(args: argparse.Namespace) -> Callable[..., Any]:
    """``jaxq.ray.train`` with the --ray flags, called as ``jaxq.train`` is."""
    from jaxq import ray as jray

    def run(config, q_star, *, progress, before_run, compile_cache, **_):
        try:
            return jray.train(config, q_star, address=args.ray, num_learners=args.ray_learners,
                              num_shards=args.ps_shards, max_staleness=args.max_staleness,
                              checkpoint_dir=args.ps_checkpoint_dir,
                              checkpoint_every=args.ps_checkpoint_every,
                              num_cpus=args.ray_cpus, timeout=args.ray_timeout,
                              compile_cache=compile_cache, before_run=before_run,
                              progress=progress)
        except ConnectionError as e:
            raise CliError(re.sub(r"^address\b", "--ray", str(e))) from None

    return run


def _print_ray(report: dict[str, Any]) -> None:
    """The Ray run's own lines: learners' throughput and staleness, exactly-once counts."""
    print(f"  {'ray':<21}{report['num_learners']} learners, {report['num_shards']} shards, "
          f"max staleness {report['max_staleness']} (observed lead {report['observed_lead_max']}, "
          f"missed pushes <= {report['observed_missed_max']}), restarts {report['restarts']}")
    for r in report["learners"]:
        print(f"  {'learner ' + str(r['learner']):<21}{r['steps_per_s']:.3g} steps/s in chunks, "
              f"{r['push_s'] + r['pull_s']:.2f} s push+pull, {r['wait_s']:.2f} s waiting, "
              f"{r['cells_per_push']:.0f} cells/push")
    total = sum(report["acknowledged"])
    print(f"  {'pushes':<21}{total} acknowledged, applied by every shard: "
          f"{'yes' if report['applied_equals_acknowledged'] else 'NO'}")


def _parse_grid(items: Sequence[str] | None) -> dict[str, list]:
    """``--grid lr=0.05,0.1 --grid seed=0:4`` -> ``{"lr": [0.05, 0.1], "seed": [0, 1, 2, 3]}``."""
    grid: dict[str, list] = {}
    for item in items or ():
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values:
            raise CliError(f"--grid must be KEY=V1,V2,... (or seed=A:B), got {item!r}")
        if key in grid:
            raise CliError(f"--grid {key} given twice")
        try:
            if ":" in values:
                lo, hi = values.split(":")
                grid[key] = list(range(int(lo), int(hi)))
            else:
                grid[key] = [_int_like(v) for v in values.split(",")]
        except ValueError:
            raise CliError(f"--grid {key}: cannot read {values!r} as numbers") from None
    if not grid:
        raise CliError("jaxq sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def cmd_sweep(args: argparse.Namespace) -> int:
    """A grid of runs as vmapped blocks, one Ray task each: sweep.json (one row per point),
    q.npy [G, S, A] and, with matplotlib, sweep.png (a heat map) in --out."""
    from jaxq import ray as jray
    from jaxq.ray._sweep import check_grid, grid_points

    config = config_from_args(args)
    try:
        grid = check_grid(_parse_grid(args.grid))
    except ValueError as e:  # "grid key 'foo' ...", "grid['seed'] must ..."
        raise CliError("--" + re.sub(r"^grid\['?(\w+)'?\]", r"grid \1", str(e))) from None
    try:
        grid_points(config, grid)  # every point is a valid TrainConfig
        jray.check_address(args.ray, "--ray")
    except (ValueError, TypeError) as e:
        raise CliError(f"--grid: {flagify(e)}" if "--ray" not in str(e) else e) from None
    if args.block_size is not None and args.block_size < 1:
        raise CliError(f"--block-size must be >= 1, got {args.block_size}")
    _resolve_env(config)
    found = _check_out(args.out, resume=False, overwrite=args.overwrite)
    if not jray.ray_available():
        raise CliError(f"jaxq sweep needs Ray, which is not installed: {jray.RAY_EXTRA}")
    try:
        result = jray.sweep(config, grid, block_size=args.block_size, address=args.ray,
                            num_cpus=args.ray_cpus, timeout=args.ray_timeout,
                            compile_cache=None if args.no_compile_cache
                            else default_dir(args.compile_cache), progress=False)
    except ConnectionError as e:
        raise CliError(re.sub(r"^address\b", "--ray", str(e))) from None
    out = args.out
    try:
        os.makedirs(out, exist_ok=True)
        for name in found:
            os.remove(os.path.join(out, name))
        _write_config(out, config)
        np.save(os.path.join(out, "q.npy"), result.q)
        _write_json(os.path.join(out, "sweep.json"), {
            "grid": grid, "rows": result.rows, "blocks": result.blocks,
            "retried_blocks": result.retried_blocks, "wall_s": result.wall_s})
        from jaxq import plotting
        drew = plotting.matplotlib_available() and result.heatmap(os.path.join(out, "sweep.png"))
    except OSError as e:
        raise CliError(f"cannot write the outputs to --out {out!r}: {e.strerror or e}") from None
    keys = list(grid)
    cols = keys + ["q_error", "greedy_value", "optimal_value", "final_return"]
    print(f"{len(result.rows)} runs in {result.blocks} blocks on Ray, {result.wall_s:.1f} s")
    print("  ".join(f"{c:>13}" for c in cols))
    for row in result.rows:
        print("  ".join(f"{_fmt(row[c], '.4g') if isinstance(row[c], float) else row[c]!s:>13}"
                        if row[c] is not None else f"{'-':>13}" for c in cols))
    print(f"wrote q.npy, sweep.json, config.json{', sweep.png' if drew else ''} to {out}")
    return 0


def _add_sweep_parser(sub) -> None:
    s = sub.add_parser("sweep", allow_abbrev=False,
                       help="train a grid of runs (seeds x lr x ...) on a Ray cluster",
                       description="Train every point of --grid as blocks of vmapped runs, "
                                   "one Ray task per block (retried if lost); write "
                                   "sweep.json, q.npy [G, S, A] and a heat map sweep.png.")
    _add_config_flags(s)
    s.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="a swept key: seed (seed=0:8 for a range) or a learning setting "
                        "(lr, lr-end, epsilon, epsilon-end, temperature, temperature-end, "
                        "gamma, visit-power); repeatable, the last varies fastest")
    s.add_argument("--block-size", type=int, default=None, metavar="B",
                   help="runs per Ray task (default: the grid spread over the cluster's CPUs)")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    s.add_argument("--overwrite", action="store_true", help="replace a sweep already in --out")
    s.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="compiled-program cache of the workers (as for train)")
    s.add_argument("--no-compile-cache", action="store_true", help="no compiled-program cache")
    _add_ray_address_flags(s)
    s.set_defaults(func=cmd_sweep)


# ---- entry point -------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from jaxq import __version__

    p = _Parser(prog=PROG, allow_abbrev=False, description="Tabular Q-learning in pure JAX.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable), e.g. one that calls "
                        "jaxq.register(id, factory), so --env can name your own environments")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", allow_abbrev=False,
                       help="train a Q-function (table, tiles or mlp) and write DIR/...",
                       description="Train; write config.json, metrics.json, "
                                   "learning_curve.png and q.npy (--q-function table or "
                                   "tiles; grid environments also policy.png) or params.npz "
                                   "(--q-function mlp) to --out.")
    _add_config_flags(t)
    t.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    t.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help=f"write DIR/{CHECKPOINT} every K chunks (default: 0, never)")
    t.add_argument("--resume", action="store_true",
                   help=f"continue from DIR/{CHECKPOINT} (same flags as the interrupted run)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, an --out holding a "
                        "run is an error unless --resume)")
    t.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="keep jaxq's compiled programs here, so a rerun with the same "
                        f"shapes skips compiling (default: ${COMPILE_CACHE_ENV}, else "
                        "~/.cache/jaxq/xla; 'off' disables)")
    t.add_argument("--no-compile-cache", action="store_true",
                   help="compile everything afresh, no compiled-program cache")
    t.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="also write every chunk's metrics as TensorBoard scalars to DIR "
                        "(step: env steps; needs tensorboardX: pip install 'jaxq[tensorboard]')")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress output (by default: a bar on a terminal, else one "
                        "line per ~10%% of the run)")
    t.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="several hosts: the coordinator's address (or JAXQ_COORDINATOR); "
                        "every process runs the same command with its own --process-id")
    t.add_argument("--num-processes", type=int, default=None, metavar="P",
                   help="number of processes (or JAXQ_NUM_PROCESSES)")
    t.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process, 0..P-1 (or JAXQ_PROCESS_ID); 0 writes the outputs")
    t.add_argument("--coordinator-timeout", type=int, default=60, metavar="S",
                   help="seconds to wait for all processes (default: 60)")
    _add_ray_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", allow_abbrev=False,
                       help="evaluate the greedy policy of a saved table or run directory")
    e.add_argument("run_dir", nargs="?", default=None, metavar="RUN_DIR",
                   help="a run directory (same as --run)")
    e.add_argument("--run", metavar="DIR", default=None,
                   help="a run directory of `jaxq train` or `jaxq train-deep` (any "
                        "Q-function): its env and kwargs come from its config.json")
    e.add_argument("--env", metavar="ID", help="environment id (with --q)")
    e.add_argument("--env-kwarg", dest="env_kwargs", action="append", metavar="KEY=VALUE",
                   help="environment keyword argument (repeatable), as for train")
    e.add_argument("--q", metavar="PATH", help="a .npy table [S, A] (or [N, S, A])")
    e.add_argument("--episodes", type=int, default=1000, help="episodes (default: 1000)")
    e.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    e.add_argument("--max-steps", type=int, default=TrainConfig.eval_max_steps,
                   help=f"step cap of an episode (default: {TrainConfig.eval_max_steps})")
    e.add_argument("--learner", type=int, default=0,
                   help="which table of an [N, S, A] file (default: 0)")
    for name in ("bins", "low", "high"):
        e.add_argument(f"--{name}", type=_json_or_str, metavar=name.upper(), help=_HELP[name])
    e.set_defaults(func=cmd_eval)

    pl = sub.add_parser("plot", allow_abbrev=False,
                        help="redraw a run's learning_curve.png and policy.png",
                        description="Redraw learning_curve.png (from metrics.json) and, for "
                                    "grid environments, policy.png (from q.npy and "
                                    "config.json) of a finished run, without retraining.")
    pl.add_argument("run_dir", metavar="RUN_DIR", help="a `jaxq train --out` directory")
    pl.add_argument("--out", metavar="DIR", default=None,
                    help="write the pictures here instead of RUN_DIR (created)")
    pl.set_defaults(func=cmd_plot)

    td = sub.add_parser("train-deep", allow_abbrev=False,
                        help="train a neural Q-function with jaxq.DeepConfig's flags (the "
                             "same runs as `jaxq train --q-function mlp`)",
                        description="Train PQN or DQN (--algo); write config.json, "
                                    "params.npz, metrics.json, learning_curve.png to --out. "
                                    "`jaxq train --q-function mlp --deep-algo ALGO` trains "
                                    "the same networks with TrainConfig's flags.")
    _add_deep_flags(td)
    td.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    td.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    td.set_defaults(func=cmd_train_deep)
    _add_sweep_parser(sub)
    sub.add_parser("envs", help="list jaxq's environment ids").set_defaults(func=cmd_envs)
    sub.add_parser("bench", add_help=False, help="throughput benchmark (if jaxq.bench exists)",
                   ).set_defaults(func=cmd_bench)
    return p


def _import_modules(names: Sequence[str]) -> None:
    """``--import MODULE``: the user's modules (e.g. registering environments), imported
    from the current directory or the Python path, before the command runs."""
    if not names:
        return
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `python -m` puts it there; the console script not
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure of the user's module
            raise CliError(f"--import {name}: {type(e).__name__}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jaxq`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code and
    raises ``SystemExit(2)`` on a user error."""
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        _import_modules(args.imports)
        if args.command == "bench":
            return cmd_bench(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args.func(args)
    except CliError as e:
        _fail(e)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
