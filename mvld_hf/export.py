"""Export a trained student as ONE plain sentence-transformers model: text in any language and images.

The exported folder loads with ``SentenceTransformer(path_or_repo)`` alone (no ``trust_remote_code``, no
``import mvld_hf``) because it is built only from standard sentence-transformers 6 modules::

    Router  (sentence_transformers.sentence_transformer.modules.Router; str -> "text", PIL image -> "image")
      text:  Transformer(student backbone saved as a plain transformers model of its own model_type, e.g.
             XLMRobertaModel, with its tokenizer) -> Pooling(mean | cls, as the student) ->
             Dense(projection, identity activation, bias as the student)
      image: the frozen teacher's vision side, as lean as the teacher allows:
             - CLIP / SigLIP / SigLIP2 ("vision_tower" route): Transformer over the teacher's own vision
               model (CLIPVisionModel, SiglipVisionModel, ...) reading ``pooler_output`` [-> Dense(visual
               projection, identity) for CLIP]. No text tower is stored.
             - any other dual encoder ("full_teacher" route): Transformer over the whole teacher calling
               ``get_image_features``.

``include_images=False`` gives the text-only layout of ``clip-ViT-B-32-multilingual-v1``
(Transformer -> Pooling -> Dense, no Router). Text embeddings equal ``MultilingualTextTower.get_text_features``
and image embeddings equal ``teacher.encode_image``: both are checked on probe inputs at export time.
Embeddings are not normalised (as the student and teacher); the saved similarity is cosine.

The teacher id and revision are recorded in ``config_sentence_transformers.json`` under ``"mvld_hf"`` (and in
the model card): an embedding space is only meaningful with its teacher.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .data_utils import is_local_path
from .encode import position_limit
from .modeling_student import MultilingualTextTower, MultilingualTextTowerConfig, register_auto_classes
from .teachers import DualEncoderTeacher, Teacher, TeacherCapabilityError, load_teacher

logger = logging.getLogger(__name__)

__all__ = [
    "ExportResult",
    "NotAStudentError",
    "export_sentence_transformer",
    "find_eval_results",
    "load_student",
    "load_student_tokenizer",
    "route_sizes",
    "text_length_limit",
]

#: the sentence-transformers version the export was built and tested with (written as a load-time requirement;
#: 5.5.0-5.6.0 silently degraded XLM-R embeddings with flash attention)
ST_REQUIREMENT = ">=6.2"
#: default text truncation, the same as ``DistillationArguments.max_length`` and ``MultilingualTextTower.encode``
DEFAULT_MAX_SEQ_LENGTH = 128
_CALL_STATE_KEYS = ("max_length", "stride", "truncation_strategy", "pad_to_multiple_of", "pad_token_type_id")
_PROBE_TEXTS = ["a red circle left of a blue square", "ein roter Kreis links von einem blauen Quadrat",
                "un cercle rouge", "x"]


class NotAStudentError(ValueError):
    """The checkpoint is not an mvld_hf student (``MultilingualTextTower``) nor a PEFT adapter on one."""


@dataclass
class ExportResult:
    """What :func:`export_sentence_transformer` wrote. Sizes are bytes of the files on disk."""

    path: str
    include_images: bool
    image_route: str | None  # "vision_tower", "full_teacher" or None (text-only)
    teacher_name_or_path: str | None
    teacher_revision: str | None
    distillation_method: str | None
    backbone_model_type: str
    backbone_name_or_path: str | None
    pooling: str
    projection_dim: int
    projection_bias: bool
    max_seq_length: int | None
    text_route_bytes: int
    image_route_bytes: int
    #: the whole teacher's parameters and buffers at float32, for comparison with ``image_route_bytes``
    teacher_fp32_bytes: int | None = None
    #: what sentence-transformers (and mteb's wrapper) see: ``["text", "image"]`` or ``["text"]``
    modalities: list | None = None
    #: the shipped formats with their measured quality and speed (:func:`mvld_hf.export_onnx.export_onnx_formats`)
    formats: dict | None = None
    #: the pretrained backbone's layers the student kept (``from_backbone(keep_layers=...)``) and their number
    kept_layers: list | None = None
    source_num_layers: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ loading
def _read_json(path: str) -> dict | None:
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
        config = _read_json(os.path.join(checkpoint, "config.json"))
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

    adapter = _read_json(os.path.join(path, "adapter_config.json")) or {}
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


def _resolve_teacher(teacher, student_config, include_images: bool):
    """-> (Teacher or None, name, revision). Text-only exports never load the teacher."""
    revision = student_config.teacher_revision
    if isinstance(teacher, Teacher):
        return teacher, (student_config.teacher_name_or_path or teacher.name_or_path), (revision or teacher.revision)
    name = os.fspath(teacher) if teacher is not None else student_config.teacher_name_or_path
    if not include_images:
        return None, name, revision
    if not name:
        raise ValueError("the student does not record its teacher (config.teacher_name_or_path is empty): "
                         "pass the teacher (or export text-only)")
    if is_local_path(name) and not os.path.isdir(name):
        raise OSError(f"teacher {name!r} not found: no such directory (pass --teacher / teacher= to point to it)")
    loaded = load_teacher(name, revision=revision)  # OSError naming the teacher when it cannot be found
    recorded = student_config.teacher_name_or_path or name
    return loaded, recorded, revision


# --------------------------------------------------------------------------------------------- building
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


def _cpu_float_student(student: MultilingualTextTower) -> MultilingualTextTower:
    """The student itself if it is already float32 on the CPU, else a CPU float32 copy (the export is float32)."""
    params = list(student.parameters())
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        return student
    copy_ = MultilingualTextTower(student.config)
    copy_.load_state_dict({k: v.detach().float().cpu() for k, v in student.state_dict().items()})
    return copy_


def _save_backbone(student: MultilingualTextTower, tokenizer, path: str) -> None:
    """The backbone as a plain transformers model of its own model_type (e.g. XLMRobertaModel).

    The student drops BERT-style poolers (unused); they are saved as zeros so the plain model loads without
    "newly initialized" weights. Sentence-transformers pools the token states, so the pooler is never used.
    """
    from transformers import AutoModel

    backbone = AutoModel.from_config(copy.deepcopy(student.config.backbone_config))
    missing, unexpected = backbone.load_state_dict(student.backbone.state_dict(), strict=False)
    bad = [k for k in missing if not k.startswith("pooler.")]
    if unexpected or bad:
        raise RuntimeError(f"the student's backbone does not fit {type(backbone).__name__}: "
                           f"missing={bad} unexpected={unexpected}")
    with torch.no_grad():
        for key in missing:
            backbone.get_parameter(key).zero_()
    backbone.save_pretrained(path)
    tokenizer.save_pretrained(path)
    _drop_call_state(path)


def _drop_call_state(path: str) -> None:
    """Forget the tokenizer's call-time truncation/padding state so the export does not depend on how the
    tokenizer was used before.

    transformers 5 saves the backend's last truncation/padding settings into tokenizer.json and, on loading,
    turns them into tokenizer_config.json entries (``max_length``, ``stride``, ``truncation_strategy``, ...).
    Sentence-transformers sets padding and truncation on every call (the limit is ``model_max_length``), so
    they are dropped; a non-default ``padding_side``/``truncation_side`` ("left") is kept.
    """
    file = os.path.join(path, "tokenizer.json")
    data = _read_json(file)
    if data is not None and (data.get("truncation") is not None or data.get("padding") is not None):
        data["truncation"] = data["padding"] = None
        with open(file, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    file = os.path.join(path, "tokenizer_config.json")
    config = _read_json(file)
    if config is None:
        return
    keep = {k: v for k, v in config.items() if k not in _CALL_STATE_KEYS
            and not (k in ("padding_side", "truncation_side") and v == "right")}
    if keep != config:
        with open(file, "w", encoding="utf-8") as f:
            json.dump(keep, f, indent=2, ensure_ascii=False, sort_keys=True)


def _text_modules(student: MultilingualTextTower, tokenizer, work: str, max_seq_length: int | None) -> list:
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    path = os.path.join(work, "text")
    _save_backbone(student, tokenizer, path)
    transformer = Transformer(path, max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=student.config.pooling)
    proj = student.projection
    dense = Dense(proj.in_features, proj.out_features, bias=proj.bias is not None, activation_function=None,
                  init_weight=proj.weight.detach().float().cpu().clone(),
                  init_bias=None if proj.bias is None else proj.bias.detach().float().cpu().clone())
    return [transformer, pooling, dense]


def _vision_tower(model):
    """(vision model, projection Linear or None) when the teacher's image side is ``vision_model`` [+
    ``visual_projection``] and the vision model is what ``AutoModel`` builds for its config; else None."""
    from transformers import PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    vision = getattr(model, "vision_model", None)
    if not isinstance(vision, PreTrainedModel):
        return None
    if MODEL_MAPPING_NAMES.get(getattr(vision.config, "model_type", None)) != type(vision).__name__:
        return None
    projection = getattr(model, "visual_projection", None)
    if projection is not None and not isinstance(projection, nn.Linear):
        return None
    return vision, projection


def _float32(module: nn.Module) -> nn.Module:
    if all(p.dtype == torch.float32 and p.device.type == "cpu" for p in module.parameters()):
        return module
    return copy.deepcopy(module).float().cpu()


def _image_modules(teacher: DualEncoderTeacher, work: str, lean: bool) -> tuple[list, str]:
    from sentence_transformers.sentence_transformer.modules import Dense, Transformer

    path = os.path.join(work, "image")
    tower = _vision_tower(teacher.model) if lean else None
    if tower is not None:
        vision, projection = tower
        _float32(vision).save_pretrained(path)
        teacher.image_processor.save_pretrained(path)
        modules = [Transformer(path, modality_config={"image": {"method": "forward",
                                                                "method_output_name": "pooler_output"}},
                               module_output_name="sentence_embedding")]
        if projection is not None:
            modules.append(Dense(projection.in_features, projection.out_features, bias=projection.bias is not None,
                                 activation_function=None,
                                 init_weight=projection.weight.detach().float().cpu().clone(),
                                 init_bias=None if projection.bias is None
                                 else projection.bias.detach().float().cpu().clone()))
        return modules, "vision_tower"
    _float32(teacher.model).save_pretrained(path)
    teacher.image_processor.save_pretrained(path)
    if teacher.tokenizer is not None:  # a composite processor (CLIPProcessor) wants its tokenizer beside it
        teacher.tokenizer.save_pretrained(path)
    transformer = Transformer(path, modality_config={"image": {"method": "get_image_features",
                                                               "method_output_name": "pooler_output"}},
                             module_output_name="sentence_embedding")
    return [transformer], "full_teacher"


def _probe_images(n: int = 3):
    from PIL import Image

    images = [Image.new("RGB", (64, 48), colour) for colour in ((220, 30, 30), (30, 30, 220))]
    gradient = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    return (images + [gradient])[:n]


def _agree(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Same embeddings up to float noise (loose enough for a half-precision teacher or student)."""
    got, want = got.float().cpu(), want.float().cpu()
    if got.shape != want.shape:
        return False
    cos = torch.nn.functional.cosine_similarity(got, want, dim=-1)
    ratio = got.norm(dim=-1) / want.norm(dim=-1).clamp(min=1e-12)
    return bool((cos > 0.999).all() and ((ratio - 1).abs() < 1e-2).all())


