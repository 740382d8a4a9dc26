"""Stale tables on 8 forced CPU devices, learned to a tight tolerance (``make test-slow``).

``make test`` still checks (tests/multidevice/test_strategies.py::
test_stale_tables_still_converge_to_q_star): the same strategies and staleness learn Q*
at a small size, 1M steps of 256 envs to 0.1 (async) and 0.2 (replicated); and every
strategy equals one device (test_replicated_sharded_async_equal_single_device,
test_buffered_sync_is_stale_but_deterministic).
"""

import jax
import pytest

import jaxq
from jaxq.config import TrainConfig
from jaxq.training import make_train


@pytest.fixture(scope="module")
def frozen_q_star():
    env, params = jaxq.make("FrozenLake-v1")
    return jaxq.value_iteration(jaxq.tabular_model(env, params), 0.99, tol=1e-7)


def test_eight_devices():
    assert jax.device_count() == 8


@pytest.mark.parametrize("strategy, k", [("async", 16), ("replicated", 8)])
def test_stale_tables_converge_to_q_star_tightly(strategy, k, frozen_q_star):
    """Tables synchronised every k steps still learn Q* within 0.05 after 6M steps."""
    cfg = TrainConfig(env_id="FrozenLake-v1", strategy=strategy, sync_every=k, num_envs=512,
                      total_steps=6_000_000, num_chunks=4, eval_every=0, lr=0.2, lr_end=0.005,
                      epsilon=1.0, epsilon_end=1.0)
    out = jax.jit(make_train(cfg, frozen_q_star))(jax.random.key(0))
    assert float(out.metrics["q_error"][-1]) < 0.05
