#!/usr/bin/env python
"""Copy a finished study into the docs: its results JSON, its plots, and its findings and tables into
docs/study.md (between ``<!-- study-results:start -->`` and ``<!-- study-results:end -->``).

    python docs/make_study_doc.py outputs/study/offline                 # copy + rewrite docs/study.md
    python docs/make_study_doc.py outputs/study/offline --check         # exit 1 if docs/study.md differs

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


def render(results: dict, plot_dir: str) -> str:
    """The generated part of docs/study.md: cell count and time, findings, tables, plot links."""
    from mvld_hf.study import compute_findings, format_findings, format_tables

    cells = [c for c in results["cells"] if c.get("metrics")]
    minutes = sum(c.get("wall_s") or 0 for c in results["cells"]) / 60
    lines = [f"{len(cells)} of {len(results['cells'])} cells finished; their wall times add up to "
             f"{minutes:.0f} min (each cell's `wall_s` in the JSON).\n",
             "### Findings\n", format_findings(compute_findings(cells)), "### Tables\n", format_tables(cells),
             "### Plots\n", *[f"![{name}]({plot_dir}/{name.replace('@', '%40')})\n" for name in PLOTS]]
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"docs/study.md has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    return head + START + "\n" + block + END + rest.split(END, 1)[1]


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
    new = replace_block(doc.read_text(encoding="utf-8"), render(results, plot_dir))
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
