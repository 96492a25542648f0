"""ArviZ diagnostics after a Laplace fit: on the fitted model against on the map basis.

    python benchmarks/laplace_diagnostics.py [--fit-modes 60] [--map-modes 300] [--draws 20]

A Laplace fit on a coarse basis maps on a finer one. The pointwise LOO terms and the
posterior predictive draws (what ``tracerbayes run`` stores in diagnostics/) are computed on
the fitted model (``Posterior.fit_model``, now) and, side by side in the same process, on the
map basis (the peer: how they were computed before), with the maps for scale. A 40 x 40
Cartesian basin with an island, 20 daily times, ~1,150 observations. Prints a table of wall
times and the ratios.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import pandas as pd

jax.config.update("jax_enable_x64", True)

import tracerbayes as tb  # noqa: E402
from tracerbayes.exact.model import AdvectionDiffusionModel, Priors  # noqa: E402
from tracerbayes.grid.core import Grid  # noqa: E402
from tracerbayes.observations.core import Observations  # noqa: E402
from tracerbayes.posterior.exact import Posterior  # noqa: E402


def problem(seed: int = 0):
    mask = np.ones((40, 40), bool)
    mask[15:20, 10:18] = False
    grid = Grid.cartesian(x=(0, 800e3), y=(0, 800e3), resolution=20e3, mask=mask)
    rng = np.random.default_rng(seed)
    times = np.arange(20) * 86400.0
    rows = []
    for t in times:
        for _ in range(60):
            x, y = rng.uniform(0, 800e3, 2)
            if 200e3 <= x < 360e3 and 300e3 <= y < 400e3:
                continue  # the island
            rows.append({"time": t, "x": x, "y": y, "error": 0.1,
                         "value": np.sin(x / 2e5) + np.cos(y / 3e5) + 0.1 * rng.normal()})
    obs = Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    return grid, obs, times


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-modes", type=int, default=60)
    parser.add_argument("--map-modes", type=int, default=300)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    grid, obs, times = problem()
    model = AdvectionDiffusionModel(grid, priors=Priors.for_observations(obs, grid),
                                    n_modes=args.fit_modes, conserved=False)
    post = tb.fit(model, obs, times, method=tb.Laplace(map_modes=args.map_modes,
                                                       map_draws=args.draws), progress=False)
    peer = Posterior(post.model, post.obs, post.times, post.data, post.samples, {},
                     "laplace", post.settings)  # no fit_model: everything on the map basis
    peer.offset = post.offset
    key = jax.random.key(0)
    rows = [("maps (map basis, both)", timed(lambda: post.maps(n_draws=args.draws)), None)]
    for name, f_now, f_peer in (
            ("LOO terms", post.pointwise_log_likelihood, peer.pointwise_log_likelihood),
            ("posterior predictive", lambda: post.posterior_predictive(key),
             lambda: peer.posterior_predictive(key))):
        now, before = timed(f_now), timed(f_peer)
        rows.append((f"{name}: fitted model / map basis", now, before))
    print(f"{grid.n_wet} wet cells, {len(times)} times, {len(obs.value)} observations; "
          f"fit on {post.fit_model.n_modes} modes, maps on {post.model.n_modes}, "
          f"{args.draws} draws")
    print(f"{'step':45s} {'now s':>8s} {'before s':>9s} {'ratio':>6s}")
    for name, now, before in rows:
        if before is None:
            print(f"{name:45s} {now:8.1f}")
        else:
            print(f"{name:45s} {now:8.1f} {before:9.1f} {before / now:6.1f}")


if __name__ == "__main__":
    main()
