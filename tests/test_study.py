import json
import os
import sys

import pytest

from mvld_hf.losses import registry
from mvld_hf.study import (
    Cell,
    cell_metrics,
    compute_findings,
    expand_grid,
    group_variants,
    load_spec,
    run_study,
    verdict,
)

# A stand-in for examples/distill.py: writes an eval_results.json whose numbers come from its flags, and
# appends its settings to runs.log so the tests can count the runs.
FAKE_DISTILL = r'''
import json, os, sys
argv = sys.argv[1:]
flags = {argv[i][2:]: argv[i + 1] for i in range(0, len(argv), 2)}
out = flags["output_dir"]
with open(os.path.join(os.path.dirname(os.path.dirname(out)), "runs.log"), "a") as f:
    f.write(json.dumps(flags) + "\n")
if flags.get("method") == "boom":
    sys.exit(3)
r = {"dr": 0.6, "ed": 0.5}.get(flags.get("method"), 0.4) + 0.01 * int(flags.get("seed", 0))
retrieval = {lang: {"t2i_R@1": r, "i2t_R@1": r, "t2i_MRR@10": r + 0.1} for lang in ("en", "de", "mean")}
teacher = {"en": {"t2i_R@1": 0.7, "i2t_R@1": 0.7, "t2i_MRR@10": 0.8}, "de": {"t2i_R@1": 0.0, "i2t_R@1": 0.0,
           "t2i_MRR@10": 0.01}}
results = {"student": {"retrieval": retrieval, "purity": {"en": 0.9, "de": 0.9, "mixed": 0.8},
                       "vqa": {"en": {"accuracy": 1 - r}, "mean": {"accuracy": 1 - r}, "all": {"accuracy": 1 - r}},
                       "consistency": {"de": {"top1_agreement": 0.9, "cosine": 0.8},
                                       "mean": {"top1_agreement": 0.9, "cosine": 0.8}}},
           "teacher": {"retrieval": teacher, "purity": {"en": 0.85, "de": 0.2, "mixed": 0.3}}}
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "eval_results.json"), "w") as f:
    json.dump(results, f)
'''


@pytest.fixture
def fake_command(tmp_path):
    script = tmp_path / "fake_distill.py"
    script.write_text(FAKE_DISTILL)
    return [sys.executable, str(script)]


def _runs(out):
    path = out / "runs.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_spec_checks_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        load_spec({"grid": {"method": ["dr"]}, "method": "dr"})
    with pytest.raises(ValueError, match="'grid' is missing"):
        load_spec({"base": {}})
    with pytest.raises(ValueError, match="set by the study runner"):
        load_spec({"grid": [{"method": ["dr"], "output_dir": ["x"]}]})
    with pytest.raises(ValueError, match="non-empty list"):
        load_spec({"grid": []})
    path = tmp_path / "my-study.yaml"
    path.write_text("grid:\n  - {method: [dr]}\n")
    assert load_spec(str(path))["name"] == "my-study"


def test_grid_expansion_fingerprints_and_argv(monkeypatch):
    spec = {"base": {"max_steps": 10, "disable_tqdm": True},
            "grid": [{"method": ["dr", "ed"], "seed": [0, 1]},
                     {"method": "dr", "seed": 0},  # a duplicate of the first sub-grid's cell: kept once
                     {"method": ["dr"], "world_language_share": [["bn:0.05", "sw:0"]], "student": ["$E5_DIR"]}]}
    monkeypatch.setenv("E5_DIR", "/models/e5")
    cells = expand_grid(spec)
    # seed by seed (in the order seeds first appear), grid order within a seed: a study stopped part-way
    # holds every comparison at the first seeds
    assert [(c.settings["method"], c.settings.get("seed")) for c in cells] == [
        ("dr", 0), ("ed", 0), ("dr", 1), ("ed", 1), ("dr", None)]
    assert len({c.fingerprint for c in cells}) == 5
    last = cells[-1]
    assert last.settings["student"] == "/models/e5"
    argv = last.argv("out/x")
    assert argv[:2] == ["--output_dir", "out/x"]
    i = argv.index("--world_language_share")
    assert argv[i + 1:i + 3] == ["bn:0.05", "sw:0"] and argv[argv.index("--disable_tqdm") + 1] == "true"
    assert Cell({"a": 1, "b": 2}).fingerprint == Cell({"b": 2, "a": 1}).fingerprint != Cell({"a": 1}).fingerprint
    assert cells[0].name.startswith("dr-") and Cell({"method": "dr:1.0,ed:0.5"}).name.startswith("dr_1_0_ed_0_5-")
    monkeypatch.delenv("E5_DIR")
    with pytest.raises(ValueError, match="E5_DIR, which is not set"):
        expand_grid(spec)


