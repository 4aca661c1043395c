"""ONNX Runtime time of *untrained* DetNet variants at 640×480 (batch 1, one thread, interleaved
rounds, median of the rounds' best-of-5): what a detector shape costs before a training run is
spent on it.  Needs the training extra (PyTorch).  The ninth session's table (docs/experiments.md)
came from an earlier form of this script that upsampled to the tensor's size, as DetNet did then;
this one upsamples by a constant 2, as DetNet does now (each variant about 0.7 ms faster):

    python benchmarks/detector_latency.py

Variants: the stage widths (strides 2, 4, 8, 16, 32) and how the stride-4 stage starts: "conv" (a
3×3 stride-2 convolution then depthwise-separable blocks, as DetNet), "s2d" (4×4 space-to-depth
then a dense 3×3), "s2d1" (space-to-depth then a 1×1), "conv4" (3×3 stride 2, then a dense 3×3
stride 2); ``n4`` blocks at stride 4.
"""
from __future__ import annotations

import io
import time

import numpy as np

VARIANTS = {
    "A shipped v1/v2 widths": ((16, 24, 48, 64, 96), "conv", 2),
    "B stride-4 at 16 (v3)": ((16, 16, 48, 64, 96), "conv", 2),
    "C stride-4 at 32": ((16, 32, 48, 64, 96), "conv", 2),
    "D s2d, dense 3x3 to 16": ((16, 16, 48, 64, 96), "s2d", 2),
    "E s2d, dense 3x3 to 32": ((16, 32, 48, 64, 96), "s2d", 2),
    "F s2d, 1x1 to 32": ((16, 32, 48, 64, 96), "s2d1", 2),
    "G conv4 to 16": ((16, 16, 48, 64, 96), "conv4", 2),
    "H stride-4 at 16, one block": ((16, 16, 48, 64, 96), "conv", 1),
    "I conv4 to 16, one block": ((16, 16, 48, 64, 96), "conv4", 1),
    "J s2d to 16, one block": ((16, 16, 48, 64, 96), "s2d", 1),
}


def build(c, stem, n4):
    import torch.nn as nn
    import torch.nn.functional as F
    from landmask.model import SepBlock, conv_bn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            first = {"conv": lambda: (conv_bn(1, c[0], 3, 2), SepBlock(c[0], c[1], 2)),
                     "s2d": lambda: (nn.PixelUnshuffle(4), conv_bn(16, c[1], 3, 1)),
                     "s2d1": lambda: (nn.PixelUnshuffle(4), conv_bn(16, c[1], 1, 1)),
                     "conv4": lambda: (conv_bn(1, c[0], 3, 2), conv_bn(c[0], c[1], 3, 2))}[stem]()
            self.stem = first[0]
            self.s4 = nn.Sequential(first[1], *[SepBlock(c[1], c[1]) for _ in range(n4 - 1)])
            self.s8 = nn.Sequential(SepBlock(c[1], c[2], 2), SepBlock(c[2], c[2]))
            self.s16 = nn.Sequential(SepBlock(c[2], c[3], 2), SepBlock(c[3], c[3]))
            self.s32 = nn.Sequential(SepBlock(c[3], c[4], 2), SepBlock(c[4], c[4]), SepBlock(c[4], c[4]))
            self.top32, self.lat16 = conv_bn(c[4], c[3], 1, act=False), conv_bn(c[3], c[3], 1, act=False)
            self.fuse16 = SepBlock(c[3], c[3])
            self.top16, self.lat8 = conv_bn(c[3], c[2], 1, act=False), conv_bn(c[2], c[2], 1, act=False)
            self.fuse8 = nn.Sequential(SepBlock(c[2], c[2]), SepBlock(c[2], c[2]))
            self.head = nn.Conv2d(c[2], 5, 1)

        def forward(self, x):
            f8 = self.s8(self.s4(self.stem(x)))
            f16 = self.s16(f8)
            f32 = self.s32(f16)
            p16 = self.fuse16(F.relu(self.lat16(f16) + F.interpolate(self.top32(f32), scale_factor=2.0)))
            p8 = self.fuse8(F.relu(self.lat8(f8) + F.interpolate(self.top16(p16), scale_factor=2.0)))
            return self.head(p8)
    return Net().eval()


def main():
    import warnings
    import onnxruntime as ort
    import torch
    sessions = {}
    for name, (c, stem, n4) in VARIANTS.items():
        net = build(c, stem, n4)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, torch.zeros(1, 1, 480, 640), buf, input_names=["x"],
                              dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sessions[name] = (ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"]),
                          sum(p.numel() for p in net.parameters()))
    x = np.random.default_rng(0).random((1, 1, 480, 640), np.float32)
    times = {k: [] for k in sessions}
    for _ in range(15):
        for k, (s, _) in sessions.items():
            best = []
            for _ in range(5):
                t = time.perf_counter()
                s.run(None, {"x": x})
                best.append(time.perf_counter() - t)
            times[k].append(min(best))
    print("| variant | ms at 640×480 | parameters |\n|---|---|---|")
    for k, (_, n) in sessions.items():
        print(f"| {k} | {np.median(times[k]) * 1000:.2f} | {n:,} |")


if __name__ == "__main__":
    main()
