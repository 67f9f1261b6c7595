"""Publish a student as one Sentence Transformers model (text in any language + images) with its model card.

Two entry points build the *same* folder with :func:`build_hub_folder`:

- ``hub_upload.py CHECKPOINT --repo-id ORG/NAME`` (:func:`main`) from a saved checkpoint;
- :func:`push_to_hub` from a live ``DistillationTrainer`` (or a student object) at the end of training.

Why a helper rather than ``Trainer.push_to_hub``: the Trainer uploads its ``output_dir`` (the student in the
mvld_hf format, which needs ``import mvld_hf`` to load) and writes its own card. ``push_to_hub(trainer, ...)``
exports what users can load with plain ``SentenceTransformer(repo)``, takes the hyperparameters from
``trainer.args``, and runs only on the main process. Keep ``Trainer.push_to_hub`` for resumable training
checkpoints (a separate repo or branch).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

from huggingface_hub import HfApi, get_token

from .export import DEFAULT_MAX_SEQ_LENGTH, ExportResult, NotAStudentError, export_sentence_transformer
from .run_record import hyperparameters_from_args, read_run_record
from .teachers import TeacherCapabilityError

logger = logging.getLogger(__name__)

__all__ = ["HubUploadError", "build_hub_folder", "main", "push_to_hub", "trainer_hyperparameters"]

class HubUploadError(RuntimeError):
    """Publishing cannot go ahead (no token, bad repo id, upload refused); the message says why."""


def _is_trainer(obj) -> bool:
    return hasattr(obj, "args") and hasattr(obj, "model") and hasattr(obj, "state")


def trainer_hyperparameters(trainer) -> dict:
    """The card's hyperparameters from ``trainer.args`` (a ``DistillationArguments``) and ``trainer.state``."""
    step = getattr(getattr(trainer, "state", None), "global_step", 0)
    return hyperparameters_from_args(trainer.args, global_step=step)


def _training_languages(trainer) -> list[str] | None:
    dataset = getattr(trainer, "train_dataset", None)
    if dataset is not None and "language" in (getattr(dataset, "column_names", None) or []):
        try:
            return sorted(set(dataset.unique("language")))
        except Exception:  # an IterableDataset or a custom dataset: leave the languages unrecorded
            return None
    return None


