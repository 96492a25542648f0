"""Twin experiments: a synthetic truth and the observing platforms that sample it.

The truth follows the stochastic advection-diffusion model of the package,

    c_{k+1} = M_k c_k + w_k,

with ``M_k`` the finite-volume propagator over ``[t_k, t_{k+1}]``
(:func:`tracerbayes.physics.operator.propagate`) and ``w_k`` spatially correlated, *mass-free* noise
(:func:`mass_free_noise`): every innovation has zero area-weighted total in every closed
basin, so every trajectory keeps its initial total to round-off.

Platforms (:class:`Floats`, :class:`Glider`, :class:`Ship`, :class:`SatelliteSwath`) sample a
truth Dataset at its analysis times, with bilinear interpolation from wet cell centres and
Gaussian errors of their own standard deviation. Each returns a :class:`pandas.DataFrame`
with columns ``time, lon, lat`` (``x, y`` on Cartesian grids), ``value, error, platform``;
:func:`to_observations` turns it into :class:`tracerbayes.observations.core.Observations`.

Random keys are JAX PRNG keys, always the first argument: the same key gives identical
output. Platforms draw their (variable-length) positions from a NumPy generator seeded by the
key's data.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.ndimage
import scipy.special
import xarray as xr

from tracerbayes import physics
from tracerbayes.grid.basis import connected_basins
from tracerbayes.grid.core import CoordinateSystem, Grid
from tracerbayes.observations.core import bilinear_stencil

__all__ = [
    "Floats",
    "Glider",
    "Platform",
    "SatelliteSwath",
    "Ship",
    "basin_labels",
    "interpolate",
    "mass_free_noise",
    "project_mass_free",
    "sample_platforms",
    "simulate_truth",
    "smooth",
    "to_observations",
    "truth_states",
]


# ---------------------------------------------------------------------------- stepping
# Sub-step counts are passed as traced data so that changing them does not recompile.
@partial(jax.jit, static_argnums=0)
def _trajectory(grid: Grid, state, east, north, diffusivity, steps, substeps, noise):
    """States after each interval: ``c <- M_k c + w_k`` over the stacked inputs of scan."""

    def advance(c, inputs):
        u, v, dt, n, w = inputs
        c = physics.propagate(grid, c, physics.FaceVelocity(u, v), diffusivity, dt,
                              substeps=n) + w
        return c, c

    _, states = jax.lax.scan(advance, state, (east, north, steps, substeps, noise))
    return states


# ---------------------------------------------------------------------------- noise
def basin_labels(grid: Grid) -> np.ndarray:
    """Connected basin (0, 1, ...) of every wet cell, in state-vector order.

    Two wet cells are in the same basin when a chain of open faces joins them (periodic
    wrap included). Advection-diffusion conserves the total of each basin separately.
    """
    return connected_basins(grid)[1]


def project_mass_free(grid: Grid, states: Any, *, per_basin: bool = True) -> np.ndarray:
    """Remove the area-weighted mean: ``eps - (a^T eps / 1^T a) 1``, per basin by default.

    This is the projection ``Pi = I - 1 a^T / (1^T a)`` of the design (``a`` the wet cell
    areas, m^2), applied to states of shape (..., n_wet). With ``per_basin`` it is applied to
    each connected basin (:func:`basin_labels`) on its own, so that no correlation is created
    across land and each basin's total is zero; on a single basin both are the same.
    The ensemble's projection (:func:`tracerbayes.ensemble.inflation.project_mass_free`), in
    float64.
    """
    from tracerbayes.ensemble.inflation import project_mass_free as project

    states = jnp.asarray(states, dtype=jnp.float64)
    return np.asarray(project(states, grid.wet_area, basin_labels(grid) if per_basin else None))


def smooth(grid: Grid, states: Any, lengthscale: float, *, tol: float = 1e-12) -> jax.Array:
    """Smooth states (..., n_wet) with the masked (no-flux) diffusion operator.

    Applies the exact ``expm(L t)`` of diffusion for one second with diffusivity
    ``kappa = lengthscale**2 / 2`` (m^2/s) (:func:`physics.heat_kernel
    <tracerbayes.physics.operator.heat_kernel>`, a Chebyshev series accurate to ``tol``): in open
    water this convolves with a Gaussian of standard deviation ``sqrt(2 kappa t) =
    lengthscale`` (m). Land faces carry no flux, so nothing spreads across land and the
    area-weighted total is preserved. ``lengthscale = 0`` returns the input.
    """
    if lengthscale < 0:
        raise ValueError(f"lengthscale must be >= 0 m, got {lengthscale}")
    return physics.heat_kernel(grid, jnp.asarray(states), float(lengthscale), tol=tol)


def _cell_sizes(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights (m) of the wet cells, in state-vector order."""
    height = grid.east_face_length.ravel()[grid.wet_index]
    return grid.wet_area / height, height


