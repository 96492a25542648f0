"""Figures: files written (valid PNG/PDF, one per time), land drawn from the mask, no
downloads, ArviZ diagnostics and their summary table."""

import socket

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import tracerbayes as tb
from tracerbayes.io.netcdf import cf_dataset

pytest.importorskip("matplotlib")
pytest.importorskip("cartopy")
from matplotlib import image  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from tracerbayes import plot  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
DAYS = np.datetime64("2012-08-01", "ns") + np.arange(3) * np.timedelta64(1, "D")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails the test (cartopy's DownloadWarning is an error too)."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def make_maps(grid, rng, times):
    """A Posterior.maps()-layout Dataset built by hand, NaN on land."""
    n_t = len(times)
    mean = grid.to_field(rng.normal(15, 2, size=(n_t, grid.n_wet)))
    sd = grid.to_field(rng.uniform(0.1, 1, size=(n_t, grid.n_wet)))
    ydim, xdim = grid.dims
    dims = ("time", ydim, xdim)
    ds = xr.Dataset(coords={"time": times, **grid.coordinates()})
    ds["mean"] = (dims, mean, {"long_name": "sea surface temperature", "units": "degC"})
    ds["sd"] = (dims, sd, {"long_name": "posterior sd", "units": "degC"})
    ds["quantiles"] = (("quantile", *dims), np.stack([mean - 1.645 * sd, mean,
                                                      mean + 1.645 * sd]))
    ds = ds.assign_coords(quantile=("quantile", [0.05, 0.5, 0.95]))
    ds["mask"] = ((ydim, xdim), grid.mask.astype(np.int8))
    return ds


def lonlat_grid():
    mask = np.ones((6, 8), dtype=bool)
    mask[2:4, 3:5] = False  # land: lat 27-29 N, lon 17-15 W
    return tb.Grid.regular(lon=(-20, -12), lat=(25, 31), resolution=1.0, mask=mask)


def observations(rng, times):
    n = 4 * len(times)
    df = pd.DataFrame({"time": np.repeat(times, 4), "lon": rng.uniform(-19.5, -12.5, n),
                       "lat": np.tile([25.5, 26.5, 29.5, 30.5], len(times)),
                       "value": rng.normal(15, 2, n), "error": 0.1,
                       "platform": np.tile(["argo", "glider", "ship", "argo"], len(times))})
    return tb.Observations.from_dataframe(df, lon="lon", lat="lat", platform="platform")


def pixel(fig, ax, lon, lat):
    """Image (row, column) of a data point in the saved figure (same dpi, no tight bbox)."""
    fig.draw_without_rendering()
    x, y = ax.transData.transform((lon, lat))
    height = fig.bbox.height
    return int(round(height - y)), int(round(x))


def test_one_valid_png_per_time_with_land_from_the_mask(tmp_path, rng):
    grid = lonlat_grid()
    ds = make_maps(grid, rng, DAYS)
    obs = observations(rng, DAYS)
    paths = plot.maps(ds, obs, out_dir=tmp_path, show_progress=False)
    assert [p.name for p in paths] == [f"map_{k:03d}_2012080{k + 1}T0000.png" for k in range(3)]
    assert sorted(tmp_path.iterdir()) == paths  # and no temporary files
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
    # where the same figure puts a land cell and a water cell, in the file maps() wrote
    fig = plot.map_figure(ds, 1, obs)
    mean_ax = fig.axes[0]
    img = image.imread(paths[1])[..., :3]
    assert img.shape[:2] == (int(fig.bbox.height), int(fig.bbox.width))
    land = to_rgb(plot.LAND_COLOR)
    for lon, lat in [(-16.5, 27.5), (-15.5, 28.5)]:  # centres of land cells
        np.testing.assert_allclose(img[pixel(fig, mean_ax, lon, lat)], land, atol=1.5 / 255)
    for lon, lat in [(-18.5, 27.5), (-13.5, 26.5)]:  # water cells: not land-coloured
        assert np.abs(img[pixel(fig, mean_ax, lon, lat)] - land).max() > 10 / 255


def test_times_selection_pdf_and_cf_dataset(tmp_path, rng):
    ds = cf_dataset(make_maps(lonlat_grid(), rng, DAYS), units="degC",
                    tracer_standard_name="sea_surface_temperature")
    paths = plot.maps(ds, times=[2, DAYS[0]], out_dir=tmp_path, fmt="pdf",
                      show_progress=False)
    assert [p.name[:7] for p in paths] == ["map_002", "map_000"]
    for p in paths:
        data = p.read_bytes()
        assert data[:5] == b"%PDF-" and data.rstrip().endswith(b"%%EOF")
    (svg,) = plot.maps(ds, times=[0], out_dir=tmp_path / "svg", fmt="svg", show_progress=False)
    assert svg.suffix == ".svg" and b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match="fmt='tiff'"):
        plot.maps(ds, out_dir=tmp_path, fmt="tiff")


