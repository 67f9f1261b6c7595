"""Nothing lost, nothing silently wrong (issue 30, items 1-8): rotation never deletes a checkpoint that fails
verification and resuming past one is refused; two exports into one folder; evaluating a checkpoint of a live
run; a collapsed student is marked, not scored; resuming with another max_steps says the schedule it follows;
methods that contain DR are not summed with DR; the teacher-eval cache follows the teacher's weights; a stream of
one anchor stops. Items 2 and 3 run two real processes."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from functools import partial

import pytest

from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.checkpointing import CHECKPOINT_MANIFEST, IncompleteCheckpointError, file_sha256, verify_checkpoint
from mvld_hf.testing import tiny_student
from tests.helpers import training_args
from tests.scripts import train_and_kill as script

BATCH = 16
_args = partial(training_args, method="fd", per_device_train_batch_size=BATCH, queue_size=64, learning_rate=3e-3,
                max_steps=2, logging_steps=1)


@pytest.fixture(scope="module")
def data(toy_dataset, teacher):
    return precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)


def _trainer(tokenizer, tmp_path, train_dataset, **kwargs):
    return DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer,
                               train_dataset=train_dataset, args=_args(tmp_path, **kwargs))


# ------------------------------------------------------------------------------ 6: methods that contain DR
@pytest.mark.parametrize("method,said", [
    ("dr+drg", "holds DR in 2 terms: 2 x DR in all (dr 1 + drg 1), plus drg's other terms (cosine distance"),
    ("drg+drb", "holds DR in 2 terms: 2 x DR in all (drg 1 + drb 1), plus drg's other terms (cosine distance of "
                "the caption and of the student's English to the anchor) at 1; drb's other terms (the reverse KL"),
    ("dr:0.5,drb:0.5", "holds DR in 2 terms: 1 x DR in all (dr 0.5 + drb 0.5), plus drb's other terms (the "
                       "reverse KL: each anchor's distribution over the batch's texts) at 0.5"),
])
def test_methods_that_contain_dr_beside_dr_say_exactly_what_the_sum_is(tmp_path, caplog, method, said):
    from mvld_hf.losses.registry import METHODS

    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        _args(tmp_path, method=method)
    lines = [r.getMessage() for r in caplog.records if "holds DR" in r.getMessage()]
    assert len(lines) == 1 and said in lines[0] and lines[0].endswith("If that is not meant, keep one of them")
    assert METHODS["drg"].includes == ("dr",) and METHODS["drb"].includes == ("dr",)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        _args(tmp_path, method="drg+ed")  # no method counted twice: nothing said
    assert not [r for r in caplog.records if "holds" in r.getMessage()]


# -------------------------------------------------------------------- 8: a stream whose anchors are all one
def test_a_stream_of_one_anchor_stops_after_a_run_of_alike_steps(tokenizer, data, tmp_path, caplog):
    from mvld_hf.trainer_checks import ALIKE_STEPS_LIMIT

    first = data[0]["teacher_text_embeds"]
    same = data.remove_columns("teacher_text_embeds").add_column("teacher_text_embeds", [first] * len(data))
    trainer = _trainer(tokenizer, tmp_path, same.to_iterable_dataset(), method="mcl", max_steps=3 * ALIKE_STEPS_LIMIT)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"), \
            pytest.raises(ValueError, match=rf"the last {ALIKE_STEPS_LIMIT} training batches \(up to step "
                                            rf"{ALIKE_STEPS_LIMIT}\) each had one anchor .*, but method='mcl' needs "
                                            "at least two rows with different anchors"):
        trainer.train()
    assert trainer.state.global_step == ALIKE_STEPS_LIMIT - 1  # stopped before the update of that step
    warned = [r for r in caplog.records if "no negatives" in r.getMessage()]
    assert len(warned) == 1  # one warning at step 1, then the stop


def test_an_occasional_alike_batch_only_warns(tokenizer, data, tmp_path, caplog):
    first = data[0]["teacher_text_embeds"]
    values = [first if i < BATCH else v for i, v in enumerate(data["teacher_text_embeds"])]
    rows = data.remove_columns("teacher_text_embeds").add_column("teacher_text_embeds", values)
    trainer = _trainer(tokenizer, tmp_path, rows.to_iterable_dataset(), method="mcl", max_steps=4)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        trainer.train()
    assert trainer.state.global_step == 4


# ------------------------------------------------------------- 7: the teacher-eval cache and the teacher's weights
def test_teacher_eval_cache_key_follows_the_teachers_weights(teacher, toy_dataset, tmp_path):
    from types import SimpleNamespace

    import torch
    from safetensors.torch import load_file, save_file

    from mvld_hf.cli.arguments import DataArguments
    from mvld_hf.cli.reports import teacher_eval_path

    folder = tmp_path / "teacher"
    teacher.model.save_pretrained(folder)
    local = SimpleNamespace(name_or_path=str(folder), revision=None, model=teacher.model)
    args, data_args = _args(tmp_path), DataArguments()

    def key():
        return teacher_eval_path(str(tmp_path / "cache"), local, toy_dataset, None, args, data_args, None)

    before = key()
    assert before == key()  # stable while nothing changes
    weights = folder / "model.safetensors"
    stat = os.stat(weights)
    tensors = load_file(weights)
    name = next(n for n, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name] + 0.01 * torch.randn_like(tensors[name])  # perturbed in place, same size
    save_file(tensors, weights, metadata={"format": "pt"})
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old time
    assert os.path.getsize(weights) == stat.st_size and key() != before


# ------------------------------------------------------- 1 and 5: rotation, resuming past a damaged checkpoint
@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tokenizer, teacher, toy_dataset):
    """A run of 4 steps saved at 2 and 4 (``tests/scripts/train_and_kill.py``'s set-up), no rotation."""
    root = tmp_path_factory.mktemp("lost")
    tiny_student(tokenizer, 16, seed=5).save_pretrained(root / "student")
    tokenizer.save_pretrained(root / "tokenizer")
    precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher).save_to_disk(root / "dataset")
    script.build_trainer(str(root), str(root / "run"), max_steps=4).train()
    return str(root)


