"""The experiment scripts, importable by name from the tests: ``experiments/`` and
``experiments/baselines/`` go on ``sys.path``, as the scripts themselves arrange it when
run (``import scaling``), so a test and a script share one module object per name."""

import importlib
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
for _path in (EXPERIMENTS / "baselines", EXPERIMENTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def load(name: str):
    """The experiment module ``name`` (e.g. ``"scaling"``, ``"threaded_dict"``)."""
    return importlib.import_module(name)
