"""Bad inputs: each case fails (or warns) with a message that says what is wrong and what to do, before anything
is lost: no update is applied with bad data and earlier checkpoints stay loadable.

Checkpoint damage (truncated weights/queue, missing trainer state, interrupted saves) and resuming with another
method/queue are in ``tests/test_resume.py``; streams without ``max_steps`` in ``tests/test_precompute.py``.
"""

import io
import logging
import math
import os
import re
from functools import partial

import datasets
import pytest
import torch
from transformers import BertConfig, BertModel, TrainingArguments

from mvld_hf import (
    DistillationArguments,
    DistillationTrainer,
    DualEncoderTeacher,
    MissingColumnError,
    MultilingualTextTower,
    NonFiniteLossError,
    TeacherCapabilityError,
    precompute_teacher_embeddings,
)
from mvld_hf.checkpointing import IncompleteCheckpointError, verify_checkpoint
from mvld_hf.data import NonFiniteEmbeddingError
from mvld_hf.distillation_trainer import NonFiniteGradientError
from mvld_hf.losses.registry import PAPER_METHODS
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

BATCH = 16


_args = partial(training_args, method="fd", per_device_train_batch_size=BATCH, queue_size=64, learning_rate=3e-3,
                max_steps=2, logging_steps=1)


@pytest.fixture(scope="module")
def data(toy_dataset, teacher):
    return precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)


def _trainer(tokenizer, tmp_path, train_dataset, student=None, **kwargs):
    teacher = kwargs.pop("teacher", None)
    return DistillationTrainer(model=student or tiny_student(tokenizer, 16), processing_class=tokenizer,
                               train_dataset=train_dataset, teacher=teacher, args=_args(tmp_path, **kwargs))


def _unchanged(student, before) -> bool:
    return all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def _replace(dataset, column, function):
    values = [function(i, v) for i, v in enumerate(dataset[column])]
    return dataset.remove_columns(column).add_column(column, values)


# ------------------------------------------------------------------------------------------------ columns
def test_misnamed_caption_column(tokenizer, data, tmp_path):
    with pytest.raises(MissingColumnError, match=r"missing column\(s\) 'caption'.*Available columns.*'text'.*"
                                                 r"rename_column or set the \*_column arguments"):
        _trainer(tokenizer, tmp_path, data.rename_column("caption", "text"))


def test_misnamed_teacher_embedding_column(tokenizer, data, tmp_path):
    with pytest.raises(MissingColumnError, match=r"'teacher_text_embeds' \(precomputed teacher text embeddings "
                                                 r"\(or pass teacher=\.\.\.\)\).*'clip_embeds'"):
        _trainer(tokenizer, tmp_path, data.rename_column("teacher_text_embeds", "clip_embeds"))
    # the message's advice works
    _trainer(tokenizer, tmp_path, data.rename_column("teacher_text_embeds", "clip_embeds"),
             teacher_text_column="clip_embeds").train()


def test_ed_needs_the_english_column(tokenizer, data, tmp_path):
    with pytest.raises(MissingColumnError, match="'english' \\(the English caption ED also distils\\)"):
        _trainer(tokenizer, tmp_path, data.remove_columns("english"), method="ed")


def test_eval_dataset_missing_a_column_is_named(tokenizer, data, tmp_path):
    with pytest.raises(MissingColumnError, match="eval_dataset is missing column"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, train_dataset=data,
                            eval_dataset=data.remove_columns("caption"), args=_args(tmp_path))


def test_empty_dataset(tokenizer, data, tmp_path):
    with pytest.raises(ValueError, match="train_dataset is empty"):
        _trainer(tokenizer, tmp_path, data.select([]))


# ----------------------------------------------------------------------------------------------- captions
@pytest.mark.parametrize("bad,error,message", [
    ("", ValueError, r"row 5 of train_dataset: 'caption' is empty or whitespace only .*\(''\); drop or fix such "
                     "rows"),
    (" \t\n", ValueError, r"row 5 of train_dataset: 'caption' is empty or whitespace only"),
    ("\u200b\u200c\u200d\ufeff", ValueError, r"row 5 of train_dataset: 'caption' is empty or whitespace only \(it "
                                         r"has no visible character: zero-width"),
    ("\u3000\x00\u2060", ValueError, r"row 5 of train_dataset: 'caption' is empty or whitespace only"),
    (None, TypeError, r"row 5 of train_dataset: 'caption' is None, expected a string"),
])
def test_bad_caption_is_named_by_its_dataset_row_before_training(tokenizer, data, tmp_path, bad, error, message):
    """Checked once over the whole column when the trainer is built (random sampling would otherwise meet the
    row at some later step and name its position in the batch)."""
    rows = _replace(data, "caption", lambda i, v: bad if i == 5 else v)
    with pytest.raises(error, match=message):
        _trainer(tokenizer, tmp_path, rows)


def test_bad_english_caption_is_named_when_the_teacher_or_ed_reads_it(tokenizer, teacher, data, tmp_path):
    rows = _replace(data, "english", lambda i, v: "  " if i == 9 else v)
    with pytest.raises(ValueError, match=r"row 9 of train_dataset: 'english' is empty"):
        _trainer(tokenizer, tmp_path, rows, method="ed")
    with pytest.raises(ValueError, match=r"row 9 of train_dataset: 'english' is empty"):
        _trainer(tokenizer, tmp_path, rows.remove_columns("teacher_text_embeds"), teacher=teacher)
    _trainer(tokenizer, tmp_path, rows)  # FD on precomputed embeddings never reads it


