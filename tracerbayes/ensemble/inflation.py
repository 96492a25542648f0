"""Covariance inflation: multiplicative, additive, adaptive, and mass-safe variants.

Mass here is the area-weighted total ``a^T x`` of a member state ``x`` (``a`` the wet cell
areas in m^2). Multiplicative inflation scales the anomalies, and hence their totals, so it
changes each member's total unless all members already share it; additive noise changes it
unless the noise has zero total. The mass-safe variants below keep every member's total
exactly (to round-off):

* :func:`mass_free_multiplicative` inflates only the mass-free part ``Pi A_j`` of each anomaly,
  ``Pi = I - 1 a^T / (1^T a)``;
* :func:`mass_free_additive` projects the perturbations with ``Pi`` before adding them.

Relaxation to prior spread (:func:`relax_to_prior_spread`, Whitaker & Hamill 2012) inflates
the *analysis*, cell by cell, where it has lost more spread than it should: a small ensemble's
spurious long-range correlations shrink the spread far from the observations at every cycle,
which one global factor estimated from the innovations (seen only where there are
observations) cannot undo.

References
----------
Anderson, J. L. & Anderson, S. L. (1999). A Monte Carlo implementation of the nonlinear
filtering problem to produce ensemble assimilations and forecasts. Mon. Wea. Rev. 127,
2741-2758 (multiplicative inflation).
Whitaker, J. S. & Hamill, T. M. (2012). Evaluating methods to account for system errors in
ensemble data assimilation. Mon. Wea. Rev. 140, 3078-3089 (relaxation to prior spread).
Li, H., Kalnay, E. & Miyoshi, T. (2009). Simultaneous estimation of covariance inflation and
observation errors within an ensemble Kalman filter. Q. J. R. Meteorol. Soc. 135, 523-533.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes.ensemble.analysis import check_inputs, observe

__all__ = [
    "AdaptiveInflation",
    "additive",
    "adaptive_inflation_update",
    "innovation_inflation",
    "mass_free_additive",
    "mass_free_multiplicative",
    "multiplicative",
    "project_mass_free",
    "relax_to_prior_spread",
]


def multiplicative(E: jax.Array, factor: Any) -> jax.Array:
    """``E -> xbar + factor (E - xbar)``: anomalies scaled by ``factor`` (covariance by its
    square), Anderson & Anderson (1999). ``factor`` may be a scalar or per-variable (n,)."""
    xbar = E.mean(axis=0)
    return xbar + factor * (E - xbar)


def additive(key: jax.Array, E: jax.Array,
             sampler: Callable[[jax.Array, int], jax.Array]) -> jax.Array:
    """``E + sampler(key, N_e)``: add random perturbations (N_e, n) from ``sampler``."""
    return E + sampler(key, E.shape[0])


def project_mass_free(states: jax.Array, cell_area: Any, basins: Any = None) -> jax.Array:
    """``Pi x = x - (a^T x / 1^T a) 1`` for each state (..., n): zero area-weighted total.

    With ``basins`` (integer label (n,) of each cell's connected basin, 0, 1, ...) the
    projection is applied in every basin on its own, so that each basin's total is zero and
    nothing is moved across land; without, the whole domain is one basin.
    """
    area = jnp.asarray(cell_area, states.dtype)
    if basins is None:
        return states - (states @ area / area.sum())[..., None]
    labels = np.asarray(basins)
    n_basins = int(labels.max()) + 1
    onehot = jnp.asarray(labels[:, None] == np.arange(n_basins), states.dtype)  # (n, B)
    basin_area = area @ onehot
    means = (states @ (area[:, None] * onehot)) / basin_area  # (..., B)
    return states - means @ onehot.T


def mass_free_additive(key: jax.Array, E: jax.Array,
                       sampler: Callable[[jax.Array, int], jax.Array],
                       cell_area: Any, basins: Any = None) -> jax.Array:
    """Additive inflation with zero-mass perturbations ``Pi eps_j``: member totals unchanged
    (per basin with ``basins``, see :func:`project_mass_free`)."""
    return E + project_mass_free(sampler(key, E.shape[0]), cell_area, basins)


def mass_free_multiplicative(E: jax.Array, factor: Any, cell_area: Any,
                             basins: Any = None) -> jax.Array:
    """Multiplicative inflation of the mass-free part of the anomalies only.

    ``x_j -> xbar + (I - Pi) A_j + factor Pi A_j``: the uniform part carrying member ``j``'s
    total anomaly is kept, the rest is scaled, so ``a^T x_j`` is unchanged for every member
    (in every basin, with ``basins``; see :func:`project_mass_free`).
    When all members share one total this equals :func:`multiplicative` on the mass-free
    subspace (the only subspace where the ensemble then has spread).
    """
    xbar = E.mean(axis=0)
    A = E - xbar
    A_free = project_mass_free(A, cell_area, basins)
    return xbar + (A - A_free) + factor * A_free


def relax_to_prior_spread(E_f: jax.Array, E_a: jax.Array, alpha: Any, cell_area: Any = None,
                          basins: Any = None) -> jax.Array:
    """Relaxation to prior spread (RTPS, Whitaker & Hamill 2012): the analysis anomalies of
    every cell scaled so that its spread moves ``alpha`` of the way back to the forecast's,
    ``sigma_a -> sigma_a + alpha (sigma_f - sigma_a)``; the analysis mean is unchanged.

    ``alpha = 0`` returns ``E_a``; ``alpha = 1`` restores the forecast spread. A cell whose
    analysis spread is zero is left as it is. With ``cell_area`` (n,) the spreads and the
    scaling are those of the mass-free part of the anomalies only (per basin with ``basins``,
    see :func:`project_mass_free`): the basin-mean level, which many observations pin down
    together and which is no victim of spurious correlations, keeps its analysis spread, and
    every member keeps its analysis total exactly.
    """
    xbar = E_a.mean(axis=0)
    A = E_a - xbar
    if cell_area is None:
        A_f, A_free = E_f - E_f.mean(axis=0), A
    else:
        A_f = project_mass_free(E_f - E_f.mean(axis=0), cell_area, basins)
        A_free = project_mass_free(A, cell_area, basins)
    dof = E_a.shape[0] - 1.0
    sd_f = jnp.sqrt(jnp.sum(A_f**2, axis=0) / dof)
    sd_a = jnp.sqrt(jnp.sum(A_free**2, axis=0) / dof)
    tiny = jnp.finfo(E_a.dtype).tiny
    factor = jnp.where(sd_a > tiny, 1.0 + alpha * (sd_f - sd_a) / jnp.maximum(sd_a, tiny), 1.0)
    if cell_area is None:
        return xbar + factor * A
    return xbar + (A - A_free) + project_mass_free(factor * A_free, cell_area, basins)


def innovation_inflation(E: jax.Array, y: jax.Array, H: Any, obs_sd: jax.Array, *,
                         valid: jax.Array | None = None) -> jax.Array:
    """One-cycle estimate of the covariance inflation ``lambda`` from the innovation.

    With ``d = y - H xbar`` and the forecast covariance ``lambda P_f`` (``P_f`` the sample
    covariance), ``E[d^T R^{-1} d] = lambda tr(R^{-1} H P_f H^T) + m`` (Li et al. 2009,
    Eq. 4, with ``R^{-1}`` weighting), hence
    ``lambda = (d^T R^{-1} d - m) / tr(R^{-1} H P_f H^T)``. The estimate is noisy (it uses
    one innovation) and may be negative; :func:`adaptive_inflation_update` smooths it in time.
    The anomaly factor is ``sqrt(lambda)``.
    """
    check_inputs(E, y, H, obs_sd, valid)
    used = jnp.ones(y.shape, bool) if valid is None else jnp.asarray(valid, bool)
    inv_sd = jnp.where(used, 1.0 / jnp.where(used, obs_sd, 1.0), 0.0)
    HE = observe(E, H)
    d = jnp.where(used, y - HE.mean(axis=0), 0.0) * inv_sd
    Y = (HE - HE.mean(axis=0)) * inv_sd
    trace = jnp.sum(Y * Y) / (E.shape[0] - 1.0)
    return (d @ d - used.sum()) / trace


class AdaptiveInflation(NamedTuple):
    """State of the time-smoothed innovation-based inflation (Li et al. 2009, Sec. 2c).

    Attributes
    ----------
    factor : Array, shape ()
        Current covariance inflation ``lambda`` (anomalies are scaled by ``sqrt(lambda)``).
    """

    factor: jax.Array


def adaptive_inflation_update(state: AdaptiveInflation, E: jax.Array, y: jax.Array, H: Any,
                              obs_sd: jax.Array, *, valid: jax.Array | None = None,
                              weight: float = 0.03, bounds: tuple[float, float] = (1.0, 5.0),
                              ) -> AdaptiveInflation:
    """``lambda_k = (1 - weight) lambda_{k-1} + weight lambda_obs``, clipped to ``bounds``.

    A simple temporal smoother of :func:`innovation_inflation` (the "memory" of Li et al.
    2009 in place of their Kalman-filter weighting); apply the new factor to the forecast with
    :func:`multiplicative` (factor ``sqrt(lambda)``) before the analysis.
    """
    estimate = innovation_inflation(E, y, H, obs_sd, valid=valid)
    factor = (1.0 - weight) * state.factor + weight * estimate
    return AdaptiveInflation(jnp.clip(factor, *bounds))
