"""The paper-scale GPU benchmark: teacher throughput, the training step's MFU, and every ratio of issue 22.

Made to run in at most five minutes on one lent accelerator, with random-weight models built from configs (no Hub):

1. ``peak``: the device's measured matmul peak in the training dtype (bf16 on a GPU): the best of a few square
   matmuls, timed in this run. It is the denominator of every MFU below, so MFU compares this run's training
   step with this run's device, not with a datasheet.
2. ``teacher``: a CLIP ViT-L/14-shaped teacher (text 12x768, vision 24x1024 on 224 px patches of 14,
   projection 768) loaded in the dtype :func:`mvld_hf.teachers.teacher_dtype` picks (bf16 on a GPU).
   Reported: captions/s and images/s end to end through ``Teacher.encode_text`` / ``encode_image``
   (tokenizing or image preprocessing on the CPU included; images with the PIL processor in this process, as
   measured first, and with the library's choice: the torchvision processor where it imports, in DataLoader
   workers), the forward alone on prepared tensors,
   ``precompute_teacher_embeddings`` on a map-style ``Dataset``, and the forward alone in float32
   (``teacher_float32``: how the CLI loaded teachers before ``--teacher_dtype auto``).
3. ``train``: the cached-teacher training step of an XLM-R-base-shaped student (12x768, vocabulary 250,002,
   mean pooling, projection 768) through ``DistillationTrainer.train()`` itself (collator, dataloader with
   ``--workers`` workers, autocast bf16 with fp32 master weights, the Trainer's fused AdamW, gradient clipping,
   the DR queue) on captions with precomputed teacher embeddings:

   - ``fd``, ``dr``: every batch exactly ``--batch-size`` x ``--seq`` tokens (long captions cut at ``--seq``),
     for continuity with the first GPU run;
   - ``bare_fd``: the same model, batches and loss in a plain PyTorch loop (DataLoader with the project's
     collator, autocast, fused AdamW, clipping; no Trainer): what the Trainer costs;
   - ``fd_real``, ``dr_real``: realistic captions: English captions of 6-20 words and their word-by-word
     translations (German, Russian, Chinese, Greek; four per English caption, like M-CLIP's), tokenized and
     padded as the collator pads (to the batch's longest, ``max_length`` 77), batches drawn at random;
   - ``fd_real_grouped``, ``dr_real_grouped``: the same rows batched by length
     (``train_sampling_strategy="group_by_length"``, :class:`mvld_hf.sampling.LengthGroupedSampler`);
   - ``dr_stream``: DR on a stream of the realistic rows whose English captions the teacher embeds inside
     every step (``precompute_teacher_embeddings`` on an ``IterableDataset``: the paper configs' uncached
     streaming path); its MFU counts the student's FLOPs only, so its drop from ``dr_real`` is the teacher's
     cost; ``dr_stream_grouped``: the same stream regrouped by length (:func:`mvld_hf.sampling.group_stream_by_length`);
   - with ``--compile``: ``dr_real_compiled`` (``TrainingArguments(torch_compile=True)``, realistic lengths: a
     new padded length per batch, so dynamic shapes after the first recompilation) and ``fd_compiled``
     (fixed-length batches); with ``--compile-bare`` also ``bare_fd_compiled`` (``torch.compile`` of the
     student in the bare loop, fixed-length batches).

   Step time: wall time between consecutive ``on_step_end`` callbacks after ``--warmup`` steps (the device is
   synchronised there); samples/s and tokens/s come from the total time of the timed steps (batches of
   different lengths take different times), ``step_s_median`` is beside them. Tokens are counted per step
   from the batch's attention mask: ``tokens_per_s`` (padded: what the device computes) and
   ``real_tokens_per_s`` (non-pad). MFU = 6 x non-embedding parameters x tokens / time / peak (the Trainer's
   own FLOP formula; attention-score FLOPs are not counted, so MFU is slightly understated), on padded and on
   real tokens.
4. ``ratios``: every comparison of issue 22 in one place (see :func:`ratios`), and ``study_estimate``: the
   GPU-hours of ``configs/study/gpu-paper.yaml`` computed from these figures (``benchmarks/gpu_hours.py``).

    python benchmarks/bench_gpu.py --smoke                 # the same code on the CPU, tiny sizes, < 1 minute
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
from bench_training import make_captions as make_translations  # noqa: E402
from bench_training import student_backbone_config, teacher_clip_config  # noqa: E402  (the paper shapes, once)
from gpu_hours import study_estimate  # noqa: E402

REAL_MAX_LENGTH = 77  # the paper configs' max_length: realistic batches pad to their longest, at most this
REAL_WORDS = (6, 20)  # words per English caption (M-CLIP's captions)

SIZES = {
    # paper shapes: CLIP ViT-L/14 teacher, XLM-R base student, batch 256 (the configs' per_device_train_batch_size)
    "paper": dict(batch_size=256, seq=64, steps=30, warmup=5, workers=4, queue_size=65536, text_batch=1024,
                  captions=16384, image_batch=256, images=1536, matmul=(4096, 8192, 16384), dataset=8192,
                  vocab=8000),
    # the same code at tiny sizes, for a CPU check (benchmarks/bench_gpu.py --smoke and its test)
    "smoke": dict(batch_size=16, seq=16, steps=6, warmup=2, workers=2, queue_size=64, text_batch=32,
                  captions=128, image_batch=8, images=16, matmul=(256, 512), dataset=64, vocab=2000),
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

    captions = make_captions(rng, words, sizes["captions"], REAL_WORDS)  # M-CLIP captions: ~10-15 words
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
    # the library's own choice (image_pipeline): the torchvision-backed processor where torchvision imports, and
    # decoding + preprocessing in DataLoader workers (up to 8, one core left to this process)
    from mvld_hf.image_pipeline import image_processor_backend

    backend, pil_processor = image_processor_backend(), teacher.image_processor
    if backend == "torchvision":
        from transformers import CLIPImageProcessor

        teacher.image_processor = CLIPImageProcessor(size={"shortest_edge": side},
                                                     crop_size={"height": side, "width": side})
    image_library_s = timed(lambda: teacher.encode_image(images, batch_size=ib), device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    image_workers = max(1, min(8, cores - 1))
    image_workers_s = timed(lambda: teacher.encode_image(images, batch_size=ib, num_workers=image_workers), device)
    teacher.image_processor = pil_processor
    pixel_values = torch.randn(ib, 3, side, side, device=device, dtype=dtype)
    image_forward_s = timed(lambda: [model.get_image_features(pixel_values=pixel_values)
                                     for _ in range(len(images) // ib)], device)

    dataset = datasets.Dataset.from_dict({"english": captions})
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(open(os.devnull, "w")):
        dataset = dataset.map(lambda b: b, batched=True, cache_file_name=os.path.join(tmp, "d.arrow"))  # on disk
        precompute_s = timed(lambda: precompute_teacher_embeddings(
            dataset, teacher, batch_size=4 * tb, encode_batch_size=tb).with_format("numpy")["teacher_text_embeds"],
            device)
    result = {"teacher_params": int(sum(p.numel() for p in model.parameters())), "text_batch": tb,
              "image_batch": ib, "dtype": str(dtype).replace("torch.", ""),
              "captions_per_s": len(captions) / text_s,
              "captions_per_s_forward_only": tb * (len(captions) // tb) / text_forward_s,
              "caption_tokens_mean": float(tokens["attention_mask"].sum(1).float().mean()),
              "images_per_s": len(images) / image_s,
              "images_per_s_forward_only": ib * (len(images) // ib) / image_forward_s,
              "image_processor_backend": backend, "images_per_s_library_processor": len(images) / image_library_s,
              "image_workers": image_workers, "images_per_s_workers": len(images) / image_workers_s,
              "precompute_captions_per_s": len(captions) / precompute_s}

    # the same forwards in float32 (fewer batches: it is the slow case), then back to the fast dtype
    model.to(torch.float32)
    text_batches, image_batches = max(1, len(captions) // tb // 4), max(1, len(images) // ib // 3)
    model.get_text_features(**tokens)  # warm-up (float32 kernels)
    fp32_text_s = timed(lambda: [model.get_text_features(**tokens) for _ in range(text_batches)], device)
    pixel_values = pixel_values.float()
    model.get_image_features(pixel_values=pixel_values)
    fp32_image_s = timed(lambda: [model.get_image_features(pixel_values=pixel_values)
                                  for _ in range(image_batches)], device)
    model.to(dtype)
    result["float32"] = {"captions_per_s_forward_only": tb * text_batches / fp32_text_s,
                         "images_per_s_forward_only": ib * image_batches / fp32_image_s}
    return result


class StepClock:
    """A TrainerCallback recording the (synchronised) wall time of every on_step_end, and the padded and real
    (non-pad) tokens of every step's batch (:meth:`count`, called with the batch before the step)."""

    def __init__(self, device):
        self.device, self.times, self.cpu_times, self.tokens = device, [], [], []

    def tick(self) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())  # this process's CPU time: steadier on a shared CPU

    def count(self, inputs) -> None:
        masks = [inputs["attention_mask"]] + ([inputs["english_attention_mask"]]
                                              if "english_attention_mask" in inputs else [])
        self.tokens.append((sum(m.numel() for m in masks), int(sum(m.sum() for m in masks))))

    def as_callback(self):
        from transformers import TrainerCallback

        clock = self

        class _Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.tick()

        return _Clock()

    def watch(self, trainer) -> None:
        """Count the tokens of every batch the trainer steps on (still on the host, before it moves them)."""
        step = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            self.count(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = training_step

    def report(self, warmup: int, batch: int, non_embedding: int, peak: float) -> dict:
        # step k's time: from the end of step k-1 to the end of step k (data fetch, forward, backward, optimizer)
        gaps = [b - a for a, b in zip(self.times[warmup - 1:-1], self.times[warmup:], strict=True)]
        timed_tokens = self.tokens[warmup:warmup + len(gaps)]
        total_s, rows = sum(gaps), batch * len(gaps)
        cpu_s = max(self.cpu_times[warmup - 1 + len(gaps)] - self.cpu_times[warmup - 1], 1e-9)
        padded = sum(t[0] for t in timed_tokens)
        real = sum(t[1] for t in timed_tokens)
        flops, real_flops = 6 * non_embedding * padded / total_s, 6 * non_embedding * real / total_s
        return {"steps_timed": len(gaps), "step_s_median": statistics.median(gaps), "step_s_mean": total_s / len(gaps),
                "step_s_min": min(gaps), "step_s_max": max(gaps), "samples_per_s": rows / total_s,
                "padded_tokens_per_row": padded / rows, "real_tokens_per_row": real / rows,
                "pad_share": 1 - real / padded, "tokens_per_s": padded / total_s, "real_tokens_per_s": real / total_s,
                "model_flops_per_s": flops, "mfu": flops / peak, "real_model_flops_per_s": real_flops,
                "mfu_real_tokens": real_flops / peak,
                "samples_per_cpu_s": rows / cpu_s, "real_tokens_per_cpu_s": real / cpu_s}


def build_student(size: str, device, projection_dim: int):
    from mvld_hf import MultilingualTextTower

    torch.manual_seed(0)
    with torch.device(device):
        return MultilingualTextTower(student_config(size, projection_dim))


def cached_dataset(rows: dict, dim: int):
    """The rows with random precomputed teacher embeddings (float32, as precompute writes them)."""
    import datasets
    import numpy as np

    embeddings = np.random.default_rng(0).standard_normal((len(rows["caption"]), dim)).astype(np.float32)
    return datasets.Dataset.from_dict({**rows, "teacher_text_embeds": list(embeddings)})


def training_arguments(tmp: str, method: str, sizes: dict, max_length: int, device, use_bf16: bool, **extra):
    from mvld_hf import DistillationArguments

    workers = sizes["workers"]
    return DistillationArguments(
        output_dir=tmp, method=method, per_device_train_batch_size=sizes["batch_size"],
        max_steps=sizes["steps"] + sizes["warmup"], max_length=max_length, queue_size=sizes["queue_size"],
        learning_rate=1e-4, warmup_steps=0.1, bf16=use_bf16, use_cpu=device.type == "cpu",
        dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0, save_strategy="no",
        logging_steps=10 ** 6, report_to="none", disable_tqdm=True, seed=0, **extra)


def bench_train(method: str, size: str, sizes: dict, tokenizer, device, use_bf16: bool, peak: float, dataset,
                max_length: int, compile_model: bool = False, teacher=None, group_by_length: bool = False,
                compile_backend: str | None = None) -> dict:
    """One DistillationTrainer.train() run of ``warmup + steps`` steps on ``dataset`` (cached teacher
    embeddings), or, given ``teacher``, on a stream of it whose English captions the teacher embeds inside each
    step (the uncached streaming path of the paper configs). MFU counts the student's FLOPs only."""
    from transformers.trainer_callback import PrinterCallback

    from mvld_hf import DistillationTrainer

    batch, warmup = sizes["batch_size"], sizes["warmup"]
    student = build_student(size, device, teacher_config(size).projection_dim)
    if teacher is not None:
        from mvld_hf import precompute_teacher_embeddings

        dataset = precompute_teacher_embeddings(dataset.to_iterable_dataset(num_shards=max(1, sizes["workers"])),
                                                teacher, batch_size=batch, encode_batch_size=batch)
    clock = StepClock(device)
    extra = {"train_sampling_strategy": "group_by_length"} if group_by_length else {}
    if compile_model and compile_backend:
        extra["torch_compile_backend"] = compile_backend
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(tmp, method, sizes, max_length, device, use_bf16, torch_compile=compile_model,
                                  **extra)
        trainer = DistillationTrainer(model=student, args=args, train_dataset=dataset, processing_class=tokenizer,
                                      callbacks=[clock.as_callback()])
        trainer.remove_callback(PrinterCallback)  # it only prints the end-of-train metrics
        clock.watch(trainer)
        start = time.perf_counter()
        trainer.train()
        total_s = time.perf_counter() - start
    non_embedding = student.num_parameters(exclude_embeddings=True)
    return {"method": method, "teacher_in_step": teacher is not None, "group_by_length": group_by_length,
            "compiled": compile_model, "batch_size": batch, "max_length": max_length,
            "non_embedding_params": int(non_embedding), "params": int(student.num_parameters()),
            **clock.report(warmup, batch, non_embedding, peak), "train_call_s": round(total_s, 1)}


def bench_bare(size: str, sizes: dict, tokenizer, device, use_bf16: bool, peak: float, dataset, max_length: int,
               compile_model: bool = False, compile_backend: str | None = None) -> dict:
    """FD in a plain PyTorch loop: the same student, rows, collator (DistillationCollator in ``--workers``
    DataLoader workers), loss function, bf16 autocast, fused AdamW and gradient clipping as the Trainer, and
    nothing else (no scheduler, callbacks, logging or NaN checks)."""
    from mvld_hf.data import DistillationCollator
    from mvld_hf.losses.registry import METHODS

    batch, warmup, steps, workers = sizes["batch_size"], sizes["warmup"], sizes["steps"], sizes["workers"]
    student = build_student(size, device, teacher_config(size).projection_dim)
    model = torch.compile(student, backend=compile_backend or "inductor") if compile_model else student
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(tmp, "fd", sizes, max_length, device, use_bf16)
    collator = DistillationCollator(tokenizer, args)
    loader = torch.utils.data.DataLoader(
        dataset.with_format(None, columns=["caption", "teacher_text_embeds"]), batch_size=batch, shuffle=True,
        collate_fn=collator, num_workers=workers, persistent_workers=workers > 0, drop_last=True,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0, fused=device.type == "cuda")
    clock = StepClock(device)
    start = time.perf_counter()
    model.train()
    batches = iter(loader)
    for _ in range(warmup + steps):
        inputs = next(batches)
        clock.count(inputs)
        ids = inputs["input_ids"].to(device, non_blocking=True)
        mask = inputs["attention_mask"].to(device, non_blocking=True)
        target = inputs["teacher_text_embeds"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            s = model(input_ids=ids, attention_mask=mask)["text_embeds"]
        loss = METHODS["fd"].compute({"s": s, "s_en": None, "t": target, "a": target}, args)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick()
    total_s = time.perf_counter() - start
    del batches
    non_embedding = student.num_parameters(exclude_embeddings=True)
    return {"method": "fd", "bare_loop": True, "teacher_in_step": False, "group_by_length": False,
            "compiled": compile_model, "batch_size": batch, "max_length": max_length,
            "non_embedding_params": int(non_embedding), "params": int(student.num_parameters()),
            **clock.report(warmup, batch, non_embedding, peak), "train_call_s": round(total_s, 1)}


def ratios(results: dict) -> dict:
    """Every comparison of issue 22 as one number (None where a run is missing): throughput ratios of
    samples/s (or captions/s, images/s) of the first over the second."""
    train, teacher = results.get("train", {}), results.get("teacher", {})

    def of(a: str, b: str, key: str = "samples_per_s"):
        return train[a][key] / train[b][key] if a in train and b in train else None

    def t(a: str, b: str):
        return teacher[a] / teacher[b] if a in teacher and b in teacher else None

    out = {
        "cached_step_vs_bare_loop:fd": of("fd", "bare_fd"),
        "cached_step_vs_bare_loop:fd_compiled": of("fd_compiled", "bare_fd_compiled"),
        "stream_step_vs_cached_step:dr_real": of("dr_stream", "dr_real"),
        "teacher_captions_end_to_end_vs_forward": t("captions_per_s", "captions_per_s_forward_only"),
        "teacher_precompute_vs_forward": t("precompute_captions_per_s", "captions_per_s_forward_only"),
        "teacher_images_end_to_end_vs_forward": t("images_per_s", "images_per_s_forward_only"),
        "teacher_images_workers_vs_forward": t("images_per_s_workers", "images_per_s_forward_only"),
        "compiled_vs_eager:fd": of("fd_compiled", "fd"),
        "compiled_vs_eager:bare_fd": of("bare_fd_compiled", "bare_fd"),
        "compiled_vs_eager:dr_real": of("dr_real_compiled", "dr_real"),
        "stream_step_vs_cached_step:dr_real_grouped": of("dr_stream_grouped", "dr_real_grouped"),
        "grouped_vs_random_batching:dr_stream": of("dr_stream_grouped", "dr_stream"),
        "realistic_vs_fixed_length_rows_per_s:fd": of("fd_real", "fd"),
    }
    if "float32" in teacher:
        fp32 = teacher["float32"]
        out["teacher_float32_vs_fast_dtype:text"] = fp32["captions_per_s_forward_only"] / \
            teacher["captions_per_s_forward_only"]
        out["teacher_float32_vs_fast_dtype:images"] = fp32["images_per_s_forward_only"] / \
            teacher["images_per_s_forward_only"]
    for method in ("fd", "dr"):
        out[f"grouped_vs_random_batching:{method}"] = of(f"{method}_real_grouped", f"{method}_real")
        out[f"grouped_vs_random_real_tokens_per_s:{method}"] = of(f"{method}_real_grouped", f"{method}_real",
                                                                  "real_tokens_per_s")
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (float32): checks the code path")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--methods", default="fd,dr", help="comma-separated methods to time (default fd,dr)")
    parser.add_argument("--skip-teacher", action="store_true", help="time the cached-teacher training steps only")
    parser.add_argument("--compile", action="store_true",
                        help="also time DR on realistic lengths and FD on fixed ones with torch.compile")
    parser.add_argument("--compile-bare", action="store_true",
                        help="with --compile, also the bare loop compiled (another minute of compilation)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend for --compile (default inductor; 'eager' checks the path fast)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="skip the runs that would start too late to end within this many seconds in all "
                             "(default: 285 at paper sizes, none with --smoke); skipped runs are listed in the JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--study", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                        "configs", "study", "gpu-paper.yaml"),
                        help="the study whose GPU-hours to estimate from the figures ('' to skip)")
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


