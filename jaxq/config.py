"""``TrainConfig``: every setting of a training run, immutable and validated when built.

Static settings (which rule, how many environments, the schedule shapes) live on the
config; the numbers a user may want to sweep (learning rate, gamma, epsilon, temperature)
are turned into an ``HParams`` pytree of arrays by ``config.hparams()``, so ``train`` can
be ``jax.vmap``-ed over them.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
# what holds the action values: a dense table, or linear weights over tile coding
Q_FUNCTIONS = ("table", "tiles")
INT32_MAX = 2**31 - 1


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
    how, and ``jaxq.train`` warns when it rounds)."""

    env_id: str = "FrozenLake-v1"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    algo: str = "q_learning"
    n_step: int = 1
    num_envs: int = 1024
    total_steps: int = 20_000_000
    gamma: float = 0.99
    # learning rate: optax-style schedule from lr to lr_end, or "visit": 1 / n(s,a)^visit_power
    lr: float = 0.1
    lr_schedule: str = "linear"
    lr_end: float = 0.01
    lr_decay_fraction: float = 1.0
    visit_power: float = 0.8
    # exploration
    exploration: str = "epsilon_greedy"
    epsilon: float = 1.0
    epsilon_schedule: str = "linear"
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float = 0.5
    temperature: float = 1.0
    temperature_schedule: str = "constant"
    temperature_end: float = 0.1
    temperature_decay_fraction: float = 1.0
    # several TD errors for one (s, a) in one batched step: mean | sum
    aggregation: str = "mean"
    # shared: the N envs update one Q-function; independent: N learners, one env and one
    # table each, as one vmapped program (e.g. N seeds of a textbook experiment)
    learners: str = "shared"
    q_init: float = 0.0
    seed: int = 0
    num_chunks: int = 50
    eval_every: int = 10  # chunks; 0 disables periodic greedy evaluation
    eval_episodes: int = 1000
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
        _choice("q_function", self.q_function, Q_FUNCTIONS)
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
            if self.strategy == "sharded":
                raise ValueError("strategy 'sharded' splits a table's state rows over devices; "
                                 "q_function='tiles' runs with strategy single, replicated or "
                                 "async")
            if self.strategy == "replicated" and self.sync_every != 1:
                raise ValueError("q_function='tiles' with strategy 'replicated' applies the "
                                 "combined update every step: sync_every must be 1")
        else:
            for name in ("tiles_per_dim", "num_tilings"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} needs q_function='tiles' (got q_function="
                                     f"{self.q_function!r})")
        if self.plan()["iterations"] > INT32_MAX:
            raise ValueError("total_steps / num_envs must be below 2**31 update steps")

    # ---- derived -----------------------------------------------------------------
    def plan(self) -> dict[str, int]:
        """How the run is laid out: update steps (one per env per step), chunks, and the
        env steps actually taken (``total_steps`` rounded up to whole chunks)."""
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
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return HParams(
            lr=f(self.lr), lr_end=f(self.lr_end), visit_power=f(self.visit_power),
            epsilon=f(self.epsilon), epsilon_end=f(self.epsilon_end),
            temperature=f(self.temperature), temperature_end=f(self.temperature_end),
            gamma=f(self.gamma),
        )

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

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


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"cannot serialise {x!r}")