def mass_free_noise(key: Any, grid: Grid, n: int, scale: float, lengthscale: float, *,
                    per_basin: bool = True, tol: float = 1e-12) -> np.ndarray:
    """Spatially correlated noise with exactly zero area-weighted total.

    Three linear steps:

    1. white noise ``xi_i / sqrt(a_i)`` per wet cell (``a_i`` its area, m^2): a discrete
       spatial white noise of unit intensity, so that resolution does not change the result;
    2. :func:`smooth` over ``lengthscale``, which keeps correlations from crossing land,
       then division by the open-water standard deviation of the result. For the
       semi-discrete heat kernel ``expm(L t)`` on a uniform grid of cells ``dx`` by ``dy``
       (m) its variance is ``i0e(2 s^2/dx^2) i0e(2 s^2/dy^2) / a`` (``s = lengthscale``,
       ``i0e(z) = exp(-z) I_0(z)``, since the 1-D kernel is ``exp(-2r) I_n(2r)`` with
       ``r = kappa t / dx^2``); it tends to ``1 / a`` as ``s -> 0`` and to
       ``1 / (4 pi s^2)`` for ``s >> dx``. The result is multiplied by ``scale``;
    3. :func:`project_mass_free`, so that ``a^T eps = 0`` (per connected basin by default).

    The marginal standard deviation is therefore ``scale`` in open water (to within the
    local non-uniformity of a lon/lat grid), larger within about ``lengthscale`` of a coast
    (no-flux walls reflect the kernel: up to about ``sqrt(2)`` times at a straight coast)
    and slightly reduced by the projection (by about ``sqrt(1 - 4 pi s^2 / basin area)``).

    Parameters
    ----------
    key : jax.random key
    grid : Grid
    n : int
        Number of samples.
    scale : float
        Marginal standard deviation in open water, in tracer units.
    lengthscale : float
        Smoothing length (standard deviation of the Gaussian kernel) in metres.
    per_basin : bool
        Project in each connected basin (default) or globally.
    tol : float
        Accuracy of the heat kernel, see :func:`smooth`.

    Returns
    -------
    ndarray, shape (n, n_wet)
    """
    from tracerbayes.ensemble.tracer import noise_field, sample_noise

    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    field = noise_field(grid, lengthscale, tol=tol)  # the ensemble's generator: one law
    if not per_basin:
        field = field._replace(basins=np.zeros(grid.n_wet, dtype=int))
    return np.asarray(sample_noise(key, field, n, scale, dtype=jnp.float64))


# ---------------------------------------------------------------------------- truth
def _seconds(times: np.ndarray) -> np.ndarray:
    """Times (datetime64 or float seconds) as float seconds since the first."""
    if np.issubdtype(times.dtype, np.datetime64):
        return (times - times[0]) / np.timedelta64(1, "s")
    return times.astype(float) - float(times[0])


def _velocity_at(velocity: physics.FaceVelocity, k: int, n_times: int, shape) -> Any:
    east = np.asarray(velocity.east)
    if east.ndim == 2:
        return velocity
    if east.shape[0] not in (n_times, n_times - 1) or east.shape[1:] != shape:
        raise ValueError(
            f"time-varying velocity has shape {east.shape}; expected (ntime, ny, nx) with "
            f"ntime = {n_times} (or {n_times - 1}) and (ny, nx) = {shape}"
        )
    return physics.FaceVelocity(velocity.east[k], velocity.north[k])


