import pytest
import torch

from mvld_hf.evaluation import MultilingualEvaluator, cross_lingual_consistency


def test_consistency_counts_agreement_with_the_parallel_english_caption():
    images = torch.eye(3)
    # en captions of groups 0, 1, 2 retrieve images 0, 1, 1 (the last one wrongly)
    text = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0.2],
                         [1.0, 0.1, 0], [0, 0, 1.0], [0, 1.0, 0],  # de: agrees, disagrees, agrees (both wrong)
                         [0, 0, 1.0]])  # fr: group 2 only
    langs = ["en"] * 3 + ["de"] * 3 + ["fr"]
    groups = [0, 1, 2, 0, 1, 2, 2]
    out = cross_lingual_consistency(text, images, langs, groups)
    assert set(out) == {"de", "fr", "mean"}
    assert out["de"]["top1_agreement_raw"] == pytest.approx(2 / 3)
    # chance: de's top-1 images 0, 2, 1 (1/3 each) against en's 0, 1, 1: 1/3 * 1/3 + 1/3 * 2/3 = 1/3
    assert out["de"]["top1_agreement_chance"] == pytest.approx(1 / 3)
    assert out["de"]["top1_agreement"] == pytest.approx((2 / 3 - 1 / 3) / (1 - 1 / 3))
    assert out["fr"]["top1_agreement"] == 0.0 and out["fr"]["top1_agreement_raw"] == 0.0
    assert out["mean"]["top1_agreement"] == pytest.approx(0.25)
    assert out["mean"]["top1_agreement_raw"] == pytest.approx(1 / 3)
    assert out["de"]["cosine"] < 1.0 and out["fr"]["cosine"] == pytest.approx(0.2 / (1.04 ** 0.5), abs=1e-6)
    with pytest.raises(ValueError, match="reference language 'ja'"):
        cross_lingual_consistency(text, images, langs, groups, reference="ja")
    with pytest.raises(ValueError, match="same length"):
        cross_lingual_consistency(text, images, langs[:-1], groups)


def test_evaluator_reports_consistency_with_a_parallel_column():
    import datasets
    from PIL import Image

    images = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    rows = datasets.Dataset.from_dict({
        "image": [images[0], images[0], images[1], images[1]], "image_id": [0, 0, 1, 1],
        "caption": ["red", "rot", "blue", "blau"], "english": ["red", "red", "blue", "blue"],
        "language": ["en", "de", "en", "de"]})
    table = {"red": [1.0, 0.0], "rot": [1.0, 0.1], "blue": [0.0, 1.0], "blau": [1.0, 0.0]}

    def encode_text(texts):
        return torch.tensor([table[t] for t in texts])

    def encode_image(batch):
        return torch.tensor([[1.0, 0.0] if im.getpixel((0, 0))[0] > 128 else [0.0, 1.0] for im in batch])

    out = MultilingualEvaluator(rows, parallel_column="english", compute_purity=False)(encode_text, encode_image)
    assert out["consistency"]["de"]["top1_agreement_raw"] == 0.5  # "blau" retrieves the red image
    # ... and "rot" agreeing is chance: every German caption retrieves the red image, half the English ones do
    assert out["consistency"]["de"]["top1_agreement"] == 0.0
    assert "consistency" not in MultilingualEvaluator(rows, compute_purity=False)(encode_text, encode_image)


def _parallel(n_groups=6, langs=("en", "de", "fr")):
    languages = [lang for lang in langs for _ in range(n_groups)]
    return languages, list(range(n_groups)) * len(langs)


def test_a_constant_encoder_is_not_consistent(caplog):
    """Every caption retrieves the same image, so every language "agrees" with English: raw agreement 1, but
    that is exactly chance, so top1_agreement is 0 (and the cosine equals its chance level)."""
    import logging

    languages, groups = _parallel()
    text = torch.ones(len(languages), 4)
    images = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.WARNING, logger="mvld_hf.evaluation.consistency"):
        out = cross_lingual_consistency(text, images, languages, groups)
    for lang in ("de", "fr", "mean"):
        assert out[lang]["top1_agreement_raw"] == 1.0 and out[lang]["top1_agreement_chance"] == 1.0
        assert out[lang]["top1_agreement"] == 0.0
        assert out[lang]["cosine"] == pytest.approx(out[lang]["cosine_chance"])
    assert "de, fr" in caplog.text and "scores 0" in caplog.text


def test_tied_images_count_against_the_caption():
    languages, groups = _parallel()
    text = torch.randn(len(languages), 4, generator=torch.Generator().manual_seed(1))
    out = cross_lingual_consistency(text, torch.ones(5, 4), languages, groups)  # every image scores the same
    assert out["mean"]["top1_agreement_raw"] == 0.0 and out["mean"]["top1_agreement"] == 0.0


def test_a_perfectly_consistent_encoder_scores_one():
    languages, groups = _parallel()
    scenes = torch.eye(6)
    text = scenes[torch.tensor(groups)]  # every language embeds a caption like its English parallel
    out = cross_lingual_consistency(text, scenes, languages, groups)
    assert out["mean"]["top1_agreement"] == 1.0 and out["mean"]["top1_agreement_chance"] == pytest.approx(1 / 6)
    assert out["mean"]["cosine"] == pytest.approx(1.0) and out["mean"]["cosine_chance"] == pytest.approx(1 / 6)
