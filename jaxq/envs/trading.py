"""``Trading-v0``: a mean-reverting price on a grid, a position, and a fixed horizon, as an
exact finite-horizon MDP.

State = ``(t * num_prices + price) * 3 + position``: ``t`` in ``0..horizon-1`` (the steps
taken), ``price`` a level in ``0..num_prices-1`` (in ticks; the middle level ``c =
(num_prices - 1) // 2`` is the long-run mean) and ``position`` 0 short, 1 flat, 2 long
(-1, 0, +1 units). Action = the position to hold for the next step (0 short, 1 flat,
2 long); a trade is an action different from the current position.

One step: the agent moves to the new position and pays ``cost`` ticks per unit moved
(flat -> long: 1 unit, short -> long: 2); then the price moves one tick up with
probability ``volatility / 2 * (1 + drift - reversion * z)`` (clipped to [0,
volatility]), one tick down with the rest of ``volatility``, and stays otherwise, where
``z = (price - c) / c`` is the distance from the mean in [-1, 1] (a move beyond the grid
stays at the edge). Reward = position * (new price - price) - cost * |units moved|, in
ticks. K = 3 outcomes (down, stay, up). The step from ``t = horizon - 1`` terminates: a
position still open then is marked to market (no closing cost).

Why the time is in the state. The horizon is fixed, and with a transaction cost the
optimal action depends on how many steps are left: a position is only worth opening if
the reversion expected before the end pays for the cost, so near the end Q* stops trading.
A stationary policy on (price, position) could not express that, and discounting would
answer another question. With ``t`` in the state every episode terminates at the
horizon, value iteration with ``gamma = 1`` converges in ``horizon`` sweeps to the exact
optimum of the expected P&L, and the end is ``terminated`` (never a truncation to
bootstrap through). The default time limit equals the horizon.

Episodes start at ``t = 0``, flat, at the mean price (``start="mean"``) or at a uniformly
drawn price level (``start="uniform"``). Sizes go up to 2**24 states (e.g. horizon 4096
x 1365 prices x 3); ``make`` builds only a few scalars, whatever the size: the dynamics
are computed from the state index. No transition is a "success": the measure is the
return (P&L).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxq.envs.base import Outcomes, TabularEnvironment, TabularParams, check_max_steps
from jaxq.envs.grids import check_positive_int, check_probability
from jaxq.envs.registry import register

if TYPE_CHECKING:
    from jaxq.model import TabularModel

MAX_STATES = 1 << 24
START_OPTIONS = ("mean", "uniform")
SHORT, FLAT, LONG = 0, 1, 2
DOWN, STAY, UP = 0, 1, 2  # outcome order


@struct.dataclass
class TradingParams(TabularParams):
    """The price process and the cost (traced: changing them never recompiles)."""

    cost: jax.Array = 0.5  # ticks per unit of position moved
    volatility: jax.Array = 0.5  # probability of a one-tick move per step
    reversion: jax.Array = 0.8  # pull toward the mean: 0 = symmetric random walk
    drift: jax.Array = 0.0  # tilt of up moves over down moves, in [-1, 1]


class Trading(TabularEnvironment):
    """A position in {short, flat, long} on a finite Markov price chain, for ``horizon``
    steps (K = 3)."""

    def __init__(self, num_prices: int, horizon: int, random_start: bool = False,
                 env_id: str = "Trading-v0"):
        self.num_prices, self.horizon = num_prices, horizon
        self.center = (num_prices - 1) // 2
        self.num_states = horizon * num_prices * 3
        self._num_actions = 3
        self.num_outcomes = 3
        self.random_start = bool(random_start)
        self.env_id = env_id

    def static_key(self) -> tuple:
        return (self.num_prices, self.horizon, self.random_start, self.env_id)

    def decode(self, s):
        """``(t, price, position)`` of state ``s`` (works on arrays)."""
        return s // (3 * self.num_prices), (s // 3) % self.num_prices, s % 3

    def encode(self, t, price, position):
        return (t * self.num_prices + price) * 3 + position

    def move_probabilities(self, price, params: TradingParams) -> tuple[jax.Array, jax.Array]:
        """``(down, up)`` probabilities of the next tick at ``price``."""
        z = (jnp.asarray(price, jnp.float32) - self.center) / max(self.center, 1)
        vol = jnp.asarray(params.volatility, jnp.float32)
        up = jnp.clip(vol / 2 * (1.0 + params.drift - params.reversion * z), 0.0, vol)
        return vol - up, up

    def outcomes(self, s, a, params: TradingParams) -> Outcomes:
        s = jnp.asarray(s, jnp.int32)
        a = jnp.asarray(a, jnp.int32)
        t, price, pos = self.decode(s)
        down, up = self.move_probabilities(price, params)
        nxt = jnp.clip(price + jnp.array([-1, 0, 1], jnp.int32), 0, self.num_prices - 1)
        held = (a - 1).astype(jnp.float32)  # -1, 0, +1 units
        pnl = held * (nxt - price).astype(jnp.float32)
        fee = params.cost * jnp.abs(a - pos).astype(jnp.float32)
        done = t + 1 >= self.horizon
        ns = self.encode(jnp.minimum(t + 1, self.horizon - 1), nxt, a)
        prob = jnp.stack([down, 1.0 - down - up, up])
        return Outcomes(ns.astype(jnp.int32), prob.astype(jnp.float32),
                        (pnl - fee).astype(jnp.float32), jnp.broadcast_to(done, (3,)))

    defines_success = False  # reported as NaN / null, not 0

    def is_success(self, s, next_state, reward, terminated, params):
        """No transition completes a task here: the measure is the return (P&L)."""
        return jnp.zeros_like(jnp.asarray(terminated, bool))


def _number(name: str, value, low: float, high: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}") from None
    if not (math.isfinite(v) and low <= v <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return v


def make_trading(
    num_prices: int = 11,
    horizon: int = 50,
    cost: float = 0.5,
    volatility: float = 0.5,
    reversion: float = 0.8,
    drift: float = 0.0,
    start: str = "mean",
    max_steps: int | None = None,
) -> tuple[Trading, TradingParams]:
    """``Trading-v0``: ``horizon x num_prices x 3`` states (at most 2**24), 3 actions;
    the time limit defaults to ``horizon`` (every episode terminates there).

    ``cost`` (ticks per unit traded, >= 0), ``volatility`` (probability of a tick, in
    [0, 1]), ``reversion`` (in [0, 1]; 1 is the strongest pull that keeps every
    probability valid) and ``drift`` (in [-1, 1]) set the market; see the module doc.
    """
    num_prices = check_positive_int("num_prices", num_prices, minimum=3)
    horizon = check_positive_int("horizon", horizon, minimum=1)
    if horizon * num_prices * 3 > MAX_STATES:
        raise ValueError(f"horizon * num_prices * 3 must be <= {MAX_STATES} (2**24), got "
                         f"{horizon} x {num_prices} x 3")
    cost = _number("cost", cost, 0.0, math.inf)
    volatility = check_probability("volatility", volatility)
    reversion = _number("reversion", reversion, 0.0, 1.0)
    drift = _number("drift", drift, -1.0, 1.0)
    if start not in START_OPTIONS:
        raise ValueError(f"start must be one of {list(START_OPTIONS)}, got {start!r}")
    max_steps = check_max_steps(max_steps, horizon)

    env = Trading(num_prices, horizon, random_start=start == "uniform")
    prices = (np.array([env.center]) if start == "mean" else np.arange(num_prices))
    starts = env.encode(0, prices.astype(np.int32), FLAT).astype(np.int32)
    params = TradingParams(
        starts=jnp.asarray(starts), n_starts=jnp.int32(starts.size),
        max_steps_in_episode=max_steps, cost=jnp.float32(cost),
        volatility=jnp.float32(volatility), reversion=jnp.float32(reversion),
        drift=jnp.float32(drift),
    )
    env._default_params = params
    return env, params


def buy_and_hold_policy(env: Trading) -> jax.Array:
    """Go long at the first step and never trade again: action LONG in every state."""
    return jnp.full(env.num_states, LONG, jnp.int32)


def expected_trades(env: Trading, model: "TabularModel", policy) -> jax.Array:
    """The exact expected number of trades (steps whose action differs from the current
    position) in one episode under ``policy`` (greedy actions ``[S]`` or probabilities
    ``[S, A]``, e.g. ``greedy_policy(Q*)``), from the start distribution.

    It is the policy's value, with gamma = 1, for a reward of 1 per trade: policy
    evaluation on the model with its rewards replaced, converged exactly since every
    episode ends at the horizon.
    """
    from jaxq.model import policy_start_value  # here: jaxq.model imports the envs package

    pos = env.decode(jnp.arange(env.num_states, dtype=jnp.int32))[2]
    trade = (jnp.arange(3)[None, :] != pos[:, None]).astype(jnp.float32)  # [S, A]
    counting = model._replace(reward=jnp.broadcast_to(trade[..., None], model.reward.shape))
    return policy_start_value(counting, policy, 1.0)


def patient_greedy_policy(env: Trading, q, atol: float = 1e-5) -> jax.Array:
    """Greedy actions ``[S]`` of ``q`` that keep the current position whenever holding it
    is within ``atol`` of the best value: a trader never pays to switch between equally
    good positions, and value iteration's float32 rounding must not count as a reason to
    trade. Other ties go to the lowest action, as ``argmax``."""
    q = jnp.asarray(q)
    pos = env.decode(jnp.arange(env.num_states, dtype=jnp.int32))[2]
    hold = jnp.take_along_axis(q, pos[:, None], axis=1)[:, 0]
    keep = hold >= jnp.max(q, axis=1) - atol
    return jnp.where(keep, pos, jnp.argmax(q, axis=1)).astype(jnp.int32)


register("Trading-v0", make_trading,
         "Mean-reverting price grid x {short, flat, long} x time; reward = P&L - cost; "
         "sizes up to 2**24 states; T=horizon")
