"""The training job: one typed config (printed, saved as config.yaml), data → cache crops, the
epoch loop with validation, curves.png, self-describing checkpoints and --resume."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.crops import warp
from landmask.datasets import Sample, face_box, load_dataset
from landmask.errors import LandmaskError
from landmask.imageio import write_text_atomic
from landmask.report import Reporter
from landmask.schemes import can_convert, convert_points, get_scheme
from landmask.transforms import CACHE_FACTOR, AugmentConfig


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)
    out: str = "runs/train"
    scheme: str = "ibug68"
    preset: str = "default"
    arch: str = "lmnet"
    input_size: int = 80
    width: float = 1.0
    depth8: int = 3              # lmnet blocks at 1/8 and 1/16 resolution
    depth16: int = 3
    head_stride: int = 4         # lmnet heatmaps at 1/4 or 1/8 of the input
    block: str = "sep"           # lmnet blocks: sep (depthwise + pointwise) | dense (full 3×3)
    crop_scale: float = G.CROP_SCALE   # crop side / face box side (stored in the model file)
    epochs: int = 150
    batch_size: int = 64
    optimizer: str = "adamw"     # adamw (one-cycle schedule) | adam (constant lr)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: str = "l1"             # l1 | wing | mse
    heat_reg: float = 0.0        # weight of the heatmap-shape term (lmnet; JS to a Gaussian at the point)
    augment: bool = True
    box_jitter: float = 1.0      # × the augmentation's box shift (±8 %) and zoom (±15 %) ranges
    rotate: float = AugmentConfig.rotate_deg   # the augmentation's rotation range, ± degrees
    flip_prob: float = AugmentConfig.flip      # probability of a mirrored training crop
    mirror_shift: float = 0.0    # crop px added to mirrored x (2 × the annotations' x offset)
    val_fraction: float = 0.05
    seed: int = 0
    threads: int = 2
    limit: int = 0               # use only the first N faces of each data set (0 = all)
    init: str = ""               # start from this model file's weights (same architecture)
    teacher: str = ""            # distil from this model: its points on each training crop are a second target
    teacher_weight: float = 0.5  # loss = (1 - w) × loss to the labels + w × loss to the teacher
    teacher_flip: bool = False   # the teacher averages with its points on the mirrored crop (as --flip)

    # (option, least, most) of each numeric field; checked by check() before data are read
    RANGES = {"epochs": (1, 100_000), "batch_size": (1, 65_536), "lr": (1e-12, 10.0), "weight_decay": (0, 10.0),
              "heat_reg": (0, 1e6), "input_size": (16, 1024), "width": (0.05, 16.0), "depth8": (0, 64),
              "depth16": (0, 64), "crop_scale": (0.5, 5.0), "box_jitter": (0, 10.0), "rotate": (0, 180.0),
              "flip_prob": (0, 1), "mirror_shift": (-1000.0, 1000.0), "val_fraction": (0, 0.99),
              "seed": (0, 2**32 - 1), "threads": (1, 1024), "limit": (0, 10**12), "teacher_weight": (0, 1)}
    CHOICES = {"arch": ("lmnet", "seed"), "loss": ("l1", "wing", "mse"), "optimizer": ("adamw", "adam"),
               "block": ("sep", "dense"), "head_stride": (4, 8), "scheme": ("ibug68", "kaggle15", "muct76")}

    def check(self) -> "TrainConfig":
        """Refuse, with one line naming the option, a value training cannot use: out of range,
        nan/inf, the wrong type, an unknown choice, or an --out that is a file.  Reads no data
        and creates nothing."""
        import math
        for name, (lo, hi) in self.RANGES.items():
            v, opt = getattr(self, name), "--" + name.replace("_", "-")
            whole = isinstance(getattr(TrainConfig, name, None), int) or name in ("epochs", "batch_size")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not float(v).is_integer()):
                raise LandmaskError(f"{opt} {v!r}: must be {'a whole number' if whole else 'a number'}")
            if not math.isfinite(v) or not lo <= v <= hi:
                raise LandmaskError(f"{opt} {v}: must be from {lo:g} to {hi:g}")
        for name, choices in self.CHOICES.items():
            if getattr(self, name) not in choices:
                import difflib
                close = difflib.get_close_matches(str(getattr(self, name)), map(str, choices), n=1)
                raise LandmaskError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: choose one of "
                                    f"{', '.join(map(str, choices))}" + (f" (did you mean {close[0]}?)" if close else ""))
        if not isinstance(self.data, list) or not all(isinstance(d, str) and d for d in self.data):
            raise LandmaskError(f"--data {self.data!r}: give one or more data set paths")
        if not self.out or Path(self.out).is_file():
            raise LandmaskError(f"--out {self.out!r}: is a file; give a run folder")
        return self


# Named recipes; CLI flags given explicitly override a preset's values.
PRESETS = {
    "default": {},
    # The seed project's recipe: plain CNN on 96×96 grey, MSE, 100 epochs, batch 255, no augmentation.
    "seed": dict(arch="seed", input_size=96, epochs=100, batch_size=255, optimizer="adam", lr=1e-3,
                 weight_decay=0.0, loss="mse", augment=False, scheme="kaggle15"),
}


def make_config(preset: str = "default", **overrides) -> TrainConfig:
    if preset not in PRESETS:
        raise LandmaskError(f"--preset {preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    names = {f.name for f in fields(TrainConfig)}
    bad = set(values) - names
    if bad:
        raise LandmaskError(f"unknown training option(s): {', '.join(sorted(bad))}")
    cfg = TrainConfig(preset=preset, **values).check()
    if cfg.heat_reg and cfg.arch != "lmnet":
        raise LandmaskError(f"--heat-reg needs heatmaps: --arch {cfg.arch} has none (use lmnet)")
    if not 0 <= cfg.teacher_weight <= 1:
        raise LandmaskError(f"--teacher-weight {cfg.teacher_weight}: give a number from 0 to 1")
    if cfg.arch == "lmnet":   # refused here, before any data are read, not in the first batch
        from landmask.model import ModelConfig, lmnet_config_error
        problem = lmnet_config_error(ModelConfig(input_size=cfg.input_size, block=cfg.block,
                                                 head_stride=cfg.head_stride))
        if problem:
            field, why = problem
            raise LandmaskError(f"--{field.replace('_', '-')} {why}")
    return cfg


def build_cache(samples: list[Sample], scheme: str, size: int, reporter: Reporter, threads: int = 2,
                crop_scale: float = G.CROP_SCALE):
    """Cut each face at CACHE_FACTOR × the crop side into (2S, 2S) uint8 crops.

    Returns caches (N, 2S, 2S) uint8, points (N, K, 2) float32 in cache pixels (model scheme),
    norms (N,) outer-eye-corner distance in cache pixels (NaN where unknown).
    """
    side = size * CACHE_FACTOR

    def one(s: Sample):
        cx, cy, crop_side = G.crop_square(face_box(s), crop_scale)
        m = G.square_affine(cx, cy, crop_side * CACHE_FACTOR, side)
        pts = G.apply(m, convert_points(s.points, s.scheme, scheme))
        return warp(s.image("grey"), m, side), pts

    caches = np.empty((len(samples), side, side), np.uint8)
    points = np.empty((len(samples), len(get_scheme(scheme)), 2), np.float32)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for i, (img, pts) in enumerate(pool.map(one, samples)):
            caches[i], points[i] = img, pts
            reporter.item(i + 1, len(samples), "reading faces")
    norms = G.interocular(points.astype(np.float64), scheme)
    return caches, points, norms


def load_training_data(cfg: TrainConfig, reporter: Reporter) -> list[Sample]:
    samples = []
    for spec in cfg.data:
        part = load_dataset(spec)
        if cfg.limit:
            part = part[:cfg.limit]
        for s in part[:1]:
            if not can_convert(s.scheme, cfg.scheme):
                raise LandmaskError(f"--data {spec}: its scheme {s.scheme} cannot be converted to "
                                    f"--scheme {cfg.scheme}")
        part, unusable = usable_faces(part)
        reporter.info(f"data {spec}: {len(part)} faces" + (f" ({len(unusable)} skipped: {unusable[0]}"
                                                            + (" ..." if len(unusable) > 1 else "") + ")"
                                                            if unusable else ""))
        samples += part
    if not samples:
        raise LandmaskError("no training data: give --data PATH (a 300-W folder, a Kaggle/YouTube CSV, ...)")
    return samples


def usable_faces(samples: list[Sample]) -> tuple[list[Sample], list[str]]:
    """(faces a crop can be cut for, one line per face that cannot: too few points for a box)."""
    kept, skipped = [], []
    for s in samples:
        try:
            face_box(s)
            kept.append(s)
        except LandmaskError as e:
            skipped.append(str(e))
    return kept, skipped


def split(n: int, fraction: float, seed: int):
    rng = np.random.default_rng(seed + 12345)
    order = rng.permutation(n)
    n_val = max(1, int(round(n * fraction))) if fraction > 0 and n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def model_meta(cfg: TrainConfig, mcfg, metrics: dict, extra: dict) -> dict:
    return {
        "model": mcfg.to_dict(), "scheme": cfg.scheme,
        "crop": {"rule": "square centred on the face box, side = scale × max(box w, box h); "
                         "face box = tight box of the 68 points (or the detector's box mapped onto it)",
                 "scale": cfg.crop_scale},
        "normalization": {"input": "grey/255", "mean": mcfg.mean, "std": mcfg.std},
        "metrics": metrics, "training": {"config": asdict(cfg), **extra},
    }


def prepare_run(cfg: TrainConfig, resume: bool, reporter: Reporter, write: bool = True) -> TrainConfig:
    """Create (or, with ``resume``, reopen) the run folder; the config in force is returned,
    printed and saved as config.yaml (only with ``write``: rank 0 under torchrun)."""
    out = Path(cfg.out)
    if resume:
        if not (out / "config.yaml").exists():
            raise LandmaskError(f"--resume: {out} has no config.yaml of an earlier run")
        # the run is where --out says now (a copied or moved run resumes there, not at its old path)
        cfg = replace(read_config(out / "config.yaml"), out=str(out)).check()
    elif (out / "last.safetensors").exists():
        raise LandmaskError(f"{out} already holds a training run; use --resume to continue it "
                            f"or choose another --out")
    if not write:
        return cfg
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", config_yaml(cfg))
    reporter.info("config:\n" + config_yaml(cfg))
    return cfg


def make_optimizer(cfg: TrainConfig, model, steps_per_epoch: int):
    """(optimizer, scheduler or None): AdamW with a one-cycle schedule, or the seed's plain Adam."""
    import torch
    total = cfg.epochs * steps_per_epoch
    if cfg.optimizer == "adamw" and total < 20:   # the one-cycle warm-up needs >= 2 steps (10 % of 20)
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay), None
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, pct_start=0.1,
                                                        total_steps=cfg.epochs * steps_per_epoch)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr), None
    raise LandmaskError(f"--optimizer {cfg.optimizer!r}: choose adamw or adam")


