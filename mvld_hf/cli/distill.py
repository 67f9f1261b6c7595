"""Distil a multilingual text student into a frozen English vision-language teacher.

    accelerate launch examples/distill.py                       # offline world: no Hub needed
    mvld-distill --max_steps 100                                # the same, installed console script
    accelerate launch examples/distill.py configs/clip-l14_xlmr-base_dr.yaml   # a paper setup (needs the Hub)
    python examples/distill.py configs/clip-l14_xlmr-base_dr.yaml --bf16 false --max_steps 100  # overrides
    python examples/distill.py --method ed --num_train_epochs 2 --output_dir outputs/ed

With no arguments (or ``--teacher offline``) it runs the offline world shipped with mvld_hf: rendered scenes
with captions in 13 languages, an English-only CLIP trained on them (cached after the first run), a small
XLM-R-style student with a tokenizer trained on the captions, DR distillation, then per-language retrieval
of the student (paired with the teacher's image tower) beside the teacher's English retrieval. Outputs in
``--output_dir``: the checkpoint, ``eval_results.json``, ``retrieval_per_language.png`` and a table.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import yaml
from transformers import AutoTokenizer, HfArgumentParser, set_seed

import mvld_hf
from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower, precompute_teacher_embeddings
from mvld_hf.run_record import hyperparameters_from_args, is_hub_id, write_run_record

logger = logging.getLogger("mvld_hf.distill")
OFFLINE = "offline"


@dataclass
class ModelArguments:
    teacher: str = field(default=OFFLINE, metadata={"help": "Teacher: 'offline' (the English CLIP of the offline "
                         "world, trained here) or a Hub id/path (openai/clip-vit-large-patch14, "
                         "google/siglip2-large-patch16-256, a SentenceTransformer)."})
    teacher_revision: str | None = field(default=None, metadata={"help": "Teacher revision (commit) to pin."})
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
    teacher_eval_cache: str | None = field(default=None, metadata={"help": "Keep the teacher's own evaluation "
                                           "(retrieval, purity, consistency, VQA) in this folder, keyed by the "
                                           "teacher and the held-out data, and reuse it in later runs with the same "
                                           "teacher and evaluation data (the study runner sets it for its cells)."})
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


def one_line_errors(main):
    """Errors end ``main`` with one line, ``error: <cause and fix>``, instead of a traceback; a bare ``--debug``
    flag (TrainingArguments' ``--debug <option>`` is left alone) re-raises them with the traceback."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None):
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = [i for i, a in enumerate(argv) if a == "--debug" and (i + 1 == len(argv) or argv[i + 1][:2] == "--")]
        for i in reversed(debug):
            del argv[i]
        try:
            return main(argv)
        except Exception as err:  # every error of a run is reported the same way
            if debug:
                raise
            cause = " ".join(str(err).split()) or "no message"
            if not isinstance(err, CliError):
                cause = f"{type(err).__name__}: {cause}"
            raise SystemExit(f"error: {cause}\n(run with --debug for the traceback)") from None

    return wrapper


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
    check_output_dir(out, args.resume_from_checkpoint, args.overwrite_output_dir)
    if model_args.student != OFFLINE and os.path.isdir(model_args.student):
        check_text_encoder_folder(model_args.student)


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
    """The checkpoint to resume from holds a student of this run's shape (checked before precomputing)."""
    from mvld_hf.checkpointing import last_complete_checkpoint, verify_checkpoint, weight_shape_mismatches

    resume = args.resume_from_checkpoint
    if resume in (None, False) or str(resume).lower() in ("", "false"):
        return
    checkpoint = resume if os.path.isdir(str(resume)) else last_complete_checkpoint(args.output_dir)[0]
    if checkpoint is None:
        raise CliError(f"--resume_from_checkpoint {resume}: no complete checkpoint in {args.output_dir}; drop the "
                       "flag to start a new run or pass a checkpoint folder")
    verify_checkpoint(checkpoint)
    mismatches = weight_shape_mismatches(checkpoint, {k: list(v.shape) for k, v in student.state_dict().items()})
    if mismatches:
        raise CliError(f"checkpoint {checkpoint} holds a student of another shape ({'; '.join(mismatches[:2])}"
                       f"{f'; {len(mismatches) - 2} more' if len(mismatches) > 2 else ''}): resume with the student "
                       "flags of that run (e.g. --offline_hidden_size) or start a new run in a new --output_dir")


def parse_args(argv: list[str] | None = None):
    """Command-line flags, or a YAML/JSON config file followed by optional flag overrides
    (``distill.py configs/x.yaml --bf16 false``). The offline run gets its own training defaults."""
    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationArguments))
    argv = list(sys.argv[1:] if argv is None else argv)
    values = {}
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path = argv.pop(0)
        values = read_config(path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CliError(f"unknown keys in {path}: {unknown}; see `distill.py --help` for the argument names")
    teacher = argv[argv.index("--teacher") + 1] if "--teacher" in argv[:-1] else values.get("teacher", OFFLINE)
    given = set(values) | {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    if teacher == OFFLINE:
        values = {**OFFLINE_TRAINING_DEFAULTS, **values}
    parser.set_defaults(**values)
    model_args, data_args, args = parser.parse_args_into_dataclasses(args=argv)
    check_flags(model_args, data_args, args, given)
    return model_args, data_args, args


#: flags that only mean something with the offline world / only with Hub models and data
OFFLINE_ONLY = ("offline_hidden_size", "offline_layers", "offline_heads", "offline_vocab_size",
                "offline_max_token_length", "world_seed", "world_train_scenes", "world_test_scenes", "teacher_steps")
HUB_ONLY = ("teacher_revision", "dataset_config", "streaming", "precomputed_embeddings",
            "precomputed_embeddings_config", "precomputed_id_column", "precomputed_embedding_column")
OFFLINE_SPLITS = ("train", "test")


def check_flags(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments,
                given: set[str] = frozenset()) -> None:
    """Refuse (:class:`CliError` with the reason) flags that would silently do nothing on this path.

    ``given``: the flag names set on the command line or in the config file (a flag left at its default is fine).
    """
    offline = model_args.teacher == OFFLINE
    if offline != (data_args.dataset == OFFLINE) or (not offline and model_args.student == OFFLINE):
        raise CliError("--teacher and --dataset must both be 'offline' (any --student: 'offline' or a pretrained "
                       "backbone) or both name real models/data (with a real --student)")
    wrong = sorted(given & set(HUB_ONLY if offline else OFFLINE_ONLY))
    if wrong:
        where = "the offline world" if offline else "Hub models and data (they configure the offline world)"
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
                         "for --num_train_epochs). To evaluate a saved student, run examples/evaluate.py")
    if data_args.max_train_samples is not None and data_args.max_train_samples < 1:
        raise CliError(f"--max_train_samples must be at least 1, got {data_args.max_train_samples}")
    batch = args.per_device_train_batch_size * args.world_size
    if data_args.max_train_samples and args.dataloader_drop_last and data_args.max_train_samples < batch:
        raise CliError(f"--max_train_samples {data_args.max_train_samples} is fewer than one batch ({batch}) "
                         "with --dataloader_drop_last: nothing would be trained. Raise it or lower "
                         "--per_device_train_batch_size")


# ---------------------------------------------------------------------------------------------- offline
def offline_setup(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments):
    """World, English teacher (trained once, cached), tokenizer trained on the captions, random student."""
    from mvld_hf.data import with_anchor_language
    from mvld_hf.synthetic import build_world, subsample_languages, train_english_teacher
    from mvld_hf.testing import tiny_backbone_config, train_tokenizer

    world_kwargs = {k: v for k, v in dict(num_train_scenes=data_args.world_train_scenes,
                                          num_test_scenes=data_args.world_test_scenes,
                                          languages=data_args.languages).items() if v is not None}
    world = build_world(seed=data_args.world_seed, **world_kwargs)
    train = subsample_languages(with_anchor_language(world["train"], args.anchor_language),
                                data_args.world_language_share or {}, seed=data_args.world_seed)
    if data_args.max_train_samples:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
        logger.info("training on the first %d offline captions (--max_train_samples)", len(train))
    evaluation = world["test"] if data_args.eval_split else None
    # the teacher's cache folder is fingerprinted by its training data and settings: a changed world retrains it
    teacher_kwargs = {"steps": data_args.teacher_steps} if data_args.teacher_steps else {}
    with args.main_process_first(desc="offline teacher"):
        teacher_path = train_english_teacher(world, seed=data_args.world_seed, **teacher_kwargs)
    teacher = mvld_hf.load_teacher(teacher_path)
    if model_args.student != OFFLINE:  # a real pretrained student (a local folder) beside the offline teacher
        return train, evaluation, teacher, *pretrained_student(model_args, teacher, teacher_path)

    texts = list(train["caption"])  # the tokenizer sees only the training captions kept
    tokenizer = train_tokenizer(texts, vocab_size=model_args.offline_vocab_size, model_max_length=args.max_length,
                                max_token_length=model_args.offline_max_token_length)
    backbone = tiny_backbone_config(len(tokenizer), hidden_size=model_args.offline_hidden_size,
                                    layers=model_args.offline_layers, heads=model_args.offline_heads,
                                    max_positions=args.max_length + 2)
    set_seed(args.seed)
    config = mvld_hf.MultilingualTextTowerConfig(
        backbone_config=backbone.to_dict(), projection_dim=teacher.dim, pooling=model_args.pooling,
        teacher_name_or_path=teacher_path, distillation_method=args.method)
    return train, evaluation, teacher, tokenizer, MultilingualTextTower(config)


def pretrained_student(model_args: ModelArguments, teacher, teacher_name: str):
    """Tokenizer and student tower from a pretrained backbone (Hub id or local folder)."""
    tokenizer = AutoTokenizer.from_pretrained(model_args.student)
    student = MultilingualTextTower.from_backbone(
        model_args.student, projection_dim=teacher.dim, pooling=model_args.pooling,
        teacher_name_or_path=teacher_name, teacher_revision=model_args.teacher_revision)
    return tokenizer, student


# ------------------------------------------------------------------------------------------------- hub
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_split(name: str, config: str | None, split: str, streaming: bool = False):
    """One split of a Hub dataset, a folder written by ``save_to_disk`` (a ``DatasetDict``: its ``split``), or
    a local ``.json``/``.jsonl``/``.csv``/``.parquet`` file. For a data file, ``split`` may itself be a data file
    (e.g. ``--eval_split held_out.jsonl``); the file given as the dataset is the training split."""
    import datasets

    def data_file(path: str):
        return datasets.load_dataset(LOCAL_FORMATS[os.path.splitext(path)[1].lower()], data_files=path,
                                     split="train", streaming=streaming)

    if os.path.isfile(split) and os.path.splitext(split)[1].lower() in LOCAL_FORMATS:
        return data_file(split)
    if os.path.isfile(name):
        if os.path.splitext(name)[1].lower() not in LOCAL_FORMATS:
            raise CliError(f"--dataset {name}: a local file must be one of {sorted(LOCAL_FORMATS)}")
        if split != "train":
            raise CliError(f"--dataset {name} is one data file (the training split); give the held-out rows as "
                           f"another file (--eval_split path/to/test.jsonl) or skip evaluation (--eval_split '')")
        return data_file(name)
    saved = [os.path.join(name, f) for f in ("dataset_dict.json", "state.json")]
    if os.path.isdir(name) and any(os.path.isfile(path) for path in saved):  # written by save_to_disk
        data = datasets.load_from_disk(name)
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise CliError(f"--dataset {name} has splits {list(data)}, not {split!r}")
            data = data[split]
        return data.to_iterable_dataset() if streaming else data
    return datasets.load_dataset(name, config, split=split, streaming=streaming)


def hub_setup(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments):
    """Teacher and student from the Hub or local folders, training data from a Hub dataset (M-CLIP's 7M
    captions, ...) or a local one (see :func:`load_split`)."""
    from datasets import load_dataset

    teacher = mvld_hf.load_teacher(model_args.teacher, revision=model_args.teacher_revision, device=args.device)
    tokenizer = AutoTokenizer.from_pretrained(model_args.student)
    student = MultilingualTextTower.from_backbone(
        model_args.student, projection_dim=teacher.dim, pooling=model_args.pooling,
        teacher_name_or_path=model_args.teacher, teacher_revision=model_args.teacher_revision)
    student.config.distillation_method = args.method
    train = load_split(data_args.dataset, data_args.dataset_config, data_args.train_split, data_args.streaming)
    if args.anchor_language != "en" and args.english_column == "english":
        raise CliError(f"--anchor_language {args.anchor_language}: name the column holding each row's "
                       f"{args.anchor_language!r} caption with --english_column (the anchor the teacher embeds)")
    if data_args.world_language_share:
        raise CliError("--world_language_share applies to the offline world only")
    if data_args.languages:
        keep = set(data_args.languages)
        train = train.filter(lambda lang: lang in keep, input_columns=data_args.language_column)
    if data_args.max_train_samples:
        train = train.take(data_args.max_train_samples) if data_args.streaming else \
            train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.precomputed_embeddings:
        from mvld_hf.precompute import join_precomputed_embeddings

        embeddings = load_dataset(data_args.precomputed_embeddings, data_args.precomputed_embeddings_config,
                                  split=data_args.train_split)
        train = join_precomputed_embeddings(train, embeddings, id_column=data_args.precomputed_id_column,
                                            embedding_column=data_args.precomputed_embedding_column,
                                            output_column=args.teacher_text_column)
    evaluation = None
    if data_args.eval_split:
        evaluation = load_split(data_args.dataset, data_args.dataset_config, data_args.eval_split)
    return train, evaluation, teacher, tokenizer, student


# ------------------------------------------------------------------------------------------- run record
def run_record(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments, train, teacher,
               global_step: int) -> dict:
    """What this run knows about itself, for the model card (:mod:`mvld_hf.run_record`)."""
    offline = model_args.teacher == OFFLINE
    columns = getattr(train, "column_names", None) or []
    languages = None
    if not data_args.streaming and data_args.language_column in columns:
        languages = sorted(set(train[data_args.language_column]))
    elif data_args.languages:
        languages = sorted(data_args.languages)
    rows = None if data_args.streaming else len(train)
    if offline:
        return {
            "offline_world": True,
            "teacher": {"name_or_path": teacher.name_or_path, "hub_id": None, "revision": None,
                        "description": f"the English-only CLIP of mvld_hf's offline world (seed "
                                       f"{data_args.world_seed}), trained locally and not published on the Hub"},
            "student": {"base": None, "pretrained": False},
            "training_data": {"name": "mvld_hf offline world", "hub_id": None, "split": "train", "rows": rows,
                              "description": "procedural 64x64 scenes with captions generated in each language by "
                                             "the world's grammar (no translation)"},
            "languages": languages,
            # weights derived only from mvld_hf's own code and generated data: the package's license
            "license": "apache-2.0",
            "hyperparameters": hyperparameters_from_args(args, global_step),
        }
    return {
        "offline_world": False,
        "teacher": {"name_or_path": model_args.teacher,
                    "hub_id": model_args.teacher if is_hub_id(model_args.teacher) else None,
                    "revision": model_args.teacher_revision, "description": None},
        "student": {"base": model_args.student, "pretrained": True},
        "training_data": {"name": data_args.dataset, "hub_id": data_args.dataset if is_hub_id(data_args.dataset)
                          else None, "config": data_args.dataset_config, "split": data_args.train_split,
                          "rows": rows, "description": None},
        "languages": languages,
        "license": None,
        "hyperparameters": hyperparameters_from_args(args, global_step),
    }


# ---------------------------------------------------------------------------------------------- evaluate
TEACHER_EVAL_FORMAT = 1  # bump when the evaluation's content changes: older cached teacher evaluations are ignored


def teacher_eval_path(folder: str | None, teacher, dataset, vqa, args: DistillationArguments,
                      data_args: DataArguments, parallel_column: str | None) -> str | None:
    """Where the teacher's evaluation on exactly this held-out data is kept in ``folder`` (None: no cache). The
    key names the teacher (name or folder, revision), the held-out split and VQA set (datasets fingerprints and
    sizes), the evaluated columns and languages, and the mvld_hf version."""
    if not folder:
        return None
    import hashlib

    key = {"format": TEACHER_EVAL_FORMAT, "mvld_hf": mvld_hf.__version__, "teacher": teacher.name_or_path,
           "revision": getattr(teacher, "revision", None), "eval": [dataset._fingerprint, len(dataset)],
           "vqa": [vqa._fingerprint, len(vqa)] if vqa is not None else None, "caption": args.caption_column,
           "language": data_args.language_column, "languages": data_args.languages, "parallel": parallel_column}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return os.path.join(folder, f"teacher-eval-{digest}.json")


def read_teacher_eval(path: str | None) -> dict | None:
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):  # a torn or foreign file: evaluate again (and rewrite it)
        return None


