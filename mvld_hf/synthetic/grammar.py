"""Caption and question realisation, one small realiser per language.

A scene description (see :mod:`mvld_hf.synthetic.scenes`) is ``{"layout": "single"|"horizontal"|"vertical",
"objects": [{"shape", "colour", "size"}, ...]}`` with the objects in reading order (left to right, or top to
bottom). Each realiser turns it into two caption variants:

- variant 0: ``a big red circle to the left of a small blue square`` /
  ``from left to right: A, B and C`` / ``a big red circle``;
- variant 1: the count, then the same scene from the other side:
  ``two objects: a small blue square to the right of a big red circle`` /
  ``three objects, from right to left: C, B and A`` / ``one object: a big red circle``.

Each language follows its own word order and agreement (see :mod:`mvld_hf.synthetic.vocab` for the tables):
French/Spanish colours after the noun with gender agreement, German mixed declension (nominative/dative),
Russian case and gender agreement, Chinese measure words, Japanese SOV with particles ending in a verb,
Thai noun-adjective order without spaces, Swahili noun-class agreement, Hindi/Bengali/Telugu postpositions and
SOV with oblique/genitive/dative forms, Arabic adjectives after the noun agreeing in gender.

Questions (VQA) reuse the same noun phrases and relation sentences for their options, so every option is a
caption-like phrase that a CLIP-style model can score against the image.
"""

from __future__ import annotations

from . import vocab as V

Obj = dict  # {"shape": ..., "colour": ..., "size": ...}

_INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}


class Realiser:
    """English, and the interface every language implements."""

    code = "en"
    T = V.EN
    sep = " "  # between words of a list
    colon = ": "

    # --- building blocks -------------------------------------------------------------------------------------
    def np(self, o: Obj) -> str:
        """Indefinite noun phrase naming one object (size, colour and shape)."""
        return f"a {o['size']} {o['colour']} {o['shape']}"

    def count(self, n: int) -> str:
        return self.T["counts"][n]

    def join(self, items: list[str]) -> str:
        """``A, B and C``."""
        return ", ".join(items[:-1]) + f" {self.T['and']} " + items[-1] if len(items) > 1 else items[0]

    def relation(self, a: Obj, rel: str, b: Obj) -> str:
        """Sentence/phrase saying that ``a`` is ``rel`` (left/right/above/below) of ``b``."""
        return f"{self.np(a)} {self.T['relations'][rel]} {self.np(b)}"

    def relation_counted(self, a: Obj, rel: str, b: Obj, n: int) -> str:
        return f"{self.count(n)}{self.colon}{self.relation(a, rel, b)}"

    def sequence(self, direction: str, objs: list[Obj], n: int | None = None) -> str:
        """Objects listed in reading ``direction``; ``n`` prefixes the count."""
        body = f"{self.T['directions'][direction]}{self.colon}{self.join([self.np(o) for o in objs])}"
        return f"{self.count(n)}, {body}" if n else body

    def single(self, o: Obj, n: int | None = None) -> str:
        return f"{self.count(n)}{self.colon}{self.np(o)}" if n else self.np(o)

    # --- questions ---------------------------------------------------------------------------------------------
    def q_colour(self, shape: str) -> str:
        return f"What colour is the {shape}?"

    def q_shape(self, colour: str) -> str:
        return f"What shape is the {colour} object?"

    def q_count(self) -> str:
        return "How many objects are there?"

    def q_relation(self, shape_a: str, shape_b: str) -> str:
        return f"Where is the {shape_a} relative to the {shape_b}?"

    # --- whole captions ----------------------------------------------------------------------------------------
    def caption(self, desc: dict, variant: int = 0) -> str:
        objs, layout = desc["objects"], desc["layout"]
        n = len(objs)
        if variant not in (0, 1):
            raise ValueError(f"caption variant must be 0 or 1, got {variant}")
        if n == 1:
            return self.single(objs[0], 1 if variant else None)
        first, second = ("left", "right") if layout == "horizontal" else ("above", "below")
        if n == 2:
            if variant == 0:
                return self.relation(objs[0], first, objs[1])
            return self.relation_counted(objs[1], second, objs[0], 2)
        forward, backward = ("lr", "rl") if layout == "horizontal" else ("tb", "bt")
        if variant == 0:
            return self.sequence(forward, objs)
        return self.sequence(backward, objs[::-1], n)


