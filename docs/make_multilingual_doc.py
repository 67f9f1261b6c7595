"""Render the multilingual grid (``benchmarks/bench_multilingual.py`` results) into ``docs/multilingual.md``.

Writes, between the ``<!-- grid:start -->`` and ``<!-- grid:end -->`` markers of the page (the verdict around them
is written by hand from these numbers):

- the summary table: per student size and run, top-1 over all languages, per script group, over the weakest
  quarter of languages (by the 12-layer warm start) and the change against the same run with 12 layers;
- one heat map per student size (run x language, languages ordered by script, then by the warm start's score),
  ``docs/multilingual_<N>L.png``;
- the per-language table (every run, every language) in a collapsed block.

    python docs/make_multilingual_doc.py docs/results/multilingual_12L.json docs/results/multilingual_6L.json ...
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(DOCS, "multilingual.md")
START, END = "<!-- grid:start -->", "<!-- grid:end -->"


def merge(parts: list[dict]) -> dict:
    """One results dict from several files of the same data: runs united; a run found in several files (other
    ``--train-seed``) becomes the per-language mean over its seeds, with ``seeds`` = each seed's all-language
    mean. The languages must agree."""
    out = {"meta": parts[0]["meta"], "languages": parts[0]["languages"], "runs": {}, "commands": []}
    tables: dict[str, list[dict]] = {}
    for part in parts:
        if sorted(part["languages"]) != sorted(out["languages"]):
            raise SystemExit(f"{part['meta']['command']!r}: other languages than {out['meta']['command']!r}")
        for key, run in part["runs"].items():
            seed = run.get("seed", part["meta"].get("seed", 0))
            if seed in out["runs"].get(key, {}).get("seeds", {}):
                raise SystemExit(f"run {key!r} seed {seed} is in two files")
            merged = out["runs"].setdefault(key, {**run, "seeds": {}, "train_seconds": run["train_seconds"]})
            merged["seeds"][seed] = run["table"]["mean"]["s2t_acc"]
            tables.setdefault(key, []).append(run["table"])
        out["commands"].append(part["meta"]["command"])
    for key, run in out["runs"].items():
        group = tables[key]
        run["table"] = {lang: {m: statistics.fmean(t[lang][m] for t in group) for m in group[0][lang]}
                        for lang in group[0]}
    return out


def all_languages_cell(run: dict, languages: list[str]) -> str:
    """The mean over every language, with +- the std over seeds (of that mean) when there are several."""
    seeds = list(run.get("seeds", {}).values())
    text = f"{mean_over(run, languages):.3f}"
    return text + (f" ± {statistics.stdev(seeds):.3f}" if len(seeds) > 1 else "")


def script_groups(languages: dict) -> dict[str, list[str]]:
    """Latin, Cyrillic, and every other script (Han, Arabic, ...) as ``other scripts``."""
    groups: dict[str, list[str]] = {"Latin": [], "Cyrillic": [], "other scripts": []}
    for lang, info in languages.items():
        groups[info["script"] if info["script"] in ("Latin", "Cyrillic") else "other scripts"].append(lang)
    return groups


def ordered_languages(results: dict) -> list[str]:
    """Languages by script (Latin first, then the rest by name), then by the warm start's score."""
    info = results["languages"]
    warm = next((r for k, r in results["runs"].items() if r["run"] == "warm" and r["layers"] == 12), None)
    score = (lambda lang: -warm["table"][lang]["s2t_acc"]) if warm else (lambda lang: 0)
    return sorted(info, key=lambda lang: (info[lang]["script"] != "Latin", info[lang]["script"], score(lang), lang))


