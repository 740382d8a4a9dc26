"""A deep run (PQN or DQN) driven chunk by chunk from the host, with atomic checkpoints
that resume bit for bit.

``make_train_pqn``/``make_train_dqn`` compile a whole run as one program, which is what
``vmap`` over seeds and hyperparameters needs, but a long run then has nothing to show
or save until it ends, and a crash loses all of it. Here the same ``DeepLearner``
(``init(key, hp) -> carry``, ``chunk(carry, hp) -> (carry, metrics)``) is compiled
twice, once per piece, and the host loops over the chunks like ``jaxq.train`` does for
tables: a progress line, a callback per chunk, and every ``checkpoint_every`` chunks
(and after the last) the whole carry goes to ``out/checkpoint.npz`` through
``jaxq.checkpoint`` (written to a temporary file and renamed, so a crash never leaves
half a checkpoint and never destroys the previous one).

The carry is everything the run needs to go on: network parameters, optimizer state,
the actors' stale copy (strategy ``async``), DQN's target network and replay buffer,
every env state and observation, running episode returns, the PRNG keys and the
counters (env steps, gradient steps, chunks). ``resume=True`` loads it, laid out as a
fresh run's carry, and continues with the same compiled chunk, so the interrupted and
resumed run ends with the uninterrupted run's parameters and metrics, bit for bit.
Everything is checked before anything compiles: a corrupt file, another config, or a
checkpoint of another Q-function or algorithm is a ``ValueError`` naming what differs.

With several processes (``jax.distributed``, strategies ``replicated``/``async`` on a
mesh spanning them) every process runs this same loop; the carry's per-env leaves are
sharded over all devices, ``jaxq.checkpoint`` gathers them for process 0 to write, and
every process reads the (shared) file back with its own layout.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import numpy as np

from jaxq import checkpoint as ckpt
from jaxq import compile_cache as compile_cache_lib
from jaxq.deep_config import DeepConfig, DeepResult, host_history
from jaxq.pqn import DeepLearner

CHECKPOINT = "checkpoint.npz"  # in ``out``, as ``jaxq train --out`` names its own


def make_learner(config: DeepConfig, mesh: Any = None) -> DeepLearner:
    """PQN's or DQN's ``DeepLearner``, by ``config.algo`` (``mesh``: the devices of
    strategies ``replicated``/``async``; default ``config.num_devices`` of JAX's)."""
    if not isinstance(config, DeepConfig):
        raise TypeError(f"config must be a DeepConfig, got {type(config).__name__}")
    if config.algo == "pqn":
        from jaxq.pqn import make_pqn_learner
        return make_pqn_learner(config, mesh)
    from jaxq.dqn import make_dqn_learner
    return make_dqn_learner(config, mesh)


def _host(x) -> np.ndarray:
    """A (possibly process-spanning) array as NumPy: a replicated one from this process's
    own copy (no collective), a sharded one gathered (``jaxq.checkpoint.to_host``)."""
    if getattr(x, "is_fully_replicated", False):
        return np.asarray(x.addressable_shards[0].data)
    return ckpt.to_host(x)


def checkpoint_path(out: str) -> str:
    """Where a run with ``out`` keeps its checkpoint."""
    return os.path.join(out, CHECKPOINT)


def run(config: DeepConfig, *, mesh: Any = None, out: str | None = None,
        checkpoint_every: int = 0, resume: bool = False,
        stop_after_chunks: int | None = None, progress: bool = False,
        callback: Callable[[int, dict[str, float]], Any] | None = None,
        compile_cache: str | None = None,
        before_run: Callable[[], None] | None = None) -> DeepResult:
    """Train ``config`` (key ``config.seed``) chunk by chunk.

    ``out``: the run's directory; ``checkpoint_every`` (chunks, 0: never) writes
    ``out/checkpoint.npz`` every that many chunks and after the last; ``resume=True``
    continues from it when it exists (from scratch otherwise) to the uninterrupted run's
    result, bit for bit. ``stop_after_chunks`` ends this call early (an interruption, for
    tests). ``progress`` prints a bar or lines on stderr (process 0); ``callback(chunk,
    row)`` is called after every chunk (from 1) with that chunk's row of the history as
    Python numbers. ``compile_cache``: a folder for ``jaxq.compile_cache`` (None: none).
    ``before_run()`` is called once everything is checked (the config, the devices, the
    checkpoint) and before anything compiles, e.g. to write a run's files only when it
    can start.
    Timings keep compilation apart from running; ``steps_per_s`` counts the env steps run
    by this call."""
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
    if not isinstance(resume, bool):
        raise TypeError(f"resume must be true or false, got {resume!r}")
    if stop_after_chunks is not None and (isinstance(stop_after_chunks, bool) or not isinstance(
            stop_after_chunks, int) or stop_after_chunks < 1):
        raise ValueError(f"stop_after_chunks must be an int >= 1 or None, got "
                         f"{stop_after_chunks!r}")
    if out is None and (checkpoint_every or resume):
        raise ValueError("checkpoint_every and resume need out (the run's directory, where "
                         f"{CHECKPOINT} is kept)")
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={out!r} exists and is not a directory")
    learner = make_learner(config, mesh)
    key, hp = jax.random.key(config.seed), config.hparams()
    config_json = config.to_json()
    path = None if out is None else checkpoint_path(out)
    restored = None
    fresh = jax.eval_shape(learner.init, key, hp)  # the carry's shapes, dtypes, weak types
    if resume and os.path.exists(path):
        # before compiling: a corrupt or foreign checkpoint is reported at once
        restored = ckpt.read(path, fresh, config_json)
    if before_run is not None:
        before_run()

    t0 = time.perf_counter()
    init_c = compile_cache_lib.compile(jax.jit(learner.init).lower(key, hp), compile_cache)
    raw: dict[str, np.ndarray] = {}
    if restored is None:
        carry = init_c(key, hp)
    else:  # laid out as a fresh run's carry (sharded over devices, maybe processes)
        carry = ckpt.place(restored, init_c.output_shardings)
        raw = restored.history
    # lowered for a fresh run's carry, weak types included (a restored leaf is strongly
    # typed: an env's weak int32 step counter would otherwise trace, and compile, another
    # program), so a resumed run runs, and loads from the cache, the program of a fresh one
    abstract = jax.tree.map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding,
                                                 weak_type=s.weak_type),
        fresh, init_c.output_shardings)
    chunk_c = compile_cache_lib.compile(
        jax.jit(learner.chunk, donate_argnums=0).lower(abstract, hp), compile_cache)
    compile_s = time.perf_counter() - t0

    plan = config.plan()
    num_chunks = plan["num_chunks"]
    start = int(_host(carry.chunk))
    if len(raw.get("episodes", ())) != start:
        raise ValueError(f"checkpoint {path!r} is inconsistent: its carry has {start} chunks "
                         f"done, its history {len(raw.get('episodes', ()))}")
    end = num_chunks if stop_after_chunks is None else min(num_chunks, start + stop_after_chunks)
    bar = None
    if progress and jax.process_index() == 0:
        from jaxq.progress import Progress
        bar = Progress(f"{config.algo} {config.env_id}", num_chunks,
                       plan["chunk_iters"] * plan["steps_per_iteration"], start)
        if restored is not None:
            bar.note(f"resuming at chunk {start}/{num_chunks} from {path}")
    run_s = 0.0
    for i in range(start, end):
        t1 = time.perf_counter()
        carry, m = chunk_c(carry, hp)
        m = {k: np.atleast_1d(_host(v)) for k, v in m.items()}
        dt = time.perf_counter() - t1
        run_s += dt
        raw = m if not raw else {k: np.concatenate([raw[k], m[k]]) for k in m}
        history = host_history(config, raw)
        if bar is not None:
            bar.update(i + 1, dt, float(history["mean_return"][-1]))
        if callback is not None:
            callback(i + 1, {k: v[-1].item() for k, v in history.items()})
        if checkpoint_every and ((i + 1) % checkpoint_every == 0 or i + 1 == num_chunks):
            ckpt.save(path, carry, raw, config_json)
    if bar is not None:
        bar.close()
    steps_run = (end - start) * plan["chunk_iters"] * plan["steps_per_iteration"]
    result = learner.output(carry, raw)
    host = lambda tree: jax.tree.map(_host, tree)  # noqa: E731
    timings = {"compile_s": compile_s, "run_s": run_s,
               "steps_per_s": steps_run / run_s if run_s > 0 else float("nan")}
    return DeepResult(host(result.params), host_history(config, raw) if raw else {}, timings,
                      config, None if result.target_params is None
                      else host(result.target_params))
