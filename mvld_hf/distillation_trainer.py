"""``DistillationTrainer``: a ``transformers.Trainer`` whose loss is one or a weighted sum of FD, ED, SD, MCL, DR."""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import torch
from transformers import Trainer

from .data import DistillationCollator, check_columns, required_columns
from .distillation_config import DistillationArguments
from .distributed import gather_with_local_grad, scale_grad, world_size
from .losses import contrastive, distributional_replication, english_control, feature_distillation, soft_logit
from .queue import EmbeddingQueue

logger = logging.getLogger(__name__)
QUEUE_FILE = "dr_queue.pt"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops before the bad update is applied."""


class DistillationTrainer(Trainer):
    """Distil a :class:`~mvld_hf.MultilingualTextTower` into a frozen teacher's embedding space.

    Each batch holds tokenized captions and the teacher's embeddings, either precomputed columns (see
    :func:`~mvld_hf.precompute_teacher_embeddings`, the fast path) or computed by ``teacher`` inside the step.
    The teacher is never trained: its embeddings enter the losses as constants.

    Every named part of every selected loss is logged (``loss_dr``, ``loss_ed_caption``, ``dr_accuracy``, ...),
    the DR queue is saved in every checkpoint and restored on resume, and in multi-process runs the losses see
    the global batch (negatives and queue entries from every rank).

    Args:
        model: the student, a :class:`~mvld_hf.MultilingualTextTower` (or any model whose forward returns
            ``text_embeds``).
        args: :class:`DistillationArguments`.
        processing_class: the student's tokenizer (required unless ``data_collator`` is given).
        teacher: optional frozen :class:`~mvld_hf.teachers.Teacher`, used when embeddings are not precomputed.
    """

    # compute_loss returns a per-batch mean, so the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: DistillationArguments | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, teacher=None, data_collator=None, **kwargs):
        if args is None:
            args = DistillationArguments(output_dir="mvld_hf_output")
        if not isinstance(args, DistillationArguments):
            raise TypeError(f"args must be DistillationArguments, got {type(args).__name__}")
        if data_collator is None:
            if processing_class is None:
                raise ValueError("pass the student's tokenizer as processing_class (or a data_collator)")
            data_collator = DistillationCollator(processing_class, args)
        self.teacher = teacher
        self._check_dimensions(model, teacher)
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            columns = getattr(dataset, "column_names", None)
            if isinstance(columns, list):  # a Dataset (an IterableDataset may not know its columns)
                check_columns(columns, required_columns(args, has_teacher=teacher is not None), name)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, data_collator=data_collator, **kwargs)
        self.queue: EmbeddingQueue | None = None
        if "dr" in args.method_weights:
            global_batch = args.per_device_train_batch_size * max(args.world_size, 1)
            if args.queue_size % global_batch:
                raise ValueError(f"queue_size ({args.queue_size}) must be a multiple of the global batch size "
                                 f"({args.per_device_train_batch_size} x {args.world_size} processes = {global_batch})")
            self.queue = EmbeddingQueue(args.queue_size, self._embedding_dim(model))
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list),
                                                                    "eval": defaultdict(list)}

    # ----------------------------------------------------------------------------------------------- set-up
    @staticmethod
    def _embedding_dim(model) -> int:
        config = getattr(model, "config", None)
        dim = getattr(config, "projection_dim", None)
        if dim is None:
            raise ValueError("cannot tell the student's embedding dim: its config has no projection_dim")
        return int(dim)

    def _check_dimensions(self, model, teacher) -> None:
        if model is None or teacher is None:
            return
        student_dim, teacher_dim = self._embedding_dim(model), teacher.dim
        if student_dim != teacher_dim:
            raise ValueError(f"the student projects to {student_dim} dims but teacher {teacher.name_or_path!r} "
                             f"embeds in {teacher_dim}: build the student with projection_dim={teacher_dim}")

    # ------------------------------------------------------------------------------------------------- loss
    def _teacher_targets(self, inputs) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(t, a): the teacher's English-caption embeddings and the anchors, as constants."""
        args = self.args
        t = inputs.get("teacher_text_embeds")
        if t is None and args.needs_teacher_text:
            if self.teacher is None:
                raise ValueError("batch has no teacher_text_embeds and the trainer has no teacher")
            t = self.teacher.encode_text(inputs["english_texts"])
        image = inputs.get("teacher_image_embeds")
        if image is None and args.needs_teacher_image:
            if self.teacher is None:
                raise ValueError("batch has no teacher_image_embeds and the trainer has no teacher")
            image = self.teacher.encode_image(inputs["images"])
        device = inputs["input_ids"].device
        t = None if t is None else t.detach().float().to(device)
        anchor = t if args.anchor == "text" else image.detach().float().to(device)
        return t, anchor

    def _student_embeddings(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        n = ids.shape[0]
        english = "english_input_ids" in inputs
        if english:  # one forward over captions and English captions (same padded length from the collator)
            ids = torch.cat([ids, inputs["english_input_ids"]])
            mask = torch.cat([mask, inputs["english_attention_mask"]])
        out = model(input_ids=ids, attention_mask=mask)
        emb = out["text_embeds"] if isinstance(out, dict) else out.text_embeds
        return (emb[:n], emb[n:]) if english else (emb, None)

    def distillation_losses(self, s, s_en, t, a, update_queue: bool) -> dict[str, dict[str, torch.Tensor]]:
        """Every selected method's loss dict on (already gathered) embeddings."""
        args = self.args
        results = {}
        for method in args.method_weights:
            if method == "fd":
                results[method] = feature_distillation(s, a, normalize=args.normalize_features)
            elif method == "ed":
                results[method] = english_control(s, s_en, a, normalize=args.normalize_features)
            elif method == "sd":
                results[method] = soft_logit(s, t, a, args.teacher_temperature, args.student_temperature)
            elif method == "mcl":
                results[method] = contrastive(s, a, args.contrastive_temperature)
            elif method == "dr":
                keys = self.queue.keys(device=s.device)
                include_positive = args.include_positive
                if len(keys) == 0 and not include_positive:
                    keys = a  # CompRess style with an empty memory: use this batch's anchors until it fills
                results[method] = distributional_replication(
                    s, t, a, keys, args.teacher_temperature, args.student_temperature, include_positive)
        if update_queue and self.queue is not None:
            self.queue.enqueue(a)  # after the loss: this step's anchors become later steps' keys
        return results

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        s, s_en = self._student_embeddings(model, inputs)
        t, a = self._teacher_targets(inputs)
        world = world_size()
        if world > 1:  # every rank computes the global batch's loss through its own rows
            s = gather_with_local_grad(s)
            s_en = None if s_en is None else gather_with_local_grad(s_en)
            t = None if t is None else gather_with_local_grad(t)
            a = t if (self.args.anchor == "text" and t is not None) else gather_with_local_grad(a)
        if a.shape[-1] != s.shape[-1]:
            raise ValueError(f"student embeddings have {s.shape[-1]} dims but the teacher's have {a.shape[-1]}: "
                             "build the student with projection_dim equal to the teacher's embedding dim")
        results = self.distillation_losses(s, s_en, t, a, update_queue=model.training)
        loss = sum(self.args.method_weights[m] * r["loss"] for m, r in results.items())
        self._record(results, "train" if model.training else "eval")
        if not torch.isfinite(loss):
            parts = {m: float(r["loss"]) for m, r in results.items()}
            raise NonFiniteLossError(
                f"the distillation loss is {float(loss)} at step {self.state.global_step + 1} (parts: {parts}); "
                f"stopping before the update. The last saved checkpoint in {self.args.output_dir} is intact. "
                "Lower the learning rate, raise the temperatures, or check the teacher embeddings for NaN/inf.")
        loss = scale_grad(loss, world)  # DDP averages gradients over ranks; undo it for the global loss
        return (loss, {"text_embeds": s}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # -------------------------------------------------------------------------------------------- logging
    def _record(self, results, mode: str) -> None:
        store = self._metrics[mode]
        for method, parts in results.items():
            for name, value in parts.items():
                key = f"loss_{method}" if name == "loss" else f"{method}_{name}"
                store[key].append(value.detach().float())

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._metrics[mode].items():
            if values:
                logs[prefix + key] = round(float(torch.stack(values).mean()), 6)
        self._metrics[mode].clear()
        super().log(logs, *args, **kwargs)

    # ----------------------------------------------------------------------------------- checkpoint state
    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self.queue is not None and self.args.should_save:
            tmp = os.path.join(output_dir, QUEUE_FILE + ".tmp")
            torch.save(self.queue.state_dict(), tmp)
            os.replace(tmp, os.path.join(output_dir, QUEUE_FILE))  # atomic: never a half-written queue

    def _load_rng_state(self, checkpoint) -> None:
        super()._load_rng_state(checkpoint)
        if self.queue is None or checkpoint is None:
            return
        path = os.path.join(checkpoint, QUEUE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {checkpoint} has no {QUEUE_FILE}: it was not written by a DR run "
                                    "of DistillationTrainer, or it is incomplete")
        self.queue.load_state_dict(torch.load(path, map_location="cpu"), device=self.args.device)
