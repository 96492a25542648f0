"""tracerbayes: Bayesian maps of ocean tracers from sparse, noisy observations.

Float64 is strongly recommended for Kalman filtering. tracerbayes does not change JAX's
global configuration at import; enable it yourself before any computation::

    import jax
    jax.config.update("jax_enable_x64", True)

The command-line interface and the test-suite do this for you.

The front door re-exports the names most users need; the packages behind it are
``grid``, ``physics``, ``observations`` (what the numerics stand on), ``exact`` and
``ensemble`` (the two families of inference), ``posterior``, ``io``, ``plot``, ``twin`` and
``cli`` (the edges). ``tb.plot``, ``tb.io``, ``tb.twin``, ``tb.metrics``, ``tb.simulate``,
``tb.basis``, ``tb.priors``, ``tb.inversion`` and ``tb.importance`` are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from tracerbayes import ensemble, physics
from tracerbayes.exact.distribution import LinearGaussianStateSpace
from tracerbayes.exact.model import (
    AdvectionDiffusionModel,
    ConstantVelocity,
    GivenVelocity,
    Priors,
    StreamfunctionVelocity,
)
from tracerbayes.fitting import CalibrationWarning, ResolutionWarning, SamplingWarning, fit
from tracerbayes.grid import EARTH_RADIUS, CoordinateSystem, Grid, GridError
from tracerbayes.methods import EKI, ETKF, LETKF, NUTS, Auto, EnKF, Laplace, Method
from tracerbayes.observations import (
    ObservationError,
    ObservationOperator,
    Observations,
    ObservationWarning,
    PreparedObservations,
)
from tracerbayes.posterior import Posterior

__version__ = "0.1.0"

#: Modules reachable as attributes of the package, imported on first use.
_LAZY = {
    "basis": "tracerbayes.grid.basis",
    "importance": "tracerbayes.ensemble.importance",
    "inversion": "tracerbayes.ensemble.inversion",
    "io": "tracerbayes.io",
    "metrics": "tracerbayes.posterior.metrics",
    "plot": "tracerbayes.plot",
    "priors": "tracerbayes.exact.priors",
    "simulate": "tracerbayes.twin.simulate",
    "twin": "tracerbayes.twin",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tracerbayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AdvectionDiffusionModel",
    "Auto",
    "EKI",
    "ETKF",
    "EnKF",
    "LETKF",
    "Laplace",
    "Method",
    "NUTS",
    "ResolutionWarning",
    "CalibrationWarning",
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
    "importance",
    "inversion",
    "metrics",
    "physics",
    "plot",
    "priors",
    "simulate",
    "__version__",
]
