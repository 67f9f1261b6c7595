"""Streamed data (``datasets.IterableDataset``): trains without being materialised, teacher embeddings are computed
lazily in batches (optionally cached on disk) or joined from a precomputed-embedding dataset by id."""

import itertools
from functools import partial

import datasets
import numpy as np
import pytest
import torch

from mvld_hf import DistillationTrainer, MissingColumnError, precompute_teacher_embeddings
from mvld_hf.precompute import TeacherEmbeddingCache, join_precomputed_embeddings
from mvld_hf.testing import CountingTeacher, tiny_student
from tests.helpers import training_args

BATCH = 16


_args = partial(training_args, method="dr+mcl", per_device_train_batch_size=BATCH, queue_size=32, learning_rate=3e-3,
                max_steps=3, logging_steps=1)


@pytest.fixture
def text_rows(toy_rows):
    return [{k: r[k] for k in ("caption", "english", "language", "image_id")} for r in toy_rows]


def endless_stream(rows, pulled):
    """A 'huge' stream (a million rows) that records how many rows were read from it."""
    def generate():
        for i, row in enumerate(itertools.islice(itertools.cycle(rows), 1_000_000)):
            pulled.append(i)
            yield {**row, "id": i}
    return datasets.IterableDataset.from_generator(generate)


def test_stream_trains_lazily_without_materialising(text_rows, tokenizer, teacher, tmp_path):
    pulled, counting = [], CountingTeacher(teacher)
    stream = precompute_teacher_embeddings(endless_stream(text_rows, pulled), counting, batch_size=BATCH)
    assert pulled == [] and counting.texts == 0  # nothing is read or embedded before training asks
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=_args(tmp_path), train_dataset=stream,
                                  processing_class=tokenizer)
    trainer.train()
    losses = [e["loss_dr"] for e in trainer.state.log_history if "loss_dr" in e]
    assert len(losses) == 3 and len(trainer.queue) == 3 * BATCH - BATCH  # queue of 32 after 3 steps x 16
    assert len(pulled) <= 6 * BATCH, len(pulled)  # 3 batches plus read-ahead, out of a million rows
    assert 0 < counting.texts <= len(pulled)


def test_stream_without_max_steps_is_refused(text_rows, tokenizer, tmp_path):
    stream = datasets.Dataset.from_list(text_rows).to_iterable_dataset()
    with pytest.raises(ValueError, match="set max_steps"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), args=_args(tmp_path, max_steps=-1),
                            train_dataset=stream, processing_class=tokenizer)


def test_streamed_training_equals_materialised_training(toy_dataset, tokenizer, teacher, tmp_path):
    data = toy_dataset.remove_columns("image")
    runs = []
    for train_dataset, sampling in ((precompute_teacher_embeddings(data, teacher), "sequential"),
                                    (precompute_teacher_embeddings(data.to_iterable_dataset(), teacher), "random")):
        trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=7), train_dataset=train_dataset,
                                      args=_args(tmp_path, train_sampling_strategy=sampling),
                                      processing_class=tokenizer)
        trainer.train()
        runs.append([{k: v for k, v in e.items() if k.startswith("loss")} for e in trainer.state.log_history
                     if "loss" in e])
    assert len(runs[0]) == len(runs[1]) == 3
    for materialised, streamed in zip(*runs):
        assert materialised.keys() == streamed.keys()
        assert list(materialised.values()) == pytest.approx(list(streamed.values()), rel=1e-6)


def test_teacher_in_the_step_on_a_stream(text_rows, tokenizer, teacher, tmp_path):
    stream = datasets.Dataset.from_list(text_rows).to_iterable_dataset()
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=_args(tmp_path, max_steps=2),
                                  train_dataset=stream, processing_class=tokenizer, teacher=teacher)
    trainer.train()
    assert len(trainer.queue) == 2 * BATCH


