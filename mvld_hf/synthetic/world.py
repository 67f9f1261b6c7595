"""Build (and cache) the synthetic multilingual image-caption world and its multiple-choice VQA set.

``build_world`` gives a ``DatasetDict`` with ``train`` and ``test`` splits, one row per (scene, caption
variant, language) and the columns ``image`` (``datasets.Image``), ``image_id``, ``caption`` (in
``language``), ``english`` (the English caption of the same variant), ``language`` and ``scene`` (the
composition string, e.g. ``h:big-red-circle|small-blue-square``, usable as a cluster label). Rows are ordered
scene by scene, then variant (0, 1), then language in the order given.

The split is by composition: a composition (layout + objects with their attributes, in reading order) is on the
test side or the train side by a stable hash, so no test scene description ever occurs in training; within a
split every scene has a different composition. Scenes are drawn from ``numpy.random.default_rng([seed, k])``
(k = 0 train, 1 test), prefix-stable in the number of scenes, so ``build_vqa(seed)`` asks about the same images
as the first test scenes of ``build_world(seed)`` (same ``image_id``).

Results are saved with ``save_to_disk`` under :func:`default_cache_dir` (or ``cache_dir``) in a folder named
after :data:`VERSION` and the arguments, and loaded back with ``load_from_disk`` on later calls;
``cache_dir=False`` builds in memory without caching.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time

import numpy as np

from .grammar import get_realiser
from .scenes import Scene, sample_scenes
from .vocab import COLOURS, LANGUAGE_INFO, SHAPES, SIZES

logger = logging.getLogger(__name__)

#: bump when the world (scenes, rendering, grammar or vocabulary) changes: it names the cache folders
VERSION = "2"
#: ISO 639-1 codes, English first
LANGUAGES: list[str] = list(LANGUAGE_INFO)
#: language -> script
SCRIPTS: dict[str, str] = {code: script for code, (_, script) in LANGUAGE_INFO.items()}
NUM_VARIANTS = 2
DEFAULT_TRAIN_SCENES = 3000
DEFAULT_TEST_SCENES = 600
DEFAULT_VQA_SCENES = 600
_SPLIT_STREAM = {"train": 0, "test": 1, "vqa_questions": 2}


def default_cache_dir() -> str:
    """``$MVLD_HF_CACHE``, else ``$HF_HOME/mvld_hf``, else ``~/.cache/mvld_hf``."""
    if os.environ.get("MVLD_HF_CACHE"):
        return os.path.expanduser(os.environ["MVLD_HF_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "mvld_hf")
    return os.path.join(os.path.expanduser("~"), ".cache", "mvld_hf")


def _check_languages(languages) -> list[str]:
    if languages is None:
        return list(LANGUAGES)
    if isinstance(languages, str):
        languages = [languages]
    out: list[str] = []
    for lang in languages:
        if lang not in LANGUAGE_INFO:
            raise ValueError(f"unknown language {lang!r}; available: {LANGUAGES}")
        if lang not in out:
            out.append(lang)
    if not out:
        raise ValueError("languages must not be empty")
    return out


def make_scenes(seed: int, split: str, num: int) -> list[Scene]:
    """The first ``num`` scenes of ``split`` ("train" or "test") for ``seed``, with their ``image_id``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num < 0:
        raise ValueError(f"number of scenes must be >= 0, got {num}")
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
    scenes = sample_scenes(rng, num, split)
    for i, sc in enumerate(scenes):
        sc.image_id = f"w{VERSION}-s{seed}-{split}-{i:05d}"
    return scenes


def _image(scene: Scene) -> dict:
    return {"bytes": scene.png_bytes(), "path": None}


def _world_features():
    from datasets import Features, Image, Value

    return Features({"image": Image(), "image_id": Value("string"), "caption": Value("string"),
                     "english": Value("string"), "language": Value("string"), "scene": Value("string")})


def _vqa_features():
    from datasets import Features, Image, List, Value

    return Features({"image": Image(), "image_id": Value("string"), "question": Value("string"),
                     "options": List(Value("string")), "answer": Value("int64"), "language": Value("string")})


