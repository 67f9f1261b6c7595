"""Small helpers every other module may use: column checks, the one image decoder, the one embedding-from-output
helper, and the one local-path test. A leaf module: it imports nothing from ``mvld_hf``."""

from __future__ import annotations

import io
import os
import unicodedata
from collections.abc import Sequence

# Characters that show nothing although they are not whitespace to ``str.strip``: the combining grapheme joiner,
# Hangul fillers, the blank Braille pattern and the variation selectors (formatting and control characters,
# e.g. zero-width spaces/joiners and the BOM, are covered by their Unicode categories Cf and Cc).
_INVISIBLE_RANGES = ((0x034F, 0x034F), (0x115F, 0x1160), (0x3164, 0x3164), (0xFFA0, 0xFFA0), (0x2800, 0x2800),
                     (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs"})
#: The same definition as :func:`is_blank_text` as an RE2 pattern (what pyarrow's ``match_substring_regex``
#: takes), so a whole dataset column is checked in one vectorised pass.
BLANK_TEXT_PATTERN = "^[\\p{Z}\\p{Cc}\\p{Cf}" + "".join(
    f"\\x{{{lo:04X}}}" + (f"-\\x{{{hi:04X}}}" if hi != lo else "") for lo, hi in _INVISIBLE_RANGES) + "]*$"
BLANK_TEXT = ("empty or whitespace only (it has no visible character: zero-width, control and formatting "
              "characters count as whitespace)")


def _invisible(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES or any(lo <= code <= hi
                                                                      for lo, hi in _INVISIBLE_RANGES)


def is_blank_text(text: str) -> bool:
    """The one definition of an empty caption: no visible character (whitespace, zero-width characters, the BOM,
    control and formatting characters do not count). Every caption check in the package uses it.

    >>> [is_blank_text(t) for t in ("", " \\t", "\\u200b\\u200c\\u200d\\ufeff", "a\\u200b", "\\u3164", "猫")]
    [True, True, True, False, True, False]
    """
    return all(map(_invisible, text))


class MissingColumnError(KeyError):
    """A dataset lacks a column the chosen method needs."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def check_columns(column_names: Sequence[str], required: dict[str, str], dataset_name: str = "dataset") -> None:
    """Raise :class:`MissingColumnError` naming every missing column, why it is needed, and what exists.

    >>> check_columns(["caption"], {"caption": "the caption the student reads"})
    >>> check_columns(["text"], {"caption": "the caption the student reads"})
    Traceback (most recent call last):
    ...
    mvld_hf.data_utils.MissingColumnError: dataset is missing column(s) 'caption' (the caption the student reads)...
    """
    missing = {col: why for col, why in required.items() if col not in column_names}
    if missing:
        details = "; ".join(f"'{col}' ({why})" for col, why in missing.items())
        raise MissingColumnError(
            f"{dataset_name} is missing column(s) {details}. Available columns: {sorted(column_names)}. "
            "Rename them with dataset.rename_column or set the *_column arguments of DistillationArguments."
        )


def decode_image(value, where: str = "image", rgb: bool = False, paths: bool = False):
    """A PIL image from a PIL image, a ``datasets`` ``Image(decode=False)`` dict (``bytes`` and/or ``path``), a
    uint8 array or, with ``paths=True``, a file path; ``rgb=True`` converts it to RGB (what image processors
    expect).

    Corrupt or unreadable data raises ``ValueError`` naming ``where`` (e.g. the dataset row); a value of another
    type raises ``TypeError``.

    >>> from PIL import Image
    >>> decode_image(Image.new("L", (2, 2)), rgb=True).mode
    'RGB'
    >>> decode_image(3, "row 7")
    Traceback (most recent call last):
    ...
    TypeError: row 7 is a int, expected a PIL image, an encoded image ({'bytes': ..., 'path': ...}) or a uint8 array
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        image = value
    else:
        source = None
        if paths and isinstance(value, (str, os.PathLike)):
            source = value
        elif isinstance(value, dict) and (value.get("bytes") is not None or value.get("path")):
            source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        if source is not None:
            try:
                image = Image.open(source)
                image.load()
            except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for corrupt data
                raise ValueError(f"{where} could not be decoded ({type(err).__name__}: {err}); drop or re-encode "
                                 "that row") from err
        elif type(value).__module__ == "numpy" and hasattr(value, "shape"):
            image = Image.fromarray(value)
        else:
            kinds = "a path, " if paths else ""
            raise TypeError(f"{where} is a {type(value).__name__}, expected a PIL image, {kinds}an encoded image "
                            "({'bytes': ..., 'path': ...}) or a uint8 array")
    return image.convert("RGB") if rgb and image.mode != "RGB" else image


def embedding_from_output(out):
    """The embedding tensor in a model output: the tensor itself, a ``ModelOutput``'s ``pooler_output`` (what
    transformers' ``get_text_features``/``get_image_features`` return) or ``text_embeds`` (a student's forward).

    >>> import torch
    >>> embedding_from_output({"text_embeds": torch.ones(1, 2)}).shape
    torch.Size([1, 2])
    """
    import torch

    if torch.is_tensor(out):
        return out
    for key in ("pooler_output", "text_embeds"):
        value = out.get(key) if isinstance(out, dict) else getattr(out, key, None)
        if value is not None:
            return value
    raise TypeError(f"cannot find an embedding in a {type(out).__name__}: expected a tensor or an output with "
                    "pooler_output or text_embeds")


def is_local_path(name: str) -> bool:
    """Written as a filesystem path rather than a Hub id (``org/name``).

    >>> [is_local_path(n) for n in ("org/name", "./student", "~/models/x", "/abs", "a/b/c")]
    [False, True, True, True, True]
    """
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))
