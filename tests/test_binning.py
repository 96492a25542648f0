"""Super-observations (:meth:`Observations.bin`) against a direct groupby and Gaussian algebra.

References: the cell of each observation is ``floor((x - x0) / dx)`` on a uniform Cartesian
grid, its analysis time the nearest of daily times (ties: the earlier), and a group's
super-observation Eqs. (1)-(4) of :mod:`tracerbayes.observations.binning` computed with
pandas. The posterior of one cell value ``c ~ N(m0, p0)`` given Gaussian observations ``v_i``
of it is ``precision = 1/p0 + sum_i 1/s_i^2``, ``mean = (m0/p0 + sum_i v_i/s_i^2) /
precision``, the same from the raw rows as from their super-observation.
"""

import textwrap

import numpy as np
import pandas as pd
import pytest

from tracerbayes.cli.config import build_grid, build_observations, build_times, load_config
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import (
    BinningReport,
    ObservationError,
    Observations,
    ObservationWarning,
)

DAY = 86400.0
DX = 20e3  # cell size, m
TIMES = np.arange(4) * DAY


def basin() -> Grid:
    mask = np.ones((6, 8), dtype=bool)
    mask[2:4, 3:5] = False  # an island
    return Grid.cartesian(x=(0.0, 8 * DX), y=(0.0, 6 * DX), resolution=DX, mask=mask)


def observations(rng: np.random.Generator, grid: Grid, n: int = 600) -> Observations:
    """Observations in wet cells, a few per cell, time and platform, times within the days."""
    wet = np.argwhere(grid.mask)
    j, i = wet[rng.integers(0, len(wet), n)].T
    return Observations(
        time=rng.uniform(-0.5 * DAY, 3.5 * DAY, n), x=(i + rng.uniform(0, 1, n)) * DX,
        y=(j + rng.uniform(0, 1, n)) * DX, value=rng.normal(15.0, 1.0, n),
        error=rng.uniform(0.05, 0.5, n), platform=rng.choice(["argo", "glider"], n),
        coords="cartesian")


def groupby_reference(obs: Observations) -> pd.DataFrame:
    df = obs.to_dataframe()
    df["t"] = np.clip(np.ceil(df["time"] / DAY - 0.5), 0, TIMES.size - 1).astype(int)
    df["cell"] = np.floor(df["y"] / DX).astype(int) * 8 + np.floor(df["x"] / DX).astype(int)
    df["w"] = 1.0 / df["error"] ** 2
    df["wv"] = df["w"] * df["value"]
    g = df.groupby(["t", "cell", "platform"]).agg(w=("w", "sum"), wv=("wv", "sum"),
                                                  x=("x", "mean"), y=("y", "mean"),
                                                  k=("value", "size"))
    return pd.DataFrame({"time": TIMES[g.index.get_level_values("t")],
                         "platform": g.index.get_level_values("platform"),
                         "x": g["x"].to_numpy(), "y": g["y"].to_numpy(),
                         "value": (g["wv"] / g["w"]).to_numpy(),
                         "error": 1.0 / np.sqrt(g["w"].to_numpy()), "k": g["k"].to_numpy()})


def test_super_observations_equal_a_direct_groupby(rng):
    grid = basin()
    obs = observations(rng, grid)
    binned = obs.bin(grid, TIMES).observations
    reference = groupby_reference(obs)
    assert len(binned) == len(reference) < len(obs)
    np.testing.assert_array_equal(binned.time, reference["time"])
    np.testing.assert_array_equal(binned.platform, reference["platform"])
    for name in ("x", "y", "value", "error"):
        np.testing.assert_allclose(getattr(binned, name), reference[name], rtol=1e-12,
                                   atol=0, err_msg=name)
    # Each super-observation is assigned to its own analysis time and cell again.
    prepared = binned.prepare(grid, TIMES)
    np.testing.assert_array_equal(TIMES[prepared.time_index], reference["time"])


