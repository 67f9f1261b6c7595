"""Processor for the paired model: the student's tokenizer + the teacher's image processor.

``MultilingualCLIPProcessor(image_processor=..., tokenizer=...)`` behaves like ``CLIPProcessor``:
``processor(text=[...], images=[...], return_tensors="pt", padding=True)`` gives ``input_ids`` /
``attention_mask`` from the student's tokenizer and ``pixel_values`` from the teacher's image processor.

Saved next to the model (``processor.save_pretrained(folder)``) the folder holds the tokenizer files, the image
processor's config and ``processor_config.json``, so ``AutoTokenizer``, ``AutoImageProcessor`` and (after
``import mvld_hf``) ``AutoProcessor`` all load from it; the zero-shot pipeline uses the first two.

Without torchvision use the ``*Pil`` image processors (``CLIPImageProcessorPil``, ``SiglipImageProcessorPil``).
"""

from __future__ import annotations

from transformers import ProcessorMixin


class MultilingualCLIPProcessor(ProcessorMixin):
    """Pairs a (multilingual) tokenizer with an image processor; used for both ``mvld_clip`` and ``mvld_siglip``.

    Args:
        image_processor: the teacher's image processor (e.g. ``CLIPImageProcessorPil``).
        tokenizer: the student's tokenizer.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(self, images=None, text=None, **kwargs):
        """As ``CLIPProcessor``, but text is truncated by default (``truncation=True``) to the tokenizer's
        ``model_max_length``: a text longer than the student's position table cannot be embedded."""
        if text is not None:
            kwargs.setdefault("truncation", True)
        return super().__call__(images=images, text=text, **kwargs)

    @classmethod
    def from_teacher_and_student_tokenizer(cls, teacher, tokenizer, student=None,
                                           max_length: int | None = None) -> MultilingualCLIPProcessor:
        """Build from a :class:`~mvld_hf.teachers.DualEncoderTeacher` (its image processor) and the student's
        tokenizer. With ``student`` (a :class:`~mvld_hf.MultilingualTextTower` or the paired model) and/or
        ``max_length``, a copy of the tokenizer truncates to the smaller of them and the student's position
        table (:func:`~mvld_hf.encode.effective_max_length`); its ``model_max_length`` is saved with it."""
        if getattr(teacher, "image_processor", None) is None:
            raise ValueError("the teacher has no image processor")
        limit = max_length or tokenizer.model_max_length
        if student is not None:
            from .encode import effective_max_length

            limit = effective_max_length(student, limit)
        if limit < tokenizer.model_max_length:
            import copy

            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.model_max_length = limit
        return cls(image_processor=teacher.image_processor, tokenizer=tokenizer)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As ``ProcessorMixin.save_pretrained``, but leaves the tokenizer *object* as it was.

        transformers stamps ``processor_class`` onto the tokenizer while saving and keeps it there, so a later
        ``tokenizer.save_pretrained(elsewhere)`` -- e.g. the student checkpoint or its sentence-transformers export,
        which share this tokenizer -- would write ``"processor_class": "MultilingualCLIPProcessor"`` into a folder
        without an image processor, and ``AutoProcessor`` (which sentence-transformers' ``Transformer`` module calls)
        would then fail there. The folder saved here still records the processor class.
        """
        tokenizer = getattr(self, "tokenizer", None)
        previous = getattr(tokenizer, "_processor_class", None)
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if tokenizer is not None:
                tokenizer._processor_class = previous
