"""Which of JAX's two lowerings of the threefry PRNG XLA:CPU compiles.

Every jaxq step draws its random words with ``jax.random.bits`` (threefry2x32, one block
per environment per step). On CPU, JAX lowers threefry as a *rolled* loop (5 iterations of
4 rounds, for compile time); on GPUs it uses the *unrolled* 20 rounds. On XLA:CPU the
rolled loop is several small kernels per iteration, each a synchronisation point of the
intra-op thread pool. ``experiments/cpu_threefry.py`` times the lowerings side by side
(interleaved rounds, Q-learning on FrozenLake 8x8, 2-core VM): unrolled was 1.3x faster at
N = 256, 1.25x at N = 4,096 and 0.9x-1.5x at N = 262,144 (0.9x when the machine ran at its
best), with the same compile time. The bits are the same: both lowerings compute the same
function, so tables, tests and checkpoints do not change.

That holds for one key hashing many counters (jaxq's words). For a batch of keys (``vmap``
over split keys, as gymnax environments step) unrolled measured about 2x *slower*
(gymnax CartPole through the discretizing adapter). So the default, ``auto``, unrolls only
where the key is a single one and keeps JAX's rolled loop for batched keys.

A library must not change how its users' programs compile, so this is **opt-in**: by
default (``JAXQ_CPU_THREEFRY`` unset, or ``rolled`` = JAX's own) ``scoped()`` changes
nothing at all and every program, jaxq's included, lowers as JAX decides. Set
``JAXQ_CPU_THREEFRY=auto`` (or ``unrolled``) to have ``scoped()`` install that lowering
while jaxq lowers its own programs (``jaxq.train``, ``jaxq bench``) and put JAX's rule back
afterwards; it reaches into JAX's internals (there is no public switch), and a program
another thread lowers during those calls would see it too. It pays with the words computed
once per step: rolled 30-33M vs auto 62M env steps/s, FrozenLake 8x8 at N = 65,536 on the
2-core VM (the benchmark scripts in experiments/ opt in and say so); where JAX's internals
differ from what is expected, nothing is changed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

ENV_VAR = "JAXQ_CPU_THREEFRY"
CHOICES = ("auto", "unrolled", "rolled")
_LOCK = threading.RLock()  # one scoped lowering at a time


def _rule(lowering: str):
    """``(primitive, rule)`` for a lowering, or None where JAX's internals differ."""
    if lowering not in CHOICES:
        raise ValueError(f"lowering must be one of {CHOICES}, got {lowering!r}")
    try:
        from jax._src.random import threefry2x32 as tf

        unrolled, rolled = tf._threefry2x32_lowering_rule, tf._threefry2x32_cpu_lowering_rule
    except (ImportError, AttributeError):  # another JAX layout: keep JAX's own choice
        return None

    def auto(ctx, *args, **params):
        single_key = all(a.size <= 1 for a in ctx.avals_in[:2])
        return (unrolled if single_key else rolled)(ctx, *args, **params)

    return tf.threefry2x32_p, {"auto": auto, "unrolled": unrolled, "rolled": rolled}[lowering]


def choice_from_env() -> str:
    """``JAXQ_CPU_THREEFRY`` (default ``rolled``: JAX's own lowering, nothing changed), checked."""
    choice = os.environ.get(ENV_VAR, "rolled").strip().lower() or "rolled"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {CHOICES}, got {choice!r}")
    return choice


@contextlib.contextmanager
def scoped(lowering: str | None = None) -> Iterator[str | None]:
    """Lower threefry on CPU as ``lowering`` (default: ``JAXQ_CPU_THREEFRY``, else
    ``rolled``) inside the block only; JAX's rule in effect before is restored on exit.
    ``rolled`` is JAX's own choice: then nothing is touched. Yields the lowering in effect,
    or None where nothing was installed. Wrap ``.lower(...)`` calls: lowering is where it
    applies."""
    lowering = choice_from_env() if lowering is None else lowering
    if lowering == "rolled":  # JAX's own rule: leave JAX's tables alone
        _rule(lowering)  # (validates the name)
        yield None
        return
    found = _rule(lowering)
    try:
        from jax._src.interpreters import mlir
        table = mlir._platform_specific_lowerings["cpu"]
        entry = mlir.LoweringRuleEntry
    except (ImportError, AttributeError, KeyError, TypeError):
        found = None
    if found is None:
        yield None
        return
    prim, rule = found
    with _LOCK:
        previous = table.get(prim)
        table[prim] = entry(rule, True)
        try:
            yield lowering
        finally:
            if previous is None:
                table.pop(prim, None)
            else:
                table[prim] = previous
