"""Super-observations: all observations of one wet cell, analysis time and platform as one.

``k`` observations ``v_i = c + e_i`` of one cell value ``c``, with independent Gaussian errors
``e_i ~ N(0, s_i^2)`` (tracer units), have the likelihood of a single observation ``v`` with
error ``s``::

    w_i = 1 / s_i^2                                                                 (1)
    v = sum_i w_i v_i / sum_i w_i                                                   (2)
    s = 1 / sqrt(sum_i w_i)                                                         (3)

(``(v, s)`` is the sufficient statistic: the two likelihoods of ``c`` differ by a factor free
of ``c``, so every posterior of ``c`` is the same). The super-observation sits at the mean
position of its observations::

    x = (1/k) sum_i x_i,    y = (1/k) sum_i y_i                                     (4)

This neglects the variation of the field within a cell and within an analysis interval, and
the differences between the observations' interpolation weights: it is exact only for a
field constant over the cell and the interval. See :meth:`Observations.bin
<tracerbayes.observations.core.Observations.bin>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from tracerbayes.observations.core import Observations

__all__ = ["BinnedObservations", "BinningReport", "SuperObservations", "super_observations"]


class BinningReport(NamedTuple):
    """What binning did.

    Attributes
    ----------
    n_observations : int
        Rows of the observations binned.
    n_dropped : int
        Rows left out as unusable (outside the grid or window, on land; only with
        ``drop_invalid``).
    n_super : int
        Super-observations made from the other rows.
    """

    n_observations: int
    n_dropped: int
    n_super: int

    def __str__(self) -> str:
        """E.g. ``binned 1000000 observations into 250 super-observations (... 4,000
        observations each)``."""
        used = self.n_observations - self.n_dropped
        ratio = used / self.n_super if self.n_super else 0.0
        dropped = f" ({self.n_dropped} unusable rows left out)" if self.n_dropped else ""
        return (f"binned {used} observations into {self.n_super} super-observations (one per "
                f"wet cell, analysis time and platform; {_about(ratio)} observations each)"
                f"{dropped}")


class BinnedObservations(NamedTuple):
    """The result of :meth:`Observations.bin <tracerbayes.observations.core.Observations.bin>`:
    the super-observations (an :class:`Observations` at the analysis times) and the report."""

    observations: Observations
    report: BinningReport


class SuperObservations(NamedTuple):
    """Eqs. (1)-(4) for each group, in the order of the sorted group keys.

    Attributes
    ----------
    first : ndarray of int, shape (g,)
        One row of each group (its first), to take the group's time, cell and platform from.
    x, y : ndarray, shape (g,)
        Mean positions, Eq. (4).
    value, error : ndarray, shape (g,)
        Inverse-variance weighted mean and its error standard deviation, Eqs. (2)-(3).
    """

    first: np.ndarray
    x: np.ndarray
    y: np.ndarray
    value: np.ndarray
    error: np.ndarray


def super_observations(group: np.ndarray, x: np.ndarray, y: np.ndarray, value: np.ndarray,
                       error: np.ndarray) -> SuperObservations:
    """Eqs. (1)-(4) over the rows sharing a ``group`` key (any integers, shape (n,))."""
    keys, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    g = keys.size
    weight = 1.0 / error**2  # Eq. (1)
    total = np.bincount(inverse, weights=weight, minlength=g)
    count = np.bincount(inverse, minlength=g)
    return SuperObservations(
        first=first,
        x=np.bincount(inverse, weights=x, minlength=g) / count,
        y=np.bincount(inverse, weights=y, minlength=g) / count,
        value=np.bincount(inverse, weights=weight * value, minlength=g) / total,
        error=1.0 / np.sqrt(total),
    )


def _about(ratio: float) -> str:
    """A mean count in words: ``'1.5'``, ``'12'``, ``'4,000'`` (never ``'4e+03'``)."""
    return f"{ratio:.2g}" if ratio < 10 else f"{round(ratio, -int(np.log10(ratio)) + 1):,.0f}"
