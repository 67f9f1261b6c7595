"""Shared pieces of the distillation losses: argument checks, cosine logits and a safe soft-target KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_embeddings(name: str, x: torch.Tensor, like: torch.Tensor | None = None, like_name: str = "") -> None:
    """Raise a clear error unless ``x`` is a 2-D floating tensor (with the same shape as ``like`` if given)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [batch, dim], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if like is not None and x.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but {like_name} has shape {tuple(like.shape)}; "
            "student and teacher embeddings must have the same batch size and dimension "
            "(set the student's projection_dim to the teacher's embedding dim)"
        )


def check_temperature(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def cosine_logits(x: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """cos(x_i, keys_j) / temperature, computed in float32: [B, K]."""
    x = F.normalize(x.float(), dim=-1)
    keys = F.normalize(keys.float(), dim=-1)
    return x @ keys.T / temperature


def row_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos(x_i, y_i) for each row, in float32: [B]."""
    return F.cosine_similarity(x.float(), y.float(), dim=-1)


def soft_target_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """mean_i KL(softmax(teacher_logits_i) || softmax(student_logits_i)), in float32.

    The teacher side is handled in log space: with a tiny temperature some teacher probabilities underflow to
    exact zeros, and ``p * (log p - log q)`` is then taken as 0 (its limit) instead of ``0 * -inf = NaN``.
    """
    log_p = F.log_softmax(teacher_logits.float(), dim=-1)
    log_q = F.log_softmax(student_logits.float(), dim=-1)
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=-1).mean()
