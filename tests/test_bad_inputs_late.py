"""Bad inputs that used to end in a traceback, an unclear message or a late one (issue 30, items 9-19): each is
now refused early in one line naming the file/row/flag, or handled (a stale cache recomputed, an unreadable lock
taken over, SIGTERM handled like Ctrl-C). The older cases are in ``tests/test_bad_inputs.py``."""

import json
import os
import re
from functools import partial

import pytest

from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.testing import tiny_student
from tests.helpers import training_args

BATCH = 16
_args = partial(training_args, method="fd", per_device_train_batch_size=BATCH, queue_size=64, learning_rate=3e-3,
                max_steps=2, logging_steps=1)


@pytest.fixture(scope="module")
def data(toy_dataset, teacher):
    return precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)


def _trainer(tokenizer, tmp_path, train_dataset, **kwargs):
    return DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer,
                               train_dataset=train_dataset, args=_args(tmp_path, **kwargs))


# ------------------------------------------------------- item 13: the only checkpoint fails verification
@pytest.mark.parametrize("damage", ["truncated optimizer", "edited step"])
def test_resuming_when_the_only_checkpoint_is_damaged_names_the_file_and_reason(tokenizer, data, tmp_path, damage):
    from mvld_hf.cli.arguments import CliError, check_resume

    trainer = _trainer(tokenizer, tmp_path, data, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = os.path.join(trainer.args.output_dir, "checkpoint-2")
    if damage == "truncated optimizer":
        path = os.path.join(checkpoint, "optimizer.pt")
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        reason = r"optimizer\.pt is \d+ bytes, \d+ were written \(truncated or replaced\)"
    else:
        path = os.path.join(checkpoint, "trainer_state.json")
        text = open(path).read()
        assert '"global_step": 2,' in text
        open(path, "w").write(text.replace('"global_step": 2,', '"global_step": 7,'))  # same size: only the step
        reason = r"trainer_state\.json says global_step 7 but the checkpoint was written at step 2"
    args = _args(tmp_path, resume_from_checkpoint="true")
    with pytest.raises(CliError, match=rf"--resume_from_checkpoint true: no complete checkpoint in "
                                       rf"{re.escape(args.output_dir)}, its only checkpoint fails verification: "
                                       rf"checkpoint {re.escape(checkpoint)} is corrupt or incomplete: {reason}.*\. "
                                       r"Nothing can be resumed from it: start again with --overwrite_output_dir "
                                       r"true") as error:
        check_resume(args, trainer.model)
    assert "earlier checkpoint" not in str(error.value)  # there is none


# ------------------------------------------------------------------ item 14: --config on the command line
def _shipped(name="clip-l14_xlmr-base_dr"):
    from mvld_hf.cli.configs import resolve_config

    return resolve_config(name)


def test_two_configs_are_refused_in_one_line(tmp_path):
    from mvld_hf.cli.arguments import CliError
    from mvld_hf.cli.precheck import precheck

    mine = tmp_path / "mine.yaml"
    mine.write_text("method: fd\n")
    with pytest.raises(CliError, match=rf"^two configs: the file {re.escape(str(mine))} and --config "
                                       r"clip-l14_xlmr-base_dr; a run reads one config"):
        precheck([str(mine), "--config", "clip-l14_xlmr-base_dr", "--max_steps", "5"])
    for second in (["--config", str(mine)], [f"--config={mine}"]):
        with pytest.raises(CliError, match=rf"^--config is given 2 times \(clip-l14_xlmr-base_dr, "
                                           rf"{re.escape(str(mine))}\): a run reads one config"):
            precheck(["--config", "clip-l14_xlmr-base_dr", *second])
    argv, _ = precheck([f"--config={mine}", "--max_steps", "5"])  # the = form is read like --config NAME
    assert argv == [str(mine), "--max_steps", "5"]


def test_a_configs_bf16_on_a_machine_without_it_says_bf16_false(tmp_path):
    import torch

    from mvld_hf.cli.arguments import CliError, parse_args

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        pytest.skip("this machine has bfloat16")
    with pytest.raises(CliError, match=rf"^the config file {re.escape(_shipped())} sets bf16: true, but this "
                                       r"machine has no GPU with bfloat16 .*add `--bf16 false`"):
        parse_args([_shipped(), "--output_dir", str(tmp_path / "out")])
    model_args, _, args = parse_args([_shipped(), "--output_dir", str(tmp_path / "out"), "--bf16", "false"])
    assert args.bf16 is False and model_args.teacher == "openai/clip-vit-large-patch14"


def test_a_hub_configs_keys_with_the_offline_world_say_they_come_from_the_config(tmp_path):
    from mvld_hf.cli.arguments import CliError, parse_args

    offline = ["--teacher", "offline", "--student", "offline", "--dataset", "offline", "--bf16", "false"]
    with pytest.raises(CliError, match=rf"^streaming \(set by the config file {re.escape(_shipped())}, not on the "
                                       r"command line\) do\(es\) nothing with the offline world: that config is for "
                                       r"Hub models and data"):
        parse_args([_shipped(), *offline, "--output_dir", str(tmp_path / "out")])
    with pytest.raises(CliError, match=r"^--streaming do\(es\) nothing with the offline world; remove it"):
        parse_args(["--streaming", "true", "--output_dir", str(tmp_path / "out")])  # typed: named as a flag


# ------------------------------------------------------------------- item 16: the teacher-eval cache
def test_a_teacher_eval_cache_of_the_wrong_shape_is_stale_recomputed_and_rewritten(tokenizer, teacher, toy_dataset,
                                                                                   tmp_path, caplog):
    import logging

    from mvld_hf.cli import reports
    from mvld_hf.cli.arguments import DataArguments

    data_args = DataArguments(teacher_eval_cache=str(tmp_path / "cache"), languages=["de", "en"])
    args, student = _args(tmp_path, per_device_eval_batch_size=32), tiny_student(tokenizer, 16)
    toy_dataset = toy_dataset.remove_columns("english")  # retrieval and purity only: faster
    first = reports.evaluate(student, tokenizer, teacher, toy_dataset, args, data_args, str(tmp_path / "first"))
    [cache] = list((tmp_path / "cache").iterdir())
    wrong_metric = json.loads(cache.read_text())
    wrong_metric["retrieval"]["de"]["t2i_R@1"] = "high"
    for bad, reason in (([], "it holds a list, not a mapping"), ({}, "retrieval is missing"),
                        (wrong_metric, "retrieval.de.t2i_R@1 is a str ('high'), expected a number")):
        cache.write_text(json.dumps(bad))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mvld_hf"):
            again = reports.evaluate(student, tokenizer, teacher, toy_dataset, args, data_args, str(tmp_path / "b"))
        assert [r.getMessage() for r in caplog.records if "stale" in r.getMessage()] == [
            f"evaluation of the teacher: the cached {cache} is stale ({reason}): evaluating the teacher again and "
            "rewriting it"]
        assert again["teacher"]["retrieval"] == first["teacher"]["retrieval"]
        assert json.loads(cache.read_text())["retrieval"] == first["teacher"]["retrieval"]  # rewritten
        assert (tmp_path / "b" / "eval_results.json").is_file()


def test_a_teacher_eval_cache_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch):
    from mvld_hf.cli.arguments import CliError, parse_args, validate_cli

    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path / "mvld_cache"))
    (tmp_path / "afile").write_text("{}")
    for value in ("afile", "afile/sub"):
        parsed = parse_args(["--output_dir", str(tmp_path / "out"), "--teacher_eval_cache", str(tmp_path / value)])
        with pytest.raises(CliError, match=rf"^--teacher_eval_cache {re.escape(str(tmp_path / value))} names a "
                                           rf"folder for the teacher's evaluations, but {re.escape(str(tmp_path))}"
                                           r"/afile is a file: pass a folder"):
            validate_cli(*parsed)
    validate_cli(*parse_args(["--output_dir", str(tmp_path / "out"), "--teacher_eval_cache", str(tmp_path / "new")]))
    assert not (tmp_path / "mvld_cache").exists()


