"""Throughput and memory of chunked retrieval (mvld_hf.evaluation.retrieval_metrics) on random data.

Both directions (text->image and image->text) are ranked, so the work is 2 x (2 * n_text * n_image * dim)
FLOPs. The reference is a plain matrix product of one ``chunk_size x n_image`` block timed in the same
run: the ratio says how much of the matmul throughput survives the ranking logic.

    python benchmarks/bench_retrieval.py                      # 200k x 200k, d=512 (GPU-sized)
    python benchmarks/bench_retrieval.py --n 24000 --full-reference  # ~2 min on 2 busy CPU cores
    python benchmarks/bench_retrieval.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import torch

from mvld_hf.evaluation import retrieval_metrics


def rss_bytes() -> int:
    """Current resident set size (Linux), 0 where /proc is unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gib(x: float) -> str:
    return f"{x / 2**30:.2f} GiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="number of captions (and images, by default)")
    p.add_argument("--n-images", type=int, default=None, help="gallery size (default: --n)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="storage dtype of the embeddings (scores are always computed in float32)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of the reference block matmul")
    p.add_argument("--full-reference", action="store_true",
                   help="also time plain matmuls over all chunks of both directions (same FLOPs as the "
                        "ranking, no ranking logic): a fairer reference on a machine with fluctuating load")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtype = getattr(torch, args.dtype)
    n_text, n_image, d = args.n, args.n_images or args.n, args.dim
    g = torch.Generator(device=device).manual_seed(args.seed)

    # data: every image has n_text / n_image captions on average; captions = image + noise
    images = torch.randn(n_image, d, device=device, generator=g)
    t2i = torch.randint(0, n_image, (n_text,), device=device, generator=g)
    t2i[: min(n_text, n_image)] = torch.arange(min(n_text, n_image), device=device)
    texts = images[t2i] + 4.0 * torch.randn(n_text, d, device=device, generator=g)
    images, texts = images.to(dtype), texts.to(dtype)
    sync(device)

    if device.type == "cuda":
        # warm-up of the kernels used by the ranking step on a small problem
        retrieval_metrics(texts[:1000], images[:1000], torch.arange(1000, device=device) % 1000,
                          chunk_size=256, show_progress_bar=False)
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base_mem = torch.cuda.memory_allocated(device)
    rss_before = rss_bytes()

    t0 = time.perf_counter()
    metrics = retrieval_metrics(texts, images, t2i, chunk_size=args.chunk_size,
                                show_progress_bar=False if args.no_progress else None)
    sync(device)
    elapsed = time.perf_counter() - t0

    peak_rss = peak_rss_bytes()
    peak_cuda = torch.cuda.max_memory_allocated(device) - base_mem if device.type == "cuda" else 0

    # reference, timed after the ranking so that its block does not count in the peak:
    # one chunk_size x n_image float32 block into a preallocated output
    rows = min(args.chunk_size, n_text)
    q = torch.nn.functional.normalize(texts[:rows].float(), dim=-1)
    gal = torch.nn.functional.normalize(images.float(), dim=-1)
    out = torch.empty(rows, n_image, device=device)
    torch.mm(q, gal.T, out=out)  # warm-up (also faults the pages in)
    sync(device)
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        torch.mm(q, gal.T, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    mm_gflops = 2 * rows * n_image * d / best / 1e9
    full_time = None
    if args.full_reference:
        tq = torch.nn.functional.normalize(texts.float(), dim=-1)
        t0 = time.perf_counter()
        for query, gallery in ((tq, gal), (gal, tq)):
            buf = torch.empty(min(args.chunk_size, query.shape[0]), gallery.shape[0], device=device)
            for start in range(0, query.shape[0], args.chunk_size):
                block = query[start:start + args.chunk_size]
                torch.mm(block, gallery.T, out=buf[: block.shape[0]])
            del buf
        sync(device)
        full_time = time.perf_counter() - t0
    flops = 2 * (2 * n_text * n_image * d)
    achieved = flops / elapsed / 1e9
    n_chunks = -(-n_text // args.chunk_size) + -(-n_image // args.chunk_size)
    block_bytes = min(args.chunk_size, max(n_text, n_image)) * max(n_text, n_image) * 4

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        platform.processor() or platform.machine()
    print(f"device           : {device} ({device_name}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"problem          : {n_text} texts x {n_image} images, dim {d}, storage {args.dtype}, "
          f"chunk {args.chunk_size} ({n_chunks} chunks over both directions)")
    print(f"reference matmul : {rows} x {n_image} x {d} block in {best * 1e3:.1f} ms = {mm_gflops:.1f} GFLOP/s")
    print(f"retrieval        : {elapsed:.2f} s for both directions = {achieved:.1f} GFLOP/s "
          f"({100 * achieved / mm_gflops:.0f}% of the reference matmul)")
    if full_time is not None:
        print(f"full reference   : plain matmuls of all chunks in {full_time:.2f} s = "
              f"{flops / full_time / 1e9:.1f} GFLOP/s; ranking overhead {100 * (elapsed / full_time - 1):+.0f}%")
    if device.type == "cuda":
        print(f"peak memory      : +{gib(peak_cuda)} CUDA above the inputs (one block = {gib(block_bytes)})")
    else:
        print(f"peak memory      : peak RSS {gib(peak_rss)} during ranking, RSS before ranking {gib(rss_before)} "
              f"(inputs), one block = {gib(block_bytes)}; a full similarity matrix would be "
              f"{gib(n_text * n_image * 4)}")
    print("metrics          : " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    try:
        print(f"load average     : {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    except OSError:
        pass


if __name__ == "__main__":
    main()
