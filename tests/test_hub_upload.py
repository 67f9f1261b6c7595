"""hub_upload.py / mvld_hf.hub: the folder, the card, the upload calls and one-line errors (all in-process)."""

import filecmp
import json
import os

import pytest
import torch
from huggingface_hub import ModelCard, metadata_load
from sentence_transformers import SentenceTransformer

from mvld_hf import hub
from mvld_hf.testing import tiny_student

EVAL = {"student": {"retrieval": {"de": {"t2i_R@1": 0.5, "t2i_R@5": 0.75, "i2t_R@1": 0.25},
                                  "fr": {"t2i_R@1": 0.25, "i2t_R@1": 0.5}}}}


@pytest.fixture(scope="module")
def teacher_dir(teacher, tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "tiny-clip"
    teacher.model.save_pretrained(path)
    teacher.tokenizer.save_pretrained(path)
    teacher.image_processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def student(tokenizer, teacher_dir):
    model = tiny_student(tokenizer, projection_dim=16, seed=7)
    model.config.teacher_name_or_path = teacher_dir
    return model


@pytest.fixture(scope="module")
def checkpoint(student, tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "student"
    student.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def eval_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "eval.json"
    path.write_text(json.dumps(EVAL))
    return str(path)


@pytest.fixture(scope="module")
def cli_folder(checkpoint, eval_json, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli") / "model")
    assert hub.main([checkpoint, "--repo-id", "org/tiny", "--local-dir", out, "--eval-results", eval_json,
                     "--languages", "de,fr,en"]) == 0
    return out


def _fails(capsys, argv) -> str:
    """Run the CLI expecting a failure: exit 1 and exactly one stderr line, no traceback."""
    capsys.readouterr()  # drop what the set-up printed (progress bars)
    assert hub.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hub_upload.py: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_local_dir_writes_a_loadable_folder_with_its_card(cli_folder, student, tokenizer, teacher, toy_rows):
    card = ModelCard.load(os.path.join(cli_folder, "README.md"))
    assert {(r.dataset_config, r.task_type, r.metric_type) for r in card.data.eval_results} >= {
        ("de", "text-to-image-retrieval", "recall@1"), ("fr", "image-to-text-retrieval", "recall@1")}
    assert len(metadata_load(os.path.join(cli_folder, "README.md"))["model-index"][0]["results"]) == 4
    assert card.data.language == ["de", "fr", "en"]
    assert 'SentenceTransformer("org/tiny")' in card.text

    model = SentenceTransformer(cli_folder, local_files_only=True)
    texts, images = [r["caption"] for r in toy_rows[:6]], [r["image"] for r in toy_rows[:3]]
    assert torch.allclose(model.encode(texts, convert_to_tensor=True), student.encode(texts, tokenizer), atol=1e-5)
    assert torch.allclose(model.encode(images, convert_to_tensor=True), teacher.encode_image(images), atol=1e-5)


def test_trainer_helper_builds_the_same_folder(cli_folder, student, tokenizer, teacher_dir, toy_dataset, eval_json,
                                               tmp_path):
    from mvld_hf import DistillationArguments, DistillationTrainer, load_teacher

    args = DistillationArguments(output_dir=str(tmp_path / "run"), method="dr", per_device_train_batch_size=8,
                                 queue_size=64, learning_rate=2e-4, report_to=[], use_cpu=True, save_strategy="no")
    trainer = DistillationTrainer(model=student, args=args, train_dataset=toy_dataset, processing_class=tokenizer,
                                  teacher=load_teacher(teacher_dir))
    out = tmp_path / "from_trainer"
    result = hub.build_hub_folder(trainer, out, repo_id="org/tiny", eval_results=eval_json)

    left = sorted(os.path.relpath(os.path.join(d, f), cli_folder) for d, _, fs in os.walk(cli_folder) for f in fs)
    right = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert left == right
    different = [f for f in left if f != "README.md" and not filecmp.cmp(os.path.join(cli_folder, f), out / f,
                                                                          shallow=False)]
    assert different == []
    card = ModelCard.load(out / "README.md")
    assert "`learning_rate` | 0.0002" in card.text and "`queue_size` | 64" in card.text
    assert "Method: `dr`: distributional replication (DR)" in card.text
    assert card.data.language == ["de", "en", "fr"]  # read from the training set's language column
    assert result.image_route == "vision_tower"


class _FakeApi:
    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(os.listdir(kwargs["folder_path"]))
        self.calls.append(("upload_folder", kwargs, files))
        return type("Commit", (), {"commit_url": "https://huggingface.co/org/tiny/commit/abc"})()


def test_upload_creates_the_repo_and_uploads_the_folder(checkpoint, monkeypatch, capsys):
    _FakeApi.calls = []
    monkeypatch.setattr(hub, "HfApi", _FakeApi)
    monkeypatch.setattr(hub, "get_token", lambda: "hf_test_token")
    assert hub.main([checkpoint, "--repo-id", "org/tiny", "--private", "--revision", "dev", "--text-only"]) == 0
    names = [c[0] for c in _FakeApi.calls]
    assert names == ["init", "create_repo", "create_branch", "upload_folder"]
    assert _FakeApi.calls[0][1] == "hf_test_token"
    assert _FakeApi.calls[1][2]["exist_ok"] is True and _FakeApi.calls[1][2]["private"] is True
    assert _FakeApi.calls[2][2]["branch"] == "dev"
    kwargs, files = _FakeApi.calls[3][1], _FakeApi.calls[3][2]
    assert kwargs["repo_id"] == "org/tiny" and kwargs["revision"] == "dev"
    assert {"modules.json", "README.md", "config_sentence_transformers.json"} <= set(files)
    assert "router_config.json" not in files  # --text-only
    assert "uploaded to https://huggingface.co/org/tiny" in capsys.readouterr().out


def test_missing_token_fails_before_exporting(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "build_hub_folder", lambda *a, **k: pytest.fail("exported without a token"))
    assert "no Hugging Face token" in _fails(capsys, [checkpoint, "--repo-id", "org/tiny"])


@pytest.mark.parametrize("case", ["plain_bert", "no_config", "missing_dir"])
def test_not_a_student_checkpoint(case, tmp_path, capsys):
    path = tmp_path / case
    if case == "plain_bert":
        from transformers import BertConfig, BertModel

        BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=8)).save_pretrained(path)
    elif case == "no_config":
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"")
    err = _fails(capsys, [str(path), "--repo-id", "org/tiny", "--local-dir", str(tmp_path / "out")])
    assert ("not found" in err) if case == "missing_dir" else ("not an mvld_hf student" in err)


