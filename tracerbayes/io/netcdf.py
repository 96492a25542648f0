"""CF-1.10 NetCDF (and optional Zarr) output of posterior maps, written atomically.

:func:`cf_dataset` turns the maps of :meth:`tracerbayes.Posterior.maps` (``mean``, ``sd`` and
``quantiles`` on ``(time, lat, lon)`` or ``(time, y, x)``, plus the water ``mask``) into a
dataset following the CF conventions, version 1.10 (https://cfconventions.org):

* coordinate variables with ``standard_name``, ``units`` and ``axis`` (latitude/longitude in
  degrees_north/degrees_east, or ``projection_x/y_coordinate`` in m for Cartesian grids, which
  have no georeference and hence no ``grid_mapping``), with cell ``bounds`` half-way between
  centres (CF section 7.1), since the finite-volume state is a cell average
  (``cell_methods = "area: mean"``, section 7.3);
* CF time (``seconds since 1970-01-01 00:00:00``, ``standard`` calendar); model times in float
  seconds are read as seconds after that epoch;
* the tracer's ``standard_name`` on ``mean``; on ``sd`` the same name with the modifier
  ``standard_error`` (CF Appendix C: still valid in CF 1.10; only the ``number_of_observations``
  and ``status_flag`` modifiers are deprecated), and ``ancillary_variables = "sd quantiles"`` on
  ``mean`` (section 3.4);
* the mask as a flag variable with ``standard_name = sea_binary_mask`` (1 on water);
* global attributes: ``Conventions``, ``title``, ``history`` (ISO time and command line),
  ``source`` (with ``tracerbayes <version>``), ``method``, the configuration used (``config``)
  and one ``posterior_<parameter>`` attribute per parameter summarising its posterior.

:func:`write_netcdf` writes NetCDF-4 with zlib compression to a temporary file beside the
target and renames it only when complete; :func:`write_zarr` does the same with a temporary
directory when ``zarr`` is installed.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from tracerbayes.io.files import atomic_path, check_output_file, plain_write_errors

__all__ = ["cf_dataset", "parameter_attributes", "read_netcdf", "write_netcdf", "write_zarr"]

#: Reference of CF time; float model times are seconds after it.
EPOCH = "1970-01-01 00:00:00"

_COORDINATES: dict[Hashable, dict[str, str]] = {
    "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north",
            "axis": "Y"},
    "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east",
            "axis": "X"},
    "y": {"standard_name": "projection_y_coordinate", "long_name": "y (northward distance)",
          "units": "m", "axis": "Y"},
    "x": {"standard_name": "projection_x_coordinate", "long_name": "x (eastward distance)",
          "units": "m", "axis": "X"},
}
_MAP_VARIABLES = ("mean", "sd", "quantiles")


def _version() -> str:
    from tracerbayes import __version__

    return __version__


def _interval(row: Any) -> tuple[str, float, float] | None:
    """The credible interval of a summary row: (label, lower, upper) or None."""
    if "q5" in row and "q95" in row:
        return "90% interval", row["q5"], row["q95"]
    for kind, label in (("hdi", "HDI"), ("eti", "ETI")):
        cols = sorted((c for c in row.index if str(c).startswith(f"{kind}_")),
                      key=lambda c: float(str(c)[4:].rstrip("%")))
        if len(cols) == 2:
            width = float(str(cols[1])[4:].rstrip("%")) - float(str(cols[0])[4:].rstrip("%"))
            return f"{width:g}% {label}", row[cols[0]], row[cols[1]]
    return None


def parameter_attributes(summary: Any, units: dict[str, str] | None = None) -> dict[str, str]:
    """Global attributes summarising the parameters' posterior, one per parameter.

    ``posterior_<name> = "mean 612 m2 s-1, sd 50, 94% HDI [520, 700]"``.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per parameter with columns ``mean`` and ``sd`` and an interval: ArviZ's
        ``hdi_a%``/``hdi_b%`` (or ``eti_``), or ``q5``/``q95`` (``Posterior.parameter_table``).
    units : dict, optional
        UDUNITS units of the parameters, by row name.
    """
    units = units or {}
    missing = {"mean", "sd"} - set(summary.columns)
    if missing:
        raise ValueError(f"parameter_summary lacks columns {sorted(missing)}; pass "
                         "az.summary(idata) or Posterior.parameter_table()")
    out = {}
    for name, row in summary.iterrows():
        unit = f" {units[name]}" if name in units else ""
        text = f"mean {row['mean']:.6g}{unit}, sd {row['sd']:.4g}"
        interval = _interval(row)
        if interval is not None:
            label, lo, hi = interval
            text += f", {label} [{lo:.6g}, {hi:.6g}]"
        out["posterior_" + re.sub(r"\W", "_", str(name)).strip("_")] = text
    return out


def _bounds(centres: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    """(n, 2) cell bounds half-way between centres, the outer ones mirrored."""
    mid = 0.5 * (centres[1:] + centres[:-1])
    edges = np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])
    if clip is not None:
        edges = np.clip(edges, *clip)
    return np.stack([edges[:-1], edges[1:]], axis=-1)


def _cf_time(ds: xr.Dataset) -> xr.Dataset:
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        seconds = np.asarray(ds["time"].values, dtype=float)
        if not np.all(np.isfinite(seconds)):
            raise ValueError("maps['time'] has non-finite values; every map needs a time")
        times = np.datetime64(EPOCH.replace(" ", "T"), "ns") + np.round(
            seconds * 1e9).astype("timedelta64[ns]")
        ds = ds.assign_coords(time=("time", times))
    ds["time"].attrs = {"standard_name": "time", "long_name": "analysis time", "axis": "T"}
    ds["time"].encoding = {"units": f"seconds since {EPOCH}", "calendar": "standard",
                           "dtype": "float64", "_FillValue": None}
    return ds


def _default_history() -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""
    return f"{now}: {command or 'python'} (tracerbayes {_version()})"


def cf_dataset(
    maps: xr.Dataset,
    *,
    units: str,
    tracer_standard_name: str | None = None,
    tracer_long_name: str = "tracer concentration",
    title: str = "tracerbayes posterior maps of an ocean tracer",
    method: str | None = None,
    source: str | None = None,
    history: str | None = None,
    config_text: str | None = None,
    parameter_summary: Any = None,
    parameter_units: dict[str, str] | None = None,
    institution: str | None = None,
    references: str | None = None,
) -> xr.Dataset:
    """A CF-1.10 copy of posterior ``maps`` (see the module docstring for what is set).

    Parameters
    ----------
    maps : xarray.Dataset
        From :meth:`tracerbayes.Posterior.maps`: ``mean``, ``sd``, ``quantiles`` and ``mask``
        on ``time`` and ``lat, lon`` (degrees) or ``y, x`` (m). Float times are seconds
        after 1970-01-01; give datetime64 times for real dates.
    units : str
        UDUNITS units of the tracer (``"degC"``, ``"1e-3"`` for practical salinity,
        ``"mg m-3"``, ``"mol m-3"``, ``"1"``).
    tracer_standard_name : str, optional
        CF standard name of the tracer (e.g. ``"sea_surface_temperature"``,
        ``"sea_water_salinity"``); None when none applies (a dye): long names only.
    tracer_long_name : str
        Human-readable name of the tracer.
    title, method, source, history, institution, references : str, optional
        Global attributes. ``source`` always names ``tracerbayes <version>``; ``history``
        defaults to the current UTC time and command line; ``method`` to ``maps.attrs``.
    config_text : str, optional
        The configuration that produced the maps, stored verbatim as ``config``.
    parameter_summary : pandas.DataFrame, optional
        Posterior summary of the parameters (``az.summary(idata)`` or
        ``Posterior.parameter_table()``), stored by :func:`parameter_attributes`.
    parameter_units : dict, optional
        Units of the parameters for that summary.

    Returns
    -------
    xarray.Dataset
        Ready for :func:`write_netcdf` (encodings set: NaN ``_FillValue`` on the maps, none
        on coordinates and the mask).
    """
    missing = {*_MAP_VARIABLES, "mask", "time", "quantile"} - set(maps.variables)
    if missing:
        raise ValueError(f"maps lacks variables {sorted(missing)}; pass Posterior.maps() or a "
                         "Dataset in its layout (mean, sd, quantiles, mask; time, quantile)")
    ydim, xdim = maps["mask"].dims
    if (ydim, xdim) not in (("lat", "lon"), ("y", "x")):
        raise ValueError(f"maps['mask'] has dims {(ydim, xdim)}; expected ('lat', 'lon') or "
                         "('y', 'x')")
    ds = maps.copy()
    ds.attrs = {}
    for name in (ydim, xdim):
        ds[name].attrs = {**_COORDINATES[name], "bounds": f"{name}_bnds"}
        ds[name].encoding = {"_FillValue": None}
        clip = (-90.0, 90.0) if name == "lat" else None
        ds[f"{name}_bnds"] = ((name, "nv"), _bounds(np.asarray(ds[name].values, float), clip))
        ds[f"{name}_bnds"].encoding = {"_FillValue": None}
    ds = _cf_time(ds)
    ds["quantile"].attrs = {"long_name": "cumulative probability of the posterior quantile",
                            "units": "1"}
    ds["quantile"].encoding = {"_FillValue": None}
    what = {"mean": "posterior mean", "sd": "posterior standard deviation",
            "quantiles": "posterior quantiles"}
    for name in _MAP_VARIABLES:
        ds[name].attrs = {"long_name": f"{what[name]} of {tracer_long_name}", "units": units,
                          "cell_methods": "area: mean"}
        ds[name].encoding = {"_FillValue": np.float64(np.nan)}
    ds["mean"].attrs["ancillary_variables"] = "sd quantiles"
    if tracer_standard_name:
        ds["mean"].attrs["standard_name"] = tracer_standard_name
        ds["sd"].attrs["standard_name"] = f"{tracer_standard_name} standard_error"
    ds["mask"] = ds["mask"].astype(np.int8)
    ds["mask"].attrs = {"standard_name": "sea_binary_mask", "long_name": "water mask",
                        "units": "1", "flag_values": np.array([0, 1], dtype=np.int8),
                        "flag_meanings": "land water"}
    ds["mask"].encoding = {"_FillValue": None}
    ds.attrs = _global_attributes(maps.attrs, title, method, source, history, config_text,
                                  parameter_summary, parameter_units, institution, references)
    return ds


def _global_attributes(maps_attrs: dict, title: str, method: str | None, source: str | None,
                       history: str | None, config_text: str | None, parameter_summary: Any,
                       parameter_units: dict | None, institution: str | None,
                       references: str | None) -> dict[str, Any]:
    package = f"tracerbayes {_version()}"
    if source is None:
        source = f"{package} (stochastic advection-diffusion state-space model)"
    elif package not in source:
        source = f"{source}; {package}"
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.10",
        "title": title,
        "history": history or _default_history(),
        "source": source,
        "comment": "Posterior mean, standard deviation and quantiles of the tracer on each "
                   "grid cell (cell averages), mixed over posterior parameter draws; NaN on "
                   "land.",
    }
    method = method or maps_attrs.get("method")
    if method:
        attrs["method"] = str(method)
    if "n_draws_mixed" in maps_attrs:
        attrs["n_draws_mixed"] = int(maps_attrs["n_draws_mixed"])
    if institution:
        attrs["institution"] = institution
    if references:
        attrs["references"] = references
    if config_text is not None:
        attrs["config"] = str(config_text)
    if parameter_summary is not None:
        attrs.update(parameter_attributes(parameter_summary, parameter_units))
    return attrs


def _compressed(ds: xr.Dataset) -> dict[Hashable, dict[str, Any]]:
    """The variables' own encodings, plus zlib compression of the 2-D and larger ones."""
    return {name: {**ds[name].encoding, "zlib": True, "complevel": 4, "shuffle": True}
            for name in ds.data_vars if ds[name].ndim >= 2}


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as NetCDF-4 (zlib level 4) to ``path``, atomically; return the path.

    The file is written to a temporary name beside ``path`` and renamed onto it only when
    complete, so a failure leaves neither a partial file nor the temporary one. A path that
    cannot take a file (empty, a folder, in a folder that is not writable) and a full disk
    raise :class:`~tracerbayes.io.files.OutputError` naming it.
    """
    path = check_output_file(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=_compressed(ds))
    return path


def read_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Read a file written by :func:`write_netcdf` into memory (the file is closed)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def write_zarr(ds: xr.Dataset, path: str | os.PathLike) -> Path | None:
    """Write ``ds`` as a Zarr store at ``path`` atomically; None (nothing written) without
    the optional ``zarr`` package.

    The store is written to a temporary directory beside ``path`` and renamed onto it when
    complete (an existing store at ``path`` is replaced only then).
    """
    try:
        import zarr  # noqa: F401
    except ImportError:
        return None
    path = Path(path)
    with plain_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tb{os.getpid()}-", suffix=".part",
                                    dir=path.parent))  # removed by remove_stale_temporaries
    try:
        store = ds.copy()
        for name in store.variables:  # NetCDF compression keys mean nothing to Zarr
            store[name].encoding = {k: v for k, v in store[name].encoding.items()
                                    if k in ("_FillValue", "units", "calendar", "dtype")}
        with plain_write_errors(path):
            store.to_zarr(tmp, mode="w", consolidated=False)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
