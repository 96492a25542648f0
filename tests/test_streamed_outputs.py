"""Maps written as they are produced (``write_maps``, ``MapWriter``) equal the maps written
whole (``to_netcdf``, ``write_zarr``): values to 1e-12 relative, the same CF attributes."""

import numpy as np
import pytest
import xarray as xr
from test_ensemble_fit import small_problem

import tracerbayes as tb
from tracerbayes.exact.model import AdvectionDiffusionModel, ConstantVelocity, GivenVelocity, Priors
from tracerbayes.io.files import OutputError, live_temporaries
from tracerbayes.io.netcdf import MapWriter, cf_dataset, read_netcdf, write_zarr
from tracerbayes.posterior.exact import Posterior

pytestmark = pytest.mark.filterwarnings("ignore::tracerbayes.SamplingWarning")

RTOL = 1e-12  # float64: the chunks reduce the same numbers in another order at most
PARAMS = {"diffusivity": 400.0, "noise_sd": 0.1, "noise_lengthscale_km": 30.0,
          "initial_sd": 0.6, "initial_lengthscale_km": 40.0, "error_scale": 1.2,
          "u": 0.05, "v": -0.03}
ATTRS = {"history": "fixed for the comparison", "title": "streamed outputs"}


@pytest.fixture(scope="module")
def ensemble_post():
    """An ETKF posterior on the small basin: 5 daily times, 12 members."""
    grid, velocity, times, obs = small_problem(np.random.default_rng(3), T=5, dates=True)
    model = AdvectionDiffusionModel(grid, GivenVelocity(velocity), Priors(), n_modes=8)
    post = tb.fit(model, obs, times, tb.ETKF(ensemble_size=12, parameters="prior"),
                  progress=False)
    post.offset = 10.0  # added back to every map value
    return post


def exact_posterior(n_modes):
    """An exact posterior mixing 6 parameter draws (2 chains of 3) over 5 times; with 4
    modes ``map_chunks`` keeps the basis covariances (K^2 < 29 cells), with 8 the cells'
    variances."""
    grid, _, times, obs = small_problem(np.random.default_rng(4), T=5)
    model = AdvectionDiffusionModel(grid, ConstantVelocity(0.05), Priors(), n_modes=n_modes)
    n_cells, n_states = model.state_vectors.shape
    assert (n_states**2 < n_cells) == (n_modes == 4)
    data = model.prepare(obs, times)
    spread = np.array([[0.6, 1.0, 1.4], [0.8, 1.2, 1.6]])
    samples = {k: v * spread for k, v in PARAMS.items()}
    post = Posterior(model, obs, times, data, samples, {}, "nuts", {})
    post.offset = 2.0
    return post


@pytest.fixture(scope="module")
def exact_basis_post():
    return exact_posterior(4)


@pytest.fixture(scope="module")
def exact_cells_post():
    return exact_posterior(8)


KINDS = ["ensemble", "exact_basis", "exact_cells"]


def assert_same_files(streamed: xr.Dataset, whole: xr.Dataset):
    assert set(streamed.variables) == set(whole.variables)
    assert streamed.attrs == whole.attrs
    for name in whole.variables:
        assert streamed[name].dims == whole[name].dims, name
        assert streamed[name].attrs.keys() == whole[name].attrs.keys(), name
        for key, value in whole[name].attrs.items():
            np.testing.assert_array_equal(streamed[name].attrs[key], value, err_msg=name)
        a, b = np.asarray(streamed[name].values), np.asarray(whole[name].values)
        if np.issubdtype(b.dtype, np.floating) and name in ("mean", "sd", "quantiles"):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("which", KINDS)
