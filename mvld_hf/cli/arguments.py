"""The command line of ``mvld-distill`` / ``examples/distill.py``: its arguments (model, data; the training ones
are :class:`mvld_hf.DistillationArguments`), the offline run's defaults, config files, and every check made
before any work is spent (flags that do nothing on the chosen path, the output folder, the checkpoint to resume).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # imported where used: checks before them must not pay for torch/transformers
    from mvld_hf import DistillationArguments

OFFLINE = "offline"


@dataclass
class ModelArguments:
    teacher: str = field(default=OFFLINE, metadata={"help": "Teacher: 'offline' (the English CLIP of the offline "
                         "world, trained here) or a Hub id/path (openai/clip-vit-large-patch14, "
                         "google/siglip2-large-patch16-256, a SentenceTransformer)."})
    teacher_revision: str | None = field(default=None, metadata={"help": "Teacher revision (commit) to pin."})
    teacher_dtype: str = field(default="auto", metadata={"help": "Dtype to load the teacher in: auto (bfloat16 on "
                               "a CUDA GPU with bf16, float16 on one without, float32 on the CPU), float32, "
                               "bfloat16 or float16. Its embeddings are float32 either way.",
                               "choices": ["auto", "float32", "bfloat16", "float16"]})
    student: str = field(default=OFFLINE, metadata={"help": "Student backbone: 'offline' (a small random XLM-R-"
                         "style encoder with a tokenizer trained on the captions) or a Hub id/path "
                         "(xlm-roberta-base, distilbert-base-multilingual-cased, ...)."})
    pooling: str = field(default="mean", metadata={"help": "Student pooling: mean or cls."})
    offline_hidden_size: int = field(default=128, metadata={"help": "Offline student: hidden size."})
    offline_layers: int = field(default=2, metadata={"help": "Offline student: transformer layers."})
    offline_heads: int = field(default=4, metadata={"help": "Offline student: attention heads."})
    offline_vocab_size: int = field(default=3000, metadata={"help": "Offline student: BPE vocabulary size."})
    offline_max_token_length: int = field(default=8, metadata={"help": "Offline student: longest BPE token, in "
                                          "characters (keeps tokens of unspaced scripts within one object)."})


@dataclass
class DataArguments:
    dataset: str = field(default=OFFLINE, metadata={"help": "'offline' (the procedural world) or a Hub dataset "
                         "id/path with a caption column, an English caption column and a language column."})
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Training split."})
    eval_split: str | None = field(default="test", metadata={"help": "Held-out split for retrieval evaluation "
                                   "(needs image, image_id, caption, language columns); empty to skip."})
    language_column: str = field(default="language", metadata={"help": "Column with each caption's language."})
    languages: list[str] | None = field(default=None, metadata={"help": "Restrict training/eval to these languages."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    streaming: bool = field(default=False, metadata={"help": "Stream the training set (needs --max_steps)."})
    precomputed_embeddings: str | None = field(default=None, metadata={"help": "A dataset of precomputed teacher "
                                               "text embeddings (e.g. M-CLIP/ImageCaptions-7M-Embeddings)."})
    precomputed_embeddings_config: str | None = field(default=None, metadata={"help": "Its config (e.g. Vit-B-32)."})
    precomputed_id_column: str = field(default="id", metadata={"help": "Id column joining the two datasets."})
    precomputed_embedding_column: str = field(default="embedding", metadata={"help": "Embedding column there."})
    teacher_cache_dir: str | None = field(default=None, metadata={"help": "Streams: keep every teacher text "
                                          "embedding in this on-disk cache (SQLite, shared by all ranks of one "
                                          "machine), so later epochs and runs skip the teacher."})
    teacher_eval_cache: str | None = field(default="auto", metadata={"help": "Keep the teacher's own evaluation "
                                           "(retrieval, purity, consistency, VQA) in this folder, keyed by the "
                                           "teacher and the held-out data, and reuse it in later runs with the same "
                                           "teacher and evaluation data. 'auto' (default): <mvld_hf cache>/"
                                           "teacher-eval ($MVLD_HF_CACHE, $HF_HOME/mvld_hf or ~/.cache/mvld_hf); "
                                           "'none' evaluates the teacher on every run."})
    world_seed: int = field(default=0, metadata={"help": "Offline world: seed."})
    world_train_scenes: int | None = field(default=None, metadata={"help": "Offline world: training scenes."})
    world_test_scenes: int | None = field(default=None, metadata={"help": "Offline world: held-out scenes."})
    teacher_steps: int | None = field(default=None, metadata={"help": "Offline teacher: training steps."})
    world_language_share: list[str] | None = field(default=None, metadata={"help": "Offline world: keep only a "
                                                   "share of the training scenes for these languages, LANG:SHARE "
                                                   "(bn:0.05; sw:0 = zero-shot); the held-out test is unchanged."})
    eval_vqa: bool = field(default=True, metadata={"help": "Offline world: also evaluate multiple-choice VQA on "
                           "held-out scenes."})


# Offline defaults, chosen by measurement on the offline world (README, "The offline main job"): a 2-layer
# student trained from scratch binds colours to shapes far better with CLS pooling than with mean pooling
# (held-out T2I R@1 0.56 vs 0.35 after 1000 DR steps), and lr 3e-3 beat 1e-3/2e-3.
OFFLINE_TRAINING_DEFAULTS = dict(
    output_dir="outputs/distill-offline", method="dr", learning_rate=3e-3, weight_decay=0.01,
    per_device_train_batch_size=128, per_device_eval_batch_size=256, max_steps=1500, warmup_steps=0.05,
    lr_scheduler_type="cosine", queue_size=4096, logging_steps=50, save_strategy="steps", save_steps=500,
    save_total_limit=1, report_to="none", seed=0, dataloader_drop_last=True, max_length=64,
    pooling="cls", offline_hidden_size=128, offline_layers=2, offline_heads=4, offline_vocab_size=3000,
)


class CliError(Exception):
    """A bad command line, config or set-up, found before any work; printed as one line (cause and fix)."""



def read_config(path: str) -> dict:
    """The mapping of argument names to values in a YAML/JSON config file."""
    if not os.path.isfile(path):
        raise CliError(f"config file {path} does not exist: check the path (the shipped ones are in configs/)")
    with open(path, encoding="utf-8") as f:
        try:
            values = (json.load(f) if path.endswith(".json") else yaml.safe_load(f)) or {}
        except (ValueError, yaml.YAMLError) as err:
            raise CliError(f"config file {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'} "
                           f"({' '.join(str(err).split())}): fix its syntax") from None
    if not isinstance(values, dict):
        raise CliError(f"config file {path} holds a {type(values).__name__}, not a mapping of argument names to "
                       "values: write one `name: value` line per argument (e.g. `method: dr`)")
    return values


def validate_cli(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments) -> None:
    """Problems the command line shows before minutes of work (world, teacher, precompute) are spent."""
    from mvld_hf.checkpointing import check_output_dir

    out = os.path.abspath(args.output_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"--output_dir {args.output_dir} is a file: pass a folder path")
    existing = out
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK):
        raise CliError(f"--output_dir {args.output_dir} cannot be written ({existing} is read-only): choose a "
                       "writable folder")
    from mvld_hf.run_lock import live_holder, refusal

    holder = live_holder(out)  # another run trains into it now: refused here, before minutes of set-up
    if holder is not None:
        raise CliError(refusal(args.output_dir, holder))
    check_output_dir(out, args.resume_from_checkpoint, args.overwrite_output_dir)
    cache = (data_args.teacher_eval_cache or "").strip()
    if cache.lower() not in ("", "none", "false", "auto"):  # a folder, created when missing: not under a file
        existing = os.path.abspath(cache)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise CliError(f"--teacher_eval_cache {cache} names a folder for the teacher's evaluations, but "
                           f"{existing} is a file: pass a folder (created if missing), 'auto' or 'none'")
    if model_args.student != OFFLINE and os.path.isdir(model_args.student):
        check_text_encoder_folder(model_args.student)
    from mvld_hf.data_files import DataFileError, check_data_file

    for path in (data_args.dataset, data_args.eval_split):  # local data files: read once, before any work
        if path and os.path.isfile(path):
            try:
                check_data_file(path, [args.caption_column, args.english_column], data_args.language_column)
            except DataFileError as err:
                raise CliError(str(err)) from None


def check_text_encoder_folder(path: str) -> None:
    """A local --student folder must hold a pretrained text encoder (config.json with a vocabulary)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise CliError(f"--student {path} is not a model folder ({' '.join(str(err).split())[:200]}): pass a "
                       "folder saved with save_pretrained (config.json, weights, tokenizer) or a Hub id") from None
    kind = getattr(config, "model_type", type(config).__name__)
    if getattr(config, "vocab_size", None) is None or getattr(config, "is_encoder_decoder", False) \
            or hasattr(config, "text_config") or hasattr(config, "vision_config"):
        raise CliError(f"--student {path} is a {kind!r} model, not a text encoder: pass a text encoder such as "
                       "xlm-roberta-base or distilbert-base-multilingual-cased (a folder or Hub id)")


