"""A cache of jaxq's own compiled programs on disk, so a rerun with the same shapes loads
them instead of compiling (``jaxq train`` keeps one in ``~/.cache/jaxq/xla`` by default).

JAX has a persistent compilation cache, but it is switched on through ``jax.config`` for
the whole process: every program the user compiles would go through it. This one covers
only the programs jaxq compiles itself (``jaxq.train``): the lowered program's text, JAX's
versions and the program's devices (their ids, in order) name an entry, and an entry is
JAX's own serialized executable (``jax.experimental.serialize_executable``), loaded back
onto those devices (one of 8, or a mesh of some or all of them). Nothing is unpickled:
the argument and result structures come from the lowered program itself. A cache that cannot be read or written
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


def _devices(lowered) -> list | None:
    """The devices ``lowered`` was laid out for, in the program's order (one for an
    unsharded program, the mesh's for a sharded one), or None where JAX does not say.

    An entry has to be loaded onto exactly these: JAX's loader otherwise assigns it every
    device of the process, and a program built for fewer then fails at its first call
    ("Expected args to execute_sharded_on_local_devices to have 8 shards, got: [1]" for a
    one-device program with 8 devices present; an abort for a mesh of 2 of 8). JAX keeps
    them on the lowering (``_device_list``, not public); without it nothing is cached."""
    devices = getattr(getattr(lowered, "_lowering", None), "_device_list", None)
    return None if devices is None else list(devices)


def _entry(lowered, devices: list) -> str:
    import jaxlib

    h = hashlib.sha256()
    # the program's device ids are part of the name: the lowered text is the same for a
    # mesh on devices 0-1 and one on devices 2-3
    for part in ("v3", jax.__version__, jaxlib.__version__, devices[0].platform,
                 devices[0].device_kind, str(len(jax.devices())), str(jax.process_count()),
                 ",".join(str(d.id) for d in devices), lowered.as_text()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest() + ".xla"


def compile(lowered, cache_dir: str | None) -> Any:
    """``lowered.compile()``, through the cache in ``cache_dir`` (None: no cache)."""
    if cache_dir is None or jax.process_count() > 1:  # (one process's programs only)
        return lowered.compile()
    devices = _devices(lowered)
    if not devices:
        return lowered.compile()
    from jax.experimental.serialize_executable import deserialize_and_load, serialize

    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)),
                        _entry(lowered, devices))
    try:
        with open(path, "rb") as f:
            loaded = deserialize_and_load(f.read(), lowered.in_tree, lowered.out_tree,
                                          execution_devices=devices)
        if list(loaded.runtime_executable().local_devices()) == devices:
            return loaded
    except Exception:  # absent, unreadable or from another build: compile afresh
        pass
    compiled = lowered.compile()
    try:
        payload = serialize(compiled)[0]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)  # atomic: a reader never sees half an entry
    except Exception:
        pass
    return compiled
