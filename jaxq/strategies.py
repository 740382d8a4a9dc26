"""Where the Q-table lives and how a step reads and writes it: one device or a mesh.

The training step (``training.py``) never touches the table directly: it reads and
updates a Q-function (``qfunctions.py``) whose cells live in a store defined here, and
the ``Strategy`` object decides where the step runs (``run``: plain, or ``shard_map``
over the mesh), where each part of the loop's carry lives (``carry_spec``), how a step's
TD errors reach the Q-function (``update``: at once, or buffered in blocks of
``sync_every`` steps) and what the actors act on (``acting``: the live Q-function, or a
stale snapshot). A strategy only changes *how* those reads and writes reach the table:

* ``single`` (``LocalTable``): one device, direct gathers and scatters.
* ``replicated`` (``ReplicatedTable``): the parameter-server design without a server.
  Environments are split across devices, every device holds the whole table, and each
  update step combines the devices' per-cell TD-error sums and counts with one
  all-reduce (small tables) or all-gathers the batch's (cell, TD error) pairs (large
  ones), so that every device applies the same per-cell mean over all N environments:
  the single-device ``mean`` update, up to float summation order.
* ``sharded`` (``ShardedTable``): value-function decomposition. Device d owns the state
  rows [d * S/D, (d+1) * S/D) of every table; a lookup all-gathers the requested states,
  each owner answers for its rows and a reduce-scatter returns the rows to the devices
  that asked; updates are all-gathered and each owner applies those for its rows. No
  device ever holds more than 1/D of the table.
* ``async``: the replicated table, with actors that choose actions from a snapshot
  refreshed every ``sync_every`` steps (Mnih et al. 2016's bounded staleness); updates
  reach the live table at once.

With ``sync_every = k > 1``, ``replicated`` and ``sharded`` buffer blocks of k steps of TD
errors (computed on the table as of the block's start) and apply each block's combined
per-cell mean when it ends, so the table is at most k steps stale. Blocks count from the
start of each chunk and a chunk's last block is applied when the chunk ends: if k does not
divide the chunk's steps, that block is shorter (less stale), and a k larger than a chunk
means one block per chunk. No TD error a step computes is ever dropped.

A store holds rows of cells: a Q-table's rows are states, a linear Q-function's
(``tiles.TileCodedQ``) are tiles, so every strategy serves both. The ``sync_every`` buffer
is shaped by the Q-function's ``td_batch`` (a table buffers state indices, a tile coder
observation vectors) and refuses a batch of any other shape or dtype.

All of it runs inside ``jax.shard_map`` over a one-axis mesh (axis ``"d"``) of every
device JAX sees by default, including every process's devices after
``jax.distributed.initialize`` (see ``init_distributed``).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from jax.sharding import NamedSharding

from jaxq import aggregate
from jaxq.config import STRATEGIES
from jaxq.explore import q_columns
from jaxq.qfunctions import TDBatch

AXIS = "d"
__all__ = ["AXIS", "STRATEGIES", "Strategy", "make_mesh", "make_table", "init_distributed"]


def make_mesh(num_devices: int | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh over ``num_devices`` of JAX's devices (all by default, across
    processes after ``jax.distributed.initialize``)."""
    available = list(jax.devices()) if devices is None else list(devices)
    if num_devices is None:
        num_devices = len(available)
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive int, got {num_devices!r}")
    if num_devices > len(available):
        raise ValueError(
            f"num_devices={num_devices} but only {len(available)} device(s) are available "
            f"({available[0].platform}); on CPU, set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={num_devices} before importing jax"
        )
    return Mesh(np.array(available[:num_devices]), (AXIS,),
                axis_types=(jax.sharding.AxisType.Auto,))


