"""Counters reported by ``jaxq.train`` past 2**31, through the real training loop.

Driving 2**31 env steps takes minutes on a CPU, so each test runs one real chunk, writes
a checkpoint, moves the checkpoint's counters to where a long run would have them (the
chunk counter near the end of a > 2**31-step run, or every env deep into a long
episode), resumes with ``jaxq.train(..., resume=True)`` and checks what the device's
per-chunk counters and the host's totals report for the chunks that really ran.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxq
from jaxq import checkpoint as ckpt
from jaxq.config import TrainConfig
from jaxq.training import build_learner

INT32_MAX = 2**31 - 1


def _rewrite_checkpoint(path, cfg, edit_carry, edit_history=None):
    """Load ``path`` as ``cfg``'s run would, edit it, write it back."""
    learner = build_learner(cfg)
    hp = cfg.hparams()
    template = jax.eval_shape(learner.init, jax.random.key(cfg.seed), hp, learner.params)
    carry, history = ckpt.load(str(path), template, cfg.to_json())
    carry = edit_carry(carry)
    if edit_history is not None:
        history = edit_history(history)
    ckpt.save(str(path), carry, history, cfg.to_json())


def test_env_steps_and_episodes_exact_past_2_31(tmp_path):
    """A one-step MDP (every step ends an episode): 2**14 envs x 32 steps per chunk,
    4100 chunks = 2,149,580,800 env steps and as many episodes. The last two chunks run
    for real after resuming at chunk 4098; the totals are exact int64 past 2**31."""
    n, iters, chunks = 2**14, 32, 4100
    cfg = TrainConfig(env_id="TwoStateProbe-v0", env_kwargs={"max_steps": 1}, num_envs=n,
                      total_steps=n * iters * chunks, num_chunks=chunks, eval_every=0,
                      lr_schedule="constant", epsilon_schedule="constant")
    total = n * iters * chunks
    assert total > 2**31 and n * iters <= INT32_MAX  # per-chunk device counts fit int32
    path = tmp_path / "ckpt.npz"
    first = jaxq.train(cfg, progress=False, checkpoint_path=str(path), checkpoint_every=1,
                       stop_after_chunks=1)
    assert int(first.metrics["episodes"][-1]) == n * iters  # one episode per env step
    done = chunks - 2
    _rewrite_checkpoint(
        path, cfg,
        lambda c: c._replace(chunk=jnp.int32(done), t=jnp.int32(done * iters)),
        lambda h: {k: np.repeat(v, done) for k, v in h.items()})
    r = jaxq.train(cfg, progress=False, checkpoint_path=str(path), checkpoint_every=1,
                   resume=True)
    m = r.metrics
    assert len(m["env_steps"]) == chunks
    assert m["env_steps"].dtype == np.int64 and m["episodes"].dtype == np.int64
    assert int(m["env_steps"][-1]) == total == cfg.plan()["env_steps"]
    assert m["env_steps"][-2:].tolist() == [(chunks - 1) * n * iters, total]
    # the two chunks that ran: every env step ended an episode, counted on the device
    assert m["episodes_in_chunk"][-2:].tolist() == [n * iters] * 2
    assert int(m["episodes"][-1]) == total
    np.testing.assert_array_equal(m["mean_length"][-2:], [1.0, 1.0])
    assert np.all(np.isfinite(m["mean_abs_td"][-2:])) and np.all(m["mean_abs_td"][-2:] >= 0)
    assert r.summary()["episodes"] == float(total) and r.summary()["env_steps"] == float(total)


def test_mean_length_exact_when_lengths_of_one_chunk_pass_2_31(tmp_path):
    """2**11 envs on CliffWalking (no termination within one step of the start), each
    2**20 - 1 steps into an episode that its time limit of 2**20 ends at the next step:
    one chunk of one step finishes 2**11 episodes of 2**20 steps (2**31 steps in all,
    although the chunk itself takes only 2**11 env steps). The mean length is 2**20."""
    n, limit = 2**11, 2**20
    cfg = TrainConfig(env_id="CliffWalking-v1", env_kwargs={"max_steps": limit}, num_envs=n,
                      total_steps=2 * n, num_chunks=2, eval_every=0)
    path = tmp_path / "ckpt.npz"
    first = jaxq.train(cfg, progress=False, checkpoint_path=str(path), checkpoint_every=1,
                       stop_after_chunks=1)
    assert int(first.metrics["episodes_in_chunk"][0]) == 0

    def deep_into_episodes(c):
        start = jnp.full(n, 36, jnp.int32)  # CliffWalking's start: the goal is 12 moves away
        env_state = c.env_state.replace(time=jnp.full(n, limit - 1, jnp.int32), s=start)
        return c._replace(env_state=env_state, obs=start,
                          ep_length=jnp.full(n, limit - 1, jnp.int32))

    _rewrite_checkpoint(path, cfg, deep_into_episodes)
    r = jaxq.train(cfg, progress=False, checkpoint_path=str(path), checkpoint_every=1,
                   resume=True)
    m = r.metrics
    assert int(m["episodes_in_chunk"][-1]) == n  # every env's episode was truncated
    assert m["mean_length"][-1] == limit
