"""Live masking from a camera or a stream: frames from a camera index (OpenCV) or any URL FFmpeg
reads (PyAV), masked frame by frame by a VideoMasker (tracking, smoothing), written to a video
file and/or shown on a loopback MJPEG page; Ctrl-C finishes the file cleanly (``landmask camera``)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from landmask.errors import LandmaskError, Terminated
from landmask.report import Reporter
from landmask.video import (VideoMasker, VideoWriter, _av, _frames_of, _reason, frame_rotation, main_video_stream,
                            upright, write_error)


class FrameSource:
    """Frames from a camera (``device``: an index, opened by OpenCV) or any stream or file FFmpeg
    reads (``url``: rtsp://, http://, a file; opened by PyAV).  ``read()`` → RGB frame or None at the
    end.  A file plays at its own frame rate, as a live stream would deliver it."""

    def __init__(self, device: int | None = None, url: str | None = None):
        self.cap = self.container = None
        self.name = url if url is not None else f"camera {device}"
        if url is None:
            import cv2
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)   # our message says why
            try:
                self.cap = cv2.VideoCapture(int(device or 0))
            finally:
                cv2.utils.logging.setLogLevel(level)
            if not self.cap.isOpened():
                raise LandmaskError(f"--device {device}: cannot open the camera (is it connected, and free?)")
            self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
            return
        av = _av()
        options = {"rtsp_transport": "tcp"} if url.startswith("rtsp") else {}
        try:
            self.container = av.open(url, "r", options=options, timeout=10)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise LandmaskError(f"--url {url}: cannot open the stream ({_reason(e)})") from None
        if not self.container.streams.video:
            raise LandmaskError(f"--url {url}: no video stream")
        v = main_video_stream(self.container) or self.container.streams.video[0]
        rate = v.average_rate or v.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.pace = Path(url).is_file()
        self._frames = _frames_of(self.container, v, [], url)
        self.t0 = None

    def read(self) -> np.ndarray | None:
        if self.cap is not None:
            ok, bgr = self.cap.read()
            return bgr[..., ::-1].copy() if ok else None
        frame = next((f for _, f in self._frames), None)
        if frame is None:
            return None
        if self.pace and frame.time is not None:
            now = time.monotonic()
            self.t0 = self.t0 if self.t0 is not None else now - float(frame.time)
            wait = self.t0 + float(frame.time) - now
            if wait > 0:
                time.sleep(wait)
        return upright(frame.to_ndarray(format="rgb24"), frame_rotation(frame))

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
        if self.container is not None:
            self.container.close()


class MjpegServer:
    """The latest masked frame as an MJPEG stream on http://HOST:PORT/ (any browser shows it; no
    GUI toolkit needed).  Loopback only by default."""

    def __init__(self, port: int = 8001, host: str = "127.0.0.1"):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.jpeg, self.cond = None, threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path not in ("/", "/stream.mjpg"):
                    self.send_error(404)
                    return
                if self.path == "/":
                    body = b"<!doctype html><title>landmask camera</title><body style='margin:0;background:#111'>" \
                           b"<img src='/stream.mjpg' style='max-width:100%'></body>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                last = None
                try:
                    while True:
                        with server.cond:
                            server.cond.wait_for(lambda: server.jpeg is not last, timeout=5)
                            last = server.jpeg
                        if last is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(last)).encode() + b"\r\n\r\n" + last + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, rgb: np.ndarray) -> None:
        from landmask.imageio import encode_image
        jpeg = encode_image(rgb, "jpeg", 85)
        with self.cond:
            self.jpeg = jpeg
            self.cond.notify_all()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _stop_on_ctrl_c():
    """(event, restore, how): a first Ctrl-C or SIGTERM only sets the event, which the frame loop
    reads between frames, and ``how["by"]`` says which ("Ctrl-C" or "SIGTERM").  A KeyboardInterrupt
    (or errors.Terminated) raised inside PyAV's decoding can leave FFmpeg's decoder threads waiting, so
    that closing the stream hangs, or be swallowed by one of its callbacks (both seen with a Ctrl-C
    early in a stream); a second signal still interrupts at once (a source that sends no frames).
    ``restore()`` puts the previous handlers back.  Off the main thread (no signal handlers there)
    only the event, and ``restore`` does nothing."""
    import signal
    import threading
    stop, how = threading.Event(), {"by": "Ctrl-C", "sig": None}
    if threading.current_thread() is not threading.main_thread():
        return stop, lambda: None, how

    def handler(signum, frame):
        if stop.is_set():   # the second: at once (a SIGTERM, first or second, keeps its exit status)
            raise Terminated() if signal.SIGTERM in (signum, how["sig"]) else KeyboardInterrupt
        how["by"], how["sig"] = ("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"), signum
        stop.set()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    return stop, lambda: [signal.signal(sig, h) for sig, h in previous.items()], how


def run_camera(source: FrameSource, masker: VideoMasker, out=None, show: MjpegServer | None = None,
               reporter: Reporter = Reporter(), max_frames: int | None = None) -> dict:
    """Mask a live source until it ends, ``max_frames`` or Ctrl-C; ``out`` (a video file) is
    finished cleanly either way.  Returns {"frames", "fps", "frames_with_faces", "interrupted",
    "stopped_by" ("Ctrl-C", "SIGTERM" or None), "seconds"}."""
    from fractions import Fraction
    writer, n, with_faces, interrupted, stopped_by = None, 0, 0, False, "Ctrl-C"
    stop, restore, how = _stop_on_ctrl_c()
    t0 = time.monotonic()
    last_pts = -1
    try:
        while (max_frames is None or n < max_frames) and not stop.is_set():
            rgb = source.read()
            if rgb is None:
                break
            now = time.monotonic() - t0
            masked, faces = masker.process(rgb, now)
            if out is not None:
                if writer is None:
                    try:
                        writer = VideoWriter(out, rgb.shape[1], rgb.shape[0], Fraction(round(source.fps * 1000), 1000),
                                             Fraction(1, 1000))
                    except OSError as e:   # the recording cannot be made (a full disk, a read-only folder)
                        raise LandmaskError(f"{out}: cannot write ({e.strerror or e})") from None
                last_pts = max(last_pts + 1, round(now * 1000))   # wall-clock times: a live source's frame times
                writer.write(masked, last_pts, Fraction(1, 1000))
            if show is not None:
                show.publish(masked)
            n += 1
            with_faces += bool(faces)
            reporter.frames(n, None, n / max(time.monotonic() - t0, 1e-6), source.name)
    except KeyboardInterrupt as e:   # Ctrl-C, or SIGTERM (errors.Terminated): the recording is finished either way
        interrupted, stopped_by = True, getattr(e, "signal_name", "Ctrl-C")
    except Exception as e:   # a full disk: nothing half-written is left (any other error: what was recorded is kept)
        full = write_error(e)
        if full is None or writer is None:
            raise
        writer.abort()
        writer = None
        raise LandmaskError(f"{out}: cannot write ({full.strerror or full})") from None
    finally:
        restore()   # from here a Ctrl-C interrupts again (while finishing: no partial file)
        if stop.is_set() and not interrupted:
            interrupted, stopped_by = True, how["by"]
        source.close()
        if writer is not None:
            try:
                writer.close()
            except KeyboardInterrupt:    # a second Ctrl-C while finishing: leave no partial file
                writer.abort()
                raise
    seconds = time.monotonic() - t0
    return {"frames": n, "fps": n / max(seconds, 1e-6), "frames_with_faces": with_faces,
            "interrupted": interrupted, "stopped_by": stopped_by if interrupted else None, "seconds": seconds}