def check_resume(args: DistillationArguments, student) -> None:
    """The checkpoint to resume from holds a student of this run's shape and was trained with this learning rate
    (checked before precomputing; its content is verified by the trainer, once)."""
    from mvld_hf.checkpointing import (
        damaged_newer_checkpoints,
        last_complete_checkpoint,
        learning_rate_change,
        resume_past_damaged,
        verify_checkpoint,
        weight_shape_mismatches,
    )

    resume = args.resume_from_checkpoint
    if resume in (None, False) or str(resume).lower() in ("", "false"):
        return
    checkpoint, skipped = (resume, []) if os.path.isdir(str(resume)) else last_complete_checkpoint(args.output_dir)
    if checkpoint is None:
        raise CliError(no_complete_checkpoint(resume, args.output_dir, skipped))
    damaged = damaged_newer_checkpoints(args.output_dir, skipped)
    if damaged:  # --resume_from_checkpoint true would fall back past a damaged newer checkpoint
        raise CliError(resume_past_damaged(checkpoint, damaged))
    saved = verify_checkpoint(checkpoint, content=False).get("metadata") or {}
    changed = learning_rate_change(saved, args.learning_rate)
    if changed:
        raise CliError(f"checkpoint {checkpoint} was trained with another {changed}")
    mismatches = weight_shape_mismatches(checkpoint, {k: list(v.shape) for k, v in student.state_dict().items()})
    if mismatches:
        raise CliError(f"checkpoint {checkpoint} holds a student of another shape ({'; '.join(mismatches[:2])}"
                       f"{f'; {len(mismatches) - 2} more' if len(mismatches) > 2 else ''}): resume with the student "
                       "flags of that run (e.g. --offline_hidden_size) or start a new run in a new --output_dir")


