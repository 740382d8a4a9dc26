"""``Maze-v0``: a random grid maze that scales from 2x2 to 4096x4096 (16.7M states).

State = row * ncol + col (row 0 at the top); actions 0 LEFT, 1 DOWN, 2 RIGHT, 3 UP, as in
FrozenLake. Moving into a wall or off the grid leaves the agent in place. With
probability ``slip`` the move goes to one of the two perpendicular directions instead
(``slip / 2`` each, outcomes listed as (a-1)%4, a, (a+1)%4 like FrozenLake), so K = 3;
``slip=0`` gives a deterministic maze with K = 1, which keeps the exact model of the
largest maze under a gigabyte.

Entering the goal (bottom-right) gives +1 and terminates; every other move gives
``step_reward`` (default 0; e.g. -0.01 for a per-move cost: a robot's time or energy, in
README's path-planning example, where ``slip`` is actuator noise). The goal's own row is an
absorbing self-loop (reward 0, terminated), as in FrozenLake. Wall cells are never
entered, so their rows are plain self-loops with reward 0 (not terminated): they have
Q = 0 exactly and cost value iteration nothing.

The map is drawn on the host with numpy from ``seed`` (same seed, same map): each cell
is a wall with probability ``wall_density``, except for a random right/down path from
the top-left to the goal, so the goal is always reachable from the top-left, in exactly
``nrow + ncol - 2`` moves. The map lives in ``params`` (a ``[S]`` bool array), never
in the compiled code: mazes of the same shape but different seeds share every
compiled function.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import Outcomes, TabularEnvironment, TabularParams, check_max_steps
from jaxq.envs.grids import (
    check_positive_int, check_probability, monotone_path_mask, slip_directions,
)
from jaxq.envs.registry import register

MAX_STATES = 4096 * 4096
START_OPTIONS = ("top_left", "uniform")
# (drow, dcol) for LEFT, DOWN, RIGHT, UP
_DR = np.array([0, 1, 0, -1], dtype=np.int32)
_DC = np.array([-1, 0, 1, 0], dtype=np.int32)
_RENDER_LIMIT = 512 * 512


@struct.dataclass
class MazeParams(TabularParams):
    free: jax.Array = None  # bool [S]: True where the agent may stand
    # starts (TabularParams) is padded to S for start="uniform", so its shape does not
    # depend on the seed and nothing recompiles per map.
    slip: jax.Array = 0.0  # float32: probability of a perpendicular move (K = 3 envs only)
    step_reward: jax.Array = 0.0  # float32: reward of every move that does not reach the goal
    max_steps_in_episode: int = 100


def generate_maze(nrow: int, ncol: int, wall_density: float, seed: int) -> np.ndarray:
    """The ``[nrow, ncol]`` bool map of free cells: walls with probability
    ``wall_density``, except on a random monotone path from (0, 0) to the goal."""
    rng = np.random.default_rng(seed)
    walls = rng.random((nrow, ncol), dtype=np.float32) < wall_density
    walls &= ~monotone_path_mask(rng, nrow, ncol)
    return ~walls


class Maze(TabularEnvironment):
    """A grid maze as a pure-JAX tabular environment; the map is in ``MazeParams``."""

    def __init__(self, nrow: int, ncol: int, slippery: bool, random_start: bool = False,
                 env_id: str = "Maze-v0"):
        self.nrow, self.ncol = nrow, ncol
        self.slippery = bool(slippery)
        self.random_start = bool(random_start)
        self.num_states = nrow * ncol
        self.goal = self.num_states - 1
        self._num_actions = 4
        self.num_outcomes = 3 if slippery else 1
        self.env_id = env_id

    # Equality is the static structure only (not the map), so that every maze of one
    # shape shares compiled code; the map must therefore always come through params.
    def static_key(self) -> tuple:
        return (self.nrow, self.ncol, self.slippery, self.random_start, self.env_id)

    def outcomes(self, s, a, params: MazeParams) -> Outcomes:
        dirs = slip_directions(a, self.slippery)
        row, col = s // self.ncol, s % self.ncol
        nr = row + jnp.asarray(_DR)[dirs]
        nc = col + jnp.asarray(_DC)[dirs]
        inside = (nr >= 0) & (nr < self.nrow) & (nc >= 0) & (nc < self.ncol)
        target = jnp.where(inside, nr * self.ncol + nc, s)
        moving = params.free[s] & (s != self.goal)  # wall and goal rows are self-loops
        ns = jnp.where(moving & params.free[target], target, s)
        terminated = ns == self.goal
        reward = jnp.where(
            moving, jnp.where(terminated, 1.0, jnp.asarray(params.step_reward, jnp.float32)), 0.0
        )
        if self.slippery:
            slip = jnp.asarray(params.slip, jnp.float32)
            prob = jnp.stack([slip / 2.0, 1.0 - slip, slip / 2.0])
        else:
            prob = jnp.ones((1,), jnp.float32)
        return Outcomes(ns.astype(jnp.int32), prob, reward.astype(jnp.float32), terminated)

    def _char_grid(self, params: MazeParams) -> np.ndarray:
        if self.num_states > _RENDER_LIMIT:
            raise ValueError(
                f"a {self.nrow}x{self.ncol} maze is too large to render as text "
                f"(at most {_RENDER_LIMIT} cells)"
            )
        grid = np.where(np.asarray(params.free).reshape(self.nrow, self.ncol), ".", "#")
        if int(params.n_starts) == 1:
            grid.flat[int(params.starts[0])] = "S"
        grid[-1, -1] = "G"
        return grid

    def render(self, params: MazeParams | None = None, s: int | None = None) -> str:
        """The map as text: ``#`` wall, ``.`` free, ``S`` start, ``G`` goal, ``A`` agent."""
        grid = self._char_grid(self.default_params if params is None else params)
        if s is not None:
            grid.flat[int(s)] = "A"
        return "\n".join("".join(r) for r in grid)

    def render_policy(self, actions: np.ndarray, params: MazeParams | None = None) -> str:
        """Greedy actions ``[S]`` as arrows on the free cells, walls and the goal marked."""
        grid = self._char_grid(self.default_params if params is None else params)
        arrows = np.array(list("<v>^"))[np.asarray(actions).reshape(self.nrow, self.ncol)]
        grid = np.where(np.isin(grid, ["#", "G"]), grid, arrows)
        return "\n".join("".join(r) for r in grid)


