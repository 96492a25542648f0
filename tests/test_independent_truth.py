"""The independent-twin generator (benchmarks/independent_truth.py) on a tiny basin."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import independent_truth as it  # noqa: E402

DAY = 86400.0


@pytest.fixture(scope="module")
def basin():
    return it.make_basin(nx=30, ny=18, dx=20e3, refine=2)


@pytest.fixture(scope="module")
def flow(basin):
    return it.DoubleGyre(basin, peak_speed=0.3, period_days=15.0)


def test_mask_blocks_are_whole(basin):
    fine = basin.fine_mask
    blocks = fine.reshape(basin.ny, 2, basin.nx, 2)
    assert np.all(blocks.all(axis=(1, 3)) == blocks.any(axis=(1, 3)))
    assert np.array_equal(blocks.all(axis=(1, 3)), basin.mask)
    assert basin.mask.sum() > 0.6 * basin.mask.size


def test_default_basin_has_enough_water():
    assert it.basin_mask().sum() >= 5000


@pytest.mark.parametrize("t", [0.0, 1.3 * DAY, 3.75 * DAY, 9.1 * DAY])
def test_flow_divergence_free_and_closed(basin, flow, t):
    u, v = flow.faces(t)
    ny, nx = basin.fine_shape
    assert u.shape == (ny, nx + 1) and v.shape == (ny + 1, nx)
    div = it.divergence(u, v, basin.fdx)
    assert np.abs(div).max() < 1e-12
    assert np.abs(div).max() * basin.fdx / max(np.abs(u).max(), np.abs(v).max()) < 1e-12
    wet = basin.fine_mask
    padded = np.zeros((ny + 2, nx + 2), dtype=bool)
    padded[1:-1, 1:-1] = wet
    open_u = padded[1:-1, :-1] & padded[1:-1, 1:]  # both cells of the west/east face wet
    open_v = padded[:-1, 1:-1] & padded[1:, 1:-1]
    assert np.all(u[~open_u] == 0.0) and np.all(v[~open_v] == 0.0)
    assert 0.05 < max(np.abs(u).max(), np.abs(v).max()) <= 0.3 + 1e-12


def test_uniform_field_stays_uniform(basin, flow):
    solver = it.Solver(basin, flow, kappa=0.0, tau=np.inf, mean=0.0, forcing=None)
    c = np.where(basin.fine_mask, 7.25, 0.0)
    dt = 3600.0
    for k in range(30):
        c = solver.step(c, k * dt, dt)
    assert np.abs(c[basin.fine_mask] - 7.25).max() < 1e-10


def test_pure_diffusion_conserves_total(basin):
    rng = np.random.default_rng(3)
    wet = basin.fine_mask
    c = np.where(wet, rng.standard_normal(basin.fine_shape), 0.0)
    total = c[wet].sum()
    solver = it.Solver(basin, None, kappa=300.0, tau=np.inf, forcing=None)
    dt = 3600.0
    for k in range(48):
        c = solver.step(c, k * dt, dt)
    assert abs(c[wet].sum() - total) < 1e-10
    # Sub-stepped: a step far beyond the explicit limit stays stable and conservative.
    c2 = it.diffuse(c, wet, 3000.0, 5 * DAY, basin.fdx)
    assert abs(c2[wet].sum() - total) < 1e-10
    assert c2[wet].std() < c[wet].std()


def test_make_twin_tiny(tmp_path, basin):
    paths = it.make_twin(tmp_path / "twin", seed=1, refine=2, days=3, nx=30, ny=18,
                         n_floats=10, verbose=False)
    truth = xr.open_dataset(paths["truth"])
    assert truth["truth"].dims == ("time", "y", "x")
    assert truth["truth"].shape == (3, 18, 30)
    assert truth["truth"].attrs["units"] == "degC"
    assert str(truth["time"].values[0]).startswith("2020-01-01")
    land = ~basin.mask
    assert np.all(np.isnan(truth["truth"].values[:, land]))
    assert np.all(np.isfinite(truth["truth"].values[:, ~land]))
    mask = xr.open_dataset(paths["mask"])["mask"].values
    assert np.array_equal(mask.astype(bool), basin.mask)
    vel = xr.open_dataset(paths["velocity"])
    assert vel["u"].dims == ("time", "y", "x")
    mean = xr.open_dataset(paths["velocity_mean"])
    assert mean["u"].dims == ("y", "x")
    obs = pd.read_csv(paths["obs"])
    assert list(obs.columns) == ["time", "x", "y", "value", "error", "platform"]
    assert set(obs["platform"]) == {"float", "glider"}
    t = pd.to_datetime(obs["time"])
    assert t.min() >= pd.Timestamp("2020-01-01") and t.max() <= pd.Timestamp("2020-01-03")
    assert basin.in_wet_map_cell(obs["x"].to_numpy(), obs["y"].to_numpy()).all()
    text = paths["config"].read_text()
    assert "file: velocity.nc" in text and "conserved: false" in text
    # Same seed, same observations.
    again = it.make_twin(tmp_path / "again", seed=1, refine=2, days=3, nx=30, ny=18,
                         n_floats=10, verbose=False)
    pd.testing.assert_frame_equal(obs, pd.read_csv(again["obs"]))
