"""The student as a plain model: :func:`load_student` from an object, a checkpoint folder, a PEFT adapter or a Hub
id (export and evaluation read students through it), its tokenizer, and the longest text it can embed."""

from __future__ import annotations

import copy
import json
import logging
import os

from torch import nn

from .data_utils import is_local_path
from .encode import position_limit
from .modeling_student import MultilingualTextTower, MultilingualTextTowerConfig, register_auto_classes

logger = logging.getLogger(__name__)

__all__ = ["NotAStudentError", "load_student", "load_student_tokenizer", "read_json", "text_length_limit"]


class NotAStudentError(ValueError):
    """The checkpoint is not an mvld_hf student (``MultilingualTextTower``) nor a PEFT adapter on one."""


def read_json(path: str) -> dict | None:
    """A JSON file's content, None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _unwrap(model):
    """Strip DDP/compile wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _merge_peft(model):
    """A PEFT-wrapped model -> a merged copy of the base model (the caller's model is left untouched)."""
    if not hasattr(model, "merge_and_unload"):
        return model
    return copy.deepcopy(model).merge_and_unload()


def _check_is_student(model, where: str) -> MultilingualTextTower:
    if not isinstance(model, MultilingualTextTower):
        raise NotAStudentError(f"{where} is a {type(model).__name__}, not an mvld_hf MultilingualTextTower student")
    return model


def load_student(checkpoint, **kwargs) -> MultilingualTextTower:
    """Return a plain :class:`MultilingualTextTower` from a model object or a checkpoint path / Hub id.

    Accepts a ``MultilingualTextTower`` (returned as is), a PEFT-wrapped one (a merged copy is returned), a
    folder written by ``save_pretrained`` / the Trainer, or a PEFT adapter folder (``adapter_config.json``
    whose ``base_model_name_or_path`` is a saved student): the LoRA weights are merged with
    ``merge_and_unload``. Raises :class:`NotAStudentError` for anything else (a plain BERT folder, a folder
    without ``config.json``) and ``OSError`` when the checkpoint cannot be found.
    """
    if isinstance(checkpoint, nn.Module):
        return _check_is_student(_merge_peft(_unwrap(checkpoint)), "the model")
    checkpoint = os.fspath(checkpoint)
    register_auto_classes()
    if os.path.isdir(checkpoint):
        if os.path.isfile(os.path.join(checkpoint, "adapter_config.json")):
            return _load_adapter(checkpoint, **kwargs)
        config = read_json(os.path.join(checkpoint, "config.json"))
        if config is None:
            raise NotAStudentError(f"{checkpoint!r} is not an mvld_hf student: it has no readable config.json "
                                   "(expected the folder written by MultilingualTextTower.save_pretrained)")
        model_type = config.get("model_type")
        if model_type != MultilingualTextTowerConfig.model_type:
            raise NotAStudentError(
                f"{checkpoint!r} is not an mvld_hf student: its config.json has model_type {model_type!r}, "
                f"expected {MultilingualTextTowerConfig.model_type!r}")
    elif os.path.exists(checkpoint):
        raise NotAStudentError(f"{checkpoint!r} is a file; pass the checkpoint folder")
    elif is_local_path(checkpoint):
        raise OSError(f"checkpoint {checkpoint!r} not found: no such directory")
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(checkpoint, **kwargs)
    except ValueError as err:  # unknown model_type
        raise NotAStudentError(f"{checkpoint!r} is not an mvld_hf student: {err}") from err
    except OSError as err:
        raise OSError(f"checkpoint {checkpoint!r} not found locally or on the Hub: {err}") from err
    if not isinstance(config, MultilingualTextTowerConfig):
        raise NotAStudentError(f"{checkpoint!r} is not an mvld_hf student: it is a {config.model_type!r} model")
    return MultilingualTextTower.from_pretrained(checkpoint, **kwargs)


def _load_adapter(path: str, **kwargs) -> MultilingualTextTower:
    from peft import PeftModel

    adapter = read_json(os.path.join(path, "adapter_config.json")) or {}
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise NotAStudentError(f"PEFT adapter {path!r} does not name its base model (base_model_name_or_path)")
    try:
        base_model = load_student(base, **kwargs)
    except OSError as err:
        raise OSError(f"base student {base!r} of PEFT adapter {path!r} not found: {err}") from err
    return PeftModel.from_pretrained(base_model, path).merge_and_unload()


def load_student_tokenizer(tokenizer=None, checkpoint=None):
    """The student's tokenizer: an object (returned as is), a name/path, or ``None`` to read it from
    ``checkpoint`` (the Trainer saves ``processing_class`` beside the weights)."""
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    from transformers import AutoTokenizer

    source = tokenizer if tokenizer is not None else checkpoint
    if source is None or isinstance(source, nn.Module):
        raise ValueError("pass the student's tokenizer (the model object does not carry one)")
    try:
        return AutoTokenizer.from_pretrained(os.fspath(source))
    except (OSError, ValueError) as err:
        raise OSError(f"could not load the student's tokenizer from {os.fspath(source)!r}: {err}. "
                      "Pass tokenizer=... (or --tokenizer) explicitly") from err


def text_length_limit(model, tokenizer=None, requested: int | None = None) -> int | None:
    """The longest text, in tokens with the special tokens, that the student can embed: ``requested`` (``None``:
    no wish) capped by its position table (:func:`~mvld_hf.encode.position_limit`) and the tokenizer's
    ``model_max_length``.

    >>> from transformers import XLMRobertaConfig
    >>> from mvld_hf import MultilingualTextTower, MultilingualTextTowerConfig
    >>> backbone = XLMRobertaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                             intermediate_size=8, max_position_embeddings=66, pad_token_id=1)
    >>> student = MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=backbone.to_dict(),
    ...                                                             projection_dim=4))
    >>> text_length_limit(student, None, 128)
    64
    """
    limits = [limit] if (limit := position_limit(model)) is not None else []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:  # "no limit" is a huge sentinel
        limits.append(tokenizer_limit)
    limit = min(limits) if limits else None
    if requested is None or limit is None:
        return limit if requested is None else requested
    if requested > limit:
        logger.info("max_seq_length %d exceeds what the student can embed (%d tokens: its position table / "
                    "tokenizer); using %d", requested, limit, limit)
    return min(requested, limit)
