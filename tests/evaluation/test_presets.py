"""Benchmark presets: each preset's reshaping, run on a small fake dataset built to the verified Hub schema,
gives rows the evaluator accepts (and scores perfectly with "perfect" fake encoders)."""

import io

import datasets
import pytest
import torch
from PIL import Image

from mvld_hf.evaluation import MultilingualEvaluator, evaluate_vqa
from mvld_hf.evaluation import presets as presets_module
from mvld_hf.evaluation.presets import PRESETS, UNVERIFIED, get_preset, load_benchmark, prepare_benchmark

DIM = 8
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}
WORDS = {  # the colour word per language (source split/column name -> words)
    "en": {"red": "red", "green": "green", "blue": "blue"},
    "de": {"red": "rot", "green": "grün", "blue": "blau"},
    "fr": {"red": "rouge", "green": "vert", "blue": "bleu"},
    "cs": {"red": "červená", "green": "zelená", "blue": "modrá"},
    "ja": {"red": "赤", "green": "緑", "blue": "青"},
    "fil": {"red": "pula", "green": "berde", "blue": "asul"},
    "te": {"red": "ఎరుపు", "green": "ఆకుపచ్చ", "blue": "నీలం"},
    "id": {"red": "merah", "green": "hijau", "blue": "biru"},
}
LOOKUP = {w: c for words in WORDS.values() for c, w in words.items()}
PROJECTION = torch.randn(3, DIM, generator=torch.Generator().manual_seed(0))


def colour_embedding(rgb):
    return (torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1.0) @ PROJECTION


def image_encoder(images):
    out = []
    for im in images:
        assert isinstance(im, Image.Image)
        out.append(colour_embedding(im.convert("RGB").getpixel((0, 0))))
    return torch.stack(out)


def text_encoder(texts):
    """Finds the last colour word of any language in the text."""
    return torch.stack([colour_embedding(COLOURS[next(LOOKUP[w] for w in reversed(t.split()) if w in LOOKUP)])
                        for t in texts])


