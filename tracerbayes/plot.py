"""Figures: posterior maps (cartopy, offline), a summary panel and ArviZ diagnostics.

Everything here imports matplotlib, cartopy, cmocean and ArviZ lazily, inside the functions,
so the numerical core of tracerbayes imports without them. Land is drawn from the model's own
mask (so it is always right, with no data to fetch); coastlines are added only when cartopy's
GSHHS shapefiles are already on disk (e.g. Debian's ``python-cartopy-data`` under
``/usr/share/cartopy/data``): nothing is ever downloaded. Every file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tracerbayes.io.files import atomic_path

__all__ = ["LAND_COLOR", "cycle_diagnostics", "diagnostics", "map_figure", "maps",
           "summary_panel"]

#: Colour of land cells (from the model mask) in every map.
LAND_COLOR = "#c9b99a"
#: Where Debian's python-cartopy-data puts Natural Earth and GSHHS shapefiles.
SYSTEM_CARTOPY_DATA = Path("/usr/share/cartopy/data")
#: The coarse GSHHS coastline (level 1: land/ocean), relative to a cartopy data directory.
GSHHS_COARSE = Path("shapefiles", "gshhs", "c", "GSHHS_c_L1.shp")
_FORMATS = ("png", "pdf", "svg")
_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")
# (words in the tracer's names, cmocean map, matplotlib fallback)
_TRACER_CMAPS = (
    (("temperature",), "thermal", "RdYlBu_r"),
    (("salinity",), "haline", "viridis"),
    (("chlorophyll",), "algae", "Greens"),
    (("oxygen",), "oxy", "cividis"),
)


# ---------------------------------------------------------------------- helpers
def _cmap(name: str, fallback: str) -> Any:
    """A cmocean colour map, or the matplotlib ``fallback`` without cmocean."""
    import matplotlib as mpl

    try:
        import cmocean
    except ImportError:
        return mpl.colormaps[fallback]
    return getattr(cmocean.cm, name)


def _variable_cmap(da: xr.DataArray, cmap: Any) -> Any:
    if da.name == "sd":
        return _cmap("amp", "Reds")
    if cmap is not None:
        return cmap
    text = " ".join(str(da.attrs.get(k, "")) for k in ("standard_name", "long_name")).lower()
    for words, name, fallback in _TRACER_CMAPS:
        if any(w in text for w in words):
            return _cmap(name, fallback)
    return _cmap("dense", "viridis")


def _lonlat(ds: xr.Dataset) -> bool:
    dims = tuple(ds["mask"].dims)
    if dims not in (("lat", "lon"), ("y", "x")):
        raise ValueError(f"ds['mask'] has dims {dims}; expected ('lat', 'lon') or ('y', 'x') "
                         "as made by Posterior.maps()")
    return dims == ("lat", "lon")


def _edges(centres: np.ndarray) -> np.ndarray:
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _axes_coords(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """Cell edges along x and y in plot units (degrees, or km on Cartesian grids)."""
    ydim, xdim = ds["mask"].dims
    scale = 1.0 if _lonlat(ds) else 1e-3
    x = _edges(np.asarray(ds[xdim].values, float)) * scale
    y = _edges(np.asarray(ds[ydim].values, float)) * scale
    return x, y, scale


def _gshhs_directory() -> Path | None:
    """A directory holding cartopy's coarse GSHHS coastline, if one is on disk."""
    import cartopy

    rel = GSHHS_COARSE
    for base in (cartopy.config.get("pre_existing_data_dir"), cartopy.config.get("data_dir"),
                 SYSTEM_CARTOPY_DATA):
        if base and str(base) not in ("", ".") and (Path(base) / rel).is_file():
            return Path(base)
    return None


def _new_axes(fig: Any, rows: int, cols: int, index: int, lonlat: bool) -> Any:
    if not lonlat:
        ax = fig.add_subplot(rows, cols, index)
        ax.set_aspect("equal")
        ax.set_xlabel("x (km)")
        ax.set_ylabel("y (km)")
        return ax
    import cartopy.crs as ccrs

    ax = fig.add_subplot(rows, cols, index, projection=ccrs.PlateCarree())
    gl = ax.gridlines(draw_labels=True, linewidth=0.3, color="0.5", alpha=0.5)
    gl.top_labels = gl.right_labels = False
    data_dir = _gshhs_directory()
    if data_dir is not None:  # read the shapefile where it is: cartopy's config is not ours
        import cartopy.feature as cfeature
        import cartopy.io.shapereader as shpreader

        reader = shpreader.Reader(str(data_dir / GSHHS_COARSE))
        ax.add_feature(cfeature.ShapelyFeature(list(reader.geometries()), ccrs.PlateCarree()),
                       facecolor="none", edgecolor="0.2", linewidth=0.6)
    return ax


