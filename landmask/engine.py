"""The training loop's pieces: turning cached face crops into batches, one epoch of training, and
evaluation on held-out crops (under inference mode)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from landmask.errors import LandmaskError
from landmask.schemes import get_scheme
from landmask.transforms import AugmentConfig, center_crop, cut_batch


def to_tensor(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """(B, S, S) uint8 or float in [0, 1] → normalised (B, 1, S, S) channels_last float32."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if images.dtype == np.uint8:
        x = x / 255.0
    x = ((x - mean) / std).unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last)


def batches(caches, points, idx, size, perm, aug: AugmentConfig | None, batch_size, rng, mean, std,
            part=None, aug_rng=None):
    """Yield (x, y) training batches over ``idx`` in a random order; y (B, K, 2) crop pixels.
    Under torchrun, ``part`` cuts each global batch down to this process's share
    (distributed.shard) and ``aug_rng`` (default ``rng``) draws its augmentation."""
    order = rng.permutation(idx)
    aug_rng = rng if aug_rng is None else aug_rng
    for s in range(0, len(order), batch_size):
        sel = order[s:s + batch_size] if part is None else part(order[s:s + batch_size])
        im, p = cut_batch(caches, points, sel, size, perm, aug, aug_rng)
        yield to_tensor(im, mean, std), torch.from_numpy(p)


class BatchWorkers:
    """``n`` processes that cut the training batches (`train --workers N`), for a GPU that one core
    cannot keep busy.  Batch b of epoch e is augmented from a random stream of its own, seeded by
    (seed, e, b): the crops do not depend on ``n`` nor on where a run was resumed (they differ from
    the single-process stream of ``batches``).  The batch order still comes from the run's ``rng``.
    The workers are spawned, not forked (a fork inherits OpenCV's and PyTorch's thread pools in a
    state the child cannot use: it hung); each gets its own copy of the cached crops and imports no
    torch (transforms.cut_batch_in_worker).  A worker that dies (out of memory, say) or cannot start
    is one LandmaskError, not a hang."""

    START_S = 300   # seconds for the workers to start and take their copy of the crops

    def __init__(self, n: int, caches, points, size, perm, aug: AugmentConfig | None, seed: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures import TimeoutError as FutureTimeout
        from concurrent.futures.process import BrokenProcessPool
        from landmask.transforms import start_batch_worker, worker_ready
        check_main_guard()
        self.pool = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=start_batch_worker,
                                        initargs=(caches, points, size, perm, aug, seed))
        try:   # a worker that cannot start can leave the pool waiting for ever: it answers in time, or the run stops
            for f in [self.pool.submit(worker_ready) for _ in range(n)]:
                f.result(timeout=self.START_S)
        except (BrokenProcessPool, FutureTimeout):
            self.kill()
            raise LandmaskError(f"--workers {n}: the processes cutting the training crops did not start (out of "
                                f"memory?); try fewer --workers, or none") from None

    def batches(self, idx, batch_size, rng, epoch: int, mean, std):
        from concurrent.futures.process import BrokenProcessPool
        from landmask.transforms import cut_batch_in_worker
        order = rng.permutation(idx)
        jobs = [(epoch, b, order[s:s + batch_size]) for b, s in enumerate(range(0, len(order), batch_size))]
        try:
            for im, p in self.pool.map(cut_batch_in_worker, jobs):
                yield to_tensor(im, mean, std), torch.from_numpy(p)
        except BrokenProcessPool:
            raise LandmaskError("--workers: a process cutting the training crops died or could not start "
                                "(out of memory? a script calling landmask.train.train needs Python's "
                                "if __name__ == '__main__': guard); try fewer --workers, or none") from None

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def kill(self):
        for p in list(getattr(self.pool, "_processes", {}).values()):
            p.terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)


