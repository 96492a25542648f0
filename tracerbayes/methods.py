"""Inference methods as objects: ``tb.fit(model, obs, times, method=tb.NUTS(num_warmup=...))``.

Each method is a frozen dataclass whose settings are declared once, with their value type,
default and description (:func:`tracerbayes.schema.setting`). A method checks its settings
when it is built (:func:`tracerbayes.schema.checked`: a wrong one raises
:class:`~tracerbayes.schema.SettingsError` naming it), and the run configuration's
``method:`` section is generated from the same declaration
(:data:`tracerbayes.cli.config.sections.METHODS`), so the two cannot drift apart.

``fit(..., method="nuts", num_warmup=200)`` is a convenience for
``fit(..., method=NUTS(num_warmup=200))``; a setting the method does not have is an error
there too, never ignored.

- ``Auto``: NUTS when its estimated work is small, else Laplace (the default);
- ``NUTS``: No-U-Turn sampling of the parameters, the field integrated out exactly;
- ``Laplace``: the exact model's posterior mode with a Gaussian about it;
- ``EnKF``: stochastic ensemble Kalman filter and smoother on the full grid;
- ``ETKF``: ensemble transform Kalman filter and smoother (square root);
- ``LETKF``: localised ETKF (Gaspari-Cohn), for large grids;
- ``EKI``: parameters by ensemble Kalman inversion and sampling, maps Rao-Blackwellised.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tracerbayes.schema import (
    INVALID,
    Bool,
    Context,
    Float,
    Int,
    Optional,
    Quantity,
    Str,
    WordOr,
    checked,
    frozen_dataclass,
    join,
    setting,
)

if TYPE_CHECKING:
    from tracerbayes.io.checkpoint import Checkpoint
    from tracerbayes.posterior.base import AbstractPosterior

__all__ = ["Method", "Auto", "NUTS", "Laplace", "EnKF", "ETKF", "LETKF", "EKI", "METHODS",
           "method_from_name", "CHAIN_METHODS"]

#: Allowed values of ``NUTS.chain_method``.
CHAIN_METHODS = ("auto", "parallel", "vectorized", "sequential")

#: Default relaxation to prior spread of the ensemble methods' analyses (Whitaker & Hamill 2012).
RELAXATION = 0.0

INFLATION = WordOr("adaptive", Float(low=1.0), "'adaptive' or a number >= 1")
MAP_MODES = WordOr("auto", Int(1), "'auto' (enough modes for 95% of the fitted noise field's "
                   "variance, at most 400) or a number of modes")


class PointParameters:
    """The ensemble state methods' parameter values: ``auto``, ``prior``, a mapping of
    parameter names to values, or (in Python) a fitted posterior."""

    doc = ("'auto' (the posterior mode of the exact reduced model), 'prior' (the prior "
           "medians) or a mapping {name: value} in physical units")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if value is None:  # the Python API's spelling of 'prior'
            return "prior"
        if isinstance(value, str) and value in ("auto", "prior"):
            return value
        if hasattr(value, "flat_samples"):  # a fitted Posterior: its posterior means
            return value
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for name, number in value.items():
                array = np.asarray(number) if not isinstance(number, str | bool) else None
                if array is None or array.dtype.kind not in "iuf":
                    ctx.error(join(path, str(name)), f"expected a number, got {number!r}")
                else:
                    out[str(name)] = float(array) if array.ndim == 0 else array
            return out if len(out) == len(value) else INVALID
        return ctx.error(path, f"expected {self.doc}, got {value!r}")


class Method(abc.ABC):
    """An inference method: its settings (dataclass fields) and :meth:`run`, which
    :func:`tracerbayes.fit` calls."""

    #: The method's name in ``fit(method=...)``, configs and outputs.
    name: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every method is one
    #: Fits the departures from the data mean (the exact model's methods) rather than the
    #: values themselves (the ensemble state methods, whose mass checks are on totals).
    centred: ClassVar[bool] = True

    def __post_init__(self) -> None:
        checked(self)

    def settings(self) -> dict[str, Any]:
        """The settings, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if "kind" in f.metadata}

    @abc.abstractmethod
    def run(self, model: Any, obs: Any, times: Any, *, seed: int, progress: bool,
            drop_invalid: bool, checkpoint: Checkpoint | None,
            checkpoint_every: int | None) -> AbstractPosterior:
        """Fit ``model`` to ``obs`` (already split and centred by :func:`tracerbayes.fit`)."""


