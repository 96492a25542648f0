"""The command line: simulate -> validate -> run, example configs, exit codes."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tracerbayes.cli.config import build_grid, load_config
from tracerbayes.cli.main import main
from tracerbayes.cli.resume import CHECKPOINT
from tracerbayes.io.files import LOCK_NAME, TEMP_PATTERN
from tracerbayes.twin import simulate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# A 12 x 10 basin of 10 km cells with a 2 x 3 island; a twin experiment with few draws.
TINY = """\
title: tiny basin
tracer: {name: temp, long_name: temperature, units: degC}
grid:
  x: [0, 120 km]
  y: [0, 100 km]
  resolution: 10 km
  mask: {file: mask.nc, variable: mask}
times: {start: 2020-01-01, end: 2020-01-05, step: 1 day}
observations:
  - file: obs.csv
    columns: {x: x, y: y, platform: platform}
velocity: {kind: given, file: currents.nc, u: u, v: v,
           scale_prior: {lognormal: {median: 1.0, sigma: 0.5}}}
model: {n_modes: 10}
method: {name: nuts, num_warmup: 20, num_samples: 20, num_chains: 1, seed: 1,
         allow_unconverged: true}
output: {directory: out, maps: png}
simulate:
  seed: 3
  observations: obs.csv
  truth: {diffusivity: 300 m^2/s, noise_sd: 0.05, noise_lengthscale: 30 km,
          initial_mean: 15.0, initial_sd: 0.5, initial_lengthscale: 30 km}
  platforms:
    - {kind: floats, n_floats: 12, every: 1, error: 0.1, drift: 5 km}
    - {kind: glider, waypoints: [[10000, 10000], [110000, 90000]], speed: 0.3 m/s,
       error: 0.1}
