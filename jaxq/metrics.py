"""What a run reports: step statistics summed on device, a per-chunk evaluation, and
the host-side history with exact counters.

On device, each step adds a ``StepStats`` of int32 counts and float sums into the
chunk's total (a chunk's counts are at most its env steps, < 2**31 by ``TrainConfig``);
at the chunk's end ``chunk_metrics`` adds max|Q - Q*| and, every ``eval_every`` chunks,
a greedy evaluation by rollouts. On the host, ``host_metrics`` turns the per-chunk sums
into means and int64 running totals, so step and episode counts stay exact past 2**31.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxq.evaluation import rollouts
from jaxq.vecenv import VecEnv


class StepStats(NamedTuple):
    """Additive per-chunk statistics: int32 counts of one chunk (at most its env steps,
    < 2**31 by ``TrainConfig``; hosts sum them exactly in int64) and float sums."""

    episodes: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array
    successes: jax.Array
    abs_td_sum: jax.Array
    td_count: jax.Array


def zero_stats() -> StepStats:
    return StepStats(jnp.int32(0), jnp.float32(0), jnp.float32(0), jnp.int32(0),
                     jnp.float32(0), jnp.int32(0))


def step_stats(done, ep_return, ep_length, success, updated, td) -> StepStats:
    """One step's statistics of this device's envs: episodes that ended (with the
    return and length they reached, counting this step) and the |TD| of the entries
    that were applied."""
    return StepStats(
        episodes=jnp.sum(done, dtype=jnp.int32),
        return_sum=jnp.sum(jnp.where(done, ep_return, 0.0)),
        # float, like return_sum: the lengths of one chunk's episodes may sum past
        # 2**31 (long episodes started in earlier chunks); a mean needs no exact sum
        length_sum=jnp.sum(jnp.where(done, ep_length, 0).astype(jnp.float32)),
        successes=jnp.sum(success, dtype=jnp.int32),
        abs_td_sum=jnp.sum(jnp.where(updated, jnp.abs(td), 0.0)),
        td_count=jnp.sum(updated, dtype=jnp.int32),
    )


def q_error(q_est: jax.Array, q_star: jax.Array | None) -> jax.Array:
    """max |Q - Q*| over the valid cells (Q* is -inf where an action is masked out);
    NaN without a Q*."""
    if q_star is None:
        return jnp.float32(jnp.nan)
    return jnp.max(jnp.where(jnp.isfinite(q_star), jnp.abs(q_est - q_star), 0.0))


class PeriodicEvaluation(NamedTuple):
    """A greedy evaluation of ``episodes`` rollouts (capped at ``cap`` steps) every
    ``every`` chunks and after the last one (``every`` = 0: never).

    ``values_fn`` None: ``q`` is an ``[S, A]`` table; otherwise ``q`` is a Q-function's
    parameters and ``values_fn(q, obs)`` its greedy columns (``evaluation.rollouts``)."""

    every: int
    num_chunks: int
    venv: VecEnv | None
    cap: int
    values_fn: Any = None

    def __call__(self, chunk: jax.Array, key: jax.Array, env_params: Any,
                 q_est: jax.Array) -> tuple[jax.Array, ...]:
        nan = jnp.float32(jnp.nan)
        if self.every <= 0:
            return (nan,) * 4
        due = (chunk % self.every == 0) | (chunk == self.num_chunks)
        k_eval = jax.random.fold_in(key, chunk)
        return jax.lax.cond(
            due, lambda: tuple(rollouts(self.venv, env_params, q_est, k_eval, self.cap,
                                        self.values_fn)),
            lambda: (nan, nan, nan, nan))


def chunk_metrics(stats: StepStats, q_err: jax.Array,
                  evaluation: tuple[jax.Array, ...]) -> dict[str, jax.Array]:
    """A chunk's device metrics: its summed statistics, max|Q - Q*|, the evaluation."""
    metrics = stats._asdict()
    metrics["q_error"] = q_err
    metrics.update(zip(("eval_return", "eval_success", "eval_length", "eval_finished"),
                       evaluation))
    return metrics


def host_metrics(raw: dict[str, np.ndarray], start_chunk: int, chunk_iters: int,
                 num_envs: int, has_success: bool = True) -> dict[str, np.ndarray]:
    """Per-chunk device sums -> the reported history; counters become exact int64 totals.
    ``has_success=False`` (an env that defines no success, e.g. most gymnax ones): the
    success rate is NaN, as evaluation reports it, not 0."""
    n_chunks = len(raw["episodes"])
    chunk_ids = np.arange(start_chunk + 1, start_chunk + n_chunks + 1, dtype=np.int64)
    eps = raw["episodes"].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        success = raw["successes"] / eps if has_success else np.full(n_chunks, np.nan)
        out = {
            "env_steps": chunk_ids * chunk_iters * num_envs,
            "episodes_in_chunk": eps,
            "mean_return": raw["return_sum"] / eps,
            "success_rate": success,
            "mean_length": raw["length_sum"].astype(np.float64) / eps,
            "mean_abs_td": raw["abs_td_sum"] / raw["td_count"].astype(np.int64),
            "q_error": np.asarray(raw["q_error"], np.float64),
            "eval_return": np.asarray(raw["eval_return"], np.float64),
            "eval_success": np.asarray(raw["eval_success"], np.float64),
            "eval_length": np.asarray(raw["eval_length"], np.float64),
        }
    if "eval_finished" in raw:
        out["eval_finished"] = np.asarray(raw["eval_finished"], np.float64)
    return out


def append_history(history: dict[str, np.ndarray],
                   new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``history`` with ``new`` chunks appended (a history from an older checkpoint may
    lack a newer figure: NaN for its chunks)."""
    if not history:
        return new
    missing = lambda k: np.full(len(history["env_steps"]), np.nan)  # noqa: E731
    return {k: np.concatenate([history.get(k, missing(k)), new[k]]) for k in new}
