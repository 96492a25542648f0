"""From a configuration (or the demo scenario) to files: fit, then write every output.

:func:`write_outputs` puts a fitted :class:`~tracerbayes.posterior.exact.Posterior` into an output
folder: ``posterior.nc`` (CF-1.10), optionally ``posterior.zarr``, ``maps/`` (one figure per
analysis time plus ``summary``) and ``diagnostics/`` (ArviZ summary CSV, trace, rank and
energy plots, ``inference_data.nc``). Every file is written to a temporary name and renamed
when complete, so an interrupted run leaves no partial file. :func:`run_config` is
``tracerbayes run CONFIG``; :func:`simulate_config` is ``tracerbayes simulate CONFIG``.

A run's outputs are all or nothing. Before fitting, :func:`run_config` checks the output
folder (a writable folder, or one that can be created; no folder where ``posterior.nc`` goes;
enough free disk space), takes the folder's lock (:class:`~tracerbayes.io.files.folder_lock`)
and refuses a folder holding an earlier run's outputs unless ``overwrite`` is set; then it
removes them just before writing the new ones. It writes the manifest ``run.json`` last
(:func:`run_manifest`): a folder without one holds no complete run.

A run is resumable. NUTS and the LETKF save a checkpoint in the hidden folder
``.checkpoint/`` of the output folder as they go (:mod:`tracerbayes.io.checkpoint`), with
``identity.json`` naming the config (its path and SHA-256) and the seed; it is removed once
``run.json`` is written. A run killed, interrupted or failing to write its outputs leaves the
last complete checkpoint; ``resume`` continues it and gives the same outputs as a run never
interrupted (:mod:`tracerbayes.cli.resume`). Without ``resume`` a folder holding a checkpoint is
refused (unless ``overwrite``, which discards it), so a long run is not thrown away by
accident.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tracerbayes.cli.resume import CHECKPOINT, checkpointed_fit, resumed_checkpoint
from tracerbayes.io.files import (
    OutputError,
    atomic_path,
    check_output_folder,
    folder_lock,
    remove_stale_temporaries,
    write_error_message,
)

#: The manifest of a run, written last into its output folder.
MANIFEST = "run.json"
#: What a run writes into its output folder (glob patterns relative to it).
RUN_OUTPUTS = (MANIFEST, "posterior.nc", "posterior.zarr", "maps/map_*.*", "maps/summary.*",
               *(f"diagnostics/{name}" for name in (
                   "summary.csv", "cycle.csv", "trace.*", "rank.*", "energy.*", "spread.*",
                   "inference_data.nc", "validation.json")))
#: Names whose presence shows that a folder holds the outputs of a run.
RUN_SIGNS = (MANIFEST, "posterior.nc", "posterior.zarr", "maps", "diagnostics")
#: Bytes of one figure, a generous guess (a PNG map panel takes 0.1-0.3 MB).
FIGURE_BYTES = 1_000_000

__all__ = ["TracerInfo", "write_outputs", "run_config", "simulate_config", "run_manifest",
           "earlier_outputs", "known_outputs", "remove_earlier_outputs",
           "estimated_output_bytes"]


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
        ``maps`` (Dataset: the CF maps, read lazily from posterior.nc, or posterior.zarr,
        when they were written as computed, else in memory), ``paths`` (files written),
        ``wall`` and ``cpu`` (seconds per step: maps (with posterior.nc and posterior.zarr
        when written as computed, one chunk of times at a time), netcdf, figures,
        inference_data, diagnostics).
    """
    import xarray as xr

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
        used = min(n_draws, post.num_chains * post.num_draws)
        say(f"  posterior maps from {used} parameter draws (RTS smoother per draw) ...")
    if _streams(post, netcdf, zarr):  # computed and written a chunk of times at a time
        with timed("maps"):
            written = post.write_maps(out / "posterior.nc" if netcdf else None,
                                      zarr=out / "posterior.zarr" if zarr else None,
                                      n_draws=n_draws, units=tracer.units,
                                      long_name=tracer.long_name,
                                      standard_name=tracer.standard_name, title=title,
                                      config_text=config_text)
        paths += written
        if zarr and out / "posterior.zarr" not in written:
            say("  zarr is not installed: posterior.zarr skipped (pip install zarr)")
        # the figures and the caller read the maps back from the file, lazily
        ds = maps = (xr.open_dataset(out / "posterior.nc", engine="netcdf4") if netcdf else
                     xr.open_zarr(out / "posterior.zarr", consolidated=False))
    else:
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
                written_zarr = cf.write_zarr(ds, out / "posterior.zarr")
                if written_zarr is None:
                    say("  zarr is not installed: posterior.zarr skipped (pip install zarr)")
                else:
                    paths.append(written_zarr)
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
    ds.close()  # a file read lazily is reopened if the caller reads the maps
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


