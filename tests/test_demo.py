"""demo/app.py as a user meets it: the FAISS index built, reused and rebuilt; the app started as a process and
queried through gradio_client in four scripts, its answers checked against the model's own ranking."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mvld_hf.export import export_sentence_transformer
from mvld_hf.testing import tiny_student

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("faiss")
pytest.importorskip("gradio")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "demo"))
import app as demo_app  # noqa: E402

from mvld_hf.export_immich import ImmichBundle  # noqa: E402

QUERIES = {"en": "a red circle", "ru": "красный круг", "ja": "赤い丸", "ar": "دائرة حمراء"}


@pytest.fixture(scope="module")
def model(tokenizer, teacher, tmp_path_factory):
    student = tiny_student(tokenizer, projection_dim=16, seed=3)
    student.config.teacher_name_or_path = "tiny-random-clip"
    student.config.distillation_method = "dr"
    return export_sentence_transformer(student, tokenizer, teacher, tmp_path_factory.mktemp("demo") / "st",
                                       formats="pytorch,immich", measure_speed=False).path


@pytest.fixture
def photos(toy_rows, tmp_path):
    folder = tmp_path / "photos"
    os.makedirs(folder / "sub")
    distinct = list({r["image"].tobytes(): r["image"] for r in toy_rows}.values())  # 8 scenes
    rng = np.random.default_rng(0)
    distinct += [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(10 - len(distinct))]
    for i, image in enumerate(distinct):
        image.save(folder / ("sub" if i % 3 == 0 else "") / f"p{i:02d}.png")
    with open(folder / "examples.json", "w", encoding="utf-8") as f:
        json.dump({"captions": QUERIES, "labels": {"de": ["ein roter Kreis", "ein blaues Quadrat"]}}, f)
    return str(folder)


def _expected(model, photos, caption, k):
    """The model's own top-k (names, cosines), by brute force in numpy, and every photo's cosine."""
    bundle = ImmichBundle(os.path.join(model, "immich"), threads=1)
    names = demo_app.list_images(photos)
    images = bundle.encode_image([Image.open(os.path.join(photos, n)).convert("RGB") for n in names])
    text = bundle.encode_text([caption])[0]
    cos = (images @ text) / np.linalg.norm(images, axis=1) / np.linalg.norm(text)
    order = np.argsort(-cos)[:k]
    return [names[i] for i in order], cos[order], dict(zip(names, cos))


def _check(ranking, expected):
    """The returned photos are the model's first k: same cosines in the same order (photos with equal cosines,
    e.g. identical images, may come in either order) and each photo's cosine is its own."""
    names, cos, every = expected
    assert np.allclose([r["score"] for r in ranking], cos, atol=1e-4)
    assert np.allclose([every[r["image"]] for r in ranking], cos, atol=1e-4)
    assert [r["image"] for r in ranking] == names or len(set(np.round(cos, 4))) < len(cos)


def test_index_is_persisted_reused_and_rebuilt(model, photos, tmp_path):
    first = demo_app.SearchApp(model, photos, threads=1)
    assert first.index.status == "built" and len(first.index.names) == 10
    assert os.path.isfile(os.path.join(photos, ".mvld_index", "images.faiss"))
    assert demo_app.SearchApp(model, photos, threads=1).index.status == "reused"
    _check(first.search(QUERIES["en"], 3), _expected(model, photos, QUERIES["en"], 3))

    shutil.copyfile(os.path.join(photos, "p01.png"), os.path.join(photos, "sub", "new.png"))  # a photo added
    again = demo_app.SearchApp(model, photos, threads=1)
    assert again.index.status == "built" and len(again.index.names) == 11
    assert demo_app.SearchApp(model, photos, threads=1).index.status == "reused"

    other = tmp_path / "other_model"  # another image model (its preprocessing changed): rebuilt
    shutil.copytree(os.path.join(model, "immich"), other)
    cfg = json.load(open(other / "visual" / "preprocess_cfg.json"))
    cfg["interpolation"] = "bilinear"
    json.dump(cfg, open(other / "visual" / "preprocess_cfg.json", "w"))
    assert demo_app.SearchApp(str(other), photos, threads=1).index.status == "built"

    scores = first.zero_shot(Image.open(os.path.join(photos, "p01.png")), "ein roter Kreis, 青い四角、 دائرة")
    assert list(scores) == ["ein roter Kreis", "青い四角", "دائرة"] and abs(sum(scores.values()) - 1) < 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_app_answers_in_four_scripts(model, photos, tmp_path):
    from gradio_client import Client, handle_file

    port = _free_port()
    log = open(tmp_path / "app.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "demo", "app.py"), "--model", model,
                               "--images", photos, "--port", str(port), "--threads", "1"],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 300
        client = None
        while client is None:
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError("the app did not start:\n" + open(tmp_path / "app.log").read()[-3000:])
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:
                time.sleep(2)
        for language, caption in QUERIES.items():
            gallery, ranking = client.predict(caption, 4, api_name="/search")
            _check(ranking, _expected(model, photos, caption, 4))
            assert len(gallery) == 4, language
        labels = client.predict(handle_file(os.path.join(photos, "p01.png")), "ein roter Kreis, 赤い丸, красный круг",
                                api_name="/zero_shot")
        assert {c["label"] for c in labels["confidences"]} == {"ein roter Kreis", "赤い丸", "красный круг"}
        assert abs(sum(c["confidence"] for c in labels["confidences"]) - 1) < 1e-4
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
