"""The API ``mvld_hf`` re-exports (see its ``__all__``), imported at once; importing this module also registers the
student and paired models with the transformers Auto classes. ``import mvld_hf`` imports it, unless a console
script defers it until its command line is checked (:func:`mvld_hf.load_api`)."""

# ruff: noqa: F401
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