def test_non_string_caption_column(tokenizer, data, tmp_path):
    rows = _replace(data, "caption", lambda i, v: i)  # an int column
    with pytest.raises(TypeError, match=r"row 0 of train_dataset: 'caption' is a int \(0\); the column holds int64 "
                                        r"values, expected strings"):
        _trainer(tokenizer, tmp_path, rows)


def test_bad_caption_in_a_stream_stops_before_any_update(tokenizer, data, tmp_path):
    rows = _replace(data, "caption", lambda i, v: None if i == 5 else v)
    student = tiny_student(tokenizer, 16)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset(), student=student)
    with pytest.raises(TypeError, match=r"caption\[5\] is a NoneType, expected a string"):
        trainer.train()
    assert _unchanged(student, before)


def test_long_captions_are_truncated_with_a_warning(tokenizer, data, tmp_path, caplog):
    rows = _replace(data, "caption", lambda i, v: " ".join([v] * 30) if i % 3 == 0 else v)
    trainer = _trainer(tokenizer, tmp_path, rows, max_length=16)
    with caplog.at_level(logging.WARNING, logger="mvld_hf.data"):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "longer than max_length=16" in r.getMessage()]
    assert len(warnings) == 1 and "truncated" in warnings[0] and "training proceeds" in warnings[0]
    assert len([e for e in trainer.state.log_history if "loss" in e]) == 2


def test_max_length_beyond_the_position_table_is_capped_everywhere(tokenizer, teacher, data, tmp_path, caplog):
    """max_length=128 with a student whose position table holds 20 positions (19 tokens after XLM-R's padding
    offset): training, encode, the paired processor and the export all truncate to 19 instead of crashing."""
    from mvld_hf.encode import effective_max_length, position_limit
    from mvld_hf.export import export_sentence_transformer
    from mvld_hf.processing_paired import MultilingualCLIPProcessor

    rows = _replace(data, "caption", lambda i, v: " ".join([v] * 12))  # ~60+ tokens each
    student = tiny_student(tokenizer, 16, max_positions=20)
    assert position_limit(student) == 19 and effective_max_length(student, 128) == 19
    trainer = _trainer(tokenizer, tmp_path, rows, student=student, max_length=128)
    with caplog.at_level(logging.INFO, logger="mvld_hf"):
        trainer.train()
    stated = [r.getMessage() for r in caplog.records if "position table" in r.getMessage()]
    assert stated == [("max_length=128 is more than the student's position table holds (19 tokens): captions are "
                       "truncated to 19 tokens")]
    long_text = rows[0]["caption"]
    assert student.encode([long_text], tokenizer, max_length=128).shape == (1, 16)
    processor = MultilingualCLIPProcessor.from_teacher_and_student_tokenizer(teacher, tokenizer, student=student)
    assert processor(text=[long_text], padding=True, return_tensors="pt")["input_ids"].shape[1] == 19
    assert tokenizer.model_max_length != 19  # the caller's tokenizer is left alone
    result = export_sentence_transformer(student, tokenizer, output_dir=str(tmp_path / "st"), include_images=False,
                                         max_seq_length=128, write_card=False)
    assert result.max_seq_length == 19


# -------------------------------------------------------------------------------------- teacher / student
def test_teacher_student_dimension_mismatch(tokenizer, teacher, toy_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"student projects to 24 dims but teacher 'tiny-random-clip' embeds in 16: "
                                         r"build the student with projection_dim=16"):
        _trainer(tokenizer, tmp_path, toy_dataset, student=tiny_student(tokenizer, 24), teacher=teacher)


def test_precomputed_embeddings_of_the_wrong_dimension(tokenizer, data, tmp_path):
    rows = _replace(data, "teacher_text_embeds", lambda i, v: v[:8])
    with pytest.raises(ValueError, match="'teacher_text_embeds' holds 8-dim vectors but the student projects to "
                                         "16 dims: they were computed by another teacher"):
        _trainer(tokenizer, tmp_path, rows)


def test_ragged_embeddings_in_a_stream(tokenizer, data, tmp_path):
    rows = _replace(data, "teacher_text_embeds", lambda i, v: v[:8] if i == 3 else v)
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset())
    with pytest.raises(ValueError, match="rows of 'teacher_text_embeds' are not vectors of one length"):
        trainer.train()


def test_image_anchor_with_a_text_only_teacher(tokenizer, teacher, toy_dataset, tmp_path):
    text_only = DualEncoderTeacher(teacher.model, teacher.tokenizer, image_processor=None, name_or_path="text-only")
    with pytest.raises(TeacherCapabilityError, match="'text-only' is text-only.*use anchor='text'"):
        _trainer(tokenizer, tmp_path, toy_dataset, teacher=text_only, anchor="image")
    with pytest.raises(TeacherCapabilityError, match="text-only"):
        precompute_teacher_embeddings(toy_dataset, text_only, anchor="image")


# ------------------------------------------------------------------------------------------ method string
@pytest.mark.parametrize("method,message", [
    ("xd", f"unknown method 'xd' in 'xd'; choose from {', '.join(PAPER_METHODS)}"),
    ("dr:abc", "weight 'abc' of 'dr' in 'dr:abc' is not a number"),
    ("dr:-1", "must be a positive finite number"),
    ("dr:inf", "must be a positive finite number"),
    ("dr::1,fd", "malformed term 'dr::1'"),
    ("dr+dr", "method 'dr' appears twice"),
    ("", "method must be a non-empty string"),
])
def test_bad_method_string(tmp_path, method, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _args(tmp_path, method=method)


@pytest.mark.parametrize("kwargs,message", [
    (dict(anchor="audio"), "anchor must be one of"),
    (dict(method="sd", teacher_temperature=0), "teacher_temperature must be a positive number"),
    (dict(max_length=0), "max_length must be positive"),
])
def test_other_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, **kwargs)


