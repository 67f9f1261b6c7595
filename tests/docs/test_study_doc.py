"""docs/study.md: the offline study's findings and tables are what mvld_hf.study computes from the committed
results (docs/results/study_offline.json, the study's study_results.json, copied by docs/make_study_doc.py)."""
import importlib.util
import json
import os

import pytest

from mvld_hf.losses.registry import PAPER_COMBINATIONS, PAPER_METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "docs", "results", "study_offline.json")


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_study_doc", os.path.join(ROOT, "docs", "make_study_doc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results():
    with open(RESULTS, encoding="utf-8") as f:
        return json.load(f)


def test_the_committed_study_is_the_full_grid(results):
    cells = results["cells"]
    assert all(c["status"] in ("done", "skipped") and c.get("metrics") for c in cells)
    assert {c["method"] for c in cells} >= {*PAPER_METHODS, *PAPER_COMBINATIONS}
    assert sorted({c["settings"]["seed"] for c in cells}) == [0, 1, 2]
    assert {c["settings"].get("anchor", "text") for c in cells} == {"text", "image"}


def test_doc_block_follows_the_json(script, results):
    with open(os.path.join(ROOT, "docs", "study.md"), encoding="utf-8") as f:
        doc = f.read()
    block = script.render(results, "study/offline")
    assert script.START + "\n" + block + script.END in doc
    for name in script.PLOTS:
        assert os.path.getsize(os.path.join(ROOT, "docs", "study", "offline", name)) > 5000


def test_block_replacement_touches_only_the_block(script):
    text = f"intro\n{script.START}\nold\n{script.END}\nafter\n"
    assert script.replace_block(text, "new\n") == f"intro\n{script.START}\nnew\n{script.END}\nafter\n"
    with pytest.raises(SystemExit, match="no"):
        script.replace_block("no markers", "x")


def _other_studies():
    folder = os.path.join(ROOT, "docs", "results")
    return sorted(n[len("study_"):-len(".json")] for n in os.listdir(folder)
                  if n.startswith("study_") and n.endswith(".json") and n != "study_offline.json")


@pytest.mark.parametrize("name", _other_studies())
def test_every_other_committed_study_has_its_block(script, name):
    """docs/results/study_NAME.json (e.g. unified-reduced, issue 25) is rendered in docs/study.md between its
    own markers, with the table against the best single method when it holds combinations or candidates."""
    with open(os.path.join(ROOT, "docs", "results", f"study_{name}.json"), encoding="utf-8") as f:
        results = json.load(f)
    with open(os.path.join(ROOT, "docs", "study.md"), encoding="utf-8") as f:
        doc = f.read()
    plots = tuple(p for p in script.PLOTS if os.path.isfile(os.path.join(ROOT, "docs", "study", name, p)))
    start, end = script.markers(name)
    assert start + "\n" + script.render(results, f"study/{name}", plots) + end in doc
    if {c["method"] for c in results["cells"]} - set(PAPER_METHODS):
        assert "### Against the best single method" in doc.split(start, 1)[1].split(end, 1)[0]


def test_named_blocks_have_their_own_markers(script):
    start, end = script.markers("u")
    assert (start, end) == ("<!-- study-results:u:start -->", "<!-- study-results:u:end -->")
    text = f"{script.START}\noffline\n{script.END}\n{start}\nold\n{end}\n"
    assert script.replace_block(text, "new\n", "u") == f"{script.START}\noffline\n{script.END}\n{start}\nnew\n{end}\n"
