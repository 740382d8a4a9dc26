"""Gymnasium both ways: jaxq environments as Gymnasium envs, Gymnasium toy-text models as jaxq envs.

* ``to_gymnasium(env_or_id, **env_kwargs)`` wraps any jaxq tabular environment as a
  ``gymnasium.Env`` built by ``gymnasium.make`` from an ``EnvSpec`` (so it has a spec, the
  usual ``PassiveEnvChecker``/``OrderEnforcing`` wrappers, and the time limit as
  Gymnasium's ``TimeLimit``, exactly as ``gym.make("FrozenLake-v1")`` would). The dynamics
  are jaxq's own jitted ``step_from_bits``; the randomness comes from the env's
  ``np_random``, so ``reset(seed=...)`` makes episodes reproducible, as in Gymnasium.
* ``to_gymnasium_vector(env_or_id, num_envs, **env_kwargs)`` is a ``gymnasium.vector.VectorEnv``
  stepping all copies in one jitted call. A separate function rather than a ``vector=True``
  flag: the two return different types (``Env`` vs ``VectorEnv``, as Gymnasium's own
  ``make`` vs ``make_vec``), which a flag would hide from type checkers and readers.
  Autoreset is Gymnasium 1.x's default ``NEXT_STEP`` mode (declared in
  ``metadata["autoreset_mode"]``): the step after an episode ends ignores its action and
  returns the reset observation with reward 0 and both flags False, which is what
  ``gym.make_vec`` envs do and what Gymnasium's vector wrappers expect by default.
* ``from_gymnasium(gym_env)`` reads a Gymnasium env's tabular model ``P[s][a] = [(prob,
  next_state, reward, terminated), ...]`` (the toy-text convention) into jaxq's explicit
  MDP (``jaxq.envs.textbook.make_mdp``), so ``jaxq.tabular_model``, ``value_iteration`` and
  training all see exactly that model. Identical outcomes are merged (probabilities
  summed); outcomes with one next state but different rewards or ``terminated`` stay
  separate, so expected rewards and termination probabilities are exact (slippery
  CliffWalking reaches state 36 both by a -1 wall clamp and a -100 fall).

  The start distribution is ``gym_env.unwrapped.initial_state_distrib`` (every toy-text env
  has one) or the caller's ``initial_distribution``. It is never estimated by sampling
  ``reset()``: an estimate would make the imported model inexact in a way no test could see,
  so an env without either is an error that says what to pass. The time limit is
  ``max_steps``, else the ``TimeLimit`` wrapper's (``gym.make`` adds one from the
  registration, ``spec.max_episode_steps``), else none.

Gymnasium is an optional dependency (``pip install 'jaxq[gymnasium]'``): ``import jaxq``
never imports it, only the first use of these functions does (``jaxq.__init__`` loads this
module lazily).
"""

from __future__ import annotations

import dataclasses
import math
import re
from functools import partial
from typing import Any, Sequence

try:
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode
    from gymnasium.vector.utils import batch_space
except ImportError as e:  # pragma: no cover - exercised by a test with gymnasium hidden
    raise ImportError(
        "jaxq.to_gymnasium / to_gymnasium_vector / from_gymnasium need Gymnasium >= 1.1: "
        "pip install 'jaxq[gymnasium]' (or pip install 'gymnasium>=1.1,<1.4')"
    ) from e

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import INT32_MAX, TabularEnvironment, TabularParams, TabularState, bits_to_unit
from jaxq.envs.base import check_max_steps
from jaxq.envs.cliff_walking import CliffWalking
from jaxq.envs.frozen_lake import FrozenLake, GOAL, HOLE, START
from jaxq.envs.maze import Maze
from jaxq.envs.registry import make
from jaxq.envs.taxi import MAP as TAXI_MAP, DEPOTS as TAXI_DEPOTS, Taxi, decode as taxi_decode
from jaxq.envs.textbook import ExplicitMDP, MDPParams, make_mdp
from jaxq.vecenv import VecEnv

