"""``DistillationTrainer``: a ``transformers.Trainer`` whose loss is one or a weighted sum of FD, ED, SD, MCL, DR."""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .checkpoint_guard import rotate_verified_checkpoints, set_aside_existing
from .checkpointing import (
    check_output_dir,
    checkpoint_metadata,
    delete_earlier_checkpoints,
    disk_full_reported,
    last_complete_checkpoint,
    load_queue,
    resolve_checkpoint,
    save_queue,
    write_checkpoint_manifest,
)
from .data import columns_for_collator
from .distillation_config import DistillationArguments
from .distributed import gather_with_local_grad, scale_grad, world_size
from .final_save import save_final_atomically
from .lora import is_peft_model, merge_lora
from .losses.registry import METHODS
from .queue import EmbeddingQueue
from .run_lock import lock_output_dir
from .sampling import train_sampler, train_stream
from .student_init import projection_init_mode, warm_start_projection
from .teacher_targets import TeacherTargets, teacher_targets
from .trainer_checks import NegativesWatch, check_trainer_inputs, embedding_dim

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops before the bad update is applied."""


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient (or a weight about to be checkpointed) became NaN or infinite; training stops before the
    optimizer applies it (or before the checkpoint is written)."""


class DistillationTrainer(Trainer):
    """Distil a :class:`~mvld_hf.MultilingualTextTower` into a frozen teacher's embedding space.

    Each batch holds tokenized captions and the teacher's embeddings, either precomputed columns (see
    :func:`~mvld_hf.precompute_teacher_embeddings`, the fast path) or computed by ``teacher`` inside the step.
    The teacher is never trained: its embeddings enter the losses as constants.

    Every named part of every selected loss is logged (``loss_dr``, ``loss_ed_caption``, ``dr_accuracy``, ...).

    - Multi-process (DDP, or DeepSpeed ZeRO-2 through ``configs/accelerate/deepspeed_zero2.yaml``; FSDP is
      untested): every rank gathers the global batch
      (:func:`~mvld_hf.distributed.gather_with_local_grad`), so MCL/SD negatives and DR queue entries come from
      every rank, and the loss and gradients equal a 1-process run on the global batch.
    - Checkpoints: the DR queue (``dr_queue.pt``, contents and pointer) is saved in every checkpoint, then a
      manifest (``mvld_checkpoint.json``: every file with its size and SHA-256, plus the run's method/queue/anchor
      and learning rate) is written last and atomically. ``train(resume_from_checkpoint=...)`` verifies it, so a
      partial, damaged or swapped-in checkpoint (or file) raises :class:`IncompleteCheckpointError` instead of
      loading; ``resume_from_checkpoint=True`` skips a newest partial one (a save that was killed) with a warning
      and resumes from the newest complete one. A resumed run logs the same losses as an uninterrupted one (when
      ``save_steps`` is a multiple of ``logging_steps``: metrics are averaged between logs). Older checkpoints are
      rotated out (``save_total_limit``) only once the new one is complete.
    - ``args.lora_r > 0`` wraps the student with :func:`~mvld_hf.lora.apply_lora`; :meth:`save_model` then writes
      the merged plain student (``lora_merge_on_save``), checkpoints the adapter.
    - Streamed data (an ``IterableDataset``) needs ``max_steps``.
    - Nothing lost to bad data: caption columns and precomputed embedding columns are checked once before
      training (vectorised), naming the dataset row; streamed rows and the teacher's in-step output are checked
      per batch. A NaN/inf gradient norm (the Trainer computes it every optimizer step) stops training before
      ``optimizer.step()``; NaN/inf weights are never checkpointed (the manifest records ``finite_weights``).
    - ``train`` holds a lock on ``output_dir`` (:mod:`mvld_hf.run_lock`): a second run into it is refused. A new
      run refuses an ``output_dir`` holding an earlier run (:class:`ExistingRunError`) unless it resumes or
      ``args.overwrite_output_dir`` is set; captions are truncated to the student's position table if
      ``max_length`` exceeds it.

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
                 processing_class=None, teacher=None, data_collator=None, evaluators=None, retrieval_evaluator=None,
                 retrieval_image_embeddings=None, **kwargs):
        checked = check_trainer_inputs(model, args, train_dataset, eval_dataset, processing_class, teacher,
                                       data_collator, evaluators, retrieval_evaluator, retrieval_image_embeddings)
        args, model = checked.args, checked.model
        self.teacher = teacher
        self.teacher_embedder = checked.teacher_embedder  # the teacher run in the step (see TrainerInputs)
        self.evaluators, self._evaluator_kwargs = checked.evaluators, checked.evaluator_kwargs
        self.retrieval_evaluator = retrieval_evaluator
        self.retrieval_image_embeddings = (self._evaluator_kwargs[-1].get("image_embeddings")
                                           if retrieval_evaluator is not None else None)
        eval_strategy = args.eval_strategy
        if self.evaluators and checked.eval_dataset is None:
            # evaluators alone are a valid evaluation: keep Trainer from demanding an eval_dataset
            args.eval_strategy = "no"
        try:
            super().__init__(model=model, args=args, train_dataset=checked.train_dataset,
                             eval_dataset=checked.eval_dataset, processing_class=processing_class,
                             data_collator=checked.data_collator, **kwargs)
        finally:
            args.eval_strategy = eval_strategy
        self.queue: EmbeddingQueue | None = None
        if args.uses_queue:
            self.queue = EmbeddingQueue(args.queue_size, embedding_dim(model))
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list),
                                                                    "eval": defaultdict(list)}

    # ------------------------------------------------------------------------------------------------- loss
    def _teacher_targets(self, inputs) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(t, a): the teacher's English-caption embeddings and the anchors, as constants
        (:func:`~mvld_hf.teacher_targets.teacher_targets`)."""
        targets = teacher_targets(inputs, self.args, self.teacher_embedder, self.state.global_step + 1)
        return targets.text, targets.anchors

    def _warn_without_negatives(self, a: torch.Tensor) -> None:
        """Warn once when a training batch leaves its methods without negatives; stop after many such steps in a
        row (:class:`~mvld_hf.trainer_checks.NegativesWatch`)."""
        if getattr(self, "_negatives_watch", None) is None:
            self._negatives_watch = NegativesWatch()
        self._negatives_watch(a, self.args, self.queue, self.state.global_step)

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
        """Every selected method's loss dict on (already gathered) embeddings; one entry of
        :data:`~mvld_hf.losses.registry.METHODS` per method."""
        args = self.args
        embeddings = {"s": s, "s_en": s_en, "t": t, "a": a}
        if self.queue is not None:
            keys = self.queue.keys(device=s.device)
            if len(keys) == 0 and not args.include_positive:
                keys = a  # CompRess style with an empty memory: use this batch's anchors until it fills
            embeddings["keys"] = keys
        results = {method: METHODS[method].compute(embeddings, args) for method in args.method_weights}
        if update_queue and self.queue is not None:
            self.queue.enqueue(a)  # after the loss: this step's anchors become later steps' keys
        return results

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        s, s_en = self._student_embeddings(model, inputs)
        t, a = self._teacher_targets(inputs)
        # processes that share this loss: those the Trainer runs data-parallel over (DDP/FSDP/DeepSpeed)
        world = min(max(self.args.world_size, 1), world_size())
        if world > 1:  # every rank computes the global batch's loss through its own rows
            s = gather_with_local_grad(s)
            s_en = None if s_en is None else gather_with_local_grad(s_en)
            gathered = TeacherTargets(t, a, self.args.anchor).gathered(gather_with_local_grad)
            t, a = gathered.text, gathered.anchors
        if a.shape[-1] != s.shape[-1]:
            raise ValueError(f"student embeddings have {s.shape[-1]} dims but the teacher's have {a.shape[-1]}: "
                             "build the student with projection_dim equal to the teacher's embedding dim")
        if model.training:
            self._warn_without_negatives(a)
        results = self.distillation_losses(s, s_en, t, a, update_queue=model.training)
        loss = sum(self.args.method_weights[m] * r["loss"] for m, r in results.items())
        self._record(results, "train" if model.training else "eval")
        if not torch.isfinite(loss):
            parts = {m: float(r["loss"].detach()) for m, r in results.items()}
            step = self.state.global_step + (1 if model.training else 0)
            raise NonFiniteLossError(
                f"the distillation loss is {float(loss.detach())} at step {step} "
                f"({'training' if model.training else 'evaluation'}"
                f"; parts: {parts}); stopping before the update. {self._kept()}. Lower the learning rate, raise "
                "the temperatures, or check the batch's teacher embeddings for NaN/inf.")
        loss = scale_grad(loss, world)  # DDP averages gradients over ranks; undo it for the global loss
        return (loss, {"text_embeds": s}) if return_outputs else loss

    def _kept(self) -> str:
        """Where training can go on from after a stop: the newest complete checkpoint."""
        last, _ = last_complete_checkpoint(self.args.output_dir) if self.args.should_save else (None, [])
        return (f"The last complete checkpoint, {last}, is intact: resume from it with "
                f"train(resume_from_checkpoint={last!r})" if last else "No checkpoint had been saved yet")

    def _get_grad_norm(self, model, grad_norm=None):
        """The Trainer's global gradient norm (one fused reduction over every gradient, computed each optimizer
        step anyway), checked before ``optimizer.step()``: a NaN/inf gradient stops training before it reaches
        the weights. One host sync per optimizer step. Skipped under fp16 loss scaling, whose scaler skips such
        steps by design."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if grad_norm is not None and getattr(self.accelerator, "scaler", None) is None \
                and not torch.isfinite(torch.as_tensor(grad_norm)):
            raise NonFiniteGradientError(
                f"the gradient is non-finite (norm {float(grad_norm)}) at step {self.state.global_step + 1} although "
                f"the loss was finite; stopping before the optimizer applies it, so the weights stay finite. "
                f"{self._kept()}. Check the teacher embeddings of the step's rows for NaN/inf, lower the learning "
                "rate, or raise the temperatures.")
        return grad_norm

    def _check_finite_weights(self) -> None:
        """Refuse to checkpoint NaN/inf weights (one reduction over the parameters, once per save)."""
        params = [p.detach() for p in self.model.parameters() if p.is_floating_point()]
        finite = torch.stack([torch.isfinite(p).all() for p in params]).all() if params else torch.tensor(True)
        finite = finite.to(self.args.device).float()
        if world_size() > 1:  # every rank stops together (FSDP/DeepSpeed ranks hold different shards)
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            raise NonFiniteGradientError(
                f"the student's weights hold NaN/inf at step {self.state.global_step}; this checkpoint is not written. "
                f"{self._kept()}.")

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The distillation losses on ``eval_dataset`` (if any) plus every evaluator's flat metrics
        (:meth:`~mvld_hf.evaluation.base.Evaluator.metrics`), e.g. a ``MultilingualEvaluator``'s held-out
        retrieval per language as ``eval_t2i_R@1_<lang>`` and averaged over languages as ``eval_<metric>_mean``."""
        metrics = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.evaluators:
            extra = self.evaluator_metrics(metric_key_prefix)
            self.log(extra)
            metrics.update(extra)
        return metrics

    def evaluator_metrics(self, prefix: str = "eval") -> dict[str, float]:
        """Every evaluator's flat metrics for the current student, keys prefixed with ``<prefix>_``."""
        from .encode import encode_texts

        model = self.accelerator.unwrap_model(self.model)

        def encode(texts):
            return encode_texts(model, self.processing_class, texts, batch_size=self.args.per_device_eval_batch_size,
                                max_length=self.args.max_length)

        out = {}
        for evaluator, kwargs in zip(self.evaluators, self._evaluator_kwargs):
            out.update({f"{prefix}_{key}": round(float(value), 4)
                        for key, value in evaluator.metrics(encode, **kwargs).items()})
        return out

    # ------------------------------------------------------------------------------------------- data path
    def _remove_unused_columns(self, dataset, description=None):
        """Keep only the columns the default collator reads (an unused image column would be decoded every
        step) and hand the precomputed embedding columns over as numpy arrays (no Python float lists).
        Measured in benchmarks/RESULTS.md: the per-batch data cost of an image-anchor dataset fell from 416
        to 36 ms."""
        return columns_for_collator(dataset, self.data_collator, self.args)

    def _get_train_sampler(self, train_dataset=None):
        """``train_sampling_strategy="group_by_length"``: batches of captions of similar token length
        (:func:`~mvld_hf.sampling.train_sampler`); otherwise the Trainer's."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        sampler = train_sampler(dataset, self.processing_class, self.args)
        return super()._get_train_sampler(train_dataset) if sampler is NotImplemented else sampler

    def get_train_dataloader(self):
        """The Trainer's, over a stream regrouped by length when asked (:func:`~mvld_hf.sampling.train_stream`)."""
        stream = self.train_dataset
        self.train_dataset = train_stream(stream, self.processing_class, self.args)
        try:
            return super().get_train_dataloader()
        finally:
            self.train_dataset = stream

    def floating_point_ops(self, inputs) -> int:
        """Trainer's FLOP estimate with the parameter count cached (it walks every module each step)."""
        count = getattr(self, "_non_embedding_params", None)
        if count is None:
            count = self._non_embedding_params = self.model.num_parameters(exclude_embeddings=True)
        ids = inputs.get("input_ids")
        return 0 if ids is None else 6 * ids.numel() * count

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
    def _checkpoint_metadata(self) -> dict:
        """What a resumed run must share with the run that wrote the checkpoint (see
        :func:`~mvld_hf.checkpointing.checkpoint_metadata`)."""
        return checkpoint_metadata(self.args, self.model, self.queue, self.state.global_step, embedding_dim(self.model),
                                   sharded=self.is_deepspeed_enabled or self.is_fsdp_enabled)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint plus the DR queue, then a manifest marking it complete; old checkpoints are
        rotated out only after the new one is complete, and only those that pass verification
        (:func:`~mvld_hf.checkpoint_guard.rotate_verified_checkpoints`); a complete checkpoint already at this
        step (a run resumed from an older one) is renamed, not overwritten. A full disk is reported as such,
        naming the checkpoint that stays good (:func:`~mvld_hf.checkpointing.disk_full_reported`)."""
        self._check_finite_weights()
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # rotate below, once the manifest exists
        if self.args.should_save:
            set_aside_existing(os.path.join(self._get_output_dir(trial=trial),
                                            f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"))
        self.accelerator.wait_for_everyone()  # before any rank writes into that folder
        with disk_full_reported(self.args.output_dir, self.state.global_step):
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            run_dir = self._get_output_dir(trial=trial)
            checkpoint = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            self.accelerator.wait_for_everyone()  # every rank's files (optimizer shards, RNG states) are written
            if self.args.should_save:
                if self.queue is not None:
                    save_queue(checkpoint, self.queue)
                write_checkpoint_manifest(checkpoint, self._checkpoint_metadata())
                rotate_verified_checkpoints(run_dir, limit, checkpoint, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()

    def warm_start_projection(self, mode: str = "least_squares") -> dict[str, float] | None:
        """Fit the student's projection on the first training rows (see
        :func:`mvld_hf.student_init.warm_start_projection`)."""
        return warm_start_projection(self, mode)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """``Trainer.train``; a resumed run first verifies the checkpoint (complete and compatible, see
        :func:`~mvld_hf.checkpointing.resolve_checkpoint`) and restores the DR queue, so it logs the same losses as
        an uninterrupted run. A new run refuses an ``output_dir`` holding an earlier run (:func:`check_output_dir`)
        unless ``args.overwrite_output_dir``, then initialises the projection as
        :func:`~mvld_hf.student_init.projection_init_mode` says (FD/ED by default, see
        :func:`~mvld_hf.student_init.warm_start_projection`)."""
        # a second run into output_dir is refused (mvld_hf.run_lock), before anything there is read or deleted
        lock = lock_output_dir(self.args.output_dir, self.args.should_save, self.args.device)
        try:
            earlier = check_output_dir(self.args.output_dir, resume_from_checkpoint, self.args.overwrite_output_dir)
            if earlier and self.args.should_save:  # overwrite_output_dir: an earlier run's checkpoints would mix in
                delete_earlier_checkpoints(self.args.output_dir, earlier)
            if earlier:
                self.accelerator.wait_for_everyone()
            if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
                resume_from_checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir,
                                                            self._checkpoint_metadata(), self.model, self.args)
                load_queue(resume_from_checkpoint, self.queue, self.args.device)
            else:
                resume_from_checkpoint = None
                mode = projection_init_mode(self.model, self.args) if self.state.global_step == 0 else None
                if mode:
                    warm_start_projection(self, mode)
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                                 ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)
        finally:
            if lock is not None:
                lock.release()

    # ----------------------------------------------------------------------------------------------- saving
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the student. A LoRA student is saved merged (a plain ``MultilingualTextTower``) unless
        ``lora_merge_on_save=False``; checkpoints (``_internal_call``) always hold the adapter, which resuming
        loads. The final save (not a checkpoint's) is atomic and a full disk is said as such, naming the checkpoint
        that stays good (:func:`~mvld_hf.final_save.save_final_atomically`; not under DeepSpeed/FSDP or
        ``push_to_hub``, whose saves are collective or upload the folder)."""
        if (_internal_call or not self.args.should_save or self.args.push_to_hub or self.is_deepspeed_enabled
                or self.is_fsdp_enabled):
            return self._save_student(output_dir, _internal_call)
        save_final_atomically(lambda folder: self._save_student(folder, False), output_dir or self.args.output_dir,
                              self.state.global_step)

    def _save_student(self, output_dir: str | None, _internal_call: bool) -> None:
        merge = (not _internal_call and is_peft_model(self.model) and self.args.lora_merge_on_save
                 and not (self.is_deepspeed_enabled or self.is_fsdp_enabled))
        if not merge:
            if is_peft_model(self.model) and not _internal_call and self.args.lora_merge_on_save:
                logger.warning("LoRA student under DeepSpeed/FSDP: saving the adapter; merge it afterwards with "
                               "mvld_hf.lora.merge_lora")
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            merged = merge_lora(self.model, copy_model=True)
            merged.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)
