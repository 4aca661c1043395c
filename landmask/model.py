"""The CNNs (PyTorch): the landmark networks (one config dataclass, a registry of named
architectures), the face detector's network, and the table of model kinds (landmarks, detector).

Every model maps a grey crop (B, 1, S, S) with values in [0, 1] to points (B, K, 2) in crop pixels
(pixel-centre convention, see landmask.geometry).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    arch: str = "lmnet"          # key of ARCHS
    num_points: int = 68
    input_size: int = 96         # crop side in pixels
    width: float = 1.0           # channel multiplier
    depth8: int = 3              # blocks at 1/8 resolution
    depth16: int = 3             # blocks at 1/16 resolution
    head_stride: int = 4         # heatmaps at 1/4 of the input (with a top-down path to 1/4) or 1/8
    block: str = "sep"           # lmnet's blocks: "sep" (depthwise + pointwise) or "dense" (one full 3×3)
    head: str = "heatmap"        # lmnet's head: "heatmap" (2-D soft-argmax) or "simcc" (x and y read apart)
    # "SRC>DST" (e.g. "ibug68>kaggle15"): the net predicts SRC's points and outputs DST's through
    # the scheme conversion table, so a 68-point model also serves as a 15-point one.
    reduce: str = ""
    # Preprocessing facts that travel with the model: input = (grey/255 - mean) / std.
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SepBlock(nn.Module):
    """Depthwise 3×3 then pointwise 1×1 (MobileNet-v1 style), residual when shapes allow."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.dw = conv_bn(cin, cin, 3, stride, groups=cin)
        self.pw = conv_bn(cin, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.pw[1]

    def forward(self, x):
        y = self.pw(self.dw(x))
        return F.relu(y + x if self.residual else y, inplace=True)


class DenseBlock(nn.Module):
    """One full 3×3 convolution, residual when shapes allow.  Per multiply-add, ONNX Runtime's 8-bit
    kernels run these about 20 × faster than depthwise ones (docs/experiments.md, sixth session)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = conv_bn(cin, cout, 3, stride, act=False)
        self.residual = stride == 1 and cin == cout

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.conv[1]

    def forward(self, x):
        y = self.conv(x)
        return F.relu(y + x if self.residual else y, inplace=True)


# lmnet's block types: (block, widths of the stem and the 1/2, 1/4, 1/8, 1/16 stages at width 1,
# blocks at 1/2).  Dense has none at 1/2 (its width is the stem's): a full convolution there costs too much.
BLOCKS = {"sep": (SepBlock, (24, 32, 64, 128, 192), 1),
          "dense": (DenseBlock, (16, 16, 32, 64, 128), 0)}
HEAD_STRIDES = (4, 8)
HEADS = ("heatmap", "simcc")
SIMCC_HIDDEN = 64           # the simcc head's hidden layer (shared by every point)
SIMCC_SPLIT = 1              # simcc bins per crop pixel
LMNET_STRIDE = 16            # lmnet halves its maps four times


def lmnet_config_error(cfg: ModelConfig) -> tuple[str, str] | None:
    """(field, why) when lmnet cannot be built from ``cfg``, else None; shared by the model and
    the training options (which check before any data are read)."""
    s = cfg.input_size
    if s < 2 * LMNET_STRIDE or s % LMNET_STRIDE:
        near = max(2 * LMNET_STRIDE, round(s / LMNET_STRIDE) * LMNET_STRIDE)
        return "input_size", (f"{s}: lmnet needs a multiple of {LMNET_STRIDE} (its 1/{LMNET_STRIDE} stage), "
                               f"at least {2 * LMNET_STRIDE}, e.g. {near}")
    if cfg.block not in BLOCKS:
        return "block", f"{cfg.block!r}: one of {', '.join(BLOCKS)}"
    if cfg.head_stride not in HEAD_STRIDES:
        return "head_stride", f"{cfg.head_stride}: one of {', '.join(map(str, HEAD_STRIDES))}"
    if cfg.head not in HEADS:
        return "head", f"{cfg.head!r}: one of {', '.join(HEADS)}"
    if cfg.head == "simcc" and cfg.head_stride != 8:
        return "head_stride", f"{cfg.head_stride}: the simcc head reads the 1/8 maps (head stride 8)"
    return None


class LMNet(nn.Module):
    """Depthwise-separable encoder (strides 2..16) with a small top-down path to a heatmap per point
    at 1/4 resolution (or 1/8, ``head_stride``), decoded by soft-argmax (integral regression) into
    sub-pixel coordinates; or (``head="simcc"``) each point's 1/8 map read by a small shared MLP
    into one distribution over x and one over y, whose expectations are the coordinates."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        problem = lmnet_config_error(cfg)
        if problem:
            raise ValueError(" ".join(problem))
        B, base, at_half = BLOCKS[cfg.block]
        c = [max(8, int(round(v * cfg.width / 8)) * 8) for v in base]
        self.cfg = cfg
        self.stem = conv_bn(1, c[0], 3, 2)                                     # S/2
        self.s2 = B(c[0], c[1]) if at_half else nn.Identity()                  # S/2
        self.s4 = nn.Sequential(B(c[1], c[2], 2), B(c[2], c[2]))               # S/4
        self.s8 = nn.Sequential(B(c[2], c[3], 2), *(B(c[3], c[3]) for _ in range(cfg.depth8 - 1)))   # S/8
        self.s16 = nn.Sequential(B(c[3], c[4], 2), *(B(c[4], c[4]) for _ in range(cfg.depth16 - 1)))  # S/16
        self.lat8 = conv_bn(c[3], c[3], 1, act=False)
        self.top16 = conv_bn(c[4], c[3], 1, act=False)
        self.fuse8 = B(c[3], c[3])
        if cfg.head_stride == 4:
            self.lat4 = conv_bn(c[2], c[2], 1, act=False)
            self.top8 = conv_bn(c[3], c[2], 1, act=False)
            self.fuse4 = nn.Sequential(B(c[2], c[2]), B(c[2], c[2]))
        n_heat = cfg.num_points
        if cfg.reduce:
            from landmask.schemes import conversion_matrix
            src, dst = cfg.reduce.split(">")
            m = torch.tensor(conversion_matrix(src, dst), dtype=torch.float32)
            if m.shape[0] != cfg.num_points:
                raise ValueError(f"reduce {cfg.reduce}: gives {m.shape[0]} points, the model has {cfg.num_points}")
            n_heat = m.shape[1]
            self.register_buffer("reduce_matrix", m, persistent=False)   # weights stay the SRC model's
        self.stride = cfg.head_stride
        self.heat = nn.Conv2d(c[2] if self.stride == 4 else c[3], n_heat, 1)
        if cfg.head == "simcc":
            # SimCC (Li et al. 2022, as RTMPose uses it): each point's 1/8 map, flattened, through a
            # small MLP shared by all points into a distribution over x and one over y at 1/SPLIT px
            cells = (cfg.input_size // self.stride) ** 2
            self.simcc_hidden = nn.Linear(cells, SIMCC_HIDDEN)
            self.simcc_x = nn.Linear(SIMCC_HIDDEN, SIMCC_SPLIT * cfg.input_size)
            self.simcc_y = nn.Linear(SIMCC_HIDDEN, SIMCC_SPLIT * cfg.input_size)

    def forward_features(self, x):
        x = self.s2(self.stem(x))
        f4 = self.s4(x)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        p8 = self.fuse8(F.relu(self.lat8(f8) + F.interpolate(self.top16(f16), scale_factor=2.0)))
        if self.stride == 8:
            return p8
        return self.fuse4(F.relu(self.lat4(f4) + F.interpolate(self.top8(p8), scale_factor=2.0)))

    def forward_head(self, p):
        return self.points_and_confidence(p)[0]

    def points_and_confidence(self, p):
        """Points (B, K, 2), a face confidence (B,) and a confidence per point (B, K).

        Face confidence: the mean over heatmaps of their peak probability (a crop without a face
        gives diffuse heatmaps everywhere; the face check's threshold is calibrated on it).
        Point confidence: the sum of the squared probabilities of the point's heatmap, in (0, 1]
        (exp of its order-2 Rényi entropy): 1 for all mass in one cell, 1/n for mass spread evenly
        over n cells.  A hidden point (covered, turned away) gets a spread-out heatmap.  On held-out
        faces with a grey patch over one part it separated covered from visible points as well as
        exp(−Shannon entropy) and better than the peak probability, and unlike the entropy's
        logarithm it costs nothing measurable (docs/experiments.md, seventh session).  For
        ``reduce`` models: the mean over source points."""
        if self.cfg.head == "simcc":
            pts, px, py = self._decode_simcc(self.heat(p))
            # the 2-D figures of a distribution that is the product of the two
            point = (px * px).sum(dim=-1) * (py * py).sum(dim=-1)
            face = (px.amax(dim=-1) * py.amax(dim=-1)).mean(dim=-1)
        else:
            pts, prob = self._decode(self.heat(p))
            point = (prob * prob).sum(dim=-1)                         # (B, K_heat)
            face = prob.amax(dim=-1).mean(dim=-1)
        if self.cfg.reduce:
            point = torch.einsum("dk,bk->bd", self.reduce_matrix, point)
        return pts, face, point

    def points_and_heatmaps(self, x):
        """Points (B, K, 2) and the heatmaps as probabilities (B, K, H, W), for training losses
        that shape the heatmaps (not available for ``reduce`` or simcc models)."""
        if self.cfg.head != "heatmap":
            raise ValueError(f"the {self.cfg.head} head has no heatmaps")
        h = self.heat(self.forward_features(x))
        pts, prob = self._decode(h)
        return pts, prob.unflatten(2, h.shape[2:])

    def _decode(self, h):
        """Soft-argmax of heatmap logits (B, K, H, W): sub-pixel points (B, K, 2) in crop pixels, and
        the probabilities (B, K, H·W)."""
        b, k, hh, ww = h.shape
        prob = F.softmax(h.flatten(2), dim=-1)                       # (B, K, H·W)
        pts = prob @ self._grid(hh, ww, h.dtype, h.device)           # expected position, crop pixels
        if self.cfg.reduce:
            pts = torch.einsum("dk,bkc->bdc", self.reduce_matrix, pts)
        return pts, prob

    def _decode_simcc(self, h):
        """Points (B, K, 2) in crop pixels from the 1/8 maps (B, K, H, W), and the x and y
        probabilities (B, K, SPLIT·S) each, whose expectations they are."""
        z = F.relu(self.simcc_hidden(h.flatten(2)))                  # (B, K, hidden)
        px = F.softmax(self.simcc_x(z), dim=-1)
        py = F.softmax(self.simcc_y(z), dim=-1)
        import numpy as np
        n = SIMCC_SPLIT * self.cfg.input_size
        centres = torch.from_numpy(((np.arange(n) + 0.5) / SIMCC_SPLIT - 0.5).astype(np.float32))
        centres = centres.to(dtype=h.dtype, device=h.device)
        pts = torch.stack([px @ centres, py @ centres], dim=-1)
        if self.cfg.reduce:
            pts = torch.einsum("dk,bkc->bdc", self.reduce_matrix, pts)
        return pts, px, py

    def _grid(self, hh: int, ww: int, dtype, device):
        """(H·W, 2) crop-pixel centre of each heatmap cell (cell i covers pixels [s·i, s·i + s) for the
        stride s), made with numpy so that an exported graph holds it as one constant (the decode is
        one MatMul)."""
        import numpy as np
        ys, xs = np.mgrid[0:int(hh), 0:int(ww)]
        g = (np.stack([xs.ravel(), ys.ravel()], axis=-1) + 0.5) * self.stride - 0.5
        return torch.from_numpy(g.astype(np.float32)).to(dtype=dtype, device=device)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class WithConfidence(nn.Module):
    """Export wrapper: (points (B, K, 2), face confidence (B,), point confidence (B, K)) from a model
    that has them, else ones for the confidences."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        if hasattr(self.model, "points_and_confidence"):
            return self.model.points_and_confidence(self.model.forward_features(x))
        pts = self.model(x)
        return pts, torch.ones(pts.shape[0], dtype=pts.dtype), torch.ones(pts.shape[:2], dtype=pts.dtype)


class SeedNet(nn.Module):
    """The seed project's plain CNN: three conv+pool stages and two dense layers regressing
    coordinates directly (no augmentation, MSE loss in its preset)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.input_size
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * (s // 8) ** 2, 500), nn.ReLU(),
            nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, cfg.num_points * 2),
        )

    def forward(self, x):
        out = self.head(self.features(x))
        # predicts coordinates as fractions of the crop side, centred on the crop centre
        s = self.cfg.input_size
        return (out.reshape(x.shape[0], -1, 2) + 0.5) * s - 0.5


ARCHS = {"lmnet": LMNet, "seed": SeedNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    try:
        return ARCHS[cfg.arch](cfg)
    except KeyError:
        raise ValueError(f"unknown architecture {cfg.arch!r}; known: {', '.join(ARCHS)}") from None


class Ensemble(nn.Module):
    """Several trained landmark networks as one (``landmask ensemble``; config ``arch = "ensemble"``
    with each member's config under ``members``).  The ensemble's crop is the largest member's; a
    smaller member reads it resized to its own input size (bilinear, pixel centres kept, as the
    crop rule cuts its crops when it shrinks at most 2 ×: an area average at exactly 2 ×; members
    smaller than that are refused by ``make_ensemble``), and its points are mapped back to the ensemble's crop pixels.  Points,
    face confidence and point confidences are the members' means."""

    def __init__(self, m: dict):
        super().__init__()
        self.size = int(m["input_size"])
        self.sizes = [int(c["input_size"]) for c in m["members"]]
        if not self.sizes or max(self.sizes) != self.size:
            raise ValueError(f"an ensemble's input size ({self.size}) is its largest member's")
        self.members = nn.ModuleList(WithConfidence(build_model(ModelConfig(**c))) for c in m["members"])

    def forward_features(self, x):
        return x

    def points_and_confidence(self, x):
        pts, face, point = [], [], []
        for net, s in zip(self.members, self.sizes):
            small = s != self.size
            xi = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False) if small else x
            p, f, c = net(xi)
            pts.append((p + 0.5) * (self.size / s) - 0.5 if small else p)
            face.append(f)
            point.append(c)
        n = len(pts)
        return sum(pts) / n, sum(face) / n, sum(point) / n

    def forward(self, x):
        return self.points_and_confidence(x)[0]


def build_landmark_net(m: dict) -> nn.Module:
    """The landmark network described by a model file's ``model`` config: one architecture of
    ARCHS, or an Ensemble of them."""
    return Ensemble(m) if m.get("arch") == "ensemble" else build_model(ModelConfig(**m))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class DetectorConfig:
    """A CenterNet-style face detector: per stride-8 cell a face-centre score, the centre's
    sub-cell offset and log box size.  Boxes are in the *landmark-box* convention (the tight box
    of the 68 points), so the crop rule applies to them unchanged."""
    arch: str = "detnet"
    width: float = 1.0
    channels: list[int] | None = None   # the five stages' widths (stride 2-32); None: from width
    input_size: int = 320        # longer image side at inference
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


def detector_channels(cfg: DetectorConfig) -> list[int]:
    """The five stage widths (strides 2-32): ``cfg.channels``, else the defaults scaled by ``cfg.width``."""
    c = list(cfg.channels or [max(8, int(round(v * cfg.width / 8)) * 8) for v in (16, 24, 48, 64, 96)])
    if len(c) != 5 or min(c) < 1:
        raise ValueError(f"detector channels {c}: five positive widths expected")
    return c


class DetNet(nn.Module):
    stride = 8

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        c = detector_channels(cfg)
        self.cfg = cfg
        self.stem = conv_bn(1, c[0], 3, 2)                                         # /2
        self.s4 = nn.Sequential(SepBlock(c[0], c[1], 2), SepBlock(c[1], c[1]))      # /4
        self.s8 = nn.Sequential(SepBlock(c[1], c[2], 2), SepBlock(c[2], c[2]))      # /8
        self.s16 = nn.Sequential(SepBlock(c[2], c[3], 2), SepBlock(c[3], c[3]))     # /16
        self.s32 = nn.Sequential(SepBlock(c[3], c[4], 2), SepBlock(c[4], c[4]), SepBlock(c[4], c[4]))  # /32
        self.top32 = conv_bn(c[4], c[3], 1, act=False)
        self.lat16 = conv_bn(c[3], c[3], 1, act=False)
        self.fuse16 = SepBlock(c[3], c[3])
        self.top16 = conv_bn(c[3], c[2], 1, act=False)
        self.lat8 = conv_bn(c[2], c[2], 1, act=False)
        self.fuse8 = nn.Sequential(SepBlock(c[2], c[2]), SepBlock(c[2], c[2]))
        self.head = nn.Conv2d(c[2], 5, 1)
        nn.init.constant_(self.head.bias, 0.0)
        with torch.no_grad():
            self.head.bias[0] = -4.6   # prior face probability ~1 % per cell

    def forward(self, x):
        """(B, 1, H, W), H and W multiples of 32 → (B, 5, H/8, W/8): [centre logit, dx, dy, log w, log h] per cell."""
        if not torch.jit.is_tracing() and (x.shape[-1] % 32 or x.shape[-2] % 32):
            raise ValueError(f"detector input {tuple(x.shape[-2:])}: sides must be multiples of 32 (pad the image)")
        f8 = self.s8(self.s4(self.stem(x)))
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        # a constant ×2 upsampling (sides are multiples of 32): ONNX Runtime then keeps the whole top-down
        # path in its blocked layout and fuses the additions; sizes taken from the tensors cost 0.7 ms at 640×480
        p16 = self.fuse16(F.relu(self.lat16(f16) + F.interpolate(self.top32(f32), scale_factor=2.0, mode="nearest")))
        p8 = self.fuse8(F.relu(self.lat8(f8) + F.interpolate(self.top16(p16), scale_factor=2.0, mode="nearest")))
        return self.head(p8)


def build_detector(cfg: DetectorConfig) -> nn.Module:
    if cfg.arch != "detnet":
        raise ValueError(f"unknown detector architecture {cfg.arch!r}")
    return DetNet(cfg)


# ---------------------------------------------------------------- model kinds
# Everything that differs between a landmark model file and a face detector file, in one table:
# how the network is built from the file's config, what its ONNX export takes and gives (names and
# dynamic axes), and what wraps it for export.  Files say their kind in meta["kind"]
# (absent = landmarks, as onnxmodel.model_kind reads it on the run-time side).

@dataclass(frozen=True)
class ModelKind:
    name: str
    build: Callable[[dict], nn.Module]                # meta["model"] → the network
    onnx_names: tuple[list[str], list[str]]           # (inputs, outputs)
    onnx_axes: dict                                   # dynamic axes of the export
    for_export: Callable[[nn.Module], nn.Module]      # the module torch.onnx.export traces


KINDS = {
    "landmarks": ModelKind("landmarks", build_landmark_net,
                           (["crops"], ["points", "confidence", "point_confidence"]),
                           {"crops": {0: "n"}, "points": {0: "n"}, "confidence": {0: "n"},
                            "point_confidence": {0: "n"}},
                           lambda net: WithConfidence(net).eval()),
    # the detector takes any image size whose sides are multiples of 32 (LandmaskDetector pads to them):
    # batch, height and width are dynamic
    "detector": ModelKind("detector", lambda m: build_detector(DetectorConfig(**m)),
                          (["images"], ["heads"]),
                          {"images": {0: "n", 2: "h", 3: "w"}, "heads": {0: "n", 2: "h8", 3: "w8"}},
                          lambda net: net),
}


def model_kind(meta: dict) -> ModelKind:
    """The kind of a model file from its metadata (no ``kind``: a landmark model)."""
    from landmask.errors import LandmaskError
    name = meta.get("kind", "landmarks")
    if name not in KINDS:
        raise LandmaskError(f"unknown model kind {name!r}")
    return KINDS[name]

