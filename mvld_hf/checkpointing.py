"""The checkpoint format of :class:`~mvld_hf.DistillationTrainer`: a manifest written last, and its checks.

Helpers in the spirit of ``transformers.trainer_utils.get_last_checkpoint`` (torch is imported only inside the
functions that read or write tensors): a checkpoint is complete when ``mvld_checkpoint.json`` (every file with its
size and SHA-256, plus the run's set-up) exists, every file it lists still has the size it was written with and,
when resuming, the content (a same-size file copied over from another checkpoint is refused, naming it), and its
step agrees with ``trainer_state.json``'s ``global_step``.

The state a run shares with its checkpoints lives here too: :func:`checkpoint_metadata` (what a resumed run must
share with the one that wrote the checkpoint), :func:`save_queue`/:func:`load_queue` (the DR queue),
:func:`resolve_checkpoint` (the checkpoint to resume from, verified complete and compatible) and
:func:`delete_earlier_checkpoints`; the trainer's ``_save_checkpoint`` and ``train`` call them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil

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


class DiskFullError(OSError):
    """A checkpoint could not be saved because its disk is full; the message names the checkpoint that stays good."""


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


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in 4 MiB chunks into one buffer (memory stays flat for multi-GB files). Right
    after a save the file is still in the page cache; measured in benchmarks/RESULTS.md (checkpoint hashing)."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def write_checkpoint_manifest(checkpoint: str, metadata: dict) -> None:
    """Mark ``checkpoint`` complete: ``mvld_checkpoint.json`` lists every file with its size (``files``) and its
    SHA-256 (``sha256``, computed here, right after the files were written), plus ``metadata``.

    Written last and atomically, so a checkpoint without it (or whose files no longer match it) is one whose
    save was interrupted or that was damaged afterwards.
    """
    files = _checkpoint_files(checkpoint)
    hashes = {rel: file_sha256(os.path.join(checkpoint, rel)) for rel in files}
    manifest = {"format": 2, "files": files, "sha256": hashes, "metadata": metadata}

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)

    _fsync_write(os.path.join(checkpoint, CHECKPOINT_MANIFEST), write)


def verify_checkpoint(checkpoint: str, content: bool = True) -> dict:
    """Return the manifest of a complete ``DistillationTrainer`` checkpoint, or raise
    :class:`IncompleteCheckpointError` saying what is missing or truncated, whose step disagrees with
    ``trainer_state.json``, or that the manifest does not record finite weights (``metadata["finite_weights"]``).

    ``content`` (resuming): also every file's SHA-256 against the manifest's (a same-size file swapped in from
    another checkpoint, or a truncated file padded back to its size, is named) and no NaN/inf in a
    ``*.safetensors`` weight; this reads every file once. ``content=False`` is the cheap check for listing
    checkpoints (sizes and a few small files only)."""
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
    elif not problems:
        problems += _step_mismatch(checkpoint, manifest)
    if content and not problems:
        hashes = manifest.get("sha256")
        if not isinstance(hashes, dict):
            logger.warning("checkpoint %s was written before %s recorded content hashes: only its file sizes are "
                           "checked", checkpoint, CHECKPOINT_MANIFEST)
        else:
            problems += [f"{rel} has other content than was written (SHA-256 differs: replaced by another file of "
                         "the same size, or corrupted)" for rel, digest in sorted(hashes.items())
                         if rel in files and file_sha256(os.path.join(checkpoint, rel)) != digest]
    if problems:
        raise IncompleteCheckpointError(f"checkpoint {checkpoint} is corrupt or incomplete: {'; '.join(problems)}. "
                                        "Resume from an earlier checkpoint (pass its folder to "
                                        "--resume_from_checkpoint)")
    if (manifest.get("metadata") or {}).get("finite_weights") is not True:
        raise IncompleteCheckpointError(
            f"checkpoint {checkpoint}: its {CHECKPOINT_MANIFEST} records no check that its weights are finite (it "
            "was written by an mvld_hf version without that check, or by a run whose weights were not finite), so "
            "it is not trusted for resuming. To keep its weights, load them with from_pretrained and start a new run")
    bad = non_finite_weights(checkpoint) if content else []
    if bad:
        raise IncompleteCheckpointError(
            f"checkpoint {checkpoint} holds NaN/inf weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}): "
            "resume from an earlier checkpoint")
    return manifest


def _step_mismatch(checkpoint: str, manifest: dict) -> list[str]:
    """The manifest's step against ``trainer_state.json``'s ``global_step`` (which the Trainer resumes from)."""
    step = (manifest.get("metadata") or {}).get("global_step")
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE)) as handle:
            state_step = json.load(handle).get("global_step")
    except (OSError, ValueError, AttributeError) as err:
        return [f"{TRAINER_STATE} is unreadable ({err})"]
    if step is not None and state_step != step:
        return [f"{TRAINER_STATE} says global_step {state_step} but the checkpoint was written at step {step} "
                f"(edited or replaced; resuming would start at the wrong step)"]
    return []


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
    """(newest complete checkpoint or None, the reasons newer ones were skipped); the cheap check
    (``verify_checkpoint(content=False)``): resuming verifies the content of the one it picks."""
    skipped = []
    for checkpoint in list_checkpoints(output_dir):
        try:
            verify_checkpoint(checkpoint, content=False)
            return checkpoint, skipped
        except IncompleteCheckpointError as err:
            skipped.append(str(err))
    return None, skipped


def newest_complete_checkpoint(output_dir: str) -> str:
    """The newest complete checkpoint of ``output_dir`` (``resume_from_checkpoint=True``); newer partial ones (a
    save that was interrupted: no manifest) are skipped with a warning; a newer one that was complete and fails
    verification now is refused (:func:`damaged_newer_checkpoints`); none at all raises
    :class:`IncompleteCheckpointError`."""
    checkpoint, skipped = last_complete_checkpoint(output_dir)
    damaged = damaged_newer_checkpoints(output_dir, skipped)
    if checkpoint is not None and damaged:
        raise IncompleteCheckpointError(resume_past_damaged(checkpoint, damaged))
    for reason in skipped:
        logger.warning("skipping an incomplete checkpoint: %s", reason)
    if checkpoint is None:
        raise IncompleteCheckpointError(
            f"no complete checkpoint in {output_dir} to resume from"
            + (f" ({len(skipped)} incomplete: {'; '.join(skipped)})" if skipped else ""))
    return checkpoint


def damaged_newer_checkpoints(output_dir: str, skipped: list[str]) -> list[tuple[str, str]]:
    """(folder, reason) of the checkpoints :func:`last_complete_checkpoint` skipped (``skipped``: its reasons,
    newest first) that hold a manifest: they were complete once and were damaged or edited since (an interrupted
    save has no manifest)."""
    newer = list_checkpoints(output_dir)[:len(skipped)]
    return [(path, reason) for path, reason in zip(newer, skipped)
            if os.path.isfile(os.path.join(path, CHECKPOINT_MANIFEST))]


def resume_past_damaged(checkpoint: str, damaged: list[tuple[str, str]]) -> str:
    """Why ``resume_from_checkpoint=True`` does not fall back past a damaged newer checkpoint, and the ways on."""
    reasons = "; ".join(re.split(r"[.:] [Rr]esume from an earlier checkpoint", reason)[0].rstrip(".")
                        for _, reason in damaged)
    names = ", ".join(os.path.basename(path) for path, _ in damaged)
    return (f"{reasons}. Resuming from the older {os.path.basename(checkpoint)} would train past {names} and "
            f"replace it, so it is not done silently: restore the damaged file, move {names} out of "
            f"{os.path.dirname(checkpoint)}, or resume from the older checkpoint explicitly with "
            f"--resume_from_checkpoint {checkpoint} (train(resume_from_checkpoint={checkpoint!r})); "
            f"{names} is then kept beside it, renamed, never deleted")


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
    changed_lr = learning_rate_change(saved, current.get("learning_rate"))
    if changed_lr:
        differences.append(changed_lr)
    shapes = weight_shape_mismatches(checkpoint, weight_shapes) if weight_shapes else []
    if shapes:
        differences.append(f"the student's weights have other shapes ({'; '.join(shapes[:2])}"
                           f"{f'; {len(shapes) - 2} more' if len(shapes) > 2 else ''}): build the same student")
    if differences:
        raise CheckpointMismatchError(
            f"checkpoint {checkpoint} was written by a different set-up ({'; '.join(differences)}). Resuming "
            "continues the same run; to train on with another method or queue, load the weights with "
            "from_pretrained and start a new run")


def learning_rate_change(saved: dict, learning_rate) -> str | None:
    """Why resuming with another learning rate is refused (None when it is the same, or the checkpoint's manifest
    predates recording it): transformers restores the checkpoint's optimizer and scheduler, so the new value would
    be ignored without a word."""
    before = saved.get("learning_rate")
    if before is None or learning_rate is None or float(before) == float(learning_rate):
        return None
    return (f"learning_rate: checkpoint {before!r}, this run {learning_rate!r} (resuming restores the checkpoint's "
            f"optimizer and learning-rate schedule, so {learning_rate!r} would be ignored: resume with "
            f"--learning_rate {before!r})")


def batch_change(checkpoint: str, saved: dict, args) -> str | None:
    """One line when a resumed run's global batch (per device x processes x accumulation) differs from the one
    that wrote ``checkpoint`` (None when equal or not recorded)."""
    keys = ("per_device_train_batch_size", "world_size", "gradient_accumulation_steps")
    if any(saved.get(key) is None for key in keys):
        return None
    before, now = [saved[key] for key in keys], [getattr(args, key) for key in keys]
    if before == now:
        return None

    def show(parts):
        return f"{parts[0] * parts[1] * parts[2]} ({parts[0]} per device x {parts[1]} processes x {parts[2]} " \
               "accumulation steps)"

    return (f"resuming {checkpoint}, written with a global batch of {show(before)}, with a global batch of "
            f"{show(now)}: the steps after step {saved.get('global_step')} see other rows than the interrupted run "
            "would have, and the schedule counts steps, not examples")


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
            "learning_rate": args.learning_rate, "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "max_steps": args.max_steps if args.max_steps > 0 else None,  # the schedule's length
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


def resolve_checkpoint(resume_from_checkpoint: str | bool, output_dir: str, current: dict, model,
                       args=None) -> str:
    """The checkpoint a run resumes from, verified complete (:func:`verify_checkpoint`, content included) and
    compatible with this run (``current``: its :func:`checkpoint_metadata`, the learning rate included;
    ``model``: its student, whose weight shapes are compared); with ``args``, another global batch and another
    ``max_steps`` are each warned about in one line (:func:`batch_change`,
    :func:`~mvld_hf.resume_schedule.schedule_change`).

    ``True`` (or the string ``"true"``/``"latest"``, as from a command line) picks the newest *complete*
    checkpoint in ``output_dir``: newer partial ones (a save that was killed) are skipped with a warning, a newer
    damaged one is refused (:func:`newest_complete_checkpoint`). An explicit path must be complete, else
    :class:`IncompleteCheckpointError`.
    """
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "latest") \
            and not os.path.isdir(resume_from_checkpoint):  # --resume_from_checkpoint true on a command line
        resume_from_checkpoint = True
    checkpoint = (newest_complete_checkpoint(output_dir) if resume_from_checkpoint is True
                  else str(resume_from_checkpoint))
    manifest = verify_checkpoint(checkpoint)
    shapes = {name: list(value.shape) for name, value in model.state_dict().items()}
    check_compatible(checkpoint, manifest.get("metadata", {}), current, shapes)
    if args is not None:
        from .resume_schedule import schedule_change

        for changed in (batch_change(checkpoint, manifest.get("metadata", {}), args),
                        schedule_change(checkpoint, manifest.get("metadata", {}), args)):
            if changed:
                logger.warning(changed)
    return checkpoint


def delete_earlier_checkpoints(output_dir: str, earlier: list[str]) -> None:
    """``overwrite_output_dir``: delete the ``checkpoint-N`` folders of ``earlier`` (what
    :func:`check_output_dir` found), which would otherwise mix into the new run's."""
    import shutil

    logger.warning("overwrite_output_dir: deleting the earlier run in %s (%s)", output_dir, ", ".join(earlier))
    for name in earlier:
        if name.startswith(PREFIX_CHECKPOINT_DIR):
            shutil.rmtree(os.path.join(output_dir, name))


