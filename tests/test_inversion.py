"""EKI / EKS against dense linear algebra; parameter transforms; whitened innovations."""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from tracerbayes.ensemble.inversion import (
    eki,
    eks,
    kalman_innovations,
    parameter_space,
    prior_ensemble,
    to_inference_data,
    whitened_innovations,
)
from tracerbayes.exact.kalman import KalmanObservations, LinearGaussianSSM, kalman_filter


@pytest.fixture
def linear_problem(rng):
    """``y = G theta + eta``, p = 3 < d = 8, G full column rank, diagonal Gamma."""
    p, d = 3, 8
    G = rng.normal(size=(d, p))
    noise_cov = np.diag(rng.uniform(0.5, 2.0, size=d))
    y = G @ np.array([1.0, -2.0, 0.5]) + rng.multivariate_normal(np.zeros(d), noise_cov)
    return G, noise_cov, y


def _least_squares(G, noise_cov, y):
    W = np.linalg.inv(noise_cov)
    return np.linalg.solve(G.T @ W @ G, G.T @ W @ y)


def _gaussian_posterior(G, noise_cov, y, m0, C0):
    W = np.linalg.inv(noise_cov)
    cov = np.linalg.inv(G.T @ W @ G + np.linalg.inv(C0))
    return cov @ (G.T @ W @ y + np.linalg.solve(C0, m0)), cov


def test_eki_converges_to_least_squares(linear_problem, rng, key):
    G, noise_cov, y = linear_problem
    theta0 = rng.normal(size=(10, 3))  # J = 10 > p = 3: the span is all of R^3
    result = eki(key, lambda t: jnp.asarray(G) @ t, theta0, y, noise_cov, 40, step=10.0)
    reference = _least_squares(G, noise_cov, y)
    final = np.asarray(result.ensembles[-1])
    assert result.ensembles.shape == (41, 10, 3)
    assert np.max(np.abs(final - reference)) < 1e-6  # every member collapsed onto the LS point
    misfit = (y - G @ reference) @ np.linalg.solve(noise_cov, y - G @ reference)
    assert float(result.misfits[-1]) == pytest.approx(misfit, rel=1e-9)
    assert float(result.misfits[0]) > 2 * misfit


def test_tikhonov_eki_converges_to_ridge(linear_problem, rng, key):
    G, noise_cov, y = linear_problem
    m0, C0 = np.array([0.5, 0.0, -0.5]), np.diag([1.0, 2.0, 0.5])
    theta0 = rng.normal(size=(10, 3))
    result = eki(key, lambda t: jnp.asarray(G) @ t, theta0, y, noise_cov, 40,
                 prior_mean=m0, prior_cov=C0, step=10.0)
    ridge, _ = _gaussian_posterior(G, noise_cov, y, m0, C0)
    assert np.max(np.abs(np.asarray(result.ensembles[-1]) - ridge)) < 1e-6
    assert np.max(np.abs(ridge - _least_squares(G, noise_cov, y))) > 1e-2  # it is different


def test_eki_single_fixed_step_is_the_kalman_update(linear_problem, rng, key):
    """One step with ``h = 1`` is Eq. (1) of Iglesias, Law & Stuart (2013), computed densely."""
    G, noise_cov, y = linear_problem
    theta0 = rng.normal(size=(6, 3))
    result = eki(key, lambda t: jnp.asarray(G) @ t, theta0, y, noise_cov, 1,
                 adaptive_step=False)
    A = theta0 - theta0.mean(0)
    B = A @ G.T
    gain = (A.T @ B / 6) @ np.linalg.inv(B.T @ B / 6 + noise_cov)
    expected = theta0 + (y - theta0 @ G.T) @ gain.T
    np.testing.assert_allclose(result.ensembles[1], expected, rtol=1e-12, atol=1e-12)
    assert float(result.time_steps[0]) == 1.0


def test_eks_samples_the_gaussian_posterior(rng, key):
    p, d, J = 2, 4, 400
    G = rng.normal(size=(d, p))
    noise_cov = np.diag([0.5, 1.0, 1.5, 0.8])
    y = G @ np.array([0.7, -0.3]) + rng.normal(size=d)
    m0, C0 = np.array([0.0, 1.0]), np.array([[1.0, 0.3], [0.3, 2.0]])
    theta0 = rng.multivariate_normal(m0, C0, size=J)
    result = eks(key, lambda t: jnp.asarray(G) @ t, theta0, y, noise_cov, m0, C0, 800,
                 step=0.02)
    mean, cov = _gaussian_posterior(G, noise_cov, y, m0, C0)
    L = np.linalg.cholesky(cov)
    final = np.asarray(result.ensembles[-1])
    # whitened ensemble-mean error: ~ N(0, 1/J) per component for J posterior draws
    z = np.linalg.solve(L, final.mean(0) - mean) * np.sqrt(J)
    assert np.max(np.abs(z)) < 4.5
    # whitened ensemble covariance ~ I with entry sd <= sqrt(2/J); the split-step bias
    # (about 1.5 h ~ 0.02 here) is well inside
    W = np.linalg.solve(L, np.linalg.solve(L, np.cov(final.T, bias=True)).T)
    assert np.max(np.abs(W - np.eye(p))) < 5.0 * np.sqrt(2.0 / J)
    assert np.all(np.asarray(result.time_steps) > 0)


