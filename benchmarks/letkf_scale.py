"""Mass-safe LETKF at scale: time per cycle and peak memory, and how the cost grows.

The tracer model of :mod:`tracerbayes.ensemble.tracer` on
:func:`tracerbayes.twin.experiment.coastal_grid`
(a 640 km square coastal sea with a cape and an island; ``n`` x ``n`` cells of ``640 / n`` km),
advected by :func:`tracerbayes.twin.experiment.eddy_velocity` (max 0.3 m/s), diffusivity 200 m^2/s,
mass-free model noise 0.05 per sqrt(day) with a 20 km correlation length, daily cycles.
A truth is drawn once from the same model (one member of the same transition), sampled by
profiling floats (:class:`tracerbayes.twin.simulate.Floats`, each surfacing every 3 days, error
0.1), and assimilated by the mass-safe LETKF (Gaspari-Cohn half-width 30 km, Euclidean
distances in metres) with mass-free multiplicative inflation 1.05, through
:func:`tracerbayes.ensemble.cycle.run_cycle`. The local analyses are solved on nodes every
``--stride`` cells (default 4, i.e. 10 km at 256^2 against a 30 km half-width) and their
transforms interpolated bilinearly (weight interpolation, Yang et al. 2009,
:func:`tracerbayes.ensemble.tracer.weight_nodes`); the last table compares strides 1 (the
plain LETKF, every wet cell), 2, 4 and 8 on the same truth, observations and random numbers.

Every configuration runs in its own subprocess, so that its peak resident memory
(``ru_maxrss``) is its own. Times exclude compilation: the first cycle (the warm-up) compiles
and is not timed; the next ``cycles`` are run one ``run_cycle`` call each (same function
objects and shapes, so no recompilation) and timed. The split is measured on the side: the
analysis alone (compiled ahead, one call, ``jax.block_until_ready``); forecast = cycle -
analysis. RMSEs are of the ensemble mean against the truth over the wet cells, averaged over
the timed cycles: prior (forecast) and analysis.

Rows: the headline (default 256 x 256, N_e = 64, ~330 observations per cycle), then the
scaling rows (cells at fixed N_e and observation count; observations and ensemble size on
128 x 128), each with the fitted exponent of time per cycle against the varied quantity.

    python benchmarks/letkf_scale.py                      # headline + scaling rows
    python benchmarks/letkf_scale.py --quick              # tiny smoke run (minutes: compilation)
    python benchmarks/letkf_scale.py --cycles 5 --no-scaling
    python benchmarks/letkf_scale.py --n 1024 --cycles 5 --no-scaling --batch-size 4096
    python benchmarks/letkf_scale.py --no-headline --no-scaling --compare --cycles 3

``--compare`` runs the ``--n`` case three times on the same truth (always moved by the
reference scheme), observations and seeds: the scheme before issue 17 (reference forecast,
dense local analyses: every local problem solved with all observations,
``letkf(..., compact=False)``, node transforms interpolated 256 cells at a time), the
reference forecast with the compact local analyses (only the observations of non-zero weight,
the default, and cache-sized interpolation batches; the same numbers to round-off), and the fast
forecast (``tracer_transition(..., scheme="fast")``) with the compact analyses; it prints the
rows with one forecast timed alone and the ratios against the old scheme. ``--forecast fast``
and ``--analysis dense`` run the other tables with the fast forecast or the dense analysis.

On a GPU (install ``jax[cuda12]`` in the venv), the last line is the 1024 x 1024 run. There
pass ``--batch-size`` (e.g. 1024-8192): with the default (``None``) the LETKF's ``lax.map``
solves the ~10^6 local problems one after another, which a GPU does badly; on CPU the default
is fastest (measured: batching only adds memory). Peak memory is then host memory; read the
GPU's with ``nvidia-smi`` or ``XLA_PYTHON_CLIENT_ALLOCATOR=platform``. The forecast's cost
grows like cells x (noise length / cell size): the noise smoother is a Chebyshev series of the
heat kernel (:func:`tracerbayes.physics.operator.heat_kernel`, ~85 operator applications at 256^2
and
a 20 km noise length); the advection's Heun sub-steps grow like the cells per side. Time one
cycle first (``--cycles 1``).

On CPU the script sets ``OPENBLAS_NUM_THREADS=1`` before JAX loads (override it in the
environment): the LETKF solves tens of thousands of 64 x 64 eigenproblems through LAPACK, and a
multi-threaded OpenBLAS made each ~10 times slower on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DAY = 86400.0  # s
DOMAIN = 640e3  # m, side of the square domain
RADIUS = 30e3  # m, Gaspari-Cohn half-width
INFLATION = 1.05
NOISE_LENGTH = 20e3  # m
NOISE_SD = 0.05  # tracer units per sqrt(day)
DIFFUSIVITY = 200.0  # m^2/s
FLOAT_EVERY = 3  # days between surfacings
FLOAT_ERROR = 0.1  # tracer units


def worker(n: int, members: int, per_cycle: int, cycles: int, batch_size: int | None,
           seed: int, stride: int = 1, forecast: str = "reference",
           local_solve: str = "compact") -> dict:
    """Run one configuration (in this process) and return its measurements."""
    import resource

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import pandas as pd

    from tracerbayes.ensemble.cycle import ObsAtTime, letkf_analysis, run_cycle
    from tracerbayes.ensemble.inflation import mass_free_multiplicative
    from tracerbayes.ensemble.localisation import euclidean
    from tracerbayes.ensemble.tracer import (
        noise_field,
        sample_noise,
        state_coordinates,
        stencil_observations,
        tracer_transition,
        weight_nodes,
    )
    from tracerbayes.observations.core import Observations
    from tracerbayes.twin.experiment import coastal_grid, eddy_velocity
    from tracerbayes.twin.simulate import Floats, interpolate

    t_setup = time.perf_counter()
    k_vel, k_init, k_truth, k_obs, k_run = jax.random.split(jax.random.key(seed), 5)
    grid = coastal_grid(n, DOMAIN / n)
    area = jnp.asarray(grid.wet_area)
    noise = noise_field(grid, NOISE_LENGTH)
    velocity = eddy_velocity(grid, k_vel)
    # the truth always moves with the reference scheme; the ensemble with ``forecast``
    truth_move = tracer_transition(grid, velocity, DIFFUSIVITY, DAY, noise, NOISE_SD)
    transition = (truth_move if forecast == "reference" else
                  tracer_transition(grid, velocity, DIFFUSIVITY, DAY, noise, NOISE_SD,
                                    scheme=forecast))
    # truth start (mass-free field around 15) and the prior ensemble, drawn in one call: the
    # prior is the truth's law with an uncertain mean level (sd 0.1) and its own fields
    fields = sample_noise(k_init, noise, members + 1, 1.0, mass_free=False)
    level = 0.1 * jax.random.normal(k_truth, (members, 1))
    truth0 = 15.0 + fields[0] - fields[0] @ area / area.sum()
    E0 = 15.0 + level + fields[1:]
    # truth at t_{-1} (the prior's time), then t_0 .. t_{T-1}: one member of the transition
    T = cycles + 1  # the warm-up cycle and the timed ones
    step = jax.jit(truth_move)
    states = [truth0[None]]
    for key in jax.random.split(k_truth, T):
        states.append(step(key, states[-1]))
    truth = np.concatenate([np.asarray(s) for s in states[1:]])  # (T, n_wet)
    times = np.arange(T) * DAY
    floats = Floats(n_floats=FLOAT_EVERY * per_cycle, every=FLOAT_EVERY, error=FLOAT_ERROR,
                    drift=0.03 * DOMAIN)
    rng = np.random.default_rng(seed)
    k, x, y = floats.positions(rng, times, grid)
    values = interpolate(grid, grid.to_field(truth), x, y, time_index=k)
    df = pd.DataFrame({"time": times[k], "x": x, "y": y, "error": FLOAT_ERROR,
                       "value": values + FLOAT_ERROR * rng.standard_normal(values.shape)})
    obs = Observations.from_dataframe(df, x="x", y="y")
    observations = stencil_observations(obs.prepare(grid, times), obs)
    setup_s = time.perf_counter() - t_setup

    nodes = None if stride == 1 else weight_nodes(grid, stride)
    if local_solve == "compact":  # the library's mass-safe LETKF (compact by default)
        analysis = letkf_analysis(state_coordinates(grid), euclidean, RADIUS, cell_area=area,
                                  batch_size=batch_size, basins=noise.basins, nodes=nodes)
    else:
        analysis = dense_letkf_analysis(state_coordinates(grid), area, noise.basins, nodes,
                                        batch_size, members)

    def inflation(key, E):
        return mass_free_multiplicative(E, INFLATION, area, noise.basins)

    def cycle(k, E):
        part = jax.tree.map(lambda a: a[k:k + 1], observations)
        out = run_cycle(jax.random.fold_in(k_run, k), transition, E, part, analysis,
                        inflation=inflation, truth=truth[k:k + 1], cell_area=area,
                        progress=False)
        jax.block_until_ready(out.final)
        return out

    t0 = time.perf_counter()
    out = cycle(0, E0)
    warmup_s = time.perf_counter() - t0
    log(f"setup {setup_s:.1f} s, warm-up cycle (with compilation) {warmup_s:.1f} s")
    E, cycle_s, prior, post, mass = out.final, [], [], [], []
    for k in range(1, T):
        before = np.asarray(E @ area)
        t0 = time.perf_counter()
        out = cycle(k, E)
        cycle_s.append(time.perf_counter() - t0)
        E = out.final
        prior.append(float(out.forecast_rmse[0]))
        post.append(float(out.analysis_rmse[0]))
        # forecast + inflation must keep every member's total (the analysis moves it, as
        # the global ETKF does: the mean level is uncertain)
        mass.append(float(np.max(np.abs(np.asarray(out.forecast_totals[0]) - before)
                                 / np.abs(before))))
        log(f"cycle {k}: {cycle_s[-1]:.1f} s, RMSE prior {prior[-1]:.3f} "
            f"analysis {post[-1]:.3f}")

    # the analysis alone, compiled ahead of time, on the last forecast's shapes
    ob = ObsAtTime(*jax.tree.map(lambda a: a[T - 1], tuple(observations)))

    def analyse(key, E, ob):
        return analysis(key, E, ob, ob.operators.apply)

    compiled = jax.jit(analyse).lower(k_run, E, ob).compile()
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(k_run, E, ob))
    analysis_s = time.perf_counter() - t0
    log(f"analysis alone {analysis_s:.1f} s")
    move = jax.jit(transition).lower(k_run, E).compile()
    jax.block_until_ready(move(k_run, E))
    t0 = time.perf_counter()
    jax.block_until_ready(move(jax.random.fold_in(k_run, T), E))
    forecast_s = time.perf_counter() - t0
    log(f"forecast alone {forecast_s:.1f} s")
    m = np.asarray(observations.valid)[1:].sum(axis=1)
    return dict(n=n, cells=grid.n_wet, members=members, obs=float(m.mean()), cycles=cycles,
                local_solve=local_solve,
                batch_size=batch_size, substeps=transition.substeps, stride=stride,
                nodes=grid.n_wet if nodes is None else len(nodes.coords),
                noise_terms=len(noise.terms), setup_s=setup_s, warmup_s=warmup_s,
                cycle_s=float(np.median(cycle_s)), analysis_s=analysis_s,
                forecast=forecast, forecast_s=forecast_s, stages=transition.stages,
                prior_rmse=float(np.mean(prior)), analysis_rmse=float(np.mean(post)),
                mass_drift=max(mass), peak_mib=resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                backend=jax.default_backend())


def dense_letkf_analysis(state_coords, area, basins, nodes, batch_size, members):
    """The analysis before issue 17: ``letkf_analysis(state_coords, euclidean, RADIUS,
    cell_area=area, basins=basins, nodes=nodes, batch_size=batch_size)`` with every local
    problem solved on all the observations (``letkf(..., compact=False)``; the same steps as
    :func:`tracerbayes.ensemble.localisation.mass_safe_letkf`, which has no ``compact``
    switch) and the node transforms interpolated 256 cells at a time (the old default of
    :func:`tracerbayes.ensemble.analysis.interpolate_transforms`; set here through its module
    constant, in this worker process only). The same numbers as the compact analysis."""
    import jax.numpy as jnp

    from tracerbayes.ensemble import analysis
    from tracerbayes.ensemble.analysis import etkf, letkf
    from tracerbayes.ensemble.localisation import distance_rows, euclidean, restore_totals

    if nodes is not None and batch_size is None:
        analysis.GATHER_ENTRIES = 256 * len(nodes.indices[0]) * members**2
    coords = jnp.asarray(state_coords if nodes is None else nodes.coords)

    def step(key, E, obs, H):
        local = letkf(E, obs.values, H, obs.sd, distances=distance_rows(euclidean, coords,
                                                                         obs.coords),
                      radius=RADIUS, valid=obs.valid, batch_size=batch_size, nodes=nodes,
                      compact=False)
        return restore_totals(local, etkf(E, obs.values, H, obs.sd, valid=obs.valid), area,
                              basins)
    return step


def log(message: str) -> None:
    """Progress of a worker, on stderr (shown while the parent waits)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(n: int, members: int, per_cycle: int, cycles: int, batch_size: int | None,
            seed: int, stride: int = 1, forecast: str = "reference",
            local_solve: str = "compact") -> dict:
    """One configuration in a fresh subprocess (separate peak memory)."""
    spec = json.dumps(dict(n=n, members=members, per_cycle=per_cycle, cycles=cycles,
                           batch_size=batch_size, seed=seed, stride=stride, forecast=forecast,
                           local_solve=local_solve))
    proc = subprocess.run([sys.executable, __file__, "--worker", spec], stdout=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"configuration {spec} failed (its error is printed above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEADER = (f"{'grid':>9}{'cells':>9}{'nodes':>7}{'N_e':>5}{'obs/cyc':>8}{'cyc':>4}{'s/cycle':>9}"
          f"{'forecast':>9}{'analysis':>9}{'peak MiB':>9}{'RMSE prior':>11}{'analysis':>9}"
          f"{'mass drift':>11}")


