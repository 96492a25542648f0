"""The sections of a run configuration, as frozen dataclasses (the schema itself).

Every field is declared with :func:`~tracerbayes.schema.setting`: its value type
(which reads, converts and checks it) and a one-line description, from which
``docs/configuration.md`` is generated. Quantities are stored in the unit their description
names.
"""

from __future__ import annotations

import builtins
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from tracerbayes import methods as tb_methods
from tracerbayes.exact.priors import Smoothness
from tracerbayes.methods import Method
from tracerbayes.schema import (
    INVALID,
    Bool,
    Context,
    File,
    Float,
    Folder,
    Int,
    ListOf,
    Optional,
    Quantity,
    Range,
    Section,
    Str,
    Time,
    WordOr,
    frozen_dataclass,
    join,
    setting,
    suggest,
)

#: A domain's (west, east) or (south, north) edges, degrees or m.
Extent = tuple[float, float]


# ------------------------------------------------------------------------- special types
class Prior:
    """``{family: {parameters}}``: a prior distribution whose location parameters are
    quantities of ``kind`` in ``unit`` (``kind=None``: plain numbers in ``unit``)."""

    FAMILIES = {"lognormal": ("median", "sigma"), "halfnormal": ("scale",),
                "uniform": ("low", "high")}

    def __init__(self, kind: str | None, unit: str):
        self.kind, self.unit = kind, unit
        self.doc = (f"a prior: `{{lognormal: {{median, sigma}}}}`, `{{halfnormal: {{scale}}}}` "
                    f"or `{{uniform: {{low, high}}}}`; median, scale, low, high in {unit}")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            return ctx.error(path, f"expected {self.doc}, got {value!r}")
        (family, params), = value.items()
        if family not in self.FAMILIES:
            return ctx.error(join(path, str(family)), f"unknown distribution {family!r}; use "
                             f"one of {list(self.FAMILIES)}{suggest(family, self.FAMILIES)}")
        where = join(path, family)
        names = self.FAMILIES[family]
        if not isinstance(params, dict):
            return ctx.error(where, f"expected a mapping with keys {list(names)}, got "
                                    f"{params!r}")
        level = (Quantity(self.kind, self.unit, low=0.0, open_low=True) if self.kind
                 else Float(low=0.0, open_low=True))
        kinds = {"median": level, "scale": level, "sigma": Float(low=0.0, open_low=True),
                 "low": (Quantity(self.kind, self.unit, low=0.0) if self.kind
                         else Float(low=0.0)),
                 "high": level}
        out: dict[str, Any] = {}
        for key in params:
            if key not in names:
                ctx.error(join(where, key), f"unknown key {key!r}; valid keys here: "
                                            f"{list(names)}{suggest(key, names)}")
        for name in names:
            if name not in params:
                ctx.error(join(where, name), f"missing required key {name!r}")
            else:
                out[name] = kinds[name].read(params[name], ctx, join(where, name))
        if INVALID in out.values() or len(out) != len(names):
            return INVALID
        if family == "uniform" and not out["low"] < out["high"]:
            return ctx.error(where, f"low ({out['low']:g}) must be below high ({out['high']:g})")
        return PriorSpec(family=family, params=tuple(out.items()))


@frozen_dataclass
class PriorSpec:
    """A parsed prior: family name and (parameter, value) pairs in documented units."""

    family: str
    params: tuple[tuple[str, float], ...]

    def __getitem__(self, name: str) -> float:
        return dict(self.params)[name]


class SmoothnessKind:
    doc = "Matérn smoothness: '1/2', '3/2' or '5/2'"
    _NAMES = {"1/2": Smoothness.HALF, "3/2": Smoothness.THREE_HALVES,
              "5/2": Smoothness.FIVE_HALVES, 0.5: Smoothness.HALF,
              1.5: Smoothness.THREE_HALVES, 2.5: Smoothness.FIVE_HALVES}

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        key = value.strip() if isinstance(value, str) else value
        if isinstance(key, bool) or not isinstance(key, str | float) or key not in self._NAMES:
            return ctx.error(path, f"expected {self.doc}, got {value!r}")
        return self._NAMES[key]


