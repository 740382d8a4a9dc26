"""The tabular environment base: gymnax's contract, with dynamics given once as outcomes.

Every tabular environment describes its dynamics in one pure function,
``outcomes(s, a, params)``, returning the K possible results of taking action ``a`` in
state ``s`` (next state, probability, reward, terminated). Both ``step`` (which samples
one outcome) and ``jaxq.tabular_model`` (which tabulates all of them) are derived from
it, so the sampled dynamics and the exact model used for value iteration cannot drift
apart.

The class subclasses gymnax's ``Environment``: ``reset``/``step`` keep gymnax 1.x's
six-tuple, auto-reset and ``info["final_observation"]`` contract, so gymnax wrappers and
code written for gymnax run on jaxq environments unchanged. ``step`` is overridden with
a faster path (one random draw per step instead of a key split plus a full reset
computation) that returns exactly the same things.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxq.config import INT32_MAX  # noqa: F401  (re-exported to the env families)


class Outcomes(NamedTuple):
    """The K possible results of one (state, action); arrays of shape ``[..., K]``.

    Several entries may share a ``next_state`` (e.g. a slippery move clamped at a wall):
    the probability of landing in s' is the sum over those entries. Entries with
    probability 0 are padding and are never sampled.
    """

    next_state: jax.Array  # int32
    prob: jax.Array  # float32, sums to 1 over K
    reward: jax.Array  # float32
    terminated: jax.Array  # bool


@struct.dataclass
class TabularState(environment.EnvState):
    """The agent's state index ``s`` and the elapsed steps ``time`` of the episode."""

    s: jax.Array


@struct.dataclass
class TabularParams(environment.EnvParams):
    """Dynamic settings; subclasses add the arrays that define a particular map.

    Episodes start uniformly in ``starts[:n_starts]`` (the array may be padded so its
    shape does not depend on, e.g., a maze's seed).
    """

    max_steps_in_episode: int = INT32_MAX
    starts: jax.Array = None  # int32 [M]
    n_starts: jax.Array = 1  # int32 scalar, <= M


def bits_to_unit(bits: jax.Array) -> jax.Array:
    """uint32 -> float32 uniform in [0, 1) with 24 random bits (exact in float32)."""
    return (bits >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def bits_to_index(bits: jax.Array, n) -> jax.Array:
    """uint32 -> uniform index in [0, n); the modulo bias is below n / 2**32 (3e-3 for
    the 12.6M start cells of a 4096 maze, 7e-8 for Taxi's 300), where a float32 uniform
    could not even reach more than 2**24 distinct indices."""
    return (bits % jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)


def check_max_steps(max_steps: Any, default: int) -> int:
    """Validate a user-given ``max_steps`` (None means the environment's default)."""
    if max_steps is None:
        return default
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int,)) and not (
        hasattr(max_steps, "__index__")
    ):
        raise TypeError(f"max_steps must be a positive int or None, got {max_steps!r}")
    max_steps = int(max_steps)
    if not 1 <= max_steps <= INT32_MAX:
        raise ValueError(f"max_steps must be in [1, 2**31 - 1], got {max_steps}")
    return max_steps


def sample_outcome(u: jax.Array, outcomes: Outcomes) -> tuple[jax.Array, ...]:
    """Pick one of K outcomes with a single uniform ``u`` in [0, 1).

    Outcome k is taken when ``u`` is at or above the cumulative probability of the ones
    before it; zero-probability entries are never taken. The loop over K is unrolled into
    element-wise selects, which XLA:CPU vectorises over the batch (a cumsum/argmax over a
    minor axis of size K was several times slower; ``jax.random.choice`` slower still).
    """
    fields = (outcomes.next_state, outcomes.prob, outcomes.reward, outcomes.terminated)
    chosen = [f[..., 0] for f in fields]
    cdf = outcomes.prob[..., 0]
    for k in range(1, outcomes.prob.shape[-1]):
        p_k = outcomes.prob[..., k]
        take = (u >= cdf) & (p_k > 0)
        chosen = [jnp.where(take, f[..., k], c) for f, c in zip(fields, chosen)]
        cdf = cdf + p_k
    return tuple(chosen)


class StepTables(NamedTuple):
    """All outcomes of all (s, a), tabulated once per compiled chunk, so that a batched
    step is a few gathers instead of K recomputed outcomes (used for small models).

    ``cdf[k]`` is ``[S*A]``: the cumulative probability of outcomes < k+1, accumulated
    in the same order as ``sample_outcome`` so both paths pick the same outcome for the
    same random bits. The other fields are flat ``[S*A*K]``.

    ``packed`` holds an outcome's next state, terminated and success flags in one int32
    (``PACKED_STATE_BITS`` bits of state, then the two flags), so a step reads them with
    one gather instead of three (each gather recomputes the outcome index in its fusion).
    """

    cdf: tuple[jax.Array, ...]
    next_state: jax.Array
    prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    success: jax.Array
    packed: jax.Array


