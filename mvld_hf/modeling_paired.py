"""The paired model: a distilled multilingual text tower + the teacher's frozen image tower, as one CLIP-like model.

After distillation the student writes into the teacher's embedding space, so pairing it with the teacher's
*unchanged* image tower (and the teacher's logit scale, plus the logit bias for SigLIP) gives a model that behaves
like the teacher's ``CLIPModel`` / ``SiglipModel`` but reads captions and labels in any language the student knows.

- :class:`MultilingualCLIPModel` (``model_type="mvld_clip"``): CLIP teachers. Vision tower ``CLIPVisionModel`` +
  ``visual_projection``; ``logits = exp(logit_scale) * cos``; ``softmax`` over labels in the zero-shot pipeline.
- :class:`MultilingualSiglipModel` (``model_type="mvld_siglip"``): SigLIP and SigLIP 2 teachers. Their vision model's
  pooled output is the embedding; ``logits = exp(logit_scale) * cos + logit_bias``; the zero-shot pipeline applies a
  ``sigmoid`` (it keys on ``"siglip"`` being in the model type).

Both are plain :class:`~transformers.PreTrainedModel`: after ``import mvld_hf`` (which calls
:func:`register_paired_auto_classes`) they round-trip through ``save_pretrained`` / ``AutoModel.from_pretrained`` and
``pipeline("zero-shot-image-classification", model=folder)`` works without ``trust_remote_code``.

``get_text_features`` / ``get_image_features`` return a ``BaseModelOutputWithPooling`` whose ``pooler_output`` is
the (projected, unnormalised) embedding, exactly like transformers 5's ``CLIPModel`` and ``SiglipModel``, so code
written for those (and :class:`~mvld_hf.teachers.DualEncoderTeacher`) works unchanged. ``forward`` returns a
:class:`MultilingualCLIPOutput` with the same fields as ``CLIPOutput``.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from .modeling_student import MultilingualTextTower, MultilingualTextTowerConfig

# vision config model_type -> family. CLIP adds a bias-free linear projection after the pooled vision output;
# SigLIP/SigLIP 2 vision models pool with their attention head and that pooled output *is* the embedding.
CLIP_VISION_TYPES = ("clip_vision_model",)
SIGLIP_VISION_TYPES = ("siglip_vision_model", "siglip2_vision_model")
# the teacher model types from_student_and_teacher understands
_TEACHER_TYPES = {"clip": "clip", "siglip": "siglip", "siglip2": "siglip"}


def _vector_norm(tensor: torch.Tensor) -> torch.Tensor:
    """CLIP's own norm (``pow/sum/pow``; numerically what ``CLIPModel.forward`` computes)."""
    return torch.pow(torch.sum(torch.pow(tensor, 2), dim=-1, keepdim=True), 0.5)


# ----------------------------------------------------------------------------------------------------- configs


@strict
class MultilingualCLIPConfig(PreTrainedConfig):
    r"""Configuration of a :class:`MultilingualCLIPModel` (student text tower + CLIP image tower).

    Args:
        text_config: a :class:`~mvld_hf.MultilingualTextTowerConfig` (or its dict): the distilled student.
        vision_config: the teacher's vision config (or its dict with ``model_type``): ``CLIPVisionConfig`` here,
            ``SiglipVisionConfig`` / ``Siglip2VisionConfig`` for :class:`MultilingualSiglipConfig`.
        logit_scale_init_value: the initial *log* of the logit scale (CLIP: ``log(1/0.07) = 2.6592``). A model built
            with :meth:`MultilingualCLIPModel.from_student_and_teacher` records the teacher's trained value here
            too; the weights carry it either way.
        teacher_name_or_path / teacher_revision: the teacher the image tower came from.

    ``projection_dim`` (read-only) is the shared embedding dimension, the student's ``projection_dim``.
    """

    model_type = "mvld_clip"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=MultilingualTextTowerConfig),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model"),
    }
    supported_vision_types = CLIP_VISION_TYPES  # class constant (unannotated: not a config field)

    text_config: MultilingualTextTowerConfig | dict | None = None
    vision_config: PreTrainedConfig | dict | None = None
    logit_scale_init_value: float = 2.6592
    teacher_name_or_path: str | None = None
    teacher_revision: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        vision_type = getattr(self.vision_config, "model_type", None)
        if vision_type not in self.supported_vision_types:
            hint = {CLIP_VISION_TYPES: "MultilingualCLIPConfig", SIGLIP_VISION_TYPES: "MultilingualSiglipConfig"}
            other = next((name for types, name in hint.items() if vision_type in types), None)
            raise ValueError(
                f"{type(self).__name__} needs a vision_config of type {self.supported_vision_types}, got "
                f"{vision_type!r}" + (f": use {other}" if other else ""))

    @property
    def projection_dim(self) -> int:
        return int(self.text_config.projection_dim)

    @property
    def has_logit_bias(self) -> bool:
        return False


