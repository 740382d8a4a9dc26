"""Long end-to-end learning runs (``make test-slow``, ``JAXQ_SLOW=1``; ``make test-all``
runs it, ``make test`` does not).

Each test here ran in ``make test`` until the suite outgrew CI's 8 minutes: millions of
environment steps to a tight tolerance, seconds of CPU each. Its docstring says what
``make test`` still checks of the same property at a small size. ``multidevice/`` needs
8 forced CPU devices set before JAX starts, so it is its own session with
``JAXQ_MULTIDEVICE=1`` as well (``make test-slow`` runs both).
"""

import os

collect_ignore = [] if os.environ.get("JAXQ_MULTIDEVICE") else ["multidevice"]
