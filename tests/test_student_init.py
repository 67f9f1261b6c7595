"""The student's initialisation before step 1 (:mod:`mvld_hf.student_init`): which projection warm start a run
gets (``projection_init``), and the fit itself on the first training rows, through the trainer's batches."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.student_init import projection_init_mode, warm_start_projection
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

BATCH = 16

_args = partial(training_args, per_device_train_batch_size=BATCH, queue_size=64, learning_rate=3e-3,
                num_train_epochs=6, logging_steps=6)


@pytest.fixture(scope="module")
def precomputed(toy_dataset, teacher):
    return {"text": precompute_teacher_embeddings(toy_dataset, teacher, anchor="text")}


@pytest.mark.parametrize("method,init,pretrained,mode", [
    ("fd", "auto", True, "least_squares"), ("ed", "auto", True, "least_squares"),
    ("dr", "auto", True, "least_squares"), ("mcl", "auto", True, "least_squares"),
    ("fd", "auto", False, "mean"),  # a backbone from a config (scratch): a fitted weight's gain made FD diverge
    ("dr+ed", "auto", False, "mean"), ("dr", "auto", False, None), ("sd", "auto", False, None),
    ("fd", "none", True, None), ("mcl", "least_squares", False, "least_squares"), ("dr", "mean", True, "mean")])
def test_projection_warm_start_before_the_first_step(method, init, pretrained, mode, tokenizer, precomputed,
                                                     tmp_path, monkeypatch):
    student = tiny_student(tokenizer, projection_dim=16, seed=1)
    if pretrained:  # what MultilingualTextTower.from_backbone records
        student.config.backbone_name_or_path = "some/pretrained-encoder"
    args = _args(tmp_path, method=method, projection_init=init, max_steps=1, projection_init_samples=40)
    assert args.has_mse_term is ("fd" in method or "ed" in method)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=precomputed["text"],
                                  processing_class=tokenizer)
    assert projection_init_mode(trainer.model, trainer.args) == mode
    calls = []
    original = student.fit_projection
    monkeypatch.setattr(student, "fit_projection", lambda p, a, ridge, fit_weight: calls.append(
        (len(p), fit_weight)) or original(p, a, ridge, fit_weight))
    trainer.train()
    assert calls == ([(40, mode == "least_squares")] if mode else [])


def test_mean_init_keeps_the_weight_and_starts_the_outputs_at_the_anchors_mean(tokenizer, precomputed, tmp_path):
    data = precomputed["text"]
    student = tiny_student(tokenizer, projection_dim=16, seed=1)
    weight = student.projection.weight.detach().clone()
    trainer = DistillationTrainer(model=student, args=_args(tmp_path, method="fd"), train_dataset=data,
                                  processing_class=tokenizer)
    warm_start_projection(trainer, "mean")
    assert torch.equal(student.projection.weight, weight)
    out = student.encode(list(data["caption"]), tokenizer)
    anchors = torch.tensor(data["teacher_text_embeds"])
    assert torch.allclose(out.mean(0), anchors.mean(0), atol=1e-4)
    with pytest.raises(ValueError, match="mode"):
        warm_start_projection(trainer, "ridge")


def test_warm_start_fits_the_anchors_and_is_validated(tokenizer, precomputed, teacher, tmp_path):
    data = precomputed["text"]
    student = tiny_student(tokenizer, projection_dim=16, seed=1)
    trainer = DistillationTrainer(model=student, args=_args(tmp_path, method="fd"), train_dataset=data,
                                  processing_class=tokenizer)
    anchors = torch.tensor(data["teacher_text_embeds"])
    cos_before = F.cosine_similarity(student.encode(list(data["caption"]), tokenizer), anchors).mean()
    fit = warm_start_projection(trainer)
    cos_after = F.cosine_similarity(student.encode(list(data["caption"]), tokenizer), anchors).mean()
    assert fit["rows"] == len(data) and cos_after > cos_before + 0.2
    # the same fit from the teacher in the step (no precomputed column)
    raw = data.remove_columns(["teacher_text_embeds", "teacher_image_embeds"] if "teacher_image_embeds" in
                              data.column_names else ["teacher_text_embeds"])
    student2 = tiny_student(tokenizer, projection_dim=16, seed=1)
    fit2 = warm_start_projection(DistillationTrainer(model=student2, args=_args(tmp_path, method="fd"),
                                                     train_dataset=raw, teacher=teacher, processing_class=tokenizer))
    assert fit2["r2"] == pytest.approx(fit["r2"], abs=1e-4)
    for bad in (dict(projection_init="ridge"), dict(projection_init_samples=1), dict(projection_init_ridge=-1.0)):
        with pytest.raises(ValueError, match="projection_init"):
            _args(tmp_path, **bad)
