"""Export a trained student as ONE plain sentence-transformers model: text in any language and images.

The exported folder loads with ``SentenceTransformer(path_or_repo)`` alone (no ``trust_remote_code``, no
``import mvld_hf``) because it is built only from standard sentence-transformers 6 modules::

    Router  (sentence_transformers.sentence_transformer.modules.Router; str -> "text", PIL image -> "image")
      text:  Transformer(student backbone saved as a plain transformers model of its own model_type, e.g.
             XLMRobertaModel, with its tokenizer) -> Pooling(mean | cls, as the student) ->
             Dense(projection, identity activation, bias as the student)
      image: the frozen teacher's vision side, as lean as the teacher allows:
             - CLIP / SigLIP / SigLIP2 ("vision_tower" route): Transformer over the teacher's own vision
               model (CLIPVisionModel, SiglipVisionModel, ...) reading ``pooler_output`` [-> Dense(visual
               projection, identity) for CLIP]. No text tower is stored.
             - any other dual encoder ("full_teacher" route): Transformer over the whole teacher calling
               ``get_image_features``.

``include_images=False`` gives the text-only layout of ``clip-ViT-B-32-multilingual-v1``
(Transformer -> Pooling -> Dense, no Router). Text embeddings equal ``MultilingualTextTower.get_text_features``
and image embeddings equal ``teacher.encode_image``: both are checked on probe inputs at export time.
Embeddings are not normalised (as the student and teacher); the saved similarity is cosine.

The teacher id and revision are recorded in ``config_sentence_transformers.json`` under ``"mvld_hf"`` (and in
the model card): an embedding space is only meaningful with its teacher.

The parts live beside this module: :mod:`mvld_hf.student_loading` (the student from an object, folder, adapter
or Hub id; also used by evaluation), :mod:`mvld_hf.export_modules` (the routes' modules and the probe checks)
and :mod:`mvld_hf.export_staging` (the staging folder, its owner file and the final rename).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .data_utils import is_local_path
from .export_lock import ExportLock
from .export_modules import (
    PROBE_TEXTS,
    agree,
    cpu_float_student,
    fp32_bytes,
    image_modules,
    probe_images,
    run_route,
    text_modules,
)
from .export_staging import OWNER_FILE, check_output_dir, move_into_place, route_sizes, staging_dir
from .modeling_student import MultilingualTextTower
from .student_loading import NotAStudentError, load_student, load_student_tokenizer, text_length_limit
from .teachers import DualEncoderTeacher, Teacher, TeacherCapabilityError, load_teacher
from .vocab_trim import OutOfVocabularyWarning

logger = logging.getLogger(__name__)

__all__ = [
    "ExportResult",
    "NotAStudentError",
    "export_sentence_transformer",
    "find_eval_results",
    "load_student",
    "load_student_tokenizer",
    "route_sizes",
    "text_length_limit",
]

#: the sentence-transformers version the export was built and tested with (written as a load-time requirement;
#: 5.5.0-5.6.0 silently degraded XLM-R embeddings with flash attention)
ST_REQUIREMENT = ">=6.2"
#: default text truncation, the same as ``DistillationArguments.max_length`` and ``MultilingualTextTower.encode``
DEFAULT_MAX_SEQ_LENGTH = 128


@dataclass
class ExportResult:
    """What :func:`export_sentence_transformer` wrote. Sizes are bytes of the files on disk."""

    path: str
    include_images: bool
    image_route: str | None  # "vision_tower", "full_teacher" or None (text-only)
    teacher_name_or_path: str | None
    teacher_revision: str | None
    distillation_method: str | None
    backbone_model_type: str
    backbone_name_or_path: str | None
    pooling: str
    projection_dim: int
    projection_bias: bool
    max_seq_length: int | None
    text_route_bytes: int
    image_route_bytes: int
    #: the whole teacher's parameters and buffers at float32, for comparison with ``image_route_bytes``
    teacher_fp32_bytes: int | None = None
    #: what sentence-transformers (and mteb's wrapper) see: ``["text", "image"]`` or ``["text"]``
    modalities: list | None = None
    #: the shipped formats with their measured quality and speed (:func:`mvld_hf.export_onnx.export_onnx_formats`)
    formats: dict | None = None
    #: the pretrained backbone's layers the student kept (``from_backbone(keep_layers=...)``) and their number
    kept_layers: list | None = None
    source_num_layers: int | None = None
    #: the trimmed vocabulary's languages and sizes (:func:`mvld_hf.vocab_trim.trim_vocabulary`), if trimmed
    vocabulary_trim: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve_teacher(teacher, student_config, include_images: bool):
    """-> (Teacher or None, name, revision). Text-only exports never load the teacher."""
    revision = student_config.teacher_revision
    if isinstance(teacher, Teacher):
        return teacher, (student_config.teacher_name_or_path or teacher.name_or_path), (revision or teacher.revision)
    name = os.fspath(teacher) if teacher is not None else student_config.teacher_name_or_path
    if not include_images:
        return None, name, revision
    if not name:
        raise ValueError("the student does not record its teacher (config.teacher_name_or_path is empty): "
                         "pass the teacher (or export text-only)")
    if is_local_path(name) and not os.path.isdir(name):
        raise OSError(f"teacher {name!r} not found: no such directory (pass --teacher / teacher= to point to it)")
    loaded = load_teacher(name, revision=revision)  # OSError naming the teacher when it cannot be found
    recorded = student_config.teacher_name_or_path or name
    return loaded, recorded, revision


EVAL_RESULTS_FILE = "eval_results.json"


def find_eval_results(checkpoint) -> str | None:
    """The ``eval_results.json`` that ``mvld-distill`` wrote next to the checkpoint, when it holds per-language
    retrieval results the card can show (``None`` otherwise; an unreadable file is logged and skipped)."""
    if checkpoint is None or isinstance(checkpoint, nn.Module):
        return None
    path = os.path.join(os.fspath(checkpoint), EVAL_RESULTS_FILE)
    if not os.path.isfile(path):
        return None
    from .model_card import load_eval_results

    try:
        load_eval_results(path)
    except (OSError, ValueError) as err:
        logger.warning("not using %s for the model card: %s", path, err)
        return None
    logger.info("model card: evaluation results from %s", path)
    return path


def _check_finite(model: MultilingualTextTower) -> None:
    """Refuse a student whose weights hold NaN/inf (a diverged run), or are zero (every tensor, or the projection:
    every text embedded alike): say so, instead of a failed probe check."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        total = sum(1 for t in model.state_dict().values() if t.is_floating_point())
        raise ValueError(f"the student's weights are not finite: {len(bad)} of {total} tensors hold NaN or inf "
                         f"values (e.g. {bad[0]!r}); the run diverged or the checkpoint is damaged: export an "
                         "earlier checkpoint")
    zero = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.any()]
    projection = [name for name in zero if name.startswith("projection.") and name.endswith("weight")]
    total = sum(1 for t in model.state_dict().values() if t.is_floating_point())
    if projection or len(zero) == total:
        raise ValueError(f"the student's weights are zero: {len(zero)} of {total} tensors are all zero (e.g. "
                         f"{(projection or zero)[0]!r}), so it embeds every text as the same vector: there is nothing "
                         "to export; export a trained checkpoint (these weights were zeroed or never written)")


