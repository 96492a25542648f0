"""Property test: any CSV text, however malformed, reads into Observations or raises the
package's own ObservationError naming the file, never another exception (needs hypothesis;
skipped without it)."""

import pytest

pytest.importorskip("hypothesis")

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tracerbayes.observations.core import Observations  # noqa: E402
from tracerbayes.observations.problems import ObservationError  # noqa: E402

BASE = ("time,lon,lat,value,error,platform\n"
        "2020-01-01T00:00,-30.5,30.5,15.2,0.1,argo\n"
        "2020-01-01T06:00,-29.5,31.5,15.9,0.2,argo\n"
        "2020-01-02T00:00,-28.5,32.5,16.1,0.1,glider\n")
#: Pieces of CSV syntax and awkward cells spliced anywhere into a valid file.
PIECES = [",", ",,", "\n", "\r\n", '"', '""', "'", ";", "\t", " ", "#", "\x00", "\ufeff", "é",
          "nan", "NaN", "inf", "-inf", "1e999", "12.3C", "abc", "2020-13-45", "1:20", "-", "",
          "9" * 40, "-1", "0", "argo", "time", "value", "2020-01-01T00:00"]


@st.composite
def _spliced(draw):
    """``BASE`` with a few pieces inserted, deleted or replaced at random."""
    text = BASE
    for _ in range(draw(st.integers(1, 5))):
        start = draw(st.integers(0, len(text)))
        stop = draw(st.integers(start, min(len(text), start + 10)))
        text = text[:start] + draw(st.sampled_from(PIECES) | st.text(max_size=5)) + text[stop:]
    return text


_CONTENT = ((_spliced() | st.text(max_size=120)).map(
    lambda text: text.encode("utf-8", "replace")) | st.binary(max_size=120))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_CONTENT)
def test_any_csv_reads_or_raises_observation_error_naming_the_file(tmp_path, content):
    path = tmp_path / "obs.csv"
    path.write_bytes(content)
    try:
        obs = Observations.from_csv(path, platform="platform")
    except ObservationError as err:
        assert "obs.csv" in str(err)
    else:  # a valid object: every kept row finite, errors positive
        event("read")
        assert len(obs) > 0
        assert np.all(np.isfinite(obs.value)) and np.all(obs.error > 0)
