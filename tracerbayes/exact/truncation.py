"""Representation error: the prior variance of the modes a reduced model leaves out.

A model on the first ``K`` Neumann modes sees an observation ``y = h . c + e`` through the
retained part of the field only. The rest of a masked Matérn field of spectrum ``f``
(:func:`tracerbayes.exact.priors.spectral_variances`) adds, at that observation, the variance

    r(h) = sum_{k >= K} (h . phi_k)^2 f(lambda_k) = g^T f(B) g,

with ``B = A^-1/2 S A^-1/2`` the symmetric form of the Neumann eigenproblem
(:mod:`tracerbayes.grid.basis`), ``g`` the row ``A^-1/2 h`` with its retained part removed
(``g = A^-1/2 h - A^1/2 Phi_K Phi_K^T h``) and ``lambda_k`` the eigenvalues. The left-out
eigenvectors are never formed: ``steps`` Lanczos iterations of ``B`` from ``g`` give a
Gauss quadrature of the spectral measure of ``g`` (Golub & Meurant 2010, *Matrices, Moments
and Quadrature*, Ch. 6-7), nodes ``theta_j`` and weights ``w_j`` with
``r(h) ~= sum_j w_j f(theta_j)``, exact for polynomials of degree ``2 steps - 1`` and, for the
smooth Matérn spectra, to round-off after a few tens of steps. Each Lanczos vector is kept
orthogonal to the retained eigenvectors: in floating point the iteration would otherwise
re-grow them from round-off ("ghost" nodes at small eigenvalues, where a Gaussian spectrum is
40 orders of magnitude larger than in the tail). The nodes and weights do not
depend on the parameters, so the variance is a cheap, differentiable function of the prior's
lengthscale and sd inside NUTS.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from tracerbayes.grid.basis import SpectralBasis, symmetric_stiffness
from tracerbayes.grid.core import Grid

__all__ = ["TailQuadrature", "tail_quadrature", "tail_variance", "DEFAULT_STEPS",
           "choose_n_modes", "basis_warnings", "fitted_scale", "FIT_BUDGET"]

#: Lanczos steps (quadrature nodes) per observation row.
DEFAULT_STEPS = 48
#: Compute budget of the fit's basis, in ``T * S^3`` (analysis times times the cube of the
#: state size) per Kalman filter: 1e8 keeps a BFGS mode search on this 2-core machine to a
#: few minutes (30 daily maps at ~150 state entries).
FIT_BUDGET = 1e8
#: Fewest modes ``auto`` chooses (whatever the budget).
MIN_MODES = 20
KM = 1000.0


def _median(prior: Any) -> float:
    return float(prior.icdf(0.5))


def fitted_scale(model: Any, params: dict[str, Any]) -> tuple[float, float]:
    """The shorter of the fitted (median) noise and first-map lengthscales, in m, and the
    model's wet area in m^2: what sizes a basis for the fitted field."""
    length = min(float(np.median(params["noise_lengthscale_km"])),
                 float(np.median(params["initial_lengthscale_km"]))) * KM
    return length, float(np.sum(model.grid.wet_area))


def choose_n_modes(grid: Grid, priors: Any, n_times: int, *, fraction: float = 0.95,
                   budget: float = FIT_BUDGET, extra_state: int = 0) -> tuple[int, str]:
    """``n_modes="auto"``: the modes that carry ``fraction`` of the variance of a Matérn field
    with the shorter of the prior medians of ``initial_lengthscale_km`` and
    ``noise_lengthscale_km`` (:func:`tracerbayes.exact.priors.modes_needed`, Weyl's law),
    capped so that ``n_times * (K + extra_state)^3 <= budget``, at least :data:`MIN_MODES`
    and at most the wet cells. Returns ``(K, reason)``; the representation error covers
    what a cap leaves out."""
    from tracerbayes.exact.priors import modes_needed

    length_km = min(_median(priors.initial_lengthscale_km),
                    _median(priors.noise_lengthscale_km))
    area = float(np.sum(grid.wet_area))
    needed = modes_needed(area, length_km * KM, priors.smoothness, fraction)
    cap = int((budget / max(int(n_times), 1)) ** (1.0 / 3.0)) - int(extra_state)
    chosen = int(min(max(min(needed, cap), MIN_MODES), grid.n_wet))
    reason = (f"{needed} modes carry {fraction:.0%} of the variance of a {length_km:.0f} km "
              "field")
    if needed > cap:
        reason += (f"; the compute budget ({n_times} times x {budget:.0e}) allows {cap}, "
                   "the representation error covers the rest")
    if chosen == grid.n_wet:
        reason += "; every wet cell"
    return chosen, reason


