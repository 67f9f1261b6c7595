"""The paired model (student text tower + the teacher's frozen image tower) and its zero-shot pipeline."""

import copy
import math

import pytest
import torch
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
    AutoTokenizer,
    CLIPProcessor,
    Siglip2Config,
    Siglip2ImageProcessorPil,
    Siglip2Model,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    SiglipVisionConfig,
    pipeline,
)

from mvld_hf.evaluation.zero_shot import zero_shot_accuracy
from mvld_hf.modeling_paired import (
    MultilingualCLIPConfig,
    MultilingualCLIPModel,
    MultilingualSiglipConfig,
    MultilingualSiglipModel,
    register_paired_auto_classes,
)
from mvld_hf.processing_paired import MultilingualCLIPProcessor
from mvld_hf.teachers import DualEncoderTeacher
from mvld_hf.testing import COLOURS, tiny_student

register_paired_auto_classes()  # what `import mvld_hf` does; must be idempotent
register_paired_auto_classes()

LABELS = {  # "red", "blue", "green", "yellow"
    "de": ["rot", "blau", "grün", "gelb"],
    "th": ["สีแดง", "สีน้ำเงิน", "สีเขียว", "สีเหลือง"],
    "sw": ["nyekundu", "bluu", "kijani", "njano"],
}


@pytest.fixture(scope="module")
def student(tokenizer):
    return tiny_student(tokenizer, projection_dim=16, seed=1).eval()


@pytest.fixture(scope="module")
def paired(student, teacher):
    return MultilingualCLIPModel.from_student_and_teacher(student, teacher)


@pytest.fixture(scope="module")
def processor(teacher, tokenizer):
    return MultilingualCLIPProcessor.from_teacher_and_student_tokenizer(teacher, tokenizer)


@pytest.fixture(scope="module")
def saved(paired, processor, tmp_path_factory):
    folder = tmp_path_factory.mktemp("paired")
    paired.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(saved):
    return pipeline("zero-shot-image-classification", model=str(saved))


@pytest.fixture(scope="module")
def disc_images(toy_rows):
    """One flat-colour disc per (colour, shape, size) image id, with its colour index."""
    seen = {}
    for row in toy_rows:
        seen.setdefault(row["image_id"], row["image"])
    ids = sorted(seen)
    return [seen[i] for i in ids], [COLOURS["en"].index(i.split("-")[0]) for i in ids]


def _pixels(teacher, images):
    return teacher.image_processor(images=images, return_tensors="pt")["pixel_values"]


# ------------------------------------------------------------------------------------------------- construction


def test_only_the_teachers_vision_side_is_copied(paired, student, teacher):
    names = [n for n, _ in paired.named_parameters()]
    assert not any(n.startswith("text_model.") and "backbone" not in n and "projection" not in n for n in names)
    teacher_text = sum(p.numel() for n, p in teacher.model.named_parameters()
                       if n.startswith(("text_model.", "text_projection.")))
    expected = (sum(p.numel() for p in student.parameters())
                + sum(p.numel() for p in teacher.model.vision_model.parameters())
                + teacher.model.visual_projection.weight.numel() + 1)  # + logit_scale
    assert sum(p.numel() for p in paired.parameters()) == expected
    assert teacher_text > 0 and paired.logit_bias is None
    # copies, not shared storage: fine-tuning the paired model must not touch the teacher or the student
    assert paired.vision_model.embeddings.patch_embedding.weight.data_ptr() != \
        teacher.model.vision_model.embeddings.patch_embedding.weight.data_ptr()
    assert paired.text_model.projection.weight.data_ptr() != student.projection.weight.data_ptr()
    assert paired.config.teacher_name_or_path == "tiny-random-clip"
    assert paired.config.projection_dim == 16 and paired.config.text_config.projection_dim == 16


def test_image_features_are_bit_identical_to_the_teachers(paired, student, teacher, disc_images, tokenizer):
    pixels = _pixels(teacher, disc_images[0][:6])
    ours = paired.get_image_features(pixel_values=pixels)
    assert torch.equal(ours.pooler_output, teacher.model.get_image_features(pixel_values=pixels).pooler_output)
    assert torch.equal(paired.logit_scale, teacher.model.logit_scale)
    batch = tokenizer(["ein rotes Quadrat", "nyekundu"], padding=True, return_tensors="pt")
    assert torch.equal(paired.get_text_features(**batch).pooler_output, student.get_text_features(**batch))


