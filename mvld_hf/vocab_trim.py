"""Vocabulary trimming for deployment: keep only the tokens a corpus of the target languages uses.

A multilingual student spends most of its parameters on its word embeddings (multilingual-e5-small: 96M of
118M, a 250k-token table). Serving a few languages needs only the rows their text uses. :func:`trim_vocabulary`
tokenizes a corpus of the target languages, keeps the tokens it uses (with the special and added tokens, and
optionally every single-character piece of the corpus's characters), and rebuilds both sides consistently:

- the fast tokenizer (``tokenizer.json``): a Unigram (XLM-R, e5, mT5-style) or WordPiece (BERT-style) model
  with the kept pieces renumbered ``0..n-1`` in their old order, and every id the tokenizer names (unknown
  token, added tokens, the post-processor's special tokens, padding) remapped;
- the student's input embedding matrix (the kept rows) and the backbone config's ``vocab_size`` and special
  token ids.

Text whose tokenization uses only kept pieces gets the same pieces (Unigram's best segmentation and
WordPiece's longest match are unchanged when only pieces off their path are removed), hence exactly the same
embedding. Text outside the kept languages falls back on shorter pieces or the unknown token; the student
records the trim (``config.vocabulary_trim``: languages, sizes, the policy) and its forward warns
(:class:`OutOfVocabularyWarning`) or raises (:class:`OutOfVocabularyError`) when the share of unknown tokens
in a batch is above ``max_unknown_rate``. The model card names the languages.

Example (a student on e5-small / XLM-R, German and French catalog text as the corpus)::

    small, small_tokenizer, report = trim_vocabulary(student, tokenizer, corpus_texts, languages=["de", "fr"])
    small.save_pretrained("student-de-fr"); small_tokenizer.save_pretrained("student-de-fr")

Measured on e5-small: ``benchmarks/RESULTS_shrink.md``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable

import torch

ON_UNKNOWN = ("warn", "raise", "ignore")
DEFAULT_MAX_UNKNOWN_RATE = 0.05
_SPECIAL_ID_ATTRIBUTES = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                          "unk_token_id", "mask_token_id", "decoder_start_token_id")


class OutOfVocabularyWarning(UserWarning):
    """Text outside the languages a trimmed student kept: many unknown tokens."""


class OutOfVocabularyError(ValueError):
    """Text outside the languages a trimmed student kept (``on_unknown="raise"``)."""


def used_token_counts(tokenizer, corpus: Iterable[str], batch_size: int = 1000) -> Counter:
    """How often each token id occurs in the tokenization of ``corpus`` (no special tokens, no truncation)."""
    counts: Counter = Counter()
    batch: list[str] = []

    def flush():
        if batch:
            for ids in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
                counts.update(ids)
            batch.clear()

    for text in corpus:
        if not isinstance(text, str):
            raise TypeError(f"the corpus must be strings, got {type(text).__name__}")
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    return counts


def _backend_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise TypeError(f"vocabulary trimming needs a fast tokenizer (tokenizer.json), got {type(tokenizer).__name__}")
    return json.loads(backend.to_str())


def _character_pieces(data: dict, characters: set[str]) -> list[str]:
    """The single-character pieces (and their word-start / continuation forms) of ``characters``."""
    model = data["model"]
    if model["type"] == "Unigram":
        prefix = "▁"
        for part in (data.get("pre_tokenizer") or {}).get("pretokenizers", [data.get("pre_tokenizer") or {}]):
            if isinstance(part, dict) and part.get("type") == "Metaspace":
                prefix = part.get("replacement", prefix)
        return [p for c in characters for p in (c, prefix + c)]
    prefix = model.get("continuing_subword_prefix") or "##"
    return [p for c in characters for p in (c, prefix + c)]


def _remap_processor(node, new_id: dict[int, int]):
    """Remap the token ids a post-processor names (TemplateProcessing, Roberta/BertProcessing, Sequence)."""
    if isinstance(node, dict):
        if node.get("type") in ("RobertaProcessing", "BertProcessing"):
            for key in ("sep", "cls"):
                if key in node:
                    node[key] = [node[key][0], new_id[node[key][1]]]
        if isinstance(node.get("special_tokens"), dict):
            for spec in node["special_tokens"].values():
                spec["ids"] = [new_id[i] for i in spec["ids"]]
        for key in ("processors",):
            for child in node.get(key) or []:
                _remap_processor(child, new_id)


def trimmed_tokenizer_json(data: dict, keep: list[int]) -> dict:
    """``tokenizer.json`` (as a dict) reduced to the ids ``keep`` (sorted), renumbered ``0..len(keep)-1``."""
    data = copy.deepcopy(data)
    new_id = {old: new for new, old in enumerate(keep)}
    model = data["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    elif model["type"] == "WordPiece":
        model["vocab"] = {piece: new_id[i] for piece, i in model["vocab"].items() if i in new_id}
    else:
        raise NotImplementedError(f"vocabulary trimming supports Unigram and WordPiece tokenizers, not "
                                  f"{model['type']} (a BPE vocabulary's merges would need rebuilding)")
    for token in data.get("added_tokens") or []:
        token["id"] = new_id[token["id"]]
    _remap_processor(data.get("post_processor"), new_id)
    if data.get("padding") and data["padding"].get("pad_id") is not None:
        data["padding"]["pad_id"] = new_id[data["padding"]["pad_id"]]
    return data


def _rebuild_tokenizer(tokenizer, data: dict):
    """The same tokenizer class with ``data`` as its ``tokenizer.json`` (through a save and a reload)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="mvld_trim_") as tmp:
        tokenizer.save_pretrained(tmp)
        for name in getattr(tokenizer, "vocab_files_names", {}).values():  # stale slow-tokenizer files
            path = os.path.join(tmp, name)
            if name != "tokenizer.json" and os.path.isfile(path):
                os.remove(path)
        with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        return AutoTokenizer.from_pretrained(tmp)


