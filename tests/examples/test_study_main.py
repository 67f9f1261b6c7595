import json

import yaml

from .conftest import load_example

TINY = {"world_train_scenes": 40, "world_test_scenes": 12, "teacher_steps": 3, "offline_hidden_size": 32,
        "offline_layers": 1, "offline_heads": 2, "offline_vocab_size": 400, "max_steps": 4,
        "per_device_train_batch_size": 16, "queue_size": 32, "logging_steps": 2, "save_strategy": "no",
        "disable_tqdm": True, "anchor_language": "de"}


def test_tiny_study_end_to_end_then_rerun_skips(tmp_path, monkeypatch, capsys):
    """Two real distill.py cells (DR and ED, German anchors) through examples/study.py, then a rerun."""
    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"name": "tiny", "base": TINY, "grid": [{"method": ["dr", "ed"]}]}))
    out = tmp_path / "study"
    study = load_example("study")
    results = study.main([str(spec), "--output_dir", str(out)])
    cells = results["cells"]
    assert [c["method"] for c in cells] == ["dr", "ed"] and {c["status"] for c in cells} == {"done"}
    for cell in cells:
        metrics = cell["metrics"]
        for key in ("t2i_R@1_de", "i2t_R@1_sw", "t2i_MRR@10_mean", "vqa_mean", "purity_en", "purity_mixed",
                    "consistency_de", "teacher_purity_en", "teacher_t2i_R@1_en"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert cell["settings"]["anchor_language"] == "de"
    saved = json.loads((out / "cells" / cells[0]["name"] / "eval_results.json").read_text())
    assert saved["meta"]["anchor_language"] == "de" and saved["meta"]["vqa_questions"] == 12 * 13
    ed_vs_dr = next(f for f in results["findings"] if f["claim"].startswith("ED answers VQA"))
    assert ed_vs_dr["measured"]["ed - dr"]["seeds"] == 1 and ed_vs_dr["verdict"] != "not measured"
    md = (out / "study.md").read_text()
    assert "## Findings" in md and "| dr | 1 |" in md and "VQA accuracy per language" in md
    assert (out / "heatmap_t2i_R@1.png").stat().st_size > 5000
    capsys.readouterr()
    again = study.main([str(spec), "--output_dir", str(out)])
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert [c["status"] for c in again["cells"]] == ["skipped", "skipped"]
    assert [c["metrics"] for c in again["cells"]] == [c["metrics"] for c in cells]


def test_study_rejects_a_cell_distill_would_reject_before_running(tmp_path):
    import pytest

    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"grid": [{"method": ["dr"], "no_such_flag": [1]}]}))
    with pytest.raises(ValueError, match="distill.py rejects"):
        load_example("study").main([str(spec), "--output_dir", str(tmp_path / "s")])
    assert not (tmp_path / "s" / "cells").exists()


def test_shipped_study_specs_expand_and_parse(monkeypatch):
    from mvld_hf.cli.distill import parse_args as parse
    from mvld_hf.study import expand_grid, load_spec

    from .conftest import ROOT
    monkeypatch.setenv("MVLD_HF_E5_SMALL", "/models/e5-small")
    for name, at_least in (("offline-smoke", 2), ("offline", 42), ("gpu-paper", 22)):
        cells = expand_grid(load_spec(f"{ROOT}/configs/study/{name}.yaml"))
        assert len(cells) >= at_least
        for cell in cells:  # every cell's flags are valid distill.py flags (bf16 needs a GPU: off here)
            parse(cell.argv("/tmp/x") + (["--bf16", "false"] if name == "gpu-paper" else []))
