"""LoRA students through peft: low-rank adapters on the backbone, the projection fully trained.

:func:`apply_lora` wraps a :class:`~mvld_hf.MultilingualTextTower` in a ``peft.PeftModel`` (the
:class:`~mvld_hf.DistillationTrainer` does it itself when ``DistillationArguments.lora_r > 0``);
:func:`merge_lora` folds the adapters back into the weights and returns a plain ``MultilingualTextTower``.

Checkpoints written during training hold the adapter (``adapter_model.safetensors``, small, what ``resume``
needs); ``DistillationTrainer.save_model`` writes the *merged* student by default
(``lora_merge_on_save=True``), which loads with ``MultilingualTextTower.from_pretrained`` / ``AutoModel`` and
exports like any fully fine-tuned student.
"""

from __future__ import annotations

import copy

from torch import nn

# attention query/value projections of the encoders students are usually built on
DEFAULT_TARGET_MODULES = {
    "xlm-roberta": ["query", "value"],
    "xlm-roberta-xl": ["query", "value"],
    "roberta": ["query", "value"],
    "bert": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
}
PROJECTION = "projection"


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft not installed: nothing can be a PeftModel
        return False
    return isinstance(model, PeftModel)


def default_target_modules(model) -> list[str]:
    """The LoRA target modules for ``model``'s backbone type, or a ValueError naming the candidates."""
    backbone_type = getattr(getattr(model.config, "backbone_config", None), "model_type", None)
    if backbone_type in DEFAULT_TARGET_MODULES:
        return list(DEFAULT_TARGET_MODULES[backbone_type])
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, nn.Linear) and not name.startswith(PROJECTION)})
    raise ValueError(f"no default LoRA target modules for backbone model_type {backbone_type!r} (defaults exist for "
                     f"{', '.join(sorted(DEFAULT_TARGET_MODULES))}); set lora_target_modules to some of its linear "
                     f"layers: {linear}")


def apply_lora(student, args):
    """Wrap ``student`` in a peft LoRA model configured by ``args`` (a :class:`~mvld_hf.DistillationArguments`).

    Adapters of rank ``args.lora_r`` (scaling ``lora_alpha / lora_r``, dropout ``lora_dropout``) go on
    ``args.lora_target_modules`` (default: query/value for XLM-R/RoBERTa/BERT, q_lin/v_lin for DistilBERT); the
    backbone's own weights are frozen; the projection to the teacher's space stays fully trainable and is saved
    with the adapter (``modules_to_save``). With ``args.activation_checkpointing`` (alias
    ``gradient_checkpointing``) the input embeddings are made to require grad, so checkpointed blocks still
    pass gradients to the adapters. A model that already is a
    ``PeftModel`` is returned unchanged.
    """
    if args.lora_r <= 0:
        raise ValueError(f"apply_lora needs lora_r > 0, got {args.lora_r}")
    if is_peft_model(student):
        return student
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - peft is a dependency
        raise ImportError("LoRA students need peft: pip install peft") from err
    if not hasattr(student, PROJECTION):
        raise TypeError(f"apply_lora expects a MultilingualTextTower (with a '{PROJECTION}' layer), got "
                        f"{type(student).__name__}")
    targets = list(args.lora_target_modules) if args.lora_target_modules else default_target_modules(student)
    names = {name.rsplit(".", 1)[-1] for name, _ in student.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"lora_target_modules {missing} name no module of the student; linear layers present: "
                         f"{sorted(n for n in names if n and not n.isdigit())}")
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=targets, modules_to_save=[PROJECTION], bias="none")
    model = get_peft_model(student, config)
    if getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", False):
        model.base_model.model.enable_input_require_grads()
    return model


def merge_lora(model, copy_model: bool = False):
    """Fold LoRA adapters into the weights: returns a plain :class:`~mvld_hf.MultilingualTextTower`.

    ``copy_model=True`` merges a deep copy and leaves ``model`` (still training) untouched. A model without
    adapters is returned as it is. The merged model's parameters all require grad again.
    """
    if not is_peft_model(model):
        return model
    if copy_model:
        model = copy.deepcopy(model)
    merged = model.merge_and_unload()
    merged.requires_grad_(True)
    return merged
