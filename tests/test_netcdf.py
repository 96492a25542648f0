"""CF NetCDF output: round trips, CF attributes, a CF checker, atomic writes, Zarr."""

import json
import socket

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import tracerbayes as tb
from tracerbayes.io.netcdf import cf_dataset, parameter_attributes, read_netcdf, write_netcdf

DAYS = np.datetime64("2012-08-01", "ns") + np.arange(3) * np.timedelta64(1, "D")


def fake_maps(grid, rng, times):
    """A maps Dataset in the layout of Posterior.maps(), with random values on water."""
    n_t = len(times)
    mean = grid.to_field(rng.normal(15, 2, size=(n_t, grid.n_wet)))
    sd = grid.to_field(rng.uniform(0.1, 1, size=(n_t, grid.n_wet)))
    q = np.stack([mean - 1.645 * sd, mean, mean + 1.645 * sd])
    ydim, xdim = grid.dims
    dims = ("time", ydim, xdim)
    ds = xr.Dataset(coords={"time": times, **grid.coordinates()})
    ds["mean"] = (dims, mean)
    ds["sd"] = (dims, sd)
    ds["quantiles"] = (("quantile", *dims), q)
    ds = ds.assign_coords(quantile=("quantile", [0.05, 0.5, 0.95]))
    ds["mask"] = ((ydim, xdim), grid.mask.astype(np.int8))
    ds.attrs["method"] = "nuts"
    return ds


def lonlat_grid():
    mask = np.ones((6, 8), dtype=bool)
    mask[2:4, 3:5] = False
    return tb.Grid.regular(lon=(-20, -12), lat=(25, 31), resolution=1.0, mask=mask)


def cartesian_grid():
    mask = np.ones((5, 7), dtype=bool)
    mask[0, :2] = False
    return tb.Grid.cartesian(x=(0, 7e4), y=(0, 5e4), resolution=1e4, mask=mask)


# a Posterior.parameter_table() layout and an ArviZ az.summary() layout
TABLE = pd.DataFrame({"mean": [612.0, 1.01], "sd": [50.0, 0.05], "q5": [530.0, 0.93],
                      "q95": [700.0, 1.09]}, index=["diffusivity", "velocity_scale"])
ARVIZ = pd.DataFrame({"mean": [612.0], "sd": [50.0], "hdi_3%": [520.0], "hdi_97%": [700.0],
                      "r_hat": [1.0]}, index=["velocity[0]"])


@pytest.mark.parametrize("make_grid, times", [(lonlat_grid, DAYS),
                                              (cartesian_grid, np.arange(3) * 86400.0)])
def test_round_trip_identical(tmp_path, rng, make_grid, times):
    grid = make_grid()
    maps = fake_maps(grid, rng, times)
    ds = cf_dataset(maps, units="degC", tracer_standard_name="sea_surface_temperature",
                    tracer_long_name="sea surface temperature", parameter_summary=TABLE,
                    config_text="grid: {resolution: 1.0}\n")
    path = write_netcdf(ds, tmp_path / "posterior.nc")
    back = read_netcdf(path)
    xr.testing.assert_identical(back, ds)
    for name in ("mean", "sd", "quantiles"):  # the numbers are the maps' own, NaN on land
        np.testing.assert_array_equal(back[name].values, maps[name].values)
    assert np.all(np.isnan(back["mean"].values[:, ~grid.mask]))
    assert not np.any(np.isnan(back["mean"].values[:, grid.mask]))
    assert back.attrs["Conventions"] == "CF-1.10"
    assert back.attrs["config"] == "grid: {resolution: 1.0}\n"
    assert back.attrs["source"].startswith(f"tracerbayes {tb.__version__}")
    assert back.attrs["method"] == "nuts"
    assert back["mean"].attrs["ancillary_variables"] == "sd quantiles"
    assert back["sd"].attrs["standard_name"] == "sea_surface_temperature standard_error"
    ydim, xdim = grid.dims
    np.testing.assert_array_equal(back["mask"].values, grid.mask)
    np.testing.assert_allclose(back[f"{xdim}_bnds"].values[:, 0], grid.x_edges[:-1], rtol=1e-15)
    np.testing.assert_allclose(back[f"{ydim}_bnds"].values[:, 1], grid.y_edges[1:], rtol=1e-15)
    with xr.open_dataset(path, decode_times=False) as raw:
        assert raw["time"].attrs["units"].startswith("seconds since 1970-01-01")
        assert raw["time"].attrs["calendar"] == "standard"
        expected = (np.asarray(times) if times.dtype.kind == "f"
                    else (times - np.datetime64("1970-01-01", "ns")) / np.timedelta64(1, "s"))
        np.testing.assert_array_equal(raw["time"].values, expected)
        assert raw["mean"].encoding["zlib"] and np.isnan(raw["mean"].encoding["_FillValue"])
        assert raw[xdim].attrs["axis"] == "X" and raw[ydim].attrs["axis"] == "Y"


def test_datetime_times_decode_to_the_same_datetime64(tmp_path, rng):
    times = DAYS + np.timedelta64(90, "m")
    ds = cf_dataset(fake_maps(lonlat_grid(), rng, times), units="degC")
    back = read_netcdf(write_netcdf(ds, tmp_path / "p.nc"))
    assert back["time"].dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(back["time"].values, times)


