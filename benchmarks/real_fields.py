"""Held-out mapping problems cut from real gridded ocean fields.

A real field (sea-surface temperature on a regular lon/lat grid) is cut to a lon/lat box, a
fraction of its ocean cells is sampled at every time as noisy "observations", and the rest is
held out to score a map against. The fields come from packages installed on the machine,
never from the network and never copied into this repository:

``coads_sst``
    COADS monthly SST climatology, 12 months, 2 deg, degC (Debian ``ferret-datasets``:
    ``/usr/share/ferret-vis/data/coads_climatology.cdf``). Its times are given as the 15th
    of each month of the nominal year 2001.
``eofs_pacific``
    50 winters (NDJFM means, 1963-2012) of Pacific SST anomalies, 5 deg, degC (PyPI ``eofs``:
    ``eofs/examples/example_data/sst_ndjfm_anom.nc``), one time per winter (the centre of
    its November-March window, mid-January).
``hadisst``
    HadISST1.1 SST of August 2012, 1 deg, degC, one time (shipped with cartopy:
    ``cartopy/data/netcdf/HadISST1_SST_update.nc``; academic research use only).

:func:`make_problem` writes, into one folder,

* ``obs.csv``: ``time, lon, lat, value, error, platform`` (platform ``sample``), one row per
  sampled cell and time, at the cell centre;
* ``truth.nc``: the field on the region's grid (NaN on land) and a boolean ``observed``
  (time, lat, lon) marking the sampled cells: the held-out cells are ``mask & ~observed``;
* ``mask.nc``: ``mask`` (lat, lon), 1 on ocean, 0 on land. Ocean is where the field is
  finite at every time; cells missing at some times only (sea ice, no data) are land, and
  are NaN in ``truth.nc`` too;
* ``config.yaml``: a ``tracerbayes run`` configuration whose grid cells are the field's cells
  (``grid.lon``/``grid.lat`` are cell edges), the mask from ``mask.nc``, the analysis times,
  and the package's default priors and method (nothing tuned to the truth).

Run: ``python benchmarks/real_fields.py coads_sst /tmp/coads`` then
``tracerbayes validate /tmp/coads/config.yaml`` and ``tracerbayes run /tmp/coads/config.yaml``.
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["FIELDS", "FieldInfo", "SourceMissingError", "load_field", "make_problem",
           "main"]

KELVIN_OFFSET = 273.15

COADS_FILE = Path("/usr/share/ferret-vis/data/coads_climatology.cdf")


class SourceMissingError(FileNotFoundError):
    """The package holding a field's data is not installed."""


@dataclass(frozen=True)
class FieldInfo:
    """What make_problem needs to know of a field besides its values."""

    resolution: float  # cell size, degrees (lon and lat)
    region: tuple[float, float, float, float]  # default (lon0, lon1, lat0, lat1), cell edges
    title: str
    long_name: str
    standard_name: str | None
    install: str  # how to get the data


FIELDS: dict[str, FieldInfo] = {
    "coads_sst": FieldInfo(
        resolution=2.0, region=(-80.0, 0.0, 10.0, 60.0),
        title="COADS monthly SST climatology, North Atlantic",
        long_name="sea surface temperature", standard_name="sea_surface_temperature",
        install="apt-get install -y --no-install-recommends ferret-datasets",
    ),
    "eofs_pacific": FieldInfo(
        resolution=5.0, region=(120.0, 260.0, -20.0, 60.0),
        title="NDJFM mean SST anomalies 1963-2012, tropical and North Pacific",
        long_name="NDJFM mean sea surface temperature anomaly", standard_name=None,
        install="pip install eofs",
    ),
    "hadisst": FieldInfo(
        resolution=1.0, region=(-40.0, -10.0, 20.0, 40.0),
        title="HadISST1 SST, August 2012, subtropical North-East Atlantic",
        long_name="sea surface temperature", standard_name="sea_surface_temperature",
        install="pip install cartopy",
    ),
}


# ----------------------------------------------------------------------------- loading
def _wrap_lon(da: xr.DataArray) -> xr.DataArray:
    """Longitudes to [-180, 180), sorted ascending; latitudes ascending; float64 axes."""
    lon = np.asarray(da["lon"].values, dtype=float)
    lat = np.asarray(da["lat"].values, dtype=float)
    da = da.assign_coords(lon=((lon + 180.0) % 360.0) - 180.0, lat=lat)
    da = da.sortby(["lat", "lon"])
    if np.any(np.diff(da["lon"].values) <= 0):
        raise ValueError("longitudes repeat after wrapping to [-180, 180)")
    return da


