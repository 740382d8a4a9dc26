"""PQN strategy ``async`` on forced CPU devices, the two longer checks (``make test-slow``;
``make test`` keeps the stale-copy schedule, the probe's Q* and the bad settings in
tests/multidevice/test_deep_async.py, and DQN's async == replicated and mesh resume in
tests/multidevice/test_dqn_strategies.py): ``sync_every = 1`` is ``replicated`` bit for bit,
and the actors' copy is part of the checkpoint."""

import jax
import numpy as np

from jaxq.deep_config import DeepConfig, make_train_deep, train_deep
from jaxq.pqn import make_pqn_learner
from jaxq.strategies import make_mesh

CARTPOLE = dict(algo="pqn", env_id="CartPole-v1", num_envs=8, total_steps=256, rollout_len=8,
                num_minibatches=2, num_epochs=2, width=16, depth=1, num_chunks=2,
                eval_episodes=4, eval_max_steps=20, num_devices=2)


def test_async_with_sync_every_1_is_replicated_bit_for_bit():
    key = jax.random.key(5)
    rep = jax.jit(make_train_deep(DeepConfig(**CARTPOLE, strategy="replicated"),
                                  make_mesh(2)))(key)
    asy = jax.jit(make_train_deep(DeepConfig(**CARTPOLE, strategy="async", sync_every=1),
                                  make_mesh(2)))(key)
    for a, b in zip(jax.tree.leaves((rep.params, rep.opt_state, rep.metrics)),
                    jax.tree.leaves((asy.params, asy.opt_state, asy.metrics))):
        np.testing.assert_array_equal(a, b)
    # and the run learned (equal runs that never moved would prove nothing): every
    # parameter array moved away from its initialisation
    cfg = DeepConfig(**CARTPOLE, strategy="replicated")
    start = jax.jit(make_pqn_learner(cfg, make_mesh(2)).init)(key, cfg.hparams()).params
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(rep.params)):
        assert not np.array_equal(a, b)


def test_async_resumes_bit_for_bit_with_the_actors_copy(tmp_path):
    """The stale copy is part of the checkpoint: sync_every = 3 with one update per chunk
    refreshes it at updates 0 and 3, so a run interrupted after chunk 2 resumes at
    update 2 acting on the copy of update 0 (greedy actors: the copy decides every
    action; lr 0.05 moves the parameters enough in two updates that acting on the live
    ones changes the run: checked by restoring the copy as the live parameters). The
    resumed run equals the uninterrupted one, bit for bit."""
    cfg = DeepConfig(**{**CARTPOLE, "num_chunks": 4}, strategy="async", sync_every=3,
                     epsilon=0.0, epsilon_end=0.0, lr=0.05)
    assert cfg.plan()["chunk_iters"] == 1
    cache = str(tmp_path / "xla")
    full = train_deep(cfg, compile_cache=cache)
    out = str(tmp_path / "run")
    train_deep(cfg, out=out, checkpoint_every=1, stop_after_chunks=2, compile_cache=cache)
    resumed = train_deep(cfg, out=out, checkpoint_every=1, resume=True, compile_cache=cache)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        assert a.tobytes() == b.tobytes()
    for k in full.metrics:
        np.testing.assert_array_equal(full.metrics[k], resumed.metrics[k], err_msg=k)