def test_rerun_skips_finished_cells_and_a_changed_setting_reruns_only_its_cells(tmp_path, fake_command):
    out = tmp_path / "study"
    spec = {"name": "t", "base": {"max_steps": 5}, "grid": [{"method": ["dr", "ed"], "seed": [0, 1]}]}
    first = run_study(spec, str(out), command=fake_command, log=lambda msg: None)
    assert len(_runs(out)) == 4
    # every cell reads and writes the study's one teacher-evaluation cache (outside the cells' fingerprints)
    assert {r["teacher_eval_cache"] for r in _runs(out)} == {str(out / "teacher_eval")}
    assert {c["status"] for c in first["cells"]} == {"done"}
    assert {c["method"] for c in first["cells"]} == {"dr", "ed"}
    assert first["cells"][0]["metrics"]["t2i_R@1_de"] == pytest.approx(0.6)
    second = run_study(spec, str(out), command=fake_command, log=lambda msg: None)
    assert len(_runs(out)) == 4  # nothing ran again
    assert {c["status"] for c in second["cells"]} == {"skipped"}
    assert [c["metrics"] for c in second["cells"]] == [c["metrics"] for c in first["cells"]]
    # a setting of the ED cells changes: exactly those two rerun
    spec["grid"] = [{"method": ["dr"], "seed": [0, 1]}, {"method": ["ed"], "seed": [0, 1], "max_steps": 7}]
    third = run_study(spec, str(out), command=fake_command, log=lambda msg: None)
    reruns = _runs(out)[4:]
    assert [(r["method"], r["max_steps"]) for r in reruns] == [("ed", "7"), ("ed", "7")]
    # seed by seed: dr/0, ed/0, dr/1, ed/1
    assert [c["status"] for c in third["cells"]] == ["skipped", "done", "skipped", "done"]
    saved = json.loads((out / "study_results.json").read_text())
    assert len(saved["cells"]) == 4 and saved["cells"][1]["settings"]["max_steps"] == 7
    assert [f["claim"] for f in saved["findings"]][1] == "ED answers VQA better than DR"
    md = (out / "study.md").read_text()
    assert "| dr, max_steps=5 | 2 | 60.5 ± 0.7 |" in md and "| ed, max_steps=7 | 2 |" in md
    assert "*teacher (English only)*" in md
    for plot in ("heatmap_t2i_R@1.png", "retrieval_vs_vqa.png", "bars_mrr.png"):
        assert (out / plot).stat().st_size > 5000


def test_two_runners_share_a_study_through_cell_locks(tmp_path, fake_command):
    """A cell whose lock is held by a live process (another runner) is passed over; a stale lock (its runner
    died) is taken over; a rerun afterwards reports every cell."""
    import subprocess
    import sys

    from mvld_hf.study import LOCK_FILE

    out = tmp_path / "study"
    spec = {"name": "t", "grid": [{"method": ["dr", "ed", "sd"]}]}
    cells = expand_grid(spec)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for cell, pid in ((cells[0], other.pid), (cells[1], dead.pid)):
            folder = out / "cells" / cell.name
            folder.mkdir(parents=True)
            (folder / LOCK_FILE).write_text(str(pid))
        with pytest.raises(RuntimeError, match="still running in another runner") as err:
            run_study(spec, str(out), command=fake_command, log=lambda msg: None)
        assert cells[0].name in str(err.value)
        assert [r["method"] for r in _runs(out)] == ["ed", "sd"]  # the stale lock was taken over
        assert (out / "cells" / cells[0].name / LOCK_FILE).exists()  # the live runner's lock is untouched
        assert not (out / "cells" / cells[1].name / LOCK_FILE).exists()  # released after the run
    finally:
        other.kill()
        other.wait()
    (out / "cells" / cells[0].name / LOCK_FILE).unlink()  # that runner is gone: its cell runs on the rerun
    again = run_study(spec, str(out), command=fake_command, log=lambda msg: None)
    assert [c["status"] for c in again["cells"]] == ["done", "skipped", "skipped"]
    assert [r["method"] for r in _runs(out)] == ["ed", "sd", "dr"]


