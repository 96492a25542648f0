"""Neumann spectral basis and Gaussian-process priors against exact references.

References: the defining identities of the generalised eigenproblem ``S phi = lambda A phi``
(``Phi^T A Phi = I``, ``Phi^T A L Phi = -diag(lambda)`` for the unit-diffusion operator ``L``
of :mod:`tracerbayes.physics.operator`), for the sparse (Lanczos) path an independent LAPACK
solution of the same stiffness (``scipy.linalg.eig_banded``) and the exact separable
eigenvalues of an open rectangle, the closed-form 2-D Matérn spectral density
(Rasmussen & Williams 2006, Eq. (4.15) with D = 2), a hand-written Matérn-3/2 of chordal
distances from the haversine formula, and the exact zero total of mass-free fields and the
exact zero divergence of stream-function velocities. Everything runs in float64.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.special import gamma

from tracerbayes import physics
from tracerbayes.exact import priors as pr
from tracerbayes.grid import basis as bs
from tracerbayes.grid.core import Grid

#: Identities that hold to round-off of O(n) float64 operations on O(1)-conditioned data.
RTOL = 1e-10
#: Totals of mass-free fields: sums of ~70 products, eps ~ 2.2e-16.
MASS_RTOL = 1e-12
SHAPE = (8, 9)


# ----------------------------------------------------------------------------- grids
def island_grid() -> Grid:
    """An 8 x 9 one-degree lon/lat grid with a 2 x 2 island in the middle (one basin)."""
    mask = np.ones(SHAPE, dtype=bool)
    mask[3:5, 4:6] = False
    return Grid.regular(lon=(-30.0, -21.0), lat=(30.0, 38.0), resolution=1.0, mask=mask)


def split_grid() -> Grid:
    """The same grid cut in two basins by a meridional wall of land (plus an island)."""
    mask = np.ones(SHAPE, dtype=bool)
    mask[:, 4] = False
    mask[2:4, 6] = False
    return Grid.regular(lon=(-30.0, -21.0), lat=(30.0, 38.0), resolution=1.0, mask=mask)


def cartesian_grid() -> Grid:
    """A small Cartesian grid (non-square cells) with an island."""
    mask = np.ones(SHAPE, dtype=bool)
    mask[2:4, 3:5] = False
    return Grid.cartesian((0.0, 90e3), (0.0, 64e3), (10e3, 8e3), mask=mask)


GRIDS = {"island": island_grid, "split": split_grid, "cartesian": cartesian_grid}


def relative_error(actual, expected) -> float:
    """Largest absolute difference relative to the largest entry of the reference."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def closed_form_matern(nu, lengthscale, variance, w):
    """2-D Matérn spectral density S(w), Rasmussen & Williams (2006) Eq. (4.15), D = 2."""
    return (variance * 4.0 * np.pi * gamma(nu + 1.0) * (2.0 * nu) ** nu
            / (gamma(nu) * lengthscale ** (2.0 * nu))
            * (2.0 * nu / lengthscale**2 + w**2) ** (-(nu + 1.0)))


# ----------------------------------------------------------------------------- basis
@pytest.mark.parametrize("name", GRIDS)
def test_basis_is_area_orthonormal(name):
    grid = GRIDS[name]()
    basis = bs.spectral_basis(grid)
    gram = basis.vectors.T @ (basis.cell_area[:, None] * basis.vectors)
    np.testing.assert_allclose(gram, np.eye(grid.n_wet), rtol=0, atol=RTOL)
    np.testing.assert_array_equal(basis.cell_area, grid.wet_area)
    assert basis.vectors.shape == (grid.n_wet, grid.n_wet)


@pytest.mark.parametrize("name", GRIDS)
def test_eigenvalues_ascending_with_one_zero_per_basin(name):
    grid = GRIDS[name]()
    basis = bs.spectral_basis(grid)
    expected_basins = 2 if name == "split" else 1
    assert basis.n_basins == expected_basins
    assert bs.connected_basins(grid)[0] == expected_basins
    assert np.all(np.diff(basis.eigenvalues) >= 0)
    np.testing.assert_array_equal(basis.eigenvalues[:expected_basins], 0.0)
    # The first non-zero eigenvalue is a real gap, not round-off.
    assert basis.eigenvalues[expected_basins] > 1e-6 * basis.eigenvalues[-1]