# ------------------------------------------------------------------------- exact methods
@frozen_dataclass
class _NutsSettings:
    num_warmup: int = setting(Int(1), "warm-up iterations per chain", 500)
    num_samples: int = setting(Int(1), "kept draws per chain", 500)
    num_chains: int = setting(Int(1), "chains", 4)
    target_accept: float = setting(Float(0.0, 1.0, open_low=True),
                                   "target acceptance probability of the step-size "
                                   "adaptation", 0.8)
    max_tree_depth: int = setting(Int(1), "maximum tree depth (2**depth leapfrog steps at "
                                  "most)", 8)
    dense_mass: bool = setting(Bool(), "adapt a dense mass matrix in warm-up (the physical "
                               "parameters are correlated; a diagonal one needs about twice "
                               "the leapfrog steps in the island twin)", True)
    chain_method: str = setting(Str(CHAIN_METHODS), "how chains run: 'auto' is 'parallel' "
                                "when there are at least num_chains devices, else "
                                "'vectorized'", "auto")
    init: str = setting(Str(("mode", "prior")), "chains start at optimised posterior modes "
                        "(one per chain, from its own prior draw) or at prior draws", "mode")
    filter: str = setting(Str(("sequential", "parallel")), "Kalman filter of the marginal "
                          "likelihood: 'sequential' (least work; best on a CPU) or 'parallel' "
                          "(associative scan, O(log T) depth in time; for a GPU); the same "
                          "values to round-off", "sequential")


@frozen_dataclass
class _LaplaceSettings:
    map_draws: int = setting(Int(1), "parameter draws from the Gaussian about the mode mixed "
                             "into the maps", 20)
    map_modes: Any = setting(MAP_MODES, MAP_MODES.doc, "auto")


