"""tracerbayes: Bayesian maps of ocean tracers from sparse, noisy observations.

Float64 is strongly recommended for Kalman filtering. tracerbayes does not change JAX's
global configuration at import; enable it yourself before any computation::

    import jax
    jax.config.update("jax_enable_x64", True)

The command-line interface and the test-suite do this for you.
"""

from tracerbayes import basis, ensemble, inversion, metrics, physics, priors, simulate
from tracerbayes.distribution import LinearGaussianStateSpace
from tracerbayes.grid import EARTH_RADIUS, CoordinateSystem, Grid, GridError
from tracerbayes.inference import SamplingWarning, fit
from tracerbayes.model import (
    AdvectionDiffusionModel,
    ConstantVelocity,
    GivenVelocity,
    Priors,
    StreamfunctionVelocity,
)
from tracerbayes.observations import (
    ObservationError,
    ObservationOperator,
    Observations,
    ObservationWarning,
    PreparedObservations,
)
from tracerbayes.posterior import Posterior

__version__ = "0.1.0"

__all__ = [
    "AdvectionDiffusionModel",
    "ConstantVelocity",
    "EARTH_RADIUS",
    "CoordinateSystem",
    "Grid",
    "GivenVelocity",
    "GridError",
    "LinearGaussianStateSpace",
    "ObservationError",
    "ObservationOperator",
    "ObservationWarning",
    "Observations",
    "Posterior",
    "PreparedObservations",
    "Priors",
    "SamplingWarning",
    "StreamfunctionVelocity",
    "basis",
    "ensemble",
    "fit",
    "inversion",
    "metrics",
    "physics",
    "priors",
    "simulate",
    "__version__",
]
