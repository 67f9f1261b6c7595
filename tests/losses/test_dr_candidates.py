"""The candidate objectives DRG (DR + scale-free English-control geometry) and DRB (DR in both directions): their
parts, their invariances and the gradients each part sends."""

import pytest
import torch

from mvld_hf.losses import distributional_replication, dr_bidirectional, dr_geometry


def _batch(seed=0, b=6, d=8, k=5):
    g = torch.Generator().manual_seed(seed)
    s, s_en, t, queue = (torch.randn(n, d, generator=g) for n in (b, b, b, k))
    return s, s_en, t, queue


def test_drg_is_dr_plus_weighted_cosine_distances():
    s, s_en, t, queue = _batch()
    dr = distributional_replication(s, t, t, queue)["loss"]
    out = dr_geometry(s, s_en, t, t, queue, geometry_weight=0.5)
    cos = torch.nn.functional.cosine_similarity
    geometry = (1 - cos(s, t)).mean() + (1 - cos(s_en, t)).mean()
    assert torch.allclose(out["dr"], dr) and torch.allclose(out["geometry"], geometry)
    assert torch.allclose(out["loss"], dr + 0.5 * geometry)


def test_drg_geometry_is_scale_free_unlike_ed_mse():
    """Scaling every embedding by 15 (the offline CLIP teacher's norm vs MiniLM's 1) leaves DRG unchanged."""
    s, s_en, t, queue = _batch(1)
    small, large = dr_geometry(s, s_en, t, t, queue), dr_geometry(15 * s, 15 * s_en, 15 * t, 15 * t, 15 * queue)
    assert torch.allclose(small["loss"], large["loss"], atol=1e-5)


def test_drg_english_term_reaches_only_the_english_embeddings():
    s, s_en, t, queue = _batch(2)
    s_en.requires_grad_(True)
    dr_geometry(s, s_en, t, t, queue)["geometry"].backward()
    assert s_en.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="geometry_weight"):
        dr_geometry(s, s_en, t, t, queue, geometry_weight=0)


def test_drb_reverse_term_is_the_anchor_side_kl_over_the_batch():
    s, _, t, queue = _batch(3)
    out = dr_bidirectional(s, t, t, queue, teacher_temperature=0.1, student_temperature=0.2)
    assert torch.allclose(out["dr"], distributional_replication(s, t, t, queue, 0.1, 0.2)["loss"])
    n = torch.nn.functional.normalize
    p = torch.log_softmax(n(t) @ n(t).T / 0.1, -1)
    q = torch.log_softmax(n(t) @ n(s).T / 0.2, -1)
    reverse = (p.exp() * (p - q)).sum(-1).mean()
    assert torch.allclose(out["reverse"], reverse, atol=1e-6)
    assert torch.allclose(out["loss"], out["dr"] + out["reverse"])


def test_drb_reverse_term_sees_what_dr_does_not():
    """With an empty memory DR's only key is each row's own anchor, so DR is 0 whatever the student; the reverse
    term still compares the texts as one anchor sees them (text 1 leaning towards anchor 0)."""
    a = torch.eye(3)
    queue = torch.zeros(0, 3)
    s = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.3, 0.0], [0.0, 0.0, 1.0]])
    out = dr_bidirectional(s, a, a, queue)
    assert float(out["dr"]) < 1e-6
    assert float(out["reverse"]) > 0.05
    assert float(dr_bidirectional(a, a, a, queue)["reverse"]) < 1e-6


@pytest.mark.parametrize("method,part", [("drg", "drg_geometry"), ("drb", "drb_reverse")])
def test_candidates_learn_through_the_trainer(method, part, tokenizer, teacher, toy_dataset, tmp_path):
    """drg (English captions + queue) and drb (queue) through DistillationTrainer on the toy corpus: the loss
    falls and the named parts are logged; drg's geometry term moves the captions onto their anchors."""
    import torch.nn.functional as F

    from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
    from mvld_hf.testing import tiny_student
    from tests.helpers import training_args

    data = precompute_teacher_embeddings(toy_dataset, teacher, anchor="text")
    student = tiny_student(tokenizer, projection_dim=16, seed=1)
    anchors = torch.tensor(data["teacher_text_embeds"])
    before = F.cosine_similarity(student.encode(data["caption"], tokenizer), anchors).mean()
    args = training_args(tmp_path, method=method, per_device_train_batch_size=16, queue_size=64,
                         learning_rate=3e-3, max_steps=12, logging_steps=4)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs[-1]["loss"] < logs[0]["loss"] and part in logs[0] and f"loss_{method}" in logs[0]
    after = F.cosine_similarity(student.encode(data["caption"], tokenizer), anchors).mean()
    if method == "drg":
        assert after > before + 0.1, (float(before), float(after))
