"""Teacher image throughput: decoding + the image processor in DataLoader workers (mvld_hf/image_pipeline.py)
against one process, end to end through the evaluator's gallery path, and the teacher's forward alone.

Images are JPEGs generated here (gradients + noise + shapes, ``--image-size`` pixels) in a ``datasets.Dataset``
with an ``Image()`` column, read as the evaluators and ``precompute_teacher_embeddings`` read them. Per
``--workers`` setting (0 = all in this process), repetitions interleaved, median reported:

1. ``prepare``: read + decode + image processor only (no model): the CPU side alone;
2. ``end_to_end``: ``MultilingualEvaluator.encode_images(teacher)``: the CPU side in workers, the teacher's
   forward here;
3. ``precompute``: ``precompute_teacher_embeddings(anchor="image")`` (text + image anchors of every row);
4. ``forward``: ``teacher.encode_prepared_images`` on batches prepared beforehand (the device's limit).

The image processor is the torchvision-backed ``CLIPImageProcessor`` where torchvision imports, else
``CLIPImageProcessorPil`` (the JSON says which).

    python benchmarks/bench_images.py                    # CPU, tiny vision tower, 0 vs 2 workers, ~1 min
    python benchmarks/bench_images.py --device cuda --dtype bfloat16 --size paper --workers 0,8 \\
        --images 2048 --batch-size 256 --repeats 2 --modes end_to_end,precompute,forward   # GPU, ViT-L/14, ~40 s
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import cpu_seconds, sync  # noqa: E402


def make_jpegs(n: int, width: int, height: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct photo-like JPEGs (smooth gradients, noise, a few shapes): decoding costs what a photo's does."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        base = (a * xx / width + b * yy / height + c) * 80 + 128
        pixels = np.stack([base + rng.uniform(-60, 60) for _ in range(3)], axis=-1)
        pixels += rng.normal(0, 12, pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            draw.ellipse([x0, y0, x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))],
                         fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def build_teacher(size: str, device, dtype):
    """A random CLIP: ``paper`` = ViT-L/14 shapes; ``small`` = a tiny 224-px vision tower (CPU: the processor,
    not the forward, is what is measured)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, PreTrainedTokenizerFast

    from mvld_hf.image_pipeline import torchvision_available
    from mvld_hf.teachers import DualEncoderTeacher

    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=4)
    if size == "paper":
        text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77, **ids)
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      patch_size=14, image_size=224)
        projection = 768
    else:
        text = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=77, **ids)
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                      patch_size=32, image_size=224)
        projection = 64
    torch.manual_seed(0)
    with torch.device(device):
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection))
    model = model.to(dtype=dtype)
    kwargs = dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    if torchvision_available():
        from transformers import CLIPImageProcessor

        processor = CLIPImageProcessor(**kwargs)
    else:
        processor = CLIPImageProcessorPil(**kwargs)
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "a": 3, "[EOS]": 4}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]")
    return DualEncoderTeacher(model, tokenizer, processor, name_or_path=f"random-clip-{size}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["small", "paper"], default="small")
    p.add_argument("--images", type=int, default=384)
    p.add_argument("--image-size", default="384x288", help="WIDTHxHEIGHT of the generated JPEGs")
    p.add_argument("--distinct", type=int, default=256, help="distinct JPEGs generated (repeated to --images)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", default="0,2", help="comma separated DataLoader worker counts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", default="prepare,end_to_end,precompute,forward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import datasets

    from mvld_hf.evaluation import MultilingualEvaluator
    from mvld_hf.image_pipeline import image_processor_backend, iter_prepared_batches
    from mvld_hf.precompute import precompute_teacher_embeddings

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    workers = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    width, height = (int(v) for v in args.image_size.lower().split("x"))

    load_before = os.getloadavg()
    started = time.perf_counter()
    pool = make_jpegs(min(args.distinct, args.images), width, height)
    jpegs = [pool[i % len(pool)] for i in range(args.images)]
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in jpegs], "caption": [f"a photo {i}" for i in range(args.images)],
         "english": ["a a a"] * args.images, "language": ["en"] * args.images, "image_id": list(range(args.images))},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                    "english": datasets.Value("string"), "language": datasets.Value("string"),
                                    "image_id": datasets.Value("int64")}))
    teacher = build_teacher(args.size, device, dtype)
    setup_s = time.perf_counter() - started
    evaluator = MultilingualEvaluator(data, batch_size=args.batch_size, compute_purity=False, show_progress_bar=False)
    n = args.images
    raw = data.cast_column("image", datasets.Image(decode=False))

    def get(start, stop):
        return [r for r in raw[start:stop]["image"]]

    def run_prepare(w):
        count = 0
        for batch in iter_prepared_batches(n, get, args.batch_size, teacher.prepare_images, w, device):
            count += batch["pixel_values"].shape[0]
        assert count == n

    def run_end_to_end(w):
        emb = evaluator.encode_images(teacher, num_workers=w)
        sync(device)
        assert emb.shape[0] == n

    def run_precompute(w):
        os.environ["MVLD_HF_DATA_WORKERS"] = str(w)
        try:
            out = precompute_teacher_embeddings(data, teacher, anchor="image", batch_size=args.batch_size,
                                                encode_batch_size=args.batch_size)
            sync(device)
            assert len(out) == n
        finally:
            del os.environ["MVLD_HF_DATA_WORKERS"]

    prepared = None

    def run_forward(_):
        nonlocal prepared
        if prepared is None:
            prepared = list(iter_prepared_batches(n, get, args.batch_size, teacher.prepare_images, 0))
            if device.type == "cuda":
                prepared = [{k: v.pin_memory() for k, v in b.items()} for b in prepared]
        for batch in prepared:
            teacher.encode_prepared_images(batch)
        sync(device)

    runners = {"prepare": run_prepare, "end_to_end": run_end_to_end, "precompute": run_precompute,
               "forward": run_forward}
    cases = [(m, w) for m in modes for w in (workers if m != "forward" else [0])]
    run_forward(0)  # builds the prepared batches; warms the model
    times = {case: [] for case in cases}
    cpu = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            start, start_cpu = time.perf_counter(), cpu_seconds()
            runners[case[0]](case[1])
            times[case].append(time.perf_counter() - start)
            cpu[case].append(cpu_seconds() - start_cpu)
    results = {f"{m}/workers={w}": {"images_per_s": round(n / statistics.median(ts), 1),
                                     "seconds": [round(t, 3) for t in ts],
                                     "cpu_ms_per_image": round(1000 * statistics.median(cpu[(m, w)]) / n, 2)}
               for (m, w), ts in times.items()}
    ratios = {}
    for mode in ("prepare", "end_to_end", "precompute"):
        base = results.get(f"{mode}/workers={workers[0]}")
        for w in workers[1:]:
            other = results.get(f"{mode}/workers={w}")
            if base and other:
                ratios[f"{mode}: workers={w} / workers={workers[0]}"] = round(
                    other["images_per_s"] / base["images_per_s"], 2)
        fwd = results.get("forward/workers=0")
        if fwd and mode != "prepare":
            for w in workers:
                other = results.get(f"{mode}/workers={w}")
                if other:
                    ratios[f"{mode} workers={w} / forward only"] = round(other["images_per_s"] / fwd["images_per_s"],
                                                                         2)
    report = {
        "benchmark": "bench_images", "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "dtype": args.dtype, "size": args.size, "images": n, "image_size": args.image_size,
        "batch_size": args.batch_size, "image_processor": type(teacher.image_processor).__name__,
        "backend": image_processor_backend(), "cores": os.cpu_count(), "load_avg_before": load_before,
        "torch": torch.__version__, "python": platform.python_version(), "setup_s": round(setup_s, 1),
        "results": results, "ratios": ratios,
    }
    report["load_avg_after"] = os.getloadavg()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