def _streams(post: Any, netcdf: bool, zarr: bool) -> bool:
    """Whether posterior.nc (or posterior.zarr alone, with zarr installed) is written as the
    maps are computed (:meth:`~tracerbayes.posterior.base.AbstractPosterior.write_maps`):
    for every fitted posterior; an object with only ``maps()`` is written whole."""
    from importlib.util import find_spec

    from tracerbayes.posterior.base import AbstractPosterior

    has_zarr = find_spec("zarr") is not None
    return isinstance(post, AbstractPosterior) and (netcdf or (zarr and has_zarr))


def earlier_outputs(out: Path) -> list[Path]:
    """The names of :data:`RUN_SIGNS` present in ``out``: signs of an earlier run."""
    return [out / name for name in RUN_SIGNS if os.path.lexists(out / name)]


def known_outputs(out: Path) -> list[Path]:
    """The files (and Zarr store) under ``out`` that a run writes (:data:`RUN_OUTPUTS`)."""
    return sorted({path for pattern in RUN_OUTPUTS for path in out.glob(pattern)})


def _listed_in_manifest(out: Path) -> list[Path]:
    """The files ``out/run.json`` lists, those inside ``out`` only."""
    try:
        listed = json.loads((out / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    inside = (PurePosixPath(name) for name in listed if isinstance(name, str))
    return [out.joinpath(*name.parts) for name in inside
            if name.parts and not name.is_absolute() and ".." not in name.parts]


def remove_earlier_outputs(out: Path) -> list[Path]:
    """Remove an earlier run's outputs from ``out``: what its run.json lists and the names a
    run writes (:data:`RUN_OUTPUTS`), run.json first; never other files. Returns them."""
    doomed = sorted({*_listed_in_manifest(out), *known_outputs(out)},
                    key=lambda path: path != out / MANIFEST)
    removed = []
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            if path.suffix != ".zarr":  # only a Zarr store is a folder a run writes
                continue
            shutil.rmtree(path)
        elif not os.path.lexists(path):
            continue
        else:
            path.unlink()
        removed.append(path)
    for folder in ("maps", "diagnostics"):  # if now empty; a user's own files keep theirs
        with suppress(OSError):
            (out / folder).rmdir()
    return removed


def _bytes_in(paths: Sequence[Path]) -> int:
    """Bytes the files under ``paths`` take."""
    total = 0
    for path in paths:
        files = path.rglob("*") if path.is_dir() else [path]
        total += sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())
    return total


def estimated_output_bytes(output: Any, n_wet: int, n_times: int) -> int:
    """A generous estimate of the bytes a run writes, for the free-space check.

    Each map file holds the mean, sd and three quantiles of every wet cell at every analysis
    time in float64 (uncompressed); plus :data:`FIGURE_BYTES` per figure (one per time and
    the summary; four diagnostics plots).

    Parameters
    ----------
    output : OutputConfig
        The config's ``output`` section (which files are written).
    n_wet, n_times : int
        Wet cells of the grid; analysis times.
    """
    fields = n_wet * n_times * 5 * 8
    total = fields * (int(output.netcdf) + int(output.zarr))
    if output.maps != "none":
        total += (n_times + 1) * FIGURE_BYTES
    if output.diagnostics:
        total += 4 * FIGURE_BYTES
    return total


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    from tracerbayes import __version__

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"tracerbayes": __version__, **{name: version(name) for name in
                                           ("jax", "jaxlib", "numpyro", "numpy", "xarray")},
            "python": platform.python_version()}


