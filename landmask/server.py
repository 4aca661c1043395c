"""landmask over HTTP: a FastAPI app with the photo page, the camera page and the /v1 API.

``create_app(settings)`` builds the app; the models are loaded once per worker process in the
lifespan and reach the routes as a dependency; every limit lives in ``Settings``.  Requests are
stateless (a photo in, a masked photo or JSON out; nothing is written to disk), so any number of
workers or machines can serve behind a load balancer.  The camera page's WebSocket keeps its
tracking state per connection only.  Needs the ``serve`` extra: ``pip install 'landmask[serve]'``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import cv2
import numpy as np
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

import landmask
from landmask import imageio

STATIC = Path(__file__).parent / "static"
EFFECT_FIELDS = ("lips", "eyes", "eyebrows", "face")
FORM_FIELDS = ("image",) + EFFECT_FIELDS + ("feather", "format")
OUTPUT_FORMATS = ("jpeg", "png", "webp")   # what `format` may ask for (default: the input's own)
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "bmp": "image/bmp",
               "tiff": "image/tiff", "gif": "image/gif", "pnm": "image/x-portable-anymap",
               "pam": "image/x-portable-arbitrarymap"}
SETTINGS_ENV = "LANDMASK_SERVE_SETTINGS"   # how `landmask serve --workers N` hands settings to workers


@dataclass(frozen=True)
class Settings:
    """Everything the server is configured by: the models and every limit."""
    model: str | None = None             # landmark model (None: the default ibug68, as ibug68-int8 where the CPU has 8-bit dot products)
    detector: str = "landmask"
    scout: str = "auto"                  # first-pass model (landmask.load's scout)
    detect_size: int | None = None
    min_face: float | None = None         # detector options, as landmask.load takes them
    max_faces: int | None = None
    min_score: float | None = None
    threads: int = 1                      # ONNX Runtime threads per inference call
    max_upload_bytes: int = 20 * 2**20    # a request body larger than this is refused (413) unread
    max_pixels: int = 40_000_000          # width × height, checked from the header before decoding
    timeout_s: float = 15.0               # whole request, queueing included (503 after it)
    concurrency: int = 0                  # inference calls at once per worker (0: the CPU count)
    max_frame_bytes: int = 2 * 2**20      # one camera frame over the WebSocket
    max_frame_pixels: int = 1920 * 1080

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        return cls(**json.loads(text))


class ApiError(Exception):
    """A request that cannot be served, answered as ``{"error": message}``: a mistake in it (4xx)
    or the server too busy to finish it in time (503)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- the app

def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app.  The landmarker is loaded once, when the app starts (the lifespan)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # parallelism comes from serving requests side by side (``concurrency`` at once), so each
        # one's OpenCV calls get ``threads`` threads, as its ONNX Runtime calls do
        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(settings.threads)
        app.state.landmarker = load_landmarker(settings)
        app.state.limiter = anyio.CapacityLimiter(settings.concurrency or os.cpu_count() or 1)
        yield
        cv2.setNumThreads(cv_threads)

    # docs_url/redoc_url off: FastAPI's doc pages load their scripts from a CDN; the schema stays
    # at the usual /openapi.json
    app = FastAPI(title="landmask", version=landmask.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Facial landmarks and lip/eye masking. Effects are `EFFECT[:VALUE][@OPACITY]` "
                              "strings as in the CLI: `color:#b0123a@0.6`, `solid:black`, `blur`, "
                              "`pixelate:8`, `none`.")
    app.state.settings = settings
    add_error_handlers(app)
    add_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (settings come through the environment)."""
    text = os.environ.get(SETTINGS_ENV)
    return create_app(Settings.from_json(text) if text else Settings())


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_landmarker(request: Request):
    return request.app.state.landmarker


def add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error": "..."}``; user mistakes are 4xx, never 5xx."""

    @app.exception_handler(ApiError)
    async def user_error(request, exc: ApiError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(landmask.LandmaskError)
    async def landmask_error(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        msgs = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(msgs) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):   # a bug, not the user's fault: say so, briefly
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)


# ---------------------------------------------------------------- reading a request

MULTIPART_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, WebP, "
                                                                                 "BMP, TIFF, PNM)"},
                   "lips": {"type": "string", "example": "color:#b0123a@0.6"},
                   "eyes": {"type": "string", "example": "blur"},
                   "eyebrows": {"type": "string", "example": "none"},
                   "face": {"type": "string", "example": "pixelate"},
                   "feather": {"type": "number", "description": "soft edge in pixels"},
                   "format": {"type": "string", "enum": list(OUTPUT_FORMATS),
                              "description": "/v1/mask: the output's format (default: the input's)"}}}}}}}


