"""Kalman filter, smoother and sampler against exact dense Gaussian references.

The reference stacks the whole trajectory ``x_{0:T-1}`` into one Gaussian (built by explicit
propagation of Eq. (1) of :mod:`tracerbayes.exact.kalman`), and conditions it on the stacked valid
observations with dense linear algebra.  Everything runs in float64 (tests/conftest.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tracerbayes.exact.kalman import (
    FilterResult,
    KalmanObservations,
    LinearGaussianSSM,
    SmootherResult,
    is_time_varying,
    kalman_filter,
    kalman_log_likelihood,
    rts_smoother,
    sample_smoothed,
)
from tracerbayes.exact.kalman_parallel import parallel_kalman_filter, parallel_rts_smoother

N_STATE = 5
N_TIME = 6
N_ROWS = 3
EMPTY_TIME = 2  # a time with no valid observation: a pure prediction step
#: Relative tolerance for float64 comparisons with the dense reference (eps ~ 2.2e-16; the
#: problems are small and well conditioned, so 1e-8 leaves ample margin for round-off).
RTOL = 1e-8

# Compiled once per shape and shared by all tests: eager dispatch of many small ops, and
# compiling the associative scans, are what costs time here.
filter_sequential = jax.jit(kalman_filter)
filter_scalar = jax.jit(functools.partial(kalman_filter, scalar_updates=True))
filter_parallel = jax.jit(parallel_kalman_filter)
smoother_sequential = jax.jit(rts_smoother)
smoother_parallel = jax.jit(parallel_rts_smoother)

# (function, time_varying): the parallel versions broadcast a shared F or Q to a sequence
# first thing, so their shared-matrix case is covered by test_parallel_equals_sequential.
FILTER_CASES = [
    pytest.param(filter_sequential, True, id="sequential-time-varying"),
    pytest.param(filter_sequential, False, id="sequential-shared"),
    pytest.param(filter_scalar, True, id="scalar-updates-time-varying"),
    pytest.param(filter_parallel, True, id="parallel-time-varying"),
]
SMOOTHER_CASES = [
    pytest.param(smoother_sequential, True, id="sequential-time-varying"),
    pytest.param(smoother_sequential, False, id="sequential-shared"),
    pytest.param(smoother_parallel, True, id="parallel-time-varying"),
]
SMOOTHERS = [
    pytest.param(smoother_sequential, id="sequential"),
    pytest.param(smoother_parallel, id="parallel"),
]
log_likelihood_jit = jax.jit(kalman_log_likelihood)
sampler_jit = jax.jit(sample_smoothed, static_argnums=3)


def assert_close(actual, expected, rtol=RTOL):
    """Relative comparison, with an absolute floor relative to the largest entry."""
    expected = np.asarray(expected)
    atol = rtol * max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def random_spd(rng, n, scale=1.0):
    A = rng.normal(size=(n, n))
    return scale * (A @ A.T / n + 0.2 * np.eye(n))


def random_valid(rng, m=N_ROWS):
    """Mask with padded rows interleaved, one empty time and one full time."""
    valid = rng.random((N_TIME, m)) < 0.6
    valid[0] = np.arange(m) % 2 == 0
    valid[1] = True
    valid[EMPTY_TIME] = False
    valid[-1, 0] = True
    return valid


def make_problem(rng, time_varying=True, m=N_ROWS):
    """A random model and padded observations (``m`` rows per time), with NaN/garbage in
    the padding."""
    n, T = N_STATE, N_TIME
    if time_varying:
        F = 0.8 * np.eye(n) + 0.3 * rng.normal(size=(T - 1, n, n)) / np.sqrt(n)
        Q = np.stack([random_spd(rng, n, 0.3) for _ in range(T - 1)])
    else:
        F = 0.8 * np.eye(n) + 0.3 * rng.normal(size=(n, n)) / np.sqrt(n)
        Q = random_spd(rng, n, 0.3)
    model = LinearGaussianSSM(
        initial_mean=rng.normal(size=n),
        initial_cov=random_spd(rng, n),
        transition=F,
        process_cov=Q,
    )
    valid = random_valid(rng, m)
    values = rng.normal(size=(T, m))
    operators = rng.normal(size=(T, m, n))
    variances = rng.uniform(0.1, 0.5, size=(T, m))
    values[~valid] = np.nan  # padding must never be read
    operators[~valid] = 1e6 * rng.normal(size=(np.sum(~valid), n))
    variances[~valid] = -1.0
    obs = KalmanObservations(values, operators, variances, valid)
    return jax.tree.map(jnp.asarray, model), jax.tree.map(jnp.asarray, obs)


def dense_prior(model, T):
    """Mean (T n,) and covariance (T n, T n) of the stacked trajectory, from Eq. (1)."""
    n = model.initial_mean.shape[0]
    F = np.broadcast_to(np.asarray(model.transition), (T - 1, n, n))
    Q = np.broadcast_to(np.asarray(model.process_cov), (T - 1, n, n))
    means = [np.asarray(model.initial_mean)]
    cov = np.zeros((T * n, T * n))
    cov[:n, :n] = model.initial_cov
    for k in range(1, T):
        means.append(F[k - 1] @ means[-1])
        now, before = slice(k * n, (k + 1) * n), slice((k - 1) * n, k * n)
        cov[now, : k * n] = F[k - 1] @ cov[before, : k * n]  # Cov(x_k, x_j), j < k
        cov[: k * n, now] = cov[now, : k * n].T
        cov[now, now] = F[k - 1] @ cov[before, before] @ F[k - 1].T + Q[k - 1]
    return np.concatenate(means), cov


def dense_observations(obs):
    """Stacked valid rows in filter order: times (K,), H_big (K, T n), y (K,), r (K,)."""
    T, m, n = obs.operators.shape
    times, rows, values, variances = [], [], [], []
    for k in range(T):
        for i in range(m):
            if obs.valid[k, i]:
                row = np.zeros(T * n)
                row[k * n : (k + 1) * n] = obs.operators[k, i]
                times.append(k)
                rows.append(row)
                values.append(float(obs.values[k, i]))
                variances.append(float(obs.variances[k, i]))
    return np.array(times), np.array(rows), np.array(values), np.array(variances)


def condition(mean, cov, H, y, r):
    """Dense Gaussian conditional of x ~ N(mean, cov) given y = H x + e, e ~ N(0, diag r)."""
    if len(y) == 0:
        return mean, cov
    S = H @ cov @ H.T + np.diag(r)
    gain = np.linalg.solve(S, H @ cov).T
    return mean + gain @ (y - H @ mean), cov - gain @ S @ gain.T


def block(k, n=N_STATE):
    return slice(k * n, (k + 1) * n)


@pytest.fixture(params=[True, False], ids=["time-varying", "shared"])
def problem(request, rng):
    return make_problem(rng, time_varying=request.param)


@pytest.mark.parametrize("kalman, time_varying", FILTER_CASES)
def test_log_likelihood_equals_dense_density(rng, kalman, time_varying):
    model, obs = make_problem(rng, time_varying)
    mean, cov = dense_prior(model, N_TIME)
    _, H, y, r = dense_observations(obs)
    expected = stats.multivariate_normal(H @ mean, H @ cov @ H.T + np.diag(r)).logpdf(y)
    result = kalman(model, obs)
    assert isinstance(result, FilterResult)
    assert_close(result.log_likelihood, expected)
    assert_close(log_likelihood_jit(model, obs), expected)


@pytest.mark.parametrize("kalman, time_varying", FILTER_CASES)
def test_filtered_and_predicted_moments_equal_dense_conditionals(rng, kalman, time_varying):
    model, obs = make_problem(rng, time_varying)
    mean, cov = dense_prior(model, N_TIME)
    times, H, y, r = dense_observations(obs)
    result = kalman(model, obs)
    for k in range(N_TIME):
        seen = times <= k
        m_f, P_f = condition(mean, cov, H[seen], y[seen], r[seen])
        assert_close(result.filtered_means[k], m_f[block(k)])
        assert_close(result.filtered_covs[k], P_f[block(k), block(k)])
        before = times < k
        m_p, P_p = condition(mean, cov, H[before], y[before], r[before])
        assert_close(result.predicted_means[k], m_p[block(k)])
        assert_close(result.predicted_covs[k], P_p[block(k), block(k)])
    # the empty time is a pure prediction step
    assert_close(result.filtered_means[EMPTY_TIME], result.predicted_means[EMPTY_TIME])


@pytest.mark.parametrize("smoother, time_varying", SMOOTHER_CASES)
def test_smoother_equals_dense_conditional(rng, smoother, time_varying):
    model, obs = make_problem(rng, time_varying)
    mean, cov = dense_prior(model, N_TIME)
    _, H, y, r = dense_observations(obs)
    m_s, P_s = condition(mean, cov, H, y, r)
    result = smoother(model, obs)
    assert isinstance(result, SmootherResult)
    for k in range(N_TIME):
        assert_close(result.smoothed_means[k], m_s[block(k)])
        assert_close(result.smoothed_covs[k], P_s[block(k), block(k)])
    for k in range(N_TIME - 1):
        assert_close(result.smoothed_cross_covs[k], P_s[block(k + 1), block(k)])


@pytest.mark.parametrize("kalman, time_varying", FILTER_CASES)
def test_per_observation_terms_are_sequential_conditional_densities(rng, kalman, time_varying):
    model, obs = make_problem(rng, time_varying)
    mean, cov = dense_prior(model, N_TIME)
    _, H, y, r = dense_observations(obs)
    expected = []
    for j in range(len(y)):
        m_c, P_c = condition(mean, cov, H[:j], y[:j], r[:j])
        expected.append(stats.norm(H[j] @ m_c, np.sqrt(H[j] @ P_c @ H[j] + r[j])).logpdf(y[j]))
    result = kalman(model, obs)
    terms = np.asarray(result.log_likelihood_terms)
    assert terms.shape == (N_TIME, N_ROWS)
    assert np.all(terms[~np.asarray(obs.valid)] == 0.0)
    assert_close(terms[np.asarray(obs.valid)], np.array(expected))  # row-major = filter order
    assert_close(terms.sum(), result.log_likelihood)


def test_parallel_equals_sequential(problem):
    model, obs = problem
    pairs = [(smoother_sequential, smoother_parallel)]
    if is_time_varying(model.transition):  # (the shared case compiles the filters once less)
        pairs.append((filter_sequential, filter_parallel))
    for sequential, parallel in pairs:
        expected, actual = sequential(model, obs), parallel(model, obs)
        for name, value in expected._asdict().items():
            assert_close(getattr(actual, name), value)


@pytest.mark.parametrize("time_varying", [True, False], ids=["time-varying", "shared"])
def test_information_form_equals_dense_reference(rng, time_varying):
    """More rows per time than state entries (m = 9 > n = 5): the default filter switches to
    the information form, Eq. (8); log-likelihood, filtered moments, smoother and gradient
    against the dense reference and the joint update."""
    model, obs = make_problem(rng, time_varying, m=9)
    mean, cov = dense_prior(model, N_TIME)
    times, H, y, r = dense_observations(obs)
    expected = stats.multivariate_normal(H @ mean, H @ cov @ H.T + np.diag(r)).logpdf(y)
    joint = jax.jit(functools.partial(kalman_filter, update="joint"))(model, obs)
    for update in ("auto", "information"):
        result = jax.jit(functools.partial(kalman_filter, update=update))(model, obs)
        assert_close(result.log_likelihood, expected)
        for k in range(N_TIME):
            m_f, P_f = condition(mean, cov, H[times <= k], y[times <= k], r[times <= k])
            assert_close(result.filtered_means[k], m_f[block(k)])
            assert_close(result.filtered_covs[k], P_f[block(k), block(k)])
        terms = np.asarray(result.log_likelihood_terms)  # only totals in information form
        valid = np.asarray(obs.valid)
        assert np.all(np.isnan(terms[valid])) and np.all(terms[~valid] == 0.0)
    assert_close(log_likelihood_jit(model, obs), expected)
    assert np.all(np.isfinite(joint.log_likelihood_terms))
    m_s, P_s = condition(mean, cov, H, y, r)
    smoothed = smoother_sequential(model, obs)
    for k in range(N_TIME):
        assert_close(smoothed.smoothed_means[k], m_s[block(k)])
        assert_close(smoothed.smoothed_covs[k], P_s[block(k), block(k)])

    def gradient(update):
        return jax.jit(jax.grad(lambda a: kalman_log_likelihood(
            scaled_model(model, a), obs, update=update)))(0.9)

    assert_close(gradient("information"), gradient("joint"))


def scaled_model(model, a):
    """A one-parameter family: F, Q and P_0 all depend smoothly on the scalar ``a``."""
    return LinearGaussianSSM(
        initial_mean=model.initial_mean * (1.0 + 0.1 * a),
        initial_cov=model.initial_cov * jnp.exp(0.5 * a),
        transition=model.transition * a,
        process_cov=model.process_cov * (1.0 + a**2),
    )


@pytest.mark.parametrize("kalman, time_varying", FILTER_CASES)
def test_gradient_matches_finite_differences(rng, kalman, time_varying):
    model, obs = make_problem(rng, time_varying)

    def log_likelihood(a):
        return kalman(scaled_model(model, a), obs).log_likelihood

    a, step = 0.9, 1e-5
    gradient = jax.jit(jax.grad(log_likelihood))(a)
    central = (log_likelihood(a + step) - log_likelihood(a - step)) / (2 * step)
    assert np.isfinite(gradient)
    np.testing.assert_allclose(gradient, central, rtol=1e-5)


def with_extra_padding(obs, rng, positions=(0, 2)):
    """The same observations with garbage padded rows inserted at ``positions``."""
    T, m, n = obs.operators.shape

    def insert(array, garbage):
        return np.insert(np.asarray(array), positions, garbage, axis=1)

    garbage_ops = rng.normal(size=(T, len(positions), n)) * 1e3
    return KalmanObservations(
        values=jnp.asarray(insert(obs.values, np.inf)),
        operators=jnp.asarray(np.insert(np.asarray(obs.operators), positions, garbage_ops, 1)),
        variances=jnp.asarray(insert(obs.variances, 0.0)),
        valid=jnp.asarray(insert(obs.valid, False)),
    )


@pytest.mark.parametrize("smoother", SMOOTHERS)
def test_padded_rows_change_nothing(rng, smoother):
    model, obs = make_problem(rng)
    padded = with_extra_padding(obs, rng)
    assert padded.values.shape == (N_TIME, N_ROWS + 2)
    base, extra = smoother(model, obs), smoother(model, padded)
    for name, value in base._asdict().items():
        if name == "log_likelihood_terms":
            kept = np.asarray(extra.log_likelihood_terms)[:, [1, 2, 4]]
            assert_close(kept, value, rtol=1e-12)
            assert np.all(np.asarray(extra.log_likelihood_terms)[:, [0, 3]] == 0.0)
        else:
            assert_close(getattr(extra, name), value, rtol=1e-12)


def test_ffbs_samples_have_the_smoothed_distribution(problem, key):
    model, obs = problem
    num_samples = 4000
    samples = np.asarray(sampler_jit(key, model, obs, num_samples))
    assert samples.shape == (num_samples, N_TIME, N_STATE)
    mean, cov = dense_prior(model, N_TIME)
    _, H, y, r = dense_observations(obs)
    m_s, P_s = condition(mean, cov, H, y, r)

    flat = samples.reshape(num_samples, -1)
    # sample mean: standard error sqrt(diag(P) / N)
    mean_error = np.abs(flat.mean(axis=0) - m_s)
    assert np.all(mean_error < 5 * np.sqrt(np.diag(P_s) / num_samples))
    # sample covariance of Gaussian draws: Var(S_ij) ~ (P_ij^2 + P_ii P_jj) / N
    sample_cov = np.cov(flat, rowvar=False)
    cov_se = np.sqrt((P_s**2 + np.outer(np.diag(P_s), np.diag(P_s))) / num_samples)
    assert np.all(np.abs(sample_cov - P_s) < 5 * cov_se)
    # the cross-time block between the first and the last state, specifically
    first, last = block(0), block(N_TIME - 1)
    cross = np.abs(sample_cov[first, last] - P_s[first, last])
    assert np.all(cross < 5 * cov_se[first, last])
    # and its magnitude is not trivially zero, so the test has teeth
    assert np.max(np.abs(P_s[first, last])) > 10 * np.max(cov_se[first, last])


def test_ffbs_keeps_a_conserved_total_on_every_trajectory(rng, key):
    """With a^T F = a^T and a^T Q = 0 the total a^T x_k is the same at every time, pathwise,
    even though Q is singular (FFBS must not need a Cholesky factor of it)."""
    n, T = N_STATE, N_TIME
    area = rng.uniform(0.5, 2.0, n)
    projector = np.eye(n) - np.outer(np.ones(n), area) / area.sum()  # a^T projector = 0
    F = np.eye(n) + 0.3 * projector @ rng.normal(size=(n, n)) / np.sqrt(n)
    Q = projector @ random_spd(rng, n, 0.3) @ projector.T
    model = jax.tree.map(
        jnp.asarray, LinearGaussianSSM(rng.normal(size=n), random_spd(rng, n), F, Q)
    )
    _, obs = make_problem(rng)
    samples = np.asarray(sampler_jit(key, model, obs, 4000))
    totals = samples @ area  # (num_samples, T)
    assert np.all(np.isfinite(totals))
    np.testing.assert_allclose(totals, totals[:, :1] * np.ones(T), rtol=0, atol=1e-6)
    smoothed_totals = np.asarray(smoother_sequential(model, obs).smoothed_means) @ area
    np.testing.assert_allclose(smoothed_totals, smoothed_totals[0], rtol=1e-10)


def test_eager_and_compiled_agree(rng):
    """The filter also runs without ``jit`` (the tests otherwise use compiled versions)."""
    model, obs = make_problem(rng, time_varying=False)
    eager, compiled = kalman_filter(model, obs), filter_sequential(model, obs)
    for name, value in compiled._asdict().items():
        assert_close(getattr(eager, name), value, rtol=1e-12)


@pytest.mark.parametrize("smoother", SMOOTHERS)
def test_single_time_step(rng, smoother):
    model, obs = make_problem(rng, time_varying=False)
    obs = jax.tree.map(lambda a: a[:1], obs)
    result = smoother(model, obs)
    mean, cov = dense_prior(model, 1)
    _, H, y, r = dense_observations(obs)
    m_s, P_s = condition(mean, cov, H, y, r)
    expected = stats.multivariate_normal(H @ mean, H @ cov @ H.T + np.diag(r)).logpdf(y)
    assert_close(result.log_likelihood, expected)
    assert_close(result.smoothed_means[0], m_s)
    assert_close(result.smoothed_covs[0], P_s)
    assert result.smoothed_cross_covs.shape == (0, N_STATE, N_STATE)


def test_inconsistent_shapes_are_rejected(rng):
    model, obs = make_problem(rng)
    with pytest.raises(ValueError, match="transition"):
        filter_sequential(model._replace(transition=model.transition[:-1]), obs)
    with pytest.raises(ValueError, match="operators"):
        filter_sequential(model, obs._replace(operators=obs.operators[..., :-1]))
    with pytest.raises(ValueError, match="variances"):
        filter_parallel(model, obs._replace(variances=obs.variances[:, :-1]))
