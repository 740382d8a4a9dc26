"""Shared checks of jaxq environments against ground truth (Gymnasium's P, the model)."""

from __future__ import annotations

from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jaxq.envs.base import TabularState


def gymnasium_dense(gym_env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(P[S,A,S'], R[S,A], P_term[S,A,S'])`` from Gymnasium's ``env.unwrapped.P``,
    duplicates summed and rewards as expectations."""
    P = gym_env.unwrapped.P
    S = len(P)
    A = len(P[0])
    p = np.zeros((S, A, S))
    pt = np.zeros((S, A, S))
    r = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for prob, ns, rew, term in P[s][a]:
                p[s, a, ns] += prob
                pt[s, a, ns] += prob * bool(term)
                r[s, a] += prob * rew
    return p, r, pt


def assert_model_equals_gymnasium(model, gym_env, atol: float = 1e-6) -> None:
    gp, gr, gt = gymnasium_dense(gym_env)
    p, r, pt = model.dense()
    assert p.shape == gp.shape, (p.shape, gp.shape)
    np.testing.assert_allclose(p, gp, atol=atol, err_msg="P(s'|s,a) differs")
    np.testing.assert_allclose(r, gr, atol=atol * max(1.0, np.abs(gr).max()),
                               err_msg="expected reward differs")
    np.testing.assert_allclose(pt, gt, atol=atol, err_msg="termination differs")


def assert_step_matches_model(env, params, model, pairs, n: int = 20_000, seed: int = 0,
                              min_pvalue: float = 1e-3) -> None:
    """For each (s, a): ``n`` sampled steps agree with the model's outcome distribution
    over (next state, reward, terminated), by a chi-square goodness-of-fit test (fixed
    seed, so the test is deterministic), and nothing outside the model's support occurs."""
    keys = jax.random.split(jax.random.key(seed), n)

    @jax.jit
    def sample(s, a):
        state = TabularState(time=jnp.int32(0), s=jnp.int32(s))
        _, _, rew, term, _, info = jax.vmap(lambda k: env.step(k, state, a, params))(keys)
        return info["final_observation"], rew, term

    ns_m, pr_m = np.asarray(model.next_state), np.asarray(model.prob, np.float64)
    rw_m, tm_m = np.asarray(model.reward), np.asarray(model.terminated)
    for s, a in pairs:
        expected = defaultdict(float)
        for k in range(ns_m.shape[-1]):
            if pr_m[s, a, k] > 0:
                expected[(int(ns_m[s, a, k]), float(rw_m[s, a, k]), bool(tm_m[s, a, k]))] += pr_m[s, a, k]
        ns, rew, term = (np.asarray(x) for x in sample(s, a))
        observed = defaultdict(int)
        for key in zip(ns.tolist(), rew.tolist(), term.tolist()):
            observed[(int(key[0]), float(key[1]), bool(key[2]))] += 1
        outside = set(observed) - set(expected)
        assert not outside, f"(s={s}, a={a}) sampled outcomes outside the model: {outside}"
        cells = sorted(expected)
        if len(cells) == 1:
            continue
        f_obs = np.array([observed[c] for c in cells], dtype=np.float64)
        f_exp = np.array([expected[c] for c in cells]) * n
        f_exp *= f_obs.sum() / f_exp.sum()
        p = stats.chisquare(f_obs, f_exp).pvalue
        assert p > min_pvalue, f"(s={s}, a={a}) chi-square p={p:.2e}: {dict(observed)} vs {dict(expected)}"


def gymnasium_q_star(gym_env, gamma: float, tol: float = 1e-12,
                     max_iters: int = 100_000) -> np.ndarray:
    """Independent ground truth: Q* by value iteration in float64 on Gymnasium's own
    ``P`` (no jaxq code involved), to ``max|Q_k+1 - Q_k| < tol``."""
    p, r, pt = gymnasium_dense(gym_env)
    cont = gamma * (p - pt)  # no bootstrap after a terminating transition
    q = np.zeros_like(r)
    for _ in range(max_iters):
        new = r + cont @ q.max(1)
        if np.abs(new - q).max() < tol:
            return new
        q = new
    raise AssertionError(f"value iteration did not reach tol={tol} in {max_iters} sweeps")


def gymnasium_policy_value(gym_env, policy, gamma: float) -> np.ndarray:
    """V^pi for a deterministic ``policy[s]`` on Gymnasium's ``P``, by a linear solve
    (gamma = 1 is fine for a policy that ends every episode)."""
    p, r, pt = gymnasium_dense(gym_env)
    S = len(policy)
    rows = np.arange(S)
    cont = gamma * (p - pt)[rows, policy]
    return np.linalg.solve(np.eye(S) - cont, r[rows, policy])


def gymnasium_start_value(gym_env, v) -> float:
    """The expected value of ``v`` under Gymnasium's initial state distribution."""
    return float(np.asarray(gym_env.unwrapped.initial_state_distrib, np.float64) @ v)


def gymnasium_success_within(gym_env, policy, horizon: int) -> float:
    """The probability that deterministic ``policy[s]`` ends an episode with a positive
    reward within ``horizon`` steps (a time limit), from Gymnasium's initial
    distribution, by dynamic programming on Gymnasium's ``P``."""
    P = gym_env.unwrapped.P
    S = len(P)
    win = np.zeros(S)  # P(success within k steps from s), k = 0
    for _ in range(horizon):
        new = np.zeros(S)
        for s in range(S):
            for prob, ns, rew, term in P[s][int(policy[s])]:
                new[s] += prob * ((rew > 0) if term else win[ns])
        win = new
    return gymnasium_start_value(gym_env, win)
