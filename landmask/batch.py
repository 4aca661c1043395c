"""Running a job over many inputs (files and folders): output paths that keep the folder layout
from the inputs' common root, never touching an input, atomic writes, one line per bad file or
folder, and a summary."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from landmask.errors import LandmaskError
from landmask.imageio import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, decode_with_metadata, is_image_path, is_video,
                              own_format, read_file_bytes, suffix_kind, write_bytes_atomic, write_image,
                              write_text_atomic)
from landmask.report import Reporter


@dataclass
class Summary:
    done: int = 0
    no_face: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"done {self.done}, no face {self.no_face}, skipped (exists) {self.skipped}, "
                f"failed {len(self.failed)}")


# ---------------------------------------------------------------- finding the inputs

def walk_images(root: Path, exclude: Path | None = None, problems: list[str] | None = None) -> list[Path]:
    """Every image file under ``root`` (sorted), following symlinked folders once each: a symlink
    loop or a folder reached twice is walked once, an unreadable folder is added to ``problems``
    (one line naming it), and ``exclude`` (the output folder, when it lies inside) is skipped."""
    return walk_files(root, is_image_path, exclude, problems)


def walk_files(root: Path, keep, exclude: Path | None = None, problems: list[str] | None = None,
               skip_hidden_folders: bool = False) -> list[Path]:
    """The files under ``root`` for which ``keep(path)`` is true, in sorted order per folder, as
    walk_images describes (symlinked folders once each, ``exclude`` skipped, unreadable folders
    in ``problems``); shared by the photo and the video walks."""
    problems = [] if problems is None else problems
    skip = os.path.realpath(exclude) if exclude is not None else None
    seen: dict[tuple[int, int], str] = {}
    found = []

    def unreadable(e: OSError):
        problems.append(f"{e.filename}: cannot read this folder ({e.strerror or e}); its files were not masked")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as e:
            unreadable(e)
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:          # a symlink loop, or a second link to a folder already walked
            problems.append(f"{dirpath}: the same folder as {seen[key]} (a symlink loop or a second link); "
                            f"walked once")
            dirnames[:] = []
            continue
        seen[key] = dirpath
        dirnames[:] = sorted(d for d in dirnames if (skip is None or os.path.realpath(os.path.join(dirpath, d)) != skip)
                             and not (skip_hidden_folders and d.startswith(".")))
        found += [f for f in (Path(dirpath) / n for n in sorted(filenames)) if keep(f)]
    return found


def layout_base(inputs) -> str:
    """The folder that outputs are laid out from: one folder given, that folder; otherwise the
    common root of the inputs (files count by their folder), so ``d1/photo.jpg`` and
    ``d2/photo.jpg`` stay apart.  "" (absolute layout) where there is none (different drives)."""
    inputs = [Path(p) for p in inputs]
    if len(inputs) == 1 and inputs[0].is_dir():
        return os.path.abspath(inputs[0])
    try:
        return os.path.commonpath([os.path.abspath(p if p.is_dir() else p.parent) for p in inputs])
    except ValueError:
        return ""


def expand_inputs(inputs, exclude: Path | None = None, problems: list[str] | None = None,
                  base: str | None = None) -> list[tuple[Path, Path]]:
    """(file, output path relative to ``-o``) for every image file.  Folders are walked recursively
    (see walk_images); outputs are laid out from ``base`` (default: layout_base of the inputs);
    a file given twice counts once."""
    problems = [] if problems is None else problems
    inputs = [Path(p) for p in inputs]
    base = layout_base(inputs) if base is None else base
    out, seen = [], set()
    for p in inputs:
        if p.is_dir():
            files = walk_images(p, exclude, problems)
            if not files:
                problems.append(f"{p}: no image files in this folder (looked for "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            files = [p]              # missing or unreadable files are reported by the job
        for f in files:
            key = os.path.abspath(f)
            if key in seen:
                continue
            seen.add(key)
            rel = os.path.relpath(key, base) if base else key.lstrip(os.sep)
            out.append((f, Path(rel)))
    return out


# ---------------------------------------------------------------- masking

def check_out_dir(inputs, out_dir) -> None:
    """Refuse, before anything is written, an output folder that is a file or is an input folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LandmaskError(f"-o {out_dir}: is a file, not a folder")
    for p in map(Path, inputs):
        if p.is_dir() and out_dir.exists() and os.path.samefile(p, out_dir):
            raise LandmaskError(f"-o {out_dir}: is the input folder {p}; the outputs would replace the inputs "
                                f"(choose another folder, e.g. {(out_dir.resolve().name or 'photos')}-masked)")


