"""``AbstractPosterior``: what every result of :func:`tracerbayes.fit` offers.

The exact posterior (:class:`~tracerbayes.posterior.exact.Posterior`: NUTS, Laplace, EKI)
and the ensemble posterior (:class:`~tracerbayes.posterior.ensemble.EnsemblePosterior`:
EnKF, ETKF, LETKF) both give maps, predictions of new observations, random map draws,
posterior predictive replicates, ArviZ data, a parameter table and diagnostics; this class
names those methods and holds the ones written once for all (parameter draws, NetCDF).
:meth:`AbstractPosterior.write_maps` writes the maps as they are produced, one chunk of
times at a time (:meth:`AbstractPosterior.map_chunks`), so that memory does not grow with the
number of times.
A method only one family can give (the exact pointwise log-likelihood) lives on that family
alone: asking the other for it is an ``AttributeError``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    import arviz as az

__all__ = ["AbstractPosterior"]


class AbstractPosterior(abc.ABC):
    """A fitted posterior: the attributes and methods every method's result has.

    Attributes
    ----------
    model : the model fitted
    obs : Observations
        The observations fitted (in their own units).
    times : ndarray (T,)
        The analysis times.
    samples : dict of name -> ndarray (chain, draw, ...)
        Parameter draws (one chain of one draw where the parameters were held fixed).
    method : str
        The inference method that produced it.
    settings : dict
        The method's settings, as recorded in the outputs.
    validation : dict of str -> float or None
        Held-out validation scores (``fit(..., holdout=...)``).
    holdout : Holdout or None
        The held-out split (:class:`~tracerbayes.posterior.validation.Holdout`).
    offset : float
        Tracer units subtracted from every value before the fit, added back to every output.
    output_window : (slice, slice) or None
        The (y, x) slices of the model's grid that the maps are cut to: a grid padded beyond
        its open edges (:mod:`tracerbayes.grid.padding`, ``grid.pad`` in a config) maps the
        original box only. None (default): the whole grid.
    """

    model: Any
    obs: Any
    times: np.ndarray
    samples: dict[str, np.ndarray]
    method: str
    settings: dict
    validation: dict[str, float] | None
    holdout: Any
    offset: float
    output_window: tuple[slice, slice] | None = None

    # ------------------------------------------------------------------ draws
    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def flat_samples(self) -> dict[str, np.ndarray]:
        """Draws with chains concatenated: name -> (chain * draw, ...)."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    # ------------------------------------------------------------------ what each gives
    @abc.abstractmethod
    def maps(self, n_draws: int | None = 100,
             quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """Maps on (time, lat, lon): ``mean``, ``sd``, ``quantiles`` and ``mask``."""

    @abc.abstractmethod
    def map_layout(self, n_draws: int | None = 100,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """The Dataset :meth:`maps` returns (coordinates, mask, attributes), with
        placeholders that take no memory in place of the ``mean``, ``sd`` and ``quantiles``
        values (``np.broadcast_to(np.nan, shape)``), for
        :class:`~tracerbayes.io.netcdf.MapWriter`."""

    @abc.abstractmethod
    def map_chunks(self, chunk_times: int = 8, n_draws: int | None = 100,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
                   ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The values of :meth:`maps`, ``chunk_times`` times at a time, in time order:
        ``(start, {"mean": (t, lat, lon), "sd": (t, lat, lon), "quantiles": (quantile, t,
        lat, lon)})`` for the times ``start`` to ``start + t``, NaN on land."""

    @abc.abstractmethod
    def predict_observations(self, obs: Any, n_draws: int | None = 100
                             ) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and sd of new observations, (S, n) each, noise included."""

    @abc.abstractmethod
    def predicted_values(self, obs: Any) -> np.ndarray:
        """The values of ``obs`` in the order :meth:`predict_observations` uses."""

    @abc.abstractmethod
    def sample_maps(self, n: int, key: jax.Array) -> xr.DataArray:
        """``n`` joint draws of the map sequence, (sample, time, lat, lon)."""

    @abc.abstractmethod
    def posterior_predictive(self, key: jax.Array) -> np.ndarray:
        """Replicated observations at the observed points, (chain, draw, n_obs)."""

    @abc.abstractmethod
    def to_inference_data(self, posterior_predictive: bool = True,
                          key: jax.Array | None = None) -> az.InferenceData:
        """ArviZ InferenceData of the fit."""

    @abc.abstractmethod
    def parameter_table(self) -> pd.DataFrame:
        """Mean, sd and 5%/95% quantiles of every scalar parameter."""

    @abc.abstractmethod
    def summary(self) -> Any:
        """A table summarising the fit."""

    @abc.abstractmethod
    def check_diagnostics(self) -> list[str]:
        """Human-readable problems with the fit, each with what to try."""

    # ------------------------------------------------------------------ map datasets
    def _maps_dataset(self, fields: dict[str, np.ndarray] | None,
                      quantiles: tuple[float, ...], long_names: dict[str, str],
                      attrs: dict[str, Any]) -> xr.Dataset:
        """The layout of :meth:`maps` holding ``fields`` (``mean``, ``sd``, ``quantiles`` on
        the grid, with ``long_names``), or zero-stride NaN placeholders where None."""
        grid = self.model.grid
        ydim, xdim = grid.dims
        dims = ("time", ydim, xdim)
        shape = (len(self.times), *grid.mask.shape)
        if fields is None:
            fields = {"mean": np.broadcast_to(np.float64(np.nan), shape),
                      "sd": np.broadcast_to(np.float64(np.nan), shape),
                      "quantiles": np.broadcast_to(np.float64(np.nan),
                                                   (len(quantiles), *shape))}
        units = getattr(self.obs, "units", None) or "1"
        ds = xr.Dataset(coords={"time": self.times, **grid.coordinates()})
        for name in ("mean", "sd"):
            ds[name] = (dims, fields[name], {"long_name": long_names[name], "units": units})
        ds["quantiles"] = (("quantile", *dims), fields["quantiles"],
                           {"long_name": long_names["quantiles"], "units": units})
        ds = ds.assign_coords(quantile=("quantile", np.asarray(quantiles),
                                        {"long_name": "probability"}))
        ds["mask"] = ((ydim, xdim), grid.mask.astype(np.int8),
                      {"long_name": "water mask (1 on water, 0 on land)"})
        ds.attrs.update(attrs)
        return self._cropped_array(ds)

    def _cropped_array(self, obj: Any) -> Any:
        """A DataArray or Dataset on the model's grid cut to :attr:`output_window`."""
        if self.output_window is None:
            return obj
        ydim, xdim = self.model.grid.dims
        return obj.isel({ydim: self.output_window[0], xdim: self.output_window[1]})

    def _cropped(self, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``fields`` (``..., ny, nx`` on the model's grid) cut to :attr:`output_window`, as
        :meth:`map_chunks` yields them (the layout of :meth:`map_layout`)."""
        if self.output_window is None:
            return fields
        ys, xs = self.output_window
        return {name: value[..., ys, xs] for name, value in fields.items()}

    # ------------------------------------------------------------------ files
    def to_netcdf(self, path: Any, *, units: str | None = None,
                  long_name: str = "tracer concentration", standard_name: str | None = None,
                  n_draws: int = 100, **attributes: Any) -> xr.Dataset:
        """Write the maps as CF-1.10 NetCDF (atomically) and return the dataset written.

        ``units`` (UDUNITS; default the observations' units or "1"), ``long_name`` and
        ``standard_name`` describe the tracer; other keywords (title, history,
        config_text, institution, references) go to :func:`tracerbayes.io.netcdf.cf_dataset`.
        The parameter table is stored as global attributes.
        """
        from tracerbayes.io.files import check_output_file
        from tracerbayes.io.netcdf import cf_dataset, write_netcdf

        path = check_output_file(path)  # a bad path fails before the maps are computed
        units = units or getattr(self.obs, "units", None) or "1"
        ds = cf_dataset(self.maps(n_draws=n_draws), units=units, tracer_long_name=long_name,
                        tracer_standard_name=standard_name, method=self.method,
                        parameter_summary=self.parameter_table(), **attributes)
        write_netcdf(ds, path)
        return ds

    def write_maps(self, path: Any = None, *, zarr: Any = None, chunk_times: int = 8,
                   n_draws: int | None = 100,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95), units: str | None = None,
                   long_name: str = "tracer concentration", standard_name: str | None = None,
                   **attributes: Any) -> list[Path]:
        """Write the maps as :meth:`to_netcdf` does (and/or as a Zarr store), computing and
        writing them ``chunk_times`` times at a time; return the paths written.

        The file holds the same values (to round-off), attributes and encodings as
        :meth:`to_netcdf`'s, but only one chunk of the maps is in memory at a time
        (:meth:`map_chunks`, :class:`~tracerbayes.io.netcdf.MapWriter`): peak memory does
        not grow with the number of times. Written atomically; a failure leaves nothing at
        ``path`` or ``zarr`` (an earlier file there stays as it was). ``zarr`` is skipped,
        and not returned, without the optional ``zarr`` package.

        Parameters
        ----------
        path, zarr : path, optional
            The NetCDF-4 file and the Zarr store to write (at least one).
        chunk_times : int
            Times computed and written at once.
        n_draws, quantiles
            As :meth:`maps`.
        units, long_name, standard_name, attributes
            As :meth:`to_netcdf`.
        """
        from tracerbayes.io.files import check_output_file
        from tracerbayes.io.netcdf import MapWriter, cf_dataset

        if path is not None:
            path = check_output_file(path)  # a bad path fails before anything is computed
        units = units or getattr(self.obs, "units", None) or "1"
        layout = cf_dataset(self.map_layout(n_draws=n_draws, quantiles=quantiles),
                            units=units, tracer_long_name=long_name,
                            tracer_standard_name=standard_name, method=self.method,
                            parameter_summary=self.parameter_table(), **attributes)
        with MapWriter(layout, netcdf=path, zarr=zarr, chunk_times=chunk_times) as writer:
            for start, fields in self.map_chunks(chunk_times=chunk_times, n_draws=n_draws,
                                                 quantiles=quantiles):
                writer.write(start, fields)
        return writer.paths