def run_manifest(out: Path, record: dict[str, Any], files: Sequence[Path]) -> Path:
    """Write ``out/run.json`` atomically and return its path.

    ``record`` gives ``config`` (``path`` and the ``sha256`` of its text), ``seed``,
    ``method``, ``start`` (UTC ISO 8601) and ``status`` (``"complete"``, ``"not converged"``
    or ``"failed: <reason>"``), optionally ``diagnostics`` (the convergence problems); added
    here are ``end`` (now), ``versions`` (tracerbayes, jax, jaxlib, numpyro, numpy, xarray,
    python) and ``files``, the outputs written, relative to ``out``.
    """
    out = Path(out)
    names = sorted({Path(f).resolve().relative_to(out.resolve()).as_posix() for f in files}
                   - {MANIFEST})
    manifest = {"config": record["config"], "versions": _versions(), "seed": record["seed"],
                "method": record["method"], "start": record["start"], "end": _utc_now(),
                "status": record["status"], "diagnostics": record.get("diagnostics", []),
                "files": names}
    path = out / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _output_folder(directory: Path | None, output: str | Path | None) -> Path:
    """The folder a command writes to: ``output`` if given, else the config's
    ``output.directory`` (which :func:`~tracerbayes.cli.config.load_config` always sets)."""
    if output is not None:
        return Path(output)
    if directory is None:
        raise ValueError("output.directory is not set: read the configuration with "
                         "tracerbayes.cli.config.load_config, which defaults it")
    return directory


