"""One API for every Q-function: ``TrainConfig(q_function="table" | "tiles" | "mlp")``,
``jaxq.train``, ``make_train`` and ``jaxq train --q-function``.

What is checked: the per-Q-function defaults (``config.DEFAULTS``) fill exactly the
fields a caller left unset, the mlp row is ``DeepConfig``'s own defaults, a
q_function="mlp" config builds the ``DeepConfig`` its fields describe, ``replace``
re-derives defaults, every bad input the issue lists is one clear error naming the
field (or flag) before anything compiles, and a tiny ``jaxq train --q-function mlp``
writes a run that ``jaxq.load_policy`` and ``jaxq eval`` read.
"""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

import jaxq
from cli_runner import error as _error
from cli_runner import run as _run
from jaxq import config as config_lib
from jaxq.config import DEFAULTS, MLP_FIELDS, PER_Q_FUNCTION, TrainConfig
from jaxq.deep_config import DEEP_ALGOS, DeepConfig, DeepHParams, DeepResult
from jaxq.training import make_train

MLP = dict(env_id="CartPole-v1", q_function="mlp")


# ---- defaults ------------------------------------------------------------------------

def test_every_q_function_row_fills_every_per_q_function_field():
    for qf in config_lib.Q_FUNCTIONS:
        assert set(PER_Q_FUNCTION) <= set(DEFAULTS[(qf, None)]), qf
    for (qf, env_id), row in DEFAULTS.items():
        assert qf in config_lib.Q_FUNCTIONS
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        for name in row:  # only fields the dataclass leaves unset can take a default
            assert fields[name].default is None, (qf, env_id, name)


def test_mlp_row_is_deepconfigs_defaults():
    """`jaxq train --q-function mlp` and `jaxq train-deep` train the same network."""
    assert config_lib.MLP_ALGOS == DEEP_ALGOS
    deep = {f.name: f.default for f in dataclasses.fields(DeepConfig)}
    row = DEFAULTS[("mlp", None)]
    for name, value in row.items():
        if name == "eval_every":  # a network evaluates at the end of every chunk
            assert value == 1
            continue
        want = deep["algo" if name == "deep_algo" else name]
        assert value == want and type(value) is type(want), (name, value, want)
    assert set(MLP_FIELDS) <= set(row)
    # an env without a row of its own (CartPole-v1, Acrobot-v1, Breakout-MinAtar have one)
    assert DeepConfig(env_id="MountainCar-v0") == TrainConfig(
        env_id="MountainCar-v0", q_function="mlp").deep_config()


def test_defaults_fill_only_unset_fields():
    table = TrainConfig()
    assert (table.num_envs, table.total_steps, table.lr, table.lr_schedule) == (
        1024, 20_000_000, 0.1, "linear")
    assert table.defaults_applied() == DEFAULTS[("table", None)]
    assert all(getattr(table, name) is None for name in MLP_FIELDS)

    mlp = TrainConfig(env_id="MountainCar-v0", q_function="mlp", lr=1e-3)  # the mlp row
    assert (mlp.num_envs, mlp.total_steps, mlp.lr, mlp.lr_schedule, mlp.eval_every) == (
        32, 512_000, 1e-3, "constant", 1)
    assert "lr" not in mlp.defaults_applied() and mlp.defaults_applied()["num_envs"] == 32
    # then the (mlp, env id) row over it, for the fields still unset
    cartpole = TrainConfig(**MLP, num_epochs=3)
    assert (cartpole.num_envs, cartpole.rollout_len, cartpole.num_epochs, cartpole.lr,
            cartpole.lr_schedule, cartpole.width) == (64, 32, 3, 1e-3, "linear", 128)
    assert "num_epochs" not in cartpole.defaults_applied()
    assert cartpole.defaults_applied()["num_minibatches"] == 4
    # the other algorithm's settings stay unset: config.json shows what the run uses
    assert (mlp.deep_algo, mlp.q_lambda, mlp.buffer_size, mlp.double_q) == (
        "pqn", 0.65, None, None)
    dqn = TrainConfig(**MLP, deep_algo="dqn")
    assert (dqn.q_lambda, dqn.rollout_len, dqn.buffer_size, dqn.double_q) == (
        None, None, 10_000, True)

    car = TrainConfig(env_id="MountainCar-v0", q_function="tiles")  # the env's own row
    assert (car.num_envs, car.total_steps, car.lr) == (256, 4_096_000, 0.1)
    assert car.plan()["env_steps"] == car.total_steps and mlp.plan()["env_steps"] == 512_000
    assert TrainConfig(env_id="MountainCar-v0", q_function="tiles", num_envs=64).num_envs == 64


