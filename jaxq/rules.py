"""Update rules: what each rule bootstraps from at the next state (the n-step
window and targets are ``targets.py``).

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

from jaxq.explore import GreedyTable, col_max, expectation, greedy


class Bootstrap(NamedTuple):
    """What a rule may read at the next state s' (arrays of shape ``[N]``). Reads go
    through the Q-function (``qfunctions.py``), so a rule never knows how Q is stored."""

    values: Callable  # (which, s) -> columns of estimate ``which`` (invalid actions -inf)
    value: Callable  # (which, s, a) -> Q_which(s, a)
    s_next: jax.Array
    a_next: jax.Array  # SARSA: the next action of the behaviour policy
    which: jax.Array  # Double Q: which estimate this transition updates (0 or 1)
    u_tie: jax.Array  # Double Q: tie-break uniform for the argmax
    policy_probs: Callable  # columns -> behaviour probabilities (Expected SARSA)
    greedy: GreedyTable | None = None  # per-state maxima when the behaviour computed them


class Rule(NamedTuple):
    name: str
    num_tables: int  # 2 for Double Q-learning
    carries_action: bool  # SARSA: the next action is chosen before the update and then taken
    value: Callable[[Bootstrap], jax.Array]


def _q_learning(b: Bootstrap):
    if b.greedy is not None:  # = max over Q(s', .) columns, bit for bit
        return b.greedy.v_max[b.s_next]
    return col_max(b.values(0, b.s_next))


def _sarsa(b: Bootstrap):
    return b.value(0, b.s_next, b.a_next)


def _expected_sarsa(b: Bootstrap):
    cols = b.values(0, b.s_next)
    return expectation(b.policy_probs(cols), cols)


def _double_q(b: Bootstrap):
    """van Hasselt 2010: the updated estimate picks the action, the other one values it."""
    a_star = greedy(b.values(b.which, b.s_next), b.u_tie)
    return b.value(1 - b.which, b.s_next, a_star)


RULES: dict[str, Rule] = {
    "q_learning": Rule("q_learning", 1, False, _q_learning),
    "sarsa": Rule("sarsa", 1, True, _sarsa),
    "expected_sarsa": Rule("expected_sarsa", 1, False, _expected_sarsa),
    "double_q": Rule("double_q", 2, False, _double_q),
}
