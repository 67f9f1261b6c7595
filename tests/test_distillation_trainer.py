import math
import os
from functools import partial

import datasets
import pytest
import torch
import torch.nn.functional as F

from mvld_hf import (
    DistillationTrainer,
    MissingColumnError,
    MultilingualTextTower,
    precompute_teacher_embeddings,
)
from mvld_hf.checkpointing import QUEUE_FILE, load_queue
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

BATCH = 16


_args = partial(training_args, per_device_train_batch_size=BATCH, queue_size=64, learning_rate=3e-3,
                num_train_epochs=6, logging_steps=6)


@pytest.fixture(scope="module")
def precomputed(toy_dataset, teacher):
    return {anchor: precompute_teacher_embeddings(toy_dataset, teacher, anchor=anchor) for anchor in ("text", "image")}


def _closeness(student, tokenizer, dataset, column):
    """(mean cosine to the row's anchor, fraction of rows whose nearest distinct anchor is the teacher's choice)."""
    emb = student.encode(dataset["caption"], tokenizer)
    anchors = torch.tensor(dataset[column])
    teacher_text = torch.tensor(dataset["teacher_text_embeds"])
    distinct = torch.unique(anchors, dim=0)
    cos = lambda x, y: F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    agreement = (cos(emb, distinct).argmax(1) == cos(teacher_text, distinct).argmax(1)).float().mean().item()
    return F.cosine_similarity(emb, anchors).mean().item(), agreement


@pytest.mark.parametrize("method,anchor", [
    ("fd", "text"), ("ed", "text"), ("sd", "text"), ("mcl", "text"), ("dr", "text"),
    ("fd", "image"), ("mcl", "image"), ("dr", "image"), ("dr+fd", "text"), ("dr:1.0,ed:0.5,fd:0.5", "text"),
])
def test_each_method_learns(method, anchor, tokenizer, precomputed, tmp_path):
    data = precomputed[anchor]
    column = "teacher_text_embeds" if anchor == "text" else "teacher_image_embeds"
    student = tiny_student(tokenizer, projection_dim=16, seed=1)
    before = _closeness(student, tokenizer, data, column)
    trainer = DistillationTrainer(model=student, args=_args(tmp_path, method=method, anchor=anchor),
                                  train_dataset=data, processing_class=tokenizer)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs[-1]["loss"] < logs[0]["loss"]
    for name in trainer.args.method_weights:  # every component is logged
        assert f"loss_{name}" in logs[0]
    after = _closeness(student, tokenizer, data, column)
    if set(trainer.args.method_weights) & {"fd", "ed", "mcl"} or anchor == "image":
        # pulls each caption onto its own anchor (the random teacher's text->image choices are degenerate)
        assert after[0] > before[0] + 0.1, (before, after)
    else:  # SD/DR match similarity distributions: the student's nearest anchor becomes the teacher's
        assert after[1] > before[1] + 0.2, (before, after)


def test_ed_logs_named_parts_and_total_is_weighted_sum(tokenizer, precomputed, tmp_path):
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer,
                                  args=_args(tmp_path, method="ed:0.5,fd:2", max_steps=1, logging_steps=1),
                                  train_dataset=precomputed["text"])
    trainer.train()
    log = trainer.state.log_history[0]
    assert {"loss_ed", "ed_caption", "ed_english", "loss_fd"} <= set(log)
    assert log["loss_ed"] == pytest.approx(log["ed_caption"] + log["ed_english"], rel=1e-4)
    assert log["loss"] == pytest.approx(0.5 * log["loss_ed"] + 2 * log["loss_fd"], rel=1e-4)


def test_teacher_in_the_step_equals_precomputed(tokenizer, teacher, toy_dataset, precomputed, tmp_path):
    losses = []
    for data, kwargs in ((precomputed["image"], {}), (toy_dataset, {"teacher": teacher})):
        trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=3), processing_class=tokenizer,
                                      args=_args(tmp_path, method="dr+fd", anchor="image", max_steps=3,
                                                 logging_steps=1), train_dataset=data, **kwargs)
        trainer.train()
        losses.append([e["loss"] for e in trainer.state.log_history if "loss" in e])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_teacher_receives_no_gradient_and_is_unchanged(tokenizer, teacher, toy_dataset, tmp_path):
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, teacher=teacher,
                                  args=_args(tmp_path, method="mcl", max_steps=2), train_dataset=toy_dataset)
    trainer.train()
    assert all(p.grad is None for p in teacher.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items())


