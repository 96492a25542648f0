"""Held-out validation (tracerbayes.posterior.validation) against direct computations.

* Splits: the held-out and kept rows partition the observations; whole platforms or whole
  blocks go together.
* Exact path: the predictive mean and variance of each held-out value equal the dense
  Gaussian conditional of the held-out values on the kept ones, built from the trajectory's
  stacked moments (one parameter draw), to 1e-8.
* Ensemble path: the predictive moments are the smoothed members interpolated with the dense
  ``H`` of the held-out observations, plus the error variance; the scores equal the
  closed-form Gaussian CRPS, RMSE and coverage computed here with scipy.
"""

import numpy as np
import pandas as pd
import pytest
from dense_reference import stacked_moments  # noqa: E402
from scipy import stats

import tracerbayes as tb
from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, Priors
from tracerbayes.grid.core import Grid
from tracerbayes.posterior.exact import Posterior
from tracerbayes.posterior.validation import calibration_message, holdout_scores, split_holdout

DAY = 86400.0
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.1, "noise_lengthscale_km": 30.0,
          "initial_sd": 0.6, "initial_lengthscale_km": 40.0, "error_scale": 1.2,
          "u": 0.05, "v": -0.03}


def problem(n_per_day=8, days=4, seed=2):
    mask = np.ones((6, 8), bool)
    mask[2:4, 3] = False
    grid = Grid.cartesian(x=(0.0, 80e3), y=(0.0, 60e3), resolution=10e3, mask=mask)
    rng = np.random.default_rng(seed)
    wet = np.argwhere(mask)
    rows = []
    for day in range(days):
        for j, i in wet[rng.choice(len(wet), n_per_day, replace=False)]:
            rows.append({"time": day * DAY, "x": grid.x[i] + rng.uniform(-3e3, 3e3),
                         "y": grid.y[j] + rng.uniform(-3e3, 3e3),
                         "value": 5 + rng.normal(), "error": rng.uniform(0.1, 0.3),
                         "platform": ["argo", "glider", "ship"][int(rng.integers(3))]})
    obs = tb.Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y",
                                         platform="platform")
    return grid, obs, np.arange(days) * DAY


@pytest.mark.parametrize("by", ["random", "platform", "block"])
def test_split_partitions_the_observations(by):
    _, obs, _ = problem()
    split = split_holdout(obs, 0.25, by, seed=4)
    n = len(obs)
    assert len(split.train) + len(split.test) == n
    assert len(split.test) >= 1 and len(split.train) >= 1
    kept = np.setdiff1d(np.arange(n), split.test_rows)
    np.testing.assert_array_equal(split.test.value, obs.value[split.test_rows])
    np.testing.assert_array_equal(split.train.value, obs.value[kept])
    if by == "random":
        assert len(split.test) == round(0.25 * n)
    if by == "platform":  # whole platforms
        assert not set(split.test.platform) & set(split.train.platform)
    again = split_holdout(obs, 0.25, by, seed=4)
    np.testing.assert_array_equal(again.test_rows, split.test_rows)


def test_split_rejects_bad_requests():
    _, obs, _ = problem()
    with pytest.raises(ValueError, match="holdout by='rows'"):
        split_holdout(obs, 0.1, "rows")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        split_holdout(obs, 1.0)
    single = obs.select(obs.platform == "argo")
    with pytest.raises(ValueError, match="at least two platforms"):
        split_holdout(single, 0.2, "platform")


def stacked(ssm, T):
    F = np.broadcast_to(np.asarray(ssm.transition), (T - 1,) + ssm.transition.shape[-2:])
    Q = np.broadcast_to(np.asarray(ssm.process_cov), (T - 1,) + ssm.process_cov.shape[-2:])
    return stacked_moments(ssm.initial_mean, ssm.initial_cov, F, Q)


def rows_of(data, T):
    """Stacked (valid observations, T K) operator, values and error sd, in (time, row) order."""
    ops, valid = np.asarray(data.operators), np.asarray(data.valid)
    K = ops.shape[-1]
    big = np.zeros((valid.sum(), T * K))
    r = 0
    for k in range(T):
        for s in np.flatnonzero(valid[k]):
            big[r, k * K:(k + 1) * K] = ops[k, s]
            r += 1
    return big, np.asarray(data.values)[valid], np.asarray(data.errors)[valid]


