"""Observations: container checks, readers, bilinear operator, time assignment, padding."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import tracerbayes as tb
from tracerbayes.observations.core import (
    ObservationError,
    Observations,
    ObservationWarning,
)

ATOL = 1e-12


def _obs(x, y, value=None, *, time=None, error=1.0, **kwargs):
    x = np.asarray(x, dtype=float)
    value = np.zeros(x.size) if value is None else value
    time = np.zeros(x.size) if time is None else time
    return Observations(time=time, x=x, y=y, value=value, error=error, **kwargs)


def _uniform(rng, lo, hi, n):
    return rng.uniform(lo, hi, n)


def _linear_state(grid, a, b, c, lon_of=lambda lon: lon):
    X, Y = np.meshgrid(lon_of(grid.x), grid.y)
    return grid.to_state(a + b * X + c * Y)


# ---------------------------------------------------------------------- interpolation
GRIDS = {
    "lonlat": lambda: tb.Grid.regular(lon=(-10, 10), lat=(30, 50), resolution=1.0),
    "cartesian": lambda: tb.Grid.cartesian(x=(0, 1e5), y=(0, 1e5), resolution=1e4),
    "nonuniform": lambda: tb.Grid.from_coords(
        np.cumsum(np.linspace(0.5, 1.5, 12)), 30 + np.cumsum(np.linspace(1.0, 0.3, 9))
    ),
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_linear_field_is_interpolated_exactly(rng, name):
    grid = GRIDS[name]()
    scale = 1e-4 if name == "cartesian" else 1.0  # field of order one in both units
    state = _linear_state(grid, 2.0, 0.3 * scale, -0.7 * scale)
    n = 300
    x = _uniform(rng, grid.x[0], grid.x[-1], n)
    y = _uniform(rng, grid.y[0], grid.y[-1], n)
    obs = _obs(x, y, coords=grid.coords)
    H = obs.operator(grid)
    expected = 2.0 + 0.3 * scale * x - 0.7 * scale * y
    np.testing.assert_allclose(H.apply(state), expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(H.weights.sum(-1), 1.0, rtol=0, atol=ATOL)
    assert H.indices.shape == (n, 4) and H.weights.shape == (n, 4)
    np.testing.assert_array_equal(H.rows, np.arange(n))


def test_periodic_grid_across_the_dateline(rng):
    grid = tb.Grid.regular(lon=(-180, 180), lat=(-60, 60), resolution=2.0, periodic=True)
    # A field linear in longitude measured eastwards from 0..360: smooth across 180.
    state = _linear_state(grid, 1.0, 0.01, 0.02, lon_of=lambda lon: np.mod(lon, 360.0))
    lon360 = _uniform(rng, 170.0, 190.0, 200)
    lat = _uniform(rng, grid.y[0], grid.y[-1], 200)
    given = np.where(rng.random(200) < 0.5, lon360, ((lon360 + 180) % 360) - 180)
    H = _obs(given, lat).operator(grid)
    np.testing.assert_allclose(H.apply(state), 1.0 + 0.01 * lon360 + 0.02 * lat, atol=ATOL)
    across = (lon360 > 179) & (lon360 < 181)  # between the centres at 179 and -179
    assert across.any()
    nx = grid.x.size  # all water: state index = row * nx + column
    assert set(np.unique(H.indices[across] % nx)) == {0, nx - 1}
    np.testing.assert_allclose(H.weights.sum(-1), 1.0, atol=ATOL)


def test_longitudes_are_taken_modulo_360_on_a_regional_grid(rng):
    grid = tb.Grid.regular(lon=(160, 200), lat=(-10, 10), resolution=1.0)
    state = _linear_state(grid, 0.5, 0.1, 0.2)
    lon = _uniform(rng, grid.x[0], grid.x[-1], 100)
    lat = _uniform(rng, grid.y[0], grid.y[-1], 100)
    given = ((lon + 180) % 360) - 180  # e.g. 185 given as -175
    H = _obs(given, lat).operator(grid)
    np.testing.assert_allclose(H.apply(state), 0.5 + 0.1 * lon + 0.2 * lat, atol=1e-11)


def test_sparse_dense_bcoo_and_apply_agree(rng):
    grid = tb.Grid.regular(lon=(-10, 10), lat=(30, 50), resolution=2.0)
    obs = _obs(_uniform(rng, -10, 10, 50), _uniform(rng, 30, 50, 50))
    H = obs.operator(grid)
    states = rng.normal(size=(3, grid.n_wet))
    dense = H.to_dense()
    assert dense.shape == (50, grid.n_wet) == H.shape
    np.testing.assert_allclose(H.to_sparse() @ states[0], H.apply(states[0]), atol=ATOL)
    np.testing.assert_allclose(states @ dense.T, H.apply(states), atol=ATOL)
    np.testing.assert_allclose(np.asarray(H.to_bcoo().todense()), dense, atol=ATOL)
    np.testing.assert_allclose(np.asarray(H.apply(jnp.asarray(states))), states @ dense.T,
                               atol=ATOL)
    np.testing.assert_allclose(np.asarray(jax.jit(H.apply)(states[0])), dense @ states[0],
                               atol=ATOL)
    np.testing.assert_allclose(dense.sum(1), 1.0, atol=ATOL)


def test_edges_clamp_to_the_outermost_centres():
    grid = tb.Grid.regular(lon=(0, 4), lat=(0, 4), resolution=1.0)
    state = _linear_state(grid, 0.0, 1.0, 10.0)
    H = _obs([0.0, 4.0, 0.2, 2.0], [0.0, 4.0, 2.0, 3.9]).operator(grid)
    np.testing.assert_allclose(H.apply(state), [5.5, 38.5, 20.5, 37.0], atol=ATOL)


def test_constant_field_is_exact_near_a_coast(rng):
    mask = np.ones((20, 20), dtype=bool)
    mask[:, :8] = False  # a western continent
    mask[10:13, 14:16] = False  # an island
    grid = tb.Grid.regular(lon=(-10, 10), lat=(30, 50), resolution=1.0, mask=mask)
    x = _uniform(rng, -2.0, 10.0, 2000)
    y = _uniform(rng, 30.0, 50.0, 2000)
    obs = _obs(x, y, drop_invalid=False)
    with pytest.warns(ObservationWarning, match="on land"):
        H = obs.operator(grid, drop_invalid=True)
    np.testing.assert_allclose(H.apply(np.full(grid.n_wet, 3.7)), 3.7, rtol=0, atol=ATOL)
    np.testing.assert_allclose(H.weights.sum(-1), 1.0, atol=ATOL)
    assert ((H.weights > 0).sum(-1) < 4).sum() > 50  # some rows lost a land corner
    dense = H.to_dense()
    assert np.all(dense >= 0) and dense.shape == (H.rows.size, grid.n_wet)
    # Kept rows are exactly those whose cell is wet.
    i = np.floor(obs.x + 10).astype(int)
    j = np.floor(obs.y - 30).astype(int)
    np.testing.assert_array_equal(H.rows, np.flatnonzero(mask[j, i]))


# ---------------------------------------------------------------------- bad input
def _frame(n=30):
    return pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=n, freq="6h"),
        "lon": np.linspace(-9, 9, n),
        "lat": np.linspace(31, 49, n),
        "value": np.linspace(10, 20, n),
        "error": np.full(n, 0.5),
    })


def _set(column, rows, values):
    def edit(df):
        df.loc[rows, column] = values
        return df
    return edit


BAD_VALUES = {
    "nan value": (_set("value", [3, 7], np.nan),
                  r"2 observations have a non-finite value \(NaN or inf\) \(rows 3, 7: nan, nan\)"),
    "inf value": (_set("value", [5], np.inf),
                  r"1 observation has a non-finite value \(NaN or inf\) \(row 5: inf\)"),
    "nan position": (_set("lat", [2, 9, 11], np.nan),
                     r"3 observations have a non-finite position \(rows 2, 9, 11: \(lon, lat\)"),
    "non-positive error": (_set("error", [4, 17, 20], [-0.1, 0.0, 0.0]),
                           r"3 observations have non-positive error \(rows 4, 17, 20: -0\.1, "
                           r"0, 0\); errors are standard deviations and must be > 0"),
    "nan error": (_set("error", [1], np.nan), r"1 observation has a non-finite error"),
    "missing time": (_set("time", [6, 8], pd.NaT),
                     r"2 observations have a missing or unparseable time \(rows 6, 8: NaT"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_raise_with_count(case):
    edit, pattern = BAD_VALUES[case]
    with pytest.raises(ObservationError, match=pattern):
        Observations.from_dataframe(edit(_frame()))


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_dropped_with_warning(case):
    edit, pattern = BAD_VALUES[case]
    df = edit(_frame())
    bad = df.isna().any(axis=1) | ~np.isfinite(df["value"]) | (df["error"] <= 0)
    with pytest.warns(ObservationWarning, match=rf"dropped {bad.sum()} of 30 .*{pattern}"):
        obs = Observations.from_dataframe(df, drop_invalid=True)
    assert len(obs) == 30 - bad.sum()
    np.testing.assert_array_equal(obs.value, df["value"].to_numpy()[~bad])


def test_many_offenders_show_the_first_five_only():
    err = np.full(12, -1.0)
    pattern = r"12 observations have non-positive error \(rows 0, 1, 2, 3, 4, \.\.\.: -1, "
    with pytest.raises(ObservationError, match=pattern):
        _obs(np.zeros(12), np.zeros(12), error=err)


def test_several_problems_are_reported_together():
    df = _set("value", [1], np.nan)(_set("error", [2], 0.0)(_frame()))
    with pytest.raises(ObservationError, match=r"1 observation has a non-finite value.*; "
                                               r"1 observation has non-positive error"):
        Observations.from_dataframe(df)


def test_mismatched_lengths_raise():
    with pytest.raises(ObservationError, match=r"value has shape \(3,\) but time has 4"):
        Observations(time=np.zeros(4), x=np.zeros(4), y=np.zeros(4), value=np.zeros(3),
                     error=1.0)


def _coast_grid():
    mask = np.ones((20, 20), dtype=bool)
    mask[:, :5] = False  # land west of -5
    return tb.Grid.regular(lon=(-10, 10), lat=(30, 50), resolution=1.0, mask=mask)


def test_on_land_raises_and_drops():
    obs = _obs([-7.5, 0.0, -5.2, 3.0], [40.0, 40.0, 35.0, 45.0])
    with pytest.raises(ObservationError, match=r"2 observations are on land \(rows 0, 2: "
                                               r"\(lon, lat\) = \(-7\.5, 40\), \(-5\.2, 35\)\)"):
        obs.operator(_coast_grid())
    with pytest.warns(ObservationWarning, match=r"dropped 2 of 4 .*2 observations are on land"):
        H = obs.operator(_coast_grid(), drop_invalid=True)
    np.testing.assert_array_equal(H.rows, [1, 3])


def test_outside_the_grid_raises_and_drops():
    obs = _obs([0.0, 12.0, 0.0, -10.0, 10.0], [40.0, 40.0, 51.0, 30.0, 50.0])
    pattern = (r"2 observations are outside the grid \(rows 1, 2: \(lon, lat\) = \(12, 40\), "
               r"\(0, 51\)\); the grid covers lon \[-10, 10\], lat \[30, 50\]")
    with pytest.raises(ObservationError, match=pattern):
        obs.operator(_coast_grid())
    grid = tb.Grid.regular(lon=(-10, 10), lat=(30, 50), resolution=1.0)
    with pytest.warns(ObservationWarning, match="dropped 2 of 5"):
        H = obs.operator(grid, drop_invalid=True)
    np.testing.assert_array_equal(H.rows, [0, 3, 4])  # the edges themselves are inside


def test_cartesian_positions_on_a_lonlat_grid_raise():
    obs = Observations.from_dataframe(_frame().rename(columns={"lon": "x", "lat": "y"}),
                                      x="x", y="y")
    with pytest.raises(ObservationError, match="cartesian positions but the grid is lonlat"):
        obs.operator(_coast_grid())


def test_missing_column_names_it_and_lists_the_available_ones():
    with pytest.raises(ObservationError, match=r"column 'temp' not found; "
                                               r"available columns: \['time', 'lon'"):
        Observations.from_dataframe(_frame(), value="temp")


def test_missing_variable_in_a_dataset():
    ds = Observations.from_dataframe(_frame()).to_xarray()
    with pytest.raises(ObservationError, match=r"variable 'sst' not found"):
        Observations.from_xarray(ds, value="sst")


# ---------------------------------------------------------------------- time assignment
DAYS = pd.date_range("2024-01-01", periods=5, freq="D").to_numpy()


def test_nearest_analysis_time():
    offsets = pd.to_timedelta(["-11h", "0h", "11h", "13h", "36h", "4D", "4D 11h"])
    t = (np.datetime64("2024-01-01") + offsets).to_numpy()
    obs = _obs(np.zeros(7), np.zeros(7), time=t)
    np.testing.assert_array_equal(obs.assign_times(DAYS), [0, 0, 0, 1, 1, 4, 4])
    # Float seconds work the same way; a tie goes to the earlier time.
    secs = _obs(np.zeros(4), np.zeros(4), time=[0.0, 5.0, 14.9, 35.0])
    np.testing.assert_array_equal(secs.assign_times([0.0, 10.0, 20.0, 30.0]), [0, 0, 1, 3])


def test_outside_the_time_window_raises_and_drops():
    t = np.datetime64("2024-01-01") + pd.to_timedelta(["-13h", "1D", "4D 12h", "4D 13h"])
    obs = _obs(np.zeros(4), np.zeros(4), time=t.to_numpy())
    pattern = (r"2 observations are outside the time window \(rows 0, 3: 2023-12-31 11:00:00, "
               r"2024-01-05 13:00:00\); the window is \[2023-12-31 12:00:00, 2024-01-05 12:00:00\]")
    with pytest.raises(ObservationError, match=pattern):
        obs.assign_times(DAYS)
    with pytest.warns(ObservationWarning, match="dropped 2 of 4"):
        index = obs.assign_times(DAYS, drop_invalid=True)
    np.testing.assert_array_equal(index, [-1, 1, 4, -1])
    window = (np.datetime64("2024-01-01"), np.datetime64("2024-01-03"))
    with pytest.raises(ObservationError, match=r"3 observations are outside the time window"):
        obs.assign_times(DAYS, window=window)


@pytest.mark.parametrize(
    ("times", "pattern"),
    [
        (DAYS[[0, 1, 1, 2]], r"1 consecutive pair is duplicate at positions 1->2 \(2024-01-02"),
        (DAYS[[0, 2, 1, 3, 4, 3]], r"2 consecutive pairs are out of order at positions 1->2 "
                                   r"\(2024-01-03 00:00:00 -> 2024-01-02 00:00:00\), 4->5"),
    ],
)
def test_bad_analysis_times_raise(times, pattern):
    obs = _obs([0.0], [0.0], time=DAYS[:1])
    with pytest.raises(ObservationError, match=r"analysis times must be strictly increasing: "
                                               + pattern):
        obs.assign_times(times)


def test_one_analysis_time_and_explicit_windows():
    obs = _obs(np.zeros(3), np.zeros(3), time=[-1e6, 0.0, 5e6])
    np.testing.assert_array_equal(obs.assign_times([10.0]), [0, 0, 0])  # no default window
    pattern = r"1 observation is outside the time window \(row 2: 5e\+06\); the window is \["
    with pytest.raises(ObservationError, match=pattern + r"-1e\+06, 1e\+06\]"):
        obs.assign_times([10.0], window=(-1e6, 1e6))
    with pytest.raises(ObservationError, match=r"window must be \(start, end\) with start < end"):
        obs.assign_times([10.0], window=(1.0, 0.0))


def test_numbers_and_datetimes_do_not_mix():
    obs = _obs([0.0], [0.0], time=[3.0])
    with pytest.raises(ObservationError, match="numbers .* but the analysis times are datetimes"):
        obs.assign_times(DAYS)


# ---------------------------------------------------------------------- prepare, padding
def test_prepare_and_padded_reproduce_the_flat_arrays(rng):
    grid = _coast_grid()
    n = 60
    t = DAYS[0] + (rng.uniform(-0.4, 4.4, n) * 86400e9).astype("timedelta64[ns]")
    x = _uniform(rng, -6.0, 9.0, n)
    y = _uniform(rng, 30.0, 50.0, n)
    obs = _obs(x, y, rng.normal(size=n), time=t, error=rng.uniform(0.1, 1, n),
               platform=rng.choice(["argo", "ship"], n))
    with pytest.warns(ObservationWarning, match="on land"):
        prep = obs.prepare(grid, DAYS, drop_invalid=True)
    assert prep.rows.size == (x >= -5).sum()
    np.testing.assert_array_equal(prep.time_index, obs.assign_times(DAYS)[prep.rows])
    np.testing.assert_array_equal(prep.value, obs.value[prep.rows])
    np.testing.assert_array_equal(prep.platform, obs.platform[prep.rows])
    pad = prep.padded()
    T, m_max = pad.values.shape
    assert T == 5 and m_max == np.bincount(prep.time_index).max()
    state = rng.normal(size=grid.n_wet)
    flat_pred = prep.operator.apply(state)
    H = prep.dense_H()
    assert H.shape == (T, m_max, grid.n_wet)
    for k in range(T):
        sel = prep.time_index == k
        m = sel.sum()
        assert pad.valid[k].sum() == m and pad.valid[k, :m].all()
        np.testing.assert_array_equal(pad.rows[k, :m], prep.rows[sel])
        np.testing.assert_array_equal(pad.values[k, :m], prep.value[sel])
        np.testing.assert_array_equal(pad.variances[k, :m], prep.error[sel] ** 2)
        platforms = np.array(prep.platforms)[pad.platform_index[k, :m]]
        np.testing.assert_array_equal(platforms, prep.platform[sel])
        np.testing.assert_allclose(H[k, :m] @ state, flat_pred[sel], atol=ATOL)
        np.testing.assert_array_equal(pad.values[k, m:], 0.0)
        np.testing.assert_array_equal(pad.variances[k, m:], 1.0)
        np.testing.assert_array_equal(pad.weights[k, m:], 0.0)
        np.testing.assert_array_equal(H[k, m:], 0.0)
    gathered = (state[pad.indices] * pad.weights).sum(-1)
    np.testing.assert_allclose(gathered[pad.valid], flat_pred[np.argsort(prep.time_index,
                                                                         kind="stable")])


def test_prepare_reports_space_and_time_problems_at_once():
    obs = _obs([-7.5, 0.0], [40.0, 40.0], time=DAYS[[0, 0]] - np.timedelta64(2, "D"))
    with pytest.raises(ObservationError, match=r"1 observation is on land.*; "
                                               r"2 observations are outside the time window"):
        obs.prepare(_coast_grid(), DAYS)


# ---------------------------------------------------------------------- readers, container
def _assert_same(a, b):
    for name in ("time", "x", "y", "value", "error", "platform"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype.kind == getattr(b, name).dtype.kind, name
    assert a.coords is b.coords


@pytest.fixture
def frame(rng):
    n = 40
    t = np.datetime64("2024-03-01") + rng.integers(0, 10**15, n).astype("timedelta64[ns]")
    return pd.DataFrame({
        "when": t, "longitude": rng.uniform(-10, 10, n), "latitude": rng.uniform(30, 50, n),
        "temp": rng.normal(15, 2, n), "temp_err": rng.uniform(0.1, 1, n),
        "platform": rng.choice(["argo", "glider", "ship"], n),
    })


NAMES = dict(time="when", lon="longitude", lat="latitude", value="temp", error="temp_err",
             platform="platform")


def test_round_trips_through_csv_xarray_and_netcdf(frame, tmp_path):
    obs = Observations.from_dataframe(frame, **NAMES)
    assert obs.time.dtype == np.dtype("datetime64[ns]") and obs.time_units == "datetime64[ns]"
    np.testing.assert_array_equal(obs.value, frame["temp"].to_numpy())
    frame.to_csv(tmp_path / "obs.csv", index=False)
    _assert_same(Observations.from_csv(tmp_path / "obs.csv", **NAMES), obs)
    ds = xr.Dataset({name: ("obs", frame[name].to_numpy()) for name in frame.columns})
    _assert_same(Observations.from_xarray(ds, **NAMES), obs)
    ds.to_netcdf(tmp_path / "obs.nc")
    _assert_same(Observations.from_netcdf(tmp_path / "obs.nc", **NAMES), obs)
    _assert_same(Observations.from_dataframe(obs.to_dataframe(), platform="platform"), obs)
    _assert_same(Observations.from_xarray(obs.to_xarray(), platform="platform"), obs)


def test_numeric_times_cartesian_positions_and_a_constant_error(tmp_path):
    df = pd.DataFrame({"t": [0.0, 3600.0, 7200.0], "x": [1e3, 2e4, 5e4],
                       "y": [5e4, 1e3, 9e4], "c": [1.0, 2.0, 3.0]})
    obs = Observations.from_dataframe(df, time="t", x="x", y="y", value="c", error=0.2)
    assert obs.time.dtype == float and obs.time_units == "s"
    assert obs.coords is tb.CoordinateSystem.CARTESIAN
    np.testing.assert_array_equal(obs.error, 0.2)
    assert obs.platforms == ("obs",)
    df.to_csv(tmp_path / "o.csv", index=False)
    _assert_same(Observations.from_csv(tmp_path / "o.csv", time="t", x="x", y="y", value="c",
                                       error=0.2), obs)
    grid = tb.Grid.cartesian(x=(0, 1e5), y=(0, 1e5), resolution=1e4)
    np.testing.assert_array_equal(obs.prepare(grid, [0.0, 7200.0]).time_index, [0, 0, 1])


def test_string_times_with_time_zones_become_naive_utc():
    df = pd.DataFrame({"time": ["2024-01-01T12:00:00+02:00", "2024-01-02 00:00"],
                       "lon": [0.0, 1.0], "lat": [40.0, 41.0], "value": [1.0, 2.0]})
    obs = Observations.from_dataframe(df, error=1.0)
    np.testing.assert_array_equal(obs.time, np.array(["2024-01-01T10:00", "2024-01-02T00:00"],
                                                     dtype="datetime64[ns]"))


def test_unparseable_times_are_reported():
    df = pd.DataFrame({"time": ["2024-01-01", "yesterday", "2024-01-03"], "lon": [0.0] * 3,
                       "lat": [40.0] * 3, "value": [1.0] * 3})
    with pytest.raises(ObservationError, match=r"1 observation has a missing or unparseable "
                                               r"time \(row 1: NaT\)"):
        Observations.from_dataframe(df, error=1.0)


def test_multidimensional_variables_are_refused():
    ds = xr.Dataset({"time": ("obs", DAYS), "lon": ("obs", np.zeros(5)),
                     "lat": ("obs", np.zeros(5)), "value": (("obs", "z"), np.zeros((5, 2))),
                     "error": ("obs", np.ones(5))})
    with pytest.raises(ObservationError, match="1-D along one common dimension"):
        Observations.from_xarray(ds)


def test_container_helpers(frame):
    obs = Observations.from_dataframe(frame, **NAMES)
    assert len(obs) == 40
    assert obs.platforms == tuple(sorted(set(frame["platform"])))
    sub = obs.select(obs.platform == "argo")
    assert len(sub) == (frame["platform"] == "argo").sum() and sub.platforms == ("argo",)
    _assert_same(obs.select(np.array([5, 1])), obs.select(np.isin(np.arange(40), [1, 5])))
    text = repr(obs)
    assert text.startswith("Observations(n=40, time=[") and "platforms=['argo'" in text
    assert re.search(r"lon=\[-?\d", text)
    with pytest.raises(AttributeError, match="cannot assign"):
        obs.value = obs.value  # frozen


def test_observed_cells_are_the_interpolation_stencils(rng):
    """On an all-water grid, interior points use 4 cells with positive weights: the cells
    marked observed at each time are exactly those where a row of H is non-zero."""
    grid = tb.Grid.regular(lon=(0, 6), lat=(0, 5), resolution=1.0)
    n = 12
    times = np.array([0.0, 86400.0, 172800.0])
    obs = _obs(rng.uniform(0.6, 5.4, n), rng.uniform(0.6, 4.4, n),
               time=rng.choice(times, n))
    prepared = obs.prepare(grid, times)
    H = prepared.dense_H(grid.n_wet)  # (T, m, n_wet)
    expected = np.stack([grid.to_field((np.abs(H[k]).sum(axis=0) > 0).astype(float)) > 0.5
                         for k in range(len(times))])
    np.testing.assert_array_equal(prepared.observed_cells(grid), expected)


def test_units_are_carried_from_the_reader_to_every_derived_set(tmp_path):
    """The units of the values: given to from_dataframe, or the value variable's attribute of
    a NetCDF file, kept by select, shifted, bin and to_xarray."""
    frame = pd.DataFrame({"time": [0.0, 0.0, 86400.0], "x": [5e3, 6e3, 15e3],
                          "y": [5e3, 5e3, 15e3], "value": [280.0, 281.0, 282.0], "error": 0.5})
    obs = Observations.from_dataframe(frame, x="x", y="y", units="K")
    assert obs.units == "K" and Observations.from_dataframe(frame, x="x", y="y").units is None
    assert obs.select([0, 2]).units == obs.shifted(-273.15).units == "K"
    grid = tb.Grid.cartesian(x=(0, 2e4), y=(0, 2e4), resolution=1e4)
    binned = obs.bin(grid, np.array([0.0, 86400.0])).observations
    assert binned.units == "K" and len(binned) == 2
    ds = obs.to_xarray()
    assert ds["value"].attrs["units"] == ds["error"].attrs["units"] == "K"
    ds.to_netcdf(tmp_path / "obs.nc")
    back = Observations.from_netcdf(tmp_path / "obs.nc", x="x", y="y")
    assert back.units == "K" and np.array_equal(back.value, obs.value)
    assert Observations.from_netcdf(tmp_path / "obs.nc", x="x", y="y", units="kelvin").units \
        == "kelvin"