def test_logits_are_scaled_cosines_and_transposes(paired, teacher, disc_images, tokenizer):
    batch = tokenizer(["rot", "un grand cercle bleu", "kijani"], padding=True, return_tensors="pt")
    pixels = _pixels(teacher, disc_images[0][:4])
    out = paired(**batch, pixel_values=pixels)
    text = F.normalize(paired.get_text_features(**batch).pooler_output, dim=-1)
    image = F.normalize(paired.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    expected = paired.logit_scale.exp() * text @ image.t()
    assert out.logits_per_text.shape == (3, 4) and out.logits_per_image.shape == (4, 3)
    torch.testing.assert_close(out.logits_per_text, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.logits_per_image, out.logits_per_text.t())
    torch.testing.assert_close(out.text_embeds, text)
    torch.testing.assert_close(out.image_embeds, image)
    # CLIP's symmetric contrastive loss over the diagonal pairs, and the tuple output
    square = paired(**tokenizer(["a", "b", "c", "d"], padding=True, return_tensors="pt"), pixel_values=pixels,
                    return_loss=True)
    target = torch.arange(4)
    loss = (F.cross_entropy(square.logits_per_text, target) + F.cross_entropy(square.logits_per_image, target)) / 2
    torch.testing.assert_close(square.loss, loss)
    as_tuple = paired(**batch, pixel_values=pixels, return_dict=False)
    assert torch.equal(as_tuple[0], out.logits_per_image)


def test_usable_wherever_a_dual_encoder_teacher_is(paired, teacher, processor, disc_images):
    wrapped = DualEncoderTeacher(copy.deepcopy(paired), processor.tokenizer, processor.image_processor)  # freezes it
    assert wrapped.dim == 16
    assert torch.equal(wrapped.encode_image(disc_images[0][:3]), teacher.encode_image(disc_images[0][:3]))


# ------------------------------------------------------------------------------------------------- save / load


def test_save_and_reload_through_auto_classes(paired, saved, teacher, tokenizer, disc_images):
    assert AutoConfig.from_pretrained(saved).model_type == "mvld_clip"
    for auto in (AutoModel, AutoModelForZeroShotImageClassification):
        reloaded = auto.from_pretrained(saved)
        assert type(reloaded) is MultilingualCLIPModel
    texts = ["ein gelber Stern", "สีแดง"]
    pixels = _pixels(teacher, disc_images[0][:3])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    before, after = paired(**batch, pixel_values=pixels), reloaded(**batch, pixel_values=pixels)
    assert torch.equal(before.logits_per_image, after.logits_per_image)
    assert torch.equal(before.image_embeds, after.image_embeds)
    # the processor pieces load on their own from the same folder (the pipeline uses these two)
    assert AutoTokenizer.from_pretrained(saved)(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    assert torch.equal(AutoImageProcessor.from_pretrained(saved)(images=disc_images[0][:3],
                                                                  return_tensors="pt")["pixel_values"], pixels)
    loaded = AutoProcessor.from_pretrained(saved)
    assert isinstance(loaded, MultilingualCLIPProcessor)
    inputs = loaded(text=texts, images=disc_images[0][:3], padding=True, return_tensors="pt")
    assert torch.equal(reloaded(**inputs).logits_per_image, before.logits_per_image)


def test_saving_the_processor_leaves_the_shared_tokenizer_clean(saved, tokenizer, tmp_path):
    # transformers stamps processor_class onto the tokenizer object; were it left there, the student's own folder
    # (or its sentence-transformers export) saved later would point AutoProcessor at a processor it cannot build
    import json

    assert json.loads((saved / "tokenizer_config.json").read_text())["processor_class"] == "MultilingualCLIPProcessor"
    tokenizer.save_pretrained(tmp_path)
    assert "processor_class" not in json.loads((tmp_path / "tokenizer_config.json").read_text())


def test_config_rejects_the_wrong_family_and_mismatched_students(tokenizer, teacher):
    with pytest.raises(ValueError, match="MultilingualSiglipConfig"):
        MultilingualCLIPConfig(vision_config=SiglipVisionConfig(hidden_size=16))
    with pytest.raises(ValueError, match="distilled"):
        MultilingualCLIPModel.from_student_and_teacher(tiny_student(tokenizer, projection_dim=8), teacher)
    with pytest.raises(TypeError, match="CLIPModel"):
        MultilingualCLIPModel.from_student_and_teacher(tiny_student(tokenizer, projection_dim=16), object())


# ------------------------------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("language", sorted(LABELS))
def test_zero_shot_pipeline_reads_labels_in_any_language(classifier, paired, disc_images, language):
    labels = LABELS[language]
    image = disc_images[0][0]
    result = classifier(image, candidate_labels=labels, hypothesis_template="{}")
    assert sorted(r["label"] for r in result) == sorted(labels)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and math.isclose(sum(scores), 1.0, rel_tol=1e-5)
    # each score is the softmax of the model's logit for *that* label
    inputs = classifier.tokenizer(labels, padding=True, return_tensors="pt")
    pixels = classifier.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = paired(**inputs, pixel_values=pixels).logits_per_image.softmax(-1)[0]
    for r in result:
        assert math.isclose(r["score"], float(probs[labels.index(r["label"])]), rel_tol=1e-4, abs_tol=1e-6)


def test_zero_shot_accuracy_agrees_with_the_pipeline(classifier, saved, disc_images, teacher, tokenizer, tmp_path):
    images, truth = disc_images
    labels = {**{k: v for k, v in COLOURS.items()}, "sw": LABELS["sw"]}
    accuracy = zero_shot_accuracy(classifier, images, labels, truth)
    assert set(accuracy) == set(labels)
    predicted = {}
    for language, names in labels.items():
        results = classifier(images, candidate_labels=names, hypothesis_template="{}", batch_size=16)
        tops = [result[0]["label"] for result in results]
        predicted[language] = [names.index(top) for top in tops]
        expected = sum(p == t for p, t in zip(predicted[language], truth)) / len(truth)
        assert accuracy[language] == pytest.approx(expected)
    # an oracle: the model's own predictions as ground truth score 1.0
    assert zero_shot_accuracy(saved, images, {"de": labels["de"]}, predicted["de"]) == {"de": 1.0}
    # the teacher itself, saved as a plain CLIP, gives the English reference the same way
    teacher.model.save_pretrained(tmp_path)
    # a copy: CLIPProcessor.save_pretrained stamps its class onto the (session-wide) tokenizer object
    english = CLIPProcessor(image_processor=teacher.image_processor, tokenizer=copy.deepcopy(tokenizer))
    english.save_pretrained(tmp_path)
    reference = zero_shot_accuracy(tmp_path, images, {"en": COLOURS["en"]}, truth, hypothesis_template="a {} disc")
    assert 0.0 <= reference["en"] <= 1.0
    with pytest.raises(ValueError, match="indices"):
        zero_shot_accuracy(classifier, images[:2], {"de": ["rot"]}, [0, 3])


# ------------------------------------------------------------------------------------------------- SigLIP


def _tiny_siglip(tokenizer, version: int):
    text = dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=4)
    vision = dict(patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    if version == 1:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config={**vision, "image_size": 32}))
        processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    else:
        model = Siglip2Model(Siglip2Config(text_config=text, vision_config={**vision, "num_patches": 16}))
        processor = Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    with torch.no_grad():  # distinctive values, so a forgotten copy shows
        model.logit_scale.fill_(1.7)
        model.logit_bias.fill_(-0.6)
    return model.eval(), processor


