"""``jaxq.load_policy``: a saved run's greedy policy in an ordinary Gymnasium loop, for a
table, tile weights and a network, and ``jaxq eval --run``.

The table run is a real (tiny) ``jaxq train``; the tiles and deep runs are written the
way ``jaxq train`` / ``jaxq train-deep`` write them (``TrainConfig.to_json`` / the deep
config's ``to_json``, the weights ``q.npy``, ``deep_config.flat_params`` into
``params.npz``) with random values, so ties never hide a wrong argmax; the test checks the
policy is the greedy action of the saved values, not that anything learned.
"""

import json
import shutil

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxq
from cli_runner import error as _error
from cli_runner import run as _run
from jaxq import deep_config, networks, tiles
from jaxq.config import TrainConfig
from jaxq.training import resolve_env


def _gym_loop(policy, gym_env, values, steps=150, seed=0):
    """Roll ``policy`` out in ``gym_env``; every action valid and the argmax of
    ``values(obs)`` (the run's own values); returns the steps taken."""
    obs, _ = gym_env.reset(seed=seed)
    for t in range(steps):
        action = policy(obs)
        assert type(action) is int and gym_env.action_space.contains(action)
        v = np.asarray(values(obs))
        assert action == int(np.argmax(v)), (t, obs, v)
        np.testing.assert_allclose(policy.q_values(obs), v, rtol=1e-5, atol=1e-5)
        obs, _, terminated, truncated, _ = gym_env.step(action)
        if terminated or truncated:
            obs, _ = gym_env.reset()
    return steps


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lake"
    code, _, _ = _run(["train", "--env", "FrozenLake-v1", "--num-envs", "16", "--total-steps",
                       "2048", "--num-chunks", "1", "--eval-every", "0", "--eval-episodes",
                       "10", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def random_table_run(table_run, tmp_path_factory):
    """The table run's files with random values in q.npy (no ties)."""
    out = tmp_path_factory.mktemp("runs") / "lake_random"
    shutil.copytree(table_run, out)
    q = np.load(table_run / "q.npy")
    np.save(out / "q.npy", np.random.default_rng(0).normal(size=q.shape).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def tiles_run(tmp_path_factory):
    config = TrainConfig(env_id="CartPole-v1", q_function="tiles", num_tilings=4,
                         tiles_per_dim=4, num_envs=8, total_steps=64)
    env, params = resolve_env(config)
    coder = tiles.make_coder(env, params, config.env_id, config.tiles_per_dim,
                             config.num_tilings, config.low, config.high, config.max_tiles)
    out = tmp_path_factory.mktemp("runs") / "cartpole_tiles"
    out.mkdir()
    (out / "config.json").write_text(config.to_json())
    w = np.random.default_rng(1).normal(size=(coder.num_tiles, 2)).astype(np.float32)
    np.save(out / "q.npy", w)
    return out, coder, w


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    config = deep_config.DeepConfig(algo="pqn", env_id="CartPole-v1", width=16, depth=2)
    denv = deep_config.resolve_env(config)
    network = networks.make_network(config, denv.num_actions)
    params = jax.jit(network.init)(jax.random.key(3), jnp.zeros((denv.obs_dim,), jnp.float32))
    out = tmp_path_factory.mktemp("runs") / "cartpole_pqn"
    out.mkdir()
    (out / "config.json").write_text(config.to_json() + "\n")
    np.savez(out / "params.npz", **deep_config.flat_params(params))
    return out, network, params


def test_table_policy_runs_in_gymnasium_frozen_lake(table_run, random_table_run):
    for run_dir in (table_run, random_table_run):
        q = np.load(run_dir / "q.npy")
        policy = jaxq.load_policy(run_dir, ties="first")  # lowest index, as np.argmax
        assert policy.kind == "table" and policy.num_actions == 4
        _gym_loop(policy, gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True),
                  lambda s: q[s])


def test_random_ties_are_seeded_and_only_among_the_maxima(random_table_run):
    q = np.zeros((16, 4), np.float32)
    q[3, 2] = 1.0  # state 3 has one best action; every other state ties all four
    np.save(random_table_run / "q.npy", q)
    try:
        a = jaxq.load_policy(random_table_run, seed=7)
        b = jaxq.load_policy(random_table_run, seed=7)
        draws = [a(0) for _ in range(40)]
        assert draws == [b(0) for _ in range(40)]  # the same seed, the same actions
        assert set(draws) == {0, 1, 2, 3}  # uniform over the tied actions
        assert {a(3) for _ in range(20)} == {2}
        assert {jaxq.load_policy(random_table_run, ties="first")(0) for _ in range(5)} == {0}
    finally:
        np.save(random_table_run / "q.npy",
                np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))


def test_tiles_policy_runs_in_gymnasium_cartpole(tiles_run):
    run_dir, coder, w = tiles_run
    policy = jaxq.load_policy(run_dir)
    assert policy.kind == "tiles"
    # the run's own values: the sum of the active tiles' weights
    indices = jax.jit(coder.indices)
    _gym_loop(policy, gym.make("CartPole-v1"), lambda obs: w[np.asarray(indices(obs))].sum(0))
    with pytest.raises(ValueError, match=r"obs must have shape \[4\]"):
        policy(np.zeros(3, np.float32))


def test_deep_policy_runs_in_gymnasium_cartpole(deep_run):
    run_dir, network, params = deep_run
    policy = jaxq.load_policy(run_dir)
    assert policy.kind == "pqn"
    apply = jax.jit(network.apply)
    _gym_loop(policy, gym.make("CartPole-v1"), lambda obs: apply(params, obs))


def test_independent_learners_pick_one_table(random_table_run, tmp_path):
    d = json.loads((random_table_run / "config.json").read_text())
    d.update(learners="independent", num_envs=3)
    (tmp_path / "config.json").write_text(json.dumps(d))
    q = np.random.default_rng(2).normal(size=(3, 16, 4)).astype(np.float32)
    np.save(tmp_path / "q.npy", q)
    policy = jaxq.load_policy(tmp_path, learner=1)
    assert [policy(s) for s in range(16)] == list(np.argmax(q[1], axis=1))
    with pytest.raises(ValueError, match=r"learner must be in \[0, 2\]"):
        jaxq.load_policy(tmp_path, learner=3)


def test_eval_run_prints_the_figures_of_the_old_form(table_run, capsys):
    old = ["eval", "--env", "FrozenLake-v1", "--q", str(table_run / "q.npy"),
           "--episodes", "200", "--seed", "4"]
    code, by_q, _ = _run(old)
    assert code == 0
    figures = by_q.splitlines()[1:]
    assert len(figures) == 4 and figures[0].split()[:2] == ["mean", "return"]
    for form in (["--run", str(table_run)], [str(table_run)]):
        code, by_run, _ = _run(["eval", *form, "--episodes", "200", "--seed", "4"])
        assert code == 0 and by_run.splitlines()[1:] == figures
    err = _error(capsys, ["eval", "--run", str(table_run), "--env", "FrozenLake-v1"])
    assert "--env" in err and "--run" in err
    assert "--q" in _error(capsys, ["eval", "--env", "FrozenLake-v1"])


def test_eval_run_of_a_deep_run(deep_run):
    code, out, _ = _run(["eval", "--run", str(deep_run[0]), "--episodes", "4"])
    assert code == 0 and "CartPole-v1" in out and "(pqn)" in out
    ret = float(out.splitlines()[1].split()[-1])
    assert 1 <= ret <= 500


def _broken(src, dst, **files):
    shutil.copytree(src, dst)
    for name, content in files.items():
        if content is None:
            (dst / name).unlink()
        else:
            (dst / name).write_bytes(content)
    return dst


@pytest.mark.parametrize("files, match", [
    ({"config.json": None}, "no config.json"),
    ({"config.json": b"{not json"}, "config.json"),
    ({"config.json": b"[1, 2]"}, "config.json.* must hold a JSON object"),
    ({"config.json": json.dumps({"env_id": "FrozenLake-v1", "q_function": "lstm"}).encode()},
     r"config.json.* q_function 'lstm'.*\['table', 'tiles', 'mlp'\]"),
    # a network's config (`jaxq train --q-function mlp`) without its parameters
    ({"config.json": json.dumps({"env_id": "FrozenLake-v1", "q_function": "mlp"}).encode()},
     "params.npz.* not found"),
    ({"config.json": json.dumps({"env_id": "FrozenLake-v1", "lr": -1}).encode()},
     "config.json.* lr must be"),
    ({"q.npy": None}, "q.npy.* not found"),
    ({"q.npy": b"\x93NUMPY garbage"}, "cannot read .*q.npy"),
])
def test_a_broken_table_run_is_a_clear_error_naming_the_file(table_run, tmp_path, files,
                                                            match):
    run_dir = _broken(table_run, tmp_path / "run", **files)
    with pytest.raises(ValueError, match=match):
        jaxq.load_policy(run_dir)


def test_wrong_shapes_and_missing_files_name_the_file(table_run, deep_run, tmp_path, capsys):
    with pytest.raises(ValueError, match="not a directory"):
        jaxq.load_policy(tmp_path / "nowhere")
    bad = _broken(table_run, tmp_path / "shape")
    np.save(bad / "q.npy", np.zeros((16, 3), np.float32))
    with pytest.raises(ValueError, match=r"q.npy.* shape \[16, 3\].* \[16, 4\]"):
        jaxq.load_policy(bad)
    np.save(bad / "q.npy", np.full((16, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"q.npy.* non-finite"):
        jaxq.load_policy(bad)
    deep = _broken(deep_run[0], tmp_path / "deep", **{"params.npz": None})
    with pytest.raises(ValueError, match="params.npz.* not found"):
        jaxq.load_policy(deep)
    flat = deep_config.flat_params(deep_run[2])
    flat.pop(sorted(flat)[0])
    np.savez(deep / "params.npz", **flat)
    with pytest.raises(ValueError, match=r"params.npz.* missing \['params/Dense_0/bias'\]"):
        jaxq.load_policy(deep)
    err = _error(capsys, ["eval", str(deep)])
    assert "params.npz" in err
