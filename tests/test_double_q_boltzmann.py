"""Double Q-learning acts on the mean of its two tables, the estimate it reports: Boltzmann
exploration at temperature T samples softmax(mean / T) (not softmax((QA + QB) / T), i.e. at
half the temperature), and epsilon-greedy picks what it always did."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxq.config import TrainConfig
from jaxq.training import build_learner

N = 20_000
ROW = np.array([0.0, 1.0, 2.0, 0.5], np.float64)  # FrozenLake's start state 0


def _first_actions(**kw):
    cfg = TrainConfig(env_id="FrozenLake-v1", algo="double_q", num_envs=N, total_steps=N,
                      num_chunks=1, eval_every=0, **kw)
    q = np.zeros((16, 4), np.float32)
    q[0] = ROW.astype(np.float32)
    learner = build_learner(cfg, init_q=jnp.asarray(q))
    hp = cfg.hparams()
    c = jax.jit(learner.init)(jax.random.key(1), hp)  # one compile, not one per op
    _, _, tr = jax.jit(learner.step)(c, hp)
    s, a = np.asarray(tr.s), np.asarray(tr.a)
    assert (s == 0).all()
    return np.bincount(a, minlength=4)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_double_q_boltzmann_samples_softmax_of_the_mean(temperature):
    counts = _first_actions(exploration="boltzmann", temperature=temperature)
    p = np.exp(ROW / temperature) / np.exp(ROW / temperature).sum()
    assert stats.chisquare(counts, N * p).pvalue > 1e-4, (counts, N * p)
    p_half = np.exp(2 * ROW / temperature) / np.exp(2 * ROW / temperature).sum()
    assert stats.chisquare(counts, N * p_half).pvalue < 1e-6  # the old, half temperature


def test_double_q_epsilon_greedy_is_greedy_on_the_mean():
    counts = _first_actions(epsilon=0.2, epsilon_schedule="constant")
    p = np.full(4, 0.2 / 4)
    p[2] += 0.8
    assert stats.chisquare(counts, N * p).pvalue > 1e-4, counts