def write_teacher_eval(path: str, results: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, default=float)
    os.replace(tmp, path)  # atomic: concurrent runs never read half a file


def evaluate(student, tokenizer, teacher, dataset, args: DistillationArguments, data_args: DataArguments,
             output_dir: str, vqa=None) -> dict:
    """Per-language retrieval, purity and cross-lingual consistency of the student (with the teacher's images)
    beside the teacher's own; with ``vqa`` (a multiple-choice VQA dataset) both are also scored on it.

    Writes ``eval_results.json`` and ``retrieval_per_language.png`` and prints the tables plus each language's
    student T2I R@1 as a fraction of the teacher's English T2I R@1.
    """
    from mvld_hf.evaluation import MultilingualEvaluator
    from mvld_hf.evaluation.report import format_report, plot_per_language, save_json

    if not teacher.supports_images:
        return evaluate_translation(student, tokenizer, teacher, dataset, args, data_args, output_dir)
    parallel = "english" if "english" in dataset.column_names else None  # parallel captions: consistency
    evaluator = MultilingualEvaluator(dataset, caption_column=args.caption_column,
                                      language_column=data_args.language_column, languages=data_args.languages,
                                      batch_size=args.per_device_eval_batch_size, show_progress_bar=True,
                                      parallel_column=parallel)
    logger.info("evaluation: %d held-out captions in %d languages against %d images (retrieval, then purity)",
                len(evaluator.captions), len(evaluator.languages), len(evaluator.image_rows))
    images = evaluator.encode_images(lambda batch: teacher.encode_image(batch).cpu())
    student.eval()
    cache = teacher_eval_path(data_args.teacher_eval_cache, teacher, dataset, vqa, args, data_args, parallel)
    cached = read_teacher_eval(cache)
    if cached is not None:
        logger.info("evaluation of the teacher: reused from %s", cache)
        models = {"teacher": cached}
    else:
        logger.info("evaluation of the teacher")
        models = {"teacher": evaluator(lambda texts: teacher.encode_text(texts).cpu(), image_embeddings=images)}
    logger.info("evaluation of the student")
    models["student"] = evaluator(lambda texts: student.encode(texts, tokenizer, max_length=args.max_length).cpu(),
                                  image_embeddings=images)
    if vqa is not None:
        from mvld_hf.evaluation import evaluate_vqa

        for name, encode in (("teacher", lambda texts: teacher.encode_text(texts).cpu()),
                             ("student", lambda texts: student.encode(texts, tokenizer,
                                                                      max_length=args.max_length).cpu())):
            if name == "teacher" and cached is not None:
                continue
            logger.info("VQA of the %s: %d questions", name, len(vqa))
            models[name]["vqa"] = evaluate_vqa(encode, lambda batch: teacher.encode_image(batch).cpu(), vqa,
                                               languages=data_args.languages,
                                               batch_size=args.per_device_eval_batch_size)
    if cache and cached is None:
        write_teacher_eval(cache, models["teacher"])
    teacher_en = models["teacher"]["retrieval"].get("en", {}).get("t2i_R@1")
    # a ratio is undefined (None) when the teacher retrieves nothing in its own language
    ratios = {lang: (m["t2i_R@1"] / teacher_en if teacher_en else None)
              for lang, m in models["student"]["retrieval"].items() if lang not in ("all", "mean")}
    offline = data_args.dataset == OFFLINE
    benchmark = {"type": "mvld_hf-offline-world", "name": "mvld_hf offline world", "split": "test"} if offline \
        else {"type": data_args.dataset, "name": data_args.dataset, "split": data_args.eval_split}
    results = {"dataset": benchmark, **models, "student_t2i_R@1_over_teacher_en": ratios,
               "meta": {"teacher": teacher.name_or_path, "method": args.method, "anchor": args.anchor,
                        "images": len(evaluator.image_rows), "captions": len(evaluator.captions),
                        "languages": evaluator.languages, "anchor_language": args.anchor_language,
                        "world_language_share": data_args.world_language_share,
                        "purity": "spherical k-means on the held-out captions, k = number of distinct images "
                                  "among them, purity w.r.t. the image id; per language: that language's captions; "
                                  "'mixed': all languages together; teacher and student cluster the same "
                                  "caption sets with the same k",
                        "vqa_questions": len(vqa) if vqa is not None else 0}}
    save_json(results, os.path.join(output_dir, "eval_results.json"))
    plot_per_language(models, metric="t2i_R@1", section="retrieval",
                      path=os.path.join(output_dir, "retrieval_per_language.png"),
                      title=f"Text-to-image retrieval R@1 per caption language, held-out {benchmark['name']}\n"
                            f"student ({args.method}, {args.anchor} anchors) vs its teacher",
                      ylabel="text-to-image R@1 (%)", xlabel="caption language")
    print()
    print(format_report(models, metrics=None))
    if teacher_en:
        print(f"student T2I R@1 / teacher English T2I R@1 ({100 * teacher_en:.1f}):")
        print("  " + "  ".join(f"{lang} {ratio:.2f}" for lang, ratio in sorted(ratios.items())))
    if args.english_column in (dataset.column_names or []):  # cross-lingual consistency, no images needed
        results["translation"] = evaluate_translation(student, tokenizer, teacher, dataset, args, data_args,
                                                      output_dir, save=False)["translation"]
        save_json(results, os.path.join(output_dir, "eval_results.json"))
    return results


