"""``fit(method="enkf" | "etkf" | "letkf" | "eki")``: the ensemble path behind :func:`fit`.

State methods (``enkf``, ``etkf``, ``letkf``) run the full-grid tracer model
(:mod:`tracerbayes.ensemble.tracer`) for an ensemble through the analysis window and smooth it
(:mod:`tracerbayes.ensemble.window`), with the physical parameters held at point values:
given with ``parameters=`` (a dict in physical units, or a fitted :class:`Posterior` whose
means are used), or by default each prior's median. Defaults are mass-safe: the forecast
noise is mass-free, inflation multiplies only the mass-free part of the anomalies, and the
LETKF localises only the mass-free part of the increment, per basin.

``eki`` estimates the parameters: the ensemble Kalman sampler (EKS, with the finite-ensemble
correction) after a few ensemble Kalman inversion steps, against the exact (reduced-basis)
Kalman filter's fit to the observations. The forward map is the whitened innovation sequence
augmented by ``sqrt(sum_k log det S_k - c)``, so ``|G|^2 / 2`` is the negative marginal
log-likelihood up to a constant (:func:`eki_forward`). The draws are the EKS ensembles after
a burn-in, pooled over iterations (one chain per member); the maps are the Rao-Blackwellised
mixture over them, as for NUTS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from tracerbayes import physics
from tracerbayes.ensemble import importance, inversion, localisation
from tracerbayes.ensemble.inflation import (
    mass_free_multiplicative,
    multiplicative,
    project_mass_free,
    relax_to_prior_spread,
)
from tracerbayes.ensemble.seasonal import seasonal_forcing
from tracerbayes.ensemble.tracer import (
    initial_ensemble,
    is_lonlat,
    noise_field,
    state_coordinates,
    stencil_observations,
    tracer_transition,
    weight_nodes,
)
from tracerbayes.ensemble.window import (
    AdaptiveSpec,
    GlobalUpdate,
    LocalUpdate,
    WindowCheckpoint,
    check_mesh,
    ensemble_mesh,
    smooth_window,
)
from tracerbayes.exact.kalman import KalmanObservations
from tracerbayes.io.checkpoint import Checkpoint, CheckpointError
from tracerbayes.methods import RELAXATION
from tracerbayes.posterior.ensemble import EnsemblePosterior, InversionPosterior

__all__ = ["ENSEMBLE_METHODS", "EKIForward", "fit_ensemble", "fit_eki", "point_parameters",
           "mode_parameters", "window_checkpoint", "eki_forward",
           "eki_log_posterior", "eki_priors"]

ENSEMBLE_METHODS = ("enkf", "etkf", "letkf")
DAY = 86400.0
#: Largest smoothed-ensemble buffer (T x N_e x n doubles) kept for the whole window, bytes.
WINDOW_BYTES = 2 * 1024**3


def _median(prior: Any) -> float:
    try:
        return float(prior.icdf(0.5))
    except (NotImplementedError, AttributeError):
        return float(prior.mean)


def _parameter_priors(model: Any) -> dict[str, Any]:
    """Scalar priors of the model's parameters, by name (velocity ones included)."""
    pri = model.priors
    priors = {"diffusivity": pri.diffusivity, "noise_sd": pri.noise_sd,
              "noise_lengthscale_km": pri.noise_lengthscale_km, "initial_sd": pri.initial_sd,
              "initial_lengthscale_km": pri.initial_lengthscale_km,
              "error_scale": pri.error_scale}
    if pri.source_sd is not None or not getattr(model, "conserved", True):
        priors["source_sd"] = model.source_prior()
    if not getattr(model, "conserved", True):
        priors["damping_days"] = model.damping_prior()
    if getattr(model, "has_representation_error", False):
        priors["representation_scale"] = pri.representation_scale
    if getattr(model, "n_mean", 0):
        priors["mean_state_sd"] = model.mean_state_prior()
        priors["mean_state_lengthscale_km"] = pri.mean_state_lengthscale_km
    if getattr(model, "n_forcing", 0):  # (the full-grid ensemble's forcing stays white)
        priors["forcing_sd"] = model.forcing_sd_prior()
        priors["forcing_days"] = model.forcing_prior()
    if getattr(model, "n_season", 0):  # (the ensemble takes the fields at the mode)
        priors["seasonal_sd"] = model.seasonal_sd_prior()
        priors.setdefault("mean_state_lengthscale_km", pri.mean_state_lengthscale_km)
    priors.update(model.velocity.scalar_priors())
    return priors


