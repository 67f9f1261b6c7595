"""The checkpoint format of :class:`~mvld_hf.DistillationTrainer`: a manifest written last, and its checks.

Helpers in the spirit of ``transformers.trainer_utils.get_last_checkpoint`` (torch is imported only inside the
functions that read or write tensors): a checkpoint is complete when ``mvld_checkpoint.json`` (every file with its
size, plus the run's set-up) exists and every file it lists still has the size it was written with.

The state a run shares with its checkpoints lives here too: :func:`checkpoint_metadata` (what a resumed run must
share with the one that wrote the checkpoint), :func:`save_queue`/:func:`load_queue` (the DR queue),
:func:`resolve_checkpoint` (the checkpoint to resume from, verified complete and compatible) and
:func:`delete_earlier_checkpoints`; the trainer's ``_save_checkpoint`` and ``train`` call them.
"""

from __future__ import annotations

import json
import logging
import os
import re

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)
QUEUE_FILE = "dr_queue.pt"
CHECKPOINT_MANIFEST = "mvld_checkpoint.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_DIR = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint is partial or corrupt (interrupted save, truncated or missing files)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with a different method, anchor, queue or student set-up."""


def _fsync_write(path: str, write) -> None:
    """Write through ``write(tmp_path)``, flush it to disk, then atomically rename onto ``path``."""
    tmp = f"{path}.tmp"
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _checkpoint_files(checkpoint: str) -> dict[str, int]:
    files = {}
    for root, _, names in os.walk(checkpoint):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, checkpoint)
            if rel != CHECKPOINT_MANIFEST and not rel.endswith(".tmp"):
                files[rel.replace(os.sep, "/")] = os.path.getsize(path)
    return files


def write_checkpoint_manifest(checkpoint: str, metadata: dict) -> None:
    """Mark ``checkpoint`` complete: ``mvld_checkpoint.json`` lists every file with its size, plus ``metadata``.

    Written last and atomically, so a checkpoint without it (or whose files no longer match it) is one whose
    save was interrupted or that was damaged afterwards.
    """
    manifest = {"format": 1, "files": _checkpoint_files(checkpoint), "metadata": metadata}

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)

    _fsync_write(os.path.join(checkpoint, CHECKPOINT_MANIFEST), write)


def verify_checkpoint(checkpoint: str) -> dict:
    """Return the manifest of a complete ``DistillationTrainer`` checkpoint, or raise
    :class:`IncompleteCheckpointError` saying what is missing or truncated, or that the manifest does not record
    finite weights (``metadata["finite_weights"]``), or that a ``*.safetensors`` weight holds NaN/inf."""
    if not os.path.isdir(checkpoint):
        raise IncompleteCheckpointError(f"checkpoint {checkpoint} does not exist")
    path = os.path.join(checkpoint, CHECKPOINT_MANIFEST)
    if not os.path.isfile(path):
        raise IncompleteCheckpointError(
            f"checkpoint {checkpoint} has no {CHECKPOINT_MANIFEST}: its save was interrupted (the manifest is "
            "written last), or it was not written by DistillationTrainer. Resume from an earlier checkpoint.")
    try:
        with open(path) as handle:
            manifest = json.load(handle)
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IncompleteCheckpointError(f"checkpoint {checkpoint}: unreadable {CHECKPOINT_MANIFEST} ({err})") from err
    problems = []
    for rel, size in sorted(files.items()):
        full = os.path.join(checkpoint, rel)
        if not os.path.isfile(full):
            problems.append(f"{rel} is missing")
        elif os.path.getsize(full) != size:
            problems.append(f"{rel} is {os.path.getsize(full)} bytes, {size} were written (truncated or replaced)")
    if TRAINER_STATE not in files:
        problems.append(f"{TRAINER_STATE} was never written")
    if problems:
        raise IncompleteCheckpointError(f"checkpoint {checkpoint} is corrupt or incomplete: {'; '.join(problems)}")
    if (manifest.get("metadata") or {}).get("finite_weights") is not True:
        raise IncompleteCheckpointError(
            f"checkpoint {checkpoint}: its {CHECKPOINT_MANIFEST} records no check that its weights are finite (it "
            "was written by an mvld_hf version without that check, or by a run whose weights were not finite), so "
            "it is not trusted for resuming. To keep its weights, load them with from_pretrained and start a new run")
    bad = non_finite_weights(checkpoint)
    if bad:
        raise IncompleteCheckpointError(
            f"checkpoint {checkpoint} holds NaN/inf weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}): "
            "resume from an earlier checkpoint")
    return manifest


def non_finite_weights(checkpoint: str) -> list[str]:
    """Names of the tensors in ``checkpoint``'s ``*.safetensors`` files holding NaN/inf (read one at a time)."""
    import torch
    from safetensors import safe_open

    bad = []
    for file in sorted(os.listdir(checkpoint)):
        if file.endswith(".safetensors"):
            with safe_open(os.path.join(checkpoint, file), framework="pt") as handle:
                for name in handle.keys():
                    tensor = handle.get_tensor(name)
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                        bad.append(name)
    return bad


