"""The top-level run configuration and its twin-experiment (``simulate``) section."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from tracerbayes.cli.config.sections import (
    METHODS,
    VELOCITY_KINDS,
    GridConfig,
    ModelConfig,
    ObservationSource,
    OutputConfig,
    Point,
    PriorsConfig,
    TimesConfig,
    TracerConfig,
    ValidationConfig,
)
from tracerbayes.schema import (
    File,
    Float,
    Int,
    ListOf,
    Optional,
    Quantity,
    Section,
    Str,
    Tagged,
    frozen_dataclass,
    setting,
)

_ERROR = Float(low=0.0, open_low=True)


@frozen_dataclass
class TruthConfig:
    """The true physics of a twin experiment (``tracerbayes simulate``)."""

    section: ClassVar[str] = "simulate.truth"
    diffusivity: float = setting(Quantity("diffusivity", "m^2/s", low=0.0),
                                 "true diffusivity, m^2/s", 300.0)
    noise_sd: float = setting(Float(low=0.0), "process-noise sd per day, tracer units", 0.05)
    noise_lengthscale: float = setting(Quantity("length", "km", low=0.0, open_low=True),
                                       "process-noise lengthscale, km", 150.0)
    initial_field: str | None = setting(
        Optional(Str(("hadisst",))),
        "first map from real data instead of initial_mean plus noise: 'hadisst' (HadISST1 SST "
        "of August 2012, degC, read from cartopy's installation; lon/lat grids)", None)
    initial_mean: float = setting(Float(), "mean of the first map, tracer units", 0.0)
    initial_sd: float = setting(Float(low=0.0), "sd of the first map, tracer units", 1.0)
    initial_lengthscale: float = setting(Quantity("length", "km", low=0.0, open_low=True),
                                         "lengthscale of the first map, km", 120.0)
    u: float = setting(Quantity("speed", "m/s"), "eastward current (constant velocity), m/s",
                       0.0)
    v: float = setting(Quantity("speed", "m/s"), "northward current (constant velocity), m/s",
                       0.0)
    velocity_scale: float = setting(Float(low=0.0), "multiplier of a given velocity field", 1.0)


@frozen_dataclass
class FloatsConfig:
    """Profiling floats surfacing every ``every`` analysis times."""

    section: ClassVar[str] = "simulate.platforms[] (kind: floats)"
    n_floats: int = setting(Int(1), "number of floats")
    error: float = setting(_ERROR, "error sd, tracer units")
    every: int = setting(Int(1), "analysis times between surfacings", 3)
    drift: float = setting(Quantity("length", "m", low=0.0), "drift between surfacings, m",
                           30e3)
    name: str = setting(Str(), "platform name", "float")


@frozen_dataclass
class GliderConfig:
    """A glider flying back and forth along waypoints."""

    section: ClassVar[str] = "simulate.platforms[] (kind: glider)"
    waypoints: tuple = setting(ListOf(Point(), 2), "path, from the first point")
    error: float = setting(_ERROR, "error sd, tracer units")
    speed: float = setting(Quantity("speed", "m/s", low=0.0), "speed, m/s", 0.3)
    every: int = setting(Int(1), "observe every n-th analysis time", 1)
    name: str = setting(Str(), "platform name", "glider")


@frozen_dataclass
class ShipConfig:
    """A ship steaming once along waypoints."""

    section: ClassVar[str] = "simulate.platforms[] (kind: ship)"
    waypoints: tuple = setting(ListOf(Point(), 2), "track, from the first point")
    error: float = setting(_ERROR, "error sd, tracer units")
    speed: float = setting(Quantity("speed", "m/s", low=0.0, open_low=True), "speed, m/s", 5.0)
    every: int = setting(Int(1), "observe every n-th analysis time", 1)
    name: str = setting(Str(), "platform name", "ship")


@frozen_dataclass
class SatelliteConfig:
    """A satellite swath with cloud gaps."""

    section: ClassVar[str] = "simulate.platforms[] (kind: satellite)"
    width: float = setting(Quantity("length", "m", low=0.0, open_low=True), "swath width, m")
    error: float = setting(_ERROR, "error sd, tracer units")
    cloud_fraction: float = setting(Float(0.0, 0.999), "probability a cell is cloudy", 0.3)
    cloud_lengthscale: float = setting(Quantity("length", "m", low=0.0),
                                       "cloud size, m (0: independent cells)", 0.0)
    angle: float = setting(Float(), "ground-track direction, degrees from east", 60.0)
    every: int = setting(Int(1), "observe every n-th analysis time", 1)
    name: str = setting(Str(), "platform name", "satellite")


PLATFORMS = {"floats": FloatsConfig, "glider": GliderConfig, "ship": ShipConfig,
             "satellite": SatelliteConfig}


@frozen_dataclass
class SimulateConfig:
    """Twin experiment: a synthetic truth on the run's grid and times, and its observations."""

    section: ClassVar[str] = "simulate"
    truth: TruthConfig = setting(Section(TruthConfig), "true physics", TruthConfig())
    platforms: tuple = setting(ListOf(Tagged("kind", PLATFORMS)),
                               "observing platforms, each with a `kind`")
    observations: Path | None = setting(Optional(File((".csv",), must_exist=False)),
                                        "where to write the observations (CSV)", None)
    seed: int = setting(Int(0), "random seed of truth and platforms", 0)


@frozen_dataclass
class RunConfig:
    """A complete tracerbayes run (``tracerbayes run/simulate/validate CONFIG``)."""

    section: ClassVar[str] = "top level"
    title: str = setting(Str(), "a title for outputs and figures", "")
    tracer: TracerConfig = setting(Section(TracerConfig), "the tracer", TracerConfig())
    grid: GridConfig = setting(Section(GridConfig), "the grid")
    times: TimesConfig = setting(Section(TimesConfig), "the analysis times")
    observations: tuple = setting(ListOf(Section(ObservationSource), 0),
                                  "observation files", ())
    velocity: Any = setting(Optional(Tagged("kind", VELOCITY_KINDS)),
                            "the current (default: constant, inferred)", None)
    priors: PriorsConfig = setting(Section(PriorsConfig), "priors", PriorsConfig())
    model: ModelConfig = setting(Section(ModelConfig), "the model", ModelConfig())
    method: Any = setting(Tagged("name", METHODS), "inference method", METHODS["auto"]())
    validation: ValidationConfig = setting(Section(ValidationConfig),
                                           "held-out validation", ValidationConfig())
    output: OutputConfig = setting(Section(OutputConfig), "outputs", OutputConfig())
    simulate: SimulateConfig | None = setting(Optional(Section(SimulateConfig)),
                                              "twin-experiment settings", None)
    #: The configuration file this was read from (set by load_config).
    path: Path | None = None

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if not self.observations and self.simulate is None:
            problems.append(("observations", "give at least one observation file (or a "
                                             "simulate section for synthetic ones)"))
        if (self.simulate is not None and self.simulate.truth.initial_field is not None
                and self.grid.cartesian):
            problems.append(("simulate.truth.initial_field",
                             f"{self.simulate.truth.initial_field!r} needs a lon/lat grid"))
        wrong, right = (("lon", "lat"), "x and y") if self.grid.cartesian else (
            ("x", "y"), "lon and lat")
        for k, source in enumerate(self.observations):
            for name in wrong:
                if getattr(source.columns, name) is not None:
                    kind = "an x/y" if self.grid.cartesian else "a lon/lat"
                    problems.append((f"observations[{k}].columns.{name}",
                                     f"the grid is {kind} grid; name the position columns "
                                     f"{right} instead"))
        return problems
