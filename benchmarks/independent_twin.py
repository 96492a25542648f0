"""tracerbayes against a space-time GP on a truth that tracerbayes's model did not make.

    python benchmarks/independent_twin.py OUT_DIR [--seed 0] [--set KEY=VALUE ...] [--no-gp]

1. ``benchmarks/independent_truth.py`` writes the twin: a semi-Lagrangian truth on a 3x finer
   grid (non-conserved, time-varying double gyre, coast, cape and island), 5,307 wet 20 km map
   cells, 30 daily maps, drifting floats and gliders, and a ``tracerbayes run`` config with
   the package's defaults.
2. ``tracerbayes run`` maps the observations from that config (in this process, as the CLI
   would; ``--set method.name=letkf`` etc. edits the config first, to compare settings).
3. ``benchmarks/spacetime_gp.py`` fits an exact space-time GP (Matérn-3/2 in space times
   Matérn-3/2 or exponential in time, hyperparameters by marginal likelihood) to the same
   observations and predicts every wet cell at every analysis time.
4. Both are scored against the block-averaged truth on every wet cell and day (the truth is
   never observed as such: observations are noisy point values): RMSE, CRPS and the coverage
   of the central 90% interval. tracerbayes's CRPS is that of the Gaussian with the map's
   mean and sd (posterior.nc keeps mean, sd and quantiles, not the mixture); its coverage
   uses the mixture's own 5% and 95% quantiles.

Prints one table and writes it to ``OUT_DIR/scores.txt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def edit_config(path: Path, settings: list[str]) -> None:
    """Apply ``key.sub=value`` edits (values parsed as YAML) to the config at ``path``."""
    cfg = yaml.safe_load(path.read_text())
    for item in settings:
        key, value = item.split("=", 1)
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def scores(truth: np.ndarray, mean: np.ndarray, sd: np.ndarray, lower: np.ndarray,
           upper: np.ndarray) -> dict[str, float]:
    import tracerbayes as tb

    wet = np.isfinite(truth)
    t, m, s = truth[wet], mean[wet], sd[wet]
    return {"rmse": float(np.sqrt(np.mean((m - t) ** 2))),
            "crps": float(tb.metrics.crps_gaussian(t, m, s)),
            "coverage90": float(np.mean((lower[wet] <= t) & (t <= upper[wet]))),
            "mean_sd": float(np.mean(s))}


def run_tracerbayes(config: Path, out: Path) -> tuple[dict, str, float]:
    from tracerbayes.cli.workflow import run_config
    from tracerbayes.fitting import ConvergenceError

    start = time.perf_counter()
    status = "converged"
    try:
        run_config(str(config), output=str(out), overwrite=True)
    except ConvergenceError as err:
        status = f"NOT CONVERGED: {err}"
    wall = time.perf_counter() - start
    with xr.open_dataset(out / "posterior.nc") as ds:
        maps = {k: ds[k].values for k in ("mean", "sd")}
        q = ds["quantile"].values
        maps["lower"] = ds["quantiles"].values[int(np.argmin(np.abs(q - 0.05)))]
        maps["upper"] = ds["quantiles"].values[int(np.argmin(np.abs(q - 0.95)))]
    return maps, status, wall


def run_gp(obs: pd.DataFrame, truth: xr.DataArray, seed: int) -> tuple[dict, dict, float]:
    from scipy.stats import norm
    from spacetime_gp import fit_spacetime_gp

    start = time.perf_counter()
    gp = fit_spacetime_gp(obs["x"].to_numpy(), obs["y"].to_numpy(),
                          obs["time"].to_numpy(dtype="datetime64[ns]"), obs["value"].to_numpy(),
                          obs["error"].to_numpy(), seed=seed)
    X, Y = np.meshgrid(truth["x"].values, truth["y"].values)
    wet = np.isfinite(truth.values[0])
    shape = truth.shape
    mean = np.full(shape, np.nan)
    sd = np.full(shape, np.nan)
    for k, t in enumerate(truth["time"].values):
        m, s = gp.predict(X[wet], Y[wet], np.full(wet.sum(), t))
        mean[k][wet], sd[k][wet] = m, s
    z = norm.ppf(0.95)
    maps = {"mean": mean, "sd": sd, "lower": mean - z * sd, "upper": mean + z * sd}
    return maps, gp.params, time.perf_counter() - start


def gp_row(truth: np.ndarray, maps: dict, params: dict, wall: float) -> tuple:
    """The GP's row of the table: label, scores against ``truth``, seconds, fitted values."""
    return ("space-time GP (marginal likelihood)", scores(truth, **maps), wall,
            "; ".join(f"{k} {v:.4g}" for k, v in params.items() if isinstance(v, float)))


def table(title: str, rows: list[tuple], width: int = 58) -> list[str]:
    """Lines of the score table: one row per (label, scores, seconds, note), then the CRPS
    ratio of the first row to the second, then the notes."""
    lines = [title, f"{'method':<{width}} {'RMSE':>7} {'CRPS':>7} {'cov90':>6} "
                    f"{'mean sd':>8} {'s':>7}"]
    for label, s, w, _ in rows:
        lines.append(f"{label[:width]:<{width}} {s['rmse']:7.4f} {s['crps']:7.4f} "
                     f"{s['coverage90']:6.3f} {s['mean_sd']:8.4f} {w:7.0f}")
    if len(rows) == 2:
        lines.append(f"CRPS ratio tracerbayes / GP: {rows[0][1]['crps'] / rows[1][1]['crps']:.3f}")
    return lines + [f"  {label[:40]}: {note}" for label, _, _, note in rows]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="edit the generated config (e.g. method.name=letkf)")
    parser.add_argument("--no-gp", action="store_true", help="skip the GP baseline")
    parser.add_argument("--no-twin", action="store_true",
                        help="reuse the twin already in OUT (only the config edits apply)")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from independent_truth import make_twin

    out = args.out
    if not args.no_twin:
        make_twin(out, seed=args.seed)
    config = out / "twin.yaml"
    if args.set:
        config = out / "twin_edited.yaml"
        config.write_text((out / "twin.yaml").read_text())
        edit_config(config, args.set)
    truth = xr.open_dataset(out / "truth.nc")["truth"]
    obs = pd.read_csv(out / "obs.csv", parse_dates=["time"])
    rows = []
    maps, status, wall = run_tracerbayes(config, out / "tracerbayes")
    rows.append(("tracerbayes run " + config.name + (" " + " ".join(args.set) if args.set
                                                     else ""), scores(truth.values, **maps),
                 wall, status))
    if not args.no_gp:
        rows.append(gp_row(truth.values, *run_gp(obs, truth, args.seed)))
    text = "\n".join(table(f"independent twin, seed {args.seed}: "
                           f"{int(np.isfinite(truth.values[0]).sum())} wet cells x "
                           f"{truth.sizes['time']} days, {len(obs)} observations", rows))
    print(text)
    (out / "scores.txt").write_text(text + "\n")
    return {"rows": rows}


if __name__ == "__main__":
    main()
