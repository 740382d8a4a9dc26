"""``experiments/baselines/numpy_plain.py``, the plain vectorized NumPy baseline, is a real
Q-learner with jaxq's semantics (it learns Q*, samples the model's dynamics, breaks
greedy ties uniformly, auto-resets) and its measure function returns bench-shaped
records. Nothing here asserts a speed."""

import math

import numpy as np
import pytest

import jaxq
import experiment_modules


numpy_plain = experiment_modules.load("numpy_plain")
benchlib = experiment_modules.load("benchlib")
numpy_vectorized = experiment_modules.load("numpy_vectorized")
PlainNumpyQLearner = numpy_plain.PlainNumpyQLearner

GAMMA = 0.99


@pytest.fixture(scope="module")
def lake():
    return benchlib.load_env("FrozenLake-v1", {"is_slippery": False})


@pytest.fixture(scope="module")
def slippery():
    return benchlib.load_env("FrozenLake-v1", {"is_slippery": True})


def _q_star(spec):
    return np.asarray(jaxq.value_iteration(spec.model, GAMMA, tol=1e-7), np.float64)


def test_learns_q_star_exactly_on_deterministic_lake(lake):
    # Deterministic dynamics make every TD target exact given Q, so constant-lr Q-learning
    # contracts to Q* on every visited cell (no noise floor); epsilon = 0.1 and random ties
    # visit them all. 10,000 steps of 256 envs reach < 1e-4 for seeds 0-3 (by 8,000);
    # Q* itself is within ~1e-5 (value_iteration's bound at tol 1e-7). 1e-3 leaves margin.
    learner = PlainNumpyQLearner(lake, 256, gamma=GAMMA, lr=0.1, epsilon=0.1, seed=0)
    learner.run(10_000)
    q, q_star = learner.q_table(), _q_star(lake)
    assert q.shape == q_star.shape == (16, 4)
    assert np.abs(q - q_star).max() < 1e-3
    assert np.array_equal(q.argmax(1)[q_star.max(1) > 0], q_star.argmax(1)[q_star.max(1) > 0])


def test_learns_optimal_policy_on_slippery_lake(slippery):
    # Stochastic dynamics with a constant lr leave Q fluctuating around Q*: rarely visited
    # cells (one TD error per step) stay ~0.1 off, but the start state, averaged over many
    # envs per step, is close, and the greedy policy is optimal. lr = 0.05 over 16,000
    # steps of 256 envs: V^greedy / V* = 1.0 and |V(start) - V*(start)| <= 0.02 for seeds
    # 0-2 (lr 0.1 occasionally drops to a 98% policy); the asserts allow the bench's 2%.
    learner = PlainNumpyQLearner(slippery, 256, gamma=GAMMA, lr=0.05, epsilon=0.1, seed=0)
    learner.run(16_000)
    q, q_star = learner.q_table(), _q_star(slippery)
    v_star = float(jaxq.start_value(slippery.model, q_star))
    v_greedy = float(jaxq.policy_start_value(slippery.model, q.argmax(1), GAMMA))
    assert v_star - v_greedy <= 0.02 * abs(v_star)
    assert abs(q[0].max() - v_star) <= 0.02 * abs(v_star)
    assert learner.successes > 0


def test_counters_and_auto_reset():
    spec = benchlib.load_env("FrozenLake-v1", {"is_slippery": True, "max_steps": 5})
    N, steps = 64, 40
    learner = PlainNumpyQLearner(spec, N, seed=1)
    terminal = np.unique(spec.next_state[spec.terminated])  # holes and the goal
    for _ in range(steps):
        learner.step()
        # every env is in a live state (a terminal landing restarted it) within its limit
        assert np.all((learner.state >= 0) & (learner.state < 16))
        assert not np.isin(learner.state, terminal).any()
        assert np.all((learner.time >= 0) & (learner.time < spec.max_steps))
    assert learner.steps == steps  # batched steps (N env steps each)
    # with a 5-step limit every env ends at least steps // 5 episodes
    assert learner.episodes >= N * (steps // spec.max_steps)
    assert 0 <= learner.successes <= learner.episodes
    assert learner.q_table().shape == (16, 4)
    assert learner.q_table() is not learner.q


def test_outcomes_follow_the_model():
    # success_rate 0.6: intended move 0.6, each perpendicular 0.2. From state 2 (top row)
    # action DOWN lands in 1, 6 or 3 (LEFT, DOWN, RIGHT), none terminal.
    spec = benchlib.load_env("FrozenLake-v1", {"is_slippery": True, "success_rate": 0.6})
    s, a, N = 2, 1, 200_000
    assert not spec.terminated[s, a].any()
    expected = np.zeros(16)
    np.add.at(expected, spec.next_state[s, a], spec.prob[s, a])
    learner = PlainNumpyQLearner(spec, N, lr=0.0, epsilon=0.0, seed=2)
    learner.q[:, a] = 1.0  # the unique greedy action everywhere
    learner.state[:] = s
    learner.step()
    freq = np.bincount(learner.state, minlength=16) / N
    sd = np.sqrt(expected * (1 - expected) / N)
    assert np.all(np.abs(freq - expected) <= 5 * sd + 1e-12), (freq, expected)


def test_greedy_ties_are_uniform(lake):
    # Deterministic lake, from state 9: LEFT -> 8, DOWN -> 13, RIGHT -> 10, UP -> 5 (a hole:
    # restart at 0). With epsilon = 0 the action is a uniform pick among Q's maximisers.
    N = 100_000
    for row, lands in [([0.0, 0.0, 0.0, 0.0], [8, 13, 10, 0]), ([1.0, 1.0, 0.0, 0.0], [8, 13])]:
        learner = PlainNumpyQLearner(lake, N, lr=0.0, epsilon=0.0, seed=3)
        learner.q[9] = row
        learner.state[:] = 9
        learner.step()
        counts = np.bincount(learner.state, minlength=16)[lands]
        assert counts.sum() == N  # only the maximisers were taken
        freq, p = counts / N, 1 / len(lands)
        assert np.all(np.abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / N)), freq


def test_measure_records(lake):
    logs = []
    records = numpy_plain.measure_plain_numpy(lake, [1, 4], target_s=0.01, repeats=2, seed=0,
                                              budget_s=60.0, log=logs.append)
    assert [r["num_envs"] for r in records] == [1, 4]
    for r in records:
        assert "error" not in r and "skipped" not in r, r
        assert r["impl"] == "numpy_plain"
        assert r["T"] >= 1 and r["repeats"] == 2 and len(r["times_s"]) == 2
        assert r["best_s"] <= r["median_s"]
        assert r["env_steps"] >= r["num_envs"] * r["T"] * r["repeats"]
    assert len(logs) == 2
    # the shape numpy_vectorized.measure_numpy gives, less its NumpyQLearner-only fields
    ref = numpy_vectorized.measure_numpy(lake, [1], 0.01, 1, 0, 60.0, lambda _: None)[0]
    assert set(ref) - {"dense", "block"} == set(records[0])
    skipped = numpy_plain.measure_plain_numpy(lake, [1, 4], 0.01, 1, 0, budget_s=0.0,
                                              log=logs.append)
    assert "skipped" in skipped[1] and "steps_per_s" not in skipped[1]
