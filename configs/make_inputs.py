"""Write the small input files that the example configurations read (run from anywhere).

    python configs/make_inputs.py [FOLDER]

``island_mask.nc`` and ``island_gyre.nc`` (the island twin, ``island_twin.yaml``): the 48 x 48
basin of 10 km cells with an island and a cape of :func:`tracerbayes.twin.experiment.island_grid`,
and
the cell-centre velocity of its gyre (:func:`tracerbayes.twin.experiment.gyre_velocity`, m/s). Both
are
committed next to this script; ``tests/test_cli.py`` checks that this script reproduces them.

The observations are not committed: ``tracerbayes simulate configs/island_twin.yaml`` and
``tracerbayes simulate configs/canary_sst.yaml`` draw them (the Canary truth starts from
HadISST, which cartopy ships for academic use only and which must not be copied here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent


def island_inputs() -> tuple[xr.Dataset, xr.Dataset]:
    """The island basin's mask and gyre velocity as CF-annotated Datasets."""
    from tracerbayes.twin.experiment import gyre_velocity, island_grid

    grid = island_grid(48)
    face = gyre_velocity(grid)
    east, north = np.asarray(face.east), np.asarray(face.north)
    # Cell-centre components: the mean of a cell's two faces (closed faces carry zero).
    west = np.concatenate([np.zeros_like(east[:, :1]), east[:, :-1]], axis=1)
    south = np.concatenate([np.zeros_like(north[:1]), north[:-1]], axis=0)
    u = np.where(grid.mask, 0.5 * (west + east), np.nan)
    v = np.where(grid.mask, 0.5 * (south + north), np.nan)
    coords = grid.coordinates()
    title = "tracerbayes example: island basin (configs/make_inputs.py)"
    mask = xr.Dataset(
        {"mask": (grid.dims, grid.mask.astype(np.int8),
                  {"long_name": "water mask (1 on water, 0 on land)",
                   "flag_values": np.array([0, 1], dtype=np.int8),
                   "flag_meanings": "land water"})},
        coords=coords, attrs={"Conventions": "CF-1.10", "title": title})
    gyre = xr.Dataset(
        {"u": (grid.dims, u, {"standard_name": "eastward_sea_water_velocity",
                              "long_name": "eastward velocity", "units": "m s-1"}),
         "v": (grid.dims, v, {"standard_name": "northward_sea_water_velocity",
                              "long_name": "northward velocity", "units": "m s-1"})},
        coords=coords, attrs={"Conventions": "CF-1.10", "title": title})
    return mask, gyre


def main(folder: Path = HERE) -> list[Path]:
    """Write the files into ``folder``; return their paths."""
    from tracerbayes.io.files import atomic_path

    mask, gyre = island_inputs()
    paths = []
    for name, ds in (("island_mask.nc", mask), ("island_gyre.nc", gyre)):
        with atomic_path(Path(folder) / name) as tmp:
            ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
        paths.append(Path(folder) / name)
    return paths


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 velocities, as the tests compute them
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
