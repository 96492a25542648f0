"""Safe file output: every file tracerbayes writes appears whole or not at all.

A file is written to a hidden temporary name beside its target,
``.<name>.tb<pid>-<random>.part``, and renamed onto the target only once complete
(:class:`atomic_path`). An exception, Ctrl-C or SIGTERM removes the temporary file; a SIGKILL
cannot, so the next run in that folder removes the temporaries of processes that no longer
exist (:func:`remove_stale_temporaries`). Temporary names start with a dot and end in
``.part``, so they cannot be mistaken for outputs.

A write that fails for a reason the user can act on (the disk is full, permission is denied,
the target is a folder, NetCDF's "HDF error") raises :class:`OutputError`, whose message names
the file and says what to do (:func:`write_error_message`). Before anything is computed,
:func:`check_output_file` and :func:`check_output_folder` catch the same problems up front,
and :class:`folder_lock` keeps two runs out of one output folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "live_temporaries", "remove_stale_temporaries", "TEMP_PATTERN",
           "OutputError", "write_error_message", "plain_write_errors", "check_output_file",
           "check_output_folder", "folder_lock", "held_locks", "LOCK_NAME"]

#: Temporary names: ``.<target name>.tb<pid>-<random>.part`` (the pid of the writer).
TEMP_PATTERN = re.compile(r"^\..+\.tb(?P<pid>\d+)-[^.]*\.part$")

_LIVE: set[Path] = set()
_LOCK = threading.Lock()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tb{os.getpid()}-"


def live_temporaries() -> list[Path]:
    """The temporary files this process is writing now (for a last-moment cleanup)."""
    with _LOCK:
        return list(_LIVE)


class atomic_path:  # noqa: N801 - used as a context manager, reads like a function
    """Write to a hidden temporary file beside ``path``, renamed onto it only on success.

    ``with atomic_path(p) as tmp: write(tmp)``; an exception (including KeyboardInterrupt)
    leaves no file at ``p`` and removes the temporary one.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        with plain_write_errors(self.path):
            return self._create()

    def _create(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            # Registered before it exists, and removed here if Ctrl-C or SIGTERM lands before
            # the with-block starts (then __exit__ never runs): no window leaves it behind.
            tmp = self.path.parent / f"{_temp_prefix(self.path)}{secrets.token_hex(6)}.part"
            with _LOCK:
                _LIVE.add(tmp)
            try:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                break
            except FileExistsError:  # another writer drew the same name: draw again
                with _LOCK:
                    _LIVE.discard(tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                with _LOCK:
                    _LIVE.discard(tmp)
                raise
        self.tmp = tmp
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self.tmp, 0o666 & ~umask)
                os.replace(self.tmp, self.path)
        except BaseException as err:  # e.g. the target is a folder: the temporary goes too
            self.tmp.unlink(missing_ok=True)
            _raise_plain(err, self.path)
            raise
        else:
            if exc_type is not None:
                self.tmp.unlink(missing_ok=True)
                _raise_plain(exc, self.path)
        finally:
            with _LOCK:
                _LIVE.discard(self.tmp)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writers left under ``folder`` (recursively).

    Only names matching :data:`TEMP_PATTERN` whose writer process no longer exists are
    removed, so a run writing into the same folder at the same time keeps its own.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for root, dirs, files in os.walk(folder):
        for name in [*files, *dirs]:
            match = TEMP_PATTERN.match(name)
            if match is None or _alive(int(match["pid"])):
                continue
            path = Path(root) / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        dirs[:] = [d for d in dirs if not TEMP_PATTERN.match(d)]
    return removed


# ------------------------------------------------------------------ errors in plain words
class OutputError(OSError):
    """An output that cannot be written; the message names the path and what to do."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM}


def _size(n_bytes: float) -> str:
    """A byte count for people: ``'512 kB'``, ``'3.2 MB'``, ``'1.5 GB'``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes / 1e3:.3g} kB"


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def _target(name: str | os.PathLike | None) -> str:
    """The output a (possibly temporary) file name stands for: ``.a.nc.tb12-x.part`` -> a.nc."""
    if not name:
        return "an output file"
    path = Path(os.fsdecode(name))
    if TEMP_PATTERN.match(path.name):
        path = path.with_name(path.name[1:path.name.rindex(".tb")])
    return str(path)


