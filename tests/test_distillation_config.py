import pytest

from mvld_hf import DistillationArguments, parse_method


@pytest.mark.parametrize("text,expected", [
    ("dr", {"dr": 1.0}),
    ("DR+FD", {"dr": 1.0, "fd": 1.0}),
    ("dr:1.0,ed:0.5,fd:0.5", {"dr": 1.0, "ed": 0.5, "fd": 0.5}),
    (" mcl : 2 + sd ", {"mcl": 2.0, "sd": 1.0}),
])
def test_parse_method(text, expected):
    assert parse_method(text) == expected


@pytest.mark.parametrize("text,match", [
    ("kd", "unknown method 'kd'"),
    ("", "non-empty"),
    ("dr:abc", "not a number"),
    ("dr:-1", "positive"),
    ("dr:nan", "positive"),
    ("dr+dr", "twice"),
    ("dr::1", "malformed"),
    ("dr+", "malformed"),
])
def test_parse_method_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_method(text)


def _args(tmp_path, **kwargs):
    return DistillationArguments(output_dir=str(tmp_path), report_to=[], **kwargs)


def test_defaults_and_derived_needs(tmp_path):
    args = _args(tmp_path)
    assert args.method_weights == {"dr": 1.0} and args.anchor == "text"
    assert args.remove_unused_columns is False
    assert args.needs_teacher_text and not args.needs_teacher_image and not args.needs_english_captions
    image_fd = _args(tmp_path, method="ed", anchor="image")
    assert image_fd.needs_teacher_image and image_fd.needs_english_captions and not image_fd.needs_teacher_text


@pytest.mark.parametrize("kwargs,match", [
    (dict(anchor="audio"), "anchor"),
    (dict(method="dr+xx"), "unknown method"),
    (dict(teacher_temperature=0.0), "teacher_temperature"),
    (dict(contrastive_temperature=-0.1), "contrastive_temperature"),
    (dict(method="dr", queue_size=4, per_device_train_batch_size=8), "queue_size"),
    (dict(method="dr", queue_size=100, per_device_train_batch_size=8), "multiple"),
    (dict(max_length=0), "max_length"),
    (dict(max_steps=-5), r"max_steps must be a positive integer, or -1 .*got -5"),
    (dict(learning_rate=0.0), r"learning_rate must be a positive finite number, got 0.0"),
    (dict(learning_rate=-1e-4), "learning_rate must be a positive"),
    (dict(learning_rate=float("nan")), r"learning_rate .* got nan"),
    (dict(learning_rate=float("inf")), "learning_rate must be a positive"),
    (dict(method="mcl", per_device_train_batch_size=1), r"method='mcl' needs at least 2 rows in the global batch, "
                                                         r"got 1 .*MCL contrasts.*--per_device_train_batch_size 2"),
    (dict(method="dr+sd", per_device_train_batch_size=1), r"SD matches the softmax"),
])
def test_validation_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **kwargs)


def test_queue_size_irrelevant_without_dr(tmp_path):
    assert _args(tmp_path, method="fd", queue_size=3, per_device_train_batch_size=8).method_weights == {"fd": 1.0}


def test_fields_have_help(tmp_path):
    import dataclasses

    own = {f.name for f in dataclasses.fields(DistillationArguments)} - {
        f.name for f in dataclasses.fields(DistillationArguments.__mro__[1])}
    assert own  # the subclass adds fields
    for f in dataclasses.fields(DistillationArguments):
        if f.name in own:
            assert f.metadata.get("help"), f.name


def test_method_help_names_every_registered_method():
    import dataclasses
    import re

    from mvld_hf.losses.registry import METHODS

    help_text = next(f for f in dataclasses.fields(DistillationArguments) if f.name == "method").metadata["help"]
    named = set(re.findall(r"\b[a-z]+\b", help_text))
    assert set(METHODS) <= named, f"--method help misses {sorted(set(METHODS) - named)}"


def test_a_batch_of_one_is_fine_for_methods_with_other_negatives(tmp_path):
    # FD/ED compare each row with its own anchor; DR's negatives are the queue's earlier anchors
    for method in ("fd", "ed", "dr"):
        args = _args(tmp_path, method=method, per_device_train_batch_size=1, queue_size=4)
        assert args.per_device_train_batch_size == 1


def test_one_row_per_process_is_fine_when_processes_share_the_batch(tmp_path, monkeypatch):
    import mvld_hf.distillation_config as config

    monkeypatch.setattr(config, "_launched_processes", lambda: 2)
    args = config.DistillationArguments.__new__(config.DistillationArguments)
    args.method_weights, args.method, args.per_device_train_batch_size = {"mcl": 1.0}, "mcl", 1
    args._check_in_batch_negatives()  # 2 processes x 1 row: the gathered global batch has a negative
    monkeypatch.setattr(config, "_launched_processes", lambda: 1)
    with pytest.raises(ValueError, match=r"got 1 \(per_device_train_batch_size=1 x 1 process\)"):
        args._check_in_batch_negatives()