@pytest.mark.parametrize("version", [1, 2])
def test_siglip_teachers_pair_with_bias_and_sigmoid(tokenizer, disc_images, tmp_path, version):
    teacher_model, image_processor = _tiny_siglip(tokenizer, version)
    paired = MultilingualCLIPModel.from_student_and_teacher(tiny_student(tokenizer, projection_dim=16), teacher_model)
    assert type(paired) is MultilingualSiglipModel and paired.config.model_type == "mvld_siglip"
    assert paired.visual_projection is None
    assert paired.logit_bias.item() == pytest.approx(-0.6) and paired.logit_scale.item() == pytest.approx(1.7)

    images = disc_images[0][:3]
    pixels = image_processor(images=images, return_tensors="pt")  # SigLIP 2 adds a mask and spatial shapes
    ours = paired.get_image_features(**pixels).pooler_output
    assert torch.equal(ours, teacher_model.get_image_features(**pixels).pooler_output)

    labels = LABELS["sw"]
    batch = tokenizer(labels, padding=True, return_tensors="pt")
    out = paired(**batch, **pixels, return_loss=False)
    cos = F.normalize(paired.get_text_features(**batch).pooler_output, dim=-1) @ F.normalize(ours, dim=-1).t()
    torch.testing.assert_close(out.logits_per_text, math.exp(1.7) * cos - 0.6, rtol=1e-5, atol=1e-5)

    if version == 1:  # save, reload, and the pipeline's sigmoid (one SigLIP pipeline is enough)
        paired.save_pretrained(tmp_path)
        MultilingualCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp_path)
        assert isinstance(AutoConfig.from_pretrained(tmp_path), MultilingualSiglipConfig)
        classifier = pipeline("zero-shot-image-classification", model=str(tmp_path))
        assert type(classifier.model) is MultilingualSiglipModel
        result = classifier(images[0], candidate_labels=labels, hypothesis_template="{}")
        padded = tokenizer(labels, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        with torch.no_grad():
            probs = torch.sigmoid(classifier.model(**padded, **pixels).logits_per_image[0])
        for r in result:
            assert math.isclose(r["score"], float(probs[labels.index(r["label"])]), rel_tol=1e-4, abs_tol=1e-6)


def test_saved_folder_card_says_it_needs_import_mvld_hf(saved, paired, tmp_path):
    card = (saved / "README.md").read_text(encoding="utf-8")
    assert "Loading needs `import mvld_hf`" in card and "import mvld_hf  # registers mvld_clip" in card
    assert "SentenceTransformer(path)" in card  # the no-import option
    assert "zero-shot-image-classification" in card
    # a card the user wrote is kept
    (tmp_path / "README.md").write_text("my card")
    paired.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my card"
