"""export_sentence_transformer: one plain SentenceTransformer for multilingual text and images."""

import json
import os
import subprocess
import sys

import pytest
import torch
from sentence_transformers import SentenceTransformer

from mvld_hf import MultilingualTextTower
from mvld_hf.export import NotAStudentError, export_sentence_transformer, load_student, route_sizes
from mvld_hf.testing import tiny_student

ATOL = 1e-5


@pytest.fixture(scope="module")
def student(tokenizer):
    model = tiny_student(tokenizer, projection_dim=16, seed=3)
    model.config.teacher_name_or_path = "tiny-random-clip"
    model.config.teacher_revision = "0123abc"
    model.config.distillation_method = "dr+fd"
    return model


@pytest.fixture(scope="module")
def texts(toy_rows):
    return [r["caption"] for r in toy_rows[:12]] + ["ein roter Kreis links von einem blauen Quadrat"]


@pytest.fixture(scope="module")
def images(toy_rows):
    return [r["image"] for r in toy_rows[:6]]


@pytest.fixture(scope="module")
def exported(student, tokenizer, teacher, tmp_path_factory):
    return export_sentence_transformer(student, tokenizer, teacher, tmp_path_factory.mktemp("export") / "st")


@pytest.fixture(scope="module")
def loaded(exported):
    return SentenceTransformer(exported.path, local_files_only=True)


def _close(got, want):
    got = torch.as_tensor(got).float().cpu()
    assert got.shape == want.shape
    assert torch.allclose(got, want.float().cpu(), atol=ATOL, rtol=0), (got - want).abs().max()


def test_text_embeddings_equal_student(loaded, student, tokenizer, texts):
    want = student.encode(texts, tokenizer)  # get_text_features, in batches
    _close(loaded.encode(texts, convert_to_tensor=True), want)


def test_image_embeddings_equal_teacher(loaded, teacher, images):
    _close(loaded.encode(images, convert_to_tensor=True), teacher.encode_image(images))


def test_save_and_reload_keeps_both_routes(loaded, student, tokenizer, teacher, texts, images, tmp_path):
    loaded.save(str(tmp_path / "again"))
    again = SentenceTransformer(str(tmp_path / "again"), local_files_only=True)
    _close(again.encode(texts, convert_to_tensor=True), student.encode(texts, tokenizer))
    _close(again.encode(images, convert_to_tensor=True), teacher.encode_image(images))


def test_layout_is_standard_and_records_the_teacher(exported, student):
    path = exported.path
    router = json.load(open(os.path.join(path, "router_config.json")))
    assert router["structure"] == {"text": ["text_0_Transformer", "text_1_Pooling", "text_2_Dense"],
                                   "image": ["image_0_Transformer", "image_1_Dense"]}
    assert all(t.startswith("sentence_transformers.") for t in router["types"].values())
    backbone = json.load(open(os.path.join(path, "text_0_Transformer", "config.json")))
    assert backbone["model_type"] == "xlm-roberta" and backbone["architectures"] == ["XLMRobertaModel"]
    assert json.load(open(os.path.join(path, "text_1_Pooling", "config.json")))["pooling_mode"] == "mean"
    dense = json.load(open(os.path.join(path, "text_2_Dense", "config.json")))
    assert dense["activation_function"] == "torch.nn.modules.linear.Identity" and dense["bias"] is True
    vision = json.load(open(os.path.join(path, "image_0_Transformer", "config.json")))
    assert vision["model_type"] == "clip_vision_model"  # no text tower stored
    config = json.load(open(os.path.join(path, "config_sentence_transformers.json")))
    assert config["mvld_hf"]["teacher_name_or_path"] == "tiny-random-clip"
    assert config["mvld_hf"]["teacher_revision"] == "0123abc"
    assert config["similarity_fn_name"] == "cosine"
    assert exported.image_route == "vision_tower" and exported.distillation_method == "dr+fd"
    assert os.path.isfile(os.path.join(path, "README.md"))


