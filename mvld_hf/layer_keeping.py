"""Keeping a subset of a pretrained backbone's transformer layers (a smaller student from the same checkpoint).

Used by :meth:`mvld_hf.modeling_student.MultilingualTextTower.from_backbone` (``keep_layers=``). The layers are
found generically: the one ``nn.ModuleList`` whose length is the config's layer count (``encoder.layer`` in
BERT/XLM-R/MiniLM, ``transformer.layer`` in DistilBERT, ``layers`` elsewhere).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

#: config attributes that hold the layer count (``num_hidden_layers`` reaches DistilBERT's ``n_layers`` through
#: its ``attribute_map``)
LAYER_COUNT_ATTRIBUTES = ("num_hidden_layers", "n_layers", "num_layers")
#: per-layer config lists that must follow the kept layers
PER_LAYER_ATTRIBUTES = ("layer_types",)


def layer_count(config) -> tuple[str, int]:
    """``(attribute, value)`` of the config's layer count."""
    for name in LAYER_COUNT_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return name, value
    raise ValueError(f"cannot tell how many layers a {type(config).__name__} has (none of "
                     f"{', '.join(LAYER_COUNT_ATTRIBUTES)}): keep_layers needs one")


def find_layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(qualified name, ModuleList)`` of the model's transformer layers: the ModuleList whose length is the
    config's layer count (the outermost one when several are)."""
    _, count = layer_count(model.config)
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == count and name]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of its {count} layers: keep_layers cannot "
                         "tell which modules are its layers")
    found.sort(key=lambda item: item[0].count("."))
    if len(found) > 1 and found[0][0].count(".") == found[1][0].count("."):
        raise ValueError(f"{type(model).__name__} has several lists of {count} modules "
                         f"({', '.join(n for n, _ in found)}): keep_layers cannot tell which are its layers")
    return found[0]


def layer_indices(keep, total: int) -> list[int]:
    """The layer indices ``keep`` asks for out of ``total`` layers.

    An int ``N`` (1 <= N <= total): N evenly spaced layers with the first and the last (N=1: the first);
    a list/tuple of ints: those layers, strictly increasing after negative indices are counted from the end.

    >>> layer_indices(6, 12), layer_indices(3, 12), layer_indices([0, -1], 12)
    ([0, 2, 4, 7, 9, 11], [0, 6, 11], [0, 11])
    """
    if isinstance(keep, bool):
        raise TypeError(f"keep_layers must be an int or a list of layer indices, got {keep!r}")
    if isinstance(keep, int):
        if not 1 <= keep <= total:
            raise ValueError(f"keep_layers={keep}: the backbone has {total} layers; keep between 1 and {total}")
        if keep == 1:
            return [0]
        return [int(math.floor(i * (total - 1) / (keep - 1) + 0.5)) for i in range(keep)]
    if not isinstance(keep, (list, tuple)) or not keep or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in keep):
        raise TypeError(f"keep_layers must be an int or a non-empty list of layer indices, got {keep!r}")
    out = []
    for i in keep:
        if not -total <= i < total:
            raise ValueError(f"keep_layers: layer {i} does not exist; the backbone has {total} layers "
                             f"(0..{total - 1})")
        out.append(i % total)
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"keep_layers must list layers in increasing order without repeats, got {list(keep)} "
                         f"(= {out})")
    return out


def keep_layers(model: nn.Module, weights: dict[str, torch.Tensor], keep) -> tuple:
    """The config and state dict of ``model`` reduced to the layers ``keep`` asks for.

    Returns ``(config, weights, kept indices, original layer count)``: a deep copy of ``model.config`` with the
    new layer count (and per-layer lists subset), and ``weights`` (a state dict of ``model``) with the kept
    layers renumbered ``0..N-1`` and the dropped layers' tensors left out.
    """
    attribute, total = layer_count(model.config)
    kept = layer_indices(keep, total)
    prefix, _ = find_layer_list(model)
    prefix += "."
    new_index = {old: new for new, old in enumerate(kept)}
    out = {}
    for key, value in weights.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        index, _, rest = key[len(prefix):].partition(".")
        if int(index) in new_index:
            out[f"{prefix}{new_index[int(index)]}.{rest}"] = value
    config = copy.deepcopy(model.config)
    setattr(config, attribute, len(kept))
    for name in PER_LAYER_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, (list, tuple)) and len(value) == total:
            setattr(config, name, [value[i] for i in kept])
    return config, out, kept, total
