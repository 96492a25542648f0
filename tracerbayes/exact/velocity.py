"""The velocity kinds of the tracer model: a uniform unknown current, a given field, a stream
function.

Each kind is one class implementing :class:`VelocityKind`: its parameters' priors, the face
velocity a parameter draw gives, how fast that may be, and the advection the reduced model
needs of it. :class:`~tracerbayes.exact.model.AdvectionDiffusionModel` and the ensemble path
ask the kind, never its type, so a new kind is one new subclass. The defaults of the
interface project the face velocity of every draw (``K`` full-grid operator applications);
a kind overrides them where it has a cheaper exact shortcut (a uniform current is linear in
four projected unit flows, a given field is projected once).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from tracerbayes import physics
from tracerbayes.exact import projection
from tracerbayes.exact.priors import Smoothness, StreamfunctionBasis, streamfunction_basis
from tracerbayes.grid.basis import SpectralBasis
from tracerbayes.grid.core import Grid

__all__ = [
    "VelocityKind",
    "BasisAdvection",
    "ConstantVelocity",
    "GivenVelocity",
    "StreamfunctionVelocity",
]

KM = 1000.0
#: ``velocity -> Phi^T A L(velocity, 0) Phi`` (K, K): a face velocity's advection projected
#: on a model's basis.
Projector = Callable[[physics.FaceVelocity], jax.Array]


class BasisAdvection(NamedTuple):
    """What a kind needs to advect a model's basis on the full grid (``transition="projected"``).

    Attributes
    ----------
    grid : Grid
    basis : SpectralBasis
    max_speed : float
        The fastest current (m/s) any parameter draw may give.
    max_rate : float
        Upper bound (1/s) of any cell's upwind outflow rate at ``max_speed``: it fixes the
        advection sub-steps.
    tables : dict
        The model's cache, per interval length (s), for kinds that tabulate their advection.
    """

    grid: Grid
    basis: SpectralBasis
    max_speed: float
    max_rate: float
    tables: dict[float, Any]


class VelocityKind(abc.ABC):
    """The interface of a velocity kind: what the model and the ensemble path ask of it.

    A kind must say how to draw its parameters (:meth:`sample`), the face velocity a draw
    gives (:meth:`field`) and a bound of its speed (:meth:`speed_bound`); the rest has
    defaults that work from :meth:`field` alone.
    """

    @property
    def time_varying(self) -> bool:
        """Whether the field has a time axis (one field per analysis interval)."""
        return False

    @abc.abstractmethod
    def sample(self) -> dict[str, Any]:
        """Draw the kind's parameters from their priors (inside a NumPyro model), by name."""

    @abc.abstractmethod
    def field(self, grid: Grid, params: dict[str, Any]) -> physics.FaceVelocity:
        """The face velocity (m/s) on ``grid`` implied by a parameter draw."""

    @abc.abstractmethod
    def speed_bound(self) -> float:
        """The fastest face speed (m/s) a plausible draw gives: the default ``max_speed`` of
        ``transition="projected"``."""

    def scalar_priors(self) -> dict[str, Any]:
        """Priors of the kind's scalar parameters, by name: the ensemble path's point values
        are their medians, and EKI estimates them."""
        return {}

    def point_defaults(self) -> dict[str, Any]:
        """Point values of the kind's parameters that have no scalar prior (the ensemble
        path holds them there)."""
        return {}

    def rate_bound(self, grid: Grid, max_speed: float) -> float:
        """Upper bound (1/s) of any cell's upwind outflow rate at face speeds <= max_speed: a
        general field empties a cell through at most two faces per axis."""
        return _uniform_rate(grid, max_speed * 2.0)

    def reduced_setup(self, grid: Grid, project: Projector) -> Any:
        """What :meth:`reduced_advection` needs of the basis, projected once per model (None:
        nothing, every draw is projected)."""
        return None

    def interval_setup(self, times: np.ndarray, project: Projector) -> Any:
        """For a field that varies in time: :meth:`reduced_setup` of every analysis interval
        (``ModelData.given``); None for a steady field."""
        return None

    def reduced_advection(self, grid: Grid, params: dict[str, Any], setup: Any,
                          project: Projector) -> jax.Array:
        """``Phi^T A L(u, 0) Phi`` (K, K) in 1/s for a parameter draw, from ``setup`` (of
        :meth:`reduced_setup`, or one interval's of :meth:`interval_setup`)."""
        return project(self.field(grid, params))

    def advected_basis(self, advection: BasisAdvection, params: dict[str, Any],
                       dt: float) -> jax.Array:
        """``Phi^T A P(dt) Phi`` (K, K): the basis advected on the full grid over ``dt`` s and
        projected back, in sub-steps short enough for ``max_speed``; NaN for a draw too fast
        for them (a rejected draw, never a silently unstable one)."""
        grid = advection.grid
        vel = self.field(grid, params)
        n = max(1, int(np.ceil(dt * advection.max_rate)))
        moved = projection.project_advection(grid, advection.basis, vel, dt, n)
        stable = (dt / n) * physics.outflow_rate(grid, vel, 0.0) <= 1.0
        return jnp.where(stable, moved, jnp.nan)


