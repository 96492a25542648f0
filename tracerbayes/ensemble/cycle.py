"""A generic, jit-compiled forecast-analysis cycle for any JAX transition.

At each observation time ``k = 0, ..., T-1``: forecast ``E <- transition(key, E)`` (skipped at
``k = 0`` when ``forecast_first`` is false, so that the first observations update ``E0``
itself, as in :func:`tracerbayes.exact.kalman.kalman_filter`), optional inflation of the forecast
``E <- inflation(key, E)``, then the analysis ``E <- analysis(key, E, obs_k, H_k)``. The whole
cycle is one ``lax.scan`` (or a few, with a progress bar over chunks of cycles).

Analyses are plain functions ``(key, E, obs, H) -> E_a`` with ``obs`` a :class:`ObsAtTime`
and ``H`` its operator (matrix or function); :func:`enkf_analysis`, :func:`etkf_analysis` and
:func:`letkf_analysis` build them from :mod:`tracerbayes.ensemble.analysis`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes.ensemble import analysis as _analysis
from tracerbayes.ensemble.localisation import WeightNodes, distance_rows, mass_safe_letkf

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


class Stencil(NamedTuple):
    """A sparse linear observation operator: observation ``i`` is
    ``sum_s weights[i, s] * x[indices[i, s]]`` (e.g. bilinear interpolation from four wet
    cells). Leading time axis in :class:`CycleObservations`: (T, m, s) each."""

    indices: jax.Array
    weights: jax.Array

    def apply(self, x: jax.Array) -> jax.Array:
        """Predicted observations (m,) of one state (n,)."""
        return jnp.sum(x[self.indices] * self.weights, axis=-1)


def operator_of(ob: Any, observe: Callable | None) -> Any:
    """The operator ``H`` of one time slice: a dense matrix, a stencil's function, or
    ``observe`` bound to the slice."""
    if isinstance(ob.operators, Stencil):
        return ob.operators.apply
    if ob.operators is not None:
        return ob.operators
    if observe is None:
        raise ValueError("give observations.operators (T, m, n) or an observe function")
    return lambda x: observe(x, ob)


class CycleObservations(NamedTuple):
    """Time-stacked, padded observations ``y_k = H_k x_k + e_k``, ``e_k ~ N(0, diag(sd_k^2))``.

    Attributes
    ----------
    values : Array, shape (T, m)
        Observed values (anything, even NaN, where not ``valid``).
    sd : Array, shape (T, m)
        Observation-error standard deviations (units of ``values``), > 0 where valid.
    valid : bool Array, shape (T, m)
        Which entries are real observations (counts may vary in time).
    operators : Array, shape (T, m, n), or Stencil with (T, m, s) arrays, optional
        Linear observation operators (dense, or sparse stencils); if None, ``run_cycle``
        needs ``observe``.
    coords : Array, shape (T, m, d), optional
        Observation positions, for localisation.
    """

    values: jax.Array
    sd: jax.Array
    valid: jax.Array
    operators: jax.Array | Stencil | None = None
    coords: jax.Array | None = None


class ObsAtTime(NamedTuple):
    """One time slice of :class:`CycleObservations` (same fields, leading axis removed)."""

    values: jax.Array
    sd: jax.Array
    valid: jax.Array
    operators: jax.Array | Stencil | None = None
    coords: jax.Array | None = None


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


def check_cycle_inputs(E0: Any, observations: CycleObservations, observe: Any) -> jax.Array:
    """Check a starting ensemble (N_e, n) and the observations for a cycle or smoother;
    return the ensemble as an array."""
    E0 = jnp.asarray(E0)
    if E0.ndim != 2 or E0.shape[0] < 2:
        raise ValueError(f"E0 must have shape (N_e, n) with N_e >= 2, got {E0.shape}")
    check_observations(observations, E0.shape[1])
    if observations.operators is None and observe is None:
        raise ValueError("give observations.operators (T, m, n) or an observe function")
    return E0


def check_observations(obs: CycleObservations, n: int) -> None:
    """Raise a clear ``ValueError`` for bad shapes, non-positive sds or NaN valid values."""
    values, sd, valid = (np.asarray(a) for a in (obs.values, obs.sd, obs.valid))
    if values.ndim != 2:
        raise ValueError(f"observations.values must have shape (T, m), got {values.shape}")
    for name, arr in (("sd", sd), ("valid", valid)):
        if arr.shape != values.shape:
            raise ValueError(f"observations.{name} has shape {arr.shape}; expected "
                             f"{values.shape} like observations.values")
    if isinstance(obs.operators, Stencil):
        shapes = {np.shape(a)[:2] for a in obs.operators}
        if shapes != {values.shape} or np.shape(obs.operators.indices) != np.shape(
                obs.operators.weights):
            raise ValueError(f"observations.operators stencil arrays have shapes "
                             f"{[np.shape(a) for a in obs.operators]}; expected (T, m, s) "
                             f"with (T, m) = {values.shape}, indices and weights alike")
    elif obs.operators is not None and np.shape(obs.operators) != values.shape + (n,):
        raise ValueError(f"observations.operators has shape {np.shape(obs.operators)}; "
                         f"expected (T, m, n) = {values.shape + (n,)}")
    if obs.coords is not None and np.shape(obs.coords)[:2] != values.shape:
        raise ValueError(f"observations.coords has shape {np.shape(obs.coords)}; expected "
                         f"(T, m, d) with (T, m) = {values.shape}")
    valid = valid.astype(bool)
    bad = np.argwhere(valid & ~(sd > 0) | valid & ~np.isfinite(sd))
    if bad.size:
        raise ValueError(f"{len(bad)} valid observation error sd(s) are not positive and "
                         f"finite (first at time {bad[0][0]}, row {bad[0][1]}: "
                         f"{sd[tuple(bad[0])]}); fix them or set valid=False there")
    bad = np.argwhere(valid & ~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{len(bad)} valid observation value(s) are NaN/inf (first at time "
                         f"{bad[0][0]}, row {bad[0][1]}); set valid=False for them")


def _obs_stats(E_f, E_a, obs: ObsAtTime, H):
    used = obs.valid
    count = jnp.maximum(used.sum(), 1)
    HE = _analysis.observe(E_f, H)
    innovation = jnp.where(used, obs.values - HE.mean(axis=0), 0.0)
    residual = jnp.where(used, obs.values - _analysis.observe(E_a, H).mean(axis=0), 0.0)
    spread = jnp.where(used, HE.var(axis=0, ddof=1), 0.0)
    return (innovation.sum() / count, jnp.sqrt((innovation**2).sum() / count),
            jnp.sqrt(spread.sum() / count), jnp.sqrt((residual**2).sum() / count))


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
    area = None if cell_area is None else jnp.asarray(cell_area, E0.dtype)
    obs = jax.tree.map(jnp.asarray, observations._replace(valid=jnp.asarray(
        observations.valid, bool)))

    config = _CycleConfig(transition, analysis, inflation, observe, forecast_first,
                          store_ensembles)

    def chunk(E, ks, keys, ob, true):
        return _scan_cycles(config, E, ks, keys, ob, true, area)

    keys = jax.random.split(key, T)
    ks = jnp.arange(T)
    true = None if truth is None else jnp.asarray(truth)
    if not progress:
        E, out = chunk(E0, ks, keys, tuple(obs), true)
    else:
        from tqdm.auto import tqdm

        size = chunk_size or max(1, -(-T // 20))
        E, pieces = E0, []
        with tqdm(total=T, desc="cycles", unit="cycle") as bar:
            for start in range(0, T, size):
                part = slice(start, min(start + size, T))
                sub = jax.tree.map(lambda a, p=part: a[p], (ks, keys, tuple(obs), true))
                E, piece = chunk(E, *sub)
                pieces.append(piece)
                bar.update(part.stop - part.start)
        out = jax.tree.map(lambda *a: jnp.concatenate(a), *pieces)
    return CycleResult(final=E, **out)


class _CycleConfig(NamedTuple):
    """The static (hashable) part of a cycle: jit reuses its compilation for equal configs."""

    transition: Callable
    analysis: Callable
    inflation: Callable | None
    observe: Callable | None
    forecast_first: bool
    store_ensembles: bool


def forecast_step(transition: Callable, inflation: Callable | None, forecast_first: bool,
                  k: jax.Array, key: jax.Array, E: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cycle ``k``'s forecast: split ``key`` three ways, advance ``E`` (kept as is at
    ``k = 0`` unless ``forecast_first``) and inflate it; returns it and the analysis key.
    A transition with ``per_step = True`` is called as ``transition(key, E, k)``."""
    k_model, k_infl, k_anal = jax.random.split(key, 3)
    if getattr(transition, "per_step", False):
        moved = transition(k_model, E, k)
    else:
        moved = transition(k_model, E)
    E_f = moved if forecast_first else jnp.where(k > 0, moved, E)
    if inflation is not None:
        E_f = inflation(k_infl, E_f)
    return E_f, k_anal


