"""Teacher, student and data of a real run: Hub ids or local folders for the models, a Hub dataset, a folder
written by ``save_to_disk`` or a local data file for the captions, optionally joined with precomputed teacher
embeddings."""

from __future__ import annotations

import os

from transformers import AutoTokenizer

import mvld_hf
from mvld_hf import DistillationArguments, MultilingualTextTower

from .arguments import CliError, DataArguments, ModelArguments


def pretrained_student(model_args: ModelArguments, teacher, teacher_name: str):
    """Tokenizer and student tower from a pretrained backbone (Hub id or local folder)."""
    tokenizer = AutoTokenizer.from_pretrained(model_args.student)
    student = MultilingualTextTower.from_backbone(
        model_args.student, projection_dim=teacher.dim, pooling=model_args.pooling,
        teacher_name_or_path=teacher_name, teacher_revision=model_args.teacher_revision)
    return tokenizer, student


LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_split(name: str, config: str | None, split: str, streaming: bool = False):
    """One split of a Hub dataset, a folder written by ``save_to_disk`` (a ``DatasetDict``: its ``split``), or
    a local ``.json``/``.jsonl``/``.csv``/``.parquet`` file. For a data file, ``split`` may itself be a data file
    (e.g. ``--eval_split held_out.jsonl``); the file given as the dataset is the training split."""
    import datasets

    def data_file(path: str):
        return datasets.load_dataset(LOCAL_FORMATS[os.path.splitext(path)[1].lower()], data_files=path,
                                     split="train", streaming=streaming)

    if os.path.isfile(split) and os.path.splitext(split)[1].lower() in LOCAL_FORMATS:
        return data_file(split)
    if os.path.isfile(name):
        if os.path.splitext(name)[1].lower() not in LOCAL_FORMATS:
            raise CliError(f"--dataset {name}: a local file must be one of {sorted(LOCAL_FORMATS)}")
        if split != "train":
            raise CliError(f"--dataset {name} is one data file (the training split); give the held-out rows as "
                           f"another file (--eval_split path/to/test.jsonl) or skip evaluation (--eval_split '')")
        return data_file(name)
    saved = [os.path.join(name, f) for f in ("dataset_dict.json", "state.json")]
    if os.path.isdir(name) and any(os.path.isfile(path) for path in saved):  # written by save_to_disk
        data = datasets.load_from_disk(name)
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise CliError(f"--dataset {name} has splits {list(data)}, not {split!r}")
            data = data[split]
        return data.to_iterable_dataset() if streaming else data
    return datasets.load_dataset(name, config, split=split, streaming=streaming)


def hub_setup(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments):
    """Teacher and student from the Hub or local folders, training data from a Hub dataset (M-CLIP's 7M
    captions, ...) or a local one (see :func:`load_split`)."""
    from datasets import load_dataset

    from mvld_hf.data_files import normalise_language, normalise_language_column
    from mvld_hf.teachers import teacher_dtype

    teacher = mvld_hf.load_teacher(model_args.teacher, revision=model_args.teacher_revision, device=args.device,
                                   dtype=teacher_dtype(args.device, model_args.teacher_dtype))
    tokenizer = AutoTokenizer.from_pretrained(model_args.student)
    student = MultilingualTextTower.from_backbone(
        model_args.student, projection_dim=teacher.dim, pooling=model_args.pooling,
        teacher_name_or_path=model_args.teacher, teacher_revision=model_args.teacher_revision)
    student.config.distillation_method = args.method
    train = load_split(data_args.dataset, data_args.dataset_config, data_args.train_split, data_args.streaming)
    if data_args.languages:  # compared with the data's codes, made canonical below
        data_args.languages = [normalise_language(code) or code for code in data_args.languages]
    train = normalise_language_column(train, data_args.language_column, f"--dataset {data_args.dataset}")
    if args.anchor_language != "en" and args.english_column == "english":
        raise CliError(f"--anchor_language {args.anchor_language}: name the column holding each row's "
                       f"{args.anchor_language!r} caption with --english_column (the anchor the teacher embeds)")
    if data_args.world_language_share:
        raise CliError("--world_language_share applies to the offline world only")
    if data_args.languages:
        keep = set(data_args.languages)
        train = train.filter(lambda lang: lang in keep, input_columns=data_args.language_column)
    if data_args.max_train_samples:
        train = train.take(data_args.max_train_samples) if data_args.streaming else \
            train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.precomputed_embeddings:
        from mvld_hf.precompute import join_precomputed_embeddings

        embeddings = load_dataset(data_args.precomputed_embeddings, data_args.precomputed_embeddings_config,
                                  split=data_args.train_split)
        train = join_precomputed_embeddings(train, embeddings, id_column=data_args.precomputed_id_column,
                                            embedding_column=data_args.precomputed_embedding_column,
                                            output_column=args.teacher_text_column)
    evaluation = None
    if data_args.eval_split:
        evaluation = load_split(data_args.dataset, data_args.dataset_config, data_args.eval_split)
        evaluation = normalise_language_column(evaluation, data_args.language_column,
                                               f"--eval_split {data_args.eval_split}")
    return train, evaluation, teacher, tokenizer, student
