"""Gymnasium both ways: jaxq.to_gymnasium / to_gymnasium_vector / from_gymnasium."""

import importlib
import sys
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import jaxq
from jaxq.envs import registry
from jaxq.envs.base import INT32_MAX
from jaxq.config import TrainConfig
from jaxq.model import greedy_policy

# Small sizes for ids whose defaults are large; every other id runs with its defaults.
SMALL_KWARGS = {"Maze-v0": {"size": 4}}
GRID_IDS = {"FrozenLake-v1", "FrozenLake8x8-v1", "CliffWalking-v0", "CliffWalking-v1",
            "CliffWalkingSlippery-v1", "Taxi-v3", "Taxi-v4", "Maze-v0"}
WRAPPED_WARNING = "is different from the unwrapped version"
# Gymnasium's own ids by version (jaxq registers all of them): Taxi-v4 from 1.3,
# CliffWalking-v1 and slippery CliffWalking from 1.2.
GYM_TAXI = "Taxi-v4" if "Taxi-v4" in gym.registry else "Taxi-v3"
GYM_CLIFF = "CliffWalking-v1" if "CliffWalking-v1" in gym.registry else "CliffWalking-v0"
needs_slippery_cliff = pytest.mark.skipif("CliffWalkingSlippery-v1" not in gym.registry,
                                          reason="slippery CliffWalking needs gymnasium >= 1.2")


# ======================================================================================
# jaxq -> Gymnasium
# ======================================================================================


@pytest.mark.parametrize("env_id", jaxq.registered_ids())
def test_check_env_passes_for_every_registered_id(env_id):
    kwargs = SMALL_KWARGS.get(env_id, {})
    env, params = jaxq.make(env_id, **kwargs)
    gym_env = jaxq.to_gymnasium(env_id, **kwargs)
    assert gym_env.observation_space == gym.spaces.Discrete(env.num_states)
    assert gym_env.action_space == gym.spaces.Discrete(env.num_actions)
    limit = int(params.max_steps_in_episode)
    assert gym_env.spec.max_episode_steps == (None if limit == INT32_MAX else limit)
    assert isinstance(gym_env, gym.wrappers.TimeLimit) == (limit != INT32_MAX)
    assert ("ansi" in gym_env.metadata["render_modes"]) == (env_id in GRID_IDS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym_env)  # with the spec: determinism, spec.make() and every render mode
        check_env(gym_env.unwrapped)
    # the only warning: check_env's note that the first env has wrappers (as gym.make's do)
    others = [str(w.message) for w in caught if WRAPPED_WARNING not in str(w.message)]
    assert others == []
    assert sum(WRAPPED_WARNING in str(w.message) for w in caught) == 1


def _rollout(gym_env, seed, actions):
    out = [gym_env.reset(seed=seed)[0]]
    for a in actions:
        obs, r, term, trunc, info = gym_env.step(int(a))
        out.append((obs, r, term, trunc, info["prob"]))
        if term or trunc:
            out.append(gym_env.reset()[0])
    return out


def test_seeded_episodes_repeat_and_time_limit_truncates():
    gym_env = jaxq.to_gymnasium("FrozenLake-v1", max_steps=7)
    actions = np.random.default_rng(0).integers(0, 4, 60)
    first = _rollout(gym_env, 3, actions)
    assert _rollout(gym_env, 3, actions) == first
    assert _rollout(gym_env, 4, actions) != first
    # the jaxq limit is Gymnasium's TimeLimit: truncated after 7 steps, never terminated
    gym_env = jaxq.to_gymnasium("FrozenLake-v1", success_rate=1.0, max_steps=7)  # no slips
    gym_env.reset(seed=0)
    flags = [gym_env.step(3)[2:4] for _ in range(7)]  # UP from the start: stays put
    assert flags == [(False, False)] * 6 + [(False, True)]