class German(Realiser):
    code, T = "de", V.DE

    def np(self, o: Obj, case: str = "nom") -> str:
        noun = self.T["shapes"][o["shape"]]
        g = noun["g"]
        if case == "nom":
            art, end = {"m": ("ein", "er"), "n": ("ein", "es"), "f": ("eine", "e")}[g]
        else:  # dative: einem/einer + -en
            art, end = ("einer" if g == "f" else "einem"), "en"
        size, colour = self.T["sizes"][o["size"]], self.T["colours"][o["colour"]]
        return f"{art} {size}{end} {colour}{end} {noun[case]}"

    def relation(self, a, rel, b):
        return f"{self.np(a)} {self.T['relations'][rel]} {self.np(b, 'dat')}"

    def q_colour(self, shape):
        noun = self.T["shapes"][shape]
        return f"Welche Farbe hat {self.T['def_nom'][noun['g']]} {noun['nom']}?"

    def q_shape(self, colour):
        return f"Welche Form hat das {self.T['colours'][colour]}e Objekt?"

    def q_count(self):
        return "Wie viele Objekte gibt es?"

    def q_relation(self, shape_a, shape_b):
        a, b = self.T["shapes"][shape_a], self.T["shapes"][shape_b]
        return (f"Wo befindet sich {self.T['def_nom'][a['g']]} {a['nom']} im Verhältnis "
                f"{self.T['zu_def_dat'][b['g']]} {b['dat']}?")


class French(Realiser):
    code, T = "fr", V.FR
    colon = " : "

    def np(self, o):
        noun = self.T["shapes"][o["shape"]]
        g = noun["g"]
        return f"{self.T['indef'][g]} {self.T['sizes'][o['size']][g]} {noun['sg']} {self.T['colours'][o['colour']][g]}"

    def relation(self, a, rel, b):
        prep = self.T["relations"][rel]  # ends in "de"; de + un(e) -> d'un(e)
        return f"{self.np(a)} {prep[:-2]}d'{self.np(b)}"

    @staticmethod
    def _definite(noun: dict) -> str:
        word = noun["sg"]
        if word[0] in "aeiouhéèêàâœ":
            return f"l'{word}"
        return f"{'la' if noun['g'] == 'f' else 'le'} {word}"

    def q_colour(self, shape):
        return f"De quelle couleur est {self._definite(self.T['shapes'][shape])} ?"

    def q_shape(self, colour):
        return f"Quelle est la forme de l'objet {self.T['colours'][colour]['m']} ?"

    def q_count(self):
        return "Combien y a-t-il d'objets ?"

    def q_relation(self, shape_a, shape_b):
        b = self._definite(self.T["shapes"][shape_b])
        b = "au " + b[3:] if b.startswith("le ") else "à " + b
        return f"Où se trouve {self._definite(self.T['shapes'][shape_a])} par rapport {b} ?"


class Spanish(Realiser):
    code, T = "es", V.ES

    def np(self, o):
        noun = self.T["shapes"][o["shape"]]
        g = noun["g"]
        return f"{self.T['indef'][g]} {noun['sg']} {self.T['colours'][o['colour']][g]} {self.T['sizes'][o['size']][g]}"

    def q_colour(self, shape):
        noun = self.T["shapes"][shape]
        return f"¿De qué color es {self.T['def'][noun['g']]} {noun['sg']}?"

    def q_shape(self, colour):
        return f"¿Qué forma tiene el objeto {self.T['colours'][colour]['m']}?"

    def q_count(self):
        return "¿Cuántos objetos hay?"

    def q_relation(self, shape_a, shape_b):
        a, b = self.T["shapes"][shape_a], self.T["shapes"][shape_b]
        return (f"¿Dónde está {self.T['def'][a['g']]} {a['sg']} con respecto "
                f"{self.T['a_def'][b['g']]} {b['sg']}?")


