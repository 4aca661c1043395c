"""End to end in a real browser: `landmask serve` driven by headless Chromium (Debian's package,
through Playwright with its executable_path; nothing is downloaded).  The photo page: upload the
sample, change colour and effect, the shown result differs from the original only on the lips and
eyes.  The camera page: Chromium's fake camera plays a clip of the sample face and masked frames
come back over the WebSocket with a frame rate."""
import base64
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

import landmask  # noqa: E402
from test_server import SAMPLE, changed, parts_region, start_server, stop_server  # noqa: E402


def chromium_path() -> str | None:
    for p in (os.environ.get("LANDMASK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if p and Path(p).exists():
            return p
    return None


CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium; "
                                                         "or set LANDMASK_CHROMIUM)")


@pytest.fixture(scope="module")
def server():
    proc, url = start_server()
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def pw():
    with playwright.sync_playwright() as p:
        yield p


def decode_data_url(url: str) -> np.ndarray:
    return landmask.imageio.decode_image(base64.b64decode(url.split(",", 1)[1]))


def shown_result(page) -> np.ndarray:
    """The bytes behind the page's result <img>, decoded."""
    url = page.evaluate("""async () => {
        const blob = await (await fetch(document.getElementById('result').src)).blob();
        return await new Promise((ok) => { const r = new FileReader(); r.onload = () => ok(r.result); r.readAsDataURL(blob); });
    }""")
    return decode_data_url(url)


def region(shape, polygons) -> np.ndarray:
    """(H, W) bool inside the polygons."""
    out = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(out, [np.round(p).astype(np.int32) for p in polygons], 1)
    return out > 0


def wait_results(page, n: int):
    page.wait_for_function(f"Number(document.body.dataset.results) >= {n}", timeout=20_000)


def test_photo_page(server, pw):
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        page = browser.new_page()
        page.goto(server + "/")
        page.set_input_files("#file", str(SAMPLE))
        wait_results(page, 1)
        original = landmask.read_image(SAMPLE)
        faces = landmask.load().faces(original)
        near_parts = parts_region(original, faces, 4)
        parts = faces[0].parts

        first = shown_result(page)     # the defaults: red lips, tinted eyes
        assert first.shape == original.shape
        assert "1 face" in page.inner_text("#status")
        diff = changed(original, first, 25)       # above the JPEG re-encoding's noise
        assert diff.sum() > 200 and not (diff & ~near_parts).any()

        # a green lip colour, then blurred eyes: each change shows a new result
        page.locator("fieldset[data-part=lips] input[name=color]").fill("#00c000")
        wait_results(page, 2)
        page.select_option("fieldset[data-part=eyes] select", "blur")
        wait_results(page, 3)
        page.wait_for_load_state("networkidle")
        final = shown_result(page)
        diff = changed(original, final, 25)
        assert diff.sum() > 200 and not (diff & ~near_parts).any()
        lip_region = region(original.shape, parts["lips"])    # outer contour minus the open mouth
        green = lambda im: (im[..., 1].astype(int) - im[..., 0].astype(int))[lip_region].mean()
        assert green(final) > green(original) + 20 and green(final) > green(first) + 20
        eyes = region(original.shape, parts["left_eye"] + parts["right_eye"])
        assert changed(first, final, 10)[eyes].sum() > 20     # the eyes went from tint to blur
        assert page.get_attribute("#download", "download") == "astronaut-masked.jpg"

        # points and boxes drawn over the result
        n = int(page.get_attribute("body", "data-results"))
        page.check("#show-points")
        drawn = page.evaluate("""() => { const c = document.getElementById('points');
            if (c.hidden) return 0;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
        assert drawn > 500
        page.wait_for_timeout(600)      # past the controls' 120 ms debounce: the overlay asked for no new mask
        assert int(page.get_attribute("body", "data-results")) == n

        # dropping a photo on the page works as picking one
        n = int(page.get_attribute("body", "data-results"))
        dropped = page.evaluate_handle("""(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return dt; }""", base64.b64encode(landmask.imageio.encode_image(original, "png")).decode())
        page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
        wait_results(page, n + 1)
        assert page.get_attribute("#download", "download") == "dropped-masked.png"
        assert shown_result(page).shape == original.shape

        # a file that is not an image: the server's message is shown, the page stays usable
        page.set_input_files("#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg",
                                              "buffer": b"these are words"}])
        page.wait_for_selector("#error:not([hidden])", timeout=20_000)
        assert "not an image" in page.inner_text("#error")
        # ... and the earlier photo's result and download link are gone, not left under the error
        assert page.get_attribute("#result", "src") is None and page.locator("#download").is_hidden()
    finally:
        browser.close()


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 15) -> None:
    """An uncompressed YUV 4:2:0 clip, the format Chromium's fake camera reads."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())


def canvas_png(page, js_canvas: str) -> np.ndarray:
    return decode_data_url(page.evaluate(f"() => ({js_canvas}).toDataURL('image/png')"))


def test_camera_page(server, pw, tmp_path):
    pytest.importorskip("landmask.video")
    face = landmask.read_image(SAMPLE)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 80:560] = cv2.resize(face, (480, 480))
    clip = tmp_path / "clip.y4m"
    write_y4m(clip, [frame] * 15)
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}"])
    try:
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(server + "/camera")
        page.select_option("fieldset[data-part=lips] select", "solid")
        page.locator("fieldset[data-part=lips] input[name=color]").fill("#00c000")
        page.locator("fieldset[data-part=lips] input[name=opacity]").fill("1")
        page.click("#start")
        page.wait_for_function("Number(document.body.dataset.frames) >= 8", timeout=30_000)
        assert page.is_hidden("#error"), page.inner_text("#error")
        fps = page.inner_text("#fps")
        assert fps.endswith(" fps") and float(fps.split()[0]) > 0
        assert page.inner_text("#info").startswith("1 face")
        raw = canvas_png(page, """(() => { const v = document.getElementById('video');
            const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
            c.getContext('2d').drawImage(v, 0, 0); return c; })()""")
        shown = canvas_png(page, "document.getElementById('output')")
        assert raw.shape == shown.shape == (480, 640, 3)
        faces = landmask.load().faces(raw)
        assert len(faces) == 1
        # the frames went through two JPEG encodings (browser, server): edges move by up to ~50 levels
        diff = changed(raw, shown, 60)
        near_parts = parts_region(raw, faces, 8)
        assert diff.sum() > 100 and not (diff & ~near_parts).any()
        assert np.abs(raw.astype(int) - shown)[~near_parts].mean() < 3
        g = shown[region(raw.shape, faces[0].parts["lips"])].astype(int)
        assert (g[:, 1] - g[:, 0]).mean() > 80          # the lips shown are the chosen green
        page.click("#stop")
    finally:
        browser.close()
