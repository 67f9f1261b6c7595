#!/usr/bin/env python
"""Copy a finished study into the docs: its results JSON, its plots, and its findings and tables into
docs/study.md (between ``<!-- study-results:start -->`` and ``<!-- study-results:end -->`` for the offline
study, ``<!-- study-results:NAME:start -->`` ... ``:end -->`` for any other study NAME). A study with
combinations or candidate objectives also gets their table against the best single method of each metric.

    python docs/make_study_doc.py outputs/study/offline                 # copy + rewrite docs/study.md
    python docs/make_study_doc.py outputs/study/offline --check         # exit 1 if docs/study.md differs
    python docs/make_study_doc.py outputs/study/unified-reduced         # the issue-25 block

The block is recomputed with :mod:`mvld_hf.study` from the copied ``study_results.json``
(``docs/results/study_<name>.json``), so what the doc says is what the committed JSON gives;
``tests/docs/test_study_doc.py`` checks that. Nothing outside the markers is touched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

START, END = "<!-- study-results:start -->", "<!-- study-results:end -->"
ROOT = Path(__file__).resolve().parent.parent
PLOTS = ("heatmap_t2i_R@1.png", "retrieval_vs_vqa.png", "bars_mrr.png")


def markers(name: str) -> tuple[str, str]:
    """The block markers of study ``name`` in docs/study.md (the offline study keeps the unnamed ones)."""
    if name == "offline":
        return START, END
    return f"<!-- study-results:{name}:start -->", f"<!-- study-results:{name}:end -->"


def render(results: dict, plot_dir: str, plots: tuple[str, ...] = PLOTS) -> str:
    """The generated part of docs/study.md: cell count and time, findings, tables, plot links; for a study with
    combinations or candidates, their reading against the best single method."""
    from mvld_hf.study import (
        against_best_single,
        compute_findings,
        format_against_best_single,
        format_findings,
        format_tables,
    )

    cells = [c for c in results["cells"] if c.get("metrics")]
    minutes = sum(c.get("wall_s") or 0 for c in results["cells"]) / 60
    lines = [f"{len(cells)} of {len(results['cells'])} cells finished; their wall times add up to "
             f"{minutes:.0f} min (each cell's `wall_s` in the JSON).\n"]
    try:
        rows = against_best_single(cells)
    except ValueError:  # cells differing in more than method and seed (the offline study): findings compare them
        rows = []
    if rows:
        lines += ["### Against the best single method (mean ± std over seeds, %; the difference in points and "
                  "the verdict on \"above the best single method\", against the larger seed spread)\n",
                  format_against_best_single(rows)]
    lines += ["### Findings\n", format_findings(compute_findings(cells)), "### Tables\n", format_tables(cells)]
    if plots:
        lines += ["### Plots\n", *[f"![{name}]({plot_dir}/{name.replace('@', '%40')})\n" for name in plots]]
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str, name: str = "offline") -> str:
    start, end = markers(name)
    if start not in text or end not in text:
        raise SystemExit(f"docs/study.md has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    return head + start + "\n" + block + end + rest.split(end, 1)[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study_dir", help="a study's output folder (holds study_results.json and the plots)")
    p.add_argument("--doc", default=str(ROOT / "docs" / "study.md"))
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if the doc differs")
    args = p.parse_args(argv)
    study = Path(args.study_dir)
    results = json.loads((study / "study_results.json").read_text(encoding="utf-8"))
    name = results.get("name") or study.name
    plot_dir = f"study/{name}"
    doc = Path(args.doc)
    plots = tuple(p for p in PLOTS if (study / p).is_file() or (doc.parent / plot_dir / p).is_file())
    new = replace_block(doc.read_text(encoding="utf-8"), render(results, plot_dir, plots), name)
    if args.check:
        same = new == doc.read_text(encoding="utf-8")
        print("docs/study.md is up to date" if same else "docs/study.md differs from the study's results")
        return 0 if same else 1
    target = ROOT / "docs" / "results" / f"study_{name}.json"
    target.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (doc.parent / plot_dir).mkdir(parents=True, exist_ok=True)
    for plot in PLOTS:
        if (study / plot).is_file():
            shutil.copyfile(study / plot, doc.parent / plot_dir / plot)
    doc.write_text(new, encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}, {plot_dir}/*.png and {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
