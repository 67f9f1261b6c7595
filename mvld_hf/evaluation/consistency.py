"""Cross-lingual consistency: does a caption retrieve the same image as its parallel reference caption?

For parallel captions (the same caption of the same image in several languages), a multilingual encoder is
consistent when every language behaves like the reference language (English for an English teacher). Per
language ``L`` (reference excluded) this reports

* ``top1_agreement``: how much more often than chance an ``L`` caption's top-1 retrieved image is the one its
  parallel reference caption retrieves (right or wrong: it measures agreement, not accuracy), as Cohen's kappa
  ``(raw - chance) / (1 - chance)``: 1 when they always agree, 0 when no more often than two captions drawn
  at random from each language's top-1 images would. A constant encoder, which sends every caption to the same
  image, agrees "always" but scores 0;
* ``top1_agreement_raw``: the plain fraction of captions that agree, and ``top1_agreement_chance`` that chance
  level (the sum over images of the two languages' shares of top-1 hits);
* ``cosine``: the mean cosine similarity between a caption's embedding and its parallel reference caption's,
  and ``cosine_chance``: the mean cosine with the reference captions overall (a constant encoder: 1 and 1).

Ties count against, as in retrieval: a caption whose best image score is tied with another image's has no top-1
and agrees with nothing. ``"mean"`` averages each value over the languages. Captions without a reference partner
are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F

from .base import group_by_language

__all__ = ["cross_lingual_consistency"]

logger = logging.getLogger(__name__)


def _top1(texts: torch.Tensor, images: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Each caption's top-1 image, or -1 when its best score is tied with another image's (ties count against)."""
    out = []
    for i in range(0, len(texts), chunk_size):
        scores = texts[i:i + chunk_size] @ images.T
        if scores.shape[1] < 2:
            out.append(torch.zeros(len(scores), dtype=torch.long, device=scores.device))
            continue
        best = scores.topk(2, dim=1)
        tied = best.values[:, 0] <= best.values[:, 1]
        out.append(torch.where(tied, torch.full_like(best.indices[:, 0], -1), best.indices[:, 0]))
    return torch.cat(out)


@torch.no_grad()
def cross_lingual_consistency(text_emb: torch.Tensor, image_emb: torch.Tensor, languages: Sequence[str],
                              groups: Sequence[Hashable], reference: str = "en",
                              chunk_size: int = 4096) -> dict[str, dict[str, float]]:
    """Per-language ``{"top1_agreement", "top1_agreement_raw", "top1_agreement_chance", "cosine",
    "cosine_chance"}`` against the ``reference`` language (see module doc).

    ``groups[i]`` identifies caption ``i``'s parallel set (e.g. ``(image_id, english caption)``).

    >>> t = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 0.0]])
    >>> out = cross_lingual_consistency(t, torch.eye(2), ["en", "de", "en", "de"], [0, 0, 1, 1])
    >>> out["de"]["top1_agreement_raw"], out["de"]["top1_agreement_chance"], out["de"]["top1_agreement"]
    (0.5, 0.5, 0.0)
    """
    text_emb, image_emb = torch.as_tensor(text_emb), torch.as_tensor(image_emb)
    languages, groups = list(languages), list(groups)
    if not (text_emb.shape[0] == len(languages) == len(groups)):
        raise ValueError(f"text_emb ({text_emb.shape[0]} rows), languages ({len(languages)}) and groups "
                         f"({len(groups)}) must have the same length")
    by_lang = group_by_language(languages, ("mean",))
    if reference not in by_lang:
        raise ValueError(f"reference language {reference!r} has no captions (languages: {sorted(by_lang)})")
    texts = F.normalize(text_emb.float(), dim=-1)
    images = F.normalize(image_emb.to(texts.device).float(), dim=-1)
    top1 = _top1(texts, images, chunk_size)
    n_images = images.shape[0]
    partner = {groups[i]: i for i in by_lang[reference]}
    out: dict[str, dict[str, float]] = {}
    degenerate = []
    for lang in sorted(by_lang, key=str):
        if lang == reference:
            continue
        pairs = [(i, partner[groups[i]]) for i in by_lang[lang] if groups[i] in partner]
        if not pairs:
            continue
        idx = torch.tensor([p[0] for p in pairs], device=texts.device)
        ref = torch.tensor([p[1] for p in pairs], device=texts.device)
        mine, theirs = top1[idx], top1[ref]
        raw = float(((mine == theirs) & (mine >= 0)).double().mean())
        # chance: two captions drawn independently from each language's top-1 images agree (a tie never does)
        shares = [torch.bincount(t[t >= 0], minlength=n_images).double() / len(t) for t in (mine, theirs)]
        chance = float((shares[0] * shares[1]).sum())
        if chance >= 1.0 - 1e-9:
            degenerate.append(str(lang))
            kappa = 0.0
        else:
            kappa = (raw - chance) / (1.0 - chance)
        out[lang] = {"top1_agreement": kappa, "top1_agreement_raw": raw, "top1_agreement_chance": chance,
                     "cosine": float((texts[idx] * texts[ref]).sum(-1).double().mean()),
                     "cosine_chance": float(texts[idx].double().mean(0) @ texts[ref].double().mean(0))}
    if degenerate:
        logger.warning("consistency: every caption of %s and of %r retrieves the same image (a collapsed encoder?): "
                       "their agreement is chance and scores 0", ", ".join(degenerate), reference)
    if out:
        keys = next(iter(out.values())).keys()
        out["mean"] = {key: sum(v[key] for v in out.values()) / len(out) for key in keys}
    return out
