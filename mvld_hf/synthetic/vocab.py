"""Translation tables of the synthetic world: pure data, no logic.

Every concept of the world (5 shapes, 7 colours, 2 sizes, 4 spatial relations, 4 reading directions, counts
1-4 and the few words the VQA questions need) is listed here once per language, with the inflected forms
that language's grammar (:mod:`mvld_hf.synthetic.grammar`) needs. Kept deliberately small and plain:
every entry was reviewed for correctness, and where a language offers several words the most common
neutral one was chosen.

Notes per language (what the tables encode):

- ``de``: noun gender and the dative form (``Herz`` -> ``Herzen``); adjective *stems*, the grammar adds the
  mixed-declension endings after ``ein``/``einem`` (``ein großer roter Kreis``, ``einem kleinen blauen Quadrat``).
  Colours that are uninflectable in German (orange, lila) are replaced by the inflectable ``orangefarben`` and
  ``violett``.
- ``fr``: gender, masculine/feminine adjective forms; size adjectives precede, colours follow the noun.
- ``es``: gender, masculine/feminine forms; colour then size after the noun (``un círculo rojo grande``).
- ``ru``: gender; nouns in nominative/genitive/instrumental, adjectives in the forms the grammar uses.
- ``zh``: measure word per noun (``个``; ``颗`` for the star and the heart).
- ``ja``: prenominal adjective forms (``赤い``, ``緑の``, ``大きな``).
- ``th``: colours as ``สี...`` and sizes as ``ขนาด...``, both following the noun.
- ``sw``: noun class per noun (3 = m-/mi-, 9 = n-/n-); adjectives and the colour connective per class
  (``mraba mwekundu``, ``nyota nyekundu``, ``mraba wa bluu``, ``nyota ya bluu``); class 7 forms for ``kitu``.
- ``hi``: direct/oblique noun forms (``तारा`` -> ``तारे``); adjectives as masculine direct / masculine oblique /
  feminine (invariable ones repeat the same form).
- ``bn``: nouns with the genitive form (``বর্গের``, ``তারার``); Bengali adjectives do not inflect.
- ``te``: nouns with the dative form (``చతురస్రానికి``); colours as ``<colour> రంగు``.
- ``ar``: gender; adjectives masculine/feminine; the definite masculine colour (``الأحمر``) for questions.
"""

from __future__ import annotations

SHAPES = ["circle", "square", "triangle", "star", "heart"]
COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "black"]
SIZES = ["small", "big"]
RELATIONS = ["left", "right", "above", "below"]
DIRECTIONS = ["lr", "rl", "tb", "bt"]  # left->right, right->left, top->bottom, bottom->top
COUNTS = [1, 2, 3, 4]

#: language code -> (English name, script)
LANGUAGE_INFO = {
    "en": ("English", "Latin"),
    "de": ("German", "Latin"),
    "fr": ("French", "Latin"),
    "es": ("Spanish", "Latin"),
    "sw": ("Swahili", "Latin"),
    "ru": ("Russian", "Cyrillic"),
    "zh": ("Chinese (Simplified)", "Han"),
    "ja": ("Japanese", "Japanese (kanji + kana)"),
    "th": ("Thai", "Thai"),
    "hi": ("Hindi", "Devanagari"),
    "bn": ("Bengali", "Bengali"),
    "te": ("Telugu", "Telugu"),
    "ar": ("Arabic", "Arabic"),
}

