"""The teacher's targets for a batch: one room for the teacher's side of a training step.

A step's targets are the teacher's embeddings of the batch's English captions (``t``) and the anchors (``a``:
``t``, or the teacher's image embeddings with ``anchor="image"``). They come from one of two places:

- precomputed columns (``teacher_text_embeds`` / ``teacher_image_embeds``, stacked and checked by the collator;
  see :func:`~mvld_hf.precompute_teacher_embeddings`), the fast path;
- the frozen teacher run now, in the training process (:class:`TeacherEmbedder`): each distinct caption of the
  batch embedded once (through an on-disk cache when the stream has one), or, when the collator already
  tokenized the distinct captions in the DataLoader workers (:func:`tokenize_in_collator`, decided once when
  the trainer is built), only the teacher's forward.

Every embedding the teacher produces is checked here, before it is used or cached, by the package's one row
check (:func:`~mvld_hf.embedding_checks.check_embedding_rows`: a NaN/inf row, then a zero row, named).

:func:`teacher_targets` is what the trainer's step and the projection warm start
(:mod:`mvld_hf.student_init`) call; :func:`embed_batch` is what it, the precompute map and the embedded stream
(:mod:`mvld_hf.precompute`, :mod:`mvld_hf.teacher_stream`) call to run the teacher on a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .embedding_checks import NonFiniteEmbeddingError, RowCheck

__all__ = ["RowCheck", "TeacherEmbedder", "TeacherTargets", "dataset_checks", "embed_batch", "in_step_check",
           "teacher_targets", "tokenize_in_collator"]


def _distinct(texts: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """The distinct texts in order of first appearance and, for every text, its distinct text's position (the
    order the collator's ``teacher_text_index`` uses)."""
    position: dict[str, int] = {}
    index = torch.tensor([position.setdefault(t, len(position)) for t in texts], dtype=torch.long)
    return list(position), index


class TeacherEmbedder:
    """A frozen teacher run in the calling process on raw captions/images: each distinct caption of a batch is
    embedded once, and read from / written to ``cache`` (a :class:`~mvld_hf.precompute.TeacherEmbeddingCache`)
    when given. Each method checks what the teacher computed with ``check`` (a
    :class:`~mvld_hf.embedding_checks.RowCheck`; captions are keyed by their text, images by their position)
    before caching or returning it.

    Used by :func:`~mvld_hf.precompute_teacher_embeddings` and by ``DistillationTrainer``'s step, which embeds
    streamed batches where the teacher lives (the training process of each rank), never in DataLoader workers.
    """

    #: whether the step reads the teacher's tokens the collator made (set once by :func:`tokenize_in_collator`)
    tokens_from_collator = False

    def __init__(self, teacher, cache=None, encode_batch_size: int = 64):
        self.teacher, self.cache, self.encode_batch_size = teacher, cache, encode_batch_size

    def embed_texts(self, texts: Sequence[str], check: RowCheck | None = None) -> torch.Tensor:
        """float32 ``[len(texts), dim]`` in input order (on the teacher's device without a cache, else the CPU)."""
        unique, index = _distinct(list(texts))
        if self.cache is None:
            embeddings = self.teacher.encode_text(unique, batch_size=self.encode_batch_size)
            if check is not None:
                check(embeddings, unique)
            return embeddings[index.to(embeddings.device)]
        found = self.cache.get(unique)
        missing = [t for t in unique if t not in found]
        if missing:
            computed = self.teacher.encode_text(missing, batch_size=self.encode_batch_size).float().cpu().numpy()
            if check is not None:  # before it is cached
                check(computed, missing)
            new = dict(zip(missing, computed))
            self.cache.put(new)
            found.update(new)
        embeddings = torch.from_numpy(np.stack([found[t] for t in unique]))
        if check is not None:  # rows read back from the cache too
            check(embeddings, unique)
        return embeddings[index]

    def embed_tokenized(self, tokens: dict[str, torch.Tensor], index, texts: Sequence[str] | None = None,
                        check: RowCheck | None = None) -> torch.Tensor:
        """float32 ``[len(index), dim]`` on the teacher's device: the teacher's forward alone on captions
        tokenized elsewhere (the collator, in DataLoader workers: ``teacher_input_ids`` / ``teacher_attention_mask``
        of the distinct captions ``texts``, ``index`` the distinct caption of every row)."""
        embeddings = self.teacher.encode_tokenized(tokens).float()
        if check is not None:
            check(embeddings, texts)
        return embeddings[torch.as_tensor(index).to(embeddings.device)]

    def embed_prepared_texts(self, prepared: dict, check: RowCheck | None = None) -> torch.Tensor:
        """:meth:`embed_texts` for a batch whose distinct captions were tokenized elsewhere
        (:class:`~mvld_hf.image_pipeline.CaptionTokens`, in DataLoader workers): only the forward runs here."""
        embeddings = torch.cat([self.teacher.encode_tokenized(tokens).float() for tokens in prepared["chunks"]])
        if check is not None:
            check(embeddings, prepared["texts"])
        return embeddings[torch.as_tensor(prepared["index"]).to(embeddings.device)]

    def embed_images(self, images: Sequence, check: RowCheck | None = None) -> torch.Tensor:
        """float32 ``[len(images), dim]`` (PIL images) on the teacher's device."""
        embeddings = self.teacher.encode_image(list(images), batch_size=self.encode_batch_size)
        return embeddings if check is None else check(embeddings)

    def embed_prepared_images(self, prepared, check: RowCheck | None = None) -> torch.Tensor:
        """:meth:`embed_images` for pixels preprocessed elsewhere (``teacher.prepare_images``, in DataLoader
        workers): only the forward runs here."""
        embeddings = self.teacher.encode_prepared_images(prepared).float()
        return embeddings if check is None else check(embeddings)