def test_parameter_space_round_trip():
    priors = {
        "diffusivity": dist.LogNormal(np.log(100.0), 0.5),  # m^2/s
        "velocity": dist.Normal(0.1, 0.05),  # m/s, may be negative
        "lengthscale": dist.LogNormal(np.log(50.0), 0.3),  # km
    }
    space = parameter_space(priors)
    assert space.names == ("diffusivity", "velocity", "lengthscale")
    assert space.log_scale == (True, False, True)
    np.testing.assert_allclose(space.prior_mean, [np.log(100.0), 0.1, np.log(50.0)])
    np.testing.assert_allclose(space.prior_cov, np.diag([0.25, 0.0025, 0.09]))
    physical = np.array([[250.0, -0.2, 12.0], [1e-3, 0.0, 3e4]])
    theta = space.to_unconstrained(physical)
    np.testing.assert_allclose(theta[:, 0], np.log(physical[:, 0]), rtol=1e-14)
    np.testing.assert_allclose(theta[:, 1], physical[:, 1], rtol=1e-14)
    np.testing.assert_allclose(space.to_physical(theta), physical, rtol=1e-13)


def test_prior_ensemble_matches_numpyro_moments(key):
    mu, s = np.log(100.0), 0.5
    priors = {"diffusivity": dist.LogNormal(mu, s), "velocity": dist.Normal(0.1, 0.05)}
    J = 40_000
    theta = np.asarray(prior_ensemble(key, priors, J))
    assert theta.shape == (J, 2)
    physical = np.asarray(parameter_space(priors).to_physical(theta))
    for column, prior in zip(physical.T, priors.values(), strict=True):
        sd = float(jnp.sqrt(prior.variance))
        assert abs(column.mean() - float(prior.mean)) < 5 * sd / np.sqrt(J)
        # sample variance: sd of the estimate is var * sqrt((kurtosis - 1) / J)
        kurtosis = 3.0 if isinstance(prior, dist.Normal) else (
            np.exp(4 * s**2) + 2 * np.exp(3 * s**2) + 3 * np.exp(2 * s**2) - 3)
        assert abs(column.var() / sd**2 - 1) < 5 * np.sqrt((kurtosis - 1) / J)
    # in the unconstrained space the LogNormal column is Normal(mu, s)
    assert abs(theta[:, 0].mean() - mu) < 5 * s / np.sqrt(J)
    assert abs(theta[:, 0].std() / s - 1) < 5 * np.sqrt(0.5 / J)


def test_non_gaussian_prior_is_rejected():
    with pytest.raises(TypeError, match="'noise_sd' is Gamma.*LogNormal"):
        parameter_space({"noise_sd": dist.Gamma(2.0, 1.0)})


def test_bad_shapes_are_rejected(key):
    G = jnp.ones((4, 2))
    with pytest.raises(ValueError, match=r"theta0 must have shape \(J, p\)"):
        eki(key, lambda t: G @ t, jnp.ones(2), jnp.ones(4), jnp.eye(4), 3)
    with pytest.raises(ValueError, match=r"noise_cov must have shape \(4, 4\)"):
        eki(key, lambda t: G @ t, jnp.ones((5, 2)), jnp.ones(4), jnp.eye(3), 3)
    with pytest.raises(ValueError, match="both prior_mean"):
        eki(key, lambda t: G @ t, jnp.ones((5, 2)), jnp.ones(4), jnp.eye(4), 3,
            prior_mean=jnp.zeros(2))


