"""DQN (Mnih et al. 2015) on device: a replay buffer as a fixed-size ring in the scan's
carry, a target network, optional Double DQN targets (van Hasselt et al. 2016).

One iteration::

    act      N envs one step, epsilon-greedy on the online network   explore.BehaviourPolicy
    store    the N transitions overwrite the ring's oldest            replay_add
    learn    every train_every iterations once learning_starts env   replay_sample, optax
             steps are stored: one minibatch, Huber loss on
             r + gamma (1 - terminated) Q_target(s', a*)
    target   tau * online + (1 - tau) * target every                 optax.incremental_update,
             target_update_every gradient steps (tau = 1: a copy)    optax.periodic_update

``a*`` is ``argmax Q_target(s')`` (DQN) or ``argmax Q_online(s')`` (Double DQN). Time-outs
bootstrap from the final observation (only ``terminated`` cuts the target).

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

from jaxq import networks
from jaxq.deep_config import DeepConfig, DeepEnv, resolve_env
from jaxq.pqn import DeepLearner, DeepOutput, scan_chunks


class Replay(NamedTuple):
    """A ring of ``capacity`` transitions: ``obs``/``next_obs`` ``[capacity, ...]``
    (next_obs: the final observation, before any auto-reset), ``action``, ``reward``,
    ``terminated`` ``[capacity]``; ``pos`` is the slot the next transition goes to and
    ``size`` how many slots hold one (at most ``capacity``)."""

    obs: Any
    action: jax.Array
    reward: jax.Array
    next_obs: Any
    terminated: jax.Array
    pos: jax.Array
    size: jax.Array


def replay_init(capacity: int, obs_example: Any) -> Replay:
    """An empty ring whose observations are shaped and typed like ``obs_example`` (one
    observation, a pytree allowed)."""
    z = lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype)  # noqa: E731
    obs = jax.tree.map(z, obs_example)
    return Replay(obs, jnp.zeros(capacity, jnp.int32), jnp.zeros(capacity, jnp.float32),
                  jax.tree.map(z, obs_example), jnp.zeros(capacity, bool), jnp.int32(0),
                  jnp.int32(0))


def replay_add(buf: Replay, obs, action, reward, next_obs, terminated) -> Replay:
    """Write a batch of n transitions (n <= capacity) at ``pos, pos + 1, ...`` modulo the
    capacity, overwriting the oldest once the ring is full."""
    capacity = buf.action.shape[0]
    n = action.shape[0]
    idx = (buf.pos + jnp.arange(n, dtype=jnp.int32)) % capacity
    put = lambda dst, src: dst.at[idx].set(src)  # noqa: E731
    return Replay(jax.tree.map(put, buf.obs, obs), put(buf.action, action.astype(jnp.int32)),
                  put(buf.reward, reward.astype(jnp.float32)),
                  jax.tree.map(put, buf.next_obs, next_obs), put(buf.terminated, terminated),
                  (buf.pos + n) % capacity, jnp.minimum(buf.size + n, capacity))


def replay_sample(buf: Replay, key: jax.Array, batch_size: int) -> Replay:
    """``batch_size`` transitions drawn uniformly, with replacement, from the filled
    slots (``pos``/``size`` of the result are the buffer's)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.size, 1))
    take = lambda x: x[idx]  # noqa: E731
    return buf._replace(obs=jax.tree.map(take, buf.obs), action=buf.action[idx],
                        reward=buf.reward[idx], next_obs=jax.tree.map(take, buf.next_obs),
                        terminated=buf.terminated[idx])


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


def make_train_dqn(config: DeepConfig, env: DeepEnv | None = None) -> Callable[..., DeepOutput]:
    """A pure ``train(key, hparams=None) -> DeepOutput`` for DQN (see the module
    docstring): ``make_dqn_learner``'s init and a scan over its chunks; ``env`` a
    pre-built ``DeepEnv``."""
    return scan_chunks(make_dqn_learner(config, env))


def make_dqn_learner(config: DeepConfig, env: DeepEnv | None = None) -> DeepLearner:
    """DQN as ``init``/``chunk`` (``jaxq.pqn.DeepLearner``); the replay buffer and the
    target network are part of the carry, so a checkpoint holds them."""
    if not isinstance(config, DeepConfig):
        raise TypeError(f"config must be a DeepConfig, got {type(config).__name__}")
    if config.algo != "dqn":
        raise ValueError(f"make_train_dqn needs algo='dqn', got {config.algo!r}")
    denv = resolve_env(config) if env is None else env
    N = config.num_envs
    plan = config.plan()
    network = networks.make_network(config, denv.num_actions)
    behaviour = networks.behaviour_policy(config, plan["iterations"])
    cap = int(min(config.eval_max_steps, denv.time_limit))
    step_env = jax.vmap(denv.env.step, in_axes=(0, 0, 0, None))
    q_of = lambda p, obs: network.apply(p, denv.features(obs))  # noqa: E731
    # gradient steps in the run, for a decaying learning rate
    num_updates = max(1, (plan["iterations"] - config.learning_starts // N) // config.train_every)

    def optimizer(hp):
        return networks.make_optimizer(config, hp, num_updates)

    def init(key, hp) -> _Carry:
        k_eval, key = jax.random.split(key)
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(denv.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, N), denv.params)
        params = network.init(k_net, jnp.zeros((1, denv.obs_dim), jnp.float32))
        buffer = replay_init(config.buffer_size, jax.tree.map(lambda x: x[0], obs))
        return _Carry(params, params, optimizer(hp).init(params), buffer, env_state, obs,
                      jnp.zeros(N, jnp.float32), jnp.zeros(N, jnp.int32), jnp.int32(0),
                      jnp.int32(0), jnp.int32(0), key, k_eval)

    def gradient_step(hp, c: _Carry, key):
        batch = replay_sample(c.buffer, key, config.batch_size)
        g = td_targets(q_of(c.target, batch.next_obs), q_of(c.params, batch.next_obs),
                       batch.reward * hp.reward_scale, batch.terminated, hp.gamma,
                       config.double_q)
        g = jax.lax.stop_gradient(g)

        def loss_fn(p):
            q = q_of(p, batch.obs)
            q_sa = jnp.take_along_axis(q, batch.action[:, None], axis=-1)[:, 0]
            return jnp.mean(optax.huber_loss(q_sa, g))

        loss, grads = jax.value_and_grad(loss_fn)(c.params)
        updates, opt_state = optimizer(hp).update(grads, c.opt_state, c.params)
        params = optax.apply_updates(c.params, updates)
        n = c.updates + 1
        target = update_target(params, c.target, n, config.target_update_every, hp.tau)
        return c._replace(params=params, target=target, opt_state=opt_state, updates=n), loss

    def iteration(hp, c: _Carry, _):
        key, k_act, k_env, k_batch = jax.random.split(c.key, 4)
        acting = behaviour.at(hp, c.t)
        a = networks.select_actions(acting, q_of(c.params, c.obs),
                                    jax.random.bits(k_act, (N,), jnp.uint32))
        obs, env_state, r, term, trunc, info = step_env(jax.random.split(k_env, N),
                                                        c.env_state, a, denv.params)
        r = r.astype(jnp.float32)
        done = term | trunc
        buffer = replay_add(c.buffer, c.obs, a, r, info["final_observation"], term)
        ep_return, ep_length = c.ep_return + r, c.ep_length + 1
        stats = (jnp.sum(done, dtype=jnp.int32), jnp.sum(jnp.where(done, ep_return, 0.0)),
                 jnp.sum(jnp.where(done, ep_length, 0).astype(jnp.float32)))
        c = c._replace(buffer=buffer, env_state=env_state, obs=obs,
                       ep_return=jnp.where(done, 0.0, ep_return),
                       ep_length=jnp.where(done, 0, ep_length), t=c.t + 1, key=key)
        learn = ((c.t * N >= config.learning_starts) & (c.t % config.train_every == 0)
                 & (buffer.size >= config.batch_size))
        c, loss = jax.lax.cond(learn, lambda: gradient_step(hp, c, k_batch),
                               lambda: (c, jnp.float32(jnp.nan)))
        return c, (stats, loss, learn)

    def chunk(c: _Carry, hp):
        c, ((episodes, ret, length), loss, learned) = jax.lax.scan(
            lambda c, x: iteration(hp, c, x), c, None, length=plan["chunk_iters"])
        c = c._replace(chunk=c.chunk + 1)
        ev = networks.greedy_rollouts(lambda f: network.apply(c.params, f), denv,
                                      jax.random.fold_in(c.k_eval, c.chunk),
                                      config.eval_episodes, cap)
        n_learn = jnp.sum(learned)
        mean_loss = jnp.where(n_learn > 0,
                              jnp.sum(jnp.where(learned, loss, 0.0)) / jnp.maximum(n_learn, 1),
                              jnp.nan)
        return c, {"episodes": jnp.sum(episodes), "return_sum": jnp.sum(ret),
                   "length_sum": jnp.sum(length), "loss": mean_loss,
                   "eval_return": ev.mean_return, "eval_length": ev.mean_length,
                   "eval_finished": ev.finished, "gradient_steps": c.updates}

    def output(c: _Carry, metrics) -> DeepOutput:
        return DeepOutput(c.params, c.opt_state, metrics, c.target)

    return DeepLearner(config, init, chunk, output, plan["num_chunks"])
