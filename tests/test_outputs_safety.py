"""Outputs are all or nothing: checks before the fit, run.json last, one run per folder.

The fit is replaced by a stand-in posterior with made-up maps (these tests are about files,
not inference; tests/test_cli.py runs real fits), or by one that fails the test if called,
to show that a bad output folder is caught before any fitting.
"""

import errno
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_cli import TINY, tiny_config

import tracerbayes.fitting
from tracerbayes import __version__
from tracerbayes.cli.main import main
from tracerbayes.io import netcdf as cf
from tracerbayes.io.files import LOCK_NAME, OutputError, folder_lock, live_temporaries

FAST = (TINY.replace("output: {directory: out, maps: png}",
                     "output: {directory: out, maps: none, diagnostics: false}"))


class StandIn:
    """What :func:`~tracerbayes.cli.workflow.write_outputs` reads of a Posterior: uniform
    maps on the tiny basin's water, one parameter, and the given convergence problems."""

    method = "laplace"
    members = None
    validation = None
    num_chains, num_draws = 1, 20

    def __init__(self, obs, times, mask, problems=()):
        self.obs, self.times, self.mask = obs, np.asarray(times), mask
        self.problems = list(problems)

    def maps(self, n_draws=100):
        mask = self.mask
        field = np.where(mask, 15.0, np.nan)[None] * np.ones((len(self.times), 1, 1))
        coords = {"time": self.times, "y": 5e3 + 10e3 * np.arange(10),
                  "x": 5e3 + 10e3 * np.arange(12), "quantile": [0.05, 0.5, 0.95]}
        return xr.Dataset({"mean": (("time", "y", "x"), field),
                           "sd": (("time", "y", "x"), 0.1 * field / 15.0),
                           "quantiles": (("quantile", "time", "y", "x"),
                                         np.stack([field - 0.2, field, field + 0.2])),
                           "mask": (("y", "x"), mask)}, coords=coords)

    def parameter_table(self):
        return pd.DataFrame({"mean": [300.0], "sd": [30.0], "q5": [250.0], "q95": [350.0]},
                            index=["diffusivity"])

    def check_diagnostics(self):
        return self.problems


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny config's inputs and simulated observations, made once."""
    folder = tmp_path_factory.mktemp("inputs")
    config = tiny_config(folder)
    config.write_text(FAST)
    assert main(["simulate", str(config), "-q", "-o", str(folder)]) == 0
    return folder


@pytest.fixture
def config(inputs, tmp_path):
    """A copy of the tiny config and its inputs in this test's folder."""
    for name in ("tiny.yaml", "mask.nc", "currents.nc", "obs.csv"):
        shutil.copy(inputs / name, tmp_path / name)
    return tmp_path / "tiny.yaml"


@pytest.fixture
def fits(monkeypatch, config):
    """Replace the fit by the stand-in; returns it and the options of its calls."""
    calls = []
    with xr.open_dataset(config.parent / "mask.nc") as ds:
        mask = ds["mask"].values.astype(bool)

    @functools.wraps(tracerbayes.fitting.fit)  # keeps the signature the config checks
    def stand_in(model, obs, times, **options):
        calls.append(options)
        return StandIn(obs, times, mask, problems=stand_in.problems)

    stand_in.problems = []
    monkeypatch.setattr(tracerbayes.fitting, "fit", stand_in)
    return stand_in, calls


@pytest.fixture
def no_fit(monkeypatch):
    """A fit that must not run; returns the list of its calls (to be empty)."""
    calls = []

    @functools.wraps(tracerbayes.fitting.fit)
    def refuse(*args, **options):
        calls.append(options)
        raise AssertionError("the fit ran")

    monkeypatch.setattr(tracerbayes.fitting, "fit", refuse)
    return calls


def run(config, out, *extra):
    return main(["run", str(config), "-q", "-o", str(out), *extra])


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("tracerbayes: ")]
    assert len(lines) == 1, lines
    return lines[0]


def hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")] if folder.is_dir() else []


# ------------------------------------------------------------------ before the fit
def test_output_path_that_is_a_file_fails_before_fitting(config, no_fit, capsys):
    out = config.parent / "results"
    out.write_text("not a folder")
    assert run(config, out) == 1
    assert one_error_line(capsys) == (
        f"tracerbayes: error: output folder {out} is a file, not a folder: choose another "
        "output.directory (or -o DIR)")
    assert no_fit == [] and out.read_text() == "not a folder"
    below = out / "inner"  # a folder to create under a file
    assert run(config, below) == 1
    assert f"output folder {below} cannot be created: {out} is a file" in one_error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_output_folder_fails_before_fitting(config, no_fit, capsys):
    out = config.parent / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert run(config, out) == 1
        assert one_error_line(capsys) == (
            f"tracerbayes: error: output folder {out} is not writable (permission denied): "
            "choose another output.directory (or -o DIR) or fix its permissions")
        assert run(config, out / "new") == 1
        assert (f"output folder {out / 'new'} cannot be created in {out} (permission denied)"
                in one_error_line(capsys))
    finally:
        out.chmod(0o700)
    assert no_fit == [] and list(out.iterdir()) == []


