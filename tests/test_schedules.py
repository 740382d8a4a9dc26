"""Schedules are finite for every endpoint a config or a vmapped sweep may give, 0 included
(optax's cosine divides by the start: epsilon 0 -> NaN -> a silently greedy run)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxq.config import TrainConfig
from jaxq.explore import SCHEDULES, make_schedule
from jaxq.training import build_learner

STEPS = 100
T = jnp.arange(0, 2 * STEPS, dtype=jnp.int32)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("start,end", [(0.0, 0.5), (0.5, 0.0), (0.0, 0.0), (1.0, 0.05)])
def test_schedule_is_finite_and_between_its_ends(kind, start, end):
    v = np.asarray(jax.jit(jax.vmap(make_schedule(kind, jnp.float32(start), jnp.float32(end), STEPS)))(T))
    assert np.isfinite(v).all(), (kind, start, end, v)
    lo, hi = min(start, end), max(start, end)
    assert (v >= lo - 1e-7).all() and (v <= hi + 1e-7).all()
    assert v[0] == pytest.approx(start, abs=1e-7)
    if kind != "constant":
        assert v[STEPS:] == pytest.approx(end, abs=1e-7)  # reached, then held


@settings(max_examples=40, deadline=None)
@given(start=st.floats(0.0, 1.0), end=st.floats(0.0, 1.0), t=st.integers(0, 3 * STEPS),
       kind=st.sampled_from(["linear", "cosine", "exponential"]))
def test_schedules_are_monotone_from_start_to_end(start, end, t, kind):
    f = make_schedule(kind, jnp.float32(start), jnp.float32(end), STEPS)
    a, b = float(f(jnp.int32(t))), float(f(jnp.int32(t + 1)))
    assert np.isfinite(a) and np.isfinite(b)
    if start >= end:
        assert b <= a + 1e-6
    else:
        assert b >= a - 1e-6


def test_cosine_epsilon_from_zero_explores():
    """--epsilon-schedule cosine --epsilon 0 --epsilon-end 1: the run ends fully random.
    On the NaN schedule every action was greedy; here (after the schedule) each of the 4
    actions of a fresh FrozenLake state is taken about equally often."""
    cfg = TrainConfig(env_id="FrozenLake-v1", num_envs=4096, total_steps=4096 * 4, num_chunks=1,
                      epsilon=0.0, epsilon_end=1.0, epsilon_schedule="cosine",
                      epsilon_decay_fraction=0.25, q_init=0.0, eval_every=0)
    learner = build_learner(cfg, init_q=jnp.tile(jnp.array([[0.0, 0.0, 1.0, 0.0]]), (16, 1)))
    hp = cfg.hparams()
    c = jax.jit(learner.init)(jax.random.key(0), hp)  # one compile, not one per op
    c = c._replace(t=jnp.int32(cfg.plan()["iterations"] - 1))  # epsilon = end = 1
    _, _, tr = jax.jit(learner.step)(c, hp)
    counts = np.bincount(np.asarray(tr.a), minlength=4)
    assert counts.min() > 0.2 * 4096, counts  # greedy would take action 2 only
