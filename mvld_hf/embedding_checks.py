"""The one check of teacher embeddings: a row holding NaN/inf (:class:`NonFiniteEmbeddingError`) or the zero
vector (:class:`ZeroEmbeddingError`) is refused, naming the row. :func:`check_embedding_rows` is called by every
path that produces or reads teacher embeddings (the in-step teacher and its stream, the precompute map, the
collator's precomputed columns); :func:`check_finite_embeddings` is its vectorised Arrow pass over a whole
dataset column, before training. A leaf module: numpy and torch only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class NonFiniteEmbeddingError(ValueError):
    """Teacher embeddings hold NaN or infinite values: training on them would turn every weight into NaN."""


def non_finite_rows(embeddings) -> np.ndarray:
    """Indices of the rows of a [N, d] array (numpy or torch) holding NaN or +-inf."""
    if isinstance(embeddings, torch.Tensor):
        return torch.nonzero(~torch.isfinite(embeddings).reshape(len(embeddings), -1).all(dim=1)).flatten().cpu() \
            .numpy()
    values = np.asarray(embeddings, dtype=np.float32)
    return np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))


def non_finite_error(column: str, where: str, value=None, fix: str | None = None) -> NonFiniteEmbeddingError:
    """The error for a teacher embedding holding NaN/inf at ``where`` (e.g. ``"row 5 of train_dataset"``)."""
    shown = "" if value is None else f" ({np.asarray(value, dtype=np.float32).ravel()[:4].tolist()}...)"
    error = NonFiniteEmbeddingError(
        f"{where}: '{column}' holds NaN or infinite values{shown}; training on it would turn every weight into NaN. "
        + (fix or "Drop that row or recompute its teacher embedding (precompute_teacher_embeddings)"))
    error.column, error.where = column, where  # what zero_norm_error needs to name the same row
    return error


class ZeroEmbeddingError(ValueError):
    """A teacher embedding is the zero vector: it carries no signal (DR/SD see a uniform distribution, FD pulls the
    caption to the origin, ``normalize_features`` divides by ~0), so the row would train nothing or noise."""


#: a row whose L2 norm is at most this is a zero vector (``F.normalize``'s own epsilon)
ZERO_NORM = 1e-12


def zero_norm_rows(embeddings) -> np.ndarray:
    """Indices of the rows of a [N, d] array (numpy or torch) whose L2 norm is zero (at most :data:`ZERO_NORM`)."""
    if isinstance(embeddings, torch.Tensor):
        norms = embeddings.detach().reshape(len(embeddings), -1).double().norm(dim=1)
        return torch.nonzero(norms <= ZERO_NORM).flatten().cpu().numpy()
    values = np.asarray(embeddings, dtype=np.float64)
    return np.flatnonzero(np.linalg.norm(values.reshape(len(values), -1), axis=1) <= ZERO_NORM)


def zero_norm_error(column: str, where: str, fix: str | None = None) -> ZeroEmbeddingError:
    """The error for a teacher embedding that is the zero vector at ``where`` (e.g. ``"row 5 of train_dataset"``)."""
    return ZeroEmbeddingError(
        f"{where}: '{column}' is the zero vector; a zero teacher embedding carries no signal (DR/SD see a uniform "
        "distribution, FD pulls the caption to the origin, normalize_features divides by ~0). "
        + (fix or "Drop that row or recompute its teacher embedding (precompute_teacher_embeddings)"))


def check_embedding_rows(embeddings, column: str, describe, *, fix: str | None = None, zero_fix: str | None = None,
                         non_finite=None):
    """Raise for the first row of ``embeddings`` ([N, d], numpy or torch) that holds NaN/inf
    (:class:`NonFiniteEmbeddingError`) or is the zero vector (:class:`ZeroEmbeddingError`); ``describe(i)`` names
    row ``i`` (e.g. ``"row 7 of the dataset"``). The check teacher outputs get wherever they enter a run.

    ``fix`` / ``zero_fix``: the advice closing each error (default: drop or recompute the row); ``non_finite(i)``,
    when given, builds the NaN/inf error itself (the in-step teacher names the step in its own words).
    Returns ``embeddings``.
    """
    bad = non_finite_rows(embeddings)
    if len(bad):
        i = int(bad[0])
        if non_finite is not None:
            raise non_finite(i)
        row = embeddings[i]
        row = row.detach().float().cpu().numpy() if isinstance(row, torch.Tensor) else np.asarray(row, np.float32)
        raise non_finite_error(column, describe(i), row, fix=fix)
    zero = zero_norm_rows(embeddings)
    if len(zero):
        raise zero_norm_error(column, describe(int(zero[0])), fix=zero_fix)
    return embeddings


@dataclass(frozen=True)
class RowCheck:
    """How one path names a bad teacher embedding, for :func:`check_embedding_rows`: the column, ``describe(key)``
    naming a row by its key (its caption, or its position: see :meth:`__call__`), the fixes, and an optional
    ``non_finite(key)`` building the NaN/inf error."""

    column: str
    describe: Callable[[Any], str]
    fix: str | None = None
    zero_fix: str | None = None
    non_finite: Callable[[Any], Exception] | None = None

    def __call__(self, embeddings, keys: Sequence | None = None):
        """Check ``embeddings``; row ``i``'s key is ``keys[i]`` (default: ``i``). Returns ``embeddings``."""
        key = (lambda i: i) if keys is None else keys.__getitem__
        non_finite = None if self.non_finite is None else (lambda i: self.non_finite(key(i)))
        return check_embedding_rows(embeddings, self.column, lambda i: self.describe(key(i)), fix=self.fix,
                                    zero_fix=self.zero_fix, non_finite=non_finite)


