"""An immich-layout bundle of an export: the student's text graph and the teacher's image graph in the folders,
file names, input names and dtypes that immich's machine-learning service reads for an M-CLIP model.

:func:`export_immich_bundle` turns an export with ONNX graphs (``formats`` with ``onnx``; see
:mod:`mvld_hf.export_onnx`) into::

    immich/config.json                   embed_dim, text_cfg.context_length, vision_cfg.image_size (+ "mvld_hf":
                                         what was checked, with the measured cosines)
    immich/textual/model.onnx            int32 input_ids + attention_mask, padded to context_length ->
                                         the projected embedding (pooling and Dense inside), first output
    immich/textual/tokenizer.json        the student's tokenizer (tokenizers library)
    immich/textual/tokenizer_config.json pad_token, model_max_length = context_length
    immich/visual/model.onnx             image: float32 [1, 3, H, W], normalised -> the teacher's image embedding
    immich/visual/preprocess_cfg.json    size, mean, std, interpolation, resize_mode (from the image processor)

The contract is the one immich's ``MClipTextualEncoder`` (tokenizers, padding and truncation to
``text_cfg.context_length``, ``int32`` ``input_ids`` / ``attention_mask``, first output, first row) and
``OpenClipVisualEncoder`` (PIL resize of the shortest side + centre crop, or a squash, with the
``interpolation`` named in ``preprocess_cfg.json``; ``/255``, mean/std, CHW, input ``image``) read
(``machine-learning/immich_ml/models/clip/`` in immich-app/immich, read in December 2026).
:class:`ImmichBundle` loads a bundle that way, with tokenizers, onnxruntime, numpy and PIL only; the export
checks the bundle with it against the export's own ONNX graphs before it ships.

immich picks its M-CLIP text encoder by the model's *name* (a fixed list) and sizes its vector column by the name
too, so a bundle is dropped into immich's model cache under the M-CLIP name whose dimension matches
(:data:`IMMICH_MCLIP_NAMES`; the card says how).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

__all__ = ["IMMICH_DIR", "IMMICH_MCLIP_NAMES", "ImmichBundle", "export_immich_bundle", "preprocess_cfg"]

IMMICH_DIR = "immich"
INFO_KEY = "mvld_hf"
#: immich's M-CLIP model names (its ``_MCLIP_MODELS``) by the dimension its server gives their vector column
IMMICH_MCLIP_NAMES = {512: ["XLM-Roberta-Large-Vit-B-32"], 640: ["XLM-Roberta-Large-Vit-B-16Plus"],
                      768: ["XLM-Roberta-Large-Vit-L-14", "LABSE-Vit-L-14"]}
_TEXT_INPUTS = ("input_ids", "attention_mask")


# ------------------------------------------------------------------------------------------- the graphs
def _int32_text_graph(src: str, dst: str) -> list[str]:
    """Copy the text graph with ``input_ids`` / ``attention_mask`` as int32 inputs (cast to int64 inside); a
    ``token_type_ids`` input (BERT-style students) becomes zeros shaped like ``input_ids`` inside the graph,
    since immich feeds only the two. Returns the inputs the original graph had."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(src)
    graph = model.graph
    original = [i.name for i in graph.input]
    if not set(_TEXT_INPUTS) <= set(original) or not set(original) <= {*_TEXT_INPUTS, "token_type_ids"}:
        raise ValueError(f"the text graph takes {original}; an immich textual model takes input_ids and "
                         "attention_mask only")
    renamed = {name: f"{name}_int64" for name in original}
    for node in graph.node:
        node.input[:] = [renamed.get(x, x) for x in node.input]
    for output in graph.output:  # a graph that returns an input unchanged (never here) would lose it
        if output.name in renamed:
            raise ValueError(f"the text graph returns its input {output.name!r}")
    new_nodes, new_inputs = [], []
    for name in _TEXT_INPUTS:
        old = next(i for i in graph.input if i.name == name)
        dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
        new_inputs.append(helper.make_tensor_value_info(name, TensorProto.INT32, dims))
        new_nodes.append(helper.make_node("Cast", [name], [renamed[name]], to=TensorProto.INT64,
                                          name=f"immich_cast_{name}"))
    if "token_type_ids" in original:
        new_nodes += [helper.make_node("Shape", [renamed["input_ids"]], ["immich_ids_shape"], name="immich_shape"),
                      helper.make_node("ConstantOfShape", ["immich_ids_shape"], [renamed["token_type_ids"]],
                                       value=helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                                       name="immich_token_type_ids")]
    del graph.input[:]
    graph.input.extend(new_inputs)
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return original


