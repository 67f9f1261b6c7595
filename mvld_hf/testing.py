"""Tiny, offline building blocks: tokenizers trained in code and random models built from configs.

Used by the test suite, the benchmarks and anyone who wants to try the trainer without the Hub.
"""

from __future__ import annotations

import itertools
import random

import torch

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "<mask>", "</s>"]  # eos id 4: CLIP then pools at the real EOS


def train_tokenizer(texts, vocab_size: int = 1000, model_max_length: int = 64, max_token_length: int | None = None):
    """A BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (``<s> text </s>``, pad id 0, eos id 4).

    Pre-tokenization splits on whitespace and isolates punctuation. Scripts written without spaces (Chinese,
    Japanese, Thai) reach BPE as whole sentences; ``max_token_length`` caps the merges so a token cannot
    span two objects of a caption (measured on the offline world: uncapped, Japanese captions became ~5
    tokens such as "黒いハート、小さな", and held-out retrieval in Japanese lagged the other languages).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1,
                                  show_progress=False, max_token_length=max_token_length)
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>", model_max_length=model_max_length)


def tiny_backbone_config(vocab_size: int, hidden_size: int = 32, layers: int = 2, heads: int = 2,
                         max_positions: int = 66, model_type: str = "xlm-roberta"):
    """A random XLM-R-style (or BERT/DistilBERT) encoder config small enough for CPU tests."""
    from transformers import BertConfig, DistilBertConfig, XLMRobertaConfig

    if model_type == "distilbert":
        return DistilBertConfig(vocab_size=vocab_size, dim=hidden_size, n_layers=layers, n_heads=heads,
                                hidden_dim=hidden_size * 4, max_position_embeddings=max_positions, pad_token_id=0)
    cls = {"xlm-roberta": XLMRobertaConfig, "bert": BertConfig}[model_type]
    return cls(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=hidden_size * 4, max_position_embeddings=max_positions, pad_token_id=0,
               bos_token_id=2, eos_token_id=4)


def tiny_student(tokenizer, projection_dim: int, seed: int = 0, **backbone_kwargs):
    """A random :class:`~mvld_hf.MultilingualTextTower` over ``tokenizer``'s vocabulary."""
    from .modeling_student import MultilingualTextTower, MultilingualTextTowerConfig

    torch.manual_seed(seed)
    config = MultilingualTextTowerConfig(
        backbone_config=tiny_backbone_config(len(tokenizer), **backbone_kwargs).to_dict(),
        projection_dim=projection_dim)
    return MultilingualTextTower(config)


def tiny_clip_config(vocab_size: int, projection_dim: int = 16, image_size: int = 32, patch_size: int = 8,
                     hidden_size: int = 32):
    from transformers import CLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
                pad_token_id=0, bos_token_id=2, eos_token_id=4)
    vision = dict(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                  intermediate_size=hidden_size * 2, num_hidden_layers=2, num_attention_heads=2)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def tiny_clip_teacher(tokenizer, projection_dim: int = 16, image_size: int = 32, seed: int = 0):
    """A random ``CLIPModel`` wrapped as a frozen :class:`~mvld_hf.DualEncoderTeacher`."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    from .teachers import DualEncoderTeacher

    torch.manual_seed(seed)
    model = CLIPModel(tiny_clip_config(len(tokenizer), projection_dim, image_size))
    processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                      crop_size={"height": image_size, "width": image_size})
    return DualEncoderTeacher(model, tokenizer, processor, name_or_path="tiny-random-clip")


COLOURS = {"en": ["red", "blue", "green", "yellow"], "de": ["rot", "blau", "grün", "gelb"],
           "fr": ["rouge", "bleu", "vert", "jaune"]}
SHAPES = {"en": ["circle", "square", "triangle", "star"], "de": ["Kreis", "Quadrat", "Dreieck", "Stern"],
          "fr": ["cercle", "carré", "triangle", "étoile"]}


class CountingTeacher:
    """Wraps a teacher and counts the texts it embeds in this process (tests of where teacher work happens)."""

    def __init__(self, teacher):
        self.teacher, self.texts = teacher, 0

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def encode_text(self, texts, **kwargs):
        self.texts += len(texts)
        return self.teacher.encode_text(texts, **kwargs)

    def encode_tokenized(self, tokens):  # captions tokenized elsewhere (the collator, DataLoader workers)
        self.texts += len(tokens["input_ids"])
        return self.teacher.encode_tokenized(tokens)


def toy_parallel_corpus(seed: int = 0, with_images: bool = False, image_size: int = 32):
    """A small caption corpus: every (colour, shape, count) phrase in English, German and French, as rows of
    ``{"caption", "english", "language", "image_id"}`` (plus a flat-colour PIL ``image`` if asked).

    Grammar is deliberately simple ("zwei rote Kreise" is not attempted); the real multilingual world lives in
    :mod:`mvld_hf.synthetic`.
    """
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    rows = []
    rgb = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 180, 30), "yellow": (230, 220, 40)}
    for (ci, colour), (si, shape), big in itertools.product(enumerate(COLOURS["en"]), enumerate(SHAPES["en"]),
                                                           (False, True)):
        english = f"a {'big' if big else 'small'} {colour} {shape}"
        captions = {
            "en": english,
            "de": f"ein {'großes' if big else 'kleines'} {COLOURS['de'][ci]}es {SHAPES['de'][si]}",
            "fr": f"un {'grand' if big else 'petit'} {SHAPES['fr'][si]} {COLOURS['fr'][ci]}",
        }
        image_id = f"{colour}-{shape}-{int(big)}"
        image = None
        if with_images:
            image = Image.new("RGB", (image_size, image_size), "white")
            r = image_size // 2 - 2 if big else image_size // 4
            c = image_size // 2
            ImageDraw.Draw(image).ellipse([c - r, c - r, c + r, c + r], fill=rgb[colour])
        for language, caption in captions.items():
            row = {"caption": caption, "english": english, "language": language, "image_id": image_id}
            if with_images:
                row["image"] = image
            rows.append(row)
    rng.shuffle(rows)
    return rows
