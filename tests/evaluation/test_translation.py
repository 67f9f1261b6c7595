import math

import pytest
import torch
import torch.nn.functional as F

from mvld_hf.evaluation.translation import TranslationEvaluator, translation_metrics


def _brute_force(student, teacher):
    """Loop reference: a query is right iff its own target scores strictly above every other target."""
    s, t = F.normalize(student.double(), dim=-1), F.normalize(teacher.double(), dim=-1)
    n = len(s)

    def dot(x, y):  # correctly rounded: equal rows give equal scores, whatever their memory layout
        return math.fsum((x * y).tolist())

    def accuracy(q, g):
        hits = 0
        for i in range(n):
            own = dot(q[i], g[i])
            hits += all(dot(q[i], g[j]) < own for j in range(n) if j != i)
        return hits / n

    pairs = [dot(s[i], s[j]) for i in range(n) for j in range(n) if i != j]
    return {"s2t_acc": accuracy(s, t), "t2s_acc": accuracy(t, s),
            "cosine": sum(dot(s[i], t[i]) for i in range(n)) / n,
            "mse": float(((student.double() - teacher.double()) ** 2).mean()),
            "spread": sum(pairs) / len(pairs)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_translation_metrics_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(12, 5, generator=g)
    student = teacher + 1.2 * torch.randn(12, 5, generator=g)  # noisy: some rows right, some wrong
    student[3] = student[4]  # a duplicate student row
    got, want = translation_metrics(student, teacher), _brute_force(student, teacher)
    assert 0 < got["s2t_acc"] < 1
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key


def test_constant_student_scores_zero_and_full_spread():
    teacher = torch.randn(6, 4)
    got = translation_metrics(torch.ones(6, 4), teacher)
    assert got["t2s_acc"] == 0  # every gallery row ties
    assert got["s2t_acc"] <= 1 / 6  # every query ranks the targets alike: at most one is right
    assert got["spread"] == pytest.approx(1.0)


def _rows():
    rows = []
    for lang, prefix in (("de", "de-"), ("zh", "zh-")):
        for k in range(5):
            rows.append({"caption": f"{prefix}{k}", "english": f"en-{k}", "language": lang})
    rows.append({"caption": "de-dup", "english": "en-0", "language": "de"})  # repeats en-0: dropped
    return rows


def test_evaluator_per_language_keys_dedup_and_teacher_once():
    basis = torch.eye(5)
    calls = []

    def teacher(texts):
        calls.append(len(texts))
        return torch.stack([basis[int(x.split("-")[1])] for x in texts])

    def student(texts):  # de is right; zh is a constant encoder
        return torch.stack([basis[int(x.split("-")[1])] if x.startswith("de") else torch.ones(5) for x in texts])

    evaluator = TranslationEvaluator(_rows(), name="xl")
    assert evaluator.captions["de"] == [f"de-{k}" for k in range(5)]
    metrics = evaluator(student, encode_teacher=teacher)
    metrics_again = evaluator(student)  # teacher embeddings are kept
    assert metrics == metrics_again and calls == [5]
    assert metrics["xl_s2t_acc_de"] == 1.0 and metrics["xl_t2s_acc_de"] == 1.0
    assert metrics["xl_s2t_acc_zh"] == 0.0 and metrics["xl_spread_zh"] == pytest.approx(1.0)
    assert metrics["xl_s2t_acc_mean"] == 0.5
    assert evaluator.primary_metric_key == "xl_s2t_acc_mean" and evaluator.greater_is_better
    assert evaluator.metrics(student) == metrics  # the trainer's entry point
    table = evaluator.per_language(metrics)
    assert list(table) == ["de", "zh", "mean"] and table["zh"]["s2t_acc"] == 0.0


def test_evaluator_teacher_column_and_errors():
    rows = [dict(r, emb=[float(r["english"] == "en-0"), 1.0]) for r in _rows()]
    evaluator = TranslationEvaluator(rows, teacher_column="emb", languages=["de"])
    assert evaluator.teacher_embeddings["de"].shape == (5, 2)
    with pytest.raises(ValueError, match="no column"):
        TranslationEvaluator(rows, english_column="en")
    with pytest.raises(ValueError, match="no rows for language"):
        TranslationEvaluator(rows, languages=["fr"])
    with pytest.raises(ValueError, match="encode_teacher"):
        TranslationEvaluator(_rows())(lambda texts: torch.zeros(len(texts), 2))
    with pytest.raises(ValueError, match="projection_dim"):
        translation_metrics(torch.zeros(3, 2), torch.zeros(3, 4))
