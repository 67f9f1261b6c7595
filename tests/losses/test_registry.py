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


# ------------------------------------------------------------------- everything about a method is on its spec
def test_the_built_in_methods_pass_the_checks_a_users_method_passes():
    from mvld_hf.losses.registry import PAPER_METHODS, validate_method

    for spec in METHODS.values():
        validate_method(spec)
    assert PAPER_METHODS == ("fd", "ed", "sd", "mcl", "dr")  # the paper's methods cite it; DRG, DRB do not
    assert PAPER_METHODS == tuple(code for code, spec in METHODS.items() if spec.citation)
    assert [code for code, spec in METHODS.items() if spec.needs_batch_negatives] == ["sd", "mcl"]
    assert [code for code, spec in METHODS.items() if spec.negatives is None] == ["fd", "ed"]


def _spec(**changes):
    from dataclasses import replace

    from mvld_hf.losses import MethodSpec

    def loss(s, a):
        return {"loss": (s - a).pow(2).mean(), "gap": (s - a).detach().abs().mean()}

    return replace(MethodSpec("mine", "my method (MINE)", "MSE", loss, ("s", "a"), citation=None), **changes)


@pytest.mark.parametrize("changes,error,message", [
    ({"code": "My-KD"}, ValueError, "lower-case letters"),
    ({"code": "dr"}, ValueError, "built-in method"),
    ({"inputs": ("s", "image")}, ValueError, "inputs must be distinct names among"),
    ({"inputs": ("s", "s")}, ValueError, "inputs must be distinct names among"),
    ({"loss": "mse"}, TypeError, "loss must be callable"),
    ({"loss": lambda s, a: (s - a).pow(2).mean()}, ValueError, "must return a dict with a 'loss' entry"),
    ({"loss": lambda s, a: {"loss": (s - a).pow(2).mean(), "per_row": s - a}}, ValueError, "must be a scalar tensor"),
    ({"loss": lambda s, a: {"loss": (s - a).pow(2).mean().detach()}}, ValueError, "carries no gradient"),
    ({"loss": lambda s, a: {"loss": s.sum() / 0}}, ValueError, "the loss is inf"),
    ({"loss": lambda s: {"loss": s.sum()}}, ValueError, "failed on"),
    ({"arguments": {"temperature": "contrastive_temperature"}}, ValueError, r"loss takes no keyword \['temperature'\]"),
    ({"citation": "Smith 2020"}, ValueError, "BibTeX"),
    ({"includes": ("xd",)}, ValueError, "includes names"),
])
def test_register_method_refuses_what_the_trainer_could_not_run(changes, error, message):
    from mvld_hf.losses import register_method

    with pytest.raises(error, match=message):
        register_method(_spec(**changes))
    assert "mine" not in METHODS and list(METHODS)[:5] == ["fd", "ed", "sd", "mcl", "dr"]


def test_register_method_adds_a_selectable_method_and_unregister_removes_it():
    from dataclasses import replace

    from mvld_hf.losses import register_method, unregister_method

    spec = register_method(_spec())
    try:
        assert register_method(spec) is spec  # the same spec again: a no-op
        with pytest.raises(ValueError, match="already registered"):
            register_method(replace(spec, description="another"))
        register_method(replace(spec, description="another"), replace=True)
        args = _args(method="dr+mine:0.5")
        assert args.method_weights == {"dr": 1.0, "mine": 0.5} and not args.has_mse_term
        assert _method_text("mine") == "`mine`: my method (MINE)"
    finally:
        unregister_method("mine")
    with pytest.raises(ValueError, match="unknown method 'mine'.*register_method"):
        _args(method="mine")
    spec = register_method(_spec(loss=lambda s, a, temperature=1.0: {"loss": (s - a).pow(2).mean() / temperature},
                                 arguments={"temperature": "no_such_field"}))
    try:  # the fields a method reads are DistillationArguments' (checked where that class is known)
        with pytest.raises(ValueError, match=r"method 'mine' reads \['no_such_field'\], which are not"):
            _args(method="mine")
    finally:
        unregister_method("mine")
    with pytest.raises(ValueError, match="built-in"):
        unregister_method("dr")


def test_method_kwargs_set_a_methods_own_hyperparameters():
    """DRG's geometry weight from DistillationArguments (or --method_kwargs JSON), checked by its spec."""
    from mvld_hf.losses import dr_geometry

    torch.manual_seed(0)
    s, s_en, t, a, keys = (torch.randn(2, 4) for _ in range(5))
    embeddings = {"s": s, "s_en": s_en, "t": t, "a": a, "keys": keys}
    for method_kwargs, weight in ((None, 1.0), ({"drg": {"geometry_weight": 0.25}}, 0.25),
                                  ('{"drg": {"geometry_weight": 3}}', 3.0)):
        args = _args(method="drg", method_kwargs=method_kwargs)
        want = dr_geometry(s, s_en, t, a, keys, include_positive=args.include_positive, geometry_weight=weight)
        assert torch.allclose(METHODS["drg"].compute(embeddings, args)["loss"], want["loss"])
    assert METHODS["drg"].hyperparameters["geometry_weight"].default == 1.0
    for bad, message in (({"drg": {"geometry_weight": 0}}, "drg.geometry_weight must be a positive"),
                         ({"drg": {"lambda": 1}}, "method 'drg' has no hyperparameter 'lambda'"),
                         ({"xd": {}}, "method_kwargs names 'xd', which is not a method"),
                         ("{drg", "method_kwargs must be JSON"),
                         ({"drg": 0.5}, "maps method codes to")):
        with pytest.raises(ValueError, match=message):
            _args(method="drg", method_kwargs=bad)


def test_the_card_prints_each_methods_citation_once_then_the_papers():
    from mvld_hf.losses import register_method, unregister_method
    from mvld_hf.losses.registry import PAPER_CITATION, citations

    assert citations("dr+fd") == citations("drg") == citations(None) == PAPER_CITATION
    mine = "@misc{mine2026, title = {Mine}}"
    register_method(_spec(citation=mine))
    try:
        assert citations("mine+dr") == mine + "\n\n" + PAPER_CITATION
    finally:
        unregister_method("mine")


def test_drb_reverse_weight_is_the_loss_of_the_weighted_sum_with_dr():
    """DRB's reverse_weight 0.5 is the loss the unified study ran as 'dr:0.5,drb:0.5' (DR once, half the reverse)."""
    torch.manual_seed(0)
    s, t, a, keys = (torch.randn(4, 8) for _ in range(4))
    embeddings = {"s": s, "t": t, "a": a, "keys": keys}
    half = METHODS["drb"].compute(embeddings, _args(method="drb", method_kwargs={"drb": {"reverse_weight": 0.5}}))
    args = _args(method="drb")
    summed = sum(0.5 * METHODS[code].compute(embeddings, args)["loss"] for code in ("dr", "drb"))
    assert torch.allclose(half["loss"], summed)
