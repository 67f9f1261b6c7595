#!/usr/bin/env python
"""What a photo app meets (issue 31): the immich bundle's text query latency and image throughput on one thread,
a FAISS index of 10k photos, and held-out retrieval through the immich-contract loader against the PyTorch export.

    OMP_NUM_THREADS=1 MVLD_HF_NUM_THREADS=1 python benchmarks/bench_apps.py \\
        --checkpoint outputs/distill-offline --output benchmarks/results/apps.json

``--checkpoint`` is the output of ``make demo`` (the offline demo student): it is exported once with formats
``pytorch,onnx,int8,immich`` into ``<checkpoint>/bench_export`` (or give ``--export`` for an existing export with
those formats). Measured, every figure on one thread:

* text query: one caption at a time through :class:`~mvld_hf.export_immich.ImmichBundle` (tokenize, pad to
  ``context_length``, int32, run), fp32 and int8 textual graphs: p50/p95 wall ms, and CPU ms per query;
* image embedding: the held-out PNG-decoded images one at a time (PIL resize/crop/normalise + the visual graph);
* index: FAISS ``IndexFlatIP`` (exact cosine on unit vectors) and ``IndexHNSWFlat`` over 10k **synthetic** unit
  vectors of the embedding's dimension (random, so only the timings mean anything): build (add), save + load,
  and top-10 query p50/p95;
* held-out text-to-image R@1 per language (the world's 15,600 captions in 13 languages against its 600 images):
  the PyTorch export (SentenceTransformer) vs the immich bundle (fp32 and int8 textual), images through each
  one's own preprocessing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
            "n": len(ms)}


def text_latency(bundle, texts: list[str]) -> dict:
    bundle.encode_text(texts[:3], batch_size=1)  # warm-up
    wall, cpu = [], time.process_time()
    for text in texts:
        start = time.perf_counter()
        bundle.encode_text([text], batch_size=1)
        wall.append(1000 * (time.perf_counter() - start))
    return {**_percentiles(wall), "cpu_ms_per_query": round(1000 * (time.process_time() - cpu) / len(texts), 3)}


def image_throughput(bundle, images: list) -> dict:
    bundle.encode_image(images[:2])
    start, cpu = time.perf_counter(), time.process_time()
    bundle.encode_image(images)
    wall = time.perf_counter() - start
    return {"images_per_s": round(len(images) / wall, 1), "images": len(images),
            "cpu_ms_per_image": round(1000 * (time.process_time() - cpu) / len(images), 3),
            "image_size": images[0].size}


def index_timings(dim: int, n: int = 10_000, queries: int = 200, work_dir: str = "/tmp") -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probes = vectors[rng.choice(n, queries, replace=False)] + 0.05 * rng.standard_normal((queries, dim)).astype(
        np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    out = {"vectors": n, "dim": dim, "synthetic": True}
    exact = None
    for name, make in (("flat_ip", lambda: faiss.IndexFlatIP(dim)),
                       ("hnsw32", lambda: faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT))):
        start = time.perf_counter()
        index = make()
        index.add(vectors)
        build = time.perf_counter() - start
        path = os.path.join(work_dir, f"bench_apps_{name}.faiss")
        start = time.perf_counter()
        faiss.write_index(index, path)
        index = faiss.read_index(path)
        io_s = time.perf_counter() - start
        os.remove(path)
        ms, found = [], []
        for q in probes:
            start = time.perf_counter()
            _, ids = index.search(q[None], 10)
            ms.append(1000 * (time.perf_counter() - start))
            found.append(ids[0])
        entry = {"build_s": round(build, 4), "save_load_s": round(io_s, 4), "query_top10": _percentiles(ms)}
        if exact is None:
            exact = found
        else:
            entry["recall_at_10_vs_flat"] = round(float(np.mean([len(set(a) & set(b)) / 10
                                                                for a, b in zip(found, exact)])), 4)
        out[name] = entry
    return out


def recall_at_1(texts_emb: np.ndarray, image_emb: np.ndarray, targets: np.ndarray) -> np.ndarray:
    t = texts_emb / np.linalg.norm(texts_emb, axis=1, keepdims=True)
    i = image_emb / np.linalg.norm(image_emb, axis=1, keepdims=True)
    return (np.argmax(t @ i.T, axis=1) == targets).astype(np.float64)


def heldout_r1(export_dir: str, bundles: dict, threads: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from mvld_hf.synthetic import build_world

    held_out = build_world()["test"]
    ids = held_out["image_id"]
    order = {}
    images = []
    for row_id, image_id in enumerate(ids):
        if image_id not in order:
            order[image_id] = len(order)
            images.append(held_out[row_id]["image"].convert("RGB"))
    captions, languages = held_out["caption"], held_out["language"]
    targets = np.array([order[i] for i in ids])
    model = SentenceTransformer(export_dir, local_files_only=True, device="cpu")
    embeddings = {"pytorch": (model.encode(captions, batch_size=256), model.encode(images, batch_size=64))}
    for name, bundle in bundles.items():
        embeddings[name] = (bundle.encode_text(captions, batch_size=256), bundle.encode_image(images))
    out = {"captions": len(captions), "images": len(images), "per_language": {}, "mean": {}}
    langs = sorted(set(languages), key=languages.index)
    lang_arr = np.array(languages)
    for name, (text_emb, image_emb) in embeddings.items():
        hits = recall_at_1(text_emb, image_emb, targets)
        out["per_language"][name] = {lang: round(100 * float(hits[lang_arr == lang].mean()), 2) for lang in langs}
        out["mean"][name] = round(100 * float(hits.mean()), 2)
    pt = out["per_language"]["pytorch"]
    out["max_abs_gap_points"] = {name: round(max(abs(out["per_language"][name][lang] - pt[lang]) for lang in langs), 2)
                                 for name in bundles}
    text_cos = {name: float(np.min(_cos(embeddings[name][0], embeddings["pytorch"][0]))) for name in bundles}
    out["text_cosine_min_vs_pytorch"] = {k: round(v, 6) for k, v in text_cos.items()}
    out["image_cosine_min_vs_pytorch"] = round(float(np.min(_cos(embeddings["fp32"][1], embeddings["pytorch"][1]))), 6)
    return out, images, captions


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a training output (make demo): exported once into <checkpoint>/bench_export")
    p.add_argument("--export", help="an existing export with formats pytorch,onnx,int8,immich")
    p.add_argument("--queries", type=int, default=300, help="captions timed one at a time")
    p.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "apps.json"))
    args = p.parse_args(argv)
    threads = 1
    import torch

    torch.set_num_threads(threads)
    from mvld_hf.export_immich import ImmichBundle, export_immich_bundle

    export_dir = args.export or os.path.join(args.checkpoint, "bench_export")
    if not args.export and not os.path.isfile(os.path.join(export_dir, "immich", "config.json")):
        from mvld_hf.export import export_sentence_transformer

        export_sentence_transformer(args.checkpoint, output_dir=export_dir, formats="pytorch,onnx,int8,immich",
                                    overwrite=True)
    int8_dir = os.path.join(export_dir, "immich_int8")
    int8_report = export_immich_bundle(export_dir, int8_dir, int8=True, threads=threads)
    bundles = {"fp32": ImmichBundle(os.path.join(export_dir, "immich"), threads=threads),
               "int8": ImmichBundle(int8_dir, threads=threads)}
    started = time.time()
    r1, images, captions = heldout_r1(export_dir, bundles, threads)
    rng = np.random.default_rng(0)
    queries = [captions[i] for i in rng.choice(len(captions), args.queries, replace=False)]
    config = json.load(open(os.path.join(export_dir, "immich", "config.json"), encoding="utf-8"))
    result = {
        "export": os.path.relpath(export_dir, ROOT) if export_dir.startswith(ROOT) else export_dir,
        "command": "OMP_NUM_THREADS=1 MVLD_HF_NUM_THREADS=1 python " + " ".join(["benchmarks/bench_apps.py"] +
                                                                                 (argv or sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start",
        "embed_dim": config["embed_dim"], "context_length": config["text_cfg"]["context_length"],
        "bundle_bytes": {name: os.path.getsize(os.path.join(path, "textual", "model.onnx"))
                         for name, path in (("fp32", os.path.join(export_dir, "immich")), ("int8", int8_dir))},
        "int8_bundle_check": int8_report,
        "text_query": {name: text_latency(bundle, queries) for name, bundle in bundles.items()},
        "image_embedding": image_throughput(bundles["fp32"], images),
        "index_10k": index_timings(config["embed_dim"]),
        "heldout_r1": r1,
        "seconds": round(time.time() - started, 1),
        "load_average_end": round(os.getloadavg()[0], 1),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    print(json.dumps({k: result[k] for k in ("text_query", "image_embedding", "index_10k")}, indent=1))
    print("R@1 mean:", r1["mean"], "max per-language gap:", r1["max_abs_gap_points"])


if __name__ == "__main__":
    main()
