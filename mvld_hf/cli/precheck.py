"""``mvld-distill``'s checks that need neither torch nor transformers, run before the heavy imports: an unknown
flag, a missing or broken config file, a flag whose optional package is not installed (``--report_to wandb``),
``--max_steps 0`` are refused in about a second instead of after the imports (5 s of CPU) or the set-up (minutes).
``--help`` prints what the command does and the flags a user needs first, before the full list.

The flag names come from the argument dataclasses: the CLI's own (:mod:`.arguments`), and
``DistillationArguments``/``TrainingArguments`` read from their source files (``ast``, no import). When a source
cannot be read that way the unknown-flag check is skipped (the full parser still refuses later): this module only
refuses what is certainly wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import os
import sys

from .arguments import CliError, DataArguments, ModelArguments
from .configs import CONFIG_SUFFIXES, list_configs, packaged_configs, resolve_config

#: what ``mvld-distill`` does, first in ``--help``
DESCRIPTION = """\
mvld-distill: distil a multilingual text student into a frozen English vision-language teacher (CLIP, SigLIP).

With no arguments it runs the offline demo (no Hub needed): a procedural world with captions in 13 languages, an
English-only CLIP trained on it, a small student distilled with DR, then per-language retrieval of the student
beside its teacher. It prints its phases with an estimate first (about 6 min on a quiet 2-core CPU with the
world and teacher cached, longer the first time); outputs go to --output_dir.

Usage:
  mvld-distill [CONFIG.yaml | --config NAME] [--flag value ...]

The flags most runs need:
  --max_steps N           training steps (offline default 1500; `--max_steps 200` is a quick look)
  --output_dir DIR        where the checkpoint, mvld_run.json and eval_results.json go
  --method M              dr (default), fd, ed, sd, mcl, or weighted combinations: dr+fd, dr:1.0,ed:0.5
  --teacher/--student/--dataset   Hub ids or local folders instead of the offline world (all three)
  --config NAME           a paper config shipped with mvld_hf (--list_configs lists them)
  --eval_split ''         skip the evaluation;  --teacher_eval_cache none: evaluate the teacher again
  --resume_from_checkpoint true | --overwrite_output_dir true   continue or replace an earlier run
  --report_to none|tensorboard|wandb|...   logging integrations (their packages must be installed)
  --debug                 show the traceback of an error
Threads on a CPU: MVLD_HF_NUM_THREADS (e.g. 1 beside other jobs). Evaluate a saved student: mvld-evaluate.
"""

#: ``--report_to`` integration -> the modules it needs (each tuple: any one of them) and what to pip install
REPORTERS = {
    "tensorboard": ([("tensorboard", "tensorboardX")], "tensorboard"),
    "wandb": ([("wandb",)], "wandb"),
    "mlflow": ([("mlflow",)], "mlflow"),
    "comet_ml": ([("comet_ml",)], "comet-ml"),
    "clearml": ([("clearml",)], "clearml"),
    "dvclive": ([("dvclive",)], "dvclive"),
    "codecarbon": ([("codecarbon",)], "codecarbon"),
    "trackio": ([("trackio",)], "trackio"),
    "swanlab": ([("swanlab",)], "swanlab"),
    "neptune": ([("neptune",)], "neptune"),
    "azure_ml": ([("azureml",)], "azureml-core"),
    "dagshub": ([("dagshub",), ("mlflow",)], "dagshub mlflow"),
    "flyte": ([("flytekit",)], "flytekit flytekitplugins-deck-standard"),
}
#: other flags that need an optional package: flag -> (module, what to pip install)
FLAG_PACKAGES = {"deepspeed": ("deepspeed", "deepspeed")}
#: flags the CLI itself reads before parsing
OWN_FLAGS = {"help", "h", "debug", "config", "list_configs"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def _class_fields(path: str, class_name: str) -> set[str] | None:
    """The annotated attribute names of ``class_name`` in the Python file ``path`` (None: not found)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return None


