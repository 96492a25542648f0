"""Parallel-in-time Kalman filter and RTS smoother by associative scan.

Same model, inputs and outputs as :mod:`tracerbayes.exact.kalman`, but the recursions over time are
written as prefix sums of an associative operator [1]: O(log T) sequential depth instead of
O(T), which is what makes long windows fast on a GPU.  Each time step's observations are
assimilated jointly (Cholesky of the innovation covariance); padded rows are the
uninformative ``H = 0, y = 0, r = 1`` of :func:`tracerbayes.exact.kalman.masked_observations`,
which decouple exactly from the valid rows.

The prefix sums are taken by recursive doubling [2] (:func:`prefix_scan`): ``ceil(log2 T)``
levels, each combining every element with the one ``2^d`` before it, written as one
``lax.scan`` over the levels.  The operator is so traced and compiled once, whatever ``T``
(``jax.lax.associative_scan`` unrolls ``2 log2 T`` levels of differently shaped batches, and
under ``jax.grad`` that took over a minute to compile for the 60-mode island twin); the price
is ``T log2 T`` applications of the operator instead of about ``2 T``, all of one level
independent of each other.

The log-likelihood is the prediction-error decomposition, Eq. (5) of
:mod:`tracerbayes.exact.kalman`, evaluated from the predicted moments with the same per-time
update as the sequential filter, vectorised over time, so both filters return identical
:class:`~tracerbayes.exact.kalman.FilterResult` objects and log-likelihoods (to round-off).

Which filter a model uses is a :class:`KalmanFilter` (``fit(..., method=NUTS(filter=...))``).

References
----------
.. [1] S. Särkkä and Á. F. García-Fernández, "Temporal parallelization of Bayesian
   smoothers", IEEE Transactions on Automatic Control 66(1), 299-306, 2021.  Filtering
   elements and their operator: Section IV-A; smoothing elements and their operator:
   Section IV-B.  The equations are written out below as (F1)-(F2) and (S1)-(S2).
.. [2] W. D. Hillis and G. L. Steele, "Data parallel algorithms", Communications of the ACM
   29(12), 1170-1183, 1986 (the doubling scan, Section 2.1).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_factor, cho_solve, lu_factor, lu_solve

from tracerbayes.exact.kalman import (
    FilterResult,
    KalmanObservations,
    LinearGaussianSSM,
    SmootherResult,
    _updater,
    check_shapes,
    kalman_log_likelihood,
    masked_observations,
    predict,
    smoother_gain,
    symmetrise,
    transition_sequence,
    update_joint,
)

__all__ = [
    "KalmanFilter",
    "parallel_kalman_filter",
    "parallel_kalman_log_likelihood",
    "parallel_rts_smoother",
    "prefix_scan",
]

Element = TypeVar("Element")


class KalmanFilter(enum.Enum):
    """How the Kalman filter runs over time: ``SEQUENTIAL`` (``lax.scan``, O(T) depth,
    :func:`tracerbayes.exact.kalman.kalman_log_likelihood`; the least work, best on a CPU) or
    ``PARALLEL`` (associative scan, O(log T) depth, :func:`parallel_kalman_log_likelihood`;
    for a GPU). Both give the same log-likelihood to round-off."""

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"

    @classmethod
    def _missing_(cls, value: object) -> KalmanFilter:
        choices = ", ".join(repr(kind.value) for kind in cls)
        raise ValueError(f"filter={value!r}; choose one of {choices}")

    def log_likelihood(self, model: LinearGaussianSSM, obs: KalmanObservations) -> jax.Array:
        """``log p(y_{0:T-1})`` of the valid observations (Eq. (5) of
        :mod:`tracerbayes.exact.kalman`) by this filter; shape ``()``."""
        if self is KalmanFilter.PARALLEL:
            return parallel_kalman_log_likelihood(model, obs)
        return kalman_log_likelihood(model, obs)


class _FilterElement(NamedTuple):
    """``p(x_k | x_{k-1}, y_k) = N(A x_{k-1} + b, C)`` and the likelihood ``p(y_k | x_{k-1})``
    as an information pair ``(eta, J)``, Section IV-A of [1].  Shapes (n, n), (n,), (n, n), (n,),
    (n, n); a leading time axis when stacked."""

    A: jax.Array
    b: jax.Array
    C: jax.Array
    eta: jax.Array
    J: jax.Array


class _SmootherElement(NamedTuple):
    """``p(x_k | x_{k+1}, y_{0:k}) = N(E x_{k+1} + g, L)``, Section IV-B of [1]."""

    E: jax.Array
    g: jax.Array
    L: jax.Array


def _filter_element(
    transition: jax.Array,
    process_cov: jax.Array,
    offset: jax.Array,
    values: jax.Array,
    operators: jax.Array,
    variances: jax.Array,
) -> _FilterElement:
    """One filtering element, Eq. (F1) (Section IV-A of [1]), for ``x_k = F x_{k-1} + u + w``.

    With ``S = H Q H^T + R`` and ``K = Q H^T S^{-1}``::

        A = (I - K H) F,    b = u + K (y - H u),    C = Q - K S K^T,
        eta = F^T H^T S^{-1} (y - H u),             J = F^T H^T S^{-1} H F.     (F1)

    Elements ``k >= 1`` have ``u = 0``.  The first element takes ``F = 0``, ``Q = P_0``,
    ``u = m_0``, so that ``A = 0`` and ``(b, C)`` are the filtered moments at time 0 (the
    first observation is of ``x_0``), and ``eta = 0``, ``J = 0``.
    Shapes: F, Q (n, n); u (n,); y (m,); H (m, n); r (m,).
    """
    H = operators
    S = symmetrise(H @ process_cov @ H.T + jnp.diag(variances))
    factor = cho_factor(S, lower=True)
    QHt = process_cov @ H.T  # (n, m)
    gain = cho_solve(factor, QHt.T).T  # K = Q H^T S^{-1}, (n, m)
    innovation = values - H @ offset
    HF = H @ transition  # (m, n)
    S_inv_HF = cho_solve(factor, HF)
    return _FilterElement(
        A=transition - gain @ HF,
        b=offset + gain @ innovation,
        C=symmetrise(process_cov - gain @ QHt.T),
        eta=S_inv_HF.T @ innovation,
        J=symmetrise(HF.T @ S_inv_HF),
    )


def _combine_filter(earlier: _FilterElement, later: _FilterElement) -> _FilterElement:
    """The filtering operator ``earlier (x) later``, Eq. (F2) (Section IV-A of [1])::

        A = A_j (I + C_i J_j)^{-1} A_i
        b = A_j (I + C_i J_j)^{-1} (b_i + C_i eta_j) + b_j
        C = A_j (I + C_i J_j)^{-1} C_i A_j^T + C_j
        eta = A_i^T (I + J_j C_i)^{-1} (eta_j - J_j b_i) + eta_i
        J = A_i^T (I + J_j C_i)^{-1} J_j A_i + J_i                               (F2)

    with ``i`` the earlier and ``j`` the later element.  Single elements (no time axis).
    """
    i, j = earlier, later
    identity = jnp.eye(i.A.shape[-1], dtype=i.A.dtype)
    # One LU factor serves both inverses, as C and J are symmetric:
    # A_j (I + C_i J_j)^{-1} = [(I + J_j C_i)^{-1} A_j^T]^T,
    # A_i^T (I + J_j C_i)^{-1} = [(I + J_j C_i)^{-T} A_i]^T.
    factor = lu_factor(identity + j.J @ i.C)
    forward = lu_solve(factor, j.A.T).T
    backward = lu_solve(factor, i.A, trans=1).T
    return _FilterElement(
        A=forward @ i.A,
        b=forward @ (i.b + i.C @ j.eta) + j.b,
        C=symmetrise(forward @ i.C @ j.A.T + j.C),
        eta=backward @ (j.eta - j.J @ i.b) + i.eta,
        J=symmetrise(backward @ j.J @ i.A + i.J),
    )


def _combine_smoother(later: _SmootherElement, earlier: _SmootherElement) -> _SmootherElement:
    """The smoothing operator, Eq. (S2) (Section IV-B of [1]).

    With ``x_k = E_i x_{k+1} + g_i + noise`` (earlier, ``i``) and
    ``x_{k+1} = E_j x_{k+2} + g_j + noise`` (later, ``j``)::

        E = E_i E_j,    g = E_i g_j + g_i,    L = E_i L_j E_i^T + L_i.          (S2)

    The arguments come in the order of a reversed scan (the later element first).
    """
    i, j = earlier, later
    return _SmootherElement(
        E=i.E @ j.E,
        g=i.E @ j.g + i.g,
        L=symmetrise(i.E @ j.L @ i.E.T + i.L),
    )


def prefix_scan(combine: Callable[[Element, Element], Element], elements: Element, *,
                reverse: bool = False) -> Element:
    """All prefix combinations ``e_0 (x) e_1 (x) ... (x) e_k``, k = 0, ..., T - 1, by recursive
    doubling (Hillis & Steele [2], Section 2.1).

    At level ``d = 0, 1, ..., ceil(log2 T) - 1`` every element ``k >= 2^d`` becomes
    ``e_{k - 2^d} (x) e_k``; afterwards element ``k`` is the combination of all elements up to
    ``k``, in order (``combine`` need only be associative).  The levels run in one
    ``lax.scan`` whose body applies ``combine`` to all ``T`` elements at once (those below
    ``2^d`` are computed and discarded), so ``combine`` is traced once: ``T ceil(log2 T)``
    applications, ``ceil(log2 T)`` of them in sequence.

    Parameters
    ----------
    combine : callable
        ``combine(earlier, later)`` on single elements (no time axis); vectorised here.
    elements : pytree of arrays
        The elements stacked along a leading time axis of length ``T``.
    reverse : bool
        Suffix combinations instead, ``e_k (x) ... (x) e_{T-1}`` written in the order of a
        reversed scan: ``combine(later, earlier)``, as ``jax.lax.associative_scan`` does.

    Returns
    -------
    pytree of arrays
        Same structure and shapes as ``elements``.
    """
    if reverse:
        def flip(tree: Any) -> Any:
            return jax.tree.map(lambda a: jnp.flip(a, axis=0), tree)
        return flip(prefix_scan(combine, flip(elements)))
    T = jax.tree.leaves(elements)[0].shape[0]
    levels = (T - 1).bit_length()  # ceil(log2 T), 0 for T = 1
    if levels == 0:
        return elements
    position = jnp.arange(T)
    batched = jax.vmap(combine)

    def level(partial: Element, offset: jax.Array) -> tuple[Element, None]:
        source = jnp.maximum(position - offset, 0)  # clamped: below the offset is discarded
        combined = batched(jax.tree.map(lambda a: a[source], partial), partial)
        keep = position >= offset

        def select(new: jax.Array, old: jax.Array) -> jax.Array:
            return jnp.where(keep.reshape((T,) + (1,) * (old.ndim - 1)), new, old)
        return jax.tree.map(select, combined, partial), None

    out, _ = lax.scan(level, elements, 2 ** jnp.arange(levels))
    return out


def _filtered_moments(model: LinearGaussianSSM, obs: KalmanObservations
                      ) -> tuple[jax.Array, jax.Array]:
    """Filtered means (T, n) and covariances (T, n, n): the ``(b, C)`` of the prefixes of the
    filtering elements, Eqs. (F1)-(F2).  ``obs`` already masked."""
    T, n = obs.values.shape[0], model.initial_mean.shape[-1]
    F, Q = transition_sequence(model, T)
    dtype = model.initial_cov.dtype
    transitions = jnp.concatenate([jnp.zeros((1, n, n), dtype), F])
    process_covs = jnp.concatenate([model.initial_cov[None], Q])
    offsets = jnp.concatenate([model.initial_mean[None], jnp.zeros((T - 1, n), dtype)])
    elements = jax.vmap(_filter_element)(
        transitions, process_covs, offsets, obs.values, obs.operators, obs.variances
    )
    prefixes = prefix_scan(_combine_filter, elements)
    return prefixes.b, prefixes.C


def _predicted_moments(model: LinearGaussianSSM, filtered_means: jax.Array,
                       filtered_covs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Predicted moments (T, n), (T, n, n) from the filtered ones, Eq. (3) of
    :mod:`tracerbayes.exact.kalman`, all times at once; entry 0 is the prior."""
    F, Q = transition_sequence(model, filtered_means.shape[0])
    next_means, next_covs = jax.vmap(predict)(filtered_means[:-1], filtered_covs[:-1], F, Q)
    return (jnp.concatenate([model.initial_mean[None], next_means]),
            jnp.concatenate([model.initial_cov[None], next_covs]))


