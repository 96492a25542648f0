"""Turn a parsed :class:`~tracerbayes.cli.config.run.RunConfig` into tracerbayes objects.

Problems that only show when input files are opened (a variable missing from a NetCDF file,
observations on land) are raised as :class:`~tracerbayes.schema.ConfigError` with the
key path of the setting to fix.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, cast

import numpy as np

from tracerbayes import physics
from tracerbayes.cli.config.run import FloatsConfig, GliderConfig, RunConfig, ShipConfig
from tracerbayes.cli.config.sections import (
    ConstantVelocityConfig,
    Extent,
    GivenVelocityConfig,
    MaskFile,
    PriorSpec,
    method_object,
)
from tracerbayes.exact.model import (
    AdvectionDiffusionModel,
    ConstantVelocity,
    GivenVelocity,
    Priors,
    StreamfunctionVelocity,
)
from tracerbayes.grid import regrid
from tracerbayes.grid.core import Grid, GridError
from tracerbayes.observations.core import ObservationError, Observations, ObservationWarning
from tracerbayes.schema import ConfigError, Problem, suggest
from tracerbayes.twin import simulate

__all__ = ["build_grid", "build_model_grid", "grid_pad", "build_times", "build_observations",
           "build_priors", "build_velocity", "build_model", "build_platforms", "build_truth",
           "fit_options", "to_distribution"]


def _fail(cfg: RunConfig, path: str, message: str) -> ConfigError:
    return ConfigError([Problem(path, message)], cfg.path or "configuration")


def _open_variable(cfg: RunConfig, file: Any, variable: str, path: str) -> Any:
    """The DataArray ``variable`` of a NetCDF file, loaded; ConfigError at ``path`` if absent."""
    import xarray as xr

    try:
        with xr.open_dataset(file) as ds:
            if variable not in ds.variables:
                names = sorted(map(str, ds.data_vars))
                raise _fail(cfg, path, f"variable {variable!r} not found in {file}; it has "
                                       f"{names}{suggest(variable, names)}")
            return ds[variable].load()
    except (OSError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise _fail(cfg, path.rpartition(".")[0] + ".file",
                    f"cannot read {file} as NetCDF: {err}") from err


def _mask_from_file(cfg: RunConfig, spec: MaskFile, grid: Grid) -> np.ndarray:
    """The mask variable on the grid's cells: non-zero and finite on water.

    A variable with the grid's shape and no coordinates, or with the grid's centres as its
    lon/lat (x/y) coordinates, is taken as is. One on another grid is regridded only if
    ``grid.mask.regrid`` asks (:func:`tracerbayes.grid.regrid.regrid_mask`, with a
    :class:`~tracerbayes.grid.regrid.RegridWarning` reporting what changed), else refused.
    """
    da = _open_variable(cfg, spec.file, spec.variable, "grid.mask.variable")
    ydim, xdim = grid.dims
    alias = {"lon": ("lon", "longitude"), "lat": ("lat", "latitude"), "x": ("x",), "y": ("y",)}
    xname = next((n for n in alias[xdim] if n in da.coords), None)
    yname = next((n for n in alias[ydim] if n in da.coords), None)
    if not (xname and yname):
        values = np.asarray(da.values)
        if values.shape != grid.shape:
            raise _fail(cfg, "grid.mask.variable",
                        f"{spec.variable!r} has shape {values.shape} and no {xdim}/{ydim} "
                        f"coordinates; the grid is (ny, nx) = {grid.shape}")
        return _wet(values)
    da = da.sortby([yname, xname]).transpose(yname, xname, ...)
    if da.ndim != 2:
        raise _fail(cfg, "grid.mask.variable",
                    f"{spec.variable!r} has dimensions {da.dims}; a mask has only {ydim}, {xdim}")
    x, y = da[xname].values, da[yname].values
    wet = _wet(da.values)
    if regrid.on_grid(grid, x, y):
        return wet
    try:
        regrid.check_coverage(grid, x, y, np.ones(grid.shape, dtype=bool), "model",
                              ". Give a mask that covers the grid, or shrink the grid to it")
        if spec.regrid == "none":
            edges = regrid.file_edges(x, y)
            raise GridError(
                f"{spec.variable!r} is on another grid than the model: "
                f"{regrid.describe_axes(grid, *edges)}, the model "
                f"{regrid.describe_axes(grid, grid.x_edges, grid.y_edges)}. Write it on the "
                "model's cells, or ask for a regridding: grid.mask.regrid: nearest (each "
                "cell takes the file's cell containing its centre) or fraction (wet where at "
                "least grid.mask.threshold, default 0.5, of the cell's area is wet)")
        wet, report = regrid.regrid_mask(wet, x, y, grid, regrid.Regrid(spec.regrid),
                                         spec.threshold)
    except GridError as err:
        raise _fail(cfg, "grid.mask", f"{spec.file}: {err}") from err
    warnings.warn(f"{spec.file}: {report}", regrid.RegridWarning, stacklevel=3)
    return wet


def _wet(values: Any) -> np.ndarray:
    """Water where a mask's values are finite and non-zero."""
    values = np.asarray(values).astype(float)
    return np.isfinite(values) & (values != 0)