def test_plain_training_arguments_or_no_tokenizer(tokenizer, data, tmp_path):
    with pytest.raises(TypeError, match="args must be DistillationArguments, got TrainingArguments"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, train_dataset=data,
                            args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    with pytest.raises(ValueError, match="pass the student's tokenizer as processing_class"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), train_dataset=data, args=_args(tmp_path))


# ------------------------------------------------------------------------------------------------- queue
@pytest.mark.parametrize("queue_size,message", [
    (8, r"queue_size \(8\) must be a positive multiple of the batch size \(16 per device"),
    (24, r"queue_size \(24\) must be a positive multiple of the batch size"),
])
def test_queue_smaller_than_or_not_a_multiple_of_the_batch(tmp_path, queue_size, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, method="dr", queue_size=queue_size)


def test_queue_not_a_multiple_of_the_global_batch(tokenizer, data, tmp_path, monkeypatch):
    args = _args(tmp_path, method="dr", queue_size=64)
    monkeypatch.setattr(DistillationArguments, "world_size", property(lambda self: 3))  # as if 3 processes
    with pytest.raises(ValueError, match=r"queue_size \(64\) must be a multiple of the global batch size "
                                         r"\(16 x 3 processes = 48\)"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, train_dataset=data,
                            args=args)


# ------------------------------------------------------------------------------------------------- images
@pytest.fixture(scope="module")
def image_rows(toy_rows):
    rows = []
    for i, row in enumerate(toy_rows[:24]):
        buffer = io.BytesIO()
        row["image"].save(buffer, format="PNG")
        data = buffer.getvalue()
        rows.append({"caption": row["caption"], "english": row["english"],
                     "image": {"bytes": data[:40] if i == 7 else data, "path": None}})
    return datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())


def test_corrupt_image_bytes_when_precomputing(image_rows, teacher):
    with pytest.raises(ValueError, match=r"the image of row 7 \('image'\) could not be decoded.*drop or re-encode"):
        precompute_teacher_embeddings(image_rows, teacher, anchor="image", batch_size=10)
    good = precompute_teacher_embeddings(image_rows.select([i for i in range(24) if i != 7]), teacher,
                                         anchor="image")
    assert good.features["image"].decode and len(good[0]["teacher_image_embeds"]) == 16  # images decode as before


def test_corrupt_image_bytes_in_the_step(image_rows, tokenizer, teacher, tmp_path):
    student = tiny_student(tokenizer, 16)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = _trainer(tokenizer, tmp_path, image_rows, student=student, teacher=teacher, anchor="image",
                       per_device_train_batch_size=8, train_sampling_strategy="sequential")
    caption = image_rows.cast_column("image", datasets.Image(decode=False))[7]["caption"]
    with pytest.raises(ValueError, match=f"the image of the row captioned '{caption}' could not be decoded"):
        trainer.train()
    assert _unchanged(student, before)


# ---------------------------------------------------------------------------------------------- NaN / inf
def _finite(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def _assert_stopped_at_step_4_keeping_checkpoint_2(trainer, student):
    """The update of step 4 was never applied, no checkpoint-4 was written and checkpoint-2 is intact and finite
    (a stream fails while its loader prefetches the bad batch, one step earlier)."""
    assert trainer.state.global_step in (2, 3) and _finite(student)
    assert not os.path.exists(os.path.join(trainer.args.output_dir, "checkpoint-4"))
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    assert verify_checkpoint(checkpoint)["metadata"]["finite_weights"] is True
    assert _finite(MultilingualTextTower.from_pretrained(checkpoint))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("method", ["fd", "dr"])
def test_non_finite_precomputed_embedding_is_named_before_training(tokenizer, data, tmp_path, bad, method):
    rows = _replace(data, "teacher_text_embeds", lambda i, v: [bad] * 16 if i == 50 else v)
    with pytest.raises(NonFiniteEmbeddingError, match=r"row 50 of train_dataset: 'teacher_text_embeds' holds NaN or "
                                                      r"infinite values .*Drop that row or recompute"):
        _trainer(tokenizer, tmp_path, rows, method=method)


def test_non_finite_embedding_in_a_stream_stops_before_any_update(tokenizer, data, tmp_path):
    """DR on a stream: the bad row (read at step 4) is refused by the collator, naming the row's caption; before
    this check the step's loss was finite and its NaN gradient silently wiped every weight."""
    bad_row = 3 * BATCH + 2
    rows = _replace(data, "teacher_text_embeds", lambda i, v: [math.nan] * 16 if i == bad_row else v)
    student = tiny_student(tokenizer, 16)
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset(), student=student, method="dr", max_steps=6,
                       save_strategy="steps", save_steps=2)
    caption = rows[bad_row]["caption"]
    with pytest.raises(NonFiniteEmbeddingError, match=rf"the row captioned '{caption}' \(position 2 of its batch\): "
                                                      r"'teacher_text_embeds' holds NaN"):
        trainer.train()
    _assert_stopped_at_step_4_keeping_checkpoint_2(trainer, student)


