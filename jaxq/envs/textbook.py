"""MDPs given explicitly as arrays, and the textbook ones built from them.

``make_mdp`` turns arrays ``[S, A, K]`` (next state, probability, reward, terminated) and a
start distribution into a jaxq environment, optionally with per-state valid actions and
Gaussian reward noise. It is how users bring their own small MDPs, how tests build probe
MDPs whose Q* is known in closed form, and how Sutton & Barto's examples are written:

* ``MaximizationBias-v0`` — Example 6.7 (Figure 6.5): from A, RIGHT ends the episode with
  reward 0 and LEFT moves to B with reward 0; every action in B ends the episode with a
  reward drawn from N(-0.1, 1). A offers only LEFT and RIGHT.
* ``TwoStateProbe-v0`` — a 2-state chain for exact convergence checks: from state 0,
  action 0 stays (reward 0), action 1 moves to state 1 (reward 0); from state 1,
  action 0 ends the episode with reward 1 and action 1 returns to state 0 with reward
  0.5. For gamma^2 > 1/2, V*(1) = 0.5 / (1 - gamma^2), V*(0) = gamma V*(1), and
  Q* = [[gamma V*(0), gamma V*(1)], [1, 0.5 + gamma V*(0)]]: every cell differs.
* ``MaskedProbe-v0`` — a probe for action masks, where the masked action would be the
  best one if it were allowed. Actions 0, 1 are valid in states 0 and 1, action 2 is
  masked there (state 2 is the absorbing terminal; all its actions are valid). From
  state 0: action 0 moves to state 1 with probability 0.8 and ends the episode with
  probability 0.2 (reward 0); action 1 ends it with reward 1; masked action 2 would end
  it with reward 10. From state 1: action 0 ends it with reward 2; action 1 returns to
  state 0 (reward 0); masked action 2 would end it with reward 100. For gamma >= 0.625,
  Q* = [[1.6 gamma, 1, -inf], [2, 1.6 gamma^2, -inf]] (V*(0) = 1.6 gamma, V*(1) = 2);
  a model that ignored the mask would find V*(1) = 100 and V*(0) = 80 gamma.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import (
    INT32_MAX, Outcomes, TabularEnvironment, TabularParams, check_max_steps,
)
from jaxq.envs.grids import check_positive_int
from jaxq.envs.registry import register


@struct.dataclass
class MDPParams(TabularParams):
    next_state: jax.Array = None  # int32 [S, A, K]
    prob: jax.Array = None  # float32 [S, A, K]
    reward: jax.Array = None  # float32 [S, A, K] (the mean, if noisy)
    terminated: jax.Array = None  # bool [S, A, K]
    valid: jax.Array = None  # bool [S, A]
    reward_std: jax.Array = None  # float32 [S, A]


class ExplicitMDP(TabularEnvironment):
    """A finite MDP whose dynamics are arrays in its params."""

    def __init__(self, num_states: int, num_actions: int, num_outcomes: int, random_start: bool,
                 has_action_mask: bool, noisy_reward: bool, env_id: str = "ExplicitMDP"):
        self.num_states, self._num_actions, self.num_outcomes = num_states, num_actions, num_outcomes
        self.random_start = random_start
        self.has_action_mask = has_action_mask
        self.noisy_reward = noisy_reward
        self.env_id = env_id

    def static_key(self) -> tuple:
        return (self.num_states, self._num_actions, self.num_outcomes, self.random_start,
                self.has_action_mask, self.noisy_reward, self.env_id)

    def outcomes(self, s, a, params: MDPParams) -> Outcomes:
        return Outcomes(params.next_state[s, a], params.prob[s, a], params.reward[s, a],
                        params.terminated[s, a])

    def valid_actions(self, s, params: MDPParams):
        return tuple(params.valid[s, a] for a in range(self._num_actions))

    def reward_noise(self, bits, s, a, params: MDPParams):
        # midpoints of 2**23 cells: u in [2**-24, 1 - 2**-24], exact in float32, so the
        # normal quantile is always finite
        u = ((bits >> 9).astype(jnp.float32) + 0.5) * (1.0 / (1 << 23))
        return params.reward_std[s, a] * jax.scipy.special.ndtri(u)


def make_mdp(next_state, prob, reward, terminated, start, valid=None, reward_std=None,
             max_steps: int | None = None, env_id: str = "ExplicitMDP"):
    """An environment from explicit arrays; ``start`` is a state or a list of states
    (uniform). Rows must be probability distributions; a clear ValueError otherwise."""
    ns = np.asarray(next_state)
    if ns.ndim == 2:  # deterministic: [S, A] -> [S, A, 1]
        ns = ns[..., None]
        prob, reward, terminated = (np.asarray(x)[..., None] for x in (prob, reward, terminated))
    pr, rw, tm = np.asarray(prob, np.float64), np.asarray(reward, np.float64), np.asarray(terminated)
    if ns.ndim != 3 or not (ns.shape == pr.shape == rw.shape == tm.shape):
        raise ValueError("next_state, prob, reward and terminated must share one shape [S, A, K]")
    S, A, K = ns.shape
    if not np.issubdtype(ns.dtype, np.integer) or ns.min() < 0 or ns.max() >= S:
        raise ValueError(f"next_state must hold integers in [0, {S})")
    if (pr < 0).any() or not np.allclose(pr.sum(-1), 1.0, atol=1e-6):
        raise ValueError("prob must be non-negative and sum to 1 over the last axis")
    starts = np.atleast_1d(np.asarray(start, np.int64))
    if starts.size == 0 or starts.min() < 0 or starts.max() >= S:
        raise ValueError(f"start must be a state or states in [0, {S})")
    v = np.ones((S, A), bool) if valid is None else np.asarray(valid, bool)
    if v.shape != (S, A) or not v.any(axis=1).all():
        raise ValueError(f"valid must be a bool array [{S}, {A}] with a valid action in every state")
    std = np.zeros((S, A)) if reward_std is None else np.asarray(reward_std, np.float64)
    if std.shape != (S, A) or (std < 0).any():
        raise ValueError(f"reward_std must be a non-negative array [{S}, {A}]")
    env = ExplicitMDP(S, A, K, starts.size > 1, valid is not None and not v.all(),
                      bool((std > 0).any()), env_id)
    params = MDPParams(
        next_state=jnp.asarray(ns, jnp.int32), prob=jnp.asarray(pr, jnp.float32),
        reward=jnp.asarray(rw, jnp.float32), terminated=jnp.asarray(tm, bool),
        valid=jnp.asarray(v), reward_std=jnp.asarray(std, jnp.float32),
        starts=jnp.asarray(starts, jnp.int32), n_starts=jnp.int32(starts.size),
        max_steps_in_episode=check_max_steps(max_steps, INT32_MAX),
    )
    env._default_params = params
    return env, params


# ---- Sutton & Barto, Example 6.7 ---------------------------------------------------
STATE_A, STATE_B, TERMINAL = 0, 1, 2
LEFT, RIGHT = 0, 1


def make_maximization_bias(num_b_actions: int = 10, mean: float = -0.1, std: float = 1.0,
                           max_steps: int | None = None):
    """Example 6.7: A -LEFT-> B (0), A -RIGHT-> end (0), B -any-> end ~ N(mean, std).
    State 2 is the terminal state (its row is an absorbing self-loop)."""
    n = check_positive_int("num_b_actions", num_b_actions, minimum=2, maximum=1024)
    ns = np.full((3, n), TERMINAL)
    ns[STATE_A, LEFT] = STATE_B
    term = np.ones((3, n), bool)
    term[STATE_A, LEFT] = False
    reward = np.zeros((3, n))
    reward[STATE_B] = float(mean)
    std_arr = np.zeros((3, n))
    std_arr[STATE_B] = float(std)
    valid = np.ones((3, n), bool)
    valid[STATE_A, 2:] = False
    return make_mdp(ns, np.ones((3, n)), reward, term, STATE_A, valid, std_arr, max_steps,
                    env_id="MaximizationBias-v0")


def make_two_state_probe(max_steps: int | None = None):
    """A 2-state probe with distinct optimal values in every cell (see module doc)."""
    ns = np.array([[0, 1], [1, 0]])
    reward = np.array([[0.0, 0.0], [1.0, 0.5]])
    term = np.array([[False, False], [True, False]])
    return make_mdp(ns, np.ones((2, 2)), reward, term, 0, max_steps=max_steps,
                    env_id="TwoStateProbe-v0")


MASKED_ACTION = 2


def make_masked_probe(max_steps: int | None = None):
    """The action-mask probe (see module doc): a masked action that would be the best."""
    ns = np.array([[[1, 2], [2, 2], [2, 2]],
                   [[2, 2], [0, 0], [2, 2]],
                   [[2, 2], [2, 2], [2, 2]]])
    prob = np.array([[[0.8, 0.2], [1, 0], [1, 0]]] + [[[1, 0]] * 3] * 2, np.float64)
    reward = np.zeros((3, 3, 2))
    reward[0, 1] = 1.0
    reward[0, MASKED_ACTION] = 10.0
    reward[1, 0] = 2.0
    reward[1, MASKED_ACTION] = 100.0
    term = np.ones((3, 3, 2), bool)
    term[0, 0, 0] = False  # 0 -> 1
    term[1, 1] = False  # 1 -> 0
    valid = np.ones((3, 3), bool)
    valid[:2, MASKED_ACTION] = False
    return make_mdp(ns, prob, reward, term, 0, valid, max_steps=max_steps,
                    env_id="MaskedProbe-v0")


register("MaximizationBias-v0", make_maximization_bias,
         "Sutton & Barto Example 6.7: the maximization-bias MDP (A, B, N(-0.1, 1) rewards)")
register("TwoStateProbe-v0", make_two_state_probe, "2-state probe MDP for exact checks")
register("MaskedProbe-v0", make_masked_probe,
         "probe MDP whose masked action would be the best if allowed (action-mask checks)")