def _finish(da: xr.DataArray, name: str, units: str, source: str) -> xr.DataArray:
    info = FIELDS[name]
    da = da.transpose("time", "lat", "lon").astype(np.float64)
    da = da.where(np.isfinite(da) & (np.abs(da) < 1e3))  # any fill value left: NaN
    da.name = "sst"
    da.attrs = {"units": units, "long_name": info.long_name, "source": source}
    if info.standard_name:
        da.attrs["standard_name"] = info.standard_name
    for axis in ("lon", "lat"):  # centres on one lattice (a regional lon may wrap: a gap)
        k = (da[axis].values - da[axis].values[0]) / info.resolution
        if not np.allclose(k, np.round(k), rtol=0, atol=1e-6):
            raise ValueError(f"{name}: {axis} is not on a regular {info.resolution} deg lattice")
    da.encoding = {}  # the source file's encodings (fill values, time units) stay behind
    for coord in ("time", "lat", "lon"):
        da[coord].encoding = {}
    da["time"].attrs = {"standard_name": "time"}
    da["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    da["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    return da


def _load_coads() -> xr.DataArray:
    if not COADS_FILE.is_file():
        raise SourceMissingError(
            f"coads_sst needs the COADS climatology {COADS_FILE}, which is not installed; "
            f"install it with `{FIELDS['coads_sst'].install}` (Debian/Ubuntu package "
            "ferret-datasets)"
        )
    with xr.open_dataset(COADS_FILE, decode_times=False) as ds:
        da = ds["SST"].load()
    da = da.rename({"TIME": "time", "COADSY": "lat", "COADSX": "lon"})
    if da.sizes["time"] != 12:
        raise ValueError(f"{COADS_FILE}: expected 12 monthly times, got {da.sizes['time']}")
    # The file's times are hours since year 0 (a climatological "modulo" axis): use the
    # 15th of each month of a nominal year instead.
    months = np.array([f"2001-{m:02d}-15" for m in range(1, 13)], dtype="datetime64[ns]")
    da = da.assign_coords(time=months)
    return _finish(_wrap_lon(da), "coads_sst", "degC", f"COADS climatology ({COADS_FILE})")


def _package_dir(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissingError(
            f"{name} needs the Python package {package!r}, which is not installed; install it "
            f"with `{FIELDS[name].install}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(package: str, name: str, relative: str) -> Path:
    """A data file shipped inside an installed package, or SourceMissingError saying how to
    get it back."""
    path = _package_dir(package, name) / relative
    if not path.is_file():
        raise SourceMissingError(
            f"{name}: {path} is missing from the installed {package}; reinstall it with "
            f"`pip install --force-reinstall {package}`"
        )
    return path


def _load_eofs() -> xr.DataArray:
    path = _package_file("eofs", "eofs_pacific", "examples/example_data/sst_ndjfm_anom.nc")
    with xr.open_dataset(path) as ds:
        da = ds["sst"].load()
    da = da.rename({"latitude": "lat", "longitude": "lon"})
    # No units attribute in the file: the anomalies are in degrees Celsius (= kelvin).
    return _finish(_wrap_lon(da), "eofs_pacific", "degC", f"eofs example data ({path})")


def _load_hadisst() -> xr.DataArray:
    path = _package_file("cartopy", "hadisst", "data/netcdf/HadISST1_SST_update.nc")
    with warnings.catch_warnings():  # the file's time_bnds units have an unpadded year
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        with xr.open_dataset(path) as ds:
            da = ds["sst"].load()
    return _finish(_wrap_lon(da), "hadisst", "degC",
                   f"HadISST1.1, Met Office Hadley Centre, academic research use only ({path})")


_LOADERS = {"coads_sst": _load_coads, "eofs_pacific": _load_eofs, "hadisst": _load_hadisst}


def load_field(name: str) -> xr.DataArray:
    """A real field with dims (time, lat, lon): lon in [-180, 180), lat ascending, NaN on land.

    ``name`` is one of ``coads_sst``, ``eofs_pacific``, ``hadisst`` (see the module's
    docstring). Raises :class:`SourceMissingError`, saying what to install, when the package
    holding the data is absent.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown field {name!r}; choose one of {sorted(_LOADERS)}")
    return _LOADERS[name]()


# ----------------------------------------------------------------------------- regions
def _check_region(name: str, region, res: float, lon_centres: np.ndarray,
                  lat_centres: np.ndarray) -> tuple[float, float, float, float]:
    """The region's edges, lon1 > lon0 (lon1 may pass 180), aligned with the field's cells."""
    lon0, lon1, lat0, lat1 = (float(v) for v in region)
    if lon1 <= lon0:  # e.g. 150 -110: across the date line
        lon1 += 360.0
    if not (lon1 - lon0 <= 360.0 and -90.0 <= lat0 < lat1 <= 90.0):
        raise ValueError(f"region {region} must be lon0 lon1 lat0 lat1 (edges, degrees), at "
                         "most 360 degrees wide, with -90 <= lat0 < lat1 <= 90")
    offsets = {"lon": lon_centres[0] - res / 2, "lat": lat_centres[0] - res / 2}
    snapped = []
    for axis, value in (("lon", lon0), ("lon", lon1), ("lat", lat0), ("lat", lat1)):
        k = (value - offsets[axis]) / res
        snapped.append(offsets[axis] + res * round(k))
    if not np.allclose(snapped, [lon0, lon1, lat0, lat1], rtol=0, atol=1e-6):
        near = " ".join(f"{v:g}" for v in snapped)
        raise ValueError(
            f"region {region} does not fall on the cell edges of {name} ({res:g} deg cells "
            f"with edges at {offsets['lon'] % res:g} + k*{res:g}); try --region {near}"
        )
    if snapped[1] <= snapped[0] or snapped[3] <= snapped[2]:
        raise ValueError(f"region {region} holds no cells of {name}")
    return snapped[0], snapped[1], snapped[2], snapped[3]


def cut_region(field: xr.DataArray, name: str, region=None) -> xr.DataArray:
    """The field on the region's cells, lon continuous from lon0 (e.g. 120..260 on a box
    across the date line); cells of the box the field does not cover are NaN."""
    res = FIELDS[name].resolution
    lon0, lon1, lat0, lat1 = _check_region(name, FIELDS[name].region if region is None
                                           else region, res, field["lon"].values,
                                           field["lat"].values)
    lon = lon0 + res * (np.arange(round((lon1 - lon0) / res)) + 0.5)
    lat = lat0 + res * (np.arange(round((lat1 - lat0) / res)) + 0.5)
    shifted = lon0 + np.mod(field["lon"].values - lon0, 360.0)
    field = field.assign_coords(lon=shifted).sortby("lon")
    tol = res / 100
    out = field.reindex(lon=lon, lat=lat, method="nearest", tolerance=tol)
    out = out.assign_coords(lon=lon, lat=lat)  # exact centres (no float noise)
    out["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    out["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    out.attrs = dict(field.attrs)
    out.attrs["region"] = [lon0, lon1, lat0, lat1]
    return out


# ----------------------------------------------------------------------------- times
def _iso_all(times) -> list[str]:
    """ISO 8601 texts in one format: dates if all at midnight, else date-times (seconds)."""
    text = np.datetime_as_string(np.asarray(times, dtype="datetime64[s]"), unit="s")
    if all(t.endswith("T00:00:00") for t in text):
        return [t[:10] for t in text]
    return [str(t) for t in text]


def _duration(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)} day"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"


def _analysis_times(times: np.ndarray) -> list[str]:
    """The ``times:`` lines of the configuration, exactly the field's times: a regular step,
    ``step: monthly`` (the same day of every month), or an explicit ``list``."""
    t = np.asarray(times, dtype="datetime64[s]")
    iso = _iso_all(t)
    if t.size == 1:
        return [f"  start: {iso[0]}", f"  end: {iso[0]}"]
    steps = np.diff(t).astype(np.int64)
    if np.all(steps == steps[0]):
        return [f"  start: {iso[0]}", f"  end: {iso[-1]}",
                f"  step: {_duration(float(steps[0]))}"]
    days = t.astype("datetime64[D]")
    months = t.astype("datetime64[M]")
    same_day = np.all((days - months.astype("datetime64[D]")) == (days[0] - months[0]))
    if same_day and np.all(np.diff(months).astype(int) == 1) and np.all(
            (t - days.astype("datetime64[s]")) == (t[0] - days[0].astype("datetime64[s]"))):
        return [f"  start: {iso[0]}", f"  end: {iso[-1]}", "  step: monthly"]
    return [line.replace("# times: {list: [", "  list: [").replace("#" + " " * 16, " " * 9)
            .replace("]}", "]") for line in _time_list_comment(t)]


def _time_list_comment(times: np.ndarray) -> list[str]:
    """``# times: {list: [...]}`` wrapped to comment lines of under 100 characters."""
    items = _iso_all(times)
    head, indent = "# times: {list: [", "#" + " " * 16
    lines, line = [], head
    for k, item in enumerate(items):
        piece = item + ("]}" if k == len(items) - 1 else ",")
        if len(line) + len(piece) + 1 > 98 and line not in (head, indent):
            lines.append(line.rstrip())
            line = indent
        line += piece if line in (head, indent) else " " + piece
    lines.append(line)
    return lines


# ----------------------------------------------------------------------------- problem
def _config_text(name: str, region: list[float], times: np.ndarray, units: str,
                 kelvin: bool, n_ocean: int, n_obs: int, fraction: float, noise_sd: float,
                 seed: int) -> str:
    info = FIELDS[name]
    lon0, lon1, lat0, lat1 = region
    time_lines = _analysis_times(times)
    lines = [
        f"# {info.title}.",
        "# A held-out mapping problem written by benchmarks/real_fields.py:",
        f"# {name}, region lon {lon0:g}..{lon1:g}, lat {lat0:g}..{lat1:g}; {n_ocean} ocean "
        f"cells, {times.size} times;",
        f"# {n_obs} observations ({fraction:g} of the ocean cells per time), noise sd "
        f"{noise_sd:g} {units}, seed {seed}.",
        "# Held-out truth: truth.nc (score the cells where mask == 1 and observed is false).",
        "# Priors and method: the package defaults (nothing tuned to the truth).",
        f"title: {info.title}" + (" (kelvin)" if kelvin else ""),
        "tracer:",
        "  name: sst",
        "  conserved: false          # SST has sources and sinks (air-sea fluxes)",
    ]
    if info.standard_name:
        lines.append(f"  standard_name: {info.standard_name}")
    lines += [
        f"  long_name: {info.long_name}",
        f"  units: {units}",
        "grid:                      # lon/lat are cell EDGES: the cells are the field's cells",
        f"  lon: [{lon0:g}, {lon1:g}]",
        f"  lat: [{lat0:g}, {lat1:g}]",
        f"  resolution: {info.resolution:g} deg",
        "  mask: {file: mask.nc, variable: mask}",
        "times:",
    ]
    lines += time_lines
    lines += [
        "observations:",
        "  - file: obs.csv",
        "    columns: {time: time, lon: lon, lat: lat, value: value, error: error, "
        "platform: platform}",
        "output:",
        "  directory: out",
        "",
    ]
    return "\n".join(lines)


def make_problem(name: str, region, out_dir, *, fraction: float = 0.05,
                 noise_sd: float = 0.2, seed: int = 0, kelvin: bool = False) -> dict[str, Path]:
    """Write a held-out mapping problem of field ``name`` into ``out_dir``.

    ``region`` is ``(lon0, lon1, lat0, lat1)`` in degrees, on the field's cell edges (None:
    the field's default box). At every time ``round(fraction * n_ocean)`` (at least one)
    distinct ocean cells are drawn with ``numpy.random.default_rng(seed)``, and observed at
    their centres with Gaussian noise of sd ``noise_sd``. With ``kelvin`` the values (truth
    and observations) are in K (+273.15). Returns the paths of ``obs.csv``, ``truth.nc``,
    ``mask.nc`` and ``config.yaml`` (keys ``obs``, ``truth``, ``mask``, ``config``).

    All outputs use the region's longitudes, increasing from ``lon0``: on a box across the
    date line (``120 260`` or ``120 -100``) they pass 180 (tracerbayes wraps longitudes into
    a regional grid's range, so either convention would be read the same).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not noise_sd > 0.0:
        raise ValueError(f"noise_sd must be > 0 (it is the observations' error), got {noise_sd}")
    field = cut_region(load_field(name), name, region)
    finite = np.isfinite(field.values)
    ocean = finite.all(axis=0)
    n_ocean = int(ocean.sum())
    if n_ocean == 0:
        raise ValueError(f"region {field.attrs['region']} of {name} has no ocean cells")
    n_partial = int((finite.any(axis=0) & ~ocean).sum())
    offset = KELVIN_OFFSET if kelvin else 0.0
    units = "K" if kelvin else field.attrs["units"]
    truth = field.where(ocean[None]) + offset

    rng = np.random.default_rng(seed)
    n_time, ny, nx = field.shape
    per_time = max(1, round(fraction * n_ocean))
    ocean_j, ocean_i = np.nonzero(ocean)
    observed = np.zeros(field.shape, dtype=bool)
    iso = _iso_all(field["time"].values)
    rows = []
    for k in range(n_time):
        pick = rng.choice(n_ocean, size=per_time, replace=False)
        j, i = ocean_j[pick], ocean_i[pick]
        observed[k, j, i] = True
        values = truth.values[k, j, i] + rng.normal(0.0, noise_sd, size=per_time)
        rows.append(pd.DataFrame({
            "time": iso[k], "lon": field["lon"].values[i],
            "lat": field["lat"].values[j], "value": values, "error": noise_sd,
            "platform": "sample",
        }))
    obs = pd.concat(rows, ignore_index=True)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / f for key, f in (("obs", "obs.csv"), ("truth", "truth.nc"),
                                         ("mask", "mask.nc"), ("config", "config.yaml"))}
    obs.to_csv(paths["obs"], index=False)

    truth.attrs = {**field.attrs, "units": units}
    truth.attrs.pop("region", None)
    attrs = {
        "title": FIELDS[name].title, "field": name, "region_lon_lat_edges": field.attrs["region"],
        "fraction": fraction, "noise_sd": noise_sd, "seed": seed, "kelvin": int(kelvin),
        "ocean_cells": n_ocean, "partial_cells_set_to_land": n_partial,
        "comment": "held-out cells: mask == 1 and observed == false; cells missing at some "
                   "times only are land here",
    }
    ds = xr.Dataset({"sst": truth, "observed": (("time", "lat", "lon"), observed)},
                    attrs=attrs)
    ds["observed"].attrs = {"long_name": "cell sampled as an observation at this time"}
    ds.to_netcdf(paths["truth"])

    mask = xr.DataArray(ocean.astype(np.int8), coords={"lat": field["lat"], "lon": field["lon"]},
                        dims=("lat", "lon"), name="mask",
                        attrs={"long_name": "ocean (1) / land (0)", "flag_values": [0, 1],
                               "comment": "ocean: the field is finite at every time"})
    mask.to_dataset().assign_attrs(field=name).to_netcdf(paths["mask"])

    text = _config_text(name, field.attrs["region"], field["time"].values, units, kelvin,
                        n_ocean, len(obs), fraction, noise_sd, seed)
    paths["config"].write_text(text)
    return paths


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(FIELDS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--region", nargs=4, type=float, metavar=("LON0", "LON1", "LAT0", "LAT1"),
                        help="lon/lat box, cell edges in degrees (default: the field's box)")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--noise-sd", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kelvin", action="store_true")
    args = parser.parse_args(argv)
    try:
        paths = make_problem(args.name, args.region, args.out_dir, fraction=args.fraction,
                             noise_sd=args.noise_sd, seed=args.seed, kelvin=args.kelvin)
    except (SourceMissingError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    with xr.open_dataset(paths["truth"]) as ds:
        n_time, ny, nx = ds["sst"].shape
        region, partial = ds.attrs["region_lon_lat_edges"], ds.attrs["partial_cells_set_to_land"]
    with xr.open_dataset(paths["mask"]) as ds:
        n_ocean = int(ds["mask"].sum())
    n_obs = len(pd.read_csv(paths["obs"]))
    print(f"{args.name}: region lon {region[0]:g}..{region[1]:g} lat {region[2]:g}..{region[3]:g}"
          f", {ny} x {nx} cells")
    print(f"ocean cells: {n_ocean} (cells missing at some times only, set to land: {partial})")
    print(f"times: {n_time}")
    print(f"observations: {n_obs} ({n_obs // n_time} per time)")
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
