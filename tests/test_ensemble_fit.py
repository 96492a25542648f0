"""fit(method="enkf" | "etkf" | "letkf" | "eki") on the tracer model, against exact references."""

import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
import xarray as xr

import tracerbayes as tb
from tracerbayes import physics
from tracerbayes.ensemble import inversion, tracer, window
from tracerbayes.ensemble.analysis import etkf_transform
from tracerbayes.ensemble.cycle import ObsAtTime
from tracerbayes.ensemble.fit import eki_forward, point_parameters
from tracerbayes.ensemble.inflation import mass_free_multiplicative, multiplicative
from tracerbayes.ensemble.localisation import euclidean, gaspari_cohn
from tracerbayes.ensemble.window import GlobalUpdate, LocalUpdate, smooth_window
from tracerbayes.exact.kalman import KalmanObservations, kalman_log_likelihood
from tracerbayes.exact.model import AdvectionDiffusionModel, GivenVelocity, Priors
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations
from tracerbayes.posterior.base import AbstractPosterior
from tracerbayes.posterior.exact import Posterior

DAY = 86400.0
PARAMS = {"diffusivity": 400.0, "velocity_scale": 1.0, "noise_sd": 0.2,
          "noise_lengthscale_km": 15.0, "initial_sd": 1.0, "initial_lengthscale_km": 20.0,
          "error_scale": 1.0}


