"""Trading-v0: the model against the spec, step vs model, Q* against buy-and-hold, and
fewer trades as the cost rises (exact expectations under the optimal policy)."""

import time

import numpy as np
import pytest

import jaxq
from jaxq.envs.trading import (
    FLAT, LONG, SHORT, buy_and_hold_policy, expected_trades, patient_greedy_policy,
)
from parity import assert_step_matches_model

# Every test uses the default shape (horizon 50 x 11 prices x 3 positions = 1650 states,
# 3 actions, K = 3), so tabulation, value iteration and policy evaluation compile once
# for the whole file; the market and the cost are params.
H, NP = 50, 11


def reference(cost=0.5, vol=0.5, rev=0.8, drift=0.0):
    """Independent ``{(s, a): ({(s', terminated): prob}, expected reward)}``, written
    from the module doc with loops (sparse: a dense P of 1650 states would be 65 MB)."""
    c = (NP - 1) // 2
    out = {}
    for t in range(H):
        for p in range(NP):
            z = (p - c) / c
            up = min(max(vol / 2 * (1 + drift - rev * z), 0.0), vol)
            moves = ((-1, vol - up), (0, 1 - vol), (1, up))
            for pos in range(3):
                s = (t * NP + p) * 3 + pos
                for a in range(3):
                    dist, r = {}, 0.0
                    for dp, pr in moves:
                        p2 = min(max(p + dp, 0), NP - 1)
                        key = ((min(t + 1, H - 1) * NP + p2) * 3 + a, t == H - 1)
                        dist[key] = dist.get(key, 0.0) + pr
                        r += pr * ((a - 1) * (p2 - p) - cost * abs(a - pos))
                    out[s, a] = ({k: v for k, v in dist.items() if v > 0}, r)
    return out


def model_rows(m):
    """The model in ``reference``'s form (duplicates summed, zero entries dropped)."""
    ns, pr = np.asarray(m.next_state), np.asarray(m.prob, np.float64)
    tm, r = np.asarray(m.terminated), np.asarray(m.expected_reward(), np.float64)
    out = {}
    for s in range(ns.shape[0]):
        for a in range(ns.shape[1]):
            dist = {}
            for k in range(ns.shape[2]):
                if pr[s, a, k] > 0:
                    key = (int(ns[s, a, k]), bool(tm[s, a, k]))
                    dist[key] = dist.get(key, 0.0) + pr[s, a, k]
            out[s, a] = (dist, r[s, a])
    return out


def solve(**kwargs):
    env, params = jaxq.make("Trading-v0", **kwargs)
    model = jaxq.tabular_model(env, params)
    return env, params, model, jaxq.value_iteration(model, 1.0)


@pytest.fixture(scope="module")
def default():
    return solve()


def test_registered_with_a_description():
    spec = {s.env_id: s for s in jaxq.envs.env_specs()}["Trading-v0"]
    assert "P&L" in spec.description
    env, params = jaxq.make("Trading-v0")
    assert (env.observation_space(params).n, env.action_space(params).n) == (H * NP * 3, 3)
    assert params.max_steps_in_episode == H  # the horizon; the last step terminates


@pytest.mark.parametrize("market", [{}, dict(cost=0.3, volatility=0.9, reversion=1.0, drift=0.5)])
def test_model_matches_reference(market):
    env, params = jaxq.make("Trading-v0", **market)
    m = jaxq.tabular_model(env, params)
    assert m.next_state.shape == (H * NP * 3, 3, 3)
    ref = reference(cost=market.get("cost", 0.5), vol=market.get("volatility", 0.5),
                    rev=market.get("reversion", 0.8), drift=market.get("drift", 0.0))
    got = model_rows(m)
    assert got.keys() == ref.keys()
    for sa, (dist, r) in ref.items():
        assert got[sa][0].keys() == dist.keys(), sa
        np.testing.assert_allclose([got[sa][0][k] for k in dist], list(dist.values()),
                                   atol=1e-6, err_msg=str(sa))
        assert got[sa][1] == pytest.approx(r, abs=1e-6), sa


def test_step_samples_agree_with_model(default):
    env, params, m, _ = default
    s = env.encode
    pairs = [(s(0, 5, FLAT), LONG), (s(3, 0, SHORT), LONG), (s(7, 10, LONG), SHORT),
             (s(20, 2, FLAT), FLAT), (s(H - 1, 8, LONG), LONG), (s(H - 1, 3, FLAT), SHORT)]
    assert_step_matches_model(env, params, m, pairs, n=20_000)


