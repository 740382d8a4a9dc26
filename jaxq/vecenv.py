"""N copies of one environment stepped at once, with the cheapest randomness available.

Observations are state indices (``[N]`` int32, Discrete spaces) or vectors (``[N, d]``
float32, 1-D Box spaces, for function approximation). jaxq's tabular environments are
stepped from two pre-drawn uniforms per copy (one draw for the whole batch); any other
gymnax environment gets one key per copy, as gymnax expects. The training loop and
evaluation use this and never branch on the env type.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from jaxq.envs.base import TabularEnvironment


class VecEnv:
    """Static (hashable) description of a batch: the env object and the batch size.

    Params are passed to every call, never stored, so that they stay traced arrays (a
    16.7M-cell maze must not become a compile-time constant) and so that two param sets
    never share a cached compilation by mistake.
    """

    def __init__(self, env, params, num_envs: int):
        self.env, self.num_envs = env, int(num_envs)
        self.fast = isinstance(env, TabularEnvironment)
        obs_space = env.observation_space(params)
        act_space = env.action_space(params)
        if isinstance(obs_space, spaces.Discrete):
            # a state index: tables index by it, one-hot features too
            self.num_states: int | None = int(obs_space.n)
            self.obs_shape: tuple[int, ...] = ()
            self.obs_dtype = jnp.int32
        elif isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1:
            # a vector for function approximation (tiles); a table needs bins
            self.num_states = None
            self.obs_shape = tuple(int(d) for d in obs_space.shape)
            self.obs_dtype = jnp.float32
        else:
            raise ValueError(
                f"{env.name} has an observation space {obs_space} that is neither Discrete "
                "nor a 1-D Box; jaxq learns from state indices or observation vectors"
            )
        if not isinstance(act_space, spaces.Discrete):
            raise ValueError(f"{env.name} needs a discrete action space, got {act_space}")
        self.num_actions = int(act_space.n)
        self.has_success = self.fast and bool(getattr(env, "defines_success", True))
        # uint32 words this env consumes per copy per step (0: it takes keys instead)
        self.num_words = env.words_per_step if self.fast else 0
        self.has_action_mask = self.fast and env.has_action_mask

    def __hash__(self):
        return hash((type(self), self.env, self.num_envs))

    def __eq__(self, other):
        return type(self) is type(other) and (self.env, self.num_envs) == (other.env, other.num_envs)

    @property
    def tabular(self) -> bool:
        """Observations are state indices in [0, num_states)."""
        return self.num_states is not None

    def reset(self, key, params):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, params)

    def observations(self, obs):
        """``obs`` as the loop carries them: int32 ``[N]`` indices or float32 ``[N, d]``."""
        return obs.astype(self.obs_dtype)

    def prepare(self, params):
        """Per-chunk precomputation (loop-invariant): the tabulated dynamics of a small
        tabular env, or None."""
        return self.env.step_tables(params) if self.fast else None

    def step(self, keys, words, state, action, params, tables=None):
        """Step every copy: tabular envs from ``words`` (``[num_words, N]`` uint32) and
        ``tables`` (from ``prepare``); other gymnax envs from ``keys`` (``[N]`` keys)."""
        if self.fast:
            bits_reset = words[1] if self.num_words == 2 else jnp.zeros_like(words[0])
            out = jax.vmap(self.env.step_from_bits, in_axes=(0, 0, 0, 0, None, None))(
                words[0], bits_reset, state, action, params, tables
            )
        else:
            out = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)
        obs, state, reward, terminated, truncated, info = out
        success = info["success"] if self.has_success else jnp.zeros_like(terminated)
        return (self.observations(obs), state, reward.astype(jnp.float32), terminated, truncated,
                self.observations(info["final_observation"]), success)


def time_limit(params) -> int:
    """The episode time limit of concrete ``params`` (2**31 - 1 where none is set)."""
    return int(getattr(params, "max_steps_in_episode", 2**31 - 1))
