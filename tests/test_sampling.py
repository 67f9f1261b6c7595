"""LengthGroupedSampler: batches of similar length, a fresh permutation per epoch, deterministic, DDP-shardable."""

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard

from mvld_hf.sampling import LengthGroupedSampler, group_stream_by_length, token_lengths


def lengths_like_captions(n=1000, seed=0):
    """Token lengths of captions of 6-20 words (about 1.3-3 tokens a word, as a subword tokenizer gives)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(6, 21, n) * rng.uniform(1.3, 3.0, n)).astype(int) + 2


def padded_tokens(lengths, batches):
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_every_row_once_in_full_batches_of_similar_length():
    lengths = lengths_like_captions(1000)
    sampler = LengthGroupedSampler(lengths, batch_size=32, seed=0, group_batches=8)
    order = list(sampler)
    assert sorted(order) == list(range(1000)) and len(sampler) == 1000
    batches = [order[i:i + 32] for i in range(0, 1000, 32)]
    assert [len(b) for b in batches] == [32] * 31 + [8]  # the one short batch is last
    assert [list(b) for b in sampler.batches()] == batches  # what the DataLoader will cut, batch for batch
    rng = np.random.default_rng(1)
    random_batches = [b.tolist() for b in np.array_split(rng.permutation(1000), range(32, 1000, 32))]
    grouped, shuffled = padded_tokens(lengths, batches), padded_tokens(lengths, random_batches)
    real = int(lengths.sum())
    assert (grouped - real) < 0.2 * (shuffled - real)  # pad work falls by more than 5x
    spread = np.median([np.ptp(lengths[b]) for b in batches[:-1]])
    assert spread < 0.25 * np.median([np.ptp(lengths[b]) for b in random_batches[:-1]])


def test_order_depends_only_on_seed_and_epoch():
    lengths = lengths_like_captions(500)
    a, b = LengthGroupedSampler(lengths, 16, seed=3), LengthGroupedSampler(lengths, 16, seed=3)
    assert list(a) == list(b)  # a resumed run (a new sampler, same seed) replays the same order
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) and list(a) != first  # a new permutation each epoch, the same on every process
    assert list(LengthGroupedSampler(lengths, 16, seed=4)) != first
    a.set_epoch(0)
    assert list(a) == first
    # batch order is shuffled: long and short batches alternate at random, not longest-first
    means = [lengths[bt].mean() for bt in a.batches()[:-1]]
    assert not (np.all(np.diff(means) <= 0) or np.all(np.diff(means) >= 0))


def test_ddp_shards_get_disjoint_grouped_batches():
    """accelerate gives each process every world_size-th batch of the same sampler (BatchSamplerShard)."""
    lengths = lengths_like_captions(640)
    sampler = LengthGroupedSampler(lengths, 16, seed=0)
    batch_sampler = torch.utils.data.BatchSampler(sampler, 16, drop_last=False)
    shards = [list(BatchSamplerShard(batch_sampler, num_processes=2, process_index=r)) for r in (0, 1)]
    rows = [i for shard in shards for b in shard for i in b]
    assert sorted(rows) == list(range(640))
    grouped = sorted(sorted(b.tolist()) for b in sampler.batches())
    assert sorted(sorted(b) for shard in shards for b in shard) == grouped  # each rank gets whole grouped batches


def test_token_lengths_take_the_longest_column_and_truncate(tokenizer):
    import datasets

    rows = datasets.Dataset.from_dict({"caption": ["a dog", "a red dog runs on the grass " * 20],
                                       "english": ["a big black dog sits there", "a dog"]})
    one = token_lengths(rows, tokenizer, ["caption"], max_length=16, batch_size=1)
    both = token_lengths(rows, tokenizer, ["caption", "english"], max_length=64)
    n_english = len(tokenizer(rows["english"][0])["input_ids"])
    assert one[1] == 16 and one[0] == len(tokenizer("a dog")["input_ids"]) < n_english < 64
    assert both[0] == n_english and both[1] == 64


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedSampler([3, 4], batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        LengthGroupedSampler([], batch_size=2)


def test_stream_rows_regrouped_within_pools(tokenizer):
    """A stream keeps every row once, in pools of group_batches batches: each batch of similar length, the same
    order on a second pass (resume, another process), worker shards regrouped on their own."""
    import datasets

    rng = np.random.default_rng(0)
    words = ["red", "dog", "big", "small", "circle", "blue", "runs", "on", "the", "grass"]
    texts = [" ".join(rng.choice(words, rng.integers(1, 15))) for _ in range(200)]
    stream = datasets.Dataset.from_dict({"caption": texts, "row": list(range(200))}).to_iterable_dataset(num_shards=2)
    grouped = group_stream_by_length(stream, tokenizer, ["caption"], max_length=64, batch_size=8, group_batches=5)
    rows = [r["row"] for r in grouped]
    assert sorted(rows) == list(range(200)) and rows == [r["row"] for r in grouped]  # all once, deterministic
    lengths = token_lengths(datasets.Dataset.from_dict({"caption": texts}), tokenizer, ["caption"], 64)
    batches = [rows[i:i + 8] for i in range(0, 200, 8)]
    random_batches = [list(range(i, i + 8)) for i in range(0, 200, 8)]
    pad = padded_tokens(lengths, batches) - lengths.sum()
    assert pad < 0.3 * (padded_tokens(lengths, random_batches) - lengths.sum())
    for start in range(0, 200, 40):  # pools of 40 rows: the same rows as the stream's, reordered
        assert sorted(rows[start:start + 40]) == sorted(r["row"] for r in stream.skip(start).take(40))


def _rows_of_many_lengths(n=64, dim=16, seed=0):
    import datasets

    rng = np.random.default_rng(seed)
    words = ["a", "small", "red", "circle", "big", "blue", "square", "green", "star", "next", "to"]
    captions = [" ".join(rng.choice(words, rng.integers(1, 16))) for _ in range(n)]
    embeds = rng.standard_normal((n, dim)).astype(np.float32)
    return datasets.Dataset.from_dict({"caption": captions, "english": captions, "teacher_text_embeds": list(embeds)})


def _batch_widths(tmp_path, tokenizer, dataset, **kwargs):
    from mvld_hf import DistillationTrainer
    from mvld_hf.testing import tiny_student
    from tests.helpers import training_args

    args = training_args(tmp_path, method="fd", per_device_train_batch_size=8, max_steps=8, **kwargs)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=dataset,
                                  processing_class=tokenizer)
    batches = list(trainer.get_train_dataloader())
    return [b["input_ids"].shape[1] for b in batches], sum(len(b["input_ids"]) for b in batches)


def test_trainer_batches_by_length_with_group_by_length(tmp_path, tokenizer):
    """train_sampling_strategy="group_by_length" pads less, on a map-style dataset and on a stream."""
    data = _rows_of_many_lengths()
    random_widths, n = _batch_widths(tmp_path, tokenizer, data)
    grouped_widths, n_grouped = _batch_widths(tmp_path, tokenizer, data, train_sampling_strategy="group_by_length")
    assert n == n_grouped == 64 and sum(grouped_widths) < 0.8 * sum(random_widths)
    stream = data.to_iterable_dataset()
    stream_widths, _ = _batch_widths(tmp_path, tokenizer, stream)
    grouped_stream, n_stream = _batch_widths(tmp_path, tokenizer, stream, train_sampling_strategy="group_by_length")
    assert n_stream == 64 and sum(grouped_stream) < 0.8 * sum(stream_widths)
