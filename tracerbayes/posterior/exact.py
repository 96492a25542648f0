"""``Posterior``: parameter draws, Rao-Blackwellised tracer maps, ArviZ and NetCDF export.

The maps are Rao-Blackwellised: for each of a set of posterior parameter draws
``theta_s`` the RTS smoother gives the exact Gaussian ``p(c_k | y, theta_s)``; the posterior
of ``c_k`` is the equal-weight mixture over draws, with (law of total variance)

    mean = avg_s mu_s,      var = avg_s sigma_s^2 + var_s mu_s,

and quantiles of the Gaussian mixture found by bisection on its CDF.

Pointwise log-likelihood, for LOO and WAIC. The observations of a state-space model are not
conditionally independent given the parameters (the tracer field links them), so the terms
``log p(y_i | theta)`` that PSIS-LOO assumes do not exist. Two exact alternatives are offered
(:meth:`Posterior.pointwise_log_likelihood`):

* ``kind="loo"`` (default, and what :meth:`Posterior.to_inference_data` stores): the
  leave-one-out conditional ``log p(y_i | y_{-i}, theta)``, the quantity Bürkner, Gabry &
  Vehtari (2021, "Efficient leave-one-out cross-validation for Bayesian non-factorized normal
  and Student-t models", Comput. Stat. 36, 1243-1261) show PSIS-LOO needs for non-factorised
  Gaussian models. From the RTS smoother: if ``f_i = h_i c`` has smoothed moments
  ``(mu, v)`` given all data, removing ``y_i``'s own Gaussian factor ``N(y_i; f_i, r_i)``
  leaves the cavity ``p(f_i | y_{-i})`` with precision ``1/v - 1/r_i`` and mean
  ``(mu/v - y_i/r_i) / (1/v - 1/r_i)``, and ``p(y_i | y_{-i}) = N(y_i; mean, var + r_i)``.
  ``az.loo`` on these terms estimates the expected log predictive density of a left-out
  observation; use it to compare models on the same data (e.g. diffusion only against
  advection-diffusion).
* ``kind="sequential"``: the one-step-ahead terms ``log p(y_i | y_{<i}, theta)`` of the
  Kalman filter (in time order, then row order within a time); they sum to the marginal
  log-likelihood. Suited to prequential / leave-future-out evaluation, not to PSIS-LOO.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from tracerbayes.exact.kalman import (
    KalmanObservations,
    kalman_filter,
    rts_smoother,
    sample_smoothed,
)
from tracerbayes.posterior.base import AbstractPosterior
from tracerbayes.posterior.metrics import mixture_quantiles

if TYPE_CHECKING:
    import arviz as az

__all__ = ["Posterior", "parameter_summary", "prior_edge_problems"]

_NON_PARAMETERS = ("y",)


class Posterior(AbstractPosterior):
    """The result of :func:`tracerbayes.fit`.

    Attributes
    ----------
    samples : dict of name -> ndarray (chain, draw, ...)
        Posterior draws of the physical parameters.
    sample_stats : dict of name -> ndarray (chain, draw)
        Sampler statistics (diverging, energy, ...).
    method : str
        The inference method that produced it.
    fit_model, fit_data
        The model (and its data) the parameters were fitted with; the pointwise
        log-likelihood and the posterior predictive draws (ArviZ's LOO and PPC) are its.
        ``model`` and ``data`` (the default) unless the maps use a finer basis than the fit
        (:func:`~tracerbayes.exact.laplace.fit_laplace`'s ``map_modes``): a diagnostic of the
        fitted model, at the fit's cost rather than the map basis's (on 400 map modes for a
        109-mode fit, each smoother per draw is some 20 times dearer).
    """

    def __init__(self, model: Any, obs: Any, times: Any, data: Any, samples: dict,
                 sample_stats: dict, method: str, settings: dict, *,
                 fit_model: Any = None, fit_data: Any = None):

        self.model = model
        self.obs = obs
        self.times = np.asarray(times)
        self.data = data
        if (fit_model is None) != (fit_data is None):
            raise ValueError("give fit_model and fit_data together (the fit's model and the "
                             "data it prepared), or neither")
        self.fit_model = model if fit_model is None else fit_model
        self.fit_data = data if fit_data is None else fit_data
        self.samples = {k: np.asarray(v) for k, v in samples.items()}
        self.sample_stats = {k: np.asarray(v) for k, v in sample_stats.items()}
        self.method = method
        self.settings = settings
        self._idata: az.InferenceData | None = None
        #: Held-out validation scores (``fit(..., holdout=...)``), else None.
        self.validation: dict[str, float] | None = None
        #: The held-out split (:class:`~tracerbayes.posterior.validation.Holdout`), else None.
        self.holdout: Any = None
        #: Tracer units subtracted from every value before the fit (:func:`tracerbayes.fit`
        #: fits the departures from the data mean, so a field near 290 K and one near 17
        #: degC are the same problem); added back to maps, draws and predictions.
        self.offset: float = 0.0

    @classmethod
    def from_mcmc(cls, model: Any, obs: Any, times: Any, data: Any, mcmc: Any, method: str,
                  settings: dict) -> Posterior:
        """Collect draws and statistics from a finished NumPyro ``MCMC``."""
        samples = mcmc.get_samples(group_by_chain=True)
        stats = mcmc.get_extra_fields(group_by_chain=True)
        samples = {k: v for k, v in samples.items() if k not in _NON_PARAMETERS}
        return cls(model, obs, times, data, samples, stats, method, settings)

    # ------------------------------------------------------------------ draws
    # (num_chains, num_draws, flat_samples and to_netcdf: AbstractPosterior)
    def _draws(self, n: int | None) -> dict[str, jax.Array]:
        flat = self.flat_samples()
        total = next(iter(flat.values())).shape[0]
        n = total if n is None else min(n, total)
        index = np.linspace(0, total - 1, n).round().astype(int)  # evenly thinned
        return {k: jnp.asarray(v[index]) for k, v in flat.items()}

    def _padded(self, params: dict, fitted: bool = False) -> KalmanObservations:
        """The observations with their error variances at ``params``, of the map model (or
        of the fit's, ``fitted``)."""
        model, d = (self.fit_model, self.fit_data) if fitted else (self.model, self.data)
        return KalmanObservations(d.values, d.operators,
                                  model.observation_variances(params, d), d.valid)

    # ------------------------------------------------------------------ maps
    _LONG_NAMES = {"mean": "posterior mean of the tracer",
                   "sd": "posterior standard deviation of the tracer",
                   "quantiles": "posterior quantiles of the tracer"}

    def _smoothed_moments(self, draws: dict) -> tuple[jax.Array, jax.Array]:
        """Per-draw map means and variances on wet cells: (S, T, N) each."""
        phi = jnp.asarray(self.model.state_vectors)

        def one(params):
            ssm = self.model.state_space(params, self.data)
            sm = rts_smoother(ssm, self._padded(params))
            return _cell_moments(phi, sm.smoothed_means, sm.smoothed_covs)

        return jax.lax.map(jax.jit(one), draws)

    def _smoothed_states(self, draws: dict, keep_covs: bool) -> tuple[jax.Array, jax.Array]:
        """Per-draw smoothed means of the basis coefficients (S, T, K), and their covariances
        (S, T, K, K) if ``keep_covs``, else the variances on the wet cells (S, T, N)."""
        phi = jnp.asarray(self.model.state_vectors)

        def one(params):
            ssm = self.model.state_space(params, self.data)
            sm = rts_smoother(ssm, self._padded(params))
            second = (sm.smoothed_covs if keep_covs
                      else _cell_variances(phi, sm.smoothed_covs))
            return sm.smoothed_means, second

        return jax.lax.map(jax.jit(one), draws)

    def _map_fields(self, means: jax.Array, variances: jax.Array,
                quantiles: tuple[float, ...]) -> dict[str, np.ndarray]:
        """The mixture's mean, sd and quantiles on the grid from per-draw means and variances
        (S, t, N) (law of total variance; bisection for the quantiles)."""
        grid = self.model.grid
        mean = means.mean(axis=0) + self.offset
        var = variances.mean(axis=0) + means.var(axis=0)
        sd = jnp.sqrt(jnp.clip(var, 0.0, None))
        qs = self.offset + mixture_quantiles(means, jnp.sqrt(jnp.clip(variances, 0.0, None)),
                                              quantiles)
        return {"mean": grid.to_field(np.asarray(mean)), "sd": grid.to_field(np.asarray(sd)),
                "quantiles": grid.to_field(np.asarray(qs))}

    def maps(self, n_draws: int | None = 100,
             quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
             ) -> xr.Dataset:
        """Posterior maps on (time, lat, lon): ``mean``, ``sd`` and ``quantiles``, NaN on land.

        Parameters
        ----------
        n_draws : int
            Number of evenly thinned posterior draws mixed (law of total variance).
        quantiles : tuple of float
            Probabilities of the mixture quantiles reported.
        """
        means, variances = self._smoothed_moments(self._draws(n_draws))
        return self._maps_dataset(self._map_fields(means, variances, quantiles), quantiles,
                                  self._LONG_NAMES, {"method": self.method,
                                                     "n_draws_mixed": int(means.shape[0])})

    def map_layout(self, n_draws: int | None = 100,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """:meth:`maps` with placeholders for the values (see
        :meth:`AbstractPosterior.map_layout`)."""
        total = self.num_chains * self.num_draws
        used = total if n_draws is None else min(n_draws, total)
        return self._maps_dataset(None, quantiles, self._LONG_NAMES,
                                  {"method": self.method, "n_draws_mixed": int(used)})

    def map_chunks(self, chunk_times: int = 8, n_draws: int | None = 100,
                   quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
                   ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The values of :meth:`maps`, ``chunk_times`` times at a time (see
        :meth:`AbstractPosterior.map_chunks`).

        One RTS smoother per draw keeps the smoothed basis coefficients' means (S, T, K) and,
        whichever is smaller, their covariances (S, T, K, K) or the variances on the cells
        (S, T, N); each chunk then projects them onto the cells for all draws and mixes them,
        so the other cell-space arrays are (S, chunk_times, N), not (S, T, N) as in
        :meth:`maps` (the mixture quantiles need every draw's mean and sd of a cell).
        """
        phi = jnp.asarray(self.model.state_vectors)
        n_cells, n_states = phi.shape
        keep_covs = n_states * n_states < n_cells
        states, second = self._smoothed_states(self._draws(n_draws), keep_covs)
        project = jax.jit(jax.vmap(lambda c: _cell_variances(phi, c)))
        for start in range(0, len(self.times), chunk_times):
            chunk = slice(start, start + chunk_times)
            variances = project(second[:, chunk]) if keep_covs else second[:, chunk]
            fields = self._map_fields(states[:, chunk] @ phi.T, variances, quantiles)
            del variances  # not held while the chunk is written
            yield start, self._cropped(fields)

    def predict_observations(self, obs: Any, n_draws: int | None = 100
                             ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior predictive of new observations ``obs`` (same grid and analysis times):
        per parameter draw, the mean and sd (observation error, times ``error_scale``,
        included) of each value, (S, n) each, in the order of :meth:`predicted_values`."""
        new = self.model.prepare(obs.shifted(-self.offset), self.times)
        draws = self._draws(n_draws)

        def one(params):
            sm = rts_smoother(self.model.state_space(params, self.data), self._padded(params))
            mean = jnp.einsum("tmk,tk->tm", new.operators, sm.smoothed_means)
            var = jnp.einsum("tmk,tkl,tml->tm", new.operators, sm.smoothed_covs,
                             new.operators)
            return mean, var + self.model.observation_variances(params, new)

        means, variances = jax.lax.map(jax.jit(one), draws)
        valid = np.asarray(new.valid)
        return (np.asarray(means)[:, valid] + self.offset,
                np.sqrt(np.clip(np.asarray(variances)[:, valid], 0.0, None)))

    def predicted_values(self, obs: Any) -> np.ndarray:
        """The values of ``obs`` in the order :meth:`predict_observations` uses."""
        new = self.model.prepare(obs, self.times)
        return np.asarray(new.values)[np.asarray(new.valid)]

    def sample_maps(self, n: int, key: jax.Array) -> xr.DataArray:
        """``n`` joint posterior samples of the whole map sequence, (sample, time, lat, lon).

        Each sample takes a random parameter draw and a joint draw of the trajectory given
        it (forward filtering, backward sampling).
        """
        grid = self.model.grid
        flat = self.flat_samples()
        total = next(iter(flat.values())).shape[0]
        k_pick, k_traj = jax.random.split(key)
        picks = np.asarray(jax.random.randint(k_pick, (n,), 0, total))
        phi = jnp.asarray(self.model.state_vectors)

        def one(args):
            index, k = args
            params = {name: jnp.asarray(v)[index] for name, v in flat.items()}
            ssm = self.model.state_space(params, self.data)
            z = sample_smoothed(k, ssm, self._padded(params), 1)[0]
            return z @ phi.T

        states = jax.lax.map(one, (jnp.asarray(picks), jax.random.split(k_traj, n)))
        states = states + self.offset
        ydim, xdim = grid.dims
        return self._cropped_array(xr.DataArray(
            grid.to_field(np.asarray(states)), dims=("sample", "time", ydim, xdim),
            coords={"time": self.times, **grid.coordinates()}, name="tracer_sample"))

    # ------------------------------------------------------------------ diagnostics
    def pointwise_log_likelihood(self, kind: str = "loo") -> np.ndarray:
        """Per-observation log-likelihood terms, (chain, draw, n_obs).

        ``kind="loo"``: ``log p(y_i | y_{-i}, theta)`` (for PSIS-LOO); ``kind="sequential"``:
        ``log p(y_i | y_{<i}, theta)`` (sum to the marginal log-likelihood). See the module
        docstring. Both are those of the fitted model (:attr:`fit_model`).
        """
        if kind not in ("loo", "sequential"):
            raise ValueError(f"kind={kind!r}; choose 'loo' or 'sequential'")
        valid = np.asarray(self.fit_data.valid)
        data, model = self.fit_data, self.fit_model

        def sequential(params):
            ssm = model.state_space(params, data)
            return kalman_filter(ssm, self._padded(params, fitted=True),
                                 update="joint").log_likelihood_terms

        def loo(params):
            padded = self._padded(params, fitted=True)
            sm = rts_smoother(model.state_space(params, data), padded)
            mean = jnp.einsum("tmk,tk->tm", data.operators, sm.smoothed_means)
            var = jnp.einsum("tmk,tkl,tml->tm", data.operators, sm.smoothed_covs,
                             data.operators)
            r = padded.variances
            precision = 1.0 / var - 1.0 / r  # of the cavity p(f_i | y_{-i})
            cavity_var = 1.0 / precision
            cavity_mean = (mean / var - data.values / r) * cavity_var
            s = cavity_var + r
            return -0.5 * (jnp.log(2 * jnp.pi * s) + (data.values - cavity_mean) ** 2 / s)

        one = loo if kind == "loo" else sequential
        flat = {k: jnp.asarray(v) for k, v in self.flat_samples().items()}
        terms = np.asarray(jax.lax.map(jax.jit(one), flat))  # (S, T, m)
        terms = terms[:, valid]
        return terms.reshape(self.num_chains, self.num_draws, -1)

    def posterior_predictive(self, key: jax.Array) -> np.ndarray:
        """Replicated observations ``y_rep`` at the observed points, (chain, draw, n_obs).

        For every posterior draw ``theta_s``: a trajectory ``c ~ p(c | y, theta_s)`` (forward
        filtering, backward sampling), then ``y_rep = H c + e`` with
        ``e ~ N(0, (error_scale * error)^2 + r)`` (``r``: the representation error of the
        modes left out, see ``AdvectionDiffusionModel.observation_variances``): draws of
        ``p(y_rep | y)`` for posterior predictive checks (ArviZ ``plot_ppc``, LOO-PIT), of
        the fitted model (:attr:`fit_model`).
        """
        model, data = self.fit_model, self.fit_data
        valid = np.asarray(data.valid)
        flat = {k: jnp.asarray(v) for k, v in self.flat_samples().items()}
        total = next(iter(flat.values())).shape[0]

        def one(args):
            params, k = args
            k_state, k_error = jax.random.split(k)
            padded = self._padded(params, fitted=True)
            ssm = model.state_space(params, data)
            z = sample_smoothed(k_state, ssm, padded, 1)[0]  # (T, K)
            mean = jnp.einsum("tmk,tk->tm", data.operators, z)
            noise = jax.random.normal(k_error, mean.shape, mean.dtype)
            return mean + jnp.sqrt(padded.variances) * noise

        reps = np.asarray(jax.lax.map(jax.jit(one), (flat, jax.random.split(key, total))))
        reps = reps + self.offset
        return reps[:, valid].reshape(self.num_chains, self.num_draws, -1)

    def to_inference_data(self, posterior_predictive: bool = True,
                          key: jax.Array | None = None) -> az.InferenceData:
        """ArviZ InferenceData: posterior, sample_stats, log_likelihood, observed_data and
        (by default) posterior_predictive at the observations.

        ``key`` seeds the posterior predictive draws (default: ``jax.random.key(seed)`` with
        the sampler's seed, so the result is reproducible).
        """
        import arviz as az

        if self._idata is not None and (posterior_predictive == ("posterior_predictive"
                                                               in self._idata.groups())):
            return self._idata
        valid = np.asarray(self.fit_data.valid)
        observed = np.asarray(self.fit_data.values)[valid] + self.offset
        stats = dict(self.sample_stats)
        if "potential_energy" in stats:
            stats["lp"] = -stats.pop("potential_energy")
        if "num_steps" in stats:
            stats["n_steps"] = stats.pop("num_steps")
        if "accept_prob" in stats:
            stats["acceptance_rate"] = stats.pop("accept_prob")
        predictive = None
        if posterior_predictive:
            if key is None:
                key = jax.random.key(int(self.settings.get("seed", 0)))
            predictive = {"y": self.posterior_predictive(key)}
        idata = az.from_dict(
            posterior=self.samples,
            posterior_predictive=predictive,
            sample_stats=stats,
            log_likelihood={"y": self.pointwise_log_likelihood()},
            observed_data={"y": observed},
            dims={"y": ["obs"]},
            attrs={"inference_method": self.method,
                   **{f"setting_{k}": str(v) for k, v in self.settings.items()}},
        )
        self._idata = idata
        return idata

    def parameter_table(self) -> pd.DataFrame:
        """Posterior mean, sd and 5%/95% quantiles of every scalar parameter."""
        return parameter_summary(self.samples)

    def summary(self) -> Any:
        """ArviZ summary table of the parameters (mean, sd, HDI, and ESS and R-hat when there
        are several chains)."""
        import arviz as az

        return az.summary(az.from_dict(posterior=self.samples),
                          kind="all" if self.num_chains > 1 else "stats")

    def check_diagnostics(self, rhat_max: float = 1.01, ess_min: float = 400) -> list[str]:
        """Human-readable problems with the sampler's output, each with what to try."""
        problems = []
        div = self.sample_stats.get("diverging")
        if div is not None and int(np.sum(div)) > 0:
            problems.append(
                f"{int(np.sum(div))} divergent transitions: the posterior has regions NUTS "
                "cannot explore; raise target_accept (e.g. 0.95) or tighten the priors"
            )
        if self.method == "laplace":  # independent draws from a Gaussian: no chain checks
            if not self.settings.get("laplace_gaussian", True):
                problems.append("the Hessian at the posterior mode is not positive definite "
                                "(a flat or saddle direction): the maps use the mode only; "
                                "tighten the priors or use method nuts")
            problems.extend(prior_edge_problems(self.model, self.samples))
            return problems
        worst, low = chain_diagnostics(self.samples)
        if worst > rhat_max:
            problems.append(f"R-hat up to {worst:.3f} (> {rhat_max}): chains disagree; "
                            "run longer (num_warmup, num_samples) or check priors")
        if low < ess_min:
            problems.append(f"bulk ESS as low as {low:.0f} (< {ess_min:g}): draw more samples "
                            "(num_samples) or chains")
        problems.extend(prior_edge_problems(self.model, self.samples))
        return problems


def _cell_moments(phi: jax.Array, means: jax.Array, covs: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """Means and variances on the wet cells, (T, N) each, of basis coefficients with means
    (T, K) and covariances (T, K, K): ``phi m`` and ``diag(phi P phi^T)`` with the basis
    vectors ``phi`` (N, K)."""
    return means @ phi.T, _cell_variances(phi, covs)


def _cell_variances(phi: jax.Array, covs: jax.Array) -> jax.Array:
    """``diag(phi P_t phi^T)`` on the wet cells, (T, N), of covariances ``P`` (T, K, K)."""
    return jnp.einsum("nk,tkl,nl->tn", phi, covs, phi)


def prior_edge_problems(model: Any, samples: dict[str, np.ndarray],
                        tail: float = 1e-3) -> list[str]:
    """Scalar parameters whose posterior median lies beyond the ``tail`` or ``1 - tail``
    quantile of its prior: the data push it where the prior says it should not be, which
    usually means the model is missing something (each with what to check)."""
    import numpyro

    sample_parameters = getattr(model, "sample_parameters", None)
    if sample_parameters is None:
        return []
    trace = numpyro.handlers.trace(numpyro.handlers.seed(sample_parameters, 0)).get_trace()
    problems = []
    for name, site in trace.items():
        prior = site.get("fn")
        draws = samples.get(name)
        if site.get("type") != "sample" or draws is None or np.ndim(draws) != 2:
            continue
        try:
            low, high = (float(prior.icdf(tail)), float(prior.icdf(1 - tail)))
        except (NotImplementedError, AttributeError, TypeError):
            continue
        median = float(np.median(draws))
        if median < low or median > high:
            side = "below" if median < low else "above"
            edge = low if median < low else high
            problems.append(
                f"{name}: posterior median {median:.4g} is {side} its prior's "
                f"{'lower' if side == 'below' else 'upper'} {tail:.1%} quantile ({edge:.4g}): "
                "the data push it where the prior says it should not be; check the units of "
                "the data and errors, whether the tracer is conserved (tracer.conserved), and "
                "whether the basis resolves the field (model.n_modes), before widening the "
                "prior")
    return problems


def chain_diagnostics(samples: dict[str, np.ndarray]) -> tuple[float, float]:
    """The largest rank-normalised R-hat (NaN for one chain) and the lowest bulk ESS over
    every parameter of ``{name: (chain, draw, ...)}``."""
    import arviz as az

    idata = az.from_dict(posterior=samples)
    worst = float("nan")
    if next(iter(samples.values())).shape[0] > 1:
        rhat = az.rhat(idata)
        worst = max(float(rhat[v].max()) for v in rhat.data_vars)
    ess = az.ess(idata, method="bulk")
    return worst, min(float(ess[v].min()) for v in ess.data_vars)


def parameter_summary(samples: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean, sd and 5%/95% quantiles of every scalar in ``{name: (chain, draw, ...)}``; a
    vector parameter gives one row per element, labelled ``name[j]``."""
    rows = {}
    for name, draws in samples.items():
        draws = np.asarray(draws)
        flat = draws.reshape(draws.shape[0] * draws.shape[1], -1)
        for j in range(flat.shape[1]):
            label = name if flat.shape[1] == 1 else f"{name}[{j}]"
            d = flat[:, j]
            rows[label] = {"mean": d.mean(), "sd": d.std(ddof=1),
                           "q5": np.quantile(d, 0.05), "q95": np.quantile(d, 0.95)}
    return pd.DataFrame.from_dict(rows, orient="index")