def _uniform_rate(grid: Grid, u: float) -> float:
    """The largest upwind outflow rate (1/s) of a uniform current ``(u, u)`` on ``grid``."""
    return physics.max_rate(grid, physics.constant_velocity(grid, u, u), 0.0)


@dataclasses.dataclass(frozen=True)
class ConstantVelocity(VelocityKind):
    """A uniform, unknown current ``(u, v)`` in m/s with independent Normal(0, scale) priors.

    With coastlines, faces to land carry no flux, so mass is conserved regardless.
    """

    scale: float = 0.1  # m/s

    def sample(self) -> dict[str, Any]:
        """Draw ``u`` and ``v``."""
        return {"u": numpyro.sample("u", dist.Normal(0.0, self.scale)),
                "v": numpyro.sample("v", dist.Normal(0.0, self.scale))}

    def field(self, grid: Grid, params: dict[str, Any]) -> physics.FaceVelocity:
        """``(u, v)`` on every open face."""
        return physics.constant_velocity(grid, params["u"], params["v"])

    def speed_bound(self) -> float:
        """Four prior standard deviations."""
        return 4.0 * self.scale

    def scalar_priors(self) -> dict[str, Any]:
        """``u`` and ``v``: Normal(0, scale)."""
        return {"u": dist.Normal(0.0, self.scale), "v": dist.Normal(0.0, self.scale)}

    def rate_bound(self, grid: Grid, max_speed: float) -> float:
        """As for any field, but a uniform current empties a cell through one face per
        axis."""
        return _uniform_rate(grid, max_speed)

    def reduced_setup(self, grid: Grid, project: Projector) -> jax.Array:
        """(4, K, K): the projected unit upwind flows toward +x, -x, +y and -y."""
        units = [physics.constant_velocity(grid, 1.0, 0.0),
                 physics.constant_velocity(grid, -1.0, 0.0),
                 physics.constant_velocity(grid, 0.0, 1.0),
                 physics.constant_velocity(grid, 0.0, -1.0)]
        return jnp.stack([project(v) for v in units])

    def reduced_advection(self, grid: Grid, params: dict[str, Any], setup: Any,
                          project: Projector) -> jax.Array:
        """Upwind advection is linear in the positive and negative parts of ``u`` and ``v``:
        the unit flows weighted by them."""
        u, v = params["u"], params["v"]
        coeffs = jnp.stack([jnp.maximum(u, 0), jnp.maximum(-u, 0),
                            jnp.maximum(v, 0), jnp.maximum(-v, 0)])
        return jnp.tensordot(coeffs, setup, axes=1)