def _initial_state(grid: Grid, initial: Any) -> np.ndarray:
    values = np.asarray(getattr(initial, "values", initial), dtype=float)
    if values.ndim == 0:
        state = np.full(grid.n_wet, float(values))
    elif values.shape == grid.shape:
        state = grid.to_state(values)
    elif values.shape == (grid.n_wet,):
        state = values
    else:
        raise ValueError(f"initial has shape {values.shape}; give a scalar, a {grid.shape} "
                         f"field or a state vector of {grid.n_wet} wet cells")
    if not np.all(np.isfinite(state)):
        raise ValueError(f"initial is not finite on {np.sum(~np.isfinite(state))} wet cells")
    return state


def simulate_truth(
    key: Any,
    grid: Grid,
    times: Any,
    velocity: physics.FaceVelocity | None,
    diffusivity: Any,
    initial: Any,
    noise_scale: float,
    noise_lengthscale: float,
    *,
    name: str = "tracer",
    long_name: str = "tracer concentration",
    units: str = "1",
    courant: float = 0.9,
) -> xr.Dataset:
    """A truth trajectory of the stochastic advection-diffusion model.

    ``c_0 = initial`` and ``c_{k+1} = M_k c_k + w_k``, with ``M_k`` :func:`physics.propagate
    <tracerbayes.physics.operator.propagate>` over ``dt_k = t_{k+1} - t_k`` (velocity taken at
    ``t_k``) and ``w_k`` from :func:`mass_free_noise`. The area-weighted total of each basin
    is the same at every time, to round-off.

    Parameters
    ----------
    key : jax.random key
    grid : Grid
    times : array_like of datetime64 or float
        Strictly increasing analysis times (datetimes, or seconds).
    velocity : FaceVelocity or None
        Face velocities in m/s, steady (ny, nx) or time-varying (ntime, ny, nx) with one
        entry per time (the last may be omitted). None means still water.
    diffusivity : float or array (ny, nx)
        In m^2/s.
    initial : float, array (ny, nx) or (n_wet,)
        The first map, in tracer units (land values ignored).
    noise_scale : float
        Marginal standard deviation of each innovation ``w_k`` (tracer units per step).
    noise_lengthscale : float
        Correlation length of the innovations in metres.
    name, long_name, units : str
        Name and CF attributes of the tracer variable.

    Returns
    -------
    xarray.Dataset
        ``name`` (time, lat, lon) or (time, y, x), NaN on land; ``total`` (time,), the
        area-weighted total (tracer units * m^2); ``mask`` and ``cell_area`` of the grid.
    """
    times = np.asarray(times)
    if times.ndim != 1 or times.size < 1:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {times.shape}")
    elapsed = _seconds(times)
    steps = np.diff(elapsed)
    if np.any(steps <= 0):
        raise ValueError(f"times must be strictly increasing; they are not at positions "
                         f"{np.flatnonzero(steps <= 0)[:5].tolist()}")
    if velocity is None:
        velocity = physics.FaceVelocity(np.zeros(grid.shape), np.zeros(grid.shape))
    state = _initial_state(grid, initial)
    n_steps = steps.size
    noise = np.zeros((n_steps, grid.n_wet))
    if noise_scale > 0 and n_steps > 0:
        noise = mass_free_noise(key, grid, n_steps, noise_scale, noise_lengthscale)
    east, north, substeps = [], [], []
    for k, dt in enumerate(steps):
        vel = _velocity_at(velocity, k, times.size, grid.shape)
        substeps.append(physics.substeps_for(grid, vel, diffusivity, dt, courant))
        east.append(np.broadcast_to(np.asarray(vel.east), grid.shape))
        north.append(np.broadcast_to(np.asarray(vel.north), grid.shape))
    states = state[None]
    if n_steps > 0:
        later = _trajectory(grid, state, np.stack(east), np.stack(north),
                            np.asarray(diffusivity, dtype=float), steps,
                            np.asarray(substeps), noise)
        states = np.concatenate([states, np.asarray(later)])
    return _truth_dataset(grid, times, states, name=name,
                          attrs={"long_name": long_name, "units": units},
                          settings={"noise_scale": float(noise_scale),
                                    "noise_lengthscale": float(noise_lengthscale)},
                          diffusivity=diffusivity)