def test_posterior_of_a_cell_value_is_the_same_from_raw_rows_and_super_observation(rng):
    grid = basin()
    obs = observations(rng, grid)
    binned = obs.bin(grid, TIMES).observations
    reference = groupby_reference(obs)
    big = int(np.argmax(reference["k"]))  # the group with the most rows
    assert reference["k"][big] >= 3
    t = np.clip(np.ceil(obs.time / DAY - 0.5), 0, TIMES.size - 1)
    cell = np.floor(obs.y / DX) * 8 + np.floor(obs.x / DX)
    home = np.floor(binned.y[big] / DX) * 8 + np.floor(binned.x[big] / DX)
    rows = ((TIMES[t.astype(int)] == binned.time[big]) & (cell == home)
            & (obs.platform == binned.platform[big]))
    assert rows.sum() == reference["k"][big]
    m0, p0 = 14.0, 2.5  # prior mean and variance of the cell value
    raw_precision = 1 / p0 + np.sum(1 / obs.error[rows] ** 2)
    raw_mean = (m0 / p0 + np.sum(obs.value[rows] / obs.error[rows] ** 2)) / raw_precision
    super_precision = 1 / p0 + 1 / binned.error[big] ** 2
    super_mean = (m0 / p0 + binned.value[big] / binned.error[big] ** 2) / super_precision
    np.testing.assert_allclose(super_precision, raw_precision, rtol=1e-12)
    np.testing.assert_allclose(super_mean, raw_mean, rtol=1e-12)


def test_binning_reports_how_many_rows_became_how_many(rng):
    grid = basin()
    obs = observations(rng, grid)
    land = Observations(time=[0.0], x=[3.5 * DX], y=[2.5 * DX], value=[1.0], error=[0.1],
                        platform="argo", coords="cartesian")
    both = Observations(time=np.r_[obs.time, land.time], x=np.r_[obs.x, land.x],
                        y=np.r_[obs.y, land.y], value=np.r_[obs.value, land.value],
                        error=np.r_[obs.error, land.error],
                        platform=np.r_[obs.platform, land.platform], coords="cartesian")
    with pytest.raises(ObservationError, match="on land"):
        both.bin(grid, TIMES)
    with pytest.warns(ObservationWarning, match="on land"):
        result = both.bin(grid, TIMES, drop_invalid=True)
    n_super = len(groupby_reference(obs))
    assert result.report == BinningReport(len(obs) + 1, 1, n_super)
    assert str(result.report).startswith(f"binned {len(obs)} observations into {n_super} "
                                         "super-observations")


def test_too_many_padded_rows_say_to_bin(rng):
    grid = basin()
    prepared = observations(rng, grid).prepare(grid, TIMES)
    counts = np.bincount(prepared.time_index)
    assert prepared.padded(max_rows=4 * counts.max()).values.shape == (4, counts.max())
    with pytest.raises(ObservationError, match="binning: cell") as info:
        prepared.padded(max_rows=4 * counts.max() - 1)
    assert f"4 times x {counts.max()} rows" in str(info.value)


CONFIG = """\
title: binned basin
tracer: {name: temp, units: degC}
grid: {x: [0, 160 km], y: [0, 120 km], resolution: 20 km}
times: {start: 1970-01-01, end: 1970-01-04, step: 1 day}
observations:
  - file: obs.csv
    columns: {platform: platform}
    binning: BINNING
model: {n_modes: 8}
"""


@pytest.mark.parametrize("binning", ["none", "cell", None])
def test_config_binning_key_is_read_and_passed_through(tmp_path, rng, binning):
    grid = Grid.cartesian(x=(0.0, 8 * DX), y=(0.0, 6 * DX), resolution=DX)
    obs = observations(rng, grid, n=200)
    df = obs.to_dataframe()
    df["time"] = pd.Timestamp("1970-01-01") + pd.to_timedelta(df["time"], "s")
    df.to_csv(tmp_path / "obs.csv", index=False)
    text = CONFIG.replace("BINNING", str(binning))
    if binning is None:
        text = text.replace("    binning: None\n", "")
    (tmp_path / "run.yaml").write_text(textwrap.dedent(text))
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.observations[0].binning == (binning or "none")
    if binning != "cell":
        assert len(build_observations(cfg)) == len(obs)
        return
    with pytest.warns(ObservationWarning, match=r"observations\[0\] \(obs.csv\): binned 200"):
        binned = build_observations(cfg)
    raw = Observations.from_csv(tmp_path / "obs.csv", x="x", y="y", platform="platform")
    expected = raw.bin(build_grid(cfg), build_times(cfg)).observations
    assert len(binned) == len(expected) < len(obs)
    np.testing.assert_array_equal(binned.time, expected.time)
    np.testing.assert_allclose(binned.value, expected.value, rtol=1e-12)
    np.testing.assert_allclose(binned.error, expected.error, rtol=1e-12)


def test_the_binning_report_gives_counts_in_words():
    from tracerbayes.observations.binning import BinningReport

    assert str(BinningReport(1_000_000, 0, 250)).endswith("; 4,000 observations each)")
    assert str(BinningReport(30, 3, 18)).endswith("; 1.5 observations each) (3 unusable rows "
                                                  "left out)")
