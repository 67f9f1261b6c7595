"""What vocabulary trimming costs per language and what it saves, on multilingual-e5-small (issue 32).

The student (``MultilingualTextTower`` on e5-small) is trimmed (:func:`mvld_hf.vocab_trim.trim_vocabulary`) to a
corpus of human text in the kept languages plus English: the installed packages' gettext catalogs (``pip
install django``; ``pip install --no-deps weblate wagtail django-allauth``), the msgids and their translations
outside a held-out set of English sources translated in every evaluated language. On the held-out sentences of
kept *and* dropped languages it measures, before and after trimming, the backbone's mean-pooled embedding
(cosine between the two), translation top-1 within e5's own space (a sentence retrieves its English source
among that language's held-out rows), the unknown-token share and tokens per sentence; and what trimming saves:
MiB on disk (``save_pretrained`` + tokenizer), load time and resident memory of a fresh process loading it.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_vocab_trim.py \
        --kept de,fr,es,zh_Hans --dropped ja,ru,ar,ko,pl,it --output docs/results/vocab_trim_e5_small.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_LOAD = r"""
import json, os, sys, time
import torch
from transformers import AutoTokenizer
from mvld_hf import MultilingualTextTower
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss()
start = time.perf_counter()
model = MultilingualTextTower.from_pretrained(sys.argv[1]).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
with torch.no_grad():
    model(**tok(["a short sentence"], return_tensors="pt"))
print(json.dumps({"load_seconds": time.perf_counter() - start, "rss_mib": rss(), "rss_delta_mib": rss() - before}))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student-dir", default="/work/cache/e5-small", help="BertModel folder of multilingual-e5-small")
    p.add_argument("--packages", default="django,weblate,wagtail,allauth")
    p.add_argument("--kept", default="de,fr,es,zh_Hans", help="languages of the trimming corpus (English too)")
    p.add_argument("--dropped", default="ja,ru,ar,ko,pl,it", help="languages evaluated but not in the corpus")
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--eval-rows", type=int, default=200, help="held-out sentences per language")
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--load-repeats", type=int, default=3, help="fresh processes per model for load time / RSS")
    p.add_argument("--output", default=None)
    return p.parse_args(argv)


def catalog_corpus(args, languages):
    """(train rows, test rows) of the packages' catalogs in ``languages`` (bench_real_models' reader)."""
    import bench_real_models as brm

    pairs = {}
    for lang in languages:
        texts = []
        for package in args.packages.split(","):
            for path in brm.catalog_files(package.strip(), lang):
                with open(path, encoding="utf-8") as f:
                    texts.append(f.read())
        if not texts:
            raise SystemExit(f"no catalogs for {lang!r} in {args.packages}")
        pairs[lang] = brm.catalog_pairs(texts, args.min_words)
    return brm.build_parallel_corpus(pairs, args.test_fraction, seed=0)


def embed(model, tokenizer, texts, max_length, batch_size=64):
    import torch

    out, unknown, tokens = [], 0, 0
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            mask = batch["attention_mask"].bool()
            unknown += int(((batch["input_ids"] == tokenizer.unk_token_id) & mask).sum())
            tokens += int(mask.sum()) - 2 * len(batch["input_ids"])  # without <s> and </s>
            out.append(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooled_output)
    return torch.cat(out), unknown / max(tokens, 1), tokens / len(texts)


def top1(queries, keys):
    import torch.nn.functional as F

    sim = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T
    return float((sim.argmax(1) == __import__("torch").arange(len(sim))).double().mean())


def load_stats(path: str, repeats: int) -> dict:
    runs = []
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _LOAD, path], capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: round(min(r[k] for r in runs), 3) for k in runs[0]}


def folder_mib(path: str) -> dict:
    files = {f: os.path.getsize(os.path.join(path, f)) / 2**20 for f in os.listdir(path)}
    return {"total": round(sum(files.values()), 1), **{f: round(v, 1) for f, v in sorted(files.items())}}


def main(argv=None):
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    from transformers import AutoTokenizer

    from mvld_hf import MultilingualTextTower
    from mvld_hf.vocab_trim import OutOfVocabularyWarning, trim_vocabulary

    kept, dropped = [x for x in args.kept.split(",") if x], [x for x in args.dropped.split(",") if x]
    train, test = catalog_corpus(args, kept + dropped)
    corpus = sorted({r["english"] for r in train}) + [r["caption"] for r in train if r["language"] in kept]
    tokenizer = AutoTokenizer.from_pretrained(args.student_dir)
    torch.manual_seed(0)
    student = MultilingualTextTower.from_backbone(args.student_dir, projection_dim=384).eval()
    start = time.perf_counter()
    small, small_tok, report = trim_vocabulary(student, tokenizer, corpus, ["en", *kept], on_unknown="ignore")
    report["trim_seconds"] = round(time.perf_counter() - start, 1)
    small.eval()
    print("trim:", json.dumps(report), flush=True)

    rows = {}
    for lang in kept + dropped:
        lang_rows = [r for r in test if r["language"] == lang][:args.eval_rows]
        captions, english = [r["caption"] for r in lang_rows], [r["english"] for r in lang_rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfVocabularyWarning)
            full_c, full_unk, full_len = embed(student, tokenizer, captions, args.max_length)
            full_e, _, _ = embed(student, tokenizer, english, args.max_length)
            trim_c, trim_unk, trim_len = embed(small, small_tok, captions, args.max_length)
            trim_e, _, _ = embed(small, small_tok, english, args.max_length)
        rows[lang] = {
            "kept": lang in kept, "sentences": len(lang_rows),
            "cosine_full_vs_trimmed": round(float(torch.nn.functional.cosine_similarity(full_c, trim_c).mean()), 4),
            "identical_share": round(float((full_c == trim_c).all(1).double().mean()), 4),
            "top1_full": round(top1(full_c, full_e), 4), "top1_trimmed": round(top1(trim_c, trim_e), 4),
            "unknown_rate_full": round(full_unk, 4), "unknown_rate_trimmed": round(trim_unk, 4),
            "tokens_full": round(full_len, 2), "tokens_trimmed": round(trim_len, 2),
            "english_cosine_full_vs_trimmed": round(float(torch.nn.functional.cosine_similarity(full_e, trim_e)
                                                          .mean()), 4)}
        print(lang, json.dumps(rows[lang]), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        sizes, loads = {}, {}
        for name, model, tok in (("full", student, tokenizer), ("trimmed", small, small_tok)):
            path = os.path.join(tmp, name)
            model.save_pretrained(path)
            tok.save_pretrained(path)
            sizes[name] = folder_mib(path)
            loads[name] = load_stats(path, args.load_repeats)
            print(name, json.dumps(sizes[name]), json.dumps(loads[name]), flush=True)
    results = {"meta": {"command": " ".join(["benchmarks/bench_vocab_trim.py", *(argv or sys.argv[1:])]),
                        "student": args.student_dir, "packages": args.packages, "corpus_texts": len(corpus),
                        "load_average": os.getloadavg()},
               "trim": report, "languages": rows, "disk_mib": sizes, "load": loads}
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
