"""Linear Q-learning over tile coding (Sutton & Barto 2018, section 9.5.4).

An observation x in a box ``[low, high]`` (one bound per dimension) is covered by
``num_tilings`` grids ("tilings") of ``tiles_per_dim`` tiles per dimension, each offset
from the first by a fraction of a tile: tiling t is displaced by ``t * (1, 3, 5, ...) / T``
tile widths (the book's asymmetric offsets, which avoid the diagonal artefacts of uniform
ones), modulo one tile. Every tiling has one tile more per dimension than the box needs,
so that every offset grid still covers the whole box. Each tiling contributes exactly
one active tile, so the feature vector is binary with ``num_tilings`` ones and

    Q(x, a) = sum_t w[tile_t(x), a]

with weights a dense ``[num_tiles, A]`` array: the row index is the tile's position in
the grid of all tilings, or, when that grid has more than ``max_tiles`` rows (Acrobot's
six dimensions: 8 * 9**6 = 4.3M), an FNV-1a hash of (tiling, cell) into ``max_tiles``
rows (the book's "hashing", collisions are shared weights). Values outside the box are
clipped into its edge tiles.

The semi-gradient TD update of a linear Q-function with binary features adds
``alpha * delta`` to each active weight; with T active tiles that moves Q(x, a) by
``T * alpha * delta``, so the book divides: each tiling's step is ``alpha / T``, and
``lr`` then means what it means for a table (a step of ``lr`` of the TD error). The
weights are stored as a table of ``num_tiles`` rows on the strategy's store
(``strategies.LocalTable`` and subclasses), so a batch of TD errors reaches them by the
same scatter as a table's, with the same ``mean`` / ``sum`` semantics per weight and the
same collectives across devices. Every strategy applies: ``sharded`` splits the weight
rows (tiles, padded to a multiple of the device count) over devices as it splits a
table's state rows, each tiling's row answered by its owner; ``sync_every`` blocks buffer
TD batches whose states are the observations themselves (``td_batch``), coded into tiles
when a block is applied.

On an environment with a Discrete observation (jaxq's tabular ones, or an exactly
indexed gymnax one) the features are one-hot: one tiling, one tile per state, so linear
Q-learning is tabular Q-learning written as a linear function (``OneHot``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxq import aggregate, explore
from jaxq.explore import Columns
from jaxq.qfunctions import TableParams, TDBatch, td_batch_spec

DEFAULT_TILINGS = 8
DEFAULT_TILES_PER_DIM = 8
_FNV_OFFSET = np.uint32(2166136261)
_FNV_PRIME = np.uint32(16777619)


@dataclass(frozen=True)
class OneHot:
    """One tile per state of a Discrete observation: the tabular special case."""

    num_states: int

    num_tilings = 1
    hashed = False
    obs_shape = ()  # what indices() reads: an int32 state index per entry
    obs_dtype = jnp.int32

    @property
    def num_tiles(self) -> int:
        return self.num_states

    def indices(self, obs: jax.Array) -> jax.Array:
        """``[1, *batch]``: the state is its own tile."""
        return jnp.asarray(obs, jnp.int32)[None]


@dataclass(frozen=True)
class TileCoder:
    """``num_tilings`` offset grids over the box ``[low, high]`` of a 1-D observation."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    tiles_per_dim: tuple[int, ...]
    num_tilings: int
    max_tiles: int

    obs_dtype = jnp.float32  # what indices() reads: float32 vectors [*batch, dim]

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    @property
    def tiles_per_tiling(self) -> int:
        return math.prod(k + 1 for k in self.tiles_per_dim)

    @property
    def hashed(self) -> bool:
        return self.num_tilings * self.tiles_per_tiling > self.max_tiles

    @property
    def num_tiles(self) -> int:
        """Weight rows: every tile of every tiling, or ``max_tiles`` when hashed."""
        return self.max_tiles if self.hashed else self.num_tilings * self.tiles_per_tiling

    def offsets(self) -> np.ndarray:
        """``[T, d]`` in tile widths: tiling t is shifted by ``t * (2i + 1) / T`` in
        dimension i, modulo one tile (Sutton & Barto's asymmetric displacement)."""
        t = np.arange(self.num_tilings)[:, None]
        odd = 2 * np.arange(self.dim)[None] + 1
        return ((t * odd) % self.num_tilings / self.num_tilings).astype(np.float32)

    def cells(self, obs: jax.Array) -> jax.Array:
        """``[T, *batch, d]`` int32: each tiling's grid cell of each observation."""
        x = jnp.asarray(obs, jnp.float32)
        low = np.asarray(self.low, np.float32)
        high = np.asarray(self.high, np.float32)
        scale = (np.asarray(self.tiles_per_dim, np.float64)
                 / (np.asarray(self.high, np.float64) - np.asarray(self.low, np.float64)))
        u = (jnp.clip(x, low, high) - low) * scale.astype(np.float32)  # in [0, tiles]
        batch = x.ndim - 1
        off = self.offsets().reshape((self.num_tilings,) + (1,) * batch + (self.dim,))
        top = np.asarray(self.tiles_per_dim, np.int32)  # tiles_per_dim + 1 cells: 0..top
        return jnp.clip(jnp.floor(u[None] + off).astype(jnp.int32), 0, top)

    def indices(self, obs: jax.Array) -> jax.Array:
        """``[T, *batch]`` int32 weight rows of the active tiles of ``obs [*batch, d]``."""
        c = self.cells(obs)
        T = self.num_tilings
        tiling = jnp.arange(T, dtype=jnp.int32).reshape((T,) + (1,) * (c.ndim - 2))
        if not self.hashed:
            strides = np.cumprod((tuple(k + 1 for k in self.tiles_per_dim[1:]) + (1,))[::-1])
            strides = strides[::-1].astype(np.int32)
            return tiling * self.tiles_per_tiling + jnp.sum(c * strides, axis=-1)
        h = jnp.full(c.shape[:-1], _FNV_OFFSET, jnp.uint32)
        h = (h ^ tiling.astype(jnp.uint32)) * _FNV_PRIME
        for i in range(self.dim):
            h = (h ^ c[..., i].astype(jnp.uint32)) * _FNV_PRIME
        return (h % np.uint32(self.max_tiles)).astype(jnp.int32)