@pytest.mark.parametrize("chunk_times", [1, 2, 5, 8])
def test_streamed_netcdf_equals_the_whole_file(request, tmp_path, which, chunk_times):
    post = request.getfixturevalue(f"{which}_post")
    post.to_netcdf(tmp_path / "whole.nc", units="degC", **ATTRS)
    paths = post.write_maps(tmp_path / "streamed.nc", chunk_times=chunk_times, units="degC",
                            **ATTRS)
    assert paths == [tmp_path / "streamed.nc"]
    assert_same_files(read_netcdf(tmp_path / "streamed.nc"), read_netcdf(tmp_path / "whole.nc"))
    with xr.open_dataset(tmp_path / "streamed.nc") as ds:
        assert ds["mean"].encoding["zlib"] and ds["mean"].encoding["complevel"] == 4
        assert ds["mean"].encoding["chunksizes"][0] == min(chunk_times, ds.sizes["time"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.nc", "whole.nc"]


@pytest.mark.parametrize("which", KINDS)
def test_map_chunks_cover_the_in_memory_maps(request, which):
    post = request.getfixturevalue(f"{which}_post")
    maps = post.maps(quantiles=(0.1, 0.9))
    chunks = list(post.map_chunks(chunk_times=2, quantiles=(0.1, 0.9)))
    assert [start for start, _ in chunks] == [0, 2, 4]
    for name in ("mean", "sd", "quantiles"):
        joined = np.concatenate([f[name] for _, f in chunks], axis=maps[name].dims.index("time"))
        np.testing.assert_allclose(joined, maps[name].values, rtol=RTOL, atol=0)
    layout = post.map_layout(quantiles=(0.1, 0.9))
    xr.testing.assert_identical(layout.drop_vars(["mean", "sd", "quantiles"]),
                                maps.drop_vars(["mean", "sd", "quantiles"]))
    assert layout["quantiles"].values.strides == (0, 0, 0, 0)  # a placeholder, no memory


def test_streamed_zarr_equals_the_whole_store(ensemble_post, tmp_path):
    pytest.importorskip("zarr")
    whole = ensemble_post.to_netcdf(tmp_path / "whole.nc", units="degC", **ATTRS)
    write_zarr(whole, tmp_path / "whole.zarr")
    paths = ensemble_post.write_maps(tmp_path / "streamed.nc", zarr=tmp_path / "streamed.zarr",
                                     chunk_times=2, units="degC", **ATTRS)
    assert paths == [tmp_path / "streamed.nc", tmp_path / "streamed.zarr"]
    with (xr.open_zarr(tmp_path / "streamed.zarr", consolidated=False) as streamed,
          xr.open_zarr(tmp_path / "whole.zarr", consolidated=False) as store):
        assert_same_files(streamed.load(), store.load())


def test_a_failure_midway_leaves_nothing_and_keeps_the_earlier_file(ensemble_post, tmp_path):
    target = tmp_path / "posterior.nc"
    target.write_bytes(b"an earlier run")
    layout = cf_dataset(ensemble_post.map_layout(), units="degC")
    with pytest.raises(RuntimeError, match="killed"):
        with MapWriter(layout, netcdf=target, zarr=tmp_path / "posterior.zarr",
                       chunk_times=2) as writer:
            start, fields = next(ensemble_post.map_chunks(chunk_times=2))
            writer.write(start, fields)
            raise RuntimeError("killed")
    assert target.read_bytes() == b"an earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posterior.nc"]
    assert live_temporaries() == []


def test_times_left_unwritten_or_misaligned_are_refused(ensemble_post, tmp_path):
    layout = cf_dataset(ensemble_post.map_layout(), units="degC")
    chunks = list(ensemble_post.map_chunks(chunk_times=2))
    with pytest.raises(ValueError, match="1 of 5 times were never written"):
        with MapWriter(layout, netcdf=tmp_path / "a.nc", chunk_times=2) as writer:
            for start, fields in chunks[:2]:
                writer.write(start, fields)
    with pytest.raises(ValueError, match="not whole chunks of 2"):
        with MapWriter(layout, netcdf=tmp_path / "a.nc", chunk_times=2) as writer:
            writer.write(1, chunks[0][1])
    with pytest.raises(ValueError, match="chunk_times=0"):
        MapWriter(layout, netcdf=tmp_path / "a.nc", chunk_times=0)
    with pytest.raises(OutputError, match="is a folder"):
        ensemble_post.write_maps(tmp_path)
    assert list(tmp_path.iterdir()) == [] and live_temporaries() == []


def test_cli_writes_the_streamed_file(ensemble_post, tmp_path):
    from tracerbayes.cli.workflow import TracerInfo, write_outputs

    pytest.importorskip("zarr")
    result = write_outputs(ensemble_post, tmp_path, TracerInfo(units="degC"), title="streamed",
                           maps_format="none", diagnostics=False, zarr=True,
                           say=lambda *a: None)
    assert result["paths"] == [tmp_path / "posterior.nc", tmp_path / "posterior.zarr"]
    ensemble_post.to_netcdf(tmp_path / "whole.nc", units="degC", title="streamed")
    streamed = read_netcdf(tmp_path / "posterior.nc")
    whole = read_netcdf(tmp_path / "whole.nc")  # written later: only the history differs
    assert_same_files(streamed, whole.assign_attrs(history=streamed.attrs["history"]))
    np.testing.assert_allclose(result["maps"]["mean"].values, streamed["mean"].values,
                               rtol=0, atol=0)
    result["maps"].close()