def test_lean_image_route_is_smaller_than_the_full_teacher(exported, student, tokenizer, teacher, images, tmp_path):
    full = export_sentence_transformer(student, tokenizer, teacher, tmp_path / "full", lean_image_route=False)
    assert full.image_route == "full_teacher"
    model = SentenceTransformer(full.path, local_files_only=True)
    _close(model.encode(images, convert_to_tensor=True), teacher.encode_image(images))
    assert exported.image_route_bytes < full.image_route_bytes
    assert exported.image_route_bytes < exported.teacher_fp32_bytes
    assert route_sizes(exported.path)["image"] == exported.image_route_bytes


def test_text_only_export_with_cls_pooling_and_no_bias(tokenizer, texts, tmp_path):
    student = tiny_student(tokenizer, projection_dim=16, seed=4)
    student.config.pooling, student.config.projection_bias = "cls", False
    student.projection.bias = None
    result = export_sentence_transformer(student, tokenizer, None, tmp_path / "text", include_images=False)
    assert result.image_route is None and result.image_route_bytes == 0
    assert not os.path.exists(tmp_path / "text" / "router_config.json")
    modules = json.load(open(tmp_path / "text" / "modules.json"))
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Dense"]
    model = SentenceTransformer(str(tmp_path / "text"), local_files_only=True)
    _close(model.encode(texts, convert_to_tensor=True), student.encode(texts, tokenizer))


