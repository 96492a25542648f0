"""A million observations: binned into super-observations, prepared, one log-likelihood.

Builds 10^6 random observations of a smooth drifting field (one platform, error 0.1-0.5
tracer units) over a 100 x 60 Cartesian grid of 20 km cells whose wet part is a rectangle (a
land border of 5 cells), at times spread over 30 daily analysis times; bins them with
:meth:`Observations.bin` (one super-observation per wet cell, analysis time and platform);
prepares them for a reduced
:class:`~tracerbayes.exact.model.AdvectionDiffusionModel` (100 modes, ConstantVelocity) and
evaluates the log-likelihood at fixed parameters (twice: the first call includes the JIT
compilation) with the information-form update the filter chooses when a time holds more
rows than the state has entries, and (``--compare-joint``) with the joint update, whose
innovation matrix is m x m per time, as the peer; then the gradient; with ``--fit`` the
whole job, ``tb.fit(..., tb.Laplace())`` and the maps. Prints the wall
seconds of each stage, the peak resident memory and how many super-observations resulted.

Without binning the padded per-time arrays would have 30 x ~34,000 rows and the per-time
operators (T, m_max, K) plus the (T, m_max, 4, K) gather of the basis behind them several
gigabytes; that is the failure of issue 16 item 5.

Run (float64; peak memory also from the shell)::

    /usr/bin/time -v python benchmarks/million_obs.py

Options: ``--n-obs N`` (default 1,000,000), ``--representation-error`` (include the
truncation-error quadrature of the model; off by default). Results on the development
machine: ``benchmarks/results/million_obs.txt``.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # an entry point: it chooses float64

from tracerbayes.exact.kalman import KalmanObservations, kalman_log_likelihood  # noqa: E402
from tracerbayes.exact.model import (  # noqa: E402
    AdvectionDiffusionModel,
    ConstantVelocity,
    Priors,
)
from tracerbayes.grid.core import Grid  # noqa: E402
from tracerbayes.observations.core import Observations  # noqa: E402

DAY = 86400.0  # s
CELL = 20e3  # cell size, m
NX, NY, BORDER = 100, 60, 5  # cells, and the land border around the wet rectangle
N_TIMES = 30
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.1, "noise_lengthscale_km": 200.0,
          "initial_sd": 0.6, "initial_lengthscale_km": 120.0, "error_scale": 1.3,
          "u": 0.12, "v": -0.07, "source_sd": 0.05, "damping_days": 7.0,
          "mean_state_sd": 1.1, "mean_state_lengthscale_km": 300.0}


def grid() -> Grid:
    mask = np.zeros((NY, NX), dtype=bool)
    mask[BORDER:NY - BORDER, BORDER:NX - BORDER] = True
    return Grid.cartesian(x=(0.0, NX * CELL), y=(0.0, NY * CELL), resolution=CELL, mask=mask)


def random_observations(rng: np.random.Generator, n: int) -> Observations:
    """``n`` noisy observations, uniform over the wet rectangle and the 30 analysis days, of
    a smooth field drifting eastward (15 + a 800 x 600 km wave pattern moving 40 km/day)."""
    lo, hi_x, hi_y = BORDER * CELL, (NX - BORDER) * CELL, (NY - BORDER) * CELL
    t = rng.uniform(-0.5 * DAY, (N_TIMES - 0.5) * DAY, n)
    x, y = rng.uniform(lo, hi_x, n), rng.uniform(lo, hi_y, n)
    field = 15.0 + np.sin(2 * np.pi * (x - 40e3 * t / DAY) / 800e3) * np.cos(
        2 * np.pi * y / 600e3)
    error = rng.uniform(0.1, 0.5, n)
    return Observations(time=t, x=x, y=y, value=field + error * rng.normal(size=n),
                        error=error, platform="satellite", coords="cartesian")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-obs", type=int, default=1_000_000)
    parser.add_argument("--representation-error", action="store_true")
    parser.add_argument("--compare-joint", action="store_true",
                        help="also time the joint (m x m innovation) update, the peer")
    parser.add_argument("--fit", action="store_true",
                        help="then fit (method laplace) and compute the maps, end to end")
    args = parser.parse_args()
    rng = np.random.default_rng(16)
    g = grid()
    times = np.arange(N_TIMES) * DAY
    seconds = {}

    start = time.perf_counter()
    obs = random_observations(rng, args.n_obs)
    binned = obs.bin(g, times)
    seconds["read+bin"] = time.perf_counter() - start
    raw_index = obs.assign_times(times)
    raw_rows = N_TIMES * int(np.bincount(raw_index, minlength=N_TIMES).max())

    model = AdvectionDiffusionModel(g, ConstantVelocity(), Priors(), n_modes=100,
                                    representation_error=args.representation_error)
    start = time.perf_counter()
    data = model.prepare(binned.observations, times)
    seconds["prepare"] = time.perf_counter() - start

    def log_likelihood(params, d, update="auto"):
        lik = model.likelihood(params, d)
        padded = KalmanObservations(d.values, lik.operators, lik.variances, lik.valid)
        return kalman_log_likelihood(lik.ssm, padded, update=update)

    value = {}
    for update in ("auto", *(["joint"] if args.compare_joint else [])):
        label = "information form" if update == "auto" else "joint update (peer)"
        once = jax.jit(lambda p, d, u=update: log_likelihood(p, d, u))
        for stage in ("1st, with JIT", "2nd"):
            start = time.perf_counter()
            value[update] = float(once(PARAMS, data))
            seconds[f"log-likelihood, {label} ({stage})"] = time.perf_counter() - start
    gradient = jax.jit(jax.grad(lambda p, d: log_likelihood(p, d)))
    for stage in ("1st, with JIT", "2nd"):
        start = time.perf_counter()
        jax.block_until_ready(gradient(PARAMS, data))
        seconds[f"gradient, information form ({stage})"] = time.perf_counter() - start

    if args.fit:  # the whole job: tb.fit (the Laplace path auto picks here) and the maps
        import tracerbayes as tb

        start = time.perf_counter()
        post = tb.fit(model, binned.observations, times, tb.Laplace(), progress=False)
        seconds["fit (Laplace: mode, Hessian, 20 draws)"] = time.perf_counter() - start
        start = time.perf_counter()
        maps = post.maps(n_draws=20)
        seconds[f"maps ({maps.sizes['time']} times, mean/sd/quantiles)"] = (
            time.perf_counter() - start)
        print(post.parameter_table()[["mean", "sd"]].round(4).to_string())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"{binned.report}")
    print(f"grid {NX} x {NY} ({g.n_wet} wet cells), {N_TIMES} times, {model.n_modes} modes, "
          f"representation error {'on' if args.representation_error else 'off'}")
    print(f"padded rows T x m_max: raw {raw_rows}, binned {data.values.size}")
    print(f"log-likelihood {value['auto']:.10g}" + (
        f" (joint update {value['joint']:.10g}, relative difference "
        f"{abs(value['joint'] - value['auto']) / abs(value['joint']):.1e})"
        if "joint" in value else ""))
    print(f"{'stage':<52}{'wall s':>10}")
    for stage, s in seconds.items():
        print(f"{stage:<52}{s:>10.2f}")
    print(f"{'peak RSS (MiB)':<52}{peak_mib:>10.0f}")


if __name__ == "__main__":
    main()
