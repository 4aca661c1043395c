"""Measure landmask.datasets.KAGGLE_BOX_FRACTION: the mean tight box of the 68 points inside a
Kaggle-scale crop (landmask.convert.kaggle_affine), as fractions of the crop side.

    python scripts/kaggle_box.py ../shared/data/helen-68/trainset
"""
import sys

import numpy as np

from landmask import geometry as G
from landmask.convert import kaggle_affine
from landmask.datasets import load_dataset
from landmask.schemes import convert_points

boxes = []
for s in load_dataset(sys.argv[1]):
    m = kaggle_affine(convert_points(s.points, "ibug68", "kaggle15"))
    boxes.append(G.points_box(G.apply(m, s.points)))
print("mean box / 96:", np.round(np.mean(boxes, axis=0) / 96, 3).tolist())
