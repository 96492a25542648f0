"""Test configuration: float64 everywhere, deterministic seeds, no downloads."""

import warnings

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

try:  # any attempt by cartopy to download Natural Earth data fails at once
    from cartopy.io import DownloadWarning

    warnings.simplefilter("error", DownloadWarning)
except ImportError:  # pragma: no cover - cartopy is a dependency
    pass


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20261128)


@pytest.fixture
def key():
    """A JAX PRNG key with a fixed seed."""
    return jax.random.key(20261128)


def _mapped_regions() -> int:
    """How many memory regions this process has mapped (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # pragma: no cover - not Linux
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs(request):
    """Free the XLA programs a test module compiled once the module is done.

    Every compiled CPU program keeps its machine code mapped; an xdist worker that runs
    hundreds of modules' programs reaches the kernel's limit on mapped regions
    (vm.max_map_count, 65530 by default), and XLA's compiler then fails ("Failed to
    materialize symbols") or crashes the worker late in the run. Clearing JAX's caches
    between modules keeps a worker's footprint at one module's worth.
    """
    yield
    import gc
    import os

    before = _mapped_regions()
    jax.clear_caches()
    gc.collect()
    log = os.environ.get("TRACERBAYES_MAPS_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {request.module.__name__} {before} {_mapped_regions()}\n")