def make_rows(sizes: dict, tokenizer_vocab: int, seed: int = 0):
    """(tokenizer, fixed-length rows, realistic rows): translations of English captions of 6-20 words in four
    languages; the fixed rows cut the same kind of captions, made long, at ``seq`` tokens."""
    from bench_training import build_tokenizer, cut_to_tokens

    n = max(sizes["dataset"], sizes["batch_size"] * (sizes["steps"] + sizes["warmup"] + 1))
    real = make_translations((n + 3) // 4, 4, sizes["seq"], seed=seed, n_words=REAL_WORDS)[:n]
    long = make_translations((n + 3) // 4, 4, sizes["seq"], seed=seed + 1)[:n]
    tokenizer = build_tokenizer([r["caption"] for r in real] + [r["english"] for r in real[::4]], tokenizer_vocab)
    fixed = {"caption": cut_to_tokens([r["caption"] for r in long], tokenizer, sizes["seq"] + 2)}
    realistic = {"caption": [r["caption"] for r in real], "english": [r["english"] for r in real]}
    return tokenizer, fixed, realistic


def run(args, size: str, sizes: dict, device: torch.device) -> dict:
    from mvld_hf.teachers import teacher_dtype

    use_bf16 = device.type != "cpu"  # bf16 autocast on an accelerator; float32 on the CPU
    dtype = torch.bfloat16 if use_bf16 else torch.float32
    begin = time.perf_counter()
    rng = random.Random(0)
    words = make_words(rng)
    tokenizer, fixed_rows, real_rows = make_rows(sizes, sizes["vocab"])
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
               or "cpu", "size": size, "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
               "sizes": sizes, "real_max_length": REAL_MAX_LENGTH, "real_words": list(REAL_WORDS)}
    results["peak"] = matmul_peak(device, dtype, sizes["matmul"], seconds=0.2 if args.smoke else 1.0)
    peak = results["peak"]["flops_per_s"]
    print(f"[{time.perf_counter() - begin:5.1f}s] {results['device']}: measured {results['dtype']} matmul peak "
          f"{peak / 1e12:.2f} TFLOP/s (n={results['peak']['n']})", flush=True)
    teacher = None
    if not args.skip_teacher:
        t_dtype = teacher_dtype(device)  # what the CLI loads the teacher in (--teacher_dtype auto)
        teacher = build_teacher(size, tokenizer, device, t_dtype)
        t = results["teacher"] = bench_teacher(teacher, sizes, tokenizer, device, t_dtype, rng, words)
        save(results, args.output)
        print(f"[{time.perf_counter() - begin:5.1f}s] teacher (CLIP ViT-L/14 shape{', tiny' if args.smoke else ''}, "
              f"{t['dtype']}): {t['captions_per_s']:.0f} captions/s ({t['captions_per_s_forward_only']:.0f} forward "
              f"only, {t['precompute_captions_per_s']:.0f} through precompute_teacher_embeddings), "
              f"{t['images_per_s']:.0f} images/s with the PIL processor in this process, "
              f"{t['images_per_s_workers']:.0f} with the {t['image_processor_backend']} one in "
              f"{t['image_workers']} workers ({t['images_per_s_forward_only']:.0f} forward only); float32 "
              f"forward only {t['float32']['captions_per_s_forward_only']:.0f} captions/s, "
              f"{t['float32']['images_per_s_forward_only']:.0f} images/s", flush=True)
    results["train"] = {}
    dim = teacher_config(size).projection_dim
    fixed, realistic = cached_dataset(fixed_rows, dim), cached_dataset(real_rows, dim)
    import datasets

    stream_rows = datasets.Dataset.from_dict(real_rows)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seq, real_len = sizes["seq"], REAL_MAX_LENGTH
    runs = [(m, m, fixed, seq, {}) for m in methods]
    runs.append(("bare_fd", None, fixed, seq, {}))
    for m in methods:
        runs += [(f"{m}_real", m, realistic, real_len, {}),
                 (f"{m}_real_grouped", m, realistic, real_len, {"group_by_length": True})]
    if teacher is not None:
        last = methods[-1]
        runs += [(f"{last}_stream", last, stream_rows, real_len, {"teacher": teacher}),
                 (f"{last}_stream_grouped", last, stream_rows, real_len, {"teacher": teacher, "group_by_length": True})]
    if args.compile:  # last: the slowest to start (compilation, ~1 minute each), the JSON is saved after each run
        compiled = {"compile_model": True, "compile_backend": args.compile_backend}
        runs += [(f"{methods[-1]}_real_compiled", methods[-1], realistic, real_len, compiled),
                 ("fd_compiled", "fd", fixed, seq, compiled)]
        if args.compile_bare:
            runs.append(("bare_fd_compiled", None, fixed, seq, compiled))
    budget = args.max_seconds if args.max_seconds is not None else (None if args.smoke else 285.0)
    results["skipped"] = []
    for name, method, dataset, max_length, extra in runs:
        needs = 90.0 if extra.get("compile_model") else 15.0  # about what one run takes at paper sizes on an H200
        if budget is not None and time.perf_counter() - begin + needs > budget:
            results["skipped"].append(name)
            print(f"[{time.perf_counter() - begin:5.1f}s] skipped {name}: it would end past --max-seconds {budget:.0f}")
            continue
        if method is None:
            r = bench_bare(size, sizes, tokenizer, device, use_bf16, peak, dataset, max_length, **extra)
        else:
            r = bench_train(method, size, sizes, tokenizer, device, use_bf16, peak, dataset, max_length, **extra)
        results["train"][name] = r
        save(results, args.output)  # after every run: a run cut short by a time limit still leaves its figures
        label = (method or "fd").upper() + (" bare loop" if method is None else "") + \
            (" on a stream, teacher in the step" if r["teacher_in_step"] else "") + \
            (" compiled" if r["compiled"] else "") + (" length-grouped" if r["group_by_length"] else "")
        print(f"[{time.perf_counter() - begin:5.1f}s] train {label}: batch {r['batch_size']} x "
              f"{r['padded_tokens_per_row']:.1f} tokens ({r['real_tokens_per_row']:.1f} real), "
              f"{r['step_s_mean'] * 1e3:.1f} ms/step, {r['samples_per_s']:.0f} samples/s, "
              f"{r['model_flops_per_s'] / 1e12:.3f} TFLOP/s model, MFU {100 * r['mfu']:.1f}% "
              f"({100 * r['mfu_real_tokens']:.1f}% on real tokens)", flush=True)
    results["ratios"] = ratios(results)
    for key, value in results["ratios"].items():
        if value is not None:
            print(f"  ratio {key}: {value:.3f}")
    if args.study:
        results["study_estimate"] = study_estimate(results, args.study)
        print(f"  {results['study_estimate']['text']}")
    results["wall_s"] = round(time.perf_counter() - begin, 1)
    print(f"[{results['wall_s']:5.1f}s] done", flush=True)
    save(results, args.output)
    return results


def save(results: dict, path: str | None) -> None:
    results["ratios"] = ratios(results)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w") as handle:
            json.dump(results, handle, indent=1)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
