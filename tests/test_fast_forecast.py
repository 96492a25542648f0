"""The fast ensemble forecast against the reference one (issue 17 item 1), in float64.

- the five-point stencil is the operator of :func:`physics.tendency`, SSPRK(2, 2) is Heun;
- SSPRK(s, 2) converges at second order to a fine Heun reference, and the fast scheme's
  error over a day is within a small multiple of the reference scheme's (both against the
  fine reference: the tolerance is the reference's own time-stepping error);
- every member's total is kept to 1e-12 relative, float32 arithmetic included;
- the coarse-grid noise has the reference's law: exact open-water variance 1 (the
  normaliser), exact covariances within 0.03 in correlation at a few lags, and the
  empirical covariance of many draws within sampling error; each draw mass-free.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracerbayes import physics
from tracerbayes.ensemble import tracer
from tracerbayes.grid.core import Grid
from tracerbayes.physics import operator
from tracerbayes.twin.experiment import coastal_grid, eddy_velocity

DAY = 86400.0


def _island_grid(n: int, resolution: float = 5e3) -> Grid:
    """A square sea of ``n`` x ``n`` cells with an island and a narrow peninsula."""
    s = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(s, s)
    mask = ((x - 0.3) / 0.08) ** 2 + ((y - 0.3) / 0.06) ** 2 > 1
    mask &= ~((np.abs(y - 0.8) < 0.03) & (x < 0.4))
    return Grid.cartesian(x=(0.0, n * resolution), y=(0.0, n * resolution),
                          resolution=resolution, mask=mask)


@pytest.fixture(scope="module")
def flow():
    grid = coastal_grid(48, 10e3)
    return grid, eddy_velocity(grid, jax.random.key(3))


def test_stencil_is_the_operator(flow):
    grid, velocity = flow
    field = jax.random.normal(jax.random.key(0), (3, *grid.shape))
    C = operator.stencil_coefficients(grid, velocity, 250.0)
    reference = physics.tendency(grid, field, velocity, 250.0)
    got = jnp.where(grid.mask, operator.apply_stencil(C, jnp.where(grid.mask, field, 0.0)), 0)
    scale = float(jnp.max(jnp.abs(reference)))
    np.testing.assert_allclose(got, jnp.where(grid.mask, reference, 0.0), atol=1e-14 * scale)


def test_two_stages_are_heun(flow):
    grid, velocity = flow
    E = 10 + jax.random.normal(jax.random.key(1), (4, grid.n_wet))
    heun = physics.propagate(grid, E, velocity, 250.0, DAY, substeps=17)
    ssp = operator.propagate_ssp(grid, E, velocity, 250.0, DAY, stages=2, steps=17)
    np.testing.assert_allclose(ssp, heun, rtol=1e-13)


def test_ssp_converges_at_second_order_and_keeps_totals(flow):
    grid, velocity = flow
    field = tracer.noise_field(grid, 40e3)
    E = 10 + tracer.sample_noise(jax.random.key(2), field, 4, 1.0, mass_free=False)
    area = jnp.asarray(grid.wet_area)
    n = physics.substeps_for(grid, velocity, 250.0, DAY)
    fine = physics.propagate(grid, E, velocity, 250.0, DAY, substeps=40 * n)
    errors = []
    base = -(-n // 4)  # the fewest steps of SSPRK(5, 2) within the CFL bound
    for steps in (base, 2 * base, 4 * base):
        out = operator.propagate_ssp(grid, E, velocity, 250.0, DAY, stages=5, steps=steps)
        errors.append(float(jnp.sqrt(jnp.mean((out - fine) ** 2))))
        np.testing.assert_allclose(out @ area, E @ area, rtol=1e-13)
        assert float(out.min()) >= float(E.min()) - 1e-12  # positive (maximum principle)
    order = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((order > 1.6) & (order < 2.4)), (errors, order)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fast_propagation_matches_reference(flow, precision):
    """Without noise, fast and reference moves differ by less than the reference's own
    time-stepping error times 20 (fast: ~half the applications; both second order), and
    float32 adds only its round-off (1e-6 of the values)."""
    grid, velocity = flow
    field = tracer.noise_field(grid, 40e3)
    E = 10 + tracer.sample_noise(jax.random.key(2), field, 4, 1.0, mass_free=False)
    area = jnp.asarray(grid.wet_area)
    reference = tracer.tracer_transition(grid, velocity, 250.0, DAY, field, 0.0)
    fast = tracer.tracer_transition(grid, velocity, 250.0, DAY, field, 0.0,
                                    scheme=tracer.FastForecast(precision=precision))
    assert fast.substeps * fast.stages < reference.substeps * reference.stages
    fine = physics.propagate(grid, E, velocity, 250.0, DAY, substeps=40 * reference.substeps)
    ref_error = float(jnp.max(jnp.abs(reference(jax.random.key(0), E) - fine)))
    got = fast(jax.random.key(0), E)
    assert float(jnp.max(jnp.abs(got - fine))) < 20 * ref_error + 1e-5 * (precision == "float32")
    np.testing.assert_allclose(got @ area, E @ area, rtol=1e-13)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fast_transition_keeps_member_totals(precision):
    grid = _island_grid(40)
    velocity = eddy_velocity(grid, jax.random.key(4))
    field = tracer.noise_field(grid, 30e3)
    E = 15 + tracer.sample_noise(jax.random.key(5), field, 8, 1.0, mass_free=False)
    step = tracer.tracer_transition(grid, velocity, 200.0, DAY, field, 0.05,
                                    scheme=tracer.FastForecast(precision=precision))
    moved = jax.jit(step)(jax.random.key(6), E)
    basins = np.asarray(field.basins)
    for b in range(basins.max() + 1):
        a = jnp.asarray(np.where(basins == b, grid.wet_area, 0.0))
        np.testing.assert_allclose(moved @ a, E @ a, rtol=1e-12)
    assert float(jnp.std(moved - E)) > 0.01  # the noise was added


def _covariances(noise: tracer.CoarseNoise, probes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Exact covariances (before the mass-free projection) of every wet cell with each probe
    cell, fast and reference: ``A A^T e`` with ``A`` the generator on unit white noise. On a
    uniform Cartesian grid both heat kernels are symmetric and the copy onto blocks has the
    block sum as its adjoint, so ``A^T`` is applied as the same steps in reverse order, here
    with :func:`physics.heat_kernel` (the reference implementation), not the stencil series."""
    grid, coarse = noise.field.grid, noise.coarse
    e = np.zeros((len(probes), grid.n_wet))
    e[np.arange(len(probes)), probes] = 1.0
    # fast: N F P C W_c^2 C P^T F N e
    up = physics.heat_kernel(grid, e * noise.normaliser, noise.fine_lengthscale)
    blocks = jnp.zeros((len(probes), coarse.n_wet)).at[:, noise.parent].add(up)
    mid = physics.heat_kernel(coarse, blocks, noise.coarse_lengthscale) / coarse.wet_area
    mid = physics.heat_kernel(coarse, mid, noise.coarse_lengthscale)
    fast = physics.heat_kernel(grid, mid[:, noise.parent], noise.fine_lengthscale)
    fast = fast * noise.normaliser
    # reference: N G W^2 G N e
    field = noise.field
    ref = physics.heat_kernel(grid, e * field.normaliser, field.lengthscale) / grid.wet_area
    ref = physics.heat_kernel(grid, ref, field.lengthscale) * field.normaliser
    return np.asarray(fast), np.asarray(ref)


