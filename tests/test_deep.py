"""Neural Q-functions (jaxq/networks.py, pqn.py, dqn.py, deep_config.py): PQN's Q(lambda)
targets against a hand computation, the replay ring, target-network updates, Double DQN
targets, config errors by field, one-hot features, vmap over seeds against separate
calls. Tiny sizes; whole DQN runs, the train-deep command and the learning check
(CartPole) are tests/experiments/test_deep_quick.py (compiles are most of their time)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq import dqn, pqn
from jaxq.deep_config import DeepConfig, resolve_env


# ---- Q(lambda) targets --------------------------------------------------------------

def _hand_q_lambda(r, term, done, v, gamma, lam):
    """Peng's Q(lambda), one env, written out step by step from the end."""
    K = len(r)
    g = [0.0] * K
    for t in reversed(range(K)):
        if term[t]:
            g[t] = r[t]
        elif done[t] or t == K - 1:
            g[t] = r[t] + gamma * v[t]
        else:
            g[t] = r[t] + gamma * ((1 - lam) * v[t] + lam * g[t + 1])
    return g


def test_q_lambda_targets_match_a_hand_computation():
    r = np.array([1.0, 0.5, -1.0, 2.0, 0.0, 1.0], np.float32)
    v = np.array([3.0, -2.0, 4.0, 1.5, 0.5, 2.0], np.float32)
    term = np.array([0, 0, 1, 0, 0, 0], bool)
    trunc = np.array([0, 0, 0, 0, 1, 0], bool)  # a time-out bootstraps, alone
    done = term | trunc
    for gamma, lam in [(0.9, 0.0), (0.9, 0.65), (0.99, 1.0)]:
        got = pqn.q_lambda_targets(jnp.asarray(r)[:, None], jnp.asarray(term)[:, None],
                                   jnp.asarray(done)[:, None], jnp.asarray(v)[:, None],
                                   gamma, lam)[:, 0]
        np.testing.assert_allclose(got, _hand_q_lambda(r, term, done, v, gamma, lam),
                                   rtol=1e-6)
    # by hand, gamma 0.9, lambda 0.5: G5 = 1 + .9*2 = 2.8; G4 (time-out) = 0 + .9*.5 = .45;
    # G3 = 2 + .9*(.5*1.5 + .5*.45) = 2.8775; G2 = -1 (terminated);
    # G1 = .5 + .9*(.5*-2 + .5*-1) = -.85; G0 = 1 + .9*(.5*3 + .5*-.85) = 1.9675
    got = pqn.q_lambda_targets(jnp.asarray(r)[:, None], jnp.asarray(term)[:, None],
                               jnp.asarray(done)[:, None], jnp.asarray(v)[:, None], 0.9, 0.5)
    np.testing.assert_allclose(got[:, 0], [1.9675, -0.85, -1.0, 2.8775, 0.45, 2.8], rtol=1e-6)


# ---- replay ring, targets ------------------------------------------------------------

def test_replay_ring_overwrites_the_oldest_and_samples_filled_slots():
    """The ring is env-major ([envs, slots]): one step of every env per add, at the same
    slot; a sample takes per_env transitions from every env's own row (the layout that
    lets strategy replicated keep each env's transitions on its device)."""
    @jax.jit
    def add(buf, step):  # one step of 2 envs: env e's transition numbered 10 e + step
        x = jnp.array([0.0, 10.0]) + step
        return dqn.replay_add(buf, jnp.stack([x, -x], 1), x.astype(jnp.int32), x,
                              jnp.stack([x + 1, -x], 1), x > 100)

    sample = jax.jit(dqn.replay_sample, static_argnums=2)
    buf = dqn.replay_init(4, jnp.zeros((2, 2), jnp.float32))
    assert buf.obs.shape == (2, 4, 2) and buf.action.shape == (2, 4)
    for step in range(3):
        buf = add(buf, float(step))
    assert int(buf.pos) == 3 and int(buf.size) == 3
    assert buf.action.tolist() == [[0, 1, 2, 0], [10, 11, 12, 0]]
    s = sample(buf, jax.random.key(0), 100)
    assert s.action.shape == (200,) and s.obs.shape == (200, 2)
    # env by env: the first 100 from env 0's row, the next 100 from env 1's, filled only
    assert set(s.action[:100].tolist()) == {0, 1, 2}
    assert set(s.action[100:].tolist()) == {10, 11, 12}
    np.testing.assert_array_equal(s.next_obs[:, 0], s.obs[:, 0] + 1)  # rows stay together
    for step in (3.0, 4.0):  # slot 3, then wraps to slot 0
        buf = add(buf, step)
    assert int(buf.pos) == 1 and int(buf.size) == 4
    assert buf.action.tolist() == [[4, 1, 2, 3], [14, 11, 12, 13]]
    assert buf.reward.tolist() == [[4.0, 1.0, 2.0, 3.0], [14.0, 11.0, 12.0, 13.0]]
    s = sample(buf, jax.random.key(1), 100)
    assert set(s.action[:100].tolist()) == {1, 2, 3, 4}
    assert set(s.action[100:].tolist()) == {11, 12, 13, 14}


