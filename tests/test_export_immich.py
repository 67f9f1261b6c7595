"""The immich-layout bundle (loaded the way immich's M-CLIP encoders load it) and the fastembed custom model,
both against the PyTorch export."""

import json
import os

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from mvld_hf.export import export_sentence_transformer
from mvld_hf.testing import tiny_student

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mvld_hf.export_immich import ImmichBundle, export_immich_bundle, preprocess_cfg  # noqa: E402
from mvld_hf.export_onnx import CHECK_TEXTS, COSINE_BOUND, parse_formats  # noqa: E402

#: one text per script: Latin, Cyrillic, Han, Kana, Arabic, Devanagari, Thai, Hangul (+ Greek, Bengali, Telugu)
SCRIPT_TEXTS = ["a red circle left of a blue square", "красный круг слева от синего квадрата",
                "蓝色正方形左边的红色圆圈", "青い四角の左にある赤い丸", "دائرة حمراء على يسار مربع أزرق",
                "नीले वर्ग के बाईं ओर एक लाल वृत्त", "วงกลมสีแดงทางซ้ายของสี่เหลี่ยมสีน้ำเงิน", "빨간 원과 파란 사각형",
                "ένας κόκκινος κύκλος", "একটি লাল বৃত্ত", "ఒక ఎరుపు వృత్తం"]


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def export(tokenizer, teacher, tmp_path_factory):
    student = tiny_student(tokenizer, projection_dim=16, seed=5)
    student.config.teacher_name_or_path = "tiny-random-clip"
    student.config.distillation_method = "dr"
    return export_sentence_transformer(student, tokenizer, teacher, tmp_path_factory.mktemp("immich") / "st",
                                       formats="pytorch,int8,immich")


@pytest.fixture(scope="module")
def pytorch(export):
    return SentenceTransformer(export.path, local_files_only=True)


def test_immich_format_brings_onnx_and_needs_images(tokenizer, teacher, tmp_path):
    assert parse_formats("immich") == ("pytorch", "onnx", "immich")
    with pytest.raises(ValueError, match="image route"):
        export_sentence_transformer(tiny_student(tokenizer, projection_dim=16), tokenizer, teacher, tmp_path / "x",
                                    include_images=False, formats="immich")
    assert not os.path.exists(tmp_path / "x")


def test_bundle_layout_is_immichs_contract(export):
    import onnx

    root = os.path.join(export.path, "immich")
    assert sorted(os.listdir(root)) == ["config.json", "textual", "visual"]
    assert sorted(os.listdir(os.path.join(root, "textual"))) == ["model.onnx", "tokenizer.json",
                                                                 "tokenizer_config.json"]
    assert sorted(os.listdir(os.path.join(root, "visual"))) == ["model.onnx", "preprocess_cfg.json"]
    config = json.load(open(os.path.join(root, "config.json")))
    assert config["embed_dim"] == 16 and config["text_cfg"]["context_length"] == export.max_seq_length
    assert config["vision_cfg"]["image_size"] == 32
    assert json.load(open(os.path.join(root, "textual", "tokenizer_config.json")))["pad_token"] == "<pad>"
    assert json.load(open(os.path.join(root, "visual", "preprocess_cfg.json"))) == {
        "size": [32, 32], "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic", "resize_mode": "shortest"}
    textual = onnx.load(os.path.join(root, "textual", "model.onnx")).graph
    int32 = onnx.TensorProto.INT32
    assert [(i.name, i.type.tensor_type.elem_type) for i in textual.input] == [("input_ids", int32),
                                                                               ("attention_mask", int32)]
    visual = onnx.load(os.path.join(root, "visual", "model.onnx")).graph
    assert [i.name for i in visual.input] == ["image"]
    assert visual.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # the export records the check and lists the format; the card says where immich looks for it
    assert export.formats["immich"]["text_cosine_min"] >= COSINE_BOUND
    assert "immich" in json.load(open(os.path.join(export.path, "config_sentence_transformers.json")))[
        "mvld_hf"]["formats"]
    card = open(os.path.join(export.path, "README.md"), encoding="utf-8").read()
    assert "immich/" in card and "MACHINE_LEARNING_CACHE_FOLDER" in card


