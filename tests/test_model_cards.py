"""``model_cards/`` holds the family's cards, rendered by ``model_cards/make_cards.py`` with the package's card
code from each model's run record: the committed files must be what the script renders now (in sync)."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARDS = os.path.join(ROOT, "model_cards")


@pytest.fixture(scope="module")
def rendered():
    spec = importlib.util.spec_from_file_location("make_cards", os.path.join(CARDS, "make_cards.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.render_all()


def test_committed_cards_are_in_sync_with_their_records(rendered):
    _, files = rendered
    committed = sorted(name for name in os.listdir(CARDS) if name.endswith(".md"))
    assert committed == sorted(files), "run python model_cards/make_cards.py"
    for name, text in files.items():
        with open(os.path.join(CARDS, name), encoding="utf-8") as f:
            assert f.read() == text, f"model_cards/{name} is out of date: run python model_cards/make_cards.py"


def test_one_card_per_paper_config_with_its_status(rendered):
    module, files = rendered
    configs = sorted(n[: -len(".yaml")] for n in os.listdir(os.path.join(ROOT, "configs")) if n.endswith(".yaml"))
    assert sorted(files) == sorted([f"{c}.md" for c in configs] + ["README.md"])
    assert "offline_dr" in module.MEASURED
    for config in configs:
        card = files[f"{config}.md"]
        row = next(line for line in files["README.md"].splitlines() if line.startswith(f"| [{config}]("))
        if config in module.MEASURED:
            assert "Status: trained and measured" in card and row.endswith("| trained + measured |")
            assert "model-index:" in card
        else:  # pending: said plainly, and no numbers claimed
            assert "Status: pending: not trained / not measured yet" in card and row.endswith("| pending |")
            assert "model-index:" not in card and "No evaluation results" in card


def test_measured_card_carries_the_committed_results(rendered):
    module, files = rendered
    with open(os.path.join(ROOT, module.MEASURED["offline_dr"]), encoding="utf-8") as f:
        results = json.load(f)
    card = files["offline_dr.md"]
    de = results["student"]["retrieval"]["de"]["t2i_R@1"]
    assert f"value: {round(de, 4)}" in card  # the model-index entry of German T2I R@1 (fraction, 4 digits)
    rows = [line for line in card.splitlines() if line.startswith("| de |")]
    assert rows and f"{100 * de:.1f}" in rows[0]  # the student's table row (percent)
    assert "license: apache-2.0" in card
