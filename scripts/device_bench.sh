#!/usr/bin/env bash
# One prepared GPU benchmark (about 3-4 minutes): the live pipeline in one
# process on a torch CUDA engine, as fast as possible, headless, on 1080p
# phantom scanner-screen frames held in memory; then the torch-vs-ONNX parity
# check of scripts/device_gpu_check.sh. Runs from the repository root on a
# machine whose python3 has torch (CUDA), onnxruntime, opencv and numpy;
# pivh-live is used from the source tree (PYTHONPATH) and needs neither PyAV
# nor pyzmq in this mode. Results go to $OUT (or ./gpu-out): one directory
# per run with bench.json, frames.csv and plots (if matplotlib is there),
# gpu_check.json, and summary.txt. Compare with docs/benchmarks.md
# ("GPU"); target: end-to-end mean < 2.16 ms and max < 3.46 ms.
#
# Overrides: MODEL (bundle, default models/pivh-phantom), ENGINE (torch),
# DEVICE (cuda), DURATION (seconds per part, 15), N (parity-check calls, 500).
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
model="${MODEL:-models/pivh-phantom}"
engine="${ENGINE:-torch}"
device="${DEVICE:-cuda}"
duration="${DURATION:-15}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The rendered clip (~120 MB) is cached outside $OUT so it is not shipped back.
export XDG_CACHE_HOME="${TMPDIR:-/tmp}/pivh-bench-cache"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.csv"
failed=0

bench() { # name, timeout (s), extra arguments
    local name="$1" limit="$2"
    shift 2
    echo "== $name: $*"
    timeout "$limit" python3 -m pivh_live -q bench --model "$model" --engine "$engine" \
        --device "$device" --single-process --headless --no-progress \
        --out "$out/$name" --duration "$duration" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "!! $name failed (exit $rc)"; failed=1; }
}

# 1. As fast as possible, ROI auto-detected per frame (the default pipeline).
bench afap-auto 80 --mode all --fps 0 --roi auto
# 2. As fast as possible, fixed ROI (a saved scanner profile): no detection cost.
bench afap-known 70 --mode all --fps 0 --roi known
# 3. Real time at 60 fps input, fixed ROI: drops and latency at the scanner's rate.
bench 60fps-known 45 --mode pipeline --fps 60 --roi known

echo "== parity: torch CUDA vs ONNX Runtime"
timeout 70 python3 -m pivh_live.bench.gpu_check --model "$model" --out "$out/gpu_check.json" \
    -n "${N:-500}" 2>&1 | tee "$out/gpu_check.log" || failed=1

python3 - "$out" <<'EOF' | tee "$out/summary.txt"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
for name in ("afap-auto", "afap-known", "60fps-known"):
    path = out / name / "bench.json"
    if not path.is_file():
        print(f"{name}: no result")
        continue
    r = json.loads(path.read_text())
    agg = r["pipeline"]["aggregate"]
    e = agg["end_to_end_ms"]
    line = (f"{name}: pipeline mean {e['mean']:.3f} median {e['median']:.3f} "
            f"p99 {e['p99']:.3f} p99.9 {e['p99.9']:.3f} max {e['max']:.3f} ms, "
            f"{agg['results_per_s_total']} fps, drops {agg['live_drops_in_window']}")
    if "engine_loop" in r:
        line += f"; engine floor median {r['engine_loop']['latency_ms']['median']:.3f} ms"
    if "naive" in r:
        line += f"; naive median {r['naive']['end_to_end_ms']['median']:.3f} ms"
    h = r["holoscan_x86_check"]
    line += (f"; Holoscan x86 mean<2.16 {'PASS' if h['mean_ms']['pass'] else 'FAIL'}, "
             f"max<3.46 {'PASS' if h['max_ms']['pass'] else 'FAIL'}")
    print(line)
    print("   stages (median ms): " + ", ".join(
        f"{k} {v['median']:.3f}" for k, v in r["pipeline"]["instances"][0]["stages_ms"].items()))
    print(f"   gpu: {r['machine'].get('gpu')}, cpu: {r['machine'].get('cpu')}")
check = out / "gpu_check.json"
if check.is_file():
    g = json.loads(check.read_text())
    print(f"parity_ok: {g['parity_ok']} {json.dumps(g['parity_max_abs_diff'])}")
EOF
exit "$failed"
