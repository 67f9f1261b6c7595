r"""DRG: distributional replication plus a scale-free English-control geometry term (a candidate for the paper's
Open Question 1: one objective for retrieval and VQA).

Hypothesis (written before measuring; docs/study.md, "One objective for retrieval and VQA"):

- DR matches only the teacher's *ranking* of anchors (a softmax of cosines at tau 0.05 over a memory). It leaves
  the student's absolute position free: with a real pretrained student DR ends with a cosine to its own anchor
  of ~0.5-0.9 and a spread (mean pairwise cosine) far below the teacher's, i.e. a stretched copy of the teacher's
  space whose text->anchor ranking is right. Text->image retrieval only reads that ranking, so DR wins it.
- VQA (and image->text retrieval) rank the *student's* texts against one teacher image: they need the student's
  texts to sit where the teacher's would, the absolute geometry ED's MSE enforces (for the caption and for the
  student's own English). That is why ED wins VQA and DR does not (the study: DR's I2T R@1 32.6 vs ED 50.5).
- ED's MSE has the scale of ``||a||^2 / d`` (0.6 for the offline CLIP teacher's norm-15 anchors, 0.0026 for
  MiniLM's unit-norm ones: a 230x range), so a fixed weight beside DR's KL means different things with different
  teachers, and its equal weight on every direction of the anchor (the large shared mean included) is a weak
  ranking signal.

So: keep DR's ranking term and add ED's geometry in a scale-free form, the cosine distance of the caption and of
the student's English to the anchor:

.. math::
    \mathcal{L}_{DRG} = \mathcal{L}_{DR}(s, t, a, Q)
        + \lambda\,\tfrac{1}{B}\sum_i \big[(1 - \cos(s_i, a_i)) + (1 - \cos(s^{en}_i, a_i))\big]

The geometry term is ED with ``normalize_features=True`` multiplied by ``d / 2`` (independent of the anchors'
norm and dimension); ``lambda`` defaults to 1 (the two terms are then of the same order after a warm start).
"""

from __future__ import annotations

import torch

from ._common import check_embeddings, check_temperature, row_cosine
from .distributional_replication import distributional_replication
from .soft_logit import DEFAULT_STUDENT_TEMPERATURE, DEFAULT_TEACHER_TEMPERATURE

DEFAULT_GEOMETRY_WEIGHT = 1.0


def dr_geometry(
    s: torch.Tensor,
    s_en: torch.Tensor,
    t: torch.Tensor,
    a: torch.Tensor,
    queue: torch.Tensor,
    teacher_temperature: float = DEFAULT_TEACHER_TEMPERATURE,
    student_temperature: float = DEFAULT_STUDENT_TEMPERATURE,
    include_positive: bool = True,
    geometry_weight: float = DEFAULT_GEOMETRY_WEIGHT,
) -> dict[str, torch.Tensor]:
    r"""DR + ``geometry_weight`` x mean cosine distance of the caption and the student's English to the anchor.

    .. math::
        \mathcal{L}_{DRG} = \mathcal{L}_{DR} + \lambda\,\overline{(1 - \cos(s_i, a_i)) + (1 - \cos(s^{en}_i, a_i))}

    Args:
        s: student embeddings of the training captions [B, d]; s_en: the student's embeddings of their English
            originals [B, d]; t: teacher English-caption embeddings [B, d]; a: anchors [B, d]; queue: [K, d]
            earlier anchors (see :func:`distributional_replication`).
        teacher_temperature, student_temperature, include_positive: DR's settings.
        geometry_weight: lambda (> 0).

    Returns:
        ``{"loss": dr + lambda * geometry, "dr": DR's KL, "geometry": the cosine-distance term (unweighted),
        "caption_cosine", "english_cosine": detached mean cosines to the anchor, "accuracy": DR's}``.

    Example::

        >>> a = torch.eye(4)[:2]; queue = torch.eye(4)[2:]
        >>> out = dr_geometry(a, a, a, a, queue)
        >>> float(out["loss"]) < 1e-6, float(out["caption_cosine"])
        (True, 1.0)
        >>> float(dr_geometry(a, -a, a, a, queue)["geometry"])  # English pointing away: distance 2
        2.0
    """
    check_embeddings("s_en", s_en, s, "s")
    check_temperature("geometry_weight", geometry_weight)
    dr = distributional_replication(s, t, a, queue, teacher_temperature=teacher_temperature,
                                    student_temperature=student_temperature, include_positive=include_positive)
    a = a.detach()
    caption_cos, english_cos = row_cosine(s, a), row_cosine(s_en, a)
    geometry = (1 - caption_cos).mean() + (1 - english_cos).mean()
    return {"loss": dr["loss"] + geometry_weight * geometry, "dr": dr["loss"], "geometry": geometry,
            "caption_cosine": caption_cos.detach().mean(), "english_cosine": english_cos.detach().mean(),
            "accuracy": dr["accuracy"]}
