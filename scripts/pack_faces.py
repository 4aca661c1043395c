"""Pack annotated faces small, for training somewhere the photos cannot go (a lent GPU machine takes
64 MiB): each face cut around the region `landmask train` caches (twice the crop side, centred on
the face box, plus a margin), in grey, scaled to SIDE pixels and stored as JPEG with its .pts.
`landmask train --data OUT` reads the result like any 300-W folder; its crops are the originals'
resampled once more and JPEG-coded (1.3 grey levels from the originals' crops on average, at the defaults;
a 112 px run's cache is 224 px, a 128 px one's 256: --side 288 with the 1.1 margin covers both).

    python scripts/pack_faces.py runs/helen-train-minus-heldout runs/lfpw-train-minus-heldout --out pack/hl
"""
import argparse
from pathlib import Path

import cv2

from landmask import geometry as G
from landmask.crops import warp
from landmask.datasets import face_box, load_training_data, pts_text
from landmask.imageio import write_bytes_atomic, write_text_atomic
from landmask.transforms import CACHE_FACTOR


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+", help="data sets (as `landmask train --data`)")
    ap.add_argument("--out", required=True, help="a new folder")
    ap.add_argument("--side", type=int, default=288, help="packed image side, pixels (default 288)")
    ap.add_argument("--margin", type=float, default=1.1, help="region side / the training cache's (default 1.1)")
    ap.add_argument("--crop-scale", type=float, default=1.3, help="the runs' --crop-scale (default 1.3)")
    ap.add_argument("--quality", type=int, default=94, help="JPEG quality (default 94)")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        raise SystemExit(f"--out {out}: already exists; give a new folder")
    out.mkdir(parents=True)
    samples = load_training_data(a.data, "ibug68")
    total = 0
    for i, s in enumerate(samples):
        cx, cy, side = G.crop_square(face_box(s), a.crop_scale)
        m = G.square_affine(cx, cy, side * CACHE_FACTOR * a.margin, a.side)
        img = warp(s.image("grey"), m, a.side)
        pts = G.apply(m, s.points)
        ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, a.quality])
        if not ok:
            raise SystemExit(f"{s.source}: JPEG encoding failed")
        stem = f"{i:05d}_{Path(s.source).stem}"
        write_bytes_atomic(out / f"{stem}.jpg", jpg.tobytes())
        write_text_atomic(out / f"{stem}.pts", pts_text(pts))
        total += len(jpg)
    print(f"{out}: {len(samples)} faces, {total / 2**20:.1f} MiB of JPEG ({a.side} px, quality {a.quality})")


if __name__ == "__main__":
    main()
