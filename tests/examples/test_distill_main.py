import json
import logging
import os
import warnings

import pytest
import torch


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_shortened_main_job_end_to_end(distill_script, tmp_path, monkeypatch, capsys, offline_cache):
    """The offline main job on a tiny world: teacher training, distillation, evaluation, outputs; and none of the
    noise every run used to print (pin_memory on a CPU, transformers' special-token alignment)."""
    monkeypatch.setenv("MVLD_HF_CACHE", str(offline_cache))
    out = tmp_path / "run"
    transformers_log = _Records()  # transformers' loggers do not propagate to the root (caplog would miss them)
    logging.getLogger("transformers").addHandler(transformers_log)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = distill_script.main([
                "--output_dir", str(out), "--world_train_scenes", "40", "--world_test_scenes", "12",
                "--teacher_steps", "3", "--offline_hidden_size", "32", "--offline_layers", "1",
                "--offline_heads", "2", "--offline_vocab_size", "400", "--max_steps", "4",
                "--per_device_train_batch_size", "16", "--queue_size", "32", "--logging_steps", "2",
                "--save_strategy", "no", "--disable_tqdm", "true",
            ])
    finally:
        logging.getLogger("transformers").removeHandler(transformers_log)
    assert not [w for w in caught if "pin_memory" in str(w.message)]
    assert not [m for m in transformers_log.messages if "PAD/BOS/EOS" in m], transformers_log.messages
    # distillation ran and logged its DR component
    # outputs: checkpoint + tokenizer, results JSON with per-language numbers for both models, the plot
    from transformers import AutoTokenizer

    from mvld_hf import MultilingualTextTower

    student = MultilingualTextTower.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert student.encode(["ein großes rotes Herz"], tokenizer).shape == (1, student.config.projection_dim)
    assert student.config.teacher_name_or_path and student.config.distillation_method == "dr"
    saved = json.loads((out / "eval_results.json").read_text())
    from mvld_hf.synthetic import LANGUAGES

    assert set(LANGUAGES) <= set(saved["student"]["retrieval"])
    for metric in ("t2i_R@1", "t2i_R@5", "t2i_R@10", "t2i_MRR@10", "i2t_R@1"):
        assert 0.0 <= saved["student"]["retrieval"]["de"][metric] <= 1.0
    assert "en" in saved["teacher"]["retrieval"] and "mixed" in saved["student"]["purity"]
    assert set(saved["student_t2i_R@1_over_teacher_en"]) == set(LANGUAGES)
    assert (out / "retrieval_per_language.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "t2i_R@1" in printed and "teacher" in printed and "student" in printed
    # the phases: announced with estimates at the start, each timed as it ends, recorded in mvld_run.json
    phases = ("world", "teacher", "tokenizer", "precompute", "training", "evaluation")
    plan = printed[:printed.index("[phase] world")]
    assert "6 phases, about" in plan and all(f"  {name}" in plan for name in phases)
    assert all(f"[phase] {name}: " in printed for name in phases)
    record = json.loads((out / "mvld_run.json").read_text())
    assert list(record["phase_seconds"]) == list(phases) and list(record["phase_estimates"]) == list(phases)
    assert all(seconds >= 0 for seconds in record["phase_seconds"].values())
    # the held-out data's public door and its folder, named in the summary
    from mvld_hf.synthetic import build_world, world_folder

    held_out = os.path.join(world_folder(num_train_scenes=40, num_test_scenes=12), "test")
    assert "mvld_hf.synthetic.build_world(num_train_scenes=40, num_test_scenes=12)[\"test\"]" in printed
    assert held_out in printed and os.path.isdir(held_out)
    assert len(build_world(num_train_scenes=40, num_test_scenes=12)["test"]) == saved["meta"]["captions"]
    assert results["student"]["retrieval"]["mean"]["t2i_R@1"] == saved["student"]["retrieval"]["mean"]["t2i_R@1"]
    assert torch.isfinite(student.projection.weight).all()
    assert any(offline_cache.iterdir())  # world and teacher were cached under MVLD_HF_CACHE


def test_teacher_evaluation_is_computed_once_per_teacher_and_held_out_set(distill_script, tmp_path, monkeypatch,
                                                                        offline_cache, caplog):
    """By default (no flag) the teacher's evaluation is kept under the mvld_hf cache folder: a second run with the
    same teacher and held-out data reuses the teacher's numbers (same values, no teacher pass); other held-out
    data is evaluated afresh; --teacher_eval_cache none evaluates the teacher again and keeps nothing."""
    import logging

    monkeypatch.setenv("MVLD_HF_CACHE", str(offline_cache))
    cache = offline_cache / "teacher-eval"  # the default folder, shared with the other runs of this session
    before = set(cache.iterdir()) if cache.is_dir() else set()

    def run(name, test_scenes, method, *flags):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mvld_hf"):
            distill_script.main([
                "--output_dir", str(tmp_path / name), "--world_train_scenes", "40", "--world_test_scenes",
                str(test_scenes), "--teacher_steps", "3", "--offline_hidden_size", "32", "--offline_layers", "1",
                "--offline_heads", "2", "--offline_vocab_size", "400", "--max_steps", "2", "--method", method,
                "--per_device_train_batch_size", "16", "--queue_size", "32", "--save_strategy", "no",
                "--disable_tqdm", "true", *flags])
        reused = any("evaluation of the teacher: reused" in r.getMessage() for r in caplog.records)
        vqa_of_teacher = any("VQA of the teacher" in r.getMessage() for r in caplog.records)
        return json.loads((tmp_path / name / "eval_results.json").read_text()), reused, vqa_of_teacher

    def new_entries():
        return set(cache.iterdir()) - before

    first, reused, vqa_pass = run("a", 11, "dr")  # 11 held-out scenes: a set no other test of this session uses
    assert not reused and vqa_pass and len(new_entries()) == 1
    second, reused, vqa_pass = run("b", 11, "fd")
    assert reused and not vqa_pass and len(new_entries()) == 1
    assert second["teacher"] == first["teacher"] and "vqa" in second["teacher"]
    assert second["student"] != first["student"]  # the student was evaluated (another method)
    other, reused, _ = run("c", 9, "dr")  # another held-out set: a new entry, evaluated afresh
    assert not reused and len(new_entries()) == 2
    assert other["meta"]["images"] == 9
    _, reused, vqa_pass = run("d", 11, "dr", "--teacher_eval_cache", "none")  # off: the teacher is evaluated again
    assert not reused and vqa_pass and len(new_entries()) == 2


def test_teacher_eval_cache_folder_defaults_under_the_mvld_hf_cache(monkeypatch, tmp_path):
    from mvld_hf.cli.reports import teacher_eval_folder

    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path))
    assert teacher_eval_folder("auto") == str(tmp_path / "teacher-eval")
    assert teacher_eval_folder("none") is None and teacher_eval_folder("") is None
    assert teacher_eval_folder("my/folder") == "my/folder"


