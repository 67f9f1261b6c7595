"""The teacher's captions tokenized where the student's are (the collator, in DataLoader workers): the training
step runs only the teacher's forward, on the same embeddings the in-step tokenizer gave."""

import os

import torch

from mvld_hf import DistillationCollator
from tests.helpers import training_args


class PidLoggingTokenizer:
    """A teacher tokenizer that appends the id of the process it runs in to a file (forked workers included)."""

    def __init__(self, tokenizer, log):
        self.tokenizer, self.log = tokenizer, log

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, *args, **kwargs):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return self.tokenizer(*args, **kwargs)


def pids(path) -> list[int]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [int(line) for line in handle]


def test_collator_tokenizes_the_distinct_english_captions_for_the_teacher(tokenizer, teacher, tmp_path):
    args = training_args(tmp_path, method="fd")
    collator = DistillationCollator(tokenizer, args, teacher_tokenizer=teacher.text_tokenizer())
    english = ["a small red circle", "a big blue square", "a small red circle", "a big green star"]
    rows = [{"caption": f"caption {i}", "english": e} for i, e in enumerate(english)]
    batch = collator(rows)
    assert batch["english_texts"] == english  # kept: the cache and error messages name captions
    assert batch["teacher_input_ids"].shape[0] == 3  # one row per distinct caption
    assert batch["teacher_text_index"].tolist() == [0, 1, 0, 2]
    tokens = {"input_ids": batch["teacher_input_ids"], "attention_mask": batch["teacher_attention_mask"]}
    embedded = teacher.encode_tokenized(tokens)[batch["teacher_text_index"]]
    assert torch.allclose(embedded, teacher.encode_text(english), atol=1e-6)
    plain = DistillationCollator(tokenizer, args)(rows)  # without a teacher tokenizer: the raw captions only
    assert "teacher_input_ids" not in plain and plain["english_texts"] == english


class ForwardLoggingTeacher:
    """The teacher; each forward appends the id of its process to a file."""

    def __init__(self, teacher, log):
        self.teacher, self.log = teacher, log

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def _logged(self):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def encode_text(self, texts, **kwargs):
        self._logged()
        return self.teacher.encode_text(texts, **kwargs)

    def encode_tokenized(self, tokens):
        self._logged()
        return self.teacher.encode_tokenized(tokens)


def test_stream_step_runs_the_teacher_forward_only(toy_dataset, tokenizer, teacher, tmp_path):
    """A stream embedded in the step, read by 2 DataLoader workers: the teacher's tokenizer runs only in the
    workers, its forward only in the training process, and the step's embeddings are the precomputed ones."""
    from mvld_hf import DistillationTrainer, DualEncoderTeacher, precompute_teacher_embeddings
    from mvld_hf.testing import tiny_student

    data = toy_dataset.remove_columns("image")
    materialised = precompute_teacher_embeddings(data, teacher)
    expected = dict(zip(materialised["english"], torch.tensor(materialised["teacher_text_embeds"])))
    tokenizer_log, forward_log = tmp_path / "tokenizer_pids", tmp_path / "forward_pids"
    watched = DualEncoderTeacher(teacher.model, PidLoggingTokenizer(teacher.tokenizer, tokenizer_log),
                                 teacher.image_processor, name_or_path=teacher.name_or_path)
    stream = precompute_teacher_embeddings(data.to_iterable_dataset(num_shards=4),
                                           ForwardLoggingTeacher(watched, forward_log))
    args = training_args(tmp_path, method="dr+mcl", per_device_train_batch_size=8, queue_size=16, max_steps=4,
                         logging_steps=1, dataloader_num_workers=2)
    seen = []

    class Recording(DistillationTrainer):
        def _teacher_targets(self, inputs):
            t, a = super()._teacher_targets(inputs)
            seen.append((list(inputs["english_texts"]), "teacher_input_ids" in inputs, t.detach().cpu()))
            return t, a

    trainer = Recording(model=tiny_student(tokenizer, 16), args=args, train_dataset=stream,
                        processing_class=tokenizer)
    trainer.train()
    tokenizer_pids, forward_pids = pids(tokenizer_log), pids(forward_log)
    assert tokenizer_pids and os.getpid() not in tokenizer_pids  # tokenized in the workers only ...
    assert len(set(tokenizer_pids)) == 2
    assert set(forward_pids) == {os.getpid()} and len(forward_pids) == 4  # ... one forward per step, here
    assert len(seen) == 4 and all(tokenized for _, tokenized, _ in seen)
    for texts, _, used in seen:
        assert torch.allclose(used, torch.stack([expected[t] for t in texts]), atol=1e-6)
