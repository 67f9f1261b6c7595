"""The paper-scale GPU benchmark: teacher precompute throughput and the cached-teacher training step's MFU.

Made to run in at most five minutes on one lent accelerator, with random-weight models built from configs (no Hub):

1. ``peak``: the device's measured matmul peak in the training dtype (bf16 on a GPU): the best of a few square
   matmuls, timed in this run. It is the denominator of every MFU below, so MFU compares this run's training
   step with this run's device, not with a datasheet.
2. ``teacher``: a CLIP ViT-L/14-shaped teacher (text 12x768, vision 24x1024 on 224 px patches of 14,
   projection 768) in the training dtype. Reported: captions/s and images/s end to end through
   ``Teacher.encode_text`` / ``encode_image`` (tokenizing or PIL preprocessing on the CPU included), the
   forward alone on prepared tensors, and ``precompute_teacher_embeddings`` on a map-style ``Dataset`` (what a
   training script calls; ``datasets.map`` included).
3. ``train``: the cached-teacher training step of an XLM-R-base-shaped student (12x768, vocabulary 250,002,
   mean pooling, projection 768) through ``DistillationTrainer.train()`` itself (collator, dataloader with
   ``--workers`` workers, autocast bf16 with fp32 master weights, the Trainer's fused AdamW, gradient clipping,
   the DR queue), on a dataset of captions and precomputed teacher embeddings, for FD and for DR. Every batch
   is exactly ``--batch-size`` x ``--seq`` tokens (long captions truncated at ``--seq``). The step time is the
   median wall time between consecutive ``on_step_end`` callbacks after ``--warmup`` steps (the device is
   synchronised in the callback). MFU = 6 x non-embedding parameters x tokens per step / step time / peak
   (the Trainer's own FLOP formula; attention-score FLOPs are not counted, so MFU is slightly understated).
4. ``train`` again for the last method on a stream whose distinct English captions (6-20 words) the teacher
   embeds inside every step (``precompute_teacher_embeddings`` on an ``IterableDataset``: the paper configs'
   uncached streaming path; workers tokenize, the step runs the teacher). Its MFU counts the student's FLOPs
   only, so the drop from the cached run is the teacher's cost per step.

    python benchmarks/bench_gpu.py --smoke                 # the same code on the CPU, tiny sizes, < 2 minutes
    bash benchmarks/run_gpu.sh                             # on a lent GPU (bf16, batch 256); writes JSON to $OUT

Goal on a GPU: MFU >= 40% for FD and DR. Results and commands: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script from anywhere: import this checkout's mvld_hf
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_training import student_backbone_config, teacher_clip_config  # noqa: E402  (the paper shapes, once)

SIZES = {
    # paper shapes: CLIP ViT-L/14 teacher, XLM-R base student, batch 256 (the configs' per_device_train_batch_size)
    "paper": dict(batch_size=256, seq=64, steps=30, warmup=5, workers=4, queue_size=65536, text_batch=1024,
                  captions=16384, image_batch=256, images=1536, matmul=(4096, 8192, 16384), dataset=8192),
    # the same code at tiny sizes, for a CPU check (benchmarks/bench_gpu.py --smoke and its test)
    "smoke": dict(batch_size=16, seq=16, steps=6, warmup=2, workers=2, queue_size=64, text_batch=32,
                  captions=128, image_batch=8, images=16, matmul=(256, 512), dataset=64),
}


def teacher_config(size: str):
    """``smoke``: a tiny CLIP for the CPU check; ``paper``: openai/clip-vit-large-patch14's shape (the one
    bench_training.py builds)."""
    from transformers import CLIPConfig

    if size != "smoke":
        return teacher_clip_config("paper")
    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=4)  # our tokenizer's ids (eos 4: CLIP pools there)
    text = dict(vocab_size=2000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, **ids)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  patch_size=8, image_size=32)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)


def student_config(size: str, projection_dim: int):
    """``smoke``: a tiny XLM-R; ``paper``: xlm-roberta-base's shape (bench_training.py's)."""
    from transformers import XLMRobertaConfig

    from mvld_hf import MultilingualTextTowerConfig

    if size == "smoke":
        backbone = XLMRobertaConfig(vocab_size=2000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=256, max_position_embeddings=130, pad_token_id=0,
                                    bos_token_id=2, eos_token_id=4)
    else:
        backbone = student_backbone_config("paper", "xlmr")
    return MultilingualTextTowerConfig(backbone_config=backbone.to_dict(), projection_dim=projection_dim)


def make_words(rng: random.Random, n: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return list(dict.fromkeys("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)))


def make_captions(rng: random.Random, words: list[str], n: int, n_words: tuple[int, int]) -> list[str]:
    return [" ".join(rng.choices(words, k=rng.randint(*n_words))) for _ in range(n)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes, seconds: float = 1.0) -> dict:
    """Best FLOP/s of ``n x n @ n x n`` matmuls over ``sizes`` (each timed for about ``seconds``)."""
    best = {"flops_per_s": 0.0, "n": None}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        torch.matmul(a, b)  # first call: kernel selection
        once = max(timed(lambda a=a, b=b: torch.matmul(a, b), device), 1e-6)
        reps = max(3, min(200, int(seconds / once)))

        def run(a=a, b=b, reps=reps):
            for _ in range(reps):
                torch.matmul(a, b)

        flops = 2 * n ** 3 * reps / timed(run, device)
        if flops > best["flops_per_s"]:
            best = {"flops_per_s": flops, "n": n}
        del a, b
    return best


def build_teacher(size: str, tokenizer, device, dtype):
    """The random CLIP teacher in ``dtype`` on ``device``, as a DualEncoderTeacher."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    from mvld_hf.teachers import DualEncoderTeacher

    config = teacher_config(size)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: a 430M-parameter init on the CPU takes long
        model = CLIPModel(config)
    model = model.to(dtype=dtype)
    side = config.vision_config.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return DualEncoderTeacher(model, tokenizer, processor, name_or_path=f"random-clip-{size}")


