"""Running a job over many inputs (files and folders): output paths that keep the folder layout,
never touching an input, atomic writes, one line per bad file, and a summary."""
from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from landmask.errors import LandmaskError
from landmask.imageio import is_image_path, read_image, write_image, write_text_atomic
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


def expand_inputs(inputs, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image file; folders are walked
    recursively (``exclude``, the output folder, is skipped)."""
    out = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if exclude is not None and exclude.resolve() in f.resolve().parents:
                    continue
                if f.is_file() and is_image_path(f):
                    out.append((f, f.relative_to(p)))
        else:
            out.append((p, Path(p.name)))   # missing files are reported by the job
    return out


def mask_files(inputs, out_dir, landmarker, lips=None, eyes=None, eyebrows=None, feather=None, face=None,
               overwrite=False, copy_unmasked=False, reporter: Reporter = Reporter()) -> Summary:
    """Mask every image in ``inputs`` into ``out_dir`` (same relative paths and formats)."""
    from landmask.api import mask
    from landmask.masking import resolve_effects
    # parsed once, so a bad option fails before any file is touched (the library's defaults when none is given)
    effects = resolve_effects(lips, eyes, eyebrows, face)
    out_dir = Path(out_dir)
    items = expand_inputs(inputs, exclude=out_dir)
    sources = {f.resolve() for f, _ in items if f.exists()}
    s = Summary()
    for i, (src, rel) in enumerate(items, 1):
        reporter.item(i, len(items), str(src))
        dst = out_dir / rel
        if dst.resolve() in sources or (dst.exists() and src.exists() and dst.samefile(src)):
            s.failed.append(f"{src}: the output {dst} would overwrite an input; choose another -o")
            continue
        if dst.exists() and not overwrite:
            s.skipped += 1
            continue
        try:
            image = read_image(src, "keep")
            faces = landmarker.faces(image)
            if not faces:
                s.no_face += 1
                reporter.info(f"{src}: no face found" + (" (copied unchanged)" if copy_unmasked else ""))
                if copy_unmasked:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(f".{dst.name}.part")
                    shutil.copyfile(src, tmp)
                    tmp.replace(dst)
                continue
            write_image(dst, mask(image, faces, feather=feather, **_none_for_missing(effects)))
            s.done += 1
        except LandmaskError as e:
            s.failed.append(str(e))
            reporter.info(f"failed: {e}")
        except Exception as e:  # an item never stops the batch; say which file it was
            s.failed.append(f"{src}: unexpected error ({type(e).__name__}: {e})")
            reporter.info(f"failed: {s.failed[-1]}")
    return s


def _none_for_missing(effects: dict) -> dict:
    """Parsed effects as keyword arguments of ``mask``, parts without an effect turned off."""
    return {g: effects.get(g, "none") for g in ("lips", "eyes", "eyebrows", "face")}


def landmarks_files(inputs, landmarker, json_path=None, csv_path=None, reporter: Reporter = Reporter()):
    """Boxes, scores and named points per face per image → JSON (a list of images) and/or CSV
    (one row per point).  Returns (records, Summary)."""
    records, s = [], Summary()
    items = expand_inputs(inputs)
    for i, (src, _) in enumerate(items, 1):
        reporter.item(i, len(items), str(src))
        try:
            image = read_image(src, "keep")
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
    text = json.dumps(records, indent=1) + "\n"
    if json_path and json_path != "-":
        write_text_atomic(json_path, text)
    if csv_path:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "face", "score", "box_x0", "box_y0", "box_x1", "box_y1", "point", "x", "y"])
        for r in records:
            for k, f in enumerate(r.get("faces", [])):
                for name, (x, y) in f["points"].items():
                    w.writerow([r["file"], k, f["score"], *f["box"], name, x, y])
        write_text_atomic(csv_path, buf.getvalue())
    return records, s
