"""No silent wrong results: NaN where a figure has no meaning, bad tables and files refused
by name, nothing written before a run can start, progress that reads well in a log, and
metrics that say what they are. Tiny sizes throughout."""

import io
import json
import os

import jax
import numpy as np
import pytest

import jaxq
from jaxq import cli
from cli_runner import error as _error, run as _run
from jaxq.cli import main
from jaxq.config import TrainConfig
from jaxq.evaluation import check_finite
from jaxq.progress import Progress
from jaxq.training import train

TINY = ["--num-envs", "8", "--total-steps", "320", "--num-chunks", "4", "--eval-every", "2",
        "--eval-episodes", "10", "--seed", "1"]


# ---- 6: no success defined -> NaN, not 0 -------------------------------------------------

def test_training_success_rate_is_nan_where_the_env_defines_no_success():
    cfg = TrainConfig(env_id="Catch-bsuite", num_envs=8, total_steps=8 * 20 * 2, num_chunks=2,
                      eval_every=0)
    m = train(cfg, progress=False).metrics
    assert (m["episodes_in_chunk"] > 0).all()  # episodes ended: 0/n would have been "0.0"
    assert np.isnan(m["success_rate"]).all()
    assert np.isfinite(m["mean_return"]).all()


# ---- 7: non-finite tables --------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_evaluate_refuses_non_finite_tables(value):
    env, params = jaxq.make("FrozenLake-v1")
    q = np.zeros((16, 4), np.float32)
    q[5, 2] = q[9, 1] = value
    with pytest.raises(ValueError, match=rf"q\[5, 2\] = {value}.*2 bad cell"):
        jaxq.evaluate(env, params, q, num_episodes=2)


def test_minus_inf_is_accepted_only_in_invalid_actions_of_masked_envs():
    env, params = jaxq.make("MaskedProbe-v0")
    q_star = np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), 0.9))
    assert np.isneginf(q_star).any()  # value iteration puts -inf in invalid cells
    check_finite("q", q_star, env, params)
    assert isinstance(jaxq.evaluate(env, params, q_star, num_episodes=4).mean_return, float)
    valid = np.stack([np.asarray(v) for v in env.valid_actions(np.arange(3), params)], -1)
    s, a = map(int, np.argwhere(valid & np.isfinite(q_star))[0])
    for value, match in ((-np.inf, r"= -inf \(a valid action's cell\)"), (np.inf, "= inf"),
                         (np.nan, "= nan")):
        q = q_star.copy()
        q[s, a] = value
        with pytest.raises(ValueError, match=rf"q\[{s}, {a}\] {match}"):
            check_finite("q", q, env, params)
    q = q_star.copy()
    i = tuple(np.argwhere(np.isneginf(q_star))[0])
    q[i] = np.nan  # NaN is refused in an invalid cell too
    with pytest.raises(ValueError, match="nan"):
        check_finite("q", q, env, params)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_eval_cli_names_the_file_and_the_first_bad_cell(tmp_path, capsys, value):
    q = np.zeros((16, 4), np.float32)
    q[3, 1] = float(value)
    path = tmp_path / "q.npy"
    np.save(path, q)
    err = _error(capsys, ["eval", "--env", "FrozenLake-v1", "--q", str(path)])
    assert str(path) in err and f"q[3, 1] = {value}" in err
    assert "success rate" not in capsys.readouterr().out


# ---- 8: never suggest unsafe loading -----------------------------------------------------

def test_text_file_named_q_npy_is_not_a_npy_file(tmp_path, capsys):
    path = tmp_path / "q.npy"
    path.write_text("0.1 0.2 0.3 0.4\n")
    err = _error(capsys, ["eval", "--env", "FrozenLake-v1", "--q", str(path)])
    assert "not a .npy file" in err and "pickle" not in err


def test_object_array_npy_is_refused_without_pickle_advice(tmp_path, capsys):
    path = tmp_path / "q.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = _error(capsys, ["eval", "--env", "FrozenLake-v1", "--q", str(path)])
    assert "cannot read --q" in err and "allow_pickle" not in err and "unsafe" not in err


def test_text_checkpoint_is_not_a_npz_file(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_text("step 36 of 200\n")
    err = _error(capsys, ["train", *TINY, "--out", str(tmp_path), "--resume",
                          "--checkpoint-every", "1", "--no-progress"])
    assert "corrupt checkpoint" in err and "not a .npz file" in err and "pickle" not in err
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


# ---- 9: device counts checked before anything is written ---------------------------------

def test_too_many_devices_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    err = _error(capsys, ["train", *TINY, "--strategy", "replicated", "--num-devices",
                          str(jax.device_count() + 1), "--out", str(out), "--no-progress"])
    assert f"--num-devices {jax.device_count() + 1}" in err and "available" in err
    assert not out.exists()


def test_num_envs_not_divisible_by_the_devices_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 2)  # as on a 2-device machine
    out = tmp_path / "run"
    err = _error(capsys, ["train", *TINY, "--num-envs", "3", "--strategy", "replicated",
                          "--out", str(out), "--no-progress"])
    assert "--num-envs 3 must be divisible by the number of devices (2)" in err
    assert not out.exists()