def _encode(modules: list, inputs: list) -> torch.Tensor:
    """Run an (unsaved) route on raw inputs the way SentenceTransformer.encode does."""
    first = modules[0]
    features = first.preprocess(inputs)
    with torch.no_grad():
        for module in modules:
            features = module(features)
    return features["sentence_embedding"]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def route_sizes(folder) -> dict[str, int]:
    """Bytes on disk of an exported folder: ``text`` and ``image`` routes, and ``total``."""
    folder = Path(folder)
    router = _read_json(str(folder / "router_config.json"))
    sizes = {"text": 0, "image": 0, "total": _dir_bytes(folder)}
    if router is None:  # text-only layout: everything but the card (and the ONNX files) is the text route
        sizes["text"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()
                            and f.name not in ("README.md", _OWNER_FILE)
                            and f.relative_to(folder).parts[0] != "onnx")
        return sizes
    for route, module_ids in router["structure"].items():
        sizes[route] = sizes.get(route, 0) + sum(_dir_bytes(folder / m) for m in module_ids)
    return sizes


EVAL_RESULTS_FILE = "eval_results.json"


def find_eval_results(checkpoint) -> str | None:
    """The ``eval_results.json`` that ``mvld-distill`` wrote next to the checkpoint, when it holds per-language
    retrieval results the card can show (``None`` otherwise; an unreadable file is logged and skipped)."""
    if checkpoint is None or isinstance(checkpoint, nn.Module):
        return None
    path = os.path.join(os.fspath(checkpoint), EVAL_RESULTS_FILE)
    if not os.path.isfile(path):
        return None
    from .model_card import load_eval_results

    try:
        load_eval_results(path)
    except (OSError, ValueError) as err:
        logger.warning("not using %s for the model card: %s", path, err)
        return None
    logger.info("model card: evaluation results from %s", path)
    return path