# --------------------------------------------------------------------- item 11: a lock file of garbage
@pytest.mark.parametrize("content,why", [(b"\x00\xffgarbage", r"not JSON \('\\x00.garbage'\)"),
                                         (b"", "it is empty"), (b'{"pid": null}', r"no pid and host in it .*"),
                                         (b"[1, 2]", r"no pid and host in it \('\[1, 2\]'\)")])
def test_an_unreadable_lock_file_is_no_live_run_and_is_taken_over(tmp_path, caplog, content, why):
    import logging
    import time

    from mvld_hf.cli.arguments import parse_args, validate_cli
    from mvld_hf.run_lock import LOCK_FILE, RunLock, live_holder, read_holder

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_bytes(content)
    os.utime(out / LOCK_FILE, (time.time() - 60, time.time() - 60))  # not a lock being written right now
    assert live_holder(str(out)) is None and re.fullmatch(why, read_holder(str(out))["unreadable"])
    validate_cli(*parse_args(["--output_dir", str(out)]))  # the command line does not call it "in use"
    with caplog.at_level(logging.WARNING, logger="mvld_hf.run_lock"):
        lock = RunLock(str(out)).acquire()
    assert lock.owned and json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert re.fullmatch(rf"output_dir {re.escape(str(out))}: taking over an unreadable lock file "
                        rf"{re.escape(str(out / LOCK_FILE))} \({why}\): it names no live run", caplog.messages[-1])
    lock.release()
    assert os.listdir(out) == []


