#!/usr/bin/env python
"""Regenerate the README's offline results (table + summary sentence) from a committed results JSON.

    python docs/make_readme_table.py docs/results/offline_demo.json            # rewrite README.md in place
    python docs/make_readme_table.py docs/results/offline_demo.json --check    # exit 1 if README.md differs
    python docs/make_readme_table.py docs/results/offline_demo.json --plot docs/retrieval_per_language.png
    python docs/make_readme_table.py docs/results/offline_demo.json --import-run outputs/distill-offline \
        --command "make demo" --machine "2-core shared CPU" --wall-time "41 min"   # copy a run's JSON in first

The JSON is the ``eval_results.json`` that the main job (``make demo``) writes, copied into ``docs/results/``
with a ``"provenance"`` entry (``command``, ``date``, ``machine``, ``wall_time``). The README part between
``<!-- offline-results:start -->`` and ``<!-- offline-results:end -->`` is replaced; nothing else is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

START, END = "<!-- offline-results:start -->", "<!-- offline-results:end -->"
ROOT = Path(__file__).resolve().parent.parent
#: the offline world's language order (mvld_hf.synthetic.LANGUAGES): English first, then by script
LANGUAGE_ORDER = ["en", "de", "fr", "es", "sw", "ru", "zh", "ja", "th", "hi", "bn", "te", "ar"]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def render(results: dict) -> str:
    """The README block (without the markers) for one results JSON."""
    teacher, student = results["teacher"]["retrieval"], results["student"]["retrieval"]
    meta, provenance = results.get("meta", {}), results.get("provenance", {})
    languages = [lang for lang in LANGUAGE_ORDER if lang in student]
    languages += sorted(lang for lang in student if lang not in languages and lang not in ("all", "mean"))
    anchor = meta.get("anchor_language", "en")
    teacher_en = teacher[anchor]["t2i_R@1"]
    ratios = {lang: student[lang]["t2i_R@1"] / teacher_en if teacher_en else None for lang in languages}
    method = meta.get("method", "?").upper()
    lines = []
    if provenance:
        lines.append(f"Measured with `{provenance['command']}` on {provenance['date']} ({provenance['machine']}; "
                     f"{provenance['wall_time']}); the numbers below are generated from "
                     f"[`{provenance['file']}`]({provenance['file']}) by `python docs/make_readme_table.py "
                     f"{provenance['file']}`. {meta.get('images', '?')} held-out images, "
                     f"{meta.get('captions', '?')} captions.")
        lines.append("")
    lines.append("| held-out T2I R@1 (%) | " + " | ".join(languages) + " |")
    lines.append("|---|" + "---|" * len(languages))
    lines.append("| teacher (English only) | " + " | ".join(
        f"**{_pct(teacher[lang]['t2i_R@1'])}**" if lang == anchor else _pct(teacher[lang]["t2i_R@1"])
        for lang in languages) + " |")
    lines.append(f"| student ({method}) | " + " | ".join(_pct(student[lang]["t2i_R@1"]) for lang in languages)
                 + " |")
    lines.append(f"| student / teacher-{'English' if anchor == 'en' else anchor} | "
                 + " | ".join("n/a" if ratios[lang] is None else f"{ratios[lang]:.2f}" for lang in languages) + " |")
    lines.append("")
    r10 = [student[lang]["t2i_R@10"] for lang in languages]
    sentence = f"Student R@10 is {_pct(min(r10))}-{_pct(max(r10))}% across languages."
    if teacher_en:
        worst = min(ratios, key=ratios.get)
        sentence = (f"Every language reaches at least {ratios[worst]:.2f}x the teacher's English R@1 (lowest: "
                    f"{worst}); student R@10 is {_pct(min(r10))}-{_pct(max(r10))}% across languages.")
    purity_s, purity_t = results["student"].get("purity", {}), results["teacher"].get("purity", {})
    if "mixed" in purity_s and anchor in purity_t:
        sentence += (f" k-means purity over all {len(languages)} languages mixed: {_pct(purity_s['mixed'])}% for "
                     f"the student (teacher, {anchor} alone: {_pct(purity_t[anchor])}%).")
    lines.append(sentence)
    if provenance:
        lines += ["", "![per-language R@1](docs/retrieval_per_language.png)"]
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README has no {START} ... {END} block")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results JSON (docs/results/offline_demo.json)")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the README is out of date")
    parser.add_argument("--plot", help="also draw the per-language R@1 plot from the JSON into this PNG")
    parser.add_argument("--import-run", help="first copy RUN/eval_results.json to RESULTS, with a provenance entry")
    parser.add_argument("--command", help="--import-run: the command that produced the run")
    parser.add_argument("--machine", help="--import-run: the machine it ran on")
    parser.add_argument("--wall-time", help="--import-run: how long it took")
    args = parser.parse_args(argv)
    if args.import_run:
        import datetime

        source = Path(args.import_run) / "eval_results.json"
        run = json.loads(source.read_text(encoding="utf-8"))
        when = datetime.datetime.fromtimestamp(source.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d")
        run["meta"] = {k: v for k, v in run.get("meta", {}).items() if k != "teacher"}  # a local cache path
        run["provenance"] = {"command": args.command, "date": when, "machine": args.machine,
                             "wall_time": args.wall_time, "file": Path(args.results).as_posix()}
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(run, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    readme = Path(args.readme).read_text(encoding="utf-8")
    updated = replace_block(readme, render(results))
    if args.check:
        if updated != readme:
            print(f"{args.readme} is out of date: run python docs/make_readme_table.py {args.results}",
                  file=sys.stderr)
            return 1
        return 0
    Path(args.readme).write_text(updated, encoding="utf-8")
    print(f"updated {args.readme} from {args.results}")
    if args.plot:
        from mvld_hf.evaluation.report import plot_per_language

        meta = results.get("meta", {})
        plot_per_language({"teacher": results["teacher"], "student": results["student"]}, metric="t2i_R@1",
                          section="retrieval", path=args.plot, ylabel="text-to-image R@1 (%)",
                          xlabel="caption language",
                          title="Text-to-image retrieval R@1 per caption language, held-out offline world\n"
                                f"student ({meta.get('method', '?')}, {meta.get('anchor', '?')} anchors) vs its "
                                "English-only teacher")
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