def build_grid(cfg: RunConfig) -> Grid:
    """The :class:`~tracerbayes.grid.core.Grid` of ``cfg.grid`` (its mask read if from a file)."""
    g = cfg.grid
    mask = None if isinstance(g.mask, MaskFile) else g.mask
    try:
        # GridConfig.check: the extents of the grid's kind are both set
        if g.cartesian:
            grid = Grid.cartesian(x=cast(Extent, g.x), y=cast(Extent, g.y),
                                  resolution=g.resolution, mask=mask)
        else:
            grid = Grid.regular(lon=cast(Extent, g.lon), lat=cast(Extent, g.lat),
                                resolution=g.resolution, mask=mask, periodic=g.periodic)
        if isinstance(g.mask, MaskFile):
            wet = _mask_from_file(cfg, g.mask, grid)
            grid = Grid(grid.x, grid.y, grid.x_edges, grid.y_edges, wet, grid.coords,
                        grid.periodic_x)
    except GridError as err:
        raise _fail(cfg, "grid", str(err)) from err
    return grid


def grid_pad(cfg: RunConfig, grid: Grid) -> tuple[int, str]:
    """The cells ``grid.pad`` adds beyond each edge that ends in water, and why: the
    configured number, or for ``auto`` :func:`tracerbayes.grid.padding.auto_pad_cells` on a
    lon/lat grid (a box cut out of the ocean) without a given velocity, else 0."""
    from tracerbayes.grid.core import CoordinateSystem
    from tracerbayes.grid.padding import auto_pad_cells, open_edges

    given = isinstance(cfg.velocity, GivenVelocityConfig)
    edges = [side for side, wet in open_edges(grid).items() if wet]
    if cfg.grid.pad != "auto":
        cells = int(cfg.grid.pad)
        if cells and given:
            raise _fail(cfg, "grid.pad", f"{cells} cells of padding need the velocity beyond "
                        "the grid, which a given velocity (velocity.kind: given) does not "
                        "have: set grid.pad: 0, or widen the grid (and the velocity file)")
        return cells, "set in the config"
    if grid.coords is not CoordinateSystem.LONLAT:
        return 0, "a Cartesian grid: its edges are the basin's walls"
    if given:
        return 0, "a given velocity covers the grid only"
    if not edges:
        return 0, "every edge is land"
    cells = auto_pad_cells(grid)
    return cells, (f"the {', '.join(edges)} edge{'s' * (len(edges) > 1)} end in water: "
                   "the model's walls move out a correlation length, the maps keep the box")


def build_model_grid(cfg: RunConfig, grid: Grid) -> tuple[Grid, tuple[slice, slice]]:
    """The grid the model is fitted on (``grid`` padded by :func:`grid_pad` cells beyond its
    open edges) and the (y, x) slices of it that are ``grid``."""
    from tracerbayes.grid.padding import pad_open_edges

    return pad_open_edges(grid, grid_pad(cfg, grid)[0])


def build_times(cfg: RunConfig, obs: Observations | None = None) -> np.ndarray:
    """The analysis times, ``datetime64[ns]`` (``obs`` is needed for
    ``times.from_observations``)."""
    if cfg.times.from_observations and obs is None:
        obs = build_observations(cfg)
    return cfg.times.values(None if obs is None else obs.time)


def _read_source(cfg: RunConfig, k: int) -> Observations:
    source = cfg.observations[k]
    col = source.columns
    kwargs: dict[str, Any] = {
        "time": col.time, "value": col.value, "platform": col.platform,
        "error": source.error if source.error is not None else (col.error or "error"),
        "drop_invalid": source.drop_invalid, "duplicates": source.duplicates,
    }
    if cfg.grid.cartesian:
        kwargs.update(x=col.x or "x", y=col.y or "y")
    else:
        kwargs.update(lon=col.lon or "lon", lat=col.lat or "lat")
    try:
        if source.file.suffix.lower() == ".csv":
            return Observations.from_csv(source.file, **kwargs)
        return Observations.from_netcdf(source.file, **kwargs)
    except (ObservationError, OSError, ValueError) as err:
        raise _fail(cfg, f"observations[{k}]", f"{source.file}: {err}") from err


