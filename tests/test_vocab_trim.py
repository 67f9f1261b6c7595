"""Vocabulary trimming: a student that keeps only the tokens of its target languages."""

import json
import warnings

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from mvld_hf.export import export_sentence_transformer
from mvld_hf.testing import tiny_student, toy_parallel_corpus, train_tokenizer
from mvld_hf.vocab_trim import OutOfVocabularyError, OutOfVocabularyWarning, trim_vocabulary

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]
CJK = ["日本語のテキストです", "这是中文文本"]


def _tokenizer(kind: str, texts):
    """A Unigram (XLM-R/e5-style) or WordPiece (BERT-style) fast tokenizer trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=SPECIAL, unk_token="<unk>",
                                          show_progress=False)
    else:
        tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIAL, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", cls_token="<s>", sep_token="</s>", model_max_length=64)


@pytest.fixture(scope="module")
def rows():
    return toy_parallel_corpus()


def _captions(rows, languages):
    return [r["caption"] for r in rows if r["language"] in languages]


@pytest.mark.parametrize("kind", ["unigram", "wordpiece"])
def test_trimmed_student_embeds_in_vocabulary_text_exactly_as_before(rows, kind):
    tokenizer = _tokenizer(kind, [r["caption"] for r in rows] + CJK)
    student = tiny_student(tokenizer, projection_dim=8, seed=3).eval()
    german = _captions(rows, {"de"})
    small, small_tok, report = trim_vocabulary(student, tokenizer, german[: len(german) // 2], ["de"])
    assert report["kept"] < report["source_vocab_size"] == len(tokenizer)
    assert len(small_tok) == report["kept"] == small.get_input_embeddings().weight.shape[0]
    assert small.config.backbone_config.vocab_size == report["kept"]
    assert small.config.vocabulary_trim["languages"] == ["de"]
    # the corpus and any text made only of kept pieces: the same pieces, hence exactly the same embedding
    in_vocab = [t for t in german if set(tokenizer.tokenize(t)) <= set(small_tok.get_vocab())]
    assert len(in_vocab) >= len(german) // 2
    for text in in_vocab:
        assert small_tok.tokenize(text) == tokenizer.tokenize(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfVocabularyWarning)  # in-vocabulary text never warns
        assert torch.equal(small.encode(in_vocab, small_tok), student.encode(in_vocab, tokenizer))
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # special ids remapped to the same tokens
        old_id, new_id = getattr(student.config, name), getattr(small.config, name)
        assert tokenizer.convert_ids_to_tokens(old_id) == small_tok.convert_ids_to_tokens(new_id), name
    assert small_tok.convert_ids_to_tokens(small_tok.pad_token_id) == "<pad>"
    assert student.get_input_embeddings().weight.shape[0] == len(tokenizer)  # the original is untouched


def test_out_of_vocabulary_text_warns_or_raises(rows):
    tokenizer = _tokenizer("unigram", [r["caption"] for r in rows] + CJK)
    student = tiny_student(tokenizer, projection_dim=8).eval()
    small, small_tok, _ = trim_vocabulary(student, tokenizer, _captions(rows, {"de"}), "de")
    with pytest.warns(OutOfVocabularyWarning, match=r"unknown to this student.*trimmed to de"):
        small.encode(CJK, small_tok)
    strict, strict_tok, _ = trim_vocabulary(student, tokenizer, _captions(rows, {"de"}), ["de"],
                                            on_unknown="raise")
    with pytest.raises(OutOfVocabularyError, match="trimmed to de"):
        strict.encode(CJK, strict_tok)
    quiet, quiet_tok, _ = trim_vocabulary(student, tokenizer, _captions(rows, {"de"}), ["de"], on_unknown="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfVocabularyWarning)
        quiet.encode(CJK, quiet_tok)


def test_trim_refuses_what_it_cannot_do(rows):
    bpe = train_tokenizer([r["caption"] for r in rows], vocab_size=200)
    student = tiny_student(bpe, projection_dim=8)
    with pytest.raises(NotImplementedError, match="Unigram and WordPiece"):
        trim_vocabulary(student, bpe, ["ein roter Kreis"], ["de"])
    tokenizer = _tokenizer("unigram", [r["caption"] for r in rows])
    student = tiny_student(tokenizer, projection_dim=8)
    with pytest.raises(ValueError, match="languages"):
        trim_vocabulary(student, tokenizer, ["ein roter Kreis"], [])
    with pytest.raises(ValueError, match="on_unknown"):
        trim_vocabulary(student, tokenizer, ["ein roter Kreis"], ["de"], on_unknown="shout")
    with pytest.raises(ValueError, match="empty"):
        trim_vocabulary(student, tokenizer, [], ["de"])


def test_trimmed_student_saves_exports_and_reloads(rows, tmp_path):
    tokenizer = _tokenizer("unigram", [r["caption"] for r in rows] + CJK)
    student = tiny_student(tokenizer, projection_dim=8, seed=1).eval()
    corpus = _captions(rows, {"de", "fr"})
    small, small_tok, report = trim_vocabulary(student, tokenizer, corpus, ["de", "fr"])
    want = student.encode(corpus, tokenizer)

    small.save_pretrained(tmp_path / "student")
    small_tok.save_pretrained(tmp_path / "student")
    again = AutoModel.from_pretrained(tmp_path / "student").eval()
    again_tok = AutoTokenizer.from_pretrained(tmp_path / "student")
    assert again.config.vocabulary_trim == small.config.vocabulary_trim
    assert torch.equal(again.encode(corpus, again_tok), want)
    with pytest.warns(OutOfVocabularyWarning):  # the policy travels with the checkpoint
        again.encode(CJK, again_tok)

    result = export_sentence_transformer(again, again_tok, None, tmp_path / "st", include_images=False)
    assert result.vocabulary_trim["languages"] == ["de", "fr"]
    st_config = json.load(open(tmp_path / "st" / "config_sentence_transformers.json"))
    assert st_config["mvld_hf"]["vocabulary_trim"]["kept"] == report["kept"]
    card = open(tmp_path / "st" / "README.md", encoding="utf-8").read()
    assert f"trimmed for de, fr: {report['kept']} of the backbone's {report['source_vocab_size']} tokens" in card
    assert "The vocabulary was trimmed to de, fr" in card
    loaded = SentenceTransformer(str(tmp_path / "st"), local_files_only=True)
    assert len(loaded.tokenizer) == report["kept"]
    assert torch.allclose(loaded.encode(corpus, convert_to_tensor=True).cpu(), want, atol=1e-5)
