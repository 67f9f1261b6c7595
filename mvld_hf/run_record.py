"""What a training run recorded about itself, so that a model card says only what is true.

``examples/distill.py`` (``mvld-distill``) writes ``mvld_run.json`` beside the saved student::

    {"teacher": {"name_or_path": ..., "hub_id": ... or null, "revision": ..., "description": ... or null},
     "student": {"base": ... or null, "pretrained": bool},
     "training_data": {"name": ..., "hub_id": ... or null, "config": ..., "split": ..., "rows": int or null,
                       "description": ...},
     "languages": [...], "license": ... or null, "offline_world": bool,
     "hyperparameters": {...}}

:func:`read_run_record` reads it back; for a Trainer folder without one it falls back to what the Trainer saved
(``training_args.bin`` for the hyperparameters, ``trainer_state.json`` for the steps). The card
(:mod:`mvld_hf.model_card`) renders only what is here or passed explicitly.
"""

from __future__ import annotations

import json
import logging
import os

logger = logging.getLogger(__name__)

__all__ = ["RUN_RECORD", "hyperparameters_from_args", "is_hub_id", "read_run_record", "write_run_record"]

RUN_RECORD = "mvld_run.json"


def _method_fields(name: str) -> tuple[str, ...]:
    """The ``DistillationArguments`` fields a method reads (from the method registry), plus ``queue_size`` for
    methods that read the queue: shown in the card only when the run used that method."""
    from .losses.registry import METHODS

    spec = METHODS.get(name)
    if spec is None:
        return ()
    return tuple(spec.arguments.values()) + (("queue_size",) if "keys" in spec.inputs else ())


def _method_hyperparameters(weights, method_kwargs) -> dict:
    """``<code>.<name>`` -> value of the selected methods' own hyperparameters that the run set
    (``method_kwargs``) to other than their defaults (``MethodSpec.hyperparameters``)."""
    from .losses.registry import METHODS

    out = {}
    for code in weights:
        spec = METHODS.get(code)
        for name, value in ((method_kwargs or {}).get(code) or {}).items():
            if spec is not None and name in spec.hyperparameters and value != spec.hyperparameters[name].default:
                out[f"{code}.{name}"] = _plain(value)
    return out


_COMMON_FIELDS = ("anchor", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay",
                  "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "seed")


def is_hub_id(name) -> bool:
    """``org/name`` (or ``name``) that is not an existing local path nor written as one."""
    from .data_utils import is_local_path

    if not isinstance(name, str) or not name or os.path.exists(os.path.expanduser(name)) or is_local_path(name):
        return False
    return all(part and all(c.isalnum() or c in "-_." for c in part) for part in name.split("/"))


def _plain(value):
    value = getattr(value, "value", value)  # enums such as lr_scheduler_type
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def hyperparameters_from_args(args, global_step: int | None = None) -> dict:
    """The card's hyperparameters from a ``DistillationArguments`` (or any object/dict with its fields).

    Method weights, the fields the chosen methods read (temperatures, queue, ...), anchor, optimiser schedule,
    batch (per device, accumulation, processes and the effective total), steps (asked and done) and seed.
    """
    get = (lambda k: args.get(k)) if isinstance(args, dict) else (lambda k: getattr(args, k, None))
    weights = get("method_weights")
    if not weights and get("method"):
        from .losses.registry import parse_method

        weights = parse_method(get("method"))
    out = {}
    if get("method"):
        out["method"] = get("method")
    if weights:
        out["method_weights"] = ", ".join(f"{name} {float(w):g}" for name, w in weights.items())
    fields = list(_COMMON_FIELDS)
    for name in weights or {}:
        fields += [f for f in _method_fields(name) if f not in fields]
    for name in fields:
        if get(name) is not None:
            out[name] = _plain(get(name))
    out.update(_method_hyperparameters(weights or {}, get("method_kwargs")))
    world = get("world_size") or 1
    batch, accumulation = get("per_device_train_batch_size"), get("gradient_accumulation_steps") or 1
    if world != 1:
        out["processes"] = world
    if batch:
        out["total_batch_size"] = batch * accumulation * world
    if (get("max_steps") or -1) > 0:
        out["max_steps"] = get("max_steps")
    elif get("num_train_epochs") is not None:
        out["num_train_epochs"] = _plain(get("num_train_epochs"))
    if (get("lora_r") or 0) > 0:
        out["lora_r"], out["lora_alpha"] = get("lora_r"), _plain(get("lora_alpha"))
    if global_step:
        out["global_step"] = global_step
    return out


def write_run_record(output_dir, record: dict) -> str:
    """Write ``record`` as ``output_dir/mvld_run.json``; returns the path."""
    from ._version import __version__

    path = os.path.join(os.fspath(output_dir), RUN_RECORD)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"mvld_hf_version": __version__, **record}, f, indent=2, ensure_ascii=False)
    return path


def _trainer_files(folder: str) -> dict:
    """Hyperparameters from a Trainer folder: ``training_args.bin`` (a pickle written by the Trainer, read only
    from local folders) and ``trainer_state.json``."""
    out = {}
    args_file = os.path.join(folder, "training_args.bin")
    if os.path.isfile(args_file):
        try:
            import torch

            args = torch.load(args_file, weights_only=False)  # the Trainer's own pickle of its arguments
            out = hyperparameters_from_args(args)
        except Exception as err:  # noqa: BLE001 - an unreadable file only costs the card its table
            logger.warning("could not read %s (%s); the card's hyperparameter table is left out", args_file, err)
    try:
        with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as f:
            step = json.load(f).get("global_step")
        if step:
            out["global_step"] = step
    except (OSError, ValueError):
        pass
    return {"hyperparameters": out} if out else {}


def read_run_record(checkpoint) -> dict:
    """The run record of a local checkpoint folder (``{}`` for a model object, a Hub id or a folder without one).

    Missing hyperparameters are filled in from the Trainer's ``training_args.bin`` / ``trainer_state.json``.
    """
    if not isinstance(checkpoint, (str, os.PathLike)) or not os.path.isdir(checkpoint):
        return {}
    folder = os.fspath(checkpoint)
    record = {}
    try:
        with open(os.path.join(folder, RUN_RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:
        logger.warning("ignoring unreadable %s: %s", os.path.join(folder, RUN_RECORD), err)
    if not record.get("hyperparameters"):
        record.update(_trainer_files(folder))
    return record
