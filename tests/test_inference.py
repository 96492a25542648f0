"""``fit`` and ``Posterior`` on a small identical twin, against dense Gaussian algebra.

One short NUTS run (module fixture) feeds every test: the Rao-Blackwellised maps equal the
mixture of dense Gaussian conditionals of the stacked trajectory, the mixture quantiles solve
the mixture CDF, joint map samples and posterior-predictive draws have the right moments, the
pointwise log-likelihood sums to the dense marginal density, and the ArviZ export has every
group the issue asks for.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from scipy.special import ndtr

import tracerbayes as tb
from tracerbayes.exact.model import DAY, ModelData
from tracerbayes.io.netcdf import read_netcdf
from tracerbayes.twin.experiment import gyre_velocity

N_MODES = 12
TIMES = np.arange(5) * DAY
TRUE = {"diffusivity": 400.0, "velocity_scale": 1.0, "noise_sd": 0.1,
        "noise_lengthscale_km": 40.0, "initial_sd": 1.0, "initial_lengthscale_km": 50.0,
        "error_scale": 1.0}


def small_problem(seed=0):
    """A 10 x 10 basin (10 km cells) with an island; truth drawn from the model itself."""
    mask = np.ones((10, 10), dtype=bool)
    mask[4:6, 3:5] = False
    grid = tb.Grid.cartesian(x=(0.0, 1e5), y=(0.0, 1e5), resolution=1e4, mask=mask)
    velocity = tb.GivenVelocity(gyre_velocity(grid, max_speed=0.1),
                                scale_prior=dist.LogNormal(0.0, 0.3))
    priors = tb.Priors(noise_sd=dist.HalfNormal(0.3), initial_sd=dist.HalfNormal(2.0),
                       mean_sd=5.0)
    model = tb.AdvectionDiffusionModel(grid, velocity, priors, n_modes=N_MODES)
    data = ModelData(None, None, None, None, jnp.asarray(np.diff(TIMES)), 10.0)
    ssm = model.state_space({k: jnp.asarray(v) for k, v in TRUE.items()}, data)
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.asarray(ssm.initial_mean), np.asarray(ssm.initial_cov))
    states = []
    for _ in TIMES:
        states.append(model.basis.expand(z))
        z = np.asarray(ssm.transition) @ z + rng.normal(size=N_MODES) * np.sqrt(
            np.diagonal(np.asarray(ssm.process_cov)))
    rows = []
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    wet_y, wet_x = yy[grid.mask], xx[grid.mask]  # observations at wet cell centres
    for k, t in enumerate(TIMES):
        pick = rng.choice(grid.n_wet, size=8, replace=False)
        for i in pick:
            rows.append({"time": t, "x": wet_x[i], "y": wet_y[i],
                         "value": states[k][i] + 0.1 * rng.normal(), "error": 0.1})
    obs = tb.Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    return model, obs, np.asarray(states)


@pytest.fixture(scope="module")
def fitted():
    model, obs, states = small_problem()
    with warnings.catch_warnings():  # a short run: low ESS is expected and reported
        warnings.simplefilter("ignore", tb.SamplingWarning)
        post = tb.fit(model, obs, TIMES, tb.NUTS(num_warmup=150, num_samples=100,
                                                 num_chains=2), seed=3, progress=False)
    return model, obs, states, post


def dense_conditional(model, params, data):
    """Mean and covariance of the stacked trajectory z_{0:T-1} given y, by dense algebra."""
    ssm = model.state_space(params, data)
    F, Q = np.asarray(ssm.transition), np.asarray(ssm.process_cov)
    m, P = np.asarray(ssm.initial_mean), np.asarray(ssm.initial_cov)
    T, K = len(TIMES), N_MODES
    means, covs = [m], [P]
    for _ in range(T - 1):
        means.append(F @ means[-1])
        covs.append(F @ covs[-1] @ F.T + Q)
    mean = np.concatenate(means)
    cov = np.zeros((T * K, T * K))
    for j in range(T):
        for i in range(j + 1):
            block = np.linalg.matrix_power(F, j - i) @ covs[i]  # Cov(z_j, z_i)
            cov[j * K:(j + 1) * K, i * K:(i + 1) * K] = block
            cov[i * K:(i + 1) * K, j * K:(j + 1) * K] = block.T
    valid = np.asarray(data.valid)
    H = np.zeros((valid.sum(), T * K))
    rows = np.argwhere(valid)
    for r, (k, i) in enumerate(rows):
        H[r, k * K:(k + 1) * K] = np.asarray(data.operators)[k, i]
    y = np.asarray(data.values)[valid]
    R = np.diag(np.asarray(model.observation_variances(params, data))[valid])
    S = H @ cov @ H.T + R
    gain = np.linalg.solve(S, H @ cov).T
    post_mean = mean + gain @ (y - H @ mean)
    post_cov = cov - gain @ H @ cov
    log_marginal = stats.multivariate_normal(H @ mean, S).logpdf(y)
    return post_mean.reshape(T, K), post_cov, log_marginal, (y, H @ mean, S)


def thinned(post, n):
    flat = post.flat_samples()
    total = next(iter(flat.values())).shape[0]
    index = np.linspace(0, total - 1, n).round().astype(int)
    return [{k: jnp.asarray(v[i]) for k, v in flat.items()} for i in index]


def test_maps_are_the_mixture_of_dense_conditionals(fitted):
    model, _, _, post = fitted
    maps = post.maps(n_draws=3)
    phi = model.basis.vectors
    T, K = len(TIMES), N_MODES
    means, variances = [], []
    for params in thinned(post, 3):
        z_mean, z_cov, *_ = dense_conditional(model, params, post.data)
        means.append(z_mean @ phi.T)
        variances.append(np.stack([np.einsum("nk,kl,nl->n", phi,
                                             z_cov[k * K:(k + 1) * K, k * K:(k + 1) * K], phi)
                                   for k in range(T)]))
    means, variances = np.asarray(means), np.asarray(variances)
    # fit works on the departures from the data mean; the maps add it back
    assert post.offset == pytest.approx(float(np.mean(post.obs.value)), rel=1e-12)
    mean = means.mean(axis=0) + post.offset
    sd = np.sqrt(variances.mean(axis=0) + means.var(axis=0))
    grid = model.grid
    np.testing.assert_allclose(maps["mean"].values[:, grid.mask], mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(maps["sd"].values[:, grid.mask], sd, rtol=1e-7)
    assert np.all(np.isnan(maps["mean"].values[:, ~grid.mask]))
    # quantiles solve the mixture CDF
    for p in (0.05, 0.5, 0.95):
        q = maps["quantiles"].sel(quantile=p).values[:, grid.mask]
        cdf = ndtr((q[None] - post.offset - means) / np.sqrt(variances)).mean(axis=0)
        np.testing.assert_allclose(cdf, p, atol=1e-9)


def test_pointwise_log_likelihood_sums_to_dense_marginal(fitted):
    model, _, _, post = fitted
    terms = post.pointwise_log_likelihood(kind="sequential")  # (chain, draw, n_obs)
    assert terms.shape == (2, 100, int(np.asarray(post.data.valid).sum()))
    flat = terms.reshape(-1, terms.shape[-1])
    index = np.linspace(0, flat.shape[0] - 1, 2).round().astype(int)
    for params, i in zip(thinned(post, 2), index, strict=True):
        _, _, log_marginal, _ = dense_conditional(model, params, post.data)
        np.testing.assert_allclose(flat[i].sum(), log_marginal, rtol=1e-9)


def test_loo_terms_are_dense_leave_one_out_conditionals(fitted):
    """log p(y_i | y_{-i}, theta) from the smoother's cavity equals the dense Gaussian
    conditional (Bürkner, Gabry & Vehtari 2021, Eq. (8)-(9))."""
    model, _, _, post = fitted
    terms = post.pointwise_log_likelihood(kind="loo").reshape(-1, len(post.obs))
    index = np.linspace(0, terms.shape[0] - 1, 2).round().astype(int)
    for params, i in zip(thinned(post, 2), index, strict=True):
        *_, (y, mu, S) = dense_conditional(model, params, post.data)
        precision = np.linalg.inv(S)
        g = precision @ (y - mu)
        cond_mean = y - g / np.diagonal(precision)
        cond_var = 1.0 / np.diagonal(precision)
        expected = stats.norm(cond_mean, np.sqrt(cond_var)).logpdf(y)
        np.testing.assert_allclose(terms[i], expected, rtol=1e-8, atol=1e-9)


def test_inference_data_groups(fitted):
    _, obs, _, post = fitted
    idata = post.to_inference_data()
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data",
                  "posterior_predictive"):
        assert group in idata.groups(), group
    assert idata.posterior["diffusivity"].shape == (2, 100)
    assert idata.posterior_predictive["y"].shape == (2, 100, len(obs))
    np.testing.assert_array_equal(idata.observed_data["y"].values.shape, (len(obs),))
    assert idata.attrs["inference_method"] == "nuts"


def test_posterior_predictive_moments(fitted):
    """y_rep has mean H E[c | y] and variance Var(H c | y) + R: checked by Monte Carlo."""
    model, _, _, post = fitted
    draws = thinned(post, 1)[0]
    # one parameter draw repeated: the predictive is then exactly Gaussian
    single = tb.Posterior(model, post.obs, post.times, post.data,
                          {k: np.broadcast_to(np.asarray(v), (1, 2000) + np.shape(v))
                           for k, v in draws.items()}, {}, "nuts", {"seed": 0})
    reps = single.posterior_predictive(jax.random.key(7))[0]  # (2000, n_obs)
    z_mean, z_cov, *_ = dense_conditional(model, draws, post.data)
    valid = np.asarray(post.data.valid)
    T, K = len(TIMES), N_MODES
    H = np.zeros((valid.sum(), T * K))
    for r, (k, i) in enumerate(np.argwhere(valid)):
        H[r, k * K:(k + 1) * K] = np.asarray(post.data.operators)[k, i]
    mean = H @ z_mean.ravel()
    var = (np.diagonal(H @ z_cov @ H.T)
           + np.asarray(model.observation_variances(draws, post.data))[valid])
    z = (reps.mean(axis=0) - mean) / np.sqrt(var / reps.shape[0])
    assert np.max(np.abs(z)) < 4.5  # 40 observations, Monte Carlo error only
    ratio = reps.var(axis=0) / var
    assert np.all(np.abs(ratio - 1) < 0.2)


def test_sample_maps_moments_match_maps(fitted):
    model, _, _, post = fitted
    samples = post.sample_maps(400, jax.random.key(11)).values  # (400, T, ny, nx)
    maps = post.maps(n_draws=200)
    mask = model.grid.mask
    mean, sd = maps["mean"].values[:, mask], maps["sd"].values[:, mask]
    sample = samples[:, :, mask]
    z = (sample.mean(axis=0) - mean) / (sd / np.sqrt(400))
    assert np.mean(np.abs(z) < 3.5) > 0.99
    np.testing.assert_allclose(sample.std(axis=0).mean(), sd.mean(), rtol=0.1)


def test_parameters_recovered(fitted):
    _, _, _, post = fitted
    for name in ("diffusivity", "velocity_scale", "error_scale"):
        lo, hi = np.quantile(post.samples[name], [0.01, 0.99])
        assert lo <= TRUE[name] <= hi, (name, lo, hi)


def test_diagnostics_report_disagreeing_chains(fitted):
    model, obs, _, post = fitted
    rng = np.random.default_rng(0)
    bad = {"diffusivity": np.stack([rng.normal(100, 1, 300), rng.normal(200, 1, 300)])}
    stats_ = {"diverging": np.zeros((2, 300), bool)}
    stats_["diverging"][0, :3] = True
    messages = tb.Posterior(model, obs, TIMES, post.data, bad, stats_, "nuts", {}
                            ).check_diagnostics()
    text = " ".join(messages)
    assert "3 divergent transitions" in text and "target_accept" in text
    assert "R-hat" in text and "run longer" in text


@pytest.mark.slow
def test_parallel_and_vectorised_chains_agree(tmp_path):
    """Same posterior with chains on two (host) devices in parallel and vectorised."""
    script = tmp_path / "chains.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_inference import small_problem, TIMES
        import tracerbayes as tb
        model, obs, _ = small_problem()
        out = {{}}
        for method in ("parallel", "vectorized"):
            post = tb.fit(model, obs, TIMES, "nuts", num_warmup=150, num_samples=300,
                          num_chains=2, seed=5, chain_method=method, progress=False)
            for k, v in post.samples.items():
                out[f"{{method}}/{{k}}"] = v
        np.savez({str(tmp_path / "draws.npz")!r}, **out)
    """))
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
    draws = np.load(tmp_path / "draws.npz")
    for name in TRUE:
        a, b = draws[f"parallel/{name}"], draws[f"vectorized/{name}"]
        # NumPyro draws different streams for the two methods: compare the distributions,
        # each mean within its Monte Carlo standard error (from the effective sample size)
        se = np.sqrt(a.var() / float(az.ess(a)) + b.var() / float(az.ess(b)))
        assert abs(a.mean() - b.mean()) < 4 * se, (name, a.mean(), b.mean(), se)
        assert 0.6 < a.std() / b.std() < 1.6, (name, a.std(), b.std())


def test_to_netcdf_round_trip(fitted, tmp_path):
    _, _, _, post = fitted
    path = tmp_path / "posterior.nc"
    written = post.to_netcdf(path, units="degC", n_draws=5, title="twin")
    back = read_netcdf(path)
    xr.testing.assert_identical(back, written)
    maps = post.maps(n_draws=5)
    np.testing.assert_array_equal(back["mean"].values, maps["mean"].values)
    np.testing.assert_array_equal(back["quantiles"].values, maps["quantiles"].values)
    assert back.attrs["method"] == "nuts" and "posterior_diffusivity" in back.attrs


def test_unknown_method_is_rejected(fitted):
    model, obs, _, _ = fitted
    with pytest.raises(ValueError, match=r"method='bogus'; choose one of \['auto', 'nuts', "
                                         r"'laplace', 'enkf', 'etkf', 'letkf', 'eki'\]"):
        tb.fit(model, obs, TIMES, method="bogus")
