#!/usr/bin/env bash
# One prepared GPU check (a few minutes at most): torch CUDA vs ONNX Runtime
# parity and latency for the shipped bundle. Runs from the repository root on a
# machine whose python3 has torch with CUDA, onnxruntime and opencv; pivh-live
# itself is used from the source tree. Results go to $OUT (or ./gpu-out).
set -euo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.csv"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -m pivh_live.bench.gpu_check --model "${MODEL:-models/pivh-phantom}" \
    --out "$out/gpu_check.json" -n "${N:-1000}"
