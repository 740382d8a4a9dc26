"""``jaxq bench`` works from the installed package alone: run as ``python -I -m jaxq
bench`` from an empty temp directory (isolated mode: no PYTHONPATH, no user site, not the
current directory on ``sys.path``), with the checkout's experiment modules made
unimportable, it measures jaxq at a tiny size and writes its JSON with the HLO figures.
One subprocess (the point is a fresh interpreter with nothing of the checkout); nothing
here asserts a speed."""

import json
import subprocess
import sys
import textwrap

import pytest

from jaxq import bench

# what the experiments/ folder provides; none of it may be needed by `jaxq bench`
BLOCKED = ("experiments", "benchlib", "numpy_vectorized", "classic_loop", "numpy_plain",
           "throughput", "time_to_solution", "experiment_modules")


def test_jaxq_bench_runs_from_the_installed_package(tmp_path):
    out = tmp_path / "nested" / "bench.json"
    code = textwrap.dedent(f"""
        import runpy, sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # import of any of them raises ImportError
        sys.argv = ["jaxq", "bench", "--max-envs", "1", "--chunk-iters", "8",
                    "--repeats", "1", "--out", {str(out)!r}]
        runpy.run_module("jaxq", run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "threefry/step" in proc.stdout and "env steps/s" in proc.stdout
    res = json.loads(out.read_text())
    assert res["tool"] == "jaxq bench" and res["schema_version"] == bench.SCHEMA_VERSION
    assert {"date_utc", "machine", "device", "versions"} <= set(res["info"])
    assert res["config"]["num_envs"] == [1] and res["config"]["env_id"] == "FrozenLake8x8-v1"
    assert [r["num_envs"] for r in res["records"]] == [1]
    for r in res["records"]:
        assert "error" not in r, r
        assert r["steps_per_s"] > 0 and r["compile_s"] > 0 and len(r["times_s"]) == 1
        assert r["chunk_iters"] == 8 and r["compiles"] == 1
        h = r["hlo"]
        # every step draws random words: at least one threefry evaluation, each one some xors
        assert h["xor_per_threefry"] > 0 and h["threefry_per_step"] >= 1
        assert h["threefry_per_step"] == h["xor_ops_step"] / h["xor_per_threefry"]
        assert h["xor_ops"] >= h["xor_ops_step"]
        assert h["bytes_per_env_step"] == h["bytes_accessed"] / r["num_envs"] > 0
    # nothing else was written in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nested"]


@pytest.mark.parametrize("argv,flag", [
    (["--max-envs", "0"], "--max-envs"),
    (["--target-s", "-1"], "--target-s"),
    (["--env-kwargs", "[1]"], "--env-kwargs"),
    (["--env-kwargs", "{nope"], "--env-kwargs"),
    (["--algo", "nope"], "--algo"),
    (["--env", "NoSuchEnv-v0"], "--env"),
])
def test_bad_flags_are_named_before_anything_runs(argv, flag, capsys, tmp_path):
    out = tmp_path / "never.json"
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv + ["--out", str(out)])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()


def test_count_xors_reads_the_step_of_the_chunk():
    """The xor count of a module, and of its entry's while-loop body (fusions and nested
    calls included), from HLO text."""
    text = textwrap.dedent("""\
        HloModule m

        %fused (p: u32[4]) -> u32[4] {
          %x = u32[4]{0} xor(%p, %p)
          ROOT %y = u32[4]{0} xor(%x, %p)
        }

        %body (t: (s32[], u32[4])) -> (s32[], u32[4]) {
          %f = u32[4]{0} fusion(%a), kind=kLoop, calls=%fused
          %z = u32[4]{0} xor(%f, %f)
        }

        %cond (t: (s32[], u32[4])) -> pred[] {
          ROOT %c = pred[] constant(true)
        }

        ENTRY %main (k: u32[4]) -> u32[4] {
          %pre = u32[4]{0} xor(%k, %k)
          %w = (s32[], u32[4]) while(%init), condition=%cond, body=%body
        }
        """)
    assert bench.count_xors(text) == 4
    assert bench.count_xors(text, step_only=True) == 3
    no_loop = text.replace("while(%init), condition=%cond, body=%body", "tuple(%init)")
    assert bench.count_xors(no_loop, step_only=True) == 4