def test_dr_queue_fills_and_is_saved_then_restored(tokenizer, precomputed, tmp_path):
    args = _args(tmp_path, method="dr", max_steps=5, save_strategy="steps", save_steps=5)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, args=args,
                                  train_dataset=precomputed["text"])
    trainer.train()
    assert len(trainer.queue) == 64  # 5 steps x 16 rows through a queue of 64
    checkpoint = os.path.join(args.output_dir, "checkpoint-5")
    assert os.path.isfile(os.path.join(checkpoint, QUEUE_FILE))
    resumed = DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer,
                                  args=_args(tmp_path, method="dr", max_steps=5), train_dataset=precomputed["text"])
    load_queue(checkpoint, resumed.queue, resumed.args.device)
    assert torch.equal(resumed.queue.keys(), trainer.queue.keys().cpu()) and resumed.queue.ptr == trainer.queue.ptr


def test_trained_student_round_trips(tokenizer, precomputed, tmp_path):
    student = tiny_student(tokenizer, 16)
    trainer = DistillationTrainer(model=student, processing_class=tokenizer, train_dataset=precomputed["text"],
                                  args=_args(tmp_path, method="fd", max_steps=3))
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    texts = ["a small red circle", "un grand carré bleu"]
    reloaded = MultilingualTextTower.from_pretrained(str(tmp_path / "final"))
    assert torch.allclose(reloaded.encode(texts, tokenizer), student.encode(texts, tokenizer), atol=1e-6)


def test_missing_column_is_reported(tokenizer, toy_dataset, tmp_path):
    with pytest.raises(MissingColumnError, match="teacher_text_embeds") as err:
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer,
                            args=_args(tmp_path), train_dataset=toy_dataset.remove_columns("image"))
    assert "Available columns" in str(err.value)
    with pytest.raises(MissingColumnError, match="'caption'"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, args=_args(tmp_path),
                            train_dataset=toy_dataset.rename_column("caption", "text"))


def test_dimension_mismatch_is_reported(tokenizer, teacher, toy_dataset, precomputed, tmp_path):
    with pytest.raises(ValueError, match="projection_dim=16"):
        DistillationTrainer(model=tiny_student(tokenizer, 24), processing_class=tokenizer, teacher=teacher,
                            args=_args(tmp_path), train_dataset=toy_dataset)
    with pytest.raises(ValueError, match="16-dim vectors but the student projects to 24 dims"):
        DistillationTrainer(model=tiny_student(tokenizer, 24), processing_class=tokenizer,
                            args=_args(tmp_path, method="fd", max_steps=1), train_dataset=precomputed["text"])


def test_nan_loss_stops_with_the_step(tokenizer, precomputed, tmp_path):
    data = precomputed["text"]
    bad = [[math.nan] * 16 if i == 20 else row for i, row in enumerate(data["teacher_text_embeds"])]
    data = data.remove_columns("teacher_text_embeds").add_column("teacher_text_embeds", bad)
    with pytest.raises(ValueError, match=r"row 20 of train_dataset: 'teacher_text_embeds' holds NaN"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, train_dataset=data,
                            args=_args(tmp_path, method="fd", max_steps=4))


def test_empty_caption_is_reported(tokenizer, precomputed, tmp_path):
    data = precomputed["text"].map(lambda r, i: {"caption": "  " if i == 3 else r["caption"]}, with_indices=True)
    with pytest.raises(ValueError, match="row 3 of train_dataset: 'caption' is empty or whitespace"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, train_dataset=data,
                            args=_args(tmp_path, method="fd", max_steps=2, dataloader_drop_last=False))


def test_precompute_dedups_and_is_cached(toy_dataset, teacher, tmp_path):
    calls = []
    original = teacher.encode_text

    def counting(texts, **kwargs):
        calls.append(len(texts))
        return original(texts, **kwargs)

    teacher.encode_text = counting
    try:
        path = str(tmp_path / "ds")
        toy_dataset.save_to_disk(path)
        on_disk = datasets.load_from_disk(path)
        first = precompute_teacher_embeddings(on_disk, teacher, batch_size=1000)
        assert sum(calls) == len(set(toy_dataset["english"])) < len(toy_dataset)
        second = precompute_teacher_embeddings(datasets.load_from_disk(path), teacher, batch_size=1000)
        assert sum(calls) == len(set(toy_dataset["english"]))  # second call came from the fingerprint cache
        assert second["teacher_text_embeds"] == first["teacher_text_embeds"]
    finally:
        teacher.encode_text = original
    row = first[0]
    assert torch.allclose(torch.tensor(row["teacher_text_embeds"]), teacher.encode_text([row["english"]])[0],
                          atol=1e-5)