def test_replace_rederives_defaults_and_json_round_trips():
    car = TrainConfig(env_id="MountainCar-v0", q_function="tiles", seed=3)
    net = car.replace(q_function="mlp")
    assert (net.num_envs, net.lr, net.seed) == (32, 3e-4, 3)  # mlp's, and the given seed
    assert car.replace(env_id="CartPole-v1").num_envs == 1024  # no row for CartPole tiles
    assert car.replace(num_envs=64).num_envs == 64
    for cfg in (TrainConfig(), car, net, TrainConfig(**MLP, deep_algo="dqn", tau=0.5)):
        again = TrainConfig.from_dict(json.loads(cfg.to_json()))
        assert again == cfg and again.to_json() == cfg.to_json()
        assert again.defaults_applied() == {}  # every value given, as config.json has it


def test_mlp_config_maps_onto_deep_config():
    cfg = TrainConfig(env_id="Acrobot-v1", q_function="mlp", deep_algo="dqn", num_envs=8,
                      total_steps=20_000, seed=4, gamma=0.95, lr=1e-4, lr_schedule="linear",
                      epsilon_end=0.1, epsilon_decay_fraction=0.3, width=32, depth=3,
                      layer_norm=False, buffer_size=2_000, batch_size=64, learning_starts=100,
                      train_every=2, target_update_every=50, tau=0.5, double_q=False,
                      num_chunks=4, eval_episodes=10, eval_max_steps=300)
    assert cfg.deep_config() == DeepConfig(
        algo="dqn", env_id="Acrobot-v1", num_envs=8, total_steps=20_000, seed=4, gamma=0.95,
        lr=1e-4, lr_schedule="linear", epsilon_end=0.1, epsilon_decay_fraction=0.3,
        width=32, depth=3, layer_norm=False, buffer_size=2_000, batch_size=64,
        learning_starts=100, train_every=2, target_update_every=50, tau=0.5,
        double_q=False, num_chunks=4, eval_episodes=10, eval_max_steps=300)
    assert cfg.plan() == cfg.deep_config().plan()
    assert isinstance(cfg.hparams(), DeepHParams) and float(cfg.hparams().tau) == 0.5
    with pytest.raises(ValueError, match="deep_config\\(\\) needs q_function='mlp'"):
        TrainConfig().deep_config()
    # the strategies reach the network's run too (PQN: replicated gradients, stale actors)
    stale = TrainConfig(**MLP, strategy="async", sync_every=4, num_devices=1).deep_config()
    assert (stale.strategy, stale.sync_every, stale.num_devices) == ("async", 4, 1)


def test_make_train_of_an_mlp_config_is_the_networks_pure_train():
    cfg = TrainConfig(**MLP, num_envs=2, total_steps=64, width=4, depth=1, rollout_len=4,
                      num_minibatches=2, num_chunks=2, eval_episodes=2)
    train = make_train(cfg)
    out = jax.eval_shape(jax.vmap(train), jax.random.split(jax.random.key(0), 3))
    assert out.params["params"]["Dense_0"]["kernel"].shape == (3, 4, 4)  # seeds x obs x width
    assert out.metrics["eval_return"].shape == (3, 2)
    with pytest.raises(ValueError, match="q_star and init_q are"):
        make_train(cfg, q_star=np.zeros((2, 2), np.float32))


# ---- bad input: each one error, naming the field, before anything compiles -------------