def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder unless it is an earlier export and ``overwrite``."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{output_dir!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir!r} is not empty; pass overwrite=True (--overwrite) to replace an "
                                  "earlier export")
        if not (path / "modules.json").is_file():
            raise FileExistsError(f"refusing to overwrite {output_dir!r}: it is not empty and holds no earlier "
                                  "sentence-transformers export (no modules.json)")


_OWNER_FILE = ".mvld_export_owner"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_staging(output_dir: str) -> list[str]:
    """Remove the hidden ``.NAME.partial-*`` / ``.NAME.old-*`` folders that a killed export left next to
    ``output_dir``: those whose owning process (recorded on this host) is gone. Returns what was removed."""
    import socket

    path = Path(output_dir).absolute()
    if not path.parent.is_dir():
        return []
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*-*"):
        if not leftover.is_dir() or not leftover.name.startswith((f".{path.name}.partial-", f".{path.name}.old-")):
            continue
        owner = _read_json(str(leftover / _OWNER_FILE)) or {}
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and host == socket.gethostname() and _process_alive(pid):
            continue  # a live export is writing it
        if not owner and leftover.name.startswith(f".{path.name}.partial-"):
            import time

            if time.time() - leftover.stat().st_mtime < 60:  # just created: its owner file may not be there yet
                continue
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(str(leftover))
    if removed:
        logger.info("removed %d folder(s) left by an interrupted export: %s", len(removed), ", ".join(removed))
    return removed