def row(r: dict) -> str:
    forecast = max(r["cycle_s"] - r["analysis_s"], 0.0)
    grid = f"{r['n']}^2"
    return (f"{grid:>9}{r['cells']:>9}{r['nodes']:>7}{r['members']:>5}{r['obs']:>8.0f}"
            f"{r['cycles']:>4}{r['cycle_s']:>9.2f}{forecast:>9.2f}{r['analysis_s']:>9.2f}"
            f"{r['peak_mib']:>9.0f}{r['prior_rmse']:>11.3f}{r['analysis_rmse']:>9.3f}"
            f"{r['mass_drift']:>11.1e}")


def exponent(rows: list[dict], key: str) -> float:
    """Least-squares slope of log(time per cycle) against log(rows[key])."""
    import numpy as np

    x = np.log([r[key] for r in rows])
    t = np.log([r["cycle_s"] for r in rows])
    return float(np.polyfit(x, t, 1)[0])


COMPARED = (("reference", "dense"), ("reference", "compact"), ("fast", "compact"))


def compare(args) -> None:
    """The scheme before issue 17 (reference forecast, dense analysis) against the compact
    analysis and the fast forecast, on the same truth, observations and random numbers
    (issue 17: the cycle >= 4x cheaper, analysis RMSE within 2%, drift <= 1e-12)."""
    print(f"\nforecast and analysis schemes, {args.n}^2, N_e = {args.members}, ~{args.obs} "
          f"obs/cycle: same truth (moved by the reference scheme), observations and seeds "
          f"({args.cycles} timed cycle(s) each, after the warm-up); 'alone' = one forecast "
          f"compiled and timed alone; the first row is the scheme before issue 17")
    print(f"{'forecast':>10}{'analysis':>9}{'steps x stages':>15}{'alone':>8}" + HEADER[9:],
          flush=True)
    rows = []
    for forecast, analysis in COMPARED:
        r = measure(args.n, args.members, args.obs, args.cycles, args.batch_size, args.seed,
                    args.stride, forecast, analysis)
        rows.append(r)
        print(f"{forecast:>10}{analysis:>9}{r['substeps']:>9} x {r['stages']:<3}"
              f"{r['forecast_s']:>8.2f}" + row(r)[9:], flush=True)
    old = rows[0]
    f_old = old["cycle_s"] - old["analysis_s"]
    for (forecast, analysis), r in zip(COMPARED[1:], rows[1:], strict=True):
        f_new = r["cycle_s"] - r["analysis_s"]  # cycle - analysis: noisy on short cycles
        in_cycle = f"{f_old / f_new:.2f}x" if min(f_old, f_new) > 0 else "n/a (<= 0 s)"
        print(f"  old / ({forecast} forecast, {analysis} analysis): whole cycle "
              f"{old['cycle_s'] / r['cycle_s']:.2f}x, forecast alone "
              f"{old['forecast_s'] / r['forecast_s']:.2f}x, forecast in the cycle "
              f"{in_cycle}, analysis {old['analysis_s'] / r['analysis_s']:.2f}x; "
              f"analysis RMSE {100 * (r['analysis_rmse'] / old['analysis_rmse'] - 1):+.2f}% "
              f"({r['analysis_rmse'] - old['analysis_rmse']:+.1e}), prior RMSE "
              f"{100 * (r['prior_rmse'] / old['prior_rmse'] - 1):+.2f}%; mass drift "
              f"{old['mass_drift']:.1e} -> {r['mass_drift']:.1e}", flush=True)