def trim_vocabulary(student, tokenizer, corpus: Iterable[str], languages, *, min_count: int = 1,
                    keep_characters: bool = True, extra_texts: Iterable[str] = (),
                    max_unknown_rate: float = DEFAULT_MAX_UNKNOWN_RATE, on_unknown: str = "warn"):
    """A copy of ``student`` and its tokenizer that keep only the tokens ``corpus`` uses.

    Args:
        student: a :class:`~mvld_hf.MultilingualTextTower` (not modified).
        tokenizer: its fast tokenizer (Unigram or WordPiece ``tokenizer.json``).
        corpus: text in the target languages (human text is best: every token it uses is kept).
        languages: the languages the corpus covers (ISO codes; recorded in the config and the card).
        min_count: keep tokens used at least this often (1: every used token).
        keep_characters: also keep the single-character pieces of every character the corpus contains, so an
            unseen word of these languages still splits into known pieces instead of the unknown token.
        extra_texts: more text whose tokens must be kept (prompts, product names).
        max_unknown_rate: the share of unknown tokens (padding excluded) in a batch above which the student warns
            or raises.
        on_unknown: ``"warn"`` (:class:`OutOfVocabularyWarning`), ``"raise"`` (:class:`OutOfVocabularyError`) or
            ``"ignore"``.

    Returns:
        ``(student, tokenizer, report)``; ``report`` has ``kept``, ``source_vocab_size``, ``corpus_tokens``,
        ``languages`` and the embedding parameters before and after.
    """
    if getattr(getattr(student, "config", None), "model_type", None) != "mvld_text_tower":
        raise TypeError(f"trim_vocabulary needs a MultilingualTextTower, got {type(student).__name__}")
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, got {on_unknown!r}")
    if not 0 <= max_unknown_rate <= 1:
        raise ValueError(f"max_unknown_rate must be in [0, 1], got {max_unknown_rate!r}")
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(",")]
    languages = [x for x in languages if x]
    if not languages:
        raise ValueError("name the languages the corpus covers (languages=['de', 'fr']): the card records them")
    corpus = list(corpus)
    counts = used_token_counts(tokenizer, corpus)
    if not counts:
        raise ValueError("the corpus is empty: nothing to keep")
    extra = used_token_counts(tokenizer, extra_texts)
    data = _backend_json(tokenizer)
    embeddings = student.get_input_embeddings()
    rows = embeddings.weight.shape[0]
    keep = {i for i, n in counts.items() if n >= min_count} | set(extra)
    keep |= {int(t["id"]) for t in data.get("added_tokens") or []}
    keep |= {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    if keep_characters:
        characters = {c for text in corpus for c in text if not c.isspace()}
        for piece in _character_pieces(data, characters):
            index = tokenizer.convert_tokens_to_ids(piece)
            if isinstance(index, int) and index != tokenizer.unk_token_id:
                keep.add(index)
    keep = sorted(i for i in keep if 0 <= i < rows)
    new_id = {old: new for new, old in enumerate(keep)}

    new_tokenizer = _rebuild_tokenizer(tokenizer, trimmed_tokenizer_json(data, keep))
    config = copy.deepcopy(student.config)
    backbone_config = config.backbone_config
    for name in _SPECIAL_ID_ATTRIBUTES:
        for cfg in (backbone_config, config):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(cfg, name, new_id.get(value))
    backbone_config.vocab_size = len(keep)
    previous = student.config.vocabulary_trim or {}
    config.vocabulary_trim = {
        "languages": languages, "kept": len(keep),
        "source_vocab_size": int(previous.get("source_vocab_size", rows)),
        "unk_token_id": new_id.get(tokenizer.unk_token_id) if tokenizer.unk_token_id is not None else None,
        "max_unknown_rate": float(max_unknown_rate), "on_unknown": on_unknown,
    }
    trimmed = type(student)(config)
    state = {k: v for k, v in student.state_dict().items()}
    weight_key = next(k for k, v in student.named_parameters() if v is embeddings.weight)
    state[weight_key] = embeddings.weight.detach()[keep].clone()
    trimmed.load_state_dict(state)
    trimmed.get_input_embeddings().weight.requires_grad_(embeddings.weight.requires_grad)
    trimmed.train(student.training)
    report = {"languages": languages, "kept": len(keep), "source_vocab_size": rows,
              "corpus_texts": len(corpus), "corpus_tokens": int(sum(counts.values())),
              "embedding_parameters_before": int(embeddings.weight.numel()),
              "embedding_parameters_after": int(trimmed.get_input_embeddings().weight.numel())}
    return trimmed, new_tokenizer, report


def check_unknown_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, trim: dict) -> float | None:
    """The share of unknown tokens in a batch of a trimmed student; warns or raises above the trim's limit."""
    unk = trim.get("unk_token_id")
    if unk is None or trim.get("on_unknown", "warn") == "ignore" or input_ids is None:
        return None
    mask = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    total = int(mask.sum())
    if total == 0:
        return 0.0
    rate = int(((input_ids == unk) & mask).sum()) / total
    if rate > trim.get("max_unknown_rate", DEFAULT_MAX_UNKNOWN_RATE):
        message = (f"{rate:.1%} of this batch's tokens are unknown to this student: its vocabulary was trimmed to "
                   f"{', '.join(trim.get('languages') or [])} ({trim.get('kept')} of {trim.get('source_vocab_size')} "
                   "tokens); text in other languages or scripts is embedded poorly")
        if trim.get("on_unknown") == "raise":
            raise OutOfVocabularyError(message)
        warnings.warn(message, OutOfVocabularyWarning, stacklevel=3)
    return rate

