"""ONNX export of a trained model, checked by running PyTorch and ONNX Runtime on the same crops."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landmask.errors import LandmaskError, for_option

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
    arch = meta["model"].get("arch")
    if meta.get("kind") == "detector" or arch not in ("lmnet", "ensemble"):
        raise LandmaskError(f"--scheme: {model_path} is not an lmnet landmark model (or an ensemble of them)")
    if src == scheme:
        raise LandmaskError(f"--scheme {scheme}: {model_path} already has that scheme")
    if meta["model"].get("reduce") or not can_convert(src, scheme):
        raise LandmaskError(f"--scheme {scheme}: {model_path} ({src}) cannot be converted to it")
    reduced = {"reduce": f"{src}>{scheme}", "num_points": len(get_scheme(scheme))}
    model = {**meta["model"], **reduced}
    if arch == "ensemble":   # each member converts its own points (the table is linear: so does their mean)
        model["members"] = [{**m, **reduced} for m in model["members"]]
    meta = {**meta, "scheme": scheme, "model": model,
            "derived": {"from": Path(model_path).name, "scheme": src,
                        "rule": f"the {src} points converted to {scheme} by the scheme table "
                                f"(landmask export --scheme {scheme})"}}
    if "point_confidence" in meta:   # a derived point's confidence is the mean of its sources': so is its usual one
        from landmask.schemes import conversion_matrix
        typical = conversion_matrix(src, scheme) @ np.asarray(meta["point_confidence"]["typical"])
        meta["point_confidence"] = {**meta["point_confidence"], "typical": [round(float(v), 5) for v in typical],
                                    "derived": f"the {src} figures converted by the scheme table"}
    if "learned" in meta.get("face_check", {}):   # fitted on the source scheme's point confidences
        meta["face_check"] = {k: v for k, v in meta["face_check"].items() if k != "learned"}
    out_path = Path(out_path)
    save_model(out_path, load_file(str(model_path)), meta)
    return out_path


def make_ensemble(model_paths, out_path, half: bool = False) -> dict:
    """Write ``out_path`` (.safetensors): the landmark models at ``model_paths`` (files, run
    folders or shipped names; at least two, one scheme, crop rule and input normalisation) as one
    model whose points and confidences are their means (model.Ensemble).  Its face check's bar, mirror
    shift and typical point confidences start as the members' means; ``landmask calibrate`` measures
    them for the ensemble itself.  ``half``: store the convolution weights (nearly all of them) in
    16 bits, in this file and in its ONNX export: half the size, points within a hundredth of a pixel
    of the 32-bit ones.  Returns {"members", "input_size", "parameters"}."""
    import hashlib
    import os
    from safetensors.torch import load_file
    from landmask.checkpoint import read_meta, save_model
    from landmask.runtime import resolve_model_path
    paths = []
    for m in model_paths:
        try:
            paths.append(resolve_model_path(m, prefer=".safetensors").with_suffix(".safetensors"))
        except LandmaskError as e:   # ensemble takes its models as arguments, not --model
            raise for_option(e, "ensemble:", m) from None
    if len(paths) < 2:
        raise LandmaskError("ensemble: give at least two landmark models")
    out_path = Path(out_path)
    if out_path.suffix != ".safetensors":
        raise LandmaskError(f"--out {out_path}: give a file name ending in .safetensors")
    metas = []
    for given, p in zip(model_paths, paths):
        if not p.is_file():
            raise LandmaskError(f"ensemble: {given}: needs the model's .safetensors file ({p} is missing)")
        if os.path.realpath(p) == os.path.realpath(out_path):
            raise LandmaskError(f"--out {out_path}: is one of the members; it would be replaced")
        m = read_meta(p)
        if m.get("kind", "landmarks") != "landmarks":
            raise LandmaskError(f"ensemble: {p} is not a landmark model")
        missing = [k for k in ("model", "scheme", "crop") if k not in m]
        if missing:
            raise LandmaskError(f"ensemble: {p}: its landmask metadata lacks {', '.join(missing)}")
        if m["model"].get("arch") == "ensemble" or m["model"].get("reduce"):
            raise LandmaskError(f"ensemble: {p} is itself an ensemble or a converted model; give the networks it was made of")
        if m["model"].get("arch") != "lmnet":   # others (seed) have no confidences to average, nor a scheme table
            raise LandmaskError(f"ensemble: {p} is a {m['model'].get('arch')} model; an ensemble is made of lmnet networks")
        metas.append(m)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]   # copies of one file too
    if len({os.path.realpath(p) for p in paths}) < len(paths) or len(set(digests)) < len(digests):
        raise LandmaskError("ensemble: a model is given twice")
    first = metas[0]
    for p, m in zip(paths[1:], metas[1:]):
        theirs = (m["scheme"], float(m["crop"]["scale"]), float(m["model"]["mean"]), float(m["model"]["std"]))
        ours = (first["scheme"], float(first["crop"]["scale"]), float(first["model"]["mean"]), float(first["model"]["std"]))
        if theirs != ours:
            raise LandmaskError(f"ensemble: {p} reads other crops or gives other points than {paths[0]} "
                                f"(scheme, crop scale, mean, std: {theirs} vs {ours})")
    size = max(int(m["model"]["input_size"]) for m in metas)
    for p, m in zip(paths, metas):   # a member reads the ensemble's crop resized bilinearly: an area average only down to half
        if 2 * int(m["model"]["input_size"]) < size:
            raise LandmaskError(f"ensemble: {p} reads {m['model']['input_size']} px crops, under half the ensemble's "
                                f"{size} px (its largest member's); a crop shrunk more than 2 × would skip pixels")
    meta = {k: first[k] for k in ("scheme", "crop", "normalization") if k in first}
    meta["model"] = {"arch": "ensemble", "num_points": int(first["model"]["num_points"]), "input_size": size,
                     "mean": first["model"]["mean"], "std": first["model"]["std"], "reduce": "",
                     "members": [m["model"] for m in metas]}
    scale = [size / int(m["model"]["input_size"]) for m in metas]
    rule = "the members' mean (landmask ensemble); landmask calibrate measures it for the ensemble itself"
    if all("min_confidence" in m.get("face_check", {}) for m in metas):
        meta["face_check"] = {"min_confidence": round(float(np.mean([m["face_check"]["min_confidence"] for m in metas])), 4),
                              "rule": rule}
    if all("mirror" in m for m in metas):
        meta["mirror"] = {"shift_px": round(float(np.mean([m["mirror"]["shift_px"] * k for m, k in zip(metas, scale)])), 4),
                          "rule": rule}
    if all("point_confidence" in m for m in metas):
        typical = np.mean([m["point_confidence"]["typical"] for m in metas], axis=0)
        meta["point_confidence"] = {"typical": [round(float(v), 5) for v in typical], "rule": rule}
    data = []   # what the members trained on (their last stages' data), for the model's own record
    for m in metas:
        data += [d for d in m.get("training", {}).get("config", {}).get("data", []) if d not in data]
    meta["training"] = {"config": {"data": data}, "rule": "an ensemble of trained models (landmask ensemble); "
                                                          "each member's own training under ensemble.members"}
    meta["ensemble"] = {
        "rule": "points, face confidence and point confidences: the members' means; a member of a smaller "
                "input size reads the ensemble's crop resized to its own",
        "members": [{"file": p.name, "sha256": d, "metrics": m.get("metrics"), "training": m.get("training")}
                    for p, m, d in zip(paths, metas, digests)]}
    state = {}
    for i, p in enumerate(paths):
        state.update({f"members.{i}.model.{k}": v for k, v in load_file(str(p)).items()})
    if half:
        import torch
        state = {k: v.to(torch.float16) if v.ndim == 4 and v.is_floating_point() else v for k, v in state.items()}
        meta["storage"] = {"conv_weights": "float16"}
    from landmask.model import build_landmark_net, count_parameters
    net = build_landmark_net(meta["model"])
    net.load_state_dict(state)   # the members' weights fit the networks their configs build
    save_model(out_path, state, meta)
    return {"members": [str(p) for p in paths], "input_size": size, "parameters": count_parameters(net)}


HALF_MAX_DIFF_PX = 0.25


def half_conv_weights(proto) -> None:
    """Store the convolution weights and biases of an ONNX model (``proto``, changed in place) in 16
    bits, each cast back to 32 bits by a Cast node that ONNX Runtime folds away when it loads the
    model: the file's size halves, the run time does not change."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    graph = proto.graph
    uses: dict = {}
    for node in graph.node:
        for j, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, j))
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or not uses.get(init.name) \
                or any(op != "Conv" or j not in (1, 2) for op, j in uses[init.name]):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}.f16"))
        casts.append(helper.make_node("Cast", [f"{name}.f16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    short_names(proto)
    onnx.checker.check_model(proto)


def short_names(proto) -> None:
    """Give every tensor inside an ONNX graph (not its inputs and outputs) a short name, and its nodes
    none: the exporter's names spell each module's path, tens of kilobytes in an ensemble."""
    graph = proto.graph
    keep = {v.name for v in list(graph.input) + list(graph.output)}
    new: dict = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return new.setdefault(name, f"t{len(new)}")
    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for info in graph.value_info:
        info.name = short(info.name)


def onnx_bytes(module, inputs: tuple, input_names, output_names, dynamic_axes: dict) -> bytes:
    """``module`` traced on ``inputs`` as an ONNX model (opset OPSET, TorchScript exporter), its
    tracer warnings silenced."""
    import io
    import warnings
    import torch
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buf, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def export_onnx(model_path, out_path, check_crops: np.ndarray | None = None, min_score: float | None = None,
                min_score_plain: float | None = None) -> dict:
    """Write ``out_path`` (.onnx, opset OPSET, batch axis dynamic, landmask metadata embedded) and
    return {"opset", "max_abs_diff_px", "n_checked"} from a PyTorch vs ONNX Runtime comparison
    (points in crop pixels for landmark models; raw head outputs for the face detector).  Nothing
    is written when the check fails."""
    import os
    import onnx
    import torch
    from landmask.checkpoint import load_model_file
    from landmask.imageio import write_bytes_atomic
    from landmask.model import model_kind
    net, meta = load_model_file(model_path)
    kind = model_kind(meta)
    detector = kind.name == "detector"
    if min_score is not None:   # checked by export_model before anything is written
        meta["min_score"] = float(min_score)   # the detector's default --min-score at run time
    if min_score_plain is not None:   # ... with a landmark model judged by its plain bar (no learned check)
        meta["min_score_plain"] = float(min_score_plain)
    s = int(meta["model"]["input_size"])
    dummy = torch.zeros(1, 1, s, s)
    model, names = kind.for_export(net), kind.onnx_names
    proto = onnx.load_from_string(onnx_bytes(model, (dummy,), names[0], names[1], kind.onnx_axes))
    if meta.get("storage", {}).get("conv_weights") == "float16":
        half_conv_weights(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "landmask", json.dumps(meta)
    out_path = Path(out_path)
    # checked before it takes its name: a file that fails the check is not left behind
    trial = out_path.with_name(f".{out_path.name}.checking.onnx")
    write_bytes_atomic(trial, proto.SerializeToString())
    try:
        r = _check_export(model, model_path, trial, meta, s, detector, check_crops, out_path)
    except BaseException:
        trial.unlink(missing_ok=True)
        raise
    try:
        os.replace(trial, out_path)
    except OSError as e:
        trial.unlink(missing_ok=True)
        raise LandmaskError(f"{out_path}: cannot write ({e.strerror or e})") from None
    return r


def _check_export(model, model_path, trial, meta, s, detector, check_crops, out_path) -> dict:
    """export_onnx's comparison of PyTorch (``model``, ``model_path``) and the written ONNX file ``trial``."""
    import torch
    from landmask.runtime import load_onnx_model
    from landmask.torch_backend import load_torch_model
    out_path = Path(out_path)
    rng = np.random.default_rng(0)
    if detector:   # compare the raw heads on random images of two sizes
        import onnxruntime as ort
        sess = ort.InferenceSession(str(trial), providers=["CPUExecutionProvider"])
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
        a, ca = load_torch_model(model_path).predict_crops(check_crops, confidence=True)
        b, cb = load_onnx_model(trial).predict_crops(check_crops, confidence=True)
        diff, n = float(max(np.abs(a - b).max(), np.abs(ca - cb).max() * 100)), len(check_crops)
    # 16-bit convolution weights (folded with their batch norms in the export, so rounded anew) move
    # points by up to 0.08 px on random-texture crops (ibug68 + ibug68-tiny; about 0.01 on faces)
    bound = HALF_MAX_DIFF_PX if meta.get("storage", {}).get("conv_weights") == "float16" else 1e-2
    if not diff < bound:
        raise LandmaskError(f"{out_path}: ONNX and PyTorch disagree by {diff:.4g} px")
    return {"opset": OPSET, "max_abs_diff_px": diff, "n_checked": int(n)}


# Quantisation: 8-bit weights (per output channel) and activations for the convolutions, additions,
# ReLUs and upsampling (no float islands, so no quantise/dequantise pairs between layers), the heatmap
# convolution included; the stem and the first depthwise convolution stay in float (ONNX Runtime's
# 8-bit kernels are slower on those large maps), as do the softmax and soft-argmax (quantising those
# loses the sub-pixel positions: NME 3.4 -> 7 %).
INT8_CALIB_PERCENTILE = 99.99
INT8_MAX_MEAN_DIFF_PX = 0.25
INT8_OPS = ["Conv", "Add", "Resize", "Relu"]   # quantised operator types
# the first N convolutions stay in float, by lmnet block type: the stem and the first depthwise one
# for "sep"; the stem alone for "dense" (8-bit full convolutions are fast even on 1/4-size maps)
INT8_FLOAT_CONVS = {"sep": 2, "dense": 1}


def _landmark_model_only(model_path) -> None:
    from landmask.checkpoint import read_meta
    meta = read_meta(model_path)
    if meta.get("kind") == "detector":
        raise LandmaskError(f"--int8: {model_path} is a face detector; only landmark models are quantised")
    if meta["model"].get("arch") == "ensemble":
        raise LandmaskError(f"--int8: {model_path} is an ensemble; only single networks are quantised")


def face_crops(model_path, data, n: int) -> np.ndarray:
    """Up to ``n`` crops (uint8, the model's crop rule) of the annotated faces of ``data``, spread
    evenly over the data set, for calibrating and checking a quantised model."""
    from landmask.datasets import face_box, load_dataset
    from landmask.torch_backend import load_torch_model
    _landmark_model_only(model_path)
    lm = load_torch_model(model_path)
    faces = load_dataset(data)
    pick = np.unique(np.linspace(0, len(faces) - 1, min(n, len(faces))).astype(int))
    return np.concatenate([lm.crops(faces[i].image("grey"), [face_box(faces[i])])[0] for i in pick])


def export_onnx_int8(model_path, out_path, crops: np.ndarray, ops=tuple(INT8_OPS),
                     float_convs: int | None = None, source_name: str | None = None) -> dict:
    """Write an 8-bit ONNX model (QDQ format) calibrated on half of ``crops`` (real face crops of the
    model's size: ``face_crops``) and checked against PyTorch on the other half; returns
    {"opset", "max_abs_diff_px", "mean_abs_diff_px", "n_checked", "n_calibration"}.  ``ops``: the
    operator types quantised; ``float_convs``: how many convolutions, from the input, stay float
    (default: INT8_FLOAT_CONVS for the model's block type); ``source_name``: the model file named as its
    source in the metadata (default: ``model_path``'s name).  Nothing is written when the check fails."""
    import tempfile
    from landmask.imageio import write_bytes_atomic
    from landmask.runtime import load_onnx_model
    from landmask.torch_backend import load_torch_model

    _landmark_model_only(model_path)
    if len(crops) < 8:
        raise LandmaskError(f"--int8: {len(crops)} faces are too few (at least 8: half calibrate the 8-bit model, "
                            f"half check it; --int8-faces)")
    calib, check = crops[0::2], crops[1::2]
    src = load_torch_model(model_path)
    if float_convs is None:
        float_convs = INT8_FLOAT_CONVS[src.meta["model"].get("block", "sep")]
    proto = _quantized(model_path, src.model_input(calib), ops, float_convs)
    meta = {**src.meta, "quantized": {
        "format": "int8 QDQ, per-channel weights, uint8 activations",
        "float_layers": f"the first {float_convs} convolutions, softmax and soft-argmax",
        "quantized_ops": list(ops),
        "calibration": f"{len(calib)} face crops, percentile {INT8_CALIB_PERCENTILE}",
        "from": source_name or Path(model_path).name}}
    # a learned face check stays: fitted on the float network's confidences, it finds the same faces
    # with the 8-bit network's (ibug68-int8: the same detection report, docs/benchmarks.md, sixteenth session)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "landmask", json.dumps(meta)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="landmask-int8-") as tmp:   # checked before it is written
        trial = Path(tmp) / "int8.onnx"
        trial.write_bytes(proto.SerializeToString())
        d = np.abs(src.predict_crops(check) - load_onnx_model(trial).predict_crops(check))
    r = {"opset": OPSET, "max_abs_diff_px": float(d.max()), "mean_abs_diff_px": float(d.mean()),
         "n_checked": int(len(check)), "n_calibration": int(len(calib))}
    if not r["mean_abs_diff_px"] < INT8_MAX_MEAN_DIFF_PX:
        raise LandmaskError(f"{out_path}: the 8-bit model would be {r['mean_abs_diff_px']:.3g} px from PyTorch on "
                            f"average (more than {INT8_MAX_MEAN_DIFF_PX}); not written")
    write_bytes_atomic(out_path, proto.SerializeToString())
    return r


def _quantized(model_path, calib_inputs: np.ndarray, ops, float_convs: int):
    """The float export of ``model_path`` quantised by ONNX Runtime (static, QDQ, per-channel weights)
    with activation ranges from ``calib_inputs`` (N, 1, S, S): an onnx ModelProto."""
    import os
    import tempfile
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"crops": calib_inputs[i:i + 1]} for i in range(len(calib_inputs))])

        def get_next(self):
            return next(self.batches, None)

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="landmask-int8-") as tmp:
        fp32, pre, q = (os.path.join(tmp, f) for f in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        export_onnx(model_path, fp32)
        os.chdir(tmp)   # the quantiser leaves scratch files in the working directory
        try:
            quant_pre_process(fp32, pre, skip_symbolic_shape=True)
            nodes = list(onnx.load(pre).graph.node)        # in topological order
            convs = [n.name for n in nodes if n.op_type == "Conv"]
            # nothing from the softmax on: a quantised consumer of the probabilities (the confidence
            # squares them) would quantise what the soft-argmax reads too
            soft = next((i for i, n in enumerate(nodes) if n.op_type == "Softmax"), len(nodes))
            after = [n.name for n in nodes[soft:]]
            quantize_static(pre, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(ops), nodes_to_exclude=convs[:float_convs] + after,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"CalibPercentile": INT8_CALIB_PERCENTILE})
        finally:
            os.chdir(cwd)
        return onnx.load(q)


