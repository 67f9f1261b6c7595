"""docs/architecture.md matches the code: every module it names exists (paths ``mvld_hf/...py``, folders
``mvld_hf/.../`` and dotted ``mvld_hf.x.y`` names, whose last part may be a top-level name of that module), and
every module of the package and of ``mvld_hf/cli`` has its room in it."""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
    DOC = f.read()
PATHS = sorted(set(re.findall(r"mvld_hf/[\w/]*\w(?:\.py|/)", DOC)))
DOTTED = sorted(set(re.findall(r"(?<![\w/])mvld_hf(?:\.\w+)+", DOC)))


def _module_file(dotted: str) -> str | None:
    base = os.path.join(ROOT, *dotted.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _top_level_names(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def test_the_doc_names_modules():
    assert len(PATHS) > 20 and len(DOTTED) >= 5


@pytest.mark.parametrize("path", PATHS)
def test_every_named_path_exists(path):
    exists = os.path.isdir if path.endswith("/") else os.path.isfile
    assert exists(os.path.join(ROOT, path)), f"docs/architecture.md names {path}, which does not exist"


@pytest.mark.parametrize("name", DOTTED)
def test_every_dotted_name_exists(name):
    parts = name.split(".")
    if _module_file(name):
        return
    module = _module_file(".".join(parts[:-1]))  # mvld_hf.module.attribute
    assert module and parts[-1] in _top_level_names(module), f"docs/architecture.md names {name}: not found"


def test_every_module_has_its_room():
    package = os.path.join(ROOT, "mvld_hf")
    modules = [f"mvld_hf/{n}" for n in os.listdir(package) if n.endswith(".py") and not n.startswith("_")]
    modules += [f"mvld_hf/cli/{n}" for n in os.listdir(os.path.join(package, "cli"))
                if n.endswith(".py") and not n.startswith("_")]
    modules += [f"mvld_hf/{n}/" for n in os.listdir(package)
                if os.path.isfile(os.path.join(package, n, "__init__.py")) and n != "cli"]
    missing = sorted(m for m in modules if m not in PATHS)
    assert not missing, f"modules without a line in docs/architecture.md: {missing}"


def test_the_new_method_recipe_runs_and_trains(tokenizer, teacher, toy_dataset, tmp_path):
    """The "A new distillation method" block, run as written: it registers a method of one's own (no package file
    edited) whose arguments then train through DistillationTrainer, logging its parts."""
    from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
    from mvld_hf.losses.registry import METHODS, unregister_method
    from mvld_hf.testing import tiny_student
    from tests.helpers import training_args

    section = DOC.split("## A new distillation method", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "docs/architecture.md", "exec"), namespace)
    try:
        spec, args = METHODS["cos_margin"], namespace["args"]
        assert spec.citation.startswith("@misc") and args.method_weights == {"dr": 1.0, "cos_margin": 0.5}
        data = precompute_teacher_embeddings(toy_dataset, teacher, anchor="text")
        trainer = DistillationTrainer(
            model=tiny_student(tokenizer, projection_dim=16, seed=1), processing_class=tokenizer, train_dataset=data,
            args=training_args(tmp_path, method=args.method, method_kwargs=args.method_kwargs, max_steps=6,
                               per_device_train_batch_size=16, queue_size=64, learning_rate=3e-3, logging_steps=3))
        trainer.train()
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        assert {"loss_dr", "loss_cos_margin", "cos_margin_cosine"} <= set(logs[0])
        assert logs[-1]["cos_margin_cosine"] > logs[0]["cos_margin_cosine"]
    finally:
        unregister_method("cos_margin")