def _check_finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def make_maze(
    size: int = 16,
    wall_density: float = 0.25,
    slip: float = 0.0,
    seed: int = 0,
    start: str = "top_left",
    step_reward: float = 0.0,
    max_steps: int | None = None,
    nrow: int | None = None,
    ncol: int | None = None,
) -> tuple[Maze, MazeParams]:
    """``Maze-v0``: a ``size x size`` maze (or ``nrow x ncol``; at most 4096*4096 cells).

    ``start``: "top_left" (the cell (0, 0)) or "uniform" (uniform over all free cells but
    the goal; values then propagate from everywhere, which makes large mazes learnable;
    free cells walled off from the goal are included: finding them would need a search
    over up to 16.7M cells, and they are rare at moderate densities). ``max_steps``
    defaults to 4 * (nrow + ncol): over four times the top-left start's shortest path
    (exactly nrow + ncol - 2, the kept monotone path), which leaves room for slips,
    detours and exploration without letting hopeless episodes run on.
    """
    size = check_positive_int("size", size, minimum=2, maximum=4096)
    nrow = size if nrow is None else check_positive_int("nrow", nrow, minimum=2)
    ncol = size if ncol is None else check_positive_int("ncol", ncol, minimum=2)
    if nrow * ncol > MAX_STATES:
        raise ValueError(f"nrow * ncol must be <= {MAX_STATES} (4096 x 4096), got {nrow} x {ncol}")
    try:
        density = float(wall_density)
    except (TypeError, ValueError):
        raise TypeError(f"wall_density must be a number in [0, 1), got {wall_density!r}") from None
    if not 0.0 <= density < 1.0:
        raise ValueError(f"wall_density must be in [0, 1), got {wall_density!r}")
    slip = check_probability("slip", slip)
    seed = check_positive_int("seed", seed, minimum=0)
    if start not in START_OPTIONS:
        raise ValueError(f"start must be one of {list(START_OPTIONS)}, got {start!r}")
    step_reward = _check_finite("step_reward", step_reward)
    max_steps = check_max_steps(max_steps, 4 * (nrow + ncol))

    free = generate_maze(nrow, ncol, density, seed).reshape(-1)
    if start == "top_left":
        starts, n_starts = np.zeros(1, np.int32), 1
    else:
        cells = np.flatnonzero(free[:-1]).astype(np.int32)  # the goal is the last cell
        starts = np.zeros(free.size, np.int32)
        starts[: cells.size] = cells
        n_starts = cells.size
    env = Maze(nrow, ncol, slippery=slip > 0, random_start=start == "uniform")
    params = MazeParams(
        free=jnp.asarray(free),
        starts=jnp.asarray(starts),
        n_starts=jnp.int32(n_starts),
        slip=jnp.float32(slip),
        step_reward=jnp.float32(step_reward),
        max_steps_in_episode=max_steps,
    )
    env._default_params = params
    return env, params


register("Maze-v0", make_maze,
         "Random grid maze, 2x2 to 4096x4096, optional slip and uniform start; T=4*(nrow+ncol)")
