"""ONNX / int8 exports, declared modalities, and the export's own hygiene (NaN weights, leftovers, folder mode)."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from mvld_hf.export import export_sentence_transformer
from mvld_hf.testing import tiny_student

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mvld_hf.export_onnx import (  # noqa: E402
    CHECK_TEXTS,
    COSINE_BOUND,
    Int8QualityError,
    OnnxEncoder,
    OnnxUnavailableError,
    parse_formats,
    require_onnx,
)


@pytest.fixture(scope="module")
def student(tokenizer):
    model = tiny_student(tokenizer, projection_dim=16, seed=11)
    model.config.teacher_name_or_path = "tiny-random-clip"
    model.config.distillation_method = "dr"
    return model


@pytest.fixture(scope="module")
def onnx_export(student, tokenizer, teacher, tmp_path_factory):
    return export_sentence_transformer(student, tokenizer, teacher, tmp_path_factory.mktemp("onnx") / "st",
                                       formats="pytorch,onnx,int8")


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_onnx_and_int8_reproduce_pytorch(onnx_export, student, tokenizer, toy_rows):
    path = onnx_export.path
    assert sorted(os.listdir(os.path.join(path, "onnx"))) == ["image_model.onnx", "mvld_onnx.json",
                                                             "text_model.onnx", "text_model_int8.onnx"]
    model = SentenceTransformer(path, local_files_only=True)  # the PyTorch format still loads as before
    want = student.encode(CHECK_TEXTS, tokenizer, max_length=onnx_export.max_seq_length)
    assert np.allclose(model.encode(CHECK_TEXTS), want.numpy(), atol=1e-5)

    fp32 = OnnxEncoder(path)  # onnxruntime + tokenizers only, the projection inside the graph
    got = fp32.encode_text(CHECK_TEXTS, batch_size=7)  # several padding patterns, the over-long text truncated
    assert got.shape == tuple(want.shape) and _cos(got, want.numpy()).min() >= COSINE_BOUND
    int8 = OnnxEncoder(path, int8=True)
    got8 = int8.encode_text(CHECK_TEXTS)
    assert _cos(got8, want.numpy()).min() > 0.99
    sims = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (  # noqa: E731
        want.numpy() / np.linalg.norm(want.numpy(), axis=1, keepdims=True)).T
    assert (sims(got8).argmax(1) == np.arange(len(CHECK_TEXTS))).mean() >= 0.9  # top-1 agreement

    images = [r["image"] for r in toy_rows[:4]]
    assert _cos(fp32.encode_image(images), model.encode(images)).min() >= COSINE_BOUND

    report = onnx_export.formats
    assert list(report["formats"]) == ["pytorch", "onnx", "int8"]
    assert report["formats"]["onnx"]["cosine_min"] >= COSINE_BOUND and report["image"]["cosine_min"] >= COSINE_BOUND
    assert report["formats"]["int8"]["bytes"] < report["formats"]["onnx"]["bytes"]
    for entry in report["formats"].values():
        assert entry["batch1_ms_p50"] > 0 and entry["batch64_texts_per_s"] > 0 and 0 <= entry["r1"] <= 1
    on_disk = json.load(open(os.path.join(path, "onnx", "mvld_onnx.json")))
    assert on_disk["formats"].keys() == report["formats"].keys() and on_disk["text"]["inputs"][:2] == [
        "input_ids", "attention_mask"]


def test_card_lists_each_format_with_its_figures(onnx_export):
    card = open(os.path.join(onnx_export.path, "README.md"), encoding="utf-8").read()
    assert "## Formats" in card and "onnxruntime" in card
    int8 = onnx_export.formats["formats"]["int8"]
    for name in ("PyTorch", "ONNX float32", "ONNX int8"):
        assert name in card
    assert f"{int8['bytes'] / 2**20:.1f} MiB" in card and f"{int8['cosine_min']:.5f}" in card
    assert f"{100 * int8['top1_agreement']:.1f}%" in card and "texts/s" in card
    assert "text_model_int8.onnx" in card and "tags:" in card and "- onnx" in card


def test_the_card_onnx_snippet_runs_with_onnxruntime_alone(onnx_export, tmp_path):
    card = open(os.path.join(onnx_export.path, "README.md"), encoding="utf-8").read()
    snippet = card.split("ONNX without sentence-transformers")[1].split("```python")[1].split("```")[0]
    snippet = snippet.replace('path = "path/to/exported-model"', f"path = {onnx_export.path!r}")
    snippet += "\nimport sys\nassert 'torch' not in sys.modules, 'torch imported'\nprint(text_embeddings.shape)\n"
    (tmp_path / "snippet.py").write_text(snippet, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(tmp_path / "snippet.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(", 16)")


def _mteb_modalities(folder) -> list[str]:
    """mteb 2.x's rule (ModelMeta._detect_modalities_from_sbert_config): the keys of ``modality_config`` in the
    repository's top-level sentence_bert_config.json that are known modalities, else ["text"]."""
    path = os.path.join(folder, "sentence_bert_config.json")
    config = json.load(open(path)) if os.path.isfile(path) else {}
    found = {"text", "image", "audio", "video"} & set(config.get("modality_config") or {})
    return sorted(found) or ["text"]