class LocalTable:
    """Q on one device: flat ``[T * S * A]`` (``S`` possibly padded), direct access.

    ``updates_per_step`` (entries of all devices together) picks the update path: dense
    per-cell sums for tables no larger than a few times that, sparse scatters otherwise.
    """

    sharded = False

    def __init__(self, num_tables: int, num_states: int, num_actions: int,
                 updates_per_step: int = 1):
        self.T, self.S, self.A = num_tables, num_states, num_actions
        self.S_local = num_states
        self.dense = aggregate.use_dense(num_tables * num_states * num_actions, updates_per_step)

    def needs_scratch(self, aggregation: str) -> bool:
        """Whether the update path keeps zeroed per-cell accumulators between steps."""
        return aggregation == "mean" and not self.dense

    @property
    def cells(self) -> int:
        return self.T * self.S_local * self.A

    def columns(self, q, t, s):
        """Q_t(s, a) for every action: A arrays shaped like ``s``."""
        return q_columns(q, t * self.S + s, self.A)

    def value(self, q, t, s, a):
        return q[(t * self.S + s) * self.A + a]

    def gather_updates(self, *xs):
        return xs

    def reduce_sums(self, acc, cnt):
        """Combine per-cell sums of all devices; return this device's part."""
        return acc, cnt

    def local_index(self, t, s, a, mask):
        return jnp.where(mask, (t * self.S + s) * self.A + a, self.cells)

    def apply(self, q, scratch, visits, t, s, a, td, mask, lr, aggregation, visit_power):
        """Apply the TD errors ``td`` of entries ``mask`` (any shape, flattened)."""
        t, s, a, td, mask = (jnp.ravel(x) for x in (t, s, a, td, mask))
        if self.dense:  # per-cell sums of this device, combined across devices
            full = self.T * self.S * self.A
            idx = jnp.where(mask, (t * self.S + s) * self.A + a, full)
            acc, cnt = self.reduce_sums(*aggregate.cell_sums(idx, td, full))
            q, visits = aggregate.apply_sums(q, acc, cnt, lr, aggregation, visits, visit_power)
            return q, scratch, visits
        t, s, a, td, mask = self.gather_updates(t, s, a, td, mask)
        return self.apply_gathered(q, scratch, visits, self.local_index(t, s, a, mask), td, lr,
                                   aggregation, visit_power)

    def apply_gathered(self, q, scratch, visits, idx, td, lr, aggregation, visit_power):
        """Apply every device's entries (flat cells ``idx``, out of range = none)."""
        return aggregate.apply_updates(q, idx, td, lr, aggregation, False, scratch, visits,
                                       visit_power)

    def psum(self, x):
        return x


class ReplicatedTable(LocalTable):
    """Every device holds the whole table and applies the same combined update: per-cell
    sums all-reduced (small tables) or all devices' entries all-gathered (large ones).

    The all-reduce hands every device the same sums. Gathered entries are not applied by
    every device on its own: a scatter-add's rounding depends on the order the hardware
    adds duplicates in (GPU atomics), so replicas would drift apart while JAX still treats
    them as one array. Each cell's new value is computed once, by the device that owns the
    cell (cell index mod D), and psum-ed to all, which then write identical values."""

    def __init__(self, num_tables: int, num_states: int, num_actions: int, num_devices: int,
                 updates_per_step: int = 1):
        super().__init__(num_tables, num_states, num_actions, updates_per_step)
        self.D = num_devices

    def apply_gathered(self, q, scratch, visits, idx, td, lr, aggregation, visit_power):
        touched = idx < self.cells
        mine = touched & (idx % self.D == jax.lax.axis_index(AXIS))
        own = jnp.where(mine, idx, self.cells)
        q_own, scratch, _ = super().apply_gathered(q, scratch, visits, own, td, lr,
                                                   aggregation, visit_power)
        # exactly one device contributes each entry's value (the others add exact zeros)
        new = jax.lax.psum(jnp.where(mine, q_own.at[own].get(mode="fill", fill_value=0), 0.0),
                           AXIS)
        q = q.at[idx].set(new, mode="drop")  # duplicates write the same value
        if visits is not None:  # the same count on every device: old + 1 per touched cell
            visits = visits.at[idx].set(visits.at[idx].get(mode="fill", fill_value=0) + 1,
                                        mode="drop")
        return q, scratch, visits

    def gather_updates(self, *xs):
        return tuple(jax.lax.all_gather(x, AXIS, tiled=True) for x in xs)

    def reduce_sums(self, acc, cnt):
        return jax.lax.psum((acc, cnt), AXIS)

    def psum(self, x):
        return jax.lax.psum(x, AXIS)