def run_config(path: str | Path, output: str | Path | None = None, seed: int | None = None,
               quiet: bool = False, overwrite: bool = False,
               resume: bool = False) -> dict[str, Any]:
    """``tracerbayes run CONFIG``: load and check the config, fit, write the outputs.

    The output folder is checked and locked before the fit; an earlier run's outputs in it
    are refused unless ``overwrite`` (then removed just before the new ones are written);
    ``run.json`` is written last. The fit saves checkpoints in ``.checkpoint/`` of the
    output folder; ``resume`` continues those of an interrupted run of the same config and
    seed (whose outputs, if any, are then replaced). See the module docstring.
    """
    from tracerbayes.cli import config as tbc
    from tracerbayes.fitting import fit

    started = _utc_now()
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    cfg = tbc.load_config(path)
    problems = tbc.validate_config(path)
    if problems:
        raise tbc.ConfigError(problems, path)
    config_bytes = Path(path).read_bytes()
    grid = tbc.build_grid(cfg)
    obs = tbc.build_observations(cfg)
    times = tbc.build_times(cfg, obs)
    options = tbc.fit_options(cfg)
    if seed is not None:
        options["seed"] = seed
    out = _output_folder(cfg.output.directory, output)
    earlier = earlier_outputs(out) if out.is_dir() else []
    need = estimated_output_bytes(cfg.output, grid.n_wet, len(times))
    check_output_folder(out, files=("posterior.nc", MANIFEST), folders=("maps", "diagnostics"),
                        need_bytes=need - (_bytes_in(earlier) if overwrite else 0),
                        hint="choose another output.directory (or -o DIR)")
    identity = {"config": str(Path(path).resolve()),
                "sha256": hashlib.sha256(config_bytes).hexdigest(), "seed": options["seed"]}
    with folder_lock(out, say=say):
        resuming = resumed_checkpoint(out / CHECKPOINT, identity, resume=resume,
                                      overwrite=overwrite, say=say)
        earlier = earlier_outputs(out)
        if earlier and not (overwrite or resuming):
            names = ", ".join(p.relative_to(out).as_posix() + "/" * p.is_dir()
                              for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
            raise OutputError(f"output folder {out} already holds the outputs of an earlier run "
                              f"({names}): pass --overwrite to replace them, or choose another "
                              "output folder")
        removed = remove_stale_temporaries(out)
        if removed:
            say(f"  removed {len(removed)} temporary files left in {out} by a killed run")
        model_grid, window = tbc.build_model_grid(cfg, grid)
        model = tbc.build_model(cfg, model_grid, obs, times=times)
        say(f"tracerbayes run {path}: {grid}, {len(times)} times, {len(obs)} observations, "
            f"method {options['method'].name}")
        if model_grid is not grid:
            cells, why = tbc.grid_pad(cfg, grid)
            say(f"grid.pad {cfg.grid.pad}: {cells} cells ({why}); the model's grid is "
                f"{model_grid}")
        if cfg.model.n_modes == "auto":
            n_modes, why = tbc.model_modes(cfg, model_grid, model.priors, len(times), times)
            say(f"model.n_modes auto: {n_modes} ({why})")
        if cfg.tracer.seasonal_modes == "auto" and not cfg.tracer.conserved:
            n_season, why = tbc.seasonal_modes(cfg, times)
            say(f"tracer.seasonal_modes auto: {n_season} ({why})")
        post = checkpointed_fit(fit, model, obs, times, options, out / CHECKPOINT, identity,
                                every=cfg.output.checkpoint_every, quiet=quiet)
        if model_grid is not grid:  # the maps keep the configured box
            post.output_window = window
        if post.validation is not None:
            say(f"  {validation_line(post.validation, cfg.tracer.units)}")
        if earlier:
            gone = remove_earlier_outputs(out)
            flag = "--overwrite" if overwrite else "--resume"
            say(f"  {flag}: removed {len(gone)} outputs of the earlier run in {out}")
        manifest = {"config": {"path": identity["config"], "sha256": identity["sha256"]},
                    "seed": options["seed"], "method": options["method"].name, "start": started}
        return _write_run(cfg, post, out, manifest, title=cfg.title or f"tracerbayes run of "
                          f"{path}", config_text=config_bytes.decode(), say=say)


def _write_run(cfg: Any, post: Any, out: Path, manifest: dict[str, Any], *, title: str,
               config_text: str, say: Callable[..., None]) -> dict[str, Any]:
    """The outputs of a fitted run, then ``run.json`` with how it ended (also on failure);
    then the checkpoint goes, unless writing failed (``--resume`` then writes again)."""
    from tracerbayes.fitting import ConvergenceError, convergence_paragraph

    tracer = TracerInfo(cfg.tracer.name, cfg.tracer.long_name, cfg.tracer.units,
                        cfg.tracer.standard_name)
    try:
        result = write_outputs(post, out, tracer, title=title, config_text=config_text,
                               maps_format=cfg.output.maps, netcdf=cfg.output.netcdf,
                               zarr=cfg.output.zarr, diagnostics=cfg.output.diagnostics,
                               say=say)
    except Exception as err:  # say in run.json how far it got, then fail
        reason = (write_error_message(err) or f"{type(err).__name__}: {err}").splitlines()[0]
        with suppress(Exception):  # best effort: the first error is the one to report
            run_manifest(out, {**manifest, "status": f"failed: {reason}"}, known_outputs(out))
        raise
    problems = post.check_diagnostics()
    allowed = getattr(cfg.method, "allow_unconverged", False)
    status = "not converged" if problems and not allowed else "complete"
    run_manifest(out, {**manifest, "status": status, "diagnostics": problems},
                 result["paths"])
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)  # the run is done
    say(f"  wrote {len(result['paths'])} files and {MANIFEST} under {out}")
    result["posterior"] = post
    if problems:
        paragraph = convergence_paragraph(post.method, problems)
        if not allowed:
            raise ConvergenceError(paragraph)
        say(f"  warning (allowed by method.allow_unconverged): {paragraph}")
    return result


def _truth_file(truth: Any, title: str) -> Any:
    """The truth Dataset with CF-1.10 global attributes and a CF time encoding."""
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
    out = _output_folder(cfg.output.directory, output)
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

    from tracerbayes.posterior.validation import calibration_message

    record = {**post.validation, "units": units, "by": post.holdout.by,
              "fraction": post.holdout.fraction,
              "held_out_rows": [int(r) for r in post.holdout.test_rows],
              "summary": validation_line(post.validation, units),
              "calibration": calibration_message(post.validation, post.method)}
    path = diag / "validation.json"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
    return path
