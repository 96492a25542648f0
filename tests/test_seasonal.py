"""The annual harmonic forcing of a tracer that is not conserved (``seasonal_modes > 0``).

* Still water, so the modes decouple: each forced mode's response to the pair ``(p, r)`` over an
  interval is the closed form ``Re[(p - i r) (e^{i w h} - e^{-rho h}) / (rho + i w)] / 1 day``
  and the pair rotates by ``w h`` (1e-10), for the annual harmonic and, with
  ``seasonal_harmonics=2``, the semi-annual one (``w`` doubled).
* The forcing's fields given the data (:func:`tracerbayes.exact.mode.seasonal_field`, a Kalman
  filter rotated back to the first time) equal the dense Gaussian conditional of the first
  state on every observation (1e-8), and ``seasonal_sd = 0`` is the model without it.
* ``seasonal_modes_for``: on for times that sample the annual cycle, off otherwise; a
  semi-annual harmonic asked of times that do not sample it is an error.
* The ensemble's increments equal quadrature of the damped forcing, both harmonics.
"""

import numpy as np
import numpyro
import pandas as pd
import pytest
from dense_reference import stacked_moments

from tracerbayes.exact.mode import seasonal_field
from tracerbayes.exact.model import (
    YEAR_DAYS,
    AdvectionDiffusionModel,
    ConstantVelocity,
    Priors,
    seasonal_modes_for,
)
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.1, "noise_lengthscale_km": 200.0,
          "initial_sd": 0.6, "initial_lengthscale_km": 250.0, "error_scale": 1.0,
          "u": 0.05, "v": -0.03, "source_sd": 0.05, "damping_days": 20.0,
          "mean_state_sd": 1.5, "mean_state_lengthscale_km": 500.0, "seasonal_sd": 0.04}
OMEGA = 2.0 * np.pi / (YEAR_DAYS * DAY)


def island_grid() -> Grid:
    mask = np.ones((8, 9), dtype=bool)
    mask[3:5, 4:6] = False
    return Grid.regular(lon=(-30.0, -21.0), lat=(30.0, 38.0), resolution=1.0, mask=mask)


def observations(grid: Grid, times: np.ndarray, per_time: int = 4) -> Observations:
    rng = np.random.default_rng(5)
    wet = np.argwhere(grid.mask)
    rows = []
    for t in times:
        for j, i in wet[rng.choice(len(wet), per_time, replace=False)]:
            rows.append({"time": t, "lon": grid.x[i], "lat": grid.y[j],
                         "value": 15.0 + 3.0 * np.sin(OMEGA * t) + rng.normal(), "error": 0.2})
    return Observations.from_dataframe(pd.DataFrame(rows))


def seasonal_model(grid, n_modes=20, seasonal_modes=6, mean_modes=5, forcing_modes=0,
                   harmonics=1):
    return AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=n_modes,
                                   conserved=False, mean_modes=mean_modes,
                                   forcing_modes=forcing_modes, seasonal_modes=seasonal_modes,
                                   seasonal_harmonics=harmonics, representation_error=False)


