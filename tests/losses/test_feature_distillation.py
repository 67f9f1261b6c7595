import math

import pytest
import torch

from mvld_hf.losses import english_control, feature_distillation


def test_fd_matches_hand_computed_mse():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # ((1 + 4) + (4 + 9)) / 4 elements
    assert feature_distillation(s, a)["loss"].item() == pytest.approx(4.5)


def test_fd_normalized_is_two_minus_two_cos_over_dim():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cos1, cos2 = 1 / math.sqrt(5), 4 / 5
    expected = ((2 - 2 * cos1) / 2 + (2 - 2 * cos2) / 2) / 2
    assert feature_distillation(s, a, normalize=True)["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_ed_is_sum_of_two_fd_terms():
    a = torch.zeros(2, 3)
    s, s_en = torch.ones(2, 3), 2 * torch.ones(2, 3)
    out = english_control(s, s_en, a)
    assert out["caption"].item() == pytest.approx(1.0)
    assert out["english"].item() == pytest.approx(4.0)
    assert out["loss"].item() == pytest.approx(5.0)


def test_gradient_flows_only_into_student():
    s = torch.randn(4, 8, requires_grad=True)
    s_en = torch.randn(4, 8, requires_grad=True)
    a = torch.randn(4, 8, requires_grad=True)
    english_control(s, s_en, a)["loss"].backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert s_en.grad is not None and s_en.grad.abs().sum() > 0
    assert a.grad is None


@pytest.mark.parametrize("s_shape,a_shape,match", [
    ((4, 8), (4, 6), "same batch size and dimension"),
    ((4, 8), (3, 8), "same batch size and dimension"),
    ((8,), (8,), "2-D"),
])
def test_shape_errors(s_shape, a_shape, match):
    with pytest.raises(ValueError, match=match):
        feature_distillation(torch.randn(s_shape), torch.randn(a_shape))


def test_ed_rejects_mismatched_english_batch():
    with pytest.raises(ValueError, match="s_en"):
        english_control(torch.randn(4, 8), torch.randn(3, 8), torch.randn(4, 8))


def test_integer_tensor_rejected():
    with pytest.raises(TypeError, match="floating"):
        feature_distillation(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2))


def test_english_control_checks_the_caption_embeddings():
    with pytest.raises(ValueError, match=r"s must be 2-D"):
        english_control(torch.randn(4, 8, 1), torch.randn(4, 8), torch.randn(4, 8))
    with pytest.raises(TypeError, match=r"s must be a torch.Tensor"):
        english_control([[0.0]], torch.randn(1, 1), torch.randn(1, 1))
