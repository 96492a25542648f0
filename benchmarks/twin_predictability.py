"""How much can physics help on the independent twin? Forecasts of its truth, no data.

    python benchmarks/twin_predictability.py TWIN_DIR [--starts 0 3 6 9 12 15 18]

``TWIN_DIR`` holds a twin written by ``benchmarks/independent_truth.py`` (truth.nc,
velocity.nc, twin.yaml). From the block-averaged truth on day ``k0`` each forecast runs
``h`` = 1, 3, 5 and 10 days without observations and is scored (RMSE over the wet cells)
against the truth on day ``k0 + h``, averaged over the starts:

* persistence: the day-``k0`` map itself;
* semi-Lagrangian on the map grid (a scheme unlike tracerbayes's, close to the truth's own):
  hourly two-stage back trajectories through the daily velocities (interpolated linearly in
  time), cubic interpolation of the field extended into land; no diffusion, damping or
  forcing;
* tracerbayes's forecast: the full-grid upwind finite-volume propagator of the ensemble
  methods (:func:`tracerbayes.ensemble.tracer.tracer_transition`, no noise) with the given
  velocities and ``--diffusivity``; and the same with the velocity set to zero (diffusion
  alone).

Advection can improve a map only by as much as the semi-Lagrangian forecast beats
persistence: when the truth's day-to-day change is mostly its forcing, no advective model can
do much better than a statistical one, however exact. The gap between the semi-Lagrangian and
tracerbayes's forecasts is the price of the upwind scheme's numerical diffusion (about
``u dx / 2``) at this resolution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import ndimage

HORIZONS = (1, 3, 5, 10)


def semi_lagrangian_day(c: np.ndarray, u0: np.ndarray, v0: np.ndarray, u1: np.ndarray,
                        v1: np.ndarray, wet: np.ndarray, h: float, substeps: int = 24
                        ) -> np.ndarray:
    """One day of semi-Lagrangian advection of the map ``c`` (ny, nx; NaN on land) with the
    cell-centre velocities ``u0, v0`` at its start and ``u1, v1`` at its end (m/s)."""
    _, (jn, in_) = ndimage.distance_transform_edt(~wet, return_indices=True)
    jw, iw = np.nonzero(wet)
    x, y = iw + 0.5, jw + 0.5  # in cells
    dt = 86400.0 / substeps
    for s in range(substeps):
        a = (s + 0.5) / substeps
        u, v = (1 - a) * u0 + a * u1, (1 - a) * v0 + a * v1
        ua = ndimage.map_coordinates(u, [y - 0.5, x - 0.5], order=1)
        va = ndimage.map_coordinates(v, [y - 0.5, x - 0.5], order=1)
        xm, ym = x - 0.5 * dt * ua / h, y - 0.5 * dt * va / h
        ua = ndimage.map_coordinates(u, [ym - 0.5, xm - 0.5], order=1)
        va = ndimage.map_coordinates(v, [ym - 0.5, xm - 0.5], order=1)
        extended = np.where(wet, c, 0.0)[jn, in_]
        new = c.copy()
        new[jw, iw] = ndimage.map_coordinates(extended, [y - dt * va / h - 0.5,
                                                         x - dt * ua / h - 0.5],
                                              order=3, mode="nearest")
        c = new
    return c


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("twin", type=Path)
    parser.add_argument("--starts", type=int, nargs="+", default=[0, 3, 6, 9, 12, 15, 18])
    parser.add_argument("--diffusivity", type=float, default=300.0, help="m^2/s (the truth's)")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from tracerbayes import physics
    from tracerbayes.cli import config as tbc
    from tracerbayes.ensemble.fit import _intervals
    from tracerbayes.ensemble.tracer import noise_field, tracer_transition

    truth = xr.open_dataset(args.twin / "truth.nc")["truth"].values
    vel = xr.open_dataset(args.twin / "velocity.nc")
    U, V = np.nan_to_num(vel["u"].values), np.nan_to_num(vel["v"].values)
    wet = np.isfinite(truth[0])
    h = float(np.diff(vel["x"].values[:2])[0])
    cfg = tbc.load_config(args.twin / "twin.yaml")
    grid = tbc.build_grid(cfg)
    obs = tbc.build_observations(cfg)
    times = np.asarray(tbc.build_times(cfg, obs))
    model = tbc.build_model(cfg, grid, obs, n_times=len(times))
    faces = model.velocity.at_intervals(times)
    still = physics.FaceVelocity(0.0 * faces.east, 0.0 * faces.north)
    noise = noise_field(grid, 0.0)
    moves = {name: tracer_transition(grid, f, args.diffusivity, _intervals(times), noise, 0.0)
             for name, f in (("tracerbayes (upwind, given velocity)", faces),
                             ("tracerbayes (diffusion only)", still))}
    T = truth.shape[0]
    starts = [k for k in args.starts if k + max(HORIZONS) < T]
    flat = truth.reshape(T, -1)[:, grid.wet_index]
    errors: dict[str, dict[int, list[float]]] = {}

    def record(name: str, H: int, field: np.ndarray, k0: int) -> None:
        rmse = float(np.sqrt(np.mean((field - flat[k0 + H]) ** 2)))
        errors.setdefault(name, {}).setdefault(H, []).append(rmse)

    for k0 in starts:
        sl = truth[k0].copy()
        state = {name: jnp.asarray(flat[k0][None]) for name in moves}
        for H in range(1, max(HORIZONS) + 1):
            sl = semi_lagrangian_day(sl, U[k0 + H - 1], V[k0 + H - 1], U[k0 + H], V[k0 + H],
                                     wet, h)
            for name, move in moves.items():
                state[name] = move(jax.random.key(0), state[name], k0 + H)
            if H in HORIZONS:
                record("persistence", H, flat[k0], k0)
                record("semi-Lagrangian, map grid (no diffusion)", H,
                       sl.reshape(-1)[grid.wet_index], k0)
                for name in moves:
                    record(name, H, np.asarray(state[name][0]), k0)
    lines = [f"forecasts of the twin's truth ({args.twin}), RMSE over {grid.n_wet} wet cells, "
             f"mean over starts {starts}",
             f"{'forecast':<42}" + "".join(f"{f'{H} d':>8}" for H in HORIZONS)]
    for name, by_h in errors.items():
        lines.append(f"{name:<42}" + "".join(f"{np.mean(by_h[H]):8.4f}" for H in HORIZONS))
    text = "\n".join(lines)
    print(text)
    return {name: {H: float(np.mean(v)) for H, v in by_h.items()}
            for name, by_h in errors.items()}


if __name__ == "__main__":
    main()
