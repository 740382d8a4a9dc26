"""Greedy-policy evaluation by vectorized rollouts, the way RL results are reported."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq import prng
from jaxq.explore import greedy, halves, mask_columns, q_columns
from jaxq.vecenv import VecEnv, time_limit


class Evaluation(NamedTuple):
    """Python floats from ``evaluate``; 0-d arrays from the jit-able ``rollouts``."""

    mean_return: float
    success_rate: float  # NaN where the env defines no success
    mean_length: float
    finished: float  # share of episodes that ended (terminated or truncated) within the cap


def check_finite(name: str, q, env, params) -> None:
    """Refuse a table with NaN or +inf anywhere, or -inf in a cell whose action may be
    taken; -inf is legitimate only in an invalid action's cell of an action-masked env
    (value iteration puts it there). The error names ``name`` and the first bad cell."""
    q = np.asarray(q)
    bad = ~np.isfinite(q)
    if not bad.any():
        return
    if getattr(env, "has_action_mask", False) and q.ndim == 2:
        states = jnp.arange(q.shape[0], dtype=jnp.int32)
        valid = np.stack([np.asarray(v) for v in env.valid_actions(states, params)], axis=-1)
        bad &= ~((q == -np.inf) & ~valid)
        if not bad.any():
            return
    cell = tuple(int(i) for i in np.argwhere(bad)[0])
    where = "" if q[cell] != -np.inf else " (a valid action's cell)"
    raise ValueError(f"{name} holds a non-finite value: q[{', '.join(map(str, cell))}] = "
                     f"{q[cell]}{where}; {int(bad.sum())} bad cell(s) in all")


def evaluate(env, params, q, num_episodes: int = 1000, key=None, max_steps: int = 1000) -> Evaluation:
    """Run ``num_episodes`` greedy episodes in parallel (ties broken at random); returns
    an ``Evaluation`` of Python floats.

    Each episode runs until it terminates, hits the env's time limit, or ``max_steps``
    (a cap for environments registered without a time limit, e.g. CliffWalking, where a
    bad greedy policy can loop forever). A table with NaN or infinite values is refused
    (``check_finite``), since its greedy policy means nothing.
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    venv = VecEnv(env, params, num_episodes)
    if not venv.tabular:
        raise ValueError(f"{env.name} observes vectors ({venv.obs_shape}), not state indices: "
                         "a Q-table cannot be evaluated on it; train with q_function='tiles' "
                         "(its periodic evaluation rolls out the greedy policy) or discretize "
                         "the env (bins=...)")
    q = jnp.asarray(q)
    expected = (venv.num_states, venv.num_actions)
    if q.shape != expected:
        raise ValueError(f"q must have shape {list(expected)} for {env.name}, got {list(q.shape)}")
    if not jnp.issubdtype(q.dtype, jnp.floating):
        raise TypeError(f"q must be a float array, got dtype {q.dtype}")
    check_finite("q", q, env, params)
    key = jax.random.key(0) if key is None else key
    cap = int(min(max_steps, time_limit(params)))
    ev = rollouts(venv, params, q.astype(jnp.float32), key, cap)
    return Evaluation(*(float(x) for x in jax.device_get(ev)))


@partial(jax.jit, static_argnums=(0, 4, 5))
def rollouts(venv: VecEnv, params, q, key, cap: int, values_fn=None) -> Evaluation:
    """The jit-able core of ``evaluate`` (also called inside training).

    ``q``: an ``[S, A]`` table read at state indices, or, with ``values_fn`` (a hashable
    ``(q, obs) -> columns``, e.g. a Q-function's bound ``global_values``), any
    Q-function's parameters: the greedy policy of ``values_fn(q, obs)`` is rolled out,
    so function approximators are evaluated the same way as tables."""
    n = venv.num_envs
    tables = venv.prepare(params)
    k_reset, key = jax.random.split(key)
    obs, state = venv.reset(k_reset, params)
    zeros_f, zeros_b = jnp.zeros(n, jnp.float32), jnp.zeros(n, bool)

    def cond(c):
        return jnp.logical_and(c[0] < cap, ~jnp.all(c[5]))

    def body(c):
        t, key, obs, state, ret, done, success, length = c
        key, k_u, k_env = jax.random.split(key, 3)
        words = prng.bits(k_u, (1 + venv.num_words, n))
        cols = (q_columns(q.reshape(-1), obs, q.shape[1]) if values_fn is None
                else values_fn(q, obs))
        if venv.has_action_mask:
            cols = mask_columns(cols, venv.env.valid_actions(obs, params))
        action = greedy(cols, halves(words[0])[1])
        env_keys = None if venv.fast else jax.random.split(k_env, n)
        obs, state, r, term, trunc, _, succ = venv.step(env_keys, words[1:], state, action,
                                                        params, tables)
        live = ~done
        ret = ret + jnp.where(live, r, 0.0)
        length = length + live.astype(jnp.int32)
        success = success | (live & succ)
        done = done | (live & (term | trunc))
        return t + 1, key, obs, state, ret, done, success, length

    c = (jnp.int32(0), key, obs, state, zeros_f, zeros_b, zeros_b, jnp.zeros(n, jnp.int32))
    _, _, _, _, ret, done, success, length = jax.lax.while_loop(cond, body, c)
    sr = jnp.mean(success.astype(jnp.float32)) if venv.has_success else jnp.float32(jnp.nan)
    return Evaluation(jnp.mean(ret), sr, jnp.mean(length.astype(jnp.float32)),
                      jnp.mean(done.astype(jnp.float32)))


def as_floats(e: Evaluation) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in e._asdict().items()}
