"""Training the face detector (DetNet) from landmark data sets: every annotated face gives its
landmark box; images are scaled, rotated and tiled (2×2 mosaics) so faces of 12-200 px, tilted up
to ±30°, several per picture, are all seen.  Targets follow CenterNet: a Gaussian centre heatmap per
stride-8 cell, the centre's sub-cell offset and the log box size at the centre cell."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from landmask import geometry as G
from landmask.datasets import Sample
from landmask.errors import LandmaskError
from landmask.imageio import write_text_atomic
from landmask.report import Reporter
from landmask.transforms import AugmentConfig, photometric

STRIDE = 8
MAX_SIDE = 320   # images are cached with their longer side at most this many pixels


@dataclass
class DetectTrainConfig:
    data: list[str] = field(default_factory=list)
    out: str = "runs/detector"
    epochs: int = 40
    batch_size: int = 32
    canvas: int = 192            # training crops are canvas × canvas
    lr: float = 3e-3
    width: float = 1.0
    mosaic: float = 0.5          # probability of a 2×2 mosaic
    min_face: float = 12.0       # face (landmark box) sizes on the canvas, log-uniform
    max_face: float = 170.0
    rotate_deg: float = 30.0
    seed: int = 0
    threads: int = 1
    limit: int = 0


def load_images(samples: list[Sample], reporter: Reporter, threads: int = 2):
    """Grey images shrunk to MAX_SIDE and each face's 68 points in them."""
    def one(s):
        img = s.image("grey")
        f = min(1.0, MAX_SIDE / max(img.shape))
        if f < 1:
            img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
        return img, (s.points + 0.5) * f - 0.5
    out = []
    with ThreadPoolExecutor(threads) as pool:
        for i, r in enumerate(pool.map(one, samples)):
            out.append(r)
            reporter.item(i + 1, len(samples), "reading images")
    return out