@pytest.mark.parametrize("env_id, kwargs", [
    ("FrozenLake8x8-v1", {}), ("FrozenLake-v1", {"desc": ["SFH", "FFG"]}),
    (GYM_CLIFF, {}), (GYM_TAXI, {}),
])
def test_ansi_render_is_gymnasiums_own_text(env_id, kwargs):
    ours = jaxq.to_gymnasium(env_id, render_mode="ansi", **kwargs)
    theirs = gym.make(env_id, render_mode="ansi", **kwargs)
    n_actions = ours.action_space.n
    for s in range(0, ours.observation_space.n, 7):
        for last in (None, s % n_actions):
            for e in (ours.unwrapped, theirs.unwrapped):
                e.s, e.lastaction = s, last
            assert ours.unwrapped.render() == theirs.unwrapped.render()


def test_maze_renders_with_the_agent():
    env, params = jaxq.make("Maze-v0", size=4)
    gym_env = jaxq.to_gymnasium("Maze-v0", size=4, render_mode="ansi")
    gym_env.reset(seed=0)
    assert gym_env.render() == "\n" + env.render(params, 0) + "\n"  # A at the start
    gym_env.step(2)
    assert gym_env.render().startswith("  (Right)\n")


def test_action_masks_are_reported_like_taxis():
    gym_env = jaxq.to_gymnasium("MaskedProbe-v0")
    _, info = gym_env.reset(seed=0)
    assert info["action_mask"].tolist() == [1, 1, 0]


# ---- vector ------------------------------------------------------------------------


def test_vector_env_matches_gymnasiums_next_step_autoreset():
    """FrozenLake without slips (jaxq: success_rate 1, the compile the seeded test
    shares; Gymnasium: is_slippery=False, in every version): jaxq's batch and
    Gymnasium's own SyncVectorEnv must agree exactly, through goals, holes, time limits
    and the reset step after each."""
    n, steps = 8, 40
    ours = jaxq.to_gymnasium_vector("FrozenLake-v1", n, success_rate=1.0, max_steps=6)
    theirs = gym.make_vec("FrozenLake-v1", num_envs=n, vectorization_mode="sync",
                          is_slippery=False, max_episode_steps=6)
    assert ours.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert theirs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert ours.observation_space == theirs.observation_space
    assert ours.action_space == theirs.action_space
    np.testing.assert_array_equal(ours.reset(seed=0)[0], theirs.reset(seed=0)[0])
    # mostly DOWN/RIGHT so that goals and holes are reached, not only time limits
    actions = np.random.default_rng(1).choice([0, 1, 1, 2, 2, 3], size=(steps, n))
    ended = {"term": 0, "trunc": 0}
    for a in actions:
        got, want = ours.step(a), theirs.step(a)
        for g, w in zip(got[:4], want[:4]):
            assert g.dtype == w.dtype or g.dtype == np.float64
            np.testing.assert_array_equal(g, w)
        ended["term"] += int(got[2].sum())
        ended["trunc"] += int(got[3].sum())
    assert ended["term"] > 0 and ended["trunc"] > 0
    # the spec's vector entry point gives the same env through gym.make_vec
    spec = jaxq.to_gymnasium("FrozenLake-v1", success_rate=1.0, max_steps=6).spec
    made = gym.make_vec(spec, num_envs=n, vectorization_mode="vector_entry_point")
    assert type(made) is type(ours)
    for e in (ours, made):
        e.reset(seed=5)
    for a in actions[:10]:
        for g, w in zip(ours.step(a)[:4], made.step(a)[:4]):
            np.testing.assert_array_equal(g, w)


def test_vector_env_is_seeded_and_resets_on_the_next_step():
    vec = jaxq.to_gymnasium_vector("FrozenLake-v1", 8, max_steps=5)

    def run(seed):
        obs, _ = vec.reset(seed=seed)
        rng = np.random.default_rng(0)
        out, prev_done = [obs], np.zeros(8, bool)
        for _ in range(20):
            obs, r, term, trunc, _ = vec.step(rng.integers(0, 4, 8))
            # NEXT_STEP: a copy that ended last step returns the start, reward 0, no flags
            assert (obs[prev_done] == 0).all() and (r[prev_done] == 0).all()
            assert not (term[prev_done] | trunc[prev_done]).any()
            prev_done = term | trunc
            out.append(np.stack([obs, r, term, trunc]))
        return np.stack(out[1:])

    a = run(0)
    np.testing.assert_array_equal(run(0), a)
    assert not np.array_equal(run(1), a)
    assert a[:, 3].any()  # time limits were hit


