"""Video: masking and landmarks for video files, frame by frame with tracking and temporal
smoothing (cameras and live streams: landmask.camera).

decode (PyAV, which ships its own FFmpeg) → ``VideoMasker.process`` (track faces, smooth their
landmarks, mask) → encode (H.264 for mp4/mov/mkv/avi, VP9 for webm), every audio stream copied
packet by packet, the output written under a name that appears only when it is complete.
PyAV is imported here, lazily, and nowhere else (``pip install 'landmask[video]'``).
"""
from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmask.detect import is_number
from landmask.errors import LandmaskError
from landmask.imageio import VIDEO_SUFFIXES, is_video, part_prefix, pixels, sniff_video  # noqa: F401 (re-exported)
from landmask.masking import check_feather, mask_image, resolve_effects
from landmask.report import Reporter
from landmask.smoothing import LandmarkSmoother
from landmask.tracking import TrackedFace, Tracker

# output container per suffix, and the video encoder it gets
CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
              ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx-vp9"), ".avi": ("avi", "libx264")}
ENCODER_OPTIONS = {"libx264": {"preset": "veryfast", "crf": "18"},
                   "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0",
                                  "row-mt": "1"}}


def _av():
    try:
        import av
    except ImportError as e:
        raise LandmaskError(f"video needs PyAV: pip install 'landmask[video]' ({e})") from None
    av.logging.set_level(av.logging.PANIC)     # errors come back as exceptions with a message
    return av


def named_or_is_video(path) -> bool:
    """Whether a file goes to the video batch: named as a video (a bad one then gets the video's
    message) or holding a video container whatever its name."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES or is_video(path)


# ---------------------------------------------------------------- frame by frame

class VideoMasker:
    """Tracking state for masking a stream of frames: ``process(frame)`` → (masked frame, faces).

    ``landmarker``: from ``landmask.load()``.  ``lips``/``eyes``/``eyebrows``/``face``/``feather``:
    as ``landmask.mask`` (the defaults when no part is given).  ``smooth``: temporal filter
    strength (True = 1, False or 0 = off, larger = steadier with more lag).  ``detect_every``:
    frames between scheduled detections.  ``fps``: time between frames when ``process`` gets no
    time stamp.  ``draw``: boxes, points and part outlines over the masked frames (--debug)."""

    def __init__(self, landmarker, *, lips=None, eyes=None, eyebrows=None, face=None, feather=None,
                 smooth: bool | float = True, detect_every: int = 10, fps: float = 30.0, draw: bool = False):
        self.landmarker = landmarker
        self.draw = bool(draw)
        self.effects = resolve_effects(lips, eyes, eyebrows, face)
        # the CLI's ranges (cli.RANGES), for the Python API and the camera page's settings too
        self.feather = check_feather(feather)
        if not (smooth is None or isinstance(smooth, bool) or (is_number(smooth) and 0 <= smooth <= 1000)):
            raise LandmaskError(f"--smooth {smooth!r}: a number from 0 to 1000 (0 = off, 1 = default)")
        self.strength = 1.0 if smooth is True else float(smooth or 0.0)
        if isinstance(detect_every, bool) or not isinstance(detect_every, (int, np.integer)) or not detect_every >= 1:
            raise LandmaskError(f"--detect-every {detect_every}: give a whole number of frames, 1 or more")
        if fps is not None and not (is_number(fps) and fps >= 0):   # 0 or None: unknown (a camera may say 0): 30
            raise LandmaskError(f"fps {fps!r}: a number of frames per second")
        self.tracker = Tracker(landmarker, detect_every=detect_every)
        self.fps = float(fps) if fps else 30.0
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new scene or a new stream)."""
        self.tracker.reset()
        self.smoothers: dict[int, LandmarkSmoother] = {}
        self.index = 0

    def faces(self, frame: np.ndarray, t: float | None = None) -> list[TrackedFace]:
        """The faces of this frame (RGB (H, W, 3) uint8 or grey), tracked and smoothed; ``t`` is
        the frame's time in seconds (default: frame index / fps)."""
        frame = pixels(frame)
        if t is not None and not is_number(t):
            raise LandmaskError(f"t {t!r}: the frame's time in seconds, a number (or None)")
        t = self.index / self.fps if t is None else float(t)
        self.index += 1
        faces = self.tracker.update(frame)
        remembered = {track.id for track in self.tracker.tracks}    # live and recently lost
        for k in [k for k in self.smoothers if k not in remembered]:
            del self.smoothers[k]
        if self.strength > 0:
            for f in faces:
                sm = self.smoothers.setdefault(f.track, LandmarkSmoother(self.strength))
                f.points = sm(f.points, t)
        return faces

    def process(self, frame: np.ndarray, t: float | None = None) -> tuple[np.ndarray, list[TrackedFace]]:
        """(masked copy of ``frame``, its tracked faces)."""
        faces = self.faces(frame, t)
        if not faces:
            return frame.copy(), faces
        out = mask_image(frame, faces, feather=self.feather, **self.effects) if self.effects else frame.copy()
        if self.draw:
            from landmask.drawing import draw_faces
            out = draw_faces(out, faces)
        return out, faces


