"""The documentation site builds in strict mode (no warnings, no broken links or anchors).

Runs ``mkdocs build --strict`` from the repository root in a subprocess, as a user would,
into a temporary folder, then checks that every page of the navigation exists and that the
API reference was generated from the docstrings (it contains text of ``fit``'s docstring).
Needs the ``test`` extra (mkdocs, mkdocs-material, mkdocstrings[python]); no network: the
API pages come from griffe's static analysis and MathJax is only linked, never fetched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PAGES = [
    "index.html",
    "install/index.html",
    "quickstart/index.html",
    "model/index.html",
    "cli/index.html",
    "configuration/index.html",
    "gpu/index.html",
    "benchmarks/index.html",
    "api/index.html",
    "api/ensemble/index.html",
    "api/inversion/index.html",
    "api/importance/index.html",
    "api/metrics/index.html",
    "api/plot/index.html",
    "api/simulate/index.html",
    "api/config/index.html",
    "api/methods/index.html",
    "api/physics/index.html",
    "api/basis/index.html",
    "api/projection/index.html",
    "api/priors/index.html",
    "api/kalman/index.html",
    "api/kalman_parallel/index.html",
    "api/grid/index.html",
    "api/observations/index.html",
    "api/exact/index.html",
    "api/posterior/index.html",
    "api/io/index.html",
    "api/cli/index.html",
    "api/twin/index.html",
    "api/reference/index.html",
]


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (exit {result.returncode}); fix the warnings below "
        f"(docs/, mkdocs.yml or the docstrings they name):\n{result.stderr[-4000:]}"
    )
    missing = [page for page in PAGES if not (site / page).is_file()]
    assert not missing, f"pages missing from the built site: {missing}"

    api = (site / "api/index.html").read_text(encoding="utf-8")
    # fit's docstring, rendered from the source by mkdocstrings
    assert "Strictly increasing analysis times" in api
    assert "Posterior maps on (time, lat, lon)" in api  # Posterior.maps
    ensemble = (site / "api/ensemble/index.html").read_text(encoding="utf-8")
    assert "Gaspari-Cohn" in ensemble
    assert "IUGG mean radius R1" in api  # EARTH_RADIUS's `#:` comment (docs/_griffe_comments.py)
    config = (site / "configuration/index.html").read_text(encoding="utf-8")
    assert "priors.diffusivity.median" in config
    model = (site / "model/index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in model  # equations are marked up for MathJax