def png_struct(colour):
    """How floschne/* uploads store images: {'bytes': <encoded image>, 'path': None}."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), COLOURS[colour]).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


# ----------------------------------------------------------------------------------------------------
# fakes of the verified Hub schemas
# ----------------------------------------------------------------------------------------------------
def fake_xm3600(langs=("en", "de", "fil")):
    """floschne/xm3600: one split per language; image_id, image_locale, captions (list),
    captions_tokenized, captions_tokenized_lowercase, image ({'bytes', 'path'} struct)."""
    splits = {}
    for lang in langs:
        captions = [[f"a {WORDS[lang][c]}", f"{WORDS[lang][c]} square"] for c in COLOURS]
        splits[lang] = datasets.Dataset.from_dict({
            "image_id": [f"img-{c}" for c in COLOURS],
            "image_locale": ["en"] * len(COLOURS),
            "captions": captions,
            "captions_tokenized": captions,
            "captions_tokenized_lowercase": captions,
            "image": [png_struct(c) for c in COLOURS],
        })
    return datasets.DatasetDict(splits)


def fake_xflickrco(langs=("en", "de", "ja")):
    """floschne/xflickrco: one split per language; sentences (str), id (str), image struct."""
    return datasets.DatasetDict({
        lang: datasets.Dataset.from_dict({
            "sentences": [f"a photo {WORDS[lang][c]}" for c in COLOURS],
            "id": [f"{i}" for i, _ in enumerate(COLOURS)],
            "image": [png_struct(c) for c in COLOURS],
        }) for lang in langs})


def fake_multi30k():
    """romrawinjp/multi30k 'test': en, cs, de, fr (str) + image (Image)."""
    data = {lang: [f"the {WORDS[lang][c]}" for c in COLOURS] for lang in ("en", "cs", "de", "fr")}
    data["image"] = [Image.new("RGB", (4, 4), rgb) for rgb in COLOURS.values()]
    return datasets.Dataset.from_dict(data, features=datasets.Features({
        "en": datasets.Value("string"), "cs": datasets.Value("string"), "de": datasets.Value("string"),
        "fr": datasets.Value("string"), "image": datasets.Image()}))


def fake_cvqa(label=None):
    """afaji/cvqa 'test': image, ID, Subset ("('Language', 'Country')"), Question, Translated Question,
    Options (list), Translated Options, Label (int), Category, Image Type, Image Source, License."""
    rows = {k: [] for k in ("image", "ID", "Subset", "Question", "Translated Question", "Options",
                            "Translated Options", "Label", "Category", "Image Type", "Image Source", "License")}
    subsets = {"te": "('Telugu', 'India')", "id": "('Indonesian', 'Indonesia')", "ja": "('Japanese', 'Japan')"}
    colours = list(COLOURS)
    for lang, subset in subsets.items():
        for i, colour in enumerate(colours):
            options = colours[i:] + colours[:i]  # the right option is first, then rotated below
            options = options[1:] + options[:1]
            rows["image"].append(Image.new("RGB", (4, 4), COLOURS[colour]))
            rows["ID"].append(f"{lang}{i}_0")
            rows["Subset"].append(subset)
            rows["Question"].append(f"? {lang}")
            rows["Translated Question"].append("Which colour?")
            rows["Options"].append([WORDS[lang][o] for o in options])
            rows["Translated Options"].append(options)
            rows["Label"].append(options.index(colour) if label is None else label)
            rows["Category"].append("Objects")
            rows["Image Type"].append("Self")
            rows["Image Source"].append("self")
            rows["License"].append("CC BY 4.0")
    features = datasets.Features({k: datasets.Value("string") for k in rows})
    features.update({"image": datasets.Image(), "Options": datasets.Sequence(datasets.Value("string")),
                     "Translated Options": datasets.Sequence(datasets.Value("string")),
                     "Label": datasets.Value("int64")})
    return datasets.Dataset.from_dict(rows, features=features)


def assert_perfect_retrieval(ds, preset_name, languages):
    ev = MultilingualEvaluator(ds, **PRESETS[preset_name].evaluator_kwargs(), batch_size=4, compute_purity=False)
    assert len(ev.image_rows) == len(COLOURS)  # one gallery shared by the languages
    res = ev(text_encoder, image_encoder)["retrieval"]
    assert sorted(k for k in res if k not in ("all", "mean")) == sorted(languages)
    for lang in languages:
        assert res[lang]["t2i_R@1"] == 1.0 and res[lang]["i2t_R@1"] == 1.0, (lang, res[lang])
    return res


# ----------------------------------------------------------------------------------------------------
# retrieval presets
# ----------------------------------------------------------------------------------------------------
def test_xm3600_reshape_gives_evaluator_rows_with_caption_lists():
    ds = prepare_benchmark("xm3600", fake_xm3600())
    assert set(ds.column_names) == {"image", "image_id", "caption", "language"}
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds[0]["image"], Image.Image) and isinstance(ds[0]["caption"], list)
    assert len(ds) == 9 and set(ds["language"]) == {"en", "de", "fil"}
    res = assert_perfect_retrieval(ds, "xm3600", ["de", "en", "fil"])
    assert "i2t_MRR@10" in res["en"]


def test_xm3600_language_filter_and_unknown_language():
    ds = prepare_benchmark("XM3600", fake_xm3600(), languages=["de"])
    assert set(ds["language"]) == {"de"} and len(ds) == 3
    assert_perfect_retrieval(ds, "xm3600", ["de"])
    with pytest.raises(ValueError, match=r"\['sw'\].*available languages"):
        prepare_benchmark("xm3600", fake_xm3600(), languages=["de", "sw"])


def test_language_split_presets_reject_a_single_split():
    with pytest.raises(TypeError, match="one Hub split per language"):
        prepare_benchmark("xm3600", fake_xm3600()["en"])


def test_missing_hub_column_is_reported_with_the_verified_schema():
    raw = fake_xm3600(("en",))
    raw["en"] = raw["en"].rename_column("captions", "caption_list")
    with pytest.raises(ValueError, match=r"\['captions'\] not found.*column mapping"):
        prepare_benchmark("xm3600", raw)


def test_xflickrco_reshape_one_caption_per_row():
    ds = prepare_benchmark("xflickr&co", fake_xflickrco())
    assert isinstance(ds[0]["caption"], str) and len(ds) == 9
    assert_perfect_retrieval(ds, "xflickrco", ["de", "en", "ja"])
    ds = prepare_benchmark("xflickrco", fake_xflickrco(), languages=["ja", "en"])
    assert set(ds["language"]) == {"ja", "en"}


def test_xflickrco_warns_when_language_splits_do_not_share_image_ids():
    raw = fake_xflickrco(("en", "de"))
    raw["de"] = raw["de"].map(lambda r: {"id": "de-" + r["id"]})
    with pytest.warns(UserWarning, match="image ids"):
        prepare_benchmark("xflickrco", raw)


def test_multi30k_wide_columns_become_one_row_per_image_and_language():
    ds = prepare_benchmark("multi30k", fake_multi30k())
    assert len(ds) == 12 and set(ds["language"]) == {"en", "cs", "de", "fr"}
    assert ds["image_id"][:3] == [0, 1, 2]
    assert_perfect_retrieval(ds, "multi30k", ["cs", "de", "en", "fr"])
    only = prepare_benchmark("multi30k", fake_multi30k(), languages="cs")
    assert only["language"] == ["cs"] * 3 and only["caption"][0] == "the červená"


# ----------------------------------------------------------------------------------------------------
# VQA preset
# ----------------------------------------------------------------------------------------------------
def test_cvqa_reshape_maps_language_names_to_iso_and_scores():
    ds = prepare_benchmark("cvqa", fake_cvqa())
    assert set(ds.column_names) == {"image", "question_id", "question", "options", "answer", "language", "country"}
    assert sorted(set(ds["language"])) == ["id", "ja", "te"]
    assert set(ds["country"]) == {"India", "Indonesia", "Japan"}
    res = evaluate_vqa(text_encoder, image_encoder, ds, **PRESETS["cvqa"].evaluator_kwargs(), batch_size=4)
    for lang in ("id", "ja", "te"):
        assert res[lang]["accuracy"] == 1.0, res


def test_cvqa_language_filter_and_dataset_dict_input():
    ds = prepare_benchmark("cvqa", datasets.DatasetDict({"test": fake_cvqa()}), languages=["te"])
    assert ds["language"] == ["te"] * 3
    res = evaluate_vqa(text_encoder, image_encoder, ds, **PRESETS["cvqa"].evaluator_kwargs())
    assert res["te"]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="available languages"):
        prepare_benchmark("cvqa", fake_cvqa(), languages=["de"])


def test_cvqa_hidden_labels_give_a_clear_error():
    with pytest.raises(ValueError, match="labels are hidden"):
        prepare_benchmark("cvqa", fake_cvqa(label=-1))


def test_cvqa_unknown_language_name_is_kept_with_a_warning():
    raw = fake_cvqa().map(lambda r: {"Subset": r["Subset"].replace("Japanese", "Klingon")})
    with pytest.warns(UserWarning, match="Klingon"):
        ds = prepare_benchmark("cvqa", raw)
    assert "Klingon" in set(ds["language"])


# ----------------------------------------------------------------------------------------------------
# names, unverified benchmarks, load_benchmark (with load_dataset replaced by a fake)
# ----------------------------------------------------------------------------------------------------
def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown benchmark 'flickr8k'.*cvqa, multi30k, xflickrco, xm3600"):
        get_preset("flickr8k")
    with pytest.raises(ValueError, match="known presets"):
        prepare_benchmark("nope", fake_multi30k())


@pytest.mark.parametrize("name", ["ALM-Bench", "alm_bench", "wit", "wikimedia/wit_base", "MS-COCO", "coco"])
def test_unverified_benchmarks_say_to_use_a_column_mapping(name):
    with pytest.raises(ValueError, match="not verified.*column mapping"):
        get_preset(name)
    with pytest.raises(ValueError, match="column mapping"):
        load_benchmark(name)


def test_every_preset_documents_its_source_and_is_verified():
    assert set(UNVERIFIED).isdisjoint(PRESETS)
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.verified and preset.source and preset.not_verified
        assert preset.kind in ("retrieval", "vqa") and preset.hub_columns


def test_load_benchmark_loads_only_the_requested_language_splits(monkeypatch):
    calls = []
    raw = fake_xm3600()

    def fake_load_dataset(path, *args, split=None, streaming=False, **kwargs):
        calls.append((path, args, split, streaming, kwargs))
        return raw[split]

    monkeypatch.setattr(presets_module.datasets, "load_dataset", fake_load_dataset)
    ds = load_benchmark("xm3600", languages=["fil", "de"])
    assert [(c[0], c[2]) for c in calls] == [("floschne/xm3600", "fil"), ("floschne/xm3600", "de")]
    assert calls[0][4] == {"revision": PRESETS["xm3600"].revision}  # pinned to the verified commit
    load_benchmark("xm3600", languages="de", revision="main", cache_dir="/tmp/x")
    assert calls[-1][4] == {"revision": "main", "cache_dir": "/tmp/x"}
    assert set(ds["language"]) == {"fil", "de"}
    with pytest.raises(ValueError, match="available languages"):
        load_benchmark("xm3600", languages=["xx"])


def test_load_benchmark_streaming_filters_rows_by_language(monkeypatch):
    raw = fake_cvqa()

    def fake_load_dataset(path, *args, split=None, streaming=False, **kwargs):
        assert (path, split, streaming) == ("afaji/cvqa", "test", True)
        return raw.to_iterable_dataset()

    monkeypatch.setattr(presets_module.datasets, "load_dataset", fake_load_dataset)
    ds = load_benchmark("cvqa", languages=["ja"], streaming=True)
    assert ds["language"] == ["ja"] * 3
    res = evaluate_vqa(text_encoder, image_encoder, ds, **PRESETS["cvqa"].evaluator_kwargs())
    assert res["ja"]["accuracy"] == 1.0
