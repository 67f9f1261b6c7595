"""Text-only evaluation against a teacher: per-language translation retrieval and distance to the teacher.

These metrics need no images, so they evaluate a student distilled from *any* teacher, including a text-only
sentence-transformers model, and give image-text teachers an extra view of cross-lingual consistency. They
are the counterparts of sentence-transformers' ``TranslationEvaluator`` and ``MSEEvaluator``.

For one language with ``n`` distinct English sentences ``e_i`` and their captions ``c_i`` in that language,
with ``s_i = student(c_i)`` and ``t_i = teacher(e_i)`` (both L2-normalised for the similarities):

* ``s2t_acc`` = (1/n) #{i : cos(s_i, t_i) > cos(s_i, t_j) for all j != i}: the student's caption finds the
  teacher's embedding of its English original among that language's rows;
* ``t2s_acc``: the same with the roles swapped (the teacher's English embedding finds the caption);
* ``cosine`` = mean_i cos(s_i, t_i);  ``mse`` = mean_i ||s_i - t_i||^2 / d on the raw (unnormalised)
  embeddings, the loss FD minimises;
* ``spread`` = mean_{i != j} cos(s_i, s_j): how alike the student's embeddings of different captions are.
  A collapsed student (every caption mapped to one vector) has spread 1 and chance-level accuracy; compare
  with ``teacher_spread``, the same quantity for the teacher's embeddings.

Ties count *against* the query (the package's convention, see :mod:`mvld_hf.evaluation.retrieval`), so a
constant encoder scores 0, not 1. Rows that repeat an English sentence within a language are dropped (the
first caption is kept): the teacher side would otherwise hold identical targets that no encoder can tell apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .base import Evaluator, group_by_language
from .evaluator import encode_in_batches

__all__ = ["TranslationEvaluator", "translation_metrics"]

METRICS = ("s2t_acc", "t2s_acc", "cosine", "mse", "spread", "teacher_spread")


def _tie_against_accuracy(sim: torch.Tensor) -> float:
    """Fraction of rows whose diagonal score is strictly above every other score of the row."""
    n = sim.shape[0]
    diag = sim.diagonal().unsqueeze(1)
    others = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), float("-inf"))
    return float((diag > others).all(dim=1).double().mean()) if n > 1 else 1.0


def _mean_offdiagonal(x: torch.Tensor) -> float:
    n = x.shape[0]
    if n < 2:
        return float("nan")
    gram = x @ x.T
    return float((gram.sum() - gram.diagonal().sum()) / (n * n - n))


def translation_metrics(student: torch.Tensor, teacher: torch.Tensor) -> dict[str, float]:
    """The metrics of the module doc for aligned rows ``student[i]`` <-> ``teacher[i]`` (one language).

    Example::

        >>> t = torch.eye(3)
        >>> m = translation_metrics(t + 0.1, t)
        >>> m["s2t_acc"], m["t2s_acc"]
        (1.0, 1.0)
        >>> translation_metrics(torch.ones(3, 3), t)["s2t_acc"]  # a constant student: all ties, all wrong
        0.0
    """
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(f"student and teacher embeddings must be aligned [n, d] tensors, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}: the student's projection_dim must "
                         "equal the teacher's embedding dim")
    if student.shape[0] == 0:
        raise ValueError("no rows to evaluate")
    s, t = student.detach().double().cpu(), teacher.detach().double().cpu()  # float64: exact ties for duplicates
    sn, tn = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    sim = sn @ tn.T
    return {
        "s2t_acc": _tie_against_accuracy(sim),
        "t2s_acc": _tie_against_accuracy(sim.T),
        "cosine": float(sim.diagonal().mean()),
        "mse": float(F.mse_loss(s, t)),
        "spread": _mean_offdiagonal(sn),
        "teacher_spread": _mean_offdiagonal(tn),
    }


class TranslationEvaluator(Evaluator):
    """Per-language translation retrieval and distance to the teacher on parallel text (no images needed).

    Args:
        dataset: a ``datasets.Dataset`` (or a list of dict rows) with a caption column (any language), the
            English original of each caption and, optionally, a language column (without one every row is
            language ``"all"``).
        caption_column / english_column / language_column: column names (the training data's names).
        teacher_column: optional column with precomputed teacher embeddings of ``english_column``; otherwise
            call :meth:`encode_teacher` once (or pass ``teacher_embeddings`` / ``encode_teacher`` to ``__call__``).
        languages: languages to report (default: every language in the data, sorted).
        max_rows_per_language: keep at most this many distinct sentences per language (first ones).
        name: prefix of every metric key (``f"{name}_s2t_acc_de"``, ``f"{name}_s2t_acc_mean"``, ...).
        batch_size: encoder batch size.

    ``__call__(encode_text)`` returns flat metrics: for each language ``L`` and each of ``s2t_acc``,
    ``t2s_acc``, ``cosine``, ``mse``, ``spread``, ``teacher_spread`` a key ``{name}_{metric}_{L}``, plus the
    unweighted mean over languages ``{name}_{metric}_mean``. The primary metric is ``s2t_acc_mean``.

    In training, pass it to ``DistillationTrainer(evaluators=[...])``: with a ``teacher`` the trainer embeds the
    English sentences once (:meth:`encode_teacher`); without one, call :meth:`encode_teacher` yourself first.

    Example::

        >>> rows = [{"caption": c, "english": e, "language": "de"}
        ...         for c, e in [("ein Hund", "a dog"), ("eine Katze", "a cat")]]
        >>> vocab = {"a dog": [1.0, 0.0], "a cat": [0.0, 1.0], "ein Hund": [0.9, 0.1], "eine Katze": [0.2, 0.8]}
        >>> encode = lambda texts: torch.tensor([vocab[x] for x in texts])
        >>> evaluator = TranslationEvaluator(rows)
        >>> evaluator(encode, encode_teacher=encode)["translation_s2t_acc_de"]
        1.0
    """

    primary_metric = "s2t_acc_mean"
    greater_is_better = True

    def __init__(self, dataset, caption_column: str = "caption", english_column: str = "english",
                 language_column: str | None = "language", teacher_column: str | None = None,
                 languages: Sequence[str] | None = None, max_rows_per_language: int | None = None,
                 name: str = "translation", batch_size: int = 64):
        rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
        if not rows:
            raise ValueError("TranslationEvaluator got an empty dataset")
        columns = set(rows[0])
        needed = [caption_column, english_column] + ([teacher_column] if teacher_column else [])
        missing = [c for c in needed if c not in columns]
        if missing:
            raise ValueError(f"TranslationEvaluator: the data has no column(s) {missing} (it has {sorted(columns)}); "
                             "pass caption_column=/english_column=/teacher_column= naming its columns")
        if language_column is not None and language_column not in columns:
            language_column = None
        self.name, self.batch_size = name, batch_size
        group_by_language([str(row[language_column]) for row in rows] if language_column else [], reserved=("mean",))
        groups: dict[str, dict[str, int]] = {}
        for i, row in enumerate(rows):
            lang = str(row[language_column]) if language_column else "all"
            seen = groups.setdefault(lang, {})
            if row[english_column] not in seen and (max_rows_per_language is None
                                                    or len(seen) < max_rows_per_language):
                seen[row[english_column]] = i
        wanted = sorted(groups) if languages is None else list(languages)
        unknown = [lang for lang in wanted if lang not in groups]
        if unknown:
            raise ValueError(f"TranslationEvaluator: no rows for language(s) {unknown}; the data has {sorted(groups)}")
        self.languages = wanted
        self.captions = {lang: [rows[i][caption_column] for i in groups[lang].values()] for lang in wanted}
        self.english = {lang: list(groups[lang]) for lang in wanted}
        self.teacher_embeddings: dict[str, torch.Tensor] | None = None
        if teacher_column:
            self.teacher_embeddings = {lang: torch.as_tensor([rows[i][teacher_column] for i in groups[lang].values()],
                                                             dtype=torch.float32) for lang in wanted}

    def per_language(self, metrics: dict[str, float]) -> dict[str, dict[str, float]]:
        """Flat metrics of :meth:`__call__` as ``{language or "mean": {metric: value}}``, the table shape of
        :func:`mvld_hf.evaluation.report.format_table`."""
        table: dict[str, dict[str, float]] = {}
        for row in [*self.languages, "mean"]:
            for metric in METRICS:
                key = f"{self.name}_{metric}_{row}"
                if key in metrics:
                    table.setdefault(row, {})[metric] = metrics[key]
        return table

    def _encode(self, encode: Callable[[list[str]], Any], texts: list[str], desc: str) -> torch.Tensor:
        return encode_in_batches(encode, len(texts), lambda a, b: texts[a:b], self.batch_size, desc=desc).float().cpu()

    def encode_teacher(self, encode_teacher: Callable[[list[str]], Any]) -> dict[str, torch.Tensor]:
        """Embed every language's English sentences with the teacher once and keep them for later calls."""
        unique = sorted({e for lang in self.languages for e in self.english[lang]})
        emb = self._encode(encode_teacher, unique, "Encoding English (teacher)")
        index = {e: i for i, e in enumerate(unique)}
        self.teacher_embeddings = {lang: emb[[index[e] for e in self.english[lang]]] for lang in self.languages}
        return self.teacher_embeddings

    def __call__(self, encode_text: Callable[[list[str]], Any], encode_teacher: Callable | None = None,
                 teacher_embeddings: dict[str, torch.Tensor] | None = None, **kwargs) -> dict[str, float]:
        """Metrics of ``encode_text`` (the student: ``list[str] -> [batch, d]``) against the teacher."""
        if teacher_embeddings is None:
            if self.teacher_embeddings is None:
                if encode_teacher is None:
                    raise ValueError("TranslationEvaluator needs the teacher's embeddings of the English sentences: "
                                     "pass encode_teacher= (e.g. teacher.encode_text), call encode_teacher() "
                                     "once, or give the data a teacher_column")
                self.encode_teacher(encode_teacher)
            teacher_embeddings = self.teacher_embeddings
        per_language = {}
        for lang in self.languages:
            student = self._encode(encode_text, self.captions[lang], f"Encoding captions ({lang})")
            per_language[lang] = translation_metrics(student, teacher_embeddings[lang])
        out = {}
        for metric in METRICS:
            values = [per_language[lang][metric] for lang in self.languages]
            out.update({f"{metric}_{lang}": value for lang, value in zip(self.languages, values)})
            out[f"{metric}_mean"] = sum(values) / len(values)
        return self.prefix_name_to_metrics(out)
