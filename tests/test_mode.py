"""Optimised NUTS starting points (tracerbayes.exact.mode) against closed-form modes."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.optimize import brentq

from tracerbayes.exact.mode import constrained, optimised_starts

Y = np.array([0.3, -1.2, 0.8, 2.1, -0.4, 1.5, -0.9])


def scale_model():
    s = numpyro.sample("s", dist.LogNormal(0.2, 0.7))
    numpyro.sample("y", dist.Normal(0.0, s), obs=Y)


def test_every_start_reaches_the_closed_form_mode_of_the_unconstrained_density():
    """z = log s has density Normal(0.2, 0.7) a priori; the posterior's unconstrained mode
    solves -(z - 0.2) / 0.7^2 - n + S exp(-2 z) = 0 with S = sum y^2."""
    n, S = Y.size, float(np.sum(Y**2))
    z_star = brentq(lambda z: -(z - 0.2) / 0.49 - n + S * np.exp(-2 * z), -5.0, 5.0,
                    xtol=1e-14)
    starts = optimised_starts(jax.random.key(0), scale_model, 4)
    assert starts.optimised.all()
    np.testing.assert_allclose(starts.params["s"], z_star, atol=1e-6)
    assert constrained(scale_model, {"s": starts.params["s"][0]})["s"] == pytest.approx(
        np.exp(z_star), rel=1e-6)


def test_starts_come_from_different_prior_draws_and_end_no_worse():
    def bimodal():
        x = numpyro.sample("x", dist.Normal(0.0, 3.0))
        numpyro.factor("two_wells", -((x**2 - 4.0) ** 2))

    starts = optimised_starts(jax.random.key(1), bimodal, 8)
    ends = np.sort(np.round(starts.params["x"], 3))
    # both wells are found from different starts (near -2 and +2)
    assert ends.min() < -1.5 and ends.max() > 1.5
    with pytest.raises(ValueError, match="n_starts must be >= 1"):
        optimised_starts(jax.random.key(1), bimodal, 0)


def test_posterior_pushed_past_a_prior_edge_is_reported():
    from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
    from tracerbayes.grid.core import Grid
    from tracerbayes.posterior.exact import prior_edge_problems

    grid = Grid.cartesian(x=(0.0, 50e3), y=(0.0, 40e3), resolution=10e3,
                          mask=np.ones((4, 5), bool))
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=6)
    rng = np.random.default_rng(0)
    samples = {"diffusivity": np.exp(rng.normal(np.log(3e4), 0.1, (2, 50))),  # 99.9%: 6.6e3
               "error_scale": np.exp(rng.normal(0.0, 0.1, (2, 50))),
               "u": rng.normal(0.0, 0.01, (2, 50))}
    (problem,) = prior_edge_problems(model, samples)
    upper = float(Priors().diffusivity.icdf(0.999))
    median = np.median(samples["diffusivity"])
    assert problem.startswith(f"diffusivity: posterior median {median:.4g} is above its "
                              f"prior's upper 0.1% quantile ({upper:.4g})")
    samples["diffusivity"] = np.full((2, 50), 300.0)
    assert prior_edge_problems(model, samples) == []


def test_ensemble_parameters_auto_are_the_exact_models_posterior_mode():
    """parameters='auto': the constrained point where the exact reduced model's potential
    energy is stationary (zero gradient in the unconstrained space), below the energy at
    the prior medians."""
    import pandas as pd
    from numpyro.infer.util import potential_energy, unconstrain_fn

    from tracerbayes.ensemble.fit import mode_parameters, point_parameters
    from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
    from tracerbayes.grid.core import Grid
    from tracerbayes.observations.core import Observations

    grid = Grid.cartesian(x=(0.0, 60e3), y=(0.0, 50e3), resolution=10e3,
                          mask=np.ones((5, 6), bool))
    rng = np.random.default_rng(1)
    rows = [{"time": d * 86400.0, "x": rng.uniform(0, 60e3), "y": rng.uniform(0, 50e3),
             "value": 3 + np.sin(d / 2) + 0.3 * rng.normal(), "error": 0.2}
            for d in range(5) for _ in range(6)]
    obs = Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    times = np.arange(5) * 86400.0
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.05), Priors.for_observations(obs),
                                    n_modes=8)
    found = mode_parameters(model, obs, times, progress=False)
    data = model.prepare(obs, times)

    def numpyro_model():
        model(data)

    z = unconstrain_fn(numpyro_model, (), {}, {k: jnp.asarray(v) for k, v in found.items()})

    def energy(z):
        return potential_energy(numpyro_model, (), {}, z)

    grads = jax.grad(energy)(z)
    assert max(float(jnp.max(jnp.abs(g))) for g in grads.values()) < 1e-4
    medians = point_parameters(model)
    z0 = unconstrain_fn(numpyro_model, (), {}, {k: jnp.asarray(v) for k, v in medians.items()})
    assert float(energy(z)) < float(energy(z0))
