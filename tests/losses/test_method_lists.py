"""Every list of methods is derived from the registry: no literal list of the paper's five codes (a tuple, list,
set or dict of them, or a string naming them one after another) in the package, the benchmarks, the examples,
the docs' scripts or the tests, outside the registry (the table) and its own test (which pins the table)."""

import ast
import os
import re

from mvld_hf.losses.registry import PAPER_METHODS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDERS = ("mvld_hf", "benchmarks", "examples", "docs", "tests")
ALLOWED = {os.path.join("mvld_hf", "losses", "registry.py"), os.path.join("tests", "losses", "test_registry.py")}
FIVE = frozenset(PAPER_METHODS)
_CODE = "|".join(PAPER_METHODS)
_RUN = re.compile(rf"(?i)\b(?:{_CODE})\b(?:[\s,/|+]+(?:and\s+|or\s+)?(?:{_CODE})\b){{{len(FIVE) - 1}}}")


def literal_lists(source: str) -> list[int]:
    """Line numbers of literal lists of the five codes in ``source`` (docstrings, which describe, excepted)."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            codes = {i.value.lower() for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
            if FIVE <= codes:
                lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            run = _RUN.search(node.value)
            if run and FIVE <= {c.lower() for c in re.findall(rf"(?i)\b(?:{_CODE})\b", run.group(0))}:
                lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_literal_list():
    listed = ", ".join(repr(code) for code in PAPER_METHODS)
    assert literal_lists(f"METHODS = ({listed})\nOK = ('dr', 'fd')\n") == [1]
    assert literal_lists(f"SET = {{{listed}, 'drg'}}\n") == [1]
    assert literal_lists(f"HELP = 'choose from {', '.join(PAPER_METHODS).upper()}'\n") == [1]
    assert literal_lists(f'def f():\n    """Paper methods: {", ".join(PAPER_METHODS)}."""\n') == []


def test_no_literal_list_of_the_five_methods_outside_the_registry():
    found = []
    for folder in FOLDERS:
        for parent, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in files:
                path = os.path.join(parent, name)
                relative = os.path.relpath(path, ROOT)
                if name.endswith(".py") and relative not in ALLOWED:
                    with open(path, encoding="utf-8") as f:
                        found += [f"{relative}:{line}" for line in literal_lists(f.read())]
    assert not found, ("literal lists of the paper's five methods; derive them from mvld_hf.losses.registry "
                       f"(METHODS, PAPER_METHODS, PAPER_COMBINATIONS): {found}")