def evaluate_translation(student, tokenizer, teacher, dataset, args: DistillationArguments,
                         data_args: DataArguments, output_dir: str, save: bool = True) -> dict:
    """Per-language translation retrieval of the student against the teacher (no images): caption in L ->
    the teacher's embedding of its English original among that language's rows, both directions, plus mean
    cosine and embedding spread. The teacher's own row is the English-only teacher reading the same captions."""
    from mvld_hf.evaluation.report import format_report, save_json
    from mvld_hf.evaluation.translation import TranslationEvaluator

    rows = dataset.filter(lambda lang: lang != args.anchor_language, input_columns=data_args.language_column) \
        if data_args.language_column in (dataset.column_names or []) else dataset
    evaluator = TranslationEvaluator(rows, caption_column=args.caption_column, english_column=args.english_column,
                                     language_column=data_args.language_column,
                                     languages=[lang for lang in data_args.languages or []
                                                if lang != args.anchor_language] or None,
                                     batch_size=args.per_device_eval_batch_size)
    evaluator.encode_teacher(lambda texts: teacher.encode_text(texts).cpu())
    student.eval()
    encoders = {"teacher": lambda texts: teacher.encode_text(texts).cpu(),
                "student": lambda texts: student.encode(texts, tokenizer, max_length=args.max_length).cpu()}
    tables = {name: {"translation": evaluator.per_language(evaluator(encode))} for name, encode in encoders.items()}
    results = {"translation": {name: t["translation"] for name, t in tables.items()},
               "meta": {"teacher": teacher.name_or_path, "method": args.method,
                        "sentences": {lang: len(c) for lang, c in evaluator.captions.items()}}}
    if save:
        save_json(results, os.path.join(output_dir, "eval_results.json"))
    print()
    print("Translation retrieval (caption -> teacher's English embedding, among each language's rows; "
          "s2t/t2s accuracy, cosine to the teacher, spread = mean pairwise cosine of the embeddings):")
    print(format_report(tables, metrics=["s2t_acc", "t2s_acc", "cosine", "spread"]))
    return results


