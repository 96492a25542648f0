"""YAML run configurations: parsing, unit conversion, every error class, builders, docs."""

import inspect
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import tracerbayes as tb
from tracerbayes import physics
from tracerbayes.cli.config import (
    ConfigError,
    build_grid,
    build_model,
    build_observations,
    build_platforms,
    build_priors,
    build_times,
    build_truth,
    build_velocity,
    fit_options,
    load_config,
    parse_quantity,
    reference_markdown,
    validate_config,
)
from tracerbayes.units import UnitError

ROOT = Path(__file__).resolve().parents[1]

# A 12 x 10 Cartesian basin of 10 km cells with a 3 x 2 island (6 land cells).
BASE = """\
title: test basin
tracer: {name: temp, units: degC}
grid:
  x: [0, 120 km]
  y: [0, 100000 m]
  resolution: 10 km
  mask: {file: data/mask.nc, variable: mask}
times: {start: 2020-01-01, end: 2020-01-05, step: 1 day}
observations:
  - file: data/obs.csv
    columns: {x: xpos, y: ypos, value: temp, platform: platform}
    error: 0.2
velocity: {kind: given, file: data/currents.nc, u: uo, v: vo,
           scale_prior: {lognormal: {median: 1.0, sigma: 0.5}}}
priors:
  diffusivity: {lognormal: {median: 3000 cm^2/s, sigma: 1.0}}
  noise_lengthscale: {lognormal: {median: 150000 m, sigma: 0.5}}
  noise_sd: {halfnormal: {scale: 0.2}}
  smoothness: 5/2
model: {n_modes: 12}
method: {name: nuts, num_warmup: 10, num_samples: 20, num_chains: 2, seed: 3}
"""


