"""PQN: parallelised Q-learning without a replay buffer or a target network (Gallici et
al. 2024, "Simplifying Deep Temporal Difference Learning"), PureJaxRL style.

One update::

    rollout   N envs x K steps, epsilon-greedy on the live network    explore.BehaviourPolicy
              (strategy async: on the actors' stale copy)
    targets   Q(lambda) returns by a reverse lax.scan                 q_lambda_targets
    learn     num_epochs x num_minibatches steps of SGD on             optax (clip + RAdam)
              0.5 (Q(s, a) - G)^2

``make_pqn_learner(config)`` cuts the run into ``init(key, hp) -> carry`` and
``chunk(carry, hp) -> (carry, metrics)`` (a ``DeepLearner``; each chunk is a ``lax.scan``
over updates ending with a greedy evaluation), which ``jaxq.deep_run`` drives from the
host with checkpoints between chunks. ``make_train_pqn(config)`` returns the pure
``train(key, hparams=None) -> DeepOutput``: ``init`` and one ``lax.scan`` over the
chunks, so it ``jit``-s and ``vmap``-s over seeds and over the array leaves of
``DeepHParams`` (lr, gamma, epsilon, lambda).

A minibatch is ``K / num_minibatches`` time steps (a random subset, fresh every epoch) of
*every* environment. That is the split that makes strategy ``replicated`` exact: the
environments are divided over the devices, each device's share of a minibatch is its
own environments' transitions, each computes the gradient of its mean loss and one
all-reduce (``pmean``) gives every device the gradient of the global minibatch, which
each applies to its identical copy of the parameters (the synchronous parameter server,
without a server). All randomness is drawn for all N envs from keys every device holds
and sliced per device, so one device and D devices run the same experiment, equal up
to the order of float sums.

Strategy ``async`` (Mnih et al. 2016's bounded staleness) is ``replicated`` whose actors
act on a copy of the parameters refreshed every ``sync_every`` updates (at most
``sync_every - 1`` updates old), while the learners compute targets and gradients with,
and update, the live parameters. The copy is part of the carry; ``sync_every = 1`` is
``replicated``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec as P

from jaxq import networks
from jaxq.deep_config import DeepConfig, DeepEnv, DeepHParams, resolve_env
from jaxq.strategies import AXIS, make_mesh


class DeepOutput(NamedTuple):
    """What a deep ``train`` returns: the trained network's parameters (replicated on
    every device with strategy ``replicated``), the optimizer state, and per-chunk
    metrics ``[num_chunks]`` (leading axes when vmapped): ``episodes``, ``return_sum``,
    ``length_sum`` (episodes that ended in the chunk), ``loss`` (mean over the chunk's
    gradient steps), ``eval_return``, ``eval_length``, ``eval_finished`` (the greedy
    evaluation at the chunk's end). DQN adds ``target_params``."""

    params: Any
    opt_state: Any
    metrics: dict[str, jax.Array]
    target_params: Any = None


class Rollout(NamedTuple):
    """K steps of M envs, ``[K, M, ...]``: the observation acted on, the action, the
    reward, whether the step terminated, whether it ended the episode (terminated or
    truncated), and the final observation (the next one, before any auto-reset)."""

    obs: Any
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    final_obs: Any


def q_lambda_targets(rewards: jax.Array, terminated: jax.Array, done: jax.Array,
                     v_next: jax.Array, gamma, lam) -> jax.Array:
    """Peng's Q(lambda) returns of a rollout ``[K, ...]`` (time first), by a reverse scan::

        G_t = r_t + gamma (1 - terminated_t) B_t
        B_t = v_t                                  if the episode ended at t or t = K - 1
              (1 - lam) v_t + lam G_{t+1}          otherwise

    with ``v_t = max_a Q(s'_t, a)`` at the step's final observation ``s'_t``. A
    terminated step never bootstraps; a truncated one (time-out) bootstraps from its final
    observation and is not mixed with the next episode's return. lam = 0 is one-step
    Q-learning's target, lam = 1 the Monte-Carlo return cut at the rollout's end.
    """
    K = rewards.shape[0]
    cut = done | (jnp.arange(K) == K - 1).reshape((K,) + (1,) * (rewards.ndim - 1))

    def back(g_next, x):
        r, term, c, v = x
        boot = jnp.where(c, v, (1.0 - lam) * v + lam * g_next)
        g = r + gamma * jnp.where(term, 0.0, boot)
        return g, g

    _, g = jax.lax.scan(back, jnp.zeros_like(v_next[-1]), (rewards, terminated, cut, v_next),
                        reverse=True)
    return g


class DeepLearner(NamedTuple):
    """A deep run cut into compiled chunks, the shape ``jaxq.deep_run`` drives from the
    host (checkpoints between chunks) and ``make_train_pqn``/``make_train_dqn`` scan over
    in one pure function:

    ``init(key, hparams) -> carry``; ``chunk(carry, hparams) -> (carry, metrics)`` (one
    chunk's metrics, scalars); ``output(carry, metrics) -> DeepOutput``. The carry holds
    everything the run needs to continue (parameters, optimizer state, the actors' stale
    copy, DQN's target network and replay buffer, env states, keys, counters), so a
    carry saved after any chunk and loaded again continues bit for bit. On a mesh the
    carry is global: per-env leaves sharded over the devices along their first axis,
    the rest replicated, so its shapes do not depend on the device count."""

    config: DeepConfig
    init: Callable[[jax.Array, DeepHParams], Any]
    chunk: Callable[[Any, DeepHParams], tuple[Any, dict[str, jax.Array]]]
    output: Callable[[Any, dict[str, jax.Array]], DeepOutput]
    num_chunks: int
    mesh: Mesh | None = None


def scan_chunks(learner: DeepLearner) -> Callable[..., DeepOutput]:
    """The pure ``train(key, hparams=None)``: ``init`` then a ``lax.scan`` of every chunk
    (one program: ``jit``-s and ``vmap``-s over seeds and hparams)."""
    config = learner.config

    def train(key: jax.Array, hparams: DeepHParams | None = None) -> DeepOutput:
        hp = config.hparams() if hparams is None else hparams
        c = learner.init(key, hp)
        c, metrics = jax.lax.scan(lambda c, _: learner.chunk(c, hp), c, None,
                                  length=learner.num_chunks)
        return learner.output(c, metrics)

    return train


class _Carry(NamedTuple):
    params: Any
    opt_state: Any
    actor: Any  # strategy "async": the parameters the actors act on (else None)
    env_state: Any
    obs: Any
    ep_return: jax.Array
    ep_length: jax.Array
    t: jax.Array  # env-step iterations done (the exploration schedules' clock)
    chunk: jax.Array  # chunks done
    key: jax.Array
    k_eval: jax.Array  # the greedy evaluations' key (folded with the chunk number)


def _devices(config: DeepConfig, mesh: Mesh | None) -> Mesh | None:
    if config.strategy == "single":
        return None
    return make_mesh(config.num_devices) if mesh is None else mesh


def check_split(config: DeepConfig, num_devices: int) -> int:
    """Envs per device; ``num_envs`` must split evenly over the devices."""
    if config.num_envs % num_devices:
        raise ValueError(f"num_envs={config.num_envs} must be divisible by the number of "
                         f"devices ({num_devices}) for strategy {config.strategy!r}")
    return config.num_envs // num_devices


def env_slicer(num_devices: int, per_device: int) -> Callable[[Any], Any]:
    """``x [N, ...] -> this device's [M, ...]`` (identity on one device): randomness is
    drawn for all N envs, so the run does not depend on how they are split."""
    if num_devices == 1:
        return lambda x: x

    def local(x):
        i = jax.lax.axis_index(AXIS)
        return jax.lax.dynamic_slice_in_dim(x, i * per_device, per_device, axis=0)
    return local


class Acting(NamedTuple):
    """What PQN and DQN share around their learning (``make_acting``): ``reset(k_env)
    -> (obs, env_state)`` of this device's envs; ``step(c, hp, params, k_act, k_env) ->
    (c, Rollout of one step, (episodes, return_sum, length_sum))``, epsilon-greedy on
    ``params`` then one step of every env, for a carry with ``env_state``, ``obs``,
    ``ep_return``, ``ep_length`` and ``t`` fields; ``report(params, k_eval, chunk, stats)
    -> metrics``: the chunk's episode sums (summed over the devices) and a greedy
    evaluation of ``params``."""

    reset: Callable[[jax.Array], tuple[Any, Any]]
    step: Callable[..., tuple[Any, Rollout, tuple[jax.Array, jax.Array, jax.Array]]]
    report: Callable[..., dict[str, jax.Array]]


def make_acting(config: DeepConfig, denv: DeepEnv, network: Any, behaviour: Any,
                local: Callable[[Any], Any], on_mesh: bool) -> Acting:
    """The ``Acting`` of a deep learner: every random number is drawn for all
    ``config.num_envs`` envs and sliced by ``local`` (see ``env_slicer``)."""
    N = config.num_envs
    cap = int(min(config.eval_max_steps, denv.time_limit))
    step_env = jax.vmap(denv.env.step, in_axes=(0, 0, 0, None))

    def reset(k_env):
        return jax.vmap(denv.env.reset, in_axes=(0, None))(
            local(jax.random.split(k_env, N)), denv.params)

    def step(c, hp, params, k_act, k_env):
        a = networks.select_actions(behaviour.at(hp, c.t),
                                    network.apply(params, denv.features(c.obs)),
                                    local(jax.random.bits(k_act, (N,), jnp.uint32)))
        obs, env_state, r, term, trunc, info = step_env(local(jax.random.split(k_env, N)),
                                                        c.env_state, a, denv.params)
        r = r.astype(jnp.float32)
        done = term | trunc
        roll = Rollout(c.obs, a, r, term, done, info["final_observation"])
        ep_return, ep_length = c.ep_return + r, c.ep_length + 1
        stats = (jnp.sum(done, dtype=jnp.int32), jnp.sum(jnp.where(done, ep_return, 0.0)),
                 jnp.sum(jnp.where(done, ep_length, 0).astype(jnp.float32)))
        c = c._replace(env_state=env_state, obs=obs, ep_return=jnp.where(done, 0.0, ep_return),
                       ep_length=jnp.where(done, 0, ep_length), t=c.t + 1)
        return c, roll, stats

    def report(params, k_eval, chunk, stats):
        episodes, ret, length = (jnp.sum(x) for x in stats)
        if on_mesh:
            episodes, ret, length = jax.lax.psum((episodes, ret, length), AXIS)
        ev = networks.greedy_rollouts(lambda f: network.apply(params, f), denv,
                                      jax.random.fold_in(k_eval, chunk),
                                      config.eval_episodes, cap)
        return {"episodes": episodes, "return_sum": ret, "length_sum": length,
                "eval_return": ev.mean_return, "eval_length": ev.mean_length,
                "eval_finished": ev.finished}

    return Acting(reset, step, report)


def make_train_pqn(config: DeepConfig, mesh: Mesh | None = None,
                   env: DeepEnv | None = None) -> Callable[..., DeepOutput]:
    """A pure ``train(key, hparams=None) -> DeepOutput`` for PQN (see the module
    docstring): ``make_pqn_learner``'s init and a scan over its chunks. ``mesh``
    overrides the devices of strategies ``replicated``/``async`` (default:
    ``config.num_devices`` of ``jax.devices()``); ``env`` a pre-built ``DeepEnv``."""
    return scan_chunks(make_pqn_learner(config, mesh, env))


def make_pqn_learner(config: DeepConfig, mesh: Mesh | None = None,
                     env: DeepEnv | None = None) -> DeepLearner:
    """PQN as ``init``/``chunk`` (``DeepLearner``); arguments as ``make_train_pqn``."""
    if not isinstance(config, DeepConfig):
        raise TypeError(f"config must be a DeepConfig, got {type(config).__name__}")
    if config.algo != "pqn":
        raise ValueError(f"make_train_pqn needs algo='pqn', got {config.algo!r}")
    denv = resolve_env(config) if env is None else env
    mesh = _devices(config, mesh)
    D = 1 if mesh is None else mesh.devices.size
    M = check_split(config, D)
    K = config.rollout_len
    B, E = config.num_minibatches, config.num_epochs
    plan = config.plan()
    network = networks.make_network(config, denv.num_actions)
    behaviour = networks.behaviour_policy(config, plan["iterations"] * K)
    local = env_slicer(D, M)
    on_mesh = mesh is not None
    stale = config.strategy == "async"
    acting = make_acting(config, denv, network, behaviour, local, on_mesh)
    q_of = lambda p, obs: network.apply(p, denv.features(obs))  # noqa: E731

    def optimizer(hp):
        return networks.make_optimizer(config, hp, plan["iterations"] * B * E)

    def init(key, hp) -> _Carry:
        k_eval, key = jax.random.split(key)
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = acting.reset(k_env)
        params = network.init(k_net, jnp.zeros((1, denv.obs_dim), jnp.float32))
        return _Carry(params, optimizer(hp).init(params), params if stale else None,
                      env_state, obs, jnp.zeros(M, jnp.float32), jnp.zeros(M, jnp.int32),
                      jnp.int32(0), jnp.int32(0), key, k_eval)

    def env_step(hp, acting_params, c: _Carry, _):
        key, k_act, k_env = jax.random.split(c.key, 3)
        c, roll, stats = acting.step(c, hp, acting_params, k_act, k_env)
        return c._replace(key=key), (roll, stats)

    def learn(params, opt_state, roll: Rollout, g, key, tx):
        def minibatch(carry, idx):
            params, opt_state = carry

            def loss_fn(p):
                q = q_of(p, roll.obs[idx])  # [K/B, M, A]
                q_sa = jnp.take_along_axis(q, roll.action[idx][..., None], axis=-1)[..., 0]
                return 0.5 * jnp.mean(jnp.square(q_sa - g[idx]))

            loss, grads = jax.value_and_grad(loss_fn)(params)
            if on_mesh:  # the global minibatch's gradient, on every device
                loss, grads = jax.lax.pmean((loss, grads), AXIS)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        def epoch(carry, k):
            order = jax.random.permutation(k, K).reshape(B, K // B)
            return jax.lax.scan(minibatch, carry, order)

        (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state),
                                                   jax.random.split(key, E))
        return params, opt_state, jnp.mean(losses)

    def update(hp, c: _Carry, _):
        if stale:  # Mnih et al. 2016: the actors' copy is refreshed every sync_every updates
            fresh = (c.t // K) % config.sync_every == 0
            c = c._replace(actor=jax.lax.cond(fresh, lambda: c.params, lambda: c.actor))
        acting_params = c.actor if stale else c.params
        c, (roll, stats) = jax.lax.scan(lambda c, x: env_step(hp, acting_params, c, x), c,
                                        None, length=K)
        # the learner's targets and gradients use the live parameters
        v_next = jnp.max(q_of(c.params, roll.final_obs), axis=-1)  # [K, M]
        g = q_lambda_targets(roll.reward * hp.reward_scale, roll.terminated, roll.done,
                             jax.lax.stop_gradient(v_next), hp.gamma, hp.q_lambda)
        key, k_learn = jax.random.split(c.key)
        params, opt_state, loss = learn(c.params, c.opt_state, roll, g, k_learn,
                                        optimizer(hp))
        stats = jax.tree.map(jnp.sum, stats)
        return c._replace(params=params, opt_state=opt_state, key=key), (stats, loss)

    def chunk(c: _Carry, hp):
        c, (stats, loss) = jax.lax.scan(
            lambda c, x: update(hp, c, x), c, None, length=plan["chunk_iters"])
        c = c._replace(chunk=c.chunk + 1)
        return c, {**acting.report(c.params, c.k_eval, c.chunk, stats),
                   "loss": jnp.mean(loss)}

    if on_mesh:
        # per-env leaves split over the devices (global [N, ...]), the rest replicated
        spec = _Carry(P(), P(), P() if stale else None, P(AXIS), P(AXIS), P(AXIS), P(AXIS),
                      P(), P(), P(), P())
        init = jax.shard_map(init, mesh=mesh, in_specs=(P(), P()), out_specs=spec,
                             check_vma=False)
        chunk = jax.shard_map(chunk, mesh=mesh, in_specs=(spec, P()), out_specs=(spec, P()),
                              check_vma=False)

    def output(c: _Carry, metrics) -> DeepOutput:
        return DeepOutput(c.params, c.opt_state, metrics)

    return DeepLearner(config, init, chunk, output, plan["num_chunks"], mesh)