def small_problem(rng, nx=6, ny=5, T=4, n_obs=6, two_basins=False, dates=False):
    """A small Cartesian basin (10 km cells), a swirl and random observations (times in
    seconds, or daily datetimes from 2020-01-01 with ``dates``)."""
    mask = np.ones((ny, nx), bool)
    if two_basins:
        mask[:, nx // 2] = False  # a wall: two closed basins
    else:
        mask[1, 2] = False
    grid = Grid.cartesian(x=(0.0, nx * 10e3), y=(0.0, ny * 10e3), resolution=10e3, mask=mask)
    cx, cy = physics.corner_coordinates(grid)
    psi = 2e3 * np.sin(np.pi * cx / cx.max()) * np.sin(np.pi * cy / cy.max())
    velocity = physics.velocity_from_streamfunction(grid, psi)
    wet = np.argwhere(mask)
    rows = []
    for k in range(T):
        cells = wet[rng.choice(len(wet), n_obs, replace=False)]
        for j, i in cells:
            rows.append({"time": k * DAY, "x": grid.x[i] + rng.uniform(-2e3, 2e3),
                         "y": grid.y[j] + rng.uniform(-2e3, 2e3),
                         "value": 10 + rng.normal(), "error": 0.3})
    frame = pd.DataFrame(rows)
    times = np.arange(T) * DAY
    if dates:
        start = np.datetime64("2020-01-01T00:00", "s")
        frame["time"] = start + frame["time"].astype(int).to_numpy() * np.timedelta64(1, "s")
        times = start + np.arange(T) * np.timedelta64(86400, "s")
    obs = Observations.from_dataframe(frame, x="x", y="y")
    return grid, velocity, times, obs


def columns(f, n):
    """The matrix of a linear map of states (k, n) -> (k, n): rows are images of e_i."""
    return np.asarray(f(jnp.eye(n)))


def dense_smoother(grid, velocity, times, obs, params, mean_sd):
    """Exact posterior mean and variance of the stacked trajectory (dense Gaussian algebra)
    for the full-grid model the ensemble methods sample."""
    n, T = grid.n_wet, len(times)
    M = columns(lambda E: physics.propagate(
        grid, E, velocity, params["diffusivity"], DAY,
        substeps=physics.substeps_for(grid, velocity, params["diffusivity"], DAY)), n).T
    field_q = tracer.noise_field(grid, params["noise_lengthscale_km"] * 1e3)
    field_0 = tracer.noise_field(grid, params["initial_lengthscale_km"] * 1e3)
    area = jnp.asarray(grid.wet_area)

    def noise_map(field, mass_free):
        def f(xi):  # the linear map from standard normal xi to a noise field
            eps = tracer._smooth(field, xi / jnp.sqrt(area)) * field.normaliser
            return tb.ensemble.project_mass_free(eps, area, field.basins) if mass_free else eps
        return columns(f, n).T

    B = noise_map(field_q, True) * params["noise_sd"]
    B0 = noise_map(field_0, False) * params["initial_sd"]
    Q, P0 = B @ B.T, B0 @ B0.T + mean_sd**2
    prepared = obs.prepare(grid, times)
    level = np.mean(prepared.value)
    Sigma = np.zeros((T * n, T * n))
    P = P0
    blocks = [np.eye(n)]
    for _ in range(1, T):
        blocks.append(M @ blocks[-1])
    # Cov(c_j, c_k) for j <= k: M^{k-j} Var(c_j); Var(c_k) = M Var(c_{k-1}) M^T + Q
    variances = [P]
    for _ in range(1, T):
        P = M @ P @ M.T + Q
        variances.append(P)
    for j in range(T):
        for k in range(j, T):
            c = blocks[k - j] @ variances[j]
            Sigma[k * n:(k + 1) * n, j * n:(j + 1) * n] = c
            Sigma[j * n:(j + 1) * n, k * n:(k + 1) * n] = c.T
    H = np.zeros((len(prepared.value), T * n))
    op = prepared.operator
    for r, k in enumerate(prepared.time_index):
        np.add.at(H[r], k * n + op.indices[r], op.weights[r])
    R = np.diag((prepared.error * params["error_scale"]) ** 2)
    gain = Sigma @ H.T @ np.linalg.inv(H @ Sigma @ H.T + R)
    mean = level + gain @ (prepared.value - level)
    cov = Sigma - gain @ H @ Sigma
    return mean.reshape(T, n), np.diag(cov).reshape(T, n), np.diag(Sigma).reshape(T, n)


@pytest.mark.parametrize("method", ["etkf", "enkf"])
def test_smoothed_ensemble_matches_the_dense_posterior(rng, method):
    """Ensemble smoother on the full-grid model against the exact Gaussian conditional of
    the stacked trajectory, within Monte Carlo error of N = 1000 members. (LETKF with an
    infinite radius is the global ETKF: next test.)"""
    grid, velocity, times, obs = small_problem(rng)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(mean_sd=2.0),
                                    n_modes=8)
    params = {k: v for k, v in PARAMS.items() if k != "velocity_scale"}
    mean, var, prior_var = dense_smoother(grid, velocity, times, obs, params, mean_sd=2.0)
    N = 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tb.SamplingWarning)
        post = tb.fit(model, obs, times, method=method, ensemble_size=N, parameters=params,
                      seed=1, progress=False, inflation=1.0)
    members = post.members + post.offset  # (T, N, n); fit removed the data mean
    got_mean, got_var = members.mean(1), members.var(1, ddof=1)
    # The analysis mean's sampling error comes from the sampled prior (through the gain),
    # so it is measured against the prior variance; the variances against their own size.
    z_mean = (got_mean - mean) / np.sqrt(prior_var / N)
    assert np.abs(z_mean).max() < 5.0, np.abs(z_mean).max()
    assert abs(np.mean(got_var / var) - 1.0) < 0.1, np.mean(got_var / var)
    assert np.abs(got_var / var - 1.0).max() < 0.5
    maps = post.maps()
    assert np.allclose(grid.to_state(maps["mean"].values[2]), got_mean[2], atol=1e-12)
    assert post.mass_drift["forecast"] < 1e-12