def mask_files(inputs, out_dir, landmarker, lips=None, eyes=None, eyebrows=None, feather=None, face=None,
               overwrite=False, copy_unmasked=False, quality: int = 95, draw: bool = False,
               base: str | None = None, reporter: Reporter = Reporter(), single: bool | None = None) -> Summary:
    """Mask every image in ``inputs`` into ``out_dir`` (same relative paths and formats; EXIF and
    ICC profile kept for JPEG, PNG and WebP; ``quality`` 1-100 for JPEG and WebP)."""
    from landmask.masking import resolve_effects
    # parsed once, so a bad option fails before any file is touched (the library's defaults when none is given)
    effects = resolve_effects(lips, eyes, eyebrows, face)
    s = Summary()
    todo = plan_masks(inputs, out_dir, overwrite, s, reporter, base, single)
    mask_planned(todo, s, landmarker, effects, feather, copy_unmasked, quality, draw, reporter)
    return s


def mask_planned(todo, s: Summary, landmarker, effects: dict, feather=None, copy_unmasked=False,
                 quality: int = 95, draw: bool = False, reporter: Reporter = Reporter()) -> None:
    """Mask the planned (input, output) pairs of ``todo`` in this process, in order, counting each
    into ``s`` and reporting it as it goes.  Shared by mask_files and landmask.parallel."""
    for i, (src, dst) in enumerate(todo, 1):
        reporter.item(i, len(todo), str(src))
        record(s, src, try_mask(src, dst, landmarker, effects, feather, copy_unmasked, quality, draw),
               copy_unmasked, reporter)


def plan_masks(inputs, out_dir, overwrite: bool, s: Summary, reporter: Reporter = Reporter(),
               base: str | None = None, single: bool | None = None) -> list[tuple[Path, Path]]:
    """The (input, output) pairs still to mask, in order.  An output that would overwrite an input
    is a failure and an existing output (without ``overwrite``) is skipped, both counted in ``s``.
    ``single``: whether ``out_dir`` names the one output file (None: decided from these inputs;
    the CLI decides once for photos and videos together).  Shared by one process (mask_files)
    and several (landmask.parallel)."""
    single = single_output(inputs, out_dir) if single is None else single
    out_dir = Path(out_dir)
    if single:    # -o out.jpg for one photo: that file (its format from the name)
        src = Path(inputs[0])
        if os.path.realpath(out_dir) == os.path.realpath(src):
            s.failed.append(f"{src}: the output {out_dir} would overwrite the input; choose another -o")
            return []
        if out_dir.exists() and not overwrite:
            s.skipped += 1
            return []
        return [(src, out_dir)]
    check_out_dir(inputs, out_dir)
    items = expand_inputs(inputs, exclude=out_dir, problems=s.failed, base=base)
    for f in s.failed:
        reporter.failed(f)
    sources = {os.path.realpath(f) for f, _ in items if f.exists()}
    remove_stale_parts({(out_dir / rel).parent for _, rel in items})
    todo = []
    for src, rel in items:
        dst = out_dir / rel
        if os.path.realpath(dst) in sources:
            s.failed.append(f"{src}: the output {dst} would overwrite an input; choose another -o")
        elif dst.exists() and not overwrite:
            s.skipped += 1
        else:
            todo.append((src, dst))
    return todo


def single_output(inputs, out, suffixes=None) -> bool:
    """Whether ``-o`` names an image file for a single input photo (rather than an output folder;
    a name ending in a slash is always a folder).  ``suffixes``: the file names that count (default
    image names)."""
    named = Path(out).suffix.lower() in suffixes if suffixes is not None else is_image_path(out)
    return (len(inputs) == 1 and Path(inputs[0]).is_file() and named and not str(out).endswith(("/", os.sep))
            and not Path(out).is_dir())


def try_mask(src: Path, dst: Path, landmarker, effects: dict, feather, copy_unmasked: bool,
             quality: int, draw: bool = False) -> tuple[bool | None, str]:
    """One item that never stops the batch: (face found?, "") or (None, one line naming the file
    and what went wrong)."""
    try:
        return _mask_one(src, dst, landmarker, effects, feather, copy_unmasked, quality, draw), ""
    except LandmaskError as e:
        return None, str(e)
    except Exception as e:  # say which file it was
        return None, f"{src}: unexpected error ({type(e).__name__}: {e})"


