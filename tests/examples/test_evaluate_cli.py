"""examples/evaluate.py (mvld_hf.cli.evaluate): says what it is doing, and its tables and plots read."""
import logging
import os
import runpy
import sys

import datasets
import pytest

from mvld_hf.cli import evaluate
from mvld_hf.testing import tiny_student


def test_every_phase_is_logged_and_the_report_is_split(tmp_path, toy_rows, tokenizer, teacher, caplog):
    teacher_dir, ckpt, data_dir = tmp_path / "teacher", tmp_path / "student", tmp_path / "data"
    teacher.model.save_pretrained(teacher_dir)
    teacher.tokenizer.save_pretrained(teacher_dir)
    teacher.image_processor.save_pretrained(teacher_dir)
    student = tiny_student(tokenizer, projection_dim=teacher.dim)
    student.config.teacher_name_or_path = str(teacher_dir)
    student.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    datasets.Dataset.from_list(toy_rows).save_to_disk(data_dir)

    with caplog.at_level(logging.INFO):
        results = evaluate.main(["--model", str(ckpt), "--dataset", str(data_dir), "--output-dir",
                                 str(tmp_path / "out"), "--device", "cpu", "--batch-size", "16"])
    said = [r.getMessage() for r in caplog.records]
    for start in ("loading the student", "loading the teacher", "loading the benchmark", "retrieval: ",
                  "retrieval and purity of the teacher", "retrieval and purity of the student",
                  "Encoding images: ", "Encoding captions: ", "purity: spherical k-means", "purity: done in",
                  "done in"):
        assert any(message.startswith(start) for message in said), start
    assert set(results["student"]["retrieval"]) >= {"de", "en", "fr", "all", "mean"}
    report = (tmp_path / "out" / "eval.md").read_text()
    assert "### retrieval: text-to-image" in report and "### retrieval: image-to-text" in report
    assert (tmp_path / "out" / "retrieval_t2i_R@1.png").is_file() and (tmp_path / "out" / "purity.png").is_file()
    # the student's effective max length (the tokenizer's / positions'), not a fixed 128
    assert '"max_length": 64' in (tmp_path / "out" / "eval.json").read_text()


def test_vqa_chance_level_is_one_over_the_number_of_options():
    rows = {"options": [["a", "b", "c", "d"], ["a", "b", "c", "d"]]}
    assert evaluate._chance(rows) == 0.25
    assert evaluate._chance({"options": [["a", "b"], ["a", "b", "c", "d"]]}) == 0.375
    assert evaluate._chance({"question": ["q"]}) is None


@pytest.mark.parametrize("script, module", [("examples/evaluate.py", "mvld_hf.cli.evaluate"),
                                            ("examples/distill.py", "mvld_hf.cli.distill"),
                                            ("hub_upload.py", "mvld_hf.hub")])
def test_repository_scripts_are_thin_wrappers_of_the_console_scripts(script, module, monkeypatch, capsys):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    source = open(os.path.join(root, script), encoding="utf-8").read()
    assert f"from {module} import" in source and len(source.splitlines()) < 25
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(root, script), run_name="__main__")
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


def test_evaluate_help_names_the_presets_without_pointing_at_repository_files(capsys):
    """`mvld-evaluate --help` works from the wheel: it names the presets itself (docs/ is not shipped)."""
    from mvld_hf.evaluation.presets import PRESETS

    assert sorted(evaluate.PRESET_NAMES) == sorted(PRESETS)
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in PRESETS) and "mvld_hf.evaluation.presets" in help_text
