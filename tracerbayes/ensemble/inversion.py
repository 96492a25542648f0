"""Ensemble Kalman inversion (EKI) and the ensemble Kalman sampler (EKS) for parameters.

Both methods move an ensemble ``theta_1, ..., theta_J`` of parameter vectors (``p`` each, in
an unconstrained space) using only evaluations of a forward map ``G: R^p -> R^d``, never its
derivatives, to fit data ``y = G(theta) + eta``, ``eta ~ N(0, Gamma)``.  With the ensemble
statistics (population, ``1/J``)::

    C^{tG} = < (theta_k - mean theta)(G_k - mean G)^T >,   C^{GG} = < (G_k - mean G)(...)^T >

EKI (Iglesias, Law & Stuart [1], in the time-stepped data-misfit form of Schillings &
Stuart [2]) updates every member by a Kalman step with step size ``h_n``::

    theta_j <- theta_j + h_n C^{tG} (h_n C^{GG} + Gamma)^{-1} (y_j - G(theta_j))        (1)

with ``y_j = y`` (deterministic) or ``y_j = y + h_n^{-1/2} Gamma^{1/2} xi_j`` (perturbed
observations).  The ensemble collapses, and for a linear ``G`` its mean converges to the
least-squares solution within the span of the initial ensemble.  The Tikhonov variant [3]
runs (1) on the augmented map ``[G(theta); theta]``, data ``[y; m_0]`` and noise
``diag(Gamma, C_0)`` and converges to the MAP (ridge) estimate of the prior ``N(m_0, C_0)``.

EKS (Garbuno-Inigo, Hoffmann, Li & Stuart [4], Eq. (4.4)-(4.5)) is a split-step discretisation
of interacting Langevin dynamics whose mean-field limit is invariant for the posterior
``N(m_0, C_0)``-prior times likelihood::

    (I + h_n C Gamma_0^{-1}) theta*_j = theta_j - h_n C^{tG} Gamma^{-1} (G_j - y)
                                         + h_n C Gamma_0^{-1} m_0 + h_n (p+1)/J (theta_j - m)
    theta_j <- theta*_j + sqrt(2 h_n) C^{1/2} xi_j                                        (2)

where ``C`` is the ensemble covariance and the ``(p+1)/J`` term is the finite-ensemble
correction of Nüsken & Reich [5] (optional) that makes the posterior exactly invariant for
finite ``J``; ``C^{1/2}`` is the symmetric-eigendecomposition square root (fine for singular
``C``).

Step size: fixed ``h_n = h_0``, or the adaptive rule of Kovachki & Stuart [6] used in [4]
(Section 4): ``h_n = h_0 / (||D_n||_F + epsilon)`` with
``D_{jk} = J^{-1} <G_k - mean G, Gamma^{-1} (G_j - y)>``.  On linear problems it lets EKI
converge geometrically instead of as ``t^{-1/2}``.

Parameters are unconstrained; :class:`ParameterSpace` maps them to physical units (log for
positive quantities such as diffusivity in m^2/s, noise sd, lengthscale in km) and carries
the Gaussian prior in the unconstrained space.

References
----------
.. [1] M. A. Iglesias, K. J. H. Law and A. M. Stuart, "Ensemble Kalman methods for inverse
   problems", Inverse Problems 29, 045001, 2013.
.. [2] C. Schillings and A. M. Stuart, "Analysis of the ensemble Kalman filter for inverse
   problems", SIAM J. Numer. Anal. 55(3), 1264-1290, 2017.
.. [3] N. K. Chada, A. M. Stuart and X. T. Tong, "Tikhonov regularization within ensemble
   Kalman inversion", SIAM J. Numer. Anal. 58(2), 1263-1294, 2020.
.. [4] A. Garbuno-Inigo, F. Hoffmann, W. Li and A. M. Stuart, "Interacting Langevin
   diffusions: gradient structure and ensemble Kalman sampler", SIAM J. Appl. Dyn. Syst.
   19(1), 412-441, 2020.
.. [5] N. Nüsken and S. Reich, "Note on interacting Langevin diffusions: gradient structure
   and ensemble Kalman sampler by Garbuno-Inigo, Hoffmann, Li and Stuart", arXiv:1908.10890,
   2019.
.. [6] N. B. Kovachki and A. M. Stuart, "Ensemble Kalman inversion: a derivative-free
   technique for machine learning tasks", Inverse Problems 35, 095005, 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.linalg import cho_factor, cho_solve, solve_triangular
from jax.typing import ArrayLike
from tqdm.auto import tqdm

from tracerbayes.exact.kalman import KalmanObservations, LinearGaussianSSM, kalman_filter, psd_sqrt

__all__ = [
    "EnsembleKalmanResult",
    "ParameterSpace",
    "eki",
    "eks",
    "kalman_innovations",
    "parameter_space",
    "prior_ensemble",
    "to_inference_data",
    "whitened_innovations",
]

Forward = Callable[[jax.Array], jax.Array]


# --------------------------------------------------------------------------------------------
# Parameter space: unconstrained <-> physical, Gaussian prior in the unconstrained space
# --------------------------------------------------------------------------------------------


class ParameterSpace(NamedTuple):
    """Named parameters, their transforms and the Gaussian prior of the unconstrained vector.

    Attributes
    ----------
    names : tuple of str
        Parameter names, in vector order.
    log_scale : tuple of bool
        ``True`` where the physical parameter is positive and ``physical = exp(theta)``
        (e.g. diffusivity in m^2/s, noise sd, lengthscale in km); ``False`` for identity.
    prior_mean : Array, shape (p,)
        Prior mean ``m_0`` of the unconstrained vector.
    prior_cov : Array, shape (p, p)
        Prior covariance ``C_0`` of the unconstrained vector.
    """

    names: tuple[str, ...]
    log_scale: tuple[bool, ...]
    prior_mean: jax.Array
    prior_cov: jax.Array

    def to_physical(self, theta: ArrayLike) -> jax.Array:
        """Unconstrained ``(..., p)`` -> physical units ``(..., p)``."""
        return jnp.where(np.asarray(self.log_scale), jnp.exp(theta), theta)

    def to_unconstrained(self, physical: ArrayLike) -> jax.Array:
        """Physical units ``(..., p)`` -> unconstrained ``(..., p)`` (log where positive)."""
        flags = np.asarray(self.log_scale)
        safe = jnp.where(flags, physical, 1.0)  # no log of a negative identity parameter
        return jnp.where(flags, jnp.log(safe), physical)


def _gaussian_in_unconstrained(name: str, prior: dist.Distribution) -> tuple[bool, float, float]:
    """``(log_scale, mean, sd)`` of a scalar Normal or LogNormal prior, in its Normal space."""
    if prior.batch_shape != () or prior.event_shape != ():
        raise ValueError(
            f"prior of {name!r} must be scalar, got batch shape {prior.batch_shape} and event "
            f"shape {prior.event_shape}; give one distribution per parameter"
        )
    if isinstance(prior, dist.LogNormal):
        return True, float(prior.loc), float(prior.scale)
    if isinstance(prior, dist.Normal):
        return False, float(prior.loc), float(prior.scale)
    raise TypeError(
        f"prior of {name!r} is {type(prior).__name__}; ensemble Kalman methods need a Gaussian "
        "prior in the unconstrained space: use numpyro.distributions.Normal, or LogNormal for "
        "a positive parameter"
    )


def parameter_space(priors: Mapping[str, dist.Distribution]) -> ParameterSpace:
    """Build a :class:`ParameterSpace` from scalar NumPyro priors.

    ``Normal(loc, scale)`` is used as is; ``LogNormal(loc, scale)`` becomes
    ``log(parameter) ~ Normal(loc, scale)``.  The priors are independent, so ``C_0`` is
    diagonal.

    Raises
    ------
    TypeError
        For any other distribution (name and type given).
    """
    if not priors:
        raise ValueError("priors is empty: give at least one {name: distribution}")
    items = [(name, *_gaussian_in_unconstrained(name, prior)) for name, prior in priors.items()]
    names, log_scale, means, sds = zip(*items, strict=True)
    return ParameterSpace(
        names=tuple(names),
        log_scale=tuple(log_scale),
        prior_mean=jnp.asarray(means),
        prior_cov=jnp.diag(jnp.asarray(sds) ** 2),
    )


def prior_ensemble(
    key: jax.Array, priors: Mapping[str, dist.Distribution], ensemble_size: int
) -> jax.Array:
    """Draw an initial ensemble, shape ``(ensemble_size, p)``, in the unconstrained space.

    Each parameter is sampled from its NumPyro distribution (an independent key each) and
    mapped by the transform of :func:`parameter_space`, so a LogNormal prior yields a Normal
    column in log space.
    """
    space = parameter_space(priors)
    keys = jax.random.split(key, len(priors))
    columns = [prior.sample(k, (ensemble_size,)) for k, prior in zip(keys, priors.values(),
                                                                      strict=True)]
    return space.to_unconstrained(jnp.stack(columns, axis=-1))


# --------------------------------------------------------------------------------------------
# The ensemble updates
# --------------------------------------------------------------------------------------------


class EnsembleKalmanResult(NamedTuple):
    """Output of :func:`eki` or :func:`eks`.

    Attributes
    ----------
    ensembles : Array, shape (n_iterations + 1, J, p)
        Ensemble history in the unconstrained space; entry 0 is ``theta0``.
    misfits : Array, shape (n_iterations + 1,)
        Ensemble average of the data misfit ``|Gamma^{-1/2} (y - G(theta_j))|^2`` at each
        iterate (dimensionless).
    time_steps : Array, shape (n_iterations,)
        Step sizes ``h_n`` used.
    final_physical : Array, shape (J, p)
        Last ensemble in physical units (identity when no ``space`` was given).
    method : str
        ``"eki"`` or ``"eks"``.
    """

    ensembles: jax.Array
    misfits: jax.Array
    time_steps: jax.Array
    final_physical: jax.Array
    method: str


def _check_problem(theta0, y, noise_cov) -> tuple[int, int, int]:
    if theta0.ndim != 2:
        raise ValueError(f"theta0 must have shape (J, p), got {theta0.shape}")
    J, p = theta0.shape
    if J < 2:
        raise ValueError(f"the ensemble needs at least 2 members, got J = {J}")
    if y.ndim != 1:
        raise ValueError(f"y must have shape (d,), got {y.shape}")
    d = y.shape[0]
    if noise_cov.shape != (d, d):
        raise ValueError(f"noise_cov must have shape ({d}, {d}) to match y, got {noise_cov.shape}")
    return J, p, d


def _statistics(theta: jax.Array, g: jax.Array):
    """Anomalies ``A`` (J, p), ``B`` (J, d) and cross/auto covariances (population, 1/J)."""
    J = theta.shape[0]
    A = theta - theta.mean(axis=0)  # parameter anomalies
    B = g - g.mean(axis=0)  # forward-map anomalies
    return A, B, A.T @ B / J, B.T @ B / J


def _step_size(B, residual_white_solve, step, adaptive, epsilon):
    """``h_0`` or ``h_0 / (||D||_F + epsilon)``, ``D_{jk} = <B_k, Gamma^{-1}(G_j - y)> / J``."""
    if not adaptive:
        return jnp.asarray(step, dtype=B.dtype)
    # ||W B^T||_F^2 = tr((W^T W)(B^T B)): O(J d^2) instead of forming the J x J matrix D
    gram_w, gram_b = residual_white_solve.T @ residual_white_solve, B.T @ B
    norm_D = jnp.sqrt(jnp.clip(jnp.sum(gram_w * gram_b), 0.0, None)) / B.shape[0]
    return step / (norm_D + epsilon)


def _misfit(g, y, noise_chol):
    white = solve_triangular(noise_chol, (g - y).T, lower=True)
    return jnp.mean(jnp.sum(white**2, axis=0))


def _run(update, key, theta0, n_iterations, progress, desc):
    """Iterate ``theta, misfit, h = update(key_n, theta)``.

    One compiled ``lax.scan`` without a progress bar; with ``progress`` a Python loop over the
    same jitted update (same numbers), so that tqdm can report each iteration.
    """
    if int(n_iterations) < 1:
        raise ValueError(f"n_iterations must be a positive integer, got {n_iterations}")
    keys = jax.random.split(key, n_iterations)
    if not progress:
        def body(theta, key_n):
            theta, misfit, h = update(key_n, theta)
            return theta, (theta, misfit, h)

        _, (thetas, misfits, steps) = jax.jit(
            lambda theta0, keys: jax.lax.scan(body, theta0, keys))(theta0, keys)
        return jnp.concatenate([theta0[None], thetas]), list(misfits), steps
    update = jax.jit(update)
    theta, ensembles, misfits, steps = theta0, [theta0], [], []
    for n in tqdm(range(n_iterations), desc=desc):
        theta, misfit, h = update(keys[n], theta)
        ensembles.append(theta)
        misfits.append(misfit)
        steps.append(h)
    return jnp.stack(ensembles), misfits, jnp.stack(steps)


def eki(
    key: jax.Array,
    forward: Forward,
    theta0: jax.Array,
    y: jax.Array,
    noise_cov: jax.Array,
    n_iterations: int,
    *,
    prior_mean: jax.Array | None = None,
    prior_cov: jax.Array | None = None,
    step: float = 1.0,
    adaptive_step: bool = True,
    step_epsilon: float = 1e-12,
    perturb_observations: bool = False,
    space: ParameterSpace | None = None,
    progress: bool = False,
) -> EnsembleKalmanResult:
    """Ensemble Kalman inversion, Eq. (1) of the module docstring ([1], [2]; [3] if a prior).

    Parameters
    ----------
    key : jax.Array
        PRNG key (used only with ``perturb_observations``).
    forward : callable
        ``G(theta (p,)) -> (d,)``, a JAX function of the unconstrained vector (compose with
        ``space.to_physical`` for physical units); vmapped over the ensemble.
    theta0 : Array, shape (J, p)
        Initial ensemble (e.g. :func:`prior_ensemble`); the iterates stay in its span.
    y : Array, shape (d,)
        Data.
    noise_cov : Array, shape (d, d)
        Observation-error covariance ``Gamma`` (SPD).
    n_iterations : int
        Number of updates.
    prior_mean, prior_cov : Array, shapes (p,) and (p, p), optional
        Give both for Tikhonov-regularised EKI [3] (converges to the MAP/ridge estimate).
    step : float
        ``h_0``; with ``adaptive_step=False`` and ``step=1`` this is the scheme of [1].
    adaptive_step : bool
        ``h_n = h_0 / (||D_n||_F + step_epsilon)`` [6]; geometric convergence on linear
        problems.
    perturb_observations : bool
        Use ``y_j = y + h_n^{-1/2} Gamma^{1/2} xi_j`` (stochastic EKI) instead of ``y``.
    space : ParameterSpace, optional
        Used only to report ``final_physical``.
    progress : bool
        Show a tqdm progress bar over iterations.

    Returns
    -------
    EnsembleKalmanResult
    """
    theta0, y, noise_cov = jnp.asarray(theta0), jnp.asarray(y), jnp.asarray(noise_cov)
    _, p, d = _check_problem(theta0, y, noise_cov)
    regularised = prior_mean is not None or prior_cov is not None
    if regularised:
        if prior_mean is None or prior_cov is None:
            raise ValueError("Tikhonov EKI needs both prior_mean (p,) and prior_cov (p, p)")
        prior_mean, prior_cov = jnp.asarray(prior_mean), jnp.asarray(prior_cov)
        if prior_mean.shape != (p,) or prior_cov.shape != (p, p):
            raise ValueError(f"prior_mean must be ({p},) and prior_cov ({p}, {p}), got "
                             f"{prior_mean.shape} and {prior_cov.shape}")
        target = jnp.concatenate([y, prior_mean])
        gamma = jax.scipy.linalg.block_diag(noise_cov, prior_cov)
        augmented = lambda theta: jnp.concatenate([forward(theta), theta])  # noqa: E731
    else:
        target, gamma, augmented = y, noise_cov, forward
    noise_chol = jnp.linalg.cholesky(noise_cov)
    gamma_chol = jnp.linalg.cholesky(gamma)

    def update(key, theta):
        g = jax.vmap(augmented)(theta)
        misfit = _misfit(g[:, :d], y, noise_chol)
        _, B, C_tg, C_gg = _statistics(theta, g)
        residual = g - target
        h = _step_size(B, cho_solve((gamma_chol, True), residual.T).T, step, adaptive_step,
                       step_epsilon)
        if perturb_observations:
            xi = jax.random.normal(key, residual.shape, dtype=residual.dtype)
            residual = residual - xi @ gamma_chol.T / jnp.sqrt(h)
        S = cho_factor(h * C_gg + gamma, lower=True)
        theta = theta - h * cho_solve(S, residual.T).T @ C_tg.T
        return theta, misfit, h

    ensembles, misfits, steps = _run(update, key, theta0, n_iterations, progress, "EKI")
    misfits.append(_misfit(jax.vmap(forward)(ensembles[-1]), y, noise_chol))
    return _result(ensembles, misfits, steps, space, "eki")


def eks(
    key: jax.Array,
    forward: Forward,
    theta0: jax.Array,
    y: jax.Array,
    noise_cov: jax.Array,
    prior_mean: jax.Array,
    prior_cov: jax.Array,
    n_iterations: int,
    *,
    step: float = 1.0,
    adaptive_step: bool = True,
    step_epsilon: float = 1e-12,
    finite_ensemble_correction: bool = True,
    space: ParameterSpace | None = None,
    progress: bool = False,
) -> EnsembleKalmanResult:
    """Ensemble Kalman sampler, Eq. (2) of the module docstring ([4]; correction of [5]).

    Parameters
    ----------
    key : jax.Array
        PRNG key for the Langevin noise.
    forward, theta0, y, noise_cov, n_iterations
        As in :func:`eki`.
    prior_mean, prior_cov : Array, shapes (p,) and (p, p)
        Gaussian prior ``N(m_0, Gamma_0)`` of the unconstrained vector
        (e.g. ``space.prior_mean, space.prior_cov``).
    step, adaptive_step, step_epsilon
        ``h_n = h_0`` or ``h_0 / (||D_n||_F + epsilon)`` (Section 4 of [4]).  Smaller ``h_0``
        means less time-discretisation bias and more iterations to reach equilibrium.
    finite_ensemble_correction : bool
        Add the drift ``(p + 1)/J (theta_j - mean)`` of [5].
    space, progress
        As in :func:`eki`.

    Returns
    -------
    EnsembleKalmanResult
        The final ensemble approximates posterior draws (one per member).
    """
    theta0, y, noise_cov = jnp.asarray(theta0), jnp.asarray(y), jnp.asarray(noise_cov)
    J, p, _ = _check_problem(theta0, y, noise_cov)
    prior_mean, prior_cov = jnp.asarray(prior_mean), jnp.asarray(prior_cov)
    if prior_mean.shape != (p,) or prior_cov.shape != (p, p):
        raise ValueError(f"prior_mean must be ({p},) and prior_cov ({p}, {p}), got "
                         f"{prior_mean.shape} and {prior_cov.shape}")
    noise_chol = jnp.linalg.cholesky(noise_cov)
    prior_precision = jnp.linalg.inv(prior_cov)
    correction = (p + 1) / J if finite_ensemble_correction else 0.0

    def update(key, theta):
        g = jax.vmap(forward)(theta)
        misfit = _misfit(g, y, noise_chol)
        A, B, C_tg, _ = _statistics(theta, g)
        white = cho_solve((noise_chol, True), (g - y).T).T  # Gamma^{-1} (G_j - y), (J, d)
        h = _step_size(B, white, step, adaptive_step, step_epsilon)
        C = A.T @ A / J
        rhs = (theta - h * white @ C_tg.T + h * (C @ prior_precision @ prior_mean)
               + h * correction * A)
        lhs = jnp.eye(p, dtype=theta.dtype) + h * C @ prior_precision
        drifted = jnp.linalg.solve(lhs, rhs.T).T
        xi = jax.random.normal(key, (J, p), dtype=theta.dtype)
        return drifted + jnp.sqrt(2.0 * h) * xi @ psd_sqrt(C).T, misfit, h

    ensembles, misfits, steps = _run(update, key, theta0, n_iterations, progress, "EKS")
    misfits.append(_misfit(jax.vmap(forward)(ensembles[-1]), y, noise_chol))
    return _result(ensembles, misfits, steps, space, "eks")


def _result(ensembles, misfits, steps, space, method) -> EnsembleKalmanResult:
    final = ensembles[-1] if space is None else space.to_physical(ensembles[-1])
    return EnsembleKalmanResult(
        ensembles=ensembles,
        misfits=jnp.stack(misfits),
        time_steps=steps,
        final_physical=final,
        method=method,
    )


def to_inference_data(result: EnsembleKalmanResult, names, method: str | None = None):
    """The final ensemble as ArviZ ``InferenceData`` (``posterior``: chain=1, draw=member).

    ``attrs`` (on the InferenceData and its posterior group): ``inference_method``,
    ``ensemble_size``, ``n_iterations`` and ``final_misfit``.

    Parameters
    ----------
    result : EnsembleKalmanResult
    names : sequence of str
        One name per parameter column (e.g. ``space.names``).
    method : {"eki", "eks"}, optional
        Defaults to ``result.method``; stored as ``attrs["inference_method"]``.

    Notes
    -----
    EKS members approximate posterior draws; EKI members collapse to a point estimate and
    their spread is *not* a posterior uncertainty.
    """
    import arviz as az

    method = result.method if method is None else method
    if method not in ("eki", "eks"):
        raise ValueError(f"method must be 'eki' or 'eks', got {method!r}")
    final = np.asarray(result.final_physical)
    names = list(names)
    if len(names) != final.shape[1]:
        raise ValueError(f"got {len(names)} names for {final.shape[1]} parameters")
    posterior = {name: final[None, :, i] for i, name in enumerate(names)}
    attrs = {
        "inference_method": method,
        "ensemble_size": int(final.shape[0]),
        "n_iterations": int(result.time_steps.shape[0]),
        "final_misfit": float(result.misfits[-1]),
    }
    idata = az.from_dict(posterior=posterior, attrs=attrs)
    idata.posterior.attrs.update(attrs)
    return idata


# --------------------------------------------------------------------------------------------
# EKI against a filter's fit to the observations
# --------------------------------------------------------------------------------------------


def whitened_innovations(
    innovations: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
) -> Forward:
    """Forward map ``G(theta) = [L_0^{-1} e_0; ...; L_{T-1}^{-1} e_{T-1}]``, target 0, noise I.

    ``innovations(theta)`` runs a (Kalman or ensemble) filter with parameters ``theta`` and
    returns the innovations ``e_k = y_k - H_k m^-_k``, shape (T, m), and their covariances
    ``S_k = H_k P^-_k H_k^T + R_k``, shape (T, m, m); ``S_k = L_k L_k^T`` (Cholesky).  Padded
    rows must have ``e = 0`` and a unit, decoupled row of ``S`` (as :func:`kalman_innovations`
    gives).  Then

        |G(theta)|^2 = sum_k e_k^T S_k^{-1} e_k,

    the quadratic term of ``-2 log p(y | theta)`` by the prediction-error decomposition.  EKI
    with ``y = 0`` and ``Gamma = I`` minimises it; the log-determinant term
    ``sum_k log det S_k(theta)`` of the marginal likelihood is ignored, so the fit is *not*
    the maximum-likelihood estimate: it favours parameters that inflate ``S`` (large noise
    variances), and noise scales are better fixed or given a strong prior.
    """

    def forward(theta: jax.Array) -> jax.Array:
        e, S = innovations(theta)
        L = jnp.linalg.cholesky(S)
        white = jax.vmap(lambda Lk, ek: solve_triangular(Lk, ek, lower=True))(L, e)
        return white.reshape(-1)

    return forward


def kalman_innovations(
    model: LinearGaussianSSM, obs: KalmanObservations
) -> tuple[jax.Array, jax.Array]:
    """Innovations ``e_k`` (T, m) and covariances ``S_k`` (T, m, m) of the exact Kalman filter.

    From :func:`tracerbayes.exact.kalman.kalman_filter`'s predicted moments:
    ``e_k = y_k - H_k m^-_k`` and ``S_k = H_k P^-_k H_k^T + diag(r_k)``; padded rows get
    ``e = 0`` and a unit, decoupled row and column of ``S``.
    """
    filtered = kalman_filter(model, obs)
    valid = obs.valid.astype(bool)
    H = jnp.where(valid[..., None], obs.operators, 0.0)
    e = jnp.where(valid, obs.values - jnp.einsum("kin,kn->ki", H, filtered.predicted_means), 0.0)
    r = jnp.where(valid, obs.variances, 1.0)
    S = jnp.einsum("kin,knl,kjl->kij", H, filtered.predicted_covs, H) + jax.vmap(jnp.diag)(r)
    return e, S
