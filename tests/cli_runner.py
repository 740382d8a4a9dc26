"""Running ``jaxq``'s ``main`` in process, for the CLI tests."""

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest

from jaxq.cli import main


def run(argv):
    """``(exit code, stdout, stderr)`` of one command."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def error(capsys, argv) -> str:
    """A failing command: exit code 2, one ``jaxq: error:`` line, no traceback."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxq: error: ") and "\n" not in err and "Traceback" not in err, err
    return err
