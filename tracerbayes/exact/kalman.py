"""Exact Kalman filtering, smoothing and sampling for linear-Gaussian state-space models.

The model (with ``k = 0, ..., T - 1``; the first observation is of the initial state)::

    x_0     ~ N(m_0, P_0)
    x_{k+1} = F_k x_k + w_k,        w_k ~ N(0, Q_k)                 (1)
    y_k     = H_k x_k + e_k,        e_k ~ N(0, diag(r_k))           (2)

Observations are padded to a fixed number ``m`` of rows per time, with a boolean mask saying
which rows are real, so that every array has a static shape and everything is ``jit``-able.
Padded rows contribute nothing: they are replaced by the exactly uninformative row
``H = 0, y = 0, r = 1`` (whose update is the identity) and their log-likelihood term is
dropped, so the log-likelihood equals the dense Gaussian density of the valid rows only, and a
time with no valid row is a pure prediction step.

Within a time step the (conditionally independent, diagonal-``R``) observations are
assimilated one at a time as scalar updates.  This is exact, needs no matrix inversion, and
yields the per-observation terms ``log p(y_{k,i} | y_{0:k-1}, y_{k,1:i-1})`` that sum to the
total log-likelihood (the pointwise log-likelihood that PSIS-LOO needs).

The recursions, with ``m_k, P_k`` the filtered and ``m^-_k, P^-_k`` the predicted moments
(Theorem 4.2 of [1] for (3)-(4); the Joseph form of (4) is from [2]; (6) is Theorem 8.2 of [1]
and [3]; (7) is [4])::

    m^-_{k+1} = F_k m_k,   P^-_{k+1} = F_k P_k F_k^T + Q_k                          (3)
    s = h P h^T + r,   K = P h^T / s,   m <- m + K (y - h m),
    P <- (I - K h) P (I - K h)^T + r K K^T                                          (4)
    log p(y_{0:T-1}) = sum_{k,i} log N(y_{k,i}; h_{k,i} m, s_{k,i})                 (5)
    G_k = P_k F_k^T (P^-_{k+1})^{-1},   m^s_k = m_k + G_k (m^s_{k+1} - m^-_{k+1}),
    P^s_k = P_k + G_k (P^s_{k+1} - P^-_{k+1}) G_k^T                                  (6)
    x_k | x_{k+1}, y_{0:k} ~ N(m_k + G_k (x_{k+1} - m^-_{k+1}),  P_k - G_k F_k P_k)  (7)

where in (4)-(5) ``(m, P)`` run through the sequence of scalar updates of time ``k``, starting
from ``(m^-_k, P^-_k)`` and ending at ``(m_k, P_k)``.

References
----------
.. [1] S. Särkkä, *Bayesian Filtering and Smoothing*, Cambridge University Press, 2013.
.. [2] R. S. Bucy and P. D. Joseph, *Filtering for Stochastic Processes with Applications to
   Guidance*, Interscience, 1968.
.. [3] H. E. Rauch, F. Tung and C. T. Striebel, "Maximum likelihood estimates of linear
   dynamic systems", AIAA Journal 3(8), 1445-1450, 1965.
.. [4] S. Frühwirth-Schnatter, "Data augmentation and dynamic linear models", J. Time Series
   Analysis 15(2), 183-202, 1994 (forward filtering, backward sampling).

When a time holds more observations than the state has entries (``m > n``: many observations
per map, e.g. 10^5 super-observations on a few hundred modes), the update is done in
information form instead (:func:`update_information`): with ``P^- = L L^T``,
``A = I + L^T H^T R^{-1} H L = C C^T`` and ``z = C^{-1} L^T H^T R^{-1} (y - H m^-)``::

    m <- m^- + L C^{-T} z,   P <- (L C^{-T}) (L C^{-T})^T,
    log det S = sum_i log r_i + 2 sum_j log C_jj,
    (y - H m^-)^T S^{-1} (y - H m^-) = sum_i (y_i - h_i m^-)^2 / r_i - z^T z          (8)

(the matrix determinant lemma and Woodbury's identity for ``S = H P^- H^T + R``): O(m n^2 +
n^3) per time instead of O(m^3), the same moments and log-likelihood to round-off, but only
the per-time total of the log-likelihood, not its per-observation terms.

The parallel-in-time (associative scan) versions live in :mod:`tracerbayes.exact.kalman_parallel`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_factor, cho_solve

__all__ = [
    "FilterResult",
    "LinearGaussianSSM",
    "KalmanObservations",
    "SmootherResult",
    "kalman_filter",
    "kalman_log_likelihood",
    "update_information",
    "update_joint",
    "update_sequential",
    "rts_smoother",
    "sample_smoothed",
]

_LOG_2PI = math.log(2.0 * math.pi)


class LinearGaussianSSM(NamedTuple):
    """Parameters of the linear-Gaussian state transition, Eq. (1).

    ``x_0 ~ N(initial_mean, initial_cov)`` and ``x_{k+1} = F_k x_k + w_k`` with
    ``w_k ~ N(0, Q_k)``.  ``F`` and ``Q`` are either shared by all transitions, shape
    ``(n, n)``, or time-varying, shape ``(T - 1, n, n)`` where entry ``k`` maps time ``k`` to
    time ``k + 1``.  The two may be chosen independently.

    Attributes
    ----------
    initial_mean : Array, shape (n,)
        Prior mean ``m_0`` of the first state.
    initial_cov : Array, shape (n, n)
        Prior covariance ``P_0`` of the first state (symmetric positive definite).
    transition : Array, shape (n, n) or (T - 1, n, n)
        Transition matrices ``F_k``.
    process_cov : Array, shape (n, n) or (T - 1, n, n)
        Process-noise covariances ``Q_k`` (symmetric positive semi-definite).
    """

    initial_mean: jax.Array
    initial_cov: jax.Array
    transition: jax.Array
    process_cov: jax.Array


class KalmanObservations(NamedTuple):
    """Observations ``y_k = H_k x_k + e_k``, ``e_k ~ N(0, diag(r_k))``, Eq. (2), padded.

    Each time ``k`` holds up to ``m`` scalar observations; row ``i`` is real where
    ``valid[k, i]`` and padding otherwise.  Padded rows may hold anything (even NaN): they are
    never used.

    Attributes
    ----------
    values : Array, shape (T, m)
        Observed values ``y_{k,i}``.
    operators : Array, shape (T, m, n)
        Observation operator rows ``H_{k,i}`` (e.g. bilinear interpolation weights).
    variances : Array, shape (T, m)
        Observation-error variances ``r_{k,i} > 0``.
    valid : Array of bool, shape (T, m)
        Which rows are real observations.
    """

    values: jax.Array
    operators: jax.Array
    variances: jax.Array
    valid: jax.Array


class FilterResult(NamedTuple):
    """Output of a Kalman filter.

    Attributes
    ----------
    log_likelihood : Array, shape ()
        ``log p(y_{0:T-1})`` over the valid observations.
    filtered_means, filtered_covs : Array, shapes (T, n) and (T, n, n)
        Moments of ``p(x_k | y_{0:k})``.
    predicted_means, predicted_covs : Array, shapes (T, n) and (T, n, n)
        Moments of ``p(x_k | y_{0:k-1})``; entry 0 is the prior ``(m_0, P_0)``.
    log_likelihood_terms : Array, shape (T, m)
        ``log p(y_{k,i} | y_{0:k-1}, y_{k,0:i-1})`` for each valid row, 0 for padding; they
        sum to ``log_likelihood``. NaN on valid rows after an information-form update, which
        gives only each time's total (see :func:`kalman_filter`).
    """

    log_likelihood: jax.Array
    filtered_means: jax.Array
    filtered_covs: jax.Array
    predicted_means: jax.Array
    predicted_covs: jax.Array
    log_likelihood_terms: jax.Array


class SmootherResult(NamedTuple):
    """Output of a Rauch-Tung-Striebel smoother.

    Attributes
    ----------
    smoothed_means, smoothed_covs : Array, shapes (T, n) and (T, n, n)
        Moments of ``p(x_k | y_{0:T-1})``.
    smoothed_cross_covs : Array, shape (T - 1, n, n)
        Lag-one cross-covariances ``Cov(x_{k+1}, x_k | y_{0:T-1})``.
    filtered_means, filtered_covs : Array, shapes (T, n) and (T, n, n)
        Moments of ``p(x_k | y_{0:k})``, from the forward pass.
    log_likelihood : Array, shape ()
        ``log p(y_{0:T-1})``.
    log_likelihood_terms : Array, shape (T, m)
        Per-observation terms, as in :class:`FilterResult`.
    """

    smoothed_means: jax.Array
    smoothed_covs: jax.Array
    smoothed_cross_covs: jax.Array
    filtered_means: jax.Array
    filtered_covs: jax.Array
    log_likelihood: jax.Array
    log_likelihood_terms: jax.Array


# --------------------------------------------------------------------------------------------
# Shapes and small helpers (shared with :mod:`tracerbayes.exact.kalman_parallel`)
# --------------------------------------------------------------------------------------------


def check_shapes(model: LinearGaussianSSM, obs: KalmanObservations) -> tuple[int, int, int]:
    """Check that a model and its observations agree; return ``(T, m, n)``.

    Raises
    ------
    ValueError
        With the offending shape named, when anything is inconsistent.
    """
    n = model.initial_mean.shape[-1]
    if model.initial_mean.shape != (n,):
        raise ValueError(f"initial_mean must have shape (n,), got {model.initial_mean.shape}")
    if model.initial_cov.shape != (n, n):
        raise ValueError(f"initial_cov must have shape ({n}, {n}), got {model.initial_cov.shape}")
    if obs.values.ndim != 2:
        raise ValueError(f"observation values must have shape (T, m), got {obs.values.shape}")
    T, m = obs.values.shape
    if T < 1:
        raise ValueError("at least one time step is needed")
    for name in ("variances", "valid"):
        shape = getattr(obs, name).shape
        if shape != (T, m):
            raise ValueError(f"observation {name} must have shape ({T}, {m}), got {shape}")
    if obs.operators.shape != (T, m, n):
        raise ValueError(
            f"observation operators must have shape ({T}, {m}, {n}), got {obs.operators.shape}"
        )
    for name in ("transition", "process_cov"):
        shape = getattr(model, name).shape
        if shape not in ((n, n), (T - 1, n, n)):
            raise ValueError(
                f"{name} must have shape ({n}, {n}) or ({T - 1}, {n}, {n}), got {shape}"
            )
    return T, m, n


def is_time_varying(matrix: jax.Array) -> bool:
    """Whether a transition or noise matrix is given per transition, shape ``(T - 1, n, n)``."""
    return matrix.ndim == 3


def transition_sequence(model: LinearGaussianSSM, T: int) -> tuple[jax.Array, jax.Array]:
    """``F_k`` and ``Q_k`` for every transition, each of shape ``(T - 1, n, n)``."""
    n = model.initial_mean.shape[-1]
    F = jnp.broadcast_to(model.transition, (T - 1, n, n))
    Q = jnp.broadcast_to(model.process_cov, (T - 1, n, n))
    return F, Q


def symmetrise(matrix: jax.Array) -> jax.Array:
    """``(A + A^T) / 2`` over the last two axes."""
    return 0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))


def masked_observations(obs: KalmanObservations) -> KalmanObservations:
    """Replace padded rows by the exactly uninformative row ``H = 0, y = 0, r = 1``.

    After this, an update with a padded row is the identity, and NaN or garbage in padding
    can no longer reach any result (nor any gradient).
    """
    valid = obs.valid.astype(bool)
    return KalmanObservations(
        values=jnp.where(valid, obs.values, 0.0),
        operators=jnp.where(valid[..., None], obs.operators, 0.0),
        variances=jnp.where(valid, obs.variances, 1.0),
        valid=valid,
    )


def _scalar_update(
    state: tuple[jax.Array, jax.Array], row: tuple[jax.Array, ...]
) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """Assimilate one scalar observation ``y = h x + e``, ``e ~ N(0, r)``.

    Kalman update, Eq. (4), with a scalar innovation variance ``s = h P h^T + r`` and gain
    ``K = P h^T / s``; the covariance uses the Joseph form ``(I - K h) P (I - K h)^T +
    r K K^T`` [2], evaluated with rank-one algebra as
    ``P - K u^T - u K^T + s K K^T`` (``u = P h^T``): O(n^2), symmetric by construction, and
    like the Joseph form insensitive to first order to errors in the gain.
    Returns the updated ``(mean, cov)`` and ``log N(y; h m, s)`` (0 for a padded row).
    """
    mean, cov = state
    h, y, r, valid = row
    u = cov @ h  # (n,) cross-covariance of state and observation
    s = h @ u + r  # innovation variance
    innovation = y - h @ mean
    gain = u / s
    mean = mean + gain * innovation
    cov = cov - jnp.outer(gain, u) - jnp.outer(u, gain) + s * jnp.outer(gain, gain)
    term = jnp.where(valid, -0.5 * (_LOG_2PI + jnp.log(s) + innovation**2 / s), 0.0)
    return (mean, cov), term


def update_sequential(
    mean: jax.Array,
    cov: jax.Array,
    values: jax.Array,
    operators: jax.Array,
    variances: jax.Array,
    valid: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Assimilate all (masked) observations of one time step, one row at a time.

    Parameters
    ----------
    mean, cov : Array, shapes (n,) and (n, n)
        Predicted moments of ``p(x_k | y_{0:k-1})``.
    values, operators, variances, valid : Array, shapes (m,), (m, n), (m,), (m,)
        The observations of time ``k``, already passed through :func:`masked_observations`.

    Returns
    -------
    mean, cov : Array, shapes (n,) and (n, n)
        Filtered moments of ``p(x_k | y_{0:k})``.
    terms : Array, shape (m,)
        ``log p(y_{k,i} | y_{0:k-1}, y_{k,0:i-1})``, 0 for padded rows.
    """
    (mean, cov), terms = lax.scan(
        _scalar_update, (mean, cov), (operators, values, variances, valid)
    )
    return mean, symmetrise(cov), terms