# ---------------------------------------------------------- item 9: mvld-evaluate on a folder that is no student
def test_evaluating_a_folder_that_is_no_student_ends_in_one_line(tmp_path, tokenizer, teacher, capsys):
    from mvld_hf.cli import evaluate

    (tmp_path / "empty").mkdir()
    teacher.model.save_pretrained(tmp_path / "teacher")
    st = tmp_path / "st"  # what a sentence-transformers export holds at its top: the backbone and modules.json
    tiny_student(tokenizer, 16).backbone.save_pretrained(st)
    (st / "modules.json").write_text("[]")
    (tmp_path / "run.yaml").write_text("method: dr\n")
    cases = {"empty": "'{}' is not an mvld_hf student: it has no readable config.json",
             "teacher": "'{}' is not an mvld_hf student: its config.json has model_type 'clip'",
             "st": "'{}' is not an mvld_hf student: its config.json has model_type ",
             "missing/folder": "checkpoint '{}' not found: no such directory",
             "run.yaml": "'{}' is a file; pass the checkpoint folder"}
    for name, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            evaluate.console_main(["--model", str(tmp_path / name), "--device", "cpu"])
        first, hint = str(exit_info.value.code).split("\n")
        assert first.startswith("error: " + message.format(tmp_path / name)), first
        assert hint == "(run with --debug for the traceback)"
    from mvld_hf import NotAStudentError

    with pytest.raises(NotAStudentError):  # --debug: the traceback
        evaluate.console_main(["--model", str(tmp_path / "empty"), "--device", "cpu", "--debug"])


# ------------------------------------------------------------------------ item 10: exporting zero weights
@pytest.mark.parametrize("zeroed", ["every weight", "the projection"])
def test_exporting_zero_weights_says_the_weights_are_zero(tokenizer, tmp_path, zeroed):
    import torch

    from mvld_hf.export import export_sentence_transformer

    student = tiny_student(tokenizer, 16)
    with torch.no_grad():
        for name, tensor in student.named_parameters():
            if zeroed == "every weight" or name.startswith("projection."):
                tensor.zero_()
    with pytest.raises(ValueError, match=r"^the student's weights are zero: \d+ of \d+ tensors are all zero \(e\.g\. "
                                         r"'projection\.weight'\), so it embeds every text as the same vector"):
        export_sentence_transformer(student, tokenizer, output_dir=str(tmp_path / "st"), include_images=False,
                                    write_card=False)
    assert not (tmp_path / "st").exists()


# --------------------------------------------------------------- item 15: --local-dir under a file
def test_hub_upload_into_a_folder_under_a_file_says_so_before_the_export(tokenizer, tmp_path, capsys):
    from mvld_hf.hub import main

    checkpoint = tmp_path / "student"
    tiny_student(tokenizer, 16).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    status = main([str(checkpoint), "--local-dir", str(tmp_path / "afile" / "sub"), "--text-only"])
    err = capsys.readouterr()
    assert status != 0 and "exporting" not in err.out  # refused before the export started
    assert err.err.strip().splitlines()[-1] == (
        f"hub_upload.py: error: {str(tmp_path / 'afile' / 'sub')!r} cannot be created: {str(tmp_path / 'afile')!r} "
        "is a file, not a folder; choose a path whose parent folders are folders")


