"""One decision, per language, of whether an encoder's embeddings are collapsed, which every table then marks.

A collapsed encoder (every caption mapped to nearly one vector) scores well on metrics that compare an embedding
with something of its own kind: cosine to the parallel caption (1 for a constant encoder), purity (one large
cluster, or clusters split by float noise), translation "spread". So collapse is decided once, here, for each
language of each evaluated encoder, and :func:`~mvld_hf.evaluation.report.format_table` shows ``collapsed`` in
those cells (and in the summary rows that average over them) instead of a number that could look best.

A language is collapsed when its embeddings' mean pairwise cosine (``mean_{i != j} cos(e_i, e_j)``, the
translation evaluator's ``spread``) is at least :data:`COLLAPSE_MEAN_COSINE` (0.99; pretrained multilingual
encoders are anisotropic but stay well below it: multilingual-e5-small 0.91 on our captions,
``tests/test_collapse.py``; the tiny random test teacher 0.90). The rule "every caption retrieves the same image"
is not used: an untrained but uncollapsed encoder (the tests' random CLIP) does that through one hub image.

Evaluator results carry the decision as ``results["collapsed"]``: the sorted list of collapsed languages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from .base import SUMMARY_ROWS, group_by_language

__all__ = ["COLLAPSE_MEAN_COSINE", "mean_pairwise_cosine", "collapse_reasons", "collapsed_from_spread",
           "COLLAPSED_NOTE"]

logger = logging.getLogger(__name__)

#: a language whose embeddings have at least this mean pairwise cosine is collapsed
COLLAPSE_MEAN_COSINE = 0.99
#: what a table's ``collapsed`` cell means (printed under a report that has one)
COLLAPSED_NOTE = (f"collapsed: the encoder's embeddings of that language are collapsed (mean pairwise cosine >= "
                  f"{COLLAPSE_MEAN_COSINE}), so its metrics there, and "
                  "in the summary rows that include it, are not scored")


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """``mean_{i != j} cos(e_i, e_j)`` in O(n d) (the norm of the sum of unit vectors); 0 for fewer than 2 rows.

    >>> round(mean_pairwise_cosine(torch.ones(3, 4)), 6), round(mean_pairwise_cosine(torch.eye(4)), 6)
    (1.0, 0.0)
    """
    units = F.normalize(torch.as_tensor(embeddings).double(), dim=-1)
    n = units.shape[0]
    if n < 2:
        return 0.0
    total = units.sum(0)
    return float((total @ total - (units * units).sum()) / (n * (n - 1)))


@torch.no_grad()
def collapse_reasons(text_emb: torch.Tensor, languages: Sequence[str]) -> dict[str, str]:
    """``{language: why}`` for every collapsed language of ``text_emb`` (rows labelled by ``languages``), see
    the module docstring; an empty dict when none is."""
    texts = torch.as_tensor(text_emb)
    out = {}
    for lang, idx in group_by_language(list(languages), ()).items():
        spread = mean_pairwise_cosine(texts[idx])
        if len(idx) >= 2 and spread >= COLLAPSE_MEAN_COSINE:
            out[str(lang)] = f"mean pairwise cosine {spread:.4f} >= {COLLAPSE_MEAN_COSINE}"
    if out:
        logger.warning("collapsed embeddings in %s: tables mark them 'collapsed' instead of scoring them",
                       "; ".join(f"{lang} ({why})" for lang, why in sorted(out.items())))
    return out


def collapsed_from_spread(per_language: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The collapsed languages of a translation evaluation (``{language: {"spread": ...}}``: the same mean
    pairwise cosine, same threshold), summary rows left out."""
    return sorted(str(lang) for lang, values in per_language.items()
                  if lang not in SUMMARY_ROWS and isinstance(values, Mapping)
                  and float(values.get("spread", 0.0)) >= COLLAPSE_MEAN_COSINE)
