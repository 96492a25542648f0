"""Structured 2-D grids with a land/sea mask and finite-volume metrics.

A :class:`Grid` is a regular (possibly non-uniform) tensor-product grid of cells, either in
longitude/latitude (degrees, with metrics on a sphere of Earth's radius) or in Cartesian x/y
(metres).  It carries everything the finite-volume physics needs: cell areas (m^2), face
lengths (m), centre-to-centre distances across faces (m) and which faces are open (both
neighbours wet and not a closed boundary).

Array conventions (used throughout the package):

* 2-D fields have shape ``(ny, nx)``: rows are latitude/y (ascending), columns longitude/x
  (ascending).
* "East face" arrays ``(ny, nx)`` describe the face between cell ``(j, i)`` and
  ``(j, i + 1)``; on a non-periodic grid the last column is the closed outer boundary.
  "North face" arrays ``(ny, nx)`` describe the face between ``(j, i)`` and ``(j + 1, i)``;
  the last row is the closed outer boundary.
* The state vector of the tracer holds the wet cells only, in row-major (C) order of the
  2-D grid: ``field.ravel()[grid.wet_index]``.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import numpy as np
import xarray as xr

__all__ = ["EARTH_RADIUS", "CoordinateSystem", "FaceSet", "Grid", "GridError"]

#: Mean radius of the Earth in metres (IUGG mean radius R1).
EARTH_RADIUS = 6_371_008.8

#: Default ceiling on the number of cells of a grid (wet or not).  Beyond it the arrays of
#: a single field no longer fit comfortably in memory on a laptop.
DEFAULT_MAX_CELLS = 20_000_000


class GridError(ValueError):
    """A grid could not be built from the inputs given."""


class CoordinateSystem(enum.Enum):
    """How the coordinates of a grid are interpreted."""

    #: Longitude/latitude in degrees; metrics on a sphere of radius :data:`EARTH_RADIUS`.
    LONLAT = "lonlat"
    #: Cartesian x/y in metres.
    CARTESIAN = "cartesian"


def _edges_from_centres(centres: np.ndarray) -> np.ndarray:
    """Cell edges half-way between centres, the outer ones mirrored."""
    mid = 0.5 * (centres[1:] + centres[:-1])
    first = centres[0] - (mid[0] - centres[0])
    last = centres[-1] + (centres[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def _check_axis(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise GridError(f"coordinate {name!r} must be 1-D, got shape {values.shape}")
    if values.size < 2:
        raise GridError(f"coordinate {name!r} needs at least 2 points, got {values.size}")
    if not np.all(np.isfinite(values)):
        bad = np.flatnonzero(~np.isfinite(values))[:5].tolist()
        raise GridError(f"coordinate {name!r} has non-finite values at positions {bad}")
    steps = np.diff(values)
    if not (np.all(steps > 0)):
        where = np.flatnonzero(steps <= 0)[:5].tolist()
        raise GridError(
            f"coordinate {name!r} must be strictly increasing; it is not between positions "
            f"{where} (values {values[where].tolist()} -> {values[np.add(where, 1)].tolist()}). "
            "Sort the coordinate (and the data with it) and remove duplicates."
        )
    return values


def _mask_from_input(mask: Any, shape: tuple[int, int], x: np.ndarray, y: np.ndarray,
                     coords: CoordinateSystem) -> np.ndarray:
    """Normalise the supported mask inputs to a boolean ``(ny, nx)`` array, True on water."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    if isinstance(mask, str):
        if mask != "auto":
            raise GridError(f"mask={mask!r} is not understood; use 'auto', an array or None")
        if coords is not CoordinateSystem.LONLAT:
            raise GridError("mask='auto' needs a lon/lat grid; pass a mask array for x/y grids")
        from global_land_mask import globe

        lon2d, lat2d = np.meshgrid(((x + 180.0) % 360.0) - 180.0, y)
        lat2d = np.clip(lat2d, -89.999, 89.999)
        return np.asarray(globe.is_ocean(lat2d, lon2d), dtype=bool)
    if isinstance(mask, xr.DataArray):
        mask = mask.values
    values = np.asarray(mask)
    if values.shape != shape:
        raise GridError(
            f"mask has shape {values.shape} but the grid is (ny, nx) = {shape}; "
            "give one value per cell, rows along latitude/y"
        )
    if values.dtype == bool:
        return values.copy()
    if np.issubdtype(values.dtype, np.floating):
        if np.any(np.isnan(values)):
            return np.isfinite(values)  # the NaN cells of a field are land
        return values != 0
    if np.issubdtype(values.dtype, np.integer):
        return values != 0
    raise GridError(f"mask of dtype {values.dtype} is not understood; use booleans (True=water)")


