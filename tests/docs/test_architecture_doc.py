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


def test_the_teacher_contract_is_the_base_class(tmp_path):
    """The "A teacher adapter" bullet names the members a Teacher subclass implements (the base class has each
    of them), and a teacher made of the required ones alone gives the step its targets through
    mvld_hf.teacher_targets, which calls encode_text, never a subclass's own."""
    import torch

    from mvld_hf import DistillationArguments
    from mvld_hf.teacher_targets import TeacherEmbedder, teacher_targets, tokenize_in_collator
    from mvld_hf.teachers import Teacher

    bullet = DOC.split("- **A teacher adapter**", 1)[1].split("\n- **", 1)[0]
    named = set(re.findall(r"`(\w+)(?:\(\))?`", bullet))
    contract = {"_encode_text_batch", "dim", "device", "supports_images", "_encode_image_batch", "text_tokenizer",
                "encode_tokenized", "prepare_images", "encode_prepared_images"}
    assert contract <= named, f"the teacher adapter bullet does not name {sorted(contract - named)}"
    assert all(hasattr(Teacher, member) for member in contract)
    assert "encode_text" not in vars(Teacher) or "_encode_text_batch" in vars(Teacher)

    class Minimal(Teacher):
        dim, device, calls = 4, torch.device("cpu"), []

        def _encode_text_batch(self, texts):
            self.calls.append(list(texts))
            return torch.tensor([[len(t), 1.0, 2.0, 3.0] for t in texts])

    embedder = TeacherEmbedder(Minimal())
    args = DistillationArguments(output_dir=str(tmp_path), method="fd", report_to="none")
    assert not tokenize_in_collator(embedder, type("Collator", (), {"teacher_tokenizer": None})(), args)
    inputs = {"english_texts": ["a", "bb", "a"], "input_ids": torch.zeros(3, 2, dtype=torch.long)}
    targets = teacher_targets(inputs, args, embedder)
    assert Minimal.calls == [["a", "bb"]]  # each distinct caption once
    assert targets.anchors is targets.text and targets.text[:, 0].tolist() == [1.0, 2.0, 1.0]