def record(s: Summary, src, result: tuple[bool | None, str], copy_unmasked: bool, reporter: Reporter) -> None:
    """Count one item's try_mask result in ``s`` (and say what went wrong or that it had no face)."""
    found, error = result
    if error:
        s.failed.append(error)
        reporter.failed(error)
        return
    s.done += found
    s.no_face += not found
    if not found:
        reporter.info(f"{src}: no face found" + (" (copied unchanged)" if copy_unmasked else ""))


def _mask_one(src: Path, dst: Path, landmarker, effects: dict, feather, copy_unmasked: bool, quality: int,
              draw: bool = False) -> bool:
    """Mask one file into ``dst``; False (and a byte-for-byte copy with ``copy_unmasked``) when
    it has no face.  ``draw``: boxes, points and part outlines over the result (--debug)."""
    from landmask.api import mask
    data = read_file_bytes(src)
    image, meta = decode_with_metadata(data, "keep", name=str(src))
    faces = landmarker.faces(image)
    if not faces:
        if copy_unmasked:
            if suffix_kind(dst) in (None, meta.fmt):
                write_bytes_atomic(dst, data)     # the very bytes (a name without a known suffix: as it was)
            else:                                 # -o photo.png for a JPEG: the format the name asks for
                write_image(dst, image, quality, metadata=meta)
        return False
    out = mask(image, faces, feather=feather, **_none_for_missing(effects))
    if draw:
        from landmask.drawing import draw_faces
        out = draw_faces(out, faces)
    # the input's own format where the output keeps its name (a PNG named .jpg stays a PNG, alpha and
    # all; a JPEG named without a suffix stays a JPEG); a name given another suffix (-o x.png) decides
    keeps_name = suffix_kind(dst) in (None, suffix_kind(src))
    write_image(dst, out, quality, metadata=meta, fmt=own_format(meta.fmt, data) if keeps_name else None)
    return True


def _none_for_missing(effects: dict) -> dict:
    """Parsed effects as keyword arguments of ``mask``, parts without an effect turned off."""
    return {g: effects.get(g, "none") for g in ("lips", "eyes", "eyebrows", "face")}


# a temporary of write_bytes_atomic or video.AtomicFile: .NAME.landmask-HOST-PID.RANDOM.part (imageio.part_prefix)
_PART = re.compile(r"^\..+\.landmask-([0-9a-f]{8})-(\d+)\.[A-Za-z0-9_]+\.part$")


def remove_stale_parts(folders) -> list[Path]:
    """Delete temporaries a killed landmask run on this machine left in ``folders``: names
    landmask gives (imageio.part_prefix) with this machine's tag and the id of a process that no
    longer exists.  Nothing else is touched: a running process's temporaries, another machine's
    (a shared folder), and any other file, hidden ``.part`` files of the user's included."""
    from landmask.imageio import HOST_TAG
    removed = []
    for folder in folders:
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".part")]
        except OSError:
            continue
        for name in names:
            m = _PART.match(name)
            if not m or m.group(1) != HOST_TAG:
                continue
            p = Path(folder) / name
            try:
                if not _alive(int(m.group(2))):
                    p.unlink()
                    removed.append(p)
            except (OSError, ValueError):
                continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# ---------------------------------------------------------------- landmarks

MODEL_SUFFIXES = {".onnx", ".safetensors", ".pt", ".pth", ".npz", ".ort"}