def point_parameters(model: Any, parameters: Any = None) -> dict[str, Any]:
    """Physical parameter values for the state methods.

    ``parameters``: None (every prior's median), a dict (missing names take the prior
    median; unknown names are an error) or a fitted Posterior (its posterior means). For a
    tracer that is not conserved, a dict may also give ``mean_state``: the field (n_wet,),
    tracer units, that the anomalies relax toward, and with seasonal forcing ``seasonal``:
    its fields ``(a, b)`` (2, n_wet), tracer units per day (:func:`mode_parameters` gives
    both; without them the ensemble has the prior mean of each: none).
    """
    values: dict[str, Any] = {name: _median(p) for name, p in _parameter_priors(model).items()}
    values.update(model.velocity.point_defaults())
    if parameters is None:
        return values
    if hasattr(parameters, "flat_samples"):
        given = {k: np.mean(v, axis=0) for k, v in parameters.flat_samples().items()}
    elif isinstance(parameters, dict):
        given = dict(parameters)
        unknown = sorted(set(given) - set(values) - _extra_parameters(model))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; this model's parameters are "
                             f"{sorted(values)}")
    else:
        raise TypeError("parameters must be None, a dict of physical values, or a Posterior; "
                        f"got {type(parameters).__name__}")
    values.update({k: v for k, v in given.items()
                   if k in values or k in _extra_parameters(model)})
    return values


def _extra_parameters(model: Any) -> set[str]:
    """Point values the state methods take beyond the priors' names."""
    return set() if model.conserved else {"mean_state", "seasonal"}


def mode_parameters(model: Any, obs: Any, times: Any, *, seed: int = 0, n_starts: int = 2,
                    drop_invalid: bool = False, progress: bool = True) -> dict[str, Any]:
    """The parameters at the posterior mode of the exact reduced model (``parameters='auto'``).

    BFGS from ``n_starts`` prior draws (:func:`tracerbayes.exact.mode.optimised_starts`) on
    the Kalman filter's marginal likelihood times the priors, in NumPyro's unconstrained
    space; the start with the lowest potential energy wins. Far cheaper than NUTS, and the
    right scale for the full-grid ensemble's point parameters. For a tracer that is not
    conserved, also ``mean_state``: the exact model's mean-state field given the data at the
    mode (:func:`tracerbayes.exact.mode.mean_state_field`), which the ensemble's damping
    relaxes the anomalies toward, as the exact model's does; with seasonal forcing, also
    ``seasonal``, its fields at the mode (:func:`tracerbayes.exact.mode.seasonal_field`).
    """
    from tracerbayes.exact.mode import constrained, posterior_mode, state_fields

    data = model.prepare(obs, times, drop_invalid=drop_invalid)
    if progress:
        print(f"parameters: posterior mode of the exact {model.n_modes}-mode model "
              f"({n_starts} BFGS starts) ...", flush=True)
    numpyro_model, mode, _ = posterior_mode(jax.random.fold_in(jax.random.key(seed), 7),
                                            model, data, n_starts)
    values = constrained(numpyro_model, mode)
    out = {k: np.asarray(v) for k, v in values.items()}
    out.update(state_fields(model, data, out))  # mean state, seasonal forcing: one filter pass
    if progress:
        shown = ", ".join(f"{k} {float(v):.4g}" for k, v in out.items() if np.ndim(v) == 0)
        print(f"  mode: {shown}", flush=True)
    return out


