"""Zero-shot image classification accuracy per language, scored as transformers' zero-shot pipeline scores."""

from __future__ import annotations

import torch
from torch import nn

from ..data_utils import decode_image, embedding_from_output

__all__ = ["zero_shot_accuracy"]


@torch.no_grad()
def zero_shot_accuracy(
    model_path_or_pipeline,
    images,
    labels_by_language: dict[str, list[str]],
    true_label_index,
    hypothesis_template: str | dict[str, str] = "{}",
    batch_size: int = 64,
) -> dict[str, float]:
    """Zero-shot image classification accuracy per language, scored as the zero-shot pipeline scores.

    Args:
        model_path_or_pipeline: a folder (or Hub id) that ``pipeline("zero-shot-image-classification", model=...)``
            loads -- a paired model saved with its processor, or the teacher itself (a saved ``CLIPModel`` /
            ``SiglipModel`` with its English labels gives the reference accuracy) -- or such a pipeline.
        images: PIL images.
        labels_by_language: ``{language: [label_0, label_1, ...]}``; label ``k`` must mean the same class in every
            language.
        true_label_index: for each image, the index ``k`` of its class.
        hypothesis_template: ``"{}"`` (the default) uses the labels as they are; a string such as
            ``"a photo of a {}"`` is applied to every language, a ``{language: template}`` dict per language. (The
            pipeline's own default template is English, so it is not used here.)
        batch_size: images per forward pass.

    Returns ``{language: accuracy}``. Each language's labels are encoded once and every image once; the prediction
    is the label with the largest ``logits_per_image`` entry -- the pipeline's top label, since its softmax (CLIP) or
    sigmoid (SigLIP) is monotone in the logit and the logit is monotone in the cosine.
    """
    from transformers import Pipeline, pipeline

    pipe = model_path_or_pipeline
    if not isinstance(pipe, Pipeline):
        pipe = pipeline("zero-shot-image-classification", model=str(pipe))
    model, tokenizer, image_processor = pipe.model, pipe.tokenizer, pipe.image_processor

    images = list(images)
    truth = torch.as_tensor(list(true_label_index), dtype=torch.long)
    if not images:
        raise ValueError("no images to classify")
    if len(truth) != len(images):
        raise ValueError(f"{len(images)} images but {len(truth)} true label indices")
    if not labels_by_language:
        raise ValueError("labels_by_language is empty")
    for language, labels in labels_by_language.items():
        if not labels:
            raise ValueError(f"language {language!r} has no labels")
        if int(truth.min()) < 0 or int(truth.max()) >= len(labels):
            raise ValueError(f"true label indices must lie in [0, {len(labels)}) for language {language!r}")

    device = model.device
    dtype = next(model.parameters()).dtype
    image_embeds = []
    for start in range(0, len(images), batch_size):
        chunk = [decode_image(im, f"image {start + j}", rgb=True)
                 for j, im in enumerate(images[start : start + batch_size])]
        inputs = image_processor(images=chunk, return_tensors="pt").to(device)
        inputs = {k: v.to(dtype) if torch.is_floating_point(v) else v for k, v in inputs.items()}
        image_embeds.append(embedding_from_output(model.get_image_features(**inputs)).float())
    image_embeds = nn.functional.normalize(torch.cat(image_embeds), dim=-1)

    # the pipeline's tokenizer settings: SigLIP models are padded to 64 tokens
    tokenizer_kwargs = {"padding": True}
    if "siglip" in model.config.model_type:
        tokenizer_kwargs.update(padding="max_length", max_length=64, truncation=True)

    accuracies = {}
    for language, labels in labels_by_language.items():
        template = (hypothesis_template.get(language, "{}") if isinstance(hypothesis_template, dict)
                    else hypothesis_template)
        batch = tokenizer([template.format(label) for label in labels], return_tensors="pt",
                          **tokenizer_kwargs).to(device)
        text_embeds = nn.functional.normalize(embedding_from_output(model.get_text_features(**batch)).float(), dim=-1)
        predicted = (image_embeds @ text_embeds.t()).argmax(dim=-1).cpu()
        accuracies[language] = float((predicted == truth).float().mean())
    return accuracies
