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

jaxq registers this for CPU when ``jaxq.training`` is imported; ``JAXQ_CPU_THREEFRY``
(``auto``, ``unrolled`` or ``rolled`` = JAX's own) overrides it. This reaches into JAX's
internals (there is no public switch); where they differ from what is expected, nothing
is changed.
"""

from __future__ import annotations

import os

ENV_VAR = "JAXQ_CPU_THREEFRY"
CHOICES = ("auto", "unrolled", "rolled")


def set_cpu_threefry(lowering: str) -> bool:
    """Lower threefry on CPU as ``"auto"`` (unrolled for a single key, rolled for batched
    keys), ``"unrolled"`` or ``"rolled"`` (JAX's default) from now on (programs compiled
    earlier keep theirs). Returns whether the lowering was registered."""
    if lowering not in CHOICES:
        raise ValueError(f"lowering must be one of {CHOICES}, got {lowering!r}")
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        unrolled, rolled = tf._threefry2x32_lowering_rule, tf._threefry2x32_cpu_lowering_rule

        def auto(ctx, *args, **params):
            single_key = all(a.size <= 1 for a in ctx.avals_in[:2])
            return (unrolled if single_key else rolled)(ctx, *args, **params)

        rule = {"auto": auto, "unrolled": unrolled, "rolled": rolled}[lowering]
        mlir.register_lowering(tf.threefry2x32_p, rule, platform="cpu")
    except (ImportError, AttributeError):  # another JAX layout: keep JAX's own choice
        return False
    return True


def configure_from_env() -> str | None:
    """Apply ``JAXQ_CPU_THREEFRY`` (default ``auto``); returns the lowering in effect, or
    None where JAX's internals were not as expected."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {CHOICES}, got {choice!r}")
    return choice if set_cpu_threefry(choice) else None
