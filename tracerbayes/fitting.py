"""``fit``: run an inference method (:mod:`tracerbayes.methods`) on a tracer model and
return a :class:`~tracerbayes.posterior.exact.Posterior`, with its diagnostics checked
(:class:`SamplingWarning`, :class:`ResolutionWarning`) and, optionally, held-out scores.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from tracerbayes.exact.model import AdvectionDiffusionModel
from tracerbayes.io.checkpoint import Checkpoint
from tracerbayes.methods import Method, method_from_name
from tracerbayes.observations.core import Observations
from tracerbayes.posterior.base import AbstractPosterior

__all__ = ["fit", "SamplingWarning", "ResolutionWarning", "CalibrationWarning", "ConvergenceError",
           "convergence_paragraph", "choose_method"]


class SamplingWarning(UserWarning):
    """The sampler's diagnostics say the posterior may not be trustworthy."""


class ResolutionWarning(UserWarning):
    """The fitted parameters say the reduced basis is too coarse for the field."""


class CalibrationWarning(UserWarning):
    """The held-out observations say the maps' uncertainty is too narrow or too wide."""


def _warn(post: Any) -> None:
    """Warn (to ``fit``'s caller) of what the posterior's diagnostics and, for the exact
    model's methods, its basis say."""
    for message in post.check_diagnostics():
        warnings.warn(message, SamplingWarning, stacklevel=3)
    if post.method in ("nuts", "laplace"):
        from tracerbayes.exact.truncation import basis_warnings

        for message in basis_warnings(post.model, post.flat_samples(), post.data):
            warnings.warn(message, ResolutionWarning, stacklevel=3)


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
    method: Method | str = "auto",
    *,
    seed: int = 0,
    progress: bool = True,
    drop_invalid: bool = False,
    blas_threads: int | None = 1,
    holdout: float | None = None,
    holdout_by: str = "random",
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
    **settings: Any,
) -> AbstractPosterior:
    """Fit ``model`` to ``obs`` at the analysis ``times`` with ``method``.

    Parameters
    ----------
    model : AdvectionDiffusionModel
    obs : Observations
    times : array of datetime64 or float seconds
        Strictly increasing analysis times; each observation goes to the nearest one.
    method : Method or str
        An inference method object with its settings (:mod:`tracerbayes.methods`):
        :class:`~tracerbayes.methods.Auto` (default: NUTS when its estimated work is small,
        else Laplace), :class:`~tracerbayes.methods.NUTS`,
        :class:`~tracerbayes.methods.Laplace`, :class:`~tracerbayes.methods.EnKF`,
        :class:`~tracerbayes.methods.ETKF`, :class:`~tracerbayes.methods.LETKF` or
        :class:`~tracerbayes.methods.EKI`; or its name (``"nuts"``), with its settings as
        further keyword arguments (``fit(..., "nuts", num_warmup=200)`` is
        ``fit(..., NUTS(num_warmup=200))``; a setting the method does not have is a
        ``TypeError``). The exact model's methods (auto, nuts, laplace, eki) fit the
        departures from the data mean (``post.offset``) and add it back to every output.
    seed : int
        Seeds every random choice of the fit (the sampler's PRNG key, the ensemble, the
        held-out split).
    progress : bool
        Show progress (bars, the chosen method, the starting points).
    drop_invalid : bool
        Drop (with a warning) observations that cannot be used instead of failing.
    blas_threads : int or None
        Threads of the BLAS/LAPACK library behind JAX's CPU decompositions (eigh, Cholesky)
        during the fit, set with ``threadpoolctl`` for the duration of the call only. The
        matrices here are small (ensemble-size or basis-size); threads cost more than they
        gain: one 64 x 64 ``eigh`` took 41 ms with OpenBLAS's 2 threads and 6 ms with 1 on a
        busy 2-core machine. None leaves the library's setting alone.
    holdout : float, optional
        Keep this fraction of the observations out of the fit and score the posterior's
        prediction of them (noise included): ``post.validation`` holds ``n``, ``rmse``,
        ``crps``, ``coverage`` (of the 90% predictive interval) and ``interval_width``;
        ``post.holdout`` the split (:mod:`tracerbayes.posterior.validation`). The split is
        drawn from ``seed``.
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
        differently). Laplace and EKI take no checkpoints (they are short, or their cost is
        in many independent likelihood evaluations); the folder is then unused. It is left
        in place; remove it once the result is safe. None (default): NUTS in one
        ``MCMC.run``, the ensemble methods without checkpoints.
    checkpoint_every : int, optional
        NUTS iterations (default 50) or ensemble cycles (default a tenth of the analysis
        times) between checkpoints.
    **settings
        With a method name: the method's settings.
    """
    from threadpoolctl import threadpool_limits

    if isinstance(method, str):
        method = method_from_name(method, **settings)
    elif not isinstance(method, Method):
        raise TypeError(f"method must be a method object (e.g. tb.NUTS(), tb.LETKF()) or its "
                        f"name, got {type(method).__name__}")
    elif settings:
        raise TypeError(f"settings {sorted(settings)} given beside the method object "
                        f"{type(method).__name__}(...); give them to it: "
                        f"{type(method).__name__}({', '.join(f'{k}=...' for k in settings)})")
    split = None
    if holdout is not None:
        from tracerbayes.posterior.validation import split_holdout

        split = split_holdout(obs, holdout, holdout_by, seed=seed)
        obs = split.train
    # The exact path fits the departures from the data mean: a field near 290 K and one near
    # 17 degC are the same problem to its numerics (the priors are relative to the data's
    # spread already). The ensemble state methods keep the values (their mass diagnostics
    # are relative to the totals).
    offset = float(np.mean(obs.value)) if method.centred and len(obs) else 0.0
    with threadpool_limits(limits=blas_threads):
        post = method.run(model, obs.shifted(-offset), times, seed=seed, progress=progress,
                          drop_invalid=drop_invalid, checkpoint=_checkpoint(checkpoint),
                          checkpoint_every=checkpoint_every)
        _warn(post)
        post.offset, post.obs = offset, obs
        if split is not None:
            from tracerbayes.posterior.validation import calibration_message, holdout_scores

            post.holdout = split
            post.validation = holdout_scores(post, split.test)
            message = calibration_message(post.validation, post.method)
            if message:
                warnings.warn(message, CalibrationWarning, stacklevel=2)
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
