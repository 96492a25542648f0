"""Property test: any text, however malformed, loads or raises ConfigError with a line for
every problem (needs hypothesis; skipped without it)."""

import re

import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_config import BASE  # noqa: E402

from tracerbayes.cli.config import ConfigError, load_config  # noqa: E402

# Pieces of YAML syntax spliced anywhere into a valid configuration.
SYNTAX = [":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "<<: *a", "!!", "!x ", "'",
          '"', "\t", "\n", "\n  ", "#", "? ", "|", ">", "%", "@", "---\n", "\x00", "\ufeff", "é"]
# Awkward values put in place of the configuration's values.
VALUES = ["[1]", "{a: 1}", "9" * 400, "-" + "9" * 400, "1e999", "-.inf", ".nan", "1e-320",
          "null", "~", "''", "yes", "[]", "{}", "[[1]]", "[1, 0]", "2020-02-30", "9999-12-31",
          "2020-01-01 25:00", "!!binary AAAA", "!!timestamp x", "!!int x", "0x10", "1:20",
          "1 parsec", "1 m/s", "'\\0'", '"\\0"', "{kind: {}}", "{name: [1]}",
          "!!python/object/apply:os.system [ls]", "*undefined"]
# Where values are: after "key: ", or an item of a flow list.
_VALUE_SPANS = [m.span() for m in re.finditer(r"(?<=: )[^{}\[\],\n]+|(?<=\[)[^\[\],\n]+"
                                              r"|(?<=, )[^{}\[\],\n:]+(?=[\],}])", BASE)]


@st.composite
def _spliced(draw):
    """``BASE`` with a few pieces of syntax inserted, deleted or replaced at random."""
    text = BASE
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        stop = draw(st.integers(start, min(len(text), start + 12)))
        text = text[:start] + draw(st.sampled_from(SYNTAX) | st.text(max_size=6)) + text[stop:]
    return text


@st.composite
def _revalued(draw):
    """``BASE`` with one to three of its values replaced by awkward ones."""
    text = BASE
    spans = draw(st.lists(st.sampled_from(_VALUE_SPANS), min_size=1, max_size=3, unique=True))
    for start, stop in sorted(spans, reverse=True):
        text = text[:start] + draw(st.sampled_from(VALUES)) + text[stop:]
    return text


_CONTENT = ((_spliced() | _revalued() | st.text(max_size=200))
            .map(lambda text: text.encode("utf-8", "replace")) | st.binary(max_size=200))


@settings(max_examples=200, deadline=None)
@given(content=_CONTENT)
def test_any_text_loads_or_raises_config_error_saying_where(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "run.yaml"
    path.write_bytes(content)
    try:
        load_config(path, check_files=False)
    except ConfigError as err:
        assert str(err).startswith(f"{path}: ")
        assert err.problems and all(p.line is not None for p in err.problems)