# Tabulate the dynamics for the step when the model has at most this many entries.
STEP_TABLE_LIMIT = 1 << 20
PACKED_STATE_BITS = 29  # > log2(STEP_TABLE_LIMIT): every tabulated next state fits


class TabularEnvironment(environment.Environment[TabularState, TabularParams]):
    """Base class for finite MDPs whose observation is the integer state index.

    Subclasses set ``num_states``, ``_num_actions``, ``num_outcomes`` (K) and
    ``random_start`` (static) in ``__init__``, implement ``outcomes`` and
    ``default_params`` (with ``starts``/``n_starts``), and may override ``is_success``
    (default: terminated with a positive reward).
    """

    num_states: int
    num_outcomes: int
    env_id: str = "Tabular"
    _num_actions: int
    random_start: bool = False  # False: start in starts[0], and draw no reset randomness
    # Optional features, static so that envs without them pay nothing:
    has_action_mask: bool = False  # valid_actions() restricts some states' actions
    noisy_reward: bool = False  # reward_noise() adds zero-mean noise to sampled rewards
    # is_success() means something (a goal, a delivery); False: success rates are
    # reported as NaN / null, not as a misleading 0
    defines_success: bool = True

    @property
    def words_per_step(self) -> int:
        """uint32 words one step consumes: the outcome, plus one for a random reset or
        reward noise (an env may not need both)."""
        return 2 if (self.random_start or self.noisy_reward) else 1

    _default_params: TabularParams | None = None

    # ---- what a subclass defines -------------------------------------------------
    def static_key(self) -> tuple:
        """The static settings that shape compiled code (shapes, K, flags). Envs are
        static jit arguments: equal keys share compilations, so everything else must
        come through params."""
        raise NotImplementedError

    def __hash__(self) -> int:
        return hash((type(self), self.static_key()))

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.static_key() == other.static_key()

    @property
    def default_params(self) -> TabularParams:
        return self._default_params

    def outcomes(self, s: jax.Array, a: jax.Array, params: TabularParams) -> Outcomes:
        """All K results of action ``a`` in state ``s`` (scalars in, ``[K]`` arrays out)."""
        raise NotImplementedError

    def initial_state(self, bits: jax.Array, params: TabularParams) -> jax.Array:
        """A start state drawn with one uint32 ``bits``: O(1), since it runs every step."""
        if not self.random_start:
            return params.starts[0]
        return params.starts[bits_to_index(bits, params.n_starts)]

    def initial_distribution(self, params: TabularParams) -> jax.Array:
        """Probabilities ``[num_states]`` of starting in each state (for V*(start))."""
        n = jnp.asarray(params.n_starts)
        w = jnp.where(jnp.arange(params.starts.shape[0]) < n, 1.0 / n, 0.0)
        return jnp.zeros(self.num_states, jnp.float32).at[params.starts].add(w)

    def valid_actions(self, s: jax.Array, params: TabularParams) -> tuple[jax.Array, ...]:
        """Per action, whether it may be taken in ``s`` (only if ``has_action_mask``)."""
        raise NotImplementedError

    def reward_noise(self, bits: jax.Array, s, a, params: TabularParams) -> jax.Array:
        """Zero-mean noise added to a sampled reward (only if ``noisy_reward``); the
        model keeps the mean, which is all value iteration needs."""
        raise NotImplementedError

    def is_success(
        self, s: jax.Array, next_state: jax.Array, reward: jax.Array, terminated: jax.Array,
        params: TabularParams,
    ) -> jax.Array:
        """Whether this transition completes the task (reaching a goal, a delivery)."""
        del s, next_state, params
        return jnp.logical_and(terminated, reward > 0)

    # ---- gymnax contract ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self.env_id

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params: TabularParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params: TabularParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_states)

    def state_space(self, params: TabularParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "s": spaces.Discrete(self.num_states),
                "time": spaces.Discrete(params.max_steps_in_episode + 1),
            }
        )

    def observe(self, key, state: TabularState, action, params) -> jax.Array:
        del key, action, params
        return state.s

    def get_obs(self, state: TabularState, params=None, key=None) -> jax.Array:
        return state.s

    def is_terminated(self, state: TabularState, params: TabularParams) -> jax.Array:
        # Termination is a property of the transition, not of the state (see Taxi);
        # step_env reports it. A state-only check cannot be exact here.
        raise NotImplementedError("termination is per transition; use step()")

    def reset_env(self, key: jax.Array, params: TabularParams):
        s = self.initial_state(jax.random.bits(key, (), jnp.uint32), params).astype(jnp.int32)
        state = TabularState(time=jnp.zeros((), jnp.int32), s=s)
        return state.s, state

    def _transition(self, u: jax.Array, state: TabularState, action, params):
        action = jnp.asarray(action, jnp.int32)
        next_s, prob, reward, terminated = sample_outcome(
            u, self.outcomes(state.s, action, params)
        )
        success = self.is_success(state.s, next_s, reward, terminated, params)
        next_state = TabularState(time=state.time + 1, s=next_s.astype(jnp.int32))
        info = {"prob": prob, "success": success}
        return next_state, reward.astype(jnp.float32), terminated, info

    def step_env(self, key: jax.Array, state: TabularState, action, params):
        next_state, reward, terminated, info = self._transition(
            bits_to_unit(jax.random.bits(key, (), jnp.uint32)), state, action, params
        )
        return next_state.s, next_state, reward, terminated, info

    def step_tables(self, params: TabularParams) -> StepTables | None:
        """The tabulated dynamics when the model is small enough, else None."""
        if self.num_states * self._num_actions * self.num_outcomes > STEP_TABLE_LIMIT:
            return None
        S, A, K = self.num_states, self._num_actions, self.num_outcomes
        s = jnp.repeat(jnp.arange(S, dtype=jnp.int32), A)
        a = jnp.tile(jnp.arange(A, dtype=jnp.int32), S)
        o = jax.vmap(lambda s, a: self.outcomes(s, a, params))(s, a)  # [S*A, K]
        succ = jax.vmap(lambda s, ns, r, t: self.is_success(s, ns, r, t, params))(
            jnp.repeat(s, K), o.next_state.reshape(-1), o.reward.reshape(-1),
            o.terminated.reshape(-1))
        cdf, cdfs = o.prob[:, 0], []
        for k in range(1, K):
            cdfs.append(jnp.where(o.prob[:, k] > 0, cdf, 2.0))  # 2.0: never reached
            cdf = cdf + o.prob[:, k]
        next_state = o.next_state.reshape(-1).astype(jnp.int32)
        terminated, success = o.terminated.reshape(-1), succ.reshape(-1)
        packed = (next_state | (terminated.astype(jnp.int32) << PACKED_STATE_BITS)
                  | (success.astype(jnp.int32) << (PACKED_STATE_BITS + 1)))
        return StepTables(tuple(cdfs), next_state, o.prob.reshape(-1),
                          o.reward.reshape(-1).astype(jnp.float32), terminated, success, packed)

    def _lookup(self, tables: StepTables, u, state: TabularState, action):
        row = state.s * self._num_actions + jnp.asarray(action, jnp.int32)
        k = jnp.zeros_like(row)
        for j, c in enumerate(tables.cdf, start=1):  # the last outcome reached, as sample_outcome
            k = jnp.where(u >= c[row], j, k)
        o = row * self.num_outcomes + k
        packed = tables.packed[o]
        next_state = TabularState(time=state.time + 1,
                                  s=packed & ((1 << PACKED_STATE_BITS) - 1))
        terminated = ((packed >> PACKED_STATE_BITS) & 1).astype(bool)
        success = ((packed >> (PACKED_STATE_BITS + 1)) & 1).astype(bool)
        info = {"prob": tables.prob[o], "success": success}
        return next_state, tables.reward[o], terminated, info

    def step_from_bits(self, bits_step, bits_reset, state: TabularState, action, params,
                       tables: StepTables | None = None):
        """``step`` driven by two uint32 words instead of a key: the training loop's hot
        path, which draws all randomness of a batched step in one call. ``bits_reset`` is
        unused when the start is fixed (``random_start`` False). With ``tables`` (from
        ``step_tables``) the outcome is looked up instead of computed."""
        if tables is None:
            next_state, reward, terminated, info = self._transition(
                bits_to_unit(bits_step), state, action, params)
        else:
            next_state, reward, terminated, info = self._lookup(
                tables, bits_to_unit(bits_step), state, action)
        if self.noisy_reward:
            reward = reward + self.reward_noise(bits_reset, state.s, action, params)
        truncated = next_state.time >= params.max_steps_in_episode
        done = jnp.logical_or(terminated, truncated)
        reset_s = self.initial_state(bits_reset, params).astype(jnp.int32)
        state_out = TabularState(
            time=jnp.where(done, 0, next_state.time).astype(jnp.int32),
            s=jnp.where(done, reset_s, next_state.s),
        )
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": next_state.s,
        }
        return state_out.s, state_out, reward, terminated, truncated, info

    # ``params=None`` is resolved *outside* jit: the params are then always a traced
    # argument, never a constant baked into a cached compilation. (With gymnax's jitted
    # ``step(..., params=None)``, two envs that hash alike but have different default
    # params would share one compiled step; a 16.7M-cell maze would become a constant.)
    def step(self, key: jax.Array, state: TabularState, action, params=None):
        """gymnax's step (six-tuple, auto-reset) from one random draw per call."""
        return self._step(key, state, action, self.default_params if params is None else params)

    def reset(self, key: jax.Array, params=None):
        return self._reset(key, self.default_params if params is None else params)

    @partial(jax.jit, static_argnames=("self",))
    def _step(self, key, state, action, params):
        bits = jax.random.bits(key, (2,), jnp.uint32)
        return self.step_from_bits(bits[0], bits[1], state, action, params)

    @partial(jax.jit, static_argnames=("self",))
    def _reset(self, key, params):
        return self.reset_env(key, params)
