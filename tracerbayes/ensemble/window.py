"""The one ensemble engine: forecast, inflation, analysis and smoothing in one compiled scan.

At each observation time ``k = 0, ..., T-1`` the engine forecasts ``E <- transition(key, E)``
(kept as is at ``k = 0`` unless ``forecast_first``, so that the first observations update
``E0`` itself, as in :func:`tracerbayes.exact.kalman.kalman_filter`), inflates the forecast
(a given inflation, then optionally an adaptive one), and applies an *update*
``(key, E_f, buffer, obs, H) -> (E_a, buffer)``: the analysis of the forecast and of the
``lag`` past states held in a smoothing buffer. Three front ends drive it:

* :func:`~tracerbayes.ensemble.cycle.run_cycle`, the filter: any analysis, no buffer;
* :func:`~tracerbayes.ensemble.smoother.ensemble_smoother`, the EnKS: a global transform and
  a lag;
* :func:`smooth_window`, behind :func:`tracerbayes.fit`: global or local transforms, a lag,
  adaptive inflation and checkpointable chunks.

Smoothing: every analysis here is an ensemble transform: globally ``E_a = X5 E_f`` with one
(N_e, N_e) matrix (EnKF, ETKF), locally (LETKF) one matrix ``X5_i`` per state variable,
applied to the column ``E_f[:, i]``. The members at earlier times are the same members, so
the observations at time ``k`` update the stored past states by the same transforms (Evensen
& van Leeuwen 2000; for the local case the same weights as the filter, as in the 4D-LETKF
"no-cost smoother" of Kalnay et al. 2007): ``E_{t|k}[:, i] = X5_{k,i} E_{t|k-1}[:, i]``. With
``lag = None`` the whole window is smoothed (the ensemble Kalman smoother); a fixed ``lag``
bounds the buffer to ``lag`` past states.

Mass safety: with ``cell_area`` the local update is the mass-safe LETKF
(:func:`~tracerbayes.ensemble.localisation.mass_safe_letkf`) for the analysis and for every
smoothed past state: the localised increment keeps its shape, and in every basin a uniform
field restores the total of the global ETKF update, whose members are affine combinations of
the forecast members (so equal member totals stay equal).

Devices: with a ``mesh`` (:func:`ensemble_mesh`) the members are split evenly over its
devices: the forecasts, which move every member on its own, run on each device's members,
and the analysis gathers what it needs (the (N_e, m) observation anomalies are small). The
LETKF's local problems are split the other way, in tiles of the domain, one per device
(:func:`~tracerbayes.ensemble.analysis.local_map`), and the analysis goes back to members.
The random numbers are those of one device (JAX's partitionable threefry draws the same
numbers however an array is split), so a run on many devices is the run on one to
round-off; without a mesh nothing changes.

The scan runs in chunks of cycles (one compilation for all chunks of the same length) so that
a progress bar can follow it and a long run can be checkpointed: after each chunk
``on_chunk`` receives a :class:`WindowCheckpoint` (the scan's carry and every chunk's
outputs), and ``resume`` goes on from one. The chunks do not change the numbers: each cycle
is the same compiled step, whichever chunk it falls in. Compilation is cached on the
:class:`Engine` (the identity of the transition, inflation, observe and statistics functions,
and the flags) and on the update's static part (its kind, callables, ints and floats): the
update's arrays (coordinates, cell areas, basins, weight nodes) are traced arguments, so an
equal update built again does not recompile.

References
----------
Evensen, G. & van Leeuwen, P. J. (2000). An ensemble Kalman smoother for nonlinear dynamics.
Mon. Wea. Rev. 128, 1852-1867.
Kalnay, E., Li, H., Miyoshi, T., Yang, S.-C. & Ballabrera-Poy, J. (2007). 4-D-Var or ensemble
Kalman filter? Tellus A 59, 758-773.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tracerbayes.ensemble.analysis import (
    _centring,
    _obs_space,
    check_nodes,
    etkf_transform,
    interpolate_transforms,
    local_etkf_map,
    observe,
)
from tracerbayes.ensemble.analysis import enkf_transform as _enkf_transform
from tracerbayes.ensemble.inflation import AdaptiveInflation, adaptive_inflation_update
from tracerbayes.ensemble.localisation import gaspari_cohn, restore_totals

__all__ = ["AdaptiveSpec", "WindowResult", "WindowCheckpoint", "GlobalUpdate", "LocalUpdate",
           "ensemble_mesh", "smooth_window"]

#: Name of the device axis of :func:`ensemble_mesh` (members in forecasts, tiles of the
#: domain in local analyses).
DEVICE_AXIS = "devices"


# ------------------------------------------------------------------ observations
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


def window_lag(lag: int | None, T: int) -> int:
    """The smoothing buffer's length: ``lag`` past states, the whole window (``T``) for
    None; longer than ``T`` would only hold empty states."""
    L = T if lag is None else int(lag)
    if L < 0:
        raise ValueError(f"lag must be >= 0 or None, got {lag}")
    return min(L, T)


# ------------------------------------------------------------------ results and updates
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


def apply_transform(X5: jax.Array, E_f: jax.Array, buffer: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
    """A global transform (N_e, N_e) applied to the forecast (N_e, n) and to every buffered
    past state (L, N_e, n): ``X5 E_f`` and ``X5 E_t``."""
    return X5 @ E_f, jnp.einsum("ij,tjn->tin", X5, buffer)


class GlobalUpdate(NamedTuple):
    """A global ensemble transform: ``"etkf"`` (symmetric square root) or ``"enkf"``
    (perturbed observations)."""

    scheme: str = "etkf"

    def on(self, mesh: Mesh | None) -> GlobalUpdate:
        """This update on ``mesh``: unchanged (the transform is small; the members it acts
        on are split by the engine)."""
        return self

    def __call__(self, key, E_f, buffer, ob, H):
        if self.scheme == "enkf":
            X5 = _enkf_transform(key, E_f, ob.values, H, ob.sd, valid=ob.valid)
        else:
            X5 = etkf_transform(E_f, ob.values, H, ob.sd, valid=ob.valid)
        return apply_transform(X5, E_f, buffer)


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
    mesh : jax.sharding.Mesh or None
        Solve the local problems (cells or nodes) in tiles of the domain, one per device
        (:func:`~tracerbayes.ensemble.analysis.local_map`); :func:`smooth_window` sets it to
        its own ``mesh``.
    compact : bool
        Solve each local problem on its observations of non-zero weight only (the same
        numbers to round-off; :func:`~tracerbayes.ensemble.analysis.local_etkf_map`); False
        solves every one with all the observations (the reference).
    """

    state_coords: Any
    distance: Callable
    radius: float
    cell_area: Any = None
    basins: Any = None
    batch_size: int | None = None
    nodes: Any = None
    mesh: Mesh | None = None
    compact: bool = True

    def on(self, mesh: Mesh | None) -> LocalUpdate:
        """This update with its local problems in tiles over the devices of ``mesh`` (its
        own mesh, if it has one, is kept; itself for no mesh)."""
        return self if mesh is None or self.mesh is not None else self._replace(mesh=mesh)

    def __call__(self, key, E_f, buffer, ob, H):
        N = E_f.shape[0]
        _, y, inv_sd, S, ybar = _obs_space(E_f, ob.values, H, ob.sd, ob.valid)
        d = (y - ybar) * inv_sd
        C = _centring(N, E_f.dtype)
        coords = jnp.asarray(self.state_coords)
        row = jax.vmap(self.distance, (None, 0))
        past = jnp.moveaxis(buffer, 2, 0)  # (n, L, N_e)

        def sqrt_weights(x_i):
            return jnp.sqrt(gaspari_cohn(row(x_i, ob.coords) / self.radius))

        def transform(w, W):
            return 1.0 / N + (w[None, :] + W) @ C

        solve = functools.partial(local_etkf_map, S=S, d=d, compact=self.compact,
                                  batch_size=self.batch_size, mesh=self.mesh)
        if self.nodes is None:
            def local(args, w, W):
                _, column, history = args
                X5 = transform(w, W)
                return X5 @ column, history @ X5.T

            columns, history = solve(local, (coords, E_f.T, past),
                                     sqrt_weights=lambda args: sqrt_weights(args[0]))
        else:
            check_nodes(self.nodes, E_f.shape[1])
            at_nodes = solve(lambda x_i, w, W: transform(w, W), jnp.asarray(self.nodes.coords),
                             sqrt_weights=sqrt_weights)
            stacked = jnp.concatenate([E_f.T[:, :, None], jnp.swapaxes(past, 1, 2)], axis=2)
            out = interpolate_transforms(at_nodes, self.nodes, stacked, self.batch_size,
                                         self.mesh)
            columns, history = out[:, :, 0], jnp.swapaxes(out[:, :, 1:], 1, 2)
        E_a, buffer_a = columns.T, jnp.moveaxis(history, 0, 2)
        if self.cell_area is None:
            return E_a, buffer_a
        global_a, global_buffer = apply_transform(
            etkf_transform(E_f, ob.values, H, ob.sd, valid=ob.valid), E_f, buffer)
        return (restore_totals(E_a, global_a, self.cell_area, self.basins),
                restore_totals(buffer_a, global_buffer, self.cell_area, self.basins))


