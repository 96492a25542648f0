"""Importance-sampling correction against quadrature and scipy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tracerbayes.ensemble.importance import (
    importance_correct,
    laplace_approximation,
    student_t_log_density,
    systematic_resample,
)


def test_student_t_density_equals_scipy(rng):
    p, dof = 3, 4.5
    A = rng.normal(size=(p, p))
    shape = A @ A.T + p * np.eye(p)
    loc = rng.normal(size=p)
    x = rng.normal(size=(6, p)) * 3
    ours = student_t_log_density(jnp.asarray(x), jnp.asarray(loc),
                                 jnp.asarray(np.linalg.cholesky(shape)), dof)
    ref = stats.multivariate_t(loc=loc, shape=shape, df=dof).logpdf(x)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-12)


def test_systematic_resampling_counts_follow_the_weights(key):
    w = np.array([0.5, 0.25, 0.125, 0.125])
    index = systematic_resample(key, np.log(w), 800)
    # systematic resampling gives each index floor or ceil of n * w_i copies
    np.testing.assert_array_equal(np.bincount(index, minlength=4), 800 * w)


def _banana(theta):
    """Prior N(0, I); y = 1.5 observes theta_0^2 + theta_1 with sd 0.5: curved, skewed."""
    t0, t1 = theta[..., 0], theta[..., 1]
    return -0.5 * (t0**2 + t1**2) - 0.5 * ((t0**2 + t1 - 1.5) / 0.5) ** 2


def _quadrature_moments():
    g = np.linspace(-6, 6, 1201)
    T0, T1 = np.meshgrid(g, g, indexing="ij")
    lp = _banana(np.stack([T0, T1], axis=-1))
    w = np.exp(lp - lp.max())
    w /= w.sum()
    m = np.array([np.sum(w * T0), np.sum(w * T1)])
    sd = np.sqrt([np.sum(w * (T0 - m[0]) ** 2), np.sum(w * (T1 - m[1]) ** 2)])
    return m, sd


def test_correction_recovers_a_curved_posterior_from_a_poor_ensemble(key):
    """A narrow, off-centre Gaussian ensemble (as a linearising sampler may leave) is
    corrected to the quadrature posterior of a banana-shaped target."""
    m_ref, sd_ref = _quadrature_moments()
    k_ens, k_is = jax.random.split(key)
    ensemble = np.asarray(jax.random.normal(k_ens, (40, 2))) * 0.6 * sd_ref + m_ref + [0.0, 0.3]
    result = importance_correct(k_is, jax.jit(_banana), ensemble, 8000, scale=2.0)
    w = np.exp(result.log_weights)
    m = w @ result.draws
    sd = np.sqrt(w @ (result.draws - m) ** 2)
    assert result.pareto_k < 0.7
    se = sd_ref / np.sqrt(result.ess)  # Monte Carlo error of the weighted mean
    assert np.all(np.abs(m - m_ref) < 5 * se), (m, m_ref, se)
    np.testing.assert_allclose(sd, sd_ref, rtol=0.08)
    # the resampled draws carry the same moments (resampling adds noise of order se)
    np.testing.assert_allclose(result.resampled.mean(axis=0), m_ref, atol=8 * se.max())
    # the raw ensemble was off by several standard errors: the test can fail without the fix
    assert np.any(np.abs(ensemble.mean(axis=0) - m_ref) > 10 * se)


def test_exact_gaussian_ensemble_gives_near_uniform_weights(key, rng):
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    prec = np.linalg.inv(cov)

    def log_target(theta):
        return -0.5 * jnp.einsum("bi,ij,bj->b", theta, prec, theta)

    ensemble = rng.multivariate_normal([0.0, 0.0], cov, size=400)
    result = importance_correct(key, log_target, ensemble, 4000)
    assert result.pareto_k < 0.5
    assert result.ess > 0.6 * 4000
    w = np.exp(result.log_weights)
    m = w @ result.draws
    c = (result.draws - m).T @ ((result.draws - m) * w[:, None])
    np.testing.assert_allclose(c, cov, atol=0.15)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"ensemble": np.zeros((2, 3))}, "J > p"),
    ({"n_draws": 1}, "n_draws"),
    ({"scale": 0.0}, "scale"),
    ({"dof": 2.0}, "dof"),
    ({"ensemble": np.ones((10, 2))}, "singular"),
])
def test_bad_arguments_say_what_is_wrong(key, rng, kwargs, match):
    args = {"ensemble": rng.normal(size=(10, 2)), "n_draws": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        importance_correct(key, lambda t: jnp.zeros(t.shape[0]), args.pop("ensemble"),
                           args.pop("n_draws"), **args)


def test_nan_target_is_reported_and_minus_infinity_is_zero_weight(key, rng):
    with pytest.raises(FloatingPointError, match="NaN or \\+inf at"):
        importance_correct(key, lambda t: jnp.where(t[:, 0] > 0, jnp.nan, 0.0),
                           rng.normal(size=(10, 2)), 20)
    result = importance_correct(key, lambda t: jnp.where(t[:, 0] > 0, -jnp.inf, 0.0),
                                rng.normal(size=(10, 2)), 200)
    assert np.all(np.exp(result.log_weights[result.draws[:, 0] > 0]) == 0)
    assert np.all(result.resampled[:, 0] <= 0)


def test_laplace_approximation_of_a_gaussian_is_exact():
    """On a Gaussian log density the mode and inverse negative Hessian are the mean and
    covariance (exact up to the optimiser's tolerance)."""
    mean = np.array([1.5, -0.7, 3.0])
    cov = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, -0.3], [0.1, -0.3, 0.5]])
    prec = jnp.asarray(np.linalg.inv(cov))

    def log_density(x):
        r = x - mean
        return -0.5 * r @ prec @ r

    mode, c = laplace_approximation(log_density, np.zeros(3), gtol=1e-10)
    np.testing.assert_allclose(mode, mean, atol=1e-7)
    np.testing.assert_allclose(c, cov, rtol=1e-10, atol=1e-12)