@pytest.mark.parametrize("harmonics", [1, 2])
def test_forced_modes_follow_the_harmonic_closed_form_and_the_pair_rotates(harmonics):
    grid = island_grid()
    model = seasonal_model(grid, forcing_modes=3, harmonics=harmonics)
    K, M, F, S = model.n_modes, model.n_mean, model.n_forcing, model.n_season
    assert model.state_size == K + M + F + 2 * harmonics * S and S == 6
    cols_p, cols_r = model.seasonal_columns
    assert list(cols_p) == list(range(K + M + F, K + M + F + harmonics * S))
    params = {**PARAMS, "u": 0.0, "v": 0.0, "forcing_sd": 0.1, "forcing_days": 5.0}
    h = 40.0 * DAY
    times = np.arange(10) * h  # uniform: one transition (and the half-year sampled)
    data = model.prepare(observations(grid, times), times)
    transition = np.asarray(model.state_space(params, data).transition)
    nb = model.basis.n_basins
    for k in range(harmonics):
        w = (k + 1) * OMEGA
        for j in range(S):
            rho = params["diffusivity"] * model.basis.eigenvalues[j] + (
                1.0 / (params["damping_days"] * DAY) if j >= nb else 0.0)
            gain = (np.exp(1j * w * h) - np.exp(-rho * h)) / (rho + 1j * w) / DAY
            p, r = cols_p[k * S + j], cols_r[k * S + j]
            np.testing.assert_allclose(transition[j, p], gain.real, rtol=1e-10)
            np.testing.assert_allclose(transition[j, r], (-1j * gain).real, rtol=1e-10)
            rotation = np.array([[np.cos(w * h), np.sin(w * h)],
                                 [-np.sin(w * h), np.cos(w * h)]])
            np.testing.assert_allclose(transition[np.ix_([p, r], [p, r])], rotation,
                                       atol=1e-13)
    # nothing else feeds the pair, and modes beyond the seasonal ones are not forced by it
    others = np.setdiff1d(np.arange(model.state_size), np.concatenate([cols_p, cols_r]))
    assert np.all(transition[np.ix_(np.concatenate([cols_p, cols_r]), others)] == 0)
    assert np.all(transition[S:K][:, np.concatenate([cols_p, cols_r])] == 0)


@pytest.mark.parametrize("harmonics", [1, 2])
def test_seasonal_field_is_the_dense_conditional_and_zero_sd_removes_it(harmonics):
    grid = island_grid()
    model = seasonal_model(grid, harmonics=harmonics)
    times = np.array([0.0, 30.0, 75.0, 120.0, 170.0, 220.0, 270.0, 330.0]) * DAY  # irregular
    obs = observations(grid, times)
    data = model.prepare(obs, times)
    ssm = model.state_space(PARAMS, data)
    T, n = len(times), model.state_size
    mean, cov = stacked_moments(np.asarray(ssm.initial_mean), np.asarray(ssm.initial_cov),
                                np.asarray(ssm.transition), np.asarray(ssm.process_cov))
    H = np.zeros((0, T * n))
    y, R = [], []
    variances = np.asarray(model.observation_variances(PARAMS, data))
    for k in range(T):
        for m in np.flatnonzero(np.asarray(data.valid[k])):
            row = np.zeros(T * n)
            row[k * n:(k + 1) * n] = np.asarray(data.operators[k, m])
            H = np.vstack([H, row])
            y.append(float(data.values[k, m]))
            R.append(float(variances[k, m]))
    S = H @ cov @ H.T + np.diag(R)
    posterior = mean + cov @ H.T @ np.linalg.solve(S, np.asarray(y) - H @ mean)
    cols_p, cols_r = model.seasonal_columns
    S = model.n_season
    vectors = model.basis.vectors[:, :S]
    expected = np.concatenate([np.stack([vectors @ posterior[cols_p[k * S:(k + 1) * S]],
                                         vectors @ posterior[cols_r[k * S:(k + 1) * S]]])
                               for k in range(harmonics)])
    got = seasonal_field(model, data, PARAMS)
    assert got.shape == (2 * harmonics, grid.n_wet)
    # the forcing at the first time is the sum of the harmonics' cosine fields
    np.testing.assert_allclose(model.seasonal_vectors() @ posterior[:n], expected[0::2].sum(0),
                               rtol=0, atol=1e-12 * np.max(np.abs(expected)))
    assert np.max(np.abs(expected)) > 1e-3  # the data say something about the cycle
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.max(np.abs(expected)))
    # seasonal_sd = 0: the likelihood of the model without the seasonal forcing
    plain = seasonal_model(grid, seasonal_modes=0)
    plain_data = plain.prepare(obs, times)
    lik = model.likelihood({**PARAMS, "seasonal_sd": 0.0}, data)
    expected_lp = plain.likelihood(PARAMS, plain_data).log_prob(plain_data.values)
    np.testing.assert_allclose(float(lik.log_prob(data.values)), float(expected_lp),
                               rtol=1e-10)
    assert seasonal_field(plain, plain_data, PARAMS) is None
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model.sample_parameters, 0)).get_trace()
    assert "seasonal_sd" in trace


