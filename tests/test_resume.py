"""Exact resume: a run SIGKILLed while saving a checkpoint, resumed with ``resume_from_checkpoint=True``, logs
the same losses and ends in the same weights and DR queue as an uninterrupted run; partial or corrupt
checkpoints are reported, never silently loaded."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from mvld_hf import precompute_teacher_embeddings
from mvld_hf.checkpointing import (
    CHECKPOINT_MANIFEST,
    QUEUE_FILE,
    CheckpointMismatchError,
    IncompleteCheckpointError,
    load_queue,
    verify_checkpoint,
)
from mvld_hf.testing import tiny_student
from tests.scripts import train_and_kill as script

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "train_and_kill.py")
KILL_STEP = 4  # the save of checkpoint-4 is interrupted; checkpoint-2 is the last complete one
LOSS_KEYS = ("loss", "loss_dr", "loss_ed", "loss_mcl", "grad_norm", "learning_rate")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tokenizer, teacher, toy_dataset):
    root = tmp_path_factory.mktemp("resume")
    tiny_student(tokenizer, 16, seed=5).save_pretrained(root / "student")  # dropout on: RNG state matters
    tokenizer.save_pretrained(root / "tokenizer")
    precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher).save_to_disk(root / "dataset")
    return str(root)


def _losses(log_history):
    return {entry["step"]: {k: entry[k] for k in LOSS_KEYS if k in entry} for entry in log_history if "loss" in entry}


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    trainer = script.build_trainer(workdir, os.path.join(workdir, "uninterrupted"))
    trainer.train()
    history = [{"step": e["step"], **e} for e in trainer.state.log_history]
    return {"losses": _losses(history), "params": [p.detach().clone() for p in trainer.model.parameters()],
            "queue": trainer.queue.keys().clone(), "ptr": trainer.queue.ptr}


@pytest.fixture(scope="module")
def killed(workdir):
    output_dir, log_file = os.path.join(workdir, "killed"), os.path.join(workdir, "killed_log.jsonl")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run([sys.executable, SCRIPT, workdir, output_dir, str(KILL_STEP), log_file], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, f"expected death by SIGKILL:\n{result.stderr[-4000:]}"
    with open(log_file) as handle:
        logged = [json.loads(line) for line in handle]
    return {"output_dir": output_dir, "losses": _losses(logged)}


def test_killed_run_leaves_complete_and_partial_checkpoints(killed):
    assert sorted(killed["losses"]) == list(range(1, KILL_STEP + 1))
    complete = os.path.join(killed["output_dir"], "checkpoint-2")
    assert verify_checkpoint(complete)["metadata"]["queue_filled"] == 16
    partial = os.path.join(killed["output_dir"], f"checkpoint-{KILL_STEP}")
    assert os.path.isfile(os.path.join(partial, QUEUE_FILE))  # everything but the manifest was written
    with pytest.raises(IncompleteCheckpointError, match="save was interrupted"):
        verify_checkpoint(partial)


def test_killed_run_logged_the_uninterrupted_losses(killed, uninterrupted):
    for step, logs in killed["losses"].items():
        assert logs == pytest.approx(uninterrupted["losses"][step], rel=1e-6), step


def test_explicit_partial_checkpoint_is_refused(killed, workdir):
    trainer = script.build_trainer(workdir, killed["output_dir"])
    with pytest.raises(IncompleteCheckpointError, match=f"checkpoint-{KILL_STEP} has no {CHECKPOINT_MANIFEST}"):
        trainer.train(resume_from_checkpoint=os.path.join(killed["output_dir"], f"checkpoint-{KILL_STEP}"))


def test_resume_after_sigkill_matches_uninterrupted_run(killed, uninterrupted, workdir, caplog, tmp_path):
    output_dir = str(tmp_path / "resumed")
    shutil.copytree(killed["output_dir"], output_dir)
    trainer = script.build_trainer(workdir, output_dir)
    with caplog.at_level(logging.WARNING, logger="mvld_hf.distillation_trainer"):
        trainer.train(resume_from_checkpoint=True)  # newest is partial: falls back to checkpoint-2
    assert any(f"checkpoint-{KILL_STEP} has no {CHECKPOINT_MANIFEST}" in r.getMessage() for r in caplog.records)
    resumed = _losses(trainer.state.log_history)
    assert sorted(resumed) == list(range(1, script.MAX_STEPS + 1))
    for step in range(1, script.MAX_STEPS + 1):  # steps 3-6 recomputed after the resume, 1-2 from the checkpoint
        assert resumed[step] == pytest.approx(uninterrupted["losses"][step], rel=1e-6), step
    for got, want in zip(trainer.model.parameters(), uninterrupted["params"]):
        assert torch.allclose(got, want, atol=1e-6)
    assert trainer.queue.ptr == uninterrupted["ptr"] and torch.allclose(trainer.queue.keys(), uninterrupted["queue"])
    # the resumed run's own checkpoints are complete, the final one included
    verify_checkpoint(os.path.join(output_dir, f"checkpoint-{script.MAX_STEPS}"))


@pytest.fixture
def complete_copy(killed, tmp_path):
    path = str(tmp_path / "copy" / "checkpoint-2")
    shutil.copyfile(os.path.join(killed["output_dir"], f"checkpoint-{KILL_STEP}", "model.safetensors"),
                    tmp_path / "partial-model.safetensors")
    shutil.copytree(os.path.join(killed["output_dir"], "checkpoint-2"), path)
    return path


def _truncate(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def _truncate_and_pad(path: str) -> None:
    """A truncated file whose size was "fixed" (zeros appended up to the size the manifest records)."""
    size = os.path.getsize(path)
    _truncate(path)
    with open(path, "ab") as handle:
        handle.write(b"\0" * (size - size // 2))


def _swap_from_partial_checkpoint(checkpoint: str, name: str) -> None:
    """Copy the same-size file of the killed run's checkpoint-4 (put beside by ``complete_copy``) over this one's
    (other weights, same size)."""
    other = os.path.join(os.path.dirname(os.path.dirname(checkpoint)), f"partial-{name}")
    assert os.path.getsize(other) == os.path.getsize(os.path.join(checkpoint, name))
    shutil.copyfile(other, os.path.join(checkpoint, name))


def _edit_step(checkpoint: str) -> None:
    path = os.path.join(checkpoint, "trainer_state.json")
    text = open(path).read()
    assert '"global_step": 2,' in text
    open(path, "w").write(text.replace('"global_step": 2,', '"global_step": 3,'))  # same size


@pytest.mark.parametrize("damage,message", [
    (lambda c: _truncate(os.path.join(c, "model.safetensors")), r"model\.safetensors is \d+ bytes, \d+ were written"),
    (lambda c: os.remove(os.path.join(c, "trainer_state.json")), "trainer_state.json is missing"),
    (lambda c: _truncate(os.path.join(c, QUEUE_FILE)), r"dr_queue\.pt is \d+ bytes"),
    (lambda c: os.remove(os.path.join(c, "optimizer.pt")), "optimizer.pt is missing"),
    (lambda c: open(os.path.join(c, CHECKPOINT_MANIFEST), "w").write("{"), "unreadable"),
    (lambda c: _truncate_and_pad(os.path.join(c, "optimizer.pt")), r"optimizer\.pt has other content than was "
                                                                     "written"),
    (lambda c: _swap_from_partial_checkpoint(c, "model.safetensors"), r"model\.safetensors has other content"),
    (_edit_step, "trainer_state.json says global_step 3 but the checkpoint was written at step 2"),
])
def test_corrupt_checkpoint_is_reported(complete_copy, workdir, damage, message):
    damage(complete_copy)
    trainer = script.build_trainer(workdir, os.path.dirname(complete_copy))
    with pytest.raises(IncompleteCheckpointError, match=message):
        trainer.train(resume_from_checkpoint=complete_copy)


def test_queue_file_corrupted_in_place_is_reported(complete_copy, workdir):
    path = os.path.join(complete_copy, QUEUE_FILE)
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:  # same size, garbage content: the manifest cannot see it, loading can
        handle.write(b"\0" * size)
    trainer = script.build_trainer(workdir, os.path.dirname(complete_copy))
    with pytest.raises(IncompleteCheckpointError, match="dr_queue.pt is corrupt"):
        load_queue(complete_copy, trainer.queue, trainer.args.device)


def test_no_complete_checkpoint_is_reported(killed, workdir, tmp_path):
    output_dir = tmp_path / "only_partial"
    shutil.copytree(os.path.join(killed["output_dir"], f"checkpoint-{KILL_STEP}"), output_dir / "checkpoint-4")
    trainer = script.build_trainer(workdir, str(output_dir))
    with pytest.raises(IncompleteCheckpointError, match="no complete checkpoint"):
        trainer.train(resume_from_checkpoint="true")  # as --resume_from_checkpoint true gives it


@pytest.mark.parametrize("change,message", [
    (dict(method="mcl"), "method_weights"),
    (dict(queue_size=32), "queue_size"),
    (dict(anchor="image"), "anchor"),
    (dict(learning_rate=1e-3), r"learning_rate: checkpoint 0\.005, this run 0\.001 .* resume with --learning_rate"),
])
def test_resume_with_another_setup_is_refused(complete_copy, workdir, change, message):
    import datasets

    data = datasets.load_from_disk(os.path.join(workdir, "dataset"))
    if change.get("anchor") == "image":
        data = data.add_column("teacher_image_embeds", data["teacher_text_embeds"])
    trainer = script.build_trainer(workdir, os.path.dirname(complete_copy), dataset=data, **change)
    with pytest.raises(CheckpointMismatchError, match=message) as err:
        trainer.train(resume_from_checkpoint=complete_copy)
    assert "from_pretrained" in str(err.value)


def test_old_checkpoints_rotate_out_only_after_the_new_one_is_complete(workdir, tmp_path):
    trainer = script.build_trainer(workdir, str(tmp_path / "rotated"), save_total_limit=1)
    trainer.train()
    assert os.listdir(tmp_path / "rotated") == [f"checkpoint-{script.MAX_STEPS}"]
    assert verify_checkpoint(str(tmp_path / "rotated" / f"checkpoint-{script.MAX_STEPS}"))["metadata"]["global_step"] \
        == script.MAX_STEPS


def test_resume_with_another_batch_size_says_so_in_one_line(complete_copy, workdir, caplog):
    trainer = script.build_trainer(workdir, os.path.dirname(complete_copy), per_device_train_batch_size=4,
                                   max_steps=3)
    with caplog.at_level(logging.WARNING, logger="mvld_hf.checkpointing"):
        trainer.train(resume_from_checkpoint=complete_copy)
    lines = [r.getMessage() for r in caplog.records if "global batch" in r.getMessage()]
    assert len(lines) == 1 and "global batch of 8 (8 per device" in lines[0] and "of 4 (4 per device" in lines[0]


def test_a_full_disk_during_a_save_says_so_and_names_the_good_checkpoint(workdir, tmp_path, monkeypatch):
    from collections import namedtuple

    import transformers

    import mvld_hf.checkpointing as checkpointing

    save = transformers.Trainer._save_checkpoint

    def save_or_fill_the_disk(self, model, trial):
        if self.state.global_step == 2:  # what torch.save says when the disk fills under it
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 160960 vs 160852")
        save(self, model, trial)

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save_or_fill_the_disk)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 4096))
    output_dir = str(tmp_path / "full")
    trainer = script.build_trainer(workdir, output_dir, save_steps=1)
    with pytest.raises(checkpointing.DiskFullError) as err:
        trainer.train()
    message = str(err.value)
    assert "the disk holding" in message and "is full, 0 MiB free: checkpoint-2 could not be saved" in message
    assert f"the last complete checkpoint, {os.path.join(output_dir, 'checkpoint-1')}, stays good" in message
    verify_checkpoint(os.path.join(output_dir, "checkpoint-1"))
    for other in (OSError(28, "No space left on device"), RuntimeError("Error while serializing: IoError(Os { "
                  "code: 28, kind: StorageFull, message: \"No space left on device\" })")):
        assert "checkpoint-1, stays good" in str(checkpointing.disk_full_error(other, output_dir, 2))
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage(10 << 30, 0, 10 << 30))
    assert checkpointing.disk_full_error(RuntimeError("unexpected pos 1 vs 2"), output_dir, 2) is None  # space left
    assert checkpointing.disk_full_error(RuntimeError("other"), output_dir, 2) is None
