"""Multiple-choice VQA scored by image-text similarity (CVQA / ALM-Bench style).

Each question has one image, ``M`` answer options (``M`` may vary per question) and the index of the
right option. Every option is turned into a text (by default ``"{question} {option}"``), embedded with the
text encoder and scored by cosine similarity to the image embedding; the best-scoring option is the
model's answer.

Ties count against the model, as in :mod:`mvld_hf.evaluation.retrieval`: a question is answered correctly
only if the right option scores *strictly* higher than every other option. (Picking e.g. the first of the
tied options would let a collapsed text encoder, whose options all score the same, collect the accuracy
of a fixed answer position.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import group_by_language

__all__ = ["format_option", "vqa_scores", "vqa_accuracy", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = "{question} {option}"


def format_option(question: str, option: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The text that represents ``option`` for ``question``, e.g. ``"What is this? A dog"``.

    ``template`` uses the fields ``{question}`` and ``{option}``; surrounding whitespace is stripped so
    an empty question with the default template leaves just the option.
    """
    try:
        return template.format(question=question if question is not None else "", option=option).strip()
    except (KeyError, IndexError) as exc:
        raise ValueError(f"template {template!r} may only use the fields {{question}} and {{option}}") from exc


def _check_offsets(option_offsets, n_questions: int, n_options: int) -> torch.Tensor:
    offsets = torch.as_tensor(option_offsets)
    if offsets.dim() != 1 or offsets.is_floating_point() or offsets.dtype == torch.bool:
        raise ValueError("option_offsets must be a 1-D integer tensor")
    offsets = offsets.long()
    if offsets.numel() != n_questions + 1:
        raise ValueError(f"option_offsets must have n_questions + 1 = {n_questions + 1} entries "
                         f"(start of each question's options, then the end), got {offsets.numel()}")
    if int(offsets[0]) != 0 or int(offsets[-1]) != n_options:
        raise ValueError(f"option_offsets must start at 0 and end at the number of option rows ({n_options}), "
                         f"got {int(offsets[0])} .. {int(offsets[-1])}")
    counts = offsets[1:] - offsets[:-1]
    if n_questions and int(counts.min()) < 1:
        q = int(torch.nonzero(counts < 1)[0])
        raise ValueError(f"question {q} has no options (option_offsets must be strictly increasing)")
    return offsets


@torch.no_grad()
def vqa_scores(
    image_emb: torch.Tensor,
    option_emb: torch.Tensor,
    option_offsets: torch.Tensor | Sequence[int] | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Similarity of each question's image to each of its options: ``[N, M_max]`` float32, padded with
    ``-inf`` where a question has fewer options.

    ``option_emb`` is either ``[N, M, d]`` (same number of options everywhere) or a flat ``[T, d]`` with
    ``option_offsets`` (``N + 1`` entries; question ``i`` owns rows ``offsets[i]:offsets[i + 1]``).
    """
    image_emb = torch.as_tensor(image_emb)
    option_emb = torch.as_tensor(option_emb)
    if image_emb.dim() != 2:
        raise ValueError(f"image_emb must be 2-D [n_questions, dim], got shape {tuple(image_emb.shape)}")
    n, d = image_emb.shape
    device = image_emb.device
    image = image_emb.detach().to(torch.float32)
    if option_offsets is None:
        if option_emb.dim() != 3:
            raise ValueError("option_emb must be [n_questions, n_options, dim], or a flat [n_option_rows, dim] "
                             f"tensor together with option_offsets; got shape {tuple(option_emb.shape)}")
        if option_emb.shape[0] != n:
            raise ValueError(f"option_emb has {option_emb.shape[0]} questions but image_emb has {n}")
        if option_emb.shape[1] < 1:
            raise ValueError("every question needs at least one option")
        options = option_emb.detach().to(device=device, dtype=torch.float32)
        mask = None
    else:
        if option_emb.dim() != 2:
            raise ValueError(f"with option_offsets, option_emb must be flat [n_option_rows, dim], got shape "
                             f"{tuple(option_emb.shape)}")
        offsets = _check_offsets(option_offsets, n, option_emb.shape[0]).to(device)
        counts = offsets[1:] - offsets[:-1]
        m_max = int(counts.max()) if n else 0
        slot = torch.arange(m_max, device=device)
        mask = slot[None, :] < counts[:, None]
        flat = option_emb.detach().to(device=device, dtype=torch.float32)
        options = torch.zeros(n, m_max, flat.shape[-1], device=device)
        options[mask] = flat
    if options.shape[-1] != d:
        raise ValueError(f"embedding dimensions differ: image_emb has dim {d}, option_emb has dim "
                         f"{options.shape[-1]}")
    if not (bool(torch.isfinite(image).all()) and bool(torch.isfinite(options).all())):
        raise ValueError("embeddings contain NaN or Inf values")
    if normalize:
        image = F.normalize(image, dim=-1)
        options = F.normalize(options, dim=-1)
    scores = torch.einsum("nd,nmd->nm", image, options)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def vqa_accuracy(
    image_emb: torch.Tensor,
    option_emb: torch.Tensor,
    answers: torch.Tensor | Sequence[int],
    languages: Sequence[str] | None = None,
    *,
    option_offsets: torch.Tensor | Sequence[int] | None = None,
    normalize: bool = True,
) -> dict[str, dict[str, float]]:
    """Multiple-choice accuracy: ``{"all": {"accuracy": a}}``, plus one entry per language (sorted) and
    ``"mean"`` (unweighted mean over languages) when ``languages`` is given.

    A question counts as correct only if its right option scores strictly higher than all the others
    (ties count as wrong; see the module docstring). See :func:`vqa_scores` for the embedding layouts.
    """
    scores = vqa_scores(image_emb, option_emb, option_offsets=option_offsets, normalize=normalize)
    n = scores.shape[0]
    if n == 0:
        raise ValueError("vqa_accuracy got no questions")
    answers = torch.as_tensor(answers)
    if answers.dim() != 1 or answers.numel() != n:
        raise ValueError(f"answers must be 1-D with one entry per question ({n}), got shape {tuple(answers.shape)}")
    if answers.is_floating_point() or answers.dtype == torch.bool:
        raise TypeError(f"answers must hold integer option indices, got {answers.dtype}")
    answers = answers.long().to(scores.device)
    n_options = torch.isfinite(scores).sum(dim=1)
    bad = (answers < 0) | (answers >= n_options)
    if bool(bad.any()):
        q = int(torch.nonzero(bad)[0])
        raise IndexError(f"answers[{q}] = {int(answers[q])} but question {q} has {int(n_options[q])} options")
    right = scores.gather(1, answers[:, None]).squeeze(1)
    others = scores.scatter(1, answers[:, None], float("-inf"))
    correct = (right > others.max(dim=1).values).cpu()  # padding and the right option itself are -inf
    out: dict[str, dict[str, float]] = {}
    if languages is not None:
        languages = list(languages)
        if len(languages) != n:
            raise ValueError(f"languages has {len(languages)} entries but there are {n} questions")
        by_lang = group_by_language(languages, ("all", "mean"))
        for lang in sorted(by_lang, key=str):
            out[lang] = {"accuracy": float(correct[by_lang[lang]].double().mean())}
    out["all"] = {"accuracy": float(correct.double().mean())}
    if languages is not None:
        out["mean"] = {"accuracy": sum(out[lang]["accuracy"] for lang in by_lang) / len(by_lang)}
    return out
