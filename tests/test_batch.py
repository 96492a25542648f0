"""``tracerbayes batch``: many runs on Dask, each atomic and restartable, one Zarr store.

The fast tests run the batch on an in-process Dask cluster with the fit replaced by the
stand-in posterior of ``test_outputs_safety`` (these are about the batch's files and restarts,
not inference). ``test_a_killed_worker_loses_no_finished_run`` runs real fits (a small
ensemble on the tiny basin, one config on a coarser grid) on a local cluster of two worker
processes and kills one of them with SIGKILL in the middle of a run.
"""

import functools
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import xarray as xr
from test_cli import TINY, tiny_config
from test_outputs_safety import StandIn

import tracerbayes.fitting
from tracerbayes.cli.batch import (
    FINISHED,
    BatchError,
    BatchRun,
    combine_runs,
    run_batch,
    run_name,
)
from tracerbayes.cli.main import main
from tracerbayes.io.files import LOCK_NAME

distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")

#: The coarse config's currents are regridded to its grid, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::tracerbayes.grid.regrid.RegridWarning")

NUTS = ("{name: nuts, num_warmup: 20, num_samples: 20, num_chains: 1, seed: 1,\n"
        "         allow_unconverged: true}")
#: A small ensemble: a few seconds a run once compiled.
ETKF = ("{name: etkf, ensemble_size: 6, parameters: prior, inflation: 1.02, seed: SEED, "
        "allow_unconverged: true}")
NAMES = ("gulf", "shelf", "slope", "coarse")


def write_configs(folder: Path, method: str = ETKF) -> list[Path]:
    """Four configs on the tiny basin's inputs in ``folder``, each with its own output folder
    and seed; ``coarse`` maps a 20 km grid without the mask (another grid)."""
    base = TINY.replace("output: {directory: out, maps: png}",
                        "output: {directory: out_NAME, maps: none, diagnostics: false}")
    paths = []
    for k, name in enumerate(NAMES):
        text = base.replace(NUTS, method.replace("SEED", str(k + 1))).replace("NAME", name)
        if name == "coarse":
            text = (text.replace("resolution: 10 km", "resolution: 20 km")
                    .replace("  mask: {file: mask.nc, variable: mask}\n", "")
                    .replace("v: v,", "v: v, regrid: linear,"))
        path = folder / f"{name}.yaml"
        path.write_text(text)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny basin's mask, currents and simulated observations, made once."""
    folder = tmp_path_factory.mktemp("inputs")
    config = tiny_config(folder)
    assert main(["simulate", str(config), "-q", "-o", str(folder)]) == 0
    return folder


@pytest.fixture
def configs(inputs, tmp_path):
    for name in ("mask.nc", "currents.nc", "obs.csv"):
        shutil.copy(inputs / name, tmp_path / name)
    return write_configs(tmp_path)


