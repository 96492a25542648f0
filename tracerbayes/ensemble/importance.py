"""Importance-sampling correction of an approximate posterior ensemble (e.g. EKS draws).

The ensemble Kalman sampler is exact only for a linear forward map: on a nonlinear one its
ensemble is a Gaussian-like approximation (the forward map is linearised over the ensemble),
which can sit off-centre and be too narrow where the posterior is skewed or curved. When the
exact unnormalised log posterior ``log pi(theta)`` can be evaluated (here: the reduced-basis
Kalman filter's marginal likelihood times the prior), importance sampling removes that error:

1. fit a proposal to the ensemble: a multivariate Student-t with ``dof`` degrees of freedom,
   centred at the ensemble mean, scale matrix ``scale**2`` times the ensemble covariance
   (heavier tails and a wider body than the ensemble, so that the proposal covers the
   posterior's tails);
2. draw ``n_draws`` points ``theta_i`` from it and evaluate ``log w_i = log pi(theta_i) -
   log q(theta_i)``;
3. stabilise the weights by Pareto smoothing (PSIS, Vehtari, Simpson, Gelman, Yao & Gabry
   [1], :func:`arviz.psislw`) and report its shape estimate ``k``: below 0.5 the estimates are
   reliable, 0.5-0.7 usable, above 0.7 not to be trusted (the proposal misses the posterior);
4. optionally repeat with the proposal refitted to the weighted draws (adaptive importance
   sampling, ``rounds > 1``): the first proposal inherits the ensemble's error, the next one
   is centred and shaped by the corrected posterior; only the last round's draws are kept;
5. resample (systematic resampling) to equally weighted draws.

Where the log posterior is differentiable, :func:`laplace_approximation` gives another
proposal (or an independent reference for a sampler): the mode by L-BFGS with JAX gradients
and the inverse Hessian there; pass it as an ensemble-free proposal through ``proposal=``.

Weighted expectations are consistent for the exact posterior as ``n_draws`` grows, whatever
the ensemble's error, as long as the proposal's tails are heavier than the posterior's.

References
----------
.. [1] A. Vehtari, D. Simpson, A. Gelman, Y. Yao and J. Gabry, "Pareto smoothed importance
   sampling", Journal of Machine Learning Research 25(72), 1-58, 2024.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from tqdm.auto import tqdm

__all__ = ["ImportanceResult", "importance_correct", "laplace_approximation",
           "student_t_log_density", "systematic_resample"]


class ImportanceResult(NamedTuple):
    """Output of :func:`importance_correct` (all in the unconstrained parameter space).

    Attributes
    ----------
    draws : ndarray, shape (n_draws, p)
        Proposal draws.
    log_weights : ndarray, shape (n_draws,)
        Pareto-smoothed, normalised log weights (``logsumexp = 0``).
    log_target : ndarray, shape (n_draws,)
        Unnormalised log posterior at each draw.
    pareto_k : float
        PSIS shape estimate: < 0.5 good, 0.5-0.7 usable, > 0.7 unreliable.
    ess : float
        Kish effective sample size ``1 / sum w_i^2`` of the smoothed weights.
    resampled : ndarray, shape (n_draws, p)
        Equally weighted draws by systematic resampling.
    """

    draws: np.ndarray
    log_weights: np.ndarray
    log_target: np.ndarray
    pareto_k: float
    ess: float
    resampled: np.ndarray


def student_t_log_density(x: jax.Array, loc: jax.Array, chol: jax.Array,
                          dof: float) -> jax.Array:
    """Log density of the multivariate Student-t ``t_dof(loc, chol chol^T)`` at rows of ``x``."""
    p = loc.shape[-1]
    z = jax.scipy.linalg.solve_triangular(chol, (x - loc).T, lower=True)
    maha = jnp.sum(z**2, axis=0)
    return (gammaln((dof + p) / 2) - gammaln(dof / 2) - p / 2 * jnp.log(dof * jnp.pi)
            - jnp.sum(jnp.log(jnp.diagonal(chol))) - (dof + p) / 2 * jnp.log1p(maha / dof))


def systematic_resample(key: jax.Array, log_weights: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` systematic-resampling draws from normalised ``log_weights``."""
    w = np.exp(np.asarray(log_weights) - np.max(log_weights))
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    u = (float(jax.random.uniform(key)) + np.arange(n)) / n
    return np.searchsorted(cdf, u, side="right").clip(0, len(cdf) - 1)


