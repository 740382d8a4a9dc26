"""Helpers shared by the grid worlds: random maps with a guaranteed path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def slip_directions(a: jax.Array, is_slippery: bool) -> jax.Array:
    """The ``[K]`` headings of action ``a`` on a 4-direction grid: ``[a]``, or
    ``[(a-1)%4, a, (a+1)%4]`` when slippery (Gymnasium's order for FrozenLake and
    CliffWalking, which duplicate-clamped entries in ``P`` depend on)."""
    if is_slippery:
        return jnp.stack([(a - 1) % 4, a, (a + 1) % 4])
    return jnp.reshape(a, (1,))


def monotone_path_mask(rng: np.random.Generator, nrow: int, ncol: int) -> np.ndarray:
    """A ``[nrow, ncol]`` bool mask of a random right/down path from (0, 0) to the corner.

    The order of the (nrow - 1) down moves and (ncol - 1) right moves is a uniformly
    random permutation, so generated maps are not biased to one diagonal. Keeping these
    cells free guarantees that the bottom-right corner is reachable, without a search.
    """
    moves = np.zeros(nrow + ncol - 2, dtype=bool)  # True = down
    moves[: nrow - 1] = True
    rng.shuffle(moves)
    rows = np.concatenate([[0], np.cumsum(moves)])
    cols = np.concatenate([[0], np.cumsum(~moves)])
    mask = np.zeros((nrow, ncol), dtype=bool)
    mask[rows, cols] = True
    return mask


def check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """Validate an integer parameter, with a message naming it and the accepted range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    hi = "" if maximum is None else f" and <= {maximum}"
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be >= {minimum}{hi}, got {value}")
    return value


def check_probability(name: str, value, low_open: bool = False) -> float:
    """Validate a probability in [0, 1] (or (0, 1] when ``low_open``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}") from None
    ok = (0.0 < v <= 1.0) if low_open else (0.0 <= v <= 1.0)
    if not ok or v != v:
        rng = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return v