# ------------------------------------------------------------------ the engine
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


class Cycle(NamedTuple):
    """One cycle as a front end's statistics see it: the forecast (N_e, n) after inflation,
    the analysis (N_e, n), the observations and their operator, the inflation factor, the
    true state (n,) or None and the cell areas (n,) or None."""

    forecast: jax.Array
    analysis: jax.Array
    obs: ObsAtTime
    H: Any
    inflation: jax.Array
    truth: jax.Array | None
    area: jax.Array | None


class Engine(NamedTuple):
    """What the engine does each cycle: the static part of a run (hashable, so that jit
    compiles once per equal engine).

    Attributes
    ----------
    transition, inflation, observe, forecast_first
        As in :func:`~tracerbayes.ensemble.cycle.run_cycle`.
    lag : int
        Past states held in the smoothing buffer (0: a filter).
    statistics : callable ``(Cycle) -> dict``
        The front end's per-cycle outputs (None values are dropped).
    emit : bool
        Keep the members that leave the buffer, i.e. the smoothed states (without a buffer,
        the analyses themselves).
    adaptive : AdaptiveSpec or None
        Adaptive inflation of every forecast, after ``inflation``.
    relax : callable ``(E_f, E_a) -> E_a`` or None
        Posterior inflation of every analysis (e.g.
        :func:`~tracerbayes.ensemble.inflation.relax_to_prior_spread`), before it enters the
        smoothing buffer.
    mesh : jax.sharding.Mesh or None
        Devices to split the members over (see the module docstring); None: one device.
    """

    transition: Callable
    inflation: Callable | None
    observe: Callable | None
    forecast_first: bool
    lag: int
    statistics: Callable[[Cycle], dict[str, Any]]
    emit: bool = True
    adaptive: AdaptiveSpec | None = None
    relax: Callable | None = None
    mesh: Mesh | None = None


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