class Russian(Realiser):
    code, T = "ru", V.RU

    def np(self, o, case: str = "nom"):
        noun = self.T["shapes"][o["shape"]]
        g = noun["g"]
        key = f"{g}_nom" if case == "nom" else (f"f_{case}" if g == "f" else f"mn_{case}")
        return f"{self.T['sizes'][o['size']][key]} {self.T['colours'][o['colour']][key]} {noun[case]}"

    def relation(self, a, rel, b):
        prep, case = self.T["relations"][rel]
        return f"{self.np(a)} {prep} {self.np(b, case)}"

    def q_colour(self, shape):
        return f"Какого цвета {self.T['shapes'][shape]['nom']}?"

    def q_shape(self, colour):
        return f"Какой формы {self.T['colours'][colour]['m_nom']} предмет?"

    def q_count(self):
        return "Сколько здесь предметов?"

    def q_relation(self, shape_a, shape_b):
        return f"Где находится {self.T['shapes'][shape_a]['nom']} относительно {self.T['shapes'][shape_b]['gen']}?"


class Chinese(Realiser):
    code, T = "zh", V.ZH
    colon = "："

    def np(self, o):
        noun = self.T["shapes"][o["shape"]]
        return f"一{noun['mw']}{self.T['colours'][o['colour']]}的{self.T['sizes'][o['size']]}{noun['noun']}"

    def join(self, items):
        return "、".join(items[:-1]) + self.T["and"] + items[-1] if len(items) > 1 else items[0]

    def relation(self, a, rel, b):  # A 在 B 的左边
        return f"{self.np(a)}在{self.np(b)}的{self.T['relations'][rel]}"

    def relation_counted(self, a, rel, b, n):  # existential: B 的右边有 A
        return f"{self.count(n)}{self.colon}{self.np(b)}的{self.T['relations'][rel]}有{self.np(a)}"

    def sequence(self, direction, objs, n=None):
        body = f"{self.T['directions'][direction]}{self.colon}{self.join([self.np(o) for o in objs])}"
        return f"{self.count(n)}，{body}" if n else body

    def q_colour(self, shape):
        return f"{self.T['shapes'][shape]['noun']}是什么颜色的？"

    def q_shape(self, colour):
        return f"{self.T['colours'][colour]}的物体是什么形状的？"

    def q_count(self):
        return "图中有几个物体？"

    def q_relation(self, shape_a, shape_b):
        return f"{self.T['shapes'][shape_a]['noun']}在{self.T['shapes'][shape_b]['noun']}的什么位置？"


class Japanese(Realiser):
    code, T = "ja", V.JA
    colon = "："

    def np(self, o):
        return f"{self.T['sizes'][o['size']]}{self.T['colours'][o['colour']]}{self.T['shapes'][o['shape']]}"

    def relation(self, a, rel, b):  # B の左に A があります
        return f"{self.np(b)}の{self.T['relations'][rel]}に{self.np(a)}があります"

    def sequence(self, direction, objs, n=None):  # 左から順に A、B、C が並んでいます
        body = f"{self.T['directions'][direction]}{'、'.join(self.np(o) for o in objs)}が並んでいます"
        return f"{self.count(n)}{self.colon}{body}" if n else body

    def single(self, o, n=None):
        body = f"{self.np(o)}があります"
        return f"{self.count(n)}{self.colon}{body}" if n else body

    def q_colour(self, shape):
        return f"{self.T['shapes'][shape]}は何色ですか？"

    def q_shape(self, colour):
        return f"{self.T['colours'][colour]}物体はどんな形ですか？"

    def q_count(self):
        return "物体はいくつありますか？"

    def q_relation(self, shape_a, shape_b):
        return f"{self.T['shapes'][shape_a]}は{self.T['shapes'][shape_b]}に対してどこにありますか？"