def test_two_basins_carry_the_mass_in_their_constant_modes():
    grid = split_grid()
    basis = bs.spectral_basis(grid)
    _, labels = bs.connected_basins(grid)
    a = basis.cell_area
    # The first n_basins modes are the basin indicators, normalised under A, and each
    # carries the total of its basin: mass_vector[k] = a . phi_k = sqrt(|basin|).
    g = basis.mass_vector
    for k in range(basis.n_basins):
        phi = basis.vectors[:, k]
        inside = labels == labels[np.argmax(np.abs(phi))]
        basin_area = a[inside].sum()
        np.testing.assert_allclose(phi[inside], 1.0 / np.sqrt(basin_area), rtol=1e-14)
        np.testing.assert_array_equal(phi[~inside], 0.0)
        np.testing.assert_allclose(g[k], np.sqrt(basin_area), rtol=1e-14)
    # Every other mode has zero total in each basin separately (hence overall).
    rest = basis.vectors[:, basis.n_basins:]
    scale = np.abs(rest).T @ a
    for b in range(basis.n_basins):
        totals = (a * (labels == b)) @ rest
        assert np.max(np.abs(totals) / scale) < MASS_RTOL
    assert np.max(np.abs(g[basis.n_basins:]) / scale) < MASS_RTOL


@pytest.mark.parametrize("name", GRIDS)
def test_projected_unit_diffusion_is_minus_eigenvalues(name):
    grid = GRIDS[name]()
    basis = bs.spectral_basis(grid)
    zero = physics.constant_velocity(grid, 0.0, 0.0)
    L = np.asarray(physics.operator_matrix(grid, zero, 1.0))
    projected = basis.vectors.T @ (basis.cell_area[:, None] * (L @ basis.vectors))
    expected = -np.diag(basis.eigenvalues)
    assert relative_error(projected, expected) < RTOL


def test_truncated_basis_is_leading_part_of_full_basis():
    grid = island_grid()
    full = bs.spectral_basis(grid)
    part = bs.spectral_basis(grid, 12)
    np.testing.assert_allclose(part.eigenvalues, full.eigenvalues[:12], rtol=RTOL,
                               atol=RTOL * full.eigenvalues[12])
    gram = part.vectors.T @ (part.cell_area[:, None] * part.vectors)
    np.testing.assert_allclose(gram, np.eye(12), rtol=0, atol=RTOL)


def large_grid(island: bool) -> Grid:
    """60 x 60 Cartesian cells of 10 km x 8 km, above DENSE_LIMIT wet cells."""
    mask = np.ones((60, 60), dtype=bool)
    if island:
        mask[20:24, 30:33] = False
    return Grid.cartesian((0.0, 600e3), (0.0, 480e3), (10e3, 8e3), mask=mask)


def banded_eigenvalues(stiffness, area, k):
    """The ``k`` smallest eigenvalues of ``S phi = lambda A phi`` by LAPACK's banded solver.

    ``A^-1/2 S A^-1/2`` has the bandwidth of ``S`` (about nx in row-major wet-cell order), so
    its full eigen-decomposition by ``scipy.linalg.eig_banded`` is exact to round-off and
    cheap, unlike a dense ``eigh`` of 3600 x 3600 (which takes 6 to 20 s on two cores).
    """
    scale = 1.0 / np.sqrt(area)
    coo = stiffness.tocoo()
    lower = coo.row >= coo.col
    offset = (coo.row - coo.col)[lower]
    band = np.zeros((offset.max() + 1, area.size))
    np.add.at(band, (offset, coo.col[lower]),
              coo.data[lower] * scale[coo.row[lower]] * scale[coo.col[lower]])
    return scipy.linalg.eig_banded(band, lower=True, eigvals_only=True, select="i",
                                   select_range=(0, k - 1))


def neumann_eigenvalues(n, h):
    """Exact eigenvalues (4 / h^2) sin^2(p pi / 2n) of the 1-D Neumann finite-volume Laplacian."""
    return 4.0 / h**2 * np.sin(np.arange(n) * np.pi / (2 * n)) ** 2


@pytest.mark.parametrize("island", [False, True], ids=["open", "island"])
def test_sparse_path_matches_independent_eigenvalues(island):
    """Above DENSE_LIMIT wet cells the basis comes from shift-invert Lanczos (eigsh)."""
    grid = large_grid(island)
    assert grid.n_wet > bs.DENSE_LIMIT
    k = 20
    basis = bs.spectral_basis(grid, k)
    stiffness = bs.diffusion_stiffness(grid)
    if island:
        reference = banded_eigenvalues(stiffness, grid.wet_area, k)
        assert abs(reference[0]) < 1e-12 * reference[-1]
    else:  # separable: lambda_pq = lambda_p(x) + lambda_q(y), exactly
        ny, nx = grid.shape
        pairs = neumann_eigenvalues(nx, 10e3)[None, :] + neumann_eigenvalues(ny, 8e3)[:, None]
        reference = np.sort(pairs.ravel())[:k]
    assert basis.n_basins == 1 and basis.eigenvalues[0] == 0.0
    np.testing.assert_allclose(basis.eigenvalues[1:], reference[1:], rtol=1e-8)
    phi = basis.vectors
    gram = phi.T @ (basis.cell_area[:, None] * phi)
    np.testing.assert_allclose(gram, np.eye(k), rtol=0, atol=RTOL)
    # Each vector solves the generalised eigenproblem S phi = lambda A phi.
    residual = stiffness @ phi - grid.wet_area[:, None] * phi * basis.eigenvalues
    scale = np.abs(stiffness).max() * np.abs(phi).max()
    assert np.max(np.abs(residual)) < 1e-8 * scale