def _open_water(grid: Grid, cells: int) -> np.ndarray:
    """Wet cells at least ``cells`` cells from land or the boundary (2-D boolean)."""
    from scipy.ndimage import distance_transform_cdt

    return distance_transform_cdt(np.pad(grid.mask, 1), metric="chessboard")[1:-1, 1:-1] > cells


def test_coarse_noise_has_the_reference_covariance():
    """Exact covariances of both generators at open-water cells (all four positions in a
    block): unit variance, and correlations within 0.03 of the reference's at lags of 1-12
    cells (the 1-D analysis of the copy onto blocks gives ~0.01 per axis)."""
    grid = _island_grid(96)
    field = tracer.noise_field(grid, 30e3)  # 6 cells
    noise = tracer.coarse_noise(field, 2, tol=1e-12)
    assert noise.factor == 2 and noise.coarse.shape == (48, 48)
    index = np.full(grid.mask.size, -1)
    index[grid.wet_index] = np.arange(grid.n_wet)
    rows, cols = np.array([50, 50, 51, 51]), np.array([58, 59, 58, 59])
    probes = index[np.ravel_multi_index((rows, cols), grid.shape)]
    fast, ref = _covariances(noise, probes)
    np.testing.assert_allclose(ref[np.arange(4), probes], 1.0, atol=1e-6)
    np.testing.assert_allclose(fast[np.arange(4), probes], 1.0, atol=1e-6)
    for dr, dc in [(0, 1), (1, 0), (0, 2), (1, 1), (0, 4), (3, 3), (0, 6), (0, 12), (-5, 2)]:
        other = index[np.ravel_multi_index((rows + dr, cols + dc), grid.shape)]
        gap = np.abs(fast[np.arange(4), other] - ref[np.arange(4), other])
        assert np.max(gap) < 0.03, (dr, dc, gap)


