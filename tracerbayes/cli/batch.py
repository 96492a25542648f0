"""Many runs at once (a campaign): ``tracerbayes batch CONFIG... --zarr OUT.zarr``.

:func:`run_batch` runs each configuration with :func:`~tracerbayes.cli.workflow.run_config`,
exactly as ``tracerbayes run CONFIG`` would, one Dask task per run on a
``dask.distributed`` cluster: a local cluster of worker processes (one thread each) by
default, or the scheduler at an address. Each run writes into its own output folder (its
config's ``output.directory``, or ``runs_dir/NAME``), all or nothing, with ``run.json``
written last (:mod:`tracerbayes.cli.workflow`). Then :func:`combine_runs` copies every
finished run's ``posterior.nc`` into one Zarr store, written under a temporary name and
renamed when complete:

* the root group is the index: dimension ``run`` (the run names) and, per run, ``config``
  (the config's absolute path), ``output`` (its output folder), ``status`` (``complete``,
  ``not converged`` or ``failed: <reason>``) and ``method``;
* one group per finished run, named after the run, holding its ``posterior.nc`` unchanged
  (the same variables, values, coordinates and attributes); runs may have different grids.

A run is named after its config file (``canary.yaml`` -> ``canary``); two configs of the
same name, or two runs into the same output folder, are refused before anything runs.

**Restarts.** A batch is restartable: its runs are independent and each is atomic. A run
whose output folder holds a finished run of the same config text (``run.json`` with its
SHA-256 and the status ``complete`` or ``not converged``) is skipped, so running the same
batch again, after a crash, a killed worker or a failed run, does only what is missing and
rewrites the Zarr store. A run that was interrupted (outputs of this config but no
``run.json``, or a checkpoint) is started again (or resumed from its checkpoint,
``tracerbayes run --resume``). A folder holding another config's run (or that of an earlier
version of the config) is refused unless ``overwrite``, which runs every config again. When
Dask loses a worker in the middle of a run, the scheduler gives the run to another worker,
which takes over the dead run's folder lock; a run Dask gives up on (``KilledWorker``) or
that fails is reported as failed, the others go on, and :class:`BatchError` is raised once
the store of the finished runs is written.

Each run enables JAX's float64 in the worker process it runs in (the worker is the entry
point; ``import tracerbayes`` changes no global setting). The workers must import the same
tracerbayes and see the same file system as the client.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tracerbayes.io.files import TEMP_PATTERN, check_output_folder

__all__ = ["run_batch", "combine_runs", "BatchRun", "BatchResult", "BatchError", "run_name",
           "FINISHED", "INDEX_VARIABLES", "CONNECT_TIMEOUT"]

#: The ``run.json`` statuses of a finished run (skipped when the batch runs again).
FINISHED = ("complete", "not converged")
#: The variables of the Zarr store's root index (no run may be named like one).
INDEX_VARIABLES = ("run", "config", "output", "status", "method")
#: Seconds to wait for a Dask scheduler given by its address.
CONNECT_TIMEOUT = 10.0
#: Root attribute that marks a Zarr store written by :func:`combine_runs`.
_MARK = "tracerbayes_batch"


class BatchError(Exception):
    """A batch that cannot start (its inputs say why), or whose runs did not all finish
    (``result`` then holds what became of each; the store of the finished ones is written)."""

    def __init__(self, message: str, result: BatchResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class BatchRun:
    """One run of a batch and how it ended.

    Attributes
    ----------
    name : str
        The run's name (its config file's name without suffix), its group in the store.
    config, output : pathlib.Path
        The config file and the run's output folder (absolute).
    status : str
        ``complete``, ``not converged`` (its outputs are written), ``failed: <reason>``, or
        ``pending`` (not run yet).
    skipped : bool
        The run had finished before this batch (its outputs were left as they were).
    seconds : float or None
        Wall time of the run in this batch, s.
    method : str
        The inference method of its ``run.json`` (empty until it has one).
    """

    name: str
    config: Path
    output: Path
    status: str = "pending"
    skipped: bool = False
    seconds: float | None = None
    method: str = ""

    @property
    def finished(self) -> bool:
        """Whether the run's outputs and ``run.json`` are written (:data:`FINISHED`)."""
        return self.status in FINISHED


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did: every run, in the order of the configs, and the store."""

    runs: tuple[BatchRun, ...]
    zarr: Path

    @property
    def failed(self) -> tuple[BatchRun, ...]:
        """The runs that did not finish."""
        return tuple(run for run in self.runs if not run.finished)


def run_name(config: str | os.PathLike) -> str:
    """The name of the run of ``config``: the file's name without its suffix."""
    return Path(config).stem


