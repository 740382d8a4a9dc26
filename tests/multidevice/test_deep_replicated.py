"""PQN with strategy ``replicated`` on 8 forced CPU devices: the environments are split
over the devices and each minibatch's gradient is all-reduced (jax.lax.pmean under
shard_map), so every device holds bit-identical parameters after training, and the run
equals the single-device one with the same global batch up to float summation order.
Two processes (jax.distributed) on one device each run, checkpoint and resume as one
process on two devices does."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxq import pqn
from jaxq.deep_config import DeepConfig, flat_params, train_deep
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


# ---- several processes (jax.distributed) ------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_TWO_PROCESS_SCRIPT = r"""
import sys
import numpy as np
from jaxq import strategies
port, pid, out, config = sys.argv[1:5]
strategies.init_distributed(f"127.0.0.1:{port}", 2, int(pid), timeout_s=60)
import json
import jax
from jaxq.deep_config import DeepConfig, flat_params, train_deep
cfg = DeepConfig(**json.loads(config))
assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
kw = dict(out=f"{out}/run", checkpoint_every=1, compile_cache=f"{out}/xla{pid}")
train_deep(cfg, **kw, stop_after_chunks=1)  # interrupted after chunk 1 of 2
res = train_deep(cfg, **kw, resume=True)  # the same process pair resumes (a new pair would)
if jax.process_index() == 0:
    np.savez(f"{out}/resumed.npz", **flat_params(res.params),
             **{"metric_" + k: v for k, v in res.metrics.items()})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one_process_on_two_devices(tmp_path):
    """PQN replicated over 2 processes of 1 CPU device each (jax.distributed, gloo):
    checkpointed after chunk 1 (every process saves, process 0 writes, the env states
    of both gathered), resumed, and equal to this process's uninterrupted run on 2 of its
    8 devices: parameters and metrics bit for bit."""
    cfg = DeepConfig(**CONFIG, strategy="replicated", num_devices=2)
    env = {**os.environ, "XLA_FLAGS": "", "JAXQ_MULTIDEVICE": ""}
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESS_SCRIPT, str(port), str(i),
                               str(tmp_path), cfg.to_json()], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    one = train_deep(cfg, mesh=make_mesh(2))
    with np.load(tmp_path / "resumed.npz") as z:
        multi = {k: z[k] for k in z.files}
    params = flat_params(one.params)
    assert sorted(params) == sorted(k for k in multi if not k.startswith("metric_"))
    for k, v in params.items():
        assert v.dtype == multi[k].dtype and v.tobytes() == multi[k].tobytes(), k
    for k, v in one.metrics.items():
        np.testing.assert_array_equal(v, multi["metric_" + k], err_msg=k)
