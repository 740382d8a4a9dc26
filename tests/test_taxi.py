from functools import partial

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

import jaxq
from jaxq.envs.base import TabularState
from jaxq.envs.taxi import (
    DEPOTS, DROPOFF, EAST, NORTH, PICKUP, SOUTH, START_STATES, WEST, decode, encode,
)
from parity import (assert_model_equals_gymnasium, assert_step_matches_model, gymnasium_policy_value,
                    gymnasium_q_star, gymnasium_start_value)

# Gymnasium >= 1.3 registers only Taxi-v4 (its rainy dynamics differ from 1.2's Taxi-v3).
HAS_V4 = "Taxi-v4" in gym.registry
GYM_ID = "Taxi-v4" if HAS_V4 else "Taxi-v3"
needs_v4 = pytest.mark.skipif(not HAS_V4, reason="rainy Taxi-v4 needs gymnasium >= 1.3")


def gym_taxi(**kwargs):
    return gym.make(GYM_ID, **kwargs)


@pytest.mark.parametrize("env_id", ["Taxi-v3", "Taxi-v4"])
def test_model_equals_gymnasium(env_id):
    env, params = jaxq.make(env_id)
    assert env.name == env_id and env.num_outcomes == 1
    assert_model_equals_gymnasium(jaxq.tabular_model(env, params), gym_taxi())


@needs_v4
@pytest.mark.parametrize("kwargs", [dict(is_rainy=True),
                                    dict(is_rainy=True, rainy_probability=0.55)])
def test_rainy_model_equals_gymnasium(kwargs):
    env, params = jaxq.make("Taxi-v4", **kwargs)
    assert env.num_outcomes == 3
    assert_model_equals_gymnasium(jaxq.tabular_model(env, params), gym_taxi(**kwargs))


@needs_v4
@settings(max_examples=6, deadline=None)
@given(p=st.floats(0.0, 1.0))
def test_rainy_probability_is_a_param_matching_gymnasium(p):
    # rainy_probability lives in params: one compiled model serves every value.
    env, params = jaxq.make("Taxi-v4", is_rainy=True)
    params = params.replace(rainy_probability=jnp.float32(p))
    assert_model_equals_gymnasium(jaxq.tabular_model(env, params),
                                  gym_taxi(is_rainy=True, rainy_probability=p))


@pytest.mark.parametrize("is_rainy", [False, True])
def test_every_row_is_a_distribution_and_only_deliveries_terminate(is_rainy):
    env, params = jaxq.make("Taxi-v4", is_rainy=is_rainy)
    m = jaxq.tabular_model(env, params)
    prob, ns = np.asarray(m.prob), np.asarray(m.next_state)
    np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-6)
    assert ns.min() >= 0 and ns.max() < 500
    term, rew = np.asarray(m.terminated) & (prob > 0), np.asarray(m.reward)
    s, a, _ = np.nonzero(term)
    assert set(a) == {DROPOFF} and np.all(rew[term] == 20.0)
    _, _, pas, dest = decode(ns[term])
    assert np.all(pas == dest) and set(ns[term]) == {0, 85, 410, 475}
    # Only from the 4 states "passenger aboard, taxi at its destination".
    assert sorted(set(s)) == [encode(r, c, 4, d) for d, (r, c) in enumerate(DEPOTS)]


def test_known_transitions():
    env, params = jaxq.make("Taxi-v4")
    m = jaxq.tabular_model(env, params)

    def outcome(s, a):
        return int(m.next_state[s, a, 0]), float(m.reward[s, a, 0]), bool(m.terminated[s, a, 0])

    s = encode(0, 1, 0, 1)
    assert outcome(s, EAST) == (s, -1.0, False)  # wall between (0,1) and (0,2)
    assert outcome(s, WEST) == (encode(0, 0, 0, 1), -1.0, False)
    assert outcome(s, NORTH) == (s, -1.0, False)  # grid edge
    assert outcome(s, PICKUP) == (s, -10.0, False)  # passenger is at R, taxi is not
    assert outcome(encode(0, 0, 0, 1), PICKUP) == (encode(0, 0, 4, 1), -1.0, False)
    assert outcome(encode(0, 4, 4, 1), DROPOFF) == (encode(0, 4, 1, 1), 20.0, True)  # delivery
    # Wrong depot: -1 (not -10), the passenger is left at Y and the episode goes on.
    assert outcome(encode(4, 0, 4, 1), DROPOFF) == (encode(4, 0, 2, 1), -1.0, False)
    assert outcome(encode(2, 2, 4, 1), DROPOFF) == (encode(2, 2, 4, 1), -10.0, False)  # no depot
    assert outcome(encode(2, 2, 0, 1), SOUTH) == (encode(3, 2, 0, 1), -1.0, False)