def _adapt(spec: AdaptiveSpec | None, factor: jax.Array, E_f: jax.Array, ob: ObsAtTime,
           H: Any) -> tuple[jax.Array, jax.Array]:
    """The forecast inflated by the updated adaptive factor, and that factor (kept at a time
    without observations); both unchanged without ``spec``."""
    if spec is None:
        return E_f, factor
    estimate = adaptive_inflation_update(AdaptiveInflation(factor), E_f, ob.values, H, ob.sd,
                                         valid=ob.valid, weight=spec.weight,
                                         bounds=spec.bounds).factor
    factor = jnp.where(ob.valid.any(), estimate, factor)
    return spec.apply(E_f, jnp.sqrt(factor)), factor


def _step(engine: Engine, update: _Static, area, update_arrays, carry, inputs):
    """One cycle: forecast, inflation and update, the front end's statistics; the analysis
    enters the smoothing buffer and the oldest state leaves it (``emitted``)."""
    E, buffer, factor = carry
    k, key, ob, true = inputs
    ob = ObsAtTime(*ob)
    H = operator_of(ob, engine.observe)
    E_f, k_anal = forecast_step(engine.transition, engine.inflation, engine.forecast_first,
                                k, key, E)
    E_f, factor = _adapt(engine.adaptive, factor, _over_members(engine.mesh, E_f), ob, H)
    E_a, buffer = _combine(update, update_arrays)(k_anal, E_f, buffer, ob, H)
    E_a, buffer = _over_members(engine.mesh, E_a), _over_members(engine.mesh, buffer)
    if engine.relax is not None:
        E_a = jnp.where(ob.valid.any(), engine.relax(E_f, E_a), E_a)
    out = engine.statistics(Cycle(E_f, E_a, ob, H, factor, true, area))
    leaving = E_a
    if engine.lag:
        leaving, buffer = buffer[0], jnp.concatenate([buffer[1:], E_a[None]])
    if engine.emit:
        out["emitted"] = leaving
    return (E_a, buffer, factor), out


