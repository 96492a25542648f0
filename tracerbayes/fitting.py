"""``fit``: run inference on a tracer model and return a
:class:`~tracerbayes.posterior.exact.Posterior`.

``method="nuts"``: NumPyro's No-U-Turn sampler over the physical parameters, the tracer
field integrated out exactly by the Kalman filter (:mod:`tracerbayes.exact.model`). Chains run in
parallel over the available JAX devices when there are enough of them, vectorised otherwise
(on a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX starts
exposes 4 devices). With ``checkpoint=FOLDER`` the sampler runs in segments and saves its state
after each, and a fit given the checkpoint of an interrupted one continues it to the same draws
(:mod:`tracerbayes.exact.resumable`).

``method="enkf" | "etkf" | "letkf"``: the full-grid model run for an ensemble, filtered and
smoothed, parameters held at point values; ``method="eki"``: parameters by ensemble Kalman
inversion and sampling against the Kalman filter's likelihood (:mod:`tracerbayes.ensemble.fit`).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from tracerbayes.exact.mode import optimised_starts
from tracerbayes.exact.model import AdvectionDiffusionModel
from tracerbayes.exact.resumable import EXTRA_FIELDS, Draws, load_nuts, sample_nuts
from tracerbayes.io.checkpoint import Checkpoint
from tracerbayes.observations.core import Observations
from tracerbayes.posterior.exact import Posterior

__all__ = ["fit", "SamplingWarning", "ConvergenceError", "ChainMethod", "convergence_paragraph"]

#: Allowed values of ``chain_method``.
ChainMethod = ("auto", "parallel", "vectorized", "sequential")


class SamplingWarning(UserWarning):
    """The sampler's diagnostics say the posterior may not be trustworthy."""


class ResolutionWarning(UserWarning):
    """The fitted parameters say the reduced basis is too coarse for the field."""


def _warn_resolution(post: Any) -> None:
    from tracerbayes.exact.truncation import basis_warnings

    for message in basis_warnings(post.model, post.flat_samples(), post.data):
        warnings.warn(message, ResolutionWarning, stacklevel=4)


class ConvergenceError(RuntimeError):
    """A run whose diagnostics failed (raised by the command line unless the config sets
    ``method.allow_unconverged: true``); its message is one paragraph for the user."""


def convergence_paragraph(method: str, problems: list[str]) -> str:
    """One paragraph that says the fit is not to be trusted, why, and what to try."""
    what = {"nuts": "NUTS did not converge",
            "eki": "the ensemble Kalman sampler did not settle",
            "laplace": "the Laplace fit is not trustworthy"}.get(
        method, f"the {method.upper()} ensemble is not trustworthy")
    reasons = "; ".join(p.rstrip(".") for p in problems)
    return (f"{what}, so the maps and their uncertainty should not be used as they are: "
            f"{reasons}. The outputs were written for inspection (diagnostics/ holds the "
            "traces and the cycle statistics). Set method.allow_unconverged: true to accept "
            "such a run.")


