"""What :class:`~mvld_hf.DistillationTrainer` checks and prepares before ``Trainer.__init__``:
:func:`check_trainer_inputs` (the run's arguments, processes, student, teacher, streams, evaluators and data,
each refused with its reason and fix), plus the small student facts it needs (:func:`embedding_dim`), and the
check it runs every training step (:class:`NegativesWatch`: a batch whose anchors are all alike). The teacher's
targets of a step and the check of its output are :mod:`mvld_hf.teacher_targets`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .data import (
    DistillationCollator,
    check_dataset,
    has_distinct_rows,
    is_iterable_dataset,
    no_distinct_anchors_message,
)
from .distillation_config import DistillationArguments, _launched_processes
from .encode import position_limit
from .lora import apply_lora
from .teacher_stream import read_own_shards, unwrap_embedded_stream
from .teacher_targets import TeacherEmbedder, tokenize_in_collator
from .teachers import TeacherCapabilityError

logger = logging.getLogger(__name__)


@dataclass
class TrainerInputs:
    """The checked inputs :func:`check_trainer_inputs` hands to the trainer."""

    args: DistillationArguments
    model: Any
    train_dataset: Any
    eval_dataset: Any
    data_collator: Any
    #: the teacher run in the step: a lazily embedded stream's (see precompute_teacher_embeddings), else teacher's
    teacher_embedder: TeacherEmbedder | None
    evaluators: list = field(default_factory=list)
    #: per evaluator, the keyword arguments its ``metrics`` gets besides the text encoder (:func:`evaluator_inputs`)
    evaluator_kwargs: list[dict] = field(default_factory=list)


def check_trainer_inputs(model, args, train_dataset, eval_dataset, processing_class, teacher, data_collator,
                         evaluators=None, retrieval_evaluator=None,
                         retrieval_image_embeddings=None) -> TrainerInputs:
    """Check and prepare the trainer's inputs, in this order: ``args`` (default, type, a launch whose processes
    do not form one run), the collator (the default one needs ``processing_class``), embedded streams (unwrapped,
    see :func:`~mvld_hf.precompute.unwrap_embedded_stream`), the evaluators' teacher embeddings, LoRA
    (``args.lora_r > 0`` wraps the student), ``max_length`` against the student's position table, the student's
    and teacher's dims, the teacher's image support, the queue size, and the datasets
    (:func:`~mvld_hf.data.check_dataset`)."""
    if args is None:
        args = DistillationArguments(output_dir="mvld_hf_output")
    if not isinstance(args, DistillationArguments):
        raise TypeError(f"args must be DistillationArguments, got {type(args).__name__}")
    launched = _launched_processes()
    if launched > 1 and args.world_size != launched:
        raise RuntimeError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but they do not form one distributed "
            f"run (this one sees {args.world_size} process): each would train alone, all writing into "
            f"{args.output_dir}. Give every process its own GPU (accelerate launch --multi_gpu --num_processes "
            "N with N GPUs), set use_cpu=True (--use_cpu true) for CPU processes, or launch one process")
    if data_collator is None:
        if processing_class is None:
            raise ValueError("pass the student's tokenizer as processing_class (or a data_collator)")
        data_collator = DistillationCollator(processing_class, args)
    train_dataset, embedder = unwrap_embedded_stream(train_dataset, args)
    eval_dataset, embedder = unwrap_embedded_stream(eval_dataset, args, embedder)
    if embedder is None and teacher is not None:
        embedder = TeacherEmbedder(teacher)
    step_teacher = None if embedder is None else embedder.teacher
    tokenize_in_collator(embedder, data_collator, args)  # then the step runs only the teacher's forward
    if step_teacher is not None and is_iterable_dataset(train_dataset):
        read_own_shards(args)
    # retrieval_evaluator= is an alias: one more evaluator, with its image embeddings given or computed
    evaluators = list(evaluators or []) + ([retrieval_evaluator] if retrieval_evaluator is not None else [])
    evaluator_kwargs = [
        evaluator_inputs(ev, teacher, retrieval_image_embeddings if ev is retrieval_evaluator else None)
        for ev in evaluators]
    if model is not None and args.lora_r > 0:
        model = apply_lora(model, args)
    if model is not None and isinstance(data_collator, DistillationCollator):
        limit_max_length(model, data_collator)
    check_dimensions(model, step_teacher)
    if step_teacher is not None and args.needs_teacher_image and not step_teacher.supports_images:
        raise TeacherCapabilityError.text_only(step_teacher.name_or_path, args.teacher_image_column)
    if args.uses_queue:
        args.check_queue_size(args.world_size)
    dim = None if model is None else embedding_dim(model)
    has_teacher = step_teacher is not None
    train_dataset = check_dataset("train_dataset", train_dataset, args, has_teacher=has_teacher, dim=dim)
    eval_dataset = check_dataset("eval_dataset", eval_dataset, args, has_teacher=has_teacher, dim=dim)
    return TrainerInputs(args, model, train_dataset, eval_dataset, data_collator, embedder, evaluators,
                         evaluator_kwargs)


def evaluator_inputs(evaluator, teacher, image_embeddings=None) -> dict:
    """The keyword arguments ``evaluator.metrics`` gets besides the text encoder: the teacher's embeddings
    of its images for an evaluator that has an image gallery (``encode_images``), computed once here. An
    evaluator that compares with the teacher's text embeddings (``encode_teacher``, e.g. the text-only
    :class:`~mvld_hf.evaluation.translation.TranslationEvaluator`) gets them from the teacher once here."""
    if hasattr(evaluator, "encode_teacher") and getattr(evaluator, "teacher_embeddings", None) is None:
        if teacher is None:
            raise ValueError(f"{type(evaluator).__name__} needs the teacher's embeddings of its English "
                             "sentences: pass teacher= to the trainer, or call evaluator.encode_teacher(...) "
                             "before passing it")
        evaluator.encode_teacher(lambda texts: teacher.encode_text(texts).cpu())
    if not hasattr(evaluator, "encode_images"):
        return {}
    if image_embeddings is None:
        if teacher is None or not teacher.supports_images:
            raise ValueError(f"{type(evaluator).__name__} needs retrieval_image_embeddings (the teacher's "
                             "embeddings of evaluator.encode_images) or an image-capable teacher to compute them")
        image_embeddings = evaluator.encode_images(teacher.encode_image).cpu()  # preprocessed in DataLoader workers
    return {"image_embeddings": image_embeddings}


def embedding_dim(model) -> int:
    """The dim the student projects to (``config.projection_dim``)."""
    config = getattr(model, "config", None)
    dim = getattr(config, "projection_dim", None)
    if dim is None:
        raise ValueError("cannot tell the student's embedding dim: its config has no projection_dim")
    return int(dim)


def limit_max_length(model, collator: DistillationCollator) -> None:
    """Truncate captions to what the student's position table holds (stated once in the log)."""
    limit = position_limit(model)
    if limit is not None and collator.max_length > limit:
        logger.warning("max_length=%d is more than the student's position table holds (%d tokens): captions are "
                       "truncated to %d tokens", collator.max_length, limit, limit)
        collator.max_length = limit
    else:
        logger.info("captions are truncated to max_length=%d tokens", collator.max_length)


