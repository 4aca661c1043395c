"""The HTTP API (landmask.server) through Starlette's test client, and `landmask serve` as a real
uvicorn process: masking, landmarks, every kind of bad input answered 4xx with a message (and the
server still answering afterwards), limits, nothing spooled to disk, the camera WebSocket."""
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

import landmask  # noqa: E402
from landmask.server import Settings, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "landmask" / "samples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(max_upload_bytes=8 * 2**20))) as c:
        yield c


@pytest.fixture(scope="module")
def photo():
    return SAMPLE.read_bytes()


def post(client, path="/v1/mask", image=None, name="photo.jpg", **fields):
    files = {"image": (name, image, "application/octet-stream")} if image is not None else None
    return client.post(path, files=files, data=fields or None)


PARTS = ("lips", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow")


def parts_region(image: np.ndarray, faces, grow: int) -> np.ndarray:
    """(H, W) bool: the lips, eyes and eyebrows of every face, grown by ``grow`` pixels."""
    region = np.zeros(image.shape[:2], np.uint8)
    for f in faces:
        for part in PARTS:
            for poly in f.parts[part]:
                cv2.fillPoly(region, [np.round(poly).astype(np.int32)], 1)
    return cv2.dilate(region, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


def changed(a: np.ndarray, b: np.ndarray, threshold: int) -> np.ndarray:
    return (np.abs(a.astype(int) - b.astype(int)) > threshold).reshape(a.shape[0], a.shape[1], -1).any(axis=2)


def png(image: np.ndarray) -> bytes:
    return landmask.imageio.encode_image(image, "png")


# ---------------------------------------------------------------- what works

def test_health_and_schema(client):
    assert client.get("/healthz").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert {"/v1/mask", "/v1/landmarks", "/healthz"} <= set(schema["paths"])
    form = schema["paths"]["/v1/mask"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "lips", "eyes", "eyebrows", "face"} <= set(form["properties"])


def test_pages_and_assets_are_served_locally(client):
    page = client.get("/").text
    assert "/static/app.js" in page and "<script src=\"http" not in page and "cdn" not in page.lower()
    for path in ("/camera", "/static/app.js", "/static/camera.js", "/static/common.js", "/static/style.css"):
        assert client.get(path).status_code == 200, path


def test_mask_defaults_equal_the_library_and_stay_on_the_parts(client):
    """No effect fields = the library's defaults; a PNG comes back as a PNG with exactly the
    pixels landmask.mask gives, changed only on the lips and eyes."""
    image = landmask.read_image(SAMPLE)
    r = post(client, image=png(image), name="a.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-landmask-faces"] == "1"
    out = landmask.imageio.decode_image(r.content)
    lm = landmask.load()
    faces = lm.faces(image)
    assert np.array_equal(out, landmask.mask(image, faces))
    diff = changed(image, out, 0)
    region = parts_region(image, faces, 3)
    x0, y0, x1, y1 = faces[0].box
    assert region.sum() < 0.5 * (x1 - x0) * (y1 - y0)     # the parts, not the whole face (about 1/3 here)
    assert diff.sum() > 200 and not (diff & ~region).any()


def test_mask_keeps_format_and_kind(client, photo):
    r = post(client, image=photo, lips="blur", eyes="none")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"
    grey = landmask.read_image(SAMPLE, "grey")
    r = post(client, image=png(grey), name="grey.png", eyes="solid:black")
    out = landmask.imageio.decode_image(r.content, "keep")
    assert r.status_code == 200 and out.shape == grey.shape and out.ndim == 2
    assert out.min() == 0 and changed(grey, out, 0).sum() > 50


def test_output_format_field(client):
    tiff = landmask.imageio.encode_image(landmask.read_image(SAMPLE), "tiff")
    r = post(client, image=tiff, name="a.tif")
    assert r.status_code == 200 and r.headers["content-type"] == "image/tiff"
    r = post(client, image=tiff, name="a.tif", format="png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    r = post(client, image=tiff, name="a.tif", format="gif")
    assert r.status_code == 400 and "jpeg, png, webp" in r.json()["error"]


def test_effect_fields_change_only_the_parts_given(client):
    image = landmask.read_image(SAMPLE)
    faces = landmask.load().faces(image)
    eyes = changed(image, landmask.imageio.decode_image(post(client, image=png(image), name="a.png",
                                                              eyes="solid:#00ff00").content), 0)
    lips = changed(image, landmask.imageio.decode_image(post(client, image=png(image), name="a.png",
                                                              lips="solid:#00ff00").content), 0)
    ys_eyes, ys_lips = np.nonzero(eyes)[0], np.nonzero(lips)[0]
    assert len(ys_eyes) > 50 and len(ys_lips) > 50
    assert ys_eyes.max() < ys_lips.min()       # eyes above the mouth, no overlap
    mouth_y = (faces[0].named["upper_lip_top"][1] + faces[0].named["lower_lip_bottom"][1]) / 2
    assert abs(np.median(ys_lips) - mouth_y) < 20


def test_landmarks_json(client, photo):
    r = post(client, "/v1/landmarks", image=photo)
    assert r.status_code == 200
    body = r.json()
    (face,) = body["faces"]
    assert len(face["points"]) == 68 and all(len(p) == 2 for p in face["points"])
    assert len(face["box"]) == 4 and 0 < face["score"] <= 1
    assert face["named"]["nose_tip"] == face["points"][30]
    assert len(face["confidence"]) == 68 and all(0 <= c <= 1 for c in face["confidence"])
    expected = landmask.load().faces(landmask.read_image(SAMPLE))[0].points
    assert np.abs(np.array(face["points"]) - expected).max() < 0.01


def test_no_face_comes_back_unmasked(client):
    blank = np.full((200, 300, 3), 128, np.uint8)
    r = post(client, image=png(blank), name="blank.png")
    assert r.status_code == 200 and r.headers["x-landmask-faces"] == "0"
    assert np.array_equal(landmask.imageio.decode_image(r.content), blank)
    assert post(client, "/v1/landmarks", image=png(blank), name="blank.png").json()["faces"] == []


# ---------------------------------------------------------------- bad input: 4xx + a message

def png_bomb(side: int) -> bytes:
    """A real, valid grey PNG of side × side zeros: a few tens of kB that decode to side² bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


BAD_REQUESTS = {
    "empty body": dict(content=b"", headers={"content-type": "multipart/form-data; boundary=x"}),
    "not multipart": dict(content=b"\xff\xd8\xff", headers={"content-type": "image/jpeg"}),
    "no image field": dict(data={"lips": "blur"}, files={"other": ("x", b"1")}),
    "only effect fields": dict(data={"lips": "blur"}),
    "image as text": dict(data={"image": "photo.jpg"}),
    "empty image": dict(files={"image": ("e.jpg", b"")}),
    "not an image": dict(files={"image": ("notes.jpg", b"these are words, not pixels")}),
    "truncated": dict(files={"image": ("cut.jpg", SAMPLE.read_bytes()[:30000])}),
    "bomb": dict(files={"image": ("bomb.png", png_bomb(8000))}),
    "unknown effect": dict(files={"image": ("a.jpg", SAMPLE.read_bytes())}, data={"lips": "sparkle"}),
    "bad colour": dict(files={"image": ("a.jpg", SAMPLE.read_bytes())}, data={"eyes": "color:notacolour"}),
    "bad opacity": dict(files={"image": ("a.jpg", SAMPLE.read_bytes())}, data={"lips": "blur@2"}),
    "bad face effect": dict(files={"image": ("a.jpg", SAMPLE.read_bytes())}, data={"face": "explode"}),
    "bad feather": dict(files={"image": ("a.jpg", SAMPLE.read_bytes())}, data={"feather": "soft"}),
    "unknown field": dict(files={"image": ("a.jpg", SAMPLE.read_bytes())}, data={"lipz": "blur"}),
    "two images": dict(files=[("image", ("a.jpg", b"1")), ("image", ("b.jpg", b"2"))]),
    "broken multipart": dict(content=b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc",
                             headers={"content-type": "multipart/form-data; boundary=x"}),
}
EXPECTED_WORDS = {"bomb": "too large", "truncated": "truncated", "not an image": "not an image",
                  "unknown effect": "sparkle", "bad colour": "notacolour", "bad feather": "feather",
                  "unknown field": "did you mean 'lips'", "empty image": "empty", "no image field": "image",
                  "bad face effect": "explode", "bad opacity": "opacity"}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_with_a_message(client, photo, kind):
    for path in ("/v1/mask", "/v1/landmarks"):
        if path == "/v1/landmarks" and "data" in BAD_REQUESTS[kind] and "files" in BAD_REQUESTS[kind]:
            continue    # effect fields do not belong on /v1/landmarks (tested below)
        r = client.post(path, **BAD_REQUESTS[kind])
        assert 400 <= r.status_code < 500, (kind, path, r.status_code, r.text)
        message = r.json()["error"]
        assert message and EXPECTED_WORDS.get(kind, "").lower() in message.lower(), (kind, message)
    # ... and the server keeps answering
    assert client.get("/healthz").status_code == 200
    assert post(client, image=photo).status_code == 200


def test_landmarks_refuses_effect_fields(client, photo):
    r = post(client, "/v1/landmarks", image=photo, lips="blur")
    assert r.status_code == 400 and "only the field 'image'" in r.json()["error"]


def test_upload_limit_refused_before_reading():
    with TestClient(create_app(Settings(max_upload_bytes=50_000))) as c:
        r = post(c, image=SAMPLE.read_bytes())      # 75 kB
        assert r.status_code == 413 and "too large" in r.json()["error"]
        # a body whose length is not announced is cut off while it streams
        def chunks():
            yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
            for _ in range(10):
                yield b"\0" * 10_000
        r = c.post("/v1/mask", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413 and "too large" in r.json()["error"]
        assert c.get("/healthz").status_code == 200


def test_pixel_limit_from_the_header():
    image = np.zeros((600, 800, 3), np.uint8)
    with TestClient(create_app(Settings(max_pixels=100_000))) as c:
        r = post(c, image=png(image), name="big.png")
        assert r.status_code == 413 and "800×600" in r.json()["error"]


def test_timeout_is_an_error_not_a_hang(photo):
    with TestClient(create_app(Settings(timeout_s=1e-4))) as c:
        r = post(c, image=photo)
        assert r.status_code == 503 and "longer than" in r.json()["error"]
        assert c.get("/healthz").status_code == 200


def test_nothing_is_written_to_disk(client, monkeypatch):
    """A 3 MB upload (over Starlette's 1 MB in-memory spool) stays in memory."""
    def no_disk(self):
        raise AssertionError("an upload was spooled to disk")
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
    rng = np.random.default_rng(0)
    noisy = landmask.read_image(SAMPLE)
    noisy = np.clip(noisy.astype(int) + rng.integers(-40, 40, noisy.shape), 0, 255).astype(np.uint8)
    big = cv2.resize(noisy, (1100, 1100))
    data = png(big)
    assert len(data) > 2**20 * 2
    r = post(client, image=data, name="big.png", lips="blur")
    assert r.status_code == 200 and r.headers["x-landmask-faces"] == "1"


# ---------------------------------------------------------------- the camera WebSocket

def test_stream_masks_frames_and_refuses_bad_messages(client, photo):
    pytest.importorskip("landmask.video")
    frame = landmask.imageio.encode_image(cv2.resize(landmask.read_image(SAMPLE), (320, 320)), "jpeg")
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps({"lips": "sparkle"}))
        assert "sparkle" in ws.receive_json()["error"]
        ws.send_text("not json")
        assert "JSON" in ws.receive_json()["error"]
        ws.send_bytes(b"garbage")
        assert "not an image" in ws.receive_json()["error"]
        ws.send_text(json.dumps({"lips": "solid:#00ff00", "eyes": "none", "smooth": True}))
        assert ws.receive_json() == {"ok": "settings"}
        tracks = []
        for _ in range(3):
            ws.send_bytes(frame)
            info = ws.receive_json()
            out = landmask.imageio.decode_image(ws.receive_bytes())
            assert info["faces"] == 1 and out.shape == (320, 320, 3)
            tracks.append(info["tracks"][0])
        assert len(set(tracks)) == 1                  # one face, one track across frames
        src = landmask.imageio.decode_image(frame)
        green = changed(src, out, 40) & (out[..., 1] > 150) & (out[..., 0] < 120)
        assert green.sum() > 30                       # the lips were painted green


# ---------------------------------------------------------------- `landmask serve`, a real server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args, timeout=60):
    """`landmask serve` on a free loopback port; returns (process, base url) once /healthz answers."""
    import httpx
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "landmask.cli", "serve", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"landmask serve exited: {proc.stdout.read().decode()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("landmask serve did not answer /healthz in time")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_serve_command_with_two_workers(photo):
    import httpx
    proc, url = start_server("--workers", "2", "--model", "ibug68-fast-int8")
    try:
        for _ in range(4):
            r = httpx.post(url + "/v1/mask", files={"image": ("a.jpg", photo)}, data={"eyes": "blur"}, timeout=30)
            assert r.status_code == 200 and r.headers["x-landmask-faces"] == "1"
        r = httpx.post(url + "/v1/mask", files={"image": ("a.jpg", b"nope")}, timeout=30)
        assert r.status_code == 400 and "not an image" in r.json()["error"]
    finally:
        stop_server(proc)


def test_serve_refuses_bad_options():
    r = subprocess.run([sys.executable, "-m", "landmask.cli", "serve", "--workers", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--workers" in r.stderr
    r = subprocess.run([sys.executable, "-m", "landmask.cli", "serve", "--model", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--model nope" in r.stderr and "Traceback" not in r.stderr
    import socket
    with socket.socket() as taken:   # a port in use: one error line, no banner (was uvicorn's log and exit 3)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "landmask.cli", "serve", "--port", str(port)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"--port {port}: cannot listen" in r.stderr and "landmask serve:" not in r.stdout


def test_model_loaded_once_per_app(monkeypatch, photo):
    calls = []
    real = landmask.load
    monkeypatch.setattr(landmask, "load", lambda *a, **k: calls.append(a) or real(*a, **k), raising=False)
    with TestClient(create_app(Settings())) as c:
        assert len(calls) == 1          # in the lifespan, before any request
        for _ in range(3):
            assert post(c, image=photo).status_code == 200
    assert len(calls) == 1


def test_server_never_imports_torch_or_training_code():
    code = ("import sys\nfrom fastapi.testclient import TestClient\nfrom landmask.server import create_app\n"
            "with TestClient(create_app()) as c:\n"
            "    assert c.post('/v1/mask', files={'image': ('a.jpg', open(sys.argv[1], 'rb').read())}).status_code == 200\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m in "
            "('landmask.model', 'landmask.checkpoint', 'landmask.train', 'landmask.engine'))\n"
            "print(bad)\n")
    r = subprocess.run([sys.executable, "-c", code, str(SAMPLE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_detector_settings_reach_the_model():
    face = landmask.read_image(SAMPLE)
    two = png(np.concatenate([face, face], axis=1))
    with TestClient(create_app(Settings())) as c:
        assert len(post(c, "/v1/landmarks", image=two, name="two.png").json()["faces"]) == 2
    with TestClient(create_app(Settings(max_faces=1))) as c:
        assert len(post(c, "/v1/landmarks", image=two, name="two.png").json()["faces"]) == 1


def test_options_in_the_query_string_or_twice_are_refused(client, photo):
    r = client.post("/v1/mask?lips=blur&format=gif", files={"image": ("a.jpg", photo)})
    assert r.status_code == 400 and "query string" in r.json()["error"] and "format, lips" in r.json()["error"]
    r = client.post("/v1/mask", files=[("image", ("a.jpg", photo)), ("lips", (None, "red")), ("lips", (None, "blur"))])
    assert r.status_code == 400 and "'lips' is given twice" in r.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_photo_sent_without_a_filename_gets_told_how(client, photo):
    r = client.post("/v1/mask", files={"image": (None, photo)})     # a text part of 200 KB
    assert r.status_code == 400 and "as a file upload, with a filename" in r.json()["error"]


def test_slow_upload_is_408_not_busy(photo):
    """A client that sends its body slower than --timeout gets 408 (its own doing), not the 503
    that means the server is busy; the server goes on answering."""
    import httpx
    proc, url = start_server("--timeout", "1")
    try:
        port = int(url.rsplit(":", 1)[1])
        boundary = "landmaskboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(f"POST /v1/mask HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}"
                      f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
            time.sleep(1.5)                # the rest never comes in time
            reply = s.recv(65536).decode("latin-1")
        assert reply.startswith("HTTP/1.1 408"), reply[:200]
        assert "upload took longer" in reply
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        stop_server(proc)


def test_a_client_that_leaves_mid_upload_leaves_no_traceback_in_the_log():
    import socket
    proc, url = start_server()
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            head = (b"--XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
                    b"Content-Type: image/jpeg\r\n\r\n" + b"\xff" * 1000)
            s.sendall(b"POST /v1/mask HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
                      b"Content-Length: 100000\r\n\r\n" + head)
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        stop_server(proc)
    log = proc.stdout.read().decode()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log
