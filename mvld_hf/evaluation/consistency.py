"""Cross-lingual consistency: does a caption retrieve the same image as its parallel reference caption?

For parallel captions (the same caption of the same image in several languages), a multilingual encoder is
consistent when every language behaves like the reference language (English for an English teacher). Per
language ``L`` (reference excluded) this reports

* ``top1_agreement``: the fraction of ``L`` captions whose top-1 retrieved image is the one that the parallel
  reference caption retrieves (right or wrong: it measures agreement, not accuracy);
* ``cosine``: the mean cosine similarity between a caption's embedding and its parallel reference caption's.

``"mean"`` averages each over the languages. Captions without a reference partner are skipped.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F

from .base import group_by_language

__all__ = ["cross_lingual_consistency"]


@torch.no_grad()
def cross_lingual_consistency(text_emb: torch.Tensor, image_emb: torch.Tensor, languages: Sequence[str],
                              groups: Sequence[Hashable], reference: str = "en",
                              chunk_size: int = 4096) -> dict[str, dict[str, float]]:
    """Per-language ``{"top1_agreement", "cosine"}`` against the ``reference`` language (see module doc).

    ``groups[i]`` identifies caption ``i``'s parallel set (e.g. ``(image_id, english caption)``).

    >>> t = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 0.0]])
    >>> out = cross_lingual_consistency(t, torch.eye(2), ["en", "de", "en", "de"], [0, 0, 1, 1])
    >>> out["de"]["top1_agreement"], out["mean"]["top1_agreement"]
    (0.5, 0.5)
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
    top1 = torch.cat([(texts[i:i + chunk_size] @ images.T).argmax(dim=1) for i in range(0, len(texts), chunk_size)])
    partner = {groups[i]: i for i in by_lang[reference]}
    out: dict[str, dict[str, float]] = {}
    for lang in sorted(by_lang, key=str):
        if lang == reference:
            continue
        pairs = [(i, partner[groups[i]]) for i in by_lang[lang] if groups[i] in partner]
        if not pairs:
            continue
        idx = torch.tensor([p[0] for p in pairs], device=texts.device)
        ref = torch.tensor([p[1] for p in pairs], device=texts.device)
        out[lang] = {"top1_agreement": float((top1[idx] == top1[ref]).double().mean()),
                     "cosine": float((texts[idx] * texts[ref]).sum(-1).double().mean())}
    if out:
        out["mean"] = {key: sum(v[key] for v in out.values()) / len(out) for key in ("top1_agreement", "cosine")}
    return out
