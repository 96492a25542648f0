"""Reduced-basis filter against the full-grid filter: how the cost grows with N, K and T.

Times one log-likelihood plus its gradient with respect to every physical parameter (what
NUTS needs per leapfrog step) for the island-basin tracer model of ``tracerbayes.twin.experiment``:

* grid size: square basins of n x n cells (N wet cells), the full-grid filter (K = N: every
  Neumann mode, which tests/test_model.py shows equals the grid-space filter to 1e-13) side
  by side with the reduced filter at K = 40 on the same observations;
* K at a fixed grid; T at fixed K.

Each row prints the median over repeats and the ratio full / reduced. Expected: the full
filter grows like N^3 per time step (dense N x N covariances), the reduced one like K^3 + m K^2
(m observations per time) whatever the grid, and both linearly in T.

    python benchmarks/kalman_scaling.py [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import pandas as pd  # noqa: E402

from tracerbayes.exact.model import DAY, AdvectionDiffusionModel, GivenVelocity, Priors  # noqa: E402
from tracerbayes.grid.core import Grid  # noqa: E402
from tracerbayes.observations.core import Observations  # noqa: E402
from tracerbayes.twin.experiment import TRUE_PARAMETERS, gyre_velocity  # noqa: E402


def basin(n: int) -> Grid:
    mask = np.ones((n, n), dtype=bool)
    mask[n // 2: n // 2 + max(1, n // 8), n // 3: n // 3 + max(1, n // 8)] = False  # island
    return Grid.cartesian(x=(0.0, n * 1e4), y=(0.0, n * 1e4), resolution=1e4, mask=mask)


def observations(grid: Grid, n_times: int, per_time: int, seed: int = 0) -> Observations:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    wet_x, wet_y = xx[grid.mask], yy[grid.mask]
    rows = []
    for k in range(n_times):
        for i in rng.choice(grid.n_wet, size=min(per_time, grid.n_wet), replace=False):
            rows.append((k * DAY, wet_x[i], wet_y[i], 15.0 + rng.normal(), 0.1))
    df = pd.DataFrame(rows, columns=["time", "x", "y", "value", "error"])
    return Observations.from_dataframe(df, x="x", y="y")


def gradient_time(grid: Grid, n_modes: int, n_times: int, per_time: int, repeats: int) -> float:
    velocity = GivenVelocity(gyre_velocity(grid), scale_prior=dist.LogNormal(0.0, 0.5))
    model = AdvectionDiffusionModel(grid, velocity, Priors(), n_modes=n_modes)
    times = np.arange(n_times) * DAY
    data = model.prepare(observations(grid, n_times, per_time), times)
    params = {k: jnp.asarray(v) for k, v in TRUE_PARAMETERS.items()}

    def log_likelihood(p):
        return model.likelihood(p, data).log_prob(data.values)

    grad = jax.jit(jax.value_and_grad(log_likelihood))
    jax.block_until_ready(grad(params))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(grad(params))
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reduced-modes", type=int, default=40)
    args = ap.parse_args()
    r, k_red = args.repeats, args.reduced_modes

    print(f"log-likelihood + gradient, median of {r}; T = 20 daily times, 30 obs per time\n")
    print(f"{'grid':>8}{'N wet':>8}{'full (K=N) ms':>16}{f'reduced K={k_red} ms':>20}"
          f"{'full/reduced':>14}")
    previous = None
    for n in (8, 12, 16, 20, 24):
        g = basin(n)
        full = gradient_time(g, g.n_wet, 20, 30, r)
        reduced = gradient_time(g, k_red, 20, 30, r)
        print(f"{f'{n}x{n}':>8}{g.n_wet:>8}{1e3 * full:>16.1f}{1e3 * reduced:>20.1f}"
              f"{full / reduced:>14.1f}")
        if previous is not None:
            slope = np.log(full / previous[1]) / np.log(g.n_wet / previous[0])
            print(f"{'':>8}{'':>8}{f'(N^{slope:.1f})':>16}")
        previous = (g.n_wet, full)

    g = basin(48)
    print(f"\nreduced filter on the 48x48 basin (N = {g.n_wet}), T = 20, 30 obs per time")
    print(f"{'K':>8}{'ms':>10}")
    for k in (20, 40, 60, 80, 120, 160):
        print(f"{k:>8}{1e3 * gradient_time(g, k, 20, 30, r):>10.1f}")
    print("\nreduced filter, K = 60, 30 obs per time: cost against T")
    print(f"{'T':>8}{'ms':>10}{'ms per step':>14}")
    for t in (10, 20, 40, 80):
        s = gradient_time(g, 60, t, 30, r)
        print(f"{t:>8}{1e3 * s:>10.1f}{1e3 * s / t:>14.2f}")


if __name__ == "__main__":
    main()
