"""A study's analysis: the cells' metrics compared (:func:`compare`: matched on every other setting, a
verdict against the seed spread), the paper's findings (:func:`compute_findings`) and combinations or
candidate objectives read against the best single method (:func:`against_best_single`). Pure functions of the
cells (dicts with ``settings`` and flat ``metrics``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

from ..losses.registry import PAPER_METHODS
from .spec import EVALUATION_SETTINGS, FAILS, HOLDS, NOISE, NOT_MEASURED, SETTING_DEFAULTS, STUDENT_RECIPE


def setting(cell: dict, key: str):
    value = cell["settings"].get(key, SETTING_DEFAULTS.get(key))
    return tuple(value) if isinstance(value, list) else value


def comparison_context(cell: dict, exclude: set) -> tuple:
    """The cell's settings that must match for two cells to be compared (defaults dropped)."""
    skip = exclude | {"seed"} | EVALUATION_SETTINGS
    items = []
    for key in sorted(cell["settings"]):
        value = setting(cell, key)
        if key not in skip and value != SETTING_DEFAULTS.get(key, object()):
            items.append((key, json.dumps(value, default=str)))
    return tuple(items)


def mean_and_std(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def verdict(difference: float, spread: float | None) -> str:
    """``holds`` when ``difference`` (oriented so that positive is what the claim says) is positive and larger
    than ``spread`` (seed standard deviation; ``None`` with one seed: no noise check), ``does not hold``
    when negative beyond it, ``within noise`` otherwise.

    >>> verdict(2.0, 0.5), verdict(-2.0, 0.5), verdict(0.3, 0.5), verdict(0.1, None)
    ('holds', 'does not hold', 'within noise', 'holds')
    """
    if (spread is not None and abs(difference) <= spread) or difference == 0:
        return NOISE
    return HOLDS if difference > 0 else FAILS


def compare(cells: list[dict], key: str, a, b, metric, *, where: Callable[[dict], bool] | None = None,
            ignore: set = frozenset()) -> dict | None:
    """Metric of cells with ``key == a`` minus cells with ``key == b``, matched on every other setting
    (seed and ``ignore`` excepted). Returns ``{"a", "b", "difference", "spread", "seeds", "groups"}``
    (``a``/``b`` mean over seeds and matched groups; ``spread`` the largest per-side seed std) or ``None``
    when no cells match. ``metric`` is a metric name or a function of a cell."""
    get = metric if callable(metric) else (lambda c: c["metrics"].get(metric))
    groups: dict[tuple, dict[str, list[float]]] = {}
    for cell in cells:
        if where is not None and not where(cell):
            continue
        side = "a" if setting(cell, key) == a else "b" if setting(cell, key) == b else None
        value = get(cell) if side else None
        if value is None:
            continue
        groups.setdefault(comparison_context(cell, {key} | set(ignore)), {"a": [], "b": []})[side].append(float(value))
    matched = [g for g in groups.values() if g["a"] and g["b"]]
    if not matched:
        return None
    means_a, means_b, spreads, seeds = [], [], [], []
    for g in matched:
        (ma, sa), (mb, sb) = mean_and_std(g["a"]), mean_and_std(g["b"])
        means_a.append(ma)
        means_b.append(mb)
        spreads += [s for s in (sa, sb) if s is not None]
        seeds.append(min(len(g["a"]), len(g["b"])))
    a_mean, b_mean = sum(means_a) / len(means_a), sum(means_b) / len(means_b)
    return {"a": a_mean, "b": b_mean, "difference": a_mean - b_mean, "spread": max(spreads) if spreads else None,
            "seeds": min(seeds), "groups": len(matched)}


def _finding(claim: str, parts: dict[str, dict | None], paper: str, signs: dict[str, int] | None = None,
             metric: str = "") -> dict:
    """One finding from named comparisons; each part's difference is oriented by ``signs`` (default +1: the
    claim says a > b). The overall verdict: ``does not hold`` if any part does not, ``within noise`` if any
    part is, ``holds`` if all hold, ``not measured`` without data."""
    signs = signs or {}
    measured, verdicts = {}, []
    for name, result in parts.items():
        if result is None:
            continue
        v = verdict(signs.get(name, 1) * result["difference"], result["spread"])
        measured[name] = {**{k: (round(x, 4) if isinstance(x, float) else x) for k, x in result.items()},
                          "verdict": v}
        verdicts.append(v)
    overall = (NOT_MEASURED if not verdicts else FAILS if FAILS in verdicts else NOISE if NOISE in verdicts
               else HOLDS)
    return {"claim": claim, "metric": metric, "paper": paper, "measured": measured, "verdict": overall}


def _languages_metric(prefix: str, languages: Sequence[str]) -> Callable[[dict], float | None]:
    def get(cell):
        values = [cell["metrics"].get(f"{prefix}_{lang}") for lang in languages]
        return None if any(v is None for v in values) or not values else sum(values) / len(values)
    return get


def _shares(cell: dict) -> dict[str, float]:
    value = setting(cell, "world_language_share") or ()
    return {lang: float(share) for lang, _, share in (str(v).partition(":") for v in value)}


def compute_findings(cells: list[dict]) -> list[dict]:
    """The paper's findings measured on ``cells`` (dicts with ``settings`` and flat ``metrics``; see
    :func:`cell_metrics`). Metrics are fractions; ``difference`` is a minus b. Comparisons match cells on all
    other settings (seed excepted), so e.g. DR is compared with ED at the same anchor, student and data."""
    cells = [c for c in cells if c.get("metrics")]
    baseline = [c for c in cells if not _shares(c)]  # full training data
    methods = sorted({setting(c, "method") for c in baseline})
    findings = []

    singles = [m for m in PAPER_METHODS if m != "dr" and m in methods]
    findings.append(_finding(
        "DR gives the best retrieval (MRR@10) of the single methods",
        {f"dr - {m}": compare(baseline, "method", "dr", m, "t2i_MRR@10_mean") for m in singles},
        "DR-distilled models achieve higher MRR@k than the other methods", metric="t2i_MRR@10_mean"))
    findings.append(_finding(
        "ED answers VQA better than DR", {"ed - dr": compare(baseline, "method", "ed", "dr", "vqa_mean")},
        "ED 35.54 vs DR 32.57 VQA average (+2.97 points)", metric="vqa_mean"))
    findings.append(_finding(
        "text anchors retrieve better than image anchors",
        {"text - image": compare(baseline, "anchor", "text", "image", "t2i_R@1_mean")},
        "text 42.15 vs image 27.36 retrieval average (+14.79 points)", metric="t2i_R@1_mean"))
    findings.append(_finding(
        "DR+FD improves retrieval over DR but hurts VQA",
        {"retrieval: dr+fd - dr": compare(baseline, "method", "dr+fd", "dr", "t2i_R@1_mean"),
         "vqa: dr+fd - dr": compare(baseline, "method", "dr+fd", "dr", "vqa_mean")},
        "retrieval +0.13, VQA -3.46 points", signs={"vqa: dr+fd - dr": -1}, metric="t2i_R@1_mean, vqa_mean"))
    findings.append(_finding(
        "English anchors beat German and Chinese anchors",
        {f"en - {lang}": compare(baseline, "anchor_language", "en", lang, "t2i_R@1_mean")
         for lang in ("de", "zh")},
        "German or Chinese anchors degrade performance (section 5.3.1)", metric="t2i_R@1_mean"))

    # student vs teacher purity: same caption sets, same k (the evaluator clusters both on identical captions)
    purity = {}
    for method in methods:
        group = [c for c in baseline if setting(c, "method") == method
                 and all(setting(c, k) == SETTING_DEFAULTS[k] for k in ("anchor", "anchor_language", "student"))]
        for scope in ("en", "mixed"):
            pairs = [(c["metrics"].get(f"purity_{scope}"), c["metrics"].get(f"teacher_purity_{scope}"))
                     for c in group]
            pairs = [p for p in pairs if None not in p]
            if pairs:
                (ms, ss), (mt, st) = mean_and_std([p[0] for p in pairs]), mean_and_std([p[1] for p in pairs])
                spread = max([s for s in (ss, st) if s is not None], default=None)
                purity[f"{method}, {scope} captions: student - teacher"] = {
                    "a": ms, "b": mt, "difference": ms - mt, "spread": spread, "seeds": len(pairs), "groups": 1}
    findings.append(_finding(
        "the student clusters captions better than its teacher (purity, same captions and k)", purity,
        "students achieve better purity than the teacher (sections 6.2-6.3)", metric="purity"))

    # weak languages: a small share of training rows vs the full data, same languages, same other settings
    weak = {}
    for cell in cells:
        low = sorted(lang for lang, share in _shares(cell).items() if 0 < share < 1)
        if not low:
            continue
        label = "/".join(low)
        get = _languages_metric("t2i_R@1", low)
        key = f"full data - {label} at {min(_shares(cell)[x] for x in low):g} share"
        if key in weak:
            continue
        share_value = setting(cell, "world_language_share")
        weak[key] = compare(cells, "world_language_share", None, share_value, get)
    findings.append(_finding(
        "languages with little training data are weak (R@1 of those languages)", weak,
        "Bengali, Telugu, Swahili weak when training data lacks them", metric="t2i_R@1 of the reduced languages"))

    # zero-shot languages: a pretrained student vs the from-scratch one, languages absent from distillation
    zero = {}
    for cell in cells:
        unseen = sorted(lang for lang, share in _shares(cell).items() if share == 0)
        if not unseen or setting(cell, "student") == "offline":
            continue
        key = f"pretrained - from scratch, unseen {'/'.join(unseen)}"
        if key not in zero:
            share_value = setting(cell, "world_language_share")
            zero[key] = compare([c for c in cells if setting(c, "world_language_share") == share_value],
                                "student", setting(cell, "student"), "offline",
                                _languages_metric("t2i_R@1", unseen), ignore=STUDENT_RECIPE)
    findings.append(_finding(
        "a pretrained multilingual student retrieves in languages never seen in distillation", zero,
        "Mechanism 3: the student's pretraining carries cross-lingual similarity",
        metric="t2i_R@1 of the zero-shot languages"))
    return findings


def metric_stats(cells: list[dict], key: str) -> tuple[float | None, float | None, list[float]]:
    values = [c["metrics"][key] for c in cells if key in c["metrics"]]
    if not values:
        return None, None, []
    mean, std = mean_and_std(values)
    return mean, std, values


#: the paper's single methods, against which a combination or a candidate objective is read
SINGLE_METHODS = PAPER_METHODS
#: what "best at retrieval and VQA" reads: (label, metric key)
UNIFIED_METRICS = (("MRR@10", "t2i_MRR@10_mean"), ("T2I R@1", "t2i_R@1_mean"), ("VQA acc", "vqa_mean"))


def against_best_single(cells: list[dict], metrics: Sequence[tuple[str, str]] = UNIFIED_METRICS,
                        singles: Sequence[str] = SINGLE_METHODS) -> list[dict]:
    """Every non-single method of ``cells`` (combinations, candidate objectives) against the best single method
    of each metric (the highest mean over seeds). ``cells`` must differ only in method and seed (one study row).

    Returns one dict per (method, metric): ``method``, ``metric``, ``mean``/``std`` over its seeds, ``best``
    (the best single method's code) with ``best_mean``/``best_std``, ``difference`` (method - best) and
    ``verdict``: :func:`verdict` of the difference against the larger of the two seed spreads (``holds``:
    above the best single method beyond the spread)."""
    by_method: dict[str, list[dict]] = {}
    for cell in cells:
        if cell.get("metrics"):
            by_method.setdefault(setting(cell, "method"), []).append(cell)
    contexts = {comparison_context(c, {"method"}) for group in by_method.values() for c in group}
    if len(contexts) > 1:
        raise ValueError(f"against_best_single compares cells that differ only in method and seed, got "
                         f"{len(contexts)} setting groups")
    rows = []
    for label, key in metrics:
        stats = {m: metric_stats(group, key) for m, group in by_method.items()}
        measured_singles = [m for m in singles if stats.get(m, (None,))[0] is not None]
        if not measured_singles:
            continue
        best = max(measured_singles, key=lambda m: stats[m][0])
        best_mean, best_std, _ = stats[best]
        for method, (mean, std, _) in stats.items():
            if method in singles or mean is None:
                continue
            spreads = [x for x in (std, best_std) if x is not None]
            difference = mean - best_mean
            rows.append({"method": method, "metric": label, "mean": mean, "std": std, "best": best,
                         "best_mean": best_mean, "best_std": best_std, "difference": difference,
                         "verdict": verdict(difference, max(spreads) if spreads else None)})
    return rows