# ---- 10: --out that cannot be written, or holds another run ------------------------------

def test_read_only_out_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: show it the directory as a user sees it
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.path.abspath(p)
                            == str(out) and mode & os.W_OK else real(p, mode, **kw))
    try:
        err = _error(capsys, ["train", *TINY, "--out", str(out), "--no-progress"])
        assert "--out" in err and "permission denied" in err
        assert os.listdir(out) == []
    finally:
        out.chmod(0o755)


def test_out_holding_another_run_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"the": "other run"}')
    (tmp_path / "q.npy").write_bytes(b"other table")
    err = _error(capsys, ["train", *TINY, "--out", str(tmp_path), "--no-progress"])
    assert "already holds a run (config.json, q.npy)" in err
    assert "--resume" in err and "new --out" in err and "--overwrite" in err
    # --resume continues a checkpoint; without one it must not start over on the old run
    err = _error(capsys, ["train", *TINY, "--out", str(tmp_path), "--no-progress", "--resume"])
    assert "no checkpoint.npz to resume from" in err and "--overwrite" in err
    assert (tmp_path / "config.json").read_text() == '{"the": "other run"}'
    assert sorted(os.listdir(tmp_path)) == ["config.json", "q.npy"]


class _Started(Exception):
    pass


def test_overwrite_replaces_the_run_and_says_so(tmp_path, monkeypatch, capsys):
    """--overwrite: once the run can start, the old run's files go (a stale checkpoint
    must not be resumed later) and the new config.json is written. (No training: train
    stops right after ``before_run``.)"""
    def start_only(config, q_star=None, *, before_run=None, **kw):
        before_run()
        raise _Started

    monkeypatch.setattr(jaxq, "train", start_only)
    (tmp_path / "config.json").write_text("old")
    (tmp_path / "checkpoint.npz").write_bytes(b"a stale checkpoint of the old run")
    with pytest.raises(_Started):
        main(["train", *TINY, "--out", str(tmp_path), "--no-progress", "--overwrite"])
    assert f"overwriting the run in {tmp_path}" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["config.json"]
    assert json.loads((tmp_path / "config.json").read_text())["num_envs"] == 8


# ---- 11: progress in a log; resume says where ---------------------------------------------

def test_progress_off_a_terminal_is_plain_lines_about_every_tenth():
    stream = io.StringIO()
    p = Progress("q_learning FrozenLake-v1", 50, 1000, stream=stream)
    assert not p.tty
    for chunk in range(1, 51):
        p.update(chunk, 0.5, 0.25)
    p.close()
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 10
    assert lines[0].startswith("q_learning FrozenLake-v1: chunk 5/50 (10%), 5k env steps")
    assert lines[-1].startswith("q_learning FrozenLake-v1: chunk 50/50 (100%), 50k env steps")
    assert all(line.count("steps/s") == 1 and "2k steps/s" in line for line in lines)


def test_progress_counts_only_the_steps_run_now_after_a_resume():
    stream = io.StringIO()
    p = Progress("x", 200, 1000, start_chunk=36, stream=stream)
    p.update(37, 0.25, 0.0)
    assert p.steps_per_s(37) == 4000.0  # one chunk in 0.25 s, not 37


def test_cli_resume_says_where_it_resumes_and_counts_steps_apart(tmp_path):
    argv = ["train", *TINY, "--out", str(tmp_path), "--checkpoint-every", "1"]
    cfg = cli.config_from_args(cli.build_parser().parse_args(argv))
    train(cfg, progress=False, checkpoint_path=str(tmp_path / "checkpoint.npz"),
          checkpoint_every=1, stop_after_chunks=3)
    code, stdout, err = _run([*argv, "--resume"])  # stderr is no terminal here
    assert code == 0
    assert "resuming at chunk 3/4" in err and "\r" not in err
    assert err.count("chunk 4/4 (100%)") == 1
    assert "320 in all: 80 in this run, resumed at chunk 3/4" in stdout
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert (m["summary"]["env_steps"], m["summary"]["steps_run"]) == (320, 80)


# ---- 12: envs, flags, help, early env checks, Python floats ------------------------------

