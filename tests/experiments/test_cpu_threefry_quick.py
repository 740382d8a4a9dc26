"""``experiments/cpu_threefry.py --quick``: both word sources compiled and timed, the tables
equal, the section rendered (what README's words figures come from), jaxq's own word
function restored afterwards, and nothing written outside ``--out``."""

import json

import experiment_modules
from test_benchlib import CHECKOUT, PACKAGE, _tree

from jaxq import prng

exp = experiment_modules.load("cpu_threefry")


def test_the_experiment_runs_and_finds_equal_tables(tmp_path):
    own = prng.bits
    before = {root: _tree(root) for root in (PACKAGE, CHECKOUT / "experiments")}
    exp.main(["--quick", "--out", str(tmp_path)], log=lambda *_: None)
    for root, files in before.items():
        assert _tree(root) == files, f"the experiment wrote under {root}"
    stored = json.loads((tmp_path / "results" / "cpu_threefry" / "results.json").read_text())
    assert {r["case"] for r in stored["records"]} == set(exp.CASES)
    for r in stored["records"]:
        assert r["same_table"] and r["speedup"][exp.SOURCES[0]] == 1.0
        assert set(r["median"]) == set(exp.SOURCES) and all(v > 0 for v in r["median"].values())
    assert prng.bits is own  # the swap is undone
    assert "same table" in (tmp_path / "BENCHMARKS.md").read_text()


def test_the_swap_really_changes_the_program():
    """A measurement of two identical programs would be worthless: with JAX's function the
    compiled chunk carries JAX's rolled threefry loop, with jaxq's it does not."""
    from jaxq import bench

    cfg = bench.jaxq_config("FrozenLake-v1", {}, "q_learning", 8, 2)
    texts = {}
    for source in exp.SOURCES:
        with exp.words_from(source):
            texts[source] = bench.CompiledChunk(cfg).compiled.as_text()
    assert texts["jax.random.bits"] != texts["jaxq.prng.bits"]
    assert bench.count_xors(texts["jax.random.bits"]) < bench.count_xors(texts["jaxq.prng.bits"])
