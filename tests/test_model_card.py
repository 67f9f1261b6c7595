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
