"""Replicas of a replicated table stay bit-identical: on the sparse path each cell's update
is computed once, by its owner, and written by every device, so no device's scatter order
(GPU atomics add duplicates in a different order on every device) can make them drift."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq import aggregate
from jaxq.config import TrainConfig
from jaxq.strategies import AXIS
from jaxq.training import build_learner


def _copies(strategy):
    """Every device's copy of the table after 30 steps of Taxi (3000 cells, 128 envs:
    the sparse, gathered-entries path) on 4 devices."""
    cfg = TrainConfig(env_id="Taxi-v3", strategy=strategy, num_devices=4, num_envs=128,
                      total_steps=128 * 30, num_chunks=1, eval_every=0, lr=0.5,
                      sync_every=3 if strategy == "async" else 1)
    learner = build_learner(cfg)
    assert not learner.venv.num_states * learner.venv.num_actions <= 4 * cfg.num_envs  # sparse
    hp = cfg.hparams()
    c = learner.init(jax.random.key(0), hp)
    c, _ = jax.jit(learner.chunk)(c, hp)
    copies = [np.asarray(s.data) for s in c.q.addressable_shards]
    assert len(copies) == 4 and np.abs(copies[0]).max() > 0
    return copies


@pytest.mark.parametrize("strategy", ["replicated", "async"])
def test_replicas_stay_bit_identical(strategy):
    copies = _copies(strategy)
    for other in copies[1:]:
        np.testing.assert_array_equal(copies[0], other)


def test_replicas_agree_even_when_each_device_rounds_differently(monkeypatch):
    """Fault injection: a scatter whose rounding differs per device (as GPU atomics do).
    Were every device to apply the gathered entries itself, the copies would differ."""
    apply_updates = aggregate.apply_updates

    def per_device_rounding(q, idx, td, *rest):
        q_new, scratch, visits = apply_updates(q, idx, td, *rest)
        d = jax.lax.axis_index(AXIS).astype(jnp.float32)
        touched = jnp.zeros(q.shape, bool).at[idx].set(True, mode="drop")
        return jnp.where(touched, q_new * (1 + d * 2.0**-20), q_new), scratch, visits

    monkeypatch.setattr(aggregate, "apply_updates", per_device_rounding)
    copies = _copies("replicated")
    for other in copies[1:]:
        np.testing.assert_array_equal(copies[0], other)
