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

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxq.explore import greedy

# bootstrap(q [T,S,A], s_next [N], a_next [N], table [N], u_tie [N], policy_probs) -> [N]
Bootstrap = Callable[..., jax.Array]


class Rule(NamedTuple):
    name: str
    num_tables: int  # 2 for Double Q-learning
    carries_action: bool  # SARSA: the next action is chosen before the update and then taken
    bootstrap: Bootstrap


def _q_learning(q, s, a_next, table, u_tie, policy_probs):
    return jnp.max(q[0, s], axis=-1)


def _sarsa(q, s, a_next, table, u_tie, policy_probs):
    return q[0, s, a_next]


def _expected_sarsa(q, s, a_next, table, u_tie, policy_probs):
    rows = q[0, s]
    return jnp.sum(policy_probs(rows) * rows, axis=-1)


def _double_q(q, s, a_next, table, u_tie, policy_probs):
    """van Hasselt 2010: the updated table picks the action, the other one values it."""
    a_star = greedy(q[table, s], u_tie)
    return q[1 - table, s, a_star]


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


def behaviour_table(q: jax.Array) -> jax.Array:
    """The table the behaviour policy acts on: Q, or QA + QB for Double Q-learning."""
    return q[0] if q.shape[0] == 1 else jnp.sum(q, axis=0)


def estimate(q: jax.Array) -> jax.Array:
    """The learner's Q estimate ``[S, A]``: Q, or (QA + QB) / 2 for Double Q-learning."""
    return q[0] if q.shape[0] == 1 else jnp.mean(q, axis=0)
