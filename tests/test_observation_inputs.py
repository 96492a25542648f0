"""Bad observation inputs: each is refused with what is wrong, where, and how to fix it.

Text in numeric columns, files or tables without rows, exact duplicate rows (and their
``duplicates`` options), positions in km or degrees on a grid in metres, and arguments that
are not a DataFrame or name a column twice; and random tables, which must give
:class:`Observations` or an :class:`ObservationError`, never another exception.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import tracerbayes as tb
from tracerbayes.cli.config import build_observations, load_config, validate_config
from tracerbayes.observations.core import (
    ObservationError,
    Observations,
    ObservationWarning,
)


def _frame(n=30):
    """Clean observations on the lon/lat box [-10, 10] x [30, 50], hourly, 2024-01-01."""
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=n, freq="h"),
        "lon": rng.uniform(-9, 9, n).round(4), "lat": rng.uniform(31, 49, n).round(4),
        "value": rng.normal(15, 2, n).round(3), "error": rng.uniform(0.1, 1, n).round(3),
        "platform": rng.choice(["argo", "glider"], n),
    })


def _with_text(df, column, rows, texts):
    df = df.copy()
    df[column] = df[column].astype(object)
    df.loc[rows, column] = texts
    return df


# ---------------------------------------------------------------------- 1. text in numbers
def test_text_in_a_numeric_column_is_quoted_with_its_row_and_line(tmp_path):
    _with_text(_frame(), "value", [17], ["12.3C"]).to_csv(tmp_path / "obs.csv", index=False)
    with pytest.raises(ObservationError) as info:
        Observations.from_csv(tmp_path / "obs.csv", platform="platform")
    message = str(info.value)
    assert message.startswith(
        "column 'value', row 17 (line 19 of obs.csv): '12.3C' is not a number (a unit "
        "suffix? give units in the config, numbers in the file)")
    assert "non-finite" not in message  # not reported a second time as NaN
    assert (tmp_path / "obs.csv").read_text().splitlines()[18].split(",")[3] == "12.3C"


def test_many_texts_show_the_first_five_and_count_the_rest():
    rows = [2, 4, 6, 8, 10, 12, 14]
    df = _with_text(_frame(), "lat", rows, ["abc", "41.5 N", "x", "y", "z", "w", "v"])
    with pytest.raises(ObservationError, match=re.escape(
            "column 'lat' has 7 entries that are not numbers (row 2: 'abc'; row 4: '41.5 N'; "
            "row 6: 'x'; row 8: 'y'; row 10: 'z'; and 2 more) (a unit suffix? positions are "
            "plain numbers, degrees)")):
        Observations.from_dataframe(df)


def test_text_rows_are_dropped_with_a_warning_that_quotes_them():
    df = _with_text(_frame(), "error", [3, 5], ["0,5", "n/a"])
    with pytest.warns(ObservationWarning, match=re.escape(
            "dropped 2 of 30 observations: column 'error' has 2 entries that are not numbers "
            "(row 3: '0,5'; row 5: 'n/a') (a decimal comma?")):
        obs = Observations.from_dataframe(df, drop_invalid=True)
    np.testing.assert_array_equal(obs.value, df["value"].drop(index=[3, 5]).to_numpy())


def test_lines_of_a_csv_count_blank_lines_and_quoted_line_breaks(tmp_path):
    lines = ["time,lon,lat,value,error,platform",
             "2024-01-01,0,40,1.0,0.5,argo",
             "",
             '2024-01-02,1,41,2.0,0.5,"ship',
             'with a newline"',
             "   ",
             "2024-01-03,2,42,3.0 degC,0.5,argo"]
    (tmp_path / "obs.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ObservationError, match=re.escape(
            "column 'value', row 2 (line 7 of obs.csv): '3.0 degC' is not a number")):
        Observations.from_csv(tmp_path / "obs.csv", platform="platform")


def test_numeric_times_with_a_stray_word_are_seconds_not_years():
    df = pd.DataFrame({"t": ["3600", "7200", "soon", "10800", "14400"], "x": [1e3] * 5,
                       "y": [2e3, 3e3, 4e3, 5e3, 6e3], "value": [1.0] * 5})
    with pytest.raises(ObservationError, match=re.escape(
            "column 't', row 2: 'soon' is not a number")):
        Observations.from_dataframe(df, time="t", x="x", y="y", error=1.0)
    obs = Observations.from_dataframe(df.drop(index=2), time="t", x="x", y="y", error=1.0)
    np.testing.assert_array_equal(obs.time, [3600.0, 7200.0, 10800.0, 14400.0])


def test_true_false_and_dates_are_not_numbers():
    df = _with_text(_frame(), "value", [1], [True])
    with pytest.raises(ObservationError, match=r"column 'value', row 1: True is not a number"):
        Observations.from_dataframe(df)
    df = _frame().assign(value=pd.date_range("2024-01-01", periods=30))
    with pytest.raises(ObservationError, match=r"column 'value' has 30 entries that are not "):
        Observations.from_dataframe(df)


# ---------------------------------------------------------------------- 2. no rows
def test_a_csv_with_a_header_and_no_rows_is_refused_when_read(tmp_path):
    _frame().iloc[:0].to_csv(tmp_path / "obs.csv", index=False)
    with pytest.raises(ObservationError, match=r"^obs\.csv has a header but no observations"):
        Observations.from_csv(tmp_path / "obs.csv")
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(ObservationError, match=r"^blank\.csv is empty: it has no header line"):
        Observations.from_csv(tmp_path / "blank.csv")


CONFIG = """\
tracer: {name: temp, units: degC}
grid: {x: [0, 120 km], y: [0, 100 km], resolution: 10 km}
times: {start: 2020-01-01, end: 2020-01-05, step: 1 day}
observations:
  - file: obs.csv
    error: 0.2
