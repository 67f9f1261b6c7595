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


def test_fd_mse_options_default_to_the_plain_mse():
    torch.manual_seed(0)
    s, a = torch.randn(8, 5), torch.randn(8, 5) + 2
    plain = feature_distillation(s, a)["loss"]
    # the batch-centred part plus the mean part is the MSE exactly (at weights 1 and 1)
    out = feature_distillation(s, a, centered_weight=1.0 + 1e-9, mean_weight=1.0)
    assert out["loss"].item() == pytest.approx(plain.item(), rel=1e-5)
    assert (out["centred"] + out["mean"]).item() == pytest.approx(plain.item(), rel=1e-5)
    assert feature_distillation(s, a, anchor_centering=0.0, whitening=0.0)["loss"].item() == plain.item()


def test_fd_anchor_centering_removes_the_anchors_shared_offset():
    torch.manual_seed(1)
    s, a = torch.randn(6, 4), torch.randn(6, 4)
    shifted = a + torch.tensor([3.0, -1.0, 0.5, 2.0])
    centred = feature_distillation(s, a, anchor_centering=1.0)["loss"]
    assert feature_distillation(s, shifted, anchor_centering=1.0)["loss"].item() == pytest.approx(centred.item())
    assert feature_distillation(a - a.mean(0), shifted, anchor_centering=1.0)["loss"].item() == pytest.approx(0.0)
    half = feature_distillation(s, a, anchor_centering=0.5)["loss"]
    assert half.item() == pytest.approx(feature_distillation(s, a - 0.5 * a.mean(0))["loss"].item())


def test_fd_mean_weight_zero_ignores_a_shared_student_offset():
    torch.manual_seed(2)
    s, a = torch.randn(6, 4), torch.randn(6, 4)
    loss = feature_distillation(s, a, mean_weight=0.0)["loss"]
    assert feature_distillation(s + 5.0, a, mean_weight=0.0)["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    assert feature_distillation(s + 5.0, a)["loss"].item() > loss.item() + 20


def test_ed_passes_the_mse_options_to_both_terms():
    torch.manual_seed(3)
    s, s_en, a = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3) + 1
    out = english_control(s, s_en, a, anchor_centering=1.0)
    assert out["caption"].item() == pytest.approx(feature_distillation(s, a, anchor_centering=1.0)["loss"].item())
    assert out["english"].item() == pytest.approx(
        feature_distillation(s_en, a, anchor_centering=1.0)["loss"].item())


def test_fd_and_ed_options_reach_the_loss_through_method_kwargs():
    from mvld_hf import DistillationArguments
    from mvld_hf.losses import METHODS

    args = DistillationArguments(output_dir="unused", method="fd+ed", report_to="none",
                                 method_kwargs={"fd": {"anchor_centering": 1.0}, "ed": {"anchor_centering": 1.0}})
    torch.manual_seed(4)
    emb = {"s": torch.randn(4, 3), "s_en": torch.randn(4, 3), "a": torch.randn(4, 3) + 1}
    fd = METHODS["fd"].compute(emb, args)["loss"]
    assert fd.item() == pytest.approx(feature_distillation(emb["s"], emb["a"], anchor_centering=1.0)["loss"].item())
    assert METHODS["fd"].compute(emb, DistillationArguments(output_dir="unused", method="fd", report_to="none")
                                 )["loss"].item() == pytest.approx(feature_distillation(emb["s"], emb["a"])["loss"]
                                                                    .item())
    with pytest.raises(ValueError, match="anchor_centering"):
        DistillationArguments(output_dir="unused", method="fd", report_to="none",
                              method_kwargs={"fd": {"anchor_centering": -1.0}})