@functools.partial(jax.jit, static_argnums=(0, 1))
def _scan(engine: Engine, update: _Static, carry, ks, keys, ob, true, area, update_arrays):
    """``lax.scan`` of :func:`_step` over a run of cycles, compiled once per engine and
    update structure."""
    step = functools.partial(_step, engine, update, area, update_arrays)
    return jax.lax.scan(step, carry, (ks, keys, ob, true))


def run_engine(key: jax.Array, E0: jax.Array, observations: CycleObservations, update: Any,
               engine: Engine, *, truth: Any = None, cell_area: Any = None,
               chunk_size: int | None = None, desc: str | None = None,
               resume: WindowCheckpoint | None = None,
               on_chunk: Callable[[WindowCheckpoint], None] | None = None
               ) -> tuple[WindowCheckpoint, dict[str, Any]]:
    """Run ``engine`` with ``update`` over every time of ``observations`` from ``E0``
    (checked by :func:`check_cycle_inputs`), in chunks of ``chunk_size`` cycles (default
    all), with a tqdm bar titled ``desc`` (none for None); ``resume`` and ``on_chunk`` as in
    :func:`smooth_window`.

    Returns the last checkpoint (its carry: members, buffer, inflation) and the outputs
    joined over time, with ``smoothed`` (T, N_e, n) in place of the emitted members. With
    ``engine.mesh`` the members are split over its devices (:func:`check_mesh`) and every
    other input is copied to each of them.
    """
    check_mesh(engine.mesh, E0.shape[0])
    T = observations.values.shape[0]
    obs = tuple(jax.tree.map(jnp.asarray, observations._replace(
        valid=jnp.asarray(observations.valid, bool))))
    area = None if cell_area is None else jnp.asarray(cell_area, E0.dtype)
    true = None if truth is None else jnp.asarray(truth)
    static, arrays = _partition(update)
    start = 1.0 if engine.adaptive is None else float(engine.adaptive.initial)
    carry = (E0, jnp.zeros((engine.lag,) + E0.shape, E0.dtype), jnp.asarray(start, E0.dtype))
    keys, ks = jax.random.split(key, T), jnp.arange(T)

    inputs = (ks, keys, obs, true)
    state = resume or WindowCheckpoint(0, carry, [])
    if engine.mesh is not None:
        inputs, area, arrays = _replicated(engine.mesh, (inputs, area, arrays))
        state = state._replace(carry=_placed(engine.mesh, state.carry))

    def chunk(carry, inputs):
        return _scan(engine, static, carry, *inputs, area, arrays)

    state = _run_chunks(chunk, state, inputs, chunk_size or T, desc, on_chunk)
    return state, _joined(state, engine.lag, T)


# ------------------------------------------------------------------ devices
def ensemble_mesh(devices: int | Sequence[Any] | None = None) -> Mesh | None:
    """The device mesh that spreads an ensemble run over ``devices``: None (one device, no
    mesh: the run as it always was) for None or 1; else a one-axis mesh (axis
    :data:`DEVICE_AXIS`) of the first ``devices`` of ``jax.devices()``, or of the given
    devices.

    ``jax.devices()`` lists the devices of every process, so after
    ``jax.distributed.initialize()`` a mesh spans all hosts (``docs/devices.md``).
    """
    if devices is None or (isinstance(devices, int) and devices == 1):
        return None
    if isinstance(devices, int):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices}, but JAX sees {len(available)} device(s) "
                f"({available[0].platform}); give at most {len(available)}, or expose more "
                "(several GPUs, jax.distributed.initialize() on several hosts, or on a CPU "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts)")
        devices = available[:devices]
    return Mesh(np.array(list(devices)), (DEVICE_AXIS,))


