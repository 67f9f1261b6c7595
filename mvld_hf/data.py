"""Batches for distillation: the columns a run needs and the tokenizing collator."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .data_utils import BLANK_TEXT, BLANK_TEXT_PATTERN, MissingColumnError, check_columns, decode_image
from .embedding_checks import (  # noqa: F401  (re-exported: their home before embedding_checks)
    ZERO_NORM,
    NonFiniteEmbeddingError,
    ZeroEmbeddingError,
    check_embedding_rows,
    check_finite_embeddings,
    embedding_type_error,
    non_finite_error,
    non_finite_rows,
    zero_norm_error,
    zero_norm_rows,
)
from .encode import check_texts

logger = logging.getLogger(__name__)


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


def check_text_column(dataset, column: str, dataset_name: str = "dataset", batch_size: int = 100_000) -> None:
    """Raise naming the first dataset row whose ``column`` is not a string, or has no visible character
    (:func:`~mvld_hf.data_utils.is_blank_text`, here as the RE2 pattern ``BLANK_TEXT_PATTERN``).

    One vectorised pass over the column (Arrow compute, ``batch_size`` rows at a time, in the dataset's row
    order), so a bad row is reported before training instead of at the step that reads it. Streams are checked
    batch by batch in the collator instead.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    fix = f"drop or fix such rows before distilling (dataset.filter on '{column}')"
    offset = 0
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=batch_size):
        values = table.column(column)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            row = 0 if values.null_count == 0 or pa.types.is_null(values.type) else \
                pc.index(pc.is_valid(values), True).as_py()
            value = values[row].as_py() if row >= 0 else None
            raise TypeError(f"row {offset + row} of {dataset_name}: '{column}' is a {type(value).__name__} "
                            f"({value!r}); the column holds {values.type} values, expected strings: {fix}")
        if values.null_count:
            row = pc.index(pc.is_null(values), True).as_py()
            raise TypeError(f"row {offset + row} of {dataset_name}: '{column}' is None, expected a string: {fix}")
        row = pc.index(pc.match_substring_regex(values, BLANK_TEXT_PATTERN), True).as_py()
        if row >= 0:
            raise ValueError(f"row {offset + row} of {dataset_name}: '{column}' is {BLANK_TEXT} "
                             f"({values[row].as_py()!r}); {fix}")
        offset += len(values)


def check_room_for_content(tokenizer, max_length: int) -> None:
    """Refuse a ``max_length`` that leaves no room for a caption's tokens after the tokenizer's special tokens
    (``max_length=2`` with XLM-R's ``<s>``/``</s>`` would cut every caption to those two tokens)."""
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    special = count(pair=False) if callable(count) else 0
    if max_length <= special:
        raise ValueError(f"max_length={max_length} leaves no room for a caption: the tokenizer adds {special} "
                         f"special token(s) to each, so every caption would be cut to those; set max_length to "
                         f"{special + 1} or more (captions need tens of tokens: the default is 128)")


def has_distinct_rows(x: torch.Tensor, keys: torch.Tensor | None = None, rtol: float = 1e-6) -> bool:
    """Whether any two rows of ``x`` (and of the DR queue's ``keys``, when given) differ by more than ``rtol`` of
    the largest value: a batch whose anchors are all alike gives a contrastive method (MCL, SD, DR) nothing to
    contrast, so its loss is constant and its gradient zero. One host sync; the trainer warns on ``False``."""
    rows = x.detach().reshape(len(x), -1)
    if keys is not None and len(keys):
        rows = torch.cat([rows, keys.detach().reshape(len(keys), -1).to(rows.device, rows.dtype)])
    if len(rows) < 2:
        return False
    scale = rows.abs().amax().clamp_min(torch.finfo(torch.float32).tiny)
    return bool(((rows - rows[:1]).abs() > rtol * scale).any())


def no_distinct_anchors_message(method_weights, step: int) -> str | None:
    """The warning for a batch without distinct anchors at ``step``, or ``None`` when no selected method needs
    other rows (FD and ED compare each caption with its own anchor)."""
    from .distillation_config import methods_needing_other_rows

    needy = methods_needing_other_rows(method_weights)
    if not needy:
        return None
    needs = "; ".join(f"{m.upper()} {why}" for m, why in needy.items())
    return (f"step {step}: every anchor of the batch is the same (no negatives): {needs}, so this step's loss is "
            "constant and trains nothing. Shuffle the data or deduplicate rows that share one English caption")


