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

:class:`MapWriter` writes the same files without holding the maps in memory: it creates them
with their CF metadata and the full time dimension up front, then fills ``mean``, ``sd`` and
``quantiles`` one chunk of times at a time (as a posterior's ``map_chunks`` produces them), and
renames them into place only once every time is written.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Hashable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from tracerbayes.io.files import atomic_path, check_output_file, plain_write_errors

__all__ = ["MapWriter", "cf_dataset", "parameter_attributes", "read_netcdf", "write_netcdf",
           "write_zarr"]

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


def _zarr_encodings(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy of ``ds`` keeping only the encodings Zarr understands (NetCDF's
    compression keys mean nothing to it)."""
    store = ds.copy()
    for name in store.variables:
        store[name].encoding = {k: v for k, v in store[name].encoding.items()
                                if k in ("_FillValue", "units", "calendar", "dtype")}
    return store


@contextmanager
def _zarr_temporary(path: Path) -> Iterator[Path]:
    """A temporary directory beside ``path``, renamed onto it (replacing a store there) when
    the block succeeds and removed when it fails."""
    with plain_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tb{os.getpid()}-", suffix=".part",
                                    dir=path.parent))  # removed by remove_stale_temporaries
    try:
        yield tmp
        with plain_write_errors(path):
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _has_zarr() -> bool:
    try:
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


def write_zarr(ds: xr.Dataset, path: str | os.PathLike) -> Path | None:
    """Write ``ds`` as a Zarr store at ``path`` atomically; None (nothing written) without
    the optional ``zarr`` package.

    The store is written to a temporary directory beside ``path`` and renamed onto it when
    complete (an existing store at ``path`` is replaced only then).
    """
    if not _has_zarr():
        return None
    path = Path(path)
    with _zarr_temporary(path) as tmp, plain_write_errors(path):
        _zarr_encodings(ds).to_zarr(tmp, mode="w", consolidated=False)
    return path


class MapWriter:
    """Write the maps of a CF dataset chunk of times by chunk, to NetCDF and/or Zarr.

    The files are those :func:`write_netcdf` and :func:`write_zarr` write from the whole
    dataset (same variables, values, attributes and encodings; the map variables are stored
    in chunks of ``chunk_times`` times), but only one chunk of the maps is ever in memory::

        layout = cf_dataset(posterior.map_layout(), units="degC")
        with MapWriter(layout, netcdf="posterior.nc", chunk_times=8) as writer:
            for start, fields in posterior.map_chunks(chunk_times=8):
                writer.write(start, fields)

    On entering, each file is created under a temporary name beside its target with
    everything but the maps (coordinates, bounds, mask, attributes) and the map variables
    sized for every time; :meth:`write` fills a chunk; on leaving, the files are renamed into
    place if every time was written. An exception (or a time left unwritten, a
    ``ValueError``) removes the temporaries and leaves any earlier file at the target as it
    was. Write errors the user can act on raise
    :class:`~tracerbayes.io.files.OutputError`, as :func:`write_netcdf`.

    Parameters
    ----------
    layout : xarray.Dataset
        From :func:`cf_dataset`. Of ``mean``, ``sd`` and ``quantiles`` only the dims,
        shapes, attributes and encodings are used: their values may be placeholders that
        take no memory (``np.broadcast_to(np.nan, shape)``, what ``map_layout`` gives).
    netcdf, zarr : path, optional
        Targets: a NetCDF-4 file (zlib level 4, as :func:`write_netcdf`) and a Zarr store
        (skipped, with :attr:`zarr` None, when the ``zarr`` package is missing). At least
        one.
    chunk_times : int
        Times per chunk: every :meth:`write` but the last starts at a multiple of it and
        covers a whole number of chunks.
    """

    def __init__(self, layout: xr.Dataset, netcdf: str | os.PathLike | None = None,
                 zarr: str | os.PathLike | None = None, *, chunk_times: int = 8):
        missing = {*_MAP_VARIABLES, "mask", "time"} - set(layout.variables)
        if missing:
            raise ValueError(f"layout lacks variables {sorted(missing)}; pass the dataset "
                             "cf_dataset() returns")
        if netcdf is None and zarr is None:
            raise ValueError("MapWriter needs a target: give netcdf, zarr or both")
        if isinstance(chunk_times, bool) or not isinstance(chunk_times, (int, np.integer)) \
                or chunk_times < 1:
            raise ValueError(f"chunk_times={chunk_times!r}; expected an integer >= 1")
        self.layout = layout
        self.netcdf = None if netcdf is None else check_output_file(netcdf)
        self.zarr = None if zarr is None or not _has_zarr() else Path(zarr)
        self.chunk_times = int(chunk_times)
        self.n_times = int(layout.sizes["time"])
        self._written = np.zeros(self.n_times, bool)
        self._stack = ExitStack()
        self._nc: Any = None
        self._zarr_tmp: Path | None = None

    @property
    def paths(self) -> list[Path]:
        """The targets written (or being written)."""
        return [p for p in (self.netcdf, self.zarr) if p is not None]

    def __enter__(self) -> MapWriter:
        try:
            if self.netcdf is not None:
                tmp = self._stack.enter_context(atomic_path(self.netcdf))
                self._nc = self._create_netcdf(tmp)
                self._stack.callback(self._nc.close)  # closed before the rename
            if self.zarr is not None:
                self._zarr_tmp = self._stack.enter_context(_zarr_temporary(self.zarr))
                with plain_write_errors(self.zarr):
                    self._create_zarr(self._zarr_tmp)
        except BaseException:
            if not self._stack.__exit__(*sys.exc_info()):
                raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None and not self._written.all():
            try:
                left = np.flatnonzero(~self._written)
                raise ValueError(f"{left.size} of {self.n_times} times were never written "
                                 f"(the first: index {left[0]}); nothing was kept")
            except ValueError:
                if not self._stack.__exit__(*sys.exc_info()):
                    raise
        return bool(self._stack.__exit__(exc_type, exc, tb))

    def _chunks(self, name: str) -> tuple[int, ...]:
        var = self.layout[name]
        return tuple(min(self.chunk_times, size) if dim == "time" else
                     1 if dim == "quantile" else size for dim, size in var.sizes.items())

    def _create_netcdf(self, tmp: Path) -> Any:
        """The file with everything but the maps (written by xarray, as
        :func:`write_netcdf`), then the map variables, empty (netCDF4)."""
        import netCDF4

        skeleton = self.layout.drop_vars(list(_MAP_VARIABLES))
        skeleton.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                           encoding=_compressed(skeleton))
        nc = netCDF4.Dataset(tmp, "a")
        try:
            for name in _MAP_VARIABLES:
                var = self.layout[name]
                created = nc.createVariable(
                    name, str(var.dtype), [str(d) for d in var.dims], zlib=True,
                    complevel=4, shuffle=True,
                    fill_value=var.encoding.get("_FillValue", False),
                    chunksizes=self._chunks(name))
                created.setncatts(var.attrs)
                # every write covers whole chunks: a cache of one chunk, not netCDF's 64 MiB
                # per variable, which would fill with written chunks as the times go by
                chunk_bytes = var.dtype.itemsize * int(np.prod(self._chunks(name)))
                created.set_var_chunk_cache(size=chunk_bytes, nelems=1, preemption=1.0)
        except BaseException:
            nc.close()
            raise
        return nc

    def _create_zarr(self, tmp: Path) -> None:
        """The store's metadata, coordinates and mask; map variables sized but empty."""
        store = _zarr_encodings(self.layout)
        for name in _MAP_VARIABLES:
            store[name] = store[name].chunk(dict(zip(store[name].dims, self._chunks(name),
                                                     strict=True)))
        store.to_zarr(tmp, mode="w", compute=False, consolidated=False)

    def write(self, start: int, fields: Mapping[str, np.ndarray]) -> None:
        """Write ``mean``, ``sd`` ((time, y, x) arrays) and ``quantiles`` ((quantile, time,
        y, x)) of the times ``start, start + 1, ...`` (as many as ``mean`` has)."""
        if set(fields) != set(_MAP_VARIABLES):
            raise ValueError(f"fields has {sorted(fields)}; expected {list(_MAP_VARIABLES)}")
        n = int(np.shape(fields["mean"])[0])
        stop = start + n
        if start % self.chunk_times or (stop % self.chunk_times and stop != self.n_times) \
                or not 0 <= start < stop <= self.n_times:
            raise ValueError(f"times {start}:{stop} are not whole chunks of {self.chunk_times} "
                             f"of the {self.n_times} times")
        for name in _MAP_VARIABLES:
            var = self.layout[name]
            want = tuple(n if d == "time" else s for d, s in var.sizes.items())
            if np.shape(fields[name]) != want:
                raise ValueError(f"fields[{name!r}] has shape {np.shape(fields[name])}; "
                                 f"expected {want} (dims {var.dims})")
        if self._nc is not None:
            for name in _MAP_VARIABLES:
                index = tuple(slice(start, stop) if d == "time" else slice(None)
                              for d in self.layout[name].dims)
                self._nc[name][index] = np.asarray(fields[name])
        if self._zarr_tmp is not None and self.zarr is not None:
            region = xr.Dataset({name: (self.layout[name].dims, np.asarray(fields[name]))
                                 for name in _MAP_VARIABLES})
            with plain_write_errors(self.zarr):
                region.to_zarr(self._zarr_tmp, region={"time": slice(start, stop)},
                               consolidated=False)
        self._written[start:stop] = True
