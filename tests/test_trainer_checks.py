"""The trainer's input checks in one place (:func:`mvld_hf.trainer_checks.check_trainer_inputs`), called without a
``Trainer`` around them: defaults, refusals with their reasons, and what is handed on to ``Trainer.__init__``."""

import pytest

from mvld_hf import DistillationCollator
from mvld_hf.testing import tiny_student
from mvld_hf.trainer_checks import check_trainer_inputs, embedding_dim, evaluator_inputs
from tests.helpers import training_args


def test_defaults_and_refused_arguments(tokenizer, tmp_path):
    checked = check_trainer_inputs(None, None, None, None, tokenizer, None, None)
    assert checked.args.output_dir == "mvld_hf_output" and isinstance(checked.data_collator, DistillationCollator)
    assert checked.teacher_embedder is None and checked.evaluators == [] and checked.evaluator_kwargs == []
    with pytest.raises(TypeError, match="args must be DistillationArguments"):
        check_trainer_inputs(None, object(), None, None, tokenizer, None, None)
    with pytest.raises(ValueError, match="processing_class"):
        check_trainer_inputs(None, training_args(tmp_path, method="fd"), None, None, None, None, None)


def test_the_teacher_embeds_in_the_step_and_must_match_the_students_dim(tokenizer, teacher, tmp_path):
    args = training_args(tmp_path, method="fd")
    student = tiny_student(tokenizer, teacher.dim)
    checked = check_trainer_inputs(student, args, None, None, tokenizer, teacher, None)
    assert checked.teacher_embedder.teacher is teacher and checked.model is student
    assert embedding_dim(student) == teacher.dim
    with pytest.raises(ValueError, match=f"build the student with projection_dim={teacher.dim}"):
        check_trainer_inputs(tiny_student(tokenizer, teacher.dim + 1), args, None, None, tokenizer, teacher, None)


def test_evaluators_get_the_teachers_embeddings_once(teacher):
    class NeedsTeacherText:
        teacher_embeddings = None

        def encode_teacher(self, encode):
            self.teacher_embeddings = encode(["a dog", "a cat"])

    evaluator = NeedsTeacherText()
    assert evaluator_inputs(evaluator, teacher) == {}
    assert tuple(evaluator.teacher_embeddings.shape) == (2, teacher.dim)
    with pytest.raises(ValueError, match="pass teacher= to the trainer"):
        evaluator_inputs(NeedsTeacherText(), None)
