"""Localisation: the Gaspari-Cohn taper, distances, and a mass-safe LETKF.

Distances are plain functions of two points, written for one pair and mapped with ``vmap``:

* :func:`great_circle_km` for (lon, lat) in degrees on a sphere of radius 6371 km;
* :func:`euclidean` for Cartesian coordinates in metres (or any unit);
* :func:`ring_distance` for integer positions on a periodic ring (the Lorenz-96 circle).

:func:`distance_table` turns one of them into the (n, m) table that
:func:`tracerbayes.ensemble.analysis.letkf` accepts, and :func:`distance_rows` into the
row function ``i -> (m,)`` that avoids storing the table.

References
----------
Gaspari, G. & Cohn, S. E. (1999). Construction of correlation functions in two and three
dimensions. Q. J. R. Meteorol. Soc. 125, 723-757.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "EARTH_RADIUS_KM",
    "WeightNodes",
    "distance_rows",
    "distance_table",
    "euclidean",
    "gaspari_cohn",
    "great_circle_km",
    "mass_safe_letkf",
    "restore_totals",
    "ring_distance",
]

EARTH_RADIUS_KM = 6371.0


class WeightNodes(NamedTuple):
    """Where an LETKF computes its local weights, and how every state variable interpolates them.

    Weight interpolation (Yang, Kalnay, Hunt & Bowler 2009): the local ensemble transforms
    vary smoothly in space (over the localisation radius), so they are computed at ``p``
    nodes only, e.g. every few cells, and each state variable takes the weighted average of
    its nodes' transforms. The analysis cost falls by ``n / p``; with one node per state
    variable and weight 1 it is the plain LETKF. Build one for a grid with
    :func:`tracerbayes.ensemble.tracer.weight_nodes`.

    Attributes
    ----------
    coords : Array (p, d)
        Node positions, in the units of the distance function used with them.
    indices : int Array (n, s)
        The ``s`` nodes of every state variable.
    weights : Array (n, s)
        Their interpolation weights (each row sums to one).
    """

    coords: Any
    indices: Any
    weights: Any




def gaspari_cohn(r: jax.Array) -> jax.Array:
    """Gaspari-Cohn fifth-order piecewise rational taper, Eq. (4.10) of Gaspari & Cohn (1999).

    ``r = distance / c`` with ``c`` the half-width; the taper is 1 at ``r = 0``, compactly
    supported on ``r < 2`` (distance ``< 2 c``) and a valid correlation function in 3-D.
    ``r = 0`` is returned for ``c = inf``, so an infinite half-width means no localisation.
    """
    r = jnp.abs(jnp.asarray(r))
    r = jnp.where(jnp.isnan(r), 0.0, r)  # 0 / 0 and inf / inf never occur in valid use
    inner = (((-0.25 * r + 0.5) * r + 0.625) * r - 5.0 / 3.0) * r**2 + 1.0
    ro = jnp.where(r > 0, r, 1.0)
    outer = ((((r / 12.0 - 0.5) * r + 0.625) * r + 5.0 / 3.0) * r - 5.0) * r + 4.0 \
        - 2.0 / (3.0 * ro)
    # clip: the outer polynomial rounds to about -1e-16 just below r = 2 (sqrt is taken of it)
    return jnp.clip(jnp.where(r <= 1.0, inner, jnp.where(r < 2.0, outer, 0.0)), 0.0, 1.0)


def great_circle_km(p: jax.Array, q: jax.Array) -> jax.Array:
    """Great-circle distance (km) between (lon, lat) points in degrees (haversine formula)."""
    lon1, lat1 = jnp.deg2rad(p[0]), jnp.deg2rad(p[1])
    lon2, lat2 = jnp.deg2rad(q[0]), jnp.deg2rad(q[1])
    h = jnp.sin(0.5 * (lat2 - lat1)) ** 2 \
        + jnp.cos(lat1) * jnp.cos(lat2) * jnp.sin(0.5 * (lon2 - lon1)) ** 2
    return 2.0 * EARTH_RADIUS_KM * jnp.arcsin(jnp.sqrt(jnp.clip(h, 0.0, 1.0)))


def euclidean(p: jax.Array, q: jax.Array) -> jax.Array:
    """Euclidean distance between two points (metres on a Cartesian grid)."""
    diff = jnp.atleast_1d(p - q)
    return jnp.sqrt(jnp.sum(diff * diff))


def ring_distance(size: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Distance ``min(|i - j|, size - |i - j|)`` on a periodic ring of ``size`` points."""
    def distance(p, q):
        gap = jnp.abs(jnp.asarray(p) - jnp.asarray(q)).reshape(()) % size
        return jnp.minimum(gap, size - gap)
    return distance


