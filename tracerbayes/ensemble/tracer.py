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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

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

__all__ = [
    "NoiseField",
    "TracerTransition",
    "basin_levels",
    "damp_anomalies",
    "initial_ensemble",
    "noise_field",
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
        Heun sub-steps per interval (for reports).
    per_step : bool
        Whether the transition takes the analysis index ``k`` (irregular intervals or a
        time-varying flow).
    """

    move: Callable[..., jax.Array]
    substeps: int
    per_step: bool

    def __call__(self, key: jax.Array, E: jax.Array, *k: Any) -> jax.Array:
        """Move the ensemble ``E`` (N_e, n_wet) over one interval."""
        return self.move(key, E, *k)


def tracer_transition(grid: Grid, velocity: physics.FaceVelocity, diffusivity: Any, dt: Any,
                      noise: NoiseField, noise_sd: float, *, courant: float = 0.9,
                      damping_rate: float = 0.0, source_sd: float = 0.0,
                      mean_state: Any = None) -> TracerTransition:
    """The ensemble transition ``(key, E) -> E`` over ``dt`` seconds.

    ``E`` (N_e, n_wet); velocity in m/s (steady faces), diffusivity in m^2/s, ``noise_sd`` the
    process-noise sd accumulated over one day (tracer units per sqrt(day)), so each step adds
    mass-free noise of sd ``noise_sd * sqrt(dt / day)``. Sub-steps are fixed from the
    concrete inputs here, so the function jit-compiles once. ``damping_rate`` (1/s) and
    ``source_sd`` (tracer units per sqrt(day)) make the tracer not conserved (module
    docstring); both 0 (default) keep every member's total exactly. ``mean_state``
    (n_wet,), tracer units: the field the damping relaxes the anomalies toward (its
    mass-free part; default none, the basin level alone).

    Irregular analysis times: ``dt`` an array of the intervals (T - 1,) gives a transition
    ``(key, E, k) -> E`` that moves ``E`` from analysis time ``k - 1`` to ``k``
    (``transition.per_step`` is True; the ensemble engine passes ``k``). Its sub-steps are
    those of the longest interval, so every interval is stepped stably with one compiled
    function. A time-varying flow (``velocity`` faces with a leading axis of one field per
    interval, T - 1) is per-step too: interval ``k - 1`` moves with field ``k - 1``.
    """
    steps = np.atleast_1d(np.asarray(dt, dtype=float))
    if steps.size == 0 or not np.all(steps > 0):
        raise ValueError(f"dt must be > 0 s, got {dt}")
    if not (damping_rate >= 0 and source_sd >= 0):
        raise ValueError(f"damping_rate (1/s) and source_sd must be >= 0, got {damping_rate} "
                         f"and {source_sd}")
    varying = np.ndim(velocity.east) == 3
    per_step = np.ndim(dt) > 0 or varying
    n_steps = np.shape(velocity.east)[0] if varying else steps.size
    if varying and steps.size not in (1, n_steps):
        raise ValueError(f"{n_steps} velocity fields for {steps.size} intervals")
    steps = np.broadcast_to(steps, (n_steps,)) if per_step else steps
    area = np.asarray(grid.wet_area)
    fields = ([physics.FaceVelocity(e, n) for e, n in zip(velocity.east, velocity.north,
                                                          strict=True)]
              if varying else [velocity])
    substeps = max(physics.substeps_for(grid, f, diffusivity, float(steps.max()), courant)
                   for f in fields)
    velocity = physics.FaceVelocity(jnp.asarray(velocity.east), jnp.asarray(velocity.north))
    damped, sources, noisy = damping_rate != 0, source_sd != 0, noise_sd != 0
    target = (None if mean_state is None else
              project_mass_free(jnp.asarray(mean_state)[None], jnp.asarray(area), noise.basins)[0])

    def move(key: jax.Array, E: jax.Array, h: Any, j: Any = None) -> jax.Array:
        flow = (physics.FaceVelocity(velocity.east[j], velocity.north[j]) if varying
                else velocity)
        moved = physics.propagate(grid, E, flow, diffusivity, h, substeps=substeps)
        if damped:
            moved = damp_anomalies(moved, jnp.exp(-damping_rate * h), area, noise.basins,
                                   target)
        # one key for the smooth noise (as for a conserved tracer), split only for levels
        k_noise, k_level = jax.random.split(key) if sources else (key, key)
        if noisy:
            sd = noise_sd * jnp.sqrt(h / DAY)
            moved = moved + sample_noise(k_noise, noise, E.shape[0], sd, dtype=E.dtype)
        if sources:
            sd = source_sd * jnp.sqrt(h / DAY)
            moved = moved + basin_levels(k_level, noise.basins, E.shape[0], sd, E.dtype)
        return moved

    if per_step:
        intervals = jnp.asarray(steps)

        def move_interval(key: jax.Array, E: jax.Array, k: Any) -> jax.Array:
            j = jnp.clip(k - 1, 0, steps.size - 1)
            return move(key, E, intervals[j], j)

        return TracerTransition(move_interval, substeps, per_step)
    h0 = float(steps[0])

    def move_fixed(key: jax.Array, E: jax.Array) -> jax.Array:
        return move(key, E, h0)

    return TracerTransition(move_fixed, substeps, per_step)


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