def _draw_field(ax: Any, ds: xr.Dataset, values: np.ndarray, cmap: Any, vmin: float,
                vmax: float, label: str, title: str, colorbar: bool = True) -> Any:
    """A field over the land of the mask, with a colourbar."""
    from matplotlib.colors import ListedColormap

    x, y, _ = _axes_coords(ds)
    extra = {}
    if _lonlat(ds):
        import cartopy.crs as ccrs

        extra["transform"] = ccrs.PlateCarree()
    land = np.ma.masked_where(np.asarray(ds["mask"].values) != 0, np.ones(ds["mask"].shape))
    ax.pcolormesh(x, y, land, cmap=ListedColormap([LAND_COLOR]), vmin=0, vmax=2,
                  shading="flat", antialiased=False, **extra)
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                         shading="flat", **extra)
    if _lonlat(ds):
        ax.set_extent([x[0], x[-1], y[0], y[-1]], crs=extra["transform"])
    else:
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=label, shrink=0.85)
    ax.set_title(title, fontsize=10)
    return mesh


def _label(da: xr.DataArray) -> str:
    units = da.attrs.get("units")
    return f"{da.name} ({units})" if units else str(da.name)


def _time_label(t: Any) -> str:
    if np.issubdtype(np.asarray(t).dtype, np.datetime64):
        return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")
    return f"t = {float(t) / 86400:g} d"


def _time_stamp(k: int, t: Any) -> str:
    if np.issubdtype(np.asarray(t).dtype, np.datetime64):
        return f"{k:03d}_{pd.Timestamp(t).strftime('%Y%m%dT%H%M')}"
    return f"{k:03d}"


def _obs_frame(obs: Any, ds: xr.Dataset) -> pd.DataFrame | None:
    """Observations as x, y (plot units), value, platform and nearest analysis-time index."""
    if obs is None or len(obs) == 0:
        return None
    _, _, scale = _axes_coords(ds)
    times = np.asarray(ds["time"].values)
    t = np.asarray(obs.time)
    if t.dtype.kind != times.dtype.kind:
        raise ValueError("observation times and map times differ in kind (datetime vs float "
                         "seconds); use the observations the maps were fitted to")
    if times.dtype.kind == "M":
        t, times = t.astype("datetime64[ns]").astype(np.int64), times.astype(
            "datetime64[ns]").astype(np.int64)
    nearest = np.abs(t[:, None].astype(float) - times[None, :].astype(float)).argmin(axis=1)
    return pd.DataFrame({"x": np.asarray(obs.x) * scale, "y": np.asarray(obs.y) * scale,
                         "value": np.asarray(obs.value), "platform": np.asarray(obs.platform),
                         "k": nearest})


def _draw_obs(ax: Any, frame: pd.DataFrame, ds: xr.Dataset, mesh: Any = None) -> None:
    extra = {}
    if _lonlat(ds):
        import cartopy.crs as ccrs

        extra["transform"] = ccrs.PlateCarree()
    for j, (platform, rows) in enumerate(frame.groupby("platform", sort=True)):
        style = {"marker": _MARKERS[j % len(_MARKERS)], "s": 28, "edgecolors": "k",
                 "linewidths": 0.6, "label": str(platform), "zorder": 5}
        if mesh is not None:
            ax.scatter(rows["x"], rows["y"], c=rows["value"], cmap=mesh.cmap, norm=mesh.norm,
                       **style, **extra)
        else:
            ax.scatter(rows["x"], rows["y"], facecolors="none", **style, **extra)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)


def _save(fig: Any, path: Path, fmt: str) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)
    return path


def _check_format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(f"fmt={fmt!r} is not supported; use one of {_FORMATS}")
    return fmt


def _ranges(ds: xr.Dataset, variables: Sequence[str]) -> dict[str, tuple[float, float]]:
    """One colour range per variable over all times (sd from 0), so frames compare."""
    out = {}
    for name in variables:
        values = np.asarray(ds[name].values, float)
        if not np.isfinite(values).any():
            raise ValueError(f"ds[{name!r}] has no finite values to plot")
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        lo = 0.0 if name == "sd" else lo
        out[name] = (lo, hi if hi > lo else lo + 1.0)
    return out


