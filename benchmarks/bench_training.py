"""Training throughput of DistillationTrainer against a bare PyTorch loop and a naive (teacher-in-the-loop) distiller.

Every configuration runs in ONE process on the same student weights, the same optimizer object and the same
batch shapes, and the configurations are interleaved STEP BY STEP: each runs in its own thread, and a baton
passes from one to the next at the end of every optimizer step, so only one computes at a time and a slow
moment of a shared machine hits every configuration in the same round; the order rotates every round.
Reported ratios are medians of the per-round ratios. Results and their commands: benchmarks/RESULTS.md.

Configurations (``--methods`` picks the losses, default all five):

- ``bare``: a plain loop, no Trainer: batch -> student forward -> the same loss function -> backward ->
  gradient clipping (as the Trainer's default ``max_grad_norm=1``) -> the Trainer's own optimizer object ->
  the same LR schedule -> zero_grad. ``bare-tok`` tokenizes the captions every step exactly as
  ``DistillationCollator`` does (the fair limit: the Trainer pays that work too); ``bare-pretok`` uses tensors
  tokenized before the run (what pre-tokenizing the dataset could save).
- ``trainer``: ``DistillationTrainer`` on a dataset with precomputed teacher embeddings
  (``precompute_teacher_embeddings``), default arguments except those listed by the script.
- ``naive``: ``DistillationTrainer(..., teacher=teacher)`` on the same captions WITHOUT precomputed columns,
  so the trainer runs the frozen teacher inside every step (text tower; also the image tower with
  ``--anchor image``). Same code path as ``trainer`` except the teacher call.

Step time = wall time from the moment a configuration gets the baton to its ``on_step_end`` (Trainer callback;
the same point in the bare loop). It covers the data fetch and collation, forward, backward, clipping,
optimizer, scheduler, the Trainer's bookkeeping and its logging (``--logging-steps``). The first
``--warmup`` steps of each configuration (dataloader start, optimizer state allocation, first-call caches)
are excluded; the train() set-up before the first step and the tear-down after the last are reported
separately. Every batch is exactly [batch, seq] tokens (captions are cut to tokenize to ``--seq`` tokens and
truncated at it), so the cost of a step does not depend on which rows it draws.

    python benchmarks/bench_training.py --threads 1                      # small models, ~1.5 min on 2 CPU cores
    python benchmarks/bench_training.py --threads 1 --size paper --student minilm --batch-size 16 --steps 5 \\
        --warmup 1 --methods fd,dr --bare tok                            # CLIP ViT-L/14 teacher, ~1.5 min
    python benchmarks/bench_training.py --size paper --student xlmr --device cuda --dtype bfloat16 \\
        --batch-size 256 --seq 64 --steps 30 --warmup 5 --fixes nosync,workers
    python benchmarks/bench_training.py --threads 1 --data-path 16,32,256 --image-column   # dataloader CPU work
    python benchmarks/bench_training.py --profile /tmp/bench_prof --methods fd --steps 40   # cProfile per config

``--fixes`` adds configurations with candidate fixes monkeypatched in (see FIXES) beside the unpatched ones.
The earlier candidates ``numpy``, ``dropcols``, ``dataloader`` and ``flops`` (RESULTS.md) are now part of
``DistillationTrainer`` itself (``_remove_unused_columns``, ``floating_point_ops``), so every ``trainer``
configuration measures them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mvld_hf.losses.registry import METHODS as REGISTRY  # noqa: E402

METHODS = tuple(REGISTRY)  # every method of mvld_hf.losses.registry

# ------------------------------------------------------------------------------------------------ models

SIZES = {
    # quick runs: a 2-layer 128-wide XLM-R-style student, a small CLIP (text 2x128, vision 2x128 on 64 px):
    # steps of ~0.1 s on 2 CPU cores, so the Trainer's per-step overheads (ms) are visible
    "small": dict(batch_size=32, seq=32, steps=40, warmup=3, vocab=8000),
    # the paper's sizes with random weights: CLIP ViT-L/14 teacher, XLM-R base or multilingual MiniLM student
    "paper": dict(batch_size=16, seq=32, steps=5, warmup=1, vocab=8000),
}


def build_tokenizer(texts, vocab_size: int):
    """A BPE tokenizer trained on the benchmark captions (pad 0, <s> 2, </s> 4): the models' vocabularies are
    the real ones (250,002 for XLM-R), only the ids in use are fewer. Tokenization speed of a real
    SentencePiece tokenizer differs a little; it is a small part of a step either way."""
    from mvld_hf.testing import train_tokenizer

    return train_tokenizer(texts, vocab_size=vocab_size, model_max_length=512)


def student_backbone_config(size: str, student: str):
    from transformers import BertConfig, XLMRobertaConfig

    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=4)  # our tokenizer's ids; cost is the same
    if size == "small":
        return XLMRobertaConfig(vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=512, max_position_embeddings=130, **ids)
    if student == "xlmr":
        # xlm-roberta-base. NB: XLMRobertaConfig() defaults are BERT-base's (vocab 30,522, 512 positions);
        # the real model has vocab 250,002, 514 positions, type_vocab_size 1.
        return XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                                layer_norm_eps=1e-5, **ids)
    if student == "minilm":
        # microsoft/Multilingual-MiniLM-L12-H384 (BERT architecture, XLM-R vocabulary)
        return BertConfig(vocab_size=250037, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=1536, max_position_embeddings=512, **ids)
    raise ValueError(f"unknown student {student!r}")


def teacher_clip_config(size: str):
    from transformers import CLIPConfig

    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=4)  # eos 4: CLIP pools at the real </s>
    if size == "small":
        text = dict(vocab_size=8000, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                    num_attention_heads=2, max_position_embeddings=77, **ids)
        vision = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                      patch_size=16, image_size=64)
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=128)
    # openai/clip-vit-large-patch14
    text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, **ids)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  patch_size=14, image_size=224)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)


def build_teacher(size: str, tokenizer, device, dtype, seed: int = 0):
    from transformers import CLIPImageProcessorPil, CLIPModel

    from mvld_hf.teachers import DualEncoderTeacher

    torch.manual_seed(seed)
    config = teacher_clip_config(size)
    model = CLIPModel(config).to(device=device, dtype=dtype)
    px = config.vision_config.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": px}, crop_size={"height": px, "width": px})
    return DualEncoderTeacher(model, tokenizer, processor, name_or_path=f"random-clip-{size}")


def build_student(size: str, student: str, projection_dim: int, device, seed: int = 0):
    from mvld_hf import MultilingualTextTower
    from mvld_hf.modeling_student import MultilingualTextTowerConfig

    torch.manual_seed(seed)
    config = MultilingualTextTowerConfig(backbone_config=student_backbone_config(size, student).to_dict(),
                                         projection_dim=projection_dim)
    return MultilingualTextTower(config).to(device)


# -------------------------------------------------------------------------------------------------- data

_LANGS = ("de", "ru", "zh", "el")
_ALPHABETS = {
    "en": "abcdefghijklmnopqrstuvwxyz",
    "de": "abcdefghijklmnopqrstuvwxyzäöüß",
    "ru": "абвгдежзийклмнопрстуфхцчшщыэюя",
    "zh": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话",  # noqa: E501
    "el": "αβγδεζηθικλμνξοπρστυφχψω",
}


def make_captions(n_english: int, languages_per_caption: int, seq: int, seed: int = 0, vocab_words: int = 3000,
                  n_words: tuple[int, int] | None = None):
    """Rows of {"caption", "english", "language", "image_id"}: each English caption appears with
    ``languages_per_caption`` word-by-word "translations" (Latin, Cyrillic, Han without spaces, Greek).
    Captions have ``2 * seq`` words (to be cut to a token budget), or, given ``n_words=(lo, hi)``, a number of
    words drawn uniformly in that range per English caption (M-CLIP's captions: 6-20 words)."""
    rng = random.Random(seed)

    def word(alphabet, lo=2, hi=9):
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))

    english_words = [word(_ALPHABETS["en"]) for _ in range(vocab_words)]
    lexicon = {lang: [word(_ALPHABETS[lang], 1, 3) if lang == "zh" else word(_ALPHABETS[lang])
                      for _ in range(vocab_words)] for lang in _LANGS}
    rows = []
    for i in range(n_english):
        # longer than needed (cut to the token budget by cut_to_tokens), or of a realistic number of words
        count = rng.randint(*n_words) if n_words else 2 * seq
        idx = [rng.randrange(vocab_words) for _ in range(count)]
        english = " ".join(english_words[j] for j in idx)
        for k in range(languages_per_caption):
            lang = _LANGS[(i + k) % len(_LANGS)]
            sep = "" if lang == "zh" else " "
            rows.append({"caption": sep.join(lexicon[lang][j] for j in idx), "english": english,
                         "language": lang, "image_id": i})
    return rows


