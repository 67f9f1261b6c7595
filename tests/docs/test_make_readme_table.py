"""docs/make_readme_table.py: the README's offline figures are generated from the committed results JSON."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "docs", "results", "offline_demo.json")


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_readme_table", os.path.join(ROOT, "docs",
                                                                                    "make_readme_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _side(r1: dict, purity: dict) -> dict:
    return {"retrieval": {lang: {"t2i_R@1": v, "t2i_R@10": min(1.0, 2 * v)} for lang, v in r1.items()},
            "purity": purity}


def test_table_and_sentence_follow_the_json(script, tmp_path):
    results = {"teacher": _side({"en": 0.5, "de": 0.01, "ja": 0.02}, {"en": 0.8}),
               "student": _side({"en": 0.45, "de": 0.4, "ja": 0.48}, {"mixed": 0.9}),
               "meta": {"method": "dr", "images": 10, "captions": 30}}
    block = script.render(results)
    lines = block.splitlines()
    assert lines[0] == "| held-out T2I R@1 (%) | en | de | ja |"  # the world's language order
    assert lines[2] == "| teacher (English only) | **50.0** | 1.0 | 2.0 |"
    assert lines[3] == "| student (DR) | 45.0 | 40.0 | 48.0 |"
    assert lines[4] == "| student / teacher-English | 0.90 | 0.80 | 0.96 |"
    assert "at least 0.80x the teacher's English R@1 (lowest: de)" in block and "R@10 is 80.0-96.0%" in block
    assert "90.0% for the student (teacher, en alone: 80.0%)" in block
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- offline-results:start -->\nold\n<!-- offline-results:end -->\nafter\n")
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert script.main([str(tmp_path / "r.json"), "--readme", str(readme), "--check"]) == 1
    assert script.main([str(tmp_path / "r.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text and block in text
    assert script.main([str(tmp_path / "r.json"), "--readme", str(readme), "--check"]) == 0


@pytest.mark.skipif(not os.path.isfile(RESULTS), reason="docs/results/offline_demo.json not committed yet")
def test_readme_figures_are_the_committed_json(script):
    """The README's offline table is exactly what the committed JSON gives (edit both or neither)."""
    assert script.main([RESULTS, "--readme", os.path.join(ROOT, "README.md"), "--check"]) == 0