def export_sentence_transformer(
    student,
    tokenizer=None,
    teacher=None,
    output_dir: str | os.PathLike = "sentence_transformer",
    include_images: bool = True,
    *,
    max_seq_length: int | None = DEFAULT_MAX_SEQ_LENGTH,
    lean_image_route: bool = True,
    overwrite: bool = False,
    card_kwargs: dict | None = None,
    write_card: bool = True,
    formats=("pytorch",),
    int8_max_drop: float | None = None,
    int8_on_loss: str = "warn",
    check_pairs=None,
    measure_speed: bool | None = None,
) -> ExportResult:
    """Write ``student`` (+ the teacher's image side) as one plain sentence-transformers 6 folder.

    Args:
        student: a :class:`MultilingualTextTower`, a PEFT-wrapped one (merged with ``merge_and_unload`` on a
            copy), or a checkpoint folder / Hub id (a PEFT adapter folder is merged too). See :func:`load_student`.
        tokenizer: the student's tokenizer, a name/path, or ``None`` to read it from the checkpoint folder.
        teacher: a :class:`~mvld_hf.teachers.DualEncoderTeacher`, a name/path for :func:`~mvld_hf.load_teacher`,
            or ``None`` for the student's ``config.teacher_name_or_path`` (at ``config.teacher_revision``).
            Text-only exports only record its name and never load it.
        output_dir: where to write; must be empty or absent (or an earlier export with ``overwrite=True``).
            The folder is built next to it and renamed at the end: a failed export leaves nothing behind.
        include_images: add the image route (``False``: text only, like ``clip-ViT-B-32-multilingual-v1``).
        max_seq_length: text truncation in tokens (default 128, the training default), capped by what the
            student can embed (:func:`text_length_limit`: its position table and tokenizer); ``None`` keeps that
            limit.
        lean_image_route: store only the teacher's vision tower when possible (see the module docstring);
            ``False`` stores the full teacher (``get_image_features``).
        card_kwargs: extra arguments for :func:`mvld_hf.model_card.render_model_card` (``repo_id``,
            ``eval_results``, ``languages``, ``training_data``, ``hyperparameters``, ...).
        write_card: write ``README.md`` (the model card).
        formats: ``"pytorch"`` (the sentence-transformers folder, always written), ``"onnx"`` (fp32 ONNX graphs
            of the text route, Dense included, and of the image route under ``onnx/``), ``"int8"`` (the text
            graph with dynamic int8 weights), ``"immich"`` (an immich-layout bundle under ``immich/``, made from
            the fp32 graphs and checked against them: :mod:`mvld_hf.export_immich`; needs the image route); a
            list or ``"pytorch,onnx,int8"``. Each format is measured
            (cosine and top-1 agreement with PyTorch, translation R@1 on a multi-script check set, speed) and
            the card lists the figures; see :mod:`mvld_hf.export_onnx`.
        int8_max_drop: the largest mean R@1 loss of int8 against PyTorch on the check set (fraction; default
            0.01, one point); beyond it the export warns (``int8_on_loss="warn"``) or fails
            (``"refuse"``, :class:`~mvld_hf.export_onnx.Int8QualityError`).
        check_pairs: ``(query, target)`` text pairs for the R@1 check (default: the built-in multi-script
            translations, :data:`mvld_hf.export_onnx.CHECK_PAIRS`).
        measure_speed: measure every format (quality on the check set, batch-1 and batch-64 speed) for the card;
            default: when ONNX formats are asked for (a PyTorch-only export then has no formats table).

    Returns:
        :class:`ExportResult` with the recorded teacher, the image route kind and the sizes in bytes.

    Raises:
        NotAStudentError, OSError (checkpoint/teacher/tokenizer not found), TeacherCapabilityError (a teacher
        without an image side and ``include_images=True``), ValueError (teacher and student dimensions differ),
        FileExistsError (``output_dir`` not empty), RuntimeError (the built model does not reproduce the
        student or teacher on probe inputs: a bug, please report).
    """
    from .export_onnx import INT8_MAX_DROP, parse_formats, require_onnx

    formats = parse_formats(formats)
    require_onnx(formats)  # before any work
    if "immich" in formats and not include_images:
        raise ValueError("the immich format needs the image route (immich embeds the photos with it): "
                         "export with include_images=True, or leave out the immich format")
    checkpoint = None if isinstance(student, nn.Module) else student
    model = load_student(student)
    _check_finite(model)
    tokenizer = load_student_tokenizer(tokenizer, checkpoint)
    config = model.config
    loaded_teacher, teacher_name, teacher_revision = _resolve_teacher(teacher, config, include_images)
    if include_images:
        if not isinstance(loaded_teacher, DualEncoderTeacher) or not loaded_teacher.supports_images:
            raise TeacherCapabilityError(
                f"teacher {teacher_name!r} has no image side that can be exported (a transformers CLIP/SigLIP "
                f"dual encoder with its image processor is needed); export text-only (include_images=False)")
        if loaded_teacher.dim != config.projection_dim:
            raise ValueError(f"teacher {teacher_name!r} embeds in {loaded_teacher.dim} dimensions but the student "
                             f"projects to {config.projection_dim}: they are not the same embedding space")
    if loaded_teacher is not None and config.teacher_name_or_path and \
            loaded_teacher.name_or_path != config.teacher_name_or_path:
        logger.warning("exporting with teacher %r, but the student records %r; the card names %r",
                       loaded_teacher.name_or_path, config.teacher_name_or_path, teacher_name)

    max_seq_length = text_length_limit(model, tokenizer, max_seq_length)
    output_dir = os.fspath(output_dir)
    lock = ExportLock(output_dir).acquire()  # a second export into output_dir meanwhile is refused
    staging = None
    try:
        check_output_dir(output_dir, overwrite)  # under the lock: an export that finished meanwhile is seen
        staging = staging_dir(output_dir)  # written completely, then renamed: a failed export leaves nothing
        onnx_kwargs = dict(formats=formats, check_pairs=check_pairs, int8_on_loss=int8_on_loss,
                           int8_max_drop=INT8_MAX_DROP if int8_max_drop is None else int8_max_drop,
                           measure_speed=bool({"onnx", "int8"} & set(formats)) if measure_speed is None
                           else measure_speed)
        result = _export_into(staging, output_dir, model, tokenizer, config, loaded_teacher, teacher_name,
                              teacher_revision, include_images, max_seq_length, lean_image_route, onnx_kwargs)
        os.remove(os.path.join(staging, OWNER_FILE))
        if write_card:
            from .model_card import render_model_card

            card_kwargs = dict(card_kwargs or {})
            if card_kwargs.get("eval_results") is None and checkpoint is not None:
                card_kwargs["eval_results"] = find_eval_results(checkpoint)
            render_model_card(result, **card_kwargs).save(os.path.join(staging, "README.md"))
        move_into_place(staging, output_dir)
    finally:
        if staging is not None and os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()
    return result


