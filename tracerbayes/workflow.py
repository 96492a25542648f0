"""From a configuration (or the demo scenario) to files: fit, then write every output.

:func:`write_outputs` puts a fitted :class:`~tracerbayes.posterior.Posterior` into an output
folder: ``posterior.nc`` (CF-1.10), optionally ``posterior.zarr``, ``maps/`` (one figure per
analysis time plus ``summary``) and ``diagnostics/`` (ArviZ summary CSV, trace, rank and
energy plots, ``inference_data.nc``). Every file is written to a temporary name and renamed
when complete, so an interrupted run leaves no partial file. :func:`run_config` is
``tracerbayes run CONFIG``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracerbayes.files import atomic_path

__all__ = ["TracerInfo", "write_outputs", "run_config"]


@dataclass(frozen=True)
class TracerInfo:
    """How the tracer is named in outputs (CF standard name, long name, UDUNITS units)."""

    name: str = "tracer"
    long_name: str = "tracer concentration"
    units: str = "1"
    standard_name: str | None = None


def write_outputs(post: Any, out: Path, tracer: TracerInfo, *, title: str,
                  config_text: str | None = None, maps_format: str = "png",
                  netcdf: bool = True, zarr: bool = False, diagnostics: bool = True,
                  n_draws: int = 100, say: Callable[..., None] = print) -> dict[str, Any]:
    """Write posterior.nc, maps/ and diagnostics/ for ``post`` into ``out``.

    Returns ``{"maps": Dataset, "paths": [written paths]}``.
    """
    from tracerbayes import netcdf as cf
    from tracerbayes import plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    say(f"  posterior maps from {n_draws} parameter draws (RTS smoother per draw) ...")
    maps = post.maps(n_draws=n_draws)
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
        # the CF dataset carries the tracer's names and units (labels, colour maps)
        paths += plot.maps(ds, post.obs, out_dir=out / "maps", fmt=maps_format,
                           show_progress=False)
        paths.append(plot.summary_panel(ds, post.obs,
                                        path=out / "maps" / f"summary.{maps_format}"))
    if diagnostics:
        say("  diagnostics (ArviZ) ...")
        idata = post.to_inference_data()
        diag = out / "diagnostics"
        paths += plot.diagnostics(idata, diag)
        with atomic_path(diag / "inference_data.nc") as tmp:
            idata.to_netcdf(str(tmp))
        paths.append(diag / "inference_data.nc")
    return {"maps": maps, "paths": paths}


def run_config(path: str | Path, output: str | Path | None = None, seed: int | None = None,
               quiet: bool = False) -> dict[str, Any]:
    """``tracerbayes run CONFIG``: load and check the config, fit, write the outputs."""
    from tracerbayes import config as tbc
    from tracerbayes.inference import fit

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    cfg = tbc.load_config(path)
    problems = tbc.validate_config(path)
    if problems:
        raise tbc.ConfigError(problems)
    grid = tbc.build_grid(cfg)
    times = tbc.build_times(cfg)
    obs = tbc.build_observations(cfg)
    model = tbc.build_model(cfg, grid, obs)
    options = tbc.fit_options(cfg)
    if seed is not None:
        options["seed"] = seed
    say(f"tracerbayes run {path}: {grid}, {len(times)} times, {len(obs)} observations, "
        f"method {options['method']}")
    post = fit(model, obs, times, progress=not quiet, **options)
    out = Path(output) if output is not None else cfg.output.directory
    tracer = TracerInfo(cfg.tracer.name, cfg.tracer.long_name, cfg.tracer.units,
                        cfg.tracer.standard_name)
    result = write_outputs(post, out, tracer, title=cfg.title or f"tracerbayes run of {path}",
                           config_text=Path(path).read_text(), maps_format=cfg.output.maps,
                           netcdf=cfg.output.netcdf, zarr=cfg.output.zarr,
                           diagnostics=cfg.output.diagnostics, say=say)
    for message in post.check_diagnostics():
        say(f"  note: {message}")
    say(f"  wrote {len(result['paths'])} files under {out}")
    result["posterior"] = post
    return result
