import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxq
from jaxq.envs.frozen_lake import generate_random_map
from parity import (assert_model_equals_gymnasium, assert_step_matches_model, gymnasium_q_star,
                    gymnasium_start_value)


@pytest.mark.parametrize("map_name", ["4x4", "8x8"])
@pytest.mark.parametrize("slippery", [True, False])
def test_model_equals_gymnasium(map_name, slippery):
    env, params = jaxq.make("FrozenLake-v1", map_name=map_name, is_slippery=slippery)
    model = jaxq.tabular_model(env, params)
    assert_model_equals_gymnasium(model, gym.make("FrozenLake-v1", map_name=map_name,
                                                  is_slippery=slippery))


def test_success_rate_and_reward_schedule_match_gymnasium():
    kw = dict(map_name="4x4", is_slippery=True, success_rate=0.6, reward_schedule=(2.0, -1.0, -0.1))
    env, params = jaxq.make("FrozenLake-v1", **kw)
    assert_model_equals_gymnasium(jaxq.tabular_model(env, params), gym.make("FrozenLake-v1", **kw))


def test_custom_desc_matches_gymnasium():
    desc = ["SFH", "FFF", "HFG"]
    env, params = jaxq.make("FrozenLake-v1", desc=desc)
    assert env.num_states == 9
    assert_model_equals_gymnasium(jaxq.tabular_model(env, params), gym.make("FrozenLake-v1", desc=desc))


def test_step_samples_agree_with_model():
    env, params = jaxq.make("FrozenLake-v1", success_rate=0.5)
    model = jaxq.tabular_model(env, params)
    assert_step_matches_model(env, params, model, [(0, 0), (0, 1), (6, 2), (14, 2), (10, 3)])


def test_time_limits_as_registered():
    assert jaxq.make("FrozenLake-v1")[1].max_steps_in_episode == 100
    assert jaxq.make("FrozenLake-v1", map_name="8x8")[1].max_steps_in_episode == 100
    assert jaxq.make("FrozenLake8x8-v1")[1].max_steps_in_episode == 200
    assert jaxq.make("FrozenLake-v1", max_steps=7)[1].max_steps_in_episode == 7


def test_truncation_is_not_termination_and_auto_resets():
    env, params = jaxq.make("FrozenLake-v1", is_slippery=False, max_steps=3)
    _, state = env.reset(jax.random.key(0), params)
    flags = []
    for t in range(3):  # LEFT into the wall: never terminates
        obs, state, r, term, trunc, info = env.step(jax.random.key(t), state, 0, params)
        flags.append((bool(term), bool(trunc)))
    assert flags == [(False, False), (False, False), (False, True)]
    assert int(state.time) == 0 and int(obs) == 0


def test_goal_terminates_with_reward_and_resets():
    env, params = jaxq.make("FrozenLake-v1", is_slippery=False)
    _, state = env.reset(jax.random.key(0), params)
    total, info = 0.0, None
    for t, a in enumerate([1, 1, 2, 1, 2, 2]):  # DOWN DOWN RIGHT DOWN RIGHT RIGHT
        obs, state, r, term, trunc, info = env.step(jax.random.key(t), state, a, params)
        total += float(r)
    assert bool(term) and not bool(trunc) and total == 1.0
    assert int(info["final_observation"]) == 15 and int(obs) == 0 and bool(info["success"])


@pytest.mark.parametrize("env_id, gym_kwargs", [("FrozenLake-v1", {}),
                                               ("FrozenLake8x8-v1", {"map_name": "8x8"})])
def test_optimal_values_match_value_iteration_on_gymnasium(env_id, gym_kwargs):
    """Q* and V*(start) equal float64 value iteration on Gymnasium's own P."""
    env, params = jaxq.make(env_id)
    m = jaxq.tabular_model(env, params)
    q = jaxq.value_iteration(m, 0.99, tol=1e-8)
    g = gym.make("FrozenLake-v1", **gym_kwargs)
    q_gym = gymnasium_q_star(g, 0.99)
    np.testing.assert_allclose(np.asarray(q), q_gym, atol=1e-5)
    v_start = gymnasium_start_value(g, q_gym.max(1))
    assert 0.3 < v_start < 0.6  # a slippery lake: far from certain success
    assert float(jaxq.start_value(m, q)) == pytest.approx(v_start, abs=1e-5)


def _reachable(desc):
    n = len(desc)
    seen, todo = {(0, 0)}, [(0, 0)]
    while todo:
        r, c = todo.pop()
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < n and 0 <= cc < n and (rr, cc) not in seen and desc[rr][cc] != "H":
                seen.add((rr, cc))
                todo.append((rr, cc))
    return (n - 1, n - 1) in seen


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 40), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_generated_maps_have_a_path_and_are_reproducible(size, p, seed):
    desc = generate_random_map(size, p, seed)
    assert desc == generate_random_map(size, p, seed)
    assert len(desc) == size and all(len(r) == size for r in desc)
    assert desc[0][0] == "S" and desc[-1][-1] == "G" and _reachable(desc)


def test_large_generated_map_builds_and_solves():
    env, params = jaxq.make("FrozenLake-v1", size=256, seed=3, is_slippery=False)
    assert env.observation_space(params).n == 65536
    m = jaxq.tabular_model(env, params)
    q = jaxq.value_iteration(m, 0.99)
    assert float(jaxq.start_value(m, q)) > 0  # the goal is reachable


@pytest.mark.parametrize("kwargs, match", [
    (dict(map_name="5x5"), "map_name"),
    (dict(desc=["SF", "F"]), "rectangular"),
    (dict(desc=["SX", "FG"]), "only contain"),
    (dict(desc=["FF", "FG"]), "start"),
    (dict(desc=["SF", "FF"]), "goal"),
    (dict(success_rate=1.5), "success_rate"),
    (dict(size=1), "size"),
    (dict(max_steps=0), "max_steps"),
    (dict(reward_schedule=(1, 0)), "reward_schedule"),
    (dict(slippery=True), "unknown keyword"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxq.make("FrozenLake-v1", **kwargs)


def test_unknown_id_suggests_close_matches():
    with pytest.raises(ValueError, match="FrozenLake-v1"):
        jaxq.make("FrozenLake-v2")


def test_gymnax_fallback_and_spaces():
    env, params = jaxq.make("CartPole-v1")
    assert env.name == "CartPole-v1"
    env, params = jaxq.make("FrozenLake-v1", map_name="8x8")
    assert env.observation_space(params).n == 64 and env.action_space(params).n == 4


def test_vmapped_reset_and_step_shapes():
    env, params = jaxq.make("FrozenLake-v1")
    keys = jax.random.split(jax.random.key(0), 128)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    acts = jnp.zeros(128, jnp.int32)
    obs, state, r, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, acts, params)
    assert obs.shape == (128,) and obs.dtype == jnp.int32 and r.dtype == jnp.float32


def test_default_params_are_never_baked_into_a_shared_compilation():
    env1, _ = jaxq.make("FrozenLake-v1", is_slippery=False, max_steps=3)
    env2, _ = jaxq.make("FrozenLake-v1", is_slippery=False, reward_schedule=(1.0, 0.0, -5.0))
    _, s1 = env1.reset(jax.random.key(0))
    for t in range(3):
        _, s1, _, _, trunc1, _ = env1.step(jax.random.key(t), s1, 0)
    assert bool(trunc1)
    _, s2 = env2.reset(jax.random.key(0))
    _, s2, r2, _, trunc2, _ = env2.step(jax.random.key(0), s2, 2)  # RIGHT onto frozen: -5
    assert float(r2) == -5.0 and not bool(trunc2)
