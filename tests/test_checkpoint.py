"""Checkpoints: an interrupted run resumes bit for bit, corrupt files are refused without
being overwritten, saving is atomic, and runs are deterministic."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import jax
import numpy as np
import pytest

import jaxq
from jaxq import checkpoint as ckpt
from jaxq.cli import _json_safe, main
from jaxq.config import TrainConfig
from jaxq.training import build_learner, train

TINY = TrainConfig(num_envs=8, total_steps=8 * 30 * 4, num_chunks=4, eval_every=0)


def _assert_same_run(a, b):
    assert a.q.dtype == b.q.dtype and a.q.tobytes() == b.q.tobytes()
    assert sorted(a.metrics) == sorted(b.metrics)
    for k in a.metrics:  # NaN == NaN here: the whole history, env_steps included
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
        assert a.metrics[k].dtype == b.metrics[k].dtype, k


@pytest.fixture(scope="module")
def frozen_q_star():
    env, params = jaxq.make("FrozenLake-v1")
    return np.asarray(jaxq.value_iteration(jaxq.tabular_model(env, params), 0.99))


# ---- (a) interrupted + resumed == uninterrupted ----------------------------------------

def test_interrupted_run_resumes_bit_for_bit(tmp_path, tmp_path_factory, frozen_q_star):
    """Every kind of carry state at once: two tables, an n-step window, visit counts and
    a vmapped carry of 3 learners. (The plain single-table path, with periodic evaluation,
    is resumed through the CLI below.) The three runs share their compiled programs
    through jaxq's compile cache (the same programs either way; two separate compiles
    giving the same bits is checked by the determinism test below)."""
    cfg = TINY.replace(algo="double_q", n_step=3, lr_schedule="visit", learners="independent",
                       num_envs=3)
    path = str(tmp_path / "ck.npz")
    cache = str(tmp_path_factory.mktemp("xla"))
    full = train(cfg, frozen_q_star, progress=False, compile_cache=cache)
    part = train(cfg, frozen_q_star, progress=False, checkpoint_path=path, checkpoint_every=1,
                 stop_after_chunks=2, compile_cache=cache)
    assert len(part.metrics["env_steps"]) == 2 and os.path.exists(path)
    resumed = train(cfg, frozen_q_star, progress=False, checkpoint_path=path, checkpoint_every=1,
                    resume=True, compile_cache=cache)
    _assert_same_run(full, resumed)
    assert not np.isnan(resumed.metrics["q_error"]).any()
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary files left behind


_KILL_DURING_FOURTH_SAVE = textwrap.dedent("""
    import os, signal, sys
    import jaxq.checkpoint as ckpt
    from jaxq.cli import main

    real_replace, saves = os.replace, []

    def replace(src, dst):  # the 4th save dies between writing its temp file and the rename
        if os.path.basename(dst) == "checkpoint.npz":  # (not the compile cache's entries)
            saves.append(dst)
        if len(saves) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    ckpt.os.replace = replace
    main(sys.argv[1:])
""")


def test_cli_run_killed_by_a_signal_resumes_bit_for_bit(tmp_path, tmp_path_factory):
    # the killed run, its resume and the uninterrupted run share their compiled programs
    # through jaxq's compile cache: one compile of each instead of three
    cache = str(tmp_path_factory.mktemp("xla"))
    flags = ["--num-envs", "8", "--total-steps", str(8 * 20 * 6), "--num-chunks", "6",
             "--eval-every", "2", "--eval-episodes", "16", "--no-progress",
             "--out", str(tmp_path), "--checkpoint-every", "1", "--compile-cache", cache]
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_FOURTH_SAVE, "train", *flags],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "q.npy").exists()
    with np.load(tmp_path / "checkpoint.npz") as z:  # the 3rd checkpoint survived intact
        assert len(z["metric_env_steps"]) == 3
    assert [p for p in os.listdir(tmp_path) if p.startswith(".ckpt-")]  # the torn 4th write

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["train", *flags, "--resume"]) == 0
    # the uninterrupted run, from the config the CLI wrote
    cfg = TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    env, params = jaxq.make(cfg.env_id)
    full = train(cfg, jaxq.value_iteration(jaxq.tabular_model(env, params), cfg.gamma),
                 progress=False, compile_cache=cache)
    assert np.load(tmp_path / "q.npy").tobytes() == full.q.tobytes()
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert history == json.loads(json.dumps(_json_safe(full.metrics)))
    assert len(history["env_steps"]) == 6 and None not in history["q_error"]
    assert history["eval_return"][1::2] == [x for x in history["eval_return"] if x is not None]


# ---- (b) corrupt or foreign checkpoints are refused, and left as they were -------------

@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    """The bytes of a valid checkpoint of TINY after one chunk."""
    path = str(tmp_path_factory.mktemp("ck") / "ck.npz")
    train(TINY, progress=False, checkpoint_path=path, checkpoint_every=1, stop_after_chunks=1)
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def saved(tmp_path, good_checkpoint):
    """(path, bytes) of a fresh copy of the valid checkpoint."""
    path = str(tmp_path / "ck.npz")
    with open(path, "wb") as f:
        f.write(good_checkpoint)
    return path, good_checkpoint


@pytest.fixture(scope="module")
def template():
    return jax.eval_shape(build_learner(TINY).init, jax.random.key(0), TINY.hparams())


def _flip_in_member(data: bytes, member: str) -> bytes:
    """``data`` with one byte flipped inside ``member``'s stored array values."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(member)
    local = data[info.header_offset:info.header_offset + 30]
    start = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
             + int.from_bytes(local[28:30], "little"))
    i = start + info.file_size - 3  # in the array's values, past the .npy header
    return data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]


