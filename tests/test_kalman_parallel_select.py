"""Choosing the parallel (associative-scan) Kalman filter for NUTS: ``NUTS(filter="parallel")``.

The parallel filter must give the sequential filter's log density and gradient (to round-off)
and hence the same NUTS draws. The numbers come from a child process
(:func:`_compare`, run by this file as a script) started with
``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false``: on a CPU, jaxlib 0.10's
concurrency-optimised scheduler can deadlock running the gradient of the parallel filter
(independent LAPACK calls run concurrently; see docs/gpu.md), and XLA reads its flags once,
when the first computation runs, so a test in this process could not set them.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tracerbayes.exact.kalman_parallel import KalmanFilter
from tracerbayes.methods import NUTS, method_from_name
from tracerbayes.schema import SettingsError

#: Parameter points (unconstrained, drawn from the prior) at which the densities are compared.
N_POINTS = 4
#: float64 round-off of two exact filters that associate the same sums differently.
DENSITY_RTOL = 1e-9
#: NUTS draws: the same trajectories while round-off stays below the acceptance decisions.
DRAWS_RTOL = 1e-6
CPU_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _compare(path: str) -> None:
    """Write potentials, gradients and short-NUTS draws of both filters to ``path`` (npz)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from numpyro.infer.util import initialize_model

    from tracerbayes.exact.model import AdvectionDiffusionModel, Priors
    from tracerbayes.fitting import fit
    from tracerbayes.observations.core import Observations
    from tracerbayes.twin import experiment as twin

    modes = 10
    exp = twin.island_twin(jax.random.key(3), n=16, n_times=8, n_floats=12, truth_modes=modes)
    obs = Observations.from_dataframe(exp.observations, x="x", y="y", platform="platform")
    model = AdvectionDiffusionModel(exp.grid, exp.velocity, Priors.for_observations(obs),
                                    n_modes=modes)
    data = model.prepare(obs, exp.times)
    out = {}
    for kalman in KalmanFilter:
        potential = jax.jit(jax.value_and_grad(
            initialize_model(jax.random.key(0), lambda k=kalman: model(data, k)).potential_fn))
        for i in range(N_POINTS):
            point = initialize_model(jax.random.key(10 + i), lambda: model(data)).param_info.z
            value, grad = potential(point)
            out[f"{kalman.value}/value/{i}"] = np.asarray(value)
            for name, g in grad.items():
                out[f"{kalman.value}/grad/{i}/{name}"] = np.asarray(g)
        post = fit(model, obs, exp.times,
                   NUTS(num_warmup=15, num_samples=10, num_chains=1, init="prior",
                        filter=kalman.value), seed=2, progress=False)
        for name, draws in post.samples.items():
            out[f"{kalman.value}/draws/{name}"] = np.asarray(draws)
    np.savez(path, **out)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    path = tmp_path_factory.mktemp("filters") / "compared.npz"
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {CPU_FLAG}"}
    subprocess.run([sys.executable, __file__, str(path)], check=True, env=env, timeout=900)
    with np.load(path) as saved:
        return dict(saved)


def _split(compared, kind):
    prefix = f"parallel/{kind}/"
    return {k[len(prefix):]: v for k, v in compared.items() if k.startswith(prefix)}


def test_parallel_filter_gives_the_same_log_density_and_gradient(compared):
    parallel = _split(compared, "value") | _split(compared, "grad")
    sequential = {k: compared[f"sequential/value/{k}" if "/" not in k else f"sequential/grad/{k}"]
                  for k in parallel}
    assert len(parallel) > N_POINTS  # values and gradients at every point
    for name, value in parallel.items():
        expected = sequential[name]
        np.testing.assert_allclose(value, expected, rtol=DENSITY_RTOL,
                                   atol=DENSITY_RTOL * max(1.0, float(np.abs(expected).max())),
                                   err_msg=name)


def test_nuts_with_the_parallel_filter_draws_the_same_samples(compared):
    parallel = _split(compared, "draws")
    assert parallel and all(np.all(np.isfinite(v)) for v in parallel.values())
    for name, draws in parallel.items():
        np.testing.assert_allclose(draws, compared[f"sequential/draws/{name}"],
                                   rtol=DRAWS_RTOL, err_msg=name)


def test_filter_setting_is_checked():
    assert NUTS().filter == "sequential"
    assert method_from_name("nuts", filter="parallel").filter == "parallel"
    with pytest.raises(SettingsError, match="'sequential', 'parallel'"):
        NUTS(filter="associative")


def test_unknown_filter_kind_lists_the_choices():
    assert KalmanFilter("parallel") is KalmanFilter.PARALLEL
    with pytest.raises(ValueError, match="'sequential', 'parallel'"):
        KalmanFilter("scan")


if __name__ == "__main__":
    _compare(sys.argv[1])