def _cycle_step(config: _CycleConfig, area, E, inputs):
    """One forecast, inflation and analysis, with the statistics of :class:`CycleResult`."""
    k, key, ob, true = inputs
    ob = ObsAtTime(*ob)
    H = operator_of(ob, config.observe)
    E_f, k_anal = forecast_step(config.transition, config.inflation, config.forecast_first,
                                k, key, E)
    E_a = config.analysis(k_anal, E_f, ob, H)
    stats = _obs_stats(E_f, E_a, ob, H)
    out = dict(
        analysis_mean=E_a.mean(0), analysis_spread=E_a.std(0, ddof=1),
        forecast_mean=E_f.mean(0), forecast_spread=E_f.std(0, ddof=1),
        innovation_mean=stats[0], innovation_rmse=stats[1], innovation_spread=stats[2],
        analysis_rmse_obs=stats[3],
        analysis_rmse=None if true is None else _rmse(E_a.mean(0), true),
        forecast_rmse=None if true is None else _rmse(E_f.mean(0), true),
        member_totals=None if area is None else E_a @ area,
        forecast_totals=None if area is None else E_f @ area,
        ensembles=E_a if config.store_ensembles else None,
    )
    return E_a, out


@functools.partial(jax.jit, static_argnums=0)
def _scan_cycles(config: _CycleConfig, E, ks, keys, ob, true, area):
    """``lax.scan`` of :func:`_cycle_step` over a run of cycles, compiled once per config."""
    return jax.lax.scan(functools.partial(_cycle_step, config, area), E, (ks, keys, ob, true))


def _rmse(mean: jax.Array, truth: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean((mean - truth) ** 2))
