"""Ensemble Kalman analysis updates: stochastic EnKF, ETKF and LETKF, as pure JAX functions.

Notation (Hunt et al. 2007; Sakov & Oke 2008), with members as rows:

* ``E`` (N_e, n): the ensemble, one member state per row;
* ``A = E - 1 xbar^T`` (N_e, n): the state anomalies;
* ``Y = H(E) - 1 ybar^T`` (N_e, m): the observation-space anomalies;
* ``S = Y R^{-1/2} / sqrt(N_e - 1)`` (N_e, m): the scaled observation anomalies, with
  ``R = diag(obs_sd**2)`` (units of the observed quantity squared).

Every update below is written as an ensemble transform ``E_a = X5 E`` with an
(N_e, N_e) matrix ``X5`` (the "X5" of Evensen 2003), so that an ensemble smoother can apply the
same transform to past states (:mod:`tracerbayes.ensemble.smoother`). All work is done in the
N_e-dimensional ensemble space, so the cost is linear in the number of observations.

Local problems (LETKF) have Gaspari-Cohn weights that vanish beyond twice the half-width,
so only the ``k`` observations with non-zero weight enter (:func:`compact_etkf_weights`): with
``S`` (N_e, k) and ``d`` (k,) restricted to them and ``S^T S = V diag(lam) V^T`` (k, k),

* (C1) ``w = (I + S S^T)^{-1} S d / sqrt(N_e - 1) = S V diag(1 / (1 + lam)) V^T d
  / sqrt(N_e - 1)`` (the push-through identity ``(I + S S^T)^{-1} S = S (I + S^T S)^{-1}``);
* (C2) ``W = (I + S S^T)^{-1/2} = I + S V diag(g(lam)) V^T S^T`` with
  ``g(lam) = ((1 + lam)^{-1/2} - 1) / lam = -1 / (sqrt(1 + lam) (1 + sqrt(1 + lam)))``
  (from the SVD ``S = U diag(lam^{1/2}) V^T``; the second form is finite at ``lam = 0``).

Both are exact, not approximations: the dropped observations have zero weight.

Observations that are padding (``valid`` false) get zero precision and drop out exactly.
The observation operator ``H`` is either a dense (m, n) matrix or a function mapping one
member state (n,) to its (m,) predicted observations; it is assumed linear (for a non-linear
function the updates are the usual ensemble approximations).

References
----------
Burgers, G., van Leeuwen, P. J. & Evensen, G. (1998). Analysis scheme in the ensemble Kalman
filter. Mon. Wea. Rev. 126, 1719-1724.
Evensen, G. (1994). Sequential data assimilation with a nonlinear quasi-geostrophic model
using Monte Carlo methods to forecast error statistics. J. Geophys. Res. 99, 10143-10162.
Hunt, B. R., Kostelich, E. J. & Szunyogh, I. (2007). Efficient data assimilation for
spatiotemporal chaos: a local ensemble transform Kalman filter. Physica D 230, 112-126.
Yang, S.-C., Kalnay, E., Hunt, B. & Bowler, N. E. (2009). Weight interpolation for efficient
data assimilation with the local ensemble transform Kalman filter. Q. J. R. Meteorol. Soc.
135, 251-262.
Sakov, P. & Oke, P. R. (2008). Implications of the form of the ensemble transformation in the
ensemble square root filters. Mon. Wea. Rev. 136, 1042-1053.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from tracerbayes.ensemble.localisation import WeightNodes, gaspari_cohn

__all__ = [
    "enkf",
    "enkf_transform",
    "etkf",
    "etkf_transform",
    "letkf",
    "observe",
    "random_rotation",
]

Operator = Any  # a dense (m, n) array or a function (n,) -> (m,)
GATHER_ENTRIES = 2**20  # default size of a batch of gathered node transforms (8 MB in float64)


def _is_concrete(*arrays: Any) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_inputs(E: Any, y: Any, H: Operator, obs_sd: Any, valid: Any) -> None:
    """Raise a clear ``ValueError`` for inconsistent shapes or bad values (when concrete)."""
    E, y, obs_sd = jnp.asarray(E), jnp.asarray(y), jnp.asarray(obs_sd)
    if E.ndim != 2:
        raise ValueError(f"ensemble E must have shape (N_e, n), got {E.shape}")
    if E.shape[0] < 2:
        raise ValueError(f"an ensemble needs N_e >= 2 members, got N_e = {E.shape[0]}; "
                         "add members (rows of E)")
    if y.ndim != 1:
        raise ValueError(f"observations y must have shape (m,), got {y.shape}")
    if obs_sd.shape != y.shape:
        raise ValueError(f"obs_sd has shape {obs_sd.shape} but y has shape {y.shape}; "
                         "give one error standard deviation per observation")
    if not callable(H) and jnp.shape(H) != (y.shape[0], E.shape[1]):
        raise ValueError(f"operator H has shape {jnp.shape(H)}; expected (m, n) = "
                         f"({y.shape[0]}, {E.shape[1]}) from y and E")
    if valid is not None and jnp.shape(valid) != y.shape:
        raise ValueError(f"valid has shape {jnp.shape(valid)}; expected {y.shape}")
    if not _is_concrete(E, y, obs_sd, valid):
        return
    used = np.ones(y.shape, bool) if valid is None else np.asarray(valid, bool)
    sd, values = np.asarray(obs_sd), np.asarray(y)
    bad = np.flatnonzero(used & ~(sd > 0))
    if bad.size:
        raise ValueError(f"{bad.size} observation error sd(s) are not > 0 (first at index "
                         f"{bad[0]}: {sd[bad[0]]}); error sds must be positive and finite")
    bad = np.flatnonzero(used & ~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{bad.size} observation value(s) are NaN/inf (first at index "
                         f"{bad[0]}); drop them or mark them invalid with `valid`")
    if not np.all(np.isfinite(np.asarray(E))):
        raise ValueError("ensemble E contains NaN or inf (has the filter diverged?)")


def observe(E: jax.Array, H: Operator) -> jax.Array:
    """Predicted observations ``H(E)`` (N_e, m) of every member."""
    if callable(H):
        return jax.vmap(H)(E)
    return E @ jnp.asarray(H).T


def _obs_space(E, y, H, obs_sd, valid):
    """Anomalies, mean innovation and R^{-1/2} with padding zeroed: the common preamble."""
    N = E.shape[0]
    HE = observe(E, H)
    used = jnp.ones(y.shape, bool) if valid is None else jnp.asarray(valid, bool)
    inv_sd = jnp.where(used, 1.0 / jnp.where(used, obs_sd, 1.0), 0.0)  # R^{-1/2}, 0 on padding
    HE = jnp.where(used, HE, 0.0)
    y = jnp.where(used, y, 0.0)
    ybar = HE.mean(axis=0)
    Y = HE - ybar  # observation anomalies (N_e, m)
    S = Y * inv_sd / jnp.sqrt(N - 1.0)  # scaled anomalies (N_e, m)
    return HE, y, inv_sd, S, ybar


def _centring(N: int, dtype) -> jax.Array:
    """``C = I - 1 1^T / N``: anomalies ``A = C E``."""
    return jnp.eye(N, dtype=dtype) - 1.0 / N


def etkf_weights(S: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean weights ``w`` (N_e,) and symmetric square-root transform ``W`` (N_e, N_e).

    With ``S`` the scaled anomalies and ``d = R^{-1/2}(y - ybar)`` the scaled innovation,
    ``(N_e - 1) P~_a = (I + S S^T)^{-1}`` (Eq. 21 of Hunt et al. 2007), the mean weights
    ``w = (I + S S^T)^{-1} S d / sqrt(N_e - 1)`` (Eq. 22) and ``W = (I + S S^T)^{-1/2}``, the
    symmetric square root (Eq. 24; Sakov & Oke 2008), which keeps the ensemble mean.
    """
    N = S.shape[0]
    eigval, U = jnp.linalg.eigh(S @ S.T)
    eigval = jnp.clip(eigval, 0.0, None)
    w = U @ ((U.T @ (S @ d)) / (1.0 + eigval)) / jnp.sqrt(N - 1.0)
    W = (U * (1.0 / jnp.sqrt(1.0 + eigval))) @ U.T
    return w, W


