"""The student: a multilingual text tower that writes into a frozen teacher's embedding space.

``MultilingualTextTower`` = any ``AutoModel`` text encoder (XLM-R, multilingual DistilBERT, MiniLM, ...)
-> pooling (``mean`` over non-padding tokens, or ``cls``) -> linear projection to the teacher's dimension.

It is a plain :class:`~transformers.PreTrainedModel`: ``save_pretrained`` / ``from_pretrained`` round-trip, and
after ``import mvld_hf`` it loads through ``AutoConfig`` / ``AutoModel`` without ``trust_remote_code``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

POOLING_MODES = ("mean", "cls")


@strict
class MultilingualTextTowerConfig(PreTrainedConfig):
    r"""Configuration of a :class:`MultilingualTextTower`.

    Args:
        backbone_config: config (or its dict) of the text encoder, any ``AutoConfig`` model type.
        projection_dim: the teacher's embedding dimension (512 for CLIP ViT-B/32, 768 for ViT-L/14, ...).
        pooling: ``"mean"`` (mean over non-padding tokens, the default; M-CLIP found CLS pooling clearly worse)
            or ``"cls"`` (first token).
        projection_bias: whether the projection has a bias.
        teacher_name_or_path / teacher_revision: the teacher whose embedding space this student writes into. An
            embedding space is only meaningful with its teacher, so it is recorded with the weights.
        distillation_method: the method string the student was trained with (informational).
        backbone_name_or_path: the pretrained checkpoint the backbone's weights came from (set by
            :meth:`MultilingualTextTower.from_backbone`); ``None`` for a backbone built from a config (random
            weights). ``projection_init="auto"`` warm-starts the projection only for a pretrained backbone.
        kept_layers: the indices (in the pretrained checkpoint) of the transformer layers this student kept
            (``from_backbone(..., keep_layers=...)``), in order; ``None`` when every layer was kept.
        source_num_layers: how many layers the pretrained checkpoint had, when ``kept_layers`` is set.
        vocabulary_trim: set by :func:`mvld_hf.vocab_trim.trim_vocabulary`: the languages the vocabulary was
            trimmed for, the kept and original sizes, the unknown token and the policy (``max_unknown_rate``,
            ``on_unknown``) the forward applies to batches with many unknown tokens; ``None``: not trimmed.

    Example::

        >>> from transformers import XLMRobertaConfig
        >>> config = MultilingualTextTowerConfig(
        ...     backbone_config=XLMRobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                                      intermediate_size=37, vocab_size=100),
        ...     projection_dim=16)
        >>> MultilingualTextTower(config).get_text_features(torch.tensor([[0, 5, 2]])).shape
        torch.Size([1, 16])
    """

    model_type = "mvld_text_tower"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="xlm-roberta")}

    backbone_config: PreTrainedConfig | dict | None = None
    projection_dim: int = 512
    pooling: str = "mean"
    projection_bias: bool = True
    teacher_name_or_path: str | None = None
    teacher_revision: str | None = None
    distillation_method: str | None = None
    backbone_name_or_path: str | None = None
    kept_layers: list[int] | None = None
    source_num_layers: int | None = None
    vocabulary_trim: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.projection_dim <= 0:
            raise ValueError(f"projection_dim must be positive, got {self.projection_dim}")
        # the tower's special tokens are its backbone's: the Trainer compares them with the tokenizer's and would
        # otherwise "align" them (and log "The tokenizer has new PAD/BOS/EOS tokens ...") on every run
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(self, name, None) is None and getattr(self.backbone_config, name, None) is not None:
                setattr(self, name, getattr(self.backbone_config, name))

    @property
    def backbone_hidden_size(self) -> int:
        cfg = self.backbone_config
        for name in ("hidden_size", "dim", "d_model"):  # BERT/XLM-R, DistilBERT, T5-style
            if getattr(cfg, name, None) is not None:
                return int(getattr(cfg, name))
        raise ValueError(f"cannot tell the hidden size of backbone config {type(cfg).__name__}")


@dataclass
class TextTowerOutput(ModelOutput):
    """``text_embeds``: projected sentence embeddings [batch, projection_dim] (not normalised);
    ``pooled_output``: the pooled backbone output before projection; ``last_hidden_state``: token states."""

    text_embeds: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Pool token states [B, T, H] into [B, H]: masked mean or first token."""
    if mode == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MultilingualTextTower(PreTrainedModel):
    """Backbone + pooling + projection to the teacher's embedding dimension.

    ``forward(input_ids, attention_mask)`` returns a :class:`TextTowerOutput`; ``get_text_features`` returns the
    projected embedding tensor, as CLIP's does.
    """

    config_class = MultilingualTextTowerConfig
    base_model_prefix = "text_tower"
    main_input_name = "input_ids"
    input_modalities = ("text",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: MultilingualTextTowerConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        if getattr(self.backbone, "pooler", None) is not None:
            # BERT-style poolers are unused (we pool ourselves); unused parameters would break DDP
            self.backbone.pooler = None
        self.projection = nn.Linear(config.backbone_hidden_size, config.projection_dim, bias=config.projection_bias)
        self.post_init()

    def _init_weights(self, module):
        if module is self.projection:
            std = getattr(self.config.backbone_config, "initializer_range", 0.02)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        else:
            # every other module belongs to the backbone: let it initialise its own way
            self.backbone._init_weights(module)

    @classmethod
    def from_backbone(
        cls,
        backbone_name_or_path: str,
        projection_dim: int,
        pooling: str = "mean",
        projection_bias: bool = True,
        teacher_name_or_path: str | None = None,
        teacher_revision: str | None = None,
        keep_layers: int | list[int] | tuple[int, ...] | None = None,
        **backbone_kwargs,
    ) -> MultilingualTextTower:
        """Build a student from a pretrained text encoder (e.g. ``"xlm-roberta-base"``) with a fresh projection.

        ``keep_layers`` builds a smaller student from the same checkpoint by keeping only some of its
        transformer layers (DistilBERT's initialisation kept every other layer of BERT): an int ``N`` keeps ``N``
        evenly spaced layers, the first and the last included (12 layers, ``N=6``: 0, 2, 4, 7, 9, 11); a list
        keeps those indices (increasing; negative ones count from the end). The backbone's config gets the new
        layer count, so the student (and its export) is a plain model of that size; the kept indices are
        recorded in ``config.kept_layers`` (and the model card). Works for any backbone whose layers sit in one
        ``nn.ModuleList`` as long as the config's layer count (BERT, XLM-R, DistilBERT, MiniLM, ...).

        Example::

            >>> import tempfile
            >>> from transformers import BertConfig, BertModel
            >>> folder = tempfile.mkdtemp()
            >>> BertModel(BertConfig(hidden_size=8, num_hidden_layers=4, num_attention_heads=2,
            ...                      intermediate_size=8, vocab_size=20)).save_pretrained(folder)
            >>> student = MultilingualTextTower.from_backbone(folder, projection_dim=3, keep_layers=2)
            >>> student.config.kept_layers, student.config.backbone_config.num_hidden_layers
            ([0, 3], 2)
        """
        backbone = AutoModel.from_pretrained(backbone_name_or_path, **backbone_kwargs)
        weights = {k: v for k, v in backbone.state_dict().items() if not k.startswith("pooler.")}
        backbone_config, kept, total = backbone.config, None, None
        if keep_layers is not None:
            from .layer_keeping import keep_layers as _keep

            backbone_config, weights, kept, total = _keep(backbone, weights, keep_layers)
        config = MultilingualTextTowerConfig(
            backbone_config=backbone_config.to_dict(),
            projection_dim=projection_dim,
            pooling=pooling,
            projection_bias=projection_bias,
            teacher_name_or_path=teacher_name_or_path,
            teacher_revision=teacher_revision,
            backbone_name_or_path=str(backbone_name_or_path),
            kept_layers=kept,
            source_num_layers=total,
        )
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            raise RuntimeError(f"backbone weights did not fit: missing={missing} unexpected={unexpected}")
        return model

    @torch.no_grad()
    def fit_projection(self, pooled: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-2,
                       fit_weight: bool = True) -> dict[str, float]:
        r"""Warm-start the projection by ridge regression of teacher embeddings on pooled backbone outputs.

        With ``P`` the pooled outputs [n, h] and ``A`` the teacher's embeddings of the same rows [n, d] (both
        centred when the projection has a bias), the weight becomes

        .. math:: W^\top = (P_c^\top P_c + \lambda I)^{-1} P_c^\top A_c,\qquad
                  \lambda = \text{ridge} \cdot \operatorname{tr}(P_c^\top P_c) / h

        and the bias ``mean(A) - mean(P) W^T``: the best linear map from this backbone to the teacher before any
        training step. Solved in float64 on the CPU. A pretrained backbone's pooled outputs are far from the
        teacher's space (multilingual-e5-small: norm 4.7, mean pairwise cosine 0.91 on our captions) and a random
        projection maps them to norm-1.9 vectors at cosine ~0 from their targets; the MSE of FD/ED then pulls
        every output towards the targets' mean first and the student collapses to a constant (see
        ``benchmarks/RESULTS_real_models.md``). Starting from the least-squares map the MSE's gradient carries
        the per-row differences from the first step.

        With ``fit_weight=False`` the weight is kept and only the bias is set, ``mean(A) - mean(P) W^T``: the
        outputs start centred on the targets' mean without the large gain a least-squares weight takes on a
        backbone whose outputs carry little signal yet (a randomly initialised one).

        Returns ``{"r2": fraction of the targets' variance explained, "cosine": mean cos(fit, target)}``.

        Example::

            >>> from transformers import BertConfig
            >>> tower = MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=BertConfig(
            ...     hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, vocab_size=20),
            ...     projection_dim=3))
            >>> pooled = torch.randn(50, 8); targets = pooled[:, :3] * 2 + 1
            >>> tower.fit_projection(pooled, targets, ridge=0.0)["r2"] > 0.999
            True
        """
        if pooled.dim() != 2 or targets.dim() != 2 or pooled.shape[0] != targets.shape[0]:
            raise ValueError(f"fit_projection needs pooled [n, hidden] and targets [n, dim] with the same n, got "
                             f"{tuple(pooled.shape)} and {tuple(targets.shape)}")
        hidden, dim = self.projection.in_features, self.projection.out_features
        if pooled.shape[1] != hidden or targets.shape[1] != dim:
            raise ValueError(f"fit_projection: the projection maps {hidden} -> {dim} dims, got pooled outputs of "
                             f"{pooled.shape[1]} and targets of {targets.shape[1]} dims")
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        p, a = pooled.detach().double().cpu(), targets.detach().double().cpu()
        bias = self.projection.bias is not None
        p_mean = p.mean(0) if bias else torch.zeros(hidden, dtype=p.dtype)
        a_mean = a.mean(0) if bias else torch.zeros(dim, dtype=a.dtype)
        pc, ac = p - p_mean, a - a_mean
        if fit_weight:
            gram = pc.T @ pc
            lam = ridge * float(gram.diagonal().sum()) / hidden
            weight = torch.linalg.lstsq(gram + lam * torch.eye(hidden, dtype=gram.dtype), pc.T @ ac).solution  # [h, d]
            self.projection.weight.copy_(weight.T.to(self.projection.weight))
        else:
            weight = self.projection.weight.detach().double().cpu().T
        fit = pc @ weight + a_mean
        if bias:
            self.projection.bias.copy_((a_mean - p_mean @ weight).to(self.projection.bias))
        residual = float(((fit - a) ** 2).sum())
        total = float(((a - a.mean(0)) ** 2).sum())
        cosine = float(torch.nn.functional.cosine_similarity(fit, a, dim=-1).mean())
        return {"r2": 1.0 - residual / total if total > 0 else float("nan"), "cosine": cosine}

    @torch.no_grad()
    def center_outputs(self, pooled: torch.Tensor, anchor_mean: torch.Tensor | None = None,
                       share: float = 0.0) -> torch.Tensor:
        """A fitted bias correction: shift the projection's bias so that the mean output over ``pooled`` (pooled
        backbone outputs of training captions, [n, hidden]) becomes ``share * anchor_mean`` (default: zero).

        An MSE to the anchors (FD, ED) regresses every caption towards the anchors' mean; the shared part of the
        outputs then favours the same teacher rows in every cosine ranking (hubs) and crowds the students'
        outputs (mean pairwise cosine 0.19 against the teacher's 0.10 on human text). Taking it off after
        training raised FD's translation top-1 from 0.823 to 0.856 and, on another seed, from 0.799 to 0.863 on
        the four-language catalog benchmark
        (``benchmarks/RESULTS_real_models.md``, issue 32). Every output moves by the same vector; returns it.

        >>> from transformers import BertConfig
        >>> tower = MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=BertConfig(
        ...     hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, vocab_size=20),
        ...     projection_dim=3))
        >>> pooled = torch.randn(10, 8)
        >>> shift = tower.center_outputs(pooled)
        >>> bool(tower.projection(pooled).mean(0).abs().max() < 1e-5)
        True
        """
        if self.projection.bias is None:
            raise ValueError("center_outputs shifts the projection's bias; this student has none "
                             "(projection_bias=False)")
        if pooled.dim() != 2 or pooled.shape[1] != self.projection.in_features or len(pooled) == 0:
            raise ValueError(f"center_outputs needs pooled outputs [n, {self.projection.in_features}], got "
                             f"{tuple(pooled.shape)}")
        mean = self.projection(pooled.to(self.projection.weight)).double().mean(0)
        target = torch.zeros_like(mean) if anchor_mean is None else share * anchor_mean.double().to(mean.device)
        shift = target - mean
        self.projection.bias.add_(shift.to(self.projection.bias))
        return shift.float()

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.backbone.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> TextTowerOutput:
        if self.config.vocabulary_trim and input_ids is not None:
            from .vocab_trim import check_unknown_tokens

            check_unknown_tokens(input_ids, attention_mask, self.config.vocabulary_trim)
        backbone_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            backbone_inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**backbone_inputs, **kwargs).last_hidden_state
        pooled = pool(hidden, attention_mask, self.config.pooling)
        return TextTowerOutput(text_embeds=self.projection(pooled), pooled_output=pooled, last_hidden_state=hidden)

    def get_text_features(self, input_ids=None, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        out = self.forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.text_embeds

    @torch.no_grad()
    def encode(self, texts: list[str], tokenizer, batch_size: int = 64, max_length: int = 128,
               normalize: bool = False, show_progress_bar: bool = False) -> torch.Tensor:
        """Embed raw strings in batches (eval mode, no grad); float32 on CPU, in input order."""
        from .encode import encode_texts

        return encode_texts(self, tokenizer, texts, batch_size=batch_size, max_length=max_length,
                            normalize=normalize, show_progress_bar=show_progress_bar)


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel`` resolve ``model_type="mvld_text_tower"`` (idempotent)."""
    try:
        AutoConfig.register(MultilingualTextTowerConfig.model_type, MultilingualTextTowerConfig)
    except ValueError:  # already registered
        pass
    try:
        AutoModel.register(MultilingualTextTowerConfig, MultilingualTextTower)
    except ValueError:
        pass
