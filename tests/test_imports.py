"""``import tracerbayes`` loads the numerical core only: plotting, ArviZ and GPJax load when
first used, so the package imports on machines without them (a GPU box) and quickly."""

import subprocess
import sys

HEAVY = ("arviz", "gpjax", "matplotlib.pyplot", "cartopy")


def test_import_leaves_plotting_arviz_and_gpjax_unloaded():
    code = ("import sys, tracerbayes as tb; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules)); "
            "tb.plot; tb.io; print('plot' in dir(tb) or hasattr(tb, 'plot'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == ""  # none of them loaded by the import
    assert out[1] == "True"  # and the lazy front door still reaches plot
