"""GPU-hours of a study (``configs/study/gpu-paper.yaml``) from the throughput ``bench_gpu.py`` measured.

Per cell: ``max_steps`` x the time of one step, where a step is

- the student's part: the cached-teacher step measured on realistic captions (``dr_real`` for methods with a
  DR queue, ``fd_real`` for the others; twice that for ED, whose English captions go through the student too),
  scaled for a smaller student by its non-embedding FLOPs per token relative to XLM-R base
  (``STUDENT_FLOPS``; the per-step overheads do not shrink with the student, so small students are estimated
  a little fast);
- the teacher's text part when the cell streams captions the teacher embeds inside the step (the paper
  configs: ``streaming: true``, nothing precomputed): the measured ``dr_stream`` step minus ``dr_real``,
  scaled by ``TEACHER_TEXT_FLOPS`` for other teachers than CLIP ViT-L/14 (a map-style dataset instead
  precomputes once: ``batch / precompute_captions_per_s`` per step, every row seen once);
- the teacher's image part for image anchors: ``batch / images_per_s`` of the teacher measured end to end
  (preprocessing included, as ``precompute_teacher_embeddings`` and the in-step path did when measured), scaled
  by ``TEACHER_IMAGE_FLOPS``; the forward-only figure gives the lower bound a parallel image pipeline reaches.

Evaluation, downloads and start-up are not counted.

    python benchmarks/gpu_hours.py benchmarks/bench_gpu.json                     # prints the estimate
    python benchmarks/gpu_hours.py benchmarks/bench_gpu.json --write             # and writes it into the study
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STUDY = os.path.join(ROOT, "configs", "study", "gpu-paper.yaml")

# non-embedding FLOPs per token relative to xlm-roberta-base (12 layers x 768): layers x hidden^2
STUDENT_FLOPS = {
    "xlm-roberta-base": 1.0,
    "distilbert-base-multilingual-cased": 6 * 768 ** 2 / (12 * 768 ** 2),  # 6 x 768
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2": 12 * 384 ** 2 / (12 * 768 ** 2),  # 12 x 384
}
# teacher text forward FLOPs per caption relative to CLIP ViT-L/14's text tower (12 x 768, captions padded to
# the batch's longest, ~20-30 tokens): SigLIP2-L's text tower is 24 x 1024 and pads to 64 tokens
TEACHER_TEXT_FLOPS = {
    "openai/clip-vit-large-patch14": 1.0,
    "google/siglip2-large-patch16-256": (24 * 1024 ** 2) / (12 * 768 ** 2) * 2.0,
}
# image tower FLOPs relative to CLIP ViT-L/14 at 224 px (24 x 1024, 256 patches): SigLIP2-L/16 at 256 px has
# the same depth, width and patch count
TEACHER_IMAGE_FLOPS = {"openai/clip-vit-large-patch14": 1.0, "google/siglip2-large-patch16-256": 1.0}


def _step(train: dict, name: str) -> float | None:
    run = train.get(name)
    return None if run is None else run["step_s_mean"]


def study_estimate(results: dict, study=DEFAULT_STUDY) -> dict:
    """Per-cell and total GPU-hours of ``study`` (a path or a spec dict) from bench_gpu.py's ``results``."""
    from mvld_hf.study import expand_grid, load_spec

    spec = load_spec(study)
    train, teacher = results.get("train", {}), results.get("teacher", {})
    batch_measured = results["sizes"]["batch_size"]
    fd, dr = _step(train, "fd_real"), _step(train, "dr_real")
    stream = _step(train, "dr_stream")
    text_teacher_s = max(0.0, stream - dr) if stream is not None and dr is not None else None
    cells, total, missing = [], 0.0, set()
    for cell in expand_grid(spec):
        s = cell.settings
        method, batch = str(s.get("method", "dr")), int(s.get("per_device_train_batch_size", batch_measured))
        scale = batch / batch_measured  # per-step work grows with the batch (a rough linear scaling)
        parts = [p.split(":")[0] for p in method.replace("+", ",").split(",")]
        student_s = dr if "dr" in parts else fd
        if student_s is None:
            missing.add("dr_real" if "dr" in parts else "fd_real")
            continue
        student_s *= (2 if "ed" in parts else 1) * STUDENT_FLOPS.get(s.get("student"), 1.0) * scale
        anchor = s.get("anchor", "text")
        teacher_name = s.get("teacher")
        teacher_s = 0.0
        needs_text = anchor == "text" or any(p in ("dr", "sd") for p in parts)
        text_factor = TEACHER_TEXT_FLOPS.get(teacher_name, 1.0)
        if needs_text and s.get("streaming", False):  # the teacher embeds the English captions in every step
            if text_teacher_s is None:
                missing.add("dr_stream")
            else:
                teacher_s += text_teacher_s * text_factor * scale
        elif needs_text:  # a map-style dataset: precompute_teacher_embeddings once, before training
            if "precompute_captions_per_s" not in teacher:
                missing.add("teacher.precompute_captions_per_s")
            else:
                teacher_s += batch / teacher["precompute_captions_per_s"] * text_factor
        if anchor == "image":
            if "images_per_s" not in teacher:
                missing.add("teacher.images_per_s")
            else:
                teacher_s += batch / teacher["images_per_s"] * TEACHER_IMAGE_FLOPS.get(teacher_name, 1.0)
        hours = int(s.get("max_steps", 0)) * (student_s + teacher_s) / 3600
        total += hours
        cells.append({"name": cell.name, "teacher": teacher_name, "student": s.get("student"), "method": method,
                      "anchor": anchor, "step_s": student_s + teacher_s, "teacher_s": teacher_s, "hours": hours})
    groups: dict[str, list[float]] = {}
    for c in cells:
        kind = ("image-anchor" if c["anchor"] == "image" else "text-anchor") + \
            ("" if STUDENT_FLOPS.get(c["student"], 1.0) == 1.0 else ", smaller student")
        groups.setdefault(kind, []).append(c["hours"])
    parts_text = "; ".join(f"{len(v)} {k} cells {min(v):.1f}-{max(v):.1f} h each" for k, v in groups.items())
    text = (f"~{total:.0f} GPU-hours for {len(cells)} cells on one {results.get('device', '?')} "
            f"(computed by benchmarks/gpu_hours.py from bench_gpu.py's measured step times of "
            f"{results.get('date', '?')}: {parts_text}); evaluation and downloads extra.")
    if missing:
        text += f" Not measured: {', '.join(sorted(missing))} (cells needing it left out)."
    return {"total_hours": total, "cells": cells, "missing": sorted(missing), "text": text}