def test_retrieval_is_logged_during_training(tokenizer, teacher, toy_dataset, precomputed, tmp_path):
    from mvld_hf.evaluation import MultilingualEvaluator

    evaluator = MultilingualEvaluator(toy_dataset, compute_purity=True, show_progress_bar=False)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=2), processing_class=tokenizer,
                                  train_dataset=precomputed["text"], teacher=teacher, retrieval_evaluator=evaluator,
                                  args=_args(tmp_path, method="mcl", eval_strategy="epoch", num_train_epochs=4))
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_t2i_R@1_mean" in e]
    assert len(evals) == 4  # one per epoch, without an eval_dataset
    assert {"eval_t2i_R@1_de", "eval_t2i_R@1_fr", "eval_t2i_R@1_en", "eval_i2t_MRR@10_mean",
            "eval_purity_mixed"} <= set(evals[-1])
    # the same numbers as evaluating the trained student directly
    direct = evaluator(lambda texts: trainer.model.encode(texts, tokenizer),
                       image_embeddings=trainer.retrieval_image_embeddings)["retrieval"]
    assert evals[-1]["eval_t2i_R@1_de"] == pytest.approx(direct["de"]["t2i_R@1"], abs=1e-4)
    assert all(0.0 <= v <= 1.0 for k, v in evals[-1].items() if k.startswith("eval_t2i"))


def test_any_evaluator_is_logged_through_one_path(tokenizer, precomputed, tmp_path):
    from mvld_hf.evaluation import Evaluator

    class CaptionCount(Evaluator):
        name, primary_metric = "count", "n"

        def __call__(self, encode_text, **kwargs):
            return self.prefix_name_to_metrics({"n": float(len(encode_text(["a", "b", "c"])))})

    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=2), processing_class=tokenizer,
                                  train_dataset=precomputed["text"], evaluators=[CaptionCount()],
                                  args=_args(tmp_path, method="fd", eval_strategy="epoch"))
    assert trainer.evaluate()["eval_count_n"] == 3.0
    assert trainer.args.eval_strategy == "epoch"  # restored after Trainer.__init__


@pytest.mark.parametrize("include_positive", [True, False])
def test_dr_scores_the_batch_before_enqueueing_its_anchors(tokenizer, precomputed, tmp_path, include_positive):
    """A row's own anchor must not also be one of the queue keys of its own step: the trainer computes the DR
    loss against the queue as it was *before* the step, then enqueues the step's anchors."""
    from mvld_hf.losses import distributional_replication

    data = precomputed["text"]
    args = _args(tmp_path, method="dr", queue_size=64, include_positive=include_positive)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=2), processing_class=tokenizer, args=args,
                                  train_dataset=data)
    model = trainer.model.train()
    earlier = torch.randn(BATCH, 16, generator=torch.Generator().manual_seed(0))
    for filled in (False, True):  # an empty queue (own anchor only, or the batch for CompRess) and a filled one
        if filled:
            trainer.queue.enqueue(earlier)
        keys_before = trainer.queue.keys().clone()
        batch = trainer.data_collator([data[i] for i in range(BATCH)])
        torch.manual_seed(1)
        trainer.compute_loss(model, batch)
        got = trainer._metrics["train"]["loss_dr"].pop()
        torch.manual_seed(1)  # the same dropout draw
        s, _ = trainer._student_embeddings(model, batch)
        t = batch["teacher_text_embeds"]
        keys = keys_before if len(keys_before) or include_positive else t
        want = distributional_replication(s, t, t, keys, args.teacher_temperature, args.student_temperature,
                                          include_positive)["loss"]
        assert torch.allclose(got, want.detach(), atol=1e-6), (filled, got, want)
        assert torch.equal(trainer.queue.keys()[len(keys_before):], t)  # enqueued after the loss


def test_translation_evaluator_is_logged_with_the_teacher_embedding_english_once(tokenizer, toy_rows, teacher,
                                                                                  precomputed, tmp_path):
    from mvld_hf.evaluation.translation import TranslationEvaluator

    evaluator = TranslationEvaluator([r for r in toy_rows if r["language"] != "en"], name="xl")
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=2), processing_class=tokenizer,
                                  train_dataset=precomputed["text"], evaluators=[evaluator], teacher=teacher,
                                  args=_args(tmp_path, method="mcl"))
    assert evaluator.teacher_embeddings is not None  # embedded once, when the trainer was built
    metrics = trainer.evaluate()
    assert {"eval_xl_s2t_acc_de", "eval_xl_t2s_acc_fr", "eval_xl_spread_mean"} <= set(metrics)
    with pytest.raises(ValueError, match="encode_teacher"):
        DistillationTrainer(model=tiny_student(tokenizer, 16, seed=2), processing_class=tokenizer,
                            train_dataset=precomputed["text"], args=_args(tmp_path, method="mcl"),
                            evaluators=[TranslationEvaluator([r for r in toy_rows if r["language"] != "en"])])
