"""Linear Q over tile coding (jaxq/tiles.py) through the same training loop as tables:
tile indices by hand, one-hot features learning the table itself, a continuous gymnax
env learning from its observation vectors, and the errors."""

import jax
import numpy as np
import pytest

import jaxq
from jaxq.config import TrainConfig
from jaxq.tiles import OneHot, TileCoder, make_coder
from jaxq.training import build_learner, make_train

# FrozenLake 4x4, 64 envs: small enough that both programs compile in a few seconds
LAKE = dict(env_id="FrozenLake-v1", num_envs=64, total_steps=64 * 300, num_chunks=2,
            eval_every=0)


def test_tile_indices_by_hand_2d_two_tilings():
    # a unit square, 2 tiles per dimension, 2 tilings: each tiling has 3 x 3 cells (one
    # more per dimension than the box needs) and the second is shifted by (1, 3) / 2 tile
    # widths mod 1 = (0.5, 0.5); a tile is tiling * 9 + 3 * cell_x + cell_y
    coder = TileCoder(low=(0.0, 0.0), high=(1.0, 1.0), tiles_per_dim=(2, 2), num_tilings=2,
                      max_tiles=1000)
    np.testing.assert_array_equal(coder.offsets(), [[0.0, 0.0], [0.5, 0.5]])
    assert (coder.tiles_per_tiling, coder.num_tiles, coder.hashed) == (9, 18, False)
    obs = np.array([[0.3, 0.8],    # u = (0.6, 1.6): cells (0, 1) and (1, 2)
                    [1.0, 0.0],    # u = (2, 0): (2, 0) and (2, 0) (clipped at the top)
                    [-5.0, 7.0],   # outside: clipped to (0, 1) -> u = (0, 2)
                    [0.24, 0.26],  # u = (0.48, 0.52): (0, 0) and (0, 1)
                    [0.26, 0.76]])  # u = (0.52, 1.52): the tiles of the first point
    want = np.array([[0 * 3 + 1, 2 * 3 + 0, 0 * 3 + 2, 0 * 3 + 0, 0 * 3 + 1],
                     [9 + 1 * 3 + 2, 9 + 2 * 3 + 0, 9 + 0 * 3 + 2, 9 + 0 * 3 + 1,
                      9 + 1 * 3 + 2]])
    np.testing.assert_array_equal(np.asarray(coder.indices(obs)), want)
    # a batch of any leading shape: [T, *batch]
    assert coder.indices(obs[:4].reshape(2, 2, 2)).shape == (2, 2, 2)
    # past max_tiles the (tiling, cell) pairs are hashed into max_tiles rows
    hashed = TileCoder((0.0, 0.0), (1.0, 1.0), (2, 2), 2, max_tiles=7)
    assert (hashed.hashed, hashed.num_tiles) == (True, 7)
    h = np.asarray(hashed.indices(obs))
    assert h.shape == (2, 5) and h.min() >= 0 and h.max() < 7
    np.testing.assert_array_equal(h[:, 0], h[:, 4])  # same cells, same rows
    np.testing.assert_array_equal(np.asarray(hashed.indices(obs)), h)  # deterministic


def test_coders_of_envs():
    env, params = jaxq.make("CartPole-v1")
    coder = make_coder(env, params, "CartPole-v1", None, None, None, None, 2**20)
    # 8 tilings of 9^4 cells over the discretizer's CartPole box
    assert (coder.num_tilings, coder.tiles_per_dim, coder.num_tiles) == (8, (8,) * 4, 8 * 9**4)
    assert coder.low[0] == -2.4 and coder.high[3] == 3.5
    env, params = jaxq.make("FrozenLake-v1")
    assert make_coder(env, params, "FrozenLake-v1", None, None, None, None, 2**20) == OneHot(16)


def _run(cfg):
    return jax.jit(make_train(cfg))(jax.random.key(0))


def test_linear_over_one_hot_features_learns_the_table():
    cfg = TrainConfig(**LAKE)
    table = np.asarray(_run(cfg).q)
    weights = np.asarray(_run(cfg.replace(q_function="tiles")).q)
    assert weights.shape == table.shape == (16, 4)
    assert np.abs(table).max() > 0.05  # it learned something
    np.testing.assert_allclose(weights, table, rtol=1e-6, atol=1e-7)


