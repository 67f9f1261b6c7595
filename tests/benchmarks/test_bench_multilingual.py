"""benchmarks/bench_multilingual.py (the 60-language grid) and docs/make_multilingual_doc.py: language selection,
scripts, the held-out split and the page's tables (the grid itself needs the real models: docs/multilingual.md)."""

import argparse
import importlib.util
import json
import os

import pytest

from tests.benchmarks.test_bench_gpu import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def doc_script():
    spec = importlib.util.spec_from_file_location("make_multilingual_doc",
                                                  os.path.join(ROOT, "docs", "make_multilingual_doc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dominant_script_reads_unicode_names():
    bench = load_benchmark("bench_multilingual")
    assert bench.dominant_script(["Ein Hund läuft"]) == "Latin"
    assert bench.dominant_script(["Собака бежит"]) == "Cyrillic"
    assert bench.dominant_script(["狗在跑"]) == "Han"
    assert bench.dominant_script(["犬が走っています"]) == "Kana+Han"
    assert bench.dominant_script(["הכלב רץ"]) == "Hebrew"
    assert bench.dominant_script(["123 !?"]) == "none"


def test_select_languages_drops_english_and_regional_duplicates():
    bench = load_benchmark("bench_multilingual")
    pairs = {code: dict.fromkeys(range(n)) for code, n in
             [("de", 10), ("is", 10), ("is_IS", 10), ("pt_BR", 10), ("pt_PT", 10), ("pt", 10), ("en_GB", 10),
              ("sr_Latn", 10), ("tr", 10), ("tr_TR", 10), ("ka", 3)]}
    assert bench.select_languages(pairs, min_pairs=5) == ["de", "is", "pt", "pt_BR", "sr_Latn", "tr"]


def test_held_out_sources_never_train_and_the_budget_is_balanced():
    bench = load_benchmark("bench_multilingual")
    english = [f"sentence number {i} here" for i in range(200)]
    pairs = {"de": {e: f"de {e}" for e in english}, "fr": {e: f"fr {e}" for e in english[:120]},
             "ru": {e: f"предложение {e[16:]}" for e in english[50:]}}
    args = argparse.Namespace(seed=0, test_fraction=0.2, eval_rows=15, steps=6, batch_size=10)
    train, test, info = bench.build_corpus(pairs, list(pairs), args)
    held = {r["english"] for r in test}
    assert held and not held & {r["english"] for r in train}
    assert len(train) == 60 and all(info[lang]["train_rows"] == 20 for lang in pairs)
    assert all(info[lang]["test_rows"] == sum(r["language"] == lang for r in test) <= 15 for lang in pairs)
    assert info["ru"]["script"] == "Cyrillic"


def fake_results(layers_scores: dict) -> dict:
    languages = {"de": {"script": "Latin", "test_rows": 9}, "ru": {"script": "Cyrillic", "test_rows": 9},
                 "ja": {"script": "Kana+Han", "test_rows": 9}, "fr": {"script": "Latin", "test_rows": 9}}
    runs = {}
    for key, scores in layers_scores.items():
        layers, run = key.split(":") if ":" in key else ("12L", key)
        table = {lang: {"s2t_acc": s, "spread": 0.1} for lang, s in zip(languages, scores)}
        table["mean"] = {"s2t_acc": sum(scores) / 4, "spread": 0.1}
        runs[key] = {"layers": int(layers.rstrip("L")), "run": run, "train_seconds": 1.0, "table": table}
    meta = {"command": "bench", "train_rows": 40, "steps": 2, "batch_size": 20, "lr": 5e-5, "max_length": 32}
    return {"meta": meta, "languages": languages, "runs": runs}


def test_summary_table_groups_scripts_and_compares_sizes(tmp_path):
    doc = doc_script()
    results = doc.merge([fake_results({"12L:warm": [0.8, 0.6, 0.4, 0.9], "12L:dr": [1.0, 0.8, 0.6, 1.0],
                                       "6L:dr": [0.9, 0.6, 0.4, 0.9]})])
    assert doc.weakest(results) == ["ja"]
    table = doc.summary_table(results)
    dr6 = next(line for line in table.splitlines() if line.startswith("| 6 | dr |"))
    cells = [c.strip() for c in dr6.strip("|").split("|")]
    assert cells[2] == "0.700"  # all four
    assert cells[3] == "0.900"  # Latin: de, fr
    assert cells[4] == "0.600" and cells[5] == "0.400"  # Cyrillic, other scripts
    assert cells[7] == "-0.150"  # against 12 layers
    names = doc.heat_maps(results, str(tmp_path))
    assert names == ["multilingual_12L.png", "multilingual_6L.png"]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)


def test_merge_refuses_other_languages():
    doc = doc_script()
    a, b = fake_results({"12L:dr": [1, 1, 1, 1]}), fake_results({"6L:dr": [1, 1, 1, 1]})
    b["languages"].pop("ja")
    with pytest.raises(SystemExit, match="other languages"):
        doc.merge([a, b])


def test_committed_page_matches_committed_results(tmp_path):
    """docs/multilingual.md's generated block is what the committed JSON renders to (no hand-edited numbers)."""
    paths = sorted(p for p in os.listdir(os.path.join(ROOT, "docs", "results")) if p.startswith("multilingual_"))
    if not paths:
        pytest.skip("no committed multilingual results")
    doc = doc_script()
    parts = [json.load(open(os.path.join(ROOT, "docs", "results", p), encoding="utf-8")) for p in paths]
    block = doc.render(doc.merge(parts), out_dir=str(tmp_path))
    page = open(os.path.join(ROOT, "docs", "multilingual.md"), encoding="utf-8").read()
    assert block in page


def test_other_training_seeds_merge_into_mean_and_spread():
    doc = doc_script()
    a = fake_results({"6L:dr": [1.0, 0.8, 0.6, 1.0]})
    b = fake_results({"6L:dr": [0.8, 0.6, 0.4, 0.8]})
    b["runs"]["6L:dr"]["seed"] = 1
    results = doc.merge([a, b])
    run = results["runs"]["6L:dr"]
    assert run["seeds"] == {0: pytest.approx(0.85), 1: pytest.approx(0.65)}
    assert run["table"]["de"]["s2t_acc"] == pytest.approx(0.9)
    line = next(x for x in doc.summary_table(results).splitlines() if x.startswith("| 6 | dr |"))
    assert "0.750 ± 0.141" in line
    with pytest.raises(SystemExit, match="seed 1 is in two files"):
        doc.merge([a, b, b])
