"""Observations: the container, its readers, the interpolation operator and time assignment.

An :class:`Observations` holds scattered measurements of the tracer: a time, a position
(longitude/latitude in degrees or x/y in metres), a value and its error standard deviation
(same units as the value), and the platform that took it. It links to the model through

* :meth:`Observations.operator`: the observation operator ``H`` of ``y = H c + e``, bilinear
  interpolation from the centres of the wet cells of a :class:`~tracerbayes.grid.core.Grid`, kept
  sparse as four (state index, weight) pairs per observation;
* :meth:`Observations.assign_times`: each observation to its nearest analysis time;
* :meth:`Observations.prepare`: both at once, with per-time padded arrays for Kalman filters;
* :meth:`Observations.bin`: super-observations, one per wet cell, analysis time and platform
  (:mod:`tracerbayes.observations.binning`), for data sets too large to pad per time.

Bad input is never dropped silently. Non-finite values, times or positions, non-positive
errors, positions on land or outside the grid and times outside the analysis window raise an
:class:`ObservationError` that counts the offending rows and shows the first few; with
``drop_invalid=True`` they are removed with an :class:`ObservationWarning` carrying the same
count instead. The readers also refuse tables without rows, columns named twice, text in
numeric columns (quoted, with the row and the line of a CSV file) and exact duplicate rows
(see ``duplicates`` of :meth:`Observations.from_dataframe`); positions that look like
kilometres or degrees on a grid in metres are refused against the grid
(:mod:`tracerbayes.observations.inputs`).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from tracerbayes.grid.core import CoordinateSystem, Grid
from tracerbayes.observations.binning import (
    BinnedObservations,
    BinningReport,
    super_observations,
)
from tracerbayes.observations.inputs import (
    Duplicates,
    TextProblem,
    as_frame,
    check_columns,
    check_names,
    check_rows,
    csv_header,
    csv_places,
    handle_duplicates,
    numbers,
    time_column,
    unit_mismatch,
)
from tracerbayes.observations.inputs import as_time as _as_time
from tracerbayes.observations.problems import (
    MAX_SHOWN,
    NOWHERE,
    ObservationError,
    ObservationWarning,
    Places,
    describe,
)
from tracerbayes.observations.problems import RowProblem as _Problem
from tracerbayes.observations.problems import fmt as _fmt
from tracerbayes.observations.problems import fmt_positions as _fmt_positions
from tracerbayes.observations.problems import resolve as _resolve

__all__ = [
    "MAX_PADDED_ROWS",
    "BinnedObservations",
    "BinningReport",
    "ObservationError",
    "ObservationOperator",
    "BilinearStencil",
    "bilinear_stencil",
    "ObservationWarning",
    "Observations",
    "PaddedObservations",
    "PreparedObservations",
]


#: Most padded rows (analysis times x most observations at one time) :meth:`padded
#: <PreparedObservations.padded>` builds; beyond, per-time operators of K modes need
#: ``8 K`` bytes a row (gigabytes for hundreds of modes) and :meth:`Observations.bin` is due
#: (10^6 observations over 30 days pad to 1.0e6 rows: refused, with the hint to bin them).
MAX_PADDED_ROWS = 250_000


# ---------------------------------------------------------------------- input conversion
def _is_missing_time(t: np.ndarray) -> np.ndarray:
    return np.isnat(t) if t.dtype.kind == "M" else ~np.isfinite(t)


def _axis_names(coords: CoordinateSystem | None) -> tuple[str, str]:
    return ("x", "y") if coords is CoordinateSystem.CARTESIAN else ("lon", "lat")


# ---------------------------------------------------------------------- the container
@dataclass(frozen=True, eq=False)
class Observations:
    """Scattered observations of the tracer.

    Parameters
    ----------
    time : array_like, shape (n,)
        Observation times: datetimes (stored as ``datetime64[ns]``, naive UTC) or numbers
        (stored as float seconds).
    x, y : array_like, shape (n,)
        Positions: longitude/latitude in degrees, or x/y in metres (see ``coords``).
    value : array_like, shape (n,)
        Measured tracer values (tracer units).
    error : array_like or float
        Error standard deviation of each value, same units as ``value``, > 0.
    platform : array_like of str or str, optional
        Platform of each observation (default ``"obs"``).
    coords : CoordinateSystem or {'lonlat', 'cartesian'}, optional
        Meaning of ``x``/``y``; None (unspecified) matches any grid.
    units : str, optional
        Units of ``value`` and ``error`` (UDUNITS, e.g. ``'degC'``, ``'K'``, ``'psu'``), carried
        to the posterior's maps and files; None: unknown (written as ``'1'``).
    drop_invalid : bool
        Drop rows with non-finite time, position or value, or with a non-positive or
        non-finite error, with an :class:`ObservationWarning`; by default they raise an
        :class:`ObservationError`.
    """

    time: np.ndarray
    x: np.ndarray
    y: np.ndarray
    value: np.ndarray
    error: np.ndarray
    # typed as stored: __post_init__ replaces the default None by "obs" on every row
    platform: np.ndarray = None  # type: ignore[assignment]
    coords: CoordinateSystem | None = None
    units: str | None = None
    drop_invalid: InitVar[bool] = False

    def __post_init__(self, drop_invalid: bool) -> None:
        set_ = object.__setattr__
        arrays = {"time": _as_time(self.time)}
        for name in ("x", "y", "value"):
            arrays[name] = np.asarray(getattr(self, name), dtype=float)
        n = arrays["time"].size
        for name, arr in arrays.items():
            if arr.ndim != 1 or arr.size != n:
                raise ObservationError(
                    f"{name} has shape {arr.shape} but time has {n} values; every field of "
                    "the observations must be 1-D with one entry per observation"
                )
        arrays["error"] = _broadcast("error", np.asarray(self.error, dtype=float), n)
        platform = "obs" if self.platform is None else self.platform
        arrays["platform"] = _broadcast("platform", np.asarray(platform, dtype=str), n)
        set_(self, "coords", None if self.coords is None else CoordinateSystem(self.coords))
        keep = _resolve(_value_problems(arrays, _axis_names(self.coords)), n, drop_invalid)
        for name, arr in arrays.items():
            set_(self, name, arr[keep])

    # ------------------------------------------------------------------ readers
    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        time: str = "time",
        lon: str | None = None,
        lat: str | None = None,
        value: str = "value",
        error: str | float = "error",
        platform: str | None = None,
        *,
        x: str | None = None,
        y: str | None = None,
        drop_invalid: bool = False,
        duplicates: str = "error",
        units: str | None = None,
    ) -> Observations:
        """Observations from the columns of a DataFrame (one row per observation).

        Parameters
        ----------
        df : pandas.DataFrame
            At least one row; each column used named once.
        time, value : str
            Column names. Non-numeric times are parsed as datetimes (time-zone aware ones
            converted to naive UTC); numeric times are taken as seconds.
        lon, lat : str, optional
            Columns of longitude/latitude (degrees); ``'lon'``/``'lat'`` unless ``x``/``y``
            are given.
        error : str or float
            Column of error standard deviations (units of ``value``), or one value for all.
        platform : str, optional
            Column of platform names; all ``"obs"`` if None.
        x, y : str, optional
            Columns of Cartesian positions (metres), instead of ``lon``/``lat``.
        drop_invalid : bool
            See :class:`Observations`; also drops entries of numeric columns that are text.
        duplicates : {'error', 'average', 'keep'}
            Rows that are exact copies of others (same time, position, value and platform)
            raise an :class:`ObservationError` (``'error'``) or are kept as independent
            observations with an :class:`ObservationWarning` (``'keep'``); ``'average'``
            merges all rows with the same time, position and platform into one, with the
            mean value and error ``sqrt(mean(error**2) / k)`` for ``k`` rows, and a warning.
        units : str, optional
            Units of the values and errors (see :class:`Observations`).

        Raises
        ------
        TypeError
            If ``df`` is not a DataFrame.
        ObservationError
            For a table without rows, missing or repeated columns, text in numeric columns,
            bad values (unless ``drop_invalid``) and duplicates (with ``'error'``).
        """
        return cls._from_table(df, NOWHERE, None, time, lon, lat, value, error, platform,
                               x=x, y=y, drop_invalid=drop_invalid, duplicates=duplicates,
                               units=units)

    @classmethod
    def from_csv(cls, path: str | PathLike, **kwargs: Any) -> Observations:
        """Observations from a CSV file with a header line; keywords as in
        :meth:`from_dataframe`. Messages name the file and the line of each bad row."""
        places = csv_places(path)
        try:
            df = pd.read_csv(path)
            header = csv_header(path)
        except UnicodeDecodeError as err:
            raise ObservationError(
                f"{places.source} is not UTF-8 text: byte {err.object[err.start]:#04x} at "
                f"position {err.start}; save it as UTF-8 (or plain ASCII) CSV"
            ) from None
        except pd.errors.EmptyDataError:
            raise ObservationError(f"{places.source} is empty: it has no header line and no "
                                   "observations") from None
        except pd.errors.ParserError as err:
            raise ObservationError(
                f"{places.source} could not be read as a CSV table: {str(err).strip()} (a row "
                "with more fields than the header: a stray comma, or text with a comma that "
                "needs quotes?)"
            ) from err
        return cls._from_table(df, places, header, **kwargs)

    @classmethod
    def from_xarray(cls, ds: xr.Dataset, **kwargs: Any) -> Observations:
        """Observations from 1-D variables of a Dataset along one observation dimension.

        Keywords as in :meth:`from_dataframe`; names refer to data or coordinate variables.
        ``units`` defaults to the ``units`` attribute of the value variable.
        """
        return cls._from_dataset(ds, Places(empty="the Dataset has no observations: its "
                                                   "observation dimension has length 0"),
                                 **kwargs)

    @classmethod
    def from_netcdf(cls, path: str | PathLike, **kwargs: Any) -> Observations:
        """Observations from a NetCDF file; keywords as in :meth:`from_xarray`."""
        name = Path(path).name
        places = Places(name, empty=f"{name} has no observations: its observation dimension "
                                    "has length 0")
        with xr.open_dataset(path) as ds:
            return cls._from_dataset(ds.load(), places, **kwargs)

    @classmethod
    def _from_dataset(cls, ds: xr.Dataset, places: Places, **kwargs: Any) -> Observations:
        names, _ = _column_names(**kwargs)
        check_names(names, sorted(map(str, ds.variables)), "variable", places.source)
        dims = {name: ds[name].dims for name in names.values()}
        if any(len(d) != 1 for d in dims.values()) or len(set(dims.values())) != 1:
            raise ObservationError(
                f"observation variables must be 1-D along one common dimension, got {dims}"
            )
        df = pd.DataFrame({name: ds[name].values for name in names.values()})
        if kwargs.get("units") is None:
            kwargs["units"] = ds[names["value"]].attrs.get("units")
        return cls._from_table(df, places, None, **kwargs)

    @classmethod
    def _from_table(cls, df: Any, places: Places, header: list[str] | None,
                    time: str = "time", lon: str | None = None, lat: str | None = None,
                    value: str = "value", error: str | float = "error",
                    platform: str | None = None, *, x: str | None = None,
                    y: str | None = None, drop_invalid: bool = False,
                    duplicates: str = "error", units: str | None = None) -> Observations:
        """:meth:`from_dataframe` for rows from ``places`` (a file's ``header`` as written)."""
        how = Duplicates.of(duplicates)
        df = as_frame(df)
        wanted, coords = _column_names(time, lon, lat, value, error, platform, x=x, y=y)
        check_columns(df, wanted, places, header)
        check_rows(df, places)
        n = len(df)
        fields, problems = _read_fields(df, wanted, error, _axis_names(coords))
        keep = _resolve(problems, n, drop_invalid, places)
        if not keep.any():
            raise ObservationError(f"{places.label} has no usable observations: all {n} rows "
                                   f"were dropped ({describe(problems, places)})")
        rows = np.flatnonzero(keep)
        # fields time, x, y, value, error, platform (Any: mypy would match them to drop_invalid)
        kept: dict[str, Any] = handle_duplicates({k: v[rows] for k, v in fields.items()}, rows,
                                                 n, how, places)
        return cls(**kept, coords=coords, units=units)

    def to_dataframe(self) -> pd.DataFrame:
        """The observations as a DataFrame with columns time, lon/lat (or x/y), value,
        error, platform."""
        xname, yname = _axis_names(self.coords)
        return pd.DataFrame({"time": self.time, xname: self.x, yname: self.y,
                             "value": self.value, "error": self.error,
                             "platform": self.platform})

    def to_xarray(self) -> xr.Dataset:
        """The observations as a Dataset of 1-D variables along dimension ``obs``."""
        df = self.to_dataframe()
        ds = xr.Dataset({name: ("obs", df[name].to_numpy()) for name in df.columns})
        if self.units is not None:
            ds["value"].attrs["units"] = ds["error"].attrs["units"] = self.units
        return ds

    # ------------------------------------------------------------------ container
    def __len__(self) -> int:
        return int(self.value.size)

    @property
    def time_units(self) -> str:
        """``'datetime64[ns]'`` or ``'s'`` (float seconds)."""
        return "datetime64[ns]" if self.time.dtype.kind == "M" else "s"

    @property
    def platforms(self) -> tuple[str, ...]:
        """The distinct platform names, sorted."""
        return tuple(str(p) for p in np.unique(self.platform))

    def shifted(self, delta: float) -> Observations:
        """The same observations with ``delta`` (tracer units) added to every value."""
        return replace(self, value=self.value + float(delta))

    def select(self, mask: Any) -> Observations:
        """The observations of a boolean mask or integer index array (row order kept)."""
        sel = np.asarray(mask)
        if sel.dtype != bool:
            sel = np.sort(sel)
        return replace(self, time=self.time[sel], x=self.x[sel], y=self.y[sel],
                       value=self.value[sel], error=self.error[sel],
                       platform=self.platform[sel], drop_invalid=False)

    def __repr__(self) -> str:
        if len(self) == 0:
            return "Observations(n=0)"
        xname, yname = _axis_names(self.coords)
        t0, t1 = _fmt(np.array([self.time.min(), self.time.max()]))

        def span(a: np.ndarray) -> str:
            return f"[{a.min():g}, {a.max():g}]"

        return (f"Observations(n={len(self)}, time=[{t0}, {t1}], {xname}={span(self.x)}, "
                f"{yname}={span(self.y)}, value={span(self.value)}, "
                f"platforms={list(self.platforms)})")

    # ------------------------------------------------------------------ linking to a model
    def operator(self, grid: Grid, drop_invalid: bool = False) -> ObservationOperator:
        """Bilinear interpolation ``H`` from the wet-cell centres of ``grid`` to every row.

        Rows outside the grid (beyond its cell edges) or in a land cell raise an
        :class:`ObservationError`, or are left out with a warning if ``drop_invalid``;
        ``rows`` of the result says which rows the operator holds.
        """
        located = _locate(self, grid)
        keep = _resolve(located.problems, len(self), drop_invalid)
        return located.operator(np.flatnonzero(keep), grid.n_wet)

    def assign_times(self, times: Any, window: tuple[Any, Any] | None = None,
                     drop_invalid: bool = False) -> np.ndarray:
        """Index of the nearest analysis time for every observation (ties: the earlier).

        Parameters
        ----------
        times : array_like, shape (T,)
            Strictly increasing analysis times, datetimes or seconds like :attr:`time`.
        window : (start, end), optional
            Inclusive time window; by default from half the first interval before
            ``times[0]`` to half the last interval after ``times[-1]`` (unbounded if T = 1).
        drop_invalid : bool
            Warn about observations outside the window instead of raising.

        Returns
        -------
        ndarray of int, shape (n,)
            Indices into ``times``; -1 for rows outside the window (only with
            ``drop_invalid=True``).
        """
        index, problem = _nearest_times(self.time, times, window)
        keep = _resolve([problem], len(self), drop_invalid)
        return np.where(keep, index, -1)

    def prepare(self, grid: Grid, times: Any, window: tuple[Any, Any] | None = None,
                drop_invalid: bool = False) -> PreparedObservations:
        """Operator and time indices together, checking all rows at once.

        See :meth:`operator` and :meth:`assign_times`; with ``drop_invalid`` a row bad for
        either reason is left out of every field of the result.
        """
        located = _locate(self, grid)
        index, time_problem = _nearest_times(self.time, times, window)
        keep = _resolve([*located.problems, time_problem], len(self), drop_invalid)
        rows = np.flatnonzero(keep)
        return PreparedObservations(
            time_index=index[rows], operator=located.operator(rows, grid.n_wet),
            value=self.value[rows], error=self.error[rows], platform=self.platform[rows],
            rows=rows, n_times=int(np.size(times)),
        )

    def bin(self, grid: Grid, times: Any, window: tuple[Any, Any] | None = None,
            drop_invalid: bool = False) -> BinnedObservations:
        """Super-observations: one per wet cell, analysis time and platform.

        The observations whose position lies in the same wet cell of ``grid``, whose nearest
        analysis time (as in :meth:`assign_times`, which :meth:`prepare` uses) is the same and
        whose platform is the same become one, at their mean position (kept inside the cell)
        and the analysis time, with the inverse-variance weighted mean value and the error
        ``1/sqrt(sum_i 1/e_i^2)`` (tracer units): Eqs. (1)-(4) of
        :mod:`tracerbayes.observations.binning`. This is the exact sufficient statistic of
        Gaussian observations of one cell value; it neglects the variation of the field within
        a cell and an analysis interval, and the differences between the observations'
        bilinear interpolation weights.

        Parameters
        ----------
        grid : Grid
        times : array_like, shape (T,)
            Analysis times, as in :meth:`assign_times`.
        window : (start, end), optional
            As in :meth:`assign_times`.
        drop_invalid : bool
            Leave out rows outside the grid or window, or on land, with a warning, instead
            of raising an :class:`ObservationError`.

        Returns
        -------
        BinnedObservations
            ``observations`` (sorted by time, cell and platform) and ``report``
            (:class:`BinningReport`: how many rows became how many super-observations).
        """
        located = _locate(self, grid)
        index, time_problem = _nearest_times(self.time, times, window)
        keep = _resolve([*located.problems, time_problem], len(self), drop_invalid)
        rows = np.flatnonzero(keep)
        names, platform = np.unique(self.platform[rows], return_inverse=True)
        cell = located.cell[rows]
        group = (index[rows] * grid.mask.size + cell) * max(names.size, 1) + platform
        x = _grid_x(grid, self.x[rows])
        s = super_observations(group, x, self.y[rows], self.value[rows], self.error[rows])
        home = cell[s.first]
        nx = grid.x.size
        cx, cy = home % nx, home // nx
        binned = Observations(
            time=_as_time(times)[index[rows][s.first]],
            x=np.clip(s.x, grid.x_edges[cx], grid.x_edges[cx + 1]),
            y=np.clip(s.y, grid.y_edges[cy], grid.y_edges[cy + 1]),
            value=s.value, error=s.error, platform=names[platform[s.first]],
            coords=self.coords, units=self.units,
        )
        return BinnedObservations(binned, BinningReport(len(self), len(self) - rows.size,
                                                        len(binned)))


def _broadcast(name: str, arr: np.ndarray, n: int) -> np.ndarray:
    if arr.ndim == 0:
        return np.full(n, arr[()], dtype=arr.dtype)
    if arr.shape != (n,):
        raise ObservationError(f"{name} has shape {arr.shape}; give one value or {n} values")
    return arr


def _read_fields(df: pd.DataFrame, wanted: dict[str, Any], error: Any,
                 names: tuple[str, str]) -> tuple[dict[str, np.ndarray], list]:
    """The fields (time, x, y, value, error, platform) of every row, and the rules they
    break: entries of numeric columns that are text, then :func:`_value_problems`."""
    n = len(df)
    fields, text = {}, {}
    fields["time"], text["time"] = time_column(df[wanted["time"]])
    for role in ("x", "y", "value", "error"):
        if role in wanted:
            fields[role], text[role] = numbers(df[wanted[role]])
    if "error" not in wanted:
        fields["error"] = np.full(n, _constant_error(error))
    fields["platform"] = (df[wanted["platform"]].astype(str).to_numpy(dtype=str)
                          if "platform" in wanted else np.full(n, "obs"))
    roles = {"x": names[0], "y": names[1]}
    problems = [TextProblem(bad, wanted[role], roles.get(role, role),
                            df[wanted[role]].to_numpy(dtype=object))
                for role, bad in text.items() if bad.any()]
    return fields, [*problems, *_value_problems(fields, names, text)]


def _value_problems(a: dict[str, np.ndarray], names: tuple[str, str],
                    text: dict[str, np.ndarray] | None = None) -> list[_Problem]:
    """The rules every row must meet; rows whose entries are ``text`` (reported as such)
    are left out of the rules on those fields."""
    text = text or {}
    n = a["value"].size

    def number(*roles: str) -> np.ndarray:  # True where none of the roles is text
        return ~np.any([text.get(role, np.zeros(n, dtype=bool)) for role in roles], axis=0)

    err = a["error"]
    return [
        _Problem(_is_missing_time(a["time"]) & number("time"),
                 "{have} a missing or unparseable time", lambda r: _fmt(a["time"][r])),
        _Problem(~(np.isfinite(a["x"]) & np.isfinite(a["y"])) & number("x", "y"),
                 "{have} a non-finite position", _fmt_positions(a["x"], a["y"], names)),
        _Problem(~np.isfinite(a["value"]) & number("value"),
                 "{have} a non-finite value (NaN or inf)", lambda r: _fmt(a["value"][r])),
        _Problem(~np.isfinite(err) & number("error"), "{have} a non-finite error",
                 lambda r: _fmt(err[r])),
        _Problem(np.isfinite(err) & (err <= 0), "{have} non-positive error",
                 lambda r: _fmt(err[r]),
                 "; errors are standard deviations and must be > 0"),
    ]


def _constant_error(error: Any) -> float:
    """One error standard deviation for all rows (a number, not a column name)."""
    try:
        return float(error)
    except (TypeError, ValueError):
        raise TypeError(f"error must be a column name or one number, got {error!r}") from None


def _column_names(time="time", lon=None, lat=None, value="value", error="error",
                  platform=None, *, x=None, y=None, drop_invalid=False, duplicates="error",
                  units=None):
    """Map of role (time, x, y, value, error, platform) to column name, and the coordinates."""
    if x is not None or y is not None:
        if lon is not None or lat is not None or x is None or y is None:
            raise ObservationError("give positions either as lon= and lat= or as x= and y=")
        coords = CoordinateSystem.CARTESIAN
    else:
        x, y, coords = lon or "lon", lat or "lat", CoordinateSystem.LONLAT
    names = {"time": time, "x": x, "y": y, "value": value, "error": error, "platform": platform}
    if not isinstance(error, str):
        del names["error"]  # one error for all rows
    if platform is None:
        del names["platform"]
    return names, coords


# ---------------------------------------------------------------------- interpolation
class ObservationOperator(NamedTuple):
    """The observation operator ``H`` (m x n_wet), four entries per row.

    ``(H c)[r] = sum_k weights[r, k] * c[indices[r, k]]``: bilinear interpolation of the
    wet-cell state ``c`` to observation ``rows[r]``.

    Attributes
    ----------
    indices : ndarray of int, shape (m, 4)
        State-vector (wet-cell) indices of the surrounding cell centres.
    weights : ndarray of float, shape (m, 4)
        Bilinear weights, zero on land centres, each row summing to 1.
    rows : ndarray of int, shape (m,)
        Row of each observation in the :class:`Observations` it was built from.
    n_wet : int
        Length of the state vector.
    """

    indices: np.ndarray
    weights: np.ndarray
    rows: np.ndarray
    n_wet: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.indices.shape[0]), int(self.n_wet))

    def apply(self, state: Any) -> Any:
        """``H c`` for a state ``(..., n_wet)`` (NumPy or JAX), shape ``(..., m)``."""
        return (state[..., self.indices] * self.weights).sum(-1)

    def to_sparse(self) -> sp.csr_matrix:
        """``H`` as a SciPy CSR matrix (m x n_wet), duplicates summed, zeros removed."""
        m = self.shape[0]
        H = sp.csr_matrix((self.weights.ravel(), (np.repeat(np.arange(m), 4),
                                                  self.indices.ravel())), shape=self.shape)
        H.eliminate_zeros()
        return H

    def to_dense(self) -> np.ndarray:
        """``H`` as a dense (m x n_wet) array; for small problems only."""
        return self.to_sparse().toarray()

    def to_bcoo(self) -> Any:
        """``H`` as a ``jax.experimental.sparse.BCOO`` matrix."""
        import jax.numpy as jnp
        from jax.experimental import sparse as jsparse

        coo = self.to_sparse().tocoo()
        indices = np.stack([coo.row, coo.col], axis=1)
        return jsparse.BCOO((jnp.asarray(coo.data), jnp.asarray(indices)), shape=self.shape)