class Resolution:
    """Cell size: degrees on a lon/lat grid, metres on an x/y grid; one value or [dx, dy]."""

    doc = ("cell size: degrees on a lon/lat grid ('0.25 deg'), metres on an x/y grid "
           "('10 km'); one value or [dx, dy]")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        cartesian = ctx.siblings.get("x") is not None
        item = (Quantity("length", "m", low=0.0, open_low=True) if cartesian
                else Quantity("angle", "deg", low=0.0, open_low=True))
        if isinstance(value, list):
            if len(value) != 2:
                return ctx.error(path, f"expected {self.doc}, got {value!r}")
            pair = tuple(item.read(v, ctx, join(path, k)) for k, v in enumerate(value))
            return INVALID if INVALID in pair else pair
        one = item.read(value, ctx, path)
        return INVALID if one is INVALID else (one, one)


class Mask:
    doc = ("'auto' (GLOBE land mask, lon/lat grids), 'none' (all water), or "
           "`{file, variable, regrid, threshold}` (non-zero or finite on water)")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if value is None or value == "none":
            return None
        if value == "auto":
            return "auto"
        if isinstance(value, dict):
            return Section(MaskFile).read(value, ctx, path)
        return ctx.error(path, f"expected {self.doc}, got {value!r}"
                               f"{suggest(value, ('auto', 'none'))}")


class Point:
    doc = "[x, y]: lon/lat in degrees or x/y in metres"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
        return (float(value[0]), float(value[1])) if ok else ctx.error(
            path, f"expected {self.doc}, got {value!r}")


SEASONAL_MODES = WordOr("auto", Int(0), "'auto' (20 when the tracer is not conserved and "
                        "the analysis times span half a year or more and sample the annual "
                        "cycle, else 0) or a number of modes (0: no seasonal forcing)")


# ------------------------------------------------------------------------- sections
@frozen_dataclass
class TracerConfig:
    """The mapped tracer: names and units (CF conventions) used in the output files."""

    section: ClassVar[str] = "tracer"
    name: str = setting(Str(), "variable name in the output, e.g. sst", "tracer")
    standard_name: str | None = setting(Optional(Str()), "CF standard name", None)
    long_name: str = setting(Str(), "human-readable name", "tracer concentration")
    units: str = setting(Str(), "units of values and errors (the 'tracer units')", "1")
    conserved: bool = setting(Bool(), "true: the total is kept exactly (a passive dye); false: "
                              "sources and sinks (SST, oxygen, chlorophyll): anomalies are "
                              "damped toward a static mean state (the basin level, free to "
                              "move, plus a smooth unknown field)", True)
    mean_modes: int = setting(Int(0), "tracer.conserved: false: modes (constant ones "
                              "included) carrying the static mean state; 0: damp toward the "
                              "basin level alone", 40)
    forcing_modes: int = setting(Int(0), "modes (the lowest; constant ones excluded for a "
                                 "conserved tracer) also driven by a forcing with memory, "
                                 "whose sd and correlation time are fitted "
                                 "(priors.forcing_sd, priors.forcing_time); 0: white forcing "
                                 "only", 0)
    seasonal_modes: int | str = setting(SEASONAL_MODES, "tracer.conserved: false: modes "
                                        "(the lowest, constant ones included) also driven by "
                                        "an annual harmonic forcing (two unknown smooth "
                                        "fields, sd priors.seasonal_sd; the run says what "
                                        "auto chose and why)", "auto")
    seasonal_harmonics: int = setting(Int(1), "harmonics of the year in the seasonal "
                                      "forcing: 1, the annual one; 2, also the semi-annual "
                                      "one (two more unknown fields on the same modes, same "
                                      "prior; the times must leave no gap in the year longer "
                                      "than a sixth of it)", 1)


