"""A stream whose teacher embeddings are computed in the training step, not ahead of it.

:func:`~mvld_hf.precompute_teacher_embeddings` on an ``IterableDataset`` returns a :class:`TeacherEmbeddedStream`;
``DistillationTrainer`` unwraps it (:func:`unwrap_embedded_stream`): its DataLoader workers read, decode and
tokenize the raw stream, and the step embeds each batch with the stream's teacher
(:func:`~mvld_hf.teacher_targets.teacher_targets`); every rank reads its own shards (:func:`read_own_shards`).
"""

from __future__ import annotations

import torch

from .data_utils import check_columns, decode_image
from .encode import check_texts
from .teacher_targets import TeacherEmbedder, dataset_checks, embed_batch

__all__ = ["TeacherEmbeddedStream", "read_own_shards", "unwrap_embedded_stream"]


class TeacherEmbeddedStream(torch.utils.data.IterableDataset):
    """A stream whose teacher embeddings are computed lazily, in the process that iterates it.

    :func:`~mvld_hf.precompute_teacher_embeddings` returns one for an ``IterableDataset``. Given to
    ``DistillationTrainer`` as ``train_dataset`` (or ``eval_dataset``) it is unwrapped: the DataLoader and its
    workers read, decode and tokenize ``dataset`` (the raw stream), and the trainer's step embeds each batch with
    :attr:`embedder` in the training process, batched on the teacher's device (with a CUDA teacher, forked
    workers never touch CUDA and no worker holds a copy of the teacher). Iterated directly (``for row in
    stream``), it yields the raw rows plus the embedding columns, ``batch_size`` rows embedded at a time.
    Iterating it inside a DataLoader worker raises: that would run the teacher there.

    Transform the raw stream (``shuffle``, ``take``, ``map``, ...) *before* ``precompute_teacher_embeddings``.
    """

    def __init__(self, dataset, embedder: TeacherEmbedder, anchor: str = "text", english_column: str = "english",
                 image_column: str = "image", text_output_column: str = "teacher_text_embeds",
                 image_output_column: str = "teacher_image_embeds", batch_size: int = 256):
        self.dataset, self.embedder, self.anchor, self.batch_size = dataset, embedder, anchor, batch_size
        self.english_column, self.image_column = english_column, image_column
        self.text_output_column, self.image_output_column = text_output_column, image_output_column

    @property
    def output_columns(self) -> list[str]:
        return [self.text_output_column] + ([self.image_output_column] if self.anchor == "image" else [])

    @property
    def column_names(self) -> list[str] | None:
        columns = getattr(self.dataset, "column_names", None)
        return None if columns is None else list(columns) + [c for c in self.output_columns if c not in columns]

    def __getstate__(self):  # a copy in another process (a spawned worker) never carries the teacher
        return {**self.__dict__, "embedder": None}

    def __getattr__(self, name):
        dataset = self.__dict__.get("dataset")
        if dataset is not None and hasattr(dataset, name):
            raise AttributeError(
                f"TeacherEmbeddedStream has no '{name}': transform the stream (shuffle, take, map, ...) before "
                "precompute_teacher_embeddings, or use .dataset for the raw stream")
        raise AttributeError(name)

    def __iter__(self):
        if torch.utils.data.get_worker_info() is not None or self.embedder is None:
            raise RuntimeError(
                "a TeacherEmbeddedStream is being read in a DataLoader worker, which would run the teacher there "
                "(CUDA in forked workers, one teacher copy per worker): pass it to DistillationTrainer, which reads "
                "the raw stream in its workers and embeds in the training process, or read it with "
                "dataloader_num_workers=0")
        rows: list[dict] = []
        start = 0  # the stream's row number of rows[0]
        for row in self.dataset:
            rows.append(row)
            if len(rows) == self.batch_size:
                yield from self._embedded(rows, start)
                start, rows = start + len(rows), []
        if rows:
            yield from self._embedded(rows, start)

    def _embedded(self, rows: list[dict], start: int):
        required = {self.english_column: "the English caption the teacher embeds"}
        if self.anchor == "image":
            required[self.image_column] = "the image the teacher embeds for image anchors"
        check_columns(list(rows[0].keys()), required, "a batch of the dataset")
        texts = check_texts([r[self.english_column] for r in rows], self.english_column)
        first_row: dict[str, int] = {}
        for i, t in enumerate(texts):
            first_row.setdefault(t, start + i)
        text_check, image_check = dataset_checks(
            self.text_output_column, self.english_column, first_row.__getitem__,
            self.image_output_column if self.anchor == "image" else None, self.image_column, lambda i: start + i)
        text, _ = embed_batch(self.embedder, texts=texts, text_check=text_check)
        text = text.float().cpu().numpy()
        images = image = None
        if self.anchor == "image":
            images = [decode_image(r[self.image_column], f"the image of the row captioned {t!r}")
                      for r, t in zip(rows, texts)]
            _, image = embed_batch(self.embedder, images=images, image_check=image_check)
            image = image.float().cpu().numpy()
        for i, row in enumerate(rows):
            row = {**row, self.text_output_column: text[i]}
            if images is not None:
                row[self.image_column], row[self.image_output_column] = images[i], image[i]
            yield row


