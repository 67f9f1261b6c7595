"""mvld_hf: distil multilingual text students into frozen English vision-language teachers (arXiv 2510.26271).

``__all__`` is the user's API. Internals live in their modules (``mvld_hf.checkpointing.verify_checkpoint``,
``mvld_hf.modeling_paired.register_paired_auto_classes``, ...); the few that ``mvld_hf`` exported before stay
reachable here through :func:`__getattr__`.
"""

from ._version import __version__
from .checkpointing import (
    CheckpointMismatchError,
    ExistingRunError,
    IncompleteCheckpointError,
    last_complete_checkpoint,
)
from .data import DistillationCollator, NonFiniteEmbeddingError
from .data_utils import MissingColumnError
from .distillation_config import METHODS, DistillationArguments, parse_method
from .distillation_trainer import DistillationTrainer, NonFiniteGradientError, NonFiniteLossError
from .encode import encode_texts
from .evaluation.zero_shot import zero_shot_accuracy
from .export import ExportResult, NotAStudentError, export_sentence_transformer, load_student
from .hub import build_hub_folder, push_to_hub
from .lora import apply_lora, merge_lora
from .model_card import load_eval_results, render_model_card
from .modeling_paired import (
    MultilingualCLIPConfig,
    MultilingualCLIPModel,
    MultilingualCLIPOutput,
    MultilingualSiglipConfig,
    MultilingualSiglipModel,
    register_paired_auto_classes,
)
from .modeling_student import MultilingualTextTower, MultilingualTextTowerConfig, TextTowerOutput, register_auto_classes
from .precompute import TeacherEmbeddingCache, join_precomputed_embeddings, precompute_teacher_embeddings
from .processing_paired import MultilingualCLIPProcessor
from .queue import EmbeddingQueue
from .teachers import DualEncoderTeacher, SentenceTransformerTeacher, Teacher, TeacherCapabilityError, load_teacher

register_auto_classes()
register_paired_auto_classes()

__all__ = [
    "CheckpointMismatchError",
    "DistillationArguments",
    "DistillationCollator",
    "DistillationTrainer",
    "DualEncoderTeacher",
    "EmbeddingQueue",
    "ExistingRunError",
    "ExportResult",
    "IncompleteCheckpointError",
    "METHODS",
    "MissingColumnError",
    "MultilingualCLIPConfig",
    "MultilingualCLIPModel",
    "MultilingualCLIPOutput",
    "MultilingualCLIPProcessor",
    "MultilingualSiglipConfig",
    "MultilingualSiglipModel",
    "MultilingualTextTower",
    "MultilingualTextTowerConfig",
    "NonFiniteEmbeddingError",
    "NonFiniteGradientError",
    "NonFiniteLossError",
    "NotAStudentError",
    "SentenceTransformerTeacher",
    "Teacher",
    "TeacherCapabilityError",
    "TeacherEmbeddingCache",
    "TextTowerOutput",
    "__version__",
    "apply_lora",
    "build_hub_folder",
    "encode_texts",
    "export_sentence_transformer",
    "join_precomputed_embeddings",
    "last_complete_checkpoint",
    "load_eval_results",
    "load_student",
    "load_teacher",
    "merge_lora",
    "parse_method",
    "precompute_teacher_embeddings",
    "push_to_hub",
    "render_model_card",
    "zero_shot_accuracy",
]

# internals exported before the API was narrowed: still importable from mvld_hf, not part of __all__
_MOVED = {"verify_checkpoint": "checkpointing"}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f".{_MOVED[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