def _truth_dataset(grid: Grid, times: np.ndarray, states: np.ndarray, *, name: str,
                   attrs: dict, settings: dict, diffusivity: Any) -> xr.Dataset:
    dims = grid.dims
    time_attrs = {"standard_name": "time", "long_name": "time"}
    if not np.issubdtype(times.dtype, np.datetime64):
        time_attrs["units"] = "s"
    coords = dict(grid.coordinates())
    coords["time"] = xr.Variable("time", times, time_attrs)
    ds = xr.Dataset(coords=coords)
    ds[name] = (("time", *dims), grid.to_field(states), attrs)
    ds["total"] = ("time", grid.total(states), {
        "long_name": f"area-weighted total of {name}", "units": f"({attrs['units']}) m2"})
    grid_ds = grid.to_xarray()
    ds["mask"] = grid_ds["mask"]
    ds["cell_area"] = grid_ds["cell_area"]
    kappa = np.asarray(diffusivity, dtype=float)
    if kappa.ndim == 0:
        ds.attrs["diffusivity"] = float(kappa)
    else:
        ds["diffusivity"] = (dims, kappa, {"long_name": "diffusivity", "units": "m2 s-1"})
    ds.attrs.update(settings)
    ds.attrs["noise_scale_units"] = attrs["units"]
    ds.attrs["noise_lengthscale_units"] = "m"
    ds.attrs["diffusivity_units"] = "m2 s-1"
    ds.attrs["tracer"] = name
    ds.attrs["title"] = "tracerbayes twin-experiment truth"
    ds.attrs["coordinate_system"] = grid.coords.value
    return ds


def _tracer_name(truth: xr.Dataset) -> str:
    return str(truth.attrs.get("tracer", "tracer"))


def truth_states(truth: xr.Dataset, grid: Grid) -> np.ndarray:
    """The truth as wet-cell states, shape (ntime, n_wet)."""
    field = truth[_tracer_name(truth)].transpose("time", *grid.dims).values
    if field.shape[1:] != grid.shape:
        raise ValueError(f"truth has horizontal shape {field.shape[1:]}, grid {grid.shape}")
    return grid.to_state(field)


# ---------------------------------------------------------------------------- geometry
def _wrap_x(grid: Grid, x: np.ndarray) -> np.ndarray:
    if not grid.periodic_x:
        return x
    start = grid.x_edges[0]
    return start + np.mod(x - start, grid.x_edges[-1] - start)