def bench_teacher(teacher, sizes: dict, tokenizer, device, dtype, rng: random.Random, words) -> dict:
    """captions/s and images/s of the teacher: end to end, forward only, and through precompute."""
    import datasets
    import numpy as np
    from PIL import Image

    from mvld_hf import precompute_teacher_embeddings

    model = teacher.model
    side = model.config.vision_config.image_size

    captions = make_captions(rng, words, sizes["captions"], (6, 20))  # M-CLIP captions: ~10-15 words
    tb = sizes["text_batch"]
    teacher.encode_text(captions[:tb], batch_size=tb)  # warm-up
    text_s = timed(lambda: teacher.encode_text(captions, batch_size=tb), device)
    tokens = tokenizer(captions[:tb], padding=True, truncation=True, max_length=77, return_tensors="pt").to(device)
    text_forward_s = timed(lambda: [model.get_text_features(**tokens) for _ in range(len(captions) // tb)], device)

    images = []
    for _ in range(sizes["images"]):
        pixels = np.random.default_rng(len(images)).integers(0, 256, (side + side // 7, side + side // 3, 3))
        images.append(Image.fromarray(pixels.astype(np.uint8)))
    ib = sizes["image_batch"]
    teacher.encode_image(images[:ib], batch_size=ib)  # warm-up
    image_s = timed(lambda: teacher.encode_image(images, batch_size=ib), device)
    pixel_values = torch.randn(ib, 3, side, side, device=device, dtype=dtype)
    image_forward_s = timed(lambda: [model.get_image_features(pixel_values=pixel_values)
                                     for _ in range(len(images) // ib)], device)

    dataset = datasets.Dataset.from_dict({"english": captions})
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(open(os.devnull, "w")):
        dataset = dataset.map(lambda b: b, batched=True, cache_file_name=os.path.join(tmp, "d.arrow"))  # on disk
        precompute_s = timed(lambda: precompute_teacher_embeddings(
            dataset, teacher, batch_size=4 * tb, encode_batch_size=tb).with_format("numpy")["teacher_text_embeds"],
            device)
    return {"teacher_params": int(sum(p.numel() for p in model.parameters())), "text_batch": tb, "image_batch": ib,
            "captions_per_s": len(captions) / text_s,
            "captions_per_s_forward_only": tb * (len(captions) // tb) / text_forward_s,
            "caption_tokens_mean": float(tokens["attention_mask"].sum(1).float().mean()),
            "images_per_s": len(images) / image_s,
            "images_per_s_forward_only": ib * (len(images) // ib) / image_forward_s,
            "precompute_captions_per_s": len(captions) / precompute_s}


class StepClock:
    """A TrainerCallback recording the (synchronised) wall time of every on_step_end."""

    def __init__(self, device):
        self.device, self.times = device, []

    def as_callback(self):
        from transformers import TrainerCallback

        clock = self

        class _Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                synchronize(clock.device)
                clock.times.append(time.perf_counter())

        return _Clock()


def bench_train(method: str, size: str, sizes: dict, tokenizer, device, use_bf16: bool, rng, words, peak: float,
                compile_model: bool = False, teacher=None) -> dict:
    """One DistillationTrainer.train() run of ``warmup + steps`` steps on cached teacher embeddings, or, given
    ``teacher``, on a stream whose captions the teacher embeds inside each step (``TeacherEmbeddedStream``: the
    uncached streaming path of the paper configs). MFU counts the student's FLOPs only."""
    import datasets
    import numpy as np

    from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

    batch, seq, steps, warmup = sizes["batch_size"], sizes["seq"], sizes["steps"], sizes["warmup"]
    dim = teacher_config(size).projection_dim
    torch.manual_seed(0)
    with torch.device(device):
        student = MultilingualTextTower(student_config(size, dim))
    n = max(sizes["dataset"], batch * (steps + warmup + 1))
    # long captions, cut at seq tokens: every batch is exactly [batch, seq]
    captions = make_captions(rng, words, n, (seq + 4, seq + 8))
    if teacher is None:
        embeddings = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
        dataset = datasets.Dataset.from_dict({"caption": captions, "teacher_text_embeds": list(embeddings)})
    else:  # distinct English captions of M-CLIP-like length, embedded in the step
        from mvld_hf import precompute_teacher_embeddings

        english = make_captions(rng, words, n, (6, 20))
        raw = datasets.Dataset.from_dict({"caption": captions, "english": english})
        dataset = precompute_teacher_embeddings(raw.to_iterable_dataset(num_shards=max(1, sizes["workers"])),
                                                teacher, batch_size=batch, encode_batch_size=batch)
    clock = StepClock(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = DistillationArguments(
            output_dir=tmp, method=method, per_device_train_batch_size=batch, max_steps=steps + warmup,
            max_length=seq, queue_size=sizes["queue_size"], learning_rate=1e-4, warmup_steps=0.1,
            bf16=use_bf16, use_cpu=device.type == "cpu", dataloader_num_workers=sizes["workers"],
            dataloader_persistent_workers=sizes["workers"] > 0, save_strategy="no", logging_steps=10 ** 6,
            report_to="none", disable_tqdm=True, torch_compile=compile_model, seed=0)
        trainer = DistillationTrainer(model=student, args=args, train_dataset=dataset, processing_class=tokenizer,
                                      callbacks=[clock.as_callback()])
        start = time.perf_counter()
        trainer.train()
        total_s = time.perf_counter() - start
    # step k's time: from the end of step k-1 to the end of step k (data fetch, forward, backward, optimizer)
    gaps = [b - a for a, b in zip(clock.times[warmup - 1:-1], clock.times[warmup:], strict=True)]
    step_s = statistics.median(gaps)
    non_embedding = student.num_parameters(exclude_embeddings=True)
    flops = 6 * non_embedding * batch * seq
    return {"method": method, "teacher_in_step": teacher is not None, "batch_size": batch, "seq": seq,
            "steps_timed": len(gaps),
            "non_embedding_params": int(non_embedding), "params": int(student.num_parameters()),
            "step_s_median": step_s, "step_s_min": min(gaps), "samples_per_s": batch / step_s,
            "tokens_per_s": batch * seq / step_s, "model_flops_per_s": flops / step_s, "mfu": flops / step_s / peak,
            "train_call_s": round(total_s, 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (float32): checks the code path")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--methods", default="fd,dr", help="comma-separated methods to time (default fd,dr)")
    parser.add_argument("--skip-teacher", action="store_true", help="time the cached-teacher training steps only")
    parser.add_argument("--compile", action="store_true", help="TrainingArguments(torch_compile=True)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    for key in ("batch_size", "seq", "steps", "warmup", "workers", "queue_size"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=None, help=f"override {key}")
    args = parser.parse_args(argv)
    size = "smoke" if args.smoke else "paper"
    sizes = dict(SIZES[size])
    for key in ("batch_size", "seq", "steps", "warmup", "workers", "queue_size"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if sizes["warmup"] < 1 or sizes["steps"] < 1:
        parser.error("--warmup and --steps must be at least 1 (the first step is never timed)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    import datasets

    # quiet while it runs, as it was afterwards (a test runs main() inside the test process)
    levels = {name: logging.getLogger(name).level for name in ("transformers", "datasets", "mvld_hf")}
    bars = datasets.is_progress_bar_enabled()
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    try:
        return run(args, size, sizes, device)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def run(args, size: str, sizes: dict, device: torch.device) -> dict:
    from mvld_hf.testing import train_tokenizer

    use_bf16 = device.type != "cpu"  # bf16 autocast on an accelerator; float32 on the CPU
    dtype = torch.bfloat16 if use_bf16 else torch.float32
    begin = time.perf_counter()
    rng = random.Random(0)
    words = make_words(rng)
    tokenizer = train_tokenizer(make_captions(rng, words, 2000, (5, 20)), vocab_size=2000, model_max_length=512)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
               or "cpu", "size": size, "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
               "sizes": sizes}
    results["peak"] = matmul_peak(device, dtype, sizes["matmul"], seconds=0.2 if args.smoke else 1.0)
    peak = results["peak"]["flops_per_s"]
    print(f"[{time.perf_counter() - begin:5.1f}s] {results['device']}: measured {results['dtype']} matmul peak "
          f"{peak / 1e12:.2f} TFLOP/s (n={results['peak']['n']})", flush=True)
    teacher = None
    if not args.skip_teacher:
        teacher = build_teacher(size, tokenizer, device, dtype)
        t = results["teacher"] = bench_teacher(teacher, sizes, tokenizer, device, dtype, rng, words)
        print(f"[{time.perf_counter() - begin:5.1f}s] teacher (CLIP ViT-L/14 shape{', tiny' if args.smoke else ''}): "
              f"{t['captions_per_s']:.0f} captions/s ({t['captions_per_s_forward_only']:.0f} forward only, "
              f"{t['precompute_captions_per_s']:.0f} through precompute_teacher_embeddings), "
              f"{t['images_per_s']:.0f} images/s ({t['images_per_s_forward_only']:.0f} forward only)", flush=True)
    results["train"] = {}
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    runs = [(m, m, None) for m in methods] + ([(f"{methods[-1]}_stream", methods[-1], teacher)] if teacher else [])
    for name, method, step_teacher in runs:
        r = results["train"][name] = bench_train(method, size, sizes, tokenizer, device, use_bf16, rng, words,
                                                 peak, compile_model=args.compile, teacher=step_teacher)
        label = method.upper() + (" on a stream, teacher in the step" if step_teacher else "")
        print(f"[{time.perf_counter() - begin:5.1f}s] train {label}: batch {r['batch_size']} x "
              f"{r['seq']} tokens, {r['step_s_median'] * 1e3:.1f} ms/step, {r['samples_per_s']:.0f} samples/s, "
              f"{r['model_flops_per_s'] / 1e12:.3f} TFLOP/s model, MFU {100 * r['mfu']:.1f}%", flush=True)
    results["wall_s"] = round(time.perf_counter() - begin, 1)
    print(f"[{results['wall_s']:5.1f}s] done", flush=True)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