EN = {
    "shapes": {s: s for s in SHAPES},
    "colours": {c: c for c in COLOURS},
    "sizes": {"small": "small", "big": "big"},
    "relations": {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"},
    "directions": {"lr": "from left to right", "rl": "from right to left",
                   "tb": "from top to bottom", "bt": "from bottom to top"},
    "counts": {1: "one object", 2: "two objects", 3: "three objects", 4: "four objects"},
    "and": "and",
}

DE = {
    # gender, nominative, dative
    "shapes": {
        "circle": {"g": "m", "nom": "Kreis", "dat": "Kreis"},
        "square": {"g": "n", "nom": "Quadrat", "dat": "Quadrat"},
        "triangle": {"g": "n", "nom": "Dreieck", "dat": "Dreieck"},
        "star": {"g": "m", "nom": "Stern", "dat": "Stern"},
        "heart": {"g": "n", "nom": "Herz", "dat": "Herzen"},
    },
    # adjective stems; endings are added by the grammar
    "colours": {"red": "rot", "orange": "orangefarben", "yellow": "gelb", "green": "grün", "blue": "blau",
                "purple": "violett", "black": "schwarz"},
    "sizes": {"small": "klein", "big": "groß"},
    "relations": {"left": "links von", "right": "rechts von", "above": "über", "below": "unter"},  # + dative
    "directions": {"lr": "von links nach rechts", "rl": "von rechts nach links",
                   "tb": "von oben nach unten", "bt": "von unten nach oben"},
    "counts": {1: "ein Objekt", 2: "zwei Objekte", 3: "drei Objekte", 4: "vier Objekte"},
    "and": "und",
    "def_nom": {"m": "der", "n": "das", "f": "die"},
    "zu_def_dat": {"m": "zum", "n": "zum", "f": "zur"},
}

FR = {
    "shapes": {
        "circle": {"g": "m", "sg": "cercle"},
        "square": {"g": "m", "sg": "carré"},
        "triangle": {"g": "m", "sg": "triangle"},
        "star": {"g": "f", "sg": "étoile"},
        "heart": {"g": "m", "sg": "cœur"},
    },
    "colours": {
        "red": {"m": "rouge", "f": "rouge"},
        "orange": {"m": "orange", "f": "orange"},
        "yellow": {"m": "jaune", "f": "jaune"},
        "green": {"m": "vert", "f": "verte"},
        "blue": {"m": "bleu", "f": "bleue"},
        "purple": {"m": "violet", "f": "violette"},
        "black": {"m": "noir", "f": "noire"},
    },
    "sizes": {"small": {"m": "petit", "f": "petite"}, "big": {"m": "grand", "f": "grande"}},
    "relations": {"left": "à gauche de", "right": "à droite de", "above": "au-dessus de", "below": "au-dessous de"},
    "directions": {"lr": "de gauche à droite", "rl": "de droite à gauche", "tb": "de haut en bas",
                   "bt": "de bas en haut"},
    "counts": {1: "un objet", 2: "deux objets", 3: "trois objets", 4: "quatre objets"},
    "and": "et",
    "indef": {"m": "un", "f": "une"},
}

ES = {
    "shapes": {
        "circle": {"g": "m", "sg": "círculo"},
        "square": {"g": "m", "sg": "cuadrado"},
        "triangle": {"g": "m", "sg": "triángulo"},
        "star": {"g": "f", "sg": "estrella"},
        "heart": {"g": "m", "sg": "corazón"},
    },
    "colours": {
        "red": {"m": "rojo", "f": "roja"},
        "orange": {"m": "naranja", "f": "naranja"},
        "yellow": {"m": "amarillo", "f": "amarilla"},
        "green": {"m": "verde", "f": "verde"},
        "blue": {"m": "azul", "f": "azul"},
        "purple": {"m": "morado", "f": "morada"},
        "black": {"m": "negro", "f": "negra"},
    },
    "sizes": {"small": {"m": "pequeño", "f": "pequeña"}, "big": {"m": "grande", "f": "grande"}},
    "relations": {"left": "a la izquierda de", "right": "a la derecha de", "above": "encima de", "below": "debajo de"},
    "directions": {"lr": "de izquierda a derecha", "rl": "de derecha a izquierda",
                   "tb": "de arriba abajo", "bt": "de abajo arriba"},
    "counts": {1: "un objeto", 2: "dos objetos", 3: "tres objetos", 4: "cuatro objetos"},
    "and": "y",
    "indef": {"m": "un", "f": "una"},
    "def": {"m": "el", "f": "la"},
    "a_def": {"m": "al", "f": "a la"},
}

# Russian adjective forms: m/f/n nominative, m+n genitive, f genitive, m+n instrumental, f instrumental
_RU_ADJ_KEYS = ("m_nom", "f_nom", "n_nom", "mn_gen", "f_gen", "mn_ins", "f_ins")


def _ru(*forms: str) -> dict:
    assert len(forms) == len(_RU_ADJ_KEYS)
    return dict(zip(_RU_ADJ_KEYS, forms))


RU = {
    "shapes": {
        "circle": {"g": "m", "nom": "круг", "gen": "круга", "ins": "кругом"},
        "square": {"g": "m", "nom": "квадрат", "gen": "квадрата", "ins": "квадратом"},
        "triangle": {"g": "m", "nom": "треугольник", "gen": "треугольника", "ins": "треугольником"},
        "star": {"g": "f", "nom": "звезда", "gen": "звезды", "ins": "звездой"},
        "heart": {"g": "n", "nom": "сердце", "gen": "сердца", "ins": "сердцем"},
    },
    "colours": {
        "red": _ru("красный", "красная", "красное", "красного", "красной", "красным", "красной"),
        "orange": _ru("оранжевый", "оранжевая", "оранжевое", "оранжевого", "оранжевой", "оранжевым", "оранжевой"),
        "yellow": _ru("жёлтый", "жёлтая", "жёлтое", "жёлтого", "жёлтой", "жёлтым", "жёлтой"),
        "green": _ru("зелёный", "зелёная", "зелёное", "зелёного", "зелёной", "зелёным", "зелёной"),
        "blue": _ru("синий", "синяя", "синее", "синего", "синей", "синим", "синей"),
        "purple": _ru("фиолетовый", "фиолетовая", "фиолетовое", "фиолетового", "фиолетовой", "фиолетовым",
                      "фиолетовой"),
        "black": _ru("чёрный", "чёрная", "чёрное", "чёрного", "чёрной", "чёрным", "чёрной"),
    },
    "sizes": {
        "small": _ru("маленький", "маленькая", "маленькое", "маленького", "маленькой", "маленьким", "маленькой"),
        "big": _ru("большой", "большая", "большое", "большого", "большой", "большим", "большой"),
    },
    # preposition and the case it governs
    "relations": {"left": ("слева от", "gen"), "right": ("справа от", "gen"),
                  "above": ("над", "ins"), "below": ("под", "ins")},
    "directions": {"lr": "слева направо", "rl": "справа налево", "tb": "сверху вниз", "bt": "снизу вверх"},
    "counts": {1: "один предмет", 2: "два предмета", 3: "три предмета", 4: "четыре предмета"},
    "and": "и",
}

ZH = {
    "shapes": {
        "circle": {"noun": "圆形", "mw": "个"},
        "square": {"noun": "正方形", "mw": "个"},
        "triangle": {"noun": "三角形", "mw": "个"},
        "star": {"noun": "五角星", "mw": "颗"},
        "heart": {"noun": "爱心", "mw": "颗"},
    },
    "colours": {"red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色", "blue": "蓝色",
                "purple": "紫色", "black": "黑色"},
    "sizes": {"small": "小", "big": "大"},
    "relations": {"left": "左边", "right": "右边", "above": "上面", "below": "下面"},
    "directions": {"lr": "从左到右", "rl": "从右到左", "tb": "从上到下", "bt": "从下到上"},
    "counts": {1: "一个物体", 2: "两个物体", 3: "三个物体", 4: "四个物体"},
    "and": "和",
}

JA = {
    "shapes": {"circle": "円", "square": "正方形", "triangle": "三角形", "star": "星", "heart": "ハート"},
    # prenominal forms
    "colours": {"red": "赤い", "orange": "オレンジ色の", "yellow": "黄色い", "green": "緑の", "blue": "青い",
                "purple": "紫の", "black": "黒い"},
    "sizes": {"small": "小さな", "big": "大きな"},
    "relations": {"left": "左", "right": "右", "above": "上", "below": "下"},
    "directions": {"lr": "左から順に", "rl": "右から順に", "tb": "上から順に", "bt": "下から順に"},
    "counts": {1: "一つの物体", 2: "二つの物体", 3: "三つの物体", 4: "四つの物体"},
}

TH = {
    "shapes": {"circle": "วงกลม", "square": "สี่เหลี่ยมจัตุรัส", "triangle": "สามเหลี่ยม", "star": "รูปดาว",
               "heart": "รูปหัวใจ"},
    "colours": {"red": "สีแดง", "orange": "สีส้ม", "yellow": "สีเหลือง", "green": "สีเขียว", "blue": "สีน้ำเงิน",
                "purple": "สีม่วง", "black": "สีดำ"},
    "sizes": {"small": "ขนาดเล็ก", "big": "ขนาดใหญ่"},
    "relations": {"left": "ทางซ้ายของ", "right": "ทางขวาของ", "above": "เหนือ", "below": "ใต้"},
    "directions": {"lr": "จากซ้ายไปขวา", "rl": "จากขวาไปซ้าย", "tb": "จากบนลงล่าง", "bt": "จากล่างขึ้นบน"},
    "counts": {1: "วัตถุหนึ่งชิ้น", 2: "วัตถุสองชิ้น", 3: "วัตถุสามชิ้น", 4: "วัตถุสี่ชิ้น"},
    "and": "และ",
}

SW = {
    # noun class: 3 (m-/mi-) or 9 (n-/n-)
    "shapes": {
        "circle": {"noun": "mduara", "cls": 3},
        "square": {"noun": "mraba", "cls": 3},
        "triangle": {"noun": "pembetatu", "cls": 9},
        "star": {"noun": "nyota", "cls": 9},
        "heart": {"noun": "moyo", "cls": 3},
    },
    # true adjectives agree by prefix; the other colours are nouns joined by the connective -a (wa/ya/cha)
    "colours": {
        "red": {3: "mwekundu", 9: "nyekundu", 7: "chekundu"},
        "orange": {3: "wa rangi ya chungwa", 9: "ya rangi ya chungwa", 7: "cha rangi ya chungwa"},
        "yellow": {3: "wa njano", 9: "ya njano", 7: "cha njano"},
        "green": {3: "wa kijani", 9: "ya kijani", 7: "cha kijani"},
        "blue": {3: "wa bluu", 9: "ya bluu", 7: "cha bluu"},
        "purple": {3: "wa zambarau", 9: "ya zambarau", 7: "cha zambarau"},
        "black": {3: "mweusi", 9: "nyeusi", 7: "cheusi"},
    },
    "sizes": {"small": {3: "mdogo", 9: "ndogo"}, "big": {3: "mkubwa", 9: "kubwa"}},
    # locative copula "is (at)" and "has" per class
    "copula_loc": {3: "uko", 9: "iko"},
    "has": {3: "una", 9: "ina"},
    "relations": {"left": "kushoto kwa", "right": "kulia kwa", "above": "juu ya", "below": "chini ya"},
    "directions": {"lr": "kutoka kushoto kwenda kulia", "rl": "kutoka kulia kwenda kushoto",
                   "tb": "kutoka juu kwenda chini", "bt": "kutoka chini kwenda juu"},
    "counts": {1: "kitu kimoja", 2: "vitu viwili", 3: "vitu vitatu", 4: "vitu vinne"},
    "and": "na",
}

HI = {
    # all five shape nouns are masculine; "obl" is the oblique singular used before postpositions
    "shapes": {
        "circle": {"dir": "वृत्त", "obl": "वृत्त"},
        "square": {"dir": "वर्ग", "obl": "वर्ग"},
        "triangle": {"dir": "त्रिभुज", "obl": "त्रिभुज"},
        "star": {"dir": "तारा", "obl": "तारे"},
        "heart": {"dir": "दिल", "obl": "दिल"},
    },
    # masculine direct, masculine oblique, feminine
    "colours": {
        "red": {"m_dir": "लाल", "m_obl": "लाल", "f": "लाल"},
        "orange": {"m_dir": "नारंगी", "m_obl": "नारंगी", "f": "नारंगी"},
        "yellow": {"m_dir": "पीला", "m_obl": "पीले", "f": "पीली"},
        "green": {"m_dir": "हरा", "m_obl": "हरे", "f": "हरी"},
        "blue": {"m_dir": "नीला", "m_obl": "नीले", "f": "नीली"},
        "purple": {"m_dir": "बैंगनी", "m_obl": "बैंगनी", "f": "बैंगनी"},
        "black": {"m_dir": "काला", "m_obl": "काले", "f": "काली"},
    },
    "sizes": {
        "small": {"m_dir": "छोटा", "m_obl": "छोटे", "f": "छोटी"},
        "big": {"m_dir": "बड़ा", "m_obl": "बड़े", "f": "बड़ी"},
    },
    "relations": {"left": "के बाईं ओर", "right": "के दाईं ओर", "above": "के ऊपर", "below": "के नीचे"},
    "directions": {"lr": "बाएँ से दाएँ", "rl": "दाएँ से बाएँ", "tb": "ऊपर से नीचे", "bt": "नीचे से ऊपर"},
    "counts": {1: "एक वस्तु", 2: "दो वस्तुएँ", 3: "तीन वस्तुएँ", 4: "चार वस्तुएँ"},
    "and": "और",
    "indef": "एक",
}

BN = {
    "shapes": {
        "circle": {"nom": "বৃত্ত", "gen": "বৃত্তের"},
        "square": {"nom": "বর্গ", "gen": "বর্গের"},
        "triangle": {"nom": "ত্রিভুজ", "gen": "ত্রিভুজের"},
        "star": {"nom": "তারা", "gen": "তারার"},
        "heart": {"nom": "হৃদয়", "gen": "হৃদয়ের"},
    },
    "colours": {"red": "লাল", "orange": "কমলা", "yellow": "হলুদ", "green": "সবুজ", "blue": "নীল",
                "purple": "বেগুনি", "black": "কালো"},
    "sizes": {"small": "ছোট", "big": "বড়"},
    "relations": {"left": "বাঁদিকে", "right": "ডানদিকে", "above": "উপরে", "below": "নিচে"},  # after a genitive
    "directions": {"lr": "বাঁ থেকে ডানে", "rl": "ডান থেকে বাঁয়ে", "tb": "উপর থেকে নিচে", "bt": "নিচ থেকে উপরে"},
    "counts": {1: "একটি বস্তু", 2: "দুটি বস্তু", 3: "তিনটি বস্তু", 4: "চারটি বস্তু"},
    "and": "এবং",
    "indef": "একটি",
}

TE = {
    "shapes": {
        "circle": {"nom": "వృత్తం", "dat": "వృత్తానికి"},
        "square": {"nom": "చతురస్రం", "dat": "చతురస్రానికి"},
        "triangle": {"nom": "త్రిభుజం", "dat": "త్రిభుజానికి"},
        "star": {"nom": "నక్షత్రం", "dat": "నక్షత్రానికి"},
        "heart": {"nom": "హృదయం", "dat": "హృదయానికి"},
    },
    "colours": {"red": "ఎరుపు", "orange": "నారింజ", "yellow": "పసుపు", "green": "ఆకుపచ్చ", "blue": "నీలం",
                "purple": "ఊదా", "black": "నలుపు"},
    "colour_word": "రంగు",
    "sizes": {"small": "చిన్న", "big": "పెద్ద"},
    # postposition and the case of the noun before it
    "relations": {"left": ("ఎడమ వైపున", "dat"), "right": ("కుడి వైపున", "dat"),
                  "above": ("పైన", "nom"), "below": ("కింద", "nom")},
    "directions": {"lr": "ఎడమ నుండి కుడికి", "rl": "కుడి నుండి ఎడమకు", "tb": "పై నుండి కిందికి",
                   "bt": "కింది నుండి పైకి"},
    "counts": {1: "ఒక వస్తువు", 2: "రెండు వస్తువులు", 3: "మూడు వస్తువులు", 4: "నాలుగు వస్తువులు"},
    "and": "మరియు",
    "indef": "ఒక",
    "is": "ఉంది",
}

AR = {
    "shapes": {
        "circle": {"g": "f", "sg": "دائرة"},
        "square": {"g": "m", "sg": "مربع"},
        "triangle": {"g": "m", "sg": "مثلث"},
        "star": {"g": "f", "sg": "نجمة"},
        "heart": {"g": "m", "sg": "قلب"},
    },
    "colours": {
        "red": {"m": "أحمر", "f": "حمراء", "def_m": "الأحمر"},
        "orange": {"m": "برتقالي", "f": "برتقالية", "def_m": "البرتقالي"},
        "yellow": {"m": "أصفر", "f": "صفراء", "def_m": "الأصفر"},
        "green": {"m": "أخضر", "f": "خضراء", "def_m": "الأخضر"},
        "blue": {"m": "أزرق", "f": "زرقاء", "def_m": "الأزرق"},
        "purple": {"m": "بنفسجي", "f": "بنفسجية", "def_m": "البنفسجي"},
        "black": {"m": "أسود", "f": "سوداء", "def_m": "الأسود"},
    },
    "sizes": {"small": {"m": "صغير", "f": "صغيرة"}, "big": {"m": "كبير", "f": "كبيرة"}},
    "relations": {"left": "على يسار", "right": "على يمين", "above": "فوق", "below": "تحت"},
    "directions": {"lr": "من اليسار إلى اليمين", "rl": "من اليمين إلى اليسار",
                   "tb": "من الأعلى إلى الأسفل", "bt": "من الأسفل إلى الأعلى"},
    "counts": {1: "جسم واحد", 2: "جسمان", 3: "ثلاثة أجسام", 4: "أربعة أجسام"},
    "and": "و",  # written attached to the following word
    "located": {"m": "يقع", "f": "تقع"},
}

TABLES = {"en": EN, "de": DE, "fr": FR, "es": ES, "ru": RU, "zh": ZH, "ja": JA, "th": TH, "sw": SW, "hi": HI,
          "bn": BN, "te": TE, "ar": AR}