def test_cartpole_tiles_learn_from_observation_vectors():
    # 64 envs x 400 steps (25,600 env steps), 8 tilings of 9^4 tiles; a random policy
    # lasts ~22 steps; the greedy policy of the learned weights, over 100 episodes
    cfg = TrainConfig(env_id="CartPole-v1", q_function="tiles", num_envs=64,
                      total_steps=64 * 400, num_chunks=1, eval_every=1, eval_episodes=100)
    learner = build_learner(cfg)
    assert learner.venv.obs_shape == (4,)
    out = _run(cfg)
    assert out.carry.obs.shape == (64, 4) and out.carry.window.s.shape == (1, 64, 4)
    assert out.q.shape == (8 * 9**4, 2)
    eval_return = float(out.metrics["eval_return"][-1])
    assert eval_return > 100, eval_return
    assert np.isnan(float(out.metrics["q_error"][-1]))  # no Q* without a table


@pytest.mark.parametrize("kw, match", [
    (dict(env_id="CartPole-v1", q_function="tiles", bins=4), "bins discretizes"),
    (dict(q_function="tiles", lr_schedule="visit"), "lr_schedule='visit'"),
    (dict(q_function="tiles", num_tilings=0), "num_tilings must be >= 1"),
    (dict(q_function="tiles", tiles_per_dim=[4, 0]), r"tiles_per_dim\[1\] must be >= 1"),
    (dict(num_tilings=4), "num_tilings needs q_function='tiles'"),
    (dict(q_function="lstm"), "q_function must be one of"),
])
def test_bad_config(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(env_id="FrozenLake-v1", num_tilings=4), "one-hot features"),
    (dict(env_id="MountainCar-v0", tiles_per_dim=[4, 4, 4]), "tiles_per_dim must be an int or 2"),
    (dict(env_id="MountainCar-v0", low=[0.0, 0.0], high=[0.0, 1.0]), r"low\[0\] must be < high"),
])
def test_bad_tiles_before_compiling(kw, match):
    with pytest.raises(ValueError, match=match):
        build_learner(TrainConfig(q_function="tiles", **kw))


def test_tables_need_state_indices():
    env, params = jaxq.make("CartPole-v1")
    with pytest.raises(ValueError, match="q_star is an \\[S, A\\] table"):
        build_learner(TrainConfig(env_id="CartPole-v1", q_function="tiles"),
                      q_star=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="a Q-table cannot be evaluated"):
        jaxq.evaluate(env, params, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="pass bins"):
        build_learner(TrainConfig(env_id="CartPole-v1"))


def test_tiles_need_finite_bounds():
    import gymnax
    import jax.numpy as jnp

    inner, params = gymnax.make("MountainCar-v0")
    unbounded = type("Unbounded", (type(inner),), {
        "observation_space": lambda self, p: gymnax.environments.spaces.Box(
            -np.inf, np.inf, (2,), jnp.float32)})()
    with pytest.raises(ValueError, match=r"unbounded in dimension\(s\) \[0, 1\]; pass finite low"):
        make_coder(unbounded, params, "Unbounded", None, None, None, None, 2**20)
    coder = make_coder(unbounded, params, "Unbounded", 4, 2, -1, [1, 2], 2**20)
    assert (coder.low, coder.high, coder.num_tiles) == ((-1.0, -1.0), (1.0, 2.0), 2 * 5 * 5)


def test_saved_weights_are_evaluated_through_the_tile_coder():
    """A tiles run's q.npy holds weights, not a table: ``jaxq train --eval-every 0``'s
    final evaluation (and any reader of q.npy) rolls them out through the coder."""
    import jax
    import numpy as np

    import jaxq
    from jaxq.config import TrainConfig
    from jaxq.tiles import evaluate_weights, saved_q_function

    cfg = TrainConfig(env_id="CartPole-v1", q_function="tiles", tiles_per_dim=4, num_tilings=2)
    env, params = jaxq.make("CartPole-v1")
    qf = saved_q_function(cfg, env, params, 2)
    # weights that always push right: the pole falls within ~10 steps (vs ~22 at random)
    w = np.zeros((qf.coder.num_tiles, 2), np.float32)
    w[:, 1] = 1.0
    ev = evaluate_weights(cfg, env, params, w, 64, jax.random.key(0), 500)
    assert ev.finished == 1.0 and 7.0 < ev.mean_return < 12.0 and ev.mean_length == ev.mean_return
    with pytest.raises(ValueError, match="tile weights must have shape"):
        evaluate_weights(cfg, env, params, w[:-1], 16, jax.random.key(0), 200)
