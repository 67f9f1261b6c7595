"""The evaluator contract the trainer logs through, in the spirit of sentence-transformers' ``SentenceEvaluator``.

An :class:`Evaluator` has a ``name`` (the prefix of its metrics), a ``primary_metric`` and ``greater_is_better``;
:meth:`Evaluator.metrics` returns FLAT metrics prefixed with the name (``xm3600_t2i_R@1_de``), which
:class:`~mvld_hf.DistillationTrainer` logs (``eval_xm3600_t2i_R@1_de``) with no special case per evaluator.
Also here: :func:`group_by_language`, the one "rows per language, summary names reserved" helper.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

#: the rows of a per-language table that are not a language (the report's summary rows)
SUMMARY_ROWS = ("all", "mean", "mixed")

__all__ = ["Evaluator", "group_by_language"]


def group_by_language(languages: Sequence[Hashable], reserved: Sequence[str]) -> dict[Hashable, list[int]]:
    """``{language: [row, ...]}`` in first-seen order; a language named like a summary entry (``reserved``,
    e.g. ``"mean"``) raises ``ValueError``, since its results would overwrite the summary.

    >>> group_by_language(["de", "fr", "de"], reserved=("mean",))
    {'de': [0, 2], 'fr': [1]}
    >>> group_by_language(["de", "mean"], reserved=("all", "mean"))
    Traceback (most recent call last):
    ...
    ValueError: language name(s) ['mean'] clash with the summary entries 'all'/'mean'; rename them
    """
    by_lang: dict[Hashable, list[int]] = {}
    for i, lang in enumerate(languages):
        by_lang.setdefault(lang, []).append(i)
    clash = sorted(set(by_lang) & set(reserved), key=str)
    if clash:
        raise ValueError(f"language name(s) {clash} clash with the summary entries "
                         f"{'/'.join(repr(r) for r in reserved)}; rename them")
    return by_lang


class Evaluator:
    """Base class of evaluators the trainer can run.

    Subclasses implement :meth:`metrics` (or :meth:`__call__`, which :meth:`metrics` calls by default) and set
    ``name``, ``primary_metric`` (unprefixed key of the number that sums the evaluation up) and
    ``greater_is_better``. An evaluator whose metrics need the teacher's image embeddings implements
    ``encode_images(encode_image)``; the trainer then passes them as ``image_embeddings=``.

    >>> class Length(Evaluator):
    ...     name, primary_metric = "len", "mean"
    ...     def __call__(self, encode_text, **kwargs):
    ...         return self.prefix_name_to_metrics({"mean": 2.0})
    >>> Length().metrics(None), Length().primary_metric_key
    ({'len_mean': 2.0}, 'len_mean')
    """

    name: str = ""
    primary_metric: str = ""
    greater_is_better: bool = True

    def __call__(self, encode_text: Callable, **kwargs) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__ or metrics")

    def metrics(self, encode_text: Callable, **kwargs) -> dict[str, float]:
        """Flat ``{prefixed name: value}`` metrics of the text encoder ``encode_text(list[str]) -> [n, d]``."""
        return self(encode_text, **kwargs)

    def prefix_name_to_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """``{"t2i_R@1_de": v}`` -> ``{"<name>_t2i_R@1_de": v}`` (unchanged when ``name`` is empty)."""
        return {f"{self.name}_{key}" if self.name else key: value for key, value in metrics.items()}

    @property
    def primary_metric_key(self) -> str:
        """The primary metric as :meth:`metrics` names it."""
        return next(iter(self.prefix_name_to_metrics({self.primary_metric: 0.0})))