def _seconds(times: np.ndarray) -> np.ndarray:
    """(T,) the analysis times in seconds after the first one."""
    if np.issubdtype(times.dtype, np.datetime64):
        return np.asarray((times - times[0]) / np.timedelta64(1, "s"), dtype=float)
    return times.astype(float) - float(times[0])


def _intervals(times: np.ndarray) -> Any:
    """The analysis intervals in seconds: one float when they are equal (or there is a
    single time), else the (T - 1,) array."""
    steps = np.diff(_seconds(times))
    if not steps.size:
        return DAY
    if np.allclose(steps, steps[0], rtol=1e-9):
        return float(steps[0])
    return steps


def fit_ensemble(model: Any, obs: Any, times: Any, method: str, *, ensemble_size: int = 64,
                 localisation_km: float = 300.0, inflation: Any = "adaptive",
                 relaxation: float = RELAXATION,
                 parameters: Any = None, lag: int | None = None, mass_safe: bool = True,
                 seed: int = 0, progress: bool = True, drop_invalid: bool = False,
                 batch_size: int | None = None, weight_stride: int = 1,
                 checkpoint: Checkpoint | None = None,
                 checkpoint_every: int | None = None, devices: int = 1,
                 forecast: str = "reference") -> EnsemblePosterior:
    """Run an ensemble filter and smoother of ``model`` over ``obs``; see :func:`fit`.

    ``forecast``: the ensemble forecast's scheme, ``'reference'`` or ``'fast'``
    (:func:`~tracerbayes.ensemble.tracer.tracer_transition`).

    With ``checkpoint``, the window's cycles run in chunks of ``checkpoint_every`` (default a
    tenth of them) and the ensemble is saved after each (:func:`window_checkpoint`); a
    checkpoint of the same run is continued. ``devices > 1`` splits the members (and the
    LETKF's local analyses, by tiles of the domain) over that many JAX devices
    (:func:`~tracerbayes.ensemble.window.ensemble_mesh`): the same numbers to round-off."""
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"method={method!r}; ensemble state methods are {ENSEMBLE_METHODS}")
    if int(ensemble_size) < 2:
        raise ValueError(f"ensemble_size must be >= 2, got {ensemble_size}")
    mesh = ensemble_mesh(int(devices))
    check_mesh(mesh, int(ensemble_size))
    if not localisation_km > 0:
        raise ValueError(f"localisation_km must be > 0 km, got {localisation_km}")
    adaptive = isinstance(inflation, str)
    if adaptive and inflation != "adaptive":
        raise ValueError(f"inflation={inflation!r}; give 'adaptive' or a factor >= 1")
    if not adaptive and not inflation >= 1.0:
        raise ValueError(f"inflation must be 'adaptive' or >= 1 (1 = none), got {inflation}")
    if not 0.0 <= relaxation <= 1.0:
        raise ValueError(f"relaxation must be in [0, 1] (the fraction of the spread an "
                         f"analysis lost that is restored; 0 = off), got {relaxation}")
    if int(weight_stride) != weight_stride or weight_stride < 1:
        raise ValueError(f"weight_stride must be an integer >= 1 (cells between the LETKF's "
                         f"weight nodes; 1 = every cell), got {weight_stride}")
    grid = model.grid
    times = np.asarray(times)
    dt = _intervals(times)
    prepared = obs.prepare(grid, times, drop_invalid=drop_invalid)
    T, N, n = len(times), int(ensemble_size), grid.n_wet
    if lag is None and T * N * n * 8 > WINDOW_BYTES:
        lag = max(1, WINDOW_BYTES // (N * n * 8) - 1)
    if isinstance(parameters, str):
        if parameters != "auto":
            raise ValueError(f"parameters={parameters!r}; give 'auto', a dict, a Posterior "
                             "or None (prior medians)")
        parameters = mode_parameters(model, obs, times, seed=seed, progress=progress,
                                     drop_invalid=drop_invalid)
    params = point_parameters(model, parameters)
    velocity = model.face_velocity({k: jnp.asarray(v) for k, v in params.items()})
    if getattr(model.velocity, "time_varying", False):  # one field per interval
        faces = model.velocity.at_intervals(times)
        scale = float(params.get("velocity_scale", 1.0))
        velocity = physics.FaceVelocity(faces.east * scale, faces.north * scale)
    noise = noise_field(grid, float(params["noise_lengthscale_km"]) * 1e3)
    transition = tracer_transition(
        grid, velocity, float(params["diffusivity"]), dt, noise, float(params["noise_sd"]),
        damping_rate=(1.0 / (float(params["damping_days"]) * DAY)
                      if "damping_days" in params else 0.0),
        source_sd=float(params.get("source_sd", 0.0)), mean_state=params.get("mean_state"),
        seasonal=(None if params.get("seasonal") is None else seasonal_forcing(
            params["seasonal"], grid.wet_area, noise.basins, _seconds(times)[:-1])),
        scheme=forecast)
    k_init, k_run = jax.random.split(jax.random.key(seed))
    E0 = initial_ensemble(k_init, grid, N, float(np.mean(prepared.value)),
                          float(model.priors.mean_sd), float(params["initial_sd"]),
                          float(params["initial_lengthscale_km"]) * 1e3)
    if "mean_state" in params:  # the first map is the mean state plus an anomaly, as exactly
        E0 = E0 + project_mass_free(jnp.asarray(params["mean_state"])[None], grid.wet_area,
                                    noise.basins)
    observations = stencil_observations(prepared, obs, float(params["error_scale"]))
    area = jnp.asarray(grid.wet_area)
    basins = noise.basins
    update: LocalUpdate | GlobalUpdate
    if method == "letkf":
        lonlat = is_lonlat(grid)
        update = LocalUpdate(jnp.asarray(state_coordinates(grid)),
                             localisation.great_circle_km if lonlat else localisation.euclidean,
                             float(localisation_km) * (1.0 if lonlat else 1e3),
                             cell_area=area if mass_safe else None,
                             basins=basins if mass_safe else None, batch_size=batch_size,
                             nodes=None if weight_stride == 1 else weight_nodes(grid,
                                                                                weight_stride))
    else:
        update = GlobalUpdate(method)
    infl, spec = None, None
    if adaptive:
        if mass_safe:
            def apply(E, factor):
                return mass_free_multiplicative(E, factor, area, basins)
        else:
            apply = multiplicative
        spec = AdaptiveSpec(apply)
    elif inflation != 1.0:
        if mass_safe:
            def infl(key, E):
                return mass_free_multiplicative(E, inflation, area, basins)
        else:
            def infl(key, E):
                return multiplicative(E, inflation)
    relax = None
    if relaxation > 0:
        def relax(E_f, E_a):
            return relax_to_prior_spread(E_f, E_a, relaxation, area, basins)
    settings = {"ensemble_size": N, "localisation_km": float(localisation_km),
                "inflation": inflation if adaptive else float(inflation),
                "relaxation": float(relaxation),
                "lag": "window" if lag is None else int(lag),
                "mass_safe": bool(mass_safe), "seed": int(seed), "dt_s": (dt if np.ndim(dt) == 0
                                                 else f"{np.min(dt):g}..{np.max(dt):g}"),
                "substeps": int(transition.substeps), "weight_stride": int(weight_stride)}
    resume, on_chunk, chunk_size = None, None, None
    if checkpoint is not None:
        chunk_size = checkpoint_every or max(1, -(-T // 10))
        recorded = {**settings, "method": method,
                    "inputs_sha256": _inputs_digest(E0, observations, params)}
        resume, on_chunk = window_checkpoint(checkpoint, recorded)
    result = smooth_window(k_run, transition, E0, observations, update, lag=lag,
                           inflation=infl, forecast_first=False, cell_area=area,
                           progress=progress, adaptive=spec, relax=relax,
                           chunk_size=chunk_size,
                           resume=resume, on_chunk=on_chunk, mesh=mesh)
    return EnsemblePosterior.from_window(model, obs, times, prepared, observations, params,
                                         result, method=method, settings=settings)


def _inputs_digest(*inputs: Any) -> str:
    """SHA-256 of the arrays in ``inputs`` (values, dtypes and shapes): equal for equal
    inputs of a run."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(inputs):
        array = np.asarray(leaf)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def window_checkpoint(checkpoint: Checkpoint, settings: dict[str, Any]
                      ) -> tuple[WindowCheckpoint | None, Callable[[WindowCheckpoint], None]]:
    """Where a checkpointed :func:`~tracerbayes.ensemble.window.smooth_window` goes on from
    (None: the start) and the function that saves its progress after each chunk.

    The archive ``ensemble`` holds the scan's carry and how many cycles and chunks are done;
    ``ensemble-0000``, ``ensemble-0001``, ... each chunk's outputs, written once, before the
    carry that counts them, so the whole window is written once and the carry after every
    chunk. A checkpoint recorded with other ``settings`` raises
    :class:`~tracerbayes.io.checkpoint.CheckpointError`.
    """
    def save(state: WindowCheckpoint) -> None:
        chunk = len(state.pieces) - 1
        checkpoint.save(f"ensemble-{chunk:04d}", state.pieces[-1], {"settings": settings})
        members, buffer, inflation = state.carry
        checkpoint.save("ensemble", {"members": members, "buffer": buffer,
                                     "inflation": inflation},
                        {"settings": settings, "done": state.done, "chunks": chunk + 1})

    def piece(chunk: int) -> dict[str, np.ndarray]:
        loaded = checkpoint.load(f"ensemble-{chunk:04d}")
        if loaded is None:
            raise CheckpointError(f"checkpoint {checkpoint.folder} lacks the outputs of chunk "
                                  f"{chunk} of the ensemble's cycles: remove it to start "
                                  "afresh")
        return loaded[0]

    saved = checkpoint.load("ensemble")
    if saved is None:
        return None, save
    arrays, meta = saved
    checkpoint.check("ensemble", meta, settings)
    pieces = [piece(chunk) for chunk in range(meta["chunks"])]
    carry = (arrays["members"], arrays["buffer"], arrays["inflation"])
    return WindowCheckpoint(meta["done"], carry, pieces), save


# ---------------------------------------------------------------------------------- EKI
def _gaussian_prior(name: str, prior: Any) -> Any:
    """The prior itself if Normal/LogNormal, else the LogNormal with the same median and
    5%-95% range (a positive prior such as HalfNormal)."""
    if isinstance(prior, dist.Normal | dist.LogNormal):
        return prior
    lo, mid, hi = (float(prior.icdf(q)) for q in (0.05, 0.5, 0.95))
    if not lo > 0:
        raise TypeError(f"prior of {name!r} ({type(prior).__name__}) is neither Normal, "
                        "LogNormal nor positive; EKI needs a Gaussian prior in an "
                        "unconstrained space")
    return dist.LogNormal(np.log(mid), np.log(hi / lo) / (2 * 1.6448536269514722))


def _cholesky_logdet(L: jax.Array) -> jax.Array:
    """``sum_k log det S_k`` from the Cholesky factors ``L_k`` (T, m, m) of ``S_k``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)))