def _cell_of(grid: Grid, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell indices ``(j, i)`` of positions and whether they lie in a wet cell of the grid."""
    x = _wrap_x(grid, np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float)
    i = np.searchsorted(grid.x_edges, x, side="right") - 1
    j = np.searchsorted(grid.y_edges, y, side="right") - 1
    inside = (i >= 0) & (i < grid.shape[1]) & (j >= 0) & (j < grid.shape[0])
    i, j = np.clip(i, 0, grid.shape[1] - 1), np.clip(j, 0, grid.shape[0] - 1)
    return j, i, inside & grid.mask[j, i]


def _metres_per_unit(grid: Grid, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metres per unit of x and of y at latitude/ordinate ``y``."""
    if grid.coords is CoordinateSystem.CARTESIAN:
        one = np.ones_like(np.asarray(y, dtype=float))
        return one, one
    k = np.deg2rad(1.0) * grid.radius
    return k * np.cos(np.deg2rad(y)), k * np.ones_like(np.asarray(y, dtype=float))


def interpolate(grid: Grid, fields: Any, x: Any, y: Any,
                time_index: Any = None) -> np.ndarray:
    """Bilinear interpolation from wet cell centres, renormalised over wet neighbours: the
    observations' own stencil (:func:`tracerbayes.observations.core.bilinear_stencil`), so a
    twin's observations are the truth seen exactly as the model sees it.

    Each position takes the bilinear weights of the four surrounding cell centres (constant
    beyond the outermost centres), drops the land ones and rescales the rest to sum to one.
    A position inside a wet cell always keeps a positive weight on that cell.

    Parameters
    ----------
    fields : array, shape (ny, nx) or (ntime, ny, nx)
        Values on cell centres (land ignored).
    x, y : array_like
        Positions (degrees or metres).
    time_index : array_like of int, optional
        Which field each position reads, needed with a stack of fields.

    Returns
    -------
    ndarray
        Interpolated values; NaN where all four neighbours are land.
    """
    fields = np.asarray(fields, dtype=float)
    x = np.asarray(x, dtype=float)
    if fields.ndim == 2:
        fields, time_index = fields[None], np.zeros(x.shape, dtype=int)
    elif time_index is None:
        raise ValueError("time_index is needed to interpolate from a stack of fields")
    stencil = bilinear_stencil(grid, x, np.asarray(y, dtype=float))
    wet_values = fields.reshape(fields.shape[0], -1)[:, grid.wet_index]
    values = np.sum(wet_values[np.asarray(time_index)[:, None], stencil.indices]
                    * stencil.weights, axis=-1)
    return np.where(stencil.empty, np.nan, values)


def _rng(key: Any) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key (typed or raw uint32)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


# ---------------------------------------------------------------------------- platforms
class Platform(abc.ABC):
    """An observing platform: where and when it looks, and its error standard deviation.

    Subclasses give :meth:`positions`; :meth:`sample` interpolates the truth there and adds
    independent ``N(0, error^2)`` noise.
    """

    name: str
    error: float

    def _check(self) -> None:
        if not (np.isfinite(self.error) and self.error > 0):
            raise ValueError(f"{type(self).__name__}: error must be > 0, got {self.error}")
        every = getattr(self, "every", 1)
        if int(every) != every or every < 1:
            raise ValueError(f"{type(self).__name__}: every must be an integer >= 1, "
                             f"got {every}")

    @abc.abstractmethod
    def positions(self, rng: np.random.Generator, elapsed: np.ndarray,
                  grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time indices and positions ``(k, x, y)`` of the observations, all in wet cells.

        ``elapsed`` holds the analysis times in seconds since the first.
        """

    def sample(self, key: Any, truth: xr.Dataset, grid: Grid) -> pd.DataFrame:
        """Observations of ``truth`` (from :func:`simulate_truth`) by this platform.

        Returns
        -------
        pandas.DataFrame
            Columns ``time, lon, lat`` (or ``x, y``), ``value, error, platform``.
        """
        times = truth["time"].values
        field = truth[_tracer_name(truth)].transpose("time", *grid.dims).values
        rng = _rng(key)
        k, x, y = self.positions(rng, _seconds(times), grid)
        order = np.argsort(k, kind="stable")
        k, x, y = k[order], x[order], y[order]
        value = interpolate(grid, field, x, y, time_index=k)
        value = value + self.error * rng.standard_normal(value.shape)
        xname, yname = grid.dims[1], grid.dims[0]
        return pd.DataFrame({
            "time": times[k], xname: x, yname: y, "value": value,
            "error": np.full(value.shape, float(self.error)),
            "platform": np.full(value.shape, self.name, dtype=object),
        })


def _sampled_times(n_times: int, every: int, offset: int = 0) -> np.ndarray:
    return np.arange(offset, n_times, every)


@dataclass(frozen=True)
class Floats(Platform):
    """Profiling floats: ``n_floats`` floats surfacing every ``every`` analysis times.

    Floats start at random positions, uniform over the wet area, and surface in turn (each
    with a random start in ``0 .. every - 1``). Between surfacings each drifts by a random
    isotropic displacement of standard deviation ``drift`` metres; a displacement that would
    leave the water is redrawn (after 50 failures the float stays put).

    Attributes
    ----------
    n_floats : int
    every : int
        Analysis times between surfacings.
    error : float
        Observation error standard deviation (tracer units).
    drift : float
        Displacement between surfacings (m).
    """

    n_floats: int
    every: int
    error: float
    drift: float = 30e3
    name: str = "float"

    def __post_init__(self) -> None:
        self._check()
        if self.n_floats < 1 or self.drift < 0:
            raise ValueError("Floats: n_floats must be >= 1 and drift >= 0")

    def positions(self, rng, elapsed, grid):
        n_times = elapsed.size
        x, y = _uniform_wet(rng, grid, self.n_floats)
        offset = rng.integers(0, self.every, self.n_floats)
        ks, xs, ys = [], [], []
        for m in range(-(-n_times // self.every)):
            k = offset + m * self.every
            keep = k < n_times
            ks.append(k[keep])
            xs.append(x[keep])
            ys.append(y[keep])
            x, y = _drift(rng, grid, x, y, self.drift)
        return np.concatenate(ks), np.concatenate(xs), np.concatenate(ys)


def _uniform_wet(rng: np.random.Generator, grid: Grid, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions uniform over the wet area (cells drawn by area, uniform inside)."""
    area = grid.wet_area
    cell = grid.wet_index[rng.choice(grid.n_wet, size=n, p=area / area.sum())]
    j, i = np.unravel_index(cell, grid.shape)
    u, v = rng.random(n), rng.random(n)
    x = grid.x_edges[i] + u * (grid.x_edges[i + 1] - grid.x_edges[i])
    y = grid.y_edges[j] + v * (grid.y_edges[j + 1] - grid.y_edges[j])
    # Guard against round-off onto the next (possibly dry) cell's edge.
    x = np.minimum(x, np.nextafter(grid.x_edges[i + 1], -np.inf))
    y = np.minimum(y, np.nextafter(grid.y_edges[j + 1], -np.inf))
    return x, y


def _drift(rng, grid, x, y, sigma, tries: int = 50):
    if sigma == 0:
        return x, y
    x, y = x.copy(), y.copy()
    todo = np.ones(x.shape, dtype=bool)
    for _ in range(tries):
        if not todo.any():
            break
        mx, my = _metres_per_unit(grid, y[todo])
        nx_ = x[todo] + sigma * rng.standard_normal(mx.shape) / mx
        ny_ = y[todo] + sigma * rng.standard_normal(my.shape) / my
        _, _, ok = _cell_of(grid, nx_, ny_)
        idx = np.flatnonzero(todo)[ok]
        x[idx], y[idx] = _wrap_x(grid, nx_[ok]), ny_[ok]
        todo[idx] = False
    return x, y


def _waypoints(waypoints: Any) -> tuple[tuple[float, float], ...]:
    wp = np.asarray(waypoints, dtype=float)
    if wp.ndim != 2 or wp.shape[1] != 2 or wp.shape[0] < 2 or not np.all(np.isfinite(wp)):
        raise ValueError(f"waypoints must be at least two finite (x, y) pairs, got {waypoints}")
    return tuple((float(a), float(b)) for a, b in wp)


def _along_track(grid: Grid, waypoints: Any, distance: np.ndarray,
                 back_and_forth: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions after ``distance`` metres along a polyline, and whether the track still runs.

    Segments are straight in the grid's coordinates; their lengths use the local metric at
    the segment's mid-point (equirectangular on the sphere).
    """
    wp = np.asarray(waypoints, dtype=float)
    d = np.diff(wp, axis=0)
    mx, my = _metres_per_unit(grid, 0.5 * (wp[1:, 1] + wp[:-1, 1]))
    cumulative = np.concatenate([[0.0], np.cumsum(np.hypot(d[:, 0] * mx, d[:, 1] * my))])
    length = cumulative[-1]
    if back_and_forth:
        s = np.mod(distance, 2.0 * length)
        s = np.where(s > length, 2.0 * length - s, s)
        running = np.ones(s.shape, dtype=bool)
    else:
        s = np.minimum(distance, length)
        running = distance <= length
    seg = np.clip(np.searchsorted(cumulative, s, side="right") - 1, 0, d.shape[0] - 1)
    frac = (s - cumulative[seg]) / np.where(np.diff(cumulative)[seg] > 0,
                                            np.diff(cumulative)[seg], 1.0)
    pos = wp[seg] + frac[:, None] * d[seg]
    return pos[:, 0], pos[:, 1], running


def _track_positions(platform, elapsed, grid, back_and_forth):
    k = _sampled_times(elapsed.size, platform.every)
    x, y, running = _along_track(grid, platform.waypoints, platform.speed * elapsed[k],
                                 back_and_forth)
    _, _, wet = _cell_of(grid, x, y)
    keep = running & wet
    return k[keep], _wrap_x(grid, x[keep]), y[keep]


@dataclass(frozen=True)
class Glider(Platform):
    """A glider flying back and forth along waypoints at constant speed.

    At every ``every``-th analysis time ``t_k`` it is ``speed * (t_k - t_0)`` metres along
    the path (turning round at the ends). Positions on land or outside the grid are skipped
    (no observation), and the glider carries on along its path.

    Attributes
    ----------
    waypoints : sequence of (x, y)
        Lon/lat (degrees) or x/y (m); the first is the start.
    speed : float
        Along-track speed (m/s), typically 0.2 - 0.4.
    error : float
        Observation error standard deviation (tracer units).
    every : int
        Observe at every ``every``-th analysis time.
    """

    waypoints: Sequence[tuple[float, float]]
    speed: float
    error: float
    every: int = 1
    name: str = "glider"

    def __post_init__(self) -> None:
        self._check()
        if not self.speed >= 0:
            raise ValueError(f"Glider: speed must be >= 0 m/s, got {self.speed}")
        object.__setattr__(self, "waypoints", _waypoints(self.waypoints))

    def positions(self, rng, elapsed, grid):
        return _track_positions(self, elapsed, grid, back_and_forth=True)


@dataclass(frozen=True)
class Ship(Platform):
    """A ship steaming once along waypoints at constant speed, then leaving.

    Like :class:`Glider` (land positions are skipped) but one-way: no observations after
    the last waypoint is reached.

    Attributes
    ----------
    waypoints : sequence of (x, y)
    speed : float
        Speed (m/s), typically 5.
    error : float
        Observation error standard deviation (tracer units).
    every : int
    """

    waypoints: Sequence[tuple[float, float]]
    speed: float
    error: float
    every: int = 1
    name: str = "ship"

    def __post_init__(self) -> None:
        self._check()
        if not self.speed > 0:
            raise ValueError(f"Ship: speed must be > 0 m/s, got {self.speed}")
        object.__setattr__(self, "waypoints", _waypoints(self.waypoints))

    def positions(self, rng, elapsed, grid):
        return _track_positions(self, elapsed, grid, back_and_forth=False)


@dataclass(frozen=True)
class SatelliteSwath(Platform):
    """A satellite swath with cloud gaps, observing wet cell centres.

    At every ``every``-th analysis time the satellite sees the cells whose centres lie
    within ``width / 2`` of a straight ground track at ``angle`` degrees from east. The
    track moves across the domain from pass to pass by ``step`` times the domain's
    across-track extent (plus the width), from a random start. Clouds hide each cell with
    probability ``cloud_fraction``: independently, or, with ``cloud_lengthscale > 0``
    (metres), as thresholded Gaussian-smoothed noise, giving cloud patches of that size.

    Attributes
    ----------
    width : float
        Swath width (m).
    error : float
        Observation error standard deviation (tracer units).
    cloud_fraction : float
        Probability in [0, 1) that a cell is under cloud.
    every : int
    angle : float
        Ground-track direction (degrees anticlockwise from east).
    step : float
        Shift of the track between passes, as a fraction of the across-track extent.
    cloud_lengthscale : float
        Cloud size (m); 0 for independent cells.
    """

    width: float
    error: float
    cloud_fraction: float = 0.3
    every: int = 1
    angle: float = 60.0
    step: float = 0.5 * (np.sqrt(5.0) - 1.0)
    cloud_lengthscale: float = 0.0
    name: str = "satellite"

    def __post_init__(self) -> None:
        self._check()
        if not (self.width > 0 and 0 <= self.cloud_fraction < 1 and self.cloud_lengthscale >= 0):
            raise ValueError("SatelliteSwath: need width > 0 m, 0 <= cloud_fraction < 1 and "
                             "cloud_lengthscale >= 0 m")

    def _across_track(self, grid: Grid) -> np.ndarray:
        """Signed distance (m) of every cell centre across the track direction, (ny, nx)."""
        x0, y0 = grid.x.mean(), grid.y.mean()
        mx, my = _metres_per_unit(grid, np.asarray(y0))
        xx, yy = np.meshgrid((grid.x - x0) * mx, (grid.y - y0) * my)
        theta = np.deg2rad(self.angle)
        return -np.sin(theta) * xx + np.cos(theta) * yy

    def _clouds(self, rng: np.random.Generator, grid: Grid) -> np.ndarray:
        if self.cloud_lengthscale == 0:
            return rng.random(grid.shape) < self.cloud_fraction
        mx, my = _metres_per_unit(grid, np.asarray(grid.y.mean()))
        sigma = (self.cloud_lengthscale / (my * np.diff(grid.y).mean()),
                 self.cloud_lengthscale / (mx * np.diff(grid.x).mean()))
        modes = ("nearest", "wrap" if grid.periodic_x else "nearest")
        z = scipy.ndimage.gaussian_filter(rng.standard_normal(grid.shape), sigma, mode=modes)
        std = np.outer(*(_filter_std(n, sd, mode)
                         for n, sd, mode in zip(grid.shape, sigma, modes, strict=True)))
        return scipy.special.ndtr(z / std) < self.cloud_fraction

    def positions(self, rng, elapsed, grid):
        s = self._across_track(grid)
        lo, span = s.min() - 0.5 * self.width, np.ptp(s) + self.width
        phase = rng.random()
        xx, yy = np.meshgrid(grid.x, grid.y)
        ks, xs, ys = [], [], []
        for p, k in enumerate(_sampled_times(elapsed.size, self.every)):
            centre = lo + np.mod(phase + p * self.step, 1.0) * span
            seen = (np.abs(s - centre) <= 0.5 * self.width) & grid.mask
            seen &= ~self._clouds(rng, grid)
            ks.append(np.full(int(seen.sum()), k))
            xs.append(xx[seen])
            ys.append(yy[seen])
        return np.concatenate(ks), np.concatenate(xs), np.concatenate(ys)


def _filter_std(n: int, sigma: float, mode: str) -> np.ndarray:
    """Per-point standard deviation of ``gaussian_filter1d`` applied to unit white noise.

    The filter is linear, ``z = F xi``, so ``var(z_i) = sum_k F_ik^2``; ``F`` is found by
    filtering the identity, on a short array when the kernel is much shorter than ``n``
    (rows further than the kernel's radius from both ends are all the same).
    """
    radius = int(4.0 * sigma + 0.5)  # scipy's default truncation
    m = n if n <= 2 * radius + 3 else 2 * radius + 3
    small_mode = mode if m == n else ("constant" if mode == "wrap" else mode)
    filt = scipy.ndimage.gaussian_filter1d(np.eye(m), sigma, axis=0, mode=small_mode)
    var = (filt**2).sum(axis=1)
    if m < n:
        middle = var[m // 2]
        var = np.concatenate([var[: radius + 1], np.full(n - 2 * radius - 2, middle),
                              var[-radius - 1:]])
        if mode == "wrap":
            var[:] = middle
    return np.sqrt(var)


def sample_platforms(key: Any, truth: xr.Dataset, grid: Grid,
                     platforms: Sequence[Platform]) -> pd.DataFrame:
    """Observations of ``truth`` by several platforms, one split of ``key`` each.

    Returns
    -------
    pandas.DataFrame
        The platforms' frames concatenated and sorted by time (stable), with a fresh index.
    """
    if not platforms:
        raise ValueError("give at least one platform")
    keys = jax.random.split(key, len(platforms))
    frames = [p.sample(k, truth, grid) for k, p in zip(keys, platforms, strict=True)]
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def to_observations(df: pd.DataFrame, **kwargs: Any):
    """:class:`tracerbayes.observations.core.Observations` from a platform DataFrame.

    Keyword arguments go to ``Observations.from_dataframe``.
    """
    from tracerbayes.observations.core import Observations

    if "x" in df.columns and "lon" not in df.columns:
        kwargs = {"x": "x", "y": "y", **kwargs}
    return Observations.from_dataframe(df, time="time", value="value", error="error",
                                       platform="platform", **kwargs)