def test_seasonal_modes_for_says_when_the_times_sample_the_annual_cycle():
    monthly = np.arange("2001-01", "2002-01", dtype="datetime64[M]").astype("datetime64[ns]")
    assert seasonal_modes_for(monthly)[0] == 20
    winters = np.array([f"{y}-01-15" for y in range(1960, 2010)], dtype="datetime64[ns]")
    n, why = seasonal_modes_for(winters)
    assert n == 0 and "unsampled" in why
    month = np.arange(0, 60) * np.timedelta64(1, "D") + np.datetime64("2020-01-01", "ns")
    n, why = seasonal_modes_for(month)
    assert n == 0 and "less than half a year" in why
    assert seasonal_modes_for(monthly, conserved=True)[0] == 0
    assert seasonal_modes_for(np.arange(0, 400, 10) * DAY)[0] == 20  # seconds
    # a semi-annual harmonic needs times that see it: gaps of at most 61 days
    grid = island_grid()
    semi = seasonal_model(grid, harmonics=2)
    quarterly = np.arange(0, 400, 91) * DAY
    with pytest.raises(ValueError, match="sample a cycle of 183 days.*leave 91 days"):
        semi.prepare(observations(grid, quarterly), quarterly)
    every60 = np.arange(0, 400, 60) * DAY
    assert semi.prepare(observations(grid, every60), every60).dts.shape == (6,)


def test_seasonal_forcing_needs_a_tracer_that_is_not_conserved():
    grid = island_grid()
    with pytest.raises(ValueError, match="needs conserved=False"):
        AdvectionDiffusionModel(grid, n_modes=10, seasonal_modes=4)
    with pytest.raises(ValueError, match="needs transition='galerkin'"):
        AdvectionDiffusionModel(grid, n_modes=10, seasonal_modes=4, conserved=False,
                                transition="projected")
    with pytest.raises(ValueError, match="count >= 0"):
        AdvectionDiffusionModel(grid, n_modes=10, seasonal_modes=-1, conserved=False)
    with pytest.raises(ValueError, match="seasonal_harmonics must be a count >= 1"):
        AdvectionDiffusionModel(grid, n_modes=10, seasonal_modes=4, conserved=False,
                                seasonal_harmonics=0)


@pytest.mark.parametrize("harmonics", [1, 2])
def test_ensemble_adds_the_damped_annual_forcing_as_quadrature_gives_it(harmonics):
    """Still water, no diffusion, no noise: every member is its start damped plus the damped
    integral of the annual forcing, checked cell by cell against scipy's quadrature over
    irregular intervals (1e-9), each basin's level taking the undamped integral."""
    import jax
    import scipy.integrate

    from tracerbayes import physics
    from tracerbayes.ensemble import tracer
    from tracerbayes.ensemble.seasonal import seasonal_forcing

    mask = np.ones((5, 8), dtype=bool)
    mask[:, 4] = False  # two basins
    grid = Grid.cartesian(x=(0.0, 80e3), y=(0.0, 50e3), resolution=10e3, mask=mask)
    field = tracer.noise_field(grid, 15e3)
    rng = np.random.default_rng(2)
    ab = (rng.normal(size=(2 * harmonics, grid.n_wet)) * 0.05
          + np.array([[0.03], [-0.02]] * harmonics))
    times = np.array([0.0, 20.0, 50.0, 51.0, 140.0, 300.0]) * DAY
    dts = np.diff(times)
    rate = 1.0 / (15.0 * DAY)
    forcing = seasonal_forcing(ab, grid.wet_area, field.basins, times[:-1])
    still = physics.constant_velocity(grid, 0.0, 0.0)
    move = tracer.tracer_transition(grid, still, 0.0, dts, field, 0.0, damping_rate=rate,
                                    seasonal=forcing)
    assert move.per_step
    E = start = np.zeros((3, grid.n_wet))
    for k in range(1, len(times)):
        E = np.asarray(move(jax.random.key(k), start + E, k))
    onehot = (field.basins[:, None] == np.arange(2)) * grid.wet_area[:, None]
    level_ab = (ab @ onehot / onehot.sum(0))[:, field.basins]
    free_ab = ab - level_ab
    t_end = times[-1]

    def f(s, coef):
        return sum(coef[2 * k] * np.cos((k + 1) * OMEGA * s)
                   + coef[2 * k + 1] * np.sin((k + 1) * OMEGA * s)
                   for k in range(harmonics)) / DAY

    for cell in (0, 7, 19):
        free_c, level_c = free_ab[:, cell], level_ab[:, cell]
        damped = scipy.integrate.quad(lambda s, c=free_c: f(s, c) * np.exp(
            -rate * (t_end - s)), 0.0, t_end, limit=200, epsabs=0, epsrel=1e-12)[0]
        level = scipy.integrate.quad(lambda s, c=level_c: f(s, c), 0.0, t_end,
                                     limit=200, epsabs=0, epsrel=1e-12)[0]
        np.testing.assert_allclose(E[:, cell], damped + level, rtol=1e-9)
    assert np.max(np.abs(E)) > 0.1  # the forcing moved the members


