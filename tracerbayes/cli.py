"""Command line: ``tracerbayes demo|run CONFIG|validate CONFIG [-o DIR] [--seed N] [--quiet]``.

Exit codes: 0 on success; 1 with a one-line reason on stderr when the run fails; 2 for a
usage error (from argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from tracerbayes.files import atomic_path

__all__ = ["main"]

# The demo's fit: sized to run in a few minutes on two CPU cores.
DEMO_MODES = 60
DEMO_CHAINS = 2
DEMO_WARMUP = 150
DEMO_SAMPLES = 150


def _enable_float64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _demo(args: argparse.Namespace) -> int:
    import jax
    import numpy as np
    import numpyro.distributions as dist

    from tracerbayes import metrics, scenarios
    from tracerbayes.inference import fit
    from tracerbayes.model import AdvectionDiffusionModel, GivenVelocity, Priors
    from tracerbayes.observations import Observations
    from tracerbayes.workflow import TracerInfo, write_outputs

    out = Path(args.output)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say("tracerbayes demo: building the Canary Basin SST twin experiment (offline) ...")
    scenario = scenarios.canary_sst(jax.random.key(args.seed))
    say(scenario.description)
    obs = Observations.from_dataframe(scenario.observations, platform="platform")
    prepared = obs.prepare(scenario.grid, scenario.times)
    totals = scenario.truth["total"].values
    drift = float(np.max(np.abs(totals - totals[0])) / abs(totals[0]))
    with atomic_path(out / "truth.nc") as tmp:
        scenario.truth.to_netcdf(tmp)
    with atomic_path(out / "observations.csv") as tmp:
        scenario.observations.to_csv(tmp, index=False)
    say(f"  observations accepted on the grid: {len(prepared.value)} of {len(obs)}")
    say(f"  relative drift of the truth's total over {len(totals)} days: {drift:.1e}")

    # The known current (its strength uncertain) and unknown mixing, noise and first map.
    velocity = GivenVelocity(scenario.velocity, scale_prior=dist.LogNormal(0.0, 0.5))
    model = AdvectionDiffusionModel(scenario.grid, velocity, Priors.for_observations(obs),
                                    n_modes=DEMO_MODES)
    say(f"  NUTS: {DEMO_CHAINS} chains x ({DEMO_WARMUP} warm-up + {DEMO_SAMPLES} draws), "
        f"{DEMO_MODES} Neumann modes, state integrated out by the Kalman filter ...")
    with warnings.catch_warnings():  # demo-sized runs: diagnostics are printed below
        warnings.simplefilter("ignore", UserWarning)
        post = fit(model, obs, scenario.times, num_warmup=DEMO_WARMUP,
                   num_samples=DEMO_SAMPLES, num_chains=DEMO_CHAINS, seed=args.seed,
                   progress=not args.quiet)
    table = post.parameter_table()
    say("  posterior of the parameters (mean [5%, 95%]); truth: diffusivity "
        f"{scenario.diffusivity:g} m^2/s, velocity_scale 1")
    for name, row in table.iterrows():
        say(f"    {name:<24}{row['mean']:>10.4g}  [{row['q5']:.4g}, {row['q95']:.4g}]")
    for message in post.check_diagnostics():
        say(f"  note: {message}")
    tracer = TracerInfo("sst", "sea surface temperature", "degC", "sea_surface_temperature")
    result = write_outputs(post, out, tracer, title="tracerbayes demo: Canary Basin SST twin",
                           n_draws=50, say=say)
    maps = result["maps"]
    truth = scenario.truth["sst"].transpose("time", *scenario.grid.dims)
    held = truth.where(~prepared.observed_cells(scenario.grid))
    mean = maps["mean"].values
    rmse = float(metrics.rmse(held.values, mean))
    crps = float(metrics.crps_gaussian(held.values, mean, maps["sd"].values))
    q = maps["quantiles"]
    cover = float(metrics.coverage_interval(held.values, q.sel(quantile=0.05).values,
                                            q.sel(quantile=0.95).values))
    spread = float(np.nanstd(held.values))
    say(f"  map against the held-out truth ({int(np.isfinite(held.values).sum())} unobserved "
        f"cell-times): RMSE {rmse:.3f} degC (truth sd {spread:.2f}), CRPS {crps:.3f} degC, "
        f"90% interval coverage {100 * cover:.1f}%")
    say(f"  outputs in {out}: posterior.nc, maps/ ({len(list((out / 'maps').iterdir()))} "
        "figures), diagnostics/, truth.nc, observations.csv")
    return 0


def _run(args: argparse.Namespace) -> int:
    from tracerbayes.workflow import run_config

    run_config(args.config, output=args.output, seed=args.seed, quiet=args.quiet)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from tracerbayes.config import validate_config

    problems = validate_config(args.config)
    if problems:
        for problem in problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.config}: OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracerbayes",
                                     description="Bayesian maps of ocean tracers.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded offline demo")
    demo.add_argument("-o", "--output", default="tracerbayes_demo", help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    demo.set_defaults(func=_demo)
    run = sub.add_parser("run", help="fit the model of a config file and write its outputs")
    run.add_argument("config", help="YAML configuration (see docs/configuration.md)")
    run.add_argument("-o", "--output", default=None, help="output folder (overrides config)")
    run.add_argument("--seed", type=int, default=None, help="sampler seed (overrides config)")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.set_defaults(func=_run)
    validate = sub.add_parser("validate", help="check a config and its inputs; run nothing")
    validate.add_argument("config", help="YAML configuration")
    validate.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tracerbayes`` command."""
    args = build_parser().parse_args(argv)
    _enable_float64()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("tracerbayes: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for scripts; the traceback with TRACERBAYES_DEBUG
        if os.environ.get("TRACERBAYES_DEBUG"):
            raise
        print(f"tracerbayes: error: {type(err).__name__}: {err}".splitlines()[0],
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
