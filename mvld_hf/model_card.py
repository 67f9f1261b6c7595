"""Model cards for exported students: ``huggingface_hub.ModelCard`` rendered from the package's template
``mvld_hf/templates/model_card.md`` (package data: it ships in the wheel).

The card states what makes the embedding space usable: the teacher (by its Hub id and revision), the languages
it was trained on (and those it was not), the method and its hyperparameters, the training data, per-language
retrieval results (as ``model-index`` eval results that the Hub can index), a usage snippet for text and
images, limitations and the citation of arXiv 2510.26271. Every statement comes from the export itself, the
run record (:mod:`mvld_hf.run_record`: ``mvld_run.json``, ``training_args.bin``) or the caller's arguments;
what is not recorded is said to be not recorded.

The evaluation JSON a card reads (four layouts) and its ``model-index`` entries: :mod:`mvld_hf.card_results`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .card_results import RetrievalResults, eval_results_to_hub, load_eval_results, results_markdown
from .losses.registry import METHODS, PAPER_CITATION, citations, parse_method
from .run_record import is_hub_id as _is_hub_id

__all__ = [
    "CITATION",
    "default_model_name",
    "formats_markdown",
    "usage_example",
    "RetrievalResults",
    "TEMPLATE_PATH",
    "eval_results_to_hub",
    "load_eval_results",
    "model_card_data",
    "render_model_card",
]

#: the card template, package data of mvld_hf
TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
PAPER_ARXIV_ID = "2510.26271"
CITATION = PAPER_CITATION  # the registry's; a card prints its methods' citations (losses.registry.citations)
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


# --------------------------------------------------------------------------------------------- formats
_FORMAT_TEXT = {"pytorch": "PyTorch (sentence-transformers folder, float32)",
                "onnx": "ONNX float32 (`onnx/text_model.onnx`, onnxruntime)",
                "int8": "ONNX int8, dynamic quantization (`onnx/text_model_int8.onnx`)"}


def formats_markdown(report: dict | None) -> str:
    """The table of shipped formats with their measured size, agreement with PyTorch, R@1 and speed."""
    if not report or not report.get("formats"):
        return ""
    rows = ["| Format | Text route on disk | Cosine to PyTorch (min) | Top-1 agreement | R@1 (check set) "
            "| Batch 1 p50 / p95 | Batch 64 |", "|---|---|---|---|---|---|---|"]
    for name, f in report["formats"].items():
        speed1 = (f"{f['batch1_ms_p50']:.1f} / {f['batch1_ms_p95']:.1f} ms" if "batch1_ms_p50" in f else "n/a")
        speed64 = f"{f['batch64_texts_per_s']:,.0f} texts/s" if "batch64_texts_per_s" in f else "n/a"
        r1 = f"{100 * f['r1']:.1f}" if f.get("r1") is not None else "n/a"
        if name == "int8" and "r1_drop" in f:
            r1 += f" ({-100 * f['r1_drop']:+.1f})" + ("" if f.get("within_bound", True) else " **over the bound**")
        rows.append(f"| {_FORMAT_TEXT.get(name, name)} | {f['bytes'] / 2**20:.1f} MiB | {f['cosine_min']:.5f} "
                    f"| {100 * f['top1_agreement']:.1f}% | {r1} | {speed1} | {speed64} |")
    notes = [f"Measured at export time on this export's machine with {report.get('threads', '?')} CPU thread(s), "
             "tokenization included. Check set: " + str(report.get("check_set")) + "; R@1: a translation retrieves "
             "its English sentence among the check set's sentences, both embedded by the format; top-1 agreement: "
             "queries whose retrieved sentence is the one PyTorch retrieves."]
    if "int8" in report["formats"]:
        notes.append(f"int8 is accepted when its R@1 is at most {100 * report.get('int8_max_drop', 0.01):.1f} "
                     "point(s) below PyTorch's; the text route is quantized, the image route ships float32.")
    if report.get("image"):
        notes.append(f"Image route: `{report['image']['file']}` (float32, {report['image']['bytes'] / 2**20:.1f} MiB, "
                     f"min cosine to PyTorch {report['image']['cosine_min']:.5f}).")
    return "\n".join(rows) + "\n\n" + " ".join(notes)


# ------------------------------------------------------------------------------------------------ the card
def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _method_text(method: str | None) -> str:
    if not method:
        return "not recorded"
    try:
        weights = parse_method(method)
    except ValueError:
        return f"`{method}`"
    terms = [f"{METHODS[n].display_name}" + (f" x {w:g}" if len(weights) > 1 or w != 1 else "")
             for n, w in weights.items()]
    return f"`{method}`: " + " + ".join(terms)


def _info(info) -> dict:
    return info.to_dict() if hasattr(info, "to_dict") else dict(info)


def model_card_data(info, *, repo_id: str | None = None, eval_results: list[RetrievalResults] | None = None,
                    languages=None, training_data=None, license: str | None = None,
                    model_name: str | None = None, tags=None, teacher_hub_id: str | None = None,
                    run: dict | None = None) -> ModelCardData:
    """The YAML metadata: training languages, library, base models (backbone and teacher when they are Hub
    ids), training datasets (Hub ids), license, tags and the per-language ``model-index``."""
    info = _info(info)
    eval_results = eval_results or []
    langs = _as_list(languages)  # the training languages only: evaluated languages are not claimed
    teacher = teacher_hub_id or info.get("teacher_name_or_path")
    base = [n for n in (info.get("backbone_name_or_path"), teacher) if _is_hub_id(n)]
    all_tags = ["sentence-transformers", "feature-extraction", "sentence-similarity", "multilingual",
                "knowledge-distillation", "mvld_hf"]
    if info.get("include_images"):
        all_tags += ["image-text-retrieval", "clip"]
    if "onnx" in ((info.get("formats") or {}).get("formats") or {}) or \
            "int8" in ((info.get("formats") or {}).get("formats") or {}):
        all_tags += ["onnx"]
    all_tags += _as_list(tags)
    name = _model_name(repo_id, model_name, info, run)
    hub_results = eval_results_to_hub(eval_results)
    return ModelCardData(
        language=[l for l in langs if _LANGUAGE_CODE.match(l)] or None,
        license=license,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        base_model=base or None,
        datasets=[d for d in _as_list(training_data) if _is_hub_id(d)] or None,
        tags=all_tags,
        model_name=name if hub_results else None,  # only used (and required) for the model-index
        eval_results=hub_results or None,
    )


def _slug(text) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", str(text)).strip("-._").lower()


def default_model_name(info, run: dict | None = None) -> str:
    """A name that says what was distilled into what, e.g. ``multilingual-e5-small-dr-all-minilm-l6-v2`` or
    ``mvld-offline-world-xlm-roberta-dr-fd``: the student's base (else its architecture), the method and the
    teacher (a local folder gives its last part; the offline world's teacher is named by the world)."""
    info, run = _info(info), run or {}
    run_student, run_teacher = run.get("student") or {}, run.get("teacher") or {}
    base = run_student.get("base") or info.get("backbone_name_or_path")
    student = _slug(os.path.basename(str(base).rstrip("/"))) if base and (_is_hub_id(base) or run_student.get(
        "pretrained")) else _slug(info.get("backbone_model_type") or "student")
    method = info.get("distillation_method") or (run.get("hyperparameters") or {}).get("method")
    try:
        method = "-".join(parse_method(method)) if method else ""
    except ValueError:
        method = _slug(method)
    teacher = run_teacher.get("hub_id") or info.get("teacher_name_or_path")
    if run.get("offline_world"):
        return "-".join(p for p in ("mvld-offline-world", student, method) if p)
    teacher = _slug(os.path.basename(str(teacher).rstrip("/"))) if teacher else ""
    return "-".join(p for p in (student, method, teacher) if p) or "mvld_hf-student"


def _model_name(repo_id: str | None, model_name: str | None, info=None, run: dict | None = None) -> str:
    return (model_name or (repo_id.split("/")[-1] if repo_id else None)
            or (default_model_name(info, run) if info is not None else "mvld_hf-student"))


#: the offline world's canvas (mvld_hf.synthetic.scenes: 64 px, light grey background)
_WORLD_SCENES = [({"shape": "circle", "colour": "red"}, (215, 35, 35)),
                 ({"shape": "square", "colour": "blue"}, (35, 75, 215))]


def usage_example(info, run: dict | None = None, languages=None) -> dict:
    """The card's usage snippet inputs, from the run's own data: for a student of the offline world, captions
    of two of its scenes (a big red circle, a big blue square) in its training languages and the code that
    draws those scenes; otherwise real-photo placeholders and captions in the training languages."""
    run = run or {}
    langs = _as_list(languages) or _as_list(run.get("languages"))
    if run.get("offline_world"):
        from .synthetic import caption
        from .synthetic.world import LANGUAGES

        chosen = [l for l in langs if l in LANGUAGES] or ["en"]
        picks = [chosen[i % len(chosen)] for i in range(3)] if len(chosen) > 1 else chosen * 2
        texts = []
        for i, lang in enumerate(picks[:3]):
            obj, _ = _WORLD_SCENES[i % 2]
            texts.append(caption({"layout": "single", "objects": [{**obj, "size": "big"}]}, lang))
        return {"offline_world": True, "texts": texts, "texts_literal": json.dumps(texts, ensure_ascii=False),
                "scenes": [{"shape": o["shape"], "rgb": rgb} for o, rgb in _WORLD_SCENES]}
    samples = {"en": "a dog running on the beach", "de": "ein Hund rennt am Strand",
               "fr": "un chien qui court sur la plage", "es": "un perro corriendo en la playa",
               "ru": "собака бежит по пляжу", "zh": "一只狗在海滩上奔跑", "ja": "浜辺を走る犬",
               "ar": "كلب يركض على الشاطئ", "hi": "समुद्र तट पर दौड़ता कुत्ता", "th": "สุนัขวิ่งบนชายหาด"}
    texts = [samples[l] for l in langs if l in samples][:3] or [samples["de"], samples["ja"]]
    return {"offline_world": False, "texts": texts, "texts_literal": json.dumps(texts, ensure_ascii=False),
            "scenes": []}


def _teacher_text(info: dict, hub_id: str | None, description: str | None) -> str:
    revision = info.get("teacher_revision")
    if hub_id:
        return f"the vision-language model `{hub_id}`" + (f" (revision `{revision}`)" if revision else "")
    if description:
        return description
    return "a local teacher model whose Hub id was not recorded"


def _backbone_text(name: str | None, pretrained: bool | None) -> str:
    if pretrained is False:
        return "randomly initialised and trained from scratch"
    if _is_hub_id(name):
        return f"pre-trained `{name}`"
    if name:
        return "pre-trained, from a local folder"
    return "origin not recorded"


def _training_data_text(training_data: list[str], run_data: dict) -> str:
    if training_data:
        return ", ".join(f"`{d}`" if _is_hub_id(d) and "/" in d else d for d in training_data)
    if not run_data:
        return ""
    name = run_data.get("hub_id") or run_data.get("name") or ""
    text = f"`{name}`" if run_data.get("hub_id") else name
    details = [f"{k} `{run_data[k]}`" for k in ("config", "split") if run_data.get(k)]
    if run_data.get("rows"):
        details.append(f"{run_data['rows']:,} captions")
    if details:
        text += " (" + ", ".join(details) + ")"
    if run_data.get("description"):
        text += ": " + run_data["description"]
    return text


def render_model_card(
    info,
    *,
    repo_id: str | None = None,
    eval_results=None,
    languages=None,
    training_data=None,
    hyperparameters: dict | None = None,
    license: str | None = None,
    model_name: str | None = None,
    tags=None,
    eval_dataset: str | None = None,
    teacher_hub_id: str | None = None,
    run: dict | None = None,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """Render the card of an export.

    Args:
        info: the :class:`~mvld_hf.export.ExportResult` (or its ``to_dict()``).
        repo_id: ``org/name`` used in the usage snippet and as the model-index name.
        eval_results: an evaluation JSON path/dict (see :func:`load_eval_results`) or a list of
            :class:`RetrievalResults`.
        languages: training languages (ISO codes; list or comma-separated); default: the run record's.
            Evaluated languages that are not among them are listed under limitations.
        training_data: dataset ids or descriptions (list or comma-separated); Hub ids go into the metadata.
            Default: the run record's.
        hyperparameters: ``{name: value}`` shown in the training section, over the run record's.
        license: license id; default: the run record's.
        eval_dataset: the benchmark name when the JSON does not carry one.
        teacher_hub_id: the teacher's Hub id when the export names it by a local path (the card never shows
            local paths; without a Hub id it describes the teacher from the run record, and logs a warning).
        run: the run record (:func:`mvld_hf.run_record.read_run_record`), ``{}`` when there is none.
    """
    info = _info(info)
    run = run or {}
    if eval_results is None:
        results = []
    elif isinstance(eval_results, list) and all(isinstance(r, RetrievalResults) for r in eval_results):
        results = eval_results
    else:
        results = load_eval_results(eval_results, dataset_type=eval_dataset)
    run_teacher, run_student = run.get("teacher") or {}, run.get("student") or {}
    run_data = run.get("training_data") or {}
    teacher_name = info.get("teacher_name_or_path")
    teacher_hub_id = (teacher_hub_id or run_teacher.get("hub_id")
                      or (teacher_name if _is_hub_id(teacher_name) else None))
    if not teacher_hub_id and teacher_name:
        import logging

        logging.getLogger(__name__).warning(
            "the teacher is recorded as the local path %r and no Hub id was given: the card describes it as %r. "
            "If the teacher is published, pass its id (--teacher-hub-id ORG/NAME, teacher_hub_id=)",
            teacher_name, run_teacher.get("description") or "a local teacher model")
    train_langs = _as_list(languages) or _as_list(run.get("languages"))
    training_data = _as_list(training_data)
    datasets = training_data or ([run_data["hub_id"]] if run_data.get("hub_id") else [])
    license = license or run.get("license")
    eval_langs = sorted({l for r in results for l in r.languages})
    data = model_card_data(info, repo_id=repo_id, eval_results=results, languages=train_langs,
                           training_data=datasets, license=license, model_name=model_name, tags=tags,
                           teacher_hub_id=teacher_hub_id, run=run)
    path = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"model card template {str(path)!r} not found (it ships inside the mvld_hf package "
                                "as templates/model_card.md: reinstall mvld_hf); or pass template_path=")
    hyper = {**(run.get("hyperparameters") or {}), **(hyperparameters or {})}
    hyper = {k: v for k, v in hyper.items() if v is not None}
    pretrained = run_student.get("pretrained")
    return ModelCard.from_template(
        data,
        template_path=str(path),
        model_id=repo_id or "path/to/exported-model",
        title=_model_name(repo_id, model_name, info, run),
        example=usage_example(info, run, train_langs),
        formats_markdown=formats_markdown(info.get("formats")),
        formats_report=info.get("formats") or {},
        info=info,
        teacher_text=_teacher_text(info, teacher_hub_id, run_teacher.get("description")),
        teacher_hub_id=teacher_hub_id,
        backbone_text=_backbone_text(run_student.get("base") or info.get("backbone_name_or_path"), pretrained),
        pretrained_backbone=pretrained if pretrained is not None else (
            True if info.get("backbone_name_or_path") else None),
        image_route_text={"vision_tower": "the teacher's vision tower only (no text tower stored)",
                          "full_teacher": "the full teacher model (its `get_image_features`)"}.get(
                              info.get("image_route"), "none (text-only export)"),
        method_text=_method_text(info.get("distillation_method") or hyper.get("method")),
        training_languages=train_langs,
        training_data_text=_training_data_text(training_data, run_data),
        hyperparameters=hyper,
        hyperparameters_source="the run's training arguments" if run.get("hyperparameters") else None,
        license=license,
        offline_world=bool(run.get("offline_world")),
        results_markdown=results_markdown(results),
        untrained_languages=[l for l in eval_langs if train_langs and l not in train_langs],
        eval_languages=eval_langs,
        citation=citations(info.get("distillation_method") or hyper.get("method")),
        arxiv_id=PAPER_ARXIV_ID,
        mb=lambda n: f"{n / 2**20:.1f} MiB" if n is not None else "n/a",
    )
