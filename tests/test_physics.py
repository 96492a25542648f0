"""Finite-volume advection-diffusion: conservation, divergence, accuracy, positivity, gradients.

Exact references: the area-weighted total (conserved to round-off by construction), zero
discrete divergence of stream-function velocities, the analytic Gaussian pulse
c(x, t) = M / (4 pi kappa (t + t0)) exp(-|x - x0 - u t|^2 / (4 kappa (t + t0))) with the
observed convergence order under grid refinement, the dense matrices of the operator and of
the propagators, central finite differences for gradients, and the area-weighted mean as the
limit of pure diffusion on a connected basin.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import xarray as xr

import tracerbayes as tb
from tracerbayes import physics as ph

DAY = 86_400.0
MASS_RTOL = 1e-12  # float64 round-off, accumulated over thousands of sub-steps
GRID_KINDS = ["lonlat", "lonlat-periodic", "cartesian", "cartesian-periodic"]
SHAPE = (10, 16)  # every kind of test grid has this (ny, nx)
N_LAND = 32  # land cells of every random mask (island included)


# ----------------------------------------------------------------------------- helpers
def island_mask(rng, shape, n_land=N_LAND):
    """A random mask with exactly ``n_land`` land cells, one a 2 x 2 island in a water ring.

    A fixed land count keeps the number of wet cells, hence array shapes (and JAX compiled
    code), the same across tests.
    """
    ny, nx = shape
    j, i = ny // 2, nx // 2
    ring = np.zeros(shape, dtype=bool)
    ring[j - 2 : j + 2, i - 2 : i + 2] = True
    island = np.zeros(shape, dtype=bool)
    island[j - 1 : j + 1, i - 1 : i + 1] = True
    free = np.flatnonzero(~ring.ravel())
    land = island.ravel().copy()
    land[rng.choice(free, size=n_land - island.sum(), replace=False)] = True
    return ~land.reshape(shape)


def make_grid(kind, mask=None):
    """Test grids of shape SHAPE; ``mask`` is a callable shape -> bool array, or None."""
    mask = None if mask is None else mask(SHAPE)
    if kind == "lonlat":
        return tb.Grid.regular(lon=(-40, 40), lat=(-10, 40), resolution=5.0, mask=mask)
    if kind == "lonlat-periodic":
        return tb.Grid.regular(lon=(0, 360), lat=(-75, 75), resolution=(22.5, 15.0),
                               mask=mask, periodic=True)
    periodic = kind == "cartesian-periodic"
    return tb.Grid.cartesian((0, 160e3), (0, 100e3), 10e3, mask=mask, periodic_x=periodic)


def cell_size(grid):
    """Smallest centre-to-centre distance across an open face (m)."""
    return min(grid.east_face_distance[grid.east_open].min(),
               grid.north_face_distance[grid.north_open].min())


def random_velocity(rng, grid, speed=0.3):
    """Random face velocities (m/s), zero on closed faces; not divergence-free."""
    return ph.FaceVelocity(
        east=jnp.asarray(speed * rng.normal(size=grid.shape) * grid.east_open),
        north=jnp.asarray(speed * rng.normal(size=grid.shape) * grid.north_open),
    )


def random_diffusivity(rng, grid):
    """A random diffusivity field, log-uniform between 1 and ~3000 m^2/s."""
    return jnp.asarray(10.0 ** rng.uniform(0.0, 3.5, size=grid.shape))


def random_dt(rng):
    """Log-uniform between one minute and five days (s)."""
    return float(np.exp(rng.uniform(np.log(60.0), np.log(5 * DAY))))


def trajectory(grid, state, velocity, diffusivity, dt, nsteps):
    """States after 1, 2, ..., ``nsteps`` applications of propagate, compiled once."""
    substeps = ph.substeps_for(grid, velocity, diffusivity, dt)

    def step(c, _):
        c = ph.propagate(grid, c, velocity, diffusivity, dt, substeps=substeps)
        return c, c

    return jax.jit(lambda c: jax.lax.scan(step, c, None, length=nsteps)[1])(state)


def random_streamfunction(rng, grid, transport=1e5):
    """Random stream function (m^2/s) at the cell corners."""
    xc, _ = ph.corner_coordinates(grid)
    return transport * rng.normal(size=xc.shape)


# ----------------------------------------------------------------------------- mass
@pytest.mark.parametrize("kind", GRID_KINDS)
def test_propagate_conserves_mass(kind):
    rng = np.random.default_rng(GRID_KINDS.index(kind))
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    assert not grid.mask.all()
    velocity = random_velocity(rng, grid)
    kappa = random_diffusivity(rng, grid)
    dt = random_dt(rng)
    c0 = jnp.asarray(rng.uniform(0.0, 1.0, grid.n_wet))
    total0 = grid.total(c0)
    states = np.asarray(trajectory(grid, c0, velocity, kappa, dt, 100))
    c1, c100 = states[0], states[-1]
    np.testing.assert_allclose(grid.total(c1), total0, rtol=MASS_RTOL, atol=0)
    assert np.all(np.isfinite(c100))
    np.testing.assert_allclose(grid.total(c100), total0, rtol=MASS_RTOL, atol=0)
    np.testing.assert_allclose(grid.total(states), total0, rtol=MASS_RTOL, atol=0)
    # The dynamics really did something.
    assert np.abs(np.asarray(c1) - np.asarray(c0)).max() > 1e-6


@pytest.mark.parametrize("kind", GRID_KINDS)
def test_exponential_transition_conserves_mass(kind, rng):
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    velocity = random_velocity(rng, grid)
    kappa = random_diffusivity(rng, grid)
    dt = random_dt(rng)
    M = np.asarray(ph.exponential_transition(grid, velocity, kappa, dt))
    c = rng.uniform(0.0, 1.0, grid.n_wet)
    total0 = grid.total(c)
    np.testing.assert_allclose(grid.total(M @ c), total0, rtol=MASS_RTOL, atol=0)
    for _ in range(100):
        c = M @ c
    np.testing.assert_allclose(grid.total(c), total0, rtol=MASS_RTOL, atol=0)
    # a^T M = a^T: every column conserves.
    a = grid.wet_area
    np.testing.assert_allclose(a @ M, a, rtol=MASS_RTOL)


@pytest.mark.parametrize("kind", GRID_KINDS)
def test_operator_column_sums_vanish(kind, rng):
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    L = np.asarray(ph.operator_matrix(grid, random_velocity(rng, grid),
                                      random_diffusivity(rng, grid)))
    a = grid.wet_area
    scale = a @ np.abs(L)
    assert np.all(scale > 0) or np.any(np.all(L == 0, axis=0))  # isolated cells: empty
    np.testing.assert_array_less(np.abs(a @ L), 1e-14 * scale.max())
    # Metzler: non-negative off-diagonal (upwinding), non-positive diagonal.
    off = L - np.diag(np.diag(L))
    assert off.min() >= 0.0
    assert np.diag(L).max() <= 0.0


# ----------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("kind", GRID_KINDS)
def test_streamfunction_velocity_is_divergence_free(kind, rng):
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    psi = random_streamfunction(rng, grid)
    velocity = ph.velocity_from_streamfunction(grid, psi)
    speed = max(np.abs(velocity.east).max(), np.abs(velocity.north).max())
    assert speed > 0
    div = np.asarray(ph.divergence(grid, velocity))
    scale = speed / cell_size(grid)
    assert np.abs(div[grid.mask]).max() < 1e-13 * scale
    # Closed faces carry nothing.
    assert np.all(np.asarray(velocity.east)[~grid.east_open] == 0)
    assert np.all(np.asarray(velocity.north)[~grid.north_open] == 0)
    # Row sums of L vanish too (L 1 = -div u = 0): a constant stays constant.
    ones = jnp.ones(grid.n_wet)
    dt = 20 * DAY
    c = ph.propagate(grid, ones, velocity, 0.0, dt)
    assert np.abs(np.asarray(c) - 1.0).max() < 1e-12
    # The exact propagator too, with diffusion.
    M = ph.exponential_transition(grid, velocity, random_diffusivity(rng, grid), dt)
    assert np.abs(np.asarray(M @ ones) - 1.0).max() < 1e-12


@pytest.mark.parametrize("kind", GRID_KINDS)
def test_removing_the_divergence_keeps_the_rotational_part(kind, rng):
    """The Helmholtz projection of a random (divergent) face velocity: no divergence left
    (1e-13 of speed / cell size), closed faces closed, a constant field stays constant; the
    correction is a discrete gradient, orthogonal to every divergence-free flow in the
    conductance inner product (sum of l d du w), so a divergence-free flow is kept as is;
    a time axis is projected field by field."""
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    velocity = random_velocity(rng, grid)
    rotational = ph.velocity_from_streamfunction(grid, random_streamfunction(rng, grid))
    projected, report = ph.remove_divergence(grid, velocity)
    speed = float(np.abs(np.asarray(velocity.east)).max())
    div = np.asarray(ph.divergence(grid, ph.FaceVelocity(jnp.asarray(projected.east),
                                                         jnp.asarray(projected.north))))
    assert np.abs(div[grid.mask]).max() < 1e-13 * speed / cell_size(grid)
    assert report.divergence_rms > 1e3 * report.divergence_after
    assert np.all(projected.east[~grid.east_open] == 0)
    assert np.all(projected.north[~grid.north_open] == 0)
    c = ph.propagate(grid, jnp.ones(grid.n_wet), ph.FaceVelocity(
        jnp.asarray(projected.east), jnp.asarray(projected.north)), 0.0, 5 * DAY)
    assert np.abs(np.asarray(c) - 1.0).max() < 1e-12
    weight_e = grid.east_face_length * grid.east_face_distance * grid.east_open
    weight_n = grid.north_face_length * grid.north_face_distance * grid.north_open
    change_e = projected.east - np.asarray(velocity.east)
    change_n = projected.north - np.asarray(velocity.north)
    inner = (np.sum(weight_e * change_e * np.asarray(rotational.east))
             + np.sum(weight_n * change_n * np.asarray(rotational.north)))
    norm = np.sqrt(np.sum(weight_e * change_e**2) + np.sum(weight_n * change_n**2)) * np.sqrt(
        np.sum(weight_e * np.asarray(rotational.east) ** 2)
        + np.sum(weight_n * np.asarray(rotational.north) ** 2))
    assert abs(inner) < 1e-12 * norm
    kept, _ = ph.remove_divergence(grid, rotational)
    scale = float(np.abs(np.asarray(rotational.east)).max())
    np.testing.assert_allclose(kept.east, rotational.east, atol=1e-12 * scale)
    np.testing.assert_allclose(kept.north, rotational.north, atol=1e-12 * scale)
    stacked, _ = ph.remove_divergence(grid, ph.FaceVelocity(
        np.stack([velocity.east, rotational.east]), np.stack([velocity.north,
                                                              rotational.north])))
    np.testing.assert_allclose(stacked.east[0], projected.east, atol=1e-14 * speed)
    np.testing.assert_allclose(stacked.north[1], kept.north, atol=1e-14 * speed)


def test_smooth_streamfunction_on_sphere():
    rng = np.random.default_rng(5)
    grid = make_grid("lonlat-periodic", lambda s: island_mask(rng, s, 8))
    lon, lat = ph.corner_coordinates(grid)
    assert lon.shape == (grid.shape[0] + 1, grid.shape[1])  # periodic: no duplicate column
    lam, phi = np.deg2rad(lon), np.deg2rad(lat)
    psi = 1e6 * np.sin(2 * lam) * np.cos(phi) ** 2 + 3e5 * np.cos(3 * phi)  # m^2/s
    velocity = ph.velocity_from_streamfunction(grid, psi)
    div = np.asarray(ph.divergence(grid, velocity))
    speed = max(np.abs(velocity.east).max(), np.abs(velocity.north).max())
    assert np.abs(div[grid.mask]).max() < 1e-13 * speed / cell_size(grid)
    c = ph.propagate(grid, jnp.ones(grid.n_wet), velocity, 0.0, 365 * DAY)
    assert np.abs(np.asarray(c) - 1.0).max() < 1e-12


def test_constant_velocity_open_periodic_is_divergence_free():
    grid = make_grid("cartesian-periodic")
    velocity = ph.constant_velocity(grid, 0.3, -0.2)
    div = np.asarray(ph.divergence(grid, velocity))
    # Only the closed southern/northern boundaries see a (non-zero) divergence.
    assert np.abs(div[1:-1]).max() < 1e-15 * 0.3 / 10e3
    assert np.abs(div[0]).max() > 0


# ----------------------------------------------------------------------------- accuracy
L_DOMAIN = 100e3  # m


def gaussian_pulse(grid, t, u, v, kappa, t0, x0, y0, mass=1.0):
    """Analytic advected-diffused Gaussian at the cell centres (state vector)."""
    X, Y = np.meshgrid(grid.x, grid.y)
    s = 4 * kappa * (t + t0)
    field = mass / (np.pi * s) * np.exp(-((X - x0 - u * t) ** 2 + (Y - y0 - v * t) ** 2) / s)
    return grid.to_state(field)


def pulse_errors(resolutions, u, v, kappa, duration, sigma0, x0=40e3, y0=45e3):
    """Relative area-weighted L2 errors against the analytic pulse, one per resolution."""
    t0 = sigma0**2 / (2 * kappa)
    errors = []
    for n in resolutions:
        grid = tb.Grid.cartesian((0, L_DOMAIN), (0, L_DOMAIN), L_DOMAIN / n)
        c0 = gaussian_pulse(grid, 0.0, u, v, kappa, t0, x0, y0)
        exact = gaussian_pulse(grid, duration, u, v, kappa, t0, x0, y0)
        # The pulse stays far from the closed boundaries for the whole run.
        assert exact.max() > 1e5 * max(c0.reshape(grid.shape)[[0, -1]].max(),
                                       exact.reshape(grid.shape)[[0, -1]].max())
        c1 = np.asarray(ph.propagate(grid, c0, ph.constant_velocity(grid, u, v), kappa,
                                     duration))
        a = grid.wet_area
        errors.append(np.sqrt(np.sum(a * (c1 - exact) ** 2) / np.sum(a * exact**2)))
    errors = np.array(errors)
    return errors, np.log2(errors[:-1] / errors[1:])


def test_gaussian_pulse_advection_diffusion_first_order():
    # Pulse of width 8 km carried 8.6 km east, 4.3 km north in 12 h; kappa = 10 m^2/s.
    errors, orders = pulse_errors([50, 100, 200, 400], u=0.2, v=0.1, kappa=10.0,
                                  duration=0.5 * DAY, sigma0=8e3)
    print(f"\nupwind advection-diffusion: errors {errors}, observed orders {orders}")
    assert np.all(np.diff(errors) < 0)
    assert np.all((orders > 0.8) & (orders < 1.3)), orders
    assert errors[-1] < 0.03


def test_gaussian_pulse_pure_diffusion_second_order():
    errors, orders = pulse_errors([50, 100, 200, 400], u=0.0, v=0.0, kappa=200.0,
                                  duration=DAY, sigma0=4e3)
    print(f"\n5-point diffusion: errors {errors}, observed orders {orders}")
    assert np.all(np.diff(errors) < 0)
    assert np.all((orders > 1.7) & (orders < 2.3)), orders
    assert errors[-1] < 3e-4


# ----------------------------------------------------------------------------- positivity
@pytest.mark.parametrize("kind", ["lonlat", "cartesian-periodic"])
def test_positivity(kind, rng):
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    # Strong advection (a cell crossed in about 6 hours), weak diffusion, a long interval.
    velocity = random_velocity(rng, grid, speed=cell_size(grid) / (6 * 3600.0))
    kappa = 1.0
    c0 = rng.uniform(0.0, 1.0, grid.n_wet) * (rng.random(grid.n_wet) < 0.3)
    assert np.mean(c0 == 0) > 0.5
    dt = 10 * DAY
    assert ph.substeps_for(grid, velocity, kappa, dt) > 50
    c = np.asarray(ph.propagate(grid, jnp.asarray(c0), velocity, kappa, dt))
    assert c.min() >= 0.0
    np.testing.assert_allclose(grid.total(c), grid.total(c0), rtol=MASS_RTOL)
    M = np.asarray(ph.exponential_transition(grid, velocity, kappa, dt))
    ce = M @ c0
    assert ce.min() >= -1e-14 * ce.max()
    assert M.min() >= -1e-14 * M.max()


# ----------------------------------------------------------------------------- matrices
@pytest.mark.parametrize("kind", GRID_KINDS)
def test_matrix_and_matrix_free_agree(kind, rng):
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    velocity = random_velocity(rng, grid)
    kappa = random_diffusivity(rng, grid)
    c = rng.normal(size=grid.n_wet)
    L = np.asarray(ph.operator_matrix(grid, velocity, kappa))
    Lc = np.asarray(ph.apply_operator(grid, jnp.asarray(c), velocity, kappa))
    np.testing.assert_allclose(L @ c, Lc, rtol=0, atol=1e-12 * np.abs(L).max() * np.abs(c).max())
    # Batched states.
    C = rng.normal(size=(3, grid.n_wet))
    np.testing.assert_allclose(np.asarray(ph.apply_operator(grid, C, velocity, kappa)), C @ L.T,
                               rtol=0, atol=1e-12 * np.abs(L).max() * np.abs(C).max())
    # The 2-D tendency agrees on the wet cells, and ignores values on land.
    field = grid.to_field(c, fill=1e30)
    np.testing.assert_allclose(grid.to_state(np.asarray(ph.tendency(grid, field, velocity,
                                                                    kappa))), Lc, rtol=1e-12)
    S = ph.operator_sparse(grid, velocity, kappa)
    assert S.shape == (grid.n_wet, grid.n_wet)
    np.testing.assert_allclose(S.toarray(), L, rtol=0, atol=1e-15 * np.abs(L).max())
    # max_rate is the largest |L_ii|.
    np.testing.assert_allclose(ph.max_rate(grid, velocity, kappa), np.abs(np.diag(L)).max(),
                               rtol=1e-12)
    dt = random_dt(rng)
    E = np.asarray(ph.explicit_transition(grid, velocity, kappa, dt))
    p = np.asarray(ph.propagate(grid, jnp.asarray(c), velocity, kappa, dt))
    np.testing.assert_allclose(E @ c, p, rtol=0, atol=1e-12 * np.abs(c).max())


def test_explicit_approaches_exponential_as_courant_shrinks(rng):
    grid = make_grid("cartesian", lambda s: island_mask(rng, s))
    velocity = random_velocity(rng, grid)
    kappa = random_diffusivity(rng, grid)
    dt = 2 * DAY
    M = np.asarray(ph.exponential_transition(grid, velocity, kappa, dt))
    c = rng.uniform(size=grid.n_wet)
    exact = M @ c
    courants = [0.8, 0.4, 0.2, 0.1]
    errors = np.array([
        np.abs(np.asarray(ph.propagate(grid, jnp.asarray(c), velocity, kappa, dt,
                                       courant=cr)) - exact).max()
        for cr in courants
    ])
    orders = np.log2(errors[:-1] / errors[1:])
    print(f"\npropagate vs expm: errors {errors}, orders in the time step {orders}")
    assert np.all(np.diff(errors) < 0)
    assert np.all(orders > 0.9)  # at least first order (Heun is second order)
    assert errors[-1] < 1e-3 * np.abs(exact).max()


# ----------------------------------------------------------------------------- gradients
def _central_difference(f, x, eps):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def test_gradient_of_propagate_matches_finite_differences(rng):
    grid = make_grid("cartesian", lambda s: island_mask(rng, s))
    base = random_velocity(rng, grid)
    c0 = jnp.asarray(rng.uniform(size=grid.n_wet))
    weights = jnp.asarray(rng.normal(size=grid.n_wet))
    dt = DAY
    kappa0, scale0 = 300.0, 1.0
    substeps = ph.substeps_for(grid, base, 2 * kappa0, dt)  # room for the perturbations

    def loss(kappa, scale):
        velocity = ph.FaceVelocity(scale * base.east, scale * base.north)
        return weights @ ph.propagate(grid, c0, velocity, kappa, dt, substeps=substeps)

    g_kappa, g_scale = jax.jit(jax.grad(loss, argnums=(0, 1)))(kappa0, scale0)
    loss = jax.jit(loss)
    fd_kappa = _central_difference(lambda k: loss(k, scale0), kappa0, 1e-5 * kappa0)
    fd_scale = _central_difference(lambda s: loss(kappa0, s), scale0, 1e-5)
    assert abs(g_kappa) > 0 and abs(g_scale) > 0
    np.testing.assert_allclose(g_kappa, fd_kappa, rtol=1e-6)
    np.testing.assert_allclose(g_scale, fd_scale, rtol=1e-6)


def test_gradient_of_exponential_transition_matches_finite_differences(rng):
    grid = make_grid("lonlat", lambda s: island_mask(rng, s))
    base = random_velocity(rng, grid)
    c0 = jnp.asarray(rng.uniform(size=grid.n_wet))
    weights = jnp.asarray(rng.normal(size=grid.n_wet))
    dt = 30 * DAY
    kappa0, scale0 = 3e4, 1.0

    def loss(kappa, scale):
        velocity = ph.FaceVelocity(scale * base.east, scale * base.north)
        return weights @ (ph.exponential_transition(grid, velocity, kappa, dt) @ c0)

    g_kappa, g_scale = jax.jit(jax.grad(loss, argnums=(0, 1)))(kappa0, scale0)
    loss = jax.jit(loss)
    fd_kappa = _central_difference(lambda k: loss(k, scale0), kappa0, 1e-5 * kappa0)
    fd_scale = _central_difference(lambda s: loss(kappa0, s), scale0, 1e-5)
    assert abs(g_kappa) > 0 and abs(g_scale) > 0
    np.testing.assert_allclose(g_kappa, fd_kappa, rtol=1e-6)
    np.testing.assert_allclose(g_scale, fd_scale, rtol=1e-6)


def test_traced_inputs_need_explicit_substeps(rng):
    grid = make_grid("cartesian")
    velocity = ph.constant_velocity(grid, 0.1, 0.0)
    c0 = jnp.ones(grid.n_wet)
    with pytest.raises(TypeError, match="substeps="):
        jax.grad(lambda k: ph.propagate(grid, c0, velocity, k, DAY).sum())(10.0)
    with pytest.raises(ValueError, match="courant"):
        ph.substeps_for(grid, velocity, 10.0, DAY, courant=1.5)


# ----------------------------------------------------------------------------- stability
def test_one_year_step_is_bounded_and_conservative(rng):
    grid = make_grid("lonlat-periodic", lambda s: island_mask(rng, s))
    year = 365 * DAY
    c0 = rng.uniform(1.0, 2.0, grid.n_wet)
    # Divergence-free flow + diffusion: a discrete maximum principle holds.
    velocity = ph.velocity_from_streamfunction(grid, random_streamfunction(rng, grid, 1e6))
    kappa = random_diffusivity(rng, grid)
    assert ph.substeps_for(grid, velocity, kappa, year) > 10  # many CFL sub-steps
    c = np.asarray(ph.propagate(grid, jnp.asarray(c0), velocity, kappa, year))
    assert c.min() >= c0.min() - 1e-12 and c.max() <= c0.max() + 1e-12
    np.testing.assert_allclose(grid.total(c), grid.total(c0), rtol=MASS_RTOL)
    # Any flow: non-negative, finite and conservative.
    velocity = random_velocity(rng, grid, speed=1.0)
    c = np.asarray(ph.propagate(grid, jnp.asarray(c0), velocity, kappa, year))
    assert np.all(np.isfinite(c)) and c.min() >= 0.0
    np.testing.assert_allclose(grid.total(c), grid.total(c0), rtol=MASS_RTOL)


def test_exponential_pure_diffusion_relaxes_to_area_weighted_mean(rng):
    wet = island_mask(rng, SHAPE, n_land=4)  # just the island
    wet[2, 1:9] = False  # and a peninsula
    grid = make_grid("lonlat", lambda s: wet)
    assert scipy.ndimage.label(grid.mask)[1] == 1  # one connected basin
    velocity = ph.constant_velocity(grid, 0.0, 0.0)
    kappa = 1e4  # m^2/s
    L = np.asarray(ph.operator_matrix(grid, velocity, kappa))
    slowest = np.sort(np.abs(np.linalg.eigvals(L).real))[1]  # the gap after the zero mode
    dt = 40.0 / slowest  # exp(-40) ~ 4e-18
    M = np.asarray(ph.exponential_transition(grid, velocity, kappa, dt))
    c = rng.normal(size=grid.n_wet)
    mean = grid.total(c) / grid.wet_area.sum()
    np.testing.assert_allclose(M @ c, mean, rtol=0, atol=1e-10 * np.abs(c).max())
    np.testing.assert_allclose(M, np.outer(np.ones(grid.n_wet), grid.wet_area)
                               / grid.wet_area.sum(), rtol=0, atol=1e-10)
    # The matrix-free stepper gets there too, for any dt.
    p = np.asarray(ph.propagate(grid, jnp.asarray(c), velocity, kappa, dt))
    np.testing.assert_allclose(p, mean, rtol=0, atol=1e-10 * np.abs(c).max())


# ----------------------------------------------------------------------------- xarray
def test_velocity_from_xarray_same_grid_with_time(rng):
    grid = tb.Grid.regular(lon=(-10, 10), lat=(30, 45), resolution=1.0,
                           mask=island_mask(rng, (15, 20)))
    times = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[ns]")
    u = rng.normal(size=(3, *grid.shape))
    v = rng.normal(size=(3, *grid.shape))
    ds = xr.Dataset({"u": (("time", "lat", "lon"), u), "v": (("time", "lat", "lon"), v)},
                    coords={"time": times, "lat": grid.y, "lon": grid.x})
    velocity, t = ph.velocity_from_xarray(grid, ds)
    assert isinstance(velocity, ph.FaceVelocity)
    assert velocity.east.shape == (3, *grid.shape) and velocity.north.shape == (3, *grid.shape)
    np.testing.assert_array_equal(t, times)
    expected = ph.velocity_from_centres(grid, u, v)
    np.testing.assert_allclose(velocity.east, expected.east, rtol=1e-15)
    np.testing.assert_allclose(velocity.north, expected.north, rtol=1e-15)
    # Face value = mean of its two cells, on open faces only.
    j, i = np.argwhere(grid.east_open)[0]
    np.testing.assert_allclose(velocity.east[1, j, i], 0.5 * (u[1, j, i] + u[1, j, i + 1]))
    assert np.all(np.asarray(velocity.east)[:, ~grid.east_open] == 0)
    # Other coordinate names and dimension orders work too; a static field has no time.
    ds2 = ds.isel(time=0).rename(lon="longitude", lat="latitude").transpose("longitude", ...)
    velocity2, t2 = ph.velocity_from_xarray(grid, ds2)
    assert t2 is None
    np.testing.assert_allclose(velocity2.east, expected.east[0], rtol=1e-15)
    with pytest.raises(ValueError, match="no variable 'w'"):
        ph.velocity_from_xarray(grid, ds, u="w")


def test_velocity_from_xarray_interpolates_to_finer_grid():
    coarse_lon = np.arange(-9.5, 10.0, 1.0)
    coarse_lat = np.arange(30.5, 45.0, 1.0)
    lon2d, lat2d = np.meshgrid(coarse_lon, coarse_lat)

    def u_linear(lon, lat):
        return 0.1 + 0.02 * lon - 0.01 * (lat - 40)

    def v_linear(lon, lat):
        return -0.05 + 0.015 * (lat - 40) + 0.005 * lon

    ds = xr.Dataset(
        {"u": (("time", "lat", "lon"), np.stack([u_linear(lon2d, lat2d), 2 * u_linear(lon2d,
                                                                                       lat2d)])),
         "v": (("time", "lat", "lon"), np.stack([v_linear(lon2d, lat2d), 2 * v_linear(lon2d,
                                                                                       lat2d)]))},
        coords={"time": [0, 1], "lat": coarse_lat, "lon": coarse_lon},
    )
    fine = tb.Grid.regular(lon=(-8, 8), lat=(32, 44), resolution=0.5)  # inside the data
    velocity, _ = ph.velocity_from_xarray(fine, ds)
    assert velocity.east.shape == (2, *fine.shape)
    # Linear interpolation is exact for linear fields; faces average two centres (exact too).
    X, Y = np.meshgrid(fine.x_edges[1:], fine.y)
    expected_east = u_linear(X, Y) * fine.east_open
    X, Y = np.meshgrid(fine.x, fine.y_edges[1:])
    expected_north = v_linear(X, Y) * fine.north_open
    np.testing.assert_allclose(velocity.east[0], expected_east, rtol=0, atol=1e-14)
    np.testing.assert_allclose(velocity.north[0], expected_north, rtol=0, atol=1e-14)
    np.testing.assert_allclose(velocity.east[1], 2 * expected_east, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", GRID_KINDS)
@pytest.mark.parametrize("cells", [0.7, 4.0])
def test_heat_kernel_equals_expm(kind, cells, rng):
    """The Chebyshev heat kernel equals the dense ``expm(L)`` of pure diffusion with
    ``kappa = s^2 / 2`` to 1e-11 relative, keeps the total, and uses far fewer operator
    applications than Heun sub-steps of the smoother's courant 0.25 (4 per unit of
    ``max|L_ii|``, two tendencies each)."""
    grid = make_grid(kind, lambda s: island_mask(rng, s))
    s = cells * cell_size(grid)  # smoothing length, m
    still = ph.FaceVelocity(np.zeros(grid.shape), np.zeros(grid.shape))
    M = np.asarray(ph.exponential_transition(grid, still, 0.5 * s**2, 1.0))
    c = rng.normal(size=(3, grid.n_wet))
    exact = c @ M.T
    got = np.asarray(ph.heat_kernel(grid, jnp.asarray(c), s))
    assert np.abs(got - exact).max() < 1e-11 * np.abs(c).max()
    area = grid.wet_area
    np.testing.assert_allclose(got @ area, c @ area, atol=1e-12 * np.abs(c @ area).max())
    terms = len(ph.heat_kernel_terms(grid, s))
    heun = 2 * ph.substeps_for(grid, still, 0.5 * s**2, 1.0, 0.25)
    print(f"\n{kind} s = {cells} cells: {terms} Chebyshev terms vs {heun} Heun tendencies")
    if cells > 2:
        assert terms < heun / 3
