"""Tabular views of gymnax environments: the observation becomes an int32 state index.

jaxq's learners need a Discrete observation in [0, S). ``make_tabular(env_id, ...)`` and
``discretize(env, params, ...)`` give one for any gymnax environment that admits it:

* jaxq's own ids are already tabular and pass through unchanged.
* Finite gymnax environments get an exact index (``EXACT_INDEXES`` says which and how).
* Continuous observations are cut into a uniform grid of ``bins`` cells between ``low``
  and ``high``; values outside are clipped into the edge cells.

``StateIndexed`` wraps the gymnax environment and converts *observations*, not internal
states: gymnax's ``step`` reports the pre-reset outcome only as
``info["final_observation"]``, and calling the inner ``step`` keeps environment-specific
overrides (DeepSea's bookkeeping across resets), auto-reset and time limits unchanged.
Each exact index is therefore chosen so that the observation is Markov and the index is a
bijection from the observations an episode can produce onto [0, S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces
from gymnax.environments.bsuite import (
    bandit,
    catch,
    deep_sea,
    discounting_chain,
    memory_chain,
    mnist,
    umbrella_chain,
)
from gymnax.environments.classic_control import cartpole
from gymnax.environments.misc import bernoulli_bandit, gaussian_bandit, meta_maze, rooms

from jaxq.envs.base import INT32_MAX, TabularEnvironment
from jaxq.envs.grids import check_positive_int
from jaxq.envs.registry import make

# --------------------------------------------------------------------------------------
# Exact indexes. Each is a frozen dataclass (hashable, so the wrapper can be a static jit
# argument) mapping ONE observation to an int32 scalar.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    """The observation already is the index (gymnax's FrozenLake, any Discrete space)."""

    num_states: int

    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.asarray(obs, jnp.int32)


@dataclass(frozen=True)
class _Single:
    """Bandits: one state (S = 1). The per-episode arm values are hidden from a tabular
    learner, which therefore estimates each arm's mean over episodes."""

    num_states: int = 1

    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.zeros((), jnp.int32)


@dataclass(frozen=True)
class _DeepSea:
    """(row, column) of the one-hot grid, packed as a triangle since column <= row
    always (one step down per action), plus one index for the all-zero terminal grid."""

    size: int

    @property
    def num_states(self) -> int:
        return self.size * (self.size + 1) // 2 + 1

    def __call__(self, obs: jax.Array) -> jax.Array:
        flat = jnp.reshape(obs, (-1,))
        k = jnp.argmax(flat).astype(jnp.int32)
        row, col = k // self.size, k % self.size
        return jnp.where(flat[k] > 0, row * (row + 1) // 2 + col, self.num_states - 1)


@dataclass(frozen=True)
class _Catch:
    """Catch (ball row y, ball column, paddle column), compact and exact.

    The paddle starts in column ``columns // 2`` and moves at most one column per row
    the ball falls, so at ball row y only the paddle columns [lo_y, hi_y] are counted.
    In the last (terminal) row the observation cannot tell ball from paddle, so those
    observations are indexed by the lit columns a <= b (a == b: caught).
    """

    rows: int
    columns: int

    def _windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.arange(self.rows - 1)
        c0 = self.columns // 2
        lo = np.maximum(0, c0 - y)
        width = np.minimum(self.columns - 1, c0 + y) - lo + 1
        offset = np.concatenate([[0], np.cumsum(self.columns * width)])
        return lo, width, offset

    @property
    def num_states(self) -> int:
        return int(self._windows()[2][-1]) + self.columns * (self.columns + 1) // 2

    def __call__(self, obs: jax.Array) -> jax.Array:
        lo, width, offset = (jnp.asarray(a, jnp.int32) for a in self._windows())
        top = jnp.reshape(obs[:-1], (-1,))
        k = jnp.argmax(top).astype(jnp.int32)
        y, ball_x = k // self.columns, k % self.columns
        paddle_x = jnp.argmax(obs[-1]).astype(jnp.int32)
        falling = offset[y] + ball_x * width[y] + paddle_x - lo[y]
        lit = obs[-1] > 0
        a = jnp.argmax(lit).astype(jnp.int32)
        b = (self.columns - 1 - jnp.argmax(lit[::-1])).astype(jnp.int32)
        landed = offset[-1] + b * (b + 1) // 2 + a
        return jnp.where(top[k] > 0, falling, landed)


@dataclass(frozen=True)
class _FourRooms:
    """Agent position among the free cells (row-major), times the goal's when the goal
    is resampled per episode (``params.resample_goal_pos``). The visual observation
    shows the agent only, so it is indexable only with the fixed goal."""

    free: tuple[tuple[int, ...], ...] = field(repr=False)  # [H][W] free-cell index or -1
    num_free: int
    with_goal: bool
    visual: bool

    @property
    def num_states(self) -> int:
        return self.num_free * (self.num_free if self.with_goal else 1)

    def __call__(self, obs: jax.Array) -> jax.Array:
        free = jnp.asarray(self.free, jnp.int32)
        if self.visual:  # channel 1 marks the agent at [pos[1], pos[0]]
            k = jnp.argmax(jnp.reshape(obs[..., 1], (-1,))).astype(jnp.int32)
            width = free.shape[1]
            return free[k % width, k // width]
        o = jnp.asarray(obs, jnp.int32)
        pos = free[o[0], o[1]]
        return free[o[2], o[3]] * self.num_free + pos if self.with_goal else pos


@dataclass(frozen=True)
class _UmbrellaChain:
    """(time t in 0..L, need_umbrella, has_umbrella) from obs[:3]; the distractor bits
    after them are i.i.d. noise and are left out (the index stays Markov)."""

    chain_length: int

    @property
    def num_states(self) -> int:
        return 4 * (self.chain_length + 1)

    def __call__(self, obs: jax.Array) -> jax.Array:
        steps = jnp.round((1.0 - obs[2]) * self.chain_length)  # obs[2] = 1 - t / L
        t = jnp.clip(steps, 0, self.chain_length).astype(jnp.int32)
        return (t * 2 + obs[0].astype(jnp.int32)) * 2 + obs[1].astype(jnp.int32)


@dataclass(frozen=True)
class _DiscountingChain:
    """(context, time): index 0 before the first action (context -1), then
    1 + context * T + (t - 1) for t in 1..T."""

    num_contexts: int
    max_steps: int

    @property
    def num_states(self) -> int:
        return 1 + self.num_contexts * self.max_steps

    def __call__(self, obs: jax.Array) -> jax.Array:
        context = obs[0].astype(jnp.int32)
        t = jnp.clip(jnp.round(obs[1] * self.max_steps), 0, self.max_steps).astype(jnp.int32)
        return jnp.where(t == 0, 0, 1 + context * self.max_steps + t - 1)


@dataclass(frozen=True)
class UniformBins:
    """A uniform grid over a box: dimension d has ``bins[d]`` equal cells between
    ``low[d]`` and ``high[d]``; values outside (even +-inf) go to the edge cells.

    Cell i of dimension d is [low + i*w, low + (i+1)*w), w = (high - low) / bins, up to
    float32 rounding at the edges; the index is row-major (dimension 0 most significant,
    as ``np.ravel_multi_index``), so S = prod(bins).
    """

    bins: tuple[int, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def num_states(self) -> int:
        return math.prod(self.bins)

    def cells(self, obs: jax.Array) -> jax.Array:
        """Per-dimension cell numbers ``[D]`` (int32) of one observation."""
        x = jnp.reshape(jnp.asarray(obs, jnp.float32), (len(self.bins),))
        scale = np.array([b / (h - l) for b, l, h in zip(self.bins, self.low, self.high)])
        u = (x - np.asarray(self.low, np.float32)) * scale.astype(np.float32)
        u = jnp.clip(u, 0.0, np.asarray(self.bins, np.float32) - 1.0)  # float clip: inf-safe
        return jnp.floor(u).astype(jnp.int32)

    def __call__(self, obs: jax.Array) -> jax.Array:
        strides = np.cumprod((self.bins[1:] + (1,))[::-1])[::-1].astype(np.int32)
        return jnp.sum(self.cells(obs) * strides).astype(jnp.int32)


# --------------------------------------------------------------------------------------
# Which gymnax environments get which exact index
# --------------------------------------------------------------------------------------


def _deep_sea(env: deep_sea.DeepSea, params: Any, name: str) -> _DeepSea:
    if bool(params.sample_action_map):
        raise ValueError(
            f"{name} with params.sample_action_map=True draws a new action map each "
            "episode; the position is then not a Markov state. Use sample_action_map=False."
        )
    return _DeepSea(int(env.size))


def _catch(env: catch.Catch, params: Any, name: str) -> _Catch:
    if env.rows < 2 or env.columns < 1:
        raise ValueError(f"{name} needs rows >= 2 and columns >= 1, got {env.rows}x{env.columns}")
    return _Catch(int(env.rows), int(env.columns))


def _four_rooms(env: rooms.FourRooms, params: Any, name: str) -> _FourRooms:
    free_map = np.asarray(env.env_map, bool)
    free = np.full(free_map.shape, -1, np.int64)
    free[free_map] = np.arange(free_map.sum())
    with_goal = bool(params.resample_goal_pos)
    if with_goal and env.use_visual_obs:
        raise ValueError(
            f"{name} with use_visual_obs=True does not show the goal, which "
            "params.resample_goal_pos=True moves every episode; use use_visual_obs=False "
            "or a fixed goal."
        )
    return _FourRooms(tuple(map(tuple, free.tolist())), int(free_map.sum()), with_goal,
                      bool(env.use_visual_obs))


EXACT_INDEXES: dict[type, Callable[[Any, Any, str], Any]] = {
    bandit.SimpleBandit: lambda env, params, name: _Single(),
    bernoulli_bandit.BernoulliBandit: lambda env, params, name: _Single(),
    gaussian_bandit.GaussianBandit: lambda env, params, name: _Single(),
    deep_sea.DeepSea: _deep_sea,
    catch.Catch: _catch,
    rooms.FourRooms: _four_rooms,
    umbrella_chain.UmbrellaChain: lambda env, params, name: _UmbrellaChain(
        int(params.chain_length)),
    discounting_chain.DiscountingChain: lambda env, params, name: _DiscountingChain(
        int(env.n_actions), int(params.max_steps_in_episode)),
}
"""gymnax classes with an exact index (plus any env whose observation space is Discrete)."""

_NOT_INDEXABLE: dict[type, str] = {
    memory_chain.MemoryChain: "is partially observable by design (the context is shown "
    "only at the first step), so no index of its observation is a Markov state",
    meta_maze.MetaMaze: "sees only a small view around the agent and not its goal, which "
    "moves every episode, so no index of its observation is a Markov state",
    mnist.MNISTBandit: "observes MNIST images, which have no small exact index",
}
_NOT_INDEXABLE_IDS = {"MNISTBandit-bsuite": mnist.MNISTBandit}  # rejected before download


def _default_bounds(env: Any, params: Any, box: spaces.Box, dim: int):
    """Finite default bounds: CartPole's termination thresholds and velocity ranges
    that a balancing pole rarely leaves (its space is unbounded there); otherwise the
    observation space's own bounds (MountainCar, Acrobot), which may be infinite."""
    if isinstance(env, cartpole.CartPole):
        x, th = float(params.x_threshold), float(params.theta_threshold_radians)
        return np.array([-x, -3.0, -th, -3.5]), np.array([x, 3.0, th, 3.5])
    low = np.broadcast_to(np.asarray(box.low, np.float64), (dim,)).copy()
    high = np.broadcast_to(np.asarray(box.high, np.float64), (dim,)).copy()
    huge = np.finfo(np.float32).max  # gymnax writes "unbounded" as float32 max
    low[low <= -huge], high[high >= huge] = -np.inf, np.inf
    return low, high


def _check_bound(name: str, value: Any, default: np.ndarray) -> np.ndarray:
    dim = len(default)
    if value is None:
        return default
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or {dim} numbers, got {value!r}") from None
    if arr.ndim == 0:
        arr = np.full(dim, float(arr))
    if arr.shape != (dim,):
        raise ValueError(f"{name} must be a number or {dim} numbers (one per observation "
                         f"dimension), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise ValueError(f"{name}[{bad[0]}] must be finite, got {arr[bad[0]]}")
    return arr


def _uniform_bins(env: Any, params: Any, name: str, bins: Any, low: Any, high: Any) -> UniformBins:
    box = env.observation_space(params)
    shape = tuple(getattr(box, "shape", ()) or ())
    if not isinstance(box, spaces.Box) or len(shape) > 1:
        raise ValueError(
            f"{name} has no tabular index: its observation space {type(box).__name__}"
            f"{shape} is not a known finite one nor a 1-D vector that bins could cut"
        )
    dim = shape[0] if shape else 1
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        bins = (bins,) * dim
    elif isinstance(bins, np.ndarray):
        bins = bins.tolist()
    if not isinstance(bins, Sequence) or isinstance(bins, str):
        raise TypeError(f"bins must be an int or a sequence of {dim} ints, got {bins!r}")
    if len(bins) != dim:
        raise ValueError(
            f"bins must be an int or {dim} ints (one per observation dimension of {name}), "
            f"got {len(bins)}"
        )
    bins = tuple(check_positive_int(f"bins[{i}]", b) for i, b in enumerate(bins))
    if math.prod(bins) > INT32_MAX:
        raise ValueError(
            f"bins={bins} give {math.prod(bins)} states, more than 2**31 - 1; use fewer bins"
        )
    d_low, d_high = _default_bounds(env, params, box, dim)
    unbounded = [i for i in range(dim)
                 if (low is None and not np.isfinite(d_low[i]))
                 or (high is None and not np.isfinite(d_high[i]))]
    if unbounded:
        raise ValueError(
            f"{name}'s observation space is unbounded in dimension(s) {unbounded}; "
            "pass finite low=... and high=..."
        )
    low = _check_bound("low", low, d_low)
    high = _check_bound("high", high, d_high)
    for i in range(dim):
        if not low[i] < high[i]:
            raise ValueError(f"low[{i}] must be < high[{i}], got {low[i]} >= {high[i]}")
    return UniformBins(bins, tuple(map(float, low)), tuple(map(float, high)))


# --------------------------------------------------------------------------------------
# The wrapper and the entry points
# --------------------------------------------------------------------------------------


class StateIndexed(environment.Environment):
    """A gymnax environment whose observations are int32 state indices in [0, S).

    The state is the inner environment's own, and ``step`` is the inner ``step`` with
    the observation and ``info["final_observation"]`` encoded, so auto-reset, time
    limits and any overridden ``step`` behave exactly as in the inner environment.
    Hashed by identity, like gymnax environments: a wrapper carries its default params,
    which jit bakes in when ``params`` is omitted, so two wrappers must not share a trace.
    """

    def __init__(self, env: environment.Environment, params: Any, indexer: Any, env_id: str):
        self.env = env
        self.indexer = indexer
        self.num_states = int(indexer.num_states)
        self.env_id = env_id
        self._params = params

    def __repr__(self) -> str:
        return f"StateIndexed({self.env_id!r}, num_states={self.num_states}, {self.indexer})"

    def encode(self, obs: Any) -> jax.Array:
        """The int32 index of one inner observation (vmap it for a batch)."""
        return self.indexer(obs)

    @property
    def default_params(self) -> Any:
        return self._params

    @property
    def name(self) -> str:
        return self.env_id

    @property
    def num_actions(self) -> int:
        return int(self.env.action_space(self._params).n)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return self.env.action_space(self._params if params is None else params)

    def observation_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_states)

    def state_space(self, params: Any = None):
        return self.env.state_space(self._params if params is None else params)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None):
        obs, state = self.env.reset(key, self._params if params is None else params)
        return self.encode(obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        """The inner gymnax ``step`` (six-tuple, auto-reset) with indices for observations."""
        obs, state, reward, terminated, truncated, info = self.env.step(
            key, state, action, self._params if params is None else params
        )
        info = {**info, "final_observation": self.encode(info["final_observation"])}
        return self.encode(obs), state, reward, terminated, truncated, info

    def reset_env(self, key: jax.Array, params: Any):
        obs, state = self.env.reset_env(key, params)
        return self.encode(obs), state

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any):
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        return self.encode(obs), state, reward, terminated, info

    def observe(self, key: jax.Array, state: Any, action: Any, params: Any) -> jax.Array:
        return self.encode(self.env.observe(key, state, action, params))

    def get_obs(self, state: Any, params: Any = None, key: jax.Array | None = None) -> jax.Array:
        return self.observe(key, state, None, self._params if params is None else params)

    def is_terminated(self, state: Any, params: Any) -> jax.Array:
        return self.env.is_terminated(state, params)

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return self.env.is_truncated(state, params)


def discretize(
    env: environment.Environment,
    params: Any = None,
    bins: int | Sequence[int] | None = None,
    low: float | Sequence[float] | None = None,
    high: float | Sequence[float] | None = None,
    *,
    env_id: str | None = None,
) -> tuple[environment.Environment, Any]:
    """``(env, params)`` with int32 state-index observations, from a made gymnax env.

    jaxq tabular envs are returned unchanged; finite gymnax envs get their exact index;
    continuous 1-D observations need ``bins`` (an int for every dimension or one per
    dimension) and take ``low``/``high`` (a number or one per dimension; defaults: see
    ``_default_bounds``). ``params`` (default: the env's) fixes the sizes the index
    depends on (UmbrellaChain's chain length, FourRooms' goal resampling, ...); pass the
    same params to ``step``. Raises ValueError/TypeError before anything compiles.
    """
    if not isinstance(env, environment.Environment):
        raise TypeError(f"env must be a gymnax Environment, got {type(env).__name__}")
    name = env_id or env.name
    params = env.default_params if params is None else params
    binning = bins is not None or low is not None or high is not None
    if isinstance(env, (TabularEnvironment, StateIndexed)):
        if binning:
            raise ValueError(f"{name} is already tabular ({env.observation_space(params).n} "
                             "states); bins/low/high apply only to continuous observations")
        return env, params
    actions = env.action_space(params)
    if not isinstance(actions, spaces.Discrete):
        raise ValueError(f"{name} has a {type(actions).__name__} action space; tabular "
                         "learners need Discrete actions")
    if type(env) in _NOT_INDEXABLE:
        raise ValueError(f"{name} {_NOT_INDEXABLE[type(env)]}")
    obs_space = env.observation_space(params)
    if isinstance(obs_space, spaces.Discrete) or type(env) in EXACT_INDEXES:
        if binning:
            raise ValueError(f"{name} is finite and indexed exactly; bins/low/high apply "
                             "only to continuous observations")
        indexer = (_Identity(int(obs_space.n)) if isinstance(obs_space, spaces.Discrete)
                   else EXACT_INDEXES[type(env)](env, params, name))
    elif bins is None:
        if isinstance(obs_space, spaces.Box) and len(obs_space.shape) <= 1:
            raise ValueError(f"{name} is continuous; pass bins=... (and optionally "
                             "low/high) to discretize it")
        raise ValueError(f"{name} has no tabular index: its observation space "
                         f"{type(obs_space).__name__}{tuple(obs_space.shape)} is not finite "
                         "and not a 1-D vector that bins could cut")
    else:
        indexer = _uniform_bins(env, params, name, bins, low, high)
    return StateIndexed(env, params, indexer, name), params


def make_tabular(
    env_id: str,
    bins: int | Sequence[int] | None = None,
    low: float | Sequence[float] | None = None,
    high: float | Sequence[float] | None = None,
    **env_kwargs: Any,
) -> tuple[environment.Environment, Any]:
    """``jaxq.make`` for tabular learners: an env whose observation is a state index.

    jaxq ids pass through; finite gymnax ids (``EXACT_INDEXES``, FrozenLake-misc) are
    indexed exactly; continuous ones (CartPole-v1, MountainCar-v0, Acrobot-v1, ...) need
    ``bins``. ``env_kwargs`` go to the environment's constructor; for non-default gymnax
    params, make the env and call ``discretize(env, params, ...)``.
    """
    if env_id in _NOT_INDEXABLE_IDS:
        raise ValueError(f"{env_id} {_NOT_INDEXABLE[_NOT_INDEXABLE_IDS[env_id]]}")
    env, params = make(env_id, **env_kwargs)
    return discretize(env, params, bins, low, high, env_id=env_id)