def write_error_message(err: BaseException, path: str | os.PathLike | None = None) -> str | None:
    """A one-line message in plain words for a failure the user can act on, or None.

    ``path`` is the output being written: then a full disk, a denied permission, a read-only
    file system, a folder in the way and NetCDF's "HDF error" are told, naming it. Without it
    (an error caught far from its cause, as the command line does) only what cannot be
    anything else is told: a full disk, a denied permission or a read-only file system, naming
    the file the error names.
    """
    if isinstance(err, OutputError):
        return str(err)
    writing = path is not None
    named = path if writing else getattr(err, "filename", None)
    target = _target(named)
    code = getattr(err, "errno", None) if isinstance(err, OSError) else None
    hdf = writing and isinstance(err, OSError | RuntimeError) and "HDF error" in str(err)
    if code in _DISK_FULL or hdf:
        free = _free_bytes(Path(target)) if named else None
        left = "" if free is None else f" ({_size(free)} free there now)"
        cause = ("no space left on the disk" if code in _DISK_FULL else
                 "NetCDF reported an HDF error, which during a write most often means the "
                 "disk is full")
        return (f"could not write {target}: {cause}{left}: free some disk space or choose "
                "another output folder")
    if code in _DENIED:
        if writing:
            return (f"could not write {target} (permission denied): choose another output "
                    "folder or fix its permissions")
        return (f"{target}: permission denied: fix its permissions, or choose another output "
                "folder if it is an output")
    if code == errno.EROFS:
        return f"{target} is on a read-only file system: choose another output folder"
    if not writing:
        return None
    if code == errno.EISDIR:
        return (f"could not write {target}: a folder of that name is in the way; remove or "
                "rename it, or choose another output")
    if code == errno.ENOTDIR or isinstance(err, FileExistsError):
        return (f"could not write {target}: a file stands where a folder of its path should "
                "be; remove or rename it, or choose another output")
    return None


def _raise_plain(err: BaseException, path: Path) -> None:
    """Raise :class:`OutputError` in place of ``err`` when it is a failure the user can act
    on; return otherwise (Ctrl-C and other errors go on as they are)."""
    if isinstance(err, Exception) and not isinstance(err, OutputError):
        message = write_error_message(err, path)
        if message is not None:
            raise OutputError(message) from err