def test_a_failed_cell_is_reported_and_retried(tmp_path, fake_command):
    out = tmp_path / "study"
    spec = {"grid": [{"method": ["dr", "boom"]}]}
    with pytest.raises(RuntimeError, match="1 cell\\(s\\) failed: \\['boom-"):
        run_study(spec, str(out), command=fake_command, log=lambda msg: None)
    saved = json.loads((out / "study_results.json").read_text())
    assert [c["status"] for c in saved["cells"]] == ["done", "failed"] and not saved["cells"][1]["metrics"]
    with pytest.raises(RuntimeError):
        run_study(spec, str(out), command=fake_command, log=lambda msg: None)
    runs = _runs(out)
    assert [r["method"] for r in runs] == ["dr", "boom", "boom"]  # only the failed cell ran again
    assert "overwrite_output_dir" not in runs[1] and runs[2]["overwrite_output_dir"] == "true"  # started over


def test_validation_runs_before_any_cell(tmp_path, fake_command):
    def reject(argv):
        if "--bogus" in argv:
            raise SystemExit("unknown flag --bogus")

    with pytest.raises(ValueError, match="distill.py rejects"):
        run_study({"grid": [{"method": ["dr"], "bogus": [1]}]}, str(tmp_path / "s"), command=fake_command,
                  validate=reject, log=lambda msg: None)
    assert not _runs(tmp_path / "s")


def _cell(metrics, seed=0, **settings):
    return {"settings": {"seed": seed, **settings}, "metrics": metrics}


def _by_claim(findings, start):
    return next(f for f in findings if f["claim"].startswith(start))


def test_verdicts():
    assert verdict(0.05, 0.01) == "holds"
    assert verdict(-0.05, 0.01) == "does not hold"
    assert verdict(0.005, 0.01) == verdict(-0.01, 0.01) == "within noise"
    assert verdict(0.02, None) == "holds"  # one seed: no spread to compare with


def test_findings_on_made_up_cells():
    cells = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        cells += [
            _cell({"t2i_MRR@10_mean": 0.70 + jitter, "t2i_R@1_mean": 0.60 + jitter, "vqa_mean": 0.40 + jitter,
                   "purity_en": 0.9, "teacher_purity_en": 0.8, "purity_mixed": 0.85, "teacher_purity_mixed": 0.3},
                  seed, method="dr"),
            _cell({"t2i_MRR@10_mean": 0.60 + jitter, "t2i_R@1_mean": 0.50 + jitter, "vqa_mean": 0.45 + jitter},
                  seed, method="ed"),
            _cell({"t2i_MRR@10_mean": 0.695 + jitter, "t2i_R@1_mean": 0.55}, seed, method="fd"),
            _cell({"t2i_R@1_mean": 0.62 + jitter, "vqa_mean": 0.35 + jitter}, seed, method="dr+fd"),
            # VQA skipped (an evaluation-only setting): still compared with the text-anchor DR cells
            _cell({"t2i_R@1_mean": 0.30 + jitter}, seed, method="dr", anchor="image", eval_vqa=False),
            _cell({"t2i_R@1_mean": 0.61 + jitter}, seed, method="dr", anchor_language="de"),
            _cell({"t2i_R@1_mean": 0.20 + jitter}, seed, method="dr", anchor_language="zh"),
            # weak languages: bn at 5% is much worse than bn with all data
            _cell({"t2i_R@1_bn": 0.2 + jitter}, seed, method="dr", world_language_share=["bn:0.05"]),
            # zero-shot sw: the pretrained student (own recipe) beats the from-scratch one
            _cell({"t2i_R@1_sw": 0.3 + jitter}, seed, method="dr", world_language_share=["sw:0"],
                  student="/models/e5", learning_rate=1e-4, projection_init="least_squares"),
            _cell({"t2i_R@1_sw": 0.02 + jitter}, seed, method="dr", world_language_share=["sw:0"]),
        ]
        cells[0 + 10 * seed]["metrics"]["t2i_R@1_bn"] = 0.6 + jitter
    findings = compute_findings(cells)
    assert len(findings) == 8 and all(f["verdict"] in ("holds", "does not hold", "within noise")
                                      for f in findings)
    dr = _by_claim(findings, "DR gives the best retrieval")
    assert dr["measured"]["dr - ed"]["verdict"] == "holds"
    assert dr["measured"]["dr - fd"]["verdict"] == "within noise"  # 0.005 apart, seed std 0.01
    assert dr["verdict"] == "within noise"
    ed = _by_claim(findings, "ED answers VQA")
    assert ed["verdict"] == "holds" and ed["measured"]["ed - dr"]["difference"] == pytest.approx(0.05)
    assert ed["measured"]["ed - dr"]["spread"] == pytest.approx(0.01) and ed["measured"]["ed - dr"]["seeds"] == 3
    assert _by_claim(findings, "text anchors")["measured"]["text - image"]["difference"] == pytest.approx(0.3)
    combo = _by_claim(findings, "DR+FD")
    assert combo["measured"]["retrieval: dr+fd - dr"]["verdict"] == "holds"
    assert combo["measured"]["vqa: dr+fd - dr"]["verdict"] == "holds"  # VQA went down, as claimed
    assert combo["verdict"] == "holds"
    anchors = _by_claim(findings, "English anchors")
    assert anchors["measured"]["en - de"]["verdict"] == "within noise"
    assert anchors["measured"]["en - zh"]["verdict"] == "holds" and anchors["verdict"] == "within noise"
    purity = _by_claim(findings, "the student clusters")
    assert purity["verdict"] == "holds" and purity["measured"]["dr, mixed captions: student - teacher"]["b"] == 0.3
    weak = _by_claim(findings, "languages with little")
    assert weak["verdict"] == "holds"
    assert next(iter(weak["measured"].values()))["difference"] == pytest.approx(0.4)
    zero = _by_claim(findings, "a pretrained multilingual student")
    assert zero["verdict"] == "holds"
    assert next(iter(zero["measured"].values()))["difference"] == pytest.approx(0.28)
    # the opposite outcome reads "does not hold"; no matching cells read "not measured"
    flipped = [_cell({"vqa_mean": 0.5}, method="dr"), _cell({"vqa_mean": 0.3}, method="ed")]
    assert _by_claim(compute_findings(flipped), "ED answers VQA")["verdict"] == "does not hold"
    assert _by_claim(compute_findings(flipped), "text anchors")["verdict"] == "not measured"
    # cells differing in another setting are not compared
    unmatched = [_cell({"vqa_mean": 0.5}, method="dr", max_steps=10), _cell({"vqa_mean": 0.3}, method="ed")]
    assert _by_claim(compute_findings(unmatched), "ED answers VQA")["verdict"] == "not measured"


