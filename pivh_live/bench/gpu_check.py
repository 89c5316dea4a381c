"""GPU backend check: torch CUDA vs ONNX Runtime parity and latency on phantom frames.

Run on a machine with a CUDA GPU (scripts/device_gpu_check.sh does it in one
command): ``python -m pivh_live.bench.gpu_check --model BUNDLE --out FILE``.
Writes a JSON report with the GPU name, the largest output differences and
the latency statistics of each engine; exits 1 if parity fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.bench.engine_loop import bench_engine_loop, phantom_regions
from pivh_live.bench.machine import machine_info
from pivh_live.bundle import load_bundle
from pivh_live.engines import create_engine
from pivh_live.preprocess import preprocess_batch

log = logging.getLogger(__name__)

# Probabilities after softmax/sigmoid; TF32 convolutions on Ampere+ stay well inside this.
PROB_TOL = 1e-3


def _max_diffs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a}


def _probs(out: dict[str, np.ndarray]) -> np.ndarray:
    g = out["grade_logits"] - out["grade_logits"].max(axis=1, keepdims=True)
    e = np.exp(g)
    return np.concatenate(
        [e / e.sum(axis=1, keepdims=True), 1 / (1 + np.exp(-out["valid_logit"]))], axis=1
    )


def run_check(model: Path, n: int, seed: int) -> dict[str, Any]:
    import torch

    bundle = load_bundle(model)
    frames = []
    for grade in range(5):
        frames += phantom_regions(seed + grade, n=8)
    batch = preprocess_batch(frames, bundle.input_size, bundle.fit, bundle.norm)
    report: dict[str, Any] = {"machine": machine_info(), "model": f"{bundle.name} {bundle.version}"}
    with create_engine("onnxruntime", bundle, threads=2, device="cpu") as ort_engine:
        ref = ort_engine.infer(batch)
        report["onnxruntime_cpu"] = bench_engine_loop(ort_engine, frames, n=n, warmup=50)
    parity: dict[str, Any] = {}
    # (name, TF32, CUDA graphs): the engine's default is graphs on, TF32 off.
    for name, tf32, graphs in (
        ("tf32_off", False, True),
        ("tf32_on", True, True),
        ("tf32_off_eager", False, False),
    ):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        with create_engine("torch", bundle, device="cuda", cuda_graph=graphs) as t_engine:
            got = t_engine.infer(batch)
            diffs = _max_diffs(got, ref)
            diffs["probabilities"] = float(np.max(np.abs(_probs(got) - _probs(ref))))
            parity[name] = diffs
            report[f"torch_cuda_{name}"] = bench_engine_loop(t_engine, frames, n=n, warmup=50)
    report["parity_max_abs_diff"] = parity
    report["parity_tolerance_probabilities"] = PROB_TOL
    report["parity_ok"] = all(p["probabilities"] <= PROB_TOL for p in parity.values())
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("-n", type=int, default=1000, help="timed calls per engine")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = run_check(args.model, args.n, args.seed)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for key in (
        "onnxruntime_cpu",
        "torch_cuda_tf32_off",
        "torch_cuda_tf32_on",
        "torch_cuda_tf32_off_eager",
    ):
        lat = report[key]["latency_ms"]
        sys.stdout.write(
            f"{key}: median {lat['median']:.3f} ms p99 {lat['p99']:.3f} max {lat['max']:.3f}\n"
        )
    sys.stdout.write(f"parity: {json.dumps(report['parity_max_abs_diff'])}\n")
    return 0 if report["parity_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