def _export_into(staging, output_dir, model, tokenizer, config, loaded_teacher, teacher_name, teacher_revision,
                 include_images, max_seq_length, lean_image_route, onnx_kwargs=None) -> ExportResult:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Router

    was_training = model.training
    model.eval()
    try:
        cpu_student = cpu_float_student(model)
        with tempfile.TemporaryDirectory(prefix="mvld_export_") as work:
            text = text_modules(cpu_student, tokenizer, work, max_seq_length)
            with warnings.catch_warnings():  # a trimmed vocabulary may not cover every probe text's language
                warnings.simplefilter("ignore", category=OutOfVocabularyWarning)
                want = cpu_student.encode(PROBE_TEXTS, tokenizer, max_length=max_seq_length or 512)
            got = run_route(text, PROBE_TEXTS)
            if not (torch.isfinite(want).all() and torch.isfinite(got).all()):
                raise ValueError("the student's embeddings are NaN/inf on plain probe texts although its weights "
                                 "are finite (overflow in the backbone?): this checkpoint cannot be exported")
            if not agree(got, want):
                raise RuntimeError("the exported text route does not reproduce the student's embeddings")
            image_route = None
            if include_images:
                image, image_route = image_modules(loaded_teacher, work, lean_image_route)
                probes = probe_images()
                want = loaded_teacher.encode_image(probes)
                if not agree(run_route(image, probes), want) and image_route == "vision_tower":
                    logger.warning("the teacher's vision tower alone does not reproduce encode_image; "
                                   "exporting the full teacher instead")
                    image, image_route = image_modules(loaded_teacher, os.path.join(work, "full"), lean=False)
                if not agree(run_route(image, probes), want):
                    raise RuntimeError("the exported image route does not reproduce the teacher's image embeddings")
                modules = [Router({"text": text, "image": image}, default_route="text")]
            else:
                modules = text
            st = SentenceTransformer(modules=modules, device="cpu", similarity_fn_name="cosine")
            st.save(staging, create_model_card=False)
            modalities = [m for m in st.modalities if isinstance(m, str)]
            report = None
            if onnx_kwargs and ({"onnx", "int8"} & set(onnx_kwargs["formats"]) or onnx_kwargs["measure_speed"]):
                from .export_onnx import export_onnx_formats

                report = export_onnx_formats(st, staging, **onnx_kwargs)
                if "immich" in onnx_kwargs["formats"]:
                    from .export_immich import export_immich_bundle

                    report["immich"] = export_immich_bundle(staging, threads=report.get("threads"))
    finally:
        model.train(was_training)

    _annotate_config(staging, teacher_name, teacher_revision, config, image_route, modalities,
                     sorted(report["formats"]) + ["immich"] * ("immich" in report) if report else ["pytorch"])
    backbone_cfg = config.backbone_config
    sizes = route_sizes(staging)
    return ExportResult(
        path=output_dir, include_images=include_images, image_route=image_route,
        teacher_name_or_path=teacher_name, teacher_revision=teacher_revision,
        distillation_method=config.distillation_method,
        backbone_model_type=backbone_cfg.model_type,
        backbone_name_or_path=getattr(backbone_cfg, "_name_or_path", None) or None,
        pooling=config.pooling, projection_dim=config.projection_dim, projection_bias=config.projection_bias,
        max_seq_length=max_seq_length, text_route_bytes=sizes["text"], image_route_bytes=sizes["image"],
        teacher_fp32_bytes=fp32_bytes(loaded_teacher.model) if loaded_teacher is not None else None,
        modalities=modalities, formats=report,
        kept_layers=getattr(config, "kept_layers", None), source_num_layers=getattr(config, "source_num_layers", None),
        vocabulary_trim=getattr(config, "vocabulary_trim", None),
    )


