"""The public Python API, mirroring the CLI:

    import landmask
    lm = landmask.load()                        # detector + landmark model, loaded once
    image = landmask.read_image("photo.jpg")   # RGB (H, W, 3) uint8
    faces = lm.faces(image)                     # every face: box, score, points, named parts
    out = landmask.mask(image, faces, lips="color:#b0123a@0.6", eyes="blur")
    landmask.write_image("out.jpg", out)

Images are numpy arrays in RGB order (or grey (H, W)); points are (x, y) in image pixels with the
top-left pixel's centre at (0, 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.errors import LandmaskError, for_option
from landmask.imageio import check_image, pixels, to_grey
from landmask.masking import check_feather, face_list, hidden_parts, mask_image, part_polygons
from landmask.runtime import INT8_EXPORTS, LandmarkModel, load as load_model
from landmask.schemes import get_scheme


@dataclass
class Face:
    box: np.ndarray        # (x0, y0, x1, y1): the face box the landmarks were cut from
    score: float           # detector confidence (1.0 for boxes given by the caller)
    points: np.ndarray     # (K, 2) landmarks in image pixels
    scheme: str            # "ibug68" or "kaggle15"
    confidence: np.ndarray | None = None   # (K,) per-point confidence in [0, 1] (heatmap peaks)

    def __post_init__(self):   # lists (a Face rebuilt from to_dict()) become arrays
        self.points = np.asarray(self.points, np.float64)
        if self.box is not None:
            self.box = np.asarray(self.box, np.float64)
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, np.float64)

    @property
    def named(self) -> dict[str, tuple[float, float]]:
        """Landmarks by name, e.g. ``face.named["nose_tip"]``."""
        return {n: (float(x), float(y)) for n, (x, y) in zip(get_scheme(self.scheme).points, self.points)}

    @property
    def parts(self) -> dict[str, list[np.ndarray]]:
        """Polygons per part: lips, left_eye, right_eye, left_eyebrow, right_eyebrow, face."""
        return {p: part_polygons(self.points, self.scheme, p) for p in get_scheme(self.scheme).parts}

    @property
    def hidden(self) -> set[str]:
        """Parts whose points the model could not see (a hand over the mouth, a profile's far
        eye; masking does not paint make-up there): see masking.hidden_parts.  Empty when the
        model gives no calibrated point confidence."""
        return hidden_parts(self.confidence, self.scheme) if self.confidence is not None else set()

    def to_dict(self) -> dict:
        """JSON-ready: box, score, scheme, points as an index-ordered [[x, y], ...] list, the same
        points by name, and the per-point confidence (index order)."""
        pts = [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]
        d = {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
             "scheme": self.scheme, "points": pts,
             "named": dict(zip(get_scheme(self.scheme).points, pts))}
        if self.confidence is not None:
            d["confidence"] = [round(float(c), 3) for c in self.confidence]
        return d


# a detector candidate whose first crop's face check is below this fraction of the check's bar gets no second pass
FIRST_PASS_FLOOR = 0.6

# a refined face box that moved less than this (IoU with the box its points came from) has settled
SETTLED_IOU = 0.95


class Landmarker:
    """Face detector + landmark model.  ``faces(image)`` finds every face and its landmarks."""

    def __init__(self, model: LandmarkModel, detector, refine: bool = True, flip: bool = False,
                 min_overlap: float = 0.3, min_face: float | None = None, max_faces: int | None = None,
                 min_score: float | None = None, scout: LandmarkModel | None = None):
        self.model, self.detector = model, detector
        # a smaller model for the first landmark pass on detector candidates (only with ``refine``):
        # it only frames each candidate for the landmark model's own pass, which the face check judges
        self.scout = scout
        self.refine, self.flip, self.min_overlap = refine, flip, min_overlap
        # --min-face PX (landmark box's longer side), --max-faces N (largest first), --min-score
        self.min_face, self.max_faces, self.min_score = min_face, max_faces, min_score
        if max_faces is not None and max_faces < 1:
            raise LandmaskError(f"--max-faces {max_faces}: must be 1 or more")

    @property
    def scheme(self) -> str:
        return self.model.scheme.name

    @property
    def uses_learned_check(self) -> bool:
        """Whether detector candidates are judged by the model's learned face check (it is fitted on
        refined crops of 68-point models) rather than its plain bar."""
        return bool(self.refine and self.model.scheme.spans_face and self.model.learned_check)

    def landmarks(self, image: np.ndarray, boxes, scores=None, check: bool = False,
                  floor: float | None = None) -> list[Face]:
        """Landmarks for given face boxes (landmark-box convention), all faces in one batch.
        With ``check``, boxes whose crop the model's face check rejects are dropped; with ``floor``
        (a fraction of the check's bar) only those far below it."""
        faces, conf, crops = self.predict(image, boxes, scores)
        if check:
            return self.checked(faces, conf, crops, image)
        if floor is None or self.model.min_confidence is None:
            return faces
        return [f for f, c in zip(faces, conf) if c >= floor * self.model.min_confidence]

    def checked(self, faces: list[Face], conf: np.ndarray, crops: np.ndarray | None = None,
                image: np.ndarray | None = None) -> list[Face]:
        """The faces whose crops (cut from ``image`` for their boxes) pass the model's face check
        (without ``crops``: its plain bar)."""
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        return [f for f, k in zip(faces, self.model.is_face(conf, [f.confidence for f in faces], crops, image, boxes))
                if k]

    def predict(self, image: np.ndarray, boxes, scores=None) -> tuple[list[Face], np.ndarray, np.ndarray]:
        """A Face for every box, none dropped, the crops' face confidences (N,) and the crops."""
        image = pixels(image)
        try:
            boxes = np.asarray(boxes, float).reshape(-1, 4)
        except (TypeError, ValueError):
            raise LandmaskError(f"boxes: give (x0, y0, x1, y1) per face, not {boxes!r:.60}") from None
        bad = ~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        if bad.any():
            raise LandmaskError(f"boxes: box {int(np.flatnonzero(bad)[0])} is {boxes[bad][0].tolist()}; each must be "
                                f"finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0")
        if len(boxes) == 0:
            return [], np.zeros(0), np.zeros((0, self.model.input_size, self.model.input_size), np.uint8)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, float).reshape(-1)
        if len(scores) != len(boxes):
            raise LandmaskError(f"scores: {len(scores)} for {len(boxes)} boxes; give one per box (or none)")
        pts, conf, point_conf, crops = self.model.predict_all(image, boxes, flip=self.flip, with_crops=True)
        if not self.model.point_confidence_calibrated:   # raw confidences have no usual level
            point_conf = [None] * len(boxes)
        faces = [Face(b, float(s), p, self.scheme, c) for b, s, p, c in zip(boxes, scores, pts, point_conf)]
        return faces, conf, crops

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face in the image.  With ``refine`` (ibug68 models) the landmarks are predicted
        again from the box of the first prediction (and a third time where that box still moved;
        a kaggle15 model predicts from the box of its scout's points, again where that box moves).
        Detector boxes whose landmarks do not span about the box, or whose refined crop fails the
        landmark model's face check (diffuse heatmaps), are dropped."""
        grey = to_grey(pixels(image))   # once: the detector and every landmark pass use the same pixels
        return self.detect_faces(grey, self.detector.detect(grey))

    def candidates(self, image: np.ndarray, dets) -> tuple[list[Face], np.ndarray, np.ndarray]:
        """The refined faces of detector outputs before the face check, their crops' face
        confidences and the crops: each detection's landmarks, kept where they span about its box, predicted again
        from their own box.  The face check judges this crop (a real face is framed well there even
        when the detector's box was off).  A first crop far below the check's bar is dropped at once,
        saving its second pass: detector candidates on texture (the faces found in helen-68/trainset,
        lfpw-68/trainset and the dlib photos score 0.109 and up there with ibug68, whose bar is
        0.1325, and 0.6 of it is 0.08).  With a ``scout`` model, the first pass is the scout's (and
        the floor a fraction of its own bar)."""
        first = self if self.scout is None else Landmarker(self.scout, self.detector, refine=False, flip=self.flip)
        faces = first.landmarks(image, [d.landmark_box for d in dets], [d.score for d in dets], floor=FIRST_PASS_FLOOR)
        kept = [f for f in faces if G.box_iou(G.points_box(f.points), f.box) >= self.min_overlap]
        return self.predict(image, [G.points_box(f.points) for f in kept], [f.score for f in kept])

    def detect_faces(self, grey: np.ndarray, dets, limit: int | None = -1) -> list[Face]:
        """Faces from detector outputs with every user filter applied (``min_score``, the landmark
        check and refinement, ``min_face``), largest first, at most ``limit`` (-1: ``max_faces``).
        Shared by ``faces`` and video tracking, so the options mean the same everywhere."""
        least = self.min_score
        if least is None and not self.uses_learned_check:   # the plain bar lets more false faces through
            least = getattr(self.detector, "plain_threshold", None)
        if least is not None:
            dets = [d for d in dets if d.score >= least]
        faces = self.from_detections(grey, dets)
        if len(faces) > 1:   # boxes of one face from two pyramid levels refine onto the same face
            from landmask.detect import nms
            boxes = np.array([self.face_box(f) for f in faces])
            faces = [faces[i] for i in nms(boxes, np.array([f.score for f in faces]), iou=0.5)]
        side = [float(np.ptp(self.face_box(f).reshape(2, 2), axis=0).max()) for f in faces]
        order = sorted(range(len(faces)), key=lambda i: -side[i])   # largest first
        order = [i for i in order if self.min_face is None or side[i] >= self.min_face]
        return [faces[i] for i in order[:self.max_faces if limit == -1 else limit]]

    def face_box(self, face: Face) -> np.ndarray:
        """A face's box in the landmark-box convention: the box of its points for a model whose
        points span the face (ibug68); for a sparse one (kaggle15) the box its crop was cut for."""
        if self.model.scheme.spans_face:
            return G.points_box(face.points)
        return np.asarray(face.box, np.float64)

    def reframe(self, image: np.ndarray, boxes) -> np.ndarray:
        """Face boxes (N, 4) for a sparse model's crops near ``boxes``: the box of the scout's points
        on each (as candidates are framed), or the boxes as they are without a scout."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.scout is None or not self.scout.scheme.spans_face or not len(boxes):
            return boxes
        return np.stack([G.points_box(p) for p in self.scout.predict(image, boxes, flip=self.flip)])

    def from_detections(self, image: np.ndarray, dets) -> list[Face]:
        """Landmarks for detector outputs, with the landmark check and refinement of ``faces``."""
        spans = self.model.scheme.spans_face   # the points' box is a face box: refine and check it
        # a sparse model (kaggle15) is refined through a scout whose points span the face: the scout
        # frames each candidate, and the model predicts and is checked on that crop
        framed = self.scout is not None and self.scout.scheme.spans_face
        refine = self.refine and (spans or framed)
        if not refine:   # the plain bar: a learned check was fitted on refined crops only
            faces = self.checked(*self.predict(image, [d.landmark_box for d in dets], [d.score for d in dets])[:2])
            return [f for f in faces if not spans or G.box_iou(G.points_box(f.points), f.box) >= self.min_overlap]
        kept = self.checked(*self.candidates(image, dets), image)
        if not spans:   # its points give no box: the scout frames it once more, where that box still moves
            boxes = np.array([f.box for f in kept], np.float64).reshape(-1, 4)
            moved = self.reframe(image, boxes)
            again = [i for i in range(len(kept)) if G.box_iou(moved[i], boxes[i]) < SETTLED_IOU]
            for i, f in zip(again, self.landmarks(image, moved[again], [kept[i].score for i in again])):
                kept[i] = f
            return kept
        # once more where the box still moved, so the points settle (84 held-out training faces: NME
        # 3.58 → 3.51 % against 3.47 % from their true boxes; 1 face in 10 took the third pass).  Which
        # faces are kept is decided above: a third crop of a dog or of grass can look more face-like.
        again = [i for i, f in enumerate(kept) if G.box_iou(G.points_box(f.points), f.box) < SETTLED_IOU]
        redo = self.landmarks(image, [G.points_box(kept[i].points) for i in again], [kept[i].score for i in again])
        for i, f in zip(again, redo):
            kept[i] = f
        return kept


def load(model=None, detector: str = "landmask", threads: int | None = None,
         refine: bool = True, flip: bool = False, detect_size: int | None = None, min_face: float | None = None,
         max_faces: int | None = None, min_score: float | None = None, scout="auto") -> Landmarker:
    """A ready Landmarker: ``model`` is ``ibug68`` (default), ``kaggle15`` or a model file;
    ``detector`` is ``landmask`` (default), ``haar`` or ``dlib``.  ``min_face``: faces smaller
    than this many pixels (the landmarks' box, longer side) are not looked for or kept;
    ``max_faces``: keep only the N largest; ``min_score``: the least detector score kept;
    ``scout``: the model of the first landmark pass on detector candidates (``auto``: the shipped
    ibug68-fast for the shipped ibug68 and kaggle15, ibug68-fast-int8 for ibug68-int8, none for other models;
    ``none``; or a model).  With no ``model``: ibug68, run as ibug68-int8 on a CPU with 8-bit dot
    products (landmask.runtime.runtime_name)."""
    from landmask.detect import detector_options, get_detector
    for name, v in (("--threads", threads), ("--max-faces", max_faces)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise LandmaskError(f"{name} {v!r}: must be 1 or more (a whole number)")
    opts = detector_options(detector, threads=threads, detect_size=detect_size, min_face=min_face,
                            min_score=min_score)
    lm = load_model(model, "ibug68", threads=threads)
    return Landmarker(lm, get_detector(detector, **opts), refine=refine, flip=flip, min_face=min_face,
                      max_faces=max_faces, min_score=min_score,
                      scout=scout_model(scout if refine else None, lm, threads))   # only refining pipelines scout


# the shipped models the shipped scout frames candidates for → their scout (measured: docs/benchmarks.md,
# sixteenth session), and each one's 8-bit export → the scout's 8-bit export
SCOUTS = {"ibug68": "ibug68-fast"}
SCOUTS.update({INT8_EXPORTS[m]: INT8_EXPORTS[s] for m, s in SCOUTS.items()})
SCOUTS["kaggle15"] = "ibug68-fast"   # frames kaggle15's candidates (its 15 points give no face box)


def auto_scout(model_path) -> str:
    """What ``--scout auto`` means for a landmark model file: the name of its shipped scout
    (SCOUTS), or ``none`` for a model that is not a shipped SCOUTS one."""
    from landmask.runtime import MODELS_DIR
    path = Path(model_path).resolve()
    for name, scout in SCOUTS.items():
        if path in {(MODELS_DIR / f"{name}{suffix}").resolve() for suffix in (".onnx", ".safetensors")}:
            return scout
    return "none"


def scout_model(scout, model: LandmarkModel, threads: int | None = None, loader=None) -> LandmarkModel | None:
    """The first-pass model for ``model``: ``scout`` is ``auto`` (``auto_scout``: ibug68-fast for
    the shipped ibug68 and kaggle15, ibug68-fast-int8 for ibug68-int8, none for other models), ``none``/None,
    a model name, file or run folder (a .safetensors one runs in PyTorch), or a LandmarkModel.
    A scout's points must span the face in the crop rule's convention: the landmark model's own
    scheme where its points do, ibug68 for a sparse model (kaggle15), whose candidates it frames.
    ``loader(ref, scheme, threads=)``: how to load it instead (``evaluate --backend`` runs the
    scout on the landmark model's backend)."""
    from landmask.runtime import resolve_model_path
    if isinstance(scout, str) and scout == "auto":
        scout = auto_scout(model.path)
    if scout is None or scout == "none":
        return None
    if isinstance(scout, LandmarkModel):
        s = scout
    else:
        try:
            if loader is not None:
                s = loader(scout, model.scheme.name, threads=threads)
            elif (path := resolve_model_path(scout, model.scheme.name)).suffix == ".safetensors":
                from landmask.torch_backend import load_torch_model   # a run's file: PyTorch, as --model runs it
                s = load_torch_model(path, threads, model.scheme.name)
            else:
                s = load_model(path, model.scheme.name, threads=threads)
        except LandmaskError as e:
            raise for_option(e, "--scout", scout) from None
    # the scout's points frame each candidate: a box of them must be a face box in the crop rule's
    # convention (the landmark model's own points', or for a sparse model the 68 points')
    want = model.scheme.name if model.scheme.spans_face else "ibug68"
    if s.scheme.name != want:
        raise LandmaskError(f"--scout {scout}: a {s.scheme.name} model; the scout frames each candidate by the box of "
                            f"its points, so for a {model.scheme.name} model it must be one of {want} points (or none)")
    return s


def mask(image: np.ndarray, faces, lips=None, eyes=None, eyebrows=None, face=None,
         feather: float | None = None) -> np.ndarray:
    """A masked copy of ``image``.  With no part given, the defaults of ``landmask mask``
    (``masking.DEFAULT_EFFECTS``: red lips, tinted eyes); naming any part paints only the parts
    named.  Effects: ``EFFECT[:VALUE][@OPACITY]`` or a plain colour (see landmask.masking)."""
    check_image(image)
    check_feather(feather)
    return mask_image(np.asarray(image), face_list(faces), lips=lips, eyes=eyes, eyebrows=eyebrows, face=face,
                      feather=feather)

