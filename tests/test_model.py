"""The marginalised state-space distribution and the reduced-basis tracer model, exactly.

References:

* ``LinearGaussianStateSpace``: the dense multivariate-normal density of the stacked valid
  observations, with the joint covariance of the trajectory built by explicit propagation of
  ``x_{k+1} = F_k x_k + w_k`` (scipy), Monte-Carlo moments of ``sample`` against the same
  dense mean and covariance, and NumPyro's ``log_density`` against prior + that density.
* ``AdvectionDiffusionModel`` with ``K = N`` modes: the basis is then complete
  (``Phi Phi^T A = I``), so the reduced transition must equal the full-grid
  ``expm(L dt)`` of :mod:`tracerbayes.physics.operator`, and the reduced log-likelihood must equal
  the
  likelihood of a model written directly in state space on the full grid (bilinear ``H`` from
  :meth:`PreparedObservations.dense_H`, closed-form Matérn variances). Conservation:
  ``a^T Q = 0`` for every process-noise covariance and ``a^T M = a^T`` for the transition,
  hence smoothed totals constant in time. Gradients against central finite differences.

Everything runs in float64 (tests/conftest.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from dense_reference import stacked_moments  # noqa: E402
from numpyro.infer.util import log_density
from scipy import stats
from scipy.special import gamma

from tracerbayes import physics
from tracerbayes.exact import kalman
from tracerbayes.exact.distribution import LinearGaussianStateSpace
from tracerbayes.exact.kalman import LinearGaussianSSM
from tracerbayes.exact.model import (
    AdvectionDiffusionModel,
    ConstantVelocity,
    GivenVelocity,
    Priors,
    StreamfunctionVelocity,
)
from tracerbayes.exact.priors import streamfunction_basis
from tracerbayes.grid.basis import connected_basins
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0
KM = 1000.0
#: Dense-reference comparisons of log-densities (float64, well-conditioned, n <= 340).
LOGPDF_RTOL = 1e-8
#: Transition matrices: two 68 x 68 basis changes around an expm.
TRANSITION_RTOL = 1e-9
#: Totals: sums of ~70 products of O(1) terms, eps ~ 2.2e-16.
MASS_RTOL = 1e-12
N_REDUCED = 20  # K < N for the truncated-basis tests


# ----------------------------------------------------------------------------- dense reference
def observation_moments(m0, P0, F, Q, H, r, valid):
    """Mean and covariance of the valid observations, stacked in (time, row) order."""
    mean, cov = stacked_moments(m0, P0, F, Q)
    H, r, valid = np.asarray(H), np.asarray(r), np.asarray(valid)
    T, m, n = H.shape
    big = np.zeros((T * m, T * n))
    for k in range(T):
        big[k * m:(k + 1) * m, k * n:(k + 1) * n] = H[k]
    keep = valid.ravel()
    big = big[keep]
    return big @ mean, big @ cov @ big.T + np.diag(r.ravel()[keep])


def dense_log_likelihood(m0, P0, F, Q, H, r, valid, y):
    mean, cov = observation_moments(m0, P0, F, Q, H, r, valid)
    values = np.asarray(y).ravel()[np.asarray(valid).ravel()]
    return stats.multivariate_normal(mean, cov).logpdf(values)


def per_step(matrix, T):
    matrix = np.asarray(matrix)
    return matrix if matrix.ndim == 3 else np.broadcast_to(matrix, (T - 1,) + matrix.shape)


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def closed_form_matern(nu, lengthscale, variance, w):
    """2-D Matérn spectral density, Rasmussen & Williams (2006) Eq. (4.15), D = 2."""
    return (variance * 4.0 * np.pi * gamma(nu + 1.0) * (2.0 * nu) ** nu
            / (gamma(nu) * lengthscale ** (2.0 * nu))
            * (2.0 * nu / lengthscale**2 + w**2) ** (-(nu + 1.0)))


# ----------------------------------------------------------------------------- distribution
N_STATE, N_TIME, N_ROWS = 4, 5, 3


def random_spd(rng, n, scale=1.0):
    A = rng.normal(size=(n, n))
    return scale * (A @ A.T / n + 0.3 * np.eye(n))


def random_problem(rng, time_varying):
    """A small random state-space model and padded observations (NaN in the padding)."""
    n, T, m = N_STATE, N_TIME, N_ROWS
    m0 = rng.normal(size=n)
    P0 = random_spd(rng, n)
    shape = (T - 1, n, n) if time_varying else (n, n)
    F = 0.9 * np.eye(n) + 0.2 * rng.normal(size=shape)
    Q = np.stack([random_spd(rng, n, 0.3) for _ in range(T - 1)]) if time_varying \
        else random_spd(rng, n, 0.3)
    H = rng.normal(size=(T, m, n))
    r = rng.uniform(0.1, 0.5, size=(T, m))
    valid = rng.random((T, m)) < 0.7
    valid[2] = False  # a time with no observation
    valid[3] = True  # a full time
    y = rng.normal(size=(T, m))
    y[~valid] = np.nan
    ssm = LinearGaussianSSM(*(jnp.asarray(v) for v in (m0, P0, F, Q)))
    return ssm, H, r, valid, y


def reference_log_likelihood(ssm, H, r, valid, y):
    F, Q = per_step(ssm.transition, N_TIME), per_step(ssm.process_cov, N_TIME)
    return dense_log_likelihood(ssm.initial_mean, ssm.initial_cov, F, Q, H, r, valid, y)


@jax.jit
def evaluate_distribution(ssm, H, r, valid, y, y_batch):
    """``log_prob`` of one value and of a batch, and the pointwise terms, in one compile."""
    d = LinearGaussianStateSpace(ssm, H, r, valid)
    return d.log_prob(y), d.log_prob(y_batch), d.pointwise_log_likelihood(y)


@pytest.mark.parametrize("time_varying", [False, True], ids=["shared", "time-varying"])
def test_distribution_log_prob_equals_dense_gaussian(rng, time_varying):
    ssm, H, r, valid, y = random_problem(rng, time_varying)
    d = LinearGaussianStateSpace(ssm, H, r, valid)
    assert d.event_shape == (N_TIME, N_ROWS) and d.batch_shape == ()
    y2 = np.where(valid, y + 0.3, np.nan)
    log_prob, batch, terms = evaluate_distribution(ssm, H, r, valid, y, np.stack([y, y2]))
    expected = reference_log_likelihood(ssm, H, r, valid, y)
    np.testing.assert_allclose(float(log_prob), expected, rtol=LOGPDF_RTOL)
    # Pointwise terms: zero on padding, summing to the total.
    terms = np.asarray(terms)
    assert terms.shape == (N_TIME, N_ROWS)
    np.testing.assert_array_equal(terms[~valid], 0.0)
    np.testing.assert_allclose(terms.sum(), expected, rtol=LOGPDF_RTOL)
    # A batch of values is mapped over.
    expected2 = reference_log_likelihood(ssm, H, r, valid, y2)
    np.testing.assert_allclose(np.asarray(batch), [expected, expected2], rtol=LOGPDF_RTOL)


def test_distribution_sample_moments(rng, key):
    ssm, H, r, valid, _ = random_problem(rng, time_varying=True)
    d = LinearGaussianStateSpace(ssm, H, r, valid)
    n_draws = 4000
    draws = np.asarray(jax.jit(lambda k: d.sample(k, (2, n_draws // 2)))(key))
    assert draws.shape == (2, n_draws // 2, N_TIME, N_ROWS)
    draws = draws.reshape(n_draws, N_TIME, N_ROWS)
    np.testing.assert_array_equal(draws[:, ~valid], 0.0)
    F, Q = per_step(ssm.transition, N_TIME), per_step(ssm.process_cov, N_TIME)
    mean, cov = observation_moments(ssm.initial_mean, ssm.initial_cov, F, Q, H, r, valid)
    flat = draws.reshape(n_draws, -1)[:, valid.ravel()]
    sd = np.sqrt(np.diag(cov))
    # 5 standard errors: the mean, and each covariance entry (Gaussian fourth moments).
    assert np.all(np.abs(flat.mean(0) - mean) < 5.0 * sd / np.sqrt(n_draws))
    sample_cov = np.cov(flat, rowvar=False)
    cov_se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / n_draws)
    assert np.all(np.abs(sample_cov - cov) < 5.0 * cov_se)


def test_distribution_inside_numpyro_model(rng):
    ssm, H, r, valid, y = random_problem(rng, time_varying=False)
    prior = dist.LogNormal(0.0, 0.5)

    def model(values):
        scale = numpyro.sample("scale", prior)
        scaled = ssm._replace(process_cov=scale * ssm.process_cov)
        numpyro.sample("y", LinearGaussianStateSpace(scaled, H, r, valid), obs=values)

    scale = 1.3
    log_joint, trace = log_density(model, (y,), {}, {"scale": scale})
    scaled = ssm._replace(process_cov=scale * ssm.process_cov)
    expected = (stats.lognorm(s=0.5).logpdf(scale)
                + reference_log_likelihood(scaled, H, r, valid, y))
    np.testing.assert_allclose(float(log_joint), expected, rtol=LOGPDF_RTOL)
    assert trace["y"]["is_observed"]
    np.testing.assert_array_equal(trace["y"]["value"], y)


# ----------------------------------------------------------------------------- model set-up
PARAMS = {
    "diffusivity": 1500.0,
    "noise_sd": 0.15,
    "noise_lengthscale_km": 180.0,
    "initial_sd": 0.6,
    "initial_lengthscale_km": 250.0,
    "error_scale": 1.3,
}
VELOCITY_PARAMS = {
    "constant": {"u": 0.12, "v": -0.07},
    "given": {"velocity_scale": 0.7},
    "streamfunction": {"streamfunction": np.array([0.8, -1.1, 0.4, 1.5, -0.3, 0.9])},
}
UNIFORM_TIMES = np.arange(5) * DAY
IRREGULAR_TIMES = np.array([0.0, 1.0, 2.5, 3.0, 4.5]) * DAY


@functools.cache
def island_grid() -> Grid:
    """An 8 x 9 one-degree lon/lat grid with a 2 x 2 island: 68 wet cells, one basin."""
    mask = np.ones((8, 9), dtype=bool)
    mask[3:5, 4:6] = False
    return Grid.regular(lon=(-30.0, -21.0), lat=(30.0, 38.0), resolution=1.0, mask=mask)


@functools.cache
def given_velocity() -> physics.FaceVelocity:
    rng = np.random.default_rng(7)
    grid = island_grid()
    u = 0.1 * rng.normal(size=grid.shape)
    v = 0.1 * rng.normal(size=grid.shape)
    return physics.velocity_from_centres(grid, u, v)


def velocity_model(kind):
    if kind == "constant":
        return ConstantVelocity(scale=0.1)
    if kind == "given":
        return GivenVelocity(given_velocity(), scale_prior=dist.LogNormal(0.0, 0.5))
    return StreamfunctionVelocity(n_modes=6, lengthscale_km=400.0, speed=0.1)


@functools.cache
def make_model(kind, n_modes=None) -> AdvectionDiffusionModel:
    grid = island_grid()
    n_modes = grid.n_wet if n_modes is None else n_modes
    return AdvectionDiffusionModel(grid, velocity_model(kind), Priors(), n_modes=n_modes)


def params_for(kind):
    return {**PARAMS, **VELOCITY_PARAMS[kind]}


@functools.cache
def observations() -> Observations:
    """3 or 4 observations per day (times jittered by up to 0.3 day) at wet positions."""
    rng = np.random.default_rng(11)
    grid = island_grid()
    rows = []
    for day in range(5):
        count = 3 + day % 2
        while count:
            lon = rng.uniform(grid.x_edges[0], grid.x_edges[-1])
            lat = rng.uniform(grid.y_edges[0], grid.y_edges[-1])
            j = np.searchsorted(grid.y_edges, lat) - 1
            i = np.searchsorted(grid.x_edges, lon) - 1
            if not grid.mask[j, i]:
                continue
            t = day * DAY + rng.uniform(-0.3, 0.3) * DAY * (day > 0)
            rows.append({"time": t, "lon": lon, "lat": lat,
                         "value": 2.0 + 0.5 * rng.normal(), "error": rng.uniform(0.05, 0.2)})
            count -= 1
    return Observations.from_dataframe(pd.DataFrame(rows))


def full_grid_state_space(model, params, times):
    """The model of :mod:`tracerbayes.exact.model` written directly in state space, on the grid.

    Initial mean: the data mean everywhere; covariances ``Phi diag(p) Phi^T`` with closed-form
    Matérn variances (the mass mode gets ``mean_sd^2`` times the wet area in ``p0``, nothing in
    ``q``); transitions ``expm(L dt)`` on the full grid.
    """
    grid, basis, pri = model.grid, model.basis, model.priors
    nu = pri.smoothness.value
    wavenumber = np.sqrt(basis.eigenvalues)
    constant = np.arange(basis.size) < basis.n_basins
    q = np.where(constant, 0.0, closed_form_matern(
        nu, params["noise_lengthscale_km"] * KM, params["noise_sd"] ** 2, wavenumber))
    p0 = np.where(constant, pri.mean_sd**2 * grid.wet_area.sum(), closed_form_matern(
        nu, params["initial_lengthscale_km"] * KM, params["initial_sd"] ** 2, wavenumber))
    phi = basis.vectors
    prepared = observations().prepare(grid, times)
    m0 = np.full(grid.n_wet, np.mean(prepared.value))
    P0 = phi @ np.diag(p0) @ phi.T
    velocity = model.face_velocity(params)
    dts = np.diff(times)
    F = np.stack([np.asarray(physics.exponential_transition(grid, velocity,
                                                            params["diffusivity"], dt))
                  for dt in dts])
    Q = np.stack([phi @ np.diag(q) @ phi.T * dt / DAY for dt in dts])
    H = prepared.dense_H(grid.n_wet)
    padded = prepared.padded()
    r = (params["error_scale"] ** 2) * padded.variances
    return m0, P0, F, Q, H, r, padded.valid, padded.values


# ----------------------------------------------------------------------------- model tests
#: The full-grid filter, compiled once for all cases (they share every shape).
full_grid_log_likelihood = jax.jit(kalman.kalman_log_likelihood)


@pytest.mark.parametrize("kind", list(VELOCITY_PARAMS))
def test_complete_basis_transition_equals_full_grid_expm(kind):
    model = make_model(kind)
    grid, basis = model.grid, model.basis
    assert basis.size == grid.n_wet
    params = params_for(kind)
    data = model.prepare(observations(), UNIFORM_TIMES)
    reduced = np.asarray(model.state_space(params, data).transition)
    phi = basis.vectors
    full_from_reduced = phi @ reduced @ (phi.T * basis.cell_area)
    if kind == "constant":
        velocity = physics.constant_velocity(grid, params["u"], params["v"])
    elif kind == "given":
        v = given_velocity()
        velocity = physics.FaceVelocity(v.east * 0.7, v.north * 0.7)
    else:
        velocity = model.face_velocity(params)
    expected = physics.exponential_transition(grid, velocity, params["diffusivity"], DAY)
    # The physics is not trivially close to the identity.
    assert np.max(np.abs(np.asarray(expected) - np.eye(grid.n_wet))) > 0.05
    assert relative_error(full_from_reduced, expected) < TRANSITION_RTOL


def test_streamfunction_velocity_is_scaled_stream_function_flow():
    model = make_model("streamfunction")
    grid = model.grid
    params = params_for("streamfunction")
    velocity = model.face_velocity(params)
    div = np.asarray(physics.divergence(grid, velocity))[grid.mask]
    east, north = np.asarray(velocity.east), np.asarray(velocity.north)
    rate = (np.abs(east) * grid.east_face_length + np.abs(north) * grid.north_face_length)
    assert np.max(np.abs(div)) < MASS_RTOL * np.max(rate / grid.cell_area)
    # Proportional to the flow of the unscaled stream function of the same coefficients.
    sf = streamfunction_basis(grid, 6)
    weights = sf.weights(model.velocity.smoothness, model.velocity.lengthscale_km * KM, 1.0)
    raw = physics.velocity_from_streamfunction(
        grid, sf.streamfunction(params["streamfunction"], weights))
    ratio = np.max(np.abs(east)) / np.max(np.abs(np.asarray(raw.east)))
    np.testing.assert_allclose(east, ratio * np.asarray(raw.east), rtol=0,
                               atol=1e-12 * np.max(np.abs(east)))
    np.testing.assert_allclose(north, ratio * np.asarray(raw.north), rtol=0,
                               atol=1e-12 * np.max(np.abs(east)))
    # Speeds of order the prescribed 0.1 m/s.
    assert 1e-3 < np.sqrt(np.mean(east**2 + north**2)) < 1.0


LIKELIHOOD_CASES = [
    pytest.param("constant", UNIFORM_TIMES, id="constant"),
    pytest.param("constant", IRREGULAR_TIMES, id="constant-irregular-times"),
    pytest.param("given", UNIFORM_TIMES, id="given"),
    pytest.param("streamfunction", UNIFORM_TIMES, id="streamfunction"),
]


@pytest.mark.parametrize(("kind", "times"), LIKELIHOOD_CASES)
def test_complete_basis_likelihood_equals_full_grid_state_space(kind, times):
    model = make_model(kind)
    params = params_for(kind)
    data = model.prepare(observations(), times)
    reduced = float(model.likelihood(params, data).log_prob(data.values))
    m0, P0, F, Q, H, r, valid, y = full_grid_state_space(model, params, times)
    full_ssm = LinearGaussianSSM(*(jnp.asarray(v) for v in (m0, P0, F, Q)))
    padded = kalman.KalmanObservations(jnp.asarray(y), jnp.asarray(H), jnp.asarray(r),
                                       jnp.asarray(valid))
    full = float(full_grid_log_likelihood(full_ssm, padded))
    dense = dense_log_likelihood(m0, P0, F, Q, H, r, valid, y)
    np.testing.assert_allclose(full, dense, rtol=LOGPDF_RTOL)
    np.testing.assert_allclose(reduced, full, rtol=LOGPDF_RTOL)


def test_numpyro_model_log_density_is_priors_plus_likelihood():
    model = make_model("constant")
    params = params_for("constant")
    data = model.prepare(observations(), UNIFORM_TIMES)
    log_joint, _ = log_density(model, (data,), {}, params)
    priors = (
        stats.lognorm(s=1.0, scale=300.0).logpdf(params["diffusivity"])
        + stats.halfnorm(scale=0.2).logpdf(params["noise_sd"])
        + stats.lognorm(s=0.5, scale=150.0).logpdf(params["noise_lengthscale_km"])
        + stats.halfnorm(scale=2.0).logpdf(params["initial_sd"])
        + stats.lognorm(s=0.5, scale=200.0).logpdf(params["initial_lengthscale_km"])
        + stats.lognorm(s=0.3).logpdf(params["error_scale"])
        + stats.norm(scale=0.1).logpdf(params["u"])
        + stats.norm(scale=0.1).logpdf(params["v"])
    )
    # The likelihood from the independent full-grid dense reference (K = N).
    likelihood = dense_log_likelihood(*full_grid_state_space(model, params, UNIFORM_TIMES))
    np.testing.assert_allclose(float(log_joint), priors + likelihood, rtol=LOGPDF_RTOL)


@pytest.mark.parametrize("n_modes", [None, N_REDUCED], ids=["complete", "reduced"])
@pytest.mark.parametrize("times", [UNIFORM_TIMES, IRREGULAR_TIMES], ids=["uniform", "irregular"])
def test_process_noise_and_transition_conserve_the_total(n_modes, times):
    model = make_model("constant", n_modes)
    basis = model.basis
    data = model.prepare(observations(), times)
    ssm = model.state_space(params_for("constant"), data)
    T = times.size
    a, phi = basis.cell_area, basis.vectors
    for Q_reduced, F_reduced in zip(per_step(ssm.process_cov, T), per_step(ssm.transition, T),
                                    strict=True):
        Q = phi @ Q_reduced @ phi.T  # state-space process-noise covariance
        assert np.max(np.abs(a @ Q)) < MASS_RTOL * np.max(np.abs(a) @ np.abs(Q))
        # a^T Phi F = a^T Phi: the dynamics never change the total.
        g = a @ phi
        np.testing.assert_allclose(g @ F_reduced, g, rtol=0, atol=MASS_RTOL * np.max(np.abs(g)))


def test_source_term_frees_the_total_by_its_variance():
    """With a source/sink sd, the total's increment per step has variance
    source_sd^2 * sum_b area_b^2 * dt / day exactly; without it, zero."""
    grid = island_grid()
    model = AdvectionDiffusionModel(grid, velocity_model("constant"),
                                    Priors(source_sd=dist.HalfNormal(0.1)), n_modes=12)
    times = np.arange(4) * DAY * 0.5
    data = model.prepare(observations(), np.arange(5) * DAY)._replace(
        dts=jnp.asarray(np.diff(times)))
    source_sd = 0.03
    ssm = model.state_space({**params_for("constant"), "source_sd": source_sd}, data)
    basis = model.basis
    total = basis.cell_area @ basis.vectors  # total of the field Phi z is total @ z
    labels = connected_basins(grid)[1]
    areas = np.bincount(labels, weights=grid.wet_area)
    expected = source_sd**2 * np.sum(areas**2) * 0.5
    got = total @ np.asarray(ssm.process_cov) @ total
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # the source term is sampled only when its prior is given
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model.sample_parameters, 0)).get_trace()
    assert "source_sd" in trace
    plain = make_model("constant", 12)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(plain.sample_parameters, 0)).get_trace()
    assert "source_sd" not in trace


def test_reduced_smoothed_totals_constant_in_time():
    model = make_model("constant", N_REDUCED)
    basis = model.basis
    assert basis.size == N_REDUCED < model.grid.n_wet
    params = params_for("constant")
    data = model.prepare(observations(), UNIFORM_TIMES)
    ssm = model.state_space(params, data)
    variances = model.observation_variances(params, data)
    padded = kalman.KalmanObservations(data.values, data.operators, variances, data.valid)
    result = kalman.rts_smoother(ssm, padded)
    a, phi = basis.cell_area, basis.vectors
    smoothed = np.asarray(result.smoothed_means) @ phi.T @ a
    filtered = np.asarray(result.filtered_means) @ phi.T @ a
    assert np.max(np.abs(smoothed - smoothed[0])) < 1e-10 * np.abs(smoothed[0])
    # The filter learns about the total as data arrive: its totals do change.
    assert np.max(np.abs(filtered - filtered[0])) > 1e-6 * np.abs(filtered[0])
    np.testing.assert_allclose(filtered[-1], smoothed[-1], rtol=1e-12)


def assert_gradient_matches_finite_differences(model, kind, name):
    """d log-likelihood / d(diffusivity, ``name``) by JAX against central differences."""
    data = model.prepare(observations(), UNIFORM_TIMES)

    def log_likelihood(diffusivity, other):
        params = {**params_for(kind), "diffusivity": diffusivity, name: other}
        return model.likelihood(params, data).log_prob(data.values)

    value_and_grad = jax.jit(jax.value_and_grad(log_likelihood, argnums=(0, 1)))

    def value(*args):
        return float(value_and_grad(*args)[0])  # one compile for values and gradients

    x = np.array([params_for(kind)["diffusivity"], params_for(kind)[name]])
    grads = np.asarray(value_and_grad(*x)[1], dtype=float)
    for i in range(2):
        h = np.zeros(2)
        h[i] = 1e-4 * x[i]
        fd = (value(*(x + h)) - value(*(x - h))) / (2 * h[i])
        assert abs(grads[i]) > 0
        np.testing.assert_allclose(grads[i], fd, rtol=1e-5)


def test_likelihood_gradient_matches_finite_differences():
    assert_gradient_matches_finite_differences(make_model("constant"), "constant", "u")


def split_grid() -> Grid:
    """The 8 x 9 grid cut into two basins of unequal area by a meridional wall of land."""
    mask = np.ones((8, 9), dtype=bool)
    mask[:, 3] = False
    return Grid.regular(lon=(-30.0, -21.0), lat=(30.0, 38.0), resolution=1.0, mask=mask)


MEAN_LEVEL_CASES = [
    pytest.param(island_grid, id="one-basin"),
    pytest.param(split_grid, id="two-basins"),
]


@pytest.mark.parametrize("make_grid", MEAN_LEVEL_CASES)
def test_initial_mean_level_prior(make_grid):
    """The first map's mean level: prior mean the data mean, prior sd ``mean_sd``, per cell."""
    grid = make_grid()
    model = AdvectionDiffusionModel(grid, ConstantVelocity(), Priors(), n_modes=N_REDUCED)
    lon = np.array([-29.5, -22.5, -24.5])
    df = pd.DataFrame({"time": np.zeros(3), "lon": lon, "lat": [31.5, 33.5, 36.5],
                       "value": [1.0, 2.0, 4.0], "error": 0.1})
    data = model.prepare(Observations.from_dataframe(df), np.array([0.0, DAY]))
    ssm = model.state_space(params_for("constant"), data)
    basis = model.basis
    nb = basis.n_basins
    # Mean: the data mean in every wet cell.
    np.testing.assert_allclose(basis.expand(np.asarray(ssm.initial_mean)),
                               np.full(grid.n_wet, 7.0 / 3.0), rtol=1e-13)
    # Variance of the constant (mean-level) part of the first map, cell by cell.
    phi_constant = basis.vectors[:, :nb]
    p_constant = np.diag(np.asarray(ssm.initial_cov))[:nb]
    level_variance = phi_constant**2 @ p_constant
    np.testing.assert_allclose(level_variance, model.priors.mean_sd**2, rtol=1e-12)