def list_checkpoints(output_dir: str) -> list[str]:
    """``checkpoint-N`` folders of ``output_dir``, newest (highest N) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir)
             if (m := _CHECKPOINT_DIR.match(name)) and os.path.isdir(os.path.join(output_dir, name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found, reverse=True)]


def last_complete_checkpoint(output_dir: str) -> tuple[str | None, list[str]]:
    """(newest complete checkpoint or None, the reasons newer ones were skipped)."""
    skipped = []
    for checkpoint in list_checkpoints(output_dir):
        try:
            verify_checkpoint(checkpoint)
            return checkpoint, skipped
        except IncompleteCheckpointError as err:
            skipped.append(str(err))
    return None, skipped


def newest_complete_checkpoint(output_dir: str) -> str:
    """The newest complete checkpoint of ``output_dir`` (``resume_from_checkpoint=True``); newer partial ones are
    skipped with a warning; none at all raises :class:`IncompleteCheckpointError`."""
    checkpoint, skipped = last_complete_checkpoint(output_dir)
    for reason in skipped:
        logger.warning("skipping an incomplete checkpoint: %s", reason)
    if checkpoint is None:
        raise IncompleteCheckpointError(
            f"no complete checkpoint in {output_dir} to resume from"
            + (f" ({len(skipped)} incomplete: {'; '.join(skipped)})" if skipped else ""))
    return checkpoint


def check_compatible(checkpoint: str, saved: dict, current: dict,
                     weight_shapes: dict[str, list[int]] | None = None) -> None:
    """Raise :class:`CheckpointMismatchError` listing every set-up difference between the run that wrote
    ``checkpoint`` (its manifest's ``saved`` metadata) and the resuming run (``current``; with ``weight_shapes``,
    also the shapes of its model's weights, see :func:`weight_shape_mismatches`)."""
    keys = ["method_weights", "anchor", "projection_dim", "lora_r", "queue_size", "include_positive"]
    differences = [f"{key}: checkpoint {saved.get(key)!r}, this run {current.get(key)!r}"
                   for key in keys if saved.get(key) != current.get(key)]
    base, base_now = saved.get("lora_base_checksum"), current.get("lora_base_checksum")
    if base is not None and base_now is not None and abs(base - base_now) > 1e-6 * max(abs(base), 1.0):
        differences.append("the frozen base weights of the LoRA student differ from those the adapter was "
                           "trained on (build the student from the same pretrained backbone)")
    shapes = weight_shape_mismatches(checkpoint, weight_shapes) if weight_shapes else []
    if shapes:
        differences.append(f"the student's weights have other shapes ({'; '.join(shapes[:2])}"
                           f"{f'; {len(shapes) - 2} more' if len(shapes) > 2 else ''}): build the same student")
    if differences:
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint} was written by a different set-up ({'; '.join(differences)}). Resuming "
            "continues the same run; to train on with another method or queue, load the weights with "
            "from_pretrained and start a new run")


def weight_shape_mismatches(checkpoint: str, current: dict[str, list[int]]) -> list[str]:
    """``"name: checkpoint [..], this run [..]"`` for every weight of ``checkpoint``'s ``*.safetensors`` (read
    from the file headers, no tensor is loaded) whose shape differs from ``current`` (name -> shape of this
    run's model, e.g. ``{k: list(v.shape) for k, v in model.state_dict().items()}``): another width, depth..."""
    from safetensors import safe_open

    mismatches = []
    for file in sorted(os.listdir(checkpoint)):
        if not file.endswith(".safetensors") or file.startswith("adapter_"):
            continue
        with safe_open(os.path.join(checkpoint, file), framework="numpy") as handle:
            for name in handle.keys():
                shape = list(handle.get_slice(name).get_shape())
                if name in current and current[name] != shape:
                    mismatches.append(f"{name}: checkpoint {shape}, this run {current[name]}")
    return mismatches


class ExistingRunError(FileExistsError):
    """``output_dir`` holds an earlier run's checkpoints or saved student and this run neither resumes nor
    overwrites it."""


#: files of a saved student (``save_model``) in an output_dir
_SAVED_MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "adapter_model.safetensors")


def earlier_run(output_dir: str) -> list[str]:
    """What an earlier run left in ``output_dir``: its ``checkpoint-N`` folders and saved-student files."""
    if not os.path.isdir(output_dir):
        return []
    found = [os.path.basename(c) for c in list_checkpoints(output_dir)]
    return found + [name for name in _SAVED_MODEL_FILES if os.path.isfile(os.path.join(output_dir, name))]