def test_exact_predictive_equals_the_dense_gaussian_conditional():
    grid, obs, times = problem()
    split = split_holdout(obs, 0.3, "random", seed=1)
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=14)
    data = model.prepare(split.train, times)
    samples = {k: np.full((1, 1), v) for k, v in PARAMS.items()}
    post = Posterior(model, split.train, times, data, samples, {}, "nuts", {})
    means, sds = post.predict_observations(split.test)
    # dense reference: joint Gaussian of kept and held-out values, condition
    ssm = model.state_space(PARAMS, data)
    mu, cov = stacked(ssm, len(times))
    H1, y1, e1 = rows_of(data, len(times))
    test_data = model.prepare(split.test, times)
    H2, y2, e2 = rows_of(test_data, len(times))
    es = PARAMS["error_scale"]
    # each observation's noise also holds the variance of the modes beyond the 14 kept
    r1 = np.asarray(model.representation_variances(PARAMS, data))[np.asarray(data.valid)]
    r2 = np.asarray(model.representation_variances(PARAMS, test_data))[
        np.asarray(test_data.valid)]
    assert np.all(r1 > 0) and np.all(r2 > 0)
    S11 = H1 @ cov @ H1.T + np.diag((es * e1) ** 2 + r1)
    S21 = H2 @ cov @ H1.T
    gain = np.linalg.solve(S11, S21.T).T
    mean = H2 @ mu + gain @ (y1 - H1 @ mu)
    var = np.diag(H2 @ cov @ H2.T - gain @ S21.T) + (es * e2) ** 2 + r2
    np.testing.assert_allclose(means[0], mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sds[0] ** 2, var, rtol=1e-8)
    np.testing.assert_array_equal(post.predicted_values(split.test), y2)


def test_ensemble_holdout_scores_equal_a_direct_computation():
    grid, obs, times = problem(n_per_day=10)
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=8)
    post = tb.fit(model, obs, times, method="etkf", ensemble_size=16, progress=False,
                  parameters={"noise_sd": 0.3}, holdout=0.2, seed=3)
    split = post.holdout
    assert len(post.obs) == len(split.train)
    prepared = split.test.prepare(grid, times)
    H = prepared.dense_H()  # (T, m_max, n) in padded (time, row) order
    pad = prepared.padded()
    order = np.argsort(prepared.time_index, kind="stable")  # padded order -> prepared order
    m, var = [], []
    for k in range(len(times)):
        for s in np.flatnonzero(pad.valid[k]):
            values = post.members[k] @ H[k, s]  # (N_e,)
            m.append(values.mean() + post.offset)  # fit removed the data mean
            var.append(values.var(ddof=1) + pad.variances[k, s])
    mean, sd = np.empty(len(m)), np.empty(len(m))
    mean[order], sd[order] = m, np.sqrt(var)
    y = prepared.value
    z = (y - mean) / sd
    crps = sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    q = stats.norm.ppf(0.95)
    expected = {"n": y.size, "rmse": np.sqrt(np.mean((mean - y) ** 2)), "crps": crps.mean(),
                "coverage": np.mean(np.abs(y - mean) <= q * sd),
                "interval_width": np.mean(2 * q * sd)}
    got = post.validation
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    assert got == holdout_scores(post, split.test)
    assert post.settings["holdout"] == 0.2


def test_calibration_message_flags_coverage_beyond_sampling_error():
    """Three binomial sd (at least 5 points) either side of the level: quiet inside, a
    warning that says which way outside; the ensemble's names its settings."""
    assert calibration_message({"n": 400, "level": 0.9, "coverage": 0.86}, "letkf") is None
    low = calibration_message({"n": 400, "level": 0.9, "coverage": 0.42}, "letkf")
    assert low.startswith("the maps are overconfident: only 42% of 400") and "relaxation" in low
    high = calibration_message({"n": 400, "level": 0.9, "coverage": 0.99}, "laplace")
    assert high.startswith("the maps are underconfident: 99% of 400")
    # few held-out values: the binomial sd, 3 sqrt(0.09 / 25) = 0.18, sets the margin
    assert calibration_message({"n": 25, "level": 0.9, "coverage": 0.76}, "nuts") is None
    assert calibration_message({"n": 25, "level": 0.9, "coverage": 0.68}, "nuts") is not None


def test_an_overconfident_ensemble_fit_warns_from_its_holdout():
    """No process noise and a sure first map: the ETKF's held-out coverage collapses, and the
    fit says so (CalibrationWarning), as the ensemble's innovations alone may not."""
    grid, obs, times = problem(n_per_day=10)
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.1), Priors(), n_modes=8)
    with pytest.warns(tb.CalibrationWarning, match="overconfident"):
        post = tb.fit(model, obs, times, method="etkf", ensemble_size=16, progress=False,
                      parameters={"noise_sd": 1e-6, "initial_sd": 1e-3}, holdout=0.3, seed=1)
    assert post.validation["coverage"] < 0.5
