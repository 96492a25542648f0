"""The compact LETKF local solve (observations of non-zero weight only) against the dense one.

``letkf(..., compact=True)`` (the default) must give the numbers of ``compact=False`` (every
local problem solved with all ``m`` observations) to round-off, whether every local problem
fits in the compact size (the compact path runs) or not (the dense fallback runs), with
weight nodes, a rotation, a distance function, batches, padding and a mesh, eagerly and under
``jit`` (where the choice is a ``lax.cond``). The identities themselves (Eqs. C1-C2 of
:mod:`tracerbayes.ensemble.analysis`) are checked against dense NumPy algebra.
"""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from tracerbayes import ensemble as ens
from tracerbayes.ensemble import analysis

TOL = 1e-12  # float64, fields of order one
L = 100.0  # length of the line the state points and observations lie on
N, n, m = 16, 60, 40  # members, state points, observations: compact size N // 2 = 8
STATE = np.linspace(0.0, L, n)[:, None]


def line_problem(rng, obs_x=None):
    """Ensemble (N, n) on ``STATE``, observations of the nearest state point at ``obs_x``."""
    obs_x = rng.uniform(0.0, L, m) if obs_x is None else obs_x
    H = np.zeros((obs_x.size, n))
    H[np.arange(obs_x.size), np.abs(obs_x[:, None] - STATE[:, 0]).argmin(axis=1)] = 1.0
    E = rng.standard_normal((N, n)) + np.sin(STATE[:, 0] / 7.0)
    sd = rng.uniform(0.5, 1.5, obs_x.size)
    y = H @ np.sin(STATE[:, 0] / 7.0) + sd * rng.standard_normal(obs_x.size)
    return E, y, H, sd, obs_x[:, None]


def most_in_range(table, radius):
    """The largest number of observations of non-zero weight over the local problems."""
    return int((np.asarray(ens.gaspari_cohn(np.asarray(table) / radius)) > 0).sum(1).max())


@pytest.fixture
def solves(monkeypatch):
    """Which local solves ran (eagerly the unused path is not even traced)."""
    calls = {"dense": 0, "compact": 0}

    def spy(name, solve):
        def wrapped(*args):
            calls[name] += 1
            return solve(*args)
        return wrapped

    monkeypatch.setattr(analysis, "etkf_weights", spy("dense", analysis.etkf_weights))
    monkeypatch.setattr(analysis, "compact_etkf_weights",
                        spy("compact", analysis.compact_etkf_weights))
    return calls


def both(E, y, H, sd, **kwargs):
    return (np.asarray(ens.letkf(E, y, H, sd, **kwargs)),
            np.asarray(ens.letkf(E, y, H, sd, compact=False, **kwargs)))


@pytest.mark.parametrize("radius, path", [(1.5, "compact"), (10.0, "dense")])
def test_compact_equals_dense(rng, solves, radius, path):
    """(a) every local problem within the compact size, (b) more observations in range
    than it (the dense fallback)."""
    E, y, H, sd, obs = line_problem(rng)
    table = ens.distance_table(ens.euclidean, STATE, obs)
    assert (most_in_range(table, radius) <= N // 2) == (path == "compact")
    got, ref = both(E, y, H, sd, distances=table, radius=radius)
    # eagerly only the path taken is traced: once, plus the dense reference
    assert solves == ({"compact": 1, "dense": 1} if path == "compact" else
                      {"compact": 0, "dense": 2})
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
    assert np.abs(got - E).max() > 0.1  # the observations do move the ensemble


@pytest.mark.parametrize("radius", [1.5, 10.0])
def test_compact_equals_dense_with_nodes_rotation_and_batches(rng, key, radius):
    """(c) weight nodes, (d) a rotation, with a distance function and batches."""
    E, y, H, sd, obs = line_problem(rng)
    node_x = np.arange(0.0, L + 1e-9, 5.0)[:, None]  # a node every 3 state points or so
    right = np.clip(np.searchsorted(node_x[:, 0], STATE[:, 0]), 1, len(node_x) - 1)
    frac = (STATE[:, 0] - node_x[right - 1, 0]) / (node_x[right, 0] - node_x[right - 1, 0])
    nodes = ens.WeightNodes(node_x, np.stack([right - 1, right], 1),
                            np.stack([1.0 - frac, frac], 1))
    rows = ens.distance_rows(ens.euclidean, node_x, obs)
    got, ref = both(E, y, H, sd, distances=rows, radius=radius, nodes=nodes,
                    rotation_key=key, batch_size=4)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
    got, ref = both(E, y, H, sd, distances=ens.distance_table(ens.euclidean, STATE, obs),
                    radius=radius, rotation_key=key, batch_size=7)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("radius", [1.5, 10.0])
def test_compact_under_jit_and_on_a_mesh(rng, radius):
    """Traced, the path is chosen by ``lax.cond``; on a mesh, inside its tiles."""
    E, y, H, sd, obs = line_problem(rng)
    table = ens.distance_table(ens.euclidean, STATE, obs)
    mesh = Mesh(np.array(jax.devices()[:1]), ("tiles",))
    ref = np.asarray(ens.letkf(E, y, H, sd, distances=table, radius=radius, compact=False))
    for kwargs in ({}, {"mesh": mesh}):
        run = jax.jit(lambda E, y, table, kwargs=kwargs: ens.letkf(
            E, y, H, sd, distances=table, radius=radius, **kwargs))
        np.testing.assert_allclose(run(E, y, table), ref, atol=TOL, rtol=0)


def test_far_observations_change_nothing(rng, solves):
    """Observations beyond twice the half-width of every point have weight exactly zero:
    adding many of them changes neither the result nor the path (they are never kept)."""
    E, y, H, sd, obs = line_problem(rng)
    radius = 1.5
    far_x = rng.uniform(L + 2 * radius + 1.0, 3 * L, 3 * m)  # off the end of the line
    E2, y2, H2, sd2, obs2 = line_problem(rng, np.concatenate([obs[:, 0], far_x]))
    H2[:m], sd2[:m], y2[:m] = H, sd, y
    H2[m:] = rng.standard_normal((far_x.size, n))  # they would matter at any finite weight
    table = ens.distance_table(ens.euclidean, STATE, obs)
    table2 = ens.distance_table(ens.euclidean, STATE, obs2)
    assert most_in_range(table2, radius) == most_in_range(table, radius) <= N // 2
    alone = np.asarray(ens.letkf(E, y, H, sd, distances=table, radius=radius))
    got, ref = both(E, y2, H2, sd2, distances=table2, radius=radius)
    assert solves == {"compact": 2, "dense": 1}  # alone and got; ref is the dense one
    np.testing.assert_allclose(got, alone, atol=TOL, rtol=0)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)


