"""mypy, configured in ``pyproject.toml`` (``[tool.mypy]``), finds no errors in the package.

Runs ``mypy`` as ``mypy`` from the repository root would (same configuration, same
``.mypy_cache``, so a warm run takes seconds). Needs the ``test`` extra (mypy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_reports_no_errors(monkeypatch):
    monkeypatch.chdir(ROOT)  # pyproject.toml's [tool.mypy] and the package are found here
    stdout, stderr, status = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml")])
    if status not in (0, 1):  # 2: mypy itself failed (bad configuration, crash)
        pytest.fail(f"mypy failed to run (exit {status}):\n{stderr}{stdout}")
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 0 and not errors, (
        f"mypy reports {len(errors)} errors; fix the annotations (see pyproject.toml "
        f"[tool.mypy]):\n" + "\n".join(errors)
    )