# ----------------------------------------------------------------------------- priors
@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
def test_matern_spectral_density_matches_closed_form(smoothness):
    nu = smoothness.value
    lengthscale, variance = 2.3e5, 1.7
    w = np.array([0.0, 1e-7, 3e-6, 1e-5, 4e-5, 2e-4])
    if np.isinf(nu):  # heat kernel of sd s: k(r) = variance exp(-r^2 / 4 s^2)
        expected = variance * 4 * np.pi * lengthscale**2 * np.exp(-(w * lengthscale) ** 2)
    else:
        expected = closed_form_matern(nu, lengthscale, variance, w)
    actual = np.asarray(pr.matern_spectral_density(smoothness, lengthscale, variance, w))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)
    # Also by the float value of nu.
    actual = np.asarray(pr.matern_spectral_density(nu, lengthscale, variance, w))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
def test_matern_spectral_density_integrates_to_variance(smoothness):
    """k(0) = (2 pi)^-2 int S(w) d^2w = 2 pi / (2 pi)^2 int_0^inf S(w) w dw = variance."""
    lengthscale, variance = 1.0e5, 2.5
    # Substitute w = tan(theta) / lengthscale on [0, pi/2) and use Gauss-Legendre.
    theta, weights = np.polynomial.legendre.leggauss(400)
    theta = 0.25 * np.pi * (theta + 1.0)
    weights = 0.25 * np.pi * weights
    w = np.tan(theta) / lengthscale
    dw = 1.0 / (np.cos(theta) ** 2 * lengthscale)
    dens = np.asarray(pr.matern_spectral_density(smoothness, lengthscale, variance, w))
    integral = np.sum(weights * dens * w * dw) / (2.0 * np.pi)
    np.testing.assert_allclose(integral, variance, rtol=1e-6)


@pytest.mark.parametrize("name", GRIDS)
def test_spectral_prior_samples_are_mass_free(name, rng):
    grid = GRIDS[name]()
    basis = bs.spectral_basis(grid)
    variances = np.asarray(pr.spectral_variances(basis, pr.Smoothness.THREE_HALVES, 2.0e5, 1.3))
    np.testing.assert_array_equal(variances[: basis.n_basins], 0.0)
    expected = closed_form_matern(1.5, 2.0e5, 1.3, np.sqrt(basis.eigenvalues[basis.n_basins:]))
    np.testing.assert_allclose(variances[basis.n_basins:], expected, rtol=RTOL)
    z = rng.normal(size=(50, basis.size)) * np.sqrt(variances)
    fields = basis.expand(z)
    a = grid.wet_area
    totals = fields @ a
    scale = np.abs(fields) @ a
    assert np.max(np.abs(totals) / scale) < MASS_RTOL
    # Per basin too, on the split grid.
    _, labels = bs.connected_basins(grid)
    for b in range(basis.n_basins):
        inside = labels == b
        assert np.max(np.abs(fields[:, inside] @ a[inside]) / scale) < MASS_RTOL


def test_spectral_prior_mass_variance_frees_the_total(rng):
    basis = bs.spectral_basis(island_grid())
    variances = np.asarray(pr.spectral_variances(basis, 1.5, 2.0e5, 1.3, mass_variance=4.0))
    np.testing.assert_array_equal(variances[: basis.n_basins], 4.0)


def haversine_chord(lon, lat, radius):
    """Chordal distances 2 R sin(theta / 2) from the haversine of the great-circle angle."""
    lam, phi = np.deg2rad(lon), np.deg2rad(lat)
    dphi = phi[:, None] - phi[None, :]
    dlam = lam[:, None] - lam[None, :]
    cos_cos = np.cos(phi[:, None]) * np.cos(phi[None, :])
    hav = np.sin(dphi / 2) ** 2 + cos_cos * np.sin(dlam / 2) ** 2
    return 2.0 * radius * np.sqrt(hav)