def cut_to_tokens(texts, tokenizer, n_tokens: int):
    """Cut each text so it tokenizes to about ``n_tokens`` tokens including <s> and </s> (>= n_tokens after the
    collator's truncation when the text was long enough)."""
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, offsets in zip(texts, enc["offset_mapping"]):
        keep = n_tokens - 2
        out.append(text if len(offsets) <= keep else text[: offsets[keep - 1][1]])
    return out


def make_images(n: int, size: int, seed: int = 0):
    """Smooth random pictures (a gradient and a few ellipses), PIL RGB ``size`` x ``size``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = []
    for _ in range(n):
        base = np.linspace(0, 255, size, dtype=np.float32)
        arr = np.stack([np.add.outer(base * rng.random(), base * rng.random()) / 2 for _ in range(3)], -1)
        image = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(4, max(5, size // 3))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
        images.append(image)
    return images


def build_datasets(n_rows: int, seq: int, vocab: int, image_size: int | None, seed: int = 0):
    """(tokenizer, rows dataset with caption/english/language/image_id [+ image])."""
    import datasets

    per = 4
    rows = make_captions((n_rows + per - 1) // per, per, seq, seed)[:n_rows]
    tokenizer = build_tokenizer([r["caption"] for r in rows] + [r["english"] for r in rows[::per]], vocab)
    captions = cut_to_tokens([r["caption"] for r in rows], tokenizer, seq)
    english = cut_to_tokens([r["english"] for r in rows], tokenizer, seq)
    data = {"caption": captions, "english": english, "language": [r["language"] for r in rows],
            "image_id": [r["image_id"] for r in rows]}
    features = None
    if image_size:
        n_images = max(r["image_id"] for r in rows) + 1
        pictures = make_images(n_images, image_size, seed)
        data["image"] = [pictures[r["image_id"]] for r in rows]
        features = datasets.Features({"caption": datasets.Value("string"), "english": datasets.Value("string"),
                                      "language": datasets.Value("string"), "image_id": datasets.Value("int64"),
                                      "image": datasets.Image()})
    return tokenizer, datasets.Dataset.from_dict(data, features=features)


# -------------------------------------------------------------------------------------- interleaving baton

class Baton:
    """Round-robin turns between worker threads: exactly one holds the baton and computes.

    After every full round the order rotates by one, so each configuration runs in every position of the round
    equally often (a configuration's position changed its step time by several per cent in our runs)."""

    def __init__(self, names):
        self.active = list(names)
        self.turn = 0
        self.cond = threading.Condition()
        self.failed: BaseException | None = None

    def wait(self, name):
        with self.cond:
            self.cond.wait_for(lambda: self.failed is not None or self.active[self.turn] == name)
            if self.failed is not None:
                raise RuntimeError("another configuration failed") from self.failed

    def pass_on(self, name):
        with self.cond:
            i = self.active.index(name) + 1
            if i == len(self.active):  # end of a round: rotate the order
                self.active = self.active[1:] + self.active[:1]
                i = 0
            self.turn = i
            self.cond.notify_all()
        self.wait(name)

    def finish(self, name, error: BaseException | None = None):
        with self.cond:
            i = self.active.index(name)
            self.active.remove(name)
            if error is not None and self.failed is None:
                self.failed = error
            if self.active:
                self.turn = i % len(self.active)
            self.cond.notify_all()


def limit_malloc_arenas(n: int) -> bool:
    """glibc gives every thread that allocates its own malloc arena; with one configuration per thread that
    made step times depend on the thread (up to ~25% at paper size here). A real run trains on one thread, so
    the benchmark asks for ``n`` arenas (mallopt M_ARENA_MAX) before any worker thread starts."""
    if n <= 0 or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, n))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


