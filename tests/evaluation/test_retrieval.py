import math

import numpy as np
import pytest
import torch

from mvld_hf.evaluation.retrieval import (
    metrics_from_ranks,
    per_language_retrieval,
    retrieval_metrics,
    retrieval_ranks,
)


# ----------------------------------------------------------------------------------------------------
# Brute-force reference: full similarity matrix in float64 numpy, explicit per-query ranking with the
# documented convention "rank = 1 + #irrelevant items scoring >= the best relevant item".
# ----------------------------------------------------------------------------------------------------
def _reference_rank(scores_row, relevant):
    best = max(scores_row[j] for j in relevant)
    return 1 + sum(1 for j in range(len(scores_row)) if j not in relevant and scores_row[j] >= best)


def reference_metrics(text, image, t2i, ks=(1, 5, 10), mrr_k=10, normalize=True):
    text = np.asarray(text, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    if normalize:
        text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        image = image / np.maximum(np.linalg.norm(image, axis=1, keepdims=True), 1e-12)
    sims = text @ image.T  # [n_text, n_image]
    t2i = [int(x) for x in t2i]
    t2i_ranks = [_reference_rank(sims[i], {t2i[i]}) for i in range(len(t2i))]
    i2t_ranks = []
    for img in range(image.shape[0]):
        captions = {i for i in range(len(t2i)) if t2i[i] == img}
        if captions:
            i2t_ranks.append(_reference_rank(sims[:, img], captions))

    def summarise(ranks, prefix):
        out = {f"{prefix}R@{k}": sum(r <= k for r in ranks) / len(ranks) for k in ks}
        out[f"{prefix}MRR@{mrr_k}"] = sum(1.0 / r if r <= mrr_k else 0.0 for r in ranks) / len(ranks)
        return out

    return {**summarise(t2i_ranks, "t2i_"), **summarise(i2t_ranks, "i2t_")}


def assert_metrics_equal(got, expected):
    assert list(got) == list(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def integer_data(seed, n_image=23, captions_per_image=(0, 4), dim=4, low=-2, high=3, duplicates=True):
    """Small-integer embeddings: every dot product is exact in float32, and many scores tie."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(low, high, (n_image, dim), generator=g).float()
    if duplicates:  # deliberate duplicate images (identical embeddings, different ids)
        image[1] = image[0]
        image[5] = image[3]
    counts = torch.randint(captions_per_image[0], captions_per_image[1] + 1, (n_image,), generator=g)
    counts[0] = max(int(counts[0]), 1)
    t2i = torch.repeat_interleave(torch.arange(n_image), counts)
    t2i = t2i[torch.randperm(t2i.numel(), generator=g)]
    text = torch.randint(low, high, (t2i.numel(), dim), generator=g).float()
    if duplicates:  # duplicate captions, and captions identical to their image
        text[1] = text[0]
        text[2] = image[t2i[2]]
    return text, image, t2i


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 4096])
def test_matches_brute_force_with_ties(seed, chunk_size):
    text, image, t2i = integer_data(seed)
    got = retrieval_metrics(text, image, t2i, chunk_size=chunk_size, normalize=False)
    assert_metrics_equal(got, reference_metrics(text, image, t2i, normalize=False))


@pytest.mark.parametrize("chunk_size", [2, 5, 1000])
def test_matches_brute_force_normalized(chunk_size):
    # sign vectors scaled by random powers of two: L2 normalisation is exact (entries become +-1/2),
    # so the float32 and the float64 reference scores agree bit for bit, ties included
    g = torch.Generator().manual_seed(7)
    image = torch.randint(0, 2, (17, 4), generator=g).float() * 2 - 1
    image *= 2.0 ** torch.randint(-3, 4, (17, 1), generator=g)
    t2i = torch.randint(0, 17, (40,), generator=g)
    text = torch.randint(0, 2, (40, 4), generator=g).float() * 2 - 1
    text *= 2.0 ** torch.randint(-3, 4, (40, 1), generator=g)
    got = retrieval_metrics(text, image, t2i, chunk_size=chunk_size, normalize=True)
    assert_metrics_equal(got, reference_metrics(text, image, t2i, normalize=True))
    unit = torch.nn.functional.normalize
    assert_metrics_equal(got, retrieval_metrics(unit(text, dim=-1), unit(image, dim=-1), t2i,
                                                chunk_size=chunk_size, normalize=False))


def test_ranks_match_reference_and_are_chunk_invariant_on_gaussian_data():
    g = torch.Generator().manual_seed(1)
    image = torch.randn(50, 16, generator=g)
    t2i = torch.randint(0, 50, (120,), generator=g)
    text = image[t2i] + 0.8 * torch.randn(120, 16, generator=g)
    ids = torch.arange(120)
    ref = retrieval_ranks(text, image, ids, t2i, chunk_size=120)
    for cs in (7, 64):
        assert torch.equal(retrieval_ranks(text, image, ids, t2i, chunk_size=cs), ref)
    sims = torch.nn.functional.normalize(text.double(), dim=-1) @ torch.nn.functional.normalize(
        image.double(), dim=-1).T
    expected = [_reference_rank(sims[i].tolist(), {int(t2i[i])}) for i in range(120)]
    assert ref.tolist() == expected


def test_tie_convention_counts_ties_against_the_query():
    # all embeddings identical: a collapsed encoder must not score well
    text = torch.ones(6, 3)
    image = torch.ones(3, 3)
    t2i = torch.tensor([0, 0, 1, 1, 2, 2])
    ranks = retrieval_ranks(text, image, torch.arange(6), t2i)
    assert ranks.tolist() == [3] * 6  # 2 irrelevant images tie with the correct one
    i2t = retrieval_ranks(image, text, t2i, torch.arange(6))
    assert i2t.tolist() == [5] * 3  # 4 irrelevant captions tie; the 2 relevant ones do not count
    m = retrieval_metrics(text, image, t2i)
    assert m["t2i_R@1"] == 0.0 and m["t2i_R@5"] == 1.0
    assert m["t2i_MRR@10"] == pytest.approx(1 / 3)
    assert m["i2t_R@1"] == 0.0 and m["i2t_MRR@10"] == pytest.approx(1 / 5)


def test_hand_computed_ranks_multiple_captions():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    text = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.9], [-1.0, -0.2], [0.0, 1.0]])
    t2i = torch.tensor([0, 0, 1, 2, 2])
    # T2I: caption0 -> img0 top (1); caption1 -> img1 best, img0 2nd: rank 2; caption2 -> img0 .9 vs img1
    # .67: rank 2; caption3 -> img2 top: 1; caption4 -> img1 top, img0 and img2 tie at 0 -> rank 3
    t2i_ranks = retrieval_ranks(text, image, torch.arange(5), t2i)
    assert t2i_ranks.tolist() == [1, 2, 2, 1, 3]
    # I2T: img0 -> best of its captions {0, 1} is caption0 (cos .995), the top score: rank 1;
    # img1 -> caption2 (.669) is beaten by caption1 (.995) and caption4 (1.0): rank 3;
    # img2 -> best of {3, 4} is caption3 (.98), the top score: rank 1
    i2t_ranks = retrieval_ranks(image, text, t2i, torch.arange(5))
    assert i2t_ranks.tolist() == [1, 3, 1]
    m = retrieval_metrics(text, image, t2i, ks=(1, 2))
    assert m["t2i_R@1"] == pytest.approx(2 / 5)
    assert m["t2i_R@2"] == pytest.approx(4 / 5)
    assert m["t2i_MRR@10"] == pytest.approx((1 + 0.5 + 0.5 + 1 + 1 / 3) / 5)
    assert m["i2t_R@1"] == pytest.approx(2 / 3)
    assert m["i2t_MRR@10"] == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_duplicate_relevance_pairs_are_counted_once():
    text, image, t2i = integer_data(8)
    ids = torch.arange(len(t2i))
    ranks = retrieval_ranks(text, image, ids, t2i, normalize=False, chunk_size=5)
    doubled = retrieval_ranks(text, image, torch.cat([ids, ids[:7]]), torch.cat([t2i, t2i[:7]]),
                              normalize=False, chunk_size=5)
    assert torch.equal(ranks, doubled)


def test_k_larger_than_gallery_and_images_without_captions():
    text, image, t2i = integer_data(3, n_image=6, captions_per_image=(0, 2))
    m = retrieval_metrics(text, image, t2i, ks=(1, 100), mrr_k=1000, normalize=False)
    assert m["t2i_R@100"] == 1.0 and m["i2t_R@100"] == 1.0
    assert_metrics_equal(m, reference_metrics(text, image, t2i, ks=(1, 100), mrr_k=1000, normalize=False))
    ranks = retrieval_ranks(image, text, t2i, torch.arange(len(t2i)), normalize=False)
    without = set(range(6)) - set(t2i.tolist())
    assert all(ranks[i] == 0 for i in without)


def test_low_precision_inputs_are_computed_in_float32():
    text, image, t2i = integer_data(5)
    got = retrieval_metrics(text.bfloat16(), image.half(), t2i, normalize=False, chunk_size=4)
    assert_metrics_equal(got, reference_metrics(text, image, t2i, normalize=False))


def test_numpy_inputs_and_key_order():
    text, image, t2i = integer_data(6)
    m = retrieval_metrics(text.numpy(), image.numpy(), t2i.numpy(), normalize=False)
    assert list(m) == ["t2i_R@1", "t2i_R@5", "t2i_R@10", "t2i_MRR@10",
                       "i2t_R@1", "i2t_R@5", "i2t_R@10", "i2t_MRR@10"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    text, image, t2i = integer_data(2)
    cpu = retrieval_metrics(text, image, t2i, normalize=False, chunk_size=5)
    gpu = retrieval_metrics(text.cuda(), image.cuda(), t2i.cuda(), normalize=False, chunk_size=5)
    assert_metrics_equal(gpu, cpu)


def test_argument_errors():
    text, image = torch.randn(4, 8), torch.randn(3, 8)
    with pytest.raises(ValueError, match="text_to_image has 3 entries but 4 were expected"):
        retrieval_metrics(text, image, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="dimensions differ.*8.*6"):
        retrieval_metrics(text, torch.randn(3, 6), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(IndexError, match="index 3, out of range for image_emb with 3 rows"):
        retrieval_metrics(text, image, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(IndexError, match="index -1"):
        retrieval_metrics(text, image, torch.tensor([0, 1, -1, 0]))
    with pytest.raises(ValueError, match="must be 2-D"):
        retrieval_metrics(torch.randn(8), image, torch.tensor([0]))
    with pytest.raises(TypeError, match="integer indices"):
        retrieval_metrics(text, image, torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(text, image, torch.tensor([0, 1, 2, 0]), chunk_size=0)
    with pytest.raises(ValueError, match="positive integers"):
        retrieval_metrics(text, image, torch.tensor([0, 1, 2, 0]), ks=(0, 5))
    bad = text.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        retrieval_metrics(bad, image, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        retrieval_metrics(bad, image, torch.tensor([0, 1, 2, 0]), normalize=False)
    inf = image.clone()
    inf[2, 0] = float("inf")
    with pytest.raises(ValueError, match="image_emb contains NaN or Inf"):
        retrieval_metrics(text, inf, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="languages has 2 entries"):
        per_language_retrieval(text, ["en", "de"], image, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="clash"):
        per_language_retrieval(text, ["en", "all", "en", "de"], image, torch.tensor([0, 1, 2, 0]))


def test_metrics_from_ranks_ignores_queries_without_relevant_items():
    m = metrics_from_ranks(torch.tensor([1, 0, 3, 12]), ks=(1, 3), mrr_k=10)
    assert m == {"R@1": pytest.approx(1 / 3), "R@3": pytest.approx(2 / 3),
                 "MRR@10": pytest.approx((1 + 1 / 3) / 3)}
    assert math.isnan(metrics_from_ranks(torch.tensor([0, 0]))["R@1"])


def test_per_language_retrieval_matches_restricted_reference():
    text, image, t2i = integer_data(11, n_image=15, captions_per_image=(1, 5))
    g = torch.Generator().manual_seed(0)
    langs = [["en", "de", "sw"][int(i)] for i in torch.randint(0, 3, (len(t2i),), generator=g)]
    res = per_language_retrieval(text, langs, image, t2i, normalize=False, chunk_size=4)
    assert list(res) == ["de", "en", "sw", "all", "mean"]
    for lang in ("de", "en", "sw"):
        idx = [i for i, l in enumerate(langs) if l == lang]
        expected = reference_metrics(text[idx], image, t2i[idx], normalize=False)
        assert_metrics_equal(res[lang], expected)
    assert_metrics_equal(res["all"], reference_metrics(text, image, t2i, normalize=False))
    for key in res["all"]:
        assert res["mean"][key] == pytest.approx(sum(res[l][key] for l in ("de", "en", "sw")) / 3)
