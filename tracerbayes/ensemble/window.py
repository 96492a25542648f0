"""Filter and smoother over a whole window in one compiled scan, with global or local updates.

Every analysis here is an ensemble transform: globally ``E_a = X5 E_f`` with one (N_e, N_e)
matrix (EnKF, ETKF), locally (LETKF) one matrix ``X5_i`` per state variable, applied to the
column ``E_f[:, i]``. The members at earlier times are the same members, so the observations
at time ``k`` update the stored past states by the same transforms (Evensen & van Leeuwen
2000; for the local case the same weights as the filter, as in the 4D-LETKF "no-cost
smoother" of Kalnay et al. 2007): ``E_{t|k}[:, i] = X5_{k,i} E_{t|k-1}[:, i]``. With
``lag = None`` the whole window is smoothed (the ensemble Kalman smoother); a fixed ``lag``
bounds the buffer to ``lag`` past states.

Mass safety: with ``cell_area`` the local update is the mass-safe LETKF
(:func:`~tracerbayes.ensemble.localisation.mass_safe_letkf`) for the analysis and for every
smoothed past state: the localised increment keeps its shape, and in every basin a uniform
field restores the total of the global ETKF update, whose members are affine combinations of
the forecast members (so equal member totals stay equal).

The scan runs in chunks of cycles (one compilation for all chunks of the same length) so that
a progress bar can follow it and a long run can be checkpointed: after each chunk
``on_chunk`` receives a :class:`WindowCheckpoint` (the scan's carry and every chunk's
outputs), and ``resume`` goes on from one. The chunks do not change the numbers: each cycle
is the same compiled step, whichever chunk it falls in. Compilation is cached on the
identity of the transition and inflation functions and on the update's static part (its
kind, callables, ints and floats): the update's arrays (coordinates, cell areas, basins,
weight nodes) are traced arguments, so an equal update built again does not recompile.

References
----------
Evensen, G. & van Leeuwen, P. J. (2000). An ensemble Kalman smoother for nonlinear dynamics.
Mon. Wea. Rev. 128, 1852-1867.
Kalnay, E., Li, H., Miyoshi, T., Yang, S.-C. & Ballabrera-Poy, J. (2007). 4-D-Var or ensemble
Kalman filter? Tellus A 59, 758-773.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes.ensemble.analysis import (
    _centring,
    _obs_space,
    check_nodes,
    etkf_transform,
    etkf_weights,
    interpolate_transforms,
    observe,
)
from tracerbayes.ensemble.analysis import enkf_transform as _enkf_transform
from tracerbayes.ensemble.cycle import (
    CycleObservations,
    ObsAtTime,
    _obs_stats,
    check_cycle_inputs,
    forecast_step,
    operator_of,
)
from tracerbayes.ensemble.inflation import AdaptiveInflation, adaptive_inflation_update
from tracerbayes.ensemble.localisation import gaspari_cohn, restore_totals

__all__ = ["AdaptiveSpec", "WindowResult", "WindowCheckpoint", "GlobalUpdate", "LocalUpdate",
           "smooth_window"]


class WindowResult(NamedTuple):
    """Output of :func:`smooth_window` (T times, N_e members, n state variables).

    Attributes
    ----------
    smoothed : Array, shape (T, N_e, n)
        Members at each time given the observations up to ``min(t + lag, T - 1)``.
    filtered_mean, filtered_spread : Array, shape (T, n)
        Mean and sd of the filter's analysis ensembles.
    forecast_spread : Array, shape (T,)
        Root-mean forecast ensemble variance over the state.
    innovation_mean, innovation_rmse, innovation_spread, analysis_rmse_obs : Array, (T,)
        As in :class:`~tracerbayes.ensemble.cycle.CycleResult`.
    forecast_totals, member_totals : Array, shape (T, N_e) or None
        Area-weighted totals of every forecast and analysis member (with ``cell_area``).
    innovation_chi2 : Array, shape (T,)
        Normalised innovation chi-square per observation, ``mean_i d_i^2 / (s_i^2 + r_i)``
        (``d`` the innovation, ``s^2`` the forecast spread and ``r`` the error variance at
        each observation): about 1 when the ensemble's spread is honest, above when it is
        too confident.
    inflation : Array, shape (T,)
        Covariance inflation ``lambda`` applied to each forecast (1 without adaptation).
    """

    smoothed: jax.Array
    filtered_mean: jax.Array
    filtered_spread: jax.Array
    forecast_spread: jax.Array
    innovation_mean: jax.Array
    innovation_rmse: jax.Array
    innovation_spread: jax.Array
    analysis_rmse_obs: jax.Array
    forecast_totals: jax.Array | None
    member_totals: jax.Array | None
    innovation_chi2: jax.Array
    inflation: jax.Array


class WindowCheckpoint(NamedTuple):
    """How far a chunked :func:`smooth_window` got, enough to go on from there.

    Attributes
    ----------
    done : int
        Cycles done.
    carry : tuple of Array
        The scan's carry after them: members (N_e, n), smoothing buffer (lag, N_e, n) and
        inflation ().
    pieces : list of dict of name -> Array
        Each chunk's outputs in order: ``emitted`` (the members that left the smoothing
        buffer) and the statistics of :class:`WindowResult`, (cycles, ...) each.
    """

    done: int
    carry: tuple[Any, Any, Any]
    pieces: list[dict[str, Any]]


class AdaptiveSpec(NamedTuple):
    """Adaptive covariance inflation for :func:`smooth_window` (Li et al. 2009, Sec. 2c).

    Each forecast's inflation is ``lambda_k = (1 - weight) lambda_{k-1} + weight
    lambda_obs`` clipped to ``bounds`` (:func:`~tracerbayes.ensemble.inflation.
    adaptive_inflation_update`; a time without observations keeps ``lambda_{k-1}``), and
    ``apply(E, sqrt(lambda))`` inflates the forecast anomalies (e.g. mass-free
    multiplicative inflation).
    """

    apply: Callable
    weight: float = 0.1
    bounds: tuple[float, float] = (1.0, 5.0)
    initial: float = 1.0


class GlobalUpdate(NamedTuple):
    """A global ensemble transform: ``"etkf"`` (symmetric square root) or ``"enkf"``
    (perturbed observations)."""

    scheme: str = "etkf"

    def __call__(self, key, E_f, buffer, ob, H):
        if self.scheme == "enkf":
            X5 = _enkf_transform(key, E_f, ob.values, H, ob.sd, valid=ob.valid)
        else:
            X5 = etkf_transform(E_f, ob.values, H, ob.sd, valid=ob.valid)
        return X5 @ E_f, jnp.einsum("ij,tjn->tin", X5, buffer)


class LocalUpdate(NamedTuple):
    """The LETKF transform of every state variable, Gaspari-Cohn R-localisation.

    Attributes
    ----------
    state_coords : Array (n, d)
        Positions of the state variables.
    distance : callable ``(p, q) -> float``
        Distance of two points, in the units of ``radius``.
    radius : float
        Gaspari-Cohn half-width (weights vanish at ``2 radius``).
    cell_area : Array (n,) or None
        For the mass-safe update (see the module docstring).
    basins : Array (n,) of int or None
        Connected basin of every variable (mass-safe update per basin).
    batch_size : int or None
        Local problems solved at once (``lax.map``), bounds memory.
    nodes : WeightNodes or None
        Weight interpolation: transforms solved at ``nodes.coords`` and interpolated to the
        state variables (:class:`~tracerbayes.ensemble.localisation.WeightNodes`).
    """

    state_coords: Any
    distance: Callable
    radius: float
    cell_area: Any = None
    basins: Any = None
    batch_size: int | None = None
    nodes: Any = None

    def __call__(self, key, E_f, buffer, ob, H):
        N = E_f.shape[0]
        _, y, inv_sd, S, ybar = _obs_space(E_f, ob.values, H, ob.sd, ob.valid)
        d = (y - ybar) * inv_sd
        C = _centring(N, E_f.dtype)
        coords = jnp.asarray(self.state_coords)
        row = jax.vmap(self.distance, (None, 0))
        past = jnp.moveaxis(buffer, 2, 0)  # (n, L, N_e)

        def transform(x_i):
            rho = jnp.sqrt(gaspari_cohn(row(x_i, ob.coords) / self.radius))
            w, W = etkf_weights(S * rho, d * rho)
            return 1.0 / N + (w[None, :] + W) @ C

        if self.nodes is None:
            def local(args):
                x_i, column, history = args
                X5 = transform(x_i)
                return X5 @ column, history @ X5.T

            columns, history = jax.lax.map(local, (coords, E_f.T, past),
                                           batch_size=self.batch_size)
        else:
            check_nodes(self.nodes, E_f.shape[1])
            at_nodes = jax.lax.map(transform, jnp.asarray(self.nodes.coords),
                                   batch_size=self.batch_size)
            stacked = jnp.concatenate([E_f.T[:, :, None], jnp.swapaxes(past, 1, 2)], axis=2)
            out = interpolate_transforms(at_nodes, self.nodes, stacked, self.batch_size)
            columns, history = out[:, :, 0], jnp.swapaxes(out[:, :, 1:], 1, 2)
        E_a, buffer_a = columns.T, jnp.moveaxis(history, 0, 2)
        if self.cell_area is None:
            return E_a, buffer_a
        X5g = etkf_transform(E_f, ob.values, H, ob.sd, valid=ob.valid)
        return (restore_totals(E_a, X5g @ E_f, self.cell_area, self.basins),
                restore_totals(buffer_a, jnp.einsum("ij,tjn->tin", X5g, buffer),
                                self.cell_area, self.basins))


class _Static(NamedTuple):
    """The static part of a pytree (hashable): its structure, which leaves are arrays, and
    the other leaves (callables, strings, ints, floats)."""

    treedef: Any
    is_array: tuple[bool, ...]
    others: tuple[Any, ...]


def _partition(tree: Any) -> tuple[_Static, tuple[Any, ...]]:
    """Split ``tree`` (an update) into its static part and its arrays (traced arguments)."""
    leaves, treedef = jax.tree.flatten(tree)
    is_array = tuple(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves)
    arrays = tuple(leaf for leaf, a in zip(leaves, is_array, strict=True) if a)
    others = tuple(leaf for leaf, a in zip(leaves, is_array, strict=True) if not a)
    return _Static(treedef, is_array, others), arrays


def _combine(static: _Static, arrays: tuple[Any, ...]) -> Any:
    """The inverse of :func:`_partition`."""
    array_leaves, other_leaves = iter(arrays), iter(static.others)
    leaves = [next(array_leaves) if a else next(other_leaves) for a in static.is_array]
    return jax.tree.unflatten(static.treedef, leaves)


class _Config(NamedTuple):
    transition: Callable
    update: _Static
    inflation: Callable | None
    observe: Callable | None
    forecast_first: bool
    lag: int
    adaptive: AdaptiveSpec | None = None


def _innovation_chi2(E_f, ob: ObsAtTime, H):
    used = ob.valid
    HE = observe(E_f, H)
    d = jnp.where(used, ob.values - HE.mean(axis=0), 0.0)
    s = HE.var(axis=0, ddof=1) + jnp.where(used, ob.sd, 1.0) ** 2
    return jnp.sum(jnp.where(used, d**2 / s, 0.0)) / jnp.maximum(used.sum(), 1)


def _step(config: _Config, area, update_arrays, carry, inputs):
    E, buffer, factor = carry
    k, key, ob = inputs
    ob = ObsAtTime(*ob)
    H = operator_of(ob, config.observe)
    E_f, k_anal = forecast_step(config.transition, config.inflation, config.forecast_first,
                                k, key, E)
    spec = config.adaptive
    if spec is not None:
        estimate = adaptive_inflation_update(AdaptiveInflation(factor), E_f, ob.values, H,
                                             ob.sd, valid=ob.valid, weight=spec.weight,
                                             bounds=spec.bounds).factor
        factor = jnp.where(ob.valid.any(), estimate, factor)
        E_f = spec.apply(E_f, jnp.sqrt(factor))
    chi2 = _innovation_chi2(E_f, ob, H)
    E_a, buffer = _combine(config.update, update_arrays)(k_anal, E_f, buffer, ob, H)
    stats = _obs_stats(E_f, E_a, ob, H)
    out = dict(filtered_mean=E_a.mean(0), filtered_spread=E_a.std(0, ddof=1),
               forecast_spread=jnp.sqrt(jnp.mean(E_f.var(0, ddof=1))),
               innovation_mean=stats[0], innovation_rmse=stats[1],
               innovation_spread=stats[2], analysis_rmse_obs=stats[3],
               forecast_totals=None if area is None else E_f @ area,
               member_totals=None if area is None else E_a @ area,
               innovation_chi2=chi2, inflation=factor)
    if config.lag == 0:
        return (E_a, buffer, factor), (E_a, out)
    oldest = buffer[0]
    buffer = jnp.concatenate([buffer[1:], E_a[None]])
    return (E_a, buffer, factor), (oldest, out)


@functools.partial(jax.jit, static_argnums=0)
def _scan(config: _Config, carry, ks, keys, ob, area, update_arrays):
    return jax.lax.scan(functools.partial(_step, config, area, update_arrays), carry,
                        (ks, keys, ob))


def smooth_window(key: jax.Array, transition: Callable[[jax.Array, jax.Array], jax.Array],
                  E0: jax.Array, observations: CycleObservations,
                  update: GlobalUpdate | LocalUpdate, *,
                  lag: int | None = None,
                  inflation: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                  observe: Callable | None = None, forecast_first: bool = True,
                  cell_area: Any = None, progress: bool = True,
                  chunk_size: int | None = None,
                  adaptive: AdaptiveSpec | None = None,
                  resume: WindowCheckpoint | None = None,
                  on_chunk: Callable[[WindowCheckpoint], None] | None = None) -> WindowResult:
    """Filter and smooth ``T`` times from the initial ensemble ``E0`` (N_e, n).

    Parameters
    ----------
    key : JAX key
    transition : callable ``(key, E) -> E``
        Advances the ensemble by one interval (with its model noise).
    E0 : Array (N_e, n)
    observations : CycleObservations
    update : GlobalUpdate or LocalUpdate
        The analysis transform.
    lag : int or None
        Fixed lag (past states updated by later observations), None for the whole window.
    inflation : callable ``(key, E) -> E``, optional
        Applied to each forecast before the analysis.
    observe, forecast_first : as in :func:`~tracerbayes.ensemble.cycle.run_cycle`.
    cell_area : Array (n,), optional
        Cell areas (m^2), for the member totals.
    progress : bool
        tqdm bar over chunks of cycles.
    chunk_size : int, optional
        Cycles per chunk (default a tenth of the window with ``progress``, else all).
    adaptive : AdaptiveSpec, optional
        Adaptive inflation of every forecast (after ``inflation``), from the innovations.
    resume : WindowCheckpoint, optional
        Go on from there (as saved by ``on_chunk`` of an interrupted run with the same
        inputs).
    on_chunk : callable, optional
        Called with the :class:`WindowCheckpoint` after every chunk (e.g. to save it).
    """
    E0 = check_cycle_inputs(E0, observations, observe)
    T = observations.values.shape[0]
    L = T if lag is None else int(lag)
    if L < 0:
        raise ValueError(f"lag must be >= 0 or None, got {lag}")
    obs = tuple(jax.tree.map(jnp.asarray, observations._replace(
        valid=jnp.asarray(observations.valid, bool))))
    area = None if cell_area is None else jnp.asarray(cell_area, E0.dtype)
    update_static, update_arrays = _partition(update)
    config = _Config(transition, update_static, inflation, observe, forecast_first, min(L, T),
                     adaptive)
    start = 1.0 if adaptive is None else float(adaptive.initial)
    carry = (E0, jnp.zeros((config.lag,) + E0.shape, E0.dtype), jnp.asarray(start, E0.dtype))
    state = resume or WindowCheckpoint(0, carry, [])
    keys, ks = jax.random.split(key, T), jnp.arange(T)
    size = chunk_size or (max(1, -(-T // 10)) if progress else T)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=T, initial=state.done, desc="ensemble cycles", unit="cycle")
    try:
        for first in range(state.done, T, size):
            part = slice(first, min(first + size, T))
            sub = jax.tree.map(lambda a, p=part: a[p], (ks, keys, obs))
            carry, (emitted, out) = _scan(config, state.carry, *sub, area, update_arrays)
            piece = {"emitted": emitted, **{k: v for k, v in out.items() if v is not None}}
            state = WindowCheckpoint(part.stop, carry, [*state.pieces, piece])
            if on_chunk is not None:
                on_chunk(state)
            if bar is not None:
                bar.update(part.stop - part.start)
    finally:
        if bar is not None:
            bar.close()
    joined = jax.tree.map(lambda *a: jnp.concatenate(a), *state.pieces)
    emitted, buffer = joined.pop("emitted"), state.carry[1]
    smoothed = jnp.concatenate([emitted, buffer])[-T:] if config.lag else emitted
    return WindowResult(smoothed=smoothed, **{name: joined.get(name) for name in
                                              WindowResult._fields[1:]})