def basis_warnings(model: Any, params: dict[str, Any], data: Any, n_modes: int | None = None,
                   *, fraction: float = 0.8) -> list[str]:
    """Signs in the fitted parameters that the basis is too coarse, each with what to do:
    the ``n_modes`` basis (default the model's) carries less than ``fraction`` of the
    variance of the fitted fields (the shorter fitted lengthscale), or the representation
    error exceeds the observation error at most observations."""
    from tracerbayes.exact.priors import modes_needed, resolved_fraction

    K = int(model.n_modes if n_modes is None else n_modes)
    if K >= model.grid.n_wet:
        return []
    length, area = fitted_scale(model, params)
    carried = resolved_fraction(K, area, length, model.priors.smoothness)
    out = []
    if carried < fraction:
        want = min(modes_needed(area, length, model.priors.smoothness, 0.95), model.grid.n_wet)
        out.append(f"the basis is too coarse for the fitted field: {K} modes carry "
                   f"{carried:.0%} of the variance of its {length / KM:.0f} km scale; "
                   f"{want} would carry 95% (model.n_modes, or a finer map basis: "
                   "method.map_modes)")
    if getattr(data, "tail", None) is not None:
        point = {k: np.median(np.asarray(v)) for k, v in params.items() if np.ndim(v) <= 2}
        valid = np.asarray(data.valid)
        rep = np.asarray(model.representation_variances(point, data))[valid]
        err = (float(point["error_scale"]) * np.asarray(data.errors)[valid]) ** 2
        share = float(np.mean(rep > err))
        if share > 0.5:
            out.append(f"the representation error (the {model.n_modes}-mode fit's unresolved "
                       f"variance) exceeds the observation error at {share:.0%} of the "
                       "observations: the parameters are fitted on a coarse picture; raise "
                       "model.n_modes")
    return out


class TailQuadrature(NamedTuple):
    """Gauss quadrature of the left-out spectrum seen by each observation row.

    ``nodes`` (..., steps): eigenvalues (1/m^2); ``weights`` (..., steps): squared projections
    (1/m^2, like ``(h . phi_k)^2``), zero where a row sees no left-out mode.
    """

    nodes: Any
    weights: Any


