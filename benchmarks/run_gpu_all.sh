#!/usr/bin/env bash
# Every GPU figure of the project in one prepared device run (one H200: ~8 minutes plus ~25 s of wheel install):
# bench_gpu.py (paper-shape training steps, teacher, ratios; capped at BENCH_GPU_SECONDS), then the image and
# text precompute pipelines (issue 22 items 5 and 7) and the exported student's inference cost (issue 23), each
# under its own time limit so a slow one cannot eat the others' time. Outputs in $OUT (or benchmarks/gpu_out).
#   run(command="bash benchmarks/run_gpu_all.sh", carry=[".whl"], timeout_s=580)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/gpu_out}
mkdir -p "$out"
export OUT=$out PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
# 1. training step, teacher, ratios, study GPU-hours (installs the wheels into /tmp/site)
bash benchmarks/run_gpu.sh --max-seconds "${BENCH_GPU_SECONDS:-200}"
export PYTHONPATH=/tmp/site:$PWD
echo "== bench_gpu done at $(( $(date +%s) - start )) s"
# 2. images: decode + torchvision processor in 8 workers vs one process vs forward only (ViT-L/14, bf16)
timeout 80 python3 benchmarks/bench_images.py --device cuda --dtype bfloat16 --size paper --workers 0,8 \
  --images 2048 --batch-size 256 --repeats 2 --modes end_to_end,precompute,forward --threads 8 \
  --json "$out/bench_images_gpu.json" 2>&1 | tail -n 40
echo "== bench_images done at $(( $(date +%s) - start )) s"
# 3. text precompute: tokenizing in 8 workers vs in the process vs forward only (ViT-L/14 text tower, bf16)
timeout 70 python3 benchmarks/bench_text_precompute.py --device cuda --dtype bfloat16 --size paper \
  --captions 32768 --workers 0,8 --encode-batch-size 256 --repeats 2 --threads 8 \
  --json "$out/bench_text_precompute_gpu.json" 2>&1 | tail -n 30
echo "== bench_text_precompute done at $(( $(date +%s) - start )) s"
# 4. inference cost of the exported student's text route (models built from configs; ONNX via onnxruntime)
timeout 100 python3 benchmarks/bench_inference.py --suite shapes --device cuda --work-dir /tmp/bi \
  --json "$out/bench_inference_gpu.json" 2>&1 | tail -n 40
echo "== all done at $(( $(date +%s) - start )) s"