def test_peft_student_is_merged(tokenizer, texts, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = tiny_student(tokenizer, projection_dim=16, seed=5)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(MultilingualTextTower.from_pretrained(tmp_path / "base"),
                                LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    want = peft_model.base_model.model.encode(texts, tokenizer)  # with the LoRA layers active
    assert not torch.allclose(want, base.encode(texts, tokenizer), atol=1e-3)

    for source, out in ((str(tmp_path / "adapter"), "from_path"), (peft_model, "from_object")):
        result = export_sentence_transformer(source, tokenizer, None, tmp_path / out, include_images=False)
        model = SentenceTransformer(result.path, local_files_only=True)
        _close(model.encode(texts, convert_to_tensor=True), want)
    assert isinstance(peft_model, PeftModel)  # the caller's model is not merged in place
    assert any("lora_" in name for name, _ in peft_model.named_parameters())


def test_student_save_pretrained_loads_with_automodel(student, tokenizer, texts, tmp_path):
    from transformers import AutoModel

    import mvld_hf  # noqa: F401  (registers the auto classes)

    student.save_pretrained(tmp_path / "student")
    again = AutoModel.from_pretrained(tmp_path / "student")
    assert isinstance(again, MultilingualTextTower)
    _close(again.encode(texts, tokenizer), student.encode(texts, tokenizer))


def test_siglip_teacher_exports_its_vision_model_without_projection(tokenizer, images, tmp_path):
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    from mvld_hf import DualEncoderTeacher

    torch.manual_seed(0)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = SiglipConfig(text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=0,
                                           bos_token_id=2, eos_token_id=4, **common),
                          vision_config=dict(image_size=32, patch_size=8, **common))
    siglip = DualEncoderTeacher(SiglipModel(config), tokenizer,
                                SiglipImageProcessorPil(size={"height": 32, "width": 32}),
                                name_or_path="tiny-random-siglip")
    student = tiny_student(tokenizer, projection_dim=siglip.dim, seed=6)
    result = export_sentence_transformer(student, tokenizer, siglip, tmp_path / "siglip")
    router = json.load(open(tmp_path / "siglip" / "router_config.json"))
    assert result.image_route == "vision_tower" and router["structure"]["image"] == ["image_0_Transformer"]
    model = SentenceTransformer(result.path, local_files_only=True)
    _close(model.encode(images, convert_to_tensor=True), siglip.encode_image(images))


def test_errors_are_clear(student, tokenizer, teacher, exported, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=8)).save_pretrained(tmp_path / "bert")
    with pytest.raises(NotAStudentError, match="model_type 'bert'"):
        load_student(str(tmp_path / "bert"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAStudentError, match="config.json"):
        load_student(str(tmp_path / "empty"))
    with pytest.raises(OSError, match="not found"):
        load_student(str(tmp_path / "missing"))
    wrong_dim = tiny_student(tokenizer, projection_dim=8)
    with pytest.raises(ValueError, match="8"):
        export_sentence_transformer(wrong_dim, tokenizer, teacher, tmp_path / "dim")
    with pytest.raises(FileExistsError):
        export_sentence_transformer(student, tokenizer, teacher, exported.path)
    with pytest.raises(ValueError, match="record its teacher"):
        export_sentence_transformer(tiny_student(tokenizer, projection_dim=16), tokenizer, None, tmp_path / "t")


def test_loads_without_mvld_hf_in_a_fresh_process(exported, student, tokenizer, teacher, texts):
    """Plain sentence-transformers, no trust_remote_code, mvld_hf never imported."""
    script = (
        "import json, sys\n"
        "from PIL import Image\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"model = SentenceTransformer({exported.path!r}, local_files_only=True)\n"
        f"texts = json.loads({json.dumps(json.dumps(texts))})\n"
        "image = Image.new('RGB', (32, 32), (220, 30, 30))\n"
        "out = {'text': model.encode(texts).tolist(), 'image': model.encode([image]).tolist(),\n"
        "       'mvld_hf_imported': any(m.startswith('mvld_hf') for m in sys.modules)}\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(exported.path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mvld_hf_imported"] is False
    _close(torch.tensor(out["text"]), student.encode(texts, tokenizer))
    from PIL import Image

    _close(torch.tensor(out["image"]), teacher.encode_image([Image.new("RGB", (32, 32), (220, 30, 30))]))


def test_a_failed_export_leaves_nothing_behind_and_a_retry_works(student, tokenizer, teacher, tmp_path):
    target = tmp_path / "st"
    with pytest.raises(FileNotFoundError, match="model card template"):
        export_sentence_transformer(student, tokenizer, teacher, target,
                                    card_kwargs={"template_path": tmp_path / "missing.md"})
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no folder, no staging leftovers
    result = export_sentence_transformer(student, tokenizer, teacher, target)  # not refused as "not empty"
    assert (target / "README.md").is_file() and (target / "modules.json").is_file() and result.path == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]
    # overwriting an earlier export replaces it in one rename; a failed overwrite keeps the earlier one intact
    before = sorted(os.listdir(target))
    with pytest.raises(FileNotFoundError):
        export_sentence_transformer(student, tokenizer, teacher, target, overwrite=True,
                                    card_kwargs={"template_path": tmp_path / "missing.md"})
    assert sorted(os.listdir(target)) == before and sorted(p.name for p in tmp_path.iterdir()) == ["st"]


def test_max_text_length_is_what_the_student_can_embed(student, tokenizer, teacher, tmp_path):
    from mvld_hf.export import text_length_limit

    positions = student.config.backbone_config.max_position_embeddings  # 66 in tiny_student, xlm-roberta, pad 0
    limit = positions - student.config.backbone_config.pad_token_id - 1
    assert text_length_limit(student, None, 4096) == limit and text_length_limit(student) == limit
    assert text_length_limit(student, None, 16) == 16
    result = export_sentence_transformer(student, tokenizer, teacher, tmp_path / "st", include_images=False,
                                         max_seq_length=4096)
    want = min(limit, tokenizer.model_max_length)
    assert result.max_seq_length == want == text_length_limit(student, tokenizer, 4096)
    model = SentenceTransformer(result.path, local_files_only=True)
    assert model.max_seq_length == want
    model.encode(["rot " * 500])  # a text longer than the positions is truncated, not an index error
