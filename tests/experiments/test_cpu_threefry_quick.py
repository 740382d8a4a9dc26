"""``experiments/cpu_threefry.py --quick``: every lowering compiled and timed, the tables
equal, the section rendered (what README's threefry figures come from), and nothing
written outside ``--out``."""

import json

import jax
import numpy as np
import pytest

import experiment_modules
from jaxq import cpu_threefry
from jaxq.training import CPU_THREEFRY
from test_benchlib import CHECKOUT, PACKAGE, _tree

exp = experiment_modules.load("cpu_threefry")


@pytest.fixture
def restore():
    yield
    cpu_threefry.set_cpu_threefry(CPU_THREEFRY or "rolled")


def _lowered(f, *args):
    return jax.jit(f).lower(*args).as_text()


def test_the_experiment_runs_and_finds_equal_tables(tmp_path, restore):
    before = {root: _tree(root) for root in (PACKAGE, CHECKOUT / "experiments")}
    exp.main(["--quick", "--out", str(tmp_path)], log=lambda *_: None)
    for root, files in before.items():
        assert _tree(root) == files, f"the experiment wrote under {root}"
    stored = json.loads((tmp_path / "results" / "cpu_threefry" / "results.json").read_text())
    assert {r["case"] for r in stored["records"]} == set(exp.CASES)
    for r in stored["records"]:
        assert r["same_table"] and r["speedup"]["rolled"] == 1.0
    # the experiment leaves jaxq's choice in place: one key unrolled, batched keys rolled
    one = _lowered(lambda k: jax.random.bits(k, (4,), np.uint32), jax.random.key(7))
    batched = _lowered(jax.vmap(lambda k: jax.random.bits(k, (5,), np.uint32)),
                       jax.random.split(jax.random.key(3), 8))
    assert "while" not in one and "while" in batched
    assert "same table" in (tmp_path / "BENCHMARKS.md").read_text()
