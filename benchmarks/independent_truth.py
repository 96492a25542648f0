"""An independent twin: a truth from a solver that is not tracerbayes's, its observations, and
the input files of a ``tracerbayes run``.

    python benchmarks/independent_truth.py OUT_DIR [--seed 0] [--refine 3] [--days 30]
        [--dt-hours 1] [--peak-speed 0.3] [--forcing-sd 0.08]

The truth is a non-conserved tracer (an SST-like anomaly around a fixed mean field)

    dc/dt = -u . grad c + div(kappa grad c) - (c - m(x, y)) / tau + f(x, y, t)

in a closed 2000 km x 1200 km basin with an irregular western coast, a cape and an island,
stirred by a time-varying double gyre. It is integrated on a grid ``refine`` times finer than
the 20 km map grid by a scheme deliberately unlike tracerbayes's (finite-volume upwind with an
exponential integrator on the map grid):

* advection: semi-Lagrangian, two-stage (midpoint) back trajectories through the time-varying
  face velocities, cubic-spline interpolation (``scipy.ndimage.map_coordinates``) of the field
  extended into land by nearest-wet values, departure points clamped into the domain;
* diffusion: explicit sub-steps of the masked five-point Laplacian, no flux through coasts;
* damping and forcing: integrated exactly over the step (forcing held at the mid-step value).

The flow comes from a stream function on the fine grid's cell corners, zero on every corner
that touches land (coasts, the island, the domain edge), differenced onto the cell faces: the
discrete flow is exactly divergence-free and nothing crosses a coast.

Everything random (initial anomaly, forcing, floats, glider noise) comes from ``seed`` through
``numpy.random.SeedSequence``; the land mask and the flow are not random. Nothing here imports
tracerbayes.

``--peak-speed`` (m/s, default 0.3) is the largest face speed of the gyres and ``--forcing-sd``
(degC/day, default 0.08) the sd of the random forcing: the defaults give a forcing-dominated
twin; e.g. ``--peak-speed 0.9 --forcing-sd 0.03`` gives an advection-dominated one.

Written to ``OUT_DIR``: ``truth.nc`` (daily block averages on the map grid), ``mask.nc``,
``velocity.nc`` (daily map-grid u, v), ``velocity_mean.nc`` (their time mean), ``obs.csv``
(drifting floats and gliders), ``twin.yaml`` (a ``tracerbayes run`` configuration with the
package's default priors and method) and ``summary.json`` (the printed summary).
"""

from __future__ import annotations

import argparse
import json
import math
import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

DAY = 86400.0
START = np.datetime64("2020-01-01T00:00:00", "ns")


