"""Read, check and validate configuration files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from tracerbayes.cli.config import build
from tracerbayes.cli.config.run import RunConfig
from tracerbayes.cli.config.schema import ConfigError, Context, Problem, read_section, yaml_marks
from tracerbayes.grid.core import GridError
from tracerbayes.observations.core import ObservationError

__all__ = ["load_config", "validate_config"]


def _parse(path: Path) -> tuple[object, dict]:
    """The YAML document of ``path`` and the positions of its values."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([Problem("", f"cannot read the configuration file: {err}")],
                          path) from err
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        what = " ".join(str(p) for p in (getattr(err, "context", None),
                                          getattr(err, "problem", None)) if p) or str(err)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError([Problem("", f"invalid YAML: {what}", line, column)], path) from err
    return data, ({} if node is None else yaml_marks(node))


def load_config(path: str | os.PathLike, *, check_files: bool = True) -> RunConfig:
    """Read and check a YAML run configuration.

    Parameters
    ----------
    path : path-like
        The YAML file. Relative paths inside it resolve against its folder.
    check_files : bool
        Whether input files (observations, velocity, mask) must exist. ``tracerbayes
        simulate`` passes False: it writes the observations a later run reads.

    Returns
    -------
    RunConfig
        Frozen dataclasses, quantities converted to their documented units.

    Raises
    ------
    ConfigError
        Listing every problem found (key path, YAML line and column, what to fix).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError([Problem("", f"configuration file not found: {path} (resolved to "
                                       f"{path.resolve()})")], path)
    data, marks = _parse(path)
    if not isinstance(data, dict):
        raise ConfigError([Problem("", f"expected a mapping of settings at the top level, got "
                                       f"{type(data).__name__}")], path)
    ctx = Context(path.resolve().parent, marks, check_files)
    cfg = read_section(RunConfig, data, ctx, "")
    if ctx.problems:
        raise ConfigError(ctx.problems, path)
    output = cfg.output
    if output.directory is None:
        output = dataclasses.replace(output, directory=ctx.base_dir / "out")
    return dataclasses.replace(cfg, output=output, path=path.resolve())


def _unsupported_options(cfg: RunConfig) -> list[Problem]:
    """Settings of ``cfg.method`` that this version's :func:`tracerbayes.fit` does not take."""
    import inspect

    from tracerbayes.fitting import fit

    accepted = inspect.signature(fit).parameters
    missing = sorted(set(build.fit_options(cfg)) - set(accepted))
    if not missing:
        return []
    name = build.fit_options(cfg)["method"]
    return [Problem("method.name", f"method {name!r} needs fit() options {missing}, which "
                                   f"this version of tracerbayes.fit does not accept; use "
                                   f"name: nuts")]


def validate_config(path: str | os.PathLike) -> list[Problem]:
    """Every problem with a configuration and its inputs; empty if it is ready to run.

    Beyond :func:`load_config`, builds the grid (reading its mask), the velocity and the
    observations, and checks the observations against the grid and the analysis times
    (:meth:`~tracerbayes.observations.core.Observations.prepare`), and that
    :func:`tracerbayes.fit` accepts the method's options. Runs no inference.
    """
    try:
        cfg = load_config(path)
    except ConfigError as err:
        return err.problems
    problems: list[Problem] = []

    def attempt(where: str, step):  # run a builder, collecting what it raises
        try:
            return step()
        except ConfigError as err:
            problems.extend(err.problems)
        except (GridError, ObservationError, ValueError) as err:
            problems.append(Problem(where, str(err)))
        return None

    problems.extend(_unsupported_options(cfg))
    grid = attempt("grid", lambda: build.build_grid(cfg))
    if grid is None:
        return problems
    attempt("velocity", lambda: build.build_velocity(cfg, grid))
    obs = None
    if cfg.observations:
        obs = attempt("observations", lambda: build.build_observations(cfg))
    if cfg.times.from_observations and obs is None:
        return problems  # the observations' problems are reported already
    times = attempt("times", lambda: build.build_times(cfg, obs))
    if times is not None and len(times) == 0:
        problems.append(Problem("times", "no analysis times: check start, end and step"))
    elif times is not None and obs is not None:
        drop = build.fit_options(cfg)["drop_invalid"]
        attempt("observations", lambda: obs.prepare(grid, times, drop_invalid=drop))
    return problems
