"""Ensemble Kalman smoother (fixed-lag or whole-window) reusing the ETKF transform.

Every analysis here is a linear combination of the forecast members, ``E_a = X5 E_f`` with an
(N_e, N_e) transform ``X5`` (:func:`~tracerbayes.ensemble.analysis.etkf_transform`). Because
the members at earlier times are the same members, the observations at time ``k`` update the
ensemble at every earlier time ``t`` by the same combination, ``E_{t|k} = X5_k E_{t|k-1}``
(Evensen & van Leeuwen 2000, Eq. 22; Evensen 2003, Sec. 4.1). Keeping the last ``lag`` states
gives the fixed-lag smoother; ``lag = None`` updates the whole window (the ensemble Kalman
smoother, EnKS). For a linear model without model noise and an ensemble with exact Gaussian
moments this reproduces the Rauch-Tung-Striebel smoother.

:func:`ensemble_smoother` is a front end of the ensemble engine
(:mod:`tracerbayes.ensemble.window`): the engine with a global transform and a lag.

References
----------
Evensen, G. & van Leeuwen, P. J. (2000). An ensemble Kalman smoother for nonlinear dynamics.
Mon. Wea. Rev. 128, 1852-1867.
Evensen, G. (2003). The ensemble Kalman filter: theoretical formulation and practical
implementation. Ocean Dynamics 53, 343-367.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from tracerbayes.ensemble.analysis import etkf_transform
from tracerbayes.ensemble.window import (
    Cycle,
    CycleObservations,
    Engine,
    ObsAtTime,
    apply_transform,
    check_cycle_inputs,
    run_engine,
    window_lag,
)

__all__ = ["SmootherEnsembles", "ensemble_smoother", "etkf_transform_step"]


class SmootherEnsembles(NamedTuple):
    """Output of :func:`ensemble_smoother`.

    Attributes
    ----------
    smoothed : Array, shape (T, N_e, n)
        Ensembles at each time given the observations up to ``min(t + lag, T - 1)``.
    filtered : Array, shape (T, N_e, n)
        The filter's analysis ensembles (observations up to ``t``).
    """

    smoothed: jax.Array
    filtered: jax.Array


Transform = Callable[[jax.Array, jax.Array, ObsAtTime, Any], jax.Array]


def etkf_transform_step(*, rotate: bool = False) -> Transform:
    """The ETKF transform ``(key, E, obs, H) -> X5`` for :func:`ensemble_smoother`."""
    def step(key, E, obs, H):
        return etkf_transform(E, obs.values, H, obs.sd, valid=obs.valid,
                              rotation_key=key if rotate else None)
    return step


def ensemble_smoother(key: jax.Array, transition: Callable[[jax.Array, jax.Array], jax.Array],
                      E0: jax.Array, observations: CycleObservations, *,
                      lag: int | None = None, transform: Transform | None = None,
                      inflation: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                      observe: Callable[[jax.Array, ObsAtTime], jax.Array] | None = None,
                      forecast_first: bool = True) -> SmootherEnsembles:
    """Fixed-lag (``lag``) or whole-window (``lag=None``) ensemble smoother, jit-compiled.

    Arguments as :func:`~tracerbayes.ensemble.cycle.run_cycle`; ``transform`` returns the
    analysis transform ``X5`` (default: :func:`etkf_transform_step`). Memory is
    ``(lag + 1) N_e n`` for the buffer plus the (T, N_e, n) outputs; the whole window costs
    ``O(T^2 N_e^2 n)`` flops, a fixed lag ``O(T lag N_e^2 n)``.
    """
    E0 = check_cycle_inputs(E0, observations, observe)
    engine = Engine(transition, inflation, observe, forecast_first,
                    window_lag(lag, observations.values.shape[0]), _filtered)
    _, out = run_engine(key, E0, observations, _TransformUpdate(transform or _ETKF), engine)
    return SmootherEnsembles(out["smoothed"], out["filtered"])


class _TransformUpdate(NamedTuple):
    """An update of the engine from a transform ``(key, E, obs, H) -> X5``: the analysis and
    every buffered past state are multiplied by ``X5``."""

    transform: Transform

    def __call__(self, key, E_f, buffer, ob, H):
        return apply_transform(self.transform(key, E_f, ob, H), E_f, buffer)


def _filtered(c: Cycle) -> dict[str, Any]:
    """The smoother's per-cycle output besides the smoothed members: the analysis."""
    return {"filtered": c.analysis}


_ETKF = etkf_transform_step()  # the default, built once so that repeated calls reuse the jit
