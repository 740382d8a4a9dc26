"""jaxq: parallel, distributed and asynchronous tabular Q-learning in pure JAX.

The public names below are loaded on first use. Importing ``jaxq`` therefore starts no
JAX backend, which lets ``jax.distributed.initialize`` run first (importing gymnax
creates arrays, so the environments are only imported when needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "make": "jaxq.envs",
    "registered_ids": "jaxq.envs",
    "register": "jaxq.envs",
    "to_gymnasium": "jaxq.gymnasium_interop",
    "to_gymnasium_vector": "jaxq.gymnasium_interop",
    "from_gymnasium": "jaxq.gymnasium_interop",
    "TabularModel": "jaxq.model",
    "tabular_model": "jaxq.model",
    "value_iteration": "jaxq.model",
    "policy_evaluation": "jaxq.model",
    "start_value": "jaxq.model",
    "policy_start_value": "jaxq.model",
    "TrainConfig": "jaxq.config",
    "HParams": "jaxq.config",
    "make_train": "jaxq.training",
    "train": "jaxq.training",
    "TrainOutput": "jaxq.training",
    "TrainResult": "jaxq.training",
    "evaluate": "jaxq.evaluation",
    "Evaluation": "jaxq.evaluation",
    "make_tabular": "jaxq.envs.discretize",
    "make_mesh": "jaxq.strategies",
    "init_distributed": "jaxq.strategies",
    "DeepConfig": "jaxq.deep_config",
    "DeepHParams": "jaxq.deep_config",
    "train_deep": "jaxq.deep_config",
    "make_train_pqn": "jaxq.pqn",
    "make_train_dqn": "jaxq.dqn",
    "QNetwork": "jaxq.networks",
    "load_policy": "jaxq.policy",
    "GreedyPolicy": "jaxq.policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
