import glob
import os

import pytest

from mvld_hf.losses.registry import PAPER_COMBINATIONS, PAPER_METHODS

from .conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))


def test_there_are_paper_configs():
    names = {os.path.basename(p) for p in CONFIGS}
    assert "offline_dr.yaml" in names
    assert any("siglip2" in n for n in names) and any("image-anchor" in n for n in names)
    for method in (*PAPER_METHODS, *PAPER_COMBINATIONS):
        assert f"clip-l14_xlmr-base_{method}.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_and_validates(distill_script, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # output_dir is relative
    import torch

    overrides = [] if torch.cuda.is_available() else ["--bf16", "false"]  # bf16 validation needs a GPU
    model_args, data_args, args = distill_script.parse_args([path, *overrides])
    assert args.method_weights  # validated by DistillationArguments.__post_init__
    if model_args.teacher == "offline":
        assert data_args.dataset == "offline" and model_args.student == "offline"
        assert args.per_device_train_batch_size == distill_script.OFFLINE_TRAINING_DEFAULTS[
            "per_device_train_batch_size"]
    else:
        assert model_args.teacher in ("openai/clip-vit-large-patch14", "google/siglip2-large-patch16-256")
        assert args.caption_column == "caption_multi" and args.english_column == "caption"
        assert args.queue_size % args.per_device_train_batch_size == 0
        expected = os.path.basename(path).split("_", 2)[2][: -len(".yaml")]
        assert args.output_dir.endswith(expected)


def test_cli_flags_override_offline_defaults(distill_script):
    _, _, args = distill_script.parse_args(["--method", "ed", "--learning_rate", "0.01", "--output_dir", "x"])
    assert args.method_weights == {"ed": 1.0} and args.learning_rate == 0.01
    assert args.per_device_train_batch_size == 128  # offline default kept


def test_mixing_offline_and_hub_is_rejected(distill_script):
    with pytest.raises(SystemExit, match="must both be 'offline'"):
        distill_script.main(["--teacher", "openai/clip-vit-large-patch14", "--output_dir", "x"])
    with pytest.raises(SystemExit, match="with a real --student"):  # Hub teacher and data need a real student
        distill_script.main(["--teacher", "openai/clip-vit-large-patch14", "--dataset", "some/data",
                             "--output_dir", "x"])


def test_config_overrides_and_unknown_keys(distill_script, tmp_path):
    path = os.path.join(ROOT, "configs", "clip-l14_xlmr-base_ed.yaml")
    _, _, args = distill_script.parse_args([path, "--bf16", "false", "--method", "fd", "--max_steps", "7"])
    assert args.method_weights == {"fd": 1.0} and args.max_steps == 7 and args.caption_column == "caption_multi"
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: dr\nlearning_rat: 0.1\n")
    with pytest.raises(distill_script.CliError, match=r"unknown keys in .*bad.yaml: \['learning_rat'\]"):
        distill_script.parse_args([str(bad)])
