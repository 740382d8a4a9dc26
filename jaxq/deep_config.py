"""``DeepConfig``: a run of a neural Q-function (PQN or DQN), validated when built, and the
environment view the deep algorithms share.

The tabular ``TrainConfig`` describes a table; a network needs other settings (width,
depth, optimizer, rollout and minibatch sizes, replay buffer, target network), so the
deep algorithms get their own small config rather than a dozen fields that mean nothing
to a table. Like ``TrainConfig`` it splits static settings (shapes, loop lengths) from
the sweepable numbers, which ``hparams()`` turns into a ``DeepHParams`` pytree of arrays:
``jax.vmap`` over its leaves (lr, gamma, epsilon, lambda, tau) trains many settings in
one compiled call.

Every check happens here, before anything is traced or compiled, and each error names
the field and what is accepted (the CLI turns ``field`` into ``--field``).

Environments come from ``jaxq.make``: gymnax's continuous ones (CartPole-v1, Acrobot-v1,
MountainCar-v0, the MinAtar games) feed the network their observation, flattened to a
float vector; jaxq's tabular ones (a Discrete observation) feed it a one-hot vector, the
linear-features view under which a network with no hidden layer is a table.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxq.config import _choice, _int, _real
from jaxq.explore import EXPLORATIONS, SCHEDULES

DEEP_ALGOS = ("pqn", "dqn")
DEEP_STRATEGIES = ("single", "replicated", "async")
DEEP_LR_SCHEDULES = ("constant", "linear")
INT32_MAX = 2**31 - 1


@struct.dataclass
class DeepHParams:
    """The sweepable numbers of a deep run, as array leaves (``vmap`` over any of them).
    ``epsilon``/``temperature`` fields are what ``explore.BehaviourPolicy.at`` reads."""

    lr: Any
    lr_end: Any
    gamma: Any
    q_lambda: Any
    epsilon: Any
    epsilon_end: Any
    temperature: Any
    temperature_end: Any
    tau: Any
    reward_scale: Any


@dataclass(frozen=True)
class DeepConfig:
    """A PQN or DQN run. ``total_steps`` counts env steps summed over all environments
    and is rounded up to whole chunks (``plan()``); every chunk ends with a greedy
    evaluation of ``eval_episodes`` episodes.

    PQN (Gallici et al. 2024): each update collects ``rollout_len`` steps of the
    ``num_envs`` environments, computes Q(lambda) targets, then runs ``num_epochs``
    epochs of ``num_minibatches`` minibatches of SGD. No replay buffer, no target
    network; LayerNorm in the network is what keeps that stable.

    DQN (Mnih et al. 2015): each iteration steps the environments once into a replay
    buffer of ``buffer_size`` transitions; after ``learning_starts`` env steps, every
    ``train_every`` iterations one minibatch of ``batch_size`` is sampled; the target
    network becomes ``tau * online + (1 - tau) * target`` every ``target_update_every``
    gradient steps (tau = 1: a hard copy); ``double_q`` selects the bootstrap action with
    the online network (van Hasselt et al. 2016). The buffer keeps the last
    ``buffer_size // num_envs`` steps of every environment (``buffer_size`` rounded down
    to a multiple of ``num_envs``) and a minibatch takes ``batch_size / num_envs`` of
    every environment's (``batch_size`` must be a multiple of ``num_envs``), the split
    that lets strategy ``replicated`` keep each env's transitions on its own device.
    """

    algo: str = "pqn"
    env_id: str = "CartPole-v1"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_envs: int = 32
    # 10 whole chunks of 25 PQN rollouts (32 envs x 64 steps): nothing rounded
    total_steps: int = 512_000
    seed: int = 0
    # network and optimizer
    width: int = 128
    depth: int = 2
    layer_norm: bool = True
    lr: float = 3e-4
    lr_schedule: str = "constant"
    lr_end: float = 0.0
    max_grad_norm: float = 10.0
    gamma: float = 0.99
    # rewards are multiplied by this in the TD targets only (returns are reported
    # unscaled): CartPole's +1 a step puts Q near 100, and 0.1 keeps the squared TD
    # errors of PQN's first updates near 1 (measured: 4/4 seeds >= 475 at 200k steps
    # with 0.1 against 3/4 with 1.0)
    reward_scale: float = 0.1
    # exploration (explore.BehaviourPolicy), schedules over env-step iterations
    exploration: str = "epsilon_greedy"
    epsilon: float = 1.0
    epsilon_end: float = 0.05
    epsilon_schedule: str = "linear"
    epsilon_decay_fraction: float = 0.2
    temperature: float = 1.0
    temperature_end: float = 1.0
    temperature_schedule: str = "constant"
    # PQN
    rollout_len: int = 64
    num_epochs: int = 4
    num_minibatches: int = 16
    q_lambda: float = 0.65
    # DQN
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 1_000
    train_every: int = 1
    target_update_every: int = 100
    tau: float = 1.0
    double_q: bool = True
    # where it runs (replicated = the envs split over devices, each minibatch's gradient
    # all-reduced; async = the same learners, while the actors act on a copy of the
    # parameters refreshed every sync_every updates (PQN) or iterations (DQN), Mnih et al.
    # 2016)
    strategy: str = "single"
    num_devices: int | None = None
    sync_every: int = 1
    # reporting
    num_chunks: int = 10
    eval_episodes: int = 100
    eval_max_steps: int = 1000

    def __post_init__(self) -> None:
        _choice("algo", self.algo, DEEP_ALGOS)
        if not isinstance(self.env_kwargs, Mapping):
            raise TypeError(f"env_kwargs must be a mapping, got {type(self.env_kwargs).__name__}")
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        from jaxq.envs.registry import check_env
        check_env(self.env_id, self.env_kwargs)
        for name in ("num_envs", "total_steps", "width", "depth", "rollout_len", "num_epochs",
                     "num_minibatches", "buffer_size", "batch_size", "train_every",
                     "target_update_every", "num_chunks", "eval_episodes", "eval_max_steps"):
            _int(name, getattr(self, name), 1)
        _int("seed", self.seed, 0)
        _int("learning_starts", self.learning_starts, 0)
        for name in ("layer_norm", "double_q"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _real("lr", self.lr, 0.0, math.inf, lo_open=True, hi_open=True)
        _real("lr_end", self.lr_end, 0.0, math.inf, hi_open=True)
        _choice("lr_schedule", self.lr_schedule, DEEP_LR_SCHEDULES)
        _real("max_grad_norm", self.max_grad_norm, 0.0, math.inf, lo_open=True)
        _real("gamma", self.gamma, 0.0, 1.0)
        _real("reward_scale", self.reward_scale, 0.0, math.inf, lo_open=True, hi_open=True)
        _real("q_lambda", self.q_lambda, 0.0, 1.0)
        _real("tau", self.tau, 0.0, 1.0, lo_open=True)
        _choice("exploration", self.exploration, EXPLORATIONS)
        for name in ("epsilon_schedule", "temperature_schedule"):
            _choice(name, getattr(self, name), SCHEDULES)
        for name in ("epsilon", "epsilon_end", "epsilon_decay_fraction"):
            _real(name, getattr(self, name), 0.0, 1.0)
        for name in ("temperature", "temperature_end"):
            _real(name, getattr(self, name), 0.0, math.inf, lo_open=True, hi_open=True)
        if "exponential" in (self.epsilon_schedule,) and min(self.epsilon, self.epsilon_end) <= 0:
            raise ValueError("an exponential epsilon_schedule needs epsilon and epsilon_end > 0")
        _choice("strategy", self.strategy, DEEP_STRATEGIES)
        if self.num_devices is not None:
            _int("num_devices", self.num_devices, 1)
            if self.strategy == "single":
                raise ValueError("num_devices needs strategy 'replicated' or 'async'")
        _int("sync_every", self.sync_every, 1, INT32_MAX)
        if self.sync_every != 1 and self.strategy != "async":
            raise ValueError(f"sync_every={self.sync_every} needs strategy 'async' (the "
                             "actors' stale copy); other strategies act on the live "
                             "parameters: sync_every must be 1")
        if self.algo == "pqn" and self.rollout_len % self.num_minibatches:
            raise ValueError(
                f"rollout_len ({self.rollout_len}) must be divisible by num_minibatches "
                f"({self.num_minibatches}): a PQN minibatch is rollout_len / num_minibatches "
                "time steps of every environment")
        if self.algo == "dqn":
            if self.buffer_size < self.batch_size:
                raise ValueError(f"buffer_size ({self.buffer_size}) must be >= batch_size "
                                 f"({self.batch_size}): a minibatch is drawn from the buffer")
            if self.buffer_size < self.num_envs:
                raise ValueError(f"buffer_size ({self.buffer_size}) must be >= num_envs "
                                 f"({self.num_envs}): one step of every env enters at once")
            if self.batch_size % self.num_envs:
                raise ValueError(
                    f"batch_size ({self.batch_size}) must be divisible by num_envs "
                    f"({self.num_envs}): a DQN minibatch is batch_size / num_envs transitions "
                    "of every environment, each from its own steps in the replay buffer")
        plan = self.plan()
        if plan["iterations"] * (self.rollout_len if self.algo == "pqn" else 1) > INT32_MAX:
            raise ValueError("total_steps / num_envs must be below 2**31 env-step iterations")

    # -- derived -------------------------------------------------------------------
    def plan(self) -> dict[str, int]:
        """How the run is cut: ``iterations`` (PQN: updates of ``rollout_len`` steps of
        every env; DQN: steps of every env) in ``num_chunks`` chunks, and the env steps
        that makes (``total_steps`` rounded up to whole chunks)."""
        per_iter = self.num_envs * (self.rollout_len if self.algo == "pqn" else 1)
        iters = max(1, -(-self.total_steps // per_iter))
        chunk_iters = -(-iters // self.num_chunks)
        return {"iterations": chunk_iters * self.num_chunks, "chunk_iters": chunk_iters,
                "num_chunks": self.num_chunks, "steps_per_iteration": per_iter,
                "env_steps": chunk_iters * self.num_chunks * per_iter}

    def hparams(self) -> DeepHParams:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return DeepHParams(lr=f(self.lr), lr_end=f(self.lr_end), gamma=f(self.gamma),
                           q_lambda=f(self.q_lambda), epsilon=f(self.epsilon),
                           epsilon_end=f(self.epsilon_end), temperature=f(self.temperature),
                           temperature_end=f(self.temperature_end), tau=f(self.tau),
                           reward_scale=f(self.reward_scale))

    def replace(self, **changes: Any) -> "DeepConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DeepConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DeepConfig field(s) {unknown}; accepted: {sorted(known)}")
        return cls(**d)


class DeepEnv(NamedTuple):
    """An environment as the deep algorithms see it: gymnax's ``env``/``params``, the
    feature map ``features(obs) -> [obs_dim] float32`` (a one-hot vector for a Discrete
    observation, the flattened observation otherwise), its size, the action count and
    the episode time limit (``2**31 - 1`` where none is set)."""

    env: Any
    params: Any
    features: Callable[[jax.Array], jax.Array]
    obs_dim: int
    num_actions: int
    time_limit: int


def resolve_env(config: DeepConfig) -> DeepEnv:
    """``jaxq.make(config.env_id, **config.env_kwargs)`` with its feature map; an env
    whose actions are not Discrete is refused by name."""
    from gymnax.environments import spaces

    from jaxq.envs.registry import make
    from jaxq.vecenv import time_limit

    env, params = make(config.env_id, **config.env_kwargs)
    act = env.action_space(params)
    if not isinstance(act, spaces.Discrete):
        raise ValueError(f"env_id {config.env_id!r} has a {type(act).__name__} action space; "
                         "Q-learning needs Discrete actions")
    obs_space = env.observation_space(params)
    if isinstance(obs_space, spaces.Discrete):
        n = int(obs_space.n)

        def features(obs):
            return jax.nn.one_hot(obs, n, dtype=jnp.float32)
        obs_dim = n
    else:
        obs_dim = int(math.prod(obs_space.shape))

        def features(obs):
            return jnp.reshape(obs, obs.shape[:obs.ndim - len(obs_space.shape)] + (obs_dim,)
                               ).astype(jnp.float32)
    return DeepEnv(env, params, features, obs_dim, int(act.n), time_limit(params))


# ---- the convenient form -------------------------------------------------------------

@dataclass
class DeepResult:
    """What ``train_deep`` returns: host copies of the trained parameters (and DQN's
    target network), the per-chunk history, and timings (compile apart from running)."""

    params: Any
    metrics: dict[str, Any]
    timings: dict[str, float]
    config: DeepConfig
    target_params: Any = None
    # the TrainConfig (q_function="mlp") this run was built from by ``jaxq.train``
    train_config: Any = None

    def summary(self) -> dict[str, float]:
        """The last chunk's figures and the timings."""
        m = self.metrics
        out: dict[str, Any] = {"env_steps": int(m["env_steps"][-1]),
                               "episodes": int(m["episodes"][-1])}
        for k in ("mean_return", "mean_length", "loss", "eval_return", "eval_length",
                  "eval_finished"):
            out[k] = float(m[k][-1])
        out.update(self.timings)
        return out


