"""``DistillationArguments``: ``TrainingArguments`` plus what multilingual VLM distillation needs."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .losses import (
    DEFAULT_CONTRASTIVE_TEMPERATURE,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_STUDENT_TEMPERATURE,
    DEFAULT_TEACHER_TEMPERATURE,
)
from .losses.registry import METHODS, PAPER_METHODS, double_counted, parse_method

__all__ = ["ANCHORS", "METHODS", "DistillationArguments", "parse_method"]

ANCHORS = ("text", "image")
PROJECTION_INITS = ("auto", "least_squares", "mean", "none")


def methods_needing_other_rows(method_weights) -> dict[str, str]:
    """The selected methods whose negatives are other training rows (in the batch or the DR queue), and what
    each compares (``MethodSpec.negatives``): all but the MSE methods (FD, ED). On a dataset of one row (or of
    identical rows) their loss is constant and nothing trains."""
    return {m: METHODS[m].negatives for m in method_weights if METHODS[m].negatives is not None}
logger = logging.getLogger(__name__)


def _launched_processes() -> int:
    """How many processes a launcher (``accelerate launch``, ``torchrun``) started for this run."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _has_accelerator() -> bool:
    """Whether torch sees a device that distributed training would place one process per (GPU, XPU, NPU, ...)."""
    import torch
    from transformers.utils import is_torch_hpu_available, is_torch_npu_available, is_torch_xpu_available

    return torch.cuda.is_available() or is_torch_xpu_available() or is_torch_npu_available() \
        or is_torch_hpu_available()


