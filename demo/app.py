"""Multilingual image search with an mvld_hf student: type a caption in any language, get the photos; give labels
in your language, get zero-shot scores for a photo.

    python demo/app.py --offline-demo outputs/distill-offline     # after `make demo`: held-out world images
    python demo/app.py --model EXPORT_OR_BUNDLE --images PHOTOS   # any export with the immich format, any folder

The model is an immich-layout bundle (``mvld_hf.export_immich``: the student's text graph, the teacher's image
graph, onnxruntime only). The photos are embedded once and kept in a FAISS index on disk (``--index-dir``, default
``<images>/.mvld_index``) beside a manifest of the model's and the photos' fingerprints: a restart with the same
model and photos loads the index; another model, or a photo added, removed or changed, rebuilds it.

Why FAISS rather than LanceDB: the index here is "every photo's vector, nearest by cosine", which FAISS does
exactly (``IndexFlatIP`` on unit vectors) from one wheel that needs only numpy, stored as one file that loads in
milliseconds; LanceDB's strengths (columns of metadata with filters, data larger than memory, versioned tables)
cost pyarrow and lance and are not used by a photo search of this size (10k photos of 512 floats are 20 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time

import numpy as np

os.environ.setdefault("MVLD_HF_DEFER_IMPORTS", "1")  # the loader below needs no torch
try:
    from mvld_hf.export_immich import ImmichBundle
except ImportError:  # a Space: export_immich.py copied beside this file (demo/README.md)
    from export_immich import ImmichBundle

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
INDEX_FILE, MANIFEST_FILE, EXAMPLES_FILE = "images.faiss", "manifest.json", "examples.json"
#: CLIP's logit scale: zero-shot scores are softmax(100 * cosine) over the labels
LOGIT_SCALE = 100.0
_LABEL_SPLIT = re.compile(r"[,，、،;；\n]+")


# ------------------------------------------------------------------------------------------- model + index
def find_bundle(path: str) -> str:
    """An immich-layout bundle: the folder itself, or ``<export>/immich``."""
    for candidate in (path, os.path.join(path, "immich")):
        if os.path.isfile(os.path.join(candidate, "textual", "model.onnx")):
            return candidate
    raise FileNotFoundError(f"no immich-layout bundle in {path}: export with formats='pytorch,onnx,immich'")


def list_images(folder: str) -> list[str]:
    """The photos under ``folder`` (relative paths, sorted), hidden folders (the index's own) left out."""
    names = []
    for directory, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names += [os.path.relpath(os.path.join(directory, f), folder) for f in files
                  if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(names)


def _sha256(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fingerprints(bundle_dir: str, images_dir: str, names: list[str]) -> dict:
    """What the index depends on: the image graph and its preprocessing (file contents), and every photo (name,
    size, modification time)."""
    model = _sha256([os.path.join(bundle_dir, "visual", "model.onnx"),
                     os.path.join(bundle_dir, "visual", "preprocess_cfg.json")])
    photos = hashlib.sha256()
    for name in names:
        stat = os.stat(os.path.join(images_dir, name))
        photos.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"model": model, "images": photos.hexdigest(), "count": len(names)}


class PhotoIndex:
    """The photos' embeddings in a FAISS inner-product index over unit vectors (cosine), persisted in
    ``index_dir`` and reused while the model and the photos are unchanged."""

    def __init__(self, bundle: ImmichBundle, bundle_dir: str, images_dir: str, index_dir: str):
        self.bundle, self.images_dir, self.index_dir = bundle, images_dir, index_dir
        self.names = list_images(images_dir)
        if not self.names:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {images_dir}")
        self.fingerprint = fingerprints(bundle_dir, images_dir, self.names)
        self.status = self._load() or self._build()

    def _load(self) -> str | None:
        import faiss

        try:
            with open(os.path.join(self.index_dir, MANIFEST_FILE), encoding="utf-8") as f:
                manifest = json.load(f)
            if manifest.get("fingerprint") != self.fingerprint or manifest.get("names") != self.names:
                return None
            self.index = faiss.read_index(os.path.join(self.index_dir, INDEX_FILE))
        except (OSError, ValueError, RuntimeError):
            return None
        return "reused" if self.index.ntotal == len(self.names) else None

    def _build(self) -> str:
        import faiss
        from PIL import Image

        start = time.perf_counter()
        vectors = []
        for name in self.names:
            with Image.open(os.path.join(self.images_dir, name)) as image:
                vectors.append(self.bundle.encode_image([image.convert("RGB")])[0])
        vectors = _unit(np.stack(vectors).astype(np.float32))
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)
        os.makedirs(self.index_dir, exist_ok=True)
        faiss.write_index(self.index, os.path.join(self.index_dir, INDEX_FILE + ".tmp"))
        os.replace(os.path.join(self.index_dir, INDEX_FILE + ".tmp"), os.path.join(self.index_dir, INDEX_FILE))
        with open(os.path.join(self.index_dir, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump({"fingerprint": self.fingerprint, "names": self.names,
                       "seconds": round(time.perf_counter() - start, 2)}, f)
        return "built"

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores, ids = self.index.search(_unit(vector.reshape(1, -1).astype(np.float32)), min(k, len(self.names)))
        return [(self.names[i], float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


class SearchApp:
    """Text -> photos and photo + labels -> zero-shot scores, the logic behind the UI (tested without it)."""

    def __init__(self, model: str, images_dir: str, index_dir: str | None = None, threads: int | None = None):
        self.bundle_dir = find_bundle(model)
        self.bundle = ImmichBundle(self.bundle_dir, threads=threads)
        self.images_dir = os.path.abspath(images_dir)
        self.index = PhotoIndex(self.bundle, self.bundle_dir, self.images_dir,
                                index_dir or os.path.join(self.images_dir, ".mvld_index"))
        self.examples = _read_json(os.path.join(self.images_dir, EXAMPLES_FILE)) or {}

    def search(self, caption: str, k: int = 8) -> list[dict]:
        if not caption or not caption.strip():
            return []
        hits = self.index.search(self.bundle.encode_text([caption])[0], int(k))
        return [{"image": name, "score": round(score, 4)} for name, score in hits]

    def zero_shot(self, image, labels: str) -> dict[str, float]:
        names = [x.strip() for x in _LABEL_SPLIT.split(labels or "") if x.strip()]
        if image is None or not names:
            return {}
        image_vector = _unit(self.bundle.encode_image([image.convert("RGB")]))[0]
        logits = LOGIT_SCALE * (_unit(self.bundle.encode_text(names)) @ image_vector)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        return {name: float(p) for name, p in zip(names, probs)}


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------- the UI
def build_ui(app: SearchApp, default_query: str | None = None):
    import gradio as gr

    captions = app.examples.get("captions") or {}
    labels = app.examples.get("labels") or {}
    default_query = default_query or next(iter(captions.values()), "")

    def search(caption, k):
        results = app.search(caption, int(k))
        gallery = [(os.path.join(app.images_dir, r["image"]), f"{r['image']}  {r['score']:.3f}") for r in results]
        return gallery, results

    first_gallery, first_results = search(default_query, 8)  # the page opens with an answer, no request needed

    def zero_shot(image, text):
        return app.zero_shot(image, text)

    with gr.Blocks(title="Multilingual image search (mvld_hf)") as ui:
        gr.Markdown(f"## Multilingual image search\nA caption in any language finds the photos; "
                    f"{len(app.index.names)} photos in a FAISS index ({app.index.status}). Model: an mvld_hf "
                    "student (multilingual text) with its English teacher's image tower, as an immich bundle.")
        with gr.Tab("Search"):
            with gr.Row():
                caption = gr.Textbox(label="Caption (any language)", value=default_query, scale=4)
                k = gr.Slider(1, 24, value=8, step=1, label="Photos", scale=1)
            go = gr.Button("Search", variant="primary")
            gallery = gr.Gallery(first_gallery, label="Best matches", columns=8, height=300, object_fit="contain")
            with gr.Accordion("Ranking (name, cosine)", open=False):
                results = gr.JSON(first_results, label="Ranking (name, cosine)")
            if captions:
                gr.Examples([[c] for c in captions.values()], inputs=[caption], label="Captions in other languages")
            go.click(search, [caption, k], [gallery, results], api_name="search")
            caption.submit(search, [caption, k], [gallery, results], api_name=False)
        with gr.Tab("Zero-shot labels"):
            with gr.Row():
                image = gr.Image(type="pil", label="Photo", height=256)
                with gr.Column():
                    language = gr.Dropdown(sorted(labels), label="Labels in your language", value=None)
                    text = gr.Textbox(label="Labels (comma-separated, any language)", lines=3)
            scores = gr.Label(label="Zero-shot", num_top_classes=5)
            gr.Button("Score the labels", variant="primary").click(zero_shot, [image, text], scores,
                                                                   api_name="zero_shot")
            language.change(lambda lang: ", ".join(labels.get(lang, [])), language, text, api_name=False)
    return ui


# ---------------------------------------------------------------------------------------- the offline demo
def prepare_offline_demo(checkpoint: str) -> tuple[str, str]:
    """After ``make demo``: export the trained student with the immich format (once) and write the held-out
    world's images and example captions / labels in every language (once). Returns (model, images)."""
    export_dir = os.path.join(checkpoint, "demo_export")
    images_dir = os.path.join(checkpoint, "demo_images")
    if not os.path.isfile(os.path.join(export_dir, "immich", "config.json")):
        from mvld_hf.export import export_sentence_transformer

        print(f"exporting {checkpoint} (formats pytorch,onnx,immich) to {export_dir} ...", flush=True)
        export_sentence_transformer(checkpoint, output_dir=export_dir, formats="pytorch,onnx,immich",
                                    overwrite=True, measure_speed=False)
    if not os.path.isfile(os.path.join(images_dir, EXAMPLES_FILE)):
        write_world_images(images_dir)
    return export_dir, images_dir


def write_world_images(images_dir: str) -> None:
    from mvld_hf.synthetic import build_world
    from mvld_hf.synthetic.grammar import caption
    from mvld_hf.synthetic.scenes import COLOURS, SHAPES

    held_out = build_world()["test"]
    os.makedirs(images_dir, exist_ok=True)
    seen, captions = set(), {}
    for row in held_out:
        if row["image_id"] not in seen:
            seen.add(row["image_id"])
            row["image"].save(os.path.join(images_dir, f"{row['image_id']}.png"))
        if row["image_id"] == held_out[0]["image_id"]:
            captions.setdefault(row["language"], row["caption"])
    languages = list(captions)
    labels = {lang: [caption({"layout": "single", "objects": [{"colour": c, "shape": s, "size": "big"}]}, lang)
                     for s in SHAPES for c in COLOURS] for lang in languages}
    with open(os.path.join(images_dir, EXAMPLES_FILE), "w", encoding="utf-8") as f:
        json.dump({"captions": captions, "labels": labels, "source": "mvld_hf.synthetic.build_world()['test']"},
                  f, ensure_ascii=False, indent=1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.environ.get("MVLD_DEMO_MODEL", "model" if os.path.isdir("model") else None),
                   help="an export with the immich format, or the bundle itself ($MVLD_DEMO_MODEL; a Space: model/)")
    p.add_argument("--images",
                   default=os.environ.get("MVLD_DEMO_IMAGES", "photos" if os.path.isdir("photos") else None),
                   help="a folder of photos ($MVLD_DEMO_IMAGES; a Space: photos/)")
    p.add_argument("--offline-demo", metavar="CHECKPOINT",
                   help="the output of `make demo` (outputs/distill-offline): export it and serve the held-out "
                        "world images")
    p.add_argument("--index-dir", help="where the FAISS index and its manifest live (default <images>/.mvld_index)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    p.add_argument("--query", help="the caption searched when the page opens")
    args = p.parse_args(argv)
    if args.offline_demo:
        args.model, args.images = prepare_offline_demo(args.offline_demo)
    if not args.model or not args.images:
        p.error("give --model and --images (or --offline-demo CHECKPOINT)")
    app = SearchApp(args.model, args.images, args.index_dir, threads=args.threads)
    print(f"index {app.index.status}: {len(app.index.names)} photos in {app.index.index_dir}", flush=True)
    build_ui(app, args.query).launch(server_name=args.host, server_port=args.port, allowed_paths=[app.images_dir])


if __name__ == "__main__":
    sys.exit(main())
