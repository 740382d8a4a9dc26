"""Explicit MDPs, action masks and noisy rewards (Sutton & Barto Example 6.7, probes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxq
from jaxq.config import TrainConfig
from jaxq.envs.base import TabularState
from jaxq.envs.textbook import LEFT, RIGHT, STATE_A, STATE_B, TERMINAL, make_mdp
from jaxq.training import make_train


def test_probe_value_iteration_matches_closed_form():
    env, params = jaxq.make("TwoStateProbe-v0")
    g = 0.99
    q = np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), g, tol=1e-7))
    v1 = 0.5 / (1 - g * g)
    v0 = g * v1
    # value iteration stops when a sweep changes entries by < tol relative; its error is
    # then at most gamma / (1 - gamma) times that
    np.testing.assert_allclose(q, [[g * v0, g * v1], [1.0, 0.5 + g * v0]], rtol=1e-4)


@pytest.mark.parametrize("algo", ["q_learning", "double_q", "expected_sarsa"])
def test_probe_learned_exactly(algo):
    env, params = jaxq.make("TwoStateProbe-v0", max_steps=50)
    g = 0.9
    q_star = jaxq.value_iteration(jaxq.tabular_model(env, params), g, tol=1e-7)
    # off-policy rules learn Q* under uniform behaviour; Expected SARSA needs GLIE
    explore = (dict(epsilon=1.0, epsilon_end=1.0) if algo != "expected_sarsa" else
               dict(epsilon=1.0, epsilon_end=0.001, epsilon_schedule="exponential"))
    cfg = TrainConfig(env_id="TwoStateProbe-v0", env_kwargs={"max_steps": 50}, algo=algo,
                      gamma=g, num_envs=256, total_steps=256 * 3000, num_chunks=2, eval_every=0,
                      lr=0.5, lr_end=0.01, **explore)
    out = jax.jit(make_train(cfg, q_star))(jax.random.key(0))
    tol = 0.02 * float(jnp.abs(q_star).max())
    assert float(out.metrics["q_error"][-1]) < tol


def test_maximization_bias_model_and_masks():
    env, params = jaxq.make("MaximizationBias-v0")
    assert env.has_action_mask and env.noisy_reward and env.action_space(params).n == 10
    valid = np.array([np.asarray(v) for v in env.valid_actions(jnp.int32(STATE_A), params)])
    assert valid.tolist() == [True, True] + [False] * 8
    model = jaxq.tabular_model(env, params)
    np.testing.assert_array_equal(np.asarray(model.valid[STATE_A]), valid)
    q = np.asarray(jaxq.value_iteration(model, 1.0))
    assert q[STATE_A, RIGHT] == 0.0 and abs(q[STATE_A, LEFT] + 0.1) < 1e-6
    # A's eight masked actions are -inf, not the 0 of the terminal they would reach
    assert np.isneginf(q[STATE_A, 2:]).all()
    np.testing.assert_allclose(q[STATE_B], -0.1, atol=1e-6)
    assert float(jaxq.start_value(model, q)) == 0.0
    # a learned table holds q_init = 0.1 in the masked cells: they must not count
    learned = np.where(valid, q[STATE_A], 0.1)[None].repeat(3, 0)
    assert float(jaxq.start_value(model, learned)) == 0.0
    pi = jaxq.model.greedy_policy(learned, model.valid)
    assert float(jaxq.policy_start_value(model, pi, 1.0)) == 0.0


def test_maximization_bias_rewards_are_normal():
    env, params = jaxq.make("MaximizationBias-v0")
    keys = jax.random.split(jax.random.key(0), 20000)
    state = TabularState(time=jnp.int32(0), s=jnp.int32(STATE_B))
    _, _, r, term, _, info = jax.vmap(lambda k: env.step(k, state, 3, params))(keys)
    r = np.asarray(r)
    assert np.all(np.asarray(term)) and np.all(np.asarray(info["final_observation"]) == TERMINAL)
    assert stats.kstest(r, "norm", args=(-0.1, 1.0)).pvalue > 1e-3


def test_random_actions_respect_the_mask():
    cfg = TrainConfig(env_id="MaximizationBias-v0", num_envs=1024, total_steps=1024 * 20,
                      num_chunks=1, eval_every=0, epsilon=1.0, epsilon_end=1.0, gamma=1.0)
    from jaxq.training import build_learner
    learner = build_learner(cfg)
    hp = cfg.hparams()
    c = jax.jit(learner.init)(jax.random.key(0), hp)  # one compile, not one per op
    step = jax.jit(learner.step)
    taken_in_a = []
    for _ in range(20):
        c, _, tr = step(c, hp)
        taken_in_a.append(np.asarray(tr.a)[np.asarray(tr.s) == STATE_A])
    taken = np.concatenate(taken_in_a)
    assert set(taken.tolist()) == {LEFT, RIGHT}
    assert abs(np.mean(taken == LEFT) - 0.5) < 0.03


# Example 6.7 itself (Double Q-learning overrates LEFT less than Q-learning, 500 seeds) is
# in tests/slow/test_learning_runs.py (make test-slow): two ~7 s compiles.


@pytest.mark.parametrize("kwargs, match", [
    (dict(prob=np.full((2, 2, 1), 0.5)), "sum to 1"),
    (dict(next_state=np.full((2, 2, 1), 5)), "next_state"),
    (dict(start=7), "start"),
    (dict(valid=np.zeros((2, 2), bool)), "valid"),
    (dict(reward_std=-np.ones((2, 2))), "reward_std"),
])
def test_make_mdp_validates(kwargs, match):
    base = dict(next_state=np.zeros((2, 2, 1), int), prob=np.ones((2, 2, 1)),
                reward=np.zeros((2, 2, 1)), terminated=np.ones((2, 2, 1), bool), start=0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_mdp(**base)