def _subset(obj: Any, cls: type) -> dict[str, Any]:
    """The fields of ``obj`` that ``cls`` has."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}


@frozen_dataclass
class NUTS(_NutsSettings, Method):
    """NUTS over the physical parameters, the tracer integrated out by the Kalman filter.

    Chains run in parallel over the available JAX devices when there are enough of them,
    vectorised otherwise (:mod:`tracerbayes.exact.nuts`)."""

    name: ClassVar[str] = "nuts"

    def run(self, model: Any, obs: Any, times: Any, *, seed: int, progress: bool,
            drop_invalid: bool, checkpoint: Checkpoint | None,
            checkpoint_every: int | None) -> AbstractPosterior:
        from tracerbayes.exact.nuts import fit_nuts

        return fit_nuts(model, obs, times, **self.settings(), seed=seed, progress=progress,
                        drop_invalid=drop_invalid, checkpoint=checkpoint,
                        checkpoint_every=checkpoint_every)


@frozen_dataclass
class Laplace(_LaplaceSettings, Method):
    """The exact model's posterior mode with a Gaussian about it (Laplace); maps from the
    Rao-Blackwellised smoother on a basis fine enough for the field
    (:mod:`tracerbayes.exact.laplace`). It takes no checkpoints."""

    name: ClassVar[str] = "laplace"

    def run(self, model: Any, obs: Any, times: Any, *, seed: int, progress: bool,
            drop_invalid: bool, checkpoint: Checkpoint | None,
            checkpoint_every: int | None) -> AbstractPosterior:
        from tracerbayes.exact.laplace import fit_laplace

        return fit_laplace(model, obs, times, draws=self.map_draws, map_modes=self.map_modes,
                           seed=seed, progress=progress, drop_invalid=drop_invalid)


@frozen_dataclass
class Auto(_LaplaceSettings, _NutsSettings, Method):  # fields: NUTS's, then Laplace's
    """The default: NUTS when its estimated work is small (about ten minutes on one core),
    otherwise Laplace; the run says which and why
    (:func:`tracerbayes.fitting.choose_method`). The NUTS settings apply when NUTS is
    chosen, the Laplace ones otherwise."""

    name: ClassVar[str] = "auto"

    def choose(self, model: Any, times: Any) -> tuple[NUTS | Laplace, str]:
        """The method this problem gets, and why."""
        from tracerbayes.fitting import choose_method

        name, reason = choose_method(model, None, times, num_warmup=self.num_warmup,
                                     num_samples=self.num_samples, num_chains=self.num_chains)
        chosen = (NUTS(**_subset(self, _NutsSettings)) if name == "nuts"
                  else Laplace(**_subset(self, _LaplaceSettings)))
        return chosen, reason

    def run(self, model: Any, obs: Any, times: Any, *, seed: int, progress: bool,
            drop_invalid: bool, checkpoint: Checkpoint | None,
            checkpoint_every: int | None) -> AbstractPosterior:
        chosen, reason = self.choose(model, times)
        if progress:
            print(f"method auto: {chosen.name} ({reason})", flush=True)
        return chosen.run(model, obs, times, seed=seed, progress=progress,
                          drop_invalid=drop_invalid, checkpoint=checkpoint,
                          checkpoint_every=checkpoint_every)


# ------------------------------------------------------------------------- ensemble methods
@frozen_dataclass
class _EnsembleSettings:
    ensemble_size: int = setting(Int(2), "ensemble members", 64)
    inflation: Any = setting(INFLATION, "'adaptive' (each forecast's inflation estimated from "
                             "its innovations and smoothed in time, Li et al. 2009) or a "
                             "fixed multiplicative factor of the forecast anomalies (1 = none)",
                             "adaptive")
    relaxation: float = setting(Float(0.0, 1.0), "relaxation to prior spread (Whitaker & "
                                "Hamill 2012): each analysis's spread is pulled back this "
                                "fraction of the way to its forecast's, cell by cell, where "
                                "a small ensemble's spurious correlations shrink it (0 = off)",
                                RELAXATION)
    parameters: Any = setting(PointParameters(), PointParameters.doc + "; in Python also a "
                              "fitted Posterior (its posterior means)", "auto")
    lag: int | None = setting(Optional(Int(1)), "smoother lag in analysis times (null: the "
                              "whole window when it fits in memory)", None)
    mass_safe: bool = setting(Bool(), "mass-safe inflation and localisation (every member "
                              "keeps its total)", True)
    forecast: str = setting(Str(("reference", "fast")), "ensemble forecast scheme: "
                            "'reference' (Heun sub-steps, heat-kernel noise on the model "
                            "grid) or 'fast' (fewer, longer SSP Runge-Kutta steps and the "
                            "noise drawn on a 2x coarser grid, in float32 with every "
                            "member's total kept in float64; benchmarks/letkf_scale.py "
                            "--compare)", "reference")
    devices: int = setting(Int(1), "JAX devices to spread the run over: the members split "
                           "evenly between them (ensemble_size must be a multiple), the "
                           "LETKF's local analyses by tiles of the domain; the same numbers "
                           "to round-off (1 = one device)", 1)


class _EnsembleMethod(_EnsembleSettings, Method):
    """The full-grid model run for an ensemble, filtered and smoothed, the parameters held
    at point values (:func:`tracerbayes.ensemble.fit.fit_ensemble`)."""

    centred: ClassVar[bool] = False

    def check(self) -> list[tuple[str, str]]:
        if self.ensemble_size % self.devices:
            multiple = -(-self.ensemble_size // self.devices) * self.devices
            return [("devices", f"{self.ensemble_size} members cannot be split evenly over "
                                f"{self.devices} devices: make ensemble_size a multiple of "
                                f"{self.devices} (e.g. {multiple}) or devices a divisor of "
                                f"{self.ensemble_size}")]
        return []

    def run(self, model: Any, obs: Any, times: Any, *, seed: int, progress: bool,
            drop_invalid: bool, checkpoint: Checkpoint | None,
            checkpoint_every: int | None) -> AbstractPosterior:
        from tracerbayes.ensemble.fit import fit_ensemble

        parameters = {"prior": None}.get(self.parameters, self.parameters) if isinstance(
            self.parameters, str) else self.parameters
        return fit_ensemble(model, obs, times, self.name, ensemble_size=self.ensemble_size,
                            inflation=self.inflation, relaxation=self.relaxation,
                            parameters=parameters, lag=self.lag,
                            mass_safe=self.mass_safe, forecast=self.forecast, seed=seed,
                            progress=progress,
                            drop_invalid=drop_invalid, checkpoint=checkpoint,
                            checkpoint_every=checkpoint_every, devices=self.devices,
                            **self._local_settings())

    def _local_settings(self) -> dict[str, Any]:
        """``fit_ensemble``'s localisation keywords (none for a global update)."""
        return {}