def test_against_best_single_reads_each_metric_against_its_own_best_single_method():
    from mvld_hf.study import against_best_single, format_against_best_single

    cells = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        cells += [_cell({"t2i_MRR@10_mean": 0.70 + jitter, "vqa_mean": 0.40 + jitter}, seed, method="dr"),
                  _cell({"t2i_MRR@10_mean": 0.60 + jitter, "vqa_mean": 0.50 + jitter}, seed, method="ed"),
                  # the candidate: level with DR on MRR, above ED's VQA beyond the spread
                  _cell({"t2i_MRR@10_mean": 0.705 + jitter, "vqa_mean": 0.55 + 2 * jitter}, seed, method="drg"),
                  _cell({"t2i_MRR@10_mean": 0.65 + jitter, "vqa_mean": 0.45 + jitter}, seed, method="dr+fd")]
    metrics = (("MRR@10", "t2i_MRR@10_mean"), ("VQA acc", "vqa_mean"))
    rows = {(r["method"], r["metric"]): r for r in against_best_single(cells, metrics)}
    assert rows["drg", "MRR@10"]["best"] == "dr" and rows["drg", "VQA acc"]["best"] == "ed"
    assert rows["drg", "MRR@10"]["verdict"] == "within noise"  # +0.005 against a spread of 0.01
    assert rows["drg", "VQA acc"]["verdict"] == "holds" and abs(rows["drg", "VQA acc"]["difference"] - 0.05) < 1e-9
    assert rows["dr+fd", "MRR@10"]["verdict"] == rows["dr+fd", "VQA acc"]["verdict"] == "does not hold"
    assert ("dr", "MRR@10") not in rows  # single methods are the reference, not rows
    text = format_against_best_single(list(rows.values()))
    assert "| *best single method* | DR 70.0 ± 1.0 | ED 50.0 ± 1.0 |" in text
    assert "| drg | 70.5 ± 1.0 (+0.5: within noise) | 55.0 ± 2.0 (+5.0: holds) |" in text
    with pytest.raises(ValueError, match="differ only in method and seed"):
        against_best_single([*cells, _cell({"t2i_MRR@10_mean": 0.3}, 0, method="dr", anchor="image")], metrics)


