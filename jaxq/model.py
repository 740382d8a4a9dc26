"""The exact tabular model of an environment, and dynamic programming on it.

``tabular_model`` tabulates an environment's ``outcomes`` function into sparse
``[S, A, K]`` arrays (K = most outcomes of one state-action), so it builds for a
16.7M-state maze where a dense ``S x A x S`` array could never exist. Value iteration
and policy evaluation run on these arrays under ``jit``: they are the ground truth every
learner is checked against.

Action masks. The model carries ``valid[s, a]`` (the env's ``valid_actions``; all True
for envs without a mask) and every function here honours it, with the convention of
``jaxq.explore.mask_columns``: an invalid action is never greedy and never a bootstrap
maximum, and its cell of Q* (or Q^pi) is ``-inf``. A ground truth that maximised over
invalid actions would be silently wrong wherever an invalid action looks better than
the valid ones. A state with no valid action at all is a bug of the environment:
``tabular_model`` rejects it; a hand-built model with such a row gets value 0 there (as
if the episode ended), so nothing turns into NaN.
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
    distribution ``[S]``. ``valid[s, a]`` says whether action a may be taken in s (None,
    the default for hand-built models, means every action is valid); the dynamics of
    invalid actions may be anything, they are never used.
    """

    next_state: jax.Array  # int32 [S, A, K]
    prob: jax.Array  # float32 [S, A, K]
    reward: jax.Array  # float32 [S, A, K]
    terminated: jax.Array  # bool [S, A, K]
    initial: jax.Array  # float32 [S]
    valid: jax.Array | None = None  # bool [S, A]; None: all valid

    @property
    def num_states(self) -> int:
        return self.prob.shape[0]

    @property
    def num_actions(self) -> int:
        return self.prob.shape[1]

    def valid_mask(self) -> jax.Array:
        """``valid`` as a bool ``[S, A]`` array (all True where the model has none)."""
        if self.valid is None:
            return jnp.ones(self.prob.shape[:2], bool)
        return jnp.asarray(self.valid, bool)

    def expected_reward(self) -> jax.Array:
        """R(s, a) = sum_k prob * reward, shape ``[S, A]``."""
        return jnp.sum(self.prob * self.reward, axis=-1)

    def dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(P[S,A,S'], R[S,A], P_term[S,A,S'])`` for small models (tests, plots).

        ``P_term[s, a, s']`` is the probability of landing in s' *and* terminating.
        Invalid actions keep whatever dynamics the env gives them: mask with ``valid``.
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
    the result, whatever the number of states. ``valid`` comes from the env's
    ``valid_actions`` where it has an action mask (all True otherwise); a state without
    any valid action is a ValueError, since no value could be right for it.
    """
    if not isinstance(env, TabularEnvironment):
        raise TypeError(
            f"tabular_model needs a jaxq tabular environment, got {type(env).__name__}; "
            "wrap a gymnax environment with jaxq.envs.discretize first"
        )
    if params is None:
        params = env.default_params
    model = _tabulate(env, params, int(batch_size))
    if env.has_action_mask:
        empty = ~np.asarray(model.valid).any(axis=1)
        if empty.any():
            raise ValueError(
                f"{env.name}: state {int(np.argmax(empty))} has no valid action "
                f"({int(empty.sum())} such state(s)); every state needs at least one")
    return model


@partial(jax.jit, static_argnums=(0, 2))
def _tabulate(env: TabularEnvironment, params, batch_size: int) -> TabularModel:
    actions = jnp.arange(env.num_actions, dtype=jnp.int32)

    def row(s):
        o = jax.vmap(lambda a: env.outcomes(s, a, params))(actions)
        if env.has_action_mask:
            valid = jnp.stack([jnp.asarray(v, bool) for v in env.valid_actions(s, params)])
        else:
            valid = jnp.ones(env.num_actions, bool)
        return (
            o.next_state.astype(jnp.int32),
            o.prob.astype(jnp.float32),
            o.reward.astype(jnp.float32),
            o.terminated.astype(bool),
            valid,
        )

    states = jnp.arange(env.num_states, dtype=jnp.int32)
    ns, p, r, t, v = jax.lax.map(row, states, batch_size=min(batch_size, env.num_states))
    return TabularModel(ns, p, r, t, env.initial_distribution(params).astype(jnp.float32), v)


def _bellman_terms(model: TabularModel, gamma, mask_reward: bool):
    """Expected reward and discounted continuation weights (zero where terminated).

    Computed once, outside the sweep loop, so a sweep is one gather and one fused
    multiply-add-reduce over the model's arrays. With ``mask_reward`` the reward of an
    invalid action is -inf, so a sweep keeps those cells at -inf without reading the
    mask again.
    """
    gamma = jnp.asarray(gamma, jnp.float32)
    cont = model.prob * gamma * (~model.terminated)
    r = model.expected_reward()
    if mask_reward:
        r = jnp.where(model.valid_mask(), r, -jnp.inf)
    return r, cont


def _state_values(q_masked: jax.Array) -> jax.Array:
    """V(s) = max over valid actions of a Q holding -inf in invalid cells; 0 for a
    state without any valid action (so that ``0 * V`` never makes NaN)."""
    v = jnp.max(q_masked, axis=1)
    return jnp.where(v == -jnp.inf, 0.0, v)


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
        # equal entries (the -inf of invalid actions included: -inf - -inf is NaN) are done
        excess = jnp.max(jnp.where(q_new == q, 0.0, jnp.abs(q_new - q) - tol * jnp.abs(q_new)))
        return q_new, excess, i + CHECK_EVERY

    return jax.lax.while_loop(cond, body, (q0, jnp.float32(jnp.inf), jnp.int32(0)))


def value_iteration(
    model: TabularModel, gamma: float, tol: float = 1e-6, max_iters: int = 1_000_000
) -> jax.Array:
    """Q* by value iteration: Q(s,a) = sum_k p_k [r_k + gamma (1 - term_k) max_a' Q(s'_k, a')].

    The max runs over the valid actions a' of s'_k only (``model.valid``), and Q* is -inf
    in invalid cells, as ``jaxq.explore.mask_columns`` treats them: compare a learned Q
    with it on the finite cells.

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
    r, cont = _bellman_terms(model, gamma, mask_reward=True)
    ns = model.next_state

    def sweep(q):
        return r + jnp.sum(cont * _state_values(q)[ns], axis=-1)

    return _solve(sweep, jnp.where(r == -jnp.inf, -jnp.inf, 0.0), tol, max_iters)


def policy_evaluation(
    model: TabularModel, policy: jax.Array, gamma: float, tol: float = 1e-6,
    max_iters: int = 1_000_000,
) -> jax.Array:
    """Q^pi of a policy given as probabilities ``[S, A]`` or greedy actions ``[S]``.

    ``tol`` and ``max_iters`` mean what they mean in ``value_iteration``. Q^pi is -inf in
    invalid cells, as Q* is. A policy must put no probability on an invalid action
    (``model.valid`` False): that is a ValueError naming the state, not a renormalisation,
    since a policy that wants an action the env forbids is a bug to surface (e.g. the
    greedy policy of a learned Q without its mask: use ``greedy_policy(q, model.valid)``).
    Under ``jit``, where the values cannot be checked, such a policy gives an all-NaN Q^pi.
    """
    _check_gamma(gamma)
    tol, max_iters = _check_tol(tol, max_iters)
    policy = _as_probs(model, policy)
    return _policy_evaluation(model, policy, jnp.float32(gamma), jnp.float32(tol), max_iters)[0]


def _as_probs(model: TabularModel, policy) -> jax.Array:
    """A policy as float32 probabilities ``[S, A]``, its shape checked and its support
    checked against the mask where its values are known (not under ``jit``)."""
    policy = jnp.asarray(policy)
    if policy.ndim == 1:
        policy = jax.nn.one_hot(policy, model.num_actions, dtype=jnp.float32)
    if policy.shape != (model.num_states, model.num_actions):
        raise ValueError(
            f"policy must have shape [{model.num_states}] or "
            f"[{model.num_states}, {model.num_actions}], got {tuple(policy.shape)}"
        )
    policy = policy.astype(jnp.float32)
    try:
        bad = np.asarray(_off_mask(policy, model.valid_mask()))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        # traced (under jit): _policy_evaluation returns NaN instead
        return policy
    if bad.any():
        s = int(np.argmax(bad))
        raise ValueError(
            f"policy puts probability on an invalid action in state {s} ({int(bad.sum())} "
            f"state(s)): actions {np.flatnonzero(~np.asarray(model.valid_mask()[s])).tolist()} "
            "are masked there; build greedy policies with greedy_policy(q, model.valid)")
    return policy


def _off_mask(policy: jax.Array, valid: jax.Array) -> jax.Array:
    """bool ``[S]``: states where ``policy`` puts probability on an invalid action."""
    return jnp.any((policy != 0) & ~valid, axis=1)


@partial(jax.jit, static_argnums=(4,))
def _policy_evaluation(model, policy, gamma, tol, max_iters: int):
    # Invalid cells are iterated with their real rewards (one-step look-aheads of the
    # valid values, so they converge with them) and set to -inf at the end: policy * q
    # then never meets 0 * -inf.
    r, cont = _bellman_terms(model, gamma, mask_reward=False)
    ns = model.next_state
    valid = model.valid_mask()

    def sweep(q):
        return r + jnp.sum(cont * jnp.sum(policy * q, axis=1)[ns], axis=-1)

    q, sweeps, excess = _solve(sweep, jnp.zeros_like(r), tol, max_iters)
    q = jnp.where(valid, q, -jnp.inf)
    q = jnp.where(jnp.any(_off_mask(policy, valid)), jnp.nan, q)
    return q, sweeps, excess


def start_value(model: TabularModel, q: jax.Array) -> jax.Array:
    """sum_s mu(s) max_a Q(s, a) over valid actions a: V*(start) for Q = Q*. (For Q =
    Q^pi this is the value of the improved policy; use ``policy_start_value`` for pi
    itself.) The mask is applied here, so a learned Q (which holds its initial value in
    invalid cells) gives the value its masked greedy policy aims at."""
    valid = model.valid_mask()
    v = jnp.max(jnp.where(valid, q, -jnp.inf), axis=1)
    v = jnp.where(jnp.any(valid, axis=1), v, 0.0)  # no valid action: value 0
    return jnp.sum(jnp.where(model.initial > 0, model.initial * v, 0.0))


def greedy_policy(q: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """The greedy policy of ``q`` ``[..., S, A]`` as probabilities, ties split uniformly
    over the valid maximisers (as jaxq's learners act), for ``policy_evaluation`` /
    ``policy_start_value``.

    Invalid actions are those where ``valid`` (``[S, A]``, e.g. ``model.valid``) is False
    and, always, the cells of ``q`` that are -inf (Q* and Q^pi mark them so): they get
    probability 0 even where their value ties or beats the valid ones, as a learned Q's
    untouched initial values may. A state without any valid action gets an all-zero row.
    """
    q = jnp.asarray(q)
    allowed = q > -jnp.inf
    if valid is not None:
        allowed = allowed & jnp.asarray(valid, bool)
    q = jnp.where(allowed, q, -jnp.inf)
    ties = (q == jnp.max(q, axis=-1, keepdims=True)) & allowed
    ties = ties.astype(jnp.float32)
    return ties / jnp.maximum(jnp.sum(ties, axis=-1, keepdims=True), 1.0)


def policy_start_value(model: TabularModel, policy: jax.Array, gamma: float,
                       tol: float = 1e-6) -> jax.Array:
    """V^pi(start) = sum_s mu(s) sum_a pi(a|s) Q^pi(s, a), exactly, for a policy given as
    greedy actions ``[S]`` or probabilities ``[S, A]``. The policy must respect the
    mask, as in ``policy_evaluation`` (ValueError; NaN under ``jit``)."""
    probs = _as_probs(model, policy)
    q_pi = policy_evaluation(model, probs, gamma, tol)
    # sum over valid cells only: Q^pi is -inf in the others, and 0 * -inf is NaN
    v = jnp.sum(jnp.where(model.valid_mask(), probs * q_pi, 0.0), axis=1)
    return jnp.sum(jnp.where(model.initial > 0, model.initial * v, 0.0))