@pytest.mark.parametrize("kw, match", [
    (dict(**MLP, width=0), "width must be >= 1, got 0"),
    (dict(**MLP, width=-4), "width must be >= 1, got -4"),
    (dict(**MLP, depth=0), "depth must be >= 1, got 0"),
    (dict(**MLP, deep_algo="dqn", buffer_size=64, batch_size=128),
     r"buffer_size \(64\) must be >= batch_size \(128\)"),
    (dict(**MLP, q_lambda=1.5), r"q_lambda must be in \[0.0, 1.0\], got 1.5"),
    (dict(**MLP, q_lambda=-0.1), r"q_lambda must be in \[0.0, 1.0\], got -0.1"),
    (dict(**MLP, deep_algo="a2c"), r"deep_algo must be one of \['pqn', 'dqn'\]"),
    # the other algorithm's settings
    (dict(**MLP, buffer_size=1000), "buffer_size needs deep_algo='dqn'; "
                                    "deep_algo='pqn' does not use it"),
    (dict(**MLP, deep_algo="dqn", q_lambda=0.5), "q_lambda needs deep_algo='pqn'"),
    # table and tiles settings given to a network
    (dict(**MLP, bins=6), "bins needs q_function 'table' \\(it discretizes"),
    (dict(**MLP, low=-1.0), "low needs q_function 'table' or 'tiles'"),
    (dict(**MLP, num_tilings=4), "num_tilings needs q_function 'tiles'; q_function='mlp' feeds"),
    (dict(**MLP, algo="sarsa"), "algo='sarsa' has no effect with q_function='mlp'"),
    (dict(**MLP, n_step=3), "n_step=3 has no effect with q_function='mlp'.*q_lambda"),
    (dict(**MLP, q_init=1.0), "q_init=1.0 has no effect with q_function='mlp'"),
    (dict(**MLP, eval_every=5), "eval_every=5 has no effect with q_function='mlp'"),
    (dict(**MLP, learners="independent"), "learners='independent' has no effect"),
    (dict(**MLP, lr_decay_fraction=0.5), "lr_decay_fraction=0.5 has no effect"),
    (dict(**MLP, strategy="sharded"), r"strategy must be one of \['single', 'replicated'"),
    (dict(**MLP, deep_algo="dqn", batch_size=100),
     r"batch_size \(100\) must be divisible by num_envs \(64\)"),
    # network settings given to a table or tiles
    (dict(width=64), "width needs q_function='mlp'.*q_function='table' has none"),
    (dict(env_id="MountainCar-v0", q_function="tiles", q_lambda=0.9),
     "q_lambda needs q_function='mlp'"),
    (dict(deep_algo="dqn"), "deep_algo needs q_function='mlp'"),
    (dict(q_function="lstm"), r"q_function must be one of \['table', 'tiles', 'mlp'\]"),
])
def test_bad_config(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**kw)


