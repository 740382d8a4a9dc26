"""The exact model honours action masks (issue 9, item 3).

Every check runs on ``MaskedProbe-v0``, whose masked action would be the best one if it
were allowed (reward 10 in state 0, 100 in state 1, against 1 and 2 for the valid ones):
a ground truth that maximised over invalid actions is then wrong by a factor of 50, not
by a rounding error. With the mask, for gamma >= 0.625,
Q* = [[1.6 gamma, 1, -inf], [2, 1.6 gamma^2, -inf]] (state 2 is the absorbing terminal).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.config import TrainConfig
from jaxq.envs.textbook import MASKED_ACTION, make_masked_probe
from jaxq.model import greedy_policy

VALID = np.array([[True, True, False], [True, True, False], [True, True, True]])


def closed_form_q_star(g: float) -> np.ndarray:
    return np.array([[1.6 * g, 1.0, -np.inf], [2.0, 1.6 * g * g, -np.inf], [0.0, 0.0, 0.0]])


@pytest.fixture(scope="module")
def model():
    env, params = jaxq.make("MaskedProbe-v0")
    return jaxq.tabular_model(env, params)


def test_tabular_model_carries_the_env_mask(model):
    np.testing.assert_array_equal(np.asarray(model.valid), VALID)
    env, params = jaxq.make("MaskedProbe-v0")
    per_state = [[bool(v) for v in env.valid_actions(jnp.int32(s), params)] for s in range(3)]
    assert per_state == VALID.tolist()
    # an env without a mask: every action valid, not a missing field
    env, params = jaxq.make("TwoStateProbe-v0")
    assert not env.has_action_mask
    m = jaxq.tabular_model(env, params)
    assert m.valid.shape == (2, 2) and bool(jnp.all(m.valid))


@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_value_iteration_ignores_the_masked_action(model, gamma):
    q = np.asarray(jaxq.value_iteration(model, gamma, tol=1e-7))
    np.testing.assert_array_equal(np.isneginf(q), ~VALID)  # -inf exactly where masked
    np.testing.assert_allclose(q[VALID], closed_form_q_star(gamma)[VALID], rtol=1e-5)


def test_without_the_mask_the_masked_action_would_win(model):
    """The probe is sensitive: the same dynamics with ``valid=None`` (all valid, the
    default of a hand-built model) give V*(1) = 100 and Q*(0, 0) = 80 gamma."""
    q = np.asarray(jaxq.value_iteration(model._replace(valid=None), 0.9, tol=1e-7))
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q[:2], [[72.0, 1.0, 10.0], [2.0, 64.8, 100.0]], rtol=1e-5)


def test_greedy_policy_never_picks_an_invalid_action(model):
    pi = np.asarray(greedy_policy(jaxq.value_iteration(model, 0.9)))
    np.testing.assert_array_equal(pi[:2], [[1, 0, 0], [1, 0, 0]])
    # a learned table keeps its (here optimistic) initial value in masked cells: the mask
    # must beat it, and ties split over the valid maximisers only
    learned = np.array([[1.0, 1.0, 5.0], [2.0, 0.5, 5.0], [0.0, 0.0, 0.0]], np.float32)
    pi = np.asarray(greedy_policy(learned, model.valid))
    np.testing.assert_array_equal(pi, [[0.5, 0.5, 0], [1, 0, 0], [np.float32(1 / 3)] * 3])
    # batched tables, and -inf cells count as invalid without a mask
    both = np.asarray(greedy_policy(np.stack([learned, np.where(VALID, learned, -np.inf)]),
                                    model.valid))
    np.testing.assert_array_equal(both[0], both[1])
    np.testing.assert_array_equal(np.asarray(greedy_policy(np.where(VALID, learned, -np.inf))),
                                  both[0])


def test_start_values(model):
    g = 0.9
    q_star = jaxq.value_iteration(model, g, tol=1e-7)
    assert float(jaxq.start_value(model, q_star)) == pytest.approx(1.6 * g, rel=1e-5)
    # start_value applies the mask itself: a learned table's masked 5.0 is not V(start)
    learned = jnp.array([[1.2, 1.0, 5.0], [2.0, 0.5, 5.0], [0.0, 0.0, 0.0]])
    assert float(jaxq.start_value(model, learned)) == pytest.approx(1.2)

    for pi in (greedy_policy(q_star), jnp.argmax(q_star, axis=1)):
        assert float(jaxq.policy_start_value(model, pi, g, tol=1e-7)) == pytest.approx(
            1.6 * g, rel=1e-5)
    # uniform over the valid actions: V(1) = 1 + g/2 V(0), V(0) = 0.4 g V(1) + 0.5
    uniform = jnp.asarray(VALID / VALID.sum(1, keepdims=True), jnp.float32)
    v0 = (0.4 * g + 0.5) / (1 - 0.2 * g * g)
    assert float(jaxq.policy_start_value(model, uniform, g, tol=1e-7)) == pytest.approx(
        v0, rel=1e-5)
    q_pi = np.asarray(jaxq.policy_evaluation(model, uniform, g, tol=1e-7))
    np.testing.assert_array_equal(np.isneginf(q_pi), ~VALID)
    np.testing.assert_allclose(q_pi[0, :2], [0.8 * g * (1 + 0.5 * g * v0), 1.0], rtol=1e-5)


def test_a_policy_on_a_masked_action_is_an_error(model):
    pi = jnp.array([MASKED_ACTION, 0, 0])
    with pytest.raises(ValueError, match="invalid action in state 0"):
        jaxq.policy_evaluation(model, pi, 0.9)
    with pytest.raises(ValueError, match="invalid action in state 0"):
        jaxq.policy_start_value(model, jax.nn.one_hot(pi, 3), 0.9)
    # greedy on a learned table without its mask would pick the masked 5.0: refused too
    learned = jnp.array([[1.0, 1.0, 5.0], [2.0, 0.5, 5.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="greedy_policy"):
        jaxq.policy_start_value(model, greedy_policy(learned), 0.9)
    # under jit the values cannot be checked: the result is NaN, never a number
    traced = jax.jit(lambda p: jaxq.policy_start_value(model, p, 0.9))
    assert np.isnan(float(traced(jax.nn.one_hot(pi, 3))))
    assert float(traced(greedy_policy(learned, model.valid))) == pytest.approx(
        float(jaxq.policy_start_value(model, greedy_policy(learned, model.valid), 0.9)))


def test_a_state_without_valid_actions():
    """An env that masks every action of a state is rejected when it is tabulated; a
    hand-built model with such a row gives the state value 0 (no NaN anywhere)."""
    env, params = make_masked_probe()
    with pytest.raises(ValueError, match="state 1 has no valid action"):
        jaxq.tabular_model(env, params.replace(valid=params.valid.at[1].set(False)))

    m = jaxq.tabular_model(env, params)
    dead = m._replace(valid=m.valid.at[1].set(False))
    q = np.asarray(jaxq.value_iteration(dead, 0.9, tol=1e-7))
    assert not np.isnan(q).any() and np.isneginf(q[1]).all()
    np.testing.assert_allclose(q[0, :2], [0.0, 1.0])  # reaching state 1 is worth 0
    pi = greedy_policy(q)
    np.testing.assert_array_equal(np.asarray(pi[1]), [0, 0, 0])
    assert float(jaxq.start_value(dead, q)) == pytest.approx(1.0)
    assert float(jaxq.policy_start_value(dead, pi, 0.9)) == pytest.approx(1.0)


def test_training_never_takes_the_masked_action_and_learns_q_star(model):
    """Q-learning under uniform behaviour, optimistic q_init = 5: a masked cell that was
    ever taken would move towards 10 or 100, and one that was ever a bootstrap max
    would pull Q(0, 0) to 0.8 * 0.9 * 5 = 3.6 instead of 1.44."""
    g = 0.9
    cfg = TrainConfig(env_id="MaskedProbe-v0", gamma=g, num_envs=64, total_steps=64 * 1500,
                      num_chunks=1, eval_every=0, epsilon=1.0, epsilon_end=1.0, lr=0.5,
                      lr_end=0.01, q_init=5.0)
    result = jaxq.train(cfg, progress=False)
    q = np.asarray(result.q)
    np.testing.assert_array_equal(q[:2, MASKED_ACTION], 5.0)  # never updated
    q_star = np.asarray(jaxq.value_iteration(model, g, tol=1e-7))
    live = VALID.copy()
    live[2] = False  # the terminal state is never acted in
    np.testing.assert_allclose(q[live], q_star[live], atol=0.02)
    assert float(jaxq.start_value(model, q)) == pytest.approx(1.6 * g, abs=0.02)


def test_convergence_evaluator_honours_the_mask():
    """experiments/convergence.py's exact metrics on a masked env: a learned table whose
    masked cells hold a large initial value is judged on its valid cells and its masked
    greedy policy (it would be an error or q_error = inf otherwise)."""
    import experiment_modules

    convergence = experiment_modules.load("convergence")
    env, params = jaxq.make("MaskedProbe-v0", max_steps=20)
    ev = convergence.GreedyEvaluator(env, params, 0.9, epsilon=0.1)
    for target in (ev.q_star, ev.q_star_eps):
        np.testing.assert_array_equal(np.isneginf(np.asarray(target)), ~VALID)
    assert ev.v_star == pytest.approx(1.44, rel=1e-5)
    learned = np.where(VALID, np.asarray(ev.q_star), 50.0).astype(np.float32)
    learned[0, 1] += 0.25  # now below Q*(0, 0) by 0.19: still greedy on action 0
    m = jax.device_get(ev.metrics(learned))
    assert float(m["q_error"]) == pytest.approx(0.25)
    assert float(m["value"]) == pytest.approx(1.44, rel=1e-4)
    assert np.isfinite(float(m["q_error_eps"]))
