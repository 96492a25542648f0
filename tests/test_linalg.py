"""Fixed-work matrix exponential against SciPy's (Higham 2005 / Al-Mohy & Higham 2009)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from tracerbayes.physics.linalg import MAX_SQUARINGS, THETA_13, expm


@pytest.mark.parametrize("norm", [1e-6, 0.3, 4.0, 60.0, 5000.0])
def test_expm_matches_scipy(rng, norm):
    a = rng.normal(size=(30, 30))
    a *= norm / np.abs(a).sum(axis=0).max()
    a -= 0.5 * norm * np.eye(30)  # keep exp(a) well scaled at large norms
    ref = scipy.linalg.expm(a)
    got = np.asarray(expm(jnp.asarray(a)))
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref)) * max(1.0, norm)


def test_expm_batched_equals_single(rng):
    a = rng.normal(size=(3, 12, 12)) * np.array([0.1, 2.0, 40.0])[:, None, None]
    batched = np.asarray(jax.vmap(expm)(jnp.asarray(a)))
    stacked = np.asarray(expm(jnp.asarray(a)))
    for i in range(3):
        single = np.asarray(expm(jnp.asarray(a[i])))
        atol = 1e-13 * np.abs(single).max()
        np.testing.assert_allclose(batched[i], single, rtol=1e-13, atol=atol)
        np.testing.assert_allclose(stacked[i], single, rtol=1e-13, atol=atol)


def test_expm_gradient_matches_jax(rng):
    a = jnp.asarray(rng.normal(size=(10, 10)) * 0.7)
    weights = jnp.asarray(rng.normal(size=(10, 10)))
    ours = jax.grad(lambda x: jnp.sum(weights * expm(x)))(a)
    ref = jax.grad(lambda x: jnp.sum(weights * jax.scipy.linalg.expm(x)))(a)
    np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())


def test_expm_too_large_gives_nan():
    a = jnp.eye(4) * THETA_13 * 2.0 ** (MAX_SQUARINGS + 2)
    assert np.all(np.isnan(np.asarray(expm(a))))