@pytest.mark.filterwarnings("ignore:total_steps=20000000 rounded up")
def test_bad_input_of_training_before_compiling(monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("compiled before refusing the input")

    monkeypatch.setattr(jax.stages.Lowered, "compile", no_compile)
    # a continuous env for a table, without bins
    with pytest.raises(ValueError, match="CartPole-v1 is continuous; pass bins"):
        jaxq.train(TrainConfig(env_id="CartPole-v1"), progress=False)
    # a network given a table's arguments, or a checkpoint file not in a run directory
    tiny = TrainConfig(**MLP, num_envs=2, total_steps=64, width=4, depth=1)
    with pytest.raises(ValueError, match="q_star is an \\[S, A\\] table"):
        jaxq.train(tiny, np.zeros((2, 2), np.float32), progress=False)
    with pytest.raises(ValueError, match="checkpoint_path of a q_function='mlp' run must be "
                                         "DIR/checkpoint.npz"):
        jaxq.train(tiny, checkpoint_path="x.npz", checkpoint_every=1, progress=False)
    # an env with continuous actions
    with pytest.raises(ValueError, match="Discrete actions"):
        jaxq.train(TrainConfig(env_id="Pendulum-v1", q_function="mlp"), progress=False)


@pytest.mark.parametrize("argv, match", [
    (["--width", "0"], "--width must be >= 1, got 0"),
    (["--q-lambda", "2"], r"--q-lambda must be in \[0.0, 1.0\], got 2"),
    (["--deep-algo", "dqn", "--buffer-size", "64"],
     r"--buffer-size \(64\) must be >= --batch-size \(128\)"),
    (["--bins", "6"], "--bins needs --q-function 'table'"),
    (["--n-step", "2"], "--n-step=2 has no effect with --q-function='mlp'"),
    (["--deep-algo", "sac"], r"--deep-algo must be one of \['pqn', 'dqn'\]"),
    (["--strategy", "sharded"], r"--strategy must be one of \['single', 'replicated'"),
    (["--coordinator", "localhost:1234"], "--coordinator trains a table or tiles"),
    # (the last --q-function wins) a table on a continuous env without bins
    (["--q-function", "table"], "CartPole-v1 is continuous; pass --bins.*; or --q-function "
                                "tiles or mlp, which learn from the observation vector"),
])
def test_cli_bad_input_writes_nothing(capsys, tmp_path, argv, match):
    import re

    out = tmp_path / "run"
    err = _error(capsys, ["train", "--env", "CartPole-v1", "--q-function", "mlp",
                          "--out", str(out)] + argv)
    assert re.search(match, err), err
    assert not out.exists()
    err = _error(capsys, ["train", "--width", "8", "--out", str(out)])
    assert "--width needs --q-function='mlp'" in err


def test_cli_help_says_defaults_per_q_function(capsys):
    from jaxq.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default by q-function: table 1024, tiles 1024 (MountainCar-v0 256), mlp 32" in text
    assert "--deep-algo NAME" in text and "one of pqn, dqn" in text


# ---- a whole tiny run through the CLI ------------------------------------------------

def test_cli_train_mlp_writes_a_run_load_policy_reads(tmp_path, capsys):
    out = tmp_path / "pqn"
    code, stdout, stderr = _run(
        ["train", "--env", "CartPole-v1", "--q-function", "mlp", "--num-envs", "4",
         "--total-steps", "256", "--width", "8", "--depth", "1", "--rollout-len", "8",
         "--num-minibatches", "2", "--num-chunks", "2", "--eval-episodes", "3",
         "--eval-max-steps", "50", "--no-progress", "--out", str(out)])
    assert code == 0, stderr
    # the defaults it took, said on stderr and recorded (config.json holds every value)
    assert "defaults for --q-function mlp on CartPole-v1: --lr 0.001" in stderr
    assert "--deep-algo pqn" in stderr and "--layer-norm true" in stderr
    assert "greedy mean return" in stdout and f"wrote config.json, params.npz" in stdout
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert (config.q_function, config.deep_algo, config.lr, config.width) == (
        "mlp", "pqn", 1e-3, 8)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["about"]["defaults"]["lr"] == 1e-3 and "width" not in metrics["about"][
        "defaults"]
    assert len(metrics["history"]["eval_return"]) == 2
    assert metrics["final_evaluation"]["trained"]["mean_return"] == \
        metrics["history"]["eval_return"][-1]
    assert set(os.listdir(out)) >= {"config.json", "params.npz", "metrics.json"}

    policy = jaxq.load_policy(str(out))
    assert policy.kind == "pqn" and policy.config == config.deep_config()
    obs = np.array([0.01, -0.02, 0.03, 0.04], np.float32)
    assert policy(obs) == int(np.argmax(policy.q_values(obs)))
    code, stdout, _ = _run(["eval", str(out), "--episodes", "3", "--max-steps", "50"])
    assert code == 0 and "(pqn)" in stdout
    # jaxq plot redraws the learning curve of a network's run
    (out / "learning_curve.png").unlink(missing_ok=True)
    code, stdout, _ = _run(["plot", str(out)])
    assert code == 0 and (out / "learning_curve.png").stat().st_size > 0
    # the same --out again: refused before anything runs (it holds a run)
    err = _error(capsys, ["train", "--env", "CartPole-v1", "--q-function", "mlp",
                          "--out", str(out)])
    assert "already holds a run (config.json, params.npz, metrics.json" in err


def test_train_mlp_resumes_bit_for_bit(tmp_path):
    """jaxq.train's checkpoint arguments reach the network's chunked run: interrupted
    after one chunk and resumed, it ends where the uninterrupted run does."""
    cfg = TrainConfig(**MLP, num_envs=4, total_steps=192, width=8, depth=1, rollout_len=8,
                      num_minibatches=2, num_chunks=3, eval_episodes=2, eval_max_steps=20)
    cache, rows = str(tmp_path / "xla"), []
    full = jaxq.train(cfg, progress=False, compile_cache=cache,
                      callback=lambda i, row: rows.append((i, row["env_steps"])))
    assert isinstance(full, DeepResult) and full.train_config is cfg
    assert full.config == cfg.deep_config()
    assert rows == [(i + 1, int(full.metrics["env_steps"][i])) for i in range(3)]
    ckpt = str(tmp_path / "run" / "checkpoint.npz")
    os.makedirs(tmp_path / "run")
    jaxq.train(cfg, progress=False, compile_cache=cache, checkpoint_path=ckpt,
               checkpoint_every=1, stop_after_chunks=1)
    resumed = jaxq.train(cfg, progress=False, compile_cache=cache, checkpoint_path=ckpt,
                         checkpoint_every=1, resume=True)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.metrics["eval_return"], resumed.metrics["eval_return"])


def test_a_table_checkpoint_resumed_as_a_network_is_refused(tmp_path, capsys):
    """--resume of a table's run with --q-function mlp: one error naming the
    Q-functions, before anything is written (the table's files stay)."""
    out = tmp_path / "run"
    code, _, stderr = _run(["train", "--env", "CartPole-v1", "--bins", "3", "--num-envs", "4",
                            "--total-steps", "64", "--num-chunks", "2", "--eval-every", "0",
                            "--eval-episodes", "2", "--checkpoint-every", "1", "--no-progress",
                            "--no-compile-cache", "--out", str(out)])
    assert code == 0, stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    err = _error(capsys, ["train", "--env", "CartPole-v1", "--q-function", "mlp", "--resume",
                          "--no-progress", "--out", str(out)])
    assert "holds a run of --q-function='table'" in err and "this run is --q-function='mlp'" \
        in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
