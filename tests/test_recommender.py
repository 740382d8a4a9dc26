"""Recommender-v0: the model against the spec, step vs model, Q* against the myopic policy."""

import time

import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.envs.recommender import myopic_policy
from parity import assert_step_matches_model

# Every test uses the default shape (50 states x 4 actions, K = 5), so value iteration and
# policy evaluation compile once for the whole file.


def reference_dense(L, F, C, hook=0.6, drag=0.5, c0=0.02, cb=0.1, ca=0.1):
    """Independent dense (P, R, P_term), written from the module doc with loops."""
    S = L * F
    P, R, PT = np.zeros((S, C, S)), np.zeros((S, C)), np.zeros((S, C, S))
    for i in range(L):
        for f in range(F):
            s = i * F + f
            u, phi = i / (L - 1), (f / (F - 1) if F > 1 else 0.0)
            for a in range(C):
                x = a / (C - 1)
                click = (1 - drag * phi) * (x * hook + (1 - x) * (0.1 + 0.8 * u))
                churn = c0 + cb * (1 - u) + ca * phi * x
                R[s, a] = click
                P[s, a, s] += churn
                PT[s, a, s] += churn
                tired = min(f + 1, F - 1)
                P[s, a, min(i + 1, L - 1) * F + tired] += click * (1 - churn) * (1 - x)
                P[s, a, max(i - 1, 0) * F + tired] += click * (1 - churn) * x
                P[s, a, i * F + max(f - 1, 0)] += (1 - click) * (1 - churn)
    return P, R, PT


@pytest.fixture(scope="module")
def default():
    env, params = jaxq.make("Recommender-v0")
    model = jaxq.tabular_model(env, params)
    return env, params, model, jaxq.value_iteration(model, 0.99)


def test_registered_with_a_description():
    spec = {s.env_id: s for s in jaxq.envs.env_specs()}["Recommender-v0"]
    assert "churn" in spec.description
    env, params = jaxq.make("Recommender-v0")
    assert (env.observation_space(params).n, env.action_space(params).n) == (50, 4)
    assert params.max_steps_in_episode == 100


def test_model_matches_reference(default):
    env, params, m, _ = default
    assert m.next_state.shape == (50, 4, 5)
    p, r, pt = m.dense()
    gp, gr, gt = reference_dense(10, 5, 4)
    np.testing.assert_allclose(p, gp, atol=1e-6)
    np.testing.assert_allclose(r, gr, atol=1e-6)
    np.testing.assert_allclose(pt, gt, atol=1e-6)
    # a churned user's transition is terminated (reward 1 only if they clicked first)
    assert set(np.asarray(m.reward[m.terminated]).tolist()) == {0.0, 1.0}


def test_step_samples_agree_with_model(default):
    env, params, m, _ = default
    # bottom and top interest, fresh and fully fatigued, every kind of category
    pairs = [(0, 0), (0, 3), (4, 1), (22, 2), (45, 0), (49, 3), (49, 1)]
    assert_step_matches_model(env, params, m, pairs, n=20_000)


def test_optimal_policy_beats_myopic(default):
    """The myopic policy shows sensational items below u = 0.625 and drains interest;
    Q* builds interest first. Exact values, gamma = 0.99, from the middle start."""
    env, params, m, q = default
    v_star = float(jaxq.start_value(m, q))
    myopic = myopic_policy(env, params)
    v_myopic = float(jaxq.policy_start_value(m, myopic, 0.99))
    assert v_star == pytest.approx(14.16, abs=0.01)
    assert v_myopic == pytest.approx(3.89, abs=0.01)
    # The start state is where they disagree: myopia takes the bigger click now...
    start = int(params.starts[0])
    greedy = int(jnp.argmax(q[start]))
    assert int(myopic[start]) == env.num_actions - 1 and greedy != int(myopic[start])
    assert float(m.expected_reward()[start, myopic[start]]) > float(m.expected_reward()[start, greedy])
    # ... and Q* says what that costs later.
    assert float(q[start, greedy]) - float(q[start, myopic[start]]) > 2.0


def test_uniform_start_and_time_limit():
    env, params = jaxq.make("Recommender-v0", num_levels=5, num_fatigue=2, start="uniform",
                            max_steps=7)
    mu = np.asarray(env.initial_distribution(params))
    np.testing.assert_allclose(mu, np.tile([0.2, 0.0], 5), atol=1e-7)
    assert params.max_steps_in_episode == 7


def test_large_tables_build_at_once():
    """make() builds scalars only; a 16.7M-state user model steps without any table."""
    t = time.perf_counter()
    env, params = jaxq.make("Recommender-v0", num_levels=4096, num_fatigue=4096,
                            num_categories=8, start="uniform")
    assert time.perf_counter() - t < 1.0
    assert env.num_states == 4096 ** 2 and env.step_tables(params) is None
    assert params.starts.shape == (4096,)  # one start per interest level, nothing per state


def test_learned_greedy_policy_is_near_optimal():
    """Uniform behaviour from uniform starts visits every state; the greedy policy of the
    learned table is then within 2% of V* (exact policy evaluation)."""
    kw = dict(start="uniform")
    env, params = jaxq.make("Recommender-v0", **kw)
    m = jaxq.tabular_model(env, params)
    g = 0.9
    q_star = jaxq.value_iteration(m, g)
    cfg = jaxq.TrainConfig(env_id="Recommender-v0", env_kwargs=kw, gamma=g, num_envs=256,
                           total_steps=256 * 2000, num_chunks=1, eval_every=0, lr=0.2,
                           lr_end=0.01, epsilon=1.0, epsilon_end=1.0)
    result = jaxq.train(cfg, q_star, progress=False)
    v_star = float(jaxq.start_value(m, q_star))
    pi = jaxq.model.greedy_policy(result.q, m.valid)
    assert float(jaxq.policy_start_value(m, pi, g)) >= 0.98 * v_star


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_levels=1), "num_levels"),
    (dict(num_fatigue=0), "num_fatigue"),
    (dict(num_categories=1), "num_categories"),
    (dict(num_categories=300), "num_categories"),
    (dict(num_levels=5000, num_fatigue=5000), "num_levels \\* num_fatigue"),
    (dict(start="random"), "start"),
    (dict(hook=1.5), "hook"),
    (dict(churn_base=-0.1), "churn_base"),
    (dict(churn_base=0.5, churn_bored=0.4, churn_annoyed=0.2), "must be <= 1"),
    (dict(max_steps=0), "max_steps"),
    (dict(num_items=3), "unknown keyword"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxq.make("Recommender-v0", **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_levels=2.5), "num_levels"), (dict(hook="high"), "hook"),
])
def test_bad_types_are_a_clear_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        jaxq.make("Recommender-v0", **kwargs)


def test_success_is_undefined_not_zero():
    """Recommender-v0 has no success: evaluation reports NaN (the CLI null), not 0.0."""
    import math

    import jax
    import numpy as np

    import jaxq

    env, params = jaxq.make("Recommender-v0")
    model = jaxq.tabular_model(env, params)
    q = np.zeros((model.num_states, model.num_actions), np.float32)
    ev = jaxq.evaluate(env, params, q, 8, jax.random.key(0), 20)
    assert math.isnan(ev.success_rate) and ev.mean_length > 0
