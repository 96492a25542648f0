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