class _Located(NamedTuple):
    indices: np.ndarray  # (n, 4), for every row (meaningless on bad rows)
    weights: np.ndarray  # (n, 4)
    cell: np.ndarray  # (n,), flat (ny * nx) index of the cell holding each row
    problems: list[_Problem]

    def operator(self, rows: np.ndarray, n_wet: int) -> ObservationOperator:
        return ObservationOperator(self.indices[rows], self.weights[rows], rows, n_wet)


def _axis_bracket(centres: np.ndarray, edges: np.ndarray, p: np.ndarray, periodic: bool):
    """Along one axis: bracketing centres ``i0, i1``, the fraction ``t`` of the way from
    ``i0`` to ``i1`` (clamped to [0, 1] beyond the outermost centres), the cell holding
    ``p`` and whether ``p`` lies outside the edges."""
    n = centres.size
    if periodic:
        period = edges[-1] - edges[0]
        p = edges[0] + np.mod(p - edges[0], period)
        ext = np.concatenate([[centres[-1] - period], centres, [centres[0] + period]])
        k = np.clip(np.searchsorted(ext, p, side="right") - 1, 0, n)
        t = (p - ext[k]) / (ext[k + 1] - ext[k])
        i0, i1 = np.mod(k - 1, n), np.mod(k, n)
        outside = np.zeros(p.shape, dtype=bool)
    elif n == 1:
        i0 = i1 = np.zeros(p.shape, dtype=int)
        t = np.zeros(p.shape)
    else:
        i0 = np.clip(np.searchsorted(centres, p, side="right") - 1, 0, n - 2)
        i1 = i0 + 1
        t = np.clip((p - centres[i0]) / (centres[i1] - centres[i0]), 0.0, 1.0)
    if not periodic:
        outside = (p < edges[0]) | (p > edges[-1])
    cell = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n - 1)
    return i0, i1, t, cell, outside


