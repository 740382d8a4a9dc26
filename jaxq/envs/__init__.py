"""Pure-JAX environments: tabular ones with Gymnasium's exact dynamics, and adapters."""

from jaxq.envs.base import Outcomes, TabularEnvironment, TabularParams, TabularState
from jaxq.envs.registry import env_specs, make, register, registered_ids

# Importing a family module registers its ids.
from jaxq.envs import frozen_lake  # noqa: F401,E402
from jaxq.envs import taxi  # noqa: F401,E402
from jaxq.envs import cliff_walking  # noqa: F401,E402
from jaxq.envs import maze  # noqa: F401,E402
from jaxq.envs import textbook  # noqa: F401,E402
from jaxq.envs import recommender  # noqa: F401,E402
from jaxq.envs import trading  # noqa: F401,E402

__all__ = [
    "Outcomes", "TabularEnvironment", "TabularParams", "TabularState",
    "make", "register", "registered_ids", "env_specs",
]