def test_bundle_reproduces_pytorch_texts_and_images(export, pytorch, toy_rows):
    bundle = ImmichBundle(os.path.join(export.path, "immich"), threads=1)
    tokens = bundle.tokenize(["x", "rot " * 400])
    assert tokens["input_ids"].dtype == np.int32 and tokens["input_ids"].shape == (2, export.max_seq_length)
    texts = SCRIPT_TEXTS + CHECK_TEXTS  # 8+ scripts, one character, digits, emoji, an over-long text
    assert _cos(bundle.encode_text(texts), pytorch.encode(texts)).min() >= COSINE_BOUND
    one = bundle.encode_text(texts[:1], batch_size=1)  # immich embeds one text per call: same row
    assert _cos(one, pytorch.encode(texts[:1])).min() >= COSINE_BOUND

    images = [r["image"] for r in toy_rows[:6]]  # at the model's 32x32: both resizers leave them alone
    assert {im.size for im in images} == {(32, 32)}
    assert _cos(bundle.encode_image(images), pytorch.encode(images)).min() >= COSINE_BOUND
    # other sizes and aspect ratios go through immich's PIL resize + centre crop; transformers' processor
    # resizes with its own kernel, so the two agree closely but not to the last digit
    other = [images[0].resize((48, 40)), images[1].resize((40, 64))]
    assert _cos(bundle.encode_image(other), pytorch.encode(other)).min() > 0.98


def test_int8_textual_option_measured(export, pytorch, tmp_path):
    report = export_immich_bundle(export.path, tmp_path / "immich8", int8=True, threads=1)
    assert report["textual"] == "int8" and report["text_cosine_min"] >= COSINE_BOUND  # against the int8 graph
    bundle = ImmichBundle(tmp_path / "immich8", threads=1)
    assert _cos(bundle.encode_text(SCRIPT_TEXTS), pytorch.encode(SCRIPT_TEXTS)).min() > 0.99
    assert os.path.getsize(tmp_path / "immich8" / "textual" / "model.onnx") < os.path.getsize(
        os.path.join(export.path, "immich", "textual", "model.onnx"))


def test_preprocess_cfg_of_siglip_and_refusals():
    siglip = {"size": {"height": 256, "width": 256}, "do_resize": True, "resample": 2, "do_normalize": True,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255}
    assert preprocess_cfg(siglip) == {"size": [256, 256], "mean": [0.5] * 3, "std": [0.5] * 3,
                                      "interpolation": "bilinear", "resize_mode": "squash"}
    with pytest.raises(ValueError, match="crops"):
        preprocess_cfg({"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224},
                        "do_center_crop": True, "image_mean": [0] * 3, "image_std": [1] * 3})
    with pytest.raises(ValueError, match="square"):
        preprocess_cfg({"size": {"height": 224, "width": 320}, "image_mean": [0] * 3, "image_std": [1] * 3})


def test_fastembed_loads_the_text_graph_offline(export, pytorch):
    pytest.importorskip("fastembed")
    from mvld_hf.export_fastembed import load_fastembed

    model = load_fastembed(export.path, threads=1)  # a local folder, no download (HF_HUB_OFFLINE in conftest)
    texts = SCRIPT_TEXTS + CHECK_TEXTS
    got = np.stack(list(model.embed(texts, batch_size=7)))
    want = pytorch.encode(texts)
    assert got.shape == want.shape and _cos(got, want).min() >= COSINE_BOUND
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # fastembed normalises
    folder = os.path.join(export.path, "fastembed")
    assert json.load(open(os.path.join(folder, "tokenizer_config.json")))["model_max_length"] == \
        export.max_seq_length
    again = load_fastembed(export.path, threads=1)  # the same name registered once, reused
    assert np.allclose(np.stack(list(again.embed(texts[:3]))), got[:3], atol=1e-6)
    int8 = load_fastembed(export.path, int8=True, threads=1)
    assert _cos(np.stack(list(int8.embed(texts))), want).min() > 0.99
