"""Evaluation of multilingual students (and their teachers) in the teacher's image-text space.

Embedding-level metrics:

* :func:`retrieval_metrics` / :func:`per_language_retrieval`: text->image and image->text Recall@k and
  MRR@k, chunked (memory bounded by ``chunk_size x gallery``), ties counted against the query;
* :func:`clustering_purity` / :func:`per_language_purity`: spherical k-means purity, per language and
  with all languages mixed;
* :func:`vqa_accuracy`: multiple-choice VQA by image-option similarity.

Dataset-level: :class:`MultilingualEvaluator` (retrieval + purity on a captioned-image ``datasets.Dataset``;
an :class:`~mvld_hf.evaluation.base.Evaluator`, so the trainer logs it) and :func:`evaluate_vqa`;
:func:`zero_shot_accuracy` scores a paired model as the zero-shot pipeline does. Reporting:
:mod:`mvld_hf.evaluation.report`.
"""

from .base import Evaluator, group_by_language
from .clustering import (
    KMeansResult,
    clustering_purity,
    per_language_purity,
    purity_from_assignments,
    spherical_kmeans,
)
from .consistency import cross_lingual_consistency
from .evaluator import MultilingualEvaluator, encode_in_batches, evaluate_vqa
from .presets import PRESETS, UNVERIFIED, DatasetPreset, get_preset, load_benchmark, prepare_benchmark
from .report import format_report, format_table, load_json, plot_per_language, save_json
from .retrieval import metrics_from_ranks, per_language_retrieval, retrieval_metrics, retrieval_ranks
from .vqa import format_option, vqa_accuracy, vqa_scores
from .zero_shot import zero_shot_accuracy

__all__ = [
    "DatasetPreset",
    "Evaluator",
    "group_by_language",
    "zero_shot_accuracy",
    "PRESETS",
    "UNVERIFIED",
    "get_preset",
    "load_benchmark",
    "prepare_benchmark",
    "KMeansResult",
    "MultilingualEvaluator",
    "clustering_purity",
    "cross_lingual_consistency",
    "encode_in_batches",
    "evaluate_vqa",
    "format_option",
    "format_report",
    "format_table",
    "load_json",
    "metrics_from_ranks",
    "per_language_purity",
    "per_language_retrieval",
    "plot_per_language",
    "purity_from_assignments",
    "retrieval_metrics",
    "retrieval_ranks",
    "save_json",
    "spherical_kmeans",
    "vqa_accuracy",
    "vqa_scores",
]
