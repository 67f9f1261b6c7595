"""The checkpoint format on its own (no training): the manifest is written last and lists every file with its
size; verification names what is missing or truncated; the newest complete checkpoint is found past partial
ones. The kill-and-resume behaviour of the trainer is tested in test_resume.py."""

import json
import os

import pytest
import torch

from mvld_hf.checkpointing import (
    CHECKPOINT_MANIFEST,
    QUEUE_FILE,
    TRAINER_STATE,
    CheckpointMismatchError,
    IncompleteCheckpointError,
    delete_earlier_checkpoints,
    last_complete_checkpoint,
    list_checkpoints,
    load_queue,
    save_queue,
    verify_checkpoint,
    write_checkpoint_manifest,
)
from mvld_hf.queue import EmbeddingQueue


def _checkpoint(output_dir, step: int, complete: bool = True, metadata: dict | None = None) -> str:
    path = os.path.join(output_dir, f"checkpoint-{step}")
    os.makedirs(os.path.join(path, "sub"))
    with open(os.path.join(path, TRAINER_STATE), "w") as handle:
        json.dump({"global_step": step}, handle)
    with open(os.path.join(path, "sub", "weights.bin"), "wb") as handle:
        handle.write(b"x" * (10 + step))
    if complete:
        write_checkpoint_manifest(path, {"global_step": step, "finite_weights": True} if metadata is None else metadata)
    return path


def test_manifest_lists_every_file_with_its_size(tmp_path):
    path = _checkpoint(str(tmp_path), 3)
    manifest = verify_checkpoint(path)
    assert manifest["files"] == {TRAINER_STATE: os.path.getsize(os.path.join(path, TRAINER_STATE)),
                                 "sub/weights.bin": 13}
    assert manifest["metadata"] == {"global_step": 3, "finite_weights": True}
    assert not [name for name in os.listdir(path) if name.endswith(".tmp")]


def test_damage_is_named(tmp_path):
    path = _checkpoint(str(tmp_path), 1)
    with open(os.path.join(path, "sub", "weights.bin"), "wb") as handle:
        handle.write(b"x")
    with pytest.raises(IncompleteCheckpointError, match=r"sub/weights\.bin is 1 bytes, 11 were written"):
        verify_checkpoint(path)
    os.remove(os.path.join(path, TRAINER_STATE))
    with pytest.raises(IncompleteCheckpointError, match=f"{TRAINER_STATE} is missing"):
        verify_checkpoint(path)
    with pytest.raises(IncompleteCheckpointError, match="does not exist"):
        verify_checkpoint(str(tmp_path / "nowhere"))


def test_newest_complete_checkpoint_skips_partial_ones(tmp_path):
    out = str(tmp_path)
    _checkpoint(out, 2)
    _checkpoint(out, 10)
    _checkpoint(out, 12, complete=False)
    os.makedirs(os.path.join(out, "checkpoint-x"))  # not a checkpoint-N folder
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["checkpoint-12", "checkpoint-10", "checkpoint-2"]
    checkpoint, skipped = last_complete_checkpoint(out)
    assert os.path.basename(checkpoint) == "checkpoint-10"
    assert len(skipped) == 1 and f"no {CHECKPOINT_MANIFEST}" in skipped[0]
    assert last_complete_checkpoint(str(tmp_path / "empty")) == (None, [])


def test_weights_not_recorded_or_not_finite_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = _checkpoint(str(tmp_path), 1, metadata={"global_step": 1})  # an older manifest, without the check
    with pytest.raises(IncompleteCheckpointError, match="records no check that its weights are finite"):
        verify_checkpoint(path)
    path = os.path.join(str(tmp_path), "checkpoint-2")
    os.makedirs(path)
    tensors = {"w": torch.tensor([1.0, float("inf")]), "ids": torch.tensor([1, 2])}
    save_file(tensors, os.path.join(path, "m.safetensors"))
    with open(os.path.join(path, TRAINER_STATE), "w") as handle:
        json.dump({"global_step": 2}, handle)
    write_checkpoint_manifest(path, {"global_step": 2, "finite_weights": True})
    with pytest.raises(IncompleteCheckpointError, match=r"holds NaN/inf weights \(w\): resume from an earlier"):
        verify_checkpoint(path)


