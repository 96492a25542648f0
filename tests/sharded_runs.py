"""Ensemble and NUTS runs on one device or several, for ``tests/test_sharding.py``.

``tests/test_sharding.py`` calls :func:`ensemble_runs` and :func:`nuts_draws` in its own
process (one device) and runs this file as a script in a second process with four emulated
CPU devices::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/sharded_runs.py OUT.npz

The device count must be set before JAX starts, hence the second process; the script
enables float64 itself and writes the same runs on four devices to ``OUT.npz``. A
multi-host run is two such processes with two devices each, joined by ``jax.distributed``::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/sharded_runs.py OUT.npz 0 PORT
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/sharded_runs.py OUT.npz 1 PORT
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

DAY = 86400.0
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.2, "noise_lengthscale_km": 15.0,
          "initial_sd": 1.0, "initial_lengthscale_km": 20.0, "error_scale": 1.0}
#: The ensemble runs compared: name -> method settings (8 members: 2 per device on 4).
RUNS: dict[str, dict[str, Any]] = {
    "etkf": {"method": "etkf"},
    "enkf": {"method": "enkf", "lag": 2},
    "letkf": {"method": "letkf", "localisation": 25.0, "relaxation": 0.5},
    "letkf_nodes": {"method": "letkf", "localisation": 25.0, "weight_stride": 2, "lag": 1},
}
MEMBERS = 8


def problem(nx: int = 6, ny: int = 5, T: int = 4, n_obs: int = 6) -> tuple:
    """A small Cartesian basin (10 km cells, one land cell), a swirl and random
    observations: grid, velocity, times (s) and observations."""
    from test_ensemble_fit import small_problem

    return small_problem(np.random.default_rng(20261128), nx, ny, T, n_obs)


def _model(grid: Any, velocity: Any, n_modes: int = 8) -> Any:
    from tracerbayes.exact.model import AdvectionDiffusionModel, GivenVelocity, Priors

    return AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=n_modes)


def ensemble_runs(devices: int) -> dict[str, np.ndarray]:
    """The smoothed members (T, N_e, n) and the per-cycle statistics (innovations,
    spreads, inflation) of every run of :data:`RUNS` through ``tb.fit`` on ``devices``
    devices."""
    import tracerbayes as tb

    grid, velocity, times, obs = problem()
    model = _model(grid, velocity)
    out = {}
    for name, settings in RUNS.items():
        settings = dict(settings)
        method = tb.methods.METHODS[settings.pop("method")](
            ensemble_size=MEMBERS, parameters=PARAMS, devices=devices, **settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tb.SamplingWarning)
            post = tb.fit(model, obs, times, method=method, seed=3, progress=False)
        out[f"{name}.members"] = np.asarray(post.members)
        out[f"{name}.cycle"] = post.cycle.drop(columns="time").to_numpy(float)
    return out


def nuts_draws(chain_method: str) -> dict[str, np.ndarray]:
    """Four chains of a short NUTS run (prior starts) with ``chain_method``, (4, draws)
    each, and their sampler statistics."""
    import tracerbayes as tb

    grid, velocity, times, obs = problem()
    model = _model(grid, velocity, n_modes=4)
    method = tb.NUTS(num_warmup=15, num_samples=10, num_chains=4, chain_method=chain_method,
                     init="prior", max_tree_depth=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = tb.fit(model, obs, times, method=method, seed=5, progress=False)
    out = {f"nuts.{k}": np.asarray(v) for k, v in post.samples.items()}
    return out


def sharded_window(devices: int) -> dict[str, np.ndarray]:
    """The LETKF smoother called directly with a mesh: where its members live, and the
    error for a member count that does not split over the devices."""
    import jax
    import jax.numpy as jnp

    from tracerbayes.ensemble import tracer
    from tracerbayes.ensemble.localisation import euclidean
    from tracerbayes.ensemble.window import LocalUpdate, ensemble_mesh, smooth_window

    grid, velocity, times, obs = problem()
    step = tracer.tracer_transition(grid, velocity, 300.0, DAY, tracer.noise_field(grid, 15e3),
                                    0.2)
    co = tracer.stencil_observations(obs.prepare(grid, times), obs)
    update = LocalUpdate(jnp.asarray(tracer.state_coordinates(grid)), euclidean, 25e3)
    mesh = ensemble_mesh(devices)
    key = jax.random.key(1)
    E0 = tracer.initial_ensemble(key, grid, MEMBERS, 10.0, 1.0, 1.0, 20e3)
    result = smooth_window(key, step, E0, co, update, lag=2, forecast_first=False,
                           progress=False, mesh=mesh)
    try:
        smooth_window(key, step, E0[:6], co, update, progress=False, mesh=mesh)
        message = ""
    except ValueError as error:
        message = str(error)
    spread = getattr(result.smoothed, "sharding", None)  # gathered by process on many hosts
    return {"window.smoothed": np.asarray(result.smoothed),
            "window.devices": np.asarray(0 if spread is None else len(spread.device_set)),
            "window.error": np.asarray(message)}


def main(path: str, process: int | None = None, port: int | None = None) -> None:
    """Write the runs on every device JAX sees to ``path``; with ``process`` (0 or 1) as
    one of two processes of a multi-host run (``jax.distributed`` on ``localhost:port``)
    only the directly called smoother, written by process 0."""
    import jax

    jax.config.update("jax_enable_x64", True)
    if process is None:
        devices = jax.device_count()
        np.savez(path, devices=devices, **ensemble_runs(devices), **nuts_draws("parallel"),
                 **sharded_window(devices))
        return
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process)
    smoothed = sharded_window(jax.device_count())["window.smoothed"]
    if jax.process_index() == 0:
        np.savez(path, devices=jax.device_count(), processes=jax.process_count(),
                 smoothed=smoothed)


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:]))
