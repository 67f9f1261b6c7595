import hashlib

import datasets
import pytest
import torch
from PIL import Image

from mvld_hf.evaluation import MultilingualEvaluator, evaluate_vqa, per_language_retrieval

DIM = 16
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "black": (5, 5, 5)}
WORDS = {  # colour word per language: the fake "perfect" text encoder understands all of them
    "en": {"red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "black": "black"},
    "de": {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "black": "schwarz"},
    "sw": {"red": "nyekundu", "green": "kijani", "blue": "buluu", "yellow": "njano", "black": "nyeusi"},
}
PROJECTION = torch.randn(3, DIM, generator=torch.Generator().manual_seed(0))


def colour_embedding(rgb):
    return (torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1.0) @ PROJECTION


class FakeImageEncoder:
    """Deterministic projection of the mean pixel colour; counts how many images it saw."""

    def __init__(self):
        self.n_images = 0

    def __call__(self, images):
        self.n_images += len(images)
        out = []
        for im in images:
            assert isinstance(im, Image.Image)
            pixels = torch.tensor(list(im.convert("RGB").getdata()), dtype=torch.float32)
            out.append(colour_embedding(pixels.mean(0).tolist()))
        return torch.stack(out)


def perfect_text_encoder(texts):
    """Maps any colour word (any language) in the text to that colour's image embedding."""
    lookup = {w: c for lang in WORDS.values() for c, w in lang.items()}
    out = []
    for text in texts:
        colour = next(lookup[w] for w in reversed(text.replace("?", " ").split()) if w in lookup)
        out.append(colour_embedding(COLOURS[colour]))
    return torch.stack(out)


def hashing_text_encoder(texts):
    """Deterministic random vector per string (unrelated to the images)."""
    out = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        out.append(torch.randn(DIM, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(out)


def caption_dataset():
    rows = {"image": [], "caption": [], "language": [], "image_id": []}
    for i, colour in enumerate(COLOURS):
        for lang in ("en", "de", "sw"):
            rows["image"].append(Image.new("RGB", (8, 8), COLOURS[colour]))
            rows["caption"].append(f"a {WORDS[lang][colour]} square" if lang == "en" else WORDS[lang][colour])
            rows["language"].append(lang)
            rows["image_id"].append(f"img{i}")
    return datasets.Dataset.from_dict(rows)


def test_perfect_encoders_score_perfectly_and_images_are_deduplicated():
    ds = caption_dataset()
    enc = FakeImageEncoder()
    ev = MultilingualEvaluator(ds, batch_size=4)
    assert len(ev.image_rows) == 5 and len(ev.captions) == 15
    res = ev(perfect_text_encoder, enc)
    assert enc.n_images == 5  # one encoding per distinct image_id, not per row
    assert list(res) == ["retrieval", "purity", "collapsed"] and res["collapsed"] == []  # none collapsed
    assert list(res["retrieval"]) == ["de", "en", "sw", "all", "mean"]
    for lang, metrics in res["retrieval"].items():
        assert all(v == 1.0 for v in metrics.values()), (lang, metrics)
    assert res["purity"] == {"de": 1.0, "en": 1.0, "sw": 1.0, "mean": 1.0, "mixed": 1.0}


def test_matches_embedding_level_functions_and_reuses_image_embeddings():
    ds = caption_dataset()
    ev = MultilingualEvaluator(ds, compute_purity=False, ks=(1, 2), mrr_k=3)
    images = ev.encode_images(FakeImageEncoder())
    res = ev(hashing_text_encoder, image_embeddings=images)
    assert list(res) == ["retrieval", "collapsed"]
    texts = hashing_text_encoder(ev.captions)
    expected = per_language_retrieval(texts, ev.caption_languages, images, ev.caption_image, ks=(1, 2), mrr_k=3)
    assert res["retrieval"] == expected
    assert res == ev(hashing_text_encoder, FakeImageEncoder())
    with pytest.raises(ValueError, match="exactly one"):
        ev(hashing_text_encoder)
    with pytest.raises(ValueError, match="3 rows but the gallery has 5 images"):
        ev(hashing_text_encoder, image_embeddings=images[:3])


def test_language_selection_keeps_the_full_gallery():
    ev = MultilingualEvaluator(caption_dataset(), languages=["sw"])
    assert ev.languages == ["sw"] and len(ev.captions) == 5 and len(ev.image_rows) == 5
    res = ev(perfect_text_encoder, FakeImageEncoder())
    assert list(res["retrieval"]) == ["sw", "all", "mean"]
    with pytest.raises(ValueError, match=r"language\(s\) \['fr'\] not in the dataset; available languages: "
                                         r"\['de', 'en', 'sw'\]"):
        MultilingualEvaluator(caption_dataset(), languages=["sw", "fr"])


def test_column_validation_names_available_columns():
    ds = caption_dataset()
    with pytest.raises(ValueError, match=r"column 'text' \(caption_column\) not found in the dataset; "
                                         r"available columns: \['image', 'caption', 'language', 'image_id'\]"):
        MultilingualEvaluator(ds, caption_column="text")
    with pytest.raises(ValueError, match="label_column"):
        MultilingualEvaluator(ds, label_column="scene")
    with pytest.raises(TypeError, match="pass one split"):
        MultilingualEvaluator(datasets.DatasetDict({"test": ds}))
    bad = ds.map(lambda r, i: {"caption": "  " if i == 4 else r["caption"]}, with_indices=True)
    with pytest.raises(ValueError, match="row 4 holds an empty caption"):
        MultilingualEvaluator(bad)


def test_list_captions_custom_columns_and_labels():
    ds = datasets.Dataset.from_dict({
        "img": [Image.new("RGB", (4, 4), COLOURS[c]) for c in ("red", "blue", "red")],
        "texts": [["red", "rot"], ["blue", "blau"], ["nyekundu"]],
        "lang": ["mix", "mix", "sw"],
        "scene": ["s-red", "s-blue", "s-red"],
    })
    ev = MultilingualEvaluator(ds, image_column="img", caption_column="texts", language_column="lang",
                               image_id_column=None, label_column="scene")
    assert ev.captions == ["red", "rot", "blue", "blau", "nyekundu"]
    assert ev.caption_image.tolist() == [0, 0, 1, 1, 2]  # no image ids: every row is its own image
    assert ev.caption_labels == ["s-red", "s-red", "s-blue", "s-blue", "s-red"]
    res = ev(perfect_text_encoder, FakeImageEncoder())
    # rows 0 and 2 show the same colour: the tie counts against the query, so t2i R@1 drops
    assert res["retrieval"]["mix"]["t2i_R@1"] == 0.5
    assert res["purity"]["mixed"] == 1.0


def test_encoder_output_is_checked():
    ev = MultilingualEvaluator(caption_dataset(), compute_purity=False)
    with pytest.raises(ValueError, match=r"encoder returned shape \(3, 16\) for a batch of 15"):
        ev(lambda texts: torch.zeros(3, DIM), FakeImageEncoder())
    with pytest.raises(ValueError, match="does not share the image space"):
        ev(lambda texts: torch.zeros(len(texts), DIM + 1), FakeImageEncoder())


def vqa_dataset():
    rows = {"image": [], "question": [], "options": [], "answer": [], "language": [], "image_id": []}
    qs = {"en": "What colour is it?", "de": "Welche Farbe hat es?"}
    for i, colour in enumerate(("red", "green", "blue")):
        for lang in ("en", "de"):
            opts = [WORDS[lang][c] for c in ("red", "green", "blue", "yellow")[: 4 - (i == 2 and lang == "de")]]
            rows["image"].append(Image.new("RGB", (8, 8), COLOURS[colour]))
            rows["question"].append(qs[lang])
            rows["options"].append(opts)
            rows["answer"].append(opts.index(WORDS[lang][colour]))
            rows["language"].append(lang)
            rows["image_id"].append(i)
    return datasets.Dataset.from_dict(rows)


def test_evaluate_vqa_with_perfect_and_wrong_answers():
    ds = vqa_dataset()
    enc = FakeImageEncoder()
    res = evaluate_vqa(perfect_text_encoder, enc, ds, image_id_column="image_id", batch_size=5)
    assert enc.n_images == 3
    assert res == {"de": {"accuracy": 1.0}, "en": {"accuracy": 1.0}, "all": {"accuracy": 1.0},
                   "mean": {"accuracy": 1.0}}
    # shift every German answer by one option: German accuracy drops to 0
    shifted = ds.map(lambda r: {"answer": (r["answer"] + 1) % len(r["options"]) if r["language"] == "de"
                                else r["answer"]})
    res = evaluate_vqa(perfect_text_encoder, FakeImageEncoder(), shifted)
    assert res["de"]["accuracy"] == 0.0 and res["en"]["accuracy"] == 1.0 and res["all"]["accuracy"] == 0.5
    # answers given as option text, one language, no question column
    texts = ds.map(lambda r: {"answer": r["options"][r["answer"]]})
    res = evaluate_vqa(perfect_text_encoder, FakeImageEncoder(), texts, question_column=None, languages=["de"])
    assert res == {"de": {"accuracy": 1.0}, "all": {"accuracy": 1.0}, "mean": {"accuracy": 1.0}}
    res = evaluate_vqa(perfect_text_encoder, FakeImageEncoder(), ds, language_column=None)
    assert res == {"all": {"accuracy": 1.0}}


def test_evaluate_vqa_errors():
    ds = vqa_dataset()
    with pytest.raises(ValueError, match=r"column 'choices' \(options_column\) not found.*available columns"):
        evaluate_vqa(perfect_text_encoder, FakeImageEncoder(), ds, options_column="choices")
    with pytest.raises(ValueError, match=r"\['xx'\] not in the dataset; available languages: \['de', 'en'\]"):
        evaluate_vqa(perfect_text_encoder, FakeImageEncoder(), ds, languages=["xx"])
    bad = ds.map(lambda r, i: {"answer": 7 if i == 2 else r["answer"]}, with_indices=True)
    with pytest.raises(IndexError, match="row 2: answer index 7 but the row has 4 options"):
        evaluate_vqa(perfect_text_encoder, FakeImageEncoder(), bad)


def test_with_the_tiny_clip_teacher(teacher, toy_dataset):
    """Integration with the project's Teacher API (session fixtures from tests/conftest.py)."""
    ev = MultilingualEvaluator(toy_dataset, label_column="english", purity_n_init=1)
    images = ev.encode_images(teacher.encode_image)
    assert images.shape == (len(set(toy_dataset["image_id"])), teacher.dim)
    res = ev(teacher.encode_text, image_embeddings=images)
    assert list(res["retrieval"]) == ["de", "en", "fr", "all", "mean"]
    assert list(res["purity"]) == ["de", "en", "fr", "mean", "mixed"]
    for metrics in res["retrieval"].values():
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert all(0.0 < v <= 1.0 for v in res["purity"].values())


def test_metrics_are_flat_prefixed_and_match_the_nested_results():
    ev = MultilingualEvaluator(caption_dataset(), compute_purity=True, purity_n_init=1, name="toy")
    images = ev.encode_images(FakeImageEncoder())
    nested = ev(hashing_text_encoder, image_embeddings=images)
    flat = ev.metrics(hashing_text_encoder, image_embeddings=images)
    assert (ev.primary_metric_key, ev.greater_is_better) == ("toy_t2i_R@1_mean", True)
    assert flat["toy_t2i_R@1_mean"] == pytest.approx(nested["retrieval"]["mean"]["t2i_R@1"])
    for lang in ev.languages:
        assert flat[f"toy_t2i_R@1_{lang}"] == pytest.approx(nested["retrieval"][lang]["t2i_R@1"])
    assert flat["toy_purity_mixed"] == pytest.approx(nested["purity"]["mixed"])
    assert all(key.startswith("toy_") and isinstance(value, float) for key, value in flat.items())
