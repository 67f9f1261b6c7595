"""Multiple-choice VQA on held-out scenes."""

import numpy as np

from mvld_hf.synthetic import (
    LANGUAGES,
    build_vqa,
    build_world,
    get_realiser,
    make_scenes,
    realise_question,
    scene_question,
)
from mvld_hf.synthetic.world import _SPLIT_STREAM


def _truth(scene, q):
    """The answer computed independently from the scene's objects and their positions."""
    objs, s = scene.objects, q["subject"]
    if q["type"] == "colour":
        colour = next(o.colour for o in objs if o.shape == s["shape"])
        return next(i for i, d in enumerate(q["options"])
                    if next(o["colour"] for o in d["objects"] if o["shape"] == s["shape"]) == colour)
    if q["type"] == "shape":
        shape = next(o.shape for o in objs if o.colour == s["colour"])
        return next(i for i, d in enumerate(q["options"])
                    if next(o["shape"] for o in d["objects"] if o["colour"] == s["colour"]) == shape)
    if q["type"] == "count":
        return next(i for i, d in enumerate(q["options"]) if len(d["objects"]) == len(objs))
    a = next(o for o in objs if o.shape == s["a"])
    b = next(o for o in objs if o.shape == s["b"])
    dx, dy = a.x - b.x, a.y - b.y
    rel = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")

    def relation_in(d):
        shapes = [o["shape"] for o in d["objects"]]
        before = shapes.index(s["a"]) < shapes.index(s["b"])
        if d["layout"] == "horizontal":
            return "left" if before else "right"
        return "above" if before else "below"

    return next(i for i, d in enumerate(q["options"]) if relation_in(d) == rel)


def test_questions_answer_points_to_the_correct_option():
    scenes = make_scenes(0, "test", 200)
    rng = np.random.default_rng(0)
    types = set()
    for sc in scenes:
        q = scene_question(sc, rng)
        types.add(q["type"])
        assert len(q["options"]) == 4
        assert q["answer"] == _truth(sc, q), (sc.key(), q)
        assert q["options"][q["answer"]] == sc.description()  # the true option describes the scene
        assert sum(d == sc.description() for d in q["options"]) == 1
        if q["type"] == "shape":  # only asked when the colour picks out one object
            assert [o.colour for o in sc.objects].count(q["subject"]["colour"]) == 1
    assert types == {"colour", "shape", "count", "relation"}


def test_options_are_distinct_in_every_language():
    scenes = make_scenes(0, "test", 80)
    rng = np.random.default_rng(1)
    for sc in scenes:
        q = scene_question(sc, rng)
        for lang in LANGUAGES:
            question, options = realise_question(q, lang)
            assert question and len(options) == 4 and len(set(options)) == 4, (lang, options)
            if q["type"] == "count":  # variant-1 captions start with the number of objects
                real = get_realiser(lang)
                for d, text in zip(q["options"], options):
                    assert real.count(len(d["objects"])) in text


def test_build_vqa_dataset(tmp_path):
    n = 24
    vqa = build_vqa(seed=0, num_scenes=n, cache_dir=tmp_path)
    assert vqa.column_names == ["image", "image_id", "question", "options", "answer", "language"]
    assert len(vqa) == n * len(LANGUAGES)
    rows = vqa.remove_columns("image").to_list()
    by_image = {}
    for r in rows:
        assert 0 <= r["answer"] < len(r["options"]) == 4
        assert len(set(r["options"])) == 4
        by_image.setdefault(r["image_id"], set()).add(r["answer"])
    assert all(len(a) == 1 for a in by_image.values())  # same answer index in every language
    # the images are the held-out test images of the world with the same seed
    world = build_world(seed=0, num_train_scenes=2, num_test_scenes=n, languages=["en"], cache_dir=False)
    assert set(by_image) == set(world["test"]["image_id"])
    # English answers agree with the scene generator
    scenes = make_scenes(0, "test", n)
    rng = np.random.default_rng([0, _SPLIT_STREAM["vqa_questions"]])
    en = [r for r in rows if r["language"] == "en"]
    for sc, r in zip(scenes, en):
        q = scene_question(sc, rng)
        assert r["image_id"] == sc.image_id and r["answer"] == _truth(sc, q)
        assert r["options"] == realise_question(q, "en")[1]
    again = build_vqa(seed=0, num_scenes=n, cache_dir=tmp_path)
    assert again.remove_columns("image").to_list() == rows