@pytest.fixture
def run_copy(workdir, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(os.path.join(workdir, "run"), out)
    return out


def _edit_step(checkpoint: str, old: int, new: int) -> None:
    path = os.path.join(checkpoint, "trainer_state.json")
    text = open(path).read()
    assert f'"global_step": {old},' in text
    open(path, "w").write(text.replace(f'"global_step": {old},', f'"global_step": {new},'))  # same size


def test_resuming_past_a_damaged_newer_checkpoint_is_refused_and_it_is_never_deleted(workdir, run_copy):
    newer, older = os.path.join(run_copy, "checkpoint-4"), os.path.join(run_copy, "checkpoint-2")
    _edit_step(newer, 4, 5)  # its weights are intact; only the step was edited
    weights = file_sha256(os.path.join(newer, "model.safetensors"))
    trainer = script.build_trainer(workdir, run_copy, max_steps=8, save_total_limit=1)
    with pytest.raises(IncompleteCheckpointError) as err:
        trainer.train(resume_from_checkpoint=True)
    message = str(err.value)
    assert "checkpoint-4" in message and "global_step 5 but the checkpoint was written at step 4" in message
    assert f"--resume_from_checkpoint {older}" in message and "move checkpoint-4 out of" in message
    assert os.path.isdir(newer) and trainer.state.global_step == 0  # nothing trained, nothing deleted

    # asked for explicitly, the older one is resumed; the damaged folder is renamed when step 4 comes again
    trainer = script.build_trainer(workdir, run_copy, max_steps=8, save_total_limit=1)
    trainer.train(resume_from_checkpoint=older)
    kept = os.path.join(run_copy, "replaced-checkpoint-4")
    assert file_sha256(os.path.join(kept, "model.safetensors")) == weights
    assert sorted(n for n in os.listdir(run_copy) if "checkpoint" in n) == ["checkpoint-8", "replaced-checkpoint-4"]
    verify_checkpoint(os.path.join(run_copy, "checkpoint-8"))


def test_the_command_line_refuses_it_before_any_work(run_copy, tokenizer):
    from mvld_hf.cli.arguments import CliError, check_resume

    _edit_step(os.path.join(run_copy, "checkpoint-4"), 4, 5)
    args = script.make_args(run_copy, resume_from_checkpoint="true")
    with pytest.raises(CliError, match=r"global_step 5 .* would train past checkpoint-4 and replace it.*"
                                       r"--resume_from_checkpoint \S+checkpoint-2"):
        check_resume(args, tiny_student(tokenizer, 16, seed=5))
    check_resume(script.make_args(run_copy, resume_from_checkpoint=os.path.join(run_copy, "checkpoint-2")),
                 tiny_student(tokenizer, 16, seed=5))  # the older one, asked for explicitly: accepted


def test_rotation_deletes_only_verified_checkpoints_older_than_the_new_one(run_copy):
    from mvld_hf.checkpoint_guard import rotate_verified_checkpoints

    older, current = os.path.join(run_copy, "checkpoint-2"), os.path.join(run_copy, "checkpoint-4")
    with open(os.path.join(older, "optimizer.pt"), "ab") as handle:
        handle.write(b"x")  # damaged: fails verification
    assert rotate_verified_checkpoints(run_copy, 1, current) == [] and os.path.isdir(older)
    os.remove(os.path.join(older, CHECKPOINT_MANIFEST))  # an interrupted save: kept too
    assert rotate_verified_checkpoints(run_copy, 1, current) == [] and os.path.isdir(older)
    shutil.rmtree(older)
    shutil.copytree(current, older)  # a complete checkpoint (its manifest says step 4): deleted
    assert rotate_verified_checkpoints(run_copy, 1, current) == [older]
    assert rotate_verified_checkpoints(run_copy, 1, older) == [] and os.path.isdir(current)  # newer: never


def test_resuming_with_another_max_steps_says_the_schedule_in_one_line(workdir, run_copy, caplog):
    older = os.path.join(run_copy, "checkpoint-2")
    shutil.rmtree(os.path.join(run_copy, "checkpoint-4"))
    trainer = script.build_trainer(workdir, run_copy, max_steps=6)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        trainer.train(resume_from_checkpoint=older)
    lines = [r.getMessage() for r in caplog.records if "max_steps" in r.getMessage()]
    assert len(lines) == 1, lines
    assert (f"resuming {older} (step 2 of a run of --max_steps 4) with --max_steps 6: the linear learning-rate "
            "schedule is recomputed over 6 steps: the learning rate at step 3 is 0.00333 instead of the interrupted "
            "run's 0.0025, and 0 at step 6; resume with --max_steps 4") in lines[0]
    logged = [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e and e["step"] == 3]
    assert logged == [pytest.approx(5e-3 * 3 / 6)]  # after step 3's update: the schedule over 6 steps was followed


def test_resuming_with_the_same_max_steps_says_nothing_about_it(workdir, run_copy, caplog):
    shutil.rmtree(os.path.join(run_copy, "checkpoint-4"))
    trainer = script.build_trainer(workdir, run_copy, max_steps=4)
    with caplog.at_level(logging.WARNING, logger="mvld_hf"):
        trainer.train(resume_from_checkpoint=os.path.join(run_copy, "checkpoint-2"))
    assert not [r for r in caplog.records if "max_steps" in r.getMessage()]


# --------------------------------------------------------------- 4: a collapsed student is marked, not scored
def _nearly_collapsed(texts):
    """A student that maps every caption within ~0.4% of one direction (mean pairwise cosine ~0.996)."""
    import torch

    generator = torch.Generator().manual_seed(len(texts))
    direction = torch.ones(16) / 4
    return direction + 0.015 * torch.randn(len(texts), 16, generator=generator)


def test_a_collapsed_student_is_marked_collapsed_in_every_table_instead_of_winning(toy_dataset, teacher):
    from mvld_hf.evaluation import MultilingualEvaluator
    from mvld_hf.evaluation.report import format_report

    evaluator = MultilingualEvaluator(toy_dataset, parallel_column="english", batch_size=32, purity_n_init=1)
    images = evaluator.encode_images(lambda batch: teacher.encode_image(batch).cpu())
    results = {"teacher": evaluator(lambda texts: teacher.encode_text(texts).cpu(), image_embeddings=images),
               "student": evaluator(_nearly_collapsed, image_embeddings=images)}
    languages = [lang for lang in evaluator.languages]
    assert results["student"]["collapsed"] == languages and results["teacher"]["collapsed"] == []
    # the raw numbers a collapsed student wins (what today's tables showed in bold)
    assert results["student"]["consistency"]["mean"]["cosine"] > results["teacher"]["consistency"]["mean"]["cosine"]
    report = format_report(results)
    for section in ("### retrieval", "### purity", "### consistency"):
        assert section in report
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and cells[0].strip("*") in languages + ["all", "mean", "mixed"]:
            student = cells[2::2]  # columns alternate teacher, student
            assert student and all(c == "collapsed" for c in student), line
    assert "collapsed languages: student: " + ", ".join(languages) in report
    from mvld_hf.evaluation.report import per_language_figure

    axes = per_language_figure(results, metric="t2i_R@1", section="retrieval").axes[0]
    assert [t.get_text() for t in axes.texts] == ["collapsed"] * (len(languages) + 2)  # + all, mean: no bars
    student_bars = axes.containers[1]
    assert all(bar.get_height() != bar.get_height() for bar in student_bars)  # NaN: not drawn
    flat = evaluator.metrics(_nearly_collapsed, image_embeddings=images)  # what the trainer logs
    assert flat["collapsed_languages"] == len(languages)


def test_translation_tables_mark_collapse_by_spread_and_never_bold_the_spread():
    from mvld_hf.evaluation.collapse import collapsed_from_spread, mean_pairwise_cosine
    from mvld_hf.evaluation.report import format_report

    assert mean_pairwise_cosine(_nearly_collapsed(["a"] * 50)) > 0.99
    teacher = {"de": {"s2t_acc": 0.9, "cosine": 0.7, "spread": 0.3}, "mean": {"s2t_acc": 0.9, "cosine": 0.7,
                                                                            "spread": 0.3}}
    student = {"de": {"s2t_acc": 0.1, "cosine": 0.8, "spread": 0.997}, "mean": {"s2t_acc": 0.1, "cosine": 0.8,
                                                                              "spread": 0.997}}
    assert collapsed_from_spread(student) == ["de"] and collapsed_from_spread(teacher) == []
    tables = {"teacher": {"translation": teacher, "collapsed": []},
              "student": {"translation": student, "collapsed": collapsed_from_spread(student)}}
    report = format_report(tables)
    de = next(line for line in report.splitlines() if line.startswith("| de"))
    assert de == "| de | 90.0 | collapsed | 70.0 | collapsed | 30.0 | collapsed |"
    healthy = format_report({"teacher": {"translation": teacher}, "student": {"translation": {
        "de": {"s2t_acc": 0.5, "cosine": 0.6, "spread": 0.5}}}})
    assert "**50.0**" not in healthy and "**30.0**" not in healthy  # spread: no value of it is "best"


# ------------------------------------------------------ 3: evaluating a checkpoint of a run that is training
LIVE_SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "train_live.py")


