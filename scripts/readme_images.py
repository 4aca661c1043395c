"""Make the README's before/after pictures from the bundled sample with the shipped models.

    python scripts/readme_images.py
"""
from pathlib import Path

import numpy as np

import landmask

OUT = Path("docs/images")
image = landmask.read_image("landmask/samples/astronaut.jpg")
faces = landmask.load().faces(image)
x0, y0, x1, y1 = faces[0].box
cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.9 * max(x1 - x0, y1 - y0)
a, b = int(max(0, cy - side / 2)), int(max(0, cx - side / 2))
crop = np.s_[a:a + int(side), b:b + int(side)]
variants = {
    "before": image,
    "default": landmask.mask(image, faces, lips="color:#b0123a@0.6", eyes="color:#1f6fd1@0.35"),
    "privacy": landmask.mask(image, faces, lips="pixelate", eyes="blur"),
    "solid": landmask.mask(image, faces, eyes="solid:black", eyebrows="color:saddlebrown@0.5"),
}
for name, img in variants.items():
    landmask.write_image(OUT / f"{name}.jpg", np.ascontiguousarray(img[crop]), quality=90)
    print(OUT / f"{name}.jpg")
