import pytest
import torch

from mvld_hf.evaluation.clustering import (
    COLLAPSE_SPREAD,
    clustering_purity,
    embedding_spread,
    per_language_purity,
    purity_from_assignments,
    spherical_kmeans,
)


def blobs(n_per=20, k=4, dim=8, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:k] * 3
    labels = torch.arange(k).repeat_interleave(n_per)
    x = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    return x, labels


def test_purity_from_assignments_by_hand():
    assignments = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    labels = ["a", "a", "b", "b", "b", "a", "c", "c", "c", "b"]
    # cluster 0: a,a,b -> 2; cluster 1: b,b -> 2; cluster 2: a,c,c,c,b -> 3; (2 + 2 + 3) / 10
    assert purity_from_assignments(assignments, labels) == pytest.approx(0.7)
    assert purity_from_assignments([0] * 4, ["x", "y", "x", "z"]) == pytest.approx(0.5)
    assert purity_from_assignments([0, 1, 2, 3], ["x", "y", "x", "z"]) == 1.0
    assert purity_from_assignments(torch.tensor([5, 5, 9]), torch.tensor([1, 1, 1])) == 1.0


def test_purity_from_assignments_invariances():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (60,), generator=g).tolist()
    y = torch.randint(0, 4, (60,), generator=g).tolist()
    base = purity_from_assignments(a, y)
    perm = torch.randperm(60, generator=g).tolist()
    assert purity_from_assignments([a[i] for i in perm], [y[i] for i in perm]) == pytest.approx(base)
    renamed_clusters = [f"cluster-{(c * 7) % 5}" for c in a]
    renamed_labels = [("label", 3 - l) for l in y]
    assert purity_from_assignments(renamed_clusters, renamed_labels) == pytest.approx(base)


def test_purity_argument_errors():
    with pytest.raises(ValueError, match="assignments has 2 entries but labels has 3"):
        purity_from_assignments([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        purity_from_assignments([], [])
    with pytest.raises(ValueError, match="n_clusters"):
        spherical_kmeans(torch.randn(3, 2), 4)
    with pytest.raises(ValueError, match="one row per label"):
        clustering_purity(torch.randn(3, 2), [0, 1])


def test_separated_clusters_give_purity_one():
    x, labels = blobs()
    assert clustering_purity(x, labels.tolist()) == 1.0
    # scale does not matter: k-means runs on L2-normalised rows
    scales = torch.linspace(0.1, 10, len(labels))[:, None]
    assert clustering_purity(x * scales, labels.tolist()) == 1.0


def test_joint_permutation_keeps_purity_on_separated_data():
    x, labels = blobs(seed=3)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    assert clustering_purity(x[perm], [f"scene{int(l)}" for l in labels[perm]]) == 1.0


def test_random_labels_give_about_one_over_k():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 16, generator=g)
    k = 4
    labels = torch.arange(k).repeat(150)[torch.randperm(600, generator=g)].tolist()
    purity = clustering_purity(x, labels, seed=0, n_init=1)
    assert 1 / k <= purity < 1 / k + 0.1


def test_kmeans_is_deterministic_and_seed_dependent():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    a = spherical_kmeans(x, 6, seed=1)
    b = spherical_kmeans(x, 6, seed=1)
    assert torch.equal(a.assignments, b.assignments) and a.objective == b.objective
    assert torch.allclose(a.centroids.norm(dim=-1), torch.ones(6))
    assert set(a.assignments.tolist()) == set(range(6))


def test_duplicate_points_and_as_many_clusters_as_points():
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 2)
    res = spherical_kmeans(x, 5, seed=0)  # more clusters than distinct points: must not crash
    assert res.assignments.shape == (5,)
    assert clustering_purity(x, ["a", "a", "a", "b", "b"]) == 1.0


