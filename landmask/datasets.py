"""Readers for the landmark data sets.  Each yields ``Sample``s: an image (a file, or pixels held in
memory for the CSV formats) plus points (K, 2) in one scheme, NaN where a point is missing.

Formats: 300-W folders (NAME.jpg|png + NAME.pts), the YouTube-Faces CSV (file name + 136 numbers),
Kaggle ``training.csv``/``test.csv``, dlib imglab XML, MUCT ``muct76-opencv.csv`` and menpo LJSON.
``load_dataset(path)`` recognises the format by itself.
"""
from __future__ import annotations

import csv
import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.errors import LandmaskError
from landmask.imageio import read_image
from landmask.report import Reporter
from landmask.schemes import KAGGLE15, can_convert, get_scheme

csv.field_size_limit(sys.maxsize)  # a Kaggle Image cell is ~35 kB


@dataclass
class Sample:
    """One annotated face.  ``points`` (K, 2) float64 in image pixels; NaN = missing."""

    source: str                     # file (and row) it came from, for messages
    points: np.ndarray
    scheme: str
    path: Path | None = None        # image file, or None when ``pixels`` holds the image
    pixels: np.ndarray | None = None
    box: np.ndarray | None = None   # the data set's own face box, if it has one
    extra: dict = field(default_factory=dict)
    root: Path | None = None        # the data set's own folder (convert copies only images inside it)

    def image(self, mode: str = "grey") -> np.ndarray:
        if self.pixels is not None:
            if mode == "rgb" and self.pixels.ndim == 2:
                return np.repeat(self.pixels[..., None], 3, axis=2)
            return self.pixels
        return read_image(self.path, mode)


# ---------------------------------------------------------------- 300-W .pts folders

def pts_text(points: np.ndarray) -> str:
    """A 300-W .pts file's text for (K, 2) points (header included; missing points as ``nan nan``)."""
    lines = ["version: 1", f"n_points: {len(points)}", "{"]
    lines += [f"{x:.3f} {y:.3f}" if np.isfinite(x) and np.isfinite(y) else "nan nan" for x, y in points]
    return "\n".join(lines + ["}"]) + "\n"


