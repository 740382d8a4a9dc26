"""``experiments/cpu_threefry.py --quick``: every lowering compiled and timed, the tables
equal, the section rendered (what README's threefry figures come from), and nothing
written outside ``--out``."""

import json

import jax
import numpy as np

import experiment_modules
from test_benchlib import CHECKOUT, PACKAGE, _tree

exp = experiment_modules.load("cpu_threefry")


def _lowered(f, *args):
    return jax.jit(f).lower(*args).as_text()


def test_the_experiment_runs_and_finds_equal_tables(tmp_path):
    before = {root: _tree(root) for root in (PACKAGE, CHECKOUT / "experiments")}
    exp.main(["--quick", "--out", str(tmp_path)], log=lambda *_: None)
    for root, files in before.items():
        assert _tree(root) == files, f"the experiment wrote under {root}"
    stored = json.loads((tmp_path / "results" / "cpu_threefry" / "results.json").read_text())
    assert {r["case"] for r in stored["records"]} == set(exp.CASES)
    for r in stored["records"]:
        assert r["same_table"] and r["speedup"]["rolled"] == 1.0
    # the experiment leaves the process's lowering as JAX's own (the rolled loop)
    one = _lowered(lambda k: jax.random.bits(k, (4,), np.uint32), jax.random.key(7))
    assert "while" in one
    assert "same table" in (tmp_path / "BENCHMARKS.md").read_text()