# ------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Basin:
    """The map grid (``nx`` x ``ny`` cells of ``dx`` m) and the fine grid ``refine`` times finer.

    ``mask`` (map) and ``fine_mask`` are True on water; the fine mask is the map mask repeated
    over each ``refine`` x ``refine`` block, so every map cell is entirely wet or entirely land.
    """

    nx: int
    ny: int
    dx: float
    refine: int
    mask: np.ndarray

    @property
    def lx(self) -> float:
        return self.nx * self.dx

    @property
    def ly(self) -> float:
        return self.ny * self.dx

    @property
    def fdx(self) -> float:
        return self.dx / self.refine

    @property
    def fine_shape(self) -> tuple[int, int]:
        return self.ny * self.refine, self.nx * self.refine

    @property
    def fine_mask(self) -> np.ndarray:
        r = self.refine
        return np.repeat(np.repeat(self.mask, r, axis=0), r, axis=1)

    @property
    def x(self) -> np.ndarray:
        return (np.arange(self.nx) + 0.5) * self.dx

    @property
    def y(self) -> np.ndarray:
        return (np.arange(self.ny) + 0.5) * self.dx

    @property
    def xf(self) -> np.ndarray:
        return (np.arange(self.fine_shape[1]) + 0.5) * self.fdx

    @property
    def yf(self) -> np.ndarray:
        return (np.arange(self.fine_shape[0]) + 0.5) * self.fdx

    def block_mean(self, fine: np.ndarray) -> np.ndarray:
        """Mean over each ``refine`` x ``refine`` block (last two axes) -> map grid."""
        r = self.refine
        lead = fine.shape[:-2]
        return fine.reshape(*lead, self.ny, r, self.nx, r).mean(axis=(-3, -1))

    def in_wet_map_cell(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where the points (m) lie inside the domain and in a wet map cell."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        inside = (x >= 0) & (x < self.lx) & (y >= 0) & (y < self.ly)
        i = np.clip((x // self.dx).astype(int), 0, self.nx - 1)
        j = np.clip((y // self.dx).astype(int), 0, self.ny - 1)
        return inside & self.mask[j, i]


def basin_mask(nx: int = 100, ny: int = 60, dx: float = 20e3) -> np.ndarray:
    """Water mask (True on water) of the map grid: a western shelf coast, a cape from the east
    coast, a gently wavy northern coast and an elliptical island (~200 km x 150 km in the default
    2000 km x 1200 km basin). Features scale with the basin; only the largest connected water
    body is kept."""
    lx, ly = nx * dx, ny * dx
    xx, yy = np.meshgrid((np.arange(nx) + 0.5) * dx, (np.arange(ny) + 0.5) * dx)
    X, Y = xx / lx, yy / ly
    land = np.zeros((ny, nx), dtype=bool)
    # Western coast: a shelf edge wandering between ~60 and ~200 km from the edge.
    west = 0.045 + 0.022 * np.sin(2 * np.pi * 1.3 * Y + 0.7) + 0.012 * np.sin(
        2 * np.pi * 3.1 * Y + 2.0) + 0.035 * np.exp(-(((Y - 0.3) / 0.07) ** 2))
    land |= X < west
    # Northern coast: gently wavy, 20-70 km wide.
    north = 0.035 + 0.02 * np.sin(2 * np.pi * 1.7 * X + 1.1)
    land |= Y > 1.0 - north
    # Cape: a tilted half-ellipse from the east coast at mid-latitude, ~360 km long.
    yc = 0.45 + 0.06 * (1.0 - X) / 0.18
    land |= ((1.0 - X) / 0.18) ** 2 + ((Y - yc) / 0.075) ** 2 < 1.0
    # Island: an ellipse rotated by 30 degrees, semi-axes ~100 km and ~75 km.
    cx, cy, ang = 0.42 * lx, 0.5 * ly, np.deg2rad(30.0)
    a, b = 0.05 * lx, 0.0625 * ly
    ex = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
    ey = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
    land |= (ex / a) ** 2 + (ey / b) ** 2 < 1.0
    wet = ~land
    labels, n = ndimage.label(wet)
    if n > 1:
        sizes = ndimage.sum(wet, labels, index=np.arange(1, n + 1))
        wet = labels == 1 + int(np.argmax(sizes))
    return wet


def make_basin(nx: int = 100, ny: int = 60, dx: float = 20e3, refine: int = 3) -> Basin:
    """The default basin geometry on an ``nx`` x ``ny`` map grid of ``dx`` m cells."""
    return Basin(nx=nx, ny=ny, dx=float(dx), refine=int(refine), mask=basin_mask(nx, ny, dx))


# ---------------------------------------------------------------------------------- flow
class DoubleGyre:
    """Time-varying double gyre (a northern and a southern gyre) tapered to zero at coasts.

    ``psi(x, y, t) = A * taper(x, y) * sin(pi X) * sin(2 pi g(Y, t))`` with ``X = x / Lx``,
    ``Y = y / Ly`` and ``g = Y + a(t) Y (1 - Y)``, ``a = eps sin(2 pi t / period)``: the
    boundary between the gyres (``g = 1/2``) swings north and south. ``taper`` goes from 0 on
    every cell corner that touches land or the domain edge to 1 at ``taper_km`` from it, as
    ``s (2 - s)`` of the scaled distance ``s``; the island is thus a streamline with psi = 0.
    ``A`` is set so that the largest face speed over one period is ``peak_speed``.
    """

    def __init__(self, basin: Basin, *, peak_speed: float = 0.3, period_days: float = 15.0,
                 eps: float = 0.5, taper_km: float = 80.0):
        self.basin = basin
        self.period = period_days * DAY
        self.eps = eps
        ny, nx = basin.fine_shape
        h = basin.fdx
        # Corner (ny + 1, nx + 1) is wet when its four surrounding cells exist and are wet.
        padded = np.zeros((ny + 2, nx + 2), dtype=bool)
        padded[1:-1, 1:-1] = basin.fine_mask
        corner_wet = padded[:-1, :-1] & padded[:-1, 1:] & padded[1:, :-1] & padded[1:, 1:]
        dist = ndimage.distance_transform_edt(corner_wet) * h
        s = np.clip(dist / (taper_km * 1e3), 0.0, 1.0)
        taper = np.where(corner_wet, s * (2.0 - s), 0.0)
        xc = np.arange(nx + 1) * h / basin.lx
        self._yc = np.arange(ny + 1) * h / basin.ly
        self._shape = taper * np.sin(np.pi * xc)[None, :]
        self.amplitude = 1.0
        phases = np.linspace(0.0, self.period, 16, endpoint=False)
        peak = max(max(np.abs(u).max(), np.abs(v).max()) for u, v in map(self.faces, phases))
        self.amplitude = peak_speed / peak

    def psi(self, t: float) -> np.ndarray:
        """Stream function (m^2/s) on the fine cell corners, shape (ny + 1, nx + 1)."""
        a = self.eps * np.sin(2.0 * np.pi * t / self.period)
        g = self._yc + a * self._yc * (1.0 - self._yc)
        return self.amplitude * self._shape * np.sin(2.0 * np.pi * g)[:, None]

    def faces(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Face velocities (m/s) at time ``t`` (s): ``u`` on the west/east faces, shape
        (ny, nx + 1); ``v`` on the south/north faces, shape (ny + 1, nx).

        ``u = -dpsi/dy`` and ``v = dpsi/dx`` as corner differences, so the net outflow of every
        cell cancels exactly."""
        p = self.psi(t)
        h = self.basin.fdx
        return -(p[1:, :] - p[:-1, :]) / h, (p[:, 1:] - p[:, :-1]) / h


def centre_velocity(u_face: np.ndarray, v_face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre components: the mean of each cell's two faces."""
    return 0.5 * (u_face[:, :-1] + u_face[:, 1:]), 0.5 * (v_face[:-1] + v_face[1:])


def divergence(u_face: np.ndarray, v_face: np.ndarray, h: float) -> np.ndarray:
    """Discrete divergence (1/s) of each cell (square cells of side ``h``)."""
    return (u_face[:, 1:] - u_face[:, :-1] + v_face[1:] - v_face[:-1]) / h


def velocity_at(u_face: np.ndarray, v_face: np.ndarray, h: float, x: np.ndarray,
                y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of the staggered face velocities at points (m)."""
    u = ndimage.map_coordinates(u_face, [y / h - 0.5, x / h], order=1, mode="nearest")
    v = ndimage.map_coordinates(v_face, [y / h, x / h - 0.5], order=1, mode="nearest")
    return u, v


# -------------------------------------------------------------------------- random fields
def random_fields(rng: np.random.Generator, basin: Basin, n: int, lengthscale: float
                  ) -> np.ndarray:
    """``n`` smooth Gaussian random fields on the fine grid, each of sd 1 over the wet cells.

    White noise on the map grid (padded by four lengthscales) smoothed by a Gaussian kernel
    whose correlation is ``exp(-r^2 / (2 L^2))``, then interpolated (cubic) to the fine cell
    centres, so the same seed gives the same fields at any ``refine``."""
    sigma = lengthscale / (math.sqrt(2.0) * basin.dx)
    pad = int(math.ceil(4.0 * lengthscale / basin.dx))
    jj = (basin.yf / basin.dx - 0.5)[:, None] + pad
    ii = (basin.xf / basin.dx - 0.5)[None, :] + pad
    coords = np.broadcast_arrays(jj, ii)
    wet = basin.fine_mask
    out = np.empty((n, *basin.fine_shape))
    for k in range(n):
        noise = rng.standard_normal((basin.ny + 2 * pad, basin.nx + 2 * pad))
        smooth = ndimage.gaussian_filter(noise, sigma, mode="wrap")
        field = ndimage.map_coordinates(smooth, coords, order=3, mode="nearest")
        out[k] = field / field[wet].std()
    return out


def mean_field(basin: Basin, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The large-scale mean ``m`` (degC): 15 plus a 3 degC north-south drop across the basin
    and a weak east-west wave."""
    X, Y = x / basin.lx, y / basin.ly
    return 15.0 + 3.0 * (0.5 - Y) + 0.3 * np.cos(2.0 * np.pi * X) * np.sin(np.pi * Y)


class Forcing:
    """Smooth random forcing f (degC/s): keyframe fields every ``every`` s blended as
    ``cos(pi s / 2) F_k + sin(pi s / 2) F_k+1`` (constant variance, continuous in time)."""

    def __init__(self, fields: np.ndarray, every: float, sd_per_day: float):
        self.fields = fields
        self.every = every
        self.scale = sd_per_day / DAY

    def __call__(self, t: float) -> np.ndarray:
        k = min(int(t // self.every), len(self.fields) - 2)
        s = t / self.every - k
        return self.scale * (np.cos(0.5 * np.pi * s) * self.fields[k]
                             + np.sin(0.5 * np.pi * s) * self.fields[k + 1])


# ------------------------------------------------------------------------------- solver
def diffuse(c: np.ndarray, wet: np.ndarray, kappa: float, dt: float, h: float) -> np.ndarray:
    """Explicit diffusion over ``dt`` s with the masked five-point Laplacian (no flux through
    faces next to land or the domain edge), in as many stable sub-steps as needed."""
    if kappa <= 0.0 or dt <= 0.0:
        return c
    open_e = wet[:, 1:] & wet[:, :-1]
    open_n = wet[1:, :] & wet[:-1, :]
    limit = h * h / (4.0 * kappa)  # stability limit of the explicit 2-D scheme
    n_sub = max(1, math.ceil(dt / (0.9 * limit)))
    k = kappa * (dt / n_sub) / (h * h)
    c = c.copy()
    for _ in range(n_sub):
        fe = np.where(open_e, c[:, 1:] - c[:, :-1], 0.0)
        fn = np.where(open_n, c[1:, :] - c[:-1, :], 0.0)
        dc = np.zeros_like(c)
        dc[:, :-1] += fe
        dc[:, 1:] -= fe
        dc[:-1, :] += fn
        dc[1:, :] -= fn
        c += k * dc
    return c


class Solver:
    """Semi-Lagrangian advection, explicit diffusion, exact damping/forcing on the fine grid.

    ``flow`` (with ``faces(t)``) may be None (no advection), ``forcing`` (``f(t)`` in degC/s on
    the fine grid) None (zero), ``tau`` inf (no damping); ``mean`` is ``m`` on the fine grid.
    """

    def __init__(self, basin: Basin, flow: DoubleGyre | None, *, kappa: float, tau: float,
                 mean: np.ndarray | float = 0.0, forcing: Forcing | None = None):
        self.basin, self.flow, self.kappa, self.tau = basin, flow, kappa, tau
        self.mean, self.forcing = mean, forcing
        wet = basin.fine_mask
        self.wet = wet
        # Index of the nearest wet cell of every cell (itself when wet).
        _, (jn, in_) = ndimage.distance_transform_edt(~wet, return_indices=True)
        self._nearest = (jn, in_)
        jw, iw = np.nonzero(wet)
        self._jw, self._iw = jw, iw
        self._xw, self._yw = (iw + 0.5) * basin.fdx, (jw + 0.5) * basin.fdx

    def extend(self, c: np.ndarray) -> np.ndarray:
        """The field with every land cell set to its nearest wet cell's value."""
        return c[self._nearest]

    def sample(self, c: np.ndarray, x: np.ndarray, y: np.ndarray, order: int = 1
               ) -> np.ndarray:
        """Interpolated values of the (land-extended) field at points (m)."""
        h = self.basin.fdx
        return ndimage.map_coordinates(self.extend(c), [y / h - 0.5, x / h - 0.5],
                                       order=order, mode="nearest")

    def advect(self, c: np.ndarray, t: float, dt: float) -> np.ndarray:
        """Semi-Lagrangian step from ``t`` to ``t + dt``: two-stage (midpoint) back
        trajectories from the wet cell centres, cubic interpolation at the departure points."""
        if self.flow is None:
            return c
        b = self.basin
        h = b.fdx
        x, y = self._xw, self._yw
        u1, v1 = velocity_at(*self.flow.faces(t + dt), h, x, y)
        xm, ym = x - 0.5 * dt * u1, y - 0.5 * dt * v1
        u2, v2 = velocity_at(*self.flow.faces(t + 0.5 * dt), h, xm, ym)
        xd = np.clip(x - dt * u2, 0.5 * h, b.lx - 0.5 * h)
        yd = np.clip(y - dt * v2, 0.5 * h, b.ly - 0.5 * h)
        coef = ndimage.spline_filter(self.extend(c), order=3, mode="nearest")
        out = c.copy()
        out[self._jw, self._iw] = ndimage.map_coordinates(
            coef, [yd / h - 0.5, xd / h - 0.5], order=3, mode="nearest", prefilter=False)
        return out

    def relax(self, c: np.ndarray, t: float, dt: float) -> np.ndarray:
        """Exact solution over ``dt`` of ``dc/dt = -(c - m)/tau + f`` with f at mid-step."""
        f = 0.0 if self.forcing is None else self.forcing(t + 0.5 * dt)
        if math.isinf(self.tau):
            out = c + dt * f
        else:
            target = self.mean + self.tau * f
            out = target + (c - target) * math.exp(-dt / self.tau)
        return np.where(self.wet, out, c)

    def step(self, c: np.ndarray, t: float, dt: float) -> np.ndarray:
        """One step ``t -> t + dt`` (advection, then diffusion, then damping and forcing)."""
        c = self.advect(c, t, dt)
        c = diffuse(c, self.wet, self.kappa, dt, self.basin.fdx)
        return self.relax(c, t, dt)


# ------------------------------------------------------------------------ observations
def glider_track(waypoints: np.ndarray, speed: float, times: np.ndarray) -> np.ndarray:
    """Positions (n, 2) at ``times`` (s) of a glider flying the waypoints back and forth."""
    legs = np.diff(waypoints, axis=0)
    lengths = np.hypot(legs[:, 0], legs[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    total = cum[-1]
    s = np.mod(speed * times, 2.0 * total)
    s = np.where(s > total, 2.0 * total - s, s)  # on the way back
    return np.column_stack([np.interp(s, cum, waypoints[:, 0]),
                            np.interp(s, cum, waypoints[:, 1])])


#: Glider waypoints as fractions of the basin (x, y).
GLIDER_WAYPOINTS = (
    ((0.20, 0.18), (0.38, 0.32), (0.24, 0.42)),
    ((0.58, 0.86), (0.82, 0.72), (0.90, 0.88)),
)


# ------------------------------------------------------------------------------ outputs
def _coords(basin: Basin) -> dict:
    return {"y": ("y", basin.y, {"units": "m", "long_name": "y of cell centre",
                                 "axis": "Y"}),
            "x": ("x", basin.x, {"units": "m", "long_name": "x of cell centre", "axis": "X"})}


def _write_config(path: Path, basin: Basin, days: int, seed: int, refine: int) -> None:
    def length(v: float) -> str:
        return f"{v / 1e3:g} km" if (v / 1e3).is_integer() else f"{v:g}"

    end = (START + np.timedelta64(days - 1, "D")).astype("datetime64[D]")
    text = f"""\
# Independent twin written by benchmarks/independent_truth.py (seed {seed}, refine {refine},
# {days} days). The truth (truth.nc) comes from a semi-Lagrangian solver on a {refine}x finer
# grid, not from tracerbayes. Default priors, model and method of the package; what a user
# knows is written down: the tracer has sources and sinks, and the currents are daily.
title: Independent twin (semi-Lagrangian truth, seed {seed})
tracer: {{name: sst, long_name: synthetic sea surface temperature, units: degC,
         conserved: false}}
grid:
  x: [0, {length(basin.lx)}]
  y: [0, {length(basin.ly)}]
  resolution: {length(basin.dx)}
  mask: {{file: mask.nc, variable: mask}}
times: {{start: {START.astype("datetime64[D]")}, end: {end}, step: 1 day}}
observations:
  - file: obs.csv
    columns: {{x: x, y: y, platform: platform}}
velocity:
  kind: given
  file: velocity.nc
  u: u
  v: v
output: {{directory: out}}
"""
    path.write_text(text)


def make_twin(out_dir: str | Path, *, seed: int = 0, refine: int = 3, days: int = 30,
              nx: int = 100, ny: int = 60, dx: float = 20e3, dt_hours: float = 1.0,
              kappa: float = 300.0, tau_days: float = 20.0, peak_speed: float = 0.3,
              gyre_period_days: float = 15.0, lengthscale_km: float = 150.0,
              initial_sd: float = 1.0, forcing_sd: float = 0.08, forcing_every_days: float = 5.0,
              n_floats: int = 75, glider_every_hours: float = 3.0, float_error: float = 0.1,
              glider_error: float = 0.05, verbose: bool = True) -> dict[str, Path]:
    """Integrate the independent truth and write the twin's files into ``out_dir``.

    Returns the paths of ``truth``, ``mask``, ``velocity``, ``velocity_mean``, ``obs``,
    ``config`` and ``summary``."""
    t_start = _time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if days < 1:
        raise ValueError("days must be >= 1")
    steps_per_day = 24.0 / dt_hours
    if abs(steps_per_day - round(steps_per_day)) > 1e-9:
        raise ValueError("dt_hours must divide 24 hours")
    spd = int(round(steps_per_day))
    dt = DAY / spd
    n_steps = (days - 1) * spd
    glider_stride = max(1, int(round(glider_every_hours * 3600.0 / dt)))

    ss = np.random.SeedSequence(seed)
    rng_init, rng_force, rng_float, rng_noise = (np.random.default_rng(s) for s in ss.spawn(4))

    basin = make_basin(nx, ny, dx, refine)
    wet = basin.fine_mask
    flow = DoubleGyre(basin, peak_speed=peak_speed, period_days=gyre_period_days)
    xf2, yf2 = np.meshgrid(basin.xf, basin.yf)
    m_fine = mean_field(basin, xf2, yf2)
    n_keys = int(math.ceil(max(n_steps, 1) * dt / (forcing_every_days * DAY))) + 2
    forcing = Forcing(random_fields(rng_force, basin, n_keys, lengthscale_km * 1e3),
                      forcing_every_days * DAY, forcing_sd)
    solver = Solver(basin, flow, kappa=kappa, tau=tau_days * DAY, mean=m_fine, forcing=forcing)
    c = m_fine + initial_sd * random_fields(rng_init, basin, 1, lengthscale_km * 1e3)[0]
    c = np.where(wet, c, 0.0)

    # Floats: released uniformly over the wet fine cells, surfacing every 1 or 2 days at a
    # fixed time of day drawn per float.
    jw, iw = np.nonzero(wet)
    pick = rng_float.choice(jw.size, size=n_floats, replace=False)
    h = basin.fdx
    fx = (iw[pick] + rng_float.uniform(0.05, 0.95, n_floats)) * h
    fy = (jw[pick] + rng_float.uniform(0.05, 0.95, n_floats)) * h
    cadence = np.where(rng_float.uniform(size=n_floats) < 2.0 / 3.0, 1, 2) * spd
    first = rng_float.integers(0, cadence)
    float_blocked = 0
    gliders = [np.array(w) * [basin.lx, basin.ly] for w in GLIDER_WAYPOINTS]

    def water(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (x > 0) & (x < basin.lx) & (y > 0) & (y < basin.ly)
        jj = np.clip((y // h).astype(int), 0, basin.fine_shape[0] - 1)
        ii = np.clip((x // h).astype(int), 0, basin.fine_shape[1] - 1)
        return inside & wet[jj, ii]

    rows: list[tuple] = []
    truth = np.full((days, basin.ny, basin.nx), np.nan)
    u_day = np.full_like(truth, np.nan)
    v_day = np.full_like(truth, np.nan)
    max_speed = 0.0

    def record(k: int, c: np.ndarray) -> None:
        t = k * dt
        if k % spd == 0:
            d = k // spd
            truth[d] = np.where(basin.mask, basin.block_mean(c), np.nan)
            uc, vc = centre_velocity(*flow.faces(t))
            u_day[d] = np.where(basin.mask, basin.block_mean(uc), np.nan)
            v_day[d] = np.where(basin.mask, basin.block_mean(vc), np.nan)
        due = (k >= first) & ((k - first) % cadence == 0)
        if due.any():
            vals = solver.sample(c, fx[due], fy[due])
            rows.extend(("float", k, x, y, val, float_error)
                        for x, y, val in zip(fx[due], fy[due], vals, strict=True))
        if k % glider_stride == 0:
            pos = np.array([glider_track(w, 0.3, np.array([t]))[0] for w in gliders])
            vals = solver.sample(c, pos[:, 0], pos[:, 1])
            rows.extend(("glider", k, x, y, val, glider_error)
                        for (x, y), val in zip(pos, vals, strict=True))

    record(0, c)
    for k in range(n_steps):
        t = k * dt
        uf0, vf0 = flow.faces(t)
        max_speed = max(max_speed, float(np.abs(uf0).max()), float(np.abs(vf0).max()))
        # Floats: explicit midpoint through the same face velocities; a step that would end on
        # land or outside the domain is not taken.
        u1, v1 = velocity_at(uf0, vf0, h, fx, fy)
        u2, v2 = velocity_at(*flow.faces(t + 0.5 * dt), h, fx + 0.5 * dt * u1,
                             fy + 0.5 * dt * v1)
        gx, gy = fx + dt * u2, fy + dt * v2
        moved = np.zeros(n_floats, dtype=bool)
        # The full step, else its x or its y part alone (sliding along a coast), else stay.
        for cx, cy in ((gx, gy), (gx, fy), (fx, gy)):
            ok = ~moved & water(cx, cy)
            fx, fy = np.where(ok, cx, fx), np.where(ok, cy, fy)
            moved |= ok
        float_blocked += int((~moved).sum())
        c = solver.step(c, t, dt)
        record(k + 1, c)

    # Observations: noise, then drop any on map land (counted), then write.
    df = pd.DataFrame(rows, columns=["platform", "step", "x", "y", "truth", "error"])
    df = df.sort_values(["step", "platform"], kind="stable").reset_index(drop=True)
    df["value"] = df["truth"] + rng_noise.standard_normal(len(df)) * df["error"]
    keep = basin.in_wet_map_cell(df["x"].to_numpy(), df["y"].to_numpy())
    dropped = df.loc[~keep, "platform"].value_counts().to_dict()
    df = df.loc[keep].reset_index(drop=True)
    times = START + (df["step"].to_numpy() * dt * 1e9).astype("timedelta64[ns]")
    obs = pd.DataFrame({"time": pd.to_datetime(times).strftime("%Y-%m-%dT%H:%M:%S"),
                        "x": df["x"].round(1), "y": df["y"].round(1),
                        "value": df["value"].round(5), "error": df["error"],
                        "platform": df["platform"]})
    paths = {name: out / f"{name}.{ext}" for name, ext in (
        ("truth", "nc"), ("mask", "nc"), ("velocity", "nc"), ("velocity_mean", "nc"),
        ("obs", "csv"), ("config", "yaml"), ("summary", "json"))}
    paths["config"] = out / "twin.yaml"
    obs.to_csv(paths["obs"], index=False)

    # NetCDF files on the map grid.
    tcoord = START + np.arange(days).astype("timedelta64[D]").astype("timedelta64[ns]")
    coords = _coords(basin)
    attrs = {"Conventions": "CF-1.10",
             "title": "independent twin (benchmarks/independent_truth.py)",
             "source": (f"semi-Lagrangian + explicit diffusion, refine {refine}, dt {dt:g} s, "
                        f"kappa {kappa:g} m2/s, tau {tau_days:g} d, seed {seed}")}
    m_map = np.where(basin.mask, basin.block_mean(m_fine), np.nan)
    xr.Dataset(
        {"truth": (("time", "y", "x"), truth,
                   {"units": "degC", "long_name": "true tracer, map-cell block average"}),
         "background": (("y", "x"), m_map,
                        {"units": "degC", "long_name": "relaxation mean field m"})},
        coords={"time": ("time", tcoord), **coords}, attrs=attrs,
    ).to_netcdf(paths["truth"])
    xr.Dataset(
        {"mask": (("y", "x"), basin.mask.astype(np.int8),
                  {"long_name": "water mask (1 on water, 0 on land)",
                   "flag_values": np.array([0, 1], dtype=np.int8),
                   "flag_meanings": "land water"})},
        coords=coords, attrs=attrs).to_netcdf(paths["mask"])
    vel_attrs = ({"units": "m s-1", "long_name": "eastward velocity"},
                 {"units": "m s-1", "long_name": "northward velocity"})
    xr.Dataset({"u": (("time", "y", "x"), u_day, vel_attrs[0]),
                "v": (("time", "y", "x"), v_day, vel_attrs[1])},
               coords={"time": ("time", tcoord), **coords},
               attrs=attrs).to_netcdf(paths["velocity"])
    xr.Dataset({"u": (("y", "x"), u_day.mean(0), vel_attrs[0]),
                "v": (("y", "x"), v_day.mean(0), vel_attrs[1])},
               coords=coords, attrs=attrs).to_netcdf(paths["velocity_mean"])
    _write_config(paths["config"], basin, days, seed, refine)

    anomaly = truth - m_map
    summary = {
        "seed": seed, "refine": refine, "days": days,
        "map_grid": [basin.ny, basin.nx], "wet_map_cells": int(basin.mask.sum()),
        "fine_grid": list(basin.fine_shape), "wet_fine_cells": int(wet.sum()),
        "dt_s": dt, "time_steps": n_steps,
        "observations": {k: int(v) for k, v in obs["platform"].value_counts().items()},
        "observations_total": len(obs),
        "dropped_on_map_land": {k: int(v) for k, v in dropped.items()},
        "float_steps_blocked_by_land": float_blocked,
        "truth_anomaly_sd": float(np.nanstd(anomaly)),
        "truth_anomaly_sd_first_last": [float(np.nanstd(anomaly[0])),
                                        float(np.nanstd(anomaly[-1]))],
        "truth_range": [float(np.nanmin(truth)), float(np.nanmax(truth))],
        "max_face_speed_m_s": max_speed,
        "cfl": max_speed * dt / h,
        "map_velocity_max_m_s": float(np.nanmax(np.hypot(u_day, v_day))),
        "seconds": _time.perf_counter() - t_start,
    }
    paths["summary"].write_text(json.dumps(summary, indent=1))
    if verbose:
        print(format_summary(summary))
    return paths


def format_summary(s: dict) -> str:
    """The summary as printed lines."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["observations"].items()))
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(s["dropped_on_map_land"].items())) or "none"
    return "\n".join([
        f"seed {s['seed']}, refine {s['refine']}, {s['days']} days",
        f"map grid {s['map_grid'][1]} x {s['map_grid'][0]}: {s['wet_map_cells']} wet cells",
        f"fine grid {s['fine_grid'][1]} x {s['fine_grid'][0]}: {s['wet_fine_cells']} wet cells",
        f"time steps {s['time_steps']} of {s['dt_s']:g} s",
        f"observations {s['observations_total']} ({counts}); dropped on map land: {dropped}; "
        f"float steps blocked by land {s['float_steps_blocked_by_land']}",
        f"truth anomaly sd {s['truth_anomaly_sd']:.3f} (day 0 "
        f"{s['truth_anomaly_sd_first_last'][0]:.3f}, last day "
        f"{s['truth_anomaly_sd_first_last'][1]:.3f}); truth range "
        f"{s['truth_range'][0]:.2f} .. {s['truth_range'][1]:.2f} degC",
        f"max face speed {s['max_face_speed_m_s']:.3f} m/s (map-grid max "
        f"{s['map_velocity_max_m_s']:.3f}), CFL {s['cfl']:.3f}",
        f"total time {s['seconds']:.1f} s",
    ])


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refine", type=int, default=3)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dt-hours", type=float, default=1.0)
    parser.add_argument("--peak-speed", type=float, default=0.3,
                        help="largest face speed of the double gyre, m/s")
    parser.add_argument("--forcing-sd", type=float, default=0.08,
                        help="sd of the random forcing, degC/day")
    args = parser.parse_args(argv)
    paths = make_twin(args.out_dir, seed=args.seed, refine=args.refine, days=args.days,
                      dt_hours=args.dt_hours, peak_speed=args.peak_speed,
                      forcing_sd=args.forcing_sd)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return paths


if __name__ == "__main__":
    main()
