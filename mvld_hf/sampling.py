"""Length-grouped batching: batches of captions of similar token length, so the collator pads less.

The collator pads every batch to its longest caption (``max_length`` at most). Captions of 6-20 words padded
that way spend a large share of the student's FLOPs on pad tokens; grouping captions of similar length into
the same batch removes most of it (benchmarks/RESULTS.md, "Length-grouped batching").

:class:`LengthGroupedSampler` draws a random permutation of the rows for each epoch, cuts it into buckets of
``group_batches`` batches, sorts each bucket by length, cuts the bucket into batches of ``batch_size`` rows and
shuffles the order of all batches (the one short batch, if any, stays last so every other batch is full and
aligned with the DataLoader's). Its order depends only on ``seed``, the epoch (:meth:`set_epoch`, which the
Trainer calls) and the lengths, so a resumed run replays the same order and the Trainer's usual
``skip_first_batches`` skips what was trained; several processes (DDP) build the same order and accelerate
hands each one every ``world_size``-th batch, each of them grouped.

Used by :class:`~mvld_hf.DistillationTrainer` when ``train_sampling_strategy="group_by_length"`` (the
transformers option, whose stock sampler needs pre-tokenized ``input_ids`` and does not apply to caption rows).
A stream (``datasets.IterableDataset``, the paper configs' ``streaming: true``) has no sampler: there
:func:`group_stream_by_length` reorders the rows within consecutive pools of ``group_batches`` batches the
same way (a batched ``map``, so worker sharding, DDP sharding and the stream's resume state still apply).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

GROUP_BATCHES = 64  # batches per length bucket: bigger buckets pad less, smaller ones mix lengths more


def token_lengths(dataset, tokenizer, columns: Sequence[str], max_length: int, batch_size: int = 4096) -> np.ndarray:
    """The padded length each row needs: the most tokens (special tokens included, truncated at ``max_length``)
    of its texts in ``columns`` (the caption, and the English caption when ED tokenizes it in the same batch)."""
    lengths = np.zeros(len(dataset), dtype=np.int32)
    for column in columns:
        for start in range(0, len(dataset), batch_size):
            texts = dataset[start:start + batch_size][column]  # a datasets.Dataset slice: a dict of lists
            ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
            stop = start + len(ids)
            lengths[start:stop] = np.maximum(lengths[start:stop], [len(x) for x in ids])
    return lengths


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Row indices in batches of similar length (see the module docstring). Stateless beyond ``epoch``."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, group_batches: int = GROUP_BATCHES):
        if batch_size < 1 or group_batches < 1:
            raise ValueError(f"batch_size and group_batches must be >= 1, got {batch_size} and {group_batches}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or not len(self.lengths):
            raise ValueError("LengthGroupedSampler needs one length per row of a non-empty dataset")
        self.batch_size, self.seed, self.group_batches = int(batch_size), int(seed), int(group_batches)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches of row indices, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        bucket = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(order), bucket):
            rows = order[start:start + bucket]
            rows = rows[np.argsort(-self.lengths[rows], kind="stable")]  # longest first within the bucket
            batches.extend(rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size))
        short = [b for b in batches if len(b) < self.batch_size]  # at most one: only the last bucket can be short
        full = [b for b in batches if len(b) == self.batch_size]
        return [full[i] for i in rng.permutation(len(full))] + short

    def __iter__(self):
        for batch in self.batches():
            yield from batch.tolist()


def length_grouped_sampler(dataset, tokenizer, args, batch_size: int) -> LengthGroupedSampler:
    """The sampler for a ``DistillationArguments`` run: lengths from ``args.length_column_name`` when the dataset
    has that column, else from tokenizing the caption column (and the English one when ED reads it) once."""
    if args.length_column_name in dataset.column_names:
        lengths = np.asarray(dataset[args.length_column_name])
    else:
        lengths = token_lengths(dataset, tokenizer, _length_columns(args), args.max_length)
    return LengthGroupedSampler(lengths, batch_size, seed=_seed(args))


def length_grouped_stream(stream, tokenizer, args, batch_size: int):
    """:func:`group_stream_by_length` for a ``DistillationArguments`` run."""
    return group_stream_by_length(stream, tokenizer, _length_columns(args), args.max_length, batch_size,
                                  seed=_seed(args))


def _length_columns(args) -> list[str]:
    return [args.caption_column] + ([args.english_column] if args.needs_english_captions else [])


def _seed(args) -> int:
    return args.data_seed if args.data_seed is not None else args.seed


def _pool_seed(seed: int, texts: Sequence[str]) -> list[int]:
    """A seed for one pool of a stream from the run's seed and the pool's first text: the same pool gets the same
    order in every run and on every process (a stream has no epoch counter a map could read)."""
    import zlib

    return [seed, zlib.crc32(texts[0].encode("utf-8")) if texts else 0, len(texts)]


def group_stream_by_length(stream, tokenizer, columns: Sequence[str], max_length: int, batch_size: int,
                           seed: int = 0, group_batches: int = GROUP_BATCHES):
    """``stream`` (a ``datasets.IterableDataset``) with its rows reordered within consecutive pools of
    ``batch_size * group_batches`` rows: sorted by token length (the longest of ``columns``), cut into batches of
    ``batch_size``, the batches shuffled (a short batch, at the end of the stream only, stays last)."""
    pool = batch_size * group_batches

    def regroup(rows: dict) -> dict:
        n = len(rows[columns[0]])
        if n == 0:
            return rows
        lengths = np.zeros(n, dtype=np.int64)
        for column in columns:
            ids = tokenizer(list(rows[column]), truncation=True, max_length=max_length)["input_ids"]
            lengths = np.maximum(lengths, [len(x) for x in ids])
        rng = np.random.default_rng(_pool_seed(seed, rows[columns[0]]))
        return _reorder(rows, _grouped_order(lengths, batch_size, rng))

    return stream.map(regroup, batched=True, batch_size=pool)


def _grouped_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions of one pool: shuffled, sorted by length (stable), cut into batches, batches shuffled."""
    shuffled = rng.permutation(len(lengths))
    rows = shuffled[np.argsort(-lengths[shuffled], kind="stable")]
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    return np.concatenate([full[i] for i in rng.permutation(len(full))] + short)


def _reorder(rows: dict, order: np.ndarray) -> dict:
    return {key: [values[i] for i in order] for key, values in rows.items()}


def train_sampler(dataset, tokenizer, args):
    """The trainer's training sampler under ``args.train_sampling_strategy``: a :class:`LengthGroupedSampler` for
    ``"group_by_length"`` on a map-style dataset, ``None`` for a stream (see :func:`train_stream`), and
    ``NotImplemented`` where the Trainer's own sampler applies."""
    import datasets

    if args.train_sampling_strategy == "group_by_length":
        if isinstance(dataset, datasets.Dataset):
            return length_grouped_sampler(dataset, tokenizer, args, args.train_batch_size)
        if isinstance(dataset, datasets.IterableDataset):
            return None
    return NotImplemented


def train_stream(dataset, tokenizer, args):
    """A stream regrouped by length within pools of batches under ``train_sampling_strategy="group_by_length"``
    (:func:`length_grouped_stream`); any other dataset or strategy as it is."""
    import datasets

    if args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, datasets.IterableDataset):
        return dataset
    return length_grouped_stream(dataset, tokenizer, args, args.train_batch_size)