class FaceSet(NamedTuple):
    """The open faces of one orientation (east or north), one entry per face.

    Attributes
    ----------
    row, col : ndarray of int
        2-D index ``(j, i)`` of the west/south cell ``a``: where the face's values live in
        the (ny, nx) face arrays of the grid.
    row_b, col_b : ndarray of int
        2-D index of the east/north cell ``b``.
    cell_a, cell_b : ndarray of int
        State-vector (wet-cell) indices of ``a`` and ``b``.
    """

    row: np.ndarray
    col: np.ndarray
    row_b: np.ndarray
    col_b: np.ndarray
    cell_a: np.ndarray
    cell_b: np.ndarray


@dataclass(frozen=True, eq=False)
class Grid:
    """A 2-D finite-volume grid with a land/sea mask.

    Build one with :meth:`regular`, :meth:`cartesian`, :meth:`from_coords` or
    :meth:`from_xarray` rather than calling the constructor.

    Attributes
    ----------
    x, y : ndarray
        Cell-centre coordinates, strictly increasing: longitude/latitude in degrees, or x/y in
        metres.
    x_edges, y_edges : ndarray
        Cell edges (``nx + 1`` and ``ny + 1`` values), same units as ``x`` and ``y``.
    mask : ndarray of bool, shape (ny, nx)
        True on water (wet) cells, False on land.
    coords : CoordinateSystem
        Lon/lat (spherical metrics) or Cartesian.
    periodic_x : bool
        Whether the x (longitude) direction wraps around.
    """

    x: np.ndarray
    y: np.ndarray
    x_edges: np.ndarray
    y_edges: np.ndarray
    mask: np.ndarray
    coords: CoordinateSystem
    periodic_x: bool = False
    radius: float = EARTH_RADIUS
    # Derived metrics, filled in __post_init__.
    cell_area: np.ndarray = field(init=False, repr=False)
    east_face_length: np.ndarray = field(init=False, repr=False)
    east_face_distance: np.ndarray = field(init=False, repr=False)
    north_face_length: np.ndarray = field(init=False, repr=False)
    north_face_distance: np.ndarray = field(init=False, repr=False)
    east_open: np.ndarray = field(init=False, repr=False)
    north_open: np.ndarray = field(init=False, repr=False)
    wet_index: np.ndarray = field(init=False, repr=False)
    key: str = field(init=False, repr=False)

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        ny, nx = self.y.size, self.x.size
        if self.mask.shape != (ny, nx):
            raise GridError(f"mask shape {self.mask.shape} does not match (ny, nx) = {(ny, nx)}")
        if not self.mask.any():
            raise GridError(
                "the grid has no wet (water) cells: the mask is False everywhere. Check that "
                "the mask is True on water, or that the region is not entirely land."
            )
        if self.coords is CoordinateSystem.LONLAT:
            if self.y_edges[0] < -90.0 - 1e-9 or self.y_edges[-1] > 90.0 + 1e-9:
                raise GridError(
                    f"latitude edges must lie within [-90, 90], got "
                    f"[{self.y_edges[0]}, {self.y_edges[-1]}]"
                )
            if self.periodic_x and not np.isclose(self.x_edges[-1] - self.x_edges[0], 360.0):
                raise GridError("periodic_x=True needs longitude edges spanning exactly 360 deg")
        elif self.periodic_x is None:
            raise GridError("periodic_x must be a bool")
        set_ = object.__setattr__
        set_(self, "mask", np.ascontiguousarray(self.mask, dtype=bool))
        for name, value in self._metrics().items():
            set_(self, name, value)
        set_(self, "wet_index", np.flatnonzero(self.mask.ravel()))
        set_(self, "key", self._digest())

    def _digest(self) -> str:
        """SHA-1 of what defines the grid (coordinates, edges, mask, metric and wrap)."""
        digest = hashlib.sha1(f"{self.coords.value}|{self.periodic_x}|{self.radius!r}".encode())
        for arr in (self.x, self.y, self.x_edges, self.y_edges, self.mask):
            array = np.ascontiguousarray(arr)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def __eq__(self, other: object) -> bool:
        """Grids are equal when they are the same grid, cell for cell (not only the same
        object): equal grids share compiled programs, where the grid is a static argument."""
        return isinstance(other, Grid) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def _metrics(self) -> dict[str, np.ndarray]:
        ny, nx = self.mask.shape
        if self.coords is CoordinateSystem.LONLAT:
            r = self.radius
            lam = np.deg2rad(self.x_edges)
            phi = np.deg2rad(self.y_edges)
            dlam = np.diff(lam)  # (nx,)
            dsin = np.diff(np.sin(phi))  # (ny,)
            area = r**2 * np.outer(dsin, dlam)
            phic = np.deg2rad(self.y)
            lamc = np.deg2rad(self.x)
            # East faces: meridian segments of length R*dphi at lon edge i+1.
            east_len = np.repeat((r * np.diff(phi))[:, None], nx, axis=1)
            dlam_c = np.diff(lamc, append=lamc[0] + 2 * np.pi if self.periodic_x else np.nan)
            east_dist = r * np.outer(np.cos(phic), dlam_c)
            # North faces: parallel segments at the face latitude, centres R*dphi apart.
            north_len = r * np.outer(np.cos(phi[1:]), dlam)
            dphi_c = np.diff(phic, append=np.nan)
            north_dist = np.repeat((r * dphi_c)[:, None], nx, axis=1)
        else:
            dx = np.diff(self.x_edges)
            dy = np.diff(self.y_edges)
            area = np.outer(dy, dx)
            east_len = np.repeat(dy[:, None], nx, axis=1)
            period = self.x_edges[-1] - self.x_edges[0]
            dx_c = np.diff(self.x, append=self.x[0] + period if self.periodic_x else np.nan)
            east_dist = np.repeat(dx_c[None, :], ny, axis=0)
            north_len = np.repeat(dx[None, :], ny, axis=0)
            dy_c = np.diff(self.y, append=np.nan)
            north_dist = np.repeat(dy_c[:, None], nx, axis=1)
        wet = self.mask
        east_open = wet & np.roll(wet, -1, axis=1)
        if not self.periodic_x:
            east_open[:, -1] = False
        north_open = np.zeros_like(wet)
        north_open[:-1] = wet[:-1] & wet[1:]
        # Closed faces get a harmless distance of 1 so that no NaN can leak into fluxes.
        east_dist = np.where(east_open, east_dist, 1.0)
        north_dist = np.where(north_open, north_dist, 1.0)
        return {
            "cell_area": area,
            "east_face_length": east_len,
            "east_face_distance": east_dist,
            "north_face_length": north_len,
            "north_face_distance": north_dist,
            "east_open": east_open,
            "north_open": north_open,
        }

    @classmethod
    def from_coords(
        cls,
        x: Any,
        y: Any,
        mask: Any = None,
        *,
        coords: CoordinateSystem | str = CoordinateSystem.LONLAT,
        periodic_x: bool = False,
        max_cells: int = DEFAULT_MAX_CELLS,
    ) -> Grid:
        """A grid from 1-D cell-centre coordinates (edges half-way between centres).

        Parameters
        ----------
        x, y : array_like
            Strictly increasing cell centres: longitude/latitude (degrees) or x/y (metres).
        mask : None, 'auto', array_like or xarray.DataArray, optional
            Water mask of shape ``(ny, nx)``: booleans (True on water), numbers (non-zero on
            water) or a field whose NaN cells are land. ``'auto'`` derives it from the
            30-arc-second GLOBE land mask of ``global-land-mask`` (lon/lat grids only).
            ``None`` means all water.
        coords : CoordinateSystem or {'lonlat', 'cartesian'}
        periodic_x : bool
            Wrap around in x; needs a lon/lat grid spanning 360 degrees.
        max_cells : int
            Refuse grids with more cells than this (memory guard).
        """
        coords = CoordinateSystem(coords)
        x = _check_axis("x" if coords is CoordinateSystem.CARTESIAN else "lon", x)
        y = _check_axis("y" if coords is CoordinateSystem.CARTESIAN else "lat", y)
        _check_size(x.size, y.size, max_cells)
        x_edges = _edges_from_centres(x)
        y_edges = _edges_from_centres(y)
        if coords is CoordinateSystem.LONLAT:
            y_edges = np.clip(y_edges, -90.0, 90.0)
        wet = _mask_from_input(mask, (y.size, x.size), x, y, coords)
        return cls(x, y, x_edges, y_edges, wet, coords, periodic_x)

    @classmethod
    def regular(
        cls,
        lon: tuple[float, float],
        lat: tuple[float, float],
        resolution: float | tuple[float, float],
        mask: Any = None,
        *,
        periodic: bool = False,
        max_cells: int = DEFAULT_MAX_CELLS,
    ) -> Grid:
        """A regular lon/lat grid whose cells tile ``lon`` x ``lat`` exactly.

        Parameters
        ----------
        lon, lat : (float, float)
            West/east and south/north edges of the domain in degrees.
        resolution : float or (float, float)
            Cell size in degrees (one value, or ``(dlon, dlat)``). The extent must be a whole
            number of cells.
        mask : see :meth:`from_coords`
        periodic : bool
            Wrap in longitude (the extent must then be 360 degrees).
        """
        dlon, dlat = _cell_sizes(resolution)
        x_edges = _regular_edges("lon", lon, dlon, max_cells)
        y_edges = _regular_edges("lat", lat, dlat, max_cells)
        if y_edges[0] < -90 or y_edges[-1] > 90:
            raise GridError(f"lat={lat} leaves [-90, 90]")
        _check_size(x_edges.size - 1, y_edges.size - 1, max_cells)
        x = 0.5 * (x_edges[1:] + x_edges[:-1])
        y = 0.5 * (y_edges[1:] + y_edges[:-1])
        wet = _mask_from_input(mask, (y.size, x.size), x, y, CoordinateSystem.LONLAT)
        return cls(x, y, x_edges, y_edges, wet, CoordinateSystem.LONLAT, periodic)

    @classmethod
    def cartesian(
        cls,
        x: tuple[float, float],
        y: tuple[float, float],
        resolution: float | tuple[float, float],
        mask: Any = None,
        *,
        periodic_x: bool = False,
        max_cells: int = DEFAULT_MAX_CELLS,
    ) -> Grid:
        """A regular Cartesian grid tiling ``x`` x ``y`` (metres) with cells of ``resolution`` m."""
        dx, dy = _cell_sizes(resolution)
        x_edges = _regular_edges("x", x, dx, max_cells)
        y_edges = _regular_edges("y", y, dy, max_cells)
        _check_size(x_edges.size - 1, y_edges.size - 1, max_cells)
        xc = 0.5 * (x_edges[1:] + x_edges[:-1])
        yc = 0.5 * (y_edges[1:] + y_edges[:-1])
        wet = _mask_from_input(mask, (yc.size, xc.size), xc, yc, CoordinateSystem.CARTESIAN)
        return cls(xc, yc, x_edges, y_edges, wet, CoordinateSystem.CARTESIAN, periodic_x)

    @classmethod
    def from_xarray(
        cls,
        obj: xr.DataArray | xr.Dataset,
        *,
        x: str | None = None,
        y: str | None = None,
        mask: Any = None,
        periodic_x: bool | None = None,
        max_cells: int = DEFAULT_MAX_CELLS,
    ) -> Grid:
        """A grid from the coordinates of an xarray object (e.g. a field or :meth:`to_xarray`).

        Coordinates named ``lon``/``longitude`` and ``lat``/``latitude`` give a lon/lat grid,
        ``x``/``y`` a Cartesian one. Descending coordinates are flipped to ascending. If
        ``mask`` is None, a DataArray's NaN cells, or a Dataset's ``mask`` variable, give the
        land mask. If ``periodic_x`` is None, the ``periodic_x`` attribute written by
        :meth:`to_xarray` decides (False when absent).
        """
        if periodic_x is None:
            periodic_x = bool(obj.attrs.get("periodic_x", False))
        x_name, y_name, coords = _detect_axes(obj, x, y)
        xs = np.asarray(obj[x_name].values, dtype=float)
        ys = np.asarray(obj[y_name].values, dtype=float)
        obj = obj.sortby([y_name, x_name]) if (xs[0] > xs[-1] or ys[0] > ys[-1]) else obj
        if mask is None:
            if isinstance(obj, xr.Dataset) and "mask" in obj:
                mask = obj["mask"].transpose(y_name, x_name).values
            elif isinstance(obj, xr.DataArray):
                da = obj
                extra = [d for d in da.dims if d not in (x_name, y_name)]
                if extra:
                    da = da.isel({d: 0 for d in extra})
                mask = np.isfinite(da.transpose(y_name, x_name).values)
        elif isinstance(mask, xr.DataArray):
            mask = mask.sortby([y_name, x_name]).transpose(y_name, x_name).values
        return cls.from_coords(
            obj[x_name].values, obj[y_name].values, mask,
            coords=coords, periodic_x=periodic_x, max_cells=max_cells,
        )

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.mask.shape

    @property
    def n_wet(self) -> int:
        """Number of wet cells, the length of the state vector."""
        return int(self.wet_index.size)

    @property
    def dims(self) -> tuple[str, str]:
        """Names of the ``(row, column)`` dimensions: ``('lat', 'lon')`` or ``('y', 'x')``."""
        return ("lat", "lon") if self.coords is CoordinateSystem.LONLAT else ("y", "x")

    @property
    def wet_area(self) -> np.ndarray:
        """Cell areas (m^2) of the wet cells, in state-vector order."""
        return self.cell_area.ravel()[self.wet_index]

    def open_faces(self) -> tuple[FaceSet, FaceSet]:
        """The open east faces and open north faces (see :class:`FaceSet`)."""
        nx = self.shape[1]
        position = np.full(self.mask.size, -1)
        position[self.wet_index] = np.arange(self.n_wet)
        position = position.reshape(self.shape)
        faces = []
        for open_, east in ((self.east_open, True), (self.north_open, False)):
            ja, ia = np.nonzero(open_)
            jb, ib = (ja, (ia + 1) % nx) if east else (ja + 1, ia)
            faces.append(FaceSet(ja, ia, jb, ib, position[ja, ia], position[jb, ib]))
        return faces[0], faces[1]

    def total(self, state: Any) -> Any:
        """Area-weighted total ``sum(area * c)`` of a state vector (or a batch, last axis)."""
        return state @ self.wet_area

    # ------------------------------------------------------------------ conversions
    def to_state(self, field2d: Any) -> np.ndarray:
        """The wet-cell state vector of a ``(..., ny, nx)`` field."""
        field2d = np.asarray(field2d)
        return field2d.reshape(field2d.shape[:-2] + (-1,))[..., self.wet_index]

    def to_field(self, state: Any, fill: float = np.nan) -> np.ndarray:
        """A ``(..., ny, nx)`` field from a wet-cell state vector, ``fill`` on land."""
        state = np.asarray(state)
        out = np.full(state.shape[:-1] + (self.mask.size,), fill, dtype=np.result_type(state, fill))
        out[..., self.wet_index] = state
        return out.reshape(state.shape[:-1] + self.mask.shape)

    def coordinates(self) -> dict[str, xr.Variable]:
        """CF-annotated coordinate variables of the grid."""
        ydim, xdim = self.dims
        if self.coords is CoordinateSystem.LONLAT:
            xattrs = {"standard_name": "longitude", "long_name": "longitude",
                      "units": "degrees_east", "axis": "X"}
            yattrs = {"standard_name": "latitude", "long_name": "latitude",
                      "units": "degrees_north", "axis": "Y"}
        else:
            xattrs = {"standard_name": "projection_x_coordinate", "long_name": "x",
                      "units": "m", "axis": "X"}
            yattrs = {"standard_name": "projection_y_coordinate", "long_name": "y",
                      "units": "m", "axis": "Y"}
        return {xdim: xr.Variable(xdim, self.x, xattrs), ydim: xr.Variable(ydim, self.y, yattrs)}

    def to_dataarray(self, values: Any, name: str | None = None, **attrs: Any) -> xr.DataArray:
        """A state vector ``(..., n_wet)`` or field ``(..., ny, nx)`` as a DataArray, NaN on land.

        Leading dimensions are named ``dim_0, dim_1, ...``; rename them as needed.
        """
        values = np.asarray(values)
        if values.shape[-1:] == (self.n_wet,) and values.shape[-2:] != self.shape:
            values = self.to_field(values)
        lead = [f"dim_{k}" for k in range(values.ndim - 2)]
        return xr.DataArray(values, dims=(*lead, *self.dims), coords=self.coordinates(),
                            name=name, attrs=attrs)

    def to_xarray(self) -> xr.Dataset:
        """The grid as a Dataset: CF coordinates, cell bounds, ``mask`` and ``cell_area``."""
        ydim, xdim = self.dims
        ds = xr.Dataset(coords=self.coordinates())
        ds[xdim].attrs["bounds"] = f"{xdim}_bnds"
        ds[ydim].attrs["bounds"] = f"{ydim}_bnds"
        ds[f"{xdim}_bnds"] = ((xdim, "nv"), np.stack([self.x_edges[:-1], self.x_edges[1:]], -1))
        ds[f"{ydim}_bnds"] = ((ydim, "nv"), np.stack([self.y_edges[:-1], self.y_edges[1:]], -1))
        ds["mask"] = ((ydim, xdim), self.mask.astype(np.int8), {
            "long_name": "water mask (1 on water, 0 on land)",
            "flag_values": np.array([0, 1], dtype=np.int8),
            "flag_meanings": "land water",
        })
        ds["cell_area"] = ((ydim, xdim), self.cell_area, {
            "standard_name": "cell_area", "long_name": "cell area", "units": "m2",
        })
        ds.attrs["coordinate_system"] = self.coords.value
        ds.attrs["periodic_x"] = int(self.periodic_x)
        return ds

    def __repr__(self) -> str:
        ny, nx = self.shape
        return (f"Grid({self.coords.value}, ny={ny}, nx={nx}, n_wet={self.n_wet}, "
                f"x=[{self.x_edges[0]:g}, {self.x_edges[-1]:g}], "
                f"y=[{self.y_edges[0]:g}, {self.y_edges[-1]:g}], periodic_x={self.periodic_x})")