def check_mesh(mesh: Mesh | None, members: int) -> None:
    """Raise a ``ValueError`` that says what to change when ``members`` cannot be split
    evenly over the devices of ``mesh``."""
    if mesh is None or members % mesh.size == 0:
        return
    count = mesh.size
    raise ValueError(f"{members} ensemble members cannot be split evenly over {count} "
                     f"devices (each device holds the same number of members): make "
                     f"ensemble_size a multiple of {count} (e.g. {-(-members // count) * count})"
                     f" or use a number of devices that divides {members}")


def _members_spec(mesh: Mesh, ndim: int) -> NamedSharding:
    """Arrays (..., N_e, n) with their members split over all the axes of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(*(None,) * (ndim - 2), mesh.axis_names, None))


def _over_members(mesh: Mesh | None, E: jax.Array) -> jax.Array:
    """``E`` (..., N_e, n), inside the engine, with its members split over ``mesh``."""
    if mesh is None:
        return E
    return jax.lax.with_sharding_constraint(E, _members_spec(mesh, E.ndim))


def _on_mesh(array: Any, sharding: NamedSharding) -> jax.Array:
    """``array`` (the same in every process) laid out as ``sharding`` says, each process
    filling its own devices: also when the mesh spans several hosts, where ``device_put``
    cannot reach the other processes' devices."""
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_on_mesh(jax.random.key_data(array), sharding),
                                        impl=jax.random.key_impl(array))
    host = np.asarray(array)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _placed(mesh: Mesh, carry: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """The scan's carry on ``mesh``: members (N_e, n) and buffer (L, N_e, n) split over its
    devices by member, the inflation factor copied to each."""
    E, buffer, factor = carry
    return (_on_mesh(E, _members_spec(mesh, 2)), _on_mesh(buffer, _members_spec(mesh, 3)),
            _on_mesh(factor, NamedSharding(mesh, PartitionSpec())))


def _replicated(mesh: Mesh, tree: Any) -> Any:
    """Every array of ``tree`` copied to every device of ``mesh``."""
    everywhere = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda array: _on_mesh(array, everywhere), tree)


def _fetchable(tree: Any) -> Any:
    """``tree`` with every array that lives partly on other processes' devices gathered
    (multi-host runs), so that this process can read it."""
    from jax.experimental import multihost_utils

    def fetch(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return leaf

    return jax.tree.map(fetch, tree)


def _run_chunks(chunk: Callable, state: WindowCheckpoint, inputs: tuple, size: int,
                desc: str | None, on_chunk: Callable | None) -> WindowCheckpoint:
    """Scan the cycles from ``state.done`` on, ``size`` at a time: after each chunk, record
    the carry and outputs, call ``on_chunk`` and advance the bar."""
    T = len(inputs[0])
    bar = None
    if desc is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=T, initial=state.done, desc=desc, unit="cycle")
    try:
        for first in range(state.done, T, size):
            part = slice(first, min(first + size, T))
            carry, out = chunk(state.carry, jax.tree.map(lambda a, p=part: a[p], inputs))
            piece = {name: value for name, value in out.items() if value is not None}
            state = WindowCheckpoint(part.stop, carry, [*state.pieces, piece])
            if on_chunk is not None:
                on_chunk(state)
            if bar is not None:
                bar.update(part.stop - part.start)
    finally:
        if bar is not None:
            bar.close()
    return state


def _joined(state: WindowCheckpoint, lag: int, T: int) -> dict[str, Any]:
    """The chunks' outputs joined over time; the emitted members and the final buffer
    become ``smoothed`` (T, N_e, n)."""
    joined = jax.tree.map(lambda *a: jnp.concatenate(a), *state.pieces)
    if "emitted" in joined:
        emitted = joined.pop("emitted")
        joined["smoothed"] = jnp.concatenate([emitted, state.carry[1]])[-T:] if lag else emitted
    return joined


