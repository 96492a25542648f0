"""A twin experiment drawn from the model itself, for checking exact inference.

:func:`island_twin` builds a masked Cartesian basin with an island, draws the truth from the
stochastic advection-diffusion model with known parameters, at full resolution (all ``N``
Neumann modes, more detail than a reduced model fitted to it) or with the fitted model's own
``K`` modes (an identical twin), and
samples it with profiling floats and a glider. The true parameters are returned so that
posterior credible intervals can be checked against them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import xarray as xr

from tracerbayes import physics
from tracerbayes.exact.model import DAY, AdvectionDiffusionModel, GivenVelocity, ModelData, Priors
from tracerbayes.grid.core import Grid
from tracerbayes.twin import simulate

__all__ = [
    "EDDY_PARAMETERS",
    "TRUE_PARAMETERS",
    "TwinExperiment",
    "coastal_eddy_twin",
    "coastal_grid",
    "eddy_velocity",
    "gyre_velocity",
    "island_grid",
    "island_twin",
]

#: True parameters of :func:`island_twin` (physical units, as named in the model).
TRUE_PARAMETERS = {
    "diffusivity": 600.0,  # m^2/s
    "velocity_scale": 1.0,  # multiplies the known gyre (max speed 0.15 m/s)
    "noise_sd": 0.06,  # tracer units per sqrt(day)
    "noise_lengthscale_km": 80.0,
    "initial_sd": 1.0,  # tracer units
    "initial_lengthscale_km": 120.0,
    "error_scale": 1.0,
}


class TwinExperiment(NamedTuple):
    """Grid, times, truth (Dataset and wet states), observations and true parameters."""

    grid: Grid
    velocity: GivenVelocity
    times: np.ndarray
    truth: xr.Dataset
    states: np.ndarray
    observations: pd.DataFrame
    parameters: dict


def island_grid(n: int = 48, resolution: float = 10e3) -> Grid:
    """An ``n`` x ``n`` Cartesian basin (metres) with a 6 x 5 island and a short cape."""
    mask = np.ones((n, n), dtype=bool)
    j0, i0 = int(0.55 * n), int(0.4 * n)
    mask[j0:j0 + 6, i0:i0 + 5] = False  # island
    mask[: n // 5, n - 3:] = False  # a cape in the south-east corner
    return Grid.cartesian(x=(0.0, n * resolution), y=(0.0, n * resolution),
                          resolution=resolution, mask=mask)


def _tapered_flow(grid: Grid, psi: Any, max_speed: float) -> physics.FaceVelocity:
    """Face velocities of corner stream function ``psi`` tapered along coasts, scaled so
    that the fastest face carries ``max_speed`` (m/s)."""
    psi = physics.taper_streamfunction(grid, psi, cells=3.0)
    unit = physics.velocity_from_streamfunction(grid, psi)
    top = physics.max_face_speed(unit)
    return physics.velocity_from_streamfunction(grid, psi * (max_speed / top))


def gyre_velocity(grid: Grid, max_speed: float = 0.15) -> physics.FaceVelocity:
    """A divergence-free clockwise gyre plus an eddy, tapered along coasts (m/s)."""
    cx, cy = physics.corner_coordinates(grid)
    lx = grid.x_edges[-1] - grid.x_edges[0]
    ly = grid.y_edges[-1] - grid.y_edges[0]
    s, t = (cx - grid.x_edges[0]) / lx, (cy - grid.y_edges[0]) / ly
    psi = np.sin(np.pi * s) * np.sin(np.pi * t)
    psi = psi - 0.6 * np.exp(-((s - 0.7) ** 2 + (t - 0.3) ** 2) / (2 * 0.1**2))
    return _tapered_flow(grid, psi, max_speed)


def island_twin(key: Any, *, n: int = 48, n_times: int = 30, n_floats: int = 100,
                float_every: int = 3, float_error: float = 0.1, glider_error: float = 0.1,
                mean_level: float = 15.0, parameters: dict | None = None,
                truth_modes: int | None = None) -> TwinExperiment:
    """Truth from the model and ~1000 float and glider observations.

    Parameters
    ----------
    key : jax.random key
    n : int
        Grid size (n x n cells of 10 km).
    n_times : int
        Daily analysis times (float seconds from 0).
    n_floats, float_every : int
        Floats, each surfacing every ``float_every`` days (staggered).
    float_error, glider_error : float
        Observation error sd (tracer units).
    mean_level : float
        Mean level of the first map (its area-weighted mean, exactly).
    parameters : dict, optional
        True parameters; default :data:`TRUE_PARAMETERS`.
    truth_modes : int, optional
        Neumann modes of the model that draws the truth: ``None`` (default) for all of them
        (full resolution: a reduced model fitted to it meets truncation error, which its
        ``error_scale`` absorbs), or the ``n_modes`` of the model to be fitted (an identical
        twin: the fitted model contains the truth, so every parameter is identifiable).
    """
    params = dict(TRUE_PARAMETERS if parameters is None else parameters)
    grid = island_grid(n)
    times = np.arange(n_times) * DAY
    velocity = GivenVelocity(gyre_velocity(grid), scale_prior=dist.LogNormal(0.0, 0.5))
    modes = grid.n_wet if truth_modes is None else int(truth_modes)
    full = AdvectionDiffusionModel(grid, velocity, Priors(), n_modes=modes)
    data = ModelData(values=None, errors=None, valid=None, operators=None,
                     dts=jnp.asarray(np.diff(times)), mean_level=mean_level)
    ssm = full.state_space({k: jnp.asarray(v) for k, v in params.items()}, data)
    k_init, k_noise, k_obs = jax.random.split(key, 3)
    basins = full.basis.n_basins
    p0 = jnp.diagonal(ssm.initial_cov).at[:basins].set(0.0)  # the total is known exactly
    z = ssm.initial_mean + jnp.sqrt(p0) * jax.random.normal(k_init, p0.shape)
    q = jnp.diagonal(ssm.process_cov)
    noise = jnp.sqrt(q) * jax.random.normal(k_noise, (n_times - 1, q.size))

    def step(z, w):
        z_next = ssm.transition @ z + w
        return z_next, z_next

    _, rest = jax.lax.scan(step, z, noise)
    coefficients = np.asarray(jnp.concatenate([z[None], rest]))
    states = full.basis.expand(coefficients)
    truth = xr.Dataset(coords={"time": ("time", times, {"units": "s"}), **grid.coordinates()})
    truth["tracer"] = (("time", *grid.dims), grid.to_field(states), {"units": "1"})
    truth["total"] = ("time", grid.total(states))
    truth.attrs["tracer"] = "tracer"
    glider = simulate.Glider(waypoints=[(40e3, 40e3), (420e3, 120e3), (300e3, 440e3)],
                             speed=0.25, error=glider_error)
    floats = simulate.Floats(n_floats=n_floats, every=float_every, error=float_error)
    obs = simulate.sample_platforms(k_obs, truth, grid, [floats, glider])
    return TwinExperiment(grid, velocity, times, truth, states, obs, params)


#: True parameters of :func:`coastal_eddy_twin` (physical units, as named in the model).
EDDY_PARAMETERS = {
    "diffusivity": 200.0,  # m^2/s
    "velocity_scale": 1.0,  # multiplies the known eddying flow (max speed 0.3 m/s)
    "noise_sd": 0.05,  # tracer units per sqrt(day)
    "noise_lengthscale_km": 20.0,  # heat-kernel sd of the model noise
    "initial_sd": 1.0,  # tracer units
    "initial_lengthscale_km": 30.0,
    "error_scale": 1.0,
}


def coastal_grid(n: int = 128, resolution: float = 5e3) -> Grid:
    """An ``n`` x ``n`` Cartesian domain (metres) with a wavy eastern coast, a cape and an
    island: a closed coastal sea for the ensemble twin."""
    s = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(s, s)
    coast = 0.82 + 0.05 * np.sin(2 * np.pi * 2.5 * y) + 0.03 * np.cos(2 * np.pi * 6 * y)
    mask = x < coast
    mask &= ~((np.abs(y - 0.35) < 0.04) & (x > 0.55))  # a cape reaching west
    mask &= ~(((x - 0.3) / 0.06) ** 2 + ((y - 0.7) / 0.04) ** 2 < 1)  # an island
    return Grid.cartesian(x=(0.0, n * resolution), y=(0.0, n * resolution),
                          resolution=resolution, mask=mask)


def eddy_velocity(grid: Grid, key: Any, n_eddies: int = 10,
                  max_speed: float = 0.3) -> physics.FaceVelocity:
    """A divergence-free basin gyre plus ``n_eddies`` Gaussian eddies of random sign, size
    (30-80 km) and position, tapered along coasts (m/s); positions from ``key``."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    cx, cy = physics.corner_coordinates(grid)
    lx = grid.x_edges[-1] - grid.x_edges[0]
    ly = grid.y_edges[-1] - grid.y_edges[0]
    s, t = (cx - grid.x_edges[0]) / lx, (cy - grid.y_edges[0]) / ly
    psi = 0.5 * np.sin(np.pi * s) * np.sin(np.pi * t)
    for _ in range(n_eddies):
        x0, y0 = rng.uniform(0.1, 0.75), rng.uniform(0.1, 0.9)
        radius = rng.uniform(30e3, 80e3) / lx
        psi = psi + rng.choice([-1.0, 1.0]) * 0.4 * np.exp(
            -((s - x0) ** 2 + (t - y0) ** 2) / (2 * radius**2))
    return _tapered_flow(grid, psi, max_speed)