def test_step_samples_agree_with_model():
    env, params = jaxq.make("Taxi-v4")
    m = jaxq.tabular_model(env, params)
    pairs = [(encode(0, 1, 0, 1), EAST), (encode(0, 4, 4, 1), DROPOFF),
             (encode(4, 0, 4, 1), DROPOFF), (encode(4, 3, 3, 0), PICKUP),
             (encode(2, 2, 0, 1), PICKUP), (encode(2, 2, 0, 1), WEST)]
    assert_step_matches_model(env, params, m, pairs, n=2_000)


def test_rainy_step_samples_agree_with_model():
    env, params = jaxq.make("Taxi-v4", is_rainy=True, rainy_probability=0.6)
    m = jaxq.tabular_model(env, params)
    # (0,1) SOUTH: drifts east into a wall (stays) or west; (2,2) NORTH: three cells;
    # (0,0) NORTH: blocked, so no drift; PICKUP stays deterministic.
    pairs = [(encode(0, 1, 0, 1), SOUTH), (encode(2, 2, 4, 0), NORTH),
             (encode(0, 0, 4, 2), NORTH), (encode(0, 0, 0, 2), PICKUP)]
    assert_step_matches_model(env, params, m, pairs)
    assert np.asarray(m.prob[encode(0, 1, 0, 1), SOUTH]).tolist() == pytest.approx([0.6, 0.2, 0.2])


def test_start_states_are_gymnasiums_300():
    env, params = jaxq.make("Taxi-v4")
    g = gym_taxi().unwrapped.initial_state_distrib
    assert len(START_STATES) == 300
    assert set(START_STATES.tolist()) == set(np.flatnonzero(g).tolist())
    np.testing.assert_allclose(np.asarray(env.initial_distribution(params)), g, atol=1e-7)


def test_reset_is_uniform_over_start_states():
    env, params = jaxq.make("Taxi-v4")
    obs, _ = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), 30_000), params)
    counts = np.bincount(np.asarray(obs), minlength=500)
    assert counts.sum() == counts[START_STATES].sum()  # nothing outside the 300
    assert stats.chisquare(counts[START_STATES]).pvalue > 1e-3


@partial(jax.jit, static_argnums=0)
def rollout(env, params, state, actions, key=jax.random.key(0)):
    """Step through ``actions`` in one compiled scan; returns the final state and the
    stacked (obs, reward, terminated, truncated, final_observation, success, time)."""
    def body(st, xs):
        k, a = xs
        obs, st, r, term, trunc, info = env.step(k, st, a, params)
        return st, (obs, r, term, trunc, info["final_observation"], info["success"], st.time)

    keys = jax.random.split(key, actions.shape[0])
    return jax.lax.scan(body, state, (keys, actions))


@pytest.mark.parametrize("max_steps", [None, 5])
def test_time_limit_truncates_not_terminates(max_steps):
    env, params = jaxq.make("Taxi-v4", max_steps=max_steps)
    T = 200 if max_steps is None else max_steps
    assert params.max_steps_in_episode == T
    _, state = env.reset(jax.random.key(1), params)
    _, (obs, _, term, trunc, _, _, time) = rollout(env, params, state, jnp.full(T + 1, NORTH))
    assert not np.asarray(term).any()
    assert np.flatnonzero(np.asarray(trunc)).tolist() == [T - 1]
    assert int(time[T - 1]) == 0 and int(time[T]) == 1 and int(obs[T - 1]) in START_STATES


def test_delivery_terminates_and_auto_resets():
    env, params = jaxq.make("Taxi-v4")
    state = TabularState(time=jnp.int32(17), s=jnp.int32(encode(0, 4, 4, 1)))
    obs, state, r, term, trunc, info = env.step(jax.random.key(0), state, DROPOFF, params)
    assert (float(r), bool(term), bool(trunc), bool(info["success"])) == (20.0, True, False, True)
    assert int(info["final_observation"]) == encode(0, 4, 1, 1) == 85
    assert int(obs) in START_STATES and int(state.time) == 0
    # A delivery on the last allowed step is both terminated and truncated.
    state = TabularState(time=jnp.int32(199), s=jnp.int32(encode(0, 4, 4, 1)))
    _, _, _, term, trunc, _ = env.step(jax.random.key(0), state, DROPOFF, params)
    assert bool(term) and bool(trunc)