def unwrap_embedded_stream(dataset, args, embedder: TeacherEmbedder | None = None):
    """``(dataset, embedder)``: the raw stream of a :class:`TeacherEmbeddedStream` (its DataLoader workers only
    read, decode and tokenize; the training step embeds with its teacher) and the embedder the step uses.

    ``dataset`` may be a dict of datasets (every stream in it is unwrapped). ``embedder`` is the one already chosen
    (e.g. the train stream's, whose cache then serves the eval stream): a stream prepared with another teacher, or
    with other column names than ``args``' (:class:`~mvld_hf.DistillationArguments`), is refused. Anything that is
    not a :class:`TeacherEmbeddedStream` is returned as it is, with ``embedder`` unchanged."""
    if isinstance(dataset, dict):
        unwrapped = {}
        for key, value in dataset.items():
            unwrapped[key], embedder = unwrap_embedded_stream(value, args, embedder)
        return unwrapped, embedder
    if not isinstance(dataset, TeacherEmbeddedStream):
        return dataset, embedder
    if dataset.embedder is None:
        raise ValueError("this TeacherEmbeddedStream was copied without its teacher: call "
                         "precompute_teacher_embeddings in the training process")
    if embedder is not None and embedder.teacher is not dataset.embedder.teacher:
        raise ValueError("the train and eval streams were prepared by precompute_teacher_embeddings with "
                         "different teachers: the trainer embeds every batch with one teacher")
    wanted = {"english_column": args.english_column, "image_column": args.image_column}
    differing = [f"{name}={getattr(dataset, name)!r} there, {value!r} in DistillationArguments"
                 for name, value in wanted.items() if getattr(dataset, name) != value]
    if differing:
        raise ValueError(f"precompute_teacher_embeddings was called with other columns ({'; '.join(differing)}): "
                         "pass the same column names to both")
    return dataset.dataset, embedder if embedder is not None else dataset.embedder


def read_own_shards(args) -> None:
    """A stream embedded in the step has batches of raw captions (strings), which accelerate cannot dispatch
    from rank 0 (its default for iterable datasets): every rank reads its own shards of the stream instead
    (``datasets``' ``IterableDataset.shard`` when it has at least as many shards as ranks). Sets
    ``args.accelerator_config.dispatch_batches=False``; refuses an explicit ``True``."""
    config = args.accelerator_config
    if getattr(config, "dispatch_batches", None) is None:
        config.dispatch_batches = False
    elif config.dispatch_batches:
        raise ValueError("accelerator_config.dispatch_batches=True sends rank 0's batches to every rank, but a "
                         "stream embedded by the teacher in the step has raw captions in its batches: leave "
                         "dispatch_batches unset")