def test_non_finite_teacher_output_in_the_step(tokenizer, teacher, data, tmp_path, monkeypatch):
    encode_text, seen = teacher.encode_text, []

    def broken(texts, **kwargs):  # the teacher overflows on the third caption of step 4
        out = encode_text(texts, **kwargs)
        if trainer.state.global_step == 3:
            seen.append(texts[2])
            out[2] = math.nan
        return out

    def broken_tokens(tokens, **kwargs):  # the step's route when the collator tokenized the teacher's captions
        out = encode_tokenized(tokens, **kwargs)
        if trainer.state.global_step == 3:
            seen.append(tokens)  # the batch's distinct captions in order of appearance, as in broken()
            out[2] = math.nan
        return out

    monkeypatch.setattr(teacher, "encode_text", broken)
    encode_tokenized = getattr(teacher, "encode_tokenized", None)
    if encode_tokenized is not None:
        monkeypatch.setattr(teacher, "encode_tokenized", broken_tokens)
    student = tiny_student(tokenizer, 16)
    trainer = _trainer(tokenizer, tmp_path, data.remove_columns("teacher_text_embeds"), student=student,
                       teacher=teacher, method="dr", max_steps=6, save_strategy="steps", save_steps=2)
    with pytest.raises(NonFiniteEmbeddingError) as error:
        trainer.train()
    named = re.match(r"the teacher's embedding of the English caption '([^']+)' at step 4 holds NaN or infinite "
                     r"values", str(error.value))
    assert named, str(error.value)
    if isinstance(seen[0], str):
        assert named.group(1) == seen[0]
    else:  # the named caption is the one whose tokens the teacher overflowed on
        tokens, mine = seen[0], teacher.text_tokenizer()([named.group(1)])
        row = tokens["input_ids"][2][tokens["attention_mask"][2].bool()]
        assert row.tolist() == mine["input_ids"][0][mine["attention_mask"][0].bool()].tolist()
    _assert_stopped_at_step_4_keeping_checkpoint_2(trainer, student)


def test_non_finite_gradient_stops_before_the_optimizer_step(tokenizer, data, tmp_path):
    """A finite loss whose gradient is NaN (injected at step 4) is stopped before the weights change."""
    student = tiny_student(tokenizer, 16)
    trainer = _trainer(tokenizer, tmp_path, data, student=student, method="dr", max_steps=6, save_strategy="steps",
                       save_steps=2)
    student.projection.weight.register_hook(
        lambda grad: grad * math.nan if trainer.state.global_step == 3 else grad)
    with pytest.raises(NonFiniteGradientError, match=r"the gradient is non-finite \(norm nan\) at step 4 although "
                                                     r"the loss was finite; stopping before the optimizer applies it.*"
                                                     r"The last complete checkpoint, .*checkpoint-2, is intact"):
        trainer.train()
    _assert_stopped_at_step_4_keeping_checkpoint_2(trainer, student)


def test_non_finite_weights_are_never_checkpointed(tokenizer, data, tmp_path):
    from transformers import TrainerCallback

    class Corrupt(TrainerCallback):  # weights going bad by any route (here: directly, after step 4)
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 4:  # after the update, before the save
                with torch.no_grad():
                    model.projection.bias[0] = math.inf

    trainer = _trainer(tokenizer, tmp_path, data, max_steps=6, save_strategy="steps", save_steps=2)
    trainer.add_callback(Corrupt())
    with pytest.raises(NonFiniteGradientError, match=r"weights hold NaN/inf at step 4; this checkpoint is not "
                                                     r"written.*checkpoint-2, is intact"):
        trainer.train()
    assert sorted(os.listdir(trainer.args.output_dir)) == ["checkpoint-2"]


def _nan_for(teacher, monkeypatch, bad_text):
    encode_text = teacher.encode_text

    def broken(texts, **kwargs):
        out = encode_text(texts, **kwargs)
        out[[i for i, t in enumerate(texts) if t == bad_text]] = math.nan
        return out

    monkeypatch.setattr(teacher, "encode_text", broken)


@pytest.mark.parametrize("streamed", [False, True])
def test_non_finite_teacher_output_when_precomputing(toy_dataset, teacher, tmp_path, monkeypatch, streamed):
    rows = toy_dataset.remove_columns("image")
    bad_row = min(i for i, e in enumerate(rows["english"]) if e == rows[30]["english"])
    _nan_for(teacher, monkeypatch, rows[30]["english"])
    source = rows.to_iterable_dataset() if streamed else rows
    with pytest.raises(NonFiniteEmbeddingError, match=rf"row {bad_row} of the dataset \(the teacher's embedding of "
                                                      rf"its 'english' '{rows[30]['english']}'\): "
                                                      r"'teacher_text_embeds' holds NaN"):
        out = precompute_teacher_embeddings(source, teacher, batch_size=10, cache_dir=str(tmp_path / "cache"))
        list(out)  # a stream is embedded as it is read
    from mvld_hf.precompute import TeacherEmbeddingCache

    cached = TeacherEmbeddingCache(str(tmp_path / "cache"), "x").connection.execute(
        "SELECT COUNT(*) FROM embeddings").fetchone()[0]
    assert cached < len(set(rows["english"]))  # the bad embedding (and its batch) never reached the cache