def embed_batch(embedder: TeacherEmbedder, *, texts: Sequence[str] | None = None, tokens: dict | None = None,
                prepared_texts: dict | None = None, images: Sequence | None = None, prepared_images=None,
                text_check: RowCheck | None = None, image_check: RowCheck | None = None):
    """``(text, image)``: the teacher's embeddings of one batch, every row checked.

    Captions come as raw ``texts`` (each distinct one embedded once), or already tokenized: ``tokens`` from the
    collator (``input_ids``, ``attention_mask`` and ``index`` of the distinct captions ``texts``) or
    ``prepared_texts`` from DataLoader workers; images as PIL ``images`` or ``prepared_images``. Either side is
    ``None`` when nothing of it is given."""
    text = image = None
    if prepared_texts is not None:
        text = embedder.embed_prepared_texts(prepared_texts, text_check)
    elif tokens is not None:
        distinct, _ = _distinct(list(texts))
        text = embedder.embed_tokenized({k: v for k, v in tokens.items() if k != "index"}, tokens["index"], distinct,
                                        text_check)
    elif texts is not None:
        text = embedder.embed_texts(texts, text_check)
    if prepared_images is not None:
        image = embedder.embed_prepared_images(prepared_images, image_check)
    elif images is not None:
        image = embedder.embed_images(images, image_check)
    return text, image


def tokenize_in_collator(embedder: TeacherEmbedder | None, collator, args) -> bool:
    """Decide, once, whether the collator tokenizes the teacher's captions (in the DataLoader workers, where the
    student's are) so that the step runs only the teacher's forward: when the teacher runs in the step on
    captions, without a cache (a cache is keyed by the raw caption). Gives a
    :class:`~mvld_hf.data.DistillationCollator` without a teacher tokenizer the teacher's ``text_tokenizer()``
    and records the decision on ``embedder`` (:attr:`TeacherEmbedder.tokens_from_collator`)."""
    if embedder is None or embedder.cache is not None or not args.needs_teacher_text:
        return False
    if getattr(collator, "teacher_tokenizer", False) is None:
        collator.teacher_tokenizer = embedder.teacher.text_tokenizer()
    embedder.tokens_from_collator = getattr(collator, "teacher_tokenizer", None) is not None
    return embedder.tokens_from_collator


