"""What a run writes about itself: the run record the model card is rendered from, and the evaluation reports
(per-language retrieval, purity, consistency and VQA against the teacher's images; translation retrieval for a
text-only teacher), with the teacher's own evaluation cached across runs that share teacher and held-out data."""

from __future__ import annotations

import json
import logging
import os

import mvld_hf
from mvld_hf import DistillationArguments
from mvld_hf.run_record import hyperparameters_from_args, is_hub_id

from .arguments import OFFLINE, DataArguments, ModelArguments

logger = logging.getLogger("mvld_hf.distill")


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


TEACHER_EVAL_FORMAT = 1  # bump when the evaluation's content changes: older cached teacher evaluations are ignored


def teacher_eval_folder(value: str | None) -> str | None:
    """The folder ``--teacher_eval_cache`` names: ``auto`` (the default) is ``teacher-eval`` under the mvld_hf
    cache folder (:func:`mvld_hf.synthetic.default_cache_dir`); ``none`` or an empty value turns the cache off."""
    if value is None or value.strip().lower() in ("", "none", "false"):
        return None
    if value.strip().lower() == "auto":
        from mvld_hf.synthetic.world import default_cache_dir

        return os.path.join(default_cache_dir(), "teacher-eval")
    return value


def teacher_eval_path(folder: str | None, teacher, dataset, vqa, args: DistillationArguments,
                      data_args: DataArguments, parallel_column: str | None) -> str | None:
    """Where the teacher's evaluation on exactly this held-out data is kept in ``folder`` (None: no cache). The
    key names the teacher (name or folder, revision) and its weights' content (:func:`teacher_weights_key`), the
    held-out split and VQA set (datasets fingerprints and sizes), the evaluated columns and languages, and the
    mvld_hf version."""
    folder = teacher_eval_folder(folder)
    if not folder:
        return None
    import hashlib

    key = {"format": TEACHER_EVAL_FORMAT, "mvld_hf": mvld_hf.__version__, "teacher": teacher.name_or_path,
           "revision": getattr(teacher, "revision", None), "eval": [dataset._fingerprint, len(dataset)],
           "vqa": [vqa._fingerprint, len(vqa)] if vqa is not None else None, "caption": args.caption_column,
           "language": data_args.language_column, "languages": data_args.languages, "parallel": parallel_column,
           "weights": teacher_weights_key(teacher)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return os.path.join(folder, f"teacher-eval-{digest}.json")


#: the files of a local teacher folder whose content the teacher-eval cache key hashes
_TEACHER_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", "config.json")


def teacher_weights_key(teacher) -> dict:
    """The teacher's weights in the teacher-eval cache key: for a local folder every weight file and
    ``config.json`` by name, size and SHA-256 (a teacher changed in place, even to the same size and time, gets
    a new key; the files are read once, at the checkpoint hash's speed in benchmarks/RESULTS.md); for a Hub
    teacher the commit its files were resolved to (``config._commit_hash``), so a moved ``main`` is evaluated
    again."""
    from mvld_hf.checkpointing import file_sha256

    path = getattr(teacher, "name_or_path", None)
    config = getattr(getattr(teacher, "model", None), "config", None)
    key: dict = {"commit": getattr(config, "_commit_hash", None)}
    if isinstance(path, str) and os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.endswith(_TEACHER_WEIGHT_FILES):
                    full = os.path.join(root, name)
                    files.append([os.path.relpath(full, path), os.path.getsize(full), file_sha256(full)])
        key["files"] = files
    return key


def read_teacher_eval(path: str | None) -> dict | None:
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):  # a torn or foreign file: evaluate again (and rewrite it)
        return None


def _kind(value) -> str:
    if isinstance(value, dict):
        return "mapping"
    if value is None or isinstance(value, (bool, int, float)):
        return "number"
    return "list" if isinstance(value, (list, tuple)) else type(value).__name__


def stale_teacher_eval(cached, fresh: dict, where: str = "", depth: int = 0) -> str | None:
    """Why a cached teacher evaluation (valid JSON) cannot stand beside ``fresh`` (the student's results on the
    same data), or None: not a mapping, a section or language missing (to two levels), or a value of another kind
    (a string where a metric is a number). Other keys the student has but the cache lacks (deeper down, or a list
    such as the collapsed languages) are tolerated."""
    if not isinstance(cached, dict):
        return f"{where or 'it'} holds a {type(cached).__name__}, not a mapping"
    for key, value in fresh.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in cached:
            if depth < 2 and isinstance(value, dict):
                return f"{name} is missing"
            continue
        if _kind(cached[key]) != _kind(value):
            return f"{name} is a {_kind(cached[key])} ({str(cached[key])[:40]!r}), expected a {_kind(value)}"
        if isinstance(value, dict):
            reason = stale_teacher_eval(cached[key], value, name, depth + 1)
            if reason:
                return reason
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
    stale = cached is not None and stale_teacher_eval(
        {k: v for k, v in cached.items() if k != "vqa"} if isinstance(cached, dict) else cached, models["student"])
    if stale or (cached is not None and vqa is not None and not isinstance(cached.get("vqa"), dict)):
        logger.warning("evaluation of the teacher: the cached %s is stale (%s): evaluating the teacher again and "
                       "rewriting it", cache, stale or "vqa is missing")
        cached = None
        models["teacher"] = evaluator(lambda texts: teacher.encode_text(texts).cpu(), image_embeddings=images)
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
        stale = cached is not None and stale_teacher_eval(cached["vqa"], models["student"]["vqa"], "vqa", 1)
        if stale:
            logger.warning("evaluation of the teacher: the cached %s is stale (%s): evaluating the teacher's VQA "
                           "again and rewriting it", cache, stale)
            cached = None
            models["teacher"]["vqa"] = evaluate_vqa(lambda texts: teacher.encode_text(texts).cpu(),
                                                    lambda batch: teacher.encode_image(batch).cpu(), vqa,
                                                    languages=data_args.languages,
                                                    batch_size=args.per_device_eval_batch_size)
    if cache and cached is None:
        write_teacher_eval(cache, models["teacher"])
        logger.info("evaluation of the teacher: kept in %s for later runs (--teacher_eval_cache none: off)", cache)
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
    from mvld_hf.evaluation.collapse import collapsed_from_spread
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
    for table in tables.values():  # collapsed languages are marked, not scored (mvld_hf.evaluation.collapse)
        table["collapsed"] = collapsed_from_spread(table["translation"])
    results = {"translation": {name: t["translation"] for name, t in tables.items()},
               "collapsed": {name: t["collapsed"] for name, t in tables.items()},
               "meta": {"teacher": teacher.name_or_path, "method": args.method,
                        "sentences": {lang: len(c) for lang, c in evaluator.captions.items()}}}
    if save:
        save_json(results, os.path.join(output_dir, "eval_results.json"))
    print()
    print("Translation retrieval (caption -> teacher's English embedding, among each language's rows; "
          "s2t/t2s accuracy, cosine to the teacher, spread = mean pairwise cosine of the embeddings):")
    print(format_report(tables, metrics=["s2t_acc", "t2s_acc", "cosine", "spread"]))
    return results