async def read_form(request: Request, settings: Settings) -> dict:
    """The multipart form, kept in memory (never spooled to disk), the body capped at
    ``max_upload_bytes`` before it is read.  Returns ``{"image": (bytes, name), field: str}``."""
    if request.query_params:
        raise ApiError(f"options go in the multipart form, not in the query string (got "
                       f"{', '.join(sorted(set(request.query_params.keys())))})")
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError("send the photo as multipart/form-data in the field 'image' "
                        f"(got content type {ctype or 'none'!r})", 415)
    limit = settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(f"upload too large ({int(length):,} bytes; the limit is {limit:,})", 413)
    parser = MultiPartParser(request.headers, _capped(request.stream(), limit), max_files=1,
                             max_fields=len(FORM_FIELDS), max_part_size=64 * 1024)
    parser.spool_max_size = limit + 1    # the body is capped at `limit`, so no file part ever rolls to disk
    try:
        form = await parser.parse()
    except ClientDisconnect:   # the client went away mid-upload: nobody to answer, nothing to log
        raise ApiError("the client disconnected during the upload", 400) from None
    except MultiPartException as e:
        if "exceeded maximum size" in e.message:    # a text field over 64 KB: most likely a photo sent without a filename
            raise ApiError(f"malformed multipart form: {e.message} (a text field; send the photo as a file "
                           "upload, with a filename, in the field 'image')") from None
        raise ApiError(f"malformed multipart form: {e.message}") from None
    out = {}
    for key, value in form.multi_items():
        if key in out:
            raise ApiError(f"the field {key!r} is given twice; give each field once")
        if key not in FORM_FIELDS:
            close = difflib.get_close_matches(key, FORM_FIELDS, n=1)
            raise ApiError(f"unknown form field {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; the fields are {', '.join(FORM_FIELDS)}")
        if key == "image":
            if not isinstance(value, UploadFile):
                raise ApiError("the field 'image' must be a file upload, not text")
            out["image"] = (await value.read(), value.filename or "image")
        elif isinstance(value, UploadFile):
            raise ApiError(f"the field {key!r} must be text, not a file")
        else:
            out[key] = value
    if "image" not in out:
        raise ApiError("no 'image' field: send the photo as a file in the multipart field 'image'")
    return out


async def _capped(stream, limit: int):
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise ApiError(f"upload too large (over {limit:,} bytes)", 413)
        yield chunk


def effect_options(form: dict) -> dict:
    """lips/eyes/eyebrows/face/feather from the form, checked before any decoding (absent = None,
    which with every part absent means the library's defaults)."""
    opts = {k: (form[k].strip() or None) if k in form else None for k in EFFECT_FIELDS}
    feather = form.get("feather", "").strip()
    try:
        opts["feather"] = float(feather) if feather else None
    except ValueError:
        raise ApiError(f"feather {feather!r} is not a number (pixels)") from None
    if opts["feather"] is not None and not 0 <= opts["feather"] <= 1000:
        raise ApiError(f"feather {feather!r} must be between 0 and 1000 pixels")
    check_effects(opts)
    return opts


def check_effects(opts: dict) -> None:
    """Refuse bad effect strings up front: masking a 1×1 image with no faces parses every effect."""
    try:
        landmask.mask(np.zeros((1, 1, 3), np.uint8), [], **opts)
    except landmask.LandmaskError as e:
        raise ApiError(str(e).removeprefix("--")) from None


def decode(data: bytes, name: str, max_pixels: int, mode: str = "keep"):
    """(pixels, Metadata: format, EXIF, ICC) of uploaded bytes; the content decides, never the name.
    The server's pixel limit is checked from the header, before decoding."""
    kind = imageio.sniff(data) if data else None
    size = imageio.header_size(data, kind) if kind else None
    if size is not None and size[0] * size[1] > max_pixels:
        raise ApiError(f"{name}: image too large ({size[0]}×{size[1]} pixels; the limit is {max_pixels:,})", 413)
    image, meta = imageio.decode_with_metadata(data, mode=mode, name=name)   # empty, non-image, truncated...
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ApiError(f"{name}: image too large ({image.shape[1]}×{image.shape[0]} pixels; "
                        f"the limit is {max_pixels:,})", 413)
    return image, meta