"""


def test_validate_reports_a_header_only_file(tmp_path):
    (tmp_path / "obs.csv").write_text("time,x,y,value\n")
    (tmp_path / "run.yaml").write_text(CONFIG)
    (problem,) = validate_config(tmp_path / "run.yaml")
    assert problem.path == "observations[0]"
    assert "obs.csv has a header but no observations" in problem.message


def test_all_rows_dropped_is_an_error():
    df = _frame().assign(value=np.nan)
    with pytest.warns(ObservationWarning, match="dropped 30 of 30"), pytest.raises(
            ObservationError, match=r"the table has no usable observations: all 30 rows were "
                                    r"dropped \(30 observations have a non-finite value"):
        Observations.from_dataframe(df, drop_invalid=True)


def test_a_netcdf_file_without_observations(tmp_path):
    ds = Observations.from_dataframe(_frame()).to_xarray().isel(obs=slice(0, 0))
    ds.to_netcdf(tmp_path / "obs.nc")
    with pytest.raises(ObservationError, match=r"^obs\.nc has no observations"):
        Observations.from_netcdf(tmp_path / "obs.nc")


# ---------------------------------------------------------------------- 3. duplicates
def _duplicated():
    df = _frame()
    return pd.concat([df, df.iloc[[3, 4]]], ignore_index=True)  # rows 30, 31 copy 3, 4


def test_exact_duplicates_are_refused_by_default_with_the_options(tmp_path):
    with pytest.raises(ObservationError) as info:
        Observations.from_dataframe(_duplicated(), platform="platform")
    message = str(info.value)
    assert message.startswith("4 rows of the table are exact copies of one another (same time, "
                              "position, value and platform: rows 3, 30; rows 4, 31)")
    assert "duplicates='average'" in message and "duplicates='keep'" in message
    _duplicated().to_csv(tmp_path / "obs.csv", index=False)
    with pytest.raises(ObservationError, match=re.escape(
            "rows 3, 30 (lines 5, 32 of obs.csv); rows 4, 31 (lines 6, 33 of obs.csv)")):
        Observations.from_csv(tmp_path / "obs.csv", platform="platform")


def test_duplicates_kept_with_a_warning():
    with pytest.warns(ObservationWarning, match=r"keeping 4 rows of the table are exact copies"
                                                r".* as independent observations"):
        obs = Observations.from_dataframe(_duplicated(), platform="platform", duplicates="keep")
    assert len(obs) == 32


def test_average_merges_rows_at_one_time_and_position():
    df = _frame(12)
    # Rows 12-15 repeat the time, position and platform of rows 2, 2, 2 and 7 with other
    # values and errors (repeat measurements); row 16 is another platform at row 7's place.
    extra = df.iloc[[2, 2, 2, 7, 7]].reset_index(drop=True)
    extra["value"] = [10.0, 11.0, 13.0, 20.0, 30.0]
    extra["error"] = [0.3, 0.4, 0.5, 0.6, 0.7]
    extra.loc[4, "platform"] = "ship"
    table = pd.concat([df, extra], ignore_index=True)
    with pytest.warns(ObservationWarning, match=re.escape(
            "averaged 6 rows of the table into 2 observations (rows at the same time, position "
            "and platform: rows 2, 12, 13, 14; rows 7, 15)")):
        obs = Observations.from_dataframe(table, platform="platform", duplicates="average")
    assert len(obs) == 12 + 1  # the other platform's row stays apart

    keys = ["time", "lon", "lat", "platform"]
    for _, group in table.groupby(keys, sort=False):  # direct computation, group by group
        k = len(group)
        first = group.iloc[0]
        at = np.flatnonzero((obs.time == first["time"].to_datetime64()) & (obs.x == first["lon"])
                            & (obs.y == first["lat"]) & (obs.platform == first["platform"]))
        assert at.size == 1
        assert obs.value[at[0]] == pytest.approx(sum(group["value"]) / k, rel=1e-15)
        assert obs.error[at[0]] == pytest.approx(np.sqrt(sum(group["error"] ** 2) / k / k),
                                                 rel=1e-15)
    # Rows keep the order of their first appearance.
    np.testing.assert_array_equal(obs.x[:12], df["lon"].to_numpy())


def test_unknown_duplicates_option():
    with pytest.raises(ObservationError, match=r"duplicates must be one of 'error', "
                                               r"'average', 'keep', got 'drop'"):
        Observations.from_dataframe(_frame(), duplicates="drop")


def test_duplicates_key_of_the_config(tmp_path):
    (tmp_path / "obs.csv").write_text("time,x,y,value\n2020-01-02,5000,5000,1.0\n"
                                      "2020-01-02,5000,5000,2.0\n2020-01-03,15000,5000,3.0\n")
    (tmp_path / "run.yaml").write_text(CONFIG + "    duplicates: average\n")
    with pytest.warns(ObservationWarning, match="averaged 2 rows of obs.csv into 1 observation"):
        obs = build_observations(load_config(tmp_path / "run.yaml"))
    np.testing.assert_allclose(obs.value, [1.5, 3.0], rtol=1e-15)
    np.testing.assert_allclose(obs.error, [0.2 / np.sqrt(2), 0.2], rtol=1e-15)
    (tmp_path / "run.yaml").write_text(CONFIG + "    duplicates: avg\n")
    (problem,) = validate_config(tmp_path / "run.yaml")
    assert problem.path == "observations[0].duplicates"
    assert "did you mean 'average'?" in problem.message
    (tmp_path / "obs.csv").write_text("time,x,y,value\n2020-01-02,5000,5000,1.0\n"
                                      "2020-01-02,5000,5000,1.0\n")
    (tmp_path / "run.yaml").write_text(CONFIG)
    (problem,) = validate_config(tmp_path / "run.yaml")
    assert "exact copies" in problem.message and "`duplicates: average`" in problem.message


# ---------------------------------------------------------------------- 4. km or degrees
BIG = tb.Grid.cartesian(x=(0, 2e6), y=(0, 2e6), resolution=5e4)


def _positions(x, y):
    x = np.asarray(x, dtype=float)
    return Observations(time=np.zeros(x.size), x=x, y=y, value=np.ones(x.size), error=1.0,
                        coords=tb.CoordinateSystem.CARTESIAN)


def test_positions_in_km_on_a_grid_in_metres_are_refused(rng):
    x, y = rng.uniform(50, 1950, 20), rng.uniform(50, 1950, 20)
    for check in (lambda o: o.prepare(BIG, [0.0]), lambda o: o.operator(BIG)):
        with pytest.raises(ObservationError, match=r"^x/y look like km on a grid in metres: "
                                                   r"all 20 observations lie within .* multiply "
                                                   r"x and y by 1000 to give metres"):
            check(_positions(x, y))
    assert _positions(1e3 * x, 1e3 * y).prepare(BIG, [0.0]).value.size == 20


def test_positions_in_degrees_on_a_grid_in_metres_are_refused(rng):
    grid = tb.Grid.cartesian(x=(-1e6, 1e6), y=(-1e6, 1e6), resolution=5e4)
    obs = _positions(rng.uniform(-10, 10, 8), rng.uniform(30, 50, 8))
    with pytest.raises(ObservationError, match=r"^x/y look like degrees \(longitude, latitude\) "
                                               r"on a grid in metres"):
        obs.operator(grid)


@pytest.mark.parametrize("case", ["cluster far from the origin", "one mooring near the origin",
                                  "four observations", "spread over the grid"])
def test_legitimate_clusters_are_accepted(rng, case):
    x, y = {
        "cluster far from the origin": (1e6 + rng.uniform(0, 900, 10),
                                        1e6 + rng.uniform(0, 900, 10)),
        "one mooring near the origin": (np.full(10, 700.0), np.full(10, 900.0)),
        "four observations": (rng.uniform(50, 1950, 4), rng.uniform(50, 1950, 4)),
        "spread over the grid": (rng.uniform(0, 2e6, 50), rng.uniform(0, 2e6, 50)),
    }[case]
    assert _positions(x, y).operator(BIG).rows.size == x.size


# ---------------------------------------------------------------------- 5. the argument
def test_a_dict_is_not_a_dataframe():
    with pytest.raises(TypeError, match=r"from_dataframe needs a pandas DataFrame, got dict; for "
                                        r"a dict of columns use .*pd\.DataFrame\(d\)"):
        Observations.from_dataframe(_frame().to_dict("list"))


def test_a_column_named_twice_is_refused(tmp_path):
    df = _frame().drop(columns="platform")
    df.columns = ["time", "lon", "lat", "value", "value"]
    with pytest.raises(ObservationError, match=re.escape(
            "the table names the same column more than once ('value' 2 times)")):
        Observations.from_dataframe(df, error=1.0)
    # pandas renames the second 'value' of a CSV header to 'value.1'; the reader does not.
    (tmp_path / "obs.csv").write_text("time,lon,lat,value,value\n2024-01-01,0,40,1,2\n")
    with pytest.raises(ObservationError, match=re.escape(
            "the header of obs.csv names the same column more than once ('value' 2 times)")):
        Observations.from_csv(tmp_path / "obs.csv", error=1.0)


def test_an_empty_dataframe_is_refused():
    with pytest.raises(ObservationError, match="the table has no rows: there are no observations"):
        Observations.from_dataframe(_frame().iloc[:0])


def test_a_dataset_without_observations_is_refused():
    ds = xr.Dataset({name: ("obs", np.zeros(0)) for name in ("time", "lon", "lat", "value")})
    with pytest.raises(ObservationError, match="the Dataset has no observations"):
        Observations.from_xarray(ds, error=1.0)


# ---------------------------------------------------------------------- random tables
_ENTRIES = [
    lambda rng: float(rng.normal(10, 5)), lambda rng: np.nan, lambda rng: "",
    lambda rng: None, lambda rng: "abc", lambda rng: f"{rng.normal(10, 5):.2f}",
    lambda rng: f"{rng.uniform(0, 30):.1f}C", lambda rng: int(rng.integers(-5, 50)),
    lambda rng: bool(rng.integers(2)), lambda rng: np.inf, lambda rng: "2024-01-02",
    lambda rng: 0.0,
]


def _dirty_column(rng, n):
    if rng.random() < 0.5:  # one kind of entry throughout
        entry = _ENTRIES[rng.integers(len(_ENTRIES))]
        return [entry(rng) for _ in range(n)]
    return [_ENTRIES[rng.integers(len(_ENTRIES))](rng) for _ in range(n)]


def _random_table(rng):
    """Clean columns, 0 to 2 of them replaced by random entries, sometimes doubled."""
    n = int(rng.integers(0, 8))
    columns = {
        "time": (rng.uniform(0, 1e6, n) if rng.random() < 0.5 else
                 [f"2024-01-{d:02d}T{h:02d}:00" for d, h in
                  zip(rng.integers(1, 29, n), rng.integers(0, 24, n), strict=True)]),
        "lon": rng.uniform(-10, 10, n), "lat": rng.uniform(30, 50, n),
        "value": rng.normal(15, 2, n), "error": rng.uniform(0.1, 1, n),
        "platform": rng.choice(["argo", "glider", ""], n),
    }
    for name in rng.choice(list(columns), int(rng.integers(0, 3)), replace=False):
        columns[str(name)] = _dirty_column(rng, n)
    df = pd.DataFrame(columns)
    return pd.concat([df, df], ignore_index=True) if rng.random() < 0.3 else df


@pytest.mark.parametrize("seed", range(200))
def test_random_tables_give_observations_or_an_observation_error(seed):
    rng = np.random.default_rng(seed)
    df = _random_table(rng)
    options = {"drop_invalid": bool(rng.integers(2)),
               "duplicates": ["error", "average", "keep"][rng.integers(3)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObservationWarning)
        try:
            obs = Observations.from_dataframe(df, platform="platform", **options)
        except ObservationError:
            return
    assert 1 <= len(obs) <= len(df)
    assert np.all(np.isfinite(obs.value)) and np.all(obs.error > 0)
    assert np.all(np.isfinite(obs.x)) and np.all(np.isfinite(obs.y))


def test_the_config_reference_documents_duplicates():
    reference = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert "| `duplicates` | one of 'error', 'average', 'keep' | 'error' |" in reference
