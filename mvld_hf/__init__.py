"""mvld_hf: distil multilingual text students into frozen English vision-language teachers (arXiv 2510.26271)."""

from .data import DistillationCollator
from .data_utils import MissingColumnError
from .distillation_config import METHODS, DistillationArguments, parse_method
from .checkpointing import (
    CheckpointMismatchError,
    IncompleteCheckpointError,
    last_complete_checkpoint,
    verify_checkpoint,
)
from .distillation_trainer import DistillationTrainer, NonFiniteLossError
from .encode import encode_texts
from .export import ExportResult, NotAStudentError, export_sentence_transformer, load_student
from .hub import build_hub_folder, push_to_hub
from .lora import apply_lora, merge_lora
from .model_card import load_eval_results, render_model_card
from .modeling_student import (
    MultilingualTextTower,
    MultilingualTextTowerConfig,
    TextTowerOutput,
    register_auto_classes,
)
from .modeling_paired import (
    MultilingualCLIPConfig,
    MultilingualCLIPModel,
    MultilingualCLIPOutput,
    MultilingualSiglipConfig,
    MultilingualSiglipModel,
    register_paired_auto_classes,
)
from .evaluation.zero_shot import zero_shot_accuracy
from .processing_paired import MultilingualCLIPProcessor
from .queue import EmbeddingQueue
from .precompute import TeacherEmbeddingCache, join_precomputed_embeddings, precompute_teacher_embeddings
from .teachers import (
    DualEncoderTeacher,
    SentenceTransformerTeacher,
    Teacher,
    TeacherCapabilityError,
    load_teacher,
)

register_auto_classes()
register_paired_auto_classes()

from ._version import __version__  # noqa: E402

__all__ = [
    "CheckpointMismatchError",
    "IncompleteCheckpointError",
    "TeacherEmbeddingCache",
    "apply_lora",
    "join_precomputed_embeddings",
    "last_complete_checkpoint",
    "merge_lora",
    "verify_checkpoint",
    "DistillationArguments",
    "DistillationCollator",
    "DistillationTrainer",
    "DualEncoderTeacher",
    "EmbeddingQueue",
    "ExportResult",
    "NotAStudentError",
    "build_hub_folder",
    "export_sentence_transformer",
    "load_eval_results",
    "load_student",
    "push_to_hub",
    "render_model_card",
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
    "NonFiniteLossError",
    "SentenceTransformerTeacher",
    "Teacher",
    "TeacherCapabilityError",
    "TextTowerOutput",
    "encode_texts",
    "load_teacher",
    "parse_method",
    "precompute_teacher_embeddings",
    "register_paired_auto_classes",
    "zero_shot_accuracy",
]
