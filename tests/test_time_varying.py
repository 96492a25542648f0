"""A given velocity that varies in time, in the exact and ensemble paths.

References: with a complete basis (K = N) each interval's reduced transition must equal the
full-grid ``expm(L(u_k) dt_k)`` (scipy) with ``u_k`` the field interpolated linearly to the
interval's midpoint (computed here by hand); the ensemble transition of interval ``k`` must
equal the full-grid stepper ``propagate`` with the same field (1e-12).
"""

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from tracerbayes import physics
from tracerbayes.ensemble import tracer
from tracerbayes.exact.model import AdvectionDiffusionModel, GivenVelocity, Priors
from tracerbayes.grid.core import Grid
from tracerbayes.observations.core import Observations

DAY = 86400.0


def setting():
    mask = np.ones((6, 7), bool)
    mask[2:4, 3] = False
    grid = Grid.cartesian(x=(0.0, 70e3), y=(0.0, 60e3), resolution=10e3, mask=mask)
    rng = np.random.default_rng(0)
    fields = [physics.velocity_from_centres(grid, 0.1 * rng.normal(size=grid.shape),
                                            0.1 * rng.normal(size=grid.shape))
              for _ in range(3)]
    east = np.stack([np.asarray(f.east) for f in fields])
    north = np.stack([np.asarray(f.north) for f in fields])
    field_times = np.array([0.0, 1.0, 3.0]) * DAY
    velocity = GivenVelocity(physics.FaceVelocity(east, north), times=field_times)
    rows = [{"time": t, "x": grid.x[i], "y": grid.y[j], "value": 1.0 + 0.1 * k,
             "error": 0.1} for k, (t, j, i) in enumerate([(0.0, 0, 0), (DAY, 1, 1),
                                                          (2.5 * DAY, 5, 6), (4 * DAY, 0, 6)])]
    obs = Observations.from_dataframe(pd.DataFrame(rows), x="x", y="y")
    return grid, velocity, east, north, field_times, obs


def by_hand(east, north, field_times, t):
    """The field linearly interpolated to time t (nearest end outside)."""
    t = float(np.clip(t, field_times[0], field_times[-1]))
    j = min(int(np.searchsorted(field_times, t, side="right")) - 1, len(field_times) - 2)
    w = (t - field_times[j]) / (field_times[j + 1] - field_times[j])
    return physics.FaceVelocity((1 - w) * east[j] + w * east[j + 1],
                                (1 - w) * north[j] + w * north[j + 1])


def test_reduced_transitions_equal_the_full_grid_expm_of_each_intervals_field():
    grid, velocity, east, north, field_times, obs = setting()
    model = AdvectionDiffusionModel(grid, velocity, Priors(), n_modes=grid.n_wet)
    times = np.array([0.0, 1.0, 2.5, 4.0]) * DAY
    data = model.prepare(obs, times)
    params = {"diffusivity": 300.0, "noise_sd": 0.1, "noise_lengthscale_km": 20.0,
              "initial_sd": 1.0, "initial_lengthscale_km": 20.0, "error_scale": 1.0}
    F = np.asarray(model.state_space(params, data).transition)
    assert F.shape == (3, grid.n_wet, grid.n_wet)
    phi, area = model.basis.vectors, model.basis.cell_area
    for k in range(3):
        mid = 0.5 * (times[k] + times[k + 1])
        L = np.asarray(physics.operator_matrix(grid, by_hand(east, north, field_times, mid),
                                               300.0))
        expected = scipy.linalg.expm(L * (times[k + 1] - times[k]))
        full = phi @ F[k] @ (phi.T * area)
        assert np.max(np.abs(full - expected)) < 1e-9 * np.max(np.abs(expected))
    # the fields differ enough that a steady model would be wrong
    steady = np.asarray(physics.operator_matrix(grid, by_hand(east, north, field_times, 0.0),
                                                300.0))
    assert np.max(np.abs(scipy.linalg.expm(steady * DAY) - phi @ F[0] @ (phi.T * area))) > 1e-3


def test_ensemble_transition_moves_each_interval_with_its_field():
    grid, velocity, east, north, field_times, _ = setting()
    times = np.array([0.0, 1.0, 2.5, 4.0]) * DAY
    faces = velocity.at_intervals(times)
    for k, t in enumerate(0.5 * (times[1:] + times[:-1])):
        expected = by_hand(east, north, field_times, t)
        np.testing.assert_allclose(faces.east[k], expected.east, rtol=1e-14, atol=1e-16)
    field = tracer.noise_field(grid, 15e3)
    step = tracer.tracer_transition(grid, faces, 300.0, np.diff(times), field, 0.0)
    E = jax.random.normal(jax.random.key(0), (4, grid.n_wet)) + 5.0
    for k in (1, 2, 3):
        face = physics.FaceVelocity(faces.east[k - 1], faces.north[k - 1])
        expected = physics.propagate(grid, E, face, 300.0, times[k] - times[k - 1],
                                     substeps=step.substeps)
        np.testing.assert_allclose(step(jax.random.key(1), E, k), expected, rtol=0,
                                   atol=1e-12)


def test_time_varying_velocity_errors():
    grid, velocity, east, north, field_times, _ = setting()
    with pytest.raises(ValueError, match="needs its times"):
        GivenVelocity(physics.FaceVelocity(east, north))
    with pytest.raises(ValueError, match="2 times for a field of shape"):
        GivenVelocity(physics.FaceVelocity(east, north), times=field_times[:2])
    with pytest.raises(ValueError, match="transition='projected' needs a steady velocity"):
        AdvectionDiffusionModel(grid, velocity, Priors(), n_modes=5, transition="projected")
