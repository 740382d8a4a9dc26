"""Pictures of a run: the learning curve and, for grid worlds, the learned policy beside
the optimal one.

``policy.png`` shows, for FrozenLake, CliffWalking, Maze and Taxi, the map with the
greedy actions as arrows over V = max_a Q as a heat map; where Q* is known (value
iteration on the exact model) the optimal policy is drawn beside it on the same colour
scale, and the cells where the learned greedy policy may act sub-optimally are outlined
in red in both. A table of numbers says little about *what* was learned; this shows at a
glance where the policy is right, where it is wrong and how far values have spread.

matplotlib is optional (``pip install 'jaxq[plot]'``) and imported only when a picture is
drawn. Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly,
never through ``pyplot``: drawing changes no global matplotlib state (backend, rcParams,
open figures) of the process that calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

# Arrows are drawn while a panel has at most this many rows and columns; above it they
# would be a few pixels wide, so only the heat map (and the differing cells) is drawn.
MAX_ARROW_CELLS = 48
# A heat map above this many rows or columns is shown as block means (a 4096x4096 maze
# would otherwise be a 16.7M-pixel image for a few hundred pixels of figure).
MAX_IMAGE_CELLS = 512
PLOT_EXTRA = "pip install 'jaxq[plot]'"


def matplotlib_available() -> bool:
    """Whether the optional plotting dependency is installed (nothing is imported)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


# ---- which actions are greedy, which optimal, where they differ (pure NumPy) -----------

def greedy_sets(q: np.ndarray, atol: float = 0.0, rtol: float = 0.0) -> np.ndarray:
    """``[S, A]`` bool: the actions whose value is within ``atol + rtol * |max|`` of their
    row's maximum. With the default zero tolerance these are exactly the actions jaxq's
    greedy policy picks among (it breaks exact ties uniformly at random). ``-inf`` cells
    (masked actions in Q*) are never in a set."""
    q = np.asarray(q, np.float64)
    finite = np.isfinite(q)
    best = np.max(np.where(finite, q, -np.inf), axis=-1, keepdims=True)
    tol = atol + rtol * np.abs(np.where(np.isfinite(best), best, 0.0))
    return finite & (q >= best - tol)


def policy_differs(q: np.ndarray, q_star: np.ndarray, atol: float = 1e-5,
                   rtol: float = 1e-4) -> np.ndarray:
    """``[S]`` bool: the states where the learned greedy policy may take an action that is
    not optimal.

    An action is *optimal* where its Q* is within ``atol + rtol * |max_a Q*|`` of the
    row's maximum (value iteration's float32 answer tells genuine ties apart only up to
    such a tolerance, and many grid states have several equally good moves). The learned
    policy picks uniformly among the actions tied at the maximum of Q (exactly, as jaxq
    does), so a state is marked as soon as *one* of those is not optimal: a row of
    untouched ``q_init`` values counts as wrong unless every action is optimal there.
    States whose Q* row is entirely ``-inf`` or that have no valid action are never marked.
    """
    q, q_star = np.asarray(q), np.asarray(q_star)
    if q.shape != q_star.shape or q.ndim != 2:
        raise ValueError(f"q and q_star must be [S, A] tables of one shape, got "
                         f"{list(q.shape)} and {list(q_star.shape)}")
    valid = np.isfinite(q_star)
    learned = greedy_sets(np.where(valid, q, -np.inf))
    optimal = greedy_sets(q_star, atol, rtol)
    return np.any(learned & ~optimal, axis=-1)


# ---- grid layouts of the environments that have a map ----------------------------------

@dataclass
class Panel:
    """One map: which state each cell shows (-1: none), how each cell is drawn."""

    title: str
    states: np.ndarray  # int [nrow, ncol], -1 where the panel has no state
    blocked: np.ndarray  # bool [nrow, ncol]: never occupied (wall, cliff) or absorbing
    goal: np.ndarray  # bool [nrow, ncol]
    labels: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)  # text, colour
    walls: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0 y0 x1 y1