@dataclasses.dataclass(frozen=True)
class GivenVelocity(VelocityKind):
    """A known face velocity (e.g. from a model), optionally multiplied by an unknown scale.

    ``scale_prior=None`` keeps the field as given. A field that varies in time has a leading
    time axis on ``velocity.east`` and ``velocity.north`` and its ``times`` (datetime64, or
    seconds like the analysis times); each analysis interval then moves with the field
    interpolated linearly in time to the interval's midpoint (the nearest end outside the
    field's times).
    """

    velocity: physics.FaceVelocity
    scale_prior: Any = None
    times: Any = None

    def __post_init__(self) -> None:
        steady = np.ndim(self.velocity.east) == 2
        if self.times is None and not steady:
            raise ValueError("a given velocity with a time axis needs its times "
                             "(GivenVelocity(velocity, times=...))")
        if self.times is not None:
            t = np.asarray(self.times)
            if steady or np.shape(self.velocity.east)[0] != t.size:
                raise ValueError(f"GivenVelocity: {t.size} times for a field of shape "
                                 f"{np.shape(self.velocity.east)}; give one time per field")
            if t.size > 1 and not np.all(t[1:] > t[:-1]):
                raise ValueError("GivenVelocity times must be strictly increasing")

    @property
    def time_varying(self) -> bool:
        """Whether the field has a time axis (``times`` given)."""
        return self.times is not None

    def at_intervals(self, times: Any) -> physics.FaceVelocity:
        """The field at the midpoint of every analysis interval, (T - 1, ...) faces."""
        times = np.asarray(times)
        field_t = np.asarray(self.times)
        if np.issubdtype(times.dtype, np.datetime64) != np.issubdtype(field_t.dtype,
                                                                     np.datetime64):
            raise ValueError("the velocity's times and the analysis times must both be "
                             "datetimes or both be seconds")
        if np.issubdtype(times.dtype, np.datetime64):
            origin = times[0]
            times = (times - origin) / np.timedelta64(1, "s")
            field_t = (field_t - origin) / np.timedelta64(1, "s")
        mid = 0.5 * (times[1:] + times[:-1]).astype(float)
        field_t = field_t.astype(float)
        j = np.clip(np.searchsorted(field_t, mid) - 1, 0, max(field_t.size - 2, 0))
        if field_t.size == 1:
            w = np.zeros_like(mid)
        else:
            w = np.clip((mid - field_t[j]) / (field_t[j + 1] - field_t[j]), 0.0, 1.0)
        k = np.minimum(j + 1, field_t.size - 1)

        def blend(a):
            a = np.asarray(a)
            shape = (-1,) + (1,) * (a.ndim - 1)
            return (1 - w).reshape(shape) * a[j] + w.reshape(shape) * a[k]

        return physics.FaceVelocity(blend(self.velocity.east), blend(self.velocity.north))

    def sample(self) -> dict[str, Any]:
        """Draw ``velocity_scale`` (nothing without a scale prior)."""
        if self.scale_prior is None:
            return {}
        return {"velocity_scale": numpyro.sample("velocity_scale", self.scale_prior)}

    def field(self, grid: Grid, params: dict[str, Any]) -> physics.FaceVelocity:
        """The given field times ``velocity_scale`` (1 without one); with its time axis for
        a field that varies in time."""
        scale = params.get("velocity_scale", 1.0)
        v = self.velocity
        return physics.FaceVelocity(v.east * scale, v.north * scale)

    def speed_bound(self) -> float:
        """The fastest given face times the 99.99% quantile of ``scale_prior``."""
        top = physics.max_face_speed(self.velocity)
        scale = 1.0 if self.scale_prior is None else float(self.scale_prior.icdf(0.9999))
        return top * scale

    def scalar_priors(self) -> dict[str, Any]:
        """``velocity_scale``, where it is unknown."""
        return {} if self.scale_prior is None else {"velocity_scale": self.scale_prior}

    def reduced_setup(self, grid: Grid, project: Projector) -> jax.Array:
        """(K, K): the steady field's advection, projected once (still water for a field
        that varies in time: :meth:`interval_setup` projects it per interval)."""
        steady = (physics.constant_velocity(grid, 0.0, 0.0) if self.time_varying
                  else self.velocity)
        return project(steady)

    def interval_setup(self, times: np.ndarray, project: Projector) -> jax.Array | None:
        """(T - 1, K, K): each interval's field (:meth:`at_intervals`), projected."""
        if not self.time_varying:
            return None
        if len(times) < 2:
            raise ValueError("a time-varying velocity needs at least two analysis times")
        faces = self.at_intervals(times)
        return jnp.stack([project(physics.FaceVelocity(e, n))
                          for e, n in zip(faces.east, faces.north, strict=True)])

    def reduced_advection(self, grid: Grid, params: dict[str, Any], setup: Any,
                          project: Projector) -> jax.Array:
        """The projected field times ``velocity_scale``: the advection is linear in it."""
        return params.get("velocity_scale", 1.0) * setup

    def advected_basis(self, advection: BasisAdvection, params: dict[str, Any],
                       dt: float) -> jax.Array:
        """As for any field, but tabulated once per interval length in ``velocity_scale *
        dt`` (up to ``max_speed``) and interpolated; NaN beyond the table."""
        tables = advection.tables
        if dt not in tables:
            top = physics.max_face_speed(self.velocity)
            scale_max = advection.max_speed / top if top > 0 else 1.0
            with jax.ensure_compile_time_eval():  # once, eagerly, even inside a trace
                tables[dt] = projection.advection_table(
                    advection.grid, advection.basis, self.velocity, scale_max * dt)
        return tables[dt](params.get("velocity_scale", 1.0) * dt)