def in_step_check(what: str, step: int, rows: Sequence | None = None) -> RowCheck:
    """The check of the teacher's output inside training step ``step``: a row is named by its caption (captions
    are keyed by their text) or, for images, by its position in the batch."""

    def described(key) -> str:
        return f"{what} {key!r}" if isinstance(key, str) else f"{what} of position {key} of the batch"

    def non_finite(key) -> Exception:
        return NonFiniteEmbeddingError(
            f"the teacher's embedding of {described(key)} at step {step} holds NaN or infinite values; training on "
            "it would turn every weight into NaN. Drop that row, or check the teacher (an fp16 overflow?)")

    return RowCheck("teacher output", lambda key: f"the teacher's embedding of {described(key)} at step {step}",
                    zero_fix="Drop that row, or check the teacher", non_finite=non_finite)


@dataclass
class TeacherTargets:
    """The teacher's side of a batch, as constants on the batch's device: ``text`` (the English captions'
    embeddings, ``None`` when no method needs them) and ``image`` (``None`` unless ``anchor="image"``)."""

    text: torch.Tensor | None
    image: torch.Tensor | None
    anchor: str

    @property
    def anchors(self) -> torch.Tensor:
        """What the losses contrast against and the queue keeps: ``text`` or ``image``, as ``anchor`` says."""
        return self.text if self.anchor == "text" else self.image

    def gathered(self, gather: Callable[[torch.Tensor], torch.Tensor]) -> TeacherTargets:
        """The targets of the global batch (``gather`` applied once per tensor the losses read)."""
        text = None if self.text is None else gather(self.text)
        image = gather(self.image) if self.anchor == "image" else None
        return TeacherTargets(text, image, self.anchor)


def teacher_targets(inputs: dict, args, embedder: TeacherEmbedder | None = None, step: int = 1) -> TeacherTargets:
    """The teacher's targets for a collated batch (``inputs``, on its device) under ``args``
    (:class:`~mvld_hf.DistillationArguments`): the precomputed columns when the batch has them, else the teacher
    run now by ``embedder`` (its output checked, naming the caption and ``step``)."""
    text, image = inputs.get("teacher_text_embeds"), inputs.get("teacher_image_embeds")
    want_text = text is None and args.needs_teacher_text
    want_image = image is None and args.needs_teacher_image
    for wanted, column in ((want_text, "teacher_text_embeds"), (want_image, "teacher_image_embeds")):
        if wanted and embedder is None:
            raise ValueError(f"batch has no {column} and the trainer has no teacher")
    if want_text or want_image:
        texts = inputs["english_texts"] if want_text else None
        tokens = None
        if want_text and embedder.tokens_from_collator and "teacher_input_ids" in inputs:
            tokens = {"input_ids": inputs["teacher_input_ids"], "attention_mask": inputs.get("teacher_attention_mask"),
                      "index": inputs["teacher_text_index"]}
        new_text, new_image = embed_batch(
            embedder, texts=texts, tokens=tokens, images=inputs["images"] if want_image else None,
            text_check=in_step_check("the English caption", step), image_check=in_step_check("the image", step))
        text = new_text if want_text else text
        image = new_image if want_image else image
    device = inputs["input_ids"].device
    text = None if text is None else text.detach().float().to(device)
    image = None if image is None or args.anchor != "image" else image.detach().float().to(device)
    return TeacherTargets(text, image, args.anchor)


def dataset_checks(text_column: str, english_column: str, caption_row: Callable[[str], int],
                   image_column: str | None = None, image_source_column: str = "image",
                   image_row: Callable[[int], int] | None = None) -> tuple[RowCheck, RowCheck | None]:
    """The checks of embeddings computed for a dataset's rows (the precompute map, an embedded stream): a caption
    is named by ``caption_row(text)``, the row where it first appears, an image by ``image_row(position)``."""
    text = RowCheck(text_column, lambda caption: f"row {caption_row(caption)} of the dataset (the teacher's "
                    f"embedding of its '{english_column}' {caption!r})",
                    fix="The teacher cannot embed that caption: drop or fix the row, or check the teacher (an fp16 "
                        "overflow?)")
    image = None if image_column is None else RowCheck(
        image_column, lambda i: f"row {image_row(i)} of the dataset (the teacher's embedding of its "
        f"'{image_source_column}')", fix="The teacher cannot embed that image: drop or fix the row")
    return text, image