class DistillationCollator:
    """Tokenize captions (and English captions for ED) and stack precomputed teacher embeddings.

    Output keys: ``input_ids``/``attention_mask`` for the captions; ``english_input_ids``/
    ``english_attention_mask`` when ED needs them (tokenized together with the captions, so both share one
    padded length and the trainer runs a single student forward); ``teacher_text_embeds`` /
    ``teacher_image_embeds`` float tensors when present in the rows; otherwise the raw ``english_texts`` /
    ``images`` lists for a teacher forward inside the step. With ``teacher_tokenizer`` (a teacher's
    ``text_tokenizer()``) the distinct English captions of the batch are also tokenized here, where the student's
    captions are (the DataLoader workers), as ``teacher_input_ids`` / ``teacher_attention_mask`` (one row per
    distinct caption) and ``teacher_text_index`` (the distinct caption of every row): the step then runs only
    the teacher's forward (``encode_tokenized``).
    """

    def __init__(self, tokenizer, args, max_length: int | None = None, teacher_tokenizer=None):
        self.tokenizer = tokenizer
        self.teacher_tokenizer = teacher_tokenizer
        self.args = args
        self.max_length = max_length or args.max_length
        self._warned_truncation = False
        check_room_for_content(tokenizer, self.max_length)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        if not self._warned_truncation and batch["input_ids"].shape[1] >= self.max_length \
                and batch["attention_mask"][:, -1].any():
            self._warned_truncation = True
            logger.warning("some captions are longer than max_length=%d tokens and are truncated to it (training "
                           "proceeds; raise DistillationArguments.max_length to keep more)", self.max_length)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _teacher_tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        position: dict[str, int] = {}
        index = torch.tensor([position.setdefault(t, len(position)) for t in texts], dtype=torch.long)
        tokens = self.teacher_tokenizer(list(position))
        out = {"teacher_input_ids": tokens["input_ids"], "teacher_text_index": index}
        if tokens.get("attention_mask") is not None:
            out["teacher_attention_mask"] = tokens["attention_mask"]
        return out

    def _check_batch_columns(self, features: list[dict[str, Any]]) -> None:
        args = self.args
        required = {args.caption_column: "the caption the student reads"}
        if args.needs_english_captions:
            required[args.english_column] = "the English caption ED also distils"
        check_columns(list(features[0].keys()), required, "the training batch")

    def _stack_embeddings(self, features: list[dict[str, Any]], column: str) -> torch.Tensor:
        rows = [f[column] for f in features]
        if any(isinstance(r, (str, bytes)) or np.ndim(r) == 0 for r in rows):
            example = next(r for r in rows if isinstance(r, (str, bytes)) or np.ndim(r) == 0)
            raise embedding_type_error(column, "the training batch", type(example).__name__, example)
        lengths = {len(r) if hasattr(r, "__len__") else -1 for r in rows}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(f"rows of '{column}' are not vectors of one length (found lengths {sorted(lengths)}); "
                             "recompute the teacher embeddings with precompute_teacher_embeddings")
        try:
            stacked = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"'{column}' does not hold numeric vectors ({err})") from err
        # a streamed row's only check (map-style datasets are checked up front)
        check_embedding_rows(stacked, column, lambda i: f"the row captioned "
                             f"{features[i].get(self.args.caption_column)!r} (position {i} of its batch)")
        return torch.as_tensor(stacked)

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
                elif self.teacher_tokenizer is not None:
                    out.update(self._teacher_tokens(check_texts(values, raw_column)))
                out[raw_key] = values
            else:
                raise MissingColumnError(
                    f"batch has neither '{column}' (precomputed teacher embeddings) nor '{raw_column}' for the "
                    f"teacher to embed; columns present: {sorted(features[0].keys())}")
        return out


def is_iterable_dataset(dataset) -> bool:
    """True for streamed data (``datasets.IterableDataset`` or any ``torch`` ``IterableDataset``)."""
    import datasets

    return isinstance(dataset, (datasets.IterableDataset, torch.utils.data.IterableDataset))


def undecoded_images(dataset, image_column: str):
    """``dataset`` with ``image_column`` cast to ``Image(decode=False)`` (so corrupt rows can be named), and
    whether a cast happened."""
    import datasets

    feature = (getattr(dataset, "features", None) or {}).get(image_column)
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_column, datasets.Image(decode=False)), True
    return dataset, False


def text_columns(args, has_teacher: bool, columns) -> list[str]:
    """The text columns of ``columns`` the collator tokenizes or the teacher embeds in the step."""
    texts = [args.caption_column]
    if args.needs_english_captions or (has_teacher and args.needs_teacher_text
                                       and args.teacher_text_column not in columns):
        texts.append(args.english_column)
    return [c for c in dict.fromkeys(texts) if c in columns]


