"""The Laplace fit (tracerbayes.exact.laplace) and method='auto'.

* The Gaussian's covariance is the inverse Hessian of the potential energy at the mode: the
  Hessian against central finite differences of the gradient.
* The draws: their unconstrained mean and covariance against the mode and the inverse Hessian
  (sampling tolerance).
* The basis of the maps: the Weyl-law count of modes against the cumulative spectral
  variance of the complete Neumann basis of a rectangle.
* method='auto' picks NUTS for a small problem and Laplace for a large one, and says why.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy, unconstrain_fn

import tracerbayes as tb
from tracerbayes.exact.laplace import _hessian, fit_laplace
from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
from tracerbayes.exact.priors import Smoothness, modes_needed, resolved_fraction, spectral_variances
from tracerbayes.fitting import choose_method
from tracerbayes.grid.basis import spectral_basis
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0


def problem():
    grid = Grid.cartesian(x=(0.0, 60e3), y=(0.0, 50e3), resolution=10e3,
                          mask=np.ones((5, 6), bool))
    rng = np.random.default_rng(1)
    rows = [{"time": d * DAY, "x": rng.uniform(0, 60e3), "y": rng.uniform(0, 50e3),
             "value": 3 + np.sin(d / 2) + 0.3 * rng.normal(), "error": 0.2}
            for d in range(5) for _ in range(8)]
    obs = Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.05), Priors.for_observations(obs),
                                    n_modes=8)
    return model, obs, np.arange(5) * DAY


def test_laplace_draws_come_from_the_inverse_hessian_at_the_mode():
    model, obs, times = problem()
    post = fit_laplace(model, obs, times, draws=1000, map_modes=8, progress=False)
    data = model.prepare(obs, times)

    def numpyro_model():
        model(data)

    flat_samples = post.flat_samples()
    Z = np.asarray(jax.vmap(lambda s: ravel_pytree(unconstrain_fn(
        model.sample_parameters, (), {}, s))[0])(
        {k: jnp.asarray(v) for k, v in flat_samples.items()}))
    centre = {k: jnp.asarray(np.median(v, axis=0)) for k, v in flat_samples.items()}
    flat, unravel = ravel_pytree(unconstrain_fn(numpyro_model, (), {}, centre))

    def energy(x):
        return potential_energy(numpyro_model, (), {}, unravel(x))

    mean = Z.mean(axis=0)
    grad = jax.grad(energy)
    # the Hessian against central differences of the gradient
    H = _hessian(energy, jnp.asarray(mean))
    # the draws' mean is the mode (a Newton step from it moves less than 0.1 sd)
    step = np.linalg.solve(H, np.asarray(grad(jnp.asarray(mean))))
    assert np.max(np.abs(step) / np.sqrt(np.diag(np.linalg.inv(H)))) < 0.1
    mode = mean
    h = 1e-5
    fd = np.stack([(np.asarray(grad(jnp.asarray(mode + h * e))) -
                    np.asarray(grad(jnp.asarray(mode - h * e)))) / (2 * h)
                   for e in np.eye(mode.size)], axis=1)
    # entries span ~10 orders (max ~2.5e5 here): the differences' rounding error is absolute,
    # about eps * |gradient terms| / h, so small entries get a tolerance tied to the largest
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-10 * np.abs(H).max())
    cov = np.linalg.inv(H)
    sample = np.cov(Z.T)
    sd = np.sqrt(np.diag(cov))
    assert np.max(np.abs(sample - cov) / np.outer(sd, sd)) < 0.2  # 1000 draws: 4.5 s.e.
    assert post.method == "laplace" and post.settings["laplace_gaussian"]
    maps = post.maps(n_draws=20)
    assert np.isfinite(maps["mean"].values).all() and (maps["sd"].values > 0).all()
    assert post.check_diagnostics() == []


@pytest.mark.parametrize("smoothness", [Smoothness.THREE_HALVES, Smoothness.GAUSSIAN])
def test_weyl_mode_count_against_the_complete_basis(smoothness):
    """The Weyl-law estimates against the exact cumulative spectral variance of a 60 x 40
    rectangle's complete basis: fractions within 0.06, counts within 40%."""
    grid = Grid.cartesian(x=(0, 600e3), y=(0, 400e3), resolution=10e3,
                          mask=np.ones((40, 60), bool))
    basis = spectral_basis(grid, grid.n_wet)
    area = float(grid.wet_area.sum())
    for length in (40e3, 80e3):
        s = np.asarray(spectral_variances(basis, smoothness, length, 1.0))
        cumulative = np.cumsum(s) / s.sum()
        for K in (20, 100, 400):
            assert abs(resolved_fraction(K, area, length, smoothness) - cumulative[K - 1]) < 0.07
        exact = int(np.searchsorted(cumulative, 0.95)) + 1
        assert 0.6 * exact <= modes_needed(area, length, smoothness) <= 1.4 * exact


