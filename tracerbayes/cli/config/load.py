"""Read, check and validate configuration files.

The YAML reader is PyYAML's safe loader with four more refusals, each reported as a
:class:`ConfigError` that names the file, line and key: a key given twice in one mapping
(PyYAML keeps the later value silently); aliases (``*name``) that repeat more than
:data:`MAX_ALIAS_VALUES` values in all (a "billion laughs" bomb: a kilobyte of text that
would expand to ~10^9 values); an alias inside the value it names; and nesting deeper than
:data:`MAX_DEPTH`. The expanded size of each node is computed once, while composing, from
those of its children, so refusing costs time in proportion to the text, not to its
expansion.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from tracerbayes.cli.config import build
from tracerbayes.cli.config.run import RunConfig
from tracerbayes.grid.core import GridError
from tracerbayes.observations.core import ObservationError
from tracerbayes.schema import (
    ConfigError,
    Context,
    Problem,
    join,
    position,
    read_section,
    yaml_marks,
)

__all__ = ["load_config", "validate_config", "MAX_ALIAS_VALUES", "MAX_DEPTH"]

#: The most values that aliases (``*name``) may add to a configuration by repeating their
#: anchored values; a configuration needs a few dozen, an alias bomb billions.
MAX_ALIAS_VALUES = 10_000
#: The deepest nesting of mappings and lists a configuration may use (they need about 5).
MAX_DEPTH = 100
_MERGE = "tag:yaml.org,2002:merge"


def _key_of(index: Any) -> str | int | None:
    """The key path part of a node that PyYAML composes at ``index``: None for a mapping's
    key (which is not a value), the key's text for its value, the position in a list."""
    if index is None or isinstance(index, int):
        return index
    return str(index.value) if isinstance(index, yaml.ScalarNode) else "?"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that records each node's key path and expanded size, and refuses
    duplicate keys, alias bombs, recursive aliases and deep nesting (see the module)."""

    def __init__(self, text: str, source: Path):
        super().__init__(text)
        self.source = source
        self.keys: list[str | int | None] = []  # key path of the node being composed
        self.sizes: dict[int, int] = {}  # id(node) -> number of values it expands to
        self.paths: dict[tuple[int, int], str] = {}  # node's (line, column) -> key path
        self.alias_values = 0  # values added by aliases so far
        self.duplicates: list[Problem] = []
        self.key_reader = SafeConstructor()  # builds keys to compare them as a dict would

    def path(self) -> str:
        """The key path of the node being composed, e.g. ``observations[0].file``."""
        out = ""
        for key in self.keys:
            out = out if key is None else join(out, key)
        return out

    def refuse(self, mark: Any, message: str) -> NoReturn:
        raise ConfigError([Problem(self.path(), message, mark.line + 1, mark.column + 1)],
                          self.source)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.keys.append(_key_of(index))
        event = self.peek_event()
        if len(self.keys) > MAX_DEPTH:
            self.refuse(event.start_mark, f"values nested more than {MAX_DEPTH} levels deep; "
                                          "a configuration needs a few")
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            self.count_alias(node, event)
        else:
            children = ([n for pair in node.value for n in pair]
                        if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in children)
            mark = node.start_mark
            self.paths.setdefault((mark.line, mark.column), self.path())
        self.keys.pop()
        return node

    def count_alias(self, node: Any, event: Any) -> None:
        size = self.sizes.get(id(node))
        if size is None:  # the anchored value is still being composed
            self.refuse(event.start_mark, f"alias *{event.anchor} is used inside the value "
                                          f"&{event.anchor} names (a recursive alias); a "
                                          "configuration cannot hold a value inside itself")
        self.alias_values += size
        if self.alias_values > MAX_ALIAS_VALUES:
            self.refuse(event.start_mark, f"YAML aliases repeat more than {MAX_ALIAS_VALUES} "
                                          f"values by this *{event.anchor} (an alias bomb?); "
                                          "refused: write the values out or use fewer aliases")

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        first: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue
            seen = first.setdefault(self.key_identity(key_node), key_node)
            if seen is not key_node:
                mark, before = key_node.start_mark, seen.start_mark
                self.duplicates.append(Problem(
                    join(self.path(), str(key_node.value)),
                    f"duplicate key {key_node.value!r}: first given at line {before.line + 1}, "
                    f"column {before.column + 1}; a mapping holds each key once (YAML would "
                    "silently keep the later value): remove one", mark.line + 1,
                    mark.column + 1))
        return node

    def key_identity(self, key_node: Any) -> Any:
        """The key as a dict would hold it (``1`` and ``1.0`` are one key), else its text."""
        try:
            key = self.key_reader.construct_object(key_node)
            hash(key)
            return key
        except Exception:  # an unreadable key is reported when the document is constructed
            return (key_node.tag, key_node.value)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, MemoryError):
            raise
        except Exception as err:  # e.g. 2020-02-30: a timestamp whose day does not exist
            kind = node.tag.rpartition(":")[2] or node.tag
            raise ConstructorError(None, None, f"cannot read {node.value!r} as a {kind}: "
                                               f"{err}", node.start_mark) from err

    def problem(self, err: yaml.YAMLError) -> Problem:
        """``err`` as a Problem at its line, column and key path."""
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        if mark is None:
            return Problem(self.path(), f"invalid YAML: {err}")
        what = " ".join(str(p) for p in (getattr(err, "context", None),
                                          getattr(err, "problem", None)) if p) or str(err)
        where = self.paths.get((mark.line, mark.column), self.path())
        return Problem(where, f"invalid YAML: {what}", mark.line + 1, mark.column + 1)


def _read_text(path: Path) -> str:
    """The text of ``path``, which must be UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError([Problem("", f"cannot read the configuration file: {err}")],
                          path) from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[:err.start]
        line, column = before.count(b"\n") + 1, err.start - before.rfind(b"\n")
        raise ConfigError([Problem("", f"not UTF-8 text: byte {raw[err.start]:#04x} at "
                                       f"offset {err.start}; save the file as UTF-8",
                                   line, column)], path) from err


