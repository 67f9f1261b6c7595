"""A streamed dataset read by DataLoader workers: the teacher runs only in the training process, batched, and
gives the embeddings the materialised path gives."""

import os

import datasets
import numpy as np
import pytest
import torch

from mvld_hf import DistillationArguments, DistillationCollator, DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.testing import tiny_student

BATCH = 8


class PidLoggingTeacher:
    """The tiny teacher; every forward appends the id of the process it runs in to a file (workers are forked,
    so a list in memory would not see theirs)."""

    def __init__(self, teacher, log):
        self.teacher, self.log = teacher, log

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def encode_text(self, texts, **kwargs):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return self.teacher.encode_text(texts, **kwargs)


class PidLoggingCollator(DistillationCollator):
    def __init__(self, tokenizer, args, log):
        super().__init__(tokenizer, args)
        self.log = log

    def __call__(self, features):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return super().__call__(features)


class RecordingTrainer(DistillationTrainer):
    """Keeps the English captions of every step and the teacher embeddings the step used."""

    seen: list

    def _teacher_targets(self, inputs):
        t, a = super()._teacher_targets(inputs)
        self.seen.append((list(inputs["english_texts"]), t.detach().cpu()))
        return t, a


def pids(path) -> list[int]:
    with open(path) as handle:
        return [int(line) for line in handle]


def test_teacher_never_runs_in_a_dataloader_worker(toy_dataset, tokenizer, teacher, tmp_path):
    data = toy_dataset.remove_columns("image")
    materialised = precompute_teacher_embeddings(data, teacher)
    expected = dict(zip(materialised["english"], torch.tensor(materialised["teacher_text_embeds"])))
    teacher_log, collator_log = tmp_path / "teacher_pids", tmp_path / "collator_pids"
    stream = precompute_teacher_embeddings(data.to_iterable_dataset(num_shards=4),
                                           PidLoggingTeacher(teacher, teacher_log), cache_dir=str(tmp_path / "cache"))
    assert not teacher_log.exists()  # nothing embedded up front
    args = DistillationArguments(output_dir=str(tmp_path / "out"), method="dr+mcl", per_device_train_batch_size=BATCH,
                                 queue_size=16, max_steps=6, logging_steps=1, report_to=[], save_strategy="no",
                                 disable_tqdm=True, use_cpu=True, seed=0, dataloader_num_workers=2)
    trainer = RecordingTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=stream,
                               processing_class=tokenizer,
                               data_collator=PidLoggingCollator(tokenizer, args, collator_log))
    trainer.seen = []
    trainer.train()

    workers = set(pids(collator_log))
    assert len(workers) == 2 and os.getpid() not in workers  # the batches were read and tokenized in 2 workers
    assert set(pids(teacher_log)) == {os.getpid()}  # ... and embedded in this (the training) process only
    assert len(pids(teacher_log)) <= 6  # one batched teacher call per step at most (fewer once cached)
    assert len(trainer.seen) == 6
    for texts, used in trainer.seen:  # the step's embeddings are the materialised path's
        assert torch.allclose(used, torch.stack([expected[t] for t in texts]), atol=1e-6)
    assert 0 < len(stream.embedder.cache) <= len(expected)


def test_embedded_stream_refuses_to_run_the_teacher_in_a_worker(toy_dataset, teacher):
    stream = precompute_teacher_embeddings(toy_dataset.remove_columns("image").to_iterable_dataset(), teacher)
    assert len(next(iter(stream))["teacher_text_embeds"]) == 16  # read here: embedded here
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1)
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        next(iter(loader))
    with pytest.raises(AttributeError, match="before precompute_teacher_embeddings"):
        stream.shuffle(seed=0)


def test_image_anchor_stream_embeds_images_in_the_step(toy_dataset, tokenizer, teacher, tmp_path):
    data = toy_dataset.select(range(24))
    materialised = precompute_teacher_embeddings(data, teacher, anchor="image")
    stream = precompute_teacher_embeddings(datasets.Dataset.from_list(data.to_list()).to_iterable_dataset(),
                                           teacher, anchor="image")
    direct = list(stream)  # iterated here: both embedding columns, images decoded
    assert torch.allclose(torch.tensor(np.stack([r["teacher_image_embeds"] for r in direct])),
                          torch.tensor(materialised["teacher_image_embeds"]), atol=1e-5)
    args = DistillationArguments(output_dir=str(tmp_path / "out"), method="fd", anchor="image",
                                 per_device_train_batch_size=BATCH, max_steps=2, report_to=[], save_strategy="no",
                                 disable_tqdm=True, use_cpu=True, dataloader_num_workers=1)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=stream,
                                  processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2


def test_stream_set_up_every_rank_reads_its_own_shards(toy_dataset, tokenizer, teacher, tmp_path):
    data = toy_dataset.remove_columns("image")
    args = DistillationArguments(output_dir=str(tmp_path / "out"), method="fd", max_steps=1, report_to=[],
                                 use_cpu=True)
    train = precompute_teacher_embeddings(data.to_iterable_dataset(), teacher)
    evaluation = precompute_teacher_embeddings(data.select(range(8)).to_iterable_dataset(), teacher)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=train,
                                  eval_dataset=evaluation, processing_class=tokenizer)
    # raw captions cannot be dispatched from rank 0: each rank reads its own shards
    assert trainer.args.accelerator_config.dispatch_batches is False
    assert trainer.teacher_embedder is train.embedder and trainer.train_dataset is train.dataset
    other = PidLoggingTeacher(teacher, tmp_path / "unused")  # another teacher object
    with pytest.raises(ValueError, match="different teachers"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=train,
                            eval_dataset=precompute_teacher_embeddings(data.to_iterable_dataset(), other),
                            processing_class=tokenizer)
    args.accelerator_config.dispatch_batches = True
    with pytest.raises(ValueError, match="leave dispatch_batches unset"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=train,
                            processing_class=tokenizer)