@dataclass
class DistillationArguments(TrainingArguments):
    """Training arguments for :class:`~mvld_hf.DistillationTrainer`.

    All :class:`transformers.TrainingArguments` fields apply. ``remove_unused_columns`` defaults to ``False``
    because the collator tokenizes the raw caption columns, which the student's ``forward`` does not name.
    """

    method: str = field(
        default="dr",
        metadata={"help": f"Distillation objective(s): one of the paper's {', '.join(PAPER_METHODS)}, mvld_hf's "
                          "own candidates drg (DR + a cosine geometry term) and drb (DR in both directions), a "
                          "method registered with mvld_hf.losses.register_method (or by a module named in "
                          "$MVLD_HF_METHODS), or a weighted combination such as 'dr+fd' or 'dr:1.0,ed:0.5,fd:0.5'."},
    )
    method_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Per-method loss settings (each method's MethodSpec.hyperparameters), as a mapping or "
                          "JSON keyed by method code, e.g. '{\"drg\": {\"geometry_weight\": 0.5}}'. Unset ones keep "
                          "their defaults."},
    )
    anchor: str = field(
        default="text",
        metadata={"help": "Teacher anchor: 'text' (the teacher's embedding of the English caption, the paper's "
                          "better choice) or 'image' (the teacher's image embedding)."},
    )
    anchor_language: str = field(
        default="en",
        metadata={"help": "Language of the anchor captions in `english_column` (the paper also tries de/zh)."},
    )
    teacher_temperature: float = field(
        default=DEFAULT_TEACHER_TEMPERATURE, metadata={"help": "tau_T of the teacher softmax in SD and DR."})
    student_temperature: float = field(
        default=DEFAULT_STUDENT_TEMPERATURE, metadata={"help": "tau_S of the student softmax in SD and DR."})
    contrastive_temperature: float = field(
        default=DEFAULT_CONTRASTIVE_TEMPERATURE, metadata={"help": "tau of the MCL InfoNCE loss."})
    queue_size: int = field(
        default=DEFAULT_QUEUE_SIZE,
        metadata={"help": "Number of teacher anchors in the DR queue; a multiple of the global batch size."},
    )
    include_positive: bool = field(
        default=True,
        metadata={"help": "DR keys: own anchor + queue (SEED style, True) or queue only (CompRess style, False)."},
    )
    projection_init: str = field(
        default="auto",
        metadata={"help": "Warm start of the student's projection before the first step: 'least_squares' (ridge "
                          "regression of the teacher's anchors on the student's pooled outputs over "
                          "`projection_init_samples` training rows), 'mean' (keep the weight, set the bias so the "
                          "outputs start at the anchors' mean), 'none' (keep it as built), or 'auto': "
                          "least_squares for any method on a pretrained backbone; on a backbone trained from "
                          "scratch, mean for methods with an FD/ED term and none otherwise (why: "
                          "benchmarks/RESULTS.md, 'Measured results the code refers to')."},
    )
    projection_init_samples: int = field(
        default=1024, metadata={"help": "Training rows the least-squares warm start of the projection uses."})
    projection_init_ridge: float = field(
        default=1e-2, metadata={"help": "Ridge strength of the warm start, relative to the mean eigenvalue of the "
                                        "pooled outputs' covariance."})
    normalize_features: bool = field(
        default=False, metadata={"help": "FD/ED: compare L2-normalised embeddings instead of raw ones."})
    caption_column: str = field(
        default="caption", metadata={"help": "Column with the training caption (any language)."})
    english_column: str = field(
        default="english", metadata={"help": "Column with the anchor-language caption of the same row."})
    image_column: str = field(default="image", metadata={"help": "Column with the image (image anchors only)."})
    teacher_text_column: str = field(
        default="teacher_text_embeds",
        metadata={"help": "Column with precomputed teacher embeddings of `english_column` (see "
                          "precompute_teacher_embeddings); computed by the teacher in the step if absent."},
    )
    teacher_image_column: str = field(
        default="teacher_image_embeds", metadata={"help": "Column with precomputed teacher image embeddings."})
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={"help": "Kept False: compute_loss already stops on a non-finite loss, and the Trainer's filter "
                          "costs a host-device sync per step."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the collator needs the raw caption columns, which forward() does not name."},
    )
    max_length: int = field(
        default=128, metadata={"help": "Student tokenizer max length; longer captions are truncated."})
    lora_r: int = field(
        default=0,
        metadata={"help": "LoRA rank for the student's backbone (peft); 0 trains every weight. The projection to "
                          "the teacher's space is always fully trained."},
    )
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator (scale = lora_alpha / lora_r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names that get adapters. Default by backbone: XLM-R/RoBERTa/BERT 'query','value'; "
                          "DistilBERT 'q_lin','v_lin'; other backbones must name them."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start a new run in an output_dir that holds an earlier run's checkpoints or saved model, "
                          "deleting them first (mvld_hf's own flag: transformers 5 dropped TrainingArguments'). "
                          "Without it such a run stops before any work and offers --resume_from_checkpoint true or "
                          "a new --output_dir."},
    )
    lora_merge_on_save: bool = field(
        default=True,
        metadata={"help": "LoRA students: save_model() writes the merged plain student (loads with from_pretrained "
                          "and exports like any student); False writes the peft adapter. Checkpoints always hold the "
                          "adapter, which is what resuming needs."},
    )

    def __post_init__(self):
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}: set --{name} 1 or more")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < -1:
            # transformers reads any max_steps <= 0 as "train num_train_epochs epochs": -5 would train 3 epochs
            raise ValueError(f"max_steps must be a positive integer, or -1 to train num_train_epochs epochs; got "
                             f"{self.max_steps!r}")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning_rate must be a positive finite number, got {lr!r}: with 0 the run trains "
                             "nothing, a negative or NaN rate diverges (e.g. --learning_rate 5e-5)")
        if not self.use_cpu and _launched_processes() > 1 and not _has_accelerator():
            # accelerate launch --multi_gpu --num_processes N on a machine without GPUs: without use_cpu every
            # process would train alone and all of them would write into one output_dir; make it one DDP run
            logger.warning("%d processes were launched on a machine without GPUs: training on CPU with distributed "
                        "data parallel over them (use_cpu=True)", _launched_processes())
            self.use_cpu = True
        super().__post_init__()
        self.method_weights = parse_method(self.method)
        summed = double_counted(self.method, self.method_weights)  # dr+drg: DR counts twice, said exactly
        if summed:
            logger.warning(summed)
        for code in self.method_weights:  # a registered method's arguments name fields of this class
            missing = sorted(name for name in METHODS[code].arguments.values() if not hasattr(self, name))
            if missing:
                raise ValueError(f"method {code!r} reads {missing}, which are not DistillationArguments fields (a "
                                 "setting of one method alone is a Hyperparameter in MethodSpec.hyperparameters)")
        self.method_kwargs = self._checked_method_kwargs()
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {self.anchor!r}")
        for name in ("teacher_temperature", "student_temperature", "contrastive_temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.projection_init not in PROJECTION_INITS:
            raise ValueError(f"projection_init must be one of {PROJECTION_INITS}, got {self.projection_init!r}")
        if not isinstance(self.projection_init_samples, int) or self.projection_init_samples < 2:
            raise ValueError(f"projection_init_samples must be an integer >= 2, got {self.projection_init_samples!r}")
        if not (math.isfinite(self.projection_init_ridge) and self.projection_init_ridge >= 0):
            raise ValueError(f"projection_init_ridge must be >= 0, got {self.projection_init_ridge!r}")
        if self.max_length <= 0:
            raise ValueError(f"max_length must be positive, got {self.max_length}")
        if not isinstance(self.lora_r, int) or self.lora_r < 0:
            raise ValueError(f"lora_r must be a non-negative integer (0 = no LoRA), got {self.lora_r!r}")
        if self.lora_r:
            if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
                raise ValueError(f"lora_alpha must be positive, got {self.lora_alpha!r}")
            if not 0 <= self.lora_dropout < 1:
                raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
            if isinstance(self.lora_target_modules, str):
                self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        self._check_in_batch_negatives()
        if self.uses_queue:
            if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int):
                raise ValueError(f"queue_size must be an integer number of anchors, got {self.queue_size!r}")
            self.check_queue_size()

    def _checked_method_kwargs(self) -> dict[str, dict]:
        """``method_kwargs`` as ``{code: {name: value}}`` (parsed from JSON when a string), each selected method's
        values checked by its spec; a method that is not selected may be named (a study's shared settings), an
        unknown one may not."""
        value = self.method_kwargs
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"method_kwargs must be JSON such as '{{\"drg\": {{\"geometry_weight\": 0.5}}}}', "
                                 f"got {self.method_kwargs!r} ({err})") from None
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ValueError("method_kwargs maps method codes to {hyperparameter: value}, e.g. "
                             f"{{'drg': {{'geometry_weight': 0.5}}}}, got {value!r}")
        for code, overrides in value.items():
            if code not in METHODS:
                raise ValueError(f"method_kwargs names {code!r}, which is not a method; choose from "
                                 f"{', '.join(METHODS)}")
            METHODS[code].method_kwargs(overrides)  # unknown names and bad values raise, naming the method
            if code not in self.method_weights:
                logger.warning("method_kwargs sets %s, which method=%r does not select: ignored", code, self.method)
        return {code: dict(overrides) for code, overrides in value.items()}

    def check_queue_size(self, processes: int = 1) -> None:
        """The queue-size rule: the FIFO queue holds whole global batches, so ``queue_size`` is a positive multiple
        of ``per_device_train_batch_size`` x ``processes``. Checked with one process when the arguments are made
        (the launch is not known yet) and with the run's processes when the trainer is built."""
        batch = self.per_device_train_batch_size
        global_batch = batch * max(processes, 1)
        if self.queue_size >= global_batch and not self.queue_size % global_batch:
            return
        if processes <= 1:
            raise ValueError(f"queue_size ({self.queue_size}) must be a positive multiple of the batch size ({batch} "
                             "per device, times the number of processes) so the FIFO queue holds whole batches")
        raise ValueError(f"queue_size ({self.queue_size}) must be a multiple of the global batch size ({batch} x "
                         f"{processes} processes = {global_batch}) so the FIFO queue holds whole global batches")

    def _check_in_batch_negatives(self) -> None:
        """Refuse a global batch of one row for a method whose negatives are the batch's other rows (MCL, SD):
        its loss would be a constant and its gradient zero at every step."""
        processes = max(_launched_processes(), 1)
        global_batch = self.per_device_train_batch_size * processes
        if global_batch >= 2:
            return
        needy = [m for m in self.method_weights if METHODS[m].needs_batch_negatives]
        if needy:
            needs = "; ".join(f"{m.upper()} {METHODS[m].negatives}" for m in needy)
            raise ValueError(
                f"method={self.method!r} needs at least 2 rows in the global batch, got {global_batch} "
                f"(per_device_train_batch_size={self.per_device_train_batch_size} x {processes} process"
                f"{'es' if processes > 1 else ''}): {needs}; with one row its loss is constant and nothing trains. "
                "Set --per_device_train_batch_size 2 or more (gradient accumulation does not add negatives)")

    @property
    def has_mse_term(self) -> bool:
        """A selected method has an FD/ED (MSE) term: ``projection_init="auto"`` then starts a from-scratch
        student's outputs at the anchors' mean."""
        return any(METHODS[m].mse_term for m in self.method_weights)

    @property
    def needs_english_captions(self) -> bool:
        """A selected method also reads the student's embedding of the English caption (ED)."""
        return any(METHODS[m].needs_english_captions for m in self.method_weights)

    @property
    def needs_teacher_text(self) -> bool:
        """t (the teacher's English-caption embedding) is needed as anchor or as SD/DR teacher side."""
        return self.anchor == "text" or any(METHODS[m].needs_teacher_text for m in self.method_weights)

    @property
    def uses_queue(self) -> bool:
        """A selected method reads the FIFO queue of anchors (DR)."""
        return any(METHODS[m].uses_queue for m in self.method_weights)

    @property
    def needs_teacher_image(self) -> bool:
        return self.anchor == "image"
