"""Nothing lost, nothing silently wrong (issue 30, items 1-8): rotation never deletes a checkpoint that fails
verification and resuming past one is refused; two exports into one folder; evaluating a checkpoint of a live
run; a collapsed student is marked, not scored; resuming with another max_steps says the schedule it follows;
methods that contain DR are not summed with DR; the teacher-eval cache follows the teacher's weights; a stream of
one anchor stops. Items 2 and 3 run two real processes."""

import logging
import os
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


# ------------------------------------------------------------------------------ 6: methods that contain DR
@pytest.mark.parametrize("method", ["dr+drg", "drg+drb", "drb:1,dr:0.5", "drg:0.5+dr:2"])
def test_methods_that_contain_dr_are_not_summed_with_dr(method):
    from mvld_hf.losses.registry import METHODS, parse_method

    with pytest.raises(ValueError, match=r"both contain DR \(.*= DR \+ .*\): the sum would count DR twice"):
        parse_method(method)
    assert METHODS["drg"].includes == ("dr",) and METHODS["drb"].includes == ("dr",)
    assert parse_method("drg+ed") == {"drg": 1.0, "ed": 1.0}  # other sums stay


# -------------------------------------------------------------------- 8: a stream whose anchors are all one
def test_a_stream_of_one_anchor_stops_after_a_run_of_alike_steps(tokenizer, data, tmp_path, caplog):
    from mvld_hf.trainer_checks import ALIKE_STEPS_LIMIT

    first = data[0]["teacher_text_embeds"]
    same = data.remove_columns("teacher_text_embeds").add_column("teacher_text_embeds", [first] * len(data))
    trainer = _trainer(tokenizer, tmp_path, same.to_iterable_dataset(), method="mcl", max_steps=3 * ALIKE_STEPS_LIMIT)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"), \
            pytest.raises(ValueError, match=rf"the last {ALIKE_STEPS_LIMIT} training batches \(up to step "
                                            rf"{ALIKE_STEPS_LIMIT}\) each had one anchor .*, but method='mcl' needs "
                                            "at least two rows with different anchors"):
        trainer.train()
    assert trainer.state.global_step == ALIKE_STEPS_LIMIT - 1  # stopped before the update of that step
    warned = [r for r in caplog.records if "no negatives" in r.getMessage()]
    assert len(warned) == 1  # one warning at step 1, then the stop


def test_an_occasional_alike_batch_only_warns(tokenizer, data, tmp_path, caplog):
    first = data[0]["teacher_text_embeds"]
    values = [first if i < BATCH else v for i, v in enumerate(data["teacher_text_embeds"])]
    rows = data.remove_columns("teacher_text_embeds").add_column("teacher_text_embeds", values)
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset(), method="mcl", max_steps=4)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        trainer.train()
    assert trainer.state.global_step == 4


# ------------------------------------------------------------- 7: the teacher-eval cache and the teacher's weights
def test_teacher_eval_cache_key_follows_the_teachers_weights(teacher, toy_dataset, tmp_path):
    from types import SimpleNamespace

    import torch
    from safetensors.torch import load_file, save_file

    from mvld_hf.cli.arguments import DataArguments
    from mvld_hf.cli.reports import teacher_eval_path

    folder = tmp_path / "teacher"
    teacher.model.save_pretrained(folder)
    local = SimpleNamespace(name_or_path=str(folder), revision=None, model=teacher.model)
    args, data_args = _args(tmp_path), DataArguments()

    def key():
        return teacher_eval_path(str(tmp_path / "cache"), local, toy_dataset, None, args, data_args, None)

    before = key()
    assert before == key()  # stable while nothing changes
    weights = folder / "model.safetensors"
    stat = os.stat(weights)
    tensors = load_file(weights)
    name = next(n for n, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name] + 0.01 * torch.randn_like(tensors[name])  # perturbed in place, same size
    save_file(tensors, weights, metadata={"format": "pt"})
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old time
    assert os.path.getsize(weights) == stat.st_size and key() != before