def _grid_longitude(grid: Grid, lon: np.ndarray) -> np.ndarray:
    """Longitudes outside a regional lon/lat grid shifted by multiples of 360 into it."""
    lo, hi = grid.x_edges[0], grid.x_edges[-1]
    if grid.coords is not CoordinateSystem.LONLAT or grid.periodic_x:
        return lon
    return np.where((lon >= lo) & (lon <= hi), lon, lo + np.mod(lon - lo, 360.0))


def _grid_x(grid: Grid, x: np.ndarray) -> np.ndarray:
    """x (or longitude) moved into the grid's range: by 360 on regional lon/lat grids, by
    the period on periodic ones."""
    x = _grid_longitude(grid, x)
    if grid.periodic_x:
        lo, hi = grid.x_edges[0], grid.x_edges[-1]
        x = lo + np.mod(x - lo, hi - lo)
    return x


class BilinearStencil(NamedTuple):
    """Bilinear weights from the four wet cell centres around each position (see
    :func:`bilinear_stencil`)."""

    indices: np.ndarray  #: (n, 4) wet-cell (state) index of each weight
    weights: np.ndarray  #: (n, 4), summing to one over the wet neighbours
    cell: np.ndarray  #: (n,) flat (ny * nx) index of the cell holding each position
    outside: np.ndarray  #: (n,) bool: beyond the grid's edges
    empty: np.ndarray  #: (n,) bool: no wet neighbour (the weights fall back on ``cell``)