def tail_quadrature(grid: Grid, basis: SpectralBasis, indices: np.ndarray, weights: np.ndarray,
                    steps: int = DEFAULT_STEPS) -> TailQuadrature:
    """Quadrature of the modes beyond ``basis`` for observation rows ``(indices, weights)``.

    Parameters
    ----------
    grid, basis : the grid and the retained modes (``basis.size`` of them).
    indices, weights : (..., 4)
        Wet-cell indices and interpolation weights of each row (as in
        :class:`tracerbayes.observations.core.PaddedObservations`; all-zero weights give
        zero quadrature weights).
    steps : int
        Lanczos steps (at most the number of wet cells minus ``K``).
    """
    indices = np.asarray(indices)
    weights = np.asarray(weights, dtype=float)
    shape = indices.shape[:-1]
    rows_i = indices.reshape(-1, indices.shape[-1])
    rows_w = weights.reshape(-1, weights.shape[-1])
    # One Lanczos run per distinct row (repeat visits to a cell share it).
    key = np.concatenate([rows_i.astype(float), rows_w], axis=1)
    unique, inverse = np.unique(key, axis=0, return_inverse=True)
    u_idx = unique[:, : rows_i.shape[1]].astype(int)
    u_w = unique[:, rows_i.shape[1]:]
    n, K = grid.n_wet, basis.size
    steps = int(max(1, min(steps, n - K))) if n > K else 1
    nodes = np.zeros((len(unique), steps))
    quad = np.zeros((len(unique), steps))
    if n > K and len(unique):
        area = grid.wet_area
        h = np.zeros((n, len(unique)))
        np.add.at(h, (u_idx, np.arange(len(unique))[:, None]), u_w)
        retained = basis.vectors.T @ h  # (K, R): Phi_K^T h
        g = h / np.sqrt(area)[:, None] - np.sqrt(area)[:, None] * (basis.vectors @ retained)
        psi = np.sqrt(area)[:, None] * basis.vectors  # orthonormal retained eigenvectors
        nodes, quad = _lanczos_quadrature(symmetric_stiffness(grid), g, steps, psi)
    flat = inverse.reshape(-1)
    return TailQuadrature(nodes[flat].reshape(*shape, steps), quad[flat].reshape(*shape, steps))


def _lanczos_quadrature(B: sp.csr_matrix, start: np.ndarray, steps: int, retained: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Gauss nodes and weights of ``start[:, r]``'s spectral measure under ``B``, per column,
    with every Lanczos vector kept orthogonal to the ``retained`` eigenvectors."""
    norm2 = np.einsum("nr,nr->r", start, start)
    scale = np.sqrt(norm2.max()) if norm2.size else 0.0
    # a row whose left-out part is round-off (a complete basis) gets no weight
    alive = norm2 > (1e-20 * scale**2 if scale > 0 else np.inf)
    v = np.where(alive, start / np.sqrt(np.where(alive, norm2, 1.0)), 0.0)
    v_prev = np.zeros_like(v)
    beta_prev = np.zeros(v.shape[1])
    alphas = np.zeros((steps, v.shape[1]))
    betas = np.zeros((max(steps - 1, 0), v.shape[1]))
    lam_scale = abs(B).sum(axis=1).max()  # bound of the spectrum, for the stopping test
    for j in range(steps):
        w = B @ v - beta_prev * v_prev
        alpha = np.einsum("nr,nr->r", v, w)
        w -= alpha * v
        w -= retained @ (retained.T @ w)  # round-off must not re-grow the retained modes
        alphas[j] = alpha
        if j == steps - 1:
            break
        beta = np.sqrt(np.einsum("nr,nr->r", w, w))
        live = beta > 1e-13 * lam_scale  # an invariant subspace ends the column's run
        betas[j] = np.where(live, beta, 0.0)
        v_prev, v = v, np.where(live, w / np.where(live, beta, 1.0), 0.0)
        beta_prev = betas[j]
    nodes = np.zeros((v.shape[1], steps))
    weights = np.zeros((v.shape[1], steps))
    for r in np.nonzero(alive)[0]:
        theta, vecs = scipy.linalg.eigh_tridiagonal(alphas[:, r], betas[:, r])
        nodes[r] = np.clip(theta, 0.0, None)
        weights[r] = norm2[r] * vecs[0] ** 2
    return nodes, weights


def tail_variance(quadrature: TailQuadrature, spectrum: Any) -> Any:
    """``sum_j w_j f(theta_j)``: the left-out variance at each row, for a spectrum
    ``f(lambda)`` (a function of the eigenvalue array, e.g. a Matérn density in JAX)."""
    import jax.numpy as jnp

    return jnp.sum(jnp.asarray(quadrature.weights) * spectrum(jnp.asarray(quadrature.nodes)),
                   axis=-1)