def compact_etkf_weights(S: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`etkf_weights` through the (k, k) matrix ``S^T S``: cheaper for ``k < N_e``.

    ``S`` (N_e, k) and ``d`` (k,) as in :func:`etkf_weights`; the same ``w`` (Eq. C1 of the
    module docstring) and ``W`` (Eq. C2) to round-off, for any ``k``. Cost ``~ k^3 + N_e^2 k``
    against ``~ N_e^3 + N_e^2 k`` for :func:`etkf_weights`.
    """
    N = S.shape[0]
    lam, V = jnp.linalg.eigh(S.T @ S)  # S^T S = V diag(lam) V^T
    lam = jnp.clip(lam, 0.0, None)
    SV = S @ V  # (N_e, k): its columns are sqrt(lam) times the left singular vectors
    w = SV @ ((V.T @ d) / (1.0 + lam)) / jnp.sqrt(N - 1.0)  # (C1)
    root = jnp.sqrt(1.0 + lam)
    W = jnp.eye(N, dtype=S.dtype) + (SV * (-1.0 / (root * (1.0 + root)))) @ SV.T  # (C2)
    return w, W


def random_rotation(key: jax.Array, N: int, dtype=jnp.float64) -> jax.Array:
    """A random orthogonal (N, N) matrix ``Q`` with ``Q 1 = 1`` (mean-preserving).

    Haar-distributed on the orthogonal complement of ``1`` (QR of a Gaussian matrix with sign
    correction, Mezzadri 2007), embedded in an orthonormal basis whose first vector is
    ``1 / sqrt(N)``; used to rotate square-root ensembles (Sakov & Oke 2008, Sec. 4).
    """
    G = jax.random.normal(key, (N - 1, N - 1), dtype)
    Q0, R0 = jnp.linalg.qr(G)
    Q0 = Q0 * jnp.sign(jnp.diag(R0))
    first = jnp.full((N, 1), 1.0 / jnp.sqrt(N), dtype)
    basis, _ = jnp.linalg.qr(jnp.concatenate([first, jnp.eye(N, dtype=dtype)[:, : N - 1]], 1))
    basis = basis * jnp.sign(basis[0, 0])  # first column is +1/sqrt(N)
    V = basis[:, 1:]
    return first @ first.T + V @ Q0 @ V.T


def etkf_transform(E: jax.Array, y: jax.Array, H: Operator, obs_sd: jax.Array, *,
                   valid: jax.Array | None = None,
                   rotation_key: jax.Array | None = None) -> jax.Array:
    """The ETKF ensemble transform ``X5`` (N_e, N_e) with ``E_a = X5 E``.

    ``X5 = 1 1^T / N + (1 w^T + Q^T W) C`` with ``C`` the centring matrix, ``w, W`` from
    :func:`etkf_weights` and ``Q`` an optional random mean-preserving rotation.
    """
    check_inputs(E, y, H, obs_sd, valid)
    E = jnp.asarray(E)
    N = E.shape[0]
    _, y, inv_sd, S, ybar = _obs_space(E, y, H, obs_sd, valid)
    w, W = etkf_weights(S, (y - ybar) * inv_sd)
    if rotation_key is not None:
        W = random_rotation(rotation_key, N, E.dtype).T @ W
    C = _centring(N, E.dtype)
    return 1.0 / N + (w[None, :] + W) @ C


def etkf(E: jax.Array, y: jax.Array, H: Operator, obs_sd: jax.Array, *,
         valid: jax.Array | None = None, rotation_key: jax.Array | None = None) -> jax.Array:
    """Ensemble transform Kalman filter analysis with the symmetric square root.

    ``xbar_a = xbar + A^T w`` and ``A_a = W A`` (Hunt et al. 2007, Eqs. 20-25; Sakov & Oke
    2008). For a linear ``H`` and an ensemble whose sample mean and covariance are a Gaussian
    prior's, the analysis sample mean and covariance are exactly the Kalman analysis.

    Parameters
    ----------
    E : Array, shape (N_e, n)
        Forecast ensemble.
    y : Array, shape (m,)
        Observations.
    H : Array (m, n) or callable (n,) -> (m,)
        Linear observation operator.
    obs_sd : Array, shape (m,)
        Observation-error standard deviations (units of ``y``), ``R = diag(obs_sd**2)``.
    valid : bool Array, shape (m,), optional
        Which observations are real (padding is ignored).
    rotation_key : JAX key, optional
        If given, the anomalies are rotated by a random mean-preserving orthogonal matrix.

    Returns
    -------
    Array, shape (N_e, n): the analysis ensemble ``E_a``.
    """
    return etkf_transform(E, y, H, obs_sd, valid=valid, rotation_key=rotation_key) @ E


def enkf_transform(key: jax.Array, E: jax.Array, y: jax.Array, H: Operator,
                   obs_sd: jax.Array, *, valid: jax.Array | None = None,
                   centre_perturbations: bool = True) -> jax.Array:
    """Transform ``X5`` of the stochastic EnKF with perturbed observations.

    Each member is updated with its own perturbed observation ``y + eps_j``, ``eps_j ~ N(0, R)``
    (Burgers et al. 1998): ``x_j^a = x_j + K (y + eps_j - H x_j)`` with the ensemble gain
    ``K = A^T Y / (N-1) (Y^T Y / (N-1) + R)^{-1}`` (Evensen 1994). By Woodbury,
    ``K D^T = A^T (I + S S^T)^{-1} S R^{-1/2} D^T / sqrt(N-1)``, so
    ``E_a = E + G A`` with ``G = D R^{-1/2} S^T (I + S S^T)^{-1} / sqrt(N-1)``.
    With ``centre_perturbations`` the perturbations have zero ensemble mean (as in DAPPER),
    which removes sampling noise from the analysis mean.
    """
    check_inputs(E, y, H, obs_sd, valid)
    E = jnp.asarray(E)
    N = E.shape[0]
    HE, y, inv_sd, S, _ = _obs_space(E, y, H, obs_sd, valid)
    eps = jax.random.normal(key, HE.shape, E.dtype)  # eps_j R^{-1/2}, standard normal
    if centre_perturbations:
        eps = (eps - eps.mean(axis=0)) * jnp.sqrt(N / (N - 1.0))
    D = (y - HE) * inv_sd + jnp.where(inv_sd > 0, eps, 0.0)  # R^{-1/2}(y + eps_j - H x_j)
    eigval, U = jnp.linalg.eigh(S @ S.T)
    eigval = jnp.clip(eigval, 0.0, None)
    G = ((D @ S.T) @ U / (1.0 + eigval)) @ U.T / jnp.sqrt(N - 1.0)
    return jnp.eye(N, dtype=E.dtype) + G @ _centring(N, E.dtype)


def enkf(key: jax.Array, E: jax.Array, y: jax.Array, H: Operator, obs_sd: jax.Array, *,
         valid: jax.Array | None = None, centre_perturbations: bool = True) -> jax.Array:
    """Stochastic EnKF analysis (perturbed observations); arguments as :func:`etkf`.

    See :func:`enkf_transform` for the equations. Returns the analysis ensemble (N_e, n).
    """
    X5 = enkf_transform(key, E, y, H, obs_sd, valid=valid,
                        centre_perturbations=centre_perturbations)
    return X5 @ jnp.asarray(E)


def letkf(E: jax.Array, y: jax.Array, H: Operator, obs_sd: jax.Array, *,
          distances: jax.Array | Callable[[jax.Array], jax.Array], radius: float,
          valid: jax.Array | None = None, rotation_key: jax.Array | None = None,
          batch_size: int | None = None, nodes: WeightNodes | None = None,
          mesh: Mesh | None = None, compact: bool = True) -> jax.Array:
    """Local ETKF (Hunt et al. 2007, Sec. 2.3) with Gaspari-Cohn observation weighting.

    For each state variable ``i`` an ETKF is solved with observation precision ``R^{-1}``
    multiplied by ``rho_ij = GC(dist(i, j) / radius)`` (Gaspari & Cohn 1999, Eq. 4.10, support
    ``2 radius``), the "R-localisation" of Hunt et al. (2007, Eq. 42 with a smooth taper).
    Variable ``i`` of the analysis takes the local mean weights and transform:
    ``E_a[:, i] = xbar_i + (w_i + W_i) A[:, i]``. With ``radius = inf`` every local problem is
    the global one and the result equals :func:`etkf`.

    Parameters
    ----------
    E, y, H, obs_sd, valid : see :func:`etkf`
    distances : Array (n, m) or callable ``i -> (m,)``
        Distances from state variable ``i`` to each observation, in the units of ``radius``
        (km for great-circle distances on lon/lat grids, m on Cartesian grids, grid points on
        the Lorenz-96 ring; see :mod:`tracerbayes.ensemble.localisation`). A callable avoids
        storing the (n, m) matrix.
    radius : float
        Gaspari-Cohn half-width ``c``: weights fall to 0 at distance ``2 c``.
    rotation_key : JAX key, optional
        One random mean-preserving rotation shared by all points (keeps the field smooth).
    batch_size : int, optional
        Solve this many local problems at a time (``lax.map``) to bound memory; default all.
    nodes : WeightNodes, optional
        Weight interpolation (Yang et al. 2009): the local transforms are solved at the
        ``p`` nodes only (``distances`` then runs over nodes: (p, m) or ``i -> (m,)`` for node
        ``i``) and variable ``i`` uses ``sum_s weights[i, s] (w + W)_{indices[i, s]}``.
    mesh : jax.sharding.Mesh, optional
        Split the local problems into one tile per device of the mesh (:func:`local_map`);
        the same numbers to round-off.
    compact : bool
        Solve each local problem on its observations of non-zero weight only
        (:func:`local_etkf_map`; the same numbers to round-off, cheaper when they are few);
        False solves every one with all ``m`` observations (the reference).

    Returns
    -------
    Array, shape (N_e, n)
    """
    check_inputs(E, y, H, obs_sd, valid)
    E = jnp.asarray(E)
    N, n = E.shape
    _, y, inv_sd, S, ybar = _obs_space(E, y, H, obs_sd, valid)
    d = (y - ybar) * inv_sd
    xbar = E.mean(axis=0)
    A = E - xbar
    Q = None if rotation_key is None else random_rotation(rotation_key, N, E.dtype)
    points = n if nodes is None else check_nodes(nodes, n)
    if not callable(distances):
        table = jnp.asarray(distances)
        if table.shape != (points, y.shape[0]):
            what = "(n, m)" if nodes is None else "(p, m) with p the number of nodes"
            raise ValueError(f"distances has shape {table.shape}; expected {what} = "
                             f"({points}, {y.shape[0]})")

        def distances(i):
            return table[i]

    def sqrt_weights(i):  # rho_i^{1/2} (m,): local problem i's observation weights
        return jnp.sqrt(gaspari_cohn(distances(i) / radius))

    def transform(w, W):  # (w + W) of a local problem: E_a[:, i] = xbar_i + transform A[:, i]
        return w[None, :] + (W if Q is None else Q.T @ W)

    solve = dict(S=S, d=d, sqrt_weights=sqrt_weights, compact=compact, batch_size=batch_size,
                 mesh=mesh)
    if nodes is None:
        columns = local_etkf_map(lambda i, w, W: xbar[i] + transform(w, W) @ A[:, i],
                                 jnp.arange(n), **solve)  # (n, N_e)
        return columns.T
    at_nodes = local_etkf_map(lambda i, w, W: transform(w, W), jnp.arange(points), **solve)
    return xbar + interpolate_transforms(at_nodes, nodes, A.T, batch_size, mesh).T


def local_etkf_map(f: Callable[..., Any], points: Any, *shared: Any, S: jax.Array,
                   d: jax.Array, sqrt_weights: Callable[[Any], jax.Array],
                   compact: bool = True, size: int | None = None,
                   batch_size: int | None = None, mesh: Mesh | None = None) -> Any:
    """``local_map(lambda p, *shared: f(p, w_p, W_p, *shared), points, *shared)``: one local
    ETKF per entry ``p`` of ``points``, with ``w_p, W_p = etkf_weights(S * r, d * r)`` and
    ``r = sqrt_weights(p)`` (m,) the square roots of its observation weights.

    With ``compact`` (default) each local problem keeps only its ``size`` heaviest
    observations (``lax.top_k`` of ``r``; default ``size = min(m, N_e // 2)``) and solves
    :func:`compact_etkf_weights`, which is exact when every observation that counts (``r > 0``
    and a non-zero column of ``S``) is among them. The largest such count over all ``points``
    is computed first; if it exceeds ``size`` every problem is solved with all ``m``
    observations instead (``lax.cond``: both compiled, one run; a plain branch when the
    count is concrete). Either way the numbers are those of ``compact = False`` to round-off.
    ``batch_size`` and ``mesh`` as in :func:`local_map`.
    """
    N, m = S.shape
    size = min(m, N // 2) if size is None else min(m, size)
    informative = jnp.any(S != 0, axis=0)  # observations that can change a local problem

    # S, d and informative travel as shared arguments, not closed over: on a mesh they may
    # be split over the devices, which shard_map refuses in a closure (see local_map)
    def dense(p, S, d, informative, *shared):
        r = sqrt_weights(p)
        return f(p, *etkf_weights(S * r, d * r), *shared)

    def compact_one(p, S, d, informative, *shared):
        r, nearest = jax.lax.top_k(jnp.where(informative, sqrt_weights(p), 0.0), size)
        return f(p, *compact_etkf_weights(S[:, nearest] * r, d[nearest] * r), *shared)

    def solve(one):
        return lambda: local_map(one, points, S, d, informative, *shared,
                                 batch_size=batch_size, mesh=mesh)

    if not compact:
        return solve(dense)()
    if size == m:  # every observation is kept: always exact
        return solve(compact_one)()
    in_range = local_map(lambda p, informative: jnp.sum(informative & (sqrt_weights(p) > 0)),
                         points, informative, batch_size=batch_size, mesh=mesh)
    fits = jnp.max(in_range) <= size
    if _is_concrete(fits):
        return solve(compact_one if fits else dense)()
    return jax.lax.cond(fits, solve(compact_one), solve(dense))


def local_map(f: Callable[..., Any], xs: Any, *shared: Any, batch_size: int | None = None,
              mesh: Mesh | None = None) -> Any:
    """``jax.lax.map(lambda x: f(x, *shared), xs, batch_size=batch_size)``: one local
    problem per entry of the leading axis of ``xs`` (state variables or weight nodes), split
    over devices.

    With ``mesh`` the leading axis is cut into contiguous tiles of the domain, one per
    device of the mesh (all its axes together), and each device maps ``f`` over its own
    tile (``jax.shard_map``) with a copy of each of the ``shared`` arrays. Pass an array
    that comes out of another split map as ``shared`` rather than closing ``f`` over it
    (``shard_map`` refuses a closed-over array split over the same devices). A length that
    is not a multiple of the device count is padded with copies of the last entry, whose
    results are dropped. Each local problem is the same computation either way, so the
    results agree with the unsplit map to round-off.
    """
    if mesh is None:
        return jax.lax.map(lambda x: f(x, *shared), xs, batch_size=batch_size)
    n = jax.tree.leaves(xs)[0].shape[0]
    pad = -n % mesh.size
    padded = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]), xs)
    tiles = PartitionSpec(mesh.axis_names)

    def tile_map(tile: Any, shared: tuple[Any, ...]) -> Any:
        return jax.lax.map(lambda x: f(x, *shared), tile, batch_size=batch_size)

    out = jax.shard_map(tile_map, mesh=mesh, in_specs=(tiles, PartitionSpec()),
                        out_specs=tiles)(padded, shared)
    return jax.tree.map(lambda a: a[:n], out)


def check_nodes(nodes: WeightNodes, n: int) -> int:
    """Check a :class:`WeightNodes` against ``n`` state variables; return the node count."""
    p = np.shape(nodes.coords)[0]
    if np.ndim(nodes.indices) != 2 or np.shape(nodes.indices) != np.shape(nodes.weights) \
            or np.shape(nodes.indices)[0] != n:
        raise ValueError(f"nodes.indices and nodes.weights must both have shape (n, s) with "
                         f"n = {n} state variables; got {np.shape(nodes.indices)} and "
                         f"{np.shape(nodes.weights)}")
    if _is_concrete(nodes.indices):
        idx = np.asarray(nodes.indices)
        if idx.min() < 0 or idx.max() >= p:
            raise ValueError(f"nodes.indices must lie in [0, {p}) (p = len(nodes.coords)); "
                             f"got values from {idx.min()} to {idx.max()}")
    return p


def interpolate_transforms(at_nodes: jax.Array, nodes: WeightNodes, columns: jax.Array,
                           batch_size: int | None = None, mesh: Mesh | None = None
                           ) -> jax.Array:
    """``sum_s weights[i, s] at_nodes[indices[i, s]] @ columns[i]`` for every variable ``i``.

    ``at_nodes`` (p, N, N) transforms, ``columns`` (n, N, ...) what they act on (one column
    of anomalies, or a column with a history); returns (n, N, ...). Batched (``lax.map``) so
    the (batch, s, N, N) gather stays small: by default ``GATHER_ENTRIES // (s N^2)``
    variables at a time (64 for s = 4, N = 64), which stays in cache (measured on CPU: 256
    at a time was 2.5x slower at 128^2, N = 64); with ``mesh``, in tiles of variables over
    its devices (:func:`local_map`).
    """
    def one(args, at_nodes):
        idx, wts, col = args
        return jnp.tensordot(jnp.tensordot(wts, at_nodes[idx], 1), col, 1)

    at_nodes, indices = jnp.asarray(at_nodes), jnp.asarray(nodes.indices)
    gathered = indices.shape[1] * at_nodes.shape[1] * at_nodes.shape[2]  # per variable
    return local_map(one, (indices, jnp.asarray(nodes.weights, columns.dtype), columns),
                     at_nodes, batch_size=batch_size or max(1, GATHER_ENTRIES // gathered),
                     mesh=mesh)
