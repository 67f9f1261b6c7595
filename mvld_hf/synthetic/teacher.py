"""An English-only CLIP teacher for the synthetic world, trained from scratch on CPU in a few minutes.

:func:`train_english_teacher` builds a tiny :class:`transformers.CLIPModel` from a :class:`~transformers.CLIPConfig`
(ViT vision tower with 8x8 patches on 64x64 images, a small causal text tower), a word-level tokenizer trained
with ``tokenizers`` on the English captions of the train split, and a ``CLIPImageProcessorPil`` (no torchvision
needed), trains it contrastively (symmetric InfoNCE with a learnable logit scale, AdamW, warm-up + cosine) on
the English captions and images of the ``train`` split only, evaluates English retrieval on the held-out
``test`` split and saves a folder that loads with ``AutoModel``/``AutoTokenizer``/``AutoImageProcessor``.

:func:`english_retrieval` reports text-to-image and image-to-text recall@1/5/10 of such a folder on a split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time

from .scenes import IMAGE_SIZE
from .world import VERSION as WORLD_VERSION
from .world import build_world, default_cache_dir

logger = logging.getLogger(__name__)

#: bump when the teacher recipe changes: it names the default output folder
TEACHER_VERSION = "1"
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[BOS]", "eos": "[EOS]"}
# ids follow the order of this list; eos_token_id != 2 so CLIPTextTransformer pools at the first EOS token
SPECIAL_ORDER = ["pad", "unk", "bos", "eos"]
MAX_TEXT_LENGTH = 32
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]  # the usual CLIP statistics
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# ~0.43M parameters; 500 steps of batch 128 take ~3 minutes on one CPU thread, less on 2 idle cores
DEFAULT_TEXT_CONFIG = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=MAX_TEXT_LENGTH)
DEFAULT_VISION_CONFIG = dict(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
                             image_size=IMAGE_SIZE, patch_size=8)
DEFAULT_PROJECTION_DIM = 128
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                   "preprocessor_config.json", "teacher_info.json")


def default_teacher_dir(fingerprint: str) -> str:
    """``default_cache_dir()/teacher-v<TEACHER_VERSION>-<fingerprint>``: the fingerprint (of the training captions,
    image ids and hyper-parameters) keeps teachers of different worlds or recipes apart."""
    return os.path.join(default_cache_dir(), f"teacher-v{TEACHER_VERSION}-{fingerprint}")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class ThreadChooser:
    """Picks the intra-op thread count by timing real training steps.

    On a machine shared with other jobs, oversubscribed intra-op threads make a small CPU model several times
    slower than a single thread; on an idle machine all cores are faster. Every ``every`` steps the candidates
    (all cores, 1) each run two steps and the faster one is kept until the next probe.
    """

    def __init__(self, torch, candidates: list[int], every: int = 200):
        self.torch, self.candidates, self.every = torch, candidates, every
        self.best = candidates[0]
        self.window = 2 * len(candidates)
        self.times: dict[int, float] = {}

    def threads_for(self, step: int) -> int:
        w = step % self.every
        n = self.candidates[(w - 1) // 2] if len(self.candidates) > 1 and 1 <= w <= self.window else self.best
        if self.torch.get_num_threads() != n:
            self.torch.set_num_threads(n)
        return n

    def record(self, step: int, threads: int, seconds: float) -> None:
        w = step % self.every
        if len(self.candidates) < 2 or not 1 <= w <= self.window:
            return
        self.times[threads] = min(seconds, self.times.get(threads, math.inf)) if w % 2 == 0 else seconds
        if w == self.window:
            self.best = min(self.times, key=self.times.get)
            logger.debug("thread probe at step %d: %s -> %d", step, self.times, self.best)
            self.times = {}


def is_complete(path) -> bool:
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in _REQUIRED_FILES)


# --- data ------------------------------------------------------------------------------------------------------------
def english_pairs(split_ds) -> tuple[list[str], list[int], list[list[str]], list[str]]:
    """Unique images of a world split with their English captions, without decoding any image.

    Returns ``(image_ids, first_row_index_per_image, captions_per_image, scene_per_image)``.
    """
    cols = split_ds.select_columns(["image_id", "english", "scene"]).to_dict()
    order: dict[str, int] = {}
    rows, caps, scenes = [], [], []
    for i, (iid, en, sc) in enumerate(zip(cols["image_id"], cols["english"], cols["scene"])):
        k = order.get(iid)
        if k is None:
            order[iid] = k = len(rows)
            rows.append(i)
            caps.append([])
            scenes.append(sc)
        if en not in caps[k]:
            caps[k].append(en)
    return list(order), rows, caps, scenes


def decode_images(split_ds, rows: list[int]) -> list:
    return [im.convert("RGB") for im in split_ds.select(rows)["image"]]


# --- components ----------------------------------------------------------------------------------------------------
def build_tokenizer(captions: list[str]):
    """Word-level tokenizer (lower-cased, punctuation split off) trained on ``captions``, wrapped as a
    ``PreTrainedTokenizerFast`` that adds ``[BOS] ... [EOS]``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [SPECIAL_TOKENS[k] for k in SPECIAL_ORDER]
    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk"]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(captions, trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1))
    bos, eos = SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"], model_max_length=MAX_TEXT_LENGTH, padding_side="right")


