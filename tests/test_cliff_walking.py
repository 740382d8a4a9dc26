import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxq
from jaxq.envs.base import INT32_MAX
from jaxq.envs.cliff_walking import DOWN, GOAL, LEFT, RIGHT, START, UP
from parity import (assert_model_equals_gymnasium, assert_step_matches_model, gymnasium_q_star,
                    gymnasium_start_value)
from test_taxi import rollout  # shared scan over env.step (belongs in parity.py)

# Gymnasium >= 1.2 deprecates CliffWalking-v0 and adds is_slippery.
GYM_ID = "CliffWalking-v1" if "CliffWalking-v1" in gym.registry else "CliffWalking-v0"
needs_slippery = pytest.mark.skipif("CliffWalkingSlippery-v1" not in gym.registry,
                                    reason="slippery CliffWalking needs gymnasium >= 1.2")


@pytest.mark.parametrize("env_id", ["CliffWalking-v0", "CliffWalking-v1"])
def test_model_equals_gymnasium(env_id):
    env, params = jaxq.make(env_id)
    assert env.name == env_id and env.num_states == 48 and env.num_actions == 4
    m = jaxq.tabular_model(env, params)
    g = gym.make(GYM_ID)
    assert_model_equals_gymnasium(m, g)
    np.testing.assert_array_equal(np.asarray(m.initial), g.unwrapped.initial_state_distrib)


@needs_slippery
@pytest.mark.parametrize("env_id, kwargs", [("CliffWalkingSlippery-v1", {}),
                                            ("CliffWalking-v1", dict(is_slippery=True))])
def test_slippery_model_equals_gymnasium(env_id, kwargs):
    env, params = jaxq.make(env_id, **kwargs)
    assert env.num_outcomes == 3
    m = jaxq.tabular_model(env, params)
    assert_model_equals_gymnasium(m, gym.make("CliffWalkingSlippery-v1"))
    # From 36, UP lands on 36 by a wall clamp (-1) or a fall (-100): R is the expectation.
    assert float(m.expected_reward()[START, UP]) == pytest.approx(-34.0)


def test_rows_of_cliff_and_goal_are_not_absorbing():
    m = jaxq.tabular_model(*jaxq.make("CliffWalking-v1"))

    def outcome(s, a):
        return int(m.next_state[s, a, 0]), float(m.reward[s, a, 0]), bool(m.terminated[s, a, 0])

    assert outcome(GOAL, UP) == (35, -1.0, False)
    assert outcome(GOAL, LEFT) == (START, -100.0, False)
    assert outcome(GOAL, RIGHT) == outcome(GOAL, DOWN) == (GOAL, -1.0, True)
    assert outcome(40, UP) == (28, -1.0, False)  # a cliff cell's own row: ordinary moves
    assert outcome(40, DOWN) == (START, -100.0, False)  # clamped onto the cliff again
    assert outcome(46, RIGHT) == (GOAL, -1.0, True)


@pytest.mark.parametrize("is_slippery", [False, True])
def test_step_samples_agree_with_model(is_slippery):
    env, params = jaxq.make("CliffWalking-v1", is_slippery=is_slippery)
    m = jaxq.tabular_model(env, params)
    # a cliff fall, a step up, a wall bump at a corner, the goal, the goal's own row
    pairs = [(START, RIGHT), (START, UP), (0, UP), (35, DOWN), (GOAL, LEFT)]
    assert_step_matches_model(env, params, m, pairs, n=2_000 if not is_slippery else 20_000)


def _start(env, params):
    return env.reset(jax.random.key(0), params)[1]


def test_cliff_fall_costs_100_and_the_episode_goes_on():
    env, params = jaxq.make("CliffWalking-v1")
    _, (obs, r, term, trunc, final, _, time) = rollout(env, params, _start(env, params),
                                                    jnp.array([RIGHT, RIGHT]))
    assert np.asarray(obs).tolist() == [START, START] and np.asarray(r).tolist() == [-100, -100]
    assert not np.asarray(term | trunc).any() and np.asarray(time).tolist() == [1, 2]