def _annotate_config(output_dir: str, teacher: str | None, revision: str | None, config, image_route,
                     modalities=None, formats=None) -> None:
    """Record the teacher (and a version requirement) in config_sentence_transformers.json."""
    from ._version import __version__

    path = os.path.join(output_dir, "config_sentence_transformers.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["requirements"] = {"sentence-transformers": {
        "specifier": ST_REQUIREMENT,
        "reason": "the Router image route and the flash-attention fix for XLM-R were checked with 6.2"}}
    data["mvld_hf"] = {
        "version": __version__,
        "teacher_name_or_path": teacher,
        "teacher_revision": revision,
        "distillation_method": config.distillation_method,
        "kept_layers": getattr(config, "kept_layers", None),
        "vocabulary_trim": getattr(config, "vocabulary_trim", None),
        "image_route": image_route,
        "modalities": modalities,
        "formats": formats,
        "note": "text embeddings live in the teacher's embedding space; compare them only with this teacher's "
                "image (or text) embeddings",
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    _declare_modalities(output_dir, modalities)


def _declare_modalities(output_dir: str, modalities) -> None:
    """A Router export's modalities in a top-level ``sentence_bert_config.json`` (``modality_config``).

    sentence-transformers reads each route's modalities from its modules (``model.modalities``), but tools
    that look only at the repository's top-level files, like mteb (2.x: ``ModelMeta`` takes the keys of
    ``modality_config`` in the root ``sentence_bert_config.json``, else treats the model as text-only), would
    see no image route. A text-only export already has that file (its Transformer sits at the top level)."""
    path = os.path.join(output_dir, "sentence_bert_config.json")
    if not os.path.isfile(os.path.join(output_dir, "router_config.json")) or os.path.exists(path):
        return
    routes = {m: {"route": m} for m in (modalities or []) if m in ("text", "image", "audio", "video")}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"modality_config": routes}, f, indent=2)
