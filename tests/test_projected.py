"""The ``transition="projected"`` reduced model against dense full-grid references.

The projected transition over ``dt`` is ``Phi^T A expm(D dt/2) P expm(D dt/2) Phi`` with
``D`` the full-grid diffusion operator and ``P`` the full-grid explicit upwind advection
(:func:`tracerbayes.physics.operator.explicit_transition`, no diffusion): built here densely, cell
by
cell, independently of the model's matrix-free path. Conservation, the speed bound's NaN,
gradients (central finite differences) and argument errors.

Everything runs in float64 (tests/conftest.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from test_model import (
    DAY,
    IRREGULAR_TIMES,
    N_REDUCED,
    UNIFORM_TIMES,
    assert_gradient_matches_finite_differences,
    island_grid,
    observations,
    params_for,
    relative_error,
    velocity_model,
)

from tracerbayes import physics
from tracerbayes.exact.model import AdvectionDiffusionModel, GivenVelocity, Priors

#: Two dense 68 x 68 expm and a product of explicit sub-steps, in float64.
TRANSITION_RTOL = 1e-9
#: Total of ~70 products of O(1) terms.
MASS_RTOL = 1e-12


def projected_model(kind, n_modes=None, **kwargs):
    grid = island_grid()
    n_modes = grid.n_wet if n_modes is None else n_modes
    return AdvectionDiffusionModel(grid, velocity_model(kind), Priors(), n_modes=n_modes,
                                   transition="projected", **kwargs)


def dense_projected(model, params, dt, substeps=None, velocity=None, advect_dt=None):
    """The reference: dense full-grid Strang product, projected on the model's basis
    (advection by ``velocity`` for ``advect_dt`` in ``substeps`` explicit sub-steps)."""
    grid, basis = model.grid, model.basis
    velocity = model.face_velocity(params) if velocity is None else velocity
    substeps = int(np.ceil(dt * model._max_rate)) if substeps is None else substeps
    advect = np.asarray(physics.explicit_transition(
        grid, velocity, 0.0, dt if advect_dt is None else advect_dt, substeps=substeps))
    no_flow = physics.constant_velocity(grid, 0.0, 0.0)
    diffusion = np.asarray(physics.operator_matrix(grid, no_flow, params["diffusivity"]))
    half = scipy.linalg.expm(diffusion * dt / 2)
    phi = basis.vectors
    return (phi.T * basis.cell_area) @ half @ advect @ half @ phi


@pytest.mark.parametrize("kind", ["constant", "streamfunction"])
@pytest.mark.parametrize("n_modes", [None, N_REDUCED], ids=["complete", "reduced"])
def test_projected_transition_equals_dense_full_grid_product(kind, n_modes):
    model = projected_model(kind, n_modes)
    params = params_for(kind)
    data = model.prepare(observations(), UNIFORM_TIMES)
    got = np.asarray(model.state_space(params, data).transition)
    expected = dense_projected(model, params, DAY)
    # not trivially close to the identity, and not the Galerkin transition
    assert np.max(np.abs(expected - np.eye(model.n_modes))) > 0.05
    assert relative_error(got, expected) < TRANSITION_RTOL


def given_at_node(model, dt, j):
    """Parameters whose ``velocity_scale * dt`` is the table's node ``j``, and that node's
    sub-step count and unit-flow advection time."""
    table = model._tables[float(dt)]
    return {**params_for("given"), "velocity_scale": j * table.step / dt}, j, j * table.step


@pytest.mark.parametrize("n_modes", [None, N_REDUCED], ids=["complete", "reduced"])
def test_given_flow_table_nodes_equal_dense_full_grid_product(n_modes):
    model = projected_model("given", n_modes)
    model.projected_transition(params_for("given"), DAY)  # builds the table for one day
    unit = model.velocity.velocity
    last = model._tables[DAY].values.shape[0] - 1
    assert last >= 2
    for j in (1, last):
        params, substeps, tau = given_at_node(model, DAY, j)
        got = np.asarray(model.projected_transition(params, DAY))
        expected = dense_projected(model, params, DAY, substeps, unit, tau)
        assert np.max(np.abs(expected - np.eye(model.n_modes))) > 0.05
        assert relative_error(got, expected) < TRANSITION_RTOL


def test_given_flow_between_nodes_is_close_to_the_exact_advection():
    """Between nodes the Hermite interpolant is within 1e-3 of ``expm(L_u tau)`` projected
    (interpolation and the explicit scheme's own time error together)."""
    model = projected_model("given", N_REDUCED)
    params = params_for("given")  # velocity_scale 0.7: between nodes
    got = np.asarray(model.projected_transition(params, DAY))
    table = model._tables[DAY]
    tau = params["velocity_scale"] * DAY
    assert 0.1 < (tau / table.step) % 1 < 0.9
    grid, basis = model.grid, model.basis
    exact = np.asarray(physics.exponential_transition(grid, model.velocity.velocity, 0.0, tau))
    no_flow = physics.constant_velocity(grid, 0.0, 0.0)
    half = scipy.linalg.expm(np.asarray(physics.operator_matrix(
        grid, no_flow, params["diffusivity"])) * DAY / 2)
    phi = basis.vectors
    expected = (phi.T * basis.cell_area) @ half @ exact @ half @ phi
    error = relative_error(got, expected)
    print(f"relative error between nodes: {error:.2e}")
    assert error < 1e-3


def test_projected_irregular_intervals_each_get_their_own_transition():
    model = projected_model("streamfunction", N_REDUCED)
    params = params_for("streamfunction")
    data = model.prepare(observations(), IRREGULAR_TIMES)
    got = np.asarray(model.state_space(params, data).transition)
    dts = np.diff(IRREGULAR_TIMES)
    assert got.shape == (dts.size, N_REDUCED, N_REDUCED)
    for k, dt in enumerate(dts):
        assert relative_error(got[k], dense_projected(model, params, dt)) < TRANSITION_RTOL
    given = projected_model("given", N_REDUCED)
    F = np.asarray(given.state_space(params_for("given"), data).transition)
    assert sorted(given._tables) == sorted(set(dts))  # one table per interval length
    for k, dt in enumerate(dts):
        np.testing.assert_array_equal(F[k], given.projected_transition(params_for("given"),
                                                                       dt))


def test_projected_without_flow_is_exact_diffusion():
    """No current: the projected transition is the Galerkin ``expm(-kappa Lambda dt)``."""
    model = projected_model("constant", N_REDUCED)
    params = {**params_for("constant"), "u": 0.0, "v": 0.0}
    got = np.asarray(model.projected_transition(params, DAY))
    expected = np.diag(np.exp(-params["diffusivity"] * model.basis.eigenvalues * DAY))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_still_given_flow_is_exact_diffusion_at_any_scale():
    still = GivenVelocity(physics.constant_velocity(island_grid(), 0.0, 0.0))
    model = AdvectionDiffusionModel(island_grid(), still, Priors(), n_modes=N_REDUCED,
                                    transition="projected")
    expected = np.diag(np.exp(-params_for("given")["diffusivity"] * model.basis.eigenvalues
                              * DAY))
    for scale in (0.5, 7.0):
        got = model.projected_transition({**params_for("given"), "velocity_scale": scale}, DAY)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-12)


