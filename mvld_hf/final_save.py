"""The final save of a run (``trainer.save_model()`` after training): atomic, and a full disk said as such.

The in-memory weights are written into a hidden staging folder inside ``output_dir`` first; only when every
file is written do they replace ``output_dir``'s files (``os.replace``, one file at a time, each atomic). A save
that fails (a full disk: ``ENOSPC``, safetensors' ``StorageFull``, torch's ``unexpected pos``) leaves no
half-written ``model.safetensors`` beside the checkpoints and nothing earlier overwritten; the staging folder is
removed and :class:`~mvld_hf.checkpointing.DiskFullError` says that the disk is full, which checkpoint stays good
and how to resume from it.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable

from .checkpointing import DiskFullError, disk_full_error, last_complete_checkpoint

#: the staging folder inside ``output_dir`` (hidden: never taken for an earlier run's files)
FINAL_STAGING = ".final-save.partial"
#: the weight files of a saved model (single or sharded, with their index)
_WEIGHT_FILE = re.compile(r"^(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?$")


def save_final_atomically(save: Callable[[str], None], output_dir: str, step: int) -> None:
    """Run ``save(folder)`` (writes the student's files into ``folder``) into a staging folder, then move its
    files into ``output_dir``. A full disk raises :class:`DiskFullError` (see the module docstring); any other
    error passes unchanged, the staging folder removed either way."""
    staging = os.path.join(output_dir, FINAL_STAGING)
    shutil.rmtree(staging, ignore_errors=True)  # a killed save's leftover
    os.makedirs(staging)
    try:
        try:
            save(staging)
            written = set(os.listdir(staging))
            for name in sorted(written):
                target = os.path.join(output_dir, name)
                if os.path.isdir(os.path.join(staging, name)) and os.path.isdir(target):
                    shutil.rmtree(target)  # os.replace cannot replace a non-empty folder
                os.replace(os.path.join(staging, name), target)
            for name in os.listdir(output_dir):  # an earlier save's weights in another sharding: not this model's
                if name not in written and _WEIGHT_FILE.match(name):
                    os.remove(os.path.join(output_dir, name))
        except Exception as err:  # safetensors' SafetensorError is neither an OSError nor a RuntimeError
            full = final_disk_full_error(err, output_dir, step)
            if full is None:
                raise
            raise full from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def final_disk_full_error(err: BaseException, output_dir: str, step: int) -> DiskFullError | None:
    """A :class:`DiskFullError` for a final save that failed on a full disk (the detection of
    :func:`~mvld_hf.checkpointing.disk_full_error`), naming the checkpoint that stays good; None otherwise."""
    if disk_full_error(err, output_dir, step) is None:
        return None
    try:
        free = f", {shutil.disk_usage(output_dir).free / 2**20:.0f} MiB free"
    except OSError:
        free = ""
    last, _ = last_complete_checkpoint(output_dir)
    kept = (f"the last complete checkpoint, {last}, stays good: free some space and resume from it with "
            "--resume_from_checkpoint true (train(resume_from_checkpoint=True)); the steps after it are trained "
            "again" if last else "no complete checkpoint was saved (save_strategy), so the trained steps are lost: "
            "free some space and train again")
    return DiskFullError(errno.ENOSPC, f"the disk holding {output_dir} is full{free}: the trained student (step "
                         f"{step}) could not be saved there (no file of it was written into {output_dir}, nothing "
                         f"there was overwritten); {kept}")