def host_history(config: DeepConfig, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Per-chunk device sums -> the reported history (NumPy): ``env_steps`` and
    ``episodes`` cumulative (int64), ``mean_return``/``mean_length`` of the episodes that
    ended in each chunk (NaN where none did), the greedy evaluation's figures, and the
    names ``jaxq.plotting.save_learning_curve`` draws."""
    import numpy as np

    plan = config.plan()
    raw = {k: np.asarray(v) for k, v in raw.items()}
    n = len(raw["episodes"])
    eps = raw["episodes"].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "env_steps": np.arange(1, n + 1, dtype=np.int64) * plan["chunk_iters"]
            * plan["steps_per_iteration"],
            "episodes_in_chunk": eps,
            "episodes": np.cumsum(eps),
            "mean_return": raw["return_sum"].astype(np.float64) / eps,
            "mean_length": raw["length_sum"].astype(np.float64) / eps,
            "loss": raw["loss"].astype(np.float64),
            "eval_return": raw["eval_return"].astype(np.float64),
            "eval_length": raw["eval_length"].astype(np.float64),
            "eval_finished": raw["eval_finished"].astype(np.float64),
        }
    return out


def make_train_deep(config: DeepConfig, mesh: Any = None) -> Callable[..., Any]:
    """The pure ``train(key, hparams=None)`` of ``make_train_pqn`` or ``make_train_dqn``,
    by ``config.algo`` (one program for the whole run: jit, vmap over seeds/hparams)."""
    if not isinstance(config, DeepConfig):
        raise TypeError(f"config must be a DeepConfig, got {type(config).__name__}")
    if config.algo == "pqn":
        from jaxq.pqn import make_train_pqn
        return make_train_pqn(config, mesh)
    from jaxq.dqn import make_train_dqn
    return make_train_dqn(config, mesh)


def train_deep(config: DeepConfig, mesh: Any = None, *, out: str | None = None,
               resume: bool = False, checkpoint_every: int = 0,
               stop_after_chunks: int | None = None, progress: bool = False,
               callback: Callable[[int, dict[str, float]], Any] | None = None,
               compile_cache: str | None = None,
               before_run: Callable[[], None] | None = None) -> DeepResult:
    """Train one deep run (``key(config.seed)``) chunk by chunk (``jaxq.deep_run.run``):
    ``checkpoint_every`` K chunks into ``out/checkpoint.npz``, ``resume=True`` continues
    from it bit for bit (a corrupt or foreign checkpoint is refused before
    ``before_run()`` and before compiling); compilation timed apart from running; the
    history as ``host_history`` reports it."""
    from jaxq import deep_run

    return deep_run.run(config, mesh=mesh, out=out, checkpoint_every=checkpoint_every,
                        resume=resume, stop_after_chunks=stop_after_chunks,
                        progress=progress, callback=callback, compile_cache=compile_cache,
                        before_run=before_run)


def flat_params(params: Any) -> dict[str, Any]:
    """A parameter pytree as ``{"Dense_0/kernel": array, ...}`` (for ``np.savez``)."""
    import numpy as np
    from flax import traverse_util
    from flax.serialization import to_state_dict

    flat = traverse_util.flatten_dict(to_state_dict(params), sep="/")
    return {k: np.asarray(v) for k, v in flat.items()}


# ---- TrainConfig(q_function="mlp"): jaxq.train's path to the networks ------------------

def train_mlp(config: Any, q_star: Any = None, *, init_q: Any = None, progress: bool = True,
              checkpoint_path: str | None = None, checkpoint_every: int = 0,
              resume: bool = False, stop_after_chunks: int | None = None,
              before_run: Callable[[], None] | None = None, compile_cache: str | None = None,
              callback: Callable[[int, dict[str, float]], Any] | None = None,
              mesh: Any = None) -> DeepResult:
    """``jaxq.train(config)`` for ``TrainConfig(q_function="mlp")``: ``train_deep`` of
    ``config.deep_config()``, with ``jaxq.train``'s keyword arguments meaning what they
    mean there (progress on stderr, ``callback(chunk, row)`` after every chunk, the
    compiled-program cache, checkpoints every ``checkpoint_every`` chunks to
    ``checkpoint_path`` and ``resume``, ``before_run`` once everything is checked and
    before compiling).

    Returns a ``DeepResult``: ``params`` (the network's), ``metrics`` (the per-chunk
    history; ``eval_return`` its greedy evaluations), ``summary()``, ``timings``,
    ``config`` (the ``DeepConfig`` run) and ``train_config`` (the given config). A
    table's arguments (``q_star``, ``init_q``) are refused, naming the argument; a
    network's checkpoint is ``DIR/checkpoint.npz``, so ``checkpoint_path`` must be named
    so (the CLI's is).
    """
    import os
    import warnings

    for name, value in (("q_star", q_star), ("init_q", init_q)):
        if value is not None:
            raise ValueError(f"{name} is an [S, A] table; q_function='mlp' trains a network "
                             "and has none to track or start from")
    if checkpoint_every and not checkpoint_path:
        raise ValueError("checkpoint_every needs checkpoint_path")
    out = None
    if checkpoint_path:
        from jaxq.deep_run import CHECKPOINT
        if os.path.basename(checkpoint_path) != CHECKPOINT:
            raise ValueError(f"checkpoint_path of a q_function='mlp' run must be "
                             f"DIR/{CHECKPOINT} (the network's run directory), got "
                             f"{checkpoint_path!r}")
        out = os.path.dirname(checkpoint_path) or "."
    deep = config.deep_config()
    resolve_env(deep)  # a non-Discrete action space is refused before compiling
    if deep.strategy != "single":  # the devices, before anything is written
        from jaxq.pqn import check_split
        from jaxq.strategies import make_mesh
        check_split(deep, (make_mesh(deep.num_devices) if mesh is None else mesh).devices.size)
    plan = deep.plan()
    if plan["env_steps"] != deep.total_steps:
        warnings.warn(f"total_steps={deep.total_steps} rounded up to {plan['env_steps']} env "
                      f"steps ({plan['num_chunks']} chunks x {plan['chunk_iters']} iterations "
                      f"x {plan['steps_per_iteration']} env steps)", stacklevel=3)
    if resume and out is not None:
        from jaxq import checkpoint as ckpt
        from jaxq.deep_run import make_learner
        path = os.path.join(out, CHECKPOINT)
        if os.path.exists(path):  # a corrupt or foreign checkpoint: refused before before_run
            learner = make_learner(deep, mesh)
            ckpt.read(path, jax.eval_shape(learner.init, jax.random.key(deep.seed),
                                           deep.hparams()), deep.to_json())
    if before_run is not None:
        before_run()
    result = train_deep(deep, mesh, out=out, resume=bool(resume and out),
                        checkpoint_every=checkpoint_every if out else 0,
                        stop_after_chunks=stop_after_chunks, progress=progress,
                        callback=callback, compile_cache=compile_cache)
    result.train_config = config
    return result
