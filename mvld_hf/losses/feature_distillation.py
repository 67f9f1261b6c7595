"""FD: feature distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_embeddings


def feature_distillation(s: torch.Tensor, a: torch.Tensor, normalize: bool = False) -> dict[str, torch.Tensor]:
    r"""Feature distillation (FD): mean squared error between student embeddings and teacher anchors.

    .. math:: \mathcal{L}_{FD} = \frac{1}{Bd}\sum_{i=1}^{B}\lVert s_i - a_i \rVert_2^2

    where ``s_i`` embeds the training caption (any language) and ``a_i`` is the teacher's anchor (its English
    text embedding, or its image embedding). With ``normalize=True`` both sides are L2-normalised first, which
    makes the loss ``(2 - 2 cos(s_i, a_i)) / d`` per row. This is the objective of M-CLIP and of
    sentence-transformers' multilingual distillation.

    Args:
        s: student embeddings [B, d] (gradient flows into them).
        a: teacher anchors [B, d] (treated as constants).
        normalize: compare unit vectors instead of raw embeddings.

    Returns:
        ``{"loss": scalar}``.

    Example::

        >>> s = torch.tensor([[1.0, 0.0]]); a = torch.tensor([[0.0, 1.0]])
        >>> feature_distillation(s, a)["loss"]
        tensor(1.)
    """
    check_embeddings("s", s)
    check_embeddings("a", a, s, "s")
    s, a = s.float(), a.detach().float()
    if normalize:
        s, a = F.normalize(s, dim=-1), F.normalize(a, dim=-1)
    return {"loss": F.mse_loss(s, a)}
