"""Opening a landmask ONNX model: one ONNX Runtime session and its landmask metadata, checked, for
the landmark runtime and the face detector alike.

Every landmask ONNX file carries a JSON string under the metadata key ``landmask`` (what the
checkpoint's .safetensors header holds: model config, scheme or stride, crop rule, metrics) and a
``kind``: ``detector`` for the face detector, absent (``landmarks``) for landmark models.
"""
from __future__ import annotations

import json
from pathlib import Path

from landmask.errors import LandmaskError

KINDS = {"landmarks": "a landmark model", "detector": "a face detector model"}
# what each kind's code reads from the metadata; checked here so a wrong file fails by name
REQUIRED = {"landmarks": ("model", "scheme", "crop"), "detector": ("model", "stride")}


def model_kind(meta: dict) -> str:
    """``detector`` or ``landmarks`` (landmark models' metadata has no ``kind``)."""
    return meta.get("kind", "landmarks")


def load_onnx(path, threads: int | None = None, kind: str | None = None):
    """(ONNX Runtime session, landmask metadata dict) for the model file at ``path``.

    ``threads``: intra-op threads (None: ONNX Runtime's default).  ``kind``: when given
    (``landmarks`` or ``detector``), a file of another kind is refused.  Every failure — missing
    file, not ONNX, no or malformed landmask metadata, wrong kind — is a LandmaskError naming the
    file."""
    path = Path(path)
    if not path.is_file():
        raise LandmaskError(f"{path}: model file not found")
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise LandmaskError(f"{path}: cannot load the ONNX model ({e})") from None
    return sess, read_meta(path, sess.get_modelmeta().custom_metadata_map, kind)


def read_meta(path, props: dict, kind: str | None = None) -> dict:
    """The landmask metadata in an ONNX file's custom metadata map ``props``, checked."""
    if "landmask" not in props:
        raise LandmaskError(f"{path}: an ONNX file without landmask metadata (not exported by landmask export)")
    try:
        meta = json.loads(props["landmask"])
    except ValueError as e:
        raise LandmaskError(f"{path}: malformed landmask metadata ({e})") from None
    if not isinstance(meta, dict):
        raise LandmaskError(f"{path}: malformed landmask metadata (not a JSON object)")
    found = model_kind(meta)
    if found not in KINDS:
        raise LandmaskError(f"{path}: unknown model kind {found!r} in its metadata")
    if kind is not None and found != kind:
        raise LandmaskError(f"{path} is {KINDS[found]}, not {KINDS[kind]}")
    missing = [k for k in REQUIRED[found] if k not in meta]
    if missing:
        raise LandmaskError(f"{path}: its landmask metadata lacks {', '.join(missing)}")
    return meta
