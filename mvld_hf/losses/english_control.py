"""ED: English-control distillation."""

from __future__ import annotations

import torch

from ._common import check_embeddings
from .feature_distillation import feature_distillation


def english_control(
    s: torch.Tensor, s_en: torch.Tensor, a: torch.Tensor, normalize: bool = False, **mse_options
) -> dict[str, torch.Tensor]:
    r"""English-control distillation (ED): FD on the caption plus FD on its English original.

    .. math:: \mathcal{L}_{ED} = \mathrm{MSE}(s, a) + \mathrm{MSE}(s^{en}, a)

    The second term keeps the student's own English embedding on the anchor, so the languages cannot drift
    together away from it (the paper finds ED best for out-of-domain VQA). This is what
    sentence-transformers' ``make_multilingual.py`` trains (columns ``english`` and ``non_english``).

    Args:
        s: student embeddings of the training captions [B, d].
        s_en: student embeddings of the English captions of the same rows [B, d].
        a: teacher anchors [B, d].
        normalize: compare unit vectors (see :func:`feature_distillation`).
        mse_options: FD's MSE options (``centered_weight``, ``mean_weight``, ``anchor_centering``,
            ``whitening``), applied to both terms.

    Returns:
        ``{"loss": caption + english, "caption": MSE(s, a), "english": MSE(s_en, a)}``.

    Example::

        >>> a = torch.zeros(1, 2)
        >>> english_control(torch.ones(1, 2), 2 * torch.ones(1, 2), a)["loss"]
        tensor(5.)
    """
    check_embeddings("s", s)
    check_embeddings("s_en", s_en, s, "s")
    caption = feature_distillation(s, a, normalize=normalize, **mse_options)["loss"]
    english = feature_distillation(s_en, a, normalize=normalize, **mse_options)["loss"]
    return {"loss": caption + english, "caption": caption, "english": english}
