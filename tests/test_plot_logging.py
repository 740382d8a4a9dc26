"""Pictures of what was learned (policy.png, ``jaxq plot``) and TensorBoard logging
(``jaxq train --tensorboard``): one tiny Taxi training, shared through a module-scoped
fixture (the only compile of the file); everything else is drawn from tables."""

import glob
import importlib.util
import json
import os
import struct

import numpy as np
import pytest

import jaxq
from cli_runner import error, run
from jaxq import cli, plotting
from jaxq.logging_utils import check_logdir, scalar_tag

needs_mpl = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                               reason="matplotlib (the plot extra) is not installed")
needs_tbx = pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None,
                               reason="tensorboardX (the tensorboard extra) is not installed")

TINY = ["--num-envs", "16", "--num-chunks", "4", "--eval-every", "2", "--eval-episodes", "8",
        "--seed", "1", "--no-progress", "--no-compile-cache"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def read_events(logdir) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in the TFRecord events files of ``logdir``
    (length, its crc, an Event protobuf, its crc), parsed with tensorboardX's protobuf."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        data, i = open(path, "rb").read(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
    return out


# ---- the differ marking, on hand-made tables (no image) --------------------------------

def test_policy_differs_on_hand_made_tables():
    q_star = np.array([
        [1.0, 0.5, 0.2],          # 0: action 0 best
        [0.3, 0.3 + 1e-7, 0.1],   # 1: actions 0 and 1 tie within the tolerance
        [-np.inf, 0.2, 0.4],      # 2: action 0 masked out, action 2 best
        [0.0, 0.0, 0.0],          # 3: every action optimal (a terminal-like row)
        [2.0, 1.0, 1.0],          # 4: action 0 best
    ])
    q = np.array([
        [0.9, 0.1, 0.0],          # picks 0: optimal
        [0.2, 0.1, 0.0],          # picks 0: tied-optimal, not marked
        [9.0, 0.1, 0.3],          # the masked action's big value is ignored: picks 2, fine
        [0.0, 5.0, 0.0],          # anything is optimal here
        [0.5, 0.5, 0.1],          # tie between 0 (optimal) and 1 (not): may pick 1, marked
    ])
    np.testing.assert_array_equal(plotting.policy_differs(q, q_star),
                                  [False, False, False, False, True])
    q[0] = [0.0, 0.1, 0.0]  # picks 1: wrong
    q[2] = [0.0, 0.4, 0.3]  # picks 1: wrong
    np.testing.assert_array_equal(plotting.policy_differs(q, q_star),
                                  [True, False, True, False, True])
    # a zero tolerance splits the near-tie of state 1: action 0 is no longer optimal
    assert plotting.policy_differs(q, q_star, atol=0.0, rtol=0.0)[1]
    with pytest.raises(ValueError, match="one shape"):
        plotting.policy_differs(q, q_star[:, :2])


def test_greedy_sets_keep_exact_ties_only_by_default():
    q = np.array([[1.0, 1.0, 0.0], [0.0, 1e-9, 0.0]])
    np.testing.assert_array_equal(plotting.greedy_sets(q),
                                  [[True, True, False], [False, True, False]])
    assert plotting.greedy_sets(q, atol=1e-6)[1].all()


def test_scalar_tags_group_evaluations():
    assert scalar_tag("eval_return") == "eval/return"
    assert scalar_tag("mean_return") == "train/mean_return"


# ---- one training run (Taxi, with --tensorboard where tensorboardX is installed) -------

@pytest.fixture(scope="module")
def taxi_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tb")
    out, logdir = base / "taxi", base / "logs" / "taxi"
    tb = ["--tensorboard", str(logdir)] if importlib.util.find_spec("tensorboardX") else []
    code, stdout, _ = run(["train", "--env", "Taxi-v3", "--total-steps", "3200", *TINY,
                           "--out", str(out), *tb])
    assert code == 0
    return out, logdir, stdout


@needs_mpl
def test_train_writes_a_taxi_policy_png(taxi_run):
    out, _, stdout = taxi_run
    assert "policy.png" in stdout
    w, h = png_size(out / "policy.png")
    assert 800 <= w <= 3000 and 500 <= h <= 2000, (w, h)


@needs_mpl
def test_plot_redraws_the_same_pictures(taxi_run, tmp_path):
    from matplotlib.image import imread

    out, _, _ = taxi_run
    code, stdout, _ = run(["plot", str(out), "--out", str(tmp_path / "again")])
    assert code == 0 and "policy.png" in stdout and "learning_curve.png" in stdout
    for name in ("policy.png", "learning_curve.png"):
        np.testing.assert_array_equal(imread(tmp_path / "again" / name), imread(out / name))


@needs_mpl
def test_plot_draws_a_frozen_lake_run(tmp_path):
    """A FrozenLake 8x8 run directory (a perturbed Q* as its table, so some states differ):
    the same drawing code ``jaxq train`` uses (``cli._pictures``), through ``jaxq plot``,
    without another training compile."""
    config = jaxq.TrainConfig(env_id="FrozenLake8x8-v1")
    env, params = jaxq.make(config.env_id)
    q = np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), config.gamma))
    q = q.copy()
    q[[0, 9, 20], 0] += 1.0  # LEFT made greedy in three states where it is not optimal
    np.save(tmp_path / "q.npy", q.astype(np.float32))
    (tmp_path / "config.json").write_text(config.to_json())
    history = {"env_steps": [100, 200], "mean_return": [0.1, 0.2],
               "success_rate": [0.1, 0.2], "eval_return": [None, 0.3], "eval_success": [None, 0.3]}
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"history": history, "final_evaluation": {"trained": {"success_rate": 0.3}}}))
    code, stdout, _ = run(["plot", str(tmp_path)])
    assert code == 0 and "policy.png" in stdout
    w, h = png_size(tmp_path / "policy.png")
    assert 400 <= w <= 2500 and 250 <= h <= 1500, (w, h)
    assert 10_000 < (tmp_path / "policy.png").stat().st_size < 400_000
    differs = plotting.policy_differs(q, np.asarray(jaxq.value_iteration(
        jaxq.tabular_model(env, params), config.gamma)))
    assert set(np.flatnonzero(differs)) >= {0, 9, 20}


