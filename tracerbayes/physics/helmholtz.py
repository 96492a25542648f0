"""The divergence-free part of a face velocity (a discrete Helmholtz projection).

Velocities given on cell centres (an ocean model's surface currents, a twin's daily fields)
become face velocities by averaging neighbours (:func:`tracerbayes.physics.
velocity_from_centres`), and faces to land are closed. The result is not divergence-free on
the model's grid, even when the flow it samples is, and the finite-volume operator is in flux
form: ``-div(u c) = -u . grad c - c div u``. The second term turns the field's absolute level
into spurious sources and sinks. For sea-surface temperature near 15 degC, a discrete
divergence of 1e-7 /s (an average face speed of 4 cm/s on 20 km cells, interpolated) makes
0.13 degC per day of tendency that the ocean does not have.

:func:`remove_divergence` takes the divergence out. With ``F`` the volume flux through each
open face (``u l``), ``N_i`` the net outflow of cell ``i`` and ``S`` the graph Laplacian of
the open faces with conductance ``l / d`` (:func:`tracerbayes.grid.basis.diffusion_stiffness`),
it solves ``S phi = -N`` (one cell of every connected basin held at ``phi = 0``; ``N`` sums
to zero over a closed basin, so the system is consistent) and corrects every face's flux by
``-(l / d) (phi_b - phi_a)``. Every cell's net outflow is then zero to round-off, closed
faces stay closed, and of all such corrections this one is the smallest in the
conductance-weighted norm (it removes a discrete gradient, the divergent part, and keeps
the rotational part). The matrix is factorised once for all the fields of a time axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tracerbayes.grid.core import Grid

if TYPE_CHECKING:
    from tracerbayes.physics.operator import FaceVelocity

__all__ = ["DivergenceReport", "remove_divergence"]


class DivergenceReport(NamedTuple):
    """What :func:`remove_divergence` changed.

    Attributes
    ----------
    divergence_rms : float
        RMS over the wet cells (and times) of the discrete divergence before, 1/s.
    divergence_after : float
        The same after (round-off), 1/s.
    speed_rms : float
        RMS of the open faces' normal velocity before, m/s.
    change_rms : float
        RMS of the correction to the open faces' normal velocity, m/s.
    """

    divergence_rms: float
    divergence_after: float
    speed_rms: float
    change_rms: float

    def describe(self) -> str:
        """One line for a log."""
        return (f"removed the divergent part of the velocity: discrete divergence RMS "
                f"{self.divergence_rms:.3g} /s -> {self.divergence_after:.1g} /s, changing the "
                f"face velocities by {self.change_rms:.3g} m/s RMS "
                f"({self.change_rms / max(self.speed_rms, 1e-300):.1%} of their "
                f"{self.speed_rms:.3g} m/s)")


def _net_outflow(grid: Grid, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Net volume outflow (m^2/s per m of depth) of every wet cell, (..., n_wet): what
    :func:`tracerbayes.physics.divergence` times the cell area gives, but in NumPy float64
    whatever JAX's precision setting (as the stiffness matrix it is solved with)."""
    fe = east * grid.east_face_length
    fn = north * grid.north_face_length
    net = fe - np.roll(fe, 1, axis=-1) + fn - np.roll(fn, 1, axis=-2)
    return net.reshape(net.shape[:-2] + (-1,))[..., grid.wet_index]


def remove_divergence(grid: Grid, velocity: FaceVelocity
                      ) -> tuple[FaceVelocity, DivergenceReport]:
    """The divergence-free part of ``velocity`` (a :class:`~tracerbayes.physics.FaceVelocity`,
    faces (..., ny, nx), a leading time axis allowed) on ``grid``, and a
    :class:`DivergenceReport`; see the module docstring."""
    from tracerbayes.grid.basis import connected_basins, diffusion_stiffness
    from tracerbayes.physics.operator import FaceVelocity

    east = np.where(grid.east_open, np.nan_to_num(np.asarray(velocity.east, np.float64)), 0.0)
    north = np.where(grid.north_open, np.nan_to_num(np.asarray(velocity.north, np.float64)),
                     0.0)
    lead = east.shape[:-2]
    east2 = east.reshape((-1,) + grid.shape)
    north2 = north.reshape((-1,) + grid.shape)
    net = _net_outflow(grid, east2, north2)  # (F, n)

    stiff = diffusion_stiffness(grid)
    n_basins, labels = connected_basins(grid)
    pinned = np.array([np.flatnonzero(labels == b)[0] for b in range(n_basins)])
    free = np.setdiff1d(np.arange(grid.n_wet), pinned)
    solve = (spla.factorized(sp.csc_matrix(stiff[free][:, free])) if free.size
             else (lambda rhs: rhs))
    faces = grid.open_faces()
    new_fields = []
    for k in range(east2.shape[0]):
        phi = np.zeros(grid.n_wet)
        if free.size:
            phi[free] = solve(-net[k][free])
        fields = []
        for face, field, dist in zip(faces, (east2[k], north2[k]),
                                     (grid.east_face_distance, grid.north_face_distance),
                                     strict=True):
            out = field.copy()
            rows, cols = face.row, face.col
            correction = -(phi[face.cell_b] - phi[face.cell_a]) / dist[rows, cols]
            out[rows, cols] = field[rows, cols] + correction
            fields.append(out)
        new_fields.append(fields)
    new_east = np.stack([f[0] for f in new_fields]).reshape(lead + grid.shape)
    new_north = np.stack([f[1] for f in new_fields]).reshape(lead + grid.shape)
    area = grid.wet_area
    after = _net_outflow(grid, new_east.reshape((-1,) + grid.shape),
                         new_north.reshape((-1,) + grid.shape))
    open_ = np.concatenate([np.broadcast_to(grid.east_open, east.shape).ravel(),
                            np.broadcast_to(grid.north_open, north.shape).ravel()])
    before_v = np.concatenate([east.ravel(), north.ravel()])[open_]
    change_v = np.concatenate([(new_east - east).ravel(), (new_north - north).ravel()])[open_]
    report = DivergenceReport(
        divergence_rms=float(np.sqrt(np.mean((net / area) ** 2))),
        divergence_after=float(np.sqrt(np.mean((after / area) ** 2))),
        speed_rms=float(np.sqrt(np.mean(before_v**2))) if before_v.size else 0.0,
        change_rms=float(np.sqrt(np.mean(change_v**2))) if change_v.size else 0.0)
    return FaceVelocity(new_east, new_north), report
