"""The ensemble filter: a forecast-analysis cycle for any JAX transition and any analysis.

At each observation time ``k = 0, ..., T-1``: forecast ``E <- transition(key, E)`` (skipped at
``k = 0`` when ``forecast_first`` is false, so that the first observations update ``E0``
itself, as in :func:`tracerbayes.exact.kalman.kalman_filter`), optional inflation of the forecast
``E <- inflation(key, E)``, then the analysis ``E <- analysis(key, E, obs_k, H_k)``.
:func:`run_cycle` is a front end of the ensemble engine
(:mod:`tracerbayes.ensemble.window`) without a smoothing buffer: one ``lax.scan`` (or a few,
with a progress bar over chunks of cycles). The observation containers live with the engine
and are re-exported here.

Analyses are plain functions ``(key, E, obs, H) -> E_a`` with ``obs`` a :class:`ObsAtTime`
and ``H`` its operator (matrix or function); :func:`enkf_analysis`, :func:`etkf_analysis` and
:func:`letkf_analysis` build them from :mod:`tracerbayes.ensemble.analysis`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes.ensemble import analysis as _analysis
from tracerbayes.ensemble.localisation import WeightNodes, distance_rows, mass_safe_letkf
from tracerbayes.ensemble.window import (
    Cycle,
    CycleObservations,
    Engine,
    ObsAtTime,
    Stencil,
    check_cycle_inputs,
    run_engine,
    shared_statistics,
)

__all__ = [
    "CycleObservations",
    "CycleResult",
    "ObsAtTime",
    "Stencil",
    "enkf_analysis",
    "etkf_analysis",
    "letkf_analysis",
    "run_cycle",
]


class CycleResult(NamedTuple):
    """Output of :func:`run_cycle`; T cycles, N_e members, n state variables.

    Attributes
    ----------
    analysis_mean, analysis_spread : Array, shape (T, n)
        Ensemble mean and standard deviation after each analysis.
    forecast_mean, forecast_spread : Array, shape (T, n)
        The same for the forecast (after inflation, before the analysis).
    innovation_mean, innovation_rmse : Array, shape (T,)
        Mean and root-mean-square of the valid innovations ``y - H xbar_f``.
    innovation_spread : Array, shape (T,)
        Root-mean forecast ensemble variance in observation space over the valid observations.
    analysis_rmse_obs : Array, shape (T,)
        Root-mean-square of ``y - H xbar_a`` over the valid observations.
    analysis_rmse, forecast_rmse : Array, shape (T,) or None
        RMSE of the means against ``truth`` when it is given.
    member_totals, forecast_totals : Array, shape (T, N_e) or None
        Area-weighted totals ``a^T x_j`` of each analysis / forecast member (``cell_area``).
    ensembles : Array, shape (T, N_e, n) or None
        Analysis ensembles, when ``store_ensembles``.
    final : Array, shape (N_e, n)
        The last analysis ensemble.
    """

    analysis_mean: jax.Array
    analysis_spread: jax.Array
    forecast_mean: jax.Array
    forecast_spread: jax.Array
    innovation_mean: jax.Array
    innovation_rmse: jax.Array
    innovation_spread: jax.Array
    analysis_rmse_obs: jax.Array
    analysis_rmse: jax.Array | None
    forecast_rmse: jax.Array | None
    member_totals: jax.Array | None
    forecast_totals: jax.Array | None
    ensembles: jax.Array | None
    final: jax.Array


Analysis = Callable[[jax.Array, jax.Array, ObsAtTime, Any], jax.Array]


def enkf_analysis(*, centre_perturbations: bool = True) -> Analysis:
    """Stochastic EnKF (:func:`~tracerbayes.ensemble.analysis.enkf`) as a cycle analysis."""
    def step(key, E, obs, H):
        return _analysis.enkf(key, E, obs.values, H, obs.sd, valid=obs.valid,
                              centre_perturbations=centre_perturbations)
    return step


def etkf_analysis(*, rotate: bool = False) -> Analysis:
    """ETKF (:func:`~tracerbayes.ensemble.analysis.etkf`), optionally randomly rotated."""
    def step(key, E, obs, H):
        return _analysis.etkf(E, obs.values, H, obs.sd, valid=obs.valid,
                              rotation_key=key if rotate else None)
    return step


def letkf_analysis(state_coords: Any, distance: Callable, radius: float, *,
                   rotate: bool = False, cell_area: Any = None,
                   batch_size: int | None = None, basins: Any = None,
                   nodes: WeightNodes | None = None) -> Analysis:
    """LETKF with distances ``distance(state_coords[i], obs.coords[j])``.

    With ``cell_area`` it is the mass-safe version
    (:func:`~tracerbayes.ensemble.localisation.mass_safe_letkf`; per connected basin with
    ``basins``, the integer basin label of every state variable), otherwise the plain
    :func:`~tracerbayes.ensemble.analysis.letkf`. Observations need ``coords``. With
    ``nodes`` the local weights are solved at ``nodes.coords`` only and interpolated
    (weight interpolation, :class:`~tracerbayes.ensemble.localisation.WeightNodes`).
    """
    state_coords = jnp.asarray(state_coords if nodes is None else nodes.coords)

    def step(key, E, obs, H):
        if obs.coords is None:
            raise ValueError("letkf_analysis needs observation coords in CycleObservations")
        rows = distance_rows(distance, state_coords, obs.coords)
        kwargs = dict(distances=rows, radius=radius, valid=obs.valid,
                      rotation_key=key if rotate else None, batch_size=batch_size, nodes=nodes)
        if cell_area is None:
            return _analysis.letkf(E, obs.values, H, obs.sd, **kwargs)
        return mass_safe_letkf(E, obs.values, H, obs.sd, cell_area=cell_area, basins=basins,
                               **kwargs)
    return step


def run_cycle(key: jax.Array, transition: Callable[[jax.Array, jax.Array], jax.Array],
              E0: jax.Array, observations: CycleObservations, analysis: Analysis, *,
              inflation: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
              observe: Callable[[jax.Array, ObsAtTime], jax.Array] | None = None,
              forecast_first: bool = True, truth: jax.Array | None = None,
              cell_area: Any = None, store_ensembles: bool = False,
              progress: bool = True, chunk_size: int | None = None) -> CycleResult:
    """Run ``T`` forecast-analysis cycles from the initial ensemble ``E0`` (N_e, n).

    Parameters
    ----------
    key : JAX key
        Split into one key per cycle for the transition, inflation and analysis.
    transition : callable ``(key, E) -> E``
        Any JAX function advancing the whole ensemble by one observation interval.
    E0 : Array, shape (N_e, n)
    observations : CycleObservations
    analysis : callable ``(key, E, obs, H) -> E``
    inflation : callable ``(key, E) -> E``, optional
        Applied to each forecast before the analysis (e.g. a partial of
        :func:`~tracerbayes.ensemble.inflation.multiplicative`).
    observe : callable ``(x, obs) -> (m,)``, optional
        Observation function of one member state, used when ``observations.operators`` is None.
    forecast_first : bool
        If false, the first analysis is applied to ``E0`` without a forecast.
    truth : Array (T, n), optional
        True states, for ``analysis_rmse`` and ``forecast_rmse``.
    cell_area : Array (n,), optional
        Cell areas (m^2), for the per-member totals ``a^T x_j``.
    store_ensembles : bool
        Keep every analysis ensemble (T, N_e, n); otherwise only means and spreads.
    progress : bool
        Show a tqdm bar over chunks of ``chunk_size`` cycles (default about T / 20); if false,
        the whole cycle is a single jit-compiled scan.

    Notes
    -----
    Compilation is cached on the identity of ``transition``, ``analysis``, ``inflation`` and
    ``observe`` (and on array shapes): reuse the same function objects across calls to run
    new data without recompiling.
    """
    E0 = check_cycle_inputs(E0, observations, observe)
    T = observations.values.shape[0]
    if truth is not None and np.shape(truth) != (T, E0.shape[1]):
        raise ValueError(f"truth has shape {np.shape(truth)}; expected (T, n) = "
                         f"({T}, {E0.shape[1]})")
    engine = Engine(transition, inflation, observe, forecast_first, lag=0,
                    statistics=_cycle_statistics, emit=store_ensembles)
    size = (chunk_size or max(1, -(-T // 20))) if progress else T
    state, out = run_engine(key, E0, observations, _AnalysisUpdate(analysis), engine,
                            truth=truth, cell_area=cell_area, chunk_size=size,
                            desc="cycles" if progress else None)
    out["ensembles"], out["final"] = out.pop("smoothed", None), state.carry[0]
    fields: dict[str, Any] = {name: out.get(name) for name in CycleResult._fields}
    return CycleResult(**fields)


class _AnalysisUpdate(NamedTuple):
    """A filter's analysis ``(key, E, obs, H) -> E_a`` as an update of the engine (whose
    smoothing buffer is empty)."""

    analysis: Callable

    def __call__(self, key, E_f, buffer, ob, H):
        return self.analysis(key, E_f, ob, H), buffer


def _cycle_statistics(c: Cycle) -> dict[str, Any]:
    """The per-cycle fields of :class:`CycleResult` (but the ensembles)."""
    mean_a, mean_f = c.analysis.mean(0), c.forecast.mean(0)
    return dict(analysis_mean=mean_a, analysis_spread=c.analysis.std(0, ddof=1),
                forecast_mean=mean_f, forecast_spread=c.forecast.std(0, ddof=1),
                analysis_rmse=_rmse(mean_a, c.truth), forecast_rmse=_rmse(mean_f, c.truth),
                **shared_statistics(c))


def _rmse(mean: jax.Array, truth: jax.Array | None) -> jax.Array | None:
    """Root-mean-square error of ``mean`` against the truth (None without one)."""
    return None if truth is None else jnp.sqrt(jnp.mean((mean - truth) ** 2))
