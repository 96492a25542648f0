"""The tracer model on the full grid, for the ensemble methods.

The ensemble path runs the same stochastic advection-diffusion model as the exact path, but
on every wet cell instead of in a reduced basis::

    c_{k+1} = M c_k + w_k,     w_k = noise_sd sqrt(dt / 1 day) Pi G xi_k,     xi_k ~ N(0, I)

with ``M`` the matrix-free finite-volume propagator (:func:`tracerbayes.physics.operator.propagate`:
Heun sub-steps, positive and conservative), ``G`` the masked heat-kernel smoother
(:func:`tracerbayes.physics.operator.heat_kernel`, a Chebyshev series of ``expm``) that turns
white noise into a field of correlation length ``noise_lengthscale`` without leaking across
land (:func:`tracerbayes.twin.simulate.mass_free_noise` draws the same law with NumPy, for twin
truths), and ``Pi`` the per-basin projection onto zero area-weighted total. Every member's
total is therefore kept exactly by the forecast; the mass-safe inflation and localisation of
:mod:`tracerbayes.ensemble.inflation` and :mod:`tracerbayes.ensemble.localisation` keep it
through the analysis.

A tracer that is not conserved (``damping_rate > 0`` or ``source_sd > 0``) follows the same
Ornstein-Uhlenbeck anomaly model as the exact path (:mod:`tracerbayes.exact.model`): after
each move, every member's departure from its basin-mean level is damped by
``exp(-dt / tau)``, and each basin's mean level takes a random step of sd
``source_sd sqrt(dt / 1 day)``.

Observations enter as interpolation stencils (:class:`~tracerbayes.ensemble.cycle.Stencil`,
four wet cells and weights per observation), never as dense ``(m, n)`` matrices, so memory
grows like the number of cells, not its square.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from tracerbayes import physics
from tracerbayes.ensemble.cycle import CycleObservations, Stencil
from tracerbayes.ensemble.inflation import project_mass_free
from tracerbayes.ensemble.localisation import WeightNodes
from tracerbayes.grid.basis import connected_basins
from tracerbayes.grid.core import CoordinateSystem, Grid
from tracerbayes.physics import operator

__all__ = [
    "CoarseNoise",
    "FastForecast",
    "ForecastScheme",
    "NoiseField",
    "ReferenceForecast",
    "TracerTransition",
    "basin_levels",
    "coarse_noise",
    "damp_anomalies",
    "forecast_scheme",
    "keep_totals",
    "initial_ensemble",
    "noise_field",
    "sample_coarse_noise",
    "sample_noise",
    "state_coordinates",
    "stencil_observations",
    "tracer_transition",
    "weight_nodes",
]

DAY = 86400.0  # s


class NoiseField(NamedTuple):
    """The spatially correlated noise generator of a grid (see the module docstring).

    Attributes
    ----------
    grid : Grid
    lengthscale : float
        Standard deviation of the Gaussian smoothing kernel, m.
    normaliser : ndarray, shape (n_wet,)
        ``sqrt(a_i / v_i)``: turns smoothed white noise into unit marginal variance in open
        water (``v_i`` the open-water variance of the semi-discrete heat kernel).
    terms : ndarray
        Chebyshev coefficients of the smoother
        (:func:`tracerbayes.physics.operator.heat_kernel_terms`;
        one operator application each), empty for no smoothing.
    basins : ndarray of int, shape (n_wet,)
        Connected basin of every wet cell (for the mass-free projection).
    """

    grid: Grid
    lengthscale: float
    normaliser: np.ndarray
    terms: np.ndarray
    basins: np.ndarray


def noise_field(grid: Grid, lengthscale: float, *, tol: float = 1e-12) -> NoiseField:
    """Precompute the noise generator of ``grid`` for a correlation length in metres.

    The normalisation is that of :func:`tracerbayes.twin.simulate.mass_free_noise`, so the two
    draw the same law (the ensemble's model noise is the twin truth's).
    """
    if not lengthscale >= 0:
        raise ValueError(f"noise lengthscale must be >= 0 m, got {lengthscale}")
    height = grid.east_face_length.ravel()[grid.wet_index]
    width = grid.wet_area / height
    s2 = float(lengthscale) ** 2
    variance = scipy.special.i0e(2 * s2 / width**2) * scipy.special.i0e(2 * s2 / height**2)
    terms = physics.heat_kernel_terms(grid, lengthscale, tol=tol) if s2 > 0 else np.zeros(0)
    return NoiseField(grid, float(lengthscale), np.sqrt(grid.wet_area / variance),
                      terms, np.asarray(connected_basins(grid)[1]))


def _smooth(field: NoiseField, white: jax.Array) -> jax.Array:
    if len(field.terms) == 0:
        return white
    return physics.heat_kernel(field.grid, white, field.lengthscale, terms=field.terms)


def sample_noise(key: jax.Array, field: NoiseField, n: int, scale: Any, *,
                 mass_free: bool = True, dtype: Any = None) -> jax.Array:
    """``n`` fields (n, n_wet) of marginal sd ``scale`` (tracer units) in open water.

    With ``mass_free`` each field has zero area-weighted total in every basin (exactly, to
    round-off); otherwise it is the plain masked-smoothed Gaussian field.
    """
    grid = field.grid
    area = jnp.asarray(grid.wet_area, dtype)
    white = jax.random.normal(key, (int(n), grid.n_wet), area.dtype) / jnp.sqrt(area)
    eps = _smooth(field, white) * (scale * jnp.asarray(field.normaliser, area.dtype))
    if mass_free:
        eps = project_mass_free(eps, area, field.basins)
    return eps


class CoarseNoise(NamedTuple):
    """The noise law of a :class:`NoiseField` drawn on a grid ``factor`` times coarser
    (:func:`coarse_noise`): white noise on the coarse grid, smoothed there by the heat
    kernel of length ``coarse_lengthscale``, copied to the fine cells of each coarse cell,
    smoothed on the fine grid by the short kernel of length ``fine_lengthscale`` (which
    removes the blocks), normalised and projected mass-free on the fine grid.

    Attributes
    ----------
    field : NoiseField
        The reference generator (fine grid, basins).
    factor : int
        Fine cells per coarse cell along each axis (1: the reference smoother alone).
    coarse : Grid
        The coarse grid (a coarse cell is wet where any of its fine cells is).
    parent : ndarray of int, shape (n_wet,)
        Each fine wet cell's coarse wet cell (coarse state index).
    coarse_lengthscale, fine_lengthscale : float
        Kernel lengths, m: ``coarse**2 + fine**2 + (factor**2 - 1) d**2 / 12 =
        lengthscale**2`` (``d`` a typical fine cell size; the last term is the variance of
        the copy over a block), so the kernel's second moment is the reference's.
    coarse_terms, fine_terms : ndarray
        Chebyshev coefficients of the two smoothers
        (:func:`tracerbayes.physics.operator.heat_kernel_terms`).
    normaliser : ndarray, shape (n_wet,)
        Turns the smoothed noise into unit marginal variance in open water, at every
        position within a block (:func:`_composite_variance`).
    """

    field: NoiseField
    factor: int
    coarse: Grid
    parent: np.ndarray
    coarse_lengthscale: float
    fine_lengthscale: float
    coarse_terms: np.ndarray
    fine_terms: np.ndarray
    normaliser: np.ndarray


def _coarse_grid(grid: Grid, factor: int) -> tuple[Grid, np.ndarray]:
    """The grid of ``factor`` x ``factor`` blocks of ``grid`` (edges every ``factor`` fine
    edges, the last block possibly narrower; wet where any fine cell is), and each fine wet
    cell's coarse wet cell."""
    ny, nx = grid.shape

    def edges(fine: np.ndarray, n: int) -> np.ndarray:
        coarse = fine[::factor]
        return coarse if n % factor == 0 else np.r_[coarse, fine[-1]]

    xe, ye = edges(np.asarray(grid.x_edges), nx), edges(np.asarray(grid.y_edges), ny)
    row, col = np.unravel_index(grid.wet_index, grid.shape)
    mask = np.zeros((ye.size - 1, xe.size - 1), dtype=bool)
    mask[row // factor, col // factor] = True
    coarse = Grid(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), xe, ye, mask,
                  grid.coords, grid.periodic_x, grid.radius)
    lookup = np.full(mask.size, -1)
    lookup[coarse.wet_index] = np.arange(coarse.n_wet)
    return coarse, lookup[(row // factor) * mask.shape[1] + col // factor]


def _composite_variance(fine: float, coarse: float, size: int, position: int) -> float:
    """Variance at ``position`` (0 .. size - 1) in a block of the 1-D composite: unit white
    noise on the coarse cells, the semi-discrete heat kernel ``ive(|k|, coarse)`` there,
    copied onto the ``size`` fine cells of each coarse cell, then ``ive(|k|, fine)`` on the
    fine cells (``fine`` and ``coarse`` = kernel variance / cell size squared; an infinite
    uniform line). Both kernels are separable, so the 2-D variance is a product of two."""
    reach = int(fine + 10.0 * math.sqrt(fine) + 10)
    k = np.arange(-reach, reach + 1)
    g_fine = scipy.special.ive(np.abs(k), fine) if fine > 0 else (k == 0).astype(float)
    blocks = np.floor_divide(position - k, size)  # fine cell position - k lies in this block
    weight = np.bincount(blocks - blocks.min(), weights=g_fine)
    reach = int(coarse + 10.0 * math.sqrt(coarse) + 10)
    g_coarse = scipy.special.ive(np.abs(np.arange(-reach, reach + 1)), coarse)
    return float(np.sum(np.convolve(weight, g_coarse) ** 2))


def coarse_noise(field: NoiseField, factor: int = 2, *, tol: float = 1e-8) -> CoarseNoise:
    """The generator of ``field``'s noise law on a grid ``factor`` times coarser.

    Cost per field: the coarse series (``~ sqrt(2 a_c ln(1/tol))`` applications on
    ``1 / factor**2`` of the cells, ``a_c = 2 (coarse_lengthscale / coarse cell)**2``) plus
    the short fine series, instead of the reference's ~83 applications at 256^2 and a 20 km
    noise length. The factor is lowered (to 1, the reference smoother at ``tol``) until the
    coarse kernel spans at least two coarse cells: the copy onto blocks then leaves
    correlations within ~0.01 of the reference's (an infinite uniform grid, factor 2, 8
    cells per noise length; tests/test_fast_forecast.py checks draws). In open water the
    marginal variance is the reference's exactly (``normaliser``); near land it is as the
    reference's is, not normalised. Correlations leak across land thinner than one coarse
    cell, which the reference's do not.
    """
    grid = field.grid
    if int(factor) != factor or factor < 1:
        raise ValueError(f"coarsening factor must be an integer >= 1, got {factor}")
    height = grid.east_face_length.ravel()[grid.wet_index]
    width = grid.wet_area / height
    cell = float(np.median(np.sqrt(grid.wet_area)))
    s2 = field.lengthscale**2

    def lengths(f: int) -> tuple[float, float]:
        fine2 = (0.5 * f * cell) ** 2 if f > 1 else 0.0
        return math.sqrt(max(s2 - fine2 - (f * f - 1) * cell**2 / 12.0, 0.0)), math.sqrt(fine2)

    f = int(factor)
    while f > 1 and lengths(f)[0] < 2.0 * f * cell:
        f -= 1
    if f == 1 or s2 == 0:
        terms = (physics.heat_kernel_terms(grid, field.lengthscale, tol=tol) if s2 > 0
                 else np.zeros(0))
        return CoarseNoise(field, 1, grid, np.arange(grid.n_wet), field.lengthscale, 0.0,
                           terms, np.zeros(0), field.normaliser)
    coarse_length, fine_length = lengths(f)
    coarse, parent = _coarse_grid(grid, f)
    c_height = coarse.east_face_length.ravel()[coarse.wet_index][parent]
    c_area = coarse.wet_area[parent]
    c_width = c_area / c_height
    row, col = np.unravel_index(grid.wet_index, grid.shape)
    c_row, c_col = np.unravel_index(coarse.wet_index[parent], coarse.shape)
    size_x = np.diff(np.searchsorted(grid.x_edges, coarse.x_edges))[c_col]  # fine cells
    size_y = np.diff(np.searchsorted(grid.y_edges, coarse.y_edges))[c_row]

    def variance(fine_w: np.ndarray, coarse_w: np.ndarray, size: np.ndarray,
                 position: np.ndarray) -> np.ndarray:
        keys = np.stack([np.round(fine_length**2 / fine_w**2, 9),
                         np.round(coarse_length**2 / coarse_w**2, 9), size, position], -1)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        values = [_composite_variance(a, b, int(c), int(d)) for a, b, c, d in unique]
        return np.asarray(values)[inverse.ravel()]

    vx = variance(width, c_width, size_x, col % f)
    vy = variance(height, c_height, size_y, row % f)
    return CoarseNoise(field, f, coarse, parent, coarse_length, fine_length,
                       physics.heat_kernel_terms(coarse, coarse_length, tol=tol),
                       physics.heat_kernel_terms(grid, fine_length, tol=tol),
                       np.sqrt(c_area / (vx * vy)))


def sample_coarse_noise(key: jax.Array, noise: CoarseNoise, n: int, scale: Any, *,
                        dtype: Any = None, precision: Any = None) -> jax.Array:
    """``n`` mass-free fields (n, n_wet) of marginal sd ``scale`` in open water, of the law of
    :func:`sample_noise` (see :class:`CoarseNoise`), returned in ``dtype``. The smoothing
    runs in ``precision`` (default ``dtype``); the mass-free projection in ``dtype``, so every
    field's basin totals are zero to ``dtype``'s round-off."""
    out = jnp.asarray(noise.field.grid.wet_area, dtype).dtype
    work = jnp.dtype(precision or out)
    coarse = noise.coarse
    area = jnp.asarray(coarse.wet_area, work)
    white = jax.random.normal(key, (int(n), coarse.n_wet), work) / jnp.sqrt(area)
    eps = operator.heat_kernel_series(coarse, white, noise.coarse_lengthscale,
                                      noise.coarse_terms)
    if noise.factor > 1:  # copy onto the fine cells, smooth the blocks away
        eps = operator.heat_kernel_series(noise.field.grid, eps[:, noise.parent],
                                          noise.fine_lengthscale, noise.fine_terms)
    eps = (eps * jnp.asarray(noise.normaliser, work)).astype(out) * scale
    return project_mass_free(eps, jnp.asarray(noise.field.grid.wet_area, out),
                             noise.field.basins)


def basin_levels(key: jax.Array, basins: np.ndarray, n: int, sd: Any, dtype: Any = None
                 ) -> jax.Array:
    """``n`` fields (n, n_wet), each uniform within every basin: independent N(0, sd^2)
    levels per member and basin (the basin-scale part of the forcing)."""
    labels = np.asarray(basins)
    levels = jax.random.normal(key, (int(n), int(labels.max()) + 1), dtype or float)
    return sd * levels[:, labels]


def damp_anomalies(E: jax.Array, factor: Any, cell_area: Any, basins: np.ndarray,
                   mean_state: Any = None) -> jax.Array:
    """Every member's departure from its basin-mean level plus ``mean_state`` (a mass-free
    field, default 0) multiplied by ``factor``: the basin totals are unchanged."""
    anomaly = project_mass_free(E, jnp.asarray(cell_area, E.dtype), basins)
    if mean_state is not None:
        anomaly = anomaly - mean_state
    return E - (1.0 - factor) * anomaly


class ForecastScheme(abc.ABC):
    """How :func:`tracer_transition` integrates the advection-diffusion and draws the noise:
    :class:`ReferenceForecast` or :class:`FastForecast` (:func:`forecast_scheme` by name)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def steps(self, rate_dt: float, courant: float) -> tuple[int, int]:
        """``(steps, stages)`` of SSPRK(stages, 2) over an interval with ``max|L_ii| dt =
        rate_dt`` (:func:`tracerbayes.physics.operator.propagate_ssp`)."""

    @abc.abstractmethod
    def sampler(self, noise: NoiseField) -> Callable[..., jax.Array]:
        """``(key, n, scale, dtype) -> (n, n_wet)`` mass-free noise of ``noise``'s law."""

    @abc.abstractmethod
    def propagate(self, grid: Grid, E: jax.Array, velocity: physics.FaceVelocity,
                  diffusivity: Any, dt: Any, steps: int, stages: int) -> jax.Array:
        """Move ``E`` (N_e, n_wet) over ``dt`` seconds; every member's total kept."""


@dataclass(frozen=True)
class ReferenceForecast(ForecastScheme):
    """Heun sub-steps of :func:`tracerbayes.physics.propagate` and the heat-kernel noise of
    :func:`sample_noise` (tolerance 1e-12), in the ensemble's precision: the reference the
    fast scheme is tested against."""

    name: ClassVar[str] = "reference"

    def steps(self, rate_dt: float, courant: float) -> tuple[int, int]:
        return max(1, math.ceil(rate_dt / courant)), 2

    def sampler(self, noise: NoiseField) -> Callable[..., jax.Array]:
        def draw(key: jax.Array, n: int, scale: Any, dtype: Any) -> jax.Array:
            return sample_noise(key, noise, n, scale, dtype=dtype)
        return draw

    def propagate(self, grid: Grid, E: jax.Array, velocity: physics.FaceVelocity,
                  diffusivity: Any, dt: Any, steps: int, stages: int) -> jax.Array:
        return physics.propagate(grid, E, velocity, diffusivity, dt, substeps=steps)


@dataclass(frozen=True)
class FastForecast(ForecastScheme):
    """The cheaper forecast: ``steps`` steps of SSPRK(s, 2) per interval with ``s`` the
    fewest stages that keep every stage's Euler step within the CFL bound (about half
    Heun's operator applications for ``steps = 2``), the noise drawn on a grid ``coarsening``
    times coarser (:func:`coarse_noise`, series tolerance ``tol``), and both in
    ``precision`` (float32 by default) on the five-point stencil, every member's basin
    totals restored in the ensemble's precision afterwards (so a float64 ensemble keeps
    them to ~1e-15 relative).

    Attributes
    ----------
    steps_per_interval : int
        SSPRK(s, 2) steps per interval (>= 1; more steps, smaller time-stepping error).
    coarsening : int
        Fine cells per noise cell along each axis (1: the noise on the model grid).
    precision : str
        ``'float32'`` or ``'float64'``: the arithmetic of the propagation and smoothing.
    tol : float
        Relative accuracy of the noise smoothers' Chebyshev series.
    """

    steps_per_interval: int = 2
    coarsening: int = 2
    precision: str = "float32"
    tol: float = 1e-8
    name: ClassVar[str] = "fast"

    def __post_init__(self) -> None:
        if int(self.steps_per_interval) != self.steps_per_interval or self.steps_per_interval < 1:
            raise ValueError(f"steps_per_interval must be an integer >= 1, got "
                             f"{self.steps_per_interval}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"precision must be 'float32' or 'float64', got {self.precision!r}")
        if not 0 < self.tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {self.tol}")

    def steps(self, rate_dt: float, courant: float) -> tuple[int, int]:
        euler = max(1, math.ceil(rate_dt / courant))  # Euler steps within the CFL bound
        steps = min(int(self.steps_per_interval), euler)
        return steps, max(2, math.ceil(euler / steps) + 1)

    def sampler(self, noise: NoiseField) -> Callable[..., jax.Array]:
        coarse = coarse_noise(noise, self.coarsening, tol=self.tol)

        def draw(key: jax.Array, n: int, scale: Any, dtype: Any) -> jax.Array:
            return sample_coarse_noise(key, coarse, n, scale, dtype=dtype,
                                       precision=self.precision)
        return draw

    def propagate(self, grid: Grid, E: jax.Array, velocity: physics.FaceVelocity,
                  diffusivity: Any, dt: Any, steps: int, stages: int) -> jax.Array:
        moved = operator.propagate_ssp(grid, E, velocity, diffusivity, dt, stages=stages,
                                       steps=steps, dtype=self.precision)
        if jnp.dtype(self.precision).itemsize >= E.dtype.itemsize:
            return moved
        return keep_totals(moved, E, grid.wet_area, connected_basins(grid)[1])


def forecast_scheme(scheme: ForecastScheme | str) -> ForecastScheme:
    """A :class:`ForecastScheme` from itself or its name, ``'reference'`` or ``'fast'``."""
    if isinstance(scheme, ForecastScheme):
        return scheme
    schemes: dict[str, ForecastScheme] = {"reference": ReferenceForecast(),
                                          "fast": FastForecast()}
    if scheme not in schemes:
        raise ValueError(f"forecast scheme must be 'reference' or 'fast', got {scheme!r}")
    return schemes[scheme]


def keep_totals(moved: jax.Array, before: jax.Array, cell_area: Any,
                basins: np.ndarray) -> jax.Array:
    """``moved`` plus, in every basin, the uniform field that restores each member's basin
    total of ``before`` (the round-off a lower-precision propagation leaves in the totals)."""
    loss = before - moved
    return moved + loss - project_mass_free(loss, jnp.asarray(cell_area, loss.dtype), basins)


@dataclass(frozen=True, eq=False)
class TracerTransition:
    """The ensemble transition built by :func:`tracer_transition`: ``(key, E) -> E``, or
    ``(key, E, k) -> E`` when ``per_step``. Compared and hashed by identity, as a function is
    (a static argument of the jit-compiled cycles).

    Attributes
    ----------
    move : callable
        The forecast itself, ``(key, E) -> E`` or ``(key, E, k) -> E``.
    substeps : int
        Time steps per interval (for reports): Heun sub-steps, or SSPRK(s, 2) steps.
    per_step : bool
        Whether the transition takes the analysis index ``k`` (irregular intervals or a
        time-varying flow).
    stages : int
        Operator applications per time step (2 for Heun).
    scheme : ForecastScheme
        The scheme it integrates with.
    """

    move: Callable[..., jax.Array]
    substeps: int
    per_step: bool
    stages: int = 2
    scheme: ForecastScheme = ReferenceForecast()

    def __call__(self, key: jax.Array, E: jax.Array, *k: Any) -> jax.Array:
        """Move the ensemble ``E`` (N_e, n_wet) over one interval."""
        return self.move(key, E, *k)


def tracer_transition(grid: Grid, velocity: physics.FaceVelocity, diffusivity: Any, dt: Any,
                      noise: NoiseField, noise_sd: float, *, courant: float = 0.9,
                      damping_rate: float = 0.0, source_sd: float = 0.0,
                      mean_state: Any = None, seasonal: Any = None,
                      scheme: ForecastScheme | str = "reference") -> TracerTransition:
    """The ensemble transition ``(key, E) -> E`` over ``dt`` seconds.

    ``E`` (N_e, n_wet); velocity in m/s (steady faces), diffusivity in m^2/s, ``noise_sd`` the
    process-noise sd accumulated over one day (tracer units per sqrt(day)), so each step adds
    mass-free noise of sd ``noise_sd * sqrt(dt / day)``. Sub-steps are fixed from the
    concrete inputs here, so the function jit-compiles once. ``damping_rate`` (1/s) and
    ``source_sd`` (tracer units per sqrt(day)) make the tracer not conserved (module
    docstring); both 0 (default) keep every member's total exactly. ``mean_state``
    (n_wet,), tracer units: the field the damping relaxes the anomalies toward (its
    mass-free part; default none, the basin level alone). ``seasonal``: the annual forcing
    (a :class:`~tracerbayes.ensemble.seasonal.SeasonalForcing`, default none), added over
    each interval as its module says; it makes the transition per-step.

    Irregular analysis times: ``dt`` an array of the intervals (T - 1,) gives a transition
    ``(key, E, k) -> E`` that moves ``E`` from analysis time ``k - 1`` to ``k``
    (``transition.per_step`` is True; the ensemble engine passes ``k``). Its sub-steps are
    those of the longest interval, so every interval is stepped stably with one compiled
    function. A time-varying flow (``velocity`` faces with a leading axis of one field per
    interval, T - 1) is per-step too: interval ``k - 1`` moves with field ``k - 1``.

    ``scheme``: :class:`ReferenceForecast` (``'reference'``, the default: Heun sub-steps and
    the heat-kernel noise) or :class:`FastForecast` (``'fast'``: fewer operator applications
    per member, the same model and noise law to the accuracy tests/test_fast_forecast.py
    checks; every member's total kept as exactly).
    """
    scheme = forecast_scheme(scheme)
    steps = np.atleast_1d(np.asarray(dt, dtype=float))
    if steps.size == 0 or not np.all(steps > 0):
        raise ValueError(f"dt must be > 0 s, got {dt}")
    if not (damping_rate >= 0 and source_sd >= 0):
        raise ValueError(f"damping_rate (1/s) and source_sd must be >= 0, got {damping_rate} "
                         f"and {source_sd}")
    varying = np.ndim(velocity.east) == 3
    per_step = np.ndim(dt) > 0 or varying or seasonal is not None
    n_steps = (np.shape(velocity.east)[0] if varying else
               np.shape(seasonal.starts)[0] if seasonal is not None and np.ndim(dt) == 0
               else steps.size)
    if varying and steps.size not in (1, n_steps):
        raise ValueError(f"{n_steps} velocity fields for {steps.size} intervals")
    if seasonal is not None and np.shape(seasonal.starts)[0] != n_steps:
        raise ValueError(f"the seasonal forcing has {np.shape(seasonal.starts)[0]} interval "
                         f"starts for {n_steps} intervals")
    steps = np.broadcast_to(steps, (n_steps,)) if per_step else steps
    area = np.asarray(grid.wet_area)
    fields = ([physics.FaceVelocity(e, n) for e, n in zip(velocity.east, velocity.north,
                                                          strict=True)]
              if varying else [velocity])
    if not 0 < courant <= 1:
        raise ValueError(f"courant must be in (0, 1], got {courant}")
    rate_dt = max(physics.max_rate(grid, f, diffusivity) for f in fields) * float(steps.max())
    substeps, stages = scheme.steps(rate_dt, courant)
    draw = scheme.sampler(noise) if noise_sd != 0 else None
    velocity = physics.FaceVelocity(jnp.asarray(velocity.east), jnp.asarray(velocity.north))
    damped, sources = damping_rate != 0, source_sd != 0
    target = (None if mean_state is None else
              project_mass_free(jnp.asarray(mean_state)[None], jnp.asarray(area), noise.basins)[0])

    def move(key: jax.Array, E: jax.Array, h: Any, j: Any = None) -> jax.Array:
        flow = (physics.FaceVelocity(velocity.east[j], velocity.north[j]) if varying
                else velocity)  # (j: the interval, for per-step transitions)
        moved = scheme.propagate(grid, E, flow, diffusivity, h, substeps, stages)
        if damped:
            moved = damp_anomalies(moved, jnp.exp(-damping_rate * h), area, noise.basins,
                                   target)
        # one key for the smooth noise (as for a conserved tracer), split only for levels
        k_noise, k_level = jax.random.split(key) if sources else (key, key)
        if draw is not None:
            sd = noise_sd * jnp.sqrt(h / DAY)
            moved = moved + draw(k_noise, E.shape[0], sd, E.dtype)
        if sources:
            sd = source_sd * jnp.sqrt(h / DAY)
            moved = moved + basin_levels(k_level, noise.basins, E.shape[0], sd, E.dtype)
        if seasonal is not None:
            moved = moved + seasonal.increment(j, h, damping_rate).astype(moved.dtype)
        return moved

    if per_step:
        intervals = jnp.asarray(steps)

        def move_interval(key: jax.Array, E: jax.Array, k: Any) -> jax.Array:
            j = jnp.clip(k - 1, 0, steps.size - 1)
            return move(key, E, intervals[j], j)

        return TracerTransition(move_interval, substeps, per_step, stages, scheme)
    h0 = float(steps[0])

    def move_fixed(key: jax.Array, E: jax.Array) -> jax.Array:
        return move(key, E, h0)

    return TracerTransition(move_fixed, substeps, per_step, stages, scheme)


def initial_ensemble(key: jax.Array, grid: Grid, n_members: int, mean_level: float,
                     mean_sd: float, sd: float, lengthscale: float, *,
                     same_total: bool = False, dtype: Any = None) -> jax.Array:
    """Prior ensemble of the first map, (n_members, n_wet).

    Each member is ``mean_level + delta_j + sd * G xi_j`` with ``delta_j ~ N(0, mean_sd^2)``
    (tracer units) and a masked-smoothed field of correlation length ``lengthscale`` (m).
    With ``same_total`` the fields are projected mass-free and ``delta_j = 0``: every member
    has the same area-weighted total (the known-total case).
    """
    k_level, k_field = jax.random.split(key)
    field = noise_field(grid, lengthscale)
    anomalies = sample_noise(k_field, field, n_members, sd, mass_free=same_total, dtype=dtype)
    if same_total:
        return mean_level + anomalies
    level = mean_sd * jax.random.normal(k_level, (n_members, 1), anomalies.dtype)
    return mean_level + level + anomalies


def state_coordinates(grid: Grid) -> np.ndarray:
    """Cell-centre coordinates of the wet cells (n_wet, 2): (lon, lat) in degrees or (x, y) in
    metres, the units of :func:`~tracerbayes.ensemble.localisation.great_circle_km` or
    :func:`~tracerbayes.ensemble.localisation.euclidean`."""
    x, y = np.meshgrid(grid.x, grid.y)
    return np.stack([x.ravel()[grid.wet_index], y.ravel()[grid.wet_index]], axis=-1)


def weight_nodes(grid: Grid, stride: int) -> WeightNodes:
    """LETKF weight-interpolation nodes every ``stride`` cells of ``grid``, bilinear weights.

    Nodes sit on the cell centres of rows ``0, stride, 2 stride, ...`` and the last row (and
    the same for columns), on land as well as water: a local analysis needs only the node's
    position, so every wet cell has its four surrounding nodes, even in a narrow inlet. Each
    wet cell takes bilinear weights in (column, row) index space; nodes no wet cell uses are
    dropped. ``stride = 1`` gives one node per wet cell with weight 1 (the plain LETKF). A
    stride of a fraction of the localisation radius over the cell size keeps the analysis
    close to the plain LETKF (Yang et al. 2009 interpolate over 3 x 3 points).
    """
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride must be an integer >= 1 (cells between nodes), got {stride}")
    ny, nx = grid.shape
    rows = np.unique(np.r_[np.arange(0, ny, stride), ny - 1])
    cols = np.unique(np.r_[np.arange(0, nx, stride), nx - 1])

    def bracket(lines: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.clip(np.searchsorted(lines, at, side="right") - 1, 0, max(len(lines) - 2, 0))
        upper = np.minimum(k + 1, len(lines) - 1)
        span = np.maximum(lines[upper] - lines[k], 1)
        return k, (at - lines[k]) / span

    r, c = np.unravel_index(grid.wet_index, grid.shape)
    kr, fr = bracket(rows, r)
    kc, fc = bracket(cols, c)
    top, right = np.minimum(kr + 1, len(rows) - 1), np.minimum(kc + 1, len(cols) - 1)
    corners = np.stack([kr * len(cols) + kc, kr * len(cols) + right,
                        top * len(cols) + kc, top * len(cols) + right], axis=1)
    weights = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], axis=1)
    used, indices = np.unique(np.where(weights > 0, corners, corners[:, :1]),
                              return_inverse=True)
    node_r, node_c = rows[used // len(cols)], cols[used % len(cols)]
    coords = np.stack([np.asarray(grid.x)[node_c], np.asarray(grid.y)[node_r]], axis=-1)
    return WeightNodes(coords, indices.reshape(corners.shape), weights)


def is_lonlat(grid: Grid) -> bool:
    """Whether the grid is lon/lat (distances in km on the sphere) or Cartesian (metres)."""
    return grid.coords is CoordinateSystem.LONLAT


def stencil_observations(prepared: Any, obs: Any, error_scale: float = 1.0
                         ) -> CycleObservations:
    """Time-stacked :class:`CycleObservations` with :class:`Stencil` operators and positions.

    ``prepared`` is :meth:`Observations.prepare
    <tracerbayes.observations.core.Observations.prepare>`'s
    result on the model grid and analysis times, ``obs`` the :class:`Observations` it came
    from (for positions); errors are multiplied by ``error_scale``.
    """
    pad = prepared.padded()
    rows = np.where(pad.valid, pad.rows, 0)
    coords = np.stack([np.asarray(obs.x, float)[rows], np.asarray(obs.y, float)[rows]], -1)
    return CycleObservations(
        values=jnp.asarray(pad.values),
        sd=jnp.asarray(np.sqrt(pad.variances) * error_scale),
        valid=jnp.asarray(pad.valid),
        operators=Stencil(jnp.asarray(pad.indices), jnp.asarray(pad.weights)),
        coords=jnp.asarray(coords),
    )
