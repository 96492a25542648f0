"""The velocity kinds against independent references, through their common interface.

References: a uniform current's faces are :func:`tracerbayes.physics.constant_velocity`; a
given field's are the field times its scale; a stream function's carry no net transport out
of any cell of a closed basin with an island (to rounding) and have the prior's speed on
average; every kind's reduced advection (its shortcut, where it has one) equals the dense
projection ``Phi^T A L(u, 0) Phi`` of its own field (:func:`physics.operator_matrix`); a kind
written here in a few lines runs through the model like the built-in ones.

Everything runs in float64 (tests/conftest.py).
"""

import dataclasses

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro import handlers

from tracerbayes import physics
from tracerbayes.ensemble.fit import point_parameters
from tracerbayes.exact.model import AdvectionDiffusionModel, Priors
from tracerbayes.exact.velocity import (
    ConstantVelocity,
    GivenVelocity,
    StreamfunctionVelocity,
    VelocityKind,
)
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0
#: Sums and differences of a few O(1) terms, relative to the largest.
ROUNDING = 1e-12


def basin() -> Grid:
    """A closed 6 x 7 Cartesian basin (10 km cells) with a two-cell island."""
    mask = np.ones((6, 7), bool)
    mask[2:4, 3] = False
    return Grid.cartesian(x=(0.0, 70e3), y=(0.0, 60e3), resolution=10e3, mask=mask)


def given_field(grid: Grid) -> physics.FaceVelocity:
    rng = np.random.default_rng(5)
    return physics.velocity_from_centres(grid, 0.05 * rng.normal(size=grid.shape),
                                         0.05 * rng.normal(size=grid.shape))


def kinds(grid: Grid) -> dict[str, tuple[VelocityKind, dict]]:
    """Every built-in kind, with a parameter draw."""
    field = given_field(grid)
    varying = physics.FaceVelocity(np.stack([field.east, -field.east]),
                                   np.stack([field.north, -field.north]))
    return {
        "constant": (ConstantVelocity(scale=0.05), {"u": -0.03, "v": 0.02}),
        "given": (GivenVelocity(field, scale_prior=dist.LogNormal(0.0, 0.5)),
                  {"velocity_scale": 1.7}),
        "given-fixed": (GivenVelocity(field), {}),
        "given-varying": (GivenVelocity(varying, times=np.array([0.0, 2.0]) * DAY), {}),
        "streamfunction": (StreamfunctionVelocity(n_modes=6, lengthscale_km=30.0, speed=0.05),
                           {"streamfunction": np.linspace(-1.0, 1.0, 6)}),
    }


KINDS = list(kinds(basin()))


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def dense_projection(model: AdvectionDiffusionModel, field: physics.FaceVelocity) -> np.ndarray:
    """``Phi^T A L(field, 0) Phi`` with the full-grid operator as a dense matrix."""
    phi, area = model.basis.vectors, model.basis.cell_area
    L = np.asarray(physics.operator_matrix(model.grid, field, 0.0))
    return (phi.T * area) @ L @ phi


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_implements_the_interface(name):
    grid = basin()
    kind, params = kinds(grid)[name]
    assert isinstance(kind, VelocityKind) and not type(kind).__abstractmethods__
    with handlers.seed(rng_seed=0):
        drawn = kind.sample()
    assert set(drawn) == set(params) | set(kind.scalar_priors()) | set(kind.point_defaults())
    assert set(kind.scalar_priors()).isdisjoint(kind.point_defaults())
    assert kind.speed_bound() > 0
    field = kind.field(grid, params)
    steps = (2,) if kind.time_varying else ()
    assert np.shape(field.east) == np.shape(field.north) == steps + grid.shape
    assert kind.rate_bound(grid, kind.speed_bound()) > 0


def test_constant_field_is_the_uniform_current_on_open_faces():
    grid = basin()
    kind, params = kinds(grid)["constant"]
    field = kind.field(grid, params)
    reference = physics.constant_velocity(grid, -0.03, 0.02)
    np.testing.assert_array_equal(field.east, reference.east)
    np.testing.assert_array_equal(field.north, reference.north)
    assert kind.scalar_priors()["u"].scale == kind.scalar_priors()["v"].scale == 0.05


def test_given_field_is_the_given_field_times_its_scale():
    grid = basin()
    reference = given_field(grid)
    scaled, params = kinds(grid)["given"]
    field = scaled.field(grid, params)
    np.testing.assert_allclose(field.east, 1.7 * reference.east, rtol=ROUNDING, atol=0)
    np.testing.assert_allclose(field.north, 1.7 * reference.north, rtol=ROUNDING, atol=0)
    fixed = kinds(grid)["given-fixed"][0].field(grid, {})
    np.testing.assert_array_equal(fixed.east, reference.east)
    np.testing.assert_array_equal(fixed.north, reference.north)
    assert list(scaled.scalar_priors()) == ["velocity_scale"]
    assert kinds(grid)["given-fixed"][0].scalar_priors() == {}


