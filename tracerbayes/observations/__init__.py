"""Observations: the container and its readers, the interpolation operator, time assignment."""

from tracerbayes.observations.core import (
    ObservationError,
    ObservationOperator,
    Observations,
    ObservationWarning,
    PaddedObservations,
    PreparedObservations,
)

__all__ = [
    "ObservationError",
    "ObservationOperator",
    "ObservationWarning",
    "Observations",
    "PaddedObservations",
    "PreparedObservations",
]
