"""Scores against independent references: quadrature of the CRPS integral, the energy-form
definition, root-finding quantiles, hand-built coverage cases; the NaN policy; xarray."""

import itertools

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, optimize
from scipy.stats import norm

from tracerbayes.posterior import metrics


def crps_by_quadrature(cdf, y, lo, hi, breakpoints=()):
    """int (F(x) - 1{x >= y})^2 dx over [lo, hi], split at y (and at any breakpoints)."""
    below = integrate.quad(lambda x: cdf(x) ** 2, lo, y, limit=500,
                           points=[b for b in breakpoints if lo < b < y] or None,
                           epsabs=1e-13, epsrel=1e-12)[0]
    above = integrate.quad(lambda x: (1.0 - cdf(x)) ** 2, y, hi, limit=500,
                           points=[b for b in breakpoints if y < b < hi] or None,
                           epsabs=1e-13, epsrel=1e-12)[0]
    return below + above


def test_crps_gaussian_matches_quadrature():
    cases = list(itertools.product([-1.3, 0.0, 2.5], [0.2, 1.0, 3.7], [-4.0, 0.1, 1.9, 9.0]))
    mean, sd, y = (np.array(c) for c in zip(*cases, strict=True))
    got = metrics.crps_gaussian(y, mean, sd, reduce=False)
    want = [crps_by_quadrature(norm(m, s).cdf, t, m - 40 * s, m + 40 * s) for m, s, t in cases]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert metrics.crps_gaussian(y, mean, sd) == pytest.approx(np.mean(want), rel=1e-9)


def test_crps_mixture_matches_quadrature(rng):
    for M in (1, 2, 5):
        means, sds = rng.normal(0.0, 2.0, M), rng.uniform(0.3, 1.5, M)
        for y in (-3.0, 0.4, 5.0):

            def cdf(x, means=means, sds=sds):
                return norm.cdf((x - means) / sds).mean()

            want = crps_by_quadrature(cdf, y, means.min() - 40 * sds.max(),
                                      means.max() + 40 * sds.max())
            got = metrics.crps_mixture(np.array(y), means, sds)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    # one component is the Gaussian score; members along another axis give the same numbers
    means, sds, truth = rng.normal(size=(6, 4)), rng.uniform(0.5, 2.0, (6, 4)), rng.normal(size=6)
    one = metrics.crps_mixture(truth, means[:, :1], sds[:, :1], member_axis=-1, reduce=False)
    np.testing.assert_allclose(one, metrics.crps_gaussian(truth, means[:, 0], sds[:, 0],
                                                          reduce=False), rtol=1e-13)
    np.testing.assert_allclose(metrics.crps_mixture(truth, means.T, sds.T, reduce=False),
                               metrics.crps_mixture(truth, means, sds, member_axis=1,
                                                    reduce=False), rtol=1e-14)


def test_crps_ensemble_matches_definition_and_integral(rng):
    M = 7
    members, truth = rng.normal(size=(M, 4)), rng.normal(size=4)
    for fair in (False, True):
        got = metrics.crps_ensemble(truth, members, fair=fair, reduce=False)
        pairs = M * (M - 1) if fair else M * M
        want = [np.abs(x - y).mean() - 0.5 * np.abs(x[:, None] - x[None, :]).sum() / pairs
                for x, y in zip(members.T, truth, strict=True)]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    for x, y in zip(members.T, truth, strict=True):  # plain score = integral of the ECDF

        def ecdf(t, x=x):
            return np.mean(x <= t)

        want = crps_by_quadrature(ecdf, y, x.min() - 1.0, x.max() + 1.0, breakpoints=x)
        assert metrics.crps_ensemble(np.array(y), x) == pytest.approx(want, rel=1e-9)


def test_fair_crps_is_unbiased_for_the_gaussian_score(rng):
    y, M, n = 0.7, 4, 40_000
    members = rng.normal(size=(M, n))
    fair = metrics.crps_ensemble(np.full(n, y), members, fair=True, reduce=False)
    exact = metrics.crps_gaussian(np.array(y), 0.0, 1.0)
    assert abs(fair.mean() - exact) < 4 * fair.std() / np.sqrt(n)
    plain = metrics.crps_ensemble(np.full(n, y), members, reduce=False)
    # the plain score exceeds the fair one by E|X - X'| / (2 M) = 1 / (sqrt(pi) M) on average
    assert plain.mean() - fair.mean() == pytest.approx(1 / np.sqrt(np.pi) / M, rel=2e-2)


def test_rmse_and_bias_skip_land(rng):
    truth = rng.normal(size=(5, 6))
    forecast = truth + rng.normal(size=(5, 6))
    truth[0, :3] = np.nan
    forecast[0, 0] = np.nan  # on land: allowed
    err = (forecast - truth)[np.isfinite(truth)]
    assert metrics.rmse(truth, forecast) == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-14)
    assert metrics.bias(truth, forecast) == pytest.approx(np.mean(err), rel=1e-13)
    pointwise = metrics.bias(truth, forecast, reduce=False)
    assert np.isnan(pointwise[0, :3]).all() and np.isfinite(pointwise[1:]).all()


