"""FrozenLake with Gymnasium's exact dynamics (``FrozenLake-v1``, ``FrozenLake8x8-v1``).

State = row * ncol + col (row 0 at the top); actions 0 LEFT, 1 DOWN, 2 RIGHT, 3 UP.
Slippery moves go along (a-1)%4, a, (a+1)%4 with probabilities
((1-success_rate)/2, success_rate, (1-success_rate)/2), listed in that order as in
Gymnasium, so clamped duplicates appear exactly as in ``env.unwrapped.P``. Entering a
hole or the goal terminates; their own rows are absorbing self-loops with reward 0.

Maps: "4x4", "8x8", a custom ``desc``, or a generated ``size x size`` map from ``seed``
in which a random right/down path from S to G is always frozen.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import Outcomes, TabularEnvironment, TabularParams, check_max_steps
from jaxq.envs.grids import (
    check_positive_int, check_probability, monotone_path_mask, slip_directions,
)
from jaxq.envs.registry import register

START, FROZEN, HOLE, GOAL = 0, 1, 2, 3
_TILE = {"S": START, "F": FROZEN, "H": HOLE, "G": GOAL}
MAPS = {
    "4x4": ["SFFF", "FHFH", "FFFH", "HFFG"],
    "8x8": [
        "SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF",
        "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG",
    ],
}
# (drow, dcol) for LEFT, DOWN, RIGHT, UP
_DR = np.array([0, 1, 0, -1], dtype=np.int32)
_DC = np.array([-1, 0, 1, 0], dtype=np.int32)


@struct.dataclass
class FrozenLakeParams(TabularParams):
    tiles: jax.Array = None  # int32 [S]: START/FROZEN/HOLE/GOAL
    success_rate: jax.Array = 1.0 / 3.0
    reward_schedule: jax.Array = None  # float32 [3]: goal, hole, frozen
    max_steps_in_episode: int = 100


def generate_random_map(size: int = 8, p: float = 0.8, seed: int | None = None) -> list[str]:
    """A ``size x size`` map: each tile frozen with probability ``p``, S top-left, G
    bottom-right, and a random right/down path between them always frozen."""
    size = check_positive_int("size", size, minimum=2, maximum=4096)
    p = check_probability("p", p)
    rng = np.random.default_rng(seed)
    frozen = (rng.random((size, size)) < p) | monotone_path_mask(rng, size, size)
    grid = np.where(frozen, "F", "H")
    grid[0, 0], grid[-1, -1] = "S", "G"
    return ["".join(row) for row in grid]


def parse_desc(desc) -> np.ndarray:
    """Validate a map (strings or lists of characters) into a ``[nrow, ncol]`` tile array."""
    if isinstance(desc, str) or not hasattr(desc, "__len__") or len(desc) == 0:
        raise ValueError("desc must be a non-empty list of equal-length rows of S/F/H/G")
    rows = ["".join(r.decode() if isinstance(r, bytes) else r) if not isinstance(r, str) else r
            for r in desc]
    if any(len(r) != len(rows[0]) for r in rows) or len(rows[0]) == 0:
        raise ValueError(f"desc must be rectangular: row lengths {[len(r) for r in rows]}")
    bad = sorted({c for r in rows for c in r} - set(_TILE))
    if bad:
        raise ValueError(f"desc may only contain 'S', 'F', 'H', 'G'; found {bad}")
    tiles = np.array([[_TILE[c] for c in r] for r in rows], dtype=np.int32)
    if not (tiles == START).any():
        raise ValueError("desc must contain at least one start tile 'S'")
    if not (tiles == GOAL).any():
        raise ValueError("desc must contain at least one goal tile 'G'")
    return tiles


class FrozenLake(TabularEnvironment):
    """Gymnasium's FrozenLake as a pure-JAX tabular environment."""

    def __init__(self, nrow: int, ncol: int, is_slippery: bool, n_starts: int,
                 env_id: str = "FrozenLake-v1"):
        self.nrow, self.ncol = nrow, ncol
        self.is_slippery = bool(is_slippery)
        self.num_states = nrow * ncol
        self._num_actions = 4
        self.num_outcomes = 3 if is_slippery else 1
        self.n_starts = n_starts
        self.random_start = n_starts > 1
        self.env_id = env_id

    def static_key(self) -> tuple:
        return (self.nrow, self.ncol, self.is_slippery, self.n_starts, self.env_id)

    def outcomes(self, s, a, params: FrozenLakeParams) -> Outcomes:
        dirs = slip_directions(a, self.is_slippery)
        row, col = s // self.ncol, s % self.ncol
        nr = jnp.clip(row + jnp.asarray(_DR)[dirs], 0, self.nrow - 1)
        nc = jnp.clip(col + jnp.asarray(_DC)[dirs], 0, self.ncol - 1)
        ns = nr * self.ncol + nc
        tile = params.tiles[ns]
        reward = params.reward_schedule[jnp.where(tile == GOAL, 0, jnp.where(tile == HOLE, 1, 2))]
        term = (tile == HOLE) | (tile == GOAL)
        if self.is_slippery:
            sr = jnp.asarray(params.success_rate, jnp.float32)
            side = (1.0 - sr) / 2.0
            prob = jnp.stack([side, sr, side])
        else:
            prob = jnp.ones((1,), jnp.float32)
        # Rows of holes and the goal: absorbing self-loops, reward 0, terminated.
        here = params.tiles[s]
        absorbing = (here == HOLE) | (here == GOAL)
        ns = jnp.where(absorbing, s, ns)
        reward = jnp.where(absorbing, 0.0, reward)
        term = jnp.where(absorbing, True, term)
        return Outcomes(ns.astype(jnp.int32), prob, reward.astype(jnp.float32), term)

    def is_success(self, s, next_state, reward, terminated, params):
        return terminated & (params.tiles[next_state] == GOAL) & (params.tiles[s] != GOAL) & (
            params.tiles[s] != HOLE)

    def render_policy(self, actions: np.ndarray, params: FrozenLakeParams) -> str:
        """A text grid of greedy actions (arrows) with holes and the goal marked."""
        arrows = "<v>^"
        tiles = np.asarray(params.tiles).reshape(self.nrow, self.ncol)
        acts = np.asarray(actions).reshape(self.nrow, self.ncol)
        lines = []
        for r in range(self.nrow):
            lines.append("".join(
                "H" if tiles[r, c] == HOLE else "G" if tiles[r, c] == GOAL else arrows[acts[r, c]]
                for c in range(self.ncol)))
        return "\n".join(lines)


