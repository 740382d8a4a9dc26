"""Update rules: what each rule bootstraps from at the next state.

A rule is data, not a loop: the training step asks it for the value of the next state
(max for Q-learning, the next action's value for SARSA, the policy's expectation for
Expected SARSA, the other table at this table's argmax for Double Q-learning) and builds
one-step or n-step targets the same way for all of them:

    target = r_t + gamma r_{t+1} + ... + gamma^{m-1} r_{t+m-1} + gamma^m (1 - terminated) V(s_{t+m})

where m <= n is cut short by the end of the episode. Terminated transitions never
bootstrap; truncated ones (time-outs) do, from the final observation.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxq.explore import col_max, expectation, greedy


class Bootstrap(NamedTuple):
    """What a rule may need at the next state s' (arrays of shape ``[N]``)."""

    table: Any  # a strategies.LocalTable (or a mesh variant): how Q is read
    q: jax.Array  # the tables, flat as the strategy stores them
    s_next: jax.Array
    a_next: jax.Array  # SARSA: the next action of the behaviour policy
    which: jax.Array  # Double Q: which table this transition updates (0 or 1)
    u_tie: jax.Array  # Double Q: tie-break uniform for the argmax
    policy_probs: Callable  # columns -> behaviour probabilities (Expected SARSA)
    mask: Callable  # (columns, s) -> columns with invalid actions at -inf (or unchanged)


class Rule(NamedTuple):
    name: str
    num_tables: int  # 2 for Double Q-learning
    carries_action: bool  # SARSA: the next action is chosen before the update and then taken
    value: Callable[[Bootstrap], jax.Array]


def _cols(b: Bootstrap, which=0):
    return b.mask(b.table.columns(b.q, which, b.s_next), b.s_next)


def _q_learning(b: Bootstrap):
    return col_max(_cols(b))


def _sarsa(b: Bootstrap):
    return b.table.value(b.q, 0, b.s_next, b.a_next)


def _expected_sarsa(b: Bootstrap):
    cols = _cols(b)
    return expectation(b.policy_probs(cols), cols)


def _double_q(b: Bootstrap):
    """van Hasselt 2010: the updated table picks the action, the other one values it."""
    a_star = greedy(_cols(b, b.which), b.u_tie)
    return b.table.value(b.q, 1 - b.which, b.s_next, a_star)


RULES: dict[str, Rule] = {
    "q_learning": Rule("q_learning", 1, False, _q_learning),
    "sarsa": Rule("sarsa", 1, True, _sarsa),
    "expected_sarsa": Rule("expected_sarsa", 1, False, _expected_sarsa),
    "double_q": Rule("double_q", 2, False, _double_q),
}


def nstep_returns(rewards: jax.Array, gamma) -> jax.Array:
    """``G[j] = sum_{i >= j} gamma^(i-j) r[i]`` over a window ``[n, N]`` (oldest first)."""
    n = rewards.shape[0]
    out = [rewards[n - 1]]
    for j in range(n - 2, -1, -1):
        out.append(rewards[j] + gamma * out[-1])
    return jnp.stack(out[::-1])


def estimate(q: jax.Array) -> jax.Array:
    """The learner's Q estimate ``[S, A]``: Q, or (QA + QB) / 2 for Double Q-learning."""
    return q[0] if q.shape[0] == 1 else jnp.mean(q, axis=0)
