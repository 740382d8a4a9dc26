"""PQN with strategy ``replicated`` on 8 forced CPU devices: the environments are split
over the devices and each minibatch's gradient is all-reduced (jax.lax.pmean under
shard_map), so every device holds bit-identical parameters after training, and the run
equals the single-device one with the same global batch up to float summation order.
(Two processes: tests/slow/multidevice/test_multi_process.py.)"""

import jax
import numpy as np
import pytest

from jaxq import pqn
from jaxq.deep_config import DeepConfig
from jaxq.strategies import make_mesh

CONFIG = dict(algo="pqn", env_id="CartPole-v1", num_envs=8, total_steps=256, rollout_len=8,
              num_minibatches=2, num_epochs=2, width=16, depth=1, num_chunks=2,
              eval_episodes=4, eval_max_steps=20)


def test_replicated_pqn_keeps_identical_replicas_and_equals_one_device():
    assert jax.device_count() >= 4
    key = jax.random.key(5)
    one = jax.jit(pqn.make_train_pqn(DeepConfig(**CONFIG)))(key)
    rep_cfg = DeepConfig(**CONFIG, strategy="replicated", num_devices=4)
    rep = jax.jit(pqn.make_train_pqn(rep_cfg, mesh=make_mesh(4)))(key)
    for leaf in jax.tree.leaves((rep.params, rep.opt_state)):
        shards = [np.asarray(s.data) for s in leaf.addressable_shards]
        assert len(shards) == 4
        for s in shards[1:]:
            np.testing.assert_array_equal(shards[0], s)  # bit-identical replicas
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(rep.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for k in ("episodes", "return_sum", "length_sum"):  # the same experience, exactly
        np.testing.assert_array_equal(one.metrics[k], rep.metrics[k])
    np.testing.assert_allclose(one.metrics["loss"], rep.metrics["loss"], rtol=1e-5)


def test_replicated_needs_envs_divisible_by_devices():
    cfg = DeepConfig(**dict(CONFIG, num_envs=6), strategy="replicated", num_devices=4)
    with pytest.raises(ValueError, match=r"num_envs=6 must be divisible by the number of "
                                         r"devices \(4\)"):
        pqn.make_train_pqn(cfg, mesh=make_mesh(4))
