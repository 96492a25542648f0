"""From a configuration (or the demo scenario) to files: fit, then write every output.

:func:`write_outputs` puts a fitted :class:`~tracerbayes.posterior.exact.Posterior` into an output
folder: ``posterior.nc`` (CF-1.10), optionally ``posterior.zarr``, ``maps/`` (one figure per
analysis time plus ``summary``) and ``diagnostics/`` (ArviZ summary CSV, trace, rank and
energy plots, ``inference_data.nc``). Every file is written to a temporary name and renamed
when complete, so an interrupted run leaves no partial file. :func:`run_config` is
``tracerbayes run CONFIG``; :func:`simulate_config` is ``tracerbayes simulate CONFIG``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracerbayes.io.files import atomic_path, remove_stale_temporaries

__all__ = ["TracerInfo", "write_outputs", "run_config", "simulate_config"]


@dataclass(frozen=True)
class TracerInfo:
    """How the tracer is named in outputs (CF standard name, long name, UDUNITS units)."""

    name: str = "tracer"
    long_name: str = "tracer concentration"
    units: str = "1"
    standard_name: str | None = None


def validation_line(scores: dict[str, Any], units: str) -> str:
    """The held-out scores in one line (the number a user can trust on real data)."""
    return (f"held-out validation ({scores['n']} observations kept out of the fit): RMSE "
            f"{scores['rmse']:.4g} {units}, CRPS {scores['crps']:.4g} {units}, "
            f"{scores['level']:.0%} predictive interval coverage {scores['coverage']:.1%} "
            f"(mean width {scores['interval_width']:.4g} {units})")


def write_outputs(post: Any, out: Path, tracer: TracerInfo, *, title: str,
                  config_text: str | None = None, maps_format: str = "png",
                  netcdf: bool = True, zarr: bool = False, diagnostics: bool = True,
                  n_draws: int = 100, figure_times: Sequence[int] | None = None,
                  posterior_predictive: bool = True,
                  say: Callable[..., None] = print) -> dict[str, Any]:
    """Write posterior.nc, maps/ and diagnostics/ for ``post`` into ``out``.

    Parameters
    ----------
    post : Posterior
        The fitted posterior.
    out : path
        Output folder (created; stale temporary files of an earlier, killed run in it are
        removed first, :func:`~tracerbayes.io.files.remove_stale_temporaries`).
    tracer : TracerInfo
        Names and units of the tracer in the files.
    title, config_text : str
        Global attributes of posterior.nc.
    maps_format : {'png', 'pdf', 'svg', 'none'}
        Format of the map figures (none: no figures).
    netcdf, zarr, diagnostics : bool
        Which outputs to write.
    n_draws : int
        Posterior draws mixed into the maps.
    figure_times : sequence of int, optional
        Positions of the analysis times drawn as map figures (negative from the end);
        default every time. The summary panel is always drawn.
    posterior_predictive : bool
        Include the posterior predictive group in ``diagnostics/inference_data.nc`` (one
        forward-filter backward-sample trajectory per draw).
    say : callable
        Receives progress lines.

    Returns
    -------
    dict
        ``maps`` (Dataset), ``paths`` (files written), ``wall`` and ``cpu`` (seconds per
        step: maps, netcdf, figures, inference_data, diagnostics).
    """
    from tracerbayes import plot
    from tracerbayes.io import netcdf as cf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        yield
        wall[name], cpu[name] = time.perf_counter() - w, time.process_time() - c

    paths: list[Path] = []
    if getattr(post, "members", None) is not None:
        say(f"  posterior maps from the {post.members.shape[1]} smoothed ensemble members "
            f"({post.method.upper()}) ...")
    else:
        say(f"  posterior maps from {n_draws} parameter draws (RTS smoother per draw) ...")
    with timed("maps"):
        maps = post.maps(n_draws=n_draws)
    with timed("netcdf"):
        ds = cf.cf_dataset(maps, units=tracer.units, tracer_long_name=tracer.long_name,
                           tracer_standard_name=tracer.standard_name, title=title,
                           method=post.method, config_text=config_text,
                           parameter_summary=post.parameter_table())
        if netcdf:
            paths.append(cf.write_netcdf(ds, out / "posterior.nc"))
        if zarr:
            written = cf.write_zarr(ds, out / "posterior.zarr")
            if written is None:
                say("  zarr is not installed: posterior.zarr skipped (pip install zarr)")
            else:
                paths.append(written)
    if maps_format != "none":
        say(f"  figures ({maps_format}) ...")
        n_times = maps.sizes["time"]
        times = None if figure_times is None else sorted({t % n_times for t in figure_times})
        with timed("figures"):
            # the CF dataset carries the tracer's names and units (labels, colour maps)
            paths += plot.maps(ds, post.obs, times=times, out_dir=out / "maps",
                               fmt=maps_format, show_progress=False)
            paths.append(plot.summary_panel(ds, post.obs,
                                            path=out / "maps" / f"summary.{maps_format}"))
    if diagnostics:
        say("  diagnostics (ArviZ) ...")
        with timed("inference_data"):
            idata = post.to_inference_data(posterior_predictive=posterior_predictive)
        with timed("diagnostics"):
            diag = out / "diagnostics"
            cycle = getattr(post, "cycle", None)
            if cycle is not None:  # ensemble methods: spread and innovation statistics
                paths += plot.cycle_diagnostics(cycle, diag)
            else:
                paths += plot.diagnostics(idata, diag)
            with atomic_path(diag / "inference_data.nc") as tmp:
                idata.to_netcdf(str(tmp))
            paths.append(diag / "inference_data.nc")
            if getattr(post, "validation", None) is not None:
                paths.append(_write_validation(post, diag, tracer.units))
    return {"maps": maps, "paths": paths, "wall": wall, "cpu": cpu}


def run_config(path: str | Path, output: str | Path | None = None, seed: int | None = None,
               quiet: bool = False) -> dict[str, Any]:
    """``tracerbayes run CONFIG``: load and check the config, fit, write the outputs."""
    from tracerbayes.cli import config as tbc
    from tracerbayes.fitting import ConvergenceError, convergence_paragraph, fit

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    cfg = tbc.load_config(path)
    problems = tbc.validate_config(path)
    if problems:
        raise tbc.ConfigError(problems, path)
    grid = tbc.build_grid(cfg)
    obs = tbc.build_observations(cfg)
    times = tbc.build_times(cfg, obs)
    model = tbc.build_model(cfg, grid, obs, n_times=len(times))
    options = tbc.fit_options(cfg)
    if seed is not None:
        options["seed"] = seed
    out = Path(output) if output is not None else cfg.output.directory
    removed = remove_stale_temporaries(out)
    if removed:
        say(f"  removed {len(removed)} temporary files left in {out} by a killed run")
    say(f"tracerbayes run {path}: {grid}, {len(times)} times, {len(obs)} observations, "
        f"method {options['method']}")
    if cfg.model.n_modes == "auto":
        n_modes, why = tbc.model_modes(cfg, grid, model.priors, len(times))
        say(f"model.n_modes auto: {n_modes} ({why})")
    post = fit(model, obs, times, progress=not quiet, **options)
    if post.validation is not None:
        say(f"  {validation_line(post.validation, cfg.tracer.units)}")
    tracer = TracerInfo(cfg.tracer.name, cfg.tracer.long_name, cfg.tracer.units,
                        cfg.tracer.standard_name)
    result = write_outputs(post, out, tracer, title=cfg.title or f"tracerbayes run of {path}",
                           config_text=Path(path).read_text(), maps_format=cfg.output.maps,
                           netcdf=cfg.output.netcdf, zarr=cfg.output.zarr,
                           diagnostics=cfg.output.diagnostics, say=say)
    problems = post.check_diagnostics()
    say(f"  wrote {len(result['paths'])} files under {out}")
    result["posterior"] = post
    if problems:
        paragraph = convergence_paragraph(post.method, problems)
        if not getattr(cfg.method, "allow_unconverged", False):
            raise ConvergenceError(paragraph)
        say(f"  warning (allowed by method.allow_unconverged): {paragraph}")
    return result


def _truth_file(truth: Any, title: str) -> Any:
    """The truth Dataset with CF-1.10 global attributes and a CF time encoding."""
    import datetime

    import numpy as np

    from tracerbayes import __version__

    ds = truth.copy()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds.attrs.update({"Conventions": "CF-1.10", "title": title,
                     "source": f"tracerbayes {__version__} simulate",
                     "history": f"{stamp} tracerbayes simulate"})
    if np.issubdtype(ds["time"].dtype, np.datetime64):
        ds["time"].encoding.update({"units": "seconds since 1970-01-01 00:00:00",
                                    "calendar": "proleptic_gregorian", "dtype": "float64"})
    return ds


def simulate_config(path: str | Path, output: str | Path | None = None, seed: int | None = None,
                    quiet: bool = False) -> dict[str, Any]:
    """``tracerbayes simulate CONFIG``: a synthetic truth and its observations.

    Draws the truth of the config's ``simulate.truth`` section on its grid and analysis times
    (:func:`tracerbayes.cli.config.build_truth`) and samples it with ``simulate.platforms``
    (:func:`tracerbayes.twin.simulate.sample_platforms`). Writes, atomically, the observations CSV
    (columns ``time, lon, lat`` or ``x, y``, ``value, error, platform``) at
    ``simulate.observations`` (default: the first CSV of ``observations``, else
    ``observations.csv`` in the output folder) and the truth as ``truth.nc`` in the run's
    output folder. With ``output``, both go into that folder instead.

    Parameters
    ----------
    path : path
        The YAML configuration.
    output : path, optional
        Folder for truth.nc and the CSV (overrides the config's locations).
    seed : int, optional
        Overrides ``simulate.seed``.
    quiet : bool
        Print nothing.

    Returns
    -------
    dict
        ``truth`` (Dataset), ``observations`` (DataFrame), ``truth_path``,
        ``observations_path``, ``drift`` (relative drift of the truth's total).
    """
    import jax
    import numpy as np

    from tracerbayes.cli import config as tbc
    from tracerbayes.cli.config.sections import GivenVelocityConfig
    from tracerbayes.twin import simulate

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    cfg = tbc.load_config(path, check_files=False)
    if cfg.simulate is None:
        raise tbc.ConfigError([tbc.Problem("simulate", "this configuration has no simulate "
                                                       "section; add one (see docs/"
                                                       "configuration.md) to draw a twin")],
                              path)
    out = Path(output) if output is not None else cfg.output.directory
    csv = cfg.simulate.observations
    if csv is None:
        csv = next((s.file for s in cfg.observations if s.file.suffix.lower() == ".csv"),
                   out / "observations.csv")
    if output is not None:
        csv = out / csv.name
    truth_path = out / "truth.nc"
    grid = tbc.build_grid(cfg)
    times = tbc.build_times(cfg)
    velocity = (tbc.build_velocity(cfg, grid)
                if isinstance(cfg.velocity, GivenVelocityConfig) else None)
    seed = cfg.simulate.seed if seed is None else seed
    say(f"tracerbayes simulate {path}: {grid}, {len(times)} times, seed {seed}")
    k_truth, k_obs = jax.random.split(jax.random.key(seed))
    truth = tbc.build_truth(k_truth, cfg, grid, times, velocity=velocity)
    frame = simulate.sample_platforms(k_obs, truth, grid, tbc.build_platforms(cfg))
    totals = truth["total"].values
    drift = float(np.max(np.abs(totals - totals[0])) / max(abs(totals[0]), 1e-300))
    for folder in {truth_path.parent, csv.parent}:
        if folder.is_dir():
            remove_stale_temporaries(folder)
    with atomic_path(truth_path) as tmp:
        _truth_file(truth, cfg.title or "tracerbayes twin-experiment truth").to_netcdf(
            tmp, engine="netcdf4", format="NETCDF4")
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    counts = frame["platform"].value_counts(sort=False)
    say(f"  truth: {truth_path} (relative drift of the total over {len(times)} times: "
        f"{drift:.1e})")
    say(f"  observations: {csv} ({len(frame)} rows: "
        + ", ".join(f"{n} {name}" for name, n in counts.items()) + ")")
    return {"truth": truth, "observations": frame, "truth_path": truth_path,
            "observations_path": csv, "drift": drift}


def _write_validation(post: Any, diag: Path, units: str) -> Path:
    """diagnostics/validation.json: the held-out scores, the split and the units."""
    import json

    record = {**post.validation, "units": units, "by": post.holdout.by,
              "fraction": post.holdout.fraction,
              "held_out_rows": [int(r) for r in post.holdout.test_rows],
              "summary": validation_line(post.validation, units)}
    path = diag / "validation.json"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
    return path
