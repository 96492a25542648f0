"""Grids: the masked structured grid and its metrics (core), the Neumann spectral basis (basis),
fields from files brought onto a grid (regrid)."""

from tracerbayes.grid.core import (
    EARTH_RADIUS,
    CoordinateSystem,
    FaceSet,
    Grid,
    GridError,
)
from tracerbayes.grid.regrid import MissingValues, Regrid, RegridWarning, regrid_mask

__all__ = [
    "CoordinateSystem",
    "EARTH_RADIUS",
    "FaceSet",
    "Grid",
    "GridError",
    "MissingValues",
    "Regrid",
    "RegridWarning",
    "regrid_mask",
]
