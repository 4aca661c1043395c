"""ONNX export of a trained model, checked by running PyTorch and ONNX Runtime on the same crops."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landmask.errors import LandmaskError

OPSET = 17


def derive_scheme(model_path, scheme: str, out_path) -> Path:
    """Write a copy of a landmark model file whose output is converted to ``scheme`` (e.g. the 15
    Kaggle points from a 68-point model, by the scheme table), to ``out_path`` (.safetensors).
    The weights are unchanged; the model config gets ``reduce = "SRC>DST"``."""
    from safetensors.torch import load_file
    from landmask.checkpoint import read_meta, save_model
    from landmask.schemes import can_convert, get_scheme
    meta = read_meta(model_path)
    src = meta.get("scheme")
    if meta.get("kind") == "detector" or meta["model"].get("arch") != "lmnet":
        raise LandmaskError(f"--scheme: {model_path} is not an lmnet landmark model")
    if src == scheme:
        raise LandmaskError(f"--scheme {scheme}: {model_path} already has that scheme")
    if meta["model"].get("reduce") or not can_convert(src, scheme):
        raise LandmaskError(f"--scheme {scheme}: {model_path} ({src}) cannot be converted to it")
    meta = {**meta, "scheme": scheme,
            "model": {**meta["model"], "reduce": f"{src}>{scheme}", "num_points": len(get_scheme(scheme))},
            "derived": {"from": Path(model_path).name, "scheme": src,
                        "rule": f"the {src} points converted to {scheme} by the scheme table "
                                f"(landmask export --scheme {scheme})"}}
    out_path = Path(out_path)
    save_model(out_path, load_file(str(model_path)), meta)
    return out_path


def export_onnx(model_path, out_path, check_crops: np.ndarray | None = None) -> dict:
    """Write ``out_path`` (.onnx, opset OPSET, batch axis dynamic, landmask metadata embedded) and
    return {"opset", "max_abs_diff_px", "n_checked"} from a PyTorch vs ONNX Runtime comparison
    (points in crop pixels for landmark models; raw head outputs for the face detector)."""
    import onnx
    import torch
    from landmask.checkpoint import load_model_file
    from landmask.imageio import write_bytes_atomic
    from landmask.runtime import LandmarkModel

    model, meta = load_model_file(model_path)
    detector = meta.get("kind") == "detector"
    s = int(meta["model"]["input_size"])
    dummy = torch.zeros(1, 1, s, s)
    if detector:   # any image size: batch, height and width are dynamic
        names, axes = (["images"], ["heads"]), {"images": {0: "n", 2: "h", 3: "w"}, "heads": {0: "n", 2: "h8", 3: "w8"}}
    else:
        from landmask.model import WithConfidence
        model = WithConfidence(model).eval()
        names = (["crops"], ["points", "confidence"])
        axes = {"crops": {0: "n"}, "points": {0: "n"}, "confidence": {0: "n"}}
    import io
    import warnings
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), buf, input_names=names[0], output_names=names[1],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "landmask", json.dumps(meta)
    out_path = Path(out_path)
    write_bytes_atomic(out_path, proto.SerializeToString())

    rng = np.random.default_rng(0)
    if detector:   # compare the raw heads on random images of two sizes
        import onnxruntime as ort
        sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
        diffs = []
        for h, w in ((s, s), (224, 288)):
            x = rng.standard_normal((2, 1, h, w)).astype(np.float32)
            with torch.inference_mode():
                a = model(torch.from_numpy(x)).numpy()
            diffs.append(np.abs(a - sess.run(None, {"images": x})[0]).max())
        diff, n = float(max(diffs)), 4
    else:
        if check_crops is None:  # random-texture crops, deterministic
            check_crops = (rng.random((16, s, s)) * 255).astype(np.uint8)
        a, ca = LandmarkModel(model_path, backend="torch").predict_crops(check_crops, confidence=True)
        b, cb = LandmarkModel(out_path, backend="onnx").predict_crops(check_crops, confidence=True)
        diff, n = float(max(np.abs(a - b).max(), np.abs(ca - cb).max() * 100)), len(check_crops)
    if not diff < 1e-2:
        raise LandmaskError(f"{out_path}: ONNX and PyTorch disagree by {diff:.4g} px")
    return {"opset": OPSET, "max_abs_diff_px": diff, "n_checked": int(n)}
