import json
import math

import pytest

from mvld_hf.evaluation.report import format_report, format_table, load_json, plot_per_language, save_json


def results(offset=0.0):
    return {
        "retrieval": {
            "de": {"t2i_R@1": 0.5 + offset, "i2t_R@1": 0.25},
            "en": {"t2i_R@1": 0.75, "i2t_R@1": 0.5 + offset},
            "all": {"t2i_R@1": 0.625, "i2t_R@1": 0.375},
            "mean": {"t2i_R@1": 0.625, "i2t_R@1": 0.375},
        },
        "purity": {"de": 0.9, "en": 0.95 + offset, "mean": 0.925, "mixed": 0.8 + offset},
    }


def test_format_table_side_by_side():
    table = format_table({"teacher": results(), "student": results(0.1)}, section="retrieval")
    lines = table.splitlines()
    assert lines[0] == ("| language | t2i_R@1 (teacher) | t2i_R@1 (student) | i2t_R@1 (teacher) | i2t_R@1 (student) |")
    assert lines[1] == "| :--- | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| de | 50.0 | **60.0** | 25.0 | 25.0 |"
    assert lines[3] == "| en | 75.0 | 75.0 | 50.0 | **60.0** |"
    assert lines[4].startswith("| **all** |") and lines[5].startswith("| **mean** |")


def test_format_table_single_model_selection_and_missing_values():
    student = results()["retrieval"]
    teacher = {"en": {"t2i_R@1": 0.8}}
    table = format_table({"student": student}, metrics=["i2t_R@1"], rows=["en", "all"], precision=2)
    assert table.splitlines() == ["| language | i2t_R@1 |", "| :--- | ---: |", "| en | 50.00 |",
                                  "| **all** | 37.50 |"]
    table = format_table({"teacher": teacher, "student": student}, metrics=["t2i_R@1"])
    assert "| de | – | 50.0 |" in table
    with pytest.raises(KeyError, match="available"):
        format_table({"s": student}, metrics=["nope"])
    with pytest.raises(ValueError, match="nested"):
        format_table({"s": results()})


def test_format_report_handles_float_sections():
    report = format_report({"teacher": results(), "student": results(0.05)})
    assert report.startswith("### retrieval\n\n| language |")
    assert "### purity" in report
    assert "| **mixed** | 80.0 | **85.0** |" in report
    assert "purity (teacher)" in report


def test_save_and_load_json(tmp_path):
    import torch
    obj = {"a": torch.tensor(0.5), "b": [float("nan"), 1], "c": {"d": torch.arange(3)}}
    path = save_json(obj, tmp_path / "sub" / "r.json")
    assert load_json(path) == {"a": 0.5, "b": [None, 1], "c": {"d": [0, 1, 2]}}
    json.loads(path.read_text())  # strict JSON


def test_plot_per_language(tmp_path):
    langs = [f"l{i:02d}" for i in range(14)]
    teacher = {l: {"t2i_R@1": 0.3 + 0.03 * i} for i, l in enumerate(langs)} | {"all": {"t2i_R@1": 0.5}}
    student = {l: {"t2i_R@1": 0.4 + 0.02 * i} for i, l in enumerate(langs)} | {"all": {"t2i_R@1": 0.55}}
    path = plot_per_language({"teacher": teacher, "student": student}, "t2i_R@1", tmp_path / "p.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    p2 = plot_per_language({"teacher": results(), "student": results(0.05)}, "purity", tmp_path / "q.png",
                           section="purity")
    assert p2.exists()
    with pytest.raises(KeyError, match="metric 'x' not in the results"):
        plot_per_language({"teacher": teacher}, "x", tmp_path / "r.png")
    assert not math.isnan(teacher["all"]["t2i_R@1"])


def test_wide_retrieval_report_is_split_into_readable_tables():
    metrics = {f"{d}_{m}": 0.5 for d in ("t2i", "i2t") for m in ("R@1", "R@5", "R@10", "MRR@10")}
    models = {"teacher": {"retrieval": {"de": metrics, "en": metrics}},
              "student": {"retrieval": {"de": metrics, "en": metrics}}}
    report = format_report(models)
    assert "### retrieval: text-to-image" in report and "### retrieval: image-to-text" in report
    header_cells = [len(line.split("|")) - 2 for line in report.splitlines() if line.startswith("| language")]
    assert header_cells == [9, 9]  # 1 + 4 metrics x 2 models each, instead of one 17-column table
    assert "i2t_R@1 (student)" not in report.split("### retrieval: image-to-text")[0]
    unsplit = format_report(models, max_columns=None)
    assert [len(line.split("|")) - 2 for line in unsplit.splitlines() if line.startswith("| language")] == [17]


def test_plot_has_axis_labels_and_a_chance_line():
    from mvld_hf.evaluation.report import per_language_figure

    results = {"teacher": {"vqa": {"de": {"accuracy": 0.5}, "en": {"accuracy": 0.75}}},
               "student": {"vqa": {"de": {"accuracy": 0.6}, "en": {"accuracy": 0.7}}}}
    fig = per_language_figure(results, "accuracy", section="vqa", title="VQA accuracy", ylabel="VQA accuracy (%)",
                              xlabel="question language", chance=0.25)
    (ax,) = fig.axes
    assert ax.get_title() == "VQA accuracy" and ax.get_xlabel() == "question language"
    assert ax.get_ylabel() == "VQA accuracy (%)"
    chance = [line for line in ax.get_lines() if line.get_label() == "chance (25%)"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [25.0, 25.0]
    assert "chance (25%)" in [t.get_text() for t in ax.get_legend().get_texts()]