def test_auto_chooses_by_estimated_work_and_says_why():
    model, obs, times = problem()
    method, reason = choose_method(model, obs, times)
    assert method == "nuts" and "within the budget" in reason
    big = np.arange(30) * DAY
    large = AdvectionDiffusionModel(model.grid, model.velocity, model.priors, n_modes=30)
    large.n_modes = 300  # only the size enters the estimate
    method, reason = choose_method(large, obs, big)
    assert method == "laplace" and reason.startswith("300 modes x 30 times")


def test_fit_laplace_through_fit_with_holdout():
    model, obs, times = problem()
    post = tb.fit(model, obs, times, method="laplace", map_draws=10, map_modes=12,
                  progress=False, holdout=0.2)
    assert post.model.n_modes == 12 and post.settings["fit_modes"] == 8
    assert post.num_draws == 10 and post.validation["n"] == 8
    assert np.isfinite(post.validation["crps"])


def test_kelvin_and_degc_give_the_same_map():
    """fit works on the departures from the data mean: values + 273.15 give the same map
    plus 273.15 (mean, quantiles), the same sd and the same parameters, to 1e-6 relative."""
    model, obs, times = problem()
    kelvin = obs.shifted(273.15)
    posts = [tb.fit(model, o, times, method="laplace", map_draws=5, map_modes=10,
                    progress=False) for o in (obs, kelvin)]
    assert posts[1].offset == pytest.approx(posts[0].offset + 273.15, rel=1e-12)
    a, b = (p.maps(n_draws=5) for p in posts)
    np.testing.assert_allclose(b["mean"].values - 273.15, a["mean"].values, rtol=1e-6)
    np.testing.assert_allclose(b["sd"].values, a["sd"].values, rtol=1e-6)
    np.testing.assert_allclose(b["quantiles"].values - 273.15, a["quantiles"].values, rtol=1e-6)
    for name, draws in posts[0].samples.items():
        np.testing.assert_allclose(posts[1].samples[name], draws, rtol=1e-6)


def test_priors_relative_to_the_grid_scale():
    coarse = Grid.regular(lon=(-80.0, 0.0), lat=(10.0, 60.0), resolution=2.0,
                          mask=np.ones((25, 40), bool))
    model, obs, _ = problem()
    fine = Priors.for_observations(obs, model.grid)  # 10 km cells, 60 x 50 km: defaults
    assert float(fine.noise_lengthscale_km.icdf(0.5)) == pytest.approx(150.0)
    assert float(fine.initial_lengthscale_km.icdf(0.5)) == pytest.approx(200.0)
    wide = Priors.for_observations(obs, coarse)
    area = np.asarray(coarse.wet_area)
    scale = max(3 * np.sqrt(area.mean()), np.sqrt(area.sum()) / 10) / 1e3
    assert scale > 500
    assert float(wide.noise_lengthscale_km.icdf(0.5)) == pytest.approx(scale)
    assert float(wide.initial_lengthscale_km.icdf(0.5)) == pytest.approx(4 * scale / 3)


def test_diagnostics_are_the_fitted_models_when_the_maps_use_a_finer_basis():
    """Maps on 20 modes, parameters fitted on 8: the sequential log-likelihood terms of each
    draw sum to the 8-mode model's marginal log-likelihood (1e-10), not the 20-mode one's,
    and the posterior predictive draws line up with the observations."""
    model, obs, times = problem()
    post = fit_laplace(model, obs, times, draws=3, map_modes=20, progress=False)
    assert post.model.n_modes == 20 and post.fit_model is model
    data = model.prepare(obs, times)
    fine_data = post.model.prepare(obs, times)
    terms = post.pointwise_log_likelihood(kind="sequential")[0]  # (draws, n_obs)
    flat = post.flat_samples()
    for s in range(terms.shape[0]):
        params = {k: jnp.asarray(v[s]) for k, v in flat.items()}
        coarse = float(model.likelihood(params, data).log_prob(data.values))
        fine = float(post.model.likelihood(params, fine_data).log_prob(fine_data.values))
        np.testing.assert_allclose(terms[s].sum(), coarse, rtol=1e-10)
        assert abs(fine - coarse) > 1e-6 * abs(coarse)  # the map basis is another model
    reps = post.posterior_predictive(jax.random.key(0))
    assert reps.shape == (1, 3, len(obs.value)) and np.all(np.isfinite(reps))
    with pytest.raises(ValueError, match="fit_model and fit_data together"):
        type(post)(post.model, obs, times, fine_data, post.samples, {}, "laplace", {},
                   fit_model=model)
