"""Vocabulary coverage and per-language word order/agreement of captions and questions."""

import itertools
import re
import unicodedata

import pytest

from mvld_hf.synthetic import LANGUAGES, SCRIPTS, caption, get_realiser, make_scenes
from mvld_hf.synthetic import vocab as V

NON_LATIN = [lang for lang in LANGUAGES if SCRIPTS[lang] != "Latin"]
NO_SPACES = ["zh", "ja", "th"]
# Unicode name prefix of the characters each non-Latin language must be written in
SCRIPT_NAME = {"ru": "CYRILLIC", "zh": "CJK", "ja": ("CJK", "HIRAGANA", "KATAKANA"), "th": "THAI",
               "hi": "DEVANAGARI", "bn": "BENGALI", "te": "TELUGU", "ar": "ARABIC"}

ALL_OBJECTS = [{"shape": s, "colour": c, "size": z} for s, c, z in itertools.product(V.SHAPES, V.COLOURS, V.SIZES)]


def _descs():
    scenes = make_scenes(0, "train", 150) + make_scenes(0, "test", 60)
    return [sc.description() for sc in scenes]


DESCS = _descs()


def test_language_set():
    assert LANGUAGES[0] == "en" and len(LANGUAGES) >= 13
    assert {"sw", "bn", "te", "zh", "ja", "th"} <= set(LANGUAGES)
    assert len(set(SCRIPTS.values())) >= 5
    assert set(V.TABLES) == set(LANGUAGES)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_vocabulary_entry_is_translated(lang):
    table = V.TABLES[lang]
    for key, concepts in (("shapes", V.SHAPES), ("colours", V.COLOURS), ("sizes", V.SIZES),
                          ("relations", V.RELATIONS), ("directions", V.DIRECTIONS), ("counts", V.COUNTS)):
        assert set(table[key]) == set(concepts), (lang, key)
        for concept in concepts:
            entry = table[key][concept]
            values = _leaves(entry)
            assert values and all(isinstance(v, (str, int)) and v != "" for v in values), (lang, key, concept)
    # words of one kind are pairwise different, so captions always tell the concepts apart
    for key in ("shapes", "colours", "sizes", "relations", "directions", "counts"):
        forms = [repr(table[key][c]) for c in table[key]]
        assert len(set(forms)) == len(forms), (lang, key)


def _leaves(entry):
    if isinstance(entry, dict):
        return [x for v in entry.values() for x in _leaves(v)]
    if isinstance(entry, (tuple, list)):
        return [x for v in entry for x in _leaves(v)]
    return [entry]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_captions_identify_the_composition(lang):
    for variant in (0, 1):
        seen = {}
        for d in DESCS:
            text = caption(d, lang, variant)
            key = repr(d)
            assert seen.setdefault(text, key) == key, (lang, variant, text)
    for d in DESCS[:50]:
        assert caption(d, lang, 0) != caption(d, lang, 1)


@pytest.mark.parametrize("lang", NON_LATIN)
def test_no_english_or_latin_leaks_into_non_latin_languages(lang):
    real = get_realiser(lang)
    texts = [caption(d, lang, v) for d in DESCS for v in (0, 1)]
    texts += [real.q_colour(s) for s in V.SHAPES] + [real.q_shape(c) for c in V.COLOURS]
    texts += [real.q_count(), real.q_relation("circle", "star")] + [real.count(n) for n in V.COUNTS]
    wanted = SCRIPT_NAME[lang] if isinstance(SCRIPT_NAME[lang], tuple) else (SCRIPT_NAME[lang],)
    for t in texts:
        assert not re.search(r"[A-Za-z]", t), (lang, t)
        letters = [ch for ch in t if ch.isalpha()]
        assert letters and all(unicodedata.name(ch).startswith(wanted) for ch in letters), (lang, t)


@pytest.mark.parametrize("lang", ["de", "fr", "es", "sw"])
def test_no_english_content_words_in_latin_languages(lang):
    english = set(V.SHAPES) | set(V.COLOURS) | set(V.SIZES) | {"object", "objects", "left", "right", "above", "below"}
    allowed = {"fr": {"triangle", "orange"}}.get(lang, set())  # real French words
    for d in DESCS:
        words = set(re.findall(r"\w+", caption(d, lang, 1).lower()))
        assert not (words & english) - allowed, (lang, caption(d, lang, 1))


@pytest.mark.parametrize("lang", NO_SPACES)
def test_scripts_without_spaces(lang):
    for d in DESCS:
        for v in (0, 1):
            assert " " not in caption(d, lang, v)
    real = get_realiser(lang)
    for o in ALL_OBJECTS:
        assert " " not in real.np(o)


def _obj(shape, colour="red", size="big"):
    return {"shape": shape, "colour": colour, "size": size}


def test_french_colour_follows_the_noun_with_gender_agreement():
    fr = get_realiser("fr")
    for o in ALL_OBJECTS:
        words = fr.np(o).split()
        noun = V.FR["shapes"][o["shape"]]
        g = noun["g"]
        assert words == [V.FR["indef"][g], V.FR["sizes"][o["size"]][g], noun["sg"], V.FR["colours"][o["colour"]][g]]
    assert fr.np(_obj("star", "green", "small")) == "une petite étoile verte"
    assert fr.np(_obj("circle", "green", "small")) == "un petit cercle vert"
    assert fr.relation(_obj("circle"), "left", _obj("star", "blue", "small")) == \
        "un grand cercle rouge à gauche d'une petite étoile bleue"