def parallel_kalman_log_likelihood(model: LinearGaussianSSM, obs: KalmanObservations, *,
                                   update: str = "auto") -> jax.Array:
    """``log p(y_{0:T-1})`` of the valid observations by the parallel filter.

    The filtered moments by associative scan (:func:`parallel_kalman_filter`), the predicted
    ones from them, Eq. (3), and the prediction-error decomposition, Eq. (5) of
    :mod:`tracerbayes.exact.kalman`, with the per-time update of
    :func:`tracerbayes.exact.kalman.kalman_log_likelihood` (``update``, same meaning: by
    default the information form when a time holds more rows than the state has entries)
    applied to all times at once.  Equal to ``kalman_log_likelihood`` to round-off and
    differentiable in the same arguments.  Returns an array of shape ``()``.
    """
    _, m, n = check_shapes(model, obs)
    obs = masked_observations(obs)
    predicted_means, predicted_covs = _predicted_moments(model, *_filtered_moments(model, obs))
    *_, totals = jax.vmap(_updater(update, m, n))(
        predicted_means, predicted_covs, obs.values, obs.operators, obs.variances, obs.valid
    )
    return jnp.sum(totals)


def parallel_kalman_filter(model: LinearGaussianSSM, obs: KalmanObservations) -> FilterResult:
    """Kalman filter by associative scan (Särkkä & García-Fernández 2021, Section IV-A).

    Builds one element per time step (Eq. F1, :func:`_filter_element`) and combines them
    with the associative operator of Eq. (F2) (:func:`prefix_scan`); the ``b, C`` of the
    prefix up to ``k`` are the filtered moments.  Predicted moments then follow in one
    vectorised prediction (Eq. 3 of :mod:`tracerbayes.exact.kalman`), and the
    per-observation log-likelihood terms from a vectorised joint update
    (:func:`tracerbayes.exact.kalman.update_joint`) of all times at once.

    Parameters
    ----------
    model : LinearGaussianSSM
        ``m_0`` (n,), ``P_0`` (n, n), ``F`` and ``Q`` (n, n) or (T - 1, n, n).
    obs : KalmanObservations
        ``values`` (T, m), ``operators`` (T, m, n), ``variances`` (T, m), ``valid`` (T, m).

    Returns
    -------
    FilterResult
        The same quantities as :func:`tracerbayes.exact.kalman.kalman_filter` with
        ``update='joint'``, equal to round-off.
    """
    check_shapes(model, obs)
    obs = masked_observations(obs)
    filtered_means, filtered_covs = _filtered_moments(model, obs)
    predicted_means, predicted_covs = _predicted_moments(model, filtered_means, filtered_covs)
    _, _, terms = jax.vmap(update_joint)(
        predicted_means, predicted_covs, obs.values, obs.operators, obs.variances, obs.valid
    )
    return FilterResult(
        log_likelihood=jnp.sum(terms),
        filtered_means=filtered_means,
        filtered_covs=filtered_covs,
        predicted_means=predicted_means,
        predicted_covs=predicted_covs,
        log_likelihood_terms=terms,
    )