def build_image_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                 image_mean=IMAGE_MEAN, image_std=IMAGE_STD)


def build_config(tokenizer, text_config: dict | None = None, vision_config: dict | None = None,
                 projection_dim: int = DEFAULT_PROJECTION_DIM):
    from transformers import CLIPConfig

    ids = {f"{k}_token_id": tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[k]) for k in ("bos", "eos", "pad")}
    text = dict(DEFAULT_TEXT_CONFIG, vocab_size=len(tokenizer), **ids, **(text_config or {}))
    vision = dict(DEFAULT_VISION_CONFIG, **(vision_config or {}))
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim,
                      logit_scale_init_value=math.log(1 / 0.07))


def _fingerprint(image_ids, captions, hparams: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(hparams, sort_keys=True).encode())
    for iid, caps in zip(image_ids, captions):
        h.update(iid.encode())
        for c in caps:
            h.update(b"\0" + c.encode())
    return h.hexdigest()[:16]


# --- training --------------------------------------------------------------------------------------------------------
def train_english_teacher(world=None, output_dir=None, seed: int = 0, *, steps: int = 500, batch_size: int = 128,
                          lr: float = 2e-3, weight_decay: float = 0.05, warmup_steps: int = 30,
                          text_config: dict | None = None, vision_config: dict | None = None,
                          projection_dim: int = DEFAULT_PROJECTION_DIM, num_threads: int | None = None,
                          evaluate: bool = True, progress: bool = True, overwrite: bool = False) -> str:
    """Train the English CLIP teacher on ``world["train"]`` (English captions + images only) and save it.

    ``world`` defaults to ``build_world(seed)``; ``output_dir`` to :func:`default_teacher_dir`, a folder under
    :func:`~mvld_hf.synthetic.world.default_cache_dir` named after the teacher version and a fingerprint of the
    training data and hyper-parameters (``teacher_info.json`` records it). If ``output_dir`` already holds a
    complete teacher it is returned without training (``overwrite=True`` retrains). With ``evaluate`` the held-out
    English retrieval (:func:`english_retrieval` on ``world["test"]``) is logged and written to
    ``teacher_eval.json``. Returns the folder's path.
    """
    if output_dir is not None:
        output_dir = os.fspath(output_dir)
        if is_complete(output_dir) and not overwrite:
            logger.info("teacher already trained at %s", output_dir)
            return output_dir

    import torch
    from tqdm.auto import tqdm
    from transformers import CLIPModel

    t_start = time.perf_counter()
    if world is None:
        world = build_world(seed=seed)
    train = world["train"]
    image_ids, rows, captions, _ = english_pairs(train)
    if not image_ids:
        raise ValueError("the world's train split is empty")
    hparams = dict(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                   text_config=text_config, vision_config=vision_config, projection_dim=projection_dim, seed=seed,
                   teacher_version=TEACHER_VERSION)
    fingerprint = _fingerprint(image_ids, captions, hparams)
    if output_dir is None:
        output_dir = default_teacher_dir(fingerprint)
        if is_complete(output_dir) and not overwrite:
            logger.info("teacher already trained at %s", output_dir)
            return output_dir

    prev_threads = torch.get_num_threads()
    chooser = ThreadChooser(torch, [num_threads] if num_threads else sorted({_cores(), 1}, reverse=True))
    chooser.threads_for(0)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        tokenizer = build_tokenizer([c for caps in captions for c in caps])
        processor = build_image_processor()
        config = build_config(tokenizer, text_config, vision_config, projection_dim)
        model = CLIPModel(config)

        # tensors of the whole training set: images once, every caption variant tokenised
        pixels = processor(images=decode_images(train, rows), return_tensors="pt")["pixel_values"]
        n_var = max(len(c) for c in captions)
        flat = [caps[v % len(caps)] for caps in captions for v in range(n_var)]
        enc = tokenizer(flat, padding="longest", truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt")
        input_ids = enc["input_ids"].view(len(captions), n_var, -1)
        attention = enc["attention_mask"].view(len(captions), n_var, -1)
        n = len(image_ids)
        bs = min(batch_size, n)
        t_data = time.perf_counter() - t_start

        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)

        def schedule(step):
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            t = (step - warmup_steps) / max(1, steps - warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        max_scale = math.log(100.0)
        model.train()
        perm, pos = torch.randperm(n, generator=gen), 0
        t0 = time.perf_counter()
        bar = tqdm(range(steps), desc="English CLIP teacher", disable=not progress)
        for step in bar:
            threads, t_step = chooser.threads_for(step), time.perf_counter()
            if pos + bs > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos:pos + bs]
            pos += bs
            var = torch.randint(0, n_var, (bs,), generator=gen)
            ids, mask = input_ids[idx, var], attention[idx, var]
            keep = int(mask.sum(1).max())
            out = model(input_ids=ids[:, :keep], attention_mask=mask[:, :keep], pixel_values=pixels[idx],
                        return_loss=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, max_scale)
            chooser.record(step, threads, time.perf_counter() - t_step)
            if step % 10 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{out.loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}",
                                threads=threads)
        t_train = time.perf_counter() - t0
    finally:
        torch.set_num_threads(prev_threads)

    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-teacher-", dir=parent)
    try:
        model.eval()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        info = {"teacher_version": TEACHER_VERSION, "world_version": WORLD_VERSION, "fingerprint": fingerprint,
                "train_images": n, "train_captions": len(flat), "hparams": hparams,
                "seconds": {"data": round(t_data, 2), "train": round(t_train, 2)}}
        if evaluate:
            t1 = time.perf_counter()
            metrics = english_retrieval(tmp, world)
            metrics.update(english_vqa(tmp, seed=seed))
            info["seconds"]["eval"] = round(time.perf_counter() - t1, 2)
            with open(os.path.join(tmp, "teacher_eval.json"), "w") as f:
                json.dump(metrics, f, indent=2)
            logger.info("teacher held-out English retrieval: %s", metrics)
        with open(os.path.join(tmp, "teacher_info.json"), "w") as f:  # written last: marks a complete folder
            json.dump(info, f, indent=2)
        if os.path.isdir(output_dir):  # incomplete leftover, or overwrite=True
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("trained English teacher in %.1fs (data %.1fs, train %.1fs) -> %s",
                time.perf_counter() - t_start, t_data, t_train, output_dir)
    return output_dir


