"""LoRA students (peft): default targets per backbone, adapters + projection train and nothing else, merged
saves load as plain students, LoRA checkpoints resume, gradient checkpointing and bf16 flags pass through."""

import os
from functools import partial

import pytest
import torch
from transformers import MPNetConfig, TrainerCallback

from mvld_hf import (
    DistillationTrainer,
    MultilingualTextTower,
    MultilingualTextTowerConfig,
    precompute_teacher_embeddings,
)
from mvld_hf.checkpointing import CheckpointMismatchError
from mvld_hf.lora import apply_lora, is_peft_model, merge_lora
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

TEXTS = ["a small red circle", "un grand carré bleu", "ein kleines gelbes Dreieck"]


_args = partial(training_args, method="mcl", per_device_train_batch_size=16, queue_size=64, learning_rate=1e-2,
                max_steps=4, logging_steps=1, lora_r=4, lora_alpha=8)


@pytest.fixture(scope="module")
def data(toy_dataset, teacher):
    return precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)


def _targets(model):
    return sorted({name.split(".lora_A.")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters()
                   if ".lora_A." in name})


pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")  # raised inside peft


@pytest.mark.parametrize("model_type,expected", [("xlm-roberta", ["query", "value"]), ("bert", ["query", "value"]),
                                                 ("distilbert", ["q_lin", "v_lin"])])
def test_default_targets_per_backbone(tokenizer, tmp_path, model_type, expected):
    model = apply_lora(tiny_student(tokenizer, 16, model_type=model_type), _args(tmp_path))
    assert is_peft_model(model) and _targets(model) == expected
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or "projection.modules_to_save" in name for name in trainable)
    assert any("projection.modules_to_save" in name for name in trainable)


def test_other_backbones_must_name_targets(tmp_path):
    backbone = MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32)
    student = MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=backbone.to_dict(), projection_dim=8))
    with pytest.raises(ValueError, match=r"no default LoRA target modules for backbone model_type 'mpnet'.*'q'"):
        apply_lora(student, _args(tmp_path))
    with pytest.raises(ValueError, match=r"\['query'\] name no module"):
        apply_lora(student, _args(tmp_path, lora_target_modules=["query"]))
    assert _targets(apply_lora(student, _args(tmp_path, lora_target_modules=["q", "v"]))) == ["q", "v"]


def test_lora_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="lora_r must be a non-negative"):
        _args(tmp_path, lora_r=-1)
    with pytest.raises(ValueError, match="lora_dropout"):
        _args(tmp_path, lora_dropout=1.5)
    assert _args(tmp_path, lora_target_modules="query, value").lora_target_modules == ["query", "value"]


def test_lora_trains_adapters_and_projection_only_and_saves_merged(tokenizer, data, tmp_path):
    student = tiny_student(tokenizer, 16, seed=2)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = DistillationTrainer(model=student, args=_args(tmp_path), train_dataset=data,
                                  processing_class=tokenizer)
    assert is_peft_model(trainer.model)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0]
    expected = merge_lora(trainer.model, copy_model=True).encode(TEXTS, tokenizer)
    assert is_peft_model(trainer.model)  # the copy was merged, not the model in training

    trainer.save_model(str(tmp_path / "merged"))
    assert not os.path.exists(tmp_path / "merged" / "adapter_config.json")
    reloaded = MultilingualTextTower.from_pretrained(str(tmp_path / "merged"))
    assert type(reloaded) is MultilingualTextTower
    assert torch.allclose(reloaded.encode(TEXTS, tokenizer), expected, atol=1e-5)
    after = reloaded.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"projection.weight", "projection.bias"} <= changed  # the projection is fully trained
    assert all(k.startswith("projection.") or k.endswith(("query.weight", "value.weight")) for k in changed), changed
    assert not torch.equal(before["backbone.encoder.layer.0.attention.self.query.weight"],
                           after["backbone.encoder.layer.0.attention.self.query.weight"])  # adapters merged in

    trainer.args.lora_merge_on_save = False
    trainer.save_model(str(tmp_path / "adapter"))
    assert os.path.isfile(tmp_path / "adapter" / "adapter_config.json")
    merged = merge_lora(trainer.model)
    assert type(merged) is MultilingualTextTower and all(p.requires_grad for p in merged.parameters())
    assert torch.allclose(merged.encode(TEXTS, tokenizer), expected, atol=1e-5)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_lora_checkpoint_resumes_exactly(tokenizer, data, tmp_path):
    common = dict(method="dr+mcl", per_device_train_batch_size=8, queue_size=16, save_strategy="steps",
                  save_steps=2)
    full = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=4), train_dataset=data,
                               processing_class=tokenizer, args=_args(tmp_path / "full", **common))
    full.train()
    first = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=4), train_dataset=data,
                                processing_class=tokenizer, args=_args(tmp_path / "cut", **common),
                                callbacks=[StopAt(2)])
    first.train()
    checkpoint = tmp_path / "cut" / "out" / "checkpoint-2"
    assert os.path.isfile(checkpoint / "adapter_model.safetensors")  # checkpoints hold the adapter
    other_base = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=99), train_dataset=data,
                                     processing_class=tokenizer, args=_args(tmp_path / "cut", **common))
    with pytest.raises(CheckpointMismatchError, match="frozen base weights"):  # the adapter needs its own base
        other_base.train(resume_from_checkpoint=True)
    resumed = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=4), train_dataset=data,
                                  processing_class=tokenizer, args=_args(tmp_path / "cut", **common))
    with torch.no_grad():  # the trained adapter and projection come from the checkpoint, not from the model given
        for _name, p in resumed.model.named_parameters():
            if p.requires_grad:
                p.add_(1.0)
    resumed.train(resume_from_checkpoint=True)
    want = [e["loss"] for e in full.state.log_history if "loss" in e]
    got = [e["loss"] for e in resumed.state.log_history if "loss" in e]
    assert got == pytest.approx(want, rel=1e-6)
    assert torch.allclose(merge_lora(resumed.model, copy_model=True).encode(TEXTS, tokenizer),
                          merge_lora(full.model, copy_model=True).encode(TEXTS, tokenizer), atol=1e-6)


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated")
@pytest.mark.parametrize("lora_r,flag", [(0, "gradient_checkpointing"), (4, "gradient_checkpointing"),
                                         (4, "activation_checkpointing")])
def test_gradient_checkpointing_trains(tokenizer, data, tmp_path, lora_r, flag):
    student = tiny_student(tokenizer, 16, seed=3)
    trainer = DistillationTrainer(model=student, train_dataset=data, processing_class=tokenizer,
                                  args=_args(tmp_path, lora_r=lora_r, max_steps=3, **{flag: True}))
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad and "encoder.layer.0." in n]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n in names}
    trainer.train()
    assert student.is_activation_checkpointing and student.backbone.encoder.layer[0].gradient_checkpointing
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and losses[-1] < losses[0]
    after = dict(trainer.model.named_parameters())
    assert names and all(not torch.equal(before[n], after[n]) for n in names if "lora_A" not in n)


def test_bf16_flag_trains(tokenizer, data, tmp_path):
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), train_dataset=data, processing_class=tokenizer,
                                  args=_args(tmp_path, bf16=True, max_steps=2, method="dr+fd", queue_size=32))
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 2 and all(map(torch.isfinite, torch.tensor(losses)))
    assert trainer.queue.keys().dtype == torch.float32  # anchors are kept in float32 whatever the autocast
