"""A method of one's own, defined outside the package (tests/plugins/cosine_kd.py: its own loss function and
MethodSpec, registered on import), trains through DistillationTrainer, through mvld-distill's Python entry and in a
two-cell study grid, and the exported model card names it with its citation; no package file is edited."""

import json
import os
import sys

import pytest
import torch
import yaml

from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.losses.registry import METHODS, METHODS_ENV, PAPER_CITATION, load_method_modules, unregister_method
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

from .conftest import ROOT, load_example

PLUGIN = os.path.join(ROOT, "tests", "plugins", "cosine_kd.py")
TINY = {"world_train_scenes": 40, "world_test_scenes": 12, "teacher_steps": 3, "offline_hidden_size": 32,
        "offline_layers": 1, "offline_heads": 2, "offline_vocab_size": 400, "max_steps": 4,
        "per_device_train_batch_size": 16, "queue_size": 32, "logging_steps": 2, "save_strategy": "no",
        "disable_tqdm": True}


@pytest.fixture
def cos_kd():
    """The plugin imported (it registers ``cos_kd``), then removed again so other tests see the built-ins only."""
    assert "cos_kd" not in METHODS
    assert load_method_modules([PLUGIN]) == [PLUGIN]
    yield sys.modules[next(n for n, m in sys.modules.items() if getattr(m, "__file__", None) == PLUGIN)]
    unregister_method("cos_kd")
    for name in [n for n, m in sys.modules.items() if getattr(m, "__file__", None) == PLUGIN]:
        del sys.modules[name]


def test_a_method_of_ones_own_trains_through_the_trainer_and_logs_its_parts(cos_kd, tokenizer, teacher,
                                                                             toy_dataset, tmp_path):
    data = precompute_teacher_embeddings(toy_dataset, teacher, anchor="text")
    args = training_args(tmp_path, method="dr+cos_kd:0.5", method_kwargs={"cos_kd": {"margin": 0.05}},
                         per_device_train_batch_size=16, queue_size=64, learning_rate=3e-3, num_train_epochs=6,
                         logging_steps=6)
    assert args.method_weights == {"dr": 1.0, "cos_kd": 0.5}
    s, a = torch.randn(4, 16), torch.randn(4, 16)  # its hyperparameter reaches the loss
    assert torch.equal(METHODS["cos_kd"].compute({"s": s, "a": a}, args)["loss"],
                       cos_kd.cosine_kd(s, a, margin=0.05)["loss"])
    student = tiny_student(tokenizer, projection_dim=16, seed=1)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"loss_dr", "loss_cos_kd", "cos_kd_cosine"} <= set(logs[0])
    assert logs[-1]["loss_cos_kd"] < logs[0]["loss_cos_kd"]
    assert logs[-1]["cos_kd_cosine"] > logs[0]["cos_kd_cosine"]
    with pytest.raises(ValueError, match=r"cos_kd.margin must be a number in \[0, 1\)"):
        training_args(tmp_path, method="cos_kd", method_kwargs={"cos_kd": {"margin": 1.5}})


def test_a_method_of_ones_own_through_mvld_distill_a_study_and_the_model_card(cos_kd, distill_script, tmp_path,
                                                                               monkeypatch, offline_cache):
    monkeypatch.setenv("MVLD_HF_CACHE", str(offline_cache))
    # mvld-distill: the module named in $MVLD_HF_METHODS is imported before --method is parsed
    monkeypatch.setenv(METHODS_ENV, PLUGIN)
    out = tmp_path / "run"
    distill_script.main(["--output_dir", str(out), "--method", "cos_kd",
                         "--method_kwargs", json.dumps({"cos_kd": {"margin": 0.1}}),
                         *(x for key, value in TINY.items() for x in (f"--{key}", str(value).lower()))])
    assert json.loads((out / "config.json").read_text())["distillation_method"] == "cos_kd"
    record = json.loads((out / "mvld_run.json").read_text())
    assert record["hyperparameters"]["method"] == "cos_kd" and record["hyperparameters"]["cos_kd.margin"] == 0.1

    # the exported card names the method and prints its citation (then the paper's: mvld_hf's recipe)
    from mvld_hf.export import export_sentence_transformer

    export_sentence_transformer(str(out), output_dir=tmp_path / "export", include_images=False)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "`cos_kd`: cosine distillation (COS_KD)" in card
    assert cos_kd.CITATION in card and PAPER_CITATION in card
    assert card.index(cos_kd.CITATION) < card.index(PAPER_CITATION)

    # a two-cell study grid: the spec's plugins (a .py path relative to the spec) reach every cell's process
    monkeypatch.delenv(METHODS_ENV)
    spec = tmp_path / "mine.yaml"
    spec.write_text(yaml.safe_dump({"name": "mine", "base": TINY, "grid": [{"method": ["cos_kd", "dr"]}],
                                    "plugins": [os.path.relpath(PLUGIN, tmp_path)]}))
    results = load_example("study").main([str(spec), "--output_dir", str(tmp_path / "study")])
    cells = {c["method"]: c for c in results["cells"]}
    assert set(cells) == {"cos_kd", "dr"} and {c["status"] for c in cells.values()} == {"done"}
    assert 0.0 <= cells["cos_kd"]["metrics"]["t2i_R@1_mean"] <= 1.0
    folder = tmp_path / "study" / "cells" / cells["cos_kd"]["name"]
    assert json.loads((folder / "config.json").read_text())["distillation_method"] == "cos_kd"
    assert "cos_kd" in (tmp_path / "study" / "study.md").read_text()
