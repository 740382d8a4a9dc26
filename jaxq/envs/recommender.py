"""``Recommender-v0``: a user's interest and fatigue as an exact MDP, where the most
clickable item now is not the best one over the user's lifetime.

State = ``interest * num_fatigue + fatigue``: ``interest`` in ``0..num_levels-1`` (how
engaged the user is, u = interest / (num_levels - 1) in [0, 1]) and ``fatigue`` in
``0..num_fatigue-1`` (phi = fatigue / (num_fatigue - 1), 0 when ``num_fatigue`` is 1).
Action a = the item category to recommend; categories are ordered from substantive
(a = 0) to sensational (a = C - 1), x = a / (C - 1) in [0, 1].

One step:

* the user clicks with probability
  ``click = (1 - fatigue_drag * phi) * (x * hook + (1 - x) * (0.1 + 0.8 * u))``:
  sensational items hook anybody (``hook``), substantive ones only an interested user
  (0.1 for u = 0 up to 0.9 for u = 1); fatigue damps both. Reward = 1 for a click.
* the user churns (the episode terminates) with probability
  ``churn = churn_base + churn_bored * (1 - u) + churn_annoyed * phi * x``: bored users
  leave, and tired users shown sensational items leave faster;
* otherwise, a click moves interest up one level with probability 1 - x (the item was
  worth it) and down one level with probability x (it was not), and adds one level of
  fatigue; no click leaves interest as it was and lets fatigue recover one level.

So the myopic policy (argmax of the click probability) shows sensational items to any
user with u < 0.625 (hook 0.6 > 0.1 + 0.8 u), which drains their interest and makes
them churn; the optimal policy invests in substantive items until interest is high. K = 5
outcomes: (click, churn), (click, up), (click, down), (no click, churn), (no click, stay).
A churning transition lands on its own state with ``terminated``, as nothing follows it.

Episodes start at interest ``(num_levels - 1) // 2`` with no fatigue (``start="middle"``)
or at a uniformly drawn interest level with no fatigue (``start="uniform"``, which helps
value propagate in large tables). Sizes go up to 2**24 states (e.g. 4096 x 4096);
``make`` only builds a few scalars, whatever the size: the dynamics are computed from
the state index, so the model tabulates and the step runs without any per-state table.
No transition is a "success": the measure is the return (clicks).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import Outcomes, TabularEnvironment, TabularParams, check_max_steps
from jaxq.envs.grids import check_positive_int, check_probability
from jaxq.envs.registry import register

MAX_STATES = 1 << 24
MAX_CATEGORIES = 256
START_OPTIONS = ("middle", "uniform")
# Outcome order (K = 5)
CLICK_CHURN, CLICK_UP, CLICK_DOWN, SKIP_CHURN, SKIP_STAY = range(5)


@struct.dataclass
class RecommenderParams(TabularParams):
    """The user model's coefficients (traced: changing them never recompiles)."""

    hook: jax.Array = 0.6  # click probability of the most sensational category
    fatigue_drag: jax.Array = 0.5  # share of the click probability lost at full fatigue
    churn_base: jax.Array = 0.02
    churn_bored: jax.Array = 0.1  # extra churn probability at zero interest
    churn_annoyed: jax.Array = 0.1  # extra churn at full fatigue for the most sensational items
    max_steps_in_episode: int = 100


class Recommender(TabularEnvironment):
    """A user whose interest and fatigue respond to what is recommended (K = 5)."""

    def __init__(self, num_levels: int, num_fatigue: int, num_categories: int,
                 random_start: bool = False, env_id: str = "Recommender-v0"):
        self.num_levels, self.num_fatigue = num_levels, num_fatigue
        self.num_categories = num_categories
        self.num_states = num_levels * num_fatigue
        self._num_actions = num_categories
        self.num_outcomes = 5
        self.random_start = bool(random_start)
        self.env_id = env_id

    def static_key(self) -> tuple:
        return (self.num_levels, self.num_fatigue, self.num_categories, self.random_start,
                self.env_id)

    def decode(self, s):
        """``(interest, fatigue)`` of state ``s`` (works on arrays)."""
        return s // self.num_fatigue, s % self.num_fatigue

    def probabilities(self, s, a, params: RecommenderParams) -> tuple[jax.Array, jax.Array]:
        """``(click, churn)`` probabilities of recommending category ``a`` in state ``s``."""
        i, f = self.decode(jnp.asarray(s, jnp.int32))
        u = i.astype(jnp.float32) / (self.num_levels - 1)
        phi = f.astype(jnp.float32) / max(self.num_fatigue - 1, 1)
        x = jnp.asarray(a, jnp.float32) / (self.num_categories - 1)
        hook = jnp.asarray(params.hook, jnp.float32)
        click = (1.0 - params.fatigue_drag * phi) * (x * hook + (1.0 - x) * (0.1 + 0.8 * u))
        churn = params.churn_base + params.churn_bored * (1.0 - u) + params.churn_annoyed * phi * x
        return click.astype(jnp.float32), jnp.clip(churn, 0.0, 1.0).astype(jnp.float32)

    def outcomes(self, s, a, params: RecommenderParams) -> Outcomes:
        s = jnp.asarray(s, jnp.int32)
        click, churn = self.probabilities(s, a, params)
        x = jnp.asarray(a, jnp.float32) / (self.num_categories - 1)
        i, f = self.decode(s)
        F, top = self.num_fatigue, self.num_levels - 1
        tired = jnp.minimum(f + 1, F - 1)
        ns = jnp.stack([s, jnp.minimum(i + 1, top) * F + tired, jnp.maximum(i - 1, 0) * F + tired,
                        s, i * F + jnp.maximum(f - 1, 0)])
        stay = 1.0 - churn
        prob = jnp.stack([click * churn, click * stay * (1.0 - x), click * stay * x,
                          (1.0 - click) * churn, (1.0 - click) * stay])
        reward = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0], jnp.float32)
        terminated = jnp.array([True, False, False, True, False])
        return Outcomes(ns.astype(jnp.int32), prob.astype(jnp.float32), reward, terminated)

    defines_success = False  # reported as NaN / null, not 0

    def is_success(self, s, next_state, reward, terminated, params):
        """No transition completes a task here: the measure is the return (clicks)."""
        return jnp.zeros_like(jnp.asarray(terminated, bool))


