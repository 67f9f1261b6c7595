"""Model cards: lenient evaluation JSON, model-index that parses back, teacher/limitations/citation text."""

import json

import pytest
from huggingface_hub import ModelCard, metadata_load

from mvld_hf.model_card import CITATION, load_eval_results, render_model_card

INFO = dict(path="x", include_images=True, image_route="vision_tower",
            teacher_name_or_path="openai/clip-vit-base-patch32",
            teacher_revision="3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268", distillation_method="dr:1.0,fd:0.5",
            backbone_model_type="xlm-roberta", backbone_name_or_path="FacebookAI/xlm-roberta-base", pooling="mean",
            projection_dim=512, projection_bias=True, max_seq_length=128, text_route_bytes=1_112_000_000,
            image_route_bytes=351_000_000, teacher_fp32_bytes=605_000_000)
DE = {"t2i_R@1": 0.41, "t2i_R@5": 0.7, "t2i_R@10": 0.8, "t2i_MRR@10": 0.53, "i2t_R@1": 0.38, "i2t_R@5": 0.6}
JA = {"t2i_R@1": 0.2, "t2i_R@10": 0.5, "i2t_R@1": 0.15}


def test_all_documented_layouts_are_read():
    per_language = {"de": DE, "ja": JA, "mean": {"t2i_R@1": 0.305}, "all": {"t2i_R@1": 0.3}}
    layouts = [
        {"retrieval": per_language, "purity": {"de": 0.9}},
        per_language,
        {"student": {"retrieval": per_language, "purity": {"de": 0.9}}, "teacher": {"retrieval": {"en": DE}}},
        {"student": per_language},
    ]
    for data in layouts:
        (res,) = load_eval_results(data)
        assert res.languages == ["de", "ja"]
        assert res.student["de"] == DE and set(res.summary) == {"mean", "all"}
    assert load_eval_results(layouts[2])[0].teacher == {"en": DE}

    nested = load_eval_results({"retrieval": {"xm3600": {"de": DE}, "multi30k": {"fr": JA, "de": DE}}})
    assert [(r.dataset_type, r.languages) for r in nested] == [("xm3600", ["de"]), ("multi30k", ["de", "fr"])]

    named = load_eval_results({"dataset": {"type": "xm3600", "name": "XM3600", "split": "test"},
                               "retrieval": {"de": {**DE, "note": "beam 5"}}})[0]
    assert (named.dataset_type, named.dataset_name, named.dataset_split) == ("xm3600", "XM3600", "test")
    assert "note" not in named.student["de"]  # non-numeric values are skipped


def test_bad_evaluation_json_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no per-language retrieval"):
        load_eval_results({"purity": 0.5})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_eval_results(str(tmp_path / "bad.json"))
    with pytest.raises(OSError):
        load_eval_results(str(tmp_path / "missing.json"))


