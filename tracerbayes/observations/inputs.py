"""Checks of observation tables before they become :class:`~tracerbayes.observations.Observations`.

* :func:`as_frame`, :func:`check_columns`, :func:`check_rows`: the table is a DataFrame with
  rows, and each column it uses is named once;
* :func:`numbers`, :class:`TextProblem`: numeric columns holding text (``12.3C``, ``abc``),
  reported with the text quoted instead of as a missing value;
* :func:`csv_places`, :func:`csv_header`: the line of a CSV file on which each row starts, and
  its header as written;
* :class:`Duplicates`, :func:`handle_duplicates`: rows that repeat others, refused, kept or
  merged by Eq. (1);
* :func:`unit_mismatch`: positions in kilometres or degrees on a grid in metres.

Merging ``k`` rows at one time, position and platform, with values ``v_i`` and error standard
deviations ``e_i`` (tracer units), gives one row with the mean and its standard error
(the unweighted mean of ``k`` independent measurements)::

    v = (1/k) sum_i v_i,        e = sqrt((1/k) sum_i e_i^2 / k)                     (1)
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import enum
import re
import warnings
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tracerbayes.observations.problems import (
    MAX_SHOWN,
    ObservationError,
    ObservationWarning,
    Places,
)

__all__ = [
    "Duplicates",
    "TextProblem",
    "as_frame",
    "as_time",
    "check_columns",
    "check_rows",
    "csv_header",
    "csv_places",
    "handle_duplicates",
    "numbers",
    "time_column",
    "unit_mismatch",
]


# ---------------------------------------------------------------------- the table
def as_frame(df: Any) -> pd.DataFrame:
    """``df`` itself if it is a DataFrame; a TypeError saying what to give otherwise."""
    if isinstance(df, pd.DataFrame):
        return df
    if isinstance(df, dict):
        hint = "; for a dict of columns use Observations.from_dataframe(pd.DataFrame(d))"
    else:
        hint = "; one row per observation, one column per field (time, position, value, ...)"
    raise TypeError(f"from_dataframe needs a pandas DataFrame, got {type(df).__name__}{hint}")


def check_names(wanted: dict[str, Any], available: list, kind: str,
                source: str | None = None) -> None:
    """Every wanted column (or variable) name is available, or an error listing them (and
    naming the file ``source`` they were looked for in)."""
    missing = [f"{name!r}" for name in wanted.values() if name not in available]
    if missing:
        where = f" in {source}" if source else ""
        raise ObservationError(
            f"{kind} {', '.join(missing)} not found{where}; available {kind}s: "
            f"{[str(c) for c in available]}"
        )


def check_columns(df: pd.DataFrame, wanted: dict[str, Any], places: Places,
                  header: list[str] | None = None) -> None:
    """The wanted columns exist, each once in ``df`` (or in the file's ``header``)."""
    names = list(df.columns) if header is None else header
    twice = sorted({str(name) for name in wanted.values() if names.count(name) > 1})
    if twice:
        where = f"the header of {places.source}" if header is not None else places.label
        counts = ", ".join(f"{name!r} {names.count(name)} times" for name in twice)
        raise ObservationError(
            f"{where} names the same column more than once ({counts}); which one holds the "
            "observations is ambiguous: rename or remove the extra columns"
        )
    check_names(wanted, list(df.columns), "column", places.source)


def check_rows(df: pd.DataFrame, places: Places) -> None:
    """At least one row, or an error (the message ``places.empty``)."""
    if len(df) == 0:
        raise ObservationError(places.empty)


# ---------------------------------------------------------------------- CSV files
def csv_places(path: str | PathLike) -> Places:
    """:class:`Places` naming ``path`` and finding the line of each row when asked."""
    name = Path(path).name
    return Places(name, lambda: _csv_lines(path),
                  empty=f"{name} has a header but no observations: add one row per "
                        "observation below the header line, or leave the file out")


def _records(path: str | PathLike):
    """``(first line, fields)`` of each non-blank record of a CSV file (as pandas skips
    blank and whitespace-only lines)."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        end = 0
        for fields in reader:
            start, end = end + 1, reader.line_num
            if fields and not (len(fields) == 1 and not fields[0].strip()):
                yield start, fields


def _csv_lines(path: str | PathLike) -> np.ndarray | None:
    """Line (1-based) on which each data row starts, or None if the file cannot tell."""
    try:
        starts = [start for start, _ in _records(path)]
    except (OSError, UnicodeError, csv.Error):
        return None
    return np.asarray(starts[1:], dtype=np.int64)  # the first record is the header


def csv_header(path: str | PathLike) -> list[str] | None:
    """The column names of a CSV file as written (pandas renames repeated ones), or None."""
    try:
        with contextlib.closing(_records(path)) as records:
            return next((fields for _, fields in records), None)
    except (OSError, UnicodeError, csv.Error):
        return None


# ---------------------------------------------------------------------- numeric columns
_UNIT_SUFFIX = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*[^\d\s.,:+-]")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
_MISSING_TEXT = {"", "nan", "+nan", "-nan"}
#: Kinds of object columns (pandas.api.types.infer_dtype) free of the entries below.
_PLAIN = {"string", "floating", "integer", "mixed-integer-float", "decimal", "empty"}
#: Entries that pandas may turn into numbers but are none.
_NOT_NUMBERS = (bool, np.bool_, datetime.date, datetime.timedelta, np.datetime64,
                np.timedelta64)

#: Kinds of object columns that hold only texts or dates.
_DATES = {"string", "datetime", "datetime64", "date", "empty"}
#: Per role: what a unit suffix should become.
_SUFFIX_HINTS = {
    "value": "give units in the config, numbers in the file",
    "error": "give units in the config, numbers in the file",
    "x": "positions are plain numbers, metres",
    "y": "positions are plain numbers, metres",
    "lon": "positions are plain numbers, degrees",
    "lat": "positions are plain numbers, degrees",
    "time": "numeric times are plain numbers of seconds",
}


def _is_missing(entry: Any) -> bool:
    if entry is None or entry is pd.NA or entry is pd.NaT:
        return True
    if isinstance(entry, float | np.floating):
        return bool(np.isnan(entry))
    if isinstance(entry, np.datetime64 | np.timedelta64):
        return bool(np.isnat(entry))
    return isinstance(entry, str) and entry.strip().lower() in _MISSING_TEXT


def _as_float(entry: Any) -> float:
    """A number, or a text of one, as a float; NaN for anything else."""
    if isinstance(entry, bool | np.bool_) or not isinstance(entry, int | float | np.number | str):
        return np.nan
    if isinstance(entry, str) and "_" in entry:  # float() takes 1_000; pandas does not
        return np.nan
    try:
        return float(entry)
    except (ValueError, TypeError, OverflowError):
        return np.nan


def numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A column as floats (NaN where missing or not a number), and where it holds
    something other than a number or a missing entry (text, true/false, dates)."""
    n = len(column)
    kind = column.dtype.kind
    if kind in "iuf":
        return column.to_numpy(dtype=float, na_value=np.nan), np.zeros(n, dtype=bool)
    raw = column.to_numpy(dtype=object)
    if kind in "bMmc":  # true/false, dates or complex numbers: not positions or values
        return np.full(n, np.nan), ~pd.isna(raw)
    try:
        values = np.array(pd.to_numeric(pd.Series(raw), errors="coerce"), dtype=float)
    except (TypeError, ValueError):
        values = np.fromiter((_as_float(v) for v in raw), dtype=float, count=n)
    if pd.api.types.infer_dtype(raw, skipna=True) not in _PLAIN:
        flags = np.fromiter((isinstance(v, _NOT_NUMBERS) for v in raw), dtype=bool, count=n)
        values[flags] = np.nan
    text = np.zeros(n, dtype=bool)
    unread = np.flatnonzero(np.isnan(values))  # missing, or not a number
    text[unread] = [not _is_missing(v) for v in raw[unread]]
    return values, text


class TextProblem(NamedTuple):
    """Entries of a numeric column that are not numbers, quoted in the message."""

    bad: np.ndarray  # (n,) bool: True on the offending rows
    column: Any  # the column's name
    role: str  # time, x, y, lon, lat, value or error
    raw: np.ndarray  # (n,) the column's entries as given

    def message(self, places: Places) -> str:
        rows = np.flatnonzero(self.bad)
        n, total = rows.size, self.bad.size
        quoted = [_quote(self.raw[r]) for r in rows[:MAX_SHOWN]]
        if n == 1:
            return (f"column {self.column!r}, {places.rows(rows, total)}: {quoted[0]} is not "
                    f"a number{self._hint(rows)}")
        listing = "; ".join(f"{places.row(r, total)}: {q}"
                            for r, q in zip(rows, quoted, strict=False))
        more = f"; and {n - MAX_SHOWN} more" if n > MAX_SHOWN else ""
        where = f" of {places.source}" if places.source else ""
        return (f"column {self.column!r}{where} has {n} entries that are not numbers "
                f"({listing}{more}){self._hint(rows)}")

    def _hint(self, rows: np.ndarray) -> str:
        texts = [str(v) for v in self.raw[rows] if isinstance(v, str)]
        hints = []
        if any(_UNIT_SUFFIX.match(t) for t in texts):
            hints.append(f"a unit suffix? {_SUFFIX_HINTS.get(self.role, 'write plain numbers')}")
        if any(_DECIMAL_COMMA.match(t) for t in texts):
            hints.append("a decimal comma? write numbers with a decimal point, such as 12.5")
        return f" ({'; '.join(hints)})" if hints else ""


def _quote(entry: Any) -> str:
    text = repr(entry)
    return text if len(text) <= 40 else text[:36] + " ..."


# ---------------------------------------------------------------------- times
def as_time(values: Any) -> np.ndarray:
    """Times as datetime64[ns] (naive UTC) or float seconds, whichever the input is."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]")
    if arr.dtype.kind in "iufb":
        return arr.astype(float)
    if arr.dtype.kind == "m":
        return arr.astype("timedelta64[ns]").astype(np.int64) / 1e9
    text = pd.Series(arr.ravel())
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    retry = parsed.isna() & text.notna()
    if retry.any():  # other layouts, element by element (slow, so only where needed)
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_convert(None).to_numpy("datetime64[ns]").reshape(arr.shape)


def time_column(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Times of a column, and its text entries when the times are numbers (seconds).

    A text column is read as dates unless its first entry is a number, or some entries are
    not dates and most are numbers (a numeric time column with a stray word): ``'3600'`` is
    3600 s, not the year 3600.
    """
    n = len(column)
    if column.dtype.kind in "iufMmb":
        return as_time(column.to_numpy()), np.zeros(n, dtype=bool)
    raw = column.to_numpy(dtype=object)
    present = ~pd.isna(raw)
    if not (present.any() and np.isfinite(_as_float(raw[present][0]))):
        dates = _dates(raw)
        if not (np.isnat(dates) & present).any():
            return dates, np.zeros(n, dtype=bool)
    values, text = numbers(column)
    if np.isfinite(values).sum() > text.sum():
        return values, text
    return _dates(raw), np.zeros(n, dtype=bool)


def _dates(raw: np.ndarray) -> np.ndarray:
    """Texts and dates parsed as datetime64[ns]; anything else is NaT."""
    if pd.api.types.infer_dtype(raw, skipna=True) not in _DATES:
        raw = np.array([v if isinstance(v, str | datetime.date | np.datetime64) else None
                        for v in raw], dtype=object)
    return as_time(raw)


# ---------------------------------------------------------------------- duplicates
class Duplicates(enum.Enum):
    """What to do with rows that repeat others.

    ``ERROR``: refuse exact copies (same time, position, value and platform); ``KEEP``: keep
    them as independent observations, with a warning; ``AVERAGE``: merge the rows with the
    same time, position and platform into one by Eq. (1), with a warning.
    """

    ERROR = "error"
    AVERAGE = "average"
    KEEP = "keep"

    @classmethod
    def of(cls, how: Duplicates | str) -> Duplicates:
        try:
            return cls(how)
        except ValueError:
            choices = ", ".join(repr(d.value) for d in cls)
            raise ObservationError(f"duplicates must be one of {choices}, got {how!r}") from None


def _labels(columns: list[np.ndarray]) -> np.ndarray:
    """Label of each row in a group of rows equal (exactly) in every column, numbered in the
    order of first appearance; -1 for a row equal to no other."""
    labels = np.full(columns[0].size, -1)
    # Only rows whose second column (a position) repeats can repeat: group those alone.
    _, where, counts = np.unique(columns[1], return_inverse=True, return_counts=True)
    maybe = counts[where] > 1
    if maybe.any():
        frame = pd.DataFrame({k: column[maybe] for k, column in enumerate(columns)})
        group = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup()
        group = group.to_numpy()
        repeated = np.bincount(group)[group] > 1
        _, labels[np.flatnonzero(maybe)[repeated]] = np.unique(group[repeated],
                                                               return_inverse=True)
    return labels


def _groups(labels: np.ndarray, rows: np.ndarray, n: int, places: Places) -> tuple[int, str]:
    """How many rows are in groups, and the first few groups as text."""
    groups = np.unique(labels[labels >= 0])
    shown = [places.rows(rows[labels == g], n) for g in groups[:MAX_SHOWN]]
    more = "; ..." if groups.size > MAX_SHOWN else ""
    return int((labels >= 0).sum()), "; ".join(shown) + more


_ADVICE = ("pass duplicates='average' (config: `duplicates: average`) to average the rows "
           "at the same time, position and platform, or duplicates='keep' (`duplicates: "
           "keep`) to keep them as independent observations")


def handle_duplicates(a: dict[str, np.ndarray], rows: np.ndarray, n: int, how: Duplicates,
                      places: Places) -> dict[str, np.ndarray]:
    """Refuse, keep or merge repeated rows of the valid rows ``a`` (fields time, x, y,
    value, error, platform), which are ``rows`` of a table of ``n`` rows."""
    if how is Duplicates.AVERAGE:
        return _average(a, rows, n, places)
    labels = _labels([a["time"], a["x"], a["y"], a["value"], a["platform"]])
    if not np.any(labels >= 0):
        return a
    count, listing = _groups(labels, rows, n, places)
    what = (f"{count} rows of {places.label} are exact copies of one another (same time, "
            f"position, value and platform: {listing})")
    if how is Duplicates.ERROR:
        raise ObservationError(
            f"{what}; each copy would count as an independent measurement. Remove the copies "
            f"(DataFrame.drop_duplicates()), or {_ADVICE}."
        )
    warnings.warn(f"keeping {what} as independent observations: each copy counts as a "
                  "separate measurement of the tracer", ObservationWarning, stacklevel=4)
    return a


def _average(a: dict[str, np.ndarray], rows: np.ndarray, n: int,
             places: Places) -> dict[str, np.ndarray]:
    """Rows at the same time, position and platform merged by Eq. (1), in the order of
    their first rows."""
    labels = _labels([a["time"], a["x"], a["y"], a["platform"]])
    repeated = labels >= 0
    if not repeated.any():
        return a
    count, listing = _groups(labels, rows, n, places)
    first = np.arange(labels.size)  # the first row of each row's group
    groups, at = np.unique(labels[repeated], return_index=True)
    first[repeated] = np.flatnonzero(repeated)[at][np.searchsorted(groups, labels[repeated])]
    firsts, group = np.unique(first, return_inverse=True)
    k = np.bincount(group).astype(float)
    merged = {name: a[name][firsts] for name in ("time", "x", "y", "platform")}
    merged["value"] = np.bincount(group, weights=a["value"]) / k
    merged["error"] = np.sqrt(np.bincount(group, weights=a["error"] ** 2) / k / k)
    warnings.warn(
        f"averaged {count} rows of {places.label} into {groups.size} observation"
        f"{'s' if groups.size > 1 else ''} (rows at the same time, position and platform: "
        f"{listing}); each mean has error sqrt(mean(error^2)/k) for k rows",
        ObservationWarning, stacklevel=5)
    return merged


# ---------------------------------------------------------------------- position units
#: The least number of observations the unit check judges.
MIN_FOR_UNITS = 5


def unit_mismatch(x: np.ndarray, y: np.ndarray, x_edges: np.ndarray,
                  y_edges: np.ndarray) -> str | None:
    """Why positions ``x, y`` look like km or degrees on a grid in metres, or None.

    Judged only for at least :data:`MIN_FOR_UNITS` observations crowded into less than 2% of
    the grid's extent on both axes: km if 1000 times the positions lie in the grid and spread
    over at least 5% of it; degrees if they are within +-360, +-90 and spread over at least
    half a unit, on a grid at least 100 km wide.
    """
    if x.size < MIN_FOR_UNITS:
        return None
    extent = np.array([x_edges[-1] - x_edges[0], y_edges[-1] - y_edges[0]])
    low = np.array([x.min(), y.min()])
    high = np.array([x.max(), y.max()])
    span = high - low
    if np.any(span >= 0.02 * extent):
        return None
    lo_edge, hi_edge = np.array([x_edges[0], y_edges[0]]), np.array([x_edges[-1], y_edges[-1]])
    box = (f"all {x.size} observations lie within x [{low[0]:g}, {high[0]:g}], "
           f"y [{low[1]:g}, {high[1]:g}], less than 2% of the grid, which spans "
           f"x [{lo_edge[0]:g}, {hi_edge[0]:g}] m, y [{lo_edge[1]:g}, {hi_edge[1]:g}] m")
    really = "; if they really are metres, use a grid around them, which would resolve them"
    inside = np.all(1e3 * low >= lo_edge) and np.all(1e3 * high <= hi_edge)
    if inside and np.any(1e3 * span >= 0.05 * extent):
        return (f"x/y look like km on a grid in metres: {box}, but multiplied by 1000 they "
                f"would spread across it; multiply x and y by 1000 to give metres{really}")
    degrees = np.all(np.abs(x) <= 360) and np.all(np.abs(y) <= 90)
    if degrees and np.any(span >= 0.5) and np.all(extent >= 1e5):
        return (f"x/y look like degrees (longitude, latitude) on a grid in metres: {box}; "
                f"give positions in metres, or use a lon/lat grid{really}")
    return None
