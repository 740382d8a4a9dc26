"""Several processes (``jax.distributed``, 2 processes x 1 CPU device, gloo) train, checkpoint
and resume as one process on two devices does: tables (replicated through the CLI's
``--coordinator`` flags, sharded through the library with a checkpoint and resume) and PQN
replicated (through the library, and through ``jaxq train --q-function mlp --coordinator``
with a checkpoint and resume). Each process imports JAX and compiles its programs, about a minute of CPU per
test on the 2-core machine, so they run in ``make test-slow`` (``make test-all``, CI);
``make test`` keeps the unreachable-coordinator error and every strategy on 8 devices of
one process (tests/multidevice)."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import jaxq
from cli_runner import run as _cli_run
from jaxq.config import TrainConfig
from jaxq.deep_config import DeepConfig, flat_params, train_deep
from jaxq.strategies import make_mesh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEEP_CONFIG = dict(algo="pqn", env_id="CartPole-v1", num_envs=8, total_steps=256, rollout_len=8,
                   num_minibatches=2, num_epochs=2, width=16, depth=1, num_chunks=2,
                   eval_episodes=4, eval_max_steps=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args, env_extra=None):
    env = {**os.environ, "XLA_FLAGS": "", "JAXQ_MULTIDEVICE": "", "JAXQ_SLOW": "",
           **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "jaxq", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


TRAIN_ARGS = ["--env", "FrozenLake-v1", "--num-envs", "64", "--total-steps", "25600",
              "--num-chunks", "2", "--eval-episodes", "64", "--no-progress"]


# the CLI's --coordinator flags with the replicated table; sharded across processes is
# checked (against one device too) by the checkpoint test below
@pytest.mark.parametrize("strategy", ["replicated"])
def test_two_processes_train_one_table(tmp_path, strategy):
    port = _free_port()
    procs = [_cli(TRAIN_ARGS + ["--strategy", strategy, "--out", str(tmp_path / "multi"),
                                "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                "--process-id", str(i)]) for i in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # the one-device run in this process (one device of the 8), not a third process
    code, out, err = _cli_run(["train", *TRAIN_ARGS, "--out", str(tmp_path / "single")])
    assert code == 0, out + err
    # equal up to float summation order (per-device partial sums are all-reduced)
    np.testing.assert_allclose(np.load(tmp_path / "multi" / "q.npy"),
                               np.load(tmp_path / "single" / "q.npy"), rtol=1e-5, atol=1e-6)


_RESUME_SCRIPT = r"""
import sys
import numpy as np
from jaxq import strategies
port, pid, strategy, out = sys.argv[1:5]
strategies.init_distributed(f"127.0.0.1:{port}", 2, int(pid), timeout_s=60)
import jax
import jaxq
cfg = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=64, total_steps=64 * 100 * 4,
                       num_chunks=4, strategy=strategy, eval_every=0, seed=3)
for mode in ("full", "interrupted"):  # one process pair, its programs compiled once
    kw = dict(progress=False, checkpoint_path=f"{out}/{mode}/ckpt.npz", checkpoint_every=1)
    if mode == "interrupted":
        jaxq.train(cfg, **kw, stop_after_chunks=2)
        kw["resume"] = True  # a second process pair would do this; here the same pair
    res = jaxq.train(cfg, **kw)
    if jax.process_index() == 0:
        np.save(f"{out}/{mode}/q.npy", np.asarray(res.q))
        np.save(f"{out}/{mode}/returns.npy", np.asarray(res.metrics["mean_return"]))