__all__ = ["to_gymnasium", "to_gymnasium_vector", "from_gymnasium", "JaxqEnv", "JaxqVectorEnv"]

PROB_TOL = 1e-6  # how far a row of P may sum from 1 (float rounding in a user's model)


# ======================================================================================
# jaxq -> Gymnasium
# ======================================================================================


def _resolve(env_or_id: Any, env_kwargs: dict[str, Any], fn: str):
    """``(env, params, gymnasium id)`` from a jaxq id or an ``(env, params)`` pair."""
    if isinstance(env_or_id, str):
        env, params = make(env_or_id, **env_kwargs)
        name = env_or_id
    elif isinstance(env_or_id, (tuple, list)) and len(env_or_id) == 2:
        if env_kwargs:
            raise TypeError(
                f"{fn}: keyword arguments {sorted(env_kwargs)} are for an environment id; an "
                "(env, params) pair is already built (pass them to jaxq.make instead)")
        env, params = env_or_id
        name = getattr(env, "name", type(env).__name__)
    else:
        raise TypeError(
            f"{fn}: env_or_id must be a jaxq environment id (jaxq.registered_ids()) or an "
            f"(env, params) pair from jaxq.make, got {type(env_or_id).__name__}")
    if not isinstance(env, TabularEnvironment):
        raise TypeError(
            f"{fn} needs a jaxq tabular environment (an id in jaxq.registered_ids() or an "
            f"(env, params) pair of one), got {type(env).__name__} for {name!r}; gymnax's "
            "own environments are already JAX and have Gymnasium ports of their own")
    if params is None:
        params = env.default_params
    # Gymnasium ids are [namespace/]name[-vN] with name in [\w:.-]
    gym_id = "jaxq/" + (re.sub(r"[^\w:.-]", "_", str(name)) or "Env")
    return env, params, gym_id


def _time_limit(params: TabularParams) -> int | None:
    steps = int(getattr(params, "max_steps_in_episode", INT32_MAX))
    return None if steps >= INT32_MAX else steps


# ---- ansi rendering of the grid worlds, in Gymnasium's own text formats --------------

_FROZEN_LAKE_ACTIONS = ("Left", "Down", "Right", "Up")
_TAXI_ACTIONS = ("South", "North", "East", "West", "Pickup", "Dropoff")


def _render_frozen_lake(env: FrozenLake, params, s: int, last_action: int | None) -> str:
    """Gymnasium's FrozenLake ``_render_text``: the map, the agent highlighted."""
    tiles = np.asarray(params.tiles).reshape(env.nrow, env.ncol)
    chars = {START: "S", HOLE: "H", GOAL: "G"}
    desc = [[chars.get(int(t), "F") for t in row] for row in tiles]
    row, col = divmod(int(s), env.ncol)
    desc[row][col] = gym.utils.colorize(desc[row][col], "red", highlight=True)
    head = "\n" if last_action is None else f"  ({_FROZEN_LAKE_ACTIONS[last_action]})\n"
    return head + "\n".join("".join(line) for line in desc) + "\n"


def _render_cliff_walking(env: CliffWalking, params, s: int, last_action) -> str:
    """Gymnasium's CliffWalking ``_render_text``: x agent, C cliff, T goal, o free."""
    out = []
    for i in range(env.num_states):
        r, c = divmod(i, 12)
        cell = " x " if i == s else " T " if (r, c) == (3, 11) else (
            " C " if r == 3 and 0 < c < 11 else " o ")
        if c == 0:
            cell = cell.lstrip()
        if c == 11:
            cell = cell.rstrip() + "\n"
        out.append(cell)
    return "".join(out) + "\n"


