"""Tracers that are not conserved: the Ornstein-Uhlenbeck anomaly model, exactly.

References:

* Reduced model with a complete basis (``K = N``): the transition equals the full-grid
  ``expm((L - D / tau) dt)`` with ``D = I - 1 a^T / (1^T a)`` the projection onto departures
  from the area-weighted basin mean (scipy's ``expm`` of the dense operator).
* With a static mean state ``m`` (``mean_modes > 0``) and a complete basis, the augmented
  transition equals the full-grid ``expm`` of ``d/dt [c; m] = [[L - D / tau, D / tau], [0, 0]]``
  applied to ``[c; m]``, and the first map's prior is ``J diag(p, s) J^T`` with
  ``z_0 = E z_m + a`` (dense algebra).
* The basin-mean level random-walks: without observations its variance grows as
  ``mean_sd^2 + source_sd^2 (t_k - t_0) / 1 day`` (closed form), through the model's own
  state-space recursion ``P_{k+1} = F P F^T + Q``, for irregular intervals.
* Forcing with memory (``forcing_modes > 0``), complete basis: the transition of ``(z, f)``
  equals the full-grid ``expm`` of ``d/dt [c; f] = [[L - D / tau, Phi_F], [0, -I / tau_f]]``
  (scipy); still water: a forced mode's coefficients move as the analytic solution of the
  2 x 2 system (``e^{-a dt}``, ``(e^{-b dt} - e^{-a dt}) / (a - b)``, ``e^{-b dt}``); the
  forcing's covariance stays at its stationary spectrum through the model's own recursion
  over irregular intervals; ``forcing_sd = 0`` gives the likelihood of the model without
  memory.
* Full-grid ensemble transition: with no noise, the basin totals are those of the
  conserved move and the departures from the basin mean shrink by ``exp(-dt / tau)`` (1e-12);
  the basin-level forcing is uniform in each basin with sd ``source_sd sqrt(dt / day)``
  (sampling tolerance).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import scipy.linalg

from tracerbayes import physics
from tracerbayes.ensemble import tracer
from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.1, "noise_lengthscale_km": 200.0,
          "initial_sd": 0.6, "initial_lengthscale_km": 250.0, "error_scale": 1.0,
          "u": 0.12, "v": -0.07, "source_sd": 0.05, "damping_days": 7.0}


def island_grid() -> Grid:
    mask = np.ones((8, 9), dtype=bool)
    mask[3:5, 4:6] = False
    return Grid.regular(lon=(-30.0, -21.0), lat=(30.0, 38.0), resolution=1.0, mask=mask)


def two_basin_grid() -> Grid:
    mask = np.ones((5, 8), dtype=bool)
    mask[:, 4] = False  # a wall: two closed basins
    return Grid.cartesian(x=(0.0, 80e3), y=(0.0, 50e3), resolution=10e3, mask=mask)


def observations(grid: Grid, days: int = 5) -> Observations:
    rng = np.random.default_rng(3)
    wet = np.argwhere(grid.mask)
    rows = []
    for day in range(days):
        for j, i in wet[rng.choice(len(wet), 3, replace=False)]:
            rows.append({"time": day * DAY, "lon": grid.x[i], "lat": grid.y[j],
                         "value": 2.0 + rng.normal(), "error": 0.1})
    return Observations.from_dataframe(pd.DataFrame(rows))


def model_for(grid, n_modes=None, mean_modes=0, **priors) -> AdvectionDiffusionModel:
    return AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(**priors),
                                   n_modes=grid.n_wet if n_modes is None else n_modes,
                                   conserved=False, mean_modes=mean_modes)


def test_complete_basis_transition_is_damped_full_grid_expm():
    grid = island_grid()
    model = model_for(grid)
    data = model.prepare(observations(grid), np.arange(5) * DAY)
    reduced = np.asarray(model.state_space(PARAMS, data).transition)
    basis = model.basis
    full_from_reduced = basis.vectors @ reduced @ (basis.vectors.T * basis.cell_area)
    velocity = physics.constant_velocity(grid, PARAMS["u"], PARAMS["v"])
    L = np.asarray(physics.operator_matrix(grid, velocity, PARAMS["diffusivity"]))
    a = grid.wet_area
    departure = np.eye(grid.n_wet) - np.outer(np.ones(grid.n_wet), a) / a.sum()
    expected = scipy.linalg.expm((L - departure / (PARAMS["damping_days"] * DAY)) * DAY)
    conserved = scipy.linalg.expm(L * DAY)
    assert np.max(np.abs(expected - conserved)) > 0.05  # the damping is not negligible
    err = np.max(np.abs(full_from_reduced - expected)) / np.max(np.abs(expected))
    assert err < 1e-9
    # the total is still moved by nothing but the forcing: a^T M = a^T
    np.testing.assert_allclose(a @ full_from_reduced, a, rtol=1e-10)


MEAN_PARAMS = {**PARAMS, "mean_state_sd": 1.5, "mean_state_lengthscale_km": 500.0}


def test_complete_basis_relaxes_toward_the_static_mean_state():
    grid = island_grid()
    model = model_for(grid, mean_modes=12)
    nb, K, M = model.basis.n_basins, model.n_modes, model.n_mean
    assert M == 12 - nb and model.state_size == K + M
    data = model.prepare(observations(grid), np.arange(5) * DAY)
    assert data.operators.shape[-1] == K + M
    reduced = np.asarray(model.state_space(MEAN_PARAMS, data).transition)
    rng = np.random.default_rng(5)
    z, zm = rng.normal(size=K), rng.normal(size=M)
    phi, a = model.basis.vectors, grid.wet_area
    c0, m = phi @ z, phi[:, nb:nb + M] @ zm
    velocity = physics.constant_velocity(grid, PARAMS["u"], PARAMS["v"])
    L = np.asarray(physics.operator_matrix(grid, velocity, PARAMS["diffusivity"]))
    n = grid.n_wet
    departure = np.eye(n) - np.outer(np.ones(n), a) / a.sum()
    rate = 1.0 / (PARAMS["damping_days"] * DAY)
    generator = np.block([[L - rate * departure, rate * departure],
                          [np.zeros((n, n)), np.zeros((n, n))]])
    expected = scipy.linalg.expm(generator * DAY) @ np.concatenate([c0, m])
    moved = reduced @ np.concatenate([z, zm])
    np.testing.assert_allclose(moved[K:], zm, rtol=0, atol=1e-13)  # the mean state is static
    err = np.max(np.abs(phi @ moved[:K] - expected[:n])) / np.max(np.abs(expected[:n]))
    assert err < 1e-9
    # relaxing toward m is not negligible over a day
    without = model_for(grid, mean_modes=0).state_space(PARAMS, model_for(
        grid, mean_modes=0).prepare(observations(grid), np.arange(5) * DAY)).transition
    gap = np.max(np.abs(phi @ (np.asarray(without) @ z) - expected[:n]))
    assert gap / np.max(np.abs(expected[:n])) > 1e-2


def test_first_map_is_the_mean_state_plus_an_anomaly():
    from tracerbayes.exact.priors import spectral_variances

    grid = island_grid()
    model = model_for(grid, n_modes=20, mean_modes=8, mean_sd=0.7)
    nb, K, M = model.basis.n_basins, model.n_modes, model.n_mean
    data = model.prepare(observations(grid, days=3), np.arange(3) * DAY)
    ssm = model.state_space(MEAN_PARAMS, data)
    p = np.array(spectral_variances(model.basis, model.priors.smoothness, 250e3, 0.6**2))
    p[:nb] = 0.7**2 * (grid.wet_area.sum())
    s = np.asarray(spectral_variances(model.basis, model.priors.smoothness, 500e3,
                                      1.5**2))[nb:nb + M]
    J = np.eye(K + M)
    J[nb + np.arange(M), K + np.arange(M)] = 1.0  # z_0 = a + E z_m, z_m = z_m
    expected = J @ np.diag(np.concatenate([p, s])) @ J.T
    np.testing.assert_allclose(np.asarray(ssm.initial_cov), expected, rtol=1e-12, atol=0)
    Q = np.asarray(ssm.process_cov)
    assert np.all(Q[K:, :] == 0) and np.all(Q[:, K:] == 0)  # no noise on the mean state
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model.sample_parameters, 0)).get_trace()
    assert "mean_state_sd" in trace and "mean_state_lengthscale_km" in trace
    assert model.state_vectors.shape == (grid.n_wet, K + M)
    assert np.all(model.state_vectors[:, K:] == 0)


def test_basin_mean_variance_grows_as_a_random_walk():
    grid = island_grid()
    mean_sd = 0.8
    model = model_for(grid, n_modes=15, mean_sd=mean_sd)
    times = np.array([0.0, 1.0, 2.5, 3.0, 4.5]) * DAY
    data = model.prepare(observations(grid), times)
    ssm = model.state_space(PARAMS, data)
    basis = model.basis
    mean_of = basis.cell_area @ basis.vectors / grid.wet_area.sum()  # area mean of Phi z
    P = np.asarray(ssm.initial_cov)
    F, Q = np.asarray(ssm.transition), np.asarray(ssm.process_cov)
    variances = [mean_of @ P @ mean_of]
    for k in range(len(times) - 1):
        P = F[k] @ P @ F[k].T + Q[k]
        variances.append(mean_of @ P @ mean_of)
    expected = mean_sd**2 + PARAMS["source_sd"] ** 2 * (times - times[0]) / DAY
    np.testing.assert_allclose(variances, expected, rtol=1e-10)


FORCING_PARAMS = {**PARAMS, "forcing_sd": 0.2, "forcing_days": 3.0}


def forced_model(grid, velocity, n_modes=None, forcing_modes=6, mean_modes=0):
    return AdvectionDiffusionModel(grid, velocity, Priors(),
                                   n_modes=grid.n_wet if n_modes is None else n_modes,
                                   conserved=False, mean_modes=mean_modes,
                                   forcing_modes=forcing_modes)


def test_complete_basis_forcing_memory_is_the_full_grid_expm():
    grid = island_grid()
    model = forced_model(grid, ConstantVelocity(0.1), mean_modes=8)
    nb, K, M, F = model.basis.n_basins, model.n_modes, model.n_mean, model.n_forcing
    assert model.state_size == K + M + F and list(model.forced_modes) == list(range(F))
    data = model.prepare(observations(grid), np.arange(5) * DAY)
    assert data.operators.shape[-1] == K + M + F and np.all(data.operators[..., K:] == 0)
    params = {**FORCING_PARAMS, **MEAN_PARAMS}
    ssm = model.state_space(params, data)
    assert ssm.initial_cov.shape == ssm.transition.shape == (K + M + F,) * 2
    reduced = np.asarray(ssm.transition)
    phi, a, n = model.basis.vectors, grid.wet_area, grid.n_wet
    velocity = physics.constant_velocity(grid, PARAMS["u"], PARAMS["v"])
    L = np.asarray(physics.operator_matrix(grid, velocity, PARAMS["diffusivity"]))
    departure = np.eye(n) - np.outer(np.ones(n), a) / a.sum()
    rate = 1.0 / (PARAMS["damping_days"] * DAY)
    zero = np.zeros
    generator = np.block([  # d/dt [c; m; f]
        [L - rate * departure, rate * departure, phi[:, :F] / DAY],
        [zero((n, n)), zero((n, n)), zero((n, F))],
        [zero((F, n)), zero((F, n)), -np.eye(F) / (params["forcing_days"] * DAY)]])
    expected = scipy.linalg.expm(generator * DAY)
    rng = np.random.default_rng(8)
    z, zm, f = rng.normal(size=K), rng.normal(size=M), rng.normal(size=F)  # f: per day
    moved = reduced @ np.concatenate([z, zm, f])
    reference = expected @ np.concatenate([phi @ z, phi[:, nb:nb + M] @ zm, f])
    err = np.max(np.abs(phi @ moved[:K] - reference[:n])) / np.max(np.abs(reference[:n]))
    assert err < 1e-9
    np.testing.assert_allclose(moved[K:K + M], zm, rtol=0, atol=1e-13)
    np.testing.assert_allclose(moved[K + M:], reference[2 * n:], rtol=1e-12)
    # the forcing carried over the day is not negligible
    assert np.max(np.abs(reduced[:K, K + M:] @ f)) > 1e-2 * np.max(np.abs(moved[:K]))


def test_forced_mode_follows_the_analytic_two_by_two_solution():
    grid = island_grid()
    model = forced_model(grid, ConstantVelocity(0.1), n_modes=12, forcing_modes=4)
    params = {**FORCING_PARAMS, "u": 0.0, "v": 0.0}  # still water: the modes decouple
    dt = 2.5 * DAY
    data = model.prepare(observations(grid, days=3), np.array([0.0, dt]))
    transition = np.asarray(model.state_space(params, data).transition)
    b = 1.0 / (params["forcing_days"] * DAY)
    for j, col in zip(model.forced_modes, range(model.n_modes, model.state_size), strict=True):
        a = params["diffusivity"] * model.basis.eigenvalues[j] + (
            1.0 / (params["damping_days"] * DAY) if j >= model.basis.n_basins else 0.0)
        coupling = (np.exp(-b * dt) - np.exp(-a * dt)) / (a - b) / DAY  # f is per day
        np.testing.assert_allclose(transition[j, j], np.exp(-a * dt), rtol=1e-12)
        np.testing.assert_allclose(transition[j, col], coupling, rtol=1e-10)
        np.testing.assert_allclose(transition[col, col], np.exp(-b * dt), rtol=1e-12)


def test_forcing_stays_stationary_and_zero_forcing_is_the_model_without_memory():
    from tracerbayes.exact.kalman import kalman_log_likelihood

    grid = island_grid()
    model = forced_model(grid, ConstantVelocity(0.1), n_modes=15)
    times = np.array([0.0, 1.0, 2.5, 3.0, 4.5]) * DAY
    data = model.prepare(observations(grid), times)
    ssm = model.state_space(FORCING_PARAMS, data)
    K = model.n_modes
    P = np.asarray(ssm.initial_cov)
    stationary = np.diag(P)[K:]
    assert np.all(stationary > 0) and np.all(P[:K, K:] == 0)
    for F, Q in zip(np.asarray(ssm.transition), np.asarray(ssm.process_cov), strict=True):
        P = F @ P @ F.T + Q
        np.testing.assert_allclose(P[K:, K:], np.diag(stationary), rtol=1e-12,
                                   atol=1e-12 * stationary.max())
    # forcing_sd = 0: the likelihood of the same data under the model without memory
    plain = forced_model(grid, ConstantVelocity(0.1), n_modes=15, forcing_modes=0)
    plain_data = plain.prepare(observations(grid), times)
    params = {**FORCING_PARAMS, "forcing_sd": 0.0}
    lik = model.likelihood(params, data)
    expected = plain.likelihood(PARAMS, plain_data)
    np.testing.assert_allclose(
        float(lik.log_prob(data.values)), float(expected.log_prob(plain_data.values)),
        rtol=1e-10)
    assert float(kalman_log_likelihood(lik.ssm, lik._padded(data.values))) != pytest.approx(
        float(model.likelihood(FORCING_PARAMS, data).log_prob(data.values)), rel=1e-3)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model.sample_parameters, 0)).get_trace()
    assert "forcing_sd" in trace and "forcing_days" in trace
    with pytest.raises(ValueError, match="needs transition='galerkin'"):
        AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=10,
                                transition="projected", forcing_modes=3)


def test_nonconserved_model_samples_damping_and_source():
    grid = island_grid()
    model = model_for(grid, n_modes=10)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model.sample_parameters, 0)).get_trace()
    assert "damping_days" in trace and "source_sd" in trace
    # the default source prior is relative to the data's spread
    scaled = AdvectionDiffusionModel(grid, ConstantVelocity(0.1),
                                     Priors.for_observations(observations(grid)), n_modes=10,
                                     conserved=False)
    s = float(np.std(observations(grid).value))
    assert float(scaled.source_prior().scale) == pytest.approx(0.2 * s)
    conserved = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=10)
    trace = numpyro.handlers.trace(
        numpyro.handlers.seed(conserved.sample_parameters, 0)).get_trace()
    assert "damping_days" not in trace and "source_sd" not in trace


def test_ensemble_transition_damps_departures_and_keeps_basin_totals(key):
    grid = two_basin_grid()
    cx, cy = physics.corner_coordinates(grid)
    psi = 2e3 * np.sin(np.pi * cx / cx.max()) * np.sin(np.pi * cy / cy.max())
    velocity = physics.velocity_from_streamfunction(grid, psi)
    field = tracer.noise_field(grid, 15e3)
    tau = 5.0 * DAY
    damped = tracer.tracer_transition(grid, velocity, 300.0, DAY, field, 0.0,
                                      damping_rate=1.0 / tau)
    plain = tracer.tracer_transition(grid, velocity, 300.0, DAY, field, 0.0)
    E = jax.random.normal(key, (6, grid.n_wet)) + 10.0
    moved, reference = np.asarray(damped(key, E)), np.asarray(plain(key, E))
    onehot = (field.basins[:, None] == np.arange(2)) * grid.wet_area[:, None]
    np.testing.assert_allclose(moved @ onehot, reference @ onehot, rtol=1e-12)
    means = (reference @ onehot) / onehot.sum(0)
    departure = reference - means[:, field.basins]
    expected = means[:, field.basins] + np.exp(-DAY / tau) * departure
    np.testing.assert_allclose(moved, expected, rtol=0, atol=1e-12)
    # toward a mean state m: the departure from level + m (m's mass-free part) decays
    m = 0.5 * np.sin(np.arange(grid.n_wet) / 3.0)
    toward = tracer.tracer_transition(grid, velocity, 300.0, DAY, field, 0.0,
                                      damping_rate=1.0 / tau, mean_state=m)
    moved = np.asarray(toward(key, E))
    np.testing.assert_allclose(moved @ onehot, reference @ onehot, rtol=1e-12)
    m_free = m - ((m @ onehot) / onehot.sum(0))[field.basins]
    expected = means[:, field.basins] + m_free + np.exp(-DAY / tau) * (departure - m_free)
    np.testing.assert_allclose(moved, expected, rtol=0, atol=1e-12)


def test_ensemble_basin_forcing_is_uniform_per_basin_with_its_sd(key):
    grid = two_basin_grid()
    velocity = physics.constant_velocity(grid, 0.0, 0.0)
    field = tracer.noise_field(grid, 15e3)
    source_sd, dt = 0.3, 0.5 * DAY
    step = tracer.tracer_transition(grid, velocity, 0.0, dt, field, 0.0, source_sd=source_sd)
    n = 4000
    E = jnp.full((n, grid.n_wet), 5.0)
    change = np.asarray(step(key, E)) - 5.0
    for b in range(2):
        cells = change[:, field.basins == b]
        np.testing.assert_allclose(cells, cells[:, :1] * np.ones_like(cells), atol=1e-12)
        sd = cells[:, 0].std()
        expected = source_sd * np.sqrt(dt / DAY)
        assert abs(sd / expected - 1) < 5 / np.sqrt(2 * n)  # 5 standard errors of an sd
    # independent between basins
    assert abs(np.corrcoef(change[:, field.basins == 0][:, 0],
                           change[:, field.basins == 1][:, 0])[0, 1]) < 5 / np.sqrt(n)


def test_ensemble_transition_rejects_negative_rates():
    grid = two_basin_grid()
    field = tracer.noise_field(grid, 15e3)
    velocity = physics.constant_velocity(grid, 0.0, 0.0)
    with pytest.raises(ValueError, match="damping_rate"):
        tracer.tracer_transition(grid, velocity, 0.0, DAY, field, 0.0, damping_rate=-1.0)


def test_point_parameters_include_damping_and_source():
    from tracerbayes.ensemble.fit import point_parameters

    grid = island_grid()
    model = model_for(grid, n_modes=10, damping_days=dist.LogNormal(np.log(12.0), 0.5))
    values = point_parameters(model)
    assert values["damping_days"] == pytest.approx(12.0)
    assert values["source_sd"] == pytest.approx(float(dist.HalfNormal(0.2).icdf(0.5)))


def test_irregular_intervals_move_each_step_by_its_own_length(key):
    """Per-step transition: step k moves by dts[k-1] with the longest interval's sub-steps
    (noise off: equal to propagate to round-off), and its noise variance grows like dt."""
    grid = two_basin_grid()
    cx, cy = physics.corner_coordinates(grid)
    psi = 2e3 * np.sin(np.pi * cx / cx.max()) * np.sin(np.pi * cy / cy.max())
    velocity = physics.velocity_from_streamfunction(grid, psi)
    field = tracer.noise_field(grid, 15e3)
    dts = np.array([1.0, 2.5, 0.5]) * DAY
    quiet = tracer.tracer_transition(grid, velocity, 300.0, dts, field, 0.0,
                                     damping_rate=1 / (4 * DAY))
    assert quiet.per_step
    E = jax.random.normal(key, (3, grid.n_wet)) + 10.0
    for k in (1, 2, 3):
        expected = physics.propagate(grid, E, velocity, 300.0, dts[k - 1],
                                     substeps=quiet.substeps)
        expected = tracer.damp_anomalies(expected, np.exp(-dts[k - 1] / (4 * DAY)),
                                         grid.wet_area, field.basins)
        np.testing.assert_allclose(quiet(key, E, k), expected, rtol=0, atol=1e-12)
    noisy = tracer.tracer_transition(grid, physics.constant_velocity(grid, 0.0, 0.0), 0.0,
                                     dts, field, 0.3, source_sd=0.2)
    n = 3000
    E = jnp.zeros((n, grid.n_wet))
    for k in (1, 2, 3):
        change = np.asarray(noisy(jax.random.fold_in(key, k), E, k))
        level = change[:, field.basins == 0] @ grid.wet_area[field.basins == 0]
        level = level / grid.wet_area[field.basins == 0].sum()
        expected = 0.2 * np.sqrt(dts[k - 1] / DAY)
        assert abs(level.std() / expected - 1) < 5 / np.sqrt(2 * n)


def test_letkf_fit_accepts_irregular_times(key):
    import tracerbayes as tb

    grid = two_basin_grid()
    rng = np.random.default_rng(5)
    wet = np.argwhere(grid.mask)
    times = np.array([0.0, 1.0, 3.0, 3.5]) * DAY
    rows = [{"time": t, "x": grid.x[i], "y": grid.y[j], "value": 10 + rng.normal(),
             "error": 0.3}
            for t in times for j, i in wet[rng.choice(len(wet), 5, replace=False)]]
    obs = Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.05), Priors(), n_modes=8,
                                    conserved=False)
    post = tb.fit(model, obs, times, method="letkf", ensemble_size=10, localisation=30,
                  parameters="prior",
                  progress=False)
    assert post.settings["dt_s"] == "43200..172800"
    maps = post.maps()
    assert maps["mean"].shape == (4, 5, 8)
    assert np.isfinite(maps["mean"].values[:, grid.mask]).all()


def test_mean_state_field_is_the_smoothed_mean_state_and_the_ensemble_takes_it():
    """mean_state_field (one filter pass, the static coefficients' last filtered mean) equals
    the RTS smoother's mean state at the first time (1e-10), is mass-free, and passes through
    point_parameters to the ensemble; a conserved model has none."""
    from tracerbayes.ensemble.fit import point_parameters
    from tracerbayes.exact.kalman import KalmanObservations, rts_smoother
    from tracerbayes.exact.mode import mean_state_field

    grid = island_grid()
    model = model_for(grid, n_modes=20, mean_modes=8)
    data = model.prepare(observations(grid), np.arange(5) * DAY)
    params = {**PARAMS, **MEAN_PARAMS}
    field = mean_state_field(model, data, params)
    values = {k: jnp.asarray(v) for k, v in params.items()}
    obs = KalmanObservations(data.values, data.operators,
                             model.observation_variances(values, data), data.valid)
    first = rts_smoother(model.state_space(values, data), obs).smoothed_means[0]
    reference = model.mean_state_vectors() @ np.asarray(first)
    scale = np.abs(reference).max()
    assert scale > 1e-3  # the data inform it
    np.testing.assert_allclose(field, reference, rtol=0, atol=1e-10 * scale)
    assert abs(grid.wet_area @ field) < 1e-10 * scale * grid.wet_area.sum()
    given = point_parameters(model, {"mean_state": field})
    assert given["mean_state"] is field
    conserved = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=20)
    assert mean_state_field(conserved, conserved.prepare(observations(grid), np.arange(5) * DAY),
                            PARAMS) is None
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['mean_state'\]"):
        point_parameters(conserved, {"mean_state": field})
