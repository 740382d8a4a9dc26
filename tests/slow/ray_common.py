"""What tests/slow/test_ray.py and test_ray_e2e.py share: the local Ray instance (one per
module, on 127.0.0.1, 2 CPUs), ground truth by value iteration, a compile cache, and the
exactly-once check of a run's push counts. Importing it skips the module without Ray."""

import warnings

import numpy as np
import pytest

import jaxq

ray = pytest.importorskip("ray")

CONFIG = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=64, total_steps=400_000,
                          num_chunks=20, eval_every=0)


@pytest.fixture(scope="module")
def cluster():
    with warnings.catch_warnings():  # Ray forks its daemons; this process's JAX is idle
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def truth():
    env, params = jaxq.make(CONFIG.env_id)
    model = jaxq.tabular_model(env, params)
    return model, np.asarray(jaxq.value_iteration(model, CONFIG.gamma))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla"))


def greedy_gap(model, q_star, q, gamma=CONFIG.gamma):
    """1 - V^greedy(start) / V*(start), exactly on the model."""
    from jaxq.model import greedy_policy

    v_star = float(jaxq.start_value(model, q_star))
    v = float(jaxq.policy_start_value(model, greedy_policy(q, model.valid), gamma))
    return 1.0 - v / v_star


def exactly_once(report, chunks):
    assert report["applied_equals_acknowledged"]
    assert report["acknowledged"] == [chunks] * report["num_learners"]
    for shard in report["shards"]:
        assert shard["applied"] == report["acknowledged"]
