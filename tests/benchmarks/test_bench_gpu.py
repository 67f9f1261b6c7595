"""benchmarks/bench_gpu.py --smoke runs the GPU benchmark's code on the CPU and reports every figure and ratio."""

import importlib.util
import json
import logging
import math
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = {"fd", "dr", "bare_fd", "fd_real", "fd_real_grouped", "dr_real", "dr_real_grouped", "dr_stream",
        "dr_stream_grouped"}


def load_benchmark(name):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_run_reports_throughput_mfu_and_ratios(tmp_path, capsys):
    bench = load_benchmark("bench_gpu")
    output = tmp_path / "bench.json"
    level, threads = logging.getLogger("mvld_hf").level, torch.get_num_threads()
    try:  # one thread: these tiny models gain nothing from two, and lose a lot on a busy machine
        results = bench.main(["--smoke", "--steps", "2", "--warmup", "1", "--workers", "0", "--threads", "1",
                              "--output", str(output)])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert logging.getLogger("mvld_hf").level == level  # quiet only while it ran: later tests read mvld_hf's logs
    assert json.loads(output.read_text())["train"].keys() == RUNS and results["skipped"] == []
    assert results["dtype"] == "float32" and results["peak"]["flops_per_s"] > 0
    teacher = results["teacher"]
    for key in ("captions_per_s", "captions_per_s_forward_only", "precompute_captions_per_s", "images_per_s",
                "images_per_s_forward_only", "images_per_s_library_processor", "images_per_s_workers"):
        assert teacher[key] > 0, key
    assert teacher["dtype"] == "float32" and teacher["float32"]["images_per_s_forward_only"] > 0  # CPU: float32
    train = results["train"]
    assert train["dr_stream"]["teacher_in_step"] and not train["dr_real"]["teacher_in_step"]
    for name, r in train.items():
        assert r["steps_timed"] == 2 and r["batch_size"] == 16, name
        assert 0 < r["non_embedding_params"] < r["params"]  # the embeddings are left out of 6 N T
        assert math.isfinite(r["mfu"]) and 0 < r["mfu_real_tokens"] <= r["mfu"]
        assert r["real_tokens_per_row"] <= r["padded_tokens_per_row"]
    for name in ("fd", "dr", "bare_fd"):  # fixed length: every row is exactly seq tokens, no padding
        assert train[name]["padded_tokens_per_row"] == train[name]["real_tokens_per_row"] == 16
    for random, grouped in (("fd_real", "fd_real_grouped"), ("dr_real", "dr_real_grouped"),
                            ("dr_stream", "dr_stream_grouped")):  # padded to the batch's longest; grouped less
        random, grouped = train[random], train[grouped]
        assert random["pad_share"] > 0.1 and grouped["group_by_length"]
        assert grouped["pad_share"] < random["pad_share"]
    ratios = results["ratios"]
    for key in ("cached_step_vs_bare_loop:fd", "stream_step_vs_cached_step:dr_real",
                "teacher_captions_end_to_end_vs_forward", "teacher_images_end_to_end_vs_forward",
                "teacher_images_workers_vs_forward",
                "teacher_float32_vs_fast_dtype:text", "grouped_vs_random_batching:fd",
                "grouped_vs_random_batching:dr"):
        assert ratios[key] > 0, key
    assert ratios["compiled_vs_eager:fd"] is None  # not asked for (--compile)
    assert ratios["cached_step_vs_bare_loop:fd"] == train["fd"]["samples_per_s"] / train["bare_fd"]["samples_per_s"]
    estimate = results["study_estimate"]
    assert len(estimate["cells"]) == 22 and estimate["total_hours"] > 0 and not estimate["missing"]
    assert "train DR on a stream, teacher in the step: batch 16 x" in printed
    assert printed.count("MFU ") == len(RUNS)


def test_gpu_hours_writes_the_estimate_into_the_study(tmp_path):
    gpu_hours = load_benchmark("gpu_hours")
    study = tmp_path / "study.yaml"
    source = open(os.path.join(ROOT, "configs", "study", "gpu-paper.yaml")).read()
    study.write_text(source)
    gpu_hours.write_estimate(str(study), "~12 GPU-hours for 22 cells " + "word " * 40)
    text = study.read_text()
    assert "~12 GPU-hours for 22 cells" in text and "48 GPU-hours" not in text
    assert text.replace(text[text.index("estimate:"):text.index("notes:")], "") == \
        source.replace(source[source.index("estimate:"):source.index("notes:")], "")  # nothing else changed
    import yaml

    assert yaml.safe_load(text)["estimate"].startswith("~12 GPU-hours")
