"""DQN (Mnih et al. 2015) on device: a replay buffer as a fixed-size ring in the scan's
carry, a target network, optional Double DQN targets (van Hasselt et al. 2016).

One iteration::

    act      N envs one step, epsilon-greedy on the online network   explore.BehaviourPolicy
             (strategy async: on the actors' stale copy)
    store    the N transitions overwrite the ring's oldest step       replay_add
    learn    every train_every iterations once learning_starts env   sample_slots,
             steps are stored: one minibatch, Huber loss on          replay_gather, optax
             r + gamma (1 - terminated) Q_target(s', a*)
    target   tau * online + (1 - tau) * target every                 optax.incremental_update,
             target_update_every gradient steps (tau = 1: a copy)    optax.periodic_update

``a*`` is ``argmax Q_target(s')`` (DQN) or ``argmax Q_online(s')`` (Double DQN). Time-outs
bootstrap from the final observation (only ``terminated`` cuts the target).

The ring is env-major: ``[N, buffer_size // N]`` slots, a row per environment holding its
own last ``buffer_size // N`` steps (``buffer_size`` rounded down to a multiple of N), all
rows written at the same slot each iteration. A minibatch is stratified by environment:
``batch_size / N`` transitions from every environment's row, each at a slot drawn
uniformly over the filled ones. That is the split that makes strategy ``replicated``
exact, as PQN's minibatch of every environment does (``jaxq.pqn``): the environments are
divided over the devices, each device steps its own M = N / D and keeps their rows of the
ring (the buffer is sharded with the envs and never crosses devices), draws its share of
the minibatch from them and computes the gradient of its mean loss; one all-reduce
(``pmean``) gives every device the global minibatch's gradient, which each applies to its
identical online network, and the target network follows identically. Every random
number (actions, env steps, the minibatch's slots) is drawn for all N envs from keys
every device holds and sliced per device, so one device and D devices run the same
experiment, equal up to the order of float sums.

Strategy ``async`` (Mnih et al. 2016's bounded staleness) is ``replicated`` whose actors
act on a copy of the online parameters refreshed every ``sync_every`` iterations (at most
``sync_every - 1`` iterations old), while the learners compute targets and gradients with,
and update, the live parameters. The copy is part of the carry; ``sync_every = 1`` is
``replicated``.

``make_dqn_learner(config)`` cuts the run into ``init(key, hp) -> carry`` and
``chunk(carry, hp) -> (carry, metrics)`` (``jaxq.pqn.DeepLearner``), which
``jaxq.deep_run`` drives chunk by chunk with checkpoints; ``make_train_dqn(config)``
returns the pure ``train(key, hparams=None) -> DeepOutput``: ``init`` and one
``lax.scan`` over the chunks, jit-able and vmap-able over seeds and ``DeepHParams``
leaves (lr, gamma, epsilon, tau). The buffer lives in the carry, so a vmapped run has one
buffer per seed and a checkpoint holds it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec as P

from jaxq import networks
from jaxq.deep_config import DeepConfig, DeepEnv, resolve_env
from jaxq.pqn import (DeepLearner, DeepOutput, _devices, check_split, env_slicer,
                      make_acting, scan_chunks)
from jaxq.strategies import AXIS


class Replay(NamedTuple):
    """A ring of ``slots`` steps of each of M environments, env-major: ``obs``/``next_obs``
    ``[M, slots, ...]`` (next_obs: the final observation, before any auto-reset),
    ``action``, ``reward``, ``terminated`` ``[M, slots]``. Every env's step of an iteration
    goes to the same slot ``pos``; ``size`` is how many slots hold one (at most
    ``slots``). An env's transitions stay in its own row, so the ring splits over devices
    with the envs (its leading axis)."""

    obs: Any
    action: jax.Array
    reward: jax.Array
    next_obs: Any
    terminated: jax.Array
    pos: jax.Array
    size: jax.Array


def replay_init(slots: int, obs: Any) -> Replay:
    """An empty ring of ``slots`` steps of each env, observations shaped and typed like
    ``obs`` (one observation of each of the M envs, ``[M, ...]``; a pytree allowed)."""
    m = jax.tree.leaves(obs)[0].shape[0]
    z = lambda x: jnp.zeros((x.shape[0], slots) + x.shape[1:], x.dtype)  # noqa: E731
    return Replay(jax.tree.map(z, obs), jnp.zeros((m, slots), jnp.int32),
                  jnp.zeros((m, slots), jnp.float32), jax.tree.map(z, obs),
                  jnp.zeros((m, slots), bool), jnp.int32(0), jnp.int32(0))


def replay_add(buf: Replay, obs, action, reward, next_obs, terminated) -> Replay:
    """Write one step of every env (``[M, ...]`` each) at slot ``pos``, overwriting the
    oldest once the ring is full."""
    slots = buf.action.shape[1]
    put = lambda dst, src: dst.at[:, buf.pos].set(src.astype(dst.dtype))  # noqa: E731
    return Replay(jax.tree.map(put, buf.obs, obs), put(buf.action, action),
                  put(buf.reward, reward), jax.tree.map(put, buf.next_obs, next_obs),
                  put(buf.terminated, terminated), (buf.pos + 1) % slots,
                  jnp.minimum(buf.size + 1, slots))


def sample_slots(key: jax.Array, num_envs: int, per_env: int, filled: jax.Array) -> jax.Array:
    """``[num_envs, per_env]`` slots drawn uniformly, with replacement, from the ``filled``
    ones: ``per_env`` transitions of every env. Drawn for all N envs whatever the devices
    (each slices its own rows), so the minibatch does not depend on the split."""
    return jax.random.randint(key, (num_envs, per_env), 0, jnp.maximum(filled, 1))


def replay_gather(buf: Replay, slots: jax.Array) -> Replay:
    """The transitions at ``slots`` ``[M, b]`` (row i: slots of env i) as a flat minibatch
    ``[M * b, ...]``, env by env (``pos``/``size`` of the result are the buffer's)."""
    rows = jnp.arange(slots.shape[0])[:, None]
    take = lambda x: x[rows, slots].reshape((-1,) + x.shape[2:])  # noqa: E731
    return buf._replace(obs=jax.tree.map(take, buf.obs), action=take(buf.action),
                        reward=take(buf.reward), next_obs=jax.tree.map(take, buf.next_obs),
                        terminated=take(buf.terminated))


def replay_sample(buf: Replay, key: jax.Array, per_env: int) -> Replay:
    """``per_env`` transitions of each of the ring's envs, drawn uniformly with
    replacement from the filled slots (one device: ``sample_slots`` then
    ``replay_gather``)."""
    return replay_gather(buf, sample_slots(key, buf.action.shape[0], per_env, buf.size))


def update_target(online: Any, target: Any, gradient_steps: jax.Array, every: int,
                  tau) -> Any:
    """The target network after ``gradient_steps`` steps: moved to
    ``tau * online + (1 - tau) * target`` when ``gradient_steps`` is a multiple of
    ``every``, unchanged otherwise (optax's own two functions)."""
    return optax.periodic_update(optax.incremental_update(online, target, tau), target,
                                 gradient_steps, every)


def td_targets(q_next_target: jax.Array, q_next_online: jax.Array, reward: jax.Array,
               terminated: jax.Array, gamma, double_q: bool) -> jax.Array:
    """``r + gamma (1 - terminated) Q_target(s', a*)``, ``a*`` by the target network's
    values (DQN) or the online network's (Double DQN); ``q_next_*`` are ``[B, A]``."""
    chooser = q_next_online if double_q else q_next_target
    a_star = jnp.argmax(chooser, axis=-1)
    v = jnp.take_along_axis(q_next_target, a_star[:, None], axis=-1)[:, 0]
    return reward + gamma * jnp.where(terminated, 0.0, v)


class _Carry(NamedTuple):
    params: Any
    target: Any
    opt_state: Any
    actor: Any  # strategy "async": the parameters the actors act on (else None)
    buffer: Replay
    env_state: Any
    obs: Any
    ep_return: jax.Array
    ep_length: jax.Array
    t: jax.Array  # iterations done (N env steps each)
    updates: jax.Array  # gradient steps done
    chunk: jax.Array  # chunks done
    key: jax.Array
    k_eval: jax.Array  # the greedy evaluations' key (folded with the chunk number)


def make_train_dqn(config: DeepConfig, mesh: Mesh | None = None,
                   env: DeepEnv | None = None) -> Callable[..., DeepOutput]:
    """A pure ``train(key, hparams=None) -> DeepOutput`` for DQN (see the module
    docstring): ``make_dqn_learner``'s init and a scan over its chunks. ``mesh``
    overrides the devices of strategies ``replicated``/``async`` (default:
    ``config.num_devices`` of ``jax.devices()``); ``env`` a pre-built ``DeepEnv``."""
    return scan_chunks(make_dqn_learner(config, mesh, env))


def make_dqn_learner(config: DeepConfig, mesh: Mesh | None = None,
                     env: DeepEnv | None = None) -> DeepLearner:
    """DQN as ``init``/``chunk`` (``jaxq.pqn.DeepLearner``); the replay buffer and the
    target network are part of the carry, so a checkpoint holds them. Arguments as
    ``make_train_dqn``; ``num_envs`` not divisible by the devices is refused here,
    before anything is traced."""
    if not isinstance(config, DeepConfig):
        raise TypeError(f"config must be a DeepConfig, got {type(config).__name__}")
    if config.algo != "dqn":
        raise ValueError(f"make_train_dqn needs algo='dqn', got {config.algo!r}")
    denv = resolve_env(config) if env is None else env
    mesh = _devices(config, mesh)
    D = 1 if mesh is None else mesh.devices.size
    M = check_split(config, D)
    N = config.num_envs
    slots = config.buffer_size // N  # DeepConfig: buffer_size >= num_envs
    per_env = config.batch_size // N  # DeepConfig: batch_size divisible by num_envs
    local = env_slicer(D, M)
    on_mesh = mesh is not None
    stale = config.strategy == "async"
    plan = config.plan()
    network = networks.make_network(config, denv.num_actions)
    behaviour = networks.behaviour_policy(config, plan["iterations"])
    acting = make_acting(config, denv, network, behaviour, local, on_mesh)
    q_of = lambda p, obs: network.apply(p, denv.features(obs))  # noqa: E731
    # gradient steps in the run, for a decaying learning rate
    num_updates = max(1, (plan["iterations"] - config.learning_starts // N) // config.train_every)

    def optimizer(hp):
        return networks.make_optimizer(config, hp, num_updates)

    def init(key, hp) -> _Carry:
        k_eval, key = jax.random.split(key)
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = acting.reset(k_env)
        params = network.init(k_net, jnp.zeros((1, denv.obs_dim), jnp.float32))
        return _Carry(params, params, optimizer(hp).init(params), params if stale else None,
                      replay_init(slots, obs), env_state, obs, jnp.zeros(M, jnp.float32),
                      jnp.zeros(M, jnp.int32), jnp.int32(0), jnp.int32(0), jnp.int32(0), key,
                      k_eval)

    def gradient_step(hp, c: _Carry, key):
        # this device's envs' share of the global minibatch (all of it on one device)
        batch = replay_gather(c.buffer, local(sample_slots(key, N, per_env, c.buffer.size)))
        g = td_targets(q_of(c.target, batch.next_obs), q_of(c.params, batch.next_obs),
                       batch.reward * hp.reward_scale, batch.terminated, hp.gamma,
                       config.double_q)
        g = jax.lax.stop_gradient(g)

        def loss_fn(p):
            q = q_of(p, batch.obs)
            q_sa = jnp.take_along_axis(q, batch.action[:, None], axis=-1)[:, 0]
            return jnp.mean(optax.huber_loss(q_sa, g))

        loss, grads = jax.value_and_grad(loss_fn)(c.params)
        if on_mesh:  # equal shares: the mean of the devices' means is the global mean's
            loss, grads = jax.lax.pmean((loss, grads), AXIS)
        updates, opt_state = optimizer(hp).update(grads, c.opt_state, c.params)
        params = optax.apply_updates(c.params, updates)
        n = c.updates + 1
        target = update_target(params, c.target, n, config.target_update_every, hp.tau)
        return c._replace(params=params, target=target, opt_state=opt_state, updates=n), loss

    def iteration(hp, c: _Carry, _):
        if stale:  # Mnih et al. 2016: the actors' copy is refreshed every sync_every steps
            fresh = c.t % config.sync_every == 0
            c = c._replace(actor=jax.lax.cond(fresh, lambda: c.params, lambda: c.actor))
        acting_params = c.actor if stale else c.params
        key, k_act, k_env, k_batch = jax.random.split(c.key, 4)
        c, roll, stats = acting.step(c, hp, acting_params, k_act, k_env)
        buffer = replay_add(c.buffer, roll.obs, roll.action, roll.reward, roll.final_obs,
                            roll.terminated)
        c = c._replace(buffer=buffer, key=key)
        # every operand is replicated, so all devices take the same branch (the pmean's)
        learn = ((c.t * N >= config.learning_starts) & (c.t % config.train_every == 0)
                 & (buffer.size * N >= config.batch_size))
        c, loss = jax.lax.cond(learn, lambda: gradient_step(hp, c, k_batch),
                               lambda: (c, jnp.float32(jnp.nan)))
        return c, (stats, loss, learn)

    def chunk(c: _Carry, hp):
        c, (stats, loss, learned) = jax.lax.scan(
            lambda c, x: iteration(hp, c, x), c, None, length=plan["chunk_iters"])
        c = c._replace(chunk=c.chunk + 1)
        n_learn = jnp.sum(learned)
        mean_loss = jnp.where(n_learn > 0,
                              jnp.sum(jnp.where(learned, loss, 0.0)) / jnp.maximum(n_learn, 1),
                              jnp.nan)
        return c, {**acting.report(c.params, c.k_eval, c.chunk, stats), "loss": mean_loss,
                   "gradient_steps": c.updates}

    if on_mesh:
        # per-env leaves (the ring's rows among them) split over the devices along their
        # first axis (global [N, ...]), the rest replicated
        ring = Replay(P(AXIS), P(AXIS), P(AXIS), P(AXIS), P(AXIS), P(), P())
        spec = _Carry(P(), P(), P(), P() if stale else None, ring, P(AXIS), P(AXIS), P(AXIS),
                      P(AXIS), P(), P(), P(), P(), P())
        init = jax.shard_map(init, mesh=mesh, in_specs=(P(), P()), out_specs=spec,
                             check_vma=False)
        chunk = jax.shard_map(chunk, mesh=mesh, in_specs=(spec, P()), out_specs=(spec, P()),
                              check_vma=False)

    def output(c: _Carry, metrics) -> DeepOutput:
        return DeepOutput(c.params, c.opt_state, metrics, c.target)

    return DeepLearner(config, init, chunk, output, plan["num_chunks"], mesh)
