"""Layer keeping: a smaller student from a pretrained backbone (``from_backbone(..., keep_layers=...)``)."""

import json
import os

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from mvld_hf import MultilingualTextTower
from mvld_hf.export import export_sentence_transformer
from mvld_hf.layer_keeping import find_layer_list, layer_indices
from mvld_hf.testing import tiny_backbone_config

TEXTS = ["a small red circle", "ein großes blaues Quadrat", "un cercle vert", "x"]
LAYER_LISTS = {"xlm-roberta": "encoder.layer", "bert": "encoder.layer", "distilbert": "transformer.layer"}


def test_layer_indices():
    assert layer_indices(6, 12) == [0, 2, 4, 7, 9, 11]
    assert layer_indices(3, 12) == [0, 6, 11]
    assert layer_indices(2, 12) == [0, 11]
    assert layer_indices(12, 12) == list(range(12))
    assert layer_indices(1, 12) == [0]
    assert layer_indices([1, 5, -1], 12) == [1, 5, 11]
    assert layer_indices((0, 3), 4) == [0, 3]
    for bad, match in ((0, "between 1 and 12"), (13, "between 1 and 12"), ([12], "does not exist"),
                       ([-13], "does not exist"), ([3, 1], "increasing"), ([2, 2], "increasing"),
                       ([0, -12], "increasing")):
        with pytest.raises(ValueError, match=match):
            layer_indices(bad, 12)
    for bad in (True, [], [1.0], "6", [True]):
        with pytest.raises(TypeError, match="keep_layers"):
            layer_indices(bad, 12)


def _backbone(tokenizer, model_type, layers, seed=0):
    torch.manual_seed(seed)
    return AutoModel.from_config(tiny_backbone_config(len(tokenizer), layers=layers, model_type=model_type))


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert", "distilbert"])
def test_kept_layers_are_the_pretrained_ones(tokenizer, tmp_path, model_type):
    backbone = _backbone(tokenizer, model_type, layers=5)
    backbone.save_pretrained(tmp_path)
    assert find_layer_list(backbone)[0] == LAYER_LISTS[model_type]
    student = MultilingualTextTower.from_backbone(str(tmp_path), projection_dim=12, keep_layers=[0, 2, 4])
    assert student.config.kept_layers == [0, 2, 4] and student.config.source_num_layers == 5
    assert student.config.backbone_config.num_hidden_layers == 3  # DistilBERT: n_layers through attribute_map
    assert len(find_layer_list(student.backbone)[1]) == 3
    reference, prefix = backbone.state_dict(), LAYER_LISTS[model_type]
    for name, value in student.backbone.state_dict().items():
        if name.startswith(prefix + "."):
            new, rest = name[len(prefix) + 1:].split(".", 1)
            name = f"{prefix}.{[0, 2, 4][int(new)]}.{rest}"
        assert torch.equal(value, reference[name]), name
    n_params = sum(p.numel() for p in student.backbone.parameters())
    assert n_params < sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("pooler."))
    # keep_layers=N keeps N evenly spaced layers, first and last
    assert MultilingualTextTower.from_backbone(str(tmp_path), projection_dim=12, keep_layers=2).config.kept_layers \
        == [0, 4]
    full = MultilingualTextTower.from_backbone(str(tmp_path), projection_dim=12)
    assert full.config.kept_layers is None and full.config.backbone_config.num_hidden_layers == 5


def test_keep_layers_errors_name_the_layer_count(tokenizer, tmp_path):
    _backbone(tokenizer, "bert", layers=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="3 layers"):
        MultilingualTextTower.from_backbone(str(tmp_path), projection_dim=8, keep_layers=4)
    with pytest.raises(ValueError, match="does not exist"):
        MultilingualTextTower.from_backbone(str(tmp_path), projection_dim=8, keep_layers=[0, 3])


@pytest.mark.parametrize("model_type", ["xlm-roberta", "distilbert"])
def test_kept_layer_student_saves_exports_and_reloads_with_equal_embeddings(tokenizer, tmp_path, model_type):
    _backbone(tokenizer, model_type, layers=4, seed=1).save_pretrained(tmp_path / "backbone")
    student = MultilingualTextTower.from_backbone(str(tmp_path / "backbone"), projection_dim=16, keep_layers=2,
                                                  teacher_name_or_path="org/teacher").eval()
    want = student.encode(TEXTS, tokenizer)
    student.save_pretrained(tmp_path / "student")
    again = AutoModel.from_pretrained(tmp_path / "student").eval()
    assert again.config.kept_layers == [0, 3] and again.config.source_num_layers == 4
    assert torch.equal(again.encode(TEXTS, tokenizer), want)

    result = export_sentence_transformer(again, tokenizer, None, tmp_path / "st", include_images=False)
    assert result.kept_layers == [0, 3] and result.source_num_layers == 4
    backbone_config = json.load(open(tmp_path / "st" / "config.json"))
    assert backbone_config.get("num_hidden_layers", backbone_config.get("n_layers")) == 2
    assert json.load(open(tmp_path / "st" / "config_sentence_transformers.json"))["mvld_hf"]["kept_layers"] == [0, 3]
    card = open(tmp_path / "st" / "README.md", encoding="utf-8").read()
    assert "2 of its 4 layers kept: 0, 3" in card
    assert not any(f.endswith(".py") for f in os.listdir(tmp_path / "st"))  # no remote code to trust
    loaded = SentenceTransformer(str(tmp_path / "st"), local_files_only=True)  # no trust_remote_code
    got = loaded.encode(TEXTS, convert_to_tensor=True).cpu()
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
