"""Grids: the masked structured grid and its metrics (core), the Neumann spectral basis (basis)."""

from tracerbayes.grid.core import (
    EARTH_RADIUS,
    CoordinateSystem,
    FaceSet,
    Grid,
    GridError,
)

__all__ = [
    "CoordinateSystem",
    "EARTH_RADIUS",
    "FaceSet",
    "Grid",
    "GridError",
]
