"""The wheel: it ships the model card template and the console scripts, and exports from outside the repository."""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPORT_FROM_THE_WHEEL = textwrap.dedent("""
    import os, runpy, sys
    import mvld_hf
    site = os.environ["SITE"]
    assert mvld_hf.__file__.startswith(site), mvld_hf.__file__  # the installed wheel, not the repository
    from mvld_hf.testing import tiny_clip_teacher, tiny_student, toy_parallel_corpus, train_tokenizer

    tokenizer = train_tokenizer([r["caption"] for r in toy_parallel_corpus()], vocab_size=200)
    teacher = tiny_clip_teacher(tokenizer, projection_dim=16)
    teacher.model.save_pretrained("teacher"); teacher.tokenizer.save_pretrained("teacher")
    teacher.image_processor.save_pretrained("teacher")
    student = tiny_student(tokenizer, projection_dim=16)
    student.config.teacher_name_or_path = os.path.abspath("teacher")
    student.save_pretrained("student"); tokenizer.save_pretrained("student")
    # the console script, as `pip install` wrote it
    sys.argv = ["mvld-upload", "student", "--local-dir", "out", "--teacher-hub-id", "org/tiny-clip"]
    try:
        runpy.run_path(os.path.join(site, "bin", "mvld-upload"), run_name="__main__")
    except SystemExit as exit_:
        assert not exit_.code, exit_.code
    card = open(os.path.join("out", "README.md"), encoding="utf-8").read()
    assert "org/tiny-clip" in card and "Citation" in card
    print("EXPORTED", sorted(os.listdir("out")))
""")


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def build_wheel(tmp_path):
    """The wheel built from a copy of the package (the build leaves build/ and *.egg-info beside setup.cfg)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(os.path.join(ROOT, "mvld_hf"), source / "mvld_hf", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path / "dist")],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("mvld_hf-*.whl")
    return wheel


def install_wheel(wheel, tmp_path):
    """(site folder, environment running the installed wheel, an empty folder outside the repository)."""
    site = tmp_path / "site"
    subprocess.run([*PIP, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "SITE": str(site), "HF_HUB_OFFLINE": "1"}
    return site, env, work


def test_wheel_ships_the_template_and_exports_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "mvld_hf/templates/model_card.md" in names
    shipped = {n for n in names if n.startswith("mvld_hf/configs/")}  # the paper configs, as package data
    assert {os.path.basename(n) for n in shipped} == {n for n in os.listdir(os.path.join(ROOT, "configs"))
                                                       if n.endswith(".yaml")}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for line in ("mvld-distill = mvld_hf.cli.distill:console_main", "mvld-evaluate = mvld_hf.cli.evaluate:console_main",
                 "mvld-upload = mvld_hf.cli.upload:console_main"):
        assert line in scripts

    site, env, work = install_wheel(wheel, tmp_path)
    done = subprocess.run([sys.executable, "-c", EXPORT_FROM_THE_WHEEL], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "EXPORTED" in done.stdout and "README.md" in done.stdout
    # the console script lists the configs it ships and refuses --max_steps 0 naming a command the wheel installs
    listed = subprocess.run([sys.executable, str(site / "bin" / "mvld-distill"), "--list_configs"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "clip-l14_xlmr-base_dr " in listed.stdout and str(site) in listed.stdout
    refused = subprocess.run([sys.executable, str(site / "bin" / "mvld-distill"), "--config", "clip-l14_xlmr-base_dr",
                              "--max_steps", "0"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "`mvld-evaluate --model DIR`" in refused.stderr
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind


#: a study of one tiny offline cell (minutes on a busy CPU: world, teacher and student are tiny)
TINY_STUDY = {"name": "tiny", "grid": [{"method": ["dr"]}],
              "base": {"world_train_scenes": 40, "world_test_scenes": 12, "teacher_steps": 3,
                       "offline_hidden_size": 32, "offline_layers": 1, "offline_heads": 2, "offline_vocab_size": 400,
                       "max_steps": 2, "per_device_train_batch_size": 16, "queue_size": 32, "save_strategy": "no",
                       "disable_tqdm": True, "eval_vqa": False}}


def test_the_study_runs_from_the_installed_wheel(tmp_path):
    """`mvld-study` of the wheel runs its cells with the wheel's own mvld-distill (python -m mvld_hf.cli.distill):
    nothing of the repository (examples/distill.py) is needed."""
    import json

    import yaml

    wheel = build_wheel(tmp_path)
    entry_points = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("entry_points.txt"))
    assert "mvld-study = mvld_hf.cli.study:console_main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    site, env, work = install_wheel(wheel, tmp_path)
    assert not (site / "examples").exists()
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_STUDY))
    env = {**env, "MVLD_HF_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(site / "bin" / "mvld-study"), "tiny.yaml", "--output_dir", "out"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((work / "out" / "study_results.json").read_text())
    (cell,) = results["cells"]
    assert cell["status"] == "done" and cell["metrics"]["t2i_R@1_mean"] >= 0
    record = json.loads((work / "out" / "cells" / cell["name"] / "cell.json").read_text())
    assert record["argv"][1:3] == ["-m", "mvld_hf.cli.distill"]
    assert (work / "out" / "study.md").is_file()