def laplace_approximation(log_density: Callable[[jax.Array], jax.Array], start: jax.Array,
                          *, gtol: float = 1e-6, max_iterations: int = 200
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Mode and covariance ``(-Hessian)^{-1}`` of a differentiable log density.

    Parameters
    ----------
    log_density : callable
        ``(p,) -> ()``, JAX-differentiable (e.g. a Kalman filter's log likelihood plus the log
        prior, in the unconstrained parameters).
    start : Array, shape (p,)
        Starting point of the L-BFGS search (e.g. a sampler's ensemble mean).
    gtol, max_iterations
        Convergence tolerance on the projected gradient, and the iteration cap.

    Returns
    -------
    mode : ndarray, shape (p,)
    cov : ndarray, shape (p, p)

    Raises
    ------
    ValueError
        If the search does not converge, or the Hessian at its end is not negative definite
        (not a maximum: a saddle or a flat direction), naming the offending eigenvalue.
    """
    import scipy.optimize

    negative = jax.jit(jax.value_and_grad(lambda x: -log_density(x)))

    def fun(x):
        value, grad = negative(jnp.asarray(x))
        return float(value), np.asarray(grad, dtype=float)

    x0 = np.asarray(start, dtype=float)
    found = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                    options={"gtol": gtol, "maxiter": int(max_iterations)})
    if not found.success or not np.all(np.isfinite(found.x)):
        raise ValueError(f"the mode search from {x0} did not converge ({found.message}); "
                         "start nearer the posterior (e.g. from a sampler's mean)")
    # column by column (forward over reverse): memory of one gradient, not p of them
    gradient = jax.grad(log_density)
    at = jnp.asarray(found.x)
    column = jax.jit(lambda e: jax.jvp(gradient, (at,), (e,))[1])
    hessian = np.stack([np.asarray(column(e)) for e in jnp.eye(at.size)], axis=1)
    hessian = 0.5 * (hessian + hessian.T)
    eigenvalues = np.linalg.eigvalsh(hessian)
    if not eigenvalues.max() < 0:
        raise ValueError(f"the Hessian of the log density at {found.x} is not negative "
                         f"definite (largest eigenvalue {eigenvalues.max():.3g}): no Laplace "
                         "approximation there (a flat or saddle direction; tighten the prior)")
    # L-BFGS stops on a relative change of the value; one Newton step with this Hessian
    # polishes the mode (exact for a quadratic), kept only if it does not lower the density
    # (the search's last value and gradient, of -log_density, are at found.x already)
    polished = found.x + np.linalg.solve(hessian, found.jac)
    mode = polished if fun(polished)[0] <= found.fun else found.x
    return mode, np.linalg.inv(-hessian)


def importance_correct(
    key: jax.Array,
    log_target: Callable[[jax.Array], jax.Array],
    ensemble: jax.Array | None,
    n_draws: int,
    *,
    proposal: tuple[jax.Array, jax.Array] | None = None,
    scale: float = 1.5,
    dof: float = 5.0,
    rounds: int = 1,
    batch_size: int | None = None,
    progress: bool = False,
) -> ImportanceResult:
    """Importance-sample ``log_target`` with a Student-t proposal fitted to ``ensemble``.

    Parameters
    ----------
    key : jax.Array
        PRNG key for the proposal draws and the resampling.
    log_target : callable
        ``(B, p) -> (B,)``: unnormalised log posterior of a batch of parameter vectors.
    ensemble : Array, shape (J, p), or None
        Approximate posterior draws (unconstrained), e.g. the pooled EKS draws; needs
        ``J > p`` so that its covariance is nonsingular. None with ``proposal``.
    n_draws : int
        Proposal draws (the cost: ``n_draws`` evaluations of ``log_target``).
    proposal : (mean, cov), optional
        Centre and covariance of the first proposal instead of the ensemble's moments (e.g.
        from :func:`laplace_approximation`).
    scale : float
        Proposal scale over the ensemble's (or ``proposal``'s) covariance (> 0; 1.5 widens
        it by half).
    dof : float
        Student-t degrees of freedom (> 2; smaller is heavier-tailed).
    rounds : int
        Proposal fits (>= 1); round ``r > 1`` refits the Student-t to round ``r - 1``'s
        weighted draws. The cost is ``rounds * n_draws`` evaluations.
    batch_size : int, optional
        Draws per ``log_target`` call (default: the ensemble size, or 64 with ``proposal``).
    progress : bool
        Show a progress bar over the ``log_target`` batches.

    Returns
    -------
    ImportanceResult
    """
    if (ensemble is None) == (proposal is None):
        raise ValueError("give either an ensemble or a proposal (mean, cov), not both")
    if proposal is not None:
        loc, cov = (np.asarray(a, dtype=float) for a in proposal)
        if loc.ndim != 1 or cov.shape != (loc.size, loc.size):
            raise ValueError(f"proposal must be (mean (p,), cov (p, p)), got shapes "
                             f"{loc.shape} and {cov.shape}")
    else:
        members = np.asarray(ensemble, dtype=float)
        if members.ndim != 2 or members.shape[0] <= members.shape[1]:
            raise ValueError(f"ensemble must have shape (J, p) with J > p for a nonsingular "
                             f"covariance, got {members.shape}")
        loc = members.mean(axis=0)
        cov = np.cov(members.T).reshape(loc.size, loc.size)
    if int(n_draws) < 2 or int(n_draws) != n_draws:
        raise ValueError(f"n_draws must be an integer >= 2, got {n_draws}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if not dof > 2:
        raise ValueError(f"dof must be > 2 (finite proposal variance), got {dof}")
    if int(rounds) < 1 or int(rounds) != rounds:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds}")
    default_batch = len(ensemble) if ensemble is not None else 64
    batch = default_batch if batch_size is None else int(batch_size)
    with tqdm(total=int(rounds) * int(n_draws), desc="importance", unit="draw",
              disable=not progress) as bar:
        for r, key_round in enumerate(jax.random.split(key, int(rounds))):
            try:
                chol = np.linalg.cholesky(cov * scale**2)
            except np.linalg.LinAlgError as err:
                source = ("proposal's" if proposal is not None else "ensemble's") if r == 0 \
                    else f"round {r} weighted draws'"
                raise ValueError(f"the {source} covariance is singular (members collapsed onto "
                                 "a subspace); run more sampler iterations or a larger "
                                 "ensemble, or more draws") from err
            draws, log_pi, log_w, k = _one_round(key_round, log_target, loc, chol, dof,
                                                 int(n_draws), batch, bar)
            w = np.exp(log_w)
            if r + 1 < rounds:  # the next proposal: this round's weighted moments
                loc = w @ draws
                cov = (draws - loc).T @ ((draws - loc) * w[:, None])
    index = systematic_resample(jax.random.fold_in(key, int(rounds)), log_w, len(draws))
    return ImportanceResult(draws=draws, log_weights=log_w, log_target=log_pi,
                            pareto_k=k, ess=float(1.0 / np.sum(w**2)),
                            resampled=draws[index])


def _one_round(key, log_target, loc, chol, dof, n_draws, batch, bar):
    """Draw from ``t_dof(loc, chol chol^T)``; return the draws, ``log pi``, the normalised
    PSIS log weights and the Pareto ``k``."""
    import arviz as az

    p = loc.shape[0]
    k_normal, k_chi = jax.random.split(key)
    z = jax.random.normal(k_normal, (n_draws, p), dtype=jnp.float64)
    g = jax.random.gamma(k_chi, dof / 2, (n_draws,), dtype=jnp.float64) / (dof / 2)
    draws = np.asarray(loc + (z @ chol.T) / jnp.sqrt(g)[:, None])
    parts = []
    for i in range(0, n_draws, batch):
        parts.append(np.asarray(log_target(jnp.asarray(draws[i:i + batch]))))
        bar.update(len(parts[-1]))
    log_pi = np.concatenate(parts)
    ok = np.isfinite(log_pi) | (log_pi == -np.inf)  # -inf: zero density, a valid answer
    if not np.all(ok):
        raise FloatingPointError(f"log_target is NaN or +inf at {int(np.sum(~ok))} of "
                                 f"{n_draws} proposal draws (e.g. at {draws[~ok][0]}); the "
                                 "proposal reaches parameters the model cannot evaluate: "
                                 "lower `scale`, or return -inf there")
    finite = np.isfinite(log_pi)
    if np.sum(finite) < 2:
        raise FloatingPointError(f"log_target is -inf at {n_draws - int(np.sum(finite))} of "
                                 f"{n_draws} proposal draws: the proposal misses the posterior")
    log_q = np.asarray(student_t_log_density(jnp.asarray(draws), jnp.asarray(loc),
                                             jnp.asarray(chol), dof))
    smoothed, k = az.psislw(log_pi[finite] - log_q[finite])
    smoothed = np.asarray(smoothed, dtype=float)
    smoothed -= smoothed.max()
    log_w = np.full(n_draws, -np.inf)
    log_w[finite] = smoothed - np.log(np.sum(np.exp(smoothed)))
    return draws, log_pi, log_w, float(np.asarray(k))
