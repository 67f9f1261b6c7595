"""A procedural multilingual image-caption world and an English-only CLIP teacher trained on it.

- :func:`build_world` / :func:`build_vqa`: rendered scenes with captions in :data:`LANGUAGES` and a
  multiple-choice VQA set on held-out compositions (``datasets`` objects, cached on disk).
- :func:`train_english_teacher` / :func:`english_retrieval`: a tiny ``CLIPModel`` trained on the English
  captions of the train split, saved as a folder that loads with the ``transformers`` Auto classes.

The teacher functions import torch/transformers lazily.
"""

from .grammar import caption, get_realiser
from .scenes import IMAGE_SIZE, composition_key, parse_composition_key
from .vocab import COLOURS, SHAPES, SIZES
from .world import (
    LANGUAGES,
    SCRIPTS,
    VERSION,
    build_vqa,
    build_world,
    default_cache_dir,
    make_scenes,
    parse_language_shares,
    realise_question,
    scene_question,
    subsample_languages,
    world_folder,
)

__all__ = ["LANGUAGES", "SCRIPTS", "VERSION", "IMAGE_SIZE", "SHAPES", "COLOURS", "SIZES", "build_world",
           "build_vqa", "default_cache_dir", "make_scenes", "scene_question", "realise_question", "caption",
           "get_realiser", "composition_key", "parse_composition_key", "parse_language_shares",
           "subsample_languages", "world_folder", "train_english_teacher", "english_retrieval", "english_vqa",
           "default_teacher_dir"]

_LAZY = {"train_english_teacher", "english_retrieval", "english_vqa", "default_teacher_dir"}


def __getattr__(name):
    if name in _LAZY:
        from . import teacher

        return getattr(teacher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
