"""Optimised starting points for NUTS: local posterior modes from several prior draws.

NUTS started at draws from the prior may spend its whole warm-up walking (or get stuck) far
from the posterior when the data are informative: every step asks for a Kalman filter, and a
prior draw with an absurd error scale or diffusivity sits on a nearly flat plateau of the
likelihood. Starting each chain from a local maximum of the posterior density instead puts
it where the mass is; starting the chains from *different* prior draws keeps R-hat
meaningful: chains that end in different modes disagree and say so.

For each chain: a draw from the prior (``init_to_sample``), mapped to NumPyro's
unconstrained space, then BFGS on the potential energy ``U(z) = -log p(y, theta(z)) -
log |d theta / d z|`` (the density NUTS samples) with JAX gradients
(``jax.scipy.optimize.minimize``). A start whose optimisation fails (non-finite energy)
keeps its prior draw, and the result reports it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.optimize
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_sample
from numpyro.infer.util import initialize_model

__all__ = ["ModeStarts", "optimised_starts", "posterior_mode"]


class ModeStarts(NamedTuple):
    """Per-chain starting points in NumPyro's unconstrained space.

    Attributes
    ----------
    params : dict of name -> (chain, ...) array
        Unconstrained values, ready for ``MCMC.run(init_params=...)``.
    energy : (chain,) ndarray
        Potential energy at each start (lower is better).
    optimised : (chain,) bool ndarray
        Whether BFGS converged (gradient below its tolerance) to a finite optimum; a start
        that did not is the best point found, or its prior draw if nothing better.
    iterations : (chain,) int ndarray
        BFGS iterations used.
    """

    params: dict[str, np.ndarray]
    energy: np.ndarray
    optimised: np.ndarray
    iterations: np.ndarray


def optimised_starts(key: jax.Array, numpyro_model: Any, n_starts: int, *,
                     max_iterations: int = 200, restarts: int = 3) -> ModeStarts:
    """``n_starts`` local posterior modes of ``numpyro_model`` (no arguments), each from its
    own prior draw (see the module docstring)."""
    if int(n_starts) < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    keys = jax.random.split(key, int(n_starts))
    info = initialize_model(keys[0], numpyro_model, init_strategy=init_to_sample)
    potential = info.potential_fn
    _, unravel = ravel_pytree(info.param_info.z)

    @jax.jit
    def energy_flat(flat):
        return potential(unravel(flat))

    params, energies, ok, iterations = [], [], [], []
    for k in keys:
        start = initialize_model(k, numpyro_model, init_strategy=init_to_sample).param_info.z
        flat0, _ = ravel_pytree(start)
        flat, used, converged = flat0, 0, False
        for _ in range(restarts + 1):  # BFGS's line search can stall far out: restart there
            result = jax.scipy.optimize.minimize(energy_flat, flat, method="BFGS",
                                                 options={"maxiter": int(max_iterations)})
            used += int(result.nit)
            if not (np.isfinite(float(result.fun)) and np.all(np.isfinite(result.x))):
                break
            flat, converged = result.x, bool(result.success)
            if converged:
                break
        e0, e1 = float(energy_flat(flat0)), float(energy_flat(flat))
        good = bool(np.isfinite(e1) and e1 <= e0)
        params.append(unravel(flat if good else flat0))
        energies.append(e1 if good else e0)
        ok.append(good and converged)
        iterations.append(used)
    stacked = {name: np.stack([np.asarray(p[name]) for p in params]) for name in params[0]}
    return ModeStarts(stacked, np.asarray(energies), np.asarray(ok), np.asarray(iterations))


def posterior_mode(key: jax.Array, model: Any, data: Any, n_starts: int
                   ) -> tuple[Any, dict[str, jax.Array], float]:
    """The best of ``n_starts`` local modes (:func:`optimised_starts`) of the posterior of
    the tracer ``model`` given its prepared ``data``: the NumPyro model (no arguments), the
    unconstrained mode and its potential energy."""

    def numpyro_model() -> None:
        model(data)

    found = optimised_starts(key, numpyro_model, int(n_starts))
    best = int(np.argmin(found.energy))
    mode = {k: jnp.asarray(v[best]) for k, v in found.params.items()}
    return numpyro_model, mode, float(found.energy[best])


def constrained(numpyro_model: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The constrained (physical) values of unconstrained ``params`` (one start)."""
    from numpyro.infer.util import constrain_fn

    return constrain_fn(numpyro_model, (), {}, {k: jnp.asarray(v) for k, v in params.items()})


