"""``experiments/bench.py`` (jaxq against the baselines): the ``--quick`` run in process
(its JSON schema and BENCHMARKS.md section), and the baselines it compares against: the
vectorized NumPy learner is exactly the batched algorithm (checked step by step against a
per-env reference driven by the same random words) and it learns. Also ``jaxq bench
--profile`` (the package's tool) at a tiny size. (Time to solution, and its greedy-value
checker, are tested in ``test_time_to_solution_quick.py``.) Nothing here asserts a speed."""

import json
import math
import statistics

import numpy as np
import pytest

import experiment_modules
from jaxq import bench as jaxq_bench

bench = experiment_modules.load("bench")
benchlib = experiment_modules.load("benchlib")
numpy_vectorized = experiment_modules.load("numpy_vectorized")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    logs = []
    results = bench.run(["--quick", "--out", str(root)], log=logs.append)
    return root, results, logs


def test_quick_results_schema(quick_run):
    root, results, logs = quick_run
    out = root / "results" / "bench"
    stored = json.loads((out / "results.json").read_text())
    assert stored == json.loads(json.dumps(results))
    archived = [p for p in out.glob("*.json") if p.name != "results.json"]
    assert len(archived) == 1 and archived[0].name.startswith(results["info"]["device"]["slug"])

    assert stored["experiment"] == "bench" and stored["schema_version"] == 3
    assert {"date_utc", "machine", "device", "versions"} <= set(stored["info"])
    cfg = stored["config"]
    assert cfg["quick"] is True and cfg["num_envs"] == [1, 16]
    assert cfg["env_id"] == "FrozenLake8x8-v1" and cfg["algo"] == "q_learning"
    assert (cfg["lr"], cfg["epsilon"], cfg["gamma"]) == (0.1, 0.1, 0.99)

    recs = stored["records"]
    by_impl = {}
    for r in recs:
        assert "error" not in r, r
        by_impl.setdefault(r["impl"], []).append(r)
    assert sorted(by_impl) == ["classic", "jaxq", "numpy"]
    assert [r["num_envs"] for r in by_impl["jaxq"]] == [1, 16]
    assert [r["num_envs"] for r in by_impl["numpy"]] == [1, 16]
    for r in by_impl["jaxq"]:
        assert {"steps_per_s", "compile_s", "chunk_iters", "median_s", "times_s",
                "cpu_per_wall", "episodes"} <= set(r)
        assert len(r["times_s"]) == cfg["repeats"]
        assert r["hlo"]["threefry_per_step"] >= 1 and r["hlo"]["bytes_per_env_step"] > 0
    for r in by_impl["numpy"]:
        # every episode of FrozenLake8x8 ends by step 200 (its time limit), so a learner that
        # ran E env steps over N envs finished at least E // (200 N) episodes per env; a short
        # timed run on a slow machine may finish none, which is not an error
        assert r["dense"] is True and r["env_steps"] >= r["num_envs"]
        assert r["episodes"] >= r["num_envs"] * (r["env_steps"] // (200 * r["num_envs"]))
    (classic,) = by_impl["classic"]
    assert classic["gymnasium_id"] == "FrozenLake-v1"
    for r in recs:
        assert math.isfinite(r["steps_per_s"])
    # the conveniences' cost: jaxq.train at its defaults vs jaxq.train bare, interleaved
    # rounds (benchlib.measure_overhead, shared with throughput.py), ratio of the medians
    ov = stored["overhead"]
    assert (ov["num_envs"], ov["num_chunks"], len(ov["rounds"])) == (1024, 50, 2)
    assert ov["defaults"]["checkpoint_every"] == 10 and ov["defaults"]["eval_every"] == 10
    bare = statistics.median(r["bare_steps_per_s"] for r in ov["rounds"])
    user = statistics.median(r["user_steps_per_s"] for r in ov["rounds"])
    assert (ov["bare_steps_per_s"], ov["user_steps_per_s"]) == (bare, user)
    assert ov["ratio"] == user / bare and ov["overhead"] == bare / user - 1
    for r in ov["rounds"]:
        u = r["user"]  # timed from the end of chunk 1 to the end of chunk 50
        assert r["ratio"] == r["user_steps_per_s"] / r["bare_steps_per_s"]
        assert u["steps_per_s"] * u["wall_s"] == pytest.approx(49 * ov["chunk_iters"] * 1024)
        assert 0 < u["run_s"] and u["env_steps"] == 50 * ov["chunk_iters"] * 1024
    # time to solution is its own experiment now (experiments/time_to_solution.py)
    assert "time_to_solution" not in stored
    assert not any("time to solution" in line for line in logs)


def test_quick_markdown_section(quick_run):
    root, results, _ = quick_run
    text = (root / "BENCHMARKS.md").read_text()
    begin, end = "<!-- BEGIN bench -->", "<!-- END bench -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    section = text[text.index(begin):text.index(end)]
    assert results["info"]["date_utc"][:10] in section
    assert ("| N | jaxq steps/s | chunk_iters | compile (s) | cpu/wall | NumPy steps/s | "
            "cpu/wall | jaxq / NumPy | threefry/step | B/env step |") in section
    assert "**Classic loop**" in section and "x the classic loop" in section
    assert "jaxq / vectorized NumPy" in section
    assert "Time to solution" not in section
    assert "### What the conveniences cost" in section and "interleaved rounds" in section
    assert "smoke test" in section


def test_markdown_only_is_deterministic(quick_run, tmp_path):
    root, results, _ = quick_run
    (tmp_path / "results" / "bench").mkdir(parents=True)
    (tmp_path / "results" / "bench" / "results.json").write_text(
        (root / "results" / "bench" / "results.json").read_text())
    md = tmp_path / "BENCHMARKS.md"
    before = "# Mine\n\n<!-- BEGIN other -->\nkeep me\n<!-- END other -->\n"
    md.write_text(before)
    assert bench.main(["--markdown-only", "--out", str(tmp_path)]) == 0
    once = md.read_text()
    assert once.startswith(before)
    bench.main(["--markdown-only", "--out", str(tmp_path)])
    assert md.read_text() == once

    def sec(t):
        return t[t.index("<!-- BEGIN bench"):t.index("<!-- END bench")]

    assert sec(once) == sec((root / "BENCHMARKS.md").read_text())


# ---- the vectorized NumPy baseline --------------------------------------------------

class _Words:
    """A stand-in Generator whose ``bit_generator.random_raw`` hands out known words."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)
        self.bit_generator = self
        self.log = []

    def random_raw(self, n):
        w = self._rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) \
            + self._rng.integers(0, 2, size=n, dtype=np.int64).astype(np.uint64)
        self.log.append(w.copy())
        return w


def _reference_step(spec, q, s, t, words, gamma, lr, eps16):
    """One batched step, env by env, in plain Python (float32 arithmetic in the same order
    as the vectorized learner): returns (q, s, t)."""
    S, A, K = spec.shape
    N = len(s)
    word, word2 = words[:N], (words[N:] if len(spec.starts) > 1 else None)
    acc = np.zeros((S, A), np.float32)
    cnt = np.zeros((S, A), np.int64)
    new_s, new_t = s.copy(), t.copy()
    g32 = np.float32(gamma)
    for i in range(N):
        w = int(word[i])
        xe, xa, xs = w >> 48, (w >> 32) & 0xFFFF, w & 0xFFFFFF
        row = q[s[i]]
        best = [a for a in range(A) if row[a] == row.max()]
        a = (xa * A) >> 16 if xe < eps16 else best[(xa * len(best)) >> 16]
        p = spec.prob[s[i], a]
        cdf = np.cumsum(p, dtype=np.float32)
        k = 0
        for j in range(1, K):
            if p[j] > 0 and xs >= math.ceil(float(cdf[j - 1]) * 2**24):
                k = j
        ns = int(spec.next_state[s[i], a, k])
        term = bool(spec.terminated[s[i], a, k])
        r = np.float32(spec.reward[s[i], a, k])
        gc = np.float32(0.0) if term else g32
        td = np.float32(r + gc * q[ns].max()) - q[s[i], a]
        acc[s[i], a] += td
        cnt[s[i], a] += 1
        new_t[i] = t[i] + 1
        if term or new_t[i] >= spec.max_steps:
            if word2 is None:
                new_s[i] = spec.starts[0]
            else:
                idx = ((int(word2[i]) >> 32) * len(spec.starts)) >> 32
                new_s[i] = spec.starts[idx]
            new_t[i] = 0
        else:
            new_s[i] = ns
    q = (q + (np.float32(lr) * acc) / np.maximum(cnt, 1)).astype(np.float32)
    return q, new_s, new_t


@pytest.mark.parametrize("env_id,kwargs,dense,epsilon", [
    ("FrozenLake8x8-v1", {"reward_schedule": (1.0, -1.0, -0.01)}, True, 0.3),
    ("FrozenLake8x8-v1", {"reward_schedule": (1.0, -1.0, -0.01)}, False, 0.3),
    ("FrozenLake-v1", {}, True, 0.3),
    ("Taxi-v3", {}, True, 0.2),
    ("Maze-v0", {"size": 8, "start": "uniform", "slip": 0.2, "max_steps": 12}, True, 0.5),
    ("Maze-v0", {"size": 8, "start": "uniform", "slip": 0.2, "max_steps": 12}, False, 0.5),
    # a zero-probability outcome before a likely one (slip=0.0 on a slippery layout)
    ("FrozenLake-v1", {"success_rate": 1.0}, True, 0.5),
])
def test_numpy_learner_is_the_batched_algorithm(env_id, kwargs, dense, epsilon):
    spec = benchlib.load_env(env_id, kwargs)
    n, gamma, lr = 37, 0.9, 0.5
    learner = numpy_vectorized.NumpyQLearner(spec, n, gamma=gamma, lr=lr, epsilon=epsilon,
                                             seed=0, block=16, dense=dense)  # 3 blocks
    assert learner.dense is dense
    assert learner.eps16 == math.ceil(epsilon * 65536)  # u16 < eps16 <=> u < epsilon
    fake = _Words(1)
    learner.rng = fake
    S, A, _ = spec.shape
    q = np.zeros((S, A), np.float32)
    s, t = learner.s.copy(), learner.t.copy()
    for _ in range(100):
        learner.run(1)
        draws, fake.log[:] = list(fake.log), []
        if learner.random_start:  # each draw is [words(m), reset words(m)]
            words = np.concatenate([d[:len(d) // 2] for d in draws]
                                   + [d[len(d) // 2:] for d in draws])
        else:
            words = np.concatenate(draws)
        q, s, t = _reference_step(spec, q, s, t, words, gamma, lr, learner.eps16)
        np.testing.assert_array_equal(learner.s, s)
        np.testing.assert_array_equal(learner.t, t)
        np.testing.assert_array_equal(learner.q_table(), q)
    assert np.abs(q).max() > 0  # something was learned


def test_numpy_learner_learns_frozen_lake():
    """A real Q-learner: on FrozenLake 4x4 (slippery) its greedy policy reaches the goal
    far more often than a random policy (~1.5%) and comes near the optimal value."""
    import jax
    import jaxq

    spec = benchlib.load_env("FrozenLake-v1")
    learner = numpy_vectorized.NumpyQLearner(spec, 256, lr=0.1, epsilon=0.5, seed=0)
    learner.run(2000)  # 512k env steps
    q = learner.q_table()
    ev = jaxq.evaluate(spec.env, spec.params, q, num_episodes=2000, key=jax.random.key(1))
    assert float(ev.success_rate) > 0.5
    v_star = float(jaxq.start_value(spec.model, jaxq.value_iteration(spec.model, benchlib.GAMMA)))
    v_pi = float(jaxq.policy_start_value(spec.model, np.argmax(q, axis=1), benchlib.GAMMA))
    assert v_star - v_pi < 0.1 * v_star
    assert learner.episodes > 0 and learner.successes > 0


def test_profile_writes_a_trace(tmp_path):
    res = jaxq_bench.run(["--profile", str(tmp_path), "--num-envs", "16", "--chunk-iters",
                          "32", "--profile-chunks", "2"], log=lambda s: None)
    assert (tmp_path / "profile_summary.json").exists()
    assert res["num_envs"] == 16 and res["steps_per_chunk"] == 16 * 32
    assert res["trace"] is not None and res["trace"]["events"] > 0
    text = jaxq_bench.render_profile(res)
    assert "compile" in text and "host overhead" in text
    assert res["hlo"]["threefry_per_step"] >= 1 and "threefry evaluations per step" in text