def known_flags() -> set[str] | None:
    """Every flag name ``mvld-distill`` accepts (without ``--``), or None when they cannot be read without imports."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    training = _class_fields(os.path.join(spec.submodule_search_locations[0], "training_args.py"),
                             "TrainingArguments")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = _class_fields(os.path.join(here, "distillation_config.py"), "DistillationArguments")
    if not training or len(training) < 50 or not ours:  # not the layout this reads: skip the check
        return None
    names = training | ours | {f.name for cls in (ModelArguments, DataArguments) for f in dataclasses.fields(cls)}
    return names | {f"no_{name}" for name in names}  # HfArgumentParser's complements of True booleans


def _flag_values(argv: list[str], name: str) -> list[str] | None:
    """The values given to ``--name`` (``--name a b``, ``--name=a``, ``--name a,b``); None when absent."""
    values = None
    for i, token in enumerate(argv):
        if token == f"--{name}":
            values = []
            for value in argv[i + 1:]:
                if value.startswith("--"):
                    break
                values.append(value)
        elif token.startswith(f"--{name}="):
            values = [token.split("=", 1)[1]]
    if values is None:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _config_values(argv: list[str]) -> tuple[list[str], dict]:
    """argv without the config file / ``--config NAME``, and the config's values (checked: exists, parses)."""
    from .arguments import read_config

    argv = list(argv)
    path = None
    if argv and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-"):
        path = argv.pop(0)
    named = [argv[i + 1] if i + 1 < len(argv) else "" for i, a in enumerate(argv) if a == "--config"]
    named += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if len(named) > 1:
        raise CliError(f"--config is given {len(named)} times ({', '.join(named)}): a run reads one config; pass "
                       "one --config and override its values with flags after it (e.g. --learning_rate 1e-4)")
    if named and path is not None:
        raise CliError(f"two configs: the file {path} and --config {named[0]}; a run reads one config: pass either "
                       "(the file first, or --config NAME) and override its values with flags after it")
    if any(a.startswith("--config=") for a in argv):
        i = next(i for i, a in enumerate(argv) if a.startswith("--config="))
        argv[i:i + 1] = ["--config", named[0]]
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            raise CliError("--config needs a name or a path: `mvld-distill --list_configs` lists the shipped ones")
        name = argv[i + 1]
        del argv[i:i + 2]
        path = resolve_config(name)
        if path is None:
            close = difflib.get_close_matches(name, list(packaged_configs()), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise CliError(f"--config {name}: no such file and no shipped config of that name{hint}; "
                           "`mvld-distill --list_configs` lists them")
    return argv, (read_config(path) if path else {})


def precheck(argv: list[str]) -> tuple[list[str], str | None]:
    """Refuse (:class:`CliError`) what is certainly wrong, before the heavy imports. Returns the argv the full
    parser gets (``--config NAME`` replaced by the config's path first) and what to print and stop with (the
    ``--help`` summary, ``--list_configs``), or None to go on."""
    if "--list_configs" in argv:
        return argv, list_configs()
    rest, values = _config_values(argv)
    if any(a.startswith("--config=") for a in argv):
        argv = [part for a in argv for part in (a.split("=", 1) if a.startswith("--config=") else [a])]
    if "--config" in argv:
        i = argv.index("--config")
        argv = [resolve_config(argv[i + 1]), *argv[:i], *argv[i + 2:]]
    if "-h" in argv or "--help" in argv:
        return argv, None
    known = known_flags()
    if known is not None:
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise CliError(f"unknown key {key!r} in the config file{hint}; `mvld-distill --help` lists the "
                               "argument names")
        for token in rest:
            if not token.startswith("--"):
                continue
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name in OWN_FLAGS or name in known or any(k.startswith(name) for k in known if name):
                continue  # argparse also takes an unambiguous prefix
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise CliError(f"unknown flag --{name}{hint}; `mvld-distill --help` lists every flag")
    reporters = _flag_values(rest, "report_to")
    if reporters is None:
        configured = values.get("report_to")
        reporters = [configured] if isinstance(configured, str) else list(configured or [])
    for name in reporters:
        if name not in REPORTERS:
            continue  # none, all, or a name transformers itself judges
        modules, package = REPORTERS[name]
        missing = [group for group in modules if not any(_installed(m) for m in group)]
        if missing:
            raise CliError(f"--report_to {name} needs the {package!r} package, which is not installed: "
                           f"`pip install {package}`, or log nowhere with --report_to none")
    for flag, (module, package) in FLAG_PACKAGES.items():
        if (_flag_values(rest, flag) or values.get(flag)) and not _installed(module):
            raise CliError(f"--{flag} needs the {package!r} package, which is not installed: `pip install {package}`")
    steps = _flag_values(rest, "max_steps")
    if steps == ["0"] or (steps is None and values.get("max_steps") == 0):
        raise CliError("--max_steps 0 would train nothing; pass a positive number of steps (or -1 to train for "
                       "--num_train_epochs). To evaluate a saved student, run `mvld-evaluate --model DIR` "
                       "(examples/evaluate.py in the repository)")
    return argv, None


def print_summary() -> None:
    """The start of ``--help``: printed at once, before the imports the full flag list needs."""
    sys.stdout.write(DESCRIPTION + "\nEvery flag (model, data, then the training arguments):\n")
    sys.stdout.flush()
