"""How the student is initialised before the first training step: the projection warm start.

The student's initialisation policy, not training: :func:`projection_init_mode` picks how the projection starts
(``projection_init``), :func:`warm_start_projection` fits it on the first training rows through
:meth:`~mvld_hf.MultilingualTextTower.fit_projection`. :class:`~mvld_hf.DistillationTrainer` calls both once,
before step 1 of a new run (never on resume).
"""

from __future__ import annotations

import itertools
import logging

import torch

from .data import columns_for_collator, is_iterable_dataset
from .lora import is_peft_model
from .teacher_targets import teacher_targets

logger = logging.getLogger(__name__)

WARM_START_MODES = ("least_squares", "mean")


def _base_model(model):
    return model.get_base_model() if is_peft_model(model) else model


def projection_init_mode(model, args) -> str | None:
    """How the projection is initialised before the first step: ``"least_squares"``, ``"mean"`` or None.

    ``args.projection_init="auto"``: least squares, whatever the method, when the student's backbone is pretrained
    (``config.backbone_name_or_path``, set by ``MultilingualTextTower.from_backbone``); on a backbone built
    from a config (trained from scratch) ``mean`` for methods with an FD/ED term, else nothing. Measured
    (benchmarks/RESULTS_real_models.md): from a random projection FD collapsed multilingual-e5-small to a
    constant and DR reached 0.60 translation retrieval (0.98 with the fit); on the offline scratch student a
    fitted weight's gain made FD diverge (loss 1.8 -> 4265 in 10 steps at lr 3e-3), while the bias alone
    (outputs start centred on the anchors' mean, the random weight kept) doubled FD's R@1 after 300 steps
    (0.094 vs 0.044 untouched, one seed)."""
    init = args.projection_init
    if init != "auto":
        return None if init == "none" else init
    if getattr(getattr(_base_model(model), "config", None), "backbone_name_or_path", None) is not None:
        return "least_squares"
    return "mean" if args.has_mse_term else None


def _first_rows(trainer, n: int) -> list:
    """The first ``n`` training rows as the DataLoader reads them (only the collator's columns)."""
    dataset = trainer.train_dataset
    if is_iterable_dataset(dataset) or not hasattr(dataset, "select"):
        return list(itertools.islice(iter(dataset), n))
    subset = columns_for_collator(dataset.select(range(min(n, len(dataset)))), trainer.data_collator, trainer.args)
    return [subset[i] for i in range(len(subset))]


def _on_device(batch: dict, device) -> dict:
    """A collated batch with its tensors on ``device`` (the rest, raw captions or images, as it is)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def warm_start_projection(trainer, mode: str = "least_squares") -> dict[str, float] | None:
    """Fit the projection of ``trainer``'s student by ridge regression of the teacher's anchors on its pooled
    outputs (``mode="least_squares"``), or only its bias so the outputs start at the anchors' mean (``"mean"``),
    over the first ``projection_init_samples`` training rows (see :meth:`MultilingualTextTower.fit_projection`).

    ``trainer``: a :class:`~mvld_hf.DistillationTrainer`; its collator and the teacher's targets
    (:func:`~mvld_hf.teacher_targets.teacher_targets`, with its teacher) make the batches, so the fit sees what
    step 1 sees. Every process computes the same fit from the same rows.
    Returns the fit's ``{"r2", "cosine", "rows"}``, or None when the student has no projection to fit."""
    if mode not in WARM_START_MODES:  # before the forward pass over the rows, not after it
        raise ValueError(f"warm_start_projection: mode must be 'least_squares' or 'mean', got {mode!r}")
    model = _base_model(trainer.model)
    if not hasattr(model, "fit_projection") or trainer.train_dataset is None:
        return None
    args = trainer.args
    rows = _first_rows(trainer, args.projection_init_samples)
    pooled, targets = [], []
    was_training = model.training
    model.eval()
    batch_size = max(1, args.per_device_eval_batch_size)
    for start in range(0, len(rows), batch_size):
        inputs = _on_device(trainer.data_collator(rows[start:start + batch_size]), args.device)
        anchors = teacher_targets(inputs, args, trainer.teacher_embedder).anchors
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        pooled.append(out.pooled_output.float().cpu())
        targets.append(anchors.float().cpu())
    model.train(was_training)
    pooled, targets = torch.cat(pooled), torch.cat(targets)
    finite = torch.isfinite(pooled).all(1) & torch.isfinite(targets).all(1)
    if int(finite.sum()) < 2:
        logger.warning("projection warm start skipped: fewer than 2 of its %d rows have finite embeddings",
                       len(rows))
        return None
    if not finite.all():  # left to the training step, which stops on a non-finite loss naming the step
        logger.warning("projection warm start: %d of %d rows have NaN/inf embeddings and are left out",
                       int((~finite).sum()), len(rows))
    fit = model.fit_projection(pooled[finite], targets[finite], ridge=args.projection_init_ridge,
                               fit_weight=mode == "least_squares")
    fit["rows"] = int(finite.sum())
    logger.info("projection warm start (%s on %d rows): R^2 %.3f, mean cosine to the anchors %.3f",
                "least squares" if mode == "least_squares" else "bias at the anchors' mean", len(rows),
                fit["r2"], fit["cosine"])
    return fit