def face_record(f: TrackedFace, ndigits: int = 2) -> dict:
    """One face of one frame as JSON: track id, box, score, points index-ordered as in the scheme."""
    return {"track": int(f.track), "box": [round(float(v), ndigits) for v in f.box],
            "score": round(float(f.score), 4),
            "points": [[round(float(x), ndigits), round(float(y), ndigits)] for x, y in f.points]}


# ---------------------------------------------------------------- files

@dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int | None                      # from the container's header (None when unknown)
    duration: float | None
    audio: int = 0                          # audio streams
    codec: str = ""
    extra: dict = field(default_factory=dict)
    rotation: int = 0                       # display rotation, degrees counterclockwise (0, 90, 180, 270)
    stream: int = 0                         # the index of the video stream read
    other_video: int = 0                    # video streams not read (thumbnails, second angles)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) of the frames as shown (after the display rotation)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def to_dict(self) -> dict:
        w, h = self.upright_size
        d = {"fps": round(self.fps, 4), "width": w, "height": h, "frames": self.frames,
             "duration": None if self.duration is None else round(self.duration, 4), "codec": self.codec,
             "audio_streams": self.audio}
        if self.rotation:
            d["rotation"] = self.rotation
        return d


def open_video(path):
    """(container, video stream, VideoInfo) for a video file; LandmaskError naming it otherwise."""
    av = _av()
    path = Path(path)
    if not path.exists():
        raise LandmaskError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise LandmaskError(f"{path}: empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise LandmaskError(f"{path}: cannot read ({e.strerror or e})") from None
    if sniff_video(head) is None:
        from landmask.imageio import sniff
        kind = sniff(head)
        raise LandmaskError(f"{path}: not a video file" + (f" (its content is a {kind} image)" if kind
                            else " (mp4, mov, m4v, mkv, webm or avi; truncated or corrupt?)"))
    try:
        c = av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise LandmaskError(f"{path}: cannot read the video ({_reason(e)})") from None
    if not c.streams.video:
        c.close()
        raise LandmaskError(f"{path}: no video stream in the file")
    v = main_video_stream(c)
    if v is None:
        c.close()
        raise LandmaskError(f"{path}: no video stream in the file (only a cover picture)")
    if not v.codec_context.width or not v.codec_context.height:
        c.close()
        raise LandmaskError(f"{path}: cannot read the video (no frame size in its header: truncated or corrupt)")
    rate = v.average_rate or v.guessed_rate or v.base_rate
    duration = float(v.duration * v.time_base) if v.duration else (c.duration / 1e6 if c.duration else None)
    info = VideoInfo(float(rate) if rate else 30.0, v.codec_context.width, v.codec_context.height,
                     int(v.frames) or None, duration, len(c.streams.audio), v.codec_context.name,
                     rotation=_display_rotation(path, v.index), stream=v.index,
                     other_video=len(c.streams.video) - 1)
    return c, v, info


def main_video_stream(container):
    """The video stream to read: never a cover picture (attached_pic); of the others the one with
    the most frames (then the longest, then the largest), so a thumbnail track or a small second
    angle stored first is not taken for the video.  None when there are only cover pictures."""
    def still(s):
        try:
            return bool(s.disposition & s.disposition.__class__.attached_pic)
        except (AttributeError, TypeError):
            return False
    streams = [s for s in container.streams.video if not still(s)]
    if not streams:
        return None
    def size(s):
        dur = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        return (int(s.frames or 0), dur, (s.codec_context.width or 0) * (s.codec_context.height or 0), -s.index)
    return max(streams, key=size)


def _display_rotation(path: Path, index: int) -> int:
    """The display rotation of video stream ``index`` (its display matrix, as FFmpeg reports it on
    the first frame): 0, 90, 180 or 270 degrees counterclockwise; 0 when there is none or the
    first frame cannot be read (the read itself then reports the damage)."""
    av = _av()
    try:
        with av.open(str(path), "r") as c:
            for frame in c.decode(c.streams[index]):
                return frame_rotation(frame)
    except (av.FFmpegError, OSError, ValueError, AttributeError):
        pass
    return 0


def frame_rotation(frame) -> int:
    """A decoded frame's display rotation rounded to 0, 90, 180 or 270 degrees counterclockwise."""
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4 * 90


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned as it is shown (``rotation`` degrees counterclockwise)."""
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb


def stored(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The inverse of ``upright``: a shown frame turned back as the file stores it."""
    return np.ascontiguousarray(np.rot90(rgb, -(rotation // 90))) if rotation else rgb


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}   # not EIO: FFmpeg's reads end so too


def write_error(e: BaseException) -> OSError | None:
    """The OSError of a failed write (a full disk, a quota, a size limit) behind ``e``: ``e`` itself,
    or what it was raised from or during (PyAV re-raises a write callback's error as its own); a
    context the code set aside (``raise ... from None``) is not followed."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return None


def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` scaled to fit ``width``×``height`` whole (its shape kept) and centred on black."""
    import cv2
    h, w = rgb.shape[:2]
    k = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * k))), max(1, min(height, round(h * k)))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    return out