@frozen_dataclass
class MaskFile:
    """A land/sea mask read from a NetCDF file, on the grid's cells or regridded as asked."""

    section: ClassVar[str] = "grid.mask"
    file: Path = setting(File((".nc", ".nc4", ".cdf")), "NetCDF file holding the mask")
    variable: str = setting(Str(), "mask variable: non-zero (or finite) on water", "mask")
    regrid: str = setting(Str(("none", "nearest", "fraction")),
                          "a mask on another grid than the model's (its x/y or lon/lat "
                          "coordinates differ): none refuses it; nearest: each cell takes the "
                          "file's cell containing its centre; fraction: wet where at least "
                          "`threshold` of the cell's area is wet in the file. The file must "
                          "cover every cell; what changed is reported", "none")
    threshold: float = setting(Float(low=0.0, high=1.0, open_low=True),
                               "regrid: fraction: the least wet fraction of a wet cell", 0.5)


GRID_PAD = WordOr("auto", Int(0), "'auto' (a lon/lat grid's edges that end in water are "
                  "extended by 15% of its longer side, at least 2 cells, unless a given "
                  "velocity is configured; 0 for a Cartesian grid, whose walls are meant) or a "
                  "number of cells (0: every edge is a wall)")


@frozen_dataclass
class GridConfig:
    """The grid: lon/lat in degrees (spherical metrics) or Cartesian x/y in metres."""

    section: ClassVar[str] = "grid"
    lon: Extent | None = setting(Optional(Range(Float(-360.0, 360.0), ("west", "east"))),
                                 "west and east edges of the domain, degrees", None)
    lat: Extent | None = setting(Optional(Range(Float(-90.0, 90.0), ("south", "north"))),
                                 "south and north edges of the domain, degrees", None)
    x: Extent | None = setting(Optional(Range(Quantity("length", "m"), ("west", "east"))),
                               "west and east edges of a Cartesian domain, m", None)
    y: Extent | None = setting(Optional(Range(Quantity("length", "m"), ("south", "north"))),
                               "south and north edges of a Cartesian domain, m", None)
    resolution: tuple = setting(Resolution(), "cell size (whole number of cells per extent)")
    mask: Any = setting(Mask(), "land/sea mask", None)
    periodic: bool = setting(Bool(), "wrap in longitude (lon extent exactly 360 degrees)",
                             False)
    pad: int | str = setting(GRID_PAD, "cells added beyond each edge that ends in water (a "
                             "box cut out of a larger ocean): the model is fitted on the "
                             "padded grid, so its walls (the basis is Neumann) are not at the "
                             "box's edges, and the maps are cut back to the box; the run says "
                             "what auto chose", "auto")

    @property
    def cartesian(self) -> bool:
        return self.x is not None

    def check(self) -> list[tuple[str, str]]:
        lonlat, xy = (self.lon, self.lat), (self.x, self.y)
        if any(v is not None for v in lonlat) == any(v is not None for v in xy) or (
                None in (lonlat if self.lon is not None or self.lat is not None else xy)):
            return [("", "give either lon and lat (degrees) or x and y (metres)")]
        problems = []
        names = ("x", "y") if self.cartesian else ("lon", "lat")
        # both extents of one kind are set (checked above)
        extents = cast(tuple[Extent, Extent], xy if self.cartesian else lonlat)
        for name, extent, step in zip(names, extents, self.resolution, strict=True):
            n = (extent[1] - extent[0]) / step
            if not np.isfinite(n) or not np.isclose(n, round(n), rtol=0, atol=1e-6):
                span = f"[{extent[0]:g}, {extent[1]:g}]"
                problems.append(("resolution", f"the {name} extent {span} is "
                                 f"not a whole number of cells of {step:g} ({n:g}); adjust "
                                 "the extent or the resolution"))
        if self.cartesian and self.mask == "auto":
            problems.append(("mask", "'auto' needs a lon/lat grid; give {file, variable} or "
                                     "'none' for an x/y grid"))
        if self.periodic and (self.cartesian or extents[0][1] - extents[0][0] != 360.0):
            problems.append(("periodic", "needs a lon/lat grid whose lon extent is 360"))
        return problems


