"""Representation error of the reduced model against dense Gaussian algebra.

Reference: with every Neumann eigenpair of a masked grid (a dense eigen-decomposition), the
prior variance of the left-out modes at an observation row ``h`` is
``h^T (C_full - Phi_K P_K Phi_K^T) h = sum_{k >= K} (h . phi_k)^2 f(lambda_k)``: the dense
prior covariance minus the retained modes' part. The model's Lanczos quadrature
(:mod:`tracerbayes.exact.truncation`) must give it to 1e-10 relative.
"""

import numpy as np
import pandas as pd
import pytest

from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
from tracerbayes.exact.priors import Smoothness, spectral_variances
from tracerbayes.grid.basis import spectral_basis
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.1, "noise_lengthscale_km": 200.0,
          "initial_sd": 0.6, "initial_lengthscale_km": 120.0, "error_scale": 1.3,
          "u": 0.12, "v": -0.07, "source_sd": 0.05, "damping_days": 7.0,
          "mean_state_sd": 1.1, "mean_state_lengthscale_km": 300.0}


def coast_grid() -> Grid:
    mask = np.ones((14, 18), dtype=bool)
    mask[5:8, 6:10] = False  # an island
    mask[:4, :3] = False  # a cape
    return Grid.cartesian(x=(0.0, 360e3), y=(0.0, 280e3), resolution=20e3, mask=mask)


def observations(grid: Grid, days: int = 3) -> Observations:
    rng = np.random.default_rng(11)
    wet = np.argwhere(grid.mask)
    rows = []
    for day in range(days):
        for j, i in wet[rng.choice(len(wet), 7, replace=False)]:
            rows.append({"time": day * DAY, "x": grid.x[i] + rng.uniform(-9e3, 9e3),
                         "y": grid.y[j] + rng.uniform(-9e3, 9e3),
                         "value": rng.normal(), "error": 0.1})
    return Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")


def dense_tail(model, obs, times, data, lengthscale_m, variance):
    """``h^T C h - sum_{k < K} (h . phi_k)^2 f(lambda_k)`` for every observation row: the dense
    prior ``C = Phi_all diag(f) Phi_all^T`` (all eigenpairs) minus the model's retained modes."""
    grid = model.grid
    full = spectral_basis(grid)
    f = np.asarray(spectral_variances(full, model.priors.smoothness, lengthscale_m, variance))
    C = (full.vectors * f) @ full.vectors.T
    padded = obs.prepare(grid, times).padded()
    H = np.zeros((*padded.indices.shape[:2], grid.n_wet))
    t, m = np.indices(padded.indices.shape[:2])
    np.add.at(H, (t[..., None], m[..., None], padded.indices), padded.weights)
    K = model.n_modes
    kept = np.asarray(data.operators)[..., :K]  # the model's H Phi_K
    np.testing.assert_allclose(np.abs(H @ model.basis.vectors), np.abs(kept), rtol=1e-12,
                               atol=1e-12 * np.abs(kept).max())
    f_kept = np.asarray(spectral_variances(model.basis, model.priors.smoothness, lengthscale_m,
                                           variance))
    return np.einsum("tmi,ij,tmj->tm", H, C, H) - np.einsum("tmk,k->tm", kept**2, f_kept)


@pytest.mark.parametrize(("smoothness", "lengthscale_km"),
                         [(Smoothness.HALF, 120.0), (Smoothness.THREE_HALVES, 120.0),
                          (Smoothness.GAUSSIAN, 30.0)])
def test_representation_variance_is_the_dense_prior_minus_the_retained_modes(
        smoothness, lengthscale_km):
    grid = coast_grid()
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(smoothness=smoothness),
                                    n_modes=40)
    obs, times = observations(grid), np.arange(3) * DAY
    data = model.prepare(obs, times)
    params = {**PARAMS, "initial_lengthscale_km": lengthscale_km}
    got = np.asarray(model.representation_variances(params, data))
    expected = dense_tail(model, obs, times, data, lengthscale_km * 1e3, 0.6**2)
    valid = np.asarray(data.valid)
    assert np.all(got[~valid] == 0)
    assert np.all(expected[valid] > 0)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-10,
                               atol=1e-10 * expected[valid].max())
    # and it is added to the reported errors' variance, scaled by error_scale
    total = np.asarray(model.observation_variances(params, data))
    np.testing.assert_allclose(total[valid], (1.3 * 0.1) ** 2 + expected[valid], rtol=1e-10)


def test_nonconserved_tail_adds_the_mean_state_spectrum():
    grid = coast_grid()
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=30,
                                    conserved=False, mean_modes=12)
    obs, times = observations(grid), np.arange(3) * DAY
    data = model.prepare(obs, times)
    got = np.asarray(model.representation_variances(PARAMS, data))
    expected = (dense_tail(model, obs, times, data, 120e3, 0.6**2)
                + dense_tail(model, obs, times, data, 300e3, 1.1**2))
    valid = np.asarray(data.valid)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-10)


def test_complete_basis_or_switched_off_has_no_representation_error():
    grid = coast_grid()
    obs = observations(grid)
    complete = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=grid.n_wet)
    assert complete.prepare(obs, np.arange(3) * DAY).tail is None
    off = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=20,
                                  representation_error=False)
    data = off.prepare(obs, np.arange(3) * DAY)
    assert data.tail is None
    np.testing.assert_allclose(np.asarray(off.observation_variances(PARAMS, data)),
                               (1.3 * np.asarray(data.errors)) ** 2, rtol=1e-15)
