"""``TrainConfig``: every setting of a training run, immutable and validated when built.

Static settings (which rule, how many environments, the schedule shapes) live on the
config; the numbers a user may want to sweep (learning rate, gamma, epsilon, temperature)
are turned into an ``HParams`` pytree of arrays by ``config.hparams()``, so ``train`` can
be ``jax.vmap``-ed over them.

One config for every Q-function (``q_function``): a dense ``table``, linear ``tiles``, or
an ``mlp`` network trained by PQN or DQN (``deep_algo``; ``config.deep_config()`` is the
``DeepConfig`` such a run trains). A table and a network want very different sizes (a
million cheap table steps against a few hundred thousand network steps), so the fields
whose good value depends on the Q-function default to None, "not set", and are filled
in one place, ``DEFAULTS`` below: the row of the Q-function, then the row of the
(Q-function, env id) pair where one exists. ``config.defaults_applied()`` says which
values a run took from there (the CLI prints them; config.json records every value).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import jax.numpy as jnp
from flax import struct

from jaxq.explore import EXPLORATIONS, SCHEDULES

ALGOS = ("q_learning", "sarsa", "expected_sarsa", "double_q")
AGGREGATIONS = ("mean", "sum")
# how the N environments learn: one shared Q-function, or N learners with one env each
LEARNERS = ("shared", "independent")
LR_SCHEDULES = SCHEDULES + ("visit",)
STRATEGIES = ("single", "replicated", "sharded", "async")
# what holds the action values: a dense table, linear weights over tile coding, or a
# neural network (an MLP trained by PQN or DQN: jaxq/pqn.py, jaxq/dqn.py)
Q_FUNCTIONS = ("table", "tiles", "mlp")
MLP_ALGOS = ("pqn", "dqn")  # deep_config.DEEP_ALGOS (a test keeps them equal)
INT32_MAX = 2**31 - 1

# ---- per-Q-function defaults ---------------------------------------------------------
# Fields left None ("not set") take the value of the Q-function's row, then of the
# (Q-function, env id) row where there is one. The rows are the settings measured to
# reach each goal of `jaxq train --env ID --q-function F` with nothing else given
# (README, "Defaults per Q-function"); the mlp row is DeepConfig's own defaults, so
# `jaxq train --q-function mlp` and `jaxq train-deep` train the same network.
_TABLE_ROW: dict[str, Any] = dict(
    num_envs=1024, total_steps=20_000_000, lr=0.1, lr_schedule="linear", lr_end=0.01,
    epsilon_decay_fraction=0.5, temperature_end=0.1, num_chunks=50, eval_every=10,
    eval_episodes=1000)
DEFAULTS: dict[tuple[str, str | None], dict[str, Any]] = {
    ("table", None): _TABLE_ROW,
    # over a tabular env, tiles are one-hot features: the table itself, same sizes
    ("tiles", None): _TABLE_ROW,
    # greedy -108.6/-108.2/-104.3 over 1000 episodes (3 seeds, 4M steps); 4,096,000 is
    # 50 whole chunks of 320 steps of the 256 envs (no rounding)
    ("tiles", "MountainCar-v0"): dict(num_envs=256, total_steps=4_096_000),
    # PQN (Gallici et al. 2024) on CartPole-v1: 4/4 seeds >= 475 from 200k env steps;
    # 512,000 is 10 whole chunks of 25 rollouts of 32 envs x 64 steps
    ("mlp", None): dict(
        num_envs=32, total_steps=512_000, lr=3e-4, lr_schedule="constant", lr_end=0.0,
        epsilon_decay_fraction=0.2, temperature_end=1.0, num_chunks=10, eval_every=1,
        eval_episodes=100, deep_algo="pqn", width=128, depth=2, layer_norm=True,
        max_grad_norm=10.0, reward_scale=0.1, rollout_len=64, num_epochs=4,
        num_minibatches=16, q_lambda=0.65, buffer_size=10_000, batch_size=128,
        learning_starts=1_000, train_every=1, target_update_every=100, tau=1.0,
        double_q=True),
    # Acrobot's greedy policy swings between chunks under a constant lr (-80 to -330
    # over 100 episodes in one run); decayed linearly to 0 it settles: -88.1, -81.6 and
    # -87.1 after 512k env steps (3 seeds), every seed >= -100 from 307k on but one chunk
    ("mlp", "Acrobot-v1"): dict(lr_schedule="linear"),
    # CartPole's greedy policy swings under the row above (7/10 seeds >= 475 at the end,
    # 10 seeds, constant or linear lr 3e-4): 64 envs x 32 steps, 8 larger minibatches per
    # rollout (2 epochs x 4), lr 1e-3 decayed linearly to 0 and lambda 0.95 (purejaxql's
    # CartPole value) gave 10/10 for the keys of key(0) and of key(1) in one vmapped call
    # each (final greedy 491-500 over 100 episodes after 512k env steps; 19/20 when each
    # seed runs alone, where float sums round differently; lambda 0.65: 19/20 vmapped,
    # 16/20 alone); 512,000 = 250 rollouts of 64 x 32
    ("mlp", "CartPole-v1"): dict(num_envs=64, rollout_len=32, num_epochs=2, num_minibatches=4,
                                 lr=1e-3, lr_schedule="linear", q_lambda=0.95),
    # PQN's published MinAtar settings (purejaxql, config/alg/pqn_minatar.yaml: 128 envs x
    # 32 steps, 2 epochs x 32 minibatches, lr 5e-4 decayed linearly, epsilon 1 -> 0.05 over
    # the first 10%, lambda 0.65, unscaled rewards) with jaxq's MLP in place of their small
    # CNN, to the 10M env steps: 10,240,000 = 2,500 rollouts of 128 x 32 in 20 chunks
    ("mlp", "Breakout-MinAtar"): dict(num_envs=128, rollout_len=32, num_epochs=2,
                                      num_minibatches=32, lr=5e-4, lr_schedule="linear",
                                      epsilon_decay_fraction=0.1, reward_scale=1.0,
                                      total_steps=10_240_000, num_chunks=20),
}
# the fields of the rows above that every Q-function has (the rest are mlp-only)
PER_Q_FUNCTION = tuple(_TABLE_ROW)
# mlp-only fields, by the algorithm they belong to (None: both)
MLP_FIELDS: dict[str, str | None] = {
    "deep_algo": None, "width": None, "depth": None, "layer_norm": None,
    "max_grad_norm": None, "reward_scale": None,
    "rollout_len": "pqn", "num_epochs": "pqn", "num_minibatches": "pqn", "q_lambda": "pqn",
    "buffer_size": "dqn", "batch_size": "dqn", "learning_starts": "dqn", "train_every": "dqn",
    "target_update_every": "dqn", "tau": "dqn", "double_q": "dqn",
}
# table/tiles fields a network does not use: each must keep its default with
# q_function="mlp", and why (the error says so rather than ignoring the value)
_NOT_FOR_MLP = {
    "algo": "the network learns Q-learning targets (PQN: Q(lambda), DQN: one step, "
            "double_q=True for Double DQN's); algo must be 'q_learning'",
    "n_step": "PQN's multi-step targets are Q(lambda), set by q_lambda",
    "lr_decay_fraction": "lr_schedule 'linear' decays over the whole run",
    "visit_power": "visit counts are a table's",
    "temperature_decay_fraction": "the temperature schedule spans the whole run",
    "aggregation": "gradients average over a minibatch",
    "learners": "the environments train one network",
    "q_init": "the network starts from its random initialisation",
    "max_tiles": "it is a tiles setting",
    "eval_every": "every chunk ends with a greedy evaluation (num_chunks sets how often)",
}


@struct.dataclass
class HParams:
    """The sweepable numbers of a run, as array leaves (``vmap`` over any of them)."""

    lr: Any
    lr_end: Any
    visit_power: Any
    epsilon: Any
    epsilon_end: Any
    temperature: Any
    temperature_end: Any
    gamma: Any


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be >= {minimum}{hi}, got {value}")


def _real(name: str, value: Any, lo: float, hi: float, lo_open=False, hi_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or math.isnan(v):
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """A training run. ``total_steps`` counts env steps summed over all environments; the
    run is rounded up to whole chunks of ``num_envs`` x ``chunk_steps`` (``plan()`` says
    how, and ``jaxq.train`` warns when it rounds).

    Fields defaulting to None are filled from ``DEFAULTS`` by ``q_function`` (and env id)
    when the config is built: after construction every one holds the value the run uses
    (``TrainConfig().num_envs == 1024``, ``TrainConfig(q_function="mlp").num_envs == 32``).
    ``replace`` re-derives them from the fields that were set, so
    ``config.replace(q_function="mlp")`` takes the network's defaults, not the table's."""

    env_id: str = "FrozenLake-v1"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    algo: str = "q_learning"
    n_step: int = 1
    num_envs: int | None = None  # DEFAULTS: 1024 (table), 32 (mlp)
    total_steps: int | None = None  # DEFAULTS: 20M (table), 500k (mlp)
    gamma: float = 0.99
    # learning rate: optax-style schedule from lr to lr_end, or "visit": 1 / n(s,a)^visit_power
    lr: float | None = None  # DEFAULTS: 0.1 (table), 3e-4 (mlp)
    lr_schedule: str | None = None  # DEFAULTS: linear (table), constant (mlp)
    lr_end: float | None = None  # DEFAULTS: 0.01 (table), 0.0 (mlp)
    lr_decay_fraction: float = 1.0
    visit_power: float = 0.8
    # exploration
    exploration: str = "epsilon_greedy"
    epsilon: float = 1.0
    epsilon_schedule: str = "linear"
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float | None = None  # DEFAULTS: 0.5 (table), 0.2 (mlp)
    temperature: float = 1.0
    temperature_schedule: str = "constant"
    temperature_end: float | None = None  # DEFAULTS: 0.1 (table), 1.0 (mlp)
    temperature_decay_fraction: float = 1.0
    # several TD errors for one (s, a) in one batched step: mean | sum
    aggregation: str = "mean"
    # shared: the N envs update one Q-function; independent: N learners, one env and one
    # table each, as one vmapped program (e.g. N seeds of a textbook experiment)
    learners: str = "shared"
    q_init: float = 0.0
    seed: int = 0
    num_chunks: int | None = None  # DEFAULTS: 50 (table), 10 (mlp)
    # chunks; 0 disables periodic greedy evaluation. DEFAULTS: 10 (table), 1 (mlp: always)
    eval_every: int | None = None
    eval_episodes: int | None = None  # DEFAULTS: 1000 (table), 100 (mlp)
    eval_max_steps: int = 1000  # cap for envs registered without a time limit
    # where it runs: single | replicated | sharded | async (strategies.py); sync_every:
    # replicated/sharded apply combined updates every k steps, async refreshes the
    # actors' table snapshot every k steps; num_devices: None = every device JAX sees
    strategy: str = "single"
    sync_every: int = 1
    num_devices: int | None = None
    # discretizer for continuous gymnax environments (q_function "table"); low/high are
    # also the box that tiles cover
    bins: Any = None
    low: Any = None
    high: Any = None
    # the Q-function: "table" (dense [S, A]) or "tiles" (linear over tile coding,
    # jaxq/tiles.py: num_tilings offset grids of tiles_per_dim tiles per dimension over
    # [low, high], hashed into max_tiles rows when larger; on a tabular env, one-hot
    # features, one tile per state). None: 8 tilings of 8 tiles per dimension (1 tiling
    # of one-hot features on a tabular env)
    q_function: str = "table"
    tiles_per_dim: Any = None
    num_tilings: int | None = None
    max_tiles: int = 2**20
    # q_function "mlp" only (None: DEFAULTS' mlp row, which is DeepConfig's defaults;
    # jaxq/deep_config.py says what each does): deep_algo "pqn" (no replay, no target
    # network; Gallici et al. 2024) or "dqn" (replay buffer, target network); the network
    # (depth x width units, Dense -> LayerNorm -> ReLU) and its optimizer (clipped RAdam)
    deep_algo: str | None = None
    width: int | None = None
    depth: int | None = None
    layer_norm: bool | None = None
    max_grad_norm: float | None = None
    reward_scale: float | None = None
    # PQN: rollouts of rollout_len steps, Q(lambda) targets, num_epochs x num_minibatches
    rollout_len: int | None = None
    num_epochs: int | None = None
    num_minibatches: int | None = None
    q_lambda: float | None = None
    # DQN: replay buffer, minibatches, target network (tau = 1: a copy), Double DQN
    buffer_size: int | None = None
    batch_size: int | None = None
    learning_starts: int | None = None
    train_every: int | None = None
    target_update_every: int | None = None
    tau: float | None = None
    double_q: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id must be a non-empty str, got {self.env_id!r}")
        if not isinstance(self.env_kwargs, Mapping):
            raise TypeError(f"env_kwargs must be a mapping, got {type(self.env_kwargs).__name__}")
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        bad_keys = [k for k in self.env_kwargs if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"env_kwargs keys must be str, got {bad_keys!r}")
        # the id and the keyword names, now rather than at train(): nothing is built here
        # (importing the environments imports gymnax, which starts a JAX backend: a
        # multi-process run calls jaxq.init_distributed before building its config)
        import jaxq.envs  # noqa: F401  (registers jaxq's ids)
        from jaxq.envs.registry import check_env
        check_env(self.env_id, self.env_kwargs)
        _choice("q_function", self.q_function, Q_FUNCTIONS)
        self._apply_defaults()
        if self.q_function == "mlp":
            self._check_mlp()
            return
        for name in MLP_FIELDS:
            if getattr(self, name) is not None:
                raise ValueError(f"{name} needs q_function='mlp' (a setting of the neural "
                                 f"network); q_function={self.q_function!r} has none")
        _choice("algo", self.algo, ALGOS)
        _int("n_step", self.n_step, 1, 64)
        _int("num_envs", self.num_envs, 1, INT32_MAX)
        _int("total_steps", self.total_steps, 1)
        _real("gamma", self.gamma, 0.0, 1.0)
        _real("lr", self.lr, 0.0, math.inf, lo_open=True, hi_open=True)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _real("lr_end", self.lr_end, 0.0, math.inf, lo_open=True, hi_open=True)
        _real("visit_power", self.visit_power, 0.5, 1.0, lo_open=True)
        _choice("exploration", self.exploration, EXPLORATIONS)
        _real("epsilon", self.epsilon, 0.0, 1.0)
        _real("epsilon_end", self.epsilon_end, 0.0, 1.0)
        _choice("epsilon_schedule", self.epsilon_schedule, SCHEDULES)
        _real("temperature", self.temperature, 0.0, math.inf, lo_open=True, hi_open=True)
        _real("temperature_end", self.temperature_end, 0.0, math.inf, lo_open=True, hi_open=True)
        _choice("temperature_schedule", self.temperature_schedule, SCHEDULES)
        for name in ("lr_decay_fraction", "epsilon_decay_fraction", "temperature_decay_fraction"):
            _real(name, getattr(self, name), 0.0, 1.0, lo_open=True)
        if self.epsilon_schedule == "exponential" and min(self.epsilon, self.epsilon_end) <= 0:
            raise ValueError("an exponential epsilon_schedule needs epsilon and epsilon_end > 0")
        if self.aggregation == "independent":  # the name before learners= existed
            warnings.warn("aggregation='independent' is now learners='independent' "
                          "(aggregation is mean or sum)", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "aggregation", "mean")
            object.__setattr__(self, "learners", "independent")
        _choice("aggregation", self.aggregation, AGGREGATIONS)
        _choice("learners", self.learners, LEARNERS)
        _real("q_init", self.q_init, -1e30, 1e30)
        _int("seed", self.seed, 0, 2**63 - 1)
        _int("num_chunks", self.num_chunks, 1, 1_000_000)
        _int("eval_every", self.eval_every, 0)
        _int("eval_episodes", self.eval_episodes, 1, INT32_MAX)
        _int("eval_max_steps", self.eval_max_steps, 1, INT32_MAX)
        _choice("strategy", self.strategy, STRATEGIES)
        _int("sync_every", self.sync_every, 1, INT32_MAX)
        if self.num_devices is not None:
            _int("num_devices", self.num_devices, 1)
        if self.strategy == "single" and self.num_devices not in (None, 1):
            raise ValueError("num_devices needs a multi-device strategy: replicated, sharded or async")
        if self.strategy == "single" and self.sync_every != 1:
            raise ValueError("sync_every needs strategy replicated, sharded or async")
        if self.strategy != "single" and self.learners == "independent":
            raise ValueError("learners='independent' runs on one device (strategy 'single')")
        steps_per_chunk = self.num_envs * self.plan()["chunk_iters"]
        if steps_per_chunk > INT32_MAX:
            raise ValueError(
                f"num_envs x steps per chunk = {steps_per_chunk} exceeds 2**31 - 1; raise num_chunks"
            )
        if self.q_function == "tiles":
            if self.bins is not None:
                raise ValueError("bins discretizes for q_function='table'; q_function='tiles' "
                                 "covers [low, high] with tiles_per_dim and num_tilings")
            if self.num_tilings is not None:
                _int("num_tilings", self.num_tilings, 1, 1024)
            if self.tiles_per_dim is not None:
                tpd = self.tiles_per_dim
                for i, x in enumerate(tpd if isinstance(tpd, (list, tuple)) else [tpd]):
                    _int("tiles_per_dim" if not isinstance(tpd, (list, tuple))
                         else f"tiles_per_dim[{i}]", x, 1, 2**20)
            _int("max_tiles", self.max_tiles, 1, 2**28)
            if self.lr_schedule == "visit":
                raise ValueError("lr_schedule='visit' counts visits of table cells; "
                                 "q_function='tiles' takes constant, linear, exponential or "
                                 "cosine (each tiling's step is lr / num_tilings)")
        else:
            for name in ("tiles_per_dim", "num_tilings"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} needs q_function='tiles' (got q_function="
                                     f"{self.q_function!r})")
        if self.plan()["iterations"] > INT32_MAX:
            raise ValueError("total_steps / num_envs must be below 2**31 update steps")

    def _apply_defaults(self) -> None:
        """Fill the fields left None from ``DEFAULTS`` (the Q-function's row, then its
        (Q-function, env id) row), remembering which (``defaults_applied``); with
        q_function="mlp", the settings of the other ``deep_algo`` stay None."""
        row = {**DEFAULTS[(self.q_function, None)],
               **DEFAULTS.get((self.q_function, self.env_id), {})}
        applied: dict[str, Any] = {}
        for name, value in row.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
                applied[name] = value
        if self.q_function == "mlp":
            _choice("deep_algo", self.deep_algo, MLP_ALGOS)
            for name, owner in MLP_FIELDS.items():
                if owner in (None, self.deep_algo):
                    continue
                if name in applied:
                    object.__setattr__(self, name, None)
                    del applied[name]
                elif getattr(self, name) is not None:
                    raise ValueError(f"{name} needs deep_algo={owner!r}; "
                                     f"deep_algo={self.deep_algo!r} does not use it")
        # not a dataclass field: kept out of equality, to_dict() and config.json
        object.__setattr__(self, "_defaults_applied", applied)

    def _check_mlp(self) -> None:
        """q_function="mlp": no table or tiles setting may be given, and every value the
        network uses is checked by the ``DeepConfig`` it builds (its messages name the
        fields, which are this config's; its ``algo`` is ``deep_algo`` here)."""
        _choice("algo", self.algo, ALGOS)
        _choice("learners", self.learners, LEARNERS)
        _choice("aggregation", self.aggregation, AGGREGATIONS)
        fields = {f.name: f for f in dataclasses.fields(self)}
        mlp_row = DEFAULTS[("mlp", None)]
        for name, why in _NOT_FOR_MLP.items():
            want = mlp_row[name] if name in mlp_row else fields[name].default
            value = getattr(self, name)
            if value != want or isinstance(value, bool) != isinstance(want, bool):
                raise ValueError(f"{name}={value!r} has no effect with q_function='mlp' "
                                 f"({why}); leave it unset")
        for name, what in (("bins", "'table' (it discretizes observations)"),
                           ("low", "'table' or 'tiles' (a bound of bins or tiles)"),
                           ("high", "'table' or 'tiles' (a bound of bins or tiles)"),
                           ("tiles_per_dim", "'tiles'"), ("num_tilings", "'tiles'")):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} needs q_function {what}; q_function='mlp' feeds the "
                                 "network the observation vector as it is (one-hot for a "
                                 "tabular env)")
        if self.sync_every != 1 and "sync_every" not in _deep_field_names():
            raise ValueError("sync_every has no effect with q_function='mlp' in this "
                             "version; leave it at 1")
        try:
            self.deep_config()
        except (ValueError, TypeError) as e:
            raise type(e)(re.sub(r"\balgo\b", "deep_algo", str(e))) from None

    # ---- derived -----------------------------------------------------------------
    def defaults_applied(self) -> dict[str, Any]:
        """The fields this config took from ``DEFAULTS`` (not set by the caller), with
        their values: what a run says it used beyond what it was given."""
        return dict(self._defaults_applied)

    def deep_config(self) -> Any:
        """The ``jaxq.DeepConfig`` a q_function="mlp" run trains: every field of the
        same name (``deep_algo`` -> ``algo``); ``jaxq.train(config)`` and
        ``make_train(config)`` build it through here."""
        if self.q_function != "mlp":
            raise ValueError(f"deep_config() needs q_function='mlp', got {self.q_function!r}")
        from jaxq.deep_config import DeepConfig

        ours = {f.name for f in dataclasses.fields(self)}
        kw = {}
        for name in _deep_field_names():
            src = "deep_algo" if name == "algo" else name
            if src in ours and getattr(self, src) is not None:
                kw[name] = getattr(self, src)
        return DeepConfig(**kw)

    def plan(self) -> dict[str, int]:
        """How the run is laid out: update steps (one per env per step), chunks, and the
        env steps actually taken (``total_steps`` rounded up to whole chunks). With
        q_function="mlp", ``DeepConfig.plan`` (an iteration is a PQN rollout of every
        env, or one DQN step of every env)."""
        if self.q_function == "mlp":
            return self.deep_config().plan()
        iters = -(-self.total_steps // self.num_envs)
        chunks = min(self.num_chunks, iters)
        chunk_iters = -(-iters // chunks)
        iterations = chunk_iters * chunks
        return {
            "iterations": iterations,
            "num_chunks": chunks,
            "chunk_iters": chunk_iters,
            "env_steps": iterations * self.num_envs,
        }

    def hparams(self) -> HParams:
        """The sweepable numbers as arrays (q_function="mlp": ``DeepHParams``, what the
        network's ``train(key, hparams)`` takes)."""
        if self.q_function == "mlp":
            return self.deep_config().hparams()
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return HParams(
            lr=f(self.lr), lr_end=f(self.lr_end), visit_power=f(self.visit_power),
            epsilon=f(self.epsilon), epsilon_end=f(self.epsilon_end),
            temperature=f(self.temperature), temperature_end=f(self.temperature_end),
            gamma=f(self.gamma),
        )

    def replace(self, **changes: Any) -> "TrainConfig":
        """A new config with ``changes``; the fields this one took from ``DEFAULTS`` are
        derived again (so a new q_function or env id brings its own defaults)."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name not in self._defaults_applied}
        return type(self)(**{**given, **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=_jsonable)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; accepted: {sorted(known)}")
        return cls(**d)


def _deep_field_names() -> list[str]:
    from jaxq.deep_config import DeepConfig

    return [f.name for f in dataclasses.fields(DeepConfig)]


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"cannot serialise {x!r}")