class ShardedTable(ReplicatedTable):
    """Device d holds rows [d * S_local, (d + 1) * S_local) of each of the T tables."""

    sharded = True

    def __init__(self, num_tables: int, num_states: int, num_actions: int, num_devices: int,
                 updates_per_step: int = 1):
        super().__init__(num_tables, num_states, num_actions, num_devices, updates_per_step)
        if num_states % num_devices:
            raise ValueError("the sharded table's states must be padded to the device count")
        self.S_local = num_states // num_devices

    def _ask(self, t, s, answer):
        """All devices' requests ``(t, s)`` -> each owner's ``answer`` -> back to askers."""
        shape = jnp.shape(s)
        t = jnp.broadcast_to(t, shape).ravel()
        all_t = jax.lax.all_gather(t, AXIS, tiled=True)
        all_s = jax.lax.all_gather(jnp.ravel(s), AXIS, tiled=True)
        mine = all_s // self.S_local == jax.lax.axis_index(AXIS)
        row = all_t * self.S_local + all_s % self.S_local
        vals = answer(row, mine)  # [k, D * M], zero where not mine
        vals = jax.lax.psum_scatter(vals, AXIS, scatter_dimension=1, tiled=True)
        return [v.reshape(shape) for v in vals]

    def columns(self, q, t, s):
        def answer(row, mine):
            return jnp.stack([jnp.where(mine, q[row * self.A + a], 0.0) for a in range(self.A)])
        return tuple(self._ask(t, s, answer))

    def value(self, q, t, s, a):
        # one action per request: a tile coder asks [num_tilings, *batch] rows per action
        all_a = jax.lax.all_gather(jnp.broadcast_to(a, jnp.shape(s)).ravel(), AXIS, tiled=True)

        def answer(row, mine):
            return jnp.where(mine, q[row * self.A + all_a], 0.0)[None]
        return self._ask(t, s, answer)[0]

    def reduce_sums(self, acc, cnt):
        """Reduce-scatter by state rows: each owner receives the sums of its rows."""
        def part(x):
            x = x.reshape(self.T, self.S, self.A)
            return jax.lax.psum_scatter(x, AXIS, scatter_dimension=1, tiled=True).reshape(-1)
        return part(acc), part(cnt)

    def local_index(self, t, s, a, mask):
        mine = s // self.S_local == jax.lax.axis_index(AXIS)
        row = t * self.S_local + s % self.S_local
        return jnp.where(mask & mine, row * self.A + a, self.cells)

    def apply_gathered(self, q, scratch, visits, idx, td, lr, aggregation, visit_power):
        """Each owner applies the entries of its own rows: no replicas to agree."""
        return LocalTable.apply_gathered(self, q, scratch, visits, idx, td, lr, aggregation,
                                         visit_power)


