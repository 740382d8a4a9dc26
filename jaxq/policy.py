"""A trained policy leaves jaxq: ``load_policy(run_dir)`` turns a saved run into a plain
callable ``obs -> action`` for an ordinary Gymnasium loop.

A run directory is what ``jaxq train --out DIR`` writes (``config.json`` and ``q.npy``:
a Q-table ``[S, A]``, or with ``q_function="tiles"`` the tile weights ``[num_tiles, A]``;
one more leading axis with ``learners="independent"``) or what ``jaxq train-deep --out
DIR`` writes (``config.json`` and ``params.npz``, the network's parameters by name).
Nothing is re-implemented here: the environment is rebuilt from the config the way
training built it (``training.resolve_env``, ``deep_config.resolve_env``), tile values
come from ``tiles.TileCodedQ`` over the saved weights (``tiles.saved_q_function``, which
training's own final evaluation of q.npy uses), the network from
``networks.make_network`` with the saved parameters, and the greedy choice is
``explore.greedy``, the one training and evaluation use.

The callable takes one observation as Gymnasium gives it: an int for a Discrete space
(FrozenLake, Taxi, ...), a float vector for a Box (CartPole, MountainCar, ...; a table
run on such an env bins it exactly as training did). It returns a Python int. The work
is one XLA program compiled once when the policy is loaded (ahead of time, for the
observation's exact shape and dtype), so calls in a Python loop never recompile; the
observation is checked and converted on the host first, and a wrong one is a clear
error rather than a silent clip or a new compile.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TIES = ("random", "first")
RUN_KINDS = ("table", "tiles", "pqn", "dqn")


class GreedyPolicy:
    """The greedy policy of a saved run: ``policy(obs) -> int``.

    Ties (equal largest values, e.g. the unvisited states of a table, where every value
    is ``q_init``) are broken by ``ties``: ``"random"`` picks uniformly among the tied
    actions with a NumPy generator seeded by ``seed`` (reproducible: the same seed and
    the same sequence of observations give the same actions; this is how jaxq's own
    greedy evaluation breaks ties, since always taking the lowest index can be a policy
    that never reaches the goal), ``"first"`` takes the lowest index (a pure function of
    the observation). Invalid actions of action-masked environments are never chosen.

    Attributes: ``run_dir``, ``kind`` (``table``, ``tiles``, ``pqn`` or ``dqn``),
    ``config`` (the run's ``TrainConfig`` or ``DeepConfig``), ``env_id``,
    ``env_kwargs``, ``num_actions``, ``observation_space`` (the gymnax space of the
    observations the policy takes), ``env``/``env_params`` (the jaxq/gymnax environment
    the run trained on, for ``evaluate``).
    """

    def __init__(self, *, run_dir: str, kind: str, config: Any, env: Any, env_params: Any,
                 observation_space: Any, num_actions: int, weights: Any, values_fn: Any,
                 ties: str, seed: int, evaluate_fn: Any):
        self.run_dir = run_dir
        self.kind = kind
        self.config = config
        self.env_id = config.env_id
        self.env_kwargs = dict(config.env_kwargs)
        self.env = env
        self.env_params = env_params
        self.observation_space = observation_space
        self.num_actions = int(num_actions)
        self.ties = ties
        self._weights = weights
        self._rng = np.random.default_rng(seed)
        self._evaluate_fn = evaluate_fn
        from gymnax.environments import spaces

        self._discrete = isinstance(observation_space, spaces.Discrete)
        if self._discrete:
            self._obs_shape: tuple[int, ...] = ()
            self._obs_dtype = np.dtype(np.int32)
        else:
            self._obs_shape = tuple(int(d) for d in observation_space.shape)
            self._obs_dtype = np.dtype(observation_space.dtype)

        def act(w, obs, u):
            cols = values_fn(w, obs)
            from jaxq.explore import greedy
            return greedy(cols, u), jnp.stack(cols)

        spec = jax.ShapeDtypeStruct(self._obs_shape, self._obs_dtype)
        # compiled once, ahead of time: a call can never trigger another compile
        self._act = jax.jit(act).lower(weights, spec, jnp.float32(0)).compile()

    def _obs(self, obs: Any) -> np.ndarray:
        """One observation, checked and converted on the host to the compiled dtype."""
        if self._discrete:
            x = np.asarray(obs)
            if x.shape != () or not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
                raise ValueError(f"obs must be one int state of {self.env_id} (a Discrete("
                                 f"{self.observation_space.n}) observation), got {obs!r}")
            if not 0 <= int(x) < int(self.observation_space.n):
                raise ValueError(f"obs must be in [0, {int(self.observation_space.n) - 1}] "
                                 f"for {self.env_id}, got {int(x)}")
            return np.asarray(x, np.int32)
        x = np.asarray(obs)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"obs must be a numeric array of shape {list(self._obs_shape)} "
                            f"for {self.env_id}, got dtype {x.dtype}")
        if x.shape != self._obs_shape:
            raise ValueError(f"obs must have shape {list(self._obs_shape)} for {self.env_id}, "
                             f"got {list(x.shape)}")
        return x.astype(self._obs_dtype, copy=False)

    def _u(self) -> np.float32:
        return np.float32(self._rng.random(dtype=np.float32) if self.ties == "random" else 0.0)

    def __call__(self, obs: Any) -> int:
        """The greedy action at ``obs`` (one observation as Gymnasium gives it)."""
        action, _ = self._act(self._weights, self._obs(obs), self._u())
        return int(action)

    def q_values(self, obs: Any) -> np.ndarray:
        """``[A]`` float32: the run's action values at ``obs`` (-inf for invalid actions of
        an action-masked env), the numbers the policy is greedy in."""
        _, values = self._act(self._weights, self._obs(obs), np.float32(0))
        return np.asarray(values)

    def evaluate(self, num_episodes: int = 1000, key: jax.Array | None = None,
                 max_steps: int = 1000):
        """The greedy policy rolled out in the run's own (vectorized, jitted) environment,
        the way training reports it (random ties): ``evaluation.Evaluation`` of Python
        floats. A table run is evaluated by ``jaxq.evaluate`` on its q.npy exactly as
        ``jaxq eval --q`` does; success rate is NaN for envs without one."""
        for name, v in (("num_episodes", num_episodes), ("max_steps", max_steps)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        return self._evaluate_fn(num_episodes, jax.random.key(0) if key is None else key,
                                 max_steps)

    def __repr__(self) -> str:
        return (f"GreedyPolicy({self.kind} run {self.run_dir!r}: {self.env_id}, "
                f"{self.num_actions} actions, ties={self.ties!r})")


# ---- reading a run --------------------------------------------------------------------

def _file(run_dir: str, name: str, what: str) -> str:
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} not found: {run_dir!r} is not a complete {what} run")
    return path


def _read_config(run_dir: str) -> dict[str, Any]:
    if not os.path.isdir(run_dir):
        raise ValueError(f"run_dir {run_dir!r} is not a directory")
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir!r} is not a jaxq run directory: no config.json (a run is "
                         "what `jaxq train --out DIR` or `jaxq train-deep --out DIR` writes)")
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:  # unreadable, not JSON, not UTF-8
        raise ValueError(f"cannot read {path!r}: {type(e).__name__}: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path!r} must hold a JSON object (a run's config), got "
                         f"{type(d).__name__}")
    return d


def _load_npy(path: str) -> np.ndarray:
    try:
        q = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated, bad header, object arrays, not .npy at all
        raise ValueError(f"cannot read {path!r}: {type(e).__name__}: {e}") from None
    if not isinstance(q, np.ndarray):
        q.close()
        raise ValueError(f"{path!r} is an .npz archive; expected a .npy array")
    if not np.issubdtype(q.dtype, np.floating):
        raise ValueError(f"{path!r} must hold float values, got dtype {q.dtype}")
    return q


def _pick_learner(q: np.ndarray, path: str, learner: int, rows: int, A: int,
                  what: str) -> np.ndarray:
    """``[rows, A]``, or one learner's of ``[N, rows, A]``; a clear error otherwise."""
    if isinstance(learner, bool) or not isinstance(learner, int):
        raise TypeError(f"learner must be an int, got {learner!r}")
    if q.ndim == 3 and q.shape[1:] == (rows, A):
        if not 0 <= learner < q.shape[0]:
            raise ValueError(f"learner must be in [0, {q.shape[0] - 1}] for {path!r} of shape "
                             f"{list(q.shape)}, got {learner}")
        return q[learner]
    if q.shape != (rows, A):
        raise ValueError(f"{path!r} has shape {list(q.shape)}; the run's config needs {what} "
                         f"[{rows}, {A}] (or [N, {rows}, {A}] for learners='independent')")
    return q


