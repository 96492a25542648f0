"""Issue 16's corpus of bad inputs, and what each gives now: a Markdown table.

Each case builds one bad input in a temporary folder from a small valid configuration (the
12 x 10 basin of 10 km cells with a 2 x 3 island of ``tests/test_cli.py``, 40 observations
west of the island), runs the command line in-process (:func:`tracerbayes.cli.main.main`)
or the Python API, and reports the exit code (or the exception's type) and the first line
of the message. Two tiny Laplace fits are made: one ``tracerbayes run`` (the earlier run of
case 18) and one :func:`tracerbayes.fit` (the posterior of cases 10 and 17); every other
case is refused by ``validate`` or before the fit. Temporary folder names are cut from the
messages.

Run (offline; about three minutes on two busy cores, mostly the two fits)::

    python benchmarks/bad_inputs.py

It prints the table and writes it to ``benchmarks/results/bad_inputs.md``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import jax

jax.config.update("jax_enable_x64", True)  # an entry point: it chooses float64

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

import tracerbayes.fitting  # noqa: E402
from tracerbayes.cli import config as tbc  # noqa: E402
from tracerbayes.cli.main import main  # noqa: E402
from tracerbayes.io import files  # noqa: E402
from tracerbayes.observations.core import Observations  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bad_inputs.md"
WIDTH = 160  # characters of a message shown
X = 5e3 + 10e3 * np.arange(12)  # cell centres, m
Y = 5e3 + 10e3 * np.arange(10)

# The valid configuration every case starts from: tests/test_cli.py's TINY (without its
# simulate section, maps and diagnostics); FIT, the same fitted by Laplace, for the fits.
CONFIG = """\
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
output: {directory: out, maps: none, diagnostics: false}
"""
FIT = CONFIG.replace("name: nuts, num_warmup: 20, num_samples: 20, num_chains: 1,",
                     "name: laplace, map_draws: 5,")


# ------------------------------------------------------------------------ building inputs
def observations(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """``n`` observations west of the island, on the five analysis days."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 5, n)
    return pd.DataFrame({
        "time": pd.Timestamp("2020-01-01") + pd.to_timedelta(days, "D"),
        "x": rng.uniform(1e3, 45e3, n), "y": rng.uniform(1e3, 99e3, n),
        "value": rng.normal(15, 1, n), "error": 0.1,
        "platform": np.where(days % 2 == 0, "argo", "glider")})


def currents(folder: Path, u: np.ndarray, v: np.ndarray, x=X, y=Y) -> None:
    xr.Dataset({"u": (("y", "x"), u), "v": (("y", "x"), v)},
               coords={"x": x, "y": y}).to_netcdf(folder / "currents.nc")


def inputs(folder: Path, text: str = CONFIG, obs: pd.DataFrame | None = None) -> Path:
    """``text`` as run.yaml with the island mask, uniform currents and ``obs`` (default
    :func:`observations`) under ``folder``; returns the config's path."""
    mask = np.ones((10, 12), dtype=np.int8)
    mask[4:6, 5:8] = 0
    xr.Dataset({"mask": (("y", "x"), mask)}, coords={"x": X, "y": Y}
               ).to_netcdf(folder / "mask.nc")
    currents(folder, np.full((10, 12), 0.05), np.full((10, 12), -0.02))
    (observations() if obs is None else obs).to_csv(folder / "obs.csv", index=False)
    path = folder / "run.yaml"
    path.write_text(text)
    return path


