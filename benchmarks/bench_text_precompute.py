"""Teacher text embeddings through ``precompute_teacher_embeddings`` against the teacher's forward alone.

English captions of 6-20 words (M-CLIP's range, as ``bench_training.make_captions`` draws them), each repeated
``--rows-per-item`` times (one caption translated into several languages), in an in-memory ``datasets.Dataset``.
Per case, repetitions interleaved, median reported (captions/s = dataset rows per second):

1. ``forward``: ``teacher.encode_tokenized`` on the distinct captions tokenized beforehand (the device's limit);
2. ``encode_text``: tokenizing and the forward in this process, ``--encode-batch-size`` at a time;
3. ``precompute/workers=W``: ``precompute_teacher_embeddings`` end to end with ``MVLD_HF_DATA_WORKERS=W``
   (``0``: tokenized in this process; ``W > 0``: in W DataLoader workers while this process runs the forward).

The ratio ``precompute / forward`` is the figure of issue 22 (0.36x measured on an H200 before the workers). On a
CPU the teacher's text tower is chosen small (``--size small``) so that the forward costs about what tokenizing
does, as the bf16 ViT-L/14 text tower's does on an H200 (13.2 ms against 30.6 ms per 256 captions): the printed
``tokenize_over_forward`` says how close the proxy is.

    python benchmarks/bench_text_precompute.py                               # CPU proxy, ~1 min
    python benchmarks/bench_text_precompute.py --device cuda --dtype bfloat16 --size paper --captions 32768 \\
        --workers 0,8 --encode-batch-size 256 --repeats 2     # GPU (CLIP ViT-L/14 text tower), ~45 s
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

from timing import cpu_seconds, sync  # noqa: E402


def build_text_teacher(size: str, tokenizer, device, dtype):
    from transformers import CLIPConfig, CLIPModel

    from mvld_hf.teachers import DualEncoderTeacher

    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=4)
    if size == "paper":  # openai/clip-vit-large-patch14's text tower
        text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77, **ids)
        projection = 768
    else:
        text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=77, **ids)
        projection = 32
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=16,
                  image_size=32)
    torch.manual_seed(0)
    with torch.device(device):
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection))
    return DualEncoderTeacher(model.to(dtype=dtype), tokenizer, None, name_or_path=f"random-clip-{size}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["small", "paper"], default="small")
    p.add_argument("--captions", type=int, default=8192, help="dataset rows")
    p.add_argument("--rows-per-item", type=int, default=1, help="rows sharing one English caption")
    p.add_argument("--batch-size", type=int, default=1024, help="precompute's map batch size")
    p.add_argument("--encode-batch-size", type=int, default=256)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import datasets
    from bench_training import build_tokenizer, make_captions

    from mvld_hf.precompute import precompute_teacher_embeddings

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    load_before = os.getloadavg()
    started = time.perf_counter()
    n_items = -(-args.captions // args.rows_per_item)
    english = [r["english"] for r in make_captions(n_items, 1, 16, n_words=(6, 20))][:n_items]
    rows = [e for e in english for _ in range(args.rows_per_item)][:args.captions]
    tokenizer = build_tokenizer(english[:4000], 8000)
    tokenizer.model_max_length = 77
    teacher = build_text_teacher(args.size, tokenizer, device, dtype)
    data = datasets.Dataset.from_dict({"english": rows, "caption": rows})
    setup_s = time.perf_counter() - started
    n, ebs = len(rows), args.encode_batch_size
    distinct = list(dict.fromkeys(rows))
    tokenize = teacher.text_tokenizer()
    tokenized = [tokenize(distinct[i:i + ebs]) for i in range(0, len(distinct), ebs)]
    if device.type == "cuda":
        tokenized = [{k: v.pin_memory() for k, v in t.items()} for t in tokenized]
    workers = [int(w) for w in args.workers.split(",")]

    def run_forward():
        for tokens in tokenized:
            teacher.encode_tokenized(tokens)
        sync(device)

    def run_tokenize():
        for i in range(0, len(distinct), ebs):
            tokenize(distinct[i:i + ebs])

    def run_encode_text():
        teacher.encode_text(distinct, batch_size=ebs)
        sync(device)

    def run_precompute(w):
        os.environ["MVLD_HF_DATA_WORKERS"] = str(w)
        try:
            out = precompute_teacher_embeddings(data, teacher, batch_size=args.batch_size, encode_batch_size=ebs)
            sync(device)
            assert len(out) == n
        finally:
            del os.environ["MVLD_HF_DATA_WORKERS"]

    cases = {"forward": run_forward, "tokenize": run_tokenize, "encode_text": run_encode_text}
    cases.update({f"precompute/workers={w}": (lambda w=w: run_precompute(w)) for w in workers})
    run_forward()
    times = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            start, start_cpu = time.perf_counter(), cpu_seconds()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
    # the forward-only and encode_text cases see each distinct caption once; precompute reads every row
    per_s = {name: round((n if name.startswith("precompute") else len(distinct)) / statistics.median(ts), 1)
             for name, ts in times.items()}
    forward_s = statistics.median(times["forward"])
    report = {
        "benchmark": "bench_text_precompute", "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "dtype": args.dtype, "size": args.size, "rows": n, "distinct_captions": len(distinct),
        "batch_size": args.batch_size, "encode_batch_size": ebs, "cores": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(), "setup_s": round(setup_s, 1),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "tokenize_over_forward": round(statistics.median(times["tokenize"]) / forward_s, 2),
        "captions_per_s": per_s,
        "cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        # rows/s of the end-to-end path over distinct captions/s of the forward (as issue 22 counts them,
        # with one row per distinct caption by default)
        "ratios": {f"{name} / forward": round(per_s[name] / (len(distinct) / forward_s), 2)
                   for name in per_s if name != "forward" and name != "tokenize"},
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