def test_a_folder_that_os_access_calls_read_only_fails_before_fitting(config, no_fit, capsys,
                                                                     monkeypatch):
    """The same check where permissions are not enforced (root): os.access says read-only."""
    out = config.parent / "read-only"
    out.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != out and access(path, mode))
    assert run(config, out) == 1
    assert one_error_line(capsys) == (
        f"tracerbayes: error: output folder {out} is not writable (permission denied): "
        "choose another output.directory (or -o DIR) or fix its permissions")
    assert no_fit == [] and list(out.iterdir()) == []


def test_posterior_nc_that_is_a_folder_fails_before_fitting(config, no_fit, capsys):
    out = config.parent / "out"
    (out / "posterior.nc").mkdir(parents=True)
    for extra in ([], ["--overwrite"]):  # never removed: a folder is not a run's output
        assert run(config, out, *extra) == 1
        assert one_error_line(capsys) == (
            f"tracerbayes: error: {out / 'posterior.nc'} is a folder, so posterior.nc cannot "
            "be written there: remove or rename it, or choose another output.directory (or "
            "-o DIR)")
    assert no_fit == [] and [p.name for p in out.iterdir()] == ["posterior.nc"]


def test_not_enough_disk_space_fails_before_fitting(config, no_fit, capsys, monkeypatch):
    from tracerbayes.io import files

    usage = shutil.disk_usage(config.parent)
    monkeypatch.setattr(files.shutil, "disk_usage",
                        lambda path: usage._replace(free=1000))
    assert run(config, config.parent / "out") == 1
    line = one_error_line(capsys)
    assert line.startswith(f"tracerbayes: error: not enough free disk space for the outputs "
                           f"in {config.parent / 'out'}: they need about ")
    assert "1 kB is free" in line and no_fit == []


