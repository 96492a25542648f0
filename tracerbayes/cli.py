"""Command line: ``tracerbayes demo [-o DIR] [--seed N] [--quiet]``.

Exit codes: 0 on success; 1 with a one-line reason on stderr when the run fails; 2 for a
usage error (from argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tracerbayes.files import atomic_path

__all__ = ["main"]


def _enable_float64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _demo(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from tracerbayes import scenarios
    from tracerbayes.observations import Observations

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
    say(f"  wrote {out / 'truth.nc'} and {out / 'observations.csv'}")
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