def scaling(title: str, configs: list[tuple], key: str, cycles: int, args) -> None:
    print(f"\n{title} ({cycles} timed cycle(s) each, after the warm-up)")
    print(HEADER, flush=True)
    rows = []
    for n, members, per_cycle, *stride in configs:
        rows.append(measure(n, members, per_cycle, cycles, args.batch_size, args.seed,
                            stride[0] if stride else args.stride, args.forecast,
                            args.analysis))
        print(row(rows[-1]), flush=True)
    if key:
        print(f"  time per cycle ~ {key}^{exponent(rows, key):.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="headline grid side (cells)")
    ap.add_argument("--members", type=int, default=64, help="headline ensemble size")
    ap.add_argument("--obs", type=int, default=330, help="observations per cycle")
    ap.add_argument("--cycles", type=int, default=30, help="timed cycles of the headline")
    ap.add_argument("--scaling-cycles", type=int, default=1,
                    help="timed cycles of each scaling row")
    ap.add_argument("--stride", type=int, default=4,
                    help="LETKF weight interpolation: local analyses every STRIDE cells "
                         "(1 = every wet cell)")
    ap.add_argument("--strides", type=int, nargs="*", default=[1, 2, 4, 8],
                    help="strides of the weight-interpolation rows (on the --mid grid)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="LETKF local problems solved at a time (lax.map batch_size)")
    ap.add_argument("--mid", type=int, default=128,
                    help="grid side of the observation and ensemble-size rows")
    ap.add_argument("--cells", type=int, nargs="+", default=[64, 128, 256],
                    help="grid sides of the cell-count rows")
    ap.add_argument("--no-headline", action="store_true")
    ap.add_argument("--compare", action="store_true",
                    help="also time the old scheme (reference forecast, dense analysis) "
                         "against the compact analysis and the fast forecast (--n, --cycles)")
    ap.add_argument("--forecast", default="reference", choices=("reference", "fast"),
                    help="forecast scheme of the headline and scaling rows")
    ap.add_argument("--analysis", default="compact", choices=("compact", "dense"),
                    help="LETKF local solves of the headline and scaling rows: on the "
                         "observations of non-zero weight (compact) or on all, with the "
                         "old interpolation batches (dense: the analysis before issue 17)")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke run (2-8 minutes on 2 cores, mostly compilation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(**json.loads(args.worker))))
        return
    if args.quick:
        args.n, args.members, args.obs, args.cycles, args.scaling_cycles = 32, 16, 60, 2, 1
        cells, mid, obs, members = (16, 32), 32, (30, 60), (8, 16)
        args.strides = [1, 2]
    else:
        cells, mid, obs, members = args.cells, args.mid, (100, 330, 1000), (16, 32, 64, 128)
    print(f"mass-safe LETKF, radius {RADIUS / 1e3:.0f} km, inflation {INFLATION} (mass-free), "
          f"{DOMAIN / 1e3:.0f} km coastal sea, daily cycles; weight interpolation every "
          f"{args.stride} cells; batch_size {args.batch_size}; headline and scaling rows: "
          f"{args.forecast} forecast, {args.analysis} analysis; "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; load average "
          f"{' '.join(f'{a:.1f}' for a in os.getloadavg())} at start")
    print("times in s (median over timed cycles; analysis timed alone, forecast = cycle - "
          "analysis); RMSE of the mean vs truth over wet cells; mass drift = max relative "
          "change of a member's total through forecast + inflation")
    if not args.no_headline:
        print(f"\nheadline ({args.cycles} timed cycles after a warm-up)")
        print(HEADER, flush=True)
        print(row(measure(args.n, args.members, args.obs, args.cycles, args.batch_size,
                          args.seed, args.stride, args.forecast, args.analysis)), flush=True)
    if args.compare:
        compare(args)
    if not args.no_scaling:
        c = args.scaling_cycles
        scaling(f"cells, N_e = {args.members}, ~{args.obs} obs/cycle",
                [(s, args.members, args.obs) for s in cells], "cells", c, args)
        scaling(f"observations, {mid}^2, N_e = {args.members}",
                [(mid, args.members, m) for m in obs], "obs", c, args)
        scaling(f"ensemble size, {mid}^2, ~{args.obs} obs/cycle",
                [(mid, e, args.obs) for e in members], "members", c, args)
        if args.strides:
            scaling(f"weight interpolation stride (cells between nodes; 1 = plain LETKF), "
                    f"{mid}^2, N_e = {args.members}, ~{args.obs} obs/cycle: same truth, "
                    f"observations and random numbers, so RMSE differences are the "
                    f"interpolation's", [(mid, args.members, args.obs, st)
                                         for st in args.strides], "", c, args)
    print(f"\nload average at end {' '.join(f'{a:.1f}' for a in os.getloadavg())}")


if __name__ == "__main__":
    main()