def train(cfg: TrainConfig, reporter: Reporter = Reporter(), resume: bool = False) -> Path:
    """Run a training job into ``cfg.out``; returns the path of the final model file.  Under
    ``torchrun --nproc_per_node N`` the N processes train one model (DDP): each takes its share of
    every batch and only rank 0 writes (landmask.distributed)."""
    from landmask import distributed as dist
    info = dist.init_distributed_mode("cpu")
    reporter = reporter if info.is_main else Reporter()
    try:
        cfg = prepare_run(cfg, resume, reporter, write=info.is_main)
        dist.check_supported(cfg, info)
        return _train(cfg, reporter, resume, info)
    finally:
        dist.cleanup(info)


def _train(cfg: TrainConfig, reporter: Reporter, resume: bool, info) -> Path:
    import torch
    from landmask import checkpoint as ckpt
    from landmask import distributed as dist
    from landmask.engine import batches, evaluate, train_one_epoch
    from landmask.model import ModelConfig, build_model, count_parameters

    out, resume_path = Path(cfg.out), Path(cfg.out) / "last.safetensors"
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    scheme = get_scheme(cfg.scheme)
    samples = load_training_data(cfg, reporter)
    t0 = time.time()
    caches, points, norms = build_cache(samples, cfg.scheme, cfg.input_size, reporter, cfg.threads, cfg.crop_scale)
    reporter.info(f"cached {len(samples)} faces in {time.time() - t0:.1f}s")
    train_idx, val_idx = split(len(samples), cfg.val_fraction, cfg.seed)

    mcfg = ModelConfig(arch=cfg.arch, num_points=len(scheme), input_size=cfg.input_size, width=cfg.width,
                       depth8=cfg.depth8, depth16=cfg.depth16, head_stride=cfg.head_stride, block=cfg.block)
    model = build_model(mcfg).to(memory_format=torch.channels_last)
    if cfg.init:
        _load_init(model, mcfg, cfg.init)
        reporter.info(f"weights from {cfg.init}")
    teacher = load_teacher(cfg, mcfg) if cfg.teacher else None
    if teacher is not None:
        reporter.info(f"teacher {cfg.teacher}: weight {cfg.teacher_weight}"
                      + (", averaged with its mirrored crops" if cfg.teacher_flip else ""))
    steps = -(-len(train_idx) // cfg.batch_size)
    opt, sched = make_optimizer(cfg, model, steps)
    rng = np.random.default_rng(cfg.seed)
    start, history = 1, []
    if resume and resume_path.exists():
        start, history, torch_rng = ckpt.load_resume(resume_path, model, opt, sched, rng)
        torch.set_rng_state(torch_rng)
        reporter.info(f"resuming {out} at epoch {start}")
    reporter.info(f"model {cfg.arch}: {count_parameters(model):,} parameters, input {cfg.input_size}px; "
                  f"{len(train_idx)} train / {len(val_idx)} validation faces"
                  + (f"; {info.world_size} processes ({info.backend})" if info.distributed else ""))
    net = dist.wrap_model(model, info)
    base = AugmentConfig()
    aug = AugmentConfig(shift=base.shift * cfg.box_jitter, scale=base.scale * cfg.box_jitter,
                        rotate_deg=cfg.rotate, flip=cfg.flip_prob,
                        mirror_shift=cfg.mirror_shift) if cfg.augment else None
    best = min((h["val_nme_percent"] for h in history), default=np.inf)
    for epoch in range(start, cfg.epochs + 1):
        t = time.time()
        loader = batches(caches, points, train_idx, cfg.input_size, scheme.flip_permutation, aug,
                         cfg.batch_size, rng, mcfg.mean, mcfg.std, part=lambda b: dist.shard(b, info),
                         aug_rng=dist.augment_rng(rng, cfg.seed, epoch, info))
        tr = dist.epoch_totals(train_one_epoch(net, opt, sched, loader, steps, cfg.loss, cfg.input_size, epoch,
                                               reporter, cfg.heat_reg, teacher, cfg.teacher_weight), info)
        if not info.is_main:
            continue   # rank 0 validates and writes; the others go on to the next epoch's first step
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_mae_px": tr["mae_px"],
               "seconds": time.time() - t, "images_per_s": len(train_idx) / (time.time() - t),
               "world_size": info.world_size}
        if len(val_idx):
            va = evaluate(model, caches, points, norms, val_idx, cfg.input_size, cfg.loss, mcfg.mean, mcfg.std)
            row.update({f"val_{k}": v for k, v in va.items()})
        history.append(row)
        reporter.epoch_end(epoch, row)
        meta = model_meta(cfg, mcfg, _last_metrics(row), {"epochs_done": epoch, "faces": len(samples)})
        score = row.get("val_nme_percent", -epoch)
        if score <= best or not np.isfinite(best):
            best = score
            ckpt.save_model(out / "best.safetensors", model.state_dict(), meta)
        save_epoch(out, model, opt, sched, rng, epoch, history, meta)
    if len(val_idx) and cfg.arch == "lmnet" and info.is_main:
        calibrate_run(out, reporter)
    return out / "model.safetensors"


