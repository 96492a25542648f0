"""Twin experiment for exact inference: NUTS on a 48 x 48 island basin, 30 days, ~1000 obs.

The truth comes from the full-resolution model (all Neumann modes) with known parameters
(tracerbayes.twin.experiment.TRUE_PARAMETERS); the fitted model keeps K modes. Prints a table of
each
parameter's truth, posterior mean, 90% credible interval, whether it covers the truth,
R-hat and bulk ESS; then divergences, the 90% coverage of the maps on held-out truth (all
wet cells at all times not observed), wall time and the time of one log-density gradient.

    python benchmarks/twin_nuts.py [--modes K] [--warmup N] [--samples N] [--chains C]
        [--truth model|full] [--chain-method M] [--devices D] [--workers W]
        [--diagonal-mass]

``--truth model`` (default) draws the truth with the fitted model's own K modes (an identical
twin: every true parameter, error_scale included, is identifiable); ``--truth full`` draws it
at full resolution, so the reduced model meets truncation error (absorbed by error_scale).
``--devices D`` exposes D host devices to XLA (for ``--chain-method parallel``).
``--workers W`` runs the chains in W processes, each pinned to its own CPU core and running
its share of the chains one after another (on a small CPU, XLA's own threading of these
small matrix operations costs more than it gains: one gradient takes ~15 ms pinned to one
core against ~25 ms spread over two), then merges the chains.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

if "--pin" in sys.argv:  # a worker: one CPU core, set before JAX starts its threads
    os.sched_setaffinity(0, {int(sys.argv[sys.argv.index("--pin") + 1])})

if "--devices" in sys.argv:  # must be set before JAX starts
    _n = sys.argv[sys.argv.index("--devices") + 1]
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={_n}")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer.util import initialize_model  # noqa: E402

from tracerbayes.exact.model import AdvectionDiffusionModel, Priors  # noqa: E402
from tracerbayes.fitting import fit  # noqa: E402
from tracerbayes.methods import CHAIN_METHODS, NUTS  # noqa: E402
from tracerbayes.observations.core import Observations  # noqa: E402
from tracerbayes.posterior.exact import Posterior  # noqa: E402
from tracerbayes.twin import experiment as twin  # noqa: E402


def gradient_time(model, data, repeats=20):
    info = initialize_model(jax.random.key(0), lambda: model(data))
    grad = jax.jit(jax.grad(info.potential_fn))
    x = info.param_info.z
    jax.block_until_ready(grad(x))
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(grad(x))
    return (time.perf_counter() - t0) / repeats


def nuts(args) -> NUTS:
    """The NUTS settings of the command line (always NUTS: ``fit``'s default is ``auto``)."""
    return NUTS(num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                chain_method=args.chain_method, dense_mass=args.dense_mass,
                target_accept=args.target_accept)


def run_workers(args, model, obs, exp, data) -> Posterior:
    """Chains split over ``args.workers`` pinned processes (seeds seed*100 + i), merged."""
    if args.chains % args.workers:
        raise SystemExit("--chains must be a multiple of --workers")
    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        procs, files = [], []
        for i in range(args.workers):
            files.append(os.path.join(tmp, f"worker{i}.npz"))
            cmd = [sys.executable, __file__, "--modes", str(args.modes), "--warmup",
                   str(args.warmup), "--samples", str(args.samples), "--chains",
                   str(args.chains // args.workers), "--seed", str(args.seed * 100 + i),
                   "--truth", args.truth, "--chain-method", "sequential",
                   "--pin", str(cores[i % len(cores)]), "--save", files[-1],
                   "--target-accept", str(args.target_accept),
                   "--twin-seed", str(args.seed)]
            if not args.dense_mass:
                cmd.append("--diagonal-mass")
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        for proc in procs:
            if proc.wait():
                raise SystemExit("a worker failed")
        parts = [np.load(f) for f in files]
        samples = {k.split("/", 1)[1]: np.concatenate([p[k] for p in parts])
                   for k in parts[0].files if k.startswith("samples/")}
        stats = {k.split("/", 1)[1]: np.concatenate([p[k] for p in parts])
                 for k in parts[0].files if k.startswith("stats/")}
    return Posterior(model, obs, exp.times, data, samples, stats, "nuts",
                     {"num_chains": args.chains, "workers": args.workers})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--twin-seed", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--truth", choices=("model", "full"), default="model")
    ap.add_argument("--chain-method", choices=CHAIN_METHODS, default="auto")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--diagonal-mass", dest="dense_mass", action="store_false")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--target-accept", type=float, default=0.9)
    ap.add_argument("--pin", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    t0 = time.perf_counter()
    twin_seed = args.seed if args.twin_seed is None else args.twin_seed
    exp = twin.island_twin(jax.random.key(twin_seed),
                           truth_modes=args.modes if args.truth == "model" else None)
    obs = Observations.from_dataframe(exp.observations, x="x", y="y", platform="platform")
    print(f"truth: {args.truth}; chain method {args.chain_method}; "
          f"{jax.local_device_count()} device(s); dense mass {args.dense_mass}; "
          f"target acceptance {args.target_accept}")
    print(f"twin: {exp.grid}, {len(obs)} observations, built in {time.perf_counter() - t0:.1f} s")
    model = AdvectionDiffusionModel(exp.grid, exp.velocity, Priors.for_observations(obs),
                                    n_modes=args.modes)
    data = model.prepare(obs, exp.times)
    t_grad = gradient_time(model, data)
    print(f"one log-density gradient (K={args.modes}): {1e3 * t_grad:.1f} ms")

    t0 = time.perf_counter()
    if args.save is not None:  # worker: sample, save, stop
        post = fit(model, obs, exp.times, nuts(args), seed=args.seed, progress=False)
        np.savez(args.save, **{f"samples/{k}": v for k, v in post.samples.items()},
                 **{f"stats/{k}": v for k, v in post.sample_stats.items()})
        return
    if args.workers > 1:
        post = run_workers(args, model, obs, exp, data)
    else:
        post = fit(model, obs, exp.times, nuts(args), seed=args.seed, progress=False)
    wall = time.perf_counter() - t0

    idata = az.from_dict(posterior=post.samples)
    rhat, ess = az.rhat(idata), az.ess(idata, method="bulk")
    print(f"\n{'parameter':<24}{'truth':>9}{'mean':>10}{'5%':>10}{'95%':>10}{'in 90%':>8}"
          f"{'R-hat':>8}{'ESS':>8}")
    for name, value in exp.parameters.items():
        draws = post.samples[name].ravel()
        lo, hi = np.quantile(draws, [0.05, 0.95])
        print(f"{name:<24}{value:>9.3g}{draws.mean():>10.3g}{lo:>10.3g}{hi:>10.3g}"
              f"{str(bool(lo <= value <= hi)):>8}{float(rhat[name]):>8.3f}{float(ess[name]):>8.0f}")
    divergences = int(np.sum(post.sample_stats["diverging"]))
    steps = post.sample_stats["num_steps"]

    t1 = time.perf_counter()
    maps = post.maps(n_draws=100)
    t_maps = time.perf_counter() - t1
    lo = maps["quantiles"].sel(quantile=0.05).values
    hi = maps["quantiles"].sel(quantile=0.95).values
    truth = exp.grid.to_field(exp.states)
    observed = obs.prepare(exp.grid, exp.times).observed_cells(exp.grid)
    held = np.isfinite(truth) & ~observed
    coverage = float(np.mean((truth[held] >= lo[held]) & (truth[held] <= hi[held])))
    rmse = float(np.sqrt(np.mean((maps["mean"].values[held] - truth[held]) ** 2)))
    print(f"\ndivergences: {divergences}; leapfrog steps per draw: mean {steps.mean():.1f}, "
          f"max {steps.max()}")
    print(f"map 90% interval coverage of held-out truth: {100 * coverage:.1f}% "
          f"({held.sum()} cell-times); map RMSE {rmse:.3f}")
    print(f"NUTS wall time ({args.chains} chains x ({args.warmup} + {args.samples})): "
          f"{wall:.0f} s; maps from 100 draws: {t_maps:.0f} s")


if __name__ == "__main__":
    main()
