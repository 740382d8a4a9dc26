"""Atomic, pickle-free checkpoints of a training run.

A checkpoint is one ``.npz`` file: the loop's carry (every array leaf, PRNG keys as raw
key data), the host-side metrics history, the config as JSON and a SHA-256 digest of all
of it. It is written to a temporary file in the same directory and renamed over the old
one, so a crash mid-write never leaves a half-written checkpoint and never destroys the
previous one. Loading checks the digest, the config and every leaf's shape and dtype
against what the run expects, and raises ``ValueError`` on any mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import jax
import numpy as np

FORMAT = "jaxq-checkpoint-v1"


def _leaves(tree) -> list[np.ndarray]:
    out = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: str, carry, history: dict[str, np.ndarray], config_json: str) -> None:
    arrays = {f"carry_{i:04d}": a for i, a in enumerate(_leaves(carry))}
    arrays.update({f"metric_{k}": np.asarray(v) for k, v in history.items()})
    arrays["config"] = np.array(config_json)
    arrays["format"] = np.array(FORMAT)
    arrays["digest"] = np.array(_digest(arrays))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str, template_carry, config_json: str) -> tuple[Any, dict[str, np.ndarray]]:
    """Restore ``(carry, history)``; ``template_carry`` gives the expected structure
    (e.g. from ``jax.eval_shape``)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated zip, bad header, pickled content...
        raise ValueError(f"corrupt checkpoint {path!r}: {type(e).__name__}: {e}") from None
    if str(arrays.get("format", "")) != FORMAT or "digest" not in arrays or "config" not in arrays:
        raise ValueError(f"corrupt checkpoint {path!r}: not a {FORMAT} file")
    digest = str(arrays.pop("digest"))
    if _digest(arrays) != digest:
        raise ValueError(f"corrupt checkpoint {path!r}: digest mismatch")
    saved_cfg = json.loads(str(arrays["config"]))
    want_cfg = json.loads(config_json)
    if saved_cfg != want_cfg:
        diff = sorted(k for k in set(saved_cfg) | set(want_cfg) if saved_cfg.get(k) != want_cfg.get(k))
        raise ValueError(f"checkpoint {path!r} was written by a different config (fields {diff})")
    template_leaves, treedef = jax.tree.flatten(template_carry)
    restored = []
    for i, t in enumerate(template_leaves):
        name = f"carry_{i:04d}"
        if name not in arrays:
            raise ValueError(f"checkpoint {path!r} does not match this run: missing {name}")
        a = arrays[name]
        is_key = jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key)
        spec = jax.eval_shape(jax.random.key_data, t) if is_key else t
        want_shape, want_dtype = tuple(spec.shape), np.dtype(spec.dtype)
        if a.shape != tuple(want_shape) or a.dtype != want_dtype:
            raise ValueError(
                f"checkpoint {path!r} does not match this run: leaf {i} is {a.dtype}{list(a.shape)},"
                f" expected {want_dtype}{list(want_shape)}"
            )
        restored.append(jax.random.wrap_key_data(a) if is_key else jax.numpy.asarray(a))
    history = {k[len("metric_"):]: v for k, v in arrays.items() if k.startswith("metric_")}
    return jax.tree.unflatten(treedef, restored), history
