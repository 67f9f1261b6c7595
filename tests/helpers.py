"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from mvld_hf import DistillationArguments

# what every training test wants: no reports, no saves, no progress bars, CPU, a fixed seed
QUIET = dict(report_to=[], save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)


def training_args(tmp_path, **kwargs) -> DistillationArguments:
    """``DistillationArguments`` writing under ``tmp_path/out`` with :data:`QUIET` defaults; ``kwargs`` win.

    A test module fixes its own defaults with ``functools.partial(training_args, method="fd", ...)``; keywords
    given at the call still override them.
    """
    return DistillationArguments(**{"output_dir": str(tmp_path / "out"), **QUIET, **kwargs})