# --- evaluation ------------------------------------------------------------------------------------------------------
def english_retrieval(path, world=None, split: str = "test", batch_size: int = 256,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Brute-force English retrieval of the teacher at ``path`` on ``world[split]`` (default: held-out test).

    Gallery: the split's distinct images; queries: their English captions (every variant). T2I R@k: the
    caption's image (or an image of the same composition) is among the k most similar images; I2T R@k: one of the
    image's captions is among the k most similar captions. Loads the folder with the ``transformers`` Auto classes.
    """
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    if world is None:
        world = build_world()
    ds = world[split]
    image_ids, rows, captions, scenes = english_pairs(ds)
    model = AutoModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = AutoImageProcessor.from_pretrained(path)
    images = decode_images(ds, rows)
    texts = [c for caps in captions for c in caps]
    owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
    with torch.no_grad():
        img = torch.cat([model.get_image_features(pixel_values=processor(images=images[i:i + batch_size],
                                                                          return_tensors="pt")["pixel_values"]).pooler_output
                         for i in range(0, len(images), batch_size)])
        txt = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, return_tensors="pt")
            txt.append(model.get_text_features(input_ids=enc["input_ids"],
                                               attention_mask=enc["attention_mask"]).pooler_output)
        txt = torch.cat(txt)
    img = torch.nn.functional.normalize(img, dim=-1)
    txt = torch.nn.functional.normalize(txt, dim=-1)
    sim = txt @ img.T  # [captions, images]
    scene_idx = {s: k for k, s in enumerate(dict.fromkeys(scenes))}
    img_scene = torch.tensor([scene_idx[s] for s in scenes])
    out = {"split": split, "num_images": len(images), "num_captions": len(texts)}
    kmax = min(max(ks), len(images))
    top_img = sim.topk(kmax, dim=1).indices  # [captions, k]
    hit_t2i = img_scene[top_img] == img_scene[owner].unsqueeze(1)
    top_txt = sim.T.topk(min(max(ks), len(texts)), dim=1).indices  # [images, k]
    hit_i2t = img_scene[owner[top_txt]] == img_scene.unsqueeze(1)
    for k in ks:
        out[f"t2i_r{k}"] = round(hit_t2i[:, :k].any(1).float().mean().item(), 4)
    for k in ks:
        out[f"i2t_r{k}"] = round(hit_i2t[:, :k].any(1).float().mean().item(), 4)
    return out



def english_vqa(path, vqa=None, seed: int = 0, batch_size: int = 256) -> dict:
    """Accuracy of the teacher at ``path`` on the English rows of the multiple-choice VQA (default:
    ``build_vqa(seed, languages=["en"])``, not cached): each option caption is scored by its cosine similarity
    with the image. Returns ``{"vqa_en_accuracy", "vqa_en_questions"}``."""
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from .world import build_vqa

    if vqa is None:
        vqa = build_vqa(seed=seed, languages=["en"], cache_dir=False)
    vqa = vqa.filter(lambda lang: lang == "en", input_columns="language")
    model = AutoModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = AutoImageProcessor.from_pretrained(path)
    meta = vqa.remove_columns("image").to_dict()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(vqa), batch_size):
            stop = min(start + batch_size, len(vqa))
            images = [im.convert("RGB") for im in vqa.select(range(start, stop))["image"]]
            img = model.get_image_features(pixel_values=processor(images=images, return_tensors="pt")["pixel_values"])
            img = torch.nn.functional.normalize(img.pooler_output, dim=-1)
            options = meta["options"][start:stop]
            flat = [o for opts in options for o in opts]
            enc = tokenizer(flat, padding=True, truncation=True, return_tensors="pt")
            txt = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            txt = torch.nn.functional.normalize(txt.pooler_output, dim=-1)
            k = 0
            for row, opts in enumerate(options):
                scores = txt[k:k + len(opts)] @ img[row]
                k += len(opts)
                correct += int(scores.argmax()) == meta["answer"][start + row]
    return {"vqa_en_accuracy": round(correct / max(1, len(vqa)), 4), "vqa_en_questions": len(vqa)}
