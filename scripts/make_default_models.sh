#!/usr/bin/env bash
# Reproduce landmask's shipped models from scratch on a CPU (2 cores: see landmask/models/MODELS.md
# for the wall times), from ../shared/data only: helen-68/trainset + youtube-faces-68/training.
# helen-68/testset is used for the final evaluation only.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
TRAIN="$D/helen-68/trainset $D/youtube-faces-68/training"
M=landmask/models

landmask train --data $TRAIN --scheme ibug68 --epochs 150 --out runs/ibug68-v1
landmask train-detector --data $TRAIN --epochs 40 --threads 2 --out runs/detector-v1
landmask train --data $TRAIN --scheme kaggle15 --epochs 100 --out runs/kaggle15-v1
landmask train --preset seed --data $D/helen-68/trainset --out runs/seed-v1   # for comparison, not shipped

for name in ibug68 kaggle15; do
  cp runs/$name-v1/model.safetensors $M/$name.safetensors
  landmask export --model $M/$name.safetensors --onnx $M/$name.onnx
done
landmask export --model runs/detector-v1/detector.safetensors --onnx $M/detector.onnx

for m in ibug68 kaggle15 runs/seed-v1; do
  landmask evaluate --model $m --data $D/helen-68/testset --boxes landmarks --json runs/eval-$(basename $m)-landmarks.json --ced ""
done
landmask evaluate --data $D/helen-68/testset --boxes detect --json runs/eval-ibug68-detect.json --ced ""
