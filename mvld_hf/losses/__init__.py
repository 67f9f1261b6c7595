"""The five distillation objectives of arXiv 2510.26271 as pure functions of embeddings, and two candidate
objectives of mvld_hf's own for the paper's Open Question 1 (DRG, DRB).

Each returns a dict whose ``"loss"`` entry is the scalar to minimise; other entries are named parts or detached
diagnostics, all of which the trainer logs (``loss_<method>``, ``loss_<method>_<part>``).
"""

from .contrastive import DEFAULT_CONTRASTIVE_TEMPERATURE, contrastive
from .distributional_replication import DEFAULT_QUEUE_SIZE, distributional_replication
from .dr_bidirectional import dr_bidirectional
from .dr_geometry import DEFAULT_GEOMETRY_WEIGHT, dr_geometry
from .english_control import english_control
from .feature_distillation import feature_distillation
from .registry import (
    METHODS,
    PAPER_METHODS,
    Hyperparameter,
    MethodSpec,
    load_method_modules,
    parse_method,
    register_method,
    unregister_method,
)
from .soft_logit import DEFAULT_STUDENT_TEMPERATURE, DEFAULT_TEACHER_TEMPERATURE, soft_logit

__all__ = [
    "feature_distillation",
    "english_control",
    "soft_logit",
    "contrastive",
    "distributional_replication",
    "dr_geometry",
    "dr_bidirectional",
    "DEFAULT_GEOMETRY_WEIGHT",
    "DEFAULT_TEACHER_TEMPERATURE",
    "DEFAULT_STUDENT_TEMPERATURE",
    "DEFAULT_CONTRASTIVE_TEMPERATURE",
    "DEFAULT_QUEUE_SIZE",
    "METHODS",
    "MethodSpec",
    "Hyperparameter",
    "PAPER_METHODS",
    "load_method_modules",
    "parse_method",
    "register_method",
    "unregister_method",
]