@dataclass(frozen=True, eq=False)
class EKIForward:
    """Forward map ``G(theta)`` of :func:`eki_forward`, with its log-determinant term.

    Compared and hashed by identity, as a function is (it is jit-compiled).

    Attributes
    ----------
    innovations : callable
        ``theta -> (e, S)``: the Kalman filter's innovations (T, m) and their covariances
        (T, m, m) at one unconstrained parameter vector.
    offset : float
        Subtracted from ``sum_k log det S_k`` before the square root.
    """

    innovations: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    offset: float = 0.0

    def __call__(self, theta: jax.Array) -> jax.Array:
        """``G(theta) = [whitened innovations; sqrt(sum_k log det S_k - offset)]``."""
        e, S = self.innovations(theta)
        L = jnp.linalg.cholesky(S)
        white = jax.vmap(lambda Lk, ek: jax.scipy.linalg.solve_triangular(Lk, ek, lower=True))(
            L, e).reshape(-1)
        logdet = _cholesky_logdet(L)
        return jnp.concatenate([white, jnp.sqrt(jnp.clip(logdet - self.offset, 0.0))[None]])

    def logdet(self, theta: jax.Array) -> jax.Array:
        """``sum_k log det S_k`` at ``theta`` (to choose ``offset`` below it)."""
        return _cholesky_logdet(jnp.linalg.cholesky(self.innovations(theta)[1]))


