"""Train, then die by SIGKILL in the middle of saving a checkpoint; run by ``tests/test_resume.py``.

    python tests/scripts/train_and_kill.py WORKDIR OUTPUT_DIR KILL_STEP LOG_FILE

Loads ``student/``, ``tokenizer/`` and ``dataset/`` from ``WORKDIR`` and trains with :func:`make_args` (shared
with the test, so both runs are configured identically). Every log entry is appended to ``LOG_FILE`` as a JSON
line as soon as it is logged. The checkpoint of step ``KILL_STEP`` is interrupted after the Trainer wrote its
files but before the manifest that marks it complete: the process kills itself with SIGKILL (no cleanup, no
atexit), which leaves the earlier checkpoints complete and that one partial.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch
from transformers import TrainerCallback

import mvld_hf.distillation_trainer as distillation_trainer
from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

MAX_STEPS, SAVE_STEPS = 6, 2


def make_args(output_dir: str, **overrides) -> DistillationArguments:
    kwargs = dict(
        output_dir=output_dir, method="dr:1.0,ed:0.5,mcl:0.2", per_device_train_batch_size=8, queue_size=24,
        learning_rate=5e-3, max_steps=MAX_STEPS, logging_steps=1, save_strategy="steps", save_steps=SAVE_STEPS,
        report_to=[], disable_tqdm=True, use_cpu=True, seed=0, dataloader_drop_last=True)
    kwargs.update(overrides)
    return DistillationArguments(**kwargs)


def build_trainer(workdir: str, output_dir: str, callbacks=(), dataset=None, **overrides) -> DistillationTrainer:
    import datasets
    from transformers import AutoTokenizer

    return DistillationTrainer(
        model=MultilingualTextTower.from_pretrained(os.path.join(workdir, "student")),
        processing_class=AutoTokenizer.from_pretrained(os.path.join(workdir, "tokenizer")),
        train_dataset=dataset if dataset is not None else datasets.load_from_disk(os.path.join(workdir, "dataset")),
        args=make_args(output_dir, **overrides), callbacks=list(callbacks))


class LogToFile(TrainerCallback):
    def __init__(self, path: str):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def main(workdir: str, output_dir: str, kill_step: int, log_file: str) -> None:
    torch.set_num_threads(2)
    write_manifest = distillation_trainer.write_checkpoint_manifest

    def write_or_die(checkpoint, metadata):
        if metadata["global_step"] == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)
        write_manifest(checkpoint, metadata)

    distillation_trainer.write_checkpoint_manifest = write_or_die
    build_trainer(workdir, output_dir, [LogToFile(log_file)]).train()
    sys.exit("training finished: the kill did not happen")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