def test_to_inference_data(linear_problem, rng, key):
    G, noise_cov, y = linear_problem
    priors = {"a": dist.LogNormal(0.0, 1.0), "b": dist.Normal(0.0, 1.0),
              "c": dist.Normal(0.0, 1.0)}
    space = parameter_space(priors)
    theta0 = prior_ensemble(key, priors, 7)
    result = eki(key, lambda t: jnp.asarray(G) @ t, theta0, y, noise_cov, 3, space=space)
    idata = to_inference_data(result, space.names)
    posterior = idata.posterior
    assert dict(posterior.sizes) == {"chain": 1, "draw": 7}
    assert set(posterior.data_vars) == {"a", "b", "c"}
    np.testing.assert_allclose(posterior["a"].values[0], np.exp(result.ensembles[-1][:, 0]))
    np.testing.assert_allclose(posterior["b"].values[0], result.ensembles[-1][:, 1])
    assert idata.attrs["inference_method"] == "eki"
    assert posterior.attrs["inference_method"] == "eki"
    assert posterior.attrs["ensemble_size"] == 7
    assert posterior.attrs["n_iterations"] == 3
    with pytest.raises(ValueError, match="got 2 names for 3 parameters"):
        to_inference_data(result, ["a", "b"])


def _tiny_ssm(theta):
    """n = 2 state, T = 4 times, m = 2 rows, one padded; theta = (log q, log r)."""
    model = LinearGaussianSSM(
        initial_mean=jnp.array([0.5, -0.2]),
        initial_cov=jnp.array([[1.0, 0.2], [0.2, 0.5]]),
        transition=jnp.array([[0.9, 0.1], [-0.2, 0.8]]),
        process_cov=jnp.exp(theta[0]) * jnp.array([[1.0, 0.3], [0.3, 0.6]]),
    )
    operators = jnp.array([[[1.0, 0.0], [0.3, 0.7]], [[0.0, 1.0], [0.0, 0.0]],
                           [[0.5, 0.5], [1.0, -1.0]], [[0.2, 0.1], [0.9, 0.4]]])
    obs = KalmanObservations(
        values=jnp.array([[0.3, 0.1], [-0.4, jnp.nan], [1.2, 0.5], [0.0, -0.7]]),
        operators=operators,
        variances=jnp.exp(theta[1]) * jnp.array([[1.0, 0.5], [2.0, 1.0], [0.7, 1.0],
                                                 [1.0, 1.5]]),
        valid=jnp.array([[True, True], [True, False], [True, True], [True, True]]),
    )
    return model, obs


def _dense_marginal(model, obs):
    """Mean and covariance of all valid observations stacked, from the joint of x_{0:T-1}."""
    F, Q = np.asarray(model.transition), np.asarray(model.process_cov)
    T, n = obs.values.shape[0], 2
    means, covs = [np.asarray(model.initial_mean)], [np.asarray(model.initial_cov)]
    for _ in range(T - 1):
        means.append(F @ means[-1])
        covs.append(F @ covs[-1] @ F.T + Q)
    joint = np.zeros((T * n, T * n))
    for i in range(T):
        for j in range(i, T):
            block = np.linalg.matrix_power(F, j - i) @ covs[i]  # Cov(x_j, x_i)
            joint[j * n:(j + 1) * n, i * n:(i + 1) * n] = block
            joint[i * n:(i + 1) * n, j * n:(j + 1) * n] = block.T
    valid = np.asarray(obs.valid)
    rows = [(k, i) for k in range(T) for i in range(2) if valid[k, i]]
    H = np.zeros((len(rows), T * n))
    for row, (k, i) in enumerate(rows):
        H[row, k * n:(k + 1) * n] = np.asarray(obs.operators)[k, i]
    values = np.array([float(obs.values[k, i]) for k, i in rows])
    r = np.array([float(obs.variances[k, i]) for k, i in rows])
    return values, H @ np.concatenate(means), H @ joint @ H.T + np.diag(r)


def test_whitened_innovations_give_the_exact_quadratic_term():
    theta = jnp.array([np.log(0.3), np.log(0.4)])
    forward = whitened_innovations(lambda t: kalman_innovations(*_tiny_ssm(t)))
    white = np.asarray(forward(theta))
    assert white.shape == (8,)
    model, obs = _tiny_ssm(theta)
    values, mean, cov = _dense_marginal(model, obs)
    quadratic = (values - mean) @ np.linalg.solve(cov, values - mean)
    assert np.sum(white**2) == pytest.approx(quadratic, rel=1e-12)
    # what is left out is the log-determinant: together they give the Kalman log-likelihood
    _, S = kalman_innovations(model, obs)
    logdet = float(jnp.sum(jnp.linalg.slogdet(S)[1]))
    assert logdet == pytest.approx(np.linalg.slogdet(cov)[1], rel=1e-12)
    loglik = -0.5 * (quadratic + logdet + len(values) * np.log(2 * np.pi))
    assert float(kalman_filter(model, obs).log_likelihood) == pytest.approx(loglik, rel=1e-12)
