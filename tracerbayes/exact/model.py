"""The stochastic advection-diffusion tracer model in a reduced spectral basis, for NumPyro.

State: coefficients ``z_k`` of the tracer in the first ``K`` Neumann eigenvectors ``Phi`` of
the masked grid (:mod:`tracerbayes.grid.basis`), ``c_k ~ Phi z_k``, at analysis times
``t_0 < ... < t_{T-1}``::

    z_0     ~ N(mu e_0, diag(p))                p: masked Matérn spectrum (initial_sd,
                                                   initial_lengthscale), mass mode: mean_sd
    z_{k+1} = expm(L_K dt_k) z_k + w_k,         w_k ~ N(0, diag(q) dt_k / 1 day)
    y_k     = H_k Phi z_k + e_k,                e_k ~ N(0, (error_scale * error)^2)

with ``L_K = Phi^T A L(velocity, diffusivity) Phi`` the projected finite-volume operator,
``q`` the masked Matérn spectrum of the process noise (noise_sd per sqrt(day),
noise_lengthscale) with zero variance on the constant mode(s): every innovation has exactly
zero area-weighted total, and since ``e_0^T A L = 0`` the dynamics never change the total
either. The initial mean level ``mu`` is integrated out analytically (it is the mass mode of
``z_0``, prior sd ``mean_sd``).

Tracers that are not conserved (``conserved=False``: SST, oxygen, chlorophyll) follow an
Ornstein-Uhlenbeck anomaly model about the basin-mean level ``m`` (the constant mode(s))::

    dc/dt = -div(u c) + div(kappa grad c) - (c - m) / tau + f

every non-constant mode is damped at the rate ``1 / tau`` (``damping_days``), and the forcing
``f`` has a smooth part (the process noise above) and a basin-scale part: each basin's mean
level random-walks with sd ``source_sd`` per sqrt(day), so the total is free to follow
a seasonal cycle, and its variance is ``mean_sd^2 + source_sd^2 (t_k - t_0) / 1 day`` without
observations. The mean state ``m`` is that level plus a static, smooth, unknown field (a
climatology): its coefficients on the first ``mean_modes`` non-constant modes join the state
(they never change; prior: the masked Matérn spectrum of ``mean_state_sd`` and
``mean_state_lengthscale_km``), and the first map is ``m`` plus an anomaly of the initial-map
prior. Over an interval the augmented state ``(z, z_m)`` moves by ``expm(G dt)`` with
``G = [[L_K - 1/tau, E / tau], [0, 0]]`` (``E`` puts ``z_m`` on its modes), so advection acts
on the whole field, damping only on its departure from ``m``. Conserved tracers (the default)
keep the total exactly and have no mean state.

Forcing with memory (``forcing_modes > 0``): besides the white process noise, the first
``forcing_modes`` modes (the non-constant ones for a conserved tracer) are driven by a smooth
forcing field ``f`` (tracer units per day) that persists for a correlation time ``tau_f``
(``forcing_days``), an Ornstein-Uhlenbeck process sampled at the analysis times whose
coefficients join the state::

    dc/dt = ... + f,   f_{k+1} = e^{-dt_k / tau_f} f_k + v_k,
    v_k ~ N(0, diag(s) (1 - e^{-2 dt_k / tau_f})),   f_0 ~ N(0, diag(s))

with ``s`` the masked Matérn spectrum of ``forcing_sd`` (tracer units per day) on the noise's
lengthscale. Between analysis times ``f`` decays deterministically and the tracer integrates
it, through the same ``expm`` of the generator, which gains the blocks
``dz/dt += E_f f / 1 day`` and ``df/dt = -f / tau_f`` (state ``(z, z_m, f)``). A heating
anomaly that lasts weeks or a season is so carried forward from one map to the next instead
of forgotten, and the tracer is smoother in time than the exponential correlation of white
forcing. ``forcing_sd = 0`` is the model without memory.

Seasonal forcing (``seasonal_modes > 0``, tracers that are not conserved): the lowest
``seasonal_modes`` modes (the constant ones included) are also driven by an annual harmonic
forcing ``f_s(x, t) = a(x) cos(omega t) + b(x) sin(omega t)`` (tracer units per day, ``omega =
2 pi / 365.2425 days``), as the annual cycle of the air-sea heat flux drives SST. Its two
unknown smooth fields join the state as the rotating pair ``(p, r)`` (``p = f_s``,
``dp/dt = omega r``, ``dr/dt = -omega p``; ``p_0 = a``, ``r_0 = b``), with no noise: the
cycle repeats every year, and observations from every season constrain one pair of fields.
Their prior is the masked Matérn spectrum of ``seasonal_sd`` (tracer units per day) on the
mean state's lengthscale, the same for ``a`` and ``b``, so it does not depend on the phase
(the calendar date of the first map plays no role). The generator gains
``dz/dt += E_s p / 1 day`` and the rotation block. With ``seasonal_harmonics = H`` the
forcing is a sum of ``H`` harmonics of the year, ``sum_h a_h cos(h omega t) + b_h sin(h omega
t)``, each its own rotating pair on the same modes with the same prior: the seasonal cycle of
SST is not a sinusoid (a fast spring warming, a slow autumn cooling; two maxima in the
tropics), and the annual and semi-annual harmonics together carry most of it (COADS North
Atlantic: 0.46 degC rms left per cell by the annual one, 0.16 by both).

``transition="projected"`` replaces ``expm(L_K dt_k)`` by the basis advected on the full grid
and projected back, with exact diffusion split around it (:mod:`tracerbayes.exact.projection`).

Priors (physical units, weakly informative; see :class:`Priors`) are on: diffusivity (m^2/s),
velocity (m/s; constant, a scaled given field, or a divergence-free stream-function GP),
process-noise and initial-map standard deviations (tracer units) and lengthscales (km), and
a multiplier of the reported observation errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from tracerbayes import physics
from tracerbayes.exact import truncation
from tracerbayes.exact.distribution import LinearGaussianStateSpace
from tracerbayes.exact.kalman import KalmanObservations, LinearGaussianSSM
from tracerbayes.exact.kalman_parallel import KalmanFilter
from tracerbayes.exact.priors import Smoothness, matern_spectral_density, spectral_variances
from tracerbayes.exact.velocity import (
    BasisAdvection,
    ConstantVelocity,
    GivenVelocity,
    StreamfunctionVelocity,
    VelocityKind,
)
from tracerbayes.grid.basis import SpectralBasis, spectral_basis
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations
from tracerbayes.physics.linalg import expm

__all__ = [
    "ConstantVelocity",
    "GivenVelocity",
    "StreamfunctionVelocity",
    "Priors",
    "ModelData",
    "AdvectionDiffusionModel",
    "seasonal_modes_for",
]

DAY = 86400.0
KM = 1000.0
#: Prior of the damping time (days) of a tracer that is not conserved: median 30 days,
#: 4 to 220 days at +-2 sd (mixed-layer temperature and oxygen anomalies live weeks to months).
DEFAULT_DAMPING_DAYS = dist.LogNormal(np.log(30.0), 1.0)
#: Prior scale of ``source_sd`` for a tracer that is not conserved, in units of the data's
#: spread per sqrt(day): HalfNormal(0.2 s) lets a basin mean move by ~1 s in a month.
DEFAULT_SOURCE_SD = 0.2
#: Number of modes (the constant ones included) that carry the static mean state of a tracer
#: that is not conserved: enough for a basin-scale climatology (about 6 x 6 wavelengths).
DEFAULT_MEAN_MODES = 40
#: Prior scale of ``mean_state_sd``, in units of the data's spread: HalfNormal(2 s).
DEFAULT_MEAN_STATE_SD = 2.0
#: Prior of the forcing's correlation time (days) when it has memory: median 10 days, 0.5 to
#: 200 days at +-2 sd (weather systems to a season).
DEFAULT_FORCING_DAYS = dist.LogNormal(np.log(10.0), 1.5)
#: Prior scale of ``forcing_sd`` (forcing with memory), in units of the data's spread per
#: day: HalfNormal(0.1 s) lets a persistent forcing move the field by ~s in ten days.
DEFAULT_FORCING_SD = 0.1
#: Number of modes (the constant ones included) driven by the seasonal forcing when it is on:
#: basin-scale patterns (about 4 x 4 wavelengths), as the annual heat-flux cycle has.
DEFAULT_SEASONAL_MODES = 20
#: Prior scale of ``seasonal_sd``, in units of the data's spread per day: HalfNormal(0.05 s)
#: lets the annual forcing drive an annual cycle of amplitude ~ 0.05 s / omega ~ 3 s without
#: damping, ~1.3 s with a 30-day damping time.
DEFAULT_SEASONAL_SD = 0.05
#: Length of the year of the seasonal forcing, days.
YEAR_DAYS = 365.2425


# ------------------------------------------------------------------------------- priors
@dataclasses.dataclass(frozen=True)
class Priors:
    """Priors of the physical unknowns, as NumPyro distributions in physical units.

    Attributes
    ----------
    diffusivity : Distribution
        Horizontal eddy diffusivity, m^2/s. Default LogNormal(log 300, 1): 40 to 2000 m^2/s
        at +-2 sd, the range of mesoscale eddy diffusivities.
    noise_sd : Distribution
        Process-noise standard deviation accumulated over one day, tracer units.
    noise_lengthscale_km : Distribution
        Matérn lengthscale of the process noise, km.
    initial_sd : Distribution
        Standard deviation of the first map about its mean level, tracer units.
    initial_lengthscale_km : Distribution
        Matérn lengthscale of the first map, km.
    error_scale : Distribution
        Multiplier of the observation errors given with the data (1 = trust them).
    mean_sd : float
        Prior sd of the mean level of the first map about the data mean (integrated out).
    source_sd : Distribution or None
        Optional source/sink term: the sd of the random change per day of each basin's
        area-mean level (tracer units per sqrt(day)), i.e. process-noise variance on the
        constant mode(s), which frees the total. ``None`` (default): every innovation has
        exactly zero total and a closed basin keeps its tracer; for a model with
        ``conserved=False``, ``None`` means :data:`DEFAULT_SOURCE_SD` times ``data_sd``.
    damping_days : Distribution or None
        ``conserved=False`` only: the damping time ``tau`` (days) of the anomalies about the
        mean state. ``None``: :data:`DEFAULT_DAMPING_DAYS`.
    mean_state_sd : Distribution or None
        ``conserved=False`` only: sd of the static mean-state field about the basin level
        (tracer units). ``None``: HalfNormal(:data:`DEFAULT_MEAN_STATE_SD` ``data_sd``).
    mean_state_lengthscale_km : Distribution
        ``conserved=False`` only: Matérn lengthscale of the mean-state field, km.
    forcing_sd : Distribution or None
        Models with forcing memory (``forcing_modes > 0``) only: sd of the persistent forcing
        field, tracer units per day. ``None``: HalfNormal(:data:`DEFAULT_FORCING_SD`
        ``data_sd``).
    forcing_days : Distribution or None
        Models with forcing memory only: the correlation time of the forcing, days.
        ``None``: :data:`DEFAULT_FORCING_DAYS`.
    seasonal_sd : Distribution or None
        Models with seasonal forcing (``seasonal_modes > 0``) only: sd of each of the two
        fields of the annual harmonic forcing, tracer units per day. ``None``:
        HalfNormal(:data:`DEFAULT_SEASONAL_SD` ``data_sd``).
    representation_scale : Distribution
        Multiplier of the representation error (the prior variance of the modes beyond
        ``n_modes``; models with one only). Default LogNormal(0, 2) (0.02 to 55 at +-2 sd):
        the prior's spectral tail is trusted at the median, but the data may say the field is
        much smoother (or rougher) at the scales the basis leaves out, without bending the
        other parameters (on the independent twin, whose truth is Gaussian-smoothed, the
        mode is 0.03).
    data_sd : float
        The spread of the data that the defaults are relative to (set by
        :meth:`for_observations`; 1 otherwise).
    smoothness : Smoothness
        Matérn smoothness of both fields.
    """

    diffusivity: Any = dist.LogNormal(np.log(300.0), 1.0)
    noise_sd: Any = dist.HalfNormal(0.2)
    noise_lengthscale_km: Any = dist.LogNormal(np.log(150.0), 0.5)
    initial_sd: Any = dist.HalfNormal(2.0)
    initial_lengthscale_km: Any = dist.LogNormal(np.log(200.0), 0.5)
    error_scale: Any = dist.LogNormal(0.0, 0.3)
    mean_sd: float = 10.0
    smoothness: Smoothness = Smoothness.THREE_HALVES
    source_sd: Any = None
    damping_days: Any = None
    mean_state_sd: Any = None
    mean_state_lengthscale_km: Any = dist.LogNormal(np.log(400.0), 0.5)
    forcing_sd: Any = None
    forcing_days: Any = None
    seasonal_sd: Any = None
    representation_scale: Any = dist.LogNormal(0.0, 2.0)
    data_sd: float = 1.0

    @classmethod
    def for_observations(cls, obs: Observations, grid: Grid | None = None,
                         **overrides: Any) -> Priors:
        """Defaults scaled to the spread of the data (``s`` = sd of the values):
        initial_sd ~ HalfNormal(2 s), noise_sd ~ HalfNormal(s / 2), mean_sd = 10 s, and for a
        tracer that is not conserved source_sd ~ HalfNormal(0.2 s) (per sqrt(day)).

        With ``grid``, the lengthscale medians are also at least the grid's scale
        ``L = max(3 cells, extent / 10)`` (cell: the square root of the mean wet-cell area;
        extent: of the total wet area): noise ``max(150 km, L)``, first map
        ``max(200 km, 4 L / 3)``, mean state (a tracer that is not conserved)
        ``max(400 km, 8 L / 3)``, so a coarse or a basin-wide grid does not ask for
        structure it cannot hold."""
        s = float(np.std(obs.value)) or 1.0
        base = {"initial_sd": dist.HalfNormal(2.0 * s), "noise_sd": dist.HalfNormal(0.5 * s),
                "mean_sd": 10.0 * s, "data_sd": s}
        if grid is not None:
            area = np.asarray(grid.wet_area)
            scale = max(3.0 * np.sqrt(area.mean()), np.sqrt(area.sum()) / 10.0) / KM
            base["noise_lengthscale_km"] = dist.LogNormal(np.log(max(150.0, scale)), 0.5)
            base["initial_lengthscale_km"] = dist.LogNormal(
                np.log(max(200.0, 4.0 * scale / 3.0)), 0.5)
            base["mean_state_lengthscale_km"] = dist.LogNormal(
                np.log(max(400.0, 8.0 * scale / 3.0)), 0.5)
        base.update(overrides)
        return cls(**base)


# ------------------------------------------------------------------------------- data
class ModelData(NamedTuple):
    """Everything the likelihood needs that does not depend on parameters.

    Attributes
    ----------
    values, errors : (T, m)
        Padded observed values and their error standard deviations.
    valid : (T, m) bool
    operators : (T, m, K)
        ``H_k Phi``: observation rows in the reduced basis.
    dts : (T - 1,)
        Intervals between analysis times, seconds.
    mean_level : float
        Centre of the prior of the mean level (mean of the observations).
    given : (T - 1, K, K) or None
        For a velocity that varies in time (a :class:`GivenVelocity` with ``times``): the
        projected advection ``Phi^T A L(u_k, 0) Phi`` of every interval's field (1/s), the
        kind's ``interval_setup``.
    tail : TailQuadrature or None
        ``(T, m, steps)`` quadrature of the left-out modes seen by each observation
        (:mod:`tracerbayes.exact.truncation`), for the representation error; None when the
        model has none.
    """

    values: Any
    errors: Any
    valid: Any
    operators: Any
    dts: Any
    mean_level: Any
    given: Any = None
    tail: Any = None


class _Precomputed(NamedTuple):
    eigenvalues: Any  # (K,)
    advection: Any  # the velocity kind's reduced_setup


# ------------------------------------------------------------------------------- model
class AdvectionDiffusionModel:
    """The tracer model of the module docstring, on ``grid`` with ``n_modes`` basis vectors.

    Parameters
    ----------
    grid : Grid
    velocity : VelocityKind
        :class:`ConstantVelocity` (default), :class:`GivenVelocity`,
        :class:`StreamfunctionVelocity` or any other kind
        (:class:`~tracerbayes.exact.velocity.VelocityKind`).
    priors : Priors
    n_modes : int
        ``K``, the number of Neumann eigenvectors kept (at most the number of wet cells).
    transition : {"galerkin", "projected"}
        How the reduced state moves from one analysis time to the next (see
        :meth:`state_space`). ``"galerkin"`` (default): ``expm(L_K dt)``, cheap, but it keeps
        the variance that eddies stir below the basis's scales. ``"projected"``: the basis
        vectors are advected on the full grid over each interval and projected back, so that
        variance is lost as in the full-grid model (:meth:`projected_transition`; for a
        :class:`GivenVelocity` tabulated once per interval length, then about as cheap as
        Galerkin; otherwise ``K`` full-grid advections per likelihood evaluation).
    conserved : bool
        True (default): the total is kept exactly (a passive dye). False: the
        Ornstein-Uhlenbeck anomaly model of the module docstring, with a free basin mean
        (``source_sd``), damping (``damping_days``) and a static mean state
        (``mean_state_sd``, ``mean_state_lengthscale_km``) among the parameters.
    mean_modes : int, optional
        ``conserved=False`` only: the number of modes (constant ones included, at most
        ``n_modes``) that carry the static mean state; 0 damps toward the basin level alone.
        Default :data:`DEFAULT_MEAN_MODES`. The state then has ``n_modes + mean_modes -
        n_basins`` entries (:attr:`state_size`), plus the forcing's.
    forcing_modes : int
        How many of the lowest modes (constant ones excluded for a conserved tracer) are
        also driven by a forcing with memory (the module docstring): their forcing
        coefficients join the state, with ``forcing_sd`` and ``forcing_days`` among the
        parameters. 0 (default): white forcing only. Needs ``transition="galerkin"``.
    seasonal_modes : int
        ``conserved=False`` only: how many of the lowest modes (constant ones included) are
        also driven by the annual harmonic forcing of the module docstring (its two fields
        join the state, ``seasonal_sd`` joins the parameters). 0 (default): none;
        :func:`seasonal_modes_for` gives :data:`DEFAULT_SEASONAL_MODES` when the analysis
        times sample the annual cycle. Needs ``transition="galerkin"``.
    seasonal_harmonics : int
        Harmonics of the year in the seasonal forcing: 1 (default), the annual one alone; 2,
        also the semi-annual one (two more fields in the state, the same prior); ...
        The analysis times must sample the fastest one (:meth:`prepare` says so otherwise):
        no gap between their days of the year longer than ``1 / (3 H)`` of a year.
    representation_error : bool
        True (default): each observation's error variance also holds the prior variance of
        the modes beyond ``n_modes`` at that observation and time (:meth:`tail_spectrum`,
        :meth:`observation_variances`, :mod:`tracerbayes.exact.truncation`), so the
        truncation is accounted for instead of absorbed by ``error_scale`` and the
        diffusivity. Zero for a complete basis.
    max_speed : float, optional
        ``"projected"`` only: the fastest current (m/s) any parameter draw may give, which
        fixes the advection sub-steps (differentiable, no recompilation) or the table's end.
        Default: the kind's ``speed_bound()``: the given field's fastest face times the
        99.99% quantile of ``scale_prior``; 4 prior sd for :class:`ConstantVelocity`; 10
        times ``speed`` for :class:`StreamfunctionVelocity`. A draw beyond the table or too
        fast for the sub-steps (Courant number above 1) gives a NaN transition (a rejected
        draw), never a silently unstable one.
    """

    def __init__(self, grid: Grid, velocity: VelocityKind | None = None,
                 priors: Priors | None = None, n_modes: int = 100, *,
                 transition: str = "galerkin",
                 conserved: bool = True, max_speed: float | None = None,
                 mean_modes: int | None = None, representation_error: bool = True,
                 forcing_modes: int = 0, seasonal_modes: int = 0,
                 seasonal_harmonics: int = 1):
        if transition not in ("galerkin", "projected"):
            raise ValueError(f"transition must be 'galerkin' or 'projected', got {transition!r}")
        if not int(forcing_modes) >= 0:
            raise ValueError(f"forcing_modes must be a count >= 0, got {forcing_modes}")
        if forcing_modes and transition == "projected":
            raise ValueError("forcing_modes > 0 (forcing with memory) needs "
                             "transition='galerkin'")
        if not int(seasonal_modes) >= 0:
            raise ValueError(f"seasonal_modes must be a count >= 0, got {seasonal_modes}")
        if seasonal_modes and conserved:
            raise ValueError("seasonal_modes > 0 (an annual forcing) needs conserved=False: a "
                             "conserved tracer's total cannot follow a seasonal source")
        if seasonal_modes and transition == "projected":
            raise ValueError("seasonal_modes > 0 (an annual forcing) needs "
                             "transition='galerkin'")
        if not int(seasonal_harmonics) >= 1:
            raise ValueError(f"seasonal_harmonics must be a count >= 1 (1: the annual harmonic "
                             f"alone, 2: with the semi-annual one), got {seasonal_harmonics}")
        self.velocity: VelocityKind = ConstantVelocity() if velocity is None else velocity
        if transition == "projected" and self.velocity.time_varying:
            raise ValueError("transition='projected' needs a steady velocity; a time-varying "
                             "given field works with transition='galerkin'")
        self.grid = grid
        self.priors = Priors() if priors is None else priors
        self.n_modes = int(min(n_modes, grid.n_wet))
        self.transition = transition
        self.conserved = bool(conserved)
        self.basis: SpectralBasis = spectral_basis(grid, self.n_modes)
        if mean_modes is not None and not int(mean_modes) >= 0:
            raise ValueError(f"mean_modes must be a count >= 0, got {mean_modes}")
        self.mean_modes = None if mean_modes is None else int(mean_modes)
        self.representation_error = bool(representation_error)
        wanted = DEFAULT_MEAN_MODES if mean_modes is None else int(mean_modes)
        nb = self.basis.n_basins
        #: number of static mean-state coefficients in the state (0 for conserved tracers)
        self.n_mean = 0 if self.conserved else max(0, min(wanted, self.n_modes) - nb)
        self.forcing_modes = int(forcing_modes)
        #: first forced mode (a conserved tracer's forcing keeps the total)
        self._forcing_start = nb if self.conserved else 0
        #: number of forcing coefficients in the state (the modes forced with memory)
        self.n_forcing = min(self.forcing_modes, self.n_modes - self._forcing_start)
        self.seasonal_modes = int(seasonal_modes)
        #: number of modes driven by the annual forcing (its state holds two fields of them)
        self.n_season = min(self.seasonal_modes, self.n_modes)
        #: harmonics of the year in the seasonal forcing (1: annual; 2: annual and semi-annual)
        self.seasonal_harmonics = int(seasonal_harmonics)
        self._pre = self._precompute()
        self.max_speed = None
        if transition == "projected":
            if max_speed is not None and not float(max_speed) > 0:
                raise ValueError(f"max_speed must be a positive speed in m/s, got {max_speed}")
            # the default is 0 only for a still given field
            self.max_speed = (self.velocity.speed_bound() if max_speed is None
                              else float(max_speed))
            self._max_rate = self.velocity.rate_bound(grid, self.max_speed)
            self._tables: dict[float, Any] = {}  # advection per interval length, if tabulated
            self._advection = BasisAdvection(grid, self.basis, self.max_speed, self._max_rate,
                                             self._tables)

    def with_modes(self, n_modes: int) -> AdvectionDiffusionModel:
        """The same model (grid, velocity, priors, transition, conservation) on ``n_modes``
        basis vectors."""
        return AdvectionDiffusionModel(self.grid, self.velocity, self.priors, n_modes,
                                       transition=self.transition, conserved=self.conserved,
                                       max_speed=self.max_speed, mean_modes=self.mean_modes,
                                       representation_error=self.representation_error,
                                       forcing_modes=self.forcing_modes,
                                       seasonal_modes=self.seasonal_modes,
                                       seasonal_harmonics=self.seasonal_harmonics)

    @property
    def has_representation_error(self) -> bool:
        """Whether observations carry a representation error (switched on and modes left
        out)."""
        return self.representation_error and self.n_modes < self.grid.n_wet

    @property
    def state_size(self) -> int:
        """Length of the state: the ``n_modes`` tracer coefficients, then the ``n_mean``
        mean-state coefficients, then the ``n_forcing`` forcing coefficients, then the
        seasonal forcing's two fields per harmonic (``n_season`` coefficients each: the
        harmonics' ``p``, then their ``r``)."""
        return self.n_modes + self.n_mean + self.n_forcing + 2 * self._n_seasonal

    @property
    def forced_modes(self) -> np.ndarray:
        """Indices of the modes forced with memory (:attr:`n_forcing` of them)."""
        return np.arange(self._forcing_start, self._forcing_start + self.n_forcing)

    @property
    def _forcing_columns(self) -> np.ndarray:
        """Indices of the forcing coefficients in the state (after the mean state's)."""
        start = self.n_modes + self.n_mean
        return np.arange(start, start + self.n_forcing)

    @property
    def _n_seasonal(self) -> int:
        """Coefficients of one of the seasonal forcing's fields over all its harmonics."""
        return self.n_season * self.seasonal_harmonics

    @property
    def seasonal_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the seasonal forcing's ``p`` (the forcing now) and ``r`` (its
        quadrature) coefficients in the state (the last entries): ``n_season`` per harmonic
        each, harmonic by harmonic (the annual one first)."""
        start = self.n_modes + self.n_mean + self.n_forcing
        n = self._n_seasonal
        return np.arange(start, start + n), np.arange(start + n, start + 2 * n)

    def seasonal_vectors(self) -> np.ndarray:
        """(n_wet, state_size): the seasonal forcing now (tracer units per day, all its
        harmonics) is ``seasonal_vectors @ state`` (zeros without one)."""
        out = np.zeros((self.grid.n_wet, self.state_size))
        out[:, self.seasonal_columns[0]] = np.tile(self.basis.vectors[:, :self.n_season],
                                                   (1, self.seasonal_harmonics))
        return out

    @property
    def state_vectors(self) -> np.ndarray:
        """(n_wet, state_size): the tracer field is ``state_vectors @ state`` (the basis
        vectors, zeros under the mean-state and forcing entries)."""
        return np.pad(self.basis.vectors, ((0, 0), (0, self.state_size - self.n_modes)))

    def mean_state_vectors(self) -> np.ndarray:
        """(n_wet, state_size): the mean state's non-constant part is ``mean_state_vectors @
        state`` (zeros for a model without a mean state)."""
        out = np.zeros((self.grid.n_wet, self.state_size))
        nb = self.basis.n_basins
        out[:, self.n_modes:self.n_modes + self.n_mean] = self.basis.vectors[:, nb:nb + self.n_mean]
        return out

    # ---------------------------------------------------------------- set-up
    def _project(self, velocity: physics.FaceVelocity, diffusivity: Any = 0.0) -> jax.Array:
        """``Phi^T A L Phi`` (K, K) for the given face velocity and diffusivity."""
        phi = jnp.asarray(self.basis.vectors)
        l_phi = physics.apply_operator(self.grid, phi.T, velocity, diffusivity)  # (K, N)
        return (phi.T * self.basis.cell_area) @ l_phi.T

    def _precompute(self) -> _Precomputed:
        advection = self.velocity.reduced_setup(self.grid, self._project)
        return _Precomputed(jnp.asarray(self.basis.eigenvalues), advection)

    def prepare(self, obs: Observations, times: Any, **kwargs: Any) -> ModelData:
        """Check ``obs`` against the grid and ``times`` and build :class:`ModelData`."""
        if self.n_season:
            check_seasonal_sampling(times, self.seasonal_harmonics)
        prepared = obs.prepare(self.grid, times, **kwargs)
        padded = prepared.padded()
        phi = self.basis.vectors
        operators = np.einsum("tmj,tmjk->tmk", padded.weights, phi[padded.indices])
        operators = np.pad(operators, ((0, 0), (0, 0), (0, self.state_size - self.n_modes)))
        times = np.asarray(times)
        if np.issubdtype(times.dtype, np.datetime64):
            seconds = (times - times[0]) / np.timedelta64(1, "s")
        else:
            seconds = times.astype(float)
        tail = None
        if self.has_representation_error:
            quad = truncation.tail_quadrature(self.grid, self.basis, padded.indices,
                                              padded.weights)
            tail = truncation.TailQuadrature(jnp.asarray(quad.nodes), jnp.asarray(quad.weights))
        given = self.velocity.interval_setup(times, self._project)
        return ModelData(
            values=jnp.asarray(padded.values),
            errors=jnp.sqrt(jnp.asarray(padded.variances)),
            valid=jnp.asarray(padded.valid),
            operators=jnp.asarray(operators),
            dts=jnp.asarray(np.diff(seconds)),
            mean_level=float(np.mean(prepared.value)),
            given=given,
            tail=tail,
        )

    # ---------------------------------------------------------------- physics
    def face_velocity(self, params: dict[str, Any]) -> physics.FaceVelocity:
        """The face velocity (m/s) implied by a parameter draw."""
        return self.velocity.field(self.grid, params)

    def projected_transition(self, params: dict[str, Any], dt: float) -> jax.Array:
        """``D Phi^T A P(dt) Phi D`` (K, K): the ``"projected"`` transition over ``dt`` s.

        ``P(dt)``: the full-grid upwind advection of each basis vector
        (:mod:`tracerbayes.exact.projection`; sub-steps short enough for ``max_speed``);
        ``D = diag(exp(-diffusivity lambda dt / 2))``: exact diffusion of the basis, half
        before and half after (Strang splitting; the basis vectors are the diffusion
        operator's eigenvectors). The velocity kind advects the basis
        (:meth:`~tracerbayes.exact.velocity.VelocityKind.advected_basis`): for
        :class:`GivenVelocity` tabulated once per interval length in ``velocity_scale * dt``
        and interpolated; otherwise run for every call (``K`` full-grid advections).
        """
        if self.transition != "projected":
            raise ValueError("projected_transition needs transition='projected'")
        dt = float(dt)
        moved = self.velocity.advected_basis(self._advection, params, dt)
        half = jnp.exp(-0.5 * params["diffusivity"] * self._pre.eigenvalues * dt)
        return half[:, None] * moved * half[None, :]

    def _projected_transitions(self, params: dict[str, Any], dts: Any) -> jax.Array:
        """(K, K) for equal intervals, else (T - 1, K, K): one transition per interval length."""
        try:
            steps = np.asarray(dts, dtype=float)
        except jax.errors.TracerArrayConversionError as err:
            raise TypeError("transition='projected' needs concrete time intervals "
                            "(ModelData.dts), not traced ones: close over the data "
                            "instead of passing it through jit/vmap") from err
        unique, which = np.unique(steps, return_inverse=True)
        moved = jnp.stack([self.projected_transition(params, d) for d in unique])
        return moved[0] if unique.size == 1 else moved[which]

    def reduced_operator(self, params: dict[str, Any], data: ModelData | None = None
                         ) -> jax.Array:
        """``L_K = Phi^T A L Phi`` (K, K) in 1/s for a parameter draw; (T - 1, K, K), one per
        interval, for a time-varying given velocity (``data`` from :meth:`prepare`)."""
        pre = self._pre
        diffusion = -params["diffusivity"] * jnp.diag(pre.eigenvalues)
        setup = pre.advection if data is None or data.given is None else data.given
        return diffusion + self.velocity.reduced_advection(self.grid, params, setup,
                                                           self._project)

    def damping_rates(self, params: dict[str, Any]) -> jax.Array:
        """(K,) damping rate of each mode, 1/s: ``1 / tau`` on every non-constant mode of a
        tracer that is not conserved, 0 on the constant mode(s) and for conserved tracers."""
        rates = jnp.zeros(self.n_modes)
        if self.conserved:
            return rates
        return rates.at[self.basis.n_basins:].set(1.0 / (params["damping_days"] * DAY))

    def state_space(self, params: dict[str, Any], data: ModelData) -> LinearGaussianSSM:
        """The reduced linear-Gaussian state-space model for a parameter draw."""
        pri = self.priors
        dts = data.dts
        if self.transition == "projected":
            transition = self._projected_transitions(params, dts)
            if not self.conserved:  # damping commutes with nothing: split it off (Lie)
                decay = jnp.exp(-self.damping_rates(params)
                                * (dts[0] if _uniform(dts) else dts[:, None]))
                transition = decay[..., :, None] * transition
                transition = self._with_mean_state(transition, 1.0 - decay, 1.0)
        else:
            rates = self.damping_rates(params)
            operator = self.reduced_operator(params, data) - jnp.diag(rates)
            operator = self._with_seasonal(
                self._with_forcing(self._with_mean_state(operator, rates, 0.0), params))
            if data.given is not None:
                transition = expm(operator * dts[:, None, None])
            elif _uniform(dts):
                transition = expm(operator * dts[0])
            else:
                transition = expm(operator * dts[:, None, None])
        day_fraction = dts[0] / DAY if _uniform(dts) else (dts / DAY)[:, None, None]
        q = spectral_variances(self.basis, pri.smoothness,
                               params["noise_lengthscale_km"] * KM, params["noise_sd"] ** 2)
        nb = self.basis.n_basins
        if "source_sd" in params:  # sources/sinks: the basin-mean level random-walks
            q = q.at[:nb].set(params["source_sd"] ** 2 * self._basin_areas()[:nb])
        process_cov = jnp.diag(jnp.pad(q, (0, self.state_size - self.n_modes))) * day_fraction
        forcing_var = None
        if self.n_forcing:  # f's stationary variance s, and its noise over each interval
            shape = (pri.smoothness, params["noise_lengthscale_km"] * KM,
                     params["forcing_sd"] ** 2)  # per day; constant modes: wavenumber 0
            forcing_var = spectral_variances(
                self.basis, *shape, mass_variance=matern_spectral_density(*shape, 0.0)
            )[self.forced_modes]
            fade = -jnp.expm1(-2.0 * (dts[0] if _uniform(dts) else dts[:, None])
                              / (params["forcing_days"] * DAY))
            cols = self._forcing_columns
            process_cov = process_cov.at[..., cols, cols].set(forcing_var * fade)
        p0 = spectral_variances(self.basis, pri.smoothness,
                                params["initial_lengthscale_km"] * KM,
                                params["initial_sd"] ** 2)
        # Each basin's constant mode: its mean level has sd mean_sd, i.e. the coefficient
        # (mean * sqrt(basin area)) has variance mean_sd^2 * basin area.
        p0 = p0.at[:nb].set(pri.mean_sd**2 * self._basin_areas()[:nb])
        m0 = jnp.zeros(self.state_size).at[: self.basis.n_basins].set(
            data.mean_level * np.sqrt(self._basin_areas()))
        cov0 = jnp.diag(jnp.pad(p0, (0, self.state_size - self.n_modes)))
        if self.n_mean:  # the first map is the mean state plus an anomaly: z_0 = E z_m + a
            sm = self.mean_state_variances(params)
            rows = np.arange(nb, nb + self.n_mean)
            cols = np.arange(self.n_modes, self.n_modes + self.n_mean)
            cov0 = (cov0.at[rows, rows].add(sm).at[rows, cols].set(sm)
                    .at[cols, rows].set(sm).at[cols, cols].set(sm))
        if forcing_var is not None:  # the first forcing is stationary
            cols = self._forcing_columns
            cov0 = cov0.at[cols, cols].set(forcing_var)
        if self.n_season:  # both fields of every harmonic: the same smooth prior
            season = jnp.tile(self.seasonal_variances(params), self.seasonal_harmonics)
            for cols in self.seasonal_columns:
                cov0 = cov0.at[cols, cols].set(season)
        return LinearGaussianSSM(m0, cov0, transition, process_cov)

    def mean_state_variances(self, params: dict[str, Any]) -> jax.Array:
        """(n_mean,) prior variances of the mean-state coefficients (the masked Matérn
        spectrum of ``mean_state_sd`` and ``mean_state_lengthscale_km`` on modes
        ``n_basins ... n_basins + n_mean - 1``)."""
        nb = self.basis.n_basins
        spec = spectral_variances(self.basis, self.priors.smoothness,
                                  params["mean_state_lengthscale_km"] * KM,
                                  params["mean_state_sd"] ** 2)
        return spec[nb:nb + self.n_mean]

    def seasonal_variances(self, params: dict[str, Any]) -> jax.Array:
        """(n_season,) prior variance of each seasonal-forcing coefficient (``p_0`` and
        ``r_0`` alike): the masked Matérn spectrum of ``seasonal_sd`` (per day) on the mean
        state's lengthscale, on modes ``0 ... n_season - 1`` (constant modes: wavenumber 0)."""
        shape = (self.priors.smoothness, params["mean_state_lengthscale_km"] * KM,
                 params["seasonal_sd"] ** 2)
        spec = spectral_variances(self.basis, *shape,
                                  mass_variance=matern_spectral_density(*shape, 0.0))
        return spec[:self.n_season]

    def _with_seasonal(self, generator: jax.Array) -> jax.Array:
        """The generator with the seasonal forcing's pairs appended (``dz/dt += E_s p_h /
        1 day`` on the lowest ``n_season`` modes, ``dp_h/dt = h omega r_h``, ``dr_h/dt = -h
        omega p_h`` for each harmonic ``h``); unchanged without one."""
        if not self.n_season:
            return generator
        p, r = self.seasonal_columns
        omega = 2.0 * np.pi / (YEAR_DAYS * DAY) * np.repeat(
            np.arange(1, self.seasonal_harmonics + 1), self.n_season)
        modes = np.tile(np.arange(self.n_season), self.seasonal_harmonics)
        pad = [(0, 0)] * (generator.ndim - 2) + [(0, 2 * self._n_seasonal)] * 2
        out = jnp.pad(generator, pad).at[..., modes, p].set(1.0 / DAY)
        return out.at[..., p, r].set(omega).at[..., r, p].set(-omega)

    def _with_mean_state(self, block: jax.Array, coupling: jax.Array, corner: float
                         ) -> jax.Array:
        """``[[block, C], [0, corner I]]`` (``..., K + n_mean, K + n_mean``), where ``C``
        carries the mean-state coefficients onto their modes with weights ``coupling`` (K,):
        for the generator, ``coupling = 1 / tau`` and ``corner = 0``; for a transition,
        ``coupling = 1 - exp(-dt / tau)`` and ``corner = 1``. ``block`` unchanged without a
        mean state."""
        if not self.n_mean:
            return block
        nb, K = self.basis.n_basins, self.n_modes
        rows = np.arange(nb, nb + self.n_mean)
        cols = np.arange(K, K + self.n_mean)
        pad = [(0, 0)] * (block.ndim - 2) + [(0, self.n_mean), (0, self.n_mean)]
        out = jnp.pad(block, pad)
        out = out.at[..., rows, cols].set(coupling[..., rows])
        return out.at[..., cols, cols].set(corner)

    def _with_forcing(self, generator: jax.Array, params: dict[str, Any]) -> jax.Array:
        """The generator with the forcing coefficients appended (``dz/dt += E_f f / 1 day`` on
        the forced modes, ``df/dt = -f / tau_f``); unchanged without forcing memory. ``f`` is
        per day so that the generator's entries stay of the order of its rates."""
        if not self.n_forcing:
            return generator
        cols = self._forcing_columns
        pad = [(0, 0)] * (generator.ndim - 2) + [(0, self.n_forcing), (0, self.n_forcing)]
        out = jnp.pad(generator, pad).at[..., self.forced_modes, cols].set(1.0 / DAY)
        return out.at[..., cols, cols].set(-1.0 / (params["forcing_days"] * DAY))

    def _basin_areas(self) -> np.ndarray:
        b = self.basis
        return (b.cell_area @ b.vectors[:, : b.n_basins]) ** 2

    # ---------------------------------------------------------------- NumPyro
    def sample_parameters(self) -> dict[str, Any]:
        """Draw every physical parameter from its prior (inside a NumPyro model)."""
        pri = self.priors
        params = {
            "diffusivity": numpyro.sample("diffusivity", pri.diffusivity),
            "noise_sd": numpyro.sample("noise_sd", pri.noise_sd),
            "noise_lengthscale_km": numpyro.sample("noise_lengthscale_km",
                                                   pri.noise_lengthscale_km),
            "initial_sd": numpyro.sample("initial_sd", pri.initial_sd),
            "initial_lengthscale_km": numpyro.sample("initial_lengthscale_km",
                                                     pri.initial_lengthscale_km),
            "error_scale": numpyro.sample("error_scale", pri.error_scale),
        }
        if pri.source_sd is not None or not self.conserved:
            params["source_sd"] = numpyro.sample("source_sd", self.source_prior())
        if not self.conserved:
            params["damping_days"] = numpyro.sample("damping_days", self.damping_prior())
        if self.has_representation_error:
            params["representation_scale"] = numpyro.sample("representation_scale",
                                                            pri.representation_scale)
        if self.n_mean:
            params["mean_state_sd"] = numpyro.sample("mean_state_sd", self.mean_state_prior())
            params["mean_state_lengthscale_km"] = numpyro.sample(
                "mean_state_lengthscale_km", pri.mean_state_lengthscale_km)
        if self.n_forcing:
            params["forcing_sd"] = numpyro.sample("forcing_sd", self.forcing_sd_prior())
            params["forcing_days"] = numpyro.sample("forcing_days", self.forcing_prior())
        if self.n_season:
            params["seasonal_sd"] = numpyro.sample("seasonal_sd", self.seasonal_sd_prior())
            if "mean_state_lengthscale_km" not in params:  # (mean_modes 0: still its scale)
                params["mean_state_lengthscale_km"] = numpyro.sample(
                    "mean_state_lengthscale_km", pri.mean_state_lengthscale_km)
        params.update(self.velocity.sample())
        return params

    def source_prior(self) -> Any:
        """The prior of ``source_sd`` (the given one, or the default of a tracer that is not
        conserved, relative to the data's spread)."""
        return self._relative_halfnormal(self.priors.source_sd, DEFAULT_SOURCE_SD)

    def damping_prior(self) -> Any:
        """The prior of ``damping_days``."""
        pri = self.priors
        return DEFAULT_DAMPING_DAYS if pri.damping_days is None else pri.damping_days

    def forcing_prior(self) -> Any:
        """The prior of ``forcing_days`` (models with forcing memory)."""
        pri = self.priors
        return DEFAULT_FORCING_DAYS if pri.forcing_days is None else pri.forcing_days

    def forcing_sd_prior(self) -> Any:
        """The prior of ``forcing_sd`` (the given one, or HalfNormal(0.1 ``data_sd``) per
        day)."""
        return self._relative_halfnormal(self.priors.forcing_sd, DEFAULT_FORCING_SD)

    def seasonal_sd_prior(self) -> Any:
        """The prior of ``seasonal_sd`` (the given one, or HalfNormal(0.05 ``data_sd``) per
        day)."""
        return self._relative_halfnormal(self.priors.seasonal_sd, DEFAULT_SEASONAL_SD)

    def mean_state_prior(self) -> Any:
        """The prior of ``mean_state_sd`` (the given one, or HalfNormal(2 ``data_sd``))."""
        return self._relative_halfnormal(self.priors.mean_state_sd, DEFAULT_MEAN_STATE_SD)

    def _relative_halfnormal(self, given: Any, scale: float) -> Any:
        """``given``, or HalfNormal(``scale`` times the data's spread) when it is None."""
        return given if given is not None else dist.HalfNormal(scale * self.priors.data_sd)

    def representation_variances(self, params: dict[str, Any], data: ModelData) -> Any:
        """(T, m) prior variance of the left-out modes at each observation (zeros without
        ``data.tail``): ``sum_j w_j f(theta_j, t_k)`` with :meth:`tail_spectrum` at each
        analysis time, times ``representation_scale``."""
        if data.tail is None:
            return jnp.zeros_like(data.errors)
        t = jnp.concatenate([jnp.zeros(1), jnp.cumsum(jnp.asarray(data.dts))])
        tail = truncation.tail_variance(
            data.tail, lambda lam: self.tail_spectrum(params, lam, t[:, None, None]))
        return params.get("representation_scale", 1.0) * tail

    def tail_spectrum(self, params: dict[str, Any], lam: Any, t: Any) -> Any:
        """Prior variance of a left-out mode of eigenvalue ``lam`` (1/m^2) at ``t`` s after
        the first map, as the reduced model's own linear dynamics give it mode by mode
        (advection, which only moves variance between modes, left aside)::

            f(lam, t) = p(lam) e^{-2 r t} + q(lam) (1 - e^{-2 r t}) / (2 r),
            r = diffusivity * lam + 1 / tau

        ``p``: the first map's Matérn spectrum (``initial_sd``, ``initial_lengthscale_km``);
        ``q``: the process noise's per second (``noise_sd``, ``noise_lengthscale_km``);
        ``1 / tau`` only for a tracer that is not conserved, which also adds the static mean
        state's spectrum (``mean_state_sd``, ``mean_state_lengthscale_km``)."""
        smooth = self.priors.smoothness
        k = jnp.sqrt(lam)
        p = matern_spectral_density(smooth, params["initial_lengthscale_km"] * KM,
                                    params["initial_sd"] ** 2, k)
        q = matern_spectral_density(smooth, params["noise_lengthscale_km"] * KM,
                                    params["noise_sd"] ** 2, k) / DAY
        r = params["diffusivity"] * lam
        if not self.conserved:
            r = r + 1.0 / (params["damping_days"] * DAY)
        safe = jnp.where(r > 0, r, 1.0)
        grown = jnp.where(r > 0, -jnp.expm1(-2.0 * safe * t) / (2.0 * safe), t)
        out = p * jnp.exp(-2.0 * r * t) + q * grown
        if self.n_mean:
            out = out + matern_spectral_density(smooth, params["mean_state_lengthscale_km"] * KM,
                                                params["mean_state_sd"] ** 2, k)
        return out

    def observation_variances(self, params: dict[str, Any], data: ModelData) -> Any:
        """(T, m) error variance of each observation in the reduced model:
        ``(error_scale * error)^2`` plus :meth:`representation_variances`."""
        return ((params["error_scale"] * data.errors) ** 2
                + self.representation_variances(params, data))

    def likelihood(self, params: dict[str, Any], data: ModelData) -> LinearGaussianStateSpace:
        """The marginal distribution of all observations given the parameters."""
        variances = self.observation_variances(params, data)
        return LinearGaussianStateSpace(self.state_space(params, data), data.operators,
                                        variances, data.valid)

    def __call__(self, data: ModelData, kalman: KalmanFilter = KalmanFilter.SEQUENTIAL) -> None:
        """The NumPyro model: priors, then ``y ~ LinearGaussianStateSpace``.

        ``kalman`` says which filter gives the log-likelihood: the distribution's own
        (sequential, the default), or the associative scan (:class:`KalmanFilter`
        ``.PARALLEL``, for a GPU), whose equal value (to round-off) enters as a factor at the
        same site ``y``."""
        params = self.sample_parameters()
        likelihood = self.likelihood(params, data)
        if kalman is KalmanFilter.SEQUENTIAL:
            numpyro.sample("y", likelihood, obs=data.values)
            return
        observations = KalmanObservations(data.values, likelihood.operators,
                                          likelihood.variances, likelihood.valid)
        numpyro.factor("y", kalman.log_likelihood(likelihood.ssm, observations))


def seasonal_modes_for(times: Any, conserved: bool = False) -> tuple[int, str]:
    """The number of seasonally forced modes ``seasonal_modes: auto`` gives for these analysis
    times, and why: :data:`DEFAULT_SEASONAL_MODES` for a tracer that is not conserved whose
    times span at least half a year and sample the annual cycle (no gap longer than half a
    year between their days of the year, on the circle), else 0. Winters only, one time a
    year, or a month-long window cannot tell an annual cycle from a static field or a trend.

    ``times``: datetime64, or seconds (then counted from a year's start)."""
    if conserved:
        return 0, "a conserved tracer has no seasonal source"
    span, gap = _year_sampling(times)
    if span < YEAR_DAYS / 2:
        return 0, f"the analysis times span {span:.0f} days, less than half a year"
    if gap > YEAR_DAYS / 2:
        return 0, (f"the analysis times leave {gap:.0f} days of the year "
                   "unsampled: they cannot tell an annual cycle from a static field")
    return DEFAULT_SEASONAL_MODES, (f"the analysis times span {span:.0f} days and sample the "
                                    f"annual cycle (largest gap {gap:.0f} days)")


def check_seasonal_sampling(times: Any, harmonics: int) -> None:
    """Raise ValueError unless the analysis ``times`` sample the fastest of ``harmonics``
    harmonics of the year: no gap between their days of the year longer than a third of its
    period (1 / (3 ``harmonics``) of a year). One harmonic needs nothing more than
    :func:`seasonal_modes_for` asks."""
    if harmonics <= 1:
        return
    gap = _year_sampling(times)[1]
    if gap > YEAR_DAYS / (3 * harmonics):
        raise ValueError(
            f"seasonal_harmonics={harmonics} needs analysis times that sample a cycle of "
            f"{YEAR_DAYS / harmonics:.0f} days (no gap between their days of the year longer "
            f"than {YEAR_DAYS / (3 * harmonics):.0f} days); these leave {gap:.0f} days: use "
            "fewer harmonics or more frequent times")


def _year_sampling(times: Any) -> tuple[float, float]:
    """The span of the analysis times and the largest gap between their days of the year on
    the circle, in days (``times``: datetime64, or seconds counted from a year's start)."""
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        days = (times - times[0]) / np.timedelta64(1, "D")
        start = times[0].astype("datetime64[Y]")
        phase0 = (times[0] - start) / np.timedelta64(1, "D")
    else:
        days = (times.astype(float) - float(times[0])) / DAY
        phase0 = float(times[0]) / DAY
    if not days.size:
        return 0.0, YEAR_DAYS
    phases = np.sort(np.mod(days + phase0, YEAR_DAYS))
    gaps = np.diff(np.concatenate([phases, phases[:1] + YEAR_DAYS]))
    return float(days[-1] - days[0]), float(gaps.max())


def _uniform(dts: Any) -> bool:
    """Whether all intervals are equal (False when they are traced or there are none)."""
    try:
        d = np.asarray(dts)
    except jax.errors.TracerArrayConversionError:
        return False
    return bool(d.size) and bool(np.all(d == d[0]))
