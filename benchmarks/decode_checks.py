"""What landmask's checked decoding costs over a bare OpenCV decode, per image: the header parse
(size, frames, completeness) and, for JPEG, catching libjpeg's corrupt-data warnings on stderr
(landmask.imageio._decode).  Medians of many calls.

    python benchmarks/decode_checks.py [IMAGE...]      # default: the bundled sample, as JPEG/PNG/WebP
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402

from landmask.imageio import decode_image, encode_image, read_image  # noqa: E402


def main(paths):
    if paths:
        files = {p: Path(p).read_bytes() for p in paths}
    else:
        img = read_image("landmask/samples/astronaut.jpg")
        files = {f"astronaut 512x512 .{fmt}": encode_image(img, fmt) for fmt in ("jpeg", "png", "webp")}
    print(f"{'image':<28}{'cv2.imdecode ms':>17}{'decode_image ms':>17}{'overhead ms':>13}")
    for name, data in files.items():
        buf = np.frombuffer(data, np.uint8)
        bare = median_ms(lambda: cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), 200, 20)
        checked = median_ms(lambda: decode_image(data, "keep"), 200, 20)
        print(f"{name:<28}{bare:>17.3f}{checked:>17.3f}{checked - bare:>13.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
