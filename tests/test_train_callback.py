"""``jaxq.train(callback=fn)``: called once per chunk, in order, on the host, with that
chunk's metrics as Python numbers (what a TensorBoard / W&B logger needs)."""

import numpy as np

import jaxq


def test_callback_sees_every_chunk_in_order():
    rows = []
    cfg = jaxq.TrainConfig(env_id="FrozenLake-v1", num_envs=16, total_steps=16 * 64 * 4,
                           num_chunks=4, eval_episodes=16, eval_every=2)
    res = jaxq.train(cfg, progress=False, callback=lambda i, m: rows.append((i, m)))
    assert [i for i, _ in rows] == [1, 2, 3, 4]
    for i, m in rows:
        assert all(isinstance(v, (int, float)) for v in m.values())
        for k, hist in res.metrics.items():
            if k != "episodes":
                np.testing.assert_equal(m[k], hist[i - 1])
        assert m["episodes"] == res.metrics["episodes"][i - 1]
    assert np.isnan(rows[0][1]["eval_return"]) and np.isfinite(rows[1][1]["eval_return"])