def _render_taxi(env: Taxi, params, s: int, last_action: int | None) -> str:
    """Gymnasium's Taxi ``_render_text``: taxi yellow (green when carrying), passenger
    blue, destination magenta."""
    out = [list(line) for line in TAXI_MAP]
    row, col, pass_idx, dest_idx = (int(x) for x in taxi_decode(int(s)))
    colorize = gym.utils.colorize
    if pass_idx < 4:
        out[1 + row][2 * col + 1] = colorize(out[1 + row][2 * col + 1], "yellow", highlight=True)
        pi, pj = TAXI_DEPOTS[pass_idx]
        out[1 + pi][2 * pj + 1] = colorize(out[1 + pi][2 * pj + 1], "blue", bold=True)
    else:
        cell = out[1 + row][2 * col + 1]
        out[1 + row][2 * col + 1] = colorize("_" if cell == " " else cell, "green", highlight=True)
    di, dj = TAXI_DEPOTS[dest_idx]
    out[1 + di][2 * dj + 1] = colorize(out[1 + di][2 * dj + 1], "magenta")
    tail = "\n" if last_action is None else f"  ({_TAXI_ACTIONS[last_action]})\n"
    return "\n".join("".join(r) for r in out) + "\n" + tail


def _render_maze(env: Maze, params, s: int, last_action: int | None) -> str:
    """The maze's own text map (``Maze.render``: A agent), headed by the last action as
    FrozenLake does (same action order)."""
    head = "\n" if last_action is None else f"  ({_FROZEN_LAKE_ACTIONS[last_action]})\n"
    return head + env.render(params, s) + "\n"


_RENDERERS = ((FrozenLake, _render_frozen_lake), (CliffWalking, _render_cliff_walking),
              (Taxi, _render_taxi), (Maze, _render_maze))


def _renderer(env: TabularEnvironment):
    for cls, fn in _RENDERERS:
        if isinstance(env, cls):
            return fn
    return None


# ---- the jitted steps ----------------------------------------------------------------


@partial(jax.jit, static_argnums=0)
def _single_env_call(env: TabularEnvironment, bits, s, action, params):
    """Everything one Gymnasium ``reset`` or ``step`` needs, in one compiled program per
    environment (one compile where a program for each would pay XLA's fixed cost twice):

    * a start state drawn with ``bits[0]`` (for ``reset``);
    * one transition of ``s`` under ``action`` without auto-reset, through jaxq's own
      ``step_from_bits`` (reward noise included), reading the pre-reset outcome. ``time``
      is 0: the time limit is Gymnasium's ``TimeLimit`` and ``params`` carry none;
    * the action masks of both states, for envs that have masks.
    """
    start = env.initial_state(bits[0], params).astype(jnp.int32)
    state = TabularState(time=jnp.zeros((), jnp.int32), s=s)
    _, _, reward, terminated, _, info = env.step_from_bits(bits[0], bits[1], state, action,
                                                           params)
    next_s = info["final_observation"]
    out = {"start": start, "s": next_s, "reward": reward, "terminated": terminated,
           "prob": info["prob"], "success": info["success"]}
    if env.has_action_mask:
        def mask(x):
            return jnp.stack([jnp.asarray(v, bool) for v in env.valid_actions(x, params)])
        out["start_mask"], out["mask"] = mask(start), mask(next_s)
    return out


