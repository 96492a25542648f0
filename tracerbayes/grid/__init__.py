"""Grids: the masked structured grid and its metrics (core), the Neumann spectral basis (basis),
fields from files brought onto a grid (regrid), open edges padded (padding)."""

from tracerbayes.grid.core import (
    EARTH_RADIUS,
    CoordinateSystem,
    FaceSet,
    Grid,
    GridError,
)
from tracerbayes.grid.padding import auto_pad_cells, open_edges, pad_open_edges
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
    "auto_pad_cells",
    "open_edges",
    "pad_open_edges",
    "regrid_mask",
]
