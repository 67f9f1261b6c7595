#!/usr/bin/env bash
# On a lent GPU, from anywhere: the paper-scale benchmark (about 2-4 minutes), JSON into $OUT (or benchmarks/).
cd "$(dirname "$0")/.." && PYTHONPATH=$PWD ${PYTHON:-python} benchmarks/bench_gpu.py --device cuda --output "${OUT:-benchmarks}/bench_gpu.json" "$@"
