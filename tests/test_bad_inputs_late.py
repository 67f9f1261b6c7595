"""Bad inputs that used to end in a traceback, an unclear message or a late one (issue 30, items 9-19): each is
now refused early in one line naming the file/row/flag, or handled (a stale cache recomputed, an unreadable lock
taken over, SIGTERM handled like Ctrl-C). The older cases are in ``tests/test_bad_inputs.py``."""

import os
import re
from functools import partial

import pytest

from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

BATCH = 16
_args = partial(training_args, method="fd", per_device_train_batch_size=BATCH, queue_size=64, learning_rate=3e-3,
                max_steps=2, logging_steps=1)


@pytest.fixture(scope="module")
def data(toy_dataset, teacher):
    return precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)


def _trainer(tokenizer, tmp_path, train_dataset, **kwargs):
    return DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer,
                               train_dataset=train_dataset, args=_args(tmp_path, **kwargs))


# ------------------------------------------------------- item 13: the only checkpoint fails verification
@pytest.mark.parametrize("damage", ["truncated optimizer", "edited step"])
def test_resuming_when_the_only_checkpoint_is_damaged_names_the_file_and_reason(tokenizer, data, tmp_path, damage):
    from mvld_hf.cli.arguments import CliError, check_resume

    trainer = _trainer(tokenizer, tmp_path, data, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    if damage == "truncated optimizer":
        path = os.path.join(checkpoint, "optimizer.pt")
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        reason = r"optimizer\.pt is \d+ bytes, \d+ were written \(truncated or replaced\)"
    else:
        path = os.path.join(checkpoint, "trainer_state.json")
        text = open(path).read()
        assert '"global_step": 2,' in text
        open(path, "w").write(text.replace('"global_step": 2,', '"global_step": 7,'))  # same size: only the step
        reason = r"trainer_state\.json says global_step 7 but the checkpoint was written at step 2"
    args = _args(tmp_path, resume_from_checkpoint="true")
    with pytest.raises(CliError, match=rf"--resume_from_checkpoint true: no complete checkpoint in "
                                       rf"{re.escape(args.output_dir)}, its only checkpoint fails verification: "
                                       rf"checkpoint {re.escape(checkpoint)} is corrupt or incomplete: {reason}.*\. "
                                       r"Nothing can be resumed from it: start again with --overwrite_output_dir "
                                       r"true") as error:
        check_resume(args, trainer.model)
    assert "earlier checkpoint" not in str(error.value)  # there is none