# ======================================================================================
# Gymnasium -> jaxq
# ======================================================================================


def _dense_from_P(P, S, A):
    """Gymnasium's P as dense (P[s,a,s'], R[s,a], P_term[s,a,s']), duplicates summed."""
    p, r, pt = np.zeros((S, A, S)), np.zeros((S, A)), np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            for prob, ns, rew, term in P[s][a]:
                p[s, a, ns] += prob
                r[s, a] += prob * rew
                pt[s, a, ns] += prob * term
    return p, r, pt


LAKE_5X5 = ["SFFHF", "FHFFF", "FFFHF", "HFFFF", "FFHFG"]


@pytest.mark.parametrize("make_gym", [
    lambda: gym.make("FrozenLake-v1", desc=LAKE_5X5, is_slippery=True),
    pytest.param(lambda: gym.make(GYM_CLIFF, is_slippery=True), marks=needs_slippery_cliff),
    lambda: gym.make(GYM_TAXI),
], ids=["FrozenLake-5x5-slippery", "CliffWalking-slippery", "Taxi"])
def test_imported_model_is_P(make_gym):
    gym_env = make_gym()
    u = gym_env.unwrapped
    S, A = gym_env.observation_space.n, gym_env.action_space.n
    env, params = jaxq.from_gymnasium(gym_env)
    model = jaxq.tabular_model(env, params)
    got = model.dense()
    for g, w in zip(got, _dense_from_P(u.P, S, A)):
        np.testing.assert_allclose(g, w, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.initial), u.initial_state_distrib, atol=1e-7)
    want_limit = gym_env.spec.max_episode_steps
    assert int(params.max_steps_in_episode) == (INT32_MAX if want_limit is None else want_limit)
    # identical outcomes are merged (FrozenLake's clamped slips), distinct rewards are not
    # (slippery CliffWalking reaches 36 from 36 by a -1 clamp and by a -100 fall)
    assert env.num_outcomes == max(len({tuple(t[1:]) for t in u.P[s][a]})
                                   for s in range(S) for a in range(A))
    if "CliffWalking" in gym_env.spec.id:
        assert got[1][36, 0] == pytest.approx(-34.0)


class Corridor(gym.Env):
    """A user's own toy-text-style env: 3 corridor cells and an exit (state 3).

    WALK (0) moves right with 0.8 and stays with 0.2, written as two duplicate 0.1
    entries (and, in cell 0, one of them a -1 bump: same next state, other reward).
    Entering the exit gives +1 and terminates. JUMP (1) exits with 0.3 (reward 1) and
    falls back to cell 0 with 0.7. Episodes start in cells 0/1/2 with 0.5/0.3/0.2.
    """

    def __init__(self):
        self.observation_space = gym.spaces.Discrete(4)
        self.action_space = gym.spaces.Discrete(2)
        self.P = {s: {} for s in range(4)}
        for s in range(3):
            bump = -1.0 if s == 0 else 0.0
            self.P[s][0] = [(0.8, s + 1, 1.0 if s == 2 else 0.0, s == 2),
                            (0.1, s, 0.0, False), (0.1, s, bump, False)]
            self.P[s][1] = [(0.3, 3, 1.0, True), (0.7, 0, 0.0, False)]
        self.P[3] = {a: [(1.0, 3, 0.0, True)] for a in range(2)}
        self.initial_state_distrib = np.array([0.5, 0.3, 0.2, 0.0])
        self.s = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = int(self.np_random.choice(4, p=self.initial_state_distrib))
        return self.s, {}

    def step(self, action):
        outcomes = self.P[self.s][int(action)]
        k = self.np_random.choice(len(outcomes), p=[o[0] for o in outcomes])
        _, self.s, reward, terminated = outcomes[k]
        return self.s, reward, terminated, False, {}


