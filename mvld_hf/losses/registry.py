"""The one table of distillation methods: code -> loss function, display name, the inputs it needs and the
``DistillationArguments`` fields it reads.

Config validation (:func:`parse_method`), the trainer's loss dispatch, the model card's method names and the
training benchmark all read :data:`METHODS`; adding a method is one entry here.

The embeddings a loss can take (all ``[batch, dim]``, after any cross-process gather):

- ``s``: the student's embeddings of the training captions;
- ``s_en``: the student's embeddings of the English captions of the same rows (ED);
- ``t``: the teacher's embeddings of the English captions (the teacher side of SD and DR);
- ``a``: the anchors (``t`` with ``anchor="text"``, the teacher's image embeddings with ``anchor="image"``);
- ``keys``: the DR queue's anchors (the trainer keeps the queue).

>>> import torch
>>> from mvld_hf import DistillationArguments
>>> args = DistillationArguments(output_dir="out", method="fd", report_to="none")
>>> s = torch.ones(2, 4)
>>> METHODS["fd"].compute({"s": s, "a": s}, args)["loss"]
tensor(0.)
>>> METHODS["dr"].display_name, METHODS["dr"].uses_queue
('distributional replication (DR)', True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .contrastive import contrastive
from .distributional_replication import distributional_replication
from .dr_bidirectional import dr_bidirectional
from .dr_geometry import dr_geometry
from .english_control import english_control
from .feature_distillation import feature_distillation
from .soft_logit import soft_logit

PAPER_CITATION = (
    "@article{thongwat2025distilling, "
    "title={Distilling Multilingual Vision-Language Models: When Smaller Models Stay Multilingual}, "
    "author={Thongwat, Jhayahgrit and Payoungkhamdee, Patomporn and Limkonchotiwat, Peerat and Chumpu, R. "
    "and Nutanong, S. and Sriratanawilai, S.}, "
    "journal={arXiv preprint arXiv:2510.26271}, eprint={2510.26271}, archivePrefix={arXiv}, year={2025}}"
)


@dataclass(frozen=True)
class MethodSpec:
    """One distillation method.

    Attributes:
        code: the name in ``DistillationArguments.method`` (``"dr"``).
        display_name: how model cards and reports write it.
        description: one line: what it minimises.
        loss: the pure loss function; returns a dict with ``"loss"`` and named parts.
        inputs: the embeddings passed positionally to ``loss`` (names listed in the module docstring).
        arguments: ``loss`` keyword -> the ``DistillationArguments`` field it comes from.
        citation: BibTeX of the paper the method is taken from (``None``: mvld_hf's own, not from a paper).
        mse_term: the loss is an MSE to the anchors (FD, ED): ``projection_init="auto"`` starts a
            from-scratch student's outputs at the anchors' mean (see ``mvld_hf.student_init.projection_init_mode``).
    """

    code: str
    display_name: str
    description: str
    loss: Callable[..., dict]
    inputs: tuple[str, ...]
    arguments: dict[str, str] = field(default_factory=dict)
    citation: str | None = PAPER_CITATION
    mse_term: bool = False

    @property
    def needs_english_captions(self) -> bool:
        """The student also embeds the English captions (``s_en``)."""
        return "s_en" in self.inputs

    @property
    def needs_teacher_text(self) -> bool:
        """The teacher's English-caption embeddings ``t`` are needed whatever the anchor."""
        return "t" in self.inputs

    @property
    def uses_queue(self) -> bool:
        """The trainer keeps a FIFO queue of anchors for this method (``keys``)."""
        return "keys" in self.inputs

    def compute(self, embeddings: dict, args) -> dict:
        """``loss(*embeddings[inputs], **{keyword: args.<field>})``."""
        return self.loss(*(embeddings[name] for name in self.inputs),
                         **{keyword: getattr(args, name) for keyword, name in self.arguments.items()})


_TEMPERATURES = {"teacher_temperature": "teacher_temperature", "student_temperature": "student_temperature"}
METHODS: dict[str, MethodSpec] = {spec.code: spec for spec in (
    MethodSpec("fd", "feature distillation (FD)", "feature distillation: MSE(student(caption), anchor)",
               feature_distillation, ("s", "a"), {"normalize": "normalize_features"}, mse_term=True),
    MethodSpec("ed", "English-control distillation (ED)",
               "English-control distillation: FD + MSE(student(English caption), anchor)",
               english_control, ("s", "s_en", "a"), {"normalize": "normalize_features"},
               mse_term=True),
    MethodSpec("sd", "soft-logit distillation (SD)", "soft-logit distillation: KL over the batch's anchor similarities",
               soft_logit, ("s", "t", "a"), _TEMPERATURES),
    MethodSpec("mcl", "multilingual contrastive learning (MCL)",
               "multilingual contrastive learning: symmetric InfoNCE against the anchors",
               contrastive, ("s", "a"), {"temperature": "contrastive_temperature"}),
    MethodSpec("dr", "distributional replication (DR)",
               "distributional replication: KL over a FIFO queue of teacher anchors",
               distributional_replication, ("s", "t", "a", "keys"),
               {**_TEMPERATURES, "include_positive": "include_positive"}),
    # candidates for the paper's Open Question 1 (one objective for retrieval and VQA); not in the paper
    MethodSpec("drg", "DR with English-control geometry (DRG)",
               "DR + cosine distance of the caption and of the student's English to the anchor",
               dr_geometry, ("s", "s_en", "t", "a", "keys"),
               {**_TEMPERATURES, "include_positive": "include_positive"}, citation=None),
    MethodSpec("drb", "bidirectional distributional replication (DRB)",
               "DR + the reverse KL: each anchor's distribution over the batch's texts",
               dr_bidirectional, ("s", "t", "a", "keys"),
               {**_TEMPERATURES, "include_positive": "include_positive"}, citation=None),
)}

_TERM = re.compile(r"^\s*([A-Za-z_]+)\s*(?::\s*([^\s:]+)\s*)?$")


def parse_method(method: str) -> dict[str, float]:
    """Parse ``"dr"``, ``"dr+fd"`` or ``"dr:1.0,ed:0.5,fd:0.5"`` into ``{method: weight}`` (insertion ordered).

    Terms are separated by ``+`` or ``,``; a term without ``:weight`` has weight 1.

    >>> parse_method("dr:1.0,ed:0.5+fd")
    {'dr': 1.0, 'ed': 0.5, 'fd': 1.0}
    """
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"method must be a non-empty string such as 'dr' or 'dr:1.0,fd:0.5', got {method!r}")
    weights: dict[str, float] = {}
    for term in re.split(r"[+,]", method):
        match = _TERM.match(term)
        if not match:
            raise ValueError(f"malformed term {term!r} in method {method!r}: expected NAME or NAME:WEIGHT, "
                             f"e.g. 'dr:1.0,ed:0.5,fd:0.5'")
        name, weight_text = match.group(1).lower(), match.group(2)
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r} in {method!r}; choose from {', '.join(METHODS)}")
        if name in weights:
            raise ValueError(f"method {name!r} appears twice in {method!r}")
        try:
            weight = 1.0 if weight_text is None else float(weight_text)
        except ValueError:
            raise ValueError(f"weight {weight_text!r} of {name!r} in {method!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"weight of {name!r} in {method!r} must be a positive finite number, got {weight_text}")
        weights[name] = weight
    return weights
