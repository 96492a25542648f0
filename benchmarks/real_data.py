"""tracerbayes against a space-time GP on real sea-surface temperature, cells held out.

    python benchmarks/real_data.py OUT_DIR [--fields coads_sst eofs_pacific] [--set K=V ...]
                                   [--kelvin] [--no-gp]

For each real field of ``benchmarks/real_fields.py`` (COADS monthly climatology, North
Atlantic; the eofs Pacific winter anomalies; installable offline, see shared/OFFLINE.md):
5% of the ocean cells at each time become observations with 0.2 degC noise, the rest is held
out. ``tracerbayes run`` maps the observations from the generated config (package defaults,
``--set`` edits them), an exact space-time GP (``benchmarks/spacetime_gp.py``, lon/lat
chordal distance) maps the same observations, and both are scored on the held-out ocean
cells: RMSE, CRPS and 90% interval coverage of the field. ``--kelvin`` repeats the
tracerbayes run with the values in kelvin and reports the largest relative difference of
the two maps (mean and sd, after removing the 273.15 offset from the mean).

Prints a table per field and writes ``OUT_DIR/scores.txt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from independent_twin import (  # noqa: E402
    edit_config,
    gp_row,
    run_tracerbayes,
    scores,
    table,
)


def run_gp(obs: pd.DataFrame, truth: xr.DataArray, seed: int) -> tuple[dict, dict, float]:
    from scipy.stats import norm
    from spacetime_gp import fit_spacetime_gp

    start = time.perf_counter()
    gp = fit_spacetime_gp(obs["lon"].to_numpy(), obs["lat"].to_numpy(),
                          obs["time"].to_numpy(dtype="datetime64[ns]"), obs["value"].to_numpy(),
                          obs["error"].to_numpy(), coords="lonlat", seed=seed)
    lon, lat = np.meshgrid(truth["lon"].values, truth["lat"].values)
    mean = np.full(truth.shape, np.nan)
    sd = np.full(truth.shape, np.nan)
    for k, t in enumerate(truth["time"].values):
        wet = np.isfinite(truth.values[k])
        m, s = gp.predict(lon[wet], lat[wet], np.full(wet.sum(), t))
        mean[k][wet], sd[k][wet] = m, s
    z = norm.ppf(0.95)
    maps = {"mean": mean, "sd": sd, "lower": mean - z * sd, "upper": mean + z * sd}
    return maps, gp.params, time.perf_counter() - start


def edited_copy(config: Path, settings: list[str]) -> Path:
    """``config`` itself, or an edited copy beside it when there are ``settings``."""
    if not settings:
        return config
    edited = config.with_name("config_edited.yaml")
    edited.write_text(config.read_text())
    edit_config(edited, settings)
    return edited


def field_rows(name: str, out: Path, settings: list[str], seed: int, gp: bool,
               kelvin: bool) -> list[str]:
    from real_fields import make_problem

    paths = make_problem(name, None, out / name, seed=seed)
    config = edited_copy(Path(paths["config"]), settings)
    with xr.open_dataset(paths["truth"]) as ds, xr.open_dataset(paths["mask"]) as mk:
        truth = ds["sst"].load()
        held_out = (mk["mask"].values[None] == 1) & ~ds["observed"].values.astype(bool)
    target = np.where(held_out, truth.values, np.nan)
    obs = pd.read_csv(paths["obs"], parse_dates=["time"])
    rows = []
    maps, status, wall = run_tracerbayes(config, out / name / "tracerbayes")
    rows.append(("tracerbayes run " + " ".join(settings), scores(target, **maps), wall, status))
    if kelvin:
        kpaths = make_problem(name, None, out / f"{name}_K", seed=seed, kelvin=True)
        kconfig = edited_copy(Path(kpaths["config"]), settings)
        kmaps, _, _ = run_tracerbayes(kconfig, out / f"{name}_K" / "tracerbayes")
        wet = np.isfinite(maps["mean"])
        diff_mean = np.max(np.abs(kmaps["mean"][wet] - 273.15 - maps["mean"][wet])
                           / np.abs(kmaps["mean"][wet]))
        diff_sd = np.max(np.abs(kmaps["sd"][wet] - maps["sd"][wet]) / maps["sd"][wet])
        status += (f"; kelvin vs degC: largest relative difference of the mean "
                   f"{diff_mean:.1e} (of the kelvin value), of the sd {diff_sd:.1e}")
        rows[0] = (rows[0][0], rows[0][1], rows[0][2], status)
    if gp:
        rows.append(gp_row(target, *run_gp(obs, truth, seed)))
    return table(f"{name}: {int(held_out.sum())} held-out ocean cell-times, {len(obs)} "
                 "observations", rows, width=50)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fields", nargs="+", default=["coads_sst", "eofs_pacific"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kelvin", action="store_true")
    parser.add_argument("--no-gp", action="store_true")
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    text = []
    for name in args.fields:
        lines = field_rows(name, args.out, args.set, args.seed, not args.no_gp, args.kelvin)
        print("\n".join(lines), flush=True)
        text += lines + [""]
    (args.out / "scores.txt").write_text("\n".join(text))


if __name__ == "__main__":
    main()
