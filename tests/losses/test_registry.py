"""The method registry drives the config, the trainer's dispatch and the model card: each entry calls its loss
with the embeddings and DistillationArguments fields it names."""

import pytest
import torch

from mvld_hf import DistillationArguments
from mvld_hf.losses import (
    METHODS,
    contrastive,
    distributional_replication,
    english_control,
    feature_distillation,
    soft_logit,
)
from mvld_hf.model_card import _method_text


def _args(**kwargs):
    return DistillationArguments(output_dir="unused", report_to="none", per_device_train_batch_size=2,
                                 queue_size=4, **kwargs)


def test_registry_lists_the_five_methods_in_order_then_the_candidates():
    assert list(METHODS) == ["fd", "ed", "sd", "mcl", "dr", "drg", "drb"]
    assert all(code == spec.code and spec.display_name.endswith(f"({code.upper()})") for code, spec in METHODS.items())


def test_each_entry_calls_its_loss_with_the_named_arguments():
    torch.manual_seed(0)
    s, s_en, t, a, keys = (torch.randn(2, 4) for _ in range(5))
    args = _args(normalize_features=True, teacher_temperature=0.5, student_temperature=0.25,
                 contrastive_temperature=0.3, include_positive=False)
    embeddings = {"s": s, "s_en": s_en, "t": t, "a": a, "keys": keys}
    expected = {
        "fd": feature_distillation(s, a, normalize=True),
        "ed": english_control(s, s_en, a, normalize=True),
        "sd": soft_logit(s, t, a, 0.5, 0.25),
        "mcl": contrastive(s, a, 0.3),
        "dr": distributional_replication(s, t, a, keys, 0.5, 0.25, False),
    }
    for code, want in expected.items():
        got = METHODS[code].compute(embeddings, args)
        assert got.keys() == want.keys()
        assert all(torch.allclose(got[k], want[k]) for k in want), code


@pytest.mark.parametrize("method,english,teacher_text,queue", [
    ("fd", False, False, False), ("ed", True, False, False), ("sd", False, True, False),
    ("mcl", False, False, False), ("dr", False, True, True), ("fd+ed", True, False, False),
])
def test_config_needs_come_from_the_registry(method, english, teacher_text, queue):
    args = _args(method=method, anchor="image")
    assert (args.needs_english_captions, args.needs_teacher_text, args.uses_queue) == (english, teacher_text, queue)


def test_model_card_names_come_from_the_registry():
    assert _method_text("dr:1,fd:0.5") == "`dr:1,fd:0.5`: distributional replication (DR) x 1 + " \
                                           "feature distillation (FD) x 0.5"


def test_candidate_entries_call_their_losses_and_need_what_they_read():
    """DRG and DRB (mvld_hf's own candidates, not the paper's) go through the same registry path."""
    from mvld_hf.losses import dr_bidirectional, dr_geometry

    torch.manual_seed(0)
    s, s_en, t, a, keys = (torch.randn(2, 4) for _ in range(5))
    args = _args(teacher_temperature=0.5, student_temperature=0.25, include_positive=False)
    embeddings = {"s": s, "s_en": s_en, "t": t, "a": a, "keys": keys}
    for code, want in {"drg": dr_geometry(s, s_en, t, a, keys, 0.5, 0.25, False),
                       "drb": dr_bidirectional(s, t, a, keys, 0.5, 0.25, False)}.items():
        got = METHODS[code].compute(embeddings, args)
        assert got.keys() == want.keys() and all(torch.allclose(got[k], want[k]) for k in want), code
        assert METHODS[code].citation is None
    drg, drb = _args(method="drg"), _args(method="drb:1,ed:0.5")
    assert (drg.needs_english_captions, drg.uses_queue, drg.has_mse_term) == (True, True, False)
    assert (drb.needs_english_captions, drb.uses_queue, drb.has_mse_term) == (True, True, True)