def test_envs_lists_states_actions_and_time_limit():
    code, stdout, _ = _run(["envs"])
    assert code == 0
    rows = {line.split()[0]: line.split() for line in stdout.splitlines()[1:]}
    assert rows["FrozenLake-v1"][1:5] == ["16", "x", "4", "100"]
    assert rows["FrozenLake8x8-v1"][1:5] == ["64", "x", "4", "200"]
    assert rows["Taxi-v3"][1:5] == ["500", "x", "6", "200"]
    assert rows["CliffWalking-v1"][1:5] == ["48", "x", "4", "none"]
    assert "states x actions" in stdout and "time limit" in stdout


def test_every_train_option_says_what_it_does():
    parser = cli.build_parser()
    train_p = parser._subparsers._group_actions[0].choices["train"]
    for action in train_p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        words = action.help.split(";")[0].strip()
        assert words and words != action.dest.replace("_", " "), action.option_strings
    helps = {a.dest: a.help for a in train_p._actions}
    assert "every K steps" in helps["sync_every"]
    assert "devices" in helps["num_devices"] and "divisible" in helps["num_devices"]


@pytest.mark.parametrize("argv, flag", [
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--gamma", "2"], "--gamma must be in"),
    (["--num-devices", "2"], "--num-devices needs a multi-device strategy"),
    (["--strategy", "replicated", "--learners", "independent"], "--learners='independent'"),
    (["--env", "FrozenLake-v9"], "unknown --env 'FrozenLake-v9'"),
])
def test_errors_name_the_flag(tmp_path, capsys, argv, flag):
    err = _error(capsys, ["train", *argv, "--out", str(tmp_path / "o"), "--no-progress"])
    assert flag in err


def test_train_config_checks_the_env_when_built():
    with pytest.raises(ValueError, match="unknown env_id 'FrozenLak-v1'"):
        TrainConfig(env_id="FrozenLak-v1")
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['map'\]"):
        TrainConfig(env_kwargs={"map": "8x8"})
    assert TrainConfig(env_id="Catch-bsuite").env_id == "Catch-bsuite"  # gymnax ids pass
    # cheap: no environment is built (a 4096x4096 maze would take seconds)
    TrainConfig(env_id="Maze-v0", env_kwargs={"size": 4096})


def test_evaluate_returns_python_floats():
    env, params = jaxq.make("FrozenLake-v1")
    ev = jaxq.evaluate(env, params, np.zeros((16, 4), np.float32), num_episodes=3)
    assert all(type(x) is float for x in ev), ev


def test_init_distributed_changes_no_jax_setting_and_refuses_collectives_off():
    """Joining processes leaves JAX's settings as they are (gloo is JAX's default); where
    CPU collectives are off it says how to turn them on, before contacting anyone."""
    from jaxq import strategies

    before = jax.config.jax_cpu_collectives_implementation
    try:
        jax.config.update("jax_cpu_collectives_implementation", None)
        with pytest.raises(ValueError, match="jax_cpu_collectives_implementation=None"):
            strategies.init_distributed("127.0.0.1:1", 2, 1, timeout_s=1)
        assert jax.config.jax_cpu_collectives_implementation is None  # untouched
    finally:
        jax.config.update("jax_cpu_collectives_implementation", before)


# ---- --q-function mlp over several processes: what is still refused ----------------------

@pytest.mark.parametrize("argv, env, match", [
    (["--ray", "local"], {},
     r"--ray trains a table or tiles \(Ray's parameter-server shards hold a table\)"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"], {},
     r"--coordinator trains a table or tiles with any --strategy, --q-function mlp with "
     r"--strategy replicated or async .*; got --strategy single"),
    (["--strategy", "sharded", "--coordinator", "127.0.0.1:1", "--num-processes", "2",
      "--process-id", "1"], {}, r"--strategy replicated or async .*; got --strategy sharded"),
    ([], {"JAXQ_COORDINATOR": "127.0.0.1:1", "JAXQ_NUM_PROCESSES": "2", "JAXQ_PROCESS_ID": "1"},
     r"JAXQ_COORDINATOR trains a table or tiles .*; got --strategy single"),
])
def test_mlp_over_processes_refused_before_contacting_anyone(tmp_path, capsys, monkeypatch,
                                                             argv, env, match):
    """A network trains over several processes only with a mesh spanning them (strategies
    replicated and async) and never on Ray (a table's); the refusal names the flag (or
    the environment variable) and comes before any coordinator is contacted: a 1 s
    timeout would otherwise fail with another message."""
    import re

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    err = _error(capsys, ["train", "--env", "CartPole-v1", "--q-function", "mlp",
                          "--coordinator-timeout", "1", "--out", str(out), "--no-progress"]
                 + argv)
    assert re.search(match, err), err
    assert not out.exists()
