"""benchmarks/bench_real_models.py: its command-line parsing of per-run learning rates and field overrides
(the benchmark itself needs the real models: run it by hand, results in benchmarks/RESULTS_real_models.md)."""

import pytest

from tests.benchmarks.test_bench_gpu import load_benchmark


def test_learning_rates_and_overrides_parse_typed_values():
    bench = load_benchmark("bench_real_models")
    assert bench.learning_rates("2e-5,dr=5e-4, mcl=1e-4") == (2e-5, {"dr": 5e-4, "mcl": 1e-4})
    assert bench.learning_rates("dr=1e-3") == (2e-4, {"dr": 1e-3})
    got = bench.overrides(["queue_size=512", "contrastive_temperature = 0.1", "include_positive=false",
                           "projection_init=least_squares"])
    assert got == {"queue_size": 512, "contrastive_temperature": 0.1, "include_positive": False,
                   "projection_init": "least_squares"}
    assert isinstance(got["queue_size"], int)
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        bench.overrides(["queue_size"])


def test_overrides_reach_the_training_arguments():
    """Every override is a real DistillationArguments field with the value's type (a typo fails loudly)."""
    from mvld_hf import DistillationArguments

    bench = load_benchmark("bench_real_models")
    args = DistillationArguments(output_dir="out", method="dr", report_to="none", per_device_train_batch_size=8,
                                 **bench.overrides(["queue_size=64", "student_temperature=0.1"]))
    assert (args.queue_size, args.student_temperature) == (64, 0.1)
    with pytest.raises(TypeError):
        DistillationArguments(output_dir="out", report_to="none", **bench.overrides(["queue_sise=64"]))
