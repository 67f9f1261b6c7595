"""Wall time of ``precompute_teacher_embeddings`` on one rank against N ranks sharing the work
(``share_across_ranks=True``: each rank embeds its contiguous part, the parts are exchanged through the datasets
cache). Every process runs one CPU thread, so on a machine with >= N free cores the ideal ratio is 1/N.

    python benchmarks/bench_precompute_ranks.py                      # 6000 captions, 1 rank vs 2 ranks
    python benchmarks/bench_precompute_ranks.py --captions 20000 --ranks 4

The N-rank run is ``accelerate launch --multi_gpu --num_processes N`` (gloo on the CPU) of this script; its
precompute time is taken between two barriers (slowest rank), so it includes the exchange. Each process's CPU
time inside the call is reported too: on a machine shared with other jobs, the wall ratio depends on what else
runs, the busiest rank's CPU time against one rank's shows how the work was split. Each run starts from
its own copy of the dataset on disk, so no run reuses another's cache files. Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_teacher(workdir: str):
    """A random CLIP (text tower 4 x 256) over the saved tokenizer; the same weights in every process."""
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from mvld_hf.teachers import DualEncoderTeacher

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(workdir, "tokenizer"))
    text = {"vocab_size": len(tokenizer), "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
            "num_attention_heads": 4, "max_position_embeddings": 77, "pad_token_id": 0, "bos_token_id": 2,
            "eos_token_id": 4}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "patch_size": 8, "image_size": 32}
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=256))
    return DualEncoderTeacher(model, tokenizer, name_or_path="bench-clip-text-4x256")


def timed_precompute(workdir: str, dataset_dir: str, batch_size: int) -> dict:
    """Load the dataset copy, precompute (shared when a process group is up), return seconds and a checksum."""
    import datasets
    import numpy as np
    import torch
    import torch.distributed as dist

    from mvld_hf import precompute_teacher_embeddings

    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    teacher = build_teacher(workdir)
    dataset = datasets.load_from_disk(dataset_dir)
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        dist.barrier()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = precompute_teacher_embeddings(dataset, teacher, batch_size=batch_size, share_across_ranks=True)
    cpu = time.process_time() - cpu_start  # this process's own work, whatever else the machine runs
    if distributed:
        dist.barrier()
    seconds = time.perf_counter() - start
    cpus = [cpu]
    if distributed:
        cpus = [None] * dist.get_world_size()
        dist.all_gather_object(cpus, cpu)
    column = np.asarray(result.with_format("numpy")["teacher_text_embeds"])
    return {"seconds": seconds, "cpu_seconds": cpus, "rows": len(result), "checksum": float(abs(column).sum())}


def worker(workdir: str, dataset_dir: str, batch_size: int) -> None:
    from accelerate import PartialState

    state = PartialState()  # sets up the gloo process group from the launcher's environment
    out = timed_precompute(workdir, dataset_dir, batch_size)
    if state.is_main_process:
        with open(os.path.join(workdir, "ranks.json"), "w") as handle:
            json.dump({**out, "world_size": state.num_processes}, handle)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=6000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256, help="map batch size")
    parser.add_argument("--worker", nargs=3, metavar=("WORKDIR", "DATASET", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return {}
    import datasets

    from mvld_hf.testing import train_tokenizer

    datasets.disable_progress_bars()
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    captions = [" ".join(rng.choices(words, k=rng.randint(6, 20))) for _ in range(args.captions)]
    with tempfile.TemporaryDirectory() as workdir:
        train_tokenizer(captions[:3000], vocab_size=4000, model_max_length=77).save_pretrained(
            os.path.join(workdir, "tokenizer"))
        source = os.path.join(workdir, "source")
        datasets.Dataset.from_dict({"english": captions}).save_to_disk(source)
        one, many = os.path.join(workdir, "one_rank"), os.path.join(workdir, "n_ranks")
        shutil.copytree(source, one)
        shutil.copytree(source, many)
        alone = timed_precompute(workdir, one, args.batch_size)
        print(f"1 rank: {alone['seconds']:.1f} s wall, {alone['cpu_seconds'][0]:.1f} s CPU for {alone['rows']} "
              "captions", flush=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(args.ranks), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(port), os.path.abspath(__file__), "--worker", workdir, many,
                   str(args.batch_size)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the {args.ranks}-rank run failed:\n{done.stderr[-4000:]}")
        with open(os.path.join(workdir, "ranks.json")) as handle:
            shared = json.load(handle)
    ratio = shared["seconds"] / alone["seconds"]
    cpu_ratio = max(shared["cpu_seconds"]) / alone["cpu_seconds"][0]
    same = abs(shared["checksum"] - alone["checksum"]) <= 1e-4 * alone["checksum"]
    print(f"{args.ranks} ranks: {shared['seconds']:.1f} s wall, CPU per rank "
          f"{', '.join(f'{c:.1f}' for c in shared['cpu_seconds'])} s; wall ratio {ratio:.2f}, busiest rank's CPU "
          f"ratio {cpu_ratio:.2f} (ideal {1 / args.ranks:.2f}); same column: {same}", flush=True)
    return {"one_rank_s": alone["seconds"], "n_ranks_s": shared["seconds"], "ranks": args.ranks, "ratio": ratio,
            "cpu_ratio": cpu_ratio, "captions": args.captions, "same_column": same}


if __name__ == "__main__":
    main()