def test_queue_round_trips_through_a_checkpoint_and_a_missing_or_other_queue_is_refused(tmp_path):
    queue = EmbeddingQueue(8, 4)
    queue.enqueue(torch.arange(12.0).view(3, 4))
    save_queue(str(tmp_path), queue)
    assert os.path.isfile(tmp_path / QUEUE_FILE) and not os.path.exists(tmp_path / f"{QUEUE_FILE}.tmp")
    restored = EmbeddingQueue(8, 4)
    load_queue(str(tmp_path), restored)
    assert torch.equal(restored.keys(), queue.keys()) and restored.ptr == queue.ptr
    load_queue(str(tmp_path / "nowhere"), None)  # a run without DR has nothing to restore
    with pytest.raises(CheckpointMismatchError, match=f"has no {QUEUE_FILE}"):
        load_queue(str(tmp_path / "nowhere"), restored)
    with pytest.raises(CheckpointMismatchError, match="checkpoint"):
        load_queue(str(tmp_path), EmbeddingQueue(8, 5))  # another embedding dim


def test_overwrite_deletes_only_the_earlier_checkpoints(tmp_path):
    old = _checkpoint(str(tmp_path), 3)
    (tmp_path / "model.safetensors").write_bytes(b"w")
    delete_earlier_checkpoints(str(tmp_path), ["checkpoint-3", "model.safetensors"])
    assert not os.path.exists(old) and (tmp_path / "model.safetensors").exists()


def test_manifest_records_each_files_sha256_and_a_same_size_swap_is_named(tmp_path):
    import hashlib

    path = _checkpoint(str(tmp_path), 3)
    manifest = verify_checkpoint(path)
    weights = os.path.join(path, "sub", "weights.bin")
    assert manifest["sha256"]["sub/weights.bin"] == hashlib.sha256(open(weights, "rb").read()).hexdigest()
    with open(weights, "wb") as handle:  # same size, other bytes (another checkpoint's file copied over)
        handle.write(b"y" * 13)
    verify_checkpoint(path, content=False)  # the cheap check (listing) sees sizes only
    assert last_complete_checkpoint(str(tmp_path))[0] == path
    with pytest.raises(IncompleteCheckpointError, match=r"sub/weights\.bin has other content than was written .*"
                                                        r"Resume from an earlier checkpoint"):
        verify_checkpoint(path)


def test_manifest_step_is_cross_checked_with_the_trainer_state(tmp_path):
    path = _checkpoint(str(tmp_path), 15)
    with open(os.path.join(path, TRAINER_STATE), "w") as handle:
        json.dump({"global_step": 19}, handle)  # same size as the written file: only the step check sees it
    for content in (False, True):
        with pytest.raises(IncompleteCheckpointError, match=f"{TRAINER_STATE} says global_step 19 but the "
                                                            "checkpoint was written at step 15"):
            verify_checkpoint(path, content=content)


def test_a_manifest_without_hashes_is_checked_by_size_with_a_warning(tmp_path, caplog):
    path = _checkpoint(str(tmp_path), 2)
    manifest_path = os.path.join(path, CHECKPOINT_MANIFEST)
    manifest = json.load(open(manifest_path))
    del manifest["sha256"]
    json.dump(manifest, open(manifest_path, "w"))
    assert verify_checkpoint(path)["files"]["sub/weights.bin"] == 12
    assert "before mvld_checkpoint.json recorded content hashes" in caplog.text


def test_another_learning_rate_is_refused_and_another_global_batch_is_one_line():
    from types import SimpleNamespace

    from mvld_hf.checkpointing import batch_change, check_compatible, learning_rate_change

    saved = {"learning_rate": 3e-3, "per_device_train_batch_size": 8, "world_size": 2,
             "gradient_accumulation_steps": 1, "global_step": 10}
    assert learning_rate_change(saved, 3e-3) is None and learning_rate_change({}, 1e-3) is None
    with pytest.raises(CheckpointMismatchError, match=r"learning_rate: checkpoint 0\.003, this run 0\.001 .*resume "
                                                      r"with --learning_rate 0\.003"):
        check_compatible("ckpt", saved, {**saved, "learning_rate": 1e-3})
    args = SimpleNamespace(per_device_train_batch_size=8, world_size=2, gradient_accumulation_steps=1)
    assert batch_change("ckpt", saved, args) is None and batch_change("ckpt", {"global_step": 3}, args) is None
    args.per_device_train_batch_size = 4
    line = batch_change("ckpt", saved, args)
    assert "\n" not in line and "global batch of 16 (8 per device x 2 processes x 1 accumulation steps)" in line
    assert "with a global batch of 8 (4 per device" in line and "after step 10" in line
