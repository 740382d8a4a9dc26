"""PQN with strategy ``async`` on forced CPU devices (Mnih et al. 2016's bounded
staleness): the learners all-reduce gradients as ``replicated`` does, while the actors act
on a copy of the parameters refreshed every ``sync_every`` updates. ``sync_every = 1`` is
``replicated``, bit for bit; with ``sync_every > 1`` the rollout's actions come from the
stale copy (a test that sets the copy and the live parameters to opposite policies and
looks at what the envs did), and Q-learning targets (lambda = 0) still take the network
to Q* of a probe MDP. ``sync_every = 1`` == ``replicated`` bit for bit and the resume of
the actors' copy are tests/slow/multidevice/test_deep_async_slow.py (make test-slow);
DQN's own (tests/multidevice/test_dqn_strategies.py) check both mechanisms here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq import networks
from jaxq.deep_config import DeepConfig, make_train_deep, resolve_env
from jaxq.pqn import make_pqn_learner
from jaxq.strategies import make_mesh

CARTPOLE = dict(algo="pqn", env_id="CartPole-v1", num_envs=8, total_steps=256, rollout_len=8,
                num_minibatches=2, num_epochs=2, width=16, depth=1, num_chunks=2,
                eval_episodes=4, eval_max_steps=20, num_devices=2)
GAMMA = 0.9
# TwoStateProbe-v0 (jaxq/envs/textbook.py): 0 -a0-> 0 (0), 0 -a1-> 1 (0), 1 -a0-> end (1),
# 1 -a1-> 0 (0.5); no time limit
PROBE = dict(algo="pqn", env_id="TwoStateProbe-v0", gamma=GAMMA, q_lambda=0.0, reward_scale=1.0,
             num_envs=16, rollout_len=8, num_minibatches=2, num_epochs=2, width=16, depth=1,
             eval_episodes=2, eval_max_steps=10, strategy="async", num_devices=2)


def _policy_params(params, prefer: int):
    """``params`` whose network outputs Q = (10 at action ``prefer``, -10 elsewhere) in
    every state: the head's kernel zeroed, its bias set."""
    head = max(k for k in params["params"] if k.startswith("Dense_"))
    bias = jnp.where(jnp.arange(2) == prefer, 10.0, -10.0)
    new = jax.tree.map(lambda x: x, params)  # a copy of the containers
    new["params"][head] = {"kernel": jnp.zeros_like(params["params"][head]["kernel"]),
                           "bias": bias}
    return new


def test_actors_act_on_the_stale_copy_until_it_is_refreshed():
    """Greedy actors (epsilon 0) on the probe, live parameters preferring action 0 (stay
    in state 0, reward 0), the actors' copy preferring action 1 (0 -> 1 -> 0 ..., 0.5 every
    second step). One chunk of one update: at update 1 (no refresh with sync_every = 2)
    the envs follow the copy and collect 0.5 per two steps; at update 2 the copy is
    refreshed from the live parameters first and they collect nothing."""
    cfg = DeepConfig(**PROBE, total_steps=16 * 8 * 4, num_chunks=4, sync_every=2,
                     epsilon=0.0, epsilon_end=0.0)
    learner = make_pqn_learner(cfg, make_mesh(2))
    hp = cfg.hparams()
    c0 = jax.jit(learner.init)(jax.random.key(0), hp)
    assert cfg.plan()["chunk_iters"] == 1
    params, actor = _policy_params(c0.params, 0), _policy_params(c0.params, 1)
    chunk = jax.jit(learner.chunk)
    K = cfg.rollout_len
    for update, refreshed in ((1, False), (2, True), (3, False)):
        c = c0._replace(params=params, actor=actor, t=jnp.int32(update * K))
        c, _ = chunk(c, hp)
        ep_return = np.asarray(c.ep_return)
        if refreshed:  # acted on the live parameters: action 0 forever
            np.testing.assert_array_equal(ep_return, 0.0)
            for a, b in zip(jax.tree.leaves(c.actor), jax.tree.leaves(params)):
                np.testing.assert_array_equal(a, b)  # the copy is the pre-update params
        else:  # acted on the copy: action 1, 0.5 every second step
            np.testing.assert_array_equal(ep_return, 0.5 * (K // 2))
            for a, b in zip(jax.tree.leaves(c.actor), jax.tree.leaves(actor)):
                np.testing.assert_array_equal(a, b)  # the copy kept
        assert any(not np.array_equal(a, b) for a, b in  # the learners moved the live ones
                   zip(jax.tree.leaves(c.params), jax.tree.leaves(params)))


def test_stale_actors_still_learn_q_star_of_the_probe():
    """sync_every = 8 (64 updates: 8 refreshes), epsilon 0.5 on the stale copy, one-step
    Q-learning targets: the network's values at the two one-hot states reach Q*
    (measured: within 7e-4 after 8,192 env steps)."""
    cfg = DeepConfig(**PROBE, total_steps=8192, num_chunks=2, lr=0.01, sync_every=8,
                     epsilon=0.5, epsilon_end=0.5)
    out = jax.jit(make_train_deep(cfg, make_mesh(2)))(jax.random.key(0))
    v1 = 0.5 / (1 - GAMMA**2)
    v0 = GAMMA * v1
    q_star = np.array([[GAMMA * v0, GAMMA * v1], [1.0, 0.5 + GAMMA * v0]])
    net = networks.make_network(cfg, resolve_env(cfg).num_actions)
    q = np.asarray(net.apply(jax.device_get(out.params), jax.nn.one_hot(jnp.arange(2), 2)))
    np.testing.assert_allclose(q, q_star, atol=0.01)


@pytest.mark.parametrize("changes, match", [
    (dict(sync_every=4), "sync_every=4 needs strategy 'async'"),
    (dict(strategy="async", sync_every=0), "sync_every must be >= 1"),
    (dict(algo="dqn", strategy="async", batch_size=100),
     r"batch_size \(100\) must be divisible by num_envs \(8\)"),
])
def test_bad_async_settings(changes, match):
    kw = {k: v for k, v in CARTPOLE.items() if k != "num_devices"}
    with pytest.raises(ValueError, match=match):
        DeepConfig(**{**kw, **changes})
