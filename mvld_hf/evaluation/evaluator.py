"""Dataset-level evaluation: encode a captioned-image dataset (or a VQA dataset) with any pair of
encoders and compute the metrics of :mod:`retrieval`, :mod:`clustering` and :mod:`vqa`.

Encoders are plain callables, so the teacher, the student or anything else plugs in directly::

    encode_text(list[str]) -> Tensor[batch, d]
    encode_image(list[PIL.Image.Image]) -> Tensor[batch, d]

The student is evaluated with the *teacher's* image tower; encode the image gallery once and reuse it::

    evaluator = MultilingualEvaluator(xm3600_test)
    images = evaluator.encode_images(teacher.encode_image)
    results = {"teacher": evaluator(teacher.encode_text, image_embeddings=images),
               "student": evaluator(student_encode_text, image_embeddings=images)}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data_utils import BLANK_TEXT, decode_image, is_blank_text
from ..image_pipeline import image_encoder_parts, iter_prepared_batches
from .base import Evaluator
from .clustering import per_language_purity
from .collapse import collapse_reasons
from .consistency import cross_lingual_consistency
from .retrieval import AUTO_PROGRESS_MIN_CHUNKS, per_language_retrieval
from .vqa import DEFAULT_TEMPLATE, format_option, vqa_accuracy

logger = logging.getLogger(__name__)

__all__ = ["MultilingualEvaluator", "evaluate_vqa", "encode_in_batches"]

TextEncoder = Callable[[list[str]], Any]
ImageEncoder = Callable[[list[Image.Image]], Any]


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def encode_in_batches(encode: Callable[[list], Any], n: int, get_batch: Callable[[int, int], list],
                      batch_size: int = 64, desc: str = "Encoding",
                      show_progress_bar: bool | None = None, prepare: Callable | None = None,
                      num_workers: int | None = 0, device=None) -> torch.Tensor:
    """Call ``encode(get_batch(start, stop))`` over ``range(n)`` in batches and concatenate the results
    (kept on the device and in the dtype the encoder returns). Checks each batch's shape.

    ``prepare`` (e.g. a teacher's ``prepare_images``) runs between the two: ``encode(prepare(get_batch(...)))``.
    With ``num_workers > 0`` (``None``: automatic) ``get_batch`` and ``prepare`` run in DataLoader worker
    processes (:func:`~mvld_hf.image_pipeline.iter_prepared_batches`) while this process runs ``encode``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n_batches = -(-n // batch_size)
    if show_progress_bar is None:
        show_progress_bar = n_batches >= AUTO_PROGRESS_MIN_CHUNKS
    outputs: list[torch.Tensor] = []
    dim = None
    started = time.perf_counter()
    with torch.no_grad():
        batches = iter_prepared_batches(n, get_batch, batch_size, prepare, num_workers, device)
        for start, items in zip(tqdm(range(0, n, batch_size), desc=desc, disable=not show_progress_bar,
                                     leave=False), batches):
            expected = min(start + batch_size, n) - start
            emb = encode(items)
            if not torch.is_tensor(emb):
                try:
                    emb = torch.as_tensor(np.asarray(emb))
                except Exception as exc:  # noqa: BLE001
                    raise TypeError(f"{desc}: the encoder returned {type(emb).__name__}, expected a tensor or "
                                    "array of shape [batch, dim]") from exc
            if emb.dim() != 2 or emb.shape[0] != expected:
                raise ValueError(f"{desc}: the encoder returned shape {tuple(emb.shape)} for a batch of "
                                 f"{expected}; expected [{expected}, dim]")
            if not emb.is_floating_point():
                raise TypeError(f"{desc}: the encoder returned {emb.dtype}, expected floating point embeddings")
            if dim is not None and emb.shape[1] != dim:
                raise ValueError(f"{desc}: embedding dimension changed between batches ({dim} -> {emb.shape[1]})")
            dim = emb.shape[1]
            outputs.append(emb.detach())
    if not outputs:
        raise ValueError(f"{desc}: nothing to encode")
    if show_progress_bar:  # the bar is not left on screen: say what it did
        logger.info("%s: %d in %.1f s", desc, n, time.perf_counter() - started)
    return torch.cat(outputs)


def _check_dataset(dataset, columns: dict[str, str | None]) -> None:
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):
        raise TypeError("expected a datasets.Dataset, got a mapping; pass one split, e.g. dataset['test']")
    if not hasattr(dataset, "column_names"):
        raise TypeError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    if isinstance(dataset.column_names, dict):  # DatasetDict
        raise TypeError(f"expected a datasets.Dataset, got a DatasetDict with splits {list(dataset.column_names)}; "
                        "pass one split, e.g. dataset['test']")
    available = list(dataset.column_names)
    for arg, column in columns.items():
        if column is not None and column not in available:
            raise ValueError(f"column {column!r} ({arg}) not found in the dataset; available columns: {available}")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")


def _column(dataset, name: str) -> list:
    return list(dataset[name])


def _select_languages(row_languages: list, languages: Sequence[str] | None) -> set | None:
    available = sorted(set(row_languages), key=str)
    if languages is None:
        return None
    if isinstance(languages, str):
        languages = [languages]
    missing = [lang for lang in languages if lang not in set(available)]
    if missing:
        raise ValueError(f"language(s) {missing} not in the dataset; available languages: {available}")
    return set(languages)


def _dedup_images(dataset, image_id_column: str | None, n_rows: int) -> tuple[list[int], list[int], list]:
    """(first row of every distinct image, image index of every row, image ids)."""
    ids = _column(dataset, image_id_column) if image_id_column is not None else list(range(n_rows))
    index_of: dict = {}
    first_rows: list[int] = []
    row_to_image: list[int] = []
    for row, image_id in enumerate(ids):
        try:
            index = index_of.setdefault(image_id, len(index_of))
        except TypeError as exc:
            raise TypeError(f"column {image_id_column!r} (image_id_column) must hold hashable ids, row {row} "
                            f"holds {type(image_id).__name__}") from exc
        if index == len(first_rows):
            first_rows.append(row)
        row_to_image.append(index)
    return first_rows, row_to_image, list(index_of)


def _encode_image_rows(encode_image, dataset, image_column: str, rows: list[int], batch_size: int,
                       show_progress_bar: bool | None, num_workers: int | None) -> torch.Tensor:
    """The images of ``rows``, read, decoded (and preprocessed, for a teacher) by DataLoader workers."""
    prepare, encode, device = image_encoder_parts(encode_image)
    return encode_in_batches(encode, len(rows), _image_loader(dataset, image_column, rows), batch_size,
                             "Encoding images", show_progress_bar, prepare=prepare, num_workers=num_workers,
                             device=device)


def _image_loader(dataset, image_column: str, rows: list[int]) -> Callable[[int, int], list]:
    images_only = dataset.select_columns([image_column])

    def get(start: int, stop: int) -> list:
        batch_rows = rows[start:stop]
        values = images_only[batch_rows][image_column]
        return [decode_image(v, f"column {image_column!r} row {r}", paths=True) for v, r in zip(values, batch_rows)]

    return get


# ----------------------------------------------------------------------------------------------------
# captioned images: retrieval + clustering purity
# ----------------------------------------------------------------------------------------------------
class MultilingualEvaluator(Evaluator):
    """Retrieval (per language) and clustering purity on a captioned-image ``datasets.Dataset``.

    One row per (image, caption, language); a caption cell may also hold a list of captions. Images are
    de-duplicated by ``image_id_column`` (``None``: every row is a distinct image) and form a single
    gallery shared by all languages (images only captioned in unselected languages stay as
    distractors). Purity clusters the selected captions with as many clusters as distinct labels
    (``label_column``, default: the image id, i.e. "captions of the same image belong together").

    Calling the evaluator returns ``{"retrieval": per_language_retrieval(...), "purity":
    per_language_purity(...)}`` (see those functions for the keys). With ``parallel_column`` (a column that
    holds the same caption in ``reference_language`` on every row, e.g. ``"english"``), it adds
    ``"consistency": cross_lingual_consistency(...)``: captions are parallel when they share the image and
    that column's value.

    :meth:`metrics` returns the same numbers flat, prefixed with ``name`` (what the trainer logs; primary
    metric ``t2i_R@1_mean``, greater is better).
    """

    primary_metric = "t2i_R@1_mean"
    greater_is_better = True

    def __init__(
        self,
        dataset,
        *,
        image_column: str = "image",
        caption_column: str = "caption",
        language_column: str = "language",
        image_id_column: str | None = "image_id",
        label_column: str | None = None,
        languages: Sequence[str] | None = None,
        parallel_column: str | None = None,
        reference_language: str = "en",
        batch_size: int = 64,
        ks: Sequence[int] = (1, 5, 10),
        mrr_k: int | None = 10,
        chunk_size: int = 4096,
        compute_purity: bool = True,
        purity_seed: int = 0,
        purity_n_init: int = 3,
        show_progress_bar: bool | None = None,
        name: str = "",
    ):
        self.name = name
        _check_dataset(dataset, {"image_column": image_column, "caption_column": caption_column,
                                 "language_column": language_column, "image_id_column": image_id_column,
                                 "label_column": label_column, "parallel_column": parallel_column})
        if language_column is None:
            raise ValueError("language_column is required (name the column that holds each caption's language)")
        self.dataset = dataset
        self.image_column = image_column
        self.batch_size = batch_size
        self.ks, self.mrr_k, self.chunk_size = tuple(ks), mrr_k, chunk_size
        self.compute_purity = compute_purity
        self.purity_seed, self.purity_n_init = purity_seed, purity_n_init
        self.show_progress_bar = show_progress_bar

        n_rows = len(dataset)
        row_languages = _column(dataset, language_column)
        selected = _select_languages(row_languages, languages)
        self.image_rows, row_to_image, self.image_ids = _dedup_images(dataset, image_id_column, n_rows)
        row_labels = _column(dataset, label_column) if label_column is not None else row_to_image
        captions = _column(dataset, caption_column)
        parallel = _column(dataset, parallel_column) if parallel_column is not None else None
        self.reference_language = reference_language
        self.caption_groups: list | None = [] if parallel is not None else None

        self.captions: list[str] = []
        self.caption_languages: list[str] = []
        self.caption_labels: list = []
        caption_image: list[int] = []
        for row, (cell, lang) in enumerate(zip(captions, row_languages)):
            if selected is not None and lang not in selected:
                continue
            texts = list(cell) if isinstance(cell, (list, tuple)) else [cell]
            for text in texts:
                if not isinstance(text, str):
                    raise TypeError(f"column {caption_column!r} row {row} holds {type(text).__name__}, "
                                    "expected a string (or a list of strings)")
                if is_blank_text(text):
                    raise ValueError(f"column {caption_column!r} row {row} holds an empty caption ({text!r} is "
                                     f"{BLANK_TEXT})")
                self.captions.append(text)
                self.caption_languages.append(lang)
                self.caption_labels.append(row_labels[row])
                caption_image.append(row_to_image[row])
                if parallel is not None:
                    self.caption_groups.append((row_to_image[row], parallel[row]))
        if not self.captions:
            raise ValueError("no captions to evaluate")
        self.caption_image = torch.tensor(caption_image, dtype=torch.long)
        self.languages = sorted(set(self.caption_languages), key=str)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(images={len(self.image_rows)}, captions={len(self.captions)}, "
                f"languages={self.languages})")

    def encode_images(self, encode_image: ImageEncoder, num_workers: int | None = None) -> torch.Tensor:
        """Embeddings of the de-duplicated image gallery, ``[n_images, d]`` (reusable across calls).

        ``encode_image`` is a callable on PIL images or a teacher (or its ``encode_image``): a teacher's image
        processor then runs in the ``num_workers`` DataLoader workers that read and decode the images (``None``:
        :func:`~mvld_hf.image_pipeline.default_num_workers`, none for a small gallery; ``0``: all in this
        process)."""
        return _encode_image_rows(encode_image, self.dataset, self.image_column, self.image_rows, self.batch_size,
                                  self.show_progress_bar, num_workers)

    def encode_texts(self, encode_text: TextEncoder) -> torch.Tensor:
        """Embeddings of the selected captions, ``[n_captions, d]``."""
        return encode_in_batches(encode_text, len(self.captions), lambda a, b: self.captions[a:b],
                                 self.batch_size, "Encoding captions", self.show_progress_bar)

    def __call__(self, encode_text: TextEncoder, encode_image: ImageEncoder | None = None, *,
                 image_embeddings: torch.Tensor | None = None) -> dict[str, dict]:
        if (encode_image is None) == (image_embeddings is None):
            raise ValueError("pass exactly one of encode_image and image_embeddings")
        if image_embeddings is None:
            image_embeddings = self.encode_images(encode_image)
        elif image_embeddings.shape[0] != len(self.image_rows):
            raise ValueError(f"image_embeddings has {image_embeddings.shape[0]} rows but the gallery has "
                             f"{len(self.image_rows)} images (use encode_images of this evaluator)")
        text_embeddings = self.encode_texts(encode_text)
        if text_embeddings.shape[1] != image_embeddings.shape[1]:
            raise ValueError(f"text embeddings have dim {text_embeddings.shape[1]} but image embeddings have dim "
                             f"{image_embeddings.shape[1]}: the text encoder does not share the image space")
        image_embeddings = image_embeddings.to(text_embeddings.device)
        results: dict[str, dict] = {
            "retrieval": per_language_retrieval(
                text_embeddings, self.caption_languages, image_embeddings,
                self.caption_image.to(text_embeddings.device),
                ks=self.ks, mrr_k=self.mrr_k, chunk_size=self.chunk_size, show_progress_bar=self.show_progress_bar)
        }
        if self.compute_purity:
            results["purity"] = per_language_purity(text_embeddings, self.caption_labels, self.caption_languages,
                                                    seed=self.purity_seed, n_init=self.purity_n_init,
                                                    show_progress_bar=self.show_progress_bar)
        if self.caption_groups is not None and self.reference_language in self.caption_languages:
            results["consistency"] = cross_lingual_consistency(text_embeddings, image_embeddings,
                                                               self.caption_languages, self.caption_groups,
                                                               reference=self.reference_language,
                                                               chunk_size=self.chunk_size)
        # decided once for every table of this encoder (mvld_hf.evaluation.collapse): marked, never scored
        results["collapsed"] = sorted(collapse_reasons(text_embeddings, self.caption_languages))
        return results

    evaluate = __call__

    def metrics(self, encode_text: TextEncoder, encode_image: ImageEncoder | None = None, *,
                image_embeddings: torch.Tensor | None = None) -> dict[str, float]:
        """Flat metrics prefixed with ``name``: ``t2i_R@1_<lang>`` per language, ``<metric>_mean`` for every
        retrieval metric averaged over languages and, with purity, ``purity_mixed``; ``collapsed_languages``: how
        many languages' embeddings are collapsed (:mod:`mvld_hf.evaluation.collapse`; > 0 means purity rewards a
        collapse)."""
        results = self(encode_text, encode_image, image_embeddings=image_embeddings)
        out = {}
        for lang, values in results["retrieval"].items():
            if lang == "mean":
                out.update({f"{metric}_mean": value for metric, value in values.items()})
            elif lang != "all":
                out[f"t2i_R@1_{lang}"] = values["t2i_R@1"]
        if "purity" in results:
            out["purity_mixed"] = results["purity"]["mixed"]
        out["collapsed_languages"] = len(results["collapsed"])  # mvld_hf.evaluation.collapse
        return self.prefix_name_to_metrics({k: float(v) for k, v in out.items()})


# ----------------------------------------------------------------------------------------------------
# multiple-choice VQA
# ----------------------------------------------------------------------------------------------------
def _answer_index(answer, options: list[str], row: int, answer_column: str) -> int:
    if isinstance(answer, (bool, np.bool_)):
        raise TypeError(f"column {answer_column!r} row {row} holds a bool; expected an option index or text")
    if isinstance(answer, (int, np.integer)):
        index = int(answer)
    elif isinstance(answer, str):
        if answer not in options:
            raise ValueError(f"column {answer_column!r} row {row}: answer {answer!r} is not one of the options "
                             f"{options}")
        index = options.index(answer)
    else:
        raise TypeError(f"column {answer_column!r} row {row} holds {type(answer).__name__}; expected an option "
                        "index (int) or the text of the right option")
    if not 0 <= index < len(options):
        raise IndexError(f"column {answer_column!r} row {row}: answer index {index} but the row has "
                         f"{len(options)} options")
    return index


def evaluate_vqa(
    encode_text: TextEncoder,
    encode_image: ImageEncoder | None,
    dataset,
    *,
    image_column: str = "image",
    question_column: str | None = "question",
    options_column: str = "options",
    answer_column: str = "answer",
    language_column: str | None = "language",
    image_id_column: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    languages: Sequence[str] | None = None,
    batch_size: int = 64,
    image_embeddings: torch.Tensor | None = None,
    show_progress_bar: bool | None = None,
    num_workers: int | None = None,
) -> dict[str, dict[str, float]]:
    """Multiple-choice VQA accuracy (CVQA / ALM-Bench format) with image-text similarity.

    One row per question: ``image``, ``question`` (``question_column=None``: options only), ``options``
    (list of strings, any length >= 1), ``answer`` (index of the right option, or its text) and
    ``language`` (``None``: no per-language split). Option texts are ``format_option(question, option,
    template)``. Images are de-duplicated by ``image_id_column`` when given; ``image_embeddings`` (one
    row per de-duplicated image) skips image encoding; otherwise ``num_workers`` DataLoader workers read, decode
    (and, for a teacher's ``encode_image``, preprocess) the images (see ``MultilingualEvaluator.encode_images``).
    Returns :func:`vqa_accuracy`'s dict.
    """
    _check_dataset(dataset, {"image_column": image_column, "question_column": question_column,
                             "options_column": options_column, "answer_column": answer_column,
                             "language_column": language_column, "image_id_column": image_id_column})
    if (encode_image is None) == (image_embeddings is None):
        raise ValueError("pass exactly one of encode_image and image_embeddings")
    n_rows = len(dataset)
    row_languages = _column(dataset, language_column) if language_column is not None else None
    selected = _select_languages(row_languages, languages) if row_languages is not None else None
    if languages is not None and row_languages is None:
        raise ValueError("languages was given but language_column is None")
    image_rows, row_to_image, _ = _dedup_images(dataset, image_id_column, n_rows)
    questions = _column(dataset, question_column) if question_column is not None else [""] * n_rows
    all_options = _column(dataset, options_column)
    answers = _column(dataset, answer_column)

    texts: list[str] = []
    offsets = [0]
    kept_answers, kept_images, kept_languages = [], [], []
    for row in range(n_rows):
        if selected is not None and row_languages[row] not in selected:
            continue
        options = all_options[row]
        if isinstance(options, str) or not isinstance(options, Sequence) or len(options) == 0:
            raise ValueError(f"column {options_column!r} row {row} must hold a non-empty list of option strings, "
                             f"got {options!r}")
        options = list(options)
        question = questions[row] if questions[row] is not None else ""
        for option in options:
            if not isinstance(option, str):
                raise TypeError(f"column {options_column!r} row {row} holds a {type(option).__name__} option")
            texts.append(format_option(question, option, template))
        offsets.append(len(texts))
        kept_answers.append(_answer_index(answers[row], options, row, answer_column))
        kept_images.append(row_to_image[row])
        if row_languages is not None:
            kept_languages.append(row_languages[row])

    if image_embeddings is None:
        image_embeddings = _encode_image_rows(encode_image, dataset, image_column, image_rows, batch_size,
                                              show_progress_bar, num_workers)
    elif image_embeddings.shape[0] != len(image_rows):
        raise ValueError(f"image_embeddings has {image_embeddings.shape[0]} rows but the dataset has "
                         f"{len(image_rows)} distinct images")
    option_embeddings = encode_in_batches(encode_text, len(texts), lambda a, b: texts[a:b], batch_size,
                                          "Encoding options", show_progress_bar)
    device = option_embeddings.device
    question_images = image_embeddings.to(device)[torch.tensor(kept_images, dtype=torch.long, device=device)]
    return vqa_accuracy(question_images, option_embeddings, torch.tensor(kept_answers),
                        languages=kept_languages if row_languages is not None else None,
                        option_offsets=torch.tensor(offsets))