def build_hub_folder(
    source,
    local_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    tokenizer=None,
    teacher=None,
    include_images: bool = True,
    eval_results=None,
    eval_dataset: str | None = None,
    languages=None,
    training_data=None,
    hyperparameters: dict | None = None,
    license: str | None = None,
    max_seq_length: int | None = None,
    overwrite: bool = False,
    teacher_hub_id: str | None = None,
    formats="pytorch",
    int8_max_drop: float | None = None,
    int8_on_loss: str = "warn",
    text_only_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Export ``source`` (a checkpoint path, a student, or a Trainer) and its model card into ``local_dir``.

    With a Trainer, the student, tokenizer, teacher, max length, hyperparameters and (when the training set
    has a ``language`` column) the training languages come from it unless given here. With a checkpoint folder
    they come from its run record (:func:`mvld_hf.run_record.read_run_record`: ``mvld_run.json``, else the
    Trainer's ``training_args.bin`` / ``trainer_state.json``). ``max_seq_length`` defaults to the training
    ``max_length`` and is capped by what the student can embed. ``teacher_hub_id`` names a teacher that the
    student records by a local path.
    """
    run = {}
    if _is_trainer(source):
        trainer = source
        tokenizer = tokenizer if tokenizer is not None else getattr(trainer, "processing_class", None)
        teacher = teacher if teacher is not None else getattr(trainer, "teacher", None)
        hyperparameters = {**trainer_hyperparameters(trainer), **(hyperparameters or {})}
        languages = languages if languages is not None else _training_languages(trainer)
        if max_seq_length is None:
            max_seq_length = getattr(trainer.args, "max_length", None)
        source = trainer.model
    else:
        run = read_run_record(source)
        if max_seq_length is None:
            max_seq_length = (run.get("hyperparameters") or {}).get("max_length")
    card_kwargs = dict(repo_id=repo_id, eval_results=eval_results, eval_dataset=eval_dataset, languages=languages,
                       training_data=training_data, hyperparameters=hyperparameters, license=license,
                       teacher_hub_id=teacher_hub_id, run=run)
    common = dict(max_seq_length=max_seq_length or DEFAULT_MAX_SEQ_LENGTH, overwrite=overwrite, formats=formats,
                  int8_max_drop=int8_max_drop, int8_on_loss=int8_on_loss)
    result = export_sentence_transformer(source, tokenizer, teacher, local_dir, include_images=include_images,
                                         card_kwargs=card_kwargs, **common)
    if text_only_dir is not None:
        text_kwargs = {**card_kwargs, "repo_id": None} if repo_id else card_kwargs
        export_sentence_transformer(source, tokenizer, teacher, text_only_dir, include_images=False,
                                    card_kwargs=text_kwargs, **common)
    return result


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(parts):
        raise HubUploadError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")


def _require_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise HubUploadError("no Hugging Face token found: run `hf auth login` or set HF_TOKEN "
                             "(or pass --local-dir to only write the folder)")
    return token


def upload_folder(folder, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                  token: str | None = None, commit_message: str = "Upload mvld_hf student") -> str:
    """``create_repo(exist_ok=True)`` (+ the branch ``revision``) and ``upload_folder``; returns the commit URL."""
    _check_repo_id(repo_id)
    token = _require_token(token)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    commit = api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), revision=revision,
                               repo_type="model", commit_message=commit_message)
    return getattr(commit, "commit_url", None) or str(commit)


def push_to_hub(trainer_or_student, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                token: str | None = None, local_dir: str | os.PathLike | None = None,
                commit_message: str = "Upload mvld_hf student", **build_kwargs) -> str | None:
    """Export a Trainer's (or a student's) model as one Sentence Transformers model and upload it.

    The folder is the one :func:`build_hub_folder` / ``hub_upload.py`` write. ``local_dir`` keeps a copy
    (otherwise a temporary folder is used). On non-main processes of a distributed run this does nothing and
    returns ``None``. Returns the commit URL. ``build_kwargs``: see :func:`build_hub_folder`.
    """
    is_main = getattr(trainer_or_student, "is_world_process_zero", None)
    if callable(is_main) and not is_main():
        return None
    _check_repo_id(repo_id)
    token = _require_token(token)  # fail before the (possibly long) export
    if local_dir is not None:
        build_hub_folder(trainer_or_student, local_dir, repo_id=repo_id, **build_kwargs)
        return upload_folder(local_dir, repo_id, private=private, revision=revision, token=token,
                             commit_message=commit_message)
    with tempfile.TemporaryDirectory(prefix="mvld_hub_") as tmp:
        folder = os.path.join(tmp, "model")
        build_hub_folder(trainer_or_student, folder, repo_id=repo_id, **build_kwargs)
        return upload_folder(folder, repo_id, private=private, revision=revision, token=token,
                             commit_message=commit_message)


# ---------------------------------------------------------------------------------------------------- CLI
def _print_formats(result: ExportResult) -> None:
    for name, f in ((result.formats or {}).get("formats") or {}).items():
        speed = (f" batch-1 p50 {f['batch1_ms_p50']:.1f} ms, batch-64 {f['batch64_texts_per_s']:,.0f} texts/s"
                 if "batch1_ms_p50" in f else "")
        print(f"  {name}: {f['bytes'] / 2**20:.1f} MiB, min cosine to PyTorch {f['cosine_min']:.5f}, "
              f"top-1 agreement {100 * f['top1_agreement']:.1f}%, check-set R@1 {100 * f['r1']:.1f}{speed}")


def _parser(prog: str = "hub_upload.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export an mvld_hf student as one Sentence Transformers model (text in any language + "
                    "images through the teacher's image encoder), write its model card and upload it.")
    p.add_argument("checkpoint", help="student folder (save_pretrained / Trainer checkpoint; a PEFT adapter "
                                      "folder is merged) or Hub id")
    p.add_argument("--repo-id", help="ORG/NAME on the Hugging Face Hub (needed to upload; optional with "
                                     "--local-dir alone, where it only names the model in the card)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", help="branch to upload to (created if missing)")
    p.add_argument("--local-dir", help="write the folder here; without --push nothing is uploaded")
    p.add_argument("--push", action="store_true", help="with --local-dir: also upload the folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --local-dir")
    p.add_argument("--teacher", help="teacher name or path (default: the student's config.teacher_name_or_path)")
    p.add_argument("--tokenizer", help="student tokenizer name or path (default: the checkpoint folder)")
    p.add_argument("--eval-results", help="evaluation JSON with per-language retrieval results "
                                          "(layouts: see mvld_hf.model_card)")
    p.add_argument("--eval-dataset", help="benchmark name for the results when the JSON does not name one")
    p.add_argument("--text-only", action="store_true", help="export the text route only (no images)")
    p.add_argument("--text-only-dir", help="also write the text-only model (Transformer -> Pooling -> Dense, the "
                                           "clip-ViT-B-32-multilingual-v1 layout) of the same student here "
                                           "(written locally, not uploaded)")
    p.add_argument("--formats", default="pytorch",
                   help="formats to ship, comma-separated: pytorch (always), onnx (fp32 ONNX of the text route, "
                        "projection included, and of the image route), int8 (dynamically quantized text route), immich "
                        "(an immich-layout bundle under immich/, implies onnx; see mvld_hf.export_immich); "
                        "each is measured and listed in the card. onnx/int8 need: pip install 'mvld_hf[onnx]'")
    p.add_argument("--int8-max-drop", type=float, default=1.0,
                   help="largest loss of mean R@1 (in points) that int8 may have against PyTorch on the check "
                        "set (default 1.0)")
    p.add_argument("--int8-on-loss", choices=("warn", "refuse"), default="warn",
                   help="when int8 loses more: warn and state it in the card (default), or refuse the export")
    p.add_argument("--languages", help="training languages, comma-separated ISO codes (e.g. de,fr,ja)")
    p.add_argument("--training-data", help="training data, comma-separated dataset ids or descriptions")
    p.add_argument("--license", help="license id for the card (e.g. apache-2.0)")
    p.add_argument("--teacher-hub-id", help="the teacher's Hub id, when the student records it by a local path "
                                            "(the card never shows local paths)")
    p.add_argument("--max-seq-length", type=int, default=None,
                   help="text truncation in tokens (default: the run's training max_length, else "
                        f"{DEFAULT_MAX_SEQ_LENGTH}; capped by the student's position embeddings)")
    return p


def main(argv: list[str] | None = None, prog: str = "hub_upload.py") -> int:
    """The ``hub_upload.py`` (``mvld-upload``) command; returns the exit status. Expected failures print one line,
    no traceback."""
    args = _parser(prog).parse_args(argv)
    upload = args.local_dir is None or args.push
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # weight loading/writing bars; upload progress (huggingface_hub) stays
    try:
        return _run(args, upload, prog)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _run(args, upload: bool, prog: str = "hub_upload.py") -> int:
    try:
        if upload and not args.repo_id:
            raise HubUploadError("uploading needs --repo-id ORG/NAME (or pass --local-dir DIR alone to only "
                                 "write the folder)")
        if args.repo_id is not None:
            _check_repo_id(args.repo_id)
        token = _require_token(None) if upload else None
        build = dict(repo_id=args.repo_id, tokenizer=args.tokenizer, teacher=args.teacher,
                     teacher_hub_id=args.teacher_hub_id,
                     include_images=not args.text_only, eval_results=args.eval_results,
                     eval_dataset=args.eval_dataset, languages=args.languages, training_data=args.training_data,
                     license=args.license, max_seq_length=args.max_seq_length, overwrite=args.overwrite,
                     formats=args.formats, int8_max_drop=args.int8_max_drop / 100, int8_on_loss=args.int8_on_loss,
                     text_only_dir=args.text_only_dir)
        from .export_onnx import parse_formats, require_onnx

        require_onnx(parse_formats(args.formats))  # an unknown or unavailable format fails before the export
        if args.eval_results is not None:  # fail on a bad JSON before the export
            from .model_card import load_eval_results

            load_eval_results(args.eval_results)
        if args.local_dir is not None:  # a target that is a file, under a file, or not empty: before the export
            from .export_staging import check_output_dir

            check_output_dir(args.local_dir, args.overwrite)
        if not upload:
            print(f"exporting {args.checkpoint} to {args.local_dir} ...", flush=True)
            result = build_hub_folder(args.checkpoint, args.local_dir, **build)
            print(f"wrote {result.path} (text route {result.text_route_bytes} bytes, image route "
                  f"{result.image_route_bytes} bytes, model card README.md); not uploaded")
            _print_formats(result)
            if args.text_only_dir:
                print(f"wrote the text-only model to {args.text_only_dir}")
            return 0
        print(f"exporting {args.checkpoint} and uploading it to {args.repo_id} ...", flush=True)
        url = push_to_hub(args.checkpoint, args.repo_id, private=args.private or None, revision=args.revision,
                          token=token, local_dir=args.local_dir, **{k: v for k, v in build.items() if k != "repo_id"})
        print(f"uploaded to https://huggingface.co/{args.repo_id} ({url})")
        return 0
    except (HubUploadError, NotAStudentError, TeacherCapabilityError, FileExistsError, ValueError, OSError,
            ImportError) as err:
        message = " ".join(str(err).split())  # one line
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
