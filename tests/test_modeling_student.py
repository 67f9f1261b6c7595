import pytest
import torch
from transformers import AutoConfig, AutoModel

from mvld_hf import MultilingualTextTower, MultilingualTextTowerConfig
from mvld_hf.testing import tiny_backbone_config, tiny_student


def _batch(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


def test_save_and_reload_gives_identical_embeddings(tokenizer, tmp_path):
    student = tiny_student(tokenizer, projection_dim=16).eval()
    batch = _batch(tokenizer, ["a small red circle", "ein großes blaues Quadrat"])
    before = student.get_text_features(**batch)
    student.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)  # through the registered Auto class
    assert isinstance(reloaded, MultilingualTextTower)
    assert torch.equal(reloaded.get_text_features(**batch), before)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "mvld_text_tower"


def test_mean_pooling_ignores_padding(tokenizer):
    student = tiny_student(tokenizer, projection_dim=8).eval()
    alone = student.get_text_features(**_batch(tokenizer, ["a red star"]))
    padded = student.get_text_features(**_batch(tokenizer, ["a red star", "un très grand cercle bleu et vert"]))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_cls_pooling_uses_first_token(tokenizer):
    torch.manual_seed(0)
    config = MultilingualTextTowerConfig(backbone_config=tiny_backbone_config(len(tokenizer)).to_dict(),
                                         projection_dim=8, pooling="cls")
    student = MultilingualTextTower(config).eval()
    batch = _batch(tokenizer, ["a red star"])
    out = student(**batch)
    assert torch.allclose(out.pooled_output, out.last_hidden_state[:, 0])
    assert torch.allclose(out.text_embeds, student.projection(out.last_hidden_state[:, 0]))


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert", "distilbert"])
def test_from_backbone_copies_pretrained_weights(tokenizer, tmp_path, model_type):
    backbone = AutoModel.from_config(tiny_backbone_config(len(tokenizer), model_type=model_type))
    backbone.save_pretrained(tmp_path)
    student = MultilingualTextTower.from_backbone(str(tmp_path), projection_dim=12, teacher_name_or_path="t/x")
    assert student.config.projection_dim == 12 and student.config.teacher_name_or_path == "t/x"
    # recorded: projection_init="auto" warm-starts only pretrained backbones; a config-built one has none
    assert student.config.backbone_name_or_path == str(tmp_path)
    assert MultilingualTextTower(student.config.__class__(backbone_config=student.config.backbone_config,
                                                          projection_dim=12)).config.backbone_name_or_path is None
    reference = backbone.state_dict()
    for name, value in student.backbone.state_dict().items():
        assert torch.equal(value, reference[name]), name
    assert getattr(student.backbone, "pooler", None) is None  # unused poolers would break DDP
    assert student.get_text_features(**_batch(tokenizer, ["a red star"])).shape == (1, 12)


def test_config_validation():
    with pytest.raises(ValueError, match="pooling"):
        MultilingualTextTowerConfig(pooling="max")
    with pytest.raises(ValueError, match="projection_dim"):
        MultilingualTextTowerConfig(projection_dim=0)


def test_every_parameter_gets_a_gradient(tokenizer):
    student = tiny_student(tokenizer, projection_dim=8)
    student.get_text_features(**_batch(tokenizer, ["a red star", "un cercle"])).sum().backward()
    missing = [n for n, p in student.named_parameters() if p.grad is None]
    assert missing == []


def test_gradient_checkpointing_runs(tokenizer):
    student = tiny_student(tokenizer, projection_dim=8)
    student.activation_checkpointing_enable()
    student.train()
    student.get_text_features(**_batch(tokenizer, ["a red star"])).sum().backward()
    assert student.projection.weight.grad is not None


@pytest.mark.parametrize("bias", [True, False])
def test_fit_projection_recovers_a_linear_map(tokenizer, bias):
    config = MultilingualTextTowerConfig(backbone_config=tiny_backbone_config(len(tokenizer)).to_dict(),
                                         projection_dim=4, projection_bias=bias)
    student = MultilingualTextTower(config)
    g = torch.Generator().manual_seed(0)
    pooled = torch.randn(200, 32, generator=g) + 5.0  # large common component, as a pretrained backbone's
    weight, offset = torch.randn(32, 4, generator=g), torch.randn(4, generator=g) if bias else torch.zeros(4)
    targets = pooled @ weight + offset
    fit = student.fit_projection(pooled, targets, ridge=0.0)
    assert fit["r2"] > 0.9999 and fit["cosine"] > 0.9999
    assert torch.allclose(student.projection(pooled), targets, atol=1e-3)


def test_fit_projection_ridge_shrinks_and_checks_shapes(tokenizer):
    student = tiny_student(tokenizer, projection_dim=4)
    pooled, targets = torch.randn(50, 32), torch.randn(50, 4)
    student.fit_projection(pooled, targets, ridge=0.0)
    free = student.projection.weight.norm().item()
    student.fit_projection(pooled, targets, ridge=10.0)
    assert student.projection.weight.norm().item() < free
    with pytest.raises(ValueError, match="32 -> 4"):
        student.fit_projection(torch.randn(5, 8), torch.randn(5, 4))
    with pytest.raises(ValueError, match="same n"):
        student.fit_projection(torch.randn(5, 32), torch.randn(6, 4))
    with pytest.raises(ValueError, match="ridge"):
        student.fit_projection(pooled, targets, ridge=-1.0)


def test_center_outputs_is_a_shared_bias_shift(tokenizer):
    student = tiny_student(tokenizer, projection_dim=8, seed=2).eval()
    train = _batch(tokenizer, ["a red star", "un cercle bleu", "ein grünes Quadrat", "a small circle"])
    other = _batch(tokenizer, ["une étoile rouge", "a big blue square"])
    with torch.no_grad():
        pooled = student(**train).pooled_output
        before = student.get_text_features(**other)
    anchor_mean = torch.randn(8)
    shift = student.center_outputs(pooled, anchor_mean, share=0.5)
    with torch.no_grad():
        assert torch.allclose(student.projection(pooled).mean(0), 0.5 * anchor_mean, atol=1e-5)
        assert torch.allclose(student.get_text_features(**other), before + shift, atol=1e-5)  # every row alike
    student.center_outputs(pooled)
    with torch.no_grad():
        assert student.projection(pooled).mean(0).abs().max() < 1e-5
    student.projection.bias = None
    with pytest.raises(ValueError, match="no"):
        student.center_outputs(pooled)
    with pytest.raises(ValueError, match="pooled outputs"):
        tiny_student(tokenizer, projection_dim=8).center_outputs(torch.zeros(3, 5))
