"""Grid: spherical and Cartesian metrics, masks, conversions and errors.

References are closed forms: the area of a sphere (4 pi R^2), of a latitude-longitude cell
(R^2 dlambda (sin phi_2 - sin phi_1)), of a meridian segment (R dphi) and of a parallel
segment (R cos(phi) dlambda); land/sea is checked against ``global_land_mask`` itself.
"""

import numpy as np
import pytest
import xarray as xr
from global_land_mask import globe

import tracerbayes as tb

R = tb.EARTH_RADIUS
RTOL = 1e-12  # float64 round-off on sums of O(100) terms


# ----------------------------------------------------------------------------- metrics
def test_global_areas_sum_to_sphere():
    grid = tb.Grid.regular(lon=(-180, 180), lat=(-90, 90), resolution=1.0, periodic=True)
    assert grid.shape == (180, 360)
    assert grid.periodic_x
    total = grid.cell_area.sum()
    np.testing.assert_allclose(total, 4 * np.pi * R**2, rtol=1e-10)
    # Every cell of a row has the same area; rows are symmetric about the equator.
    np.testing.assert_allclose(grid.cell_area, grid.cell_area[:, :1].repeat(360, 1), rtol=RTOL)
    np.testing.assert_allclose(grid.cell_area, grid.cell_area[::-1], rtol=1e-10)
    assert grid.total(np.ones(grid.n_wet)) == pytest.approx(4 * np.pi * R**2, rel=1e-10)


def test_single_cell_area_closed_form():
    grid = tb.Grid.regular(lon=(10, 20), lat=(30, 60), resolution=(2.0, 5.0))
    j, i = 3, 4  # latitude 45..50, longitude 18..20
    phi1, phi2 = np.deg2rad([45.0, 50.0])
    expected = R**2 * np.deg2rad(2.0) * (np.sin(phi2) - np.sin(phi1))
    np.testing.assert_allclose(grid.y_edges[j : j + 2], [45.0, 50.0])
    np.testing.assert_allclose(grid.x_edges[i : i + 2], [18.0, 20.0])
    np.testing.assert_allclose(grid.cell_area[j, i], expected, rtol=RTOL)


def test_spherical_face_lengths_and_distances():
    dlon, dlat = 2.0, 1.5
    grid = tb.Grid.regular(lon=(-20, 20), lat=(-30, 60), resolution=(dlon, dlat))
    ny, nx = grid.shape
    # East faces are meridian segments R dphi, the same in every column.
    np.testing.assert_allclose(grid.east_face_length, R * np.deg2rad(dlat), rtol=RTOL)
    # North faces are parallel segments at the face latitude (the upper edge of the cell).
    phi_face = np.deg2rad(grid.y_edges[1:])
    expected_north = R * np.cos(phi_face)[:, None] * np.deg2rad(dlon) * np.ones((1, nx))
    np.testing.assert_allclose(grid.north_face_length, expected_north, rtol=RTOL)
    # Centre-to-centre distances across open faces.
    east_dist = R * np.cos(np.deg2rad(grid.y))[:, None] * np.deg2rad(dlon) * np.ones((1, nx))
    np.testing.assert_allclose(grid.east_face_distance[:, :-1], east_dist[:, :-1], rtol=RTOL)
    np.testing.assert_allclose(grid.north_face_distance[:-1], R * np.deg2rad(dlat), rtol=RTOL)
    # Closed outer boundaries: last column (east) and last row (north), not periodic.
    assert grid.east_open[:, :-1].all() and not grid.east_open[:, -1].any()
    assert grid.north_open[:-1].all() and not grid.north_open[-1].any()
    # Gauss on a cell: its area is consistent with its face lengths to second order.
    approx = 0.5 * (grid.north_face_length[:-1] + grid.north_face_length[1:])
    approx = approx * grid.east_face_length[1:]
    np.testing.assert_allclose(approx, grid.cell_area[1:], rtol=1e-3)


def test_periodic_grid_wraps_east_faces():
    grid = tb.Grid.regular(lon=(0, 360), lat=(-60, 60), resolution=30.0, periodic=True)
    assert grid.east_open[:, -1].all()
    # The wrap-around distance equals every other east-west distance.
    np.testing.assert_allclose(grid.east_face_distance[:, -1], grid.east_face_distance[:, 0],
                               rtol=RTOL)