def place(img, pts, size, face_px, rng, rotate_deg):
    """Warp an image so its face has landmark-box size ``face_px``, a random tilt and position."""
    box = G.points_box(pts)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    s = face_px / max(box[2] - box[0], box[3] - box[1])
    tx, ty = rng.uniform(0.1, 0.9, 2) * size
    m = G.rotation_about(cx, cy, rng.uniform(-rotate_deg, rotate_deg), s, (tx - cx, ty - cy))
    if s < 0.5:  # shrink with area averaging first, as landmask.crops.warp does
        f = int(1 / s)
        img = cv2.resize(img, (max(1, img.shape[1] // f), max(1, img.shape[0] // f)), interpolation=cv2.INTER_AREA)
        to_small = np.array([[1 / f, 0, 0.5 / f - 0.5], [0, 1 / f, 0.5 / f - 0.5]])
        pts = G.apply(to_small, pts)
        m = G.compose(m, G.invert(to_small))
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # no mirrored (unlabelled) face copies
    return out, G.points_box(G.apply(m, pts))


def make_canvas(images, cfg: DetectTrainConfig, rng):
    """One training canvas (uint8) and its face boxes (N, 4)."""
    size = cfg.canvas
    if rng.random() < cfg.mosaic:
        half = size // 2
        canvas, boxes = np.zeros((size, size), np.uint8), []
        for k in range(4):
            img, pts = images[rng.integers(len(images))]
            face = np.exp(rng.uniform(np.log(cfg.min_face), np.log(min(cfg.max_face, half * 0.8))))
            tile, box = place(img, pts, half, face, rng, cfg.rotate_deg)
            oy, ox = divmod(k, 2)
            canvas[oy * half:(oy + 1) * half, ox * half:(ox + 1) * half] = tile
            boxes.append(box + [ox * half, oy * half, ox * half, oy * half])
        return canvas, np.array(boxes)
    img, pts = images[rng.integers(len(images))]
    face = np.exp(rng.uniform(np.log(cfg.min_face), np.log(cfg.max_face)))
    canvas, box = place(img, pts, size, face, rng, cfg.rotate_deg)
    return canvas, box[None]


def targets(boxes: np.ndarray, size: int):
    """CenterNet targets for one canvas: heatmap (H, W), regression (4, H, W), mask (H, W)."""
    n = size // STRIDE
    heat = np.zeros((n, n), np.float32)
    reg = np.zeros((4, n, n), np.float32)
    mask = np.zeros((n, n), np.float32)
    ys, xs = np.mgrid[:n, :n]
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 / STRIDE - 0.5, (y0 + y1) / 2 / STRIDE - 0.5   # in cell units
        w, h = (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
        if not (0 <= cx < n and 0 <= cy < n):
            continue   # centre outside the canvas: this face is not a target
        sigma = max(0.5, 0.15 * min(w, h))
        heat = np.maximum(heat, np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)))
        ix, iy = int(round(cx)), int(round(cy))
        heat[iy, ix] = 1.0
        reg[:, iy, ix] = (cx - ix, cy - iy, np.log(w), np.log(h))
        mask[iy, ix] = 1.0
    return heat, reg, mask


def make_batch(images, cfg: DetectTrainConfig, aug: AugmentConfig, rng):
    """One batch: canvases (B, S, S) float in [0, 1] (mirrored half the time) and their targets."""
    xs, hs, rs, ms = [], [], [], []
    for _ in range(cfg.batch_size):
        canvas, boxes = make_canvas(images, cfg, rng)
        if rng.random() < 0.5:   # mirror the canvas and its boxes
            canvas = np.ascontiguousarray(canvas[:, ::-1])
            boxes = np.stack([cfg.canvas - 1 - boxes[:, 2], boxes[:, 1], cfg.canvas - 1 - boxes[:, 0], boxes[:, 3]], 1)
        x, _ = photometric(canvas, None, aug, rng)
        h, r, m = targets(boxes, cfg.canvas)
        xs.append(x), hs.append(h), rs.append(r), ms.append(m)
    return np.stack(xs), np.stack(hs), np.stack(rs), np.stack(ms)


def detector_loss(out, heat, reg, mask):
    """Focal loss on the centre heatmap (CenterNet, α=2, β=4) + L1 on offset/size at centres."""
    import torch
    import torch.nn.functional as F
    logit = out[:, 0]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -(F.logsigmoid(logit) * (1 - p) ** 2 * pos)
    neg_loss = -(F.logsigmoid(-logit) * p ** 2 * (1 - heat) ** 4 * (1 - pos))
    n = pos.sum().clamp(min=1)
    focal = (pos_loss.sum() + neg_loss.sum()) / n
    l1 = ((out[:, 1:] - reg).abs() * mask[:, None]).sum() / (4 * n)
    return focal + l1, focal, l1


def train_detector(cfg: DetectTrainConfig, reporter: Reporter = Reporter()) -> Path:
    """Train DetNet into ``cfg.out``; returns the model file (.safetensors, self-describing)."""
    import torch
    from landmask import checkpoint as ckpt
    from landmask.engine import to_tensor
    from landmask.model import DetectorConfig, build_detector, count_parameters
    from landmask.train import load_training_data, make_config

    out = Path(cfg.out)
    if (out / "detector.safetensors").exists():
        raise LandmaskError(f"{out} already holds a detector; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    import yaml
    write_text_atomic(out / "config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    samples = load_training_data(make_config(data=cfg.data, limit=cfg.limit), reporter)
    samples = [s for s in samples if np.isfinite(s.points).all()]
    images = load_images(samples, reporter, 2)
    dcfg = DetectorConfig(width=cfg.width)
    model = build_detector(dcfg).to(memory_format=torch.channels_last)
    reporter.info(f"detector: {count_parameters(model):,} parameters; {len(images)} faces")
    steps = max(1, len(images) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.1)
    aug = AugmentConfig()
    history = []
    for epoch in range(1, cfg.epochs + 1):
        t0, tot = time.time(), 0.0
        model.train()
        for step in range(steps):
            x, heat, reg, mask = make_batch(images, cfg, aug, rng)
            out_t = model(to_tensor(x, dcfg.mean, dcfg.std))
            loss, focal, l1 = detector_loss(out_t, *(torch.from_numpy(a) for a in (heat, reg, mask)))
            if not torch.isfinite(loss):
                raise LandmaskError(f"detector training stopped: loss {loss.item()} at epoch {epoch}, step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
            reporter.step(epoch, step + 1, steps, tot / (step + 1))
        row = {"epoch": epoch, "loss": tot / steps, "seconds": time.time() - t0,
               "images_per_s": steps * cfg.batch_size / (time.time() - t0)}
        history.append(row)
        reporter.epoch_end(epoch, row)
        meta = {"kind": "detector", "model": dcfg.to_dict(), "stride": STRIDE,
                "box": "tight box of the 68 landmarks", "training": {"config": asdict(cfg), "epochs_done": epoch}}
        ckpt.save_model(out / "detector.safetensors", model.state_dict(), meta)
        write_text_atomic(out / "history.json", json.dumps(history, indent=1))
    return out / "detector.safetensors"
