"""Laplace fit of the exact model: the posterior mode of the parameters, a Gaussian about it,
and Rao-Blackwellised maps on a basis fine enough for the field (``fit(method="laplace")``).

NUTS over the parameters costs thousands of Kalman-filter gradients; on a grid of thousands of
wet cells the basis that resolves the field (hundreds of modes) makes each of them slow. With
thousands of observations the parameter posterior is narrow, and a Gaussian in NumPyro's
unconstrained space about its mode (the Laplace approximation) describes it well. So:

1. the mode ``z*`` of the unconstrained posterior of the model on ``n_modes`` modes, by BFGS
   from ``starts`` prior draws (:func:`tracerbayes.exact.mode.optimised_starts`);
2. its covariance ``(-nabla^2 log p(z* | y))^{-1}`` (Hessian column by column, forward over
   reverse);
3. ``draws`` parameter sets ``z_s ~ N(z*, C)`` mapped to physical values;
4. the maps: for each draw the RTS smoother of the same model on ``map_modes`` modes (default:
   enough modes to carry 95% of the variance of the fitted noise field,
   :func:`tracerbayes.exact.priors.modes_needed`, at most ``max_map_modes``), mixed by the law
   of total variance, as for NUTS.

Measured on the independent twin (``benchmarks/independent_twin.py``, 5,307 wet cells): the
maps on 250 modes with the 100-mode fit's parameters score as the space-time GP does, where
the 100-mode maps are 10% worse and a 64-member LETKF 50% worse.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn, potential_energy

from tracerbayes.exact.mode import posterior_mode
from tracerbayes.exact.model import AdvectionDiffusionModel
from tracerbayes.exact.priors import modes_needed
from tracerbayes.exact.truncation import fitted_scale

__all__ = ["fit_laplace", "map_modes_for"]


def map_modes_for(model: AdvectionDiffusionModel, params: dict[str, Any], *,
                  fraction: float = 0.95, max_modes: int = 400) -> int:
    """Modes that carry ``fraction`` of the variance of the fitted process noise (and first
    map): the shorter of the two fitted lengthscales, at most ``max_modes`` and the wet cells."""
    length, area = fitted_scale(model, params)
    needed = modes_needed(area, length, model.priors.smoothness, fraction)
    return int(min(max(needed, model.n_modes), max_modes, model.grid.n_wet))


def _hessian(energy, at: jax.Array) -> np.ndarray:
    gradient = jax.grad(energy)
    column = jax.jit(lambda e: jax.jvp(gradient, (at,), (e,))[1])
    h = np.stack([np.asarray(column(e)) for e in jnp.eye(at.size)], axis=1)
    return 0.5 * (h + h.T)


def fit_laplace(model: AdvectionDiffusionModel, obs: Any, times: Any, *, draws: int = 20,
                starts: int = 2, map_modes: int | str = "auto", max_map_modes: int = 400,
                seed: int = 0, progress: bool = True, drop_invalid: bool = False) -> Any:
    """Fit ``model`` by the Laplace method of the module docstring; a
    :class:`~tracerbayes.posterior.exact.Posterior` with ``draws`` parameter draws (one
    chain) whose maps use the ``map_modes`` model."""
    from tracerbayes.posterior.exact import Posterior

    if int(draws) < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    say = print if progress else (lambda *a, **k: None)
    data = model.prepare(obs, times, drop_invalid=drop_invalid)
    say(f"Laplace: posterior mode of the {model.n_modes}-mode model ({starts} BFGS starts) ...",
        flush=True)
    numpyro_model, mode, mode_energy = posterior_mode(
        jax.random.fold_in(jax.random.key(seed), 3), model, data, starts)
    flat, unravel = ravel_pytree(mode)

    def energy(z):
        return potential_energy(numpyro_model, (), {}, unravel(z))

    hessian = _hessian(energy, flat)
    eigenvalues = np.linalg.eigvalsh(hessian)
    key = jax.random.fold_in(jax.random.key(seed), 4)
    if eigenvalues.min() > 0:
        cov = jnp.asarray(np.linalg.inv(hessian))
        z = np.asarray(jax.random.multivariate_normal(key, flat, cov, shape=(int(draws),)))
        gaussian = True
    else:  # not a strict maximum: keep the mode (reported)
        z = np.repeat(np.asarray(flat)[None], int(draws), axis=0)
        gaussian = False
    # the latent sites are the parameters': map them without running the likelihood
    constrained = jax.jit(jax.vmap(lambda row: constrain_fn(model.sample_parameters, (), {},
                                                            unravel(row))))(jnp.asarray(z))
    samples = {name: np.asarray(v)[None] for name, v in constrained.items()}
    point = {k: np.median(v) for k, v in samples.items() if np.ndim(v) == 2}
    K = (map_modes_for(model, point, max_modes=max_map_modes) if map_modes == "auto"
         else int(map_modes))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in point.items())
    say(f"  mode: {shown}; maps on {K} modes", flush=True)
    fine = model if K == model.n_modes else model.with_modes(K)
    fine_data = fine.prepare(obs, times, drop_invalid=drop_invalid)
    settings = {"draws": int(draws), "starts": int(starts), "seed": int(seed),
                "fit_modes": int(model.n_modes), "map_modes": int(K),
                "potential_energy": mode_energy,
                "hessian_min_eigenvalue": float(eigenvalues.min()),
                "laplace_gaussian": gaussian}
    fitted = {} if fine is model else {"fit_model": model, "fit_data": data}
    return Posterior(fine, obs, times, fine_data, samples, {}, "laplace", settings, **fitted)
