"""Ready-made twin-experiment scenarios on real coastlines (offline).

:func:`canary_sst` builds the embedded demo: the Canary Islands and the north-west African
coast (lon -26..-10, lat 20..36 at 0.5 degrees, land from the GLOBE mask), starting from the
real HadISST1 sea-surface temperature of August 2012 that ships inside cartopy's
installation (see OFFLINE.md: it is read from cartopy's folder, never copied), advected by a
known, divergence-free current (a south-westward Canary Current with two eddies) and mixed,
then observed by profiling floats and a glider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
import xarray as xr

from tracerbayes import physics
from tracerbayes.grid.core import Grid
from tracerbayes.twin import simulate

__all__ = ["Scenario", "hadisst_path", "load_hadisst", "hadisst_on_grid",
           "canary_sst"]


class Scenario(NamedTuple):
    """A twin experiment: grid, true physics, truth and observations."""

    grid: Grid
    times: np.ndarray
    velocity: physics.FaceVelocity
    diffusivity: float
    truth: xr.Dataset
    observations: pd.DataFrame
    description: str


def hadisst_path() -> Path:
    """Path of the HadISST1 SST file shipped with cartopy (August 2012, 1 degree)."""
    import cartopy

    path = Path(cartopy.__file__).parent / "data" / "netcdf" / "HadISST1_SST_update.nc"
    if not path.exists():
        raise FileNotFoundError(
            f"HadISST file not found at {path}; it ships with cartopy's wheel. Reinstall "
            "cartopy (pip install --force-reinstall cartopy)."
        )
    return path


def load_hadisst() -> xr.DataArray:
    """HadISST1 SST (degC) on (lat, lon) with ascending latitude, land as NaN."""
    import warnings

    with warnings.catch_warnings():
        # The file's time_bnds reference date "1-1-1" is ambiguous to xarray; harmless here.
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        with xr.open_dataset(hadisst_path()) as ds:
            sst = ds["sst"].isel(time=0).load()
    sst = sst.where(sst > -100)  # missing-value sentinel (sea ice is -1.8, land is NaN)
    return sst.sortby("lat")


def hadisst_on_grid(grid: Grid) -> np.ndarray:
    """HadISST1 SST (degC, August 2012) on the wet cells of a lon/lat grid, shape (n_wet,).

    Interpolated linearly; wet cells where HadISST has no value (its coarser coastline) take
    the nearest wet cell's value.
    """
    if grid.dims != ("lat", "lon"):
        raise ValueError(f"HadISST needs a lon/lat grid; this grid has dims {grid.dims}")
    sst = load_hadisst().interp(lon=grid.x, lat=grid.y)
    field = sst.transpose("lat", "lon").values
    state = grid.to_state(field)
    missing = ~np.isfinite(state)
    if missing.any():
        xx, yy = np.meshgrid(grid.x, grid.y)
        px, py = grid.to_state(xx), grid.to_state(yy)
        good = np.flatnonzero(~missing)
        for i in np.flatnonzero(missing):
            j = good[np.argmin((px[good] - px[i]) ** 2 + (py[good] - py[i]) ** 2)]
            state[i] = state[j]
    return state


def canary_velocity(grid: Grid, speed: float = 0.08,
                    max_speed: float = 0.3) -> physics.FaceVelocity:
    """A divergence-free current: south-westward drift plus two eddies (m/s).

    The shape comes from ``speed``; the field is then scaled so that its fastest face
    velocity is ``max_speed``.

    Built from a stream function at the cell corners (m^2/s), so it is discretely
    divergence-free on the masked grid.
    """
    cx, cy = physics.corner_coordinates(grid)
    r = grid.radius
    lat0 = np.deg2rad(0.5 * (grid.y_edges[0] + grid.y_edges[-1]))
    xm = r * np.cos(lat0) * np.deg2rad(cx - cx.mean())
    ym = r * np.deg2rad(cy - cy.mean())
    # Uniform flow toward the south-west: psi = -U y + V x with (U, V) = speed * (-0.5, -0.87).
    u0, v0 = -0.5 * speed, -0.87 * speed
    psi = -u0 * ym + v0 * xm
    for x0, y0, sign in ((-2.5e5, 1.5e5, 1.0), (3.0e5, -2.5e5, -1.0)):
        rr2 = ((xm - x0) ** 2 + (ym - y0) ** 2) / (1.2e5) ** 2
        psi = psi + sign * speed * 1.2e5 * 1.6 * np.exp(-0.5 * rr2)
    # Taper psi to zero over ~4 cells from land and the closed edges, so that the flow
    # turns smoothly along the coast instead of forming jets where psi is forced to zero.
    psi = physics.taper_streamfunction(grid, psi, cells=4.0)
    velocity = physics.velocity_from_streamfunction(grid, psi)
    # Scale so that the fastest face carries `max_speed`.
    top = physics.max_face_speed(velocity)
    return physics.velocity_from_streamfunction(grid, psi * (max_speed / top))


def canary_sst(
    key: Any,
    *,
    n_times: int = 30,
    resolution: float = 0.5,
    diffusivity: float = 400.0,
    noise_scale: float = 0.05,
    noise_lengthscale: float = 150e3,
    n_floats: int = 40,
    float_error: float = 0.05,
    glider_error: float = 0.1,
) -> Scenario:
    """The demo twin experiment (daily analysis times from 2012-08-01).

    Parameters
    ----------
    key : jax.random key
        Seeds the truth's process noise and the platforms.
    n_times : int
        Number of daily analysis times.
    resolution : float
        Grid spacing in degrees.
    diffusivity : float
        True diffusivity, m^2/s.
    noise_scale, noise_lengthscale : float
        True process noise: sd per day (degC) and correlation length (m).
    n_floats : int
        Profiling floats, each surfacing every 3 days.
    float_error, glider_error : float
        Observation error standard deviations, degC.
    """
    grid = Grid.regular(lon=(-26.0, -10.0), lat=(20.0, 36.0), resolution=resolution,
                        mask="auto")
    times = np.datetime64("2012-08-01", "ns") + np.arange(n_times) * np.timedelta64(1, "D")
    velocity = canary_velocity(grid)
    k_truth, k_obs = jax.random.split(key)
    truth = simulate.simulate_truth(
        k_truth, grid, times, velocity, diffusivity, hadisst_on_grid(grid), noise_scale,
        noise_lengthscale, name="sst", long_name="sea surface temperature", units="degC",
    )
    truth["sst"].attrs["standard_name"] = "sea_surface_temperature"
    platforms = [
        simulate.Floats(n_floats=n_floats, every=3, error=float_error),
        simulate.Glider(waypoints=[(-18.0, 22.0), (-22.0, 30.0), (-14.0, 33.0)], speed=0.3,
                        error=glider_error),
    ]
    observations = simulate.sample_platforms(k_obs, truth, grid, platforms)
    description = (
        f"Canary Basin SST twin experiment: {grid.shape[0]} x {grid.shape[1]} grid "
        f"({grid.n_wet} wet cells), {n_times} daily maps from HadISST 2012-08, "
        f"diffusivity {diffusivity:g} m^2/s, {len(observations)} observations from "
        f"{n_floats} floats and a glider"
    )
    return Scenario(grid, times, velocity, diffusivity, truth, observations, description)