@contextlib.contextmanager
def disk_full_reported(output_dir: str, step: int):
    """Around a checkpoint save: a failure on a full disk becomes :func:`disk_full_error`'s
    :class:`DiskFullError` (naming the checkpoint that stays good); any other error passes unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        full = disk_full_error(err, output_dir, step)
        if full is None:
            raise
        raise full from err


def disk_full_error(err: BaseException, output_dir: str, step: int) -> DiskFullError | None:
    """A :class:`DiskFullError` for a checkpoint save that failed on a full disk (``ENOSPC``/``EDQUOT``, or
    torch's ``unexpected pos`` / safetensors' ``StorageFull`` with the disk found full), naming the checkpoint
    that stays good; None for any other failure."""
    text = str(err)
    free = None
    try:
        free = shutil.disk_usage(output_dir).free
    except OSError:
        pass
    full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text \
        or "StorageFull" in text \
        or (("unexpected pos" in text or "write failed" in text) and free is not None and free < 64 << 20)
    if not full:
        return None
    last, _ = last_complete_checkpoint(output_dir)
    kept = (f"the last complete checkpoint, {last}, stays good: free some space and resume from it with "
            "--resume_from_checkpoint true (train(resume_from_checkpoint=True))" if last
            else "no complete checkpoint had been saved yet")
    shown = "" if free is None else f", {free / 2**20:.0f} MiB free"
    return DiskFullError(errno.ENOSPC, f"the disk holding {output_dir} is full{shown}: "
                         f"{PREFIX_CHECKPOINT_DIR}-{step} could not be saved and is incomplete (resuming skips it; "
                         f"delete it to free its space); {kept}")
