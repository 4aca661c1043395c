"""Running a landmark model file (.safetensors) in PyTorch, on the training side: the same
LandmarkModel as ONNX Runtime's (crop rule, flip averaging, mapping back), with the network's
forward pass in torch.  Used by training (calibration, held-out scores), export checks and
``--backend torch``; the run-time side never imports this module.
"""
from __future__ import annotations

from pathlib import Path

from landmask.errors import LandmaskError
from landmask.runtime import LandmarkModel, resolve_model_path


def load_torch_model(model, threads: int | None = None, scheme: str = "ibug68") -> LandmarkModel:
    """A LandmarkModel whose network runs in PyTorch.  ``model``: as runtime.resolve_model_path
    (a shipped name, run folder or file), resolved to its .safetensors file."""
    path = Path(resolve_model_path(model, scheme, prefer=".safetensors"))
    if path.suffix == ".onnx":
        raise LandmaskError(f"{path}: the PyTorch backend needs the model's .safetensors file, and this ONNX "
                            f"model has none beside it (an 8-bit export runs on ONNX Runtime only)")
    try:
        import torch
    except ImportError:
        raise LandmaskError(f"{path}: a .safetensors model needs PyTorch "
                            f"(pip install 'landmask[train]'), or use its .onnx export") from None
    from landmask.checkpoint import load_model_file
    from landmask.model import WithConfidence
    if threads:
        torch.set_num_threads(threads)
    net, meta = load_model_file(path)
    if meta.get("kind", "landmarks") != "landmarks":
        raise LandmaskError(f"{path} is a face detector model, not a landmark model")
    wrapped = WithConfidence(net).eval()

    def run(x):
        with torch.inference_mode():
            return tuple(t.numpy() for t in wrapped(torch.from_numpy(x)))
    return LandmarkModel(path, meta, run, "torch")


def load_landmark_model(model=None, scheme: str = "ibug68", threads: int | None = None,
                        backend: str | None = None) -> LandmarkModel:
    """ONNX Runtime (landmask.runtime.load) unless ``backend`` is ``torch`` or the reference
    resolves to a .safetensors file only (a training run folder): then PyTorch."""
    from landmask.runtime import load
    if backend not in (None, "onnx", "torch"):
        raise LandmaskError(f"--backend {backend!r}: choose onnx or torch")
    if isinstance(model, LandmarkModel):
        return model
    if backend == "onnx":
        return load(model, scheme, threads)
    path = resolve_model_path(model, scheme, prefer=".safetensors" if backend == "torch" else ".onnx")
    if backend == "torch" or path.suffix == ".safetensors":
        return load_torch_model(path, threads, scheme)
    return load(path, scheme, threads)
