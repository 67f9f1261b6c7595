"""The modules of a Sentence Transformers export and the probe checks they must pass: the text route
(the student's backbone saved as a plain transformers model, Pooling, Dense), the image route (the teacher's
vision tower, or the whole teacher), probe texts and images, and the agreement test against the source model."""

from __future__ import annotations

import copy
import json
import os

import torch
from torch import nn

from .modeling_student import MultilingualTextTower
from .student_loading import read_json
from .teachers import DualEncoderTeacher

_CALL_STATE_KEYS = ("max_length", "stride", "truncation_strategy", "pad_to_multiple_of", "pad_token_type_id")
PROBE_TEXTS = ["a red circle left of a blue square", "ein roter Kreis links von einem blauen Quadrat",
               "un cercle rouge", "x"]


def cpu_float_student(student: MultilingualTextTower) -> MultilingualTextTower:
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
    data = read_json(file)
    if data is not None and (data.get("truncation") is not None or data.get("padding") is not None):
        data["truncation"] = data["padding"] = None
        with open(file, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    file = os.path.join(path, "tokenizer_config.json")
    config = read_json(file)
    if config is None:
        return
    keep = {k: v for k, v in config.items() if k not in _CALL_STATE_KEYS
            and not (k in ("padding_side", "truncation_side") and v == "right")}
    if keep != config:
        with open(file, "w", encoding="utf-8") as f:
            json.dump(keep, f, indent=2, ensure_ascii=False, sort_keys=True)


def text_modules(student: MultilingualTextTower, tokenizer, work: str, max_seq_length: int | None) -> list:
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


def image_modules(teacher: DualEncoderTeacher, work: str, lean: bool) -> tuple[list, str]:
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


def probe_images(n: int = 3):
    from PIL import Image

    images = [Image.new("RGB", (64, 48), colour) for colour in ((220, 30, 30), (30, 30, 220))]
    gradient = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    return (images + [gradient])[:n]


def agree(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Same embeddings up to float noise (loose enough for a half-precision teacher or student)."""
    got, want = got.float().cpu(), want.float().cpu()
    if got.shape != want.shape:
        return False
    cos = torch.nn.functional.cosine_similarity(got, want, dim=-1)
    ratio = got.norm(dim=-1) / want.norm(dim=-1).clamp(min=1e-12)
    return bool((cos > 0.999).all() and ((ratio - 1).abs() < 1e-2).all())


def run_route(modules: list, inputs: list) -> torch.Tensor:
    """Run an (unsaved) route on raw inputs the way SentenceTransformer.encode does."""
    first = modules[0]
    features = first.preprocess(inputs)
    with torch.no_grad():
        for module in modules:
            features = module(features)
    return features["sentence_embedding"]


def fp32_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * 4 for t in tensors if t.is_floating_point())
