"""Deep runs in chunks (jaxq/deep_run.py): a PQN or DQN run interrupted after some chunks
and resumed from its checkpoint ends with the uninterrupted run's parameters (DQN: and
target network) and metrics, bit for bit; a checkpoint of another Q-function, algorithm
or config is refused before anything compiles, naming what differs. Tiny networks and a
few hundred env steps: the compiles are most of the time, shared through a compile cache
(the uninterrupted, interrupted and resumed runs are the same two programs). In
``make test-slow``; ``make test`` keeps a PQN resume through ``jaxq.train``
(tests/test_q_function_api.py), DQN's async mesh resume (tests/multidevice/
test_dqn_strategies.py) and the refusal of another Q-function's checkpoint."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxq import checkpoint as ckpt
from jaxq import deep_run
from jaxq.config import TrainConfig
from jaxq.deep_config import DeepConfig, host_history, make_train_deep, train_deep

BASE = dict(env_id="CartPole-v1", num_envs=4, width=8, depth=1, num_chunks=4,
            eval_episodes=2, eval_max_steps=10, seed=3)
PQN = DeepConfig(algo="pqn", **BASE, total_steps=4 * 4 * 2 * 4, rollout_len=4,
                 num_minibatches=2, num_epochs=1)
DQN = DeepConfig(algo="dqn", **BASE, total_steps=4 * 8 * 4, buffer_size=64, batch_size=8,
                 learning_starts=16, target_update_every=4)


def _same_tree(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) > 0
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _same_run(a, b):
    _same_tree(a.params, b.params)
    if a.target_params is not None or b.target_params is not None:
        _same_tree(a.target_params, b.target_params)
    assert sorted(a.metrics) == sorted(b.metrics)
    for k in a.metrics:  # NaN == NaN here (DQN's loss before learning starts)
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One compile cache for the module: the same configs compile once."""
    return str(tmp_path_factory.mktemp("xla"))


@pytest.mark.parametrize("config", [PQN, DQN], ids=["pqn", "dqn"])
def test_interrupted_deep_run_resumes_bit_for_bit(config, tmp_path, cache):
    seen = []
    log = lambda i, row: seen.append(i)  # noqa: E731
    # uninterrupted; resume=True with no checkpoint yet starts from scratch
    full = train_deep(config, out=str(tmp_path / "full"), resume=True, checkpoint_every=4,
                      compile_cache=cache, callback=log)
    assert seen == [1, 2, 3, 4]
    out = str(tmp_path / "run")
    seen.clear()
    # checkpoints after chunks 2 and 4: stopping after 3 loses chunk 3, which the
    # resumed run computes again from the checkpoint of chunk 2
    part = train_deep(config, out=out, checkpoint_every=2, stop_after_chunks=3,
                      compile_cache=cache, callback=log)
    assert seen == [1, 2, 3] and len(part.metrics["env_steps"]) == 3
    assert os.path.exists(deep_run.checkpoint_path(out))
    seen.clear()
    resumed = train_deep(config, out=out, checkpoint_every=2, resume=True,
                         compile_cache=cache, callback=log,
                         before_run=lambda: seen.append("before_run"))
    assert seen == ["before_run", 3, 4]  # it went on from chunk 2, not from scratch
    assert len(resumed.metrics["env_steps"]) == 4
    _same_run(full, resumed)
    # the parameters moved in the last chunk (a run that learned nothing would resume
    # trivially)
    assert any(not np.array_equal(x, y) for x, y in
               zip(jax.tree.leaves(part.params), jax.tree.leaves(full.params)))


def test_the_chunked_run_is_the_pure_trains_run(cache):
    """jaxq.deep_run's host loop over the compiled chunk runs the experiment of
    make_train_deep's one program (PQN; DQN shares the loop)."""
    full = train_deep(PQN, compile_cache=cache)
    pure = jax.jit(make_train_deep(PQN))(jax.random.key(PQN.seed))
    pure_history = host_history(PQN, jax.device_get(pure.metrics))
    for k in ("episodes", "mean_return", "mean_length"):  # the same experience, exactly
        np.testing.assert_array_equal(full.metrics[k], pure_history[k], err_msg=k)
    for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(pure.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _write_checkpoint(path, config_json):
    ckpt.save(path, {"x": jnp.zeros(3)}, {"episodes": np.zeros(1)}, config_json)


@pytest.mark.parametrize("saved, resumed, match", [
    (PQN, DQN, r"q_function='mlp' \(algo 'pqn'\); this run is q_function='mlp' \(algo 'dqn'\)"),
    (TrainConfig(), PQN,
     r"q_function='table' \(algo 'q_learning'\); this run is q_function='mlp' \(algo 'pqn'\)"),
    (PQN.replace(lr=1e-3), PQN, r"different config \(fields \['lr'\]\)"),
])
def test_a_checkpoint_of_another_run_is_refused_before_compiling(saved, resumed, match,
                                                                   tmp_path):
    out = tmp_path / "run"
    _write_checkpoint(str(out / deep_run.CHECKPOINT), saved.to_json())
    started = []
    with pytest.raises(ValueError, match=match):
        train_deep(resumed, out=str(out), resume=True, before_run=lambda: started.append(1))
    assert started == []  # refused before the caller writes anything


def test_a_tabular_resume_of_a_deep_checkpoint_names_the_q_function(tmp_path):
    path = str(tmp_path / "ck.npz")
    _write_checkpoint(path, PQN.to_json())
    with pytest.raises(ValueError, match=r"q_function='mlp' \(algo 'pqn'\); this run is "
                                         r"q_function='tiles' \(algo 'q_learning'\)"):
        ckpt.read(path, {"x": jnp.zeros(3)}, TrainConfig(q_function="tiles",
                                                         env_id="MountainCar-v0").to_json())


@pytest.mark.parametrize("kwargs, match", [
    (dict(checkpoint_every=2), "checkpoint_every and resume need out"),
    (dict(resume=True), "checkpoint_every and resume need out"),
    (dict(checkpoint_every=-1, out="x"), "checkpoint_every must be an int >= 0"),
    (dict(stop_after_chunks=0), "stop_after_chunks must be an int >= 1"),
])
def test_bad_run_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_deep(PQN, **kwargs)


def test_out_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        train_deep(PQN, out=str(f))
