"""The closed-form Matérn kernels and 2-D spectral densities of :mod:`tracerbayes.exact.priors`.

References, each independent of the code under test:

* GPJax's kernels (when the optional ``gp`` extra is installed): its spectral measure, a
  normalised multivariate Student-t (Gaussian for the RBF) over angular wavenumber, gives
  ``S(w) = variance * (2 pi)^2 * p(w)``; its ``gram`` gives the covariance matrix.
* No GPJax: the density integrates to the variance, ``k(0) = (2 pi)^-1 int_0^inf S(w) w dw``,
  and it is the 2-D Fourier (Hankel) transform of the kernel,
  ``S(w) = 2 pi int_0^inf k(r) J0(w r) r dr`` (Rasmussen & Williams 2006, Eq. (4.7) for an
  isotropic kernel in D = 2), both by adaptive quadrature (scipy's QUADPACK).
* ``import tracerbayes`` and the priors work with GPJax made unimportable.

Everything runs in float64 (tests/conftest.py).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from tracerbayes.exact import priors as pr
from tracerbayes.grid.core import Grid

#: Closed forms against GPJax's lgamma/log-density route: a few ulps of log(S) ~ 30.
GPJAX_RTOL = 1e-12
#: Adaptive quadrature run to epsrel 1e-12; smooth integrands, so 1e-8 holds with margin.
QUAD_RTOL = 1e-8
LENGTHSCALE, VARIANCE = 2.3e5, 1.7  # metres, tracer units squared
#: Angular wavenumbers (1/m) from 0 to ~50 / lengthscale.
WAVENUMBERS = np.array([0.0, 1e-7, 1e-6, 3e-6, 1e-5, 4e-5, 2e-4])


# ----------------------------------------------------------------------------- GPJax
@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
def test_spectral_density_matches_gpjax(smoothness):
    gpjax = pytest.importorskip("gpjax")
    del gpjax
    kernel = pr.matern_kernel(smoothness, LENGTHSCALE, VARIANCE)
    omega = jnp.stack([jnp.asarray(WAVENUMBERS), jnp.zeros_like(WAVENUMBERS)], axis=-1)
    reference = (VARIANCE * (2.0 * np.pi) ** 2
                 * np.exp(np.asarray(kernel.spectral_density.log_prob(omega))))
    actual = np.asarray(pr.matern_spectral_density(smoothness, LENGTHSCALE, VARIANCE,
                                                   WAVENUMBERS))
    assert np.all(actual[:3] > 0)
    np.testing.assert_allclose(actual, reference, rtol=GPJAX_RTOL, atol=0)
    # The smoothness may also be given as its float value.
    by_value = np.asarray(pr.matern_spectral_density(smoothness.value, LENGTHSCALE, VARIANCE,
                                                     WAVENUMBERS))
    np.testing.assert_array_equal(by_value, actual)


@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
@pytest.mark.parametrize("coords", ["lonlat", "cartesian"])
def test_stationary_covariance_matches_gpjax_gram(smoothness, coords):
    pytest.importorskip("gpjax")
    mask = np.ones((6, 7), dtype=bool)
    mask[2:4, 3:5] = False
    if coords == "lonlat":
        grid = Grid.regular(lon=(-30.0, -23.0), lat=(30.0, 36.0), resolution=1.0, mask=mask)
        lengthscale = 250e3
    else:
        grid = Grid.cartesian((0.0, 70e3), (0.0, 60e3), 10e3, mask=mask)
        lengthscale = 25e3
    points = jnp.asarray(pr.cell_positions(grid))
    kernel = pr.matern_kernel(smoothness, lengthscale, VARIANCE, n_dims=points.shape[1])
    reference = np.asarray(kernel.gram(points).as_matrix())
    actual = np.asarray(pr.stationary_covariance(grid, smoothness, lengthscale, VARIANCE))
    np.testing.assert_allclose(actual, reference, rtol=0, atol=GPJAX_RTOL * VARIANCE)


# ----------------------------------------------------------------------------- no GPJax
@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
def test_spectral_density_integrates_to_variance(smoothness):
    """``(2 pi)^-1 int_0^inf S(w) w dw = variance`` (k(0)), integrated in ``x = w l``."""
    def integrand(x):
        w = x / LENGTHSCALE
        return float(pr.matern_spectral_density(smoothness, LENGTHSCALE, VARIANCE, w)) * w

    total, error = integrate.quad(integrand, 0.0, np.inf, epsabs=0.0, epsrel=1e-12, limit=500)
    integral = total / LENGTHSCALE / (2.0 * np.pi)
    assert error / LENGTHSCALE / (2.0 * np.pi) < 1e-3 * QUAD_RTOL * VARIANCE
    np.testing.assert_allclose(integral, VARIANCE, rtol=QUAD_RTOL)


@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
def test_spectral_density_is_the_hankel_transform_of_the_kernel(smoothness):
    """``S(w) = 2 pi l^2 int_0^inf k(l x) J0(w l x) x dx`` at several wavenumbers."""
    def kernel(x):
        return VARIANCE * float(pr.matern_correlation(smoothness, x * LENGTHSCALE, LENGTHSCALE))

    upper = 80.0  # k(80 l) < 1e-30 variance for every smoothness (the slowest: exp(-80))
    assert kernel(upper) < 1e-30 * VARIANCE
    for w in WAVENUMBERS[:5]:  # up to w l = 2.3; beyond, S is below 1e-3 of S(0)
        wl = w * LENGTHSCALE
        total, _ = integrate.quad(lambda x, wl=wl: kernel(x) * special.j0(wl * x) * x, 0.0,
                                  upper, epsabs=0.0, epsrel=1e-12, limit=1000)
        expected = 2.0 * np.pi * LENGTHSCALE**2 * total
        actual = float(pr.matern_spectral_density(smoothness, LENGTHSCALE, VARIANCE, w))
        np.testing.assert_allclose(actual, expected, rtol=QUAD_RTOL, err_msg=f"w = {w}")


@pytest.mark.parametrize("smoothness", list(pr.Smoothness))
def test_correlation_is_one_at_zero_and_decreasing(smoothness):
    r = np.linspace(0.0, 5.0, 51) * LENGTHSCALE
    k = np.asarray(pr.matern_correlation(smoothness, r, LENGTHSCALE))
    assert k[0] == 1.0
    assert np.all(np.diff(k) < 0)


def test_spectral_density_traces_under_jit_and_grad():
    """``lengthscale`` and ``variance`` are traced in the model; smoothness is static."""
    def f(log_l, variance):
        return pr.matern_spectral_density(pr.Smoothness.THREE_HALVES, jnp.exp(log_l), variance,
                                          WAVENUMBERS).sum()

    log_l = np.log(LENGTHSCALE)
    eager = f(log_l, VARIANCE)
    np.testing.assert_allclose(jax.jit(f)(log_l, VARIANCE), eager, rtol=1e-14)
    # d/dlog_l of 2 pi v l^2 (1 + l^2 w^2 / 3)^-5/2, by hand.
    u = LENGTHSCALE**2 * WAVENUMBERS**2 / 3.0
    s = 2.0 * np.pi * VARIANCE * LENGTHSCALE**2 * (1.0 + u) ** -2.5
    expected = np.sum(s * (2.0 - 5.0 * u / (1.0 + u)))
    np.testing.assert_allclose(jax.grad(f)(log_l, VARIANCE), expected, rtol=1e-12)


def test_priors_work_without_gpjax():
    """With GPJax unimportable, ``import tracerbayes`` and every prior except the GPJax
    kernel builder work; :func:`matern_kernel` names the extra to install."""
    code = """
import sys
sys.modules["gpjax"] = None  # any `import gpjax` now raises ImportError
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import tracerbayes as tb
from tracerbayes.exact import priors as pr
grid = tb.Grid.regular(lon=(-30.0, -26.0), lat=(30.0, 33.0), resolution=1.0)
basis = tb.basis.spectral_basis(grid)
assert np.all(np.isfinite(pr.spectral_variances(basis, 1.5, 2e5, 1.0)))
assert np.all(np.isfinite(pr.stationary_covariance(grid, 2.5, 2e5, 1.0)))
try:
    pr.matern_kernel(1.5, 2e5)
except ImportError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'tracerbayes[gp]'" in out