def test_laplace_proposal_corrects_to_the_exact_skewed_posterior(key):
    """theta = log of Gamma(a) variables (density exp(a theta - e^theta)): skewed, with
    E theta = digamma(a) and Var theta = trigamma(a); the Laplace approximation (mode log a,
    variance 1/a) is off, the importance-corrected moments are not."""
    from scipy.special import digamma, polygamma

    a = np.array([2.0, 5.0])

    def log_density(x):
        return jnp.sum(a * x - jnp.exp(x), axis=-1)

    mode, cov = laplace_approximation(log_density, np.zeros(2))
    np.testing.assert_allclose(mode, np.log(a), atol=1e-6)
    np.testing.assert_allclose(cov, np.diag(1 / a), rtol=1e-5)
    result = importance_correct(key, jax.jit(log_density), None, 8000, proposal=(mode, cov))
    w = np.exp(result.log_weights)
    m = w @ result.draws
    sd_ref = np.sqrt(polygamma(1, a))
    assert result.pareto_k < 0.7
    assert np.all(np.abs(m - digamma(a)) < 5 * sd_ref / np.sqrt(result.ess))
    np.testing.assert_allclose(np.sqrt(w @ (result.draws - m) ** 2), sd_ref, rtol=0.05)
    # the Laplace moments alone were off by more than the Monte Carlo error
    assert np.all(np.abs(mode - digamma(a)) > 10 * sd_ref / np.sqrt(result.ess))


def test_laplace_and_proposal_errors_say_what_is_wrong(key):
    with pytest.raises(ValueError, match="not negative definite"):
        laplace_approximation(lambda x: -x[0] ** 2 + 0.0 * x[1], np.ones(2))  # flat in x1
    with pytest.raises(ValueError, match="either an ensemble or a proposal"):
        importance_correct(key, lambda t: jnp.zeros(t.shape[0]), np.zeros((5, 2)), 10,
                           proposal=(np.zeros(2), np.eye(2)))
    with pytest.raises(ValueError, match="proposal must be"):
        importance_correct(key, lambda t: jnp.zeros(t.shape[0]), None, 10,
                           proposal=(np.zeros(2), np.eye(3)))
