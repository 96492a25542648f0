"""Open edges: a grid cut out of a larger ocean, padded so its box is not a coast.

The reduced model's basis (:mod:`tracerbayes.grid.basis`) is the Neumann eigenvectors of the
masked grid: every edge of the grid is a wall. Where the grid ends on land (a closed basin)
that is the truth. Where it ends in open water (a box cut out of the Pacific), a wall is
wrong: a smooth field's prior variance doubles along it and quadruples in its corners (the
reflected correlations of a Neumann field), and correlations bend back from it. Maps of a
regional box then have an overconfident interior and overdispersed, distorted edges.

:func:`pad_open_edges` extends each open edge (an edge row or column with at least one wet
cell) outward by ``cells`` cells, continuing the mask straight out (each new row or column
repeats the edge's land and water), with the edge's cell size. The model is fitted and mapped
on the padded grid, which moves the walls a correlation length away; the maps are then cut
back to the original box (``window``). Latitudes stop at the poles; a periodic longitude
axis has no x edges to pad.
"""

from __future__ import annotations

import math

import numpy as np

from tracerbayes.grid.core import CoordinateSystem, Grid

__all__ = ["open_edges", "pad_open_edges", "auto_pad_cells", "PAD_FRACTION"]

#: ``grid.pad: auto`` pads each open edge by this fraction of the grid's longer side (at
#: least 2 cells): about the prior's largest lengthscale (the mean state's median is 8/3 of
#: a tenth of the extent), so the wall is a correlation length away.
PAD_FRACTION = 0.15


def open_edges(grid: Grid) -> dict[str, bool]:
    """Which edges of the grid end in water: ``south``, ``north``, ``west``, ``east`` (west
    and east are never open on a periodic grid)."""
    mask = grid.mask
    wrap = bool(grid.periodic_x)
    return {"south": bool(mask[0].any()), "north": bool(mask[-1].any()),
            "west": not wrap and bool(mask[:, 0].any()),
            "east": not wrap and bool(mask[:, -1].any())}


def auto_pad_cells(grid: Grid) -> int:
    """``grid.pad: auto``: ``ceil(PAD_FRACTION * max(nx, ny))`` cells, at least 2, when some
    edge is open; 0 for a closed basin."""
    if not any(open_edges(grid).values()):
        return 0
    ny, nx = grid.shape
    return max(2, math.ceil(PAD_FRACTION * max(nx, ny)))


def _extended(edges: np.ndarray, before: int, after: int) -> np.ndarray:
    """Cell edges with ``before`` and ``after`` cells added, each of the end cell's size."""
    low = edges[0] - (edges[1] - edges[0]) * np.arange(before, 0, -1)
    high = edges[-1] + (edges[-1] - edges[-2]) * np.arange(1, after + 1)
    return np.concatenate([low, edges, high])


def pad_open_edges(grid: Grid, cells: int) -> tuple[Grid, tuple[slice, slice]]:
    """``grid`` with each open edge extended by ``cells`` cells, and the (y, x) slices of the
    padded grid that are ``grid`` (the module docstring).

    ``padded.mask[window]`` equals ``grid.mask``, and so do the centres and edges. A closed
    edge (all land) is not padded; latitude padding stops at the poles.
    """
    if cells < 0:
        raise ValueError(f"pad cells must be >= 0, got {cells}")
    edges = open_edges(grid)
    south, north, west, east = (cells if edges[side] else 0
                                for side in ("south", "north", "west", "east"))
    if grid.coords is CoordinateSystem.LONLAT:  # no cell past a pole
        dy_s = grid.y_edges[1] - grid.y_edges[0]
        dy_n = grid.y_edges[-1] - grid.y_edges[-2]
        south = min(south, int(np.floor((grid.y_edges[0] + 90.0) / dy_s + 1e-9)))
        north = min(north, int(np.floor((90.0 - grid.y_edges[-1]) / dy_n + 1e-9)))
    ny, nx = grid.shape
    window = (slice(south, south + ny), slice(west, west + nx))
    if not (south or north or west or east):
        return grid, window
    x_edges = _extended(grid.x_edges, west, east)
    y_edges = _extended(grid.y_edges, south, north)
    x = np.concatenate([0.5 * (x_edges[1:west + 1] + x_edges[:west]), grid.x,
                        0.5 * (x_edges[west + nx + 1:] + x_edges[west + nx:-1])])
    y = np.concatenate([0.5 * (y_edges[1:south + 1] + y_edges[:south]), grid.y,
                        0.5 * (y_edges[south + ny + 1:] + y_edges[south + ny:-1])])
    mask = np.pad(grid.mask, ((south, north), (west, east)), mode="edge")
    padded = Grid(x, y, x_edges, y_edges, mask, grid.coords, grid.periodic_x, grid.radius)
    return padded, window