def test_coarse_noise_draws_match_reference_draws():
    """Empirical covariances at a few lags over the open water, averaged over draws: the two
    generators agree within 4 standard errors; every draw is mass-free in every basin."""
    grid = _island_grid(64)
    field = tracer.noise_field(grid, 30e3)
    fast_noise = tracer.coarse_noise(field, 2)
    n = 300
    ref = tracer.sample_noise(jax.random.key(7), field, n, 1.0)
    fast = tracer.sample_coarse_noise(jax.random.key(8), fast_noise, n, 1.0,
                                      precision="float32")
    assert fast.dtype == jnp.float64
    basins = np.asarray(field.basins)
    for b in range(basins.max() + 1):
        a = jnp.asarray(np.where(basins == b, grid.wet_area, 0.0))
        assert float(jnp.max(jnp.abs(fast @ a))) < 1e-12 * float(a.sum())
    inner = _open_water(grid, 8)
    ref2, fast2 = np.asarray(grid.to_field(ref)), np.asarray(grid.to_field(fast))
    for dr, dc in [(0, 0), (0, 1), (1, 0), (2, 2), (0, 6), (6, 0)]:
        both = inner & np.roll(inner, (-dr, -dc), axis=(0, 1))
        r, f = (np.mean((x * np.roll(x, (-dr, -dc), axis=(1, 2)))[:, both], axis=1)
                for x in (ref2, fast2))  # one number per draw
        se = np.sqrt(r.var() / n + f.var() / n)
        assert abs(r.mean() - f.mean()) < 4 * se, (dr, dc, r.mean(), f.mean(), se)


def test_composite_variance_without_blocks_is_the_heat_kernel():
    """Factor 1 (no blocks, no fine kernel): the 1-D variance is ``i0e(2 b)``, the reference
    normalisation of :func:`tracer.noise_field`."""
    import scipy.special

    for b in (0.5, 4.0, 30.0):
        assert tracer._composite_variance(0.0, b, 1, 0) == pytest.approx(
            scipy.special.i0e(2 * b), rel=1e-12)


def test_short_noise_falls_back_to_the_model_grid():
    grid = coastal_grid(32, 10e3)
    noise = tracer.coarse_noise(tracer.noise_field(grid, 15e3), 2)
    assert noise.factor == 1 and noise.coarse is grid


def test_scheme_by_name():
    assert isinstance(tracer.forecast_scheme("fast"), tracer.FastForecast)
    assert isinstance(tracer.forecast_scheme("reference"), tracer.ReferenceForecast)
    with pytest.raises(ValueError, match="forecast scheme"):
        tracer.forecast_scheme("quick")
    with pytest.raises(ValueError, match="precision"):
        tracer.FastForecast(precision="float16")