def make_coder(env: Any, params: Any, name: str, tiles_per_dim: Any, num_tilings: int | None,
               low: Any, high: Any, max_tiles: int) -> OneHot | TileCoder:
    """The features of ``env``: one-hot on a Discrete observation, tiles over a 1-D box
    otherwise. Bounds are taken and checked as the discretizer takes them (defaults from
    the observation space, CartPole's velocities bounded by hand); an unbounded dimension
    without ``low``/``high`` is a clear error, before anything compiles."""
    from gymnax.environments import spaces

    from jaxq.envs.discretize import _uniform_bins

    obs_space = env.observation_space(params)
    if isinstance(obs_space, spaces.Discrete):
        extra = {k: v for k, v in (("tiles_per_dim", tiles_per_dim), ("low", low), ("high", high))
                 if v is not None}
        if extra or num_tilings not in (None, 1):
            given = dict(extra, **({"num_tilings": num_tilings} if num_tilings not in (None, 1)
                                   else {}))
            raise ValueError(
                f"{name} is tabular ({obs_space.n} states): q_function='tiles' uses one-hot "
                f"features there (one tile per state, num_tilings 1); drop {sorted(given)}")
        return OneHot(int(obs_space.n))
    tpd = DEFAULT_TILES_PER_DIM if tiles_per_dim is None else tiles_per_dim
    if isinstance(tpd, np.ndarray):
        tpd = tpd.tolist()
    try:
        box = _uniform_bins(env, params, name, tpd, low, high)
    except (TypeError, ValueError) as e:  # name the tile settings, not the discretizer's
        raise type(e)(str(e).replace("bins", "tiles_per_dim")) from None
    return TileCoder(box.low, box.high, tuple(box.bins),
                     DEFAULT_TILINGS if num_tilings is None else int(num_tilings), int(max_tiles))