class StepClock:
    """Per-step wall times and phase times of one configuration."""

    def __init__(self, name, baton, device, phase_sync: bool):
        self.name, self.baton, self.device, self.phase_sync = name, baton, device, phase_sync
        self.steps: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self.t_start = None
        self.first_turn = None
        self.teardown = None

    def sync(self, force=False):
        if self.device.type == "cuda" and (force or self.phase_sync):
            torch.cuda.synchronize(self.device)

    def begin(self):
        self.baton.wait(self.name)
        self.first_turn = self.t_start = time.perf_counter()

    def add(self, phase, seconds):
        self.current[phase] = self.current.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, name):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.add(name, time.perf_counter() - t0)

    def step_end(self):
        self.sync(force=True)
        t = time.perf_counter()
        total = t - self.t_start
        self.steps.append(total)
        self.current["other"] = total - sum(self.current.values())
        self.phases.append(self.current)
        self.current = {}
        self.baton.pass_on(self.name)
        self.t_start = time.perf_counter()

    def end(self):
        self.teardown = time.perf_counter() - self.t_start


# ------------------------------------------------------------------------------------------- the configs

def loss_fn(method, args, queue):
    """The loss of the bare loop: the registry entry DistillationTrainer dispatches to, no Trainer."""
    spec = REGISTRY[method]

    def fn(s, s_en, t, a):
        embeddings = {"s": s, "s_en": s_en, "t": t, "a": a}
        if spec.uses_queue:
            embeddings["keys"] = queue.keys(device=s.device)
        loss = spec.compute(embeddings, args)["loss"]
        if spec.uses_queue:
            queue.enqueue(a)
        return loss

    return fn


