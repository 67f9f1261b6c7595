"""Session-wide tiny offline fixtures: a tokenizer trained here, a random CLIP teacher, a toy corpus."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mvld_hf.testing import tiny_clip_teacher, toy_parallel_corpus, train_tokenizer  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def toy_rows():
    return toy_parallel_corpus(with_images=True)


@pytest.fixture(scope="session")
def tokenizer(toy_rows):
    return train_tokenizer([r["caption"] for r in toy_rows], vocab_size=300)


@pytest.fixture(scope="session")
def teacher(tokenizer):
    return tiny_clip_teacher(tokenizer, projection_dim=16)


@pytest.fixture(scope="session")
def toy_dataset(toy_rows):
    return datasets.Dataset.from_list(toy_rows)