def check_output_file(path, option: str, inputs=(), image: bool = False, data_root=None,
                      photos_by_name: bool = False) -> None:
    """Refuse, before any input is read, an output file (--json, --csv; ``image``: a plot) that is
    an input, a folder, an existing file inside ``data_root`` (a data set's own files), lies in a
    folder that cannot be written or, for text, has an image's name; ``photos_by_name``: ``data_root``
    finds each face's photo by its annotation's name (a 300-W folder), so no image may go in it."""
    if not path or path == "-":
        return
    p = Path(path)
    if p.suffix.lower() in MODEL_SUFFIXES:
        raise LandmaskError(f"{option} {p}: names a model file; it would be replaced "
                            f"(give a {'.png' if image else '.' + option[2:]} name)")
    from landmask.imageio import is_special_file
    if p.exists() and is_special_file(p):     # /dev/stdout, /dev/null, a FIFO: written into
        return
    if not image and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        raise LandmaskError(f"{option} {p}: names an image or video file; it would be replaced by the {option[2:].upper()} "
                            f"(did the shell put an input after {option}? write {option} FILE before the inputs)")
    if p.is_dir():
        raise LandmaskError(f"{option} {p}: is a folder; give a file name")
    for f in inputs:
        if p.exists() and Path(f).exists() and Path(f).is_file() and os.path.samefile(p, f):
            raise LandmaskError(f"{option} {p}: is an input; it would be overwritten")
        if p.is_file() and Path(f).is_dir() and inside(p, f):   # a folder's videos are found by content, any name
            if is_video(p):
                raise LandmaskError(f"{option} {p}: is a video in the input folder {f}; it would be overwritten")
    if data_root is not None and p.is_file() and inside(p, data_root):
        raise LandmaskError(f"{option} {p}: an existing file inside the data set {data_root}; it would be replaced")
    if data_root is not None and image and photos_by_name and inside(p, data_root):   # takeo.png beside takeo.pts
        raise LandmaskError(f"{option} {p}: inside the data set {data_root}, where an image could be taken for one "
                            f"of its photos; write it elsewhere")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise LandmaskError(f"{option} {p}: cannot write into {parent}")


def inside(path, folder) -> bool:
    """Whether ``path`` lies inside ``folder`` (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def landmarks_files(inputs, landmarker, json_path=None, csv_path=None, reporter: Reporter = Reporter()):
    """Boxes, scores and named points per face per image → JSON (a list of images) and/or CSV
    (one row per point).  Returns (records, Summary)."""
    if json_path == "-" and csv_path == "-":
        raise LandmaskError("--json - and --csv -: only one of them can go to the standard output")
    if json_path and csv_path and json_path != "-" and os.path.abspath(json_path) == os.path.abspath(csv_path):
        raise LandmaskError(f"--json and --csv name the same file {json_path}")
    for opt, p in (("--json", json_path), ("--csv", csv_path)):
        check_output_file(p, opt, inputs)
    records, s = [], Summary()
    items = expand_inputs(inputs, problems=s.failed)
    for i, (src, _) in enumerate(items, 1):
        reporter.item(i, len(items), str(src))
        try:
            image = _read(src)
            faces = landmarker.faces(image)
        except Exception as e:  # LandmaskError names the file itself; anything else gets it added
            msg = str(e) if isinstance(e, LandmaskError) else f"{src}: unexpected error ({type(e).__name__}: {e})"
            s.failed.append(msg)
            records.append({"file": str(src), "error": msg})
            continue
        s.done += bool(faces)
        s.no_face += not faces
        records.append({"file": str(src), "width": int(image.shape[1]), "height": int(image.shape[0]),
                        "faces": [f.to_dict() for f in faces]})
    text = records_json(records)
    if json_path and json_path != "-":
        write_text_atomic(json_path, text)
    if csv_path == "-":
        sys.stdout.write(_points_csv(records))
    elif csv_path:
        write_text_atomic(csv_path, _points_csv(records))
    return records, s


def records_json(records: list[dict] | dict) -> str:
    """A JSON list with one image's record per line: compact, yet a diff or grep shows one image.
    One video's record ({"video", "frames"}) is an object with one frame per line."""
    if isinstance(records, dict):
        rest = {k: v for k, v in records.items() if k != "frames"}
        head = json.dumps(rest)[:-1] + (", " if rest else "")
        return head + '"frames": [\n' + ",\n".join(json.dumps(f) for f in records.get("frames", [])) + "\n]}\n"
    return "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n"


def _read(src: Path):
    from landmask.imageio import read_image
    return read_image(src, "keep")


def _points_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "face", "score", "box_x0", "box_y0", "box_x1", "box_y1", "point", "x", "y", "confidence"])
    for r in records:
        for k, f in enumerate(r.get("faces", [])):
            conf = f.get("confidence") or [""] * len(f["named"])
            for (name, (x, y)), c in zip(f["named"].items(), conf):
                w.writerow([r["file"], k, f["score"], *f["box"], name, x, y, c])
    return buf.getvalue()
