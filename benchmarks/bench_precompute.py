"""Teacher-embedding precomputation: throughput (captions/s, images/s) by batch size, and the cache on disk.

Measured in one process, repetitions interleaved across batch sizes:

1. ``teacher.encode_text`` / ``teacher.encode_image`` on lists (the teacher alone: the limit of step 2);
2. ``precompute_teacher_embeddings`` end to end (``datasets.map`` + the teacher fingerprint), with text anchors
   and with image anchors, on rows where every English caption / image is shared by ``--rows-per-item`` rows
   (one English caption translated into several languages; several captions per image);
3. the cache: ``save_to_disk`` of the precomputed columns, bytes per row for the column type
   ``precompute_teacher_embeddings`` writes (a variable-length float32 list) against a fixed-length float32
   list and a fixed-length float16 list (``cast_column``), with the round-trip error of float16.

    python benchmarks/bench_precompute.py                       # small CLIP, ~1.5 min on 2 CPU cores
    python benchmarks/bench_precompute.py --size paper          # CLIP ViT-L/14 (random weights), ~4 min
    python benchmarks/bench_precompute.py --size paper --device cuda --dtype bfloat16 \\
        --captions 8192 --images 1024 --batch-sizes 32,128,512 --rows-per-item 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_training import build_datasets, build_teacher, teacher_clip_config  # noqa: E402

DEFAULTS = {
    "small": dict(captions=2048, images=256, batch_sizes="1,16,64,256", image_batch_sizes="1,16,64",
                  repeats=3, cache_rows=20000),
    "paper": dict(captions=64, images=4, batch_sizes="1,8,32", image_batch_sizes="1,4",
                  repeats=1, cache_rows=20000),
}


def precompute_images_once(dataset, teacher, image_column="image", output_column="teacher_image_embeds",
                           batch_size=256, encode_batch_size=64):
    """The change proposed for ``precompute_teacher_embeddings(anchor="image")``: embed every distinct image of a
    map batch once (key: the path, else the SHA-1 of the encoded bytes; read undecoded), as it already does for
    repeated English captions, and copy the embedding to the rows that share it."""
    import hashlib
    import io

    import datasets
    from PIL import Image

    source = dataset.cast_column(image_column, datasets.Image(decode=False))

    def embed(batch):
        values = batch[image_column]
        keys = [v.get("path") or hashlib.sha1(v["bytes"]).hexdigest() for v in values]
        first = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        images = [Image.open(io.BytesIO(values[i]["bytes"])) if values[i].get("bytes")
                  else Image.open(values[i]["path"])
                  for i in first.values()]
        emb = teacher.encode_image(images, batch_size=encode_batch_size).cpu().numpy()
        pos = {key: j for j, key in enumerate(first)}
        return {output_column: emb[[pos[k] for k in keys]]}

    out = source.map(embed, batched=True, batch_size=batch_size)
    return out.cast_column(image_column, datasets.Image())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def arrow_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
               if f.endswith(".arrow"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=DEFAULTS, default="small")
    p.add_argument("--captions", type=int, default=None, help="captions per timed encode_text run")
    p.add_argument("--images", type=int, default=None, help="images per timed encode_image run")
    p.add_argument("--batch-sizes", default=None, help="teacher batch sizes for text (comma separated)")
    p.add_argument("--image-batch-sizes", default=None, help="teacher batch sizes for images")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (median reported)")
    p.add_argument("--rows-per-item", type=int, default=4,
                   help="end-to-end runs: rows sharing one English caption and one image")
    p.add_argument("--seq", type=int, default=32, help="tokens per English caption")
    p.add_argument("--cache-rows", type=int, default=None, help="rows of the on-disk cache measurement")
    p.add_argument("--no-e2e", action="store_true", help="skip the precompute_teacher_embeddings runs")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="teacher weights (CUDA); embeddings are returned as float32 either way")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    d = DEFAULTS[args.size]
    n_captions = args.captions or d["captions"]
    n_images = args.images if args.images is not None else d["images"]
    text_bs = [int(x) for x in (args.batch_sizes or d["batch_sizes"]).split(",")]
    image_bs = [int(x) for x in (args.image_batch_sizes or d["image_batch_sizes"]).split(",")]
    repeats = args.repeats or d["repeats"]
    cache_rows = args.cache_rows or d["cache_rows"]

    warnings.filterwarnings("ignore")
    import datasets
    import transformers

    from mvld_hf import precompute_teacher_embeddings
    from mvld_hf.precompute import _teacher_fingerprint

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    image_size = teacher_clip_config(args.size).vision_config.image_size

    t0 = time.perf_counter()
    n_rows = max(n_captions, n_images * args.rows_per_item)
    tokenizer, rows = build_datasets(n_rows, args.seq, 8000, image_size if n_images else None, args.seed)
    teacher = build_teacher(args.size, tokenizer, device, dtype, args.seed)
    english = list(dict.fromkeys(rows["english"]))  # unique English captions
    while len(english) < n_captions:
        english = english + english
    english = english[:n_captions]
    images = rows.select(range(0, n_rows, args.rows_per_item))["image"][:n_images] if n_images else []
    print(f"# set-up {time.perf_counter() - t0:.1f}s", flush=True)

    results = {"text": {}, "image": {}, "e2e": {}, "cache": {}}

    # ---------------------------------------------------------------- 1. the teacher alone, by batch size
    runs = {("text", bs): [] for bs in text_bs}
    runs.update({("image", bs): [] for bs in image_bs if images})
    for bs in text_bs:  # warm-up (first-call allocations) with one batch each
        teacher.encode_text(english[:bs], batch_size=bs)
    if images:
        teacher.encode_image(images[:1], batch_size=1)
    for _ in range(repeats):
        for (kind, bs), times in runs.items():
            sync(device)
            t = time.perf_counter()
            if kind == "text":
                teacher.encode_text(english, batch_size=bs)
            else:
                teacher.encode_image(images, batch_size=bs)
            sync(device)
            times.append(time.perf_counter() - t)
    for (kind, bs), times in runs.items():
        n = n_captions if kind == "text" else len(images)
        results[kind][bs] = n / statistics.median(times)

    # ---------------------------------------------------------------- 2. precompute_teacher_embeddings
    if not args.no_e2e:
        text_rows = rows.remove_columns(["image"]) if "image" in rows.column_names else rows
        text_rows = text_rows.select(range(n_captions))
        bs = max(text_bs)
        t = time.perf_counter()
        _teacher_fingerprint(teacher)
        results["e2e"]["fingerprint_s"] = time.perf_counter() - t
        for _ in range(repeats):
            # a fresh fingerprint each time so datasets never reuses an earlier result
            text_rows = text_rows.map(lambda b: b, batched=True)
            sync(device)
            t = time.perf_counter()
            out = precompute_teacher_embeddings(text_rows, teacher, anchor="text", batch_size=max(256, bs),
                                                encode_batch_size=bs)
            sync(device)
            results["e2e"].setdefault("text_s", []).append(time.perf_counter() - t)
        results["e2e"]["text_rows"] = len(text_rows)
        results["e2e"]["text_unique"] = len(set(text_rows["english"]))
        results["e2e"]["text_features"] = str(out.features["teacher_text_embeds"])
        if images:
            image_rows = rows.select(range(min(len(rows), len(images) * args.rows_per_item)))
            ibs = max(image_bs)
            t = time.perf_counter()
            precompute_teacher_embeddings(image_rows, teacher, anchor="image", batch_size=max(256, ibs),
                                          encode_batch_size=ibs)
            sync(device)
            results["e2e"]["image_s"] = time.perf_counter() - t
            results["e2e"]["image_rows"] = len(image_rows)
            results["e2e"]["image_unique"] = len(set(image_rows["image_id"]))
            # the proposed change, same rows and the same text work: text anchors first, then each image once
            image_rows = image_rows.map(lambda b: b, batched=True)  # fresh fingerprint
            t = time.perf_counter()
            with_text = precompute_teacher_embeddings(image_rows, teacher, anchor="text", batch_size=max(256, ibs),
                                                      encode_batch_size=ibs)
            precompute_images_once(with_text, teacher, batch_size=max(256, ibs), encode_batch_size=ibs)
            sync(device)
            results["e2e"]["image_once_s"] = time.perf_counter() - t

    # ---------------------------------------------------------------- 3. the cache on disk
    dim = teacher.dim
    rng = np.random.default_rng(args.seed)
    base = datasets.Dataset.from_dict({"i": list(range(cache_rows))})
    # the column exactly as precompute_teacher_embeddings writes it (map returning a float32 [n, dim] array)
    cache = base.map(lambda b: {"teacher_text_embeds": (rng.standard_normal((len(b["i"]), dim)) * 0.5 / dim ** 0.5)
                                .astype(np.float32)}, batched=True).remove_columns(["i"])
    variants = {
        "as written (List float32)": cache,
        "fixed-length float32": cache.cast_column("teacher_text_embeds",
                                                  datasets.List(datasets.Value("float32"), length=dim)),
        "fixed-length float16": cache.cast_column("teacher_text_embeds",
                                                  datasets.List(datasets.Value("float16"), length=dim)),
    }
    tmp = tempfile.mkdtemp(prefix="bench_precompute_")
    reference = np.asarray(cache.with_format("numpy")["teacher_text_embeds"], dtype=np.float32)
    for name, ds in variants.items():
        path = os.path.join(tmp, name.replace(" ", "_").replace("(", "").replace(")", ""))
        t = time.perf_counter()
        ds.save_to_disk(path)
        save_s = time.perf_counter() - t
        loaded = datasets.load_from_disk(path)
        back = np.asarray(loaded.with_format("numpy")["teacher_text_embeds"], dtype=np.float32)
        err = float(np.abs(back - reference).max() / np.abs(reference).max())
        cos = float(np.min(np.sum(back * reference, 1) / np.linalg.norm(back, axis=1)
                           / np.linalg.norm(reference, axis=1)))
        results["cache"][name] = dict(bytes_per_row=arrow_bytes(path) / cache_rows,
                                      dir_bytes_per_row=dir_bytes(path) / cache_rows,
                                      save_rows_per_s=cache_rows / save_s, max_rel_error=err, min_cosine=cos,
                                      feature=str(loaded.features["teacher_text_embeds"]))
    shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------------- report
    env = dict(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, datasets=datasets.__version__,
               device=str(device), device_name=(torch.cuda.get_device_name(device) if device.type == "cuda" else
                                                platform.processor() or platform.machine()),
               cpu_count=os.cpu_count(), threads=torch.get_num_threads(),
               load_avg=[round(x, 1) for x in os.getloadavg()])
    params = sum(p.numel() for p in teacher.model.parameters())
    print(f"\n# bench_precompute  {' '.join(sys.argv[1:]) or '(defaults)'}")
    print(f"# {env}")
    print(f"# teacher CLIP {args.size} ({params / 1e6:.1f}M params, dim {dim}, image {image_size}px), dtype "
          f"{str(dtype).replace('torch.', '')}, {n_captions} captions of {args.seq} tokens, {len(images)} images, "
          f"median of {repeats}")
    print("teacher alone (encode_text / encode_image):")
    top_t = max(results["text"].values())
    for bs, v in results["text"].items():
        print(f"  text  batch {bs:5d}: {v:9.1f} captions/s  ({v / top_t:5.2f} of the best)")
    if results["image"]:
        top_i = max(results["image"].values())
        for bs, v in results["image"].items():
            print(f"  image batch {bs:5d}: {v:9.2f} images/s    ({v / top_i:5.2f} of the best)")
    e = results["e2e"]
    if "text_s" in e:
        seconds = statistics.median(e["text_s"])
        rate, unique_rate = e["text_rows"] / seconds, e["text_unique"] / seconds
        best = max(results["text"].values())
        e["text_rows_per_s"], e["text_unique_per_s"] = rate, unique_rate
        print(f"precompute_teacher_embeddings(anchor='text', encode_batch_size={max(text_bs)}): {e['text_rows']} rows "
              f"with {e['text_unique']} unique English captions: {rate:.1f} rows/s = {rate / best:.2f} x the best "
              f"teacher-alone caption rate (duplicates are embedded once); {unique_rate / best:.2f} x per unique "
              f"caption (the rest: map, fingerprint, batch size); the teacher fingerprint alone "
              f"{e['fingerprint_s']:.2f}s per call; column {e['text_features']}")
    if "image_s" in e:
        rate = e["image_rows"] / e["image_s"]
        best = max(results["image"].values())
        e["image_rows_per_s"] = rate
        once = e["image_rows"] / e["image_once_s"]
        e["image_once_rows_per_s"] = once
        print(f"precompute_teacher_embeddings(anchor='image', encode_batch_size={max(image_bs)}): {e['image_rows']} "
              f"rows with {e['image_unique']} unique images: {rate:.2f} rows/s = {rate / best:.2f} x the best "
              f"teacher-alone image rate (every row's image is embedded, shared ones again; the text tower runs "
              f"too)")
        print(f"  proposed: each distinct image once (precompute_images_once): {once:.2f} rows/s = "
              f"x{once / rate:.2f} (at most x{e['image_rows'] / e['image_unique']:.0f} with "
              f"{e['image_rows'] // e['image_unique']} rows per image)")
    print(f"cache on disk (save_to_disk, {cache_rows} rows, dim {dim}; bytes per row of the .arrow data):")
    for name, c in results["cache"].items():
        print(f"  {name:28s} {c['bytes_per_row']:8.1f} B/row ({c['bytes_per_row'] / (4 * dim):.3f} x 4*dim)  "
              f"max rel err {c['max_rel_error']:.1e}  min cos {c['min_cosine']:.7f}  {c['feature']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(argv=sys.argv[1:], env=env, size=args.size, dim=dim, results=results), f, indent=1,
                      default=str)


if __name__ == "__main__":
    main()