def test_projected_loses_variance_the_galerkin_transition_keeps():
    """Divergence-free advection alone: the Galerkin transition is orthogonal in the basis
    (its operator is skew up to the upwind's numerical diffusion); projecting the full-grid
    advection loses what is stirred below the basis's scales."""
    params = {**params_for("streamfunction"), "diffusivity": 0.0}
    grid = island_grid()
    galerkin = AdvectionDiffusionModel(grid, velocity_model("streamfunction"), Priors(),
                                       n_modes=N_REDUCED)
    data = galerkin.prepare(observations(), UNIFORM_TIMES)
    kept = np.linalg.norm(np.asarray(galerkin.state_space(params, data).transition)) ** 2
    model = projected_model("streamfunction", N_REDUCED)
    lost = np.linalg.norm(np.asarray(model.projected_transition(params, DAY))) ** 2
    print(f"squared Frobenius norms: Galerkin {kept:.4f}, projected {lost:.4f}")
    assert lost < kept < N_REDUCED


@pytest.mark.parametrize("n_modes", [None, N_REDUCED], ids=["complete", "reduced"])
def test_projected_transition_conserves_the_total(n_modes):
    model = projected_model("given", n_modes)
    data = model.prepare(observations(), UNIFORM_TIMES)
    F = np.asarray(model.state_space(params_for("given"), data).transition)
    g = model.basis.cell_area @ model.basis.vectors  # total of Phi z is g @ z
    np.testing.assert_allclose(g @ F, g, rtol=0, atol=MASS_RTOL * np.max(np.abs(g)))


