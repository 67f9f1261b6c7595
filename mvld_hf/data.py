"""Batches for distillation: a tokenizing collator and teacher-embedding precomputation."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .encode import check_texts

logger = logging.getLogger(__name__)


class MissingColumnError(KeyError):
    """A dataset lacks a column the chosen method needs."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def check_columns(column_names: Sequence[str], required: dict[str, str], dataset_name: str = "dataset") -> None:
    """Raise :class:`MissingColumnError` naming every missing column, why it is needed, and what exists."""
    missing = {col: why for col, why in required.items() if col not in column_names}
    if missing:
        details = "; ".join(f"'{col}' ({why})" for col, why in missing.items())
        raise MissingColumnError(
            f"{dataset_name} is missing column(s) {details}. Available columns: {sorted(column_names)}. "
            "Rename them with dataset.rename_column or set the *_column arguments of DistillationArguments."
        )


def required_columns(args, has_teacher: bool) -> dict[str, str]:
    """The columns a training dataset needs for ``args`` (a ``DistillationArguments``)."""
    required = {args.caption_column: "the caption the student reads"}
    if args.needs_english_captions:
        required[args.english_column] = "the English caption ED also distils"
    if not has_teacher:
        if args.needs_teacher_text:
            required[args.teacher_text_column] = "precomputed teacher text embeddings (or pass teacher=...)"
        if args.needs_teacher_image:
            required[args.teacher_image_column] = "precomputed teacher image embeddings (or pass teacher=...)"
    else:
        if args.needs_teacher_text:
            required.setdefault(args.english_column, "the English caption the teacher embeds")
        if args.needs_teacher_image:
            required[args.image_column] = "the image the teacher embeds for image anchors"
    return required


