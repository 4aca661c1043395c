"""ONNX Runtime time of *untrained* lmnet configurations, float and 8-bit, side by side in one process
(batch 1, one thread, median over rounds), with their multiply-adds and parameters: what a network
shape costs before spending a training run on it.  Needs the training extra (PyTorch, onnx).

    python benchmarks/arch_latency.py '{"input_size": 96}' '{"input_size": 96, "head_stride": 8}'

Each argument is a JSON object of landmask.model.ModelConfig fields (ibug68, 68 points).  The 8-bit
export is calibrated on real face crops (``--data``) as `landmask export --int8` does; untrained
weights only change which values are calibrated, not the time.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from timing import median_ms  # benchmarks/timing.py


def multiply_adds(model, size: int) -> int:
    """Convolution and linear-layer multiply-adds of one forward pass at batch 1."""
    import torch
    total = 0

    def hook(mod, _inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Linear):
            total += out.numel() * mod.in_features
        else:
            total += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for h in hooks:
        h.remove()
    return total


def main():
    import torch
    from landmask.checkpoint import read_meta, save_model
    from landmask.export import export_onnx, export_onnx_int8, face_crops
    from landmask.model import ModelConfig, build_model
    from landmask.runtime import MODELS_DIR
    from landmask.torch_backend import load_landmark_model
    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="+", help="JSON objects of ModelConfig fields")
    ap.add_argument("--data", default="../shared/data/helen-68/trainset", help="faces to calibrate the 8-bit export on")
    ap.add_argument("--float-convs", type=int,
                    help="convolutions, from the input, left in float in the 8-bit export (default: as "
                         "`landmask export --int8`, 2 for sep blocks, 1 for dense)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=100)
    a = ap.parse_args()
    torch.manual_seed(0)
    base = read_meta(MODELS_DIR / "ibug68.safetensors")   # scheme, crop rule, normalisation
    rows = []
    with tempfile.TemporaryDirectory(prefix="landmask-arch-") as tmp:
        for i, text in enumerate(a.configs):
            cfg = ModelConfig(**json.loads(text))
            model = build_model(cfg).eval()
            path = Path(tmp) / f"m{i}.safetensors"
            save_model(path, model.state_dict(), {**base, "model": cfg.to_dict()})
            export_onnx(path, Path(tmp) / f"m{i}.onnx")
            try:
                export_onnx_int8(path, Path(tmp) / f"m{i}-int8.onnx", face_crops(path, a.data, 40),
                                 float_convs=a.float_convs)
            except Exception as e:   # an untrained net may be far from its 8-bit copy: the time still counts
                print(f"{text}: {e}")
            crop = face_crops(path, a.data, 1)
            runs = {kind: load_landmark_model(Path(tmp) / f"m{i}{suffix}.onnx", threads=1)
                    for kind, suffix in (("float", ""), ("int8", "-int8"))}
            rows.append((text, multiply_adds(model, cfg.input_size), sum(p.numel() for p in model.parameters()),
                         {k: (lm._run, lm.model_input(crop)) for k, lm in runs.items()}))
        ms = {(r[0], k): [] for r in rows for k in ("float", "int8")}
        for _ in range(a.rounds):   # rounds, so that every configuration sees the same machine load
            for text, _, _, runs in rows:
                for kind, (run, x) in runs.items():
                    ms[(text, kind)].append(median_ms(lambda: run(x), a.repeat, warmup=10))
    print("| configuration | multiply-adds | parameters | float ms | 8-bit ms |\n|---|---|---|---|---|")
    for text, macs, params, _ in rows:
        print(f"| `{text}` | {macs / 1e6:.1f} M | {params / 1e3:.0f} k | {np.median(ms[(text, 'float')]):.3f} | "
              f"{np.median(ms[(text, 'int8')]):.3f} |")


if __name__ == "__main__":
    main()
