"""Safe file output: every file tracerbayes writes appears whole or not at all.

A file is written to a hidden temporary name beside its target,
``.<name>.tb<pid>-<random>.part``, and renamed onto the target only once complete
(:class:`atomic_path`). An exception, Ctrl-C or SIGTERM removes the temporary file; a SIGKILL
cannot, so the next run in that folder removes the temporaries of processes that no longer
exist (:func:`remove_stale_temporaries`). Temporary names start with a dot and end in
``.part``, so they cannot be mistaken for outputs.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "live_temporaries", "remove_stale_temporaries", "TEMP_PATTERN"]

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
            else:
                self.tmp.unlink(missing_ok=True)
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