def _reason(e) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(": '")[0].strip() or type(e).__name__


CONVERTIBLE_MATRICES = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}   # the source's matrix → swscale's (SMPTE 170M is BT.601's)
UNSPECIFIED = {"colorspace": 2, "color_range": 0, "color_primaries": 2, "color_trc": 2}


def _colour_tags(colour) -> dict:
    """The source's colour description (``colour``: its video codec context) as the output's
    {colorspace, color_range, color_primaries, color_trc}: each one the source states (unspecified
    and reserved ones left out), and only when its matrix is one the RGB → YUV conversion knows
    (otherwise none: the encoder's own conversion, BT.601 and limited range, untagged, as before)."""
    if colour is None:
        return {}
    try:
        from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc
    except ImportError:   # PyAV before 17: no colour description to pass on (the encoder's BT.601, untagged)
        return {}
    known = {"colorspace": set(CONVERTIBLE_MATRICES), "color_range": {int(v) for v in ColorRange},
             "color_primaries": {int(v) for v in ColorPrimaries}, "color_trc": {int(v) for v in ColorTrc}}
    tags = {k: int(getattr(colour, k, None) or 0) for k in UNSPECIFIED}
    if tags["colorspace"] not in CONVERTIBLE_MATRICES:
        return {}
    # values FFmpeg names (a "reserved" one, which some encoders write, is left out, not passed on)
    return {k: v for k, v in tags.items() if v not in (0, UNSPECIFIED[k]) and v in known[k]}


def _ffmpeg_reason(e) -> str:
    """FFmpeg's own words for an error: the last line of its log when PyAV quotes it, else _reason."""
    log = str(e).rpartition("last error log: ")[2]
    return log.strip().rstrip(".") if log != str(e) else _reason(e)


