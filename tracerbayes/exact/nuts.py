"""NUTS over the exact model's physical parameters, the tracer field integrated out by the
Kalman filter (:mod:`tracerbayes.exact.model`); ``fit(method=NUTS(...))`` runs it.

Chains start at optimised posterior modes (:mod:`tracerbayes.exact.mode`) or prior draws,
run in parallel over the available JAX devices when there are enough of them, vectorised
otherwise (on a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX
starts exposes 4 devices). With a checkpoint the sampler runs in segments and saves its
state after each, and a fit given the checkpoint of an interrupted one continues it to the
same draws (:mod:`tracerbayes.exact.resumable`). The marginal likelihood comes from the
sequential Kalman filter or, with ``filter="parallel"``, from the associative scan of
:mod:`tracerbayes.exact.kalman_parallel` (for a GPU; the same values to round-off).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from tracerbayes.exact.kalman_parallel import KalmanFilter
from tracerbayes.exact.mode import optimised_starts
from tracerbayes.exact.model import AdvectionDiffusionModel
from tracerbayes.exact.resumable import EXTRA_FIELDS, Draws, load_nuts, sample_nuts
from tracerbayes.io.checkpoint import Checkpoint
from tracerbayes.posterior.exact import Posterior

__all__ = ["fit_nuts"]

#: The XLA flag that keeps the parallel filter's gradient from hanging on a CPU (docs/gpu.md).
CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def fit_nuts(model: AdvectionDiffusionModel, obs: Any, times: Any, *, num_warmup: int,
             num_samples: int, num_chains: int, target_accept: float, max_tree_depth: int,
             dense_mass: bool, chain_method: str, init: str, seed: int, progress: bool,
             drop_invalid: bool, checkpoint: Checkpoint | None = None,
             checkpoint_every: int | None = None, filter: str = "sequential") -> Posterior:
    """NUTS on ``model`` given ``obs`` at ``times``; the settings are those of
    :class:`tracerbayes.NUTS` (``filter``: ``'sequential'`` or ``'parallel'``, a
    :class:`~tracerbayes.exact.kalman_parallel.KalmanFilter`). With ``checkpoint``, segments
    of ``checkpoint_every`` iterations (default 50), each saved."""
    kalman = KalmanFilter(filter)
    if kalman is KalmanFilter.PARALLEL and jax.default_backend() == "cpu" and (
            CPU_SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", "")):
        warnings.warn("filter='parallel' on a CPU: with XLA's concurrency-optimised scheduler "
                      "on (the default), its compiled gradient has hung on this package's test "
                      f"machines; set XLA_FLAGS={CPU_SCHEDULER_FLAG} before JAX starts (see "
                      "docs/gpu.md), or use filter='sequential', which is faster on a CPU",
                      RuntimeWarning, stacklevel=2)
    data = model.prepare(obs, times, drop_invalid=drop_invalid)
    if chain_method == "auto":
        chain_method = "parallel" if jax.local_device_count() >= num_chains else "vectorized"

    def numpyro_model() -> None:
        model(data, kalman)

    kernel = NUTS(numpyro_model, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                  dense_mass=dense_mass)
    settings = {"num_warmup": num_warmup, "num_samples": num_samples, "num_chains": num_chains,
                "seed": seed, "target_accept": target_accept, "dense_mass": dense_mass,
                "chain_method": chain_method, "init": init}
    if kalman is not KalmanFilter.SEQUENTIAL:  # (absent for the default, so that checkpoints
        settings["filter"] = kalman.value  # written before the setting existed still resume)
    if checkpoint is None:
        draws = _run_mcmc(kernel, numpyro_model, settings, progress)
    else:
        draws = _run_segments(kernel, numpyro_model, settings, progress, checkpoint,
                              every=checkpoint_every or 50, max_tree_depth=max_tree_depth)
    return Posterior.from_mcmc(model, obs, times, data, draws, method="nuts", settings=settings)


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
