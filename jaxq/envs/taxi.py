"""Taxi with Gymnasium's exact dynamics (``Taxi-v3``, ``Taxi-v4``).

State = ((taxi_row * 5 + taxi_col) * 5 + pass_loc) * 4 + dest (500 states); pass_loc 0..3
is a depot (R, G, Y, B), 4 is "in the taxi". Actions 0 SOUTH, 1 NORTH, 2 EAST, 3 WEST,
4 PICKUP, 5 DROPOFF. Every step costs -1; an illegal PICKUP/DROPOFF costs -10; DROPOFF
with the passenger aboard at the destination gives +20 and terminates, at another depot it
costs -1 and leaves the passenger there. Termination is per transition: the 4 states
reached by a delivery can also be entered without terminating, so no per-state terminal
mask could express it. The 100 states with pass_loc == dest keep ordinary rows, as in
Gymnasium's ``P``.

``is_rainy`` follows Gymnasium 1.3's ``Taxi-v4``: a move that is possible goes the intended
way with ``rainy_probability`` and drifts to either side (clamped by walls) otherwise; a
blocked move stays put. ``fickle_passenger`` is not offered: its destination change depends
on the episode's history, not on the state, so it has no exact tabular model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import Outcomes, TabularEnvironment, TabularParams, check_max_steps
from jaxq.envs.grids import check_probability
from jaxq.envs.registry import register

MAP = [
    "+---------+",
    "|R: | : :G|",
    "| : | : : |",
    "| : : : : |",
    "| | : | : |",
    "|Y| : |B: |",
    "+---------+",
]
SOUTH, NORTH, EAST, WEST, PICKUP, DROPOFF = range(6)
IN_TAXI = 4
DEPOTS = ((0, 0), (0, 4), (4, 0), (4, 3))  # R, G, Y, B as (row, col)
NUM_STATES = 500


def encode(row, col, pass_loc, dest):
    """Gymnasium's state index (works on ints, numpy and jax arrays)."""
    return ((row * 5 + col) * 5 + pass_loc) * 4 + dest


def decode(s):
    """``(row, col, pass_loc, dest)`` of a state index (inverse of ``encode``)."""
    return s // 100, (s // 20) % 5, (s // 4) % 5, s % 4


def _blocked_mask(direction: int) -> int:
    """Bit ``row*5+col`` set where a move in ``direction`` is blocked (wall or edge).

    East/west walls are read from ``MAP`` exactly as Gymnasium does; north/south moves are
    blocked only by the grid edge. A bitmask keeps the hot path to a shift and an AND.
    """
    bits = 0
    for r in range(5):
        for c in range(5):
            blocked = {
                SOUTH: r == 4,
                NORTH: r == 0,
                EAST: MAP[1 + r][2 * c + 2] != ":",
                WEST: MAP[1 + r][2 * c] != ":",
            }[direction]
            bits |= int(blocked) << (r * 5 + c)
    return bits


_BLOCKED = np.array([_blocked_mask(d) for d in range(4)], np.int32)
_SHIFT = np.array([100, -100, 20, -20], np.int32)  # state change of a free move S, N, E, W
# Rainy drift directions, as Gymnasium lists them: (intended, left, right) of each heading.
_LEFT = np.array([EAST, WEST, NORTH, SOUTH], np.int32)
_RIGHT = np.array([WEST, EAST, SOUTH, NORTH], np.int32)
_, _, _PASS, _DEST = decode(np.arange(NUM_STATES))
# Gymnasium's 300 start states, in index order: passenger at a depot, not its destination.
START_STATES = np.flatnonzero((_PASS < IN_TAXI) & (_PASS != _DEST)).astype(np.int32)


def _select(i: jax.Array, table: np.ndarray) -> jax.Array:
    """``table[i]`` for a tiny constant table, as a chain of selects (cheaper than a
    gather in XLA's vectorised CPU code)."""
    out = jnp.full(jnp.shape(i), int(table[-1]), jnp.int32)
    for j in range(len(table) - 1):
        out = jnp.where(i == j, int(table[j]), out)
    return out


@struct.dataclass
class TaxiParams(TabularParams):
    rainy_probability: jax.Array = 0.8
    max_steps_in_episode: int = 200