def _inputs(folder: Path, rng: np.random.Generator, n_obs: int = 40) -> np.ndarray:
    """Mask, currents and observations under ``folder/data``; returns the mask."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    x = 5e3 + 10e3 * np.arange(12)
    y = 5e3 + 10e3 * np.arange(10)
    mask = np.ones((10, 12), dtype=np.int8)
    mask[4:6, 5:8] = 0
    xr.Dataset({"mask": (("y", "x"), mask)}, coords={"x": x, "y": y}).to_netcdf(data / "mask.nc")
    ones = np.ones((10, 12))
    xr.Dataset({"uo": (("y", "x"), 0.1 * ones), "vo": (("y", "x"), -0.05 * ones)},
               coords={"x": x, "y": y}).to_netcdf(data / "currents.nc")
    px = rng.uniform(1e3, 45e3, n_obs)  # west of the island
    py = rng.uniform(1e3, 99e3, n_obs)
    days = rng.integers(0, 5, n_obs)
    pd.DataFrame({"time": pd.Timestamp("2020-01-01") + pd.to_timedelta(days, "D"),
                  "xpos": px, "ypos": py, "temp": rng.normal(15, 1, n_obs),
                  "platform": np.where(days % 2 == 0, "argo", "glider")}
                 ).to_csv(data / "obs.csv", index=False)
    return mask


def _write(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(folder: Path, text: str) -> list:
    with pytest.raises(ConfigError) as info:
        load_config(_write(folder, text))
    return info.value.problems


# ------------------------------------------------------------------------------ units
@pytest.mark.parametrize(("text", "kind", "unit", "expected"), [
    ("300 m^2/s", "diffusivity", "m^2/s", 300.0),
    ("3000 cm^2/s", "diffusivity", "m^2/s", 0.3),
    ("150 km", "length", "km", 150.0),
    ("150000 m", "length", "km", 150.0),
    ("1 day", "time", "s", 86400.0),
    ("6 h", "time", "s", 21600.0),
    ("0.1 m/s", "speed", "m/s", 0.1),
    ("1 knot", "speed", "m/s", 1852.0 / 3600.0),
    ("0.25 deg", "angle", "deg", 0.25),
    (42, "length", "km", 42.0),
    ("2.5e3", "length", "m", 2500.0),
])
def test_quantities_convert_to_the_documented_unit(text, kind, unit, expected):
    assert parse_quantity(text, kind, unit) == pytest.approx(expected, rel=1e-15)


def test_wrong_kind_of_unit_says_what_it_is_and_what_is_expected():
    with pytest.raises(UnitError) as info:
        parse_quantity("300 km", "diffusivity", "m^2/s")
    assert str(info.value) == ("'300 km' is a length; a diffusivity is expected (m^2/s), "
                               "e.g. '300 m^2/s'")
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        parse_quantity("3 furlong", "length", "km")


# ------------------------------------------------------------------------------ builders
def test_valid_config_builds_grid_times_observations_priors_model(tmp_path, rng):
    mask = _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE))
    grid = build_grid(cfg)
    assert grid.shape == (10, 12)
    assert grid.n_wet == int(mask.sum()) == 114
    np.testing.assert_allclose(grid.x_edges, np.arange(13) * 10e3)

    times = build_times(cfg)
    expected = np.datetime64("2020-01-01", "ns") + np.arange(5) * np.timedelta64(1, "D")
    np.testing.assert_array_equal(times, expected)

    obs = build_observations(cfg)
    assert len(obs) == 40
    assert obs.coords is tb.CoordinateSystem.CARTESIAN
    np.testing.assert_array_equal(obs.error, np.full(40, 0.2))
    assert obs.platforms == ("argo", "glider")
    prepared = obs.prepare(grid, times)
    assert prepared.value.size == 40

    priors = build_priors(cfg, obs)
    assert float(priors.diffusivity.loc) == pytest.approx(np.log(0.3), rel=1e-14)
    assert float(priors.diffusivity.scale) == 1.0
    assert float(priors.noise_lengthscale_km.loc) == pytest.approx(np.log(150.0), rel=1e-14)
    assert float(priors.noise_sd.scale) == 0.2
    assert priors.smoothness is tb.priors.Smoothness.FIVE_HALVES
    # Omitted priors keep the package defaults scaled to the data (Priors.for_observations).
    assert float(priors.initial_sd.scale) == pytest.approx(2.0 * np.std(obs.value), rel=1e-14)

    velocity = build_velocity(cfg, grid)
    # the file's uniform current, its divergent part removed (velocity.divergence: remove):
    # in this closed box a uniform current is all divergent, so nothing of it is left
    reference = physics.constant_velocity(grid, 0.1, -0.05)
    projected, _ = physics.remove_divergence(grid, reference)
    np.testing.assert_allclose(velocity.velocity.east, projected.east, atol=1e-15)
    np.testing.assert_allclose(velocity.velocity.north, projected.north, atol=1e-15)
    assert np.abs(projected.east).max() < 1e-14 and np.abs(projected.north).max() < 1e-14
    assert float(velocity.scale_prior.scale) == 0.5
    kept = load_config(_write(tmp_path, BASE.replace("u: uo,", "u: uo, divergence: keep,")))
    np.testing.assert_allclose(build_velocity(kept, grid).velocity.east, reference.east,
                               atol=1e-15)

    model = build_model(cfg, grid, obs, velocity=velocity)
    assert model.n_modes == 12 and model.grid is grid and model.transition == "galerkin"

    options = fit_options(cfg)
    assert options == {"method": tb.NUTS(num_warmup=10, num_samples=20, num_chains=2),
                       "seed": 3, "drop_invalid": False}
    assert type(options["method"]) is tb.NUTS  # the method object, without the run's keys
    assert set(options) <= set(inspect.signature(tb.fit).parameters)
    assert validate_config(tmp_path / "run.yaml") == []


def test_relative_paths_resolve_against_the_config_folder(tmp_path, rng, monkeypatch):
    folder = tmp_path / "project" / "configs"
    _inputs(folder, rng)
    path = _write(folder, BASE)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load_config(Path("project/configs/run.yaml"))
    assert cfg.observations[0].file == folder / "data" / "obs.csv"
    assert cfg.grid.mask.file == folder / "data" / "mask.nc"
    assert cfg.output.directory == folder / "out"
    assert cfg.path == path
    assert len(build_observations(cfg)) == 40


def test_example_canary_config_builds_the_real_coastline():
    from global_land_mask import globe

    cfg = load_config(ROOT / "configs" / "canary_sst.yaml", check_files=False)
    grid = build_grid(cfg)
    assert grid.shape == (60, 60)
    lon, lat = np.meshgrid(-25 + 0.125 + 0.25 * np.arange(60), 20 + 0.125 + 0.25 * np.arange(60))
    assert grid.n_wet == int(globe.is_ocean(lat, lon).sum())
    times = build_times(cfg)
    assert times.size == 31 and times[-1] == np.datetime64("2012-08-31", "ns")
    assert cfg.priors.noise_lengthscale["median"] == 150.0
    assert cfg.tracer.units == "degC"


def test_example_island_twin_config_and_platforms():
    cfg = load_config(ROOT / "configs" / "island_twin.yaml", check_files=False)
    assert cfg.grid.x == (0.0, 480e3) and cfg.grid.resolution == (10e3, 10e3)
    assert cfg.simulate.truth.diffusivity == 600.0
    assert cfg.simulate.truth.noise_lengthscale == 80.0
    floats, glider = build_platforms(cfg)
    assert isinstance(floats, tb.simulate.Floats) and floats.drift == 30e3
    assert isinstance(glider, tb.simulate.Glider) and glider.waypoints[1] == (420e3, 240e3)


# ------------------------------------------------------------------------------ errors
def test_unknown_key_gives_full_path_valid_keys_and_closest(tmp_path, rng):
    _inputs(tmp_path, rng)
    text = BASE.replace("  diffusivity: {lognormal", "  difusivity: {lognormal")
    (problem,) = _problems(tmp_path, text)
    assert problem.path == "priors.difusivity"
    assert "valid keys here: ['damping', 'diffusivity', 'error_scale'," in problem.message
    assert problem.message.endswith("did you mean 'diffusivity'?")
    assert problem.line == 16


def test_wrong_type_states_expected_and_found(tmp_path, rng):
    _inputs(tmp_path, rng)
    (problem,) = _problems(tmp_path, BASE.replace("n_modes: 12", "n_modes: 100x"))
    assert str(problem) == ("line 20, column 18: model.n_modes: expected 'auto' (enough "
                            "modes for 95% of the variance of the prior's shorter lengthscale, "
                            "within the compute budget) or a number of modes, got '100x'")


def test_projected_transition_key(tmp_path, rng):
    _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE.replace("n_modes: 12",
                                                    "n_modes: 12, transition: projected")))
    grid = build_grid(cfg)
    model = build_model(cfg, grid, build_observations(cfg), velocity=build_velocity(cfg, grid))
    assert model.transition == "projected" and model.max_speed > 0
    (problem,) = _problems(tmp_path, BASE.replace("n_modes: 12",
                                                  "n_modes: 12, transition: exact"))
    assert problem.path == "model.transition"
    assert "'galerkin', 'projected'" in problem.message


def test_missing_required_key(tmp_path, rng):
    _inputs(tmp_path, rng)
    (problem,) = _problems(tmp_path, BASE.replace("  resolution: 10 km\n", ""))
    assert problem.path == "grid.resolution"
    assert problem.message.startswith("missing required key 'resolution'")


def test_missing_file_shows_path_as_written_and_resolved(tmp_path, rng):
    _inputs(tmp_path, rng)
    (problem,) = _problems(tmp_path, BASE.replace("data/obs.csv", "data/nope.csv"))
    assert problem.path == "observations[0].file"
    assert problem.message == (f"file 'data/nope.csv' not found (resolved to "
                               f"{tmp_path.resolve() / 'data' / 'nope.csv'}, relative to the "
                               f"config file's folder {tmp_path.resolve()})")


def test_unit_mistake_names_the_setting(tmp_path, rng):
    _inputs(tmp_path, rng)
    (problem,) = _problems(tmp_path, BASE.replace("3000 cm^2/s", "300 km"))
    assert str(problem).endswith("priors.diffusivity.lognormal.median: '300 km' is a length; "
                                 "a diffusivity is expected (m^2/s), e.g. '300 m^2/s'")


@pytest.mark.parametrize(("old", "new", "path", "message"), [
    ("sigma: 1.0", "sigma: -1.0", "priors.diffusivity.lognormal.sigma",
     "expected a number > 0, got -1"),
    ("start: 2020-01-01, end: 2020-01-05", "start: 2020-01-06, end: 2020-01-05",
     "times.start", "start 2020-01-06T00:00:00.000000000 is after end"),
    ("x: [0, 120 km]", "x: [120 km, 0]", "grid.x",
     "the range [120000, 0] is reversed or empty; give [west, east] with west < east"),
    ("resolution: 10 km", "resolution: 0 km", "grid.resolution",
     "expected length in m, > 0, got 0"),
    ("num_chains: 2", "num_chains: 0", "method.num_chains", "expected an integer >= 1, got 0"),
    ("step: 1 day", "step: 1 km", "times.step", "'1 km' is a length; a duration is expected"),
    ("name: nuts", "name: nutz", "method.name",
     "'nutz' is not one of ['auto', 'nuts', 'laplace', 'enkf', 'etkf', 'letkf', 'eki']; "
     "did you mean 'nuts'?"),
    ("resolution: 10 km", "resolution: 8 km", "grid.resolution",
     "the y extent [0, 100000] is not a whole number of cells of 8000 (12.5)"),
    ("value: temp, platform", "value: temp, error: err, platform", "observations[0].error",
     "give either a constant error or columns.error, not both"),
])
def test_out_of_range_and_inconsistent_values(tmp_path, rng, old, new, path, message):
    _inputs(tmp_path, rng)
    assert old in BASE
    (problem,) = _problems(tmp_path, BASE.replace(old, new))
    assert problem.path == path
    assert message in problem.message


def test_all_problems_are_reported_together(tmp_path, rng):
    _inputs(tmp_path, rng)
    text = (BASE.replace("n_modes: 12", "n_modes: -3").replace("difusivity", "x")
            .replace("  diffusivity:", "  difusivity:").replace("name: nuts", "name: letfk")
            .replace("data/obs.csv", "missing.csv"))
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["method.name", "model.n_modes", "observations[0].file",
                     "priors.difusivity"]
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'run.yaml'}: 4 problems:\n  - line ")
    assert "did you mean 'letkf'?" in text


def test_invalid_yaml_reports_line_and_column(tmp_path):
    (problem,) = _problems(tmp_path, "grid:\n  lon: [-25, -10\nlat: 3\n")
    assert problem.message.startswith("invalid YAML:")
    assert (problem.line, problem.column) == (3, 4)


def test_mask_variable_missing_and_observations_on_land_are_found_by_validate(tmp_path, rng):
    _inputs(tmp_path, rng)
    path = _write(tmp_path, BASE.replace("variable: mask", "variable: msk"))
    (problem,) = validate_config(path)
    assert problem.path == "grid.mask.variable"
    assert problem.message.startswith("variable 'msk' not found in")
    assert problem.message.endswith("it has ['mask']; did you mean 'mask'?")

    frame = pd.read_csv(tmp_path / "data" / "obs.csv")
    frame.loc[3, ["xpos", "ypos"]] = [65e3, 50e3]  # inside the island
    frame.loc[7, "xpos"] = 130e3  # east of the basin
    frame.to_csv(tmp_path / "data" / "obs.csv", index=False)
    (problem,) = validate_config(_write(tmp_path, BASE))
    assert problem.path == "observations"
    assert "1 observation is outside the grid (row 7" in problem.message
    assert "1 observation is on land (row 3" in problem.message


# ------------------------------------------------------------------------------ docs
def test_reference_doc_is_up_to_date():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale; regenerate it with: python -c \"from "
        "tracerbayes.cli.config import reference_markdown as r; "
        "open('docs/configuration.md', 'w').write(r())\"")


# ------------------------------------------------------------------------------ simulate
SIMULATE = """\
simulate:
  seed: 1
  observations: data/synthetic.csv
  truth: {diffusivity: 500 m^2/s, noise_sd: 0.1, noise_lengthscale: 30 km, initial_mean: 12.0,
          initial_sd: 0.5, initial_lengthscale: 20 km, velocity_scale: 2.0}
  platforms:
    - {kind: floats, n_floats: 10, every: 2, error: 0.1, drift: 5 km}
