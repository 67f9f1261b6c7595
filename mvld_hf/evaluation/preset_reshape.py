"""How a benchmark's Hub layout becomes the evaluator's layout (:mod:`mvld_hf.evaluation.presets` names which
reshaper each preset uses): one split per language, wide per-language columns, CVQA's subsets; the language and
column checks they share."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import datasets


class PresetLike(Protocol):
    """What a reshaper reads of its :class:`~mvld_hf.evaluation.presets.DatasetPreset`."""

    name: str
    hub_id: str
    split: str | None
    hub_columns: Mapping[str, str]
    language_codes: Mapping[str, str]
    language_splits: Sequence[str] | None

    def split_for(self, language: str) -> str: ...

    def to_language(self, source_code: str) -> str: ...


Reshaper = Callable[[PresetLike, Any, "list[str] | None"], datasets.Dataset]


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def normalise_languages(languages: Sequence[str] | str | None) -> list[str] | None:
    if languages is None:
        return None
    if isinstance(languages, str):
        languages = [languages]
    languages = list(dict.fromkeys(languages))
    if not languages:
        raise ValueError("languages is empty; pass None for all languages")
    return languages


def check_languages(requested: list[str] | None, available: Sequence[str], benchmark: str) -> None:
    if requested is None:
        return
    missing = [lang for lang in requested if lang not in set(available)]
    if missing:
        raise ValueError(f"language(s) {missing} not in {benchmark}; available languages: {sorted(available)}")


def _as_image_feature(ds: datasets.Dataset, column: str = "image") -> datasets.Dataset:
    """Cast an ``{'bytes', 'path'}`` struct column (how some Hub copies store images) to ``datasets.Image``."""
    if not isinstance(ds.features[column], datasets.Image):
        ds = ds.cast_column(column, datasets.Image())
    return ds


def _language_split_mapping(raw, preset: PresetLike) -> Mapping[str, datasets.Dataset]:
    if isinstance(raw, datasets.Dataset):
        raise TypeError(
            f"{preset.name} ({preset.hub_id}) has one Hub split per language; pass the DatasetDict returned by "
            f"datasets.load_dataset({preset.hub_id!r}) or a dict {{split_name: Dataset}} (split names: "
            f"{list(preset.language_splits or ())}), not a single Dataset")
    if not isinstance(raw, Mapping):
        raise TypeError(f"{preset.name}: expected a DatasetDict or a dict of Datasets, got {type(raw).__name__}")
    return raw


def _select_language_splits(raw, preset: PresetLike,
                            languages: list[str] | None) -> list[tuple[str, datasets.Dataset]]:
    splits = _language_split_mapping(raw, preset)
    available = [preset.to_language(s) for s in splits]
    check_languages(languages, available, preset.name)
    wanted = languages if languages is not None else available
    by_language = {preset.to_language(s): (s, ds) for s, ds in splits.items()}
    return [(lang, by_language[lang][1]) for lang in wanted]


def _check_columns(ds: datasets.Dataset, needed: Sequence[str], preset: PresetLike, where: str = "") -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise ValueError(f"{preset.name}{where}: column(s) {missing} not found; the verified Hub schema has "
                         f"{list(preset.hub_columns)}, this dataset has {ds.column_names}. If the Hub dataset "
                         "changed, load it yourself and pass a column mapping to the evaluator")


def _warn_if_galleries_differ(parts: list[tuple[str, datasets.Dataset]], id_column: str, name: str) -> None:
    """The evaluator pools images of all languages into one gallery keyed by image id: warn if the language
    splits do not share their ids (the gallery would then grow with every language)."""
    if len(parts) < 2:
        return
    reference_lang, reference = parts[0]
    reference_ids = set(reference[id_column])
    for lang, ds in parts[1:]:
        ids = set(ds[id_column])
        if ids != reference_ids:
            warnings.warn(f"{name}: the image ids of language {lang!r} differ from those of {reference_lang!r} "
                          f"({len(ids - reference_ids)} not in {reference_lang!r}); the evaluator's shared "
                          "gallery will hold the union of both. Evaluate one language at a time for per-language "
                          "galleries.", stacklevel=3)
            return


# ----------------------------------------------------------------------------------------------------
# reshaping functions (Hub layout -> evaluator layout)
# ----------------------------------------------------------------------------------------------------
def reshape_per_language_splits(id_column: str, caption_column: str) -> Reshaper:
    """One Hub split per language, one row per image: ``id_column``, ``caption_column`` (str or list) and
    ``image`` ({'bytes', 'path'} struct) -> image, image_id, caption, language."""

    def reshape(preset: PresetLike, raw, languages: list[str] | None) -> datasets.Dataset:
        parts = _select_language_splits(raw, preset, languages)
        out = []
        for lang, ds in parts:
            _check_columns(ds, [id_column, caption_column, "image"], preset, f" split {preset.split_for(lang)!r}")
            ds = ds.select_columns(["image", id_column, caption_column])
            ds = ds.rename_columns({id_column: "image_id", caption_column: "caption"})
            ds = _as_image_feature(ds)
            out.append((lang, ds.add_column("language", [lang] * len(ds))))
        _warn_if_galleries_differ(out, "image_id", preset.name)
        return datasets.concatenate_datasets([ds for _, ds in out])

    return reshape


def reshape_wide_columns(preset: PresetLike, raw, languages: list[str] | None) -> datasets.Dataset:
    """One row per image, one caption column per language (Multi30k re-upload) -> one row per
    (image, language); the image id is the row index."""
    if not isinstance(raw, datasets.Dataset):
        raise TypeError(f"{preset.name}: expected one split as a datasets.Dataset (e.g. "
                        f"load_dataset({preset.hub_id!r}, split={preset.split!r})), got {type(raw).__name__}")
    _check_columns(raw, ["image", *preset.language_codes], preset)
    source = list(preset.language_codes)
    available = [preset.to_language(c) for c in source]
    check_languages(languages, available, preset.name)
    wanted = languages if languages is not None else available
    by_language = {preset.to_language(c): c for c in source}
    ids = list(range(len(raw)))
    out = []
    for lang in wanted:
        ds = raw.select_columns(["image", by_language[lang]]).rename_column(by_language[lang], "caption")
        ds = ds.add_column("image_id", ids).add_column("language", [lang] * len(ds))
        out.append(_as_image_feature(ds))
    return datasets.concatenate_datasets(out)


def _parse_cvqa_subset(value) -> tuple[str, str]:
    """CVQA's ``Subset`` is the string of a (language, country) tuple, e.g. "('Telugu', 'India')"."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return str(value[0]), str(value[1])
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = None
    if isinstance(parsed, tuple) and len(parsed) == 2:
        return str(parsed[0]).strip(), str(parsed[1]).strip()
    return str(value).strip(), ""