def test_cartesian_grid_in_km(tmp_path, rng):
    mask = np.ones((5, 7), dtype=bool)
    mask[0, :2] = False
    grid = tb.Grid.cartesian(x=(0, 7e4), y=(0, 5e4), resolution=1e4, mask=mask)
    ds = make_maps(grid, rng, np.arange(2) * 86400.0)
    paths = plot.maps(ds, out_dir=tmp_path, show_progress=False)
    assert [p.name for p in paths] == ["map_000.png", "map_001.png"]
    fig = plot.map_figure(ds, 0)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (km)"
    np.testing.assert_allclose(ax.get_xlim(), (0.0, 70.0))
    img = image.imread(paths[0])[..., :3]
    np.testing.assert_allclose(img[pixel(fig, ax, 5.0, 5.0)], to_rgb(plot.LAND_COLOR),
                               atol=1.5 / 255)


def test_summary_panel(tmp_path, rng):
    ds = make_maps(lonlat_grid(), rng, DAYS)
    path = plot.summary_panel(ds, observations(rng, DAYS), path=tmp_path / "summary.png")
    assert sorted(tmp_path.iterdir()) == [path]
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000


def test_diagnostics_plots_and_summary_table(tmp_path, rng):
    az = pytest.importorskip("arviz")
    draws = rng.normal(600.0, 50.0, size=(2, 200))
    idata = az.from_dict(posterior={"diffusivity": draws},
                         sample_stats={"energy": rng.normal(size=(2, 200)),
                                       "diverging": np.zeros((2, 200), dtype=bool)})
    paths = plot.diagnostics(idata, tmp_path / "diagnostics")
    assert [p.name for p in paths] == ["trace.png", "rank.png", "energy.png", "summary.csv"]
    assert sorted(p.name for p in (tmp_path / "diagnostics").iterdir()) == sorted(
        p.name for p in paths)
    for p in paths[:3]:
        assert p.read_bytes()[:8] == PNG
    table = pd.read_csv(paths[-1], index_col=0)
    np.testing.assert_allclose(table.loc["diffusivity", "mean"], draws.mean(), rtol=1e-12)
    np.testing.assert_allclose(table.loc["diffusivity", "sd"], draws.std(ddof=1), rtol=1e-12)


def test_one_chain_summary_has_no_chain_diagnostics_and_no_warning(tmp_path, rng, caplog):
    # Laplace draws are independent, in one chain: ArviZ cannot compute R-hat on them (and
    # logs "Shape validation failed"); the table keeps mean, sd and HDI.
    import logging

    az = pytest.importorskip("arviz")
    draws = rng.normal(600.0, 50.0, size=(1, 20))
    idata = az.from_dict(posterior={"diffusivity": draws})
    with caplog.at_level(logging.WARNING):
        paths = plot.diagnostics(idata, tmp_path / "diagnostics")
    assert not [r for r in caplog.records if "validation" in r.getMessage()]
    table = pd.read_csv(paths[-1], index_col=0)
    assert "r_hat" not in table.columns
    np.testing.assert_allclose(table.loc["diffusivity", "mean"], draws.mean(), rtol=1e-12)
    np.testing.assert_allclose(table.loc["diffusivity", "sd"], draws.std(ddof=1), rtol=1e-12)


def test_drawing_coastlines_leaves_cartopy_config_alone(tmp_path):
    import cartopy

    from tracerbayes import plot

    if plot._gshhs_directory() is None:
        pytest.skip("no GSHHS coastline on disk")
    before = dict(cartopy.config)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    ax = plot._new_axes(fig, 1, 1, 1, lonlat=True)
    assert len(ax.get_children()) > 0
    plt.close(fig)
    assert dict(cartopy.config) == before
