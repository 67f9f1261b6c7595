"""Bad command lines of ``examples/distill.py`` end in one line (cause and fix) before any work is spent; a bare
``--debug`` shows the traceback instead."""

import json
import os

import pytest
from transformers import ViTConfig

TINY = ["--world_train_scenes", "40", "--world_test_scenes", "12", "--teacher_steps", "3",
        "--offline_hidden_size", "32", "--offline_layers", "1", "--offline_heads", "2", "--offline_vocab_size", "400",
        "--per_device_train_batch_size", "16", "--queue_size", "32", "--logging_steps", "2", "--disable_tqdm", "true"]


def _one_line_error(distill_script, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        distill_script.main(argv)
    message = str(exit_info.value.code)
    first, hint = message.split("\n")
    assert first.startswith("error: ") and hint == "(run with --debug for the traceback)", message
    return first


@pytest.fixture
def no_work(tmp_path, monkeypatch):
    """Fails the test if the run got as far as building the offline world."""
    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path / "cache"))
    yield
    assert not os.path.exists(tmp_path / "cache"), "the error came after work had started"


@pytest.mark.parametrize("flag,name", [("--per_device_train_batch_size", "per_device_train_batch_size"),
                                       ("--gradient_accumulation_steps", "gradient_accumulation_steps")])
def test_zero_batch_size_or_accumulation(distill_script, tmp_path, no_work, flag, name):
    line = _one_line_error(distill_script, ["--output_dir", str(tmp_path / "out"), flag, "0"])
    assert line == f"error: ValueError: {name} must be a positive integer, got 0: set --{name} 1 or more"


def test_missing_config_file(distill_script, tmp_path, no_work):
    line = _one_line_error(distill_script, [str(tmp_path / "nope.yaml")])
    assert line == f"error: config file {tmp_path / 'nope.yaml'} does not exist: check the path (the shipped ones " \
                   "are in configs/)"


def test_config_that_is_a_yaml_list(distill_script, tmp_path, no_work):
    config = tmp_path / "list.yaml"
    config.write_text("- method: dr\n- max_steps: 10\n")
    line = _one_line_error(distill_script, [str(config)])
    assert "holds a list, not a mapping of argument names to values: write one `name: value` line" in line


def test_output_dir_that_is_a_file(distill_script, tmp_path, no_work):
    (tmp_path / "file").write_text("x")
    line = _one_line_error(distill_script, ["--output_dir", str(tmp_path / "file")])
    assert line == f"error: --output_dir {tmp_path / 'file'} is a file: pass a folder path"


def test_read_only_output_dir(distill_script, tmp_path, no_work, monkeypatch):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access  # root may write anywhere; a read-only mount answers access(W_OK) with False
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(read_only) else
                        real_access(path, mode))
    line = _one_line_error(distill_script, ["--output_dir", str(read_only / "run")])
    assert line == f"error: --output_dir {read_only / 'run'} cannot be written ({read_only} is read-only): choose " \
                   "a writable folder"


def test_earlier_run_in_output_dir_is_refused_before_any_work(distill_script, tmp_path, no_work):
    out = tmp_path / "out"
    (out / "checkpoint-500").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"x")
    line = _one_line_error(distill_script, ["--output_dir", str(out)])
    assert "holds an earlier run (checkpoint-500, model.safetensors)" in line
    for offer in ("--resume_from_checkpoint true", "a new --output_dir", "--overwrite_output_dir true"):
        assert offer in line
    assert os.listdir(out / "checkpoint-500") == [] and (out / "model.safetensors").read_bytes() == b"x"


def test_student_folder_that_is_not_a_text_encoder(distill_script, tmp_path, no_work):
    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path / "vit")
    line = _one_line_error(distill_script, ["--teacher", "some/teacher", "--student", str(tmp_path / "vit"),
                                            "--dataset", "some/data", "--output_dir", str(tmp_path / "out")])
    assert line.startswith(f"error: --student {tmp_path / 'vit'} is a 'vit' model, not a text encoder: pass a text "
                           "encoder such as xlm-roberta-base")


def test_debug_shows_the_traceback(distill_script, tmp_path, no_work):
    with pytest.raises(ValueError, match="per_device_train_batch_size must be a positive integer"):
        distill_script.main(["--output_dir", str(tmp_path / "out"), "--per_device_train_batch_size", "0", "--debug"])


def test_resuming_with_another_student_width(distill_script, tmp_path, monkeypatch):
    """Stops after the (cached) set-up, before the teacher embeddings are precomputed and before training."""
    from mvld_hf import MultilingualTextTower, MultilingualTextTowerConfig
    from mvld_hf.checkpointing import TRAINER_STATE, write_checkpoint_manifest
    from mvld_hf.testing import tiny_backbone_config

    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path / "cache"))
    checkpoint = tmp_path / "out" / "checkpoint-2"  # what a run with --offline_hidden_size 32 saved
    backbone = tiny_backbone_config(400, hidden_size=32, layers=1, heads=2)
    MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=backbone.to_dict(), projection_dim=64)) \
        .save_pretrained(checkpoint)
    (checkpoint / TRAINER_STATE).write_text(json.dumps({"global_step": 2}))
    write_checkpoint_manifest(str(checkpoint), {"global_step": 2, "finite_weights": True})
    wider = [a if a != "32" else "48" for a in TINY]  # --offline_hidden_size 48
    line = _one_line_error(distill_script, ["--output_dir", str(tmp_path / "out"), *wider, "--max_steps", "4",
                                            "--resume_from_checkpoint", "true"])
    assert line.startswith(f"error: checkpoint {checkpoint} holds a student of another shape (")
    assert "backbone.embeddings.LayerNorm.bias: checkpoint [32], this run [48]" in line
    assert line.endswith("resume with the student flags of that run (e.g. --offline_hidden_size) or start a new run "
                         "in a new --output_dir")