def save_epoch(out: Path, model, opt, sched, rng, epoch: int, history: list, meta: dict) -> None:
    """Everything an epoch leaves behind, each file written atomically: the model, the resume
    state, history.json and curves.png."""
    import torch
    from landmask import checkpoint as ckpt
    ckpt.save_model(out / "model.safetensors", model.state_dict(), meta)
    ckpt.save_resume(out / "last.safetensors", model, opt, sched, rng, torch.get_rng_state(), epoch, history)
    write_text_atomic(out / "history.json", json.dumps(history, indent=1))
    plot_curves(history, out / "curves.png")


# The face check: a crop is taken for a face when its confidence (the mean peak probability of the
# landmark heatmaps) is at least this fraction of the 1st percentile over validation faces.
FACE_CHECK_MARGIN = 0.9


def calibrate_run(run_dir, reporter: Reporter = Reporter()) -> dict:
    """Set, from a run's own validation faces (the split is recomputed from the run's config and
    seed), the model files' ``face_check.min_confidence`` and ``mirror.shift_px``."""
    from landmask.checkpoint import update_meta
    from landmask.runtime import LandmarkModel
    run_dir = Path(run_dir)
    cfg = read_config(run_dir / "config.yaml")
    samples = load_training_data(cfg, Reporter())
    _, val_idx = split(len(samples), cfg.val_fraction, cfg.seed)
    if len(val_idx) == 0:
        raise LandmaskError(f"{run_dir}: the run has no validation faces to calibrate on")
    lm = LandmarkModel(run_dir / "model.safetensors", backend="torch")
    crops = np.concatenate([lm.crops(samples[i].image("grey"), [face_box(samples[i])])[0] for i in val_idx])
    _, conf = lm.predict_crops(crops, confidence=True)
    p1 = float(np.percentile(conf, 1))
    check = {"min_confidence": round(FACE_CHECK_MARGIN * p1, 4), "validation_faces": int(len(val_idx)),
             "confidence_p1": round(p1, 4), "confidence_median": round(float(np.median(conf)), 4),
             "rule": f"{FACE_CHECK_MARGIN} x the 1st percentile of validation-face confidence"}
    mirror = {"shift_px": round(mirror_shift(lm, crops), 4), "validation_faces": int(len(val_idx)),
              "rule": "mean x of (prediction - mirrored prediction of the mirrored crop), crop pixels; "
                      "added to mirrored predictions when averaging with a flip (--flip)"}
    for name in ("model.safetensors", "best.safetensors"):
        if (run_dir / name).exists():
            update_meta(run_dir / name, {"face_check": check, "mirror": mirror})
    reporter.info(f"face check: min confidence {check['min_confidence']} (1st percentile {p1:.4f} over "
                  f"{len(val_idx)} validation faces); mirror shift {mirror['shift_px']:+.3f} crop px")
    return {"face_check": check, "mirror": mirror}