def test_card_parses_back_with_its_model_index(tmp_path):
    evaluation = {"dataset": "xm3600", "student": {"retrieval": {"de": DE, "ja": JA, "mean": {"t2i_R@1": 0.3}}},
                  "teacher": {"retrieval": {"en": {"t2i_R@1": 0.55}}}}
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    card = render_model_card(INFO, repo_id="org/mvld-xlmr-clip", eval_results=str(tmp_path / "eval.json"),
                             languages="de,fr,zh", training_data=["M-CLIP/ImageCaptions-7M-Translations"],
                             hyperparameters={"learning_rate": 2e-4, "per_device_train_batch_size": 256},
                             license="apache-2.0")
    card.save(tmp_path / "README.md")

    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.model_name == "mvld-xlmr-clip"
    assert loaded.data.language == ["de", "fr", "zh"]
    assert loaded.data.library_name == "sentence-transformers"
    assert loaded.data.base_model == ["FacebookAI/xlm-roberta-base", "openai/clip-vit-base-patch32"]
    assert loaded.data.datasets == ["M-CLIP/ImageCaptions-7M-Translations"]
    results = {(r.task_type, r.dataset_config, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert len(results) == len(DE) + len(JA)  # languages only: summary rows and teacher stay out
    assert results[("text-to-image-retrieval", "de", "recall@1")] == 0.41
    assert results[("text-to-image-retrieval", "de", "mrr@10")] == 0.53
    assert results[("image-to-text-retrieval", "ja", "recall@1")] == 0.15
    assert {r.dataset_type for r in loaded.data.eval_results} == {"xm3600"}

    meta = metadata_load(tmp_path / "README.md")
    assert meta["model-index"][0]["name"] == "mvld-xlmr-clip"
    assert meta["model-index"][0]["results"][0]["dataset"]["config"] == "de"

    text = loaded.text
    assert INFO["teacher_name_or_path"] in text and INFO["teacher_revision"] in text
    assert 'SentenceTransformer("org/mvld-xlmr-clip")' in text and "Image.open" in text
    assert "distributional replication (DR) x 1" in text and "feature distillation (FD) x 0.5" in text
    assert "M-CLIP/ImageCaptions-7M-Translations" in text and "`learning_rate` | 0.0002" in text
    assert "Evaluated but not in the training data: ja" in text  # limitations
    assert "| de | 41.0 | 70.0 | 80.0 | 53.0 | 38.0 | 60.0 |" in text
    assert "Teacher (reference" in text and "| en | 55.0 |" in text
    assert CITATION in text and "2510.26271" in text
    assert "334.7 MiB" in text and "577.0 MiB" in text  # image route vs full teacher


def test_text_only_card_points_to_the_teacher_for_images(tmp_path):
    info = {**INFO, "include_images": False, "image_route": None, "image_route_bytes": 0,
            "teacher_fp32_bytes": None}
    card = render_model_card(info, repo_id="org/text-only")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.eval_results is None and "model-index" not in metadata_load(tmp_path / "README.md")
    name, revision = INFO["teacher_name_or_path"], INFO["teacher_revision"]
    assert f'SentenceTransformer("{name}", revision="{revision}")' in loaded.text
    assert "text-only export" in loaded.text and "Image.open" not in loaded.text
    assert "No evaluation results" in loaded.text and "training languages were not recorded" in loaded.text


def test_offline_world_card_uses_the_worlds_own_scenes_and_a_run_derived_name(tmp_path):
    info = {**INFO, "backbone_name_or_path": None, "backbone_model_type": "xlm-roberta",
            "teacher_name_or_path": "/root/.cache/mvld_hf/teacher", "distillation_method": "dr+fd"}
    run = {"offline_world": True, "languages": ["en", "de", "ja"], "student": {"pretrained": False},
           "teacher": {"description": "the offline world's English CLIP"}}
    card = render_model_card(info, run=run)
    text = card.text
    assert "photo1.jpg" not in text and "un chat sur un canapé" not in text
    assert "a big red circle" in text and "ein großes blaues Quadrat" in text and "大きな赤い円があります" in text
    assert 'scene("circle", (215, 35, 35))' in text and "ImageDraw" in text
    assert text.splitlines()[0] != "# mvld_hf-student" and "# mvld-offline-world-xlm-roberta-dr-fd" in text
    snippet = text.split("```python")[1].split("```")[0]  # the world-made part runs as written
    namespace = {}
    exec(snippet.split("model = SentenceTransformer")[0] + snippet[snippet.index("def scene"):].split(
        "image_embeddings")[0], namespace)
    assert [im.size for im in namespace["images"]] == [(64, 64), (64, 64)]
    assert namespace["images"][0].getpixel((32, 32)) == (215, 35, 35)


def test_default_name_says_what_was_distilled_into_what():
    from mvld_hf.model_card import default_model_name

    assert default_model_name(INFO) == "xlm-roberta-base-dr-fd-clip-vit-base-patch32"
    card = render_model_card(INFO, eval_results={"de": DE})
    assert card.data.model_name == "xlm-roberta-base-dr-fd-clip-vit-base-patch32"
    assert render_model_card(INFO, model_name="mine", eval_results={"de": DE}).data.model_name == "mine"


def test_formats_table_states_the_measured_figures():
    from mvld_hf.model_card import formats_markdown

    entry = dict(bytes=3 * 2**20, cosine_min=0.99991, top1_agreement=1.0, r1=0.75, batch1_ms_p50=4.2,
                 batch1_ms_p95=6.0, batch64_texts_per_s=812.0)
    report = {"formats": {"pytorch": {**entry, "cosine_min": 1.0}, "int8": {
        **entry, "bytes": 2**20, "r1": 0.7, "r1_drop": 0.05, "within_bound": False}},
        "threads": 1, "int8_max_drop": 0.01, "check_set": "CHECK"}
    table = formats_markdown(report)
    assert "| ONNX int8, dynamic quantization (`onnx/text_model_int8.onnx`) | 1.0 MiB | 0.99991 | 100.0% | " \
           "70.0 (-5.0) **over the bound** | 4.2 / 6.0 ms | 812 texts/s |" in table
    assert "1 CPU thread(s)" in table and "CHECK" in table and "1.0 point(s)" in table
    assert formats_markdown(None) == "" and "## Formats" not in render_model_card(INFO).text
