"""The per-point confidence bar on helen-68/testset (measuring only; nothing is tuned on it): a random
grey patch over the mouth or one eye of each face (tests/test_confidence.py's cover); prints, per
model, the share of faces whose covered points are less confident than the others, per part, and
the covered part's mean visibility (masking.part_visibility) with the share at 0 (make-up skipped).

    python scripts/occlusion_testset.py
"""
import numpy as np, sys
sys.path.insert(0, 'tests')
from test_confidence import cover
import landmask
from landmask.datasets import face_box, load_dataset
from landmask.schemes import IBUG68
from landmask.masking import part_visibility
for name in ["ibug68", "ibug68-fast-int8", "ibug68-tiny"]:
    lm = landmask.load(name).model
    rng = np.random.default_rng(0)
    below, by, vis = [], {}, {}
    for s in load_dataset('../shared/data/helen-68/testset'):
        part = rng.choice(["lips", "left_eye", "right_eye"])
        image = cover(s.image("grey"), s.points, part, grow=rng.uniform(0.15, 0.4))
        _, _, c = lm.predict_all(image, [face_box(s)])
        idx = IBUG68.part_points(part)
        b = c[0][idx].mean() < np.delete(c[0], idx).mean()
        below.append(b); by.setdefault(part, []).append(b); vis.setdefault(part, []).append(part_visibility(c[0], "ibug68", part))
    print(name, f"{100*np.mean(below):.1f} % of {len(below)}", {p: f"{100*np.mean(v):.1f} %" for p, v in by.items()},
          "visibility", {p: f"{np.mean(v):.2f} (0 in {100*np.mean(np.array(v)==0):.0f} %)" for p, v in vis.items()})