# ------------------------------------------------------------------ the runs' folders
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(out: Path) -> dict[str, Any] | None:
    """The ``run.json`` of ``out`` (a dict), or None when it has none that can be read."""
    from tracerbayes.cli.workflow import MANIFEST

    try:
        record = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _posterior_config_sha(out: Path) -> str | None:
    """SHA-256 of the config text kept in ``out/posterior.nc`` (a run killed after writing
    it), else of the checkpoint's identity; None when neither says."""
    from tracerbayes.cli.resume import CHECKPOINT
    from tracerbayes.io.checkpoint import checkpoint_identity

    with suppress(Exception):
        import xarray as xr

        with xr.open_dataset(out / "posterior.nc", engine="netcdf4") as ds:
            return hashlib.sha256(str(ds.attrs["config"]).encode()).hexdigest()
    identity = checkpoint_identity(out / CHECKPOINT)
    return None if identity is None else identity.get("sha256")


def _folder_state(out: Path, sha256: str) -> tuple[str, dict[str, Any] | None]:
    """What ``out`` holds for the config whose text has ``sha256``: ``'finished'`` (its
    finished run), ``'unfinished'`` (its interrupted or failed run), ``'empty'`` (no run's
    outputs) or ``'foreign'`` (another config's run); and the ``run.json`` if any."""
    from tracerbayes.cli.workflow import earlier_outputs

    record = _manifest(out)
    if record is not None:
        ours = (record.get("config") or {}).get("sha256") == sha256
        if not ours:
            return "foreign", record
        return ("finished" if record.get("status") in FINISHED else "unfinished"), record
    if not out.is_dir() or not earlier_outputs(out):
        return "empty", None
    return ("unfinished" if _posterior_config_sha(out) == sha256 else "foreign"), None


def _run_one(config: str, output: str, overwrite: bool) -> dict[str, Any]:
    """One run, in a Dask worker: ``tracerbayes run CONFIG -o OUTPUT`` (quiet), unless the
    folder already holds its finished run. Returns its ``status``, ``method``, ``seconds``
    and whether it was ``skipped``; a failure is returned as ``failed: <reason>``."""
    import jax

    jax.config.update("jax_enable_x64", True)  # the worker is the entry point of the run
    from tracerbayes.cli.workflow import run_config
    from tracerbayes.fitting import ConvergenceError

    start = time.perf_counter()
    out = Path(output)
    state, record = _folder_state(out, _sha256(Path(config)))
    if state == "finished" and not overwrite:  # e.g. Dask ran it again after losing a worker
        assert record is not None
        return {"status": record["status"], "method": record.get("method", ""),
                "seconds": 0.0, "skipped": True}
    try:
        run_config(config, output=out, quiet=True, resume=not overwrite,
                   overwrite=overwrite or state == "unfinished")
    except ConvergenceError:
        pass  # run.json says "not converged"
    except Exception as err:  # reported by the client; the other runs go on
        return {"status": f"failed: {_reason(err)}", "method": "",
                "seconds": time.perf_counter() - start, "skipped": False}
    record = _manifest(out) or {}
    return {"status": record.get("status", "failed: no run.json written"),
            "method": record.get("method", ""), "seconds": time.perf_counter() - start,
            "skipped": False}


def _reason(err: Exception) -> str:
    """Why a run failed, in one line (a config's problems, joined; a full disk in words)."""
    from tracerbayes.io.files import write_error_message
    from tracerbayes.schema import ConfigError

    if isinstance(err, ConfigError) and err.problems:
        return f"{err.source}: " + "; ".join(str(problem) for problem in err.problems)
    reason = write_error_message(err) or f"{type(err).__name__}: {err}"
    return reason.splitlines()[0]