def _wait(condition, process, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None or condition(), f"{what}: the process ended first"
        assert time.time() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_evaluating_a_checkpoint_of_a_training_run_reads_a_snapshot_and_writes_beside_it(workdir, tmp_path, teacher,
                                                                                         toy_dataset):
    """Two processes: a run saving every step (save_total_limit=1) and ``python -m mvld_hf.cli.evaluate`` on its
    checkpoint-1, which the run rotates away while the evaluation runs."""
    teacher_dir, data_dir, run, gates = tmp_path / "teacher", tmp_path / "data", tmp_path / "live", tmp_path / "gates"
    for part in (teacher.model, teacher.tokenizer, teacher.image_processor):
        part.save_pretrained(teacher_dir)
    toy_dataset.save_to_disk(data_dir)
    gates.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    checkpoint, log_path = run / "checkpoint-1", tmp_path / "evaluate.log"
    with open(tmp_path / "train.log", "w") as train_log, open(log_path, "w") as eval_log:
        trainer = subprocess.Popen([sys.executable, LIVE_SCRIPT, workdir, str(run), str(gates)], env=env,
                                   stdout=train_log, stderr=subprocess.STDOUT)
        evaluation = None
        try:
            _wait((gates / "saved-1").exists, trainer, "checkpoint-1")
            evaluation = subprocess.Popen(
                [sys.executable, "-m", "mvld_hf.cli.evaluate", "--model", str(checkpoint), "--teacher",
                 str(teacher_dir), "--dataset", str(data_dir), "--device", "cpu", "--batch-size", "16"],
                env=env, stdout=eval_log, stderr=subprocess.STDOUT)
            _wait(lambda: "loading the teacher" in log_path.read_text(), evaluation, "the student to be read")
            (gates / "go").touch()  # the run trains on: its rotation deletes checkpoint-1 during the evaluation
            _wait(lambda: not checkpoint.exists(), trainer, "checkpoint-1 to rotate away")
            evaluation.wait(timeout=300)
        finally:
            (gates / "go").touch()
            (gates / "done").touch()
            trainer.wait(timeout=300)
            if evaluation is not None and evaluation.poll() is None:
                evaluation.kill()
    said = log_path.read_text()
    assert evaluation.returncode == 0, said[-3000:]
    assert trainer.returncode == 0, (tmp_path / "train.log").read_text()[-3000:]
    results = run / "eval-checkpoint-1"
    assert "belongs to a run that is training" in said and f"results go to {results}" in said
    assert f"wrote {results}/eval.json" in said and json.loads((results / "eval.json").read_text())["student"]
    assert not checkpoint.exists() and sorted(n for n in os.listdir(run) if n.startswith("checkpoint-")) == \
        ["checkpoint-3"]
    assert not [n for n in os.listdir(run) if n.startswith(".mvld-read-")]  # the snapshot was deleted


# ------------------------------------------------------------------ 2: two exports into one new folder at once
GATED_EXPORT = os.path.join(os.path.dirname(__file__), "scripts", "export_gated.py")


def test_a_second_export_into_the_same_folder_meanwhile_is_refused(tokenizer, teacher, tmp_path):
    """Two processes of hub_upload.py's main into one new --local-dir, the first held inside its export while the
    second starts: the second is refused in one line naming the first; the folder holds the first's export."""
    teacher_dir, checkpoint, target, gates = tmp_path / "teacher", tmp_path / "ckpt", tmp_path / "X", tmp_path / "g"
    for part in (teacher.model, teacher.tokenizer, teacher.image_processor):
        part.save_pretrained(teacher_dir)
    student = tiny_student(tokenizer, projection_dim=16, seed=7)
    student.config.teacher_name_or_path = str(teacher_dir)
    student.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    gates.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")

    def export(name):
        return subprocess.Popen([sys.executable, GATED_EXPORT, str(gates), name, str(checkpoint), "--local-dir",
                                 str(target), "--text-only"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = export("first")
    second = None
    try:
        _wait((gates / "first-exporting").exists, first, "the first export")
        second = export("second")
        deadline = time.time() + 300
        while not (gates / "second-exporting").exists() and second.poll() is None and time.time() < deadline:
            time.sleep(0.1)
    finally:
        (gates / "go").touch()
    out_first, err_first = first.communicate(timeout=300)
    out_second, err_second = second.communicate(timeout=300)
    assert first.returncode == 0 and f"wrote {target}" in out_first, err_first[-3000:]
    assert second.returncode == 1 and f"wrote {target}" not in out_second, (out_second, err_second[-3000:])
    line = err_second.strip().splitlines()[-1]
    assert line.startswith("hub_upload.py: error: another export into ") and f"pid {first.pid} " in line, line
    assert not (gates / "second-exporting").exists()  # refused before writing anything
    assert (target / "modules.json").is_file() and not [n for n in os.listdir(tmp_path) if "mvld_export" in n]


def test_study_cells_count_the_collapsed_languages():
    from mvld_hf.study.runner import cell_metrics

    results = {"student": {"retrieval": {"de": {"t2i_R@1": 0.01}, "fr": {"t2i_R@1": 0.3}, "mean": {"t2i_R@1": 0.2}},
                           "purity": {"de": 0.9, "fr": 0.5, "mean": 0.7, "mixed": 0.6},
                           "consistency": {"de": {"top1_agreement": 0.0, "cosine": 1.0},
                                           "fr": {"top1_agreement": 0.4, "cosine": 0.7},
                                           "mean": {"top1_agreement": 0.2, "cosine": 0.85}},
                           "collapsed": ["de"]},
               "teacher": {"purity": {"de": 0.4, "mixed": 0.3}, "collapsed": []}}
    flat = cell_metrics(results)
    assert flat["collapsed_languages"] == 1 and flat["teacher_collapsed_languages"] == 0  # said beside the numbers