def test_router_declares_text_and_image_and_text_only_declares_text(onnx_export, student, tokenizer, tmp_path):
    router = onnx_export.path
    assert sorted(SentenceTransformer(router, local_files_only=True).modalities) == ["image", "text"]
    assert _mteb_modalities(router) == ["image", "text"] and sorted(onnx_export.modalities) == ["image", "text"]
    st_config = json.load(open(os.path.join(router, "config_sentence_transformers.json")))
    assert sorted(st_config["mvld_hf"]["modalities"]) == ["image", "text"]

    text_only = export_sentence_transformer(student, tokenizer, None, tmp_path / "text", include_images=False,
                                            formats="onnx")
    assert SentenceTransformer(text_only.path, local_files_only=True).modalities == ["text"]
    assert _mteb_modalities(text_only.path) == ["text"] and text_only.modalities == ["text"]
    assert text_only.formats["image"] is None
    assert not any(f.startswith((".", "onnx")) for f in text_only.formats["formats"]["pytorch"]["files"])
    assert sorted(os.listdir(tmp_path / "text" / "onnx")) == ["mvld_onnx.json", "text_model.onnx"]
    got = OnnxEncoder(text_only.path).encode_text(CHECK_TEXTS[:8])
    assert _cos(got, student.encode(CHECK_TEXTS[:8], tokenizer).numpy()).min() >= COSINE_BOUND
    with pytest.raises(FileNotFoundError, match="formats"):
        OnnxEncoder(text_only.path, int8=True)


def test_int8_beyond_the_bound_warns_or_refuses(student, tokenizer, tmp_path, caplog):
    with pytest.raises(Int8QualityError, match="points of mean R@1"):  # a bound no export can meet
        export_sentence_transformer(student, tokenizer, None, tmp_path / "refused", include_images=False,
                                    formats="int8", int8_max_drop=-1.0, int8_on_loss="refuse",
                                    measure_speed=False)
    assert not (tmp_path / "refused").exists() and os.listdir(tmp_path) == []
    with caplog.at_level(logging.WARNING, logger="mvld_hf.export_onnx"):
        result = export_sentence_transformer(student, tokenizer, None, tmp_path / "warned", include_images=False,
                                             formats="int8", int8_max_drop=-1.0, measure_speed=False)
    assert "int8 loses" in caplog.text
    assert result.formats["formats"]["int8"]["within_bound"] is False and "onnx" not in result.formats["formats"]
    assert sorted(os.listdir(tmp_path / "warned" / "onnx")) == ["mvld_onnx.json", "text_model_int8.onnx"]
    assert "**over the bound**" in open(tmp_path / "warned" / "README.md", encoding="utf-8").read()


def test_formats_are_checked_before_any_work(monkeypatch):
    assert parse_formats("int8, onnx") == ("pytorch", "onnx", "int8") and parse_formats(None) == ("pytorch",)
    with pytest.raises(ValueError, match="unknown export format"):
        parse_formats("pytorch,tflite")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(OnnxUnavailableError, match=r"pip install 'mvld_hf\[onnx\]'"):
        require_onnx(("pytorch", "onnx"))
    require_onnx(("pytorch",))  # nothing needed
    with pytest.raises(OnnxUnavailableError):
        export_sentence_transformer("/nonexistent/checkpoint", None, None, "/nonexistent/out", formats="int8")


def test_nan_weights_are_named_as_such(tokenizer, tmp_path):
    broken = tiny_student(tokenizer, projection_dim=16, seed=12)
    with torch.no_grad():
        broken.projection.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weights are not finite.*projection.weight"):
        export_sentence_transformer(broken, tokenizer, None, tmp_path / "nan", include_images=False)
    assert os.listdir(tmp_path) == []


def test_a_killed_exports_leftovers_are_removed_and_the_folder_mode_is_normal(student, tokenizer, tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    leftovers = {".st.partial-dead": {"pid": dead.pid, "host": host}, ".st.old-dead": {"pid": dead.pid, "host": host},
                 ".st.partial-live": {"pid": os.getpid(), "host": host}, ".st.partial-legacy": None}
    for name, owner in leftovers.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"half written")
        if owner:
            (tmp_path / name / ".mvld_export_owner").write_text(json.dumps(owner))
    os.utime(tmp_path / ".st.partial-legacy", (0, 0))  # an old one from before owner files
    (tmp_path / ".other.partial-x").mkdir()  # another export's: not ours to touch

    export_sentence_transformer(student, tokenizer, None, tmp_path / "st", include_images=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-x", ".st.partial-live", "st"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "st").stat().st_mode & 0o777 == 0o777 & ~umask
    assert not (tmp_path / "st" / ".mvld_export_owner").exists()
