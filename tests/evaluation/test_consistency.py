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
    assert out["de"]["top1_agreement"] == pytest.approx(2 / 3)
    assert out["fr"]["top1_agreement"] == 0.0
    assert out["mean"]["top1_agreement"] == pytest.approx(1 / 3)
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
    assert out["consistency"]["de"]["top1_agreement"] == 0.5  # "blau" retrieves the red image
    assert "consistency" not in MultilingualEvaluator(rows, compute_purity=False)(encode_text, encode_image)
