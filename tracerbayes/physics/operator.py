"""Finite-volume advection-diffusion on a masked grid, and its time integration.

The tracer concentration ``c`` obeys

    dc/dt = L(u, kappa) c = -div(u c) + div(kappa grad c)

discretised on cell averages with fluxes on cell faces (see :mod:`tracerbayes.grid.core` for the
array conventions). Across the face between cells ``a`` (west/south) and ``b`` (east/north)
the flux in tracer units times m^3/s per metre of depth is

    F = l * (max(u, 0) c_a + min(u, 0) c_b) - kappa * l / d * (c_b - c_a),

with ``u`` the normal velocity (m/s), ``l`` the face length (m), ``d`` the distance between
the two cell centres (m) and ``kappa`` the diffusivity (m^2/s) on the face. Faces to land and
closed outer boundaries carry no flux. Each flux leaves one cell and enters the other, so
``sum_i area_i (L c)_i = 0`` for every ``c``: the scheme conserves the total exactly, up to
round-off. Upwinding makes ``L`` a Metzler matrix (non-negative off-diagonal), so both time
integrators below keep non-negative fields non-negative.

Two integrators over an interval ``dt``:

* :func:`propagate`, matrix-free, for ensembles and large grids: strong-stability-preserving
  Runge-Kutta (Heun, SSPRK2) sub-steps, their number chosen so that each sub-step satisfies
  ``h * max_i |L_ii| <= courant`` (advective and diffusive CFL at once). Stable and
  positivity-preserving for any ``dt``.
* :func:`exponential_transition`, the exact propagator ``M = expm(L dt)`` as a dense
  matrix, for exact Kalman filtering on small grids. Stable for any ``dt``.

For pure diffusion (no velocity) :func:`heat_kernel` applies ``expm(L t)`` matrix-free by a
Chebyshev expansion, with a number of operator applications that grows like the smoothing
length over the cell size instead of its square (the masked Gaussian smoother of the noise).

Everything is written in JAX and differentiable with respect to velocity and diffusivity.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import xarray as xr

from tracerbayes.grid.core import Grid
from tracerbayes.grid.regrid import (
    MissingValues,
    Regrid,
    RegridWarning,
    check_missing,
    fields_on_grid,
    on_grid,
)

__all__ = [
    "FaceVelocity",
    "constant_velocity",
    "velocity_from_centres",
    "velocity_from_streamfunction",
    "velocity_from_xarray",
    "taper_streamfunction",
    "corner_coordinates",
    "divergence",
    "tendency",
    "apply_operator",
    "operator_entries",
    "operator_matrix",
    "operator_sparse",
    "max_rate",
    "max_face_speed",
    "outflow_rate",
    "substeps_for",
    "propagate",
    "exponential_transition",
    "explicit_transition",
    "heat_kernel",
    "heat_kernel_terms",
    "stencil_coefficients",
    "apply_stencil",
    "ssp_steps_for",
    "propagate_ssp",
    "heat_kernel_series",
]


class FaceVelocity(NamedTuple):
    """Normal velocity on cell faces, in m/s.

    Attributes
    ----------
    east : array, shape (..., ny, nx)
        Velocity through the east face of each cell, positive eastward.
    north : array, shape (..., ny, nx)
        Velocity through the north face of each cell, positive northward.

    Leading dimensions (e.g. time) are allowed; closed faces hold zero.
    """

    east: Any
    north: Any


# ---------------------------------------------------------------------------- velocity
def constant_velocity(grid: Grid, u: Any, v: Any) -> FaceVelocity:
    """A uniform velocity ``(u, v)`` in m/s (eastward, northward) on every open face.

    With coastlines a uniform flow is not divergence-free (it runs into the coast); the
    total is still conserved because closed faces carry no flux.
    """
    u = jnp.asarray(u)
    v = jnp.asarray(v)
    return FaceVelocity(east=u * grid.east_open, north=v * grid.north_open)


def velocity_from_centres(grid: Grid, u: Any, v: Any) -> FaceVelocity:
    """Face velocities from cell-centre components ``u, v`` (m/s, shape (..., ny, nx)).

    Each face takes the mean of its two cells; NaN (land) values are treated as zero and
    closed faces are zeroed.
    """
    u = jnp.nan_to_num(jnp.asarray(u))
    v = jnp.nan_to_num(jnp.asarray(v))
    east = 0.5 * (u + jnp.roll(u, -1, axis=-1))
    north = 0.5 * (v + jnp.roll(v, -1, axis=-2))
    return FaceVelocity(east=east * grid.east_open, north=north * grid.north_open)


def corner_coordinates(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(x, y)`` of the cell corners where a stream function lives.

    Shapes are ``(ny + 1, nx + 1)``, or ``(ny + 1, nx)`` on a periodic grid (the corner at
    the east edge is the one at the west edge).
    """
    xe = grid.x_edges[:-1] if grid.periodic_x else grid.x_edges
    return np.meshgrid(xe, grid.y_edges)


