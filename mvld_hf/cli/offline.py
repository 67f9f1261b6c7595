"""The offline world a run sets up when ``--teacher offline``: the procedural scenes and captions, the English
teacher trained on them (once, cached), a tokenizer trained on the captions and a small random student (or a
pretrained one, :func:`mvld_hf.cli.hub_data.pretrained_student`)."""

from __future__ import annotations

import logging
import os

from transformers import set_seed

import mvld_hf
from mvld_hf import DistillationArguments, MultilingualTextTower

from .arguments import OFFLINE, DataArguments, ModelArguments
from .hub_data import pretrained_student

logger = logging.getLogger("mvld_hf.distill")


def offline_setup(model_args: ModelArguments, data_args: DataArguments, args: DistillationArguments, clock=None):
    """World, English teacher (trained once, cached), tokenizer trained on the captions, random student.
    ``clock`` (a :class:`~mvld_hf.cli.phases.PhaseClock`) times the world, teacher and tokenizer phases."""
    from mvld_hf.data import with_anchor_language
    from mvld_hf.synthetic import build_world, subsample_languages, train_english_teacher
    from mvld_hf.testing import tiny_backbone_config, train_tokenizer

    from .phases import no_phase

    phase = clock.phase if clock is not None else no_phase

    world_kwargs = {k: v for k, v in dict(num_train_scenes=data_args.world_train_scenes,
                                          num_test_scenes=data_args.world_test_scenes,
                                          languages=data_args.languages).items() if v is not None}
    with phase("world"):
        world = build_world(seed=data_args.world_seed, **world_kwargs)
    train = subsample_languages(with_anchor_language(world["train"], args.anchor_language),
                                data_args.world_language_share or {}, seed=data_args.world_seed)
    if data_args.max_train_samples:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
        logger.info("training on the first %d offline captions (--max_train_samples)", len(train))
    evaluation = world["test"] if data_args.eval_split else None
    # the teacher's cache folder is fingerprinted by its training data and settings: a changed world retrains it
    teacher_kwargs = {"steps": data_args.teacher_steps} if data_args.teacher_steps else {}
    threads = os.environ.get("MVLD_HF_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:  # the teacher keeps to it too (else it times 1 vs all cores)
        teacher_kwargs["num_threads"] = int(threads)
    with phase("teacher"):
        with args.main_process_first(desc="offline teacher"):
            teacher_path = train_english_teacher(world, seed=data_args.world_seed, **teacher_kwargs)
        teacher = mvld_hf.load_teacher(teacher_path)
    if model_args.student != OFFLINE:  # a real pretrained student (a local folder) beside the offline teacher
        with phase("tokenizer"):
            return train, evaluation, teacher, *pretrained_student(model_args, teacher, teacher_path)

    with phase("tokenizer"):  # the tokenizer, then the student over its vocabulary
        texts = list(train["caption"])  # the tokenizer sees only the training captions kept
        tokenizer = train_tokenizer(texts, vocab_size=model_args.offline_vocab_size,
                                    model_max_length=args.max_length,
                                    max_token_length=model_args.offline_max_token_length)
        backbone = tiny_backbone_config(len(tokenizer), hidden_size=model_args.offline_hidden_size,
                                        layers=model_args.offline_layers, heads=model_args.offline_heads,
                                        max_positions=args.max_length + 2)
        set_seed(args.seed)
        config = mvld_hf.MultilingualTextTowerConfig(
            backbone_config=backbone.to_dict(), projection_dim=teacher.dim, pooling=model_args.pooling,
            teacher_name_or_path=teacher_path, distillation_method=args.method)
        student = MultilingualTextTower(config)
    return train, evaluation, teacher, tokenizer, student
