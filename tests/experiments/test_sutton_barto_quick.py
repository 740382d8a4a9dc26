"""``experiments/sutton_barto.py --quick`` in process (32 seeds, a fixed seed): the
results file's keys and shapes, the plots, and the qualitative facts of Sutton & Barto's
Figures 6.4 and 6.5 that hold by wide margins even at 32 seeds."""

import json
import math

import numpy as np
import pytest
import experiment_modules

CLIFF_RULES = ("sarsa", "q_learning", "expected_sarsa")
MAXBIAS_RULES = ("q_learning", "double_q")


sutton_barto = experiment_modules.load("sutton_barto")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sutton_barto")
    logs = []
    results = sutton_barto.main(["--quick", "--out", str(out)], log=logs.append)
    stored = json.loads((out / "results.json").read_text())
    return out, results, stored, logs


def test_results_file(quick_run):
    out, results, stored, _ = quick_run
    assert stored == json.loads(json.dumps(results))
    archived = [p for p in out.glob("*.json") if p.name != "results.json"]
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == stored
    assert stored["experiment"] == "sutton_barto"
    cfg = stored["config"]
    assert cfg["quick"] is True and cfg["seeds"] == sutton_barto.QUICK_SEEDS
    assert stored["versions"]["jax"] and stored["versions"]["jaxlib"] and stored["device"]
    assert stored["info"]["machine"]["cpu_cores"] >= 1

    assert set(stored["cliff"]) == set(CLIFF_RULES)
    for rule in CLIFF_RULES:
        r = stored["cliff"][rule]
        assert math.isfinite(r["mean_return_101_500"])
        # every step costs at least 1; a fall costs 100 more
        assert -1000 < r["mean_return_101_500"] <= -13
        assert 0.0 <= r["greedy_path_13_fraction"] <= 1.0
        assert 0.0 <= r["greedy_path_tie_fraction"] <= 1.0
        ret = np.asarray(r["return_per_episode"])
        assert ret.shape == (500,) and np.isfinite(ret).all() and (ret <= -13).all()
        assert r["timing"]["unfinished_seeds"] == 0
        # the recording is consistent: return = -(steps) - 99 * falls, episode by episode
        length = np.asarray(r["length_per_episode"])
        falls = np.asarray(r["falls_per_episode"])
        np.testing.assert_allclose(ret, -length - 99 * falls, rtol=1e-5, atol=1e-3)
        assert r["mean_return_101_500"] == pytest.approx(ret[100:500].mean(), rel=1e-9)

    assert set(stored["maxbias"]) == set(MAXBIAS_RULES)
    for rule in MAXBIAS_RULES:
        pct = np.asarray(stored["maxbias"][rule]["pct_left"])
        assert pct.shape == (300,) and np.isfinite(pct).all()
        assert ((pct >= 0) & (pct <= 100)).all()
        assert stored["maxbias"][rule]["timing"]["unfinished_seeds"] == 0


def test_plots_written(quick_run):
    out = quick_run[0]
    for name in ("cliff_returns.png", "maxbias_left.png"):
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_cliff_figure_6_4(quick_run):
    cliff = quick_run[2]["cliff"]
    ret = {k: cliff[k]["mean_return_101_500"] for k in CLIFF_RULES}
    # Q-learning walks the cliff edge and falls while exploring; Sarsa takes a safer path
    assert ret["q_learning"] < ret["sarsa"] - 10
    assert ret["q_learning"] < ret["expected_sarsa"] - 10
    assert ret["expected_sarsa"] > ret["sarsa"] - 2
    assert cliff["q_learning"]["greedy_path_13_fraction"] >= 0.9
    assert cliff["sarsa"]["greedy_path_13_fraction"] <= 0.1
    assert cliff["q_learning"]["most_common_path"]["length"] == 13


def test_maxbias_figure_6_5(quick_run):
    mb = quick_run[2]["maxbias"]
    q, dq = (np.asarray(mb[k]["pct_left"]) for k in MAXBIAS_RULES)
    assert q[:50].max() > dq[:50].max()
    assert q[:100].mean() > dq[:100].mean() + 10
    assert q[:50].max() > 50  # Q-learning's maximization bias: well above 5% early
    assert dq[200:].mean() < 15  # Double Q-learning near the optimal 5%


def test_summary_printed(quick_run):
    text = "\n".join(quick_run[3])
    assert "mean sum of rewards, episodes 101-500" in text and "% LEFT from A" in text
    # the ASCII path of Q-learning: the row above the cliff, all arrows to the right
    assert "    > > > > > > > > > > > v\n    ^ C C C C C C C C C C G" in text


def test_helpers():
    np.testing.assert_allclose(sutton_barto.moving_average(np.arange(1.0, 6.0), 2),
                               [1.0, 1.5, 2.5, 3.5, 4.5])
    optimal = [(36, 0)] + [(24 + c, 1) for c in range(11)] + [(35, 2)]
    rows = sutton_barto.ascii_path(tuple(optimal)).splitlines()
    assert [r.split() for r in rows] == [
        ["."] * 12, ["."] * 12, [">"] * 11 + ["v"], ["^"] + ["C"] * 10 + ["G"]]
    args = sutton_barto.parse_args(["--seeds", "7"])
    assert args.seeds == 7 and args.out is None
    assert sutton_barto.parse_args(["--quick"]).seeds == sutton_barto.QUICK_SEEDS
    with pytest.raises(SystemExit):
        sutton_barto.parse_args(["--seeds", "0"])
