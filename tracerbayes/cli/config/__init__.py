"""YAML run configurations: schema, validation and builders of tracerbayes objects.

``load_config(path)`` reads and checks a file into frozen dataclasses (:class:`RunConfig`),
raising one :class:`ConfigError` that lists every problem; ``validate_config(path)`` also
opens the input files and checks the observations against the grid and times; the
``build_*`` functions turn a configuration into a Grid, Observations, Priors, velocity and
model, and :func:`fit_options` into the keyword arguments of :func:`tracerbayes.fit`.
The reference documentation (``docs/configuration.md``) is :func:`reference_markdown`.
"""

from tracerbayes.cli.config.build import (
    build_grid,
    build_model,
    build_model_grid,
    build_observations,
    build_platforms,
    build_priors,
    build_times,
    build_truth,
    build_velocity,
    fit_options,
    grid_pad,
    model_modes,
    seasonal_modes,
    to_distribution,
)
from tracerbayes.cli.config.load import load_config, validate_config
from tracerbayes.cli.config.reference import reference_markdown
from tracerbayes.cli.config.run import RunConfig, SimulateConfig
from tracerbayes.schema import ConfigError, Problem
from tracerbayes.units import UnitError, parse_quantity

__all__ = [
    "ConfigError",
    "Problem",
    "RunConfig",
    "SimulateConfig",
    "UnitError",
    "build_grid",
    "build_model",
    "build_model_grid",
    "grid_pad",
    "model_modes",
    "seasonal_modes",
    "build_observations",
    "build_platforms",
    "build_priors",
    "build_times",
    "build_truth",
    "build_velocity",
    "fit_options",
    "load_config",
    "parse_quantity",
    "reference_markdown",
    "to_distribution",
    "validate_config",
]