class JaxqEnv(gym.Env):
    """One jaxq tabular environment behind Gymnasium's ``Env`` API (build it with
    ``to_gymnasium``, which adds the time limit and Gymnasium's standard wrappers).

    Observations are Python ints in ``Discrete(num_states)``, as in Gymnasium's toy-text
    envs; ``info`` has ``"prob"`` (of the outcome taken, as toy-text) and ``"success"``
    (jaxq's task-completion flag), plus ``"action_mask"`` (int8, as Taxi's) for envs
    with action masks. An action masked in the current state is still stepped (with the
    env's defined dynamics): Gymnasium agents and ``check_env`` sample from the whole
    action space; the mask is there for agents that honour it.
    """

    def __init__(self, env: TabularEnvironment, params: TabularParams,
                 render_mode: str | None = None):
        self._env = env
        # No limit inside: to_gymnasium applies the env's limit as Gymnasium's TimeLimit.
        self._params = params.replace(max_steps_in_episode=INT32_MAX)
        self._render = _renderer(env)
        self.metadata = {"render_modes": ["ansi"] if self._render else [], "render_fps": 4}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            supported = ("'ansi' or None" if self._render else
                         "None (text rendering exists for FrozenLake, CliffWalking, Taxi and Maze)")
            raise ValueError(f"render_mode for {env.name} must be {supported}, got {render_mode!r}")
        if render_mode == "ansi" and isinstance(env, Maze):
            env.render(params)  # a maze too large to print fails here, not mid-episode
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(env.num_states)
        self.action_space = gym.spaces.Discrete(env.num_actions)
        self.s: int | None = None
        self.lastaction: int | None = None

    @property
    def jaxq_env(self) -> tuple[TabularEnvironment, TabularParams]:
        """The wrapped ``(env, params)`` (params without the time limit)."""
        return self._env, self._params

    def _call(self, action: int = 0) -> dict[str, Any]:
        bits = self.np_random.integers(0, 2**32, size=2, dtype=np.uint32)
        s = 0 if self.s is None else self.s
        # numpy scalars in, not jnp ones: each jnp scalar would be an eager dispatch
        return jax.device_get(_single_env_call(self._env, bits, np.int32(s), np.int32(action),
                                               self._params))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; the start is drawn from ``np_random`` (seeded by ``seed``)."""
        super().reset(seed=seed)
        out = self._call()
        self.s, self.lastaction = int(out["start"]), None
        info = {"prob": 1.0}
        if "start_mask" in out:
            info["action_mask"] = np.asarray(out["start_mask"], np.int8)
        return self.s, info

    def step(self, action: int):
        """One transition; ``truncated`` is always False here (``TimeLimit`` sets it)."""
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        if self.s is None:
            raise RuntimeError("call reset() before step()")
        out = self._call(int(action))
        self.s, self.lastaction = int(out["s"]), int(action)
        info = {"prob": float(out["prob"]), "success": bool(out["success"])}
        if "mask" in out:
            info["action_mask"] = np.asarray(out["mask"], np.int8)
        return self.s, float(out["reward"]), bool(out["terminated"]), False, info

    def render(self) -> str | None:
        """The grid as text (``render_mode="ansi"``), in Gymnasium's own format for
        FrozenLake, CliffWalking and Taxi."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                "You can specify the render_mode at initialization, "
                f'e.g. jaxq.to_gymnasium("{self._env.name}", render_mode="ansi")')
            return None
        if self.s is None:
            raise RuntimeError("call reset() before render()")
        return self._render(self._env, self._params, self.s, self.lastaction)


def _create(env: TabularEnvironment, params: TabularParams, render_mode: str | None = None):
    """The ``EnvSpec`` entry point: the same (immutable) env and params every time."""
    return JaxqEnv(env, params, render_mode=render_mode)


def to_gymnasium(env_or_id: str | tuple[TabularEnvironment, TabularParams], *,
                 render_mode: str | None = None, **env_kwargs: Any) -> gym.Env:
    """A jaxq environment as a ``gymnasium.Env``.

    ``env_or_id`` is an id from ``jaxq.registered_ids()`` (with ``env_kwargs`` passed to
    ``jaxq.make``) or an ``(env, params)`` pair. The result is made by ``gymnasium.make``
    from an ``EnvSpec`` (id ``"jaxq/<id>"``), so it carries a spec that ``check_env`` and
    ``spec.make()`` can use, Gymnasium's ``PassiveEnvChecker`` and ``OrderEnforcing``, and
    the environment's time limit as ``TimeLimit`` (none where jaxq has none, e.g.
    CliffWalking, as Gymnasium registers none). Spaces are ``Discrete``; rewards are
    floats; ``reset(seed=...)`` makes the episode reproducible. ``render_mode="ansi"``
    works for the grid worlds (FrozenLake, CliffWalking, Taxi, Maze).
    """
    env, params, gym_id = _resolve(env_or_id, env_kwargs, "to_gymnasium")
    JaxqEnv(env, params, render_mode)  # bad render modes are reported here, by jaxq
    spec = gym.envs.registration.EnvSpec(
        id=gym_id, entry_point=partial(_create, env, params),
        max_episode_steps=_time_limit(params), nondeterministic=False,
        disable_env_checker=False, kwargs={},
        vector_entry_point=partial(_create_vector, env, params))
    kwargs = {} if render_mode is None else {"render_mode": render_mode}
    return gym.make(spec, **kwargs)