@dataclasses.dataclass(frozen=True)
class StreamfunctionVelocity(VelocityKind):
    """A divergence-free velocity from a Matérn GP stream function (sine modes).

    ``psi = sum_j w_j beta_j sin-mode_j`` with ``beta_j ~ N(0, 1)`` and weights from the
    Matérn spectrum of lengthscale ``lengthscale_km`` scaled so that the typical speed is
    about ``speed`` m/s.
    """

    n_modes: int = 9
    lengthscale_km: float = 300.0
    speed: float = 0.1  # m/s
    smoothness: Smoothness = Smoothness.FIVE_HALVES
    _grids: dict[Grid, tuple[StreamfunctionBasis, float]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    def sample(self) -> dict[str, Any]:
        """Draw the ``n_modes`` coefficients ``streamfunction``."""
        beta = numpyro.sample("streamfunction", dist.Normal(0.0, 1.0).expand([self.n_modes]))
        return {"streamfunction": beta}

    def field(self, grid: Grid, params: dict[str, Any]) -> physics.FaceVelocity:
        """The faces of ``psi``, scaled so that the prior's root-mean-square speed is about
        ``speed``."""
        modes, factor = self._on(grid)
        weights = modes.weights(self.smoothness, self.lengthscale_km * KM, 1.0)
        psi = modes.streamfunction(params["streamfunction"], weights)
        return physics.velocity_from_streamfunction(grid, psi * factor)

    def speed_bound(self) -> float:
        """Ten times ``speed``."""
        return 10.0 * self.speed

    def point_defaults(self) -> dict[str, Any]:
        """``streamfunction``: zeros (still water, the prior mean)."""
        return {"streamfunction": np.zeros(self.n_modes)}

    def reduced_setup(self, grid: Grid, project: Projector) -> None:
        """Nothing to project once; the sine modes and the speed factor of ``grid`` are
        computed here, before any trace."""
        self._on(grid)

    def _on(self, grid: Grid) -> tuple[StreamfunctionBasis, float]:
        """The sine modes on ``grid`` and the factor that makes the mean root-mean-square
        speed of 64 prior draws ``speed``: constants, computed once per grid."""
        if grid not in self._grids:
            modes = streamfunction_basis(grid, self.n_modes)
            self._grids[grid] = (modes, self._speed_factor(grid, modes))
        return self._grids[grid]

    def _speed_factor(self, grid: Grid, modes: StreamfunctionBasis) -> float:
        weights = np.asarray(modes.weights(self.smoothness, self.lengthscale_km * KM, 1.0))
        rng = np.random.default_rng(0)
        draws = rng.normal(size=(64, weights.size))
        speeds = []
        for beta in draws:
            psi = np.tensordot(beta * weights, modes.modes, axes=1)
            fv = physics.velocity_from_streamfunction(grid, psi)
            speeds.append(np.sqrt(np.mean(np.asarray(fv.east) ** 2 + np.asarray(fv.north) ** 2)))
        return self.speed / float(np.mean(speeds))