class TileCodedQ:
    """Linear Q over tile-coded features (or one-hot ones): the ``QFunction`` interface
    of ``qfunctions.py`` on ``[num_tables, num_tiles, A]`` weights stored the way the
    strategy's ``store`` lays out a table of ``num_tiles`` rows."""

    def __init__(self, coder: OneHot | TileCoder, store: Any, num_tables: int,
                 aggregation: str, q_init: float = 0.0):
        if store.S < coder.num_tiles:
            raise ValueError(f"the store holds {store.S} rows, fewer than the coder's "
                             f"{coder.num_tiles} tiles")
        self.coder = coder
        self.store = store
        self.num_actions = store.A
        self.num_tables = int(num_tables)
        self.aggregation = aggregation
        self.q_init = float(q_init)
        self.shape = (self.num_tables, store.S, store.A)

    def init(self, init_q: jax.Array | None = None) -> TableParams:
        """Every weight at ``q_init / num_tilings``: every Q(x, a) starts at ``q_init``
        (optimistic starts explore, as with a table). ``init_q`` (one-hot features only):
        the given ``[S, A]`` table."""
        q = jnp.full(self.shape, self.q_init / self.coder.num_tilings, jnp.float32)
        if init_q is not None:
            q = q.at[:, :init_q.shape[0]].set(init_q)
        scratch = None
        if self.store.needs_scratch(self.aggregation):
            scratch = aggregate.Scratch(jnp.zeros(self.shape, jnp.float32),
                                        jnp.zeros(self.shape, jnp.float32))
        return TableParams(q=q, visits=None, scratch=scratch)

    def _sum(self, per_tiling: Sequence[jax.Array]) -> jax.Array:
        return jnp.sum(per_tiling, axis=0) if self.coder.num_tilings > 1 else per_tiling[0]

    def values(self, params: TableParams, obs: jax.Array, which: Any = 0) -> Columns:
        idx = self.coder.indices(obs)  # [T, *batch]
        cols = self.store.columns(params.q.reshape(-1), which, idx)
        return tuple(self._sum(c) for c in cols)

    def value(self, params: TableParams, obs: jax.Array, actions: jax.Array,
              which: Any = 0) -> jax.Array:
        idx = self.coder.indices(obs)
        return self._sum(self.store.value(params.q.reshape(-1), which, idx, actions))

    def apply_td(self, params: TableParams, batch: TDBatch, lr: jax.Array,
                 visit_power: jax.Array) -> TableParams:
        """Every active tile of every real entry moves by ``lr / num_tilings`` times the
        entry's TD error (``mean``: the mean of the errors that hit one weight in this
        batch), through the store's scatter (an all-reduce across replicas)."""
        idx = self.coder.indices(batch.s)  # [T, *shape]
        spread = lambda x: jnp.broadcast_to(x, idx.shape)  # noqa: E731
        scratch = (None if params.scratch is None
                   else aggregate.Scratch(*(x.reshape(-1) for x in params.scratch)))
        q, scratch, _ = self.store.apply(
            params.q.reshape(-1), scratch, None, spread(batch.which), idx, spread(batch.a),
            spread(batch.td), spread(batch.mask), lr / self.coder.num_tilings,
            self.aggregation, visit_power)
        shape = params.q.shape
        return TableParams(q.reshape(shape), None,
                           None if scratch is None
                           else aggregate.Scratch(*(x.reshape(shape) for x in scratch)))

    def td_batch(self, shape: tuple[int, ...]) -> TDBatch:
        """A batch of ``shape`` entries whose states are observations as the coder reads
        them (float32 vectors ``[*shape, d]``, or int32 indices for one-hot features)."""
        return td_batch_spec(shape, self.coder.obs_shape, self.coder.obs_dtype)

    def estimate(self, params: TableParams) -> jax.Array:
        """``[num_tiles, A]``: the weights (the mean of Double Q's two; the rows that pad
        a sharded store dropped); with one-hot features, the Q-table."""
        q = params.q
        return (q[0] if q.shape[0] == 1 else jnp.mean(q, axis=0))[:self.coder.num_tiles]

    def _global_values(self, params: TableParams, obs: jax.Array, which: int) -> Columns:
        """``values`` by plain gathers from the whole (global) weights: outside the
        strategy's collectives, which a sharded store's lookups would need."""
        idx = self.coder.indices(obs)
        cols = explore.q_columns(params.q.reshape(-1), which * self.shape[1] + idx,
                                 self.num_actions)
        return tuple(self._sum(c) for c in cols)

    def global_values(self, params: TableParams, obs: jax.Array) -> Columns:
        """The estimate's columns at ``obs`` (the mean of Double Q's two), read outside the
        strategy's collectives (a run's first actions, greedy evaluation)."""
        cols = self._global_values(params, obs, 0)
        if self.num_tables == 2:
            cols = tuple((x + y) * 0.5 for x, y in zip(cols, self._global_values(params, obs, 1)))
        return cols

    def acting_params(self, params: TableParams) -> jax.Array:
        return params.q

    def with_acting_params(self, params: TableParams, q: jax.Array) -> TableParams:
        return params._replace(q=q)


def saved_q_function(config: Any, env: Any, params: Any, num_actions: int) -> TileCodedQ:
    """The tiles Q-function of a saved run on one device, for reading its ``q.npy`` (the
    estimate's ``[num_tiles, A]`` weights) as ``TableParams(q=weights[None])``."""
    from jaxq.strategies import LocalTable

    coder = make_coder(env, params, config.env_id, config.tiles_per_dim, config.num_tilings,
                       config.low, config.high, config.max_tiles)
    return TileCodedQ(coder, LocalTable(1, coder.num_tiles, num_actions), 1,
                      config.aggregation, config.q_init)


def evaluate_weights(config: Any, env: Any, params: Any, weights: Any, num_episodes: int,
                     key: jax.Array, max_steps: int):
    """``jaxq.evaluate`` for a tiles run's saved weights ``[num_tiles, A]``: greedy
    rollouts of the Q-function those weights define (any observation space)."""
    from jaxq.evaluation import Evaluation, rollouts
    from jaxq.vecenv import VecEnv, time_limit

    weights = jnp.asarray(weights, jnp.float32)
    qf = saved_q_function(config, env, params, int(weights.shape[-1]))
    if tuple(weights.shape) != (qf.coder.num_tiles, qf.num_actions):
        raise ValueError(f"tile weights must have shape [{qf.coder.num_tiles}, "
                         f"{qf.num_actions}] for this config, got {list(weights.shape)}")
    venv = VecEnv(env, params, num_episodes)
    cap = int(min(max_steps, time_limit(params)))
    ev = rollouts(venv, params, TableParams(weights[None], None, None), key, cap,
                  qf.global_values)
    return Evaluation(*(float(x) for x in jax.device_get(ev)))