def test_variant_labels_leave_out_evaluation_settings_and_a_pretrained_students_recipe():
    cells = [_cell({}, method="dr"), _cell({}, method="dr", anchor="image", eval_vqa=False),
             _cell({}, method="dr", learning_rate=1e-3),
             _cell({}, method="dr", student="/models/e5", learning_rate=1e-4, projection_init="least_squares")]
    assert list(group_variants(cells)) == ["dr", "dr, image anchor", "dr, learning_rate=0.001",
                                           "dr, student e5"]
    # max_steps differs only for the pretrained student (its own recipe): no "max_steps=..." in any name
    cells = [_cell({}, method="dr", max_steps=300), _cell({}, method="ed", max_steps=300),
             _cell({}, method="dr", student="/models/e5", max_steps=100)]
    assert list(group_variants(cells)) == ["dr", "ed", "dr, student e5"]


def test_cell_metrics_flattens_eval_results():
    results = {"student": {"retrieval": {"de": {"t2i_R@1": 0.5, "t2i_MRR@10": 0.6}, "all": {"t2i_R@1": 0.1},
                                         "mean": {"t2i_R@1": 0.5}},
                           "purity": {"de": 0.7, "mixed": 0.6}, "vqa": {"de": {"accuracy": 0.4},
                                                                     "all": {"accuracy": 0.4}},
                           "consistency": {"de": {"top1_agreement": 0.9, "cosine": 0.8}}},
               "teacher": {"retrieval": {"en": {"t2i_R@1": 0.7}}}}
    assert cell_metrics(results) == {"t2i_R@1_de": 0.5, "t2i_MRR@10_de": 0.6, "t2i_R@1_mean": 0.5,
                                     "purity_de": 0.7, "purity_mixed": 0.6, "vqa_de": 0.4, "consistency_de": 0.9,
                                     "consistency_cosine_de": 0.8, "teacher_t2i_R@1_en": 0.7}
    assert os.path.basename(__file__) == "test_study.py"


# ------------------------------------------------------------------------------ the unified study (issue 25)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDIDATES = {"drg", "drb"}
PAPER_METHODS = {*registry.PAPER_METHODS, *registry.PAPER_COMBINATIONS}


def test_unified_study_grids_compare_the_candidates_with_every_method(monkeypatch):
    """unified.yaml: every single method, both paper combinations and the candidates, from-scratch and
    pretrained students, 3 seeds each; its from-scratch cells are the offline study's (same settings, so the two
    studies' cells compare like for like); the smoke and reduced grids are subsets of it."""
    from mvld_hf.cli.distill import parse_args

    monkeypatch.setenv("MVLD_HF_E5_SMALL", "/models/e5-small")
    full = expand_grid(load_spec(os.path.join(ROOT, "configs/study/unified.yaml")))
    assert len(full) == 54
    for student in ("offline", "/models/e5-small"):
        cells = [c for c in full if c.settings.get("student", "offline") == student]
        assert {c.settings["method"] for c in cells} == PAPER_METHODS | CANDIDATES
        assert sorted({c.settings["seed"] for c in cells}) == [0, 1, 2] and len(cells) == 27
    offline = expand_grid(load_spec(os.path.join(ROOT, "configs/study/offline.yaml")))
    offline_fd = {c.fingerprint for c in offline if c.settings["method"] in PAPER_METHODS and len(c.settings) == 8}
    unified_fd = {c.fingerprint for c in full if c.settings["method"] in PAPER_METHODS and "student" not in c.settings}
    assert unified_fd == offline_fd and len(unified_fd) == 21
    for name in ("unified-smoke", "unified-reduced", "fd-stability"):
        cells = expand_grid(load_spec(os.path.join(ROOT, f"configs/study/{name}.yaml")))
        if name != "fd-stability":
            assert CANDIDATES <= {c.settings["method"] for c in cells}
        for cell in cells:
            parse_args(cell.argv("/tmp/x"))  # valid distill.py flags (--method drg / drb among them)


def test_unified_smoke_grid_runs_through_the_study(tmp_path, fake_command):
    """The smoke grid as shipped, through run_study (a stand-in distill.py; tests/losses/test_dr_candidates.py
    trains drg and drb through the real trainer, tests/examples/test_study_main.py runs real cells)."""
    spec = load_spec(os.path.join(ROOT, "configs/study/unified-smoke.yaml"))
    results = run_study(spec, str(tmp_path / "study"), command=fake_command, log=lambda msg: None)
    assert [c["method"] for c in results["cells"]] == ["drg", "drb", "dr", "ed"]
    assert {c["status"] for c in results["cells"]} == {"done"}
    assert all(r["max_steps"] == "300" and r["seed"] == "0" for r in _runs(tmp_path / "study"))
    md = (tmp_path / "study" / "study.md").read_text()
    assert "| drg | 1 |" in md and "| drb | 1 |" in md