def _caption_rows(scenes: list[Scene], languages: list[str]):
    from datasets import Dataset

    english = get_realiser("en")
    realisers = [get_realiser(lang) for lang in languages]
    cols: dict[str, list] = {k: [] for k in ("image", "image_id", "caption", "english", "language", "scene")}
    for sc in scenes:
        image, desc, key = _image(sc), sc.description(), sc.key()
        for variant in range(NUM_VARIANTS):
            en = english.caption(desc, variant)
            for lang, real in zip(languages, realisers):
                cols["image"].append(image)
                cols["image_id"].append(sc.image_id)
                cols["caption"].append(en if lang == "en" else real.caption(desc, variant))
                cols["english"].append(en)
                cols["language"].append(lang)
                cols["scene"].append(key)
    return Dataset.from_dict(cols, features=_world_features())


def _cached(folder: str | None, build, load):
    """Load ``folder`` if it is there, else build, save atomically and return the built object."""
    if folder is None:
        return build()
    if os.path.isdir(folder):
        try:
            return load(folder)
        except Exception as err:  # a broken cache folder: rebuild it
            logger.warning("could not load cached %s (%s); rebuilding", folder, err)
            shutil.rmtree(folder, ignore_errors=True)
    obj = build()
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(folder) + "-", dir=parent)
    try:
        obj.save_to_disk(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first
            if not os.path.isdir(folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load(folder)


def _cache_folder(cache_dir, name: str) -> str | None:
    if cache_dir is False:
        return None
    return os.path.join(os.fspath(cache_dir) if cache_dir is not None else default_cache_dir(), name)


def world_folder(seed: int = 0, num_train_scenes: int = DEFAULT_TRAIN_SCENES,
                 num_test_scenes: int = DEFAULT_TEST_SCENES, languages=None, cache_dir=None) -> str:
    """The folder :func:`build_world` with these arguments keeps its ``DatasetDict`` in (``<folder>/test`` is the
    held-out split, loadable with ``datasets.load_from_disk``); it exists once the world has been built."""
    langs = _check_languages(languages)
    name = f"world-v{VERSION}-seed{seed}-train{num_train_scenes}-test{num_test_scenes}-{'_'.join(langs)}"
    return _cache_folder(cache_dir if cache_dir is not False else None, name)


def build_world(seed: int = 0, num_train_scenes: int = DEFAULT_TRAIN_SCENES,
                num_test_scenes: int = DEFAULT_TEST_SCENES, languages=None, cache_dir=None):
    """The caption world as a ``datasets.DatasetDict`` with ``train`` and ``test`` splits (see module doc).

    Each scene gives ``2 x len(languages)`` rows: two caption variants, each in every language. The held-out
    images and captions the demo (``mvld-distill``) evaluates on are ``build_world()["test"]`` (the same
    arguments as the run's ``--world_*`` flags); :func:`world_folder` says where they are kept on disk.
    """
    from datasets import DatasetDict, load_from_disk

    langs = _check_languages(languages)
    name = os.path.basename(world_folder(seed, num_train_scenes, num_test_scenes, langs))

    def build():
        t0 = time.perf_counter()
        world = DatasetDict({split: _caption_rows(make_scenes(seed, split, num), langs)
                             for split, num in (("train", num_train_scenes), ("test", num_test_scenes))})
        logger.info("built world %s in %.1fs", name, time.perf_counter() - t0)
        return world

    return _cached(_cache_folder(cache_dir, name), build, load_from_disk)


# --- VQA ----------------------------------------------------------------------------------------------------------
def scene_question(scene: Scene, rng: np.random.Generator) -> dict:
    """One language-independent multiple-choice question about ``scene``:
    ``{"type", "subject", "options": [4 scene descriptions], "answer": int, "variant": int}``.

    Every option is a whole-scene description that differs from the true one only in what the question asks
    about, realised as a caption of the world's grammar (CVQA-style: score each option against the image):

    - ``colour``: what colour is the <shape>? -- that object's colour varies;
    - ``shape``: what shape is the <colour> object? (asked only when that colour is unique in the scene) --
      that object's shape varies;
    - ``count``: how many objects are there? -- 1, 2, 3 or 4 objects (objects dropped from or added to the
      scene), realised with caption variant 1, which starts with the count (``two objects: ...``);
    - ``relation``: where is A relative to B? (two neighbouring objects) -- the true arrangement, A and B
      swapped, row <-> column, and both: for two objects these are A left of / right of / above / below B.
    """
    desc = scene.description()
    objs, layout = desc["objects"], desc["layout"]
    n = len(objs)
    colours = [o["colour"] for o in objs]
    unique_colour = [i for i, o in enumerate(objs) if colours.count(o["colour"]) == 1]
    types = ["colour", "count"] + (["shape"] if unique_colour else []) + (["relation"] if n > 1 else [])
    qtype = types[int(rng.integers(len(types)))]

    def with_object(i: int, **change) -> dict:
        return {"layout": layout, "objects": [dict(o, **change) if j == i else dict(o) for j, o in enumerate(objs)]}

    variant = 0
    if qtype == "colour":
        i = int(rng.integers(n))
        others = [c for c in COLOURS if c != objs[i]["colour"]]
        picks = [objs[i]["colour"]] + [others[k] for k in rng.choice(len(others), 3, replace=False)]
        options = [with_object(i, colour=c) for c in picks]
        subject = {"shape": objs[i]["shape"]}
    elif qtype == "shape":
        i = unique_colour[int(rng.integers(len(unique_colour)))]
        taken = {o["shape"] for o in objs}
        others = [x for x in SHAPES if x not in taken]  # shapes stay distinct within a scene
        if len(others) < 3:
            others += [x for x in SHAPES if x in taken and x != objs[i]["shape"]]
        picks = [objs[i]["shape"]] + [others[k] for k in rng.choice(len(others), 3, replace=False)]
        options = [with_object(i, shape=x) for x in picks]
        subject = {"colour": objs[i]["colour"]}
    elif qtype == "count":
        variant = 1
        options = [desc] + [_with_count(desc, k, rng) for k in (1, 2, 3, 4) if k != n]
        subject = {}
    else:
        i = int(rng.integers(n - 1))
        a, b = (i, i + 1) if rng.integers(2) else (i + 1, i)
        swapped = [dict(o) for o in objs]
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        flipped = "vertical" if layout == "horizontal" else "horizontal"
        options = [desc, {"layout": layout, "objects": swapped},
                   {"layout": flipped, "objects": [dict(o) for o in objs]},
                   {"layout": flipped, "objects": swapped}]
        subject = {"a": objs[a]["shape"], "b": objs[b]["shape"]}
    perm = rng.permutation(len(options))
    return {"type": qtype, "subject": subject, "options": [options[p] for p in perm],
            "answer": int(np.flatnonzero(perm == 0)[0]), "variant": variant}


def _with_count(desc: dict, k: int, rng: np.random.Generator) -> dict:
    """``desc`` with ``k`` objects: a random ordered subset, or new objects (unused shapes) inserted."""
    objs, layout = [dict(o) for o in desc["objects"]], desc["layout"]
    if k < len(objs):
        keep = sorted(int(x) for x in rng.choice(len(objs), k, replace=False))
        objs = [objs[x] for x in keep]
    while len(objs) < k:
        free = [x for x in SHAPES if x not in {o["shape"] for o in objs}]
        new = {"shape": free[int(rng.integers(len(free)))], "colour": COLOURS[int(rng.integers(len(COLOURS)))],
               "size": SIZES[int(rng.integers(len(SIZES)))]}
        objs.insert(int(rng.integers(len(objs) + 1)), new)
    if k == 1:
        layout = "single"
    elif layout == "single":
        layout = ("horizontal", "vertical")[int(rng.integers(2))]
    return {"layout": layout, "objects": objs}


def realise_question(q: dict, language: str) -> tuple[str, list[str]]:
    """Question text and option captions of :func:`scene_question`'s output in ``language``."""
    real = get_realiser(language)
    t, s = q["type"], q["subject"]
    options = [real.caption(d, q["variant"]) for d in q["options"]]
    if t == "colour":
        return real.q_colour(s["shape"]), options
    if t == "shape":
        return real.q_shape(s["colour"]), options
    if t == "count":
        return real.q_count(), options
    return real.q_relation(s["a"], s["b"]), options


def build_vqa(seed: int = 0, num_scenes: int = DEFAULT_VQA_SCENES, languages=None, cache_dir=None):
    """Multiple-choice VQA on held-out (test) scenes: one question per scene, asked in every language (same
    question, options and answer index across languages). Columns: ``image``, ``image_id``, ``question``,
    ``options`` (4 strings), ``answer`` (index of the correct option), ``language``.

    Options are whole-scene captions in the world's grammar that differ only in what is asked (see
    :func:`scene_question`), so that they can be scored by text-image similarity, CVQA style.
    """
    from datasets import Dataset, load_from_disk

    langs = _check_languages(languages)
    name = f"vqa-v{VERSION}-seed{seed}-n{num_scenes}-{'_'.join(langs)}"

    def build():
        scenes = make_scenes(seed, "test", num_scenes)
        rng = np.random.default_rng([seed, _SPLIT_STREAM["vqa_questions"]])
        cols: dict[str, list] = {k: [] for k in ("image", "image_id", "question", "options", "answer", "language")}
        for sc in scenes:
            q = scene_question(sc, rng)
            image = _image(sc)
            for lang in langs:
                question, options = realise_question(q, lang)
                cols["image"].append(image)
                cols["image_id"].append(sc.image_id)
                cols["question"].append(question)
                cols["options"].append(options)
                cols["answer"].append(q["answer"])
                cols["language"].append(lang)
        return Dataset.from_dict(cols, features=_vqa_features())

    return _cached(_cache_folder(cache_dir, name), build, load_from_disk)



def parse_language_shares(values) -> dict[str, float]:
    """``["bn:0.05", "sw:0"]`` (or a dict) -> ``{"bn": 0.05, "sw": 0.0}``, checked (known language, share in
    [0, 1]).

    >>> parse_language_shares(["bn:0.05", "sw:0"])
    {'bn': 0.05, 'sw': 0.0}
    """
    if not values:
        return {}
    if isinstance(values, dict):
        items = list(values.items())
    else:
        items = []
        for value in (values.split() if isinstance(values, str) else values):
            lang, sep, share = str(value).partition(":")
            if not sep:
                raise ValueError(f"language share {value!r} must read LANG:SHARE, e.g. bn:0.05 (0: no training rows)")
            items.append((lang, share))
    shares = {}
    for lang, share in items:
        if lang not in LANGUAGE_INFO:
            raise ValueError(f"unknown language {lang!r} in language shares; available: {LANGUAGES}")
        try:
            share = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"share of {lang!r} must be a number in [0, 1], got {share!r}") from None
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share of {lang!r} must be in [0, 1], got {share}")
        shares[lang] = share
    return shares


def subsample_languages(split, shares, seed: int = 0, image_id_column: str = "image_id",
                        language_column: str = "language"):
    """Keep only a share of the training scenes for chosen languages (``{"bn": 0.05, "sw": 0.0}``; 0 = a
    zero-shot language); other languages keep every row. Scenes are drawn per language with
    ``numpy.random.default_rng([seed, 3, language index])``, so a share keeps the same scenes across runs.
    Apply it to the training split only: the held-out test split stays complete."""
    shares = parse_language_shares(shares)
    if not shares:
        return split
    cols = split.select_columns([image_id_column, language_column]).to_dict()
    present = set(cols[language_column])
    missing = sorted(set(shares) - present)
    if missing:
        raise ValueError(f"language share for {missing}, which the split does not have (languages: {sorted(present)})")
    image_ids = sorted(set(cols[image_id_column]))
    kept: dict[str, set] = {}
    for lang, share in shares.items():
        rng = np.random.default_rng([seed, 3, LANGUAGES.index(lang)])
        order = rng.permutation(len(image_ids))[: int(round(share * len(image_ids)))]
        kept[lang] = {image_ids[i] for i in order}
    keep = [i for i, (iid, lang) in enumerate(zip(cols[image_id_column], cols[language_column]))
            if lang not in kept or iid in kept[lang]]
    return split.select(keep)
