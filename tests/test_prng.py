"""jaxq's random words (``jaxq.prng.bits``) are ``jax.random.bits`` bit for bit, computed as
plain JAX operations (unrolled threefry on every backend), and using jaxq changes nothing
about how a user's own ``jax.random`` programs lower."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from jaxq import prng

_bits = jax.jit(prng.bits, static_argnums=1)


@settings(max_examples=10, deadline=None)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=3),
       seed=st.integers(0, 2**32 - 1), split=st.integers(0, 3))
def test_equals_jax_random_bits(shape, seed, split):
    key = jax.random.key(seed)
    if split:
        key = jax.random.split(key, 4)[split]
    ours, theirs = _bits(key, tuple(shape)), jax.random.bits(key, tuple(shape), jnp.uint32)
    assert ours.dtype == jnp.uint32 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_equals_jax_random_bits_at_a_step_size_and_for_raw_keys():
    for key in (jax.random.key(7), jax.random.PRNGKey(7)):  # typed and raw uint32[2]
        np.testing.assert_array_equal(_bits(key, (3, 65_537)),
                                      jax.random.bits(key, (3, 65_537), jnp.uint32))


def test_under_vmap_over_keys():
    keys = jax.random.split(jax.random.key(1), 5)
    np.testing.assert_array_equal(jax.vmap(lambda k: prng.bits(k, (4, 3)))(keys),
                                  jax.vmap(lambda k: jax.random.bits(k, (4, 3), jnp.uint32))(keys))


def test_other_prng_implementations_fall_back_to_jax():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(_bits(key, (2, 50)), jax.random.bits(key, (2, 50), jnp.uint32))


def test_compiles_without_a_rolled_loop():
    """The point of the module: on XLA:CPU the words are straight-line code, not JAX's
    rolled 5-iteration loop (which ``jax.random.bits`` gets on CPU)."""
    key = jax.random.key(0)
    ours = jax.jit(lambda k: prng.bits(k, (3, 1000))).lower(key).compile().as_text()
    assert " while(" not in ours and "xor" in ours
    if jax.default_backend() == "cpu":
        theirs = jax.jit(lambda k: jax.random.bits(k, (3, 1000), jnp.uint32)).lower(
            key).compile().as_text()
        assert " while(" in theirs


def _user_program_text() -> str:
    f = lambda k: (jax.random.bits(k, (3, 1000), jnp.uint32),  # noqa: E731
                   jax.vmap(lambda k: jax.random.bits(k, (5,), jnp.uint32))(
                       jax.random.split(k, 8)))
    return jax.jit(f).lower(jax.random.key(7)).as_text()


def test_using_jaxq_leaves_a_users_random_programs_lowering_unchanged():
    """The user's own ``jax.random.bits`` programs (one key; a batch of keys) lower to the
    same text before and after jaxq trains (evaluation included) in the same process."""
    import jaxq

    before = _user_program_text()
    cfg = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=16, total_steps=16 * 20 * 2,
                           num_chunks=2, eval_every=1, seed=5)
    jaxq.train(cfg, progress=False)
    assert _user_program_text() == before
