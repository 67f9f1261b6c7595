"""FD: feature distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_embeddings


def feature_distillation(s: torch.Tensor, a: torch.Tensor, normalize: bool = False, centered_weight: float = 1.0,
                         mean_weight: float = 1.0, anchor_centering: float = 0.0,
                         whitening: float = 0.0) -> dict[str, torch.Tensor]:
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
        centered_weight, mean_weight: the MSE is the sum of a batch-centred part ``MSE(s - mean(s), a - mean(a))``
            and a mean part ``MSE(mean(s), mean(a))``; these weigh them (1 and 1: the plain MSE, the default).
        anchor_centering: take this share of the batch's anchor mean off the targets (1: the student learns
            centred outputs; issue 32's ablation: FD 0.823 -> 0.835 top-1 on human text, not the +0.04 sought).
        whitening: > 0 weighs the MSE by the inverse of the batch anchors' second moment, shrunk towards its mean
            eigenvalue by this factor: the directions every anchor shares (their mean, their main components) weigh
            less. 0: off.

    The options keep the method an MSE to the anchors; their measured effects are in
    ``benchmarks/RESULTS_real_models.md`` ("FD's and ED's crowding"). What helped most there is not a loss
    option but a fitted bias correction after training: :meth:`MultilingualTextTower.center_outputs`.

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
    if anchor_centering:
        a = a - anchor_centering * a.mean(0, keepdim=True)
    if whitening:
        return {"loss": _whitened_mse(s, a, whitening)}
    if centered_weight == 1.0 and mean_weight == 1.0:
        return {"loss": F.mse_loss(s, a)}
    s_mean, a_mean = s.mean(0, keepdim=True), a.mean(0, keepdim=True)
    centred = F.mse_loss(s - s_mean, a - a_mean)
    mean = F.mse_loss(s_mean, a_mean)
    return {"loss": centered_weight * centred + mean_weight * mean, "centred": centred.detach(),
            "mean": mean.detach()}


def _whitened_mse(s: torch.Tensor, a: torch.Tensor, ridge: float) -> torch.Tensor:
    """MSE in the anchors' whitened coordinates: ``(s - a)^T W (s - a) / d`` with ``W`` the inverse of the
    anchors' second-moment matrix shrunk towards its mean eigenvalue (``ridge``: 1 = equal mix), scaled to
    trace ``d``: directions the anchors share (their mean, their largest components) weigh less."""
    d = a.shape[1]
    second = a.T @ a / a.shape[0]
    scale = second.diagonal().mean()
    weight = torch.linalg.inv(second + ridge * scale * torch.eye(d, device=a.device, dtype=a.dtype))
    weight = weight * d / weight.diagonal().sum()
    diff = s - a
    return ((diff @ weight) * diff).sum(-1).mean() / d