def mean_state_field(model: Any, data: Any, params: dict[str, Any]) -> np.ndarray | None:
    """The mean state of a non-conserved model given the data, at ``params``: the field
    ``mean_state_vectors @ E[state | y]`` (n_wet,), tracer units, about the basin level
    (mass-free); None for a model without a mean state.

    The mean-state coefficients are static, so their filtered estimate at the last analysis
    time is already the smoothed one (every observation seen): one Kalman filter pass. The
    ensemble state methods relax their anomalies toward this field (the exact model's
    ``dc/dt = ... - (c - m)/tau``), instead of toward the basin level alone.
    """
    if model.conserved or not model.n_mean:
        return None
    return _mean_state_of(model, _last_filtered_mean(model, data, params))


def state_fields(model: Any, data: Any, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """``mean_state`` (:func:`mean_state_field`) and ``seasonal`` (:func:`seasonal_field`),
    those the model has, from one Kalman filter pass."""
    has_mean = not model.conserved and bool(model.n_mean)
    has_season = bool(getattr(model, "n_season", 0))
    if not (has_mean or has_season):
        return {}
    last = _last_filtered_mean(model, data, params)
    out = {"mean_state": _mean_state_of(model, last)} if has_mean else {}
    if has_season:
        out["seasonal"] = _seasonal_of(model, data, last)
    return out


def _mean_state_of(model: Any, last: np.ndarray) -> np.ndarray:
    return np.asarray(model.mean_state_vectors() @ last)


def _last_filtered_mean(model: Any, data: Any, params: dict[str, Any]) -> np.ndarray:
    """The Kalman filter's mean of the state at the last analysis time, at ``params``."""
    from tracerbayes.exact.kalman import KalmanObservations, kalman_filter

    values = {k: jnp.asarray(v) for k, v in params.items()}
    obs = KalmanObservations(data.values, data.operators,
                             model.observation_variances(values, data), data.valid)
    return np.asarray(kalman_filter(model.state_space(values, data), obs).filtered_means[-1])


def seasonal_field(model: Any, data: Any, params: dict[str, Any]) -> np.ndarray | None:
    """The seasonal forcing of a model with one given the data, at ``params``: (2 H, n_wet),
    tracer units per day, the fields ``a_h`` and ``b_h`` of ``f_s = sum_h a_h cos(h omega t) +
    b_h sin(h omega t)`` (rows ``a_1, b_1, a_2, b_2, ...``; ``H = seasonal_harmonics``) with
    ``t`` counted from the first analysis time; None without one.

    Like the mean state, the pair ``(p, r)`` has no noise, so its filtered estimate at the last
    time is the smoothed one; it is rotated back to the first time."""
    if not getattr(model, "n_season", 0):
        return None
    return _seasonal_of(model, data, _last_filtered_mean(model, data, params))


def _seasonal_of(model: Any, data: Any, last: np.ndarray) -> np.ndarray:
    """The fields ``(a_h, b_h)`` of :func:`seasonal_field` from the last filtered state
    mean."""
    from tracerbayes.exact.model import DAY, YEAR_DAYS

    cols_p, cols_r = model.seasonal_columns
    S = model.n_season
    theta = 2.0 * np.pi * float(np.sum(np.asarray(data.dts))) / (YEAR_DAYS * DAY)
    vectors = model.basis.vectors[:, :S]
    rows = []
    for h in range(model.seasonal_harmonics):
        p, r = last[cols_p[h * S:(h + 1) * S]], last[cols_r[h * S:(h + 1) * S]]
        angle = (h + 1) * theta
        a = p * np.cos(angle) - r * np.sin(angle)
        b = p * np.sin(angle) + r * np.cos(angle)
        rows += [vectors @ a, vectors @ b]
    return np.stack(rows)