def build_observations(cfg: RunConfig) -> Observations:
    """All observation sources read and concatenated (in the order given); the sources with
    ``binning: cell`` binned into super-observations on the grid and analysis times
    (:meth:`Observations.bin`), with an :class:`ObservationWarning` saying how many rows
    became how many super-observations."""
    if not cfg.observations:
        raise _fail(cfg, "observations", "no observation files are given")
    parts = [_read_source(cfg, k) for k in range(len(cfg.observations))]
    if any(source.binning == "cell" for source in cfg.observations):
        parts = _binned(cfg, parts)
    return dataclasses.replace(_concatenated(cfg, parts), units=cfg.tracer.units)


def _concatenated(cfg: RunConfig, parts: list[Observations]) -> Observations:
    if len(parts) == 1:
        return parts[0]
    kinds = {p.time_units for p in parts}
    if len(kinds) > 1:
        raise _fail(cfg, "observations", f"the sources mix time kinds {sorted(kinds)}; give "
                                         "all times as dates or all as seconds")
    return Observations(
        time=np.concatenate([p.time for p in parts]), x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]), value=np.concatenate([p.value for p in parts]),
        error=np.concatenate([p.error for p in parts]),
        platform=np.concatenate([p.platform for p in parts]), coords=parts[0].coords)


def _binned(cfg: RunConfig, parts: list[Observations]) -> list[Observations]:
    """The sources with ``binning: cell`` as super-observations (the analysis times taken
    from all raw rows where ``times.from_observations``)."""
    grid = build_grid(cfg)
    times = build_times(cfg, _concatenated(cfg, parts))
    out = []
    for k, (source, part) in enumerate(zip(cfg.observations, parts, strict=True)):
        if source.binning == "cell":
            try:
                binned = part.bin(grid, times, drop_invalid=source.drop_invalid)
            except ObservationError as err:
                raise _fail(cfg, f"observations[{k}]", f"{source.file}: {err}") from err
            warnings.warn(f"observations[{k}] ({source.file.name}): {binned.report}",
                          ObservationWarning, stacklevel=2)
            part = binned.observations
        out.append(part)
    return out


def to_distribution(spec: PriorSpec) -> Any:
    """The NumPyro distribution of a parsed prior (parameters already in model units)."""
    import numpyro.distributions as dist

    if spec.family == "lognormal":
        return dist.LogNormal(float(np.log(spec["median"])), spec["sigma"])
    if spec.family == "halfnormal":
        return dist.HalfNormal(spec["scale"])
    return dist.Uniform(spec["low"], spec["high"])


#: Config prior name -> :class:`~tracerbayes.exact.model.Priors` field.
PRIOR_FIELDS = {"diffusivity": "diffusivity", "noise_sd": "noise_sd",
                "noise_lengthscale": "noise_lengthscale_km", "initial_sd": "initial_sd",
                "initial_lengthscale": "initial_lengthscale_km", "error_scale": "error_scale",
                "source_sd": "source_sd", "damping": "damping_days",
                "mean_state_sd": "mean_state_sd",
                "mean_state_lengthscale": "mean_state_lengthscale_km",
                "forcing_sd": "forcing_sd", "forcing_time": "forcing_days",
                "seasonal_sd": "seasonal_sd",
                "representation_scale": "representation_scale"}


def build_priors(cfg: RunConfig, obs: Observations | None = None,
                 grid: Grid | None = None) -> Priors:
    """:class:`~tracerbayes.exact.model.Priors`: the given ones, the rest package defaults
    (scaled to the spread of ``obs`` as in :meth:`Priors.for_observations` when given)."""
    p = cfg.priors
    overrides: dict[str, Any] = {"smoothness": p.smoothness}
    for name, target in PRIOR_FIELDS.items():
        spec = getattr(p, name)
        if spec is not None:
            overrides[target] = to_distribution(spec)
    if p.mean_sd is not None:
        overrides["mean_sd"] = p.mean_sd
    if obs is None:
        return Priors(**overrides)
    return Priors.for_observations(obs, grid, **overrides)