# ---------------------------------------------------------------------- public
def map_figure(ds: xr.Dataset, index: int, obs: Any = None, *,
               variables: Sequence[str] = ("mean", "sd"), cmap: Any = None,
               ranges: dict[str, tuple[float, float]] | None = None) -> Any:
    """The figure of analysis time ``ds.time[index]``: one panel per variable.

    Land cells of ``ds['mask']`` are filled with :data:`LAND_COLOR`; observations whose
    nearest analysis time is this one are overlaid (one marker per platform, filled with
    their value on the first panel). Returns a ``matplotlib.figure.Figure`` (not shown).
    """
    from matplotlib.figure import Figure

    missing = [v for v in variables if v not in ds]
    if missing:
        raise ValueError(f"ds lacks variables {missing}; it has {sorted(ds.data_vars, key=str)}")
    lonlat = _lonlat(ds)
    ranges = ranges or _ranges(ds, variables)
    frame = _obs_frame(obs, ds)
    t = ds["time"].values[index]
    fig = Figure(figsize=(5.5 * len(variables), 4.5), dpi=100, layout="constrained")
    for j, name in enumerate(variables, start=1):
        da = ds[name].isel(time=index)
        if "quantile" in da.dims:
            da = da.sel(quantile=0.5, method="nearest")
        ax = _new_axes(fig, 1, len(variables), j, lonlat)
        mesh = _draw_field(ax, ds, np.asarray(da.values), _variable_cmap(ds[name], cmap),
                           *ranges[name], _label(ds[name]), f"{name}, {_time_label(t)}")
        if frame is not None and (frame["k"] == index).any():
            _draw_obs(ax, frame[frame["k"] == index], ds, mesh if j == 1 else None)
    return fig


def maps(ds: xr.Dataset, obs: Any = None, *, times: Sequence[Any] | None = None,
         variables: Sequence[str] = ("mean", "sd"), out_dir: str | os.PathLike | None = None,
         fmt: str = "png", cmap: Any = None, show_progress: bool = True) -> list[Path]:
    """Write one map figure per analysis time (see :func:`map_figure`).

    Parameters
    ----------
    ds : xarray.Dataset
        Posterior maps (:meth:`tracerbayes.Posterior.maps`, or its CF version).
    obs : tracerbayes.Observations, optional
        Overlaid at their nearest analysis time, one marker per platform.
    times : sequence, optional
        Positions (ints) or values (nearest) of the times to draw; default all.
    variables : sequence of str
        Panels, each with one colour range over all times; ``quantiles`` shows the median.
    out_dir : path, optional
        Directory of the figures (default ``./maps``).
    fmt : {'png', 'pdf', 'svg'}
    cmap : colour map, optional
        For the tracer panels (default: cmocean ``thermal``, ``haline``, ``algae`` or ``oxy``
        from the tracer's names; ``amp`` for ``sd``; matplotlib maps without cmocean).
    show_progress : bool
        A tqdm progress bar.

    Returns
    -------
    list of pathlib.Path
        The files written (atomically), in time order.
    """
    from tqdm.auto import tqdm

    fmt = _check_format(fmt)
    out_dir = Path("maps" if out_dir is None else out_dir)
    all_times = ds["time"].values
    if times is None:
        indices = list(range(all_times.size))
    else:
        indices = [int(t) if isinstance(t, (int, np.integer))
                   else int(ds.indexes["time"].get_indexer([t], method="nearest")[0])
                   for t in times]
    ranges = _ranges(ds, variables)
    paths = []
    for k in tqdm(indices, desc="maps", disable=not show_progress):
        fig = map_figure(ds, k, obs, variables=variables, cmap=cmap, ranges=ranges)
        paths.append(_save(fig, out_dir / f"map_{_time_stamp(k, all_times[k])}.{fmt}", fmt))
    return paths