"""


def test_truth_of_the_simulate_section_keeps_mean_and_total(tmp_path, rng, key):
    _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE + SIMULATE))
    assert cfg.simulate.observations == tmp_path.resolve() / "data" / "synthetic.csv"
    grid, times = build_grid(cfg), build_times(cfg)
    truth = build_truth(key, cfg, grid, times)
    field = truth["temp"].values
    assert field.shape == (5, 10, 12)
    assert np.isnan(field[:, ~grid.mask]).all() and np.isfinite(field[:, grid.mask]).all()
    area = np.asarray(grid.cell_area)[grid.mask]
    first = field[0][grid.mask]
    # The first map is initial_mean plus mass-free noise: its area-weighted mean is exact.
    assert np.sum(area * first) / np.sum(area) == pytest.approx(12.0, rel=1e-12)
    assert np.std(first) > 0.05
    totals = np.array([np.sum(area * f[grid.mask]) for f in field])
    np.testing.assert_allclose(totals, totals[0], rtol=1e-12)
    assert truth["temp"].attrs["units"] == "degC"
    (floats,) = build_platforms(cfg)
    assert floats.n_floats == 10 and floats.drift == 5e3


# ------------------------------------------------------------------------------ letkf
def test_letkf_options_and_whether_fit_accepts_them(tmp_path, rng):
    _inputs(tmp_path, rng)
    text = BASE.replace(
        "method: {name: nuts, num_warmup: 10, num_samples: 20, num_chains: 2, seed: 3}",
        "method: {name: letkf, ensemble_size: 32, localisation: 150000 m, inflation: 1.05, "
        "weight_stride: 3}")
    path = _write(tmp_path, text)
    options = fit_options(load_config(path))
    assert options == {"method": tb.LETKF(ensemble_size=32, localisation=150.0, inflation=1.05,
                                          weight_stride=3, parameters="auto"),
                       "seed": 0, "drop_invalid": False}
    assert validate_config(path) == []
    for given, expected in [("parameters: prior", "prior"), ("inflation: adaptive", "adaptive"),
                            ("parameters: {diffusivity: 500, noise_sd: 0.1}",
                             {"diffusivity": 500.0, "noise_sd": 0.1})]:
        key = given.split(":")[0]
        start = text.replace("inflation: 1.05, ", "") if key == "inflation" else text
        edited = _write(tmp_path, start.replace("weight_stride: 3}",
                                                f"weight_stride: 3, {given}}}"), "edited.yaml")
        assert getattr(fit_options(load_config(edited))["method"], key) == expected
    (problem,) = _problems(tmp_path, text.replace("inflation: 1.05", "inflation: lots"))
    assert problem.path == "method.inflation" and "'adaptive' or a number >= 1" in problem.message


# ------------------------------------------------------------------------------ times
@pytest.mark.parametrize(("times", "expected"), [
    # 'up to and including end': never past it, even when end is off the step
    ("{start: 2020-01-01, end: 2020-01-04T20:00, step: 1 day}",
     ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"]),
    ("{start: 2020-01-01, end: 2020-01-05, step: 2 days}",
     ["2020-01-01", "2020-01-03", "2020-01-05"]),
    # monthly: the same day of every calendar month (the last day in shorter ones)
    ("{start: 2019-11-30, end: 2020-03-30, step: monthly}",
     ["2019-11-30", "2019-12-30", "2020-01-30", "2020-02-29", "2020-03-30"]),
    ("{list: [2020-01-01, 2020-01-02T12:00, 2020-01-05]}",
     ["2020-01-01T00:00", "2020-01-02T12:00", "2020-01-05T00:00"]),
])
def test_analysis_times_regular_monthly_and_listed(tmp_path, rng, times, expected):
    _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE.replace(
        "{start: 2020-01-01, end: 2020-01-05, step: 1 day}", times)))
    got = build_times(cfg)
    np.testing.assert_array_equal(got, np.array(expected, dtype="datetime64[ns]"))


def test_analysis_times_from_the_observations(tmp_path, rng):
    _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE.replace(
        "{start: 2020-01-01, end: 2020-01-05, step: 1 day}", "{from_observations: true}")))
    obs = build_observations(cfg)
    days = np.unique(np.asarray(obs.time).astype("datetime64[D]")).astype("datetime64[ns]")
    np.testing.assert_array_equal(build_times(cfg), days)
    np.testing.assert_array_equal(build_times(cfg, obs), days)
    assert validate_config(tmp_path / "run.yaml") == []


@pytest.mark.parametrize(("times", "path", "message"), [
    ("{start: 2020-01-01, step: 1 day}", "times.end", "start and end go together"),
    ("{start: 2020-01-01, end: 2020-01-05, list: [2020-01-01]}", "times",
     "give exactly one of: start and end (with step), list, or from_observations"),
    ("{list: [2020-01-02, 2020-01-01]}", "times.list",
     "strictly increasing: item 1 (2020-01-01T00:00:00.000000000) is not after item 0"),
    ("{start: 2020-01-01, end: 2020-01-05, step: weekly}", "times.step",
     "'weekly' is not a number followed by a unit"),
])
def test_bad_analysis_times_say_what_to_write(tmp_path, rng, times, path, message):
    _inputs(tmp_path, rng)
    (problem,) = _problems(tmp_path, BASE.replace(
        "{start: 2020-01-01, end: 2020-01-05, step: 1 day}", times))
    assert problem.path == path
    assert message in problem.message


def test_tracer_not_conserved_builds_the_damped_model(tmp_path, rng):
    _inputs(tmp_path, rng)
    text = (BASE.replace("tracer: {name: temp, units: degC}",
                         "tracer: {name: temp, units: degC, conserved: false}")
            .replace("  smoothness: 5/2\n", "  smoothness: 5/2\n  damping: {lognormal: "
                     "{median: 2 weeks, sigma: 0.5}}\n  source_sd: {halfnormal: {scale: 0.3}}\n"))
    cfg = load_config(_write(tmp_path, text))
    grid = build_grid(cfg)
    model = build_model(cfg, grid, build_observations(cfg), velocity=build_velocity(cfg, grid))
    assert not model.conserved
    assert float(model.damping_prior().icdf(0.5)) == pytest.approx(14.0)
    assert float(model.source_prior().scale) == pytest.approx(0.3)
    plain = load_config(_write(tmp_path, BASE, "plain.yaml"))
    assert build_model(plain, grid, velocity=build_velocity(plain, grid)).conserved


def test_a_run_too_large_for_the_machine_is_refused_by_validate(tmp_path, rng):
    from tracerbayes.cli.config.load import MEMORY_SHARE, machine_memory

    _inputs(tmp_path, rng)
    # one second: 345,601 analysis times over four days (it used to pass validate, then die
    # in the fit with a 7.7 GiB MemoryError)
    text = BASE.replace("step: 1 day}", "step: 1 s}")
    problems = validate_config(_write(tmp_path, text))
    total = machine_memory()
    if not total:
        pytest.skip("the system does not say how much memory it has")
    (problem,) = [p for p in problems if p.path == "times"]
    need = float(problem.message.split("about ")[1].split(" GiB")[0])
    assert need * 2**30 > MEMORY_SHARE * total
    assert "345601 times" in problem.message and "times.step" in problem.message
    assert problem.line == 8  # the times: line
    assert validate_config(_write(tmp_path, BASE)) == []  # the daily run fits


def test_seasonal_modes_auto_follows_the_analysis_times(tmp_path, rng):
    """tracer.seasonal_modes: auto gives 20 for monthly times over a year and 0 for the base's
    four days; the model then carries the pair of fields (two with seasonal_harmonics: 2),
    and the memory estimate counts them; an annual forcing asked of a conserved tracer is a
    config problem."""
    from tracerbayes.cli.config import seasonal_modes
    from tracerbayes.cli.config.load import estimated_memory

    _inputs(tmp_path, rng)
    text = BASE.replace("tracer: {name: temp, units: degC}",
                        "tracer: {name: temp, units: degC, conserved: false}")
    cfg = load_config(_write(tmp_path, text))
    grid, obs = build_grid(cfg), build_observations(cfg)
    days = build_times(cfg, obs)
    assert seasonal_modes(cfg, days) == (0, "the analysis times span 4 days, less than half "
                                         "a year")
    monthly = np.arange("2020-01", "2021-01", dtype="datetime64[M]").astype("datetime64[ns]")
    n, why = seasonal_modes(cfg, monthly)
    assert n == 20 and "sample the annual cycle" in why
    model = build_model(cfg, grid, obs, velocity=build_velocity(cfg, grid), times=monthly)
    assert model.n_season == min(20, model.n_modes) and model.seasonal_harmonics == 1
    assert model.state_size == model.n_modes + model.n_mean + 2 * model.n_season
    semi = load_config(_write(tmp_path, text.replace("conserved: false", "conserved: false, "
                                                     "seasonal_harmonics: 2"), "semi.yaml"))
    model = build_model(semi, grid, obs, velocity=build_velocity(semi, grid), times=monthly)
    assert model.seasonal_harmonics == 2
    assert model.state_size == model.n_modes + model.n_mean + 2 * 2 * model.n_season
    prepared = obs.prepare(grid, monthly, drop_invalid=True)
    with_times = estimated_memory(cfg, grid, obs, prepared, 12, monthly)[1]
    without = estimated_memory(cfg, grid, obs, prepared, 12)[1]
    assert with_times != without and "-entry state" in with_times
    conserved = BASE.replace("tracer: {name: temp, units: degC}",
                             "tracer: {name: temp, units: degC, seasonal_modes: 4}")
    (problem,) = validate_config(_write(tmp_path, conserved, "conserved.yaml"))
    assert problem.path == "tracer.seasonal_modes" and "conserved: false" in problem.message
    # a semi-annual harmonic that quarterly times cannot see: validate says so
    quarterly = (text.replace("conserved: false", "conserved: false, seasonal_harmonics: 2")
                 .replace("times: {start: 2020-01-01, end: 2020-01-05, step: 1 day}",
                          "times: {start: 2020-01-01, end: 2020-12-31, step: 91 days}"))
    problems = validate_config(_write(tmp_path, quarterly, "quarterly.yaml"))
    (problem,) = [p for p in problems if p.path == "tracer.seasonal_harmonics"]
    assert "sample a cycle of 183 days" in problem.message and "leave 91 days" in problem.message