def run_bare(clock, model, optimizer, tokenizer, dataset, targs, method, n_steps, pretokenized, device, dtype):
    """The practical limit: forward, loss, backward, clip, step, schedule, zero_grad; no Trainer."""
    from transformers import get_scheduler

    from mvld_hf.data import DistillationCollator
    from mvld_hf.queue import EmbeddingQueue

    queue = EmbeddingQueue(targs.queue_size, model.config.projection_dim)
    compute = loss_fn(method, targs, queue)
    scheduler = get_scheduler(targs.lr_scheduler_type, optimizer, num_warmup_steps=0, num_training_steps=n_steps)
    collator = DistillationCollator(tokenizer, targs)  # only its _tokenize: the same tokenizer call
    b = targs.per_device_train_batch_size
    captions, english = dataset["caption"], dataset["english"]
    t_all = torch.as_tensor(np.asarray(dataset["teacher_text_embeds"], dtype=np.float32))
    a_all = t_all if targs.anchor == "text" else \
        torch.as_tensor(np.asarray(dataset["teacher_image_embeds"], dtype=np.float32))
    n_batches = len(captions) // b
    ed = method == "ed"

    def tokenize(i):
        caps = captions[i * b:(i + 1) * b]
        if ed:
            return collator._tokenize(caps + english[i * b:(i + 1) * b])
        return collator._tokenize(caps)

    pretok = [tokenize(i) for i in range(n_batches)] if pretokenized else None
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext())
    clock.begin()
    for step in range(n_steps):
        i = step % n_batches
        with clock.phase("data"):
            batch = pretok[i] if pretokenized else tokenize(i)
            ids = batch["input_ids"].to(device, non_blocking=True)
            mask = batch["attention_mask"].to(device, non_blocking=True)
            t = t_all[i * b:(i + 1) * b].to(device, non_blocking=True)
            a = t if targs.anchor == "text" else a_all[i * b:(i + 1) * b].to(device, non_blocking=True)
        model.train()
        with clock.phase("forward+loss"):
            with autocast:
                emb_out = model(input_ids=ids, attention_mask=mask).text_embeds
            s, s_en = (emb_out[:b], emb_out[b:]) if ed else (emb_out, None)
            loss = compute(s, s_en, t, a)
        with clock.phase("backward"):
            loss.backward()
        with clock.phase("clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), targs.max_grad_norm)
        with clock.phase("optimizer"):
            optimizer.step()
        scheduler.step()
        model.zero_grad(set_to_none=True)
        clock.step_end()
    clock.end()


def instrument_trainer(trainer, clock):
    """Time the trainer's phases by wrapping its own methods (and the teacher's) on the instance."""
    from transformers import TrainerCallback

    def wrap(obj, attr, phase):
        inner = getattr(obj, attr)

        def timed(*a, **k):
            with clock.phase(phase):
                return inner(*a, **k)
        setattr(obj, attr, timed)

    wrap(trainer, "get_batch_samples", "data")
    wrap(trainer, "_clip_grad_norm", "clip")
    # training_step = _prepare_inputs + compute_loss + accelerator.backward; the rest of it counts as 'other'
    wrap(trainer, "compute_loss", "forward+loss")
    wrap(trainer.accelerator, "backward", "backward")
    if trainer.teacher is not None:
        teacher = trainer.teacher
        for attr in ("encode_text", "encode_image"):
            inner = getattr(teacher, attr)

            def timed(*a, _inner=inner, **k):
                clock.sync()
                t0 = time.perf_counter()
                out = _inner(*a, **k)
                clock.sync()
                dt = time.perf_counter() - t0
                clock.add("teacher", dt)
                clock.add("forward+loss", -dt)  # counted inside compute_loss: move it
                return out
            setattr(teacher, attr, timed)

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            pass

        def on_pre_optimizer_step(self, *a, **k):
            clock.sync()
            self.t0 = time.perf_counter()

        def on_optimizer_step(self, *a, **k):
            clock.sync()
            clock.add("optimizer", time.perf_counter() - self.t0)

        def on_step_end(self, *a, **k):
            clock.step_end()

    trainer.add_callback(Clock())


def run_trainer(clock, trainer, no_sync=False):
    clock.begin()
    _NO_SYNC.active = no_sync
    trainer.train()
    clock.end()


# -------------------------------------------------------------------------------------------------- fixes

FIXES = {
    "workers": "dataloader_num_workers=2 with persistent workers: rows are fetched and tokenized in worker "
               "processes, overlapping the step (useful where the accelerator, not the CPU, does the step)",
    "nosync": "no host-device sync per step: DistillationTrainer's `if not torch.isfinite(loss)` skipped and "
              "logging_nan_inf_filter=False (matters on CUDA only; on CPU there is nothing to sync)",
}

_NO_SYNC = threading.local()  # set in the worker threads of 'nosync' configurations


class _TorchWithoutIsfinite:
    """Stands in for ``torch`` inside mvld_hf.distillation_trainer: ``isfinite`` returns True (no sync) in
    threads running a 'nosync' configuration, everything else is torch itself."""

    def __getattr__(self, name):
        if name == "isfinite" and getattr(_NO_SYNC, "active", False):
            return lambda x: True
        return getattr(torch, name)


def install_nosync_patch():
    import mvld_hf.distillation_trainer as dt

    dt.torch = _TorchWithoutIsfinite()


# ------------------------------------------------------------------------------------------ data path only

def bench_data_path(args):
    """CPU cost per batch of what the Trainer's dataloader does every step (num_workers=0: on the training
    thread, in series with the model): fetch rows from the Arrow dataset, tokenize, stack the embeddings."""
    import datasets

    from mvld_hf import DistillationArguments
    from mvld_hf.data import DistillationCollator

    seq, dim = args.seq or 32, args.dim
    sizes = [int(x) for x in args.data_path.split(",")]
    n_rows = max(sizes) * 4
    tokenizer, rows = build_datasets(n_rows, seq, 8000, None, args.seed)
    rows = rows.map(lambda batch: {"teacher_text_embeds": np.random.default_rng(0).standard_normal(
        (len(batch["caption"]), dim), dtype=np.float32)}, batched=True)  # the column type precompute writes
    variants = {
        "list (as precomputed)": rows,
        "numpy format": rows.with_format("numpy", columns=["teacher_text_embeds"], output_all_columns=True),
        "with image column": None,
    }
    if args.image_column:
        images = make_images(16, 224, args.seed)
        column = datasets.Dataset.from_dict({"image": [images[i % 16] for i in range(len(rows))]},
                                            features=datasets.Features({"image": datasets.Image()}))
        variants["with image column"] = datasets.concatenate_datasets([rows, column], axis=1)
    variants = {k: v for k, v in variants.items() if v is not None}
    targs = DistillationArguments(output_dir=tempfile.mkdtemp(), method="dr", max_length=seq, report_to="none",
                                  per_device_train_batch_size=min(sizes), queue_size=max(sizes) * 16)
    collator = DistillationCollator(tokenizer, targs)
    print(f"\n# bench_training --data-path {args.data_path}  seq={seq} dim={dim}  "
          f"(ms per batch, median of {args.steps or 20} interleaved repetitions)")
    print(f"{'batch':>6s} {'variant':24s} {'fetch rows':>10s} {'tokenize':>9s} {'embeds':>8s} {'total':>8s} "
          f"{'us/sample':>9s}")
    results = {}
    rng = random.Random(args.seed)
    for b in sizes:
        times = {k: {"fetch": [], "tokenize": [], "embeds": []} for k in variants}
        for _ in range(args.steps or 20):
            for name, ds in variants.items():
                idx = rng.sample(range(len(rows)), b)
                t0 = time.perf_counter()
                features = ds.__getitems__(idx)  # what torch's DataLoader fetcher calls
                t1 = time.perf_counter()
                collator._tokenize([f["caption"] for f in features])
                t2 = time.perf_counter()
                torch.as_tensor(np.asarray([f["teacher_text_embeds"] for f in features], dtype=np.float32))
                t3 = time.perf_counter()
                times[name]["fetch"].append(t1 - t0)
                times[name]["tokenize"].append(t2 - t1)
                times[name]["embeds"].append(t3 - t2)
        for name in variants:
            m = {k: median(v) * 1e3 for k, v in times[name].items()}
            total = sum(m.values())
            results[f"{b}:{name}"] = dict(m, total=total)
            print(f"{b:6d} {name:24s} {m['fetch']:10.2f} {m['tokenize']:9.2f} {m['embeds']:8.2f} {total:8.2f} "
                  f"{total / b * 1e3:9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(argv=sys.argv[1:], seq=seq, dim=dim, results_ms=results), f, indent=1)


# ---------------------------------------------------------------------------------------------------- main

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def parse_list(text, allowed=None):
    items = [x.strip() for x in text.split(",") if x.strip()] if text else []
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise SystemExit(f"unknown {bad}; choose from {allowed}")
    return items


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=SIZES, default="small")
    p.add_argument("--student", choices=("xlmr", "minilm"), default="xlmr", help="paper size only")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seq", type=int, default=None, help="tokens per caption (padded length of every batch)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per configuration after the first")
    p.add_argument("--methods", default=",".join(METHODS), help="trainer (and bare) methods, comma separated")
    p.add_argument("--bare", default="tok,pretok", help="bare-loop variants: tok, pretok (comma separated)")
    p.add_argument("--bare-methods", default=None, help="methods of the bare loop (default: --methods)")
    p.add_argument("--naive-methods", default="dr", help="methods of the naive teacher-in-the-loop trainer")
    p.add_argument("--anchor", choices=("text", "image"), default="text",
                   help="anchors of every configuration. image: the precomputed dataset keeps its 'image' column "
                        "(as precompute_teacher_embeddings leaves it) and the naive distiller runs both towers")
    p.add_argument("--fixes", default="", help=f"extra trainer configs with fixes patched in: {','.join(FIXES)}")
    p.add_argument("--fix-methods", default="fd,dr", help="methods the --fixes configs run")
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--num-workers", type=int, default=0, help="Trainer dataloader_num_workers")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:0 or auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="bfloat16/float16: autocast for the student (Trainer bf16/fp16=True), teacher weights cast")
    p.add_argument("--phase-sync", choices=("yes", "no"), default="no",
                   help="synchronize CUDA at every phase boundary (step ends always sync)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (on a CPU shared with other jobs, 1 is far steadier than 2)")
    p.add_argument("--malloc-arenas", type=int, default=1,
                   help="glibc M_ARENA_MAX for this process (0: leave the allocator alone)")
    p.add_argument("--profile", default=None, help="directory: cProfile every configuration's thread there")
    p.add_argument("--json", default=None, help="write all figures to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-path", default=None, metavar="BATCH_SIZES",
                   help="only time the dataloader's per-batch CPU work at these batch sizes, e.g. 32,256")
    p.add_argument("--dim", type=int, default=768, help="--data-path: embedding dimension")
    p.add_argument("--image-column", action="store_true", help="--data-path: also a dataset with an image column")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    for name in ("transformers", "mvld_hf", "datasets", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    import datasets
    import transformers
    from transformers.trainer_callback import PrinterCallback

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    arenas_limited = limit_malloc_arenas(args.malloc_arenas)
    if args.data_path:
        return bench_data_path(args)

    from mvld_hf import DistillationArguments, DistillationTrainer, precompute_teacher_embeddings

    cfg = SIZES[args.size]
    b = args.batch_size or cfg["batch_size"]
    seq = args.seq or cfg["seq"]
    steps = args.steps or cfg["steps"]
    warmup = cfg["warmup"] if args.warmup is None else args.warmup
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtype = getattr(torch, args.dtype)
    phase_sync = args.phase_sync == "yes"
    methods = parse_list(args.methods, METHODS)
    bare_methods = parse_list(args.bare_methods, METHODS) if args.bare_methods is not None else methods
    bare_variants = parse_list(args.bare, ("tok", "pretok"))
    naive_methods = parse_list(args.naive_methods, METHODS)
    fixes = parse_list(args.fixes, tuple(FIXES))
    fix_methods = parse_list(args.fix_methods, METHODS)
    anchor = args.anchor
    n_steps = warmup + steps + 1  # +1: the first step's interval includes train() set-up and is never timed
    if args.queue_size % b:
        raise SystemExit(f"--queue-size {args.queue_size} must be a multiple of --batch-size {b}")
    if "nosync" in fixes:
        install_nosync_patch()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)

    t_setup = time.perf_counter()
    image_size = teacher_clip_config(args.size).vision_config.image_size
    n_rows = b * (n_steps + 1)
    tokenizer, rows = build_datasets(n_rows, seq, cfg["vocab"], image_size if anchor == "image" else None,
                                     args.seed)
    teacher = build_teacher(args.size, tokenizer, device, dtype if device.type == "cuda" else torch.float32,
                            args.seed)
    student = build_student(args.size, args.student, teacher.dim, device, args.seed)
    t_models = time.perf_counter()
    text_rows = rows.remove_columns(["image"]) if "image" in rows.column_names else rows
    precomputed = precompute_teacher_embeddings(text_rows, teacher, anchor="text", batch_size=256,
                                                encode_batch_size=min(64, b))
    if anchor == "image":
        # precompute_teacher_embeddings(anchor="image") would embed every row's image; rows share images (one
        # image, four captions), so embed each image once here (same columns and types, less set-up time)
        first_row = {}
        for i, image_id in enumerate(rows["image_id"]):
            first_row.setdefault(image_id, i)
        ids = sorted(first_row)
        unique = rows.select([first_row[k] for k in ids])["image"]
        emb = teacher.encode_image(unique, batch_size=min(64, b)).cpu().numpy()
        pos = {k: j for j, k in enumerate(ids)}
        precomputed = precomputed.map(lambda batch: {"teacher_image_embeds": emb[[pos[k] for k in batch["image_id"]]]},
                                      batched=True)
        precomputed = datasets.concatenate_datasets([precomputed, rows.select_columns(["image"])], axis=1)
    t_pre = time.perf_counter()

    out_root = tempfile.mkdtemp(prefix="bench_training_")

    def targs_for(method, **extra):
        kwargs = dict(
            output_dir=os.path.join(out_root, "run"), method=method, anchor=anchor,
            per_device_train_batch_size=b, max_steps=n_steps, learning_rate=args.lr, queue_size=args.queue_size,
            max_length=seq, logging_steps=args.logging_steps, save_strategy="no", report_to="none",
            disable_tqdm=True, dataloader_num_workers=args.num_workers, dataloader_drop_last=True, seed=args.seed,
            use_cpu=device.type == "cpu", bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16)
        kwargs.update(extra)
        return DistillationArguments(**kwargs)

    # the Trainer's own default optimizer (fused AdamW for torch >= 2.8), shared by every configuration so all
    # of them update the same weights with the same optimizer code (and one set of AdamW states fits in memory)
    first = DistillationTrainer(model=student, args=targs_for("fd"), train_dataset=precomputed,
                                processing_class=tokenizer)
    optimizer = first.create_optimizer()
    del first

    # grouped by method so that the configurations compared with each other run back to back in every round
    configs = []  # (name, kind, method, extra)
    for m in METHODS:
        for variant in bare_variants:
            if m in bare_methods:
                configs.append((f"bare-{variant}:{m}", "bare", m, variant))
        if m in methods:
            configs.append((f"trainer:{m}", "trainer", m, None))
        for fix in fixes:
            if m in fix_methods:
                configs.append((f"trainer+{fix}:{m}", "trainer", m, fix))
        if m in naive_methods:
            configs.append((f"naive-{anchor}:{m}", "naive", m, None))

    baton = Baton([c[0] for c in configs])
    clocks, workers, errors = {}, [], {}
    for name, kind, method, extra in configs:
        clock = StepClock(name, baton, device, phase_sync)
        clocks[name] = clock
        if kind == "bare":
            targs = targs_for(method)
            target = (lambda clock=clock, targs=targs, method=method, extra=extra:
                      run_bare(clock, student, optimizer, tokenizer, precomputed, targs, method, n_steps,
                               extra == "pretok", device, dtype))
        else:
            dataset, extra_args = precomputed, {}
            if kind == "naive":
                dataset = rows
            elif extra == "nosync":
                extra_args["logging_nan_inf_filter"] = False
            elif extra == "workers":
                extra_args.update(dataloader_num_workers=2, dataloader_persistent_workers=True)
            trainer = DistillationTrainer(model=student, args=targs_for(method, **extra_args), train_dataset=dataset,
                                          processing_class=tokenizer, teacher=teacher if kind == "naive" else None,
                                          optimizers=(optimizer, None))
            trainer.remove_callback(PrinterCallback)  # it only prints the logs (kept out of the output)
            instrument_trainer(trainer, clock)
            target = (lambda clock=clock, trainer=trainer, no_sync=extra == "nosync":
                      run_trainer(clock, trainer, no_sync))

        def work(name=name, target=target):
            profiler = cProfile.Profile() if args.profile else None
            error = None
            try:
                if profiler:
                    profiler.enable()
                target()
            except BaseException as err:  # noqa: BLE001 - reported below, the other threads are released
                error = errors[name] = err
            finally:
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(os.path.join(args.profile, name.replace(":", "_") + ".prof"))
                baton.finish(name, error)
        workers.append(threading.Thread(target=work, name=name, daemon=True))

    t_run = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    t_done = time.perf_counter()
    if errors:
        import traceback

        for _name, err in errors.items():
            if not (isinstance(err, RuntimeError) and "another configuration failed" in str(err)):
                traceback.print_exception(err)
        raise SystemExit(f"failed: {sorted(errors)}")

    # ------------------------------------------------------------------------------------------ report
    names = [c[0] for c in configs]
    timed = {n: clocks[n].steps[1 + warmup:] for n in names}
    phases = {n: clocks[n].phases[1 + warmup:] for n in names}
    med = {n: median(timed[n]) for n in names}

    def ratio(num, den):
        """median over rounds of num_k / den_k (the steps of one round run back to back)."""
        if num not in timed or den not in timed:
            return None
        return median([x / y for x, y in zip(timed[num], timed[den])])

    env = dict(date=time.strftime("%Y-%m-%d"), python=platform.python_version(), torch=torch.__version__,
               transformers=transformers.__version__, datasets=datasets.__version__, device=str(device),
               device_name=(torch.cuda.get_device_name(device) if device.type == "cuda" else
                            platform.processor() or platform.machine()),
               cpu_count=os.cpu_count(), threads=torch.get_num_threads(),
               malloc_arenas=args.malloc_arenas if arenas_limited else "default",
               load_avg=[round(x, 1) for x in os.getloadavg()])
    student_params = sum(p.numel() for p in student.parameters())
    teacher_params = sum(p.numel() for p in teacher.model.parameters())
    student_name = args.student if args.size == "paper" else "small-xlmr"
    print(f"\n# bench_training  {' '.join(sys.argv[1:]) or '(defaults)'}")
    print(f"# {env}")
    print(f"# size={args.size} student={student_name} ({student_params / 1e6:.1f}M params) teacher=CLIP {args.size} "
          f"({teacher_params / 1e6:.1f}M) anchor={anchor} batch={b} seq={seq} dtype={args.dtype} "
          f"optimizer={type(optimizer).__name__}{'(fused)' if optimizer.defaults.get('fused') else ''} "
          f"warmup={warmup} timed={steps} logging_steps={args.logging_steps} num_workers={args.num_workers}")
    print(f"# set-up: data+models {t_models - t_setup:.1f}s, precompute {t_pre - t_models:.1f}s, "
          f"interleaved run {t_done - t_run:.1f}s")
    phase_names = ["data", "forward+loss", "teacher", "backward", "clip", "optimizer", "other"]
    print(f"{'config':24s} {'ms/step':>9s} {'samples/s':>10s} {'first s':>8s} {'end s':>6s} "
          + " ".join(f"{p[:9]:>9s}" for p in phase_names))
    rows_out = {}
    for n in names:
        ph = {p: median([x.get(p, 0.0) for x in phases[n]]) * 1e3 for p in phase_names}
        first_step = clocks[n].steps[0] if clocks[n].steps else float("nan")
        rows_out[n] = dict(ms_per_step=med[n] * 1e3, samples_per_s=b / med[n], first_step_s=first_step,
                           teardown_s=clocks[n].teardown, phases_ms=ph, steps_s=timed[n])
        print(f"{n:24s} {med[n] * 1e3:9.1f} {b / med[n]:10.2f} {first_step:8.2f} {clocks[n].teardown or 0:6.2f} "
              + " ".join(f"{ph[p]:9.1f}" for p in phase_names))
    print("(ms/step: median of the timed steps; first s: seconds to the first step's end incl. train() set-up; "
          "end s: after the last step to the return of train(); phases: medians in ms; other: the rest of the "
          "step: scheduler, zero_grad, Trainer bookkeeping, callbacks, logging)")

    ratios = {}
    print("\n# ratios (median over rounds of the per-round step-time ratio)")
    for m in methods:
        for variant in bare_variants:
            r = ratio(f"bare-{variant}:{m}", f"trainer:{m}")
            if r is not None:
                ratios[f"trainer/bare-{variant}:{m}"] = r
                print(f"  2/1 {m:4s} trainer / bare-{variant:6s} throughput {r:6.3f}   (goal >= 0.9)")
    for m in methods:
        r = ratio(f"naive-{anchor}:{m}", f"trainer:{m}")
        if r is not None:
            ratios[f"trainer/naive-{anchor}:{m}"] = r
            print(f"  2/3 {m:4s} trainer (precomputed) / naive-{anchor} throughput {r:6.2f}   (goal >= 3)")
    for kind in ["trainer"] + [f"bare-{v}" for v in bare_variants]:
        r = ratio(f"{kind}:dr", f"{kind}:fd")
        if r is not None:
            ratios[f"dr/fd:{kind}"] = r
            print(f"  DR/FD step time, {kind:11s} {r:6.3f}   (goal <= 1.05)")
    for fix in fixes:
        for m in fix_methods:
            r = ratio(f"trainer:{m}", f"trainer+{fix}:{m}")
            if r is None:
                continue
            ratios[f"fix:{fix}:{m}"] = r
            extra = ""
            for variant in bare_variants:
                r_bare = ratio(f"bare-{variant}:{m}", f"trainer+{fix}:{m}")
                if r_bare is not None:
                    ratios[f"trainer+{fix}/bare-{variant}:{m}"] = r_bare
                    extra += f"; patched trainer / bare-{variant} {r_bare:.3f}"
            print(f"  fix {fix:8s} {m:4s}: throughput x{r:.3f}{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(argv=sys.argv[1:], env=env, size=args.size, student=student_name, anchor=anchor,
                           batch_size=b, seq=seq, warmup=warmup, steps=steps, student_params=student_params,
                           teacher_params=teacher_params, configs=rows_out, ratios=ratios), f, indent=1)
    if args.profile:
        for n in names:
            path = os.path.join(args.profile, n.replace(":", "_") + ".prof")
            s = io.StringIO()
            stats = pstats.Stats(path, stream=s)
            stats.sort_stats("tottime").print_stats(20)
            print(f"\n# cProfile {n}: top self time (whole thread; waits for the baton show as "
                  f"threading.wait)\n" + s.getvalue()[-5000:])


if __name__ == "__main__":
    main()