def test_embedding_cache_embeds_each_text_once_across_passes(text_rows, teacher, tmp_path):
    counting = CountingTeacher(teacher)
    base = datasets.Dataset.from_list(text_rows).to_iterable_dataset()
    stream = precompute_teacher_embeddings(base, counting, batch_size=10, cache_dir=str(tmp_path / "cache"))
    first = torch.tensor(np.stack([row["teacher_text_embeds"] for row in stream]))
    unique = len({r["english"] for r in text_rows})
    assert counting.texts == unique < len(text_rows)
    second = torch.tensor(np.stack([row["teacher_text_embeds"] for row in stream]))  # 2nd epoch: all from disk
    assert counting.texts == unique and torch.equal(second, first)
    rerun = precompute_teacher_embeddings(base, counting, batch_size=7, cache_dir=str(tmp_path / "cache"))
    assert torch.equal(torch.tensor(np.stack([row["teacher_text_embeds"] for row in rerun])), first)
    assert counting.texts == unique  # a later run with other map batches: still all from disk
    expected = teacher.encode_text([r["english"] for r in text_rows[:5]])
    assert torch.allclose(first[:5], expected, atol=1e-6)
    # another teacher (other weights) never reads these entries
    other = TeacherEmbeddingCache(str(tmp_path / "cache"), "another-teacher")
    assert other.get([text_rows[0]["english"]]) == {}


def test_join_precomputed_embeddings_by_id(text_rows, tokenizer, teacher, tmp_path):
    english = sorted({r["english"] for r in text_rows})
    table = datasets.Dataset.from_dict({"image_id": [r for r in sorted({r["image_id"] for r in text_rows})]})
    by_id = {r["image_id"]: r["english"] for r in text_rows}
    embeddings = table.add_column("teacher_text_embeds",
                                  teacher.encode_text([by_id[i] for i in table["image_id"]]).tolist())
    pulled = []
    stream = join_precomputed_embeddings(endless_stream(text_rows, pulled), embeddings, "image_id")
    rows = list(itertools.islice(stream, 5))
    want = teacher.encode_text([r["english"] for r in rows])
    assert torch.allclose(torch.tensor(np.stack([r["teacher_text_embeds"] for r in rows])).float(), want, atol=1e-6)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=_args(tmp_path, max_steps=2),
                                  train_dataset=stream, processing_class=tokenizer)
    trainer.train()
    assert len(english) < len(text_rows) and len(trainer.queue) == 2 * BATCH

    # published embeddings usually name their column otherwise: pick it and rename it to what the trainer reads
    published = embeddings.rename_columns({"image_id": "id", "teacher_text_embeds": "embedding"})
    renamed = join_precomputed_embeddings(endless_stream(text_rows, []), published, id_column="image_id",
                                          embeddings_id_column="id", embedding_column="embedding",
                                          output_column="teacher_text_embeds")
    row = next(iter(renamed))
    assert "embedding" not in row and torch.allclose(torch.tensor(row["teacher_text_embeds"]).float(), want[0],
                                                     atol=1e-6)

    with pytest.raises(KeyError, match="has no row in the embeddings dataset"):
        list(itertools.islice(join_precomputed_embeddings(endless_stream(text_rows, []), embeddings.select(range(3)),
                                                          "image_id"), 40))
    with pytest.raises(ValueError, match="appears twice"):
        join_precomputed_embeddings(stream, datasets.concatenate_datasets([embeddings, embeddings]), "image_id")
    with pytest.raises(MissingColumnError, match="'photo_id'"):
        join_precomputed_embeddings(stream, embeddings, "photo_id")


def test_stream_missing_a_column_is_reported_at_the_first_batch(text_rows, tokenizer, teacher, tmp_path):
    rows = [{"text": r["caption"], "english": r["english"]} for r in text_rows]
    stream = datasets.IterableDataset.from_generator(lambda: iter(rows))  # columns unknown until read
    stream = precompute_teacher_embeddings(stream, teacher)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=_args(tmp_path, max_steps=1),
                                  train_dataset=stream, processing_class=tokenizer)
    with pytest.raises(MissingColumnError, match="'caption'.*Available columns"):
        trainer.train()
