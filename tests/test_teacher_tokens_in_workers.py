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