def test_local_update_with_infinite_radius_equals_the_global_smoother(rng, key):
    grid, velocity, times, obs = small_problem(rng, T=5)
    field = tracer.noise_field(grid, 15e3)
    step = tracer.tracer_transition(grid, velocity, 300.0, DAY, field, 0.2)
    E0 = tracer.initial_ensemble(key, grid, 12, 10.0, 1.0, 1.0, 20e3)
    co = tracer.stencil_observations(obs.prepare(grid, times), obs)
    coords = jnp.asarray(tracer.state_coordinates(grid))
    out = {}
    # "nodes": weight interpolation, nodes every 2 cells (every transform is the global one)
    for name, update in {"global": GlobalUpdate("etkf"),
                         "local": LocalUpdate(coords, euclidean, np.inf),
                         "nodes": LocalUpdate(coords, euclidean, np.inf,
                                              nodes=tracer.weight_nodes(grid, 2))}.items():
        for lag in (None, 2):
            out[name, lag] = smooth_window(key, step, E0, co, update, lag=lag,
                                           forecast_first=False, progress=False)
    for lag in (None, 2):
        for name in ("local", "nodes"):
            np.testing.assert_allclose(out[name, lag].smoothed, out["global", lag].smoothed,
                                       rtol=0, atol=1e-10)
    # the smoother changes past states; its last time is the filter's
    assert not np.allclose(out["global", None].smoothed[0].mean(0),
                           out["global", None].filtered_mean[0])
    np.testing.assert_allclose(out["global", None].smoothed[-1].mean(0),
                               out["global", None].filtered_mean[-1], atol=1e-12)
    # an equal update built again from copies of its arrays reuses the compiled scan (the
    # arrays are traced arguments, not hashed by identity) and gives the same members
    compiled = window._scan._cache_size()
    again = smooth_window(key, step, E0, co, LocalUpdate(jnp.array(coords), euclidean, np.inf),
                          lag=2, forecast_first=False, progress=False)
    assert window._scan._cache_size() == compiled
    np.testing.assert_array_equal(again.smoothed, out["local", 2].smoothed)


def test_mass_safe_defaults_keep_every_member_total_per_basin(rng, key):
    """Two closed basins; members start with equal totals; forecasts with mass-free noise,
    mass-free inflation and the mass-safe LETKF keep each basin's total to 1e-10; plain
    multiplicative inflation and localisation do not."""
    grid, velocity, times, obs = small_problem(rng, nx=8, ny=6, T=6, n_obs=8, two_basins=True)
    field = tracer.noise_field(grid, 15e3)
    assert field.basins.max() == 1  # two basins
    step = tracer.tracer_transition(grid, velocity, 300.0, DAY, field, 0.2)
    E0 = tracer.initial_ensemble(key, grid, 10, 10.0, 0.0, 1.0, 20e3, same_total=True)
    co = tracer.stencil_observations(obs.prepare(grid, times), obs)
    area = jnp.asarray(grid.wet_area)
    coords = jnp.asarray(tracer.state_coordinates(grid))
    onehot = np.asarray(field.basins[:, None] == np.arange(2), float) * grid.wet_area[:, None]

    def basin_drift(update, inflation):
        out = smooth_window(key, step, E0, co, update, inflation=inflation,
                            forecast_first=False, progress=False)
        totals = np.asarray(out.smoothed) @ onehot  # (T, N, basins)
        start = np.asarray(E0) @ onehot
        return float(np.max(np.abs(totals - start[None]) / np.abs(start[None])))

    safe = basin_drift(LocalUpdate(coords, euclidean, 20e3, cell_area=area,
                                   basins=field.basins),
                       lambda k, E: mass_free_multiplicative(E, 1.1, area, field.basins))
    plain = basin_drift(LocalUpdate(coords, euclidean, 20e3),
                        lambda k, E: multiplicative(E, 1.1))
    assert safe < 1e-10, safe
    assert plain > 1e-4, plain
    # with weight interpolation (nodes every 2 cells) the mass-safe update still keeps them
    nodes = tracer.weight_nodes(grid, 2)
    assert len(nodes.coords) < grid.n_wet
    interpolated = basin_drift(LocalUpdate(coords, euclidean, 20e3, cell_area=area,
                                           basins=field.basins, nodes=nodes),
                               lambda k, E: mass_free_multiplicative(E, 1.1, area, field.basins))
    assert interpolated < 1e-10, interpolated


