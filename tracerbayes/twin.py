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

from tracerbayes import physics, simulate
from tracerbayes.grid import Grid
from tracerbayes.model import DAY, AdvectionDiffusionModel, GivenVelocity, ModelData, Priors

__all__ = ["TwinExperiment", "TRUE_PARAMETERS", "island_grid", "gyre_velocity", "island_twin"]

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


def gyre_velocity(grid: Grid, max_speed: float = 0.15) -> physics.FaceVelocity:
    """A divergence-free clockwise gyre plus an eddy, tapered along coasts (m/s)."""
    cx, cy = physics.corner_coordinates(grid)
    lx = grid.x_edges[-1] - grid.x_edges[0]
    ly = grid.y_edges[-1] - grid.y_edges[0]
    s, t = (cx - grid.x_edges[0]) / lx, (cy - grid.y_edges[0]) / ly
    psi = np.sin(np.pi * s) * np.sin(np.pi * t)
    psi = psi - 0.6 * np.exp(-((s - 0.7) ** 2 + (t - 0.3) ** 2) / (2 * 0.1**2))
    psi = physics.taper_streamfunction(grid, psi, cells=3.0)
    unit = physics.velocity_from_streamfunction(grid, psi)
    top = max(float(np.abs(unit.east).max()), float(np.abs(unit.north).max()))
    return physics.velocity_from_streamfunction(grid, psi * (max_speed / top))


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
