"""PQN trained for several seeds in one vmapped call equals separate calls (``make
test-slow``: two PQN compiles, ~14 s of CPU on the 2-core machine). ``make test`` still
checks that ``make_train`` of an mlp config is the network's pure, vmappable train
(tests/test_q_function_api.py) and the tables' vmap = loop equality (tests/test_learners.py)."""

import jax
import numpy as np

from jaxq import pqn
from jaxq.deep_config import DeepConfig

TINY = dict(env_id="CartPole-v1", num_envs=4, width=8, depth=1, num_chunks=2,
            eval_episodes=2, eval_max_steps=10)


def test_pqn_vmap_over_seeds_equals_separate_calls():
    """Every episode count, return and length is the same bit for bit; the parameters
    agree to float rounding only: with a leading seed axis XLA:CPU orders some of the
    gradient's sums (the batch row sums of bias gradients, and in other layouts the
    matrix products too) differently, and last-bit differences then propagate
    (measured: equal after one gradient step, not after two, with any optimizer)."""
    config = DeepConfig(algo="pqn", total_steps=64, rollout_len=4, num_minibatches=2,
                        num_epochs=2, **TINY)
    train = jax.jit(pqn.make_train_pqn(config))
    keys = jax.random.split(jax.random.key(3), 2)
    both = jax.jit(jax.vmap(train))(keys)
    for i in range(2):
        one = train(keys[i])
        for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(both.params)):
            np.testing.assert_allclose(a, b[i], rtol=1e-5, atol=1e-6)
        for k in ("episodes", "return_sum", "length_sum"):
            np.testing.assert_array_equal(one.metrics[k], both.metrics[k][i])
    m = jax.tree.map(np.asarray, both.metrics)
    assert np.all(np.isfinite(m["loss"]))
    assert m["episodes"].shape == (2, 2)
    assert not np.array_equal(m["loss"][0], m["loss"][1])  # the seeds differ
