"""Three folders are left out of a plain ``pytest`` (``make test``):

* ``multidevice/`` needs XLA_FLAGS set before JAX starts, so it runs as a second pytest
  session with ``JAXQ_MULTIDEVICE=1`` (``make test`` does both);
* ``experiments/`` runs the experiment scripts of ``experiments/`` (``--quick`` smoke
  runs, their results files, plots and BENCHMARKS.md sections, and the baselines they
  compare against): ``JAXQ_EXPERIMENTS=1 pytest tests/experiments`` (``make test-all``);
* ``slow/`` holds the long end-to-end learning runs (millions of steps to a tight
  tolerance) whose property ``make test`` checks at a small size: ``make test-slow``
  (``JAXQ_SLOW=1``; ``slow/multidevice`` also with ``JAXQ_MULTIDEVICE=1``), run by
  ``make test-all``.
"""

import os

collect_ignore = []
if not os.environ.get("JAXQ_MULTIDEVICE"):
    collect_ignore.append("multidevice")
if not os.environ.get("JAXQ_EXPERIMENTS"):
    collect_ignore.append("experiments")
if not os.environ.get("JAXQ_SLOW"):
    collect_ignore.append("slow")

# The CLI keeps a persistent compilation cache in the user's cache folder by default; tests
# (and the jaxq subprocesses they start) leave the user's folders alone.
os.environ.setdefault("JAXQ_COMPILE_CACHE", "off")
