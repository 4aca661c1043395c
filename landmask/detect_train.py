"""Training the face detector (DetNet) from landmark data sets: every annotated face gives its
landmark box; photos are scaled, rotated, cut and tiled (mosaics of 2-16 photos, with face-free
background tiles as hard negatives) so faces from 12 px to the whole canvas, tilted up to ±30°,
several per picture, are all seen.  Targets follow CenterNet: a Gaussian centre heatmap per
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
    channels: list[int] | None = None  # the five stages' widths; None: from width
    mosaic: float = 0.6          # probability of a mosaic of 2-16 photos
    negatives: float = 0.15      # probability that a mosaic tile is face-free background
    negative_photos: list[str] = field(default_factory=list)   # folders/files of photos without a human face
    animals: float = 0.6         # probability that a background tile gets one of negative_photos pasted on it
    occlude: float = 0.0         # probability that a face gets a box of a random shade over its mouth or one eye
    occlude_min_face: float = 0.0   # ... when it is placed at least this many px (a covered 12 px face is no face)
    blur_faces: float = 0.0      # probability that a tile (photo or face-free) is blurred by a Gaussian of sigma ...
    blur_face_max: float = 0.04  # ... up to this × the tile's face size (out of focus, moving; small faces barely)
    min_face: float = 12.0       # face (landmark box) sizes on the canvas, log-uniform
    max_face: float = 192.0      # up to the whole canvas
    rotate_deg: float = 30.0
    init: str = ""               # start from this detector (.onnx export or .safetensors)
    steps: int = 0               # steps per epoch (0: one pass over the faces, faces // batch_size)
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


def load_negative_photos(specs: list[str], reporter: Reporter) -> list[tuple[np.ndarray, np.ndarray]]:
    """(grey image, alpha 0..1) of every photo in ``specs`` (folders, searched recursively, or
    files): pictures with no human face (animals, objects), pasted onto background tiles as hard
    negatives.  A photo without transparency gets alpha 1; one that cannot be read is an error
    naming it."""
    from landmask.batch import walk_images
    from landmask.imageio import read_image, to_grey
    files, problems = [], []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            files += walk_images(p, problems=problems)
        elif p.is_file():
            files.append(p)
        else:
            raise LandmaskError(f"--negative-photos {spec}: no such file or folder")
    if problems:
        raise LandmaskError(f"--negative-photos: {problems[0]}")
    if specs and not files:
        raise LandmaskError(f"--negative-photos {' '.join(specs)}: no photos found")
    out = []
    for f in files:
        try:
            img = read_image(f, "keep")     # RGB(A) or grey, 8 or 16 bit
        except LandmaskError as e:
            raise LandmaskError(f"{f}: cannot read it as a photo (--negative-photos): {e}") from None
        if min(img.shape[:2]) < 8:
            raise LandmaskError(f"{f}: cannot read it as a photo (--negative-photos): smaller than 8 pixels")
        opaque = np.iinfo(img.dtype).max
        alpha = (img[..., 3].astype(np.float32) / opaque if img.ndim == 3 and img.shape[2] == 4
                 else np.ones(img.shape[:2], np.float32))
        out.append((to_grey(img), alpha))
    reporter.info(f"negative photos: {len(out)}")
    return out


def paste_negative(tile: np.ndarray, negative, rng) -> np.ndarray:
    """``tile`` with a random piece of a negative photo (0.3 to all of it: a head as often as a whole
    animal) pasted at 0.5-1.2 × the tile's shorter side, by its transparency, mirrored half the time."""
    img, alpha = negative
    h, w = img.shape
    ch, cw = max(4, int(h * rng.uniform(0.3, 1.0))), max(4, int(w * rng.uniform(0.3, 1.0)))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    piece, a = img[y:y + ch, x:x + cw], alpha[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        piece, a = piece[:, ::-1], a[:, ::-1]
    th, tw = tile.shape
    s = rng.uniform(0.5, 1.2) * min(th, tw) / max(ch, cw)
    nw, nh = max(2, round(cw * s)), max(2, round(ch * s))
    piece = cv2.resize(np.ascontiguousarray(piece), (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    a = cv2.resize(np.ascontiguousarray(a), (nw, nh), interpolation=cv2.INTER_LINEAR)
    ox, oy = rng.integers(-nw // 4, max(1, tw - 3 * nw // 4)), rng.integers(-nh // 4, max(1, th - 3 * nh // 4))
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + nw, tw), min(oy + nh, th)
    if x1 <= x0 or y1 <= y0:
        return tile
    out = tile.astype(np.float32)
    p, q = piece[y0 - oy:y1 - oy, x0 - ox:x1 - ox], a[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - q) + p * q
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def blurred(tile: np.ndarray, face_px: float, cfg: DetectTrainConfig, rng) -> np.ndarray:
    """``tile`` (a placed photo whose face is ``face_px`` wide, or a face-free tile drawn for that
    size) blurred with probability ``cfg.blur_faces`` by a Gaussian of sigma up to
    ``cfg.blur_face_max`` × ``face_px``: the same blur relative to every face, so a small face in a
    mosaic is not smeared away under a large one's.
    Draws nothing without ``blur_faces`` (older recipes' canvases stay as they were)."""
    if not cfg.blur_faces or rng.random() >= cfg.blur_faces:
        return tile
    sigma = rng.uniform(0.0, cfg.blur_face_max) * face_px
    return cv2.GaussianBlur(tile, (0, 0), sigma) if sigma >= 0.3 else tile


def place(img, pts, shape, face_px, rng, rotate_deg, centre=(0.1, 0.9)):
    """Warp an image onto a (height, width) tile so its face has landmark-box size ``face_px``, a
    random tilt and its centre at a random position (``centre``: range as fractions of the tile;
    past 0..1 the face is cut by the tile's edge).  Returns the tile and the face's box in it."""
    th, tw = shape
    box = G.points_box(pts)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    s = face_px / max(box[2] - box[0], box[3] - box[1])
    tx, ty = rng.uniform(*centre) * tw, rng.uniform(*centre) * th
    m = G.rotation_about(cx, cy, rng.uniform(-rotate_deg, rotate_deg), s, (tx - cx, ty - cy))
    small, m_small = _shrunk_first(img, m, s)
    out = cv2.warpAffine(small, m_small, (tw, th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # no mirrored (unlabelled) face copies
    return out, G.points_box(G.apply(m, pts))


def _shrunk_first(img, m, s):
    """For a shrink by more than 2: area-average first (as landmask.crops.warp does), so small
    faces look like a camera's small faces, not aliased ones; ``m`` adjusted to the smaller image."""
    if s >= 0.5:
        return img, m
    f = int(1 / s)
    img = cv2.resize(img, (max(1, img.shape[1] // f), max(1, img.shape[0] // f)), interpolation=cv2.INTER_AREA)
    to_small = np.array([[1 / f, 0, 0.5 / f - 0.5], [0, 1 / f, 0.5 / f - 0.5]])
    return img, G.compose(m, G.invert(to_small))


def background(img, pts, shape, rng, tries: int = 8):
    """A hard negative: a (height, width) piece of a photo well away from its annotated face, at a
    random scale; None when the photo has no such piece."""
    th, tw = shape
    h, w = img.shape
    x0, y0, x1, y1 = G.points_box(pts)
    m = 0.6 * max(x1 - x0, y1 - y0)
    face = (x0 - m, y0 - m, x1 + m, y1 + m)
    for _ in range(tries):
        side = rng.uniform(0.15, 0.6) * min(h, w)
        bw, bh = side * tw / max(tw, th), side * th / max(tw, th)
        bx, by = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        if bx + bw < face[0] or bx > face[2] or by + bh < face[1] or by > face[3]:
            piece = img[int(by):int(by + bh), int(bx):int(bx + bw)]
            if min(piece.shape) >= 4:
                return cv2.resize(piece, (tw, th), interpolation=cv2.INTER_AREA)
    return None


GRIDS = ((1, 2), (2, 1), (2, 2), (3, 3), (4, 4))   # mosaics of 2-16 photos (rows, columns)


def make_canvas(images, cfg: DetectTrainConfig, rng, negatives=()):
    """One training canvas (uint8) and its face boxes (N, 4): a single photo with its face from
    ``min_face`` px to the whole canvas (cut by the edges at times), or a mosaic of 2-16 photos with
    faces from ``min_face`` px to nearly their tile, some tiles being face-free background."""
    size = cfg.canvas

    def pick(face):
        img, pts = images[rng.integers(len(images))]
        if cfg.occlude and face >= cfg.occlude_min_face and rng.random() < cfg.occlude:   # a hand over the mouth, sunglasses, a scarf
            from landmask.occlusion import random_cover
            img = random_cover(img, pts, "ibug68", rng)
        return img, pts

    if rng.random() >= cfg.mosaic:
        face = np.exp(rng.uniform(np.log(cfg.min_face), np.log(cfg.max_face)))
        img, pts = pick(face)
        canvas, box = place(img, pts, (size, size), face, rng, cfg.rotate_deg, centre=(-0.05, 1.05))
        return blurred(canvas, face, cfg, rng), box[None]
    rows, cols = GRIDS[rng.integers(len(GRIDS))]
    th, tw = size // rows, size // cols
    canvas, boxes = np.zeros((size, size), np.uint8), []
    for k in range(rows * cols):
        oy, ox = divmod(k, cols)
        top = max(cfg.min_face * 1.01, 0.9 * min(th, tw))
        face = np.exp(rng.uniform(np.log(cfg.min_face), np.log(top)))
        img, pts = pick(face)
        tile = background(img, pts, (th, tw), rng) if rng.random() < cfg.negatives else None
        if tile is not None and len(negatives) and rng.random() < cfg.animals:
            tile = paste_negative(tile, negatives[rng.integers(len(negatives))], rng)
        if tile is None:
            tile, box = place(img, pts, (th, tw), face, rng, cfg.rotate_deg)
            boxes.append(box + [ox * tw, oy * th, ox * tw, oy * th])
        tile = blurred(tile, face, cfg, rng)   # background tiles too: blur alone must not mean a face
        canvas[oy * th:(oy + 1) * th, ox * tw:(ox + 1) * tw] = tile
    return canvas, np.array(boxes).reshape(-1, 4)


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
        ix, iy = min(int(round(cx)), n - 1), min(int(round(cy)), n - 1)
        heat[iy, ix] = 1.0
        reg[:, iy, ix] = (cx - ix, cy - iy, np.log(w), np.log(h))
        mask[iy, ix] = 1.0
    return heat, reg, mask


def make_batch(images, cfg: DetectTrainConfig, aug: AugmentConfig, rng, negatives=()):
    """One batch: canvases (B, S, S) float in [0, 1] (mirrored half the time) and their targets."""
    xs, hs, rs, ms = [], [], [], []
    for _ in range(cfg.batch_size):
        canvas, boxes = make_canvas(images, cfg, rng, negatives)
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


# strong photometric augmentation: in-the-wild photos are dark, flat, noisy or soft
AUGMENT = AugmentConfig(brightness=0.3, contrast=0.5, blur=0.3, noise=0.05)


def face_range(cfg: DetectTrainConfig) -> list[float]:
    """The landmark-box sizes (network pixels) the detector is trusted on: the trained range less
    a margin at the top (whole-canvas faces are always cut); the image pyramid relies on it."""
    return [float(cfg.min_face), round(0.8 * min(cfg.max_face, cfg.canvas), 1)]


def train_detector(cfg: DetectTrainConfig, reporter: Reporter = Reporter(), resume: bool = False) -> Path:
    """Train DetNet into ``cfg.out``; returns the model file (.safetensors, self-describing).
    ``resume``: continue the run in ``cfg.out`` from its last finished epoch (its saved config)."""
    import torch
    import yaml
    from landmask import checkpoint as ckpt
    from landmask.model import DetectorConfig, build_detector, count_parameters

    out = Path(cfg.out)
    if resume:
        if not (out / "last.safetensors").exists():
            raise LandmaskError(f"--resume: {out} holds no detector run to resume (no last.safetensors)")
        threads = cfg.threads
        cfg = DetectTrainConfig(**yaml.safe_load((out / "config.yaml").read_text()))
        cfg.threads, cfg.out = threads, str(out)    # the run may have been moved
    elif (out / "detector.safetensors").exists() or (out / "last.safetensors").exists():
        raise LandmaskError(f"{out} already holds a detector run; choose another --out or give --resume")
    if cfg.canvas % 32:
        raise LandmaskError(f"--canvas {cfg.canvas}: the detector needs a multiple of 32 (e.g. 192)")
    if cfg.init and cfg.channels is None and not resume:   # the stage widths of the detector it starts from
        if cfg.width != 1.0:
            raise LandmaskError(f"--width {cfg.width} with --init: the widths come from {cfg.init}; "
                                "give --channels to choose them")
        cfg.channels = init_channels(cfg.init, cfg.width)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dcfg = DetectorConfig(width=cfg.width, channels=cfg.channels)
    model = build_detector(dcfg)
    if cfg.init and not resume:     # a resumed run's weights come from its last.safetensors
        init_weights(model, cfg.init)   # (before anything is written: an --init that does not fit leaves no run)
    images = load_faces(cfg, reporter)   # before anything is written: bad --data leaves no run folder behind
    negatives = load_negative_photos(cfg.negative_photos, reporter)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))
    reporter.info(f"config: {json.dumps(asdict(cfg))}")
    model = model.to(memory_format=torch.channels_last)
    reporter.info(f"detector: {count_parameters(model):,} parameters; {len(images)} faces")
    steps = cfg.steps or max(1, len(images) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.1)
    first, history = 1, []
    if resume:
        first, history, torch_rng = ckpt.load_resume(out / "last.safetensors", model, opt, sched, rng)
        torch.set_rng_state(torch_rng)
        if first > cfg.epochs:
            reporter.info(f"--resume: {out} had finished its {cfg.epochs} epochs; nothing to do")
        else:
            reporter.info(f"resuming at epoch {first}")
    for epoch in range(first, cfg.epochs + 1):
        row = train_one_epoch(model, opt, sched, images, cfg, dcfg, rng, steps, epoch, reporter, negatives)
        history.append(row)
        meta = {"kind": "detector", "model": dcfg.to_dict(), "stride": STRIDE, "face_range": face_range(cfg),
                "box": "tight box of the 68 landmarks", "training": {"config": asdict(cfg), "epochs_done": epoch}}
        ckpt.save_model(out / "detector.safetensors", model.state_dict(), meta)
        ckpt.save_resume(out / "last.safetensors", model, opt, sched, rng, torch.get_rng_state(), epoch, history)
        write_text_atomic(out / "history.json", json.dumps(history, indent=1))
        reporter.epoch_end(epoch, row)
    return out / "detector.safetensors"


def load_faces(cfg: DetectTrainConfig, reporter: Reporter):
    """(grey image, 68 points) of every annotated face in ``cfg.data``, images shrunk to MAX_SIDE."""
    from landmask.datasets import load_training_data
    samples = load_training_data(cfg.data, "ibug68", cfg.limit, reporter)
    whole = [s for s in samples if np.isfinite(s.points).all()]   # a face box needs all 68 points
    if len(whole) < len(samples):
        reporter.info(f"{len(samples) - len(whole)} faces without all 68 points skipped (their box is unknown)")
    if not whole:
        raise LandmaskError(f"--data: no face with all 68 points ({len(samples)} partial faces); the detector "
                            f"learns face boxes from whole faces")
    return load_images(whole, reporter, 2)


def train_one_epoch(model, opt, sched, images, cfg, dcfg, rng, steps, epoch, reporter, negatives=()) -> dict:
    import torch
    from landmask.engine import to_tensor
    t0, tot = time.time(), 0.0
    model.train()
    if cfg.init.endswith(".onnx"):
        freeze_batchnorm(model)
    for step in range(steps):
        x, heat, reg, mask = make_batch(images, cfg, AUGMENT, rng, negatives)
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
    seconds = time.time() - t0
    return {"epoch": epoch, "loss": tot / steps, "seconds": seconds, "images_per_s": steps * cfg.batch_size / seconds}


def init_weights(model, path) -> None:
    """``--init``: a detector's .onnx export (see init_from_onnx) or its .safetensors file."""
    if not Path(path).is_file():
        raise LandmaskError(f"--init {path}: no such file")
    if str(path).endswith(".onnx"):
        return init_from_onnx(model, path)
    from landmask.checkpoint import load_model_file
    other, meta = load_model_file(path)
    if meta.get("kind") != "detector":
        raise LandmaskError(f"--init {path}: not a face detector")
    try:
        model.load_state_dict(other.state_dict())
    except RuntimeError:   # other stage widths (--channels) or width
        raise LandmaskError(f"--init {path}: its layout does not fit this run's detector (other stage widths: "
                            f"without --channels the run takes its own)") from None


def init_channels(path, width: float) -> list[int]:
    """The stage widths of the detector file at ``path`` (--init: .onnx export or .safetensors)."""
    from landmask.model import DetectorConfig, detector_channels
    if not Path(path).is_file():
        raise LandmaskError(f"--init {path}: no such file")
    if str(path).endswith(".onnx"):
        import onnx
        from landmask.onnxmodel import read_meta
        try:
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as e:
            raise LandmaskError(f"--init {path}: cannot read the ONNX file ({e})") from None
        meta = read_meta(path, props, kind="detector")
    else:
        from landmask.checkpoint import read_meta
        meta = read_meta(path)
        if meta.get("kind") != "detector":
            raise LandmaskError(f"--init {path}: not a face detector")
    m = meta.get("model", {})
    return detector_channels(DetectorConfig(width=m.get("width", width), channels=m.get("channels")))


def init_from_onnx(model, path) -> None:
    """Load the weights of an exported detector (``landmask/models/detector.onnx``) into ``model``.
    The export folded every batch norm into its convolution, so each batch norm becomes the
    identity plus the folded bias; train with them frozen (``freeze_batchnorm``)."""
    import onnx
    import torch
    from onnx import numpy_helper
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:
        raise LandmaskError(f"--init {path}: cannot read the ONNX file ({e})") from None
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    modules = dict(model.named_modules())
    done = set()
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        # a convolution's module path is in its output's name, or (the graph's output) its weight's
        name = _module_path(node.output[0]) or node.input[1].removesuffix(".weight")
        conv = modules.get(name)
        if conv is None or tuple(conv.weight.shape) != tuple(weights[node.input[1]].shape):
            raise LandmaskError(f"--init {path}: its convolution {name} does not fit this detector's architecture")
        with torch.no_grad():
            conv.weight.copy_(weights[node.input[1]])
            bias = weights[node.input[2]] if len(node.input) > 2 else torch.zeros(conv.out_channels)
            if conv.bias is not None:
                conv.bias.copy_(bias)
            else:   # conv_bn: the next module in the Sequential is its batch norm
                parent, idx = name.rsplit(".", 1)
                bn = modules[parent][int(idx) + 1]
                bn.weight.fill_(1.0), bn.bias.copy_(bias), bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
        done.add(name)
    convs = {n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)}
    if done != convs:
        raise LandmaskError(f"--init {path}: no weights for {', '.join(sorted(convs - done))}")


def _module_path(output: str) -> str:
    """'/s4/s4.0/dw/dw.0/Conv_output_0' (torch.onnx's node naming) → 's4.0.dw.0'."""
    parts, prev = [], None
    for c in output.strip("/").split("/")[:-1]:
        parts.append(c.rsplit(".", 1)[1] if prev and c.startswith(prev + ".") else c)
        prev = c
    return ".".join(parts)


def freeze_batchnorm(model) -> None:
    """Batch norms in eval mode: running statistics and the folded identities stay as they are."""
    import torch
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
