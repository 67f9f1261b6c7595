"""Scenes, rendering, the train/test split, the caption datasets and their cache."""

import os

import numpy as np
import pytest

from mvld_hf.synthetic import LANGUAGES, build_world, default_cache_dir, make_scenes
from mvld_hf.synthetic.scenes import COLOUR_JITTER, COLOUR_RGB, IMAGE_SIZE, is_test_composition, render
from mvld_hf.synthetic.world import VERSION

COLUMNS = ["image", "image_id", "caption", "english", "language", "scene"]


def test_scenes_are_deterministic_from_the_seed():
    a, b = make_scenes(3, "train", 25), make_scenes(3, "train", 25)
    assert [s.key() for s in a] == [s.key() for s in b]
    assert [s.png_bytes() for s in a] == [s.png_bytes() for s in b]
    assert [s.image_id for s in a] == [s.image_id for s in b]
    assert [s.key() for s in make_scenes(4, "train", 25)] != [s.key() for s in a]


def test_scenes_are_prefix_stable():
    short, long = make_scenes(0, "test", 10), make_scenes(0, "test", 40)
    assert [s.key() for s in short] == [s.key() for s in long[:10]]
    assert [s.image_id for s in short] == [s.image_id for s in long[:10]]


def test_train_and_test_compositions_are_disjoint():
    train = [s.key() for s in make_scenes(0, "train", 600)]
    test = [s.key() for s in make_scenes(0, "test", 200)]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)  # distinct within a split
    assert not set(train) & set(test)
    assert all(is_test_composition(k) for k in test) and not any(is_test_composition(k) for k in train)
    # the split does not depend on the seed: another seed's train scenes never hit this seed's test side
    assert not {s.key() for s in make_scenes(7, "train", 300)} & set(test)


def test_scene_structure():
    for sc in make_scenes(1, "train", 200):
        objs = sc.objects
        assert 1 <= len(objs) <= 3
        assert len({o.shape for o in objs}) == len(objs)  # shapes differ within a scene
        assert (sc.layout == "single") == (len(objs) == 1)
        for o in objs:
            assert o.r <= o.x <= IMAGE_SIZE - o.r and o.r <= o.y <= IMAGE_SIZE - o.r
        for a, b in zip(objs, objs[1:]):  # reading order, clearly separated, roughly aligned
            along = (b.x - a.x) if sc.layout == "horizontal" else (b.y - a.y)
            across = abs(b.y - a.y) if sc.layout == "horizontal" else abs(b.x - a.x)
            assert along >= a.r + b.r and across < along


def test_rendering_gives_the_declared_colours_at_object_centres():
    for sc in make_scenes(2, "test", 60):
        img = np.asarray(render(sc))
        assert img.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and img.dtype == np.uint8
        for o in sc.objects:
            px = img[int(round(o.y)), int(round(o.x))].astype(int)
            assert np.abs(px - np.array(o.rgb)).max() <= 2, (sc.key(), o.shape)
            assert np.abs(px - np.array(COLOUR_RGB[o.colour])).max() <= COLOUR_JITTER + 2
            nearest = min(COLOUR_RGB, key=lambda c: np.abs(px - np.array(COLOUR_RGB[c])).sum())
            assert nearest == o.colour
        corner = img[0, 0].astype(int)
        assert np.abs(corner - np.array(sc.background)).max() <= 2


def test_build_world_rows_and_columns(tmp_path):
    world = build_world(seed=5, num_train_scenes=12, num_test_scenes=6, cache_dir=tmp_path)
    assert set(world) == {"train", "test"}
    for split, n in (("train", 12), ("test", 6)):
        ds = world[split]
        assert ds.column_names == COLUMNS
        assert len(ds) == n * 2 * len(LANGUAGES)
        assert len(set(ds["image_id"])) == n
    ds = world["test"]
    rows = ds.select(range(2 * len(LANGUAGES)))  # the first scene: 2 variants x all languages
    assert rows["language"] == LANGUAGES * 2
    assert len(set(rows["english"])) == 2 and len(set(rows["caption"])) == 2 * len(LANGUAGES)
    for r in rows:
        if r["language"] == "en":
            assert r["caption"] == r["english"]
        assert r["image"].size == (IMAGE_SIZE, IMAGE_SIZE) and r["image"].mode == "RGB"
    assert len(set(rows["scene"])) == 1
    assert not set(world["train"]["scene"]) & set(world["test"]["scene"])


def test_build_world_caches_and_reloads(tmp_path):
    a = build_world(seed=2, num_train_scenes=8, num_test_scenes=4, languages=["en", "ja"], cache_dir=tmp_path)
    folders = os.listdir(tmp_path)
    assert folders == [f"world-v{VERSION}-seed2-train8-test4-en_ja"]
    b = build_world(seed=2, num_train_scenes=8, num_test_scenes=4, languages=["en", "ja"], cache_dir=tmp_path)
    assert b["train"].cache_files and b["train"].cache_files[0]["filename"].startswith(str(tmp_path))
    for split in ("train", "test"):
        assert a[split].to_dict() == b[split].to_dict()
    assert sorted(os.listdir(tmp_path)) == folders  # no leftovers from the atomic save
    c = build_world(seed=2, num_train_scenes=8, num_test_scenes=4, languages=["en", "ja"], cache_dir=False)
    assert c["test"].to_dict() == a["test"].to_dict()


def test_languages_argument(tmp_path):
    w = build_world(seed=0, num_train_scenes=3, num_test_scenes=2, languages=["sw", "sw", "te"], cache_dir=False)
    assert set(w["train"]["language"]) == {"sw", "te"}
    assert all(e.isascii() for e in w["train"]["english"])  # English column even without English rows
    with pytest.raises(ValueError):
        build_world(num_train_scenes=3, num_test_scenes=2, languages=["xx"], cache_dir=False)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_cache_dir() == str(tmp_path / "a")
    monkeypatch.delenv("MVLD_HF_CACHE")
    assert default_cache_dir() == os.path.join(str(tmp_path / "hf"), "mvld_hf")
    monkeypatch.delenv("HF_HOME")
    assert default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "mvld_hf")


def test_subsample_languages_keeps_a_share_of_scenes_for_chosen_languages():
    from mvld_hf.synthetic import parse_language_shares, subsample_languages

    train = build_world(seed=0, num_train_scenes=20, num_test_scenes=2, languages=["en", "de", "sw", "te"],
                        cache_dir=False)["train"]
    kept = subsample_languages(train, ["de:0.25", "sw:0"], seed=0)
    langs = kept["language"]
    assert langs.count("en") == langs.count("te") == 40  # untouched: 20 scenes x 2 variants
    assert langs.count("sw") == 0  # zero-shot language
    de_scenes = {iid for iid, lang in zip(kept["image_id"], langs) if lang == "de"}
    assert len(de_scenes) == 5 and langs.count("de") == 10  # a quarter of the scenes, both variants each
    again = subsample_languages(train, {"de": 0.25}, seed=0)
    assert {i for i, lang in zip(again["image_id"], again["language"]) if lang == "de"} == de_scenes  # stable
    assert subsample_languages(train, None) is train
    assert parse_language_shares("bn:0.05 sw:0") == {"bn": 0.05, "sw": 0.0}
    for bad, match in ((["de"], "LANG:SHARE"), (["xx:0.1"], "unknown language"), (["de:1.5"], r"\[0, 1\]"),
                       (["de:a"], "number")):
        with pytest.raises(ValueError, match=match):
            parse_language_shares(bad)
    with pytest.raises(ValueError, match="does not have"):
        subsample_languages(train, ["ja:0.5"])
