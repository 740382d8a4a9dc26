"""Atomic, pickle-free checkpoints of a training run.

A checkpoint is one ``.npz`` file: the loop's carry (every array leaf, PRNG keys as raw
key data), the host-side metrics history, the config as JSON and a SHA-256 digest of all
of it. It is written to a temporary file in the same directory and renamed over the old
one, so a crash mid-write never leaves a half-written checkpoint and never destroys the
previous one. Loading checks the digest, the config and every leaf's shape and dtype
against what the run expects, and raises ``ValueError`` on any mismatch.

With several processes (``jax.distributed``) every process calls ``save`` (gathering a
table sharded across processes is a collective), process 0 alone writes, and all wait for
the file before going on; every process ``load``s the same file (a filesystem the
processes share) and places each leaf with the sharding the run gives it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

FORMAT = "jaxq-checkpoint-v1"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (.npz): with members, empty


def safe_reason(e: Exception) -> str:
    """Why NumPy could not load a file, without its advice to load pickles unsafely."""
    text = str(e)
    if "pickle" in text:
        return "it holds pickled Python objects, which jaxq never loads"
    return f"{type(e).__name__}: {text}"


def to_host(x) -> np.ndarray:
    """A (possibly process-spanning) array as NumPy, the same on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _leaves(tree) -> list[np.ndarray]:
    out = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(to_host(leaf))
    return out


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def _place(a: np.ndarray, sharding) -> jax.Array:
    """``a`` (the whole global value, on every process) as an array laid out by ``sharding``."""
    if sharding is None:
        return jax.numpy.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])


def _key_data_sharding(sharding):
    """The sharding of a key array's raw data: the key's, plus an unsharded trailing axis."""
    from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding
    if sharding is None or isinstance(sharding, SingleDeviceSharding):
        return sharding
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec, None))
    if sharding.is_fully_replicated:
        return sharding
    raise ValueError(f"cannot restore a PRNG key sharded as {sharding}")


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
    """Write the checkpoint (process 0 only; every process must call this)."""
    arrays = {f"carry_{i:04d}": a for i, a in enumerate(_leaves(carry))}
    error = None
    if jax.process_index() == 0:
        try:
            _write(path, arrays, history, config_json)
        except Exception as e:  # noqa: BLE001 - raised after the barrier, not before
            error = e
    _sync(f"jaxq-checkpoint-saved:{os.path.abspath(path)}")  # no process hangs on a failure
    if error is not None:
        raise error


def _write(path: str, arrays: dict[str, np.ndarray], history: dict[str, np.ndarray],
           config_json: str) -> None:
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


@dataclass(frozen=True)
class Restored:
    """A checkpoint read and checked, still on the host: the carry's leaves (keys as raw
    key data) in tree order, and the metrics history."""

    leaves: list
    is_key: list
    treedef: Any
    history: dict


def run_kind(config: dict) -> tuple[str, str]:
    """``(q_function, algo)`` of a config as saved: a ``TrainConfig`` names its
    ``q_function``; a ``DeepConfig`` (algo ``pqn``/``dqn``) has none and is a network's,
    ``"mlp"``. A checkpoint of one kind is never resumed as another."""
    algo = str(config.get("algo"))
    return str(config.get("q_function", "mlp" if algo in ("pqn", "dqn") else "table")), algo


def read(path: str, template_carry, config_json: str) -> Restored:
    """Read and check a checkpoint against ``template_carry`` (e.g. from
    ``jax.eval_shape``) and the run's config; nothing is placed on a device, so a corrupt
    or foreign file is reported before anything compiles."""
    with open(path, "rb") as f:  # FileNotFoundError as it is
        magic = f.read(4)
    if magic not in ZIP_MAGIC:  # never let NumPy suggest loading it unsafely
        raise ValueError(f"corrupt checkpoint {path!r}: not a .npz file "
                         f"({'empty' if not magic else 'it does not start like a zip archive'})")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # truncated zip, bad header, pickled content...
        raise ValueError(f"corrupt checkpoint {path!r}: {safe_reason(e)}") from None
    if str(arrays.get("format", "")) != FORMAT or "digest" not in arrays or "config" not in arrays:
        raise ValueError(f"corrupt checkpoint {path!r}: not a {FORMAT} file")
    digest = str(arrays.pop("digest"))
    if _digest(arrays) != digest:
        raise ValueError(f"corrupt checkpoint {path!r}: digest mismatch")
    saved_cfg = json.loads(str(arrays["config"]))
    want_cfg = json.loads(config_json)
    saved_kind, want_kind = run_kind(saved_cfg), run_kind(want_cfg)
    if saved_kind != want_kind:  # before the field list, which would name them all
        raise ValueError(
            f"checkpoint {path!r} holds a run of q_function={saved_kind[0]!r} (algo "
            f"{saved_kind[1]!r}); this run is q_function={want_kind[0]!r} (algo "
            f"{want_kind[1]!r}): resume it with the same q_function and algo, or start a new "
            "run elsewhere")
    if saved_cfg != want_cfg:
        diff = sorted(k for k in set(saved_cfg) | set(want_cfg) if saved_cfg.get(k) != want_cfg.get(k))
        raise ValueError(f"checkpoint {path!r} was written by a different config (fields {diff})")
    template_leaves, treedef = jax.tree.flatten(template_carry)
    leaves, is_key = [], []
    for i, t in enumerate(template_leaves):
        name = f"carry_{i:04d}"
        if name not in arrays:
            raise ValueError(f"checkpoint {path!r} does not match this run: missing {name}")
        a = arrays[name]
        key = jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key)
        spec = jax.eval_shape(jax.random.key_data, t) if key else t
        want_shape, want_dtype = tuple(spec.shape), np.dtype(spec.dtype)
        if a.shape != tuple(want_shape) or a.dtype != want_dtype:
            raise ValueError(
                f"checkpoint {path!r} does not match this run: leaf {i} is {a.dtype}{list(a.shape)},"
                f" expected {want_dtype}{list(want_shape)}"
            )
        leaves.append(a)
        is_key.append(key)
    history = {k[len("metric_"):]: v for k, v in arrays.items() if k.startswith("metric_")}
    return Restored(leaves, is_key, treedef, history)


def place(restored: Restored, shardings=None):
    """The carry on devices: each leaf laid out by ``shardings`` (a tree matching the
    carry, e.g. the compiled init's ``output_shardings``; None: the default device)."""
    n = len(restored.leaves)
    placements = [None] * n if shardings is None else jax.tree.leaves(shardings)
    if len(placements) != n:
        raise ValueError(f"shardings has {len(placements)} leaves, the carry {n}")
    out = []
    for a, key, sharding in zip(restored.leaves, restored.is_key, placements):
        out.append(jax.random.wrap_key_data(_place(a, _key_data_sharding(sharding))) if key
                   else _place(a, sharding))
    return jax.tree.unflatten(restored.treedef, out)


def load(path: str, template_carry, config_json: str,
         shardings=None) -> tuple[Any, dict[str, np.ndarray]]:
    """``(carry, history)``: ``read`` then ``place``."""
    restored = read(path, template_carry, config_json)
    return place(restored, shardings), restored.history
