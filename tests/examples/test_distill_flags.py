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
    with pytest.raises(distill_script.CliError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        distill_script.parse_args(["--output_dir", "x", *argv])
    with pytest.raises(SystemExit, match="^error: "):  # main reports it as one line
        distill_script.main(["--output_dir", "x", *argv])


def test_offline_flags_on_the_offline_path_parse(distill_script):
    _, data_args, _ = distill_script.parse_args(["--output_dir", "x", "--eval_split", "", "--world_seed", "2",
                                                    "--max_train_samples", "500", "--max_steps", "-1"])
    assert data_args.eval_split == "" and data_args.world_seed == 2 and data_args.max_train_samples == 500


@pytest.fixture(scope="module")
def tiny_run(distill_script, tmp_path_factory, offline_cache):
    """A recorded offline run: 32 training rows, one epoch at batch 16, no evaluation."""
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MVLD_HF_CACHE", str(offline_cache))
        results = distill_script.main(["--output_dir", str(out), *TINY, "--eval_split", "", "--max_train_samples",
                                       "32", "--max_steps", "-1", "--num_train_epochs", "1",
                                       "--per_device_train_batch_size", "16", "--save_strategy", "epoch"])
    return out, results


def test_offline_max_train_samples_and_empty_eval_split(tiny_run):
    """--max_train_samples truncates the offline training set (one epoch of 32 rows at batch 16 = 2 steps; the
    40-scene world has hundreds of captions) and --eval_split '' skips the evaluation."""
    out, results = tiny_run
    assert results == {}
    assert not (out / "eval_results.json").exists() and not (out / "retrieval_per_language.png").exists()
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["max_steps"] == 2
    assert (out / "config.json").is_file()
    record = json.loads((out / "mvld_run.json").read_text())
    assert record["training_data"]["rows"] == 32 and record["hyperparameters"]["global_step"] == 2


def test_card_of_a_recorded_run_says_only_what_the_run_recorded(tiny_run, offline_cache, tmp_path, capsys, caplog):
    """hub_upload.py CHECKPOINT --local-dir DIR alone (no --repo-id) on the run: every card field from the record."""
    from huggingface_hub import ModelCard

    from mvld_hf import hub
    from mvld_hf.synthetic import LANGUAGES

    out, _ = tiny_run
    folder = tmp_path / "export"
    assert hub.main([str(out), "--local-dir", str(folder)]) == 0
    assert "not uploaded" in capsys.readouterr().out
    card = ModelCard.load(folder / "README.md")
    text, data = card.text, card.data
    languages = sorted(LANGUAGES)
    record = json.loads((out / "mvld_run.json").read_text())
    assert record["languages"] == languages
    # the teacher: never the local cache path; described from the record, with a warning asking for a Hub id
    assert str(offline_cache) not in str(card) and "mvld_hf's offline world" in text
    assert any("no Hub id was given" in r.getMessage() for r in caplog.records)
    # languages: the YAML and the body agree (the 13 training languages)
    assert data.language == languages and "Training languages: " + ", ".join(languages) in text
    # max text length: the student's effective one (66 positions, offset 1; tokenizer 64; trained at 64)
    assert "| Max text length | 64 tokens" in text
    # hyperparameters from the run's training arguments
    for row in ("`learning_rate` | 0.003", "`method_weights` | dr 1", "`queue_size` | 32", "`anchor` | text",
                "`teacher_temperature` | 0.05", "`student_temperature` | 0.05", "`total_batch_size` | 16",
                "`global_step` | 2", "`max_length` | 64"):
        assert row in text, row
    assert "contrastive_temperature" not in text  # an MCL field: not used by this DR run
    # metadata filled where known: the license of generated data; no Hub base model or dataset to name
    assert data.license == "apache-2.0" and data.base_model is None and data.datasets is None
    # no claims the run did not record
    assert "pre-training" not in text and "translated" not in text.replace("no translation", "")
    assert "trained from scratch" in text and "32 captions" in text
    assert 'SentenceTransformer("path/to/exported-model")' in text


def test_cpu_threads_share_the_cores_or_follow_the_environment(distill_script, monkeypatch):
    import os

    import pytest

    monkeypatch.delenv("MVLD_HF_NUM_THREADS", raising=False)
    assert distill_script.cpu_threads(1) == (os.cpu_count() or 1)
    assert distill_script.cpu_threads(10**6) == 1
    monkeypatch.setenv("MVLD_HF_NUM_THREADS", "1")
    assert distill_script.cpu_threads(1) == 1
    monkeypatch.setenv("MVLD_HF_NUM_THREADS", "zero")
    with pytest.raises(distill_script.CliError, match="MVLD_HF_NUM_THREADS"):
        distill_script.cpu_threads(1)
