"""Fields read from files, brought onto a model :class:`~tracerbayes.grid.core.Grid`.

A file (a land/sea mask, a velocity) holds a field on its own rectilinear grid of cell
centres ``(x_f, y_f)``, in the model grid's units (degrees on lon/lat grids, metres on x/y
grids). Nothing here changes a field silently:

* the file's cells (edges half-way between its centres, the outer ones mirrored) must cover
  the centre of every model cell that needs a value, else :func:`check_coverage` names the
  uncovered extent (and says when the file's coordinates look like kilometres or radians);
* regridding happens only when asked (:class:`Regrid`), and is reported
  (:class:`RegridWarning`);
* sea cells left without a value are an error unless a fill is asked
  (:class:`MissingValues`, :func:`check_missing`).

The three regridding rules, for a model cell ``c`` with centre ``(x, y)``:

1. nearest: the value of the file's cell that contains ``(x, y)``;
2. linear: bilinear interpolation between the four file centres around ``(x, y)``; beyond
   the outermost file centres (within the file's outer half cells) the outermost values;
3. fraction (masks): wet where ``f_c = |c ∩ W| / |c ∩ F| >= threshold``, with ``W`` the
   union of the file's wet cells, ``F`` the file's extent and ``|.|`` the area (on a sphere:
   ``d(lon) d(sin lat)``), from the overlaps of the model's and the file's cells along
   each axis. A fraction within 1e-9 of ``threshold`` counts as reaching it.
"""

from __future__ import annotations

import enum
import warnings
from typing import Any

import numpy as np

from tracerbayes.grid.core import (
    CoordinateSystem,
    Grid,
    GridError,
    _check_axis,
    _edges_from_centres,
)

__all__ = ["MissingValues", "Regrid", "RegridWarning", "check_coverage", "check_missing",
           "describe_axes", "fields_on_grid", "file_edges", "linear_on_grid",
           "nearest_on_grid", "on_grid", "regrid_mask", "wet_fraction"]

#: How many cells a message lists by position.
_SHOWN = 5


class RegridWarning(UserWarning):
    """A field from a file was regridded or filled to fit the model grid, as asked; the
    message says how and what it changed."""


class Regrid(enum.Enum):
    """How a field on another grid is brought to the model grid (module docstring rules)."""

    #: Each model cell takes the file's cell containing its centre.
    NEAREST = "nearest"
    #: Bilinear interpolation between the file's centres (velocities).
    LINEAR = "linear"
    #: Masks: wet where at least ``threshold`` of the cell's area is wet in the file.
    FRACTION = "fraction"


class MissingValues(enum.Enum):
    """What to do with sea cells that have no value (NaN, infinite or outside the data)."""

    #: Refuse the field, naming the cells.
    ERROR = "error"
    #: Set them to zero (for a velocity: still water there).
    ZERO = "zero"
    #: Give each the value of the nearest cell (in cells) that has one, per time.
    NEAREST = "nearest"


# ------------------------------------------------------------------------ describing
def _unit(grid: Grid) -> str:
    return "deg" if grid.coords is CoordinateSystem.LONLAT else "m"


def _span(lo: float, hi: float) -> str:
    return f"[{lo:.6g}, {hi:.6g}]"


def describe_axes(grid: Grid, x_edges: np.ndarray, y_edges: np.ndarray,
                  units: bool = True) -> str:
    """``"10 x 12 cells (ny x nx) on x [0, 120000] m, y [0, 100000] m"`` (the grid's units
    named unless ``units`` is False: a file's numbers as they are)."""
    ydim, xdim = grid.dims
    unit = _unit(grid) if units else ""
    return (f"{y_edges.size - 1} x {x_edges.size - 1} cells (ny x nx) on "
            f"{xdim} {_span(x_edges[0], x_edges[-1])}{unit and ' ' + unit}, "
            f"{ydim} {_span(y_edges[0], y_edges[-1])}{unit and ' ' + unit}")