def _corner_wet(grid: Grid) -> np.ndarray:
    """True at corners whose four surrounding cells all exist and are wet."""
    wet = grid.mask
    ny, nx = wet.shape
    padded = np.zeros((ny + 2, nx + 2), dtype=bool)
    padded[1:-1, 1:-1] = wet
    if grid.periodic_x:
        padded[1:-1, 0] = wet[:, -1]
        padded[1:-1, -1] = wet[:, 0]
    corners = padded[:-1, :-1] & padded[:-1, 1:] & padded[1:, :-1] & padded[1:, 1:]
    return corners[:, :nx] if grid.periodic_x else corners


def velocity_from_streamfunction(grid: Grid, psi: Any) -> FaceVelocity:
    """Discretely divergence-free face velocities from a stream function at cell corners.

    ``u = -d(psi)/dy`` and ``v = d(psi)/dx``: the transport through a face (m^2/s) is the
    difference of ``psi`` between its two end corners, so the net transport out of every
    cell telescopes to zero exactly. ``psi`` is forced to zero at every corner touching
    land or a closed boundary, which makes every closed face carry no transport and keeps
    the discrete divergence zero on masked grids (islands included: the flow does not
    circulate around them).

    Parameters
    ----------
    psi : array, shape (..., ny + 1, nx + 1) or (..., ny + 1, nx) on a periodic grid
        Stream function in m^2/s at the corners given by :func:`corner_coordinates`.
    """
    psi = jnp.asarray(psi) * _corner_wet(grid)
    ny, nx = grid.shape
    if grid.periodic_x:
        psi = jnp.concatenate([psi, psi[..., :, :1]], axis=-1)
    # East face of cell (j, i) runs from corner (j, i+1) to corner (j+1, i+1).
    transport_east = -(psi[..., 1:, 1:] - psi[..., :-1, 1:])
    # North face of cell (j, i) runs from corner (j+1, i) to corner (j+1, i+1).
    transport_north = psi[..., 1:, 1:] - psi[..., 1:, :-1]
    east = transport_east / grid.east_face_length
    north = transport_north / grid.north_face_length
    return FaceVelocity(east=east * grid.east_open, north=north * grid.north_open)


def taper_streamfunction(grid: Grid, psi: Any, cells: float = 4.0) -> np.ndarray:
    """``psi`` (corners) times ``tanh(d / cells)``, ``d`` the distance in cells to land.

    :func:`velocity_from_streamfunction` forces ``psi`` to zero at corners touching land or a
    closed boundary; a stream function that is far from zero there would make a jet along
    the coast. Tapering it first lets the flow turn smoothly along coastlines.
    """
    from scipy.ndimage import distance_transform_edt

    padded = np.pad(_corner_wet(grid), 1, constant_values=False)
    distance = distance_transform_edt(padded)[1:-1, 1:-1]
    return np.asarray(psi) * np.tanh(distance / cells)


