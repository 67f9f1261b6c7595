"""Frozen teachers behind one interface: ``encode_text(list[str])``, ``encode_image(list[PIL.Image])``, ``dim``.

Adapters:
- :class:`DualEncoderTeacher` for transformers image-text dual encoders (``CLIPModel``, ``SiglipModel``,
  ``Siglip2Model``, or anything with ``get_text_features``/``get_image_features``). In transformers 5 those
  return a ``ModelOutput`` whose ``pooler_output`` is the (projected, unnormalised) embedding.
- :class:`SentenceTransformerTeacher` for any ``SentenceTransformer``; a text-only one gives text anchors only.

:func:`load_teacher` picks the adapter from a name or path. Teachers are always frozen: eval mode,
``requires_grad_(False)`` and ``torch.no_grad()`` in every call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from .data_utils import decode_image, embedding_from_output, is_local_path
from .encode import check_texts

# SigLIP models were trained on text padded to a fixed length of 64 tokens and embed differently otherwise.
_FIXED_LENGTH_PADDING = {"siglip": 64, "siglip2": 64}


class TeacherCapabilityError(ValueError):
    """The teacher cannot produce what was asked (e.g. image embeddings from a text-only model)."""

    @classmethod
    def text_only(cls, name_or_path: str, image_column: str = "teacher_image_embeds") -> TeacherCapabilityError:
        """The one wording of "a text-only teacher cannot give image anchors"."""
        return cls(f"anchor='image' needs image embeddings but teacher {name_or_path!r} is text-only (it has no "
                   "image tower or image processor): use anchor='text', a CLIP/SigLIP teacher, or precomputed "
                   f"'{image_column}'")


class Teacher:
    """Base class. Subclasses implement ``_encode_text_batch`` and optionally ``_encode_image_batch``."""

    name_or_path: str = "teacher"
    revision: str | None = None
    supports_images: bool = False

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def _encode_image_batch(self, images: list) -> torch.Tensor:
        raise TeacherCapabilityError.text_only(self.name_or_path)

    # the two halves of the image path: ``prepare_images`` (decode + image processor, CPU only, safe in DataLoader
    # workers: see mvld_hf.image_pipeline) and ``encode_prepared_images`` (the forward, where the teacher lives)
    def prepare_images(self, images: Sequence) -> Any:
        """Decoded RGB PIL images; a teacher with an image processor returns its CPU tensors instead."""
        if not self.supports_images:
            return self._encode_image_batch(list(images))  # raises TeacherCapabilityError
        return [decode_image(im, f"image {i}", rgb=True) for i, im in enumerate(images)]

    @torch.no_grad()
    def encode_prepared_images(self, prepared) -> torch.Tensor:
        """float32 [N, dim] embeddings of one batch made by :meth:`prepare_images`, on the teacher's device."""
        return self._encode_image_batch(prepared).float()

    def text_tokenizer(self) -> TeacherTextTokenizer | None:
        """A picklable callable giving this teacher's token tensors for a list of captions (what
        :meth:`encode_tokenized` reads), for DataLoader workers; ``None`` if the teacher tokenizes internally."""
        return None

    @torch.no_grad()
    def encode_tokenized(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """float32 [N, dim] embeddings of captions tokenized by :meth:`text_tokenizer`, on the teacher's device."""
        raise NotImplementedError(f"{type(self).__name__} has no text_tokenizer(): use encode_text")

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> torch.Tensor:
        """Embed texts: float32 [N, dim] on the teacher's device, in input order."""
        texts = check_texts(texts, "teacher texts")
        return self._batched(self._encode_text_batch, texts, batch_size, show_progress_bar, "Teacher texts")

    @torch.no_grad()
    def encode_image(self, images: Sequence, batch_size: int = 64, show_progress_bar: bool = False,
                     num_workers: int | None = 0) -> torch.Tensor:
        """Embed PIL images (or undecoded ``{"bytes", "path"}`` rows): float32 [N, dim] on the teacher's device,
        in input order. ``num_workers > 0`` decodes and preprocesses the batches in that many DataLoader worker
        processes while this one runs the forward (``None``: :func:`~mvld_hf.image_pipeline.default_num_workers`).
        """
        if not self.supports_images:
            return self._encode_image_batch(list(images))  # raises TeacherCapabilityError
        from .image_pipeline import iter_prepared_batches

        images = list(images)
        if not images:
            raise ValueError("the teacher got nothing to encode")

        def get(start: int, stop: int):  # decode here, so an error names the image's position in the input
            return [decode_image(im, f"image {i}", rgb=True) for i, im in enumerate(images[start:stop], start)]

        batches = iter_prepared_batches(len(images), get, batch_size, self.prepare_images, num_workers, self.device)
        chunks = [self.encode_prepared_images(b) for b in
                  tqdm(batches, desc="Teacher images", total=-(-len(images) // batch_size),
                       disable=not show_progress_bar)]
        return torch.cat(chunks)

    @staticmethod
    def _batched(fn, items: list, batch_size: int, show_progress_bar: bool, desc: str) -> torch.Tensor:
        if not items:
            raise ValueError("the teacher got nothing to encode")
        chunks = [fn(items[i : i + batch_size]).float() for i in
                  tqdm(range(0, len(items), batch_size), desc=desc, disable=not show_progress_bar)]
        return torch.cat(chunks)

    def fingerprint(self) -> str:
        """A string identifying the teacher's embedding space, used for caching precomputed embeddings."""
        return f"{self.name_or_path}@{self.revision or 'local'}"


class TeacherTextTokenizer:
    """A dual encoder's caption tokenizer on its own (no model): ``tokenizer(texts)`` gives the ``input_ids`` /
    ``attention_mask`` tensors :meth:`DualEncoderTeacher.encode_tokenized` reads, padded as the teacher pads
    (to the batch's longest, or to SigLIP's fixed 64). Picklable, for DataLoader workers."""

    def __init__(self, tokenizer, max_length: int, fixed_length: int | None = None):
        self.tokenizer, self.max_length, self.fixed_length = tokenizer, max_length, fixed_length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        padding = "max_length" if self.fixed_length else True
        batch = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        out = {"input_ids": batch["input_ids"]}
        if "attention_mask" in batch:
            out["attention_mask"] = batch["attention_mask"]
        return out


class DualEncoderTeacher(Teacher):
    """A transformers image-text dual encoder (CLIP, SigLIP, SigLIP2, ...) with its tokenizer and image processor."""

    supports_images = True

    def __init__(self, model, tokenizer, image_processor=None, name_or_path: str | None = None,
                 revision: str | None = None, max_length: int | None = None):
        if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
            raise TypeError(f"{type(model).__name__} has no get_text_features/get_image_features")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self._pixels_as_uint8: bool | None = None  # decided on the first batch (see prepare_images)
        self.supports_images = image_processor is not None
        self.name_or_path = name_or_path or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.revision = revision
        model_type = getattr(model.config, "model_type", "")
        self.fixed_length = _FIXED_LENGTH_PADDING.get(model_type)
        text_cfg = getattr(model.config, "text_config", model.config)
        self.max_length = max_length or self.fixed_length or getattr(text_cfg, "max_position_embeddings", 77)

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None, dtype=None, **kwargs):
        from transformers import AutoModel, AutoTokenizer

        from .image_pipeline import load_image_processor

        model = AutoModel.from_pretrained(name_or_path, revision=revision, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
        try:  # the torchvision-backed processor where torchvision imports, else the PIL one
            image_processor = load_image_processor(name_or_path, revision=revision)
        except (OSError, ValueError):
            image_processor = None
        if device is not None:
            model = model.to(device)
        return cls(model, tokenizer, image_processor, name_or_path=name_or_path, revision=revision)

    @property
    def dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "projection_dim", None) or cfg.text_config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def text_tokenizer(self) -> TeacherTextTokenizer:
        return TeacherTextTokenizer(self.tokenizer, self.max_length, self.fixed_length)

    @torch.no_grad()
    def encode_tokenized(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs = {"input_ids": torch.as_tensor(tokens["input_ids"]).to(self.device, non_blocking=True)}
        if tokens.get("attention_mask") is not None and not self.fixed_length:
            kwargs["attention_mask"] = torch.as_tensor(tokens["attention_mask"]).to(self.device, non_blocking=True)
        return embedding_from_output(self.model.get_text_features(**kwargs)).float()

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.encode_tokenized(self.text_tokenizer()(texts))

    def prepare_images(self, images: Sequence) -> dict[str, torch.Tensor]:
        """The image processor's CPU tensors for decoded images (safe in a DataLoader worker).

        Where the processor's resized, cropped pixels are whole numbers in [0, 255] (CLIP's and SigLIP's are),
        they are rescaled and normalised in torch (one multiply-add, cheaper than the processor's own); for a
        teacher on a GPU ``pixel_values`` stays uint8, a quarter of the bytes to move between processes and to
        the device, and :meth:`encode_prepared_images` rescales it there."""
        images = super().prepare_images(images)
        processor = self.image_processor
        if self._pixels_as_uint8 is not False and getattr(processor, "do_rescale", False):
            out = processor(images=images, return_tensors="pt", do_rescale=False, do_normalize=False)
            pixels = out["pixel_values"]
            if self._pixels_as_uint8 is None:  # checked once per process; [B, C, H, W] only (not SigLIP2's patches)
                channels = len(getattr(processor, "image_mean", None) or (0, 0, 0))
                self._pixels_as_uint8 = pixels.dim() == 4 and pixels.shape[1] == channels and (
                    pixels.dtype == torch.uint8 or bool(
                        pixels.is_floating_point() and pixels.numel() and pixels.min() >= 0 and pixels.max() <= 255
                        and torch.equal(pixels, pixels.round())))
            if self._pixels_as_uint8:
                pixels = pixels.to(torch.uint8)
                # a CPU forward called here: rescale now; from a DataLoader worker, uint8 crosses to the process
                # that runs the forward (a quarter of the shared-memory bytes) and is rescaled there
                if self.device.type == "cpu" and torch.utils.data.get_worker_info() is None:
                    pixels = self._rescaled(pixels)
                out = dict(out, pixel_values=pixels)
                return {k: v for k, v in out.items() if torch.is_tensor(v)}
        # SigLIP2's processor also returns pixel_attention_mask and spatial_shapes: pass everything through
        return {k: v for k, v in processor(images=images, return_tensors="pt").items() if torch.is_tensor(v)}

    def _rescaled(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (see :meth:`prepare_images`) rescaled and normalised as the image processor would."""
        processor = self.image_processor
        x = pixels.to(self.device, non_blocking=True).float()
        scale = torch.full((x.shape[1],), float(processor.rescale_factor), device=x.device)
        shift = torch.zeros_like(scale)
        if getattr(processor, "do_normalize", False):  # (x * r - mean) / std as one multiply-add
            std = torch.as_tensor(processor.image_std, dtype=torch.float32, device=x.device)
            scale, shift = scale / std, -torch.as_tensor(processor.image_mean, dtype=torch.float32,
                                                         device=x.device) / std
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x.mul_(scale.reshape(shape)).add_(shift.reshape(shape))

    @torch.no_grad()
    def encode_prepared_images(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in prepared.items()}
        pixels = inputs["pixel_values"]
        inputs["pixel_values"] = (self._rescaled(pixels) if pixels.dtype == torch.uint8 else pixels).to(dtype)
        return embedding_from_output(self.model.get_image_features(**inputs)).float()

    def _encode_image_batch(self, images: list) -> torch.Tensor:
        return self.encode_prepared_images(self.prepare_images(images))


class SentenceTransformerTeacher(Teacher):
    """Any ``SentenceTransformer``. Image anchors only if the model itself embeds images."""

    def __init__(self, model, name_or_path: str | None = None, revision: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.name_or_path = name_or_path or "sentence-transformer"
        self.revision = revision
        modalities = getattr(model, "modalities", None) or ["text"]
        self.supports_images = "image" in modalities

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None, dtype=None, **kwargs):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(name_or_path, revision=revision, device=device, **kwargs)
        if dtype is not None:
            model = model.to(dtype=dtype)
        return cls(model, name_or_path=name_or_path, revision=revision)

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(texts, batch_size=len(texts), convert_to_tensor=True, show_progress_bar=False)

    def _encode_image_batch(self, images: list) -> torch.Tensor:
        if not self.supports_images:
            return super()._encode_image_batch(images)
        return self.model.encode(images, batch_size=len(images), convert_to_tensor=True, show_progress_bar=False)


#: the choices of ``--teacher_dtype``: ``auto`` picks what the device is fast in (:func:`teacher_dtype`)
TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")


def teacher_dtype(device=None, choice: str | torch.dtype | None = "auto") -> torch.dtype:
    """The dtype to load a frozen teacher in on ``device`` (a ``torch.device``, a string, or None for the CPU).

    ``auto``: ``bfloat16`` on a CUDA device that supports it, ``float16`` on a CUDA device without bf16
    (pre-Ampere), ``float32`` anywhere else (the CPU has no fast half-precision matmul for inference here).
    The half-precision forward is several times faster on a GPU (``benchmarks/RESULTS.md``, "Measured results
    the code refers to"); the embeddings it returns are float32 either way (``encode_text``/``encode_image``
    cast them), so precomputed columns stay float32. Any other ``choice`` (``"float32"`` keeps the old behaviour) is
    returned as that dtype.
    """
    if isinstance(choice, torch.dtype):
        return choice
    choice = choice or "auto"
    if choice not in TEACHER_DTYPES:
        raise ValueError(f"teacher dtype {choice!r} is not one of {', '.join(TEACHER_DTYPES)}")
    if choice != "auto":
        return getattr(torch, choice)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def _is_sentence_transformer(name_or_path: str, revision: str | None) -> bool:
    if os.path.isdir(name_or_path):
        return os.path.isfile(os.path.join(name_or_path, "modules.json"))
    from huggingface_hub import file_exists

    return file_exists(name_or_path, "modules.json", revision=revision)


def load_teacher(name_or_path: str, revision: str | None = None, device=None, dtype=None, **kwargs) -> Teacher:
    """Load a frozen teacher, picking the adapter: a sentence-transformers folder/repo (``modules.json``) gives a
    :class:`SentenceTransformerTeacher`, anything else a :class:`DualEncoderTeacher` (CLIP, SigLIP, SigLIP2, ...).

    Raises ``OSError`` naming the teacher when it cannot be found locally or on the Hub.
    """
    if is_local_path(name_or_path) and not os.path.isdir(name_or_path):
        raise OSError(f"teacher {name_or_path!r} not found: no such directory (a Hub id looks like 'org/name')")
    try:
        if _is_sentence_transformer(name_or_path, revision):
            return SentenceTransformerTeacher.from_pretrained(name_or_path, revision=revision, device=device,
                                                              dtype=dtype, **kwargs)
        return DualEncoderTeacher.from_pretrained(name_or_path, revision=revision, device=device, dtype=dtype, **kwargs)
    except (OSError, ValueError) as err:
        if isinstance(err, TeacherCapabilityError):
            raise
        raise OSError(
            f"could not load teacher {name_or_path!r}"
            f"{' at revision ' + revision if revision else ''}: {err}. "
            "Check the name, your network/HF_HUB_OFFLINE setting, or pass a local path."
        ) from err
