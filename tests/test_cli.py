"""The command line, run in-process through ``main(argv)`` on tiny sizes."""

import dataclasses
import io
import json
import subprocess
import sys
from contextlib import redirect_stderr

import jax
import jaxlib
import numpy as np
import pytest

import jaxq
from jaxq import cli
from cli_runner import error as _error, run as _run
from jaxq.cli import main, parse_env_kwargs
from jaxq.config import TrainConfig

TINY = ["--num-envs", "8", "--total-steps", "1600", "--num-chunks", "4", "--eval-every", "2",
        "--eval-episodes", "20", "--seed", "3", "--no-progress"]
LAKE_8X8 = ["--env", "FrozenLake-v1", "--env-kwarg", "map_name=8x8",
            "--env-kwarg", "is_slippery=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny training run on deterministic FrozenLake 8x8, into a new nested directory."""
    out = tmp_path_factory.mktemp("cli") / "new" / "nested"
    code, stdout, _ = _run(["train", *LAKE_8X8, *TINY, "--out", str(out)])
    assert code == 0
    return out, stdout


def test_train_writes_the_four_outputs(run):
    out, stdout = run
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "learning_curve.png", "metrics.json", "policy.png", "q.npy"]
    q = np.load(out / "q.npy")
    assert q.dtype == np.float32 and q.shape == (64, 4)  # map_name=8x8 reached the env
    m = json.loads((out / "metrics.json").read_text(),
                   parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    h = m["history"]
    assert h["env_steps"] == [400, 800, 1200, 1600]
    assert all(len(v) == 4 for v in h.values())
    assert h["eval_return"][0] is None and h["eval_return"][1] is not None  # NaN -> null
    assert {"compile_s", "run_s", "steps_per_s"} <= set(m["timings"])
    assert m["summary"]["env_steps"] == 1600 and m["summary"]["episodes"] == h["episodes"][-1]
    # Q* was passed to training: the tracked error is the final max|Q - Q*|
    final = m["final_evaluation"]
    assert final["episodes"] == 20
    assert h["q_error"][-1] == pytest.approx(final["max_abs_q_error"], rel=1e-6)
    assert final["optimal"]["success_rate"] == 1.0  # deterministic 8x8: Q* always succeeds
    assert final["optimal"]["mean_length"] == 14.0
    for row in ("env steps", "episodes", "wall time", "steps/s", "greedy success rate",
                "optimal (Q*)", "max|Q - Q*|"):
        assert row in stdout


def test_config_json_round_trips(run):
    out, _ = run
    cfg = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert cfg == TrainConfig(
        env_id="FrozenLake-v1", env_kwargs={"map_name": "8x8", "is_slippery": False},
        num_envs=8, total_steps=1600, num_chunks=4, eval_every=2, eval_episodes=20, seed=3)


def test_eval_of_q_star_succeeds_always(tmp_path):
    env, params = jaxq.make("FrozenLake-v1", map_name="8x8", is_slippery=False)
    q_star = jaxq.value_iteration(jaxq.tabular_model(env, params), 0.99)
    np.save(tmp_path / "q.npy", np.asarray(q_star))
    code, stdout, _ = _run(["eval", *LAKE_8X8, "--q", str(tmp_path / "q.npy"), "--episodes", "10"])
    assert code == 0 and "success rate  1.000" in stdout and "mean length   14.0" in stdout


def test_eval_caps_episodes_without_a_time_limit(tmp_path):
    """CliffWalking never truncates: a policy that walks into the wall forever must stop."""
    q = np.zeros((48, 4), np.float32)
    q[:, 0] = 1.0  # always "up"
    np.save(tmp_path / "q.npy", q)
    code, stdout, _ = _run(["eval", "--env", "CliffWalking-v1", "--q", str(tmp_path / "q.npy"),
                            "--episodes", "5", "--max-steps", "25"])
    assert code == 0
    assert "mean return   -25.0000" in stdout and "finished      0.000" in stdout


def test_train_on_cliff_walking_evaluates_with_a_step_cap(tmp_path):
    code, stdout, _ = _run(["train", "--env", "CliffWalking-v1", "--num-envs", "4",
                            "--total-steps", "80", "--num-chunks", "2", "--eval-every", "0",
                            "--eval-episodes", "5", "--eval-max-steps", "30", "--no-progress",
                            "--out", str(tmp_path)])
    assert code == 0
    final = json.loads((tmp_path / "metrics.json").read_text())["final_evaluation"]
    assert final["trained"]["mean_length"] <= 30
    assert final["optimal"] == {"mean_return": -13.0, "success_rate": 1.0, "mean_length": 13.0,
                                "finished": 1.0}
    # no periodic evaluation: the one final evaluation ran after training with key(seed),
    # so `jaxq eval` of the saved table with the same seed and sizes reproduces it
    assert final["source"] == "after training, key(seed)"
    code, stdout, _ = _run(["eval", "--env", "CliffWalking-v1", "--q", str(tmp_path / "q.npy"),
                            "--episodes", "5", "--max-steps", "30", "--seed", "0"])
    assert code == 0
    assert f"mean return   {final['trained']['mean_return']:.4f}" in stdout
    assert f"mean length   {final['trained']['mean_length']:.1f}" in stdout
    assert f"finished      {final['trained']['finished']:.3f}" in stdout


def test_independent_tables_are_saved_whole(tmp_path):
    code, _, _ = _run(["train", "--learners", "independent", "--num-envs", "3",
                       "--total-steps", "300", "--num-chunks", "1", "--eval-every", "0",
                       "--eval-episodes", "5", "--no-progress", "--out", str(tmp_path)])
    assert code == 0
    assert np.load(tmp_path / "q.npy").shape == (3, 16, 4)
    code, stdout, _ = _run(["eval", "--env", "FrozenLake-v1", "--q", str(tmp_path / "q.npy"),
                            "--learner", "2", "--episodes", "5"])
    assert code == 0 and "success rate" in stdout
    with pytest.raises(SystemExit), redirect_stderr(io.StringIO()) as err:
        main(["eval", "--env", "FrozenLake-v1", "--q", str(tmp_path / "q.npy"), "--learner", "3"])
    assert "--learner must be in [0, 2]" in err.getvalue()


def test_env_kwarg_values_are_json_where_they_parse():
    assert parse_env_kwargs(["map_name=8x8", "is_slippery=false", "success_rate=0.5", "size=8",
                             'desc=["SF","FG"]', "seed=null", "name=a=b"]) == {
        "map_name": "8x8", "is_slippery": False, "success_rate": 0.5, "size": 8,
        "desc": ["SF", "FG"], "seed": None, "name": "a=b"}


def test_every_config_field_has_a_flag_with_the_library_default():
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {s for a in train._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert cli._flag(f.name) in flags or f.name == "env_kwargs", f.name
    assert "--env" in flags and "--env-kwarg" in flags
    args = parser.parse_args(["train", "--out", "x"])
    assert cli.config_from_args(args) == TrainConfig()  # defaults come from TrainConfig
    args = parser.parse_args(["train", "--out", "x", "--total-steps", "1e6", "--bins", "[6,6,8,8]",
                              "--lr-schedule", "visit", "--q-init", "1"])
    cfg = cli.config_from_args(args)
    assert (cfg.total_steps, cfg.bins, cfg.lr_schedule, cfg.q_init) == (
        10**6, [6, 6, 8, 8], "visit", 1.0)


@pytest.mark.parametrize("argv, match", [
    (["--algo", "dqn"],
     "--algo must be one of ['q_learning', 'sarsa', 'expected_sarsa', 'double_q'], got 'dqn'"),
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--num-envs", "2.5"], "--num-envs must be an int, got float 2.5"),
    (["--gamma", "2"], "--gamma must be in [0.0, 1.0], got 2.0"),
    (["--gamma", "abc"], "--gamma must be a number, got str 'abc'"),
    (["--env", "FrozenLake-v9"], "unknown --env 'FrozenLake-v9'. Did you mean 'FrozenLake-v1'"),
    (["--env-kwarg", "map_name"], "--env-kwarg must be KEY=VALUE"),
    (["--env-kwarg", "=8x8"], "--env-kwarg must be KEY=VALUE"),
    (["--env-kwarg", "a=1", "--env-kwarg", "a=2"], "--env-kwarg a given twice"),
    (["--env-kwarg", "nope=1"], "unknown keyword argument(s) ['nope'] for 'FrozenLake-v1'"),
    (["--env-kwarg", "is_slippery=maybe"], "is_slippery must be a bool"),
    (["--env", "CartPole-v1"], "pass --bins"),
    (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be an int >= 0"),
])
def test_bad_train_arguments_are_one_line_errors(tmp_path, capsys, argv, match):
    err = _error(capsys, ["train", *argv, *_small(argv), "--out", str(tmp_path / "o"),
                          "--no-progress"])
    assert match in err


def _small(argv):
    """Tiny-run flags for those not under test, so a valid call would finish fast."""
    small = {"--num-envs": "4", "--total-steps": "40", "--num-chunks": "1", "--eval-every": "0"}
    return [x for k, v in small.items() if k not in argv for x in (k, v)]


def test_out_that_is_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert "--out" in _error(capsys, ["train", "--out", str(tmp_path / "f" / "d")])


@pytest.mark.parametrize("table, match", [
    (np.zeros((15, 4), np.float32), "--q must have shape [16, 4], got [15, 4]"),
    (np.zeros((16, 4), np.int32), "--q must be a float array, got dtype int32"),
    (np.zeros((16, 4), bool), "--q must be a float array, got dtype bool"),
    (np.zeros((2, 3, 16, 4), np.float32), "--q must have shape [16, 4], got [2, 3, 16, 4]"),
    (b"garbage bytes, not a .npy file", "cannot read --q"),
    (None, "cannot read --q"),  # missing file
])
def test_bad_tables_for_eval_are_one_line_errors(tmp_path, capsys, table, match):
    path = tmp_path / "q.npy"
    if isinstance(table, bytes):
        path.write_bytes(table)
    elif table is not None:
        np.save(path, table)
    assert match in _error(capsys, ["eval", "--env", "FrozenLake-v1", "--q", str(path)])


def test_npz_archive_for_eval_is_an_error(tmp_path, capsys):
    np.savez(tmp_path / "q.npz", q=np.zeros((16, 4), np.float32))
    err = _error(capsys, ["eval", "--env", "FrozenLake-v1", "--q", str(tmp_path / "q.npz")])
    assert "expected a .npy array" in err


def test_envs_lists_every_registered_id():
    code, stdout, _ = _run(["envs"])
    assert code == 0
    for spec in jaxq.envs.env_specs():
        assert f"{spec.env_id}  " in stdout and spec.description in stdout


def test_bench_without_the_bench_module_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jaxq.bench", None)  # as if the module did not exist
    assert main(["bench"]) == 1
    assert "no jaxq.bench module" in capsys.readouterr().err


def test_python_dash_m_jaxq_help():
    p = subprocess.run([sys.executable, "-m", "jaxq", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "train" in p.stdout and "eval" in p.stdout


# ---- metrics.json says what it is (the run above) ----------------------------------------

def test_metrics_json_is_self_describing(run):
    out, _ = run
    m = json.loads((out / "metrics.json").read_text())
    about = m["about"]
    assert (about["jaxq"], about["jax"], about["jaxlib"]) == (
        jaxq.__version__, jax.__version__, jaxlib.__version__)
    assert about["platform"] == jax.devices()[0].platform and about["device_count"] >= 1
    assert (about["num_states"], about["num_actions"], about["time_limit"]) == (64, 4, 100)
    assert about["q_shape"] == [64, 4] and about["env_kwargs"] == {
        "map_name": "8x8", "is_slippery": False}
    assert {"env_steps", "steps_per_s", "final_evaluation"} <= set(m["units"])


def test_metrics_json_counters_are_integers(run):
    out, _ = run
    m = json.loads((out / "metrics.json").read_text())
    s = m["summary"]
    for key in ("env_steps", "episodes", "steps_run"):
        assert type(s[key]) is int, (key, s[key])
    assert s["steps_run"] == 1600 and s["start_chunk"] == 0
    h = m["history"]
    assert all(type(x) is int for x in h["env_steps"] + h["episodes"] + h["episodes_in_chunk"])


def test_metrics_json_has_one_final_evaluation(run):
    """The last chunk evaluated the final table: that is the final evaluation, not a second
    one with other random numbers."""
    out, stdout = run
    m = json.loads((out / "metrics.json").read_text())
    trained, h, s = m["final_evaluation"]["trained"], m["history"], m["summary"]
    assert h["eval_return"][-1] is not None
    assert trained["mean_return"] == h["eval_return"][-1] == s["eval_return"]
    assert trained["mean_length"] == h["eval_length"][-1] == s["eval_length"]
    assert trained["success_rate"] == h["eval_success"][-1] == s["eval_success"]
    assert m["final_evaluation"]["source"] == "the last chunk's periodic evaluation"
    assert f"  {'greedy mean return':<21}{trained['mean_return']:.4f}" in stdout