def velocity_from_xarray(
    grid: Grid, ds: xr.Dataset, u: str = "u", v: str = "v", *,
    regrid: Regrid | None = Regrid.LINEAR, missing: MissingValues = MissingValues.ERROR,
) -> tuple[FaceVelocity, np.ndarray | None]:
    """Face velocities from an xarray Dataset of cell-centre ``u, v`` (m/s).

    A ``time`` dimension is kept as the leading axis. The Dataset's horizontal coordinates
    (lon/lat or x/y, in the grid's units) must cover every wet cell's centre; on the grid's
    own centres the values are taken as they are, on another grid they are regridded by
    ``regrid`` (:mod:`tracerbayes.grid.regrid`, rules 1-2) with a
    :class:`~tracerbayes.grid.regrid.RegridWarning` saying so.

    Parameters
    ----------
    regrid : Regrid or None
        ``LINEAR`` (bilinear, the default here) or ``NEAREST``; None refuses a Dataset on
        another grid (the configuration's default, ``velocity.regrid: none``).
    missing : MissingValues
        What to do with wet cells whose ``u`` or ``v`` is NaN or missing (after any
        regridding): refuse them (default), or fill them with zero or the nearest value
        given, with a RegridWarning.

    Returns
    -------
    velocity : FaceVelocity
        Shape (ny, nx) or (ntime, ny, nx).
    times : ndarray or None
        The Dataset's times, if it has a ``time`` dimension.

    Raises
    ------
    ValueError
        Coordinates or variables missing; the Dataset not covering the wet cells (naming the
        uncovered extent, and saying when its coordinates look like kilometres or radians);
        on another grid with ``regrid=None``; sea cells without a value (how many, where).
    """
    ydim, xdim = grid.dims
    names = {xdim: [xdim, "longitude" if xdim == "lon" else xdim],
             ydim: [ydim, "latitude" if ydim == "lat" else ydim]}
    rename = {}
    for target, candidates in names.items():
        found = next((c for c in candidates if c in ds.coords), None)
        if found is None:
            raise ValueError(f"velocity dataset has no {target!r} coordinate; it has "
                             f"{sorted(map(str, ds.coords))}")
        rename[found] = target
    for name in (u, v):
        if name not in ds:
            raise ValueError(f"velocity dataset has no variable {name!r}; it has "
                             f"{sorted(map(str, ds.data_vars))}")
    ds = ds.rename({k: val for k, val in rename.items() if k != val}).sortby([ydim, xdim])
    lead = ["time"] if "time" in ds[u].dims else []
    fields = {name: ds[name].transpose(*lead, ydim, xdim).values for name in (u, v)}
    x, y = ds[xdim].values, ds[ydim].values
    moved = not on_grid(grid, x, y)
    if moved:
        fields = fields_on_grid(
            grid, fields, x, y, regrid, ". Give velocities over the whole model domain, or "
            "shrink the grid (or mask those cells as land)", "velocity.regrid: linear (or "
            "nearest) in a config, regrid=Regrid.LINEAR in Python")
    fields, report = check_missing(
        grid, fields, missing, "velocity.missing: nearest (the nearest value given) or zero "
        "(still water) in a config; missing=MissingValues.NEAREST or ZERO in Python"
        + ("; after the regridding, a NaN in the file (on its land) reaches the model's sea "
           "cells next to it" if moved else ""))
    if report:
        warnings.warn(f"velocity {u!r}, {v!r}: {report}", RegridWarning, stacklevel=2)
    times = ds["time"].values if lead else None
    return velocity_from_centres(grid, fields[u], fields[v]), times


def divergence(grid: Grid, velocity: FaceVelocity) -> jax.Array:
    """Discrete divergence (1/s) of the face velocities: net outflow per unit area."""
    fe = velocity.east * grid.east_face_length
    fn = velocity.north * grid.north_face_length
    net = fe - jnp.roll(fe, 1, axis=-1) + fn - jnp.roll(fn, 1, axis=-2)
    return net / grid.cell_area


# ---------------------------------------------------------------------------- operator
def _face_diffusivity(diffusivity: Any) -> tuple[Any, Any]:
    """Diffusivity (m^2/s) on east and north faces from a scalar or a cell field."""
    k = jnp.asarray(diffusivity)
    if k.ndim < 2:
        return k, k
    return 0.5 * (k + jnp.roll(k, -1, axis=-1)), 0.5 * (k + jnp.roll(k, -1, axis=-2))


