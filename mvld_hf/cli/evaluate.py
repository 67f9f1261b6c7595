"""Evaluate a distilled student beside its teacher: per-language retrieval, clustering purity and VQA.

    python examples/evaluate.py --model outputs/distill-offline                  # offline world (+ VQA)
    python examples/evaluate.py --model outputs/distill-offline --languages de ja sw
    python examples/evaluate.py --model org/student --benchmark xm3600           # a preset (needs the Hub)
    python examples/evaluate.py --model outputs/x --dataset my/data --split test \\
        --image-column img --caption-column text --language-column lang --image-id-column img_id

With a text-only teacher (e.g. a sentence-transformers model) no images are needed: the student is scored
by per-language translation retrieval against the teacher (caption in L -> teacher(English original) among
that language's rows, both directions), mean cosine and MSE to the teacher and the embedding spread
(``mvld_hf.evaluation.translation``); the data needs an English column (``--english-column``).
``--translation`` adds these metrics for an image-text teacher too (cross-lingual consistency).

    python examples/evaluate.py --model outputs/st-student --dataset parallel.jsonl --english-column english

``--model`` is an mvld_hf student checkpoint (folder or Hub id; ``config.json`` with
``model_type: mvld_text_tower``) whose tokenizer sits beside it; the teacher defaults to the one recorded in
its config. Writes ``eval.json``, ``eval.md`` and one PNG per headline metric into ``--output-dir``
(default: ``<model>/eval`` for a local model; ``<run>/eval-checkpoint-N`` for a checkpoint of a run that is
still training, which is read from a snapshot since its rotation may delete it) and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time

import torch

logger = logging.getLogger("mvld_hf.evaluate")
#: the verified benchmark presets (mvld_hf.evaluation.presets.PRESETS; named here so --help needs no datasets import)
PRESET_NAMES = ("xm3600", "xflickrco", "multi30k", "cvqa")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="mvld_hf student checkpoint (folder or Hub id)")
    p.add_argument("--teacher", default=None, help="teacher id/path (default: the one in the student's config)")
    p.add_argument("--teacher-revision", default=None)
    p.add_argument("--benchmark", default="offline",
                   help="'offline' (the procedural world's held-out split and VQA) or a preset: "
                        f"{', '.join(PRESET_NAMES)} (their Hub schemas and sources: mvld_hf.evaluation.presets; "
                        "docs/benchmarks.md in the repository); ignored when --dataset is given")
    p.add_argument("--dataset", default=None, help="any datasets dataset (Hub id or saved folder) for retrieval")
    p.add_argument("--dataset-config", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--image-column", default="image")
    p.add_argument("--caption-column", default="caption")
    p.add_argument("--language-column", default="language")
    p.add_argument("--image-id-column", default="image_id")
    p.add_argument("--english-column", default="english",
                   help="column with each caption's English original (translation metrics)")
    p.add_argument("--translation", action="store_true",
                   help="also report translation retrieval against the teacher (automatic for a text-only teacher)")
    p.add_argument("--languages", nargs="*", default=None, help="restrict to these languages")
    p.add_argument("--no-vqa", action="store_true", help="skip the VQA evaluation of the offline benchmark")
    p.add_argument("--no-purity", action="store_true", help="skip clustering purity")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-length", type=int, default=None,
                   help="text truncation in tokens (default: the longest the student can embed)")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    return p.parse_args(argv)


def load_retrieval_data(args):
    """(retrieval dataset, vqa dataset or None, column kwargs for MultilingualEvaluator)."""
    from mvld_hf.data_files import check_data_file, normalise_language, normalise_language_column

    columns = dict(image_column=args.image_column, caption_column=args.caption_column,
                   language_column=args.language_column, image_id_column=args.image_id_column)
    if args.dataset:
        import datasets

        local_format = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
        extension = os.path.splitext(args.dataset)[1].lower()
        if os.path.isdir(args.dataset):
            data = datasets.load_from_disk(args.dataset)
            data = data[args.split] if isinstance(data, datasets.DatasetDict) else data
        elif os.path.isfile(args.dataset) and extension in local_format:
            check_data_file(args.dataset, [args.caption_column, args.english_column], args.language_column)
            data = datasets.load_dataset(local_format[extension], data_files=args.dataset, split="train")
        else:
            data = datasets.load_dataset(args.dataset, args.dataset_config, split=args.split)
        if args.languages:  # compared with the data's codes, made canonical
            args.languages = [normalise_language(code) or code for code in args.languages]
        return normalise_language_column(data, args.language_column, f"--dataset {args.dataset}"), None, columns
    if args.benchmark == "offline":
        from mvld_hf.synthetic import build_vqa, build_world

        return build_world()["test"], None if args.no_vqa else build_vqa(), columns
    from mvld_hf.evaluation.presets import get_preset, load_benchmark

    preset = get_preset(args.benchmark)  # unknown or unverified names raise with the list of known ones
    data = load_benchmark(args.benchmark, languages=args.languages)
    if preset.kind == "vqa":
        return None, data, preset.evaluator_kwargs()
    return data, None, preset.evaluator_kwargs()


def _labels(args, teacher_name: str) -> tuple[str, str, str]:
    """(model, teacher, benchmark) as plot titles name them: no long local paths."""
    from mvld_hf.run_record import is_hub_id

    model = os.path.basename(os.path.abspath(args.model)) if os.path.isdir(args.model) else args.model
    teacher = teacher_name if is_hub_id(teacher_name) else "its teacher"
    if args.dataset:
        benchmark = os.path.basename(os.path.abspath(args.dataset)) if os.path.isdir(args.dataset) else args.dataset
        benchmark += f" ({args.split})"
    elif args.benchmark == "offline":
        benchmark = "mvld_hf offline world, held-out scenes"
    else:
        benchmark = args.benchmark
    return model, teacher, benchmark


def _chance(vqa_data, options_column: str = "options") -> float | None:
    """Chance accuracy of multiple-choice VQA: the mean of 1 / number of options over the questions."""
    try:
        counts = [len(options) for options in vqa_data[options_column]]
    except (KeyError, TypeError, ValueError):
        return None
    return sum(1 / n for n in counts if n) / len(counts) if counts else None


def results_folder(args) -> str:
    """``--output-dir``, by default ``<model>/eval`` for a local model; for a checkpoint of a run that is training
    (:func:`~mvld_hf.checkpoint_guard.live_run_of`), whose rotation may delete it, ``<run>/eval-checkpoint-N``
    beside it (said in a log line); an ``--output-dir`` inside such a checkpoint is refused."""
    from mvld_hf.checkpoint_guard import live_run_of
    from mvld_hf.run_lock import describe

    live = live_run_of(args.model)
    if live is None:
        return args.output_dir or (os.path.join(args.model, "eval") if os.path.isdir(args.model) else "eval")
    run_dir, holder = live
    checkpoint = os.path.abspath(args.model)
    if args.output_dir and os.path.abspath(args.output_dir).startswith(checkpoint + os.sep):
        raise SystemExit(f"error: --output-dir {args.output_dir} is inside {args.model}, a checkpoint of a run that "
                         f"is training ({describe(holder)}): its rotation may delete it with the results. Pass "
                         "another --output-dir")
    output_dir = args.output_dir or os.path.join(run_dir, f"eval-{os.path.basename(checkpoint)}")
    logger.warning("%s belongs to a run that is training (%s): it is read from a snapshot (rotation may delete it) "
                   "and the results go to %s, outside the checkpoint", args.model, describe(holder), output_dir)
    return output_dir


@contextlib.contextmanager
def readable_student(model: str):
    """The folder to load ``model`` from: itself, or a snapshot of it while a live run owns it
    (:func:`~mvld_hf.checkpoint_guard.snapshot_live_checkpoint`), deleted once loaded; a checkpoint rotated away
    or still being written ends the command in one line."""
    from mvld_hf.checkpoint_guard import live_run_of, snapshot_live_checkpoint
    from mvld_hf.checkpointing import IncompleteCheckpointError

    if live_run_of(model) is None:
        yield model
        return
    try:
        snapshot = snapshot_live_checkpoint(model)
    except IncompleteCheckpointError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        yield snapshot
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from transformers import AutoTokenizer

    from mvld_hf import load_student, load_teacher
    from mvld_hf.evaluation import MultilingualEvaluator, evaluate_vqa
    from mvld_hf.evaluation.report import format_report, plot_per_language, save_json
    from mvld_hf.student_loading import text_length_limit

    started = time.perf_counter()
    output_dir = results_folder(args)
    logger.info("loading the student %s", args.model)
    with readable_student(args.model) as folder:
        student = load_student(folder).to(args.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = text_length_limit(student, tokenizer, args.max_length)
    teacher_name = args.teacher or student.config.teacher_name_or_path
    if not teacher_name:
        raise SystemExit(f"{args.model} records no teacher: pass --teacher")
    logger.info("loading the teacher %s", teacher_name)
    teacher = load_teacher(teacher_name, revision=args.teacher_revision or student.config.teacher_revision,
                           device=args.device)
    logger.info("loading the benchmark (%s)", args.dataset or args.benchmark)
    retrieval_data, vqa_data, columns = load_retrieval_data(args)
    text_only = not teacher.supports_images
    translation_data = retrieval_data if (text_only or args.translation) else None
    if text_only:
        retrieval_data = vqa_data = None  # image metrics need the teacher's image tower
        if translation_data is None:
            raise SystemExit(f"teacher {teacher_name!r} is text-only: pass --dataset with caption, "
                             f"{args.english_column!r} and language columns for translation retrieval")

    encoders = {
        "teacher": lambda texts: teacher.encode_text(texts, batch_size=args.batch_size).cpu(),
        "student": lambda texts: student.encode(texts, tokenizer, batch_size=args.batch_size,
                                                max_length=max_length).cpu(),
    }
    encode_image = lambda images: teacher.encode_image(images, batch_size=args.batch_size).cpu()  # noqa: E731
    results = {name: {} for name in encoders}
    if retrieval_data is not None:
        evaluator = MultilingualEvaluator(retrieval_data, languages=args.languages, batch_size=args.batch_size,
                                          compute_purity=not args.no_purity, show_progress_bar=True, **columns)
        logger.info("retrieval: %d captions in %d languages against %d images%s", len(evaluator.captions),
                    len(evaluator.languages), len(evaluator.image_rows),
                    "" if args.no_purity else ", then clustering purity")
        images = evaluator.encode_images(encode_image)  # one gallery, shared by teacher and student
        for name, encode_text in encoders.items():
            logger.info("retrieval%s of the %s", "" if args.no_purity else " and purity", name)
            results[name].update(evaluator(encode_text, image_embeddings=images))
    if translation_data is not None:
        from mvld_hf.evaluation.collapse import collapsed_from_spread
        from mvld_hf.evaluation.translation import TranslationEvaluator

        translation = TranslationEvaluator(translation_data, caption_column=args.caption_column,
                                           english_column=args.english_column,
                                           language_column=args.language_column, languages=args.languages,
                                           batch_size=args.batch_size)
        translation.encode_teacher(encoders["teacher"])
        for name, encode_text in encoders.items():
            results[name]["translation"] = translation.per_language(translation(encode_text))
            results[name]["collapsed"] = sorted(set(results[name].get("collapsed", []))  # marked in every table
                                                | set(collapsed_from_spread(results[name]["translation"])))
    if vqa_data is not None:
        vqa_columns = columns if retrieval_data is None else {"image_id_column": "image_id"}
        for name, encode_text in encoders.items():
            logger.info("VQA of the %s: %d questions", name, len(vqa_data))
            results[name]["vqa"] = evaluate_vqa(encode_text, encode_image, vqa_data, languages=args.languages,
                                                batch_size=args.batch_size, show_progress_bar=True, **vqa_columns)

    os.makedirs(output_dir, exist_ok=True)
    report = format_report(results)
    save_json({**results, "meta": {"model": args.model, "teacher": teacher_name, "benchmark": args.dataset
                                   or args.benchmark, "languages": args.languages, "max_length": max_length}},
              os.path.join(output_dir, "eval.json"))
    with open(os.path.join(output_dir, "eval.md"), "w", encoding="utf-8") as f:
        f.write(f"# {args.model} vs teacher {teacher_name}\n\n{report}")
    model_label, teacher_label, benchmark = _labels(args, teacher_name)
    who = f"{model_label} (student) vs {teacher_label} (teacher)"
    plots = []
    if retrieval_data is not None:
        plots.append(plot_per_language(
            results, metric="t2i_R@1", section="retrieval", path=os.path.join(output_dir, "retrieval_t2i_R@1.png"),
            title=f"Text-to-image retrieval R@1 per caption language\n{who}, {benchmark}",
            ylabel="text-to-image R@1 (%)", xlabel="caption language"))
        if not args.no_purity:
            plots.append(plot_per_language(
                results, metric="purity", section="purity", path=os.path.join(output_dir, "purity.png"),
                title=f"k-means clustering purity per caption language (mixed: all languages together)\n{who}, "
                      f"{benchmark}", ylabel="purity (%)", xlabel="caption language"))
    if translation_data is not None:
        plots.append(plot_per_language(
            results, metric="s2t_acc", section="translation", path=os.path.join(output_dir, "translation_s2t_acc.png"),
            title=f"Translation retrieval accuracy per caption language (caption -> teacher's English)\n{who}, "
                  f"{benchmark}", ylabel="translation retrieval accuracy (%)", xlabel="caption language"))
    if vqa_data is not None:
        chance = _chance(vqa_data, columns.get("options_column", "options"))
        plots.append(plot_per_language(
            results, metric="accuracy", section="vqa", path=os.path.join(output_dir, "vqa_accuracy.png"),
            title=f"VQA accuracy per question language (multiple choice)\n{who}, {benchmark}",
            ylabel="VQA accuracy (%)", xlabel="question language", chance=chance))
    print(report)
    print(f"wrote {output_dir}/eval.json, eval.md and {len(plots)} plot(s)")
    logger.info("done in %.0f s", time.perf_counter() - started)
    return results


def console_main(argv: list[str] | None = None) -> int:
    """The ``mvld-evaluate`` console script; exit status 0 on success. An error ends it with one line, ``error:
    <cause>`` (a folder that is no student, a missing path, a file: :class:`~mvld_hf.NotAStudentError`'s message),
    instead of a traceback; ``--debug`` shows the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return 0 if main(argv) is not None else 1
    except Exception as err:
        if debug:
            raise
        from mvld_hf.data_files import DataFileError
        from mvld_hf.student_loading import NotAStudentError

        cause = " ".join(str(err).split()) or "no message"
        if not isinstance(err, (NotAStudentError, OSError, DataFileError)):
            cause = f"{type(err).__name__}: {cause}"
        raise SystemExit(f"error: {cause}\n(run with --debug for the traceback)") from None


if __name__ == "__main__":
    sys.exit(console_main())