def parallel_rts_smoother(model: LinearGaussianSSM, obs: KalmanObservations) -> SmootherResult:
    """RTS smoother by associative scan (Särkkä & García-Fernández 2021, Section IV-B).

    Elements ``k < T - 1`` are, Eq. (S1), ``E_k = G_k`` (the RTS gain),
    ``g_k = m_k - G_k F_k m_k``, ``L_k = P_k - G_k F_k P_k``; the last is
    ``(0, m_{T-1}, P_{T-1})``.  A reversed scan (:func:`prefix_scan`) with
    :func:`_combine_smoother` gives the smoothed moments as the
    suffix ``(g, L)``; cross-covariances are ``P^s_{k+1} G_k^T``.  The filter is
    :func:`parallel_kalman_filter`.

    Returns
    -------
    SmootherResult
        The same quantities as :func:`tracerbayes.exact.kalman.rts_smoother`.
    """
    filtered = parallel_kalman_filter(model, obs)
    T, n = filtered.filtered_means.shape
    F, _ = transition_sequence(model, T)
    means, covs = filtered.filtered_means, filtered.filtered_covs
    if T == 1:  # nothing to smooth (and no zero-size batched Cholesky for XLA to lower)
        return SmootherResult(means, covs, jnp.zeros((0, n, n), covs.dtype), means, covs,
                              filtered.log_likelihood, filtered.log_likelihood_terms)

    gains = jax.vmap(smoother_gain)(covs[:-1], F, filtered.predicted_covs[1:])
    propagated = jnp.einsum("kij,kj->ki", F, means[:-1])
    elements = _SmootherElement(
        E=jnp.concatenate([gains, jnp.zeros((1, n, n), gains.dtype)]),
        g=jnp.concatenate([means[:-1] - jnp.einsum("kij,kj->ki", gains, propagated), means[-1:]]),
        L=jnp.concatenate(
            [symmetrise(covs[:-1] - gains @ F @ covs[:-1]), covs[-1:]],
        ),
    )
    suffixes = prefix_scan(_combine_smoother, elements, reverse=True)
    smoothed_means, smoothed_covs = suffixes.g, suffixes.L
    return SmootherResult(
        smoothed_means=smoothed_means,
        smoothed_covs=smoothed_covs,
        smoothed_cross_covs=smoothed_covs[1:] @ jnp.swapaxes(gains, -1, -2),
        filtered_means=means,
        filtered_covs=covs,
        log_likelihood=filtered.log_likelihood,
        log_likelihood_terms=filtered.log_likelihood_terms,
    )
