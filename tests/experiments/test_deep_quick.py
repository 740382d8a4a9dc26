"""Deep Q-learning end to end (slow: whole compiled runs): PQN learns CartPole well above
a random policy, a DQN run's target network is a copy of the online one after a multiple
of C gradient steps, ``jaxq train-deep`` writes its run and refuses bad flags before
writing anything, and ``experiments/deep.py --quick`` writes its results and section."""

import json

import jax
import numpy as np

import experiment_modules
from cli_runner import error, run
from jaxq import dqn, pqn
from jaxq.deep_config import DeepConfig

TINY = dict(env_id="CartPole-v1", num_envs=4, width=8, depth=1, num_chunks=2,
            eval_episodes=2, eval_max_steps=10)


def test_pqn_learns_cartpole_well_above_random():
    # a uniformly random policy keeps the pole up ~22 steps; PQN's defaults, 150k steps
    config = DeepConfig(algo="pqn", total_steps=150_000, num_chunks=5, eval_episodes=20)
    out = jax.jit(pqn.make_train_pqn(config))(jax.random.key(0))
    ev = np.asarray(out.metrics["eval_return"])
    assert ev.max() >= 150 and ev[-1] >= 100, ev


''' && cat /tmp/moved.py >> tests/experiments/test_deep_quick.py && cat >> tests/experiments/test_deep_quick.py <<'EOF'
def test_the_experiment_runs_and_writes_its_section(tmp_path):
    exp = experiment_modules.load("deep")
    results = exp.main(["--quick", "--out", str(tmp_path)], log=lambda *_: None)
    stored = json.loads((tmp_path / "results" / "deep" / "results.json").read_text())
    rec = stored["records"][0]
    assert stored["config"]["seeds"] == 2 and len(rec["eval_return"]) == 2
    assert len(rec["env_steps"]) == 2 and rec["steps_per_s"] > 0
    assert results["records"][0]["env_steps"] == rec["env_steps"]
    assert "PQN on CartPole-v1" in (tmp_path / "BENCHMARKS.md").read_text()