# ------------------------------------------------------------------ statistics
def shared_statistics(c: Cycle) -> dict[str, Any]:
    """The statistics of the filter and of the window alike: innovations (mean,
    root-mean-square and the forecast spread over the valid observations), the analysis
    residual, and the members' area-weighted totals (None without cell areas)."""
    used = c.obs.valid
    count = jnp.maximum(used.sum(), 1)
    HE = observe(c.forecast, c.H)
    innovation = jnp.where(used, c.obs.values - HE.mean(axis=0), 0.0)
    residual = jnp.where(used, c.obs.values - observe(c.analysis, c.H).mean(axis=0), 0.0)
    spread = jnp.where(used, HE.var(axis=0, ddof=1), 0.0)
    return dict(innovation_mean=innovation.sum() / count,
                innovation_rmse=jnp.sqrt((innovation**2).sum() / count),
                innovation_spread=jnp.sqrt(spread.sum() / count),
                analysis_rmse_obs=jnp.sqrt((residual**2).sum() / count),
                forecast_totals=None if c.area is None else c.forecast @ c.area,
                member_totals=None if c.area is None else c.analysis @ c.area)


def _innovation_chi2(E_f, ob: ObsAtTime, H):
    used = ob.valid
    HE = observe(E_f, H)
    d = jnp.where(used, ob.values - HE.mean(axis=0), 0.0)
    s = HE.var(axis=0, ddof=1) + jnp.where(used, ob.sd, 1.0) ** 2
    return jnp.sum(jnp.where(used, d**2 / s, 0.0)) / jnp.maximum(used.sum(), 1)


def _window_statistics(c: Cycle) -> dict[str, Any]:
    """The per-cycle fields of :class:`WindowResult`."""
    return dict(filtered_mean=c.analysis.mean(0), filtered_spread=c.analysis.std(0, ddof=1),
                forecast_spread=jnp.sqrt(jnp.mean(c.forecast.var(0, ddof=1))),
                innovation_chi2=_innovation_chi2(c.forecast, c.obs, c.H),
                inflation=c.inflation, **shared_statistics(c))


# ------------------------------------------------------------------ the window front end
def smooth_window(key: jax.Array, transition: Callable[[jax.Array, jax.Array], jax.Array],
                  E0: jax.Array, observations: CycleObservations,
                  update: GlobalUpdate | LocalUpdate, *,
                  lag: int | None = None,
                  inflation: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                  observe: Callable | None = None, forecast_first: bool = True,
                  cell_area: Any = None, progress: bool = True,
                  chunk_size: int | None = None,
                  adaptive: AdaptiveSpec | None = None,
                  relax: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                  resume: WindowCheckpoint | None = None,
                  on_chunk: Callable[[WindowCheckpoint], None] | None = None,
                  mesh: Mesh | None = None) -> WindowResult:
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
    relax : callable ``(E_f, E_a) -> E_a``, optional
        Posterior inflation of every analysis with observations (e.g. relaxation to prior
        spread), before it enters the smoothing buffer.
    resume : WindowCheckpoint, optional
        Go on from there (as saved by ``on_chunk`` of an interrupted run with the same
        inputs).
    on_chunk : callable, optional
        Called with the :class:`WindowCheckpoint` after every chunk (e.g. to save it).
    mesh : jax.sharding.Mesh, optional
        Devices to spread the run over (:func:`ensemble_mesh`): the members split evenly
        over them (N_e must be a multiple of their number), the local analyses of a
        :class:`LocalUpdate` in tiles of the domain. The same keys are drawn, so the result
        is the one-device result to round-off.
    """
    E0 = check_cycle_inputs(E0, observations, observe)
    T = observations.values.shape[0]
    engine = Engine(transition, inflation, observe, forecast_first, window_lag(lag, T),
                    _window_statistics, adaptive=adaptive, relax=relax, mesh=mesh)
    size = chunk_size or (max(1, -(-T // 10)) if progress else T)
    _, out = run_engine(key, E0, observations, update.on(mesh), engine, cell_area=cell_area,
                        chunk_size=size, desc="ensemble cycles" if progress else None,
                        resume=resume, on_chunk=on_chunk)
    if mesh is not None:
        out = _fetchable(out)
    fields: dict[str, Any] = {name: out.get(name) for name in WindowResult._fields}
    return WindowResult(**fields)
