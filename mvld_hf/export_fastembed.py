"""Load an export's ONNX text graph as a fastembed custom text model, from a local folder, with no network.

fastembed's own pooling (``PoolingType.CLS`` / ``MEAN``) runs on a graph's *token* embeddings and has no place
for a Dense projection (the cause of fastembed issue 70 with multilingual CLIP text towers). The export's
``onnx/text_model.onnx`` has the pooling and the Dense projection inside and returns the finished
``sentence_embedding``, so it is registered with ``PoolingType.DISABLED`` and ``output_name="sentence_embedding"``
(fastembed >= 0.9 takes a named pooled output; tested with fastembed 0.9.1): fastembed then only tokenizes, runs
the graph and L2-normalises (cosine unchanged).

fastembed reads ``tokenizer.json``, ``tokenizer_config.json`` (its ``model_max_length`` sets the truncation, its
``pad_token`` the padding) and the graph from one folder, so :func:`fastembed_folder` writes that folder beside
the export's ONNX graphs: the student's tokenizer, a ``tokenizer_config.json`` whose ``model_max_length`` is the
export's ``max_seq_length`` (the student's own ``tokenizer_config.json`` may allow longer texts than the export
embeds), and the graph (hard-linked when the file system allows, else copied).

    >>> model = load_fastembed("path/to/export")                       # doctest: +SKIP
    >>> next(iter(model.embed(["ein roter Kreis"]))).shape              # doctest: +SKIP
    (512,)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

__all__ = ["FASTEMBED_DIR", "fastembed_folder", "load_fastembed"]

FASTEMBED_DIR = "fastembed"


def fastembed_folder(export_dir, out_dir=None, *, int8: bool = False) -> str:
    """Write the folder fastembed loads (``tokenizer.json``, ``tokenizer_config.json``, ``config.json`` with the
    pad id, ``model.onnx``) for the export in ``export_dir``; default ``<export_dir>/fastembed`` (``fastembed_int8``
    with ``int8=True``). Returns the folder. Raises ``FileNotFoundError`` when the export has no ONNX text graph
    (export with ``formats="pytorch,onnx"``)."""
    from .export_onnx import INFO_FILE, ONNX_DIR

    export_dir = os.fspath(export_dir)
    name = "text_model_int8.onnx" if int8 else "text_model.onnx"
    graph = os.path.join(export_dir, ONNX_DIR, name)
    if not os.path.isfile(graph):
        raise FileNotFoundError(f"{graph} not found: export with formats='pytorch,onnx{',int8' if int8 else ''}'")
    with open(os.path.join(export_dir, ONNX_DIR, INFO_FILE), encoding="utf-8") as f:
        text = json.load(f)["text"]
    out_dir = os.fspath(out_dir) if out_dir else os.path.join(export_dir, FASTEMBED_DIR + ("_int8" if int8 else ""))
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    tokenizer_dir = os.path.join(export_dir, text["tokenizer"])
    shutil.copyfile(os.path.join(tokenizer_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(tokenizer_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        tokenizer_cfg = json.load(f)
    tokenizer_cfg = {k: v for k, v in tokenizer_cfg.items() if isinstance(v, (str, int, float, bool))}
    if text.get("max_seq_length"):
        tokenizer_cfg["model_max_length"] = int(text["max_seq_length"])
    if text.get("pad_token"):
        tokenizer_cfg["pad_token"] = text["pad_token"]
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_cfg, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"pad_token_id": text.get("pad_token_id"), "inputs": text["inputs"]}, f, indent=2)
    target = os.path.join(out_dir, "model.onnx")
    try:
        os.link(graph, target)
    except OSError:
        shutil.copyfile(graph, target)
    return out_dir


def load_fastembed(export_dir, *, int8: bool = False, name: str | None = None, threads: int | None = None):
    """A ``fastembed.TextEmbedding`` over the export's ONNX text graph, loaded from the folder of
    :func:`fastembed_folder` (written when missing) with no network. ``name`` is the name it is registered
    under in fastembed (default: derived from the folder; fastembed refuses a name registered twice, so a name
    already registered for the same folder is reused)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    export_dir = os.path.abspath(os.fspath(export_dir))
    folder = os.path.join(export_dir, FASTEMBED_DIR + ("_int8" if int8 else ""))
    if not os.path.isfile(os.path.join(folder, "model.onnx")):
        fastembed_folder(export_dir, int8=int8)
    digest = hashlib.sha1(folder.encode("utf-8")).hexdigest()[:10]
    name = name or f"mvld-hf/{os.path.basename(export_dir)}-{digest}"
    registered = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
    if name.lower() not in registered:
        from .export_onnx import OnnxEncoder

        dim = int(OnnxEncoder(export_dir, int8=int8, threads=1).encode_text(["x"]).shape[1])
        TextEmbedding.add_custom_model(model=name, pooling=PoolingType.DISABLED, normalization=True,
                                       sources=ModelSource(hf=name), dim=dim, model_file="model.onnx",
                                       output_name="sentence_embedding",
                                       description="mvld_hf export (pooling and Dense inside the graph)")
    return TextEmbedding(model_name=name, specific_model_path=folder, threads=threads, local_files_only=True)