def test_padding_in_range_does_not_count(rng, solves):
    """Padding (``valid`` false) next to every point neither counts against the compact size
    nor changes the result."""
    E, y, H, sd, obs = line_problem(rng)
    radius = 1.5
    pad_x = np.repeat(STATE[:, 0], 2)  # two padding observations at every state point
    E2, y2, H2, sd2, obs2 = line_problem(rng, np.concatenate([obs[:, 0], pad_x]))
    H2[:m], sd2[:m], y2[:m] = H, sd, y
    y2[m:], sd2[m:] = np.nan, -1.0
    valid = np.arange(y2.size) < m
    table2 = ens.distance_table(ens.euclidean, STATE, obs2)
    assert most_in_range(table2, radius) > N // 2
    got, ref = both(E, y2, H2, sd2, distances=table2, radius=radius, valid=valid)
    assert solves == {"compact": 1, "dense": 1}
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
    alone = ens.letkf(E, y, H, sd, radius=radius,
                      distances=ens.distance_table(ens.euclidean, STATE, obs))
    np.testing.assert_allclose(got, alone, atol=TOL, rtol=0)


@pytest.mark.parametrize("k, zero_columns", [(5, 0), (5, 2), (20, 0), (20, 7)])
def test_compact_weights_against_dense_algebra(rng, k, zero_columns):
    """Eqs. C1-C2 against ``(I + S S^T)^{-1}`` and its inverse symmetric square root from
    NumPy's ``eigh``, for fewer and more observations than members and rank-deficient ``S``."""
    members = 12
    S = rng.standard_normal((members, k))
    S[:, :zero_columns] = 0.0
    d = rng.standard_normal(k)
    lam, U = np.linalg.eigh(np.eye(members) + S @ S.T)
    w_ref = np.linalg.solve(np.eye(members) + S @ S.T, S @ d) / np.sqrt(members - 1.0)
    W_ref = (U / np.sqrt(lam)) @ U.T
    w, W = analysis.compact_etkf_weights(S, d)
    np.testing.assert_allclose(w, w_ref, atol=TOL, rtol=0)
    np.testing.assert_allclose(W, W_ref, atol=TOL, rtol=0)
    w_dense, W_dense = analysis.etkf_weights(S, d)
    np.testing.assert_allclose(w, w_dense, atol=TOL, rtol=0)
    np.testing.assert_allclose(W, W_dense, atol=TOL, rtol=0)


def test_interpolation_in_default_batches_is_the_direct_sum(rng):
    """``interpolate_transforms`` in its default (cache-sized) batches, with a variable
    count that is not a multiple of the batch, against the sum written out with NumPy."""
    members, p, cells, s = 8, 5, 12000, 3  # default batch 2**20 // (3 * 64) = 5461
    at_nodes = rng.standard_normal((p, members, members))
    nodes = ens.WeightNodes(np.zeros((p, 1)), rng.integers(0, p, (cells, s)),
                            rng.uniform(0.0, 1.0, (cells, s)))
    columns = rng.standard_normal((cells, members, 2))
    expected = np.einsum("is,isjk,ikl->ijl", nodes.weights, at_nodes[nodes.indices], columns)
    for batch_size in (None, 1000):
        got = analysis.interpolate_transforms(at_nodes, nodes, columns, batch_size)
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