"""


@pytest.mark.parametrize("strategy", ["sharded"])  # each process owns half the rows
def test_two_processes_checkpoint_and_resume_bit_for_bit(tmp_path, strategy):
    """Every process saves (process 0 writes), every process resumes from the shared file
    with the run's own layout: the table is the uninterrupted run's, bit for bit; and the
    two processes' table is one device's (up to float summation order). The uninterrupted
    and the interrupted-and-resumed runs share one process pair (two pairs cost ~30 s more
    CPU: each process imports JAX and compiles)."""
    full, resumed = tmp_path / "full", tmp_path / "interrupted"
    full.mkdir()
    resumed.mkdir()
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "", "JAXQ_MULTIDEVICE": ""}
    procs = [subprocess.Popen([sys.executable, "-c", _RESUME_SCRIPT, str(port), str(i),
                               strategy, str(tmp_path)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    np.testing.assert_array_equal(np.load(resumed / "q.npy"), np.load(full / "q.npy"))
    np.testing.assert_array_equal(np.load(resumed / "returns.npy"),
                                  np.load(full / "returns.npy"))
    one = jaxq.train(TrainConfig(env_id="FrozenLake-v1", num_envs=64, total_steps=64 * 100 * 4,
                                 num_chunks=4, eval_every=0, seed=3), progress=False)
    np.testing.assert_allclose(np.load(full / "q.npy"), one.q, rtol=1e-5, atol=1e-6)


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


def test_two_processes_train_as_one_process_on_two_devices(tmp_path):
    """PQN replicated over 2 processes of 1 CPU device each (jax.distributed, gloo):
    checkpointed after chunk 1 (every process saves, process 0 writes, the env states
    of both gathered), resumed, and equal to this process's uninterrupted run on 2 of its
    8 devices: parameters and metrics bit for bit."""
    cfg = DeepConfig(**DEEP_CONFIG, strategy="replicated", num_devices=2)
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


MLP_ARGS = ["--env", "CartPole-v1", "--q-function", "mlp", "--strategy", "replicated",
            "--num-devices", "2", "--num-envs", "8", "--total-steps", "256", "--rollout-len",
            "8", "--num-minibatches", "2", "--num-epochs", "2", "--width", "16", "--depth", "1",
            "--num-chunks", "2", "--eval-episodes", "4", "--eval-max-steps", "20",
            "--no-compile-cache"]


def _mlp_pair(out, *extra):
    """``jaxq train`` MLP_ARGS as 2 processes (127.0.0.1) writing to ``out``; their output."""
    port = _free_port()
    procs = [_cli(MLP_ARGS + ["--out", str(out), "--checkpoint-every", "1", *extra,
                              "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                              "--process-id", str(i)]) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert f"to {out}" in outs[0] and "wrote" not in outs[1], outs  # process 0 reports
    return outs


def _same_params(a_dir, b_dir):
    with np.load(a_dir / "params.npz") as a, np.load(b_dir / "params.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def test_cli_trains_a_network_over_two_processes_as_one_process_on_two_devices(tmp_path):
    """``jaxq train --q-function mlp --coordinator ...`` in 2 processes of 1 CPU device:
    every process trains and checkpoints, process 0 alone writes and reports, process 1
    exits 0 silently, and the saved parameters equal this process's run on 2 of its 8
    devices bit for bit (the library's equality, test above, through the CLI's flags).
    Then 2 processes ``--resume`` a checkpoint this process wrote after chunk 1 (one
    process, 2 devices): every process reads it with its own layout and the run ends
    with the uninterrupted parameters, bit for bit."""
    from jaxq import cli

    multi, single, resumed = tmp_path / "multi", tmp_path / "single", tmp_path / "resumed"
    _mlp_pair(multi, "--no-progress")
    assert {"config.json", "params.npz", "metrics.json", "checkpoint.npz"} <= set(
        os.listdir(multi))
    code, out, err = _cli_run(["train", *MLP_ARGS, "--out", str(single), "--no-progress"])
    assert code == 0, out + err
    _same_params(multi, single)

    config = cli.config_from_args(cli.build_parser().parse_args(
        ["train", *MLP_ARGS, "--out", str(resumed)]))
    jaxq.train(config, checkpoint_path=str(resumed / "checkpoint.npz"), checkpoint_every=1,
               stop_after_chunks=1, progress=False)  # interrupted after chunk 1 of 2
    outs = _mlp_pair(resumed, "--resume")  # progress on: process 0 says where it resumes
    assert f"resuming at chunk 1/2 from {resumed / 'checkpoint.npz'}" in outs[0], outs
    _same_params(resumed, single)