def _masked(env: Any, params: Any, cols, state):
    """Invalid actions at -inf where the environment masks actions (as evaluation does)."""
    if not getattr(env, "has_action_mask", False):
        return cols
    from jaxq.explore import mask_columns
    return mask_columns(cols, env.valid_actions(state, params))


def _tabular(run_dir: str, d: dict[str, Any], learner: int, ties: str, seed: int) -> GreedyPolicy:
    """A ``jaxq train`` run: a table, or linear weights over tiles (one-hot features on a
    tabular env)."""
    from jaxq import evaluation, training
    from jaxq.config import Q_FUNCTIONS, TrainConfig
    from jaxq.envs.discretize import StateIndexed

    cfg_path = os.path.join(run_dir, "config.json")
    qfn = d.get("q_function", "table")
    if qfn not in Q_FUNCTIONS:
        raise ValueError(f"{cfg_path!r} has q_function {qfn!r}; load_policy reads "
                         f"{list(Q_FUNCTIONS)} runs of `jaxq train` and the pqn/dqn runs of "
                         "`jaxq train-deep`")
    try:
        config = TrainConfig.from_dict(d)
        env, params = training.resolve_env(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{cfg_path!r} is not a valid run config: {e}") from None
    path = _file(run_dir, "q.npy", "`jaxq train`")
    q = _load_npy(path)
    A = int(env.action_space(params).n)
    # the raw observation (what Gymnasium gives) and how training indexed it
    if isinstance(env, StateIndexed):
        raw_space, encode = env.env.observation_space(params), env.encode
    else:
        raw_space, encode = env.observation_space(params), (lambda o: o)

    if config.q_function == "table":
        S = int(env.observation_space(params).n)
        table = _pick_learner(q, path, learner, S, A, "a Q-table")
        try:
            evaluation.check_finite(repr(path), table, env, params)
        except ValueError as e:
            raise ValueError(str(e)) from None
        weights = jnp.asarray(table, jnp.float32)

        def values_fn(w, obs):
            s = encode(obs)
            return _masked(env, params, tuple(w[s, a] for a in range(A)), s)

        def evaluate_fn(episodes, key, max_steps):
            return evaluation.evaluate(env, params, table, episodes, key, max_steps)
    else:
        from jaxq import tiles
        from jaxq.qfunctions import TableParams

        try:  # the Q-function training's final evaluation reads q.npy with
            qf = tiles.saved_q_function(config, env, params, A)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{cfg_path!r} is not a valid run config: {e}") from None
        w = _pick_learner(q, path, learner, qf.coder.num_tiles, A, "tile weights")
        if not np.isfinite(w).all():
            cell = tuple(int(i) for i in np.argwhere(~np.isfinite(w))[0])
            raise ValueError(f"{path!r} holds a non-finite weight at {list(cell)}: {w[cell]}")
        weights = TableParams(jnp.asarray(w, jnp.float32)[None], None, None)

        def values_fn(wp, obs):
            s = encode(obs)
            return _masked(env, params, qf.global_values(wp, s), s)

        def evaluate_fn(episodes, key, max_steps):
            return tiles.evaluate_weights(config, env, params, w, episodes, key, max_steps)

    return GreedyPolicy(run_dir=run_dir, kind=config.q_function, config=config, env=env,
                        env_params=params, observation_space=raw_space, num_actions=A,
                        weights=weights, values_fn=values_fn, ties=ties, seed=seed,
                        evaluate_fn=evaluate_fn)


def _deep(run_dir: str, d: dict[str, Any], ties: str, seed: int) -> GreedyPolicy:
    """A ``jaxq train-deep`` run: the network rebuilt from the config, its parameters
    from params.npz (names and shapes checked against the network's own)."""
    from flax import traverse_util
    from flax.serialization import from_state_dict, to_state_dict

    from jaxq import deep_config, networks

    cfg_path = os.path.join(run_dir, "config.json")
    try:
        if d.get("q_function") == "mlp":  # `jaxq train --q-function mlp`: a TrainConfig
            from jaxq.config import TrainConfig
            config = TrainConfig.from_dict(d).deep_config()
        else:
            config = deep_config.DeepConfig.from_dict(d)
        denv = deep_config.resolve_env(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{cfg_path!r} is not a valid run config: {e}") from None
    network = networks.make_network(config, denv.num_actions)
    template = jax.eval_shape(network.init, jax.random.key(0),
                              jnp.zeros((denv.obs_dim,), jnp.float32))
    want = traverse_util.flatten_dict(to_state_dict(template), sep="/")
    path = _file(run_dir, "params.npz", "`jaxq train --q-function mlp` (or `train-deep`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            got = {k: np.asarray(z[k]) for k in z.files}
    except Exception as e:  # not a zip, truncated, object arrays
        raise ValueError(f"cannot read {path!r}: {type(e).__name__}: {e}") from None
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ValueError(f"{path!r} does not hold the parameters of the run's network "
                         f"(width {config.width}, depth {config.depth}, layer_norm "
                         f"{config.layer_norm}): missing {missing}, unexpected {extra}")
    for k, spec in want.items():
        if got[k].shape != spec.shape or not np.issubdtype(got[k].dtype, np.floating):
            raise ValueError(f"{path!r}: {k} has shape {list(got[k].shape)} dtype "
                             f"{got[k].dtype}; the run's network needs {list(spec.shape)} float")
        if not np.isfinite(got[k]).all():
            raise ValueError(f"{path!r}: {k} holds non-finite values")
    weights = from_state_dict(template, traverse_util.unflatten_dict(
        {k: jnp.asarray(got[k], spec.dtype) for k, spec in want.items()}, sep="/"))
    A = denv.num_actions

    def values_fn(w, obs):
        q = network.apply(w, denv.features(obs))
        return tuple(q[a] for a in range(A))

    def evaluate_fn(episodes, key, max_steps):
        from jaxq.evaluation import Evaluation
        cap = int(min(max_steps, denv.time_limit))
        ev = jax.device_get(jax.jit(lambda w, k: networks.greedy_rollouts(
            lambda f: network.apply(w, f), denv, k, episodes, cap))(weights, key))
        return Evaluation(float(ev.mean_return), float("nan"), float(ev.mean_length),
                          float(ev.finished))

    return GreedyPolicy(run_dir=run_dir, kind=config.algo, config=config, env=denv.env,
                        env_params=denv.params,
                        observation_space=denv.env.observation_space(denv.params),
                        num_actions=A, weights=weights, values_fn=values_fn, ties=ties,
                        seed=seed, evaluate_fn=evaluate_fn)


def load_policy(run_dir: str | os.PathLike, learner: int = 0, ties: str = "random",
                seed: int = 0) -> GreedyPolicy:
    """The greedy policy of a saved run as a callable ``obs -> int`` (``GreedyPolicy``).

    Works for every Q-function jaxq trains: ``jaxq train`` runs (``q_function`` "table"
    or "tiles"; ``learner`` picks one table of a ``learners="independent"`` run) and
    ``jaxq train-deep`` runs (PQN, DQN). ``ties``: ``"random"`` (uniform among equal
    maxima, NumPy generator seeded by ``seed``) or ``"first"`` (lowest index); see
    ``GreedyPolicy``. Every problem with the directory (not a run, a file missing or
    corrupt, a config jaxq cannot rebuild) is a ``ValueError`` naming the file, raised
    before anything compiles. Usage::

        policy = jaxq.load_policy("runs/fl8")
        env = gymnasium.make("FrozenLake-v1", map_name="8x8")
        obs, _ = env.reset(seed=0)
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    run_dir = os.fspath(run_dir)
    d = _read_config(run_dir)
    from jaxq.deep_config import DEEP_ALGOS

    if d.get("algo") in DEEP_ALGOS or d.get("q_function") == "mlp":
        return _deep(run_dir, d, ties, seed)
    return _tabular(run_dir, d, learner, ties, seed)