@strict
class MultilingualSiglipConfig(MultilingualCLIPConfig):
    r"""Configuration of a :class:`MultilingualSiglipModel` (student text tower + SigLIP / SigLIP 2 image tower).

    As :class:`MultilingualCLIPConfig`, plus ``logit_bias_init_value`` (SigLIP's learnt bias; ``-10`` and a log
    scale of ``log(10)`` are the SigLIP paper's initial values).
    """

    model_type = "mvld_siglip"
    supported_vision_types = SIGLIP_VISION_TYPES
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=MultilingualTextTowerConfig),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="siglip_vision_model"),
    }

    logit_scale_init_value: float = math.log(10.0)
    logit_bias_init_value: float = -10.0

    @property
    def has_logit_bias(self) -> bool:
        return True


# ----------------------------------------------------------------------------------------------------- models


@dataclass
class MultilingualCLIPOutput(ModelOutput):
    """Same fields as transformers' ``CLIPOutput`` / ``SiglipOutput``.

    ``logits_per_image`` [n_images, n_texts] and ``logits_per_text`` (its transpose) are
    ``exp(logit_scale) * cos(text, image)`` (``+ logit_bias`` for SigLIP); ``text_embeds`` / ``image_embeds`` are the
    L2-normalised embeddings; ``loss`` (with ``return_loss=True``) is CLIP's symmetric InfoNCE or SigLIP's sigmoid
    loss over the diagonal pairs.
    """

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


