"""Typed settings: value types, sections and error collection, shared by the method objects
(:mod:`tracerbayes.methods`) and the run configuration (:mod:`tracerbayes.cli.config`).

A section is a frozen dataclass whose fields are declared with :func:`setting` (a value type
and a one-line description). :func:`read_section` reads a YAML mapping into it, checking
unknown keys, missing required keys, types, units, ranges and the section's own
cross-field ``check``, and records every problem (with its full key path and YAML line) in
a :class:`Context` instead of stopping at the first. :func:`checked` applies the same value
types to an object built in Python, so a method object and its configuration section are
one declaration with one set of defaults and checks.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar, dataclass_transform

import numpy as np

from tracerbayes.units import KINDS, UnitError, parse_quantity

__all__ = ["ConfigError", "Problem", "Context", "SettingsError", "setting", "read_section",
           "checked", "position", "INVALID"]

_T = TypeVar("_T")

#: Marks a value that could not be read (a problem was recorded instead).
INVALID = type("Invalid", (), {"__repr__": lambda self: "INVALID"})()
_REQUIRED = dataclasses.MISSING


@dataclass_transform(frozen_default=True, kw_only_default=True)
def frozen_dataclass(cls: type[_T]) -> type[_T]:
    """``cls`` as a frozen, keyword-only dataclass (every section is one)."""
    return dataclasses.dataclass(frozen=True, kw_only=True)(cls)


class SectionClass(Protocol):
    """A section: a dataclass (see :func:`frozen_dataclass`) named by ``section``."""

    section: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


class Problem(NamedTuple):
    """One thing wrong with a configuration: where (key path, YAML line/column) and what."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class ConfigError(ValueError):
    """A configuration has problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[Problem], source: str | Path = "configuration"):
        self.problems = list(problems)
        self.source = str(source)
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.source}: {n} problem{'s' if n != 1 else ''}:\n{lines}")


class Context:
    """Where reading happens (the config file's folder) and the problems found so far."""

    def __init__(self, base_dir: Path, marks: dict[str, tuple[int, int]] | None = None,
                 check_files: bool = True):
        self.base_dir = base_dir
        self.marks = marks or {}
        self.check_files = check_files
        self.problems: list[Problem] = []
        self.siblings: dict[str, Any] = {}

    def error(self, path: str, message: str) -> Any:
        """Record a problem at ``path`` and return :data:`INVALID`."""
        self.problems.append(Problem(path, message, *position(self.marks, path)))
        return INVALID

    def resolve(self, text: str) -> Path:
        """``text`` as a path; relative paths resolve against the config file's folder."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def position(marks: dict[str, tuple[int, int]], path: str) -> tuple[int | None, int | None]:
    """(line, column) of ``path`` in ``marks`` (:func:`yaml_marks`), or of the nearest
    enclosing key with a position (e.g. the section of a missing key); (None, None) if none."""
    key = path
    while key and key not in marks:  # drop the last ".name" or "[index]"
        shorter = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key)
        key = shorter if shorter != key else ""
    return marks.get(key, (None, None))


def setting(kind: Any, doc: str, default: Any = _REQUIRED) -> Any:
    """A section field read with value type ``kind`` (required when there is no default)."""
    return dataclasses.field(default=default, metadata={"kind": kind, "doc": doc})


def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def join(path: str, key: str | int) -> str:
    """``priors`` + ``diffusivity`` -> ``priors.diffusivity``; ints as list indices."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


# ------------------------------------------------------------------------- value types
class Int:
    def __init__(self, low: int | None = None):
        self.low = low
        self.doc = "integer" + (f" >= {low}" if low is not None else "")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            return ctx.error(path, f"expected an {self.doc}, got {_got(value)}")
        if self.low is not None and value < self.low:
            return ctx.error(path, f"expected an {self.doc}, got {value}")
        return int(value)


def _check_range(value: float, low: float | None, high: float | None, open_low: bool,
                 ctx: Context, path: str, doc: str) -> Any:
    bad_low = low is not None and (value <= low if open_low else value < low)
    bad_high = high is not None and value > high
    if bad_low or bad_high or not np.isfinite(value):
        return ctx.error(path, f"expected {doc}, got {value:g}")
    return value


def _range_doc(low: float | None, high: float | None, open_low: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if open_low else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return " and ".join(parts)


def _float(value: Any) -> float:
    """``value`` (a real number) as a float; an int too large for one becomes +-inf (refused
    as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class Float:
    def __init__(self, low: float | None = None, high: float | None = None,
                 open_low: bool = False):
        self.low, self.high, self.open_low = low, high, open_low
        bounds = _range_doc(low, high, open_low)
        self.doc = "a number" + (f" {bounds}" if bounds else "")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        return _check_range(_float(value), self.low, self.high, self.open_low, ctx, path,
                            self.doc)


class Quantity:
    """A number in ``unit`` or a ``"<number> <unit>"`` string of the same kind."""

    def __init__(self, kind: str, unit: str, low: float | None = None,
                 high: float | None = None, open_low: bool = False):
        self.kind, self.unit = kind, unit
        self.low, self.high, self.open_low = low, high, open_low
        bounds = _range_doc(low, high, open_low)
        self.doc = f"{KINDS[kind][0][2:].lstrip()} in {unit}" + (f", {bounds}" if bounds else "")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            value = _float(value)
        try:
            number = parse_quantity(value, self.kind, self.unit)
        except UnitError as err:
            return ctx.error(path, str(err))
        return _check_range(number, self.low, self.high, self.open_low, ctx, path,
                            f"{self.doc}")


class Bool:
    doc = "true or false"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, bool | np.bool_):
            return ctx.error(path, f"expected true or false, got {_got(value)}")
        return bool(value)


class Str:
    def __init__(self, choices: tuple[str, ...] | None = None):
        self.choices = choices
        self.doc = "text" if choices is None else "one of " + ", ".join(f"'{c}'" for c in choices)

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, str):
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        if self.choices is not None and value not in self.choices:
            return ctx.error(path, f"{value!r} is not {self.doc}{suggest(value, self.choices)}")
        return value


def suggest(word: str, options: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Time:
    doc = "a date or date-time (ISO 8601, UTC), e.g. 2012-08-01 or 2012-08-01T12:00"
    #: The years datetime64[ns] holds (converting a time outside them wraps around silently).
    years = (1678, 2261)

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        time = None
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        if isinstance(value, datetime.date):  # a datetime is a date too
            time = np.datetime64(value)
        elif isinstance(value, str):
            try:
                time = np.datetime64(value.strip().rstrip("Z"))
            except ValueError:
                pass
        if time is None or np.isnat(time):
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        year = int(time.astype("datetime64[Y]").astype(np.int64)) + 1970
        if not self.years[0] <= year <= self.years[1]:
            return ctx.error(path, f"{value} is outside the years {self.years[0]} to "
                                   f"{self.years[1]} that analysis times (datetime64[ns]) hold")
        return time.astype("datetime64[ns]")


class File:
    """A path to an existing input file (relative to the config file's folder)."""

    def __init__(self, suffixes: tuple[str, ...] | None = None, must_exist: bool = True):
        self.suffixes, self.must_exist = suffixes, must_exist
        self.doc = "a file path" + (f" ({', '.join(suffixes)})" if suffixes else "")

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        resolved = ctx.resolve(value)
        if self.suffixes and resolved.suffix.lower() not in self.suffixes:
            return ctx.error(path, f"{value!r} has suffix {resolved.suffix!r}; expected one of "
                                   f"{list(self.suffixes)}")
        if self.must_exist and ctx.check_files and not resolved.is_file():
            return ctx.error(path, f"file {value!r} not found (resolved to {resolved}, "
                                   f"relative to the config file's folder {ctx.base_dir})")
        return resolved


class Folder:
    doc = "a folder path (created when needed)"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        return ctx.resolve(value)


class Range:
    """``[low, high]`` with ``low < high``, each read by ``item``."""

    def __init__(self, item: Any, what: tuple[str, str]):
        self.item, self.what = item, what
        self.doc = f"[{what[0]}, {what[1]}], two values of {item.doc}, increasing"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, list) or len(value) != 2:
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        low, high = (self.item.read(v, ctx, join(path, k)) for k, v in enumerate(value))
        if INVALID in (low, high):
            return INVALID
        if not low < high:
            return ctx.error(path, f"the range [{low:g}, {high:g}] is reversed or empty; give "
                                   f"[{self.what[0]}, {self.what[1]}] with {self.what[0]} < "
                                   f"{self.what[1]}, e.g. [{high:g}, {low:g}]")
        return (low, high)


class WordOr:
    """The keyword ``word`` or a value of ``kind`` (text other than the word is read by
    ``kind`` when it reads text, as a quantity does, and is an error otherwise)."""

    def __init__(self, word: str, kind: Any, doc: str):
        self.word, self.kind, self.doc = word, kind, doc

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if isinstance(value, str) and value == self.word:
            return self.word
        if isinstance(value, str) and not isinstance(self.kind, Quantity):
            return ctx.error(path, f"expected {self.doc}, got {value!r}")
        return self.kind.read(value, ctx, path)


class Optional:
    """``kind`` or null."""

    def __init__(self, kind: Any):
        self.kind = kind
        self.doc = f"{kind.doc}, or null"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        return None if value is None else self.kind.read(value, ctx, path)


class ListOf:
    def __init__(self, item: Any, low: int = 1):
        self.item, self.low = item, low
        least = f" (at least {low})" if low else ""
        self.doc = f"a list{least} of {getattr(item, 'doc', 'items')}"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, list) or len(value) < self.low:
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        items = [self.item.read(v, ctx, join(path, k)) for k, v in enumerate(value)]
        return INVALID if INVALID in items else tuple(items)


class Section:
    """A mapping read into the dataclass ``cls`` (see :func:`read_section`)."""

    def __init__(self, cls: type[SectionClass]):
        self.cls = cls
        self.doc = f"a mapping (see `{cls.section}`)"

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        return read_section(self.cls, value, ctx, path)


class Tagged:
    """A mapping whose ``tag`` key (e.g. ``kind``, ``name``) selects its section class."""

    def __init__(self, tag: str, classes: Mapping[str, type[SectionClass]]):
        self.tag, self.classes = tag, classes
        self.doc = (f"a mapping whose `{tag}` is one of "
                    + ", ".join(f"'{name}'" for name in classes))

    def read(self, value: Any, ctx: Context, path: str) -> Any:
        if not isinstance(value, dict):
            return ctx.error(path, f"expected {self.doc}, got {_got(value)}")
        name = value.get(self.tag, INVALID)
        if name is INVALID:
            return ctx.error(path, f"missing required key {self.tag!r}: one of "
                                   f"{list(self.classes)}")
        if not isinstance(name, str) or name not in self.classes:
            return ctx.error(join(path, self.tag), f"{name!r} is not one of "
                             f"{list(self.classes)}{suggest(name, self.classes)}")
        rest = {k: v for k, v in value.items() if k != self.tag}
        return read_section(self.classes[name], rest, ctx, path)


# ------------------------------------------------------------------------- sections
def read_section(cls: type[SectionClass], value: Any, ctx: Context, path: str) -> Any:
    """Read the mapping ``value`` into the section dataclass ``cls``; INVALID on problems.

    Fields are read in declaration order; while reading, ``ctx.siblings`` holds the fields
    read so far, so that a value type may depend on an earlier sibling. After the fields,
    ``cls.check(self)`` may return ``(key, message)`` pairs for cross-field problems.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        return ctx.error(path, f"expected a mapping of settings ({cls.section}), got "
                               f"{_got(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if "kind" in f.metadata}
    before = len(ctx.problems)
    for key in value:
        if key not in fields:
            ctx.error(join(path, str(key)),
                      f"unknown key {str(key)!r}; valid keys here: {sorted(fields)}"
                      f"{suggest(key, fields)}")
    outer, ctx.siblings = ctx.siblings, {}
    values = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is _REQUIRED:
                ctx.error(join(path, name), f"missing required key {name!r} "
                                            f"({f.metadata['doc']})")
            continue
        values[name] = f.metadata["kind"].read(value[name], ctx, join(path, name))
        ctx.siblings[name] = values[name]
    ctx.siblings = outer
    if len(ctx.problems) > before:
        return INVALID
    try:
        obj = cls(**values)
    except SettingsError as err:  # a class that checks itself on construction
        for key, message in err.problems:
            ctx.error(join(path, key) if key else path, message)
        return INVALID
    for key, message in getattr(obj, "check", lambda: [])():
        ctx.error(join(path, key) if key else path, message)
    return INVALID if len(ctx.problems) > before else obj


class SettingsError(ValueError):
    """Settings given in Python (a method object's) that the value types refuse; the
    message names every one, and ``problems`` holds them as (key, message) pairs."""

    def __init__(self, owner: str, problems: list[tuple[str, str]]):
        self.owner, self.problems = owner, list(problems)
        super().__init__(f"{owner}: " + "; ".join(f"{key}: {message}" if key else message
                                                  for key, message in self.problems))


def checked(obj: Any) -> None:
    """Read every :func:`setting` field of the frozen dataclass ``obj`` through its value
    type, as the configuration would, store the converted values (``"300 km"`` becomes
    ``300.0``) and run its ``check``; raise :class:`SettingsError` naming each problem.

    Called from ``__post_init__``; reading is idempotent, so an object built by
    :func:`read_section` from a configuration passes again unchanged.
    """
    ctx = Context(Path.cwd(), check_files=False)
    values = {}
    for f in dataclasses.fields(obj):
        if "kind" in f.metadata:
            values[f.name] = f.metadata["kind"].read(getattr(obj, f.name), ctx, f.name)
            ctx.siblings[f.name] = values[f.name]
    problems = [(p.path, p.message) for p in ctx.problems]
    if not problems:
        for name, value in values.items():
            object.__setattr__(obj, name, value)
        problems = list(getattr(obj, "check", lambda: [])())
    if problems:
        raise SettingsError(type(obj).__name__, problems)


def yaml_marks(node: Any, path: str = "", marks: dict | None = None) -> dict:
    """Key path -> (line, column), 1-based, of every value in a composed YAML node tree."""
    import yaml

    marks = {} if marks is None else marks
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, child in node.value:
            yaml_marks(child, join(path, str(key.value)), marks)
    elif isinstance(node, yaml.SequenceNode):
        for k, child in enumerate(node.value):
            yaml_marks(child, join(path, k), marks)
    return marks
