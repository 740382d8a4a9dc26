"""A cache of jaxq's own compiled programs on disk, so a rerun with the same shapes loads
them instead of compiling (``jaxq train`` keeps one in ``~/.cache/jaxq/xla`` by default).

JAX has a persistent compilation cache, but it is switched on through ``jax.config`` for
the whole process: every program the user compiles would go through it. This one covers
only the programs jaxq compiles itself (``jaxq.train``): the lowered program's text, JAX's
versions and the devices name an entry, and an entry is JAX's own serialized executable
(``jax.experimental.serialize_executable``). Nothing is unpickled: the argument and result
structures come from the lowered program itself. A cache that cannot be read or written
only costs the speed-up.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import jax

ENV_VAR = "JAXQ_COMPILE_CACHE"


def default_dir(setting: str | None = None) -> str | None:
    """The cache folder for ``setting`` (a folder, or ``off`` = none), by default
    ``$JAXQ_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/jaxq/xla`` (``~/.cache/jaxq/xla``)."""
    setting = os.environ.get(ENV_VAR) if setting is None else setting
    if setting is not None and setting.strip().lower() in ("off", "0", "none", ""):
        return None
    if setting:
        return setting
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxq", "xla")


def _entry(lowered) -> str:
    import jaxlib

    devices = jax.devices()
    h = hashlib.sha256()
    for part in ("v2", jax.__version__, jaxlib.__version__, devices[0].platform,
                 devices[0].device_kind, str(len(devices)), str(jax.process_count()),
                 lowered.as_text()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest() + ".xla"


def compile(lowered, cache_dir: str | None) -> Any:
    """``lowered.compile()``, through the cache in ``cache_dir`` (None: no cache)."""
    if cache_dir is None or jax.process_count() > 1:  # (one process's programs only)
        return lowered.compile()
    from jax.experimental.serialize_executable import deserialize_and_load, serialize

    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), _entry(lowered))
    try:
        with open(path, "rb") as f:
            return deserialize_and_load(f.read(), lowered.in_tree, lowered.out_tree)
    except Exception:  # absent, unreadable or from another build: compile afresh
        pass
    compiled = lowered.compile()
    try:
        # A program on some of the devices (a mesh of 2 of 8) is not cached: JAX loads an
        # entry onto all devices, and such a program then aborts the process (XLA's
        # "sharding's tile count and device count does not match" check).
        ran_on = list(compiled.runtime_executable().local_devices())
        if ran_on not in ([jax.devices()[0]], list(jax.devices())):
            return compiled
        payload = serialize(compiled)[0]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)  # atomic: a reader never sees half an entry
    except Exception:
        pass
    return compiled