def _needs_other_rows(args) -> dict[str, str]:
    from .distillation_config import methods_needing_other_rows

    return methods_needing_other_rows(args.method_weights)


def _refuse_without_negatives(args, what: str) -> None:
    needy = _needs_other_rows(args)
    if needy:
        needs = "; ".join(f"{m.upper()} {why}" for m, why in needy.items())
        raise ValueError(f"{what}, but method={args.method!r} needs at least two rows with different anchors: "
                         f"{needs}; with one anchor its loss is constant and nothing trains. Add rows, or distil "
                         "with method='fd' (each caption to its own anchor)")


def _anchor_column(args, columns) -> str | None:
    """The column the run's anchors come from (precomputed, or the English caption the teacher embeds); ``None``
    for images the teacher embeds in the step (not compared here)."""
    if args.anchor == "text":
        return args.teacher_text_column if args.teacher_text_column in columns else \
            (args.english_column if args.english_column in columns else None)
    return args.teacher_image_column if args.teacher_image_column in columns else None


def _all_rows_identical(dataset, column: str, batch_size: int = 10_000) -> bool:
    """Whether every row of ``column`` (strings or embedding vectors) equals the first one; one Arrow pass that
    stops at the first differing batch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    first = None
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=batch_size):
        values = table.column(column).combine_chunks()
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            first = values[0].as_py() if first is None else first
            if not pc.all(pc.equal(values, first)).as_py():
                return False
            continue
        if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
                or pa.types.is_fixed_size_list(values.type)):
            return False
        flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)
        if len(values) == 0 or len(flat) % len(values):
            return False  # ragged rows differ (and are refused elsewhere)
        rows = flat.reshape(len(values), -1)
        first = rows[0].copy() if first is None else first
        if rows.shape[1] != len(first) or not (rows == first).all():
            return False
    return True


def check_dataset(name: str, dataset, args, has_teacher: bool, dim: int | None = None):
    """Fail early, with the reason, on data a run with ``args`` cannot use; returns the dataset to train on.

    Checks: a stream needs ``max_steps``; an empty dataset; missing columns (:func:`required_columns`); text
    columns with a non-string or blank row (:func:`check_text_column`) and embedding columns with a NaN/inf or
    zero row, or of strings/scalars (:func:`check_finite_embeddings`), both for map-style datasets; a training
    set of one row, or whose rows all share one anchor, for a method that needs other rows as negatives (MCL,
    SD, DR); precomputed embedding columns whose length is not the student's ``dim``. With a teacher that embeds images
    in the step, the image column is left undecoded so the collator can name a corrupt image.
    """
    if dataset is None:
        return None
    if isinstance(dataset, dict):  # several eval datasets
        return {key: check_dataset(f"{name}[{key!r}]", value, args, has_teacher, dim)
                for key, value in dataset.items()}
    if is_iterable_dataset(dataset):
        if name == "train_dataset" and args.max_steps <= 0:
            raise ValueError(
                "train_dataset is streamed (an IterableDataset has no length), so the number of steps is "
                "unknown: set max_steps in DistillationArguments (epochs cannot be counted)")
    elif hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError(f"{name} is empty: there is nothing to distil")
    elif name == "train_dataset" and hasattr(dataset, "__len__") and len(dataset) == 1:
        _refuse_without_negatives(args, "train_dataset has a single row")
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, list):  # a stream may not know its columns before the first row
        check_columns(columns, required_columns(args, has_teacher=has_teacher), name)
        if not is_iterable_dataset(dataset):
            for column in text_columns(args, has_teacher, columns):
                check_text_column(dataset, column, name)
            for column, needed in ((args.teacher_text_column, args.needs_teacher_text),
                                   (args.teacher_image_column, args.needs_teacher_image)):
                if needed and column in columns:
                    check_finite_embeddings(dataset, column, name)
            if name == "train_dataset" and _needs_other_rows(args):
                anchor = _anchor_column(args, columns)
                if anchor is not None and _all_rows_identical(dataset, anchor):
                    _refuse_without_negatives(args, f"every row of train_dataset has the same anchor ('{anchor}')")
        if not is_iterable_dataset(dataset) and dim is not None:
            for column in (args.teacher_text_column, args.teacher_image_column):
                if column in columns:
                    first = dataset[0][column]
                    if isinstance(first, (str, bytes)) or np.ndim(first) == 0:
                        raise embedding_type_error(column, name, type(first).__name__, first)
                    if not hasattr(first, "__len__") or len(first) != dim:
                        got = len(first) if hasattr(first, "__len__") else type(first).__name__
                        raise ValueError(
                            f"{name} column '{column}' holds {got}-dim vectors but the student projects to "
                            f"{dim} dims: they were computed by another teacher, or the student needs "
                            f"projection_dim={got}")
    if has_teacher and args.needs_teacher_image and args.teacher_image_column not in (columns or []):
        # the teacher embeds images in the step: decode them in the collator, which names a corrupt one
        dataset, _ = undecoded_images(dataset, args.image_column)
    return dataset


def collator_columns_only(dataset, args):
    """``dataset`` with only the columns :class:`DistillationCollator` reads for ``args`` (an unused image column
    would be decoded every step), the precomputed embedding columns as numpy arrays (no Python float lists).
    Measured in benchmarks/RESULTS.md: the per-batch data cost of an image-anchor dataset fell from 416 to 36 ms."""
    present = set(dataset.column_names or ())
    keep = [args.caption_column]
    if args.needs_teacher_text:
        keep.append(args.teacher_text_column if args.teacher_text_column in present else args.english_column)
    if args.needs_english_captions:
        keep.append(args.english_column)
    if args.needs_teacher_image:
        keep.append(args.teacher_image_column if args.teacher_image_column in present else args.image_column)
    keep = [c for c in dict.fromkeys(keep) if c in present]
    dataset = dataset.select_columns(keep)
    embeddings = [c for c in (args.teacher_text_column, args.teacher_image_column) if c in keep]
    if embeddings and dataset.format["type"] is None:
        dataset = dataset.with_format("numpy", columns=embeddings, output_all_columns=True)
    return dataset


def columns_for_collator(dataset, collator, args):
    """What the trainer's DataLoader (and the projection warm start) reads of a map-style ``dataset``: with the
    default :class:`DistillationCollator`, only its columns (:func:`collator_columns_only`); with a custom
    collator, which may read anything, or a stream, ``dataset`` as it is."""
    if not isinstance(collator, DistillationCollator) or not hasattr(dataset, "select_columns"):
        return dataset
    return collator_columns_only(dataset, args)


def with_anchor_language(dataset, anchor_language: str, *, caption_column: str = "caption",
                         english_column: str = "english", language_column: str = "language",
                         key_column: str = "image_id"):
    """Replace each row's anchor caption (``english_column``) with its parallel caption in ``anchor_language``.

    The teacher embeds ``english_column`` to make the anchor (and ED distils it), so this makes the anchor
    language real (paper section 5.3.1: German or Chinese anchors). Parallel captions come from the dataset's
    own rows: the row of language ``anchor_language`` with the same ``key_column`` (the image) and the same
    English caption (the same caption variant) holds the anchor caption. Datasets without parallel rows (e.g.
    M-CLIP's translations) instead point ``english_column`` at a column holding the anchor-language caption.
    ``anchor_language="en"`` returns ``dataset`` unchanged.

    >>> import datasets
    >>> rows = datasets.Dataset.from_dict({"image_id": [1, 1, 2, 2], "english": ["a", "a", "b", "b"],
    ...     "caption": ["a", "ein a", "b", "ein b"], "language": ["en", "de", "en", "de"]})
    >>> list(with_anchor_language(rows, "de")["english"])
    ['ein a', 'ein a', 'ein b', 'ein b']
    """
    if anchor_language == "en":
        return dataset
    check_columns(dataset.column_names, {caption_column: "the captions", english_column: "the anchor caption",
                                         language_column: "each caption's language",
                                         key_column: "the image id pairing parallel captions"},
                  f"the training set (anchor_language={anchor_language!r})")
    columns = dataset.select_columns([key_column, english_column, caption_column, language_column]).to_dict()
    parallel = {(key, en): caption for key, en, caption, lang in zip(
        columns[key_column], columns[english_column], columns[caption_column], columns[language_column])
        if lang == anchor_language}
    if not parallel:
        present = sorted(set(columns[language_column]))
        raise ValueError(f"anchor_language={anchor_language!r}: the training set has no {anchor_language!r} "
                         f"captions (languages: {present}); include that language, or point english_column at a "
                         f"column holding each row's {anchor_language!r} caption and keep anchor_language='en'")
    anchors = []
    for row, key in enumerate(zip(columns[key_column], columns[english_column])):
        if key not in parallel:
            raise ValueError(f"anchor_language={anchor_language!r}: row {row} ({key_column}={key[0]!r}, "
                             f"{english_column}={key[1]!r}) has no parallel {anchor_language!r} caption; drop such "
                             "rows or keep every caption of a scene in that language")
        anchors.append(parallel[key])
    return dataset.remove_columns(english_column).add_column(english_column, anchors)