def cpu_threads(world_size: int) -> int:
    """Torch threads per process on a CPU: ``$MVLD_HF_NUM_THREADS`` when set (e.g. 1 beside another job, so
    neither oversubscribes the cores), else the cores shared among the processes (`accelerate launch` sets
    OMP_NUM_THREADS=1 when unset, which would leave cores idle)."""
    value = os.environ.get("MVLD_HF_NUM_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise CliError(f"MVLD_HF_NUM_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return max(1, (os.cpu_count() or 1) // max(1, world_size))


@one_line_errors
def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, args = parse_args(argv)
    validate_cli(model_args, data_args, args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if args.should_log else logging.WARNING)
    start = time.perf_counter()
    if args.device.type == "cpu":
        import torch

        torch.set_num_threads(cpu_threads(args.world_size))
    set_seed(args.seed)
    check_flags(model_args, data_args, args)
    offline = model_args.teacher == OFFLINE
    setup = offline_setup if offline else hub_setup
    train, evaluation, teacher, tokenizer, student = setup(model_args, data_args, args)
    check_resume(args, student)
    batch = args.per_device_train_batch_size * args.world_size
    if not data_args.streaming and args.dataloader_drop_last and len(train) < batch:
        raise CliError(f"the training set has {len(train)} rows, fewer than one batch ({batch}) with "
                       "--dataloader_drop_last: raise --max_train_samples or lower --per_device_train_batch_size")

    if args.anchor == "text" and args.image_column in (train.column_names or []):
        train = train.remove_columns(args.image_column)  # text anchors: no image is read, don't rewrite them
    if args.teacher_text_column not in (train.column_names or []):
        # a stream is embedded in the training step of each rank (DataLoader workers only read and tokenize); a
        # map-style dataset is split over the ranks, each embedding its part (every rank calls this: a collective)
        train = precompute_teacher_embeddings(train, teacher, anchor=args.anchor, batch_size=1000,
                                              english_column=args.english_column, image_column=args.image_column,
                                              text_output_column=args.teacher_text_column,
                                              image_output_column=args.teacher_image_column,
                                              cache_dir=data_args.teacher_cache_dir, share_across_ranks=True)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(args.output_dir)
        write_run_record(args.output_dir, run_record(model_args, data_args, args, train, teacher,
                                                     trainer.state.global_step))
    results = {}
    if evaluation is None:
        logger.info("no evaluation (--eval_split is empty)")
    elif trainer.is_world_process_zero():
        vqa = None
        if offline and data_args.eval_vqa:
            from mvld_hf.synthetic import build_vqa

            vqa = build_vqa(seed=data_args.world_seed, num_scenes=len(set(evaluation["image_id"])),
                            languages=data_args.languages)
        results = evaluate(student, tokenizer, teacher, evaluation, args, data_args, args.output_dir, vqa=vqa)
    logger.info("done in %.0f s; outputs in %s", time.perf_counter() - start, args.output_dir)
    return results


def console_main() -> int:
    """The ``mvld-distill`` console script (``pip install`` puts it on PATH); exit status 0 on success."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
