"""What keeps a run's checkpoints from being lost or silently misread, beside the format in
:mod:`mvld_hf.checkpointing`:

- :func:`rotate_verified_checkpoints`: ``save_total_limit`` rotation that deletes only checkpoints passing
  verification and older than the one just saved (a damaged one, an interrupted save, or one of a newer timeline
  stays);
- :func:`set_aside_existing`: a save into the folder of a checkpoint that was complete once (a run resumed from
  an older checkpoint reached its step again) renames that folder instead of overwriting it;
- :func:`snapshot_live_checkpoint`: a reader (``mvld-evaluate``) of a checkpoint that a live run may rotate away
  reads a snapshot of its files (hard links) and is told so.
"""

from __future__ import annotations

import logging
import os
import shutil

from .checkpointing import (
    _CHECKPOINT_DIR,
    CHECKPOINT_MANIFEST,
    IncompleteCheckpointError,
    list_checkpoints,
    verify_checkpoint,
)

logger = logging.getLogger(__name__)


def rotate_verified_checkpoints(output_dir: str, save_total_limit: int | None, current: str,
                                best_model_checkpoint: str | None = None) -> list[str]:
    """Rotation after the save of ``current``: delete the oldest checkpoints older than ``current`` beyond
    ``save_total_limit`` (``current`` counts as one; ``best_model_checkpoint`` is kept), but only checkpoints that
    pass :func:`verify_checkpoint`'s cheap check; one that fails verification (damaged, or a save that was
    interrupted) and any newer than ``current`` (another timeline) are never deleted. Returns what was deleted."""
    if save_total_limit is None or save_total_limit <= 0:
        return []
    step = int(_CHECKPOINT_DIR.match(os.path.basename(current)).group(1))
    best = os.path.abspath(best_model_checkpoint) if best_model_checkpoint else None
    older = []
    for path in list_checkpoints(output_dir):  # newest first
        if int(_CHECKPOINT_DIR.match(os.path.basename(path)).group(1)) >= step or os.path.abspath(path) == best:
            continue
        try:
            verify_checkpoint(path, content=False)
        except IncompleteCheckpointError as err:
            logger.warning("rotation keeps %s, which fails verification (%s)", path, err)
            continue
        older.append(path)
    deleted = older[max(save_total_limit - 1 - (best is not None and os.path.abspath(current) != best), 0):]
    for path in deleted:
        shutil.rmtree(path, ignore_errors=True)
    return deleted


def set_aside_existing(checkpoint: str) -> str | None:
    """Before a save into ``checkpoint``: a folder of that name that was complete once (it has a manifest; a run
    resumed from an older checkpoint reached its step again) is renamed to ``replaced-checkpoint-N[-k]`` beside
    it instead of being overwritten, with a warning; returns the new name (None: nothing there, or a partial
    save, which is overwritten)."""
    if not os.path.isfile(os.path.join(checkpoint, CHECKPOINT_MANIFEST)):
        return None
    parent, name = os.path.split(checkpoint)
    target, k = os.path.join(parent, f"replaced-{name}"), 1
    while os.path.exists(target):
        k += 1
        target = os.path.join(parent, f"replaced-{name}-{k}")
    os.rename(checkpoint, target)
    logger.warning("%s already existed (written before this run resumed from an older checkpoint): kept as %s "
                   "instead of being overwritten", checkpoint, target)
    return target




#: checkpoint files a reader of the student does not need (left out of a snapshot)
_TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "dr_queue.pt", "trainer_state.json",
                   "training_args.bin", "rng_state")


def live_run_of(path: str) -> tuple[str, dict] | None:
    """(run folder, lock holder) when ``path`` is a ``checkpoint-N`` folder of a run that holds its
    ``output_dir``'s lock and may be alive (:func:`mvld_hf.run_lock.live_holder`): rotation may delete it at any
    save; None otherwise."""
    from .run_lock import live_holder

    path = os.path.abspath(path)
    if not (os.path.isdir(path) and _CHECKPOINT_DIR.match(os.path.basename(path))):
        return None
    run_dir = os.path.dirname(path)
    holder = live_holder(run_dir)
    return (run_dir, holder) if holder is not None else None


def snapshot_live_checkpoint(path: str) -> str:
    """A snapshot of the student files of ``path``, a complete checkpoint of a live run (:func:`live_run_of`):
    hard links in a hidden folder of the run (``.mvld-read-checkpoint-N-*``; a copy in the system's temporary
    folder where links fail), so the files stay readable when the run's rotation deletes the checkpoint. The
    caller deletes it (``shutil.rmtree``) once loaded. Raises :class:`IncompleteCheckpointError` when the
    checkpoint is still being written or was rotated away before the snapshot was complete."""
    import tempfile

    name = os.path.basename(os.path.abspath(path))
    gone = (f"{path} was deleted by its run's rotation while it was being read: evaluate the run's newest "
            "checkpoint, or its final save once it ends")
    try:
        manifest = verify_checkpoint(path, content=False)
    except IncompleteCheckpointError as err:
        if not os.path.isdir(path):
            raise IncompleteCheckpointError(gone) from err
        raise IncompleteCheckpointError(f"{path} belongs to a run that is still training and is not complete yet "
                                        f"({err}): evaluate it once its save completes, or an earlier "
                                        "checkpoint") from err
    files = [rel for rel in manifest["files"] if not os.path.basename(rel).startswith(_TRAINING_STATE)]
    try:
        snapshot = tempfile.mkdtemp(prefix=f".mvld-read-{name}-", dir=os.path.dirname(os.path.abspath(path)))
    except OSError:  # the run's folder is not writable here
        snapshot = tempfile.mkdtemp(prefix=f"mvld-read-{name}-")
    try:
        for rel in files:
            source, target = os.path.join(path, rel), os.path.join(snapshot, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(source, target)
            except FileNotFoundError:
                raise
            except OSError:  # another file system, or no hard links: a copy
                shutil.copy2(source, target)
            if os.path.getsize(target) != manifest["files"][rel]:
                raise FileNotFoundError(source)  # replaced while read: treated as gone
    except FileNotFoundError as err:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise IncompleteCheckpointError(gone) from err
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    return snapshot