def check_output_dir(output_dir: str, resume_from_checkpoint=None, overwrite: bool = False) -> list[str]:
    """Refuse (:class:`ExistingRunError`) to start a new run in an ``output_dir`` holding an earlier run, unless
    it resumes or ``overwrite`` is set; returns what the earlier run left (what ``overwrite`` replaces)."""
    resuming = resume_from_checkpoint not in (None, False) and str(resume_from_checkpoint).lower() not in ("", "false")
    found = [] if resuming else earlier_run(output_dir)
    if found and not overwrite:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise ExistingRunError(
            f"output_dir {output_dir} holds an earlier run ({shown}); a new run there would delete its checkpoints "
            "and overwrite its saved student. Resume it with --resume_from_checkpoint true "
            "(train(resume_from_checkpoint=True)), choose a new --output_dir, or pass --overwrite_output_dir true "
            "to start over and delete them")
    return found


# ------------------------------------------------------------------- the state a run shares with its checkpoints
def checkpoint_metadata(args, model, queue, global_step: int, projection_dim: int, sharded: bool = False) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint (the manifest's ``metadata``):
    method, anchor, student and queue set-up; for a LoRA student not sharded by DeepSpeed/FSDP (``sharded``) the
    checksum of its frozen base weights (see :func:`frozen_base_checksum`)."""
    from .lora import is_peft_model

    meta = {"method_weights": dict(args.method_weights), "anchor": args.anchor, "projection_dim": projection_dim,
            "lora_r": args.lora_r, "global_step": global_step, "world_size": args.world_size,
            "finite_weights": True}  # the trainer checked the weights before writing them
    if queue is not None:
        meta.update(queue_size=args.queue_size, include_positive=args.include_positive, queue_filled=len(queue))
    if is_peft_model(model) and not sharded:
        meta["lora_base_checksum"] = frozen_base_checksum(model)
    return meta


def frozen_base_checksum(model) -> float:
    """Sum of |w| over the frozen base weights of a LoRA student: a LoRA checkpoint holds only the adapter
    and the projection, so resuming needs the very same base model."""
    import torch

    with torch.no_grad():
        total = sum(float(p.detach().double().abs().sum()) for name, p in model.named_parameters()
                    if not p.requires_grad and "lora_" not in name and ".original_module." not in name)
    return total


def save_queue(checkpoint: str, queue) -> None:
    """Write the DR queue (contents and pointer) into ``checkpoint`` as ``dr_queue.pt``, flushed and atomic."""
    import torch

    _fsync_write(os.path.join(checkpoint, QUEUE_FILE), lambda tmp: torch.save(queue.state_dict(), tmp))


def load_queue(checkpoint: str, queue, device=None) -> None:
    """Restore the DR ``queue`` (contents and pointer) from ``checkpoint``; clear errors if absent or corrupt.
    Nothing to do when ``queue`` is None (a run without DR)."""
    import torch

    if queue is None:
        return
    path = os.path.join(checkpoint, QUEUE_FILE)
    if not os.path.isfile(path):
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint} has no {QUEUE_FILE}: it was not written by a DR run of "
            "DistillationTrainer, so this DR run cannot resume from it. To start DR from its weights, load "
            "them with from_pretrained and train without resume_from_checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, ...
        raise IncompleteCheckpointError(f"{path} is corrupt and cannot be read ({type(err).__name__}: {err})") \
            from err
    try:
        queue.load_state_dict(state, device=device)
    except ValueError as err:
        raise CheckpointMismatchError(f"checkpoint {checkpoint}: {err}") from err


def resolve_checkpoint(resume_from_checkpoint: str | bool, output_dir: str, current: dict, model) -> str:
    """The checkpoint a run resumes from, verified complete (:func:`verify_checkpoint`) and compatible with this
    run (``current``: its :func:`checkpoint_metadata`; ``model``: its student, whose weight shapes are compared).

    ``True`` (or the string ``"true"``/``"latest"``, as from a command line) picks the newest *complete*
    checkpoint in ``output_dir``: newer partial ones (a save that was killed) are skipped with a warning. An
    explicit path must be complete, else :class:`IncompleteCheckpointError`.
    """
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "latest") \
            and not os.path.isdir(resume_from_checkpoint):  # --resume_from_checkpoint true on a command line
        resume_from_checkpoint = True
    checkpoint = (newest_complete_checkpoint(output_dir) if resume_from_checkpoint is True
                  else str(resume_from_checkpoint))
    manifest = verify_checkpoint(checkpoint)
    shapes = {name: list(value.shape) for name, value in model.state_dict().items()}
    check_compatible(checkpoint, manifest.get("metadata", {}), current, shapes)
    return checkpoint


def delete_earlier_checkpoints(output_dir: str, earlier: list[str]) -> None:
    """``overwrite_output_dir``: delete the ``checkpoint-N`` folders of ``earlier`` (what
    :func:`check_output_dir` found), which would otherwise mix into the new run's."""
    import shutil

    logger.warning("overwrite_output_dir: deleting the earlier run in %s (%s)", output_dir, ", ".join(earlier))
    for name in earlier:
        if name.startswith(PREFIX_CHECKPOINT_DIR):
            shutil.rmtree(os.path.join(output_dir, name))