def mirror_shift(lm, crops: np.ndarray) -> float:
    """How far right of its mirror image a model places points, in crop pixels: the mean x of
    ``prediction - mirrored prediction of the mirrored crop``.  About 0 for a model trained with
    mirrored crops; for one trained without them it is twice the annotations' own x offset from
    the mirror-symmetric position (HELEN's 300-W points sit about 1 % of the eye distance right
    of it), which flip averaging must add back."""
    mirrored = lm.predict_crops(np.ascontiguousarray(crops[:, :, ::-1]))
    back = G.flip_points(mirrored, lm.input_size, lm.scheme.flip_permutation)
    return float(np.nanmean(lm.predict_crops(crops)[..., 0] - back[..., 0]))


def load_teacher(cfg: TrainConfig, mcfg):
    """The --teacher model (an engine.Teacher), checked to read the same crops as the run's model
    and to give the same points: scheme, crop scale and input normalisation must match.  The input
    size need not: the teacher sees the training crops resized to its own."""
    import torch
    from landmask.checkpoint import load_model_file
    from landmask.runtime import resolve_model_path
    path = resolve_model_path(cfg.teacher)          # a shipped name, a run folder or a file
    if path.suffix == ".onnx":
        path = path.with_suffix(".safetensors")
        if not path.exists():
            raise LandmaskError(f"--teacher {cfg.teacher}: the teacher runs in PyTorch and needs a .safetensors "
                                f"model (an 8-bit ONNX model has none)")
    model, meta = load_model_file(path)
    if meta.get("kind") == "detector" or "scheme" not in meta:
        raise LandmaskError(f"--teacher {cfg.teacher}: not a landmark model")
    theirs = {"scheme": meta["scheme"], "crop scale": float(meta["crop"]["scale"]),
              "mean": float(meta["model"]["mean"]), "std": float(meta["model"]["std"])}
    ours = {"scheme": cfg.scheme, "crop scale": float(cfg.crop_scale), "mean": mcfg.mean, "std": mcfg.std}
    diff = [f"{k} {theirs[k]} vs {ours[k]}" for k in ours if theirs[k] != ours[k]]
    if diff:
        raise LandmaskError(f"--teacher {cfg.teacher}: it differs from this run: {', '.join(diff)}")
    for p in model.parameters():
        p.requires_grad_(False)
    from landmask.engine import Teacher
    perm = get_scheme(cfg.scheme).flip_permutation if cfg.teacher_flip else None
    return Teacher(model.to(memory_format=torch.channels_last), meta["model"]["input_size"], perm,
                   meta.get("mirror", {}).get("shift_px", 0.0))


