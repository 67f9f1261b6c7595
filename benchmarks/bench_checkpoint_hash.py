"""What the checkpoint manifest's SHA-256 costs on a paper-sized checkpoint (issue 21).

    .venv/bin/python benchmarks/bench_checkpoint_hash.py --dir /tmp/ckpt_bench [--keep] [--json out.json]

Writes a checkpoint of an XLM-R-base-sized student (shapes from ``XLMRobertaConfig`` with XLM-R base's real
vocabulary, built on the meta device, plus a 768x768 projection; random float32 values) the way the Trainer does:
``model.safetensors`` (safetensors), ``optimizer.pt`` (AdamW's ``exp_avg``/``exp_avg_sq`` per parameter,
``torch.save``), a 4096x768 DR queue, ``trainer_state.json`` and the small files. Then times, each once:

- ``save``: writing those files (what every checkpoint costs anyway);
- ``manifest``: :func:`mvld_hf.checkpointing.write_checkpoint_manifest` right after (sizes + SHA-256 of every file,
  read back while the files are still in the page cache), the cost the hash adds to every save;
- ``verify_cheap``: ``verify_checkpoint(content=False)`` (listing: sizes, step cross-check);
- ``verify_full``: ``verify_checkpoint()`` as resuming runs it (SHA-256 of every file + the NaN/inf scan of the
  weights), and ``sha256_only``: the hashing part of it alone.

Mind the disk: about 3.3 GB are written under ``--dir`` (deleted at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mvld_hf.checkpointing import (  # noqa: E402
    TRAINER_STATE,
    file_sha256,
    verify_checkpoint,
    write_checkpoint_manifest,
)


def student_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter shapes of an XLM-R base backbone (vocab 250,002, 12x768) plus a 768->768 projection."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1)
    with torch.device("meta"):
        backbone = XLMRobertaModel(config, add_pooling_layer=False)
    shapes = {f"backbone.{name}": tuple(p.shape) for name, p in backbone.named_parameters()}
    shapes.update({"projection.weight": (768, 768), "projection.bias": (768,)})
    return shapes


def write_checkpoint(path: str, seed: int = 0) -> dict:
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    shapes = student_shapes()
    start = time.perf_counter()
    weights = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    made = time.perf_counter() - start
    start = time.perf_counter()
    save_file(weights, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    state = {i: {"step": torch.tensor(100.0), "exp_avg": w, "exp_avg_sq": w.abs()}
             for i, w in enumerate(weights.values())}
    torch.save({"state": state, "param_groups": [{"lr": 3e-5, "params": list(range(len(state)))}]},
               os.path.join(path, "optimizer.pt"))
    del state
    torch.save({"queue": torch.randn(4096, 768, generator=generator), "ptr": 0}, os.path.join(path, "dr_queue.pt"))
    torch.save({"last_epoch": 100}, os.path.join(path, "scheduler.pt"))
    torch.save({"python": 0, "numpy": 0, "cpu": torch.get_rng_state()}, os.path.join(path, "rng_state.pth"))
    with open(os.path.join(path, TRAINER_STATE), "w") as handle:
        json.dump({"global_step": 100, "log_history": []}, handle)
    with open(os.path.join(path, "config.json"), "w") as handle:
        json.dump({"model_type": "mvld_text_tower"}, handle)
    for name in ("model.safetensors", "optimizer.pt"):  # on disk, as the Trainer's own save leaves them
        with open(os.path.join(path, name), "rb") as handle:
            os.fsync(handle.fileno())
    saved = time.perf_counter() - start
    return {"parameters": sum(w.numel() for w in weights.values()), "random_values_s": round(made, 2),
            "save_s": round(saved, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp/mvld_checkpoint_hash_bench")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    total, _, free = shutil.disk_usage(os.path.dirname(os.path.abspath(args.dir)) or "/")
    if free < 8 << 30:
        raise SystemExit(f"only {free / 2**30:.1f} GiB free next to {args.dir}: the benchmark writes ~3.3 GB")
    checkpoint = os.path.join(args.dir, "checkpoint-100")
    try:
        result = write_checkpoint(checkpoint)
        sizes = {name: os.path.getsize(os.path.join(checkpoint, name)) for name in sorted(os.listdir(checkpoint))}
        result["bytes"] = sum(sizes.values())
        result["files"] = sizes
        metadata = {"global_step": 100, "finite_weights": True}
        start = time.perf_counter()
        write_checkpoint_manifest(checkpoint, metadata)
        result["manifest_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        verify_checkpoint(checkpoint, content=False)
        result["verify_cheap_s"] = round(time.perf_counter() - start, 4)
        start = time.perf_counter()
        for name in sizes:
            file_sha256(os.path.join(checkpoint, name))
        result["sha256_only_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        verify_checkpoint(checkpoint)
        result["verify_full_s"] = round(time.perf_counter() - start, 2)
        result["sha256_GB_per_s"] = round(result["bytes"] / 1e9 / result["sha256_only_s"], 2)
        result["manifest_over_save"] = round(result["manifest_s"] / result["save_s"], 2)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return result


if __name__ == "__main__":
    main()
