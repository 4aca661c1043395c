"""Following faces from frame to frame: detect on some frames, follow each face between
detections from its previous landmarks, keep a stable id per face.

Per frame: every live track's landmarks are predicted from a crop around its previous landmarks
(one landmark pass per face, no detector; a kaggle15 model's crop is framed by its scout first, as
its detector candidates are, or without a scout its box moves as its points moved); a track whose
crop fails the landmark model's face check
(or whose points stop spanning the crop's face) is lost.  The detector runs on a schedule
(``detect_every`` frames), on any frame where a track was lost, and on every frame while no face
is followed; detections that no live track covers start new tracks, or revive a recently lost one
(kept ``keep_lost`` frames) when they appear near where it was lost.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landmask import geometry as G
from landmask.api import Face
from landmask.imageio import to_grey


@dataclass
class TrackedFace(Face):
    """A Face with the id of the track it belongs to (stable while the face is followed)."""
    track: int = -1


@dataclass
class Track:
    id: int
    points: np.ndarray      # (K, 2) raw landmarks of the last frame the face was seen
    roi: np.ndarray         # the face box the next crop is cut from (landmark-box convention)
    score: float
    lost: int = 0           # frames since the face was last seen (0 = live)
    confidence: np.ndarray | None = None  # (K,) per-point confidence of the last points (None: unknown)
    box: np.ndarray | None = None       # box of the last points
    velocity: np.ndarray | None = None  # how that box moved over the last frame (x0, y0, x1, y1 per frame)


def _box_size(box) -> float:
    return float(max(box[2] - box[0], box[3] - box[1], 1.0))


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


class Tracker:
    """Face tracks over a sequence of frames.  ``update(frame)`` → the faces of that frame.

    ``landmarker``: a landmask.api.Landmarker (its detector, landmark model and face check).
    ``detect_every``: frames between scheduled detections (new faces are caught within that).
    ``keep_lost``: frames a lost track is remembered, so a face that comes back near where it
    left keeps its id.  ``roi_hold``: the crop box stays put while the face's box moves less
    than this fraction of its size (a still face is then cut from the same pixels every frame,
    which keeps its landmarks steady); 0 re-centres the crop on every frame.  Otherwise the next
    crop is where the face will be if it keeps its last frame's motion.  ``recrop``: a face found
    further than this fraction of its size from its crop's box gets a second landmark pass from
    a crop around where it was found."""

    def __init__(self, landmarker, detect_every: int = 10, keep_lost: int = 60, roi_hold: float = 0.03,
                 cover_iou: float = 0.3, recrop: float = 0.1):
        self.lm = landmarker
        self.recrop = recrop
        self.detect_every, self.keep_lost, self.roi_hold = max(1, int(detect_every)), keep_lost, roi_hold
        self.cover_iou = cover_iou
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.next_id = 0
        self.index = 0
        self.detections = 0          # frames the detector ran on (for benchmarks)

    # ------------------------------------------------------------------ one frame
    def update(self, image: np.ndarray) -> list[TrackedFace]:
        """Faces of this frame (RGB or grey), each with its track id, in track-id order."""
        grey = to_grey(image)
        live = [t for t in self.tracks if t.lost == 0]
        failed = self._follow(grey, live)
        if failed or not any(t.lost == 0 for t in self.tracks) or self.index % self.detect_every == 0:
            self._detect(grey)
        for t in self.tracks:
            if t.lost:
                t.lost += 1
        self.tracks = [t for t in self.tracks if t.lost <= self.keep_lost]
        self.index += 1
        scheme = self.lm.scheme
        return [TrackedFace(t.roi.copy(), t.score, t.points.copy(), scheme, confidence=t.confidence, track=t.id)
                for t in sorted(self.tracks, key=lambda t: t.id) if t.lost == 0]

    def _follow(self, grey, live: list[Track]) -> bool:
        """Landmarks of each live track from its crop box; returns whether any track was lost."""
        if not live:
            return False
        model = self.lm.model
        sparse = not model.scheme.spans_face   # kaggle15: its points give no face box; its scout frames it
        framed = sparse and self.lm.scout is not None and self.lm.scout.scheme.spans_face
        boxes = np.stack([t.roi for t in live]).astype(np.float64)
        if framed:
            boxes = self.lm.reframe(grey, boxes)
        pts, conf, pconf, crops = model.predict_all(grey, boxes, flip=self.lm.flip, with_crops=True)
        h, w = grey.shape
        failed = False
        # a face that moved far within its crop (fast motion the prediction missed) is cut once
        # more from where its points are now: the second pass sees it centred
        again = [] if sparse else [i for i, (t, p) in enumerate(zip(live, pts))
                                   if np.abs(G.points_box(p) - t.roi).max() > self.recrop * _box_size(t.roi)]
        if again:
            boxes2 = np.stack([G.points_box(pts[i]) for i in again])
            pts2, conf2, pconf2, crops2 = model.predict_all(grey, boxes2, flip=self.lm.flip, with_crops=True)
            for i, p, c, pc, cr, b in zip(again, pts2, conf2, pconf2, crops2, boxes2):
                pts[i], conf[i], pconf[i], crops[i], boxes[i] = p, c, pc, cr, b
        calibrated = model.point_confidence_calibrated   # raw point confidences have no usual level
        is_face = model.is_face(conf, pconf if calibrated else [None] * len(conf), crops, grey, boxes)
        for t, p, pc, face, cut in zip(live, pts, pconf, is_face, boxes):
            if not sparse:
                box = G.points_box(p)
            else:   # the scout's box, or without a scout the last box moved as the points moved
                box = cut if framed else _moved_box(t.box, t.points, p)
            inside = _overlap_fraction(box, (0, 0, w - 1, h - 1))
            ok = face and inside >= 0.5
            ok = ok and G.box_iou(box, t.roi) >= self.lm.min_overlap
            if not ok:
                t.lost, failed = 1, True
                continue
            t.velocity = box - t.box if t.box is not None else np.zeros(4)
            t.points, t.box, t.confidence = p, box, (pc if calibrated else None)
            t.roi = self._next_roi(t.roi, box, t.velocity)
        self._drop_duplicates()
        return failed

    def _next_roi(self, roi, box, velocity) -> np.ndarray:
        """The crop box for the next frame: held while the face stays within ``roi_hold`` of it,
        else where the face will be if it keeps moving as it did over the last frame."""
        size = _box_size(box)
        if np.abs(velocity).max() <= self.roi_hold * size:
            velocity = 0.0          # slow motion or noise: predicting it would only move the crop about
        if self.roi_hold > 0 and np.abs(box + velocity - roi).max() <= self.roi_hold * size:
            return roi
        return box + velocity

    def _drop_duplicates(self) -> None:
        """Two tracks on one face (they converged): the younger one is dropped."""
        live = sorted((t for t in self.tracks if t.lost == 0), key=lambda t: t.id)
        for i, a in enumerate(live):
            for b in live[i + 1:]:
                if b.lost == 0 and a.lost == 0 and G.box_iou(a.roi, b.roi) > 0.5:
                    b.lost = self.keep_lost + 1

    def _detect(self, grey) -> None:
        self.detections += 1
        live = [t for t in self.tracks if t.lost == 0]
        dets = [d for d in self.lm.detector.detect(grey)
                if all(G.box_iou(d.landmark_box, t.roi) < self.cover_iou for t in live)]
        if not dets:
            return
        # the user's filters (--min-score, --min-face) and --max-faces counting the faces already followed
        limit = None if self.lm.max_faces is None else max(0, self.lm.max_faces - len(live))
        for f in self.lm.detect_faces(grey, dets, limit):
            box = self.lm.face_box(f)
            if any(G.box_iou(box, t.roi) >= self.cover_iou for t in self.tracks if t.lost == 0):
                continue
            t = self._revive(box)
            if t is None:
                t = Track(self.next_id, f.points, box, f.score)
                self.next_id += 1
                self.tracks.append(t)
            t.points, t.roi, t.score, t.lost, t.box, t.velocity = f.points, box, f.score, 0, box, None
            t.confidence = f.confidence

    def _revive(self, box) -> Track | None:
        """The lost track nearest to ``box``, if within two face sizes of where it was lost."""
        best, best_d = None, 2.0
        for t in self.tracks:
            if t.lost == 0:
                continue
            d = np.linalg.norm(_centre(box) - _centre(t.roi)) / max(_box_size(box), _box_size(t.roi))
            if d < best_d:
                best, best_d = t, d
        return best


def _moved_box(box, before, after) -> np.ndarray:
    """``box`` moved and scaled as the points ``before`` (K, 2) moved to ``after``: their centre's
    shift and the ratio of their spreads about it (points missing in either are left out)."""
    ok = np.isfinite(before).all(axis=1) & np.isfinite(after).all(axis=1)
    if ok.sum() < 2:
        return np.asarray(box, np.float64)
    a, b = before[ok], after[ok]
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    sa, sb = np.sqrt(((a - ca) ** 2).sum(axis=1).mean()), np.sqrt(((b - cb) ** 2).sum(axis=1).mean())
    scale = sb / sa if sa > 0 else 1.0
    return ((np.asarray(box, np.float64).reshape(2, 2) - ca) * scale + cb).reshape(4)


def _overlap_fraction(box, frame) -> float:
    """The fraction of ``box``'s area inside ``frame`` (both x0, y0, x1, y1)."""
    ix = max(0.0, min(box[2], frame[2]) - max(box[0], frame[0]))
    iy = max(0.0, min(box[3], frame[3]) - max(box[1], frame[1]))
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return ix * iy / area
