"""Self-describing model files: safetensors weights with a JSON header that carries the model
config, scheme, crop rule, normalisation and metrics, so nothing else is needed to use them.
Also the resume state of a training run (weights, optimiser, scheduler, random states), likewise in
safetensors: no pickle anywhere."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landmask.errors import LandmaskError
from landmask.imageio import write_bytes_atomic

FORMAT = "landmask-model-1"


def save_model(path, state_dict, meta: dict) -> None:
    """Write weights (name → torch tensor) plus ``meta`` (JSON-able) atomically."""
    from safetensors.torch import save
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = save(tensors, metadata={"landmask": json.dumps({"format": FORMAT, **meta})})
    write_bytes_atomic(path, blob)


def read_meta(path) -> dict:
    """The JSON header of a landmask .safetensors file, without loading the weights."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        meta = json.loads(header["__metadata__"]["landmask"])
    except FileNotFoundError:
        raise LandmaskError(f"{path}: no such model file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LandmaskError(f"{path}: not a landmask model file ({e})") from None
    return meta


def update_meta(path, changes: dict) -> None:
    """Rewrite a landmask .safetensors file with ``changes`` merged into its header (atomically; a
    symbolic link's target is rewritten, the link stays)."""
    import os
    from safetensors.numpy import load_file, save
    path = Path(os.path.realpath(path))
    meta = read_meta(path)
    meta.update(changes)
    tensors = load_file(str(path))
    write_bytes_atomic(path, save(tensors, metadata={"landmask": json.dumps(meta)}))


def load_model_file(path):
    """(torch model in eval mode, meta) from a landmask .safetensors file."""
    from safetensors.torch import load_file
    from landmask.model import model_kind
    meta = read_meta(path)
    model = model_kind(meta).build(meta["model"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta


# ---------------------------------------------------------------- training resume state

def save_resume(path, model, optimizer, scheduler, np_rng, torch_rng, epoch: int, history: list) -> None:
    import torch
    from safetensors.torch import save
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt/{pid}/{k}"] = t.detach().cpu().contiguous()
    tensors["rng/torch"] = torch_rng
    meta = {
        "epoch": epoch, "history": history,
        "param_groups": opt["param_groups"],
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "np_rng": _jsonable(np_rng.bit_generator.state),
    }
    write_bytes_atomic(path, save(tensors, metadata={"resume": json.dumps(meta)}))


def load_resume(path, model, optimizer, scheduler, np_rng):
    """Restore everything saved by save_resume; returns (next epoch, history, torch rng state).
    A damaged or foreign file is a LandmaskError naming it."""
    try:
        return _load_resume(path, model, optimizer, scheduler, np_rng)
    except LandmaskError:
        raise
    except Exception as e:   # safetensors, JSON, torch's state-dict checks: the file is not this run's state
        raise LandmaskError(f"{path}: corrupt or not this run's resume state ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else ''}); remove it to start the run "
                            f"over, or resume from a copy") from None


def _load_resume(path, model, optimizer, scheduler, np_rng):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["resume"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, pid, name = k.split("/", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    np_rng.bit_generator.state = meta["np_rng"]
    return meta["epoch"] + 1, meta["history"], tensors["rng/torch"]


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def check_init_file(path) -> None:
    """Refuse an --init file that can never start a landmark training run (a face detector, an
    ensemble), before the run reads its data or makes its folder; whether its architecture fits is
    checked when the weights are loaded (load_init_weights)."""
    meta = read_meta(path)
    if meta.get("kind", "landmarks") != "landmarks":
        raise LandmaskError(f"--init {path}: a face detector model; landmark training starts from a landmark "
                            f"model (train-detector --init takes a detector)")
    if meta.get("model", {}).get("arch") == "ensemble":
        raise LandmaskError(f"--init {path}: an ensemble of several networks (landmask ensemble); "
                            f"start from one of its members")


def load_init_weights(model, mcfg, path) -> None:
    """Start from another model's weights; its architecture must match this run's.  The input
    size may differ: lmnet is fully convolutional and its soft-argmax works on any heatmap size.
    An lmnet may also be deeper (more blocks at 1/8 or 1/16): the blocks the init model lacks start
    as identities (their last batch-norm scale is zero, so block(x) = relu(x) = x), and the model
    first computes exactly what the init model did.  It may also have the other head stride or
    head: the encoder and the 1/8 top-down block are kept, and the layers after them (the 1/4 path,
    the heatmap convolution, the simcc layers) start fresh or are dropped; a simcc head's layers,
    sized by the input, also start fresh when the input size changes."""
    from safetensors.torch import load_file
    from landmask.model import ModelConfig
    check_init_file(path)
    theirs = ModelConfig(**read_meta(path)["model"]).to_dict()   # fields newer than the file: defaults
    ours = mcfg.to_dict()
    lmnet = ours["arch"] == "lmnet"
    free = {"input_size"} if lmnet else set()
    grow = {k for k in ("depth8", "depth16") if lmnet and theirs.get(k) is not None and theirs[k] < ours[k]}
    rehead = lmnet and (theirs["head_stride"], theirs["head"]) != (ours["head_stride"], ours["head"])
    if rehead:
        free |= {"head_stride", "head"}
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v and k not in free | grow}
    if diff:
        raise LandmaskError(f"--init {path}: its model differs from this run's: "
                            + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items()))
    state = load_file(str(path))
    head = ("lat4.", "top8.", "fuse4.", "heat.", "simcc_")    # what differs between the heads
    if not rehead and ours.get("head") == "simcc" and theirs["input_size"] != ours["input_size"]:
        head = ("simcc_",)                       # its layers are sized by the input: they start fresh
        rehead = True
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