class DistillationCollator:
    """Tokenize captions (and English captions for ED) and stack precomputed teacher embeddings.

    Output keys: ``input_ids``/``attention_mask`` for the captions; ``english_input_ids``/
    ``english_attention_mask`` when ED needs them (tokenized together with the captions, so both share one
    padded length and the trainer runs a single student forward); ``teacher_text_embeds`` /
    ``teacher_image_embeds`` float tensors when present in the rows; otherwise the raw ``english_texts`` /
    ``images`` lists for a teacher forward inside the step.
    """

    def __init__(self, tokenizer, args, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.args = args
        self.max_length = max_length or args.max_length
        self._warned_truncation = False

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        if not self._warned_truncation and batch["input_ids"].shape[1] >= self.max_length \
                and batch["attention_mask"][:, -1].any():
            self._warned_truncation = True
            logger.warning("some captions are longer than max_length=%d tokens and are truncated to it (training "
                           "proceeds; raise DistillationArguments.max_length to keep more)", self.max_length)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _check_batch_columns(self, features: list[dict[str, Any]]) -> None:
        args = self.args
        required = {args.caption_column: "the caption the student reads"}
        if args.needs_english_captions:
            required[args.english_column] = "the English caption ED also distils"
        check_columns(list(features[0].keys()), required, "the training batch")

    @staticmethod
    def _stack_embeddings(features: list[dict[str, Any]], column: str) -> torch.Tensor:
        rows = [f[column] for f in features]
        lengths = {len(r) if hasattr(r, "__len__") else -1 for r in rows}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(f"rows of '{column}' are not vectors of one length (found lengths {sorted(lengths)}); "
                             "recompute the teacher embeddings with precompute_teacher_embeddings")
        try:
            return torch.as_tensor(np.asarray(rows, dtype=np.float32))
        except (TypeError, ValueError) as err:
            raise ValueError(f"'{column}' does not hold numeric vectors ({err})") from err

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        args = self.args
        if not features:
            raise ValueError("empty batch")
        self._check_batch_columns(features)
        captions = check_texts([f[args.caption_column] for f in features], args.caption_column)
        out: dict[str, Any] = {}
        if args.needs_english_captions:
            english = check_texts([f[args.english_column] for f in features], args.english_column)
            tokens = self._tokenize(captions + english)
            n = len(captions)
            out["input_ids"], out["attention_mask"] = tokens["input_ids"][:n], tokens["attention_mask"][:n]
            out["english_input_ids"] = tokens["input_ids"][n:]
            out["english_attention_mask"] = tokens["attention_mask"][n:]
        else:
            out.update(self._tokenize(captions))
        for column, key, raw_key, raw_column, needed in (
            (args.teacher_text_column, "teacher_text_embeds", "english_texts", args.english_column,
             args.needs_teacher_text),
            (args.teacher_image_column, "teacher_image_embeds", "images", args.image_column,
             args.needs_teacher_image),
        ):
            if not needed:
                continue
            if column in features[0]:
                out[key] = self._stack_embeddings(features, column)
            elif raw_column in features[0]:
                values = [f[raw_column] for f in features]
                if raw_key == "images":  # undecoded rows (see undecoded_images) are decoded here, naming the bad one
                    values = [decode_image(v, f"the image of the row captioned {c!r}")
                              for v, c in zip(values, captions)]
                out[raw_key] = values
            else:
                raise MissingColumnError(
                    f"batch has neither '{column}' (precomputed teacher embeddings) nor '{raw_column}' for the "
                    f"teacher to embed; columns present: {sorted(features[0].keys())}")
        return out


def _teacher_fingerprint(teacher) -> str:
    """Identify the teacher's weights cheaply (name, revision and a checksum of every parameter)."""
    digest = hashlib.sha256(teacher.fingerprint().encode())
    model = getattr(teacher, "model", None)
    if model is not None:
        with torch.no_grad():
            sums = [float(p.double().sum()) for p in model.parameters()]
        digest.update(np.asarray(sums, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def is_iterable_dataset(dataset) -> bool:
    """True for streamed data (``datasets.IterableDataset`` or any ``torch`` ``IterableDataset``)."""
    import datasets

    return isinstance(dataset, (datasets.IterableDataset, torch.utils.data.IterableDataset))


def decode_image(value, where: str = "image"):
    """A PIL image from a PIL image or a ``datasets`` ``Image(decode=False)`` dict (``bytes`` and/or ``path``).

    Corrupt or unreadable data raises ``ValueError`` naming ``where`` (e.g. the dataset row).
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and (value.get("bytes") is not None or value.get("path")):
        import io

        source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        try:
            image = Image.open(source)
            image.load()
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for corrupt data
            raise ValueError(f"{where} could not be decoded ({type(err).__name__}: {err}); drop or re-encode "
                             "that row") from err
        return image
    raise TypeError(f"{where} is a {type(value).__name__}, expected a PIL image or an encoded image")


def undecoded_images(dataset, image_column: str):
    """``dataset`` with ``image_column`` cast to ``Image(decode=False)`` (so corrupt rows can be named), and
    whether a cast happened."""
    import datasets

    feature = (getattr(dataset, "features", None) or {}).get(image_column)
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_column, datasets.Image(decode=False)), True
    return dataset, False


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
):
    """Add the frozen teacher's embeddings as columns so training runs no teacher forward.

    Always adds ``text_output_column`` (the teacher's embedding of ``english_column``); with
    ``anchor="image"`` also ``image_output_column``. Captions repeated inside a map batch (one English caption
    translated into many languages) are embedded once.

    - A ``datasets.Dataset`` goes through ``map`` (batched) with a fingerprint built from the dataset's, the
      teacher's weights and the arguments, so a dataset backed by cache files reuses the result next time.
    - A ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``) is mapped *lazily*: nothing is
      materialised, each batch of ``batch_size`` rows is embedded when the trainer reads it. Give ``cache_dir``
      to keep every text embedding on disk (:class:`~mvld_hf.streaming.TeacherEmbeddingCache`, keyed by teacher
      and text) so later
      epochs and runs read them back instead of running the teacher again.

    Corrupt images raise a ``ValueError`` naming the row.
    """
    if anchor not in ("text", "image"):
        raise ValueError(f"anchor must be 'text' or 'image', got {anchor!r}")
    required = {english_column: "the English caption the teacher embeds"}
    if anchor == "image":
        required[image_column] = "the image the teacher embeds for image anchors"
        if not teacher.supports_images:
            from .teachers import TeacherCapabilityError

            raise TeacherCapabilityError(
                f"anchor='image' needs image embeddings but teacher {teacher.name_or_path!r} is text-only")
    streaming = is_iterable_dataset(dataset)
    columns = getattr(dataset, "column_names", None)
    if columns is not None:  # a stream may not know its columns before the first row
        check_columns(columns, required)
    teacher_fingerprint = _teacher_fingerprint(teacher)
    if cache_dir is not None:
        from .streaming import TeacherEmbeddingCache

        cache = TeacherEmbeddingCache(cache_dir, teacher_fingerprint)
    else:
        cache = None

    def embed_texts(unique: list[str]) -> np.ndarray:
        found = {} if cache is None else cache.get(unique)
        missing = [t for t in unique if t not in found]
        if missing:
            computed = teacher.encode_text(missing, batch_size=encode_batch_size).cpu().numpy()
            new = dict(zip(missing, computed))
            if cache is not None:
                cache.put(new)
            found.update(new)
        return np.stack([found[t] for t in unique])

    def embed(batch, indices):
        check_columns(list(batch.keys()), required, "a batch of the dataset")
        texts = check_texts(batch[english_column], english_column)
        unique = list(dict.fromkeys(texts))
        emb = embed_texts(unique)
        index = {text: i for i, text in enumerate(unique)}
        result = {text_output_column: emb[[index[t] for t in texts]]}
        if anchor == "image":
            images = [decode_image(image, f"the image of row {i} ('{image_column}')")
                      for image, i in zip(batch[image_column], indices)]
            result[image_output_column] = teacher.encode_image(images, batch_size=encode_batch_size).cpu().numpy()
        return result

    source, recast = undecoded_images(dataset, image_column) if anchor == "image" else (dataset, False)
    if streaming:
        mapped = source.map(embed, batched=True, batch_size=batch_size, with_indices=True)
    else:
        fingerprint_source = "|".join(map(str, (
            getattr(dataset, "_fingerprint", ""), teacher_fingerprint, anchor, english_column, image_column,
            text_output_column, image_output_column)))
        fingerprint = hashlib.sha256(fingerprint_source.encode()).hexdigest()[:16]
        mapped = source.map(embed, batched=True, batch_size=batch_size, num_proc=num_proc, desc=desc,
                            new_fingerprint=fingerprint, with_indices=True)
    if recast:
        import datasets

        mapped = mapped.cast_column(image_column, datasets.Image())
    return mapped
