"""The one ensemble engine: its filter and smoother front ends against it and a dense Kalman
reference.

``run_cycle`` is the engine without a smoothing buffer, ``ensemble_smoother`` the engine with
a global ETKF transform and a lag, and ``smooth_window`` the engine as ``fit`` drives it: the
front ends must agree with each other where their methods coincide, and the filter must equal
the Kalman filter on a linear model where the ensemble's moments are exact.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracerbayes import ensemble as ens
from tracerbayes.ensemble.window import GlobalUpdate, smooth_window
from tracerbayes.exact import kalman

ATOL = 1e-12


def exact_ensemble(rng, mean, cov, N):
    """An ensemble (N, n) whose sample mean and covariance equal ``mean`` and ``cov``."""
    Z = rng.standard_normal((N, mean.size))
    Q, _ = np.linalg.qr(Z - Z.mean(axis=0))  # orthonormal columns, orthogonal to 1
    return mean + np.sqrt(N - 1.0) * Q @ np.linalg.cholesky(cov).T


def linear_problem(rng, n=4, m=3, T=8):
    """A linear model with model noise and observations with some padding (invalid rows)."""
    F = 0.95 * np.linalg.qr(rng.standard_normal((n, n)))[0]
    valid = rng.uniform(size=(T, m)) < 0.8
    obs = ens.CycleObservations(np.where(valid, rng.standard_normal((T, m)), np.nan),
                                np.where(valid, 0.6, -1.0), valid,
                                rng.standard_normal((T, m, n)))

    def transition(k, E):
        return E @ F.T + 0.1 * jax.random.normal(k, E.shape)

    return F, obs, transition


def test_filter_is_the_window_engine_without_a_buffer(rng, key):
    """run_cycle with the ETKF analysis gives smooth_window's filter (lag 0, global ETKF):
    the same members, means, spreads, innovation statistics and member totals."""
    _, obs, transition = linear_problem(rng)
    E0 = rng.standard_normal((6, 4))
    area = rng.uniform(1.0, 2.0, 4)

    def inflation(k, E):
        return ens.multiplicative(E, 1.1)

    cycle = ens.run_cycle(key, transition, E0, obs, ens.etkf_analysis(), inflation=inflation,
                          cell_area=area, store_ensembles=True, progress=False)
    window = smooth_window(key, transition, E0, obs, GlobalUpdate("etkf"), lag=0,
                           inflation=inflation, cell_area=area, progress=False)
    pairs = {"ensembles": "smoothed", "analysis_mean": "filtered_mean",
             "analysis_spread": "filtered_spread", "innovation_mean": "innovation_mean",
             "innovation_rmse": "innovation_rmse", "innovation_spread": "innovation_spread",
             "analysis_rmse_obs": "analysis_rmse_obs", "member_totals": "member_totals",
             "forecast_totals": "forecast_totals"}
    for mine, theirs in pairs.items():
        np.testing.assert_allclose(getattr(cycle, mine), getattr(window, theirs), rtol=0,
                                   atol=ATOL, err_msg=mine)
    np.testing.assert_allclose(cycle.final, window.smoothed[-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(cycle.forecast_spread**2, axis=1)),
                               window.forecast_spread, rtol=1e-12)


@pytest.mark.parametrize("lag", [None, 0, 2, 50])
def test_smoother_is_the_window_engine_with_a_global_etkf_update(rng, key, lag):
    """ensemble_smoother equals smooth_window with the global ETKF update and the same lag
    (a lag longer than the window is the whole window)."""
    _, obs, transition = linear_problem(rng)
    E0 = rng.standard_normal((6, 4))
    out = ens.ensemble_smoother(key, transition, E0, obs, lag=lag, forecast_first=False)
    window = smooth_window(key, transition, E0, obs, GlobalUpdate("etkf"), lag=lag,
                           forecast_first=False, progress=False)
    np.testing.assert_allclose(out.smoothed, window.smoothed, rtol=0, atol=ATOL)
    np.testing.assert_allclose(out.filtered.mean(1), window.filtered_mean, rtol=0, atol=ATOL)
    whole = ens.ensemble_smoother(key, transition, E0, obs, forecast_first=False)
    if lag == 0:
        np.testing.assert_allclose(out.smoothed, whole.filtered, rtol=0, atol=ATOL)
    elif lag != 2:
        np.testing.assert_allclose(out.smoothed, whole.smoothed, rtol=0, atol=ATOL)


def test_filter_equals_kalman_filter_with_exact_moments(rng, key):
    """Linear model, no model noise, exact initial moments: the ETKF filter's analysis means
    and covariances are the Kalman filter's, at every time, padded observations included."""
    n, N = 4, 7
    F, obs, _ = linear_problem(rng, n=n)
    P0 = np.diag([1.0, 2.0, 0.5, 1.5])
    ssm = kalman.LinearGaussianSSM(jnp.zeros(n), jnp.asarray(P0), jnp.asarray(F),
                                   jnp.zeros((n, n)))
    ref = kalman.kalman_filter(ssm, kalman.KalmanObservations(
        np.nan_to_num(obs.values), obs.operators, np.where(obs.valid, obs.sd, 1.0) ** 2,
        obs.valid))
    E0 = exact_ensemble(rng, np.zeros(n), P0, N)
    out = ens.run_cycle(key, lambda k, E: E @ F.T, E0, obs, ens.etkf_analysis(rotate=True),
                        forecast_first=False, store_ensembles=True, progress=False)
    np.testing.assert_allclose(out.analysis_mean, ref.filtered_means, rtol=0, atol=1e-10)
    covs = np.array([np.cov(np.asarray(E).T) for E in out.ensembles])
    np.testing.assert_allclose(covs, ref.filtered_covs, rtol=0, atol=1e-10)
