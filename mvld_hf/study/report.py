"""A study's report: tables per variant and per language (mean +- std over seeds), the findings and the
against-best-single table as markdown, plots, and ``study_results.json`` / ``study.md`` (:func:`write_report`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

from .analysis import metric_stats
from .spec import EVALUATION_SETTINGS, SETTING_DEFAULTS, STUDENT_RECIPE, write_json


def variant_label(settings: dict, varying: Sequence[str]) -> str:
    """A short name for a cell's settings without the seed: method, then the other varied settings (not the
    evaluation-only ones, nor the training recipe of a student other than the default one)."""
    parts = [str(settings.get("method", SETTING_DEFAULTS["method"]))]
    own_recipe = settings.get("student", SETTING_DEFAULTS["student"]) != SETTING_DEFAULTS["student"]
    for key in varying:
        if key in ("method", "seed") or key in EVALUATION_SETTINGS or (own_recipe and key in STUDENT_RECIPE):
            continue
        value = settings.get(key, SETTING_DEFAULTS.get(key))
        if value == SETTING_DEFAULTS.get(key, object()) or value is None:
            continue
        if key == "anchor":
            parts.append(f"{value} anchor")
        elif key == "anchor_language":
            parts.append(f"{value} anchor captions")
        elif key == "student":
            parts.append(f"student {os.path.basename(str(value).rstrip('/'))}")
        elif key == "world_language_share":
            parts.append("share " + " ".join(map(str, value)))
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def group_variants(cells: list[dict]) -> dict[str, list[dict]]:
    """Cells grouped by :func:`variant_label` (seeds together), in grid order."""
    default_student = [c for c in cells if c["settings"].get("student", SETTING_DEFAULTS["student"])
                       == SETTING_DEFAULTS["student"]]
    varying = []
    for cell in cells:
        for key in cell["settings"]:
            # a training-recipe setting names a variant only when it varies among the default student's cells
            pool = default_student if key in STUDENT_RECIPE else cells
            values = {json.dumps(c["settings"].get(key), default=str) for c in pool}
            if len(values) > 1 and key not in varying:
                varying.append(key)
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        groups.setdefault(variant_label(cell["settings"], varying), []).append(cell)
    return groups


def _fmt(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


SUMMARY_COLUMNS = [("T2I R@1", "t2i_R@1_mean"), ("I2T R@1", "i2t_R@1_mean"), ("MRR@10", "t2i_MRR@10_mean"),
                   ("VQA acc", "vqa_mean"), ("purity en", "purity_en"), ("purity mixed", "purity_mixed"),
                   ("consistency", "consistency_mean")]
PER_LANGUAGE = [("T2I R@1", "t2i_R@1"), ("I2T R@1", "i2t_R@1"), ("MRR@10", "t2i_MRR@10"), ("VQA accuracy", "vqa"),
                ("purity (each language clustered alone)", "purity"),
                ("cross-lingual consistency (top-1 agreement with English)", "consistency")]


def _languages(cells: list[dict], prefix: str) -> list[str]:
    langs = set()
    for cell in cells:
        for key in cell["metrics"]:
            if key.startswith(prefix + "_") and not key.startswith("teacher_"):
                lang = key[len(prefix) + 1:]
                if lang not in ("mean", "mixed") and "_" not in lang:
                    langs.add(lang)
    order = ["en", "de", "fr", "es", "sw", "ru", "zh", "ja", "th", "hi", "bn", "te", "ar"]
    return sorted(langs, key=lambda x: (order.index(x) if x in order else len(order), x))


def format_tables(cells: list[dict]) -> str:
    """Markdown: one summary table (per variant, mean ± std over seeds, in %) and one per-language table per
    metric; the teacher (English-only, the same in every cell of one world) as the last row."""
    groups = group_variants(cells)
    teacher = [c for c in cells if any(k.startswith("teacher_") for k in c["metrics"])]
    lines = ["| variant | seeds | " + " | ".join(name for name, _ in SUMMARY_COLUMNS) + " |",
             "|---|---|" + "---|" * len(SUMMARY_COLUMNS)]
    for label, group in groups.items():
        cols = [_fmt(*metric_stats(group, key)[:2]) for _, key in SUMMARY_COLUMNS]
        lines.append(f"| {label} | {len(group)} | " + " | ".join(cols) + " |")
    if teacher:
        cols = [_fmt(metric_stats(teacher, "teacher_" + key)[0], None) for _, key in SUMMARY_COLUMNS]
        lines.append("| *teacher (English only)* | – | " + " | ".join(cols) + " |")
    parts = ["### Per variant (mean over languages; mean ± std over seeds, %)\n", "\n".join(lines)]
    for title, prefix in PER_LANGUAGE:
        langs = _languages(cells, prefix)
        if not langs:
            continue
        rows = ["| variant | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
        for label, group in groups.items():
            rows.append(f"| {label} | " + " | ".join(_fmt(*metric_stats(group, f"{prefix}_{lang}")[:2])
                                                     for lang in langs) + " |")
        if teacher:
            rows.append("| *teacher* | " + " | ".join(_fmt(metric_stats(teacher, f"teacher_{prefix}_{lang}")[0], None)
                                                      for lang in langs) + " |")
        parts += [f"\n### {title} per language (%)\n", "\n".join(rows)]
    return "\n".join(parts) + "\n"


def format_against_best_single(rows: list[dict]) -> str:
    """Markdown of :func:`against_best_single`: one row per method, one column per metric."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table = {(r["method"], r["metric"]): r for r in rows}
    lines = ["| method | " + " | ".join(f"{m}: vs best single" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    best = {r["metric"]: r for r in rows}
    lines.append("| *best single method* | " + " | ".join(
        f"{best[m]['best'].upper()} {_fmt(best[m]['best_mean'], best[m]['best_std'])}" for m in metrics) + " |")
    for method in methods:
        cells = []
        for m in metrics:
            r = table.get((method, m))
            cells.append("–" if r is None else
                         f"{_fmt(r['mean'], r['std'])} ({100 * r['difference']:+.1f}: {r['verdict']})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_findings(findings: list[dict]) -> str:
    rows = ["| claim | paper | measured (a - b, points; seed spread) | verdict |", "|---|---|---|---|"]
    for f in findings:
        measured = "; ".join(
            f"{name}: {100 * m['a']:.1f} vs {100 * m['b']:.1f} = {100 * m['difference']:+.1f}"
            + (f" (± {100 * m['spread']:.1f}, {m['seeds']} seeds)" if m["spread"] is not None
               else f" ({m['seeds']} seed)") for name, m in f["measured"].items()) or "no cells"
        rows.append(f"| {f['claim']} | {f['paper']} | {measured} | **{f['verdict']}** |")
    return "\n".join(rows) + "\n"


def _save_figure(fig, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_study(cells: list[dict], output_dir: str) -> list[str]:
    """Heatmap variant x language of T2I R@1, retrieval vs VQA per variant, bars per variant with the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_variants(cells)
    labels = list(groups)
    paths = []
    langs = _languages(cells, "t2i_R@1")
    if langs:
        grid = [[(metric_stats(groups[v], f"t2i_R@1_{lang}")[0] or float("nan")) * 100 for lang in langs]
                for v in labels]
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(langs), 1.2 + 0.45 * len(labels)))
        image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=100)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 60 else "black")
        fig.colorbar(image, ax=ax, label="T2I R@1 (%)")
        ax.set_title("Held-out text-to-image R@1 per language (mean over seeds)")
        paths.append(_save_figure(fig, os.path.join(output_dir, "heatmap_t2i_R@1.png")))
    fig, ax = plt.subplots(figsize=(7, 5))
    for label in labels:
        (rx, sx, _), (vy, sy, _) = metric_stats(groups[label], "t2i_R@1_mean"), metric_stats(groups[label], "vqa_mean")
        if rx is not None and vy is not None:
            ax.errorbar(100 * rx, 100 * vy, xerr=100 * (sx or 0), yerr=100 * (sy or 0), fmt="o", capsize=3)
            ax.annotate(label, (100 * rx, 100 * vy), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("retrieval: T2I R@1, mean over languages (%)")
    ax.set_ylabel("VQA accuracy, mean over languages (%)")
    ax.set_title("Retrieval vs VQA per variant (mean ± std over seeds)")
    paths.append(_save_figure(fig, os.path.join(output_dir, "retrieval_vs_vqa.png")))
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(labels), 4.5))
    for i, label in enumerate(labels):
        mean, std, values = metric_stats(groups[label], "t2i_MRR@10_mean")
        if mean is None:
            continue
        ax.bar(i, 100 * mean, yerr=100 * (std or 0), capsize=3, color="tab:blue", alpha=0.7)
        ax.scatter([i] * len(values), [100 * v for v in values], color="black", s=10, zorder=3)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("T2I MRR@10, mean over languages (%)")
    ax.set_title("Retrieval per variant (bars: mean ± std; dots: seeds)")
    paths.append(_save_figure(fig, os.path.join(output_dir, "bars_mrr.png")))
    return paths


def write_report(spec: dict, cells: list[dict], findings: list[dict], output_dir: str,
                 wall_s: float | None = None) -> dict:
    """Write ``study_results.json``, ``study.md`` and the plots into ``output_dir``; returns the results."""
    finished = [c for c in cells if c.get("metrics")]
    results = {"name": spec.get("name"), "description": spec.get("description"),
               "cells": [{k: c[k] for k in ("name", "fingerprint", "status", "wall_s", "method", "settings",
                                            "metrics") if k in c} for c in cells],
               "findings": findings, "wall_s": wall_s}
    write_json(os.path.join(output_dir, "study_results.json"), results)
    plots = plot_study(finished, output_dir) if finished else []
    failed = [c["name"] for c in cells if c["status"] == "failed"]
    cell_time = sum(c.get("wall_s") or 0 for c in cells)
    md = [f"# Study: {spec.get('name')}\n", *([spec["description"].strip() + "\n"] if spec.get("description") else []),
          f"{len(finished)} of {len(cells)} cells finished" + (f"; failed: {failed}" if failed else "")
          + f"; cell wall time {cell_time / 60:.1f} min" + (f", this invocation {wall_s / 60:.1f} min" if wall_s
                                                           else "") + ".\n",
          "Purity: spherical k-means on the held-out captions with k = the number of distinct images among them, "
          "purity w.r.t. the image id; `purity en` clusters the English captions only, `purity mixed` all "
          "languages together; the teacher row clusters exactly the same caption sets with the same k.\n",
          "## Findings\n", format_findings(findings), "## Tables\n", format_tables(finished) if finished else "",
          "## Plots\n", *[f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in plots]]
    with open(os.path.join(output_dir, "study.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    return results
