"""The training job, wired: config in force (printed, saved as config.yaml) → data → cached crops →
model, optimiser → the epoch loop of landmask.engine with validation, curves.png, self-describing
checkpoints and --resume → calibration (landmask.calibrate).  Under torchrun every rank runs this
and only rank 0 writes (landmask.distributed)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from landmask.calibrate import calibrate_run
from landmask.datasets import load_training_data, split
from landmask.errors import LandmaskError
from landmask.imageio import write_text_atomic
from landmask.metrics import plot_curves
from landmask.report import Reporter
from landmask.schemes import get_scheme
from landmask.trainconfig import TrainConfig, config_yaml, read_config
from landmask.transforms import AugmentConfig, build_cache


def model_meta(cfg: TrainConfig, mcfg, metrics: dict, extra: dict) -> dict:
    return {
        "model": mcfg.to_dict(), "scheme": cfg.scheme,
        "crop": {"rule": "square centred on the face box, side = scale × max(box w, box h); "
                         "face box = tight box of the 68 points (or the detector's box mapped onto it)",
                 "scale": cfg.crop_scale},
        "normalization": {"input": "grey/255", "mean": mcfg.mean, "std": mcfg.std},
        "metrics": metrics, "training": {"config": asdict(cfg), **extra},
    }


# what a resumed run takes from the caller rather than its config.yaml: where and until when it runs,
# how many processes cut its crops and how often it writes its files (none changes what it computes,
# except that --workers 0 and N draw the crops from different random streams)
RESUME_OVERRIDES = ("device", "workers", "save_every", "stop_after")


def prepare_run(cfg: TrainConfig, resume: bool, reporter: Reporter, write: bool = True,
                overrides: dict | None = None) -> TrainConfig:
    """Create (or, with ``resume``, reopen) the run folder; the config in force is returned,
    printed and saved as config.yaml (only with ``write``: rank 0 under torchrun).  A resumed run
    keeps its own settings except ``overrides`` (RESUME_OVERRIDES only)."""
    out = Path(cfg.out)
    if resume:
        if not (out / "config.yaml").exists():
            raise LandmaskError(f"--resume: {out} has no config.yaml of an earlier run")
        if not (out / "last.safetensors").exists():
            raise LandmaskError(f"--resume: {out} holds no checkpoint to resume (no last.safetensors: it was "
                                f"removed, or the run stopped before its first save: its first epoch, or the "
                                f"first N of --save-every N); start a new run in another --out")
        bad = set(overrides or {}) - set(RESUME_OVERRIDES)
        if bad:
            raise LandmaskError(f"--resume keeps the run's own {', '.join(sorted(bad))}")
        # the run is where --out says now (a copied or moved run resumes there, not at its old path); a
        # run begun on a GPU may go on on a CPU (--device cpu), or the other way
        cfg = replace(read_config(out / "config.yaml"), out=str(out), **{"stop_after": 0, **(overrides or {})}).check()
    else:
        held = [n for n in ("last.safetensors", "model.safetensors", "best.safetensors", "history.json")
                if (out / n).exists()]
        if held:
            raise LandmaskError(f"{out} already holds a training run ({', '.join(held)}); use --resume to continue "
                                f"it (where it wrote last.safetensors) or choose another --out")
        for d in cfg.data if isinstance(cfg.data, (list, tuple)) else [cfg.data]:
            folder = Path(d)           # a folder of faces (.pts and photos); a CSV file's folder is the user's own
            if folder.is_dir() and (out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents):
                raise LandmaskError(f"--out {out}: is inside the data set {d}; the run's files would be "
                                    f"written among its faces (choose another --out)")
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


def train(cfg: TrainConfig, reporter: Reporter = Reporter(), resume: bool = False,
          overrides: dict | None = None) -> Path:
    """Run a training job into ``cfg.out``; returns the path of the final model file.  Under
    ``torchrun --nproc_per_node N`` the N processes train one model (DDP): each takes its share of
    every batch and only rank 0 writes (landmask.distributed)."""
    from landmask import distributed as dist
    info = dist.init_distributed_mode("cpu")
    reporter = reporter if info.is_main else Reporter()
    fresh = not resume and not Path(cfg.out).exists()   # a new run folder: gone again if the run fails to start
    try:
        asked = replace(cfg, **(overrides or {}))    # refused before the run folder is made; a resumed
        dist.check_supported(asked, info)            # run's own settings are checked again below
        training_device(asked.device)
        if asked.init and not resume:
            from landmask.checkpoint import check_init_file
            check_init_file(asked.init)
        cfg = prepare_run(cfg, resume, reporter, write=info.is_main, overrides=overrides)
        dist.check_supported(cfg, info)
        return _train(cfg, reporter, resume, info)
    except BaseException:
        if fresh and info.is_main:
            _remove_unstarted_run(Path(cfg.out))
        raise
    finally:
        dist.cleanup(info)


def _remove_unstarted_run(out: Path) -> None:
    """Remove a run folder this run made that holds nothing but its config.yaml (bad data, a bad
    --init: the run never started), so the same command can be given again once it is fixed."""
    try:
        if out.is_dir() and {p.name for p in out.iterdir()} <= {"config.yaml"}:
            (out / "config.yaml").unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass


def epochs_done(out) -> tuple[int, int]:
    """(epochs written to history.json, the run's --epochs) of a run folder."""
    out = Path(out)
    history = json.loads((out / "history.json").read_text()) if (out / "history.json").exists() else []
    return (history[-1]["epoch"] if history else 0), read_config(out / "config.yaml").epochs


def training_device(name: str):
    """The torch.device for --device, refused by name where it is not there."""
    import torch
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LandmaskError(f"--device {name}: no CUDA GPU is available to this PyTorch "
                                f"({torch.__version__}); train with --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise LandmaskError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                                f"numbered from 0")
        torch.backends.cudnn.benchmark = True     # fixed input sizes: let cuDNN pick its fastest kernels
    return torch.device(name)


def cut_ahead(device) -> bool:
    """Whether the next batches are cut on a thread of their own while the model trains on this one:
    off the CPU (on a CPU the model's own threads take the cores)."""
    return device.type != "cpu"


def prefetched(batches, depth: int = 2):
    """``batches`` produced on a background thread, ``depth`` ahead of the consumer (same order,
    same random draws: one producer); its error, if any, is raised in the consumer."""
    import queue
    import threading
    q: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for b in batches:
                if stop.is_set():
                    return
                q.put(b)
            q.put(done)
        except BaseException as e:    # handed to the consumer
            q.put(e)

    threading.Thread(target=produce, daemon=True, name="landmask-batches").start()
    try:
        while (b := q.get()) is not done:
            if isinstance(b, BaseException):
                raise b
            yield b
    finally:
        stop.set()
        while not q.empty():          # let a producer blocked on a full queue see the stop
            q.get_nowait()


def augmentation(cfg: TrainConfig) -> AugmentConfig | None:
    """The training crops' augmentation for ``cfg`` (None with --no-augment)."""
    if not cfg.augment:
        return None
    base = AugmentConfig()
    return AugmentConfig(shift=base.shift * cfg.box_jitter, scale=base.scale * cfg.box_jitter,
                         rotate_deg=cfg.rotate, flip=cfg.flip_prob, mirror_shift=cfg.mirror_shift,
                         blur=cfg.blur_prob, blur_max=cfg.blur_max, noise=cfg.noise_max / 255)


def _train(cfg: TrainConfig, reporter: Reporter, resume: bool, info) -> Path:
    import torch
    from landmask import checkpoint as ckpt
    from landmask import distributed as dist
    from landmask.engine import BatchWorkers, batches, evaluate, load_teacher, train_one_epoch
    from landmask.model import ModelConfig, build_model, count_parameters

    out, resume_path = Path(cfg.out), Path(cfg.out) / "last.safetensors"
    device = training_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    scheme = get_scheme(cfg.scheme)
    samples = load_training_data(cfg.data, cfg.scheme, cfg.limit, reporter)
    t0 = time.time()
    caches, points, norms = build_cache(samples, cfg.scheme, cfg.input_size, reporter, cfg.threads, cfg.crop_scale)
    reporter.info(f"cached {len(samples)} faces in {time.time() - t0:.1f}s")
    train_idx, val_idx = split(len(samples), cfg.val_fraction, cfg.seed)

    mcfg = ModelConfig(arch=cfg.arch, num_points=len(scheme), input_size=cfg.input_size, width=cfg.width,
                       depth8=cfg.depth8, depth16=cfg.depth16, head_stride=cfg.head_stride, head=cfg.head,
                       block=cfg.block)
    model = build_model(mcfg).to(memory_format=torch.channels_last)
    if cfg.init:
        ckpt.load_init_weights(model, mcfg, cfg.init)
        reporter.info(f"weights from {cfg.init}")
    model.to(device)
    teacher = load_teacher(cfg, mcfg, device) if cfg.teacher else None
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
        if 0 < cfg.stop_after < start:
            raise LandmaskError(f"--stop-after {cfg.stop_after}: the run in {out} has done {start - 1} epochs "
                                f"already; give a later epoch, or leave --stop-after out to finish it")
    reporter.info(f"model {cfg.arch}: {count_parameters(model):,} parameters, input {cfg.input_size}px; "
                  f"{len(train_idx)} train / {len(val_idx)} validation faces"
                  + (f"; {info.world_size} processes ({info.backend})" if info.distributed else "")
                  + (f"; on {device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    net = dist.wrap_model(model, info)
    aug = augmentation(cfg)
    best = min((h["val_nme_percent"] for h in history), default=np.inf)
    workers = BatchWorkers(cfg.workers, caches, points, cfg.input_size, scheme.flip_permutation, aug,
                           cfg.seed) if cfg.workers else None
    try:
        stopped = lambda epoch: epoch == cfg.stop_after < cfg.epochs   # noqa: E731
        for epoch in range(start, cfg.epochs + 1):
            t = time.time()
            if workers is not None:
                loader = workers.batches(train_idx, cfg.batch_size, rng, epoch, mcfg.mean, mcfg.std)
            else:
                loader = batches(caches, points, train_idx, cfg.input_size, scheme.flip_permutation, aug,
                                 cfg.batch_size, rng, mcfg.mean, mcfg.std, part=lambda b: dist.shard(b, info),
                                 aug_rng=dist.augment_rng(rng, cfg.seed, epoch, info))
            if cut_ahead(device):
                loader = prefetched(loader)
            tr = dist.epoch_totals(train_one_epoch(net, opt, sched, loader, steps, cfg.loss, cfg.input_size, epoch,
                                                   reporter, cfg.heat_reg, teacher, cfg.teacher_weight, device), info)
            if not info.is_main:
                if stopped(epoch):
                    break
                continue   # rank 0 validates and writes; the others go on to the next epoch's first step
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_mae_px": tr["mae_px"],
                   "seconds": time.time() - t, "images_per_s": len(train_idx) / (time.time() - t),
                   "world_size": info.world_size}
            if len(val_idx):
                va = evaluate(model, caches, points, norms, val_idx, cfg.input_size, cfg.loss, mcfg.mean, mcfg.std,
                              device)
                row.update({f"val_{k}": v for k, v in va.items()})
            history.append(row)
            reporter.epoch_end(epoch, row)
            meta = model_meta(cfg, mcfg, _last_metrics(row), {"epochs_done": epoch, "faces": len(samples)})
            score = row.get("val_nme_percent", -epoch)
            if score <= best or not np.isfinite(best):
                best = score
                ckpt.save_model(out / "best.safetensors", model.state_dict(), meta)
            if epoch % cfg.save_every == 0 or epoch in (cfg.epochs, cfg.stop_after):
                save_epoch(out, model, opt, sched, rng, epoch, history, meta)
            if stopped(epoch):
                reporter.info(f"stopped after epoch {epoch} of {cfg.epochs} (--stop-after {cfg.stop_after})")
                return out / "model.safetensors"
        if len(val_idx) and cfg.arch == "lmnet" and info.is_main:
            calibrate_run(out, reporter)
        return out / "model.safetensors"
    finally:
        if workers is not None:
            workers.close()


def save_epoch(out: Path, model, opt, sched, rng, epoch: int, history: list, meta: dict) -> None:
    """Everything an epoch leaves behind, each file written atomically: the model, the resume
    state, history.json and curves.png."""
    import torch
    from landmask import checkpoint as ckpt
    ckpt.save_model(out / "model.safetensors", model.state_dict(), meta)
    ckpt.save_resume(out / "last.safetensors", model, opt, sched, rng, torch.get_rng_state(), epoch, history)
    finite = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in history]
    write_text_atomic(out / "history.json", json.dumps(finite, indent=1))   # null, never NaN: strict JSON
    plot_curves(history, out / "curves.png")


def _last_metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith("val_")} | {"train_loss": row["train_loss"]}