@pytest.fixture(scope="module")
def corridor_id():
    """``Corridor`` registered for ``jaxq.train`` / ``jaxq train --env``; unregistered
    after, so other tests see the registry as it was."""
    env_id = "GymCorridor-test-v0"
    jaxq.register(env_id, lambda max_steps=40: jaxq.from_gymnasium(Corridor(), max_steps))
    yield env_id
    del registry._REGISTRY[env_id]


def test_user_class_model_and_weighted_start(corridor_id):
    env, params = jaxq.make(corridor_id)
    assert int(params.max_steps_in_episode) == 40
    model = jaxq.tabular_model(env, params)
    for g, w in zip(model.dense(), _dense_from_P(Corridor().P, 4, 2)):
        np.testing.assert_allclose(g, w, atol=1e-6)
    assert env.num_outcomes == 3  # the two 0.1 stays of cells 1, 2 merged; cell 0's bump kept
    np.testing.assert_allclose(np.asarray(model.initial), [0.5, 0.3, 0.2, 0.0], atol=1e-7)
    # the non-uniform start is what reset draws: over an even grid of the 24-bit uniform
    # that a start consumes, each state gets its probability's share of the grid
    bits = jnp.arange(4096, dtype=jnp.uint32) << 20
    starts = jax.jit(jax.vmap(env.initial_state, in_axes=(0, None)))(bits, params)
    freq = np.bincount(np.asarray(starts), minlength=4) / 4096
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.2, 0.0], atol=1 / 4096)


def test_training_on_an_imported_env_reaches_the_optimum(corridor_id):
    gamma = 0.9
    env, params = jaxq.make(corridor_id)
    model = jaxq.tabular_model(env, params)
    q_star = jaxq.value_iteration(model, gamma, tol=1e-7)
    # the optimum is not trivial: JUMP in cell 0, WALK in cells 1 and 2
    assert np.argmax(np.asarray(q_star)[:3], axis=1).tolist() == [1, 0, 0]
    cfg = TrainConfig(env_id=corridor_id, gamma=gamma, num_envs=256, total_steps=256 * 2000,
                      num_chunks=2, eval_every=0, lr=0.5, lr_end=0.01,
                      epsilon=1.0, epsilon_end=1.0)  # uniform behaviour: off-policy Q*
    result = jaxq.train(cfg, q_star, progress=False)
    q = np.asarray(result.q)
    np.testing.assert_allclose(q[:3], np.asarray(q_star)[:3], atol=0.02)
    assert result.metrics["q_error"][-1] < 0.02
    v_greedy = jaxq.policy_start_value(model, greedy_policy(q), gamma)
    assert float(v_greedy) == pytest.approx(float(jaxq.start_value(model, q_star)), abs=1e-5)


def test_time_limit_comes_from_the_wrappers():
    lake = gym.make("FrozenLake-v1", desc=LAKE_5X5)
    assert int(jaxq.from_gymnasium(lake)[1].max_steps_in_episode) == 100
    assert int(jaxq.from_gymnasium(lake, max_steps=9)[1].max_steps_in_episode) == 9
    # a spec-less user env under a TimeLimit: the wrapper's limit
    wrapped = gym.wrappers.TimeLimit(Corridor(), max_episode_steps=12)
    assert int(jaxq.from_gymnasium(wrapped)[1].max_steps_in_episode) == 12
    assert int(jaxq.from_gymnasium(Corridor())[1].max_steps_in_episode) == INT32_MAX


# ======================================================================================
# Bad input
# ======================================================================================


class NoModel(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)


