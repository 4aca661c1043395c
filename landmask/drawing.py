"""Drawing what landmask found, for checking it by eye (``landmask mask --debug``,
``landmask.draw``): each face's box and score, its points (dimmed where the model was unsure) and
its part outlines.  Pure drawing on a copy of the image; no inference here."""
from __future__ import annotations

import cv2
import numpy as np

from landmask.masking import part_polygons
from landmask.schemes import get_scheme

BOX, POINT, UNSURE, OUTLINE = (0, 220, 0), (255, 255, 0), (255, 80, 0), (255, 0, 255)


def draw_faces(image: np.ndarray, faces) -> np.ndarray:
    """A copy of ``image`` (grey, RGB or RGBA; 8 or 16 bit) with boxes, points and part outlines."""
    from landmask.imageio import check_image
    from landmask.masking import face_list
    out = check_image(image).copy()
    faces = face_list(faces)
    colour_of = _colour_for(out)
    for f in faces:
        eye = float(np.linalg.norm(np.ptp(f.points, axis=0))) or 1.0
        thick = max(1, int(round(eye / 150)))
        if f.box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in f.box)
            cv2.rectangle(out, (x0, y0), (x1, y1), colour_of(BOX), thick, cv2.LINE_AA)
            if f.score is not None:
                cv2.putText(out, f"{f.score:.2f}", (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4 * thick, colour_of(BOX), thick, cv2.LINE_AA)
        for part in get_scheme(f.scheme).parts:
            for poly in part_polygons(f.points, f.scheme, part):
                pts = np.round(poly * 16).astype(np.int32)
                cv2.polylines(out, [pts], True, colour_of(OUTLINE), 1, cv2.LINE_AA, shift=4)
        conf = getattr(f, "confidence", None)
        for i, (x, y) in enumerate(f.points):
            sure = conf is None or conf[i] >= 0.5
            cv2.circle(out, (int(round(x * 16)), int(round(y * 16))), 16 * (thick + 1),
                       colour_of(POINT if sure else UNSURE), -1, cv2.LINE_AA, shift=4)
    return out


def _colour_for(image: np.ndarray):
    """RGB 0..255 → a value for this image's channels and depth (grey: luma; RGBA: opaque)."""
    top = 65535 if image.dtype == np.uint16 else 255

    def colour(rgb):
        c = [v * top / 255 for v in rgb]
        if image.ndim == 2:
            return float(np.dot(c, [0.299, 0.587, 0.114]))
        return tuple(c) + ((float(top),) if image.shape[2] == 4 else ())
    return colour