def cvqa_row_language(preset: PresetLike, row: dict) -> str:
    return preset.to_language(_parse_cvqa_subset(row["Subset"])[0])


def reshape_cvqa(preset: PresetLike, raw, languages: list[str] | None) -> datasets.Dataset:
    if isinstance(raw, Mapping):
        if set(raw) != {"test"}:
            raise TypeError(f"{preset.name}: pass the 'test' split (a datasets.Dataset), got splits {list(raw)}")
        raw = raw["test"]
    needed = ["image", "ID", "Subset", "Question", "Options", "Label"]
    _check_columns(raw, needed, preset)
    pairs = [_parse_cvqa_subset(s) for s in list(raw["Subset"])]
    names = [lang for lang, _ in pairs]
    unmapped = sorted({n for n in names if n not in preset.language_codes})
    if unmapped:
        warnings.warn(f"{preset.name}: no ISO code known for language name(s) {unmapped}; they are kept as "
                      "written in the Subset column", stacklevel=3)
    row_languages = [preset.to_language(n) for n in names]
    check_languages(languages, sorted(set(row_languages)), preset.name)
    keep = [i for i, lang in enumerate(row_languages) if languages is None or lang in languages]

    labels = list(raw["Label"])
    options = list(raw["Options"])
    hidden = [i for i in keep if not (isinstance(labels[i], int) and 0 <= labels[i] < len(options[i]))]
    if hidden:
        raise ValueError(
            f"{preset.name}: {len(hidden)} of {len(keep)} selected questions have no usable answer (Label "
            f"{labels[hidden[0]]!r} for {len(options[hidden[0]])} options, ID {raw['ID'][hidden[0]]!r}). The "
            "public afaji/cvqa test split is meant for submission to the CVQA leaderboard "
            "(https://eval.ai/web/challenges/challenge-page/2305/) and its labels are hidden (-1); accuracy "
            "can only be computed on a copy with answers")

    ds = raw.select_columns(["image", "ID", "Question", "Options", "Label"])
    ds = ds.rename_columns({"ID": "question_id", "Question": "question", "Options": "options", "Label": "answer"})
    ds = ds.add_column("language", row_languages).add_column("country", [c for _, c in pairs])
    if len(keep) != len(ds):
        ds = ds.select(keep)
    return _as_image_feature(ds)
