"""jaxq: parallel, distributed and asynchronous tabular Q-learning in pure JAX."""

from jaxq.envs import make, registered_ids
from jaxq.model import TabularModel, policy_evaluation, start_value, tabular_model, value_iteration

__version__ = "0.1.0"

__all__ = [
    "make", "registered_ids", "TabularModel", "tabular_model", "value_iteration",
    "policy_evaluation", "start_value",
]