def test_per_language_purity_mixed_needs_cross_lingual_alignment():
    # 4 scenes, 6 captions each in "en" and "de"; every language alone is perfectly clustered
    x, scenes = blobs(n_per=6, k=4, dim=8, noise=0.02, seed=0)
    noise = 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    labels = scenes.tolist() * 2
    langs = ["en"] * len(scenes) + ["de"] * len(scenes)
    aligned = per_language_purity(torch.cat([x, x + noise]), labels, langs)
    assert list(aligned) == ["de", "en", "mean", "mixed"]
    assert aligned == {"de": 1.0, "en": 1.0, "mean": 1.0, "mixed": 1.0}
    # misaligned student: German captions of scene s land where English captions of scene s+1 are
    shifted = torch.roll(x.view(4, 6, 8), shifts=-1, dims=0).reshape(24, 8) + noise
    misaligned = per_language_purity(torch.cat([x, shifted]), labels, langs)
    assert misaligned["en"] == 1.0 and misaligned["de"] == 1.0
    assert misaligned["mixed"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="clash"):
        per_language_purity(torch.randn(2, 3), [0, 1], ["mixed", "en"])


def _scenes(n_scenes=30, captions=2, langs=("en", "de", "ja")):
    labels = [s for _ in langs for s in range(n_scenes) for _ in range(captions)]
    languages = [lang for lang in langs for _ in range(n_scenes * captions)]
    return labels, languages


@pytest.mark.parametrize("noise", [0.0, 1e-6, 1e-4])
def test_a_constant_encoder_scores_the_largest_label_share(noise, caplog):
    """k-means over (nearly) identical points used to split float noise into clusters: with 2 captions per
    scene that scored ~0.5 per language, "better" than a teacher whose identical embeddings all tied into one
    cluster (1/30 here). Collapsed embeddings now always form one cluster: ties count against."""
    import logging

    labels, languages = _scenes()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, generator=g) + noise * torch.randn(len(labels), 16, generator=g)
    with caplog.at_level(logging.WARNING, logger="mvld_hf.evaluation.clustering"):
        out = per_language_purity(x, labels, languages)
    assert out == pytest.approx({"de": 1 / 30, "en": 1 / 30, "ja": 1 / 30, "mean": 1 / 30, "mixed": 1 / 30})
    assert "de, en, ja, mixed are collapsed" in caplog.text
    result = spherical_kmeans(x, 30)
    assert result.collapsed and set(result.assignments.tolist()) == {0}


def test_collapse_threshold_leaves_real_spread_alone():
    x, labels = blobs()
    assert embedding_spread(x) > 0.4 and not spherical_kmeans(x, 4).collapsed
    assert embedding_spread(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 32, generator=g)
    slightly = direction + 0.05 * direction.norm() / 32 ** 0.5 * torch.randn(200, 32, generator=g)
    assert embedding_spread(slightly) > COLLAPSE_SPREAD  # cosine ~0.999: still clustered
    assert not spherical_kmeans(slightly, 10).collapsed


def test_kmeans_stops_when_it_stops_improving():
    """Near-identical points (cosine ~0.999999): float rounding flipped assignments at every Lloyd iteration
    without improving the objective, so k-means ran all max_iter=100 iterations (0.39 s here instead of 0.11 s);
    it now stops when the gain vanishes. (purity no longer clusters such points at all: they are collapsed, so
    the Lloyd loop is called directly.)"""
    import torch.nn.functional as F

    from mvld_hf.evaluation.clustering import _spherical_kmeans

    g = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 32, generator=g)
    x = F.normalize(direction + 1e-3 * direction.norm() / 32 ** 0.5 * torch.randn(600, 32, generator=g), dim=-1)
    result = _spherical_kmeans(x, 300, 0, 1, 100)
    assert 1 <= result.n_iter < 10
    separated = spherical_kmeans(blobs()[0], 4, n_init=1)
    assert 1 <= separated.n_iter < 10 and separated.objective > 0