def check_dimensions(model, teacher) -> None:
    """Refuse a student whose projection dim differs from the teacher's embedding dim."""
    if model is None or teacher is None:
        return
    student_dim, teacher_dim = embedding_dim(model), teacher.dim
    if student_dim != teacher_dim:
        raise ValueError(f"the student projects to {student_dim} dims but teacher {teacher.name_or_path!r} "
                         f"embeds in {teacher_dim}: build the student with projection_dim={teacher_dim}")


def without_negatives_message(anchors, method_weights: dict, queue, global_step: int) -> tuple[str | None, bool]:
    """(warning, done): the warning when a training batch's anchors are all alike (and, for DR alone, the queue's
    too) under a method that contrasts rows, so that step's loss is constant; ``done`` says no later batch needs
    checking (the warning was given, or the methods are FD/ED only). A [batch, dim] comparison; the queue is only
    read on the rare alike path."""
    from .losses.registry import METHODS

    message = no_distinct_anchors_message(method_weights, global_step + 1)
    if message is None:  # FD/ED only: nothing to warn about, never check again
        return None, True
    if has_distinct_rows(anchors):
        return None, False
    in_batch = queue is None or any(METHODS[m].needs_batch_negatives for m in method_weights)
    if not in_batch and has_distinct_rows(anchors, queue.keys(device=anchors.device)):
        return None, False  # DR alone: the queue still holds other anchors
    return message, True


#: consecutive training steps whose anchors are all alike (no negatives) after which training stops: a stream
#: cannot be checked up front as a map dataset is (``check_dataset`` refuses one whose rows share one anchor)
ALIKE_STEPS_LIMIT = 20


class NegativesWatch:
    """The trainer's per-step check for a batch without distinct anchors (:func:`without_negatives_message`):
    warns at the first such step, and stops (``ValueError``, the message a map dataset of one anchor is refused
    with) after :data:`ALIKE_STEPS_LIMIT` such steps in a row, before that step's update."""

    def __init__(self, limit: int = ALIKE_STEPS_LIMIT):
        self.limit, self.alike, self.warned, self.off = limit, 0, False, False

    def __call__(self, anchors, args, queue, global_step: int) -> None:
        if self.off:
            return
        message, done = without_negatives_message(anchors, args.method_weights, queue, global_step)
        if message is None:
            self.alike, self.off = 0, done  # done here: FD/ED only, nothing to watch
            return
        self.alike += 1
        if not self.warned:
            logger.warning(message)
            self.warned = True
        if self.alike >= self.limit:
            from .data import _refuse_without_negatives

            _refuse_without_negatives(args, f"the last {self.alike} training batches (up to step {global_step + 1}) "
                                            "each had one anchor for all their rows, as a train_dataset whose rows "
                                            "share one anchor would (stopped before this step's update)")
