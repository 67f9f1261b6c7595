"""Clustering purity of caption embeddings (do captions of the same scene end up in one cluster?).

k-means is implemented here in torch (spherical k-means: cosine assignments, unit-norm centroids,
k-means++ seeding) rather than taken from scikit-learn because

* the package does not declare scikit-learn as a dependency (it only arrives through
  sentence-transformers), and the evaluation should not hinge on a transitive dependency;
* it runs on the embeddings' device, so large caption sets are clustered on the GPU when there is one;
* on L2-normalised embeddings the cosine objective is the natural one (it is what retrieval scores use);
  for unit vectors ``||x - c||^2 = 2 - 2 cos(x, c)`` so the assignments are those of Euclidean k-means
  with centroids projected back onto the sphere;
* it is deterministic for a given seed and device (a CPU ``torch.Generator`` drives all sampling).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .base import group_by_language

logger = logging.getLogger(__name__)

__all__ = [
    "COLLAPSE_SPREAD",
    "KMeansResult",
    "embedding_spread",
    "spherical_kmeans",
    "purity_from_assignments",
    "clustering_purity",
    "per_language_purity",
]

# Below this spread (1 - the norm of the mean unit vector: about the mean of 1 - cos(caption, mean direction)) the
# embeddings are collapsed: every caption within a cosine of ~0.9999 of one direction, as from a constant or
# near-constant encoder. k-means would split such points by float noise and score the split as clusters.
COLLAPSE_SPREAD = 1e-4
# Lloyd iterations stop when the mean cosine to the centroids gains less than this per point (or falls: float
# rounding, not progress): on near-collapsed embeddings float32 rounding flips most assignments at every iteration
# without improving anything, so waiting for "no assignment changes" ran all max_iter iterations
_TOL = 1e-8

# elements of the [rows, n_clusters] similarity block computed at once during assignment
_ASSIGN_BLOCK_ELEMENTS = 2**24
# below this many multiply-adds per Lloyd iteration (n * k * d) CPU k-means runs on one thread
_SMALL_PROBLEM = 2**23


@contextmanager
def _single_thread_if_small(x: torch.Tensor, k: int) -> Iterator[None]:
    """k-means is a long chain of small ops; on a small problem each intra-op parallel region costs more
    than it saves (tens of ms per op on an oversubscribed CPU), so run it on one thread and restore the
    caller's setting afterwards."""
    threads = torch.get_num_threads()
    if x.device.type != "cpu" or threads == 1 or x.shape[0] * k * x.shape[1] >= _SMALL_PROBLEM:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class KMeansResult:
    assignments: torch.Tensor  # LongTensor[N], cluster of each point
    centroids: torch.Tensor  # [K, d], unit norm
    objective: float  # sum over points of cos(point, its centroid); higher is better
    n_iter: int  # Lloyd iterations of the kept seeding
    collapsed: bool = False  # the embeddings were collapsed: every point in cluster 0 (see embedding_spread)


def embedding_spread(embeddings: torch.Tensor) -> float:
    """``1 - ||mean of the L2-normalised rows||``: 0 when every row points the same way, about the mean of
    ``1 - cos(row, mean direction)`` when they nearly do, up to 1 for rows spread evenly. Below
    :data:`COLLAPSE_SPREAD` the embeddings are collapsed (a constant encoder) and purity puts them in one cluster.

    >>> round(embedding_spread(torch.ones(3, 4)), 6), round(embedding_spread(torch.eye(4)), 6)
    (0.0, 0.5)
    """
    x = F.normalize(torch.as_tensor(embeddings).detach().double(), dim=-1)
    return float(1.0 - x.mean(dim=0).norm())


def _codes(values: Sequence[Hashable], name: str) -> tuple[np.ndarray, int]:
    """Map hashable values to 0..n-1 in order of first appearance."""
    if torch.is_tensor(values):
        values = values.tolist()
    mapping: dict = {}
    try:
        codes = np.fromiter((mapping.setdefault(v, len(mapping)) for v in values), dtype=np.int64)
    except TypeError as exc:
        raise TypeError(f"{name} must hold hashable values ({exc})") from exc
    return codes, len(mapping)


