"""n-step targets: a window of each env's last n transitions, and the TD targets of the
entries whose return is complete.

Every function is pure and works on ``[n, N]`` arrays (oldest entry first; observations
``[n, N, *obs_shape]``: state indices, or vectors for function approximation), so
one-step learning is the case n = 1 and nothing else in the loop knows about n::

    window = push(window, s, a, r)                       # the step's transition enters
    update = complete(window, done)                      # oldest entry, or all at an episode's end
    target = nstep_targets(window, gamma, v_next, terminated)
    window = retire(window, update, done)                # updated / ended entries leave

The target of the entry j steps before the newest is

    G = r_j + gamma r_{j+1} + ... + gamma^{m-1} r_{newest} + gamma^m (1 - terminated) V(s')

with m = n - j rewards: a terminated transition never bootstraps, a truncated one (a
time-out) bootstraps from the final observation. Entries of an episode that ended are
completed with the rewards they have (m < n), never mixed with the next episode's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Window(NamedTuple):
    """The last n transitions of every env, oldest first: ``[n, N]`` each (``s``:
    ``[n, N, *obs_shape]``)."""

    s: jax.Array
    a: jax.Array
    r: jax.Array
    pending: jax.Array  # not yet updated, and in the current episode


def empty_window(n: int, num_envs: int, obs_shape: tuple[int, ...] = (),
                 obs_dtype=jnp.int32) -> Window:
    """An all-retired window; observations of ``obs_shape`` (``()``: state indices)."""
    zi = jnp.zeros((n, num_envs), jnp.int32)
    zs = zi if obs_shape == () and obs_dtype == jnp.int32 else jnp.zeros(
        (n, num_envs) + tuple(obs_shape), obs_dtype)
    return Window(zs, zi, jnp.zeros((n, num_envs), jnp.float32), jnp.zeros((n, num_envs), bool))


def push(w: Window, s: jax.Array, a: jax.Array, r: jax.Array) -> Window:
    """Drop the oldest entry, append this step's ``(s, a, r)`` as pending."""
    return Window(
        jnp.concatenate([w.s[1:], s[None]]), jnp.concatenate([w.a[1:], a[None]]),
        jnp.concatenate([w.r[1:], r[None]]),
        jnp.concatenate([w.pending[1:], jnp.ones((1,) + r.shape, bool)]),
    )


def nstep_returns(rewards: jax.Array, gamma) -> jax.Array:
    """``G[j] = sum_{i >= j} gamma^(i-j) r[i]`` over a window ``[n, N]`` (oldest first)."""
    n = rewards.shape[0]
    out = [rewards[n - 1]]
    for j in range(n - 2, -1, -1):
        out.append(rewards[j] + gamma * out[-1])
    return jnp.stack(out[::-1])


def nstep_targets(w: Window, gamma, v_next: jax.Array, terminated: jax.Array) -> jax.Array:
    """Targets ``[n, N]`` of every window entry, bootstrapping from ``v_next`` (the
    rule's value of the newest transition's next state) unless it terminated."""
    n = w.r.shape[0]
    disc = gamma ** jnp.arange(n, 0, -1, dtype=jnp.float32)[:, None]  # gamma^(n-j)
    return nstep_returns(w.r, gamma) + disc * jnp.where(terminated, 0.0, v_next)[None]


def complete(w: Window, done: jax.Array) -> jax.Array:
    """Entries whose return is complete: the oldest (n rewards seen), or every pending
    one of an episode that just ended."""
    n = w.s.shape[0]
    return w.pending & ((jnp.arange(n) == 0)[:, None] | done[None])


def retire(w: Window, updated: jax.Array, done: jax.Array) -> Window:
    """Updated entries, and all entries of an ended episode, are no longer pending."""
    return w._replace(pending=w.pending & ~updated & ~done[None])
