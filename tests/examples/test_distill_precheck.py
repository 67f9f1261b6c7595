"""mvld-distill checks its command line before the heavy imports: an unknown flag, a flag whose optional package is
missing, ``--max_steps 0`` or a bad ``--config`` are refused before torch/transformers load (and so before any
world, teacher or precompute); ``--help`` opens with what the command does."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest

from mvld_hf.cli.arguments import CliError
from mvld_hf.cli.precheck import REPORTERS, _installed, known_flags, precheck

from .conftest import ROOT

HEAVY = ("torch", "transformers", "datasets", "sentence_transformers")


def test_a_flag_needing_a_missing_package_is_refused_before_the_heavy_imports_and_any_work(tmp_path):
    missing = next((name for name, (modules, _) in REPORTERS.items()
                    if not all(any(_installed(m) for m in group) for group in modules)), None)
    if missing is None:
        pytest.skip("every --report_to integration is installed here")
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["MVLD_HF_DEFER_IMPORTS"] = "1"  # what examples/distill.py and the console scripts do
        from mvld_hf.cli.distill import main
        try:
            main(["--report_to", {missing!r}, "--output_dir", {str(tmp_path / "run")!r}])
        except SystemExit as refusal:
            print("REFUSED", refusal)
        print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules))
        import mvld_hf  # the deferred API loads on first use, Auto classes registered
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
        print("LOADED", mvld_hf.MultilingualTextTower.__name__, "mvld_text_tower" in CONFIG_MAPPING)
    """)
    cache = tmp_path / "cache"
    env = {**os.environ, "MVLD_HF_CACHE": str(cache), "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"REFUSED error: --report_to {missing} needs the" in out and "pip install" in out
    assert "HEAVY []" in out  # refused before torch/transformers/datasets were imported
    assert not cache.exists() and not (tmp_path / "run").exists()  # no world, teacher or output folder
    assert "LOADED MultilingualTextTower True" in out


def test_the_flag_names_read_without_imports_are_the_parsers():
    from transformers import HfArgumentParser

    from mvld_hf import DistillationArguments
    from mvld_hf.cli.arguments import DataArguments, ModelArguments

    names = known_flags()
    assert names is not None
    fields = {f.name for cls in (ModelArguments, DataArguments, DistillationArguments)
              for f in dataclasses.fields(cls) if f.init}
    assert fields <= names  # a flag the parser takes is never refused early
    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationArguments))
    options = {o[2:] for action in parser._actions for o in action.option_strings if o.startswith("--")}
    assert {o for o in options if "-" not in o} - {"help"} <= names


@pytest.mark.parametrize("argv, message", [
    (["--max_stpes", "5"], "unknown flag --max_stpes (did you mean --max_steps?)"),
    (["--output-dirr", "x"], "unknown flag --output_dirr (did you mean --output_dir?)"),
    (["--max_steps", "0"], "`mvld-evaluate --model DIR`"),
    (["--config", "clip-l14_xlmr_base_dr"], "did you mean clip-l14_xlmr-base_dr?"),
    (["--config"], "--config needs a name or a path"),
])
def test_bad_command_lines_are_refused_early(argv, message):
    with pytest.raises(CliError) as refusal:
        precheck(argv)
    assert message in str(refusal.value)


def test_good_command_lines_pass_and_shipped_configs_resolve():
    assert precheck(["--max_steps", "5", "--no_eval_vqa", "--max_st", "3", "--report_to", "none"]) == \
        (["--max_steps", "5", "--no_eval_vqa", "--max_st", "3", "--report_to", "none"], None)
    argv, stop = precheck(["--config", "clip-l14_xlmr-base_dr", "--max_steps", "5"])
    assert stop is None and argv[1:] == ["--max_steps", "5"]
    assert os.path.samefile(argv[0], os.path.join(ROOT, "configs", "clip-l14_xlmr-base_dr.yaml"))
    _, listing = precheck(["--list_configs"])
    assert "clip-l14_xlmr-base_dr " in listing and "offline_dr " in listing and "--config NAME" in listing


def test_a_config_key_that_is_no_flag_is_refused_early(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("method: dr\nlearnig_rate: 0.1\n")
    with pytest.raises(CliError, match="unknown key 'learnig_rate' in the config file .did you mean learning_rate"):
        precheck([str(config)])


def test_help_opens_with_what_the_command_does(distill_script, capsys):
    with pytest.raises(SystemExit) as done:
        distill_script.main(["--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("mvld-distill: distil a multilingual text student")
    summary, full = printed.split("Every flag", 1)
    assert "--max_steps N" in summary and "--config NAME" in summary and len(summary.splitlines()) < 30
    assert "--teacher_eval_cache" in full and "--learning_rate" in full