@pytest.fixture(scope="module")
def client():
    """An in-process Dask cluster (one worker thread): the stand-in fit reaches it."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as dask_client:
            yield dask_client


@pytest.fixture
def fits(monkeypatch, inputs):
    """Replace the fit by the stand-in (maps on the 10 km grid, whatever the config's);
    returns the list of its calls."""
    with xr.open_dataset(inputs / "mask.nc") as ds:
        mask = ds["mask"].values.astype(bool)

    @functools.wraps(tracerbayes.fitting.fit)
    def stand_in(model, obs, times, **options):
        calls.append(options)
        return StandIn(obs, times, mask, problems=calls.problems)

    calls = Calls()
    monkeypatch.setattr(tracerbayes.fitting, "fit", stand_in)
    return calls


class Calls(list):
    """The options of the stand-in fit's calls; ``problems``: its convergence problems."""

    problems: tuple[str, ...] = ()


def manifests(configs) -> dict[str, tuple[int, bytes]]:
    """Each finished run's run.json: (mtime in ns, contents), by run name."""
    found = {}
    for config in configs:
        path = config.parent / f"out_{config.stem}" / "run.json"
        if path.exists():
            found[config.stem] = (path.stat().st_mtime_ns, path.read_bytes())
    return found


def texts(array) -> list[str]:
    """The strings of an index variable (NumPy's StringDType or objects, by Zarr version)."""
    return [str(value) for value in array.values.tolist()]


def assert_store_matches_runs(store: Path, configs, names=NAMES):
    """The store's index names every run; each finished run's group is its posterior.nc."""
    with xr.open_zarr(store) as index:
        assert texts(index["run"]) == [c.stem for c in configs]
        assert texts(index["config"]) == [str(c.resolve()) for c in configs]
        statuses = dict(zip(texts(index["run"]), texts(index["status"]), strict=True))
    for name in names:
        assert statuses[name] in FINISHED
        with (xr.open_zarr(store, group=name) as group,
              xr.open_dataset(configs[0].parent / f"out_{name}" / "posterior.nc") as own):
            # values, coordinates and attributes exactly as in the run's own file
            xr.testing.assert_identical(group.load(), own.load())
    return statuses


# ------------------------------------------------------------------ fast: in-process cluster
def test_a_batch_writes_every_run_and_one_store_that_matches_them(configs, fits, client,
                                                                  tmp_path):
    store = tmp_path / "campaign.zarr"
    result = run_batch(configs, output=store, scheduler=client, progress=False)
    assert [run.name for run in result.runs] == list(NAMES)
    assert all(run.status == "complete" and not run.skipped for run in result.runs)
    assert result.failed == () and result.zarr == store and len(fits) == 4
    assert_store_matches_runs(store, configs)
    tree = xr.open_datatree(store, engine="zarr")
    assert sorted(tree.children) == sorted(NAMES)
    assert not [p for p in tmp_path.glob(".*")]  # no temporary store left


def test_restart_skips_finished_runs_and_finishes_the_rest(configs, fits, client, tmp_path,
                                                           capsys):
    store = tmp_path / "campaign.zarr"
    run_batch(configs, output=store, scheduler=client, progress=False)
    # Interrupt two runs after the fact: shelf killed before run.json, slope failed writing.
    (tmp_path / "out_shelf" / "run.json").unlink()
    slope = tmp_path / "out_slope" / "run.json"
    slope.write_text(json.dumps({**json.loads(slope.read_text()), "status": "failed: disk"}))
    before = manifests(configs)
    time.sleep(0.01)
    fits.clear()
    result = run_batch(configs, output=store, scheduler=client)
    printed = capsys.readouterr().out
    assert len(fits) == 2  # only the unfinished runs are fitted again
    assert {run.name: run.skipped for run in result.runs} == {
        "gulf": True, "shelf": False, "slope": False, "coarse": True}
    assert "gulf: finished earlier (complete), skipped" in printed
    assert "shelf: complete" in printed and "runs and the index" in printed
    after = manifests(configs)
    for name in ("gulf", "coarse"):  # not redone: the same run.json, not even touched
        assert after[name] == before[name]
    assert after["slope"] != before["slope"] and "shelf" in after
    assert_store_matches_runs(store, configs)
    # A third time: nothing to run (no Dask needed at all), the store is written again.
    fits.clear()
    result = run_batch(configs, output=store, scheduler="tcp://127.0.0.1:9", progress=False)
    assert fits == [] and all(run.skipped for run in result.runs)
    assert manifests(configs) == after


def test_overwrite_runs_everything_again(configs, fits, client, tmp_path):
    store = tmp_path / "campaign.zarr"
    run_batch(configs[:2], output=store, scheduler=client, progress=False)
    fits.clear()
    result = run_batch(configs[:2], output=store, scheduler=client, progress=False,
                       overwrite=True)
    assert len(fits) == 2 and not any(run.skipped for run in result.runs)


def test_a_failed_run_is_reported_and_the_others_are_combined(configs, fits, client, tmp_path):
    store = tmp_path / "campaign.zarr"
    (tmp_path / "shelf_obs.csv").write_text("time,x,y,value,error,platform\nnot,a,row,,,\n")
    configs[1].write_text(configs[1].read_text().replace("file: obs.csv", "file: shelf_obs.csv"))
    with pytest.raises(BatchError, match=r"1 of 4 runs did not finish \(shelf: failed: ") as err:
        run_batch(configs, output=store, scheduler=client, progress=False)
    assert "run the batch again to finish the others" in str(err.value)
    assert [run.name for run in err.value.result.failed] == ["shelf"]
    statuses = assert_store_matches_runs(store, configs, names=("gulf", "slope", "coarse"))
    assert statuses["shelf"].startswith(f"failed: {configs[1].resolve()}: ")
    with xr.open_datatree(store, engine="zarr") as tree:
        assert "shelf" not in tree.children


def test_the_command_line_runs_a_batch_quietly_or_not(configs, fits, client, tmp_path, capsys):
    address = client.scheduler.address
    store = tmp_path / "campaign.zarr"
    assert main(["batch", *map(str, configs[:2]), "--zarr", str(store), "--scheduler", address,
                 "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["batch", *map(str, configs), "--zarr", str(store), "--scheduler",
                 address]) == 0
    printed = capsys.readouterr().out
    assert f"tracerbayes batch: 4 runs, combined into {store}\n" in printed
    assert "  running 2 of 4 runs on the Dask scheduler at inproc://" in printed
    assert "[2/2] " in printed and "gulf: finished earlier (complete), skipped" in printed
    assert_store_matches_runs(store, configs)
    runs = tmp_path / "runs"  # --runs-dir: each run in DIR/NAME
    assert main(["batch", str(configs[0]), "--zarr", str(tmp_path / "b.zarr"), "--scheduler",
                 address, "--runs-dir", str(runs), "-q"]) == 0
    assert (runs / "gulf" / "run.json").is_file()


def test_an_unconverged_run_is_finished_and_the_command_says_so(configs, fits, client,
                                                                tmp_path, capsys):
    configs[0].write_text(configs[0].read_text().replace(", allow_unconverged: true", ""))
    fits.problems = ("17 divergent transitions",)
    argv = ["batch", *map(str, configs[:2]), "--zarr", str(tmp_path / "s.zarr"),
            "--scheduler", client.scheduler.address, "-q"]
    for _ in range(2):  # the second time it is skipped, and said again
        assert main(argv) == 3
        assert error_line(capsys) == (
            "tracerbayes: 1 run did not converge (gulf): their outputs and run.json are "
            "written (status not converged); see each run's diagnostics/")
    assert len(fits) == 2
    with xr.open_zarr(tmp_path / "s.zarr") as index:
        assert texts(index["status"]) == ["not converged", "complete"]


# ------------------------------------------------------------------ bad input, before any run
def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_refused_with_a_clear_message(configs, fits, tmp_path, capsys):
    store = str(tmp_path / "campaign.zarr")
    missing = tmp_path / "missing.yaml"
    assert main(["batch", str(configs[0]), str(missing), "--zarr", store]) == 1
    assert error_line(capsys) == f"tracerbayes: error: configuration file not found: {missing}"

    twin = tmp_path / "again"
    twin.mkdir()
    shutil.copy(configs[0], twin / "gulf.yaml")
    assert main(["batch", str(configs[0]), str(twin / "gulf.yaml"), "--zarr", store]) == 1
    assert error_line(capsys) == (
        f"tracerbayes: error: {configs[0].resolve()} and {(twin / 'gulf.yaml').resolve()} have "
        f"the same run name (gulf): runs are named after their config files: rename one")

    same_out = tmp_path / "other.yaml"
    same_out.write_text(configs[0].read_text())
    assert main(["batch", str(configs[0]), str(same_out), "--zarr", store]) == 1
    assert error_line(capsys).endswith(
        f"have the same output folder ({tmp_path / 'out_gulf'}): give each its own "
        "output.directory, or pass runs_dir (--runs-dir DIR) to write each run into DIR/NAME")

    reserved = tmp_path / "status.yaml"
    reserved.write_text(configs[0].read_text())
    assert main(["batch", str(reserved), "--zarr", store]) == 1
    assert "the run name 'status' (from the file name) cannot be a group" in error_line(capsys)

    a_file = tmp_path / "file.zarr"
    a_file.write_text("not a store")
    assert main(["batch", str(configs[0]), "--zarr", str(a_file)]) == 1
    assert error_line(capsys) == (f"tracerbayes: error: {a_file} is a file, not a Zarr store: "
                                  "remove it or choose another path for the store (--zarr)")
    a_folder = tmp_path / "notes"
    a_folder.mkdir()
    (a_folder / "keep.txt").write_text("mine")
    assert main(["batch", str(configs[0]), "--zarr", str(a_folder)]) == 1
    assert "is a folder that holds no Zarr store of tracerbayes batch" in error_line(capsys)

    start = time.perf_counter()
    with pytest.raises(BatchError, match=r"could not reach the Dask scheduler at "
                                         r"tcp://127.0.0.1:9 within 1 s \("):
        run_batch(configs[:1], output=store, scheduler="tcp://127.0.0.1:9", timeout=1.0,
                  progress=False)
    assert time.perf_counter() - start < 15
    assert fits == [] and not (tmp_path / "out_gulf").exists()
    with pytest.raises(BatchError, match="n_workers is 0: a local cluster needs at least 1"):
        run_batch(configs[:1], output=store, n_workers=0)


def test_a_folder_holding_another_configs_run_is_refused(configs, fits, client, tmp_path):
    store = tmp_path / "campaign.zarr"
    run_batch(configs[:1], output=store, scheduler=client, progress=False)
    configs[0].write_text(configs[0].read_text().replace("seed: 1,", "seed: 7,"))  # edited
    with pytest.raises(BatchError, match=r"holds the outputs of another config's run .*pass "
                                         r"--overwrite"):
        run_batch(configs[:1], output=store, scheduler=client, progress=False)
    assert len(fits) == 1


def test_run_names_and_the_store_of_no_finished_run(tmp_path):
    assert run_name("/a/b/canary_2020.yaml") == "canary_2020"
    runs = [BatchRun("a", Path("/x/a.yaml"), Path("/x/out_a"), status="failed: no"),
            BatchRun("b", Path("/x/b.yaml"), Path("/x/out_b"))]
    store = combine_runs(runs, tmp_path / "s.zarr")
    with xr.open_zarr(store) as index:
        assert texts(index["status"]) == ["failed: no", "pending"]
        assert index.attrs["title"] == "tracerbayes batch"


# ------------------------------------------------------------------ a worker killed midway
def kill_a_worker_midway(folder: Path, state: dict) -> None:
    """Once a run has finished, SIGKILL the worker process holding another run's lock (a
    process of this test's local Dask cluster); record in ``state`` the run.json files
    present just before, and whom it killed."""
    import psutil  # a dependency of distributed

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = list(folder.glob("out_*/run.json"))
        locks = [lock for lock in folder.glob(f"out_*/{LOCK_NAME}")
                 if not (lock.parent / "run.json").exists()]
        if done and locks:
            try:
                pid = int(locks[0].read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            ours = {child.pid for child in psutil.Process().children(recursive=True)}
            if pid in ours and pid != os.getpid():
                state["before"] = {path.parent.name: (path.stat().st_mtime_ns,
                                                      path.read_bytes()) for path in done}
                os.kill(pid, signal.SIGKILL)
                state["killed"] = (locks[0].parent.name, pid)
                return
        time.sleep(0.05)


@pytest.mark.slow  # about 50 s on two busy cores: four real fits and a worker restarted
def test_a_killed_worker_loses_no_finished_run(inputs, tmp_path):
    """On the default local cluster (two worker processes, one thread each)."""
    for name in ("mask.nc", "currents.nc", "obs.csv"):
        shutil.copy(inputs / name, tmp_path / name)
    configs = write_configs(tmp_path)
    store = tmp_path / "campaign.zarr"
    state: dict = {}
    killer = threading.Thread(target=kill_a_worker_midway, args=(tmp_path, state))
    killer.start()
    try:  # Dask gives the killed run to a worker again, or the batch says it failed
        first = run_batch(configs, output=store, n_workers=2, progress=False)
    except BatchError as err:
        first = err.result
    killer.join()
    assert "killed" in state, "no run was in progress after the first one finished"
    killed, pid = state["killed"]
    assert killed not in state["before"]
    with pytest.raises(ProcessLookupError):  # the worker was killed indeed
        os.kill(pid, 0)
    assert {run.name for run in first.runs if run.finished} >= {
        name.removeprefix("out_") for name in state["before"]}

    second = run_batch(configs, output=store, progress=False)  # the restart
    assert all(run.status == "complete" for run in second.runs)
    after = manifests(configs)
    for name, value in state["before"].items():  # finished before the kill: never redone
        assert after[name.removeprefix("out_")] == value
    for run in second.runs:  # the restart ran nothing that the first batch had finished
        assert run.skipped == (run.name in {r.name for r in first.runs if r.finished})
    assert_store_matches_runs(store, configs)
    with xr.open_zarr(store, group="coarse") as coarse, xr.open_zarr(store, group="gulf") as gulf:
        assert (coarse.sizes["y"], coarse.sizes["x"]) == (5, 6)  # runs on different grids
        assert (gulf.sizes["y"], gulf.sizes["x"]) == (10, 12)
    for config in configs:  # no lock or temporary left by the killed worker
        assert not list((tmp_path / f"out_{config.stem}").glob(".*"))
