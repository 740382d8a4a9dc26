"""`make run`: solve FrozenLake 8x8 slippery exactly and roll out the optimal policy."""

import time

import jax
import jax.numpy as jnp

import jaxq


def main() -> None:
    env, params = jaxq.make("FrozenLake8x8-v1")
    t0 = time.perf_counter()
    model = jaxq.tabular_model(env, params)
    q_star = jaxq.value_iteration(model, 0.99, tol=1e-8)
    greedy = jnp.argmax(q_star, axis=1)
    print(f"FrozenLake8x8-v1: value iteration in {time.perf_counter() - t0:.2f}s, "
          f"V*(start) = {float(jaxq.start_value(model, q_star)):.4f}")
    print(env.render_policy(greedy, params))


if __name__ == "__main__":
    main()