def check_main_guard() -> None:
    """Refuse --workers from a script without Python's ``if __name__ == "__main__":`` guard: each
    spawned worker imports the script, which would start the training again in it (into the same
    run folder) and leave this process waiting for workers that never come."""
    import sys
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if not path or (spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__"))):
        return   # python -c, a notebook, python -m PKG (a package's __main__ is never run again): nothing re-runs
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    if "__name__" in text and "__main__" in text:
        return
    raise LandmaskError(f"--workers: {path} has no `if __name__ == \"__main__\":` guard around its training call; "
                        f"the worker processes import the script and would run it again. Add the guard, or train "
                        f"without --workers")


def masked_loss(pred, target, kind: str, size: int):
    """Loss over known points only (NaN targets are ignored); coordinates in units of the crop side."""
    valid = torch.isfinite(target)
    d = (pred - torch.nan_to_num(target)) / size
    d = d[valid]
    if d.numel() == 0:
        return pred.sum() * 0.0
    if kind == "mse":
        return (d ** 2).mean()
    if kind == "l1":
        return d.abs().mean()
    if kind == "wing":  # Feng et al. 2018, w and eps in units of the crop side
        w, eps = 0.04, 0.008
        a = d.abs()
        c = w - w * math.log(1 + w / eps)
        return torch.where(a < w, w * torch.log1p(a / eps), a - c).mean()
    raise ValueError(f"unknown loss {kind!r}")


def heatmap_js(prob, target, stride: int, sigma: float = 1.0):
    """Mean Jensen-Shannon divergence between each heatmap (B, K, H, W, probabilities) and a
    Gaussian of ``sigma`` cells at the true point (DSNT-style regularisation of integral
    regression: it keeps each heatmap one compact blob); points missing or off the map are ignored."""
    b, k, hh, ww = prob.shape
    c = (torch.nan_to_num(target) + 0.5) / stride - 0.5          # true points in heatmap cells
    xs = torch.arange(ww, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(hh, dtype=prob.dtype, device=prob.device)
    gx = torch.exp(-0.5 * ((xs - c[..., :1]) / sigma) ** 2)       # (B, K, W)
    gy = torch.exp(-0.5 * ((ys - c[..., 1:]) / sigma) ** 2)       # (B, K, H)
    q = gy[..., :, None] * gx[..., None, :]
    q = q / q.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    m = 0.5 * (prob + q)
    eps = 1e-12
    kl = lambda a: (a * (torch.log(a + eps) - torch.log(m + eps))).sum(dim=(-2, -1))  # noqa: E731
    js = 0.5 * (kl(prob) + kl(q))                                 # (B, K)
    valid = torch.isfinite(target).all(dim=-1) & (c[..., 0] > -0.5) & (c[..., 0] < ww - 0.5) \
        & (c[..., 1] > -0.5) & (c[..., 1] < hh - 0.5)
    return js[valid].mean() if valid.any() else prob.sum() * 0.0


class Teacher:
    """A trained model whose points on each training crop are a second target (knowledge
    distillation).  A teacher of another input size sees the crops resized to its own (pixel-centre
    convention); with ``flip_perm`` it averages with its points on the mirrored crop, as ``--flip``
    does at inference (``mirror_shift`` added to the mirrored x: see train.mirror_shift)."""

    def __init__(self, model, input_size: int, flip_perm=None, mirror_shift: float = 0.0):
        self.model, self.input_size = model, int(input_size)
        self.flip_perm, self.mirror_shift = flip_perm, float(mirror_shift)

    @torch.no_grad()
    def __call__(self, x):
        size, own = x.shape[-1], self.input_size
        if own != size:
            x = torch.nn.functional.interpolate(x, size=(own, own), mode="bilinear", align_corners=False)
        if self.flip_perm is None:
            pts = self.model(x.contiguous(memory_format=torch.channels_last))
        else:
            both = torch.cat([x, x.flip(-1)]).contiguous(memory_format=torch.channels_last)
            out = self.model(both).cpu().numpy()
            from landmask.geometry import flip_average
            pts = torch.from_numpy(flip_average(out[:len(x)], out[len(x):], own, self.flip_perm,
                                                self.mirror_shift)).to(x.device)
        return pts if own == size else (pts + 0.5) * (size / own) - 0.5


def train_one_epoch(model, optimizer, scheduler, loader, n_batches, loss_kind, size, epoch, reporter,
                    heat_reg: float = 0.0, teacher=None, teacher_weight: float = 0.5, device=None):
    """One pass over ``loader``, on ``device`` (default: where the batches are).  With a ``teacher``
    (a model in eval mode), the loss is (1 - teacher_weight) × the loss to the labels +
    teacher_weight × the loss to the teacher's points on the same crops (knowledge distillation)."""
    model.train()
    total, count, abs_err, n_err = 0.0, 0, 0.0, 0
    for step, (x, y) in enumerate(loader):
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if heat_reg > 0:
            pred, prob = model.points_and_heatmaps(x)
            loss = masked_loss(pred, y, loss_kind, size) + heat_reg * heatmap_js(prob, y, model.stride)
        else:
            pred = model(x)
            loss = masked_loss(pred, y, loss_kind, size)
        if teacher is not None:
            with torch.no_grad():
                t = teacher(x)
            loss = (1 - teacher_weight) * loss + teacher_weight * masked_loss(pred, t, loss_kind, size)
        if not torch.isfinite(loss):
            raise LandmaskError(f"training stopped: the loss became {loss.item()} at epoch {epoch}, "
                                f"step {step + 1}; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            v = torch.isfinite(y)
            abs_err += (pred.detach() - torch.nan_to_num(y))[v].abs().sum().item()
            n_err += int(v.sum())
        total += loss.item() * len(x)
        count += len(x)
        reporter.step(epoch, step + 1, n_batches, total / count)
    return {"loss": total / count, "mae_px": abs_err / max(n_err, 1),
            "sums": {"loss": total, "count": count, "abs_err": abs_err, "n_err": n_err}}   # to add up over ranks


@torch.inference_mode()
def predict_crops(model, crops: np.ndarray, mean, std, batch_size=256, device=None) -> np.ndarray:
    """(N, S, S) uint8 crops → (N, K, 2) points in crop pixels (the model run on ``device``)."""
    model.eval()
    out = [model(to_tensor(crops[s:s + batch_size], mean, std).to(device or "cpu")).cpu().numpy()
           for s in range(0, len(crops), batch_size)]
    return np.concatenate(out).astype(np.float64)


def evaluate(model, caches, points, norms, idx, size, loss_kind, mean, std, device=None) -> dict:
    """Validation figures on unaugmented centre crops: loss, MAE/RMSE in crop px and NME."""
    crops, pts = zip(*(center_crop(caches[i], points[i], size) for i in idx))
    crops, gt = np.stack(crops), np.stack(pts).astype(np.float64)
    pred = predict_crops(model, crops, mean, std, device=device)
    loss = masked_loss(torch.from_numpy(pred), torch.from_numpy(gt), loss_kind, size).item()
    d = pred - gt
    err = np.linalg.norm(d, axis=-1)
    import warnings
    with warnings.catch_warnings():   # no face with both eye corners known (Kaggle rows): NaN, said as null
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"loss": loss, "mae_px": float(np.nanmean(np.abs(d))),
                "rmse_px": float(np.sqrt(np.nanmean(d ** 2))),
                "nme_percent": float(np.nanmean(np.nanmean(err, axis=1) / norms[idx]) * 100)}


def load_teacher(cfg, mcfg, device=None):
    """The --teacher model (an engine.Teacher), checked to read the same crops as the run's model
    and to give the same points: scheme, crop scale and input normalisation must match.  The input
    size need not: the teacher sees the training crops resized to its own."""
    import torch
    from landmask.checkpoint import load_model_file
    from landmask.runtime import resolve_model_path
    path = resolve_model_path(cfg.teacher, prefer=".safetensors")   # a shipped name, a run folder or a file
    if path.suffix == ".onnx":
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
    perm = get_scheme(cfg.scheme).flip_permutation if cfg.teacher_flip else None
    model = model.to(memory_format=torch.channels_last)
    return Teacher(model if device is None else model.to(device), meta["model"]["input_size"], perm,
                   meta.get("mirror", {}).get("shift_px", 0.0))