def _rewritten_with_valid_zip(data: bytes) -> bytes:
    """A well-formed npz whose Q-table changed but whose digest did not."""
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["carry_0000"] = arrays["carry_0000"].copy()
    arrays["carry_0000"].flat[5] += 1.0
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("corrupt, match", [
    (lambda data: data[: len(data) // 2], "corrupt checkpoint"),
    (lambda data: np.random.default_rng(0).bytes(len(data)), "corrupt checkpoint"),
    (lambda data: b"", "corrupt checkpoint"),
    (lambda data: _flip_in_member(data, "carry_0000.npy"), "corrupt checkpoint"),
    (_rewritten_with_valid_zip, "digest mismatch"),
], ids=["truncated", "random-bytes", "empty", "flipped-byte", "valid-zip-altered-table"])
def test_corrupt_checkpoint_is_refused(saved, template, corrupt, match):
    path, good = saved
    bad = corrupt(good)
    assert bad != good
    with open(path, "wb") as f:
        f.write(bad)
    with pytest.raises(ValueError, match=match):
        ckpt.load(path, template, TINY.to_json())


@pytest.mark.parametrize("other, corrupt, match", [
    (TINY, lambda data: data[: len(data) // 2], "corrupt checkpoint"),
    (TINY.replace(env_id="Taxi-v3"), lambda data: data,
     r"different config \(fields \['env_id'\]\)"),
], ids=["truncated", "other-env"])
def test_failed_resume_leaves_the_checkpoint_as_it_was(saved, other, corrupt, match):
    path, good = saved
    bad = corrupt(good)
    with open(path, "wb") as f:
        f.write(bad)
    with pytest.raises(ValueError, match=match):
        train(other, progress=False, checkpoint_path=path, checkpoint_every=1, resume=True)
    with open(path, "rb") as f:
        assert f.read() == bad  # never overwritten


def test_checkpoint_of_another_config_or_shape_is_refused(saved):
    """The config is compared field by field; then every leaf's shape and dtype, even
    under the same config text."""
    path, _ = saved
    other = TINY.replace(env_kwargs={"map_name": "8x8"})
    with pytest.raises(ValueError, match=r"different config \(fields \['env_kwargs'\]\)"):
        ckpt.load(path, None, other.to_json())
    template = jax.eval_shape(build_learner(other).init, jax.random.key(0), other.hparams())
    with pytest.raises(ValueError, match=r"does not match this run: leaf 0 is float32\[1, 16, 4\], "
                                         r"expected float32\[1, 64, 4\]"):
        ckpt.load(path, template, TINY.to_json())


def test_checkpoint_without_config_is_refused(tmp_path):
    arrays = {"format": np.array(ckpt.FORMAT)}
    arrays["digest"] = np.array(ckpt._digest(arrays))
    path = str(tmp_path / "ck.npz")
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="not a jaxq-checkpoint-v1 file"):
        ckpt.load(path, None, TINY.to_json())


def test_cli_resume_from_corrupt_checkpoint_is_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        main(["train", "--num-envs", "4", "--total-steps", "80", "--num-chunks", "2",
              "--eval-every", "0", "--out", str(out), "--checkpoint-every", "1", "--resume",
              "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxq: error: corrupt checkpoint") and "Traceback" not in err
    assert (out / "checkpoint.npz").read_bytes() == b"not a checkpoint"


def test_cli_failed_resume_is_exit_2_and_clobbers_nothing(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_bytes(b"not a checkpoint")
    (tmp_path / "config.json").write_text("the interrupted run's config")
    with pytest.raises(SystemExit) as e:
        main(["train", "--num-envs", "4", "--total-steps", "80", "--num-chunks", "2",
              "--eval-every", "0", "--out", str(tmp_path), "--checkpoint-every", "1",
              "--resume", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxq: error: corrupt checkpoint") and "Traceback" not in err
    assert (tmp_path / "checkpoint.npz").read_bytes() == b"not a checkpoint"
    assert (tmp_path / "config.json").read_text() == "the interrupted run's config"


# ---- (c) atomic saves ------------------------------------------------------------------

@pytest.fixture(scope="module")
def carry():
    return jax.jit(build_learner(TINY).init)(jax.random.key(0), TINY.hparams())


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, carry):
    path = str(tmp_path / "deep" / "dir" / "ck.npz")  # directories are created
    history = {"env_steps": np.arange(3)}
    for _ in range(3):
        ckpt.save(path, carry, history, TINY.to_json())
    assert os.listdir(tmp_path / "deep" / "dir") == ["ck.npz"]
    restored, h = ckpt.load(path, carry, TINY.to_json())
    np.testing.assert_array_equal(h["env_steps"], history["env_steps"])
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(restored)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, carry, monkeypatch):
    path = str(tmp_path / "ck.npz")
    ckpt.save(path, carry, {"env_steps": np.arange(1)}, TINY.to_json())
    with open(path, "rb") as f:
        before = f.read()

    def torn_savez(f, **arrays):  # writes part of the file, then fails (disk full, crash...)
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", torn_savez)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save(path, carry, {"env_steps": np.arange(2)}, TINY.to_json())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.npz"]
    with open(path, "rb") as f:
        assert f.read() == before
    _, h = ckpt.load(path, carry, TINY.to_json())
    assert len(h["env_steps"]) == 1


# ---- (d) determinism -------------------------------------------------------------------

def test_same_config_and_seed_give_the_same_table_bytes():
    a, b = train(TINY, progress=False), train(TINY, progress=False)
    _assert_same_run(a, b)
    assert np.abs(a.q).max() > 0  # it learned something: the equality is not vacuous
