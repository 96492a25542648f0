"""Many devices, one assimilation: sharded ensemble runs and parallel NUTS chains against
the same runs on one device.

JAX fixes its device count when it starts, so the four-device runs happen in a second
process started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (four emulated
CPU devices; ``tests/sharded_runs.py``, float64), which writes its numbers to a file; this
process keeps its one device and computes the same runs as references while the other one
works.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import sharded_runs

import tracerbayes as tb
from tracerbayes.ensemble.window import GlobalUpdate, LocalUpdate, ensemble_mesh
from tracerbayes.schema import SettingsError

DEVICES = 4
#: float64 round-off after a few cycles of a forecast and analysis whose sums over members
#: are cut differently on four devices (reductions in another order): about 1e-14 here.
TOL = 1e-12


def _launch(path: Path, devices: int, *args: str) -> subprocess.Popen:
    """``tests/sharded_runs.py path *args`` in a process that sees ``devices`` CPU devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}
    script = Path(__file__).with_name("sharded_runs.py")
    return subprocess.Popen([sys.executable, str(script), str(path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finished(processes: list[subprocess.Popen], path: Path) -> dict[str, np.ndarray]:
    """What the processes wrote to ``path`` once they have all ended well."""
    for process in processes:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
    with np.load(path) as saved:
        return dict(saved)


class Sharded:
    """The four-device process, started at once and read on first use."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "sharded.npz"
        self.process = _launch(self.path, DEVICES)

    @functools.cached_property
    def results(self) -> dict[str, np.ndarray]:
        return _finished([self.process], self.path)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    started = Sharded(tmp_path_factory.mktemp("sharding"))
    yield started
    if started.process.poll() is None:  # a test failed before reading it
        started.process.kill()
        started.process.wait()


def test_sharded_ensemble_runs_equal_one_device(sharded):
    """ETKF, EnKF (lag 2), mass-safe LETKF (relaxation, whole-window smoother) and LETKF
    with weight interpolation (lag 1) through ``tb.fit(..., devices=4)``: 8 members, 2 per
    device, the local analyses in 4 tiles of the domain. The smoothed members and every
    cycle's statistics equal the one-device run's: the same keys, drawn before the split
    (partitionable threefry), and the same local problems."""
    one = sharded_runs.ensemble_runs(1)
    four = sharded.results
    assert int(four["devices"]) == DEVICES
    for name in sharded_runs.RUNS:
        np.testing.assert_allclose(four[f"{name}.members"], one[f"{name}.members"],
                                   rtol=0, atol=TOL, err_msg=name)
        # statistics: member totals are O(1e9) (tracer x m^2), the others O(1)
        np.testing.assert_allclose(four[f"{name}.cycle"], one[f"{name}.cycle"], rtol=TOL,
                                   atol=TOL, err_msg=name)


def test_smooth_window_on_a_mesh_splits_the_members(sharded):
    """``smooth_window(..., mesh=ensemble_mesh(4))`` with a local update leaves its members
    on all four devices, equal to the one-device smoother, and a member count that does not
    split over the devices is refused with the fix."""
    one = sharded_runs.sharded_window(1)
    four = sharded.results
    assert int(four["window.devices"]) == DEVICES
    np.testing.assert_allclose(four["window.smoothed"], one["window.smoothed"], rtol=0,
                               atol=TOL)
    message = str(four["window.error"])
    assert "6 ensemble members cannot be split evenly over 4 devices" in message
    assert "multiple of 4 (e.g. 8)" in message


def test_nuts_on_parallel_devices_equals_vectorised_chains(sharded):
    """Four chains with the same keys, ``chain_method='parallel'`` (one chain per device,
    ``pmap``) against ``'vectorized'`` (all four batched with ``vmap`` on one device).

    Not bitwise equal, but equal to round-off carried along the chains (about 1e-11
    relative here). The two are different XLA programs: the vectorised one runs the batched
    form of every operation (matrix products, Cholesky factors and triangular solves of
    the Kalman filter) and the parallel one the one-chain form, compiled and fused apart,
    so the last bits of the log density and its gradient differ (so do NumPyro's
    ``'sequential'`` chains, one-chain programs compiled by ``jit`` rather than ``pmap``;
    the devices themselves change nothing: vectorised chains in the four-device process
    are bitwise those of this one). NUTS carries such differences through its leapfrog
    steps and step-size adaptation; one large enough to flip a U-turn or acceptance
    decision would separate the chains, which a run this short does not meet."""
    vectorised = sharded_runs.nuts_draws("vectorized")
    four = sharded.results
    for name, draws in vectorised.items():
        assert four[name].shape == draws.shape == (4, 10), name
        np.testing.assert_allclose(four[name], draws, rtol=1e-10, atol=0, err_msg=name)


def test_one_device_is_no_mesh():
    """The default keeps today's run: one device (or None) makes no mesh, and an update on
    no mesh is the update itself."""
    assert ensemble_mesh(None) is None
    assert ensemble_mesh(1) is None
    local = LocalUpdate(np.zeros((3, 2)), tb.ensemble.euclidean, 1.0)
    assert local.on(None) is local
    assert GlobalUpdate("etkf").on(None) == GlobalUpdate("etkf")
    assert tb.ETKF().devices == 1


def test_devices_must_divide_the_members_and_exist():
    with pytest.raises(SettingsError, match=r"10 members cannot be split evenly over 4 "
                                            r"devices: make ensemble_size a multiple of 4 "
                                            r"\(e\.g\. 12\)"):
        tb.LETKF(ensemble_size=10, devices=4)
    assert tb.EnKF(ensemble_size=12, devices=4).devices == 4
    with pytest.raises(ValueError, match=f"JAX sees {jax.device_count()} device"):
        ensemble_mesh(jax.device_count() + 1)


@pytest.mark.slow
def test_two_hosts_through_jax_distributed_equal_one_device(tmp_path):
    """Two processes of two CPU devices each, joined by ``jax.distributed.initialize`` (as
    two hosts would be): the mesh of ``ensemble_mesh(4)`` spans both, every process builds
    the same inputs from the same keys, and the smoothed members, gathered back to every
    process, equal the one-device smoother's."""
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "hosts.npz"
    processes = [_launch(path, 2, str(rank), str(port)) for rank in (0, 1)]
    try:
        one = sharded_runs.sharded_window(1)
        two_hosts = _finished(processes, path)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert (int(two_hosts["devices"]), int(two_hosts["processes"])) == (DEVICES, 2)
    np.testing.assert_allclose(two_hosts["smoothed"], one["window.smoothed"], rtol=0,
                               atol=TOL)
