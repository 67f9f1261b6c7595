"""Local data files and language codes, checked before any work: what ``datasets`` would otherwise meet late or
report by the wrong row.

:func:`check_data_file` reads a ``.jsonl``/``.json``/``.csv`` file given as ``--dataset`` / ``--eval_split``
once, with the standard library only (the command line calls it before loading models), and refuses an empty
file, one of blank lines, a line that is not JSON (a file cut mid-line), a row that is not an object, and a row
whose caption is not a string or whose language is missing: each named by file, row (and line) and column.

:func:`normalise_language` makes BCP-47-like codes canonical (``' de '`` -> ``de``, ``EN`` -> ``en``,
``pt-br`` -> ``pt-BR``, ``zh_hans`` -> ``zh_Hans``) and rejects the rest (``''``, ``'??'``, ``'xx'``: a two-letter
code that is no ISO 639-1 language); :func:`normalise_language_column` applies it to a dataset's language column,
refusing the rows whose code is no language.
"""

from __future__ import annotations

import csv
import json
import os

#: ISO 639-1: the two-letter language codes (a three-letter primary subtag, ISO 639-2/3, is taken as written)
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el en
eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka
kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw
ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
""".split())
#: the file formats :func:`check_data_file` reads (parquet columns are typed: ``datasets`` reports those itself)
CHECKED_FORMATS = (".jsonl", ".json", ".csv")


class DataFileError(ValueError):
    """A local data file or a language code that cannot be trained on; the message names file, row and column."""


def normalise_language(code) -> str | None:
    """The canonical form of a BCP-47-like language code (whitespace stripped; the language subtag lower case, a
    script title case, a region upper case; ``-`` or ``_`` kept as written), or None when it is no language code
    (not a string, empty, not letters, or a two-letter code outside ISO 639-1)."""
    if not isinstance(code, str):
        return None
    code = code.strip()
    separator = "_" if "_" in code and "-" not in code else "-"
    parts = code.split(separator)
    primary = parts[0].lower()
    if not (primary.isascii() and primary.isalpha() and (primary in ISO_639_1 or len(primary) == 3)):
        return None
    out = [primary]
    for part in parts[1:]:
        if not (part.isascii() and part.isalnum()):
            return None
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # script: Hans, Latn
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())  # region: BR, 419
        elif 4 <= len(part) <= 8:
            out.append(part.lower())  # variant
        else:
            return None
    return separator.join(out)


def _describe(value) -> str:
    kind = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
            type(None): "null"}.get(type(value), f"a {type(value).__name__}")
    shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return kind if value is None else f"{kind} ({shown[:40]})"


def _rows(path: str):
    """(row, line, record) of a JSON-lines/JSON/CSV file; row counts the records from 0 as ``datasets`` does."""
    extension = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8", newline="" if extension == ".csv" else None) as handle:
        if extension == ".csv":
            for row, record in enumerate(csv.DictReader(handle)):
                yield row, row + 2, record  # line 1 holds the header
            return
        text = handle.read()
    if extension == ".json":
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None  # JSON lines in a .json file: read below
        if isinstance(whole, list):
            yield from ((row, None, record) for row, record in enumerate(whole))
            return
        if whole is not None:
            return  # an object (columns, or rows under a field): datasets reads it with its own options
    row = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            cut = " (the file is cut mid-line)" if line_number == len(text.splitlines()) \
                and not text.endswith("\n") else ""
            raise DataFileError(f"{path}, line {line_number} (row {row}): not valid JSON{cut}: {err}; fix or drop "
                                "that line") from None
        yield row, line_number, record
        row += 1


def check_data_file(path: str, text_columns: list[str], language_column: str | None = None) -> int:
    """Read ``path`` once and refuse (:class:`DataFileError`, naming file, row, line and column) what training
    would meet late: no rows, a line that is not JSON, a row that is not an object, a value of ``text_columns``
    (captions) that is not a string where the column exists, a missing or non-language ``language_column``
    value. Returns the number of rows; files of other formats are not read (0)."""
    if os.path.splitext(path)[1].lower() not in CHECKED_FORMATS:
        return 0
    if os.path.getsize(path) == 0:
        raise DataFileError(f"{path} is empty: it holds no rows; pass a file with one JSON object (CSV row) per "
                            "line")
    present: set[str] = set()
    count, no_language = 0, None
    for row, line, record in _rows(path):
        where = f"{path}, row {row}" + (f" (line {line})" if line is not None else "")
        if not isinstance(record, dict):
            raise DataFileError(f"{where}: {_describe(record)}, expected an object of column values")
        present |= {c for c in text_columns if c in record}
        for column in text_columns:
            if column in record and not isinstance(record[column], str):
                raise DataFileError(f"{where}, column {column!r}: {_describe(record[column])}, expected a string "
                                    "(a caption); fix or drop that row")
        if language_column is not None and language_column not in record:
            no_language = no_language or where  # refused below if other rows have the column
        elif language_column is not None:
            present.add(language_column)
            value = record[language_column]
            if value is None:
                raise DataFileError(f"{where}, column {language_column!r}: null, expected a language code (de, fr, "
                                    "zh-Hans, ...); fix or drop that row")
            if normalise_language(value) is None:
                raise DataFileError(f"{where}, column {language_column!r}: {value!r} is no language code (BCP-47: "
                                    "an ISO 639 language such as de, pt-BR); fix or drop that row")
        count += 1
    if count == 0:
        raise DataFileError(f"{path} holds no rows (only blank lines{' and a header' * path.endswith('.csv')}); "
                            "pass a file with one JSON object (CSV row) per line")
    if text_columns and text_columns[0] not in present:
        raise DataFileError(f"{path}: no row has the caption column {text_columns[0]!r}; name it with "
                            "--caption_column")
    if language_column in present and no_language:
        raise DataFileError(f"{no_language}, column {language_column!r}: missing, expected a language code (de, "
                            "fr, zh-Hans, ...); fix or drop that row")
    return count


def bad_language_rows(values) -> dict[str, list[int]]:
    """The language codes of ``values`` that :func:`normalise_language` rejects, each with its rows (first 5)."""
    bad: dict[str, list[int]] = {}
    for row, value in enumerate(values):
        if normalise_language(value) is None:
            rows = bad.setdefault(repr(value), [])
            if len(rows) < 5:
                rows.append(row)
    return bad


def normalise_language_column(dataset, column: str, name: str):
    """``dataset`` with its language ``column`` made canonical (:func:`normalise_language`); a code that is no
    language is refused naming its rows (:class:`DataFileError`). A map-style dataset is checked at once, a
    stream as it is read. Without the column, ``dataset`` unchanged."""
    if column not in (getattr(dataset, "column_names", None) or []):
        return dataset
    if hasattr(dataset, "__len__"):
        values = dataset[column]
        bad = bad_language_rows(values)
        if bad:
            shown = "; ".join(f"{code} in row(s) {', '.join(map(str, rows))}" for code, rows in list(bad.items())[:4])
            raise DataFileError(f"{name}, column {column!r}: {len(bad)} value(s) are no language code ({shown}); "
                                "use BCP-47 codes (de, pt-BR, zh-Hans) or drop those rows")
        if all(normalise_language(v) == v for v in set(values)):
            return dataset

    def canonical(code, row):
        value = normalise_language(code)
        if value is None:
            raise DataFileError(f"{name}, row {row}, column {column!r}: {code!r} is no language code (BCP-47: de, "
                                "pt-BR, zh-Hans); fix or drop that row")
        return {column: value}

    return dataset.map(canonical, input_columns=column, with_indices=True)