def coastal_eddy_twin(key: Any, *, n: int = 128, resolution: float = 5e3, n_times: int = 30,
                      n_floats: int = 300, float_every: int = 3, float_error: float = 0.1,
                      glider_error: float = 0.1, mean_level: float = 15.0,
                      parameters: dict | None = None) -> TwinExperiment:
    """A twin for the ensemble path: the full-grid model's own truth, eddies and a coastline.

    The first map is ``mean_level`` plus a masked-smoothed Gaussian field (sd
    ``initial_sd``, heat-kernel sd ``initial_lengthscale_km``); it is then advected by
    :func:`eddy_velocity`, diffused and forced by mass-free noise
    (:func:`tracerbayes.twin.simulate.simulate_truth`): the law the ensemble methods assume. Floats
    and a glider sample it daily (float seconds from 0).
    """
    params = dict(EDDY_PARAMETERS if parameters is None else parameters)
    grid = coastal_grid(n, resolution)
    k_vel, k_init, k_truth, k_obs = jax.random.split(key, 4)
    flow = eddy_velocity(grid, k_vel)
    velocity = GivenVelocity(flow, scale_prior=dist.LogNormal(0.0, 0.5))
    times = np.arange(n_times) * DAY
    initial = mean_level + simulate.mass_free_noise(
        k_init, grid, 1, params["initial_sd"], params["initial_lengthscale_km"] * 1e3,
        per_basin=True)[0]
    scaled = physics.FaceVelocity(flow.east * params["velocity_scale"],
                                  flow.north * params["velocity_scale"])
    truth = simulate.simulate_truth(k_truth, grid, times, scaled, params["diffusivity"],
                                    initial, params["noise_sd"],
                                    params["noise_lengthscale_km"] * 1e3)
    states = simulate.truth_states(truth, grid)
    size = n * resolution
    glider = simulate.Glider(waypoints=[(0.1 * size, 0.1 * size), (0.6 * size, 0.5 * size),
                                        (0.2 * size, 0.9 * size)], speed=0.25,
                             error=glider_error)
    floats = simulate.Floats(n_floats=n_floats, every=float_every, error=float_error,
                             drift=0.03 * size)
    obs = simulate.sample_platforms(k_obs, truth, grid, [floats, glider])
    return TwinExperiment(grid, velocity, times, truth, states, obs, params)