def test_plot_refuses_a_directory_without_a_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert "no metrics.json, q.npy" in error(capsys, ["plot", str(tmp_path)])
    assert "not a directory" in error(capsys, ["plot", str(tmp_path / "missing")])


def test_without_matplotlib_nothing_is_drawn_and_the_fix_is_named(tmp_path, monkeypatch):
    env, params = jaxq.make("FrozenLake-v1")
    monkeypatch.setattr(plotting, "matplotlib_available", lambda: False)
    q = np.zeros((16, 4), np.float32)
    history = {k: np.zeros(1) for k in ("env_steps", "mean_return", "eval_return")}
    assert cli._pictures(str(tmp_path), jaxq.TrainConfig(), env, params, q, None, history,
                         True) is None
    assert list(tmp_path.iterdir()) == []
    line = cli._skipped_pictures(env, params)
    assert "policy.png" in line and "jaxq[plot]" in line and "\n" not in line


@needs_mpl
def test_large_mazes_draw_without_arrows():
    env, params = jaxq.make("Maze-v0", size=600, start="uniform")
    q = np.zeros((600 * 600, 4), np.float32)
    q[:, 2] = 1.0
    fig = plotting.policy_figure(env, params, q, None, "big")
    assert "no arrows above" in fig._suptitle.get_text()
    assert "2x2 block means" in fig._suptitle.get_text()


def test_non_grid_environments_get_no_policy_picture():
    env, params = jaxq.make("TwoStateProbe-v0")
    assert plotting.grid_layout(env, params) is None


@needs_tbx
def test_tensorboard_events_hold_every_chunk(taxi_run):
    out, logdir, stdout = taxi_run
    assert f"tensorboard --logdir {logdir}" in stdout
    events = read_events(logdir)
    history = json.loads((out / "metrics.json").read_text())["history"]
    steps = history["env_steps"]
    assert steps == [800, 1600, 2400, 3200]
    by_tag: dict[str, list[tuple[int, float]]] = {}
    for step, tag, value in events:
        by_tag.setdefault(tag, []).append((step, value))
    for tag in ("train/chunk", "train/mean_abs_td", "train/episodes", "train/q_error"):
        assert [s for s, _ in by_tag[tag]] == steps, tag
    assert [v for _, v in by_tag["train/chunk"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in by_tag["train/mean_abs_td"]],
                               history["mean_abs_td"], rtol=1e-6)
    # evaluations ran in chunks 2 and 4 only; NaN is left out, not logged
    assert [s for s, _ in by_tag["eval/return"]] == [1600, 3200]
    np.testing.assert_allclose([v for _, v in by_tag["eval/return"]],
                               [history["eval_return"][1], history["eval_return"][3]], rtol=1e-6)


@needs_tbx
def test_bad_tensorboard_path_is_refused_before_anything_is_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = tmp_path / "run"
    for bad, why in ((blocker, "exists and is not a directory"),
                     (blocker / "logs", "is not a directory")):
        err = error(capsys, ["train", "--env", "FrozenLake-v1", *TINY, "--out", str(out),
                             "--tensorboard", str(bad)])
        assert "--tensorboard" in err and why in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no --out, no logs


def test_check_logdir_names_the_flag(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="^--tb .* exists and is not a directory"):
        check_logdir(str(tmp_path / "f"), "--tb")
    check_logdir(str(tmp_path / "new" / "dir"))  # creatable: fine, and nothing created
    assert not (tmp_path / "new").exists()
