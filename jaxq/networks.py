"""The neural Q-function of PQN and DQN: an MLP (flax.linen) trained with optax, how it
acts, and its greedy evaluation.

``QNetwork`` maps a feature vector to A action values through ``depth`` hidden layers of
``width`` units, each ``Dense -> LayerNorm -> ReLU``. LayerNorm is what lets PQN drop the
target network and the replay buffer (Gallici et al. 2024 show it bounds the TD update's
instability); DQN can switch it off (``layer_norm=False``) to be the classic network.

Acting reuses the tabular learner's behaviour policy (``explore.BehaviourPolicy``):
the network's ``[N, A]`` output becomes A columns, and epsilon-greedy (random ties) or
Boltzmann pick from pre-drawn uniforms, so a network and a table explore identically.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxq import explore


class QNetwork(nn.Module):
    """``features [..., F] -> Q [..., A]``: ``depth`` x (Dense(width), LayerNorm, ReLU),
    then a linear head (no LayerNorm after it: action values are unbounded)."""

    num_actions: int
    width: int = 128
    depth: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.depth):
            x = nn.Dense(self.width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return nn.Dense(self.num_actions)(x)


def make_network(config: Any, num_actions: int) -> QNetwork:
    """The network a ``DeepConfig`` describes."""
    return QNetwork(num_actions, config.width, config.depth, config.layer_norm)


def make_optimizer(config: Any, hp: Any, num_updates: int) -> optax.GradientTransformation:
    """Gradient clipping by global norm, then RAdam (PQN's optimizer) with a constant or
    linearly decaying learning rate. Built at trace time from ``hp`` so the learning
    rate can be a vmapped array; the optimizer state's structure does not depend on it."""
    if config.lr_schedule == "linear":
        lr = optax.linear_schedule(hp.lr, hp.lr_end, max(1, int(num_updates)))
    else:
        lr = hp.lr
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.radam(lr))


def behaviour_policy(config: Any, iterations: int) -> explore.BehaviourPolicy:
    """The tabular learner's behaviour policy, its schedules counted in env-step
    iterations (``iterations``: all of the run's)."""
    steps = lambda frac: max(1, int(frac * iterations))  # noqa: E731
    return explore.BehaviourPolicy(
        config.exploration,
        explore.ScheduleSpec(config.epsilon_schedule, steps(config.epsilon_decay_fraction)),
        explore.ScheduleSpec(config.temperature_schedule, steps(1.0)))


def select_actions(acting: explore.Acting, q: jax.Array, words: jax.Array) -> jax.Array:
    """One action per row of ``q [N, A]`` from one uint32 word per row."""
    u_explore, u_action = explore.halves(words)
    return acting.select(explore.rows_to_columns(q), u_explore, u_action)


class Evaluation(NamedTuple):
    """Greedy evaluation: mean undiscounted return and length of the first episode of
    each of ``eval_episodes`` environments, and the share that ended within the cap."""

    mean_return: jax.Array
    mean_length: jax.Array
    finished: jax.Array


def greedy_rollouts(q_fn: Callable[[jax.Array], jax.Array], denv: Any, key: jax.Array,
                    num_episodes: int, cap: int) -> Evaluation:
    """Run ``num_episodes`` greedy episodes in parallel (random tie-breaks) until every
    one has ended or ``cap`` steps have passed; ``q_fn(features [N, F]) -> [N, A]``.
    A ``while_loop``, so an early-solved batch stops early (CartPole: 500 steps)."""
    env, params = denv.env, denv.params
    k_reset, key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(k_reset, num_episodes), params)
    zf, zb = jnp.zeros(num_episodes, jnp.float32), jnp.zeros(num_episodes, bool)

    def cond(c):
        return (c[0] < cap) & ~jnp.all(c[5])

    def body(c):
        t, key, obs, state, ret, done, length = c
        key, k_tie, k_env = jax.random.split(key, 3)
        cols = explore.rows_to_columns(q_fn(denv.features(obs)))
        u = explore.halves(jax.random.bits(k_tie, (num_episodes,), jnp.uint32))[1]
        action = explore.greedy(cols, u)
        obs, state, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, num_episodes), state, action, params)
        live = ~done
        ret = ret + jnp.where(live, r.astype(jnp.float32), 0.0)
        length = length + live.astype(jnp.int32)
        done = done | (live & (term | trunc))
        return t + 1, key, obs, state, ret, done, length

    c = (jnp.int32(0), key, obs, state, zf, zb, jnp.zeros(num_episodes, jnp.int32))
    _, _, _, _, ret, done, length = jax.lax.while_loop(cond, body, c)
    return Evaluation(jnp.mean(ret), jnp.mean(length.astype(jnp.float32)),
                      jnp.mean(done.astype(jnp.float32)))


def greedy_policy(network: QNetwork, params: Any, features: Callable) -> Callable:
    """``obs -> action`` (argmax, lowest index on ties): a trained network's greedy policy
    for one observation, jitted once."""
    @jax.jit
    def act(obs):
        return jnp.argmax(network.apply(params, features(jnp.asarray(obs))), axis=-1)
    return lambda obs: int(act(obs))