# ------------------------------------------------------------------ checks before any run
def _plan(configs: Sequence[str | os.PathLike], runs_dir: str | os.PathLike | None,
          overwrite: bool) -> list[BatchRun]:
    """The runs of ``configs`` (checked: files that load, distinct names and folders), those
    already finished marked so; :class:`BatchError` when the batch cannot start."""
    from tracerbayes.cli.config import load_config

    if not configs:
        raise BatchError("no configuration given: name one or more YAML files")
    missing = [str(c) for c in configs if not Path(c).is_file()]
    if missing:
        raise BatchError(f"configuration file not found: {', '.join(missing)}")
    _check_names([Path(config).resolve() for config in configs])
    runs: list[BatchRun] = []
    for config in configs:
        path = Path(config).resolve()
        cfg = load_config(path)  # ConfigError listing its problems
        if not cfg.output.netcdf:
            raise BatchError(f"{config}: output.netcdf is false, but the batch combines the "
                             "runs' posterior.nc: set output.netcdf: true")
        name = run_name(path)
        out = Path(runs_dir) / name if runs_dir is not None else cfg.output.directory
        assert out is not None  # load_config sets it
        runs.append(BatchRun(name, path, out.resolve()))
    _check_distinct(runs, lambda run: run.output, "the same output folder",
                    "give each its own output.directory, or pass runs_dir (--runs-dir DIR) to "
                    "write each run into DIR/NAME")
    return [_checked_state(run, overwrite) for run in runs]


def _check_names(configs: Sequence[Path]) -> None:
    """Run names that can be groups of the store, distinct; else :class:`BatchError`."""
    for config in configs:
        name = run_name(config)
        if name in INDEX_VARIABLES or name.startswith((".", "__")):
            raise BatchError(f"{config}: the run name {name!r} (from the file name) cannot be a "
                             f"group of the Zarr store (reserved: {', '.join(INDEX_VARIABLES)}, "
                             "or a leading '.' or '__'): rename the config file")
    _check_distinct([BatchRun(run_name(c), c, c) for c in configs], lambda run: run.name,
                    "the same run name", "runs are named after their config files: rename one")


def _check_distinct(runs: Sequence[BatchRun], key: Callable[[BatchRun], Any], what: str,
                    fix: str) -> None:
    """:class:`BatchError` naming the first two runs with the same ``key``."""
    seen: dict[Any, BatchRun] = {}
    for run in runs:
        other = seen.setdefault(key(run), run)
        if other is not run:
            raise BatchError(f"{other.config} and {run.config} have {what} ({key(run)}): {fix}")


def _checked_state(run: BatchRun, overwrite: bool) -> BatchRun:
    """``run`` marked finished (skipped) when its folder holds its finished run; a folder
    holding another config's run is refused unless ``overwrite``."""
    state, record = _folder_state(run.output, _sha256(run.config))
    if overwrite:
        return run
    if state == "foreign":
        whose = ("" if record is None else f" ({(record.get('config') or {}).get('path')}, "
                 f"sha256 {str((record.get('config') or {}).get('sha256'))[:12]})")
        raise BatchError(f"output folder {run.output} holds the outputs of another config's run"
                         f"{whose}, or of an earlier version of {run.config}: pass --overwrite "
                         "(overwrite=True) to run every config again, or give this run "
                         "another output folder")
    if state == "finished":
        assert record is not None
        return replace(run, status=record["status"], skipped=True,
                       method=record.get("method", ""))
    return run


def _check_store_path(path: Path) -> None:
    """``path`` can take the combined Zarr store: nothing there, or an earlier batch's store
    (replaced), in a writable folder; else :class:`BatchError` or
    :class:`~tracerbayes.io.files.OutputError`."""
    if path.exists() and not path.is_dir():
        raise BatchError(f"{path} is a file, not a Zarr store: remove it or choose another "
                         "path for the store (--zarr)")
    if path.is_dir() and any(path.iterdir()) and not _is_batch_store(path):
        raise BatchError(f"{path} is a folder that holds no Zarr store of tracerbayes batch: "
                         "remove it or choose another path for the store (--zarr)")
    check_output_folder(path.parent, hint="choose another path for the store (--zarr)")


def _is_batch_store(path: Path) -> bool:
    try:
        import zarr

        return bool(zarr.open_group(str(path), mode="r").attrs.get(_MARK))
    except Exception:
        return False