def test_ensemble_fit_takes_the_seasonal_fields_from_its_parameters():
    """tb.fit's ETKF with ``seasonal`` among its parameters: observed only at the first time,
    in still water with no diffusion, the later means differ from the run without it (same
    seed) by exactly the damped forcing's integral (1e-10); the fields are not summarised as
    parameters; a conserved model refuses them."""
    import tracerbayes as tb
    from tracerbayes.ensemble.fit import point_parameters

    mask = np.ones((5, 8), dtype=bool)
    grid = Grid.cartesian(x=(0.0, 80e3), y=(0.0, 50e3), resolution=10e3, mask=mask)
    times = np.array([0.0, 10.0, 40.0, 45.0]) * DAY
    rng = np.random.default_rng(4)
    wet = np.argwhere(grid.mask)
    rows = [{"time": 0.0, "x": grid.x[i], "y": grid.y[j], "value": 10 + rng.normal(),
             "error": 0.3} for j, i in wet[rng.choice(len(wet), 6, replace=False)]]
    obs = Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.05), Priors(), n_modes=8,
                                    conserved=False, seasonal_modes=4)
    ab = np.stack([np.linspace(0.0, 0.1, grid.n_wet), np.full(grid.n_wet, -0.05)])
    params = {**PARAMS, "u": 0.0, "v": 0.0, "diffusivity": 0.0}
    runs = [tb.fit(model, obs, times, method="etkf", ensemble_size=8, seed=3, progress=False,
                   parameters=p).maps()["mean"].values[:, grid.mask]
            for p in (params, {**params, "seasonal": ab})]
    rate = 1.0 / (params["damping_days"] * DAY)
    a = grid.wet_area
    level = (ab @ a) / a.sum()
    free = ab - level[:, None]
    for k in range(1, len(times)):
        t = times[k]
        damped = (np.exp(1j * OMEGA * t) - np.exp(-rate * t)) / (rate + 1j * OMEGA) / DAY
        kept = (np.exp(1j * OMEGA * t) - 1.0) / (1j * OMEGA) / DAY
        expected = (np.real((free[0] - 1j * free[1]) * damped)
                    + np.real((level[0] - 1j * level[1]) * kept))
        np.testing.assert_allclose(runs[1][k] - runs[0][k], expected, rtol=0,
                                   atol=1e-10 * np.abs(expected).max())
    assert np.abs(runs[1][-1] - runs[0][-1]).max() > 0.1
    assert set(point_parameters(model, {"seasonal": ab})) >= {"seasonal", "damping_days"}
    conserved = AdvectionDiffusionModel(grid, ConstantVelocity(0.05), Priors(), n_modes=8)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['seasonal'\]"):
        point_parameters(conserved, {"seasonal": ab})