class Continuous(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
    action_space = gym.spaces.Discrete(2)
    P = {}


def _corridor_with(edit):
    env = Corridor()
    edit(env)
    return env


@pytest.mark.parametrize("gym_env, exc, match", [
    (NoModel(), TypeError, r"NoModel has no tabular model: .*unwrapped\.P"),
    (Continuous(), TypeError, r"needs Discrete observation and action .*observation_space is Box\("),
    (_corridor_with(lambda e: e.P[1].__setitem__(0, [(0.8, 2, 0.0, False), (0.1, 1, 0.0, False)])),
     ValueError, r"P\[1\]\[0\]: probabilities sum to 0\.9.*not 1"),
    (_corridor_with(lambda e: e.P[2].__setitem__(1, [(1.0, 4, 0.0, False)])),
     ValueError, r"P\[2\]\[1\]\[0\]: next_state 4 is out of range \[0, 4\)"),
    (_corridor_with(lambda e: e.P[2].pop(1)), ValueError, r"P\[2\]\[1\] is missing"),
    (_corridor_with(lambda e: setattr(e, "initial_state_distrib", None)), ValueError,
     r"no initial_state_distrib.*pass initial_distribution="),
    (_corridor_with(lambda e: setattr(e, "initial_state_distrib", [0.5, 0.6, 0, 0])),
     ValueError, r"initial_state_distrib must be non-negative probabilities summing to 1"),
    ("FrozenLake-v1", TypeError, r"gym_env must be a gymnasium.Env, got str"),
], ids=["no-P", "continuous", "prob-sum", "next-state-range", "missing-action",
        "no-start", "bad-start", "not-gymnasium"])
def test_from_gymnasium_bad_input(gym_env, exc, match):
    with pytest.raises(exc, match=match):
        jaxq.from_gymnasium(gym_env)


def test_start_can_be_given_when_the_env_has_none():
    env = _corridor_with(lambda e: setattr(e, "initial_state_distrib", None))
    _, params = jaxq.from_gymnasium(env, initial_distribution=2)
    assert np.asarray(params.starts).tolist() == [2]
    with pytest.raises(ValueError, match=r"initial_distribution state 7 is out of range"):
        jaxq.from_gymnasium(env, initial_distribution=7)


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match=r"'FrozenLake-v1' is already registered"):
        jaxq.register("FrozenLake-v1", lambda: jaxq.make("FrozenLake-v1"))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: jaxq.to_gymnasium("TwoStateProbe-v0", render_mode="ansi"), ValueError,
     r"render_mode for TwoStateProbe-v0 must be None"),
    (lambda: jaxq.to_gymnasium("FrozenLake-v1", render_mode="human"), ValueError,
     r"render_mode for FrozenLake-v1 must be 'ansi' or None, got 'human'"),
    (lambda: jaxq.to_gymnasium(jaxq.make("TwoStateProbe-v0"), max_steps=3), TypeError,
     r"keyword arguments \['max_steps'\] are for an environment id"),
    (lambda: jaxq.to_gymnasium(42), TypeError, r"env_or_id must be a jaxq environment id"),
    (lambda: jaxq.to_gymnasium("FrozenLake-v9"), ValueError, r"unknown env_id 'FrozenLake-v9'"),
    (lambda: jaxq.to_gymnasium_vector("TwoStateProbe-v0", 0), ValueError,
     r"num_envs must be a positive int, got 0"),
], ids=["ansi-not-grid", "human", "kwargs-with-pair", "not-an-env", "unknown-id", "num-envs"])
def test_to_gymnasium_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bad_actions_are_refused():
    gym_env = jaxq.to_gymnasium("TwoStateProbe-v0")
    gym_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 2\), got 5"):
        gym_env.unwrapped.step(5)
    vec = jaxq.to_gymnasium_vector("FrozenLake-v1", 8)
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        vec.step(np.zeros(8, int))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be 8 ints in \[0, 4\)"):
        vec.step(np.array([0, 4] * 4))
    with pytest.raises(ValueError, match=r"actions must be 8 ints in \[0, 4\)"):
        vec.step(np.zeros(3, int))
    with pytest.raises(TypeError, match=r"seed must be an int or None"):
        vec.reset(seed=[1, 2])


def test_without_gymnasium_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import gymnasium -> ImportError
    monkeypatch.delitem(sys.modules, "jaxq.gymnasium_interop", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'jaxq\[gymnasium\]'"):
        importlib.import_module("jaxq.gymnasium_interop")
