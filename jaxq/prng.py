"""jaxq's random words: ``jax.random.bits`` of one key, as straight-line JAX operations.

Every jaxq step needs a block of uint32 words from one key (one per environment and use).
``jax.random.bits`` computes them with JAX's threefry2x32 primitive, which JAX lowers two
ways: on GPU and TPU as the unrolled 20 rounds, on XLA:CPU as a *rolled* loop (5
iterations of 4 rounds, kept small for compile time). On XLA:CPU the rolled loop is several
small kernels per iteration, each a synchronisation point of the intra-op thread pool:
Q-learning on FrozenLake 8x8 at N = 65,536 ran at about half the env steps/s with it
(30-33M vs 62M on the 2-core VM; ``experiments/cpu_threefry.py`` times both side by side).

``bits`` computes the *same* function (Salmon et al. 2011's Threefry-2x32 with 20 rounds,
applied to the counters JAX uses under ``jax_threefry_partitionable``, the default since
JAX 0.5) with ordinary ``jnp`` operations, so XLA compiles the unrolled form on every
backend, and nothing about JAX is changed: a user's own ``jax.random`` programs lower as JAX
decides, before, during and after jaxq runs. A test checks the words equal
``jax.random.bits`` bit for bit. Where the key is not a threefry key (a user who chose
``jax_default_prng_impl=rbg``), or JAX is configured for its older non-partitionable
counters, ``bits`` is exactly ``jax.random.bits``.

Only jaxq's single-key draws use this. Batched keys (``vmap`` over split keys, as gymnax
environments step) keep JAX's own lowering: there the unrolled form measured about 2x
slower on XLA:CPU.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Threefry-2x32's rotation constants (two alternating groups of 4 rounds) and key-schedule parity
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: jax.Array, d: int) -> jax.Array:
    return lax.shift_left(x, np.uint32(d)) | lax.shift_right_logical(x, np.uint32(32 - d))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block cipher (20 rounds) of counter pairs ``(x0, x1)`` under the
    key ``(k0, k1)``, unrolled: the same function as JAX's ``threefry2x32_p``."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):  # 5 groups of 4 rounds, each followed by a key injection
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _is_threefry(key: jax.Array) -> bool:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(key)
    else:  # a raw uint32 key: JAX reads it with the default implementation
        impl = jax.config.jax_default_prng_impl
    return "threefry" in str(impl)


def bits(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """``jax.random.bits(key, shape, jnp.uint32)``, bit for bit, for one key (a typed key
    or a raw ``uint32[2]``), computed so that XLA:CPU compiles it unrolled (see the module
    docstring); falls back to ``jax.random.bits`` itself where the two could differ."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    if (key.shape not in ((), (2,)) or not _is_threefry(key)
            or not jax.config.jax_threefry_partitionable or size >= 2**32):
        return jax.random.bits(key, shape, jnp.uint32)
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = data.astype(jnp.uint32)
    if size == 0:
        return jnp.zeros(shape, jnp.uint32)
    # the counters JAX uses: the row-major index of each element as a 64-bit number split
    # into (high, low) words; the high word is 0 below 2^32 elements
    lo = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for dim in reversed(range(len(shape))):
        lo = lo + lax.broadcasted_iota(jnp.uint32, shape, dim) * np.uint32(stride)
        stride *= shape[dim]
    if not shape:
        lo = jnp.uint32(0)
    b0, b1 = threefry2x32(data[0], data[1], jnp.zeros_like(lo), lo)
    return b0 ^ b1