def test_coverage_constructed_cases():
    offsets = np.array([0.0, 1.0, 1.64, 1.65, -2.0, -1.5, np.nan])  # NaN: land, skipped
    mean, sd = 3.0, 2.0
    assert 1.64 < norm.ppf(0.95) < 1.65
    assert metrics.coverage_gaussian(mean + offsets * sd, mean, sd, level=0.9) == 4 / 6
    lower, upper = np.array([0.0, 0.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0, 2.0])
    truth = np.array([0.0, 1.0, 1.0000001, 0.5])  # closed interval: the bounds are inside
    assert metrics.coverage_interval(truth, lower, upper) == 0.5
    np.testing.assert_array_equal(metrics.coverage_interval(truth, lower, upper, reduce=False),
                                  [1.0, 1.0, 0.0, 0.0])


def test_mixture_quantile_and_coverage(rng):
    means, sds = np.array([-10.0, 0.0, 10.0]), np.array([1.0, 2.0, 0.5])
    for prob in (0.05, 0.5, 0.95):
        want = optimize.brentq(lambda x, p=prob: norm.cdf((x - means) / sds).mean() - p,
                               -50, 50, xtol=1e-14)
        assert metrics.mixture_quantile(means, sds, prob) == pytest.approx(want, abs=1e-11)
    n, level = 20_000, 0.8  # draws from the mixture: coverage within binomial error
    component = rng.integers(0, 3, n)
    truth = rng.normal(means[component], sds[component])
    tiled_means, tiled_sds = np.tile(means[:, None], (1, n)), np.tile(sds[:, None], (1, n))
    coverage = metrics.coverage_mixture(truth, tiled_means, tiled_sds, level=level)
    assert abs(coverage - level) < 4 * np.sqrt(level * (1 - level) / n)
    # hand-built: the 90% interval of this mixture is [q05, q95]
    q05, q95 = (metrics.mixture_quantile(means, sds, p) for p in (0.05, 0.95))
    cells = np.array([q05 - 1e-6, q05 + 1e-6, 0.0, q95 - 1e-6, q95 + 1e-6])
    got = metrics.coverage_mixture(cells, np.tile(means[:, None], (1, 5)),
                                   np.tile(sds[:, None], (1, 5)), level=0.9, reduce=False)
    np.testing.assert_array_equal(got, [0.0, 1.0, 1.0, 1.0, 0.0])


def test_nan_policy_errors():
    truth = np.array([1.0, 2.0, np.nan, 4.0])
    with pytest.raises(ValueError, match=r"rmse: 2 forecast value\(s\) are NaN or infinite"):
        metrics.rmse(truth, np.array([np.nan, np.inf, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"1 sd value\(s\) are NaN"):
        metrics.crps_gaussian(truth, 0.0, np.array([1.0, np.nan, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"1 sd value\(s\) are not positive"):
        metrics.crps_gaussian(truth, 0.0, np.array([1.0, -1.0, 1.0, 1.0]))
    members = np.ones((3, 4))
    members[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"1 ensemble value\(s\) are NaN"):
        metrics.crps_ensemble(truth, members)
    with pytest.raises(ValueError, match="no finite value"):
        metrics.bias(np.full(2, np.nan), np.zeros(2))
    with pytest.raises(ValueError, match="1 interval"):
        metrics.coverage_interval(np.array([0.5, 2.5]), np.array([0.0, 3.0]),
                                  np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="level must be in"):
        metrics.coverage_gaussian(truth, 0.0, 1.0, level=90)
    with pytest.raises(ValueError, match="at least 2 members"):
        metrics.crps_ensemble(truth, np.ones((1, 4)), fair=True)
    # NaN truth (land): NaN pointwise score, no error, even with a NaN forecast there
    scores = metrics.crps_gaussian(truth, np.array([0.0, 0.0, np.nan, 0.0]), 1.0, reduce=False)
    assert np.isnan(scores[2]) and np.isfinite(scores[[0, 1, 3]]).all()


def test_xarray_inputs_match_numpy(rng):
    coords = {"time": [0, 1, 2], "lat": [10.0, 10.5]}
    truth = rng.normal(size=(3, 2))
    truth[1, 1] = np.nan
    members = rng.normal(size=(5, 3, 2))
    t = xr.DataArray(truth, coords=coords, dims=("time", "lat"))
    ens = xr.DataArray(members, coords=coords, dims=("member", "time", "lat"))
    got = metrics.crps_ensemble(t, ens, fair=True, reduce=False)
    assert isinstance(got, xr.DataArray) and got.dims == ("time", "lat")
    np.testing.assert_allclose(got.values, metrics.crps_ensemble(truth, members, fair=True,
                                                                 reduce=False), rtol=1e-14)
    assert metrics.crps_ensemble(t, ens) == pytest.approx(
        metrics.crps_ensemble(truth, members), rel=1e-14)
    mean = ens.mean("member")
    assert metrics.rmse(t, mean) == pytest.approx(metrics.rmse(truth, mean.values), rel=1e-14)
    sds = xr.ones_like(ens).rename(member="draw")
    mixture = metrics.crps_mixture(t, ens.rename(member="draw"), sds, reduce=False)
    np.testing.assert_allclose(mixture.values, metrics.crps_mixture(
        truth, members, np.ones_like(members), reduce=False), rtol=1e-14)
    gaussian = metrics.coverage_gaussian(t, mean, xr.ones_like(mean), reduce=False)
    assert isinstance(gaussian, xr.DataArray) and gaussian.dims == ("time", "lat")
