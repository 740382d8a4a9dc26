"""``jaxq.ray.sweep``: a grid of runs (seeds x learning rates x epsilons x gammas ...) cut
into blocks, each block one vmapped ``make_train`` call in one Ray task, the tasks spread
over every CPU (or GPU) slot of the cluster; lost blocks are retried by Ray."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from jaxq.config import TrainConfig

# the keys a grid may sweep: the seed and every HParams leaf
GRID_KEYS = ("seed", "lr", "lr_end", "visit_power", "epsilon", "epsilon_end", "temperature",
             "temperature_end", "gamma")


@dataclass
class SweepResult:
    """One row per grid point (its settings, max|Q - Q*|, the greedy policy's exact value
    V^pi(start) against V*(start) where the model is exact, the last chunk's training
    return) and the learned tables ``q`` ``[G, S, A]`` in grid order."""

    keys: list[str]
    rows: list[dict[str, Any]]
    q: np.ndarray
    blocks: int
    retried_blocks: list[int]
    wall_s: float

    def heatmap(self, path: str, value: str = "greedy_value") -> bool:
        """A heat map of ``value`` (mean over seeds) over the first two swept keys other
        than the seed (one row if only one is swept); False if there is none to draw."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        axes = [k for k in self.keys if k != "seed"]
        if not axes:
            return False
        ky = axes[0]
        kx = axes[1] if len(axes) > 1 else None
        ys = sorted({r[ky] for r in self.rows})
        xs = sorted({r[kx] for r in self.rows}) if kx else [None]
        grid = np.full((len(ys), len(xs)), np.nan)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                vals = [r[value] for r in self.rows
                        if r[ky] == y and (kx is None or r[kx] == x) and r[value] is not None]
                grid[i, j] = np.mean(vals) if vals else np.nan
        fig = Figure(figsize=(1.2 * len(xs) + 3, 0.6 * len(ys) + 2), constrained_layout=True)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(len(ys)):
            for j in range(len(xs)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", color="w")
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_ylabel(ky)
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs] if kx else [""])
        if kx:
            ax.set_xlabel(kx)
        fig.colorbar(im, ax=ax, label=value + (" (mean over seeds)" if "seed" in self.keys else ""))
        fig.savefig(path, dpi=100)
        return True


def check_grid(grid: dict[str, Any]) -> dict[str, list]:
    """A grid: a non-empty mapping from ``GRID_KEYS`` to non-empty lists of numbers (seeds:
    ints >= 0); a ValueError naming the key otherwise."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid must be a non-empty dict of {list(GRID_KEYS)} -> lists of values")
    out = {}
    for key, values in grid.items():
        if key not in GRID_KEYS:
            raise ValueError(f"grid key {key!r} cannot be swept; accepted: {list(GRID_KEYS)}")
        values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else [values]
        if not values:
            raise ValueError(f"grid[{key!r}] is empty")
        for v in values:
            ok = (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
                  if key == "seed" else
                  isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                  and np.isfinite(v))
            if not ok:
                what = "ints >= 0" if key == "seed" else "finite numbers"
                raise ValueError(f"grid[{key!r}] must hold {what}, got {v!r}")
        out[key] = [int(v) if key == "seed" else float(v) for v in values]
    return out


def grid_points(config: "TrainConfig", grid: dict[str, list]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The grid's points in order (the last key varies fastest): seeds ``[G]`` and every
    HParams leaf ``[G]`` (unswept leaves at the config's value). Each point is validated
    as a TrainConfig, so a bad value is refused before anything runs."""
    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    base = config.hparams()
    leaves = {f: [] for f in GRID_KEYS[1:]}
    seeds = []
    for p in points:
        d = dict(zip(keys, p))
        config.replace(**{k: v for k, v in d.items()})  # TrainConfig's own checks
        seeds.append(d.get("seed", config.seed))
        for f in leaves:
            leaves[f].append(d.get(f, float(getattr(base, f))))
    return (np.asarray(seeds, np.uint32),
            {f: np.asarray(v, np.float32) for f, v in leaves.items()})


def train_block(config_json: str, seeds: np.ndarray, leaves: dict[str, np.ndarray],
                cache_dir: str | None = None):
    """One block: ``jax.jit(jax.vmap(make_train(config)))`` over the block's keys and
    hyperparameters; returns the tables ``[b, S, A]`` and each run's last training return."""
    import json

    import jax
    import jax.numpy as jnp

    from jaxq import compile_cache
    from jaxq.config import TrainConfig
    from jaxq.training import make_train

    config = TrainConfig.from_dict(json.loads(config_json))
    train = make_train(config)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    hp = config.hparams().replace(**{f: jnp.asarray(v) for f, v in leaves.items()})
    run = compile_cache.compile(jax.jit(jax.vmap(train)).lower(keys, hp), cache_dir)
    out = run(keys, hp)
    ret = out.metrics["return_sum"][:, -1] / jnp.maximum(out.metrics["episodes"][:, -1], 1)
    return np.asarray(out.q), np.asarray(ret)


def _remote_block(config_json, seeds, leaves, fault_dir, block, cache_dir=None):
    """The Ray task: ``train_block``; with ``fault_dir``, the first attempt of a block
    listed there dies (the test of a lost block's retry)."""
    if fault_dir is not None:
        marker = os.path.join(fault_dir, f"block_{block}")
        if os.path.exists(marker + ".die"):
            os.remove(marker + ".die")
            open(marker + ".retried", "w").close()
            os._exit(1)
    return train_block(config_json, seeds, leaves, cache_dir)