def test_embedding_cache_refuses_and_reports_non_finite_values(tmp_path):
    from mvld_hf.precompute import TeacherEmbeddingCache

    cache = TeacherEmbeddingCache(str(tmp_path / "cache.sqlite"), "teacher")
    with pytest.raises(NonFiniteEmbeddingError, match=r"the text 'a red circle': 'teacher embedding' holds NaN.*It is "
                                                      r"not cached"):
        cache.put({"a blue square": [0.5, 1.0], "a red circle": [math.inf, 1.0]})
    assert cache.get(["a blue square", "a red circle"]) == {}
    with cache.connection:  # a cache written by an older version, or damaged
        cache.connection.execute("INSERT INTO embeddings VALUES (?, ?, ?)",
                                 (cache.key("a red circle"), 2, torch.tensor([math.nan, 1.0]).numpy().tobytes()))
    with pytest.raises(NonFiniteEmbeddingError, match=r"cache .*cache.sqlite holds NaN/inf for 'a red circle': delete "
                                                      r"that file"):
        cache.get(["a red circle"])


def test_joined_embeddings_with_a_non_finite_row(tmp_path):
    from mvld_hf.precompute import join_precomputed_embeddings

    embeddings = datasets.Dataset.from_dict({"id": ["a", "b", "c"],
                                             "embedding": [[1.0, 0.0], [0.0, math.nan], [1.0, 1.0]]})
    stream = datasets.Dataset.from_dict({"id": ["c", "a", "b"], "caption": ["x", "y", "z"]}).to_iterable_dataset()
    joined = join_precomputed_embeddings(stream, embeddings, "id", embedding_column="embedding",
                                         output_column="teacher_text_embeds")
    with pytest.raises(NonFiniteEmbeddingError, match=r"id 'b' \(row 1 of the embeddings dataset\): 'embedding' "
                                                      r"holds NaN or infinite values"):
        list(joined)


def test_verify_checkpoint_refuses_non_finite_or_unchecked_weights(tokenizer, data, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    trainer = _trainer(tokenizer, tmp_path, data, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    manifest_path = os.path.join(checkpoint, "mvld_checkpoint.json")
    manifest = json.loads(open(manifest_path).read())
    assert manifest["metadata"]["finite_weights"] is True
    del manifest["metadata"]["finite_weights"]
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    with pytest.raises(IncompleteCheckpointError, match=r"records no check that its weights are finite"):
        verify_checkpoint(checkpoint)
    manifest["metadata"]["finite_weights"] = True
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    weights = os.path.join(checkpoint, "model.safetensors")
    tensors = load_file(weights)
    tensors["projection.bias"][3] = math.nan  # same size on disk: only the values went bad
    save_file(tensors, weights, metadata={"format": "pt"})
    assert os.path.getsize(weights) == manifest["files"]["model.safetensors"]
    with pytest.raises(IncompleteCheckpointError, match=r"model\.safetensors has other content than was written"):
        verify_checkpoint(checkpoint)  # the content hash sees the edit
    from mvld_hf.checkpointing import file_sha256

    manifest["sha256"]["model.safetensors"] = file_sha256(weights)  # as if saved so: the NaN scan still sees it
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    with pytest.raises(IncompleteCheckpointError, match=r"holds NaN/inf weights \(projection.bias\): resume from an "
                                                        r"earlier checkpoint"):
        verify_checkpoint(checkpoint)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tokenizer, data, tmp_path, bad,
                                                                             monkeypatch):
    student = tiny_student(tokenizer, 16)
    trainer = _trainer(tokenizer, tmp_path, data, student=student, max_steps=6, save_strategy="steps", save_steps=2,
                       train_sampling_strategy="sequential")
    targets = trainer._teacher_targets

    def bad_at_step_4(inputs):  # anchors going bad past every input check
        t, a = targets(inputs)
        return (t, a * bad) if trainer.state.global_step == 3 else (t, a)

    monkeypatch.setattr(trainer, "_teacher_targets", bad_at_step_4)
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    with pytest.raises(NonFiniteLossError, match=rf"loss is (nan|inf) at step 4 \(training.*The last complete "
                                                 rf"checkpoint, {checkpoint}, is intact"):
        trainer.train()
    _assert_stopped_at_step_4_keeping_checkpoint_2(trainer, student)
    # and training resumes from it
    fixed = _trainer(tokenizer, tmp_path, data, max_steps=3, save_strategy="steps", save_steps=2,
                     train_sampling_strategy="sequential")
    fixed.train(resume_from_checkpoint=checkpoint)
    assert fixed.state.global_step == 3


# ---------------------------------------------------------------------------------- evaluation and export
def test_evaluation_language_absent_from_the_data(toy_dataset):
    from mvld_hf.evaluation.evaluator import MultilingualEvaluator

    with pytest.raises(ValueError, match=r"language\(s\) \['sw'\] not in the dataset; available languages: "
                                         r"\['de', 'en', 'fr'\]"):
        MultilingualEvaluator(toy_dataset, languages=["de", "sw"])


def test_export_refuses_a_checkpoint_that_is_not_an_mvld_student(tmp_path):
    from mvld_hf.export import NotAStudentError, export_sentence_transformer

    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16)
    BertModel(config).save_pretrained(tmp_path / "bert")
    with pytest.raises(NotAStudentError, match="is not an mvld_hf student: its config.json has model_type 'bert'"):
        export_sentence_transformer(str(tmp_path / "bert"), output_dir=str(tmp_path / "export"))
    assert not os.path.exists(tmp_path / "export")


