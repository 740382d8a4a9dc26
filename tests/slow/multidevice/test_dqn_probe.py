"""DQN with stale actors (strategy ``async`` on 2 forced CPU devices) still learns: the
network's values reach Q* of a two-state probe MDP (``make test-slow``; moved out of
tests/multidevice/test_dqn_strategies.py to keep ``make test`` within its budget)."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxq
from jaxq import dqn, networks
from jaxq.deep_config import DeepConfig, resolve_env
from jaxq.strategies import make_mesh


def test_stale_actors_still_learn_q_star_of_the_probe():
    """TwoStateProbe-v0 (jaxq/envs/textbook.py: 0 -a0-> 0 (0), 0 -a1-> 1 (0), 1 -a0-> end
    (1), 1 -a1-> 0 (0.5)), actors on a copy refreshed every 8 iterations, epsilon 0.5, lr
    decayed linearly to 0: DQN's one-step targets take the network's values at the two
    one-hot states to Q* (measured: within 1.1e-3 after 8,192 env steps)."""
    gamma = 0.9
    cfg = DeepConfig(algo="dqn", env_id="TwoStateProbe-v0", gamma=gamma, reward_scale=1.0,
                     num_envs=16, total_steps=8192, num_chunks=2, width=16, depth=1,
                     buffer_size=512, batch_size=32, learning_starts=64,
                     target_update_every=8, lr=0.01, lr_schedule="linear", epsilon=0.5,
                     epsilon_end=0.5, eval_episodes=2, eval_max_steps=10,
                     strategy="async", num_devices=2, sync_every=8)
    out = jax.jit(dqn.make_train_dqn(cfg, make_mesh(2)))(jax.random.key(0))
    env, params = jaxq.make("TwoStateProbe-v0")  # Q* of the exact model
    q_star = np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), gamma, tol=1e-9))
    net = networks.make_network(cfg, resolve_env(cfg).num_actions)
    q = np.asarray(net.apply(jax.device_get(out.params), jax.nn.one_hot(jnp.arange(2), 2)))
    np.testing.assert_allclose(q, q_star, atol=0.01)