def _coefficient(name: str, value) -> float:
    return check_probability(name, value)


def make_recommender(
    num_levels: int = 10,
    num_fatigue: int = 5,
    num_categories: int = 4,
    start: str = "middle",
    hook: float = 0.6,
    fatigue_drag: float = 0.5,
    churn_base: float = 0.02,
    churn_bored: float = 0.1,
    churn_annoyed: float = 0.1,
    max_steps: int | None = None,
) -> tuple[Recommender, RecommenderParams]:
    """``Recommender-v0``: ``num_levels x num_fatigue`` states (at most 2**24), one
    action per category (2..256); T = 100 by default (``max_steps``).

    The coefficients are probabilities in [0, 1]; ``churn_base + churn_bored +
    churn_annoyed`` must stay <= 1, so that every state's churn probability is one.
    """
    num_levels = check_positive_int("num_levels", num_levels, minimum=2)
    num_fatigue = check_positive_int("num_fatigue", num_fatigue, minimum=1)
    num_categories = check_positive_int("num_categories", num_categories, minimum=2,
                                        maximum=MAX_CATEGORIES)
    if num_levels * num_fatigue > MAX_STATES:
        raise ValueError(f"num_levels * num_fatigue must be <= {MAX_STATES} (2**24), got "
                         f"{num_levels} x {num_fatigue}")
    if start not in START_OPTIONS:
        raise ValueError(f"start must be one of {list(START_OPTIONS)}, got {start!r}")
    coef = {name: _coefficient(name, v) for name, v in (
        ("hook", hook), ("fatigue_drag", fatigue_drag), ("churn_base", churn_base),
        ("churn_bored", churn_bored), ("churn_annoyed", churn_annoyed))}
    total = coef["churn_base"] + coef["churn_bored"] + coef["churn_annoyed"]
    if total > 1.0:
        raise ValueError("churn_base + churn_bored + churn_annoyed must be <= 1 (the largest "
                         f"churn probability), got {total:g}")
    max_steps = check_max_steps(max_steps, 100)

    if start == "middle":
        starts = np.array([(num_levels - 1) // 2 * num_fatigue], np.int32)
    else:
        starts = np.arange(num_levels, dtype=np.int32) * num_fatigue
    env = Recommender(num_levels, num_fatigue, num_categories, random_start=start == "uniform")
    params = RecommenderParams(
        starts=jnp.asarray(starts), n_starts=jnp.int32(starts.size),
        max_steps_in_episode=max_steps,
        **{name: jnp.float32(v) for name, v in coef.items()},
    )
    env._default_params = params
    return env, params


def myopic_policy(env: Recommender, params: RecommenderParams | None = None) -> jax.Array:
    """The greedy-for-clicks policy ``[S]``: in every state, the category with the highest
    click probability now (the baseline Q* must beat)."""
    return _myopic_policy(env, env.default_params if params is None else params)


@partial(jax.jit, static_argnums=(0,))
def _myopic_policy(env: Recommender, params: RecommenderParams) -> jax.Array:
    s = jnp.arange(env.num_states, dtype=jnp.int32)
    a = jnp.arange(env.num_actions, dtype=jnp.int32)
    click = jax.vmap(lambda a: env.probabilities(s, a, params)[0])(a)  # [A, S]
    return jnp.argmax(click, axis=0).astype(jnp.int32)


register("Recommender-v0", make_recommender,
         "User interest x fatigue; recommend a category, reward = click, churn ends it; "
         "sizes up to 2**24 states; T=100")