class AtomicFile:
    """A file that appears under ``path`` only when ``commit()`` is called: written as an unnamed
    file in the target folder (Linux O_TMPFILE: a killed run leaves nothing behind) or, where that
    is not available, under a hidden temporary name that ``commit`` renames."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = None
        mode = 0o666 & ~_umask()
        fd = _unnamed_file(self.path.parent, mode)
        if fd is None:
            fd, self.tmp = tempfile.mkstemp(prefix=part_prefix(self.path), suffix=".part",
                                            dir=self.path.parent)   # batch.remove_stale_parts knows this name
            os.chmod(self.tmp, mode)
        self.file = os.fdopen(fd, "w+b")

    def commit(self) -> None:
        self.file.flush()
        if self.tmp is None:        # give the unnamed file a hidden name, then rename it into place
            self.tmp = tempfile.mktemp(prefix=part_prefix(self.path), suffix=".part", dir=self.path.parent)
            os.link(f"/proc/self/fd/{self.file.fileno()}", self.tmp, follow_symlinks=True)
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:   # a full disk fails the last buffered write: the file goes all the same
            pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass


def _unnamed_file(folder: Path, mode: int) -> int | None:
    """A descriptor of an unnamed file in ``folder`` that can later be linked into it, or None
    where the system cannot (no O_TMPFILE, or a file system that refuses the link)."""
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_RDWR, mode)
    except (AttributeError, OSError):
        return None
    probe = tempfile.mktemp(prefix=".landmask-probe.", dir=folder)
    try:
        os.link(f"/proc/self/fd/{fd}", probe, follow_symlinks=True)
        os.unlink(probe)
        os.ftruncate(fd, 0)
        return fd
    except OSError:
        os.close(fd)
        return None


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _copy_tags(target, tags, source=None) -> None:
    """Copy a container's or stream's metadata tags (title, language, ...); the muxer writes its
    own technical ones (encoder, handler, durations).  With ``source`` (a stream) its disposition
    too (default, forced, commentary, ...: which track a player picks)."""
    if source is not None:
        try:
            target.disposition = source.disposition
        except (AttributeError, TypeError, ValueError):
            pass
    for k, v in dict(tags or {}).items():
        if k.lower() in ("encoder", "duration", "handler_name", "vendor_id", "major_brand", "minor_version",
                         "compatible_brands") or k.upper().startswith(("DURATION", "ENCODER", "NUMBER_OF", "_STATISTICS", "BPS")):
            continue
        try:
            target.metadata[k] = v
        except (TypeError, ValueError):
            pass


class VideoWriter:
    """An H.264 (or VP9 for webm) video with audio streams copied from templates, written
    atomically.  ``write(rgb, pts, time_base)``, ``mux(packet)`` for copied audio, then ``close()``
    (or ``abort()``)."""

    def __init__(self, path, width: int, height: int, rate, time_base=None, audio_templates=(),
                 container_format: str | None = None, *, rotation: int = 0, copy_templates=(),
                 metadata=None, video_metadata=None, notes: list | None = None, colour=None):
        av = _av()
        path = Path(path)
        fmt, codec = CONTAINERS.get(path.suffix.lower(), ("mp4", "libx264"))
        fmt = container_format or fmt
        if fmt == "webm":
            codec = "libvpx-vp9"
        options = dict(ENCODER_OPTIONS[codec])
        if fmt == "avi" and codec == "libx264":
            options["bf"] = "0"     # AVI stores no presentation times: B-frames would come out of order
        self.file = AtomicFile(path)
        try:
            self.out = av.open(self.file.file, "w", format=fmt)
            self.stream = self.out.add_stream(codec, rate=rate, options=options)
            self.stream.width, self.stream.height = width, height
            even = width % 2 == 0 and height % 2 == 0
            self.stream.pix_fmt = "yuv420p" if even else "yuv444p"
            if time_base is not None:
                self.stream.codec_context.time_base = time_base
                self.stream.time_base = time_base
            if rotation:
                self.stream.set_display_rotation(float(rotation))
            self.colour = _colour_tags(colour)
            for name, value in self.colour.items():   # as the source said: players read the pixels so
                setattr(self.stream.codec_context, name, value)
            _copy_tags(self.stream, video_metadata)
            _copy_tags(self.out, metadata)
            self.copies = {}       # input stream index → output stream: audio and subtitles copied
            self._pcm = {}       # input stream index → (input stream, resampler): audio decoded to PCM
            for a in audio_templates:
                if fmt == "avi" and a.codec_context.name == "aac":
                    # FFmpeg's AVI muxer writes copied AAC with a fixed-block header, so players
                    # mistime it; the decoded sound goes in as 16-bit PCM instead (AVI's own audio)
                    layout = a.codec_context.layout.name
                    out_a = self.out.add_stream("pcm_s16le", rate=a.codec_context.sample_rate, layout=layout)
                    self.copies[a.index] = out_a
                    self._pcm[a.index] = (a, av.AudioResampler(format="s16", layout=layout,
                                                               rate=a.codec_context.sample_rate))
                    if notes is not None:
                        notes.append(f"audio stream {a.index} (aac) written as PCM: AVI cannot hold copied AAC "
                                     f"with the right timing")
                    _copy_tags(out_a, a.metadata)
                    continue
                try:
                    self.copies[a.index] = self.out.add_stream_from_template(a)
                except (av.FFmpegError, ValueError) as e:
                    raise LandmaskError(f"{path}: cannot copy audio stream {a.index} ({a.codec_context.name}) "
                                        f"into {fmt} ({_reason(e)})") from None
                _copy_tags(self.copies[a.index], a.metadata, a)
            for t in copy_templates:      # subtitles: copied where the container can hold them
                try:
                    self.copies[t.index] = self.out.add_stream_from_template(t)
                except (av.FFmpegError, ValueError) as e:
                    if notes is not None:
                        notes.append(f"{t.type} stream {t.index} ({t.codec_context.name}) not copied: "
                                     f"{fmt} cannot hold it ({_reason(e)})")
                    continue
                _copy_tags(self.copies[t.index], t.metadata, t)
        except BaseException:
            self.file.discard()
            raise
        self.av, self.path, self.frames = av, path, 0
        self._last_dts: dict[int, int] = {}

    def write(self, rgb: np.ndarray, pts=None, time_base=None) -> None:
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.colour:   # RGB → YUV with the source's matrix and range (the encoder's own conversion is BT.601)
            # (matrix and range only: the RGB holds the source's transfer and primaries as decoded, so
            # those are tags on the stream, never a conversion, which would apply them twice)
            frame = frame.reformat(format=self.stream.pix_fmt, dst_colorspace=CONVERTIBLE_MATRICES[self.colour["colorspace"]],
                                   dst_color_range=self.colour.get("color_range"))
        if pts is not None:
            frame.pts, frame.time_base = pts, time_base
        else:
            frame.pts = None
        for packet in self.stream.encode(frame):
            self.out.mux(packet)
        self.frames += 1

    def mux_copy(self, packet) -> None:
        """Mux a packet of a copied (audio or subtitle) stream; packets of streams not copied are dropped."""
        if packet.dts is None and packet.pts is None:      # a demuxer's flush packet
            return
        stream = self.copies.get(packet.stream.index)
        if stream is None:
            return
        if packet.stream.index in self._pcm:
            self._encode_pcm(packet.stream.index, packet.decode())
            return
        last = self._last_dts.get(stream.index)
        if packet.dts is not None and last is not None and packet.dts <= last:
            # repeated decoding times (AAC read back from AVI): the muxer refuses them; the next tick
            packet.dts = last + 1
            if packet.pts is not None and packet.pts < packet.dts:
                packet.pts = packet.dts
        if packet.dts is not None:
            self._last_dts[stream.index] = packet.dts
        packet.stream = stream
        self.out.mux(packet)

    def _encode_pcm(self, index: int, frames) -> None:
        _, resampler = self._pcm[index]
        stream = self.copies[index]
        for frame in frames:
            frame.pts = None
            for f in resampler.resample(frame):
                for p in stream.encode(f):
                    self.out.mux(p)

    def close(self) -> None:
        try:
            for packet in self.stream.encode(None):
                self.out.mux(packet)
            for index, (source, resampler) in self._pcm.items():   # the decoder's and resampler's last samples
                self._encode_pcm(index, source.codec_context.decode(None))
                for f in resampler.resample(None):
                    for p in self.copies[index].encode(f):
                        self.out.mux(p)
                for p in self.copies[index].encode(None):
                    self.out.mux(p)
            self.out.close()
            self.file.commit()
        except BaseException as e:
            self.file.discard()
            failed = write_error(e) or (e if isinstance(e, OSError) else None)
            if failed is not None:   # a full disk, a quota, a folder in the way: the file's error, not a traceback
                raise LandmaskError(f"{self.path}: cannot write ({failed.strerror or failed})") from None
            raise

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:
            pass
        self.file.discard()
        # FFmpeg's encoders go now: left to the garbage collector at exit (an error's traceback can
        # hold this writer in a cycle), an opened encoder's threads could hang the exit
        self.out = self.stream = None
        self.copies, self._pcm = {}, {}


class BackgroundWriter:
    """A VideoWriter whose encoding and muxing run on a thread of their own (FFmpeg's encoders
    run without Python's lock), so decoding, faces and masking of the next frames go on meanwhile.
    Same methods as VideoWriter; an encoding error comes back from the next call."""

    def __init__(self, writer: VideoWriter, depth: int = 8):
        import queue
        import threading
        self.writer, self.error = writer, None
        self.queue = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, name="landmask-encoder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    item[0](*item[1:])
                except BaseException as e:   # handed to the caller's thread
                    self.error = e

    def _put(self, *item) -> None:
        if self.error is not None:
            raise self.error   # the caller then aborts (mask_video's finally), which releases the encoders
        self.queue.put(item)

    def write(self, rgb, pts=None, time_base=None) -> None:
        self._put(self.writer.write, rgb, pts, time_base)

    def mux_copy(self, packet) -> None:
        self._put(self.writer.mux_copy, packet)

    def _finish(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def close(self) -> None:
        self._finish()
        if self.error is not None:
            self.writer.abort()
            error, self.error = self.error, None   # its traceback holds this object: no cycle left behind
            raise error
        self.writer.close()

    def abort(self) -> None:
        self.error = self.error or RuntimeError("aborted")
        self._finish()
        self.writer.abort()


def _frames_of(container, vstream, copied, path):
    """Demux once: yields ('copy', packet) for the streams in ``copied`` and ('video', av.VideoFrame)
    of ``vstream``, in file order."""
    from collections import deque
    av = _av()
    vstream.thread_type = "AUTO"
    n = 0
    # AVI stores decoding times only, and FFmpeg hands them on as the frames' times, out of order
    # where there are B-frames.  Decoding times arrive in order, so the k-th frame shown takes the
    # k-th decoding time of a picture: frame times in order, gaps (dropped frames) and start kept.
    avi = "avi" in (container.format.name or "").split(",")
    times = deque()
    try:
        for packet in container.demux(vstream, *copied):
            if packet.stream.index != vstream.index:
                yield "copy", packet
                continue
            if avi and packet.size and packet.dts is not None:
                times.append(packet.dts)
            for frame in packet.decode():
                n += 1
                if avi and times:
                    frame.pts = times.popleft()
                yield "video", frame
    except av.FFmpegError as e:
        raise LandmaskError(f"{path}: cannot decode the video after frame {n} ({_reason(e)}): "
                            "truncated or corrupt") from None


class Prefetch:
    """Runs a generator on a thread of its own, ``depth`` items ahead of the consumer (decoding and
    colour conversion run without Python's lock, beside the faces and masking of earlier frames).
    Iterate it; errors come out where they happened in the sequence; ``close()`` stops and joins
    the thread (before its source may be closed)."""

    def __init__(self, gen, depth: int = 8):
        import queue
        import threading
        self.queue, self.stopped, self._full = queue.Queue(depth), threading.Event(), queue.Full
        self.thread = threading.Thread(target=self._run, args=(gen,), name="landmask-decoder", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except self._full:
                continue
        return False

    def _run(self, gen) -> None:
        try:
            for item in gen:
                if not self._put(("item", item)):
                    return
        except BaseException as e:   # handed to the consumer at this point of the sequence
            self._put(("error", e))
            return
        self._put(("end", None))

    def __iter__(self):
        while True:
            kind, item = self.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


def _decoded(container, v, copied, src, rotation: int = 0):
    """('copy', packet) and ('video', (upright rgb, time s or None, pts, time_base)) in file order."""
    for kind, item in _frames_of(container, v, copied, src):
        if kind == "copy":
            yield kind, item
        else:
            yield kind, (upright(item.to_ndarray(format="rgb24"), rotation),
                         None if item.time is None else float(item.time), item.pts, item.time_base)


def mask_video(src, dst, masker: VideoMasker, reporter: Reporter = Reporter(), threaded: bool = True) -> dict:
    """Mask every frame of the video ``src`` into ``dst`` (same size, frame rate, frame times and
    audio packets).  Returns {"frames", "frames_with_faces", "tracks", "seconds"}."""
    src, dst = Path(src), Path(dst)
    container, v, info = open_video(src)
    t0 = time.monotonic()
    masker.reset()
    masker.fps = info.fps
    writer = reader = None
    stats = {"frames": 0, "frames_with_faces": 0}
    notes = []
    if info.other_video:
        notes.append(f"masked video stream {info.stream}; {info.other_video} other video stream(s) "
                     f"(thumbnails, other angles) not copied")
    data = [s for s in container.streams if s.type not in ("video", "audio", "subtitle")]
    if data:
        notes.append(f"{len(data)} data/attachment stream(s) not copied")
    try:
        astreams = list(container.streams.audio)
        subs = list(container.streams.subtitles)
        fmt = None
        if dst.suffix.lower() not in CONTAINERS:   # named otherwise (VID_0001, clip.dat): the source's own container
            with open(src, "rb") as f:
                fmt = sniff_video(f.read(16))
        odd = sorted({a.codec_context.name for a in astreams} - {"opus", "vorbis"})
        if dst.suffix.lower() == ".webm" and odd:     # WebM holds Opus and Vorbis only; Matroska holds the rest
            fmt = "matroska"
            notes.append(f"its audio ({', '.join(odd)}) cannot go in WebM: written as Matroska under the same name")
        writer = VideoWriter(dst, info.width, info.height, v.average_rate or v.guessed_rate or 30,
                             v.time_base, astreams, fmt, rotation=info.rotation, copy_templates=subs,
                             metadata=container.metadata, video_metadata=v.metadata, notes=notes,
                             colour=v.codec_context)
        copied = astreams + [s for s in subs if s.index in writer.copies]
        writer = BackgroundWriter(writer) if threaded else writer
        frames = _decoded(container, v, copied, src, info.rotation)
        if threaded:      # three stages: decode | faces + mask | encode
            frames = reader = Prefetch(frames)
        # frame times that do not increase (a damaged file) are renumbered: the encoder refuses them
        step = max(1, round(1 / (info.fps * float(v.time_base)))) if v.time_base and info.fps else 1
        last = None
        for kind, item in frames:
            if kind == "copy":
                writer.mux_copy(item)
                continue
            rgb, t, pts, time_base = item
            if pts is not None and last is not None and pts <= last:
                pts = last + step
                time_base, t = v.time_base, float(pts * v.time_base)
            last = pts if pts is not None else last
            masked, faces = masker.process(rgb, t)
            frame = stored(masked, info.rotation)
            if frame.shape[:2] != (info.height, info.width):   # the size changed mid-stream (a recording turned)
                if not any(n.startswith("the frame size changes") for n in notes):
                    notes.append(f"the frame size changes from {info.width}×{info.height} to {frame.shape[1]}×"
                                 f"{frame.shape[0]} at frame {stats['frames'] + 1}: such frames are fitted into "
                                 f"{info.width}×{info.height} with black bars")
                frame = letterbox(frame, info.width, info.height)
            writer.write(frame, pts, time_base)
            stats["frames"] += 1
            stats["frames_with_faces"] += bool(faces)
            n = stats["frames"]
            reporter.frames(n, info.frames, n / max(time.monotonic() - t0, 1e-6), str(src))
        if stats["frames"] == 0:
            raise LandmaskError(f"{src}: no frame could be decoded (truncated or corrupt)")
        writer.close()
        writer = None
    finally:
        if reader is not None:
            reader.close()       # the decoding thread stops before its container closes
        if writer is not None:
            writer.abort()
        container.close()
    stats["tracks"] = masker.tracker.next_id
    stats["seconds"] = time.monotonic() - t0
    for note in notes:   # streams left out or a container changed: said even with --quiet
        reporter.warn(f"{src}: {note}")
    if info.frames and stats["frames"] < info.frames - 1:
        reporter.warn(f"{src}: {stats['frames']} frames decoded, the header says {info.frames} (a truncated file?)")
    elif info.frames and stats["frames"] != info.frames:
        reporter.info(f"{src}: {stats['frames']} frames decoded, the header says {info.frames}")
    if stats["frames"] != info.frames:    # the bar ends at the frames there were
        reporter.frames(stats["frames"], stats["frames"], stats["frames"] / max(stats["seconds"], 1e-6), str(src))
    return stats


def video_landmarks(src, landmarker, smooth: bool | float = True, detect_every: int = 10,
                    reporter: Reporter = Reporter()) -> dict:
    """Per-frame tracked landmarks of a video: {"video": {...}, "frames": [{"index", "time",
    "faces": [{"track", "box", "score", "points"}]}]}."""
    src = Path(src)
    container, v, info = open_video(src)
    masker = VideoMasker(landmarker, lips="none", smooth=smooth, detect_every=detect_every, fps=info.fps)
    frames, t0 = [], time.monotonic()
    try:
        for kind, frame in _frames_of(container, v, [], src):
            rgb = upright(frame.to_ndarray(format="rgb24"), info.rotation)
            t = float(frame.time) if frame.time is not None else len(frames) / info.fps
            faces = masker.faces(rgb, t)
            frames.append({"index": len(frames), "time": round(t, 4), "faces": [face_record(f) for f in faces]})
            reporter.frames(len(frames), info.frames, len(frames) / max(time.monotonic() - t0, 1e-6), str(src))
    finally:
        container.close()
    if not frames:
        raise LandmaskError(f"{src}: no frame could be decoded (truncated or corrupt)")
    video = info.to_dict()
    video["frames"] = len(frames)
    video["scheme"] = landmarker.scheme
    return {"video": video, "frames": frames}


# ---------------------------------------------------------------- batches (called by the CLI)

def split_inputs(inputs) -> tuple[list, list]:
    """(inputs with videos, inputs for the photo batch): a video file goes to the first, any other
    file to the second; a folder goes to the first if it holds a video and to the second if it
    holds a photo or no video (so an empty folder still gets the photo batch's message)."""
    from landmask.batch import walk_images
    videos, photos = [], []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            has_videos = bool(_walk_videos(p))
            if has_videos:
                videos.append(raw)
            if not has_videos or walk_images(p):
                photos.append(raw)
        else:
            (videos if p.is_file() and named_or_is_video(p) else photos).append(raw)
    return videos, photos


def _walk_videos(root: Path, exclude: Path | None = None) -> list[Path]:
    """Video files under ``root``, sorted: found by content (image files are not opened), and files
    named as videos whose content is not one (so the batch reports them rather than passing over
    them).  Regular files only (a FIFO or a device is never opened); hidden files (temporaries
    among them) and hidden folders (.git, .Trash, caches: read by content, their blobs could pass
    for videos) are skipped; otherwise folders are walked as for photos (batch.walk_files)."""
    import stat
    from landmask.batch import walk_files
    from landmask.imageio import is_image_path

    def keep(f: Path) -> bool:
        if f.name.startswith(".") or is_image_path(f):
            return False
        try:
            if not stat.S_ISREG(os.stat(f).st_mode):
                return False
        except OSError:
            return False
        return named_or_is_video(f)
    return sorted(walk_files(root, keep, exclude, skip_hidden_folders=True))


def expand_videos(inputs, exclude: Path | None = None, base: str | None = None) -> list[tuple[Path, Path]]:
    """(video file, output path relative to -o) for the video files given and those under the
    folders given, laid out from ``base`` as the photo batch lays out photos (default:
    batch.layout_base of these inputs)."""
    from landmask.batch import layout_base
    inputs = [Path(p) for p in inputs]
    base = (layout_base(inputs) if inputs else "") if base is None else base
    out, seen = [], set()
    for p in inputs:
        for f in (_walk_videos(p, exclude) if p.is_dir() else [p] if named_or_is_video(p) else []):
            key = os.path.abspath(f)
            if key not in seen:
                seen.add(key)
                out.append((f, Path(os.path.relpath(key, base) if base else key.lstrip(os.sep))))
    return out


def mask_videos(inputs, out_dir, landmarker, *, lips=None, eyes=None, eyebrows=None, face=None, feather=None,
                smooth: bool | float = True, detect_every: int = 10, overwrite: bool = False,
                base: str | None = None, draw: bool = False, reporter: Reporter = Reporter(),
                single: bool | None = None):
    """Mask every video in ``inputs`` (files and folders) into ``out_dir``, keeping the folder
    layout and each file's name; one line per bad file, the batch goes on.  Returns a
    landmask.batch.Summary."""
    from landmask.batch import Summary, remove_stale_parts, single_output
    masker = VideoMasker(landmarker, lips=lips, eyes=eyes, eyebrows=eyebrows, face=face, feather=feather,
                         smooth=smooth, detect_every=detect_every, draw=draw)   # bad options fail before any file
    if single is None:     # -o masked.mp4 for one video: that file (the CLI decides for photos and videos at once)
        single = single_output(inputs, out_dir, VIDEO_SUFFIXES)
    out_dir = Path(out_dir)
    pairs = ([(Path(inputs[0]), out_dir)] if single
             else [(f, out_dir / rel) for f, rel in expand_videos(inputs, exclude=out_dir, base=base)])
    sources = {f.resolve() for f, _ in pairs}
    remove_stale_parts({dst.parent for _, dst in pairs})
    s = Summary()
    for src, dst in pairs:
        if dst.resolve() in sources:
            s.failed.append(f"{src}: the output {dst} would overwrite an input; choose another -o")
            continue
        if dst.is_dir():
            s.failed.append(f"{src}: the output {dst} is a folder; move it or choose another -o")
            continue
        if dst.exists() and not overwrite:
            s.skipped += 1
            continue
        try:
            r = mask_video(src, dst, masker, reporter)
        except LandmaskError as e:
            s.failed.append(str(e))
            continue
        except Exception as e:   # an item never stops the batch; say which file it was
            full = write_error(e)
            if full is not None:   # the disk filled up while writing (mid-stream)
                s.failed.append(f"{src}: cannot write {dst} ({full.strerror})")
            elif type(e).__module__.startswith("av"):   # FFmpeg refused something (a codec the container cannot hold)
                s.failed.append(f"{src}: FFmpeg cannot write {dst.name} ({_ffmpeg_reason(e)})")
            else:
                s.failed.append(f"{src}: unexpected error ({type(e).__name__}: {e})")
            continue
        if r["frames_with_faces"] == 0:
            s.no_face += 1
            reporter.info(f"{src}: no face found in any frame (re-encoded, nothing masked)")
        else:
            s.done += 1
        reporter.info(f"{src} -> {dst}: {r['frames']} frames, a face in {r['frames_with_faces']}, "
                      f"{r['tracks']} track(s), {r['frames'] / max(r['seconds'], 1e-6):.1f} fps")
    return s


def landmarks_with_videos(videos, others, landmarker, json_path=None, csv_path=None, smooth=1.0,
                          detect_every: int = 10, reporter: Reporter = Reporter()):
    """``landmask landmarks`` over inputs with videos: photos as landmask.batch.landmarks_files
    does; each video as ``video_landmarks``.  One video alone gives its record itself
    ({"video", "frames"}); otherwise a list of records, each video's with its "file".
    Returns (records, Summary)."""
    import json
    from landmask.batch import Summary, landmarks_files
    from landmask.imageio import write_text_atomic
    items = [f for f, _ in expand_videos(videos)]
    if csv_path and items:
        raise LandmaskError("--csv: video landmarks are written as JSON only (--json FILE)")
    records, s = landmarks_files(others, landmarker, None, csv_path, reporter) if others else ([], Summary())
    for src in items:
        try:
            r = video_landmarks(src, landmarker, smooth, detect_every, reporter)
        except LandmaskError as e:
            s.failed.append(str(e))
            records.append({"file": str(src), "error": str(e)})
            continue
        found = any(f["faces"] for f in r["frames"])
        s.done += found
        s.no_face += not found
        records.append({"file": str(src), **r})
    if len(records) == 1 and not others and "video" in records[0]:
        records = {k: v for k, v in records[0].items() if k != "file"}
    if json_path and json_path != "-":
        write_text_atomic(json_path, json.dumps(records, separators=(",", ":")) + "\n")
    return records, s
