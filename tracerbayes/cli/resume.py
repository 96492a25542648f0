"""``tracerbayes run --resume``: the checkpoint of a run in its output folder.

A run's fit saves checkpoints in ``.checkpoint/`` of its output folder
(:mod:`tracerbayes.io.checkpoint`), with ``identity.json`` naming the config (its path and
the SHA-256 of its text) and the seed. :func:`resumed_checkpoint` decides, before the fit,
whether the run goes on from such a checkpoint, refuses it, or discards it;
:func:`checkpointed_fit` runs the fit with its checkpoint there. The workflow removes the
folder once ``run.json`` is written (:func:`tracerbayes.cli.workflow.run_config`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracerbayes.io.checkpoint import Checkpoint, CheckpointError, checkpoint_identity
from tracerbayes.io.files import OutputError

__all__ = ["CHECKPOINT", "resumed_checkpoint", "checkpointed_fit"]

#: The checkpoint folder of a run, inside its output folder (removed when the run is done).
CHECKPOINT = ".checkpoint"


def resumed_checkpoint(folder: Path, identity: dict[str, Any], *, resume: bool,
                       overwrite: bool, say: Callable[..., None]) -> bool:
    """Whether a run goes on from the checkpoint ``folder`` of its output folder.

    With ``resume``: True when ``folder`` holds a checkpoint of the same config text (its
    SHA-256) and seed as ``identity``; :class:`OutputError` naming both when it holds
    another's; False, saying so, when it holds none. Without: a checkpoint is refused
    (:class:`OutputError`) unless ``overwrite``, which removes it. A folder holding no
    ``identity.json`` (a run killed before its first save) is removed.
    """
    found = checkpoint_identity(folder)
    if found is None:
        shutil.rmtree(folder, ignore_errors=True)
        if resume:
            say(f"  --resume: no checkpoint in {folder.parent}; starting from the beginning")
        return False
    if resume:
        if (found.get("sha256"), found.get("seed")) != (identity["sha256"], identity["seed"]):
            raise _another_runs(folder, found, identity)
        say(f"  --resume: continuing the checkpoint in {folder}")
        return True
    if overwrite:
        shutil.rmtree(folder)
        say(f"  --overwrite: removed the checkpoint of an interrupted run in {folder}")
        return False
    raise OutputError(f"output folder {folder.parent} holds the checkpoint of an interrupted run "
                      f"of {found.get('config')} (seed {found.get('seed')}): pass --resume to "
                      "continue it, or --overwrite to discard it and start afresh")


def _another_runs(folder: Path, found: dict[str, Any], identity: dict[str, Any]
                  ) -> OutputError:
    """The error for resuming the checkpoint ``folder`` of another run, naming both."""
    return OutputError(
        f"the checkpoint in {folder} is of a run of {found.get('config')} (sha256 "
        f"{str(found.get('sha256'))[:12]}, seed {found.get('seed')}), not of this run of "
        f"{identity['config']} (sha256 {identity['sha256'][:12]}, seed {identity['seed']}): "
        "resume with that config and seed, or pass --overwrite without --resume to discard "
        "the checkpoint and start afresh")


def checkpointed_fit(fit: Callable[..., Any], model: Any, obs: Any, times: Any,
                     options: dict[str, Any], folder: Path, identity: dict[str, Any], *,
                     every: int | None, quiet: bool) -> Any:
    """``fit`` with its checkpoint in ``folder``; a checkpoint that the fit finds to be of
    another problem (the inputs changed since) is said in the command line's terms."""
    try:
        return fit(model, obs, times, progress=not quiet, checkpoint=Checkpoint(folder, identity),
                   checkpoint_every=every, **options)
    except CheckpointError as err:
        raise OutputError(f"{err} (pass --overwrite without --resume to discard it)") from None
