#!/usr/bin/env bash
# The one prepared GPU run of issue 22: benchmarks/bench_gpu.py at paper shapes (eager and --compile), then the
# study's GPU-hours from its figures. Expected on one H200: ~3-4 minutes (plus ~25 s of wheel install).
#
# Once, on the machine that sends the run (the GPU image has older transformers and no `datasets`):
#   bash ../shared/tools/device_wheels.sh .venv/bin/python .whl && echo "/.whl/" >> .git/info/exclude
# Then the device call (the wheels travel with carry):
#   run(command="bash benchmarks/run_gpu.sh", carry=[".whl"], timeout_s=420)
# Output in $OUT (or benchmarks/): bench_gpu.json (written after every section, so a run cut short still
# returns what it measured), bench_gpu.log, gpu_hours.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${OUT:-benchmarks}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" > /dev/null; then  # this project's library versions (device_wheels.sh)
  start=$(date +%s)
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  echo "wheels installed in $(( $(date +%s) - start )) s"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true
$PY -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)"
$PY benchmarks/bench_gpu.py --device cuda --compile --output "$out/bench_gpu.json" "$@" 2>&1 | tee "$out/bench_gpu.log"
status=${PIPESTATUS[0]}
[ -f "$out/bench_gpu.json" ] && $PY benchmarks/gpu_hours.py "$out/bench_gpu.json" 2>&1 | tee "$out/gpu_hours.txt"
exit "$status"
