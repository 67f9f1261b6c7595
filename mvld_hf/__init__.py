"""mvld_hf: distil multilingual text students into frozen English vision-language teachers (arXiv 2510.26271).

``__all__`` is the user's API. Internals live in their modules (``mvld_hf.checkpointing.verify_checkpoint``,
``mvld_hf.modeling_paired.register_paired_auto_classes``, ...); the few that ``mvld_hf`` exported before stay
reachable here through :func:`__getattr__`.

``import mvld_hf`` imports the API (:mod:`mvld_hf._api`) and registers the models with the transformers Auto
classes; ``mvld-distill`` and ``examples/distill.py`` defer that (:func:`load_api`) until their command line is
checked.
"""

import os as _os
import sys as _sys

from ._version import __version__

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

#: console scripts that check their command line before importing torch/transformers (a bad flag is refused in
#: about a second), then call :func:`load_api`
_CONSOLE_SCRIPTS = ("mvld-distill",)
_loaded = False


def load_api() -> None:
    """Import the API (torch, transformers, datasets, ...) and register the student and paired models with the
    transformers Auto classes. ``import mvld_hf`` does it, except in a process started by a console script or with
    ``MVLD_HF_DEFER_IMPORTS=1`` (read once), where it happens on the first use of a name of ``mvld_hf``."""
    global _loaded
    if not _loaded:
        from . import _api

        globals().update({name: getattr(_api, name) for name in __all__ if name != "__version__"})
        _loaded = True


def __getattr__(name: str):
    if name in __all__:
        load_api()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if _os.environ.pop("MVLD_HF_DEFER_IMPORTS", "") != "1" and \
        _os.path.basename((getattr(_sys, "argv", None) or [""])[0] or "") not in _CONSOLE_SCRIPTS:
    load_api()