def test_spanish_noun_colour_size_order():
    es = get_realiser("es")
    assert es.np(_obj("star", "black", "small")) == "una estrella negra pequeña"
    assert es.np(_obj("heart", "purple", "big")) == "un corazón morado grande"


def test_german_adjective_inflection_by_gender_and_case():
    de = get_realiser("de")
    assert de.np(_obj("circle")) == "ein großer roter Kreis"
    assert de.np(_obj("square", "blue", "small")) == "ein kleines blaues Quadrat"
    assert de.relation(_obj("star", "yellow"), "above", _obj("heart", "green", "small")) == \
        "ein großer gelber Stern über einem kleinen grünen Herzen"
    assert de.q_relation("triangle", "circle") == "Wo befindet sich das Dreieck im Verhältnis zum Kreis?"


def test_russian_gender_and_case_agreement():
    ru = get_realiser("ru")
    assert ru.np(_obj("star")) == "большая красная звезда"
    assert ru.np(_obj("heart", "blue", "small")) == "маленькое синее сердце"
    assert ru.relation(_obj("circle"), "left", _obj("star", "blue", "small")) == \
        "большой красный круг слева от маленькой синей звезды"
    assert ru.relation(_obj("circle"), "above", _obj("square", "blue", "small")) == \
        "большой красный круг над маленьким синим квадратом"


def test_japanese_is_verb_final_with_particles():
    for d in DESCS:
        for v in (0, 1):
            text = caption(d, "ja", v)
            assert text.endswith("ます"), text
            if len(d["objects"]) == 2:
                assert "の" in text and "に" in text and "が" in text
    ja = get_realiser("ja")
    assert ja.relation(_obj("circle"), "left", _obj("square", "blue", "small")) == "小さな青い正方形の左に大きな赤い円があります"  # noqa: E501


def test_chinese_measure_words():
    zh = get_realiser("zh")
    assert zh.np(_obj("circle")) == "一个红色的大圆形"
    assert zh.np(_obj("star", "yellow", "small")) == "一颗黄色的小五角星"


def test_thai_noun_before_modifiers():
    th = get_realiser("th")
    for o in ALL_OBJECTS:
        assert th.np(o).startswith(V.TH["shapes"][o["shape"]])
    assert th.np(_obj("circle")) == "วงกลมสีแดงขนาดใหญ่"


def test_swahili_noun_class_agreement():
    sw = get_realiser("sw")
    assert sw.np(_obj("square")) == "mraba mkubwa mwekundu"  # class 3
    assert sw.np(_obj("star")) == "nyota kubwa nyekundu"  # class 9
    assert sw.np(_obj("heart", "blue", "small")) == "moyo mdogo wa bluu"
    assert sw.np(_obj("triangle", "blue", "small")) == "pembetatu ndogo ya bluu"
    assert sw.relation(_obj("circle"), "left", _obj("star")) .split()[3] == "uko"
    assert sw.relation(_obj("star"), "left", _obj("circle")).split()[3] == "iko"
    assert sw.q_shape("black") == "Kitu cheusi kina umbo gani?"  # class 7 (kitu)


def test_hindi_bengali_telugu_are_sov_with_postpositions():
    hi, bn, te = get_realiser("hi"), get_realiser("bn"), get_realiser("te")
    assert hi.relation(_obj("circle"), "above", _obj("star", "black", "small")) == \
        "एक बड़ा लाल वृत्त एक छोटे काले तारे के ऊपर है"  # oblique adjectives and noun
    assert bn.relation(_obj("circle"), "left", _obj("square", "blue", "small")) == \
        "একটি বড় লাল বৃত্ত একটি ছোট নীল বর্গের বাঁদিকে আছে"
    assert te.relation(_obj("circle"), "right", _obj("square", "blue", "small")) == \
        "ఒక పెద్ద ఎరుపు రంగు వృత్తం ఒక చిన్న నీలం రంగు చతురస్రానికి కుడి వైపున ఉంది"
    for d in DESCS:
        if len(d["objects"]) == 2:
            assert caption(d, "hi", 0).endswith("है")
            assert caption(d, "bn", 0).endswith("আছে")
            assert caption(d, "te", 0).endswith("ఉంది")


def test_arabic_adjectives_follow_the_noun_with_gender_agreement():
    ar = get_realiser("ar")
    assert ar.np(_obj("circle")) == "دائرة كبيرة حمراء"  # feminine
    assert ar.np(_obj("square")) == "مربع كبير أحمر"  # masculine
    assert ar.q_relation("star", "heart") == "أين تقع النجمة بالنسبة إلى القلب؟"
    assert ar.q_relation("heart", "star") == "أين يقع القلب بالنسبة إلى النجمة؟"


def test_english_variants():
    d = {"layout": "horizontal", "objects": [_obj("circle"), _obj("square", "blue", "small")]}
    assert caption(d, "en", 0) == "a big red circle to the left of a small blue square"
    assert caption(d, "en", 1) == "two objects: a small blue square to the right of a big red circle"
    d3 = {"layout": "vertical", "objects": [_obj("circle"), _obj("square", "blue", "small"), _obj("star", "green")]}
    assert caption(d3, "en", 0) == "from top to bottom: a big red circle, a small blue square and a big green star"
    assert caption(d3, "en", 1) == \
        "three objects, from bottom to top: a big green star, a small blue square and a big red circle"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_text_is_nfc_normalised(lang):
    for d in DESCS[:40]:
        for v in (0, 1):
            text = caption(d, lang, v)
            assert unicodedata.normalize("NFC", text) == text and text == text.strip() and "  " not in text