def _parse(path: Path) -> tuple[object, dict]:
    """The YAML document of ``path`` and the positions of its values (key path -> (line,
    column))."""
    text = _read_text(path)
    try:
        loader = _Loader(text, path)
    except yaml.reader.ReaderError as err:  # a control character, found before parsing
        before = text[:err.position]
        line, column = before.count("\n") + 1, err.position - before.rfind("\n")
        raise ConfigError([Problem("", f"invalid YAML: character #x{err.character:04x} "
                                       f"({err.reason}); delete it", line, column)],
                          path) from err
    try:
        node = loader.get_single_node()
        if loader.duplicates:
            raise ConfigError(loader.duplicates, path)
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError([loader.problem(err)], path) from err
    finally:
        loader.dispose()
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
        what = "the file is empty" if data is None else f"got {type(data).__name__}"
        raise ConfigError([Problem("", f"expected a mapping of settings at the top level; "
                                       f"{what}", *marks.get("", (1, 1)))], path)
    ctx = Context(path.resolve().parent, marks, check_files)
    cfg = read_section(RunConfig, data, ctx, "")
    if ctx.problems:
        raise ConfigError(ctx.problems, path)
    output = cfg.output
    if output.directory is None:
        output = dataclasses.replace(output, directory=ctx.base_dir / "out")
    return dataclasses.replace(cfg, output=output, path=path.resolve())


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
    problems = _input_problems(cfg)
    if not problems:
        return problems
    _, marks = _parse(Path(path))  # the builders' problems name a key: add its line
    return [_located(problem, marks) for problem in problems]


def _located(problem: Problem, marks: dict) -> Problem:
    """``problem`` with the line and column of its key, unless it has them."""
    if problem.line is not None:
        return problem
    line, column = position(marks, problem.path)
    return problem._replace(line=line, column=column)