def padded_states(num_states: int, strategy: str, num_devices: int) -> int:
    """Rows of the stored table: padded to a multiple of the device count when sharded
    (padding rows are never visited)."""
    if strategy != "sharded":
        return num_states
    return -(-num_states // num_devices) * num_devices


def make_table(strategy: str, num_tables: int, num_states: int, num_actions: int,
               num_devices: int, updates_per_step: int) -> LocalTable:
    if strategy == "single":
        return LocalTable(num_tables, num_states, num_actions, updates_per_step)
    if strategy == "sharded":
        return ShardedTable(num_tables, num_states, num_actions, num_devices, updates_per_step)
    return ReplicatedTable(num_tables, num_states, num_actions, num_devices, updates_per_step)


def table_spec(strategy: str) -> P:
    """PartitionSpec of a ``[T, S, A]`` table-shaped array."""
    return P(None, AXIS, None) if strategy == "sharded" else P()


class Strategy:
    """One of ``STRATEGIES`` bound to its devices: everything about a learner that
    depends on where it runs, kept out of the step.

    ``chunk_iters`` (steps per compiled chunk) bounds the ``sync_every`` buffer: blocks
    count from each chunk's start and a chunk's last block is applied when it ends.
    """

    def __init__(self, name: str, mesh: Mesh | None = None, sync_every: int = 1,
                 chunk_iters: int = 1):
        if name not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
        self.name = name
        self.on_mesh = name != "single"
        if self.on_mesh and mesh is None:
            mesh = make_mesh()
        self.mesh = mesh if self.on_mesh else None
        self.num_devices = mesh.devices.size if self.on_mesh else 1
        self.sync_every = int(sync_every)
        self.chunk_iters = int(chunk_iters)
        self.buffered = name in ("replicated", "sharded") and self.sync_every > 1
        self.block = min(self.sync_every, self.chunk_iters)

    # -- the table's layout ----------------------------------------------------------
    def padded_states(self, num_states: int) -> int:
        return padded_states(num_states, self.name, self.num_devices)

    def store(self, num_tables: int, num_states: int, num_actions: int,
              updates_per_step: int) -> "LocalTable":
        """Where the cells of a ``[num_tables, num_states, num_actions]`` table live."""
        return make_table(self.name, num_tables, num_states, num_actions, self.num_devices,
                          updates_per_step)

    def psum(self, x):
        """Sum over devices (identity on one)."""
        return jax.lax.psum(x, AXIS) if self.on_mesh else x

    # -- what the actors act on ------------------------------------------------------
    def init_snapshot(self, qf, params):
        """``async``: the actors' copy of the Q-function (None otherwise)."""
        return qf.acting_params(params) if self.name == "async" else None

    def acting(self, qf, params, snapshot, t):
        """``(params the actors read, the snapshot to carry)``: ``async`` refreshes its
        snapshot every ``sync_every`` steps (Mnih et al. 2016's bounded staleness)."""
        if self.name != "async":
            return params, snapshot
        snapshot = jax.lax.cond(t % self.sync_every == 0, lambda: qf.acting_params(params),
                                lambda: snapshot)
        return qf.with_acting_params(params, snapshot), snapshot

    # -- how TD errors reach the Q-function ------------------------------------------
    def init_buffer(self, spec: TDBatch) -> TDBatch | None:
        """The ``sync_every`` buffer: zeros ``[block, *x.shape]`` of each field ``x`` of
        ``spec`` (a ``TDBatch`` of arrays or ``jax.ShapeDtypeStruct``, from the Q-function's
        ``td_batch``: a table's states are indices, a tile coder's observation vectors);
        None when unbuffered."""
        if not self.buffered:
            return None
        return TDBatch(*(jnp.zeros((self.block,) + tuple(x.shape), x.dtype) for x in spec))

    def update(self, qf, params, batch: TDBatch, buffer: TDBatch | None, t, lr, visit_power):
        """Apply one step's TD errors: at once, or into the buffer, whose entries are
        applied together (one combined per-cell mean, on the table as of the block's
        start) when the block or the chunk ends. The buffer's mask is cleared whenever it
        is applied, so no entry reaches the table twice and none is dropped."""
        if not self.buffered:
            return qf.apply_td(params, batch, lr, visit_power), buffer
        for name, buf, x in zip(TDBatch._fields, buffer, batch):
            # .at[].set would cast silently (observation vectors into int32 state slots)
            if buf.shape[1:] != jnp.shape(x) or buf.dtype != jnp.result_type(x):
                raise TypeError(
                    f"TDBatch.{name} is {jnp.result_type(x).name}{list(jnp.shape(x))} but the "
                    f"sync_every buffer holds {buf.dtype.name}{list(buf.shape[1:])}: build it "
                    "from the Q-function's td_batch")
        in_chunk = t % self.chunk_iters
        slot = in_chunk % self.block
        buffer = TDBatch(*(buf.at[slot].set(x) for buf, x in zip(buffer, batch)))
        block_ends = (slot == self.block - 1) | (in_chunk == self.chunk_iters - 1)

        def sync():
            return qf.apply_td(params, buffer, lr, visit_power), jnp.zeros_like(buffer.mask)

        params, unapplied = jax.lax.cond(block_ends, sync, lambda: (params, buffer.mask))
        return params, buffer._replace(mask=unapplied)

    # -- placement on the mesh -------------------------------------------------------
    def carry_spec(self, c):
        """PartitionSpecs of the training carry: table-shaped parts by ``table_spec``
        (replicated, or rows split by state), per-env parts split along their env axis,
        counters and keys replicated."""
        tspec = table_spec(self.name)
        table = lambda tree: jax.tree.map(lambda _: tspec, tree)  # noqa: E731
        env = lambda tree, leading: jax.tree.map(  # noqa: E731
            lambda _: P(*([None] * leading), AXIS), tree)
        return c._replace(
            qf=table(c.qf), q_actor=table(c.q_actor), pending=env(c.pending, 2),
            env_state=env(c.env_state, 0), obs=P(AXIS), action=P(AXIS), window=env(c.window, 1),
            ep_return=P(AXIS), ep_length=P(AXIS), t=P(), chunk=P(), key=P(),
            words=P(None, AXIS),
        )

    def constrain(self, tree, spec):
        """Lay ``tree`` out as ``spec`` says (no-op on one device)."""
        if not self.on_mesh:
            return tree
        return jax.lax.with_sharding_constraint(
            tree, jax.tree.map(lambda sp: NamedSharding(self.mesh, sp), spec))

    def run(self, local_step, c, hp, ep, tables, words, env_keys):
        """``local_step`` on this device's envs: directly on one device; under
        ``shard_map`` on a mesh, every device with its slice of the envs and its part of
        the table (``carry_spec``), hyperparameters and env params replicated."""
        if not self.on_mesh:
            return local_step(c, hp, ep, tables, words, env_keys)
        cs = self.carry_spec(c)
        rep = lambda x: jax.tree.map(lambda _: P(), x)  # noqa: E731
        per_env = P(AXIS)
        # outputs: the carry, step statistics (already summed over devices), and the
        # per-env transition record (specs as tree prefixes)
        f = jax.shard_map(
            local_step, mesh=self.mesh,
            in_specs=(cs, rep(hp), rep(ep), rep(tables), P(None, AXIS),
                      None if env_keys is None else per_env),
            out_specs=(cs, P(), per_env),
            check_vma=False,
        )
        return f(c, hp, ep, tables, words, env_keys)


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, timeout_s: int = 60) -> bool:
    """``jax.distributed.initialize`` from arguments or ``JAXQ_COORDINATOR`` /
    ``JAXQ_NUM_PROCESSES`` / ``JAXQ_PROCESS_ID``; returns whether it initialised.

    On CPU the processes exchange updates through JAX's gloo collectives (JAX's
    default; jaxq changes no JAX setting and refuses to start where they are off), so
    several processes on one machine (or several machines) train one table together. An
    unreachable coordinator raises a clear error after ``timeout_s`` instead of hanging.
    """
    coordinator = coordinator or os.environ.get("JAXQ_COORDINATOR")
    if not coordinator:
        return False
    num_processes = num_processes if num_processes is not None else int(
        os.environ.get("JAXQ_NUM_PROCESSES", "0") or 0)
    process_id = process_id if process_id is not None else int(
        os.environ.get("JAXQ_PROCESS_ID", "-1"))
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1 with a coordinator, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    # CPU processes need cross-process collectives; JAX's default is gloo. jaxq does not
    # change JAX's settings: where the user's JAX (or the user) turned them off, say how
    # to turn them on instead of training a table per process.
    cpu_collectives = getattr(jax.config, "jax_cpu_collectives_implementation", "gloo")
    if cpu_collectives in (None, "", "none"):
        raise ValueError(
            "several processes on CPU need JAX's cross-process collectives, which are off "
            f"(jax_cpu_collectives_implementation={cpu_collectives!r}); call "
            "jax.config.update('jax_cpu_collectives_implementation', 'gloo') first")
    if process_id != 0:
        # JAX aborts the whole process when it cannot register in time; check first that
        # the coordinator answers at all, so an unreachable one is a clear error.
        _wait_for_port(host.strip("[]"), int(port), timeout_s, coordinator)
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id,
                                   initialization_timeout=int(timeout_s))
    except Exception as e:
        raise RuntimeError(
            f"could not join the coordinator at {coordinator} as process {process_id} of "
            f"{num_processes} within {timeout_s}s: {type(e).__name__}: {e}"
        ) from None
    return True


def _wait_for_port(host: str, port: int, timeout_s: float, name: str) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"coordinator {name} unreachable after {timeout_s}s ({e.strerror or e}); "
                    "start process 0 first, or check --coordinator"
                ) from None
            time.sleep(0.2)

