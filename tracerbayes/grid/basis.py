"""Spectral basis of a masked grid: eigenvectors of the no-flux (Neumann) diffusion operator.

Let ``D`` be the finite-volume diffusion operator of :mod:`tracerbayes.physics.operator` with unit
diffusivity (1 m^2/s) and no velocity, and ``A = diag(cell areas)``. Because each face flux
is ``K (c_b - c_a)`` with the same conductance seen from both cells, the stiffness matrix
``S = -A D`` is symmetric positive semi-definite, and the generalised eigenproblem

    S phi_k = lambda_k A phi_k,       Phi^T A Phi = I,       0 = lambda_0 <= lambda_1 <= ...

has real eigenvalues ``lambda_k`` (1/m^2, squared wavenumbers) and eigenvectors orthonormal
under the area-weighted inner product (the discrete version of ``int phi_j phi_k dA =
delta_jk``). The eigenvectors respect the mask exactly: no flux crosses a coastline, so no
mode connects water on either side of a strip of land.

In coefficients ``z = Phi^T A c`` (and ``c ~ Phi z``):

* diffusion with uniform ``kappa`` is diagonal, ``dz_k/dt = -kappa lambda_k z_k``;
* a stationary Matérn field has (approximately) independent coefficients with variance
  given by the Matérn spectral density at ``sqrt(lambda_k)``, as in Hilbert-space GP
  approximations (Solin & Särkkä 2020, Stat. Comput. 30, Eq. (20));
* the area-weighted total is carried by the constant modes alone: for each connected basin
  ``b`` with total area ``|b|``, ``phi = 1_b / sqrt(|b|)`` has ``lambda = 0`` and
  ``sum(a c) = sum_b sqrt(|b|) z_b``. All other modes have zero total.

The basis is computed once per grid and mask and cached (the :data:`CACHE_SIZE` most recently
used).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla

from tracerbayes.grid.core import Grid

__all__ = ["SpectralBasis", "spectral_basis", "diffusion_stiffness", "symmetric_stiffness",
           "connected_basins"]

#: Largest number of wet cells for which the basis is found by a dense eigen-decomposition.
DENSE_LIMIT = 3000


class SpectralBasis(NamedTuple):
    """The first ``K`` Neumann eigenpairs of a masked grid.

    Attributes
    ----------
    vectors : ndarray, shape (n_wet, K)
        ``Phi``: eigenvectors, orthonormal under ``A`` (``Phi^T A Phi = I``); units 1/m.
    eigenvalues : ndarray, shape (K,)
        ``lambda_k`` in 1/m^2, ascending; the first ``n_basins`` are zero.
    cell_area : ndarray, shape (n_wet,)
        ``a``, the wet-cell areas in m^2.
    n_basins : int
        Number of connected water bodies; the first ``n_basins`` modes are their constants.
    """

    vectors: np.ndarray
    eigenvalues: np.ndarray
    cell_area: np.ndarray
    n_basins: int

    @property
    def size(self) -> int:
        """``K``, the number of modes."""
        return int(self.eigenvalues.size)

    def project(self, state):
        """Coefficients ``z = Phi^T A c`` of states ``(..., n_wet)``."""
        return (state * self.cell_area) @ self.vectors

    def expand(self, coefficients):
        """States ``c = Phi z`` from coefficients ``(..., K)``."""
        return coefficients @ self.vectors.T

    @property
    def mass_vector(self) -> np.ndarray:
        """``g`` with ``sum(a c) = g . z`` for ``c = Phi z``: non-zero on the constant modes."""
        return self.cell_area @ self.vectors


def diffusion_stiffness(grid: Grid) -> sp.csr_matrix:
    """``S = -A D``, the symmetric stiffness matrix of unit diffusion (dimensionless).

    A weighted graph Laplacian over open faces with conductance ``l / d`` (face length over
    centre distance). Built in NumPy float64 whatever JAX's precision setting.
    """
    rows, cols, vals = [], [], []
    for face, length, dist in zip(grid.open_faces(),
                                  (grid.east_face_length, grid.north_face_length),
                                  (grid.east_face_distance, grid.north_face_distance),
                                  strict=True):
        a, b = face.cell_a, face.cell_b
        k = (length / dist)[face.row, face.col]
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        vals += [k, k, -k, -k]
    n = grid.n_wet
    stiff = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n))
    return ((stiff + stiff.T) * 0.5).tocsr()


def symmetric_stiffness(grid: Grid, stiff: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """``B = A^-1/2 S A^-1/2`` (1/m^2): the symmetric form of the generalised eigenproblem,
    whose eigenvectors ``u`` give ``phi = A^-1/2 u`` with the same eigenvalues (``stiff``:
    :func:`diffusion_stiffness` if already built)."""
    stiff = diffusion_stiffness(grid) if stiff is None else stiff
    inv_sqrt_a = sp.diags(1.0 / np.sqrt(grid.wet_area))
    return (inv_sqrt_a @ stiff @ inv_sqrt_a).tocsr()


def connected_basins(grid: Grid) -> tuple[int, np.ndarray]:
    """Connected water bodies (through open faces): their count and a label per wet cell."""
    stiff = diffusion_stiffness(grid)
    return csgraph.connected_components(stiff, directed=False)


#: Bases kept (least recently used dropped first): a 10^5-cell basis of 400 modes is 320 MB.
CACHE_SIZE = 8
_CACHE: OrderedDict[tuple, SpectralBasis] = OrderedDict()


def _grid_key(grid: Grid, k: int) -> tuple:
    return (grid.key, k)


def spectral_basis(grid: Grid, k: int | None = None) -> SpectralBasis:
    """The first ``k`` Neumann eigenpairs of ``grid`` (all of them when ``k`` is None).

    Dense ``scipy.linalg.eigh`` up to :data:`DENSE_LIMIT` wet cells, shift-invert Lanczos
    (``scipy.sparse.linalg.eigsh``) beyond. Results are cached per grid, mask and ``k``.
    """
    n = grid.n_wet
    k = n if k is None else int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of wet cells ({n}), got {k}")
    key = _grid_key(grid, k)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    stiff = diffusion_stiffness(grid)
    area = grid.wet_area
    n_basins, labels = csgraph.connected_components(stiff, directed=False)
    # Work with the symmetric matrix B (symmetric_stiffness). Scale by a typical eigenvalue
    # so that the solver sees O(1) numbers.
    inv_sqrt_a = 1.0 / np.sqrt(area)
    scaled = symmetric_stiffness(grid, stiff)
    scale = float(scaled.diagonal().max())
    if n <= DENSE_LIMIT or k > n // 2:
        evals, u = scipy.linalg.eigh((scaled / scale).toarray(), subset_by_index=(0, k - 1))
    else:
        evals, u = spla.eigsh((scaled / scale).tocsc(), k=k, sigma=-1e-3, which="LM")
        order = np.argsort(evals)
        evals, u = evals[order], u[:, order]
    vectors = u * inv_sqrt_a[:, None]
    evals = np.clip(evals * scale, 0.0, None)
    # Replace the null space by the exact basin indicators (normalised under A), so that the
    # mass lives in exactly n_basins modes and all other modes have zero total to round-off.
    m = min(n_basins, k)
    indicators = np.zeros((n, n_basins))
    indicators[np.arange(n), labels] = 1.0
    indicators /= np.sqrt(area @ indicators)
    vectors[:, :m] = indicators[:, :m]
    evals[:m] = 0.0
    rest = vectors[:, m:]
    rest -= indicators @ (indicators.T @ (area[:, None] * rest))
    vectors[:, m:] = rest / np.sqrt(np.einsum("ik,i,ik->k", rest, area, rest))
    basis = SpectralBasis(vectors, evals, area, int(n_basins))
    _CACHE[key] = basis
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return basis