def make_frozen_lake(
    desc: Sequence[str] | None = None,
    map_name: str | None = "4x4",
    is_slippery: bool = True,
    success_rate: float = 1.0 / 3.0,
    reward_schedule: Sequence[float] = (1.0, 0.0, 0.0),
    size: int | None = None,
    p: float = 0.8,
    seed: int | None = None,
    max_steps: int | None = None,
    *,
    _env_id: str = "FrozenLake-v1",
    _default_max_steps: int = 100,
):
    """``FrozenLake-v1``: ``map_name`` "4x4"/"8x8"/"random" (with ``size``, ``p``, ``seed``),
    or a custom ``desc``; ``is_slippery``, ``success_rate`` and ``reward_schedule`` as in
    Gymnasium >= 1.3; ``max_steps`` (default 100, Gymnasium's registration, whatever the map)."""
    if not isinstance(is_slippery, (bool, np.bool_)):
        raise TypeError(f"is_slippery must be a bool, got {is_slippery!r}")
    if desc is None:
        if size is not None or map_name in ("random", None):
            desc = generate_random_map(8 if size is None else size, p, seed)
        elif map_name in MAPS:
            desc = MAPS[map_name]
        else:
            raise ValueError(
                f"map_name must be one of {sorted(MAPS) + ['random']}, got {map_name!r}"
            )
    elif size is not None:
        raise ValueError("give either desc or size, not both")
    tiles = parse_desc(desc)
    success_rate = check_probability("success_rate", success_rate)
    rs = np.asarray(reward_schedule, dtype=np.float32)
    if rs.shape != (3,) or not np.all(np.isfinite(rs)):
        raise ValueError(
            f"reward_schedule must be 3 finite numbers (goal, hole, frozen), got {reward_schedule!r}"
        )
    nrow, ncol = tiles.shape
    starts = np.flatnonzero(tiles.reshape(-1) == START).astype(np.int32)
    env = FrozenLake(nrow, ncol, bool(is_slippery), len(starts), env_id=_env_id)
    params = FrozenLakeParams(
        tiles=jnp.asarray(tiles.reshape(-1)),
        starts=jnp.asarray(starts),
        n_starts=jnp.int32(len(starts)),
        success_rate=jnp.float32(success_rate),
        reward_schedule=jnp.asarray(rs),
        max_steps_in_episode=check_max_steps(max_steps, _default_max_steps),
    )
    env._default_params = params
    return env, params


def make_frozen_lake_8x8(
    desc=None, map_name="8x8", is_slippery=True, success_rate=1.0 / 3.0,
    reward_schedule=(1.0, 0.0, 0.0), size=None, p=0.8, seed=None, max_steps=None,
):
    """``FrozenLake8x8-v1``: the 8x8 map with Gymnasium's 200-step limit."""
    return make_frozen_lake(desc, map_name, is_slippery, success_rate, reward_schedule, size, p,
                            seed, max_steps, _env_id="FrozenLake8x8-v1", _default_max_steps=200)


register("FrozenLake-v1", make_frozen_lake,
         "Gymnasium FrozenLake: 4x4/8x8/custom/generated maps, slippery or not; T=100")
register("FrozenLake8x8-v1", make_frozen_lake_8x8, "FrozenLake 8x8; T=200")
