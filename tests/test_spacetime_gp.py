"""The exact space-time GP baseline of benchmarks/spacetime_gp.py.

(1) Its predictions equal the dense Gaussian conditional computed directly with NumPy from the
fitted hyperparameters; (2) on data drawn from a known GP it recovers the lengthscales and its
latent credible intervals are calibrated.
"""

import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
pytest.importorskip("gpjax", reason="the space-time GP baseline needs the 'gp' extra")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from spacetime_gp import EARTH_RADIUS_KM, fit_spacetime_gp  # noqa: E402

S3 = math.sqrt(3.0)


def matern32(r):
    return (1.0 + S3 * r) * np.exp(-S3 * r)


def covariance(params, time_kernel, s1, d1, s2, d2):
    """Prior covariance of f between points (s1, d1) and (s2, d2), from the params dict."""
    ds = np.sqrt(np.sum((s1[:, None, :] - s2[None, :, :]) ** 2, axis=-1))
    dt = np.abs(d1[:, None] - d2[None, :])
    rt = dt / params["lengthscale_time"]
    kt = matern32(rt) if time_kernel == "matern32" else np.exp(-rt)
    return params["variance"] * matern32(ds / params["lengthscale_space"]) * kt


def sphere_km(lon, lat):
    lon, lat = np.deg2rad(lon), np.deg2rad(lat)
    return EARTH_RADIUS_KM * np.stack(
        [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1
    )


@pytest.mark.parametrize("coords", ["cartesian", "lonlat"])
def test_predict_equals_dense_conditional(coords):
    rng = np.random.default_rng(7)
    n, m = 40, 25
    if coords == "cartesian":  # metres, float days, per-observation errors
        x, y = rng.uniform(0, 300e3, n + m), rng.uniform(0, 200e3, n + m)
        s = np.stack([x, y], axis=-1)
        days = rng.uniform(0, 20, n + m)
        t = days
        error = rng.uniform(0.1, 0.4, n)
    else:  # lon/lat degrees, datetime64, one fitted noise sd
        x, y = rng.uniform(-30, -20, n + m), rng.uniform(40, 48, n + m)
        s = sphere_km(x, y)
        days = rng.uniform(0, 20, n + m)
        t = np.datetime64("2020-03-01T00:00:00") + (days * 86400).astype("timedelta64[s]")
        days = (t - np.datetime64("2020-03-01T00:00:00")) / np.timedelta64(1, "D")
        error = None
    value = 3.0 + np.sin(s[:, 0] / s[:, 0].std()) + 0.3 * np.cos(days / 5) + 0.2 * rng.normal(
        size=n + m)
    obs, new = slice(0, n), slice(n, n + m)
    gp = fit_spacetime_gp(x[obs], y[obs], t[obs], value[obs], error, coords=coords, seed=3)
    p = gp.params

    K = covariance(p, gp.time_kernel, s[obs], days[obs], s[obs], days[obs])
    if error is not None:
        noise2 = (p["noise_scale"] * error) ** 2
    else:
        noise2 = np.full(n, p["noise_sd"] ** 2)
    K[np.diag_indices(n)] += noise2 + p["jitter"]
    Ks = covariance(p, gp.time_kernel, s[new], days[new], s[obs], days[obs])
    mean = p["mean"] + Ks @ np.linalg.solve(K, value[obs] - p["mean"])
    var = p["variance"] - np.einsum("ij,ji->i", Ks, np.linalg.solve(K, Ks.T))

    got_mean, got_sd = gp.predict(x[new], y[new], t[new])
    np.testing.assert_allclose(got_mean, mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got_sd, np.sqrt(var), rtol=0, atol=1e-8)
    # batching does not change anything; shapes follow the inputs
    b_mean, b_sd = gp.predict(x[new].reshape(5, 5), y[new].reshape(5, 5), t[new].reshape(5, 5),
                              batch=7)
    np.testing.assert_allclose(b_mean.ravel(), got_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b_sd.ravel(), got_sd, rtol=0, atol=1e-12)
    # predictive sd adds the observation noise
    if error is not None:
        e_new = np.full(m, 0.25)
        expected = np.sqrt(got_sd**2 + (p["noise_scale"] * e_new) ** 2)
        np.testing.assert_allclose(gp.predictive_sd(got_sd, e_new), expected, rtol=1e-14)
    else:
        expected = np.sqrt(got_sd**2 + p["noise_sd"] ** 2)
        np.testing.assert_allclose(gp.predictive_sd(got_sd, None), expected, rtol=1e-14)


def test_recovers_known_gp():
    truth = {"mean": 5.0, "variance": 2.0, "lengthscale_space": 40e3, "lengthscale_time": 6.0}
    rng = np.random.default_rng(20261128)
    n_obs, n_test = 500, 300
    n = n_obs + n_test
    s = rng.uniform(0.0, 200e3, (n, 2))
    days = rng.uniform(0.0, 30.0, n)
    K = covariance(truth, "matern32", s, days, s, days)
    K[np.diag_indices(n)] += 1e-9
    f = truth["mean"] + np.linalg.cholesky(K) @ rng.normal(size=n)
    error = rng.uniform(0.1, 0.3, n)
    value = f + error * rng.normal(size=n)
    obs, test = slice(0, n_obs), slice(n_obs, n)

    gp = fit_spacetime_gp(s[obs, 0], s[obs, 1], days[obs], value[obs], error[obs], seed=1)
    p = gp.params
    for key in ("lengthscale_space", "lengthscale_time"):
        assert 0.5 < p[key] / truth[key] < 2.0, (key, p[key], truth[key])
    assert 0.5 < p["noise_scale"] < 2.0
    mean, sd = gp.predict(s[test, 0], s[test, 1], days[test])
    coverage = np.mean(np.abs(f[test] - mean) <= 1.6448536269514722 * sd)
    assert 0.75 <= coverage <= 0.98, coverage
    rmse = np.sqrt(np.mean((f[test] - mean) ** 2))
    assert rmse < 0.5 * math.sqrt(truth["variance"])
