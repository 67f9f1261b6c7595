"""Time of the evaluation's purity (per-language and mixed spherical k-means) at the offline world's size.

The held-out set of the offline demo has 600 images x 2 captions x 13 languages = 15,600 captions embedded in
128 dims; purity clusters each language alone (1,200 captions, 600 clusters) and all of them mixed. Three
synthetic embedding sets of that shape (no model needed):

* ``structured``: a scene centre + a language offset + noise (a working encoder);
* ``near-collapsed``: one direction + 3% relative noise (an encoder a few steps into training: every caption
  at cosine ~0.999 of the others, above the collapse threshold so k-means runs);
* ``collapsed``: one direction + 0.1% relative noise (a constant encoder up to float noise).

``--baseline <commit>`` also times ``mvld_hf/evaluation/clustering.py`` as of that commit (read with ``git show``)
on the same data, in the same process, so the speed-up is measured like for like. CPU seconds (the process's,
one thread) are printed beside wall seconds: on a shared machine the wall time mostly measures the others' load.

    OMP_NUM_THREADS=1 python benchmarks/bench_purity.py --threads 1 --baseline fe450b4
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from mvld_hf.evaluation import clustering


def embeddings(kind: str, n_images: int, n_langs: int, caps: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_images).repeat_interleave(caps).repeat(n_langs)
    langs = torch.arange(n_langs).repeat_interleave(n_images * caps)
    if kind == "structured":
        x = torch.randn(n_images, dim, generator=g)[labels] + 0.5 * torch.randn(n_langs, dim, generator=g)[langs] \
            + torch.randn(len(labels), dim, generator=g)
    else:
        relative = {"near-collapsed": 0.03, "collapsed": 1e-3}[kind]
        direction = F.normalize(torch.randn(1, dim, generator=g), dim=-1)
        x = direction + relative / dim ** 0.5 * torch.randn(len(labels), dim, generator=g)
    return x, labels.tolist(), [f"l{i}" for i in langs.tolist()]


def load_baseline(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:mvld_hf/evaluation/clustering.py"], check=True,
                            capture_output=True, text=True).stdout
    source = source.replace("from .base import", "from mvld_hf.evaluation.base import")
    path = tempfile.NamedTemporaryFile("w", suffix="_clustering_baseline.py", delete=False)
    path.write(source)
    path.close()
    spec = importlib.util.spec_from_file_location("clustering_baseline", path.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--languages", type=int, default=13)
    parser.add_argument("--captions", type=int, default=2, help="captions per image and language")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--n-init", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", default=["structured", "near-collapsed", "collapsed"])
    parser.add_argument("--baseline", help="a commit whose clustering.py is timed too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    versions = {"this tree": clustering}
    if args.baseline:
        versions[f"baseline {args.baseline}"] = load_baseline(args.baseline)
    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.images} images x {args.captions} captions x "
          f"{args.languages} languages = {args.images * args.captions * args.languages} captions, dim {args.dim}, "
          f"n_init {args.n_init}", flush=True)
    print("| embeddings | spread | version | wall s | CPU s | mean purity | mixed purity |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        x, labels, langs = embeddings(kind, args.images, args.languages, args.captions, args.dim)
        spread = clustering.embedding_spread(x)
        for name, module in versions.items():
            start, cpu = time.perf_counter(), time.process_time()
            out = module.per_language_purity(x, labels, langs, n_init=args.n_init, show_progress_bar=False)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"| {kind} | {spread:.1e} | {name} | {seconds:.1f} | {cpu:.1f} | {out['mean']:.3f} | "
                  f"{out['mixed']:.3f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