class Thai(Realiser):
    """Thai: modifiers follow the noun; written without spaces (phrases are joined directly)."""

    code, T = "th", V.TH

    def np(self, o):
        return f"{self.T['shapes'][o['shape']]}{self.T['colours'][o['colour']]}{self.T['sizes'][o['size']]}"

    def relation(self, a, rel, b):  # A อยู่ทางซ้ายของ B
        return f"{self.np(a)}อยู่{self.T['relations'][rel]}{self.np(b)}"

    def relation_counted(self, a, rel, b, n):  # มีวัตถุสองชิ้นโดย A อยู่ทางขวาของ B
        return f"มี{self.count(n)}โดย{self.relation(a, rel, b)}"

    def _list(self, objs):  # A ตามด้วย B และ C
        nps = [self.np(o) for o in objs]
        if len(nps) == 1:
            return nps[0]
        return nps[0] + "ตามด้วย" + "".join(nps[1:-1]) + self.T["and"] + nps[-1] if len(nps) > 2 else \
            nps[0] + self.T["and"] + nps[1]

    def sequence(self, direction, objs, n=None):
        if n:  # มีวัตถุสามชิ้นเรียงจากขวาไปซ้ายคือ ...
            return f"มี{self.count(n)}เรียง{self.T['directions'][direction]}คือ{self._list(objs)}"
        return f"{self.T['directions'][direction]}มี{self._list(objs)}"

    def single(self, o, n=None):
        return f"มี{self.count(n)}คือ{self.np(o)}" if n else self.np(o)

    def q_colour(self, shape):
        return f"{self.T['shapes'][shape]}เป็นสีอะไร"

    def q_shape(self, colour):
        return f"วัตถุ{self.T['colours'][colour]}เป็นรูปทรงอะไร"

    def q_count(self):
        return "มีวัตถุกี่ชิ้น"

    def q_relation(self, shape_a, shape_b):
        return f"{self.T['shapes'][shape_a]}อยู่ตรงไหนเมื่อเทียบกับ{self.T['shapes'][shape_b]}"


class Swahili(Realiser):
    code, T = "sw", V.SW

    def np(self, o):
        noun = self.T["shapes"][o["shape"]]
        c = noun["cls"]
        return f"{noun['noun']} {self.T['sizes'][o['size']][c]} {self.T['colours'][o['colour']][c]}"

    def relation(self, a, rel, b):  # A iko/uko kushoto kwa B
        c = self.T["shapes"][a["shape"]]["cls"]
        return f"{self.np(a)} {self.T['copula_loc'][c]} {self.T['relations'][rel]} {self.np(b)}"

    def q_colour(self, shape):
        noun = self.T["shapes"][shape]
        return f"{noun['noun'].capitalize()} {self.T['has'][noun['cls']]} rangi gani?"

    def q_shape(self, colour):
        return f"Kitu {self.T['colours'][colour][7]} kina umbo gani?"

    def q_count(self):
        return "Kuna vitu vingapi?"

    def q_relation(self, shape_a, shape_b):
        a, b = self.T["shapes"][shape_a], self.T["shapes"][shape_b]
        return f"{a['noun'].capitalize()} {self.T['copula_loc'][a['cls']]} wapi kuhusiana na {b['noun']}?"


class Hindi(Realiser):
    code, T = "hi", V.HI

    def np(self, o, oblique: bool = False):
        key = "m_obl" if oblique else "m_dir"  # every shape noun is masculine
        noun = self.T["shapes"][o["shape"]]["obl" if oblique else "dir"]
        return f"{self.T['indef']} {self.T['sizes'][o['size']][key]} {self.T['colours'][o['colour']][key]} {noun}"

    def relation(self, a, rel, b):  # A B के बाईं ओर है
        return f"{self.np(a)} {self.np(b, oblique=True)} {self.T['relations'][rel]} है"

    def q_colour(self, shape):
        return f"{self.T['shapes'][shape]['obl']} का रंग क्या है?"

    def q_shape(self, colour):  # वस्तु is feminine
        return f"{self.T['colours'][colour]['f']} वस्तु का आकार क्या है?"

    def q_count(self):
        return "कितनी वस्तुएँ हैं?"

    def q_relation(self, shape_a, shape_b):
        return f"{self.T['shapes'][shape_b]['obl']} के सापेक्ष {self.T['shapes'][shape_a]['dir']} कहाँ है?"