def export_model(model, onnx_path, scheme: str | None = None, int8=None, int8_faces: int = 300,
                 min_score: float | None = None, min_score_plain: float | None = None) -> dict:
    """``landmask export`` as one call: the model file behind ``model`` (a run folder, a shipped
    name or a file; landmarks or face detector) → ``onnx_path``, checked against PyTorch.
    ``scheme``: first derive a model with another scheme's points (written beside the ONNX file as
    .safetensors); ``int8``: a data set whose faces calibrate an 8-bit model instead.  Returns the
    check's figures, with ``derived`` (the derived .safetensors) when ``scheme`` is given.
    ``min_score``: a face detector's default centre-score threshold, stored in the file;
    ``min_score_plain``: its default with a landmark model that has no learned face check."""
    import os
    from landmask.runtime import resolve_model_path
    if Path(str(model), "detector.safetensors").is_file():   # a train-detector run folder
        src = Path(str(model), "detector.safetensors")
    else:
        src = resolve_model_path(model, prefer=".safetensors").with_suffix(".safetensors")
    if not src.exists():
        raise LandmaskError(f"--model {model}: export needs the .safetensors model file ({src} is missing)")
    if Path(onnx_path).suffix.lower() != ".onnx":
        raise LandmaskError(f"--onnx {onnx_path}: give a file name ending in .onnx")
    # an .onnx file named as --model (an 8-bit export, say) is never replaced by this export; a run
    # folder's or a shipped name's ONNX is the export of its .safetensors, written again on purpose
    if Path(str(model)).is_file() and os.path.realpath(str(model)) == os.path.realpath(onnx_path):
        raise LandmaskError(f"--onnx {onnx_path}: is the --model file given; it would be replaced (an 8-bit "
                            f"export by a float one); choose another name")
    scores = [(o, v) for o, v in (("--min-score", min_score), ("--min-score-plain", min_score_plain)) if v is not None]
    if scores:   # checked before anything is written
        from landmask.checkpoint import read_meta
        detector = read_meta(src).get("kind") == "detector"
    for option, value in scores:
        if int8 or scheme or not detector:
            raise LandmaskError(f"{option} {value}: only a face detector's export takes a default minimum "
                                "score (not a landmark model's, --int8 or --scheme)")
        if not 0 < value < 1:
            raise LandmaskError(f"{option} {value}: a face detector's scores are between 0 and 1")
    derived_path = Path(onnx_path).with_suffix(".safetensors")
    for out in ([onnx_path, derived_path] if scheme else [onnx_path]):
        if os.path.realpath(out) == os.path.realpath(src):
            raise LandmaskError(f"--onnx {onnx_path}: would write {out} over the model being exported; "
                                f"choose another name")
        if Path(out).is_dir():
            raise LandmaskError(f"--onnx {onnx_path}: {out} is a folder; give a file name")
    if scheme and derived_path.exists() and not _earlier_derived(derived_path):
        raise LandmaskError(f"--onnx {onnx_path}: --scheme also writes {derived_path}, which exists and is not an "
                            f"earlier --scheme export (a run's model or resume state, say); choose another name")
    if int8:
        _landmark_model_only(src)
    if not scheme:
        r = (export_onnx_int8(src, onnx_path, face_crops(src, int8, int8_faces)) if int8
             else export_onnx(src, onnx_path, min_score=min_score, min_score_plain=min_score_plain))
        return {**r, "int8": bool(int8), "derived": None}
    # the converted model is written under a temporary name and takes its own only when the export
    # passed: a failed export (--int8 data missing, a failed check) leaves no file and replaces none
    trial = derived_path.with_name(f".{derived_path.name}.deriving.safetensors")
    try:
        derive_scheme(src, scheme, trial)
        r = (export_onnx_int8(trial, onnx_path, face_crops(trial, int8, int8_faces), source_name=derived_path.name)
             if int8 else export_onnx(trial, onnx_path))
        os.replace(trial, derived_path)
    except OSError as e:
        raise LandmaskError(f"{derived_path}: cannot write ({e.strerror or e})") from None
    finally:
        trial.unlink(missing_ok=True)
    return {**r, "int8": bool(int8), "derived": str(derived_path)}


def _earlier_derived(path) -> bool:
    """Whether ``path`` is a file an earlier ``export --scheme`` wrote (which a new one may replace)."""
    from landmask.checkpoint import read_meta
    try:
        meta = read_meta(path)
    except LandmaskError:
        return False
    return Path(path).is_file() and "derived" in meta and meta.get("kind", "landmarks") == "landmarks"

