"""Lorenz-96: the model, and the Sakov & Oke (2008) analysis RMSEs reproduced."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracerbayes.reference import lorenz96 as l96


def test_tendency_matches_definition(rng):
    x = rng.standard_normal(40)
    expected = [(x[(i + 1) % 40] - x[i - 2]) * x[i - 1] - x[i] + 8.0 for i in range(40)]
    np.testing.assert_allclose(l96.tendency(jnp.asarray(x)), expected, rtol=1e-14)


def test_rk4_is_fourth_order(rng):
    """Halving dt divides the one-step-over-0.2 error by about 2^4."""
    x = jnp.asarray(8.0 + rng.standard_normal(40))

    def integrate(steps):
        return jax.lax.fori_loop(0, steps, lambda _, z: l96.rk4_step(z, 0.2 / steps), x)

    reference = integrate(512)
    errors = [float(jnp.max(jnp.abs(integrate(s) - reference))) for s in (4, 8, 16)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 3.7) & (orders < 4.3)), orders


def test_sakov2008_record():
    assert l96.SAKOV2008["letkf"].gc_half_width == pytest.approx(np.sqrt(10 / 3) * 4)
    assert l96.SAKOV2008["etkf"].gc_half_width == np.inf


@pytest.mark.parametrize("name", ["etkf", "letkf"])
def test_sakov2008_analysis_rmse(key, name):
    setup = l96.SAKOV2008[name]
    result = l96.run_sakov2008(key, setup, n_cycles=1000, burn_in=500)
    rmse = result.rmse
    print(f"{name}: analysis RMSE {rmse:.4f}, spread {result.spread:.4f} "
          f"(published {setup.published_rmse}, bound {setup.rmse_bound})")
    assert rmse < setup.rmse_bound


@pytest.mark.slow
@pytest.mark.parametrize("name", ["etkf", "letkf", "enkf"])
def test_sakov2008_analysis_rmse_long(key, name):
    setup = l96.SAKOV2008[name]
    rmse = l96.run_sakov2008(key, setup, n_cycles=5000, burn_in=500).rmse
    print(f"{name}: analysis RMSE {rmse:.4f} over 5000 cycles (bound {setup.rmse_bound})")
    assert rmse < setup.rmse_bound