@frozen_dataclass
class EnKF(_EnsembleMethod):
    """Stochastic ensemble Kalman filter (perturbed observations) and smoother."""

    name: ClassVar[str] = "enkf"


@frozen_dataclass
class ETKF(_EnsembleMethod):
    """Ensemble transform Kalman filter (square root, Bishop et al. 2001) and smoother."""

    name: ClassVar[str] = "etkf"


@frozen_dataclass
class LETKF(_EnsembleMethod):
    """Local ensemble transform Kalman filter (Hunt et al. 2007) with Gaspari-Cohn
    localisation, and smoother."""

    name: ClassVar[str] = "letkf"
    localisation: float = setting(Quantity("length", "km", low=0.0, open_low=True),
                                  "localisation half-width (Gaspari-Cohn; weights vanish at "
                                  "twice it), km", 300.0)
    weight_stride: int = setting(Int(1), "solve the local analyses every this many cells and "
                                 "interpolate their transforms between (Yang et al. 2009; 1 = "
                                 "every cell)", 1)

    def _local_settings(self) -> dict[str, Any]:
        return {"localisation_km": self.localisation, "weight_stride": self.weight_stride}


@frozen_dataclass
class EKI(Method):
    """Parameters by ensemble Kalman inversion, then the ensemble Kalman sampler against the
    exact filter's likelihood, with Rao-Blackwellised maps
    (:func:`tracerbayes.ensemble.fit.fit_eki`). It takes no checkpoints."""

    name: ClassVar[str] = "eki"
    ensemble_size: int = setting(Int(4), "ensemble members", 48)
    eki_iterations: int = setting(Int(1), "EKI iterations (to reach the posterior's region)", 5)
    eks_iterations: int = setting(Int(2), "EKS iterations (sampling)", 100)
    eks_burn_in: int | None = setting(Optional(Int(0)), "EKS iterations discarded before the "
                                      "ensembles are pooled into draws (null: half)", None)
    importance_draws: int = setting(Int(0), "0 keeps the pooled EKS draws (exact only for a "
                                    "linear model); n > 0 corrects them by importance sampling "
                                    "against the exact likelihood and returns n draws", 0)

    def check(self) -> list[tuple[str, str]]:
        if self.eks_burn_in is not None and not self.eks_burn_in < self.eks_iterations:
            return [("eks_burn_in", f"must be below eks_iterations ({self.eks_iterations}), "
                                    f"got {self.eks_burn_in}")]
        return []

    def run(self, model: Any, obs: Any, times: Any, *, seed: int, progress: bool,
            drop_invalid: bool, checkpoint: Checkpoint | None,
            checkpoint_every: int | None) -> AbstractPosterior:
        from tracerbayes.ensemble.fit import fit_eki

        return fit_eki(model, obs, times, **self.settings(), seed=seed, progress=progress,
                       drop_invalid=drop_invalid)


#: The methods by name.
METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Auto, NUTS, Laplace, EnKF, ETKF,
                                                             LETKF, EKI)}


def method_from_name(name: str, **settings: Any) -> Method:
    """``fit``'s convenience: the method called ``name`` with ``settings``; a setting it does
    not have is a :class:`TypeError` that lists the ones it has."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method={name!r}; choose one of {list(METHODS)} (or pass a method "
                         "object, e.g. tb.NUTS(num_warmup=1000))")
    cls = METHODS[name]
    known = {f.name for f in dataclasses.fields(cls) if "kind" in f.metadata}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"method {name!r} has no setting{'s' * (len(unknown) > 1)} "
                        f"{', '.join(unknown)}; its settings are {sorted(known)}")
    return cls(**settings)