# ------------------------------------------------------------------- item 18: SIGTERM like Ctrl-C
def test_sigterm_mid_training_says_where_the_last_checkpoint_is_and_releases_the_lock(tokenizer, data, tmp_path,
                                                                                      monkeypatch, capsys):
    import signal
    import sys

    from transformers import TrainerCallback

    from mvld_hf.cli.distill import one_line_errors
    from mvld_hf.run_lock import LOCK_FILE

    out = tmp_path / "out"

    class Scheduler(TrainerCallback):  # a scheduler's `kill` (SIGTERM) arrives during step 3
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                assert (out / LOCK_FILE).exists()
                assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # else SIGTERM would end pytest
                os.kill(os.getpid(), signal.SIGTERM)

    def training(argv):
        trainer = _trainer(tokenizer, tmp_path, data, max_steps=6, save_strategy="steps", save_steps=2)
        trainer.add_callback(Scheduler())
        trainer.train()

    monkeypatch.setattr(sys, "argv", ["examples/distill.py"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        one_line_errors(training)(["--output_dir", str(out), "--max_steps", "6"])
    assert exit_info.value.code == 143 and signal.getsignal(signal.SIGTERM) == before
    assert capsys.readouterr().err.strip().splitlines()[-2:] == [
        f"interrupted (SIGTERM); {out / 'checkpoint-2'} is the last complete checkpoint. Resume from it with",
        f"  python examples/distill.py --output_dir {out} --max_steps 6 --resume_from_checkpoint true"]
    assert not (out / LOCK_FILE).exists() and sorted(os.listdir(out)) == ["checkpoint-2"]


# ----------------------------------------------------------------- item 12: a full disk at the final save
def test_a_full_disk_at_the_final_save_says_so_names_the_checkpoint_and_writes_nothing_half(tokenizer, data,
                                                                                           tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from mvld_hf import MultilingualTextTower
    from mvld_hf.checkpointing import DiskFullError
    from mvld_hf.final_save import FINAL_STAGING

    trainer = _trainer(tokenizer, tmp_path, data, max_steps=3, save_strategy="steps", save_steps=2)
    trainer.train()
    out = trainer.args.output_dir
    trainer.save_model()  # a first final save (as a run that is saved twice): intact below
    before = open(os.path.join(out, "model.safetensors"), "rb").read()
    save_pretrained = MultilingualTextTower.save_pretrained

    def fill_the_disk(self, folder, *args, **kwargs):  # writes part of the weights, then the disk is full
        save_pretrained(self, folder, *args, **kwargs)
        path = os.path.join(folder, "model.safetensors")
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 3)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')

    monkeypatch.setattr(MultilingualTextTower, "save_pretrained", fill_the_disk)
    kept = re.escape(os.path.join(out, "checkpoint-3"))
    message = (rf"^\[Errno 28\] the disk holding {re.escape(out)} is full, \d+ MiB free: the trained student "
               rf"\(step 3\) could not be saved there \(no file of it was written into {re.escape(out)}, nothing "
               rf"there was overwritten\); the last complete checkpoint, {kept}, stays good: free some space and "
               r"resume from it with --resume_from_checkpoint true")
    with pytest.raises(DiskFullError, match=message):
        trainer.save_model()
    assert open(os.path.join(out, "model.safetensors"), "rb").read() == before  # not a half-written file
    assert not os.path.exists(os.path.join(out, FINAL_STAGING))
    monkeypatch.setattr(MultilingualTextTower, "save_pretrained", save_pretrained)
    open(os.path.join(out, "model-00001-of-00002.safetensors"), "wb").close()  # an earlier save, sharded
    trainer.save_model()  # space again: the save goes through, into output_dir itself
    assert not os.path.exists(os.path.join(out, "model-00001-of-00002.safetensors"))  # not mixed with this one
    assert sorted(n for n in os.listdir(out) if n.endswith((".json", ".safetensors"))) >= ["config.json",
                                                                                           "model.safetensors"]
    MultilingualTextTower.from_pretrained(out)


# ------------------------------------------------- items 17 and 19: data files and language codes, before any work
def _hub_run_on(tmp_path, train_file, *flags):
    """validate_cli of a run on a local data file: the checks made before the teacher, student or data load."""
    from mvld_hf.cli.arguments import parse_args, validate_cli

    validate_cli(*parse_args(["--teacher", "some/teacher", "--student", "some/student", "--dataset", str(train_file),
                              "--eval_split", "", "--output_dir", str(tmp_path / "out"), *flags]))


def _rows_of(toy_rows, n=12):
    return [{k: r[k] for k in ("caption", "english", "language")} for r in toy_rows[:n]]


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


@pytest.mark.parametrize("case", ["number caption", "list caption", "empty", "blank lines", "cut mid-line",
                                  "null language", "not an object"])
def test_a_bad_data_file_is_refused_before_any_work_naming_file_row_and_column(toy_rows, tmp_path, case):
    from mvld_hf.cli.arguments import CliError

    rows, path = _rows_of(toy_rows), tmp_path / "train.jsonl"
    text, message = None, None
    if case in ("number caption", "list caption"):
        rows[7]["caption"] = 42 if case == "number caption" else ["a", "b"]
        shown = "a number (42)" if case == "number caption" else 'a list (["a", "b"])'
        message = rf"{path}, row 7 \(line 8\), column 'caption': {re.escape(shown)}, expected a string \(a caption\)"
    elif case == "empty":
        text, message = "", rf"{path} is empty: it holds no rows"
    elif case == "blank lines":
        text, message = "\n  \n\n", rf"{path} holds no rows \(only blank lines\)"
    elif case == "cut mid-line":
        full = _jsonl(rows)
        text = full[:full.rindex("\n", 0, -1) + 20]  # the last line cut after 19 characters
        message = rf"{path}, line 12 \(row 11\): not valid JSON \(the file is cut mid-line\): "
    elif case == "null language":
        rows[9]["language"] = None
        message = rf"{path}, row 9 \(line 10\), column 'language': null, expected a language code"
    else:
        text = _jsonl(rows[:4]) + "[1, 2]\n"
        message = rf"{path}, row 4 \(line 5\): a list \(\[1, 2\]\), expected an object of column values"
    path.write_text(_jsonl(rows) if text is None else text, encoding="utf-8")
    with pytest.raises(CliError, match=f"^{message}"):
        _hub_run_on(tmp_path, path)
    (tmp_path / "good.jsonl").write_text(_jsonl(_rows_of(toy_rows)), encoding="utf-8")
    _hub_run_on(tmp_path, tmp_path / "good.jsonl")  # a good file passes
    with pytest.raises(CliError, match=f"^{message.replace(str(path), str(tmp_path / 'held_out.jsonl'))}"):
        path.rename(tmp_path / "held_out.jsonl")  # the held-out file is read the same way
        _hub_run_on(tmp_path, tmp_path / "good.jsonl", "--eval_split", str(tmp_path / "held_out.jsonl"))


def test_a_csv_file_is_read_the_same_way(tmp_path):
    from mvld_hf.cli.arguments import CliError

    path = tmp_path / "train.csv"
    path.write_text("caption,english,language\nein Kreis,a circle,de\nun cercle,a circle,??\n", encoding="utf-8")
    with pytest.raises(CliError, match=rf"^{path}, row 1 \(line 3\), column 'language': '\?\?' is no language code"):
        _hub_run_on(tmp_path, path)


def test_language_codes_are_made_canonical_and_the_rest_refused_naming_the_rows(toy_rows, tmp_path):
    import datasets

    from mvld_hf.cli.arguments import CliError
    from mvld_hf.data_files import DataFileError, normalise_language, normalise_language_column

    assert [normalise_language(c) for c in ("", " de ", "??", "EN", "xx", "pt-br", "zh_hans", "fil", None)] == \
        [None, "de", None, "en", None, "pt-BR", "zh_Hans", "fil", None]
    codes = ["de", " de ", "EN", "", "fr", "??", "xx", "xx"]
    rows = datasets.Dataset.from_dict({"caption": [f"c{i}" for i in range(len(codes))], "language": codes})
    with pytest.raises(DataFileError, match=r"^--dataset x, column 'language': 3 value\(s\) are no language code "
                                            r"\('' in row\(s\) 3; '\?\?' in row\(s\) 5; 'xx' in row\(s\) 6, 7\)"):
        normalise_language_column(rows, "language", "--dataset x")
    fixed = normalise_language_column(rows.select([0, 1, 2, 4]), "language", "--dataset x")
    assert fixed["language"] == ["de", "de", "en", "fr"]
    stream = normalise_language_column(rows.to_iterable_dataset(), "language", "--dataset x")
    with pytest.raises(DataFileError, match=r"^--dataset x, row 3, column 'language': '' is no language code"):
        list(stream)
    for bad, row in (("xx", 2), ("", 5)):
        data = _rows_of(toy_rows)
        data[row]["language"] = bad
        (tmp_path / "train.jsonl").write_text(_jsonl(data), encoding="utf-8")
        with pytest.raises(CliError, match=rf"row {row} \(line {row + 1}\), column 'language': {bad!r} is no "
                                           "language code"):
            _hub_run_on(tmp_path, tmp_path / "train.jsonl")


def test_a_run_on_messy_language_codes_records_them_canonical(toy_rows, tokenizer, tmp_path, capsys):
    """' de ' and 'EN' in the data file reach mvld_run.json (the model card's languages) and the per-language
    tables as de and en (before, they were kept as written, ' de ' beside de)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoModel

    from mvld_hf.cli.distill import main
    from mvld_hf.testing import tiny_backbone_config

    for name, seed in (("teacher_backbone", 0), ("student", 1)):
        torch.manual_seed(seed)
        AutoModel.from_config(tiny_backbone_config(len(tokenizer), model_type="bert")).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    transformer = Transformer(str(tmp_path / "teacher_backbone"))
    SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"),
                                 Normalize()]).save(str(tmp_path / "teacher"))
    messy = {"de": " de ", "en": "EN", "fr": "fr"}
    rows = [{"caption": r["caption"], "english": r["english"], "language": messy[r["language"]]} for r in toy_rows]
    (tmp_path / "train.jsonl").write_text(_jsonl(rows), encoding="utf-8")
    out = tmp_path / "run"
    main(["--teacher", str(tmp_path / "teacher"), "--student", str(tmp_path / "student"), "--dataset",
          str(tmp_path / "train.jsonl"), "--eval_split", str(tmp_path / "train.jsonl"), "--method", "fd",
          "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "16", "--save_strategy",
          "no", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--languages", "DE", "fr",
          "en"])
    assert json.loads((out / "mvld_run.json").read_text())["languages"] == ["de", "en", "fr"]
    assert set(json.loads((out / "eval_results.json").read_text())["translation"]["student"]) == {"de", "fr", "mean"}


def test_mvld_evaluate_reads_a_data_file_the_same_way(toy_rows, tmp_path):
    from mvld_hf.cli import evaluate
    from mvld_hf.data_files import DataFileError

    rows = _rows_of(toy_rows)
    rows[3]["language"], rows[4]["language"] = " de ", "EN"
    path = tmp_path / "held_out.jsonl"
    path.write_text(_jsonl(rows), encoding="utf-8")
    args = evaluate.parse_args(["--model", "x", "--dataset", str(path), "--languages", "DE", "en"])
    data, _, _ = evaluate.load_retrieval_data(args)
    assert set(data["language"]) <= {"de", "en", "fr"} and args.languages == ["de", "en"]
    rows[9]["language"] = None
    path.write_text(_jsonl(rows), encoding="utf-8")
    with pytest.raises(DataFileError, match=rf"^{path}, row 9 \(line 10\), column 'language': null"):
        evaluate.load_retrieval_data(evaluate.parse_args(["--model", "x", "--dataset", str(path)]))


def test_a_lock_file_being_written_is_read_again_not_taken_over(tmp_path):
    """Where the file system has no hard links a lock is created empty and written at once: a fresh unreadable
    file is read again (for up to a second) before it counts as unreadable."""
    import socket
    import threading

    from mvld_hf.run_lock import LOCK_FILE, live_holder

    (tmp_path / LOCK_FILE).write_bytes(b"")
    record = {"pid": os.getppid(), "host": socket.gethostname(), "time": 0, "command": "a live run"}
    writer = threading.Timer(0.3, lambda: (tmp_path / LOCK_FILE).write_text(json.dumps(record)))
    writer.start()
    try:
        assert live_holder(str(tmp_path)) == record  # the live holder, not an unreadable file taken over
    finally:
        writer.join()