def test_cartesian_areas_and_faces():
    x = np.array([0.0, 1.0, 3.0, 6.0, 10.0]) * 1e3
    y = np.array([0.0, 2.0, 3.0]) * 1e3
    grid = tb.Grid.from_coords(x, y, coords="cartesian")
    dx = np.diff(grid.x_edges)
    dy = np.diff(grid.y_edges)
    np.testing.assert_allclose(grid.x_edges, [-500, 500, 2000, 4500, 8000, 12000])
    np.testing.assert_allclose(grid.cell_area, np.outer(dy, dx), rtol=RTOL)
    np.testing.assert_allclose(grid.east_face_length, np.outer(dy, np.ones(x.size)))
    np.testing.assert_allclose(grid.north_face_length, np.outer(np.ones(y.size), dx))
    np.testing.assert_allclose(grid.east_face_distance[:, :-1], np.diff(x)[None].repeat(3, 0))
    np.testing.assert_allclose(grid.north_face_distance[:-1], np.diff(y)[:, None].repeat(5, 1))
    reg = tb.Grid.cartesian((0, 50e3), (0, 30e3), (5e3, 3e3))
    assert reg.shape == (10, 10)
    np.testing.assert_allclose(reg.cell_area, 15e6, rtol=RTOL)
    assert reg.dims == ("y", "x")


# ----------------------------------------------------------------------------- masks
def test_mask_from_boolean_and_dataarray(rng):
    grid0 = tb.Grid.regular(lon=(0, 10), lat=(0, 5), resolution=1.0)
    wet = rng.random(grid0.shape) < 0.6
    wet[0, 0] = True
    grid = tb.Grid.regular(lon=(0, 10), lat=(0, 5), resolution=1.0, mask=wet)
    np.testing.assert_array_equal(grid.mask, wet)
    assert grid.n_wet == wet.sum()
    da = xr.DataArray(wet, dims=("lat", "lon"), coords={"lat": grid.y, "lon": grid.x})
    grid_da = tb.Grid.regular(lon=(0, 10), lat=(0, 5), resolution=1.0, mask=da)
    np.testing.assert_array_equal(grid_da.mask, wet)
    # Numbers: non-zero is water.
    grid_int = tb.Grid.regular(lon=(0, 10), lat=(0, 5), resolution=1.0, mask=wet.astype(int))
    np.testing.assert_array_equal(grid_int.mask, wet)
    # Faces are open only between two wet cells.
    np.testing.assert_array_equal(grid.east_open[:, :-1], wet[:, :-1] & wet[:, 1:])
    np.testing.assert_array_equal(grid.north_open[:-1], wet[:-1] & wet[1:])


def test_mask_from_nan_field_and_descending_latitude(rng):
    lon = np.arange(0.5, 8.0, 1.0)
    lat_desc = np.arange(9.5, 0.0, -1.0)  # north to south, as many products store it
    values = rng.normal(size=(lat_desc.size, lon.size))
    values[0, :3] = np.nan  # northernmost row, western cells: land
    values[-1, -1] = np.nan  # southernmost row, easternmost cell: land
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat_desc, "lon": lon})
    grid = tb.Grid.from_xarray(da)
    np.testing.assert_allclose(grid.y, lat_desc[::-1])
    np.testing.assert_allclose(grid.x, lon)
    expected = np.isfinite(values[::-1])
    np.testing.assert_array_equal(grid.mask, expected)
    assert not grid.mask[-1, :3].any() and not grid.mask[0, -1]
    # A field with a leading time dimension: its first time slice gives the mask.
    da_t = da.expand_dims(time=3)
    np.testing.assert_array_equal(tb.Grid.from_xarray(da_t).mask, expected)
    # A float mask array with NaN also means land.
    grid2 = tb.Grid.from_coords(lon, lat_desc[::-1], mask=values[::-1])
    np.testing.assert_array_equal(grid2.mask, expected)


