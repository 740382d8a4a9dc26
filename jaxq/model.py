"""The exact tabular model of an environment, and dynamic programming on it.

``tabular_model`` tabulates an environment's ``outcomes`` function into sparse
``[S, A, K]`` arrays (K = most outcomes of one state-action), so it builds for a
16.7M-state maze where a dense ``S x A x S`` array could never exist. Value iteration
and policy evaluation run on these arrays under ``jit``: they are the ground truth every
learner is checked against.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.envs.base import TabularEnvironment, TabularParams


class TabularModel(NamedTuple):
    """Sparse exact dynamics.

    ``prob[s, a, k]`` is the probability of outcome k, landing in ``next_state[s, a, k]``
    with ``reward[s, a, k]`` and ``terminated[s, a, k]``. Duplicate next states are
    allowed: P(s' | s, a) is the sum of ``prob`` over entries with that next state, and
    the expected reward is ``sum_k prob * reward``. ``initial`` is the start
    distribution ``[S]``.
    """

    next_state: jax.Array  # int32 [S, A, K]
    prob: jax.Array  # float32 [S, A, K]
    reward: jax.Array  # float32 [S, A, K]
    terminated: jax.Array  # bool [S, A, K]
    initial: jax.Array  # float32 [S]

    @property
    def num_states(self) -> int:
        return self.prob.shape[0]

    @property
    def num_actions(self) -> int:
        return self.prob.shape[1]

    def expected_reward(self) -> jax.Array:
        """R(s, a) = sum_k prob * reward, shape ``[S, A]``."""
        return jnp.sum(self.prob * self.reward, axis=-1)

    def dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(P[S,A,S'], R[S,A], P_term[S,A,S'])`` for small models (tests, plots).

        ``P_term[s, a, s']`` is the probability of landing in s' *and* terminating.
        """
        s, a, _ = self.prob.shape
        ns = np.asarray(self.next_state)
        pr = np.asarray(self.prob, dtype=np.float64)
        term = np.asarray(self.terminated)
        p = np.zeros((s, a, s))
        pt = np.zeros((s, a, s))
        si, ai, _ = np.indices(ns.shape)
        np.add.at(p, (si, ai, ns), pr)
        np.add.at(pt, (si, ai, ns), pr * term)
        r = (pr * np.asarray(self.reward, dtype=np.float64)).sum(-1)
        return p, r, pt


def tabular_model(
    env: TabularEnvironment, params: TabularParams | None = None, batch_size: int = 1 << 16
) -> TabularModel:
    """Tabulate ``env.outcomes`` over every (state, action): the exact sparse model.

    States are processed in batches of ``batch_size`` so peak memory stays at the size of
    the result, whatever the number of states.
    """
    if not isinstance(env, TabularEnvironment):
        raise TypeError(
            f"tabular_model needs a jaxq tabular environment, got {type(env).__name__}; "
            "wrap a gymnax environment with jaxq.envs.discretize first"
        )
    if params is None:
        params = env.default_params
    return _tabulate(env, params, int(batch_size))


@partial(jax.jit, static_argnums=(0, 2))
def _tabulate(env: TabularEnvironment, params, batch_size: int) -> TabularModel:
    actions = jnp.arange(env.num_actions, dtype=jnp.int32)

    def row(s):
        o = jax.vmap(lambda a: env.outcomes(s, a, params))(actions)
        return (
            o.next_state.astype(jnp.int32),
            o.prob.astype(jnp.float32),
            o.reward.astype(jnp.float32),
            o.terminated.astype(bool),
        )

    states = jnp.arange(env.num_states, dtype=jnp.int32)
    ns, p, r, t = jax.lax.map(row, states, batch_size=min(batch_size, env.num_states))
    return TabularModel(ns, p, r, t, env.initial_distribution(params).astype(jnp.float32))


def _bellman_terms(model: TabularModel, gamma):
    """Expected reward and discounted continuation weights (zero where terminated)."""
    gamma = jnp.asarray(gamma, jnp.float32)
    cont = model.prob * gamma * (~model.terminated)
    return model.expected_reward(), cont


def _check_gamma(gamma) -> None:
    g = float(gamma)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def value_iteration(
    model: TabularModel, gamma: float, tol: float = 1e-6, max_iters: int = 1_000_000
) -> jax.Array:
    """Q* by value iteration: Q(s,a) = sum_k p_k [r_k + gamma (1 - term_k) max_a' Q(s'_k, a')].

    Stops when the largest change of one sweep is at most ``tol`` (checked every sweep
    inside one compiled ``while_loop``), or after ``max_iters`` sweeps. With gamma = 1 it
    converges only where every policy reaches termination (or the optimal one does and
    the others are penalised); otherwise ``max_iters`` bounds it.
    """
    _check_gamma(gamma)
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    return _value_iteration(model, jnp.float32(gamma), jnp.float32(tol), int(max_iters))


@partial(jax.jit, static_argnums=(3,))
def _value_iteration(model: TabularModel, gamma, tol, max_iters: int) -> jax.Array:
    r, cont = _bellman_terms(model, gamma)
    ns = model.next_state

    def sweep(q):
        v = jnp.max(q, axis=1)
        return r + jnp.sum(cont * v[ns], axis=-1)

    def cond(carry):
        _, delta, i = carry
        return jnp.logical_and(delta > tol, i < max_iters)

    def body(carry):
        q, _, i = carry
        q_new = sweep(q)
        return q_new, jnp.max(jnp.abs(q_new - q)), i + 1

    q0 = jnp.zeros(r.shape, jnp.float32)
    q, _, _ = jax.lax.while_loop(cond, body, (q0, jnp.float32(jnp.inf), 0))
    return q


def policy_evaluation(
    model: TabularModel, policy: jax.Array, gamma: float, tol: float = 1e-6,
    max_iters: int = 1_000_000,
) -> jax.Array:
    """Q^pi of a policy given as probabilities ``[S, A]`` or greedy actions ``[S]``."""
    _check_gamma(gamma)
    policy = jnp.asarray(policy)
    if policy.ndim == 1:
        policy = jax.nn.one_hot(policy, model.num_actions, dtype=jnp.float32)
    if policy.shape != (model.num_states, model.num_actions):
        raise ValueError(
            f"policy must have shape [{model.num_states}] or "
            f"[{model.num_states}, {model.num_actions}], got {tuple(policy.shape)}"
        )
    return _policy_evaluation(
        model, policy.astype(jnp.float32), jnp.float32(gamma), jnp.float32(tol), int(max_iters)
    )


@partial(jax.jit, static_argnums=(4,))
def _policy_evaluation(model, policy, gamma, tol, max_iters: int):
    r, cont = _bellman_terms(model, gamma)
    ns = model.next_state

    def body(carry):
        q, _, i = carry
        v = jnp.sum(policy * q, axis=1)
        q_new = r + jnp.sum(cont * v[ns], axis=-1)
        return q_new, jnp.max(jnp.abs(q_new - q)), i + 1

    cond = lambda c: jnp.logical_and(c[1] > tol, c[2] < max_iters)  # noqa: E731
    q, _, _ = jax.lax.while_loop(cond, body, (jnp.zeros_like(r), jnp.float32(jnp.inf), 0))
    return q


def start_value(model: TabularModel, q: jax.Array) -> jax.Array:
    """Expected value of the start distribution under Q: sum_s mu(s) max_a Q(s, a)."""
    return jnp.sum(model.initial * jnp.max(q, axis=1))