def eki_forward(model: Any, data: Any, names: tuple[str, ...], space: Any,
                offset: float = 0.0) -> EKIForward:
    """Forward map ``G(theta)`` (unconstrained theta) for EKI/EKS on the tracer model.

    ``G = [whitened innovations; sqrt(sum_k log det S_k - offset)]`` from the reduced-basis
    Kalman filter, so that ``|G|^2 / 2 = -log p(y | theta) + const``: the negative marginal
    log-likelihood, log-determinant included (ignoring it would favour large noise).
    ``offset`` must stay below the log-determinant over the ensemble.
    """
    def innovations(theta):
        physical = space.to_physical(theta)
        params = {name: physical[i] for i, name in enumerate(names)}
        ssm = model.state_space(params, data)
        padded = KalmanObservations(data.values, data.operators,
                                    model.observation_variances(params, data), data.valid)
        return inversion.kalman_innovations(ssm, padded)

    return EKIForward(innovations, offset)


def eki_priors(model: Any) -> dict[str, Any]:
    """The Normal/LogNormal priors EKI/EKS use for ``model``'s parameters, by name (others
    replaced by the LogNormal with the same median and 5%-95% range); their
    :func:`tracerbayes.ensemble.inversion.parameter_space` is the unconstrained space."""
    return {k: _gaussian_prior(k, p) for k, p in _parameter_priors(model).items()}