def distance_table(distance: Callable, state_coords: Any, obs_coords: Any) -> jax.Array:
    """All distances (n, m) between state points (n, d) and observation points (m, d)."""
    pair = jax.vmap(jax.vmap(distance, (None, 0)), (0, None))
    return pair(jnp.asarray(state_coords), jnp.asarray(obs_coords))


def distance_rows(distance: Callable, state_coords: Any,
                  obs_coords: Any) -> Callable[[jax.Array], jax.Array]:
    """The row function ``i -> distances (m,)`` from state point ``i`` to every observation."""
    state_coords, obs_coords = jnp.asarray(state_coords), jnp.asarray(obs_coords)
    row = jax.vmap(distance, (None, 0))
    return lambda i: row(state_coords[i], obs_coords)


def mass_safe_letkf(E: jax.Array, y: jax.Array, H: Any, obs_sd: jax.Array, *,
                    distances: Any, radius: float, cell_area: Any,
                    valid: jax.Array | None = None, rotation_key: jax.Array | None = None,
                    batch_size: int | None = None, basins: Any = None,
                    nodes: WeightNodes | None = None, mesh: Any = None) -> jax.Array:
    """LETKF whose member totals are those of the global ETKF: localise only the mass-free part.

    With ``a`` the cell areas (m^2) and ``Pi = I - 1 a^T / (1^T a)`` the mass-free projection,
    member ``j``'s increment is ``dx_j = Pi dx_j^{LETKF} + (I - Pi) dx_j^{ETKF}``: the
    localised increment with its total removed, plus a spatially uniform field carrying the
    global (unlocalised) ETKF increment's total.

    Guarantee: for every member, ``a^T x_j^a = a^T x_j^{ETKF}`` to round-off, whatever the
    ensemble. The global ETKF's members are affine combinations of the forecast members with
    weights summing to one, so if every forecast member has the same total ``M`` then every
    analysis member has total ``M`` too (its anomaly totals are zero); in particular the
    totals are conserved through the analysis. The mass-free part is localised exactly as in
    :func:`~tracerbayes.ensemble.analysis.letkf`; the total's correction is spread uniformly
    over the basin, which is not local. With ``basins`` (integer label (n,) of each cell's
    connected basin) this holds in every basin separately: each basin's total correction is
    spread over that basin only. Same ``rotation_key`` for both parts. ``nodes`` (weight
    interpolation) and ``mesh`` (local problems in tiles over devices): as in
    :func:`~tracerbayes.ensemble.analysis.letkf`.
    """
    from tracerbayes.ensemble.analysis import etkf, letkf

    E = jnp.asarray(E)
    area = jnp.asarray(cell_area, E.dtype)
    if area.shape != (E.shape[1],):
        raise ValueError(f"cell_area has shape {area.shape}; expected (n,) = ({E.shape[1]},)")
    local = letkf(E, y, H, obs_sd, distances=distances, radius=radius, valid=valid,
                  rotation_key=rotation_key, batch_size=batch_size, nodes=nodes, mesh=mesh)
    global_ = etkf(E, y, H, obs_sd, valid=valid, rotation_key=rotation_key)
    return restore_totals(local, global_, area, basins)


def restore_totals(local: jax.Array, global_: jax.Array, cell_area: Any,
                   basins: Any = None) -> jax.Array:
    """``local`` (..., n) plus, in every basin, the uniform field that gives it the
    area-weighted totals of ``global_`` (one basin when ``basins`` is None)."""
    area = jnp.asarray(cell_area, local.dtype)
    n = area.shape[0]  # at most n basins: the labels may be traced
    labels = jnp.zeros(n, int) if basins is None else jnp.asarray(basins)
    # (basin, ...): the total the local update misses, per unit area of the basin
    gap = jax.ops.segment_sum(jnp.moveaxis((global_ - local) * area, -1, 0), labels,
                              num_segments=n)
    basin_area = jax.ops.segment_sum(area, labels, num_segments=n)
    basin_area = jnp.where(basin_area > 0, basin_area, 1.0)  # labels not used: no division
    per_area = gap / basin_area.reshape((n,) + (1,) * (gap.ndim - 1))
    return local + jnp.moveaxis(per_area[labels], 0, -1)
