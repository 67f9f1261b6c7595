"""DR: distributional replication against a FIFO queue of teacher anchors."""

from __future__ import annotations

import torch

from ._common import check_embeddings, check_temperature, cosine_logits, row_cosine, soft_target_kl
from .soft_logit import DEFAULT_STUDENT_TEMPERATURE, DEFAULT_TEACHER_TEMPERATURE

DEFAULT_QUEUE_SIZE = 4096


def distributional_replication(
    s: torch.Tensor,
    t: torch.Tensor,
    a: torch.Tensor,
    queue: torch.Tensor,
    teacher_temperature: float = DEFAULT_TEACHER_TEMPERATURE,
    student_temperature: float = DEFAULT_STUDENT_TEMPERATURE,
    include_positive: bool = True,
) -> dict[str, torch.Tensor]:
    r"""Distributional replication (DR): soft-logit distillation over a memory of teacher anchors.

    For row ``i`` the keys are ``K_i = [a_i] + queue`` (``include_positive=True``, SEED style) or
    ``K_i = queue`` (``include_positive=False``, CompRess-1q style), and

    .. math::
        \mathcal{L}_{DR} = \frac{1}{B}\sum_{i=1}^{B}
        \mathrm{KL}\Big(\mathrm{softmax}_k\big(\cos(t_i, K_{i,k})/\tau_T\big)\;\Big\|\;
                        \mathrm{softmax}_k\big(\cos(s_i, K_{i,k})/\tau_S\big)\Big)

    The queue holds teacher anchors of earlier steps (first in, first out; the trainer enqueues each step's
    anchors *after* its loss), so the student learns the teacher's similarity structure over many more samples
    than a batch. Only ``s`` receives gradient. The teacher softmax is computed in float32 and its underflowed
    zeros contribute exactly 0 (no NaN at tiny ``tau_T``; SEED uses 1e-4).

    Defaults: tau_T = tau_S = 0.05, queue of 4096 anchors in the trainer (``DistillationArguments.queue_size``).

    Args:
        s: student embeddings [B, d]; t: teacher English-caption embeddings [B, d]; a: anchors [B, d];
        queue: [K, d] earlier anchors (only the filled rows). K may be 0 when ``include_positive``.

    Returns:
        ``{"loss": scalar, "accuracy": detached fraction of rows whose student argmax equals the teacher's}``.

    Example::

        >>> a = torch.eye(4)[:2]; queue = torch.eye(4)[2:]
        >>> float(distributional_replication(a, a, a, queue)["loss"]) < 1e-6
        True
    """
    check_embeddings("s", s)
    check_embeddings("t", t, s, "s")
    check_embeddings("a", a, s, "s")
    if not torch.is_tensor(queue) or queue.dim() != 2 or queue.shape[1] != s.shape[1]:
        shape = tuple(queue.shape) if torch.is_tensor(queue) else type(queue).__name__
        raise ValueError(f"queue must be [K, {s.shape[1]}], got {shape}")
    if queue.shape[0] == 0 and not include_positive:
        raise ValueError("an empty queue leaves no keys when include_positive=False")
    check_temperature("teacher_temperature", teacher_temperature)
    check_temperature("student_temperature", student_temperature)
    a, queue = a.detach(), queue.detach().to(device=s.device)

    def logits(x: torch.Tensor, temperature: float) -> torch.Tensor:
        queue_logits = cosine_logits(x, queue, temperature)
        if not include_positive:
            return queue_logits
        positive = row_cosine(x, a).unsqueeze(1) / temperature  # own anchor first: [B, 1]
        return torch.cat([positive, queue_logits], dim=1)

    teacher_logits = logits(t.detach(), teacher_temperature)
    student_logits = logits(s, student_temperature)
    loss = soft_target_kl(teacher_logits, student_logits)
    with torch.no_grad():
        accuracy = (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean()
    return {"loss": loss, "accuracy": accuracy}
