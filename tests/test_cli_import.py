"""``jaxq --import MODULE``: a user's module that registers environments makes them
available to every command (``jaxq.register`` alone only reaches the same process)."""

import io
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout

import pytest

from jaxq.cli import main


@pytest.fixture(autouse=True)
def _restore_registry():
    """The test's ids leave the process-wide registry (and its modules sys.modules)."""
    from jaxq.envs import registry

    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    for name in ("my_jaxq_envs_a", "my_jaxq_envs_b"):
        sys.modules.pop(name, None)


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_imported_module_registers_an_env(tmp_path, monkeypatch):
    (tmp_path / "my_jaxq_envs_a.py").write_text(textwrap.dedent('''
        import jaxq
        from jaxq.envs.registry import register

        def my_lake(max_steps: int = 100):
            return jaxq.make("FrozenLake-v1", map_name="4x4", max_steps=max_steps)

        register("MyLake-v0", my_lake, "FrozenLake 4x4 under the user's own id")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = _run(["--import", "my_jaxq_envs_a", "envs"])
    assert code == 0 and "MyLake-v0" in out and "under the user's own id" in out
    code, _, err = _run(["--import", "my_jaxq_envs_a", "train", "--env", "MyLake-v0",
                         "--num-envs", "4", "--total-steps", "64", "--num-chunks", "1",
                         "--eval-every", "0", "--eval-episodes", "4", "--no-progress",
                         "--no-compile-cache", "--out", str(tmp_path / "run")])
    assert code == 0, err
    assert (tmp_path / "run" / "q.npy").exists()


def test_a_module_that_cannot_be_imported_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "my_jaxq_envs_b.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _run(["--import", "my_jaxq_envs_b", "envs"])
    assert code == 2 and "--import my_jaxq_envs_b: RuntimeError: broken on purpose" in err
    code, _, err = _run(["--import", "no_such_module_xyz", "envs"])
    assert code == 2 and "--import no_such_module_xyz: ModuleNotFoundError" in err
