"""Scores of tracer maps against a truth: RMSE, bias, CRPS and interval coverage.

Every function takes the truth first and the forecast after, as NumPy arrays or xarray
DataArrays (broadcast against each other by name for DataArrays, by position otherwise).

NaN policy (explicit, the same everywhere):

* NaN in the truth marks land (or a cell without a verifying value): it is skipped.  With
  ``reduce=False`` the pointwise score is NaN there.
* A non-finite forecast value (or a non-positive standard deviation) where the truth is finite
  is an error: :class:`ValueError` says how many such cells there are, so that a broken map is
  never silently scored on its good part only.
* No finite truth at all is an error too.

Ensembles and mixtures have their members along ``member_axis`` (NumPy) or the dimension
``member_dim`` (xarray).

Formulas: Gaussian CRPS (Gneiting & Raftery 2007, Eq. (21))::

    CRPS(N(mu, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)],   z = (y - mu) / s

equal-weight Gaussian mixture (Grimit et al. 2006, Eq. (5)), ``A(m, v) = E|X|`` for
``X ~ N(m, v)``, ``A(m, v) = 2 sqrt(v) phi(m / sqrt(v)) + m (2 Phi(m / sqrt(v)) - 1)``::

    CRPS = 1/M sum_i A(y - mu_i, s_i^2) - 1/(2 M^2) sum_{i,j} A(mu_i - mu_j, s_i^2 + s_j^2)

ensemble (energy form, Gneiting & Raftery 2007, Eq. (20)), ``fair`` dividing the second term
by ``M (M - 1)`` instead of ``M^2`` (Ferro 2014, unbiased for the CRPS of the distribution the
members are drawn from)::

    CRPS = 1/M sum_i |x_i - y| - 1/(2 M^2) sum_{i,j} |x_i - x_j|

References: T. Gneiting and A. E. Raftery, "Strictly proper scoring rules, prediction, and
estimation", JASA 102, 359-378, 2007. E. P. Grimit, T. Gneiting, V. J. Berrocal and N. A.
Johnson, "The continuous ranked probability score for circular variables and its application
to mesoscale forecast ensemble verification", Q. J. R. Meteorol. Soc. 132, 2925-2942, 2006.
C. A. T. Ferro, "Fair scores for ensemble forecasts", Q. J. R. Meteorol. Soc. 140, 1917-1923,
2014.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import ndtr, ndtri

__all__ = [
    "bias",
    "coverage_gaussian",
    "coverage_interval",
    "coverage_mixture",
    "crps_ensemble",
    "crps_gaussian",
    "crps_mixture",
    "mixture_quantile",
    "mixture_quantiles",
    "rmse",
]

_INV_SQRT_PI = 1.0 / np.sqrt(np.pi)


def _align(truth, *forecasts, member_dim=None):
    """NumPy ``(truth, [forecasts...], template)``, all broadcast to one shape.

    Forecasts carrying ``member_dim`` (xarray) keep it as their last axis; NumPy member arrays
    must already have members last (:func:`_members_last`) and are passed with
    ``member_dim="last"``.  ``template`` is the broadcast truth DataArray (None for NumPy).
    Misaligned xarray coordinates raise (``join="exact"``), never silently intersect.
    """
    if not isinstance(truth, xr.DataArray):
        truth = np.asarray(truth, dtype=float)
        arrays = [np.asarray(f, dtype=float) for f in forecasts]
        shapes = [a.shape[:-1] if member_dim == "last" and a.ndim else a.shape for a in arrays]
        shape = np.broadcast_shapes(truth.shape, *shapes)
        return np.broadcast_to(truth, shape), arrays, None
    if any(np.ndim(f) and not isinstance(f, xr.DataArray) for f in forecasts):
        raise TypeError("truth is a DataArray: give the forecasts as DataArrays (or scalars)")
    labelled = [f if isinstance(f, xr.DataArray) else xr.DataArray(f) for f in forecasts]
    has_members = [member_dim is not None and member_dim in f.dims for f in labelled]
    plain = [f.isel({member_dim: 0}, drop=True) if m else f
             for f, m in zip(labelled, has_members, strict=True)]
    xr.align(truth, *plain, join="exact")
    template = xr.broadcast(truth, *plain)[0]
    out = []
    for f, m in zip(labelled, has_members, strict=True):
        dims = (*template.dims, member_dim) if m else template.dims
        out.append(np.asarray(f.broadcast_like(template).transpose(*dims).values, dtype=float))
    return np.asarray(template.values, dtype=float), out, template


def _members_last(array, axis):
    return np.moveaxis(np.asarray(array, dtype=float), axis, -1)


def _finite_mask(name, truth, *forecasts, positive=()):
    """Boolean mask of scored cells (finite truth); raise on a bad forecast there."""
    scored = np.isfinite(truth)
    if not scored.any():
        raise ValueError(f"{name}: the truth has no finite value to score against")
    for label, forecast in forecasts:
        bad = ~np.isfinite(forecast)
        if bad.ndim > scored.ndim:  # member axis last
            bad = bad.any(axis=-1)
        count = int(np.sum(np.broadcast_to(bad, scored.shape) & scored))
        if count:
            raise ValueError(
                f"{name}: {count} {label} value(s) are NaN or infinite where the truth is finite "
                f"(of {int(scored.sum())} scored cells); fill or mask them (NaN truth = skipped)"
            )
    for label, value in positive:
        bad = ~(value > 0)
        if bad.ndim > scored.ndim:
            bad = bad.any(axis=-1)
        count = int(np.sum(np.broadcast_to(bad, scored.shape) & scored))
        if count:
            raise ValueError(f"{name}: {count} {label} value(s) are not positive where the "
                             "truth is finite; standard deviations must be > 0")
    return scored


def _finish(pointwise, scored, template, reduce):
    if reduce:
        return float(np.mean(pointwise[scored]))
    pointwise = np.where(scored, pointwise, np.nan)
    if template is None:
        return pointwise
    return template.copy(data=pointwise)


def rmse(truth, forecast, *, reduce=True):
    """Root-mean-square error ``sqrt(mean (forecast - truth)^2)`` over cells with finite truth.

    With ``reduce=False``, the pointwise squared error (NaN on land).
    """
    truth, (forecast,), template = _align(truth, forecast)
    scored = _finite_mask("rmse", truth, ("forecast", forecast))
    squared = np.broadcast_to((forecast - truth) ** 2, truth.shape)
    if reduce:
        return float(np.sqrt(np.mean(squared[scored])))
    return _finish(squared, scored, template, reduce=False)


def bias(truth, forecast, *, reduce=True):
    """Mean error ``mean (forecast - truth)`` (same units as the tracer) over finite truth."""
    truth, (forecast,), template = _align(truth, forecast)
    scored = _finite_mask("bias", truth, ("forecast", forecast))
    return _finish(np.broadcast_to(forecast - truth, truth.shape), scored, template, reduce)


def _gaussian_crps(y, mean, sd):
    z = (y - mean) / sd
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return sd * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * pdf - _INV_SQRT_PI)


def crps_gaussian(truth, mean, sd, *, reduce=True):
    """CRPS of ``N(mean, sd^2)`` at ``truth`` (Gneiting & Raftery 2007, closed form).

    Same units as the tracer; the mean over cells with finite truth, or pointwise.
    """
    truth, (mean, sd), template = _align(truth, mean, sd)
    scored = _finite_mask("crps_gaussian", truth, ("mean", mean), ("sd", sd),
                          positive=[("sd", sd)])
    safe_sd = np.where(scored, sd, 1.0)
    return _finish(np.broadcast_to(_gaussian_crps(truth, mean, safe_sd), truth.shape),
                   scored, template, reduce)


def _abs_gaussian_mean(m, v):
    """``E|X|`` for ``X ~ N(m, v)``."""
    s = np.sqrt(v)
    return 2.0 * s * np.exp(-0.5 * (m / s) ** 2) / np.sqrt(2.0 * np.pi) + m * (
        2.0 * ndtr(m / s) - 1.0)


def _mixture_inputs(name, truth, means, sds, member_axis, member_dim):
    if not isinstance(truth, xr.DataArray):
        means, sds = _members_last(means, member_axis), _members_last(sds, member_axis)
        member_dim = "last"
    truth, (means, sds), template = _align(truth, means, sds, member_dim=member_dim)
    means, sds = np.broadcast_arrays(means, sds)
    scored = _finite_mask(name, truth, ("component mean", means), ("component sd", sds),
                          positive=[("component sd", sds)])
    sds = np.where(scored[..., None], sds, 1.0)
    return truth, means, sds, scored, template


def crps_mixture(truth, means, sds, *, member_axis=0, member_dim="draw", reduce=True):
    """CRPS of the equal-weight Gaussian mixture ``1/M sum_i N(means_i, sds_i^2)``.

    Closed form of Grimit et al. (2006); O(M^2) per cell.  Components along
    ``member_axis`` (NumPy) or ``member_dim`` (xarray).
    """
    truth, means, sds, scored, template = _mixture_inputs(
        "crps_mixture", truth, means, sds, member_axis, member_dim)
    M = means.shape[-1]
    first = _abs_gaussian_mean(truth[..., None] - means, sds**2).mean(axis=-1)
    pair_m = means[..., :, None] - means[..., None, :]
    pair_v = sds[..., :, None] ** 2 + sds[..., None, :] ** 2
    second = _abs_gaussian_mean(pair_m, pair_v).sum(axis=(-1, -2)) / (2.0 * M**2)
    return _finish(first - second, scored, template, reduce)


def crps_ensemble(truth, ensemble, *, fair=False, member_axis=0, member_dim="member",
                  reduce=True):
    """CRPS of an ensemble, energy form ``E|X - y| - E|X - X'| / 2`` (empirical CDF).

    ``fair=True`` uses ``1/(M (M - 1))`` for the pair term (Ferro 2014).  The pair sum uses
    sorted members: ``sum_{i,j} |x_i - x_j| = 2 sum_i (2 i - M - 1) x_(i)``, O(M log M).
    """
    if not isinstance(truth, xr.DataArray):
        ensemble = _members_last(ensemble, member_axis)
        member_dim = "last"
    truth, (ensemble,), template = _align(truth, ensemble, member_dim=member_dim)
    M = ensemble.shape[-1]
    if M < 2 and fair:
        raise ValueError("the fair ensemble CRPS needs at least 2 members")
    scored = _finite_mask("crps_ensemble", truth, ("ensemble", ensemble))
    ensemble = np.where(scored[..., None], ensemble, 0.0)
    first = np.abs(ensemble - truth[..., None]).mean(axis=-1)
    ranks = 2.0 * np.arange(1, M + 1) - M - 1
    pair_sum = 2.0 * np.sum(ranks * np.sort(ensemble, axis=-1), axis=-1)
    second = pair_sum / (2.0 * (M * (M - 1) if fair else M**2))
    return _finish(first - second, scored, template, reduce)


def mixture_quantiles(means, sds, probs, *, iterations=100):
    """Quantiles ``probs`` of equal-weight Gaussian mixtures over axis 0, by bisection on the
    mixture's CDF, in JAX (traceable; the one routine the package uses for mixtures).

    ``means, sds``: (S, ...) -> (len(probs), ...). The bracket ``[min(mu - 40 s), max(mu +
    40 s)]`` holds every quantile in (1e-300, 1 - 1e-16); 100 halvings reach round-off.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import ndtr as jndtr

    means = jnp.asarray(means)
    sds = jnp.maximum(jnp.asarray(sds), 1e-300)
    lo = jnp.min(means - 40.0 * sds, axis=0)
    hi = jnp.max(means + 40.0 * sds, axis=0)

    def solve(p):
        def body(_, bounds):
            a, b = bounds
            mid = 0.5 * (a + b)
            below = jnp.mean(jndtr((mid - means) / sds), axis=0) < p
            return jnp.where(below, mid, a), jnp.where(below, b, mid)

        a, b = jax.lax.fori_loop(0, iterations, body, (lo, hi))
        return 0.5 * (a + b)

    return jnp.stack([solve(p) for p in probs])