def _cell_sizes(resolution: float | tuple[float, float]) -> tuple[float, float]:
    """One cell size (any scalar, NumPy's included) for both axes, or the pair as given."""
    if np.isscalar(resolution):
        return cast(float, resolution), cast(float, resolution)
    return cast(tuple[float, float], resolution)


def _regular_edges(name: str, extent: tuple[float, float], step: float,
                   max_cells: int) -> np.ndarray:
    lo, hi = (float(v) for v in extent)
    if not hi > lo:
        raise GridError(f"{name}={extent} must be (start, end) with end > start")
    if not (np.isfinite(step) and step > 0):
        raise GridError(f"resolution for {name} must be a positive number, got {step}")
    n_float = (hi - lo) / step
    n = int(round(n_float))
    if n > max_cells:
        raise GridError(
            f"resolution {step} over {name}={extent} gives {n_float:.3g} cells along {name} "
            f"alone, beyond the limit of {max_cells} cells; use a coarser resolution"
        )
    if n < 1 or not np.isclose(n_float, n, rtol=0, atol=1e-6):
        raise GridError(
            f"the {name} extent {extent} is not a whole number of cells of size {step} "
            f"({n_float:g}); adjust the extent or the resolution"
        )
    return lo + step * np.arange(n + 1)


def _check_size(nx: int, ny: int, max_cells: int) -> None:
    if nx * ny > max_cells:
        raise GridError(
            f"grid of {ny} x {nx} = {nx * ny:,} cells exceeds the limit of {max_cells:,} cells; "
            "use a coarser resolution or a smaller region (or raise max_cells if you are sure)"
        )


def _detect_axes(obj: Any, x: str | None, y: str | None) -> tuple[str, str, CoordinateSystem]:
    names = set(obj.coords) | set(obj.dims)
    if x is None:
        x = next((n for n in ("lon", "longitude", "x") if n in names), None)
    if y is None:
        y = next((n for n in ("lat", "latitude", "y") if n in names), None)
    if x is None or y is None:
        raise GridError(
            f"cannot find horizontal coordinates among {sorted(map(str, names))}; "
            "name them lon/lat or x/y, or pass x= and y="
        )
    coords = CoordinateSystem.CARTESIAN if x == "x" else CoordinateSystem.LONLAT
    return x, y, coords