def _staging_dir(output_dir: str) -> str:
    """An empty hidden folder next to ``output_dir`` (same filesystem, so the final rename is atomic), with the
    permissions of a folder made by ``mkdir`` (``mkdtemp`` makes 0700), and an owner file naming this process
    so that a later export can tell a killed export's leftover from a live one."""
    import socket

    path = Path(output_dir).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(output_dir)
    staging = tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    with open(os.path.join(staging, _OWNER_FILE), "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
    return staging


def _check_finite(model: MultilingualTextTower) -> None:
    """Refuse a student whose weights hold NaN/inf (a diverged run): say so, instead of a failed probe check."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        total = sum(1 for t in model.state_dict().values() if t.is_floating_point())
        raise ValueError(f"the student's weights are not finite: {len(bad)} of {total} tensors hold NaN or inf "
                         f"values (e.g. {bad[0]!r}); the run diverged or the checkpoint is damaged: export an "
                         "earlier checkpoint")


def _move_into_place(staging: str, output_dir: str) -> None:
    """Replace ``output_dir`` (absent, empty, or an earlier export already checked) by ``staging``."""
    path = Path(output_dir)
    old = None
    if path.is_dir():
        if any(path.iterdir()):
            old = tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.absolute().parent)
            os.rmdir(old)
            os.replace(path, old)
        else:
            path.rmdir()
    os.replace(staging, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_sentence_transformer(
    student,
    tokenizer=None,
    teacher=None,
    output_dir: str | os.PathLike = "sentence_transformer",
    include_images: bool = True,
    *,
    max_seq_length: int | None = DEFAULT_MAX_SEQ_LENGTH,
    lean_image_route: bool = True,
    overwrite: bool = False,
    card_kwargs: dict | None = None,
    write_card: bool = True,
    formats=("pytorch",),
    int8_max_drop: float | None = None,
    int8_on_loss: str = "warn",
    check_pairs=None,
    measure_speed: bool | None = None,
) -> ExportResult:
    """Write ``student`` (+ the teacher's image side) as one plain sentence-transformers 6 folder.

    Args:
        student: a :class:`MultilingualTextTower`, a PEFT-wrapped one (merged with ``merge_and_unload`` on a
            copy), or a checkpoint folder / Hub id (a PEFT adapter folder is merged too). See :func:`load_student`.
        tokenizer: the student's tokenizer, a name/path, or ``None`` to read it from the checkpoint folder.
        teacher: a :class:`~mvld_hf.teachers.DualEncoderTeacher`, a name/path for :func:`~mvld_hf.load_teacher`,
            or ``None`` for the student's ``config.teacher_name_or_path`` (at ``config.teacher_revision``).
            Text-only exports only record its name and never load it.
        output_dir: where to write; must be empty or absent (or an earlier export with ``overwrite=True``).
            The folder is built next to it and renamed at the end: a failed export leaves nothing behind.
        include_images: add the image route (``False``: text only, like ``clip-ViT-B-32-multilingual-v1``).
        max_seq_length: text truncation in tokens (default 128, the training default), capped by what the
            student can embed (:func:`text_length_limit`: its position table and tokenizer); ``None`` keeps that
            limit.
        lean_image_route: store only the teacher's vision tower when possible (see the module docstring);
            ``False`` stores the full teacher (``get_image_features``).
        card_kwargs: extra arguments for :func:`mvld_hf.model_card.render_model_card` (``repo_id``,
            ``eval_results``, ``languages``, ``training_data``, ``hyperparameters``, ...).
        write_card: write ``README.md`` (the model card).
        formats: ``"pytorch"`` (the sentence-transformers folder, always written), ``"onnx"`` (fp32 ONNX graphs
            of the text route, Dense included, and of the image route under ``onnx/``), ``"int8"`` (the text
            graph with dynamic int8 weights); a list or ``"pytorch,onnx,int8"``. Each format is measured
            (cosine and top-1 agreement with PyTorch, translation R@1 on a multi-script check set, speed) and
            the card lists the figures; see :mod:`mvld_hf.export_onnx`.
        int8_max_drop: the largest mean R@1 loss of int8 against PyTorch on the check set (fraction; default
            0.01, one point); beyond it the export warns (``int8_on_loss="warn"``) or fails
            (``"refuse"``, :class:`~mvld_hf.export_onnx.Int8QualityError`).
        check_pairs: ``(query, target)`` text pairs for the R@1 check (default: the built-in multi-script
            translations, :data:`mvld_hf.export_onnx.CHECK_PAIRS`).
        measure_speed: measure every format (quality on the check set, batch-1 and batch-64 speed) for the card;
            default: when ONNX formats are asked for (a PyTorch-only export then has no formats table).

    Returns:
        :class:`ExportResult` with the recorded teacher, the image route kind and the sizes in bytes.

    Raises:
        NotAStudentError, OSError (checkpoint/teacher/tokenizer not found), TeacherCapabilityError (a teacher
        without an image side and ``include_images=True``), ValueError (teacher and student dimensions differ),
        FileExistsError (``output_dir`` not empty), RuntimeError (the built model does not reproduce the
        student or teacher on probe inputs: a bug, please report).
    """
    from .export_onnx import INT8_MAX_DROP, parse_formats, require_onnx

    formats = parse_formats(formats)
    require_onnx(formats)  # before any work
    checkpoint = None if isinstance(student, nn.Module) else student
    model = load_student(student)
    _check_finite(model)
    tokenizer = load_student_tokenizer(tokenizer, checkpoint)
    config = model.config
    loaded_teacher, teacher_name, teacher_revision = _resolve_teacher(teacher, config, include_images)
    if include_images:
        if not isinstance(loaded_teacher, DualEncoderTeacher) or not loaded_teacher.supports_images:
            raise TeacherCapabilityError(
                f"teacher {teacher_name!r} has no image side that can be exported (a transformers CLIP/SigLIP "
                f"dual encoder with its image processor is needed); export text-only (include_images=False)")
        if loaded_teacher.dim != config.projection_dim:
            raise ValueError(f"teacher {teacher_name!r} embeds in {loaded_teacher.dim} dimensions but the student "
                             f"projects to {config.projection_dim}: they are not the same embedding space")
    if loaded_teacher is not None and config.teacher_name_or_path and \
            loaded_teacher.name_or_path != config.teacher_name_or_path:
        logger.warning("exporting with teacher %r, but the student records %r; the card names %r",
                       loaded_teacher.name_or_path, config.teacher_name_or_path, teacher_name)

    max_seq_length = text_length_limit(model, tokenizer, max_seq_length)
    output_dir = os.fspath(output_dir)
    _check_output_dir(output_dir, overwrite)
    staging = _staging_dir(output_dir)  # written completely, then renamed: a failed export leaves nothing
    try:
        onnx_kwargs = dict(formats=formats, check_pairs=check_pairs, int8_on_loss=int8_on_loss,
                           int8_max_drop=INT8_MAX_DROP if int8_max_drop is None else int8_max_drop,
                           measure_speed=bool({"onnx", "int8"} & set(formats)) if measure_speed is None
                           else measure_speed)
        result = _export_into(staging, output_dir, model, tokenizer, config, loaded_teacher, teacher_name,
                              teacher_revision, include_images, max_seq_length, lean_image_route, onnx_kwargs)
        os.remove(os.path.join(staging, _OWNER_FILE))
        if write_card:
            from .model_card import render_model_card

            card_kwargs = dict(card_kwargs or {})
            if card_kwargs.get("eval_results") is None and checkpoint is not None:
                card_kwargs["eval_results"] = find_eval_results(checkpoint)
            render_model_card(result, **card_kwargs).save(os.path.join(staging, "README.md"))
        _move_into_place(staging, output_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return result


def _export_into(staging, output_dir, model, tokenizer, config, loaded_teacher, teacher_name, teacher_revision,
                 include_images, max_seq_length, lean_image_route, onnx_kwargs=None) -> ExportResult:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Router

    was_training = model.training
    model.eval()
    try:
        cpu_student = _cpu_float_student(model)
        with tempfile.TemporaryDirectory(prefix="mvld_export_") as work:
            text = _text_modules(cpu_student, tokenizer, work, max_seq_length)
            want = cpu_student.encode(_PROBE_TEXTS, tokenizer, max_length=max_seq_length or 512)
            got = _encode(text, _PROBE_TEXTS)
            if not (torch.isfinite(want).all() and torch.isfinite(got).all()):
                raise ValueError("the student's embeddings are NaN/inf on plain probe texts although its weights "
                                 "are finite (overflow in the backbone?): this checkpoint cannot be exported")
            if not _agree(got, want):
                raise RuntimeError("the exported text route does not reproduce the student's embeddings")
            image_route = None
            if include_images:
                image, image_route = _image_modules(loaded_teacher, work, lean_image_route)
                probes = _probe_images()
                want = loaded_teacher.encode_image(probes)
                if not _agree(_encode(image, probes), want) and image_route == "vision_tower":
                    logger.warning("the teacher's vision tower alone does not reproduce encode_image; "
                                   "exporting the full teacher instead")
                    image, image_route = _image_modules(loaded_teacher, os.path.join(work, "full"), lean=False)
                if not _agree(_encode(image, probes), want):
                    raise RuntimeError("the exported image route does not reproduce the teacher's image embeddings")
                modules = [Router({"text": text, "image": image}, default_route="text")]
            else:
                modules = text
            st = SentenceTransformer(modules=modules, device="cpu", similarity_fn_name="cosine")
            st.save(staging, create_model_card=False)
            modalities = [m for m in st.modalities if isinstance(m, str)]
            report = None
            if onnx_kwargs and ({"onnx", "int8"} & set(onnx_kwargs["formats"]) or onnx_kwargs["measure_speed"]):
                from .export_onnx import export_onnx_formats

                report = export_onnx_formats(st, staging, **onnx_kwargs)
    finally:
        model.train(was_training)

    _annotate_config(staging, teacher_name, teacher_revision, config, image_route, modalities,
                     sorted(report["formats"]) if report else ["pytorch"])
    backbone_cfg = config.backbone_config
    sizes = route_sizes(staging)
    return ExportResult(
        path=output_dir, include_images=include_images, image_route=image_route,
        teacher_name_or_path=teacher_name, teacher_revision=teacher_revision,
        distillation_method=config.distillation_method,
        backbone_model_type=backbone_cfg.model_type,
        backbone_name_or_path=getattr(backbone_cfg, "_name_or_path", None) or None,
        pooling=config.pooling, projection_dim=config.projection_dim, projection_bias=config.projection_bias,
        max_seq_length=max_seq_length, text_route_bytes=sizes["text"], image_route_bytes=sizes["image"],
        teacher_fp32_bytes=_fp32_bytes(loaded_teacher.model) if loaded_teacher is not None else None,
        modalities=modalities, formats=report,
        kept_layers=getattr(config, "kept_layers", None), source_num_layers=getattr(config, "source_num_layers", None),
    )


def _fp32_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * 4 for t in tensors if t.is_floating_point())


def _annotate_config(output_dir: str, teacher: str | None, revision: str | None, config, image_route,
                     modalities=None, formats=None) -> None:
    """Record the teacher (and a version requirement) in config_sentence_transformers.json."""
    from ._version import __version__

    path = os.path.join(output_dir, "config_sentence_transformers.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["requirements"] = {"sentence-transformers": {
        "specifier": ST_REQUIREMENT,
        "reason": "the Router image route and the flash-attention fix for XLM-R were checked with 6.2"}}
    data["mvld_hf"] = {
        "version": __version__,
        "teacher_name_or_path": teacher,
        "teacher_revision": revision,
        "distillation_method": config.distillation_method,
        "kept_layers": getattr(config, "kept_layers", None),
        "image_route": image_route,
        "modalities": modalities,
        "formats": formats,
        "note": "text embeddings live in the teacher's embedding space; compare them only with this teacher's "
                "image (or text) embeddings",
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    _declare_modalities(output_dir, modalities)


def _declare_modalities(output_dir: str, modalities) -> None:
    """A Router export's modalities in a top-level ``sentence_bert_config.json`` (``modality_config``).

    sentence-transformers reads each route's modalities from its modules (``model.modalities``), but tools
    that look only at the repository's top-level files, like mteb (2.x: ``ModelMeta`` takes the keys of
    ``modality_config`` in the root ``sentence_bert_config.json``, else treats the model as text-only), would
    see no image route. A text-only export already has that file (its Transformer sits at the top level)."""
    path = os.path.join(output_dir, "sentence_bert_config.json")
    if not os.path.isfile(os.path.join(output_dir, "router_config.json")) or os.path.exists(path):
        return
    routes = {m: {"route": m} for m in (modalities or []) if m in ("text", "image", "audio", "video")}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"modality_config": routes}, f, indent=2)