def test_last_step_values_are_one_step_expectations(default):
    """At t = H - 1 nothing follows: Q* = position * E[price move] - cost * |trade|."""
    env, params, m, q = default
    c = (NP - 1) // 2
    for p in range(NP):
        up = min(max(0.25 * (1 - 0.8 * (p - c) / c), 0.0), 0.5)
        drift = up * (p < NP - 1) - (0.5 - up) * (p > 0)  # a move off the grid stays
        for pos in range(3):
            expected = [(a - 1) * drift - 0.5 * abs(a - pos) for a in range(3)]
            np.testing.assert_allclose(np.asarray(q[env.encode(H - 1, p, pos)]), expected,
                                       atol=1e-6)


def test_optimal_policy_beats_buy_and_hold(default):
    """Exact expected P&L over the horizon (gamma = 1) from the mean price, flat."""
    env, params, m, q = default
    v_star = float(jaxq.start_value(m, q))
    v_hold = float(jaxq.policy_start_value(m, buy_and_hold_policy(env), 1.0))
    assert v_star == pytest.approx(2.809, abs=1e-3)
    assert v_hold == pytest.approx(-0.5, abs=1e-5)  # the cost of buying; no expected move
    # With an upward drift holding earns, and Q* still earns more.
    env, params, m, q = solve(drift=0.2)
    v_star = float(jaxq.start_value(m, q))
    v_hold = float(jaxq.policy_start_value(m, buy_and_hold_policy(env), 1.0))
    assert v_hold > 0.5 and v_star > v_hold + 1.0


def test_higher_cost_means_fewer_trades():
    """Expected trades per episode under the optimal policy, exactly (policy evaluation
    of a 1-per-trade reward); the policy keeps its position where that is optimal."""
    trades, values = [], []
    for cost in (0.0, 0.25, 0.5, 1.0, 2.0):
        env, params, m, q = solve(cost=cost)
        pi = patient_greedy_policy(env, q)
        # the patient tie-break is still optimal
        assert float(jaxq.policy_start_value(m, pi, 1.0)) == pytest.approx(
            float(jaxq.start_value(m, q)), abs=1e-4)
        trades.append(float(expected_trades(env, m, pi)))
        values.append(float(jaxq.start_value(m, q)))
        v_hold = float(jaxq.policy_start_value(m, buy_and_hold_policy(env), 1.0))
        assert v_hold == pytest.approx(-cost, abs=1e-5)
    # README's table
    np.testing.assert_allclose(values, [5.058, 3.512, 2.809, 1.658, 0.602], atol=1e-3)
    np.testing.assert_allclose(trades, [3.663, 3.471, 1.711, 1.566, 0.757], atol=2e-3)
    assert all(a > b for a, b in zip(trades, trades[1:]))
    assert all(a > b for a, b in zip(values, values[1:]))


def test_large_tables_build_at_once():
    t = time.perf_counter()
    env, params = jaxq.make("Trading-v0", horizon=4096, num_prices=1365, start="uniform")
    assert time.perf_counter() - t < 1.0
    assert env.num_states == 4096 * 1365 * 3 and env.step_tables(params) is None
    assert params.starts.shape == (1365,)  # one start per price, nothing per state
    assert params.max_steps_in_episode == 4096


def test_learned_greedy_policy_is_optimal():
    """Uniform behaviour from uniform start prices; the learned greedy policy's exact
    expected P&L equals V*."""
    kw = dict(start="uniform")
    env, params, m, q_star = solve(**kw)
    cfg = jaxq.TrainConfig(env_id="Trading-v0", env_kwargs=kw, gamma=1.0, num_envs=1024,
                           total_steps=1024 * 5000, num_chunks=1, eval_every=0, lr=0.5,
                           lr_end=0.001, epsilon=1.0, epsilon_end=1.0)
    result = jaxq.train(cfg, q_star, progress=False)
    v_star = float(jaxq.start_value(m, q_star))
    pi = jaxq.model.greedy_policy(result.q, m.valid)
    assert float(jaxq.policy_start_value(m, pi, 1.0)) >= 0.99 * v_star


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_prices=2), "num_prices"),
    (dict(horizon=0), "horizon"),
    (dict(horizon=5000, num_prices=2000), "horizon \\* num_prices"),
    (dict(cost=-1.0), "cost"),
    (dict(cost=float("nan")), "cost"),
    (dict(volatility=1.5), "volatility"),
    (dict(reversion=2.0), "reversion"),
    (dict(drift=-3.0), "drift"),
    (dict(start="random"), "start"),
    (dict(max_steps=0), "max_steps"),
    (dict(fee=1.0), "unknown keyword"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxq.make("Trading-v0", **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(horizon=2.5), "horizon"), (dict(cost="high"), "cost"),
])
def test_bad_types_are_a_clear_error(kwargs, match):
    with pytest.raises(TypeError, match=match):
        jaxq.make("Trading-v0", **kwargs)
