"""Batched inference helpers shared by training, evaluation and export."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data_utils import BLANK_TEXT, embedding_from_output, is_blank_text


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """Reject non-strings and strings without a visible character (:func:`~mvld_hf.data_utils.is_blank_text`)
    with a message naming the first offender."""
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is a {type(text).__name__}, expected a string: {text!r}")
        if is_blank_text(text):
            raise ValueError(f"{what}[{i}] is {BLANK_TEXT} ({text!r}); drop or fix such rows before distilling")
    return texts


def position_limit(model) -> int | None:
    """The longest token sequence (special tokens included) ``model``'s learned position table can embed, or
    ``None`` when it has none (rotary/relative positions).

    That is ``max_position_embeddings``, less ``padding_idx + 1`` for RoBERTa-style embeddings (XLM-R,
    CamemBERT, ...), whose position ids start after the padding index: XLM-R's 514 positions hold 512 tokens.
    A PEFT-wrapped model is looked through.

    Example::

        >>> from mvld_hf.testing import tiny_backbone_config
        >>> from transformers import AutoModel
        >>> position_limit(AutoModel.from_config(tiny_backbone_config(100, max_positions=66)))  # padding_idx 0
        65
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    root = getattr(model, "backbone", None) or getattr(model, "text_model", None) or model
    for module in root.modules():
        table = getattr(module, "position_embeddings", None)
        if isinstance(table, torch.nn.Embedding):
            offset = table.padding_idx + 1 if table.padding_idx is not None else 0
            return table.num_embeddings - offset
    return None


def effective_max_length(model, max_length: int) -> int:
    """``min(max_length, position_limit(model))``: captions longer than the position table cannot be embedded."""
    limit = position_limit(model)
    return max_length if limit is None else min(max_length, limit)


@torch.no_grad()
def encode_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = False,
    show_progress_bar: bool = False,
) -> torch.Tensor:
    """Embed ``texts`` with a model exposing ``get_text_features(input_ids, attention_mask)``.

    Texts are processed longest-first (less padding) and returned in input order as float32 on the CPU. They are
    truncated to :func:`effective_max_length` tokens (``max_length``, at most what the position table holds).
    """
    texts = check_texts(texts)
    max_length = effective_max_length(model, max_length)
    if not texts:
        raise ValueError("encode_texts got no texts")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[torch.Tensor] = [None] * len(texts)  # type: ignore[list-item]
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="Encoding texts", disable=not show_progress_bar):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        emb = model.get_text_features(input_ids=batch["input_ids"].to(device),
                                      attention_mask=batch["attention_mask"].to(device))
        emb = embedding_from_output(emb).float().cpu()  # transformers dual encoders return a ModelOutput
        for j, i in enumerate(idx):
            out[i] = emb[j]
    model.train(was_training)
    result = torch.stack(out)
    return F.normalize(result, dim=-1) if normalize else result
