"""Q-learning throughput and time to solution: jaxq beside a classic Python loop over
Gymnasium and a vectorized NumPy Q-learner, in the same run.

A thin wrapper: the implementation is ``jaxq/bench.py`` (importable, and what
``jaxq bench`` runs), so both commands run the same code with the same options::

    python experiments/throughput.py                 # the default run (a few minutes on CPU)
    python experiments/throughput.py --quick         # seconds; into a temp dir unless --out
    python experiments/throughput.py --full          # 120 s caps for the classic loop
    python experiments/throughput.py --markdown-only # re-render BENCHMARKS.md from results.json
    python experiments/throughput.py --profile /tmp/prof --num-envs 65536

Writes ``experiments/results/throughput/results.json`` and the ``throughput`` section of
``experiments/BENCHMARKS.md``; see ``jaxq/bench.py`` for what is measured and how.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402,F401  (the same module object jaxq.bench uses)

from jaxq import bench  # noqa: E402

main = bench.main
run = bench.run

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