def eki_log_posterior(forward: Any, space: Any):
    """``theta -> log p(y | theta) + log p_0(theta)`` (one unconstrained vector, up to a
    constant) from :func:`eki_forward`'s map and the Gaussian prior of ``space``:
    ``-|G(theta)|^2 / 2 - (theta - m_0)^T C_0^{-1} (theta - m_0) / 2``. Differentiable
    with JAX (for :func:`tracerbayes.ensemble.importance.laplace_approximation`)."""
    precision = jnp.linalg.inv(space.prior_cov)

    def log_posterior(theta):
        r = theta - space.prior_mean
        return -0.5 * jnp.sum(forward(theta) ** 2) - 0.5 * r @ precision @ r

    return log_posterior


def fit_eki(model: Any, obs: Any, times: Any, *, ensemble_size: int = 48,
            eki_iterations: int = 5, eks_iterations: int = 100,
            eks_burn_in: int | None = None, seed: int = 0,
            importance_draws: int = 0, importance_rounds: int = 2,
            progress: bool = True, drop_invalid: bool = False) -> InversionPosterior:
    """Parameters by EKI then EKS against the Kalman filter's likelihood; see module doc.

    The posterior draws are the EKS ensembles after ``eks_burn_in`` iterations (default half
    of ``eks_iterations``), pooled: ``ensemble_size`` chains (one per member) of
    ``eks_iterations - eks_burn_in`` draws. EKS starts with small steps (the adaptive step
    grows as the ensemble contracts), so its ensemble needs tens of iterations to reach
    equilibrium; the members' R-hat in :meth:`InversionPosterior.check_diagnostics` tells.

    ``importance_draws > 0`` corrects the pooled EKS draws towards the exact posterior by
    importance sampling (:func:`tracerbayes.ensemble.importance.importance_correct`, Student-t
    proposals refitted ``importance_rounds`` times, Pareto-smoothed weights); the posterior
    draws are then the resampled ``importance_draws`` points (one chain).
    """
    if int(importance_draws) < 0 or int(importance_draws) != importance_draws:
        raise ValueError(f"importance_draws must be 0 (no correction) or a positive integer, "
                         f"got {importance_draws}")
    if int(ensemble_size) < 4:
        raise ValueError(f"ensemble_size must be >= 4 for EKI/EKS, got {ensemble_size}")
    burn = int(eks_iterations) // 2 if eks_burn_in is None else eks_burn_in
    if int(burn) != burn or not 0 <= burn < int(eks_iterations):
        raise ValueError(f"eks_burn_in must be an integer in [0, eks_iterations = "
                         f"{eks_iterations}), got {eks_burn_in}")
    burn = int(burn)
    data = model.prepare(obs, times, drop_invalid=drop_invalid)
    priors = eki_priors(model)
    space = inversion.parameter_space(priors)
    names = space.names
    k_prior, k_eki, k_eks = jax.random.split(jax.random.key(seed), 3)
    theta0 = inversion.prior_ensemble(k_prior, priors, int(ensemble_size))
    logdets = jax.vmap(eki_forward(model, data, names, space).logdet)(theta0)
    m = int(np.sum(np.asarray(data.valid)))
    offset = float(jnp.min(logdets)) - 10.0 * m  # margin: logdet moves by O(m) at most
    forward = jax.jit(eki_forward(model, data, names, space, offset))
    d = int(np.asarray(data.valid).size) + 1  # whitened innovations (padding 0) + logdet
    y, gamma = jnp.zeros(d), jnp.eye(d)
    first = inversion.eki(k_eki, forward, theta0, y, gamma, int(eki_iterations),
                          prior_mean=space.prior_mean, prior_cov=space.prior_cov,
                          progress=progress)
    result = inversion.eks(k_eks, forward, first.ensembles[-1], y, gamma, space.prior_mean,
                           space.prior_cov, int(eks_iterations), space=space,
                           progress=progress)
    # iterates burn + 1, ..., n (entry 0 of the history is the start): (J, M, p)
    kept = jnp.swapaxes(result.ensembles[burn + 1:], 0, 1)
    pooled = np.asarray(space.to_physical(kept))
    settings = {"ensemble_size": int(ensemble_size), "eki_iterations": int(eki_iterations),
                "eks_iterations": int(eks_iterations), "eks_burn_in": burn, "seed": int(seed),
                "eks_time": float(jnp.sum(result.time_steps[burn:])),
                "final_misfit": float(result.misfits[-1]),
                "importance_draws": int(importance_draws)}
    final = pooled
    if importance_draws:
        one = eki_log_posterior(forward, space)

        def log_posterior(theta):  # (B, p)
            lp = jax.vmap(one)(theta)
            # a filter that fails (non-PD innovation covariance far in the proposal's
            # tails) gives zero weight; counted in settings["importance_failed"]
            return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

        corrected = importance.importance_correct(
            jax.random.fold_in(jax.random.key(seed), 3), jax.jit(log_posterior),
            kept.reshape(-1, kept.shape[-1]), int(importance_draws),
            rounds=int(importance_rounds), batch_size=int(ensemble_size), progress=progress)
        final = np.asarray(space.to_physical(corrected.resampled))[None]
        settings.update({"importance_rounds": int(importance_rounds),
                         "pareto_k": corrected.pareto_k, "importance_ess": corrected.ess,
                         "importance_failed": int(np.sum(corrected.log_target == -np.inf))})
    def by_name(draws):  # (chains, draws, p) -> {name: (chains, draws)}
        return {name: draws[..., i] for i, name in enumerate(names)}

    return InversionPosterior(model, obs, np.asarray(times), data, by_name(final), {}, "eki",
                              settings, misfits=np.concatenate(
                                  [np.asarray(first.misfits), np.asarray(result.misfits)]),
                              eks_samples=by_name(pooled))