"""


def tiny_config(folder: Path) -> Path:
    """TINY and its mask and currents under ``folder``; returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    x = 5e3 + 10e3 * np.arange(12)
    y = 5e3 + 10e3 * np.arange(10)
    mask = np.ones((10, 12), dtype=np.int8)
    mask[4:6, 5:8] = 0
    coords = {"x": x, "y": y}
    xr.Dataset({"mask": (("y", "x"), mask)}, coords=coords).to_netcdf(folder / "mask.nc")
    ones = np.ones((10, 12))
    xr.Dataset({"u": (("y", "x"), 0.05 * ones), "v": (("y", "x"), -0.02 * ones)},
               coords=coords).to_netcdf(folder / "currents.nc")
    path = folder / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_simulate_validate_run_a_tiny_config(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert main(["validate", str(config)]) == 1  # obs.csv does not exist yet
    assert "obs.csv" in capsys.readouterr().err

    assert main(["simulate", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "60 float, " in printed and "glider)" in printed
    frame = pd.read_csv(tmp_path / "obs.csv", parse_dates=["time"])
    assert list(frame.columns) == ["time", "x", "y", "value", "error", "platform"]
    assert (frame["platform"] == "float").sum() == 60  # 12 floats x 5 days
    truth = xr.open_dataset(tmp_path / "out" / "truth.nc")
    assert truth.attrs["Conventions"] == "CF-1.10"
    assert truth["temp"].attrs["units"] == "degC"
    assert truth["time"].values[0] == np.datetime64("2020-01-01", "ns")
    totals = truth["total"].values
    np.testing.assert_allclose(totals, totals[0], rtol=1e-12)
    # The observations are the truth at their positions plus their errors (within 6 sd).
    grid = build_grid(load_config(config))
    k = np.searchsorted(truth["time"].values, frame["time"].values.astype("datetime64[ns]"))
    field = truth["temp"].transpose("time", "y", "x").values
    exact = simulate.interpolate(grid, field, frame["x"].values, frame["y"].values,
                                 time_index=k)
    assert np.all(np.abs(frame["value"].values - exact) < 6 * 0.1)
    assert np.std(frame["value"].values - exact) == pytest.approx(0.1, rel=0.3)
    truth.close()

    # Same seed, same draws; --seed and -o change them and where they go.
    first = (tmp_path / "obs.csv").read_bytes()
    assert main(["simulate", str(config), "-q"]) == 0
    assert (tmp_path / "obs.csv").read_bytes() == first
    assert main(["simulate", str(config), "-q", "--seed", "4", "-o", str(tmp_path / "s4")]) == 0
    assert sorted(p.name for p in (tmp_path / "s4").iterdir()) == ["obs.csv", "truth.nc"]
    assert (tmp_path / "s4" / "obs.csv").read_bytes() != first

    assert main(["validate", str(config)]) == 0
    assert main(["run", str(config), "-q"]) == 0
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"posterior.nc", "maps", "diagnostics",
                                               "truth.nc", "run.json"}
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    with xr.open_dataset(out / "posterior.nc") as post:
        assert post["mean"].shape == (5, 10, 12)
    assert len(list((out / "maps").glob("map_*.png"))) == 5
    assert not [p for p in out.rglob(".*")]


def test_simulate_without_a_simulate_section_fails_in_one_line(tmp_path, capsys):
    config = tiny_config(tmp_path)
    config.write_text(TINY[:TINY.index("simulate:")])
    assert main(["simulate", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err == (f"tracerbayes: error: {config}: simulate: this configuration has no "
                   "simulate section; add one (see docs/configuration.md) to draw a twin")


def test_island_inputs_are_reproduced_by_make_inputs(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_inputs", CONFIGS / "make_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in module.main(tmp_path):
        with xr.open_dataset(path) as new, xr.open_dataset(CONFIGS / path.name) as committed:
            # Regenerated floats differ in the last bits from machine to machine (BLAS, libm):
            # compare values to float64 round-off, and names, attributes and coordinates exactly.
            xr.testing.assert_allclose(new, committed, rtol=1e-12, atol=1e-15)
            np.testing.assert_equal(new.attrs, committed.attrs)
            for name in new.variables:
                np.testing.assert_equal(new[name].attrs, committed[name].attrs, err_msg=name)
                assert new[name].dims == committed[name].dims, name


def test_example_island_twin_simulate_then_validate(tmp_path, capsys):
    for name in ("island_twin.yaml", "island_mask.nc", "island_gyre.nc"):
        shutil.copy(CONFIGS / name, tmp_path / name)
    config = str(tmp_path / "island_twin.yaml")
    assert main(["validate", config]) == 1  # the observations are not committed
    capsys.readouterr()
    assert main(["simulate", config]) == 0
    assert "(1030 rows: 1000 float, 30 glider)" in capsys.readouterr().out
    assert main(["validate", config]) == 0
    with xr.open_dataset(tmp_path / "out" / "island_twin" / "truth.nc") as truth:
        assert truth["tracer"].shape == (30, 48, 48)
        mask = xr.open_dataset(tmp_path / "island_mask.nc")["mask"].values
        assert np.isnan(truth["tracer"].values[:, mask == 0]).all()


@pytest.mark.slow
def test_example_canary_simulate_then_validate(tmp_path, capsys):
    shutil.copy(CONFIGS / "canary_sst.yaml", tmp_path / "canary_sst.yaml")
    config = str(tmp_path / "canary_sst.yaml")
    assert main(["simulate", config]) == 0
    assert main(["validate", config]) == 0
    frame = pd.read_csv(tmp_path / "canary_sst_obs.csv")
    assert list(frame.columns) == ["time", "lon", "lat", "value", "error", "platform"]
    assert 15.0 < frame["value"].mean() < 30.0  # August SST off north-west Africa, degC


# ------------------------------------------------------------------ killed midway
def _check_complete(out: Path) -> list[Path]:
    """Assert every non-hidden file under ``out`` is a whole output; return the hidden ones."""
    import arviz as az
    import matplotlib.image

    hidden = []
    for path in out.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(out).parts):
            hidden.append(path)
            continue
        if path.is_dir():
            continue
        if path.name == "inference_data.nc":
            idata = az.from_netcdf(path)
            assert "posterior" in idata.groups() and "diffusivity" in idata.posterior
        elif path.suffix == ".nc":
            with xr.open_dataset(path) as ds:
                assert {"mean", "sd", "quantiles"} <= set(ds.data_vars)
                assert np.isfinite(ds["sd"].values).any()
        elif path.suffix == ".png":
            image = matplotlib.image.imread(path)
            assert image.ndim == 3 and min(image.shape[:2]) > 100
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0
        else:
            raise AssertionError(f"unexpected output {path}")
    return hidden


def _not_checkpoint(out: Path, paths: list[Path]) -> list[Path]:
    """``paths`` but the checkpoint folder of ``out`` and what it holds."""
    return [p for p in paths if p.relative_to(out).parts[0] != CHECKPOINT]


class _Run:
    """``python -m tracerbayes.cli.main run CONFIG -o OUT`` in a subprocess, watched."""

    def __init__(self, config: Path, out: Path, *options: str):
        import subprocess
        import sys
        import threading

        self.out = out
        self.lines: list[str] = []
        # Runs after the first reuse its compiled XLA programs (JAX's persistent cache).
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(config.parent / "jax_cache"),
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracerbayes.cli.main", "run", str(config), "-o", str(out),
             *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, ready, timeout: float = 900.0) -> None:
        """Poll every 2 ms until ``ready()``; fail if the run ends first."""
        import time

        end = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"the run ended first: {self.proc.stderr.read()}"
            assert time.monotonic() < end, "timed out"
            time.sleep(0.002)

    def temporaries(self, under: str = "") -> list[Path]:
        # The run under test may remove or recreate the folder while it is listed.
        try:
            return list((self.out / under).rglob(".*.part"))
        except FileNotFoundError:
            return []

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        err = self.proc.stderr.read()
        return self.proc.wait(timeout=60), err


def test_a_run_killed_midway_leaves_only_complete_files(tmp_path):
    import signal

    config = tiny_config(tmp_path)
    assert main(["simulate", str(config), "-q"]) == 0
    out = tmp_path / "killed"
    runs = []
    try:
        # SIGKILL while a map figure is being written: what is visible is whole; the hidden
        # temporary the killed process leaves is removed by the next run in that folder.
        runs.append(run := _Run(config, out))
        run.wait_for(lambda: run.temporaries("maps"))
        rc, _ = run.stop(signal.SIGKILL)
        assert rc == -signal.SIGKILL
        left = _not_checkpoint(out, _check_complete(out))
        assert (out / "posterior.nc").exists() and (out / CHECKPOINT / "nuts.npz").exists()
        # the killed run's temporaries and its lock (taken over by the next run); and its
        # checkpoint (for --resume; --overwrite discards it)
        assert all(TEMP_PATTERN.match(p.name) or p.name == LOCK_NAME for p in left)
        stale = out / "diagnostics" / f".summary.csv.tb{run.proc.pid}-x1y2.part"
        stale.parent.mkdir(exist_ok=True)
        stale.write_text("half a table")
        left.append(stale)

        # The next run in that folder (--overwrite: it holds the killed run's outputs):
        # SIGTERM while the diagnostics are written. Exit 143 with one line; whole files
        # only; no temporary left, its own or the killed run's, and no lock: only its
        # checkpoint, for --resume.
        runs.append(run := _Run(config, out, "--overwrite"))
        run.wait_for(lambda: run.temporaries("diagnostics") and not stale.exists())
        rc, err = run.stop(signal.SIGTERM)
        assert rc == 143, err
        assert err.strip().splitlines()[-1] == ("tracerbayes: terminated (SIGTERM); no "
                                                "partial output files left")
        assert not [p for p in left if p.exists()]
        assert _not_checkpoint(out, _check_complete(out)) == []

        # SIGTERM and SIGKILL while fitting, in fresh folders: nothing, or whole files (and
        # a checkpoint if the sampler got that far).
        for signum, code in ((signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)):
            early = tmp_path / f"early{signum}"
            runs.append(run := _Run(config, early))
            run.wait_for(lambda: any("tracerbayes run" in line for line in run.lines))
            assert run.stop(signum)[0] == code
            left = [p.name for p in _not_checkpoint(early, _check_complete(early))]
            assert left == ([LOCK_NAME] if signum == signal.SIGKILL else [])
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


def test_an_error_raised_while_unwinding_from_sigterm_still_exits_143(monkeypatch, capsys):
    # A library cleaning up after the SIGTERM (closing an HDF5 file interrupted mid-write)
    # may raise an error of its own in place of it: the run still ends as terminated.
    import signal
    import time

    import tracerbayes.cli.main as cli

    def run(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5.0)  # the handler raises at the next bytecode
        except cli.Terminated:
            raise RuntimeError("NetCDF: HDF error") from None
        return 0

    monkeypatch.setattr(cli, "_run", run)
    assert main(["run", "config.yaml"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tracerbayes: terminated (SIGTERM); no partial output files left"]
    # and a plain error, with no signal, is still an error
    monkeypatch.setattr(cli, "_run", lambda args: (_ for _ in ()).throw(RuntimeError("boom")))
    assert main(["run", "config.yaml"]) == 1
    assert capsys.readouterr().err.strip() == "tracerbayes: error: RuntimeError: boom"


def test_hadisst_initial_field_needs_a_lonlat_grid(tmp_path, capsys):
    config = tiny_config(tmp_path)
    config.write_text(TINY.replace("initial_mean: 15.0", "initial_field: hadisst"))
    assert main(["simulate", str(config)]) == 1
    err = capsys.readouterr().err
    assert "simulate.truth.initial_field: 'hadisst' needs a lon/lat grid" in err


def test_temporaries_are_hidden_and_only_dead_writers_ones_are_removed(tmp_path):
    import subprocess

    from tracerbayes.io.files import atomic_path, live_temporaries, remove_stale_temporaries

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a" / "map.png") as tmp:
        assert tmp.name.startswith(".map.png.tb") and TEMP_PATTERN.match(tmp.name)
        assert tmp in live_temporaries()
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert list((tmp_path / "a").iterdir()) == [] and live_temporaries() == []

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "a" / f".posterior.nc.tb{dead.pid}-k3.part"
    mine = tmp_path / "a" / f".posterior.nc.tb{os.getpid()}-k4.part"
    other = tmp_path / "a" / ".notes.txt"  # hidden, but not ours: kept
    for path in (stale, mine, other):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted((tmp_path / "a").iterdir()) == sorted([mine, other])


def test_unconverged_run_writes_outputs_then_exits_3_with_one_paragraph(tmp_path, capsys):
    """20 warm-up + 20 draws of one chain cannot pass the ESS check: without
    allow_unconverged the run says so in one paragraph and exits 3, outputs written."""
    config = tiny_config(tmp_path)
    assert main(["simulate", str(config), "-q"]) == 0
    config.write_text(config.read_text().replace("         allow_unconverged: true}\n", "}\n")
                      .replace("seed: 1,\n}", "seed: 1}")
                      .replace("output: {", "validation: {holdout: 0.2, by: platform}\n"
                                            "output: {"))
    capsys.readouterr()
    assert main(["run", str(config), "-q"]) == 3
    err = capsys.readouterr().err
    err = err[err.index("tracerbayes: "):]  # after ArviZ's own one-chain notice
    assert err.startswith("tracerbayes: NUTS did not converge, so the maps and their "
                          "uncertainty should not be used as they are: ")
    assert "bulk ESS as low as" in err
    assert "method.allow_unconverged: true" in err
    assert len(err.strip().splitlines()) == 1  # one paragraph
    assert (tmp_path / "out" / "posterior.nc").exists()
    record = json.loads((tmp_path / "out" / "diagnostics" / "validation.json").read_text())
    assert record["by"] == "platform" and record["n"] == len(record["held_out_rows"]) > 0
    assert record["summary"].startswith(f"held-out validation ({record['n']} observations")


def test_validate_says_what_the_analysis_times_are(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert main(["simulate", str(config), "-q"]) == 0
    capsys.readouterr()
    assert main(["validate", str(config)]) == 0
    assert capsys.readouterr().out.strip().endswith(
        "OK; 5 analysis times, 2020-01-01T00:00:00 to 2020-01-05T00:00:00")
    config.write_text(config.read_text().replace("end: 2020-01-05,", "end: 2020-01-05T12:00,"))
    assert main(["validate", str(config)]) == 0
    assert ("(times.end 2020-01-05T12:00:00 is not on the step: the last analysis time is the "
            "last step before it)") in capsys.readouterr().out


@pytest.mark.parametrize("method", [
    "{name: etkf, ensemble_size: 8, parameters: prior, inflation: 1.02, seed: 2, "
    "allow_unconverged: true}",
    "{name: eki, ensemble_size: 8, eki_iterations: 1, eks_iterations: 4, seed: 2, "
    "allow_unconverged: true}"])
def test_every_method_of_the_api_runs_from_a_config(tmp_path, method):
    """The ``method:`` section is generated from the method classes, so the methods the
    config offers beyond NUTS, Laplace and LETKF (ETKF, EKI here) run end to end."""
    config = tiny_config(tmp_path)
    assert main(["simulate", str(config), "-q"]) == 0
    config.write_text(config.read_text().replace(
        "{name: nuts, num_warmup: 20, num_samples: 20, num_chains: 1, seed: 1,\n"
        "         allow_unconverged: true}", method).replace("maps: png", "maps: none"))
    assert main(["run", str(config), "-q"]) == 0
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    name = method.split(",")[0].split()[-1]
    assert record["method"] == name and record["seed"] == 2
    with xr.open_dataset(tmp_path / "out" / "posterior.nc") as post:
        assert post.attrs["method"] == name and post["mean"].shape == (5, 10, 12)
        assert np.isfinite(post["mean"].values[:, ~np.isnan(post["mean"].values[0])]).all()