@dataclass
class GridLayout:
    """How an environment's states lie on a map: panels, and what each action looks like:
    a unit move ``(dcol, drow)`` drawn as an arrow, or a letter (Taxi's P and D)."""

    env_name: str
    panels: list[Panel]
    moves: dict[int, tuple[int, int]]
    letters: dict[int, str]
    panel_columns: int = 1
    note: str = ""


_LDRU = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # FrozenLake, Maze: LEFT DOWN RIGHT UP


def grid_layout(env: Any, params: Any) -> GridLayout | None:
    """The map of FrozenLake, CliffWalking, Maze and Taxi environments; ``None`` for any
    other environment (no picture is drawn for those)."""
    from jaxq.envs import cliff_walking, frozen_lake, maze, taxi

    if isinstance(env, frozen_lake.FrozenLake):
        tiles = np.asarray(params.tiles).reshape(env.nrow, env.ncol)
        labels = {(int(r), int(c)): ("S", "black") for r, c in np.argwhere(tiles == frozen_lake.START)}
        labels.update({(int(r), int(c)): ("H", "white")
                       for r, c in np.argwhere(tiles == frozen_lake.HOLE)})
        goal = tiles == frozen_lake.GOAL
        labels.update({(int(r), int(c)): ("G", "black") for r, c in np.argwhere(goal)})
        panel = Panel("", np.arange(env.num_states).reshape(tiles.shape),
                      tiles == frozen_lake.HOLE, goal, labels)
        return GridLayout(env.name, [panel], _LDRU, {})
    if isinstance(env, cliff_walking.CliffWalking):
        nr, nc = cliff_walking.NROW, cliff_walking.NCOL
        states = np.arange(nr * nc).reshape(nr, nc)
        blocked = np.zeros((nr, nc), bool)
        blocked[-1, 1:-1] = True
        goal = states == cliff_walking.GOAL
        labels = {(nr - 1, 0): ("S", "black"), (nr - 1, nc - 1): ("G", "black")}
        labels.update({(nr - 1, c): ("C", "white") for c in range(1, nc - 1)})
        moves = {cliff_walking.UP: (0, -1), cliff_walking.RIGHT: (1, 0),
                 cliff_walking.DOWN: (0, 1), cliff_walking.LEFT: (-1, 0)}
        return GridLayout(env.name, [Panel("", states, blocked, goal, labels)], moves, {})
    if isinstance(env, maze.Maze):
        shape = (env.nrow, env.ncol)
        states = np.arange(env.num_states).reshape(shape)
        goal = states == env.goal
        labels = {(env.nrow - 1, env.ncol - 1): ("G", "black")}
        if int(params.n_starts) == 1:
            s0 = int(np.asarray(params.starts)[0])
            labels[(s0 // env.ncol, s0 % env.ncol)] = ("S", "black")
        free = np.asarray(params.free).reshape(shape)
        return GridLayout(env.name, [Panel("", states, ~free, goal, labels)], _LDRU, {})
    if isinstance(env, taxi.Taxi):
        return _taxi_layout(env)
    return None


def _taxi_layout(env: Any) -> GridLayout:
    """Taxi as small multiples: one 5x5 map per (passenger location, destination), a row
    per destination, whose columns are the passenger waiting at each of the three other
    depots, then in the taxi. The four slices with the passenger waiting at its own
    destination are never reached (episodes start elsewhere and a delivery ends them) and
    are left out."""
    from jaxq.envs import taxi

    names = "RGYB"
    walls = []
    for r in range(5):
        for c in range(4):
            if taxi.MAP[1 + r][2 * c + 2] == "|":  # a wall east of (r, c)
                walls.append((c + 0.5, r - 0.5, c + 0.5, r + 0.5))
    rows, cols = np.divmod(np.arange(25), 5)
    panels = []
    for dest in range(4):
        for pas in [p for p in range(4) if p != dest] + [taxi.IN_TAXI]:
            states = taxi.encode(rows, cols, pas, dest).reshape(5, 5)
            labels = {}
            for i, (r, c) in enumerate(taxi.DEPOTS):
                colour = ("tab:red" if i == dest else "tab:blue" if i == pas else "dimgray")
                labels[(r, c)] = (names[i], colour)
            where = "in taxi" if pas == taxi.IN_TAXI else f"at {names[pas]}"
            panels.append(Panel(f"{where} \u2192 {names[dest]}", states,
                                np.zeros((5, 5), bool), np.zeros((5, 5), bool), labels, walls))
    moves = {taxi.SOUTH: (0, 1), taxi.NORTH: (0, -1), taxi.EAST: (1, 0), taxi.WEST: (-1, 0)}
    return GridLayout(env.name, panels, moves, {taxi.PICKUP: "P", taxi.DROPOFF: "D"},
                      panel_columns=4,
                      note="a map per passenger location \u2192 destination (blue: passenger's "
                           "depot, red: destination); P pickup, D dropoff")


# ---- drawing ---------------------------------------------------------------------------

def _block_reduce(a: np.ndarray, k: int, how: str) -> np.ndarray:
    """``a`` [nrow, ncol] reduced over k x k blocks (NaN-padded): mean of the finite
    values, or any of a bool mask."""
    nr, nc = a.shape
    pr, pc = -nr % k, -nc % k
    if how == "any":
        b = np.pad(a, ((0, pr), (0, pc))).reshape((nr + pr) // k, k, (nc + pc) // k, k)
        return b.any(axis=(1, 3))
    b = np.pad(a.astype(np.float64), ((0, pr), (0, pc)), constant_values=np.nan)
    b = b.reshape((nr + pr) // k, k, (nc + pc) // k, k)
    count = np.isfinite(b).sum(axis=(1, 3))
    total = np.where(np.isfinite(b), b, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _draw_panel(ax, panel: Panel, layout: GridLayout, q: np.ndarray, acts: np.ndarray,
                differs: np.ndarray | None, norm, cmap, ox: float = 0.0, oy: float = 0.0) -> str:
    """One map on ``ax`` with its top-left cell centred at ``(ox, oy)`` (cell = 1 data
    unit, rows going down): heat map of V, arrows of ``acts`` (an ``[S, A]`` bool set per
    state), red outlines where ``differs``. Small multiples share one axes (drawing 32
    matplotlib axes for Taxi costs seconds; 32 images on one costs little). Returns a
    note on what was simplified."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    nr, nc = panel.states.shape
    has = panel.states >= 0
    s = np.where(has, panel.states, 0)
    v = np.max(np.where(np.isfinite(q), q, -np.inf), axis=-1)[s]
    v = np.where(has & ~panel.blocked & np.isfinite(v), v, np.nan)
    special = np.where(panel.blocked, 1, np.where(panel.goal, 2, 0)).astype(float)
    acting = has & ~panel.blocked & ~panel.goal
    mark = (differs[s] & acting) if differs is not None else np.zeros((nr, nc), bool)
    k = max(1, math.ceil(max(nr, nc) / MAX_IMAGE_CELLS))
    note = ""
    if k > 1:
        v = _block_reduce(v, k, "mean")
        special = np.where(_block_reduce(panel.blocked, k, "any")
                           & ~np.isfinite(v), 1.0, 0.0)
        mark = _block_reduce(mark, k, "any")
        note = f"V as {k}x{k} block means"
    extent = (ox - 0.5, ox + nc - 0.5, oy + nr - 0.5, oy - 0.5)
    ax.imshow(np.ma.masked_invalid(v), cmap=cmap, norm=norm, extent=extent,
              interpolation="nearest")
    overlay = np.ma.masked_equal(special, 0)
    ax.imshow(overlay, cmap=ListedColormap(["#3a3a3a", "#f2c200"]), vmin=1, vmax=2,
              extent=extent, interpolation="nearest")
    if max(nr, nc) <= MAX_ARROW_CELLS:
        _draw_actions(ax, panel, layout, acts, ox, oy)
        for (r, c), (text, colour) in panel.labels.items():
            ax.text(ox + c - 0.42, oy + r - 0.42, text, ha="left", va="top", fontsize=7,
                    color=colour, fontweight="bold")
        for r, c in np.argwhere(mark):
            ax.add_patch(Rectangle((ox + c - 0.5, oy + r - 0.5), 1, 1, fill=False, ec="red",
                                   lw=1.8))
    else:
        note = ", ".join(filter(None, [note, f"no arrows above {MAX_ARROW_CELLS}x"
                                              f"{MAX_ARROW_CELLS} cells"]))
        if mark.any():
            red = np.zeros(mark.shape + (4,))
            red[mark] = (1.0, 0.0, 0.0, 0.6)
            ax.imshow(red, extent=extent, interpolation="nearest")
    for x0, y0, x1, y1 in panel.walls:
        ax.plot([ox + x0, ox + x1], [oy + y0, oy + y1], color="black", lw=3,
                solid_capstyle="butt")
    ax.add_patch(Rectangle((ox - 0.5, oy - 0.5), nc, nr, fill=False, ec="black", lw=0.8))
    if panel.title:
        ax.text(ox + (nc - 1) / 2, oy - 0.65, panel.title, ha="center", va="bottom",
                fontsize=8)
    return note


def _draw_actions(ax, panel: Panel, layout: GridLayout, acts: np.ndarray, ox: float,
                  oy: float) -> None:
    """Arrows for moves (one centred arrow where one action is greedy, a star of shorter
    arrows from the centre where several tie) and letters for other actions."""
    show = (panel.states >= 0) & ~panel.blocked & ~panel.goal
    cells = np.argwhere(show)
    if not len(cells):
        return
    sets = acts[panel.states[show]]  # [cells, A]
    one = sets.sum(axis=1) == 1
    for single, pivot, length in ((True, "middle", 0.62), (False, "tail", 0.42)):
        xs, ys, us, ws = [], [], [], []
        for (r, c), row, is_one in zip(cells, sets, one):
            if is_one != single:
                continue
            for a, (dx, dy) in layout.moves.items():
                if row[a]:
                    xs.append(ox + c), ys.append(oy + r)
                    us.append(dx * length), ws.append(dy * length)
        if xs:
            # units="xy": shaft width in cells, so arrows look alike on any map shape
            ax.quiver(xs, ys, us, ws, angles="xy", scale_units="xy", scale=1, pivot=pivot,
                      units="xy", color="black", width=0.07 if single else 0.05,
                      headwidth=3.2, headlength=3.2, headaxislength=2.8)
    for (r, c), row in zip(cells, sets):
        text = "".join(letter for a, letter in layout.letters.items() if row[a])
        if text:
            ax.text(ox + c, oy + r, text, ha="center", va="center", fontsize=8, fontweight="bold",
                    color="black")


def policy_figure(env: Any, params: Any, q: np.ndarray, q_star: np.ndarray | None = None,
                  title: str = "") -> Any | None:
    """A ``matplotlib.figure.Figure`` of the learned greedy policy (and the optimal one
    beside it where ``q_star`` is given), or ``None`` for an environment without a map.

    ``q`` is ``[S, A]`` (for ``[N, S, A]`` pass one learner's table). Raises ImportError
    without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    layout = grid_layout(env, params)
    if layout is None:
        return None
    q = np.asarray(q, np.float64)
    n_states = env.observation_space(params).n
    if q.shape != (n_states, env.num_actions):
        raise ValueError(f"q must be [{n_states}, {env.num_actions}] for {env.name}, got "
                         f"{list(q.shape)}")
    differs = None
    sides = [("learned: greedy on Q", q, greedy_sets(q))]
    if q_star is not None:
        q_star = np.asarray(q_star, np.float64)
        differs = policy_differs(q, q_star)
        sides.append(("optimal: greedy on Q* (value iteration)", q_star,
                      greedy_sets(q_star, 1e-5, 1e-4)))
    # the states an agent acts in: not walls, cliffs, holes or goals
    shown = np.concatenate([p.states[(p.states >= 0) & ~p.blocked & ~p.goal].ravel()
                            for p in layout.panels if p is not None])
    values = np.concatenate([np.max(np.where(np.isfinite(t), t, -np.inf), axis=-1)[shown]
                             for _, t, _ in sides])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    norm = Normalize(lo, hi)
    cmap = _cmap()

    cols = layout.panel_columns
    rows = math.ceil(len(layout.panels) / cols)
    nr, nc = next(p for p in layout.panels if p is not None).states.shape
    titled = any(p is not None and p.title for p in layout.panels)
    gap_x, gap_y = (0.6, 1.4) if titled else (0.6, 0.6)  # between small multiples, in cells
    span_x = cols * nc + (cols - 1) * gap_x
    span_y = rows * nr + (rows - 1) * gap_y + (0.9 if titled else 0.0)
    cell = min(0.45, 7.0 / max(nr, nc)) if cols == 1 else 0.3
    width = len(sides) * max(span_x * cell, 2.2) + 1.5
    height = max(span_y * cell, 1.0) + 1.3
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sides), squeeze=False)[0]
    notes = set()
    for ax, (name, table, acts) in zip(axes, sides):
        for i, panel in enumerate(layout.panels):
            if panel is not None:
                row, col = divmod(i, cols)
                notes.add(_draw_panel(ax, panel, layout, table, acts, differs, norm, cmap,
                                      col * (nc + gap_x), row * (nr + gap_y)))
        ax.set_xlim(-0.5, span_x - 0.5)
        ax.set_ylim(span_y - 0.5 - (0.9 if titled else 0.0), -0.5 - (0.9 if titled else 0.0))
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(name, fontsize=9)
    from matplotlib.cm import ScalarMappable
    fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes), shrink=0.8, aspect=30,
                 label="V(s) = max_a Q(s, a)")
    lines = [title] if title else []
    if differs is not None:
        n = int(differs[shown].sum())  # the states on the map (Taxi: reachable slices)
        lines.append(f"red: {n} state{'' if n == 1 else 's'} where the learned greedy policy "
                     "may pick a non-optimal action")
    extra = "; ".join(sorted(n for n in notes if n) + ([layout.note] if layout.note else []))
    if extra:
        lines.append(extra)
    fig.suptitle("\n".join(lines), fontsize=10)
    return fig


def _cmap():
    """A light sequential colour map (black arrows stay readable on every value) whose
    "bad" colour (cells with no value) is white."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    # YlGnBu without its darkest quarter, where black arrows would vanish
    cmap = ListedColormap(colormaps["YlGnBu"](np.linspace(0.0, 0.72, 256)), "jaxq_values")
    return cmap.with_extremes(bad="white")


def save_policy(path: str, env: Any, params: Any, q: np.ndarray,
                q_star: np.ndarray | None = None, title: str = "") -> bool:
    """Write ``policy.png``-style picture to ``path``; False (nothing written) for an
    environment without a map. ``q`` may be ``[N, S, A]`` (one table per learner): the
    first learner's is drawn, and the title says so."""
    q = np.asarray(q)
    if q.ndim == 3:
        title = f"{title} (learner 0 of {q.shape[0]})" if title else f"learner 0 of {q.shape[0]}"
        q = q[0]
    fig = policy_figure(env, params, q, q_star, title)
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    return True


# ---- learning curve --------------------------------------------------------------------

def history_from_json(history: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``metrics.json``'s ``history`` (lists with ``null`` for NaN) as float arrays."""
    return {k: np.array([np.nan if x is None else x for x in v], np.float64)
            for k, v in history.items()}


def save_learning_curve(path: str, metrics: Mapping[str, np.ndarray], title: str,
                        has_success: bool) -> None:
    """Return (and success rate, where the environment defines success) against env
    steps, for the training episodes and the greedy evaluations."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.asarray(metrics["env_steps"])
    fig = Figure(figsize=(10 if has_success else 5, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_success else 1, squeeze=False)[0]
    ax_r = axes[0]
    eval_return = np.asarray(metrics["eval_return"], np.float64)
    ev = ~np.isnan(eval_return)
    ax_r.plot(x, metrics["mean_return"], label="training episodes")
    if ev.any():
        ax_r.plot(x[ev], eval_return[ev], "o-", label="greedy evaluation")
    fig.suptitle(title)
    ax_r.set(xlabel="env steps", ylabel="mean return")
    ax_r.legend()
    if has_success:
        ax_s = axes[1]
        ax_s.plot(x, metrics["success_rate"], label="training episodes")
        if ev.any():
            ax_s.plot(x[ev], np.asarray(metrics["eval_success"])[ev], "o-",
                      label="greedy evaluation")
        ax_s.set(xlabel="env steps", ylabel="success rate", ylim=(-0.02, 1.02))
        ax_s.legend()
    fig.savefig(path, dpi=100)
