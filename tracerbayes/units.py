"""Quantities with units in configuration files: ``300 m^2/s``, ``150 km``, ``1 day``.

A quantity is a bare number, taken in the documented unit of its setting, or a string
``"<number> <unit>"`` with a unit from :data:`UNITS`. It is converted to the documented unit;
a unit of the wrong kind (a length where a diffusivity is expected) is an error.
"""

from __future__ import annotations

import re

__all__ = ["KINDS", "UNITS", "UnitError", "parse_quantity"]

#: Each kind of quantity: how to name it in a message and its base (SI) unit.
KINDS = {
    "length": ("a length", "m"),
    "time": ("a duration", "s"),
    "speed": ("a speed", "m/s"),
    "diffusivity": ("a diffusivity", "m^2/s"),
    "angle": ("an angle", "deg"),
}


def _table() -> dict[str, tuple[str, float]]:
    spellings = {
        ("length", 1.0): ["m", "metre", "metres", "meter", "meters"],
        ("length", 1e3): ["km", "kilometre", "kilometres", "kilometer", "kilometers"],
        ("length", 1e-2): ["cm"],
        ("length", 1852.0): ["nmi", "nautical mile", "nautical miles"],
        ("time", 1.0): ["s", "sec", "second", "seconds"],
        ("time", 60.0): ["min", "minute", "minutes"],
        ("time", 3600.0): ["h", "hr", "hour", "hours"],
        ("time", 86400.0): ["d", "day", "days"],
        ("time", 7 * 86400.0): ["week", "weeks"],
        ("speed", 1.0): ["m/s", "m s-1", "m s^-1"],
        ("speed", 1e-2): ["cm/s", "cm s-1"],
        ("speed", 1e3 / 3600.0): ["km/h"],
        ("speed", 1e3 / 86400.0): ["km/day", "km/d"],
        ("speed", 1852.0 / 3600.0): ["kn", "knot", "knots"],
        ("diffusivity", 1.0): ["m^2/s", "m2/s", "m**2/s", "m²/s", "m2 s-1"],
        ("diffusivity", 1e-4): ["cm^2/s", "cm2/s", "cm²/s"],
        ("diffusivity", 1e6 / 86400.0): ["km^2/day", "km2/day", "km²/day"],
        ("angle", 1.0): ["deg", "degree", "degrees", "°"],
    }
    return {name: kind_factor for kind_factor, names in spellings.items() for name in names}


#: Unit spelling -> (kind, factor to the kind's base unit).
UNITS: dict[str, tuple[str, float]] = _table()

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


class UnitError(ValueError):
    """A quantity could not be read or has a unit of the wrong kind."""


def parse_quantity(value: object, kind: str, unit: str) -> float:
    """A quantity in ``unit`` (of ``kind``) from a bare number or a ``"<number> <unit>"`` text.

    Parameters
    ----------
    value : int, float or str
        A bare number is taken to be in ``unit`` already.
    kind : str
        One of :data:`KINDS`.
    unit : str
        The documented unit to convert to, a key of :data:`UNITS` of this kind.

    Raises
    ------
    UnitError
        For text without a leading number, an unknown unit or a unit of another kind.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnitError(f"expected {KINDS[kind][0]} ({unit}), e.g. '1 {unit}', "
                        f"got {value!r} ({type(value).__name__})")
    if not isinstance(value, str):
        return float(value)
    match = _NUMBER.match(value)
    if match is None:
        raise UnitError(f"{value!r} is not a number followed by a unit; "
                        f"{KINDS[kind][0]} is expected ({unit}), e.g. '1 {unit}'")
    number, text = float(match.group(1)), match.group(2)
    if not text:
        return number
    if text not in UNITS:
        known = sorted(name for name, (k, _) in UNITS.items() if k == kind)
        raise UnitError(f"{value!r}: unknown unit {text!r}; for {KINDS[kind][0]} use one of "
                        f"{known}")
    found, factor = UNITS[text]
    if found != kind:
        raise UnitError(f"{value!r} is {KINDS[found][0]}; {KINDS[kind][0]} is expected "
                        f"({unit}), e.g. '{match.group(1)} {unit}'")
    return number * factor / UNITS[unit][1]