def weakest(results: dict) -> list[str]:
    """The quarter of languages the 12-layer warm start retrieves worst (the student's weakest languages)."""
    warm = next((r for r in results["runs"].values() if r["run"] == "warm" and r["layers"] == 12), None)
    langs = list(results["languages"])
    if warm is None:
        return []
    return sorted(langs, key=lambda lang: warm["table"][lang]["s2t_acc"])[:max(1, len(langs) // 4)]


def mean_over(run: dict, languages: list[str]) -> float:
    return statistics.fmean(run["table"][lang]["s2t_acc"] for lang in languages) if languages else float("nan")


def summary_table(results: dict) -> str:
    groups = script_groups(results["languages"])
    weak = weakest(results)
    header = ["size", "run", f"all {len(results['languages'])} (± seeds)",
              *[f"{g} ({len(v)})" for g, v in groups.items()], f"weakest {len(weak)}", "vs 12 layers",
              "kept of 12 layers", "gain over warm", "spread", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in results["runs"].values():
        full = results["runs"].get(f"12L:{run['run']}")
        delta = "" if run["layers"] == 12 or full is None or run["run"] == "teacher-direct" else \
            f"{mean_over(run, list(results['languages'])) - mean_over(full, list(results['languages'])):+.3f}"
        size = "-" if run["run"] == "teacher-direct" else f"{run['layers']}"
        everyone = list(results["languages"])
        kept = "" if not delta else f"{mean_over(run, everyone) / mean_over(full, everyone):.0%}"
        warm = results["runs"].get(f"{run['layers']}L:warm")
        gain = "" if warm is None or run["run"] in ("warm", "teacher-direct") else \
            f"{mean_over(run, everyone) - mean_over(warm, everyone):+.3f}"
        cells = [size, run["run"], all_languages_cell(run, list(results["languages"])),
                 *[f"{mean_over(run, v):.3f}" for v in groups.values()], f"{mean_over(run, weak):.3f}", delta,
                 kept, gain,
                 f"{run['table']['mean']['spread']:.3f}", f"{run['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def script_table(results: dict, size: int) -> str:
    """Per script: each method's top-1 with ``size`` layers and, in brackets, the share of its 12-layer score kept."""
    info = results["languages"]
    scripts = sorted({i["script"] for i in info.values()}, key=lambda x: (x != "Latin", x))
    members = {sc: [lang for lang in info if info[lang]["script"] == sc] for sc in scripts}
    header = ["run", *[f"{sc} ({len(members[sc])})" for sc in scripts]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in results["runs"].values():
        full = results["runs"].get(f"12L:{run['run']}")
        if run["layers"] != size or run["run"] == "teacher-direct" or full is None:
            continue
        cells = [run["run"]] + [f"{mean_over(run, members[sc]):.2f} "
                                f"({mean_over(run, members[sc]) / mean_over(full, members[sc]):.0%})" for sc in scripts]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_language_table(results: dict) -> str:
    keys = list(results["runs"])
    header = ["language", "script", *keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for lang in ordered_languages(results):
        cells = [lang, results["languages"][lang]["script"],
                 *[f"{results['runs'][k]['table'][lang]['s2t_acc']:.2f}" for k in keys]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heat_maps(results: dict, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    languages = ordered_languages(results)
    sizes = sorted({r["layers"] for r in results["runs"].values() if r["run"] != "teacher-direct"}, reverse=True)
    names = []
    for size in sizes:
        keys = [k for k, r in results["runs"].items()
                if r["run"] == "teacher-direct" or (r["layers"] == size and r["run"] != "teacher-direct")]
        grid = np.array([[results["runs"][k]["table"][lang]["s2t_acc"] for lang in languages] for k in keys])
        fig, ax = plt.subplots(figsize=(max(8, 0.24 * len(languages) + 2), 0.42 * len(keys) + 1.6))
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(languages)), [f"{lang}" for lang in languages], rotation=90, fontsize=7)
        ax.set_yticks(range(len(keys)), [results["runs"][k]["run"] for k in keys], fontsize=8)
        scripts = [results["languages"][lang]["script"] for lang in languages]
        for i in range(1, len(languages)):
            if scripts[i] != scripts[i - 1]:
                ax.axvline(i - 0.5, color="white", linewidth=1)
        ax.set_title(f"top-1 translation retrieval, e5-small with {size} layers (languages grouped by script)",
                     fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
        fig.tight_layout()
        name = f"multilingual_{size}L.png"
        fig.savefig(os.path.join(out_dir, name), dpi=90)
        plt.close(fig)
        names.append(name)
    return names


def render(results: dict, out_dir: str = DOCS) -> str:
    images = heat_maps(results, out_dir)
    meta = results["meta"]
    scripts = sorted({i["script"] for i in results["languages"].values()})
    body = [START, "",
            f"{len(results['languages'])} languages in {len(scripts)} scripts ({', '.join(scripts)}); "
            f"{meta['train_rows']} training rows ({meta['steps']} steps x {meta['batch_size']}), lr {meta['lr']:g}, "
            f"max_length {meta['max_length']}; top-1 among each language's held-out sentences (up to "
            f"{max(i['test_rows'] for i in results['languages'].values())}). Weakest: "
            f"{', '.join(weakest(results))}.", "",
            "Commands:", "", "```bash", *results["commands"], "```", "",
            summary_table(results), ""]
    for size in sorted({r["layers"] for r in results["runs"].values() if r["layers"] < 12}, reverse=True):
        body += [f"Per script with {size} layers (in brackets: the share of the same method's 12-layer score kept):",
                 "", script_table(results, size), ""]
    body += [f"![heat map {name}]({name})" for name in images]
    body += ["", "<details><summary>Every language</summary>", "", per_language_table(results), "", "</details>",
             "", END]
    return "\n".join(body)


def main(paths: list[str]) -> None:
    parts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            parts.append(json.load(f))
    block = render(merge(parts))
    page = open(PAGE, encoding="utf-8").read() if os.path.exists(PAGE) else f"# Multilingual grid\n\n{START}\n{END}\n"
    if START not in page:
        page += f"\n{START}\n{END}\n"
    page = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, page, flags=re.S)
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main(sys.argv[1:])