def test_wrong_depot_dropoff_does_not_end_the_episode():
    env, params = jaxq.make("Taxi-v4")
    state = TabularState(time=jnp.int32(3), s=jnp.int32(encode(4, 0, 4, 1)))
    obs, state, r, term, trunc, info = env.step(jax.random.key(0), state, DROPOFF, params)
    assert (float(r), bool(term), bool(info["success"])) == (-1.0, False, False)
    assert int(obs) == encode(4, 0, 2, 1) and int(state.time) == 4


@settings(max_examples=15, deadline=None)
@given(start=st.sampled_from(START_STATES.tolist()),
       actions=st.lists(st.integers(0, 5), min_size=40, max_size=40))
def test_trajectories_equal_gymnasium_step(start, actions):
    # Deterministic Taxi: any action sequence gives Gymnasium's exact trajectory until delivery.
    g = gym_taxi().unwrapped
    g.reset(seed=0)
    g.s = start
    state = TabularState(time=jnp.int32(0), s=jnp.int32(start))
    env, params = jaxq.make("Taxi-v4")
    _, (_, rew, term, _, final, _, _) = rollout(env, params, state, jnp.asarray(actions))
    for t, a in enumerate(actions):
        s, r, done, _, _ = g.step(a)
        assert (int(final[t]), float(rew[t]), bool(term[t])) == (s, r, done), f"step {t}"
        if done:
            break


def test_optimal_values_match_gymnasium_and_the_greedy_return():
    env, params = jaxq.make("Taxi-v4")
    m = jaxq.tabular_model(env, params)
    q = jaxq.value_iteration(m, 0.99, tol=1e-6)
    g = gym_taxi()
    q_np = gymnasium_q_star(g, 0.99)  # independent: float64 value iteration on Gymnasium's P
    np.testing.assert_allclose(np.asarray(q), q_np, atol=1e-4)
    v_start = float(jaxq.start_value(m, q))
    assert abs(v_start - q_np.max(1)[START_STATES].mean()) < 1e-4
    assert abs(v_start - gymnasium_start_value(g, q_np.max(1))) < 1e-4
    # The greedy optimum delivers from every start: its undiscounted mean return, by
    # jaxq's policy evaluation and by a linear solve on Gymnasium's P, agree.
    pi = jnp.argmax(q, axis=1)
    q_pi = jaxq.policy_evaluation(m, pi, 1.0, max_iters=10_000)
    ret = np.asarray(q_pi)[np.arange(500), np.asarray(pi)][START_STATES].mean()
    v_gym = gymnasium_policy_value(g, np.asarray(pi), 1.0)
    assert abs(ret - gymnasium_start_value(g, v_gym)) < 1e-3
    assert 0 < ret < 20  # a delivery pays 20, less one per step


@given(row=st.integers(0, 4), col=st.integers(0, 4), pas=st.integers(0, 4), dest=st.integers(0, 3))
def test_encode_decode_round_trip(row, col, pas, dest):
    s = encode(row, col, pas, dest)
    assert 0 <= s < 500 and decode(s) == (row, col, pas, dest)
    assert gym_taxi().unwrapped.encode(row, col, pas, dest) == s


@pytest.mark.parametrize("env_id, kwargs, exc, match", [
    ("Taxi-v4", dict(max_steps=0), ValueError, "max_steps"),
    ("Taxi-v4", dict(max_steps=2.5), TypeError, "max_steps"),
    ("Taxi-v4", dict(rainy_probability=1.5), ValueError, "rainy_probability"),
    ("Taxi-v4", dict(rainy_probability="wet"), TypeError, "rainy_probability"),
    ("Taxi-v4", dict(is_rainy="yes"), TypeError, "is_rainy"),
    ("Taxi-v4", dict(fickle_passenger=True), ValueError, "unknown keyword.*fickle_passenger"),
    ("Taxi-v3", dict(is_rainy=True), ValueError, "is_rainy.*Taxi-v4"),
    ("Taxi-v3", dict(rainy_probability=0.5), ValueError, "unknown keyword.*rainy_probability"),
])
def test_bad_input_is_a_clear_error(env_id, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        jaxq.make(env_id, **kwargs)


def test_envs_with_other_defaults_are_distinct_static_args():
    # step(params=None) falls back on default_params inside jit: equal envs would share a trace.
    short, _ = jaxq.make("Taxi-v4", max_steps=1)
    default, _ = jaxq.make("Taxi-v4")
    assert short != default and default == jaxq.make("Taxi-v4")[0]
    state = TabularState(time=jnp.int32(0), s=jnp.int32(encode(2, 2, 0, 1)))
    assert bool(short.step(jax.random.key(0), state, NORTH)[4])
    assert not bool(default.step(jax.random.key(0), state, NORTH)[4])
