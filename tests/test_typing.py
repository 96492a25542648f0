"""mypy, configured in ``pyproject.toml`` (``[tool.mypy]``), finds no errors in the package.

Runs ``mypy`` as ``mypy`` from the repository root would (same configuration, same
``.mypy_cache``, so a warm run takes seconds). Needs the ``test`` extra (mypy).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_reports_no_errors():
    # In its own process: mypy in the test process (mypy.api.run) is a suspect of the XLA
    # compiler crashes seen later in the same xdist worker.
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                           str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True)
    stdout, stderr, status = done.stdout, done.stderr, done.returncode
    if status not in (0, 1):  # 2: mypy itself failed (bad configuration, crash)
        pytest.fail(f"mypy failed to run (exit {status}):\n{stderr}{stdout}")
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 0 and not errors, (
        f"mypy reports {len(errors)} errors; fix the annotations (see pyproject.toml "
        f"[tool.mypy]):\n" + "\n".join(errors)
    )
