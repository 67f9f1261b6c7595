"""Every README snippet works as written. The ```python blocks run verbatim, top to bottom in one namespace (a later
block may use what an earlier one built), offline, in a scratch folder; a block that needs the Hub, a GPU or
minutes says so with an HTML comment on the line before it (``<!-- snippet: needs-hub -->``, ``needs-gpu``,
``slow``) and is only compiled. The ```bash blocks may only name example scripts, make targets and config files
that exist."""

import logging
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKS = ("needs-hub", "needs-gpu", "slow")
BLOCK = re.compile(r"(?:<!-- snippet: ([\w-]+) -->\n)?```(\w*)\n(.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str | None, str, int]]:
    """(language, mark or None, code, line) of each fenced block of the README."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return [(m.group(2), m.group(1), m.group(3), text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]


PYTHON = [(mark, code, line) for lang, mark, code, line in readme_blocks() if lang == "python"]
BASH = [(code, line) for lang, _, code, line in readme_blocks() if lang == "bash"]


def test_the_readme_has_runnable_snippets_and_known_marks():
    assert len(PYTHON) >= 4 and len(BASH) >= 4
    assert sum(mark is None for mark, _, _ in PYTHON) >= 2  # most of the README runs, not just compiles
    assert {mark for mark, _, _ in PYTHON if mark} <= set(MARKS)


def test_marked_snippets_compile():
    for _, code, line in PYTHON:
        compile(code, f"README.md:{line}", "exec")


def test_python_snippets_run_verbatim(tmp_path, monkeypatch, capsys, caplog):
    """The unmarked blocks, in order, in one namespace: the public API example, the paired model and its
    processor in the zero-shot pipeline, ... . Warnings about truncation or special tokens would be noise."""
    monkeypatch.chdir(tmp_path)  # outputs/... of the snippets go to a scratch folder
    monkeypatch.setenv("MVLD_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace = {"__name__": "__readme__"}
    with caplog.at_level(logging.WARNING):
        for mark, code, line in PYTHON:
            if mark is None:
                exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr()
    assert "torch.Size([1, 16])" in printed.out  # the public API example's own output
    assert "'label': 'ein roter Kreis'" in printed.out  # the paired model in the zero-shot pipeline
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "is more than the student's position table holds" not in logged + printed.err


COMMANDS = re.compile(r"(?:^|\s)((?:examples|benchmarks|configs(?:/study)?)/[\w.+/-]+|hub_upload\.py)")


@pytest.mark.parametrize("code, line", BASH, ids=[f"line{line}" for _, line in BASH])
def test_bash_snippets_name_files_and_targets_that_exist(code, line):
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        targets = set(re.findall(r"^([\w-]+):", f.read(), re.M))
    for command in code.splitlines():
        command = command.split("#", 1)[0].strip()
        if not command:
            continue
        words = shlex.split(command.rstrip("\\"))
        if words[0] == "make":
            named = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
            assert set(named) <= targets, f"README.md:{line}: make {named}: not a Makefile target"
        for path in COMMANDS.findall(command):
            assert os.path.exists(os.path.join(ROOT, path)), f"README.md:{line}: {path} does not exist"