def _renamed_image_graph(src: str, dst: str, name: str = "image") -> None:
    import onnx

    model = onnx.load(src)
    graph = model.graph
    if len(graph.input) != 1:
        raise ValueError(f"the image graph takes {[i.name for i in graph.input]}; immich feeds one input")
    old = graph.input[0].name
    graph.input[0].name = name
    for node in graph.node:
        node.input[:] = [name if x == old else x for x in node.input]
    onnx.checker.check_model(model)
    onnx.save(model, dst)


# --------------------------------------------------------------------------------------- preprocessing
def preprocess_cfg(processor_config: dict) -> dict:
    """immich's ``preprocess_cfg.json`` from a transformers image processor's ``preprocessor_config.json``
    (CLIP: shortest side then a centre crop of the same size -> ``"shortest"``; SigLIP: a resize to H x W ->
    ``"squash"``). Raises ``ValueError`` for what immich cannot express (a crop smaller than the resize, a
    non-square input, no normalisation or rescale)."""
    from PIL import Image

    cfg = processor_config
    size = cfg.get("size")
    crop = cfg.get("crop_size") if cfg.get("do_center_crop", False) else None
    if isinstance(size, dict) and "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if crop is not None and (int(crop["height"]) != edge or int(crop["width"]) != edge):
            raise ValueError(f"the image processor resizes to {edge} and crops {crop}: immich's 'shortest' mode "
                             "crops to the resized size")
        mode = "shortest"
    elif isinstance(size, dict) and "height" in size:
        if int(size["height"]) != int(size["width"]):
            raise ValueError(f"immich takes square images; the image processor resizes to {size}")
        edge, mode = int(size["height"]), "squash"
        if crop is not None and (int(crop["height"]) != edge or int(crop["width"]) != edge):
            raise ValueError(f"the image processor resizes to {size} and crops {crop}: immich cannot do both")
    else:
        raise ValueError(f"unsupported image processor size {size!r}")
    if not cfg.get("do_normalize", True) or not cfg.get("do_rescale", True) or \
            abs(float(cfg.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
        raise ValueError("immich rescales pixels by 1/255 and normalises them; this image processor does not")
    resample = Image.Resampling(int(cfg.get("resample", 3))).name.lower()
    return {"size": [edge, edge], "mean": [float(x) for x in cfg["image_mean"]],
            "std": [float(x) for x in cfg["image_std"]], "interpolation": resample, "resize_mode": mode}


def _pil_pixels(image, cfg: dict) -> np.ndarray:
    """One PIL image -> float32 [3, H, W] as immich's OpenClipVisualEncoder prepares it."""
    from PIL import Image

    size = cfg["size"][0] if isinstance(cfg["size"], list) else int(cfg["size"])
    resample = Image.Resampling[cfg["interpolation"].upper()]
    image = image if image.mode == "RGB" else image.convert("RGB")
    if cfg.get("resize_mode", "shortest") == "squash":
        image = image.resize((size, size), resample=resample)
    else:
        width, height = image.size
        scale = size / min(width, height)
        new = (size, int(height * scale)) if width < height else (int(width * scale), size)
        image = image.resize(new, resample=resample)
        left, top = int(image.size[0] / 2 - size / 2), int(image.size[1] / 2 - size / 2)
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(cfg["mean"], dtype=np.float32)) / np.asarray(cfg["std"], dtype=np.float32)
    return pixels.transpose(2, 0, 1)


# ------------------------------------------------------------------------------------------- the loader
def _session(path: str, threads: int | None = None):
    """An onnxruntime CPU session (this module's loader imports no torch: the demo's Space runs without it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class ImmichBundle:
    """Embed with an immich-layout bundle the way immich's M-CLIP encoders do: ``tokenizers`` with padding and
    truncation to ``text_cfg.context_length`` and the pad token of ``tokenizer_config.json``, whitespace
    collapsed, ``int32`` inputs, the graph's first output; images resized / cropped with PIL from
    ``preprocess_cfg.json``, normalised, fed as ``image``. onnxruntime, tokenizers, numpy and PIL only.

    >>> bundle = ImmichBundle("path/to/export/immich")                   # doctest: +SKIP
    >>> bundle.encode_text(["ein roter Kreis", "赤い丸"]).shape          # doctest: +SKIP
    (2, 512)
    """

    def __init__(self, path, threads: int | None = None, textual: str = "textual/model.onnx"):
        from tokenizers import Tokenizer

        self.path = os.fspath(path)
        with open(os.path.join(self.path, "config.json"), encoding="utf-8") as f:
            self.config = json.load(f)
        with open(os.path.join(self.path, "textual", "tokenizer_config.json"), encoding="utf-8") as f:
            tokenizer_cfg = json.load(f)
        with open(os.path.join(self.path, "visual", "preprocess_cfg.json"), encoding="utf-8") as f:
            self.preprocess = json.load(f)
        self.context_length = int(self.config["text_cfg"].get("context_length", 77))
        tokenizer = Tokenizer.from_file(os.path.join(self.path, "textual", "tokenizer.json"))
        pad = tokenizer_cfg["pad_token"]
        tokenizer.enable_padding(length=self.context_length, pad_token=pad, pad_id=tokenizer.token_to_id(pad))
        tokenizer.enable_truncation(max_length=self.context_length)
        self.tokenizer = tokenizer
        self.text_session = _session(os.path.join(self.path, textual), threads)
        self._threads = threads
        self._visual = None

    def tokenize(self, texts: list[str]) -> dict:
        encodings = self.tokenizer.encode_batch([" ".join(t.split()) for t in texts])
        return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int32),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int32)}

    def encode_text(self, texts, batch_size: int = 64) -> np.ndarray:
        """Embeddings of ``texts`` (unnormalised, as the graph returns them); every row is padded to
        ``context_length``, so a batch gives the rows immich computes one text at a time."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        parts = [self.text_session.run(None, self.tokenize(texts[i:i + batch_size]))[0]
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.config["embed_dim"]), dtype=np.float32)

    def encode_image(self, images) -> np.ndarray:
        """Embeddings of PIL ``images``, one at a time (immich's ``[1, 3, H, W]``)."""
        if self._visual is None:
            self._visual = _session(os.path.join(self.path, "visual", "model.onnx"), self._threads)
        rows = [self._visual.run(None, {"image": _pil_pixels(image, self.preprocess)[None]})[0][0]
                for image in images]
        return np.stack(rows) if rows else np.zeros((0, self.config["embed_dim"]), dtype=np.float32)