def test_optimal_path_terminates_at_the_goal_and_auto_resets():
    env, params = jaxq.make("CliffWalking-v1")
    actions = jnp.array([UP] + [RIGHT] * 11 + [DOWN])
    _, (obs, r, term, trunc, final, success, time) = rollout(env, params, _start(env, params),
                                                             actions)
    assert float(np.sum(r)) == -13.0
    assert np.flatnonzero(np.asarray(term)).tolist() == [12] and not np.asarray(trunc).any()
    assert bool(success[12]) and not np.asarray(success[:12]).any()
    assert int(final[12]) == GOAL and int(obs[12]) == START and int(time[12]) == 0


def test_no_time_limit_by_default_but_max_steps_truncates():
    env, params = jaxq.make("CliffWalking-v1")
    assert params.max_steps_in_episode == INT32_MAX
    start = _start(env, params)
    _, (_, _, term, trunc, _, _, time) = rollout(env, params, start, jnp.full(500, UP))
    assert not np.asarray(term | trunc).any() and int(time[-1]) == 500  # bumps the top wall forever
    env, params = jaxq.make("CliffWalkingSlippery-v1", max_steps=3)
    start = _start(env, params)
    _, (_, _, term, trunc, _, _, time) = rollout(env, params, start, jnp.full(4, LEFT))
    # LEFT from 36 slips UP, LEFT or DOWN: never the cliff, never the goal.
    assert not np.asarray(term).any() and np.asarray(trunc).tolist() == [False, False, True, False]
    assert np.asarray(time).tolist() == [1, 2, 0, 1]


def test_optimal_value_from_start():
    m = jaxq.tabular_model(*jaxq.make("CliffWalking-v1"))
    q = jaxq.value_iteration(m, 0.99, tol=1e-7)
    v = float(jaxq.start_value(m, q))
    assert v == pytest.approx(-(1 - 0.99**13) / (1 - 0.99), abs=1e-4)  # the 13-step path
    g = gym.make(GYM_ID)
    q_gym = gymnasium_q_star(g, 0.99)  # value iteration on Gymnasium's own P
    np.testing.assert_allclose(np.asarray(q), q_gym, atol=1e-4)
    assert v == pytest.approx(gymnasium_start_value(g, q_gym.max(1)), abs=1e-4)
    assert int(jnp.argmax(q[START])) == UP  # RIGHT would fall


@settings(max_examples=15, deadline=None)
@given(actions=st.lists(st.integers(0, 3), min_size=60, max_size=60))
def test_trajectories_equal_gymnasium_step(actions):
    # Deterministic CliffWalking and a fixed start: any action sequence, auto-resets
    # included, gives exactly Gymnasium's trajectory.
    env, params = jaxq.make("CliffWalking-v1")
    start = _start(env, params)
    _, (obs, rew, term, _, final, _, _) = rollout(env, params, start, jnp.asarray(actions))
    g = gym.make(GYM_ID).unwrapped
    g.reset(seed=0)
    for t, a in enumerate(actions):
        s, r, done, _, _ = g.step(a)
        assert (int(final[t]), float(rew[t]), bool(term[t])) == (s, r, done), f"step {t}"
        if done:
            s, _ = g.reset()
        assert int(obs[t]) == s


@pytest.mark.parametrize("env_id, kwargs, exc, match", [
    ("CliffWalking-v1", dict(max_steps=0), ValueError, "max_steps"),
    ("CliffWalking-v1", dict(max_steps="10"), TypeError, "max_steps"),
    ("CliffWalking-v1", dict(is_slippery=1), TypeError, "is_slippery"),
    ("CliffWalking-v1", dict(slippery=True), ValueError, "unknown keyword.*slippery"),
    ("CliffWalkingSlippery-v1", dict(map_name="4x12"), ValueError, "unknown keyword.*map_name"),
])
def test_bad_input_is_a_clear_error(env_id, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        jaxq.make(env_id, **kwargs)