def no_complete_checkpoint(resume, output_dir: str, skipped: list[str]) -> str:
    """Why ``--resume_from_checkpoint true`` finds nothing to resume: no checkpoint at all, or each one's file and
    reason (:func:`~mvld_hf.checkpointing.verify_checkpoint`'s, without its advice to resume from an earlier one)."""
    if not skipped:
        return (f"--resume_from_checkpoint {resume}: no complete checkpoint in {output_dir}; drop the flag to "
                "start a new run or pass a checkpoint folder")
    reasons = [re.split(r"[.:] [Rr]esume from an earlier checkpoint", reason)[0].rstrip(".") for reason in skipped]
    return (f"--resume_from_checkpoint {resume}: no complete checkpoint in {output_dir}, "
            f"{'its only checkpoint fails' if len(skipped) == 1 else f'all {len(skipped)} checkpoints fail'} "
            f"verification: "
            f"{'; '.join(reasons)}. Nothing can be resumed from it: start again with --overwrite_output_dir true "
            "(or in a new --output_dir), or restore the damaged file(s)")


def resume_command(argv: list[str]) -> str:
    """The command line that resumes the run of ``argv``: the same flags, ``--resume_from_checkpoint true``
    instead of any given one (and without ``--overwrite_output_dir``, which would have nothing to do)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--resume_from_checkpoint", "--overwrite_output_dir"):
            skip = "=" not in arg
            continue
        kept.append(arg)
    script = sys.argv[0] if sys.argv and sys.argv[0] else "examples/distill.py"
    launcher = ["mvld-distill"] if os.path.basename(script) == "mvld-distill" else (
        ["accelerate", "launch", script] if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ["python", script])
    return shlex.join(launcher + kept + ["--resume_from_checkpoint", "true"])


def interrupted_message(argv: list[str], how: str = "Ctrl-C") -> str:
    """What Ctrl-C (or ``how``: SIGTERM) during a run of ``argv`` leaves, in two lines: the checkpoint that stays
    good and the command that resumes from it (or that nothing was saved yet)."""
    from mvld_hf.checkpointing import earlier_run, last_complete_checkpoint

    try:
        output_dir = parse_args(list(argv))[2].output_dir
    except (CliError, ValueError, SystemExit):
        return f"interrupted ({how})"
    last, _ = last_complete_checkpoint(output_dir)
    if last is None:
        again = restart_command(argv, bool(earlier_run(output_dir)))
        return f"interrupted ({how}) before a complete checkpoint was saved in {output_dir}: nothing to resume; " \
               f"start again with\n  {again}"
    return f"interrupted ({how}); {last} is the last complete checkpoint. Resume from it with\n  " \
           f"{resume_command(argv)}"


def restart_command(argv: list[str], overwrite: bool) -> str:
    """The same command again; with ``overwrite``, ``--overwrite_output_dir true`` (partial checkpoints left)."""
    command = resume_command(argv).rsplit(" --resume_from_checkpoint true", 1)[0]
    return command + (" --overwrite_output_dir true" if overwrite else "")


def parse_args(argv: list[str] | None = None):
    """Command-line flags, or a YAML/JSON config file followed by optional flag overrides
    (``distill.py configs/x.yaml --bf16 false``). The offline run gets its own training defaults."""
    from transformers import HfArgumentParser

    from mvld_hf import DistillationArguments

    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationArguments),
                              usage="mvld-distill [CONFIG.yaml | --config NAME] [--flag value ...]")
    argv = list(sys.argv[1:] if argv is None else argv)
    values, path = {}, None
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path = argv.pop(0)
        values = read_config(path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CliError(f"unknown keys in {path}: {unknown}; see `distill.py --help` for the argument names")
    late = [arg for i, arg in enumerate(argv) if arg.endswith((".yaml", ".yml", ".json")) and not arg.startswith("-")
            and (i == 0 or not argv[i - 1].startswith("--") or "=" in argv[i - 1])]  # not a flag's value
    if late:
        flags = [a for a in argv if a != late[0]]
        raise CliError(f"the config file {late[0]} must come first, before the flags that override it: "
                       f"distill.py {shlex.join([late[0], *flags])}")
    teacher = argv[argv.index("--teacher") + 1] if "--teacher" in argv[:-1] else values.get("teacher", OFFLINE)
    given = set(values) | {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    if teacher == OFFLINE:
        values = {**OFFLINE_TRAINING_DEFAULTS, **values}
    parser.set_defaults(**values)
    typed = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    try:
        model_args, data_args, args = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:
        if "support bf16" not in str(err):
            raise
        where = "--bf16 true" if typed & {"bf16", "bf16_full_eval"} else f"the config file {path} sets bf16: true"
        raise CliError(f"{where}, but this machine has no GPU with bfloat16 (a CPU, or a GPU older than Ampere): "
                       "add `--bf16 false` to train in float32 here") from None
    check_flags(model_args, data_args, args, given, from_config=(path, set(values) - typed) if path else None)
    return model_args, data_args, args


#: flags that only mean something with the offline world / only with Hub models and data
OFFLINE_ONLY = ("offline_hidden_size", "offline_layers", "offline_heads", "offline_vocab_size",
                "offline_max_token_length", "world_seed", "world_train_scenes", "world_test_scenes", "teacher_steps")
HUB_ONLY = ("teacher_revision", "teacher_dtype", "dataset_config", "streaming", "precomputed_embeddings",
            "precomputed_embeddings_config", "precomputed_id_column", "precomputed_embedding_column")
OFFLINE_SPLITS = ("train", "test")


def check_flags(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments,
                given: set[str] = frozenset(), from_config: tuple[str, set[str]] | None = None) -> None:
    """Refuse (:class:`CliError` with the reason) flags that would silently do nothing on this path.

    ``given``: the flag names set on the command line or in the config file (a flag left at its default is fine);
    ``from_config``: (the config file, the names only it set), so that a refusal says where a value comes from.
    """
    offline = model_args.teacher == OFFLINE
    if offline != (data_args.dataset == OFFLINE) or (not offline and model_args.student == OFFLINE):
        raise CliError("--teacher and --dataset must both be 'offline' (any --student: 'offline' or a pretrained "
                       "backbone) or both name real models/data (with a real --student)")
    wrong = sorted(given & set(HUB_ONLY if offline else OFFLINE_ONLY))
    if wrong:
        where = "the offline world" if offline else "Hub models and data (they configure the offline world)"
        config, only_there = from_config or (None, set())
        if set(wrong) <= only_there:
            meant = "Hub models and data" if offline else "the offline world"
            raise CliError(f"{', '.join(wrong)} (set by the config file {config}, not on the command line) do(es) "
                           f"nothing with {where}: that config is for {meant}; run without it, or remove those keys "
                           "from a copy of it")
        raise CliError(f"{', '.join('--' + w for w in wrong)} do(es) nothing with {where}; remove it")
    if offline:
        if data_args.train_split != "train" or (data_args.eval_split or "test") != "test":
            raise CliError(f"the offline world has the splits {OFFLINE_SPLITS}: use --train_split train and "
                             "--eval_split test, or --eval_split '' to skip the evaluation")
        if data_args.language_column != "language":
            raise CliError("the offline world's language column is 'language'; --language_column applies to "
                             "Hub datasets")
    if args.max_steps == 0:
        raise CliError("--max_steps 0 would train nothing; pass a positive number of steps (or -1 to train "
                         "for --num_train_epochs). To evaluate a saved student, run `mvld-evaluate --model DIR` "
                         "(examples/evaluate.py in the repository)")
    if data_args.max_train_samples is not None and data_args.max_train_samples < 1:
        raise CliError(f"--max_train_samples must be at least 1, got {data_args.max_train_samples}")
    batch = args.per_device_train_batch_size * args.world_size
    if data_args.max_train_samples and args.dataloader_drop_last and data_args.max_train_samples < batch:
        raise CliError(f"--max_train_samples {data_args.max_train_samples} is fewer than one batch ({batch}) "
                         "with --dataloader_drop_last: nothing would be trained. Raise it or lower "
                         "--per_device_train_batch_size")
