"""Teacher embeddings computed ahead of training: :func:`precompute_teacher_embeddings` (map-style datasets
through ``datasets``' fingerprint cache; streams lazily), the on-disk :class:`TeacherEmbeddingCache` it can read
and fill, and :func:`join_precomputed_embeddings` (embeddings published as their own dataset, joined by id).

Streamed training data (``load_dataset(..., streaming=True)``):

- :func:`precompute_teacher_embeddings` on an ``IterableDataset`` returns a
  :class:`~mvld_hf.teacher_stream.TeacherEmbeddedStream`: nothing is computed up front; ``DistillationTrainer``
  embeds each batch with the teacher in its own training process (on the teacher's device, one per rank) while
  DataLoader workers only read, decode and tokenize; optionally through an on-disk
  :class:`TeacherEmbeddingCache` so each caption is embedded once across epochs and runs;
- :func:`join_precomputed_embeddings` adds embeddings published as their own dataset (one row per id) to a
  stream by id;
- :class:`~mvld_hf.DistillationTrainer` trains on a stream when ``max_steps`` is set.

The teacher run on a batch (here, in an embedded stream and in the training step) and the check of its output
live in :mod:`mvld_hf.teacher_targets`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data import is_iterable_dataset, undecoded_images
from .data_utils import MissingColumnError, check_columns, decode_image
from .embedding_checks import NonFiniteEmbeddingError, check_embedding_rows, non_finite_error, non_finite_rows
from .encode import check_texts
from .image_pipeline import PreparedBatches
from .teacher_stream import TeacherEmbeddedStream, read_own_shards, unwrap_embedded_stream  # noqa: F401 (old home)
from .teacher_targets import TeacherEmbedder, dataset_checks, embed_batch

__all__ = ["TeacherEmbeddedStream", "TeacherEmbedder", "TeacherEmbeddingCache", "join_precomputed_embeddings",
           "precompute_teacher_embeddings"]


class TeacherEmbeddingCache:
    """An on-disk cache of teacher text embeddings keyed by ``sha256(teacher fingerprint, text)`` (SQLite).

    Made for streamed data, which ``datasets`` cannot cache by fingerprint: every caption is embedded by the
    teacher once, across epochs and runs, and read back as float32.

    Several processes may read and write one cache at once (the ranks of a multi-GPU run, DataLoader workers,
    other runs): the database is in WAL mode (readers never block the writer), each write is one
    ``BEGIN IMMEDIATE`` transaction (all rows of a ``put`` or none), a writer waits up to ``timeout`` seconds for
    the lock and a still-busy database is retried with backoff. A connection is opened lazily and again in
    every process (a forked worker never reuses its parent's), so the object pickles into ``datasets`` workers.
    Rows whose stored size does not match their dimension are treated as missing (and overwritten on ``put``).
    WAL needs every process on one machine: on a network file system shared by several machines, give each
    machine its own cache directory.
    """

    retries = 8

    def __init__(self, path: str, teacher_fingerprint: str, timeout: float = 60.0):
        if os.path.isdir(path) or path.endswith(os.sep):
            os.makedirs(path, exist_ok=True)
            path = os.path.join(path, "teacher_embeddings.sqlite")
        self.path, self.teacher_fingerprint, self.timeout = path, teacher_fingerprint, timeout
        self._connection, self._pid = None, None
        self.hits = self.misses = 0

    def __getstate__(self):
        return {**self.__dict__, "_connection": None, "_pid": None}

    def _retry(self, operation):
        """Run ``operation()``; a database still locked after the busy timeout is retried with backoff."""
        import sqlite3
        import time

        for attempt in range(self.retries + 1):
            try:
                return operation()
            except sqlite3.OperationalError as err:
                if ("locked" not in str(err) and "busy" not in str(err)) or attempt == self.retries:
                    raise sqlite3.OperationalError(
                        f"teacher embedding cache {self.path}: {err} (after {attempt + 1} attempts). Another "
                        "process holds the database: raise TeacherEmbeddingCache(timeout=...), or give each "
                        "machine its own cache directory on a network file system") from err
                time.sleep(min(0.05 * 2 ** attempt, 2.0))

    @property
    def connection(self):
        if self._connection is None or self._pid != os.getpid():  # a forked child opens its own connection
            import sqlite3

            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)

            def setup():
                connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
                connection.execute("CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, dim INTEGER, "
                                   "value BLOB)")

            self._retry(setup)
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.teacher_fingerprint}\0{text}".encode()).digest()

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        keys = {self.key(t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        items = list(keys)
        for start in range(0, len(items), 500):  # SQLite limits the number of parameters
            chunk = items[start:start + 500]
            rows = self._retry(lambda chunk=chunk: self.connection.execute(
                f"SELECT key, dim, value FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
            for key, dim, value in rows:
                if len(value) == 4 * dim:  # a damaged row counts as missing: it is recomputed and replaced
                    found[keys[key]] = np.frombuffer(value, dtype=np.float32, count=dim)
        if found:
            texts_found = list(found)
            check_embedding_rows(
                np.stack(list(found.values())), "teacher embedding",
                lambda i: f"the teacher embedding cache {self.path}, for {texts_found[i]!r}",
                zero_fix="Delete that file to recompute its entries",
                non_finite=lambda i: NonFiniteEmbeddingError(
                    f"the teacher embedding cache {self.path} holds NaN/inf for {texts_found[i]!r}: delete that file "
                    "to recompute its entries"))
        self.hits += len(found)
        self.misses += len(texts) - len(found)
        return found

    def put(self, embeddings: dict[str, np.ndarray]) -> None:
        """Store embeddings; NaN/inf ones raise :class:`~mvld_hf.data.NonFiniteEmbeddingError` (never cached)."""
        if embeddings:
            texts = list(embeddings)
            check_embedding_rows(np.stack([np.asarray(e, dtype=np.float32) for e in embeddings.values()]),
                                 "teacher embedding", lambda i: f"the text {texts[i]!r}",
                                 fix="It is not cached; drop or fix that text, or check the teacher",
                                 zero_fix="It is not cached; drop or fix that text, or check the teacher")
        rows = [(self.key(t), int(e.shape[-1]), np.ascontiguousarray(e, dtype=np.float32).tobytes())
                for t, e in embeddings.items()]
        if not rows:
            return

        def write():
            connection = self.connection
            connection.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlock on a read->write upgrade
            try:
                connection.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

        self._retry(write)

    def __len__(self) -> int:
        return self._retry(lambda: self.connection.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])


def join_precomputed_embeddings(stream, embeddings, id_column: str, embedding_column: str | None = None,
                                output_column: str | None = None, columns: Sequence[str] | None = None,
                                embeddings_id_column: str | None = None, batch_size: int = 1000):
    """Add precomputed teacher embeddings to ``stream`` by joining on an id column.

    ``embeddings`` is a map-style ``datasets.Dataset`` (memory-mapped from disk, e.g. published per-teacher
    embeddings of a caption corpus) with an id column and embedding column(s); ``stream`` is the training data
    (an ``IterableDataset`` or a ``Dataset``) with the same ids in ``id_column``. The join is lazy for streams:
    an id->row index is built once (it holds every id in memory), and each batch of the stream looks its rows
    up. ``embedding_column`` picks one column of ``embeddings`` and ``output_column`` names it in the stream
    (e.g. ``"embedding"`` -> ``"teacher_text_embeds"``, what the trainer reads); otherwise ``columns`` (default:
    every column but the id) are added under their own names. ``embeddings_id_column`` is the id column of
    ``embeddings`` when it is named differently. Unknown ids raise ``KeyError``; ids repeated in
    ``embeddings`` raise ``ValueError``; a NaN/inf embedding raises
    :class:`~mvld_hf.data.NonFiniteEmbeddingError` naming its id.
    """
    embeddings_id_column = embeddings_id_column or id_column
    check_columns(embeddings.column_names, {embeddings_id_column: "the id joined on"}, "the embeddings dataset")
    rename = {}
    if embedding_column is not None:
        if columns is not None:
            raise ValueError("pass embedding_column or columns, not both")
        columns = [embedding_column]
        if output_column is not None and output_column != embedding_column:
            rename = {embedding_column: output_column}
    elif output_column is not None:
        raise ValueError("output_column renames embedding_column: pass both")
    if columns is None:
        columns = [c for c in embeddings.column_names if c != embeddings_id_column]
    check_columns(embeddings.column_names, {c: "an embedding column to join" for c in columns},
                  "the embeddings dataset")
    stream_columns = getattr(stream, "column_names", None)
    if stream_columns is not None:
        check_columns(stream_columns, {id_column: "the id joined on"}, "the stream")
        clash = [rename.get(c, c) for c in columns if rename.get(c, c) in stream_columns]
        if clash:
            raise ValueError(f"the stream already has column(s) {clash}; remove them or pass columns=")
    ids = embeddings[embeddings_id_column]
    index: dict[Any, int] = {}
    for row, id_ in enumerate(ids):
        if id_ in index:
            raise ValueError(f"id {id_!r} appears twice in the embeddings dataset (rows {index[id_]} and {row})")
        index[id_] = row
    table = embeddings.select_columns(list(columns))

    def join(batch):
        if id_column not in batch:
            raise MissingColumnError(f"the stream has no '{id_column}' column to join on; columns: {sorted(batch)}")
        rows = []
        for id_ in batch[id_column]:
            if id_ not in index:
                raise KeyError(f"id {id_!r} of the stream has no row in the embeddings dataset")
            rows.append(index[id_])
        joined = table[rows]
        for name, values in joined.items():
            try:
                bad = non_finite_rows(np.asarray(values, dtype=np.float32))
            except (TypeError, ValueError):  # not a numeric column (or ragged: the collator names that)
                continue
            if len(bad):
                id_ = batch[id_column][bad[0]]
                raise non_finite_error(name, f"id {id_!r} (row {rows[bad[0]]} of the embeddings dataset)",
                                       values[bad[0]], fix="Drop that id from the stream or fix its embedding")
        return {rename.get(name, name): values for name, values in joined.items()}

    return stream.map(join, batched=True, batch_size=batch_size)


def _teacher_fingerprint(teacher) -> str:
    """Identify the teacher's weights cheaply (name, revision and a checksum of every parameter)."""
    digest = hashlib.sha256(teacher.fingerprint().encode())
    model = getattr(teacher, "model", None)
    if model is not None:
        with torch.no_grad():
            sums = [float(p.double().sum()) for p in model.parameters()]
        digest.update(np.asarray(sums, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def _map_across_ranks(source, embed, fingerprint: str, map_kwargs: dict, outputs: list[str]):
    """``source.map(embed)`` with each rank of the process group mapping one contiguous part (see
    ``precompute_teacher_embeddings(share_across_ranks=True)``); every rank returns the full result."""
    import datasets
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    n = len(source)
    if n < world:  # too few rows to split: every rank embeds them all
        return source.map(embed, new_fingerprint=fingerprint, **map_kwargs)
    bounds = [n * i // world for i in range(world + 1)]
    on_disk = bool(source.cache_files)
    folder = os.path.dirname(source.cache_files[0]["filename"]) if on_disk else None

    def part(i: int):
        shard = source.select(range(bounds[i], bounds[i + 1]))
        name = f"{fingerprint}-part{i}of{world}"
        cache_file = os.path.join(folder, f"cache-{name}.arrow") if on_disk else None
        return shard.map(embed, new_fingerprint=name, cache_file_name=cache_file, fn_kwargs={"offset": bounds[i]},
                         **map_kwargs)

    mine = part(rank)
    if not on_disk:  # in memory: gather the new columns, then add them with the one-process fingerprint
        local = {c: np.asarray(mine.with_format("numpy")[c]) for c in outputs}
        gathered: list = [None] * world
        dist.all_gather_object(gathered, local)
        full = {c: np.concatenate([g[c] for g in gathered]) for c in outputs}
        kwargs = {k: v for k, v in map_kwargs.items() if k != "num_proc"}
        return source.map(lambda batch, indices: {c: full[c][indices] for c in outputs}, new_fingerprint=fingerprint,
                          **kwargs)
    dist.barrier()  # every rank's part is in the cache
    parts = []
    for i in range(world):
        if i == rank:
            parts.append(mine)
            continue
        name = f"cache-{fingerprint}-part{i}of{world}"
        if not any(f.startswith(name) for f in os.listdir(folder)):
            raise RuntimeError(f"rank {rank} cannot see rank {i}'s teacher embeddings ({name}*.arrow in {folder}): "
                               "the ranks need one file system for the datasets cache, or use "
                               "share_across_ranks=False")
        parts.append(part(i))  # loaded from the cache file rank i wrote: no teacher forward
    return datasets.concatenate_datasets(parts)


#: fewer rows than this are prepared in this process unless workers are asked for (starting them costs more)
MIN_ROWS_FOR_PREPARE_WORKERS = 2048


def _prepared_batches(source, teacher, cache, anchor: str, english_column: str, image_column: str, batch_size: int,
                      encode_batch_size: int, num_proc: int | None, workers: int | None):
    """The map batches' captions tokenized (``"text"``) and images decoded and preprocessed (``"image"``) by
    DataLoader workers, as a :class:`~mvld_hf.image_pipeline.PreparedBatches` (see
    ``precompute_teacher_embeddings(prepare_workers=...)``), or ``None`` where this process prepares them (too few
    rows, ``num_proc`` already forking the map, nothing to prepare: a cache needs the raw captions)."""
    from .image_pipeline import CaptionTokens, default_num_workers

    n = len(source)
    if workers is None:
        if os.environ.get("MVLD_HF_DATA_WORKERS") is None and n < MIN_ROWS_FOR_PREPARE_WORKERS:
            workers = 0
        else:
            workers = default_num_workers(-(-n // batch_size))
    if workers <= 0 or (num_proc or 0) > 1:
        return None
    text_tokenizer = getattr(teacher, "text_tokenizer", None)
    tokenize = text_tokenizer() if cache is None and text_tokenizer is not None else None
    captions = CaptionTokens(tokenize, encode_batch_size) if tokenize is not None else None
    images = anchor == "image" and hasattr(teacher, "prepare_images")
    columns = ([english_column] if captions else []) + ([image_column] if images else [])
    if not columns:
        return None
    table = source.select_columns(columns)

    def get(start: int, stop: int) -> dict:
        rows = table[start:stop]
        return {"text": check_texts(rows[english_column], english_column) if captions else None,
                "image": [decode_image(image, f"the image of row {start + i} ('{image_column}')")
                          for i, image in enumerate(rows[image_column])] if images else None}

    def prepare(items: dict) -> dict:
        return {"text": None if items["text"] is None else captions(items["text"]),
                "image": None if items["image"] is None else teacher.prepare_images(items["image"])}

    return PreparedBatches(n, get, batch_size, prepare, workers, getattr(teacher, "device", None))


def precompute_teacher_embeddings(
    dataset,
    teacher,
    anchor: str = "text",
    english_column: str = "english",
    image_column: str = "image",
    text_output_column: str = "teacher_text_embeds",
    image_output_column: str = "teacher_image_embeds",
    batch_size: int = 256,
    encode_batch_size: int = 64,
    num_proc: int | None = None,
    desc: str = "Teacher embeddings",
    cache_dir: str | None = None,
    share_across_ranks: bool = False,
    prepare_workers: int | None = None,
):
    """Add the frozen teacher's embeddings as columns so training runs no teacher forward.

    Always adds ``text_output_column`` (the teacher's embedding of ``english_column``); with
    ``anchor="image"`` also ``image_output_column``. Captions repeated inside a map batch (one English caption
    translated into many languages) are embedded once.

    - A ``datasets.Dataset`` goes through ``map`` (batched) with a fingerprint built from the dataset's, the
      teacher's weights and the arguments, so a dataset backed by cache files reuses the result next time.
    - A ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``) is not mapped: the result is a
      :class:`TeacherEmbeddedStream`, and ``DistillationTrainer`` embeds each batch of it with the teacher in its
      training process (on the teacher's device, in every rank), while DataLoader workers only read, decode and
      tokenize. Give ``cache_dir`` to keep every text embedding on disk (:class:`TeacherEmbeddingCache`, keyed by
      teacher and text) so later epochs and runs read them back instead of running the teacher again.
    - ``share_across_ranks=True`` in a ``torch.distributed`` job (``accelerate launch``, ``torchrun``) splits
      the work of a ``datasets.Dataset``: rank ``r`` of ``W`` embeds the ``r``-th contiguous ``1/W`` of the rows
      and every rank returns the whole dataset with the full columns, in the original order. A dataset backed by
      cache files exchanges the parts through the ``datasets`` cache (each part is a cache file named by the
      fingerprint and the part: the ranks need one file system, as for ``main_process_first``; a rerun reuses
      them); an in-memory dataset gathers them over the process group. Every rank must call it (outside
      ``main_process_first``, whose barrier would pair with this one's). Without a process group it is the
      plain path.

    ``prepare_workers`` DataLoader worker processes tokenize the captions and decode and preprocess the images of
    the next map batches (:mod:`mvld_hf.image_pipeline`) while this process runs the teacher's forward (a
    ``datasets.Dataset`` without ``num_proc``; captions only without ``cache_dir``). ``None``: the
    ``MVLD_HF_DATA_WORKERS`` environment variable, else up to 8 (one core left) for 2,048 rows or more and none
    below; ``0``: everything in this process.

    Corrupt images raise a ``ValueError`` naming the row; a NaN/inf teacher embedding raises
    :class:`~mvld_hf.data.NonFiniteEmbeddingError` naming the row, before it is cached or written.
    """
    if anchor not in ("text", "image"):
        raise ValueError(f"anchor must be 'text' or 'image', got {anchor!r}")
    required = {english_column: "the English caption the teacher embeds"}
    if anchor == "image":
        required[image_column] = "the image the teacher embeds for image anchors"
        if not teacher.supports_images:
            from .teachers import TeacherCapabilityError

            raise TeacherCapabilityError.text_only(teacher.name_or_path, image_output_column)
    streaming = is_iterable_dataset(dataset)
    columns = getattr(dataset, "column_names", None)
    if columns is not None:  # a stream may not know its columns before the first row
        check_columns(columns, required)
    teacher_fingerprint = _teacher_fingerprint(teacher)
    cache = None if cache_dir is None else TeacherEmbeddingCache(cache_dir, teacher_fingerprint)
    embedder = TeacherEmbedder(teacher, cache, encode_batch_size)

    prepared: list[PreparedBatches | None] = []  # DataLoader workers ahead of the map, set up on the first batch

    def embed(batch, indices, offset=0):
        check_columns(list(batch.keys()), required, "a batch of the dataset")
        texts = check_texts(batch[english_column], english_column)
        first_row = {}
        for text, i in zip(texts, indices):
            first_row.setdefault(text, i)
        text_check, image_check = dataset_checks(
            text_output_column, english_column, first_row.__getitem__,
            image_output_column if anchor == "image" else None, image_column, lambda i: indices[i])
        rows = (offset + indices[0], offset + indices[-1] + 1) if len(indices) else (0, 0)
        if rows[1] - rows[0] != len(indices):  # not a contiguous range: no prepared batch fits it
            rows = None
        if not prepared:
            prepared.append(_prepared_batches(source, teacher, cache, anchor, english_column, image_column,
                                              batch_size, encode_batch_size, num_proc, prepare_workers))
        ready = prepared[0].take(*rows) if rows is not None and prepared[0] is not None else {}
        text, _ = embed_batch(embedder, texts=texts, prepared_texts=ready.get("text"), text_check=text_check)
        result = {text_output_column: text.cpu().numpy()}
        if anchor == "image":
            images = None
            if ready.get("image") is None:
                images = [decode_image(image, f"the image of row {offset + i} ('{image_column}')")
                          for image, i in zip(batch[image_column], indices)]
            _, image_emb = embed_batch(embedder, images=images, prepared_images=ready.get("image"),
                                       image_check=image_check)
            image_emb = image_emb.cpu().numpy()
            result[image_output_column] = image_emb
        return result

    source, recast = undecoded_images(dataset, image_column) if anchor == "image" else (dataset, False)
    if streaming:  # embedded where the teacher lives (the trainer's step), not in DataLoader workers
        return TeacherEmbeddedStream(source, embedder, anchor, english_column, image_column, text_output_column,
                                     image_output_column, batch_size)
    fingerprint_source = "|".join(map(str, (
        getattr(dataset, "_fingerprint", ""), teacher_fingerprint, anchor, english_column, image_column,
        text_output_column, image_output_column)))
    fingerprint = hashlib.sha256(fingerprint_source.encode()).hexdigest()[:16]
    map_kwargs = dict(batched=True, batch_size=batch_size, num_proc=num_proc, desc=desc, with_indices=True)
    import torch.distributed as dist

    try:
        if share_across_ranks and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            outputs = [text_output_column] + ([image_output_column] if anchor == "image" else [])
            mapped = _map_across_ranks(source, embed, fingerprint, map_kwargs, outputs)
        else:
            mapped = source.map(embed, new_fingerprint=fingerprint, **map_kwargs)
    finally:
        if prepared and prepared[0] is not None:
            prepared[0].close()
    if recast:
        import datasets

        mapped = mapped.cast_column(image_column, datasets.Image())
    return mapped