def fit(
    model: AdvectionDiffusionModel,
    obs: Observations,
    times: Any,
    method: str = "nuts",
    *,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    seed: int = 0,
    target_accept: float = 0.8,
    max_tree_depth: int = 8,
    dense_mass: bool = True,
    chain_method: str = "auto",
    progress: bool = True,
    drop_invalid: bool = False,
    ensemble_size: int | None = None,
    localisation_km: float = 300.0,
    inflation: Any = "adaptive",
    parameters: Any = None,
    lag: int | None = None,
    mass_safe: bool = True,
    eki_iterations: int = 5,
    eks_iterations: int = 100,
    eks_burn_in: int | None = None,
    importance_draws: int = 0,
    weight_stride: int = 1,
    blas_threads: int | None = 1,
    init: str = "mode",
    holdout: float | None = None,
    holdout_by: str = "random",
    map_modes: Any = "auto",
    map_draws: int = 20,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
) -> Posterior:
    """Fit ``model`` to ``obs`` at the analysis ``times``.

    Parameters
    ----------
    model : AdvectionDiffusionModel
    obs : Observations
    times : array of datetime64 or float seconds
        Strictly increasing analysis times; each observation goes to the nearest one.
    method : {'nuts', 'auto', 'laplace', 'enkf', 'etkf', 'letkf', 'eki'}
        Inference method: NUTS over the parameters with the state marginalised (exact);
        ``laplace``: the exact model's posterior mode with a Gaussian about it and maps on a
        basis fine enough for the field (:mod:`tracerbayes.exact.laplace`); ``auto``: NUTS
        when its estimated work is small, else ``laplace`` (:func:`choose_method`, printed);
        an ensemble filter and smoother on the full grid with fixed parameters (``enkf``
        stochastic, ``etkf`` square root, ``letkf`` localised); or ``eki``: parameters by
        ensemble Kalman inversion then the ensemble Kalman sampler against the exact
        filter's likelihood, with Rao-Blackwellised maps. The exact methods fit the
        departures from the data mean (``post.offset``) and add it back to every output.
    num_warmup, num_samples, num_chains : int
        NUTS settings (per chain).
    seed : int
        Seeds the sampler's PRNG key.
    target_accept : float
        Target acceptance probability of NUTS's step-size adaptation.
    max_tree_depth : int
        Maximum NUTS tree depth (2**depth leapfrog steps at most).
    dense_mass : bool
        Adapt a dense mass matrix during warm-up (default), instead of a diagonal one. The
        physical parameters are correlated (a noise level and its lengthscale, an initial
        spread and its lengthscale); in the island twin a dense matrix cut the leapfrog steps
        per draw from about 13-18 to about 7. The cost is negligible for a few parameters.
    chain_method : {'auto', 'parallel', 'vectorized', 'sequential'}
        'auto' uses 'parallel' when there are at least ``num_chains`` devices, else
        'vectorized'.
    progress : bool
        Show a progress bar.
    drop_invalid : bool
        Drop (with a warning) observations that cannot be used instead of failing.
    ensemble_size : int, optional
        Ensemble members (default 64 for the state methods, 48 for ``eki``).
    localisation_km : float
        LETKF Gaspari-Cohn half-width in km (weights vanish at twice this distance).
    inflation : 'adaptive' or float
        ``'adaptive'`` (default): each forecast's covariance inflation is estimated from its
        innovations and smoothed in time (Li et al. 2009; ``post.cycle["inflation"]``), so the
        spread follows what the observations say it misses. A number: fixed multiplicative
        inflation of the forecast anomalies (1 = none); of their mass-free
        part when ``mass_safe``.
    parameters : 'auto', dict or Posterior, optional
        Physical parameter values for the state methods (default: prior medians), e.g. the
        result of ``fit(..., method="eki")``; ``'auto'``: the posterior mode of the exact
        reduced model (BFGS from two prior draws), the config's default.
    lag : int, optional
        Smoother lag in analysis times (default: the whole window when it fits in memory).
    mass_safe : bool
        Mass-safe inflation and localisation (default; every member keeps its total).
    eki_iterations, eks_iterations : int
        Iterations of EKI (to reach the posterior's region) and EKS (sampling) for ``eki``.
    eks_burn_in : int, optional
        For ``eki``: EKS iterations discarded before the ensembles are pooled into the
        posterior draws (one chain per member); default half of ``eks_iterations``.
    importance_draws : int
        For ``eki``: 0 (default) keeps the pooled EKS draws, exact only for a linear
        model; ``n > 0`` corrects them by importance sampling against the exact filter
        likelihood (two rounds of ``n`` Student-t draws, Pareto-smoothed weights; costs
        ``2 n`` likelihood evaluations, about ``2 n / (ensemble_size * eks_iterations)``
        of the EKS time) and returns ``n`` resampled draws; the Pareto ``k`` is checked
        (``settings["pareto_k"]``).
    weight_stride : int
        LETKF weight interpolation (Yang et al. 2009): solve the local analyses every
        ``weight_stride`` cells (in both directions) and interpolate their transforms
        bilinearly to the cells between; 1 (default) solves one per wet cell. The analysis
        cost falls by about ``weight_stride**2``; keep the stride well below the
        localisation radius over the cell size (see ``benchmarks/letkf_scale.py``).
    blas_threads : int or None
        Threads of the BLAS/LAPACK library behind JAX's CPU decompositions (eigh, Cholesky)
        during the fit, set with ``threadpoolctl`` for the duration of the call only. The
        matrices here are small (ensemble-size or basis-size); threads cost more than they
        gain: one 64 x 64 ``eigh`` took 41 ms with OpenBLAS's 2 threads and 6 ms with 1 on a
        busy 2-core machine. None leaves the library's setting alone.
    init : {'mode', 'prior'}
        NUTS starting points: ``'mode'`` (default) starts every chain at a local posterior
        mode found by BFGS from its own prior draw (:mod:`tracerbayes.exact.mode`), so warm-up
        begins where the posterior mass is and chains that find different modes disagree
        (R-hat says so); ``'prior'`` starts them at prior draws.
    holdout : float, optional
        Keep this fraction of the observations out of the fit and score the posterior's
        prediction of them (noise included): ``post.validation`` holds ``n``, ``rmse``,
        ``crps``, ``coverage`` (of the 90% predictive interval) and ``interval_width``;
        ``post.holdout`` the split (:mod:`tracerbayes.posterior.validation`). The split is
        drawn from ``seed``.
    map_modes : 'auto' or int
        ``method="laplace"``: basis vectors of the maps (default: enough for 95% of the
        fitted noise field's variance, at most 400).
    map_draws : int
        ``method="laplace"``: parameter draws from the Gaussian about the mode mixed into the
        maps.
    holdout_by : {'random', 'platform', 'block'}
        How the held-out observations are chosen: single rows, whole platforms, or whole
        spatial blocks (the map away from the data).
    checkpoint : path or Checkpoint, optional
        A folder for checkpoints of a long fit (:mod:`tracerbayes.io.checkpoint`). NUTS then
        runs in segments of ``checkpoint_every`` iterations (warm-up and sampling) and saves
        its state and the draws so far after each (:mod:`tracerbayes.exact.resumable`); the
        ensemble state methods save their ensemble every ``checkpoint_every`` cycles. A
        folder holding a checkpoint of the same fit (same settings and seed; for NUTS the
        same potential energy at the same starting points, for the ensemble methods the same
        initial ensemble, observations and parameters) is continued from its last segment,
        to the same posterior, bit for bit, as the fit never interrupted; a checkpoint of
        another fit raises :class:`~tracerbayes.io.checkpoint.CheckpointError`. The result
        does not depend on ``checkpoint_every``. Checkpointed NUTS draws equal those without
        a checkpoint in distribution, not bit for bit (the sampling loop is compiled
        differently). ``laplace`` and ``eki`` ignore it. The folder is left in place;
        remove it once the result is safe. None (default): NUTS in one ``MCMC.run``, the
        ensemble methods without checkpoints.
    checkpoint_every : int, optional
        NUTS iterations (default 50) or ensemble cycles (default a tenth of the analysis
        times) between checkpoints.
    """
    from threadpoolctl import threadpool_limits

    split = None
    if holdout is not None:
        from tracerbayes.posterior.validation import split_holdout

        split = split_holdout(obs, holdout, holdout_by, seed=seed)
        obs = split.train
    # The exact path fits the departures from the data mean: a field near 290 K and one near
    # 17 degC are the same problem to its numerics (the priors are relative to the data's
    # spread already). The ensemble state methods keep the values (their mass diagnostics
    # are relative to the totals).
    exact = method not in ("enkf", "etkf", "letkf")
    offset = float(np.mean(obs.value)) if exact and len(obs) else 0.0
    with threadpool_limits(limits=blas_threads):
        post = _fit(model, obs.shifted(-offset), times, method, num_warmup=num_warmup,
                    num_samples=num_samples,
                    num_chains=num_chains, seed=seed, target_accept=target_accept,
                    max_tree_depth=max_tree_depth, dense_mass=dense_mass,
                    chain_method=chain_method, progress=progress, drop_invalid=drop_invalid,
                    ensemble_size=ensemble_size, localisation_km=localisation_km,
                    inflation=inflation, parameters=parameters, lag=lag, mass_safe=mass_safe,
                    eki_iterations=eki_iterations, eks_iterations=eks_iterations,
                    eks_burn_in=eks_burn_in, importance_draws=importance_draws,
                    weight_stride=weight_stride, init=init, map_modes=map_modes,
                    map_draws=map_draws, checkpoint=_checkpoint(checkpoint),
                    checkpoint_every=checkpoint_every)
        post.offset, post.obs = offset, obs
        if split is not None:
            from tracerbayes.posterior.validation import holdout_scores

            post.holdout = split
            post.validation = holdout_scores(post, split.test)
            post.settings.update({"holdout": split.fraction, "holdout_by": holdout_by})
    return post


