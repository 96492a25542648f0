"""Reporting bad observations: the error and warning types, and messages naming the rows.

A message counts the offending rows, says where they are (row of the table, and line of the
file when it was read from a CSV file: :class:`Places`) and shows the first
:data:`MAX_SHOWN` of them with their values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

__all__ = ["MAX_SHOWN", "ObservationError", "ObservationWarning", "Places"]

#: How many offending rows an error or warning message shows.
MAX_SHOWN = 5


class ObservationError(ValueError):
    """Observations could not be used as given (bad values, positions, times or columns)."""


class ObservationWarning(UserWarning):
    """Observations were dropped, merged or kept with doubts, as asked for."""


class Places:
    """Where the rows of a table of observations came from, for messages.

    Parameters
    ----------
    source : str, optional
        The file (its name) or object the rows were read from; None for a DataFrame or
        arrays given directly, whose rows need no further name.
    lines : callable, optional
        Returns the line of the file on which each row starts (1-based), or None when it
        cannot tell; called only when a message needs it.
    empty : str, optional
        The message for a table without rows.
    """

    def __init__(self, source: str | None = None,
                 lines: Callable[[], np.ndarray | None] | None = None,
                 empty: str | None = None):
        self.source = source
        self.empty = empty or f"{self.label} has no rows: there are no observations"
        self._lines = lines
        self._cache: list[np.ndarray | None] = []

    def line_numbers(self, n: int) -> np.ndarray | None:
        """The line of each of the ``n`` rows, or None if unknown."""
        if self._lines is None:
            return None
        if not self._cache:
            self._cache.append(self._lines())
        lines = self._cache[0]
        return lines if lines is not None and lines.size == n else None

    def rows(self, rows: np.ndarray, n: int, more: bool = False) -> str:
        """``'row 17 (line 19 of obs.csv)'``, ``'rows 3, 7, ... of obs.nc'`` or ``'rows 3, 7'``
        for ``rows`` of a table of ``n`` rows (``more``: some rows are left out)."""
        rows = np.asarray(rows)
        etc = ", ..." if more else ""
        plural = "s" if rows.size > 1 or more else ""
        text = f"row{plural} {', '.join(str(r) for r in rows)}{etc}"
        lines = self.line_numbers(n)
        if lines is not None:
            at = ", ".join(str(line) for line in lines[rows])
            return f"{text} (line{plural} {at}{etc} of {self.source})"
        return f"{text} of {self.source}" if self.source else text

    def row(self, row: int | np.integer, n: int) -> str:
        """``'row 17, line 19'`` (the file named elsewhere in the message) or ``'row 17'``."""
        lines = self.line_numbers(n)
        return f"row {row}" if lines is None else f"row {row}, line {lines[row]}"

    @property
    def label(self) -> str:
        return self.source or "the table"


#: Rows given directly, named by their index alone.
NOWHERE = Places()


class Problem(Protocol):
    """Some rows of the observations that cannot be used, and how to say so."""

    @property
    def bad(self) -> np.ndarray:  # (n,) bool: True on the offending rows
        ...

    def message(self, places: Places) -> str: ...


class RowProblem(NamedTuple):
    """Rows whose values break one rule, shown as ``n observations <what> (rows ...: ...)``."""

    bad: np.ndarray  # (n,) bool: True on the offending rows
    what: str  # predicate, with {are}/{have} for grammatical number
    describe: Callable[[np.ndarray], list[str]]  # rows -> one text per row
    hint: str = ""

    def message(self, places: Places) -> str:
        rows = np.flatnonzero(self.bad)
        n = rows.size
        shown = rows[:MAX_SHOWN]
        more = n > MAX_SHOWN
        noun = "observation" if n == 1 else "observations"
        what = self.what.format(are="is" if n == 1 else "are", have="has" if n == 1 else "have")
        texts = ", ".join(self.describe(shown))
        return (f"{n} {noun} {what} ({places.rows(shown, self.bad.size, more)}: {texts}"
                f"{', ...' if more else ''}){self.hint}")


def describe(problems: Sequence[Problem], places: Places) -> str:
    """The messages of the problems that have offending rows, joined."""
    return "; ".join(p.message(places) for p in problems if p.bad.any())


def resolve(problems: Sequence[Problem], n: int, drop_invalid: bool,
            places: Places = NOWHERE) -> np.ndarray:
    """The rows to keep; raise (or warn, with ``drop_invalid``) if any row is bad."""
    problems = [p for p in problems if p.bad.any()]
    keep = np.ones(n, dtype=bool)
    for p in problems:
        keep &= ~p.bad
    if not problems:
        return keep
    text = describe(problems, places)
    if not drop_invalid:
        raise ObservationError(
            f"{text}. Fix or remove them, or pass drop_invalid=True to drop them with a warning."
        )
    warnings.warn(f"dropped {n - keep.sum()} of {n} observations: {text}",
                  ObservationWarning, stacklevel=3)
    return keep


def fmt(values: np.ndarray) -> list[str]:
    """Times or numbers as short texts."""
    if values.dtype.kind == "M":
        return ["NaT" if np.isnat(v) else str(pd.Timestamp(v)) for v in values]
    return [f"{float(v):.6g}" for v in values]


def fmt_positions(x: np.ndarray, y: np.ndarray, names: tuple[str, str]) -> Callable:
    """``rows -> ['(lon, lat) = (1, 2), (3, 4)']``."""
    def positions(rows: np.ndarray) -> list[str]:
        pairs = ", ".join(f"({a}, {b})" for a, b in zip(fmt(x[rows]), fmt(y[rows]), strict=True))
        return [f"({names[0]}, {names[1]}) = {pairs}"]
    return positions