# ------------------------------------------------------------------------------------ processes and re-runs
def test_processes_that_are_not_one_distributed_run(tokenizer, data, tmp_path, monkeypatch):
    args = _args(tmp_path)  # one process's arguments (no process group)
    monkeypatch.setenv("WORLD_SIZE", "2")  # ... but a launcher started two
    with pytest.raises(RuntimeError, match=r"2 processes were launched \(WORLD_SIZE=2\) but they do not form one "
                                           r"distributed run .*each would train alone.*--use_cpu true"):
        DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, train_dataset=data,
                            args=args)


def test_rerun_into_an_output_dir_with_checkpoints(tokenizer, data, tmp_path):
    from mvld_hf.checkpointing import ExistingRunError

    first = _trainer(tokenizer, tmp_path, data, max_steps=2, save_strategy="steps", save_steps=2)
    first.train()
    checkpoint = os.path.join(first.args.output_dir, "checkpoint-2")
    saved = {name: os.path.getmtime(os.path.join(checkpoint, name)) for name in os.listdir(checkpoint)}
    again = _trainer(tokenizer, tmp_path, data, max_steps=1, save_strategy="steps", save_steps=1)
    with pytest.raises(ExistingRunError, match=r"holds an earlier run \(checkpoint-2\); a new run there would delete "
                                               r"its checkpoints.*--resume_from_checkpoint true.*a new --output_dir"
                                               r".*--overwrite_output_dir true"):
        again.train()
    assert again.state.global_step == 0
    assert {name: os.path.getmtime(os.path.join(checkpoint, name)) for name in os.listdir(checkpoint)} == saved
    _trainer(tokenizer, tmp_path, data, max_steps=3, save_strategy="steps", save_steps=3).train(
        resume_from_checkpoint=True)  # resuming is allowed
    overwrite = _trainer(tokenizer, tmp_path, data, max_steps=1, save_strategy="steps", save_steps=1,
                         overwrite_output_dir=True)
    overwrite.train()  # starts over: the earlier run's checkpoints are gone, so they cannot mix with this run's
    assert sorted(os.listdir(overwrite.args.output_dir)) == ["checkpoint-1"]