def embedding_type_error(column: str, dataset_name: str, arrow_type, example) -> TypeError:
    kind = "strings" if isinstance(example, str) else f"{type(example).__name__} scalars"
    shown = repr(example)
    return TypeError(f"{dataset_name} column '{column}' holds {kind} ({arrow_type} values, e.g. "
                     f"{shown[:60] + '...' if len(shown) > 60 else shown}), expected vectors of floats (one list per "
                     "row): recompute them with precompute_teacher_embeddings, or parse them (e.g. json.loads) into "
                     "lists")


def check_finite_embeddings(dataset, column: str, dataset_name: str = "dataset", batch_size: int = 100_000) -> None:
    """Raise naming the first dataset row of the embedding ``column`` that holds NaN/inf or is missing
    (:class:`NonFiniteEmbeddingError`), or is the zero vector (:class:`ZeroEmbeddingError`); a column of strings
    or scalars instead of vectors raises ``TypeError``. One vectorised Arrow pass in the dataset's row order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    offset = 0
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=batch_size):
        values = table.column(column).combine_chunks()
        if values.null_count:
            row = pc.index(pc.is_null(values), True).as_py()
            raise non_finite_error(column, f"row {offset + row} of {dataset_name}", fix="the row has no embedding: "
                                   "drop it or recompute its teacher embedding (precompute_teacher_embeddings)")
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type) \
                or pa.types.is_fixed_size_list(values.type):
            flat = pc.list_flatten(values)
            if pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type):
                if pa.types.is_floating(flat.type):
                    bad = pc.invert(pc.is_finite(flat))
                    if pc.any(bad).as_py():
                        row = pc.list_parent_indices(values)[pc.index(bad, True).as_py()].as_py()
                        raise non_finite_error(column, f"row {offset + row} of {dataset_name}", values[row].as_py())
                # a row is the zero vector when none of its values is non-zero
                flat_values = flat.to_numpy(zero_copy_only=False)
                lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
                if len(lengths) and lengths[0] > 0 and (lengths == lengths[0]).all():  # the usual [n, dim] block
                    has_signal = (flat_values.reshape(len(values), -1) != 0).any(axis=1)
                else:
                    parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
                    has_signal = np.bincount(parents[flat_values != 0], minlength=len(values)) > 0
                if not has_signal.all():
                    raise zero_norm_error(column, f"row {offset + int(np.argmin(has_signal))} of {dataset_name}")
        elif len(values):
            raise embedding_type_error(column, dataset_name, values.type, values[0].as_py())
        offset += len(values)
