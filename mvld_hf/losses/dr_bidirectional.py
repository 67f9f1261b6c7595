r"""DRB: distributional replication in both directions (a candidate for the paper's Open Question 1).

Hypothesis (written before measuring; docs/study.md, "One objective for retrieval and VQA"): DR replicates the
teacher's distribution of each *text* over anchors (text -> image ranking: DR wins T2I retrieval and MRR). VQA
and image -> text retrieval read the other direction: one teacher image ranks several of the *student's* texts
(the study's VQA scores four caption options by image-text similarity). Nothing in DR constrains how the
student's texts compare with each other as seen from one anchor (the study: DR's I2T R@1 32.6 against 51.8 for
MCL, whose symmetric InfoNCE trains both directions, and 50.5 for ED, whose MSE pins every text to its anchor).
So add DR's KL in the reverse direction over the batch: for each anchor ``a_j`` the teacher's distribution over
the batch's English texts against the student's over the batch's captions,

.. math::
    \mathcal{L}_{DRB} = \mathcal{L}_{DR}(s, t, a, Q)
        + \frac{1}{B}\sum_{j=1}^{B}
        \mathrm{KL}\Big(\mathrm{softmax}_i\big(\cos(a_j, t_i)/\tau_T\big)\;\Big\|\;
                        \mathrm{softmax}_i\big(\cos(a_j, s_i)/\tau_S\big)\Big)

With text anchors (``t = a``) the reverse target is the teacher's own text-text similarity seen from each anchor;
with image anchors it is the teacher's image -> text distribution. One forward pass (no English captions), so the
cost of a step is DR's.

Its measured results (the offline study and human translations): ``benchmarks/RESULTS.md``, "Measured results
the code refers to".
"""

from __future__ import annotations

import torch

from ._common import check_embeddings, check_temperature, cosine_logits, soft_target_kl
from .distributional_replication import distributional_replication
from .soft_logit import DEFAULT_STUDENT_TEMPERATURE, DEFAULT_TEACHER_TEMPERATURE


def dr_bidirectional(
    s: torch.Tensor,
    t: torch.Tensor,
    a: torch.Tensor,
    queue: torch.Tensor,
    teacher_temperature: float = DEFAULT_TEACHER_TEMPERATURE,
    student_temperature: float = DEFAULT_STUDENT_TEMPERATURE,
    include_positive: bool = True,
    reverse_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    r"""DR (text -> anchors over the queue) + ``reverse_weight`` x the reverse KL (anchor -> the batch's texts).

    .. math::
        \mathcal{L}_{DRB} = \mathcal{L}_{DR}
        + \overline{\mathrm{KL}\big(\mathrm{softmax}_i(\cos(a_j, t_i)/\tau_T)\,\|\,
                                    \mathrm{softmax}_i(\cos(a_j, s_i)/\tau_S)\big)}_j

    Args: as :func:`distributional_replication`; ``reverse_weight`` (> 0, default 1) weighs the reverse KL
    (``--method_kwargs '{"drb": {"reverse_weight": 0.5}}'`` is the loss of ``dr:0.5,drb:0.5``).

    Returns:
        ``{"loss": dr + reverse, "dr": DR's KL, "reverse": the anchor -> text KL, "accuracy": DR's,
        "reverse_accuracy": detached fraction of anchors whose student argmax is the teacher's}``.

    Example::

        >>> a = torch.eye(4)[:2]; queue = torch.eye(4)[2:]
        >>> float(dr_bidirectional(a, a, a, queue)["loss"]) < 1e-6
        True
        >>> s = torch.tensor([[0.0, 1, 0, 0], [1.0, 0, 0, 0]])  # the two texts swapped
        >>> out = dr_bidirectional(s, a, a, queue)
        >>> float(out["reverse"]) > 10, float(out["reverse_accuracy"])
        (True, 0.0)
    """
    check_embeddings("s", s)
    check_embeddings("t", t, s, "s")
    check_embeddings("a", a, s, "s")
    check_temperature("teacher_temperature", teacher_temperature)
    check_temperature("student_temperature", student_temperature)
    check_temperature("reverse_weight", reverse_weight)
    dr = distributional_replication(s, t, a, queue, teacher_temperature=teacher_temperature,
                                    student_temperature=student_temperature, include_positive=include_positive)
    a = a.detach()
    teacher_logits = cosine_logits(a, t.detach(), teacher_temperature)  # [anchor j, text i]
    student_logits = cosine_logits(a, s, student_temperature)
    reverse = soft_target_kl(teacher_logits, student_logits)
    with torch.no_grad():
        reverse_accuracy = (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean()
    return {"loss": dr["loss"] + reverse_weight * reverse, "dr": dr["loss"], "reverse": reverse,
            "accuracy": dr["accuracy"], "reverse_accuracy": reverse_accuracy}
