import math

import pytest
import torch

from mvld_hf.losses import soft_logit


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def test_matches_hand_computed_kl():
    a = torch.eye(2)
    t = a.clone()
    s = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # cos(t_i, a): [1, 0] and [0, 1]; cos(s_i, a): [1/sqrt2, 1/sqrt2] and [1, 0]; temperatures 1
    r = 1 / math.sqrt(2)
    expected = (_kl(_softmax([1, 0]), _softmax([r, r])) + _kl(_softmax([0, 1]), _softmax([1, 0]))) / 2
    out = soft_logit(s, t, a, teacher_temperature=1.0, student_temperature=1.0)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.2866, abs=1e-3)


def test_temperatures_scale_logits_separately():
    torch.manual_seed(0)
    s, t, a = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4)
    cos = lambda x, y: (torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T)
    p = torch.softmax(cos(t, a) / 0.3, -1)
    q = torch.softmax(cos(s, a) / 0.7, -1)
    expected = (p * (p.log() - q.log())).sum(-1).mean()
    assert soft_logit(s, t, a, 0.3, 0.7)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_zero_when_student_equals_teacher():
    torch.manual_seed(1)
    t, a = torch.randn(6, 5), torch.randn(6, 5)
    assert soft_logit(t.clone(), t, a)["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_tiny_teacher_temperature_underflows_without_nan():
    torch.manual_seed(2)
    s = torch.randn(8, 16, requires_grad=True)
    t, a = torch.randn(8, 16), torch.randn(8, 16)
    teacher_probs = torch.softmax((torch.nn.functional.normalize(t, dim=-1)
                                   @ torch.nn.functional.normalize(a, dim=-1).T) / 1e-6, -1)
    assert (teacher_probs == 0).any()  # the case the guard exists for
    out = soft_logit(s, t, a, teacher_temperature=1e-6, student_temperature=0.05)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(s.grad).all()


def test_half_precision_inputs_computed_in_float32():
    torch.manual_seed(3)
    s, t, a = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    full = soft_logit(s, t, a)["loss"]
    half = soft_logit(s.bfloat16(), t.bfloat16(), a.bfloat16())["loss"]
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=0.05)


def test_gradient_only_into_student():
    s = torch.randn(4, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    a = torch.randn(4, 8, requires_grad=True)
    soft_logit(s, t, a)["loss"].backward()
    assert s.grad.abs().sum() > 0 and t.grad is None and a.grad is None


def test_argument_errors():
    with pytest.raises(ValueError, match="teacher_temperature"):
        soft_logit(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), teacher_temperature=0)
    with pytest.raises(ValueError, match="shape"):
        soft_logit(torch.randn(2, 3), torch.randn(3, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="dimension"):
        soft_logit(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 4))