def mixture_quantile(means, sds, q, *, member_axis=0, iterations=100):
    """Quantile ``q`` in (0, 1) of the equal-weight Gaussian mixture (:func:`mixture_quantiles`).

    ``means``, ``sds`` (NumPy) with components along ``member_axis``; returns the other axes.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    means, sds = np.broadcast_arrays(_members_last(means, member_axis),
                                     _members_last(sds, member_axis))
    out = mixture_quantiles(np.moveaxis(means, -1, 0), np.moveaxis(sds, -1, 0), (q,),
                            iterations=iterations)[0]
    return np.asarray(out)


def coverage_interval(truth, lower, upper, *, reduce=True):
    """Fraction of cells with finite truth inside the closed interval ``[lower, upper]``."""
    truth, (lower, upper), template = _align(truth, lower, upper)
    scored = _finite_mask("coverage", truth, ("lower bound", lower), ("upper bound", upper))
    inverted = int(np.sum(np.broadcast_to(lower > upper, truth.shape) & scored))
    if inverted:
        raise ValueError(f"coverage: {inverted} interval(s) have lower > upper; swap them")
    inside = np.broadcast_to((truth >= lower) & (truth <= upper), truth.shape)
    return _finish(inside.astype(float), scored, template, reduce)


def _check_level(level):
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (e.g. 0.9 for a 90% interval), got {level}")


def coverage_gaussian(truth, mean, sd, *, level=0.9, reduce=True):
    """Coverage of the central ``level`` interval ``mean -/+ Phi^{-1}((1 + level)/2) sd``."""
    _check_level(level)
    truth, (mean, sd), template = _align(truth, mean, sd)
    _finite_mask("coverage_gaussian", truth, ("mean", mean), ("sd", sd), positive=[("sd", sd)])
    half = ndtri(0.5 * (1.0 + level)) * sd
    if template is not None:
        truth = template.copy(data=truth)
        lower = template.copy(data=np.broadcast_to(mean - half, truth.shape).copy())
        upper = template.copy(data=np.broadcast_to(mean + half, truth.shape).copy())
        return coverage_interval(truth, lower, upper, reduce=reduce)
    return coverage_interval(truth, mean - half, mean + half, reduce=reduce)


def coverage_mixture(truth, means, sds, *, level=0.9, member_axis=0, member_dim="draw",
                     reduce=True):
    """Coverage of the central ``level`` interval of the equal-weight Gaussian mixture.

    Bounds are the mixture quantiles ``(1 -/+ level)/2`` (:func:`mixture_quantile`).
    """
    _check_level(level)
    truth, means, sds, scored, template = _mixture_inputs(
        "coverage_mixture", truth, means, sds, member_axis, member_dim)
    lower = mixture_quantile(means, sds, 0.5 * (1.0 - level), member_axis=-1)
    upper = mixture_quantile(means, sds, 0.5 * (1.0 + level), member_axis=-1)
    inside = ((truth >= lower) & (truth <= upper)).astype(float)
    return _finish(inside, scored, template, reduce)