# ------------------------------------------------------------------ run.json, --overwrite
def test_run_json_records_config_versions_seed_and_times(config, fits):
    import jax
    import numpyro

    out = config.parent / "out"
    assert run(config, out, "--seed", "7") == 0
    assert sorted(p.name for p in out.iterdir()) == ["posterior.nc", "run.json"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["diagnostics"] == []
    assert record["config"] == {"path": str(config.resolve()),
                                "sha256": hashlib.sha256(config.read_bytes()).hexdigest()}
    assert record["seed"] == 7 == fits[1][0]["seed"] and record["method"] == "nuts"
    assert record["versions"]["tracerbayes"] == __version__
    assert record["versions"]["jax"] == jax.__version__
    assert record["versions"]["numpyro"] == numpyro.__version__
    assert record["versions"]["numpy"] == np.__version__
    assert record["versions"]["xarray"] == xr.__version__
    assert record["versions"]["python"].count(".") == 2
    start, end = (datetime.fromisoformat(record[k]) for k in ("start", "end"))
    assert start.utcoffset().total_seconds() == 0 and start <= end
    assert record["files"] == ["posterior.nc"]
    assert hidden(out) == [] and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_unconverged_run_is_recorded_as_such(config, fits, capsys):
    config.write_text(config.read_text().replace("         allow_unconverged: true}\n", "}\n")
                      .replace("seed: 1,\n}", "seed: 1}"))
    fits[0].problems = ["bulk ESS as low as 12; run more draws"]
    out = config.parent / "out"
    assert run(config, out) == 3
    assert "Set method.allow_unconverged: true to accept" in capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "not converged"
    assert record["diagnostics"] == fits[0].problems and record["files"] == ["posterior.nc"]


def test_second_run_is_refused_unless_overwrite_then_replaces_the_first(config, fits, capsys):
    out = config.parent / "out"
    config.write_text(config.read_text().replace("maps: none", "maps: png"))
    assert run(config, out) == 0
    first = json.loads((out / "run.json").read_text())
    assert "maps/summary.png" in first["files"] and len(first["files"]) == 7
    (out / "notes.txt").write_text("mine")  # a user's files: never touched
    (out / "maps" / "notes.txt").write_text("mine too")
    (out / "truth.nc").write_text("an input, not an output")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    assert run(config, out, "--seed", "5") == 1
    assert one_error_line(capsys) == (
        f"tracerbayes: error: output folder {out} already holds the outputs of an earlier run "
        "(run.json, posterior.nc, maps/): pass --overwrite to replace them, or choose another "
        "output folder")
    assert len(fits[1]) == 1  # refused before fitting
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    config.write_text(config.read_text().replace("maps: png", "maps: none"))
    assert run(config, out, "--seed", "5", "--overwrite") == 0
    second = json.loads((out / "run.json").read_text())
    assert second["seed"] == 5 and second["files"] == ["posterior.nc"]
    assert second["config"]["sha256"] != first["config"]["sha256"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "maps", "maps/notes.txt", "notes.txt", "posterior.nc", "run.json", "truth.nc"]
    assert hidden(out) == []


def test_outputs_left_by_a_killed_run_count_as_an_earlier_run(config, fits, capsys):
    out = config.parent / "out"
    (out / "maps").mkdir(parents=True)  # a killed run: maps but no run.json
    (out / "maps" / "map_2020-01-01.png").write_bytes(b"png")
    assert run(config, out) == 1
    assert "already holds the outputs of an earlier run (maps/)" in one_error_line(capsys)
    assert run(config, out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["posterior.nc", "run.json"]


# ------------------------------------------------------------------ the folder's lock
def test_a_lock_held_by_a_live_process_refuses_a_second_run(config, no_fit, capsys):
    out = config.parent / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")
    assert run(config, out) == 1
    assert one_error_line(capsys) == (
        f"tracerbayes: error: output folder {out} is in use by another tracerbayes run "
        f"(process {os.getpid()} on {socket.gethostname()}; lock file {lock}): wait for it to "
        "finish or choose another output folder; if no run is using it, delete the lock file")
    assert no_fit == [] and lock.exists()  # not ours: left alone
    lock.write_text("1 another-host.example\n")  # another host: cannot tell, so refused
    assert run(config, out) == 1
    assert "(process 1 on another-host.example;" in one_error_line(capsys)


def test_a_stale_lock_of_a_dead_process_is_taken_over(config, fits, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = config.parent / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()}\n")
    assert main(["run", str(config), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"took over the lock {out / LOCK_NAME} of process {dead.pid}" in said
    assert len(fits[1]) == 1 and sorted(p.name for p in out.iterdir()) == [
        "posterior.nc", "run.json"]


def test_the_lock_goes_on_sigterm_and_the_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, folder_lock(tmp_path / "out") as lock:
        assert lock.read_text() == f"{os.getpid()} {socket.gethostname()}\n"
        assert signal.getsignal(signal.SIGTERM) != before
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # Python runs the handler between bytecodes
            pass
    assert stopped.value.code == 128 + signal.SIGTERM
    assert not lock.exists() and signal.getsignal(signal.SIGTERM) == before


def test_a_fit_interrupted_by_ctrl_c_leaves_no_lock_and_no_run_json(config, monkeypatch,
                                                                     capsys):
    @functools.wraps(tracerbayes.fitting.fit)
    def interrupted(*args, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(tracerbayes.fitting, "fit", interrupted)
    out = config.parent / "out"
    assert run(config, out) == 130
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ writes that fail
def test_to_netcdf_to_a_folder_or_an_empty_path_fails_before_writing(tmp_path):
    from tracerbayes.posterior.exact import Posterior

    maps = StandIn(None, np.arange(2.0) * 86400.0, np.ones((10, 12), bool)).maps()
    cf_ds = cf.cf_dataset(maps, units="degC")
    post = object.__new__(Posterior)  # the path is checked before anything of it is used
    for write in (post.to_netcdf, functools.partial(cf.write_netcdf, cf_ds)):
        with pytest.raises(OutputError) as folder:
            write(tmp_path)
        assert str(folder.value) == (f"{tmp_path} is a folder, not a file: give a file name, "
                                     f"such as {tmp_path / 'posterior.nc'}")
        with pytest.raises(OutputError) as empty:
            write("")
        assert str(empty.value) == ("no output file given (the path is empty): give a file "
                                    "name, such as 'posterior.nc'")
    assert list(tmp_path.rglob("*.part")) == [] and live_temporaries() == []
    assert cf.write_netcdf(cf_ds, tmp_path / "a" / "posterior.nc").is_file()


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("NetCDF: HDF error")])
def test_a_full_disk_is_said_in_plain_words_and_leaves_no_temporary(config, fits, capsys,
                                                                    monkeypatch, failure):
    def half_written(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF half a file")
        raise failure

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half_written)
    out = config.parent / "out"
    assert run(config, out) == 1
    line = one_error_line(capsys)
    cause = ("no space left on the disk" if isinstance(failure, OSError) else
             "NetCDF reported an HDF error, which during a write most often means the disk is "
             "full")
    assert line.startswith(f"tracerbayes: error: could not write {out / 'posterior.nc'}: "
                           f"{cause} (")
    assert line.endswith("free there now): free some disk space or choose another output "
                         "folder")
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed: " + line.removeprefix("tracerbayes: error: ")
    assert record["files"] == [] and sorted(p.name for p in out.iterdir()) == ["run.json"]
    assert hidden(out) == [] and live_temporaries() == []


def test_a_file_that_cannot_be_renamed_into_place_leaves_no_temporary(tmp_path):
    from tracerbayes.io.files import atomic_path

    (tmp_path / "maps").mkdir()
    with pytest.raises(OutputError, match="a folder of that name is in the way"):
        with atomic_path(tmp_path / "maps") as tmp:
            tmp.write_text("a figure")
    assert [p.name for p in tmp_path.iterdir()] == ["maps"] and live_temporaries() == []