# ------------------------------------------------------------------------------------------- the bundle
def export_immich_bundle(export_dir, out_dir=None, *, int8: bool = False, check_texts=None, check_images=None,
                         threads: int | None = None) -> dict:
    """Write the immich-layout bundle of the export in ``export_dir`` (it needs ``onnx/text_model.onnx``, or
    ``onnx/text_model_int8.onnx`` with ``int8=True``, and ``onnx/image_model.onnx``) into ``out_dir`` (default
    ``<export_dir>/immich``) and check it with :class:`ImmichBundle` against the export's ONNX graphs on
    :data:`~mvld_hf.export_onnx.CHECK_TEXTS` (or ``check_texts``) and probe images (or ``check_images``).
    Returns the check report, also stored under ``"mvld_hf"`` in the bundle's ``config.json``.

    Raises ``FileNotFoundError`` (no ONNX graphs: export with ``formats="pytorch,onnx"``), ``ValueError`` (a
    text-only export, or an image processor immich cannot reproduce) and ``RuntimeError`` when the bundle does
    not reproduce the export's graphs (cosine below :data:`~mvld_hf.export_onnx.COSINE_BOUND`).
    """
    from .export_onnx import CHECK_TEXTS, COSINE_BOUND, INFO_FILE, ONNX_DIR, OnnxEncoder, _cosines

    export_dir = os.fspath(export_dir)
    out_dir = os.fspath(out_dir) if out_dir is not None else os.path.join(export_dir, IMMICH_DIR)
    info_path = os.path.join(export_dir, ONNX_DIR, INFO_FILE)
    text_name = "text_model_int8.onnx" if int8 else "text_model.onnx"
    text_src = os.path.join(export_dir, ONNX_DIR, text_name)
    if not os.path.isfile(info_path) or not os.path.isfile(text_src):
        raise FileNotFoundError(f"{text_src} not found: an immich bundle is made from an export's ONNX graphs "
                                f"(export with formats='pytorch,onnx{',int8' if int8 else ''}')")
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    if not info.get("image"):
        raise ValueError("immich needs an image model too: this export is text-only (export with include_images)")
    text, image = info["text"], info["image"]
    with open(os.path.join(export_dir, image["image_processor"], "preprocessor_config.json"), encoding="utf-8") as f:
        preprocess = preprocess_cfg(json.load(f))
    context_length = int(text.get("max_seq_length") or 77)

    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    for sub in ("textual", "visual"):
        os.makedirs(os.path.join(out_dir, sub))
    original_inputs = _int32_text_graph(text_src, os.path.join(out_dir, "textual", "model.onnx"))
    tokenizer_dir = os.path.join(export_dir, text["tokenizer"])
    shutil.copyfile(os.path.join(tokenizer_dir, "tokenizer.json"), os.path.join(out_dir, "textual", "tokenizer.json"))
    pad = text.get("pad_token")
    if not pad:
        raise ValueError("the export records no pad token: immich pads every text to context_length with it")
    with open(os.path.join(out_dir, "textual", "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"pad_token": pad, "model_max_length": context_length}, f, indent=2)
    _renamed_image_graph(os.path.join(export_dir, image["file"]), os.path.join(out_dir, "visual", "model.onnx"))
    with open(os.path.join(out_dir, "visual", "preprocess_cfg.json"), "w", encoding="utf-8") as f:
        json.dump(preprocess, f, indent=2)

    reference = OnnxEncoder(export_dir, int8=int8, threads=threads)
    texts = list(check_texts or CHECK_TEXTS)
    dim = int(reference.encode_text(texts[:1]).shape[1])
    config = {"embed_dim": dim, "text_cfg": {"context_length": context_length},
              "vision_cfg": {"image_size": preprocess["size"][0]}}
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)

    bundle = ImmichBundle(out_dir, threads=threads)
    text_cos = _cosines(bundle.encode_text(texts), reference.encode_text(texts))
    images = list(check_images or _probe_images(preprocess["size"][0]))
    image_cos = _cosines(bundle.encode_image(images), reference.encode_image(images))
    report = {"textual": "int8" if int8 else "fp32", "source_graphs": [f"{ONNX_DIR}/{text_name}", image["file"]],
              "text_inputs_of_source": original_inputs, "context_length": context_length,
              "text_cosine_min": round(float(text_cos.min()), 6), "image_cosine_min": round(float(image_cos.min()), 6),
              "check_texts": len(texts), "check_images": len(images), "cosine_bound": COSINE_BOUND,
              "immich_names": IMMICH_MCLIP_NAMES.get(dim, [])}
    if min(report["text_cosine_min"], report["image_cosine_min"]) < COSINE_BOUND:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise RuntimeError(f"the immich bundle does not reproduce the export's graphs (text cosine "
                           f"{report['text_cosine_min']}, image {report['image_cosine_min']}): a bug, please report")
    config[INFO_KEY] = report
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return report


def _probe_images(size: int) -> list:
    """Probe images at the model's input size (the export's image processor and immich's PIL path then agree
    exactly; at other sizes the two resizers differ by design, see the README)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.new("RGB", (size, size), (220, 30, 30)),
            Image.linear_gradient("L").resize((size, size)).convert("RGB"),
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))]