class Bengali(Realiser):
    code, T = "bn", V.BN

    def np(self, o, genitive: bool = False):
        noun = self.T["shapes"][o["shape"]]["gen" if genitive else "nom"]
        return f"{self.T['indef']} {self.T['sizes'][o['size']]} {self.T['colours'][o['colour']]} {noun}"

    def relation(self, a, rel, b):  # A B-এর বাঁদিকে আছে
        return f"{self.np(a)} {self.np(b, genitive=True)} {self.T['relations'][rel]} আছে"

    def q_colour(self, shape):
        return f"{self.T['shapes'][shape]['nom']}টির রং কী?"

    def q_shape(self, colour):
        return f"{self.T['colours'][colour]} বস্তুটির আকার কী?"

    def q_count(self):
        return "কয়টি বস্তু আছে?"

    def q_relation(self, shape_a, shape_b):
        return f"{self.T['shapes'][shape_b]['nom']}টির তুলনায় {self.T['shapes'][shape_a]['nom']}টি কোথায় আছে?"


class Telugu(Realiser):
    code, T = "te", V.TE

    def np(self, o, case: str = "nom"):
        noun = self.T["shapes"][o["shape"]][case]
        colour = f"{self.T['colours'][o['colour']]} {self.T['colour_word']}"
        return f"{self.T['indef']} {self.T['sizes'][o['size']]} {colour} {noun}"

    def relation(self, a, rel, b):  # A B-కి ఎడమ వైపున ఉంది
        post, case = self.T["relations"][rel]
        return f"{self.np(a)} {self.np(b, case)} {post} {self.T['is']}"

    def q_colour(self, shape):
        return f"{self.T['shapes'][shape]['nom']} ఏ రంగులో ఉంది?"

    def q_shape(self, colour):
        return f"{self.T['colours'][colour]} {self.T['colour_word']} వస్తువు ఏ ఆకారంలో ఉంది?"

    def q_count(self):
        return "ఎన్ని వస్తువులు ఉన్నాయి?"

    def q_relation(self, shape_a, shape_b):
        return f"{self.T['shapes'][shape_b]['nom']}తో పోలిస్తే {self.T['shapes'][shape_a]['nom']} ఎక్కడ ఉంది?"


class Arabic(Realiser):
    code, T = "ar", V.AR

    def np(self, o):
        noun = self.T["shapes"][o["shape"]]
        g = noun["g"]
        return f"{noun['sg']} {self.T['sizes'][o['size']][g]} {self.T['colours'][o['colour']][g]}"

    def join(self, items):  # A وB وC: the conjunction is written attached to the next word
        return items[0] + "".join(f" {self.T['and']}{x}" for x in items[1:])

    def sequence(self, direction, objs, n=None):
        body = f"{self.T['directions'][direction]}{self.colon}{self.join([self.np(o) for o in objs])}"
        return f"{self.count(n)}، {body}" if n else body

    def q_colour(self, shape):
        return f"ما لون ال{self.T['shapes'][shape]['sg']}؟"

    def q_shape(self, colour):
        return f"ما شكل الجسم {self.T['colours'][colour]['def_m']}؟"

    def q_count(self):
        return "كم عدد الأجسام؟"

    def q_relation(self, shape_a, shape_b):
        a, b = self.T["shapes"][shape_a], self.T["shapes"][shape_b]
        return f"أين {self.T['located'][a['g']]} ال{a['sg']} بالنسبة إلى ال{b['sg']}؟"


REALISERS: dict[str, Realiser] = {
    r.code: r for r in (Realiser(), German(), French(), Spanish(), Russian(), Chinese(), Japanese(), Thai(),
                        Swahili(), Hindi(), Bengali(), Telugu(), Arabic())
}


def get_realiser(language: str) -> Realiser:
    try:
        return REALISERS[language]
    except KeyError:
        raise ValueError(f"unknown language {language!r}; available: {sorted(REALISERS)}") from None


def caption(desc: dict, language: str = "en", variant: int = 0) -> str:
    """Caption of a scene description in ``language`` (variant 0 or 1)."""
    return get_realiser(language).caption(desc, variant)


def inverse(rel: str) -> str:
    return _INVERSE[rel]
