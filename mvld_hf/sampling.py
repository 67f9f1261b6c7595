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
Map-style datasets only: a stream (``IterableDataset``) keeps its own order.
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
        columns = [args.caption_column] + ([args.english_column] if args.needs_english_captions else [])
        lengths = token_lengths(dataset, tokenizer, columns, args.max_length)
    seed = args.data_seed if args.data_seed is not None else args.seed
    return LengthGroupedSampler(lengths, batch_size, seed=seed)
