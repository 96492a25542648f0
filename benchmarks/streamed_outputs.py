"""Peak memory of writing an ensemble posterior's maps: streamed against all at once.

Two ways of writing the CF-1.10 ``posterior.nc`` of an ensemble posterior (mean, sd and three
Gaussian quantiles on every cell and time):

* ``whole``: the maps of every time assembled in memory, then :func:`~tracerbayes.io.netcdf.
  cf_dataset` and :func:`~tracerbayes.io.netcdf.write_netcdf` (what ``Posterior.to_netcdf``
  and the CLI did before): memory grows with the number of times;
* ``streamed``: :meth:`~tracerbayes.posterior.base.AbstractPosterior.write_maps`, which
  creates the file with its metadata and the full time dimension, then computes and writes
  ``--chunk-times`` times at a time (:class:`~tracerbayes.io.netcdf.MapWriter`).

Headline: a 256 x 256 lon/lat grid (an island of land; 57,352 wet cells), 30, 90 and 180
daily times, 40 members. A 256^2 x 90-day LETKF run takes ~20 minutes of cycling on the shared
2-core box (``letkf_scale.py``: 12 s per cycle) and its smoothed members alone are
90 x 40 x 57,352 doubles (1.5 GiB), so the headline writes the maps of a **synthetic
smoothed ensemble** of that size: an :class:`EnsemblePosterior` whose members are drawn per
time from a seeded generator when a chunk of times is read (``members[start:stop]``), so that
neither way holds all members and the table measures the writer alone. Both ways see the same
members; the files are compared (largest relative difference of mean, sd and quantiles).

Then a **real run**, small: ``tracerbayes.fit`` with the ETKF (24 members) on a 48 x 48
Cartesian basin, 30 and 90 daily times; peak memory before writing (the fit) and after
(``to_netcdf`` or ``write_maps``), and the difference of the two files.

Each configuration runs in its own subprocess; its peak resident memory is
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, and ``base`` is that peak just before the
maps are written (imports, grid, fit), so ``peak - base`` is what writing added.

    python benchmarks/streamed_outputs.py                 # the table of the docs
    python benchmarks/streamed_outputs.py --n 64 --days 5 10 --no-real   # a quick look

The streamed writer holds one chunk: the members of ``--chunk-times`` times (4 x 40 x 57,352
doubles, 70 MiB, and the temporaries of their sd) and that chunk's maps; NetCDF's chunk cache
is one chunk per variable (netCDF-C's default, 64 MiB per variable, would fill with written
chunks as the times go by).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

DAY = 86400.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class SyntheticMembers:
    """Smoothed members (T, N_e, n_wet) made on demand: time ``t``'s members are a smooth
    field plus N(0, 0.3^2) noise from ``default_rng((seed, t))``, so any slice of times is
    the same whoever reads it."""

    def __init__(self, grid, n_times: int, n_members: int, seed: int = 0):
        self.shape = (n_times, n_members, grid.n_wet)
        lon, lat = np.meshgrid(grid.x, grid.y)
        self._field = (15 + 3 * np.sin(np.radians(4 * lon)) * np.cos(np.radians(6 * lat))
                       )[grid.mask]
        self._seed = seed

    def __getitem__(self, times: slice) -> np.ndarray:
        indices = range(*times.indices(self.shape[0]))
        out = np.empty((len(indices), *self.shape[1:]))
        for j, t in enumerate(indices):
            noise = np.random.default_rng((self._seed, t)).normal(0, 0.3, self.shape[1:])
            out[j] = self._field + 0.01 * t + noise
        return out


def synthetic_posterior(n: int, days: int, n_members: int):
    import tracerbayes as tb
    from tracerbayes.posterior.ensemble import EnsemblePosterior

    lon, lat = np.linspace(-30, -10, n), np.linspace(20, 40, n)
    mask = (lon[None] + 20) ** 2 + (lat[:, None] - 30) ** 2 > 4.0**2  # an island
    grid = tb.Grid.regular(lon=(-30, -10), lat=(20, 40), resolution=20 / n, mask=mask)
    members = SyntheticMembers(grid, days, n_members)
    return EnsemblePosterior(SimpleNamespace(grid=grid), SimpleNamespace(units="degC"),
                             np.arange(days) * DAY, None, {"noise_sd": np.array([[0.05]])},
                             "letkf", {}, members, None, {"smoothed": 0.0}, None)


def real_posterior(n: int, days: int, n_members: int):
    import pandas as pd

    import tracerbayes as tb
    from tracerbayes import physics
    from tracerbayes.exact.model import AdvectionDiffusionModel, GivenVelocity, Priors

    rng = np.random.default_rng(0)
    grid = tb.Grid.cartesian(x=(0.0, n * 10e3), y=(0.0, n * 10e3), resolution=10e3,
                             mask=np.ones((n, n), bool))
    cx, cy = physics.corner_coordinates(grid)
    psi = 2e3 * np.sin(np.pi * cx / cx.max()) * np.sin(np.pi * cy / cy.max())
    velocity = physics.velocity_from_streamfunction(grid, psi)
    rows = [{"time": k * DAY, "x": rng.uniform(0, n * 10e3), "y": rng.uniform(0, n * 10e3),
             "value": 10 + rng.normal(), "error": 0.3} for k in range(days) for _ in range(20)]
    obs = tb.Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y", units="degC")
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=16)
    return tb.fit(model, obs, np.arange(days) * DAY,
                  tb.ETKF(ensemble_size=n_members, parameters="prior"), progress=False)


def write_whole(post, path: Path, chunk_times: int) -> None:
    """All maps in memory, then one CF dataset and one write (``to_netcdf``'s way; the
    synthetic members are read chunk by chunk here too, so only the writer differs)."""
    from tracerbayes.io.netcdf import cf_dataset, write_netcdf

    if isinstance(post.members, np.ndarray):
        post.to_netcdf(path, units="degC", history="benchmark")
        return
    chunks = [fields for _, fields in post.map_chunks(chunk_times=chunk_times)]
    maps = post.map_layout()
    for name in ("mean", "sd", "quantiles"):
        axis = maps[name].dims.index("time")
        maps[name] = (maps[name].dims, np.concatenate([c[name] for c in chunks], axis=axis),
                      maps[name].attrs)
    del chunks
    write_netcdf(cf_dataset(maps, units="degC", method=post.method, history="benchmark",
                            parameter_summary=post.parameter_table()), path)


def worker(spec: dict) -> dict:
    if "compare" in spec:
        return {"max_rel_diff": max_relative_difference(*map(Path, spec["compare"]))}
    make = real_posterior if spec["kind"] == "real" else synthetic_posterior
    post = make(spec["n"], spec["days"], spec["members"])
    base = _peak_mib()
    start = time.perf_counter()
    if spec["mode"] == "streamed":
        post.write_maps(spec["path"], chunk_times=spec["chunk_times"], units="degC",
                        history="benchmark")
    else:
        write_whole(post, Path(spec["path"]), spec["chunk_times"])
    return {"base": base, "peak": _peak_mib(), "seconds": time.perf_counter() - start,
            "cells": int(post.model.grid.n_wet),
            "MiB_maps": 5 * spec["days"] * post.model.grid.mask.size * 8 / 2**20,
            "MiB_file": Path(spec["path"]).stat().st_size
            / 2**20}


def run(spec: dict) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "JAX_ENABLE_X64": "1"}
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{spec}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def max_relative_difference(a: Path, b: Path) -> float:
    """Largest difference of mean, sd and quantiles over the largest value (in a subprocess
    of its own: a child's ``ru_maxrss`` starts from its parent's resident size at the fork,
    so the parent stays small)."""
    import xarray as xr

    worst = 0.0
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        for name in ("mean", "sd", "quantiles"):
            for t in range(0, x.sizes["time"], 10):
                u = x[name].isel(time=slice(t, t + 10)).values
                v = y[name].isel(time=slice(t, t + 10)).values
                scale = np.nanmax(np.abs(v))
                worst = max(worst, float(np.nanmax(np.abs(u - v)) / scale))
    return worst


def table(kind: str, n: int, days: list[int], members: int, chunk_times: int,
          say) -> None:
    say(f"{kind}: {n}^2 grid, {members} members, chunk_times {chunk_times}")
    say(f"{'days':>5} {'mode':>9} {'cells':>7} {'maps MiB':>9} {'file MiB':>9} "
        f"{'base MiB':>9} {'peak MiB':>9} {'peak-base':>9} {'write s':>8} {'max rel diff':>12}")
    with tempfile.TemporaryDirectory(prefix="streamed_outputs-") as folder:
        for n_days in days:
            rows = {}
            for mode in ("whole", "streamed"):
                path = str(Path(folder) / f"{kind}-{n_days}-{mode}.nc")
                rows[mode] = run({"kind": kind, "n": n, "days": n_days, "members": members,
                                  "mode": mode, "chunk_times": chunk_times, "path": path})
            diff = run({"compare": [str(Path(folder) / f"{kind}-{n_days}-{mode}.nc")
                                    for mode in ("whole", "streamed")]})["max_rel_diff"]
            for mode, r in rows.items():
                say(f"{n_days:>5} {mode:>9} {r['cells']:>7} {r['MiB_maps']:>9.1f} "
                    f"{r['MiB_file']:>9.1f} {r['base']:>9.0f} {r['peak']:>9.0f} "
                    f"{r['peak'] - r['base']:>9.0f} {r['seconds']:>8.1f}"
                    + (f" {diff:>12.1e}" if mode == "streamed" else ""))
            for file in Path(folder).iterdir():
                file.unlink()
    say("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=256, help="synthetic grid side (256)")
    parser.add_argument("--days", type=int, nargs="+", default=[30, 90, 180],
                        help="synthetic run's numbers of days (30 90 180)")
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--chunk-times", type=int, default=4)
    parser.add_argument("--real-n", type=int, default=48, help="real run's grid side (48)")
    parser.add_argument("--real-days", type=int, nargs="+", default=[30, 90])
    parser.add_argument("--no-real", action="store_true", help="skip the real ETKF run")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    if args.worker:
        import jax

        jax.config.update("jax_enable_x64", True)
        print(json.dumps(worker(json.loads(args.worker))))
        return
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    say(f"# $ python benchmarks/streamed_outputs.py {' '.join(sys.argv[1:])}")
    say(f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {os.cpu_count()} CPUs, load "
        f"average {load} at start; peak = ru_maxrss of the configuration's own subprocess, "
        "base = that peak just before writing")
    table("synthetic", args.n, args.days, args.members, args.chunk_times, say)
    if not args.no_real:
        table("real", args.real_n, args.real_days, 24, args.chunk_times, say)
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
