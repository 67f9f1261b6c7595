"""benchmarks/bench_gpu.py --smoke runs the GPU benchmark's code on the CPU and reports an MFU line."""

import importlib.util
import json
import logging
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_run_reports_throughput_and_mfu(tmp_path, capsys):
    bench = load_benchmark("bench_gpu")
    output = tmp_path / "bench.json"
    level = logging.getLogger("mvld_hf").level
    results = bench.main(["--smoke", "--steps", "2", "--warmup", "1", "--workers", "0", "--output", str(output)])
    printed = capsys.readouterr().out
    assert logging.getLogger("mvld_hf").level == level  # quiet only while it ran: later tests read mvld_hf's logs
    assert json.loads(output.read_text())["train"].keys() == {"fd", "dr", "dr_stream"}
    assert results["dtype"] == "float32" and results["peak"]["flops_per_s"] > 0
    for key in ("captions_per_s", "captions_per_s_forward_only", "precompute_captions_per_s", "images_per_s",
                "images_per_s_forward_only"):
        assert results["teacher"][key] > 0, key
    assert results["train"]["dr_stream"]["teacher_in_step"] and not results["train"]["dr"]["teacher_in_step"]
    for method in ("fd", "dr", "dr_stream"):
        r = results["train"][method]
        assert r["steps_timed"] == 2 and r["batch_size"] == 16 and r["seq"] == 16
        assert 0 < r["non_embedding_params"] < r["params"]  # the embeddings are left out of 6 N T
        assert math.isfinite(r["mfu"]) and r["mfu"] > 0
    assert "train DR on a stream, teacher in the step: batch 16 x 16 tokens" in printed
    assert printed.count("MFU ") == 3