def test_streamfunction_field_carries_no_net_transport_out_of_any_cell():
    grid = basin()
    kind = StreamfunctionVelocity(n_modes=6, lengthscale_km=30.0, speed=0.05)
    rng = np.random.default_rng(1)
    for _ in range(3):
        field = kind.field(grid, {"streamfunction": rng.normal(size=6)})
        net = np.asarray(physics.divergence(grid, field) * grid.cell_area)[grid.mask]
        transport = max(np.max(np.abs(field.east * grid.east_face_length)),
                        np.max(np.abs(field.north * grid.north_face_length)))
        assert transport > 0
        assert np.max(np.abs(net)) <= ROUNDING * transport


def test_streamfunction_prior_speed_is_about_its_speed():
    grid = basin()
    kind = StreamfunctionVelocity(n_modes=6, lengthscale_km=30.0, speed=0.05)
    rng = np.random.default_rng(2)
    rms = []
    for beta in rng.normal(size=(400, 6)):
        field = kind.field(grid, {"streamfunction": beta})
        rms.append(np.sqrt(np.mean(np.asarray(field.east) ** 2 + np.asarray(field.north) ** 2)))
    assert np.mean(rms) == pytest.approx(0.05, rel=0.15)
    np.testing.assert_array_equal(kind.point_defaults()["streamfunction"], np.zeros(6))


@pytest.mark.parametrize("name", [k for k in KINDS if k != "given-varying"])
@pytest.mark.parametrize("n_modes", [None, 12], ids=["complete", "reduced"])
def test_reduced_advection_equals_the_projection_of_the_field(name, n_modes):
    grid = basin()
    kind, params = kinds(grid)[name]
    model = AdvectionDiffusionModel(grid, kind, Priors(), n_modes=n_modes or grid.n_wet)
    still = {**params, "diffusivity": 0.0}
    assert relative_error(model.reduced_operator(still),
                          dense_projection(model, kind.field(grid, params))) <= ROUNDING


def test_time_varying_advection_equals_the_projection_of_each_intervals_field():
    grid = basin()
    kind, _ = kinds(grid)["given-varying"]
    model = AdvectionDiffusionModel(grid, kind, Priors(), n_modes=12)
    times = np.array([0.0, 1.0, 2.0]) * DAY  # midpoints: a quarter and three quarters
    setups = kind.interval_setup(times, model._project)
    field = given_field(grid)
    for setup, weight in zip(setups, (0.5, -0.5), strict=True):
        reference = dense_projection(model, physics.FaceVelocity(weight * field.east,
                                                                 weight * field.north))
        assert relative_error(setup, reference) <= ROUNDING


@dataclasses.dataclass(frozen=True)
class EastwardJet(VelocityKind):
    """A uniform eastward current of unknown, positive speed: a kind outside the package."""

    def sample(self):
        return {"jet_speed": numpyro.sample("jet_speed", self.scalar_priors()["jet_speed"])}

    def field(self, grid, params):
        return physics.constant_velocity(grid, params["jet_speed"], 0.0)

    def speed_bound(self):
        return 0.2

    def scalar_priors(self):
        return {"jet_speed": dist.LogNormal(np.log(0.05), 0.3)}


def observations(grid: Grid) -> Observations:
    rows = [{"time": t * DAY, "x": grid.x[i], "y": grid.y[j], "value": 1.0 + 0.1 * (t + i),
             "error": 0.1} for t in range(3) for (j, i) in [(0, 0), (4, 5), (5, 2)]]
    return Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")


def test_a_new_kind_is_one_subclass():
    grid = basin()
    common = {"diffusivity": 100.0, "noise_sd": 0.1, "noise_lengthscale_km": 20.0,
              "initial_sd": 0.5, "initial_lengthscale_km": 25.0, "error_scale": 1.0,
              "representation_scale": 1.0}
    jet = AdvectionDiffusionModel(grid, EastwardJet(), Priors(), n_modes=12)
    uniform = AdvectionDiffusionModel(grid, ConstantVelocity(), Priors(), n_modes=12)
    jet_params = {**common, "jet_speed": 0.04}
    uniform_params = {**common, "u": 0.04, "v": 0.0}
    assert relative_error(jet.reduced_operator(jet_params),
                          uniform.reduced_operator(uniform_params)) <= ROUNDING
    data = jet.prepare(observations(grid), np.arange(3) * DAY)
    assert jet.likelihood(jet_params, data).log_prob(data.values) == pytest.approx(
        float(uniform.likelihood(uniform_params, data).log_prob(data.values)), rel=ROUNDING)
    assert point_parameters(jet)["jet_speed"] == pytest.approx(0.05, rel=ROUNDING)
    # a general field may leave a cell through two faces per axis, a uniform one through one
    projected = AdvectionDiffusionModel(grid, EastwardJet(), n_modes=12, transition="projected")
    reference = AdvectionDiffusionModel(grid, ConstantVelocity(), n_modes=12,
                                        transition="projected", max_speed=0.4)
    assert projected._max_rate == pytest.approx(reference._max_rate, rel=ROUNDING)
    assert relative_error(projected.projected_transition(jet_params, DAY),
                          reference.projected_transition(uniform_params, DAY)) <= ROUNDING