def _load_init(model, mcfg, path) -> None:
    """Start from another model's weights; its architecture must match this run's.  The input
    size may differ: lmnet is fully convolutional and its soft-argmax works on any heatmap size.
    An lmnet may also be deeper (more blocks at 1/8 or 1/16): the blocks the init model lacks start
    as identities (their last batch-norm scale is zero, so block(x) = relu(x) = x), and the model
    first computes exactly what the init model did.  It may also have the other head stride: the
    encoder and the 1/8 top-down block are kept, and the layers after them (the 1/4 path, the
    heatmap convolution) start fresh or are dropped."""
    from safetensors.torch import load_file
    from landmask.checkpoint import read_meta
    from landmask.model import ModelConfig
    theirs = ModelConfig(**read_meta(path)["model"]).to_dict()   # fields newer than the file: defaults
    ours = mcfg.to_dict()
    lmnet = ours["arch"] == "lmnet"
    free = {"input_size"} if lmnet else set()
    grow = {k for k in ("depth8", "depth16") if lmnet and theirs.get(k) is not None and theirs[k] < ours[k]}
    rehead = lmnet and theirs["head_stride"] != ours["head_stride"]
    if rehead:
        free.add("head_stride")
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v and k not in free | grow}
    if diff:
        raise LandmaskError(f"--init {path}: its model differs from this run's: "
                            + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items()))
    state = load_file(str(path))
    head = ("lat4.", "top8.", "fuse4.", "heat.")    # what differs between the two head strides
    if rehead:
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    new = [(stage, i) for k, stage in (("depth8", "s8"), ("depth16", "s16")) if k in grow
           for i in range(theirs[k], ours[k])]
    missing, unexpected = model.load_state_dict(state, strict=False)
    fresh = tuple(f"{stage}.{i}." for stage, i in new) + (head if rehead else ())
    if unexpected or any(not k.startswith(fresh) for k in missing):
        raise LandmaskError(f"--init {path}: its weights do not fit this model "
                            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    import torch
    with torch.no_grad():
        for stage, i in new:
            bn = getattr(model, stage)[i].last_bn
            bn.weight.zero_()
            bn.bias.zero_()


def _last_metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith("val_")} | {"train_loss": row["train_loss"]}


def plot_curves(history: list[dict], path) -> None:
    """Loss and MAE per epoch, training and validation (as the seed project plotted them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=90)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "mae_px", "MAE (crop pixels)")):
        ax.plot(ep, [h[f"train_{key}"] for h in history], label="train")
        if "val_" + key in history[0]:
            ax.plot(ep, [h[f"val_{key}"] for h in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(".curves.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def config_yaml(cfg: TrainConfig) -> str:
    import yaml
    return yaml.safe_dump(asdict(cfg), sort_keys=False)


def read_config(path) -> TrainConfig:
    import yaml
    try:
        values = yaml.safe_load(Path(path).read_text())
        return TrainConfig(**values)
    except (OSError, TypeError, yaml.YAMLError) as e:
        raise LandmaskError(f"{path}: not a landmask training config ({e})") from None
