"""Eight CPU devices for the slow strategy runs: set before JAX initialises its backend
(as tests/multidevice/conftest.py does for ``make test``'s 8-device session)."""

import os

DEVICES = 8
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={DEVICES}".strip()
