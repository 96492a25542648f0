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


def mode_variances(basis, smoothness, params, t, conserved=True, mean_state=False):
    """Closed-form variance of every mode at ``t`` s: an Ornstein-Uhlenbeck coefficient with
    rate ``r = kappa lambda (+ 1/tau)``, start variance ``p`` and noise ``q`` per second,
    ``p e^{-2rt} + q (1 - e^{-2rt}) / (2r)`` (plus the static mean state's spectrum)."""
    lam = basis.eigenvalues
    p = np.asarray(spectral_variances(basis, smoothness, params["initial_lengthscale_km"] * 1e3,
                                      params["initial_sd"] ** 2))
    q = np.asarray(spectral_variances(basis, smoothness, params["noise_lengthscale_km"] * 1e3,
                                      params["noise_sd"] ** 2)) / DAY
    r = params["diffusivity"] * lam + (0.0 if conserved else 1 / (params["damping_days"] * DAY))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * np.exp(-2 * r * t) + q * np.where(r > 0, (1 - np.exp(-2 * r * t)) / (2 * r), t)
    if mean_state:
        out = out + np.asarray(spectral_variances(
            basis, smoothness, params["mean_state_lengthscale_km"] * 1e3,
            params["mean_state_sd"] ** 2))
    return out


def dense_tail(model, obs, times, data, params, **kind):
    """``h^T C(t) h - sum_{k < K} (h . phi_k)^2 f_k(t)`` for every observation row: the dense
    prior covariance at the row's time, ``C(t) = Phi_all diag(f(t)) Phi_all^T`` from all
    eigenpairs, minus the model's retained modes."""
    grid = model.grid
    full = spectral_basis(grid)
    padded = obs.prepare(grid, times).padded()
    H = np.zeros((*padded.indices.shape[:2], grid.n_wet))
    t, m = np.indices(padded.indices.shape[:2])
    np.add.at(H, (t[..., None], m[..., None], padded.indices), padded.weights)
    K = model.n_modes
    kept = np.asarray(data.operators)[..., :K]  # the model's H Phi_K
    np.testing.assert_allclose(np.abs(H @ model.basis.vectors), np.abs(kept), rtol=1e-12,
                               atol=1e-12 * np.abs(kept).max())
    out = np.zeros(H.shape[:2])
    for k, when in enumerate(np.asarray(times) - times[0]):
        f = mode_variances(full, model.priors.smoothness, params, when, **kind)
        C = (full.vectors * f) @ full.vectors.T
        f_kept = mode_variances(model.basis, model.priors.smoothness, params, when, **kind)
        out[k] = (np.einsum("mi,ij,mj->m", H[k], C, H[k])
                  - np.einsum("mk,k->m", kept[k] ** 2, f_kept))
    return out


@pytest.mark.parametrize(("smoothness", "lengthscale_km"),
                         [(Smoothness.HALF, 120.0), (Smoothness.THREE_HALVES, 120.0),
                          (Smoothness.GAUSSIAN, 30.0)])
def test_representation_variance_is_the_dense_prior_minus_the_retained_modes(
        smoothness, lengthscale_km):
    grid = coast_grid()
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(smoothness=smoothness),
                                    n_modes=40)
    obs, times = observations(grid), np.array([0.0, 1.0, 3.5]) * DAY
    data = model.prepare(obs, times)
    params = {**PARAMS, "initial_lengthscale_km": lengthscale_km,
              "noise_lengthscale_km": 0.5 * lengthscale_km}
    got = np.asarray(model.representation_variances(params, data))
    expected = dense_tail(model, obs, times, data, params)
    valid = np.asarray(data.valid)
    assert np.all(got[~valid] == 0)
    assert np.all(expected[valid] > 0)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-10,
                               atol=1e-10 * expected[valid].max())
    # the noise grows the left-out variance after the first map
    assert not np.allclose(expected[1:][valid[1:]], dense_tail(
        model, obs, times, data, {**params, "noise_sd": 0.0})[1:][valid[1:]], rtol=1e-3)
    # and it is added to the reported errors' variance, scaled by error_scale
    total = np.asarray(model.observation_variances(params, data))
    np.testing.assert_allclose(total[valid], (1.3 * 0.1) ** 2 + expected[valid], rtol=1e-10)
    # a representation_scale multiplies it (the data may find the tail lighter)
    scaled = np.asarray(model.representation_variances({**params, "representation_scale": 0.3},
                                                       data))
    np.testing.assert_allclose(scaled[valid], 0.3 * expected[valid], rtol=1e-10)


def test_nonconserved_tail_damps_and_adds_the_mean_state_spectrum():
    grid = coast_grid()
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=30,
                                    conserved=False, mean_modes=12)
    obs, times = observations(grid), np.array([0.0, 2.0, 3.0]) * DAY
    data = model.prepare(obs, times)
    got = np.asarray(model.representation_variances(PARAMS, data))
    expected = dense_tail(model, obs, times, data, PARAMS, conserved=False, mean_state=True)
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
    import numpyro

    def sampled(m):
        return numpyro.handlers.trace(numpyro.handlers.seed(m.sample_parameters, 0)).get_trace()

    assert "representation_scale" not in sampled(off)
    assert "representation_scale" not in sampled(complete)
    with_tail = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=20)
    assert "representation_scale" in sampled(with_tail)


def test_auto_modes_follow_the_prior_lengthscale_and_the_budget():
    from tracerbayes.exact.priors import modes_needed
    from tracerbayes.exact.truncation import choose_n_modes

    grid = Grid.cartesian(x=(0.0, 2000e3), y=(0.0, 1200e3), resolution=20e3,
                          mask=np.ones((60, 100), dtype=bool))
    priors = Priors()  # lengthscale medians 150 km (noise) and 200 km (first map)
    area = grid.wet_area.sum()
    K, why = choose_n_modes(grid, priors, 10)
    assert K == modes_needed(area, 150e3, priors.smoothness, 0.95)
    assert "150 km" in why
    K, why = choose_n_modes(grid, priors, 3000)  # a long window: the budget binds
    assert K == int((1e8 / 3000) ** (1 / 3)) and "budget" in why
    assert choose_n_modes(grid, priors, 10**6)[0] == 20  # never below MIN_MODES


def test_coarse_basis_is_reported():
    from tracerbayes.exact.truncation import basis_warnings

    grid = coast_grid()
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=10)
    data = model.prepare(observations(grid), np.arange(3) * DAY)
    fine = {**PARAMS, "noise_lengthscale_km": 25.0, "error_scale": 0.1}
    messages = basis_warnings(model, fine, data)
    assert any("too coarse" in m and "10 modes" in m for m in messages)
    assert any("representation error" in m for m in messages)
    smooth = {**PARAMS, "initial_lengthscale_km": 400.0, "noise_lengthscale_km": 400.0}
    assert basis_warnings(model, smooth, data) == []