def write_estimate(study_path: str, text: str) -> None:
    """Replace the ``estimate:`` entry of the study YAML with ``text`` (a folded block, 116 columns)."""
    with open(study_path) as handle:
        source = handle.read()
    words, lines, line = text.split(), [], " "
    for word in words:
        if len(line) + len(word) + 1 > 116:
            lines.append(line)
            line = " "
        line += " " + word
    lines.append(line)
    block = "estimate: >\n" + "\n".join(lines) + "\n"
    new, count = re.subn(r"^estimate:.*?(?=^\S)", lambda _: block, source, count=1, flags=re.M | re.S)
    if not count:
        raise ValueError(f"{study_path} has no top-level 'estimate:' entry")
    with open(study_path, "w") as handle:
        handle.write(new)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="bench_gpu.py's JSON")
    parser.add_argument("--study", default=DEFAULT_STUDY)
    parser.add_argument("--write", action="store_true", help="write the estimate into the study's 'estimate:'")
    args = parser.parse_args(argv)
    with open(args.results) as handle:
        estimate = study_estimate(json.load(handle), args.study)
    for c in estimate["cells"]:
        print(f"{c['hours']:6.2f} h  {c['step_s'] * 1e3:7.1f} ms/step ({c['teacher_s'] * 1e3:6.1f} teacher)  "
              f"{c['method']:9s} {c['anchor']:5s} {c['teacher']}  {c['student']}")
    print(estimate["text"])
    if args.write:
        write_estimate(args.study, estimate["text"])
    return estimate


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