def _face_coefficients(grid: Grid, velocity: FaceVelocity, diffusivity: Any):
    """Per-face coefficients ``(alpha, beta)`` with flux ``F = alpha c_a + beta c_b``.

    ``alpha = l max(u, 0) + K`` and ``beta = l min(u, 0) - K``, ``K = kappa l / d``; zero on
    closed faces. Returned for east faces and north faces, each (..., ny, nx).
    """
    ke, kn = _face_diffusivity(diffusivity)
    out = []
    for vel, length, dist, open_, k in (
        (velocity.east, grid.east_face_length, grid.east_face_distance, grid.east_open, ke),
        (velocity.north, grid.north_face_length, grid.north_face_distance, grid.north_open, kn),
    ):
        conductance = k * length / dist
        alpha = length * jnp.maximum(vel, 0.0) + conductance
        beta = length * jnp.minimum(vel, 0.0) - conductance
        out.append((jnp.where(open_, alpha, 0.0), jnp.where(open_, beta, 0.0)))
    return out


def tendency(grid: Grid, field: Any, velocity: FaceVelocity, diffusivity: Any) -> jax.Array:
    """``L c`` on 2-D fields: the rate of change (tracer units per second).

    Parameters
    ----------
    field : array, shape (..., ny, nx)
        Concentration; values on land are ignored.
    velocity : FaceVelocity
        Face velocities in m/s (shape (ny, nx) or broadcastable).
    diffusivity : float or array (ny, nx)
        Diffusivity in m^2/s, a scalar or a cell field (faces take the mean of their cells).
    """
    c = jnp.where(grid.mask, field, 0.0)
    (ae, be), (an, bn) = _face_coefficients(grid, velocity, diffusivity)
    flux_e = ae * c + be * jnp.roll(c, -1, axis=-1)
    flux_n = an * c + bn * jnp.roll(c, -1, axis=-2)
    net_out = flux_e - jnp.roll(flux_e, 1, axis=-1) + flux_n - jnp.roll(flux_n, 1, axis=-2)
    return -net_out / grid.cell_area


def _scatter(grid: Grid, state: Any) -> jax.Array:
    state = jnp.asarray(state)
    flat = jnp.zeros(state.shape[:-1] + (grid.mask.size,), state.dtype)
    flat = flat.at[..., grid.wet_index].set(state)
    return flat.reshape(state.shape[:-1] + grid.shape)


def _gather(grid: Grid, field: Any) -> jax.Array:
    return field.reshape(field.shape[:-2] + (-1,))[..., grid.wet_index]


def apply_operator(grid: Grid, state: Any, velocity: FaceVelocity, diffusivity: Any) -> jax.Array:
    """``L c`` on wet-cell state vectors of shape (..., n_wet), matrix-free."""
    return _gather(grid, tendency(grid, _scatter(grid, state), velocity, diffusivity))


def operator_entries(grid: Grid, velocity: FaceVelocity, diffusivity: Any):
    """The non-zero entries ``(rows, cols, values)`` of ``L`` in state-vector indexing.

    Four entries per open face (duplicates are to be summed), values in 1/s. Differentiable
    with respect to velocity and diffusivity; the index arrays are NumPy.
    """
    area = grid.cell_area
    rows, cols, vals = [], [], []
    (ae, be), (an, bn) = _face_coefficients(grid, velocity, diffusivity)
    for face, alpha, beta in zip(grid.open_faces(), (ae, an), (be, bn), strict=True):
        a, b = face.cell_a, face.cell_b
        al, be_ = alpha[..., face.row, face.col], beta[..., face.row, face.col]
        area_a, area_b = area[face.row, face.col], area[face.row_b, face.col_b]
        # Cell a loses F, cell b gains F, with F = alpha c_a + beta c_b.
        rows += [a, a, b, b]
        cols += [a, b, a, b]
        vals += [-al / area_a, -be_ / area_a, al / area_b, be_ / area_b]
    return np.concatenate(rows), np.concatenate(cols), jnp.concatenate(vals, axis=-1)


def operator_matrix(grid: Grid, velocity: FaceVelocity, diffusivity: Any) -> jax.Array:
    """``L`` as a dense (n_wet, n_wet) matrix in 1/s (small grids only)."""
    rows, cols, vals = operator_entries(grid, velocity, diffusivity)
    n = grid.n_wet
    return jnp.zeros((n, n), dtype=vals.dtype).at[rows, cols].add(vals)


def operator_sparse(grid: Grid, velocity: FaceVelocity, diffusivity: Any):
    """``L`` as a ``scipy.sparse.csr_matrix`` (n_wet, n_wet) in 1/s (NumPy, not traced)."""
    import scipy.sparse as sp

    rows, cols, vals = operator_entries(grid, velocity, diffusivity)
    n = grid.n_wet
    return sp.csr_matrix((np.asarray(vals), (rows, cols)), shape=(n, n))


