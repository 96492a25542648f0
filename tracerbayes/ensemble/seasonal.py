"""The seasonal forcing of a tracer that is not conserved, in the ensemble forecast.

The exact model's seasonal forcing (:mod:`tracerbayes.exact.model`, ``seasonal_modes``,
``seasonal_harmonics``) is ``f_s(x, t) = sum_h a_h(x) cos(w_h t) + b_h(x) sin(w_h t)`` tracer
units per day, ``w_h = h omega`` the harmonics of the year, ``t`` counted from the first
analysis time. The ensemble takes the fields at the exact model's mode
(:func:`tracerbayes.exact.mode.seasonal_field`), as it takes the mean state, and adds to every
member, over each interval ``[t, t + h]``, what the forcing puts in under the damping::

    integral_t^{t+h} f_s(s) e^{-rho (t + h - s)} ds
        = sum_h Re[(a_h - i b_h) e^{i w_h t} (e^{i w_h h} - e^{-rho h}) / (rho + i w_h)]

with ``rho`` the damping rate on the mass-free part and 0 on each basin's level (which is
not damped). The advection and diffusion of what the forcing adds within the interval are
left out (it is added at the interval's end): a splitting error of the order of ``h`` times
the operator's rates on basin-scale fields, small for daily analyses.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes.ensemble.inflation import project_mass_free
from tracerbayes.exact.model import DAY, YEAR_DAYS

__all__ = ["SeasonalForcing", "seasonal_forcing"]

OMEGA = 2.0 * np.pi / (YEAR_DAYS * DAY)


class SeasonalForcing(NamedTuple):
    """The annual forcing's fields, split into the mass-free part and the basin levels.

    Attributes
    ----------
    free : (2 H, n_wet)
        Mass-free parts of ``a_1, b_1, ..., a_H, b_H`` (tracer units per day).
    level : (2 H, n_wet)
        Their basin-mean levels (uniform within each basin).
    starts : (T - 1,)
        Start of each analysis interval, seconds after the first analysis time.
    """

    free: jax.Array
    level: jax.Array
    starts: jax.Array

    def increment(self, j: Any, h: Any, rate: Any) -> jax.Array:
        """(n_wet,): what the forcing adds over interval ``j`` of ``h`` seconds under damping
        at ``rate`` (1/s) on the mass-free part (the module docstring)."""
        t = self.starts[j]
        out = jnp.zeros(self.free.shape[1:], dtype=self.free.dtype)
        for k in range(self.free.shape[0] // 2):
            w = (k + 1) * OMEGA
            phase = jnp.exp(1j * w * t)
            damped = (jnp.exp(1j * w * h) - jnp.exp(-rate * h)) / (rate + 1j * w) / DAY
            kept = (jnp.exp(1j * w * h) - 1.0) / (1j * w) / DAY
            free = jnp.real((self.free[2 * k] - 1j * self.free[2 * k + 1]) * phase * damped)
            level = jnp.real((self.level[2 * k] - 1j * self.level[2 * k + 1]) * phase * kept)
            out = out + free + level
        return out


def seasonal_forcing(fields: Any, cell_area: Any, basins: np.ndarray,
                     starts: Any) -> SeasonalForcing:
    """:class:`SeasonalForcing` of the fields ``(a_1, b_1, ..., a_H, b_H)`` (2 H, n_wet),
    tracer units per day, for intervals starting ``starts`` seconds after the first analysis
    time."""
    fields = jnp.asarray(fields, dtype=float)
    if fields.ndim != 2 or fields.shape[0] < 2 or fields.shape[0] % 2:
        raise ValueError(f"the seasonal forcing is two fields (a, b) per harmonic, of shape "
                         f"(2 H, n_wet), got shape {tuple(fields.shape)}")
    if not bool(jnp.all(jnp.isfinite(fields))):
        raise ValueError("the seasonal forcing's fields hold NaN or infinite values")
    free = project_mass_free(fields, jnp.asarray(cell_area, fields.dtype), basins)
    return SeasonalForcing(free, fields - free, jnp.asarray(starts, dtype=float))
