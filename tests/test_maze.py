from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

import jaxq
from jaxq.envs.base import TabularState
from jaxq.envs.maze import generate_maze
from parity import assert_step_matches_model

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
_MOVES = {LEFT: (0, -1), DOWN: (1, 0), RIGHT: (0, 1), UP: (-1, 0)}


def goal_distances(free: np.ndarray) -> np.ndarray:
    """BFS moves from each cell to the bottom-right goal (-1: unreachable or wall).
    Moves are reversible (blocked moves stay put), so a BFS from the goal suffices."""
    nrow, ncol = free.shape
    dist = np.full(free.shape, -1)
    dist[-1, -1] = 0
    todo = deque([(nrow - 1, ncol - 1)])
    while todo:
        r, c = todo.popleft()
        for dr, dc in _MOVES.values():
            rr, cc = r + dr, c + dc
            if 0 <= rr < nrow and 0 <= cc < ncol and free[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                todo.append((rr, cc))
    return dist


def free_map(env, params) -> np.ndarray:
    return np.asarray(params.free).reshape(env.nrow, env.ncol)


def reference_dense(free, slip, step_reward):
    """Independent dense (P, R, P_term) of the maze, written from the spec with loops."""
    nrow, ncol = free.shape
    S, goal = nrow * ncol, nrow * ncol - 1
    P, R, PT = np.zeros((S, 4, S)), np.zeros((S, 4)), np.zeros((S, 4, S))
    for s in range(S):
        r, c = divmod(s, ncol)
        for a in range(4):
            if not free[r, c] or s == goal:
                P[s, a, s] = 1.0
                PT[s, a, s] = float(s == goal)
                continue
            for d, pr in (((a - 1) % 4, slip / 2), (a, 1 - slip), ((a + 1) % 4, slip / 2)):
                rr, cc = r + _MOVES[d][0], c + _MOVES[d][1]
                if not (0 <= rr < nrow and 0 <= cc < ncol and free[rr, cc]):
                    rr, cc = r, c
                ns = rr * ncol + cc
                P[s, a, ns] += pr
                PT[s, a, ns] += pr * (ns == goal)
                R[s, a] += pr * (1.0 if ns == goal else step_reward)
    return P, R, PT


def test_registered_and_default_shape():
    assert "Maze-v0" in jaxq.registered_ids()
    env, params = jaxq.make("Maze-v0")
    assert env.observation_space(params).n == 256 and env.action_space(params).n == 4
    assert params.max_steps_in_episode == 4 * (16 + 16)
    env, params = jaxq.make("Maze-v0", nrow=3, ncol=7)
    assert (env.nrow, env.ncol, env.num_states) == (3, 7, 21)


def test_same_seed_same_map_and_seeds_differ():
    a = free_map(*jaxq.make("Maze-v0", size=32, seed=7))
    b = free_map(*jaxq.make("Maze-v0", size=32, seed=7))
    c = free_map(*jaxq.make("Maze-v0", size=32, seed=8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).sum() > 50


def test_wall_density_is_respected():
    free = generate_maze(200, 200, 0.3, seed=1)
    # Walls are drawn with p = 0.3 except on the 399 path cells.
    assert abs((~free).sum() / (200 * 200 - 399) - 0.3) < 0.01
    assert generate_maze(50, 50, 0.0, seed=1).all()


@settings(max_examples=60, deadline=None)
@given(nrow=st.integers(2, 40), ncol=st.integers(2, 40), density=st.floats(0.0, 0.99),
       seed=st.integers(0, 2**32 - 1))
def test_goal_reachable_from_the_top_left(nrow, ncol, density, seed):
    env, params = jaxq.make("Maze-v0", nrow=nrow, ncol=ncol, wall_density=density, seed=seed)
    free = free_map(env, params)
    assert free.shape == (nrow, ncol) and free[0, 0] and free[-1, -1]
    d = goal_distances(free)[0, 0]
    assert d == nrow + ncol - 2  # the kept monotone path is a shortest path


@pytest.mark.parametrize("size, density, seed", [(8, 0.25, 0), (24, 0.35, 1), (48, 0.3, 2)])
def test_optimal_values_are_discounted_shortest_paths(size, density, seed):
    """Deterministic maze, reward 1 at the goal: V*(s) = gamma^(d(s) - 1) exactly."""
    gamma = 0.95
    env, params = jaxq.make("Maze-v0", size=size, wall_density=density, seed=seed)
    m = jaxq.tabular_model(env, params)
    assert m.next_state.shape == (size * size, 4, 1)  # K = 1 without slip
    v = np.asarray(jnp.max(jaxq.value_iteration(m, gamma), axis=1)).reshape(size, size)
    d = goal_distances(free_map(env, params))
    expected = np.where(d > 0, gamma ** (d - 1.0), 0.0)  # walls, goal, walled-off: 0
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=0)
    assert float(jaxq.start_value(m, jaxq.value_iteration(m, gamma))) == pytest.approx(
        gamma ** (d[0, 0] - 1), rel=1e-5)


def test_step_reward_values_closed_form():
    gamma, c = 0.9, -0.05
    env, params = jaxq.make("Maze-v0", size=12, wall_density=0.4, seed=5, step_reward=c)
    v = np.asarray(jnp.max(jaxq.value_iteration(jaxq.tabular_model(env, params), gamma), 1))
    free = free_map(env, params).reshape(-1)
    d = goal_distances(free_map(env, params)).reshape(-1)
    # n-step path: c (1 - g^(n-1)) / (1 - g) + g^(n-1); never reaching: c / (1 - g).
    reach = c * (1 - gamma ** (d - 1.0)) / (1 - gamma) + gamma ** (d - 1.0)
    expected = np.where(d > 0, reach, np.where(free & (d < 0), c / (1 - gamma), 0.0))
    assert (free & (d < 0)).any(), "this seed should have a walled-off free cell"
    np.testing.assert_allclose(v, expected, rtol=2e-5, atol=1e-6)


def exact_episode_stats(model, policy, horizon):
    """(P(reach the goal within horizon), expected moves) of deterministic ``policy``,
    by propagating the state distribution on the dense model (numpy, no jaxq code)."""
    P, _, PT = model.dense()
    rows = np.arange(P.shape[0])
    move, finish = P[rows, policy] - PT[rows, policy], PT[rows, policy]
    d, success, moves = np.asarray(model.initial, np.float64), 0.0, 0.0
    for _ in range(horizon):
        moves += d.sum()
        success += (d @ finish).sum()
        d = d @ move
    return success, moves


def test_robot_plans_for_actuator_noise():
    """README's robot example: slip = actuator noise, step_reward = -0.01 per move. The
    plan made with the noise model beats the noise-blind shortest-path plan, exactly."""
    kw = dict(size=16, seed=0, step_reward=-0.01)
    env, params = jaxq.make("Maze-v0", slip=0.3, **kw)
    m = jaxq.tabular_model(env, params)
    q = jaxq.value_iteration(m, 0.99)
    plan = np.asarray(jnp.argmax(q, axis=1))
    blind_env, blind_params = jaxq.make("Maze-v0", **kw)
    blind = np.asarray(jnp.argmax(
        jaxq.value_iteration(jaxq.tabular_model(blind_env, blind_params), 0.99), axis=1))
    T = params.max_steps_in_episode
    assert exact_episode_stats(jaxq.tabular_model(blind_env, blind_params), blind, T) == (
        pytest.approx(1.0), pytest.approx(30.0))  # no noise: the 30-move shortest path
    success, moves = exact_episode_stats(m, plan, T)
    blind_success, blind_moves = exact_episode_stats(m, blind, T)
    assert success > 0.999999 and blind_success > 0.999999
    assert moves == pytest.approx(43.28, abs=0.01) and blind_moves == pytest.approx(48.27, abs=0.01)
    assert float(jaxq.start_value(m, q)) == pytest.approx(0.3103, abs=1e-4)
    assert float(jaxq.policy_start_value(m, blind, 0.99)) == pytest.approx(0.2477, abs=1e-4)


def test_tiny_far_values_are_resolved():
    """V*(start) = 0.9^253 ~ 3e-12: convergence is relative, so the far end is solved and
    its greedy policy walks to the goal (an absolute tol would stop with V = 0 there)."""
    env, params = jaxq.make("Maze-v0", size=128, seed=3)
    m = jaxq.tabular_model(env, params)
    q = jaxq.value_iteration(m, 0.9)
    d = goal_distances(free_map(env, params))[0, 0]
    assert float(jaxq.start_value(m, q)) == pytest.approx(0.9 ** (d - 1), rel=1e-5)
    ns = np.asarray(m.next_state[..., 0])
    greedy = np.asarray(jnp.argmax(q, axis=1))
    s = 0
    for _ in range(d):
        s = ns[s, greedy[s]]
    assert s == env.num_states - 1


def test_value_iteration_at_256x256():
    env, params = jaxq.make("Maze-v0", size=256, seed=0)
    m = jaxq.tabular_model(env, params)
    d = goal_distances(free_map(env, params))[0, 0]
    v = float(jaxq.start_value(m, jaxq.value_iteration(m, 0.99)))
    assert v == pytest.approx(0.99 ** (d - 1), rel=1e-4)


def test_slippery_model_matches_reference():
    env, params = jaxq.make("Maze-v0", size=7, wall_density=0.35, slip=0.3, seed=4,
                            step_reward=-0.05)
    m = jaxq.tabular_model(env, params)
    assert m.next_state.shape == (49, 4, 3)
    p, r, pt = m.dense()
    gp, gr, gt = reference_dense(free_map(env, params), 0.3, -0.05)
    np.testing.assert_allclose(p, gp, atol=1e-6)
    np.testing.assert_allclose(r, gr, atol=1e-6)
    np.testing.assert_allclose(pt, gt, atol=1e-6)


def test_slippery_step_samples_agree_with_model():
    env, params = jaxq.make("Maze-v0", size=6, wall_density=0.3, slip=0.4, seed=2,
                            step_reward=-0.1)
    free = np.asarray(params.free)
    m = jaxq.tabular_model(env, params)
    wall = int(np.flatnonzero(~free)[0])
    pairs = [(0, LEFT), (0, RIGHT), (34, DOWN), (29, RIGHT), (14, UP), (wall, DOWN), (35, LEFT)]
    assert_step_matches_model(env, params, m, pairs, n=10_000)


def test_uniform_start_covers_exactly_the_free_cells():
    env, params = jaxq.make("Maze-v0", size=8, wall_density=0.3, seed=1, start="uniform")
    free = np.asarray(params.free)
    allowed = free.copy()
    allowed[-1] = False  # never start on the goal
    mu = np.asarray(env.initial_distribution(params))
    np.testing.assert_allclose(mu, allowed / allowed.sum(), atol=1e-7)
    keys = jax.random.split(jax.random.key(0), 20_000)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    counts = np.bincount(np.asarray(obs), minlength=64)
    assert set(np.flatnonzero(counts)) == set(np.flatnonzero(allowed))
    assert stats.chisquare(counts[allowed]).pvalue > 1e-3  # uniform over them
    # The top-left default starts at 0 only.
    env, params = jaxq.make("Maze-v0", size=8, seed=1)
    assert np.asarray(env.initial_distribution(params)).tolist() == [1.0] + [0.0] * 63


def test_greedy_walk_reaches_goal_with_reward_and_auto_resets():
    env, params = jaxq.make("Maze-v0", size=10, seed=6)
    m = jaxq.tabular_model(env, params)
    greedy = jnp.argmax(jaxq.value_iteration(m, 0.95), axis=1)
    d = int(goal_distances(free_map(env, params))[0, 0])
    _, state = env.reset(jax.random.key(0), params)
    rewards, terms = [], []
    for t in range(d):
        obs, state, r, term, trunc, info = env.step(jax.random.key(t), state,
                                                    greedy[state.s], params)
        rewards.append(float(r))
        terms.append(bool(term))
    assert rewards == [0.0] * (d - 1) + [1.0] and terms == [False] * (d - 1) + [True]
    assert bool(info["success"]) and int(info["final_observation"]) == 99 and int(obs) == 0


def test_truncation_is_not_termination():
    env, params = jaxq.make("Maze-v0", size=6, seed=0, max_steps=3)
    _, state = env.reset(jax.random.key(0), params)
    flags = []
    for t in range(4):  # LEFT at (0, 0): off the grid, stays put
        obs, state, r, term, trunc, info = env.step(jax.random.key(t), state, LEFT, params)
        flags.append((bool(term), bool(trunc), int(info["final_observation"])))
    assert flags == [(False, False, 0), (False, False, 0), (False, True, 0), (False, False, 0)]


def test_maps_are_params_not_compiled_constants():
    traces = []
    env = jaxq.make("Maze-v0", size=16, start="uniform")[0]

    @jax.jit
    def first_moves(params):
        traces.append(1)
        state = TabularState(time=jnp.int32(0), s=jnp.int32(0))
        step = lambda a: env.step(jax.random.key(0), state, a, params)[5]["final_observation"]
        return jax.vmap(step)(jnp.array([RIGHT, DOWN]))

    for seed in range(6):
        other_env, params = jaxq.make("Maze-v0", size=16, seed=seed, start="uniform")
        assert other_env == env and hash(other_env) == hash(env)
        free = np.asarray(params.free)
        expected = [1 if free[1] else 0, 16 if free[16] else 0]
        assert np.asarray(first_moves(params)).tolist() == expected
    assert len(traces) == 1
    # The exact model is compiled once per maze shape too.
    from jaxq.model import _tabulate
    before = _tabulate._cache_size()
    for seed in range(3):
        jaxq.tabular_model(*jaxq.make("Maze-v0", size=16, seed=seed, start="uniform"))
    assert _tabulate._cache_size() <= before + 1


def test_default_params_are_each_mazes_own():
    """Mazes of one shape share compiled code, so params=None must not reuse another's map."""
    state = TabularState(time=jnp.int32(0), s=jnp.int32(0))
    for seed in range(8):
        env, params = jaxq.make("Maze-v0", size=4, wall_density=0.5, seed=seed)
        free = np.asarray(params.free)
        obs = env.step(jax.random.key(0), state, DOWN)[5]["final_observation"]
        assert int(obs) == (4 if free[4] else 0)


def test_largest_maze_params_build():
    env, params = jaxq.make("Maze-v0", size=4096, seed=0, start="uniform")
    assert env.num_states == 4096 ** 2 and params.free.shape == (4096 ** 2,)
    assert params.max_steps_in_episode == 4 * 8192
    s = int(env.initial_state(jnp.uint32(2**32 - 1), params))
    assert bool(params.free[s]) and s != env.num_states - 1


def test_render():
    env, params = jaxq.make("Maze-v0", size=5, wall_density=0.4, seed=3)
    text = env.render(params, s=6)
    lines = text.split("\n")
    free = free_map(env, params)
    assert len(lines) == 5 and all(len(line) == 5 for line in lines)
    assert lines[0][0] == "S" and lines[-1][-1] == "G" and lines[1][1] == "A"
    assert text.count("#") == (~free).sum()
    arrows = env.render_policy(np.full(25, RIGHT), params)
    assert arrows.count("#") == (~free).sum() and arrows.count(">") == free.sum() - 1
    big_env, big_params = jaxq.make("Maze-v0", size=1024)
    with pytest.raises(ValueError, match="too large"):
        big_env.render(big_params)


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=1), "size"),
    (dict(size=4097), "size"),
    (dict(nrow=5000, ncol=5000), "nrow \\* ncol"),
    (dict(nrow=1), "nrow"),
    (dict(wall_density=1.0), "wall_density"),
    (dict(wall_density=-0.1), "wall_density"),
    (dict(slip=1.5), "slip"),
    (dict(slip=-0.2), "slip"),
    (dict(start="random"), "start"),
    (dict(seed=-1), "seed"),
    (dict(max_steps=0), "max_steps"),
    (dict(step_reward=float("nan")), "step_reward"),
    (dict(wall_densty=0.1), "unknown keyword"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxq.make("Maze-v0", **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=2.5), "size"), (dict(wall_density="dense"), "wall_density"),
    (dict(seed=None), "seed"),
])
def test_bad_types_are_a_clear_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        jaxq.make("Maze-v0", **kwargs)
