"""Markdown tables, per-language bar charts and JSON files for evaluation results.

Results have the shape produced by this package: ``{row: {metric: value}}`` where rows are languages
plus summary entries (``"all"``, ``"mean"``, ``"mixed"``), or ``{row: value}`` for single-number
metrics such as purity. A whole :class:`~mvld_hf.evaluation.MultilingualEvaluator` output
(``{"retrieval": ..., "purity": ...}``) is handled by :func:`format_report`, or by passing
``section="retrieval"``. Values are fractions; tables and plots show them in percent by default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import SUMMARY_ROWS  # rows that summarise languages; tables and plots put them after them

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["format_table", "format_report", "per_language_figure", "plot_per_language", "save_json", "load_json",
           "SUMMARY_ROWS"]

#: metrics where less is better (bold marks the lowest), and diagnostics no value of which is better (never bold)
LOWER_IS_BETTER = ("mse",)
UNRANKED = ("spread", "teacher_spread", "cosine_chance", "top1_agreement_chance")
#: what a cell of a collapsed language (``results["collapsed"]``, see mvld_hf.evaluation.collapse) shows
COLLAPSED = "collapsed"


def _collapsed_rows(results) -> set[str]:
    """The rows a model's tables mark :data:`COLLAPSED`: its collapsed languages (``results["collapsed"]``) and,
    when there is one, the summary rows, which include them."""
    languages = results.get("collapsed") if isinstance(results, Mapping) else None
    if not isinstance(languages, (list, tuple)) or not languages:
        return set()
    return {str(lang) for lang in languages} | set(SUMMARY_ROWS)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) or hasattr(x, "item") and not hasattr(x, "keys")


def _rows(results: Mapping, section: str | None, value_name: str, model: str) -> dict[str, dict[str, float]]:
    if section is not None:
        if section not in results:
            raise KeyError(f"model {model!r} has no section {section!r}; it has {list(results)}")
        results = results[section]
    rows: dict[str, dict[str, float]] = {}
    for row, value in results.items():
        if isinstance(value, Mapping):
            if any(isinstance(v, Mapping) for v in value.values()):
                raise ValueError(f"model {model!r}: entry {row!r} is nested another level; pass section=... "
                                 "(one of the top-level keys) or use format_report")
            rows[str(row)] = {str(k): float(v) for k, v in value.items()}
        elif _is_number(value):
            rows[str(row)] = {value_name: float(value)}
        else:
            raise TypeError(f"model {model!r}: entry {row!r} holds {type(value).__name__}, expected a number or a "
                            "{metric: number} mapping")
    return rows


def _ordered_union(lists) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)


def _row_order(row_names: list[str]) -> list[str]:
    languages = [r for r in row_names if r not in SUMMARY_ROWS]
    return languages + [r for r in SUMMARY_ROWS if r in row_names]


def format_table(
    models: Mapping[str, Mapping[str, Any]],
    *,
    section: str | None = None,
    metrics: Sequence[str] | None = None,
    rows: Sequence[str] | None = None,
    scale: float = 100.0,
    precision: int = 1,
    bold_best: bool = True,
    missing: str = "–",
    value_name: str = "value",
    row_header: str = "language",
) -> str:
    """Markdown table with one row per language (summary rows last) and, for every metric, one column
    per model side by side (e.g. ``t2i_R@1 (teacher) | t2i_R@1 (student)``).

    ``models`` maps a model name to its results (``{row: {metric: value}}`` or ``{row: value}``; with
    ``section`` the results are ``results[section]``). ``metrics``/``rows`` select and order columns/rows
    (default: all, in order of appearance). Values are multiplied by ``scale`` and printed with
    ``precision`` decimals; with several models the best value of each metric in a row is bold (the lowest for
    :data:`LOWER_IS_BETTER`, none for the diagnostics in :data:`UNRANKED`); absent values print as ``missing``.
    With ``section``, a model whose results name collapsed languages (``results["collapsed"]``, decided by
    :mod:`mvld_hf.evaluation.collapse`) shows ``collapsed`` in those rows and the summary rows instead of a
    number, and is never bold there. For a single model pass ``{"student": results}``.
    """
    if not models:
        raise ValueError("format_table needs at least one model")
    tables = {name: _rows(res, section, value_name, name) for name, res in models.items()}
    collapsed = {name: _collapsed_rows(res) if section is not None else set() for name, res in models.items()}
    names = list(tables)
    all_rows = _row_order(_ordered_union(t.keys() for t in tables.values()))
    if rows is not None:
        unknown = [r for r in rows if r not in all_rows]
        if unknown:
            raise KeyError(f"rows {unknown} not in the results; available: {all_rows}")
        all_rows = list(rows)
    all_metrics = _ordered_union(m.keys() for t in tables.values() for m in t.values())
    if metrics is not None:
        unknown = [m for m in metrics if m not in all_metrics]
        if unknown:
            raise KeyError(f"metrics {unknown} not in the results; available: {all_metrics}")
        all_metrics = list(metrics)

    header = [row_header] + [f"{metric} ({name})" if len(names) > 1 else metric
                             for metric in all_metrics for name in names]
    align = [":---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row in all_rows:
        cells = [f"**{row}**" if row in SUMMARY_ROWS else row]
        for metric in all_metrics:
            values = {name: None if row in collapsed[name] else tables[name].get(row, {}).get(metric)
                      for name in names}
            finite = [v for v in values.values() if v is not None and not math.isnan(v)]
            pick = min if metric in LOWER_IS_BETTER else max
            best = pick(finite) if bold_best and len(names) > 1 and len(finite) > 1 and metric not in UNRANKED \
                else None
            for name in names:
                v = values[name]
                if row in collapsed[name] and tables[name].get(row, {}).get(metric) is not None:
                    cells.append(COLLAPSED)
                    continue
                if v is None or math.isnan(v):
                    cells.append(missing)
                    continue
                text = f"{v * scale:.{precision}f}"
                cells.append(f"**{text}**" if best is not None and v == best and len(set(finite)) > 1 else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: how a metric-name prefix reads in a sub-table heading
_PREFIX_TITLES = {"t2i": "text-to-image", "i2t": "image-to-text"}


def _metric_groups(metrics: list[str], per_table: int) -> list[tuple[str, list[str]]]:
    """Split ``metrics`` into tables of at most ``per_table`` metrics, by prefix first (``t2i_R@1`` ->
    ``t2i``), then in order. Returns ``(sub-heading, metrics)`` pairs (sub-heading ``""`` when unsplit)."""
    if len(metrics) <= per_table:
        return [("", metrics)]
    by_prefix: dict[str, list[str]] = {}
    for metric in metrics:
        prefix = metric.split("_", 1)[0] if "_" in metric else ""
        by_prefix.setdefault(prefix, []).append(metric)
    groups = []
    for prefix, members in by_prefix.items():
        chunks = [members[i:i + per_table] for i in range(0, len(members), per_table)]
        for n, chunk in enumerate(chunks):
            title = _PREFIX_TITLES.get(prefix, prefix or "other")
            groups.append((title + (f" ({n + 1}/{len(chunks)})" if len(chunks) > 1 else ""), chunk))
    return groups


def format_report(results_by_model: Mapping[str, Mapping[str, Any]], sections: Sequence[str] | None = None,
                  heading_level: int = 3, max_columns: int | None = 9, **table_kwargs) -> str:
    """One :func:`format_table` per section of nested results (e.g. ``"retrieval"``, ``"purity"``,
    ``"vqa"``), each under a Markdown heading. Sections missing from some models show ``missing``.

    A section whose table would have more than ``max_columns`` columns (language + metrics x models) is split
    into several tables, by metric prefix first (retrieval: one text-to-image and one image-to-text table);
    ``None`` never splits."""
    if sections is None:
        sections = _ordered_union([k for k, v in res.items() if isinstance(v, Mapping)]
                                  for res in results_by_model.values())
    parts = []
    for section in sections:
        present = {name: res for name, res in results_by_model.items() if section in res}
        if not present:
            raise KeyError(f"no model has a section {section!r}")
        kwargs = dict(table_kwargs)
        kwargs.setdefault("value_name", section)
        metrics = kwargs.pop("metrics", None)
        if metrics is None:
            tables = [_rows(res, section, kwargs["value_name"], name) for name, res in present.items()]
            metrics = _ordered_union(m.keys() for t in tables for m in t.values())
        per_table = max(1, (max_columns - 1) // len(present)) if max_columns else len(metrics) or 1
        for title, group in _metric_groups(list(metrics), per_table):
            heading = f"{section}: {title}" if title else section
            parts.append(f"{'#' * heading_level} {heading}\n\n"
                         + format_table(present, section=section, metrics=group, **kwargs))
    notes = [f"{name}: {', '.join(res['collapsed'])}" for name, res in results_by_model.items()
             if _collapsed_rows(res)]
    if notes:
        from .collapse import COLLAPSED_NOTE

        parts.append(f"*{COLLAPSED_NOTE}* (collapsed languages: {'; '.join(notes)})")
    return "\n\n".join(parts) + "\n"


def per_language_figure(
    results_by_model: Mapping[str, Mapping[str, Any]],
    metric: str = "t2i_R@1",
    *,
    section: str | None = None,
    languages: Sequence[str] | None = None,
    scale: float = 100.0,
    title: str | None = None,
    ylabel: str | None = None,
    xlabel: str | None = "language",
    chance: float | None = None,
) -> Figure:
    """The figure of :func:`plot_per_language` (a matplotlib ``Figure`` on an Agg canvas), not saved. With
    ``section``, a model's collapsed languages (``results["collapsed"]``) and its summary rows get no bar but the
    word ``collapsed``, as in :func:`format_table`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results_by_model:
        raise ValueError("plot_per_language needs at least one model")
    value_name = section if section is not None else "value"
    tables = {name: _rows(res, section, value_name, name) for name, res in results_by_model.items()}
    rows = _row_order(_ordered_union(t.keys() for t in tables.values()))
    if languages is not None:
        unknown = [r for r in languages if r not in rows]
        if unknown:
            raise KeyError(f"languages {unknown} not in the results; available: {rows}")
        rows = list(languages)
    if not any(metric in t.get(r, {}) for t in tables.values() for r in rows):
        available = _ordered_union(m.keys() for t in tables.values() for m in t.values())
        raise KeyError(f"metric {metric!r} not in the results; available: {available}")

    names = list(tables)
    n_lang = sum(r not in SUMMARY_ROWS for r in rows)
    # x positions: languages, then a gap, then the summary rows
    xs = [i + (0.6 if i >= n_lang and n_lang else 0.0) for i in range(len(rows))]
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(6.0, 0.28 * len(rows) * max(len(names), 2) + 1.5), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
    for j, name in enumerate(names):
        collapsed = _collapsed_rows(results_by_model[name]) if section is not None else set()
        vals = [float("nan") if r in collapsed else tables[name].get(r, {}).get(metric, float("nan")) * scale
                for r in rows]
        offs = [x + (j - (len(names) - 1) / 2) * width for x in xs]
        ax.bar(offs, vals, width=width * 0.95, label=name, color=colors[j % len(colors)])
        for x, r in zip(offs, rows):  # a collapsed language gets no bar, as its table cell gets no number
            if r in collapsed and metric in tables[name].get(r, {}):
                ax.text(x, 0.01, COLLAPSED, transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                        va="bottom", fontsize=7, color=colors[j % len(colors)])
    if 0 < n_lang < len(rows):
        ax.axvline((xs[n_lang - 1] + xs[n_lang]) / 2, color="0.5", linestyle=":", linewidth=1)
    ax.set_xticks(xs)
    rotate = len(rows) > 12
    ax.set_xticklabels(rows, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                       rotation_mode="anchor" if rotate else "default")
    for label, row in zip(ax.get_xticklabels(), rows):
        if row in SUMMARY_ROWS:
            label.set_fontweight("bold")
    ax.set_xlim(xs[0] - 0.6, xs[-1] + 0.6)
    if chance is not None:
        ax.axhline(chance * scale, color="0.3", linestyle="--", linewidth=1,
                   label=f"chance ({chance * scale:.0f}%)" if scale == 100 else f"chance ({chance:g})")
    ax.set_ylabel(ylabel if ylabel is not None else (f"{metric} (%)" if scale == 100 else metric))
    if xlabel:
        ax.set_xlabel(xlabel)
    if scale == 100:
        ax.set_ylim(0, 100)
    ax.set_title(title if title is not None else f"{metric} per language")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    # outside the axes, so that it never hides a bar
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def plot_per_language(
    results_by_model: Mapping[str, Mapping[str, Any]],
    metric: str = "t2i_R@1",
    path: str | Path = "per_language.png",
    *,
    section: str | None = None,
    languages: Sequence[str] | None = None,
    scale: float = 100.0,
    title: str | None = None,
    ylabel: str | None = None,
    xlabel: str | None = "language",
    chance: float | None = None,
    dpi: int = 150,
) -> Path:
    """Grouped bar chart of ``metric`` per language (one bar per model), written to ``path`` as PNG.

    Summary rows (``all``/``mean``/``mixed``) come last, after a dotted separator. For single-number
    results (purity) use ``metric=section`` with ``section="purity"`` or the value name ``"value"``.
    ``chance`` (a fraction, e.g. 0.25 for 4-option VQA) draws a dashed chance-level line.
    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change)."""
    fig = per_language_figure(results_by_model, metric, section=section, languages=languages, scale=scale,
                              title=title, ylabel=ylabel, xlabel=xlabel, chance=chance)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and scalars
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/Inf
    return obj


def save_json(obj: Any, path: str | Path, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (tensors/arrays become lists, NaN/Inf become null), creating parent
    directories. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
