"""The two ways a tabular env steps (computed outcomes, tabulated outcomes) agree exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from jaxq.envs.base import TabularState

# one case per family and outcome structure (each costs one compile): slippery with
# unequal and with zero probabilities, rainy Taxi, slippery cliff, slippery maze, and an
# explicit MDP (K = 1, noisy rewards)
CASES = [
    ("FrozenLake-v1", {"is_slippery": True, "success_rate": 1.0}),  # zero-probability outcomes
    ("FrozenLake8x8-v1", {"success_rate": 0.5}),
    ("Taxi-v4", {"is_rainy": True}),
    ("CliffWalking-v1", {"is_slippery": True}),
    ("Maze-v0", {"size": 12, "slip": 0.3, "start": "uniform", "seed": 2}),
    ("MaximizationBias-v0", {}),
]


@pytest.mark.parametrize("env_id, kwargs", CASES)
def test_tabulated_step_equals_computed_step(env_id, kwargs):
    env, params = jaxq.make(env_id, **kwargs)
    assert jax.eval_shape(env.step_tables, params) is not None  # small: tabulated
    n = 4096
    step = jax.vmap(env.step_from_bits, in_axes=(0, 0, 0, 0, None, None))

    @jax.jit  # one program per case, as training builds the tables (VecEnv.prepare) inside
    def both(key, p):  # its jitted chunk; built op by op they cost ~60 small compiles
        k1, k2, k3 = jax.random.split(key, 3)
        s = jax.random.randint(k1, (n,), 0, env.num_states)
        a = jax.random.randint(k2, (n,), 0, env.action_space(p).n)
        bits = jax.random.bits(k3, (2, n), jnp.uint32)
        state = TabularState(time=jnp.zeros(n, jnp.int32), s=s)
        return (step(bits[0], bits[1], state, a, p, None),
                step(bits[0], bits[1], state, a, p, env.step_tables(p)))

    computed, tabulated = both(jax.random.key(0), params)
    for x, y in zip(jax.tree.leaves(computed), jax.tree.leaves(tabulated), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

def test_large_models_are_not_tabulated():
    env, params = jaxq.make("Maze-v0", size=1024)
    assert env.step_tables(params) is None
