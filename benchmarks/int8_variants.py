"""ONNX Runtime time of a landmark model in float and in 8-bit variants, side by side in one process
(batch 1, one thread, median over many calls), with each variant's mean distance from PyTorch.

    python benchmarks/int8_variants.py landmask/models/ibug68-fast.safetensors --data ../shared/data/helen-68/trainset

Variants: which operator types are quantised and how many convolutions, from the input, stay in
float (docs/experiments.md, fifth session).  Needs the training extra (PyTorch, onnx).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from timing import median_ms  # benchmarks/timing.py

VARIANTS = [  # (label, quantised operator types, convolutions left in float)
    ("convolutions only, first in float", ("Conv",), 1),
    ("+ additions, ReLUs, upsampling; first in float", ("Conv", "Add", "Resize", "Relu"), 1),
    ("the same, nothing in float", ("Conv", "Add", "Resize", "Relu"), 0),
    ("the same, first two in float (landmask export --int8)", ("Conv", "Add", "Resize", "Relu"), 2),
]


def main():
    from landmask.export import export_onnx, export_onnx_int8, face_crops
    from landmask.torch_backend import load_landmark_model
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="a landmark .safetensors model")
    ap.add_argument("--data", default="../shared/data/helen-68/trainset", help="faces to calibrate on")
    ap.add_argument("--repeat", type=int, default=400)
    a = ap.parse_args()
    crops = face_crops(a.model, a.data, 150)
    with tempfile.TemporaryDirectory(prefix="landmask-int8-bench-") as tmp:
        fp32 = Path(tmp) / "float.onnx"
        export_onnx(a.model, fp32)
        models = {"float": load_landmark_model(fp32, threads=1)}
        diffs = {"float": 0.0}
        for i, (label, ops, n_float) in enumerate(VARIANTS):
            out = Path(tmp) / f"q{i}.onnx"
            diffs[label] = export_onnx_int8(a.model, out, crops, ops, n_float)["mean_abs_diff_px"]
            models[label] = load_landmark_model(out, threads=1)
        x = models["float"].model_input(crops[:1])
        ms = {k: [] for k in models}
        for _ in range(3):   # rounds, so that every variant sees the same machine load
            for k, m in models.items():
                ms[k].append(median_ms(lambda: m._run(x), a.repeat // 3, warmup=30))
    print(f"{a.model}: ONNX Runtime, batch 1, one thread, median ms (mean px from PyTorch on {len(crops) // 2} crops)")
    for k in models:
        print(f"  {k:55s} {np.median(ms[k]):.3f} ms  ({diffs[k]:.3f} px)")


if __name__ == "__main__":
    main()