# ------------------------------------------------------------------------------- no content, no negatives
def test_one_definition_of_an_empty_caption():
    """The collator, the encoders and the evaluator (is_blank_text) and the dataset check (its RE2 pattern) agree
    on every character of the Basic Multilingual Plane (surrogates aside)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mvld_hf.data_utils import BLANK_TEXT_PATTERN, is_blank_text
    from mvld_hf.encode import check_texts

    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    by_arrow = pc.match_substring_regex(pa.array(chars), BLANK_TEXT_PATTERN).to_pylist()
    assert [c for c, blank in zip(chars, by_arrow) if blank != is_blank_text(c)] == []
    for blank in ("\u200b\u200c\u200d\ufeff", "\u00a0\u2028", "\u3164", "\ufe0f", ""):
        assert is_blank_text(blank)
        with pytest.raises(ValueError, match="no visible character"):
            check_texts(["ok", blank], "captions")
    for text in ("a\u200b", "\u200b猫", "٣", "\u0e01"):
        assert not is_blank_text(text)


def test_evaluator_refuses_a_caption_without_visible_characters():
    from PIL import Image

    from mvld_hf.evaluation import MultilingualEvaluator

    rows = datasets.Dataset.from_dict({"image": [Image.new("RGB", (4, 4))] * 2, "image_id": [0, 1],
                                       "caption": ["red", "\u200b\ufeff"], "language": ["en", "en"]})
    with pytest.raises(ValueError, match=r"row 1 holds an empty caption \('\\u200b\\ufeff' is empty or whitespace"):
        MultilingualEvaluator(rows, compute_purity=False)


@pytest.mark.parametrize("max_length", [1, 2])
def test_max_length_without_room_for_content(tokenizer, data, tmp_path, max_length):
    special = tokenizer.num_special_tokens_to_add(pair=False)
    assert special == 2  # <s> and </s>: max_length 1 or 2 would cut every caption to them
    with pytest.raises(ValueError, match=rf"max_length={max_length} leaves no room for a caption: the tokenizer "
                                         rf"adds 2 special token\(s\).*set max_length to 3 or more"):
        _trainer(tokenizer, tmp_path, data, max_length=max_length)
    _trainer(tokenizer, tmp_path, data.select(range(4)), max_length=3)


@pytest.mark.parametrize("method", ["dr", "mcl", "sd", "dr+fd"])
def test_one_row_dataset_without_negatives_is_refused(tokenizer, data, tmp_path, method):
    one = data.select([7])
    with pytest.raises(ValueError, match=rf"train_dataset has a single row, but method='{re.escape(method)}' needs "
                                         r"at least two rows with different anchors: (MCL|SD|DR) .*method='fd'"):
        _trainer(tokenizer, tmp_path, one, method=method, per_device_train_batch_size=2, queue_size=4)
    _trainer(tokenizer, tmp_path, one, method="fd")  # each caption to its own anchor: one row is enough


def test_dataset_whose_rows_share_one_anchor_is_refused(tokenizer, teacher, data, tmp_path):
    same = _replace(data, "teacher_text_embeds", lambda i, v: data[0]["teacher_text_embeds"])
    with pytest.raises(ValueError, match=r"every row of train_dataset has the same anchor \('teacher_text_embeds'\)"
                                         r", but method='dr' needs"):
        _trainer(tokenizer, tmp_path, same, method="dr")
    one_caption = _replace(data.remove_columns("teacher_text_embeds"), "english", lambda i, v: "a red circle")
    with pytest.raises(ValueError, match=r"same anchor \('english'\), but method='mcl'.*MCL contrasts"):
        _trainer(tokenizer, tmp_path, one_caption, method="mcl", teacher=teacher)
    _trainer(tokenizer, tmp_path, same, method="fd")


def test_a_batch_without_distinct_anchors_is_detected():
    from mvld_hf.data import has_distinct_rows, no_distinct_anchors_message

    same = torch.ones(4, 3)
    assert not has_distinct_rows(same) and not has_distinct_rows(same[:1])
    assert not has_distinct_rows(same * (1 + 1e-9))  # float noise is no negative
    assert has_distinct_rows(torch.cat([same, torch.tensor([[1.0, 1.0, 0.5]])]))
    assert has_distinct_rows(same, keys=torch.zeros(2, 3))  # the DR queue holds other anchors
    assert not has_distinct_rows(same, keys=torch.ones(2, 3))
    message = no_distinct_anchors_message({"mcl": 1.0, "fd": 1.0}, step=3)
    assert message.startswith("step 3: every anchor of the batch is the same (no negatives): MCL contrasts")
    assert no_distinct_anchors_message({"fd": 1.0, "ed": 0.5}, step=3) is None


# --------------------------------------------------------------------------------------- zero embeddings
@pytest.mark.parametrize("method", ["fd", "dr", "mcl"])
def test_zero_precomputed_embedding_is_named_before_training(tokenizer, data, tmp_path, method):
    from mvld_hf.data import ZeroEmbeddingError

    rows = _replace(data, "teacher_text_embeds", lambda i, v: [0.0] * 16 if i == 41 else v)
    with pytest.raises(ZeroEmbeddingError, match=r"row 41 of train_dataset: 'teacher_text_embeds' is the zero "
                                                 r"vector; .*carries no signal.*Drop that row or recompute"):
        _trainer(tokenizer, tmp_path, rows, method=method)


def test_zero_embedding_in_a_stream_is_refused_by_the_collator(tokenizer, data, tmp_path):
    from mvld_hf.data import ZeroEmbeddingError

    rows = _replace(data, "teacher_text_embeds", lambda i, v: [0.0] * 16 if i == 2 else v)
    student = tiny_student(tokenizer, 16)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset(), student=student, method="dr")
    with pytest.raises(ZeroEmbeddingError, match=rf"the row captioned '{rows[2]['caption']}' \(position 2 of its "
                                                 r"batch\): 'teacher_text_embeds' is the zero vector"):
        trainer.train()
    assert _unchanged(student, before)


def test_check_embedding_rows_names_the_first_bad_row():
    from mvld_hf.data import ZeroEmbeddingError, check_embedding_rows

    good = torch.randn(4, 3)
    check_embedding_rows(good, "t", lambda i: f"row {i}")
    with pytest.raises(ZeroEmbeddingError, match="row 2: 't' is the zero vector"):
        check_embedding_rows(torch.cat([good[:2], torch.zeros(1, 3), good]), "t", lambda i: f"row {i}")
    with pytest.raises(NonFiniteEmbeddingError, match="row 1: 't' holds NaN"):
        check_embedding_rows(torch.tensor([[1.0, 0], [math.nan, 0]]).numpy(), "t", lambda i: f"row {i}")


@pytest.mark.parametrize("value,kind", [(lambda v: str(v), "strings"), (lambda v: float(v[0]), "float scalars")])
def test_embeddings_stored_as_strings_or_scalars(tokenizer, data, tmp_path, value, kind):
    rows = _replace(data, "teacher_text_embeds", lambda i, v: value(v))
    with pytest.raises(TypeError, match=rf"train_dataset column 'teacher_text_embeds' holds {kind} \(.*expected "
                                        r"vectors of floats"):
        _trainer(tokenizer, tmp_path, rows)
    stream = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset())
    with pytest.raises(TypeError, match=rf"the training batch column 'teacher_text_embeds' holds {kind}"):
        stream.train()


def test_zero_teacher_output_in_the_step(tokenizer, teacher, data, tmp_path, monkeypatch):
    from mvld_hf.data import ZeroEmbeddingError

    def zero_at_step_2(encode):  # the teacher returns zero vectors at step 2, whichever route the step takes
        def broken(*args, **kwargs):
            out = encode(*args, **kwargs)
            return out * 0 if trainer.state.global_step == 1 else out
        return broken

    for name in ("encode_text", "encode_tokenized"):
        if hasattr(teacher, name):
            monkeypatch.setattr(teacher, name, zero_at_step_2(getattr(teacher, name)))
    trainer = _trainer(tokenizer, tmp_path, data.remove_columns("teacher_text_embeds"), teacher=teacher,
                       method="dr", max_steps=3)
    with pytest.raises(ZeroEmbeddingError, match=r"^the teacher's embedding of the English caption '.+' at step 2: "
                                                 r"'teacher output' is the zero vector"):
        trainer.train()
    assert trainer.state.global_step == 1


@pytest.mark.parametrize("route", ["map", "stream", "workers"])
def test_zero_teacher_output_when_precomputing(toy_dataset, teacher, tmp_path, monkeypatch, route):
    """Named like a NaN row on every route: a map with a cache, a stream, and a map whose captions are tokenized
    in DataLoader workers (only the teacher's forward runs here)."""
    from mvld_hf.data import ZeroEmbeddingError

    rows = toy_dataset.remove_columns("image")
    bad_text = rows[30]["english"]
    bad_row = min(i for i, e in enumerate(rows["english"]) if e == bad_text)
    encode_text, encode_tokenized = teacher.encode_text, teacher.encode_tokenized

    def zero_for(texts, **kwargs):
        out = encode_text(texts, **kwargs)
        out[[i for i, t in enumerate(texts) if t == bad_text]] = 0.0
        return out

    bad_ids = teacher.text_tokenizer()([bad_text])
    bad_ids = bad_ids["input_ids"][0][bad_ids["attention_mask"][0].bool()].tolist()

    def zero_for_tokens(tokens, **kwargs):
        out = encode_tokenized(tokens, **kwargs)
        for i, (ids, mask) in enumerate(zip(tokens["input_ids"], tokens["attention_mask"])):
            if torch.as_tensor(ids)[torch.as_tensor(mask).bool()].tolist() == bad_ids:
                out[i] = 0.0
        return out

    monkeypatch.setattr(teacher, "encode_text", zero_for)
    monkeypatch.setattr(teacher, "encode_tokenized", zero_for_tokens)
    source = rows.to_iterable_dataset() if route == "stream" else rows
    kwargs = dict(prepare_workers=2) if route == "workers" else dict(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ZeroEmbeddingError, match=rf"row {bad_row} of the dataset \(the teacher's embedding of its "
                                                 rf"'english' '{bad_text}'\): 'teacher_text_embeds' is the zero "
                                                 "vector"):
        out = precompute_teacher_embeddings(source, teacher, batch_size=10, **kwargs)
        list(out)  # a stream is embedded as it is read


def test_a_batch_without_distinct_anchors_warns(tokenizer, data, tmp_path, caplog):
    """The training set has many anchors (so it is accepted), but the stream's first batch repeats one."""
    first = data[0]["teacher_text_embeds"]
    rows = _replace(data, "teacher_text_embeds", lambda i, v: first if i < BATCH else v)
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset(), method="mcl", max_steps=2)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        trainer.train()
    warned = [r.getMessage() for r in caplog.records if "no negatives" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("step 1: every anchor of the batch is the same (no negatives): "
                                                     "MCL contrasts")


# ---------------------------------------------------------------- the command line: config order, Ctrl-C, resume
def test_a_config_file_after_the_flags_says_it_must_come_first(tmp_path):
    from mvld_hf.cli.arguments import CliError, parse_args

    config = tmp_path / "run.yaml"
    config.write_text("method: dr\n")
    with pytest.raises(CliError, match=rf"the config file {re.escape(str(config))} must come first, before the "
                                       rf"flags that override it: distill.py {re.escape(str(config))} --max_steps 5"):
        parse_args(["--max_steps", "5", str(config)])
    parse_args([str(config), "--max_steps", "5", "--run_name", "notes.json"])  # a flag's value: fine


def test_ctrl_c_prints_the_checkpoint_that_stays_good_and_the_resume_command(tmp_path, monkeypatch, capsys):
    import sys

    from mvld_hf.checkpointing import TRAINER_STATE, write_checkpoint_manifest
    from mvld_hf.cli.distill import one_line_errors

    out = tmp_path / "out"

    def interrupted_training(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["examples/distill.py"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["--output_dir", str(out), "--max_steps", "40", "--overwrite_output_dir", "true"]
    with pytest.raises(SystemExit) as exit_info:
        one_line_errors(interrupted_training)(argv)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == (f"interrupted (Ctrl-C) before a complete checkpoint was saved in "
                                               f"{out}: nothing to resume; start again with\n  python "
                                               f"examples/distill.py --output_dir {out} --max_steps 40")
    checkpoint = out / "checkpoint-20"
    checkpoint.mkdir(parents=True)
    (checkpoint / TRAINER_STATE).write_text('{"global_step": 20}')
    write_checkpoint_manifest(str(checkpoint), {"global_step": 20, "finite_weights": True})
    with pytest.raises(SystemExit):
        one_line_errors(interrupted_training)(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"interrupted (Ctrl-C); {checkpoint} is the last complete checkpoint. Resume from it with",
                     f"  python examples/distill.py --output_dir {out} --max_steps 40 --resume_from_checkpoint true"]


def test_resuming_with_another_learning_rate_is_refused_before_any_work(tokenizer, tmp_path):
    from mvld_hf.checkpointing import TRAINER_STATE, write_checkpoint_manifest
    from mvld_hf.cli.arguments import CliError, check_resume

    checkpoint = tmp_path / "out" / "checkpoint-2"
    student = tiny_student(tokenizer, 16)
    student.save_pretrained(checkpoint)
    (checkpoint / TRAINER_STATE).write_text('{"global_step": 2}')
    write_checkpoint_manifest(str(checkpoint), {"global_step": 2, "finite_weights": True, "learning_rate": 3e-3})
    args = training_args(tmp_path, learning_rate=1e-3, resume_from_checkpoint="true")
    with pytest.raises(CliError, match=rf"checkpoint {re.escape(str(checkpoint))} was trained with another "
                                       r"learning_rate: checkpoint 0\.003, this run 0\.001 \(resuming restores the "
                                       r"checkpoint's optimizer and learning-rate schedule.*resume with "
                                       r"--learning_rate 0\.003\)"):
        check_resume(args, student)
    check_resume(training_args(tmp_path, learning_rate=3e-3, resume_from_checkpoint="true"), student)
