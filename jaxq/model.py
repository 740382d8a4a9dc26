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
    """Expected reward and discounted continuation weights (zero where terminated).

    Computed once, outside the sweep loop, so a sweep is one gather and one fused
    multiply-add-reduce over the model's arrays.
    """
    gamma = jnp.asarray(gamma, jnp.float32)
    cont = model.prob * gamma * (~model.terminated)
    return model.expected_reward(), cont


def _check_gamma(gamma) -> None:
    g = float(gamma)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


# Relative changes below a few float32 ulps are rounding noise: a sweep can flip an entry
# by one ulp forever, so a tolerance finer than this would never be met.
FLOAT32_RESOLUTION = 4 * float(np.finfo(np.float32).eps)  # 4.8e-7


def _check_tol(tol, max_iters) -> tuple[float, int]:
    tol = float(tol)
    if not tol > 0:  # also rejects NaN
        raise ValueError(f"tol must be > 0, got {tol}")
    if isinstance(max_iters, bool) or int(max_iters) != max_iters or max_iters < 1:
        raise ValueError(f"max_iters must be a positive int, got {max_iters!r}")
    return max(tol, FLOAT32_RESOLUTION), int(max_iters)


CHECK_EVERY = 8  # sweeps per convergence check


def _solve(sweep, q0, tol, max_iters: int):
    """Iterate ``q <- sweep(q)`` until a sweep changes no entry by more than ``tol * |entry|``.

    Returns ``(q, sweeps, excess)``; ``excess <= 0`` means converged. One compiled
    ``while_loop``. It is checked every ``CHECK_EVERY`` sweeps: on CPU it is a
    separate pass over Q that would otherwise double the cost of a sweep, and a few extra
    sweeps past convergence are harmless.
    """

    def cond(carry):
        _, excess, i = carry
        return jnp.logical_and(excess > 0, i < max_iters)

    def body(carry):
        q, _, i = carry
        q = jax.lax.fori_loop(0, CHECK_EVERY - 1, lambda _, q: sweep(q), q)
        q_new = sweep(q)
        excess = jnp.max(jnp.abs(q_new - q) - tol * jnp.abs(q_new))
        return q_new, excess, i + CHECK_EVERY

    return jax.lax.while_loop(cond, body, (q0, jnp.float32(jnp.inf), jnp.int32(0)))


def value_iteration(
    model: TabularModel, gamma: float, tol: float = 1e-6, max_iters: int = 1_000_000
) -> jax.Array:
    """Q* by value iteration: Q(s,a) = sum_k p_k [r_k + gamma (1 - term_k) max_a' Q(s'_k, a')].

    With gamma = 1 it converges only where every policy reaches termination (or the
    optimal one does and the others are penalised); otherwise ``max_iters`` bounds it.

    Convergence is per entry and relative: iteration stops once one sweep changes no
    entry of Q by more than ``tol`` times that entry's magnitude (checked every
    ``CHECK_EVERY`` = 8 sweeps), or after ``max_iters`` sweeps (rounded up to a multiple
    of 8). Relative, because under discounting values span many orders of magnitude:
    in a 1024x1024 maze with gamma = 0.99 the start's value is at most 0.99**2045 ~ 1e-9, and an
    absolute tolerance (or one relative to max |Q|) would stop while far states still
    read 0 and their greedy actions are arbitrary. Per entry, a value is only final once
    it is known to its own precision. The usual bound still holds at the value scale:
    max |Q - Q*| <= gamma / (1 - gamma) * tol * max |Q|. Computation is float32, so a
    ``tol`` below ``FLOAT32_RESOLUTION`` (4 float32 eps, 4.8e-7) is raised to it: smaller
    changes are rounding noise and may never stop.
    """
    _check_gamma(gamma)
    tol, max_iters = _check_tol(tol, max_iters)
    return _value_iteration(model, jnp.float32(gamma), jnp.float32(tol), max_iters)[0]


@partial(jax.jit, static_argnums=(3,))
def _value_iteration(model: TabularModel, gamma, tol, max_iters: int):
    """``(Q*, sweeps, excess)``: value iteration with its diagnostics."""
    r, cont = _bellman_terms(model, gamma)
    ns = model.next_state

    def sweep(q):
        return r + jnp.sum(cont * jnp.max(q, axis=1)[ns], axis=-1)

    return _solve(sweep, jnp.zeros_like(r), tol, max_iters)


def policy_evaluation(
    model: TabularModel, policy: jax.Array, gamma: float, tol: float = 1e-6,
    max_iters: int = 1_000_000,
) -> jax.Array:
    """Q^pi of a policy given as probabilities ``[S, A]`` or greedy actions ``[S]``.

    ``tol`` and ``max_iters`` mean what they mean in ``value_iteration``.
    """
    _check_gamma(gamma)
    tol, max_iters = _check_tol(tol, max_iters)
    policy = jnp.asarray(policy)
    if policy.ndim == 1:
        policy = jax.nn.one_hot(policy, model.num_actions, dtype=jnp.float32)
    if policy.shape != (model.num_states, model.num_actions):
        raise ValueError(
            f"policy must have shape [{model.num_states}] or "
            f"[{model.num_states}, {model.num_actions}], got {tuple(policy.shape)}"
        )
    return _policy_evaluation(
        model, policy.astype(jnp.float32), jnp.float32(gamma), jnp.float32(tol), max_iters
    )[0]


@partial(jax.jit, static_argnums=(4,))
def _policy_evaluation(model, policy, gamma, tol, max_iters: int):
    r, cont = _bellman_terms(model, gamma)
    ns = model.next_state

    def sweep(q):
        return r + jnp.sum(cont * jnp.sum(policy * q, axis=1)[ns], axis=-1)

    return _solve(sweep, jnp.zeros_like(r), tol, max_iters)


def start_value(model: TabularModel, q: jax.Array) -> jax.Array:
    """sum_s mu(s) max_a Q(s, a): V*(start) for Q = Q*. (For Q = Q^pi this is the value
    of the improved policy; use ``policy_start_value`` for pi itself.)"""
    return jnp.sum(model.initial * jnp.max(q, axis=1))


def greedy_policy(q: jax.Array) -> jax.Array:
    """The greedy policy of ``q`` ``[..., S, A]`` as probabilities, ties split uniformly
    (as jaxq's learners act), for ``policy_evaluation`` / ``policy_start_value``."""
    q = jnp.asarray(q)
    ties = (q == jnp.max(q, axis=-1, keepdims=True)).astype(jnp.float32)
    return ties / jnp.sum(ties, axis=-1, keepdims=True)


def policy_start_value(model: TabularModel, policy: jax.Array, gamma: float,
                       tol: float = 1e-6) -> jax.Array:
    """V^pi(start) = sum_s mu(s) sum_a pi(a|s) Q^pi(s, a), exactly, for a policy given as
    greedy actions ``[S]`` or probabilities ``[S, A]``."""
    policy = jnp.asarray(policy)
    probs = (jax.nn.one_hot(policy, model.num_actions, dtype=jnp.float32) if policy.ndim == 1
             else policy.astype(jnp.float32))
    q_pi = policy_evaluation(model, probs, gamma, tol)
    return jnp.sum(model.initial * jnp.sum(probs * q_pi, axis=1))