def test_draw_too_fast_for_the_substeps_gives_nan_not_instability():
    model = projected_model("constant", N_REDUCED, max_speed=0.05)
    substeps = np.ceil(DAY * model._max_rate)
    limit = 0.05 * substeps / (DAY * model._max_rate)  # u = v at Courant number 1
    for u, finite in ((0.05, True), (0.99 * limit, True), (1.01 * limit, False)):
        T = np.asarray(model.projected_transition({**params_for("constant"), "u": u,
                                                   "v": u}, DAY))
        assert np.all(np.isfinite(T)) if finite else np.all(np.isnan(T))


def test_given_flow_beyond_the_table_gives_nan():
    model = projected_model("given", N_REDUCED, max_speed=0.05)
    top = max(float(np.abs(v).max()) for v in model.velocity.velocity)
    model.projected_transition(params_for("given"), DAY)
    table = model._tables[DAY]
    end = (table.values.shape[0] - 1) * table.step / DAY  # largest tabulated scale
    assert end >= 0.05 / top
    for scale, finite in ((0.05 / top, True), (end, True), (1.01 * end, False)):
        T = np.asarray(model.projected_transition({**params_for("given"),
                                                   "velocity_scale": scale}, DAY))
        assert np.all(np.isfinite(T)) if finite else np.all(np.isnan(T))


def test_default_speed_bounds():
    given = projected_model("given", N_REDUCED)
    top = max(float(np.abs(v).max()) for v in given.velocity.velocity)
    np.testing.assert_allclose(given.max_speed, top * np.exp(0.5 * 3.719016485455709),
                               rtol=1e-6)  # LogNormal(0, 0.5) 99.99% quantile
    assert projected_model("constant", N_REDUCED).max_speed == pytest.approx(0.4)
    assert projected_model("streamfunction", N_REDUCED).max_speed == pytest.approx(1.0)
    fixed = GivenVelocity(velocity_model("given").velocity)  # no scale prior: scale 1
    model = AdvectionDiffusionModel(island_grid(), fixed, Priors(), n_modes=N_REDUCED,
                                    transition="projected")
    assert model.max_speed == pytest.approx(top)


def test_projected_likelihood_gradient_matches_finite_differences():
    assert_gradient_matches_finite_differences(projected_model("given", N_REDUCED), "given",
                                               "velocity_scale")


def test_projected_argument_errors():
    grid = island_grid()
    with pytest.raises(ValueError, match="transition must be 'galerkin' or 'projected'"):
        AdvectionDiffusionModel(grid, velocity_model("given"), n_modes=5, transition="exact")
    with pytest.raises(ValueError, match="max_speed must be a positive speed"):
        projected_model("given", 5, max_speed=-1.0)
    galerkin = AdvectionDiffusionModel(grid, velocity_model("given"), n_modes=5)
    with pytest.raises(ValueError, match="needs transition='projected'"):
        galerkin.projected_transition(params_for("given"), DAY)
    model = projected_model("given", 5)
    data = model.prepare(observations(), UNIFORM_TIMES)

    @jax.jit
    def traced(d):
        return model.state_space(params_for("given"), d).transition

    with pytest.raises(TypeError, match="needs concrete time intervals"):
        traced(data)
    assert jnp.all(jnp.isfinite(model.state_space(params_for("given"), data).transition))