def test_teacher_that_cannot_be_found(student, tokenizer, checkpoint, tmp_path, capsys):
    lost = tiny_student(tokenizer, projection_dim=16)
    lost.config.teacher_name_or_path = str(tmp_path / "gone" / "teacher")
    lost.save_pretrained(tmp_path / "lost")
    tokenizer.save_pretrained(tmp_path / "lost")
    assert "teacher" in _fails(capsys, [str(tmp_path / "lost"), "--repo-id", "org/x", "--local-dir",
                                        str(tmp_path / "a")])
    assert "no-such-org/no-such-teacher" in _fails(capsys, [checkpoint, "--repo-id", "org/x", "--local-dir",
                                                            str(tmp_path / "b"), "--teacher",
                                                            "no-such-org/no-such-teacher"])


def test_bad_arguments_fail_in_one_line(checkpoint, tmp_path, capsys):
    assert "ORG/NAME" in _fails(capsys, [checkpoint, "--repo-id", "not-a-repo-id", "--local-dir", str(tmp_path / "a")])
    (tmp_path / "eval.json").write_text("{}")
    assert "no per-language retrieval" in _fails(capsys, [checkpoint, "--repo-id", "org/x", "--local-dir",
                                                          str(tmp_path / "b"), "--eval-results",
                                                          str(tmp_path / "eval.json")])


def test_local_dir_alone_needs_no_repo_id_but_uploading_does(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub, "HfApi", lambda *a, **k: pytest.fail("--local-dir alone must not reach the Hub"))
    assert hub.main([checkpoint, "--local-dir", str(tmp_path / "a"), "--text-only"]) == 0
    assert "not uploaded" in capsys.readouterr().out
    assert (tmp_path / "a" / "README.md").is_file() and (tmp_path / "a" / "modules.json").is_file()
    assert "--repo-id" in _fails(capsys, [checkpoint, "--local-dir", str(tmp_path / "b"), "--push"])
    assert "--repo-id" in _fails(capsys, [checkpoint])
    assert not (tmp_path / "b").exists()


def test_formats_flag_ships_onnx_and_int8_and_the_text_only_model(checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out, text = tmp_path / "model", tmp_path / "text"
    assert hub.main([checkpoint, "--local-dir", str(out), "--formats", "onnx,int8", "--text-only-dir",
                     str(text)]) == 0
    printed = capsys.readouterr().out
    assert "int8:" in printed and "min cosine to PyTorch" in printed and "texts/s" in printed
    assert sorted(os.listdir(out / "onnx")) == ["image_model.onnx", "mvld_onnx.json", "text_model.onnx",
                                               "text_model_int8.onnx"]
    assert sorted(os.listdir(text / "onnx")) == ["mvld_onnx.json", "text_model.onnx", "text_model_int8.onnx"]
    assert SentenceTransformer(str(text), local_files_only=True).modalities == ["text"]
    assert sorted(SentenceTransformer(str(out), local_files_only=True).modalities) == ["image", "text"]
    for folder in (out, text):
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert "## Formats" in card and "ONNX int8" in card
    assert "unknown export format" in _fails(capsys, [checkpoint, "--local-dir", str(tmp_path / "x"),
                                                      "--formats", "onnx,tflite"])
    assert not (tmp_path / "x").exists()


def test_the_card_picks_up_eval_results_next_to_the_checkpoint(student, tokenizer, tmp_path, capsys):
    folder = tmp_path / "run"
    student.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "eval_results.json").write_text(json.dumps({
        "dataset": {"type": "mvld_hf-offline-world", "name": "mvld_hf offline world", "split": "test"},
        "student": {"retrieval": {"de": {"t2i_R@1": 0.375}, "ja": {"t2i_R@1": 0.25}}},
        "teacher": {"retrieval": {"en": {"t2i_R@1": 0.5}}}, "meta": {"method": "dr"}}))
    assert hub.main([str(folder), "--local-dir", str(tmp_path / "out"), "--text-only"]) == 0
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "No evaluation results" not in card and "mvld_hf offline world (test)" in card
    assert "| de | 37.5 |" in card and "| en | 50.0 |" in card
