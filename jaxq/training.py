"""The training loop: N environments, one Q-function, one compiled program.

``make_train(config)`` returns a pure ``train(key, hparams=None)`` whose whole loop is a
``lax.scan`` over chunks of a ``lax.scan`` over steps, so it can be ``jit``-ed and
``vmap``-ed over seeds and over the array leaves of ``HParams``. ``jaxq.train(config)`` is
the convenient form: it runs the same compiled chunk from Python with a progress bar,
checkpoints and timings.

This module only wires parts that each do one job. One step, for all N environments::

    act      behaviour policy on the Q-function's values     explore.BehaviourPolicy
             (the strategy may hand the actors a stale copy)   strategies.Strategy.acting
    env      step every copy (auto-reset; the final            vecenv.VecEnv
             observation is kept for bootstrapping)
    target   the rule's value of the next state, n-step        rules.RULES, targets.py
             window and targets of complete entries
    update   TD errors -> the Q-function, at once or in        Strategy.update ->
             sync_every blocks, on one device or a mesh          QFunction.apply_td (a
                                                                 DenseTable, tiles.TileCodedQ)
    metrics  episode statistics and |TD| summed on device      metrics.py

and ``Strategy.run`` decides where the step runs (directly, or under ``shard_map``).
Observations are whatever ``VecEnv`` carries: state indices for a table, or vectors of a
continuous gymnax env for ``q_function="tiles"``; nothing in the step depends on which.
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
from jax.sharding import PartitionSpec as P

from jaxq import explore, prng, strategies, targets
from jaxq import tiles as tiles_lib
from jaxq import metrics as metrics_lib
from jaxq.config import HParams, TrainConfig
from jaxq.metrics import StepStats
from jaxq.qfunctions import DenseTable, TDBatch
from jaxq.rules import RULES, Bootstrap
from jaxq.targets import Window
from jaxq.vecenv import VecEnv, time_limit
from jaxq import compile_cache as compile_cache_lib


class Carry(NamedTuple):
    """Everything one step hands to the next (the scan's carry, and a checkpoint)."""

    qf: Any  # the Q-function's parameters (a dense table: TableParams, [T, S, A] each)
    q_actor: Any  # strategy "async": the actors' stale copy (else None)
    pending: TDBatch | None  # the strategy's sync_every buffer, [block, n, N] (else None)
    env_state: Any
    obs: jax.Array  # [N] int32 state indices, or [N, d] float32 observation vectors
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

    @property
    def q(self) -> jax.Array:
        """The stored table ``[T, S, A]`` (S padded when sharded)."""
        return self.qf.q


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
    """What the pure ``train`` of ``make_train`` returns (device arrays; ``jaxq.train``
    returns a host-side ``TrainResult``)."""

    q: jax.Array  # [S, A] (or [N, S, A] with learners="independent"); tiles: [num_tiles, A] weights
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
    """``(env, params)`` for the config: a table needs state indices (continuous envs
    need ``bins``); tiles take a continuous env's observation vectors as they are, and a
    tabular env's state indices (one-hot features)."""
    from jaxq.envs.discretize import EXACT_INDEXES, discretize, make_tabular

    if config.q_function == "tiles":
        from gymnax.environments import spaces

        from jaxq.envs.base import TabularEnvironment
        from jaxq.envs.registry import make

        env, params = make(config.env_id, **config.env_kwargs)
        vector = (isinstance(env.observation_space(params), spaces.Box)
                  and not isinstance(env, TabularEnvironment) and type(env) not in EXACT_INDEXES)
        return (env, params) if vector else discretize(env, params, env_id=config.env_id)

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


def _behaviour_policy(config: TrainConfig, iters: int, masked: bool) -> explore.BehaviourPolicy:
    steps = lambda frac: max(1, int(frac * iters))  # noqa: E731
    return explore.BehaviourPolicy(
        config.exploration,
        explore.ScheduleSpec(config.epsilon_schedule, steps(config.epsilon_decay_fraction)),
        explore.ScheduleSpec(config.temperature_schedule,
                             steps(config.temperature_decay_fraction)),
        masked)


def build_learner(config: TrainConfig, q_star=None, env_params=None, init_q=None,
                  mesh=None, count_updates: bool = False) -> Learner:
    """Validate everything that can be validated before tracing, then wire the parts:
    the environment batch, the Q-function on the strategy's store, the behaviour
    policy, the rule and n-step targets, and the metrics.

    ``q_star`` (optional) adds max|Q - Q*| to the metrics; ``init_q`` starts from a given
    table instead of ``config.q_init`` (warm starts); ``mesh`` overrides the devices of a
    multi-device strategy (default: ``config.num_devices`` of ``jax.devices()``).
    ``count_updates``: a table carries per-cell counts of batched updates (``qf.visits``)
    whatever the learning rate (``jaxq.ray`` learners push them).
    """
    env, params = resolve_env(config) if env_params is None else env_params
    if config.learners == "independent":
        # each learner takes as many steps as one env of the batched run would
        inner_cfg = config.replace(num_envs=1, learners="shared",
                                   total_steps=config.plan()["iterations"])
        inner = build_learner(inner_cfg, q_star, (env, params), init_q)
        return _independent(config, inner)
    venv = VecEnv(env, params, config.num_envs)
    S, A, N, n = venv.num_states, venv.num_actions, config.num_envs, config.n_step
    use_tiles = config.q_function == "tiles"
    for name, x in (("q_star", q_star), ("init_q", init_q)):
        if x is not None and not venv.tabular:
            raise ValueError(f"{name} is an [S, A] table, but {env.name} observes vectors "
                             f"{venv.obs_shape} (q_function={config.q_function!r}); pass "
                             f"{name} only for a tabular environment")
    if q_star is not None:
        q_star = check_table("q_star", q_star, S, A, masked_cells=True)
    if init_q is not None:
        init_q = check_table("init_q", init_q, S, A)
    rule = RULES[config.algo]
    T = rule.num_tables
    plan = config.plan()
    iters = plan["iterations"]
    if config.strategy != "single" and mesh is None:
        mesh = strategies.make_mesh(config.num_devices)
    strategy = strategies.Strategy(config.strategy, mesh, config.sync_every, plan["chunk_iters"])
    D = strategy.num_devices
    if N % D:
        raise ValueError(f"num_envs={N} must be divisible by the number of devices ({D}) "
                         f"for strategy {config.strategy!r}")
    M = N // D  # envs per device
    if use_tiles:
        coder = tiles_lib.make_coder(env, params, config.env_id, config.tiles_per_dim,
                                     config.num_tilings, config.low, config.high,
                                     config.max_tiles)
        S_pad = strategy.padded_states(coder.num_tiles)
    else:
        S_pad = strategy.padded_states(S)
    if T * S_pad * A >= 2**31:
        raise ValueError(f"table of {T * S_pad * A} cells is too large for int32 indexing")
    if use_tiles:
        qf = tiles_lib.TileCodedQ(coder, strategy.store(T, S_pad, A, n * N * coder.num_tilings),
                                  T, config.aggregation, config.q_init)
    else:
        qf = DenseTable(strategy.store(T, S_pad, A, n * N), S, T, config.aggregation,
                        config.q_init, visit_counts=config.lr_schedule == "visit",
                        count_updates=count_updates)
    local_venv = VecEnv(env, params, M)
    masked = venv.has_action_mask
    behaviour = _behaviour_policy(config, iters, masked)
    lr_schedule = explore.ScheduleSpec(
        config.lr_schedule if config.lr_schedule != "visit" else "constant",
        max(1, int(config.lr_decay_fraction * iters)))
    evaluation = metrics_lib.PeriodicEvaluation(
        config.eval_every, plan["num_chunks"], VecEnv(env, params, config.eval_episodes),
        int(min(config.eval_max_steps, time_limit(params))),
        qf.global_values if use_tiles else None)
    # uint32 words per env per step: one for (explore, action) coins, one more for SARSA's
    # second choice, one for Double Q's (table coin, tie-break), then the env's own.
    agent_words = 1 + int(rule.carries_action) + int(T == 2)
    width = agent_words + venv.num_words
    # One-table, unmasked epsilon-greedy learners on a small local table act (and
    # Q-learning bootstraps) through per-state tables computed once per step.
    # Rebuilding them costs O(S * A) per step (a sort), so only when the table is much
    # smaller than the batch (measured: a loss below ~64 envs per cell, a gain above).
    greedy_fast_path = (not use_tiles and T == 1 and S_pad * A * 64 <= N and not masked
                        and config.strategy in ("single", "replicated")
                        and config.exploration == "epsilon_greedy")

    def columns(qp, ep):
        """The behaviour policy's columns at states s: Q, or (QA + QB) / 2 for Double Q,
        the estimate the learner reports (a Boltzmann temperature then means what it
        says; halving is exact in float, so epsilon-greedy picks the same actions as on
        QA + QB), with invalid actions at -inf."""
        def at(s, which=None):
            if which is not None:
                cols = qf.values(qp, s, which)
            else:
                cols = qf.values(qp, s, 0)
                if T == 2:
                    cols = tuple((x + y) * 0.5 for x, y in zip(cols, qf.values(qp, s, 1)))
            return mask(cols, s, ep)
        return at

    def mask(cols, s, ep):
        return explore.mask_columns(cols, env.valid_actions(s, ep)) if masked else cols

    # Env params are an argument (default: the config's), never a closed-over constant:
    # a 16.7M-cell maze must not be baked into the program, and callers may vmap over
    # params (e.g. many maps) like over seeds.
    def init(key, hp: HParams, ep=None) -> Carry:
        ep = params if ep is None else ep
        k_env, k_act, key = jax.random.split(key, 3)
        obs, env_state = venv.reset(k_env, ep)
        obs = venv.observations(obs)
        qp = qf.init(init_q)
        u_explore, u_action = explore.halves(prng.bits(k_act, (N,)))
        # read from the whole (global) Q-function, outside the strategy's collectives:
        # the estimate, which is the first table's values while Double Q's two are equal
        first = lambda s: mask(qf.global_values(qp, s), s, ep)  # noqa: E731
        action = behaviour.at(hp, 0).act(first, obs, u_explore, u_action)
        c = Carry(
            qf=qp, q_actor=strategy.init_snapshot(qf, qp),
            pending=strategy.init_buffer(qf.td_batch((n, N))),
            env_state=env_state, obs=obs, action=action,
            window=targets.empty_window(n, N, venv.obs_shape, venv.obs_dtype),
            ep_return=jnp.zeros(N, jnp.float32), ep_length=jnp.zeros(N, jnp.int32),
            t=jnp.int32(0), chunk=jnp.int32(0), key=key, words=draw_words(key),
        )
        return strategy.constrain(c, strategy.carry_spec(c))

    def local_step(c: Carry, hp: HParams, ep, tables, words, env_keys):
        """One step of this device's M envs (all N on one device)."""
        coins = [explore.halves(words[i]) for i in range(agent_words)]
        acting = behaviour.at(hp, c.t)
        q_act, q_actor = strategy.acting(qf, c.qf, c.q_actor, c.t)
        cols_act = columns(q_act, ep)
        gt = qf.greedy_table(c.qf) if greedy_fast_path else None
        act = lambda s, u: acting.act(cols_act, s, *u, greedy_states=gt)  # noqa: E731
        a = c.action if rule.carries_action else act(c.obs, coins[0])
        obs, env_state, r, term, trunc, s_final, success = local_venv.step(
            env_keys, words[agent_words:], c.env_state, a, ep, tables)
        done = term | trunc
        # SARSA: the next action, chosen before the update; at an episode's end the
        # bootstrap action is drawn at the final observation instead.
        a_next = a_boot = a
        if rule.carries_action:
            a_next = act(obs, coins[1])
            a_boot = jnp.where(done, act(s_final, coins[0]), a_next)
        if T == 2:
            u_coin, u_tie = coins[-1]
            which = (u_coin < 0.5).astype(jnp.int32)
        else:
            which, u_tie = jnp.zeros(M, jnp.int32), coins[0][1]
        cols_live = columns(c.qf, ep)
        boot = rule.value(Bootstrap(
            values=lambda w, s: cols_live(s, w),
            value=lambda w, s, a_: qf.value(c.qf, s, a_, w),
            s_next=s_final, a_next=a_boot, which=which, u_tie=u_tie,
            policy_probs=acting.probs, greedy=gt))
        w = targets.push(c.window, c.obs, a, r)
        target = targets.nstep_targets(w, hp.gamma, boot, term)
        update = targets.complete(w, done)
        which_n = jnp.broadcast_to(which[None], (n, M))
        td = target - qf.value(c.qf, w.s, w.a, which_n)
        lr = lr_schedule(hp.lr, hp.lr_end)(c.t)
        qp, pending = strategy.update(qf, c.qf, TDBatch(which_n, w.s, w.a, td, update),
                                      c.pending, c.t, lr, hp.visit_power)
        w = targets.retire(w, update, done)
        ep_return = c.ep_return + r
        ep_length = c.ep_length + 1
        stats = metrics_lib.step_stats(done, ep_return, ep_length, success, update, td)
        stats = StepStats(*(strategy.psum(x) for x in stats))
        c = Carry(
            qf=qp, q_actor=q_actor, pending=pending, env_state=env_state,
            obs=obs, action=a_next, window=w,
            ep_return=jnp.where(done, 0.0, ep_return), ep_length=jnp.where(done, 0, ep_length),
            t=c.t + 1, chunk=c.chunk, key=c.key, words=c.words,
        )
        return c, stats, Transition(w.s[-1], a, r, s_final, term, trunc, a_boot, which)

    def draw_words(key):
        """The words of the step whose key is ``key`` (identical whatever the device
        layout): rows contiguous per use."""
        words = prng.bits(jax.random.split(key, 3)[1], (width, N))
        return strategy.constrain(words, P(None, strategies.AXIS))

    def step(c: Carry, hp: HParams, ep=None, tables=None) -> tuple[Carry, StepStats, Transition]:
        """One batched step for all N envs on the carried words, then the next step's
        words are drawn; on one device or across the mesh."""
        ep = params if ep is None else ep
        tables = venv.prepare(ep) if tables is None else tables
        key, _, k_env = jax.random.split(c.key, 3)
        env_keys = None if venv.fast else jax.random.split(k_env, N)
        words = c.words
        c, stats, trans = strategy.run(local_step, c._replace(key=key), hp, ep, tables, words,
                                       env_keys)
        return c._replace(words=draw_words(key)), stats, trans

    def estimate_q(c: Carry) -> jax.Array:
        return qf.estimate(c.qf)

    def chunk(c: Carry, hp: HParams, ep=None):
        ep = params if ep is None else ep
        tables = venv.prepare(ep)  # loop-invariant: once per chunk, not per step

        def body(carry, _):
            carry, stats = carry
            carry, s, _ = step(carry, hp, ep, tables)
            return (carry, jax.tree.map(jnp.add, stats, s)), None

        (c, stats), _ = jax.lax.scan(body, (c, metrics_lib.zero_stats()), None,
                                     length=plan["chunk_iters"])
        c = c._replace(chunk=c.chunk + 1)
        q_est = estimate_q(c)
        return c, metrics_lib.chunk_metrics(stats, metrics_lib.q_error(q_est, q_star),
                                            evaluation(c.chunk, c.key, ep,
                                                       c.qf if use_tiles else q_est))

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

    ``q_function="mlp"``: the network's pure ``train(key, hparams=None) -> DeepOutput``
    (``make_train_deep(config.deep_config())``; ``config.hparams()`` gives its
    ``DeepHParams``), which jit-s and vmap-s the same way; a table's ``q_star``/``init_q``
    are refused.
    """
    if isinstance(config, TrainConfig) and config.q_function == "mlp":
        from jaxq.deep_config import make_train_deep
        if q_star is not None or init_q is not None:
            raise ValueError("q_star and init_q are [S, A] tables; q_function='mlp' has none")
        return make_train_deep(config.deep_config())
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

    q: np.ndarray  # [S, A] float32 ([N, S, A] for learners="independent"; tiles: weights)
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
    if config.q_function == "mlp":  # a network: PQN or DQN, a DeepResult (deep_config.py)
        from jaxq.deep_config import train_mlp
        return train_mlp(config, q_star, init_q=init_q, progress=progress,
                         checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                         resume=resume, stop_after_chunks=stop_after_chunks,
                         before_run=before_run, compile_cache=compile_cache, callback=callback)
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
    init_c = compile_cache_lib.compile(jax.jit(learner.init).lower(key, hp, ep), compile_cache)
    if restored is None:
        carry = init_c(key, hp, ep)
    else:  # laid out as a fresh run's carry (sharded over devices, maybe processes)
        carry = ckpt.place(restored, init_c.output_shardings)
        history = restored.history
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
    run_s, t_prev = 0.0, time.perf_counter()

    def record(i: int, raw) -> None:
        """Wait for chunk ``i``'s metrics; add them to the history, the progress bar and
        the callback. Its time is the wall time since the previous chunk was recorded."""
        nonlocal history, run_s, t_prev
        raw = jax.device_get(raw)
        t_now = time.perf_counter()
        dt, t_prev = t_now - t_prev, t_now
        run_s += dt
        history = metrics_lib.append_history(history, metrics_lib.host_metrics(
            {k: np.atleast_1d(v) for k, v in raw.items()}, i, plan["chunk_iters"],
            config.num_envs, has_success))
        if bar is not None:
            bar.update(i + 1, dt, float(history["mean_return"][-1]))
        if callback is not None:
            row: dict[str, float] = {k: v[-1].item() for k, v in history.items()}
            row["episodes"] = int(np.sum(history["episodes_in_chunk"]))
            callback(i + 1, row)

    # Chunk i + 1 is dispatched before chunk i's metrics are read and recorded, so the
    # device does not wait for the host's bookkeeping (JAX dispatches asynchronously);
    # the chunks, and so the table, are the same. A chunk after which a checkpoint is due
    # is recorded and saved before the next one starts (its carry is donated to it).
    pending = None
    for i in range(start, end):
        carry, raw = chunk_c(carry, hp, ep)
        if pending is not None:
            record(*pending)
        pending = (i, raw)
        if checkpoint_every and ((i + 1) % checkpoint_every == 0 or i + 1 == plan["num_chunks"]):
            record(*pending)
            pending = None
            ckpt.save(checkpoint_path, carry, history, config_json)
            t_prev = time.perf_counter()  # saving is not training time
    if pending is not None:
        record(*pending)
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