# ---------------------------------------------------------------------------- stepping
def max_face_speed(velocity: FaceVelocity) -> float:
    """The fastest face velocity component, m/s (concrete inputs)."""
    return max(float(np.abs(velocity.east).max()), float(np.abs(velocity.north).max()))


def outflow_rate(grid: Grid, velocity: FaceVelocity, diffusivity: Any) -> jax.Array:
    """``max_i |L_ii|`` in 1/s, traceable (works inside jit/grad/vmap)."""
    (ae, be), (an, bn) = _face_coefficients(grid, velocity, diffusivity)
    # Outflow coefficients: east face takes alpha from cell a and -beta from cell b.
    out = ae + jnp.roll(-be, 1, axis=-1) + an + jnp.roll(-bn, 1, axis=-2)
    return jnp.max(jnp.where(grid.mask, out / grid.cell_area, 0.0))


def max_rate(grid: Grid, velocity: FaceVelocity, diffusivity: Any) -> float:
    """``max_i |L_ii|`` in 1/s: the fastest rate at which any cell is emptied.

    Needs concrete (not traced) inputs; :func:`outflow_rate` is the traceable version.
    """
    try:
        return float(outflow_rate(grid, velocity, diffusivity))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as err:
        raise TypeError(
            "the number of sub-steps depends on velocity and diffusivity, which are traced "
            "here (inside jit/grad/vmap); pass substeps= explicitly (e.g. computed with "
            "tracerbayes.physics.operator.substeps_for on the largest values you expect)"
        ) from err


def substeps_for(grid: Grid, velocity: FaceVelocity, diffusivity: Any, dt: float,
                 courant: float = 0.9) -> int:
    """Sub-steps needed so that each satisfies ``h * max_i |L_ii| <= courant`` (at least 1)."""
    if not 0 < courant <= 1:
        raise ValueError(f"courant must be in (0, 1], got {courant}")
    rate = max_rate(grid, velocity, diffusivity)
    return max(1, math.ceil(float(dt) * rate / courant))


def propagate(
    grid: Grid,
    state: Any,
    velocity: FaceVelocity,
    diffusivity: Any,
    dt: float,
    *,
    substeps: int | None = None,
    courant: float = 0.9,
) -> jax.Array:
    """Advance wet-cell states over ``dt`` seconds, matrix-free.

    Heun's method (SSPRK2, Shu & Osher 1988) on sub-steps of ``h = dt / substeps``. Each
    sub-step is a convex combination of forward-Euler steps ``c + h L c``; with
    ``h max|L_ii| <= 1`` these have non-negative coefficients and preserve the area-weighted
    total, so the result is positive and conservative for any ``dt``.

    Parameters
    ----------
    state : array, shape (..., n_wet)
        Concentrations; leading dimensions (e.g. ensemble members) are carried along.
    velocity, diffusivity : see :func:`tendency`
    dt : float
        Interval in seconds.
    substeps : int, optional
        Number of sub-steps; by default from :func:`substeps_for` (needs concrete inputs).
        A traced count is accepted (no recompilation when it changes), but the loop is
        then a while loop: forward-mode only, not reverse-differentiable. A Python int
        gives a scan with re-materialised sub-steps: reverse mode stores one field per
        sub-step.
    courant : float
        Safety factor in (0, 1] for the automatic choice.
    """
    if substeps is None:
        substeps = substeps_for(grid, velocity, diffusivity, dt, courant)
    h = dt / substeps

    def euler(f):
        return f + h * tendency(grid, f, velocity, diffusivity)

    def body(_, f):
        return 0.5 * (f + euler(euler(f)))

    if isinstance(substeps, int | np.integer):
        step = jax.checkpoint(lambda f, _: (body(0, f), None))
        field, _ = jax.lax.scan(step, _scatter(grid, state), None, length=int(substeps))
    else:
        field = jax.lax.fori_loop(0, substeps, body, _scatter(grid, state))
    return _gather(grid, field)


