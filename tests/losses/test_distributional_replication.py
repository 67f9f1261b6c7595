import math

import pytest
import torch
import torch.nn.functional as F

from mvld_hf.losses import distributional_replication, soft_logit


def _cos(x, y):
    return sum(a * b for a, b in zip(x, y)) / math.sqrt(sum(a * a for a in x) * sum(b * b for b in y))


def _kl_of_logits(tl, sl):
    p = [math.exp(v - max(tl)) for v in tl]
    p = [v / sum(p) for v in p]
    q = [math.exp(v - max(sl)) for v in sl]
    q = [v / sum(q) for v in q]
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_seed_style_matches_hand_computed_keys():
    s = [[1.0, 0.5], [0.0, 1.0]]
    t = [[1.0, 0.0], [0.2, 1.0]]
    a = [[1.0, 0.1], [0.0, 1.0]]
    queue = [[1.0, 1.0], [-1.0, 0.3], [0.5, -1.0]]
    tau_t, tau_s = 0.5, 0.25
    expected = 0.0
    for i in range(2):
        keys = [a[i]] + queue  # own anchor first, then the queue
        tl = [_cos(t[i], k) / tau_t for k in keys]
        sl = [_cos(s[i], k) / tau_s for k in keys]
        expected += _kl_of_logits(tl, sl) / 2
    out = distributional_replication(torch.tensor(s), torch.tensor(t), torch.tensor(a), torch.tensor(queue),
                                     tau_t, tau_s, include_positive=True)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_comp_ress_style_equals_soft_logit_over_the_queue():
    torch.manual_seed(0)
    s, t, a, queue = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6), torch.randn(10, 6)
    dr = distributional_replication(s, t, a, queue, 0.1, 0.2, include_positive=False)["loss"]
    sd = soft_logit(s, t, queue, 0.1, 0.2)["loss"]
    assert dr.item() == pytest.approx(sd.item(), rel=1e-6)


def test_positive_changes_the_loss():
    torch.manual_seed(1)
    s, a, queue = torch.randn(4, 6), torch.randn(4, 6), torch.randn(10, 6)
    t = a.clone()  # text anchors: the teacher's row peaks on its own anchor
    with_pos = distributional_replication(s, t, a, queue, include_positive=True)["loss"]
    without = distributional_replication(s, t, a, queue, include_positive=False)["loss"]
    assert with_pos.item() != pytest.approx(without.item(), rel=1e-3)


def test_empty_queue_with_positive_only_is_zero_and_without_is_an_error():
    s, t, a = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    assert distributional_replication(s, t, a, torch.empty(0, 4))["loss"].item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="empty queue"):
        distributional_replication(s, t, a, torch.empty(0, 4), include_positive=False)


def test_gradient_only_into_student_and_no_nan_at_seed_temperature():
    torch.manual_seed(2)
    s = torch.randn(8, 16, requires_grad=True)
    t, a, queue = (torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True),
                   torch.randn(64, 16, requires_grad=True))
    out = distributional_replication(s, t, a, queue, teacher_temperature=1e-4, student_temperature=0.2)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None and a.grad is None and queue.grad is None


def test_queue_shape_error():
    with pytest.raises(ValueError, match="queue must be"):
        distributional_replication(torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4), torch.randn(5, 3))


def test_student_matching_teacher_gives_zero():
    torch.manual_seed(3)
    t, a, queue = torch.randn(5, 8), torch.randn(5, 8), F.normalize(torch.randn(20, 8), dim=-1)
    assert distributional_replication(t.clone(), t, a, queue)["loss"].item() == pytest.approx(0.0, abs=1e-6)