#: Largest estimated NUTS work (chains x iterations x 30 leapfrog steps x T x K^3) that
#: ``method="auto"`` still gives to NUTS: one Kalman-filter gradient took about 1e-9 s per
#: T K^3 on one core here (30 ms at K = 100, T = 30), so this is about ten minutes.
NUTS_BUDGET = 6e11


def choose_method(model: Any, obs: Any, times: Any, *, num_warmup: int = 500,
                  num_samples: int = 500, num_chains: int = 4) -> tuple[str, str]:
    """``method="auto"``: NUTS when its estimated work fits :data:`NUTS_BUDGET`, otherwise
    the Laplace fit (parameters at the exact model's posterior mode, maps on a basis fine
    enough for the field). Returns the method and the reason, in words."""
    T, K = len(np.asarray(times)), getattr(model, "state_size", model.n_modes)
    work = num_chains * (num_warmup + num_samples) * 30 * T * K**3
    if work <= NUTS_BUDGET:
        return "nuts", (f"{K} modes x {T} times: NUTS's estimated work {work:.1e} is "
                        f"within the budget {NUTS_BUDGET:.0e}")
    return "laplace", (f"{K} modes x {T} times: NUTS's estimated work {work:.1e} exceeds "
                       f"the budget {NUTS_BUDGET:.0e}; parameters at the posterior mode with a "
                       "Gaussian about it, maps on a basis fine enough for the field")