def _given_velocity(cfg: RunConfig, v: GivenVelocityConfig, grid: Grid) -> Any:
    import xarray as xr

    u_field = _open_variable(cfg, v.file, v.u, "velocity.u")
    v_field = _open_variable(cfg, v.file, v.v, "velocity.v")
    try:
        face, times = physics.velocity_from_xarray(
            grid, xr.Dataset({v.u: u_field, v.v: v_field}), v.u, v.v,
            regrid=None if v.regrid == "none" else regrid.Regrid(v.regrid),
            missing=regrid.MissingValues(v.missing))
    except ValueError as err:
        raise _fail(cfg, "velocity.file", f"{v.file}: {err}") from err
    if v.divergence == "remove":
        face, _ = physics.remove_divergence(grid, face)
    prior = None if v.scale_prior is None else to_distribution(v.scale_prior)
    if times is not None and len(times) > 1:
        if not v.time_mean:  # each analysis interval moves with the field at its midpoint
            return GivenVelocity(face, scale_prior=prior,
                                 times=np.asarray(times).astype("datetime64[ns]"))
        face = physics.FaceVelocity(face.east.mean(0), face.north.mean(0))
    elif times is not None:
        face = physics.FaceVelocity(face.east[0], face.north[0])
    return GivenVelocity(face, scale_prior=prior)


def build_velocity(cfg: RunConfig, grid: Grid) -> Any:
    """ConstantVelocity, GivenVelocity or StreamfunctionVelocity from ``cfg.velocity``."""
    v = cfg.velocity
    if v is None:
        return ConstantVelocity()
    if isinstance(v, ConstantVelocityConfig):
        return ConstantVelocity(scale=v.scale)
    if isinstance(v, GivenVelocityConfig):
        return _given_velocity(cfg, v, grid)
    return StreamfunctionVelocity(n_modes=v.n_modes, lengthscale_km=v.lengthscale,
                                  speed=v.speed, smoothness=v.smoothness)


def build_model(cfg: RunConfig, grid: Grid, obs: Observations | None = None,
                velocity: Any = None, n_times: int | None = None,
                times: Any = None) -> AdvectionDiffusionModel:
    """The :class:`~tracerbayes.exact.model.AdvectionDiffusionModel` (velocity built if not given).

    ``model.n_modes: auto`` is :func:`model_modes` for ``n_times`` analysis times (30 if
    not given, or the length of ``times``); ``tracer.seasonal_modes: auto`` is
    :func:`seasonal_modes` for the analysis ``times`` (0 without them)."""
    velocity = build_velocity(cfg, grid) if velocity is None else velocity
    priors = build_priors(cfg, obs, grid)
    if n_times is None:
        n_times = 30 if times is None else len(times)
    n_modes = model_modes(cfg, grid, priors, n_times, times)[0]
    return AdvectionDiffusionModel(grid, velocity=velocity, priors=priors, n_modes=n_modes,
                                   transition=cfg.model.transition,
                                   conserved=cfg.tracer.conserved,
                                   mean_modes=cfg.tracer.mean_modes,
                                   forcing_modes=cfg.tracer.forcing_modes,
                                   seasonal_modes=seasonal_modes(cfg, times)[0],
                                   seasonal_harmonics=cfg.tracer.seasonal_harmonics,
                                   representation_error=cfg.model.representation_error)


def seasonal_modes(cfg: RunConfig, times: Any = None) -> tuple[int, str]:
    """The number of seasonally forced modes and why: the configured number, or for
    ``auto`` :func:`tracerbayes.exact.model.seasonal_modes_for` of the analysis ``times``
    (0 without them)."""
    from tracerbayes.exact.model import seasonal_modes_for

    if cfg.tracer.seasonal_modes != "auto":
        return int(cfg.tracer.seasonal_modes), "set in the config"
    if times is None:
        return 0, "no analysis times given"
    if cfg.model.transition == "projected":
        return 0, "model.transition: projected cannot carry it"
    return seasonal_modes_for(times, cfg.tracer.conserved)


def model_modes(cfg: RunConfig, grid: Grid, priors: Priors, n_times: int,
                times: Any = None) -> tuple[int, str]:
    """The number of modes of the fit and why: the configured number, or for ``auto``
    :func:`tracerbayes.exact.truncation.choose_n_modes`."""
    from tracerbayes.exact.truncation import choose_n_modes

    if cfg.model.n_modes != "auto":
        return int(cfg.model.n_modes), "set in the config"
    return choose_n_modes(grid, priors, n_times, extra_state=extra_state(cfg, times))


def extra_state(cfg: RunConfig, times: Any = None) -> int:
    """State entries beyond the modes: the mean state's, the forcing's and the seasonal
    forcing's (at most)."""
    return ((0 if cfg.tracer.conserved else cfg.tracer.mean_modes) + cfg.tracer.forcing_modes
            + 2 * seasonal_modes(cfg, times)[0] * cfg.tracer.seasonal_harmonics)


