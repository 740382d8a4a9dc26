"""Q-functions: how a learner reads action values and applies TD errors.

The training step (``training.py``) knows a Q-function only through this interface, in
the spirit of optax's ``(init, update)`` pairs: a static object holding settings, and
pure functions of explicit parameters::

    params = qf.init(init_q)                        # the parameters (a pytree)
    cols   = qf.values(params, states, which)       # Q(s, a) for every action
    v      = qf.value(params, states, actions, which)
    params = qf.apply_td(params, batch, lr, visit_power)
    spec   = qf.td_batch(shape)                      # shapes and dtypes of a TDBatch
    q_sa   = qf.estimate(params)                     # [S, A]: evaluation, checkpoints
    cols   = qf.global_values(params, states)        # the estimate's columns, read
                                                     # outside the strategy's collectives

``which`` selects one of ``num_tables`` estimates (Double Q-learning keeps two; an array
picks per entry). ``values`` returns *columns*: a tuple of A arrays shaped like
``states`` rather than one ``[N, A]`` array. On XLA:CPU this struct-of-arrays form was
measured ~15x faster than reductions over a minor axis of size A (``explore.py``);
``jnp.stack(cols, -1)`` is the ``[N, A]`` view. A ``TDBatch`` holds TD errors of any
shape (one step's ``[n, N]`` window, or a buffered block ``[k, n, N]``); ``mask`` says
which entries are real. ``td_batch(shape)`` says what one holds for this Q-function: its
``s`` field has the states' own trailing shape and dtype (int32 indices for a table, the
float32 observation vectors ``[*shape, d]`` a tile coder reads), so a strategy can buffer
blocks of TD batches without knowing what a state is.

``states`` are whatever the environment observes, as the loop carries them: ``[...]``
int32 state indices (tabular envs) or ``[..., d]`` float32 vectors (gymnax's continuous
envs, ``vecenv.VecEnv``); a Q-function takes the leading axes as batch axes and returns
values shaped like them. A table needs indices; other Q-functions may take either.

``DenseTable`` is the tabular Q-function. Where its cells live (one device, replicas, or
rows sharded by state) is the strategy's store (``strategies.LocalTable`` and
subclasses); the table adds what an update *means*: ``mean`` / ``sum`` aggregation of
the TD errors that hit one cell in one step (``aggregate.py``), and the optional
visit-count learning rate. ``tiles.TileCodedQ`` (linear Q over tile coding, or one-hot
features on a tabular env) implements the same functions on weights kept in the same
stores; a neural network trained with optax can too. The loop does not change, except
that it uses a table's extras (``greedy_table``, Q* errors) only where a table exists.

``estimate`` is what a run returns, checkpoints report and compares with Q*: a table's
``[S, A]`` values, a linear Q-function's ``[num_tiles, A]`` weights (the table itself for
one-hot features). Greedy evaluation of any Q-function rolls out the argmax of
``global_values`` (``evaluation.rollouts``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxq import aggregate, explore
from jaxq.explore import Columns


class TDBatch(NamedTuple):
    """TD errors to apply, all arrays of one shape: which estimate, state, action, the
    error itself, and whether the entry is real (padding and not-yet-complete n-step
    entries are not)."""

    which: jax.Array
    s: jax.Array
    a: jax.Array
    td: jax.Array
    mask: jax.Array


def td_batch_spec(shape: tuple[int, ...], state_shape: tuple[int, ...] = (),
                  state_dtype: Any = jnp.int32) -> TDBatch:
    """A ``TDBatch`` of ``jax.ShapeDtypeStruct``: ``shape`` entries whose states are
    ``state_shape``-shaped ``state_dtype`` arrays (what a Q-function's ``td_batch`` returns)."""
    shape = tuple(int(x) for x in shape)
    sds = jax.ShapeDtypeStruct
    return TDBatch(sds(shape, jnp.int32), sds(shape + tuple(state_shape), state_dtype),
                   sds(shape, jnp.int32), sds(shape, jnp.float32), sds(shape, jnp.bool_))


class QFunction(Protocol):
    """What the training step needs from a Q-function (see the module docstring)."""

    num_actions: int
    num_tables: int

    def init(self, init_q: jax.Array | None = None) -> Any: ...

    def values(self, params: Any, states: jax.Array, which: Any = 0) -> Columns: ...

    def value(self, params: Any, states: jax.Array, actions: jax.Array,
              which: Any = 0) -> jax.Array: ...

    def apply_td(self, params: Any, batch: TDBatch, lr: jax.Array,
                 visit_power: jax.Array) -> Any: ...

    def td_batch(self, shape: tuple[int, ...]) -> TDBatch: ...

    def estimate(self, params: Any) -> jax.Array: ...

    def global_values(self, params: Any, states: jax.Array) -> Columns: ...

    # strategy "async": the part of the parameters actors read, kept as a stale copy
    def acting_params(self, params: Any) -> Any: ...

    def with_acting_params(self, params: Any, acting: Any) -> Any: ...


class TableParams(NamedTuple):
    """A dense table's parameters, each ``[T, S, A]`` (S padded to the device count when
    sharded): the values, the per-cell update counts of the visit-count learning rate,
    and the zeroed accumulators of the sparse ``mean`` path (None when not used)."""

    q: jax.Array
    visits: jax.Array | None
    scratch: aggregate.Scratch | None


class DenseTable:
    """T dense ``[S, A]`` tables stored the way the strategy's ``store`` lays them out.

    ``aggregation``: ``mean`` (TD errors of one cell in one step averaged, the default)
    or ``sum`` (added). ``visit_counts``: the learning rate of a cell is
    ``visits^-visit_power`` instead of ``lr``. ``count_updates``: ``visits`` counts the
    batched updates of each cell all the same, the rate staying ``lr`` (a ``jaxq.ray``
    learner pushes the counts its chunk applied, so shards weight merges by them).
    """

    def __init__(self, store: Any, num_states: int, num_tables: int, aggregation: str,
                 q_init: float = 0.0, visit_counts: bool = False, count_updates: bool = False):
        self.store = store
        self.num_states = int(num_states)  # S of the environment (store.S may be padded)
        self.num_actions = store.A
        self.num_tables = int(num_tables)
        self.aggregation = aggregation
        self.q_init = float(q_init)
        self.visit_counts = bool(visit_counts)
        self.count_updates = bool(count_updates)
        self.shape = (self.num_tables, store.S, store.A)

    def init(self, init_q: jax.Array | None = None) -> TableParams:
        """Every cell at ``q_init``, or the given ``[S, A]`` table in every estimate."""
        q = jnp.full(self.shape, self.q_init, jnp.float32)
        if init_q is not None:
            q = q.at[:, :self.num_states].set(init_q)
        zeros = lambda dt: jnp.zeros(self.shape, dt)  # noqa: E731
        return TableParams(
            q=q,
            visits=zeros(jnp.int32) if self.visit_counts or self.count_updates else None,
            scratch=(aggregate.Scratch(zeros(jnp.float32), zeros(jnp.float32))
                     if self.store.needs_scratch(self.aggregation) else None),
        )

    def values(self, params: TableParams, states: jax.Array, which: Any = 0) -> Columns:
        return self.store.columns(params.q.reshape(-1), which, states)

    def value(self, params: TableParams, states: jax.Array, actions: jax.Array,
              which: Any = 0) -> jax.Array:
        return self.store.value(params.q.reshape(-1), which, states, actions)

    def apply_td(self, params: TableParams, batch: TDBatch, lr: jax.Array,
                 visit_power: jax.Array) -> TableParams:
        """One combined update from every real entry of ``batch`` (the step's, or a
        buffered block's), through the store (collectives on a mesh)."""
        flat = lambda x: None if x is None else x.reshape(-1)  # noqa: E731
        scratch = None if params.scratch is None else aggregate.Scratch(*map(flat, params.scratch))
        q, scratch, visits = self.store.apply(flat(params.q), scratch, flat(params.visits),
                                              *batch, lr, self.aggregation,
                                              visit_power if self.visit_counts else None)
        shape = params.q.shape  # this device's part under shard_map (rows of a shard)
        back = lambda x: None if x is None else x.reshape(shape)  # noqa: E731
        return TableParams(back(q), back(visits),
                           None if scratch is None else aggregate.Scratch(*map(back, scratch)))

    def td_batch(self, shape: tuple[int, ...]) -> TDBatch:
        """A batch of ``shape`` entries: states are int32 indices, one per entry."""
        return td_batch_spec(shape)

    def estimate(self, params: TableParams) -> jax.Array:
        """``[S, A]``: the table, or (QA + QB) / 2 for Double Q-learning."""
        q = params.q
        return (q[0] if q.shape[0] == 1 else jnp.mean(q, axis=0))[:self.num_states]

    def global_values(self, params: TableParams, states: jax.Array) -> Columns:
        """The estimate's columns at ``states``, read from the whole (global) table outside
        the strategy's collectives (the first action of a run)."""
        return explore.rows_to_columns(self.estimate(params)[states])

    def acting_params(self, params: TableParams) -> jax.Array:
        """What actors read (the values; not the counts or accumulators)."""
        return params.q

    def with_acting_params(self, params: TableParams, q: jax.Array) -> TableParams:
        return params._replace(q=q)

    def greedy_table(self, params: TableParams) -> explore.GreedyTable:
        """Each state's greedy structure of the first estimate (the behaviour policy's
        fast path for small single-estimate tables)."""
        return explore.greedy_table(params.q[0])