def _checkpoint(checkpoint: Any) -> Checkpoint | None:
    """``fit``'s ``checkpoint`` as a :class:`Checkpoint` (a folder path is wrapped)."""
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return checkpoint
    return Checkpoint(checkpoint)


def _fit(model, obs, times, method, *, num_warmup, num_samples, num_chains, seed,
         target_accept, max_tree_depth, dense_mass, chain_method, progress, drop_invalid,
         ensemble_size, localisation_km, inflation, parameters, lag, mass_safe,
         eki_iterations, eks_iterations, eks_burn_in, importance_draws,
         weight_stride, init, map_modes, map_draws, checkpoint, checkpoint_every) -> Posterior:
    if method == "auto":
        method, reason = choose_method(model, obs, times, num_warmup=num_warmup,
                                       num_samples=num_samples, num_chains=num_chains)
        if progress:
            print(f"method auto: {method} ({reason})", flush=True)
    if method == "laplace":
        from tracerbayes.exact.laplace import fit_laplace

        post = fit_laplace(model, obs, times, draws=map_draws, map_modes=map_modes, seed=seed,
                           progress=progress, drop_invalid=drop_invalid)
        for message in post.check_diagnostics():
            warnings.warn(message, SamplingWarning, stacklevel=3)
        _warn_resolution(post)
        return post
    if method in ("enkf", "etkf", "letkf", "eki"):
        from tracerbayes.ensemble import fit as ensemble_fit

        if method == "eki":
            post = ensemble_fit.fit_eki(model, obs, times, ensemble_size=ensemble_size or 48,
                                        eki_iterations=eki_iterations,
                                        eks_iterations=eks_iterations,
                                        eks_burn_in=eks_burn_in, seed=seed,
                                        importance_draws=importance_draws,
                                        progress=progress, drop_invalid=drop_invalid)
        else:
            post = ensemble_fit.fit_ensemble(
                model, obs, times, method, ensemble_size=ensemble_size or 64,
                localisation_km=localisation_km, inflation=inflation, parameters=parameters,
                lag=lag, mass_safe=mass_safe, seed=seed, progress=progress,
                drop_invalid=drop_invalid, weight_stride=weight_stride,
                checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        for message in post.check_diagnostics():
            warnings.warn(message, SamplingWarning, stacklevel=3)
        return post
    if method != "nuts":
        raise ValueError(f"method={method!r}; choose 'auto', 'nuts', 'laplace', 'enkf', 'etkf', "
                         "'letkf' or 'eki'")
    if chain_method not in ChainMethod:
        raise ValueError(f"chain_method={chain_method!r}; choose one of {ChainMethod}")
    if init not in ("mode", "prior"):
        raise ValueError(f"init={init!r}; choose 'mode' (optimised starting points) or "
                         "'prior' (prior draws)")
    data = model.prepare(obs, times, drop_invalid=drop_invalid)
    if chain_method == "auto":
        chain_method = "parallel" if jax.local_device_count() >= num_chains else "vectorized"

    def numpyro_model() -> None:
        model(data)

    kernel = NUTS(numpyro_model, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                  dense_mass=dense_mass)
    settings = {"num_warmup": num_warmup, "num_samples": num_samples, "num_chains": num_chains,
                "seed": seed, "target_accept": target_accept, "dense_mass": dense_mass,
                "chain_method": chain_method, "init": init}
    if checkpoint is None:
        draws = _run_mcmc(kernel, numpyro_model, settings, progress)
    else:
        draws = _run_segments(kernel, numpyro_model, settings, progress, checkpoint,
                              every=checkpoint_every or 50, max_tree_depth=max_tree_depth)
    posterior = Posterior.from_mcmc(model, obs, times, data, draws, method="nuts",
                                    settings=settings)
    for message in posterior.check_diagnostics():
        warnings.warn(message, SamplingWarning, stacklevel=3)
    _warn_resolution(posterior)
    return posterior


def _starts(numpyro_model: Any, settings: dict[str, Any], progress: bool
            ) -> dict[str, np.ndarray] | None:
    """NUTS starting points, (chain, ...) each: optimised modes (``init='mode'``), else None
    (the kernel draws them from the prior)."""
    if settings["init"] != "mode":
        return None
    num_chains = settings["num_chains"]
    starts = optimised_starts(jax.random.fold_in(jax.random.key(settings["seed"]), 1),
                              numpyro_model, num_chains)
    if progress:
        print(f"NUTS starts: {int(starts.optimised.sum())} of {num_chains} chains at an "
              f"optimised mode (potential energy {np.round(starts.energy, 1).tolist()})",
              flush=True)
    return dict(starts.params)


def _run_mcmc(kernel: Any, numpyro_model: Any, settings: dict[str, Any], progress: bool
              ) -> MCMC:
    """NUTS in one ``MCMC.run``."""
    num_chains = settings["num_chains"]
    mcmc = MCMC(kernel, num_warmup=settings["num_warmup"], num_samples=settings["num_samples"],
                num_chains=num_chains, chain_method=settings["chain_method"],
                progress_bar=progress)
    starts = _starts(numpyro_model, settings, progress)
    init_params = None if starts is None else {k: (v if num_chains > 1 else v[0])
                                               for k, v in starts.items()}
    mcmc.run(jax.random.key(settings["seed"]), init_params=init_params,
             extra_fields=EXTRA_FIELDS)
    return mcmc


def _run_segments(kernel: Any, numpyro_model: Any, settings: dict[str, Any], progress: bool,
                  checkpoint: Checkpoint, *, every: int, max_tree_depth: int) -> Draws:
    """NUTS in checkpointed segments of ``every`` iterations, continuing ``checkpoint``
    when it holds this fit's (:mod:`tracerbayes.exact.resumable`)."""
    if int(every) != every or every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {every}")
    # not ``every``: the draws do not depend on where the run is cut
    recorded = {**settings, "method": "nuts", "max_tree_depth": max_tree_depth}
    saved = load_nuts(checkpoint, recorded)
    if saved is None:
        starts = _starts(numpyro_model, settings, progress)
    else:
        starts = saved.starts
        if progress:
            print(f"NUTS: resuming from the checkpoint in {checkpoint.folder} after "
                  f"{saved.iterations} iterations", flush=True)
    say = (lambda line: print(line, flush=True)) if progress else (lambda line: None)
    return sample_nuts(jax.random.key(settings["seed"]), kernel, starts,
                       num_warmup=settings["num_warmup"], num_samples=settings["num_samples"],
                       num_chains=settings["num_chains"], chain_method=settings["chain_method"],
                       every=int(every), checkpoint=checkpoint, settings=recorded, saved=saved,
                       say=say)