STEP = WordOr("monthly", Quantity("time", "s", low=0.0, open_low=True),
              "a duration ('1 day', '6 h') or 'monthly' (the same day of every calendar month)")
N_MODES = WordOr("auto", Int(1), "'auto' (enough modes for 95% of the variance of the prior's "
                 "shorter lengthscale, within the compute budget) or a number of modes")


@frozen_dataclass
class TimesConfig:
    """Analysis times: ``start, start + step, ...`` up to and including ``end`` (``step``
    a duration or ``monthly``); or an explicit ``list``; or ``from_observations`` (every
    distinct observation time, floored to ``round``)."""

    section: ClassVar[str] = "times"
    start: Any = setting(Optional(Time()), "first analysis time (with end and step)", None)
    end: Any = setting(Optional(Time()), "last analysis time: included when it falls on the "
                       "step, otherwise the last time is the one before it", None)
    step: Any = setting(STEP, STEP.doc, 86400.0)
    list: tuple | None = setting(Optional(ListOf(Time(), low=1)),
                                 "explicit analysis times, strictly increasing", None)
    from_observations: bool = setting(Bool(), "the analysis times are the distinct "
                                      "observation times, floored to 'round'", False)
    round: float = setting(Quantity("time", "s", low=0.0, open_low=True),
                           "with from_observations: observation times are floored to this "
                           "interval (default 1 day) before taking the distinct ones", 86400.0)

    def check(self) -> builtins.list[tuple[str, str]]:  # `list` is a field here
        ways = [self.start is not None or self.end is not None, self.list is not None,
                self.from_observations]
        if sum(ways) != 1:
            return [("", "give exactly one of: start and end (with step), list, or "
                         "from_observations: true")]
        if ways[0] and (self.start is None or self.end is None):
            missing = "start" if self.start is None else "end"
            return [(missing, f"missing required key {missing!r} (start and end go together)")]
        if ways[0] and self.start > self.end:
            return [("start", f"start {self.start} is after end {self.end}")]
        if self.list is not None:
            values = np.asarray(self.list, dtype="datetime64[ns]")
            bad = np.flatnonzero(np.diff(values) <= np.timedelta64(0, "ns"))
            if bad.size:
                k = int(bad[0])
                return [("list", f"times must be strictly increasing: item {k + 1} "
                                 f"({values[k + 1]}) is not after item {k} ({values[k]})")]
        return []

    def values(self, observation_times: Any = None) -> np.ndarray:
        """The analysis times as ``datetime64[ns]`` (``observation_times`` are needed for
        ``from_observations``)."""
        if self.list is not None:
            return np.asarray(self.list, dtype="datetime64[ns]")
        if self.from_observations:
            if observation_times is None:
                raise ValueError("times.from_observations needs the observation times")
            t = np.asarray(observation_times).astype("datetime64[ns]")
            step = np.timedelta64(int(round(self.round * 1e9)), "ns")
            epoch = np.datetime64("1970-01-01", "ns")
            floored = epoch + ((t - epoch) // step) * step
            return np.unique(floored)
        if self.step == "monthly":
            return _monthly(self.start, self.end)
        step = np.timedelta64(int(round(self.step * 1e9)), "ns")
        # up to and including `end`: never past it
        return np.arange(self.start, self.end + np.timedelta64(1, "ns"),
                         step).astype("datetime64[ns]")


def _monthly(start: Any, end: Any) -> np.ndarray:
    """``start`` and the same day and time of every later calendar month up to ``end``
    (the month's last day when it is shorter)."""
    import calendar

    first = np.datetime64(start, "ns").astype("datetime64[us]").item()
    last = np.datetime64(end, "ns")
    out = []
    year, month = first.year, first.month
    while True:
        day = min(first.day, calendar.monthrange(year, month)[1])
        t = np.datetime64(first.replace(year=year, month=month, day=day), "ns")
        if t > last:
            break
        out.append(t)
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return np.asarray(out, dtype="datetime64[ns]")


@frozen_dataclass
class ColumnsConfig:
    """Column (CSV) or variable (NetCDF) names of one observation source."""

    section: ClassVar[str] = "observations[].columns"
    time: str = setting(Str(), "observation times", "time")
    lon: str | None = setting(Optional(Str()), "longitudes (lon/lat grids; default 'lon')",
                              None)
    lat: str | None = setting(Optional(Str()), "latitudes (default 'lat')", None)
    x: str | None = setting(Optional(Str()), "x positions, m (x/y grids; default 'x')", None)
    y: str | None = setting(Optional(Str()), "y positions, m (default 'y')", None)
    value: str = setting(Str(), "measured values, tracer units", "value")
    error: str | None = setting(Optional(Str()),
                                "error standard deviations (default 'error' unless a "
                                "constant `error` is given)", None)
    platform: str | None = setting(Optional(Str()), "platform names (default: all 'obs')",
                                   None)


@frozen_dataclass
class ObservationSource:
    """One file of observations (``.csv`` or ``.nc``), one row per observation."""

    section: ClassVar[str] = "observations[]"
    file: Path = setting(File((".csv", ".nc", ".nc4")), "the observations file")
    columns: ColumnsConfig = setting(Section(ColumnsConfig), "column names",
                                     ColumnsConfig())
    error: float | None = setting(Optional(Float(low=0.0, open_low=True)),
                                  "one error standard deviation for all rows, tracer units",
                                  None)
    drop_invalid: bool = setting(Bool(), "drop unusable rows with a warning instead of failing",
                                 False)
    duplicates: str = setting(Str(("error", "average", "keep")),
                              "rows repeating others exactly (same time, position, value and "
                              "platform): refuse them; average all rows at the same time, "
                              "position and platform into one (error sqrt(mean(error^2)/k) for "
                              "k rows); or keep them as independent observations", "error")
    binning: str = setting(Str(("none", "cell")),
                           "none: use every row; cell: average the rows in the same wet cell, "
                           "at the same nearest analysis time and from the same platform into "
                           "one super-observation (inverse-variance weighted mean value, error "
                           "1/sqrt(sum 1/error^2)), for large data sets", "none")

    def check(self) -> list[tuple[str, str]]:
        if self.error is not None and self.columns.error is not None:
            return [("error", "give either a constant error or columns.error, not both")]
        return []


@frozen_dataclass
class ConstantVelocityConfig:
    """A uniform unknown current (u, v) with Normal(0, scale) priors."""

    section: ClassVar[str] = "velocity (kind: constant)"
    scale: float = setting(Quantity("speed", "m/s", low=0.0, open_low=True),
                           "prior sd of u and v, m/s", 0.1)


@frozen_dataclass
class GivenVelocityConfig:
    """A known current from a NetCDF file (cell-centre u, v in m/s), optionally scaled."""

    section: ClassVar[str] = "velocity (kind: given)"
    file: Path = setting(File((".nc", ".nc4", ".cdf")), "NetCDF file of u, v")
    u: str = setting(Str(), "eastward velocity variable, m/s", "u")
    v: str = setting(Str(), "northward velocity variable, m/s", "v")
    scale_prior: PriorSpec | None = setting(Optional(Prior(None, "1")),
                                            "prior of a multiplier of the field (null: "
                                            "fixed)", None)
    time_mean: bool = setting(Bool(), "average a time-varying field over time (default: "
                              "each analysis interval moves with the field interpolated to "
                              "its midpoint)", False)
    regrid: str = setting(Str(("none", "linear", "nearest")),
                          "u, v on another grid than the model's (their x/y or lon/lat "
                          "differ from the cell centres): none refuses them; linear "
                          "(bilinear) or nearest interpolates them to the centres, with a "
                          "warning. Either way the file must cover every wet cell", "none")
    missing: str = setting(Str(("error", "nearest", "zero")),
                           "sea cells where u or v is NaN or missing: refuse them; fill with "
                           "the nearest value given; or zero (still water), with a warning",
                           "error")
    divergence: str = setting(Str(("remove", "keep")),
                              "remove: the flow's divergent part on the model grid is taken "
                              "out (a discrete Helmholtz projection; centre values averaged "
                              "to faces are never divergence-free there, and in flux form a "
                              "divergence turns the tracer's level into false sources and "
                              "sinks); keep: use the faces as interpolated", "remove")


@frozen_dataclass
class StreamfunctionVelocityConfig:
    """A divergence-free current from a Matérn Gaussian-process stream function."""

    section: ClassVar[str] = "velocity (kind: streamfunction)"
    n_modes: int = setting(Int(1), "stream-function modes", 9)
    lengthscale: float = setting(Quantity("length", "km", low=0.0, open_low=True),
                                 "Matérn lengthscale, km", 300.0)
    speed: float = setting(Quantity("speed", "m/s", low=0.0, open_low=True),
                           "typical prior speed, m/s", 0.1)
    smoothness: Smoothness = setting(SmoothnessKind(), "Matérn smoothness",
                                     Smoothness.FIVE_HALVES)


VELOCITY_KINDS = {"given": GivenVelocityConfig, "constant": ConstantVelocityConfig,
                  "streamfunction": StreamfunctionVelocityConfig}


@frozen_dataclass
class PriorsConfig:
    """Priors of the physical unknowns; an omitted one keeps the package default."""

    section: ClassVar[str] = "priors"
    diffusivity: PriorSpec | None = setting(Optional(Prior("diffusivity", "m^2/s")),
                                            "eddy diffusivity, m^2/s", None)
    noise_sd: PriorSpec | None = setting(Optional(Prior(None, "tracer units")),
                                         "process-noise sd per day, tracer units", None)
    noise_lengthscale: PriorSpec | None = setting(Optional(Prior("length", "km")),
                                                  "process-noise lengthscale, km", None)
    initial_sd: PriorSpec | None = setting(Optional(Prior(None, "tracer units")),
                                           "sd of the first map, tracer units", None)
    initial_lengthscale: PriorSpec | None = setting(Optional(Prior("length", "km")),
                                                    "lengthscale of the first map, km", None)
    error_scale: PriorSpec | None = setting(Optional(Prior(None, "1")),
                                            "multiplier of the observation errors", None)
    source_sd: PriorSpec | None = setting(
        Optional(Prior(None, "tracer units")),
        "sd of the basin-mean level's change per sqrt(day), tracer units (free total; "
        "default for tracer.conserved: false: halfnormal 0.2 x the data's sd)", None)
    damping: PriorSpec | None = setting(
        Optional(Prior("time", "day")),
        "damping time of the anomalies, days (tracer.conserved: false; default lognormal, "
        "median 30 days, sigma 1)", None)
    mean_state_sd: PriorSpec | None = setting(
        Optional(Prior(None, "tracer units")),
        "sd of the static mean-state field about the basin level, tracer units "
        "(tracer.conserved: false; default halfnormal 2 x the data's sd)", None)
    mean_state_lengthscale: PriorSpec | None = setting(
        Optional(Prior("length", "km")),
        "lengthscale of the mean-state field, km (tracer.conserved: false; default lognormal, "
        "median max(400 km, 8/3 x the grid's scale), sigma 0.5)", None)
    forcing_sd: PriorSpec | None = setting(
        Optional(Prior(None, "tracer units")),
        "sd of the forcing with memory, tracer units per day (tracer.forcing_modes > 0; "
        "default halfnormal 0.1 x the data's sd)", None)
    forcing_time: PriorSpec | None = setting(
        Optional(Prior("time", "day")),
        "correlation time of the forcing with memory, days (tracer.forcing_modes > 0; "
        "default lognormal, median 10 days, sigma 1.5)", None)
    seasonal_sd: PriorSpec | None = setting(
        Optional(Prior(None, "tracer units")),
        "sd of each field of the annual forcing, tracer units per day (tracer.seasonal_modes "
        "> 0; default halfnormal 0.05 x the data's sd)", None)
    representation_scale: PriorSpec | None = setting(
        Optional(Prior(None, "1")),
        "multiplier of the representation error (the variance of the modes left out; "
        "default lognormal, median 1, sigma 2)", None)
    mean_sd: float | None = setting(Optional(Float(low=0.0, open_low=True)),
                                    "prior sd of the mean level, tracer units", None)
    smoothness: Smoothness = setting(SmoothnessKind(), "Matérn smoothness of both fields",
                                     Smoothness.THREE_HALVES)


@frozen_dataclass
class ModelConfig:
    """The reduced spectral model."""

    section: ClassVar[str] = "model"
    n_modes: int | str = setting(N_MODES, "Neumann eigenvectors kept (at most the wet "
                                 "cells)", "auto")
    representation_error: bool = setting(Bool(), "add the prior variance of the modes left "
                                         "out to each observation's error", True)
    transition: str = setting(Str(("galerkin", "projected")),
                              "galerkin: expm of the projected operator; projected: the basis "
                              "advected on the full grid and projected back (loses the "
                              "variance eddies stir below the basis's scales)", "galerkin")


def _config_section(method: type[Method]) -> type[Any]:
    """The ``method:`` section of ``name: <method>``: the method class itself (its settings,
    defaults, checks and descriptions, :mod:`tracerbayes.methods`) plus the run's ``seed``
    and ``allow_unconverged``. An instance is the method object :func:`tracerbayes.fit`
    takes."""
    allow = ("write the outputs and exit 0 even when the diagnostics say the run is not to "
             "be trusted (R-hat, ESS, divergences, prior edges; a collapsed ensemble) "
             "(default: exit 3 with a paragraph why)")
    cls = dataclasses.make_dataclass(
        f"{method.__name__}Config",
        [("seed", int, setting(Int(0), "random seed", 0)),
         ("allow_unconverged", bool, setting(Bool(), allow, False)),
         ("section", ClassVar[str], f"method (name: {method.name})")],
        bases=(method,), frozen=True, kw_only=True)
    cls.__module__, cls.__doc__ = __name__, method.__doc__
    return cls


def method_object(section: Method) -> Method:
    """The method object of a ``method:`` section (its settings, without the run's)."""
    cls = type(section).__mro__[1]
    return cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})


