"""Twin experiments: mass-free noise, the simulated truth and the synthetic platforms."""

import jax
import numpy as np
import pandas as pd
import pytest

import tracerbayes as tb
from tracerbayes import physics
from tracerbayes.twin import simulate as sim

DAY = 86400.0
TIMES = np.datetime64("2024-01-01T00:00") + np.arange(12) * np.timedelta64(1, "D")


def _island_mask():
    mask = np.ones((16, 20), dtype=bool)
    mask[6:9, 8:11] = False  # an island
    mask[0, :3] = False  # a bit of coast in a corner
    return mask


@pytest.fixture(scope="module")
def grid():
    return tb.Grid.regular(lon=(-10, 10), lat=(30, 46), resolution=1.0, mask=_island_mask())


@pytest.fixture(scope="module")
def walled():
    """A Cartesian basin split in two by a full north-south wall of land."""
    mask = np.ones((10, 16), dtype=bool)
    mask[:, 7] = False
    return tb.Grid.cartesian((0.0, 160e3), (0.0, 100e3), 10e3, mask=mask)


def _gyre(grid, amplitude=5e4):
    """Divergence-free face velocities (~0.1 m/s) from a one-gyre stream function (m^2/s)."""
    x, y = physics.corner_coordinates(grid)
    sx = (x - x.min()) / np.ptp(x)
    sy = (y - y.min()) / np.ptp(y)
    return physics.velocity_from_streamfunction(
        grid, amplitude * np.sin(np.pi * sx) * np.sin(np.pi * sy))


def _initial(grid):
    lon, lat = np.meshgrid(grid.x, grid.y)
    return 10.0 + 2.0 * np.exp(-((lon - 3.0) ** 2 + (lat - 40.0) ** 2) / 8.0)


@pytest.fixture(scope="module")
def truth(grid):
    return sim.simulate_truth(jax.random.key(7), grid, TIMES, _gyre(grid), 1e3,
                              _initial(grid), noise_scale=0.1, noise_lengthscale=150e3,
                              units="degC", long_name="sea water temperature")


# ---------------------------------------------------------------------------- noise
def test_mass_free_noise_has_zero_total(key, grid):
    eps = sim.mass_free_noise(key, grid, 11, 0.5, 120e3)
    assert eps.shape == (11, grid.n_wet)
    totals = eps @ grid.wet_area
    assert np.all(np.abs(totals) <= 1e-12 * (np.abs(eps) @ grid.wet_area))
    glob = sim.mass_free_noise(key, grid, 11, 0.5, 120e3, per_basin=False)
    assert np.all(np.abs(glob @ grid.wet_area) <= 1e-12 * (np.abs(glob) @ grid.wet_area))


@pytest.mark.parametrize("lengthscale", [0.0, 5e3, 15e3])
def test_mass_free_noise_marginal_std(key, lengthscale):
    """Far from walls, the standard deviation is ``scale`` up to the projection's loss."""
    grid = tb.Grid.cartesian((0.0, 400e3), (0.0, 400e3), 10e3)
    eps = np.asarray(sim.mass_free_noise(key, grid, 400, 2.0, lengthscale))
    interior = grid.to_field(eps)[:, 8:-8, 8:-8].reshape(400, -1)
    loss = np.sqrt(1.0 - 4.0 * np.pi * lengthscale**2 / grid.wet_area.sum())
    assert interior.std(axis=0).mean() == pytest.approx(2.0 * loss, rel=0.05)


