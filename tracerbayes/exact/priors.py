"""Gaussian-process priors for tracer fields and velocities: Matérn fields in closed form.

Three constructions:

* **Spectral (masked) Matérn**: a Matérn field expanded in the Neumann eigenbasis of the
  masked grid (:mod:`tracerbayes.grid.basis`), coefficient ``k`` independent with variance equal
  to the Matérn spectral density at wavenumber ``sqrt(lambda_k)`` (Hilbert-space GP
  approximation, Solin & Särkkä 2020, Stat. Comput. 30, Eq. (20)). Correlations follow the
  water, never crossing land. Giving the constant mode(s) zero variance makes every sample
  mass-free: ``sum(a * eps) = 0`` exactly; a separate ``mass_variance`` frees the total.
* **Stationary Matérn on the sphere**: the Matérn kernel on chordal distances between
  cell centres (a valid covariance on the sphere), dense, for small grids, optionally made
  mass-free by the projection ``Pi = I - 1 a^T / (1^T a)``: ``Q_c = Pi Q Pi^T``.
* **Divergence-free velocity**: a stream function ``psi`` expanded in sine modes of the
  rectangle of cell corners (zero on the outer boundary), with Matérn spectral weights; the
  velocity ``(u, v) = (-dpsi/dy, dpsi/dx)`` is discretely divergence-free
  (:func:`tracerbayes.physics.operator.velocity_from_streamfunction`).

Kernels and spectral densities are written out in closed form (Rasmussen & Williams 2006,
Eqs. (4.14)-(4.17)), so the core needs no Gaussian-process library. GPJax (the optional ``gp``
extra, ``pip install tracerbayes[gp]``) is only needed for :func:`matern_kernel`, which builds the
equivalent GPJax kernel for users who compose their own priors; the tests check the closed forms
against it. Lengthscales are in metres here; the user-facing model takes kilometres.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from tracerbayes.grid.basis import SpectralBasis
from tracerbayes.grid.core import CoordinateSystem, Grid
from tracerbayes.physics.operator import corner_coordinates

__all__ = [
    "modes_needed",
    "resolved_fraction",
    "Smoothness",
    "matern_correlation",
    "matern_kernel",
    "matern_spectral_density",
    "spectral_variances",
    "stationary_covariance",
    "mass_free_projection",
    "cell_positions",
    "StreamfunctionBasis",
    "streamfunction_basis",
]


class Smoothness(enum.Enum):
    """Matérn smoothness ``nu``; ``GAUSSIAN`` is the limit ``nu -> inf``.

    ``GAUSSIAN`` is the heat-kernel field: white noise smoothed by the masked diffusion
    operator for a kernel of standard deviation ``s`` (the ``lengthscale``), covariance
    ``variance * exp(-r^2 / (4 s^2))`` in open water. It is the law of the ensemble methods'
    model noise (:mod:`tracerbayes.ensemble.tracer`) and of
    :func:`tracerbayes.twin.simulate.mass_free_noise`, so a reduced model with this smoothness
    fits their twin truths with the same parameters.
    """

    HALF = 0.5
    THREE_HALVES = 1.5
    FIVE_HALVES = 2.5
    GAUSSIAN = float("inf")


#: GPJax kernel class names by smoothness, for :func:`matern_kernel` (GPJax is imported there
#: only, so neither ``import tracerbayes`` nor any numerical path needs it).
_KERNELS = {
    Smoothness.HALF: "Matern12",
    Smoothness.THREE_HALVES: "Matern32",
    Smoothness.FIVE_HALVES: "Matern52",
}


def matern_kernel(smoothness: Smoothness | float, lengthscale: Any, variance: Any = 1.0,
                  n_dims: int = 2) -> Any:
    """The GPJax kernel equal to :func:`matern_correlation` times ``variance`` (an RBF of
    lengthscale ``sqrt(2) * lengthscale`` for ``GAUSSIAN``, see :class:`Smoothness`), for
    users who build their own GPJax priors; ``lengthscale`` in the units of the inputs.

    Needs GPJax, the optional ``gp`` extra (``pip install tracerbayes[gp]``); nothing else in
    tracerbayes does.
    """
    try:
        import gpjax as gpx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("matern_kernel needs GPJax, the optional 'gp' extra: "
                          "pip install 'tracerbayes[gp]'") from err

    if Smoothness(smoothness) is Smoothness.GAUSSIAN:  # exp(-r^2 / (2 l^2)) with l = sqrt(2) s
        return gpx.kernels.RBF(lengthscale=jnp.sqrt(2.0) * lengthscale, variance=variance,
                               n_dims=n_dims)
    cls = getattr(gpx.kernels, _KERNELS[Smoothness(smoothness)])
    return cls(lengthscale=lengthscale, variance=variance, n_dims=n_dims)


def matern_correlation(smoothness: Smoothness | float, distance: Any, lengthscale: Any) -> Any:
    """Matérn correlation ``k(r) / k(0)`` at ``distance`` ``r`` (same units as ``lengthscale``).

    Rasmussen & Williams (2006), *Gaussian Processes for Machine Learning*, Eqs. (4.16)-(4.17),
    with ``x = sqrt(2 nu) r / lengthscale``:

    * ``nu = 1/2``: ``exp(-x)``;
    * ``nu = 3/2``: ``(1 + x) exp(-x)``;
    * ``nu = 5/2``: ``(1 + x + x^2 / 3) exp(-x)``;
    * ``GAUSSIAN`` (heat kernel of standard deviation ``s = lengthscale``):
      ``exp(-r^2 / (4 s^2))``.
    """
    nu = Smoothness(smoothness)
    r = jnp.asarray(distance)
    if nu is Smoothness.GAUSSIAN:
        return jnp.exp(-(r**2) / (4.0 * lengthscale**2))
    x = jnp.sqrt(2.0 * nu.value) * r / lengthscale
    poly = {Smoothness.HALF: 1.0, Smoothness.THREE_HALVES: 1.0 + x,
            Smoothness.FIVE_HALVES: 1.0 + x + x**2 / 3.0}[nu]
    return poly * jnp.exp(-x)


def matern_spectral_density(smoothness: Smoothness | float, lengthscale: Any, variance: Any,
                            wavenumber: Any) -> Any:
    """Matérn spectral density ``S(|omega|)`` in 2-D (variance * m^2 for lengthscale in m).

    The Fourier transform in angular wavenumber, ``k(r) = (2 pi)^-2 int S(omega)
    exp(i omega . r) d^2 omega``, so that ``k(0) = variance = (2 pi)^-1 int_0^inf S(w) w dw``.
    Rasmussen & Williams (2006), *Gaussian Processes for Machine Learning*, Eq. (4.15) with
    ``D = 2`` and frequency ``s = omega / (2 pi)``:

        S(w) = variance * 4 pi Gamma(nu + 1) (2 nu)^nu / (Gamma(nu) l^(2 nu))
                        * (2 nu / l^2 + w^2)^-(nu + 1)
             = variance * 2 pi l^2 * (1 + l^2 w^2 / (2 nu))^-(nu + 1),

    the second form (``Gamma(nu + 1) = nu Gamma(nu)``) free of the tiny powers of ``l^-2`` that
    underflow for lengthscales in metres. ``GAUSSIAN`` (the heat kernel of standard deviation
    ``s = lengthscale``, the squared exponential of R&W Sec. 4.2.1 with ``l^2 = 2 s^2``):
    ``variance * 4 pi s^2 exp(-s^2 w^2)``, the limit ``nu -> inf`` of the above with
    ``l = sqrt(2) s``.
    ``lengthscale`` and ``variance`` may be traced; ``smoothness`` is static.
    """
    nu = Smoothness(smoothness)
    w2 = jnp.asarray(wavenumber) ** 2
    if nu is Smoothness.GAUSSIAN:
        return variance * 4.0 * jnp.pi * lengthscale**2 * jnp.exp(-lengthscale**2 * w2)
    return (variance * 2.0 * jnp.pi * lengthscale**2
            * (1.0 + lengthscale**2 * w2 / (2.0 * nu.value)) ** -(nu.value + 1.0))


def spectral_variances(basis: SpectralBasis, smoothness: Smoothness | float, lengthscale: Any,
                       variance: Any, mass_variance: Any = 0.0) -> Any:
    """Variances (K,) of the basis coefficients of a masked Matérn field.

    Parameters
    ----------
    basis : SpectralBasis
    smoothness : Smoothness or float
    lengthscale : float
        Correlation length in metres.
    variance : float
        Marginal variance of the stationary Matérn field (tracer units squared).
    mass_variance : float
        Variance of each constant (total-carrying) mode, in tracer units squared times m^2.
        Zero (the default) makes every sample mass-free.
    """
    wavenumber = jnp.sqrt(jnp.asarray(basis.eigenvalues))
    dens = matern_spectral_density(smoothness, lengthscale, variance, wavenumber)
    constant = np.arange(basis.size) < basis.n_basins
    return jnp.where(constant, mass_variance, dens)


def cell_positions(grid: Grid) -> np.ndarray:
    """Wet-cell centres in metres: 3-D points on the sphere (lon/lat) or (x, y) (Cartesian).

    Euclidean distances between these points are chordal distances on the sphere, so any
    stationary kernel on them is a valid covariance on the sphere.
    """
    xx, yy = np.meshgrid(grid.x, grid.y)
    xx, yy = xx.ravel()[grid.wet_index], yy.ravel()[grid.wet_index]
    if grid.coords is CoordinateSystem.CARTESIAN:
        return np.stack([xx, yy], axis=-1)
    lam, phi = np.deg2rad(xx), np.deg2rad(yy)
    r = grid.radius
    return np.stack([r * np.cos(phi) * np.cos(lam), r * np.cos(phi) * np.sin(lam),
                     r * np.sin(phi)], axis=-1)


def stationary_covariance(grid: Grid, smoothness: Smoothness | float, lengthscale: Any,
                          variance: Any) -> Any:
    """Dense (n_wet, n_wet) Matérn covariance on chordal distances (small grids):
    ``variance * matern_correlation(smoothness, |p_i - p_j|, lengthscale)`` for the
    :func:`cell_positions` ``p``."""
    points = cell_positions(grid)
    distance = np.sqrt(np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=-1))
    return variance * matern_correlation(smoothness, distance, lengthscale)


def mass_free_projection(grid: Grid) -> np.ndarray:
    """``Pi = I - 1 a^T / (1^T a)``: removes the area-weighted mean, ``a^T Pi = 0``."""
    a = grid.wet_area
    return np.eye(grid.n_wet) - np.outer(np.ones(grid.n_wet), a) / a.sum()


class StreamfunctionBasis(NamedTuple):
    """Sine modes for a stream function on cell corners.

    Attributes
    ----------
    modes : ndarray, shape (J, ny + 1, nx + 1) (or nx on periodic grids)
        ``sin(p pi s) sin(q pi t)`` on the corners, ``s, t`` in [0, 1] across the domain.
    wavenumbers : ndarray, shape (J,)
        ``sqrt((p pi / Lx)^2 + (q pi / Ly)^2)`` in 1/m.
    area : float
        Domain area ``Lx * Ly`` in m^2 (normalises the modes to unit mean square).
    """

    modes: np.ndarray
    wavenumbers: np.ndarray
    area: float

    def weights(self, smoothness: Smoothness | float, lengthscale: Any, variance: Any) -> Any:
        """Standard deviations (J,) of the mode coefficients: ``sqrt(S(k_j) * 4 / area)``."""
        dens = matern_spectral_density(smoothness, lengthscale, variance, self.wavenumbers)
        return jnp.sqrt(dens * 4.0 / self.area)

    def streamfunction(self, coefficients: Any, weights: Any) -> Any:
        """``psi = sum_j w_j beta_j mode_j`` (m^2/s) on the corners."""
        return jnp.tensordot(coefficients * weights, self.modes, axes=1)


def streamfunction_basis(grid: Grid, n_modes: int) -> StreamfunctionBasis:
    """The ``n_modes`` lowest-wavenumber sine modes of the corner rectangle.

    Lengths ``Lx, Ly`` in metres are measured at the domain's mid-latitude on lon/lat grids.
    """
    if grid.periodic_x:
        raise ValueError("streamfunction_basis needs a non-periodic grid")
    cx, cy = corner_coordinates(grid)
    s = (cx - grid.x_edges[0]) / (grid.x_edges[-1] - grid.x_edges[0])
    t = (cy - grid.y_edges[0]) / (grid.y_edges[-1] - grid.y_edges[0])
    if grid.coords is CoordinateSystem.LONLAT:
        mid = np.deg2rad(0.5 * (grid.y_edges[0] + grid.y_edges[-1]))
        lx = grid.radius * np.cos(mid) * np.deg2rad(grid.x_edges[-1] - grid.x_edges[0])
        ly = grid.radius * np.deg2rad(grid.y_edges[-1] - grid.y_edges[0])
    else:
        lx = grid.x_edges[-1] - grid.x_edges[0]
        ly = grid.y_edges[-1] - grid.y_edges[0]
    side = int(np.ceil(np.sqrt(n_modes))) + 2
    p, q = np.meshgrid(np.arange(1, side + 1), np.arange(1, side + 1))
    k = np.sqrt((p * np.pi / lx) ** 2 + (q * np.pi / ly) ** 2).ravel()
    order = np.argsort(k, kind="stable")[:n_modes]
    p, q, k = p.ravel()[order], q.ravel()[order], k[order]
    modes = np.sin(np.pi * p[:, None, None] * s) * np.sin(np.pi * q[:, None, None] * t)
    return StreamfunctionBasis(modes, k, float(lx * ly))


def resolved_fraction(n_modes: int, wet_area: float, lengthscale: float,
                      smoothness: Smoothness | float) -> float:
    """Fraction of a stationary Matérn field's variance that the first ``n_modes`` Neumann
    modes of a domain of ``wet_area`` m^2 carry (lengthscale in m).

    Weyl's law puts the ``K``-th eigenvalue of the Laplacian at ``k^2 = 4 pi K / area``; the
    2-D Matérn spectral density ``(2 nu / l^2 + k^2)^-(nu + 1)`` integrates (in ``k dk``)
    below ``k`` to ``1 - (a / (a + k^2))^nu`` of its total, ``a = 2 nu / l^2``; the Gaussian
    (heat-kernel) field of kernel sd ``s`` has ``exp(-k^2 s^2)`` and ``1 - exp(-k^2 s^2)``.
    """
    nu = smoothness.value if isinstance(smoothness, Smoothness) else float(smoothness)
    k2 = 4.0 * np.pi * float(n_modes) / float(wet_area)
    if np.isinf(nu):
        return float(1.0 - np.exp(-k2 * lengthscale**2))
    a = 2.0 * nu / lengthscale**2
    return float(1.0 - (a / (a + k2)) ** nu)


def modes_needed(wet_area: float, lengthscale: float, smoothness: Smoothness | float,
                 fraction: float = 0.95) -> int:
    """The fewest Neumann modes that carry ``fraction`` of the variance of a Matérn field of
    ``lengthscale`` (m) on ``wet_area`` (m^2): :func:`resolved_fraction` solved for ``K``."""
    nu = smoothness.value if isinstance(smoothness, Smoothness) else float(smoothness)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if np.isinf(nu):
        k2 = -np.log(1.0 - fraction) / lengthscale**2
    else:
        a = 2.0 * nu / lengthscale**2
        k2 = a * ((1.0 - fraction) ** (-1.0 / nu) - 1.0)
    return int(np.ceil(k2 * float(wet_area) / (4.0 * np.pi)))