@contextmanager
def plain_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn disk-full, permission and HDF errors raised while writing ``path`` into
    :class:`OutputError` naming it."""
    try:
        yield
    except Exception as err:
        _raise_plain(err, Path(path))
        raise


# ------------------------------------------------------------------ checks before the work
def _folder_problem(folder: Path, hint: str) -> str | None:
    """Why files cannot be written into ``folder`` (created when missing), or None."""
    if folder.exists() and not folder.is_dir():
        return f"output folder {folder} is a file, not a folder: {hint}"
    where = _existing(folder)
    if not where.is_dir():
        return f"output folder {folder} cannot be created: {where} is a file: {hint}"
    if not os.access(where, os.W_OK | os.X_OK):
        if where == Path(os.path.abspath(folder)):
            return (f"output folder {folder} is not writable (permission denied): {hint} or "
                    "fix its permissions")
        return (f"output folder {folder} cannot be created in {where} (permission denied): "
                f"{hint} or fix its permissions")
    return None


def check_output_file(path: str | os.PathLike | None) -> Path:
    """``path`` as a Path, once it is sure a file can be written there; else
    :class:`OutputError` (an empty path, a folder, a parent that is a file or not writable).

    Call it before the work that produces the file, so a bad path fails at once and writes
    nothing.
    """
    if path is None or os.fspath(path) == "":
        raise OutputError("no output file given (the path is empty): give a file name, such "
                          "as 'posterior.nc'")
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file: give a file name, such as "
                          f"{path / 'posterior.nc'}")
    problem = _folder_problem(path.parent, "choose another path")
    if problem is not None:
        raise OutputError(f"cannot write {path}: {problem}")
    return path


def check_output_folder(folder: str | os.PathLike, *, files: Sequence[str] = (),
                        folders: Sequence[str] = (), need_bytes: int = 0,
                        hint: str = "choose another output folder") -> None:
    """Raise :class:`OutputError` unless ``folder`` is (or can be created as) a writable
    folder in which ``files`` can be written as files and ``folders`` as folders, on a disk
    with at least ``need_bytes`` free. Writes nothing. ``hint`` says what to do instead."""
    folder = Path(folder)
    problem = _folder_problem(folder, hint)
    if problem is not None:
        raise OutputError(problem)
    for name in files:
        if (folder / name).is_dir():
            raise OutputError(f"{folder / name} is a folder, so {name} cannot be written "
                              f"there: remove or rename it, or {hint}")
    for name in folders:
        if (folder / name).exists() and not (folder / name).is_dir():
            raise OutputError(f"{folder / name} is a file, so the {name}/ folder cannot be "
                              f"written there: remove or rename it, or {hint}")
    free = _free_bytes(folder)
    if free is not None and free < need_bytes:
        raise OutputError(f"not enough free disk space for the outputs in {folder}: they need "
                          f"about {_size(need_bytes)}, {_size(free)} is free: free some space "
                          f"or {hint}")


# ------------------------------------------------------------------ one run per folder
#: Name of the lock file a run holds in its output folder.
LOCK_NAME = ".tracerbayes.lock"

_HELD: set[Path] = set()


def held_locks() -> list[Path]:
    """The folder locks this process holds now (for a last-moment cleanup)."""
    with _LOCK:
        return list(_HELD)


def _lock_holder(path: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None when it cannot be read (being written)."""
    try:
        pid, host = path.read_text().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


class folder_lock:  # noqa: N801 - used as a context manager, reads like a function
    """Hold ``folder`` (created when missing) for this process alone while the block runs.

    The lock is the file ``folder/.tracerbayes.lock``, created exclusively (``O_CREAT |
    O_EXCL``) and holding ``"<pid> <host>"``. A lock held by a live process, or by another
    host, raises :class:`OutputError` naming it; a lock whose process is no longer alive on
    this host (a killed run) is taken over, with a message to ``say``. The lock is removed on
    exit, also after an exception, Ctrl-C or SIGTERM: when SIGTERM still has its default
    action (it would end the process at once), a handler raising ``SystemExit(143)`` is
    installed for the block and the previous one restored after.
    """

    def __init__(self, folder: str | os.PathLike, say: Callable[..., None] = print):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.say = say
        self.text = f"{os.getpid()} {socket.gethostname()}\n"

    def __enter__(self) -> Path:
        with plain_write_errors(self.path):
            self.folder.mkdir(parents=True, exist_ok=True)
            while not self._create():
                pass
        self.old_handler = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            self.old_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self.path

    def _create(self) -> bool:
        """Create the lock (True), or remove a stale one (False: try again), or raise."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(self.path)
            here = socket.gethostname()
            if holder is None or holder[1] != here or _alive(holder[0]):
                who = ("a process that is still writing it" if holder is None else
                       f"process {holder[0]} on {holder[1]}")
                raise OutputError(
                    f"output folder {self.folder} is in use by another tracerbayes run "
                    f"({who}; lock file {self.path}): wait for it to finish or choose another "
                    "output folder; if no run is using it, delete the lock file") from None
            self.say(f"  took over the lock {self.path} of process {holder[0]}, which is no "
                     "longer running")
            self.path.unlink(missing_ok=True)
            return False
        with _LOCK:
            _HELD.add(self.path)
        try:
            os.write(fd, self.text.encode())
        finally:
            os.close(fd)
        return True

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.old_handler is not None:
                signal.signal(signal.SIGTERM, self.old_handler)
            with _LOCK:
                _HELD.discard(self.path)
        finally:
            try:
                if self.path.read_text() == self.text:  # never remove another run's lock
                    self.path.unlink()
            except OSError:
                pass


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
