"""Posteriors of the ensemble methods: the interface of :class:`~tracerbayes.posterior.base.
AbstractPosterior`, as NUTS's :class:`Posterior`.

:class:`EnsemblePosterior` (``enkf``, ``etkf``, ``letkf``): the maps are the smoothed
ensemble's mean and standard deviation at every time; quantiles are those of the Gaussian
with that mean and sd (with tens of members, empirical 5% and 95% quantiles are too noisy to
report per pixel). ``sample_maps`` returns smoothed members (approximate joint draws of the
trajectory). The physical parameters were held fixed; they are reported as a single draw.

:class:`InversionPosterior` (``eki``): the final EKS ensemble are the parameter draws
(one chain, ``ensemble_size`` draws); maps, LOO terms and NetCDF come from
:class:`Posterior` unchanged (Rao-Blackwellised mixture over the draws).

Ensemble collapse (:meth:`EnsemblePosterior.check_diagnostics`): if over the second half of
the window the root-mean-square innovation ``y - H xbar_f`` exceeds by a factor ``ratio_max``
what the ensemble expects, ``sqrt(spread^2 + error^2)`` (forecast spread in observation space
and the observation error), the ensemble is over-confident: its spread is far below its
error. The message says what to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import ndtri

from tracerbayes.posterior.base import AbstractPosterior
from tracerbayes.posterior.exact import Posterior, chain_diagnostics

if TYPE_CHECKING:
    import arviz as az

__all__ = ["EnsemblePosterior", "InversionPosterior"]


class EnsemblePosterior(AbstractPosterior):
    """Result of ``fit(method="enkf" | "etkf" | "letkf")``.

    The parameters were held fixed, so there is no pointwise log-likelihood (no
    ``pointwise_log_likelihood``: compare models with ``method="nuts"``, exact LOO terms).

    Attributes (beyond :class:`~tracerbayes.posterior.base.AbstractPosterior`'s)
    ---------------------------------------------------------------------------
    data : PreparedObservations
        The observations as prepared for the grid and analysis times.
    members : ndarray, shape (T, N_e, n_wet)
        Smoothed ensemble members.
    cycle : pandas.DataFrame
        Per analysis time: innovation mean and RMS, forecast spread in observation space,
        mean observation error, analysis RMS residual, forecast spread over the state,
        spread of member totals.
    mass_drift : dict
        ``forecast``: largest relative change of a member's total over a forecast step;
        ``smoothed``: largest relative change of a smoothed member's total over the window
        (both round-off for the mass-safe defaults).
    """

    def __init__(self, model: Any, obs: Any, times: Any, data: Any, samples: dict,
                 method: str, settings: dict, members: np.ndarray, cycle: pd.DataFrame,
                 mass_drift: dict[str, float], observations: Any):
        self.model = model
        self.obs = obs
        self.times = np.asarray(times)
        self.data = data
        self.samples = {k: np.asarray(v) for k, v in samples.items()}
        self.method = method
        self.settings = settings
        self.validation = None
        self.holdout = None
        self.offset = 0.0
        self.members = members
        self.cycle = cycle
        self.mass_drift = mass_drift
        self.observations = observations

    @classmethod
    def from_window(cls, model: Any, obs: Any, times: Any, prepared: Any, observations: Any,
                    params: dict, result: Any, *, method: str,
                    settings: dict) -> EnsemblePosterior:
        """Collect a :class:`~tracerbayes.ensemble.window.WindowResult`."""
        members = np.asarray(result.smoothed)
        area = model.grid.wet_area
        totals = members @ area  # (T, N_e)
        scale = max(float(np.abs(totals).mean()), np.finfo(float).tiny)
        forecast = np.asarray(result.forecast_totals)
        analysis = np.asarray(result.member_totals)
        drift = {"forecast": float(np.max(np.abs(forecast[1:] - analysis[:-1]), initial=0.0)
                                   / scale),
                 "smoothed": float(np.max(np.abs(totals - totals[:1])) / scale)}
        valid = np.asarray(observations.valid)
        counted = np.maximum(valid.sum(axis=1), 1)  # NaN where a time has no observation
        error_ms = np.where(valid, np.asarray(observations.sd) ** 2, 0.0).sum(axis=1) / counted
        cycle = pd.DataFrame({
            "time": np.asarray(times),
            "n_obs": valid.sum(axis=1),
            "innovation_mean": np.asarray(result.innovation_mean),
            "innovation_rms": np.asarray(result.innovation_rmse),
            "forecast_spread_obs": np.asarray(result.innovation_spread),
            "obs_error_rms": np.where(valid.any(axis=1), np.sqrt(error_ms), np.nan),
            "analysis_rms_obs": np.asarray(result.analysis_rmse_obs),
            "forecast_spread_state": np.asarray(result.forecast_spread),
            "total_spread": analysis.std(axis=1, ddof=1),
            "innovation_chi2": np.asarray(result.innovation_chi2),
            "inflation": np.asarray(result.inflation),
        })
        # spread/skill: the forecast's predicted innovation sd over the realised one
        cycle["spread_skill"] = (np.sqrt(cycle["forecast_spread_obs"] ** 2
                                         + cycle["obs_error_rms"] ** 2)
                                 / cycle["innovation_rms"])
        samples = {k: np.asarray(v, float)[None, None] for k, v in params.items()
                   if k not in ("mean_state", "seasonal")}  # fields, not parameters
        settings = {**settings, "mass_drift_forecast": drift["forecast"],
                    "mass_drift_smoothed": drift["smoothed"]}
        return cls(model, obs, times, prepared, samples, method, settings, members, cycle,
                   drift, observations)

    # ------------------------------------------------------------------ maps
    _LONG_NAMES = {"mean": "ensemble smoother mean of the tracer",
                   "sd": "ensemble smoother standard deviation of the tracer",
                   "quantiles": "Gaussian quantiles of the tracer"}

    def _map_attrs(self) -> dict[str, Any]:
        return {"method": self.method, "ensemble_size": int(self.members.shape[1]),
                "mass_drift_smoothed": self.mass_drift["smoothed"]}

    def maps(self, n_draws: int | None = None,
             quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """Maps on (time, lat, lon) from the smoothed ensemble: ``mean``, ``sd`` (members'
        standard deviation, ddof 1) and Gaussian ``quantiles``; NaN on land.
        ``n_draws`` is ignored (kept for :class:`AbstractPosterior`'s signature)."""
        fields = self._map_fields(self.members, quantiles)
        return self._maps_dataset(fields, quantiles, self._LONG_NAMES, self._map_attrs())

    def map_layout(self, n_draws: int | None = None,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """:meth:`maps` with placeholders for the values (see
        :meth:`AbstractPosterior.map_layout`); ``n_draws`` is ignored."""
        return self._maps_dataset(None, quantiles, self._LONG_NAMES, self._map_attrs())

    def map_chunks(self, chunk_times: int = 8, n_draws: int | None = None,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
                   ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The values of :meth:`maps`, ``chunk_times`` times at a time (see
        :meth:`AbstractPosterior.map_chunks`), each from those times' members only
        (``members[start:stop]`` is all that is read); ``n_draws`` is ignored."""
        n_times = self.members.shape[0]
        for start in range(0, n_times, chunk_times):  # no member chunk held while yielding
            yield start, self._cropped(self._map_fields(
                np.asarray(self.members[start:start + chunk_times]), quantiles))

    def _map_fields(self, members: np.ndarray, quantiles: tuple[float, ...]
                ) -> dict[str, np.ndarray]:
        """Mean, sd (ddof 1) and Gaussian quantiles on the grid of members (t, N_e, n)."""
        grid = self.model.grid
        mean = members.mean(axis=1) + self.offset
        sd = members.std(axis=1, ddof=1)
        qs = np.stack([mean + ndtri(p) * sd for p in quantiles])
        return {"mean": grid.to_field(mean), "sd": grid.to_field(sd),
                "quantiles": grid.to_field(qs)}

    def predict_observations(self, obs: Any, n_draws: int | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and sd (1, n) of new observations ``obs``: the smoothed members
        interpolated to each observation at its analysis time (mean and ddof-1 variance),
        plus the observation error times ``error_scale``; in the order of
        :meth:`predicted_values`. ``n_draws`` is ignored."""
        prepared = obs.prepare(self.model.grid, self.times)
        idx, w = prepared.operator.indices, prepared.operator.weights  # (m, 4)
        at_time = self.members[prepared.time_index]  # (m, N_e, n)
        values = np.einsum("mc,mec->me", w,
                           np.take_along_axis(at_time, idx[:, None, :], axis=2))
        scale = float(np.ravel(self.samples.get("error_scale", np.ones(1)))[0])
        var = values.var(axis=1, ddof=1) + (scale * prepared.error) ** 2
        return values.mean(axis=1)[None] + self.offset, np.sqrt(var)[None]

    def predicted_values(self, obs: Any) -> np.ndarray:
        """The values of ``obs`` in the order :meth:`predict_observations` uses."""
        return obs.prepare(self.model.grid, self.times).value

    def sample_maps(self, n: int, key: jax.Array) -> xr.DataArray:
        """``n`` smoothed members picked at random (with replacement), (sample, time, ...)."""
        grid = self.model.grid
        picks = np.asarray(jax.random.randint(key, (n,), 0, self.members.shape[1]))
        states = np.moveaxis(self.members[:, picks], 1, 0) + self.offset
        ydim, xdim = grid.dims
        return self._cropped_array(xr.DataArray(
            grid.to_field(states), dims=("sample", "time", ydim, xdim),
            coords={"time": self.times, **grid.coordinates()}, name="tracer_sample"))

    # ------------------------------------------------------------------ diagnostics
    def posterior_predictive(self, key: jax.Array) -> np.ndarray:
        """``y_rep`` at the observations from every smoothed member plus observation noise,
        (1, N_e, n_obs)."""
        obs = self.observations
        valid = np.asarray(obs.valid)
        idx, w = np.asarray(obs.operators.indices), np.asarray(obs.operators.weights)
        predicted = _observe_members(self.members, idx, w)
        noise = np.asarray(jax.random.normal(key, predicted.shape))
        reps = predicted + noise * np.asarray(obs.sd)[None]
        return reps[:, valid][None]

    def to_inference_data(self, posterior_predictive: bool = True,
                          key: jax.Array | None = None) -> az.InferenceData:
        """ArviZ InferenceData: ``posterior`` (the fixed parameters, one draw),
        ``observed_data``, ``posterior_predictive`` (smoothed members at the observations)
        and ``cycle_diagnostics`` (the :attr:`cycle` table); attrs record the method, its
        settings and the mass drift."""
        import arviz as az

        valid = np.asarray(self.observations.valid)
        observed = np.asarray(self.observations.values)[valid]
        predictive = None
        if posterior_predictive:
            key = jax.random.key(int(self.settings.get("seed", 0))) if key is None else key
            predictive = {"y": self.posterior_predictive(key)}
        idata = az.from_dict(posterior=self.samples, posterior_predictive=predictive,
                             observed_data={"y": observed}, dims={"y": ["obs"]},
                             attrs={"inference_method": self.method,
                                    **{f"setting_{k}": str(v)
                                       for k, v in self.settings.items()}})
        table = self.cycle.set_index("time").to_xarray()
        idata.add_groups({"cycle_diagnostics": table}, warn_on_custom_groups=False)
        return idata

    def parameter_table(self) -> pd.DataFrame:
        """The fixed parameter values (mean; sd 0; q5 = q95 = value)."""
        rows = {}
        for name, value in self.samples.items():
            flat = np.ravel(value)
            for j, v in enumerate(flat):
                label = name if flat.size == 1 else f"{name}[{j}]"
                rows[label] = {"mean": v, "sd": 0.0, "q5": v, "q95": v}
        return pd.DataFrame.from_dict(rows, orient="index")

    def summary(self) -> pd.DataFrame:
        """Per-time filter statistics (:attr:`cycle`)."""
        return self.cycle

    def check_diagnostics(self, ratio_max: float = 2.0) -> list[str]:
        """Ensemble collapse and mass drift, each with what to change."""
        problems = []
        half = self.cycle.iloc[len(self.cycle) // 2:]
        half = half[half["n_obs"] > 0]
        if len(half):
            expected = np.sqrt(np.mean(half["forecast_spread_obs"] ** 2
                                       + half["obs_error_rms"] ** 2))
            actual = float(np.sqrt(np.mean(half["innovation_rms"] ** 2)))
            ratio = actual / expected
            if ratio > ratio_max:
                spread = float(np.sqrt(np.mean(half["forecast_spread_obs"] ** 2)))
                problems.append(
                    f"ensemble collapse: the forecast misses the observations by {actual:.3g} "
                    f"(RMS) but expects {expected:.3g} (spread {spread:.3g} with the "
                    f"observation error), {ratio:.1f} times too confident over the second "
                    "half of the window; raise inflation (e.g. 1.1-1.3), ensemble_size or "
                    "the process noise (parameters={'noise_sd': ...}), or for LETKF shorten "
                    "localisation_km")
        for kind, drift in self.mass_drift.items():
            conserved = getattr(self.model, "conserved", True)  # else totals move by design
            if conserved and self.settings.get("mass_safe") and drift > 1e-8:
                problems.append(f"{kind} mass drift {drift:.1e} (relative): the mass-safe "
                                "defaults should keep totals to round-off; report this")
        return problems


def _observe_members(members: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``H_t x`` for every member: (N_e, T, m) from members (T, N_e, n), stencils (T, m, s)."""
    T, N, _ = members.shape
    out = np.empty((N, T, idx.shape[1]))
    for t in range(T):
        out[:, t] = np.sum(members[t][:, idx[t]] * w[t], axis=-1)
    return out


class InversionPosterior(Posterior):
    """Result of ``fit(method="eki")``: the EKS ensembles after burn-in, pooled (one chain
    per member, one draw per iteration), or the importance-corrected draws (one chain) with
    ``importance_draws``.

    ``misfits``: the ensemble-mean data misfit at each EKI then EKS iteration.
    ``eks_samples``: the pooled EKS draws ({name: (members, iterations)}, physical units),
    the same as ``samples`` unless importance-corrected.
    """

    def __init__(self, *args: Any, misfits: np.ndarray,
                 eks_samples: dict[str, np.ndarray] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.misfits = np.asarray(misfits)
        self.eks_samples = self.samples if eks_samples is None else eks_samples

    def check_diagnostics(self, rhat_max: float = 1.15, ess_min: float = 100) -> list[str]:
        """Whether EKS reached equilibrium and, with the importance correction, whether its
        Pareto k and failed draws are acceptable.

        Equilibrium: the misfit has settled (last quarter against the previous) and the
        members agree (rank-normalised split R-hat across the member chains at most
        ``rhat_max``; bulk ESS of the pooled draws at least ``ess_min``). The members are
        short, autocorrelated chains, so R-hat sits near 1.1 even at equilibrium (1.07-1.10
        on the twin of ``benchmarks/twin_letkf.py`` with 40 members and 50-60 kept
        iterations; 1.25-1.7 while the ensemble still drifts): the defaults are looser than
        NUTS's.
        """
        messages = []
        m = self.misfits
        q = max(1, len(m) // 4)
        last, before = m[-q:].mean(), m[-2 * q:-q].mean()
        if len(m) >= 8 and abs(last - before) > 0.05 * abs(before) + 1.0:
            messages.append(f"EKS misfit still moving ({before:.4g} -> {last:.4g}) over the "
                            "last iterations: raise eks_iterations")
        first = next(iter(self.eks_samples.values()))
        if first.shape[0] > 1 and first.shape[1] >= 4:
            worst, low = chain_diagnostics(self.eks_samples)
            if worst > rhat_max:
                messages.append(f"EKS members disagree: R-hat up to {worst:.3f} (> {rhat_max}) "
                                "over the kept iterations, the ensemble has not reached "
                                "equilibrium; raise eks_iterations and eks_burn_in")
            if low < ess_min:
                messages.append(f"EKS bulk ESS as low as {low:.0f} (< {ess_min:g}): keep more "
                                "iterations (eks_iterations) or members (ensemble_size)")
        k = self.settings.get("pareto_k")
        if k is not None and k > 0.7:
            messages.append(f"importance correction unreliable: Pareto k = {k:.2f} > 0.7 "
                            f"(effective draws {self.settings['importance_ess']:.0f}); raise "
                            "importance_draws or importance_rounds, or eks_iterations")
        failed = self.settings.get("importance_failed", 0)
        if failed > 0.01 * self.settings.get("importance_draws", 0):
            messages.append(f"the filter failed at {failed} of "
                            f"{self.settings['importance_draws']} importance draws (given zero "
                            "weight): the posterior reaches parameters the model cannot "
                            "evaluate; check the priors")
        return messages
