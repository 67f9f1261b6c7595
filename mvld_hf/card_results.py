"""Evaluation results for a model card: :func:`load_eval_results` reads an evaluation JSON into
:class:`RetrievalResults`, :func:`eval_results_to_hub` turns them into the Hub's ``model-index`` entries and
:func:`results_markdown` into the card's tables.

Evaluation JSON (:func:`load_eval_results`) -- accepted layouts, most specific first:

1. ``{"student": X, "teacher": X}`` where each ``X`` is one of the layouts below (``"teacher"`` optional);
   the student's numbers go into the ``model-index``, the teacher's only into a reference table.
2. ``{"retrieval": {LANG: {METRIC: value}}}`` (other top-level keys such as ``"clustering"`` are ignored).
3. ``{LANG: {METRIC: value}}``: what :func:`mvld_hf.evaluation.retrieval.per_language_retrieval` returns.
4. One level deeper per benchmark: ``{"retrieval": {DATASET: {LANG: {METRIC: value}}}}``.

``LANG`` keys ``"all"`` and ``"mean"`` are summary rows (shown in the table, not in the ``model-index``).
``METRIC`` keys ``t2i_R@k``, ``t2i_MRR@k``, ``i2t_R@k``, ``i2t_MRR@k`` map to the tasks text-to-image /
image-to-text retrieval with metric types ``recall@k`` / ``mrr@k``; other numeric keys are kept under a
generic ``retrieval`` task; non-numeric values are skipped. Values are taken as they are (mvld_hf writes
fractions in [0, 1]; the tables show fractions as percentages). An optional top-level ``"dataset"`` (a
string, or ``{"type", "name", "split", "revision"}``) names the benchmark of layouts 1-3; it defaults to
``dataset_type`` / ``dataset_name`` passed by the caller, else ``"custom"``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

from huggingface_hub import EvalResult

__all__ = ["SUMMARY_ROWS", "RetrievalResults", "eval_results_to_hub", "load_eval_results", "results_markdown"]

SUMMARY_ROWS = ("mean", "all")
_TASKS = {"t2i": ("text-to-image-retrieval", "Text-to-image retrieval", "T2I"),
          "i2t": ("image-to-text-retrieval", "Image-to-text retrieval", "I2T"),
          None: ("retrieval", "Retrieval", "")}
_METRIC = re.compile(r"^(?:(t2i|i2t)_)?(r|recall|mrr)@(\d+)$", re.IGNORECASE)


@dataclass
class RetrievalResults:
    """Retrieval numbers of one benchmark: ``student[lang][metric]``, summary rows, teacher reference."""

    dataset_type: str
    dataset_name: str
    dataset_split: str | None = None
    dataset_revision: str | None = None
    student: dict[str, dict[str, float]] = field(default_factory=dict)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    teacher: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted(self.student)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _metrics(obj) -> dict[str, float] | None:
    """A ``{metric: number}`` dict (non-numeric entries dropped), or None if ``obj`` is not one."""
    if not isinstance(obj, dict) or any(isinstance(v, dict) for v in obj.values()):
        return None
    numbers = {str(k): n for k, v in obj.items() if (n := _number(v)) is not None}
    return numbers or None


def _language_map(obj) -> dict[str, dict[str, float]] | None:
    if not isinstance(obj, dict):
        return None
    langs = {str(k): m for k, v in obj.items() if (m := _metrics(v)) is not None}
    return langs or None


def _by_dataset(obj) -> dict[str | None, dict[str, dict[str, float]]]:
    """One side (student or teacher) -> ``{dataset key or None: {lang: metrics}}``."""
    if isinstance(obj, dict) and isinstance(obj.get("retrieval"), dict):
        obj = obj["retrieval"]
    if (langs := _language_map(obj)) is not None:
        return {None: langs}
    if isinstance(obj, dict):
        nested = {str(k): langs for k, v in obj.items() if (langs := _language_map(v)) is not None}
        if nested:
            return nested
    return {}


def load_eval_results(source, dataset_type: str | None = None, dataset_name: str | None = None,
                      dataset_split: str | None = None) -> list[RetrievalResults]:
    """Read an evaluation JSON (a path, a JSON string or an already-parsed dict; layouts in the module
    docstring) into one :class:`RetrievalResults` per benchmark. Raises ``ValueError`` when it holds no
    per-language retrieval numbers and ``OSError`` when the file cannot be read."""
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if not text.lstrip().startswith("{"):
            with open(source, encoding="utf-8") as f:
                text = f.read()
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"evaluation results {os.fspath(source)!r} are not valid JSON: {err}") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ValueError(f"evaluation results must be a JSON object, got {type(data).__name__}")

    dataset = data.get("dataset")
    if isinstance(dataset, str):
        dataset = {"type": dataset}
    dataset = dataset if isinstance(dataset, dict) else {}
    default_type = dataset.get("type") or dataset_type or "custom"
    default_name = dataset.get("name") or dataset_name or default_type
    split = dataset.get("split") or dataset_split

    if "student" in data or "teacher" in data:
        student, teacher = _by_dataset(data.get("student", {})), _by_dataset(data.get("teacher", {}))
    else:
        student, teacher = _by_dataset(data), {}
    if not student:
        raise ValueError("no per-language retrieval results found; expected e.g. "
                         '{"retrieval": {"de": {"t2i_R@1": 0.41, ...}, ...}} (see mvld_hf.model_card)')
    results = []
    for key, langs in student.items():
        teacher_langs = teacher.get(key) or (teacher.get(None) if len(student) == 1 else None) or {}
        results.append(RetrievalResults(
            dataset_type=key or default_type, dataset_name=key or default_name, dataset_split=split,
            dataset_revision=dataset.get("revision"),
            student={k: v for k, v in langs.items() if k not in SUMMARY_ROWS},
            summary={k: langs[k] for k in SUMMARY_ROWS if k in langs},
            teacher=dict(teacher_langs)))
    return results


def _metric_info(key: str) -> tuple[str | None, str, str]:
    """``"t2i_R@1"`` -> (``"t2i"``, ``"recall@1"``, ``"R@1"``)."""
    match = _METRIC.match(key)
    if not match:
        return None, key.lower(), key
    direction, kind, k = match.groups()
    name = "MRR" if kind.lower() == "mrr" else "R"
    return (direction.lower() if direction else None), f"{'mrr' if name == 'MRR' else 'recall'}@{k}", f"{name}@{k}"


def _metric_order(key: str):
    direction, metric_type, _ = _metric_info(key)
    kind, _, k = metric_type.partition("@")
    return ({"t2i": 0, "i2t": 1}.get(direction, 2), {"recall": 0, "mrr": 1}.get(kind, 2),
            int(k) if k.isdigit() else 0, key)


def eval_results_to_hub(results: list[RetrievalResults]) -> list[EvalResult]:
    """Per-language ``EvalResult`` entries (one model-index result per task x dataset x language)."""
    out = []
    for res in results:
        for lang in res.languages:
            for key in sorted(res.student[lang], key=_metric_order):
                direction, metric_type, short = _metric_info(key)
                task_type, task_name, prefix = _TASKS[direction]
                out.append(EvalResult(
                    task_type=task_type, task_name=task_name, dataset_type=res.dataset_type,
                    dataset_name=f"{res.dataset_name} ({lang})", dataset_config=lang,
                    dataset_split=res.dataset_split, dataset_revision=res.dataset_revision,
                    metric_type=metric_type, metric_name=f"{prefix} {short}".strip(),
                    metric_value=round(res.student[lang][key], 4)))
    return out


def _format(value: float, percent: bool) -> str:
    return f"{100 * value:.1f}" if percent else f"{value:.4g}"


def _table(rows: dict[str, dict[str, float]], first: str = "language") -> str:
    keys = sorted({k for m in rows.values() for k in m}, key=_metric_order)
    percent = all(0 <= v <= 1 for m in rows.values() for v in m.values())
    header = [first] + [" ".join(p for p in (_TASKS[_metric_info(k)[0]][2], _metric_info(k)[2]) if p) for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        cells = [_format(metrics[k], percent) if k in metrics else "" for k in keys]
        lines.append("| " + " | ".join([f"**{name}**" if name in SUMMARY_ROWS else name] + cells) + " |")
    if percent:
        lines.append("")
        lines.append("Values in %.")
    return "\n".join(lines)


def results_markdown(results: list[RetrievalResults]) -> str:
    parts = []
    for res in results:
        title = res.dataset_name + (f" ({res.dataset_split})" if res.dataset_split else "")
        parts.append(f"#### {title}\n\n{_table({**{l: res.student[l] for l in res.languages}, **res.summary})}")
        if res.teacher:
            parts.append(f"Teacher (reference, same benchmark):\n\n{_table(res.teacher)}")
    return "\n\n".join(parts)
