import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def distill_script():
    """The main job's module (``examples/distill.py`` is a thin wrapper around it)."""
    import mvld_hf.cli.distill

    return mvld_hf.cli.distill


@pytest.fixture(scope="session")
def offline_cache(tmp_path_factory):
    """One MVLD_HF_CACHE for the tiny offline runs of this folder: the world and its teacher are built once."""
    return tmp_path_factory.mktemp("mvld_cache")