# ---- vector ----------------------------------------------------------------------------


@partial(jax.jit, static_argnums=0)
def _vector_step(vec: VecEnv, key, state: TabularState, autoreset, actions, params):
    """Gymnasium's NEXT_STEP autoreset for N copies in one program: copies whose episode
    ended on the previous call are reset (action ignored, reward 0, flags False); the
    others take one step with jaxq's batched step, time limit included (params keep it).
    ``reset`` is this call with every copy autoresetting (one compiled program, not two)."""
    key, k_step, k_reset = jax.random.split(key, 3)
    words = jax.random.bits(k_step, (vec.num_words, vec.num_envs), jnp.uint32)
    _, _, reward, terminated, truncated, final_obs, _ = vec.step(None, words, state, actions,
                                                                 params)
    stepped = TabularState(time=state.time + 1, s=final_obs)
    reset_obs, reset_state = vec.reset(k_reset, params)
    new_state = jax.tree.map(lambda r, s: jnp.where(autoreset, r, s), reset_state, stepped)
    obs = jnp.where(autoreset, reset_obs, final_obs)
    reward = jnp.where(autoreset, 0.0, reward)
    terminated = terminated & ~autoreset
    truncated = truncated & ~autoreset
    return obs, reward, terminated, truncated, new_state, terminated | truncated, key


class JaxqVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of a jaxq environment stepped as one jitted batch (build it
    with ``to_gymnasium_vector``).

    Autoreset mode ``NEXT_STEP`` (``metadata["autoreset_mode"]``), Gymnasium 1.x's
    default. Time limits are applied inside the batch (``truncations``): a ``TimeLimit``
    wrapper is per-env and cannot wrap a vector env. ``reset(seed=s)`` seeds one JAX key
    for the whole batch (a list of per-copy seeds is refused: the copies share one random
    stream by design, which is what makes the batch one program). Observations are int64
    arrays in ``MultiDiscrete``, rewards float64, flags bool.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, env: TabularEnvironment, params: TabularParams, num_envs: int):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or not (
                1 <= num_envs <= INT32_MAX):
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self._vec = VecEnv(env, params, int(num_envs))
        self._params = params
        self.num_envs = int(num_envs)
        self.single_observation_space = gym.spaces.Discrete(env.num_states)
        self.single_action_space = gym.spaces.Discrete(env.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._key = self._state = self._autoreset = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every copy. ``seed``: one int for the whole batch, or None."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(
                f"seed must be an int or None (one seed for the whole jitted batch), got {seed!r}")
        if options:
            raise ValueError(f"options are not supported by jaxq vector envs, got {options!r}")
        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(0, 2**32)))
        n = self.num_envs
        state = TabularState(time=jnp.zeros(n, jnp.int32), s=jnp.zeros(n, jnp.int32))
        obs, _, _, _, self._state, self._autoreset, self._key = _vector_step(
            self._vec, key, state, jnp.ones(n, bool), jnp.zeros(n, jnp.int32), self._params)
        return np.asarray(obs, np.int64), {}

    def step(self, actions):
        """Step every copy (NEXT_STEP autoreset); returns numpy arrays."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer) or (
                a.min() < 0 or a.max() >= self.single_action_space.n):
            raise ValueError(
                f"actions must be {self.num_envs} ints in [0, {self.single_action_space.n}), "
                f"got shape {a.shape} dtype {a.dtype}")
        out = _vector_step(self._vec, self._key, self._state, self._autoreset,
                           np.asarray(a, np.int32), self._params)
        obs, reward, terminated, truncated, self._state, self._autoreset, self._key = out
        obs, reward, terminated, truncated = jax.device_get((obs, reward, terminated, truncated))
        return (np.asarray(obs, np.int64), np.asarray(reward, np.float64),
                np.asarray(terminated, bool), np.asarray(truncated, bool), {})


def _create_vector(env, params, num_envs: int, max_episode_steps: int | None = None,
                   render_mode: str | None = None):
    """The spec's ``vector_entry_point``: ``gym.make_vec(gym_env.spec, num_envs)`` (which
    passes the spec's ``max_episode_steps``, or the caller's)."""
    if render_mode is not None:
        raise ValueError(f"render_mode must be None for a jaxq vector env, got {render_mode!r}")
    if max_episode_steps is not None:
        params = params.replace(max_steps_in_episode=check_max_steps(max_episode_steps, 0))
    return JaxqVectorEnv(env, params, num_envs)


def to_gymnasium_vector(env_or_id: str | tuple[TabularEnvironment, TabularParams],
                        num_envs: int, **env_kwargs: Any) -> JaxqVectorEnv:
    """``num_envs`` copies of a jaxq environment as one ``gymnasium.vector.VectorEnv``,
    stepped as a single jitted batch, with ``NEXT_STEP`` autoreset (see ``JaxqVectorEnv``).
    ``env_or_id`` and ``env_kwargs`` as in ``to_gymnasium``."""
    env, params, _ = _resolve(env_or_id, env_kwargs, "to_gymnasium_vector")
    return JaxqVectorEnv(env, params, num_envs)


# ======================================================================================
# Gymnasium -> jaxq
# ======================================================================================


@struct.dataclass
class WeightedStartParams(MDPParams):
    """``MDPParams`` plus a non-uniform start distribution over ``starts``."""

    start_prob: jax.Array = None  # float32 [M]
    start_cdf: jax.Array = None  # float32 [M], cumulative start_prob


class WeightedStartMDP(ExplicitMDP):
    """An explicit MDP whose episodes start in ``starts[i]`` with ``start_prob[i]``
    (``make_mdp`` starts uniformly; a Gymnasium env's ``initial_state_distrib`` need not
    be uniform). The start is drawn by inverting the cdf with one 24-bit uniform, so each
    probability is honoured to within 2**-24."""

    def initial_state(self, bits, params: WeightedStartParams):
        i = jnp.searchsorted(params.start_cdf, bits_to_unit(bits), side="right")
        return params.starts[jnp.minimum(i, params.starts.shape[0] - 1)]

    def initial_distribution(self, params: WeightedStartParams):
        return jnp.zeros(self.num_states, jnp.float32).at[params.starts].add(params.start_prob)


def _index(container, i: int, what: str):
    try:
        return container[i]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{what} is missing: P must have P[s][a] for every state s and action a")


def _read_model(P, S: int, A: int):
    """``P[s][a]`` lists -> merged outcome arrays ``[S, A, K]``, each row validated."""
    try:
        n = len(P)
    except TypeError:
        raise TypeError(f"gym_env.unwrapped.P must be a list or dict P[s][a], got {type(P).__name__}")
    if n != S:
        raise ValueError(f"P has {n} states but observation_space is Discrete({S})")
    rows: list[list[tuple[int, float, bool, float]]] = []
    for s in range(S):
        Ps = _index(P, s, f"P[{s}]")
        for a in range(A):
            entries = _index(Ps, a, f"P[{s}][{a}]")
            merged: dict[tuple[int, float, bool], float] = {}
            total = 0.0
            try:
                entries = list(entries)
            except TypeError:
                raise ValueError(f"P[{s}][{a}] must be a list of (prob, next_state, reward, "
                                 f"terminated), got {entries!r}") from None
            if not entries:
                raise ValueError(f"P[{s}][{a}] is empty: every (state, action) needs outcomes")
            for k, entry in enumerate(entries):
                where = f"P[{s}][{a}][{k}]"
                try:
                    prob, ns, reward, term = entry
                except (TypeError, ValueError):
                    raise ValueError(f"{where} must be (prob, next_state, reward, terminated), "
                                     f"got {entry!r}") from None
                try:
                    prob, reward = float(prob), float(reward)
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: prob and reward must be numbers, got "
                                     f"{entry!r}") from None
                if not (math.isfinite(prob) and prob >= 0.0):
                    raise ValueError(f"{where}: probability must be finite and >= 0, got {prob}")
                if isinstance(ns, (bool, np.bool_)) or not isinstance(ns, (int, np.integer)):
                    raise ValueError(f"{where}: next_state must be an int, got {ns!r}")
                if not 0 <= int(ns) < S:
                    raise ValueError(f"{where}: next_state {int(ns)} is out of range [0, {S})")
                if not math.isfinite(reward):
                    raise ValueError(f"{where}: reward must be finite, got {reward}")
                if not isinstance(term, (bool, np.bool_)) and term not in (0, 1):
                    raise ValueError(f"{where}: terminated must be a bool, got {term!r}")
                total += prob
                if prob > 0.0:
                    key = (int(ns), reward, bool(term))
                    merged[key] = merged.get(key, 0.0) + prob
            if abs(total - 1.0) > PROB_TOL:
                raise ValueError(f"P[{s}][{a}]: probabilities sum to {total!r}, not 1 "
                                 f"(within {PROB_TOL})")
            rows.append([(ns, p, term, r) for (ns, r, term), p in merged.items()])
    K = max(len(r) for r in rows)
    ns = np.repeat(np.arange(S, dtype=np.int32), A)[:, None].repeat(K, 1)  # padding: self
    prob = np.zeros((S * A, K))
    reward = np.zeros((S * A, K))
    term = np.zeros((S * A, K), bool)
    for i, row in enumerate(rows):
        for k, (n_, p, t, r) in enumerate(row):
            ns[i, k], prob[i, k], term[i, k], reward[i, k] = n_, p, t, r
    shape = (S, A, K)
    return ns.reshape(shape), prob.reshape(shape), reward.reshape(shape), term.reshape(shape)


def _start_distribution(gym_env, unwrapped, initial_distribution, S: int) -> np.ndarray:
    if initial_distribution is None:
        initial_distribution = getattr(unwrapped, "initial_state_distrib", None)
        source = "gym_env.unwrapped.initial_state_distrib"
        if initial_distribution is None:
            raise ValueError(
                f"{type(unwrapped).__name__} has no initial_state_distrib (the toy-text "
                "start distribution): pass initial_distribution= (a start state, or "
                f"probabilities of shape [{S}]). jaxq does not estimate it by sampling "
                "reset(), which would make the imported model inexact")
    else:
        source = "initial_distribution"
    if isinstance(initial_distribution, (int, np.integer)) and not isinstance(
            initial_distribution, (bool, np.bool_)):
        if not 0 <= int(initial_distribution) < S:
            raise ValueError(f"initial_distribution state {initial_distribution} is out of "
                             f"range [0, {S})")
        d = np.zeros(S)
        d[int(initial_distribution)] = 1.0
        return d
    d = np.asarray(initial_distribution, np.float64)
    if d.shape != (S,):
        raise ValueError(f"{source} must be a start state or probabilities of shape [{S}], "
                         f"got shape {d.shape}")
    if not np.all(np.isfinite(d)) or (d < 0).any() or abs(d.sum() - 1.0) > PROB_TOL:
        raise ValueError(f"{source} must be non-negative probabilities summing to 1 "
                         f"(within {PROB_TOL}), got sum {d.sum()!r}")
    return d


def _gym_time_limit(gym_env) -> int | None:
    """The episode limit the wrappers impose: the smallest ``TimeLimit`` in the chain
    (``gym.make`` adds one from the registration; a spec alone truncates nothing, and a
    ``TimeLimit`` around a spec-less user env has no spec to read)."""
    limits = []
    while isinstance(gym_env, gym.Wrapper):
        if isinstance(gym_env, gym.wrappers.TimeLimit):
            limits.append(int(gym_env.spec.max_episode_steps if gym_env.spec is not None
                              else gym_env._max_episode_steps))
        gym_env = gym_env.env
    return min(limits) if limits else None


def from_gymnasium(gym_env: gym.Env, max_steps: int | None = None,
                   initial_distribution: int | Sequence[float] | None = None
                   ) -> tuple[ExplicitMDP, MDPParams]:
    """A Gymnasium env with a tabular model ``P`` as a pure-JAX jaxq ``(env, params)``.

    ``gym_env.unwrapped.P[s][a]`` must list ``(prob, next_state, reward, terminated)``
    (Gymnasium's toy-text convention), with ``Discrete`` observation and action spaces.
    Every row is checked (probabilities summing to 1 within 1e-6, next states in range,
    finite rewards) and identical outcomes are merged, so ``jaxq.tabular_model`` of the
    result is exactly ``P``. The start distribution is ``initial_distribution`` (a state,
    or probabilities ``[S]``), else ``gym_env.unwrapped.initial_state_distrib``; it is never
    estimated by sampling (see the module doc). The time limit is ``max_steps``, else that
    of ``gym_env``'s ``TimeLimit`` wrapper (``gym.make`` adds it from
    ``spec.max_episode_steps``), else none: pass the wrapped env, not ``.unwrapped``.

    Use ``jaxq.register(id, factory)`` with a factory calling this to train on it with
    ``jaxq.train`` / ``jaxq train --env id``.
    """
    if not isinstance(gym_env, gym.Env):
        raise TypeError(f"gym_env must be a gymnasium.Env, got {type(gym_env).__name__}")
    unwrapped = gym_env.unwrapped
    name = type(unwrapped).__name__
    for attr in ("observation_space", "action_space"):
        space = getattr(gym_env, attr)
        if not isinstance(space, gym.spaces.Discrete):
            raise TypeError(
                f"from_gymnasium needs Discrete observation and action spaces (a finite "
                f"model); {name}'s {attr} is {space}. A continuous space has no table P: "
                "for a gymnax environment use jaxq.make_tabular(env_id, bins=...)")
        if int(space.start) != 0:
            raise ValueError(f"{name}'s {attr} starts at {int(space.start)}; from_gymnasium "
                             "needs Discrete spaces starting at 0 (states index P)")
    P = getattr(unwrapped, "P", None)
    if P is None:
        raise TypeError(
            f"{name} has no tabular model: from_gymnasium needs gym_env.unwrapped.P with "
            "P[s][a] = [(prob, next_state, reward, terminated), ...] (Gymnasium's toy-text "
            "convention, as in FrozenLake, Taxi and CliffWalking)")
    S, A = int(gym_env.observation_space.n), int(gym_env.action_space.n)
    ns, prob, reward, term = _read_model(P, S, A)
    d = _start_distribution(gym_env, unwrapped, initial_distribution, S)
    if max_steps is None:
        max_steps = _gym_time_limit(gym_env)
    max_steps = check_max_steps(max_steps, INT32_MAX)
    spec = getattr(gym_env, "spec", None)
    env_id = spec.id if spec is not None else name
    support = np.flatnonzero(d > 0)
    env, params = make_mdp(ns, prob, reward, term, support, max_steps=max_steps, env_id=env_id)
    if np.all(d[support] == d[support[0]]):
        return env, params  # uniform over its support: make_mdp's own start
    w = d[support] / d[support].sum()
    cdf = np.cumsum(w)
    cdf[-1] = 1.0
    env = WeightedStartMDP(env.num_states, env.num_actions, env.num_outcomes, True,
                           env.has_action_mask, env.noisy_reward, env_id)
    fields = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    params = WeightedStartParams(**fields, start_prob=jnp.asarray(w, jnp.float32),
                                 start_cdf=jnp.asarray(cdf, jnp.float32))
    env._default_params = params
    return env, params