class MultilingualCLIPModel(PreTrainedModel):
    """A distilled :class:`~mvld_hf.MultilingualTextTower` (``text_model``) paired with a CLIP teacher's unchanged
    vision tower (``vision_model`` + ``visual_projection``) and logit scale.

    Build one with :meth:`from_student_and_teacher`; use it like ``CLIPModel`` (``get_text_features``,
    ``get_image_features``, ``forward``) or through ``pipeline("zero-shot-image-classification")``.
    """

    config_class = MultilingualCLIPConfig
    base_model_prefix = "mvld_clip"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: MultilingualCLIPConfig):
        super().__init__(config)
        vision_config = config.vision_config
        self.text_model = MultilingualTextTower(config.text_config)
        self.vision_model = AutoModel.from_config(vision_config)
        vision_width = int(vision_config.hidden_size)
        if vision_config.model_type in CLIP_VISION_TYPES:
            self.visual_projection = nn.Linear(vision_width, config.projection_dim, bias=False)
        else:
            self.visual_projection = None
            if vision_width != config.projection_dim:
                raise ValueError(
                    f"the SigLIP image embedding has dimension {vision_width} but the text tower projects to "
                    f"{config.projection_dim}: the student must be distilled into this teacher's space")
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        if config.has_logit_bias:
            self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init_value)))
        else:
            self.logit_bias = None
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained`` plus a ``README.md`` card (unless the folder has one) saying that
        loading needs ``import mvld_hf`` and pointing to the sentence-transformers export as the no-import option."""
        super().save_pretrained(save_directory, *args, **kwargs)
        readme = os.path.join(os.fspath(save_directory), "README.md")
        if kwargs.get("is_main_process", True) and not os.path.exists(readme):
            with open(readme, "w", encoding="utf-8") as f:
                f.write(paired_model_card(self.config))

    @torch.no_grad()
    def _init_weights(self, module):
        # text_model and vision_model are PreTrainedModels: transformers dispatches their own _init_weights
        if module is self:
            init.constant_(self.logit_scale, float(self.config.logit_scale_init_value))
            if self.logit_bias is not None:
                init.constant_(self.logit_bias, float(self.config.logit_bias_init_value))
        elif module is self.visual_projection:
            factor = getattr(self.config.vision_config, "initializer_factor", 1.0)
            init.normal_(module.weight, mean=0.0, std=module.in_features**-0.5 * factor)

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_student_and_teacher(
        cls,
        student: MultilingualTextTower,
        teacher,
        teacher_name_or_path: str | None = None,
        teacher_revision: str | None = None,
    ) -> MultilingualCLIPModel:
        """Pair a trained student with a teacher's image side.

        ``teacher`` is a ``CLIPModel``, ``SiglipModel`` or ``Siglip2Model`` (or a
        :class:`~mvld_hf.teachers.DualEncoderTeacher` around one). Only the teacher's vision tower, its
        ``visual_projection`` (CLIP) and ``logit_scale`` / ``logit_bias`` are copied; the teacher's text tower is not.
        Both inputs are left untouched (the new model holds copies). Called on :class:`MultilingualCLIPModel` with a
        SigLIP teacher it returns a :class:`MultilingualSiglipModel`.

        Weights are copied into float32 modules; with a float32 teacher ``get_image_features`` is bit-identical to
        the teacher's.
        """
        from .teachers import DualEncoderTeacher

        if isinstance(teacher, DualEncoderTeacher):
            teacher_name_or_path = teacher_name_or_path or teacher.name_or_path
            teacher_revision = teacher_revision or teacher.revision
            teacher = teacher.model
        if not isinstance(student, MultilingualTextTower):
            raise TypeError(f"student must be a MultilingualTextTower, got {type(student).__name__}")
        teacher_type = getattr(getattr(teacher, "config", None), "model_type", None)
        family = _TEACHER_TYPES.get(teacher_type)
        if family is None:
            raise TypeError(
                f"teacher must be a CLIPModel, SiglipModel or Siglip2Model, got {type(teacher).__name__} "
                f"(model_type {teacher_type!r})")
        target = MultilingualSiglipModel if family == "siglip" else MultilingualCLIPModel
        if cls is not MultilingualCLIPModel and not issubclass(cls, target):
            raise TypeError(f"{cls.__name__} cannot pair with a {teacher_type} teacher; use {target.__name__}")
        if not issubclass(cls, target):
            cls = target

        teacher_dim = (int(teacher.config.projection_dim) if family == "clip"
                       else int(teacher.config.vision_config.hidden_size))
        if student.config.projection_dim != teacher_dim:
            raise ValueError(
                f"the student projects to {student.config.projection_dim} dimensions but the teacher's embeddings "
                f"have {teacher_dim}: this student was not distilled into this teacher")

        teacher_name_or_path = teacher_name_or_path or getattr(teacher.config, "_name_or_path", None) or None
        teacher_revision = teacher_revision or student.config.teacher_revision
        recorded = student.config.teacher_name_or_path
        if recorded and teacher_name_or_path and recorded != teacher_name_or_path:
            warnings.warn(
                f"the student records teacher {recorded!r} but is paired with {teacher_name_or_path!r}; "
                "embeddings are only comparable within one teacher's space", stacklevel=2)
        teacher_name_or_path = teacher_name_or_path or recorded

        config_kwargs = dict(
            text_config=copy.deepcopy(student.config),
            vision_config=copy.deepcopy(teacher.config.vision_config),
            logit_scale_init_value=float(teacher.logit_scale.detach().float().reshape(())),
            teacher_name_or_path=teacher_name_or_path,
            teacher_revision=teacher_revision,
        )
        if family == "siglip":
            config_kwargs["logit_bias_init_value"] = float(teacher.logit_bias.detach().float().reshape(()))
        config = target.config_class(**config_kwargs)
        config.vision_config._attn_implementation = teacher.config.vision_config._attn_implementation
        config.text_config._attn_implementation = student.config._attn_implementation

        with init.no_init_weights():  # every weight is overwritten below
            model = cls(config)
        model.text_model.load_state_dict(student.state_dict(), strict=True)
        model.vision_model.load_state_dict(teacher.vision_model.state_dict(), strict=True)
        if family == "clip":
            model.visual_projection.load_state_dict(teacher.visual_projection.state_dict(), strict=True)
        with torch.no_grad():
            model.logit_scale.copy_(teacher.logit_scale.detach().reshape(()))
            if model.logit_bias is not None:
                model.logit_bias.copy_(teacher.logit_bias.detach().reshape(()))
        return model.eval()

    # ------------------------------------------------------------------------------------------ features

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.text_model.set_input_embeddings(value)

    def get_text_features(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """The student's embedding as ``pooler_output`` [batch, projection_dim] (projected, not normalised), its
        token states as ``last_hidden_state``. Extra kwargs go to the student's backbone."""
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              **kwargs)
        return BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state, pooler_output=out.text_embeds)

    def get_image_features(self, pixel_values: torch.Tensor | None = None, **kwargs) -> BaseModelOutputWithPooling:
        """The teacher's image embedding as ``pooler_output``, computed exactly as the teacher's own
        ``get_image_features``: CLIP projects the vision tower's pooled output with ``visual_projection``; SigLIP and
        SigLIP 2 return their vision model's output unchanged. Extra kwargs (``interpolate_pos_encoding``, SigLIP 2's
        ``pixel_attention_mask`` / ``spatial_shapes``) go to the vision model."""
        vision_outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **kwargs)
        if self.visual_projection is not None:
            vision_outputs.pooler_output = self.visual_projection(vision_outputs.pooler_output)
        return vision_outputs

    # ------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **vision_kwargs,
    ) -> MultilingualCLIPOutput | tuple:
        """Score every text against every image, like ``CLIPModel.forward`` (same argument order).

        ``vision_kwargs`` are passed to the vision tower (``interpolate_pos_encoding``; SigLIP 2's
        ``pixel_attention_mask`` and ``spatial_shapes``, which its image processor returns).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        vision_outputs = self.get_image_features(pixel_values=pixel_values, **vision_kwargs)
        text_outputs = self.get_text_features(input_ids=input_ids, attention_mask=attention_mask,
                                              token_type_ids=token_type_ids)
        image_embeds = vision_outputs.pooler_output
        text_embeds = text_outputs.pooler_output

        if self.logit_bias is None:  # CLIP, mirroring CLIPModel.forward
            image_embeds = image_embeds / _vector_norm(image_embeds)
            text_embeds = text_embeds / _vector_norm(text_embeds)
            logits_per_text = torch.matmul(text_embeds, image_embeds.t().to(text_embeds.device))
            logits_per_text = logits_per_text * self.logit_scale.exp().to(text_embeds.device)
        else:  # SigLIP / SigLIP 2, mirroring SiglipModel.forward
            image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
            text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
            logits_per_text = torch.matmul(text_embeds, image_embeds.t().to(text_embeds.device))
            logit_scale = self.logit_scale.to(text_embeds.device)
            logit_bias = self.logit_bias.to(text_embeds.device)
            logits_per_text = logits_per_text * logit_scale.exp() + logit_bias
        logits_per_image = logits_per_text.t()

        loss = None
        if return_loss:
            loss = self._loss(logits_per_text)

        output = MultilingualCLIPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return output if return_dict else output.to_tuple()

    def _loss(self, logits_per_text: torch.Tensor) -> torch.Tensor:
        if logits_per_text.shape[0] != logits_per_text.shape[1]:
            raise ValueError("return_loss needs as many texts as images (text i describes image i)")
        if self.logit_bias is None:  # CLIP's symmetric cross-entropy
            target = torch.arange(len(logits_per_text), device=logits_per_text.device)
            return (nn.functional.cross_entropy(logits_per_text, target)
                    + nn.functional.cross_entropy(logits_per_text.t(), target)) / 2.0
        # SigLIP's pairwise sigmoid loss: +1 on the diagonal, -1 elsewhere
        labels = 2 * torch.eye(len(logits_per_text), device=logits_per_text.device) - 1
        return -nn.functional.logsigmoid(labels * logits_per_text).sum(dim=-1).mean()


class MultilingualSiglipModel(MultilingualCLIPModel):
    """:class:`MultilingualCLIPModel` for SigLIP / SigLIP 2 teachers: no visual projection (the vision model's pooled
    output is the embedding) and a learnt ``logit_bias``; the zero-shot pipeline scores with a sigmoid."""

    config_class = MultilingualSiglipConfig
    base_model_prefix = "mvld_siglip"


# ----------------------------------------------------------------------------------------------------- registration


def paired_model_card(config: MultilingualCLIPConfig) -> str:
    """The card of a saved paired model: what it is and that it loads only after ``import mvld_hf``."""
    from .run_record import is_hub_id

    teacher = config.teacher_name_or_path
    named = f"`{teacher}`" + (f" (revision `{config.teacher_revision}`)" if config.teacher_revision else "") \
        if is_hub_id(teacher) else "its teacher (recorded by a local path, not a Hub id)"
    family = "SigLIP" if config.has_logit_bias else "CLIP"
    base = f"base_model:\n- {teacher}\n" if is_hub_id(teacher) else ""
    return f"""---