def test_target_network_copies_every_c_steps_or_moves_by_tau():
    online, target = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([0.0, 0.0])}
    for n in (1, 2, 4):  # not a multiple of 3: unchanged
        assert dqn.update_target(online, target, jnp.int32(n), 3, 1.0)["w"].tolist() == [0, 0]
    assert dqn.update_target(online, target, jnp.int32(6), 3, 1.0)["w"].tolist() == [1, 2]
    np.testing.assert_allclose(dqn.update_target(online, target, jnp.int32(3), 3, 0.25)["w"],
                               [0.25, 0.5])
    np.testing.assert_allclose(dqn.update_target(online, target, jnp.int32(7), 1, 0.1)["w"],
                               [0.1, 0.2])


def test_double_dqn_picks_with_the_online_network():
    q_target = jnp.array([[1.0, 5.0], [2.0, 0.0]])
    q_online = jnp.array([[3.0, 0.0], [0.0, 1.0]])
    r, term = jnp.array([1.0, 1.0]), jnp.array([False, True])
    np.testing.assert_allclose(dqn.td_targets(q_target, q_online, r, term, 0.5, False),
                               [1 + 0.5 * 5, 1])
    np.testing.assert_allclose(dqn.td_targets(q_target, q_online, r, term, 0.5, True),
                               [1 + 0.5 * 1, 1])


# ---- config errors, env features -----------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    (dict(q_lambda=1.5), "q_lambda must be in [0.0, 1.0]"),
    (dict(q_lambda=-0.1), "q_lambda must be in [0.0, 1.0]"),
    (dict(width=0), "width must be >= 1"),
    (dict(depth=-1), "depth must be >= 1"),
    (dict(algo="dqn", buffer_size=64, batch_size=128), "buffer_size (64) must be >= batch_size"),
    (dict(algo="dqn", buffer_size=16, batch_size=8, num_envs=32), "buffer_size (16) must be >= num_envs"),
    (dict(rollout_len=10, num_minibatches=4), "rollout_len (10) must be divisible by num_minibatches"),
    (dict(algo="a2c"), "algo must be one of ['pqn', 'dqn']"),
    (dict(algo="dqn", batch_size=100, num_envs=32),
     "batch_size (100) must be divisible by num_envs (32)"),
    (dict(tau=0.0), "tau must be in (0.0, 1.0]"),
    (dict(layer_norm="yes"), "layer_norm must be true or false"),
    (dict(env_id="CartPole-v9"), "unknown env_id 'CartPole-v9'"),
])
def test_bad_config_names_the_field(kwargs, words):
    with pytest.raises((ValueError, TypeError)) as e:
        DeepConfig(**kwargs)
    assert words in str(e.value)


def test_features_one_hot_for_tables_flat_floats_for_gymnax():
    fl = resolve_env(DeepConfig(env_id="FrozenLake-v1"))
    assert (fl.obs_dim, fl.num_actions) == (16, 4)
    np.testing.assert_array_equal(fl.features(jnp.array([0, 3])), np.eye(16)[[0, 3]])
    cp = resolve_env(DeepConfig(env_id="CartPole-v1"))
    assert (cp.obs_dim, cp.num_actions, cp.time_limit) == (4, 2, 500)
    br = resolve_env(DeepConfig(env_id="Breakout-MinAtar"))  # 10 x 10 x 4 bool planes
    assert (br.obs_dim, br.num_actions) == (400, 3)
    assert br.features(jnp.ones((2, 10, 10, 4), bool)).shape == (2, 400)
    with pytest.raises(ValueError, match="Discrete actions"):
        resolve_env(DeepConfig(env_id="Pendulum-v1"))


# ---- whole runs (tiny) -------------------------------------------------------------------

TINY = dict(env_id="CartPole-v1", num_envs=4, width=8, depth=1, num_chunks=2,
            eval_episodes=2, eval_max_steps=10)


def test_exports():
    assert jaxq.DeepConfig is DeepConfig and jaxq.make_train_pqn is pqn.make_train_pqn