def fit_options(cfg: RunConfig) -> dict[str, Any]:
    """Keyword arguments for :func:`tracerbayes.fit` (after ``model, obs, times``): the
    method object of the ``method`` section, its seed, and the run's options."""
    drop = any(s.drop_invalid for s in cfg.observations)
    checks = ({} if cfg.validation.holdout is None else
              {"holdout": cfg.validation.holdout, "holdout_by": cfg.validation.by})
    return {"method": method_object(cfg.method), "seed": cfg.method.seed, "drop_invalid": drop,
            **checks}


def build_platforms(cfg: RunConfig) -> list[simulate.Platform]:
    """The observing platforms of ``cfg.simulate`` (:mod:`tracerbayes.twin.simulate`)."""
    if cfg.simulate is None:
        raise _fail(cfg, "simulate", "this configuration has no simulate section")
    out: list[simulate.Platform] = []
    for p in cfg.simulate.platforms:
        if isinstance(p, FloatsConfig):
            out.append(simulate.Floats(n_floats=p.n_floats, every=p.every, error=p.error,
                                       drift=p.drift, name=p.name))
        elif isinstance(p, GliderConfig | ShipConfig):
            kind = simulate.Glider if isinstance(p, GliderConfig) else simulate.Ship
            out.append(kind(waypoints=p.waypoints, speed=p.speed, error=p.error,
                            every=p.every, name=p.name))
        else:
            out.append(simulate.SatelliteSwath(
                width=p.width, error=p.error, cloud_fraction=p.cloud_fraction, every=p.every,
                angle=p.angle, cloud_lengthscale=p.cloud_lengthscale, name=p.name))
    return out


def build_truth(key: Any, cfg: RunConfig, grid: Grid, times: np.ndarray,
                velocity: Any = None) -> Any:
    """The synthetic truth of ``cfg.simulate.truth``
    (:func:`tracerbayes.twin.simulate.simulate_truth`).

    The first map is ``initial_mean`` plus mass-free Matérn-like noise of sd ``initial_sd``
    and lengthscale ``initial_lengthscale`` (:func:`~tracerbayes.twin.simulate.mass_free_noise`),
    so its area-weighted mean is ``initial_mean`` exactly; or, with ``initial_field:
    hadisst``, HadISST1 SST on the grid (:func:`tracerbayes.twin.scenarios.hadisst_on_grid`).
    ``noise_sd`` is per day: over a step of ``dt`` seconds the innovation sd is
    ``noise_sd * sqrt(dt / 86400 s)``. The current is the ``velocity`` section's field times
    ``velocity_scale`` (kind given) or the uniform ``(u, v)`` of the truth section (other
    kinds).

    Parameters
    ----------
    key : jax.random key
        Split into the first map's key and the innovations' key.
    cfg, grid, times
        The configuration, its grid and analysis times (:func:`build_grid`,
        :func:`build_times`).
    velocity : GivenVelocity, optional
        The built velocity, to avoid reading its file twice.
    """
    import jax

    if cfg.simulate is None:
        raise _fail(cfg, "simulate", "this configuration has no simulate section")
    t = cfg.simulate.truth
    if isinstance(cfg.velocity, GivenVelocityConfig):
        given = build_velocity(cfg, grid) if velocity is None else velocity
        face = physics.FaceVelocity(np.asarray(given.velocity.east) * t.velocity_scale,
                                    np.asarray(given.velocity.north) * t.velocity_scale)
    else:
        face = physics.constant_velocity(grid, t.u, t.v)
    steps = np.diff(times) / np.timedelta64(1, "s")
    if steps.size and not np.allclose(steps, steps[0], rtol=1e-12):
        raise _fail(cfg, "times", "simulate needs equally spaced analysis times")
    step = float(steps[0]) if steps.size else 86400.0
    k_initial, k_noise = jax.random.split(key)
    if t.initial_field == "hadisst":
        from tracerbayes.twin.scenarios import hadisst_on_grid

        initial = hadisst_on_grid(grid)
    else:
        initial = t.initial_mean + simulate.mass_free_noise(
            k_initial, grid, 1, t.initial_sd, t.initial_lengthscale * 1e3)[0]
    return simulate.simulate_truth(
        k_noise, grid, times, face, t.diffusivity, initial,
        noise_scale=t.noise_sd * np.sqrt(step / 86400.0),
        noise_lengthscale=t.noise_lengthscale * 1e3, name=cfg.tracer.name,
        long_name=cfg.tracer.long_name, units=cfg.tracer.units)
