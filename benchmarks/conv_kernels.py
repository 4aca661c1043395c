"""ONNX Runtime time of single convolution layers (each with a ReLU, one layer per graph), float and
8-bit (QDQ, per-channel weights, as `landmask export --int8`), batch 1, one thread: how many
multiply-adds per second each kind of convolution gets, which decides how a network for 8 bits
should be shaped (docs/experiments.md, sixth session).  Needs the training extra (PyTorch, onnx).

    python benchmarks/conv_kernels.py
"""
from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
from timing import median_ms  # benchmarks/timing.py

# (map side, input channels, output channels, kernel, groups)
LAYERS = [(12, 128, 128, 3, 1), (12, 128, 128, 3, 128), (12, 128, 128, 1, 1),
          (24, 64, 64, 3, 1), (24, 64, 64, 3, 64), (24, 64, 64, 1, 1),
          (48, 32, 32, 3, 1), (48, 32, 32, 3, 32)]


def main():
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    torch.manual_seed(0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    print("| layer | multiply-adds | float µs (GMAC/s) | 8-bit µs (GMAC/s) |\n|---|---|---|---|")
    for side, cin, cout, k, groups in LAYERS:
        layer = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups), torch.nn.ReLU()).eval()
        x = torch.rand(1, cin, side, side)
        with tempfile.TemporaryDirectory(prefix="landmask-conv-") as tmp:
            fp32, q = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(layer, x, fp32, input_names=["x"], opset_version=17, dynamo=False)

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.batches = iter([{"x": torch.rand(1, cin, side, side).numpy()} for _ in range(4)])

                def get_next(self):
                    return next(self.batches, None)

            cwd = os.getcwd()
            os.chdir(tmp)   # the quantiser leaves scratch files in the working directory
            try:
                quantize_static(fp32, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=["Conv", "Relu"])
            finally:
                os.chdir(cwd)
            sessions = [ort.InferenceSession(p, opts, providers=["CPUExecutionProvider"]) for p in (fp32, q)]
            feed = {"x": x.numpy()}
            times = [median_ms(lambda: s.run(None, feed), 300, warmup=30) for s in sessions]
        macs = side * side * cout * cin // groups * k * k
        kind = "1×1" if k == 1 else ("depthwise 3×3" if groups == cin else "full 3×3")
        label = f"{kind}, {side}×{side}, {cin}" + (f" → {cout}" if groups == 1 else "")
        print(f"| {label} | {macs / 1e6:.2f} M | " + " | ".join(f"{t * 1000:.0f} ({macs / t / 1e6:.0f})" for t in times) + " |")


if __name__ == "__main__":
    main()