def test_auto_mask_matches_global_land_mask():
    grid = tb.Grid.regular(lon=(-10, 5), lat=(35, 45), resolution=1.0, mask="auto")
    lon2d, lat2d = np.meshgrid(grid.x, grid.y)
    np.testing.assert_array_equal(grid.mask, globe.is_ocean(lat2d, lon2d))

    def wet_at(lon, lat):
        return bool(grid.mask[np.searchsorted(grid.y_edges, lat) - 1,
                              np.searchsorted(grid.x_edges, lon) - 1])

    assert not wet_at(-3.5, 40.5)  # central Spain
    assert not wet_at(-5.5, 39.5)  # Extremadura
    assert wet_at(-9.5, 44.5)  # Atlantic off Galicia
    assert wet_at(4.5, 40.5)  # western Mediterranean
    assert 0 < grid.n_wet < grid.mask.size


def test_state_field_round_trip(rng):
    wet = rng.random((6, 9)) < 0.7
    wet[2, 3] = True
    grid = tb.Grid.cartesian((0, 9e3), (0, 6e3), 1e3, mask=wet)
    state = rng.normal(size=grid.n_wet)
    field = grid.to_field(state)
    assert field.shape == (6, 9)
    assert np.all(np.isnan(field[~wet]))
    np.testing.assert_array_equal(field[wet], state)  # row-major order of the wet cells
    np.testing.assert_array_equal(grid.to_state(field), state)
    np.testing.assert_array_equal(grid.wet_index, np.flatnonzero(wet))
    # Batches carry leading dimensions.
    batch = rng.normal(size=(4, 2, grid.n_wet))
    fields = grid.to_field(batch, fill=0.0)
    assert fields.shape == (4, 2, 6, 9)
    assert np.all(fields[..., ~wet] == 0.0)
    np.testing.assert_array_equal(grid.to_state(fields), batch)
    np.testing.assert_allclose(grid.total(batch), batch @ grid.cell_area[wet], rtol=RTOL)
    np.testing.assert_array_equal(grid.wet_area, grid.cell_area[wet])


def test_to_xarray_cf_attributes_and_round_trip(rng):
    wet = rng.random((12, 16)) < 0.7
    wet[5, 5] = True
    grid = tb.Grid.regular(lon=(-40, 0), lat=(10, 40), resolution=2.5, mask=wet)
    ds = grid.to_xarray()
    assert ds["lon"].attrs["standard_name"] == "longitude"
    assert ds["lon"].attrs["units"] == "degrees_east"
    assert ds["lat"].attrs["standard_name"] == "latitude"
    assert ds["lat"].attrs["units"] == "degrees_north"
    assert ds["cell_area"].attrs["units"] == "m2"
    np.testing.assert_array_equal(ds["lon_bnds"].values[:, 0], grid.x_edges[:-1])
    np.testing.assert_array_equal(ds["lat_bnds"].values[:, 1], grid.y_edges[1:])
    back = tb.Grid.from_xarray(ds)
    assert back.coords is tb.CoordinateSystem.LONLAT
    np.testing.assert_array_equal(back.x, grid.x)
    np.testing.assert_array_equal(back.y, grid.y)
    np.testing.assert_array_equal(back.mask, grid.mask)
    np.testing.assert_allclose(back.x_edges, grid.x_edges, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.y_edges, grid.y_edges, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.cell_area, grid.cell_area, rtol=1e-12)
    # DataArrays of states carry the same coordinates.
    da = grid.to_dataarray(rng.normal(size=(3, grid.n_wet)), name="c")
    assert da.dims == ("dim_0", "lat", "lon")
    assert np.isnan(da.values[:, ~wet]).all()


def test_round_trip_cartesian_and_periodic():
    cart = tb.Grid.cartesian((0, 40e3), (0, 20e3), 5e3)
    ds = cart.to_xarray()
    assert ds["x"].attrs["units"] == "m"
    back = tb.Grid.from_xarray(ds)
    assert back.coords is tb.CoordinateSystem.CARTESIAN
    np.testing.assert_array_equal(back.x, cart.x)
    np.testing.assert_allclose(back.cell_area, cart.cell_area, rtol=1e-12)
    glob = tb.Grid.regular(lon=(-180, 180), lat=(-80, 80), resolution=20.0, periodic=True)
    back = tb.Grid.from_xarray(glob.to_xarray())
    assert back.periodic_x  # read from the Dataset's attribute
    np.testing.assert_array_equal(back.east_open, glob.east_open)


