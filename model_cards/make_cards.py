#!/usr/bin/env python
"""Regenerate the model family's cards: one per model the family publishes, each paper config in ``configs/*.yaml``
(``configs/study/`` holds study grids, not models) including ``offline_dr.yaml``, the offline demo student.

    python model_cards/make_cards.py           # write model_cards/<config>.md and model_cards/README.md
    python model_cards/make_cards.py --check   # write nothing; exit 1 if a committed card is out of date

Each card is rendered by the package's own card code (:func:`mvld_hf.model_card.render_model_card`) from the
run record that ``mvld-distill`` would write for that config (:func:`mvld_hf.cli.reports.run_record`, from the
config parsed by :func:`mvld_hf.cli.arguments.parse_args`). A model whose run's results are committed
(:data:`MEASURED`) gets them as its evaluation; every other card says plainly, under its title, that the model
is pending: not trained and not measured yet. Fields only an export knows (sizes on disk, the backbone's model
type of a Hub student, the projection width of a Hub teacher) render as "n/a", "not exported yet", "the
teacher's".
The output is deterministic (no dates, paths or versions of this machine), so ``--check`` and
``tests/test_model_cards.py`` can compare it with the committed files.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARDS_DIR = os.path.join(ROOT, "model_cards")

#: config name -> the committed results of the run of that config (``docs/results/*.json``, with provenance)
MEASURED = {"offline_dr": "docs/results/offline_demo.json"}

PENDING = ("> **Status: pending: not trained / not measured yet.** This card is rendered from the config "
           "`configs/{config}.yaml` alone: nothing has been trained or exported from it, so it has no weights, no "
           "evaluation results and no sizes; the image route shown is the export's default (the teacher's vision "
           "tower). Train it with `accelerate launch examples/distill.py configs/{config}.yaml`.")
MEASURED_TEXT = ("> **Status: trained and measured.** `configs/{config}.yaml` was trained and evaluated by "
                 "`{command}` on {date} ({machine}); the evaluation below is `{file}`. The weights are not "
                 "published on the Hub: sizes on disk are not recorded here.")


def config_names() -> list[str]:
    return sorted(os.path.basename(p)[: -len(".yaml")] for p in glob.glob(os.path.join(ROOT, "configs", "*.yaml")))


def run_record_of(config: str) -> tuple[dict, object, object]:
    """(run record, model arguments, training arguments) of ``configs/<config>.yaml`` as ``mvld-distill`` would
    record them, without loading any model or data (rows are not counted: ``rows`` stays ``None``)."""
    from mvld_hf.cli.arguments import OFFLINE, parse_args
    from mvld_hf.cli.reports import run_record

    # bf16 is validated against the GPU of this machine and is not on the card: off, so every machine agrees
    model_args, data_args, args = parse_args([os.path.join(ROOT, "configs", f"{config}.yaml"), "--bf16", "false"])
    not_loaded = dataclasses.replace(data_args, streaming=True)  # the record then counts no rows
    teacher = SimpleNamespace(name_or_path=model_args.teacher)
    record = run_record(model_args, not_loaded, args, None, teacher, global_step=None)
    if model_args.teacher == OFFLINE and not record["languages"]:
        from mvld_hf.synthetic import LANGUAGES

        record["languages"] = sorted(data_args.languages or LANGUAGES)  # the offline world trains on them all
    return record, model_args, args


def export_info(model_args, args) -> dict:
    """What :class:`mvld_hf.export.ExportResult` would say, as far as the config knows it (no export was made)."""
    from mvld_hf.cli.arguments import OFFLINE

    offline = model_args.teacher == OFFLINE
    if offline:
        from mvld_hf.synthetic.teacher import DEFAULT_PROJECTION_DIM
    return {
        "path": None, "include_images": True, "image_route": "vision_tower",
        # the offline teacher is a local folder: the card describes it from the run record instead
        "teacher_name_or_path": None if offline else model_args.teacher,
        "teacher_revision": model_args.teacher_revision, "distillation_method": args.method,
        "backbone_model_type": "xlm-roberta" if model_args.student == OFFLINE else "not exported yet",
        "backbone_name_or_path": None if model_args.student == OFFLINE else model_args.student,
        "pooling": model_args.pooling, "projection_dim": DEFAULT_PROJECTION_DIM if offline else "the teacher's",
        "projection_bias": True, "max_seq_length": args.max_length, "text_route_bytes": None,
        "image_route_bytes": None, "teacher_fp32_bytes": None,
    }


def render_card(config: str) -> tuple[str, dict]:
    """The card of ``configs/<config>.yaml`` and its index row."""
    from mvld_hf.model_card import render_model_card

    record, model_args, args = run_record_of(config)
    results, status = None, PENDING.format(config=config)
    if config in MEASURED:
        with open(os.path.join(ROOT, MEASURED[config]), encoding="utf-8") as f:
            results = json.load(f)
        status = MEASURED_TEXT.format(config=config, **{**results["provenance"], "file": MEASURED[config]})
    card = render_model_card(export_info(model_args, args), eval_results=results, run=record, model_name=config)
    text = str(card)
    title = f"\n# {config}\n"
    assert title in text, "the card template has no '# <title>' line to put the status under"
    text = text.replace(title, f"{title}\n{status}\n", 1)
    row = {"model": config, "teacher": record["teacher"]["hub_id"] or "offline-world CLIP (local)",
           "student": record["student"]["base"] or "offline (random init)", "method": args.method,
           "status": "trained + measured" if config in MEASURED else "pending"}
    return text.rstrip("\n") + "\n", row


def index(rows: list[dict]) -> str:
    lines = ["# Model cards of the mvld_hf family", "",
             "One card per model the family publishes: each paper config in `configs/` and the offline demo "
             "student (`offline_dr`, what `make demo` trains). The cards are rendered by the package's card code "
             "(`mvld_hf/model_card.py`) from each model's run record; regenerate them with "
             "`python model_cards/make_cards.py` (`--check` compares; `tests/test_model_cards.py` does too).", "",
             "| model | teacher | student | method | status |", "|---|---|---|---|---|"]
    lines += [f"| [{r['model']}]({r['model']}.md) | `{r['teacher']}` | `{r['student']}` | `{r['method']}` | "
              f"{r['status']} |" for r in rows]
    return "\n".join(lines) + "\n"


def render_all() -> dict[str, str]:
    """``{file name in model_cards/: text}`` for every card and the index."""
    files, rows = {}, []
    for config in config_names():
        files[f"{config}.md"], row = render_card(config)
        rows.append(row)
    files["README.md"] = index(rows)
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a card is out of date")
    check = parser.parse_args(argv).check
    stale = []
    for name, text in render_all().items():
        path = os.path.join(CARDS_DIR, name)
        old = open(path, encoding="utf-8").read() if os.path.isfile(path) else None
        if old != text:
            stale.append(name)
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if check and stale:
        print(f"out of date: {', '.join(stale)}; run python model_cards/make_cards.py", file=sys.stderr)
        return 1
    print(f"{'wrote' if stale else 'up to date:'} {', '.join(stale) or 'all cards'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
