"""Velocity and mask files checked at the door (issue 16, item 1).

Velocity: NaN over sea cells, a file covering part of the basin, x/y in km on a metre grid,
a file on another grid (regridded only when asked). Masks on another grid: refused unless
``grid.mask.regrid`` asks, then nearest or fraction, compared with direct NumPy sums.
Every case is found by ``validate`` as it is by the builders.
"""

import warnings

import numpy as np
import pytest
import xarray as xr
from test_config import BASE, _inputs, _write

import tracerbayes as tb
from tracerbayes import physics
from tracerbayes.cli.config import (
    ConfigError,
    build_grid,
    build_velocity,
    load_config,
    validate_config,
)
from tracerbayes.cli.main import main
from tracerbayes.grid.regrid import (
    MissingValues,
    Regrid,
    RegridWarning,
    regrid_mask,
    wet_fraction,
)

# BASE: 10 x 12 cells of 10 km on x [0, 120 km], y [0, 100 km], a 2 x 3 island: 114 wet.
X = 5e3 + 10e3 * np.arange(12)
Y = 5e3 + 10e3 * np.arange(10)
VELOCITY = """velocity: {kind: given, file: data/currents.nc, u: uo, v: vo,
           scale_prior: {lognormal: {median: 1.0, sigma: 0.5}}}
"""


def _currents(folder, uo, vo, x=X, y=Y, dims=("y", "x"), **coords):
    xr.Dataset({"uo": (dims, uo), "vo": (dims, vo)},
               coords={"x": x, "y": y, **coords}).to_netcdf(folder / "data" / "currents.nc")


def _velocity_problem(folder, text=BASE):
    """The one problem validate finds, after checking that the builder raises it too."""
    path = _write(folder, text)
    cfg = load_config(path)
    with pytest.raises(ConfigError) as info:
        build_velocity(cfg, build_grid(cfg))
    (problem,) = validate_config(path)
    assert problem == info.value.problems[0]._replace(line=problem.line,
                                                      column=problem.column)
    assert problem.path == "velocity.file" and problem.line == 13
    return problem.message


def _grid():
    mask = np.ones((10, 12), dtype=bool)
    mask[4:6, 5:8] = False
    return tb.Grid.cartesian(x=(0, 120e3), y=(0, 100e3), resolution=10e3, mask=mask)


# ----------------------------------------------------------------------------- velocity
def test_nan_velocity_over_sea_cells_is_refused_with_count_and_place(tmp_path, rng):
    _inputs(tmp_path, rng)
    uo = np.full((10, 12), 0.1)
    uo[1:4, 1:4] = np.nan  # 9 sea cells
    _currents(tmp_path, uo, np.full((10, 12), -0.05))
    message = _velocity_problem(tmp_path)
    assert "currents.nc" in message and "'uo' at 9, 'vo' at 0" in message
    assert "9 of the 114 sea cells have no value (NaN or missing" in message
    assert "touching 24 of the" in message and "open faces" in message
    assert "x [10000, 40000] m, y [10000, 40000] m" in message
    assert "the first at (x, y) = (15000, 15000), (25000, 15000)" in message
    assert "Fill them in the file" in message and "velocity.missing: nearest" in message