def test_a_busy_machine_is_named_with_the_thread_setting():
    from mvld_hf.cli.distill import busy_machine_warning

    warning = busy_machine_warning(threads=2, load=9.5, cores=2)
    assert "load (9.5) exceeds its 2 core(s)" in warning and "MVLD_HF_NUM_THREADS=1" in warning
    assert busy_machine_warning(threads=2, load=1.5, cores=2) is None  # quiet
    assert busy_machine_warning(threads=1, load=9.5, cores=2) is None  # one thread already: nothing to change


def test_readme_multi_process_line_is_one_ddp_run_on_cpu(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 examples/distill.py` on a machine without GPUs trains
    once, data-parallel over both processes (not twice, racing on one output_dir)."""
    from tests.test_distributed import launch_two_processes

    out = tmp_path / "run"
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "distill.py")
    env = {"MVLD_HF_CACHE": str(tmp_path / "cache")}
    result = launch_two_processes(
        script, "--output_dir", str(out), "--world_train_scenes", "40", "--world_test_scenes", "12",
        "--teacher_steps", "3", "--offline_hidden_size", "32", "--offline_layers", "1", "--offline_heads", "2",
        "--offline_vocab_size", "400", "--max_steps", "2", "--per_device_train_batch_size", "8",
        "--queue_size", "32", "--logging_steps", "1", "--save_steps", "2", "--disable_tqdm", "true",
        env=env, timeout=400)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    log = result.stdout + result.stderr
    assert "2 processes were launched on a machine without GPUs: training on CPU with distributed data parallel" \
        in log and "parallel_mode != ParallelMode.DISTRIBUTED" not in log
    manifest = json.loads((out / "checkpoint-2" / "mvld_checkpoint.json").read_text())
    assert manifest["metadata"]["world_size"] == 2
    assert result.stdout.count("### retrieval: text-to-image") == 1  # the retrieval table: evaluated once, by rank 0


def test_the_offline_teacher_keeps_to_mvld_hf_num_threads(distill_script, tmp_path, monkeypatch, offline_cache):
    """MVLD_HF_NUM_THREADS (what the busy-machine warning names) bounds the teacher's training too."""
    import mvld_hf.synthetic

    monkeypatch.setenv("MVLD_HF_CACHE", str(offline_cache))
    monkeypatch.setenv("MVLD_HF_NUM_THREADS", "1")
    seen = {}

    def stop(world, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop after the teacher's arguments")

    monkeypatch.setattr(mvld_hf.synthetic, "train_english_teacher", stop)
    with pytest.raises(SystemExit, match="stop after the teacher's arguments"):
        distill_script.main(["--output_dir", str(tmp_path / "run"), "--world_train_scenes", "40",
                             "--world_test_scenes", "12", "--teacher_steps", "3", "--max_steps", "2"])
    assert seen["num_threads"] == 1 and seen["steps"] == 3