library_name: transformers
pipeline_tag: zero-shot-image-classification
{base}tags:
- mvld_hf
- multilingual
- {family.lower()}
---

# Paired multilingual {family} model (mvld_hf)

An mvld_hf student text tower paired with the unchanged vision side of {named} as one transformers model
(`{type(config).__name__}`, `model_type: {config.model_type}`): text in the student's languages, images as the
teacher sees them, logits with the teacher's own scale{" and bias" if config.has_logit_bias else ""}.

**Loading needs `import mvld_hf`.** The `{config.model_type}` model type is registered with transformers' Auto
classes by mvld_hf (`pip install mvld_hf`); without the import transformers does not know it and suggests
upgrading transformers, which does not help.

```python
import mvld_hf  # registers {config.model_type} with the Auto classes
from transformers import pipeline

classify = pipeline("zero-shot-image-classification", model="path/to/this/folder")
classify(image, candidate_labels=["ein roter Kreis", "ein blaues Quadrat"], hypothesis_template="{{}}")
```

To use the embeddings with nothing but `sentence-transformers` installed, export the student instead as one
Sentence Transformers model (`hub_upload.py CHECKPOINT --local-dir DIR`, `mvld-upload`, or
`mvld_hf.export_sentence_transformer`): that folder loads with plain `SentenceTransformer(path)`, no import.
"""


def register_paired_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` / ``AutoModelForZeroShotImageClassification`` / ``AutoProcessor`` resolve
    ``model_type`` ``"mvld_clip"`` and ``"mvld_siglip"`` (idempotent). ``import mvld_hf`` calls it."""
    from transformers import AutoModelForZeroShotImageClassification, AutoProcessor

    from .processing_paired import MultilingualCLIPProcessor

    for config_class, model_class in ((MultilingualCLIPConfig, MultilingualCLIPModel),
                                      (MultilingualSiglipConfig, MultilingualSiglipModel)):
        for register, args in ((AutoConfig.register, (config_class.model_type, config_class)),
                               (AutoModel.register, (config_class, model_class)),
                               (AutoModelForZeroShotImageClassification.register, (config_class, model_class)),
                               (AutoProcessor.register, (config_class, MultilingualCLIPProcessor))):
            try:
                register(*args)
            except ValueError:  # already registered
                pass