def test_nan_velocity_on_land_is_fine_and_missing_options_fill_with_a_warning(tmp_path, rng):
    _inputs(tmp_path, rng)
    uo = np.full((10, 12), 0.1)
    uo[4:6, 5:8] = np.nan  # the island: no velocity needed there
    _currents(tmp_path, uo, np.full((10, 12), -0.05))
    cfg = load_config(_write(tmp_path, BASE))
    grid = build_grid(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_velocity(cfg, grid)

    uo[1, 1] = np.nan  # one sea cell
    _currents(tmp_path, uo, np.full((10, 12), -0.05))
    for how, value in (("nearest", 0.1), ("zero", 0.0)):
        text = BASE.replace("u: uo,", f"u: uo, missing: {how}, divergence: keep,")
        cfg = load_config(_write(tmp_path, text))
        with pytest.warns(RegridWarning, match=rf"1 of the 114 sea cells .*filled \({how}\)"):
            velocity = build_velocity(cfg, grid).velocity
        # The east face of (1, 1) averages the filled cell and its neighbour (0.1).
        assert float(velocity.east[1, 1]) == pytest.approx(0.5 * (value + 0.1), rel=1e-15)


def test_nan_in_some_times_of_a_time_varying_velocity_names_the_time_steps():
    grid = _grid()
    u = np.full((3, 10, 12), 0.1)
    u[1, 2, 3] = np.nan
    ds = xr.Dataset({"u": (("time", "y", "x"), u), "v": (("time", "y", "x"), np.zeros_like(u))},
                    coords={"time": np.arange(3), "x": X, "y": Y})
    with pytest.raises(ValueError, match=r"1 of the 114 sea cells .*'u' at 1, 'v' at 0\) "
                                         r"in 1 of 3 time steps"):
        physics.velocity_from_xarray(grid, ds)


def test_velocity_covering_the_western_half_names_the_uncovered_extent(tmp_path, rng):
    _inputs(tmp_path, rng)
    _currents(tmp_path, np.full((10, 6), 0.1), np.full((10, 6), -0.05), x=X[:6])
    message = _velocity_problem(tmp_path)
    assert "the data cover only 10 x 6 cells (ny x nx) on x [0, 60000], y [0, 100000]" in message
    assert "56 of the grid's 114 wet cells" in message
    assert "lie outside, in x [60000, 120000] m, y [0, 100000] m" in message
    assert "Give velocities over the whole model domain" in message


def test_velocity_in_km_on_a_metre_grid_says_kilometres(tmp_path, rng):
    _inputs(tmp_path, rng)
    _currents(tmp_path, np.full((10, 12), 0.1), np.full((10, 12), -0.05), x=X / 1e3, y=Y / 1e3)
    message = _velocity_problem(tmp_path)
    assert "on x [0, 120], y [0, 100]" in message
    assert "114 of the grid's 114 wet cells" in message
    assert "about 1/1000 of the grid's (ratio 0.001)" in message
    assert "look like kilometres on a grid in metres" in message
    assert "multiply by 1000" in message


def test_velocity_on_another_grid_is_regridded_only_when_asked(tmp_path, rng):
    _inputs(tmp_path, rng)
    xc, yc = 10e3 + 20e3 * np.arange(6), 10e3 + 20e3 * np.arange(5)  # 20 km cells

    def linear(x, y):
        return 0.1 + 1e-6 * x - 2e-6 * y

    xx, yy = np.meshgrid(xc, yc)
    _currents(tmp_path, linear(xx, yy), -0.05 + 0 * xx, x=xc, y=yc)
    message = _velocity_problem(tmp_path)
    assert ("'uo', 'vo' are on another grid than the model: 5 x 6 cells (ny x nx) on x "
            "[0, 120000] m" in message)
    assert "the model 10 x 12 cells (ny x nx)" in message
    assert "velocity.regrid: linear" in message

    cfg = load_config(_write(tmp_path, BASE.replace(
        "u: uo,", "u: uo, regrid: linear, divergence: keep,")))
    grid = build_grid(cfg)
    with pytest.warns(RegridWarning, match=r"'uo', 'vo' regridded \(linear\) from 5 x 6 cells"):
        face = build_velocity(cfg, grid).velocity
    # Bilinear is exact for a linear field within the file's centres; east faces are at x
    # edges, each the mean of two interpolated centres.
    xe, yc_model = np.meshgrid(grid.x_edges[1:], grid.y)
    inside = (xe > 15e3) & (xe < 105e3) & (yc_model > 10e3) & (yc_model < 90e3)
    expected = linear(xe, yc_model) * grid.east_open
    np.testing.assert_allclose(np.asarray(face.east)[inside], expected[inside], rtol=0,
                               atol=1e-15)


def test_regridding_a_velocity_with_land_nans_says_the_nans_came_with_it():
    grid = _grid()
    xc, yc = 10e3 + 20e3 * np.arange(6), 10e3 + 20e3 * np.arange(5)
    u = np.full((5, 6), 0.1)
    u[2, 2] = np.nan  # land in the coarse file, next to the model's sea cells
    ds = xr.Dataset({"u": (("y", "x"), u), "v": (("y", "x"), 0 * u)}, coords={"x": xc, "y": yc})
    with pytest.warns(RegridWarning), pytest.raises(ValueError, match="after the regridding"):
        physics.velocity_from_xarray(grid, ds, regrid=Regrid.LINEAR)
    with pytest.warns(RegridWarning) as record:
        face, _ = physics.velocity_from_xarray(grid, ds, regrid=Regrid.LINEAR,
                                               missing=MissingValues.NEAREST)
    assert [str(w.message).split(":")[0] for w in record] == [
        "'u', 'v' regridded (linear) from 5 x 6 cells (ny x nx) on x [0, 120000] m, y [0, "
        "100000] m to the model's 10 x 12 cell centres", "velocity 'u', 'v'"]
    assert "filled (nearest)" in str(record[1].message)
    assert np.all(np.isfinite(face.east)) and np.all(np.isfinite(face.north))


def test_validate_command_reports_each_velocity_problem(tmp_path, rng, capsys):
    _inputs(tmp_path, rng)
    path = _write(tmp_path, BASE)
    assert main(["validate", str(path)]) == 0
    uo = np.full((10, 12), 0.1)
    uo[1:4, 1:4] = np.nan
    for files, words in (
        (dict(uo=uo, vo=0 * uo), "9 of the 114 sea cells have no value"),
        (dict(uo=uo[:, :6] * 0, vo=uo[:, :6] * 0, x=X[:6]), "56 of the grid's 114 wet cells"),
        (dict(uo=0 * uo, vo=0 * uo, x=X / 1e3, y=Y / 1e3), "look like kilometres"),
    ):
        _currents(tmp_path, **files)
        capsys.readouterr()
        assert main(["validate", str(path)]) == 1
        err = capsys.readouterr().err
        assert "line 13" in err and "velocity.file" in err and words in err


# ----------------------------------------------------------------------------- masks
def _mask_config(folder, coarse, regrid=None):
    """BASE on a 24 x 24 grid of 10 km with ``coarse`` (12 x 12, 20 km) as mask.nc."""
    _inputs(folder, np.random.default_rng(0))
    xc = 10e3 + 20e3 * np.arange(12)
    xr.Dataset({"mask": (("y", "x"), coarse.astype(np.int8))},
               coords={"x": xc, "y": xc}).to_netcdf(folder / "data" / "mask.nc")
    text = (BASE.replace("x: [0, 120 km]", "x: [0, 240 km]")
            .replace("y: [0, 100000 m]", "y: [0, 240 km]")
            .replace(VELOCITY, "velocity: {kind: constant}\n"))
    if regrid:
        text = text.replace("variable: mask}", f"variable: mask, {regrid}}}")
    return _write(folder, text)


def _coarse_mask():
    coarse = np.ones((12, 12), dtype=bool)
    coarse[5:7, 5:7] = False  # 4 land cells of 20 km: 16 of the 24 x 24 grid
    return coarse


def test_mask_on_another_grid_is_refused_naming_both_grids(tmp_path):
    path = _mask_config(tmp_path, _coarse_mask())
    with pytest.raises(ConfigError) as info:
        build_grid(load_config(path))
    (problem,) = validate_config(path)
    assert problem.message == info.value.problems[0].message and problem.path == "grid.mask"
    assert problem.line == 7
    message = problem.message
    assert "mask.nc: 'mask' is on another grid than the model" in message
    assert "12 x 12 cells (ny x nx) on x [0, 240000] m, y [0, 240000] m" in message
    assert "the model 24 x 24 cells (ny x nx) on x [0, 240000] m" in message
    assert "grid.mask.regrid: nearest" in message and "fraction" in message


def test_mask_regridded_by_nearest_keeps_the_border_wet(tmp_path):
    coarse = _coarse_mask()
    path = _mask_config(tmp_path, coarse, "regrid: nearest")
    with pytest.warns(RegridWarning, match=r"560 wet and 16 land cells"):
        grid = build_grid(load_config(path))
    expected = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(grid.mask, expected)
    assert grid.n_wet == 560 and grid.mask[0].all() and grid.mask[:, -1].all()
    with pytest.warns(RegridWarning, match="wet share of the area 97.2% in the file, 97.2% after"):
        assert validate_config(path) == []


def test_mask_regridded_by_fraction_matches_numpy_block_sums(tmp_path, rng):
    coarse = rng.random((12, 12)) > 0.3
    path = _mask_config(tmp_path, coarse, "regrid: fraction, threshold: 0.5")
    with pytest.warns(RegridWarning, match=r"0 cells differ from a nearest-cell lookup"):
        grid = build_grid(load_config(path))
    fine = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(grid.mask, fine)
    assert grid.n_wet == 4 * int(coarse.sum())

    # From a finer mask (48 x 48, 5 km) to the 24 x 24 grid: the share of wet sub-cells.
    model = tb.Grid.cartesian(x=(0, 240e3), y=(0, 240e3), resolution=10e3)
    xf = 2.5e3 + 5e3 * np.arange(48)
    finer = rng.random((48, 48)) > 0.5
    share = finer.reshape(24, 2, 24, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(wet_fraction(finer, xf, xf, model), share, rtol=0, atol=1e-15)
    for threshold in (0.25, 0.5, 0.75, 1.0):
        wet, report = regrid_mask(finer, xf, xf, model, Regrid.FRACTION, threshold)
        np.testing.assert_array_equal(wet, share >= threshold)
        nearest, _ = regrid_mask(finer, xf, xf, model, Regrid.NEAREST)
        differ = int((wet != nearest).sum())
        assert f"{int(wet.sum())} wet and {576 - int(wet.sum())} land cells" in report
        assert f"{differ} cells differ from a nearest-cell lookup" in report


def test_wet_fraction_on_a_lonlat_grid_weights_by_area_on_the_sphere(rng):
    model = tb.Grid.regular(lon=(-10, 10), lat=(30, 50), resolution=1.0)
    lon, lat = np.arange(-9.75, 10, 0.5), np.arange(30.25, 50, 0.5)
    finer = rng.random((40, 40)) > 0.5
    band = np.diff(np.sin(np.deg2rad(np.arange(30, 50.01, 0.5))))  # area of each 0.5 band
    weighted = (finer * band[:, None]).reshape(20, 2, 20, 2).sum(axis=(1, 3))
    expected = weighted / (2 * band.reshape(20, 2).sum(axis=1))[:, None]
    np.testing.assert_allclose(wet_fraction(finer, lon, lat, model), expected, rtol=1e-13)


def test_mask_in_km_on_a_metre_grid_says_kilometres(tmp_path, rng):
    _inputs(tmp_path, rng)
    mask = np.ones((10, 12), dtype=np.int8)
    xr.Dataset({"mask": (("y", "x"), mask)},
               coords={"x": X / 1e3, "y": Y / 1e3}).to_netcdf(tmp_path / "data" / "mask.nc")
    (problem,) = validate_config(_write(tmp_path, BASE))
    assert problem.path == "grid.mask"
    assert "120 of the grid's 120 model cells" in problem.message
    assert "look like kilometres on a grid in metres" in problem.message


def test_mask_not_covering_the_grid_is_refused_even_when_regridding(tmp_path):
    path = _mask_config(tmp_path, _coarse_mask(), "regrid: nearest")
    xc = 10e3 + 20e3 * np.arange(6)  # the western half only
    xr.Dataset({"mask": (("y", "x"), np.ones((12, 6), dtype=np.int8))},
               coords={"x": xc, "y": 10e3 + 20e3 * np.arange(12)}
               ).to_netcdf(tmp_path / "data" / "mask.nc")
    (problem,) = validate_config(path)
    assert problem.path == "grid.mask"
    assert "288 of the grid's 576 model cells" in problem.message
    assert "lie outside, in x [120000, 240000] m, y [0, 240000] m" in problem.message