def predict(
    mean: jax.Array, cov: jax.Array, transition: jax.Array, process_cov: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Prediction step, Eq. (3): ``m^- = F m``, ``P^- = F P F^T + Q`` (symmetrised)."""
    return transition @ mean, symmetrise(transition @ cov @ transition.T + process_cov)


def _per_transition(model: LinearGaussianSSM) -> tuple[jax.Array | None, jax.Array | None]:
    """Scan inputs for ``F`` and ``Q``: the stacked array if time-varying, else ``None``."""
    F = model.transition if is_time_varying(model.transition) else None
    Q = model.process_cov if is_time_varying(model.process_cov) else None
    return F, Q


def _or_shared(value: jax.Array | None, shared: jax.Array) -> jax.Array:
    return shared if value is None else value


# --------------------------------------------------------------------------------------------
# Sequential filter and smoother
# --------------------------------------------------------------------------------------------


def update_joint(
    mean: jax.Array,
    cov: jax.Array,
    values: jax.Array,
    operators: jax.Array,
    variances: jax.Array,
    valid: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Assimilate all (masked) observations of one time step at once, by Cholesky.

    With ``S = H P H^T + diag(r) = L L^T``, ``v = L^{-1} (y - H m)`` and
    ``W = P H^T L^{-T}``: ``m <- m + W v`` and ``P <- P - W W^T``. The Cholesky factor gives
    the same per-observation terms as :func:`update_sequential`: row ``i`` of ``L`` is the
    sequential conditional of ``y_i`` given ``y_{<i}``, so
    ``log p(y_i | ...) = -(log 2 pi + 2 log L_ii + v_i^2) / 2``. Masked padding rows
    (``h = 0, r = 1, y = 0``) decouple with ``L_ii = 1, v_i = 0``. Same arguments and
    results as :func:`update_sequential`; fewer, larger operations (faster under ``grad``).
    """
    u = cov @ operators.T  # (n, m)
    s = operators @ u + jnp.diag(variances)
    chol = jnp.linalg.cholesky(symmetrise(s))
    v = jax.scipy.linalg.solve_triangular(chol, values - operators @ mean, lower=True)
    w = jax.scipy.linalg.solve_triangular(chol, u.T, lower=True).T  # (n, m)
    terms = -0.5 * (_LOG_2PI + 2.0 * jnp.log(jnp.diagonal(chol)) + v**2)
    terms = jnp.where(valid, terms, 0.0)
    return mean + w @ v, symmetrise(cov - w @ w.T), terms


def update_information(
    mean: jax.Array,
    cov: jax.Array,
    values: jax.Array,
    operators: jax.Array,
    variances: jax.Array,
    valid: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Assimilate all (masked) observations of one time step in information form, Eq. (8).

    Same arguments as :func:`update_joint`, and the same filtered moments to round-off, at
    O(m n^2 + n^3) instead of O(m^3 + m^2 n): the choice when a time holds more observations
    than the state has entries. ``cov`` must be positive definite (its Cholesky factor is
    used; the RTS smoother needs the same). Returns the filtered ``(mean, cov)`` and the
    time's total log-likelihood (shape ``()``): the information form does not give the
    per-observation terms. Masked padding rows (``h = 0, r = 1, y = 0``) add nothing.
    """
    factor = jnp.linalg.cholesky(cov)  # L, P^- = L L^T
    residual = values - operators @ mean  # (m,)
    weighted = operators / variances[:, None]  # R^{-1} H, (m, n)
    scaled = factor.T @ (operators.T @ weighted) @ factor  # L^T H^T R^{-1} H L
    chol = jnp.linalg.cholesky(symmetrise(jnp.eye(mean.shape[0], dtype=cov.dtype) + scaled))
    z = jax.scipy.linalg.solve_triangular(chol, factor.T @ (weighted.T @ residual), lower=True)
    gain_factor = jax.scipy.linalg.solve_triangular(chol, factor.T, lower=True).T  # L C^{-T}
    total = -0.5 * (jnp.sum(valid) * _LOG_2PI + jnp.sum(jnp.log(variances))
                    + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
                    + jnp.sum(residual**2 / variances) - z @ z)
    return mean + gain_factor @ z, gain_factor @ gain_factor.T, total


#: How a time's observations are assimilated: see :func:`kalman_filter`.
UPDATES = ("auto", "joint", "sequential", "information")


def _updater(update: str, m: int, n: int):
    """The per-time update for ``update`` (``'auto'``: information form when ``m > n``) as a
    function returning ``(mean, cov, terms (m,), total ())``; in information form the
    per-observation terms are NaN on valid rows (not computed)."""
    if update not in UPDATES:
        raise ValueError(f"update={update!r}; choose one of {UPDATES}")
    if update == "information" or (update == "auto" and m > n):
        def information(mean, cov, values, operators, variances, valid):
            mean, cov, total = update_information(mean, cov, values, operators, variances,
                                                  valid)
            return mean, cov, jnp.where(valid, jnp.nan, 0.0), total
        return information
    rows = update_sequential if update == "sequential" else update_joint

    def by_rows(mean, cov, values, operators, variances, valid):
        mean, cov, terms = rows(mean, cov, values, operators, variances, valid)
        return mean, cov, terms, jnp.sum(terms)
    return by_rows


def kalman_filter(model: LinearGaussianSSM, obs: KalmanObservations, *,
                  scalar_updates: bool = False, update: str = "auto") -> FilterResult:
    """Kalman filter over padded observations, by ``lax.scan`` over time.

    At each time the valid observations are assimilated, then the state is predicted to the
    next time, Eq. (3). The log-likelihood is the prediction-error decomposition, Eq. (5).
    ``update`` says how a time's observations are assimilated: ``'joint'`` (by Cholesky of
    the innovation covariance, :func:`update_joint`), ``'sequential'`` (one by one, Eq. (4),
    Joseph-form covariance; exact for diagonal ``R``; also ``scalar_updates=True``),
    ``'information'`` (Eq. (8), :func:`update_information`) or ``'auto'`` (default: the
    information form when a time holds more rows than the state has entries, ``m > n``,
    else joint). All give the same moments and log-likelihood to round-off; the joint update
    is several times faster than the sequential one under ``jax.grad``, the information
    form much faster when ``m >> n``. Only the information form leaves the per-observation
    terms out: ``log_likelihood_terms`` is then NaN on valid rows (pass ``update='joint'``
    for pointwise terms, e.g. for PSIS-LOO).

    Parameters
    ----------
    model : LinearGaussianSSM
        ``m_0`` (n,), ``P_0`` (n, n), ``F`` and ``Q`` (n, n) or (T - 1, n, n).
    obs : KalmanObservations
        ``values`` (T, m), ``operators`` (T, m, n), ``variances`` (T, m), ``valid`` (T, m).

    Returns
    -------
    FilterResult
        Log-likelihood (scalar), filtered and predicted moments (T, n) and (T, n, n), and
        per-observation log-likelihood terms (T, m).
    """
    T, m, n = check_shapes(model, obs)
    obs = masked_observations(obs)
    F_seq, Q_seq = _per_transition(model)
    assimilate = _updater("sequential" if scalar_updates else update, m, n)

    def step(carry, inputs):
        predicted_mean, predicted_cov = carry
        values, operators, variances, valid, F, Q = inputs
        mean, cov, terms, total = assimilate(
            predicted_mean, predicted_cov, values, operators, variances, valid
        )
        F = _or_shared(F, model.transition)
        Q = _or_shared(Q, model.process_cov)
        next_mean, next_cov = predict(mean, cov, F, Q)
        return (next_mean, next_cov), (mean, cov, terms, total, next_mean, next_cov)

    head = jax.tree.map(lambda a: a[:-1], (obs.values, obs.operators, obs.variances, obs.valid))
    prior = (model.initial_mean, model.initial_cov)
    (last_mean, last_cov), outputs = lax.scan(step, prior, (*head, F_seq, Q_seq), length=T - 1)
    means, covs, terms, totals, next_means, next_covs = outputs
    final_mean, final_cov, final_terms, final_total = assimilate(
        last_mean,
        last_cov,
        obs.values[-1],
        obs.operators[-1],
        obs.variances[-1],
        obs.valid[-1],
    )
    terms = jnp.concatenate([terms, final_terms[None]])
    return FilterResult(
        log_likelihood=jnp.sum(totals) + final_total,
        filtered_means=jnp.concatenate([means, final_mean[None]]),
        filtered_covs=jnp.concatenate([covs, final_cov[None]]),
        predicted_means=jnp.concatenate([model.initial_mean[None], next_means]),
        predicted_covs=jnp.concatenate([model.initial_cov[None], next_covs]),
        log_likelihood_terms=terms,
    )


def kalman_log_likelihood(model: LinearGaussianSSM, obs: KalmanObservations, *,
                          update: str = "auto") -> jax.Array:
    """``log p(y_{0:T-1})`` of the valid observations, with the state integrated out.

    The same recursion as :func:`kalman_filter` (joint update, Eq. (5)), lean: the scan
    carries only the current moments and keeps no per-time output but the log-likelihood
    increment, so ``jax.grad`` stores less (about a quarter faster than differentiating
    ``kalman_filter(...).log_likelihood``). ``update`` as in :func:`kalman_filter` (by
    default the information form when a time holds more rows than the state has entries).
    Differentiable with respect to every array of ``model`` and ``obs`` (except the mask).
    Returns an array of shape ``()``.
    """
    _, m, n = check_shapes(model, obs)
    obs = masked_observations(obs)
    F_seq, Q_seq = _per_transition(model)
    assimilate = _updater(update, m, n)

    def step(carry, inputs):
        mean, cov = carry
        values, operators, variances, valid, F, Q = inputs
        mean, cov, _, total = assimilate(mean, cov, values, operators, variances, valid)
        F = _or_shared(F, model.transition)
        Q = _or_shared(Q, model.process_cov)
        return predict(mean, cov, F, Q), total

    head = jax.tree.map(lambda a: a[:-1], (obs.values, obs.operators, obs.variances, obs.valid))
    prior = (model.initial_mean, model.initial_cov)
    (mean, cov), increments = lax.scan(step, prior, (*head, F_seq, Q_seq),
                                       length=obs.values.shape[0] - 1)
    *_, last = assimilate(mean, cov, obs.values[-1], obs.operators[-1], obs.variances[-1],
                          obs.valid[-1])
    return jnp.sum(increments) + last


def smoother_gain(
    filtered_cov: jax.Array, transition: jax.Array, predicted_cov: jax.Array
) -> jax.Array:
    """RTS gain ``G_k = P_k F_k^T (P^-_{k+1})^{-1}``, Eq. (6), by Cholesky solve.

    Shapes: ``filtered_cov`` (n, n) = ``P_k``, ``transition`` (n, n) = ``F_k``,
    ``predicted_cov`` (n, n) = ``P^-_{k+1} = F_k P_k F_k^T + Q_k``; returns (n, n).
    """
    factor = cho_factor(predicted_cov, lower=True)
    return cho_solve(factor, transition @ filtered_cov).T


def _smoothing_inputs(model: LinearGaussianSSM, filtered: FilterResult) -> tuple:
    """Per-transition scan inputs ``(m_k, P_k, m^-_{k+1}, P^-_{k+1}, F_k)``, k < T - 1."""
    F_seq, _ = _per_transition(model)
    return (
        filtered.filtered_means[:-1],
        filtered.filtered_covs[:-1],
        filtered.predicted_means[1:],
        filtered.predicted_covs[1:],
        F_seq,
    )


def rts_smoother(model: LinearGaussianSSM, obs: KalmanObservations) -> SmootherResult:
    """Rauch-Tung-Striebel smoother [3]: moments of ``p(x_k | y_{0:T-1})``.

    Backward recursion, Eq. (6)::

        G_k   = P_k F_k^T (P^-_{k+1})^{-1}
        m^s_k = m_k + G_k (m^s_{k+1} - m^-_{k+1})
        P^s_k = P_k + G_k (P^s_{k+1} - P^-_{k+1}) G_k^T

    and the lag-one cross-covariance ``Cov(x_{k+1}, x_k | y) = P^s_{k+1} G_k^T``.

    Parameters
    ----------
    model, obs
        As in :func:`kalman_filter`.

    Returns
    -------
    SmootherResult
        Smoothed moments (T, n), (T, n, n), cross-covariances (T - 1, n, n), and the
        filter's moments and log-likelihood.
    """
    filtered = kalman_filter(model, obs)

    def step(carry, inputs):
        smoothed_mean, smoothed_cov = carry
        mean, cov, predicted_mean, predicted_cov, F = inputs
        F = _or_shared(F, model.transition)
        gain = smoother_gain(cov, F, predicted_cov)
        mean = mean + gain @ (smoothed_mean - predicted_mean)
        cross_cov = smoothed_cov @ gain.T
        cov = symmetrise(cov + gain @ (smoothed_cov - predicted_cov) @ gain.T)
        return (mean, cov), (mean, cov, cross_cov)

    last = (filtered.filtered_means[-1], filtered.filtered_covs[-1])
    T = filtered.filtered_means.shape[0]
    _, (means, covs, cross_covs) = lax.scan(
        step, last, _smoothing_inputs(model, filtered), length=T - 1, reverse=True
    )
    return SmootherResult(
        smoothed_means=jnp.concatenate([means, last[0][None]]),
        smoothed_covs=jnp.concatenate([covs, last[1][None]]),
        smoothed_cross_covs=cross_covs,
        filtered_means=filtered.filtered_means,
        filtered_covs=filtered.filtered_covs,
        log_likelihood=filtered.log_likelihood,
        log_likelihood_terms=filtered.log_likelihood_terms,
    )


# --------------------------------------------------------------------------------------------
# Forward filtering, backward sampling
# --------------------------------------------------------------------------------------------


def psd_sqrt(cov: jax.Array) -> jax.Array:
    """A factor ``L`` with ``L L^T = cov`` for a symmetric positive semi-definite ``cov``.

    Symmetric eigendecomposition with negative round-off eigenvalues clipped to zero, so that
    singular covariances (e.g. a mass-conserving noise with a deterministic total) are fine
    where a Cholesky factor would fail.  Shape (n, n) -> (n, n).
    """
    eigenvalues, eigenvectors = jnp.linalg.eigh(symmetrise(cov))
    return eigenvectors * jnp.sqrt(jnp.clip(eigenvalues, 0.0, None))


def sample_smoothed(
    key: jax.Array, model: LinearGaussianSSM, obs: KalmanObservations, num_samples: int
) -> jax.Array:
    """Joint posterior samples of the state trajectory ``x_{0:T-1} | y_{0:T-1}``.

    Forward filtering, backward sampling [4]: draw ``x_{T-1} ~ N(m_{T-1}, P_{T-1})``, then for
    ``k = T-2, ..., 0`` draw from the Gaussian conditional, Eq. (7)::

        x_k | x_{k+1}, y_{0:k} ~ N(m_k + G_k (x_{k+1} - m^-_{k+1}),  P_k - G_k F_k P_k)

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    model, obs
        As in :func:`kalman_filter`.
    num_samples : int
        Number of trajectories (static).

    Returns
    -------
    Array, shape (num_samples, T, n)
        Independent draws of the whole trajectory.
    """
    filtered = kalman_filter(model, obs)
    T, n = filtered.filtered_means.shape
    dtype = filtered.filtered_means.dtype
    noise = jax.random.normal(key, (T, num_samples, n), dtype=dtype)

    last_factor = psd_sqrt(filtered.filtered_covs[-1])
    last_sample = filtered.filtered_means[-1] + noise[-1] @ last_factor.T

    def step(next_sample, inputs):
        mean, cov, predicted_mean, predicted_cov, F, z = inputs
        F = _or_shared(F, model.transition)
        gain = smoother_gain(cov, F, predicted_cov)
        conditional_mean = mean + (next_sample - predicted_mean) @ gain.T  # (num_samples, n)
        conditional_cov = cov - gain @ (F @ cov)
        sample = conditional_mean + z @ psd_sqrt(conditional_cov).T
        return sample, sample

    _, samples = lax.scan(
        step,
        last_sample,
        (*_smoothing_inputs(model, filtered), noise[:-1]),
        length=T - 1,
        reverse=True,
    )
    samples = jnp.concatenate([samples, last_sample[None]])  # (T, num_samples, n)
    return jnp.swapaxes(samples, 0, 1)