# ----------------------------------------------------------------------------- errors
def test_error_no_wet_cells():
    with pytest.raises(tb.GridError, match="no wet"):
        tb.Grid.regular(lon=(0, 4), lat=(0, 4), resolution=1.0, mask=np.zeros((4, 4), bool))
    with pytest.raises(tb.GridError, match="no wet"):
        tb.Grid.from_xarray(xr.DataArray(np.full((3, 2), np.nan), dims=("lat", "lon"),
                                         coords={"lat": [0.0, 1, 2], "lon": [0.0, 1]}))


def test_error_non_monotonic_and_duplicate_coordinates():
    with pytest.raises(tb.GridError, match="strictly increasing"):
        tb.Grid.from_coords([0.0, 2.0, 1.0], [0.0, 1.0])
    with pytest.raises(tb.GridError, match="remove duplicates"):
        tb.Grid.from_coords([0.0, 1.0, 2.0], [0.0, 1.0, 1.0, 2.0])
    with pytest.raises(tb.GridError, match="at least 2"):
        tb.Grid.from_coords([0.0], [0.0, 1.0])
    with pytest.raises(tb.GridError, match="non-finite"):
        tb.Grid.from_coords([0.0, np.nan], [0.0, 1.0])


def test_error_absurd_resolution():
    with pytest.raises(tb.GridError, match="beyond the limit"):
        tb.Grid.regular(lon=(-180, 180), lat=(-90, 90), resolution=1e-5)
    with pytest.raises(tb.GridError, match="exceeds the limit"):
        tb.Grid.regular(lon=(-180, 180), lat=(-90, 90), resolution=0.01)
    with pytest.raises(tb.GridError, match="positive"):
        tb.Grid.regular(lon=(0, 10), lat=(0, 10), resolution=0.0)


def test_error_extent_not_whole_cells():
    with pytest.raises(tb.GridError, match="whole number of cells"):
        tb.Grid.regular(lon=(0, 10), lat=(0, 10), resolution=3.0)
    with pytest.raises(tb.GridError, match="whole number of cells"):
        tb.Grid.cartesian((0, 10e3), (0, 10e3), (1e3, 4e3))
    with pytest.raises(tb.GridError, match="end > start"):
        tb.Grid.regular(lon=(10, 0), lat=(0, 10), resolution=1.0)


def test_error_mask_wrong_shape():
    with pytest.raises(tb.GridError, match=r"mask has shape \(4, 5\).*\(5, 4\)"):
        tb.Grid.regular(lon=(0, 4), lat=(0, 5), resolution=1.0, mask=np.ones((4, 5), bool))
    with pytest.raises(tb.GridError, match="not understood"):
        tb.Grid.regular(lon=(0, 4), lat=(0, 5), resolution=1.0, mask="ocean")


def test_error_auto_mask_on_cartesian():
    with pytest.raises(tb.GridError, match="lon/lat grid"):
        tb.Grid.cartesian((0, 10e3), (0, 10e3), 1e3, mask="auto")


def test_error_periodic_needs_360_degrees():
    with pytest.raises(tb.GridError, match="360"):
        tb.Grid.regular(lon=(0, 180), lat=(-10, 10), resolution=10.0, periodic=True)
    with pytest.raises(tb.GridError, match=r"\[-90, 90\]"):
        tb.Grid.regular(lon=(0, 10), lat=(80, 100), resolution=10.0)


def test_equal_grids_are_equal_and_share_compiled_programs():
    """A grid is equal to another built the same way (cell for cell), not only to itself:
    the programs that take it as a static argument compile once for both."""
    from tracerbayes.physics import operator

    def build(wall=False):
        mask = np.ones((6, 7), dtype=bool)
        mask[2:4, 3] = not wall
        return tb.Grid.cartesian(x=(0.0, 70e3), y=(0.0, 60e3), resolution=10e3, mask=mask)

    a, b, other = build(), build(), build(wall=True)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != other and a != "grid"
    assert tb.Grid.cartesian(x=(0.0, 70e3), y=(0.0, 60e3), resolution=10e3) != \
        tb.Grid.cartesian(x=(0.0, 70e3), y=(0.0, 60e3), resolution=10e3, periodic_x=True)
    field = np.random.default_rng(0).normal(size=a.n_wet)
    before = operator._chebyshev._cache_size()
    smooth_a = operator.heat_kernel(a, field, 15e3)
    smooth_b = operator.heat_kernel(b, field, 15e3)
    assert operator._chebyshev._cache_size() == before + 1
    np.testing.assert_array_equal(smooth_a, smooth_b)
