"""Every flag of the main job works on the path it is given to, or is refused with the reason (issue 14)."""
import json

import pytest

TINY = ["--world_train_scenes", "40", "--world_test_scenes", "12", "--teacher_steps", "3",
        "--offline_hidden_size", "32", "--offline_layers", "1", "--offline_heads", "2", "--offline_vocab_size", "400",
        "--queue_size", "32", "--logging_steps", "1", "--disable_tqdm", "true"]


@pytest.mark.parametrize("argv, reason", [
    (["--max_steps", "0"], "--max_steps 0 would train nothing"),
    (["--streaming", "true"], "--streaming do(es) nothing with the offline world"),
    (["--precomputed_embeddings", "M-CLIP/x"], "--precomputed_embeddings do(es) nothing with the offline world"),
    (["--teacher_revision", "abc"], "--teacher_revision do(es) nothing"),
    (["--eval_split", "validation"], "the offline world has the splits"),
    (["--train_split", "dev"], "the offline world has the splits"),
    (["--language_column", "lang"], "language column is 'language'"),
    (["--max_train_samples", "0"], "--max_train_samples must be at least 1"),
    (["--max_train_samples", "8", "--per_device_train_batch_size", "16"], "fewer than one batch"),
    (["--teacher", "openai/clip-vit-base-patch32", "--student", "xlm-roberta-base", "--dataset", "d/x",
      "--world_seed", "3"], "--world_seed do(es) nothing with Hub models"),
    (["--teacher", "openai/clip-vit-base-patch32", "--student", "xlm-roberta-base", "--dataset", "d/x",
      "--offline_layers", "3", "--teacher_steps", "9"], "--offline_layers, --teacher_steps"),
])
def test_flags_that_would_do_nothing_are_refused(distill_script, argv, reason):
    with pytest.raises(SystemExit, match=reason.replace("(", r"\(").replace(")", r"\)")):
        distill_script.parse_args(["--output_dir", "x", *argv])


def test_offline_flags_on_the_offline_path_parse(distill_script):
    _, data_args, _ = distill_script.parse_args(["--output_dir", "x", "--eval_split", "", "--world_seed", "2",
                                                    "--max_train_samples", "500", "--max_steps", "-1"])
    assert data_args.eval_split == "" and data_args.world_seed == 2 and data_args.max_train_samples == 500


def test_offline_max_train_samples_and_empty_eval_split(distill_script, tmp_path, monkeypatch, offline_cache):
    """--max_train_samples truncates the offline training set (one epoch of 32 rows at batch 16 = 2 steps; the
    40-scene world has hundreds of captions) and --eval_split '' skips the evaluation."""
    monkeypatch.setenv("MVLD_HF_CACHE", str(offline_cache))
    out = tmp_path / "run"
    results = distill_script.main(["--output_dir", str(out), *TINY, "--eval_split", "", "--max_train_samples", "32",
                                   "--max_steps", "-1", "--num_train_epochs", "1", "--per_device_train_batch_size",
                                   "16", "--save_strategy", "epoch"])
    assert results == {}
    assert not (out / "eval_results.json").exists() and not (out / "retrieval_per_language.png").exists()
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["max_steps"] == 2
    assert (out / "config.json").is_file()

