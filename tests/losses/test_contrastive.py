import math

import pytest
import torch
import torch.nn.functional as F

from mvld_hf.losses import contrastive


def test_identity_batch_matches_hand_computed_infonce():
    s = a = torch.eye(2)
    # logits [[1, 0], [0, 1]] at T=1: CE = -log(e / (e + 1)) in both directions
    expected = math.log(1 + math.exp(-1))
    out = contrastive(s, a, temperature=1.0)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["s2a"].item() == pytest.approx(expected, rel=1e-6)
    assert out["accuracy"].item() == 1.0


def test_asymmetric_directions_against_explicit_formula():
    torch.manual_seed(0)
    s, a = torch.randn(5, 3), torch.randn(5, 3)
    logits = F.normalize(s, dim=-1) @ F.normalize(a, dim=-1).T / 0.1
    labels = torch.arange(5)
    rows = -torch.log_softmax(logits, 1)[labels, labels].mean()
    cols = -torch.log_softmax(logits.T, 1)[labels, labels].mean()
    out = contrastive(s, a, temperature=0.1)
    assert out["s2a"].item() == pytest.approx(rows.item(), rel=1e-5)
    assert out["a2s"].item() == pytest.approx(cols.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((rows + cols).item() / 2, rel=1e-5)
    assert out["s2a"].item() != pytest.approx(out["a2s"].item(), rel=1e-3)


def test_gradient_only_into_student():
    s = torch.randn(4, 8, requires_grad=True)
    a = torch.randn(4, 8, requires_grad=True)
    contrastive(s, a)["loss"].backward()
    assert s.grad.abs().sum() > 0 and a.grad is None


def test_errors():
    with pytest.raises(ValueError, match="temperature"):
        contrastive(torch.randn(2, 3), torch.randn(2, 3), temperature=-1)
    with pytest.raises(ValueError, match="shape"):
        contrastive(torch.randn(2, 3), torch.randn(2, 4))