def read_pts(path) -> np.ndarray:
    """Points of a 300-W .pts file, with or without the ``version/n_points/{ }`` header."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LandmaskError(f"{path}: cannot read ({e})") from None
    n_expected, pts = None, []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line in "{}" or line.startswith("version"):
            continue
        if line.startswith("n_points"):
            try:
                n_expected = int(line.split(":")[1])
            except (IndexError, ValueError):
                raise LandmaskError(f"{path}, line {lineno}: bad n_points line {raw!r}") from None
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            pts.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise LandmaskError(f"{path}, line {lineno}: expected two numbers 'x y', got {raw!r}") from None
    if n_expected is not None and n_expected != len(pts):
        raise LandmaskError(f"{path}: header says {n_expected} points but the file has {len(pts)}")
    if len(pts) not in (68, 76, 15):
        raise LandmaskError(f"{path}: {len(pts)} points; expected 68 (iBUG)")
    return check_points(np.array(pts, dtype=np.float64), str(path))


# Coordinates beyond this many pixels are no photo's (1e300 would overflow every metric).
MAX_COORD = 1e6


def _scheme_for(n: int, where="") -> str:
    schemes = {68: "ibug68", 15: "kaggle15", 76: "muct76"}
    if n not in schemes:
        raise LandmaskError(f"{where}: {n} points; expected 68 (iBUG), 76 (MUCT) or 15 (Kaggle)")
    return schemes[n]


def check_points(p: np.ndarray, where: str) -> np.ndarray:
    """(K, 2) float64 points, NaN = missing; infinite or absurd coordinates are a LandmaskError."""
    bad = ~np.isnan(p) & ~(np.abs(p) <= MAX_COORD)
    if bad.any():
        k = int(np.argwhere(bad)[0][0])
        raise LandmaskError(f"{where}: point {k} has coordinate(s) {p[k].tolist()} "
                            f"(not a pixel position: beyond ±{MAX_COORD:g})")
    return p


def image_beside(annotation: Path) -> Path:
    """The image file next to an annotation file with the same stem."""
    for suffix in (".jpg", ".png", ".jpeg", ".ppm", ".bmp", ".JPG", ".PNG"):
        if annotation.with_suffix(suffix).exists():
            return annotation.with_suffix(suffix)
    raise LandmaskError(f"{annotation}: no image beside it (looked for .jpg/.png/.jpeg/.ppm/.bmp)")


def read_pts_folder(folder) -> list[Sample]:
    samples = []
    for pts in sorted(Path(folder).rglob("*.pts")):
        p = read_pts(pts)
        samples.append(Sample(str(pts), p, _scheme_for(len(p), pts), path=image_beside(pts)))
    return samples


# ---------------------------------------------------------------- YouTube-Faces CSV

def read_youtube_csv(csv_path, image_dir=None) -> list[Sample]:
    """``name,x0,y0,...,x67,y67`` rows (first header cell empty); images in ``image_dir``
    (default: the folder named like the CSV's prefix, ``training_frames_keypoints.csv`` → ``training``)."""
    csv_path = Path(csv_path)
    if image_dir is None:
        image_dir = csv_path.parent / csv_path.name.split("_frames_keypoints")[0]
    image_dir = Path(image_dir)
    samples = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or len(header) != 137:
            raise LandmaskError(f"{csv_path}, line 1: expected a header of 137 columns "
                                f"(file name + 136 coordinates), got {0 if header is None else len(header)}")
        for lineno, row in enumerate(rows, 2):
            if not row:
                continue
            if len(row) != 137:
                raise LandmaskError(f"{csv_path}, line {lineno}: {len(row)} columns, expected 137")
            try:
                p = np.array([float(v) if v.strip() else np.nan for v in row[1:]]).reshape(68, 2)
            except ValueError as e:
                raise LandmaskError(f"{csv_path}, line {lineno}: not a number ({e})") from None
            check_points(p, f"{csv_path}, line {lineno}")   # an empty cell is a missing point (NaN)
            samples.append(Sample(f"{csv_path}, line {lineno}", p, "ibug68", path=image_dir / row[0]))
    return samples


# ---------------------------------------------------------------- Kaggle CSVs

def _parse_pixels(cell: str, where: str) -> np.ndarray:
    try:
        px = np.array(cell.split(), dtype=np.float64)
    except ValueError:
        raise LandmaskError(f"{where}: Image column has a value that is not a number") from None
    if len(px) != 96 * 96:
        raise LandmaskError(f"{where}: Image column has {len(px)} values; a Kaggle image has "
                            f"96×96 = 9216")
    if not np.isfinite(px).all():
        raise LandmaskError(f"{where}: Image column has a value that is not a number (nan or inf)")
    if px.min() < 0 or px.max() > 255:
        raise LandmaskError(f"{where}: Image values must be 0..255")
    return px.reshape(96, 96).round().astype(np.uint8)


def read_kaggle_training(csv_path) -> list[Sample]:
    """Kaggle ``training.csv``: 30 coordinate columns (empty = missing, kept as NaN) + ``Image``."""
    csv_path = Path(csv_path)
    want = [f"{n}_{a}" for n in KAGGLE15.points for a in "xy"]
    samples = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        missing = [c for c in want + ["Image"] if c not in (rows.fieldnames or [])]
        if missing:
            raise LandmaskError(f"{csv_path}, line 1: missing column(s) {', '.join(missing[:4])}"
                                + (" ..." if len(missing) > 4 else ""))
        for lineno, row in enumerate(rows, 2):
            where = f"{csv_path}, line {lineno}"
            if None in row or any(v is None for v in row.values()):
                raise LandmaskError(f"{where}: wrong number of columns")
            try:
                p = np.array([float(row[c]) if row[c].strip() else np.nan for c in want]).reshape(15, 2)
            except ValueError as e:
                raise LandmaskError(f"{where}: coordinate is not a number ({e})") from None
            check_points(p, where)
            px = _parse_pixels(row["Image"], where)
            samples.append(Sample(where, p, "kaggle15", pixels=px, box=kaggle_face_box(px.shape[0]),
                                  extra={"norm": 51.0 * px.shape[0] / 96}))  # Kaggle scale
    return samples


def unique_id(row: dict, column: str, seen: dict, lineno: int, where: str) -> int:
    """A Kaggle CSV row's integer id in ``column``, not seen on an earlier line (``seen``: id →
    line, updated); an error naming the line otherwise."""
    try:
        value = int(row[column])
    except (TypeError, ValueError):
        raise LandmaskError(f"{where}: {column} {row.get(column)!r} is not an integer") from None
    if value in seen:
        raise LandmaskError(f"{where}: {column} {value} again (first on line {seen[value]})")
    seen[value] = lineno
    return value


def read_kaggle_test(csv_path) -> list[tuple[int, np.ndarray]]:
    """Kaggle ``test.csv`` (``ImageId,Image``) → [(image id, 96×96 uint8)]."""
    csv_path = Path(csv_path)
    out, seen = [], {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        if not {"ImageId", "Image"} <= set(rows.fieldnames or []):
            raise LandmaskError(f"{csv_path}, line 1: expected columns ImageId,Image")
        for lineno, row in enumerate(rows, 2):
            where = f"{csv_path}, line {lineno}"
            image_id = unique_id(row, "ImageId", seen, lineno, where)
            out.append((image_id, _parse_pixels(row["Image"] or "", where)))
    if not out:
        raise LandmaskError(f"{csv_path}: no images (only a header)")
    return out


# Where the face box lies in a Kaggle-scale crop (see landmask.convert.kaggle_affine): the mean
# tight box of the 68 points, as a fraction of the crop side, measured over helen-68/trainset after
# the Kaggle-scale conversion (scripts/kaggle_box.py).  Kaggle images carry no box of their own.
KAGGLE_BOX_FRACTION = (0.067, 0.222, 0.942, 1.072)


def kaggle_face_box(side: int) -> np.ndarray:
    return np.array(KAGGLE_BOX_FRACTION, dtype=np.float64) * side


# ---------------------------------------------------------------- dlib imglab XML

def read_dlib_xml(xml_path) -> list[Sample]:
    """dlib imglab XML: ``<image file><box top left width height><part name x y/>``.  One Sample
    per box with parts (the box is kept as the data set's face box)."""
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise LandmaskError(f"{xml_path}, line {e.position[0]}: malformed XML ({e.msg})") from None
    samples, highest = [], -1
    for image in root.iter("image"):
        file = image.get("file")
        if not file:
            raise LandmaskError(f"{xml_path}: an <image> element has no file attribute")
        for k, box in enumerate(image.iter("box")):
            parts = box.findall("part")
            if not parts:
                continue
            where = f"{xml_path}, image {file}, box {k}"
            try:
                t, l, w, h = (float(box.get(a)) for a in ("top", "left", "width", "height"))
                idx = np.array([int(p.get("name")) for p in parts])
                xy = np.array([(float(p.get("x")), float(p.get("y"))) for p in parts])
            except (TypeError, ValueError):
                raise LandmaskError(f"{where}: box or part has a missing or non-numeric attribute") from None
            if idx.min() < 0:
                raise LandmaskError(f"{where}: negative part name")
            check_points(xy, where)
            check_points(np.array([[l, t], [l + w, t + h]]), f"{where} (box)")
            n = 68 if idx.max() < 68 else idx.max() + 1
            if n not in (68, 76):
                raise LandmaskError(f"{where}: part names go up to {idx.max()}; expected 0..67")
            p = np.full((n, 2), np.nan)
            p[idx] = xy
            highest = max(highest, int(idx.max()))
            samples.append(Sample(where, p, _scheme_for(n), path=xml_path.parent / file,
                                  box=np.array([l, t, l + w, t + h]) if np.isfinite([l, t, w, h]).all() else None))
    if samples and highest < 5:   # parts 0-4 in every box: dlib's 5-point scheme, not the first jaw points
        raise LandmaskError(f"{xml_path}: part names go up to {highest} only: a 5-point file (dlib's "
                            f"shape_predictor_5 scheme), which landmask does not read; it reads 68 (or 76) points")
    return samples


# ---------------------------------------------------------------- MUCT

def read_muct_csv(csv_path, image_dir=None) -> list[Sample]:
    """MUCT ``muct76-opencv.csv``: ``name,tag,x00,y00,...,x75,y75``; (0, 0) marks a missing point.
    Images are ``image_dir/NAME.jpg`` (default: a ``jpg`` folder beside the CSV, else the CSV's folder)."""
    csv_path = Path(csv_path)
    if image_dir is None:
        image_dir = csv_path.parent / "jpg"
        if not image_dir.is_dir():
            image_dir = csv_path.parent
    samples = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or len(header) != 154 or header[0] != "name":
            raise LandmaskError(f"{csv_path}, line 1: expected the MUCT header name,tag,x00,y00,...,x75,y75")
        for lineno, row in enumerate(rows, 2):
            if not row:
                continue
            if len(row) != 154:
                raise LandmaskError(f"{csv_path}, line {lineno}: {len(row)} columns, expected 154")
            try:
                p = np.array([float(v) for v in row[2:]]).reshape(76, 2)
            except ValueError as e:
                raise LandmaskError(f"{csv_path}, line {lineno}: not a number ({e})") from None
            p[(p == 0).all(axis=1)] = np.nan
            check_points(p, f"{csv_path}, line {lineno}")
            samples.append(Sample(f"{csv_path}, line {lineno}", p, "muct76",
                                  path=Path(image_dir) / f"{row[0]}.jpg"))
    return samples


# ---------------------------------------------------------------- menpo LJSON

def read_ljson(path) -> list[Sample]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if "groups" in data:  # LJSON v3: {"groups": {NAME: {"landmarks": {"points": ...}}}}
            data = next(iter(data["groups"].values()))
        pts = np.array([p if p is not None else [np.nan, np.nan]
                        for p in data["landmarks"]["points"]], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration, RecursionError) as e:
        raise LandmaskError(f"{path}: not a menpo LJSON landmark file ({type(e).__name__}: {e})") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise LandmaskError(f"{path}: LJSON points must be [y, x] pairs; found {len(pts)} entries of another shape")
    pts = check_points(pts[:, ::-1].copy(), str(path))  # LJSON stores (y, x)
    return [Sample(str(path), pts, _scheme_for(len(pts), path), path=image_beside(path))]


def face_box(sample: Sample) -> np.ndarray:
    """The face box the crop rule starts from: the tight box of the points when every point is
    known, else the data set's own box (Kaggle crops, dlib boxes)."""
    if np.isfinite(sample.points).all() and get_scheme(sample.scheme).spans_face:
        return G.points_box(sample.points)
    if sample.box is not None:
        return sample.box
    if np.isfinite(sample.points).all():
        return G.points_box(sample.points)
    raise LandmaskError(f"{sample.source}: points are incomplete and the data set gives no face box")


# ---------------------------------------------------------------- format detection

def detect_format(path) -> str:
    """Name the format of a data set path: pts-folder, youtube-csv, kaggle-train, kaggle-test,
    dlib-xml, muct-csv, ljson."""
    path = Path(path)
    if not path.exists():
        raise LandmaskError(f"{path}: no such file or folder")
    if not path.is_dir() and not path.is_file():
        raise LandmaskError(f"{path}: not a regular file or folder (a device, pipe or socket)")
    if path.is_dir():
        if any(path.rglob("*.pts")):
            return "pts-folder"
        if (path.parent / f"{path.name}_frames_keypoints.csv").exists():
            return "youtube-csv"
        raise LandmaskError(f"{path}: a folder with no .pts files and no <name>_frames_keypoints.csv beside it")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "dlib-xml"
    if suffix == ".ljson":
        return "ljson"
    if suffix == ".pts":
        return "pts-file"
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
        if header[:2] == ["name", "tag"]:
            return "muct-csv"
        if "Image" in header and "ImageId" in header:
            return "kaggle-test"
        if "Image" in header:
            return "kaggle-train"
        if len(header) == 137:
            return "youtube-csv"
        raise LandmaskError(f"{path}, line 1: CSV header matches no known format "
                            f"(Kaggle, YouTube-Faces, MUCT)")
    raise LandmaskError(f"{path}: unknown data set format (expected a folder of .pts, .csv, .xml or .ljson)")


def load_dataset(path) -> list[Sample]:
    """Read every annotated face in a data set path, whatever its format.  A file that cannot be
    read (permissions, not UTF-8, a folder where a file should be) is a LandmaskError naming it."""
    path = Path(path)
    try:
        samples = _load_dataset(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        where = getattr(e, "filename", None) or path
        raise LandmaskError(f"{where}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    root = path if path.is_dir() else path.parent
    for s in samples:
        s.root = root
    return samples


def _load_dataset(path: Path) -> list[Sample]:
    fmt = detect_format(path)
    if fmt == "pts-folder":
        return read_pts_folder(path)
    if fmt == "pts-file":
        p = read_pts(path)
        return [Sample(str(path), p, _scheme_for(len(p), path), path=image_beside(path))]
    if fmt == "youtube-csv":
        if path.is_dir():
            return read_youtube_csv(path.parent / f"{path.name}_frames_keypoints.csv", path)
        return read_youtube_csv(path)
    if fmt == "kaggle-train":
        return read_kaggle_training(path)
    if fmt == "kaggle-test":
        raise LandmaskError(f"{path}: a Kaggle test.csv has no landmarks to train or evaluate on")
    if fmt == "dlib-xml":
        return read_dlib_xml(path)
    if fmt == "muct-csv":
        return read_muct_csv(path)
    return read_ljson(path)


def dataset_scheme(samples: list[Sample]) -> str:
    schemes = {s.scheme for s in samples}
    if len(schemes) != 1:
        raise LandmaskError(f"data mixes schemes {sorted(schemes)}")
    return schemes.pop()


# ---------------------------------------------------------------- training data

def load_training_data(specs, scheme: str = "ibug68", limit: int = 0, reporter: Reporter = Reporter(),
                       scheme_named: str = "--scheme") -> list[Sample]:
    """Every usable face of the data sets ``specs`` (any format load_dataset reads), the first
    ``limit`` of each when ``limit``; each data set's scheme must convert to ``scheme`` (named in
    errors as ``scheme_named``: an option, or "the model's scheme," for commands that have none)."""
    samples, skipped = [], []
    for spec in specs:
        part = load_dataset(spec)
        if limit:
            part = part[:limit]
        for s in part:   # every face: a folder may mix point counts
            if not can_convert(s.scheme, scheme):
                raise LandmaskError(f"--data {spec}: {s.source}: its scheme {s.scheme} cannot be converted to "
                                    f"{scheme_named} {scheme}")
        part, unusable = usable_faces(part)
        skipped += unusable
        reporter.info(f"data {spec}: {len(part)} faces" + (f" ({len(unusable)} skipped: {unusable[0]}"
                                                            + (" ..." if len(unusable) > 1 else "") + ")"
                                                            if unusable else ""))
        samples += part
    if not samples and skipped:
        raise LandmaskError(f"--data: no usable face ({len(skipped)} skipped, e.g. {skipped[0]})")
    if not samples:
        raise LandmaskError("no training data: give --data PATH (a 300-W folder, a Kaggle/YouTube CSV, ...)")
    return samples


def usable_faces(samples: list[Sample]) -> tuple[list[Sample], list[str]]:
    """(faces a crop can be cut for and with a point to learn, one line per face that cannot: too
    few points for a box, all points at one place, or no labelled point at all)."""
    kept, skipped = [], []
    for s in samples:
        try:
            box = face_box(s)
        except LandmaskError as e:
            skipped.append(str(e))
            continue
        if not np.isfinite(s.points).all(axis=1).any():
            skipped.append(f"{s.source}: no labelled point")
        elif not (box[2] > box[0] and box[3] > box[1]):
            skipped.append(f"{s.source}: its points make no box (all on one line or at one place)")
        else:
            kept.append(s)
    return kept, skipped


def split(n: int, fraction: float, seed: int):
    """(training indices, validation indices) of ``n`` faces: ``fraction`` held out at random
    (``landmask train --val-fraction --seed``; scripts recompute it to find the held-out faces)."""
    rng = np.random.default_rng(seed + 12345)
    order = rng.permutation(n)
    n_val = max(1, int(round(n * fraction))) if fraction > 0 and n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])