def exponential_transition(grid: Grid, velocity: FaceVelocity, diffusivity: Any,
                           dt: Any) -> jax.Array:
    """The exact propagator ``M = expm(L dt)``, dense (n_wet, n_wet), for small grids.

    Stable for every ``dt``; non-negative up to round-off because ``L`` is Metzler; the
    area-weighted total is preserved because ``a^T L = 0`` implies ``a^T M = a^T``.
    """
    return jax.scipy.linalg.expm(operator_matrix(grid, velocity, diffusivity) * dt)


def explicit_transition(grid: Grid, velocity: FaceVelocity, diffusivity: Any, dt: float,
                        *, substeps: int | None = None, courant: float = 0.9) -> jax.Array:
    """The matrix of :func:`propagate` (dense (n_wet, n_wet)): ``propagate`` on the identity."""
    eye = jnp.eye(grid.n_wet)
    return propagate(grid, eye, velocity, diffusivity, dt, substeps=substeps,
                     courant=courant).T


# ---------------------------------------------------------------------------- heat kernel
def heat_kernel_terms(grid: Grid, lengthscale: float, *, tol: float = 1e-12) -> np.ndarray:
    """Chebyshev coefficients of :func:`heat_kernel` for ``lengthscale`` (m) on ``grid``.

    With ``L`` the no-flux diffusion operator of diffusivity ``kappa = lengthscale**2 / 2``
    (m^2/s), its eigenvalues lie in ``[-lam, 0]`` with ``lam = 2 max_i |L_ii|`` (Gershgorin:
    rows of ``L`` sum to zero), and ``L`` is self-adjoint in the area-weighted inner product.
    With ``X = I + (2 / lam) L`` (spectrum in ``[-1, 1]``) and ``a = lam / 2`` (one second),

        expm(L) = exp(a (X - I)) = ive(0, a) T_0(X) + 2 sum_k ive(k, a) T_k(X),

    ``T_k`` the Chebyshev polynomials and ``ive(k, a) = exp(-a) I_k(a)`` (the generating
    function of the modified Bessel functions). ``|T_k(X)| <= 1`` in the area-weighted norm,
    so truncating where the tail ``2 sum_{k > K} ive(k, a)`` falls below ``tol`` gives that
    relative accuracy. ``ive(k, a)`` decays like ``exp(-k^2 / 2a)``: about
    ``sqrt(2 a ln(1/tol))`` terms, against ``~8 a`` operator applications for Heun
    sub-steps of the same accuracy. Returns the coefficients with the factor 2 included.
    """
    if not lengthscale > 0:
        raise ValueError(f"lengthscale must be > 0 m, got {lengthscale}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    still = FaceVelocity(np.zeros(grid.shape), np.zeros(grid.shape))
    a = max_rate(grid, still, 0.5 * float(lengthscale) ** 2)
    if a == 0:  # no open faces: nothing diffuses
        return np.ones(1)
    k = np.arange(int(a + 12.0 * math.sqrt(a) + 60.0))
    coef = scipy.special.ive(k, a) * np.where(k > 0, 2.0, 1.0)
    tail = np.cumsum(coef[::-1])[::-1]  # tail[K] = sum_{k >= K}
    keep = int(np.argmax(tail < tol)) if (tail < tol).any() else len(k)
    return coef[:max(keep, 2)]


def heat_kernel(grid: Grid, state: Any, lengthscale: float, *, tol: float = 1e-12,
                terms: np.ndarray | None = None) -> jax.Array:
    """``expm(L) c``: diffuse wet-cell states (..., n_wet) for one second with diffusivity
    ``lengthscale**2 / 2`` (m^2/s), matrix-free.

    In open water this is the semi-discrete heat kernel, a Gaussian of standard deviation
    ``lengthscale`` (m); land faces carry no flux, so nothing crosses land and the
    area-weighted total is kept. Evaluated by the Chebyshev series of
    :func:`heat_kernel_terms` (three-term recurrence, one :func:`tendency` per term) to
    relative accuracy ``tol``; ``terms`` passes precomputed coefficients. ``lengthscale = 0``
    returns the input.
    """
    if lengthscale == 0:
        return jnp.asarray(state)
    kappa = 0.5 * float(lengthscale) ** 2
    with jax.ensure_compile_time_eval():  # grid constants, also when called inside jit
        coef = heat_kernel_terms(grid, lengthscale, tol=tol) if terms is None else terms
        still = FaceVelocity(np.zeros(grid.shape), np.zeros(grid.shape))
        scale = 1.0 / max(max_rate(grid, still, kappa), 1e-300)  # 2 / lam
    return _gather(grid, _chebyshev(grid, _scatter(grid, state), kappa, scale,
                                    jnp.asarray(coef)))


@partial(jax.jit, static_argnums=0)
def _chebyshev(grid: Grid, field: jax.Array, kappa: Any, scale: Any,
               coef: jax.Array) -> jax.Array:
    """``sum_k coef_k T_k(X) field`` with ``X f = f + scale L f`` (Clenshaw-free recurrence)."""
    still = FaceVelocity(jnp.zeros(grid.shape), jnp.zeros(grid.shape))

    def X(f):
        return f + scale * tendency(grid, f, still, kappa)

    if coef.shape[0] == 1:
        return coef[0] * field
    t1 = X(field)

    def body(k, carry):
        prev, cur, acc = carry
        nxt = 2.0 * X(cur) - prev
        return cur, nxt, acc + coef[k] * nxt

    acc = coef[0] * field + coef[1] * t1
    _, _, acc = jax.lax.fori_loop(2, coef.shape[0], body, (field, t1, acc))
    return acc


# ---------------------------------------------------------------------------- fast forecast
def stencil_coefficients(grid: Grid, velocity: FaceVelocity, diffusivity: Any, *,
                         dtype: Any = None) -> jax.Array:
    """``L`` in five-point form: coefficients (5, ..., ny, nx) in 1/s such that

        (L c)_i = C_0 c_i + C_1 c_east + C_2 c_west + C_3 c_north + C_4 c_south,

    zero on land and across closed faces (so the wrap-around of :func:`apply_stencil` reads
    nothing on a closed outer boundary). The same operator as :func:`tendency`, whose face
    coefficients are here gathered once per cell instead of once per evaluation.
    """
    (ae, be), (an, bn) = _face_coefficients(grid, velocity, diffusivity)
    area = grid.cell_area
    coefficients = jnp.stack([
        -ae + jnp.roll(be, 1, axis=-1) - an + jnp.roll(bn, 1, axis=-2),  # own cell
        -be,  # east neighbour
        jnp.roll(ae, 1, axis=-1),  # west neighbour (through its east face)
        -bn,  # north neighbour
        jnp.roll(an, 1, axis=-2),  # south neighbour (through its north face)
    ]) / area
    return jnp.where(grid.mask, coefficients, 0.0).astype(dtype or coefficients.dtype)


def apply_stencil(coefficients: jax.Array, field: jax.Array) -> jax.Array:
    """``L c`` on 2-D fields (..., ny, nx) from :func:`stencil_coefficients` (land stays 0)."""
    C = coefficients
    return (C[0] * field + C[1] * jnp.roll(field, -1, axis=-1)
            + C[2] * jnp.roll(field, 1, axis=-1) + C[3] * jnp.roll(field, -1, axis=-2)
            + C[4] * jnp.roll(field, 1, axis=-2))


def ssp_steps_for(grid: Grid, velocity: FaceVelocity, diffusivity: Any, dt: float,
                  stages: int, courant: float = 0.9) -> int:
    """Steps of :func:`propagate_ssp` with ``stages`` stages over ``dt`` seconds: each stage
    is a forward-Euler step of ``h / (stages - 1)`` with ``h max_i |L_ii| / (stages - 1) <=
    courant`` (at least 1)."""
    if int(stages) != stages or stages < 2:
        raise ValueError(f"stages must be an integer >= 2, got {stages}")
    substeps = substeps_for(grid, velocity, diffusivity, dt, courant)  # Euler steps of Heun
    return max(1, math.ceil(substeps / (int(stages) - 1)))


def propagate_ssp(grid: Grid, state: Any, velocity: FaceVelocity, diffusivity: Any,
                  dt: Any, *, stages: int = 2, steps: int | None = None,
                  courant: float = 0.9, dtype: Any = None) -> jax.Array:
    """Advance wet-cell states (..., n_wet) over ``dt`` seconds by ``steps`` steps of the
    ``stages``-stage second-order SSP Runge-Kutta method SSPRK(s, 2) (Ketcheson 2008, Sec.
    3.1; SSP coefficient ``s - 1``):

        u_1 = u_n,   u_i = u_{i-1} + h / (s - 1) L u_{i-1}   (i = 2 .. s),
        u_{n+1} = u_n / s + (s - 1) / s (u_s + h / (s - 1) L u_s),

    ``s`` operator applications per step, each a forward-Euler step of ``h / (s - 1)``.
    ``stages = 2`` is Heun's method of :func:`propagate`; with ``s`` stages a step is ``s - 1``
    times longer, so the applications over ``dt`` fall from ``2 n`` (Heun, ``n`` sub-steps) to
    about ``n s / (s - 1)``: the stability polynomial is positive on the whole disc
    ``|z + s - 1| <= s - 1`` that holds the spectrum of ``h L`` (module docstring), the
    largest for a second-order polynomial of degree ``s`` (Kraaijevanger 1991). The result
    is positive and, the stages being polynomials in ``L``, keeps every area-weighted
    total up to round-off in ``dtype``.

    Parameters
    ----------
    state : array, shape (..., n_wet)
    velocity, diffusivity : see :func:`tendency` (concrete or traced)
    dt : float
        Interval in seconds (may be traced).
    stages : int
        ``s >= 2``.
    steps : int, optional
        Default from :func:`ssp_steps_for` (needs concrete inputs).
    dtype : dtype, optional
        Arithmetic precision (default the state's); the result is returned in the state's.
    """
    if int(stages) != stages or stages < 2:
        raise ValueError(f"stages must be an integer >= 2, got {stages}")
    if steps is None:
        steps = ssp_steps_for(grid, velocity, diffusivity, float(dt), stages, courant)
    state = jnp.asarray(state)
    dtype = dtype or state.dtype
    C = stencil_coefficients(grid, velocity, diffusivity, dtype=dtype)
    s = int(stages)
    euler = (jnp.asarray(dt) / (int(steps) * (s - 1))).astype(dtype)  # h / (s - 1)

    def stage(_: Any, u: jax.Array) -> jax.Array:
        return u + euler * apply_stencil(C, u)

    def step(u: jax.Array, _: Any) -> tuple[jax.Array, None]:
        last = jax.lax.fori_loop(0, s, stage, u)  # u_s and its Euler step
        return (u + (s - 1) * last) / s, None

    field, _ = jax.lax.scan(step, _scatter(grid, state.astype(dtype)), None, length=int(steps))
    return _gather(grid, field).astype(state.dtype)


def heat_kernel_series(grid: Grid, state: Any, lengthscale: float, terms: np.ndarray, *,
                       dtype: Any = None) -> jax.Array:
    """:func:`heat_kernel` (``expm(L) c``, diffusivity ``lengthscale**2 / 2`` m^2/s for one
    second) by the five-point stencil in precision ``dtype`` (default the state's), with the
    Chebyshev coefficients ``terms`` of :func:`heat_kernel_terms`; returned in the state's
    dtype. The same series as :func:`heat_kernel`; in float32 its round-off grows like the
    number of terms times float32's epsilon."""
    state = jnp.asarray(state)
    if lengthscale == 0 or len(terms) == 0:
        return state
    dtype = dtype or state.dtype
    kappa = 0.5 * float(lengthscale) ** 2
    with jax.ensure_compile_time_eval():
        still = FaceVelocity(np.zeros(grid.shape), np.zeros(grid.shape))
        scale = 1.0 / max(max_rate(grid, still, kappa), 1e-300)  # 2 / lam
        C = stencil_coefficients(grid, still, kappa, dtype=dtype) * scale
    coef = jnp.asarray(terms, dtype)
    field = _scatter(grid, state.astype(dtype))

    def X(f: jax.Array) -> jax.Array:
        return f + apply_stencil(C, f)

    if coef.shape[0] == 1:
        return _gather(grid, coef[0] * field).astype(state.dtype)
    t1 = X(field)

    def body(k: Any, carry: tuple) -> tuple:
        prev, cur, acc = carry
        nxt = 2 * X(cur) - prev
        return cur, nxt, acc + coef[k] * nxt

    _, _, acc = jax.lax.fori_loop(2, coef.shape[0], body, (field, t1, coef[0] * field
                                                            + coef[1] * t1))
    return _gather(grid, acc).astype(state.dtype)