#: The ``method:`` sections, by ``name``.
METHODS = {name: _config_section(cls) for name, cls in tb_methods.METHODS.items()}


@frozen_dataclass
class ValidationConfig:
    """Held-out validation: observations kept out of the fit and scored (RMSE, CRPS and 90%
    interval coverage, observation noise included); the first line of the run's summary."""

    section: ClassVar[str] = "validation"
    holdout: float | None = setting(Optional(Float(0.0, 0.9, open_low=True)),
                                    "fraction of the observations held out (null: none)",
                                    None)
    by: str = setting(Str(("random", "platform", "block")), "random rows, whole platforms, "
                      "or whole spatial blocks (the map away from the data)", "random")


@frozen_dataclass
class OutputConfig:
    """What a run writes, and where."""

    section: ClassVar[str] = "output"
    directory: Path | None = setting(Optional(Folder()),
                                     "output folder (default 'out' beside the config)", None)
    netcdf: bool = setting(Bool(), "write posterior.nc", True)
    zarr: bool = setting(Bool(), "write posterior.zarr", False)
    maps: str = setting(Str(("png", "pdf", "svg", "none")), "map figures format", "png")
    diagnostics: bool = setting(Bool(), "write sampler summary and trace plots", True)
    checkpoint_every: int | None = setting(
        Optional(Int(1)), "NUTS iterations, or LETKF cycles, between the checkpoints saved in "
        "the output folder for --resume (null: 50 iterations, or a tenth of the cycles)", None)