async def run_limited(request: Request, fn, *args):
    """Run blocking work (models, codecs) in a thread, at most ``concurrency`` at once per worker.
    A timed-out request still holds its slot until its thread ends (not abandoned), so overload
    never runs more model threads than ``concurrency``; the timeout cuts the wait for a slot."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=request.app.state.limiter, abandon_on_cancel=False)


async def with_timeout(settings: Settings, coro, progress: dict | None = None):
    """The request's result, or an error when it took longer than ``timeout_s``: 408 while the
    upload was still arriving (``progress["read"]`` not yet set: a slow client), 503 after it (the
    server too busy; the wait for a slot is cut short; work already running in a thread ends
    first, see run_limited)."""
    start = anyio.current_time()
    with anyio.move_on_after(settings.timeout_s) as scope:
        result = await coro
    if scope.cancelled_caught or anyio.current_time() - start > settings.timeout_s:
        if progress is not None and not progress.get("read"):
            raise ApiError(f"the upload took longer than {settings.timeout_s:g} s to arrive; send it over a "
                           "faster connection or send a smaller photo", 408)
        raise ApiError(f"the request took longer than {settings.timeout_s:g} s; try again or send a "
                       "smaller photo", 503)
    return result


# ---------------------------------------------------------------- routes

def output_format(form: dict) -> str | None:
    fmt = form.get("format", "").strip().lower() or None
    if fmt is not None and fmt not in OUTPUT_FORMATS + ("jpg",):
        raise ApiError(f"format {form['format']!r}: use {', '.join(OUTPUT_FORMATS)} (or leave it out for the "
                       "input's own format)")
    return "jpeg" if fmt == "jpg" else fmt


def mask_bytes(landmarker, data: bytes, name: str, opts: dict, max_pixels: int,
               fmt: str | None = None) -> tuple[bytes, str, int]:
    """Decode → faces → mask → encode (in ``fmt``, by default the input's format; its EXIF and
    colour profile kept).  Returns (bytes, format, faces)."""
    image, meta = decode(data, name, max_pixels)
    faces = landmarker.faces(image)
    out = landmask.mask(image, faces, **opts) if faces else image
    fmt = fmt or imageio.own_format(meta.fmt, data)
    return imageio.encode_image(out, fmt, metadata=meta), fmt, len(faces)


def landmarks_json(landmarker, data: bytes, name: str, max_pixels: int) -> dict:
    image, _ = decode(data, name, max_pixels)
    return {"width": int(image.shape[1]), "height": int(image.shape[0]),
            "faces": [f.to_dict() for f in landmarker.faces(image)]}   # as `landmask landmarks --json`


def add_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def photo_page():
        return FileResponse(STATIC / "index.html")

    @app.get("/camera", include_in_schema=False)
    async def camera_page():
        return FileResponse(STATIC / "camera.html")

    @app.get("/healthz", summary="liveness: the model is loaded and the worker answers")
    async def healthz(landmarker=Depends(get_landmarker)):
        return {"status": "ok", "scheme": landmarker.scheme, "version": landmask.__version__}

    @app.post("/v1/mask", openapi_extra=MULTIPART_SCHEMA, response_class=Response,
              summary="mask a photo: the masked photo comes back in the input's format (or `format`)",
              responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}}})
    async def mask_route(request: Request, settings: Settings = Depends(get_settings),
                         landmarker=Depends(get_landmarker)):
        progress = {}

        async def work():
            form = await read_form(request, settings)
            progress["read"] = True
            opts, fmt = effect_options(form), output_format(form)
            data, name = form["image"]
            return await run_limited(request, mask_bytes, landmarker, data, name, opts, settings.max_pixels, fmt)
        body, kind, n = await with_timeout(settings, work(), progress)
        return Response(body, media_type=MEDIA_TYPES.get(kind, "application/octet-stream"),
                        headers={"X-Landmask-Faces": str(n)})

    @app.post("/v1/landmarks", openapi_extra=MULTIPART_SCHEMA,
              summary='every face: {"faces": [{"box", "score", "points": [[x, y], ...], "named": {...}, '
                      '"confidence": [...]}]}')
    async def landmarks_route(request: Request, settings: Settings = Depends(get_settings),
                              landmarker=Depends(get_landmarker)):
        progress = {}

        async def work():
            form = await read_form(request, settings)
            progress["read"] = True
            extra = sorted(set(form) - {"image"})
            if extra:
                raise ApiError(f"/v1/landmarks takes only the field 'image' (got {', '.join(extra)})")
            data, name = form["image"]
            return await run_limited(request, landmarks_json, landmarker, data, name, settings.max_pixels)
        return await with_timeout(settings, work(), progress)

    @app.websocket("/v1/stream")
    async def stream_route(ws: WebSocket):
        await camera_stream(ws, ws.app.state.settings, ws.app.state.landmarker)


# ---------------------------------------------------------------- the camera page's stream

async def camera_stream(ws: WebSocket, settings: Settings, landmarker) -> None:
    """One camera: text messages set the effects (JSON, the form's fields plus ``smooth``); each
    binary message is a JPEG frame, answered by a JSON line (faces, track ids, server ms) and the
    masked frame as JPEG.  Tracking and smoothing state lives in this connection only."""
    await ws.accept()
    masker = make_video_masker(landmarker, {}, True)
    start = time.monotonic()    # frame times for the smoothing filter: when each frame arrived
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                try:
                    masker = make_video_masker(landmarker, *stream_settings(msg["text"]))
                    await ws.send_json({"ok": "settings"})
                except (ApiError, landmask.LandmaskError) as e:
                    await ws.send_json({"error": str(e)})
                continue
            data = msg.get("bytes") or b""
            if len(data) > settings.max_frame_bytes:
                await ws.send_json({"error": f"frame too large ({len(data):,} bytes; the limit is "
                                             f"{settings.max_frame_bytes:,})", "frame": True})
                continue
            t0 = time.monotonic()
            try:
                out, faces = await anyio.to_thread.run_sync(
                    stream_frame, masker, data, t0 - start, settings.max_frame_pixels,
                    limiter=ws.app.state.limiter)
            except (ApiError, landmask.LandmaskError) as e:
                await ws.send_json({"error": str(e), "frame": True})
                continue
            await ws.send_json({"faces": len(faces), "tracks": [getattr(f, "track", None) for f in faces],
                                "ms": round(1000 * (time.monotonic() - t0), 1)})
            await ws.send_bytes(out)
    except WebSocketDisconnect:
        return


def stream_settings(text: str) -> tuple[dict, bool | float]:
    try:
        raw = json.loads(text)
    except ValueError:
        raise ApiError("settings must be a JSON object") from None
    if not isinstance(raw, dict):
        raise ApiError("settings must be a JSON object")
    unknown = sorted(set(raw) - set(EFFECT_FIELDS) - {"feather", "smooth"})
    if unknown:
        raise ApiError(f"unknown setting {unknown[0]!r}; use {', '.join(EFFECT_FIELDS)}, feather, smooth")
    smooth = raw.pop("smooth", True)
    if not isinstance(smooth, (bool, int, float)):
        raise ApiError("smooth must be true, false or a number")
    form = {k: str(v) for k, v in raw.items() if v is not None}
    return effect_options(form), smooth


def make_video_masker(landmarker, opts: dict, smooth):
    """Per connection: tracking and smoothing (a change of effects starts a new one)."""
    from landmask.video import VideoMasker
    return VideoMasker(landmarker, smooth=smooth, **opts)


def stream_frame(masker, data: bytes, t: float, max_pixels: int):
    frame, _ = decode(data, "frame", max_pixels, mode="rgb")
    out, faces = masker.process(frame, t)
    return imageio.encode_image(out, "jpeg", quality=80), faces


# ---------------------------------------------------------------- running it

def load_landmarker(settings: Settings):
    return landmask.load(settings.model, settings.detector, threads=settings.threads, scout=settings.scout,
                         detect_size=settings.detect_size, min_face=settings.min_face,
                         max_faces=settings.max_faces, min_score=settings.min_score)


def check_settings(settings: Settings) -> None:
    """Load the models once before starting: a bad --model or --detector is one LandmaskError
    here, not a traceback from every worker's start-up."""
    load_landmarker(settings)


def check_listen(host: str, port: int) -> None:
    """Refuse, before the banner and the model load, an address that cannot be listened on (a port
    in use, a host name that does not resolve): one error instead of uvicorn's log line and exit 3."""
    import errno
    import socket
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise landmask.LandmaskError(f"--host {host}: cannot listen there ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn does
            s.bind(address)
    except OSError as e:
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):   # no such address on this machine
            raise landmask.LandmaskError(f"--host {host}: cannot listen there ({e.strerror})") from None
        raise landmask.LandmaskError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror})") from None


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the app on uvicorn until interrupted; with ``workers`` > 1, that many processes, each
    loading the model once."""
    import uvicorn
    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run("landmask.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