# ------------------------------------------------------------------ the Dask cluster
@contextmanager
def _client(scheduler: Any, n_workers: int, timeout: float, quiet: bool
            ) -> Iterator[tuple[Any, str]]:
    """A ``distributed.Client`` (and words for where it runs): ``scheduler`` itself if it
    is one, connected to it if an address, else on a new local cluster of processes."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        yield scheduler, f"the Dask cluster of {scheduler.scheduler_info().get('address')}"
        return
    if scheduler is not None:
        try:
            client = Client(str(scheduler), timeout=timeout)
        except (OSError, ValueError, TypeError) as err:
            raise BatchError(f"could not reach the Dask scheduler at {scheduler} within "
                             f"{timeout:g} s ({type(err).__name__}: {err}): check the address "
                             "(such as tcp://host:8786) and that the scheduler runs, or leave "
                             "--scheduler out to run on a local cluster") from None
        with client:
            yield client, f"the Dask scheduler at {scheduler}"
        return
    with warnings.catch_warnings():  # its HTTP server takes another port when 8787 is taken
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None,
                               silence_logs=logging.ERROR if quiet else logging.WARNING)
    with cluster, Client(cluster) as client:
        yield client, (f"a local Dask cluster of {n_workers} worker process"
                       + "es" * (n_workers != 1))


def _submitted(client: Any, runs: Sequence[BatchRun], overwrite: bool,
               say: Callable[..., None]) -> dict[str, BatchRun]:
    """Run ``runs`` on ``client``; each as it ends, said, by name."""
    from distributed import as_completed

    token = os.urandom(4).hex()
    futures = {client.submit(_run_one, str(run.config), str(run.output), overwrite,
                             key=f"tracerbayes-run-{run.name}-{token}", pure=False): run
               for run in runs}
    ended: dict[str, BatchRun] = {}
    for future in as_completed(futures):
        run = futures.pop(future)
        if future.status == "finished":
            got = future.result()
            run = replace(run, status=got["status"], method=got["method"],
                          seconds=got["seconds"], skipped=got["skipped"])
        else:  # the workers died under it (KilledWorker), or it was cancelled
            err = future.exception() if future.status == "error" else None
            why = "cancelled" if err is None else f"{type(err).__name__}: {err}"
            run = replace(run, status=f"failed: {why.splitlines()[0]}")
        future.release()  # nothing for Dask to recompute should it lose that worker
        ended[run.name] = run
        took = "" if run.seconds is None else f"{run.seconds:.1f} s, "
        say(f"  [{len(ended)}/{len(runs)}] {run.name}: {run.status} ({took}{run.output})")
    return ended


def run_batch(configs: Sequence[str | os.PathLike], *, output: str | os.PathLike,
              scheduler: Any = None, n_workers: int = 2, overwrite: bool = False,
              progress: bool = True, runs_dir: str | os.PathLike | None = None,
              timeout: float = CONNECT_TIMEOUT) -> BatchResult:
    """Run every config as ``tracerbayes run`` does, on Dask, and combine the results.

    Parameters
    ----------
    configs : sequence of path
        The YAML configurations, one run each, named after the file (:func:`run_name`).
    output : path
        The combined Zarr store (:func:`combine_runs`); an earlier batch's store there is
        replaced once the new one is complete.
    scheduler : str or distributed.Client, optional
        A Dask scheduler's address (``tcp://host:8786``) or a client; default a new local
        cluster of ``n_workers`` processes with one thread each, closed at the end.
    n_workers : int
        Workers of the local cluster.
    overwrite : bool
        Run every config again, replacing finished runs; without it, a finished run of the
        same config is skipped and a folder holding another config's run is refused.
    progress : bool
        Print a line per run as it ends.
    runs_dir : path, optional
        Write each run into ``runs_dir/NAME`` instead of its config's ``output.directory``.
    timeout : float
        Seconds to wait for the scheduler at ``scheduler``.

    Returns
    -------
    BatchResult
        Every run (status, whether skipped, wall time) and the store's path.

    Raises
    ------
    BatchError
        Before anything runs: a missing config, two runs of the same name or folder, a
        folder holding another config's run, a store path that is a file, an unreachable
        scheduler. After: some runs did not finish (``err.result`` tells which; the store of
        the finished ones is written). A config with problems raises
        :class:`~tracerbayes.schema.ConfigError`.
    """
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    if scheduler is None and n_workers < 1:
        raise BatchError(f"n_workers is {n_workers}: a local cluster needs at least 1 worker")
    store = Path(output).resolve()
    _check_store_path(store)
    runs = _plan(configs, runs_dir, overwrite)
    say(f"tracerbayes batch: {_runs(len(runs))}, combined into {store}")
    pending = [run for run in runs if not run.skipped]
    for run in runs:
        if run.skipped:
            say(f"  {run.name}: finished earlier ({run.status}), skipped ({run.output})")
    ended: dict[str, BatchRun] = {}
    if pending:
        with _client(scheduler, n_workers, timeout, quiet=not progress) as (client, where):
            say(f"  running {len(pending)} of {_runs(len(runs))} on {where}")
            ended = _submitted(client, pending, overwrite, say)
    runs = [ended.get(run.name, run) for run in runs]
    combine_runs(runs, store)
    result = BatchResult(tuple(runs), store)
    say(f"  wrote {store}: {_runs(sum(r.finished for r in runs))} and the index")
    if result.failed:
        names = "; ".join(f"{r.name}: {r.status}" for r in result.failed)
        raise BatchError(f"{len(result.failed)} of {_runs(len(runs))} did not finish ({names}); "
                         f"the finished runs are in {store}: run the batch again to finish "
                         "the others", result)
    return result


def _runs(n: int) -> str:
    return f"{n} run" + "s" * (n != 1)


# ------------------------------------------------------------------ the combined store
def _index(runs: Sequence[BatchRun]) -> Any:
    """The root index of the store (variable-length strings: stable in Zarr 2 and 3)."""
    import numpy as np
    import xarray as xr

    from tracerbayes import __version__

    def text(values: Any) -> Any:
        return ("run", np.array([str(v) for v in values], dtype=object))

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return xr.Dataset(
        {"config": text(r.config for r in runs), "output": text(r.output for r in runs),
         "status": text(r.status for r in runs), "method": text(r.method for r in runs)},
        coords={"run": np.array([r.name for r in runs], dtype=object)},
        attrs={"title": "tracerbayes batch", "source": f"tracerbayes {__version__} batch",
               "history": f"{stamp}: tracerbayes batch of {len(runs)} runs", _MARK: 1,
               "comment": "one group per finished run, named after it, holding its "
                          "posterior.nc; this root group is the index of the runs"})


def combine_runs(runs: Sequence[BatchRun], path: str | os.PathLike) -> Path:
    """Write one Zarr store at ``path`` from the runs: the index at the root and each
    finished run's ``posterior.nc`` as the group of its name (see the module docstring).

    The store is written into a hidden temporary folder beside ``path`` and renamed onto it
    when complete; an earlier store at ``path`` is replaced only then.
    """
    import xarray as xr
    import zarr

    path = Path(path)
    _remove_stale_stores(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tb{os.getpid()}-", suffix=".part",
                                dir=path.parent))
    try:
        _index(runs).to_zarr(tmp, mode="w", consolidated=False)
        for run in runs:
            if not run.finished:
                continue
            with xr.open_dataset(run.output / "posterior.nc", engine="netcdf4") as ds:
                for name in ds.variables:  # NetCDF compression keys mean nothing to Zarr
                    ds[name].encoding = {k: v for k, v in ds[name].encoding.items()
                                         if k in ("_FillValue", "units", "calendar", "dtype")}
                ds.to_zarr(tmp, group=run.name, mode="a", consolidated=False)
        with warnings.catch_warnings():  # Zarr 3: "not part of the format 3 specification"
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            zarr.consolidate_metadata(str(tmp))
        if path.exists():
            old = path.with_name(f".{path.name}.tb{os.getpid()}-old{os.urandom(4).hex()}.part")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _remove_stale_stores(path: Path) -> None:
    """Remove the temporary stores beside ``path`` that killed batches left."""
    for found in path.parent.glob(f".{path.name}.tb*"):
        match = TEMP_PATTERN.match(found.name)
        if match is None:
            continue
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            shutil.rmtree(found, ignore_errors=True)
        except OSError:
            pass  # alive (someone else's)
