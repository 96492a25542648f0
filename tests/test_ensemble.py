"""Ensemble analyses against dense Kalman references; convergence, mass, inflation, smoother."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracerbayes import ensemble as ens
from tracerbayes import physics
from tracerbayes.exact import kalman
from tracerbayes.grid.core import Grid
from tracerbayes.twin import simulate

TOL = 1e-10


def exact_ensemble(rng, mean, cov, N):
    """An ensemble (N, n) whose sample mean and covariance equal ``mean`` and ``cov`` exactly."""
    n = mean.size
    Z = rng.standard_normal((N, n))
    Q, _ = np.linalg.qr(Z - Z.mean(axis=0))  # orthonormal columns, orthogonal to 1
    return mean + np.sqrt(N - 1.0) * Q @ np.linalg.cholesky(cov).T


def random_problem(rng, n=5, m=3):
    B = rng.standard_normal((n, n))
    P = B @ B.T + 0.5 * np.eye(n)
    return (rng.standard_normal(n), P, rng.standard_normal((m, n)),
            rng.uniform(0.5, 1.5, m), rng.standard_normal(m))


def kalman_analysis(mean, P, H, sd, y):
    K = P @ H.T @ np.linalg.inv(H @ P @ H.T + np.diag(sd**2))
    return mean + K @ (y - H @ mean), (np.eye(mean.size) - K @ H) @ P


def moments(E):
    E = np.asarray(E)
    return E.mean(axis=0), np.cov(E.T)


@pytest.mark.parametrize("rotate", [False, True])
def test_etkf_equals_kalman_analysis(rng, key, rotate):
    mean, P, H, sd, y = random_problem(rng)
    E = exact_ensemble(rng, mean, P, N=9)
    m_ref, P_ref = kalman_analysis(mean, P, H, sd, y)
    E_a = ens.etkf(E, y, H, sd, rotation_key=key if rotate else None)
    m_a, P_a = moments(E_a)
    np.testing.assert_allclose(m_a, m_ref, atol=TOL, rtol=0)
    np.testing.assert_allclose(P_a, P_ref, atol=TOL, rtol=0)
    # a function operator and a padded NaN observation give the same analysis
    E_f = ens.etkf(E, np.append(y, np.nan), lambda x: jnp.append(H @ x, 0.0),
                   np.append(sd, -1.0), valid=np.arange(4) < 3,
                   rotation_key=key if rotate else None)
    np.testing.assert_allclose(E_f, E_a, atol=TOL, rtol=0)


def test_letkf_infinite_radius_equals_etkf(rng):
    mean, P, H, sd, y = random_problem(rng, n=6, m=4)
    E = exact_ensemble(rng, mean, P, N=10)
    distances = rng.uniform(0, 10, (6, 4))
    E_l = ens.letkf(E, y, H, sd, distances=distances, radius=np.inf, batch_size=4)
    np.testing.assert_allclose(E_l, ens.etkf(E, y, H, sd), atol=TOL, rtol=0)


def test_letkf_column_is_etkf_with_tapered_errors(rng):
    """Variable i of the LETKF equals an ETKF whose error sds are divided by sqrt(GC)."""
    mean, P, H, sd, y = random_problem(rng, n=6, m=5)
    E = exact_ensemble(rng, mean, P, N=8)
    coords = np.arange(6.0)[:, None]
    obs_coords = rng.uniform(0, 6, (5, 1))
    distances = ens.distance_table(ens.euclidean, coords, obs_coords)
    radius = 1.5
    E_l = np.asarray(ens.letkf(E, y, H, sd, distances=distances, radius=radius))
    for i in range(6):
        rho = np.asarray(ens.gaspari_cohn(distances[i] / radius))
        used = rho > 0
        local_sd = np.where(used, sd / np.sqrt(np.where(used, rho, 1.0)), 1.0)
        E_ref = ens.etkf(E, y, H, local_sd, valid=used)
        np.testing.assert_allclose(E_l[:, i], E_ref[:, i], atol=TOL, rtol=0)


def test_letkf_weight_interpolation_mixes_node_transforms(rng, key):
    """With nodes, variable i's analysis is ``xbar_i + sum_s w_is T_s A[:, i]`` with ``T_s``
    the node's ETKF transform for tapered errors; nodes at every variable with weight 1 give
    the plain LETKF; the mass-safe version keeps the global ETKF's totals."""
    mean, P, H, sd, y = random_problem(rng, n=7, m=5)
    E = exact_ensemble(rng, mean, P, N=8)
    coords = np.arange(7.0)[:, None]
    obs_coords = rng.uniform(0, 7, (5, 1))
    node_coords = np.array([[0.0], [3.0], [6.0], [7.0]])  # every 3rd point, then the end
    indices = np.array([[0, 1], [0, 1], [0, 1], [1, 2], [1, 2], [1, 2], [2, 3]])
    weights = np.array([[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [1, 0], [2 / 3, 1 / 3],
                        [1 / 3, 2 / 3], [1, 0]])
    nodes = ens.WeightNodes(node_coords, indices, weights)
    radius = 2.0
    got = np.asarray(ens.letkf(E, y, H, sd, radius=radius, nodes=nodes, batch_size=3,
                               distances=ens.distance_table(ens.euclidean, node_coords,
                                                            obs_coords)))
    X5 = []
    for c in node_coords:
        rho = np.asarray(ens.gaspari_cohn(np.abs(obs_coords[:, 0] - c[0]) / radius))
        used = rho > 0
        local_sd = np.where(used, sd / np.sqrt(np.where(used, rho, 1.0)), 1.0)
        X5.append(np.asarray(ens.etkf_transform(E, y, H, local_sd, valid=used)))
    mixed = np.einsum("is,isjk->ijk", weights, np.array(X5)[indices])
    np.testing.assert_allclose(got, np.einsum("ijk,ki->ji", mixed, E), atol=TOL, rtol=0)
    table = ens.distance_table(ens.euclidean, coords, obs_coords)
    one = ens.WeightNodes(coords, np.arange(7)[:, None], np.ones((7, 1)))
    np.testing.assert_allclose(ens.letkf(E, y, H, sd, distances=table, radius=radius, nodes=one),
                               ens.letkf(E, y, H, sd, distances=table, radius=radius),
                               atol=TOL, rtol=0)
    area = rng.uniform(1.0, 2.0, 7)
    safe = ens.mass_safe_letkf(E, y, H, sd, radius=radius, nodes=nodes, cell_area=area,
                               distances=ens.distance_table(ens.euclidean, node_coords,
                                                            obs_coords))
    np.testing.assert_allclose(np.asarray(safe) @ area,
                               np.asarray(ens.etkf(E, y, H, sd)) @ area, rtol=1e-12)
    with pytest.raises(ValueError, match="nodes.indices must lie in"):
        ens.letkf(E, y, H, sd, distances=table[:4], radius=radius,
                  nodes=ens.WeightNodes(node_coords, indices + 1, weights))


def test_gaspari_cohn_and_distances():
    r = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    inner = np.polyval([-1 / 4, 1 / 2, 5 / 8, -5 / 3, 0, 1], r)
    outer = np.polyval([1 / 12, -1 / 2, 5 / 8, 5 / 3, -5, 4], r) - 2 / (3 * r.clip(1e-9))
    expected = np.where(r <= 1, inner, np.where(r < 2, outer, 0.0))
    np.testing.assert_allclose(ens.gaspari_cohn(r), expected, atol=1e-14)
    assert abs(float(ens.gaspari_cohn(2.0 - 1e-9))) < 1e-12  # continuous at the support
    one_degree = np.pi / 180 * ens.EARTH_RADIUS_KM
    np.testing.assert_allclose(ens.great_circle_km(jnp.array([10.0, 0.0]),
                                                   jnp.array([10.0, 1.0])), one_degree)
    np.testing.assert_allclose(ens.great_circle_km(jnp.array([0.0, 0.0]),
                                                   jnp.array([90.0, 0.0])), 90 * one_degree)
    ring = ens.ring_distance(40)
    assert [float(ring(0, j)) for j in (1, 20, 39, 35)] == [1, 20, 1, 5]
    assert float(ens.euclidean(jnp.array([0.0, 3.0]), jnp.array([4.0, 0.0]))) == 5.0


# ------------------------------------------------------------------ convergence to the KF
def linear_model(rng, n=4, m=2, T=4):
    F = 0.9 * np.linalg.qr(rng.standard_normal((n, n)))[0]
    B = rng.standard_normal((n, n))
    Q = 0.1 * (B @ B.T) / n + 0.05 * np.eye(n)
    P0 = np.eye(n)
    H = rng.standard_normal((T, m, n))
    ssm = kalman.LinearGaussianSSM(jnp.zeros(n), jnp.asarray(P0), jnp.asarray(F), jnp.asarray(Q))
    y = rng.standard_normal((T, m))
    sd = np.full((T, m), 0.7)
    obs = ens.CycleObservations(jnp.asarray(y), jnp.asarray(sd), jnp.ones((T, m), bool),
                                jnp.asarray(H))
    ref = kalman.kalman_filter(ssm, kalman.KalmanObservations(y, H, sd**2, obs.valid))
    return ssm, obs, ref


@pytest.mark.parametrize("analysis", [
    pytest.param(ens.enkf_analysis(), marks=pytest.mark.slow), ens.etkf_analysis()],
    ids=["enkf", "etkf"])
def test_ensemble_converges_to_kalman_filter(rng, key, analysis):
    ssm, obs, ref = linear_model(rng)
    n = ssm.initial_mean.size
    Q_sqrt = np.linalg.cholesky(np.asarray(ssm.process_cov))

    def transition(k, E):
        return E @ ssm.transition.T + jax.random.normal(k, E.shape) @ Q_sqrt.T

    def error(k, N):
        k0, kc = jax.random.split(k)
        E0 = jax.random.normal(k0, (N, n))  # m_0 = 0, P_0 = I
        out = ens.run_cycle(kc, transition, E0, obs, analysis, forecast_first=False,
                            store_ensembles=True, progress=False)
        E = out.ensembles[-1]
        mean_err = jnp.linalg.norm(E.mean(0) - ref.filtered_means[-1])
        cov_err = jnp.linalg.norm(jnp.cov(E.T) - ref.filtered_covs[-1])
        return mean_err, cov_err

    sizes = np.array([10, 20, 40, 80])
    keys = jax.random.split(key, 32)
    errors = np.array([[np.mean(e) for e in jax.vmap(functools.partial(error, N=int(N)))(keys)]
                       for N in sizes])
    slopes = [np.polyfit(np.log(sizes), np.log(errors[:, j]), 1)[0] for j in range(2)]
    print("mean/cov errors by N_e:", errors.tolist(), "slopes:", slopes)
    for slope in slopes:
        assert -0.7 <= slope <= -0.3
    assert errors[-1, 0] < 0.15 and errors[-1, 1] < 0.15


# ------------------------------------------------------------------ mass conservation
def closed_basin():
    mask = np.ones((8, 8), bool)
    mask[3:5, 2:6] = False  # an island
    grid = Grid.cartesian(x=(0, 8e4), y=(0, 8e4), resolution=1e4, mask=mask)
    velocity = physics.constant_velocity(grid, 0.05, 0.02)
    return grid, velocity


def test_mass_safe_cycle_keeps_member_totals(key):
    grid, velocity = closed_basin()
    area = jnp.asarray(grid.wet_area)
    n, N, T = grid.n_wet, 8, 12
    dt, diffusivity = 3600.0, 50.0
    substeps = physics.substeps_for(grid, velocity, diffusivity, dt)
    k_pool, k_truth, k_obs, k_ens, k_run = jax.random.split(key, 5)
    pool = jnp.asarray(simulate.mass_free_noise(k_pool, grid, 30, 0.05, 2e4))  # (30, n)

    def noise(k, count):
        return jax.random.normal(k, (count, pool.shape[0])) @ pool / np.sqrt(pool.shape[0])

    def transition(k, E):
        return physics.propagate(grid, E, velocity, diffusivity, dt, substeps=substeps) \
            + noise(k, E.shape[0])

    xc = np.asarray(grid.x)[None, :].repeat(grid.shape[0], 0).ravel()[grid.wet_index]
    yc = np.asarray(grid.y)[:, None].repeat(grid.shape[1], 1).ravel()[grid.wet_index]
    coords = np.stack([xc, yc], axis=1)
    observed = np.arange(0, n, 5)
    H = np.eye(n)[observed]
    truth = 1.0 + np.asarray(noise(k_truth, 1))[0]
    y = np.tile(H @ truth, (T, 1)) + 0.05 * np.asarray(jax.random.normal(k_obs, (T, H.shape[0])))
    obs = ens.CycleObservations(y, np.full(y.shape, 0.05), np.ones(y.shape, bool),
                                np.broadcast_to(H, (T,) + H.shape),
                                np.broadcast_to(coords[observed], (T, H.shape[0], 2)))
    E0 = 1.0 + noise(k_ens, N)  # every member has the same total
    total0 = float(E0[0] @ area)

    def drift(analysis, inflation):
        out = ens.run_cycle(k_run, transition, E0, obs, analysis, inflation=inflation,
                            cell_area=area, progress=False)
        totals = jnp.concatenate([out.forecast_totals, out.member_totals])
        return float(jnp.max(jnp.abs(totals - total0)) / abs(total0))

    def safe_inflation(k, E):
        E = ens.mass_free_multiplicative(E, 1.1, area)
        return ens.mass_free_additive(k, E, noise, area)

    safe = drift(ens.letkf_analysis(coords, ens.euclidean, 2e4, cell_area=area), safe_inflation)
    plain = drift(ens.letkf_analysis(coords, ens.euclidean, 2e4),
                  lambda k, E: ens.multiplicative(E, 1.1))
    plain_localisation = drift(ens.letkf_analysis(coords, ens.euclidean, 2e4), safe_inflation)
    print(f"relative member-total drift: mass-safe {safe:.2e}, plain localisation "
          f"{plain_localisation:.2e}, plain localisation and inflation {plain:.2e}")
    assert safe < 1e-10
    assert plain > 1e-6 and plain_localisation > 1e-6


def test_mass_free_inflation_keeps_totals(rng):
    area = rng.uniform(1, 3, 7)
    E = rng.standard_normal((5, 7))
    E_m = ens.mass_free_multiplicative(jnp.asarray(E), 1.3, area)
    np.testing.assert_allclose(E_m @ area, E @ area, rtol=1e-13)
    assert not np.allclose(ens.multiplicative(jnp.asarray(E), 1.3) @ area, E @ area)
    # on a mass-free ensemble the safe variant equals plain inflation of the anomalies
    A = np.asarray(ens.project_mass_free(jnp.asarray(E), area))
    np.testing.assert_allclose(ens.mass_free_multiplicative(jnp.asarray(A) + 2.0, 1.3, area),
                               ens.multiplicative(jnp.asarray(A) + 2.0, 1.3), atol=1e-13)


def test_relaxation_to_prior_spread_moves_each_cells_spread_back_and_keeps_the_mean(rng):
    """RTPS (Whitaker & Hamill 2012): sigma -> sigma_a + alpha (sigma_f - sigma_a) cell by
    cell, the analysis mean unchanged; the mass-safe form does so for the mass-free part of
    the anomalies and keeps every member's total and the level part exactly."""
    area = rng.uniform(1, 3, 9)
    E_f = rng.standard_normal((6, 9)) * rng.uniform(0.5, 2.0, 9)
    E_a = E_f.mean(axis=0) + 0.3 * (E_f - E_f.mean(axis=0)) + 0.1 * rng.standard_normal((6, 9))
    out = np.asarray(ens.relax_to_prior_spread(jnp.asarray(E_f), jnp.asarray(E_a), 0.7))
    s_f, s_a = E_f.std(axis=0, ddof=1), E_a.std(axis=0, ddof=1)
    np.testing.assert_allclose(out.std(axis=0, ddof=1), s_a + 0.7 * (s_f - s_a), rtol=1e-13)
    np.testing.assert_allclose(out.mean(axis=0), E_a.mean(axis=0), atol=1e-14)
    np.testing.assert_allclose(ens.relax_to_prior_spread(jnp.asarray(E_f), jnp.asarray(E_a),
                                                         0.0), E_a, atol=1e-14)
    safe = np.asarray(ens.relax_to_prior_spread(jnp.asarray(E_f), jnp.asarray(E_a), 0.7, area))
    np.testing.assert_allclose(safe @ area, E_a @ area, rtol=1e-13)
    free = np.asarray(ens.project_mass_free(jnp.asarray(safe - safe.mean(axis=0)), area))
    free_f = np.asarray(ens.project_mass_free(jnp.asarray(E_f - E_f.mean(axis=0)), area))
    free_a = np.asarray(ens.project_mass_free(jnp.asarray(E_a - E_a.mean(axis=0)), area))
    sf, sa = np.sqrt((free_f**2).sum(0) / 5), np.sqrt((free_a**2).sum(0) / 5)
    # the scaled mass-free anomalies, projected once more to restore zero totals
    expected = ens.project_mass_free(jnp.asarray(free_a * (1 + 0.7 * (sf - sa) / sa)), area)
    np.testing.assert_allclose(free, expected, atol=1e-13)


# ------------------------------------------------------------------ adaptive inflation
def test_innovation_inflation_recovers_underdispersion(rng, key):
    """Ensemble covariance P / 2.5 while the truth is drawn from P: lambda -> 2.5."""
    n, m, N, draws, factor = 6, 6, 12, 4000, 2.5
    mean, P, H, sd, _ = random_problem(rng, n, m)
    E = exact_ensemble(rng, mean, P / factor, N)
    L = np.linalg.cholesky(P)
    truth = mean + rng.standard_normal((draws, n)) @ L.T
    y = truth @ H.T + sd * rng.standard_normal((draws, m))
    estimates = jax.vmap(lambda yy: ens.innovation_inflation(jnp.asarray(E), yy, H, sd))(y)
    assert abs(float(jnp.mean(estimates)) - factor) < 0.1
    state = ens.AdaptiveInflation(jnp.asarray(1.0))
    for yy in y[:400]:
        state = ens.adaptive_inflation_update(state, jnp.asarray(E), yy, H, sd, weight=0.02)
    assert abs(float(state.factor) - factor) < 0.5


# ------------------------------------------------------------------ smoother
def test_ensemble_smoother_equals_rts(rng, key):
    """Linear model, no model noise, exact initial moments: EnKS = RTS smoother exactly."""
    n, m, T = 3, 2, 5
    F = 0.95 * np.linalg.qr(rng.standard_normal((n, n)))[0]
    P0 = np.diag([1.0, 2.0, 0.5])
    H = rng.standard_normal((T, m, n))
    y, sd = rng.standard_normal((T, m)), np.full((T, m), 0.8)
    ssm = kalman.LinearGaussianSSM(jnp.zeros(n), jnp.asarray(P0), jnp.asarray(F),
                                   jnp.zeros((n, n)))
    valid = np.ones((T, m), bool)
    ref = kalman.rts_smoother(ssm, kalman.KalmanObservations(y, H, sd**2, valid))
    E0 = exact_ensemble(rng, np.zeros(n), P0, N=6)
    obs = ens.CycleObservations(y, sd, valid, H)
    out = ens.ensemble_smoother(key, lambda k, E: E @ F.T, E0, obs, forecast_first=False)
    for t in range(T):
        m_s, P_s = moments(out.smoothed[t])
        np.testing.assert_allclose(m_s, ref.smoothed_means[t], atol=1e-9)
        np.testing.assert_allclose(P_s, ref.smoothed_covs[t], atol=1e-9)
        np.testing.assert_allclose(moments(out.filtered[t])[0], ref.filtered_means[t],
                                   atol=1e-9)
    lagged = ens.ensemble_smoother(key, lambda k, E: E @ F.T, E0, obs, lag=T,
                                   forecast_first=False)
    np.testing.assert_allclose(lagged.smoothed, out.smoothed, atol=1e-12)
    lag1 = ens.ensemble_smoother(key, lambda k, E: E @ F.T, E0, obs, lag=1,
                                 forecast_first=False)
    np.testing.assert_allclose(lag1.smoothed[-2:], out.smoothed[-2:], atol=1e-9)
    assert not np.allclose(lag1.smoothed[0], out.smoothed[0], atol=1e-6)


# ------------------------------------------------------------------ validation
def test_bad_input_raises(rng, key):
    E = rng.standard_normal((4, 3))
    H, y, sd = np.eye(3)[:2], np.zeros(2), np.ones(2)
    with pytest.raises(ValueError, match="N_e >= 2"):
        ens.etkf(E[:1], y, H, sd)
    with pytest.raises(ValueError, match="operator H has shape"):
        ens.etkf(E, y, np.eye(3), sd)
    with pytest.raises(ValueError, match="obs_sd has shape"):
        ens.enkf(key, E, y, H, np.ones(3))
    with pytest.raises(ValueError, match="not > 0"):
        ens.etkf(E, y, H, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="NaN"):
        ens.letkf(E, np.array([np.nan, 0.0]), H, sd, distances=np.zeros((3, 2)), radius=1.0)
    with pytest.raises(ValueError, match=r"distances has shape"):
        ens.letkf(E, y, H, sd, distances=np.zeros((2, 2)), radius=1.0)
    obs = ens.CycleObservations(np.zeros((2, 2)), np.ones((2, 2)), np.ones((2, 2), bool),
                                np.zeros((2, 2, 3)))
    step = ens.etkf_analysis()
    with pytest.raises(ValueError, match="time 1, row 0"):
        ens.run_cycle(key, lambda k, E: E, E, obs._replace(values=np.array(
            [[0.0, 0.0], [np.nan, 0.0]])), step, progress=False)
    with pytest.raises(ValueError, match="operators has shape"):
        ens.run_cycle(key, lambda k, E: E, E, obs._replace(operators=np.zeros((2, 2, 4))),
                      step, progress=False)
    with pytest.raises(ValueError, match="not positive"):
        ens.run_cycle(key, lambda k, E: E, E, obs._replace(sd=np.zeros((2, 2))), step,
                      progress=False)


# ------------------------------------------------------------------ cycle mechanics
def test_chunked_cycle_equals_single_scan_and_reuses_compilation(rng, key):
    """Progress chunks give the single scan's results; same callables do not recompile."""
    n, m, T, N = 4, 2, 7, 5
    F = 0.9 * np.linalg.qr(rng.standard_normal((n, n)))[0]
    obs = ens.CycleObservations(rng.standard_normal((T, m)), np.full((T, m), 0.5),
                                np.ones((T, m), bool), rng.standard_normal((T, m, n)))

    def transition(k, E):
        return E @ F.T + 0.1 * jax.random.normal(k, E.shape)

    analysis = ens.enkf_analysis()
    E0 = rng.standard_normal((N, n))
    whole = ens.run_cycle(key, transition, E0, obs, analysis, progress=False)
    chunked = ens.run_cycle(key, transition, E0, obs, analysis, progress=True, chunk_size=3)
    for field, a, b in zip(whole._fields, whole, chunked, strict=True):
        if a is not None:
            np.testing.assert_allclose(a, b, atol=1e-12, err_msg=field)
    compiled = ens.window._scan._cache_size()
    again = ens.run_cycle(jax.random.key(1), transition, E0 + 1.0, obs, analysis,
                          progress=False)
    assert ens.window._scan._cache_size() == compiled
    assert not np.allclose(again.final, whole.final)


# ------------------------------------------------------------------ adaptive inflation
def _spread_skill(N, adaptive, seed, n=8, m=4, T=400, sd=0.3):
    """Forecast spread/skill of an ETKF (N members) tracking a linear-Gaussian truth drawn
    from the same model, over the second half of T cycles:
    sqrt(mean spread^2 in observation space + r) / RMS innovation (1 when honest, as the
    Kalman filter is)."""
    from tracerbayes.ensemble.window import AdaptiveSpec, GlobalUpdate, smooth_window

    rng = np.random.default_rng(seed)
    F = 0.98 * np.linalg.qr(rng.standard_normal((n, n)))[0]
    B = rng.standard_normal((n, n))
    Lq = np.linalg.cholesky(0.05 * (B @ B.T) / n + 0.02 * np.eye(n))
    H = np.zeros((T, m, n))
    for k in range(T):
        H[k, np.arange(m), rng.choice(n, m, replace=False)] = 1.0
    x, truth = np.zeros(n), []
    for k in range(T):
        x = F @ x + Lq @ rng.standard_normal(n) if k else x
        truth.append(x)
    y = np.einsum("tmn,tn->tm", H, np.array(truth)) + sd * rng.standard_normal((T, m))
    obs = ens.CycleObservations(jnp.asarray(y), jnp.full((T, m), sd), jnp.ones((T, m), bool),
                                jnp.asarray(H))

    def transition(k, E):
        return E @ F.T + jax.random.normal(k, E.shape) @ Lq.T

    key = jax.random.key(seed)
    out = smooth_window(key, transition, jax.random.normal(key, (N, n)), obs,
                        GlobalUpdate("etkf"), lag=0, forecast_first=False, progress=False,
                        adaptive=AdaptiveSpec(ens.multiplicative) if adaptive else None)
    half = slice(T // 2, T)
    spread = np.mean(np.asarray(out.innovation_spread[half]) ** 2) + sd**2
    chi2 = float(np.mean(out.innovation_chi2[half]))
    return np.sqrt(spread / np.mean(np.asarray(out.innovation_rmse[half]) ** 2)), chi2


@pytest.mark.parametrize("seed", [0, 2])
def test_adaptive_inflation_keeps_spread_skill_honest_on_a_linear_model(seed):
    """6 members for 8 variables: without inflation the ETKF is overconfident (spread/skill
    about 0.65, innovations 2x their predicted variance); the adaptive inflation brings
    spread/skill into [0.8, 1.25] and the normalised innovation chi-square near 1."""
    plain, chi2_plain = _spread_skill(6, False, seed)
    adapted, chi2 = _spread_skill(6, True, seed)
    assert plain < 0.75 and chi2_plain > 1.6
    assert 0.8 <= adapted <= 1.25
    assert 0.7 <= chi2 <= 1.4