def test_mass_free_noise_is_reproducible(grid):
    a = sim.mass_free_noise(jax.random.key(1), grid, 11, 1.0, 100e3)
    b = sim.mass_free_noise(jax.random.key(1), grid, 11, 1.0, 100e3)
    c = sim.mass_free_noise(jax.random.key(2), grid, 11, 1.0, 100e3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_smoothing_does_not_cross_land(walled):
    assert np.unique(sim.basin_labels(walled)).size == 2
    left = walled.to_state(np.arange(16)[None, :].repeat(10, 0) < 7)
    delta = np.zeros(walled.n_wet)
    delta[np.flatnonzero(left)[len(np.flatnonzero(left)) // 2]] = 1.0
    smoothed = np.asarray(sim.smooth(walled, delta[None], 30e3))[0]
    assert np.all(smoothed[~left] == 0.0)
    assert np.count_nonzero(smoothed[left]) > 10
    assert smoothed @ walled.wet_area == pytest.approx(delta @ walled.wet_area, rel=1e-12)
    # The per-basin projection keeps the other basin untouched and each basin at zero.
    projected = np.asarray(sim.project_mass_free(walled, smoothed))
    assert np.all(projected[~left] == 0.0)
    assert abs(projected[left] @ walled.wet_area[left]) < 1e-12 * walled.wet_area.sum()


def test_noise_totals_vanish_in_each_basin(key, walled):
    eps = sim.mass_free_noise(key, walled, 3, 1.0, 20e3)
    labels = sim.basin_labels(walled)
    for basin in (0, 1):
        part = eps[:, labels == basin]
        area = walled.wet_area[labels == basin]
        assert np.all(np.abs(part @ area) <= 1e-12 * (np.abs(part) @ area))


# ---------------------------------------------------------------------------- truth
def test_truth_dataset_layout(grid, truth):
    assert truth["tracer"].dims == ("time", "lat", "lon")
    assert truth["tracer"].shape == (TIMES.size, *grid.shape)
    np.testing.assert_array_equal(truth["time"].values, TIMES)
    np.testing.assert_array_equal(truth["lon"].values, grid.x)
    land = ~grid.mask
    assert np.all(np.isnan(truth["tracer"].values[:, land]))
    assert np.all(np.isfinite(truth["tracer"].values[:, grid.mask]))
    assert truth["tracer"].attrs["units"] == "degC"
    assert truth["tracer"].attrs["long_name"] == "sea water temperature"
    assert truth.attrs["diffusivity"] == 1e3
    assert truth.attrs["noise_scale"] == 0.1
    assert truth.attrs["noise_lengthscale"] == 150e3
    np.testing.assert_array_equal(truth["mask"].values, grid.mask.astype(np.int8))
    states = sim.truth_states(truth, grid)
    assert states.shape == (TIMES.size, grid.n_wet)
    np.testing.assert_allclose(truth["total"].values, states @ grid.wet_area, rtol=1e-14)


@pytest.fixture(scope="module")
def quiet(grid):
    """The truth of the ``truth`` fixture without noise."""
    return sim.simulate_truth(jax.random.key(7), grid, TIMES, _gyre(grid), 1e3,
                              _initial(grid), noise_scale=0.0, noise_lengthscale=150e3)


# physics.propagate compiled once per sub-step count, to keep the tests fast.
_propagate = jax.jit(physics.propagate, static_argnums=0, static_argnames="substeps")


def _reference(grid, state, velocities, diffusivity, steps):
    """Repeated physics.propagate, one velocity per step."""
    states = [state]
    for velocity, dt in zip(velocities, steps, strict=True):
        n = physics.substeps_for(grid, velocity, diffusivity, dt)
        states.append(_propagate(grid, states[-1], velocity, diffusivity, dt, substeps=n))
    return np.stack(states)


def test_truth_conserves_total_with_noise(grid, truth, quiet):
    total = truth["total"].values
    np.testing.assert_allclose(total, total[0], rtol=1e-10, atol=0)
    # ... while the noise really changes the field.
    change = np.abs(sim.truth_states(truth, grid) - sim.truth_states(quiet, grid))[1:]
    assert change.max() > 0.05


def test_truth_without_noise_is_repeated_propagate(grid, quiet):
    velocity = _gyre(grid)
    expected = _reference(grid, grid.to_state(_initial(grid)), [velocity] * (TIMES.size - 1),
                          1e3, np.full(TIMES.size - 1, DAY))
    np.testing.assert_allclose(sim.truth_states(quiet, grid), expected, rtol=1e-13, atol=0)


def test_time_varying_velocity_and_float_times(walled):
    seconds = np.array([0.0, 3600.0, 9000.0, 20000.0])
    base = physics.constant_velocity(walled, 0.3, -0.1)
    scale = np.array([1.0, -1.0, 0.5, 2.0])[:, None, None]
    velocity = physics.FaceVelocity(base.east * scale, base.north * scale)
    initial = np.random.default_rng(3).random(walled.n_wet)
    ds = sim.simulate_truth(jax.random.key(0), walled, seconds, velocity, 50.0, initial,
                            noise_scale=0.0, noise_lengthscale=0.0)
    assert ds["tracer"].dims == ("time", "y", "x")
    assert ds["time"].attrs["units"] == "s"
    velocities = [physics.FaceVelocity(velocity.east[k], velocity.north[k]) for k in range(3)]
    expected = _reference(walled, initial, velocities, 50.0, np.diff(seconds))
    np.testing.assert_allclose(sim.truth_states(ds, walled), expected, rtol=1e-13)


def test_truth_rejects_bad_input(grid):
    still = physics.constant_velocity(grid, 0.0, 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        sim.simulate_truth(jax.random.key(0), grid, TIMES[::-1], still, 1.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="initial has shape"):
        sim.simulate_truth(jax.random.key(0), grid, TIMES, still, 1.0, np.zeros(3), 0.0, 0.0)
    bad = physics.FaceVelocity(np.zeros((3, *grid.shape)), np.zeros((3, *grid.shape)))
    with pytest.raises(ValueError, match="time-varying velocity"):
        sim.simulate_truth(jax.random.key(0), grid, TIMES, bad, 1.0, 0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------- sampling
def test_interpolate_is_exact_at_centres_and_for_linear_fields(grid):
    lon, lat = np.meshgrid(grid.x, grid.y)
    linear = 2.0 * lon - 3.0 * lat + 1.0
    wet_j, wet_i = np.nonzero(grid.mask)
    at_centres = sim.interpolate(grid, np.where(grid.mask, linear, np.nan),
                                 grid.x[wet_i], grid.y[wet_j])
    np.testing.assert_allclose(at_centres, linear[wet_j, wet_i], rtol=1e-14)
    # In open water (all four neighbours wet) bilinear interpolation is exact.
    x = np.array([-7.3, 4.2, 7.77])
    y = np.array([33.1, 42.6, 38.05])
    np.testing.assert_allclose(sim.interpolate(grid, linear, x, y),
                               2.0 * x - 3.0 * y + 1.0, rtol=1e-13)
    # Next to the island only wet neighbours count: a constant stays constant.
    near = sim.interpolate(grid, np.where(grid.mask, 5.0, 1e9), [-2.2], [35.9])
    assert near == pytest.approx([5.0], rel=1e-14)


PLATFORMS = [
    sim.Floats(n_floats=60, every=3, error=0.05),
    sim.Glider([(-8.0, 38.0), (6.0, 38.5), (6.0, 44.0)], speed=0.3, error=0.02),
    sim.Ship([(-9.5, 31.0), (9.5, 45.0)], speed=5.0, error=0.1, every=1),
    sim.SatelliteSwath(width=300e3, error=0.3, cloud_fraction=0.4, every=2),
    sim.SatelliteSwath(width=500e3, error=0.2, cloud_fraction=0.3, cloud_lengthscale=200e3,
                       angle=-30.0, name="sst-patchy"),
]


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
def test_platform_samples_wet_cells_with_its_error(grid, truth, platform):
    df = platform.sample(jax.random.key(3), truth, grid)
    assert list(df.columns) == ["time", "lon", "lat", "value", "error", "platform"]
    assert len(df) > 5
    assert set(df["platform"]) == {platform.name}
    assert np.all(df["error"] == platform.error)
    assert np.isin(df["time"].values, truth["time"].values).all()
    lon, lat = df["lon"].values, df["lat"].values
    assert np.all((lon >= grid.x_edges[0]) & (lon < grid.x_edges[-1]))
    assert np.all((lat >= grid.y_edges[0]) & (lat < grid.y_edges[-1]))
    i = np.searchsorted(grid.x_edges, lon, side="right") - 1
    j = np.searchsorted(grid.y_edges, lat, side="right") - 1
    assert grid.mask[j, i].all()
    k = np.searchsorted(truth["time"].values, df["time"].values)
    clean = sim.interpolate(grid, truth["tracer"].values, lon, lat, time_index=k)
    residual = df["value"].values - clean
    n = residual.size
    # The sample standard deviation of n normals has relative sd about 1/sqrt(2n).
    assert residual.std() == pytest.approx(platform.error, rel=5.0 / np.sqrt(2 * n))
    assert abs(residual.mean()) < 5.0 * platform.error / np.sqrt(n)


def test_floats_surface_every_few_times(grid, truth):
    df = sim.Floats(n_floats=10, every=4, error=0.1, drift=0.0).sample(
        jax.random.key(0), truth, grid)
    # Each float surfaces 3 times in 12 days, at a fixed position without drift.
    assert len(df) == 30
    for _, group in df.groupby(["lon", "lat"]):
        steps = np.diff(np.sort(group["time"].values)) / np.timedelta64(1, "D")
        assert len(group) == 3 and np.all(steps == 4)


def test_glider_goes_back_and_forth_and_skips_land(grid, truth):
    # 1 m/s for 11 days is about 950 km, more than twice the 353 km track, whose middle
    # (lon -2 to 1 at lat 37.5) crosses the island and is skipped.
    glider = sim.Glider([(-2.5, 37.5), (1.5, 37.5)], speed=1.0, error=0.01)
    df = glider.sample(jax.random.key(0), truth, grid)
    lon = df["lon"].values
    assert np.all((lon >= -2.5) & (lon <= 1.5))
    assert np.all((lon < -2.0) | (lon > 1.0))  # never over the island cells (lon -2..1)
    assert 0 < len(df) < TIMES.size
    distance = 1.0 * DAY * np.arange(TIMES.size)
    length = 4.0 * np.deg2rad(1.0) * tb.EARTH_RADIUS * np.cos(np.deg2rad(37.5))
    assert distance[-1] > 2 * length  # it did turn round


def test_ship_is_one_way(grid, truth):
    ship = sim.Ship([(-9.5, 31.0), (-9.5, 40.0)], speed=3.0, error=0.1)
    df = ship.sample(jax.random.key(0), truth, grid)
    # 9 degrees of latitude at 3 m/s take 3.9 days: observations on days 0..3 only.
    days = (df["time"].values - TIMES[0]) / np.timedelta64(1, "D")
    np.testing.assert_array_equal(days, [0, 1, 2, 3])
    assert np.all(np.diff(df["lat"].values) > 0)


def test_satellite_swath_width_and_clouds(grid, truth):
    clear = sim.SatelliteSwath(width=400e3, error=0.1, cloud_fraction=0.0, angle=90.0,
                               step=0.25)
    df = clear.sample(jax.random.key(0), truth, grid)
    for _, group in df.groupby("time"):  # a north-south band: few longitudes per pass
        span = np.ptp(group["lon"].values) * np.deg2rad(1.0) * tb.EARTH_RADIUS
        assert span <= 400e3 / np.cos(np.deg2rad(46.0))
    cloudy = sim.SatelliteSwath(width=400e3, error=0.1, cloud_fraction=0.5, angle=90.0,
                                step=0.25)
    seen = cloudy.sample(jax.random.key(0), truth, grid)
    assert len(seen) == pytest.approx(0.5 * len(df), rel=0.2)
    # Cloud patches of 300 km hide the same fraction on average over many passes.
    clear = sim.SatelliteSwath(width=800e3, error=0.1, cloud_fraction=0.0, every=1)
    patchy = sim.SatelliteSwath(width=800e3, error=0.1, cloud_fraction=0.4, every=1,
                                cloud_lengthscale=300e3)
    keys = jax.random.split(jax.random.key(5), 8)
    n_clear = sum(len(clear.sample(k, truth, grid)) for k in keys)
    n_patchy = sum(len(patchy.sample(k, truth, grid)) for k in keys)
    assert n_patchy / n_clear == pytest.approx(0.6, abs=0.08)


def test_sample_platforms_reproducible_and_named(grid, truth):
    a = sim.sample_platforms(jax.random.key(11), truth, grid, PLATFORMS)
    b = sim.sample_platforms(jax.random.key(11), truth, grid, PLATFORMS)
    c = sim.sample_platforms(jax.random.key(12), truth, grid, PLATFORMS)
    pd.testing.assert_frame_equal(a, b)
    assert not (len(a) == len(c) and np.allclose(a["value"], c["value"]))
    assert set(a["platform"]) == {p.name for p in PLATFORMS}
    assert np.all(np.diff(a["time"].values) >= np.timedelta64(0, "s"))


def test_platforms_on_a_cartesian_grid(walled):
    ds = sim.simulate_truth(jax.random.key(0), walled, TIMES[:4], None, 10.0, 1.0,
                            noise_scale=0.1, noise_lengthscale=20e3)
    platforms = [sim.Floats(5, 1, 0.1), sim.Glider([(5e3, 5e3), (150e3, 95e3)], 0.5, 0.1),
                 sim.SatelliteSwath(50e3, 0.1)]
    df = sim.sample_platforms(jax.random.key(0), ds, walled, platforms)
    assert list(df.columns) == ["time", "x", "y", "value", "error", "platform"]
    i = np.searchsorted(walled.x_edges, df["x"].values, side="right") - 1
    assert np.all(i != 7)  # never on the wall


def test_platform_validation():
    with pytest.raises(ValueError, match="error"):
        sim.Floats(3, 2, error=0.0)
    with pytest.raises(ValueError, match="every"):
        sim.Glider([(0, 0), (1, 1)], 0.3, 0.1, every=0)
    with pytest.raises(ValueError, match="waypoints"):
        sim.Ship([(0, 0)], 5.0, 0.1)
    with pytest.raises(ValueError, match="cloud_fraction"):
        sim.SatelliteSwath(1e3, 0.1, cloud_fraction=1.0)


def test_to_observations(grid, truth, walled):
    pytest.importorskip("tracerbayes.observations.core")
    df = sim.sample_platforms(jax.random.key(1), truth, grid, PLATFORMS[:3])
    obs = sim.to_observations(df)
    assert len(obs) == len(df)
    np.testing.assert_array_equal(obs.value, df["value"].values)
    np.testing.assert_array_equal(obs.x, df["lon"].values)
    assert set(obs.platform) == {"float", "glider", "ship"}
    # The package's observation operator reads the same noiseless values as the sampler.
    k = np.searchsorted(truth["time"].values, df["time"].values)
    clean = sim.interpolate(grid, truth["tracer"].values, obs.x, obs.y, time_index=k)
    states = sim.truth_states(truth, grid)[k]
    operator = obs.operator(grid).to_dense()
    np.testing.assert_allclose(np.einsum("ij,ij->i", operator, states), clean, rtol=1e-12)
    ds = sim.simulate_truth(jax.random.key(0), walled, TIMES[:4], None, 10.0, 1.0, 0.0, 0.0)
    floats = sim.Floats(4, 1, 0.1).sample(jax.random.key(0), ds, walled)
    cart = sim.to_observations(floats)
    np.testing.assert_array_equal(cart.y, floats["y"].values)
    assert cart.coords is tb.CoordinateSystem.CARTESIAN


@pytest.mark.parametrize("periodic", [False, True])
def test_twin_interpolation_is_the_observation_operator(periodic):
    """A twin observes the truth through the model's own stencil: simulate.interpolate equals
    the observation operator applied to the field (1e-14), also in the half-cell west of the
    first centre of a periodic grid (wrapping to the last column)."""
    from tracerbayes.observations.core import Observations

    rng = np.random.default_rng(5)
    mask = rng.random((6, 36)) > 0.3
    mask[:, 0] = mask[:, -1] = True
    grid = tb.Grid.regular(lon=(0, 360) if periodic else (0, 180), lat=(-30, 30),
                           resolution=(10.0 if periodic else 5.0, 10.0), periodic=periodic,
                           mask=mask)
    field = rng.normal(size=grid.shape)
    x = np.concatenate([rng.uniform(grid.x_edges[0], grid.x[0], 50),
                        rng.uniform(grid.x_edges[0], grid.x_edges[-1], 500)])
    y = rng.uniform(grid.y_edges[0], grid.y_edges[-1], x.size)
    wet = grid.mask[np.clip(np.searchsorted(grid.y_edges, y) - 1, 0, grid.shape[0] - 1),
                    np.clip(np.searchsorted(grid.x_edges, x) - 1, 0, grid.shape[1] - 1)]
    x, y = x[wet], y[wet]
    obs = Observations(time=np.zeros(x.size), x=x, y=y, value=np.zeros(x.size), error=1.0)
    expected = obs.operator(grid).apply(grid.to_state(field))
    np.testing.assert_allclose(sim.interpolate(grid, field, x, y), expected, rtol=0,
                               atol=1e-14 * np.abs(field).max())
