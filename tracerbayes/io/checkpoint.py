"""Checkpoints of long fits: named NumPy archives in one folder, each written atomically.

A fit that runs in segments (NUTS iterations, ensemble cycles) saves, after each one,
everything it needs to go on (:class:`Checkpoint`); a fit given a folder that holds its own
checkpoint continues from it. Every archive is written to a hidden temporary name and renamed
into place when complete (:class:`~tracerbayes.io.files.atomic_path`), so a run killed at any
moment, even with SIGKILL, leaves the last complete checkpoint.

Each archive holds arrays and ``meta``, a JSON record of what wrote it. A fit refuses a
checkpoint whose record differs from its own (:class:`CheckpointError`). ``identity.json``,
written with the first archive, says whose checkpoint it is in the caller's terms (the command
line records the config's path, its SHA-256 and the seed), so a caller can refuse another
run's checkpoint before fitting (:func:`checkpoint_identity`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tracerbayes.io.files import atomic_path

__all__ = ["Checkpoint", "CheckpointError", "checkpoint_identity", "IDENTITY_NAME"]

#: File of a checkpoint folder that says whose checkpoint it is.
IDENTITY_NAME = "identity.json"


class CheckpointError(ValueError):
    """A checkpoint that belongs to another fit; the message says whose and what to do."""


def checkpoint_identity(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The identity recorded in the checkpoint ``folder``, or None when it holds none."""
    try:
        return json.loads((Path(folder) / IDENTITY_NAME).read_text())
    except (OSError, ValueError):
        return None


class Checkpoint:
    """The checkpoint folder of one fit.

    Parameters
    ----------
    folder : path
        Where the archives go (created with the first one).
    identity : dict, optional
        Whose checkpoint this is (JSON-serialisable), written to ``identity.json`` before the
        first archive.
    """

    def __init__(self, folder: str | os.PathLike, identity: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self.identity = identity

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.folder)!r})"

    def path(self, name: str) -> Path:
        """The archive ``name``."""
        return self.folder / f"{name}.npz"

    def save(self, name: str, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write the archive ``name`` (``arrays`` and the JSON record ``meta``) atomically."""
        if self.identity is not None and not (self.folder / IDENTITY_NAME).exists():
            with atomic_path(self.folder / IDENTITY_NAME) as tmp:
                tmp.write_text(json.dumps(self.identity, indent=1) + "\n")
        with atomic_path(self.path(name)) as tmp, open(tmp, "wb") as stream:
            # Any: mypy would match the names to savez's allow_pickle
            contents: dict[str, Any] = {key: np.asarray(value) for key, value in arrays.items()}
            np.savez(stream, meta=np.asarray(json.dumps(meta)), **contents)

    def load(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays and the record of the archive ``name``, or None when there is none."""
        try:
            with np.load(self.path(name), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except FileNotFoundError:
            return None
        return arrays, json.loads(str(arrays.pop("meta")))

    def check(self, name: str, meta: dict[str, Any], wanted: dict[str, Any]) -> None:
        """Raise :class:`CheckpointError` unless the ``settings`` of a loaded record equal
        ``wanted``, naming the settings that differ."""
        found = meta.get("settings", {})
        differ = sorted(key for key in {*found, *wanted} if found.get(key) != wanted.get(key))
        if differ:
            theirs = ", ".join(f"{key}={found.get(key)!r}" for key in differ)
            ours = ", ".join(f"{key}={wanted.get(key)!r}" for key in differ)
            raise CheckpointError(f"checkpoint {self.path(name)} was written by a fit with "
                                  f"{theirs}; this fit has {ours}: fit with the same "
                                  "settings to continue it, or remove the checkpoint to start "
                                  "afresh")
