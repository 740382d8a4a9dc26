"""The multi-device tests need XLA_FLAGS set before JAX starts, so they run as a second
pytest session (``make test`` does both); a plain ``pytest`` here skips them."""

import os

collect_ignore = [] if os.environ.get("JAXQ_MULTIDEVICE") else ["multidevice"]
