"""Command line: ``tracerbayes demo|run CONFIG|batch CONFIG...|simulate CONFIG|validate CONFIG``.

``demo``, ``run`` and ``simulate`` take ``[-o DIR] [--seed N] [-q]``; ``run`` also takes
``--overwrite`` (replace the outputs of an earlier run in the output folder, which it refuses
otherwise) and ``--resume`` (continue an interrupted run from the checkpoint in its output
folder). ``batch CONFIG... --zarr OUT.zarr [--scheduler ADDR] [--workers N]
[--runs-dir DIR] [--overwrite] [-q]`` runs many configs on Dask and combines their maps
(:mod:`tracerbayes.cli.batch`). Exit codes: 0 on success; 1 with a one-line reason on stderr
when the run fails (a full disk or a denied permission is said in plain words, naming the
file); 2 for a usage error (from argparse); 3 when the sampler did not converge (outputs
written); 130 after Ctrl-C and 143 after SIGTERM, with a one-line reason. Every output file
is written under a hidden temporary name and renamed when complete
(:mod:`tracerbayes.io.files`), so an interrupted or killed run leaves no partial output, only
its last complete checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from tracerbayes.io.files import held_locks, live_temporaries, write_error_message
from tracerbayes.schema import ConfigError

__all__ = ["main"]

#: Seconds the main thread gets to unwind after SIGTERM/SIGINT before a hard, clean exit
#: (it may be inside one long compiled computation that Python cannot interrupt).
GRACE_SECONDS = 10.0


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, like KeyboardInterrupt on Ctrl-C."""


#: Set by the SIGTERM handler: a library that cleans up after :class:`Terminated` may raise
#: an error of its own in its place (e.g. closing an HDF5 file interrupted mid-write), and
#: the run still ends as terminated.
_TERMINATED = threading.Event()


def _enable_float64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def _watch(read_fd: int, done: threading.Event) -> None:
    """Watchdog thread: after SIGTERM/SIGINT, give the main thread ``GRACE_SECONDS`` to
    unwind (removing its temporary files; it sets ``done``), else remove them here and exit
    at once."""
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:  # the write end was closed: main() is done
            return
        signums = [s for s in data if s in (signal.SIGTERM, signal.SIGINT)]
        if not signums:
            continue
        if done.wait(GRACE_SECONDS):
            return
        _remove_live_temporaries()
        name = signal.Signals(signums[0]).name
        os.write(2, f"tracerbayes: {name}: stopped while busy; temporary files "
                    "removed\n".encode())
        os._exit(128 + signums[0])


def _remove_live_temporaries() -> None:
    """Remove any temporary file still registered: a signal between two bytecodes of the
    writer (e.g. just after its temporary is created) can skip the writer's own cleanup.
    The output folder's lock goes too (the process is about to end)."""
    for path in [*live_temporaries(), *held_locks()]:
        path.unlink(missing_ok=True)


