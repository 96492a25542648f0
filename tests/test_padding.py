"""Open edges (``tracerbayes.grid.padding``, ``grid.pad``): a box cut out of the ocean is
padded beyond the edges that end in water, and its maps are cut back to the box."""

import numpy as np
import pytest
import xarray as xr
from test_streamed_outputs import PARAMS

from tracerbayes.cli.config import ConfigError, build_grid, build_model_grid, grid_pad, load_config
from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
from tracerbayes.exact.priors import Smoothness, spectral_variances
from tracerbayes.grid import Grid, auto_pad_cells, open_edges, pad_open_edges
from tracerbayes.grid.basis import spectral_basis
from tracerbayes.observations.core import Observations
from tracerbayes.posterior.exact import Posterior


def _pacific_box() -> Grid:
    """16 x 28 cells of 5 degrees; land along the north edge's west part and a notch of the
    east edge: the south and west edges are all water, the north and east partly."""
    mask = np.ones((16, 28), bool)
    mask[-1, :10] = False
    mask[5:8, -1] = False
    return Grid.regular(lon=(120, 260), lat=(-20, 60), resolution=5, mask=mask)


def test_open_edges_are_padded_and_the_window_is_the_original_grid():
    grid = _pacific_box()
    padded, (ys, xs) = pad_open_edges(grid, 3)
    assert padded.shape == (16 + 6, 28 + 6)
    np.testing.assert_array_equal(padded.mask[ys, xs], grid.mask)
    np.testing.assert_allclose(padded.x[xs], grid.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(padded.y[ys], grid.y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(padded.x_edges[xs.start:xs.stop + 1], grid.x_edges, atol=1e-12)
    np.testing.assert_allclose(padded.y_edges[ys.start:ys.stop + 1], grid.y_edges, atol=1e-12)
    np.testing.assert_allclose(np.diff(padded.x_edges), 5.0, atol=1e-12)
    np.testing.assert_allclose(np.diff(padded.y_edges), 5.0, atol=1e-12)
    # the mask goes straight out: the new rows and columns repeat the edge's land and water
    np.testing.assert_array_equal(padded.mask[:3, xs], np.repeat(grid.mask[:1], 3, axis=0))
    np.testing.assert_array_equal(padded.mask[-3:, xs], np.repeat(grid.mask[-1:], 3, axis=0))
    np.testing.assert_array_equal(padded.mask[ys, -3:], np.repeat(grid.mask[:, -1:], 3, axis=1))


def test_closed_edges_poles_and_periodic_longitude_are_not_padded():
    mask = np.zeros((6, 8), bool)
    mask[1:-1, 1:-1] = True  # a closed basin: every edge is land
    basin = Grid.regular(lon=(0, 16), lat=(0, 12), resolution=2, mask=mask)
    assert not any(open_edges(basin).values()) and auto_pad_cells(basin) == 0
    same, window = pad_open_edges(basin, 4)
    assert same is basin and window == (slice(0, 6), slice(0, 8))
    # 4-degree cells up to 82N: two cells fit north of the box (to the pole), not three; a
    # periodic longitude has no x edges
    arctic = Grid.regular(lon=(0, 360), lat=(50, 82), resolution=4, periodic=True)
    padded, (ys, xs) = pad_open_edges(arctic, 3)
    assert open_edges(arctic) == {"south": True, "north": True, "west": False, "east": False}
    assert padded.shape == (8 + 3 + 2, 90) and (ys, xs) == (slice(3, 11), slice(0, 90))
    assert padded.y_edges[-1] == pytest.approx(90.0) and padded.periodic_x
    with pytest.raises(ValueError, match="pad cells must be >= 0"):
        pad_open_edges(arctic, -1)


def _prior_variance(grid: Grid, lengthscale_km: float) -> np.ndarray:
    """Pointwise variance of the reduced model's Matérn-3/2 field on the full Neumann basis
    (the constant mode left out), as a (ny, nx) field."""
    basis = spectral_basis(grid, grid.n_wet)
    s = np.array(spectral_variances(basis, Smoothness.THREE_HALVES, lengthscale_km * 1e3, 1.0))
    s[:basis.n_basins] = 0.0
    return np.asarray(grid.to_field((np.asarray(basis.vectors) ** 2) @ s))


def test_padding_takes_the_wall_out_of_the_prior_variance_at_open_edges():
    # An all-water box cut out of the ocean: without padding a smooth field's prior variance
    # doubles along the edges (the Neumann wall); padded by a correlation length, the box's
    # edge cells are within 25% of its centre.
    grid = Grid.regular(lon=(160, 220), lat=(-10, 30), resolution=2.5)
    centre = (slice(6, 10), slice(10, 14))
    bare = _prior_variance(grid, 800.0)
    edge_rows = np.concatenate([bare[0, 6:-6], bare[-1, 6:-6]])
    assert np.min(edge_rows) / np.mean(bare[centre]) > 1.6
    padded, (ys, xs) = pad_open_edges(grid, auto_pad_cells(grid))
    inside = _prior_variance(padded, 800.0)[ys, xs]
    edge_rows = np.concatenate([inside[0, 6:-6], inside[-1, 6:-6]])
    ratio = edge_rows / np.mean(inside[centre])
    assert np.all(np.abs(ratio - 1.0) < 0.25), ratio


def test_maps_of_a_padded_grid_are_the_window_of_its_maps(tmp_path):
    grid = Grid.regular(lon=(0, 12), lat=(0, 8), resolution=2)
    padded, window = pad_open_edges(grid, 2)
    rng = np.random.default_rng(5)
    n, times = 12, np.arange(3) * 86400.0
    obs = Observations(x=rng.uniform(0.5, 11.5, n), y=rng.uniform(0.5, 7.5, n),
                       time=np.repeat(times, n // 3), value=rng.normal(size=n),
                       error=np.full(n, 0.2))
    model = AdvectionDiffusionModel(padded, ConstantVelocity(0.05), Priors(), n_modes=10)
    post = Posterior(model, obs, times, model.prepare(obs, times),
                     {k: np.full((1, 2), v) * [[1.0, 1.3]] for k, v in PARAMS.items()}, {},
                     "nuts", {})
    whole = post.maps()
    post.output_window = window
    cut = post.maps()
    assert cut["mean"].shape == (3, *grid.shape)
    np.testing.assert_allclose(cut["lon"], grid.x) and np.testing.assert_allclose(cut["lat"],
                                                                                   grid.y)
    xr.testing.assert_identical(cut, whole.isel(lat=window[0], lon=window[1]))
    chunks = [fields["mean"] for _, fields in post.map_chunks(chunk_times=2)]
    np.testing.assert_allclose(np.concatenate(chunks), cut["mean"].values, rtol=1e-12)
    post.write_maps(tmp_path / "streamed.nc", chunk_times=2)
    with xr.open_dataset(tmp_path / "streamed.nc") as ds:
        np.testing.assert_allclose(ds["mean"].values, cut["mean"].values, rtol=1e-12)
        np.testing.assert_array_equal(ds["mask"].values, grid.mask.astype(np.int8))
    draws = post.sample_maps(2, __import__("jax").random.key(0))
    assert draws.shape == (2, 3, *grid.shape)


CONFIG = """
tracer: {name: sst, conserved: false, units: degC}
grid: {GRID}
times: {start: 2020-01-01, end: 2020-01-03, step: 1 day}
observations:
  - file: obs.csv
    columns: {time: time, lon: lon, lat: lat, value: value, error: error}
"""


def _config(tmp_path, grid: str, extra: str = ""):
    path = tmp_path / "config.yaml"
    text = CONFIG.replace("{GRID}", grid) + extra
    if "x:" in grid:  # a Cartesian grid's position columns are x and y
        text = text.replace("lon: lon, lat: lat", "x: lon, y: lat")
    path.write_text(text)
    (tmp_path / "obs.csv").write_text("time,lon,lat,value,error\n2020-01-01,5,5,1.0,0.1\n")
    return load_config(path)


def test_grid_pad_auto_pads_lonlat_boxes_only(tmp_path):
    cfg = _config(tmp_path, "{lon: [0, 40], lat: [0, 20], resolution: 2 deg}")
    grid = build_grid(cfg)
    cells, why = grid_pad(cfg, grid)
    assert cells == 3 and "south, north, west, east edges end in water" in why  # ceil(0.15 x 20)
    padded, window = build_model_grid(cfg, grid)
    assert padded.shape == (16, 26) and window == (slice(3, 13), slice(3, 23))
    cart = _config(tmp_path, "{x: [0, 100 km], y: [0, 60 km], resolution: 10 km}")
    assert grid_pad(cart, build_grid(cart)) == (0, "a Cartesian grid: its edges are the "
                                                   "basin's walls")
    fixed = _config(tmp_path, "{lon: [0, 40], lat: [0, 20], resolution: 2 deg, pad: 0}")
    same, _ = build_model_grid(fixed, build_grid(fixed))
    assert same.shape == (10, 20)


def test_explicit_padding_with_a_given_velocity_is_a_config_problem(tmp_path):
    ds = xr.Dataset({"u": (("lat", "lon"), np.zeros((10, 20))),
                     "v": (("lat", "lon"), np.zeros((10, 20)))},
                    coords={"lat": np.arange(1.0, 20, 2), "lon": np.arange(1.0, 40, 2)})
    ds.to_netcdf(tmp_path / "uv.nc")
    velocity = "velocity: {kind: given, file: uv.nc}\n"
    cfg = _config(tmp_path, "{lon: [0, 40], lat: [0, 20], resolution: 2 deg, pad: 2}",
                  velocity)
    with pytest.raises(ConfigError, match="grid.pad.*given velocity"):
        build_model_grid(cfg, build_grid(cfg))
    auto = _config(tmp_path, "{lon: [0, 40], lat: [0, 20], resolution: 2 deg}", velocity)
    assert grid_pad(auto, build_grid(auto)) == (0, "a given velocity covers the grid only")
