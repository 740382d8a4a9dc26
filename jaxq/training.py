"""The training loop: N environments, one (or two) dense Q-tables, one compiled program.

``make_train(config)`` returns a pure ``train(key, hparams=None)`` whose whole loop is a
``lax.scan`` over chunks of a ``lax.scan`` over steps, so it can be ``jit``-ed and
``vmap``-ed over seeds and over the array leaves of ``HParams``. ``jaxq.train(config)`` is
the convenient form: it runs the same compiled chunk from Python with a progress bar,
checkpoints and timings.

One step, for all N environments at once::

    act      behaviour policy on Q[s] (epsilon-greedy or Boltzmann, random ties)
    env      step every copy (auto-reset); the final observation is kept for bootstrapping
    window   push (s, a, r) into an n-step window; entries whose return is complete
             (n rewards seen, or the episode ended) get a target from the rule's bootstrap
    combine  per-cell mean / sum of their TD errors (aggregate.py) -> Q
    metrics  episode statistics and |TD| accumulated on device, reduced per chunk
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxq import aggregate, explore
from jaxq.config import HParams, TrainConfig
from jaxq.evaluation import _rollouts
from jaxq import strategies
from jaxq.explore import q_columns
from jaxq.rules import RULES, Bootstrap, estimate, nstep_returns
from jaxq.vecenv import VecEnv, time_limit
from jaxq import compile_cache as compile_cache_lib
from jaxq import cpu_threefry


class Window(NamedTuple):
    """The last n transitions of every env, oldest first: ``[n, N]`` each."""

    s: jax.Array
    a: jax.Array
    r: jax.Array
    pending: jax.Array  # not yet updated, and in the current episode


class Pending(NamedTuple):
    """TD errors buffered between synchronisations (``sync_every`` > 1): ``[k, n, N]``
    (k = ``sync_every``, at most one chunk's steps). ``mask`` marks entries not yet
    applied: it is cleared whenever the buffer is applied, so no entry is applied twice."""

    t: jax.Array
    s: jax.Array
    a: jax.Array
    td: jax.Array
    mask: jax.Array


class Carry(NamedTuple):
    q: jax.Array  # [T, S, A] (S padded to the device count when sharded)
    visits: jax.Array | None  # [T, S, A] int32, for the visit-count learning rate
    scratch: aggregate.Scratch | None  # [T, S, A] accumulators of the sparse mean path
    q_actor: jax.Array | None  # [T, S, A]: the actors' stale snapshot (strategy "async")
    pending: Pending | None
    env_state: Any
    obs: jax.Array  # [N] int32
    action: jax.Array  # [N] int32, the next action (used by SARSA)
    window: Window
    ep_return: jax.Array  # [N] f32
    ep_length: jax.Array  # [N] int32
    t: jax.Array  # update steps done (int32)
    chunk: jax.Array  # chunks done (int32)
    key: jax.Array
    # this step's random words [width, N], drawn from ``key`` at the end of the previous
    # step: a loop-carried buffer is computed once, whereas words drawn inside the step
    # were recomputed by XLA in every fusion that reads them (242 xor ops instead of ~40)
    words: jax.Array


class StepStats(NamedTuple):
    """Additive per-chunk statistics: int32 counts of one chunk (at most its env steps,
    < 2**31 by ``TrainConfig``; hosts sum them exactly in int64) and float sums."""

    episodes: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array
    successes: jax.Array
    abs_td_sum: jax.Array
    td_count: jax.Array


class Transition(NamedTuple):
    """What one step did, per env (returned by ``Learner.step`` for tests and tools; the
    training scan drops it, so it costs nothing there)."""

    s: jax.Array
    a: jax.Array
    r: jax.Array
    s_final: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    a_boot: jax.Array
    table: jax.Array


class TrainOutput(NamedTuple):
    q: jax.Array  # [S, A] (or [N, S, A] with aggregation="independent")
    metrics: dict[str, jax.Array]  # per chunk: [num_chunks] (leading learner axes if vmapped)
    carry: Carry


@dataclass(frozen=True)
class Learner:
    """The pieces shared by ``make_train`` and ``jaxq.train``."""

    config: TrainConfig
    env: Any
    params: Any
    venv: VecEnv
    init: Callable[[jax.Array, HParams], Carry]
    step: Callable[[Carry, HParams], tuple[Carry, StepStats, Transition]]
    chunk: Callable[[Carry, HParams], tuple[Carry, dict[str, jax.Array]]]
    estimate: Callable[[Carry], jax.Array]


def resolve_env(config: TrainConfig):
    """``(env, params)`` for the config; continuous envs need ``bins``."""
    from jaxq.envs.discretize import make_tabular

    kw = {k: v for k, v in (("bins", config.bins), ("low", config.low), ("high", config.high))
          if v is not None}
    return make_tabular(config.env_id, **kw, **config.env_kwargs)


def check_table(name: str, q, num_states: int, num_actions: int,
                masked_cells: bool = False) -> jax.Array:
    """A user-given Q-table: float, shape ``[S, A]``, finite; a clear error otherwise.

    ``masked_cells``: -inf is accepted, meaning an invalid action (value iteration's Q*
    of an environment with action masks)."""
    if not hasattr(q, "shape") or not hasattr(q, "dtype"):
        raise TypeError(f"{name} must be an array of shape [{num_states}, {num_actions}]")
    if not jnp.issubdtype(q.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array, got dtype {q.dtype}")
    if tuple(q.shape) != (num_states, num_actions):
        raise ValueError(f"{name} must have shape [{num_states}, {num_actions}], got {list(q.shape)}")
    host = np.asarray(q, np.float32)
    bad = ~np.isfinite(host)
    if masked_cells:
        bad &= ~np.isneginf(host)
    if bad.any():
        s, a = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be finite{' (or -inf for a masked action)' if masked_cells else ''}: "
                         f"{name}[{s}, {a}] = {host[s, a]}")
    return jnp.asarray(host)


def build_learner(config: TrainConfig, q_star=None, env_params=None, init_q=None,
                  mesh=None) -> Learner:
    """Validate everything that can be validated before tracing, then build the pieces.

    ``q_star`` (optional) adds max|Q - Q*| to the metrics; ``init_q`` starts from a given
    table instead of ``config.q_init`` (warm starts); ``mesh`` overrides the devices of a
    multi-device strategy (default: ``config.num_devices`` of ``jax.devices()``).
    """
    env, params = resolve_env(config) if env_params is None else env_params
    if config.aggregation == "independent":
        # each learner takes as many steps as one env of the batched run would
        inner_cfg = config.replace(num_envs=1, aggregation="mean",
                                   total_steps=config.plan()["iterations"])
        inner = build_learner(inner_cfg, q_star, (env, params), init_q)
        return _independent(config, inner)
    venv = VecEnv(env, params, config.num_envs)
    S, A, N, n = venv.num_states, venv.num_actions, config.num_envs, config.n_step
    if q_star is not None:
        q_star = check_table("q_star", q_star, S, A, masked_cells=True)
    if init_q is not None:
        init_q = check_table("init_q", init_q, S, A)
    rule = RULES[config.algo]
    T = rule.num_tables
    strategy = config.strategy
    on_mesh = strategy != "single"
    if on_mesh and mesh is None:
        mesh = strategies.make_mesh(config.num_devices)
    D = mesh.devices.size if on_mesh else 1
    if N % D:
        raise ValueError(f"num_envs={N} must be divisible by the number of devices ({D}) "
                         f"for strategy {strategy!r}")
    M = N // D  # envs per device
    S_pad = strategies.padded_states(S, strategy, D)
    if T * S_pad * A >= 2**31:
        raise ValueError(f"table of {T * S_pad * A} cells is too large for int32 indexing")
    table = strategies.make_table(strategy, T, S_pad, A, D, n * N)
    local_venv = VecEnv(env, params, M)
    plan = config.plan()
    iters = plan["iterations"]
    sync_every = config.sync_every
    buffered = strategy in ("replicated", "sharded") and sync_every > 1
    # Blocks of sync_every steps count from the start of each chunk, and the last block of
    # a chunk is applied when the chunk ends (shorter, so less stale, when sync_every does
    # not divide the chunk): every TD error a step computes reaches the table, and a
    # chunk's table, metrics and checkpoint hold all of its steps.
    block = min(sync_every, plan["chunk_iters"])
    sched = lambda kind, a, b, frac: explore.make_schedule(kind, a, b, max(1, int(frac * iters)))  # noqa: E731
    eval_cap = int(min(config.eval_max_steps, time_limit(params)))
    eval_venv = VecEnv(env, params, config.eval_episodes)
    # uint32 words per env per step: one for (explore, action) coins, one more for SARSA's
    # second choice, one for Double Q's (table coin, tie-break), then the env's own.
    agent_words = 1 + int(rule.carries_action) + int(T == 2)
    width = agent_words + venv.num_words
    masked = venv.has_action_mask
    # One-table, unmasked epsilon-greedy learners on a small local table act (and
    # Q-learning bootstraps) through per-state tables computed once per step.
    # Rebuilding them costs O(S * A) per step (a sort), so only when the table is much
    # smaller than the batch (measured: a loss below ~64 envs per cell, a gain above).
    tie_tables = (T == 1 and S_pad * A * 64 <= N and not masked
                  and strategy in ("single", "replicated") and config.exploration == "epsilon_greedy")

    def policy(hp: HParams, t):
        eps = sched(config.epsilon_schedule, hp.epsilon, hp.epsilon_end, config.epsilon_decay_fraction)(t)
        temp = sched(config.temperature_schedule, hp.temperature, hp.temperature_end,
                     config.temperature_decay_fraction)(t)
        if config.exploration == "epsilon_greedy":
            select = lambda cols, ue, ua: explore.epsilon_greedy(cols, ue, ua, eps, masked)  # noqa: E731
            probs = lambda cols: explore.epsilon_greedy_probs(cols, eps, masked)  # noqa: E731
        else:
            select = lambda cols, ue, ua: explore.boltzmann(cols, ua, temp)  # noqa: E731
            probs = lambda cols: explore.boltzmann_probs(cols, temp)  # noqa: E731
        return select, probs

    def mask(cols, s, ep):
        return explore.mask_columns(cols, env.valid_actions(s, ep)) if masked else cols

    def behaviour(q_flat, s, ep):
        """The behaviour policy's columns: Q, or (QA + QB) / 2 for Double Q, the estimate
        the learner reports (a Boltzmann temperature then means what it says; halving is
        exact in float, so epsilon-greedy picks the same actions as on QA + QB)."""
        cols = table.columns(q_flat, 0, s)
        if T == 2:
            cols = tuple((x + y) * 0.5 for x, y in zip(cols, table.columns(q_flat, 1, s)))
        return mask(cols, s, ep)

    def spec(tree, leading):
        """PartitionSpecs splitting every leaf of ``tree`` along its env axis
        (``leading`` = the axes before it)."""
        return jax.tree.map(lambda x: P(*([None] * leading), strategies.AXIS), tree)

    carry_specs = None
    if on_mesh:
        tspec = strategies.table_spec(strategy)

        def carry_spec(c: Carry) -> Carry:
            return Carry(
                q=tspec, visits=None if c.visits is None else tspec,
                scratch=None if c.scratch is None else aggregate.Scratch(tspec, tspec),
                q_actor=None if c.q_actor is None else tspec,
                pending=None if c.pending is None else spec(c.pending, 2),
                env_state=spec(c.env_state, 0), obs=P(strategies.AXIS),
                action=P(strategies.AXIS), window=spec(c.window, 1),
                ep_return=P(strategies.AXIS), ep_length=P(strategies.AXIS),
                t=P(), chunk=P(), key=P(), words=P(None, strategies.AXIS),
            )
        carry_specs = carry_spec

    # Env params are an argument (default: the config's), never a closed-over constant:
    # a 16.7M-cell maze must not be baked into the program, and callers may vmap over
    # params (e.g. many maps) like over seeds.
    def init(key, hp: HParams, ep=None) -> Carry:
        ep = params if ep is None else ep
        k_env, k_act, key = jax.random.split(key, 3)
        obs, env_state = venv.reset(k_env, ep)
        q = jnp.full((T, S_pad, A), config.q_init, jnp.float32)
        if init_q is not None:
            q = q.at[:, :S].set(init_q)
        select, _ = policy(hp, 0)
        u_explore, u_action = explore.halves(jax.random.bits(k_act, (N,), jnp.uint32))
        cols = q_columns(q[0].reshape(-1), obs, A)  # both Double Q tables start equal
        action = select(mask(cols, obs, ep), u_explore, u_action)
        zi, zf = jnp.zeros((n, N), jnp.int32), jnp.zeros((n, N), jnp.float32)
        zeros = lambda dt: jnp.zeros((T, S_pad, A), dt)  # noqa: E731
        pend = None
        if buffered:
            zp = lambda dt: jnp.zeros((block, n, N), dt)  # noqa: E731
            pend = Pending(zp(jnp.int32), zp(jnp.int32), zp(jnp.int32), zp(jnp.float32), zp(bool))
        c = Carry(
            q=q,
            visits=zeros(jnp.int32) if config.lr_schedule == "visit" else None,
            scratch=(aggregate.Scratch(zeros(jnp.float32), zeros(jnp.float32))
                     if table.needs_scratch(config.aggregation) else None),
            q_actor=q if strategy == "async" else None,
            pending=pend,
            env_state=env_state, obs=obs.astype(jnp.int32), action=action,
            window=Window(zi, zi, zf, jnp.zeros((n, N), bool)),
            ep_return=jnp.zeros(N, jnp.float32), ep_length=jnp.zeros(N, jnp.int32),
            t=jnp.int32(0), chunk=jnp.int32(0), key=key, words=draw_words(key),
        )
        if on_mesh:
            c = jax.lax.with_sharding_constraint(
                c, jax.tree.map(lambda sp: NamedSharding(mesh, sp), carry_specs(c)))
        return c

    def local_step(c: Carry, hp: HParams, ep, tables, words, env_keys):
        """One step of this device's M envs (all N on one device)."""
        coins = [explore.halves(words[i]) for i in range(agent_words)]
        select, probs = policy(hp, c.t)
        q_live = c.q.reshape(-1)
        if strategy == "async":  # refresh the actors' snapshot every sync_every steps
            q_act_table = jax.lax.cond(c.t % sync_every == 0, lambda: c.q, lambda: c.q_actor)
            q_act = q_act_table.reshape(-1)
        else:
            q_act_table, q_act = None, q_live
        if tie_tables:  # small table: per-state greedy structure once, then lookups
            gt = explore.greedy_table(c.q[0])
            eps = sched(config.epsilon_schedule, hp.epsilon, hp.epsilon_end,
                        config.epsilon_decay_fraction)(c.t)

            def select_at(s, ue, ua):
                return jnp.where(ue < eps, explore._uniform_index(ua, A),
                                 explore.greedy_lookup(gt, s, ua))
        else:
            def select_at(s, ue, ua):
                return select(behaviour(q_act, s, ep), ue, ua)
        a = c.action if rule.carries_action else select_at(c.obs, *coins[0])
        obs, env_state, r, term, trunc, s_final, success = local_venv.step(
            env_keys, words[agent_words:], c.env_state, a, ep, tables)
        done = term | trunc
        # SARSA: the next action, chosen before the update; at an episode's end the
        # bootstrap action is drawn at the final observation instead.
        a_next = a_boot = a
        if rule.carries_action:
            a_next = select_at(obs, *coins[1])
            a_boot = jnp.where(done, select_at(s_final, *coins[0]), a_next)
        if T == 2:
            u_coin, u_tie = coins[-1]
            which = (u_coin < 0.5).astype(jnp.int32)
        else:
            which, u_tie = jnp.zeros(M, jnp.int32), coins[0][1]
        if tie_tables and rule.name == "q_learning":
            boot = gt.v_max[s_final]  # = max over Q(s', .) columns, bit for bit
        else:
            boot = rule.value(Bootstrap(table, q_live, s_final, a_boot, which, u_tie, probs,
                                        lambda cols, s: mask(cols, s, ep)))
        # n-step window: push, compute targets for complete entries
        w = c.window
        w = Window(
            jnp.concatenate([w.s[1:], c.obs[None]]), jnp.concatenate([w.a[1:], a[None]]),
            jnp.concatenate([w.r[1:], r[None]]),
            jnp.concatenate([w.pending[1:], jnp.ones((1, M), bool)]),
        )
        gamma = hp.gamma
        disc = gamma ** jnp.arange(n, 0, -1, dtype=jnp.float32)[:, None]  # gamma^(n-j)
        target = nstep_returns(w.r, gamma) + disc * jnp.where(term, 0.0, boot)[None]
        update = w.pending & ((jnp.arange(n) == 0)[:, None] | done[None])
        which_n = jnp.broadcast_to(which[None], (n, M))
        td = target - table.value(q_live, which_n, w.s, w.a)
        lr = sched(config.lr_schedule if config.lr_schedule != "visit" else "constant",
                   hp.lr, hp.lr_end, config.lr_decay_fraction)(c.t)
        flat = lambda x: None if x is None else x.reshape(-1)  # noqa: E731
        scratch = None if c.scratch is None else aggregate.Scratch(*map(flat, c.scratch))

        def apply(q, scratch, visits, *entries):
            return table.apply(q, scratch, visits, *entries, lr, config.aggregation,
                               hp.visit_power)

        pending = c.pending
        if buffered:  # buffer a block of TD errors; apply their combined mean at its end
            in_chunk = c.t % plan["chunk_iters"]
            slot = in_chunk % block
            pending = Pending(*(buf.at[slot].set(x) for buf, x in
                                zip(pending, (which_n, w.s, w.a, td, update))))
            block_ends = (slot == block - 1) | (in_chunk == plan["chunk_iters"] - 1)

            def sync():
                out = apply(q_live, scratch, flat(c.visits), *pending)
                return out, jnp.zeros_like(pending.mask)

            (q_flat, scratch, visits), unapplied = jax.lax.cond(
                block_ends, sync,
                lambda: ((q_live, scratch, flat(c.visits)), pending.mask))
            pending = pending._replace(mask=unapplied)
        else:
            q_flat, scratch, visits = apply(q_live, scratch, flat(c.visits), which_n, w.s, w.a,
                                            td, update)
        w = w._replace(pending=w.pending & ~update & ~done[None])
        ep_return = c.ep_return + r
        ep_length = c.ep_length + 1
        stats = StepStats(
            episodes=jnp.sum(done, dtype=jnp.int32),
            return_sum=jnp.sum(jnp.where(done, ep_return, 0.0)),
            # float, like return_sum: the lengths of one chunk's episodes may sum past
            # 2**31 (long episodes started in earlier chunks); a mean needs no exact sum
            length_sum=jnp.sum(jnp.where(done, ep_length, 0).astype(jnp.float32)),
            successes=jnp.sum(success, dtype=jnp.int32),
            abs_td_sum=jnp.sum(jnp.where(update, jnp.abs(td), 0.0)),
            td_count=jnp.sum(update, dtype=jnp.int32),
        )
        stats = StepStats(*(table.psum(x) for x in stats))
        shape = c.q.shape
        local = lambda x: None if x is None else x.reshape(shape)  # noqa: E731
        c = Carry(
            q=local(q_flat), visits=local(visits),
            scratch=None if scratch is None else aggregate.Scratch(*map(local, scratch)),
            q_actor=q_act_table, pending=pending, env_state=env_state,
            obs=obs, action=a_next, window=w,
            ep_return=jnp.where(done, 0.0, ep_return), ep_length=jnp.where(done, 0, ep_length),
            t=c.t + 1, chunk=c.chunk, key=c.key, words=c.words,
        )
        return c, stats, Transition(w.s[-1], a, r, s_final, term, trunc, a_boot, which)

    mesh_step = None
    if on_mesh:
        def mesh_step(c, hp, ep, tables, words, env_keys):
            cs = carry_specs(c)
            rep = lambda x: jax.tree.map(lambda _: P(), x)  # noqa: E731
            trans_spec = Transition(*([P(strategies.AXIS)] * 8))
            f = jax.shard_map(
                local_step, mesh=mesh,
                in_specs=(cs, rep(hp), rep(ep), rep(tables), P(None, strategies.AXIS),
                          None if env_keys is None else P(strategies.AXIS)),
                out_specs=(cs, StepStats(*([P()] * 6)), trans_spec),
                check_vma=False,
            )
            return f(c, hp, ep, tables, words, env_keys)

    def draw_words(key):
        """The words of the step whose key is ``key`` (identical whatever the device
        layout): rows contiguous per use."""
        words = jax.random.bits(jax.random.split(key, 3)[1], (width, N), jnp.uint32)
        if on_mesh:
            words = jax.lax.with_sharding_constraint(
                words, NamedSharding(mesh, P(None, strategies.AXIS)))
        return words

    def step(c: Carry, hp: HParams, ep=None, tables=None) -> tuple[Carry, StepStats, Transition]:
        """One batched step for all N envs on the carried words, then the next step's
        words are drawn; on one device or across the mesh."""
        ep = params if ep is None else ep
        tables = venv.prepare(ep) if tables is None else tables
        key, _, k_env = jax.random.split(c.key, 3)
        env_keys = None if venv.fast else jax.random.split(k_env, N)
        words = c.words
        c = c._replace(key=key)
        if not on_mesh:
            c, stats, trans = local_step(c, hp, ep, tables, words, env_keys)
        else:
            c, stats, trans = mesh_step(c, hp, ep, tables, words, env_keys)
        return c._replace(words=draw_words(key)), stats, trans

    def estimate_q(c: Carry) -> jax.Array:
        return estimate(c.q)[:S]

    def chunk(c: Carry, hp: HParams, ep=None):
        ep = params if ep is None else ep
        tables = venv.prepare(ep)  # loop-invariant: once per chunk, not per step

        def body(carry, _):
            carry, stats = carry
            carry, s, _ = step(carry, hp, ep, tables)
            return (carry, jax.tree.map(jnp.add, stats, s)), None

        zero = StepStats(jnp.int32(0), jnp.float32(0), jnp.float32(0), jnp.int32(0),
                         jnp.float32(0), jnp.int32(0))
        (c, stats), _ = jax.lax.scan(body, (c, zero), None, length=plan["chunk_iters"])
        c = c._replace(chunk=c.chunk + 1)
        q_est = estimate_q(c)
        metrics = stats._asdict()
        # over valid cells only: Q* is -inf where an action is masked out
        metrics["q_error"] = (jnp.max(jnp.where(jnp.isfinite(q_star), jnp.abs(q_est - q_star), 0.0))
                              if q_star is not None else jnp.float32(jnp.nan))
        if config.eval_every > 0:
            due = (c.chunk % config.eval_every == 0) | (c.chunk == plan["num_chunks"])
            k_eval = jax.random.fold_in(c.key, c.chunk)
            nan = jnp.float32(jnp.nan)
            ev = jax.lax.cond(
                due, lambda: tuple(_rollouts(eval_venv, ep, q_est, k_eval, eval_cap)),
                lambda: (nan, nan, nan, nan))
        else:
            ev = (jnp.float32(jnp.nan),) * 4
        metrics.update(eval_return=ev[0], eval_success=ev[1], eval_length=ev[2],
                       eval_finished=ev[3])
        return c, metrics

    return Learner(config, env, params, venv, init, step, chunk, estimate_q)


def _independent(config: TrainConfig, inner: Learner) -> Learner:
    """N single-env learners, each with its own table, as one vmapped program."""
    N = config.num_envs

    def init(key, hp, ep=None):
        return jax.vmap(inner.init, in_axes=(0, None, None))(jax.random.split(key, N), hp, ep)

    def chunk(c, hp, ep=None):
        c, m = jax.vmap(inner.chunk, in_axes=(0, None, None))(c, hp, ep)
        additive = set(StepStats._fields)
        return c, {k: (jnp.sum(v, 0) if k in additive else jnp.mean(v, 0)) for k, v in m.items()}

    def step(c, hp, ep=None):
        return jax.vmap(inner.step, in_axes=(0, None, None))(c, hp, ep)

    return Learner(config, inner.env, inner.params, VecEnv(inner.env, inner.params, N),
                   init, step, chunk, jax.vmap(inner.estimate))


def make_train(config: TrainConfig, q_star=None, init_q=None) -> Callable[..., TrainOutput]:
    """A pure ``train(key, hparams=None, env_params=None) -> TrainOutput``: the whole
    run as one scan.

    ``jax.jit(jax.vmap(train))(keys)`` trains one learner per key in one compiled call;
    vmap over ``HParams`` leaves (e.g. ``config.hparams().replace(lr=lrs)``) sweeps them,
    and over env params (same shapes, e.g. maps of one size) trains on many MDPs at once.
    """
    learner = build_learner(config, q_star, init_q=init_q)
    num_chunks = config.plan()["num_chunks"]

    def train(key, hparams: HParams | None = None, env_params=None) -> TrainOutput:
        hp = config.hparams() if hparams is None else hparams
        ep = learner.params if env_params is None else env_params
        c = learner.init(key, hp, ep)
        c, metrics = jax.lax.scan(lambda c, _: learner.chunk(c, hp, ep), c, None, length=num_chunks)
        return TrainOutput(learner.estimate(c), metrics, c)

    return train


# ---- the convenient form -------------------------------------------------------------

@dataclass
class TrainResult:
    """What ``jaxq.train`` returns: the final table, the per-chunk history, timings."""

    q: np.ndarray  # [S, A] float32 ([N, S, A] for aggregation="independent")
    metrics: dict[str, np.ndarray]
    timings: dict[str, float]
    config: TrainConfig
    env: Any = field(repr=False, default=None)
    params: Any = field(repr=False, default=None)
    start_chunk: int = 0  # chunks a resumed run found done in its checkpoint

    @property
    def steps_run(self) -> int:
        """Env steps run by this call (a resumed run's total includes the checkpoint's)."""
        plan = self.config.plan()
        done = len(self.metrics.get("env_steps", ())) if self.metrics else 0
        return (done - self.start_chunk) * plan["chunk_iters"] * self.config.num_envs

    def summary(self) -> dict[str, float]:
        """The last chunk's figures (and the last periodic evaluation); counters are ints."""
        m = self.metrics
        if not m:
            return dict(self.timings)
        out: dict[str, Any] = {k: int(m[k][-1]) for k in ("env_steps", "episodes")}
        out.update(steps_run=self.steps_run, start_chunk=self.start_chunk)
        out.update({k: float(m[k][-1]) for k in ("mean_return", "success_rate", "mean_abs_td",
                                                  "q_error")})
        done = np.flatnonzero(~np.isnan(m["eval_return"]))
        if done.size:
            i = done[-1]
            out.update(eval_return=float(m["eval_return"][i]),
                       eval_success=float(m["eval_success"][i]),
                       eval_length=float(m["eval_length"][i]))
        out.update(self.timings)
        return out


def host_metrics(raw: dict[str, np.ndarray], start_chunk: int, config: TrainConfig,
                 has_success: bool = True) -> dict[str, np.ndarray]:
    """Per-chunk device sums -> the reported history; counters become exact int64 totals.
    ``has_success=False`` (an env that defines no success, e.g. most gymnax ones): the
    success rate is NaN, as evaluation reports it, not 0."""
    plan = config.plan()
    n_chunks = len(raw["episodes"])
    chunk_ids = np.arange(start_chunk + 1, start_chunk + n_chunks + 1, dtype=np.int64)
    eps = raw["episodes"].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        success = raw["successes"] / eps if has_success else np.full(n_chunks, np.nan)
        out = {
            "env_steps": chunk_ids * plan["chunk_iters"] * config.num_envs,
            "episodes_in_chunk": eps,
            "mean_return": raw["return_sum"] / eps,
            "success_rate": success,
            "mean_length": raw["length_sum"].astype(np.float64) / eps,
            "mean_abs_td": raw["abs_td_sum"] / raw["td_count"].astype(np.int64),
            "q_error": np.asarray(raw["q_error"], np.float64),
            "eval_return": np.asarray(raw["eval_return"], np.float64),
            "eval_success": np.asarray(raw["eval_success"], np.float64),
            "eval_length": np.asarray(raw["eval_length"], np.float64),
        }
    if "eval_finished" in raw:
        out["eval_finished"] = np.asarray(raw["eval_finished"], np.float64)
    return out


def _append(history: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not history:
        return new
    # a history from an older checkpoint may lack a newer figure: NaN for its chunks
    missing = lambda k: np.full(len(history["env_steps"]), np.nan)  # noqa: E731
    return {k: np.concatenate([history.get(k, missing(k)), new[k]]) for k in new}


def train(
    config: TrainConfig,
    q_star=None,
    *,
    init_q=None,
    progress: bool = True,
    checkpoint_path: str | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    stop_after_chunks: int | None = None,
    before_run: Callable[[], None] | None = None,
    compile_cache: str | None = None,
    callback: Callable[[int, dict[str, float]], Any] | None = None,
) -> TrainResult:
    """Train with a progress bar, in compiled chunks; optionally checkpoint and resume.

    ``checkpoint_every`` (chunks) writes ``checkpoint_path`` atomically; ``resume=True``
    continues from it if it exists, giving bit for bit the same final table as an
    uninterrupted run on the same device. ``stop_after_chunks`` ends early (to test
    interruption). Timings keep compilation apart from running. ``before_run`` is called
    once everything is validated (config, devices, checkpoint) and before anything
    compiles, e.g. to write a run's files only when the run can start. ``compile_cache``:
    a folder where the compiled programs are kept (``jaxq.compile_cache``; None: none),
    so a rerun with the same shapes skips compiling. ``callback(chunk, metrics)`` is called
    on the host after every chunk (``chunk`` counts from 1; ``metrics`` is that chunk's row
    of the history as Python numbers, plus ``episodes``, the run's total so far), so any
    logger (TensorBoard, Weights & Biases, MLflow) can follow a run without jaxq depending
    on it.

    Progress goes to stderr: a bar on a terminal, plain lines (one per ~10%) otherwise.
    """
    from jaxq import checkpoint as ckpt

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if checkpoint_every and not checkpoint_path:
        raise ValueError("checkpoint_every needs checkpoint_path")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
    plan = config.plan()
    if plan["env_steps"] != config.total_steps:
        warnings.warn(
            f"total_steps={config.total_steps} rounded up to {plan['env_steps']} env steps "
            f"({plan['num_chunks']} chunks x {plan['chunk_iters']} steps x {config.num_envs} envs)",
            stacklevel=2,
        )
    learner = build_learner(config, q_star, init_q=init_q)
    hp = config.hparams()
    key = jax.random.key(config.seed)
    history: dict[str, np.ndarray] = {}
    config_json = config.to_json()
    ep = learner.params
    restored = None
    if resume and checkpoint_path and os.path.exists(checkpoint_path):
        # before compiling: a corrupt or foreign checkpoint is reported at once
        restored = ckpt.read(checkpoint_path, jax.eval_shape(learner.init, key, hp, ep),
                             config_json)
    if before_run is not None:
        before_run()
    t0 = time.perf_counter()
    with cpu_threefry.scoped():  # jaxq's own programs only (same bits, faster on CPU)
        init_c = compile_cache_lib.compile(jax.jit(learner.init).lower(key, hp, ep),
                                           compile_cache)
    if restored is None:
        carry = init_c(key, hp, ep)
    else:  # laid out as a fresh run's carry (sharded over devices, maybe processes)
        carry = ckpt.place(restored, init_c.output_shardings)
        history = restored.history
    with cpu_threefry.scoped():
        chunk_c = compile_cache_lib.compile(
            jax.jit(learner.chunk, donate_argnums=0).lower(carry, hp, ep), compile_cache)
    compile_s = time.perf_counter() - t0
    start = int(jax.device_get(_chunks_done(carry)))
    end = plan["num_chunks"] if stop_after_chunks is None else min(plan["num_chunks"], start + stop_after_chunks)
    bar = None
    if progress and jax.process_index() == 0:
        from jaxq.progress import Progress
        bar = Progress(f"{config.algo} {config.env_id}", plan["num_chunks"],
                       plan["chunk_iters"] * config.num_envs, start)
        if restored is not None:
            bar.note(f"resuming at chunk {start}/{plan['num_chunks']} from {checkpoint_path}")
    has_success = learner.venv.has_success
    run_s = 0.0
    for i in range(start, end):
        t1 = time.perf_counter()
        carry, raw = chunk_c(carry, hp, ep)
        raw = jax.device_get(raw)
        dt = time.perf_counter() - t1
        run_s += dt
        history = _append(history, host_metrics({k: np.atleast_1d(v) for k, v in raw.items()},
                                                i, config, has_success))
        if bar is not None:
            bar.update(i + 1, dt, float(history["mean_return"][-1]))
        if callback is not None:
            row: dict[str, float] = {k: v[-1].item() for k, v in history.items()}
            row["episodes"] = int(np.sum(history["episodes_in_chunk"]))
            callback(i + 1, row)
        if checkpoint_every and ((i + 1) % checkpoint_every == 0 or i + 1 == plan["num_chunks"]):
            ckpt.save(checkpoint_path, carry, history, config_json)
    if bar is not None:
        bar.close()
    steps_run = (end - start) * plan["chunk_iters"] * config.num_envs
    q = ckpt.to_host(learner.estimate(carry))
    timings = {"compile_s": compile_s, "run_s": run_s,
               "steps_per_s": steps_run / run_s if run_s > 0 else float("nan")}
    if history:
        history["episodes"] = np.cumsum(history["episodes_in_chunk"])
    return TrainResult(q, history, timings, config, learner.env, learner.params, start)


def _chunks_done(carry: Carry) -> jax.Array:
    c = carry.chunk
    return c if c.ndim == 0 else c.reshape(-1)[0]