def _input_problems(cfg: RunConfig) -> list[Problem]:
    """What :func:`validate_config` finds beyond :func:`load_config` (without lines)."""
    problems: list[Problem] = []

    def attempt(where: str, step):  # run a builder, collecting what it raises
        try:
            return step()
        except ConfigError as err:
            problems.extend(err.problems)
        except (GridError, ObservationError, ValueError) as err:
            problems.append(Problem(where, str(err)))
        return None

    if cfg.tracer.forcing_modes and cfg.model.transition == "projected":
        problems.append(Problem("tracer.forcing_modes", "a forcing with memory needs "
                                "model.transition: galerkin (the projected transition cannot "
                                "carry the forcing between maps); set forcing_modes: 0 or "
                                "transition: galerkin"))
    seasonal = cfg.tracer.seasonal_modes
    if seasonal != "auto" and int(seasonal) and cfg.tracer.conserved:
        problems.append(Problem("tracer.seasonal_modes", "an annual forcing needs "
                                "tracer.conserved: false (a conserved tracer's total cannot "
                                "follow a seasonal source); set seasonal_modes: 0 or auto"))
    if seasonal != "auto" and int(seasonal) and cfg.model.transition == "projected":
        problems.append(Problem("tracer.seasonal_modes", "an annual forcing needs "
                                "model.transition: galerkin; set seasonal_modes: 0 (or auto) "
                                "or transition: galerkin"))
    grid = attempt("grid", lambda: build.build_grid(cfg))
    if grid is None:
        return problems
    attempt("velocity", lambda: build.build_velocity(cfg, grid))
    padded = attempt("grid.pad", lambda: build.build_model_grid(cfg, grid))
    model_grid = grid if padded is None else padded[0]
    obs = None
    if cfg.observations:
        obs = attempt("observations", lambda: build.build_observations(cfg))
    if cfg.times.from_observations and obs is None:
        return problems  # the observations' problems are reported already
    times = attempt("times", lambda: build.build_times(cfg, obs))
    if times is not None and len(times) and build.seasonal_modes(cfg, times)[0]:
        from tracerbayes.exact.model import check_seasonal_sampling

        attempt("tracer.seasonal_harmonics", lambda: check_seasonal_sampling(
            times, cfg.tracer.seasonal_harmonics))
    if times is not None and len(times) == 0:
        problems.append(Problem("times", "no analysis times: check start, end and step"))
    elif times is not None and obs is not None:
        drop = build.fit_options(cfg)["drop_invalid"]
        prepared = attempt("observations", lambda: obs.prepare(grid, times, drop_invalid=drop))
        if prepared is not None:
            problems.extend(_size_problems(cfg, model_grid, obs, prepared, len(times), times))
    return problems


#: Share of the machine's memory a run may plan to use.
MEMORY_SHARE = 0.8


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def estimated_memory(cfg: RunConfig, grid: Any, obs: Any, prepared: Any, n_times: int,
                     times: Any = None) -> tuple[float, str]:
    """Peak memory (bytes) the run's largest arrays need, and what they are, in words.

    Exact methods (auto, laplace, nuts): the Kalman smoother's ``T`` covariances of the state
    (``S^2``, about 4 copies), its padded observation rows (``T m_max S``) and the per-draw
    map moments (draws x ``T`` x wet cells x 2). Ensemble methods: members x wet cells x
    ``T`` (the smoothed trajectory) x 3. Doubles, to within a factor of two or so.
    ``times``: the analysis times, which ``tracer.seasonal_modes: auto`` needs to count the
    seasonal forcing's state entries (none counted without them).
    """
    counts = np.bincount(np.asarray(prepared.time_index), minlength=n_times)
    m_max = int(counts.max()) if counts.size else 0
    n = grid.n_wet
    method = cfg.method
    if not method.centred:  # the ensemble state methods
        members = method.ensemble_size
        need = 8.0 * members * n * n_times * 3
        return need, f"{members} members x {n} wet cells x {n_times} times"
    priors = build.build_priors(cfg, obs, grid)
    K = build.model_modes(cfg, grid, priors, n_times, times)[0]
    S = K + build.extra_state(cfg, times)  # (the seasonal entries need the times)
    draws = getattr(method, "map_draws", None) or 100
    need = 8.0 * (4 * n_times * S * S + n_times * m_max * S + 2 * draws * n_times * n)
    return need, (f"{n_times} times x {S}-entry state (covariances), {m_max} observations "
                  f"at the busiest time, maps of {draws} draws x {n} wet cells")


def _size_problems(cfg: RunConfig, grid: Any, obs: Any, prepared: Any, n_times: int,
                   times: Any = None) -> list[Problem]:
    """The run's estimated memory against this machine's (:data:`MEMORY_SHARE` of it)."""
    total = machine_memory()
    if not total:
        return []
    need, what = estimated_memory(cfg, grid, obs, prepared, n_times, times)
    if need <= MEMORY_SHARE * total:
        return []
    return [Problem("times", f"this run would need about {need / 2**30:.3g} GiB ({what}); "
                    f"this machine has {total / 2**30:.3g} GiB: use fewer analysis times "
                    "(times.step), a smaller grid or fewer modes (model.n_modes), or fewer "
                    "map draws (method.map_draws)")]
