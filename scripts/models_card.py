"""Write a model card from the training runs and evaluation JSONs of a scripts/make_default_models.sh
run (runs/MODELS-card.md by default): each run's command, wall time, images/s and test figures, to
compare with landmask/models/MODELS.md.  MODELS.md itself is kept by hand (each session's stages,
choices and figures, which this card does not know of), so this script never writes over it.

    python scripts/models_card.py [--out runs/MODELS-card.md]
"""
import json
import platform
from pathlib import Path

import yaml

RUNS = Path("runs")


def run_facts(run: Path) -> dict:
    from dataclasses import asdict
    from landmask.trainconfig import TrainConfig
    cfg = {**asdict(TrainConfig()), **yaml.safe_load((run / "config.yaml").read_text())}  # older runs: defaults
    hist = json.loads((run / "history.json").read_text())
    wall = (run / "history.json").stat().st_mtime - (run / "config.yaml").stat().st_mtime
    return {"cfg": cfg, "epochs": len(hist), "wall_min": wall / 60,
            "ips": sorted(h["images_per_s"] for h in hist)[len(hist) // 2], "last": hist[-1]}


def command(cfg: dict, detector=False) -> str:
    if detector:
        return (f"landmask train-detector --data {' '.join(cfg['data'])} --epochs {cfg['epochs']} "
                f"--threads {cfg['threads']} --out {cfg['out']}")
    extra = "" if cfg["preset"] == "default" else f" --preset {cfg['preset']}"
    from landmask.trainconfig import TrainConfig
    defaults = {k: getattr(TrainConfig, k) for k in ("input_size", "width", "depth8", "depth16", "crop_scale",
                                                     "box_jitter", "rotate", "flip_prob", "mirror_shift", "heat_reg")}
    flags = "".join(f" --{k.replace('_', '-')} {cfg.get(k, d)}" for k, d in defaults.items() if cfg.get(k, d) != d)
    if cfg.get("teacher"):
        flags += f" --teacher {cfg['teacher']}"
        flags += f" --teacher-weight {cfg['teacher_weight']}" if cfg["teacher_weight"] != TrainConfig.teacher_weight else ""
        flags += " --teacher-flip" if cfg.get("teacher_flip") else ""
    return (f"landmask train{extra} --data {' '.join(cfg['data'])} --scheme {cfg['scheme']} "
            f"--epochs {cfg['epochs']}{flags} --out {cfg['out']}")


def fmt_eval(path: Path) -> str:
    if not path.exists():
        return "(not evaluated)"
    r = json.loads(path.read_text())
    s = (f"NME {r['nme_percent']:.2f} %, RMSE {r['rmse_px96']:.3f} px (Kaggle units), failures "
         f"{r['failure_percent']:.1f} %, AUC@8 % {r['auc8']:.3f}, {r['n_faces']} faces")
    if "detected_percent" in r:
        s += f", detected {r['detected_percent']:.1f} %"
    return s


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RUNS / "MODELS-card.md")
    out = ap.parse_args().out
    if out.resolve() == Path("landmask/models/MODELS.md").resolve():
        raise SystemExit("models_card.py: landmask/models/MODELS.md is kept by hand; write the card elsewhere")
    lines = ["# Shipped models", "",
             "Produced by landmask's own training command on this project's CPU machine "
             f"({platform.machine()}, 2 cores, no GPU), from `../shared/data` only: "
             "`helen-68/trainset` (870 faces) + `youtube-faces-68/training` (3462 frames), 5 % of them "
             "held out for validation. `helen-68/testset` (330 faces, people never trained on) was used "
             "for the figures below and for nothing else.", "",
             "Data terms: HELEN (300-W annotations) and YouTube-Faces are published for non-commercial "
             "research use; the same applies to these model files.", "",
             "Reproduce all of them: `scripts/make_default_models.sh`. The HELEN stages (runs named nf-) "
             "are trained without mirrored crops (`--flip-prob 0`): HELEN's 300-W points are not "
             "mirror-symmetric (they sit about 1 % of the eye distance right of the mirrored position), so "
             "the model learns that offset, and flip averaging adds back the mirror shift measured after "
             "training (`mirror.shift_px` in the model file; docs/experiments.md, fourth session). The "
             "first stages (ibug68-v2, tiny-80) were trained, with mirroring, before "
             "the crop fix of 2026-11-29 (landmask/crops.py: the area reduction is now exactly 1/f).", ""]
    kaggle_note = ("An ensemble of ibug68's network and a 2.4 M-parameter 128 px one (`landmask ensemble --half`), "
                   "calibrated on the 84 held-out training faces, its 68 points converted to the 15 Kaggle points "
                   "by the scheme table inside the model (`landmask export --scheme kaggle15`; the commands: "
                   "scripts/make_default_models.sh).")
    for name, runs, evals, note in (
            ("ibug68 (`ibug68.onnx`, `ibug68.safetensors`)",
             [RUNS / "ibug68-v2", RUNS / "nf-v2ft", RUNS / "nf-v2ft-96", RUNS / "nf-v2ft-112"],
             [("boxes from landmarks", "eval-ibug68-landmarks.json"), ("boxes from landmarks, `--flip`", "eval-ibug68-landmarks-flip.json"),
              ("boxes from the detector", "eval-ibug68-detect.json")], ""),
            ("ibug68-int8 (`ibug68-int8.onnx`; `--model ibug68-int8`)", [],
             [("boxes from landmarks", "eval-ibug68-int8-landmarks.json"),
              ("boxes from landmarks, `--flip`", "eval-ibug68-int8-landmarks-flip.json"),
              ("boxes from the detector", "eval-ibug68-int8-detect.json")],
             "ibug68 in 8 bits (weights per output channel, activations calibrated on 150 helen-68/trainset face "
             "crops, images only): every convolution but the stem and the first depthwise one, the additions, "
             "ReLUs and upsampling; the softmax and soft-argmax stay in float. `landmask export --model "
             "landmask/models/ibug68.safetensors --onnx landmask/models/ibug68-int8.onnx --int8 "
             "../shared/data/helen-68/trainset`. A third of the file and about half of ibug68's ONNX Runtime "
             "time (docs/benchmarks.md), the same accuracy (held-out NME 3.394 vs 3.411 %). ONNX only; PyTorch "
             "runs ibug68 itself. Checked on this machine's CPU (AVX-512 with VNNI); CPUs without VNNI may "
             "lose accuracy to 8-bit saturation in ONNX Runtime, so check one there with `landmask evaluate` "
             "before relying on it."),
            ("ibug68-fast-int8 (`ibug68-fast-int8.onnx`; `--model ibug68-fast-int8`)", [],
             [("boxes from landmarks", "eval-ibug68-fast-int8-landmarks.json"),
              ("boxes from landmarks, `--flip`", "eval-ibug68-fast-int8-landmarks-flip.json"),
              ("boxes from the detector", "eval-ibug68-fast-int8-detect.json")],
             "ibug68-fast in 8 bits, by the same recipe: `landmask export --model "
             "landmask/models/ibug68-fast.safetensors --onnx landmask/models/ibug68-fast-int8.onnx --int8 "
             "../shared/data/helen-68/trainset`. Held-out NME 3.579 vs 3.579 %; a third of the file and about "
             "0.7 x ibug68-fast's landmark step (docs/benchmarks.md). Same caveat on CPUs without VNNI."),
            ("ibug68-fast (`ibug68-fast.onnx`, `ibug68-fast.safetensors`; `--model ibug68-fast`)",
             [RUNS / "fast2-80", RUNS / "nf-fast2-96"],
             [("boxes from landmarks", "eval-ibug68-fast-landmarks.json"),
              ("boxes from landmarks, `--flip`", "eval-ibug68-fast-landmarks-flip.json"),
              ("boxes from the detector", "eval-ibug68-fast-detect.json")],
             "The smaller landmark model, for speed: width 1.0 and 3 + 3 blocks at 1/8 and 1/16 (245 k "
             "parameters), 96 px crops: 34 M multiply-adds, about a third of ibug68's 114 M."),
            ("ibug68-tiny (`ibug68-tiny.onnx`, `ibug68-tiny.safetensors`; `--model ibug68-tiny`)",
             [RUNS / "tiny-80", RUNS / "nf-tiny-80ft"],
             [("boxes from landmarks", "eval-ibug68-tiny-landmarks.json"),
              ("boxes from landmarks, `--flip`", "eval-ibug68-tiny-landmarks-flip.json"),
              ("boxes from the detector", "eval-ibug68-tiny-detect.json")],
             "The smallest, for the fastest landmark step: width 0.75 and 3 + 3 blocks (142 k parameters), "
             "80 px crops: 14 M multiply-adds, an eighth of ibug68's 114 M."),
            ("kaggle15 (`kaggle15.onnx`; ONNX only)", [],
             [("boxes from landmarks", "eval-kaggle15-landmarks.json")], kaggle_note),
            ("seed preset (not shipped: 38 MB; for comparison)", [RUNS / "seed-v1"],
             [("boxes from landmarks", "eval-seed-landmarks.json")], "")):
        if not all((r / "history.json").exists() for r in runs) or any(
                run_facts(r)["epochs"] < run_facts(r)["cfg"]["epochs"] for r in runs):
            continue   # absent or still training
        lines += [f"## {name}", ""] + ([note, ""] if note else [])
        for run in runs:
            f = run_facts(run.resolve())
            init = f" --init {f['cfg']['init']} --lr {f['cfg']['lr']}" if f["cfg"].get("init") else ""
            lines += ["```", command(f["cfg"]) + init, "```", "",
                      f"- epochs {f['epochs']}, wall time {f['wall_min']:.0f} min, median {f['ips']:.0f} images/s "
                      f"(2 CPU cores, shared with other work at times); final validation NME "
                      f"{f['last'].get('val_nme_percent', float('nan')):.2f} %",
                      f"- config: `{json.dumps({k: f['cfg'].get(k) for k in ('arch', 'input_size', 'width', 'depth8', 'depth16', 'crop_scale', 'loss', 'batch_size', 'lr', 'seed')})}`", ""]
        for label, j in evals:
            lines.append(f"- helen-68/testset, {label}: {fmt_eval(RUNS / j)}")
        lines.append("")
    det = RUNS / "detector-v1"
    if det.exists():
        cfg = yaml.safe_load((det / "config.yaml").read_text())
        hist = json.loads((det / "history.json").read_text())
        wall = ((det / "history.json").stat().st_mtime - (det / "config.yaml").stat().st_mtime) / 60
        lines += ["## face detector (`detector.onnx`)", "", "```", command(cfg, detector=True), "```", "",
                  f"- epochs {len(hist)}, wall time {wall:.0f} min; DetNet, CenterNet-style, boxes in the "
                  "landmark-box convention", "- detection figures: docs/benchmarks.md and the README", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
