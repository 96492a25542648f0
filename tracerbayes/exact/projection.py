"""Full-grid advection of a reduced basis, projected back: the ``"projected"`` transition.

The Galerkin reduced model moves the coefficients ``z`` by ``expm(Phi^T A L Phi dt)``: the
variance that eddies stir below the basis's scales stays in the basis (the projected
advection operator is skew up to the upwind scheme's numerical diffusion). In the full-grid
model that variance leaves the resolved scales and is dissipated. Advecting the basis vectors
themselves on the full grid over an interval and projecting the result back,
``M = Phi^T A P(dt) Phi``, loses it as the full-grid model does.

``P`` is the explicit upwind scheme of :func:`tracerbayes.physics.operator.propagate` (no diffusion:
diffusion is applied exactly in the basis, whose vectors are its eigenvectors). For a given
flow ``u`` scaled by an unknown factor ``s``, advecting by ``s u`` for ``dt`` is advecting by
``u`` for ``tau = s dt``, so :func:`advection_table` marches the basis once through ``tau``
up to the largest scale allowed and stores ``M(tau)`` and ``dM/dtau = Phi^T A L_u P Phi`` at
every sub-step; :class:`AdvectionTable` interpolates them (cubic Hermite, differentiable in
``s``). One full-grid run per interval length instead of one per likelihood evaluation.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tracerbayes import physics
from tracerbayes.grid.basis import SpectralBasis
from tracerbayes.grid.core import Grid

__all__ = ["AdvectionTable", "advection_table", "project_advection"]


def project_advection(grid: Grid, basis: SpectralBasis, velocity: physics.FaceVelocity,
                      dt: float, substeps: int) -> jax.Array:
    """``Phi^T A P(dt) Phi`` (K, K): each basis vector advected on the full grid (upwind,
    ``substeps`` Heun sub-steps, no diffusion) and projected back. Traceable in
    ``velocity``; reverse mode stores one field per sub-step."""
    phi = jnp.asarray(basis.vectors)
    moved = physics.propagate(grid, phi.T, velocity, 0.0, float(dt), substeps=int(substeps))
    return (phi.T * basis.cell_area) @ moved.T


class AdvectionTable(NamedTuple):
    """``M(tau) = Phi^T A P_u(tau) Phi`` at ``tau = j * step``, ``j = 0..J-1``, and its
    derivative, for cubic Hermite interpolation; NaN beyond the last node."""

    step: float  # seconds of advection by the unit flow between nodes
    values: Any  # (J, K, K)
    slopes: Any  # (J, K, K): dM/dtau (1/s)

    def __call__(self, tau: Any) -> jax.Array:
        """``M(tau)`` (K, K) for ``0 <= tau <= (J - 1) step`` (traceable)."""
        last = self.values.shape[0] - 1
        x = jnp.asarray(tau) / self.step
        j = jnp.clip(jnp.floor(x).astype(int), 0, last - 1)
        t = x - j
        h00, h10 = (1 + 2 * t) * (1 - t) ** 2, t * (1 - t) ** 2
        h01, h11 = t**2 * (3 - 2 * t), t**2 * (t - 1)
        m = (h00 * self.values[j] + h01 * self.values[j + 1]
             + self.step * (h10 * self.slopes[j] + h11 * self.slopes[j + 1]))
        inside = (x >= 0) & (x <= last)
        return jnp.where(inside, m, jnp.nan)


def advection_table(grid: Grid, basis: SpectralBasis, velocity: physics.FaceVelocity,
                    tau_max: float, *, courant: float = 0.5) -> AdvectionTable:
    """March the basis through ``tau_max`` seconds of advection by ``velocity`` (one Heun
    sub-step at Courant number ``courant`` between nodes) and tabulate ``M`` and ``dM/dtau``.

    Nodes half a cell-crossing time apart at most: the Hermite interpolation error grows like
    ``(omega step)^4`` for a mode advected at frequency ``omega`` (2e-4 relative, with the
    scheme's own time error, on the test grid's complete basis).

    Concrete inputs only (run once, outside jit). Memory: ``2 J K^2`` floats.
    """
    rate = physics.max_rate(grid, velocity, 0.0)
    if rate == 0.0:  # no flow: M = I for every tau (one node pair spanning any tau)
        eye = np.eye(basis.size)
        return AdvectionTable(1e300, jnp.asarray(np.stack([eye, eye])),
                              jnp.zeros((2,) + eye.shape))
    step = courant / rate
    count = max(1, math.ceil(tau_max / step))
    phi = jnp.asarray(basis.vectors)
    weights = jnp.asarray(basis.vectors * basis.cell_area[:, None])  # A Phi

    @jax.jit
    def node(fields):  # (K, N) -> M, dM/dtau, fields one sub-step later
        value = fields @ weights  # (K, K): row k is Phi^T A P phi_k, i.e. M^T
        slope = physics.apply_operator(grid, fields, velocity, 0.0) @ weights
        moved = physics.propagate(grid, fields, velocity, 0.0, step, substeps=1)
        return value.T, slope.T, moved

    values, slopes = [], []
    fields = phi.T
    for _ in range(count + 1):
        value, slope, fields = node(fields)
        values.append(np.asarray(value))
        slopes.append(np.asarray(slope))
    return AdvectionTable(float(step), jnp.asarray(np.stack(values)),
                          jnp.asarray(np.stack(slopes)))