def test_parameter_summary_attributes():
    attrs = parameter_attributes(TABLE, units={"diffusivity": "m2 s-1"})
    assert attrs["posterior_diffusivity"] == "mean 612 m2 s-1, sd 50, 90% interval [530, 700]"
    assert attrs["posterior_velocity_scale"] == "mean 1.01, sd 0.05, 90% interval [0.93, 1.09]"
    assert parameter_attributes(ARVIZ) == {
        "posterior_velocity_0": "mean 612, sd 50, 94% HDI [520, 700]"}


def test_missing_variables_are_named(rng):
    maps = fake_maps(lonlat_grid(), rng, DAYS).drop_vars("sd")
    with pytest.raises(ValueError, match=r"\['sd'\]"):
        cf_dataset(maps, units="degC")
    with pytest.raises(ValueError, match=r"lacks columns \['sd'\]"):
        parameter_attributes(TABLE.drop(columns="sd"))


class Interrupted(Exception):
    """Raised from inside the writer, after part of the file exists."""


def test_interrupted_write_leaves_nothing(tmp_path, rng):
    ds = cf_dataset(fake_maps(lonlat_grid(), rng, DAYS), units="degC")
    # a variable whose values fail to load half-way through the write: the file already
    # holds the header and the variables before it when the exception comes
    ds["zz_broken"] = ("time", _FailingArray(3))
    path = tmp_path / "out" / "posterior.nc"
    with pytest.raises(Interrupted):
        write_netcdf(ds, path)
    assert list(path.parent.iterdir()) == []


class _FailingArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A lazy array that raises when its values are read (as a failing disk read would)."""

    def __init__(self, n):
        self.shape, self.dtype, self.ndim = (n,), np.dtype(float), 1

    def __getitem__(self, key):
        raise Interrupted("values could not be read")

    def __array__(self, dtype=None, copy=None):
        raise Interrupted("values could not be read")

    def __array_function__(self, func, types, args, kwargs):
        raise Interrupted("values could not be read")


def test_failed_write_keeps_previous_file(tmp_path, rng):
    path = tmp_path / "posterior.nc"
    good = cf_dataset(fake_maps(lonlat_grid(), rng, DAYS), units="degC")
    write_netcdf(good, path)
    bad = good.copy()
    bad["zz_broken"] = ("time", _FailingArray(3))
    with pytest.raises(Interrupted):
        write_netcdf(bad, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posterior.nc"]
    xr.testing.assert_identical(read_netcdf(path), good)


def test_zarr_round_trip(tmp_path, rng):
    pytest.importorskip("zarr", reason="zarr is optional; write_zarr returns None without it")
    from tracerbayes.io.netcdf import write_zarr

    ds = cf_dataset(fake_maps(lonlat_grid(), rng, DAYS), units="degC",
                    tracer_standard_name="sea_surface_temperature")
    path = write_zarr(ds, tmp_path / "posterior.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posterior.zarr"]
    with xr.open_zarr(path, consolidated=False) as back:
        xr.testing.assert_identical(back.load(), ds)


# ---------------------------------------------------------------------- CF checker
def cf_failures(path, tmp_path):
    """Failed checks (priority, name, messages) of the IOOS compliance-checker's CF 1.10
    suite, which ships the CF standard-name table and uses cf-units (bundled UDUNITS-2), so
    it runs offline. (cfchecker needs a system libudunits2 and is not used.)"""
    pytest.importorskip("compliance_checker",
                        reason="compliance-checker not installed (pip install compliance-checker)")
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite().load_all_available_checkers()
    report = tmp_path / f"{path.stem}.json"
    ComplianceChecker.run_checker(str(path), ["cf:1.10"], 0, "normal",
                                  output_filename=str(report), output_format="json")
    result = json.loads(report.read_text())["cf:1.10"]
    return [(priority, item["name"], item["msgs"])
            for priority in ("high_priorities", "medium_priorities", "low_priorities")
            for item in result[priority] if item["value"][0] != item["value"][1]]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("make_grid, times", [(lonlat_grid, DAYS),
                                              (cartesian_grid, np.arange(3) * 3600.0)])
def test_cf_checker_reports_no_failures(tmp_path, rng, make_grid, times, no_network):
    ds = cf_dataset(fake_maps(make_grid(), rng, times), units="degC",
                    tracer_standard_name="sea_surface_temperature", parameter_summary=TABLE,
                    config_text="a: 1\n", institution="nowhere", references="none")
    path = write_netcdf(ds, tmp_path / "posterior.nc")
    assert cf_failures(path, tmp_path) == []
    # the checker does catch mistakes: units UDUNITS cannot parse, a bogus standard name
    ds["mean"].attrs.update(units="degrees Celsius please", standard_name="sea_tempo")
    bad = write_netcdf(ds, tmp_path / "bad.nc")
    names = " ".join(str(f) for f in cf_failures(bad, tmp_path))
    assert "sea_tempo" in names and "degrees Celsius please" in names