def _set(df: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    df = df.astype({column: object}) if isinstance(value, str) else df.copy()
    df.loc[row, column] = value
    return df


# ------------------------------------------------------------------------ running them
def first_line(text: str) -> str:
    """The first line of ``text``, without temporary folders, cut to ``WIDTH``."""
    text = re.sub(re.escape(tempfile.gettempdir()) + r"/tb[^/]*/c\d+(/?)",
                  lambda m: "" if m[1] else "<folder>", text)
    line = next((s for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= WIDTH else line[:WIDTH - 1] + "…"


def cli(*args: str | Path) -> str:
    """Exit code and the first line ``tracerbayes`` printed (stderr, else stdout); after a
    success, the first warning too."""
    err, out = io.StringIO(), io.StringIO()
    with (redirect_stderr(err), redirect_stdout(out),
          warnings.catch_warnings(record=True) as warned):
        warnings.simplefilter("always")
        code = main([str(a) for a in args])
    said = first_line(err.getvalue() or out.getvalue())
    if code == 0 and warned:
        said += f"; warns: {first_line(str(warned[0].message))}"
    return f"exit {code}: {said}" if said else f"exit {code}"


def api(call: Callable[[], object]) -> str:
    """The exception's type and first line, or "no error"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except Exception as err:  # noqa: BLE001 - the type is what is reported
        return f"{type(err).__name__}: {first_line(str(err))}"
    return "no error"


_POSTERIOR: list = []


def posterior(folder: Path):
    """A Laplace posterior of the valid configuration (fitted once)."""
    if not _POSTERIOR:
        cfg = tbc.load_config(inputs(folder, FIT))
        grid, obs = tbc.build_grid(cfg), tbc.build_observations(cfg)
        times = tbc.build_times(cfg, obs)
        model = tbc.build_model(cfg, grid, obs, n_times=len(times))
        with (redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()),
              warnings.catch_warnings()):
            warnings.simplefilter("ignore")  # 10 modes are coarse: a ResolutionWarning
            post = tracerbayes.fitting.fit(model, obs, times, **tbc.fit_options(cfg))
        _POSTERIOR.append(post)
    return _POSTERIOR[0]


# ------------------------------------------------------------------------ the corpus
CASES: list[tuple[str, str, Callable[[Path], str]]] = []


def case(name: str, before: str):
    def register(build: Callable[[Path], str]) -> Callable[[Path], str]:
        CASES.append((name, before, build))
        return build
    return register


@case("1. velocity NaN over 9 sea cells", "accepted silently, missing velocity set to 0")
def _(d):
    path = inputs(d)
    u = np.full((10, 12), 0.05)
    u[1:4, 1:4] = np.nan  # 9 sea cells
    currents(d, u, np.full((10, 12), -0.02))
    return cli("validate", path)


@case("2. velocity over the western half only", "accepted silently")
def _(d):
    path = inputs(d)
    currents(d, np.full((10, 6), 0.05), np.full((10, 6), -0.02), x=X[:6])
    return cli("validate", path)


@case("3. velocity x/y in km, grid in m", "accepted silently")
def _(d):
    path = inputs(d)
    currents(d, np.full((10, 12), 0.05), np.full((10, 12), -0.02), x=X / 1e3, y=Y / 1e3)
    return cli("validate", path)


@case("4. 12 x 12 mask file, 24 x 24 grid", "border ring silently land")
def _(d):
    text = (CONFIG.replace("[0, 120 km]", "[0, 240 km]").replace("[0, 100 km]", "[0, 240 km]")
            .replace(CONFIG[CONFIG.index("velocity:"):CONFIG.index("model:")],
                     "velocity: {kind: constant}\n"))
    path = inputs(d, text)
    centres = 10e3 + 20e3 * np.arange(12)
    coarse = np.ones((12, 12), dtype=np.int8)
    coarse[5:7, 5:7] = 0
    xr.Dataset({"mask": (("y", "x"), coarse)}, coords={"x": centres, "y": centres}
               ).to_netcdf(d / "mask.nc")
    return cli("validate", path)


@case("5. 10^6 valid observations", "JaxRuntimeError in the fit")
def _(d):
    path = inputs(d, CONFIG.replace("platform: platform}", "platform: platform}\n"
                                                           "    binning: cell"),
                  observations(10**6))
    return (cli("validate", path) + " (with `binning: cell`; the fit of 10^6: "
            "benchmarks/million_obs.py)")


def _bomb(levels: int) -> str:
    """A "billion laughs" document: 10**levels strings once expanded."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, levels)]
    return "\n".join(lines) + f"\ntitle: *a{levels - 1}\n"


@case("6. YAML alias bomb (1.1 kB, 10^9 strings)", "39 s, 4.8 GB, then KeyError")
def _(d):
    return cli("validate", inputs(d, _bomb(9) + CONFIG.replace("title: tiny basin\n", "")))


@case("7. two `method:` keys in one mapping", "accepted, the later wins")
def _(d):
    return cli("validate", inputs(d, CONFIG + "method: {name: nuts}\n"))


@case("8. `times.end` not on the step", "times ran past end")
def _(d):
    path = inputs(d, CONFIG.replace("end: 2020-01-05", "end: 2020-01-05T12:00"))
    times = tbc.build_times(tbc.load_config(path)).astype("datetime64[h]")
    return (cli("validate", path) + f"; analysis times {times[0]} to {times[-1]} "
            f"({len(times)}), end 2020-01-05T12")


@case("9. `out/posterior.nc` is a folder", "failure after the fit, .part left")
def _(d):
    path = inputs(d)
    (d / "out" / "posterior.nc").mkdir(parents=True)
    return cli("run", path, "-q")


@case("10a. `Posterior.to_netcdf(<folder>)`", "failure, .part left")
def _(d):
    post = posterior(d)
    return api(lambda: post.to_netcdf(d)) + f"; .part files: {len(list(d.rglob('*.part')))}"


@case("10b. `Posterior.to_netcdf('')`", "failure, .part left")
def _(d):
    post = posterior(d)
    return api(lambda: post.to_netcdf(""))


@case("11. header-only CSV", "ValueError about Normal scale; validate OK")
def _(d):
    return cli("validate", inputs(d, obs=observations().iloc[:0]))


@case("12. `12.3C` in the value column", "reported as non-finite (NaN)")
def _(d):
    return cli("validate", inputs(d, obs=_set(observations(), 17, "value", "12.3C")))


@case("13. exact duplicate rows", "counted as independent, no word")
def _(d):
    obs = observations()
    return cli("validate", inputs(d, obs=pd.concat([obs, obs.iloc[[3, 4]]], ignore_index=True)))


@case("14. observation x/y in km, grid in m", "accepted (all obs in one corner)")
def _(d):
    obs = observations().assign(x=lambda df: df.x / 1e3, y=lambda df: df.y / 1e3)
    return cli("validate", inputs(d, obs=obs))


@case("15. `times.step: 1` (1 s, 432,001 times)", "validate OK, then 7.7 GiB MemoryError")
def _(d):
    return cli("validate", inputs(d, CONFIG.replace("end: 2020-01-05, step: 1 day",
                                                    "end: 2020-01-06, step: 1")))


@case("16a. output path is a file", "detected after the fit")
def _(d):
    (d / "results").write_text("not a folder")
    return cli("run", inputs(d), "-q", "-o", d / "results")


@case("16b. output folder not writable", "detected after the fit")
def _(d):
    out = d / "locked"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() != 0:
        return cli("run", inputs(d), "-q", "-o", out)
    access = os.access  # root ignores permissions: os.access says read-only, as in the tests
    with mock.patch.object(os, "access", lambda p, mode: Path(p) != out and access(p, mode)):
        return cli("run", inputs(d), "-q", "-o", out) + " (root: os.access patched)"


@case("17. disk full", "`NetCDF: HDF error`")
def _(d):
    usage = shutil.disk_usage(d)
    with mock.patch.object(files.shutil, "disk_usage", lambda p: usage._replace(free=1000)):
        before_fit = cli("run", inputs(d), "-q")

    def half_written(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF half a file")
        raise RuntimeError("NetCDF: HDF error")

    post = posterior(d)
    with mock.patch.object(xr.Dataset, "to_netcdf", half_written):
        writing = api(lambda: post.to_netcdf(d / "posterior.nc"))
    left = sorted(p.name for p in d.iterdir() if "posterior" in p.name)
    return (f"free space 1 kB (simulated): {before_fit}<br>write fails with HDF error "
            f"(simulated), API: {writing}; files left: {left}")


@case("18. second run into the same folder", "a mix of two runs' files")
def _(d):
    path = inputs(d, FIT)
    first = cli("run", path, "-q").partition(":")[0]  # exit 0 (and a ResolutionWarning)
    return f"first run {first}; second: " + cli("run", path, "-q")


@case("19. two runs at once in one folder", "mixed files")
def _(d):
    (d / "out").mkdir()
    (d / "out" / files.LOCK_NAME).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    return cli("run", inputs(d), "-q") + " (the lock of a live run)"


@case("20a. `from_dataframe` given a dict", "accepted, then failed in the fit")
def _(d):
    return api(lambda: Observations.from_dataframe(observations().to_dict("list"),
                                                   x="x", y="y"))


@case("20b. `from_dataframe`, a column named twice", "accepted, then failed in the fit")
def _(d):
    df = observations().drop(columns="platform")
    df.columns = ["time", "x", "y", "value", "value"]
    return api(lambda: Observations.from_dataframe(df, x="x", y="y", error=0.1))


@case("20c. `from_dataframe`, an empty frame", "accepted, then failed in the fit")
def _(d):
    return api(lambda: Observations.from_dataframe(observations().iloc[:0], x="x", y="y"))


@case("21. unknown config key", "")
def _(d):
    return cli("validate", inputs(d, CONFIG.replace("seed: 1", "sed: 1")))


@case("22a. negative observation error", "")
def _(d):
    return cli("validate", inputs(d, obs=_set(observations(), 3, "error", -0.1)))


@case("22b. NaN observation value", "")
def _(d):
    return cli("validate", inputs(d, obs=_set(observations(), 5, "value", np.nan)))


@case("22c. analysis times not sorted", "")
def _(d):
    times = "{list: [2020-01-01, 2020-01-03, 2020-01-02]}"
    return cli("validate", inputs(d, CONFIG.replace(
        "{start: 2020-01-01, end: 2020-01-05, step: 1 day}", times)))


@case("22d. analysis time given twice", "")
def _(d):
    times = "{list: [2020-01-01, 2020-01-02, 2020-01-02]}"
    return cli("validate", inputs(d, CONFIG.replace(
        "{start: 2020-01-01, end: 2020-01-05, step: 1 day}", times)))


@case("22e. observation on land", "")
def _(d):
    obs = _set(_set(observations(), 3, "x", 65e3), 3, "y", 50e3)  # on the island
    return cli("validate", inputs(d, obs=obs))


@case("22f. observation outside the grid", "")
def _(d):
    return cli("validate", inputs(d, obs=_set(observations(), 7, "x", 130e3)))


# ------------------------------------------------------------------------ the table
def table() -> str:
    rows = ["| case | before | now |", "|---|---|---|"]
    print("\n".join(rows), flush=True)
    with tempfile.TemporaryDirectory(prefix="tb") as root:
        for k, (name, before, build) in enumerate(CASES):
            folder = Path(root) / f"c{k}"
            folder.mkdir()
            try:
                now = build(folder)
            except Exception as err:  # noqa: BLE001 - a case that escapes is itself a finding
                now = f"**escaped**: {type(err).__name__}: {first_line(str(err))}"
            cells = [name, before or "(show the message)", now]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            print(rows[-1], flush=True)
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    text = table()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("Issue 16's bad inputs: `python benchmarks/bad_inputs.py`\n\n" + text)