def matern32(d, lengthscale, variance):
    r = np.sqrt(3.0) * d / lengthscale
    return variance * (1.0 + r) * np.exp(-r)


@pytest.mark.parametrize("name", ["island", "cartesian"])
def test_stationary_covariance_is_matern32_of_chordal_distance(name):
    grid = GRIDS[name]()
    lon, lat = np.meshgrid(grid.x, grid.y)
    x, y = lon.ravel()[grid.wet_index], lat.ravel()[grid.wet_index]
    if name == "cartesian":
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        lengthscale = 25e3
    else:
        d = haversine_chord(x, y, grid.radius)
        lengthscale = 250e3
    variance = 0.8
    expected = matern32(d, lengthscale, variance)
    actual = np.asarray(pr.stationary_covariance(grid, pr.Smoothness.THREE_HALVES,
                                                 lengthscale, variance))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=MASS_RTOL * variance)


@pytest.mark.parametrize("name", GRIDS)
def test_mass_free_projection(name, rng):
    grid = GRIDS[name]()
    a = grid.wet_area
    Pi = pr.mass_free_projection(grid)
    assert np.max(np.abs(a @ Pi)) < MASS_RTOL * np.abs(a) @ np.abs(Pi).max(axis=1)
    np.testing.assert_allclose(Pi @ Pi, Pi, rtol=0, atol=MASS_RTOL)  # a projection
    Q = np.asarray(pr.stationary_covariance(grid, 1.5, 150e3 if name != "cartesian" else 20e3,
                                            2.0))
    factor = np.linalg.cholesky(Q + 1e-10 * np.eye(grid.n_wet))
    # Draws of N(0, Pi Q Pi^T): Pi times draws of N(0, Q).
    draws = (Pi @ factor @ rng.normal(size=(grid.n_wet, 50))).T
    totals = draws @ a
    scale = np.abs(draws) @ a
    assert np.max(np.abs(totals) / scale) < MASS_RTOL
    # And Pi Q Pi^T itself annihilates a.
    Qc = Pi @ Q @ Pi.T
    assert np.max(np.abs(a @ Qc)) < MASS_RTOL * np.max(np.abs(a) @ np.abs(Qc))


@pytest.mark.parametrize("name", GRIDS)
def test_streamfunction_basis_velocity_is_divergence_free(name, rng):
    grid = GRIDS[name]()
    sf = pr.streamfunction_basis(grid, 9)
    ny, nx = grid.shape
    assert sf.modes.shape == (9, ny + 1, nx + 1)
    assert np.all(np.diff(sf.wavenumbers) >= 0)
    # Sine modes vanish on the outer boundary of the corner rectangle.
    for edge in (sf.modes[:, 0, :], sf.modes[:, -1, :], sf.modes[:, :, 0], sf.modes[:, :, -1]):
        assert np.max(np.abs(edge)) < 1e-14
    lengthscale = 3e5 if grid.coords.value == "lonlat" else 3e4
    weights = sf.weights(pr.Smoothness.FIVE_HALVES, lengthscale, 1.0)
    psi = sf.streamfunction(jnp.asarray(rng.normal(size=9)), weights)
    velocity = physics.velocity_from_streamfunction(grid, psi)
    east, north = np.asarray(velocity.east), np.asarray(velocity.north)
    assert np.max(np.abs(east)) > 0 and np.max(np.abs(north)) > 0
    assert np.all(east[~grid.east_open] == 0) and np.all(north[~grid.north_open] == 0)
    div = np.asarray(physics.divergence(grid, velocity))
    # Scale: the largest outflow rate of any cell, |u| l / area.
    rate = (np.abs(east) * grid.east_face_length + np.abs(north) * grid.north_face_length)
    scale = np.max(rate / grid.cell_area)
    assert np.max(np.abs(div[grid.mask])) < MASS_RTOL * scale


def test_basis_cache_is_bounded_and_reused():
    from tracerbayes.grid import basis as basis_module

    grids = [Grid.cartesian(x=(0.0, n * 1e3), y=(0.0, 5e3), resolution=1e3)
             for n in range(6, 6 + basis_module.CACHE_SIZE + 4)]
    first = basis_module.spectral_basis(grids[-1], 3)
    oldest = basis_module.spectral_basis(grids[0], 3)
    for g in grids[1:-1]:
        basis_module.spectral_basis(g, 3)
        assert basis_module.spectral_basis(grids[-1], 3) is first  # in use: kept
    assert len(basis_module._CACHE) <= basis_module.CACHE_SIZE
    assert basis_module.spectral_basis(grids[0], 3) is not oldest  # least recently used: gone