def bilinear_stencil(grid: Grid, x: Any, y: Any) -> BilinearStencil:
    """The one bilinear interpolation of the package (observations and twin experiments):
    the four cell centres around each position (constant beyond the outermost centres,
    wrapping on periodic grids), land ones dropped and the rest renormalised to sum to one.
    A position inside a wet cell always keeps a positive weight on it; one with no wet
    neighbour (on land) falls back on its own cell and is marked ``empty``."""
    x = _grid_longitude(grid, np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    ix0, ix1, tx, cx, out_x = _axis_bracket(grid.x, grid.x_edges, x, grid.periodic_x)
    iy0, iy1, ty, cy, out_y = _axis_bracket(grid.y, grid.y_edges, y, False)
    nx = grid.x.size
    cells = np.stack([iy0 * nx + ix0, iy0 * nx + ix1, iy1 * nx + ix0, iy1 * nx + ix1], -1)
    weights = np.stack([(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty], -1)
    wet = grid.mask.ravel()
    home = cy * nx + cx  # the cell holding each observation
    weights = np.where(wet[cells], weights, 0.0)
    total = weights.sum(-1, keepdims=True)
    # A wet home cell always gets a positive weight; fall back on it should rounding not.
    lost = total[:, 0] <= 0
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    weights[lost] = [1.0, 0.0, 0.0, 0.0]
    cells[lost, 0] = home[lost]
    state_of_cell = np.zeros(wet.size, dtype=np.int64)
    state_of_cell[grid.wet_index] = np.arange(grid.n_wet)
    indices = np.where(weights > 0, state_of_cell[cells], state_of_cell[home][:, None])
    return BilinearStencil(indices, weights, home, out_x | out_y, lost)


def _locate(obs: Observations, grid: Grid) -> _Located:
    """Bilinear indices/weights from wet-cell centres for every row, and the bad rows."""
    if obs.coords is not None and obs.coords is not grid.coords:
        raise ObservationError(
            f"the observations have {obs.coords.value} positions but the grid is "
            f"{grid.coords.value}; give positions in the grid's coordinates"
        )
    if grid.coords is CoordinateSystem.CARTESIAN:
        mismatch = unit_mismatch(obs.x, obs.y, grid.x_edges, grid.y_edges)
        if mismatch is not None:
            raise ObservationError(mismatch)
    stencil = bilinear_stencil(grid, obs.x, obs.y)
    indices, weights, home, outside = (stencil.indices, stencil.weights, stencil.cell,
                                       stencil.outside)
    wet = grid.mask.ravel()
    names = _axis_names(grid.coords)
    extent = (f"; the grid covers {names[0]} [{grid.x_edges[0]:g}, {grid.x_edges[-1]:g}]"
              f"{' (periodic)' if grid.periodic_x else ''}, "
              f"{names[1]} [{grid.y_edges[0]:g}, {grid.y_edges[-1]:g}]")
    describe = _fmt_positions(obs.x, obs.y, names)
    return _Located(indices, weights, home, [
        _Problem(outside, "{are} outside the grid", describe, extent),
        _Problem(~outside & ~wet[home], "{are} on land", describe,
                 "; their grid cells are land in the grid's mask"),
    ])


# ---------------------------------------------------------------------- time assignment
def _check_analysis_times(times: Any, datetime_obs: bool) -> np.ndarray:
    t = _as_time(times)
    if t.ndim != 1 or t.size == 0:
        raise ObservationError(f"analysis times must be a non-empty 1-D array, got {t.shape}")
    if (t.dtype.kind == "M") != datetime_obs:
        kinds = ("datetimes", "numbers (seconds)")
        raise ObservationError(
            f"the observation times are {kinds[not datetime_obs]} but the analysis times are "
            f"{kinds[datetime_obs]}; give both the same way"
        )
    if _is_missing_time(t).any():
        bad = np.flatnonzero(_is_missing_time(t))[:MAX_SHOWN].tolist()
        raise ObservationError(f"analysis times are missing or non-finite at positions {bad}")
    step = np.diff(t)
    zero = np.zeros((), dtype=step.dtype)
    for bad, text in ((step == zero, "duplicate"), (step < zero, "out of order")):
        if bad.any():
            at = np.flatnonzero(bad)
            pairs = ", ".join(f"{i}->{i + 1} ({a} -> {b})" for i, a, b in zip(
                at[:MAX_SHOWN], _fmt(t[at[:MAX_SHOWN]]), _fmt(t[at[:MAX_SHOWN] + 1]),
                strict=True))
            raise ObservationError(
                f"analysis times must be strictly increasing: {at.size} consecutive "
                f"{'pair is' if at.size == 1 else 'pairs are'} {text} at positions {pairs}"
            )
    return t


def _nearest_times(time: np.ndarray, times: Any, window: tuple | None):
    """Nearest analysis time of each observation, and the rows outside the window."""
    t = _check_analysis_times(times, time.dtype.kind == "M")
    if window is not None:
        lo, hi = _check_window(window, time.dtype.kind == "M")
    elif t.size == 1:
        lo = hi = None
    else:
        lo, hi = t[0] - (t[1] - t[0]) / 2, t[-1] + (t[-1] - t[-2]) / 2
    if t.size == 1:
        index = np.zeros(time.size, dtype=np.int64)
    else:
        k = np.clip(np.searchsorted(t, time), 1, t.size - 1)
        index = np.where(time - t[k - 1] <= t[k] - time, k - 1, k)
    outside = np.zeros(time.size, dtype=bool)
    if lo is not None:
        outside = (time < lo) | (time > hi)
    bounds = _fmt(np.array([lo, hi])) if lo is not None else ["-", "-"]
    return index, _Problem(outside, "{are} outside the time window", lambda r: _fmt(time[r]),
                           f"; the window is [{bounds[0]}, {bounds[1]}]")


def _check_window(window: tuple, datetime_obs: bool) -> tuple[Any, Any]:
    w = _as_time(window)
    if (w.shape != (2,) or (w.dtype.kind == "M") != datetime_obs
            or _is_missing_time(w).any() or not w[0] < w[1]):
        kind = "datetimes" if datetime_obs else "numbers (seconds)"
        raise ObservationError(
            f"window must be (start, end) with start < end, both {kind} like the "
            f"observation times; got {window}"
        )
    return w[0], w[1]


# ---------------------------------------------------------------------- prepared, padded
class PaddedObservations(NamedTuple):
    """Observations per analysis time, padded to ``m_max`` for fixed-shape Kalman filters.

    Padding entries have value 0, variance 1, weights 0 and ``valid`` False.

    Attributes
    ----------
    values, variances : ndarray, shape (T, m_max)
        Values (tracer units) and error variances (squared units).
    indices, weights : ndarray, shape (T, m_max, 4)
        Rows of the observation operator (see :class:`ObservationOperator`).
    valid : ndarray of bool, shape (T, m_max)
    rows : ndarray of int, shape (T, m_max)
        Row in the original :class:`Observations`, -1 on padding.
    platform_index : ndarray of int, shape (T, m_max)
        Index into :attr:`PreparedObservations.platforms` (for per-platform noise scales),
        0 on padding.
    """

    values: np.ndarray
    variances: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    valid: np.ndarray
    rows: np.ndarray
    platform_index: np.ndarray


class PreparedObservations(NamedTuple):
    """Observations checked against a grid and analysis times (only the kept rows).

    Attributes
    ----------
    time_index : ndarray of int, shape (m,)
        Index of each observation's analysis time.
    operator : ObservationOperator
    value, error : ndarray, shape (m,)
        Values and error standard deviations (tracer units).
    platform : ndarray of str, shape (m,)
    rows : ndarray of int, shape (m,)
        Row of each kept observation in the original :class:`Observations`.
    n_times : int
        Number of analysis times T.
    """

    time_index: np.ndarray
    operator: ObservationOperator
    value: np.ndarray
    error: np.ndarray
    platform: np.ndarray
    rows: np.ndarray
    n_times: int

    @property
    def platforms(self) -> tuple[str, ...]:
        """The distinct platforms of the kept rows, sorted."""
        return tuple(str(p) for p in np.unique(self.platform))

    def observed_cells(self, grid: Grid) -> np.ndarray:
        """Boolean (time, ny, nx): the cells whose values entered an observation (its
        interpolation stencil) at each analysis time; the rest is held out."""
        observed = np.zeros((self.n_times, *grid.shape), dtype=bool)
        for k, rows in zip(self.time_index, self.operator.indices, strict=True):
            observed[k].reshape(-1)[grid.wet_index[rows]] = True
        return observed

    def padded(self, max_rows: int = MAX_PADDED_ROWS) -> PaddedObservations:
        """The observations grouped by analysis time, in row order, padded (see
        :class:`PaddedObservations`).

        Raises
        ------
        ObservationError
            If the padding would exceed ``max_rows`` rows (T times the most observations at
            one time), saying to bin them (:meth:`Observations.bin`, ``binning: cell``).
        """
        T = self.n_times
        counts = np.bincount(self.time_index, minlength=T)
        m_max = int(counts.max(initial=0))
        if T * m_max > max_rows:
            raise ObservationError(
                f"{self.value.size} observations padded per analysis time need {T} times x "
                f"{m_max} rows (the most at one time) = {T * m_max} rows, more than "
                f"{max_rows}: the per-time operators (8 bytes x rows x modes) would not fit. "
                "Average them into super-observations, one per wet cell, analysis time and "
                "platform: set `binning: cell` in each observations entry of the config, or "
                "call Observations.bin(grid, times)"
            )
        order = np.argsort(self.time_index, kind="stable")
        k = self.time_index[order]
        slot = np.arange(order.size) - (np.cumsum(counts) - counts)[k]
        out = PaddedObservations(
            values=np.zeros((T, m_max)), variances=np.ones((T, m_max)),
            indices=np.zeros((T, m_max, 4), dtype=self.operator.indices.dtype),
            weights=np.zeros((T, m_max, 4)), valid=np.zeros((T, m_max), dtype=bool),
            rows=np.full((T, m_max), -1, dtype=np.int64),
            platform_index=np.zeros((T, m_max), dtype=np.int64),
        )
        out.values[k, slot] = self.value[order]
        out.variances[k, slot] = self.error[order] ** 2
        out.indices[k, slot] = self.operator.indices[order]
        out.weights[k, slot] = self.operator.weights[order]
        out.valid[k, slot] = True
        out.rows[k, slot] = self.rows[order]
        out.platform_index[k, slot] = np.searchsorted(self.platforms, self.platform[order])
        return out

    def dense_H(self, n_wet: int | None = None) -> np.ndarray:
        """Dense per-time operators ``(T, m_max, n_wet)``, zero rows on padding; small grids."""
        n_wet = self.operator.n_wet if n_wet is None else n_wet
        pad = self.padded()
        H = np.zeros(pad.values.shape + (n_wet,))
        t, s = np.indices(pad.values.shape)
        for c in range(4):
            np.add.at(H, (t, s, pad.indices[..., c]), pad.weights[..., c])
        return H