def test_local_update_with_nodes_is_the_interpolated_local_transforms(rng, key):
    """One local window update with weight-interpolation nodes equals, column by column, the
    bilinear mix of the node transforms computed independently as ETKFs with tapered errors;
    one node per cell (stride 1) is the plain local update."""
    grid, velocity, times, obs = small_problem(rng, T=2)
    E = tracer.initial_ensemble(key, grid, 9, 10.0, 1.0, 1.0, 20e3)
    ob = ObsAtTime(*jax.tree.map(lambda a: a[0],
                                 tuple(tracer.stencil_observations(obs.prepare(grid, times),
                                                                   obs))))
    H = ob.operators.apply
    coords = jnp.asarray(tracer.state_coordinates(grid))
    radius = 25e3
    buffer = E[None] + 1.0  # one stored past state
    nodes = tracer.weight_nodes(grid, 3)
    E_a, past = LocalUpdate(coords, euclidean, radius, nodes=nodes)(key, E, buffer, ob, H)
    X5 = []
    for c in np.asarray(nodes.coords):
        rho = np.asarray(gaspari_cohn(np.hypot(*(np.asarray(ob.coords) - c).T) / radius))
        used = np.asarray(ob.valid) & (rho > 0)
        sd = np.where(used, np.asarray(ob.sd) / np.sqrt(np.where(used, rho, 1.0)), 1.0)
        X5.append(np.asarray(etkf_transform(E, ob.values, H, sd, valid=used)))
    X5 = np.array(X5)
    mixed = np.einsum("is,isjk->ijk", nodes.weights, X5[nodes.indices])  # (n, N, N)
    np.testing.assert_allclose(E_a, np.einsum("ijk,ki->ji", mixed, np.asarray(E)),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(past[0], np.einsum("ijk,ki->ji", mixed, np.asarray(buffer[0])),
                               rtol=0, atol=1e-10)
    plain = LocalUpdate(coords, euclidean, radius)(key, E, buffer, ob, H)
    one = LocalUpdate(coords, euclidean, radius, nodes=tracer.weight_nodes(grid, 1))(
        key, E, buffer, ob, H)
    for a, b in zip(plain, one, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_collapse_is_detected_and_explained(rng):
    grid, velocity, times, obs = small_problem(rng, T=8, n_obs=10)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    # no process noise and a tiny first-map spread: the ensemble is sure and wrong
    params = dict(PARAMS, noise_sd=0.0, initial_sd=1e-3)
    params.pop("velocity_scale")
    with pytest.warns(tb.SamplingWarning, match="ensemble collapse.*raise inflation"):
        post = tb.fit(model, obs, times, method="etkf", ensemble_size=8, parameters=params,
                      progress=False)
    assert "ensemble collapse" in post.check_diagnostics()[0]


def test_bad_ensemble_inputs_say_what_to_change(rng):
    grid, velocity, times, obs = small_problem(rng)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['diffusion'\]"):
        point_parameters(model, {"diffusion": 1.0})
    with pytest.raises(ValueError, match="ETKF: ensemble_size: expected an integer >= 2, got 1"):
        tb.fit(model, obs, times, method="etkf", ensemble_size=1, progress=False)
    with pytest.raises(ValueError, match="LETKF: weight_stride: expected an integer >= 1"):
        tb.fit(model, obs, times, method="letkf", weight_stride=0, progress=False)
    with pytest.raises(ValueError, match=r"method='4dvar'; choose one of \['auto', 'nuts', "
                                         r"'laplace', 'enkf', 'etkf', 'letkf', 'eki'\]"):
        tb.fit(model, obs, times, method="4dvar")
    # a setting the method does not have is an error, never ignored
    with pytest.raises(TypeError, match="method 'etkf' has no setting localisation; its "
                                        "settings are"):
        tb.fit(model, obs, times, method="etkf", localisation=100.0)
    with pytest.raises(TypeError, match=r"give them to it: LETKF\(ensemble_size=...\)"):
        tb.fit(model, obs, times, tb.LETKF(), ensemble_size=8)


@pytest.mark.filterwarnings("ignore::tracerbayes.SamplingWarning")
def test_ensemble_posterior_outputs_round_trip(rng, tmp_path):
    grid, velocity, times, obs = small_problem(rng)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    params = {k: v for k, v in PARAMS.items() if k != "velocity_scale"}
    post = tb.fit(model, obs, times, method="letkf", ensemble_size=16, parameters=params,
                  localisation=30.0, inflation=1.05, progress=False)
    idata = post.to_inference_data()
    assert idata.attrs["inference_method"] == "letkf"
    assert {"posterior", "observed_data", "posterior_predictive",
            "cycle_diagnostics"} <= set(idata.groups())
    assert idata.posterior_predictive["y"].shape == (1, 16, len(obs))
    assert idata.posterior["diffusivity"].values.item() == 400.0
    ds = post.to_netcdf(tmp_path / "posterior.nc", units="degC")
    back = xr.open_dataset(tmp_path / "posterior.nc")
    np.testing.assert_array_equal(back["mean"].values, ds["mean"].values)
    assert back.attrs["method"] == "letkf"
    sample = post.sample_maps(3, jax.random.key(0))
    assert sample.shape == (3, len(times), *grid.shape)
    # its own class under the shared interface: no exact-posterior methods that cannot work
    assert isinstance(post, AbstractPosterior) and not isinstance(post, Posterior)
    assert not hasattr(post, "pointwise_log_likelihood")
    assert post.num_chains == post.num_draws == 1


def test_eki_forward_is_the_negative_log_likelihood_up_to_a_constant(rng, key):
    grid, velocity, times, obs = small_problem(rng, T=5)
    model = AdvectionDiffusionModel(
        grid, GivenVelocity(velocity, scale_prior=dist.LogNormal(0.0, 0.5)), Priors(),
        n_modes=10)
    data = model.prepare(obs, times)
    names = ("diffusivity", "velocity_scale", "noise_sd", "noise_lengthscale_km",
             "initial_sd", "initial_lengthscale_km", "error_scale")
    space = inversion.parameter_space({name: dist.LogNormal(0.0, 1.0) for name in names})
    forward = eki_forward(model, data, names, space, offset=-1e4)

    def loglik(theta):
        p = dict(zip(names, space.to_physical(theta), strict=True))
        padded = KalmanObservations(data.values, data.operators,
                                    model.observation_variances(p, data), data.valid)
        return kalman_log_likelihood(model.state_space(p, data), padded)

    thetas = [jnp.log(jnp.asarray([400.0, 1.0, 0.2, 15.0, 1.0, 20.0, 1.0])),
              jnp.log(jnp.asarray([900.0, 0.5, 0.1, 30.0, 2.0, 40.0, 1.5]))]
    half = [0.5 * float(jnp.sum(forward(t) ** 2)) for t in thetas]
    ll = [float(loglik(t)) for t in thetas]
    assert half[0] - half[1] == pytest.approx(-(ll[0] - ll[1]), rel=1e-9)


def test_eki_method_returns_a_posterior_with_draws(rng):
    grid, velocity, times, obs = small_problem(rng, T=5, n_obs=8)
    model = AdvectionDiffusionModel(
        grid, GivenVelocity(velocity, scale_prior=dist.LogNormal(0.0, 0.5)), Priors(),
        n_modes=10)
    post = tb.fit(model, obs, times, method="eki", ensemble_size=16, eki_iterations=2,
                  eks_iterations=6, progress=False)
    # iterations 4-6 (burn-in 3 = half) of 16 members: 16 chains of 3 draws
    assert post.method == "eki" and post.num_chains == 16 and post.num_draws == 3
    assert post.settings["eks_burn_in"] == 3 and post.settings["eks_time"] > 0
    assert np.all(post.samples["diffusivity"] > 0)
    maps = post.maps(n_draws=8)
    assert np.isfinite(maps["sd"].values[:, grid.mask]).all()
    assert post.to_inference_data().attrs["inference_method"] == "eki"
    # the importance checks read the settings a corrected fit records
    post.settings.update({"importance_draws": 200, "pareto_k": 0.9, "importance_ess": 3.0,
                          "importance_failed": 5})
    messages = " ".join(post.check_diagnostics())
    assert "Pareto k = 0.90 > 0.7" in messages and "failed at 5 of 200" in messages
    post.settings.update({"pareto_k": 0.4, "importance_failed": 2})
    assert not any("importance" in m for m in post.check_diagnostics())
    # members still drifting apart (each its own level): R-hat across member chains flags it
    drift = np.random.default_rng(1).normal(size=(16, 1)) + np.zeros((16, 20))
    post.eks_samples = {name: drift + 0.01 * np.random.default_rng(2).normal(size=(16, 20))
                        for name in post.samples}
    assert any("EKS members disagree" in m for m in post.check_diagnostics())


@pytest.mark.parametrize("burn_in", [-1, 6, 2.5])
def test_eks_burn_in_must_leave_draws(rng, burn_in):
    grid, velocity, times, obs = small_problem(rng)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    with pytest.raises(ValueError, match="EKI: eks_burn_in: (expected an integer >= 0|must be "
                                         "below eks_iterations)"):
        tb.fit(model, obs, times, method="eki", eks_iterations=6, eks_burn_in=burn_in,
               progress=False)


def test_importance_corrected_eki_matches_nuts_on_the_exact_likelihood(rng):
    """EKS then importance sampling against the reduced filter's likelihood gives the same
    posterior moments as NUTS on the same likelihood and priors (LogNormal, so both methods
    see one prior), within their Monte Carlo errors."""
    grid, velocity, times, obs = small_problem(rng, T=6, n_obs=8)
    priors = Priors(noise_sd=dist.LogNormal(np.log(0.2), 0.5),
                    initial_sd=dist.LogNormal(0.0, 0.5))
    model = AdvectionDiffusionModel(
        grid, GivenVelocity(velocity, scale_prior=dist.LogNormal(0.0, 0.5)), priors,
        n_modes=10)
    post = tb.fit(model, obs, times, method="eki", ensemble_size=24, eki_iterations=3,
                  eks_iterations=20, importance_draws=1000, progress=False)
    assert post.num_draws == 1000
    assert post.settings["pareto_k"] < 0.7 and post.settings["importance_ess"] > 100
    nuts = tb.fit(model, obs, times, method="nuts", num_warmup=400, num_samples=600,
                  num_chains=2, progress=False, seed=1)
    for name in ("diffusivity", "noise_sd", "error_scale", "velocity_scale"):
        a = np.log(np.asarray(post.samples[name]).ravel())
        b = np.log(np.asarray(nuts.samples[name]).ravel())
        se = np.hypot(a.std() / np.sqrt(post.settings["importance_ess"]),
                      b.std() / np.sqrt(len(b) / 4))  # NUTS draws: ESS >= a quarter
        assert abs(a.mean() - b.mean()) < 4 * se, (name, a.mean(), b.mean(), se)
        assert a.std() == pytest.approx(b.std(), rel=0.2), name


def test_importance_draws_must_be_a_count(rng):
    grid, velocity, times, obs = small_problem(rng)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    with pytest.raises(ValueError, match="EKI: importance_draws: expected an integer >= 0"):
        tb.fit(model, obs, times, method="eki", importance_draws=-5, progress=False)


@pytest.mark.filterwarnings("ignore::tracerbayes.SamplingWarning")
def test_ensemble_run_writes_netcdf_maps_and_spread_diagnostics(rng, tmp_path):
    from tracerbayes.cli.workflow import TracerInfo, write_outputs

    grid, velocity, times, obs = small_problem(rng, dates=True)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    post = tb.fit(model, obs, times, tb.ETKF(ensemble_size=12, parameters="prior"),
                  progress=False)
    write_outputs(post, tmp_path, TracerInfo(units="degC"), title="ensemble run",
                  say=lambda *a: None)
    cycle = pd.read_csv(tmp_path / "diagnostics" / "cycle.csv")
    assert len(cycle) == len(times) and "innovation_rms" in cycle
    assert (tmp_path / "diagnostics" / "spread.png").stat().st_size > 0
    idata = az.from_netcdf(tmp_path / "diagnostics" / "inference_data.nc")
    assert "cycle_diagnostics" in idata.groups()
    with xr.open_dataset(tmp_path / "posterior.nc") as ds:
        assert ds.attrs["method"] == "etkf"
    assert len(list((tmp_path / "maps").glob("*.png"))) >= 1
