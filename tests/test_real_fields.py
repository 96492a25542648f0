"""benchmarks/real_fields.py: held-out problems cut from real fields (skipped if not installed)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from tracerbayes import Grid

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_fields.py"


@pytest.fixture(scope="module")
def rf():
    spec = importlib.util.spec_from_file_location("real_fields", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_fields"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("real_fields", None)


def _problem(rf, name, out, **kwargs):
    try:
        return rf.make_problem(name, None, out, **kwargs)
    except rf.SourceMissingError as err:
        pytest.skip(str(err))


def _grid(config_path):
    """The config's grid through Grid.regular, its mask from mask.nc."""
    cfg = yaml.safe_load(Path(config_path).read_text())
    g = cfg["grid"]
    res = float(str(g["resolution"]).split()[0])
    with xr.open_dataset(Path(config_path).parent / g["mask"]["file"]) as ds:
        mask = ds[g["mask"]["variable"]].values
    return cfg, Grid.regular(lon=tuple(g["lon"]), lat=tuple(g["lat"]), resolution=res,
                             mask=mask.astype(bool))


FIELDS = ["coads_sst", "eofs_pacific", "hadisst"]


@pytest.mark.parametrize("name", FIELDS)
def test_problem_sampling_noise_and_grid(rf, name, tmp_path):
    fraction, noise_sd = 0.3, 0.5
    paths = _problem(rf, name, tmp_path, fraction=fraction, noise_sd=noise_sd, seed=3)
    obs = pd.read_csv(paths["obs"])
    cfg, grid = _grid(paths["config"])
    with xr.open_dataset(paths["truth"]) as ds:
        truth, observed = ds["sst"].load(), ds["observed"].load()
    with xr.open_dataset(paths["mask"]) as ds:
        mask = ds["mask"].values.astype(bool)

    # The model grid's cells are the data's cells.
    np.testing.assert_allclose(grid.x, truth["lon"].values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(grid.y, truth["lat"].values, rtol=0, atol=1e-9)
    assert mask.sum() >= 300
    assert np.array_equal(mask, np.isfinite(truth.values).all(axis=0))
    assert np.array_equal(~mask, np.isnan(truth.values).all(axis=0))

    # Observations at cell centres, on ocean cells only; `observed` marks exactly them.
    i = np.searchsorted(grid.x, obs["lon"].to_numpy())
    j = np.searchsorted(grid.y, obs["lat"].to_numpy())
    assert np.all(i < grid.x.size) and np.all(j < grid.y.size)
    np.testing.assert_allclose(grid.x[i], obs["lon"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(grid.y[j], obs["lat"], rtol=0, atol=1e-9)
    assert grid.mask[j, i].all()
    k = np.searchsorted(truth["time"].values, pd.to_datetime(obs["time"]).to_numpy())
    assert np.array_equal(truth["time"].values[k], pd.to_datetime(obs["time"]).to_numpy())
    assert observed.values[k, j, i].all()
    assert int(observed.sum()) == len(obs)  # no cell drawn twice at one time
    assert not (observed.values & ~mask[None]).any()

    # The fraction of ocean cells at each time, errors and platform as asked.
    per_time = obs.groupby("time").size()
    assert len(per_time) == truth.sizes["time"]
    assert (per_time == round(fraction * mask.sum())).all()
    assert np.all(obs["error"] == noise_sd) and set(obs["platform"]) == {"sample"}

    # Noise: obs minus truth ~ N(0, noise_sd), within sampling error (4 standard errors).
    resid = obs["value"].to_numpy() - truth.values[k, j, i]
    n = resid.size
    assert abs(resid.mean()) < 4 * noise_sd / np.sqrt(n)
    assert abs(resid.std(ddof=1) - noise_sd) < 4 * noise_sd / np.sqrt(2 * (n - 1))

    # Analysis times: exactly the field's times (a step, monthly or a list), as the
    # package's config loader reads them.
    from tracerbayes.cli.config import build_times, load_config

    times = build_times(load_config(paths["config"]))
    np.testing.assert_array_equal(times, truth["time"].values.astype("datetime64[ns]"))
    assert cfg["tracer"]["units"] == "degC" and "priors" not in cfg


def test_kelvin_and_seed(rf, tmp_path):
    name = "hadisst"
    c = _problem(rf, name, tmp_path / "c", seed=5)
    k = _problem(rf, name, tmp_path / "k", seed=5, kelvin=True)
    oc, ok = pd.read_csv(c["obs"]), pd.read_csv(k["obs"])
    assert oc[["time", "lon", "lat"]].equals(ok[["time", "lon", "lat"]])
    np.testing.assert_allclose(ok["value"] - oc["value"], 273.15, atol=1e-9)
    assert yaml.safe_load(k["config"].read_text())["tracer"]["units"] == "K"
    with xr.open_dataset(k["truth"]) as ds:
        assert ds["sst"].attrs["units"] == "K"
    other = pd.read_csv(_problem(rf, name, tmp_path / "o", seed=6)["obs"])
    assert not other[["lon", "lat"]].equals(oc[["lon", "lat"]])


def test_region_across_the_date_line(rf, tmp_path):
    try:
        paths = rf.make_problem("eofs_pacific", (150, -110, -10, 50), tmp_path)
    except rf.SourceMissingError as err:
        pytest.skip(str(err))
    cfg, grid = _grid(paths["config"])
    assert cfg["grid"]["lon"] == [150, 250]
    obs = pd.read_csv(paths["obs"])
    assert np.isin(obs["lon"], grid.x).all() and np.isin(obs["lat"], grid.y).all()


def test_bad_region_and_missing_sources(rf, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="cell edges"):
        rf._check_region("coads_sst", (-81, 0, 10, 60), 2.0, np.array([-179.0, -177.0]),
                         np.array([-89.0, -87.0]))
    with pytest.raises(ValueError, match="unknown field"):
        rf.load_field("nope")
    monkeypatch.setattr(rf, "COADS_FILE", tmp_path / "absent.cdf")
    with pytest.raises(rf.SourceMissingError, match="apt-get install .*ferret-datasets"):
        rf.load_field("coads_sst")
    with pytest.raises(rf.SourceMissingError, match="pip install eofs"):
        rf._package_dir("no_such_package_for_tracerbayes", "eofs_pacific")