def purity_from_assignments(assignments: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Purity = (1/N) * sum over clusters of the count of the cluster's most frequent label.

    Both arguments may hold any hashable values; the result is invariant to renaming clusters or labels
    and to permuting the points (jointly). 1.0 means every cluster holds a single label.
    """
    a, _ = _codes(assignments, "assignments")
    y, n_labels = _codes(labels, "labels")
    if a.size != y.size:
        raise ValueError(f"assignments has {a.size} entries but labels has {y.size}")
    if a.size == 0:
        raise ValueError("purity of an empty set is undefined")
    pairs, counts = np.unique(a * n_labels + y, return_counts=True)
    best = np.zeros(int(a.max()) + 1, dtype=np.int64)
    np.maximum.at(best, pairs // n_labels, counts)
    return float(best.sum() / a.size)


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid (highest cosine) per point, in row blocks; ties go to the lowest cluster index."""
    n, k = x.shape[0], centroids.shape[0]
    rows = max(1, _ASSIGN_BLOCK_ELEMENTS // max(k, 1))
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    sims = torch.empty(n, dtype=x.dtype, device=x.device)
    for start in range(0, n, rows):
        block = x[start:start + rows] @ centroids.T
        sims[start:start + rows], labels[start:start + rows] = block.max(dim=1)
    return labels, sims


def _kmeanspp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding with the spherical distance 1 - cos (= half the squared Euclidean
    distance between unit vectors): each step draws ``2 + log(k)`` candidates with probability
    proportional to their distance to the chosen centres and keeps the one that lowers the total
    distance most (the variant of Arthur & Vassilvitskii that scikit-learn also uses)."""
    n = x.shape[0]
    n_trials = 2 + int(np.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    taken = torch.zeros(n, dtype=torch.bool)
    taken[first] = True
    dist = (1.0 - x @ x[first]).clamp_(min=0).double()
    for _ in range(1, k):
        total = float(dist.sum())
        if total <= 0.0:  # every point coincides with a chosen centre: pick an unused point uniformly
            free = torch.nonzero(~taken).flatten()
            nxt = int(free[int(torch.randint(free.numel(), (1,), generator=generator))])
            new_dist = torch.minimum(dist, (1.0 - x @ x[nxt]).clamp_(min=0).double())
        else:
            r = torch.rand(n_trials, generator=generator, dtype=torch.float64).to(dist.device) * total
            cum = torch.cumsum(dist, 0)
            cand = torch.searchsorted(cum, r).clamp_(max=n - 1)
            # candidate distances to every point; keep the candidate with the smallest new potential
            cand_dist = torch.minimum(dist[None, :], (1.0 - x[cand] @ x.T).clamp_(min=0).double())
            best = int(torch.argmin(cand_dist.sum(dim=1)))
            nxt, new_dist = int(cand[best]), cand_dist[best]
        chosen.append(nxt)
        taken[nxt] = True
        dist = new_dist
    return x[chosen].clone()


def spherical_kmeans(
    embeddings: torch.Tensor,
    n_clusters: int,
    *,
    seed: int = 0,
    n_init: int = 3,
    max_iter: int = 100,
) -> KMeansResult:
    """Spherical k-means (cosine) on L2-normalised ``embeddings`` with k-means++ seeding.

    Runs ``n_init`` seedings and keeps the one with the highest objective. Lloyd iterations stop when no
    assignment changes or after ``max_iter``. A cluster that empties is re-seeded with the point that is
    worst served by its own centroid. Deterministic for a given ``seed`` and device.
    """
    x = torch.as_tensor(embeddings)
    if x.dim() != 2:
        raise ValueError(f"embeddings must be 2-D [n, dim], got shape {tuple(x.shape)}")
    n = x.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be an integer in [1, {n}] (the number of points), got {n_clusters!r}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init and max_iter must be >= 1, got n_init={n_init}, max_iter={max_iter}")
    x = F.normalize(x.detach().float(), dim=-1)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("embeddings contain NaN or Inf values")
    if embedding_spread(x) < COLLAPSE_SPREAD:
        # ties count against: points the encoder cannot tell apart are not split by k-means' float noise
        centroid = F.normalize(x.double().mean(dim=0), dim=-1).float()
        centroids = centroid.expand(n_clusters, -1).clone()
        sims = x @ centroid
        return KMeansResult(torch.zeros(n, dtype=torch.long, device=x.device), centroids,
                            float(sims.double().sum()), 0, collapsed=True)
    with _single_thread_if_small(x, n_clusters):
        return _spherical_kmeans(x, n_clusters, seed, n_init, max_iter)


def _spherical_kmeans(x: torch.Tensor, n_clusters: int, seed: int, n_init: int, max_iter: int) -> KMeansResult:
    generator = torch.Generator().manual_seed(seed)
    best: KMeansResult | None = None
    for _ in range(n_init):
        centroids = _kmeanspp(x, n_clusters, generator)
        labels, sims = _assign(x, centroids)
        objective = float(sims.double().sum())
        it = 0
        while it < max_iter:
            it += 1
            sums = torch.zeros_like(centroids).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=n_clusters)
            empty = torch.nonzero(counts == 0).flatten()
            if empty.numel():
                # re-seed empty clusters with the points farthest from their centroids (deterministic)
                worst = torch.argsort(sims, stable=True)[: empty.numel()]
                sums[empty] = x[worst]
            new_centroids = F.normalize(sums, dim=-1)
            new_labels, new_sims = _assign(x, new_centroids)
            new_objective = float(new_sims.double().sum())
            changed = bool((new_labels != labels).any())
            if new_objective < objective and empty.numel() == 0:
                break  # float rounding, not progress (Lloyd never lowers the objective): keep the better state
            gain = new_objective - objective
            centroids, labels, sims, objective = new_centroids, new_labels, new_sims, new_objective
            # a fixed point (re-seeding empty clusters would repeat itself too), or no gain worth an iteration
            if not changed or (gain < _TOL * x.shape[0] and empty.numel() == 0):
                break
        result = KMeansResult(labels, centroids, objective, it)
        if best is None or result.objective > best.objective:
            best = result
    assert best is not None
    return best


def clustering_purity(
    embeddings: torch.Tensor,
    labels: Sequence[Hashable],
    n_clusters: int | None = None,
    seed: int = 0,
    n_init: int = 3,
    max_iter: int = 100,
) -> float:
    """Purity of spherical k-means clusters of ``embeddings`` w.r.t. ``labels``.

    ``n_clusters`` defaults to the number of distinct labels. Perfectly separated classes give 1.0;
    embeddings unrelated to balanced labels give roughly ``1 / n_clusters`` when there are many points per
    label, but never less than ``n_clusters / n`` (every cluster's majority counts): with 2 captions per label a
    random split scores about 0.5. Collapsed embeddings (:func:`embedding_spread` below :data:`COLLAPSE_SPREAD`,
    a constant encoder) are not split by float noise: ties count against, all points form one cluster and
    purity is the largest label's share (logged as a warning).
    """
    embeddings = torch.as_tensor(embeddings)
    labels = labels.tolist() if torch.is_tensor(labels) else list(labels)
    if embeddings.dim() != 2 or embeddings.shape[0] != len(labels):
        raise ValueError(f"embeddings must be [n, dim] with one row per label: got shape "
                         f"{tuple(embeddings.shape)} for {len(labels)} labels")
    if n_clusters is None:
        n_clusters = len(set(labels))
    purity, collapsed = _purity(embeddings, labels, n_clusters, seed, n_init, max_iter)
    if collapsed:
        logger.warning("purity: the embeddings are collapsed (spread %.1e < %.0e: a constant encoder?), so they form "
                       "one cluster and purity is the largest label's share, %.4f", embedding_spread(embeddings),
                       COLLAPSE_SPREAD, purity)
    return purity


def _purity(embeddings, labels, n_clusters, seed, n_init, max_iter) -> tuple[float, bool]:
    result = spherical_kmeans(embeddings, n_clusters, seed=seed, n_init=n_init, max_iter=max_iter)
    return purity_from_assignments(result.assignments.tolist(), labels), result.collapsed


def per_language_purity(
    embeddings: torch.Tensor,
    labels: Sequence[Hashable],
    languages: Sequence[str],
    seed: int = 0,
    n_init: int = 3,
    max_iter: int = 100,
    show_progress_bar: bool | None = None,
) -> dict[str, float]:
    """Purity per language (each language clustered alone, with as many clusters as it has distinct
    labels), ``"mean"`` over languages, and ``"mixed"``: all languages clustered together, so captions of
    one scene in different languages must share a cluster to count as pure.

    ``show_progress_bar`` (default: when there are 1,000 captions or more) shows one step per k-means run
    and logs the time taken at INFO. Collapsed embeddings score as one cluster (see :func:`clustering_purity`)
    and are named in a warning."""
    embeddings = torch.as_tensor(embeddings)
    labels = labels.tolist() if torch.is_tensor(labels) else list(labels)
    languages = list(languages)
    if not (embeddings.shape[0] == len(labels) == len(languages)):
        raise ValueError(f"embeddings ({embeddings.shape[0]} rows), labels ({len(labels)}) and languages "
                         f"({len(languages)}) must have the same length")
    by_lang = group_by_language(languages, ("mean", "mixed"))
    out: dict[str, float] = {}
    if show_progress_bar is None:
        show_progress_bar = len(labels) >= 1000
    started = time.perf_counter()
    if show_progress_bar:
        logger.info("purity: spherical k-means (%d restarts) on %d captions, each of %d languages alone and all "
                    "mixed", n_init, len(labels), len(by_lang))
    bar = tqdm(total=len(by_lang) + 1, desc="Purity k-means", disable=not show_progress_bar, leave=False)
    collapsed = []
    for lang in sorted(by_lang, key=str):
        idx = by_lang[lang]
        lang_labels = [labels[i] for i in idx]
        out[lang], flat = _purity(embeddings[idx], lang_labels, len(set(lang_labels)), seed, n_init, max_iter)
        collapsed += [str(lang)] if flat else []
        bar.update()
    if by_lang:
        out["mean"] = sum(out[lang] for lang in by_lang) / len(by_lang)
    out["mixed"], flat = _purity(embeddings, labels, len(set(labels)), seed, n_init, max_iter)
    collapsed += ["mixed"] if flat else []
    bar.update()
    bar.close()
    if collapsed:
        logger.warning("purity: the embeddings of %s are collapsed (a constant encoder?): each of them forms one "
                       "cluster and scores its largest label's share (ties count against)", ", ".join(collapsed))
    if show_progress_bar:
        logger.info("purity: done in %.1f s", time.perf_counter() - started)
    return out
