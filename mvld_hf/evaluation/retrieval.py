"""Chunked text<->image retrieval metrics (Recall@k, MRR@k) on precomputed embeddings.

Tie convention (used everywhere in this package, and by the brute-force reference in the tests)
------------------------------------------------------------------------------------------------
Ties count *against* the query. For a query with relevant gallery items ``P`` and computed scores ``s``::

    best = max(s[p] for p in P)
    rank = 1 + #{j not in P : s[j] >= best}

so an irrelevant item scoring exactly as high as the best relevant one is ranked ahead of it. With a
single relevant item this is ``#{j : s[j] >= s[correct]}``. The alternative ("1 + #items strictly
greater") rewards a collapsed encoder: if every embedding is identical all scores tie and every query
would get rank 1 (R@1 = 100 %); under this convention such a model gets the worst possible rank. Ties
are judged on the computed float32 scores (in float arithmetic two duplicate gallery rows are not
guaranteed to score bit-identically inside one matrix product).

Memory is bounded by one ``chunk_size x gallery`` float32 block (reused across chunks): the full
query x gallery similarity matrix is never built. Per chunk the work is one matrix product, a gather of
the relevant scores and one fused in-place comparison (``block.ge_(threshold).sum(1)``), so no sort or
top-k is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .base import group_by_language

__all__ = [
    "retrieval_ranks",
    "metrics_from_ranks",
    "retrieval_metrics",
    "per_language_retrieval",
]

#: show a progress bar automatically from this many chunks on (``show_progress_bar=None``)
AUTO_PROGRESS_MIN_CHUNKS = 8
#: keys added next to the languages by :func:`per_language_retrieval`
SUMMARY_KEYS = ("all", "mean")
# float32 sums of 0/1 values are exact up to 2**24; beyond that the count is accumulated in float64
_EXACT_F32_COUNT = 2**24


def _as_embeddings(x, name: str) -> torch.Tensor:
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from exc
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [n, dim], got shape {tuple(x.shape)}")
    if not (x.is_floating_point()):
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    return x


def _as_index(x, name: str, length: int | None = None, upper: int | None = None,
              upper_name: str = "") -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer indices, got {x.dtype}")
    if length is not None and x.numel() != length:
        raise ValueError(f"{name} has {x.numel()} entries but {length} were expected")
    x = x.long()
    if upper is not None and x.numel():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= upper:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{name} contains index {bad}, out of range for {upper_name} with {upper} rows "
                             f"(valid: 0..{upper - 1})")
    return x


def _prepare(x: torch.Tensor, device, normalize: bool, name: str) -> torch.Tensor:
    x = x.detach().to(device=device, dtype=torch.float32)
    if normalize:
        x = F.normalize(x, dim=-1)
    # one reduction instead of an isfinite() pass: NaN/Inf inputs (normalised: NaN) make the sum non-finite;
    # unnormalised values so large that their sum overflows would overflow the dot products as well
    if not bool(torch.isfinite(x.sum())):
        raise ValueError(f"{name} contains NaN or Inf values (or values too large for float32 scores)")
    return x


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


@torch.no_grad()
def _ranks_prepared(query: torch.Tensor, gallery: torch.Tensor, pair_query: torch.Tensor,
                    pair_gallery: torch.Tensor, chunk_size: int, show_progress_bar: bool | None,
                    desc: str, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """Ranks on already-validated float32 tensors on one device (see :func:`retrieval_ranks`).

    ``buffer``: optional flat float32 scratch of at least ``min(chunk_size, n_query) * n_gallery`` elements,
    so that consecutive calls reuse one allocation."""
    nq, ng = query.shape[0], gallery.shape[0]
    device = query.device
    ranks = torch.zeros(nq, dtype=torch.long, device=device)
    if nq == 0 or ng == 0 or pair_query.numel() == 0:
        return ranks
    # relevance pairs de-duplicated and sorted by query (CSR layout): a chunk's pairs are one slice
    keys = torch.unique(pair_query * ng + pair_gallery)
    pq, pg = keys // ng, keys % ng
    n_chunks = -(-nq // chunk_size)
    bounds = torch.searchsorted(pq, torch.arange(0, n_chunks + 1, device=device) * chunk_size).tolist()
    rows = min(chunk_size, nq)
    if buffer is None or buffer.numel() < rows * ng:
        buffer = torch.empty(rows * ng, dtype=torch.float32, device=device)
    block_buffer = buffer[: rows * ng].view(rows, ng)
    count_dtype = torch.float32 if ng < _EXACT_F32_COUNT else torch.float64
    gallery_t = gallery.t()
    if show_progress_bar is None:
        show_progress_bar = n_chunks >= AUTO_PROGRESS_MIN_CHUNKS
    for c in tqdm(range(n_chunks), desc=desc, disable=not show_progress_bar, leave=False):
        start = c * chunk_size
        stop = min(start + chunk_size, nq)
        p0, p1 = bounds[c], bounds[c + 1]
        if p0 == p1:  # no query in this chunk has a relevant item
            continue
        block = block_buffer[: stop - start]
        torch.mm(query[start:stop], gallery_t, out=block)
        local_q = pq[p0:p1] - start
        # gather through the flat view: index_select is far cheaper than 2-D advanced indexing here
        rel_scores = block.view(-1).index_select(0, local_q * ng + pg[p0:p1])
        best = torch.full((stop - start,), float("-inf"), device=device)
        best.scatter_reduce_(0, local_q, rel_scores, reduce="amax")
        # relevant items tied with the best one are not counted against the query
        n_rel_at_best = torch.zeros(stop - start, dtype=torch.long, device=device)
        n_rel_at_best.scatter_add_(0, local_q, (rel_scores == best.index_select(0, local_q)).long())
        # rank = 1 + #irrelevant items >= best = #all items >= best - #relevant items at best + 1
        n_ge = block.ge_(best[:, None]).sum(dim=1, dtype=count_dtype).long()
        has_rel = n_rel_at_best > 0
        ranks[start:stop] = torch.where(has_rel, n_ge - n_rel_at_best + 1, 0)
    return ranks


def retrieval_ranks(
    query_emb: torch.Tensor,
    gallery_emb: torch.Tensor,
    pair_query: torch.Tensor,
    pair_gallery: torch.Tensor,
    *,
    chunk_size: int = 4096,
    normalize: bool = True,
    show_progress_bar: bool | None = None,
    desc: str = "Ranking",
) -> torch.Tensor:
    """Rank of the best relevant gallery item for every query, computed in query chunks.

    ``(pair_query[p], pair_gallery[p])`` lists the relevant (query, gallery) pairs; a query may have any
    number of relevant items. Scores are cosine similarities (dot products when ``normalize=False``),
    computed in float32 on ``query_emb``'s device; ties count against the query (module docstring).

    Returns a ``LongTensor[n_query]`` of 1-based ranks, with ``0`` for queries that have no relevant item.
    Peak extra memory is one ``min(chunk_size, n_query) x n_gallery`` float32 block.
    """
    query_emb = _as_embeddings(query_emb, "query_emb")
    gallery_emb = _as_embeddings(gallery_emb, "gallery_emb")
    if query_emb.shape[1] != gallery_emb.shape[1]:
        raise ValueError(f"embedding dimensions differ: query_emb has dim {query_emb.shape[1]}, "
                         f"gallery_emb has dim {gallery_emb.shape[1]}")
    chunk_size = _check_chunk_size(chunk_size)
    pair_query = _as_index(pair_query, "pair_query", upper=query_emb.shape[0], upper_name="query_emb")
    pair_gallery = _as_index(pair_gallery, "pair_gallery", length=pair_query.numel(),
                             upper=gallery_emb.shape[0], upper_name="gallery_emb")
    device = query_emb.device
    query = _prepare(query_emb, device, normalize, "query_emb")
    gallery = _prepare(gallery_emb, device, normalize, "gallery_emb")
    return _ranks_prepared(query, gallery, pair_query.to(device), pair_gallery.to(device), chunk_size,
                           show_progress_bar, desc)


def _check_ks(ks: Sequence[int], mrr_k: int | None) -> tuple[tuple[int, ...], int | None]:
    if isinstance(ks, Integral):
        ks = (ks,)
    ks = tuple(ks)
    for k in ks + ((mrr_k,) if mrr_k is not None else ()):
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise ValueError(f"ks and mrr_k must be positive integers, got {k!r}")
    return tuple(int(k) for k in ks), (int(mrr_k) if mrr_k is not None else None)


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = (1, 5, 10), mrr_k: int | None = 10,
                       prefix: str = "") -> dict[str, float]:
    """``{prefix}R@k`` (fraction of queries with rank <= k) and ``{prefix}MRR@{mrr_k}`` (mean of 1/rank,
    0 beyond ``mrr_k``) over the queries with a relevant item (``rank > 0``); NaN if there are none.
    ``k`` larger than the gallery is allowed (R@k is then 1)."""
    ks, mrr_k = _check_ks(ks, mrr_k)
    ranks = torch.as_tensor(ranks)
    ranks = ranks[ranks > 0].double()
    n = ranks.numel()
    out: dict[str, float] = {}
    for k in ks:
        out[f"{prefix}R@{k}"] = float((ranks <= k).double().mean()) if n else float("nan")
    if mrr_k is not None:
        rr = torch.where(ranks <= mrr_k, 1.0 / ranks, torch.zeros_like(ranks))
        out[f"{prefix}MRR@{mrr_k}"] = float(rr.mean()) if n else float("nan")
    return out


def _validate_pair(text_emb, image_emb, text_to_image):
    text_emb = _as_embeddings(text_emb, "text_emb")
    image_emb = _as_embeddings(image_emb, "image_emb")
    if text_emb.shape[1] != image_emb.shape[1]:
        raise ValueError(f"embedding dimensions differ: text_emb has dim {text_emb.shape[1]}, "
                         f"image_emb has dim {image_emb.shape[1]}")
    text_to_image = _as_index(text_to_image, "text_to_image", length=text_emb.shape[0],
                              upper=image_emb.shape[0], upper_name="image_emb")
    return text_emb, image_emb, text_to_image


def _scratch(n_text: int, n_image: int, chunk_size: int, device) -> torch.Tensor:
    """One flat block buffer large enough for both directions."""
    n = max(min(chunk_size, n_text) * n_image, min(chunk_size, n_image) * n_text)
    return torch.empty(n, dtype=torch.float32, device=device)


def _both_directions(texts, images, t2i, ks, mrr_k, chunk_size, show_progress_bar, t2i_ranks=None, buffer=None):
    text_ids = torch.arange(texts.shape[0], device=texts.device)
    if buffer is None:
        buffer = _scratch(texts.shape[0], images.shape[0], chunk_size, texts.device)
    if t2i_ranks is None:
        t2i_ranks = _ranks_prepared(texts, images, text_ids, t2i, chunk_size, show_progress_bar, "Text->image",
                                    buffer)
    i2t_ranks = _ranks_prepared(images, texts, t2i, text_ids, chunk_size, show_progress_bar, "Image->text",
                                buffer)
    out = metrics_from_ranks(t2i_ranks, ks, mrr_k, prefix="t2i_")
    out.update(metrics_from_ranks(i2t_ranks, ks, mrr_k, prefix="i2t_"))
    return out


def retrieval_metrics(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    mrr_k: int | None = 10,
    chunk_size: int = 4096,
    normalize: bool = True,
    show_progress_bar: bool | None = None,
) -> dict[str, float]:
    """Text->image and image->text Recall@k and MRR@k.

    ``text_to_image[i]`` is the row in ``image_emb`` of caption ``i``'s image; an image may have several
    captions (or none). T2I: a caption is correct if its own image is retrieved. I2T: an image is correct
    as soon as any of its captions is retrieved (the best-scoring one sets the rank); images without any
    caption are left out of the I2T averages but stay in the T2I gallery as distractors.

    Keys: ``t2i_R@{k}`` for k in ``ks``, ``t2i_MRR@{mrr_k}``, then the same with ``i2t_``. Values are
    fractions in [0, 1]. Cosine similarity (dot product when ``normalize=False``), computed in float32 on
    ``text_emb``'s device (CPU or CUDA; bfloat16/float16 inputs are upcast). Ties count against the
    query (see the module docstring). Memory: one ``chunk_size x max(n_text, n_image)`` float32 block.
    """
    ks, mrr_k = _check_ks(ks, mrr_k)
    chunk_size = _check_chunk_size(chunk_size)
    text_emb, image_emb, t2i = _validate_pair(text_emb, image_emb, text_to_image)
    device = text_emb.device
    texts = _prepare(text_emb, device, normalize, "text_emb")
    images = _prepare(image_emb, device, normalize, "image_emb")
    return _both_directions(texts, images, t2i.to(device), ks, mrr_k, chunk_size, show_progress_bar)


def per_language_retrieval(
    text_emb: torch.Tensor,
    languages: Sequence[str],
    image_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    mrr_k: int | None = 10,
    chunk_size: int = 4096,
    normalize: bool = True,
    show_progress_bar: bool | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`retrieval_metrics` per caption language.

    For language ``L``: T2I ranks ``L``'s captions against the full image gallery; I2T ranks the images
    that have at least one ``L`` caption against a text gallery of ``L``'s captions only. Returned keys:
    each language (sorted), ``"all"`` (all captions pooled: the I2T text gallery then mixes languages)
    and ``"mean"`` (unweighted mean of the per-language values).
    """
    ks, mrr_k = _check_ks(ks, mrr_k)
    chunk_size = _check_chunk_size(chunk_size)
    text_emb, image_emb, t2i = _validate_pair(text_emb, image_emb, text_to_image)
    languages = list(languages)
    if len(languages) != text_emb.shape[0]:
        raise ValueError(f"languages has {len(languages)} entries but text_emb has {text_emb.shape[0]} rows")
    device = text_emb.device
    texts = _prepare(text_emb, device, normalize, "text_emb")
    images = _prepare(image_emb, device, normalize, "image_emb")
    t2i = t2i.to(device)
    text_ids = torch.arange(texts.shape[0], device=device)
    buffer = _scratch(texts.shape[0], images.shape[0], chunk_size, device)
    # a caption's T2I rank does not depend on the other captions: rank them all once
    t2i_ranks = _ranks_prepared(texts, images, text_ids, t2i, chunk_size, show_progress_bar, "Text->image",
                                buffer)

    by_lang = group_by_language(languages, SUMMARY_KEYS)
    results: dict[str, dict[str, float]] = {}
    for lang in sorted(by_lang, key=str):
        idx = torch.tensor(by_lang[lang], dtype=torch.long, device=device)
        results[lang] = _both_directions(texts[idx], images, t2i[idx], ks, mrr_k, chunk_size,
                                         show_progress_bar, t2i_ranks=t2i_ranks[idx], buffer=buffer)
    results["all"] = _both_directions(texts, images, t2i, ks, mrr_k, chunk_size, show_progress_bar,
                                      t2i_ranks=t2i_ranks, buffer=buffer)
    per_lang = [results[lang] for lang in by_lang]
    if per_lang:
        results["mean"] = {key: sum(m[key] for m in per_lang) / len(per_lang) for key in per_lang[0]}
    return results
