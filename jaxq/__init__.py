"""jaxq: parallel, distributed and asynchronous tabular Q-learning in pure JAX."""

from jaxq.config import HParams, TrainConfig
from jaxq.envs import make, registered_ids
from jaxq.evaluate import Evaluation, evaluate
from jaxq.model import TabularModel, policy_evaluation, start_value, tabular_model, value_iteration
from jaxq.train import TrainOutput, TrainResult, make_train, train

__version__ = "0.1.0"

__all__ = [
    "make", "registered_ids", "TabularModel", "tabular_model", "value_iteration",
    "policy_evaluation", "start_value", "TrainConfig", "HParams", "make_train", "train",
    "TrainOutput", "TrainResult", "evaluate", "Evaluation",
]