def file_edges(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """A file's cell edges, half-way between its centres ``x, y`` (the outer ones mirrored);
    :class:`GridError` unless the centres are finite, increasing and at least 2 per axis."""
    return (_edges_from_centres(_check_axis("x of the file", x)),
            _edges_from_centres(_check_axis("y of the file", y)))


def _positions(grid: Grid, cells: np.ndarray) -> str:
    """The extent of ``cells`` (cell edges) and the centres of the first few."""
    ydim, xdim = grid.dims
    rows, cols = np.nonzero(cells)
    unit = _unit(grid)
    first = ", ".join(f"({grid.x[i]:.6g}, {grid.y[j]:.6g})"
                      for j, i in zip(rows[:_SHOWN], cols[:_SHOWN], strict=True))
    more = f" and {rows.size - _SHOWN} more" if rows.size > _SHOWN else ""
    return (f"in {xdim} {_span(grid.x_edges[cols.min()], grid.x_edges[cols.max() + 1])} "
            f"{unit}, {ydim} {_span(grid.y_edges[rows.min()], grid.y_edges[rows.max() + 1])} "
            f"{unit}; the first at ({xdim}, {ydim}) = {first}{more}")


# ------------------------------------------------------------------------ coverage
def on_grid(grid: Grid, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether the file's centres ``x, y`` are the grid's centres, to 1/100 of the smallest
    cell (coordinates stored as float32 differ from the grid's by more than round-off)."""
    return all(
        a.shape == b.shape
        and np.allclose(a, b, rtol=0, atol=1e-2 * float(np.min(np.diff(edges))))
        for a, b, edges in ((np.asarray(x, float), grid.x, grid.x_edges),
                            (np.asarray(y, float), grid.y, grid.y_edges)))


def _units_hint(grid: Grid, x_edges: np.ndarray, y_edges: np.ndarray) -> str:
    """A sentence when the file's coordinate range suggests other units, else ``""``."""
    ratio = float(np.sqrt((x_edges[-1] - x_edges[0]) / (grid.x_edges[-1] - grid.x_edges[0])
                          * (y_edges[-1] - y_edges[0]) / (grid.y_edges[-1] - grid.y_edges[0])))
    ydim, xdim = grid.dims
    names = f"its {xdim}/{ydim}"
    if grid.coords is CoordinateSystem.CARTESIAN and 1 / 3000 < ratio < 1 / 300:
        return (f"; {names} span about 1/1000 of the grid's (ratio {ratio:.3g}): they look "
                "like kilometres on a grid in metres; write them in metres (multiply by "
                "1000)")
    if grid.coords is CoordinateSystem.LONLAT and 0.5 < ratio * 180 / np.pi < 2:
        return (f"; {names} span about pi/180 of the grid's (ratio {ratio:.3g}): they look "
                "like radians; write them in degrees")
    if ratio < 1 / 30 or ratio > 30:
        return (f"; {names} span {ratio:.3g} times the grid's: are they in other units, or "
                "on another grid?")
    return ""


def check_coverage(grid: Grid, x: np.ndarray, y: np.ndarray, cells: np.ndarray,
                   kind: str, what_to_do: str = "") -> None:
    """Raise :class:`GridError` unless the file's cells cover the centre of every one of
    ``cells`` (bool, (ny, nx)).

    The message gives the file's extent, how many of ``cells`` (called ``kind`` cells:
    ``"wet"``, ``"model"``) lie outside it and where, and ends with a hint when the file's
    coordinates look like other units, else with ``what_to_do``.
    """
    x_edges, y_edges = file_edges(x, y)
    tol_x = 1e-6 * float(np.min(np.diff(grid.x_edges)))
    tol_y = 1e-6 * float(np.min(np.diff(grid.y_edges)))
    inside_x = (grid.x >= x_edges[0] - tol_x) & (grid.x <= x_edges[-1] + tol_x)
    inside_y = (grid.y >= y_edges[0] - tol_y) & (grid.y <= y_edges[-1] + tol_y)
    outside = cells & ~(inside_y[:, None] & inside_x[None, :])
    if not outside.any():
        return
    n, total = int(outside.sum()), int(cells.sum())
    raise GridError(
        f"the data cover only {describe_axes(grid, x_edges, y_edges, units=False)}; {n} of "
        f"the grid's {total} {kind} cells "
        f"({describe_axes(grid, grid.x_edges, grid.y_edges)}) lie outside, "
        f"{_positions(grid, outside)}"
        f"{_units_hint(grid, x_edges, y_edges) or what_to_do}")


# ------------------------------------------------------------------------ regridding
def _nearest_index(edges: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, points, side="right") - 1, 0, edges.size - 2)


def nearest_on_grid(values: Any, x: np.ndarray, y: np.ndarray, grid: Grid) -> np.ndarray:
    """``values`` (..., ny_f, nx_f) at the grid's centres: each takes the file's cell that
    contains it (rule 1)."""
    x_edges, y_edges = file_edges(x, y)
    values = np.asarray(values)
    return values[..., _nearest_index(y_edges, grid.y)[:, None],
                  _nearest_index(x_edges, grid.x)[None, :]]


def _linear_weights(centres: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour ``k`` and weight ``t`` of the right one, points clipped to the ends."""
    points = np.clip(points, centres[0], centres[-1])
    k = np.clip(np.searchsorted(centres, points, side="right") - 1, 0, centres.size - 2)
    return k, (points - centres[k]) / (centres[k + 1] - centres[k])


def _mix(left: np.ndarray, right: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(1 - t) left + t right``, exactly ``left`` at ``t = 0`` and ``right`` at ``t = 1``
    (so a NaN neighbour with weight zero does not spread)."""
    return np.where(t == 0, left, np.where(t == 1, right, (1 - t) * left + t * right))


def linear_on_grid(values: Any, x: np.ndarray, y: np.ndarray, grid: Grid) -> np.ndarray:
    """``values`` (..., ny_f, nx_f) at the grid's centres by bilinear interpolation (rule 2)."""
    x = _check_axis("x of the file", x)
    y = _check_axis("y of the file", y)
    values = np.asarray(values, dtype=float)
    kx, tx = _linear_weights(x, grid.x)
    along_x = _mix(values[..., kx], values[..., kx + 1], tx)
    ky, ty = _linear_weights(y, grid.y)
    return _mix(along_x[..., ky, :], along_x[..., ky + 1, :], ty[:, None])


def fields_on_grid(grid: Grid, fields: dict[str, Any], x: np.ndarray, y: np.ndarray,
                   method: Regrid | None, what_to_do: str, option: str) -> dict[str, np.ndarray]:
    """Fields (..., ny_f, nx_f) on another grid brought to the grid's centres.

    The file must cover every wet cell (:func:`check_coverage`, its message ending with
    ``what_to_do``); ``method`` is ``LINEAR`` or ``NEAREST`` (a :class:`RegridWarning` says
    what was done), or None to refuse, naming both grids and how to ask (``option``).
    """
    check_coverage(grid, x, y, grid.mask, "wet", what_to_do)
    source = describe_axes(grid, *file_edges(x, y))
    names = ", ".join(map(repr, fields))
    if method is None:
        raise GridError(
            f"{names} are on another grid than the model: {source}, the model "
            f"{describe_axes(grid, grid.x_edges, grid.y_edges)}. Write them on the model "
            f"grid's cell centres, or ask for an interpolation to them: {option}")
    if method not in (Regrid.LINEAR, Regrid.NEAREST):
        raise GridError(f"a field is regridded by linear or nearest, not {method.value}")
    on_model = linear_on_grid if method is Regrid.LINEAR else nearest_on_grid
    warnings.warn(f"{names} regridded ({method.value}) from {source} to the "
                  f"model's {grid.shape[0]} x {grid.shape[1]} cell centres", RegridWarning,
                  stacklevel=3)
    return {name: on_model(values, x, y, grid) for name, values in fields.items()}


def _overlaps(edges: np.ndarray, source_edges: np.ndarray) -> Any:
    """Lengths of the overlaps of the cells between ``edges`` with those between
    ``source_edges``, a sparse (n, n_file) matrix."""
    import scipy.sparse as sp

    n_file = source_edges.size - 1
    first = np.clip(np.searchsorted(source_edges, edges[:-1], side="right") - 1, 0, n_file)
    stop = np.clip(np.searchsorted(source_edges, edges[1:], side="left"), 0, n_file)
    count = np.maximum(stop - first, 0)
    rows = np.repeat(np.arange(edges.size - 1), count)
    cols = np.repeat(first, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count,
                                                                      count)
    length = (np.minimum(edges[1:][rows], source_edges[cols + 1])
              - np.maximum(edges[:-1][rows], source_edges[cols]))
    return sp.csr_matrix((np.maximum(length, 0.0), (rows, cols)),
                         shape=(edges.size - 1, n_file))


def _y_measure(grid: Grid, y_edges: np.ndarray) -> np.ndarray:
    """Edges along y in a coordinate proportional to area: sin(lat) on a sphere."""
    if grid.coords is CoordinateSystem.LONLAT:
        return np.sin(np.deg2rad(np.clip(y_edges, -90.0, 90.0)))
    return y_edges


def wet_fraction(wet: Any, x: np.ndarray, y: np.ndarray, grid: Grid) -> np.ndarray:
    """The wet fraction ``f_c`` of each model cell (rule 3), shape (ny, nx), NaN where the
    cell does not overlap the file."""
    x_edges, y_edges = file_edges(x, y)
    along_x = _overlaps(grid.x_edges, x_edges)  # (nx, nx_f)
    along_y = _overlaps(_y_measure(grid, grid.y_edges), _y_measure(grid, y_edges))
    wet_area = along_y @ (along_x @ np.asarray(wet, dtype=float).T).T
    covered = np.outer(np.asarray(along_y.sum(axis=1)).ravel(),
                       np.asarray(along_x.sum(axis=1)).ravel())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered > 0, wet_area / covered, np.nan)


def _percent(wet: np.ndarray, area: np.ndarray) -> str:
    """The area-weighted mean of ``wet`` (a fraction or a mask) as a percentage."""
    return f"{100 * float((wet * area).sum() / area.sum()):.1f}%"


def regrid_mask(wet: Any, x: np.ndarray, y: np.ndarray, grid: Grid, method: Regrid,
                threshold: float = 0.5) -> tuple[np.ndarray, str]:
    """A file's wet mask (bool, (ny_f, nx_f), centres ``x, y``) on the grid's cells.

    Parameters
    ----------
    method : Regrid
        ``NEAREST`` or ``FRACTION`` (rules 1 and 3 of the module docstring).
    threshold : float
        ``FRACTION``: the least wet fraction of a wet model cell, in (0, 1].

    Returns
    -------
    wet : ndarray of bool, shape (ny, nx)
    report : str
        What changed: the wet and land cells, the wet share of the area before and after,
        and (``FRACTION``) how many cells differ from the nearest-cell mask.

    Raises
    ------
    GridError
        If the file does not cover every model cell's centre (:func:`check_coverage`).
    """
    if method not in (Regrid.NEAREST, Regrid.FRACTION):
        raise GridError(f"a mask is regridded by nearest or fraction, not {method.value}")
    if not 0 < threshold <= 1:
        raise GridError(f"threshold must be in (0, 1], got {threshold:g}")
    wet = np.asarray(wet, dtype=bool)
    check_coverage(grid, x, y, np.ones(grid.shape, dtype=bool), "model",
                   ". Give a mask that covers the grid, or shrink the grid to the mask")
    nearest = nearest_on_grid(wet, x, y, grid)
    fraction = np.nan_to_num(wet_fraction(wet, x, y, grid))
    if method is Regrid.NEAREST:
        out, how = nearest, "nearest: each cell takes the file's cell containing its centre"
        changes = ""
    else:
        out = fraction >= threshold - 1e-9
        how = f"fraction: wet where at least {threshold:g} of the cell's area is wet"
        became_land = int((nearest & ~out).sum())
        became_sea = int((~nearest & out).sum())
        changes = (f"; {became_land + became_sea} cells differ from a nearest-cell lookup "
                   f"({became_land} became land, {became_sea} sea)")
    area = grid.cell_area
    x_edges, y_edges = file_edges(x, y)
    report = (f"mask regridded ({how}) from {describe_axes(grid, x_edges, y_edges)} to "
              f"{describe_axes(grid, grid.x_edges, grid.y_edges)}: {int(out.sum())} wet and "
              f"{int((~out).sum())} land cells; wet share of the area "
              f"{_percent(fraction, area)} in the file, {_percent(out, area)} after"
              f"{changes}")
    return out, report


# ------------------------------------------------------------------------ missing values
def _fill_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each invalid entry of the last two axes takes the nearest valid one (in cells)."""
    from scipy.ndimage import distance_transform_edt

    out = values.copy()
    for k in np.ndindex(values.shape[:-2]):
        if not valid[k].any():
            raise GridError("a field has no valid value at all to fill from")
        _, (rows, cols) = distance_transform_edt(~valid[k], return_indices=True)
        out[k] = values[k][rows, cols]
    return out


def check_missing(grid: Grid, fields: dict[str, Any], how: MissingValues,
                  option: str) -> tuple[dict[str, np.ndarray], str]:
    """Fields (..., ny, nx) on the grid, checked for values missing at sea.

    Parameters
    ----------
    fields : dict
        Variable name -> values on the grid's cells; leading axes (e.g. time) allowed.
    how : MissingValues
        Refuse, or fill with zero or the nearest value, the non-finite values on wet cells
        (values on land are left as they are).
    option : str
        How to ask for a fill, quoted in the error message.

    Returns
    -------
    fields : dict
        The fields, filled where asked.
    report : str
        ``""`` if nothing was missing, else what was filled.

    Raises
    ------
    GridError
        ``how`` is ERROR and some wet cell lacks a value: the message gives how many cells
        (per variable and time), the open faces they touch, where they are and what to do.
    """
    fields = {name: np.asarray(values, dtype=float) for name, values in fields.items()}
    invalid = {name: ~np.isfinite(values) & grid.mask for name, values in fields.items()}
    cells = np.zeros(grid.shape, dtype=bool)
    for bad in invalid.values():
        cells |= bad.reshape((-1, *grid.shape)).any(axis=0)
    if not cells.any():
        return fields, ""
    faces = (int((grid.east_open & (cells | np.roll(cells, -1, axis=1))).sum())
             + int((grid.north_open & (cells | np.roll(cells, -1, axis=0))).sum()))
    per_name = ", ".join(f"{name!r} at {int(bad.reshape((-1, *grid.shape)).any(axis=0).sum())}"
                         for name, bad in invalid.items())
    lead = next(iter(fields.values())).shape[:-2]
    times = ""
    if lead:
        steps = np.zeros(lead, dtype=bool)
        for bad in invalid.values():
            steps |= bad.any(axis=(-2, -1))
        times = f" in {int(steps.sum())} of {steps.size} time steps"
    what = (f"{int(cells.sum())} of the {grid.n_wet} sea cells have no value (NaN or "
            f"missing: {per_name}){times}, touching {faces} of the "
            f"{int(grid.east_open.sum() + grid.north_open.sum())} open faces")
    if how is MissingValues.ERROR:
        raise GridError(f"{what}; they lie {_positions(grid, cells)}. Fill them in the file "
                        f"(e.g. from neighbouring values), or ask for a fill: {option}")
    filled = {}
    for name, values in fields.items():
        valid = np.isfinite(values)
        if how is MissingValues.ZERO:
            filled[name] = np.where(valid | ~grid.mask, values, 0.0)
        else:
            filled[name] = np.where(valid | ~grid.mask, values, _fill_nearest(values, valid))
    return filled, f"{what}: filled ({how.value})"