def summary_panel(ds: xr.Dataset, obs: Any = None,
                  path: str | os.PathLike = "summary.png", cmap: Any = None) -> Path:
    """One figure: time-mean of the mean and of the sd, the last time's mean and sd, and
    every observation's position (one marker per platform) over the mask. Format from the
    suffix of ``path`` (.png or .pdf); written atomically."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = _check_format(path.suffix or "png")
    lonlat = _lonlat(ds)
    last = ds.isel(time=-1)
    panels = [("mean", ds["mean"].mean("time"), "time-mean of the posterior mean"),
              ("sd", ds["sd"].mean("time"), "time-mean of the posterior sd"),
              ("mean", last["mean"], f"mean, {_time_label(last['time'].values)}"),
              ("sd", last["sd"], f"sd, {_time_label(last['time'].values)}")]
    fig = Figure(figsize=(16, 8.5), dpi=100, layout="constrained")
    for j, (name, da, title) in enumerate(panels, start=1):
        values = np.asarray(da.values)
        lo = 0.0 if name == "sd" else float(np.nanmin(values))
        hi = max(float(np.nanmax(values)), lo + 1e-12)
        ax = _new_axes(fig, 2, 3, j + (j > 2), lonlat)
        _draw_field(ax, ds, values, _variable_cmap(ds[name], cmap), lo, hi,
                    _label(ds[name]), title)
    ax = _new_axes(fig, 2, 3, 3, lonlat)
    blank = np.where(np.asarray(ds["mask"].values) != 0, 0.0, np.nan)
    _draw_field(ax, ds, blank, ListedColormap(["white"]), 0.0, 1.0, "", "observations",
                colorbar=False)
    frame = _obs_frame(obs, ds)
    if frame is not None:
        _draw_obs(ax, frame, ds)
    return _save(fig, path, fmt)


def diagnostics(idata: Any, out_dir: str | os.PathLike, fmt: str = "png") -> list[Path]:
    """ArviZ trace, rank and energy plots and the ``az.summary`` table, written atomically.

    Files: ``trace.<fmt>``, ``rank.<fmt>``, ``energy.<fmt>`` (only when ``sample_stats``
    holds ``energy``, as NUTS runs do) and ``summary.csv`` (mean, sd and HDI of every
    parameter, with ESS and R-hat when there are several chains). Returns their paths.
    """
    import arviz as az
    import matplotlib.pyplot as plt

    fmt = _check_format(fmt)
    out_dir = Path(out_dir)
    plots: dict[str, Callable[..., Any]] = {"trace": az.plot_trace, "rank": az.plot_rank}
    if "sample_stats" in idata.groups() and "energy" in idata.sample_stats:
        plots["energy"] = az.plot_energy
    paths = []
    for name, plot in plots.items():
        axes = plot(idata)
        fig = np.ravel(axes)[0].figure
        try:
            paths.append(_save(fig, out_dir / f"{name}.{fmt}", fmt))
        finally:
            plt.close(fig)
    # one chain (independent draws: Laplace, a single NUTS chain): no R-hat, whose
    # computation ArviZ refuses with a warning; mean, sd and HDI only
    several = idata.posterior.sizes.get("chain", 1) > 1
    with atomic_path(out_dir / "summary.csv") as tmp:
        az.summary(idata, round_to="none", kind="all" if several else "stats").to_csv(tmp)
    paths.append(out_dir / "summary.csv")
    return paths


def cycle_diagnostics(cycle: pd.DataFrame, out_dir: str | os.PathLike,
                      fmt: str = "png") -> list[Path]:
    """Spread and innovation statistics of an ensemble run, written atomically.

    ``cycle`` is :attr:`EnsemblePosterior.cycle <tracerbayes.posterior.ensemble.
    EnsemblePosterior.cycle>`. Files: ``cycle.csv`` (the table) and ``spread.<fmt>``: the
    RMS innovation against what the ensemble expects, ``sqrt(spread^2 + error^2)`` (a
    well-tuned ensemble keeps them together; a collapsed one has the first far above), the
    forecast spread in observation space, and the mean innovation (bias).
    """
    import matplotlib.pyplot as plt

    fmt = _check_format(fmt)
    out_dir = Path(out_dir)
    paths = []
    with atomic_path(out_dir / "cycle.csv") as tmp:
        cycle.to_csv(tmp, index=False)
    paths.append(out_dir / "cycle.csv")
    t = np.arange(len(cycle))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    expected = np.sqrt(cycle["forecast_spread_obs"] ** 2 + cycle["obs_error_rms"] ** 2)
    top.plot(t, cycle["innovation_rms"], "o-", label="RMS innovation y - H mean")
    top.plot(t, expected, "s--", label="expected: sqrt(spread² + error²)")
    top.plot(t, cycle["forecast_spread_obs"], ":", label="forecast spread (obs space)")
    top.plot(t, cycle["analysis_rms_obs"], "^-", alpha=0.6, label="RMS analysis residual")
    top.set_ylabel("tracer units")
    top.legend(fontsize=8)
    bottom.axhline(0.0, color="0.6", lw=0.8)
    bottom.plot(t, cycle["innovation_mean"], "o-", label="mean innovation (bias)")
    bottom.set_xlabel("analysis time index")
    bottom.set_ylabel("tracer units")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    try:
        paths.append(_save(fig, out_dir / f"spread.{fmt}", fmt))
    finally:
        plt.close(fig)
    return paths
