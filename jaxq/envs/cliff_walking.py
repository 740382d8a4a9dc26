"""CliffWalking with Gymnasium's exact dynamics (``CliffWalking-v0``/``-v1``,
``CliffWalkingSlippery-v1``).

A 4 x 12 grid, state = row * 12 + col; start 36 (bottom left), goal 47 (bottom right), cliff
37..46 between them. Actions 0 UP, 1 RIGHT, 2 DOWN, 3 LEFT (not FrozenLake's order). Every
step costs -1; stepping into the cliff costs -100 and puts the agent back on 36 *without*
terminating; entering 47 terminates. The rows of the cliff cells and of 47 are ordinary
moves, as in Gymnasium's ``P`` (nothing is absorbing).

Slippery: the move goes along (a-1)%4, a, (a+1)%4 with probability 1/3 each, listed in that
order, so duplicate next states (and, from 36, one next state reached with -1 by a wall
clamp and with -100 by a fall) appear exactly as in Gymnasium.

Gymnasium registers no time limit, so neither does jaxq by default: a greedy policy that
loops never ends an episode. Pass ``max_steps`` to cap it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxq.envs.base import INT32_MAX, Outcomes, TabularEnvironment, TabularParams, check_max_steps
from jaxq.envs.grids import slip_directions
from jaxq.envs.registry import register

NROW, NCOL = 4, 12
START, GOAL = 36, 47
UP, RIGHT, DOWN, LEFT = range(4)
_DR = np.array([-1, 0, 1, 0], np.int32)
_DC = np.array([0, 1, 0, -1], np.int32)


class CliffWalking(TabularEnvironment):
    """Gymnasium's CliffWalking as a pure-JAX tabular environment (K = 3 if slippery)."""

    def __init__(self, is_slippery: bool = False, max_steps: int = INT32_MAX,
                 env_id: str = "CliffWalking-v1"):
        self.is_slippery = bool(is_slippery)
        self.num_states = NROW * NCOL
        self._num_actions = 4
        self.num_outcomes = 3 if self.is_slippery else 1
        self.env_id = env_id
        # Part of the hash: jitted methods that fall back on default_params must not
        # reuse a trace made for another time limit.
        self._max_steps = int(max_steps)

    def static_key(self) -> tuple:
        return (self.is_slippery, self._max_steps, self.env_id)

    @property
    def default_params(self) -> TabularParams:
        return TabularParams(max_steps_in_episode=self._max_steps,
                             starts=jnp.array([START], jnp.int32), n_starts=jnp.int32(1))

    def outcomes(self, s, a, params: TabularParams) -> Outcomes:
        s = jnp.asarray(s, jnp.int32)
        dirs = slip_directions(jnp.asarray(a, jnp.int32), self.is_slippery)
        row = jnp.clip(s // NCOL + jnp.asarray(_DR)[dirs], 0, NROW - 1)
        col = jnp.clip(s % NCOL + jnp.asarray(_DC)[dirs], 0, NCOL - 1)
        cliff = (row == NROW - 1) & (col > 0) & (col < NCOL - 1)
        next_state = jnp.where(cliff, START, row * NCOL + col)
        reward = jnp.where(cliff, -100.0, -1.0)
        k = self.num_outcomes
        prob = jnp.full((k,), 1.0 / k, jnp.float32)
        return Outcomes(next_state.astype(jnp.int32), prob, reward.astype(jnp.float32),
                        next_state == GOAL)

    def is_success(self, s, next_state, reward, terminated, params):
        """Reaching the goal (not the goal row's own self-loop, which episodes never use)."""
        return terminated & (s != GOAL)


def _make(env_id: str, is_slippery, max_steps) -> tuple[CliffWalking, TabularParams]:
    if not isinstance(is_slippery, (bool, np.bool_)):
        raise TypeError(f"is_slippery must be a bool, got {is_slippery!r}")
    env = CliffWalking(bool(is_slippery), check_max_steps(max_steps, INT32_MAX), env_id=env_id)
    return env, env.default_params


def make_cliff_walking(
    is_slippery: bool = False, max_steps: int | None = None
) -> tuple[CliffWalking, TabularParams]:
    """``CliffWalking-v1``: ``is_slippery`` as in Gymnasium >= 1.2; no time limit unless
    ``max_steps`` is given (Gymnasium registers none)."""
    return _make("CliffWalking-v1", is_slippery, max_steps)


def make_cliff_walking_v0(
    is_slippery: bool = False, max_steps: int | None = None
) -> tuple[CliffWalking, TabularParams]:
    """``CliffWalking-v0``: the id used before Gymnasium 1.2; same dynamics as ``-v1``."""
    return _make("CliffWalking-v0", is_slippery, max_steps)


def make_cliff_walking_slippery(
    is_slippery: bool = True, max_steps: int | None = None
) -> tuple[CliffWalking, TabularParams]:
    """``CliffWalkingSlippery-v1``: ``CliffWalking-v1`` with ``is_slippery=True``."""
    return _make("CliffWalkingSlippery-v1", is_slippery, max_steps)


register("CliffWalking-v0", make_cliff_walking_v0, "Gymnasium CliffWalking (pre-1.2 id); no T")
register("CliffWalking-v1", make_cliff_walking, "Gymnasium CliffWalking, optionally slippery; no T")
register("CliffWalkingSlippery-v1", make_cliff_walking_slippery,
         "Gymnasium CliffWalking, slippery; no T")