class Taxi(TabularEnvironment):
    """Gymnasium's Taxi as a pure-JAX tabular environment (K = 3 when rainy, else 1)."""

    def __init__(self, is_rainy: bool = False, rainy_probability: float = 0.8,
                 max_steps: int = 200, env_id: str = "Taxi-v4"):
        self.is_rainy = bool(is_rainy)
        self.random_start = True
        self.num_states = NUM_STATES
        self._num_actions = 6
        self.num_outcomes = 3 if self.is_rainy else 1
        self.env_id = env_id
        # Python scalars, part of the hash: a jitted method that falls back on
        # default_params must not reuse a trace made for other defaults.
        self._rainy_probability = float(rainy_probability)
        self._max_steps = int(max_steps)

    def static_key(self) -> tuple:
        return (self.is_rainy, self._rainy_probability, self._max_steps, self.env_id)

    @property
    def default_params(self) -> TaxiParams:
        return TaxiParams(
            starts=jnp.asarray(START_STATES), n_starts=jnp.int32(START_STATES.size),
            rainy_probability=jnp.float32(self._rainy_probability),
            max_steps_in_episode=self._max_steps,
        )

    def outcomes(self, s, a, params: TaxiParams) -> Outcomes:
        s = jnp.asarray(s, jnp.int32)
        a = jnp.asarray(a, jnp.int32)
        cell, pass_loc, dest = s // 20, (s >> 2) % 5, s & 3
        # Moves: a bit test per direction, then a constant shift of the state index.
        d = jnp.minimum(a, WEST)
        dirs = (jnp.stack([d, _select(d, _LEFT), _select(d, _RIGHT)]) if self.is_rainy
                else jnp.reshape(d, (1,)))
        blocked = ((_select(dirs, _BLOCKED) >> cell) & 1).astype(bool)
        blocked = blocked | blocked[0]  # a blocked intended move does not drift either
        move_next = s + jnp.where(blocked, 0, _select(dirs, _SHIFT))
        # PICKUP / DROPOFF: both act at the depot under the taxi (IN_TAXI where none).
        here = jnp.full_like(cell, IN_TAXI)
        for i, (r, c) in enumerate(DEPOTS):
            here = jnp.where(cell == r * 5 + c, i, here)
        aboard = pass_loc == IN_TAXI
        is_pickup = a == PICKUP
        legal = jnp.where(is_pickup, ~aboard & (here == pass_loc), aboard & (here != IN_TAXI))
        new_pass = jnp.where(is_pickup, IN_TAXI, here)
        delivered = ~is_pickup & aboard & (here == dest)
        act_next = s + jnp.where(legal, (new_pass - pass_loc) * 4, 0)
        act_reward = jnp.where(legal, jnp.where(delivered, 20.0, -1.0), -10.0)

        is_move = a < PICKUP
        k = self.num_outcomes
        next_state = jnp.where(is_move, move_next, act_next)
        reward = jnp.broadcast_to(jnp.where(is_move, -1.0, act_reward), (k,))
        terminated = jnp.broadcast_to(~is_move & delivered, (k,))
        if self.is_rainy:
            p = jnp.asarray(params.rainy_probability, jnp.float32)
            side = (1.0 - p) / 2.0
            prob = jnp.where(is_move, jnp.stack([p, side, side]),
                             jnp.array([1.0, 0.0, 0.0], jnp.float32))
        else:
            prob = jnp.ones((1,), jnp.float32)
        return Outcomes(next_state.astype(jnp.int32), prob, reward.astype(jnp.float32),
                        terminated)

    def is_success(self, s, next_state, reward, terminated, params):
        """Only a delivery terminates."""
        return terminated


def make_taxi(
    is_rainy: bool = False, rainy_probability: float = 0.8, max_steps: int | None = None
) -> tuple[Taxi, TaxiParams]:
    """``Taxi-v4``: Gymnasium >= 1.3's Taxi, optionally rainy (``rainy_probability`` is the
    chance of moving the intended way); ``max_steps`` defaults to Gymnasium's 200."""
    return _make("Taxi-v4", is_rainy, rainy_probability, max_steps)


def make_taxi_v3(is_rainy: bool = False, max_steps: int | None = None) -> tuple[Taxi, TaxiParams]:
    """``Taxi-v3``: the same deterministic dynamics as ``Taxi-v4``. Its rainy variant
    (Gymnasium 1.2) had other dynamics, fixed in v4, so ``is_rainy`` is refused here."""
    if isinstance(is_rainy, (bool, np.bool_)) and is_rainy:
        raise ValueError("is_rainy is only supported by 'Taxi-v4' (Gymnasium 1.3 changed the "
                         "rainy dynamics of Taxi-v3); use jaxq.make('Taxi-v4', is_rainy=True)")
    return _make("Taxi-v3", is_rainy, 0.8, max_steps)


def _make(env_id: str, is_rainy, rainy_probability, max_steps) -> tuple[Taxi, TaxiParams]:
    if not isinstance(is_rainy, (bool, np.bool_)):
        raise TypeError(f"is_rainy must be a bool, got {is_rainy!r}")
    rainy_probability = check_probability("rainy_probability", rainy_probability)
    env = Taxi(bool(is_rainy), rainy_probability, check_max_steps(max_steps, 200), env_id=env_id)
    return env, env.default_params


register("Taxi-v3", make_taxi_v3, "Gymnasium Taxi (deterministic); T=200")
register("Taxi-v4", make_taxi, "Gymnasium >= 1.3 Taxi, optionally rainy; T=200")
