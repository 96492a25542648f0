"""Execute every notebook in notebooks/ (offline, from a temporary copy) and fail on any error.

Each notebook enables float64 itself and is sized to run in a few minutes on two CPU cores;
the copy is executed in a temporary folder, so outputs are never written into the repository.
"""

import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 900  # per cell; the slowest cell (a NUTS fit) takes about a minute unshared


def test_notebooks_found():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_quickstart.ipynb", "02_diagnostics_loo.ipynb",
                     "03_real_sst_gap_filling.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    if "import gpjax" in path.read_text():  # its GP baseline needs the 'gp' extra
        pytest.importorskip("gpjax")
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell raises
    errors = [o for cell in nb.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
