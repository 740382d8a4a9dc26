"""Deep Q-learning end to end (slow: whole compiled runs): PQN learns CartPole well above
a random policy, a DQN run's target network is a copy of the online one after a multiple
of C gradient steps, ``jaxq train-deep`` writes its run and refuses bad flags before
writing anything, and ``experiments/deep.py --quick`` writes its results and section."""

import json

import jax
import numpy as np

import experiment_modules
from cli_runner import error, run
from jaxq import dqn, pqn
from jaxq.deep_config import DeepConfig

TINY = dict(env_id="CartPole-v1", num_envs=4, width=8, depth=1, num_chunks=2,
            eval_episodes=2, eval_max_steps=10)


def test_pqn_learns_cartpole_well_above_random():
    # a uniformly random policy keeps the pole up ~22 steps; PQN's defaults, 150k steps
    config = DeepConfig(algo="pqn", total_steps=150_000, num_chunks=5, eval_episodes=20)
    out = jax.jit(pqn.make_train_pqn(config))(jax.random.key(0))
    ev = np.asarray(out.metrics["eval_return"])
    assert ev.max() >= 150 and ev[-1] >= 100, ev


def test_dqn_target_equals_online_after_a_multiple_of_c_gradient_steps():
    # 4 envs, batch 4, learning from the first step: one gradient step per iteration,
    # 10 iterations = 10 gradient steps; C = 5 divides it, so the target is a copy
    config = DeepConfig(algo="dqn", total_steps=40, buffer_size=16, batch_size=4,
                        learning_starts=0, target_update_every=5, **TINY)
    out = jax.jit(dqn.make_train_dqn(config))(jax.random.key(0))
    assert np.asarray(out.metrics["gradient_steps"]).tolist() == [5, 10]
    for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(out.target_params)):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(np.asarray(out.metrics["loss"])))


def test_train_deep_cli_writes_the_run_and_refuses_bad_flags(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(["train-deep", "--algo", "pqn", "--env", "CartPole-v1",
                           "--num-envs", "4", "--total-steps", "32", "--rollout-len", "4",
                           "--num-minibatches", "2", "--num-epochs", "1", "--width", "8",
                           "--depth", "1", "--num-chunks", "2", "--eval-episodes", "2",
                           "--eval-max-steps", "10", "--out", str(out)])
    assert code == 0 and "wrote config.json, params.npz, metrics.json" in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["history"]["env_steps"] == [16, 32]
    assert json.loads((out / "config.json").read_text())["rollout_len"] == 4
    params = np.load(out / "params.npz")
    assert params["params/Dense_0/kernel"].shape == (4, 8)
    assert "--q-lambda must be in [0.0, 1.0]" in error(
        capsys, ["train-deep", "--q-lambda", "2", "--out", str(tmp_path / "x")])
    assert "--buffer-size (8) must be >= --batch-size" in error(
        capsys, ["train-deep", "--algo", "dqn", "--buffer-size", "8", "--out",
                 str(tmp_path / "y")])
    assert "already holds a run" in error(capsys, ["train-deep", "--out", str(out)])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_experiment_runs_and_writes_its_section(tmp_path):
    exp = experiment_modules.load("deep")
    results = exp.main(["--quick", "--out", str(tmp_path)], log=lambda *_: None)
    stored = json.loads((tmp_path / "results" / "deep" / "results.json").read_text())
    rec = stored["records"][0]
    assert stored["config"]["seeds"] == 2 and len(rec["eval_return"]) == 2
    assert len(rec["env_steps"]) == 2 and rec["steps_per_s"] > 0
    assert results["records"][0]["env_steps"] == rec["env_steps"]
    assert "PQN on CartPole-v1" in (tmp_path / "BENCHMARKS.md").read_text()


def test_pqn_vmaps_over_hyperparameters():
    # lr, gamma, epsilon and lambda as vmap axes of one call == the configs run alone
    config = DeepConfig(algo="pqn", total_steps=64, rollout_len=4, num_minibatches=2,
                        num_epochs=1, **TINY)
    settings = [dict(lr=1e-3, gamma=0.9, epsilon=0.5, q_lambda=0.0),
                dict(lr=3e-4, gamma=0.99, epsilon=1.0, q_lambda=0.9)]
    hp0 = config.hparams()
    hps = jax.tree.map(lambda *xs: jax.numpy.stack(xs),
                       *[hp0.replace(**{k: jax.numpy.float32(v) for k, v in s.items()})
                         for s in settings])
    key = jax.random.key(1)
    both = jax.jit(jax.vmap(pqn.make_train_pqn(config), in_axes=(None, 0)))(key, hps)
    for i, s in enumerate(settings):
        alone = jax.jit(pqn.make_train_pqn(config.replace(**s)))(key)
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(both.params)):
            np.testing.assert_allclose(a, b[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(alone.metrics["episodes"], both.metrics["episodes"][i])
