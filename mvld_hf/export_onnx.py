"""ONNX exports of an exported student: fp32 (``onnx``) and dynamic int8 (``int8``), checked against PyTorch.

:func:`export_onnx_formats` adds an ``onnx/`` folder to a sentence-transformers export (written by
:func:`mvld_hf.export.export_sentence_transformer` with ``formats=...``)::

    onnx/text_model.onnx        the whole text route: input_ids, attention_mask[, token_type_ids] -> backbone
                                -> pooling -> Dense projection -> ``sentence_embedding`` (fp32)
    onnx/text_model_int8.onnx   the same graph with dynamically quantized int8 weights (onnxruntime
                                ``quantize_dynamic``, per-channel scales; activations quantized at run time)
    onnx/image_model.onnx       the image route (the teacher's vision tower [+ visual projection]):
                                pixel_values -> ``sentence_embedding`` (fp32)
    onnx/mvld_onnx.json         inputs, where the tokenizer / image processor lie, and every measured figure

Why ``torch.onnx`` (its TorchScript exporter, opset 17) and onnxruntime's quantizer rather than optimum through
sentence-transformers' export helpers: optimum-onnx (what ``sentence-transformers[onnx]`` needs) requires
transformers < 5, which this project cannot use; ``torch.onnx`` ships with torch and exports the whole route,
the Dense projection included (optimum exports the backbone only, and sentence-transformers then runs pooling
and Dense in PyTorch). The graphs run with ``onnxruntime`` and ``tokenizers`` alone (:class:`OnnxEncoder`;
no torch, no transformers for text).

Every format is measured at export time on a multi-script check set (:data:`CHECK_TEXTS`, :data:`CHECK_PAIRS`):
cosine to the PyTorch embeddings (fp32 ONNX must reach :data:`COSINE_BOUND`, else the export fails), top-1
agreement with PyTorch's retrieval, translation-retrieval R@1, and speed (batch-1 latency p50/p95, batch-64
throughput, tokenization included). int8 warns (or refuses with ``int8_on_loss="refuse"``) when its mean R@1
falls more than ``int8_max_drop`` below PyTorch's.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
import warnings

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["CHECK_PAIRS", "CHECK_TEXTS", "COSINE_BOUND", "FORMATS", "INT8_MAX_DROP", "Int8QualityError",
           "OnnxEncoder", "OnnxUnavailableError", "export_onnx_formats", "parse_formats", "require_onnx"]

#: what an export can ship: the sentence-transformers folder (always), fp32 ONNX, dynamic int8 ONNX, and the
#: immich-layout bundle made from the fp32 graphs (:mod:`mvld_hf.export_immich`; it implies ``onnx``)
FORMATS = ("pytorch", "onnx", "int8", "immich")
ONNX_DIR = "onnx"
INFO_FILE = "mvld_onnx.json"
OPSET = 17
#: fp32 ONNX must reproduce PyTorch's embeddings at least this closely (minimum cosine over the check texts)
COSINE_BOUND = 0.9999
#: default bound on int8's loss: mean translation-retrieval R@1 at most 1 point below PyTorch's
INT8_MAX_DROP = 0.01

#: (English, {language: translation}) sentences: R@1 of each translation retrieving its English sentence
_SENTENCES = [
    ("a red circle left of a blue square",
     {"de": "ein roter Kreis links von einem blauen Quadrat", "fr": "un cercle rouge à gauche d'un carré bleu",
      "ru": "красный круг слева от синего квадрата", "zh": "蓝色正方形左边的红色圆圈",
      "ja": "青い四角の左にある赤い丸", "ar": "دائرة حمراء على يسار مربع أزرق",
      "hi": "नीले वर्ग के बाईं ओर एक लाल वृत्त", "th": "วงกลมสีแดงทางซ้ายของสี่เหลี่ยมสีน้ำเงิน"}),
    ("two small green triangles",
     {"de": "zwei kleine grüne Dreiecke", "fr": "deux petits triangles verts",
      "ru": "два маленьких зелёных треугольника",
      "zh": "两个绿色的小三角形", "ja": "二つの小さな緑の三角形", "ar": "مثلثان أخضران صغيران",
      "hi": "दो छोटे हरे त्रिभुज", "th": "สามเหลี่ยมสีเขียวเล็กสองรูป"}),
    ("a dog runs on the beach",
     {"de": "ein Hund rennt am Strand", "fr": "un chien court sur la plage", "ru": "собака бежит по пляжу",
      "zh": "一只狗在海滩上奔跑", "ja": "犬が浜辺を走っている", "ar": "كلب يركض على الشاطئ",
      "hi": "एक कुत्ता समुद्र तट पर दौड़ता है", "th": "สุนัขวิ่งอยู่บนชายหาด"}),
    ("the train leaves the station at night",
     {"de": "der Zug verlässt nachts den Bahnhof", "fr": "le train quitte la gare la nuit",
      "ru": "поезд уходит со станции ночью", "zh": "火车在夜里离开车站", "ja": "電車は夜に駅を出る",
      "ar": "يغادر القطار المحطة ليلاً", "hi": "रेलगाड़ी रात में स्टेशन से निकलती है",
      "th": "รถไฟออกจากสถานีตอนกลางคืน"}),
    ("a woman reads a book under a tree",
     {"de": "eine Frau liest ein Buch unter einem Baum", "fr": "une femme lit un livre sous un arbre",
      "ru": "женщина читает книгу под деревом", "zh": "一个女人在树下看书", "ja": "女性が木の下で本を読んでいる",
      "ar": "امرأة تقرأ كتابا تحت شجرة", "hi": "एक महिला पेड़ के नीचे किताब पढ़ती है",
      "th": "ผู้หญิงอ่านหนังสือใต้ต้นไม้"}),
    ("three yellow stars above a purple heart",
     {"de": "drei gelbe Sterne über einem lila Herz", "fr": "trois étoiles jaunes au-dessus d'un cœur violet",
      "ru": "три жёлтые звезды над фиолетовым сердцем", "zh": "紫色爱心上方的三颗黄色星星",
      "ja": "紫のハートの上にある三つの黄色い星", "ar": "ثلاث نجوم صفراء فوق قلب بنفسجي",
      "hi": "बैंगनी दिल के ऊपर तीन पीले तारे", "th": "ดาวสีเหลืองสามดวงเหนือหัวใจสีม่วง"}),
]
#: (query, target) pairs: a translation in one of 8 languages and scripts -> its English sentence
CHECK_PAIRS = [(text, english) for english, translations in _SENTENCES for text in translations.values()]
#: texts in many scripts (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Bengali, Thai, Han, Kana, Hangul,
#: Telugu) plus edge cases: one character, digits, emoji, a text longer than any max_seq_length
CHECK_TEXTS = [english for english, _ in _SENTENCES] + [t for _, tr in _SENTENCES[:2] for t in tr.values()] + [
    "ένας κόκκινος κύκλος", "עיגול אדום ליד ריבוע כחול", "একটি লাল বৃত্ত", "빨간 원과 파란 사각형",
    "ఒక ఎరుపు వృత్తం", "duara jekundu", "x", "12345 67.89", "🐶🌊 ☀️", "rot " * 400]


class OnnxUnavailableError(ImportError):
    """The ``onnx`` / ``int8`` formats need ``onnx`` and ``onnxruntime`` (``pip install 'mvld_hf[onnx]'``)."""


class Int8QualityError(ValueError):
    """The int8 export loses more retrieval quality than allowed (``int8_on_loss="refuse"``)."""


def parse_formats(spec) -> tuple[str, ...]:
    """``"pytorch,onnx,int8"`` (or a list) -> the formats in :data:`FORMATS` order; ``pytorch`` is always
    included (the folder every format reads its tokenizer from), and ``immich`` brings ``onnx`` (its bundle is made
    from the fp32 graphs). Unknown names raise ``ValueError``."""
    if spec is None:
        return ("pytorch",)
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}: choose from {', '.join(FORMATS)} (comma-separated)")
    if "immich" in names:
        names.append("onnx")
    return tuple(f for f in FORMATS if f in names or f == "pytorch")


def require_onnx(formats) -> None:
    """Raise :class:`OnnxUnavailableError` (before any work) when ONNX formats are asked for without the packages."""
    if not {"onnx", "int8"} & set(formats):
        return
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise OnnxUnavailableError(f"formats onnx/int8 need the onnx and onnxruntime packages ({err}); "
                                   "install them with: pip install 'mvld_hf[onnx]'") from None


# ------------------------------------------------------------------------------------------- the graphs
class _Route(nn.Module):
    """A sentence-transformers route (list of modules) as a graph from named tensors to the sentence embedding."""

    def __init__(self, modules: list, input_names: list[str], constants: dict | None = None):
        super().__init__()
        self.route = nn.ModuleList(modules)
        self.input_names = list(input_names)
        self.constants = dict(constants or {})  # non-tensor features of the preprocessing, e.g. "modality"

    def forward(self, *tensors):
        features = {**self.constants, **dict(zip(self.input_names, tensors))}
        for module in self.route:
            features = module(features)
        return features["sentence_embedding"]


def route_modules(model) -> dict[str, list]:
    """``{"text": [...], "image": [...]}`` of a SentenceTransformer (a Router's routes, or the plain module list)."""
    first = model[0]
    routes = getattr(first, "sub_modules", None)
    if routes is not None:
        return {name: list(route) for name, route in routes.items()}
    return {"text": list(model)}


def _tensor_features(features: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}


def _export_graph(modules: list, all_features: dict, path: str, sequence_axis: bool) -> list[str]:
    features = _tensor_features(all_features)
    names = list(features)
    graph = _Route(modules, names, {k: v for k, v in all_features.items() if k not in features}).eval()
    axes = {name: ({0: "batch", 1: "sequence"} if sequence_axis and features[name].dim() >= 2 else {0: "batch"})
            for name in names}
    axes["sentence_embedding"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer / legacy-exporter notices: the result is checked below instead
        torch.onnx.export(graph, tuple(features[n] for n in names), path, input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    return names


def _session(path: str, threads: int | None = None, providers=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=providers or ["CPUExecutionProvider"])


def _run(session, features: dict) -> np.ndarray:
    wanted = {i.name for i in session.get_inputs()}
    feed = {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in features.items()
            if k in wanted}
    missing = wanted - set(feed)
    if missing:
        raise ValueError(f"inputs {sorted(missing)} of the ONNX graph were not produced by the preprocessing")
    return session.run(["sentence_embedding"], feed)[0]


def _torch_embed(modules: list, features: dict) -> np.ndarray:
    with torch.no_grad():
        for module in modules:
            features = module(features)
    return features["sentence_embedding"].float().cpu().numpy()


# ------------------------------------------------------------------------------------------ measuring
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (_unit(a) * _unit(b)).sum(-1)


def _recall_at_1(queries: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of queries whose most similar target is theirs (a tie counts against the query)."""
    sims = _unit(queries) @ _unit(targets).T
    own = sims[np.arange(len(labels)), labels]
    beaten = (sims >= own[:, None]).sum(1) - 1  # other targets at least as close
    return float((beaten == 0).mean())


def _pair_data(pairs):
    targets = sorted({t for _, t in pairs})
    index = {t: i for i, t in enumerate(targets)}
    return [q for q, _ in pairs], targets, np.array([index[t] for _, t in pairs])


def _speed(embed, texts: list[str], batch: int = 64, repeats: int = 3) -> dict:
    """Batch-1 latency (p50/p95 over the texts) and batch-``batch`` throughput, tokenization included."""
    embed(texts[:2])  # warm-up
    times = []
    for text in texts:
        start = time.perf_counter()
        embed([text])
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    big = (texts * (batch // len(texts) + 1))[:batch]
    embed(big)
    start = time.perf_counter()
    for _ in range(repeats):
        embed(big)
    elapsed = time.perf_counter() - start
    return {"batch1_ms_p50": round(statistics.median(times), 3),
            "batch1_ms_p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
            f"batch{batch}_texts_per_s": round(batch * repeats / elapsed, 1)}


def _bytes(folder: str, files: list[str]) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) for f in files if os.path.isfile(os.path.join(folder, f)))


def _quantize(src: str, dst: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" notice from the quantizer
    try:
        # per-channel scales: one scale per output channel of each weight matrix. Per-tensor (onnxruntime's default)
        # lost 3.6 points of translation R@1 on the real e5-small student (8 languages, 100 captions each), 14 in
        # Swahili; per-channel lost 0.4, at the same size (benchmarks/RESULTS_inference.md)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def export_onnx_formats(model, folder: str, formats, *, check_texts=None, check_pairs=None,
                        int8_max_drop: float = INT8_MAX_DROP, int8_on_loss: str = "warn",
                        measure_speed: bool = True, threads: int | None = None, work_dir: str | None = None,
                        images=None) -> dict:
    """Write the ONNX formats of the SentenceTransformer ``model`` (already saved in ``folder``) and measure
    every format. Returns the report (also written to ``onnx/mvld_onnx.json``)::

        {"formats": {"pytorch": {...}, "onnx": {...}, "int8": {...}}, "text": {...}, "image": {...} | None,
         "check_set": str, "threads": int, "int8_max_drop": float}

    Each format's entry: ``files``, ``bytes`` (text route files; the image route separately), ``cosine_min`` /
    ``cosine_mean`` to PyTorch on the check texts, ``top1_agreement`` (queries whose retrieved target is the
    one PyTorch retrieves), ``r1`` (translation retrieval of :data:`CHECK_PAIRS`, or ``check_pairs``) and the
    speed figures. Raises ``RuntimeError`` when fp32 ONNX misses :data:`COSINE_BOUND` and
    :class:`Int8QualityError` when ``int8_on_loss="refuse"`` and int8's R@1 drops more than ``int8_max_drop``.
    """
    formats = parse_formats(formats)
    require_onnx(formats)
    if int8_on_loss not in ("warn", "refuse"):
        raise ValueError(f"int8_on_loss must be 'warn' or 'refuse', got {int8_on_loss!r}")
    threads = threads or torch.get_num_threads()
    texts = list(check_texts or CHECK_TEXTS)
    queries, targets, labels = _pair_data(check_pairs or CHECK_PAIRS)
    routes = route_modules(model)
    text_modules = routes["text"]
    tokenize = text_modules[0].preprocess
    report = {"formats": {}, "threads": threads, "int8_max_drop": int8_max_drop, "cosine_bound": COSINE_BOUND,
              "check_set": "custom" if check_pairs else "mvld_hf.export_onnx.CHECK_PAIRS (6 English sentences, "
                                                        "8 languages in 6 scripts: 48 translation queries)",
              "image": None}
    onnx_dir = os.path.join(folder, ONNX_DIR)
    os.makedirs(onnx_dir, exist_ok=True)

    def torch_embed(batch):
        return _torch_embed(text_modules, tokenize(batch))

    reference = torch_embed(texts)
    ref_q, ref_t = torch_embed(queries), torch_embed(targets)
    ref_top1 = (_unit(ref_q) @ _unit(ref_t).T).argmax(1)
    text_files = _text_route_files(folder, model)
    entries = {"pytorch": {"files": text_files, "bytes": _bytes(folder, text_files), "cosine_min": 1.0,
                           "cosine_mean": 1.0, "top1_agreement": 1.0, "r1": _recall_at_1(ref_q, ref_t, labels)}}
    if measure_speed:
        entries["pytorch"].update(_speed(torch_embed, texts[:24]))

    fp32_path = os.path.join(onnx_dir, "text_model.onnx")
    if {"onnx", "int8"} & set(formats):
        names = _export_graph(text_modules, tokenize(texts[:4]), fp32_path, sequence_axis=True)
        tokenizer = getattr(text_modules[0], "tokenizer", None)
        report["text"] = {"inputs": names, "output": "sentence_embedding",
                          "tokenizer": _tokenizer_dir(folder, model),
                          "pad_token": getattr(tokenizer, "pad_token", None),
                          "pad_token_id": getattr(tokenizer, "pad_token_id", None),
                          "max_seq_length": getattr(text_modules[0], "max_seq_length", None)}
        variants = [("onnx", fp32_path)]
        if "int8" in formats:
            int8_path = os.path.join(onnx_dir, "text_model_int8.onnx")
            _quantize(fp32_path, int8_path)
            variants.append(("int8", int8_path))
        for name, path in variants:
            session = _session(path, threads)

            def embed(batch, session=session):
                return _run(session, tokenize(batch))

            got = embed(texts)
            cos = _cosines(got, reference)
            q, t = embed(queries), embed(targets)
            entry = {"files": [os.path.relpath(path, folder)], "bytes": os.path.getsize(path),
                     "cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6),
                     "top1_agreement": float(((_unit(q) @ _unit(t).T).argmax(1) == ref_top1).mean()),
                     "r1": _recall_at_1(q, t, labels)}
            if measure_speed:
                entry.update(_speed(embed, texts[:24]))
            entries[name] = entry
        if not np.isfinite(reference).all():
            raise RuntimeError("the PyTorch text route returns NaN/inf embeddings: the weights are not finite")
        if entries["onnx"]["cosine_min"] < COSINE_BOUND:
            raise RuntimeError(f"the ONNX text graph does not reproduce PyTorch (min cosine "
                               f"{entries['onnx']['cosine_min']:.6f} < {COSINE_BOUND}): a bug, please report")
        if "int8" in entries:
            drop = entries["pytorch"]["r1"] - entries["int8"]["r1"]
            entries["int8"]["r1_drop"] = round(drop, 6)
            entries["int8"]["within_bound"] = drop <= int8_max_drop + 1e-9
            if not entries["int8"]["within_bound"]:
                message = (f"int8 loses {100 * drop:.1f} points of mean R@1 on the check set "
                           f"({100 * entries['pytorch']['r1']:.1f} -> {100 * entries['int8']['r1']:.1f}), more "
                           f"than the bound of {100 * int8_max_drop:.1f}")
                if int8_on_loss == "refuse":
                    raise Int8QualityError(message + "; not exporting int8 (ship onnx instead, or raise the bound "
                                                     "with int8_max_drop / --int8-max-drop)")
                logger.warning("%s; the int8 file is shipped and the card states the loss", message)
        if "onnx" not in formats:  # built only to be quantized
            os.remove(fp32_path)
            del entries["onnx"]
        if "image" in routes:
            report["image"] = _export_image(routes["image"], folder, onnx_dir, images, threads)
    report["formats"] = {name: entries[name] for name in formats if name in entries}
    if {"onnx", "int8"} & set(formats):
        with open(os.path.join(onnx_dir, INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    else:
        os.rmdir(onnx_dir)
    return report


def _export_image(modules: list, folder: str, onnx_dir: str, images, threads: int) -> dict:
    from PIL import Image

    probes = list(images or []) or [Image.new("RGB", (64, 48), c) for c in ((220, 30, 30), (30, 30, 220))] + [
        Image.linear_gradient("L").resize((64, 64)).convert("RGB"),
        Image.effect_noise((80, 60), 64).convert("RGB")]
    features = modules[0].preprocess(probes)
    path = os.path.join(onnx_dir, "image_model.onnx")
    names = _export_graph(modules, features, path, sequence_axis=False)
    want = _torch_embed(modules, dict(features))
    got = _run(_session(path, threads), features)
    cos = _cosines(got, want)
    if float(cos.min()) < COSINE_BOUND:
        raise RuntimeError(f"the ONNX image graph does not reproduce PyTorch (min cosine {cos.min():.6f}): a bug")
    return {"file": os.path.relpath(path, folder), "bytes": os.path.getsize(path), "inputs": names,
            "output": "sentence_embedding", "image_processor": _module_dir(folder, "image"),
            "cosine_min": round(float(cos.min()), 6)}


def _module_dir(folder: str, route: str) -> str | None:
    router = os.path.join(folder, "router_config.json")
    if not os.path.isfile(router):
        return "" if route == "text" else None
    with open(router, encoding="utf-8") as f:
        structure = json.load(f)["structure"]
    return structure[route][0] if route in structure else None


def _tokenizer_dir(folder: str, model) -> str:
    return _module_dir(folder, "text") or ""


def _text_route_files(folder: str, model) -> list[str]:
    router = os.path.join(folder, "router_config.json")
    if not os.path.isfile(router):
        return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
                      if f != "README.md" and not f.startswith(".")  # the card; the export's owner file
                      and os.path.relpath(d, folder).split(os.sep)[0] != ONNX_DIR)
    with open(router, encoding="utf-8") as f:
        module_ids = json.load(f)["structure"]["text"]
    return sorted(os.path.relpath(os.path.join(d, f), folder) for m in module_ids
                  for d, _, fs in os.walk(os.path.join(folder, m)) for f in fs)


# ------------------------------------------------------------------------------------------- runtime
class OnnxEncoder:
    """Embed with an export's ONNX graphs through onnxruntime: text needs only ``tokenizers`` (no torch, no
    transformers); images use the saved image processor (transformers).

    >>> encoder = OnnxEncoder("path/to/export", int8=True)            # doctest: +SKIP
    >>> encoder.encode_text(["ein roter Kreis", "赤い丸"]).shape      # doctest: +SKIP
    (2, 512)
    """

    def __init__(self, path, int8: bool = False, threads: int | None = None, providers=None):
        self.path = os.fspath(path)
        with open(os.path.join(self.path, ONNX_DIR, INFO_FILE), encoding="utf-8") as f:
            self.info = json.load(f)
        name = "text_model_int8.onnx" if int8 else "text_model.onnx"
        file = os.path.join(self.path, ONNX_DIR, name)
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{file} not found: this export has formats {sorted(self.info['formats'])}")
        self.text_session = _session(file, threads, providers)
        self._threads, self._providers = threads, providers
        self._image_session = self._image_processor = None
        self.tokenizer = self._load_tokenizer(self.info["text"])

    def _load_tokenizer(self, text: dict):
        from tokenizers import Tokenizer

        folder = os.path.join(self.path, text["tokenizer"])
        tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        pad, pad_id = text.get("pad_token"), text.get("pad_token_id")
        if text.get("max_seq_length"):
            tokenizer.enable_truncation(text["max_seq_length"])
        tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad or "[PAD]")
        return tokenizer

    def _features(self, texts: list[str]) -> dict:
        encodings = self.tokenizer.encode_batch(list(texts))
        out = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
               "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
        if "token_type_ids" in self.info["text"]["inputs"]:
            out["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return out

    def encode_text(self, texts, batch_size: int = 64) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        parts = [_run(self.text_session, self._features(texts[i:i + batch_size]))
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def encode_image(self, images, batch_size: int = 32) -> np.ndarray:
        image = self.info.get("image")
        if not image:
            raise ValueError("this export has no image route (text-only): embed images with the teacher")
        if self._image_session is None:
            from transformers import AutoImageProcessor

            self._image_session = _session(os.path.join(self.path, image["file"]), self._threads, self._providers)
            self._image_processor = AutoImageProcessor.from_pretrained(
                os.path.join(self.path, image["image_processor"]))
        parts = []
        for i in range(0, len(images), batch_size):
            pixels = self._image_processor(images=list(images[i:i + batch_size]), return_tensors="np")
            parts.append(_run(self._image_session, {"pixel_values": pixels["pixel_values"]}))
        return np.concatenate(parts)
