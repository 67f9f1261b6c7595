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