class _SignalGuard:
    """SIGTERM raises :class:`Terminated` in the main thread, and a watchdog thread
    guarantees a clean exit within ``GRACE_SECONDS`` (restored on exit)."""

    def __enter__(self) -> _SignalGuard:
        self.active = threading.current_thread() is threading.main_thread()
        if not self.active:
            return self

        def terminate(signum: int, frame: Any) -> None:
            _TERMINATED.set()
            raise Terminated

        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.old_handler = signal.signal(signal.SIGTERM, terminate)
        self.old_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.done = threading.Event()
        self.thread = threading.Thread(target=_watch, args=(self.read_fd, self.done),
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.active:
            return
        self.done.set()
        signal.set_wakeup_fd(self.old_fd)
        signal.signal(signal.SIGTERM, self.old_handler)
        os.close(self.write_fd)
        self.thread.join(timeout=1.0)
        os.close(self.read_fd)


def _demo(args: argparse.Namespace) -> int:
    from tracerbayes.cli.demo import run_demo

    run_demo(args.output, seed=args.seed, quiet=args.quiet)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from tracerbayes.cli.workflow import simulate_config

    simulate_config(args.config, output=args.output, seed=args.seed, quiet=args.quiet)
    return 0


def _run(args: argparse.Namespace) -> int:
    from tracerbayes.cli.workflow import run_config

    run_config(args.config, output=args.output, seed=args.seed, quiet=args.quiet,
               overwrite=args.overwrite, resume=args.resume)
    return 0


def _batch(args: argparse.Namespace) -> int:
    from tracerbayes.cli.batch import BatchError, run_batch

    try:
        result = run_batch(args.configs, output=args.zarr, scheduler=args.scheduler,
                           n_workers=args.workers, overwrite=args.overwrite,
                           progress=not args.quiet, runs_dir=args.runs_dir)
    except BatchError as err:
        print(f"tracerbayes: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    unconverged = [run.name for run in result.runs if run.status == "not converged"]
    if unconverged:
        runs = "1 run" if len(unconverged) == 1 else f"{len(unconverged)} runs"
        print(f"tracerbayes: {runs} did not converge ({', '.join(unconverged)}): their outputs "
              "and run.json are written (status not converged); see each run's diagnostics/",
              file=sys.stderr)
        return 3
    return 0


def _validate(args: argparse.Namespace) -> int:
    from tracerbayes.cli.config import validate_config

    problems = validate_config(args.config)
    if problems:
        for problem in problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.config}: OK; {_times_summary(args.config)}")
    return 0


#: More analysis times than this gets a word in ``validate`` (a step in seconds by mistake?).
MANY_TIMES = 10_000


def _times_summary(path: str) -> str:
    """What the config's analysis times are, in one line: how many, first and last, and a
    word when ``times.end`` is not on the step or when there are very many."""
    import numpy as np

    from tracerbayes.cli.config import build, load_config

    cfg = load_config(path)
    times = build.build_times(cfg)
    first, last = (str(t.astype("datetime64[s]")) for t in (times[0], times[-1]))
    text = f"{len(times)} analysis times, {first} to {last}"
    end = cfg.times.end
    if end is not None and np.datetime64(end, "ns") != times[-1]:
        text += (f" (times.end {np.datetime64(end, 's')} is not on the step: the last "
                 "analysis time is the last step before it)")
    if len(times) > MANY_TIMES:
        text += (f"; {len(times)} maps is very many: check times.step (a bare number is "
                 "seconds; write e.g. '1 day')")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracerbayes",
                                     description="Bayesian maps of ocean tracers.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the embedded offline demo")
    demo.add_argument("-o", "--output", default="tracerbayes_demo", help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    demo.set_defaults(func=_demo)
    run = sub.add_parser("run", help="fit the model of a config file and write its outputs")
    run.add_argument("config", help="YAML configuration (see docs/configuration.md)")
    run.add_argument("-o", "--output", default=None, help="output folder (overrides config)")
    run.add_argument("--seed", type=int, default=None, help="sampler seed (overrides config)")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the outputs of an earlier run in the output folder (and "
                          "discard the checkpoint of an interrupted one)")
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted run whose checkpoint is in the output "
                          "folder (same config and seed); start afresh if there is none")
    run.set_defaults(func=_run)
    batch = sub.add_parser("batch", help="run many configs on Dask and combine their maps "
                                         "into one Zarr store")
    batch.add_argument("configs", nargs="+", metavar="CONFIG",
                       help="YAML configurations, one run each, named after the file")
    batch.add_argument("--zarr", required=True, metavar="OUT.zarr",
                       help="the combined Zarr store (an earlier batch's store is replaced)")
    batch.add_argument("--scheduler", default=None, metavar="ADDR",
                       help="address of a Dask scheduler (default: a local cluster)")
    batch.add_argument("--workers", type=int, default=2, metavar="N",
                       help="worker processes of the local cluster (default 2)")
    batch.add_argument("--runs-dir", default=None, metavar="DIR",
                       help="write each run into DIR/NAME (default: its output.directory)")
    batch.add_argument("--overwrite", action="store_true",
                       help="run every config again, replacing finished runs (without it a "
                            "finished run is skipped)")
    batch.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    batch.set_defaults(func=_batch)
    simulate = sub.add_parser("simulate", help="draw a synthetic truth (truth.nc) and its "
                                                 "observations (CSV) from the simulate section")
    simulate.add_argument("config", help="YAML configuration with a simulate: section")
    simulate.add_argument("-o", "--output", default=None,
                          help="folder for truth.nc and the CSV (default: the config's "
                               "output folder and simulate.observations)")
    simulate.add_argument("--seed", type=int, default=None,
                          help="random seed (overrides simulate.seed)")
    simulate.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    simulate.set_defaults(func=_simulate)
    validate = sub.add_parser("validate", help="check a config and its inputs; run nothing")
    validate.add_argument("config", help="YAML configuration")
    validate.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tracerbayes`` command."""
    args = build_parser().parse_args(argv)
    # read now, not in the handler: after a MemoryError, even a failed environment lookup
    # (its internal KeyError) can fail, hiding the error behind "KeyError: 'TRACERBAYES_DEBUG'"
    debug = bool(os.environ.get("TRACERBAYES_DEBUG"))
    _TERMINATED.clear()
    try:
        try:
            with _SignalGuard():
                _enable_float64()
                return args.func(args)
        except Exception as err:
            if _TERMINATED.is_set():  # raised while unwinding from SIGTERM: still terminated
                raise Terminated from err
            raise
    except KeyboardInterrupt:
        _remove_live_temporaries()
        print("tracerbayes: interrupted (SIGINT); no partial output files left",
              file=sys.stderr)
        return 130
    except Terminated:
        _remove_live_temporaries()
        print("tracerbayes: terminated (SIGTERM); no partial output files left",
              file=sys.stderr)
        return 143
    except Exception as err:  # one line for scripts; the traceback with TRACERBAYES_DEBUG
        if debug:
            raise
        if type(err).__name__ == "ConvergenceError":  # a paragraph, not a one-liner
            print(f"tracerbayes: {err}", file=sys.stderr)
            return 3
        if isinstance(err, ConfigError) and err.problems:  # one line each, as validate does
            for problem in err.problems:
                print(f"tracerbayes: error: {err.source}: {problem}", file=sys.stderr)
            return 1
        plain = write_error_message(err)  # a full disk, a denied permission: no type name
        if plain is not None:
            print(f"tracerbayes: error: {plain}".splitlines()[0], file=sys.stderr)
            return 1
        print(f"tracerbayes: error: {type(err).__name__}: {err}".splitlines()[0],
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
